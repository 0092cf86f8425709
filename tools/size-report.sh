#!/usr/bin/env bash
# Size-optimized builds (-Os + LTO) and the stripped sizes of what goes on a device: the shared
# library, and the `outpost` command and the sensor_gateway demo linked against the static one.
#
#   tools/size-report.sh [native|arm64]...     (default: native arm64)
#
# Build dirs: build-minsize[-arm64] (default_library=static: CLI and demo) and
# build-minsize[-arm64]-shared (liboutpost.so). arm64 needs what .ci/cross-arm64.sh installs.
# Prints a Markdown table row per file: arch, file, stripped bytes, and the shared libraries it
# needs (NEEDED entries).
set -euo pipefail
cd "$(dirname "$0")/.."

common=(--wrap-mode=nofallback -Dbuildtype=minsize -Db_lto=true -Dtests=false -Dbench=false
        -Dmqtt=enabled)
jobs=${JOBS:-2}

report() {  # arch strip-program file
  local arch=$1 strip=$2 file=$3 tmp needed
  tmp=$(mktemp)
  "$strip" --strip-all -o "$tmp" "$file"
  needed=$(readelf -d "$tmp" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | paste -sd ' ')
  printf '| %s | %s | %s | %s |\n' "$arch" "${file#*/}" "$(stat -c %s "$tmp")" "$needed"
  rm -f "$tmp"
}

for target in "${@:-native arm64}"; do
  for t in $target; do
    case $t in
      native) suffix=""; cross=(); strip=strip; arch=$(uname -m) ;;
      arm64) suffix="-arm64"; cross=(--cross-file cross/aarch64-linux-gnu.ini)
             strip=aarch64-linux-gnu-strip; arch=aarch64 ;;
      *) echo "unknown target $t" >&2; exit 2 ;;
    esac
    static=build-minsize$suffix
    shared=build-minsize$suffix-shared
    [ -f "$static/build.ninja" ] ||
      meson setup "$static" "${cross[@]}" "${common[@]}" -Ddefault_library=static >/dev/null
    [ -f "$shared/build.ninja" ] ||
      meson setup "$shared" "${cross[@]}" "${common[@]}" -Ddefault_library=shared \
        -Dtools=false -Dexamples=false >/dev/null
    ninja -C "$static" -j "$jobs" >/dev/null
    ninja -C "$shared" -j "$jobs" >/dev/null
    report "$arch" "$strip" "$shared/liboutpost.so.0.1.0"
    report "$arch" "$strip" "$static/tools/cli/outpost"
    report "$arch" "$strip" "$static/examples/sensor_gateway"
  done
done
