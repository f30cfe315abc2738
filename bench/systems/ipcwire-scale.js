'use strict';
// Scale: one ipcwire main, K renderer processes doing sendSync at once. Each renderer warms up, says 'ready',
// and on main's broadcast 'go' calls sendSync back to back for `durationMs`, timing every call; then it
// prints its samples and failures. Aggregate calls/s is all calls over the span from the first start to the
// last end (CLOCK_MONOTONIC is shared by all processes); p50/p99 are over the pooled samples.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const C = require('../lib/common');

const modulePath = process.env.IPCWIRE_BENCH_MODULE || path.join(__dirname, '..', '..');

/**
 * One caller's closed-loop pieces, shared by the renderer and the addon-only client: `call()` makes one round trip
 * (`roundTrip` throws on a failure, counted with the first one's code), `timed()` times one call into samples that
 * grow as needed and returns the end time, `micros()` gives the samples in µs (0.1 µs resolution).
 */
function caller(roundTrip) {
  const st = {
    errors: 0,
    firstError: null,
    // Allocated and touched before the start: first-touch page faults cost ~11 µs per 4 KiB page on this VM.
    samples: new Float64Array(1 << 16).fill(0),
    n: 0,
    call() {
      try {
        roundTrip();
      } catch (err) {
        st.errors++;
        if (!st.firstError) st.firstError = String(err && (err.code || err.message));
      }
    },
    timed() {
      const t0 = C.now();
      st.call();
      const t1 = C.now();
      if (st.n === st.samples.length) {
        const bigger = new Float64Array(st.n * 2);
        bigger.set(st.samples);
        st.samples = bigger;
      }
      st.samples[st.n++] = t1 - t0;
      return t1;
    },
    micros: () => Array.from(st.samples.subarray(0, st.n), (x) => Math.round(x / 100) / 10),
  };
  return st;
}

function renderer(sockPath, durationMs, warmupCalls, rate) {
  const { IpcRenderer } = require(modulePath);
  const r = new IpcRenderer();
  r.connect(sockPath);
  const msg = C.makeMessage('small');
  const loop = caller(() => {
    const v = r.sendSync('ping', ...msg.args);
    if (!Array.isArray(v) || v[1] !== 123) throw new Error('wrong echo');
  });
  const timed = loop.timed;
  // Warm up before 'ready', so that the timed loop runs optimised code as a long-lived renderer would (a
  // renderer that makes only a few dozen calls in the window would otherwise stay in V8's interpreter).
  for (let i = 0; i < warmupCalls; i++) loop.call();
  // Garbage collections inside the timed window (count, time by kind): part of where a renderer's CPU goes.
  const { PerformanceObserver, constants } = require('node:perf_hooks');
  let from = Infinity;
  let to = Infinity;
  const gc = { minor: 0, minorMs: 0, major: 0, majorMs: 0 };
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if (e.startTime < from || e.startTime > to) continue;
      const major = (e.detail ? e.detail.kind : e.kind) !== constants.NODE_PERFORMANCE_GC_MINOR;
      if (major) {
        gc.major++;
        gc.majorMs += e.duration;
      } else {
        gc.minor++;
        gc.minorMs += e.duration;
      }
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  r.on('go', async () => {
    from = performance.now();
    const cpu0 = process.cpuUsage();
    const ru0 = process.resourceUsage();
    const start = C.now();
    const end = start + durationMs * 1e6;
    let t = start;
    if (!rate) {
      while (t < end) t = timed(); // closed loop: back to back
    } else {
      // Open loop: `rate` calls per second each, started at random phases, so that the latency is main's
      // answer under a known load rather than the queue a closed loop builds by construction.
      const period = 1e9 / rate;
      let next = start + Math.random() * period;
      for (;;) {
        const wait = (next - C.now()) / 1e6;
        if (wait > 0) await new Promise((res) => setTimeout(res, wait));
        if (next >= end) break;
        t = timed();
        next += period;
      }
    }
    const cpu = process.cpuUsage(cpu0);
    const ru = process.resourceUsage();
    to = performance.now();
    await new Promise((res) => setTimeout(res, 50)); // the observer hears of the window's collections
    obs.disconnect();
    // Page faults and context switches over the window: where a renderer's CPU per call goes as N grows.
    const faults = ru.minorPageFault - ru0.minorPageFault;
    const csw = ru.voluntaryContextSwitches - ru0.voluntaryContextSwitches;
    const icsw = ru.involuntaryContextSwitches - ru0.involuntaryContextSwitches;
    const cpuUs = cpu.user + cpu.system;
    const { n: calls, errors, firstError } = loop;
    process.stdout.write(JSON.stringify({ calls, errors, firstError, start, end: t, cpuUs, faults, csw, icsw, gc, us: loop.micros() }) + '\n', () => {
      r.close();
    });
  });
  r.send('ready');
}

