#!/bin/sh
# Stand-in for the GitHub Actions runner's run.sh (test/fakes/github): same command line, same
# console lines, but it talks plain HTTP to the stand-in GitHub (/_runner/…) and runs a job's
# script with `sh -c`. POSIX sh; needs only busybox (base64, sed, date, setsid, and wget + timeout
# or curl: http.sh).
#
#   ./run.sh --jitconfig <encoded>   a single-use runner (the config is base64 of KEY=VALUE lines)
#   ./run.sh                         the runner configured by ./config.sh (.runner)
#
# Exit status: 0 after an ephemeral runner's job (or when stopped cleanly), 1 on errors
# (registration gone, bad credentials, server unreachable), 130/143 when stopped by SIGINT/SIGTERM.

ROOT=$(cd "$(dirname "$0")" && pwd) || exit 1
VERSION=$(cat "$ROOT/VERSION" 2>/dev/null) || VERSION=2.999.0

ts() { date -u '+%Y-%m-%d %H:%M:%SZ'; }
say() { printf '%s: %s\n' "$(ts)" "$*"; }
die() {
  say "Error: $*" >&2
  cleanup
  exit 1
}

usage() {
  cat <<'EOF'
Commands:
 ./config.sh         Configures the runner
 ./config.sh remove  Unconfigures the runner
 ./run.sh            Runs the runner interactively. Does not require any options.

Options:
 --jitconfig <config>  Run the runner with a just-in-time configuration
 --help                Prints the help for each command
EOF
}

JIT=
while [ $# -gt 0 ]; do
  case $1 in
    --jitconfig)
      [ $# -ge 2 ] || { echo "--jitconfig requires a value" >&2; exit 1; }
      JIT=$2
      shift 2
      ;;
    --jitconfig=*) JIT=${1#--jitconfig=}; shift ;;
    --once | --check) shift ;; # accepted, like the real runner (deprecated there)
    --startuptype) shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "Unrecognized command-line input arguments: '$1'." >&2; usage >&2; exit 1 ;;
  esac
done

STATE=
CHILD=
JOB_PID=
HB_PID=
JOB_ID=
cleanup() {
  [ -n "$HB_PID" ] && kill "$HB_PID" 2>/dev/null
  [ -n "$STATE" ] && rm -rf "$STATE"
  HB_PID=
  STATE=
}

# --- configuration: KEY=VALUE lines, parsed, never sourced ---
umask 077
STATE=$(mktemp -d "${TMPDIR:-/tmp}/fake-runner.XXXXXX") || { echo "cannot create a temp dir" >&2; exit 1; }
if [ -n "$JIT" ]; then
  CONFIG=$STATE/config
  printf '%s' "$JIT" | base64 -d >"$CONFIG" 2>/dev/null || die "Invalid --jitconfig: not base64"
else
  CONFIG=$ROOT/.runner
  [ -f "$CONFIG" ] || die "Not configured. Run config.sh to configure the runner."
