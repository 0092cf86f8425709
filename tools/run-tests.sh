#!/usr/bin/env bash
# Builds outpost and runs the whole test suite (unit and integration, with a real mosquitto that
# the tests start themselves on free loopback ports). Installs the dependencies first.
#
#   tools/run-tests.sh [BUILD_DIR] [extra meson setup options...]
#
# Exits non-zero on any failure. The per-test-case tally is printed by tools/test-tally.py.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh

build=${1:-build}
shift || true
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" --wrap-mode=nofallback -Dwerror=true "$@"
fi
ninja -C "$build"
status=0
meson test -C "$build" --print-errorlogs --num-processes 2 || status=$?
python3 tools/test-tally.py "$build/meson-logs/testlog.json" || status=1
exit $status
