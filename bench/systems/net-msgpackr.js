'use strict';
// Baseline: node:net over a Unix socket, u32le length prefix + msgpackr, the obvious hand-rolled alternative.
// Latency: the server decodes each message and echoes it re-encoded. Throughput: the sender batches frames
// into 64 KiB writes and honours 'drain'; the server decodes every message and confirms the count.
const net = require('node:net');
const fs = require('node:fs');
const { Packr } = require('msgpackr');
const C = require('../lib/common');
const { FrameReader, Batcher, header } = require('../lib/frames');

const packr = new Packr();

function send(socket, msg) {
  const body = packr.pack(msg);
  socket.cork();
  socket.write(header(body.length));
  socket.write(body);
  socket.uncork();
}

function server(sockPath) {
  let expected = -1;
  let count = 0;
  const srv = net.createServer((socket) => {
    const reader = new FrameReader((body) => {
      const msg = packr.unpack(body);
      if (msg.channel === 'ping') send(socket, msg);
      else if (msg.channel === 'tp') {
        if (++count === expected) send(socket, { channel: 'done', args: [count] });
      } else if (msg.channel === 'tp-expect') {
        expected = msg.args[0];
        count = 0;
      }
    });
    socket.on('data', (d) => reader.push(d));
    socket.on('error', () => {});
  });
  srv.listen(sockPath, () => process.stdout.write('ready ' + sockPath + '\n'));
  C.exitOnStdinEnd(() => srv.close());
}

async function driver(cfg) {
  const sock = C.tmpSocket('net');
  const { child } = await C.startServer(__filename, ['server', sock.path]);
  const socket = net.connect(sock.path);
  await new Promise((res, rej) => socket.once('connect', res).once('error', rej));
  let pending = null;
  const reader = new FrameReader((body) => {
    const p = pending;
    pending = null;
    p(packr.unpack(body));
  });
  socket.on('data', (d) => reader.push(d));
  const rt = (msg) =>
    new Promise((resolve) => {
      pending = resolve;
      send(socket, msg);
    });
  const drain = () => new Promise((res) => socket.once('drain', res));

  await C.runCells(cfg, async (cell) => {
    if (cell.kind === 'latency') return C.latency(rt, C.makeMessage(cell.payload), cell.cfg, true);
    const msg = C.makeMessage(cell.payload, 'tp');
    const batcher = new Batcher(socket);
    const burst = async (count) => {
      const done = new Promise((resolve) => (pending = resolve));
      send(socket, { channel: 'tp-expect', args: [count] });
      for (let i = 0; i < count; i++) {
        if (!batcher.add(packr.pack(msg))) {
          batcher.flush();
          await drain();
        }
      }
      if (!batcher.flush()) await drain();
      const reply = await done;
      if (reply.args[0] !== count) throw new Error(`server counted ${reply.args[0]} of ${count}`);
    };
    return C.throughput(burst, C.PAYLOADS[cell.payload] || C.payloadBytes('small'), cell.cfg);
  }, rt);
  socket.destroy();
  await C.stopServer(child);
  fs.rmSync(sock.dir, { recursive: true, force: true });
}

if (process.argv[2] === 'server') server(process.argv[3]);
else driver(C.driverConfig()).catch((e) => {
  console.error(e);
  process.exit(1);
});
