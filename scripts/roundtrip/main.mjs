// The ESM twin of main.cjs; also checks that `import` and `require` share one copy of every class.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import api, { ipcMain, IpcMain, IpcRenderer, fork } from 'ipcwire';
import ipc from 'ipcwire/ipc';

const require = createRequire(import.meta.url);
assert.strictEqual(require('ipcwire').IpcMain, IpcMain, 'one IpcMain class for require and import');
assert.strictEqual(require('ipcwire').IpcRenderer, IpcRenderer, 'one IpcRenderer class for require and import');
assert.strictEqual(require('ipcwire/ipc'), ipc, "one 'ipcwire/ipc' object for require and import");
assert.strictEqual(api.ipcMain, ipcMain);
assert.strictEqual(ipc, ipcMain);

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

const child = fork(fileURLToPath(new URL('./renderer.mjs', import.meta.url)));
// Emulated runs (scripts/arm64-qemu-check.sh: an arm64 node under qemu on a loaded machine) need longer.
const limitMs = Number(process.env.IPCWIRE_ROUNDTRIP_TIMEOUT_MS) || 30_000;
const timer = setTimeout(() => {
  console.error(`main (esm): no result within ${limitMs} ms`);
  child.kill('SIGKILL');
  process.exit(1);
}, limitMs);
child.on('exit', (code, signal) => {
  clearTimeout(timer);
  ipcMain.close();
  assert.equal(code, 0, `renderer exited with code ${code}, signal ${signal}`);
  assert.deepEqual(seen, ['sync', 'async', 'invoke']);
  console.log('main (esm): sendSync, send, invoke ok');
});
