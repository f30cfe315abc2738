#!/usr/bin/env bash
# Proves the source fallback: a copy of the package tarball with its prebuilds removed, installed normally, builds
# the addon from binding.gyp through the `install` script (scripts/install.js → node-gyp-build → node-gyp, against
# the local Node headers: nothing is downloaded), and a two-process round trip runs with it.
# Prints `N passed, N failed` last; exits non-zero when a check failed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

work="$(mktemp -d "${TMPDIR:-/tmp}/ipcwire-fallback.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# shellcheck source=check-lib.sh
. scripts/check-lib.sh
use_local_node_headers

# The tarball (npm runs `prepack`), then the same without prebuilds/.
mkdir "$work/tarball"
npm pack --pack-destination "$work/tarball"
tarball="$(echo "$work"/tarball/*.tgz)"
mkdir "$work/unpacked"
tar -xzf "$tarball" -C "$work/unpacked"
rm -rf "$work/unpacked/package/prebuilds"
tar -czf "$work/ipcwire-source-only.tgz" -C "$work/unpacked" package

consumer="$work/consumer"
mkdir -p "$consumer"
cp scripts/roundtrip/*.cjs scripts/roundtrip/*.mjs "$consumer/"
echo '{ "name": "ipcwire-source-consumer", "private": true }' >"$consumer/package.json"
install_from_source() {
  (cd "$consumer" && npm install --no-audit --no-fund --foreground-scripts --loglevel=error "$work/ipcwire-source-only.tgz")
}
check "npm install of the package without prebuilds builds it from source" install_from_source

installed="$consumer/node_modules/ipcwire"
built_from_source() {
  [ ! -e "$installed/prebuilds" ] || { echo "the installed package has prebuilds/" >&2; return 1; }
  addon_picked "$consumer" /build/Release/
}
check "the installed package loads the addon it built (build/Release)" built_from_source
check "round trip with the source build (sendSync, send, invoke)" env -C "$consumer" node main.cjs

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
