#!/usr/bin/env bash
# Proves the package as users get it, from the tarball rather than the checkout:
#   1. `npm pack --dry-run` ships only dist/, prebuilds/ (all eight binaries), src/native/, binding.gyp,
#      scripts/install.js, package.json, README.md, LICENSE
#      and everything the entry points need; `npm pack` refuses while a binary is missing (the prepack guard);
#   2. the tarball, installed into a fresh folder with --ignore-scripts and a PATH holding node and npm only
#      (no cc, g++, make, python3), loads its prebuilt binary and runs a two-process round trip (sendSync, send,
#      invoke) from CommonJS and from ESM;
#   3. a TypeScript consumer (ESM and CommonJS) type-checks against the installed types;
#   4. with the prebuilds emptied, using the package fails with a message naming the platform, the ABI, where
#      it looked and how to build from source.
# Prints `N passed, N failed` last; exits non-zero when a check failed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

work="$(mktemp -d "${TMPDIR:-/tmp}/ipcwire-pack.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# shellcheck source=check-lib.sh
. scripts/check-lib.sh

platform="$(node -p 'process.platform + "-" + process.arch')"
# Every binary the package ships (scripts/lib/prebuilds.js, the list prebuild.sh builds and the prepack guard checks).
mapfile -t binaries < <(node scripts/lib/prebuilds.js binaries)
[ "${#binaries[@]}" -eq 8 ] || { echo "pack-check: read ${#binaries[@]} binaries from scripts/lib/prebuilds.js, expected 8" >&2; exit 1; }
for b in "${binaries[@]}"; do
  if [ ! -s "$b" ]; then
    echo "pack-check: $b missing, building every prebuilt binary (scripts/prebuild.sh)"
    bash scripts/prebuild.sh
    break
  fi
done

