'use strict';
// Two renderers chat over a MessagePort: main makes the channel, gives one end to each, and is out of the
// conversation from then on (the messages go straight from one renderer to the other).
//   node examples/ports-chat/main.js
const { ipcMain, fork, MessageChannelMain } = require('ipcwire');

const names = ['alice', 'bob'];
const joined = new Map();

ipcMain.on('join', (event, name) => {
  joined.set(name, event.sender);
  if (joined.size < names.length) return;
  const { port1, port2 } = new MessageChannelMain();
  joined.get('alice').postMessage('chat', { peer: 'bob' }, [port1]);
  joined.get('bob').postMessage('chat', { peer: 'alice' }, [port2]);
  console.log('main: introduced alice and bob');
});

ipcMain.on('chatted', (event, name, lines) => {
  console.log(`main: ${name} is done after ${lines} line(s)`);
  joined.delete(name);
  if (joined.size === 0) ipcMain.close();
});

for (const name of names) fork(`${__dirname}/renderer.js`, [name]);
