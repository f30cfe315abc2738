#!/usr/bin/env bash
# Checks every prebuilt binary in prebuilds/ without running it on its platform (scripts/prebuild.sh builds them):
#   - format (`file`): the right object format and CPU;
#   - Linux glibc: no GLIBC_ symbol version above the floor (2.28, Node 20's own), no GLIBCXX above 3.4.21
#     (Node 20's libstdc++), only libc's own libraries NEEDED;
#   - Linux musl: NEEDED libc.so only, every other undefined symbol is musl libc's; the x64 one is dlopen'ed
#     (RTLD_NOW) by Debian's real musl loader from a small host that stubs napi_*/uv_* (no musl Node exists here);
#   - macOS: undefined symbols are napi_*/uv_* (looked up in node at load time) or libSystem's, the only dylib
#     used; minimum OS 10.15 (x64) / 11.0 (arm64); the arm64 code signature is valid (check-macho-codesig.py);
#   - Windows: imports only NODE.EXE and system DLLs, exports napi_register_module_v1.
# Installs llvm, musl and musl-tools from Debian when missing. Prints `N passed, N failed` last.
#   bash scripts/check-prebuilds.sh [file…]     default: the eight binaries the package ships
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=check-lib.sh
. scripts/check-lib.sh
command -v llvm-nm >/dev/null && command -v llvm-readobj >/dev/null && command -v musl-gcc >/dev/null ||
  apt_need llvm musl musl-tools
work=$(mktemp -d "${TMPDIR:-/tmp}/ipcwire-binchk.XXXXXX")
trap 'rm -rf "$work"' EXIT

