#!/usr/bin/env bash
# Builds the suite with a sanitizer (or under valgrind) and runs it; any
# report fails the run.
#
#   .ci/sanitize.sh asan       AddressSanitizer + UndefinedBehaviorSanitizer (clang)
#   .ci/sanitize.sh tsan       ThreadSanitizer (clang)
#   .ci/sanitize.sh valgrind   memcheck with leak checking
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh

kind=${1:?usage: .ci/sanitize.sh asan|tsan|valgrind}
build=build-ci-$kind
args=(-DCMAKE_BUILD_TYPE=Debug -DCMIO_WERROR=ON -DCMIO_BUILD_EXAMPLES=OFF -DCMIO_BUILD_TESTS=ON)
case $kind in
  asan)
    cmio_need_packages clang libclang-rt-14-dev
    flags="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
    args+=(-DCMAKE_C_COMPILER=clang "-DCMAKE_C_FLAGS=$flags" "-DCMAKE_EXE_LINKER_FLAGS=$flags")
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    ;;
  tsan)
    cmio_need_packages clang libclang-rt-14-dev
    flags="-fsanitize=thread -fno-omit-frame-pointer"
    args+=(-DCMAKE_C_COMPILER=clang "-DCMAKE_C_FLAGS=$flags" "-DCMAKE_EXE_LINKER_FLAGS=$flags")
    export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
    ;;
  valgrind)
    cmio_need_packages valgrind
    args+=("-DCMIO_TEST_LAUNCHER=valgrind;-q;--error-exitcode=99;--leak-check=full;--errors-for-leak-kinds=definite,indirect,possible;--track-fds=no")
    ;;
  *)
    echo "unknown kind: $kind" >&2
    exit 2
    ;;
esac

cmio_need_packages build-essential cmake libcmocka-dev
cmake -S . -B "$build" "${args[@]}" >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure --timeout 600 -j2
