#!/bin/sh
# Last step in the build VM: remove everything of the build, so every VM made from the image
# starts clean and nothing secret stays in it.
set -eu
rm -f /root/.ssh/authorized_keys /etc/ssh/ssh_host_*
rm -rf /tmp/hatchery /var/lib/apt/lists/* /var/cache/apt/*.bin
apt-get clean
journalctl --rotate >/dev/null 2>&1 || true
journalctl --vacuum-time=1s >/dev/null 2>&1 || true
# systemd makes a new machine id on the first boot of every VM.
: >/etc/machine-id
rm -f /var/lib/dbus/machine-id
# Let the qcow2 shrink: tell the (virtio, discard=unmap) disk which blocks are free.
fstrim -v / || true
sync
echo "seal: done"
