'use strict';
// Another user cannot connect to a socket in a directory it cannot search: EACCES, worded as node:net words it.
// Needs root (to start the client as uid 65534); elsewhere it reports itself skipped with the reason. The client
// loads a copy of the addon from a world-readable directory, so the checkout may be private (0700).
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { binding, tmpSock, addonPath } = require('./common');

const OTHER_UID = 65534;
function skip(reason) {
  console.log(JSON.stringify({ test: 'eacces', skipped: reason }));
  process.exit(0);
}
if (typeof process.getuid !== 'function') skip('no Unix users on this platform');
if (process.getuid() !== 0) skip(`running as uid ${process.getuid()}, not root: cannot start a process as another user`);

const shared = fs.mkdtempSync(path.join(os.tmpdir(), 'iwn-addon-'));
process.on('exit', () => fs.rmSync(shared, { recursive: true, force: true }));
fs.chmodSync(shared, 0o755);
const addonCopy = path.join(shared, 'ipcwire.node');
fs.copyFileSync(addonPath, addonCopy);
fs.chmodSync(addonCopy, 0o755);

function asOther(code) {
  return spawnSync(process.execPath, ['-e', code], { uid: OTHER_UID, gid: OTHER_UID, cwd: shared, encoding: 'utf8' });
}
const probe = asOther(`require(${JSON.stringify(addonCopy)})`);
if (probe.error || probe.status !== 0) {
  skip(`cannot run node as uid ${OTHER_UID} here: ${probe.error ? probe.error.message : probe.stderr.trim().split('\n').pop()}`);
}

const noop = () => {};
const addr = tmpSock();
const server = binding.listen(addr, 16, 0o600, noop, noop);
fs.chmodSync(path.dirname(addr), 0o700);
const r = asOther(`
  const b = require(${JSON.stringify(addonCopy)});
  try { b.connect(${JSON.stringify(addr)}, 100); console.log('{}') } catch (e) { console.log(JSON.stringify({code: e.code, syscall: e.syscall, message: e.message})) }`);
assert.strictEqual(r.status, 0, r.stderr);
assert.deepStrictEqual(JSON.parse(r.stdout), { code: 'EACCES', syscall: 'connect', message: `connect EACCES ${addr}` });
server.close();
fs.rmSync(path.dirname(addr), { recursive: true });
console.log(JSON.stringify({ test: 'eacces', ok: true }));
