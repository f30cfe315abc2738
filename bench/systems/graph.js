'use strict';
// Big object graphs: encoding and decoding one message whose argument is `{ list }` of N small objects
// `{ id, name, tags: [a, b] }`, through ipcwire's codec (the clone check, then msgpackr) against msgpackr
// alone in the same process: the same msgpackr configured as ipcwire configures it (structured clone:
// shared and cyclic references) and msgpackr's default `pack`/`unpack` (no reference tracking, the floor).
// Medians of `reps` rounds per size, each round in a fresh order so no arm always runs on a warmer heap. Each call
// is timed twice: wall time, and the process's CPU time (every thread, the GC's helpers included), which holds
// within ~10 % on a loaded machine where wall time swings 2×: its ratios are the ones to compare across runs.
// Usage: node graph.js [--sizes 100000,1000000] [--reps 5]; prints one JSON line per size on stdout.
const path = require('node:path');

const modulePath = process.env.IPCWIRE_BENCH_MODULE || path.join(__dirname, '..', '..');
// The whole package first, as an application loads it: its handle types (sockets, ports) are then registered, and
// the codec looks for them in every object it walks.
require(modulePath);
const codec = require(path.join(modulePath, 'dist', 'cjs', 'codec.js'));
const msgpackr = require(require.resolve('msgpackr', { paths: [modulePath] }));

function arg(name, def) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : def;
}
const sizes = arg('--sizes', '100000,1000000').split(',').map(Number);
const reps = Number(arg('--reps', '5'));

function make(n) {
  const list = new Array(n);
  for (let i = 0; i < n; i++) list[i] = { id: i, name: `item-${i}`, tags: ['a', `t${i % 7}`] };
  return { list };
}

const structured = new msgpackr.Packr({ structuredClone: true, moreTypes: true, int64AsType: 'bigint' });
const plain = new msgpackr.Packr();

/** [wall ms, CPU ms, fn's result] */
function time(fn) {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const out = fn();
  const wall = Number(process.hrtime.bigint() - t0) / 1e6;
  const cpu = process.cpuUsage(c0);
  return [wall, (cpu.user + cpu.system) / 1000, out];
}
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

for (const n of sizes) {
  const value = make(n);
  const message = ['graph', [value]];
  const arms = {
    ipcwire: { enc: () => codec.encodeMessage('graph', [value]).payload, dec: (b) => codec.decodeMessage(b) },
    structured: { enc: () => structured.pack(message), dec: (b) => structured.unpack(b) },
    plain: { enc: () => plain.pack(message), dec: (b) => plain.unpack(b) },
  };
  const t = {};
  for (const k of Object.keys(arms)) t[k] = { enc: [], dec: [], encCpu: [], decCpu: [] };
  let bytes = 0;
  for (let r = 0; r < reps + 1; r++) {
    const order = Object.keys(arms);
    if (r % 2) order.reverse();
    for (const k of order) {
      if (global.gc) global.gc();
      const [enc, encCpu, buf] = time(arms[k].enc);
      const bytesCopy = Buffer.from(buf); // the packer's buffer is reused by its next pack
      if (global.gc) global.gc();
      const [dec, decCpu, back] = time(() => arms[k].dec(bytesCopy));
      const list = (Array.isArray(back) ? back[1] : back.args)[0].list;
      if (!list || list.length !== n || list[n - 1].name !== `item-${n - 1}`) throw new Error(`${k}: wrong round trip`);
      if (k === 'ipcwire') bytes = bytesCopy.length;
      if (r > 0) { // the first round warms up every arm
        t[k].enc.push(enc);
        t[k].dec.push(dec);
        t[k].encCpu.push(encCpu);
        t[k].decCpu.push(decCpu);
      }
    }
  }
  const m = (k, d) => Math.round(median(t[k][d]));
  const ratio = (a, b) => Math.round((a / b) * 100) / 100;
  const arm3 = (d) => ({ ipcwire: m('ipcwire', d), msgpackr_structured: m('structured', d), msgpackr_plain: m('plain', d) });
  const row = { objects: n, bytes, reps, encode_ms: arm3('enc'), decode_ms: arm3('dec'), encode_cpu_ms: arm3('encCpu'), decode_cpu_ms: arm3('decCpu') };
  for (const [key, ms] of [['encode', 'encode_ms'], ['decode', 'decode_ms'], ['encode_cpu', 'encode_cpu_ms'], ['decode_cpu', 'decode_cpu_ms']]) {
    row[`${key}_x_structured`] = ratio(row[ms].ipcwire, row[ms].msgpackr_structured);
    row[`${key}_x_plain`] = ratio(row[ms].ipcwire, row[ms].msgpackr_plain);
  }
  process.stdout.write(JSON.stringify(row) + '\n');
}
