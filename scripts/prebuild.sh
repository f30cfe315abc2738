#!/usr/bin/env bash
# Builds the prebuilt binary that ships inside the npm tarball:
#   prebuilds/<platform>-<arch>/ipcwire.<libc>.node   (found at require time by node-gyp-build)
# prebuildify 6 through npx, Node-API (one binary for every Node version with Node-API 8), stripped, tagged with
# the libc, for an explicit target (the running Node, whose headers are on this machine: nothing is downloaded).
# Named prebuild.sh, not an npm script `prebuild`: npm would run that before every `npm run build`.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${IPCWIRE_PREBUILD_TARGET:-$(node -p process.versions.node)}"
# shellcheck source=check-lib.sh
. scripts/check-lib.sh
use_local_node_headers

dir="prebuilds/$(node -p 'process.platform + "-" + process.arch')"
rm -rf "$dir"
npx --no -- prebuildify --napi --strip --tag-libc --target "$target"

shopt -s nullglob
built=("$dir"/*.node)
if [ "${#built[@]}" -ne 1 ]; then
  echo "prebuild: expected one addon in $dir, found ${#built[@]}" >&2
  exit 1
fi
# The binary must load by itself (no build/ beside it) in a plain Node.
node -e 'const b = require(require("path").resolve(process.argv[1])); if (typeof b !== "object" || !b) process.exit(1)' "${built[0]}"
echo "prebuild: ${built[0]} ($(du -k "${built[0]}" | cut -f1) KiB, target node $target, Node-API)"
