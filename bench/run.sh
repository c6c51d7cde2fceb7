#!/usr/bin/env bash
# Builds the benchmarks in release mode and runs the standard matrix: cmio
# against a hand-written epoll loop (the floor) and libevent, libev and
# libuv where installed, all in the same run. Prints a description of the
# machine and one Markdown table of ratios to the floor (docs/benchmarks.md
# explains every row). A few minutes on two cores.
#
#   bench/run.sh                  the standard matrix
#   bench/run.sh --quick          a smoke run of every program (seconds)
#   bench/run.sh --no-callgrind   without the instruction counts
#   BUILD_DIR=dir bench/run.sh    build elsewhere (default: build-bench)
#
# The peers are optional; on Debian or Ubuntu:
#   apt-get install libevent-dev libev-dev libuv1-dev valgrind
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
callgrind=1
for arg in "$@"; do
  case "$arg" in
    --quick) quick=(--quick) ;;
    --no-callgrind) callgrind=0 ;;
    *) echo "usage: bench/run.sh [--quick] [--no-callgrind]" >&2; exit 2 ;;
  esac
done

. scripts/deps.sh
cmio_need_packages build-essential cmake pkg-config

build=${BUILD_DIR:-build-bench}
log=$(mktemp)
rows=$(mktemp)
trap 'rm -f "$log" "$rows"' EXIT
if ! cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMIO_BUILD_BENCH=ON -DCMIO_BUILD_TESTS=OFF \
       -DCMIO_BUILD_EXAMPLES=OFF ${CMIO_CMAKE_ARGS:-} >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
grep -- "cmio bench:" "$log" | sed 's/^-- //' >&2 || true
cmake --build "$build" -j"$(nproc)" --target bench_pipechain bench_echo bench_wake bench_idle_fds \
      bench_allocs >"$log" 2>&1 || { cat "$log" >&2; exit 1; }

bin="$build/bench"
load=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date +%s)
"$bin/bench_pipechain" --no-header "${quick[@]}" >>"$rows"
"$bin/bench_echo" --no-header "${quick[@]}" >>"$rows"
"$bin/bench_wake" --no-header "${quick[@]}" >>"$rows"
"$bin/bench_idle_fds" --no-header "${quick[@]}" >>"$rows"
"$bin/bench_allocs" --no-header >>"$rows"
if [ "$callgrind" = 1 ]; then
  if command -v valgrind >/dev/null 2>&1; then
    "$bin/bench_pipechain" --callgrind --no-header "${quick[@]}" >>"$rows"
  else
    echo "valgrind not found: the instruction counts are skipped (apt-get install valgrind)" >&2
  fi
fi
elapsed=$(( $(date +%s) - start ))

# The machine, as far as it can be told from inside it. Best effort: a
# missing tool leaves a field empty (and `head` may cut a pipe short).
set +e +o pipefail
cpu=$(LC_ALL=C lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1)
hyper=$(LC_ALL=C lscpu 2>/dev/null | sed -n 's/^Hypervisor vendor: *//p' | head -n1)
os=$( (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME") || uname -s)
libc=$(ldd --version 2>/dev/null | head -n1 | sed 's/.* //')
ccfile=$(ls "$build"/CMakeFiles/*/CMakeCCompiler.cmake 2>/dev/null | head -n1)
cc=$(sed -n 's/^set(CMAKE_C_COMPILER_ID "\(.*\)")/\1/p' "$ccfile" 2>/dev/null)
ccv=$(sed -n 's/^set(CMAKE_C_COMPILER_VERSION "\(.*\)")/\1/p' "$ccfile" 2>/dev/null)
evdir=$(sed -n 's/^CMIO_BENCH_LIBEV_INCLUDE_DIR:PATH=//p' "$build/CMakeCache.txt" 2>/dev/null)
libev=$(sed -n 's/^#define EV_VERSION_MAJOR *//p;s/^#define EV_VERSION_MINOR *//p' "$evdir/ev.h" 2>/dev/null | paste -sd. -)
peers="libevent $(pkg-config --modversion libevent 2>/dev/null || echo absent)"
peers="$peers, libev ${libev:-absent}, libuv $(pkg-config --modversion libuv 2>/dev/null || echo absent)"

echo
echo "cmio $(git describe --always --dirty 2>/dev/null || echo '(no git)'), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: ${cpu:-unknown CPU}, $(nproc) CPUs${hyper:+ ($hyper guest)}, $(free -g 2>/dev/null | awk '/^Mem:/{print $2 " GiB"}')"
echo "system: $os, Linux $(uname -r), glibc $libc, ${cc:-cc} ${ccv}, RLIMIT_NOFILE $(ulimit -Hn) (hard)"
echo "peers: $peers; load average before the run: $load"
echo "command: bench/run.sh $*   ($elapsed s)"
echo
"$bin/bench_allocs" --header-only
cat "$rows"
