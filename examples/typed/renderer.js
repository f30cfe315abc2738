// @ts-check
'use strict';
// The renderer of examples/typed.
const { ipcRenderer, typed } = require('ipcwire');

/** @type {import('ipcwire').IpcRenderer<import('./channels').Channels>} */
const ipc = typed(ipcRenderer);

async function run() {
  ipc.on('tick', (_event, n) => console.log(`renderer: tick ${n} from main`));
  console.log(`renderer: ${ipc.sendSync('greet', 'typed world')}`);
  const sum = await ipc.invoke('add', 2, 3); // a number, checked at compile time
  console.log(`renderer: add(2, 3) = ${sum.toFixed(1)}`);
  ipc.send('tick', 7);
  ipc.send('tick', 8);
  ipc.removeAllListeners('tick');
  ipc.close();
}

run();
