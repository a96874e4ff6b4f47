#!/bin/sh
# Set up, then run the whole test suite: type check, lint (eslint + prettier), unit tests,
# integration tests with real QEMU VMs, end-to-end workflows on real VMs.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh

# The OpenStack test files share one real cloud (run alone, each starts its own): it starts now,
# alongside the type check and lint, and goes at the end, failing the run if anything is left.
cloud_root=$(mktemp -d)
cloud="$cloud_root/cloud"
cloud_cli() { node --import tsx test/helpers/openstack-cli.ts "$@"; }
cloud_cli up "$cloud" >"$cloud_root/up.log" 2>&1 &
up=$!
cloud_down() {
  trap - EXIT INT TERM
  wait "$up" 2>/dev/null || true
  cloud_cli down "$cloud" || status=1
  rm -rf "$cloud_root"
}
status=0
# Whatever ends the script (a failed check under set -e, a signal, the end), the cloud goes.
on_exit() {
  rc=$?
  cloud_down
  [ "$rc" -eq 0 ] || status=$rc
  exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

echo "==> type check and lint"
npx tsc --noEmit
npm run lint
echo "==> OpenStack for the tests"
if ! wait "$up"; then
  cat "$cloud_root/up.log" >&2
  status=1
  exit 1
fi
cat "$cloud_root/up.log"
echo "==> tests"
HATCHERY_TEST_OPENSTACK="$cloud" npm test || status=$?
