#!/usr/bin/env bash
# Proves the package as users get it (STYLE.md habit 9):
#   1. `npm pack --dry-run` ships only dist/, prebuilds/, src/native/, binding.gyp, scripts/install.js, package.json,
#      README.md, LICENSE
#      and everything the entry points need;
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
shopt -s nullglob
prebuilt=(prebuilds/"$platform"/*.node)
if [ "${#prebuilt[@]}" -eq 0 ]; then
  echo "pack-check: no prebuilt binary for $platform yet, building it (scripts/prebuild.sh)"
  bash scripts/prebuild.sh
fi

# 1. What the tarball holds.
listing() {
  npm pack --dry-run --json --ignore-scripts >"$work/dry-run.json"
  node - "$work/dry-run.json" "$platform" <<'EOF'
const fs = require('node:fs');
const [, , file, platform] = process.argv;
const [info] = JSON.parse(fs.readFileSync(file, 'utf8'));
const paths = info.files.map((f) => f.path).sort();
const allowed = [/^dist\//, /^prebuilds\//, /^src\/native\//, /^scripts\/install\.js$/, /^binding\.gyp$/, /^package\.json$/, /^README\.md$/, /^LICENSE$/];
const stray = paths.filter((p) => !allowed.some((re) => re.test(p)));
const required = [
  'package.json', 'README.md', 'LICENSE', 'binding.gyp',
  'dist/cjs/index.js', 'dist/cjs/index.d.ts', 'dist/cjs/ipc.js', 'dist/cjs/ipc.d.ts', 'dist/cjs/native.js',
  'dist/esm/index.mjs', 'dist/esm/index.d.mts', 'dist/esm/ipc.mjs', 'dist/esm/ipc.d.mts',
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

# 2. Pack for real (npm runs `prepare`, which rebuilds dist/ as `npm publish` would).
mkdir "$work/tarball"
npm pack --pack-destination "$work/tarball"
tarball="$(echo "$work"/tarball/*.tgz)"
echo "pack-check: $(basename "$tarball"), $(du -k "$tarball" | cut -f1) KiB"

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

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