# 1. What the tarball holds.
listing() {
  npm pack --dry-run --json --ignore-scripts >"$work/dry-run.json"
  node - "$work/dry-run.json" "$platform" "${binaries[@]}" <<'EOF'
const fs = require('node:fs');
const [, , file, platform, ...binaries] = process.argv;
const [info] = JSON.parse(fs.readFileSync(file, 'utf8'));
const paths = info.files.map((f) => f.path).sort();
const allowed = [/^dist\//, /^prebuilds\//, /^src\/native\//, /^scripts\/install\.js$/, /^binding\.gyp$/, /^package\.json$/, /^README\.md$/, /^LICENSE$/];
const stray = paths.filter((p) => !allowed.some((re) => re.test(p)));
const required = [
  'package.json', 'README.md', 'LICENSE', 'binding.gyp',
  'dist/cjs/index.js', 'dist/cjs/index.d.ts', 'dist/cjs/ipc.js', 'dist/cjs/ipc.d.ts', 'dist/cjs/native.js',
  'dist/esm/index.mjs', 'dist/esm/index.d.mts', 'dist/esm/ipc.mjs', 'dist/esm/ipc.d.mts',
  ...binaries,
];
const missing = required.filter((p) => !paths.includes(p));
if (!paths.some((p) => p.startsWith(`prebuilds/${platform}/`) && p.endsWith('.node'))) missing.push(`prebuilds/${platform}/*.node`);
if (!paths.some((p) => p.startsWith('src/native/'))) missing.push('src/native/ (the source fallback)');
const dirs = {};
for (const p of paths) {
  const top = p.includes('/') ? p.split('/').slice(0, p.startsWith('src/') ? 2 : 1).join('/') + '/' : p;
  dirs[top] = (dirs[top] || 0) + 1;
}
console.log(`tarball: ${info.filename}, ${paths.length} files, ${(info.size / 1024).toFixed(1)} KiB packed, ${(info.unpackedSize / 1024).toFixed(1)} KiB unpacked`);
console.log(`  ${Object.entries(dirs).map(([d, n]) => `${d} (${n})`).join(', ')}`);
if (stray.length) console.error(`files that should not ship: ${stray.join(', ')}`);
if (missing.length) console.error(`files missing from the tarball: ${missing.join(', ')}`);
process.exit(stray.length || missing.length ? 1 : 0);
EOF
}
check "npm pack --dry-run ships only the allowed files, and all the needed ones" listing

# 2. The prepack guard: with one binary missing (or older than the sources) `npm pack` refuses; the opt-out packs.
guard_refuses() {
  local hidden="$work/hidden.node" status=0
  mv prebuilds/darwin-arm64/ipcwire.node "$hidden"
  npm pack --dry-run --pack-destination "$work" >"$work/guard.out" 2>&1 || status=$?
  IPCWIRE_PACK_WITHOUT_PREBUILDS=1 npm pack --dry-run --pack-destination "$work" >"$work/optout.out" 2>&1 || status=$((status + 100))
  mv "$hidden" prebuilds/darwin-arm64/ipcwire.node
  grep 'prepack: refusing' "$work/guard.out" && grep -q 'prebuilds/darwin-arm64/ipcwire.node: missing' "$work/guard.out" &&
    [ "$status" -ne 0 ] && [ "$status" -lt 100 ] || { cat "$work/guard.out" "$work/optout.out"; return 1; }
}
check "npm pack refuses when a prebuilt binary is missing (prepack guard); IPCWIRE_PACK_WITHOUT_PREBUILDS=1 packs" guard_refuses

# 3. Pack for real (npm runs `prepack`: dist/ is rebuilt as `npm publish` would, and the guard passes).
mkdir "$work/tarball"
pack() { npm pack --pack-destination "$work/tarball" >"$work/pack.out" 2>&1 || { cat "$work/pack.out"; return 1; }; grep '^prepack:' "$work/pack.out"; }
check "npm pack with every binary present and fresh (the prepack guard passes)" pack
tarball="$(echo "$work"/tarball/*.tgz)"
[ -f "$tarball" ] || { echo "$passed passed, $((failed + 1)) failed"; exit 1; }
echo "pack-check: $(basename "$tarball"), $(stat -c %s "$tarball") bytes ($(du -k "$tarball" | cut -f1) KiB)"

# A PATH with node and npm and nothing else: no compiler, make or python can be found by anything.
bin="$work/bin"
mkdir -p "$bin"
ln -s "$(command -v node)" "$bin/node"
ln -s "$(command -v npm)" "$bin/npm"
no_toolchain() {
  local tool found=0
  for tool in cc gcc g++ c++ clang make python3 python; do
    if PATH="$bin" command -v "$tool" >/dev/null 2>&1; then
      echo "$tool is on the restricted PATH" >&2
      found=1
    fi
  done
  return "$found"
}
check "the consumer's PATH has node and npm but no compiler, make or python" no_toolchain

consumer="$work/consumer"
mkdir -p "$consumer"
cp scripts/roundtrip/* "$consumer/"
echo '{ "name": "ipcwire-consumer", "private": true }' >"$consumer/package.json"
install_tarball() {
  (cd "$consumer" && env PATH="$bin" npm install --ignore-scripts --no-audit --no-fund --loglevel=error "$tarball")
}
check "npm install <tarball> --ignore-scripts with no toolchain" install_tarball

installed="$consumer/node_modules/ipcwire"
uses_prebuild() {
  [ ! -e "$installed/build" ] || { echo "the installed package has a build/ folder" >&2; return 1; }
  PATH="$bin" addon_picked "$consumer" /prebuilds/
}
check "the installed package loads its prebuilt binary" uses_prebuild
check "round trip from CommonJS (sendSync, send, invoke)" env -C "$consumer" PATH="$bin" node main.cjs
check "round trip from ESM, one copy of each class for require and import" env -C "$consumer" PATH="$bin" node main.mjs

typecheck() {
  (cd "$consumer" && env PATH="$bin" node "$root/node_modules/typescript/bin/tsc" --noEmit --strict \
    --module nodenext --moduleResolution nodenext --target es2022 --skipLibCheck false \
    --types node --typeRoots "$root/node_modules/@types" consumer.mts consumer.cts)
}
check "a TypeScript consumer type-checks (ESM and CommonJS, nodenext)" typecheck

failed_load() {
  mv "$installed/prebuilds" "$installed/prebuilds.hidden"
  mkdir "$installed/prebuilds"
  local status=0
  (cd "$consumer" && env PATH="$bin" node failed-load.cjs) || status=$?
  rmdir "$installed/prebuilds"
  mv "$installed/prebuilds.hidden" "$installed/prebuilds"
  return "$status"
}
check "with no binary, the load error names platform, ABI, where it looked and how to build" failed_load

# `npm rebuild ipcwire` runs the shipped manifest's scripts: each must name only files the tarball holds (a
# `prepare` running scripts/build-ts.js, which is not shipped, broke it), and the rebuild must succeed.
shipped_scripts() {
  (cd "$installed" && node -e '
    const fs = require("fs");
    const { scripts = {} } = require("./package.json");
    const bad = Object.entries(scripts).filter(([name, cmd]) =>
      ["preinstall", "install", "postinstall", "prepare"].includes(name) &&
      (cmd.match(/\bscripts\/[\w./-]+/g) || []).some((f) => !fs.existsSync(f)));
    console.log("install-time scripts:", JSON.stringify(Object.fromEntries(Object.entries(scripts).filter(([n]) => /install|prepare/.test(n)))));
    if (bad.length) { console.error("scripts naming files not in the tarball:", JSON.stringify(bad)); process.exit(1); }')
}
check "the installed manifest's install-time scripts name only shipped files" shipped_scripts
rebuild() {
  (cd "$consumer" && npm rebuild ipcwire --foreground-scripts --loglevel=error) && PATH="$bin" addon_picked "$consumer" /prebuilds/
}
check "npm rebuild ipcwire succeeds in the installed folder (the prebuilt binary is kept)" rebuild

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
