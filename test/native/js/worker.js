'use strict';
// worker_threads: each thread loads its own addon instance; a call() blocked in a worker must not delay
// worker.terminate() (or process.exit()) by more than ~200 ms: the blocking wait runs in slices and checks
// between them whether its thread is being stopped.
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');
const assert = require('node:assert');
const fs = require('node:fs');
const { binding, parseChunks, tmpSock } = require('./common');

if (!isMainThread) {
  const conn = binding.connect(workerData.addr, 2000);
  conn.start(() => {}, () => {}, () => {});
  if (workerData.mode === 'echo') {
    const r = conn.call(1, Buffer.from('w' + workerData.n), 0, () => {});
    parentPort.postMessage(r.toString());
    conn.close();
  } else if (workerData.mode === 'leave-open') {
    // Leaves a server, started connections and queued writes open: the env cleanup hook must close
    // them (no JS) and hold teardown until their close callbacks ran (a worker's loop is closed with
    // CheckedUvLoopClose, which aborts on open handles).
    const own = require('node:path').join(require('node:path').dirname(workerData.addr), 'w' + workerData.n + '.sock');
    const s = binding.listen(own, 8, 0o600, (c) => { c.start(() => {}, () => {}, () => {}); }, () => {});
    const c2 = binding.connect(own, 1000);
    c2.start(() => {}, () => {}, () => {});
    c2.write(3, 1, Buffer.alloc(8 * 1024 * 1024));  // far more than the socket takes: stays queued
    conn.write(3, 1, Buffer.alloc(4 * 1024 * 1024));
    conn.ref();
    parentPort.postMessage('open');
    if (workerData.end === 'natural') { s.unref(); conn.unref(); c2.close(); require('node:fs').rmSync(own); }
  } else {
    parentPort.postMessage('blocking');
    try {
      conn.call(7, Buffer.from('never answered'), 0, () => {});
    } catch (e) {
      parentPort.postMessage('threw ' + e.code);
    }
  }
  return;
}

const addr = tmpSock();
const held = [];
const server = binding.listen(addr, 511, 0o600, (c) => {
  held.push(c);
  c.start((chunks) => {
    for (const f of parseChunks(chunks)) {
      if (f.kind === 4 && f.id === 1) c.write(5, 1, Buffer.from('echo:' + f.payload.toString()));
    }
  }, () => {}, () => {});
}, (e) => { throw e; });

async function main() {
  // 1. Several workers, each its own instance, concurrent blocking calls.
  const replies = await Promise.all([0, 1, 2, 3].map((n) => new Promise((resolve, reject) => {
    const w = new Worker(__filename, { workerData: { addr, mode: 'echo', n } });
    w.once('message', resolve);
    w.once('error', reject);
  })));
  assert.deepStrictEqual(replies.sort(), ['echo:w0', 'echo:w1', 'echo:w2', 'echo:w3']);

  // 2. terminate() while the worker is blocked in call().
  const times = [];
  for (let i = 0; i < 3; i++) {
    const w = new Worker(__filename, { workerData: { addr, mode: 'block' } });
    await new Promise((r) => w.once('message', r));
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    await w.terminate();
    times.push(Date.now() - t0);
  }
  // 3. Workers ending with resources open: terminated, and ending naturally.
  for (const [n, end] of [[1, 'terminate'], [2, 'natural'], [3, 'terminate']]) {
    const w = new Worker(__filename, { workerData: { addr, mode: 'leave-open', n, end } });
    await new Promise((r) => w.once('message', r));
    const exited = new Promise((r) => w.once('exit', r));
    if (end === 'terminate') await w.terminate();
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('still running'), 5000))]);
    assert.strictEqual(code, end === 'terminate' ? 1 : 0);
    fs.rmSync(require('node:path').join(require('node:path').dirname(addr), 'w' + n + '.sock'), { force: true });
  }

  // 4. process.exit() in the main thread while a worker is blocked in call(): measured in a child.
  const { spawnSync } = require('node:child_process');
  const exitTimes = [];
  for (let i = 0; i < 3; i++) {
    const r = spawnSync(process.execPath, ['-e', `
      const { Worker } = require('node:worker_threads');
      const w = new Worker(${JSON.stringify(__filename)}, { workerData: { addr: ${JSON.stringify(addr)}, mode: 'block' } });
      w.once('message', () => setTimeout(() => {
        process.stdout.write(String(Date.now()));
        process.exit(0);
      }, 100));`], { encoding: 'utf8', timeout: 10000 });
    exitTimes.push(Date.now() - Number(r.stdout));
  }

  server.close();
  for (const c of held) c.close();
  assert.ok(!fs.existsSync(addr) && !fs.existsSync(addr + '.lock'), 'close() removes the socket and lock files');
  const max = Math.max(...times), maxExit = Math.max(...exitTimes);
  // Under a sanitizer, LeakSanitizer's scan at exit takes seconds: timings are reported, not judged.
  const sanitized = /asan|tsan/.test(process.env.LD_PRELOAD || '');
  const ok = sanitized || (max <= 200 && maxExit <= 200);
  console.log(JSON.stringify({ test: 'worker', ok, terminate_ms: times, process_exit_ms: exitTimes }));
  if (!ok) process.exitCode = 1;
}
main().catch((e) => { console.error(e); process.exit(1); });
