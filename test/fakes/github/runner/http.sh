# shellcheck shell=sh
# Sourced by config.sh and run.sh (test/fakes/github): their one HTTP call, a POST to the
# stand-in GitHub, with whichever client the machine has. A real runner image has curl (the
# real runner's images, packer/debian-runner) and may lack wget; the tiny test guest has only
# busybox's wget. Same rule as bootstrap/linux.sh: curl if present, else wget.
#
#   http_post <seconds> <url> <output file, or - for stdout> <body> [bearer secret]
# <body> is @<file> (its contents) or the data itself. Fails (non-zero) on a network error,
# a timeout or an HTTP error status: the caller decides whether to retry.

# busybox wget's own -T crashes in some builds: it is bounded by `timeout` instead.
with_timeout() {
  if command -v timeout >/dev/null 2>&1; then timeout "$@"; else shift && "$@"; fi
}

http_post() {
  _hp_secs=$1 _hp_url=$2 _hp_out=$3 _hp_body=$4 _hp_secret=${5:-}
  if command -v curl >/dev/null 2>&1; then
    # --data-binary takes @file as wget's --post-file does; -f fails on HTTP errors like wget.
    set -- -fs -m "$_hp_secs" -o "$_hp_out" -H 'Content-Type: text/plain' --data-binary "$_hp_body"
    [ -n "$_hp_secret" ] && set -- "$@" -H "Authorization: Bearer $_hp_secret"
    curl "$@" "$_hp_url"
  else
    case $_hp_body in
      @*) set -- -q -O "$_hp_out" --header 'Content-Type: text/plain' --post-file "${_hp_body#@}" ;;
      *) set -- -q -O "$_hp_out" --header 'Content-Type: text/plain' --post-data "$_hp_body" ;;
    esac
    [ -n "$_hp_secret" ] && set -- "$@" --header "Authorization: Bearer $_hp_secret"
    with_timeout "$_hp_secs" wget "$@" "$_hp_url"
  fi
}
