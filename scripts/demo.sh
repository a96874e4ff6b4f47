#!/bin/sh
# Quick start: set up, then run one whole three-job workflow against a real VM on the embedded
# defaults (SQLite, QEMU, the tiny guest, the GitHub stand-in).
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec bin/hatchery.js demo "$@"
