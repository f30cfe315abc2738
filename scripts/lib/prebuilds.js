'use strict';
/**
 * The prebuilt binaries the package ships, one per target `<platform>-<arch>[-<libc>]`: the one list that
 * scripts/prebuild.sh builds, scripts/check-prebuilds.sh inspects, scripts/prepack-check.js requires in the tarball
 * and test/loader.test.ts offers to the loader (src/ts/native.ts picks among them by the same naming).
 * Shell scripts read it with `node scripts/lib/prebuilds.js targets` (or `binaries`): one name per line.
 */
const TARGETS = [
  'linux-x64-glibc',
  'linux-x64-musl',
  'linux-arm64-glibc',
  'linux-arm64-musl',
  'darwin-x64',
  'darwin-arm64',
  'win32-x64',
  'win32-arm64',
];

/**
 * Where a target's binary sits in the package: `prebuilds/<platform>-<arch>/ipcwire.node`, on Linux
 * `ipcwire.<libc>.node`.
 * @param {string} target
 * @returns {string}
 */
function binaryOf(target) {
  const [platform, arch, libc] = target.split('-');
  return `prebuilds/${platform}-${arch}/ipcwire.${libc ? `${libc}.` : ''}node`;
}

const BINARIES = TARGETS.map(binaryOf);

module.exports = { TARGETS, BINARIES, binaryOf };

if (require.main === module) {
  const what = process.argv[2];
  if (what !== 'targets' && what !== 'binaries') {
    process.stderr.write('usage: node scripts/lib/prebuilds.js targets|binaries\n');
    process.exit(2);
  }
  process.stdout.write((what === 'targets' ? TARGETS : BINARIES).join('\n') + '\n');
}
