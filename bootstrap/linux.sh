#!/bin/sh
# Hatchery guest bootstrap: registers a one-shot GitHub Actions runner, reports its lifecycle to
# the service and powers the VM off afterwards. The protocol is docs/guest-protocol.md.
#
#   sh linux.sh <config-file>
#
# POSIX sh: runs under busybox ash, dash and bash. Needs: wget (GNU or busybox) or curl,
# sha256sum, tar with gzip, mkfifo, setsid, ip (or busybox ip) for HATCHERY_NET=static.
# The config is parsed line by line into known variables: never sourced, never eval'd.
# The JIT config is never logged, never passed on any command line but the runner's own
# (`run.sh --jitconfig`, which the real runner requires), and kept in 0600 files only.
#
# Environment (image or test settings, not per-VM config):
#   HATCHERY_IMAGE_CONF  image defaults in the config format (default /etc/hatchery/image.conf),
#                        overridden by the per-VM config; e.g. HATCHERY_RUNNER_USER=runner
#   HATCHERY_STATE_DIR   where the bootstrap keeps its state (default /run/hatchery)
#   HATCHERY_POLL_SECONDS  http channel: how often to poll the host for messages (default 5)

set -u
umask 077

CR=$(printf '\r')
MAIN_PID=$$

CFG_VM=
CFG_RUNNER_URL=
CFG_RUNNER_SHA256=
CFG_JITCONFIG=
CFG_CHANNEL=
CFG_CHANNEL_TOKEN=
CFG_WORK_DIR=/opt/hatchery-runner
CFG_WORK_DISK=
CFG_NET=none
CFG_POWEROFF=1
CFG_JIT_TIMEOUT=600
CFG_RUNNER_USER=

STATE=
RUNNER_PGID=
RUNNER_LAUNCHED=0
WRITER_PID=
READER_PID=
POLLER_PID=
FOLLOW_PID=
JIT_VALUE=
TEARING_DOWN=0
FLUSH_N=0

log() {
  printf 'hatchery: %s\n' "$*" >&2
}

# ---------------------------------------------------------------------------------------------
# Config: one NAME=VALUE per line, NAME matches [A-Z][A-Z0-9_]*, VALUE runs to the end of the line.

config_set() {
  case $1 in
    HATCHERY_VM) CFG_VM=$2 ;;
    HATCHERY_RUNNER_URL) CFG_RUNNER_URL=$2 ;;
    HATCHERY_RUNNER_SHA256) CFG_RUNNER_SHA256=$2 ;;
    HATCHERY_JITCONFIG) CFG_JITCONFIG=$2 ;;
    HATCHERY_CHANNEL) CFG_CHANNEL=$2 ;;
    HATCHERY_CHANNEL_TOKEN) CFG_CHANNEL_TOKEN=$2 ;;
    HATCHERY_WORK_DIR) CFG_WORK_DIR=$2 ;;
    HATCHERY_WORK_DISK) CFG_WORK_DISK=$2 ;;
    HATCHERY_NET) CFG_NET=$2 ;;
    HATCHERY_POWEROFF) CFG_POWEROFF=$2 ;;
    HATCHERY_JIT_TIMEOUT) CFG_JIT_TIMEOUT=$2 ;;
    HATCHERY_RUNNER_USER) CFG_RUNNER_USER=$2 ;;
    *) return 1 ;; # unknown keys are ignored (forward compatibility)
  esac
}

parse_config() {
  [ -r "$1" ] || return 1
  while IFS= read -r _pc_line || [ -n "$_pc_line" ]; do
    _pc_line=${_pc_line%"$CR"}
    _pc_key=${_pc_line%%=*}
    [ "$_pc_key" = "$_pc_line" ] && continue # no '='
    case $_pc_key in
      '' | [!A-Z]* | *[!A-Z0-9_]*) continue ;;
    esac
    config_set "$_pc_key" "${_pc_line#*=}" || :
  done <"$1"
  return 0
}

is_uint() {
  case $1 in '' | *[!0-9]*) return 1 ;; esac
  return 0
}

