#!/bin/sh
# Installs what Hatchery needs on a fresh Debian 12 machine: QEMU, a Debian kernel and busybox
# (the tiny test guest is built from them), Packer, and the npm dependencies. Idempotent.
set -eu
cd "$(dirname "$0")/.."

# curl, jq: the workflow test runs workflows/three-job.yml as GitHub-hosted runners would.
# The tests lint the bootstrap and packer scripts with shellcheck.
# vagrant … dropbear-bin: the vagrant provider (Vagrant on a private libvirtd, scripts/libvirt.sh;
# its box adds dropbear and scp to the tiny guest). openssh-server: the SSH tests run their own
# sshd (/usr/sbin/sshd -D -f <config>) and the tiny-ssh guest takes its sftp-server.
# debootstrap, openssh-client: packer/debian-runner/build.sh (the Debian runner image's e2e test).
# python3: the Windows image's test reads its answer file with Python's XML parser.
# No daemon starts on install (policy-rc.d below).
PACKAGES="qemu-system-x86 qemu-utils linux-image-amd64 busybox-static cpio xz-utils e2fsprogs openssl packer curl jq shellcheck
  vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients dropbear-bin openssh-client openssh-server debootstrap python3"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# An install interrupted earlier (a killed apt, a rebooted machine) leaves packages unpacked but
# unconfigured, and apt refuses to do anything until they are: finish it first.
interrupted=""
[ -z "$(dpkg --audit 2>/dev/null)" ] || interrupted=1
if [ -n "$missing" ] || [ -n "$interrupted" ]; then
  # Packages with a daemon (openssh-server, libvirt) must not start it: the tests run their own.
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    policy=1
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  if [ -n "$interrupted" ]; then
    echo "==> finishing an interrupted package installation (dpkg --configure -a)"
    DEBIAN_FRONTEND=noninteractive $SUDO dpkg --configure -a --force-confold
  fi
  if [ -n "$missing" ]; then
    echo "==> installing Debian packages:$missing"
    $SUDO apt-get update -q
    # shellcheck disable=SC2086 # $missing is a list of package names
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
      -o Dpkg::Options::=--force-confold $missing
  fi
  [ -z "$policy" ] || { $SUDO rm -f /usr/sbin/policy-rc.d; trap - EXIT; }
fi

# A real OpenStack for the openstack provider's tests (Keystone, Nova, Glance, Placement, Neutron,
# MariaDB, RabbitMQ from Debian; ~300 packages, 1.5–5 min): its own script keeps the list.
scripts/openstack.sh install

if ! command -v node >/dev/null 2>&1; then
  echo "Node.js >= 20 is required (https://nodejs.org or your distribution's nodejs package)" >&2
  exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "Node.js >= 20 is required, found $(node --version)" >&2
  exit 1
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # Its `prepare` script compiles the TypeScript to dist/ (npm run build), what bin/hatchery.js runs.
  echo "==> installing npm dependencies (better-sqlite3 compiles: about a minute), building dist/"
  npm ci --no-audit --no-fund
fi
