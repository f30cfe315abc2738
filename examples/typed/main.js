// @ts-check
'use strict';
// Typed channels from plain JavaScript: `node examples/typed/main.js`. The `@ts-check` comment makes TypeScript
// (and editors) check every channel name, argument and result against ./channels.d.ts; test/types compiles this
// file, so a misuse here fails the build.
const path = require('node:path');
const { ipcMain, fork, typed } = require('ipcwire');

/** @type {import('ipcwire').IpcMain<import('./channels').Channels>} */
const ipc = typed(ipcMain);

ipc.handle('add', (_event, a, b) => a + b);
ipc.on('greet', (event, name) => {
  event.returnValue = `hello ${name}`;
  event.reply('tick', 1);
});
const stop = ipc.subscribe('tick', (_event, n) => {
  console.log(`main: tick ${n}`);
  stop(); // the disposer removes this listener: later ticks are not printed
});

const child = fork(path.join(__dirname, 'renderer.js'));
child.on('exit', (code) => {
  ipcMain.close();
  process.exitCode = code ?? 1;
});
