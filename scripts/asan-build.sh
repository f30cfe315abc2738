#!/usr/bin/env bash
# Builds the addon with AddressSanitizer + UndefinedBehaviorSanitizer (gcc) and leaves it at
# OUTDIR/ipcwire.node. Load it with IPCWIRE_NATIVE_PATH=OUTDIR/ipcwire.node and preload the runtime
# (Node itself is not instrumented):
#   LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=1 \
#   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 IPCWIRE_NATIVE_PATH=OUTDIR/ipcwire.node <command>
# Uses cmake-js into a separate build dir (build-asan/ by default), so the normal build/ is untouched.
set -eu
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then echo "usage: $0 OUTDIR" >&2; exit 2; fi
mkdir -p "$1"
OUTDIR=$(cd "$1" && pwd)
BUILD=${IPCWIRE_ASAN_BUILD_DIR:-build-asan}
node_modules/.bin/cmake-js build --out "$BUILD" --parallel "${JOBS:-2}" --log-level warn \
  --target ipcwire --CDIPCWIRE_SANITIZE=ON --config RelWithDebInfo
cp "$BUILD/RelWithDebInfo/ipcwire.node" "$OUTDIR/ipcwire.node" 2>/dev/null || cp "$BUILD/Release/ipcwire.node" "$OUTDIR/ipcwire.node"
echo "$OUTDIR/ipcwire.node"
