'use strict';
// Streams over invoke (bench/run.js section "streams"). The driver is a renderer; main, the producer, runs in a
// child process. Three measurements, each printed as one JSON line:
//  - throughput: TOTAL bytes as a streamed invoke result of CHUNK-byte Buffers (`for await`), against one-way
//    `send` of the same Buffers (main honouring bufferedAmount/'drain'), alternating, `rounds` rounds each;
//  - small invoke latency (median, p99) alone and while such a stream runs on the same connection;
//  - main's RSS while the renderer reads one 1 MiB chunk a second (flow control bounds what main pulls and holds).
// Usage: node streams.js '{"totalMiB":1024,"chunkMiB":1,"rounds":2,"slowSeconds":10,"pings":2000}'
const path = require('node:path');
const C = require('../lib/common');

const modulePath = process.env.IPCWIRE_BENCH_MODULE || path.join(__dirname, '..', '..');
const HIGH_WATER = 1024 * 1024; // bytes queued before `send` waits for 'drain' (as bench/systems/ipcwire.js)

function server(sockPath) {
  const { IpcMain } = require(modulePath);
  const main = new IpcMain();
  let pulled = 0;
  let maxRss = 0;
  const sample = () => {
    maxRss = Math.max(maxRss, process.memoryUsage.rss());
  };
  const sampler = setInterval(sample, 20);
  main.handle('stream', (_e, count, size) => (async function* () {
    for (let i = 0; i < count; i++) {
      pulled++;
      yield Buffer.allocUnsafe(size); // a fresh Buffer per chunk, as a real producer has
    }
  })());
  main.handle('send', async (event, count, size) => {
    const peer = event.sender;
    for (let i = 0; i < count; i++) {
      if (peer.bufferedAmount > HIGH_WATER) await new Promise((resolve) => peer.once('drain', resolve));
      peer.send('chunk', Buffer.allocUnsafe(size));
    }
  });
  main.handle('ping', () => 1);
  main.handle('cpu', () => {
    const u = process.cpuUsage();
    return u.user + u.system;
  });
  main.handle('stats', (_e, reset) => {
    sample();
    const out = { rss: process.memoryUsage.rss(), maxRss, pulled };
    if (reset) {
      maxRss = 0;
      pulled = 0;
    }
    return out;
  });
  main.listen(sockPath);
  process.stdout.write('ready ' + sockPath + '\n');
  C.exitOnStdinEnd(() => {
    clearInterval(sampler);
    main.close();
  });
}

const MiB = 1024 * 1024;
const round1 = (x) => Math.round(x * 10) / 10;

async function driver(cfg) {
  const { IpcRenderer } = require(modulePath);
  const sock = C.tmpSocket('st');
  const { child } = await C.startServer(__filename, ['server', sock.path]);
  const r = new IpcRenderer();
  r.connect(sock.path);
  await r.invoke('ping');
  const size = cfg.chunkMiB * MiB;
  let count = Math.max(1, Math.round(cfg.totalMiB / cfg.chunkMiB));

  async function viaStream() {
    const t0 = C.now();
    let got = 0;
    for await (const chunk of (cfg.window ? r.invokeWith({ streamWindow: cfg.window }, 'stream', count, size) : r.invoke('stream', count, size))) got += chunk.length;
    if (got !== size * count) throw new Error(`stream delivered ${got} of ${size * count} bytes`);
    return Number(C.now() - t0) / 1e9;
  }
  async function viaSend() {
    let got = 0;
    const t0 = C.now();
    const done = new Promise((resolve) => {
      const onChunk = (_e, chunk) => {
        got += chunk.length;
        if (got >= size * count) {
          r.off('chunk', onChunk);
          resolve();
        }
      };
      r.on('chunk', onChunk);
    });
    await r.invoke('send', count, size);
    await done;
    return Number(C.now() - t0) / 1e9;
  }
  // Untimed warm-up of both paths (JIT, first large allocations), then alternating rounds.
  const fullCount = count;
  count = Math.min(count, 32);
  await viaStream();
  await viaSend();
  count = fullCount;
  const secs = { stream: [], send: [] };
  // CPU time of main (the producer) and of this renderer over each mode's rounds: what a chunk costs, whatever
  // else the machine is doing.
  const cpu = { stream: [0, 0], send: [0, 0] };
  const timed = async (mode, fn) => {
    const m0 = await r.invoke('cpu');
    const c0 = process.cpuUsage();
    secs[mode].push(await fn());
    const c1 = process.cpuUsage(c0);
    cpu[mode][0] += (await r.invoke('cpu')) - m0;
    cpu[mode][1] += c1.user + c1.system;
  };
  for (let i = 0; i < cfg.rounds; i++) {
    await timed('stream', viaStream);
    await timed('send', viaSend);
  }
  const bytes = size * count;
  const mbps = (list) => round1(bytes / (list.reduce((a, b) => a + b, 0) / list.length) / 1e6);
  // CPU ms per GiB moved (µs totals over `rounds` rounds of `bytes`).
  const perGiB = (us) => Math.round((us / 1000) * (2 ** 30 / bytes) / cfg.rounds);
  const tp = { stream_mb_s: mbps(secs.stream), send_mb_s: mbps(secs.send),
    stream_cpu_ms_per_gib: { main: perGiB(cpu.stream[0]), renderer: perGiB(cpu.stream[1]) },
    send_cpu_ms_per_gib: { main: perGiB(cpu.send[0]), renderer: perGiB(cpu.send[1]) } };
  C.emit({ type: 'streams', kind: 'throughput', total_bytes: bytes, chunk_bytes: size, rounds: cfg.rounds, ...tp,
    ratio: Math.round((tp.stream_mb_s / tp.send_mb_s) * 100) / 100 });

  // Small invokes alone, then while a stream of the same size runs.
  async function pings(until) {
    const samples = [];
    while (samples.length < cfg.pings && !until()) {
      const t0 = C.now();
      await r.invoke('ping');
      samples.push(Number(C.now() - t0));
    }
    return C.summarize(samples);
  }
  const alone = await pings(() => false);
  let streaming = true;
  const big = viaStream().finally(() => (streaming = false));
  const during = await pings(() => !streaming);
  await big;
  C.emit({ type: 'streams', kind: 'latency', alone_median_us: alone.median_us, alone_p99_us: alone.p99_us, alone_n: alone.n,
    during_median_us: during.median_us, during_p99_us: during.p99_us, during_n: during.n });

  // A reader taking one 1 MiB chunk a second: how much main holds.
  const before = await r.invoke('stats', true);
  let read = 0;
  const t0 = Date.now();
  for await (const chunk of r.invoke('stream', 1e9, MiB)) {
    if (chunk.length !== MiB) throw new Error('bad chunk');
    read++;
    if (Date.now() - t0 >= cfg.slowSeconds * 1000) break;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  const after = await r.invoke('stats', true);
  C.emit({ type: 'streams', kind: 'slow-reader', seconds: cfg.slowSeconds, chunks_read: read, chunks_pulled: after.pulled,
    rss_before_mib: round1(before.rss / MiB), rss_max_mib: round1(after.maxRss / MiB), rss_growth_mib: round1((after.maxRss - before.rss) / MiB) });
  r.close();
  await C.stopServer(child);
  require('node:fs').rmSync(sock.dir, { recursive: true, force: true });
}

if (process.argv[2] === 'server') server(process.argv[3]);
else {
  driver(C.driverConfig()).catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
