#!/usr/bin/env bash
# The fuzzing CI step: libFuzzer (Debian's clang, installed here if missing) on the native frame decoder under
# AddressSanitizer + UBSan for a bounded time, after replaying its committed corpus; then the JS fuzzer of the
# message envelope, argument decoding and handshake (test/fuzz.test.ts): mutated renderer frames through a real
# main, and mutated main frames from a fake main into a real renderer (half the time each).
#   FUZZ_SECONDS   seconds per target (default 60)
# A crash leaves its input in .tmp/fuzz/ (native: crash-*) or test/fuzz/regressions/ (JS): commit it, the input
# is then replayed on every run. Prints `fuzz: N passed, N failed` as its last line.
set -u
cd "$(dirname "$0")/.."
SECS=${FUZZ_SECONDS:-60}
OUT=.tmp/fuzz
mkdir -p "$OUT"
passed=0
failed=0
step() {  # step NAME CMD...
  local name=$1; shift
  echo "--- $name"
  if "$@"; then passed=$((passed + 1)); echo "ok   $name"; else failed=$((failed + 1)); echo "FAIL $name"; fi
}

have_libfuzzer() {
  command -v clang++ >/dev/null 2>&1 &&
    echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long){return 0;}' |
      clang++ -x c++ -fsanitize=fuzzer,address - -o "$OUT/probe" >/dev/null 2>&1
}
install_clang() {
  have_libfuzzer && return 0
  if [ "$(id -u)" -ne 0 ]; then echo "fuzz: clang with libFuzzer missing and not root to install it"; return 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >"$OUT/apt.log" 2>&1 &&
    apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev >>"$OUT/apt.log" 2>&1 ||
    { tail -20 "$OUT/apt.log"; return 1; }
  have_libfuzzer
}

native_target() {  # native_target NAME CORPUS_DIR
  local name=$1 corpus=$2
  clang++ -g -O1 -std=c++17 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc/native \
    "test/native/$name.cc" src/native/frame_decoder.cc -o "$OUT/$name" || return 1
  # Regression mode first: every committed input, once.
  "$OUT/$name" -runs=0 "$corpus" >"$OUT/$name-replay.log" 2>&1 || { tail -30 "$OUT/$name-replay.log"; return 1; }
  # Then fresh mutation, bounded; new inputs go to a scratch copy, never into the committed corpus.
  rm -rf "$OUT/$name-corpus" && cp -r "$corpus" "$OUT/$name-corpus"
  "$OUT/$name" -max_total_time="$SECS" -malloc_limit_mb=64 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$OUT/" "$OUT/$name-corpus" >"$OUT/$name.log" 2>&1
  local rc=$?
  grep -E '^stat::number_of_executed_units|^#[0-9]+.*DONE' "$OUT/$name.log" | tail -2
  [ $rc -eq 0 ] || { grep -A30 -E 'ERROR|==[0-9]+==' "$OUT/$name.log" | head -60; return 1; }
}

if step "install clang + libFuzzer" install_clang; then
  step "libFuzzer frame decoder (${SECS} s, ASan+UBSan)" native_target fuzz_frame_decoder test/native/corpus
else
  failed=$((failed + 1)); echo "FAIL libFuzzer frame decoder (not run: no clang)"
fi
step "JS fuzz: main and renderer side, envelope, arguments, handshake (${SECS} s)" \
  env IPCWIRE_FUZZ_MS=$((SECS * 500)) node scripts/test.js test/fuzz.test.ts
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
