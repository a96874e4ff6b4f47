#!/bin/sh
# Builds the debian-runner image into <dest>, e.g. <qemu.images_dir>/debian-12 (then a pool's
# `image = "debian-12"` boots it): build-base.sh (debootstrap) into a temp dir, then
# `packer build debian-runner.pkr.hcl`, which moves the finished image to <dest> in one rename
# (finish.sh). Needs root (debootstrap), ~4–5 min under TCG, network access to Debian's mirrors
# only.
#
#   sudo ./build.sh [--force] <dest>   builds unless <dest> is a complete image of the same inputs
#   ./build.sh --hash                  prints the inputs hash and exits (no root needed)
#
# Cached by content: the inputs hash covers every file of this directory (template, scripts,
# files/), the bootstrap, and the settings below; <dest>/manifest records it. Debian's updates
# are not an input: a build takes the mirror's latest packages, so rebuild with --force now and
# then (e.g. weekly) to pick up security updates for an image whose inputs did not change.
#
# Environment: MIRROR (http://deb.debian.org/debian), SECURITY_MIRROR
# (http://deb.debian.org/debian-security), SUITE (bookworm), SIZE (8G), EXTRA_PACKAGES,
# BOOTSTRAP (bootstrap/linux.sh), ACCELERATOR (tcg; kvm where /dev/kvm really works), TMPDIR.
# Builds into one images dir run one at a time (a lock on that directory).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SUITE=${SUITE:-bookworm}
SIZE=${SIZE:-8G}
EXTRA_PACKAGES=${EXTRA_PACKAGES:-}
BOOTSTRAP=${BOOTSTRAP:-$HERE/../../bootstrap/linux.sh}
ACCELERATOR=${ACCELERATOR:-tcg}
export MIRROR SECURITY_MIRROR SUITE SIZE EXTRA_PACKAGES # for build-base.sh

die() {
  echo "build: $*" >&2
  exit 1
}

usage() {
  echo "usage: $0 [--force] <dest-dir> | $0 --hash" >&2
  exit 2
}

FORCE=0 HASH_ONLY=0 DEST=
while [ $# -gt 0 ]; do
  case $1 in
    --force) FORCE=1 ;;
    --hash) HASH_ONLY=1 ;;
    -h | --help) usage ;;
    -*) usage ;;
    *) [ -z "$DEST" ] || usage; DEST=$1 ;;
  esac
  shift
done
[ -r "$BOOTSTRAP" ] || die "no bootstrap at $BOOTSTRAP"

# sha256 of every input, by path relative to this directory, then of the settings.
inputs_hash() {
  (
    cd "$HERE"
    find . -type f ! -path './output/*' ! -path './packer_cache/*' ! -name .gitignore | LC_ALL=C sort |
      while IFS= read -r f; do
        printf '%s %s\n' "$(sha256sum <"$f" | cut -c 1-64)" "$f"
      done
    printf '%s bootstrap\n' "$(sha256sum <"$BOOTSTRAP" | cut -c 1-64)"
    printf 'setting %s=%s\n' suite "$SUITE" mirror "$MIRROR" security_mirror "$SECURITY_MIRROR" \
      size "$SIZE" extra_packages "$EXTRA_PACKAGES"
  ) | sha256sum | cut -c 1-16
}
HASH=$(inputs_hash)
if [ "$HASH_ONLY" = 1 ]; then
  [ -z "$DEST" ] || usage
  echo "$HASH"
  exit 0
fi
[ -n "$DEST" ] || usage

# A complete image of these inputs: the manifest names them, and every file it lists has its size.
is_complete() {
  [ -f "$DEST/manifest" ] && grep -qx "inputs=$HASH" "$DEST/manifest" || return 1
  _n=0
  while IFS=' ' read -r _key _size; do
    case $_key in
      file=*)
        [ "$(stat -c %s "$DEST/${_key#file=}" 2>/dev/null)" = "$_size" ] || return 1
        _n=$((_n + 1))
        ;;
    esac
  done <"$DEST/manifest"
  [ "$_n" -gt 0 ]
}

mkdir -p "$(dirname "$DEST")"
DEST=$(cd "$(dirname "$DEST")" && pwd)/$(basename "$DEST")
PARENT=$(dirname "$DEST")
NAME=$(basename "$DEST")

# One build at a time per images dir: a lock on the directory itself (no lock file left behind).
exec 9<"$PARENT"
if ! flock -n 9; then
  echo "==> waiting for another build in $PARENT"
  flock 9
fi
if [ "$FORCE" = 0 ] && is_complete; then
  echo "==> $DEST is up to date (inputs $HASH; --force rebuilds it with Debian's latest packages)"
  exit 0
fi
command -v packer >/dev/null 2>&1 || die "packer not found: install the Debian package packer"
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, in build-base.sh)"
# Holding the lock, any work dir of this name is a killed build's leftover.
rm -rf "$PARENT/.$NAME.partial" "$PARENT/.$NAME.old."*

TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/hatchery-debian-runner.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
started=$(date +%s)
echo "==> building $DEST (inputs $HASH)"
sh "$HERE/build-base.sh" "$TMP/base"
echo "==> base ready in $(($(date +%s) - started)) s"
if ! (cd "$TMP" && PACKER_CACHE_DIR=$TMP/packer_cache CHECKPOINT_DISABLE=1 packer build -color=false -timestamp-ui \
  -var "base_dir=$TMP/base" -var "output_dir=$DEST" -var "inputs_hash=$HASH" \
  -var "mirror=$MIRROR" -var "security_mirror=$SECURITY_MIRROR" -var "bootstrap=$BOOTSTRAP" \
  -var apt_upgrade=false \
  -var "accelerator=$ACCELERATOR" -var "console_log=$TMP/console.log" \
  "$HERE/debian-runner.pkr.hcl"); then
  echo "build: packer build failed; the build VM's console said, last:" >&2
  tail -n 40 "$TMP/console.log" >&2 2>/dev/null || true
  exit 1
fi
is_complete || die "packer build succeeded but $DEST is not a complete image"
echo "==> $DEST ready in $(($(date +%s) - started)) s"
