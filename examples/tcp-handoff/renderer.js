'use strict';
// A renderer of examples/tcp-handoff: serves the TCP connections main hands it.
const { ipcRenderer } = require('ipcwire');

const name = process.argv[2];
ipcRenderer.on('connection', (event, socket) => {
  let request = '';
  socket.on('data', (d) => { request += d; });
  socket.on('end', () => socket.end(`${request} (served by ${name})`));
});
ipcRenderer.once('done', () => ipcRenderer.close());
ipcRenderer.send('ready');
