'use strict';
// ipcwire itself. The driver is a renderer (`new IpcRenderer().connect(address)`) measuring against a main in
// its own process: sendSync (main sets returnValue), invoke (main's handle), send + reply (main answers with
// event.reply), and one-way send throughput (main counts, then tells the renderer it has them all).
// IPCWIRE_BENCH_MODULE points at another build (a scratch copy with a candidate fix) to compare.
const fs = require('node:fs');
const path = require('node:path');
const C = require('../lib/common');

const modulePath = process.env.IPCWIRE_BENCH_MODULE || path.join(__dirname, '..', '..');
const HIGH_WATER = 1024 * 1024; // bytes queued before the sender waits for 'drain'

function server(sockPath) {
  const { IpcMain } = require(modulePath);
  const main = new IpcMain();
  let expected = -1;
  let count = 0;
  main.on('ping', (event, ...args) => {
    event.returnValue = args;
  });
  main.handle('inv', (event, ...args) => args);
  main.on('async', (event, ...args) => event.reply('pong', args));
  const { releaseShared } = require(modulePath);
  let release = false;
  main.on('tp-expect', (event, n, giveBack) => {
    expected = n;
    count = 0;
    release = giveBack === true;
  });
  main.on('tp', (event, bytes) => {
    // The block goes back to the renderer's pool now rather than when V8 collects this Buffer (false, and nothing
    // to do, for one that came through the socket: the pool was full, or not agreed yet).
    if (release) releaseShared(bytes);
    if (++count === expected) event.sender.send('done', count);
  });
  main.listen(sockPath);
  process.stdout.write('ready ' + sockPath + '\n');
  C.exitOnStdinEnd(() => main.close());
}

async function driver(cfg) {
  const { IpcRenderer } = require(modulePath);
  const sock = C.tmpSocket('iw');
  const { child } = await C.startServer(__filename, ['server', sock.path]);
  const r = new IpcRenderer();
  r.connect(sock.path);
  let pending = null;
  const settle = (_event, value) => {
    const p = pending;
    pending = null;
    p(value);
  };
  r.on('pong', settle);
  r.on('done', settle);
  const rts = {
    sendSync: [(msg) => r.sendSync('ping', ...msg.args), false],
    invoke: [(msg) => r.invoke('inv', ...msg.args), true],
    'send+reply': [
      (msg) =>
        new Promise((resolve) => {
          pending = resolve;
          r.send('async', ...msg.args);
        }),
      true,
    ],
  };
  const drain = () => new Promise((res) => r.link.once('drain', res));

  await C.runCells(cfg, async (cell) => {
    if (cell.kind === 'latency') {
      const [rt, isAsync] = rts[cell.api];
      const msg = C.makeMessage(cell.payload);
      const check = await (isAsync ? rt(msg) : Promise.resolve(rt(msg)));
      if (!Array.isArray(check) || check.length !== msg.args.length) throw new Error(`${cell.api}: wrong echo`);
      return C.latency(rt, msg, cell.cfg, isAsync);
    }
    const msg = C.makeMessage(cell.payload, 'tp');
    const burst = async (count) => {
      const done = new Promise((resolve) => (pending = resolve));
      r.send('tp-expect', count, cell.api === 'send, releaseShared');
      for (let i = 0; i < count; i++) {
        r.send('tp', ...msg.args);
        if (r.bufferedAmount > HIGH_WATER) await drain();
      }
      const got = await done;
      if (got !== count) throw new Error(`main counted ${got} of ${count}`);
    };
    return C.throughput(burst, C.PAYLOADS[cell.payload] || C.payloadBytes('small'), cell.cfg);
  }, (m) => rts.invoke[0](m));
  r.close();
  await C.stopServer(child);
  fs.rmSync(sock.dir, { recursive: true, force: true });
}

if (process.argv[2] === 'server') server(process.argv[3]);
else driver(C.driverConfig()).catch((e) => {
  console.error(e);
  process.exit(1);
});
