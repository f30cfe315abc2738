'use strict';
// Shared by every bench driver: payloads, the latency and throughput loops, and the line protocol with
// bench/run.js (one JSON object per line on stdout; anything else a driver prints goes to stderr).
const { spawn } = require('node:child_process');
const path = require('node:path');
const os = require('node:os');
const fs = require('node:fs');
const readline = require('node:readline');

const KiB = 1024;
const MiB = 1024 * 1024;

/** Payload sizes in bytes of the Buffer payloads; `small` is the object message of the issue. */
const PAYLOADS = { small: 0, '1KiB': KiB, '1MiB': MiB, '16MiB': 16 * MiB };

/**
 * The message every system carries: `{channel: 'ping', args}`, args `['ping', 123]` for `small`, else one Buffer
 * of the named size. ipcwire sends the same thing as `sendSync('ping', ...args)`.
 */
function makeMessage(name, channel = 'ping') {
  if (name === 'small') return { channel, args: ['ping', 123] };
  const size = PAYLOADS[name];
  if (size === undefined) throw new Error(`unknown payload ${name}`);
  const buf = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 4096) buf[i] = i & 0xff;
  return { channel, args: [buf] };
}

/** Bytes one message carries as payload (the Buffer size, or the msgpack size of the small object). */
function payloadBytes(name) {
  if (name !== 'small') return PAYLOADS[name];
  const { pack } = require('msgpackr');
  return pack(makeMessage('small')).length;
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const now = () => Number(process.hrtime.bigint()); // ns, CLOCK_MONOTONIC (comparable across processes)

function summarize(samplesNs) {
  const a = Float64Array.from(samplesNs).sort();
  const n = a.length;
  if (n === 0) return { n: 0 };
  const q = (p) => {
    const i = (n - 1) * p;
    const lo = Math.floor(i);
    const hi = Math.min(n - 1, lo + 1);
    return a[lo] + (a[hi] - a[lo]) * (i - lo);
  };
  let sum = 0;
  for (const x of a) sum += x;
  const us = (x) => Math.round(x / 10) / 100; // ns → µs, 2 decimals
  return { n, median_us: us(q(0.5)), p99_us: us(q(0.99)), mean_us: us(sum / n), min_us: us(a[0]), max_us: us(a[n - 1]) };
}

/**
 * Round-trip latency of `rt(message)` (sync or async). Warm-up first, then up to `iters` timed round trips,
 * stopping early once `capMs` has passed and at least `minIters` were timed.
 */
async function latency(rt, message, { warmup, iters, capMs, minIters = 3, warmupMs = capMs * 0.25 }, isAsync) {
  // The first round trip is timed: when it alone exceeds the cap (JSON-encoded 16 MiB takes seconds), it is
  // the only sample and the result says so (`cold: true`), rather than spending tens of seconds per cell.
  let t0 = now();
  if (isAsync) await rt(message);
  else rt(message);
  const first = now() - t0;
  if (first > capMs * 1e6) return { ...summarize([first]), cold: true };
  // Warm-up long enough for both sides' optimising compiler to finish: pinned to one core, TurboFan's
  // background jobs otherwise run inside the timed loop (a first cell's p99 was 10x the next one's).
  const deadlineWarm = now() + warmupMs * 1e6;
  for (let i = 1; i < warmup && now() < deadlineWarm; i++) {
    if (isAsync) await rt(message);
    else rt(message);
  }
  const samples = new Float64Array(iters);
  let n = 0;
  const deadline = now() + capMs * 1e6;
  if (isAsync) {
    for (; n < iters && (n < minIters || now() < deadline); n++) {
      t0 = now();
      await rt(message);
      samples[n] = now() - t0;
    }
  } else {
    for (; n < iters && (n < minIters || now() < deadline); n++) {
      t0 = now();
      rt(message);
      samples[n] = now() - t0;
    }
  }
  return summarize(samples.subarray(0, n));
}

/**
 * One-way throughput: `burst(count)` sends `count` messages and resolves when the receiver has confirmed all
 * of them. Bursts grow from one message until one takes an eighth of `targetMs` (so a system whose cost grows
 * faster than linearly with its backlog, as node-ipc's parser does, is not buried under a big probe); the
 * timed burst is then sized to about `targetMs`, and sized again (up to 3 times) when it ran under half of
 * that, which happens when a hiccup during the ramp made the system look slower than it is. A ramp burst
 * that alone took `targetMs` is the measurement.
 */
async function throughput(burst, bytes, { targetMs, minMsgs, maxMsgs }) {
  await burst(1); // untimed: first-use costs (JIT, buffer growth) stay out of the ramp
  let count = 1;
  let secs;
  for (;;) {
    const t0 = now();
    await burst(count);
    secs = (now() - t0) / 1e9;
    if (secs * 1000 >= targetMs) return rate(count, secs, bytes);
    if (secs * 1000 >= targetMs / 8 || count >= maxMsgs) break;
    count = Math.min(maxMsgs, count * (secs < targetMs / 400 / 1000 ? 16 : 2));
  }
  for (let attempt = 0; attempt < 3; attempt++) {
    count = Math.max(minMsgs, Math.min(maxMsgs, Math.round((count / secs) * (targetMs / 1000))));
    const t0 = now();
    await burst(count);
    secs = (now() - t0) / 1e9;
    if (secs * 1000 >= targetMs / 2 || count >= maxMsgs) break;
  }
  return rate(count, secs, bytes);
}

function rate(count, secs, bytes) {
  return {
    msgs: count,
    secs: Math.round(secs * 1e4) / 1e4,
    msgs_per_s: Math.round(count / secs),
    mb_per_s: Math.round(((count * bytes) / secs / 1e6) * 10) / 10,
  };
}

/** Start `node script role ...` as a server; resolves with {child, line} once it prints `ready <info>`. */
function startServer(script, args, { env, stdio } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], {
      stdio: stdio || ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, ...env },
    });
    const rl = readline.createInterface({ input: child.stdout });
    const onExit = (code, sig) => reject(new Error(`${path.basename(script)} server exited (${code ?? sig}) before ready`));
    child.once('exit', onExit);
    child.once('error', reject);
    rl.once('line', (line) => {
      child.off('exit', onExit);
      if (!line.startsWith('ready')) return reject(new Error(`unexpected server line: ${line}`));
      resolve({ child, info: line.slice(6) });
    });
  });
}