# ---------------------------------------------------------------------------------------------
# Events. Every producer writes "NAME [DETAIL]" lines into one FIFO (fd 3); a single writer
# numbers them, appends them to $STATE/events and sends them, so lines never interleave.

sanitize() {
  printf '%s' "$*" | tr -d '\000-\037\177' | cut -c 1-400
}

emit() {
  _em_line=$1
  shift
  [ $# -gt 0 ] && _em_line="$_em_line $(sanitize "$*")"
  log "event: $_em_line"
  printf '%s\n' "$_em_line" >&3
}

# Waits (up to $1 s) until the writer has sent everything queued before this call.
flush_channel() {
  [ -n "$WRITER_PID" ] || return 0
  FLUSH_N=$((FLUSH_N + 1))
  printf '!flush %s\n' "$FLUSH_N" >&3
  _fl_i=0
  while [ ! -e "$STATE/flushed.$FLUSH_N" ] && [ "$_fl_i" -lt $(($1 * 10)) ]; do
    sleep 0.1
    _fl_i=$((_fl_i + 1))
  done
  [ -e "$STATE/flushed.$FLUSH_N" ] || log "the host did not take the last events within $1 s"
}

# A message from the host. Runs in the reader (virtio) or the writer (http), never in main.
handle_host_line() {
  _hl=${1%"$CR"}
  case $_hl in
    sync) [ "${_REPLAYING:-0}" = 1 ] || printf '!sync\n' >&3 ;;
    'jit '*) store_jit "${_hl#jit }" ;;
    shutdown)
      log "the host asks for a shutdown"
      kill -s TERM "$MAIN_PID" 2>/dev/null
      ;;
    *) ;; # unknown lines are ignored
  esac
}

store_jit() {
  case $1 in
    '' | *[!A-Za-z0-9+/=_-]*)
      log "ignoring a malformed jit message"
      return 0
      ;;
  esac
  [ -e "$STATE/jit.ready" ] && return 0
  printf '%s' "$1" >"$STATE/jit.tmp" && mv -f "$STATE/jit.tmp" "$STATE/jit.ready"
}

# --- virtio-serial transport: fd 5 is the port, opened once (the port takes one opener) ---

virtio_send() {
  printf '%s\n' "$1" >&5 # blocks while the host is not connected: only the writer does this
}

virtio_send_all() {
  cat "$STATE/events" >&5
}

reader_loop() {
  while :; do
    if IFS= read -r _rd_line <&5; then
      handle_host_line "$_rd_line"
    else
      sleep 0.2 # EOF: no host connected right now
    fi
  done
}

# --- http transport: one POST per message, the response holds host → guest lines ---

# `timeout` bounds busybox wget, whose own -T crashes (busybox 1.35, Debian's static build).
with_timeout() {
  if command -v timeout >/dev/null 2>&1; then timeout "$@"; else shift && "$@"; fi
}

http_post() {
  if command -v curl >/dev/null 2>&1; then
    # The token goes through a file, not the command line.
    curl -fsS -m 15 -H @"$STATE/http-headers" --data-binary "$1" "$CFG_CHANNEL"
  else
    with_timeout 15 wget -q -O - --header "Authorization: Bearer $CFG_CHANNEL_TOKEN" \
      --header 'Content-Type: text/plain' --post-data "$1" "$CFG_CHANNEL"
  fi
}

http_send() {
  _hs_delay=1
  while :; do
    if _hs_resp=$(http_post "$1" 2>/dev/null); then
      [ -n "$_hs_resp" ] && printf '%s\n' "$_hs_resp" | while IFS= read -r _hs_l || [ -n "$_hs_l" ]; do
        handle_host_line "$_hs_l"
      done
      return 0
    fi
    sleep "$_hs_delay"
    [ "$_hs_delay" -lt 16 ] && _hs_delay=$((_hs_delay * 2))
  done
}

