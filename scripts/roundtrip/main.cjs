'use strict';
// Two-process round trip with ipcwire as a user gets it (CommonJS): the renderer does sendSync, send and
// invoke; main answers each and replies to the send. Exits 0 when everything arrived, in call order.
// Used by scripts/pack-check.sh, scripts/source-fallback-check.sh and the sanitizer job of .ci/run.
const assert = require('node:assert/strict');
const path = require('node:path');
const { ipcMain, IpcMain, fork } = require('ipcwire');
const ipc = require('ipcwire/ipc');

assert.ok(ipcMain instanceof IpcMain);
assert.strictEqual(ipc, ipcMain, "a process not started by ipcwire gets ipcMain from 'ipcwire/ipc'");

const seen = [];
ipcMain.on('sync', (event, a, b) => {
  seen.push('sync');
  event.returnValue = { sum: a + b, buf: Buffer.from('ok') };
});
ipcMain.on('async', (event, text) => {
  seen.push('async');
  assert.equal(event.processId, child.pid);
  event.reply('async-reply', `${text} back`);
});
ipcMain.handle('invoke', async (event, x) => {
  seen.push('invoke');
  return [x, x * 2];
});

const child = fork(path.join(__dirname, 'renderer.cjs'));
// Emulated runs (scripts/arm64-qemu-check.sh: an arm64 node under qemu on a loaded machine) need longer.
const limitMs = Number(process.env.IPCWIRE_ROUNDTRIP_TIMEOUT_MS) || 30_000;
const timer = setTimeout(() => {
  console.error(`main (cjs): no result within ${limitMs} ms`);
  child.kill('SIGKILL');
  process.exit(1);
}, limitMs);
child.on('exit', (code, signal) => {
  clearTimeout(timer);
  ipcMain.close();
  assert.equal(code, 0, `renderer exited with code ${code}, signal ${signal}`);
  assert.deepEqual(seen, ['sync', 'async', 'invoke']);
  console.log('main (cjs): sendSync, send, invoke ok');
});
