'use strict';
// Main accepts TCP connections and hands each one, as a net.Socket in a message, to one of two renderers, which
// serves it: the client's bytes and the answer never pass through main (Linux and macOS).
//   node examples/tcp-handoff/main.js
const net = require('node:net');
const { ipcMain, fork } = require('ipcwire');

const workers = [];
let next = 0;

// pauseOnConnect: main reads nothing from a connection it hands on (bytes read here would not go with it).
const server = net.createServer({ pauseOnConnect: true }, (socket) => {
  const worker = workers[next++ % workers.length];
  worker.send('connection', socket); // the socket is closed here once sent, as with child_process
});

ipcMain.on('ready', (event) => {
  workers.push(event.sender);
  if (workers.length === 2) server.listen(0, '127.0.0.1', clients);
});

/** Four clients ask the server on 127.0.0.1; the renderers answer. */
async function clients() {
  const { port } = server.address();
  const ask = (text) => new Promise((resolve, reject) => {
    let answer = '';
    const c = net.connect(port, '127.0.0.1', () => c.end(text));
    c.on('data', (d) => { answer += d; });
    c.on('end', () => resolve(answer));
    c.on('error', reject);
  });
  const answers = await Promise.all(['one', 'two', 'three', 'four'].map(ask));
  for (const a of answers.sort()) console.log(`client got: ${a}`);
  server.close();
  for (const w of workers) w.send('done');
  ipcMain.close();
}

for (const name of ['left', 'right']) fork(`${__dirname}/renderer.js`, [name]);