# The long-poll: a GET held open by the host until it has a line for us (a warm VM's `jit`) or
# $1 s pass; its lines are handled as a POST's. Used while waiting for the JIT config, so that it
# arrives at once rather than with the next 5-s poll.
http_wait() {
  case $CFG_CHANNEL in *'?'*) _hw_url="$CFG_CHANNEL&wait=$1" ;; *) _hw_url="$CFG_CHANNEL?wait=$1" ;; esac
  if command -v curl >/dev/null 2>&1; then
    _hw_resp=$(curl -fsS -m $(($1 + 5)) -H @"$STATE/http-headers" "$_hw_url" 2>/dev/null) || return 1
  else
    _hw_resp=$(with_timeout $(($1 + 5)) wget -q -O - --header "Authorization: Bearer $CFG_CHANNEL_TOKEN" \
      "$_hw_url" 2>/dev/null) || return 1
  fi
  [ -n "$_hw_resp" ] && printf '%s\n' "$_hw_resp" | while IFS= read -r _hw_l || [ -n "$_hw_l" ]; do
    handle_host_line "$_hw_l"
  done
  return 0
}

http_send_all() {
  _REPLAYING=1
  while IFS= read -r _ha_l; do http_send "$_ha_l"; done <"$STATE/events"
  _REPLAYING=0
}

writer_loop() {
  _wr_seq=0
  while IFS= read -r _wr_item <&3; do
    case $_wr_item in
      '!sync') [ -s "$STATE/events" ] && "${TRANSPORT}_send_all" ;;
      '!poll') [ "$TRANSPORT" = http ] && [ -s "$STATE/events" ] && http_send "$(tail -n 1 "$STATE/events")" ;;
      '!flush '*) : >"$STATE/flushed.${_wr_item#!flush }" ;;
      '!'*) ;;
      *)
        _wr_seq=$((_wr_seq + 1))
        _wr_line="event $_wr_seq $_wr_item"
        printf '%s\n' "$_wr_line" >>"$STATE/events"
        "${TRANSPORT}_send" "$_wr_line"
        ;;
    esac
  done
}

find_virtio_port() {
  for _vp in /sys/class/virtio-ports/*; do
    [ -r "$_vp/name" ] || continue
    if [ "$(cat "$_vp/name")" = "$1" ]; then
      echo "/dev/${_vp##*/}"
      return 0
    fi
  done
  return 1
}

open_channel() {
  case $CFG_CHANNEL in
    virtio:?*)
      _oc_name=${CFG_CHANNEL#virtio:}
      _oc_i=0
      until _oc_dev=$(find_virtio_port "$_oc_name") && [ -c "$_oc_dev" ]; do
        _oc_i=$((_oc_i + 1))
        [ "$_oc_i" -gt 100 ] && { log "no virtio-serial port named $_oc_name"; return 1; }
        sleep 0.1
      done
      exec 5<>"$_oc_dev" || { log "cannot open $_oc_dev"; return 1; }
      TRANSPORT=virtio
      log "channel: virtio-serial port $_oc_name ($_oc_dev)"
      ;;
    http://* | https://*)
      TRANSPORT=http
      printf 'Authorization: Bearer %s\nContent-Type: text/plain\n' "$CFG_CHANNEL_TOKEN" >"$STATE/http-headers"
      log "channel: http (${CFG_CHANNEL%%\?*})"
      ;;
    *)
      log "no usable HATCHERY_CHANNEL (virtio:<port> or http(s)://…)"
      return 1
      ;;
  esac
  writer_loop &
  WRITER_PID=$!
  if [ "$TRANSPORT" = virtio ]; then
    reader_loop &
    READER_PID=$!
  else
    (
      while sleep "${HATCHERY_POLL_SECONDS:-5}"; do printf '!poll\n' >&3; done
    ) </dev/null >/dev/null 2>&1 &
    POLLER_PID=$!
  fi
  return 0
}

# ---------------------------------------------------------------------------------------------
# Ending: flush the channel, stop the helpers, power off.

power_off() {
  sync
  if [ "$CFG_POWEROFF" = 0 ]; then
    log "HATCHERY_POWEROFF=0: staying up"
    exit "$1"
  fi
  log "powering off"
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl --no-block poweroff || poweroff -f
  else
    poweroff -f
  fi
  exit "$1"
}

