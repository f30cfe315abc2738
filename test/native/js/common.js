'use strict';
// Helpers for the addon's plain-JS tests: load the addon, encode/decode frames.
const path = require('node:path');
const fs = require('node:fs');
const os = require('node:os');

// IPCWIRE_NATIVE_PATH (sanitizer builds) first, then the cmake-js build of scripts/native-tests.sh, then
// node-gyp's build/.
const root = path.join(__dirname, '..', '..', '..');
const addonPath = process.env.IPCWIRE_NATIVE_PATH ||
  [path.join(root, 'build-cmake', 'Release', 'ipcwire.node'), path.join(root, 'build', 'Release', 'ipcwire.node')]
    .find((p) => fs.existsSync(p));
const binding = require(addonPath);

binding.setErrorFactory((code, message, props) => {
  const e = new Error(message);
  e.code = code;
  if (props) Object.assign(e, props);
  return e;
});

/** Split Buffers (each holding whole frames) into {kind, id, payload}. */
function parseChunks(chunks) {
  const out = [];
  for (const b of chunks) {
    let o = 0;
    while (o < b.length) {
      const len = b.readUInt32LE(o);
      out.push({ kind: b[o + 4], id: b.readUInt32LE(o + 5), payload: b.subarray(o + 9, o + 4 + len) });
      o += 4 + len;
    }
    if (o !== b.length) throw new Error('chunk does not end on a frame boundary');
  }
  return out;
}

// Each test process removes the directories it made (and only those) when it exits.
const madeDirs = [];
process.on('exit', () => { for (const d of madeDirs) fs.rmSync(d, { recursive: true, force: true }); });

function tmpSock(name) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iwn-'));
  madeDirs.push(dir);
  return path.join(dir, (name || 's') + '.sock');
}

const { childStatus, ourLeaks } = require('./sanitizer');

module.exports = { binding, parseChunks, tmpSock, addonPath, childStatus, ourLeaks };
