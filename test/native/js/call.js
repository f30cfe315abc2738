'use strict';
// call() (sendSync) against a server in another process: ordering of frames that arrive during a call,
// timeouts and late replies, peer death while blocked, alive() throwing / closing, EINTR (--cpu-prof),
// flush at process.exit.
const assert = require('node:assert');
const fs = require('node:fs');
const { fork, spawnSync } = require('node:child_process');
const { binding, parseChunks, tmpSock, childStatus } = require('./common');

const scenario = process.argv[2];
const noop = () => {};

if (scenario === 'server') {
  // Server process: behaviour per SYNC payload text.
  const addr = process.argv[3];
  const s = binding.listen(addr, 64, 0o600, (c) => {
    c.start((chunks) => {
      for (const f of parseChunks(chunks)) {
        const text = f.payload.toString();
        if (f.kind === 3 && text.startsWith('count:')) {
          const n = +text.slice(6);
          for (let i = 0; i < n; i++) c.write(3, i, Buffer.from('m' + i));
          continue;
        }
        if (f.kind !== 4) { if (text === 'exit') process.exit(0); continue; }
        if (text === 'echo') c.write(5, f.id, f.payload);
        else if (text.startsWith('sized:')) c.write(5, f.id, Buffer.alloc(+text.slice(6), 'z'));
        else if (text === 'interleave') {
          c.write(3, 1, Buffer.from('before'));
          c.write(5, f.id + 1000, Buffer.from('other-id'));
          c.write(5, f.id, Buffer.from('reply'));
          c.write(3, 2, Buffer.from('after'));
        } else if (text === 'late') setTimeout(() => c.write(5, f.id, Buffer.from('late')), 300);
        else if (text === 'die') setTimeout(() => process.kill(process.pid, 'SIGKILL'), 100);  // main crashes
        else if (text === 'hostile') setTimeout(() => c.write(3, 0, Buffer.alloc(2000)), 50);
        else if (text === 'slow') setTimeout(() => c.write(5, f.id, Buffer.from('slow')), 1000);
        // 'never': no reply
      }
    }, noop, noop);
  }, noop);
  process.send('ready');
  return;
}

