#!/bin/sh
# Last step of debian-runner.pkr.hcl, on the host (shell-local post-processor), after a build
# that succeeded: completes the image in the work dir (the kernel command line, a manifest) and
# moves it to the output dir, replacing an older image there.
#
# Only a complete image ever has the output dir's name: the build runs in a hidden sibling
# (.<name>.partial, which an image name cannot be), and the swap is two renames on one file
# system. Between them the name is briefly absent (a VM created in that instant fails with "no
# such image", never boots half an image); VMs already running keep the old image's files open.
#
# Environment (from the template): WORK_DIR, OUTPUT_DIR, APPEND, INPUTS_HASH, MIRROR,
# SECURITY_MIRROR.
set -eu
: "${WORK_DIR:?}" "${OUTPUT_DIR:?}" "${APPEND:?}" "${MIRROR:?}" "${SECURITY_MIRROR:?}"
FILES="disk.qcow2 bzImage initrd.img append"

printf '%s\n' "$APPEND" >"$WORK_DIR/append"
for f in $FILES; do
  [ -s "$WORK_DIR/$f" ] || { echo "finish: $WORK_DIR/$f is missing or empty" >&2; exit 1; }
done
# What the image was built from, and its files' sizes (build.sh checks them to tell a complete
# image from a damaged one). Written last: its presence means the rest is there.
{
  echo "# debian-runner image (packer/debian-runner)"
  echo "inputs=${INPUTS_HASH:-}"
  echo "built=$(date -u '+%Y-%m-%dT%H:%M:%SZ')"
  echo "mirror=$MIRROR"
  echo "security_mirror=$SECURITY_MIRROR"
  for f in $FILES; do echo "file=$f $(stat -c %s "$WORK_DIR/$f")"; done
} >"$WORK_DIR/manifest.tmp"
mv "$WORK_DIR/manifest.tmp" "$WORK_DIR/manifest"

parent=$(dirname "$OUTPUT_DIR")
old=
if [ -e "$OUTPUT_DIR" ]; then
  old=$(mktemp -d "$parent/.$(basename "$OUTPUT_DIR").old.XXXXXX")
  mv "$OUTPUT_DIR" "$old/"
fi
mv -T "$WORK_DIR" "$OUTPUT_DIR"
[ -z "$old" ] || rm -rf "$old"
echo "image ready in $OUTPUT_DIR: $FILES manifest"
