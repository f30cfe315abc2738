#!/usr/bin/env bash
# Builds the addon, native tests, fuzz replay and benchmark with cmake-js into build-cmake/ (Node-API
# mode: headers from node-api-headers, nothing downloaded), then runs ctest (decoder, block-pool and shared-memory pool tests + corpus
# replay) and the addon's plain-JS tests (test/native/js/run.js; NATIVE_JS=0 skips them).
# Prints "native: N passed, N failed" (", N skipped" when a test could not run here) and exits non-zero on any failure.
#   Outputs: build-cmake/Release/ipcwire.node, build-cmake/{frame_decoder_test,block_pool_test,shm_pool_test,fuzz_frame_decoder_replay,pingpong}
set -u
cd "$(dirname "$0")/.."
OUT=${IPCWIRE_CMAKE_OUT:-build-cmake}
JOBS=${JOBS:-2}

passed=0
failed=0
skipped=0
step() {  # step NAME CMD...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok   $name"; else failed=$((failed + 1)); echo "FAIL $name"; fi
}

step build node_modules/.bin/cmake-js build --out "$OUT" --parallel "$JOBS" --log-level warn
if [ "$failed" -eq 0 ]; then
  # ctest runs each registered test; count them individually.
  ctest_log=$(cd "$OUT" && ctest --output-on-failure 2>&1)
  echo "$ctest_log"
  t_pass=$(echo "$ctest_log" | grep -cE 'Test +#[0-9]+: .* Passed')
  t_fail=$(echo "$ctest_log" | grep -cE 'Test +#[0-9]+: .* (\*\*\*Failed|\*\*\*Exception|Not Run|\*\*\*Timeout)')
  passed=$((passed + t_pass))
  failed=$((failed + t_fail))
  if [ "$t_pass" -eq 0 ]; then failed=$((failed + 1)); echo "FAIL ctest ran nothing"; fi
  step addon-loads node -e "const b=require('./$OUT/Release/ipcwire.node'); if (typeof b.listen!=='function'||!(b.maxPathLength>0)) process.exit(1)"
  step pingpong-runs sh -c "'$OUT/pingpong' --size 64 --iters 200 --mode latency | grep -q median_us"
  # The addon's plain-JS tests (real processes and sockets) against this build, unless NATIVE_JS=0.
  if [ "${NATIVE_JS:-1}" != 0 ]; then
    js_log=$(IPCWIRE_NATIVE_PATH="$PWD/$OUT/Release/ipcwire.node" node test/native/js/run.js 2>&1)
    echo "$js_log"
    summary=$(echo "$js_log" | grep '^native-js:' | tail -1)
    j_pass=$(echo "$summary" | sed -n 's/.* \([0-9]*\) passed.*/\1/p')
    j_fail=$(echo "$summary" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
    j_skip=$(echo "$summary" | sed -n 's/.* \([0-9]*\) skipped.*/\1/p')
    passed=$((passed + ${j_pass:-0}))
    skipped=$((skipped + ${j_skip:-0}))
    failed=$((failed + ${j_fail:-1}))
  fi
fi
echo "native: $passed passed, $failed failed$([ "$skipped" -eq 0 ] || echo ", $skipped skipped")"
[ "$failed" -eq 0 ]