// Attribution: the same closed loop without the TypeScript layer on one side or both. A raw client calls the
// addon's blocking call() directly with a SYNC frame encoded once (the bytes a renderer would send) and does not
// decode the reply; a raw main echoes each SYNC frame's payload from its event loop through the addon alone. Raw
// clients say 'ready' and hear 'go' on stdio (they have no message channel).
const addon = () => C.loadAddon(modulePath);

function rawRenderer(sockPath, durationMs, warmupCalls) {
  const binding = addon();
  const { encodeMessage, encodeValue } = require(path.join(modulePath, 'dist', 'cjs', 'codec.js'));
  const { PROTOCOL_VERSION } = require(modulePath);
  const noop = () => {};
  const c = binding.connect(sockPath, 5000);
  c.start(noop, noop, noop);
  // The handshake an ipcwire main needs (a raw main ignores it), then the exact SYNC payload of the ipcwire rows.
  c.write(1, 0, encodeValue({ magic: 'ipcwire', version: PROTOCOL_VERSION }, 'hello').payload);
  const payload = encodeMessage('ping', C.makeMessage('small').args, true).payload;
  let id = 0;
  const loop = caller(() => {
    const reply = c.call(++id, payload, 0, noop);
    if (!(reply.length > 0)) throw new Error('empty reply');
  });
  for (let i = 0; i < warmupCalls; i++) loop.call();
  process.stdin.once('data', () => {
    const cpu0 = process.cpuUsage();
    const start = C.now();
    const end = start + durationMs * 1e6;
    let t = start;
    while (t < end) t = loop.timed();
    const cpu = process.cpuUsage(cpu0);
    const { n: calls, errors, firstError } = loop;
    process.stdout.write(JSON.stringify({ calls, errors, firstError, start, end: t, cpuUs: cpu.user + cpu.system, us: loop.micros() }) + '\n', () => {
      c.close();
      process.stdin.destroy();
    });
  });
  process.stdout.write(JSON.stringify({ ready: true }) + '\n');
}

function startRawMain() {
  const binding = addon();
  const sock = C.tmpSocket('sr');
  const noop = () => {};
  const conns = new Set();
  const server = binding.listen(sock.path, 1024, 0o600, (conn) => {
    conns.add(conn);
    conn.start(C.echoSyncFrames(conn), () => conns.delete(conn), noop);
  }, (e) => {
    throw e;
  });
  const main = {
    close() {
      for (const c of conns) c.close();
      server.close();
    },
    on() {},
    removeListener() {},
  };
  return { main, sock };
}

function startMain() {
  const { IpcMain } = require(modulePath);
  const main = new IpcMain();
  const sock = C.tmpSocket('sc');
  main.on('ping', (event, ...args) => {
    event.returnValue = args;
  });
  main.listen(sock.path);
  return { main, sock };
}

function stopMain({ main, sock }) {
  main.close();
  fs.rmSync(sock.dir, { recursive: true, force: true });
}

/** `shared`: a main (from startMain) to reuse and leave open; by default the cell has a main of its own. */
/**
 * `client`/`server` 'raw': the addon alone on that side (see rawRenderer, startRawMain), for the attribution rows.
 */
