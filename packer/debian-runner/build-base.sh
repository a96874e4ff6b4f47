#!/bin/sh
# Builds the base image for debian-runner.pkr.hcl with debootstrap (--variant=minbase), from
# Debian's mirror only:
#   <out>/base.qcow2    a whole-disk ext4 root filesystem (no partition table, no bootloader:
#                       QEMU boots it with -kernel/-initrd)
#   <out>/vmlinuz, <out>/initrd.img   the kernel and initramfs installed in it
#   <out>/build-key     a fresh SSH key for Packer (root); seal.sh removes it from the image
#
#   sudo ./build-base.sh [out-dir]          (default output/base; ~1 min, needs root)
# Environment: SUITE (bookworm), MIRROR (http://deb.debian.org/debian), SIZE (8G),
# EXTRA_PACKAGES (added to the install).
# Needs: debootstrap, e2fsprogs (mke2fs -d), qemu-utils, openssh-client (ssh-keygen).
set -eu

OUT=${1:-output/base}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SIZE=${SIZE:-8G}

# The runner's own dependencies (its installdependencies.sh for Debian 12) and what
# bootstrap/linux.sh uses, plus what a typical job expects (git, sudo, ca-certificates).
PACKAGES="linux-image-amd64 systemd-sysv udev dbus kmod iproute2 openssh-server
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
  rm -rf "$ROOT" "$OUT/base.raw"
}
trap cleanup EXIT INT TERM

echo "==> debootstrap $SUITE (minbase) from $MIRROR"
# shellcheck disable=SC2086 # split on purpose: one package per word
INCLUDE=$(printf '%s,' $PACKAGES)
debootstrap --variant=minbase --include="${INCLUDE%,}" "$SUITE" "$ROOT" "$MIRROR"

echo "==> configuring"
echo hatchery-runner >"$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\thatchery-runner\n' >"$ROOT/etc/hosts"
printf '/dev/vda\t/\text4\tdefaults,noatime,discard\t0\t1\n' >"$ROOT/etc/fstab"
cat >"$ROOT/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
SOURCES
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
rm -rf "$ROOT/var/lib/apt/lists/"* "$ROOT/var/cache/apt/archives/"*.deb

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
