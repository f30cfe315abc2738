#!/usr/bin/env node
'use strict';
// `node --expose-gc scripts/soak.js` — the CI soak: one main (this process) and SOAK_RENDERERS renderer
// processes (default 12) doing a seeded random mix of send, invoke and sendSync for SOAK_SECONDS (default 45),
// while main sends back to each renderer. Every message carries the sender's sequence number (one counter per
// direction and connection, shared by the three kinds of call, which travel in one ordered stream) and a
// checksum of its payload (strings and Buffers of 0 B to 256 KiB, so large ones take the out-of-band path).
// Both sides check every message: 0 lost, 0 duplicated, 0 reordered, 0 corrupted, every call answered with
// what was asked. Main's RSS and JS heap are sampled after a forced GC once warmed up (a quarter into the run)
// and again after every renderer has gone: the JS heap may grow by at most 8 MiB, and RSS must end at most
// SOAK_RSS_MAX_MIB (default 192). RSS is bounded as a whole, not by its growth: with frames of 64-256 KiB it
// rises for the first minute or so and then levels off (measured over 120 s: 55 MiB after 9 s, 105 MiB after
// 45 s, 120-131 MiB from 80 s on, JS heap flat at ~6 MiB; with no frame of 64 KiB or more it stays at
// 54-68 MiB), which is the receive-block pool filling up (it keeps at most 32 MiB for reuse) and glibc
// keeping freed blocks of those sizes. SOAK_TRACE=1 prints RSS after GC every 5 s. Prints the figures and a closing
// `N passed, N failed` line (one per check). Exit code 0 only if every check passed.
const { spawn } = require('node:child_process');
const path = require('node:path');
const { xorshift32 } = require('./lib/xorshift');

const root = path.join(__dirname, '..');
const ipcwire = require(root);

const RENDERERS = Number(process.env.SOAK_RENDERERS || 12);
const SECONDS = Number(process.env.SOAK_SECONDS || 45);
const RSS_MAX_MIB = Number(process.env.SOAK_RSS_MAX_MIB || 192);
const SEED = Number(process.env.SOAK_SEED || Date.now() % 1e9);
const LARGE = process.env.SOAK_LARGE !== '0'; // 0: no payload of 64 KiB or more (no out-of-band frames)
const MAIN_EVERY = 8; // main sends to the renderer after every 8th message it receives from it

/** FNV-1a over the payload's bytes (a string's UTF-16 code units), enough to see a corrupted byte. */
function checksum(v) {
  let h = 0x811c9dc5;
  if (typeof v === 'string') {
    for (let i = 0; i < v.length; i++) h = Math.imul(h ^ v.charCodeAt(i), 16777619);
  } else {
    for (let i = 0; i < v.length; i++) h = Math.imul(h ^ v[i], 16777619);
  }
  return h >>> 0;
}

/** Uniform in [0, 1), seeded: the same seed gives the same mix of calls and payloads. */
function rng(seed) {
  const next = xorshift32(seed);
  return () => next() / 4294967296;
}

/** Seeded random bytes that payloads are cut from (filling each payload byte by byte would cost more than IPC). */
const POOL = (() => {
  const rand = rng(0x9e3779b9);
  const b = Buffer.allocUnsafe(512 * 1024);
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE((rand() * 4294967296) >>> 0, i);
  return b;
})();

function payload(rand) {
  const r = rand();
  const size = r < 0.6 ? Math.floor(rand() * 64) : r < 0.95 || !LARGE ? Math.floor(rand() * 4096) : 65536 + Math.floor(rand() * 196608);
  const at = Math.floor(rand() * (POOL.length - size));
  const bytes = POOL.subarray(at, at + size);
  // A copy, not a view: the receiver's Buffer must not share memory with anything else the sender holds.
  return rand() < 0.5 ? Buffer.from(bytes) : bytes.toString('latin1');
}

/** Sequence bookkeeping of one direction of one connection. */
class Stream {
  constructor() {
    this.next = 0;
    this.count = 0;
    this.lost = 0;
    this.duplicated = 0;
    this.reordered = 0;
    this.corrupted = 0;
  }
  take(seq, data, sum) {
    this.count++;
    if (checksum(data) !== sum) this.corrupted++;
    if (seq === this.next) this.next++;
    else if (seq < this.next) this.duplicated++;
    else {
      this.reordered++;
      this.lost += seq - this.next;
      this.next = seq + 1;
    }
  }
}

// ---- renderer ---------------------------------------------------------------------------------------------

