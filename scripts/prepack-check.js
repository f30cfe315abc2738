#!/usr/bin/env node
'use strict';
// The `prepack` guard: `npm pack` and `npm publish` refuse to make a tarball unless every prebuilt binary the
// package promises is in prebuilds/ and newer than the native sources it was built from. Without it a tarball made
// after a plain `npm run build` ships no binary at all, silently, and every user without a compiler gets
// ERR_IPC_NATIVE_LOAD. `npm run build:prebuilds` makes them all (scripts/prebuild.sh).
//
// Development opt-out: IPCWIRE_PACK_WITHOUT_PREBUILDS=1 packs anyway and says what is missing or stale.
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');

/** Every binary the tarball must carry (scripts/prebuild.sh builds these; src/ts/native.ts loads them). */
const { BINARIES } = require('./lib/prebuilds');

/** Files under `dir` (recursively), relative to root. */
function walk(dir) {
  const out = [];
  for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(rel));
    else out.push(rel);
  }
  return out;
}

const sources = [...walk('src/native').filter((f) => /\.(cc|h)$/.test(f)), 'binding.gyp'];
const newest = sources.reduce(
  (best, f) => {
    const t = fs.statSync(path.join(root, f)).mtimeMs;
    return t > best.t ? { f, t } : best;
  },
  { f: '', t: 0 },
);

const problems = [];
for (const bin of BINARIES) {
  let st;
  try {
    st = fs.statSync(path.join(root, bin));
  } catch {
    problems.push(`${bin}: missing`);
    continue;
  }
  if (st.size === 0) problems.push(`${bin}: empty`);
  else if (st.mtimeMs < newest.t) problems.push(`${bin}: older than ${newest.f}`);
}

if (problems.length === 0) {
  console.log(`prepack: all ${BINARIES.length} prebuilt binaries present and newer than the native sources`);
  process.exit(0);
}
const list = problems.map((p) => `  ${p}`).join('\n');
if (process.env.IPCWIRE_PACK_WITHOUT_PREBUILDS === '1') {
  console.warn(`prepack: IPCWIRE_PACK_WITHOUT_PREBUILDS=1, packing anyway; NOT for release:\n${list}`);
  process.exit(0);
}
console.error(
  `prepack: refusing to pack: the tarball would lack prebuilt binaries that users without a compiler need:\n${list}\n` +
    'Build them with `npm run build:prebuilds` (Linux x86-64, installs its toolchains; ~15 min cold), or set ' +
    'IPCWIRE_PACK_WITHOUT_PREBUILDS=1 for a development tarball.',
);
process.exit(1);