if (scenario === 'client') {
  const addr = process.argv[3];
  const which = process.argv[4];
  const c = binding.connect(addr, 2000);
  const log = [];
  let closeErr;
  c.start((chunks) => { for (const f of parseChunks(chunks)) log.push(`${f.kind}:${f.id}:${f.payload.toString()}`); },
    (err) => { closeErr = err; log.push('close:' + (err && err.code)); }, noop);
  c.ref();
  const report = (o) => { console.log(JSON.stringify(o)); };
  const t0 = Date.now();
  if (which === 'interleave') {
    const r = c.call(1, Buffer.from('interleave'), 2000, noop).toString();
    const sync = log.length;  // nothing delivered inside call()
    Promise.resolve().then(() => log.push('microtask'));
    setTimeout(() => { c.write(3, 0, Buffer.from('x')); report({ r, sync, log }); c.close(); }, 100);
  } else if (which === 'reply-into') {
    // A reply that fits the caller's buffer is copied there (its length returned); a larger one, or a buffer
    // that is not a Uint8Array, gives a Buffer of its own and leaves the caller's bytes alone.
    const into = Buffer.alloc(16, 0xee);
    const fits = c.call(1, Buffer.from('sized:16'), 2000, noop, into);
    const fitsBytes = into.toString('latin1');
    into.fill(0xee);
    const big = c.call(2, Buffer.from('sized:17'), 2000, noop, into);
    const untouched = into.every((b) => b === 0xee);
    const empty = c.call(3, Buffer.from('sized:0'), 2000, noop, into);
    const other = c.call(4, Buffer.from('sized:3'), 2000, noop, new Float64Array(4));
    const mixed = c.call(5, Buffer.from('interleave'), 2000, noop, into);
    const mixedBytes = into.toString('latin1', 0, typeof mixed === 'number' ? mixed : 0);
    setTimeout(() => {
      report({ fits, fitsBytes, big: Buffer.isBuffer(big) && big.toString(), untouched, empty,
        other: Buffer.isBuffer(other) && other.toString(), mixed, mixedBytes, log });
      c.close();
    }, 100);
  } else if (which === 'timeout') {
    let code;
    try { c.call(1, Buffer.from('late'), 100, noop); } catch (e) { code = e.code; }
    const ms = Date.now() - t0;
    const r2 = c.call(2, Buffer.from('echo'), 2000, noop).toString();
    setTimeout(() => { report({ code, ms, r2, log }); c.close(); }, 500);
  } else if (which === 'die') {
    let code;
    try { c.call(1, Buffer.from('die'), 0, noop); } catch (e) { code = e.code; }
    const ms = Date.now() - t0;
    // Until onClose runs, write() drops frames quietly (returns 0); once closed, it throws.
    const w = c.write(3, 0, null);
    setTimeout(() => {
      let code2;
      try { c.write(3, 0, null); } catch (e) { code2 = e.code; }
      report({ code, w, code2, ms, log });
    }, 50);
  } else if (which === 'hostile') {
    c.maxFrameSize = 1000;
    let code;
    try { c.call(1, Buffer.from('hostile'), 0, noop); } catch (e) { code = e.code; }
    setTimeout(() => report({ code, log }), 50);
  } else if (which === 'alive-throws') {
    let n = 0, msg;
    try { c.call(1, Buffer.from('never'), 0, () => { if (++n === 3) throw new Error('stop'); }); } catch (e) { msg = e.message; }
    const ms = Date.now() - t0;
    report({ msg, n, ms });
    c.close();
  } else if (which === 'alive-closes') {
    let code;
    try { c.call(1, Buffer.from('never'), 0, () => c.close()); } catch (e) { code = e.code; }
    setTimeout(() => report({ code, log }), 50);
  } else if (which === 'eintr') {
    // Under --cpu-prof the JS thread gets SIGPROF every 100 µs: poll() and read() see EINTR constantly.
    const r = c.call(1, Buffer.from('slow'), 5000, noop).toString();
    let ok = 0;
    for (let i = 0; i < 200; i++) if (c.call(i + 2, Buffer.from('echo'), 5000, noop).toString() === 'echo') ok++;
    report({ r, ms: Date.now() - t0, ok });
    c.close();
  } else if (which === 'many-during-call') {
    c.write(3, 0, Buffer.from('count:20000'));
    const r = c.call(1, Buffer.from('echo'), 5000, noop).toString();
    setTimeout(() => {
      const ms = log.filter((l) => l.startsWith('3:'));
      const inOrder = ms.every((l, i) => l === `3:${i}:m${i}`);
      report({ r, n: ms.length, inOrder });
      c.close();
    }, 300);
  } else if (which === 'exit-flush') {
    const big = Buffer.alloc(64 * 1024 * 1024, 3);
    c.write(3, 7, big);
    const left = c.flush(10000);
    c.write(4, 9, Buffer.from('exit'));
    c.flush(1000);
    report({ left });
    process.exit(0);
  }
  return;
}

