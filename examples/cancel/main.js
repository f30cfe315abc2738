'use strict';
// Cancellation and timeouts: `node examples/cancel/main.js`.
// main answers 'search' slowly and stops working as soon as the renderer gives up on the call (event.signal).
const path = require('node:path');
const { ipcMain, fork } = require('ipcwire');

ipcMain.handle('search', (event, query) => new Promise((resolve, reject) => {
  const timer = setTimeout(() => resolve(`results for ${query}`), query === 'slow' ? 10_000 : 50);
  event.signal.addEventListener('abort', () => {
    clearTimeout(timer); // stop the work: nobody waits for it any more
    console.log(`main: search('${query}') abandoned by the renderer (${event.signal.reason.name})`);
    reject(event.signal.reason);
  }, { once: true });
}));

const child = fork(path.join(__dirname, 'renderer.js'));
child.on('exit', (code) => {
  ipcMain.close();
  process.exitCode = code ?? 1;
});
