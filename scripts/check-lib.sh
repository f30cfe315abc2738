# Shared by scripts/pack-check.sh, scripts/source-fallback-check.sh, scripts/prebuild.sh and .ci/run (sourced).

# node-gyp must build against the local Node headers, never download them. npm on these machines is configured
# so (nodedir, reaching node-gyp as npm_config_nodedir); where it is not and the running Node's headers are
# installed beside it, point node-gyp at those.
use_local_node_headers() {
  if [ -z "${npm_config_nodedir:-}" ] && [ "$(npm config get nodedir 2>/dev/null || true)" = "undefined" ]; then
    local prefix
    prefix="$(node -p 'require("path").dirname(require("path").dirname(process.execPath))')"
    if [ -f "$prefix/include/node/node_version.h" ]; then export npm_config_nodedir="$prefix"; fi
  fi
}

# check <name> <command…>: runs one check, counts it in $passed / $failed.
passed=0
failed=0
check() {
  local name="$1"
  shift
  echo "--- $name"
  if "$@"; then
    passed=$((passed + 1))
    echo "ok: $name"
  else
    failed=$((failed + 1))
    echo "FAILED: $name"
  fi
}

# addon_picked <consumer folder> <folder part>: node-gyp-build, run in the consumer, picks an addon of the
# installed ipcwire whose path contains <folder part> (prebuilds/ or build/Release/).
addon_picked() {
  (cd "$1" && node -e '
    const path = require("path");
    const file = require("node-gyp-build").path(path.dirname(require.resolve("ipcwire/package.json")));
    console.log(`node-gyp-build picks ${path.relative(process.cwd(), file)}`);
    if (!file.split(path.sep).join("/").includes(process.argv[1])) process.exit(1);' "$2")
}
