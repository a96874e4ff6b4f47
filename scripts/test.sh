#!/bin/sh
# Set up, then run the whole test suite: type check, lint (eslint + prettier), unit tests,
# integration tests with real QEMU VMs, end-to-end workflows on real VMs.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
echo "==> type check and lint"
npx tsc --noEmit
npm run lint
echo "==> tests"
exec npm test
