#!/usr/bin/env bash
# Install test: `meson install --destdir` into a temp dir, check what landed there (library,
# headers, outpost.pc, the CLI), then build tests/install/consumer/consumer.cpp out of tree against
# that copy with `pkg-config --cflags --libs outpost` and run it: an app opens an Outbox, adds a
# message in a transaction, counts it. Then the installed CLI reads the app's file.
#
#   install-pkgconfig.sh BUILD_DIR SOURCE_DIR PREFIX LIBDIR BINDIR MQTT(true|false) TOOLS(true|false)
#
# Environment: CXX (the compiler command, default c++), PKG_CONFIG (default pkg-config), RUNNER
# (a command that runs the built programs, e.g. qemu-aarch64-static for a cross build).
# Registered in meson as suite 'install' (tests/install/meson.build); runs on its own as well.
set -euo pipefail

build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
prefix=$3
libdir=$4
bindir=$5
mqtt=$6
tools=$7
case $libdir in /*) ;; *) libdir=$prefix/$libdir ;; esac
case $bindir in /*) ;; *) bindir=$prefix/$bindir ;; esac
read -r -a cxx <<< "${CXX:-c++}"
read -r -a runner <<< "${RUNNER:-}"
pkg_config=${PKG_CONFIG:-pkg-config}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/outpost-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/dest
fail() { echo "install-pkgconfig: FAILED: $*" >&2; exit 1; }

# 1. Install into the destdir.
meson install -C "$build" --no-rebuild --destdir "$dest" > "$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log" >&2; fail "meson install"; }

# 2. What must be there.
[ -f "$dest$prefix/include/outpost/outpost.hpp" ] || fail "headers missing ($prefix/include/outpost)"
[ -f "$dest$prefix/include/outpost/outbox.hpp" ] || fail "outbox.hpp missing"
compgen -G "$dest$libdir/liboutpost.[as]*" > /dev/null ||
  fail "liboutpost.a / liboutpost.so missing in $libdir"
pc=$dest$libdir/pkgconfig/outpost.pc
[ -f "$pc" ] || fail "outpost.pc missing ($libdir/pkgconfig)"
if [ "$tools" = true ]; then
  [ -x "$dest$bindir/outpost" ] || fail "the outpost command is missing ($bindir)"
fi
echo "--- installed files"
(cd "$dest" && find . -type f -o -type l | sort)
echo "--- outpost.pc"
cat "$pc"

# 3. pkg-config resolves it, and the flags carry every library the static archive needs.
export PKG_CONFIG_PATH=$dest$libdir/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$dest
cflags=$("$pkg_config" --cflags outpost) || fail "pkg-config --cflags outpost"
libs=$("$pkg_config" --libs outpost) || fail "pkg-config --libs outpost"
static_libs=$("$pkg_config" --libs --static outpost) || fail "pkg-config --libs --static outpost"
echo "--- pkg-config --cflags: $cflags"
echo "--- pkg-config --libs: $libs"
echo "--- pkg-config --libs --static: $static_libs"
need=(outpost SQLiteCpp sqlite3 pthread)
[ "$mqtt" = true ] && need+=(paho-mqttpp3 paho-mqtt3as ssl crypto)
for lib in "${need[@]}"; do
  grep -Eq -- "(-l|/lib)$lib([ .]|$)|-$lib( |$)" <<< "$static_libs" ||
    fail "pkg-config --libs --static outpost lacks $lib"
done
grep -q -- "-I$dest$prefix/include" <<< "$cflags" || fail "--cflags lacks the installed include dir"

# 4. Build the consumer out of tree, against the installed copy only (never the source tree).
defs=()
[ "$mqtt" = true ] && defs+=(-DOUTPOST_CONSUMER_MQTT)
mkdir "$tmp/app"
cp "$src/tests/install/consumer/consumer.cpp" "$tmp/app/"
# shellcheck disable=SC2086  # pkg-config output is a list of words
(cd "$tmp/app" && "${cxx[@]}" -std=c++20 "${defs[@]}" consumer.cpp -o consumer $cflags $libs) ||
  fail "building the consumer with: ${cxx[*]} -std=c++20 ${defs[*]} consumer.cpp $cflags $libs"

# 5. Run it (the shared library from the destdir when default_library=shared).
export LD_LIBRARY_PATH=$dest$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
out=$("${runner[@]}" "$tmp/app/consumer" "$tmp/app/app.db") || fail "consumer exited $?: $out"
echo "--- consumer: $out"
[ "$out" = "outpost consumer: 1 pending" ] || fail "unexpected consumer output: $out"

# 6. The installed CLI reads the app's file.
if [ "$tools" = true ]; then
  stats=$("${runner[@]}" "$dest$bindir/outpost" stats --db "$tmp/app/app.db" --json) ||
    fail "installed outpost stats exited $?"
  echo "--- outpost stats --json: $stats"
  python3 -c 'import json, sys; sys.exit(json.load(sys.stdin)["counts"]["pending"] != 1)' \
    <<< "$stats" || fail "outpost stats does not report 1 pending"
fi
echo "install-pkgconfig: OK"