async function renderer(id, seed, deadline) {
  const r = ipcwire.ipcRenderer;
  const rand = rng(seed);
  const fromMain = new Stream();
  r.on('m', (_e, seq, data, sum) => fromMain.take(seq, data, sum));
  let seq = 0;
  let badReplies = 0;
  let errors = 0;
  let firstError = null;
  const counts = { send: 0, invoke: 0, sendSync: 0 };
  const fail = (e) => {
    errors++;
    if (!firstError) firstError = String((e && e.stack) || e);
  };
  while (Date.now() < deadline) {
    const op = rand();
    const data = payload(rand);
    const sum = checksum(data);
    const s = seq++;
    try {
      if (op < 0.6) {
        r.send('s', id, s, data, sum);
        counts.send++;
        if (r.bufferedAmount > 1 << 20) await new Promise((res) => r.link.once('drain', res));
      } else if (op < 0.85) {
        counts.invoke++;
        const p = r.invoke('i', id, s, data, sum).then((back) => {
          if (!back || back.seq !== s || back.sum !== sum) badReplies++;
        }, fail);
        if (rand() < 0.5) await p; // else up to a few invokes in flight, still ordered with the rest
      } else {
        counts.sendSync++;
        const back = r.sendSync('y', id, s, data, sum);
        if (!back || back.seq !== s || back.sum !== sum) badReplies++;
      }
    } catch (e) {
      fail(e);
    }
    // Let main's messages in now and then (a loop of sends alone never yields to the event loop).
    if ((s & 15) === 15) await new Promise((res) => setImmediate(res));
  }
  const sentByMain = await r.invoke('final', id, seq).catch((e) => (fail(e), -1));
  r.close();
  process.stdout.write(JSON.stringify({ id, seq, counts, badReplies, errors, firstError, sentByMain, fromMain }) + '\n');
}

// ---- main -------------------------------------------------------------------------------------------------

function rssMiB() {
  return Math.round((process.memoryUsage().rss / 1048576) * 10) / 10;
}

let heapAt = [];
function gcRss() {
  if (global.gc) {
    global.gc();
    global.gc();
  }
  const m = process.memoryUsage();
  heapAt.push(Math.round((m.heapUsed / 1048576) * 10) / 10, Math.round((m.external / 1048576) * 10) / 10);
  return rssMiB();
}

