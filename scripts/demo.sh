#!/usr/bin/env bash
# Installs the build tools when missing, builds cmio and its echo example in
# release mode, and runs the demo: the echo server and a load client with
# 100 connections on loopback, printing the verified throughput.
#
#   scripts/demo.sh                     build dir: build-demo
#   CONNECTIONS=500 SECONDS_=10 scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
cmio_need_packages build-essential cmake

build=${BUILD_DIR:-build-demo}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMIO_BUILD_TESTS=OFF -DCMIO_BUILD_EXAMPLES=ON \
      ${CMIO_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j"$(nproc)" --target echo_server echo_client
exec bash examples/demo.sh "$build"
