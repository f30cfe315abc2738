'use strict';
// Large payloads through the shared-memory pools, the rows `npm run bench` does not cover:
//   - a 64 MiB round trip with the zero-copy API (a renderer invokes main with a Buffer from allocShared; main
//     answers with its length) against a small invoke round trip, same connection, same run;
//   - the same 64 MiB as an ordinary Buffer (copied once into the pool), and with shared memory off (socket);
//   - resident memory of both processes over 10,000 one-way 1 MiB messages (at 1,000 and at 10,000).
//   node bench/shm.js [--quick]      one JSON line per row, then a summary line
// Runs main in a child process (the bench/lib/common.js server protocol), the renderer here.
const fs = require('node:fs');
const path = require('node:path');
const C = require('./lib/common');

const modulePath = process.env.IPCWIRE_BENCH_MODULE || path.join(__dirname, '..');
const MiB = 1024 * 1024;

function server(sockPath) {
  const { IpcMain } = require(modulePath);
  const main = new IpcMain({ shm: { poolSize: 128 * MiB } });
  let count = 0;
  main.handle('small', () => 1);
  main.handle('len', (_e, buf) => buf.length);
  main.handle('rss', () => process.memoryUsage().rss);
  main.on('tp', (event) => {
    if (++count % 8 === 0) event.sender.send('k', count);
  });
  main.listen(sockPath);
  process.stdout.write('ready ' + sockPath + '\n');
  C.exitOnStdinEnd(() => main.close());
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function rtts(fn, n) {
  for (let i = 0; i < Math.min(n, 20); i++) await fn();
  const out = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    out.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  return Math.round(median(out) * 10) / 10;
}

async function driver(quick) {
  const { IpcRenderer } = require(modulePath);
  const sock = C.tmpSocket('shm');
  const { child } = await C.startServer(__filename, ['server', sock.path]);
  const results = {};
  for (const shm of [true, false]) {
    const r = new IpcRenderer({ shm: shm ? { poolSize: 128 * MiB } : false });
    r.connect(sock.path);
    await r.invoke('small'); // main's handshake answer has arrived: shared memory is agreed (or not)
    const tag = shm ? 'shm' : 'socket';
    results[`small_${tag}_us`] = await rtts(() => r.invoke('small'), quick ? 200 : 2000);
    const shared = r.allocShared(64 * MiB);
    shared.fill(1);
    if (shm) results.allocShared_64MiB_us = await rtts(() => r.invoke('len', shared), quick ? 5 : 50);
    const plain = Buffer.alloc(64 * MiB, 2);
    results[`copy_64MiB_${tag}_us`] = await rtts(() => r.invoke('len', plain), quick ? 3 : 20);
    if (shm) results.stats = r.wire._sharedStats();
    r.close();
  }
  // Resident memory over 10,000 one-way 1 MiB messages (main acknowledges every 8th; the sender stays at most
  // 16 ahead).
  {
    const r = new IpcRenderer({ shm: { poolSize: 64 * MiB } });
    r.connect(sock.path);
    await r.invoke('small');
    const buf = Buffer.alloc(MiB, 3);
    const total = quick ? 2000 : 10000;
    const rss = [];
    let acked = 0;
    let wake = null;
    r.on('k', (_e, n) => {
      acked = n;
      if (wake) wake();
    });
    const t0 = process.hrtime.bigint();
    for (let i = 1; i <= total; i++) {
      r.send('tp', buf);
      if (i - acked > 16) await new Promise((res) => (wake = res));
      if (i % 1000 === 0) {
        while (acked < i) await new Promise((res) => (wake = res));
        rss.push({ n: i, renderer_mib: Math.round(process.memoryUsage().rss / MiB), main_mib: Math.round((await r.invoke('rss')) / MiB) });
      }
    }
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    results.oneway_1MiB_mb_per_s = Math.round((total * MiB) / 1e6 / secs);
    results.rss = rss;
    results.stream_stats = r.wire._sharedStats();
    r.close();
  }
  await C.stopServer(child);
  fs.rmSync(sock.dir, { recursive: true, force: true });
  results.allocShared_64MiB_x_small = Math.round((results.allocShared_64MiB_us / results.small_shm_us) * 100) / 100;
  process.stdout.write(JSON.stringify(results) + '\n');
}

if (process.argv[2] === 'server') server(process.argv[3]);
else driver(process.argv.includes('--quick')).catch((e) => {
  console.error(e);
  process.exit(1);
});