fi
RUNNER_ID='' RUNNER_NAME='' SERVER_URL='' RUNNER_SECRET='' EPHEMERAL=0 WORK_FOLDER=_work MARK=''
while IFS= read -r line || [ -n "$line" ]; do
  case $line in
    HATCHERY_FAKE_RUNNER=*) MARK=${line#*=} ;;
    RUNNER_ID=*) RUNNER_ID=${line#*=} ;;
    RUNNER_NAME=*) RUNNER_NAME=${line#*=} ;;
    SERVER_URL=*) SERVER_URL=${line#*=} ;;
    RUNNER_SECRET=*) RUNNER_SECRET=${line#*=} ;;
    EPHEMERAL=*) EPHEMERAL=${line#*=} ;;
    WORK_FOLDER=*) WORK_FOLDER=${line#*=} ;;
  esac
done <"$CONFIG"
[ -n "$JIT" ] && EPHEMERAL=1 && rm -f "$CONFIG"
[ "$MARK" = 1 ] || die "Invalid runner configuration (not a stand-in runner config)"
case $RUNNER_ID in '' | *[!0-9]*) die "Invalid runner configuration: RUNNER_ID" ;; esac
case $RUNNER_SECRET in '' | *[!0-9a-f]*) die "Invalid runner configuration: RUNNER_SECRET" ;; esac
case $SERVER_URL in http://?*) ;; *) die "Invalid runner configuration: SERVER_URL must be http://…" ;; esac
case $WORK_FOLDER in /*) WORK=$WORK_FOLDER ;; *) WORK=$ROOT/$WORK_FOLDER ;; esac
BASE=$SERVER_URL/_runner/$RUNNER_ID

# --- HTTP: curl or wget (http.sh) ---
# shellcheck source-path=SCRIPTDIR source=http.sh
. "$ROOT/http.sh"

# call <path> <seconds> [file to post]: POSTs to $BASE/<path>, the answer lands in $STATE/resp.
# Runs in the background and waits, so that a signal's trap runs at once.
call() {
  rm -f "$STATE/resp"
  if [ -n "${3:-}" ]; then _c_body=@$3; else _c_body=version=$VERSION; fi
  http_post "$2" "$BASE/$1" "$STATE/resp" "$_c_body" "$RUNNER_SECRET" </dev/null &
  CHILD=$!
  wait "$CHILD"
  _rc=$?
  CHILD=
  [ "$_rc" = 0 ] && [ -f "$STATE/resp" ] || return 1
  ANSWER=
  IFS= read -r ANSWER <"$STATE/resp"
  return 0
}

pause() {
  sleep "$1" &
  CHILD=$!
  wait "$CHILD"
  CHILD=
}

# A registration the server no longer has, or credentials it refuses: nothing left to do.
fatal_answer() {
  case $ANSWER in
    gone) die "The runner registration has been deleted from the server, please re-configure." ;;
    denied) die "Access denied: the server refused the runner's credentials." ;;
  esac
}

disconnect() {
  [ -n "$STATE" ] || return 0
  call disconnect 5 || true
}

stop_job() {
  if [ -n "$JOB_PID" ]; then
    kill -TERM "-$JOB_PID" 2>/dev/null || kill -TERM "$JOB_PID" 2>/dev/null
    JOB_PID=
  fi
  if [ -n "$HB_PID" ]; then
    rm -f "$STATE/heartbeat"
    kill "$HB_PID" 2>/dev/null
    HB_PID=
  fi
}

on_signal() {
  trap '' INT TERM HUP
  [ -n "$CHILD" ] && kill "$CHILD" 2>/dev/null
  CHILD=
  echo "Exiting..."
  stop_job
  disconnect
  cleanup
  exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP

# --- connect ---
tries=0
while ! call connect 30; do
  tries=$((tries + 1))
  [ "$tries" -ge 5 ] && die "Cannot connect to the server at $SERVER_URL."
  pause "$tries"
done
fatal_answer
case $ANSWER in
  ok) ;;
  *) die "Failed to create a session: ${ANSWER#error }" ;;
esac
echo
echo "√ Connected to GitHub"
echo
echo "Current runner version: '$VERSION'"
say "Listening for Jobs"

# --- jobs ---
value() { sed -n "s/^$1=//p" "$STATE/job" | head -n 1; }

run_job() {
  cp "$STATE/resp" "$STATE/job"
  JOB_ID=$(value id)
  job_name=$(value name)
  job_repo=$(value repository)
  case $JOB_ID in '' | *[!0-9]*) say "Error: malformed job assignment" >&2; return 1 ;; esac
  value script_b64 | base64 -d >"$STATE/job.sh" 2>/dev/null || : >"$STATE/job.sh"
  say "Running job: $job_name"
  mkdir -p "$WORK" 2>/dev/null

  # Heartbeats while the job runs: a runner that goes silent is lost.
  : >"$STATE/heartbeat"
  (
    trap - INT TERM HUP
    while [ -f "$STATE/heartbeat" ]; do
      i=0
      while [ "$i" -lt 5 ] && [ -f "$STATE/heartbeat" ]; do sleep 1; i=$((i + 1)); done
      [ -f "$STATE/heartbeat" ] || break
      http_post 10 "$BASE/jobs/$JOB_ID/heartbeat" "$STATE/heartbeat.out" '' "$RUNNER_SECRET"
    done
  ) </dev/null >/dev/null 2>&1 &
  HB_PID=$!

  # The job runs in its own session (its whole process tree can be stopped) where setsid exists.
  if command -v setsid >/dev/null 2>&1; then setsid=setsid; else setsid=; fi
  (
    cd "$WORK" || exit 1
    exec env CI=true GITHUB_ACTIONS=true GITHUB_JOB="$job_name" GITHUB_REPOSITORY="$job_repo" \
      RUNNER_NAME="$RUNNER_NAME" RUNNER_TEMP="$STATE" RUNNER_WORKSPACE="$WORK" \
      $setsid sh -c "$(cat "$STATE/job.sh")"
  ) </dev/null >"$STATE/job.out" 2>&1 &
  JOB_PID=$!
  wait "$JOB_PID"
  code=$?
  JOB_PID=
  rm -f "$STATE/heartbeat"
  kill "$HB_PID" 2>/dev/null
  HB_PID=
  if [ "$code" = 0 ]; then result=Succeeded; else result=Failed; fi

  head -c 65536 "$STATE/job.out" >"$STATE/job.report"
  tries=0
  until call "jobs/$JOB_ID/complete?result=$result&exit_code=$code" 30 "$STATE/job.report"; do
    tries=$((tries + 1))
    [ "$tries" -ge 5 ] && break
    pause "$tries"
  done
  JOB_ID=
  say "Job $job_name completed with result: $result"
}

fails=0
while :; do
  if ! call poll 60; then
    fails=$((fails + 1))
    [ "$fails" = 1 ] && say "Runner connect error: the server at $SERVER_URL did not answer. Retrying until reconnected."
    [ "$fails" -ge 30 ] && die "Lost the connection to the server at $SERVER_URL."
    pause $((fails < 5 ? fails : 5))
    continue
  fi
  [ "$fails" -gt 0 ] && say "Runner reconnected."
  fails=0
  fatal_answer
  case $ANSWER in
    none) ;;
    job)
      run_job
      if [ "$EPHEMERAL" = 1 ]; then
        disconnect
        cleanup
        exit 0
      fi
      ;;
    *) pause 1 ;;
  esac
done
