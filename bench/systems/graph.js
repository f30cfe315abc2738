'use strict';
// Big object graphs: encoding and decoding one message whose argument is `{ list }` of N small objects
// `{ id, name, tags: [a, b] }`, through ipcwire's codec (the clone check, then msgpackr) against msgpackr
// alone in the same process: the same msgpackr configured as ipcwire configures it (structured clone:
// shared and cyclic references) and msgpackr's default `pack`/`unpack` (no reference tracking, the floor).
// Medians of `reps` rounds per size, each round in a fresh order so no arm always runs on a warmer heap.
// Usage: node graph.js [--sizes 100000,1000000] [--reps 5]; prints one JSON line per size on stdout.
const path = require('node:path');

const modulePath = process.env.IPCWIRE_BENCH_MODULE || path.join(__dirname, '..', '..');
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

function time(fn) {
  const t0 = process.hrtime.bigint();
  const out = fn();
  return [Number(process.hrtime.bigint() - t0) / 1e6, out];
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
  for (const k of Object.keys(arms)) t[k] = { enc: [], dec: [] };
  let bytes = 0;
  for (let r = 0; r < reps + 1; r++) {
    const order = Object.keys(arms);
    if (r % 2) order.reverse();
    for (const k of order) {
      if (global.gc) global.gc();
      const [enc, buf] = time(arms[k].enc);
      const bytesCopy = Buffer.from(buf); // the packer's buffer is reused by its next pack
      if (global.gc) global.gc();
      const [dec, back] = time(() => arms[k].dec(bytesCopy));
      const list = (Array.isArray(back) ? back[1] : back.args)[0].list;
      if (!list || list.length !== n || list[n - 1].name !== `item-${n - 1}`) throw new Error(`${k}: wrong round trip`);
      if (k === 'ipcwire') bytes = bytesCopy.length;
      if (r > 0) { // the first round warms up every arm
        t[k].enc.push(enc);
        t[k].dec.push(dec);
      }
    }
  }
  const m = (k, d) => Math.round(median(t[k][d]));
  const ratio = (a, b) => Math.round((a / b) * 100) / 100;
  const row = {
    objects: n,
    bytes,
    reps,
    encode_ms: { ipcwire: m('ipcwire', 'enc'), msgpackr_structured: m('structured', 'enc'), msgpackr_plain: m('plain', 'enc') },
    decode_ms: { ipcwire: m('ipcwire', 'dec'), msgpackr_structured: m('structured', 'dec'), msgpackr_plain: m('plain', 'dec') },
  };
  row.encode_x_structured = ratio(row.encode_ms.ipcwire, row.encode_ms.msgpackr_structured);
  row.encode_x_plain = ratio(row.encode_ms.ipcwire, row.encode_ms.msgpackr_plain);
  row.decode_x_structured = ratio(row.decode_ms.ipcwire, row.decode_ms.msgpackr_structured);
  row.decode_x_plain = ratio(row.decode_ms.ipcwire, row.decode_ms.msgpackr_plain);
  process.stdout.write(JSON.stringify(row) + '\n');
}
