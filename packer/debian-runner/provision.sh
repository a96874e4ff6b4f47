#!/bin/sh
# Runs inside the build VM (as root, over SSH): apt sources and upgrade (apt-upgrade.sh), then
# the Hatchery bootstrap and its unit. The only network access is to the mirrors (the build
# VM's slirp NAT). Environment (from the template's variables): HATCHERY_MIRROR,
# HATCHERY_SECURITY_MIRROR, HATCHERY_APT_UPGRADE.
set -eu
src=/tmp/hatchery

# The apt sources from the template's mirror variables, and Debian's latest packages (the base
# was upgraded when it was made; this catches up a base made earlier) unless the template's
# apt_upgrade is false.
sh "$src/apt-upgrade.sh"

install -D -m 0755 "$src/linux.sh" /usr/local/lib/hatchery/linux.sh
install -D -m 0755 "$src/hatchery-start" /usr/local/lib/hatchery/start
install -D -m 0644 "$src/hatchery-bootstrap.service" /etc/systemd/system/hatchery-bootstrap.service
install -D -m 0644 "$src/modules-load.conf" /etc/modules-load.d/hatchery.conf
install -D -m 0644 "$src/image.conf" /etc/hatchery/image.conf

# The runner runs as an unprivileged user with passwordless sudo, like GitHub's hosted runners.
if ! id runner >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash runner
fi
printf 'runner ALL=(ALL) NOPASSWD:ALL\n' >/etc/sudoers.d/runner
chmod 0440 /etc/sudoers.d/runner

systemctl enable hatchery-bootstrap.service
# A Hatchery VM has nothing to log in to: the build's SSH server does not stay enabled.
systemctl disable ssh.service >/dev/null 2>&1 || true

# Check what the bootstrap needs is there.
for cmd in sh sha256sum tar gzip mkfifo setsid setpriv timeout ip curl mount git sudo; do
  command -v "$cmd" >/dev/null || { echo "provision: $cmd is missing from the image" >&2; exit 1; }
done
sh -n /usr/local/lib/hatchery/linux.sh
echo "provision: hatchery bootstrap installed"
