'use strict';
// The addon alone, without the TypeScript layer or msgpack: round trips of connection.call() (the
// blocking sendSync path) against a server process that echoes SYNC frames from its event loop.
//   node bench/native/call-rtt.js --size BYTES --iters N
// prints {"mode":"call","size":..,"iters":..,"median_us":..,"p99_us":..,"mean_us":..}
// Addon: IPCWIRE_NATIVE_PATH, else build-cmake/Release, else build/Release.
const path = require('node:path');
const fs = require('node:fs');
const os = require('node:os');
const { fork } = require('node:child_process');
const C = require('../lib/common');

const root = path.join(__dirname, '..', '..');
const binding = C.loadAddon(root);
const arg = (name, dflt) => { const i = process.argv.indexOf('--' + name); return i > 0 ? Number(process.argv[i + 1]) : dflt; };
const noop = () => {};

if (process.argv[2] === 'client') {
  const size = arg('size', 64), iters = arg('iters', 10000), warmup = Math.min(1000, iters);
  const c = binding.connect(process.argv[3], 5000);
  c.start(noop, noop, noop);
  const payload = Buffer.alloc(size, 1);
  const samples = new Float64Array(iters);
  for (let i = 0; i < warmup + iters; i++) {
    const t0 = process.hrtime.bigint();
    c.call(i + 1, payload, 0, noop);
    if (i >= warmup) samples[i - warmup] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  c.close();
  const sorted = Array.from(samples).sort((a, b) => a - b);
  const mean = sorted.reduce((a, b) => a + b, 0) / iters;
  const pct = (p) => sorted[Math.min(iters - 1, Math.floor(p * iters))];
  console.log(JSON.stringify({ mode: 'call', size, iters, median_us: +pct(0.5).toFixed(2), p99_us: +pct(0.99).toFixed(2), mean_us: +mean.toFixed(2) }));
  return;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iwn-bench-'));
const addr = path.join(dir, 's.sock');
const server = binding.listen(addr, 64, 0o600, (conn) => {
  conn.start(C.echoSyncFrames(conn), noop, noop);
}, (e) => { throw e; });
const child = fork(__filename, ['client', addr, ...process.argv.slice(2)]);
child.on('exit', (code) => {
  server.close();
  fs.rmSync(dir, { recursive: true, force: true });
  process.exitCode = code;
});
