#!/usr/bin/env bash
# CI step: cross-build outpost for arm64 (aarch64) with Debian multiarch packages, then run the
# unit and integration suites under qemu-aarch64-static (the cross file's exe_wrapper; the
# integration tests start a native /usr/sbin/mosquitto on loopback themselves).
#
#   .ci/cross-arm64.sh [BUILD_DIR]        (default build-arm64; as root on Debian 12)
#
# Leaves BUILD_DIR/meson-logs/testlog.json for tools/test-tally.py. Fails when the build fails,
# when a test fails, and when no test ran at all: without a working exe_wrapper meson skips
# every test of a cross build and still exits 0 ("Ok: 0").
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

build=${1:-build-arm64}
cross=cross/aarch64-linux-gnu.ini

# --- Toolchain and arm64 dev packages -------------------------------------------------------
native=(
  meson ninja-build cmake python3 g++-aarch64-linux-gnu qemu-user-static
  libcli11-dev nlohmann-json3-dev          # header-only, Architecture: all
  mosquitto                                 # native broker for the integration tests
)
arm64=(
  pkgconf:arm64                             # /usr/bin/aarch64-linux-gnu-pkg-config
  libsqlitecpp-dev:arm64 libsqlite3-dev:arm64
  libpaho-mqttpp-dev:arm64 libpaho-mqtt-dev:arm64 libssl-dev:arm64
  libgtest-dev:arm64 libgmock-dev:arm64
)
missing=()
for p in "${native[@]}" "${arm64[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "cross-arm64: installing ${missing[*]}" >&2
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $sudo dpkg --add-architecture arm64
  fi
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -q
  $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
fi

# --- Cross build ----------------------------------------------------------------------------
# Benchmarks and examples are not needed to run the suites; the library, the CLI and the tests
# are. -Dmqtt=enabled: a cross build that silently lost MQTT would skip the integration suite.
# -Drabbitmq=disabled: the RabbitMQ tests check the broker's behaviour, which the native runs
# cover; under qemu they would only add their node start-ups (15-50 s each) and an emulated
# 10,000-record drain twice. The contract suite's other sides (mosquitto, aedes) still run here.
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" --cross-file "$cross" --wrap-mode=nofallback -Dwerror=true \
    -Dmqtt=enabled -Dtests=true -Dtools=true -Dbench=false -Dexamples=false -Drabbitmq=disabled
fi
ninja -C "$build" -j2

# --- Tests under qemu-user ------------------------------------------------------------------
# LeakSanitizer cannot run under qemu-user; CPU-bound code is 8-10x slower there.
export ASAN_OPTIONS=detect_leaks=0
# tests/cli runs the real `outpost` binary with execv($OUTPOST_BIN): the test itself runs under
# qemu, but without binfmt_misc the kernel refuses to exec the aarch64 tool (exit 127). So
# OUTPOST_BIN points at a script that starts the tool under qemu; meson's --wrapper sets it (the
# wrapper runs after meson applied the test's own env, so its setting wins).
bin_wrapper="$PWD/$build/outpost-under-qemu.sh"
printf '#!/bin/sh\nexec qemu-aarch64-static "%s" "$@"\n' "$PWD/$build/tools/cli/outpost" \
  > "$bin_wrapper"
chmod 755 "$bin_wrapper"

rm -f "$build"/meson-logs/testlog*.json
status=0
meson test -C "$build" --no-rebuild --print-errorlogs --num-processes 2 \
  --timeout-multiplier 4 --wrapper "env OUTPOST_BIN=$bin_wrapper" \
  --suite unit --suite integration || status=$?
# With --wrapper, meson 1.0 names its logs after the wrapper (testlog-env.*): rename them to the
# usual testlog.* that .ci/run hands to tools/test-tally.py.
for f in "$build"/meson-logs/testlog-env.*; do
  [ -e "$f" ] && mv -f "$f" "${f/testlog-env./testlog.}"
done

# Fail when nothing ran: count the tests meson actually executed (not SKIP), and the gtest cases.
python3 - "$build/meson-logs/testlog.json" <<'EOF' || status=1
import json, sys
path = sys.argv[1]
try:
    entries = [json.loads(l) for l in open(path, encoding="utf-8", errors="replace") if l.strip()]
except FileNotFoundError:
    print(f"cross-arm64: {path} missing: no test ran"); sys.exit(1)
ran = [e for e in entries if e.get("result") not in ("SKIP",)]
skipped = len(entries) - len(ran)
print(f"cross-arm64: {len(ran)} test binaries ran, {skipped} skipped")
if not ran:
    print("cross-arm64: FAILED: no test ran (exe_wrapper missing or not working?)"); sys.exit(1)
if skipped:
    print("cross-arm64: FAILED: tests were skipped: " +
          ", ".join(e.get("name", "?") for e in entries if e.get("result") == "SKIP")); sys.exit(1)
EOF
python3 tools/test-tally.py "$build/meson-logs/testlog.json" || status=1

# --- Install and link, as for a device image ------------------------------------------------
# meson install --destdir into a staging dir, then an app cross-compiled against it with
# aarch64-linux-gnu-pkg-config (PKG_CONFIG_SYSROOT_DIR = the staging dir), run under qemu, and
# the installed aarch64 CLI reading the app's file.
opt() {
  meson introspect "$build" --buildoptions |
    python3 -c "import json, sys; print(next(o['value'] for o in json.load(sys.stdin) if o['name'] == '$1'))"
}
echo "::: cross-arm64: install + pkg-config consumer"
CXX=aarch64-linux-gnu-g++ PKG_CONFIG=aarch64-linux-gnu-pkg-config RUNNER=qemu-aarch64-static \
  tests/install/install-pkgconfig.sh "$build" . "$(opt prefix)" "$(opt libdir)" "$(opt bindir)" \
  true true | grep -E '^(--- (consumer|pkg-config --libs:)|install-pkgconfig)' || status=1
exit $status