async function runScale(count, { durationMs, timeoutMs, warmupCalls = 300, rate = 0, client = 'ipcwire', server = 'ipcwire' }, shared) {
  const raw = client === 'raw';
  const own = shared ? null : server === 'raw' ? startRawMain() : startMain();
  const { main, sock } = shared || own;
  let ready = 0;
  let allReady;
  const readyP = new Promise((res) => (allReady = res));
  const readyPeers = [];
  const onReady = (event) => {
    readyPeers.push(event.sender);
    if (++ready === count) allReady();
  };
  main.on('ready', onReady);
  const results = [];
  const exits = [];
  const children = [];
  for (let i = 0; i < count; i++) {
    const child = spawn(process.execPath, [...(process.env.IPCWIRE_BENCH_RENDERER_FLAGS ? process.env.IPCWIRE_BENCH_RENDERER_FLAGS.split(' ') : []), __filename, raw ? 'raw-renderer' : 'renderer', sock.path, String(durationMs), String(warmupCalls), String(rate)], {
      stdio: [raw ? 'pipe' : 'ignore', 'pipe', 'inherit'],
    });
    children.push(child);
    const rl = readline.createInterface({ input: child.stdout });
    rl.on('line', (line) => {
      const obj = JSON.parse(line);
      if (obj.ready) onReady({ sender: { send: () => child.stdin.write('go\n') } });
      else results.push(obj);
    });
    exits.push(new Promise((res) => child.once('exit', (code, sig) => res(code === 0 ? 0 : String(code ?? sig)))));
  }
  const timer = setTimeout(() => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  }, timeoutMs);
  const spawned = C.now();
  const failedEarly = Promise.all(exits).then(() => 'exited');
  if ((await Promise.race([readyP.then(() => 'ready'), failedEarly])) !== 'ready') {
    clearTimeout(timer);
    main.removeListener('ready', onReady);
    if (own) stopMain(own);
    throw new Error(`only ${ready} of ${count} renderers became ready`);
  }
  const startupMs = Math.round((C.now() - spawned) / 1e6);
  // Where the CPU goes while everyone calls: main's share of the window, and each renderer's own time.
  const mainCpu0 = process.cpuUsage();
  const goAt = C.now();
  let mainCpu = null;
  let windowNs = 0;
  const allResults = new Promise((res) => {
    const check = setInterval(() => {
      if (results.length + codesSoFar() < count) return;
      clearInterval(check);
      res();
    }, 2);
  });
  let exited = 0;
  const codesSoFar = () => exited;
  for (const e of exits) e.then(() => exited++);
  // Only to this cell's renderers: with idle connections (runIdle), a broadcast would be 10,000 writes.
  for (const peer of readyPeers) peer.send('go');
  await allResults;
  mainCpu = process.cpuUsage(mainCpu0);
  windowNs = C.now() - goAt;
  const codes = await Promise.all(exits);
  clearTimeout(timer);
  main.removeListener('ready', onReady);
  if (own) stopMain(own);

  const badExits = codes.filter((c) => c !== 0).length;
  let calls = 0;
  let errors = 0;
  let firstError = null;
  let start = Infinity;
  let end = 0;
  const pooled = [];
  let rendererCpuUs = 0;
  let faults = 0;
  let csw = 0;
  let icsw = 0;
  const gc = { minor: 0, minorMs: 0, major: 0, majorMs: 0 };
  for (const r of results) {
    for (const k of Object.keys(gc)) gc[k] += (r.gc && r.gc[k]) || 0;
    rendererCpuUs += r.cpuUs || 0;
    faults += r.faults || 0;
    csw += r.csw || 0;
    icsw += r.icsw || 0;
    calls += r.calls;
    errors += r.errors;
    firstError = firstError || r.firstError;
    start = Math.min(start, r.start);
    end = Math.max(end, r.end);
    for (const x of r.us) pooled.push(x * 1000);
  }
  if (process.env.IPCWIRE_BENCH_DEBUG) {
    for (const r of results) {
      process.stderr.write(`renderer: ${r.calls} calls, start +${((r.start - goAt) / 1e6).toFixed(1)} ms, ` +
        `end +${((r.end - goAt) / 1e6).toFixed(1)} ms, first ${r.us.slice(0, 3).join('/')} µs, max ${Math.max(...r.us)} µs, cpu ${r.cpuUs} µs\n`);
    }
  }
  const missing = count - results.length;
  const s = C.summarize(pooled);
  return {
    renderers: count,
    rate_per_renderer: rate || undefined,
    calls,
    failures: errors + missing + badExits,
    first_error: firstError || (missing ? `${missing} renderers reported nothing` : null),
    calls_per_s: Math.round(calls / ((end - start) / 1e9)),
    median_us: s.median_us,
    p99_us: s.p99_us,
    max_us: s.max_us,
    startup_ms: startupMs,
    // Diagnostics: main's CPU over the window (100% = one core busy), CPU per call in main and in renderers.
    main_cpu_pct: Math.round(((mainCpu.user + mainCpu.system) / (windowNs / 1e3)) * 100),
    main_cpu_us_per_call: calls ? Math.round(((mainCpu.user + mainCpu.system) / calls) * 10) / 10 : null,
    renderer_cpu_us_per_call: calls ? Math.round((rendererCpuUs / calls) * 10) / 10 : null,
    // Per call, summed over the renderers: minor page faults, voluntary and involuntary context switches.
    renderer_faults_per_call: calls ? Math.round((faults / calls) * 100) / 100 : null,
    renderer_csw_per_call: calls ? Math.round((csw / calls) * 100) / 100 : null,
    renderer_icsw_per_call: calls ? Math.round((icsw / calls) * 100) / 100 : null,
    // Garbage collection in the renderers over the window, summed: counts and µs per call.
    renderer_gc: { minor: gc.minor, major: gc.major, minor_us_per_call: calls ? Math.round((gc.minorMs * 1000 / calls) * 10) / 10 : null,
      major_us_per_call: calls ? Math.round((gc.majorMs * 1000 / calls) * 10) / 10 : null },
  };
}

