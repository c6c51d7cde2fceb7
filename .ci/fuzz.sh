#!/usr/bin/env bash
# Builds the libFuzzer targets with ASan/UBSan and runs each, starting from
# the corpus in tests/fuzz/corpus, for FUZZ_SECONDS (default 30) per backend.
# Any model mismatch or sanitizer report fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
cmio_need_packages clang libclang-rt-14-dev cmake libcmocka-dev

build=build-ci-fuzz
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all"
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      "-DCMAKE_C_FLAGS=$flags" -DCMIO_BUILD_FUZZ=ON -DCMIO_BUILD_EXAMPLES=OFF >/dev/null
targets=$(cd "$build" && cmake --build . --target help | sed -n 's/^\.\.\. \(fuzz_registry_[a-z]*\).*/\1/p')
for t in $targets; do
  cmake --build "$build" --target "$t" -j"$(nproc)" >/dev/null
  work=$(mktemp -d)
  cp -r tests/fuzz/corpus/. "$work/"
  echo "--- $t: ${FUZZ_SECONDS:-30} s"
  status=0
  "$build/tests/$t" -max_total_time="${FUZZ_SECONDS:-30}" -max_len=512 -print_final_stats=1 \
      "$work" >"$work.log" 2>&1 || status=$?
  grep -E "^stat::number_of_executed_units|^stat::new_units_added|ERROR|mismatch|SUMMARY" "$work.log" || true
  if [ "$status" -ne 0 ]; then
    tail -40 "$work.log" >&2
    echo "$t failed (exit $status)" >&2
    exit 1
  fi
  rm -rf "$work" "$work.log"
done
