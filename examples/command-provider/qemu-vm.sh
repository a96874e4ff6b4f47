#!/bin/sh
# A sample executable for Hatchery's `command` provider (docs/providers/command.md): each VM is a
# daemonized qemu-system-x86_64 on this host, booted as the built-in qemu provider boots it.
# Hatchery runs this script once per call with one JSON request on stdin; it answers one JSON
# object on stdout. Copy it as the start of a script for your own hypervisor.
#
#   [providers.cmd]
#   kind = "command"
#   command = ["/opt/hatchery/examples/command-provider/qemu-vm.sh",
#              "--state-dir", "/var/lib/hatchery/cmd-vms", "--images-dir", "/var/lib/hatchery/images"]
#
# Options: --accel tcg (default) | kvm, --qemu <binary> (default qemu-system-x86_64).
# State: one directory per VM under --state-dir: meta.json (name, owner, tags), qemu.pid, the
# guest channel's socket, console.log, the disk overlay. That directory is all the script knows,
# so `list` finds every VM after Hatchery restarts; QEMU, daemonized, outlives it.
# Images: --images-dir/<image>/ holds vmlinux (or bzImage), and optionally initrd.gz, disk.qcow2
# (each VM boots a copy-on-write overlay of it) and append (the kernel command line).
# Pool options (vm.options): network = "restricted" (default: no network but the forwards) or
# "open"; forwards = [{guest = "10.0.2.100:80", host = "127.0.0.1:8081"}] (guest → host TCP).
# Secrets: guest_config may hold the one-shot JIT runner config. It goes from stdin to a
# mode-600 file QEMU reads (fw_cfg), deleted once QEMU runs: never onto a command line, stderr
# or stdout. (printf is a shell builtin: `printf '%s' "$REQUEST" | jq …` runs no program with it.)
set -eu
umask 077

STATE_DIR='' IMAGES_DIR='' ACCEL=tcg QEMU=qemu-system-x86_64
usage() {
  echo "usage: $0 --state-dir DIR --images-dir DIR [--accel tcg|kvm] [--qemu BINARY]" >&2
  exit 2
}
while [ $# -ge 2 ]; do
  case $1 in
    --state-dir) STATE_DIR=$2 ;;
    --images-dir) IMAGES_DIR=$2 ;;
    --accel) ACCEL=$2 ;;
    --qemu) QEMU=$2 ;;
    *) usage ;;
  esac
  shift 2
done
if [ $# -ne 0 ] || [ -z "$STATE_DIR" ] || [ -z "$IMAGES_DIR" ]; then usage; fi
case $ACCEL in tcg) ACCEL=tcg,tb-size=32 ;; kvm) ;; *) usage ;; esac
# Paths end up inside QEMU options, where a comma separates options.
case $STATE_DIR$IMAGES_DIR in *,*) echo "$0: directories must not contain a comma" >&2 && exit 2 ;; esac
mkdir -p "$STATE_DIR"
STATE_DIR=$(cd "$STATE_DIR" && pwd) # absolute: the channel path Hatchery connects to

# --- answers -----------------------------------------------------------------------------------
# stdout carries exactly one JSON answer: everything else a program prints goes to stderr, which
# Hatchery keeps (its last lines join the error in the VM's audit trail).

# fail RETRYABLE MESSAGE: an error answer, exit 1. RETRYABLE: true (try again later) or false.
fail() {
  retryable=$1
  shift
  jq -nc --arg m "$*" --argjson r "$retryable" '{error: {message: $m, retryable: $r}}'
  exit 1
}

REQUEST=$(cat)
# req FILTER: a field of the request, as text.
req() { printf '%s' "$REQUEST" | jq -r "$1"; }
TAB=$(printf '\t')

# The fields every request has, with one jq: one line, tab-separated.
IFS=$TAB read -r VERSION OP INSTANCE NAME <<EOF
$(req '[.version, .operation, .instance_id, .name // ""] | @tsv')
EOF
[ "$VERSION" = 1 ] || fail false "this script speaks protocol version 1, not \"$VERSION\""
DIR=$STATE_DIR/$NAME

# --- the VM's files and process ----------------------------------------------------------------

valid_name() {
  case $1 in '' | -* | *[!a-z0-9-]*) return 1 ;; esac
  [ ${#1} -le 63 ]
}

# owner DIR: the installation the VM belongs to (empty if its meta.json is not written yet).
owner() { jq -r .instance_id "$1/meta.json" 2>/dev/null || true; }

# qemu_pid DIR: prints the VM's QEMU pid if it runs. The pid counts only if that process's command
# line names this VM's pidfile: pids are reused. (A dead QEMU not yet reaped has an empty one.)
qemu_pid() {
  read -r pid 2>/dev/null <"$1/qemu.pid" || return 1
  case $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) in
    *" -pidfile $1/qemu.pid "*) echo "$pid" ;;
    *) return 1 ;;
  esac
}

