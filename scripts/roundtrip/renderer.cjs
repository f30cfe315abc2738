'use strict';
const assert = require('node:assert/strict');
const { ipcRenderer } = require('ipcwire');

(async () => {
  const r = ipcRenderer.sendSync('sync', 2, 3);
  assert.equal(r.sum, 5);
  assert.ok(Buffer.isBuffer(r.buf), 'a Buffer arrives as a Buffer');
  const reply = new Promise((resolve) => ipcRenderer.once('async-reply', (event, text) => resolve(text)));
  ipcRenderer.send('async', 'hello');
  assert.deepEqual(await ipcRenderer.invoke('invoke', 21), [21, 42]);
  assert.equal(await reply, 'hello back');
  ipcRenderer.close();
  console.log('renderer (cjs): ok');
})().catch((err) => {
  console.error('renderer (cjs):', err);
  process.exitCode = 1;
});
