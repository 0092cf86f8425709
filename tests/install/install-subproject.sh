#!/usr/bin/env bash
# Subproject test: a tiny meson project (tests/install/subproject_consumer) gets this source tree
# as subprojects/outpost (a symlink) and uses it through dependency('outpost'), forced to the
# subproject (--force-fallback-for=outpost) even when an outpost is installed on the machine.
# It builds the consumer app and runs it through `meson test`.
#
#   install-subproject.sh SOURCE_DIR [extra meson setup options...]
#
# Registered in meson as suite 'install' (tests/install/meson.build); runs on its own as well.
set -euo pipefail

src=$(cd "$1" && pwd)
shift

tmp=$(mktemp -d "${TMPDIR:-/tmp}/outpost-subproject.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "install-subproject: FAILED: $*" >&2; exit 1; }

proj=$tmp/app
mkdir -p "$proj/subprojects"
cp "$src/tests/install/subproject_consumer/meson.build" "$src/tests/install/consumer/consumer.cpp" \
  "$proj/"
ln -s "$src" "$proj/subprojects/outpost"

# nofallback: the subproject itself must find its dependencies on the system, like CI does.
meson setup "$proj/build" "$proj" --wrap-mode=nofallback --force-fallback-for=outpost "$@" \
  > "$tmp/setup.log" 2>&1 || { cat "$tmp/setup.log" >&2; fail "meson setup"; }
grep -E "Run-time dependency outpost|Dependency outpost|Executing subproject outpost" \
  "$tmp/setup.log" || true
grep -q "Executing subproject outpost" "$tmp/setup.log" ||
  { cat "$tmp/setup.log" >&2; fail "outpost was not taken from the subproject"; }
ninja -C "$proj/build" -j "${OUTPOST_INSTALL_TEST_JOBS:-2}" > "$tmp/build.log" 2>&1 ||
  { cat "$tmp/build.log" >&2; fail "building the consumer"; }
meson test -C "$proj/build" --no-rebuild --print-errorlogs consumer > "$tmp/test.log" 2>&1 ||
  { cat "$tmp/test.log" "$proj/build/meson-logs/testlog.txt" >&2; fail "the consumer failed"; }
grep -q "outpost consumer: 1 pending" "$proj/build/meson-logs/testlog.txt" ||
  fail "the consumer did not report 1 pending"
echo "install-subproject: OK (outpost as a subproject, consumer reported 1 pending)"
