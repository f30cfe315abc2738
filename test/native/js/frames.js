'use strict';
// Large frames, maxFrameSize, malformed frames, backpressure/drain, ordering around call(), closing from
// inside callbacks. One process: both ends in the same event loop (call() is tested against a child in
// e2e.js/peer.js, since it blocks this thread).
const assert = require('node:assert');
const fs = require('node:fs');
const net = require('node:net');
const { binding, parseChunks, tmpSock } = require('./common');

const addr = tmpSock();
const accepted = [];
let onAccept = null;
const server = binding.listen(addr, 64, 0o600, (c) => { accepted.push(c); if (onAccept) onAccept(c); }, (e) => { throw e; });
const tick = () => new Promise((r) => setImmediate(r));
const until = async (cond, ms = 60000) => { const t = Date.now(); while (!cond()) { if (Date.now() - t > ms) throw new Error('timeout'); await new Promise((r) => setTimeout(r, 2)); } };

function collector(conn) {
  const st = { frames: [], calls: 0, closed: undefined, drains: 0, chunkSizes: [] };
  conn.start((chunks) => { st.calls++; for (const c of chunks) st.chunkSizes.push(c.length); for (const f of parseChunks(chunks)) st.frames.push(f); },
    (err) => { assert.strictEqual(st.closed, undefined, 'onClose twice'); st.closed = err; },
    () => { st.drains++; });
  return st;
}

async function pair() {
  const n = accepted.length;
  const c = binding.connect(addr, 1000);
  await until(() => accepted.length > n);
  return [c, accepted[accepted.length - 1]];
}

