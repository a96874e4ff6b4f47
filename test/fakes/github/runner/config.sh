#!/bin/sh
# Stand-in for the GitHub Actions runner's config.sh (test/fakes/github): registers a runner
# with the stand-in GitHub using a registration token and writes .runner, which ./run.sh uses.
# POSIX sh; needs only busybox (sed, hostname, and wget + timeout or curl: http.sh).
#
#   ./config.sh --url <server>/<owner>/<repo> --token <registration token> [--name N]
#               [--labels a,b] [--ephemeral] [--unattended] [--replace] [--work DIR]
#   ./config.sh remove --token <remove token>

ROOT=$(cd "$(dirname "$0")" && pwd) || exit 1
RUNNER_FILE=$ROOT/.runner

usage() {
  cat <<'EOF'
Commands:
 ./config.sh         Configures the runner
 ./config.sh remove  Unconfigures the runner
 ./run.sh            Runs the runner interactively. Does not require any options.

Config Options:
 --unattended           Disable interactive prompts for missing arguments.
 --url string           Repository to add the runner to.
 --token string         Registration token. Required if unattended
 --name string          Name of the runner to configure (default hostname)
 --runnergroup string   Name of the runner group to add this runner to (default: Default)
 --labels string        Custom labels that will be added to the runner.
 --no-default-labels    Disables adding the default labels: 'self-hosted,Linux,X64'
 --work string          Relative runner work directory (default _work)
 --replace              Replace any existing runner with the same name
 --ephemeral            Configure the runner to only take one job and then let the service un-configure the runner after the job finishes
 --disableupdate        Disable self-hosted runner automatic update to the latest released version
EOF
}

fail() {
  echo "$*" >&2
  exit 1
}

# shellcheck source-path=SCRIPTDIR source=http.sh
. "$ROOT/http.sh"

# post <url> <file> [secret]: POSTs the file, prints the answer.
post() {
  http_post 30 "$1" - "@$2" "${3:-}"
}

CMD=configure
if [ "${1:-}" = remove ]; then
  CMD=remove
  shift
fi
URL='' TOKEN='' NAME='' LABELS='' EPHEMERAL=0 REPLACE=0 WORK=_work NO_DEFAULT_LABELS=0
need() { [ "$1" -ge 2 ] || fail "Option $2 requires a value"; }
while [ $# -gt 0 ]; do
  case $1 in
    --url) need $# "$1"; URL=$2; shift 2 ;;
    --token) need $# "$1"; TOKEN=$2; shift 2 ;;
    --name) need $# "$1"; NAME=$2; shift 2 ;;
    --labels) need $# "$1"; LABELS=$2; shift 2 ;;
    --work) need $# "$1"; WORK=$2; shift 2 ;;
    --runnergroup) need $# "$1"; shift 2 ;;
    --ephemeral) EPHEMERAL=1; shift ;;
    --replace) REPLACE=1; shift ;;
    --no-default-labels) NO_DEFAULT_LABELS=1; shift ;;
    --unattended | --disableupdate) shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; fail "Unrecognized command-line input arguments: '$1'." ;;
  esac
done
case $URL$TOKEN$NAME$LABELS$WORK in *'
'*) fail "Options must not contain newlines" ;; esac

umask 077
BODY=$(mktemp "${TMPDIR:-/tmp}/fake-runner-config.XXXXXX") || fail "cannot create a temp file"
trap 'rm -f "$BODY" "$BODY.out"' EXIT

if [ "$CMD" = remove ]; then
  [ -f "$RUNNER_FILE" ] || fail "Not configured. Run config.sh to configure the runner."
  [ -n "$TOKEN" ] || fail "A remove token is required (--token)."
  RUNNER_ID='' SERVER_URL='' RUNNER_SECRET=''
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in
      RUNNER_ID=*) RUNNER_ID=${line#*=} ;;
      SERVER_URL=*) SERVER_URL=${line#*=} ;;
      RUNNER_SECRET=*) RUNNER_SECRET=${line#*=} ;;
    esac
  done <"$RUNNER_FILE"
  echo
  echo "# Runner removal"
  echo
  printf 'token=%s\n' "$TOKEN" >"$BODY"
  answer=$(post "$SERVER_URL/_runner/$RUNNER_ID/remove" "$BODY" "$RUNNER_SECRET") ||
    fail "Failed: cannot reach the server at $SERVER_URL"
  case $answer in
    ok*) echo "√ Runner removed successfully" ;;
    gone*) echo "The runner registration no longer exists on the server." ;;
    *) fail "Failed: ${answer#error }" ;;
  esac
  rm -f "$RUNNER_FILE"
  echo "√ Removed .credentials"
  echo "√ Removed .runner"
  exit 0
fi

[ -f "$RUNNER_FILE" ] &&
  fail "Cannot configure the runner because it is already configured. To reconfigure the runner, run 'config.sh remove' or './config.sh remove' first."
[ -n "$URL" ] || fail "--url is required (--unattended)"
[ -n "$TOKEN" ] || fail "--token is required (--unattended)"
case $URL in
  http://?*) rest=${URL#http://} ;;
  https://?*) fail "The stand-in GitHub speaks plain http:// only: $URL" ;;
  *) fail "Invalid --url: $URL" ;;
esac
host=${rest%%/*}
SERVER=http://$host
[ -n "$NAME" ] || NAME=$(hostname)

echo
echo "--------------------------------------------------------------------------------"
echo "|          Self-hosted runner registration (stand-in GitHub)                   |"
echo "--------------------------------------------------------------------------------"
echo
echo "# Authentication"
echo
{
  printf 'url=%s\n' "$URL"
  printf 'token=%s\n' "$TOKEN"
  printf 'name=%s\n' "$NAME"
  printf 'labels=%s\n' "$LABELS"
  printf 'ephemeral=%s\n' "$EPHEMERAL"
  printf 'replace=%s\n' "$REPLACE"
  printf 'work=%s\n' "$WORK"
  printf 'no_default_labels=%s\n' "$NO_DEFAULT_LABELS"
} >"$BODY"
post "$SERVER/_runner/register" "$BODY" >"$BODY.out" || fail "Failed: cannot reach the server at $SERVER"
IFS= read -r answer <"$BODY.out"
case $answer in
  ok) ;;
  *) fail "Http response: ${answer#error }" ;;
esac
echo "√ Connected to GitHub"
echo
echo "# Runner Registration"
echo
# The server's lines, but SERVER_URL is where this runner reached it.
sed -e '1d' -e '/^SERVER_URL=/d' "$BODY.out" >"$RUNNER_FILE.tmp"
printf 'SERVER_URL=%s\n' "$SERVER" >>"$RUNNER_FILE.tmp"
mv -f "$RUNNER_FILE.tmp" "$RUNNER_FILE"
echo "√ Runner successfully added"
echo "√ Runner connection is good"
echo
echo "# Runner settings"
echo
echo "√ Settings Saved."
echo
