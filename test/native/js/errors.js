'use strict';
// Node-shaped system errors and ERR_IPC_* errors from listen/connect.
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const net = require('node:net');
const { execFileSync } = require('node:child_process');
const { binding, tmpSock } = require('./common');

const noop = () => {};
const addr = tmpSock();
const server = binding.listen(addr, 16, 0o600, noop, noop);

// EADDRINUSE, worded as net.Server words it.
assert.throws(() => binding.listen(addr, 16, 0o600, noop, noop), (e) => {
  assert.strictEqual(e.code, 'EADDRINUSE');
  assert.strictEqual(e.errno, -98);
  assert.strictEqual(e.syscall, 'listen');
  assert.strictEqual(e.address, addr);
  assert.strictEqual(e.message, `listen EADDRINUSE: address already in use ${addr}`);
  return true;
});

// ENOENT / ECONNREFUSED on connect, compared with node:net's own errors.
function netError(p) {
  const out = execFileSync(process.execPath, ['-e', `require('net').connect(${JSON.stringify(p)}).on('error', e => { console.log(JSON.stringify({code: e.code, errno: e.errno, syscall: e.syscall, address: e.address, message: e.message})) })`]);
  return JSON.parse(out.toString());
}
const missing = path.join(path.dirname(addr), 'missing.sock');
function pick(e) { return { code: e.code, errno: e.errno, syscall: e.syscall, address: e.address, message: e.message }; }
try { binding.connect(missing, 100); assert.fail('no throw'); } catch (e) { assert.deepStrictEqual(pick(e), netError(missing)); }

const stale = path.join(path.dirname(addr), 'stale.sock');
const s2 = binding.listen(stale, 16, 0o600, noop, noop);
s2.close();  // the file stays (TS removes it): connecting gives ECONNREFUSED
try { binding.connect(stale, 100); assert.fail('no throw'); } catch (e) { assert.deepStrictEqual(pick(e), netError(stale)); }

// Path too long: never a truncated bind.
const long = '/tmp/' + 'x'.repeat(binding.maxPathLength);
assert.strictEqual(binding.maxPathLength, 107);
for (const fn of [() => binding.listen(long, 16, 0o600, noop, noop), () => binding.connect(long, 10)]) {
  assert.throws(fn, (e) => e.code === 'ERR_IPC_PATH_TOO_LONG' && e.maxLength === 107 && /longer/.test(e.message));
}
assert.ok(!fs.existsSync(long.slice(0, 108)));
// Exactly maxPathLength works.
const exact = path.join(path.dirname(addr), 'y'.repeat(binding.maxPathLength - path.dirname(addr).length - 1));
assert.strictEqual(exact.length, binding.maxPathLength);
const s3 = binding.listen(exact, 16, 0o600, noop, noop);
const c3 = binding.connect(exact, 100);
c3.close(); s3.close();
assert.ok(!fs.existsSync(exact) && !fs.existsSync(exact + '.lock'), 'close() removes the socket and lock files');

// Fresh worker-less instance before setErrorFactory: plain Error with .code.
const out = execFileSync(process.execPath, ['-e', `
  const b = require(${JSON.stringify(require('./common').addonPath)});
  try { b.connect('/tmp/' + 'z'.repeat(200), 10) } catch (e) { console.log(e instanceof Error, e.code) }`]);
assert.strictEqual(out.toString().trim(), 'true ERR_IPC_PATH_TOO_LONG');

// A connection's credentials, both sides.
let serverSide;
const s4addr = path.join(path.dirname(addr), 'c.sock');
const s4 = binding.listen(s4addr, 16, 0o600, (c) => { serverSide = c; }, noop);
const c4 = binding.connect(s4addr, 100);
setImmediate(() => {
  assert.deepStrictEqual(c4.credentials, { pid: process.pid, uid: process.getuid(), gid: process.getgid() });
  assert.deepStrictEqual(serverSide.credentials, { pid: process.pid, uid: process.getuid(), gid: process.getgid() });
  assert.strictEqual(c4.maxFrameSize, 536870912);
  c4.maxFrameSize = 1024;
  assert.strictEqual(c4.maxFrameSize, 1024);
  // write/call after close throw ERR_IPC_DISCONNECTED.
  c4.close(); c4.close();
  assert.throws(() => c4.write(3, 0, null), { code: 'ERR_IPC_DISCONNECTED' });
  assert.throws(() => c4.call(1, Buffer.alloc(0), 0, noop), { code: 'ERR_IPC_DISCONNECTED' });
  serverSide.close(); s4.close(); server.close();
  fs.rmSync(path.dirname(addr), { recursive: true });
  console.log(JSON.stringify({ test: 'errors', ok: true }));
});
