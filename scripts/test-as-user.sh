#!/usr/bin/env bash
# Runs the test suite (`npm test`: node scripts/test.js) as a throwaway unprivileged user, on a copy of this
# built checkout inside a private 0700 directory that user owns: the way a developer who is not root runs it in
# a fresh clone. Tests that need to start a process as yet another user report themselves skipped here.
# Needs root (to switch user with setpriv). Prints the suite's own `N passed, N failed` line last.
#   IPCWIRE_TEST_UID   the uid (and gid) to run as; default 4242, which need not exist in /etc/passwd
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
uid="${IPCWIRE_TEST_UID:-4242}"

if [ "$(id -u)" -ne 0 ]; then
  echo "test-as-user: needs root to switch to uid $uid; running the suite as $(id -un) here instead"
  cd "$root" && exec node scripts/test.js "$@"
fi

base="$(mktemp -d "${TMPDIR:-/tmp}/ipcwire-user.XXXXXX")"
trap 'rm -rf "$base"' EXIT
chmod 755 "$base"
home="$base/home"
tree="$home/ipcwire"
mkdir -p "$tree"
# The built tree without git metadata and root's scratch files (node_modules, build/ and dist/ come along).
tar -C "$root" --exclude=./.git --exclude=./.tmp --exclude='./build-*' -cf - . | tar -C "$tree" -xf -
chown -R "$uid:$uid" "$home"
chmod 700 "$home" "$tree"
echo "test-as-user: uid $uid, tree $tree (mode $(stat -c %a "$tree")), HOME $home"

cd "$tree"
# A clean environment for that user: its own HOME and temp dir, no root's runtime dir.
status=0
setpriv --reuid="$uid" --regid="$uid" --clear-groups \
  env -u XDG_RUNTIME_DIR HOME="$home" TMPDIR=/tmp USER=ipcwire-test IPCWIRE_TEST_NO_BUILD=1 \
  node scripts/test.js "$@" || status=$?
exit "$status"
