#!/usr/bin/env bash
# Installs what the tests need (cmake, a C compiler, libcmocka-dev) when
# missing, builds cmio with its conformance suite for every backend this
# machine can build, and runs every test through CTest.
#
#   scripts/test.sh                 build dir: build-test
#   BUILD_DIR=dir scripts/test.sh   elsewhere
#   CMIO_WERROR=ON scripts/test.sh  warnings are errors (as in CI)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
cmio_need_packages build-essential cmake libcmocka-dev

build=${BUILD_DIR:-build-test}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMIO_BUILD_TESTS=ON \
      -DCMIO_WERROR="${CMIO_WERROR:-OFF}" ${CMIO_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure --verbose --timeout 300 ${CTEST_ARGS:-}
