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

# sha512_b64 <file>: the file's sha512, base64 (the form of npm's `integrity` field after "sha512-").
sha512_b64() {
  node -e 'process.stdout.write(require("crypto").createHash("sha512").update(require("fs").readFileSync(process.argv[1])).digest("base64"))' "$1"
}

# npm_fetch <name> <version> <integrity> <dir>: the registry tarball of name@version (npm pack), checked against
# the pinned sha512 integrity, unpacked into <dir>. The tarball is kept in <dir>/../pkgs and <dir> is marked done,
# so a rerun with the same version costs nothing.
npm_fetch() {
  local name=$1 version=$2 integrity=$3 dir=$4 pkgs tgz
  [ -f "$dir/.ok-$version" ] && return 0
  pkgs="$(dirname "$dir")/pkgs"
  tgz="$pkgs/$(echo "${name#@}" | tr / -)-$version.tgz"
  mkdir -p "$pkgs"
  if [ ! -f "$tgz" ] || [ "sha512-$(sha512_b64 "$tgz")" != "$integrity" ]; then
    rm -f "$tgz"
    (cd "$pkgs" && npm pack --silent "$name@$version" >/dev/null) || { echo "npm pack $name@$version failed" >&2; return 1; }
  fi
  if [ "sha512-$(sha512_b64 "$tgz")" != "$integrity" ]; then
    echo "$tgz: sha512 does not match the pinned integrity $integrity" >&2
    return 1
  fi
  rm -rf "$dir" && mkdir -p "$dir" && tar -xzf "$tgz" -C "$dir" --strip-components=1 && touch "$dir/.ok-$version"
}

# apt_need <package…>: installs the Debian packages that are not installed yet (CI runs as root).
apt_need() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  echo "installing ${missing[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# fail_early <message>: ends a check script at once, its closing line counting the checks run so far and this
# failure. The message is prefixed with $CHECK_TAG.
fail_early() {
  echo "${CHECK_TAG:-check}: $*" >&2
  echo "$passed passed, $((failed + 1)) failed"
  exit 1
}

# need_root_and_prebuild <why root> <addon file> <prebuild.sh target>: what the checks that run a prebuilt binary
# in another root or CPU need before they start: root, that binary, and the compiled TypeScript.
need_root_and_prebuild() {
  [ "$(id -u)" = 0 ] || fail_early "needs root ($1)"
  [ -s "$2" ] || fail_early "$2 missing: run bash scripts/prebuild.sh $3"
  [ -f dist/cjs/index.js ] || fail_early "dist/ missing: run npm run build:ts"
}