GLIBC_FLOOR=2.28
GLIBCXX_MAX=3.4.21
mapfile -t ALL < <(node scripts/lib/prebuilds.js binaries)
[ ${#ALL[@]} -gt 0 ] || { echo "check-prebuilds: no binaries from scripts/lib/prebuilds.js" >&2; exit 2; }
if [ $# -gt 0 ]; then files=("$@"); else files=("${ALL[@]}"); fi

# version_le A B: A <= B as dotted versions.
version_le() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$1" ]; }
# only_allowed <what> <allowed ERE> <items…>: fails naming the items that do not match.
only_allowed() {
  local what=$1 re=$2 bad
  shift 2
  bad=$(printf '%s\n' "$@" | grep -vE "$re" | grep -v '^$' || true)
  [ -z "$bad" ] || { echo "unexpected $what: $(echo $bad)" >&2; return 1; }
}
needed() { llvm-readobj --needed-libs "$1" | sed -n 's/^ *\(lib[^ ]*\|ld-[^ ]*\)$/\1/p'; }
napi_uv='^_?(napi_|node_api_|uv_)'

elf_glibc() { # file, `file` pattern
  local f=$1 pattern=$2 vers glibc glibcxx
  file -b "$f" | grep -qE "$pattern" || { echo "format: $(file -b "$f")" >&2; return 1; }
  vers=$(llvm-objdump -T "$f" | grep -oE '(GLIBC|GLIBCXX|CXXABI)_[0-9.]+' | sort -Vu || true)
  glibc=$(echo "$vers" | sed -n 's/^GLIBC_//p' | sort -V | tail -n1)
  glibcxx=$(echo "$vers" | sed -n 's/^GLIBCXX_//p' | sort -V | tail -n1)
  echo "  $f: needs GLIBC_${glibc:-none}, GLIBCXX_${glibcxx:-none}; NEEDED $(needed "$f" | tr '\n' ' ')"
  [ -n "$glibc" ] && version_le "$glibc" "$GLIBC_FLOOR" || { echo "GLIBC_$glibc is above the floor $GLIBC_FLOOR" >&2; return 1; }
  [ -z "$glibcxx" ] || version_le "$glibcxx" "$GLIBCXX_MAX" || { echo "GLIBCXX_$glibcxx is above $GLIBCXX_MAX" >&2; return 1; }
  only_allowed "NEEDED library" '^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|ld-linux-(x86-64|aarch64)\.so\.[12])$' $(needed "$f")
  # Undefined without a version: only what node exports (weak ones, like __gmon_start__, may stay unresolved).
  only_allowed "undefined symbol" "$napi_uv" $(llvm-nm -D --undefined-only "$f" | awk '$1 == "U" && $2 !~ /@/ {print $2}')
}

elf_musl() { # file, `file` pattern
  local f=$1 pattern=$2
  file -b "$f" | grep -qE "$pattern" || { echo "format: $(file -b "$f")" >&2; return 1; }
  echo "  $f: NEEDED $(needed "$f" | tr '\n' ' ')"
  [ "$(needed "$f")" = libc.so ] || { echo "NEEDED is not libc.so alone" >&2; return 1; }
  # Every other undefined symbol must be one musl's libc defines (Debian's x86-64 musl: the same API on arm64).
  llvm-nm -D --defined-only /usr/lib/x86_64-linux-musl/libc.so | awk '{print $3}' | sort -u >"$work/musl.syms"
  local missing
  missing=$(llvm-nm -D --undefined-only "$f" | awk '$1 == "U" {print $2}' | grep -vE "$napi_uv" | sort -u |
    comm -23 - "$work/musl.syms")
  [ -z "$missing" ] || { echo "undefined, and not in musl's libc: $(echo $missing)" >&2; return 1; }
}

# musl_dlopen <file>: Debian's musl loader loads the addon with RTLD_NOW from a host defining napi_*/uv_* stubs.
musl_dlopen() {
  local f=$1
  {
    echo '#include <stdio.h>'
    echo '#include <stdlib.h>'
    echo '#include <dlfcn.h>'
    llvm-nm -D --undefined-only "$f" | awk '{print $2}' | grep -E "$napi_uv" | sed 's/.*/void &(void) { abort(); }/'
    echo 'int main(int argc, char **argv) {'
    echo '  void *h = dlopen(argv[1], RTLD_NOW);'
    echo '  if (!h) { printf("dlopen failed: %s\n", dlerror()); return 1; }'
    echo '  int (*version)(void) = (int (*)(void))dlsym(h, "node_api_module_get_api_version_v1");'
    echo '  void *init = dlsym(h, "napi_register_module_v1");'
    echo '  printf("  musl dlopen: Node-API %d, napi_register_module_v1 %s\n", version ? version() : -1, init ? "found" : "missing");'
    echo '  return version && version() == 8 && init ? 0 : 1;'
    echo '}'
  } >"$work/musl-host.c"
  musl-gcc -rdynamic -o "$work/musl-host" "$work/musl-host.c"
  "$work/musl-host" "$ROOT/$f"
}

macho() { # file, `file` pattern, minos
  local f=$1 pattern=$2 minos=$3 dylibs got
  file -b "$f" | grep -qE "$pattern" || { echo "format: $(file -b "$f")" >&2; return 1; }
  # (the first entry is the file's own install name)
  dylibs=$(llvm-objdump --macho --dylibs-used "$f" | tail -n +2 | awk '{print $1}' | grep -vxF "$f" || true)
  got=$(llvm-objdump --macho --private-headers "$f" | awk '/LC_BUILD_VERSION/ {b=1} b && $1 == "minos" {print $2; exit}')
  echo "  $f: minos $got; dylibs $(echo $dylibs); $(llvm-nm -u "$f" | grep -cE "$napi_uv") napi_*/uv_* undefined"
  [ "$got" = "$minos" ] || { echo "minimum macOS is $got, not $minos" >&2; return 1; }
  only_allowed "dylib" '^/usr/lib/libSystem\.B\.dylib$' $dylibs
  # napi_*/uv_* are bound flat (from the node executable); everything else must come from libSystem.
  only_allowed "binding (not libSystem, not flat napi_/uv_)" '(libSystem|flat-namespace +_?(napi_|node_api_|uv_))' \
    "$(llvm-objdump --macho --bind --lazy-bind "$f" | awk 'NF >= 5 && $1 ~ /^__/ {print " " $(NF-1), $NF}')"
}

pe() { # file, `file` pattern
  local f=$1 pattern=$2 dlls
  file -b "$f" | grep -qE "$pattern" || { echo "format: $(file -b "$f")" >&2; return 1; }
  dlls=$(llvm-readobj --coff-imports "$f" | sed -n 's/^ *Name: \(.*\.[A-Za-z]*\)$/\1/p' | sort -u)
  echo "  $f: imports $(echo $dlls)"
  only_allowed "import" '^(NODE\.EXE|node\.exe|KERNEL32\.dll|kernel32\.dll|ADVAPI32\.dll|advapi32\.dll|msvcrt\.dll|ntdll\.dll|api-ms-win-[a-z0-9-]+\.dll)$' $dlls
  llvm-readobj --coff-exports "$f" | grep -q 'Name: napi_register_module_v1$' || { echo "no napi_register_module_v1 export" >&2; return 1; }
}

for f in "${files[@]}"; do
  if [ ! -s "$f" ]; then
    check "$f exists" false
    continue
  fi
  echo "  $f: $(stat -c %s "$f") bytes"
  case $f in
  *linux-x64/*.glibc.node) check "$f: x86-64 ELF, glibc <= $GLIBC_FLOOR, no GLIBCXX > $GLIBCXX_MAX" elf_glibc "$f" 'ELF 64-bit LSB shared object, x86-64' ;;
  *linux-arm64/*.glibc.node) check "$f: aarch64 ELF, glibc <= $GLIBC_FLOOR, no GLIBCXX > $GLIBCXX_MAX" elf_glibc "$f" 'ELF 64-bit LSB shared object, ARM aarch64' ;;
  *linux-x64/*.musl.node)
    check "$f: x86-64 ELF, NEEDED libc.so only, musl symbols" elf_musl "$f" 'ELF 64-bit LSB shared object, x86-64'
    check "$f: loads with RTLD_NOW under the musl loader" musl_dlopen "$f" ;;
  *linux-arm64/*.musl.node) check "$f: aarch64 ELF, NEEDED libc.so only, musl symbols" elf_musl "$f" 'ELF 64-bit LSB shared object, ARM aarch64' ;;
  *darwin-x64/*) check "$f: x86_64 Mach-O dylib, macOS 10.15, napi/uv + libSystem only" macho "$f" 'Mach-O 64-bit x86_64 dynamically linked shared library' 10.15 ;;
  *darwin-arm64/*)
    check "$f: arm64 Mach-O dylib, macOS 11.0, napi/uv + libSystem only" macho "$f" 'Mach-O 64-bit arm64 dynamically linked shared library' 11.0
    check "$f: arm64 code signature valid" python3 scripts/check-macho-codesig.py "$f" ;;
  *win32-x64/*) check "$f: x86-64 PE DLL, node.exe and system imports only" pe "$f" 'PE32\+ executable \(DLL\).*x86-64' ;;
  *win32-arm64/*) check "$f: Aarch64 PE DLL, node.exe and system imports only" pe "$f" 'PE32\+ executable \(DLL\).*Aarch64' ;;
  *) check "$f: a known platform" false ;;
  esac
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
