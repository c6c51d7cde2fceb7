#!/usr/bin/env bash
# The Windows backend on a Debian/Ubuntu machine: cross-builds cmio, its
# conformance suite and the echo example with MinGW-w64 and runs them under
# Wine (64-bit). Runs as root (or with sudo) with no stdin; installs what is
# missing with apt-get.
#
#   .ci/wine.sh                          everything, caches in $TMPDIR/cmio-wine
#   CMIO_WINE_CACHE=dir .ci/wine.sh      caches elsewhere (never inside the repo)
#   CTEST_ARGS="-R modes" .ci/wine.sh    a subset of the suite
#
# cmocka for Windows is cross-built from Debian's own source package,
# fetched with a private apt state under the cache (the system's sources
# and lists are left alone). A pass under Wine is strong evidence for the
# AFD code, not proof: Wine re-implements AFD.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
. scripts/deps.sh

cache=${CMIO_WINE_CACHE:-${TMPDIR:-/tmp}/cmio-wine}
build=${BUILD_DIR:-build-ci-wine}
toolchain=$repo/cmake/mingw-w64-x86_64.cmake
case "$cache/" in
  "$repo"/*) echo "CMIO_WINE_CACHE must be outside the repository" >&2; exit 2 ;;
esac
mkdir -p "$cache"

echo "=== tools ==="
cmio_need_packages cmake make mingw-w64 wine wine64 dpkg-dev xz-utils ca-certificates

echo "=== cmocka for MinGW-w64 (Debian source package) ==="
fail() { echo "wine.sh: $*" >&2; exit 1; }
# Runs a command with its output in a log under the cache, shown on failure.
quiet() {
  "$@" </dev/null >"$cache/last.log" 2>&1 || { cat "$cache/last.log" >&2; fail "failed: $*"; }
}
cmocka=$cache/cmocka
if [ ! -f "$cmocka/lib/libcmocka-static.a" ]; then
  apt_dir=$cache/apt
  rm -rf "$apt_dir" "$cache/cmocka-src" "$cache/cmocka-build"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/parts"
  mkdir -p "$cache/cmocka-src"
  # The system's main Debian (or Ubuntu) suite, as a deb-src line.
  apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' |
    awk '$3 == "main" && $2 !~ /-/ { print "deb-src " $1 " " $2 " main"; exit }' \
      >"$apt_dir/sources.list"
  [ -s "$apt_dir/sources.list" ] || fail "no main apt suite to fetch cmocka's source from"
  apt_private=(-o "Dir::Etc::SourceList=$apt_dir/sources.list"
               -o "Dir::Etc::SourceParts=$apt_dir/parts"
               -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
  quiet apt-get -q "${apt_private[@]}" update
  (cd "$cache/cmocka-src" && quiet apt-get -q "${apt_private[@]}" source cmocka)
  src=$(find "$cache/cmocka-src" -mindepth 1 -maxdepth 1 -type d -name 'cmocka-*' | head -n1)
  [ -n "$src" ] || fail "apt-get source cmocka gave no source tree"
  echo "building $(basename "$src")"
  quiet cmake -S "$src" -B "$cache/cmocka-build" -DCMAKE_TOOLCHAIN_FILE="$toolchain" \
        -DCMAKE_BUILD_TYPE=Release -DWITH_STATIC_LIB=ON -DWITH_EXAMPLES=OFF -DUNIT_TESTING=OFF \
        -DCMAKE_INSTALL_PREFIX="$cmocka"
  quiet cmake --build "$cache/cmocka-build" -j2
  quiet cmake --install "$cache/cmocka-build"
fi
echo "cmocka: $cmocka/lib/libcmocka-static.a"

echo "=== cmio for Windows (MinGW-w64, warnings as errors) ==="
# The static archive is named explicitly: cmocka's installed CMake package
# points MinGW at the import library of its DLL instead.
cmake -S . -B "$build" -DCMAKE_TOOLCHAIN_FILE="$toolchain" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMIO_WERROR=ON -DCMIO_BUILD_TESTS=ON -DCMIO_BUILD_EXAMPLES=ON \
      -DCMOCKA_INCLUDE_DIR="$cmocka/include" \
      -DCMOCKA_LIBRARY="$cmocka/lib/libcmocka-static.a" \
      -DCMAKE_CROSSCOMPILING_EMULATOR=wine ${CMIO_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j2

echo "=== Wine ==="
export WINEPREFIX=$cache/wineprefix WINEARCH=win64 WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
unset DISPLAY
if [ ! -d "$WINEPREFIX" ]; then
  wineboot -i </dev/null >/dev/null 2>&1 # creates the prefix: ~8 s, ~700 MB
  wineserver -w
fi
# A persistent wineserver, warmed up once: otherwise every test pays for
# starting it, and its helper processes hold ctest's output pipe open.
wineserver -p 2>/dev/null || true # (one may already run for this prefix)
trap 'wineserver -k >/dev/null 2>&1 || true' EXIT
wine cmd /c exit 0 </dev/null >/dev/null 2>&1
echo "$(wine --version 2>/dev/null), prefix $WINEPREFIX"

echo "=== conformance suite under Wine ==="
(cd "$build" && ctest --output-on-failure --timeout 300 ${CTEST_ARGS:-} </dev/null)
echo "skipped on Windows, with the reason each test gives:"
grep -ah '^\[  SKIP    \]' "$build/Testing/Temporary/LastTest.log" | tr -d '\r' | sort | uniq -c || true

echo "=== echo server and client under Wine: 100 connections, every byte verified ==="
CMIO_DEMO_RUNNER=wine CMIO_DEMO_STOP_SIGNAL=INT sh examples/demo.sh "$build" 100 3 </dev/null