finish() {
  trap '' INT TERM HUP
  # The last word: on the http channel nothing else tells the host that this VM is done.
  if [ -n "$WRITER_PID" ] && [ "$CFG_POWEROFF" != 0 ]; then emit poweroff; fi
  flush_channel 10
  for _fi_pid in $FOLLOW_PID $POLLER_PID $READER_PID $WRITER_PID; do
    kill "$_fi_pid" 2>/dev/null
  done
  power_off "$1"
}

fail() {
  trap '' INT TERM HUP
  log "error: $*"
  if [ -n "$WRITER_PID" ]; then emit error "$*"; fi
  [ -n "$RUNNER_PGID" ] && stop_runner >/dev/null
  finish 1
}

# ---------------------------------------------------------------------------------------------
# Networking

net_iface() {
  _ni_i=0
  while :; do
    for _ni in /sys/class/net/*; do
      [ -e "$_ni/device" ] && { echo "${_ni##*/}"; return 0; }
    done
    _ni_i=$((_ni_i + 1))
    [ "$_ni_i" -gt 100 ] && return 1
    sleep 0.1
  done
}

ipcmd() {
  if command -v ip >/dev/null 2>&1; then ip "$@"; else busybox ip "$@"; fi
}

write_udhcpc_script() {
  cat >"$1" <<'EOF'
#!/bin/sh
ipc() { if command -v ip >/dev/null 2>&1; then ip "$@"; else busybox ip "$@"; fi; }
case $1 in
  deconfig) ipc addr flush dev "$interface"; ipc link set dev "$interface" up ;;
  bound | renew)
    ipc addr flush dev "$interface"
    ipc addr replace "$ip/${mask:-24}" dev "$interface"
    for r in ${router:-}; do ipc route replace default via "$r" dev "$interface" && break; done
    if [ -n "${dns:-}" ]; then
      for d in $dns; do echo "nameserver $d"; done >/etc/resolv.conf.hatchery && mv -f /etc/resolv.conf.hatchery /etc/resolv.conf
    fi
    ;;
esac
exit 0
EOF
  chmod 0700 "$1"
}