async function main() {
  // Large frames both ways, and many small ones coalesced.
  {
    const [a, b] = await pair();
    const sa = collector(a), sb = collector(b);
    const big = Buffer.alloc(32 * 1024 * 1024, 7);  // far above the 64 KiB large-frame threshold
    big[12345] = 1;
    const left = a.write(3, 1, big);
    assert.ok(left > 0 && a.bufferedAmount === left);
    for (let i = 0; i < 1000; i++) b.write(3, i, Buffer.from('small' + i));
    b.write(3, 99, big);
    await until(() => sb.frames.length === 1 && sa.frames.length === 1001);
    assert.ok(sb.frames[0].payload.equals(big));
    for (let i = 0; i < 1000; i++) assert.strictEqual(sa.frames[i].payload.toString(), 'small' + i);
    assert.ok(sa.frames[1000].payload.equals(big));
    assert.ok(sa.calls < 100, 'small frames are coalesced: ' + sa.calls);
    await until(() => sa.drains === 1 && sb.drains === 1);
    assert.strictEqual(a.bufferedAmount, 0);
    a.close(); b.close();
    await until(() => sa.closed !== undefined && sb.closed !== undefined);
    assert.strictEqual(sa.closed, null);
    assert.strictEqual(sb.closed, null);
  }
  // maxFrameSize: an oversized frame closes that connection only; frames before it still arrive.
  {
    const [a, b] = await pair();
    const [c, d] = await pair();
    const sb = collector(b), sa = collector(a), sd = collector(d); collector(c);
    b.maxFrameSize = 1000;
    a.write(3, 1, Buffer.alloc(10));
    a.write(3, 2, Buffer.alloc(996));
    await until(() => sb.closed !== undefined && sa.closed !== undefined);
    assert.strictEqual(sb.frames.length, 1);
    assert.strictEqual(sb.closed.code, 'ERR_IPC_FRAME_TOO_LARGE');
    assert.strictEqual(sb.closed.size, 1001);
    assert.strictEqual(sa.closed, null);  // the peer sees a clean EOF
    c.write(3, 5, Buffer.from('still fine'));
    await until(() => sd.frames.length === 1);
    c.close(); d.close();
  }
  // Malformed frame from a raw socket; a header split at every byte arrives intact.
  {
    const n = accepted.length;
    const raw = net.connect(addr);
    await until(() => accepted.length > n);
    const b = accepted[accepted.length - 1];
    const sb = collector(b);
    const frame = Buffer.from([10, 0, 0, 0, 3, 1, 0, 0, 0, 65, 66, 67, 68, 69]);
    for (const byte of frame) { raw.write(Buffer.from([byte])); await new Promise((r) => setTimeout(r, 2)); }
    raw.write(Buffer.from([2, 0, 0, 0, 3, 0]));
    await until(() => sb.closed !== undefined);
    assert.strictEqual(sb.frames.length, 1);
    assert.strictEqual(sb.frames[0].payload.toString(), 'ABCDE');
    assert.strictEqual(sb.closed.code, 'ERR_IPC_BAD_FRAME');
    raw.destroy();
  }
  // Backpressure: the peer does not read (not started); writes queue, bufferedAmount grows, drain later.
  {
    const [a, b] = await pair();
    const sa = collector(a);
    const chunk = Buffer.alloc(256 * 1024, 1);
    let buffered = 0;
    for (let i = 0; i < 64; i++) buffered = a.write(3, i, chunk);  // 16 MiB
    assert.ok(buffered > 8 * 1024 * 1024, 'buffered ' + buffered);
    await new Promise((r) => setTimeout(r, 50));
    assert.strictEqual(sa.drains, 0);
    const sb = collector(b);
    await until(() => sb.frames.length === 64 && sa.drains === 1);
    assert.strictEqual(a.bufferedAmount, 0);
    // end(): queued data is flushed, then the connection closes.
    for (let i = 0; i < 16; i++) a.write(3, i, chunk);
    a.end();
    assert.throws(() => a.write(3, 0, null), { code: 'ERR_IPC_DISCONNECTED' });
    await until(() => sb.frames.length === 80 && sb.closed !== undefined && sa.closed !== undefined);
    assert.strictEqual(sb.closed, null);
    b.close();
  }
  // Closing from inside onFrames: no more callbacks, onClose(null) once, asynchronously.
  {
    const [a, b] = await pair();
    let frames = 0, closes = 0, closedSync = false;
    b.start(() => { frames++; b.close(); b.close(); closedSync = closes === 0; }, (err) => { closes++; assert.strictEqual(err, null); }, () => {});
    collector(a);
    for (let i = 0; i < 100; i++) a.write(3, i, Buffer.alloc(100000));
    await until(() => closes === 1);
    await new Promise((r) => setTimeout(r, 20));
    assert.strictEqual(frames, 1);
    assert.ok(closedSync);
    a.close();
  }
  // The peer closes while we keep writing: EPIPE is not the close reason, the orderly EOF is (null),
  // whatever the timing; writes between the EPIPE and onClose are dropped without throwing.
  {
    const [a, b] = await pair();
    const sb = collector(b);
    collector(a);
    a.close();
    let threw = null;
    for (let i = 0; i < 50 && sb.closed === undefined; i++) {
      try { b.write(3, i, Buffer.alloc(100000)); } catch (e) { threw = e; break; }
      await new Promise((r) => setTimeout(r, 1));
    }
    await until(() => sb.closed !== undefined);
    assert.strictEqual(sb.closed, null);
    assert.ok(threw === null || threw.code === 'ERR_IPC_DISCONNECTED');
  }
  // Unref'd by default: an idle started connection does not hold the loop (checked in a child).
  {
    const { execFileSync } = require('node:child_process');
    const t0 = Date.now();
    execFileSync(process.execPath, ['-e', `
      const { binding } = require(${JSON.stringify(require.resolve('./common'))});
      const s = binding.listen(${JSON.stringify(addr + '.2')}, 8, 0o600, (c) => c.start(() => {}, () => {}, () => {}), () => {});
      const c = binding.connect(${JSON.stringify(addr + '.2')}, 100);
      c.start(() => {}, () => {}, () => {});
      setTimeout(() => { s.unref(); }, 10);`], { timeout: 5000 });
    assert.ok(Date.now() - t0 < 4000);
    // The child exited with its server still open: the addon's teardown removed its files.
    assert.ok(!fs.existsSync(addr + '.2') && !fs.existsSync(addr + '.2.lock'), 'exit removes the socket and lock files');
  }
  server.close();
  for (const c of accepted) c.close();
  assert.ok(!fs.existsSync(addr) && !fs.existsSync(addr + '.lock'), 'close() removes the socket and lock files');
  console.log(JSON.stringify({ test: 'frames', ok: true }));
}
main().catch((e) => { console.error(e); process.exit(1); });
