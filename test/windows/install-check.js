'use strict';
// Runs under wine's node.exe in a folder where the packed tarball was installed with scripts off: the package
// must load its shipped prebuilds/win32-x64 binary (no compiler anywhere) and do a round trip, from
// CommonJS and from ESM. Prints `N passed, N failed`.
const { Worker } = require('node:worker_threads');

let passed = 0;
let failed = 0;
const check = (name, ok, detail) => {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? 'ok' : 'not ok'} - install: ${name}${detail ? ` (${detail})` : ''}`);
};

(async () => {
  const addonPath = require.resolve('ipcwire/package.json').replace(/package\.json$/, '');
  const { IpcMain, IpcRenderer } = require('ipcwire');
  const main = new IpcMain();
  const address = main.listen(`wt-install-${process.pid}`);
  main.handle('add', (event, a, b) => a + b);
  main.on('sync', (event, x) => {
    event.returnValue = x * 3;
  });
  const r = new IpcRenderer();
  r.connect(address);
  check('require + invoke round trip', (await r.invoke('add', 2, 3)) === 5);
  // sendSync from a worker thread (this thread must stay free to answer).
  const code = `const { IpcRenderer } = require(${JSON.stringify(require.resolve('ipcwire'))});
    const r = new IpcRenderer(); r.connect(${JSON.stringify(address)});
    require('node:worker_threads').parentPort.postMessage(r.sendSync('sync', 14)); r.close();`;
  const fromWorker = await new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true });
    w.once('message', resolve);
    w.once('error', reject);
  });
  check('sendSync from a worker', fromWorker === 42, String(fromWorker));
  const esm = await import('ipcwire');
  check('ESM import', typeof esm.IpcMain === 'function' && esm.IpcMain === IpcMain);
  const fs = require('node:fs');
  const path = require('node:path');
  const prebuilt = path.join(addonPath, 'prebuilds', 'win32-x64');
  check('ships a win32-x64 prebuild and no build/ folder',
    fs.existsSync(prebuilt) && !fs.existsSync(path.join(addonPath, 'build')), fs.readdirSync(prebuilt).join(','));
  r.close();
  main.close();
})()
  .catch((e) => check('unexpected error', false, e && e.stack))
  .finally(() => {
    console.log(`${passed} passed, ${failed} failed`);
    process.exitCode = failed ? 1 : 0;
  });
