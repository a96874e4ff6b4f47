#!/bin/sh
# Builds the base image for debian-runner.pkr.hcl with debootstrap (--variant=minbase), from
# Debian's mirror only:
#   <out>/base.qcow2    a whole-disk ext4 root filesystem (no partition table, no bootloader:
#                       QEMU boots it with -kernel/-initrd)
#   <out>/vmlinuz, <out>/initrd.img   the kernel and initramfs installed in it
#   <out>/build-key     a fresh SSH key for Packer (root); seal.sh removes it from the image
#
#   sudo ./build-base.sh [out-dir]          (default output/base; 1–2 min, needs root)
# build.sh runs it for you. After debootstrap, apt-upgrade.sh upgrades the chroot from the
# suite's -updates and -security (here, at the host's native speed: under TCG the same upgrade
# took over ten minutes); the Packer build runs it again, which brings a reused base up to date.
# Environment: SUITE (bookworm), MIRROR (http://deb.debian.org/debian), SECURITY_MIRROR
# (http://deb.debian.org/debian-security), SIZE (8G), EXTRA_PACKAGES (added to the install).
# Needs: debootstrap, e2fsprogs (mke2fs -d), qemu-utils, openssh-client (ssh-keygen).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-output/base}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SIZE=${SIZE:-8G}

# The runner's own dependencies (its installdependencies.sh for Debian 12) and what
# bootstrap/linux.sh uses, plus what a typical job expects (git, sudo, ca-certificates). The
# kernel comes later, from apt-upgrade.sh: the newest one at once, not one to upgrade.
PACKAGES="systemd-sysv udev dbus kmod iproute2 openssh-server
ca-certificates curl git sudo busybox procps less
libicu72 libkrb5-3 zlib1g libssl3 liblttng-ust1 ${EXTRA_PACKAGES:-}"

for tool in debootstrap:debootstrap mke2fs:e2fsprogs qemu-img:qemu-utils ssh-keygen:openssh-client; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || {
    echo "build-base: ${tool%%:*} not found: install the Debian package ${tool#*:}" >&2
    exit 1
  }
done
[ "$(id -u)" = 0 ] || { echo "build-base: debootstrap needs root" >&2; exit 1; }

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
ROOT=$(mktemp -d "${TMPDIR:-/var/tmp}/hatchery-base.XXXXXX")
cleanup() {
  for m in dev/pts dev proc sys; do umount "$ROOT/$m" 2>/dev/null || true; done
  # --one-file-system: should an unmount have failed, never descend into the host's /proc.
  rm -rf --one-file-system "$ROOT" "$OUT/base.raw"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "==> debootstrap $SUITE (minbase) from $MIRROR"
# shellcheck disable=SC2086 # split on purpose: one package per word
INCLUDE=$(printf '%s,' $PACKAGES)
debootstrap --variant=minbase --include="${INCLUDE%,}" "$SUITE" "$ROOT" "$MIRROR"

echo "==> upgrading from $SUITE-updates and $SUITE-security (apt-upgrade.sh in the chroot)"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" # the host's resolver, for this step only
# No service starts in the chroot (an upgraded openssh-server would try).
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
cp "$HERE/apt-upgrade.sh" "$ROOT/tmp/apt-upgrade.sh"
mount -t proc proc "$ROOT/proc"
chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HATCHERY_MIRROR="$MIRROR" \
  HATCHERY_SECURITY_MIRROR="$SECURITY_MIRROR" sh /tmp/apt-upgrade.sh
umount "$ROOT/proc"
rm -f "$ROOT/tmp/apt-upgrade.sh" "$ROOT/usr/sbin/policy-rc.d"

echo "==> configuring"
echo hatchery-runner >"$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\thatchery-runner\n' >"$ROOT/etc/hosts"
printf '/dev/vda\t/\text4\tdefaults,noatime,discard\t0\t1\n' >"$ROOT/etc/fstab"
# DNS through QEMU's user-mode network (slirp answers on 10.0.2.3 with the host's resolver),
# the network of the Packer build and of Hatchery's QEMU VMs; never the build host's own
# resolv.conf, which debootstrap copies in and which may point at the host's loopback.
printf 'nameserver 10.0.2.3\n' >"$ROOT/etc/resolv.conf"
# DHCP on the (slirp) network: the build's SSH needs it; a Hatchery VM's bootstrap may add
# a static address on top (HATCHERY_NET), `ip addr replace` keeps that idempotent.
mkdir -p "$ROOT/etc/systemd/network"
printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n' >"$ROOT/etc/systemd/network/80-dhcp.network"
# Let network-online.target wait for any one interface, not for every one.
mkdir -p "$ROOT/etc/systemd/system/systemd-networkd-wait-online.service.d"
printf '[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=60\n' \
  >"$ROOT/etc/systemd/system/systemd-networkd-wait-online.service.d/any.conf"
chroot "$ROOT" systemctl enable systemd-networkd.service ssh.service
# No password for root; Packer logs in with a key made for this build only.
chroot "$ROOT" passwd -l root >/dev/null
rm -f "$OUT/build-key" "$OUT/build-key.pub"
ssh-keygen -q -t ed25519 -N '' -C hatchery-packer-build -f "$OUT/build-key"
install -d -m 0700 "$ROOT/root/.ssh"
install -m 0600 "$OUT/build-key.pub" "$ROOT/root/.ssh/authorized_keys"
# The apt lists stay: the Packer build's `apt-get update` then fetches only what changed since
# (seal.sh removes them from the image).
rm -f "$ROOT/var/cache/apt/archives/"*.deb

cp "$(readlink -f "$ROOT/vmlinuz")" "$OUT/vmlinuz"
cp "$(readlink -f "$ROOT/initrd.img")" "$OUT/initrd.img"
chmod 0644 "$OUT/vmlinuz" "$OUT/initrd.img"

echo "==> making the disk ($SIZE ext4, qcow2)"
rm -f "$OUT/base.raw" "$OUT/base.qcow2"
truncate -s "$SIZE" "$OUT/base.raw"
mke2fs -q -t ext4 -L hatchery-root -E root_owner=0:0 -d "$ROOT" "$OUT/base.raw"
qemu-img convert -f raw -O qcow2 "$OUT/base.raw" "$OUT/base.qcow2"
rm -f "$OUT/base.raw"
echo "==> $OUT/base.qcow2 ($(du -h "$OUT/base.qcow2" | cut -f 1) used), vmlinuz, initrd.img, build-key"
