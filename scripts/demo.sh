#!/usr/bin/env bash
# Installs the build tools when missing, builds cmio and its echo example in
# release mode, and runs the demo: the echo server and a load client with 200
# connections on loopback, every echoed byte verified, then a clean SIGTERM
# shutdown of the server.
#
#   scripts/demo.sh                         200 connections, 3 s, 1 KiB messages
#   scripts/demo.sh CONNECTIONS SECONDS BYTES
#   BUILD_DIR=dir scripts/demo.sh           build elsewhere than build-demo
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
cmio_need_packages build-essential cmake

build=${BUILD_DIR:-build-demo}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMIO_BUILD_TESTS=OFF -DCMIO_BUILD_EXAMPLES=ON \
      ${CMIO_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j"$(nproc)" --target echo_server echo_client
exec sh examples/demo.sh "$build" "$@"