async function main() {
  if (!global.gc) {
    console.error('soak: run with node --expose-gc');
    process.exit(2);
  }
  const ipcMain = new ipcwire.IpcMain();
  const address = ipcMain.listen();
  const streams = new Map(); // renderer id -> Stream
  const sentTo = new Map(); // renderer id -> messages main sent to it
  const finals = new Map(); // renderer id -> seq it reported
  const mainRand = rng(SEED ^ 0x5bd1e995);
  let handlerErrors = 0;
  const stream = (id) => {
    let s = streams.get(id);
    if (!s) streams.set(id, (s = new Stream()));
    return s;
  };
  const received = (event, id, seq, data, sum) => {
    const s = stream(id);
    s.take(seq, data, sum);
    if (s.count % MAIN_EVERY === 0) {
      const n = sentTo.get(id) || 0;
      const back = payload(mainRand);
      event.sender.send('m', n, back, checksum(back));
      sentTo.set(id, n + 1);
    }
  };
  ipcMain.on('s', received);
  ipcMain.handle('i', (event, id, seq, data, sum) => {
    received(event, id, seq, data, sum);
    return { seq, sum };
  });
  ipcMain.on('y', (event, id, seq, data, sum) => {
    received(event, id, seq, data, sum);
    event.returnValue = { seq, sum };
  });
  ipcMain.handle('final', (_event, id, seq) => {
    finals.set(id, seq);
    return sentTo.get(id) || 0;
  });
  ipcMain.peers.on('error', () => handlerErrors++);

  const started = Date.now();
  const deadline = started + 3000 + SECONDS * 1000; // 3 s for the renderers to start
  console.log(`soak: ${RENDERERS} renderers × ${SECONDS} s of mixed send/invoke/sendSync, seed ${SEED}, main pid ${process.pid}`);
  const children = [];
  const results = [];
  for (let id = 0; id < RENDERERS; id++) {
    const child = spawn(process.execPath, [__filename, 'renderer', String(id), String((SEED + id * 7919) >>> 0), String(deadline)], {
      env: { ...process.env, IPCWIRE_ADDRESS: address },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s) => (out += s));
    children.push(
      new Promise((resolve) => {
        child.on('close', (code, signal) => {
          try {
            results.push({ ...JSON.parse(out.trim().split('\n').pop()), code, signal });
          } catch {
            results.push({ id, code, signal, errors: 1, firstError: `no result (exit ${code ?? signal})` });
          }
          resolve();
        });
      }),
    );
  }
  // Warmed-up RSS: after the first quarter of the run (connections open, buffers and pools at their size).
  let rssWarm = null;
  let rssPeak = 0;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, rssMiB())), 250);
  const warm = setTimeout(() => (rssWarm = gcRss()), 3000 + (SECONDS * 1000) / 4);
  // SOAK_TRACE=1: main's RSS after GC every 5 s, to tell a leak (linear) from memory kept for reuse (a plateau).
  const trace = process.env.SOAK_TRACE ? setInterval(() => { global.gc(); console.log(`t=${Math.round((Date.now() - started) / 1000)} s: RSS after GC ${rssMiB()} MiB`); }, 5000) : null;
  await Promise.all(children);
  clearInterval(sampler);
  clearTimeout(warm);
  if (trace) clearInterval(trace);
  await new Promise((res) => setTimeout(res, 200)); // let the last disconnects settle
  const rssEnd = gcRss();
  ipcMain.close();

  // ---- checks ----
  const checks = [];
  const check = (name, ok, detail) => checks.push({ name, ok, detail });
  results.sort((a, b) => a.id - b.id);
  let total = 0;
  const t = { send: 0, invoke: 0, sendSync: 0 };
  const down = { count: 0, lost: 0, duplicated: 0, reordered: 0, corrupted: 0 };
  const up = { count: 0, lost: 0, duplicated: 0, reordered: 0, corrupted: 0 };
  let errors = 0;
  let badReplies = 0;
  let missing = 0;
  for (const r of results) {
    errors += r.errors || 0;
    if (r.firstError) console.log(`renderer ${r.id}: ${r.errors} error(s), first: ${r.firstError}`);
    if (r.code !== 0) console.log(`renderer ${r.id}: exit ${r.code ?? r.signal}`);
    if (typeof r.seq !== 'number') {
      missing++;
      continue;
    }
    badReplies += r.badReplies;
    total += r.seq;
    for (const k of Object.keys(t)) t[k] += r.counts[k];
    const s = stream(r.id);
    // What the renderer sent but main never saw is lost too.
    const tail = Math.max(0, r.seq - s.next);
    up.count += s.count;
    up.lost += s.lost + tail;
    up.duplicated += s.duplicated;
    up.reordered += s.reordered;
    up.corrupted += s.corrupted;
    if (finals.get(r.id) !== r.seq) missing++;
    const m = r.fromMain;
    down.count += m.count;
    down.lost += m.lost + Math.max(0, r.sentByMain - m.next);
    down.duplicated += m.duplicated;
    down.reordered += m.reordered;
    down.corrupted += m.corrupted;
  }
  const secs = (Date.now() - started) / 1000;
  console.log(`renderer → main: ${total} messages (${t.send} send, ${t.invoke} invoke, ${t.sendSync} sendSync), ` +
    `${Math.round(total / SECONDS)}/s; received ${up.count}; lost ${up.lost}, duplicated ${up.duplicated}, reordered ${up.reordered}, corrupted ${up.corrupted}`);
  console.log(`main → renderers: ${down.count} messages received; lost ${down.lost}, duplicated ${down.duplicated}, reordered ${down.reordered}, corrupted ${down.corrupted}`);
  console.log(`main RSS after GC: ${rssWarm} MiB warmed up, ${rssEnd} MiB at the end (growth ${Math.round((rssEnd - rssWarm) * 10) / 10} MiB, bound ${RSS_MAX_MIB} MiB at the end); peak ${rssPeak} MiB; ` +
    `JS heap ${heapAt[0]} → ${heapAt[2]} MiB, external ${heapAt[1]} → ${heapAt[3]} MiB; ${Math.round(secs)} s in all`);
  check('every renderer finished and reported', missing === 0 && results.length === RENDERERS && results.every((r) => r.code === 0), `${missing} missing`);
  check('no call failed', errors === 0 && handlerErrors === 0, `${errors} renderer errors, ${handlerErrors} connection errors`);
  check('every reply matched its call', badReplies === 0, `${badReplies} bad`);
  check('renderer → main: 0 lost, 0 duplicated, 0 reordered, 0 corrupted', up.count === total && up.lost + up.duplicated + up.reordered + up.corrupted === 0, JSON.stringify(up));
  check('main → renderers: 0 lost, 0 duplicated, 0 reordered, 0 corrupted', down.count > 0 && down.lost + down.duplicated + down.reordered + down.corrupted === 0, JSON.stringify(down));
  check('main JS heap growth after GC ≤ 8 MiB', heapAt.length === 4 && heapAt[2] - heapAt[0] <= 8, `${heapAt[0]} → ${heapAt[2]} MiB`);
  check(`main RSS after GC at the end ≤ ${RSS_MAX_MIB} MiB`, rssWarm !== null && rssEnd <= RSS_MAX_MIB, `${rssWarm} → ${rssEnd} MiB`);
  for (const c of checks) console.log(`${c.ok ? 'ok  ' : 'FAIL'} ${c.name}${c.ok ? '' : ` (${c.detail})`}`);
  const failed = checks.filter((c) => !c.ok).length;
  console.log(`soak: ${checks.length - failed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}

if (process.argv[2] === 'renderer') {
  renderer(Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5])).catch((e) => {
    process.stderr.write(String(e && e.stack) + '\n');
    process.exitCode = 1;
  });
} else {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
