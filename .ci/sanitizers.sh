#!/usr/bin/env bash
# The sanitizer job of .ci/run: scripts/asan-build.sh (the native engineer's) builds the addon with
# -fsanitize=address,undefined; this runs, with that addon (IPCWIRE_NATIVE_PATH) and the ASan runtime preloaded
# into the uninstrumented Node (LD_PRELOAD of libasan, as Node itself is not instrumented):
#   1. a two-process round trip that exits naturally, with LeakSanitizer on (only the addon's leaks show there);
#   2. a subset of the vitest suite (leak detection off: vitest's workers leave by process.exit, after which Node
#      itself leaves ~21 KB).
# Which tests: IPCWIRE_ASAN_TESTS (space-separated files), default the files listed below that exist.
# Prints `N passed, N failed` last.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .tmp

# asan-build.sh OUTDIR builds with cmake-js into build-asan/ (the normal build/ is untouched) and prints the
# path of OUTDIR/ipcwire.node as its last line.
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
bash scripts/asan-build.sh .tmp/asan | tee "$out"
addon="$(grep -v '^[[:space:]]*$' "$out" | tail -n 1 | tr -d '[:space:]' || true)"
if [ ! -f "$addon" ] || [[ "$addon" != *.node ]]; then
  echo "sanitizers: scripts/asan-build.sh did not end with the path of the addon it built (got: '$addon')" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
addon="$(cd "$(dirname "$addon")" && pwd)/$(basename "$addon")"
preload="$(gcc -print-file-name=libasan.so)"
if [ ! -f "$preload" ]; then
  echo "sanitizers: gcc has no libasan.so ($preload)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
echo "sanitizers: addon $addon, preloading $preload"
if ! readelf -d "$addon" 2>/dev/null | grep -q 'libasan'; then
  echo "sanitizers: warning: $addon does not link libasan (is it really the ASan build?)" >&2
fi

export IPCWIRE_NATIVE_PATH="$addon"
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
passed=0
failed=0

echo "--- round trip with LeakSanitizer (natural exit)"
if LD_PRELOAD="$preload" ASAN_OPTIONS=detect_leaks=1 node scripts/roundtrip/main.cjs; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
  echo "FAILED: round trip under ASan/UBSan with leak detection"
fi

# Adds a run's last line (SUMMARY) to the totals when it is `N passed, N failed`; a run that exited non-zero (STATUS)
# without reporting a failure counts as one failure.
count_summary() {  # count_summary SUMMARY STATUS
  if [[ "$1" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
    passed=$((passed + BASH_REMATCH[1]))
    failed=$((failed + BASH_REMATCH[2]))
  fi
  if [ "$2" -ne 0 ] && ! [[ "$1" =~ [1-9][0-9]*\ failed ]]; then failed=$((failed + 1)); fi
}

# The pure C++ tests (frame decoder, receive-block pool, shared-memory segment and pool: the code that reads what a
# peer sends), compiled here with the same sanitizers, leak detection on; each prints `<program>: N passed, N failed`.
for name in frame_decoder block_pool shm_pool; do
  srcs=("test/native/${name}_test.cc")
  [ -f "src/native/${name}.cc" ] && srcs+=("src/native/${name}.cc")  # block_pool is header-only
  [ -f "${srcs[0]}" ] || continue
  echo "--- native ${name}_test under ASan/UBSan"
  if g++ -std=c++17 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
    -Isrc/native "${srcs[@]}" -o ".tmp/${name}_test_asan" -pthread; then
    log="$(ASAN_OPTIONS=detect_leaks=1 ".tmp/${name}_test_asan" 2>&1)" && rc=0 || rc=$?
    echo "$log"
    [ "$rc" -ne 0 ] && echo "FAILED: ${name}_test exited with $rc under ASan/UBSan"
    count_summary "$(echo "$log" | sed -n -E 's/^[a-z_]+: ([0-9]+ passed, [0-9]+ failed)/\1/p' | tail -n 1)" "$rc"
  else
    failed=$((failed + 1))
    echo "FAILED: ${name}_test did not compile with the sanitizers"
  fi
done

if [ -n "${IPCWIRE_ASAN_TESTS:-}" ]; then
  read -r -a tests <<<"$IPCWIRE_ASAN_TESTS"
else
  tests=()
  # The native paths that matter most (the blocking call, framing under hostile input, teardown from workers,
  # disconnects, write batching, recycled receive blocks, the bufferedAmount cell, shared-memory pools, views and
  # releaseShared: ~35 s), without the slow ones (large.test.ts alone takes ~3 min under ASan on 2 cores).
  for f in test/sync.test.ts test/ordering.test.ts test/values.test.ts test/hostile.test.ts test/workers.test.ts \
    test/failures.test.ts test/seed.test.ts test/batching.test.ts test/backpressure.test.ts test/faults.test.ts test/handles.test.ts \
    test/shm.test.ts; do
    [ -f "$f" ] && tests+=("$f")
  done
fi
if [ "${#tests[@]}" -gt 0 ]; then
  echo "--- vitest under ASan/UBSan: ${tests[*]}"
  status=0
  LD_PRELOAD="$preload" ASAN_OPTIONS=detect_leaks=0 IPCWIRE_TEST_NO_BUILD=1 \
    IPCWIRE_TEST_REPORT=.tmp/vitest-asan-report.json node scripts/test.js "${tests[@]}" | tee .tmp/vitest-asan.log ||
    status=$?
  last="$(sed -e 's/\x1b\[[0-9;]*m//g' .tmp/vitest-asan.log | grep -v '^[[:space:]]*$' | tail -n 1)"
  count_summary "$last" "$status"
else
  echo "--- no vitest file to run under ASan yet"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
