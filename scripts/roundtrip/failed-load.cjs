'use strict';
// Run by scripts/pack-check.sh with the package's prebuilds/ emptied and no build/: using ipcwire must fail with
// a message that names the platform, the ABI, where it looked and how to build from source.
const assert = require('node:assert/strict');

let error;
try {
  const { IpcMain } = require('ipcwire');
  const main = new IpcMain();
  main.listen();
  main.close();
} catch (err) {
  error = err;
}
assert.ok(error, 'using ipcwire without any addon must throw');
console.log(`failed load says: ${error.message}`);
assert.equal(error.code, 'ERR_IPC_NATIVE_LOAD');
for (const part of [`${process.platform}-${process.arch}`, 'Node-API', 'prebuilds', 'npm rebuild ipcwire']) {
  assert.ok(error.message.includes(part), `the message names ${JSON.stringify(part)}`);
}
console.log('failed load: ok');
