#!/usr/bin/env node
'use strict';
// `npm run bench` — every system in the same run: round-trip latency (pinned to one core and unpinned, with
// repeats for the spread), one-way throughput, and sendSync scale; then a table with ratios against the C
// ping-pong and node:net + msgpackr, the targets met or missed, bench/results/latest.{json,svg} and the
// figures section of bench/README.md.
// `npm run bench:smoke` (--smoke) — the same harness with tiny counts; exits 0 when every system produced
// numbers. Writes to a temporary directory unless --out is given; never judges timings.
//
// Options: --smoke, --out DIR, --only id,id (see lib/plan.js), --sections latency,throughput,scale,graph,streams,ports,zerocopy,
// --repeats N, --no-readme. IPCWIRE_BENCH_MODULE=path measures another ipcwire build.
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { SYSTEMS, label, FULL, SMOKE, RAW_TO_MAIN, RAW_TO_RAW } = require('./lib/plan');
const { payloadBytes } = require('./lib/common');
const report = require('./lib/report');

const root = path.join(__dirname, '..');

function parseArgs(argv) {
  const o = { smoke: false, out: null, only: null, sections: ['latency', 'throughput', 'scale', 'graph', 'streams', 'ports', 'zerocopy'], repeats: null, readme: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--smoke') o.smoke = true;
    else if (a === '--out') o.out = argv[++i];
    else if (a === '--only') o.only = argv[++i].split(',');
    else if (a === '--sections') o.sections = argv[++i].split(',');
    else if (a === '--repeats') o.repeats = Number(argv[++i]);
    else if (a === '--no-readme') o.readme = false;
    else {
      console.error(`unknown option ${a}`);
      process.exit(2);
    }
  }
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const plan = opts.smoke ? SMOKE : FULL;
const repeats = opts.repeats || plan.repeats;
// The smoke run writes to a fresh temporary directory (made at the end), so CI leaves the tree clean.
const outDir = opts.out ? path.resolve(opts.out) : opts.smoke ? null : path.join(__dirname, 'results');
const systems = SYSTEMS.filter((s) => !opts.only || opts.only.includes(s.id));
const started = Date.now();
const loadStart = os.loadavg().map((x) => Math.round(x * 100) / 100);
const notes = [];

function log(line) {
  process.stderr.write(line + '\n');
}

// ---- prerequisites -------------------------------------------------------------------------------------

/** taskset from util-linux, and whether this process may use it (containers can forbid affinity). */
function probeTaskset() {
  const r = spawnSync('taskset', ['-c', '0', process.execPath, '-e', '0'], { stdio: 'ignore' });
  return r.status === 0;
}

/**
 * A C ping-pong program (`pingpong`, `shm_pingpong`): the cmake build (scripts/native-tests.sh → build-cmake/),
 * else compiled here into a cache.
 */
function findPingpong(name = 'pingpong') {
  const src = path.join(__dirname, 'native', `${name}.cc`);
  // The program is as new as its source and the header both programs include.
  const srcTime = fs.existsSync(src) ? Math.max(fs.statSync(src).mtimeMs, fs.statSync(path.join(__dirname, 'native', 'bench_io.h')).mtimeMs) : 0;
  if (name === 'pingpong' && process.env.PINGPONG_BIN) return process.env.PINGPONG_BIN;
  for (const cand of [`build-cmake/${name}`, `build-cmake/Release/${name}`, `build-cmake/bench/${name}`]) {
    const p = path.join(root, cand);
    if (fs.existsSync(p) && fs.statSync(p).mtimeMs >= srcTime) return p;
  }
  if (!srcTime) return null;
  const cached = path.join(os.tmpdir(), `ipcwire-bench-${name}-${Math.round(srcTime)}`);
  if (fs.existsSync(cached)) return cached;
  // Same flags as CMakeLists.txt's Release build (-O2, C++17).
  const cxx = process.env.CXX || 'c++';
  const r = spawnSync(cxx, ['-O2', '-std=c++17', '-o', cached + '.tmp', src], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) return null;
  fs.renameSync(cached + '.tmp', cached);
  notes.push(`C ${name} compiled by bench/run.js (${cxx} -O2 -std=c++17): no build-cmake/${name} newer than its source`);
  return cached;
}

/** ipcwire built (addon + dist), through the project's own ensure-built when the package is measured in place. */
function ensureIpcwire() {
  if (process.env.IPCWIRE_BENCH_MODULE) return true;
  try {
    const eb = require(path.join(root, 'scripts', 'ensure-built.js'));
    const quiet = (l) => log(l);
    if (!eb.ensureNative(quiet) || !eb.ensureTs(quiet)) return false;
  } catch (err) {
    log(`bench: could not run scripts/ensure-built.js (${err.message}); using dist/ as it is`);
  }
  return true;
}

/** Which ipcwire is measured: the commit of a build given by IPCWIRE_BENCH_MODULE (its COMMIT file), or this tree. */
function ipcwireVersion() {
  const mod = process.env.IPCWIRE_BENCH_MODULE;
  try {
    if (mod) {
      const f = path.join(mod, 'COMMIT');
      if (!fs.existsSync(f)) return `the build at ${mod}`;
      const [hash, date, time] = fs.readFileSync(f, 'utf8').trim().split(' ');
      return `${hash} (${date} ${time}), a clean build of that commit (IPCWIRE_BENCH_MODULE)`;
    }
    const head = spawnSync('git', ['log', '-1', '--format=%h (%cd)', '--date=format:%Y-%m-%d %H:%M'], { cwd: root, encoding: 'utf8' }).stdout.trim();
    const dirty = spawnSync('git', ['status', '--porcelain', '--', 'src'], { cwd: root, encoding: 'utf8' }).stdout.trim();
    return head ? `${head}, this tree${dirty ? ' with uncommitted changes in src/' : ''}` : 'unknown';
  } catch {
    return 'unknown';
  }
}

// ---- running jobs ---------------------------------------------------------------------------------------

const taskset = probeTaskset();
if (!taskset) notes.push('taskset is missing or not permitted here: "pinned" latency was not measured (unpinned only)');
const pins = taskset ? ['pinned', 'unpinned'] : ['unpinned'];
const pingpong = systems.some((s) => s.kind === 'c' && !s.binary) ? findPingpong() : null;
/** The other C programs by name (the shared-memory ping-pong), found or built once. */
const cPrograms = {};
for (const s of systems) if (s.kind === 'c' && s.binary && !(s.binary in cPrograms)) cPrograms[s.binary] = findPingpong(s.binary);
const ipcwireReady = systems.some((s) => s.id === 'ipcwire') ? ensureIpcwire() : true;

/** The jobs of the run: one driver process per (system, pinning, repeat, section), interleaved across systems. */
function buildJobs() {
  const jobs = [];
  const payloadsFor = (sys, list, every, rep) =>
    list.filter((p) => (rep === 0 || every.includes(p)) && !(sys.skip && sys.skip[p]));
  for (let rep = 0; rep < repeats; rep++) {
    if (opts.sections.includes('latency')) {
      for (const pin of pins) {
        for (const sys of systems) {
          const payloads = payloadsFor(sys, plan.latencyPayloads, plan.latencyEveryRepeat, rep).filter(
            (p) => pin !== 'pinned' || !(plan.pinnedSkip || []).includes(p),
          );
          const apis = sys.apis || [null];
          const cells = [];
          for (const payload of payloads) {
            for (const api of apis) {
              cells.push({ kind: 'latency', api: api || undefined, payload, cfg: plan.latency[payload] });
            }
          }
          if (cells.length) jobs.push({ sys, section: 'latency', pin, rep, cells });
        }
      }
    }
    if (opts.sections.includes('throughput')) {
      for (const sys of systems.filter((x) => !x.latencyOnly)) {
        const payloads = payloadsFor(sys, plan.throughputPayloads, plan.throughputEveryRepeat, rep);
        const cells = payloads.map((payload) => ({ kind: 'throughput', api: sys.tpApi, payload, cfg: plan.throughput[payload] }));
        // The same Buffers with main giving each block back by releaseShared() instead of leaving it to V8.
        if (sys.tpReleaseApi) {
          for (const payload of payloads.filter((p) => p !== 'small')) {
            cells.push({ kind: 'throughput', api: sys.tpReleaseApi, payload, cfg: plan.throughput[payload] });
          }
        }
        if (cells.length) jobs.push({ sys, section: 'throughput', pin: 'unpinned', rep, cells });
      }
    }
  }
  const cSys = systems.find((s) => s.kind === 'c' && !s.binary);
  if (opts.sections.includes('scale') && cSys) {
    // The limit for the scale rows: N C clients doing blocking round trips against one C server that polls
    // every socket (bench/native/pingpong.cc --mode scale).
    const cells = plan.scale.counts.map((renderers) => ({ kind: 'scale', renderers }));
    jobs.push({ sys: cSys, section: 'scale', pin: 'unpinned', rep: 0, cells });
  }
  if (opts.sections.includes('scale') && systems.some((s) => s.id === 'ipcwire')) {
    const sys = { id: 'ipcwire-scale', kind: 'node', script: 'ipcwire-scale.js' };
    const cells = plan.scale.counts.map((renderers) => ({
      kind: 'scale',
      renderers,
      cfg: { durationMs: plan.scale.durationMs, timeoutMs: plan.scale.timeoutMs, warmupCalls: plan.scale.warmupCalls },
    }));
    // Paced (open-loop) rows: each renderer calls `rate` times a second; information, not a target.
    const paced = plan.scale.paced;
    for (const renderers of (paced && paced.counts) || []) {
      cells.push({
        kind: 'scale',
        renderers,
        rate: paced.rate,
        cfg: { durationMs: paced.durationMs, timeoutMs: plan.scale.timeoutMs, warmupCalls: plan.scale.warmupCalls, rate: paced.rate },
      });
    }
    jobs.push({ sys, section: 'scale', pin: 'unpinned', rep: 0, cells });
    // Attribution rows: the same closed loop with the addon alone on the renderers' side (no TypeScript, no
    // msgpack), against ipcwire's main and against a main that is the addon alone too; their own process.
    const attribution = plan.scale.attribution || [];
    if (attribution.length) {
      const cfg = { durationMs: plan.scale.durationMs, timeoutMs: plan.scale.timeoutMs, warmupCalls: plan.scale.warmupCalls, client: 'raw' };
      jobs.push({ sys, section: 'scale', pin: 'unpinned', rep: 0, cells: [
        ...attribution.map((renderers) => ({ kind: 'scale', renderers, label: RAW_TO_MAIN, cfg: { ...cfg, server: 'ipcwire' } })),
        ...attribution.map((renderers) => ({ kind: 'scale', renderers, label: RAW_TO_RAW, cfg: { ...cfg, server: 'raw' } })),
      ] });
    }
    if (plan.idle) {
      const { idle, holders, active } = plan.idle;
      const cfg = { durationMs: plan.scale.durationMs, timeoutMs: plan.scale.timeoutMs, warmupCalls: plan.scale.warmupCalls };
      jobs.push({ sys, section: 'idle', pin: 'unpinned', rep: 0, cells: [{ kind: 'idle', idle, holders, active, cfg }] });
    }
  }
  return jobs;
}

/** Spawn a command (pinned with taskset if asked) in its own process group; collect its JSON lines. */
function runProcess(argv, pin, timeoutMs, onLine, env = {}) {
  const cmd = pin === 'pinned' ? ['taskset', '-c', '0', ...argv] : argv;
  return new Promise((resolve) => {
    const child = spawn(cmd[0], cmd.slice(1), {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group: a timeout kills the driver and every server it started
    });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr = (stderr + d).slice(-4000);
    });
    const rl = readline.createInterface({ input: child.stdout });
    rl.on('line', (line) => {
      let obj;
      try {
        obj = JSON.parse(line);
      } catch {
        return;
      }
      onLine(obj);
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {}
    }, timeoutMs);
    const closed = new Promise((res) => rl.once('close', res));
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      // Servers a driver started are in its process group: make sure none outlives it.
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {}
      closed.then(() => resolve({ code, sig, timedOut, stderr }));
    });
  });
}

