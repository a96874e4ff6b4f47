#!/bin/sh
# A private libvirtd for Hatchery's vagrant provider (and its tests), in its own mount namespace.
#
#   scripts/libvirt.sh start DIR    start it (idempotent); prints the URI to give the provider
#   scripts/libvirt.sh stop DIR     destroy and undefine every domain, stop libvirtd, end every
#                                   process left in its namespace (QEMU outlives libvirtd)
#   scripts/libvirt.sh status DIR   exit 0 and print the URI while it runs, exit 1 otherwise
#   scripts/libvirt.sh uri DIR      the URI (qemu:///system?socket=DIR/run/libvirt-sock)
#
# Everything libvirt writes lives under DIR (bind-mounted over /etc/libvirt, /var/lib/libvirt,
# /var/log/libvirt, /var/cache/libvirt, /run/libvirt; /run itself is a private tmpfs for the pid
# files), so it coexists with a system libvirtd and with other instances, and `rm -rf DIR` after
# `stop` removes every trace. The network namespace is the host's on purpose: guests reach the
# service (HTTP guest channel, runner download) on the host's loopback through slirp's 10.0.2.2
# or a forward, and production guests need the host's outbound network
# (docs/adr/2026-12-02-vagrant-provider.md). Needs root (namespaces, bind mounts).
#
# qemu.conf: `stdio_handler = "file"` (no virtlogd), `cgroup_controllers = []` (QEMU stays in
# the caller's cgroup), `user = "root"` (QEMU reads the box kernel under VAGRANT_HOME, mode 700),
# `seccomp_sandbox = 0` (a `restricted` pool's guest forwards run one helper process per
# connection, which QEMU's spawn=deny sandbox forbids), `security_driver = "none"`.
set -eu

usage() {
  echo "usage: $0 start|stop|status|uri DIR" >&2
  exit 2
}
[ $# -eq 2 ] || usage
CMD=$1
case $2 in
  /*) S=$2 ;;
  *) S=$(pwd)/$2 ;;
esac
SOCK=$S/run/libvirt-sock
URI="qemu:///system?socket=$SOCK"

# The pid of the namespace's init (unshare's child, which execs libvirtd), if it still runs.
ns_pid() {
  [ -s "$S/ns.pid" ] || return 1
  pid=$(cat "$S/ns.pid")
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  # A recycled pid is not ours: the namespace recorded at start must match.
  [ "$(readlink "/proc/$pid/ns/mnt" 2>/dev/null)" = "$(cat "$S/ns.mnt" 2>/dev/null)" ] || return 1
  echo "$pid"
}

# Every process in our mount namespace (libvirtd, QEMU, helpers).
ns_members() {
  want=$(cat "$S/ns.mnt" 2>/dev/null) || return 0
  [ -n "$want" ] || return 0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$want" ] && echo "${p#/proc/}"
  done
  return 0
}

running() {
  ns_pid >/dev/null && [ -S "$SOCK" ]
}

start() {
  if running; then
    echo "$URI"
    return 0
  fi
  for t in unshare libvirtd virsh; do
    command -v "$t" >/dev/null 2>&1 || {
      echo "$t not found: install the Debian packages libvirt-daemon-system libvirt-clients" >&2
      exit 1
    }
  done
  mkdir -p "$S/run" "$S/etc" "$S/lib/images" "$S/log" "$S/cache"
  chmod 0700 "$S"
  rm -f "$S/ns.pid" "$S/ns.mnt" "$SOCK"
  if [ ! -e "$S/etc/.hatchery" ]; then
    cp -a /etc/libvirt/. "$S/etc/"
    # A network set to autostart would create a bridge and dnsmasq in the host's namespace.
    rm -f "$S"/etc/qemu/networks/autostart/*
    cat >>"$S/etc/qemu.conf" <<'EOF'

# --- Hatchery (scripts/libvirt.sh) ---
stdio_handler = "file"
cgroup_controllers = [ ]
user = "root"
group = "root"
seccomp_sandbox = 0
security_driver = "none"
EOF
    : >"$S/etc/.hatchery"
  fi
  # setsid: the daemon leaves the caller's session (a test runner, a shell); the namespace's
  # first process mounts, records its pid, then becomes libvirtd.
  # shellcheck disable=SC2016 # expanded by the inner shell
  setsid unshare --mount --propagation private --fork -- sh -c '
    S=$1
    mount -t tmpfs -o mode=0755 tmpfs /run
    mkdir -p /run/libvirt /run/lock
    mount --bind "$S/run" /run/libvirt
    mount --bind "$S/etc" /etc/libvirt
    mkdir -p /var/lib/libvirt /var/log/libvirt /var/cache/libvirt
    mount --bind "$S/lib" /var/lib/libvirt
    mount --bind "$S/log" /var/log/libvirt
    mount --bind "$S/cache" /var/cache/libvirt
    echo $$ >"$S/ns.pid.tmp"
    exec libvirtd' sh "$S" >"$S/libvirtd.out" 2>&1 </dev/null &
  i=0
  until [ -S "$SOCK" ] && [ -s "$S/ns.pid.tmp" ]; do
    i=$((i + 1))
    if [ $i -gt 300 ]; then
      echo "libvirtd did not start within 30 s; $S/libvirtd.out says:" >&2
      tail -n 20 "$S/libvirtd.out" >&2
      exit 1
    fi
    sleep 0.1
  done
  pid=$(cat "$S/ns.pid.tmp")
  readlink "/proc/$pid/ns/mnt" >"$S/ns.mnt"
  mv "$S/ns.pid.tmp" "$S/ns.pid"
  echo "$URI"
}

stop() {
  if running; then
    for d in $(virsh -c "$URI" list --all --name 2>/dev/null); do
      virsh -c "$URI" destroy "$d" >/dev/null 2>&1 || :
      virsh -c "$URI" undefine "$d" --nvram >/dev/null 2>&1 || virsh -c "$URI" undefine "$d" >/dev/null 2>&1 || :
    done
  fi
  if pid=$(ns_pid); then
    kill -TERM "$pid" 2>/dev/null || :
    i=0
    while [ -d "/proc/$pid" ] && [ $i -lt 100 ]; do
      sleep 0.1
      i=$((i + 1))
    done
  fi
  # Whatever is left in the namespace (a QEMU of a domain libvirt could not destroy, a helper).
  members=$(ns_members)
  if [ -n "$members" ]; then
    # shellcheck disable=SC2086 # one pid per word
    kill -KILL $members 2>/dev/null || :
    i=0
    while [ -n "$(ns_members)" ] && [ $i -lt 100 ]; do
      sleep 0.1
      i=$((i + 1))
    done
  fi
  left=$(ns_members)
  if [ -n "$left" ]; then
    echo "processes still in the namespace: $left" >&2
    exit 1
  fi
  rm -f "$S/ns.pid" "$S/ns.mnt" "$SOCK"
}

case $CMD in
  start) start ;;
  stop) stop ;;
  status)
    running || exit 1
    echo "$URI"
    ;;
  uri) echo "$URI" ;;
  *) usage ;;
esac
