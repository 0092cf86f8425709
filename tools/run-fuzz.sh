#!/usr/bin/env bash
# run-fuzz.sh BUILD_DIR [SECONDS]: the hostile-input fuzzing of tests/faults/fuzz (issue 12,
# part 9) with libFuzzer.
#
# Sets up BUILD_DIR as a clang build (clang-14, -Dfuzz=true, AddressSanitizer + UBSan, coverage
# on every outpost source) unless it already is one, builds only the fuzz binaries, then runs
# each target for SECONDS (default 60), two at a time (the CI machine has 2 cores). Each target's
# corpus is BUILD_DIR/fuzz-corpus/TARGET, seeded from tests/faults/fuzz/seeds/TARGET/ and
# regressions/TARGET/ (fuzz_db's from make-db-seeds: real outbox files). Prints each target's
# exec/s and coverage. On a crash (or leak, timeout, out-of-memory) the input is copied into
# tests/faults/fuzz/regressions/TARGET/, the replay command is printed and the exit status is 1;
# the kept input then also fails the faults suite's fuzz-replay-TARGET until the library is fixed.
#
# Needs clang-14 and libclang-rt-14-dev (libFuzzer and the sanitizer runtimes).
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 BUILD_DIR [SECONDS]" >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(mkdir -p "$1" && cd "$1" && pwd)
seconds=${2:-60}
fuzz_src=$root/tests/faults/fuzz

# -max_len per target: what its input format needs, kept small so mutations stay dense.
declare -A max_len=([message]=4096 [record]=2048 [cli]=1024 [config]=4096 [db]=65536)
targets=(message record cli config db)

if [ ! -f "$build/build.ninja" ]; then
  # mqtt disabled: no target needs paho, and it halves the build. The fuzzer-no-link coverage
  # hooks go on every source, so libFuzzer sees the library's branches, not only the target's.
  (cd "$root" && CC=clang-14 CXX=clang++-14 CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root} \
    meson setup "$build" --wrap-mode=nofallback -Dwerror=true -Dbench=false -Dexamples=false \
      -Dmqtt=disabled -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
      -Dcpp_args=-fsanitize=fuzzer-no-link)
fi
if ! grep -q "fuzz-message" "$build/build.ninja"; then
  echo "$build is not a -Dfuzz=true clang build dir; use another BUILD_DIR" >&2
  exit 2
fi
ninja -C "$build" $(printf 'tests/faults/fuzz/fuzz-%s ' "${targets[@]}") \
  tests/faults/fuzz/make-db-seeds

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0"
# The database target writes its file (and the store's reserve file) every run: on tmpfs. In a
# directory of this run's own, removed at the end: libFuzzer leaves with _Exit, so the targets'
# own clean-up at exit does not run.
scratch=/dev/shm
[ -d "$scratch" ] && [ -w "$scratch" ] || scratch=$build
scratch=$(mktemp -d "$scratch/outpost-fuzz-run.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export TMPDIR=$scratch

work=$build/fuzz-run
rm -rf "$work"
mkdir -p "$work"
for t in "${targets[@]}"; do
  corpus=$build/fuzz-corpus/$t
  mkdir -p "$corpus" "$work/$t/artifacts"
  for kind in seeds regressions; do
    if [ -d "$fuzz_src/$kind/$t" ]; then
      find "$fuzz_src/$kind/$t" -maxdepth 1 -type f ! -name '.*' -exec cp -n {} "$corpus/" \;
    fi
  done
done
"$build/tests/faults/fuzz/make-db-seeds" "$build/fuzz-corpus/db" >/dev/null

run_one() {
  local t=$1
  local exe=$build/tests/faults/fuzz/fuzz-$t
  local rc=0
  (cd "$work/$t" && "$exe" -max_total_time="$seconds" -max_len="${max_len[$t]}" -timeout=30 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/$t/artifacts/" \
    "$build/fuzz-corpus/$t") >"$work/$t/log" 2>&1 || rc=$?
  echo "$rc" >"$work/$t/rc"
}

# Two at a time: start a target whenever fewer than two run.
started=$(date +%s)
running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge 2 ]; then
    wait -n || true
    running=$((running - 1))
  fi
  echo "fuzz $t: ${seconds}s, -max_len=${max_len[$t]}"
  run_one "$t" &
  running=$((running + 1))
done
wait
echo "fuzzing took $(( $(date +%s) - started ))s"

failed=0
for t in "${targets[@]}"; do
  log=$work/$t/log
  rc=$(cat "$work/$t/rc")
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  execs=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  echo "fuzz $t: exit $rc, ${execs:-?} exec/s, cov: ${cov:-?}, ft: ${ft:-?}, corpus ${corp:-?}"
  if [ "$rc" != 0 ]; then
    failed=1
    mkdir -p "$fuzz_src/regressions/$t"
    found=0
    for a in "$work/$t/artifacts"/*; do
      [ -f "$a" ] || continue
      found=1
      cp "$a" "$fuzz_src/regressions/$t/"
      kept=$fuzz_src/regressions/$t/$(basename "$a")
      echo "fuzz $t: FOUND $(basename "$a"), kept as $kept"
      echo "  replay: $build/tests/faults/fuzz/fuzz-$t $kept"
      echo "  or, in the normal build: meson test -C build fuzz-replay-$t --print-errorlogs"
    done
    [ "$found" = 1 ] || echo "fuzz $t: failed without an input to keep"
    echo "---- $log (last 40 lines)"
    tail -n 40 "$log"
  fi
done
exit $failed
