'use strict';
// The zero-copy round trip (bench/run.js section "zerocopy"): a renderer invokes main with a 64 MiB Buffer from
// `allocShared` (only its place crosses the socket; main's argument is a view of the renderer's block) and main
// answers with its length, against a small invoke round trip on the same connection, alternating `rounds`
// rounds of each so that both see the same load. The renderer's pool is 128 MiB: a 64 MiB block does not fit
// in the default 64 MiB pool (the pool's header takes a page). Two more series, information: the same 64 MiB
// Buffer with main calling releaseShared() on its view before answering, and half that size likewise (V8 starts
// a full collection for any new ArrayBuffer that lifts its external-memory count 64 MiB above its lowest since
// the last one, so a view of the whole 64 MiB costs one whatever happens to it afterwards).
// Prints one JSON line: {type: 'zerocopy', kind: 'rtt', small: {...}, big: {...}, ratio, stats}.
// Usage: node zerocopy.js '{"mib":64,"rounds":3,"small":2000,"big":30}'
const fs = require('node:fs');
const path = require('node:path');
const C = require('../lib/common');

const modulePath = process.env.IPCWIRE_BENCH_MODULE || path.join(__dirname, '..', '..');
const MiB = 1024 * 1024;

function server(sockPath) {
  const { IpcMain } = require(modulePath);
  const main = new IpcMain();
  main.handle('small', (_e, ...args) => args);
  const { releaseShared } = require(modulePath);
  main.handle('len', (_e, buf) => buf.length);
  main.handle('len-release', (_e, buf) => {
    const length = buf.length;
    if (!releaseShared(buf)) throw new Error('releaseShared: not a view of shared memory');
    return length;
  });
  main.listen(sockPath);
  process.stdout.write('ready ' + sockPath + '\n');
  C.exitOnStdinEnd(() => main.close());
}

async function driver(cfg) {
  const { IpcRenderer } = require(modulePath);
  const sock = C.tmpSocket('zc');
  const { child } = await C.startServer(__filename, ['server', sock.path]);
  const r = new IpcRenderer({ shm: { poolSize: (cfg.mib + 64) * MiB } });
  r.connect(sock.path);
  await r.invoke('small'); // main's handshake answer has been read: shared memory is agreed
  const shared = r.allocShared(cfg.mib * MiB);
  for (let i = 0; i < shared.length; i += 4096) shared[i] = i & 0xff; // its pages exist before the first send
  const half = r.allocShared((cfg.mib / 2) * MiB);
  for (let i = 0; i < half.length; i += 4096) half[i] = i & 0xff;
  const small = C.makeMessage('small').args;
  const smallRt = () => r.invoke('small', ...small);
  const bigRt = async () => {
    if ((await r.invoke('len', shared)) !== shared.length) throw new Error('main saw a different length');
  };
  const releasedRt = (buf) => async () => {
    if ((await r.invoke('len-release', buf)) !== buf.length) throw new Error('main saw a different length');
  };
  const time = async (rt, n, warmup) => {
    for (let i = 0; i < warmup; i++) await rt();
    const samples = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const t0 = C.now();
      await rt();
      samples[i] = C.now() - t0;
    }
    return samples;
  };
  const smallAll = [];
  const bigAll = [];
  const bigReleasedAll = [];
  const halfReleasedAll = [];
  for (let round = 0; round < cfg.rounds; round++) {
    smallAll.push(...(await time(smallRt, cfg.small, Math.min(500, cfg.small))));
    bigAll.push(...(await time(bigRt, cfg.big, 3)));
    bigReleasedAll.push(...(await time(releasedRt(shared), cfg.big, 3)));
    halfReleasedAll.push(...(await time(releasedRt(half), cfg.big, 3)));
  }
  const stats = r.wire._sharedStats();
  const s = C.summarize(smallAll);
  const b = C.summarize(bigAll);
  const ratioTo = (x) => Math.round((x.median_us / s.median_us) * 100) / 100;
  const bigReleased = C.summarize(bigReleasedAll);
  const halfReleased = C.summarize(halfReleasedAll);
  C.emit({ type: 'zerocopy', kind: 'rtt', mib: cfg.mib, small: s, big: b, ratio: ratioTo(b),
    bigReleased, bigReleasedRatio: ratioTo(bigReleased), halfReleased, halfReleasedRatio: ratioTo(halfReleased),
    sent: stats.sent, fellBack: stats.fellBack, shared: Buffer.isBuffer(shared) && stats.agreed });
  r.close();
  await C.stopServer(child);
  fs.rmSync(sock.dir, { recursive: true, force: true });
}

if (process.argv[2] === 'server') server(process.argv[3]);
else driver(JSON.parse(process.argv[2])).catch((e) => {
  console.error(e);
  process.exit(1);
});
