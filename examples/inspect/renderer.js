'use strict';
// The renderer of examples/inspect: some calls and messages for the inspector to show.
const { ipcRenderer } = require('ipcwire');

async function run() {
  for (let i = 1; i <= 4; i++) await ipcRenderer.invoke('square', i);
  ipcRenderer.send('log', { level: 'info', text: 'a message long enough to be cut in the preview' });
  ipcRenderer.once('bye', () => ipcRenderer.close());
  ipcRenderer.send('done');
}

run();