const records = []; // every cell of every repeat, as measured
let done = 0;
let total = 0;

function fmtElapsed() {
  const s = Math.round((Date.now() - started) / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

function progress(rec) {
  done++;
  const what = `${rec.section}${rec.section === 'latency' ? '/' + rec.pin : ''} ${rec.label}${rec.renderers ? ` ×${rec.renderers}` : ''}${rec.idle ? ` ${rec.idle} idle` : ''}${rec.rate ? ` at ${rec.rate}/s each` : ''} ${rec.payload || ''}`;
  let res;
  if (rec.error) res = `ERROR ${rec.error.slice(0, 160)}`;
  else if (rec.section === 'latency') res = `median ${rec.result.median_us} µs, p99 ${rec.result.p99_us} µs (n=${rec.result.n})`;
  else if (rec.section === 'throughput') res = `${rec.result.msgs_per_s} msgs/s, ${rec.result.mb_per_s} MB/s`;
  else if (rec.section === 'idle') {
    const r = rec.result;
    res = r.skipped ? `skipped: ${r.skipped}` : `${r.rss_bytes_per_idle} B RSS and ${r.heap_bytes_per_idle} B heap per idle connection; ` +
      `${r.active} active: p99 ${r.before.p99_us} → ${r.during.p99_us} µs, ${r.before.calls_per_s} → ${r.during.calls_per_s} calls/s, failures ${r.failures}`;
  } else res = `${rec.result.calls_per_s} calls/s, p99 ${rec.result.p99_us} µs, failures ${rec.result.failures}`;
  log(`[${String(done).padStart(3)}/${total} ${fmtElapsed()}] ${what.replace(/\s+/g, ' ').trim()}${rec.rep ? ` (repeat ${rec.rep + 1})` : ''}: ${res}`);
}

async function runNodeJob(job) {
  const script = path.join(__dirname, 'systems', job.sys.script);
  const cfg = { ...(job.sys.extra || {}), cells: job.cells };
  const seen = new Set();
  const argv = [process.execPath, script, JSON.stringify(cfg)];
  const r = await runProcess(argv, job.pin, plan.driverTimeoutMs, (obj) => {
    if (obj.type !== 'cell') return;
    const i = job.cells.findIndex((c, k) => !seen.has(k) && c.payload === obj.payload && c.api === obj.api && c.renderers === obj.renderers && c.rate === obj.rate && c.idle === obj.idle && c.label === obj.label);
    seen.add(i);
    record(job, obj, obj.result, obj.error);
  });
  job.cells.forEach((c, k) => {
    if (seen.has(k)) return;
    const why = r.timedOut
      ? `timed out after ${plan.driverTimeoutMs / 1000} s`
      : `driver exited (${r.code ?? r.sig}) without a result: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`;
    record(job, c, null, why);
  });
}

/** Why a section's script did not deliver all its rows (by section name). */
const sectionFailures = {};

/**
 * Runs one section's script (bench/systems/<name>.js, unpinned, with node's `flags` and the script's `args`) and
 * collects its JSON lines: `keyOf(line)` names the row a line is (undefined: not one of this section's rows),
 * `describe(line)` is its log text. The section fails unless `expected` distinct rows arrived. Returns the rows
 * by key, in arrival order.
 */
async function runSection(name, { flags = [], args, expected, keyOf, describe }) {
  const rows = new Map();
  const argv = [process.execPath, ...flags, path.join(__dirname, 'systems', `${name}.js`), ...args];
  const r = await runProcess(argv, 'unpinned', plan.driverTimeoutMs, (obj) => {
    const key = keyOf(obj);
    if (key === undefined) return;
    rows.set(key, obj);
    log(`[${fmtElapsed()}] ${name} ${describe(obj)}`);
  });
  if (rows.size !== expected) {
    sectionFailures[name] = r.timedOut ? 'timed out' : `${name}.js exited (${r.code ?? r.sig}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`;
  }
  return rows;
}

/**
 * Big object graphs: one process encodes and decodes `{ list }` of N small objects through ipcwire's codec and
 * through msgpackr alone, alternating, and reports medians and ratios (one line per size).
 */
async function runGraph() {
  const g = plan.graph;
  const rows = await runSection('graph', {
    flags: ['--expose-gc'],
    args: ['--sizes', g.sizes.join(','), '--reps', String(g.reps)],
    expected: g.sizes.length,
    keyOf: (obj) => (typeof obj.objects === 'number' ? obj.objects : undefined),
    describe: (obj) => `${obj.objects} objects: encode ${obj.encode_ms.ipcwire} ms (×${obj.encode_x_structured} msgpackr structured, ` +
      `×${obj.encode_x_plain} plain), decode ${obj.decode_ms.ipcwire} ms (×${obj.decode_x_structured}, ×${obj.decode_x_plain}); ` +
      `CPU time: encode ×${obj.encode_cpu_x_structured} / ×${obj.encode_cpu_x_plain}, decode ×${obj.decode_cpu_x_structured} / ×${obj.decode_cpu_x_plain}`,
  });
  return [...rows.values()];
}

/** A section whose script prints one `{ type: name, kind, ... }` line per row: the rows by kind. */
async function runKinds(name, config, kinds) {
  const rows = await runSection(name, {
    args: [JSON.stringify(config)],
    expected: kinds,
    keyOf: (obj) => (obj.type === name ? obj.kind : undefined),
    describe: ({ type, kind, ...rest }) => `${kind}: ${JSON.stringify(rest)}`,
  });
  return Object.fromEntries(rows);
}

/** The addon a build given by IPCWIRE_BENCH_MODULE would load, for bench/native/call-rtt.js. */
function addonEnv() {
  const mod = process.env.IPCWIRE_BENCH_MODULE;
  const p = mod && path.join(mod, 'build', 'Release', 'ipcwire.node');
  return p && fs.existsSync(p) && !process.env.IPCWIRE_NATIVE_PATH ? { IPCWIRE_NATIVE_PATH: p } : {};
}

/** Programs that print one result line themselves: the C ping-pong, and the addon-only call() loop. */
async function runCJob(job) {
  const isC = job.sys.kind === 'c';
  const program = job.sys.binary ? cPrograms[job.sys.binary] : pingpong;
  const script = isC ? null : path.join(__dirname, 'systems', job.sys.script);
  if (isC ? !program : !fs.existsSync(script)) {
    const name = job.sys.binary || 'pingpong';
    for (const c of job.cells) record(job, c, null, isC ? `no C ${name} binary (bench/native/${name}.cc missing or did not compile)` : `${path.relative(root, script)} is missing`);
    return;
  }
  if (job.section === 'scale') {
    for (const c of job.cells) {
      const argv = [pingpong, '--size', String(payloadBytes('small')), '--mode', 'scale', '--clients', String(c.renderers),
        '--duration-ms', String(plan.scale.durationMs), '--warmup', String(plan.scale.warmupCalls)];
      let out = null;
      const r = await runProcess(argv, job.pin, plan.driverTimeoutMs, (obj) => (out = obj));
      if (!out) {
        record(job, c, null, `pingpong --mode scale exited (${r.code ?? r.sig}): ${r.stderr.trim().slice(-300)}`);
        continue;
      }
      const { calls, failures } = out;
      record(job, c, { calls, failures, calls_per_s: out.calls_per_s, median_us: out.median_us, p99_us: out.p99_us, max_us: out.max_us, client_cpu_us_per_call: out.client_cpu_us_per_call }, null);
    }
    return;
  }
  for (const c of job.cells) {
    const [iters, warmup] = (job.section === 'latency' ? plan.cLatency : plan.cThroughput)[c.payload];
    const size = payloadBytes(c.payload);
    const sockDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipcb-'));
    const argv = isC
      ? [program, '--size', String(size), '--iters', String(iters), '--warmup', String(warmup), '--mode', job.section,
          ...(job.sys.binary ? [] : ['--path', path.join(sockDir, 'c.sock')])]
      : [process.execPath, script, '--size', String(size), '--iters', String(Math.min(iters, plan.addonMaxIters || iters))];
    let out = null;
    const r = await runProcess(argv, job.pin, plan.driverTimeoutMs, (obj) => (out = obj), addonEnv());
    fs.rmSync(sockDir, { recursive: true, force: true });
    if (!out) {
      record(job, c, null, `${path.basename(argv[isC ? 0 : 1])} exited (${r.code ?? r.sig}): ${r.stderr.trim().slice(-300)}`);
      continue;
    }
    const result =
      job.section === 'latency'
        ? { n: out.iters, median_us: out.median_us, p99_us: out.p99_us, mean_us: out.mean_us }
        : { msgs: out.msgs, msgs_per_s: Math.round(out.msgs_per_s), mb_per_s: Math.round(out.mb_per_s * 10) / 10 };
    record(job, c, result, null);
  }
}

function record(job, cell, result, error) {
  const sys = job.sys;
  const rec = {
    section: job.section,
    pin: job.pin,
    rep: job.rep,
    system: sys.id,
    label: cell.label || ((job.section === 'scale' || job.section === 'idle') && sys.kind !== 'c' ? 'ipcwire sendSync' : label(sys, job.section === 'throughput' ? cell.api || sys.tpApi : cell.api)),
    payload: cell.payload,
    renderers: cell.renderers,
    rate: cell.rate,
    idle: cell.idle,
    result: result || null,
    error: error || null,
  };
  records.push(rec);
  progress(rec);
}

// ---- main -----------------------------------------------------------------------------------------------

async function main() {
  const jobs = buildJobs();
  total = jobs.reduce((n, j) => n + j.cells.length, 0);
  log(`ipcwire bench (${plan.name}): ${total} measurements, ${repeats} repeat(s), ${pins.join(' + ')} latency; ` +
      `${os.cpus().length} CPUs, Node ${process.version}`);
  for (const n of notes) log(`note: ${n}`);
  if (!ipcwireReady) log('note: ipcwire could not be built; its rows will fail');
  for (const job of jobs) {
    if (job.sys.kind === 'c' || job.sys.kind === 'addon') await runCJob(job);
    else await runNodeJob(job);
  }
  const graph = opts.sections.includes('graph') && systems.some((s) => s.id === 'ipcwire') ? await runGraph() : [];
  const streams = opts.sections.includes('streams') && systems.some((s) => s.id === 'ipcwire') ? await runKinds('streams', plan.streams, 3) : {};
  const ports = opts.sections.includes('ports') && systems.some((s) => s.id === 'ipcwire') ? await runKinds('ports', plan.ports, 2) : {};
  const zerocopy = opts.sections.includes('zerocopy') && systems.some((s) => s.id === 'ipcwire') ? await runKinds('zerocopy', plan.zerocopy, 1) : {};
  const durationS = Math.round((Date.now() - started) / 1000);
  const meta = report.machine({ ipcwire: ipcwireVersion(), loadavg_start: loadStart, plan: plan.name, repeats, pins, taskset, durationS, notes, skipped: skippedList() });
  const results = report.aggregate(records, meta);
  results.graph = graph;
  results.streams = streams;
  results.ports = ports;
  results.zerocopy = zerocopy;
  results.targets.push(report.zeroCopyTarget(zerocopy));
  const text = report.table(results);
  process.stdout.write(text + '\n');
  const dir = outDir || fs.mkdtempSync(path.join(os.tmpdir(), 'ipcwire-bench-smoke-'));
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'latest.json'), JSON.stringify({ ...results, records }, null, 1) + '\n');
  fs.writeFileSync(path.join(dir, 'latest.svg'), report.svg(results));
  log(`wrote ${path.join(dir, 'latest.json')} and latest.svg in ${durationS} s`);
  const complete = !opts.only && opts.sections.length === 7;
  if (!opts.smoke && opts.readme && complete && !opts.out) {
    report.updateReadme(path.join(__dirname, 'README.md'), results);
    log('updated the figures in bench/README.md');
  }
  // Smoke: every system must have produced numbers in every cell; timings are never judged.
  const failed = records.filter((r) => r.error || !r.result);
  const scaleFailures = records.filter((r) => (r.section === 'scale' || r.section === 'idle') && r.result && r.result.failures > 0);
  if (failed.length) log(`${failed.length} measurement(s) failed:\n` + failed.map((r) => `  ${r.section} ${r.pin} ${r.label} ${r.payload || r.renderers}: ${r.error}`).join('\n'));
  for (const [name, why] of Object.entries(sectionFailures)) log(`${name}: ${why}`);
  if (scaleFailures.length) log(`scale: sendSync calls failed: ${scaleFailures.map((r) => `${r.idle ? `${r.idle} idle connections and active` : r.renderers} renderers: ${r.result.failures} (${r.result.first_error})`).join('; ')}`);
  process.exitCode = failed.length || scaleFailures.length || Object.keys(sectionFailures).length ? 1 : 0;
}

function skippedList() {
  const out = [];
  for (const s of systems) for (const [p, why] of Object.entries(s.skip || {})) if (plan.latencyPayloads.includes(p)) out.push({ system: s.label || s.id, payload: p, why });
  if (opts.smoke) out.push({ system: 'all', payload: '16MiB', why: 'smoke run: 16 MiB is measured by the full run only' });
  else if (pins.includes('pinned')) for (const p of plan.pinnedSkip || []) out.push({ system: 'all', payload: p, why: 'latency measured unpinned only (pinning matters for small messages; saves a minute)' });
  return out;
}

// A run that stops with nothing pending would otherwise exit 0 silently.
process.on('exit', (code) => {
  if (code === 0 && !finished) {
    log('bench: stopped before the end of the run (a measurement never settled)');
    process.exitCode = 1;
  }
});
let finished = false;

main().then(() => (finished = true)).catch((err) => {
  console.error(err);
  process.exit(1);
});
