#!/bin/sh
# Runs test files with Node's own runner (through tsx) and fails when any test was skipped or
# left todo: a green run means every test ran (a test that skips itself, say for a missing
# package, must not pass CI unnoticed). The runner prints its own report (spec) on stdout and
# writes TAP to a file, whose summary lines `# skipped N` and `# todo N` are checked.
# Usage (from the repository root): scripts/run-tests.sh [node test options] FILE...
set -u
tap=$(mktemp)
trap 'rm -f "$tap"' EXIT
trap 'exit 130' INT TERM
node --import tsx --test \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap" \
  "$@"
status=$?
if ! grep -qx '# skipped 0' "$tap" || ! grep -qx '# todo 0' "$tap"; then
  echo "run-tests: every test must run; the runner reports:" >&2
  grep -E '^# (tests|skipped|todo) ' "$tap" >&2 || echo "  (no summary: the runner did not finish)" >&2
  grep -E '^ *(not )?ok [0-9]+ - .* # (SKIP|TODO)' "$tap" | sed 's/^ */  /' >&2
  [ "$status" -ne 0 ] || status=1
fi
exit "$status"
