'use strict';
// One side of the chat: alice starts, bob answers, three lines each, then both hang up.
const { ipcRenderer } = require('ipcwire');

const me = process.argv[2];
const script = {
  alice: ['hi bob', 'how is the port?', 'bye'],
  bob: ['hi alice', 'direct, main never sees us', 'bye'],
};

ipcRenderer.on('chat', (event, { peer }) => {
  const [port] = event.ports;
  const lines = script[me];
  let said = 0;
  const say = () => port.postMessage({ from: me, text: lines[said++] });
  port.on('message', ({ data }) => {
    console.log(`${me}: ${data.from} says "${data.text}"`);
    if (said < lines.length) say();
    else port.close();
  });
  port.on('close', () => {
    ipcRenderer.send('chatted', me, said);
    ipcRenderer.close();
  });
  port.start();
  if (me === 'alice') say();
  void peer;
});

ipcRenderer.send('join', me);