// Idle connections: a holder process opens `count` renderer connections to main (in batches, so that the
// listen backlog never overflows) and keeps them open, saying nothing, until its stdin closes.
function holder(sockPath, count) {
  const { IpcRenderer } = require(modulePath);
  const held = [];
  let i = 0;
  const batch = () => {
    for (const end = Math.min(count, i + 100); i < end; i++) held.push(new IpcRenderer().connect(sockPath));
    if (i < count) setTimeout(batch, 5);
  };
  batch();
  process.stdin.on('data', () => {});
  process.stdin.on('end', () => {
    for (const r of held) r.close();
  });
}

/** Soft and hard RLIMIT_NOFILE of this process, raised with prlimit(1) to `need` where permitted. */
function raiseFdLimit(need) {
  const { spawnSync } = require('node:child_process');
  const get = () => {
    const r = spawnSync('prlimit', ['--pid', String(process.pid), '--nofile', '--raw', '--noheadings', '--output=SOFT,HARD'], { encoding: 'utf8' });
    if (r.status !== 0) return null;
    const [soft, hard] = r.stdout.trim().split(/\s+/).map((x) => (x === 'unlimited' ? Infinity : Number(x)));
    return { soft, hard };
  };
  const before = get();
  if (!before) return { ok: false, why: 'prlimit (util-linux) is not available to read or raise the fd limit' };
  if (before.soft >= need) return { ok: true, ...before };
  // Raising the hard limit needs root (CAP_SYS_RESOURCE); the soft limit can go up to the hard one.
  const target = before.hard >= need ? `${need}:${before.hard}` : `${need}:${need}`;
  spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${target}`]);
  const after = get();
  if (after && after.soft >= need) return { ok: true, ...after };
  return { ok: false, why: `${need} descriptors needed, the fd limit is ${before.soft} (hard ${before.hard}) and could not be raised (not root)` };
}

function gcNow() {
  if (!global.gc) {
    require('node:v8').setFlagsFromString('--expose-gc');
    global.gc = require('node:vm').runInNewContext('gc');
  }
  global.gc();
  global.gc();
}

/**
 * `idle` connections held open by `holders` processes against one main, while `active` renderers call
 * sendSync back to back: main's RSS and V8 heap per idle connection, and the active renderers' p99 with and
 * without the idle ones (same main, same run).
 */
async function runIdle({ idle, holders, active, cfg }) {
  const lim = raiseFdLimit(idle + active + 256);
  if (!lim.ok) return { skipped: lim.why };
  const shared = startMain();
  const { main, sock } = shared;
  const procs = [];
  try {
    await runScale(active, { ...cfg, durationMs: Math.min(cfg.durationMs, 500) }, shared); // warm main up
    const before = await runScale(active, cfg, shared);
    gcNow();
    await new Promise((res) => setTimeout(res, 200));
    gcNow();
    const mem0 = process.memoryUsage();
    let connected = 0;
    let allConnected;
    const connectedP = new Promise((res) => (allConnected = res));
    const onConnect = () => {
      if (++connected === idle) allConnected();
    };
    main.peers.on('connect', onConnect);
    const t0 = C.now();
    const per = Math.ceil(idle / holders);
    for (let h = 0, left = idle; h < holders; h++, left -= per) {
      // A holder needs a descriptor per connection too: raise its limit in the shell that starts it.
      const n = Math.min(per, left);
      const child = spawn('sh', ['-c', `ulimit -n ${n + 256} 2>/dev/null; exec "$0" "$@"`, process.execPath, __filename, 'holder', sock.path, String(n)], {
        stdio: ['pipe', 'ignore', 'inherit'],
      });
      procs.push({ child, exit: new Promise((res) => child.once('exit', res)) });
    }
    const timer = setTimeout(() => allConnected('timeout'), cfg.timeoutMs);
    const how = await connectedP;
    clearTimeout(timer);
    main.peers.removeListener('connect', onConnect);
    if (how === 'timeout') throw new Error(`only ${connected} of ${idle} idle connections were made`);
    const connectMs = Math.round((C.now() - t0) / 1e6);
    await new Promise((res) => setTimeout(res, 500));
    gcNow();
    const mem1 = process.memoryUsage();
    const during = await runScale(active, cfg, shared);
    const rssPer = (mem1.rss - mem0.rss) / idle;
    const heapPer = (mem1.heapUsed - mem0.heapUsed) / idle;
    const externalPer = (mem1.external + mem1.arrayBuffers - mem0.external - mem0.arrayBuffers) / idle;
    return {
      idle,
      holders,
      active,
      connect_ms: connectMs,
      rss_bytes_per_idle: Math.round(rssPer),
      heap_bytes_per_idle: Math.round(heapPer),
      external_bytes_per_idle: Math.round(externalPer),
      main_rss_mib: Math.round(mem1.rss / 1048576),
      before,
      during,
      p99_ratio: Math.round((during.p99_us / before.p99_us) * 100) / 100,
      calls_per_s_ratio: Math.round((during.calls_per_s / before.calls_per_s) * 100) / 100,
      failures: before.failures + during.failures,
      first_error: before.first_error || during.first_error,
    };
  } finally {
    for (const p of procs) p.child.stdin.end();
    await Promise.all(procs.map((p) => p.exit));
    stopMain(shared);
  }
}

async function driver(cfg) {
  await C.runCells(cfg, (cell) => (cell.idle ? runIdle(cell) : runScale(cell.renderers, cell.cfg)));
}

if (process.argv[2] === 'raw-renderer') rawRenderer(process.argv[3], Number(process.argv[4]), Number(process.argv[5]));
else if (process.argv[2] === 'renderer') renderer(process.argv[3], Number(process.argv[4]), Number(process.argv[5]), Number(process.argv[6]));
else if (process.argv[2] === 'holder') holder(process.argv[3], Number(process.argv[4]));
else driver(C.driverConfig()).catch((e) => {
  console.error(e);
  process.exit(1);
});