# Prints a reason and fails when the network cannot be set up.
setup_network() {
  case $CFG_NET in
    none | '') return 0 ;;
    dhcp)
      _sn_if=$(net_iface) || { echo "no network interface"; return 1; }
      log "network: DHCP on $_sn_if"
      if command -v udhcpc >/dev/null 2>&1 || command -v busybox >/dev/null 2>&1; then
        write_udhcpc_script "$STATE/udhcpc.sh"
        _sn_udhcpc=udhcpc
        command -v udhcpc >/dev/null 2>&1 || _sn_udhcpc="busybox udhcpc"
        $_sn_udhcpc -i "$_sn_if" -n -q -t 5 -T 2 -s "$STATE/udhcpc.sh" >/dev/null 2>&1 ||
          { echo "DHCP on $_sn_if failed"; return 1; }
      elif command -v dhclient >/dev/null 2>&1; then
        dhclient -1 "$_sn_if" || { echo "DHCP on $_sn_if failed"; return 1; }
      else
        echo "no DHCP client (udhcpc or dhclient)"
        return 1
      fi
      ;;
    static:*)
      _sn_spec=${CFG_NET#static:}
      _sn_addr=${_sn_spec%%,*}
      _sn_gw=
      [ "$_sn_addr" != "$_sn_spec" ] && _sn_gw=${_sn_spec#*,}
      case $_sn_addr in
        *[!0-9./]* | '' | */ | [!0-9]*) echo "bad HATCHERY_NET address $_sn_addr"; return 1 ;;
        */*) ;;
        *) echo "HATCHERY_NET address needs a prefix (…/24)"; return 1 ;;
      esac
      case $_sn_gw in *[!0-9.]*) echo "bad HATCHERY_NET gateway $_sn_gw"; return 1 ;; esac
      _sn_if=$(net_iface) || { echo "no network interface"; return 1; }
      log "network: $_sn_addr${_sn_gw:+ via $_sn_gw} on $_sn_if"
      if ! ipcmd link set dev "$_sn_if" up || ! ipcmd addr replace "$_sn_addr" dev "$_sn_if"; then
        echo "cannot configure $_sn_if"
        return 1
      fi
      if [ -n "$_sn_gw" ]; then
        ipcmd route replace default via "$_sn_gw" dev "$_sn_if" || { echo "cannot add the route via $_sn_gw"; return 1; }
      fi
      ;;
    *)
      echo "unknown HATCHERY_NET (static:<ip>/<prefix>[,<gw>], dhcp or none)"
      return 1
      ;;
  esac
  return 0
}

# ---------------------------------------------------------------------------------------------
# The runner

# Runs a command in the background and waits for it, so that a signal's trap runs at once.
run_bg() {
  "$@" &
  wait "$!"
}

download() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --connect-timeout 30 -o "$2" "$1"
  else
    with_timeout 3600 wget -q -O "$2" "$1"
  fi
}

prepare_work_dir() {
  mkdir -p "$CFG_WORK_DIR" || fail "cannot create the work dir $CFG_WORK_DIR"
  if [ -n "$CFG_WORK_DISK" ]; then
    _pw_i=0
    while [ ! -b "$CFG_WORK_DISK" ]; do
      _pw_i=$((_pw_i + 1))
      [ "$_pw_i" -gt 100 ] && fail "work disk $CFG_WORK_DISK does not appear"
      sleep 0.1
    done
    _pw_mounted=0
    while read -r _pw_dev _pw_rest; do
      [ "$_pw_dev" = "$CFG_WORK_DISK" ] && _pw_mounted=1
    done </proc/mounts
    if [ "$_pw_mounted" = 1 ]; then
      log "work disk $CFG_WORK_DISK is already mounted (the root disk?): using $CFG_WORK_DIR as it is"
    else
      mount -o noatime "$CFG_WORK_DISK" "$CFG_WORK_DIR" || fail "cannot mount the work disk $CFG_WORK_DISK"
      log "work disk $CFG_WORK_DISK mounted at $CFG_WORK_DIR"
    fi
  fi
}

fetch_runner() {
  [ -n "$CFG_RUNNER_URL" ] || fail "no HATCHERY_RUNNER_URL"
  [ -n "$CFG_RUNNER_SHA256" ] || fail "no HATCHERY_RUNNER_SHA256"
  _fr_url=${CFG_RUNNER_URL%%\?*}
  _fr_tar="$CFG_WORK_DIR/.runner.tar.gz"
  _fr_try=1
  log "downloading the runner from $_fr_url"
  while :; do
    rm -f "$_fr_tar"
    run_bg download "$CFG_RUNNER_URL" "$_fr_tar" && break
    [ "$_fr_try" -ge 4 ] && fail "runner download failed after $_fr_try attempts: $_fr_url"
    log "download attempt $_fr_try failed, retrying in $_fr_try s"
    run_bg sleep "$_fr_try"
    _fr_try=$((_fr_try + 1))
  done
  _fr_want=$(printf '%s' "$CFG_RUNNER_SHA256" | tr 'A-F' 'a-f')
  _fr_got=$(sha256sum "$_fr_tar" | cut -d ' ' -f 1)
  [ "$_fr_got" = "$_fr_want" ] || fail "checksum mismatch: expected $_fr_want, got $_fr_got ($_fr_url)"
  log "runner downloaded, sha256 ok"
  run_bg tar -xzf "$_fr_tar" -C "$CFG_WORK_DIR" || fail "cannot unpack the runner tarball"
  rm -f "$_fr_tar"
  [ -f "$CFG_WORK_DIR/run.sh" ] || fail "the runner tarball has no run.sh"
}

await_jit() {
  if [ -n "$CFG_JITCONFIG" ]; then
    store_jit "$CFG_JITCONFIG"
  else
    is_uint "$CFG_JIT_TIMEOUT" || CFG_JIT_TIMEOUT=600
    log "waiting for the JIT config from the host (up to $CFG_JIT_TIMEOUT s)"
    # The runner is unpacked: the host may hand this VM to a job now (a warm VM).
    emit awaiting-jit
    _aj_until=$(($(date +%s) + CFG_JIT_TIMEOUT))
    while [ ! -e "$STATE/jit.ready" ]; do
      [ "$(date +%s)" -ge "$_aj_until" ] && fail "no JIT config within $CFG_JIT_TIMEOUT s"
      if [ "$TRANSPORT" = http ]; then
        run_bg http_wait 10 || run_bg sleep 1
      else
        run_bg sleep 0.1 # the reader stores a `jit` line as it comes
      fi
    done
  fi
  [ -s "$STATE/jit.ready" ] || fail "empty JIT config"
  JIT_VALUE=$(cat "$STATE/jit.ready")
}

# The runner runs in its own session (SIGINT/SIGKILL go to its whole process group), started
# through `setsid setsid` rather than `&`: a shell's background job ignores SIGINT, and the
# runner (like the real one, which stops gracefully on Ctrl-C) must not.
write_wrapper() {
  cat >"$STATE/run-runner.sh" <<'EOF'
# Started in a new session by bootstrap/linux.sh: run.sh runs in the foreground (default
# signal dispositions), its exit status lands in $STATE/runner.code.
STATE=$1 WORK=$2 RUSER=$3
echo $$ >"$STATE/runner.pgid.tmp" && mv -f "$STATE/runner.pgid.tmp" "$STATE/runner.pgid"
trap ':' INT TERM HUP
jit=$(cat "$STATE/jit.ready")
rm -f "$STATE/jit.ready"
cd "$WORK" || exit 1
export RUNNER_ALLOW_RUNASROOT=1
if [ -n "$RUSER" ] && [ "$(id -u)" = 0 ]; then
  setpriv --reuid="$RUSER" --regid="$(id -g "$RUSER")" --init-groups --reset-env \
    ./run.sh --jitconfig "$jit" </dev/null >"$STATE/runner.out" 2>&1
else
  ./run.sh --jitconfig "$jit" </dev/null >"$STATE/runner.out" 2>&1
fi
code=$?
echo "$code" >"$STATE/runner.code.tmp" && mv -f "$STATE/runner.code.tmp" "$STATE/runner.code"
EOF
}

follow_runner() {
  _fo_registered=0
  while IFS= read -r _fo || [ -n "$_fo" ]; do
    _fo=${_fo%"$CR"}
    if [ -n "$JIT_VALUE" ]; then
      case $_fo in *"$JIT_VALUE"*) _fo='(a line holding the JIT config, not shown)' ;; esac
    fi
    printf 'runner| %s\n' "$_fo" >&2
    case $_fo in
      *'Listening for Jobs'*)
        [ "$_fo_registered" = 1 ] || emit registered
        _fo_registered=1
        ;;
      *'Running job: '*) emit job-started "${_fo#*Running job: }" ;;
      *'Job '*' completed with result: '*) emit job-finished "${_fo##*completed with result: }" ;;
    esac
  done
  : >"$STATE/follow.done"
}

start_runner() {
  write_wrapper
  mkfifo "$STATE/runner.out" || fail "cannot create $STATE/runner.out"
  follow_runner <"$STATE/runner.out" &
  FOLLOW_PID=$!
  if [ -n "$CFG_RUNNER_USER" ]; then
    chown -R "$CFG_RUNNER_USER" "$CFG_WORK_DIR" || fail "cannot give $CFG_WORK_DIR to $CFG_RUNNER_USER"
  fi
  log "starting the runner${CFG_RUNNER_USER:+ as $CFG_RUNNER_USER}"
  RUNNER_LAUNCHED=1
  if command -v setsid >/dev/null 2>&1; then
    setsid setsid sh "$STATE/run-runner.sh" "$STATE" "$CFG_WORK_DIR" "$CFG_RUNNER_USER" \
      </dev/null >/dev/null 2>&1 3>&- 5>&-
  else
    log "no setsid: the runner runs as a background job (it may ignore SIGINT)"
    sh "$STATE/run-runner.sh" "$STATE" "$CFG_WORK_DIR" "$CFG_RUNNER_USER" </dev/null >/dev/null 2>&1 3>&- 5>&- &
  fi
  _sr_i=0
  while [ ! -s "$STATE/runner.pgid" ]; do
    _sr_i=$((_sr_i + 1))
    [ "$_sr_i" -gt 100 ] && fail "the runner did not start"
    sleep 0.1
  done
  RUNNER_PGID=$(cat "$STATE/runner.pgid")
}

# True while the process lives (a zombie that nobody reaped yet counts as gone).
pid_alive() {
  kill -0 "$1" 2>/dev/null || return 1
  read -r _pa_stat <"/proc/$1/stat" 2>/dev/null || return 0
  _pa_stat=${_pa_stat##*)}
  case ${_pa_stat# } in Z*) return 1 ;; esac
  return 0
}

runner_alive() {
  [ ! -e "$STATE/runner.code" ] && pid_alive "$RUNNER_PGID"
}

runner_code() {
  if [ -s "$STATE/runner.code" ]; then cat "$STATE/runner.code"; else echo 137; fi
}

signal_group() {
  # dash needs `--` before a negative pid, busybox's kill does not take it.
  kill -s "$1" -- "-$2" 2>/dev/null || kill -s "$1" "-$2" 2>/dev/null
}

# SIGINT to the runner's process group, SIGKILL after 10 s. Prints the exit code.
stop_runner() {
  signal_group INT "$RUNNER_PGID"
  _st_i=0
  while runner_alive && [ "$_st_i" -lt 100 ]; do
    sleep 0.1
    _st_i=$((_st_i + 1))
  done
  if runner_alive; then
    log "the runner ignored SIGINT for 10 s: SIGKILL"
    signal_group KILL "$RUNNER_PGID"
    sleep 0.2
  fi
  signal_group KILL "$RUNNER_PGID" # whatever it left behind
  runner_code
}

wait_follower() {
  _wf_i=0
  while [ ! -e "$STATE/follow.done" ] && [ "$_wf_i" -lt 50 ]; do
    sleep 0.1
    _wf_i=$((_wf_i + 1))
  done
}

# The teardown hook: SIGTERM/SIGINT to the bootstrap, or a `shutdown` message from the host.
teardown() {
  trap '' INT TERM HUP
  [ "$TEARING_DOWN" = 1 ] && return 0
  TEARING_DOWN=1
  log "teardown: stopping the runner"
  emit stopping
  if [ "$RUNNER_LAUNCHED" = 1 ] && [ -z "$RUNNER_PGID" ] && [ -s "$STATE/runner.pgid" ]; then
    RUNNER_PGID=$(cat "$STATE/runner.pgid")
  fi
  if [ -n "$RUNNER_PGID" ]; then
    _td_code=$(stop_runner)
    wait_follower
    emit runner-exited "$_td_code"
  fi
  finish 0
}

main() {
  if [ $# -lt 1 ] || [ ! -r "$1" ]; then
    log "usage: linux.sh <config-file> (no readable config: nothing to do)"
    power_off 2
  fi
  _image_conf=${HATCHERY_IMAGE_CONF:-/etc/hatchery/image.conf}
  [ -r "$_image_conf" ] && parse_config "$_image_conf"
  parse_config "$1"

  _state_base=${HATCHERY_STATE_DIR:-/run/hatchery}
  if ! mkdir -p "$_state_base" || ! STATE=$(mktemp -d "$_state_base/bootstrap.XXXXXX"); then
    log "cannot create a state dir under $_state_base"
    power_off 1
  fi
  if ! mkfifo "$STATE/queue"; then
    log "cannot create the event queue"
    power_off 1
  fi
  exec 3<>"$STATE/queue"
  : >"$STATE/events"
  trap teardown INT TERM HUP

  log "VM ${CFG_VM:-(unnamed)}: bootstrap starting"
  _net_error=$(setup_network) || :
  open_channel || power_off 1
  emit booted
  [ -n "$_net_error" ] && fail "network: $_net_error"

  prepare_work_dir
  fetch_runner
  await_jit
  start_runner

  while runner_alive; do
    run_bg sleep 0.5
  done
  _mn_code=$(runner_code)
  wait_follower
  log "the runner exited with status $_mn_code"
  emit runner-exited "$_mn_code"
  finish 0
}

[ "${HATCHERY_BOOTSTRAP_LIB:-0}" = 1 ] || main "$@"