async function run(name, extraArgs = []) {
  const cwd = fs.mkdtempSync('/tmp/iwn-prof-');  // --cpu-prof writes its profile here
  const r = spawnSync(process.execPath, [...extraArgs, __filename, 'client', addr, name], { timeout: 60000, maxBuffer: 256 * 1024 * 1024, encoding: 'utf8', cwd });
  fs.rmSync(cwd, { recursive: true, force: true });
  if (childStatus(r.status, r.stderr) !== 0) throw new Error(`${name}: exit ${r.status} ${r.signal} ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

const addr = tmpSock();
let server;
async function startServer() {
  server = fork(__filename, ['server', addr]);
  await new Promise((r) => server.once('message', r));
}

async function main() {
  await startServer();
  const results = {};
  let o = await run('interleave');
  assert.strictEqual(o.r, 'reply');
  assert.strictEqual(o.sync, 0);
  // Delivered asynchronously: after the current task and its microtasks.
  assert.deepStrictEqual(o.log, ['microtask', '3:1:before', '5:1001:other-id', '3:2:after']);

  o = await run('reply-into');
  assert.deepStrictEqual(o, { fits: 16, fitsBytes: 'z'.repeat(16), big: 'z'.repeat(17), untouched: true, empty: 0,
    other: 'zzz', mixed: 5, mixedBytes: 'reply', log: ['3:1:before', '5:1005:other-id', '3:2:after'] });

  o = await run('timeout');
  assert.strictEqual(o.code, 'ERR_IPC_TIMEOUT');
  assert.ok(o.ms >= 95 && o.ms < 200, 'timeout ms ' + o.ms);
  assert.strictEqual(o.r2, 'echo');
  assert.deepStrictEqual(o.log, ['5:1:late']);  // the late reply is just another frame
  results.timeout_ms = o.ms;

  o = await run('hostile');
  assert.strictEqual(o.code, 'ERR_IPC_DISCONNECTED');
  assert.deepStrictEqual(o.log, ['close:ERR_IPC_FRAME_TOO_LARGE']);

  o = await run('alive-throws');
  assert.strictEqual(o.msg, 'stop');
  assert.strictEqual(o.n, 3);
  assert.ok(o.ms >= 55 && o.ms < 150, 'slices ' + o.ms);

  o = await run('alive-closes');
  assert.strictEqual(o.code, 'ERR_IPC_DISCONNECTED');
  assert.deepStrictEqual(o.log, ['close:null']);

  o = await run('many-during-call');
  assert.deepStrictEqual(o, { r: 'echo', n: 20000, inOrder: true });

  o = await run('eintr', ['--cpu-prof', '--cpu-prof-interval', '100']);
  assert.strictEqual(o.r, 'slow');
  assert.strictEqual(o.ok, 200);
  results.eintr_ms = o.ms;

  // exit-flush: the server must receive all 64 MiB before the 'exit' SYNC frame ends it.
  {
    const received = [];
    const s2addr = addr + '.flush';
    const s2 = binding.listen(s2addr, 8, 0o600, (c) => {
      c.start((chunks) => { for (const f of parseChunks(chunks)) received.push([f.kind, f.payload.length]); }, noop, noop);
    }, noop);
    // Asynchronously: this process must keep reading while the child flushes.
    const child = await new Promise((resolve) => {
      const p = require('node:child_process').spawn(process.execPath, [__filename, 'client', s2addr, 'exit-flush']);
      let stdout = '', stderr = '';
      p.stdout.on('data', (d) => { stdout += d; });
      p.stderr.on('data', (d) => { stderr += d; });
      p.on('exit', (status) => resolve({ status, stdout, stderr }));
    });
    assert.strictEqual(childStatus(child.status, child.stderr), 0, child.stderr);
    const t = Date.now();
    while (received.length < 2 && Date.now() - t < 5000) await new Promise((r) => setTimeout(r, 10));
    assert.deepStrictEqual(received, [[3, 64 * 1024 * 1024], [4, 4]]);
    assert.deepStrictEqual(JSON.parse(child.stdout), { left: 0 });
    s2.close();
    assert.ok(!fs.existsSync(s2addr) && !fs.existsSync(s2addr + '.lock'), 'close() removes the socket and lock files');
  }

  // Last: the server dies while a call waits (the server process exits).
  o = await run('die');
  assert.strictEqual(o.code, 'ERR_IPC_DISCONNECTED');
  assert.strictEqual(o.w, 0);
  assert.strictEqual(o.code2, 'ERR_IPC_DISCONNECTED');
  assert.ok(o.ms < 300, 'die ms ' + o.ms);  // server exits 100 ms after the request
  assert.deepStrictEqual(o.log, ['close:null']);
  results.disconnect_ms = o.ms;

  fs.rmSync(addr, { force: true });
  console.log(JSON.stringify({ test: 'call', ok: true, ...results }));
}
main().catch((e) => { console.error(e); server && server.kill(); process.exit(1); });
