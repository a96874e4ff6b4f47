#!/bin/sh
# Points apt at Debian's mirrors — the suite, its -updates and its -security — and upgrades to
# their latest packages, with Debian's kernel (linux-image-amd64), keeping only the newest.
# Runs twice per build, as root: build-base.sh runs it in the debootstrap chroot (at the host's
# native speed, where the upgrade itself happens), and provision.sh in the Packer build VM
# (under TCG: mostly `apt-get update` with nothing left to upgrade, unless the base was made
# earlier and reused, when it brings that base up to date). Either way the image ends with
# these sources and the mirrors' packages. HATCHERY_APT_UPGRADE=0 writes the sources only
# (build.sh: its base was upgraded from the same mirrors minutes before).
#
#   HATCHERY_MIRROR=http://… HATCHERY_SECURITY_MIRROR=http://… sh apt-upgrade.sh
set -eu

for url in "${HATCHERY_MIRROR:?}" "${HATCHERY_SECURITY_MIRROR:?}"; do
  case $url in
    *[[:space:]]*) echo "apt-upgrade: a mirror URL has no spaces: '$url'" >&2; exit 1 ;;
    http://?* | https://?*) ;;
    *) echo "apt-upgrade: a mirror must be an http:// or https:// URL, not '$url'" >&2; exit 1 ;;
  esac
done
# The installed suite: the sources cannot disagree with what debootstrap installed.
codename=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release)
[ -n "$codename" ] || { echo "apt-upgrade: no VERSION_CODENAME in /etc/os-release" >&2; exit 1; }

rm -f /etc/apt/sources.list
cat >/etc/apt/sources.list.d/debian.sources <<SOURCES
Types: deb
URIs: $HATCHERY_MIRROR
Suites: $codename $codename-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $HATCHERY_SECURITY_MIRROR
Suites: $codename-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
if [ "${HATCHERY_APT_UPGRADE:-1}" = 0 ]; then
  echo "apt-upgrade: sources written; no upgrade (HATCHERY_APT_UPGRADE=0)"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt_get() {
  # unsafe-io: no fsync per file; a build that dies is thrown away whole anyway.
  apt-get -q -o Acquire::Languages=none -o Acquire::Retries=3 -o Dpkg::Use-Pty=0 \
    -o Dpkg::Options::=--force-unsafe-io -o Dpkg::Options::=--force-confdef \
    -o Dpkg::Options::=--force-confold "$@"
}
echo "apt-upgrade: $codename, $codename-updates from $HATCHERY_MIRROR; $codename-security from $HATCHERY_SECURITY_MIRROR"
apt_get update
apt_get -y full-upgrade
# The image boots the kernel installed in it (build-base.sh leaves it out of debootstrap, so
# that the first one installed is already the newest).
apt_get -y --no-install-recommends install linux-image-amd64

# A kernel update installs the new kernel beside the old one: keep only the one /vmlinuz points
# to (the one the image boots with).
kernel=$(basename "$(readlink -f /vmlinuz)")
kernel=${kernel#vmlinuz-}
old=$(dpkg-query -W -f '${db:Status-Abbrev}${Package}\n' 'linux-image-[0-9]*' 2>/dev/null |
  sed -n 's/^ii *//p' | grep -vx "linux-image-$kernel" || true)
if [ -n "$old" ]; then
  echo "apt-upgrade: removing kernels other than $kernel: $old"
  # shellcheck disable=SC2086 # one package per word
  apt_get -y purge $old
fi
apt_get -y --purge autoremove
apt-get clean
echo "apt-upgrade: up to date (kernel $kernel)"
