#!/usr/bin/env bash
# Packaging checks: cmio used the ways its users use it. Every step builds
# tests/consumers/main.c (or cxx.cpp) against cmio and runs it.
#
#   1. install     `cmake --install` puts exactly the expected files, and
#                  cmio.pc names the prefix given to --install;
#   2. pkg-config  a plain compiler command (C, and C++ for the header);
#   3. find_package after install, the version rules of the package, and
#                  again after the install tree has been moved;
#   4. add_subdirectory and FetchContent (from a local archive of the tree);
#   5. single-file distribution (scripts/amalgamate.sh): cmio.c compiles on
#                  its own under strict warnings with gcc and clang, for every
#                  backend this machine has, and the program links and runs;
#                  the Windows backend too, cross-built with MinGW-w64 and run
#                  under Wine, when those are installed (.ci/wine.sh, earlier
#                  in .ci/run, installs them);
#   6. API reference: Doxygen with warnings as errors.
#
# Everything is built under a temporary directory that is removed at the end;
# nothing is written to the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
. scripts/deps.sh
cmio_need_packages build-essential cmake pkg-config clang doxygen

tmp=$(mktemp -d)
cleanup() {
  if [ -d "$tmp/wineprefix" ]; then
    WINEPREFIX="$tmp/wineprefix" wineserver -k >/dev/null 2>&1 || true
    WINEPREFIX="$tmp/wineprefix" wineserver -w >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
jobs=$(nproc)
warn=(-Wall -Wextra -Wpedantic -Werror)

version=$(sed -n 's/^project(cmio VERSION \([0-9]*\.[0-9]*\.[0-9]*\).*/\1/p' CMakeLists.txt)
IFS=. read -r major minor _ <<<"$version"
[ -n "$version" ] || { echo "no project(cmio VERSION ...) in CMakeLists.txt" >&2; exit 1; }

step() { echo "--- $*"; }
fail() {
  echo "FAILED: $*" >&2
  exit 1
}

# Runs a command with its output kept aside, shown only if it fails.
quiet() {
  if ! "$@" >"$tmp/quiet.log" 2>&1; then
    cat "$tmp/quiet.log" >&2
    fail "$*"
  fi
}

# Runs a consumer program and shows its one line of output.
run() { # label, program
  local out
  out=$("$2") || fail "$1: the program failed"
  echo "$1: $out"
}

# Builds one of the CMake consumer projects in tests/consumers and runs it.
consumer() { # project, label, cmake arguments...
  local project=$1 label=$2 dir="$tmp/consumer-$2"
  shift 2
  quiet cmake -S "tests/consumers/$project" -B "$dir" -DCMAKE_BUILD_TYPE=Release \
        "-DCMIO_EXPECT_VERSION=$version" "$@"
  quiet cmake --build "$dir" -j"$jobs"
  run "$label" "$dir/consumer"
}

# ---------------------------------------------------------------------------
step "install"
# The configured prefix is not the one installed to: cmio.pc must follow
# --prefix.
cmake -S . -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release -DCMIO_BUILD_TESTS=OFF \
      -DCMIO_BUILD_EXAMPLES=OFF -DCMIO_WERROR=ON -DCMAKE_INSTALL_PREFIX="$tmp/not-used" \
      >"$tmp/configure.log" 2>&1 || { cat "$tmp/configure.log" >&2; fail "configure"; }
native=$(sed -n 's/^-- cmio: backend \([a-z0-9]*\) (available here: \(.*\))$/\1/p' "$tmp/configure.log")
here=$(sed -n 's/^-- cmio: backend \([a-z0-9]*\) (available here: \(.*\))$/\2/p' "$tmp/configure.log" | tr ";" " ")
if [ -z "$native" ] || [ -z "$here" ]; then
  fail "no 'cmio: backend' line in the configure output"
fi
libdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:PATH=//p' "$tmp/build/CMakeCache.txt")
quiet cmake --build "$tmp/build" -j"$jobs"
quiet cmake --install "$tmp/build" --prefix "$tmp/prefix"
rm -rf "$tmp/build" # nothing below may lean on the build tree

cat >"$tmp/expected" <<EOF
include/cmio/config.h
include/cmio/poll.h
$libdir/cmake/cmio/cmioConfig.cmake
$libdir/cmake/cmio/cmioConfigVersion.cmake
$libdir/cmake/cmio/cmioTargets-release.cmake
$libdir/cmake/cmio/cmioTargets.cmake
$libdir/libcmio.a
$libdir/pkgconfig/cmio.pc
EOF
(cd "$tmp/prefix" && find . -type f | sed 's|^\./||' | LC_ALL=C sort) >"$tmp/installed"
LC_ALL=C sort -o "$tmp/expected" "$tmp/expected"
diff -u "$tmp/expected" "$tmp/installed" || fail "the installed files differ from the expected ones"
echo "installed: $(wc -l <"$tmp/installed") files, backend $native, version $version"

# ---------------------------------------------------------------------------
step "pkg-config"
export PKG_CONFIG_PATH="$tmp/prefix/$libdir/pkgconfig"
[ "$(pkg-config --modversion cmio)" = "$version" ] || fail "pkg-config --modversion cmio"
[ "$(pkg-config --variable=prefix cmio)" = "$tmp/prefix" ] || fail "cmio.pc does not name the install prefix"
[ "$(pkg-config --variable=backend cmio)" = "$native" ] || fail "cmio.pc does not name the backend"
# shellcheck disable=SC2046 # pkg-config's output is meant to be split
cc -std=c11 "${warn[@]}" "-DCMIO_EXPECT_VERSION=\"$version\"" "-DCMIO_EXPECT_BACKEND=\"$native\"" \
   tests/consumers/main.c $(pkg-config --cflags --libs cmio) -o "$tmp/pkg-config-c"
run "pkg-config, C" "$tmp/pkg-config-c"
# shellcheck disable=SC2046
c++ -std=c++11 "${warn[@]}" tests/consumers/cxx.cpp $(pkg-config --cflags --libs cmio) -o "$tmp/pkg-config-cxx"
run "pkg-config, C++" "$tmp/pkg-config-cxx"

# ---------------------------------------------------------------------------
step "find_package"
consumer find_package find_package "-DCMAKE_PREFIX_PATH=$tmp/prefix" "-DCMIO_FIND_VERSION=$major.$minor"
# Semantic versioning in the package: the next release that may break is
# refused (before 1.0 that is the next minor one).
if [ "$major" -eq 0 ]; then next="0.$((minor + 1))"; else next="$((major + 1)).0"; fi
if cmake -S tests/consumers/find_package -B "$tmp/consumer-refused" "-DCMAKE_PREFIX_PATH=$tmp/prefix" \
         "-DCMIO_FIND_VERSION=$next" >"$tmp/refused.log" 2>&1; then
  fail "find_package(cmio $next) accepted version $version"
fi
grep -q "requested version \"$next\"" "$tmp/refused.log" ||
  { cat "$tmp/refused.log" >&2; fail "find_package(cmio $next) failed for another reason"; }
echo "find_package(cmio $next): refused, as it must be"
# The CMake package is relocatable: move the whole install tree.
mv "$tmp/prefix" "$tmp/moved"
consumer find_package find_package-moved "-DCMAKE_PREFIX_PATH=$tmp/moved"

# ---------------------------------------------------------------------------
step "add_subdirectory"
consumer add_subdirectory add_subdirectory "-DCMIO_SOURCE_DIR=$root" "-DCMIO_EXPECT_BACKEND=$native"

# ---------------------------------------------------------------------------
step "FetchContent"
# The archive holds what a commit of the tree would: tracked and untracked
# files, without those git ignores (build directories).
archive="$tmp/cmio-$version.tar.gz"
if git ls-files >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done >"$tmp/files"
else
  find . -path ./.git -prune -o -path './build*' -prune -o -type f -print0 >"$tmp/files"
fi
tar --null -T "$tmp/files" --transform "s|^\(\./\)\{0,1\}|cmio-$version/|" -czf "$archive"
sha=$(sha256sum "$archive" | cut -d ' ' -f 1)
consumer fetchcontent fetchcontent "-DCMIO_ARCHIVE=$archive" "-DCMIO_ARCHIVE_SHA256=$sha" \
         "-DCMIO_EXPECT_BACKEND=$native"

# ---------------------------------------------------------------------------
step "single-file distribution"
single_check() { # label, directory, expected backend, compiler flags...
  local label=$1 dir=$2 expect=$3 cc
  shift 3
  for cc in gcc clang; do
    # The build a user does: one file, strict C11, nothing else configured.
    "$cc" -std=c11 -O2 "${warn[@]}" -Wshadow -Wstrict-prototypes -Wmissing-prototypes "$@" \
          -c "$dir/cmio.c" -o "$dir/cmio-$cc.o" || fail "$label: $cc -c cmio.c"
    "$cc" -std=c11 "${warn[@]}" "$@" -DCMIO_CONSUMER_SINGLE_FILE -I"$dir" \
          "-DCMIO_EXPECT_VERSION=\"$version\"" "-DCMIO_EXPECT_BACKEND=\"$expect\"" \
          tests/consumers/main.c "$dir/cmio-$cc.o" -pthread -o "$dir/consumer-$cc" || fail "$label: link"
    run "$label, $cc" "$dir/consumer-$cc"
  done
}
quiet scripts/amalgamate.sh "$tmp/single"
single_check "every backend, default" "$tmp/single" "$native"
for b in $here; do
  single_check "every backend, CMIO_BACKEND_$b" "$tmp/single" "$b" "-DCMIO_BACKEND_$(tr '[:lower:]' '[:upper:]' <<<"$b")"
  quiet scripts/amalgamate.sh "$tmp/single-$b" "$b"
  single_check "$b only" "$tmp/single-$b" "$b"
done

if [[ " $(scripts/amalgamate.sh --list | tr '\n' ' ') " == *" iocp "* ]]; then
  if command -v x86_64-w64-mingw32-gcc >/dev/null && command -v wine >/dev/null; then
    # The same files, for Windows: cmio.h picks iocp there by itself.
    win=x86_64-w64-mingw32-gcc
    "$win" -std=c11 -O2 "${warn[@]}" -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -c "$tmp/single/cmio.c" -o "$tmp/single/cmio-win.o" || fail "Windows: $win -c cmio.c"
    "$win" -std=c11 "${warn[@]}" -DCMIO_CONSUMER_SINGLE_FILE -I"$tmp/single" \
           "-DCMIO_EXPECT_VERSION=\"$version\"" "-DCMIO_EXPECT_BACKEND=\"iocp\"" \
           tests/consumers/main.c "$tmp/single/cmio-win.o" -lws2_32 -lntdll \
           -o "$tmp/single/consumer.exe" || fail "Windows: link"
    # A Wine prefix .ci/wine.sh made is reused; otherwise a temporary one.
    prefix=${CMIO_WINE_CACHE:-${TMPDIR:-/tmp}/cmio-wine}/wineprefix
    [ -d "$prefix" ] || prefix=$tmp/wineprefix
    out=$(WINEPREFIX=$prefix WINEARCH=win64 WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" \
          timeout 120 wine "$tmp/single/consumer.exe" </dev/null 2>"$tmp/wine.log") ||
      { cat "$tmp/wine.log" >&2; fail "Windows: the program failed under Wine"; }
    echo "every backend, Windows ($win, Wine): $out"
  else
    echo "every backend, Windows: skipped, no MinGW-w64 or Wine here (.ci/wine.sh installs them)"
  fi
fi

# ---------------------------------------------------------------------------
step "API reference (Doxygen, warnings are errors)"
cat >"$tmp/Doxyfile" <<EOF
@INCLUDE = docs/Doxyfile
OUTPUT_DIRECTORY = $tmp/docs
WARN_LOGFILE = $tmp/doxygen-warnings.log
EOF
doxygen "$tmp/Doxyfile" || { cat "$tmp/doxygen-warnings.log" >&2; fail "doxygen"; }
if [ -s "$tmp/doxygen-warnings.log" ]; then
  cat "$tmp/doxygen-warnings.log" >&2
  fail "doxygen warned"
fi
for page in index.html poll_8h.html md_docs_semantics.html md_CHANGELOG.html; do
  [ -s "$tmp/docs/html/$page" ] || fail "doxygen wrote no $page"
done
pages=("$tmp"/docs/html/*.html)
echo "doxygen $(doxygen --version): no warnings, ${#pages[@]} HTML pages"

echo "consumers: all passed"
