'use strict';
// Baseline: node-ipc 9.2.1 (the last release before the 10.x protestware) over a Unix socket. It frames JSON
// text with a '\f' delimiter; a Buffer arrives as {type: 'Buffer', data: [...]} and is not revived. It has no
// backpressure signal, so throughput bursts are written as fast as it accepts them.
const fs = require('node:fs');
const path = require('node:path');
const C = require('../lib/common');

function makeIpc(id) {
  const { IPC } = require('node-ipc');
  const ipc = new IPC();
  ipc.config.id = id;
  ipc.config.silent = true;
  ipc.config.retry = 50;
  ipc.config.maxRetries = 20;
  return ipc;
}

function server(sockPath) {
  const ipc = makeIpc('bench-server');
  let expected = -1;
  let count = 0;
  ipc.serve(sockPath, () => {
    ipc.server.on('ping', (data, socket) => ipc.server.emit(socket, 'ping', data));
    ipc.server.on('tp-expect', (data) => {
      expected = data.args[0];
      count = 0;
    });
    ipc.server.on('tp', (data, socket) => {
      if (++count === expected) ipc.server.emit(socket, 'done', { channel: 'done', args: [count] });
    });
    process.stdout.write('ready ' + sockPath + '\n');
  });
  ipc.server.start();
  C.exitOnStdinEnd(() => ipc.server.stop());
}

async function driver(cfg) {
  const sock = C.tmpSocket('nipc');
  const { child } = await C.startServer(__filename, ['server', sock.path]);
  const ipc = makeIpc('bench-client');
  const conn = await new Promise((resolve, reject) => {
    ipc.connectTo('bench-server', sock.path, () => {
      const c = ipc.of['bench-server'];
      c.on('connect', () => resolve(c));
      c.on('error', reject);
    });
  });
  let pending = null;
  const settle = (msg) => {
    const p = pending;
    pending = null;
    p(msg);
  };
  conn.on('ping', settle);
  conn.on('done', settle);
  const rt = (msg) =>
    new Promise((resolve) => {
      pending = resolve;
      conn.emit('ping', msg);
    });

  await C.runCells(cfg, async (cell) => {
    if (cell.kind === 'latency') return C.latency(rt, C.makeMessage(cell.payload), cell.cfg, true);
    const msg = C.makeMessage(cell.payload, 'tp');
    const burst = async (count) => {
      const done = new Promise((resolve) => (pending = resolve));
      conn.emit('tp-expect', { channel: 'tp-expect', args: [count] });
      for (let i = 0; i < count; i++) conn.emit('tp', msg);
      const reply = await done;
      if (reply.args[0] !== count) throw new Error(`server counted ${reply.args[0]} of ${count}`);
    };
    return C.throughput(burst, C.PAYLOADS[cell.payload] || C.payloadBytes('small'), cell.cfg);
  }, rt);
  ipc.disconnect('bench-server');
  await C.stopServer(child);
  fs.rmSync(sock.dir, { recursive: true, force: true });
}

if (process.argv[2] === 'server') server(process.argv[3]);
else driver(C.driverConfig()).catch((e) => {
  console.error(e);
  process.exit(1);
});
