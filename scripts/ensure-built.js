'use strict';
// Builds what is missing or stale before tests or the demo run: the addon (node-gyp, through `npm run` so that
// npm's configuration — nodedir: the local Node headers, nothing downloaded — reaches node-gyp) and the
// TypeScript (scripts/build-ts.js). Used by scripts/test.js and examples/demo.js.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');

/** Newest mtime (ms) of the files under `entries` (paths relative to the package root), 0 when none exist. */
function newest(entries) {
  let t = 0;
  const visit = (p) => {
    let st;
    try {
      st = fs.statSync(p);
    } catch {
      return;
    }
    if (st.isDirectory()) for (const e of fs.readdirSync(p)) visit(path.join(p, e));
    else t = Math.max(t, st.mtimeMs);
  };
  for (const e of entries) visit(path.join(root, e));
  return t;
}

function npmRun(script, why, log) {
  log(`> npm run ${script} (${why})`);
  const r = spawnSync(process.platform === 'win32' ? 'npm.cmd' : 'npm', ['run', '--silent', script], {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit'],
    shell: process.platform === 'win32',
  });
  return r.status === 0;
}

/** The addon: rebuilt when build/Release has none, or one older than binding.gyp or src/native. */
function ensureNative(log = console.log) {
  if (process.env.IPCWIRE_NATIVE_PATH) return true;
  if (!fs.existsSync(path.join(root, 'binding.gyp'))) {
    log('ensure-built: no binding.gyp yet, not building the addon');
    return true;
  }
  const release = path.join(root, 'build', 'Release');
  const built = fs.existsSync(release)
    ? fs.readdirSync(release).filter((f) => f.endsWith('.node')).map((f) => fs.statSync(path.join(release, f)).mtimeMs)
    : [];
  if (built.length > 0 && Math.min(...built) >= newest(['binding.gyp', 'src/native'])) return true;
  return npmRun('build:native', built.length ? 'the addon is older than its sources' : 'no addon built yet', log);
}

/** The TypeScript: recompiled when dist/ is missing or older than src/ts, tsconfig.json or the build script. */
function ensureTs(log = console.log) {
  if (!fs.existsSync(path.join(root, 'src', 'ts', 'index.ts'))) {
    log('ensure-built: no src/ts/index.ts yet, not building the TypeScript');
    return true;
  }
  const out = ['dist/cjs/index.js', 'dist/esm/index.mjs'].map((f) => path.join(root, f));
  const sources = newest(['src/ts', 'tsconfig.json', 'scripts/build-ts.js']);
  if (out.every((f) => fs.existsSync(f) && fs.statSync(f).mtimeMs >= sources)) return true;
  return npmRun('build:ts', 'dist/ is missing or older than src/ts', log);
}

module.exports = { ensureNative, ensureTs };
