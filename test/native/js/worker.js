'use strict';
// worker_threads: each thread loads its own addon instance; a call() blocked in a worker must not delay
// worker.terminate() (or process.exit()) by more than ~200 ms (RELIABILITY facts 5-6).
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
  server.close();
  for (const c of held) c.close();
  fs.rmSync(addr);
  const max = Math.max(...times);
  console.log(JSON.stringify({ test: 'worker', ok: max <= 200, terminate_ms: times }));
  if (max > 200) process.exitCode = 1;
}
main();
