#!/bin/sh
# Set up, then run the whole test suite (unit, integration with real VMs, end to end).
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
npx tsc --noEmit
npx eslint .
exec npm test