# answer SHAPE NAME…: answers the VMs of these names that exist and are ours, as the protocol
# shows them, in SHAPE (a jq filter on their list): '{vms: .}' or '{vm: .[0]}' (null if none).
# One jq for all of them: jq takes a while to start.
answer() {
  shape=$1
  shift
  running=' '
  for n in "$@"; do
    if qemu_pid "$STATE_DIR/$n" >/dev/null; then running="$running$n "; fi
  done
  for n in "$@"; do cat "$STATE_DIR/$n/meta.json" 2>/dev/null || true; done |
    jq -c -n --arg instance "$INSTANCE" --arg running "$running" --arg state "$STATE_DIR" '[inputs
      | select(.instance_id == $instance)
      | .name as $name
      | {name, instance_id, tags, created_at}
      + if $running | contains(" \($name) ")
        then {status: "running", channel: {kind: "unix", path: "\($state)/\($name)/channel.sock"}}
        else {status: "stopped"} end
    ] | '"$shape"
}

# image_files IMAGE: sets KERNEL, INITRD, DISK, APPEND from the image's directory.
image_files() {
  case $1 in '' | .* | */*) fail false "invalid image name \"$1\"" ;; esac
  dir=$IMAGES_DIR/$1
  KERNEL='' INITRD='' DISK='' APPEND='console=ttyS0 quiet panic=-1'
  for f in vmlinux bzImage; do [ -f "$dir/$f" ] && KERNEL=$(cd "$dir" && pwd)/$f && break; done
  [ -f "$dir/initrd.gz" ] && INITRD=$(cd "$dir" && pwd)/initrd.gz
  [ -f "$dir/disk.qcow2" ] && DISK=$(cd "$dir" && pwd)/disk.qcow2
  [ -f "$dir/append" ] && APPEND=$(cat "$dir/append")
  [ -n "$KERNEL$DISK" ] || fail false "image $1: $dir has neither a kernel (vmlinux, bzImage) nor a disk (disk.qcow2)"
}

# remove_vm: stops QEMU, keeps the console log (for `hatchery vm logs`), removes the directory.
remove_vm() {
  if pid=$(qemu_pid "$DIR"); then
    kill -TERM "$pid" # QEMU quits at once; the guest is thrown away, no clean shutdown needed
    i=0
    while qemu_pid "$DIR" >/dev/null && [ $i -lt 50 ]; do sleep 0.1 && i=$((i + 1)); done
    if qemu_pid "$DIR" >/dev/null; then
      kill -KILL "$pid"
      sleep 1
      if qemu_pid "$DIR" >/dev/null; then return 1; fi
    fi
  fi
  if [ -f "$DIR/console.log" ]; then
    mkdir -p "$STATE_DIR/.console"
    mv "$DIR/console.log" "$STATE_DIR/.console/$NAME.log"
    # Keep the newest 50 (file names are VM names: no surprises for ls).
    # shellcheck disable=SC2012
    ls -t "$STATE_DIR/.console" | tail -n +51 | while read -r old; do rm -f "$STATE_DIR/.console/$old"; done
  fi
  rm -rf "$DIR"
}

# --- operations --------------------------------------------------------------------------------

create() {
  if [ -d "$DIR" ]; then
    who=$(owner "$DIR")
    [ -z "$who" ] || [ "$who" = "$INSTANCE" ] || fail false "VM $NAME belongs to another installation ($who)"
    # Idempotent: a running VM of that name is the answer. Anything else is the leftover of an
    # interrupted create: start over.
    if qemu_pid "$DIR" >/dev/null; then
      answer '{vm: .[0]}' "$NAME"
      return
    fi
    remove_vm || fail true "VM $NAME: a leftover QEMU does not exit"
  fi
  IFS=$TAB read -r image memory cpus network <<EOF
$(req '[.vm.image, .vm.memory_mib, .vm.cpus, .vm.options.network // "restricted"] | @tsv')
EOF
  image_files "$image"
  case $memory$cpus in *[!0-9]*) fail false "cpus and memory_mib must be integers" ;; esac
  netdev=user,id=n0
  case $network in restricted) netdev=$netdev,restrict=on ;; open) ;; *) fail false "options.network: restricted or open, not \"$network\"" ;; esac
  forwards=$(req '.vm.options.forwards // [] | .[] | "\(.guest) \(.host)"')
  while read -r guest host; do
    [ -n "$guest" ] || continue
    for a in "$guest" "$host"; do
      printf '%s\n' "$a" | grep -Eqx '[0-9]{1,3}(\.[0-9]{1,3}){3}:[0-9]{1,5}' ||
        fail false "options.forwards: \"$a\" is not an IPv4 address:port"
    done
    # QEMU runs one `busybox nc` per connection the guest opens to $guest.
    netdev="$netdev,guestfwd=tcp:$guest-cmd:busybox nc ${host%:*} ${host##*:}"
  done <<EOF
$forwards
EOF

  mkdir "$DIR"
  # From here on a failure (or `fail`) removes whatever was made: nothing is left behind.
  trap 'remove_vm' EXIT
  printf '%s' "$REQUEST" | jq --arg now "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    '{name, instance_id, pool: .vm.pool, image: .vm.image, tags: .vm.tags, created_at: $now}' >"$DIR/meta.json"
  # The guest config (docs/guest-protocol.md): how a guest on this host reaches Hatchery, then
  # the request's values. One NAME=VALUE per line: a value with a control character is refused.
  printf '%s' "$REQUEST" | jq -r --arg disk "$DISK" '
    {HATCHERY_VM: .name, HATCHERY_CHANNEL: "virtio:org.hatchery.0", HATCHERY_NET: "static:10.0.2.15/24,10.0.2.2"}
    + (if $disk != "" then {HATCHERY_WORK_DISK: "/dev/vda"} else {} end)
    + .vm.guest_config
    | to_entries[]
    | if (.key | test("^[A-Z][A-Z0-9_]*$")) and (.value | type == "string" and (test("[[:cntrl:]]") | not))
      then "\(.key)=\(.value)"
      else error("guest config \(.key): not a NAME=VALUE line") end' >"$DIR/guest-config"
  req .vm.bootstrap >"$DIR/bootstrap.sh"
  if [ -n "$DISK" ]; then
    qemu-img create -q -f qcow2 -b "$DISK" -F qcow2 "$DIR/disk.qcow2" >&2
  fi

  set -- -name "guest=$NAME" -accel "$ACCEL" -m "${memory}M" -smp "$cpus" \
    -no-reboot -display none -monitor none \
    -serial "file:$DIR/console.log" \
    -netdev "$netdev" -device virtio-net-pci,netdev=n0,romfile= \
    -chardev "socket,id=c0,path=$DIR/channel.sock,server=on,wait=off" \
    -device virtio-serial-pci -device virtserialport,chardev=c0,name=org.hatchery.0 \
    -fw_cfg "name=opt/hatchery/config,file=$DIR/guest-config" \
    -fw_cfg "name=opt/hatchery/bootstrap,file=$DIR/bootstrap.sh" \
    -pidfile "$DIR/qemu.pid" -daemonize
  if [ -n "$KERNEL" ]; then set -- "$@" -kernel "$KERNEL" -append "$APPEND"; fi
  if [ -n "$INITRD" ]; then set -- "$@" -initrd "$INITRD"; fi
  if [ -n "$DISK" ]; then set -- "$@" -drive "file=$DIR/disk.qcow2,format=qcow2,if=virtio,cache=unsafe"; fi
  # -daemonize: this returns once the VM runs (0), or failed to start (its reason on stderr).
  "$QEMU" "$@" </dev/null >&2 || fail true "QEMU did not start (see stderr)"
  rm -f "$DIR/guest-config" # QEMU has read it: the JIT config no longer sits on disk
  trap - EXIT
  answer '{vm: .[0]}' "$NAME"
}

destroy() {
  if [ -d "$DIR" ]; then
    who=$(owner "$DIR")
    [ -z "$who" ] || [ "$who" = "$INSTANCE" ] || fail false "VM $NAME belongs to another installation ($who)"
    remove_vm || fail true "VM $NAME: QEMU does not exit"
  fi
  echo '{}' # an absent VM is destroyed already: success
}

get() {
  answer '{vm: .[0]}' "$NAME" # absent, or another installation's: null
}

list() {
  set --
  for dir in "$STATE_DIR"/*/; do
    dir=${dir%/}
    if [ -d "$dir" ]; then set -- "$@" "${dir##*/}"; fi
  done
  answer '{vms: .}' "$@"
}

console() {
  if [ "$(owner "$DIR")" = "$INSTANCE" ] && [ -f "$DIR/console.log" ]; then
    log=$DIR/console.log
  elif [ -f "$STATE_DIR/.console/$NAME.log" ]; then
    log=$STATE_DIR/.console/$NAME.log
  else
    echo '{"console": null}'
    return
  fi
  tail -c 262144 "$log" | jq -Rsc '{console: .}'
}

prepare() {
  image_files "$(req .image)"
  echo "image $(req .image): ${KERNEL:-no kernel}, ${DISK:-no disk}" >&2 # progress, for `hatchery image build`
  echo '{}'
}

case $OP in
  create | destroy | get | console)
    valid_name "$NAME" || fail false "invalid VM name \"$NAME\""
    $OP
    ;;
  list | prepare) $OP ;;
  *) fail false "operation \"$OP\" is not supported" ;;
esac