/** Stop a server started by startServer: close its stdin (it exits on EOF), SIGKILL if it lingers. */
function stopServer(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.stdin.end();
  });
}

/** Servers exit when the driver closes their stdin, so none outlives its driver. */
function exitOnStdinEnd(cleanup) {
  process.stdin.on('end', () => {
    try {
      if (cleanup) cleanup();
    } finally {
      process.exit(0);
    }
  });
  process.stdin.resume();
}

let seq = 0;
/** A short private socket path (sun_path is 108 bytes). */
function tmpSocket(tag) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipcb-'));
  return { dir, path: path.join(dir, `${tag}${seq++}.sock`) };
}

/**
 * Run `cells` (from the driver config) through `fn(cell)`, emitting each result or error as a line. One failing
 * cell does not stop the others.
 */
async function runCells(cfg, fn, prime) {
  // One untimed round trip first, so that no cell pays for the peer's start-up (a forked child booting, a
  // worker thread loading) or the first connection.
  if (prime) await prime(makeMessage('small'));
  for (const cell of cfg.cells) {
    try {
      const result = await fn(cell);
      emit({ type: 'cell', ...cell, result });
    } catch (err) {
      emit({ type: 'cell', ...cell, error: String((err && err.stack) || err).split('\n').slice(0, 3).join(' | ') });
    }
  }
}

function driverConfig() {
  const raw = process.argv[process.argv.length - 1];
  return JSON.parse(raw);
}

/**
 * The frame handler of a main made of the addon alone (no TypeScript layer, no msgpack): each SYNC frame (kind 4)
 * in the chunks `conn.start()` delivers is answered with its own payload as a SYNC_REPLY (kind 5).
 */
function echoSyncFrames(conn) {
  return (chunks) => {
    for (const b of chunks) {
      for (let o = 0; o < b.length;) {
        const len = b.readUInt32LE(o);
        if (b[o + 4] === 4) conn.write(5, b.readUInt32LE(o + 5), b.subarray(o + 9, o + 4 + len));
        o += 4 + len;
      }
    }
  };
}

/**
 * The addon itself, for the diagnostic rows that bypass the TypeScript layer: IPCWIRE_NATIVE_PATH, else the
 * cmake-js build, else the node-gyp one, under `root` (the package directory).
 */
function loadAddon(root) {
  const file = process.env.IPCWIRE_NATIVE_PATH ||
    [path.join(root, 'build-cmake', 'Release', 'ipcwire.node'), path.join(root, 'build', 'Release', 'ipcwire.node')]
      .find((f) => fs.existsSync(f));
  if (!file) throw new Error(`no addon build under ${root}`);
  return require(file);
}

module.exports = {
  KiB, MiB, PAYLOADS, makeMessage, payloadBytes, emit, now, summarize, latency, throughput,
  startServer, stopServer, exitOnStdinEnd, tmpSocket, runCells, driverConfig, echoSyncFrames, loadAddon,
};
