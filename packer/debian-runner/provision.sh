#!/bin/sh
# Runs inside the build VM (as root, over SSH): installs the Hatchery bootstrap and its unit.
# Everything it needs is already in the base (build-base.sh): no network access here.
set -eu
src=/tmp/hatchery

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
for cmd in sh sha256sum tar gzip mkfifo setsid setpriv timeout ip curl mount; do
  command -v "$cmd" >/dev/null || { echo "provision: $cmd is missing from the image" >&2; exit 1; }
done
sh -n /usr/local/lib/hatchery/linux.sh
echo "provision: hatchery bootstrap installed"
