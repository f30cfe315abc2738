/**
 * Large byte arrays through the per-connection shared-memory pools, between real processes: every direction
 * (send, invoke arguments and results, sendSync requests and replies), the socket fallback when the receiver
 * holds every block, a receiver that never lets go, copied-buffer mode, `shm: false`, worker threads, and
 * mappings/descriptors back to where they were after close.
 */
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { describe, expect, test } from 'vitest';
import { exitsCleanly, ipcwire, makeMain, runNode, sha256, useHarness, waitUntil } from './helpers';
import { captureHandshake, frame, rawClient } from './helpers/wire';

useHarness();

const linux = process.platform === 'linux';
v8.setFlagsFromString('--expose-gc');
const collect = vm.runInNewContext('gc') as () => void;
const shmHere = process.platform !== 'win32' && ipcwire().IpcMain !== undefined;

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** The child's own helper: the same pattern, to compare hashes without shipping bytes over stdout. */
const CHILD_BYTES = `const bytes = (n, seed) => { const b = Buffer.allocUnsafe(n); for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff; return b; };`;

/**
 * Makes main's `link` rewrite, with `corrupt(payload)`, every reference to the renderer's own pool it writes (an
 * SHM_BLOB frame, kind 14, whose segment is 2): the hostile main of the tests below.
 */
function corruptOwnPoolReferences(link: any, corrupt: (payload: Buffer) => void): void {
  const write = link.writeFrame;
  link.writeFrame = function (kind: number, id: number, payload: Buffer) {
    if (kind === 14 && payload && payload.length === 16 && payload.readUInt32LE(0) === 2) {
      payload = Buffer.from(payload);
      corrupt(payload);
    }
    return write.call(this, kind, id, payload);
  };
}

/** Rewrites of such a reference's payload (offset at byte 8, length at byte 12) that name no block in use. */
const BOGUS_OWN_REF = {
  outside: (p: Buffer) => p.writeUInt32LE(0xfffffff0, 8), // outside the segment
  noBlock: (p: Buffer) => p.writeUInt32LE(p.readUInt32LE(8) + (8 << 20), 8), // inside it, but no block there
  pastBlock: (p: Buffer) => p.writeUInt32LE(p.readUInt32LE(12) + 4096, 12), // runs past the end of its block
};

describe.skipIf(!shmHere)('shared-memory pools', () => {
  test('every direction goes through the pools, sendSync replies included, byte for byte', { timeout: 60_000 }, async () => {
    const main = makeMain();
    const sizes = [64 * 1024, 1 << 20, 5 << 20];
    const got: Record<string, string[]> = { send: [], sync: [], invoke: [] };
    let peer: any;
    main.on('up', (e: any, ...bufs: Buffer[]) => {
      peer = e.sender;
      got.send.push(...bufs.map(sha256));
      e.reply('down', ...sizes.map((n, i) => bytes(n, 10 + i)));
    });
    main.on('sync', (e: any, buf: Buffer) => {
      got.sync.push(sha256(buf));
      e.returnValue = { tag: 'sync', bufs: sizes.map((n, i) => bytes(n, 20 + i)) };
    });
    main.handle('inv', (_e: any, buf: Buffer) => {
      got.invoke.push(sha256(buf));
      return bytes(3 << 20, 30);
    });
    const child = runNode(
      `${CHILD_BYTES}
      const r = ipcwire.ipcRenderer;
      r.handle('back', (_e, buf) => ({ n: buf.length, h: sha256(buf), reply: bytes(2 << 20, 40) }));
      const down = new Promise((resolve) => r.once('down', (_e, ...bufs) => resolve(bufs.map(sha256))));
      // main answers the handshake asynchronously: wait for it so that the first messages already use the pool
      await new Promise((resolve) => r.invoke('noop').then(resolve, resolve));
      r.send('up', ...${JSON.stringify(sizes)}.map((n, i) => bytes(n, i)));
      const pushed = await down;
      const reply = r.sendSync('sync', bytes(1 << 20, 50));
      const invoked = sha256(await r.invoke('inv', bytes(2 << 20, 60)));
      out('r', { pushed, sync: reply.bufs.map(sha256), tag: reply.tag, invoked, stats: r.wire._sharedStats() });
      await new Promise((resolve) => r.once('done', resolve));
      r.close();
    `,
      { address: main.address },
    );
    const r = await child.msg('r', 45_000);
    const back = await peer.invoke('back', bytes(4 << 20, 70));
    expect(back.n).toBe(4 << 20);
    expect(back.h).toBe(sha256(bytes(4 << 20, 70)));
    expect(sha256(back.reply)).toBe(sha256(bytes(2 << 20, 40)));
    const mainStats = peer.link._sharedStats();
    peer.send('done');
    await exitsCleanly(child);

    expect(got.send).toEqual(sizes.map((n, i) => sha256(bytes(n, i))));
    expect(r.pushed).toEqual(sizes.map((n, i) => sha256(bytes(n, 10 + i))));
    expect(got.sync).toEqual([sha256(bytes(1 << 20, 50))]);
    expect(r.sync).toEqual(sizes.map((n, i) => sha256(bytes(n, 20 + i))));
    expect(r.tag).toBe('sync');
    expect(r.invoked).toBe(sha256(bytes(3 << 20, 30)));
    expect(got.invoke).toEqual([sha256(bytes(2 << 20, 60))]);
    // Renderer → main, when it reported: 3 sent, 1 sendSync argument, 1 invoke argument (the invoke result to
    // main's call came later).
    expect(r.stats).toMatchObject({ agreed: true, sent: 5, fellBack: 0 });
    // Main → renderer: 3 pushed, 3 in the sendSync reply, 1 invoke result, 1 invoke argument.
    expect(mainStats).toMatchObject({ agreed: true, sent: 8, fellBack: 0 });
  });

  test('a receiver holding every block makes the sender fall back to the socket, bounded by its pool; nothing is lost', { timeout: 60_000 }, async () => {
    // Main's pool holds 1 MiB of data: exactly four 256 KiB arrays (its header of counters comes on top); the
    // renderer keeps every Buffer it gets.
    const main = makeMain({ shm: { poolSize: 1 << 20 } });
    let peer: any;
    main.on('ready', (e: any) => {
      peer = e.sender;
      for (let i = 0; i < 12; i++) e.reply('chunk', bytes(256 * 1024, i));
      e.reply('end');
    });
    const child = runNode(
      `const r = ipcwire.ipcRenderer;
      const kept = [];
      r.on('chunk', (_e, buf) => kept.push(buf));
      await new Promise((resolve) => r.invoke('noop').then(resolve, resolve));
      r.send('ready');
      await new Promise((resolve) => r.once('end', resolve));
      out('r', { hashes: kept.map(sha256) });
      await new Promise((resolve) => r.once('done', resolve));
      out('still', kept.length);
      r.close();
    `,
      { address: main.address },
    );
    const r = await child.msg('r', 45_000);
    expect(r.hashes).toEqual(Array.from({ length: 12 }, (_, i) => sha256(bytes(256 * 1024, i))));
    const stats = peer.link._sharedStats();
    expect(stats.sent).toBe(4);
    expect(stats.fellBack).toBe(12 - stats.sent);
    expect(stats.bytesInUse).toBeLessThanOrEqual(1 << 20);
    // More while the renderer still holds them: all through the socket, the pool does not grow.
    peer.send('chunk', bytes(256 * 1024, 99));
    expect(peer.link._sharedStats().fellBack).toBe(12 - stats.sent + 1);
    peer.send('done');
    expect(await child.msg('still')).toBe(13);
    await exitsCleanly(child);
  });

  test('blocks come back once the receiver drops its Buffers (the pool is reused, no fallback)', { timeout: 60_000 }, async () => {
    const main = makeMain({ shm: { poolSize: 4 << 20 } });
    let count = 0;
    main.on('chunk', (_e: any, buf: Buffer) => {
      if (buf.length === 1 << 20) count++;
    });
    const child = runNode(
      `${CHILD_BYTES}
      const r = ipcwire.ipcRenderer;
      await new Promise((resolve) => r.invoke('noop').then(resolve, resolve));
      const buf = bytes(1 << 20, 1);
      // 64 MiB through a 4 MiB pool: main drops each Buffer, its finalizer gives the block back.
      for (let i = 0; i < 64; i++) {
        r.send('chunk', buf);
        await r.invoke('noop').catch(() => {});
      }
      out('r', r.wire._sharedStats());
      r.close();
    `,
      { address: main.address },
    );
    // main (this process) must collect for the finalizers to run; a busy process does anyway, this makes it prompt.
    const timer = setInterval(collect, 5);
    try {
      const r = await child.msg('r', 45_000);
      await exitsCleanly(child);
      expect(count).toBe(64);
      expect(r.agreed).toBe(true);
      expect(r.sent + r.fellBack).toBe(64);
      // Blocks came back: far more than the 4 that fit at once went through the pool.
      expect(r.sent).toBeGreaterThan(4);
    } finally {
      clearInterval(timer);
    }
  });

  test('a receiver that only reads gives blocks back before its views hold the pool, without a full collection; bytes in order', { timeout: 60_000 }, async () => {
    // 256 MiB through main's default 64 MiB pool. Main never lets the renderer's views hold more than 48 MiB: it
    // waits for blocks to come back first. The renderer only reads and checks (it allocates nothing that would
    // prompt V8 to collect) and never calls gc(): its blocks come back in the scavenges that its own view-making
    // prompts every 32 MiB or so. Left to V8, its views would be collected only once their external memory grew
    // by 64 MiB, which this sender never lets happen: it would wait for ever.
    const main = makeMain();
    const count = 256;
    let peer: any;
    let stuck: Error | null = null;
    main.on('ready', async (e: any) => {
      peer = e.sender;
      const buf = bytes(1 << 20, 0);
      try {
        for (let i = 0; i < count; i++) {
          await waitUntil(() => peer.link._sharedStats().bytesInUse < 48 << 20, 15_000, 'blocks back from the renderer');
          buf.writeUInt32LE(i, 0); // sending copies it into the pool: free to change after
          peer.send('chunk', i, buf);
        }
      } catch (err) {
        stuck = err as Error;
      }
      peer.send('end');
    });
    const child = runNode(
      `const r = ipcwire.ipcRenderer;
      const bad = [];
      let expected = 0;
      // Its number in the first 4 bytes, the pattern (k * 31) & 0xff after them: checked every 4093 bytes.
      const intact = (buf, i) => {
        if (buf.length !== 1 << 20 || buf.readUInt32LE(0) !== i) return false;
        for (let k = 4; k < buf.length; k += 4093) if (buf[k] !== ((k * 31) & 0xff)) return false;
        return buf[buf.length - 1] === (((buf.length - 1) * 31) & 0xff);
      };
      r.on('chunk', (_e, i, buf) => {
        if (i !== expected++ || !intact(buf, i)) bad.push(i);
      });
      await new Promise((resolve) => r.invoke('noop').then(resolve, resolve));
      r.send('ready');
      await new Promise((resolve) => r.once('end', resolve));
      out('r', { got: expected, bad });
      r.close();
    `,
      { address: main.address },
    );
    const r = await child.msg('r', 45_000);
    await exitsCleanly(child);
    expect(stuck).toBeNull();
    expect(r).toEqual({ got: count, bad: [] });
    expect(peer.link._sharedStats()).toMatchObject({ sent: count, fellBack: 0 });
  });

  test('releaseShared: a received view gives its block back at once and reads as empty; anything else is left as it is', { timeout: 60_000 }, async () => {
    // 30 Buffers of 3 and 17 MiB (17 MiB: a view whose bytes V8 does not count) through a 40 MiB pool. Main sends
    // the next one only once every block is back. The renderer releases each one and allocates next to nothing, so
    // nothing else would give them back: left to V8, the views would wait for a collection that never comes.
    const main = makeMain({ shm: { poolSize: 40 << 20 } });
    const sizes = Array.from({ length: 30 }, (_, i) => (i % 3 === 2 ? 17 : 3) << 20);
    let peer: any;
    let stuck: Error | null = null;
    main.on('ready', async (e: any) => {
      peer = e.sender;
      try {
        for (let i = 0; i < sizes.length; i++) {
          await waitUntil(() => peer.link._sharedStats().bytesInUse === 0, 10_000, `block ${i - 1} back from the renderer`);
          peer.send('chunk', i, bytes(sizes[i], i));
        }
      } catch (err) {
        stuck = err as Error;
      }
      peer.send('end');
    });
    const child = runNode(
      `${CHILD_BYTES}
      const r = ipcwire.ipcRenderer;
      const { releaseShared } = ipcwire;
      const seen = [];
      r.on('chunk', (_e, i, buf) => {
        const sub = buf.subarray(10, 20);
        const intact = buf.equals(bytes(buf.length, i));
        const released = releaseShared(buf);
        seen.push({ i, n: buf.length === 0 ? 0 : -1, intact, released, sub: sub.length, again: releaseShared(buf) });
      });
      await new Promise((resolve) => r.invoke('noop').then(resolve, resolve));
      const own = r.allocShared(1 << 20);
      const plain = Buffer.from('abc');
      const others = [releaseShared(plain), releaseShared(own), releaseShared(new Uint8Array(8).buffer), releaseShared(new DataView(new ArrayBuffer(4)))];
      let thrown = null;
      try { releaseShared('bytes'); } catch (err) { thrown = { type: err.constructor.name, code: err.code }; }
      r.send('ready');
      await new Promise((resolve) => r.once('end', resolve));
      out('r', { seen, others, intactAfter: plain.toString() === 'abc' && own.length === 1 << 20, thrown });
      r.close();
    `,
      { address: main.address },
    );
    const r = await child.msg('r', 45_000);
    await exitsCleanly(child);
    expect(stuck).toBeNull();
    expect(r.seen).toEqual(sizes.map((_, i) => ({ i, n: 0, intact: true, released: true, sub: 0, again: false })));
    expect(r.others).toEqual([false, false, false, false]);
    expect(r.intactAfter).toBe(true);
    expect(r.thrown).toEqual({ type: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    expect(peer.link._sharedStats()).toMatchObject({ sent: sizes.length, fellBack: 0, bytesInUse: 0 });
  });

  test('a message whose bytes went through the pool is written at once, not at the end of the sender\'s turn', { timeout: 60_000 }, async () => {
    // Small messages after the first of a turn wait in a batch for the turn to end. One that holds a pool block
    // must not: its block comes back only once the receiver has read it. The renderer sends a small message, then
    // a 2 MiB one, then blocks its thread for a second without yielding: main must get the 2 MiB one meanwhile.
    const main = makeMain();
    const at: Record<string, number> = {};
    main.on('small', () => {
      at.small = Date.now();
    });
    main.on('big', (_e: any, buf: Buffer) => {
      at.big = Date.now();
      at.bigLength = buf.length;
    });
    const child = runNode(
      `const r = ipcwire.ipcRenderer;
      await new Promise((resolve) => r.invoke('noop').then(resolve, resolve));
      const big = Buffer.alloc(2 << 20, 7);
      r.send('small', 1);
      r.send('big', big);
      const stats = r.wire._sharedStats();
      const sent = Date.now();
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
      out('r', { sent, woke: Date.now(), stats });
      await new Promise((resolve) => setTimeout(resolve, 100));
      r.close();
    `,
      { address: main.address },
    );
    const r = await child.msg('r', 45_000);
    await exitsCleanly(child);
    expect(r.stats).toMatchObject({ agreed: true, sent: 1, fellBack: 0 });
    expect(at.bigLength).toBe(2 << 20);
    expect(at.big).toBeGreaterThanOrEqual(r.sent - 50);
    expect(at.big).toBeLessThan(r.woke);
  });

  test('copied-buffer mode: the receiver copies out and gives the block back at once', { timeout: 60_000 }, async () => {
    const main = makeMain({ shm: { poolSize: 2 << 20 } });
    let peer: any;
    let sent = 0;
    // One at a time: each is sent once the renderer has the previous one (and keeps it).
    main.on('ready', (e: any) => {
      peer = e.sender;
      e.reply('chunk', bytes(1 << 20, sent++));
    });
    main.on('ack', (e: any) => (sent < 10 ? e.reply('chunk', bytes(1 << 20, sent++)) : e.reply('end')));
    const child = runNode(
      `const r = ipcwire.ipcRenderer;
      const kept = [];
      r.on('chunk', (_e, buf) => {
        kept.push(buf);
        r.send('ack');
      });
      await new Promise((resolve) => r.invoke('noop').then(resolve, resolve));
      r.send('ready');
      await new Promise((resolve) => r.once('end', resolve));
      out('r', { hashes: kept.map(sha256) });
      await new Promise((resolve) => r.once('done', resolve));
      r.close();
    `,
      { address: main.address, env: { IPCWIRE_COPY_BUFFERS: '1' } },
    );
    const r = await child.msg('r', 45_000);
    expect(r.hashes).toEqual(Array.from({ length: 10 }, (_, i) => sha256(bytes(1 << 20, i))));
    // The renderer holds all ten copies; the blocks were released as each arrived.
    await waitUntil(() => peer.link._sharedStats().blocks === 0, 10_000, 'blocks released');
    const stats = peer.link._sharedStats();
    expect(stats.fellBack).toBe(0);
    expect(stats.sent).toBe(10);
    peer.send('done');
    await exitsCleanly(child);
  });

  test('shm: false on either side keeps every byte on the socket', { timeout: 60_000 }, async () => {
    for (const [mainShm, rendererShm] of [[false, true], [true, false]]) {
      const main = makeMain({ shm: mainShm });
      let peer: any;
      let hash = '';
      main.on('up', (e: any, buf: Buffer) => {
        peer = e.sender;
        hash = sha256(buf);
        e.reply('down', bytes(1 << 20, 2));
      });
      const child = runNode(
        `${CHILD_BYTES}
        const r = new ipcwire.IpcRenderer({ shm: ${rendererShm} });
        await new Promise((resolve) => r.invoke('noop').then(resolve, resolve));
        const down = new Promise((resolve) => r.once('down', (_e, buf) => resolve(sha256(buf))));
        r.send('up', bytes(1 << 20, 1));
        out('r', { down: await down, stats: r.wire._sharedStats() });
        r.close();
      `,
        { address: main.address },
      );
      const r = await child.msg('r', 45_000);
      await exitsCleanly(child);
      expect(hash).toBe(sha256(bytes(1 << 20, 1)));
      expect(r.down).toBe(sha256(bytes(1 << 20, 2)));
      expect(r.stats).toMatchObject({ agreed: false, sent: 0 });
      expect(peer.link._sharedStats()).toMatchObject({ agreed: false, sent: 0 });
      main.close();
    }
  });

  test('allocShared: a Buffer inside the pool is sent without copying, and writes after sending show in that payload only', { timeout: 60_000 }, async () => {
    const main = makeMain();
    const seen: number[] = [];
    let held: Buffer | null = null;
    main.handle('take', (_e: any, buf: Buffer) => {
      held ??= buf;
      seen.push(buf[0], buf.length);
      return buf.length;
    });
    const child = runNode(
      `const r = ipcwire.ipcRenderer;
      await new Promise((resolve) => r.invoke('noop').then(resolve, resolve));
      const a = r.allocShared(8 << 20);
      a.fill(1);
      const before = r.wire._sharedStats();
      const n = await r.invoke('take', a);
      a[0] = 2; // after sending: main's Buffer of that message sees it
      await r.invoke('take', r.allocShared(100));
      out('r', { n, before, after: r.wire._sharedStats() });
      r.close();
    `,
      { address: main.address },
    );
    const r = await child.msg('r', 45_000);
    await exitsCleanly(child);
    expect(r.n).toBe(8 << 20);
    // 100 bytes are below the threshold: an inline byte array, not through the pool.
    expect(seen).toEqual([1, 8 << 20, seen[2], 100]);
    expect(r.after.sent - r.before.sent).toBe(1);
    expect(held![0]).toBe(2);
  });

  test('a renderer on a worker thread: sendSync arguments and replies through the pools', { timeout: 60_000 }, async () => {
    const main = makeMain();
    let peer: any;
    const args: number[] = [];
    main.on('sync', (e: any, n: number, arg: Buffer) => {
      peer = e.sender;
      args.push(arg[0], arg.length);
      e.returnValue = bytes(n, 5);
    });
    const child = runNode(
      `const { Worker } = require('node:worker_threads');
      const w = new Worker(require.resolve('./worker.cjs'), { workerData: { code: \`
        const r = ipcwire.ipcRenderer;
        const hashes = [];
        await r.invoke('noop').catch(() => {}); // main's handshake answer is read when the event loop turns
        for (let i = 0; i < 8; i++) hashes.push(sha256(r.sendSync('sync', 1 << 20, Buffer.alloc(1 << 20, i))));
        post('r', { hashes, stats: r.wire._sharedStats() });
        r.close();
      \` } });
      const got = await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
      await new Promise((resolve) => w.once('exit', resolve));
      out('r', got.tag === 'r' ? got.data : got);
    `,
      { address: main.address },
    );
    const r = await child.msg('r', 45_000);
    await exitsCleanly(child);
    expect(r.hashes).toEqual(Array(8).fill(sha256(bytes(1 << 20, 5))));
    expect(args).toEqual([0, 1, 2, 3, 4, 5, 6, 7].flatMap((i) => [i, 1 << 20]));
    expect(r.stats).toMatchObject({ agreed: true, sent: 8, fellBack: 0 });
    expect(peer.link._sharedStats()).toMatchObject({ agreed: true, sent: 8, fellBack: 0 });
  });

  test.skipIf(!linux)('after close, mappings and descriptors are back to where they were', { timeout: 60_000 }, async () => {
    const main = makeMain();
    main.on('sync', (e: any, buf: Buffer) => (e.returnValue = buf.length));
    main.on('push', (e: any) => e.reply('big', bytes(2 << 20, 1)));
    const child = runNode(
      `${CHILD_BYTES}
      const fs = require('node:fs');
      require('node:v8').setFlagsFromString('--expose-gc');
      const gc = require('node:vm').runInNewContext('gc');
      const maps = () => fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.includes('memfd:ipcwire')).length;
      const fds = () => fs.readdirSync('/proc/self/fd').length;
      const r = new ipcwire.IpcRenderer();
      const before = { maps: maps(), fds: fds() };
      r.connect();
      await new Promise((resolve) => r.invoke('noop').then(resolve, resolve));
      for (let i = 0; i < 5; i++) r.sendSync('sync', bytes(1 << 20, i));
      let big = await new Promise((resolve) => { r.once('big', (_e, b) => resolve(b)); r.send('push'); });
      const during = { maps: maps(), fds: fds() };
      big = null;
      r.close();
      for (let i = 0; i < 20 && maps() > before.maps; i++) { gc(); await new Promise((res) => setTimeout(res, 20)); }
      out('r', { before, during, after: { maps: maps(), fds: fds() } });
    `,
      { address: main.address },
    );
    const r = await child.msg('r', 45_000);
    await exitsCleanly(child);
    expect(r.during.maps).toBe(2); // its own pool and main's
    expect(r.after).toEqual(r.before);
  });

  test.skipIf(!linux)('a sendSync loop of 1 MiB and 16 MiB echoes that never yields: bytes intact, blocks back, no descriptor or mapping growth, memory bounded', { timeout: 90_000 }, async () => {
    // The renderer never turns its event loop inside the loop, so no Buffer finalizer runs there meanwhile: each
    // reply must be an ordinary Buffer, and main's reply block must be free again as soon as the call returns.
    const main = makeMain();
    let peer: any;
    let calls = 0;
    const replyBlocksAfterCall: number[] = [];
    main.on('echo', (e: any, buf: Buffer, copy: boolean) => {
      peer = e.sender;
      calls++;
      // What main's reply pool still holds from the previous call (given back by the renderer before it returned).
      replyBlocksAfterCall.push(peer.link._sharedStats().blocks);
      // Every other reply is main's own copy (through main's reply pool), the others the view itself (sent back
      // as a reference to the renderer's block).
      e.returnValue = [copy ? Buffer.from(buf) : buf];
    });
    const child = runNode(
      `${CHILD_BYTES}
      const fs = require('node:fs');
      const maps = () => fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.includes('memfd:ipcwire')).length;
      const fds = () => fs.readdirSync('/proc/self/fd').length;
      const r = ipcwire.ipcRenderer;
      await new Promise((resolve) => r.invoke('noop').then(resolve, resolve));
      r.sendSync('echo', bytes(1 << 20, 255), true); // both pools exist from here on
      const before = { maps: maps(), fds: fds(), rss: process.memoryUsage().rss };
      const bad = [];
      let maxRss = 0;
      const run = (size, count) => {
        for (let i = 0; i < count; i++) {
          const sent = bytes(size, i);
          const [back] = r.sendSync('echo', sent, i % 2 === 1);
          if (!Buffer.isBuffer(back) || !back.equals(sent)) bad.push(size + ':' + i);
          maxRss = Math.max(maxRss, process.memoryUsage().rss);
        }
      };
      run(1 << 20, 200);
      run(16 << 20, 12);
      run(1 << 20, 50);
      const after = { maps: maps(), fds: fds() };
      const stats = r.wire._sharedStats();
      r.handle('blocks', () => r.wire._sharedStats().blocks);
      // Under AddressSanitizer (the sanitizer CI step preloads it) freed memory waits in its quarantine (256 MiB).
      const asan = /libasan/.test(process.env.LD_PRELOAD || '');
      out('r', { bad, before, after, growth: maxRss - before.rss, stats, asan });
      await new Promise((resolve) => r.once('done', resolve));
      r.close();
    `,
      { address: main.address },
    );
    const r = await child.msg('r', 80_000);
    expect(r.bad).toEqual([]);
    expect(calls).toBe(1 + 200 + 12 + 50);
    // Each reply's block was back in main's pool before the next call reached main.
    expect(replyBlocksAfterCall.slice(1).every((n) => n === 0)).toBe(true);
    const mainStats = peer.link._sharedStats();
    expect(mainStats).toMatchObject({ agreed: true, blocks: 0, fellBack: 0 });
    // Main's copies went through its reply pool; its views went back as references, unless the renderer's pool was
    // full and the argument came through the socket (then main's reply pool carries it too).
    expect(mainStats.sent + mainStats.echoed).toBe(calls);
    expect(mainStats.sent).toBeGreaterThanOrEqual(1 + 100 + 6 + 25);
    expect(mainStats.echoed).toBeGreaterThan(0);
    expect(r.after).toEqual({ maps: r.before.maps, fds: r.before.fds });
    expect(r.before.maps).toBe(2); // the renderer's pool and main's reply pool, mapped once each
    // 263 calls moved 460 MiB each way; what stays resident is bounded by the pools and what the GC has not freed yet.
    expect(r.growth).toBeLessThan((320 + (r.asan ? 256 : 0)) * 1024 * 1024);
    // The renderer's blocks come back once main lets go of its views of them (collected, finalizers run).
    let held = -1;
    for (let i = 0; i < 100 && held !== 0; i++) {
      collect();
      await new Promise((resolve) => setTimeout(resolve, 20));
      held = await peer.invoke('blocks');
    }
    expect(held).toBe(0);
    peer.send('done');
    await exitsCleanly(child);
  });

  test.skipIf(!linux)('an echoed view travels back as a reference to the renderer\'s own block: bytes intact, no copy in main, either side may drop first', { timeout: 60_000 }, async () => {
    const main = makeMain();
    let peer: any;
    const kept: Buffer[] = [];
    main.on('echo', (e: any, buf: Buffer, keep: boolean, part: boolean) => {
      peer = e.sender;
      if (keep) kept.push(buf);
      e.returnValue = part ? [buf.subarray(1000, 1000 + 300 * 1024), buf] : [buf];
    });
    main.on('drop', (e: any) => {
      kept.length = 0;
      e.returnValue = true;
    });
    const child = runNode(
      `${CHILD_BYTES}
      const r = ipcwire.ipcRenderer;
      await new Promise((resolve) => r.invoke('noop').then(resolve, resolve));
      const sent = bytes(1 << 20, 7);
      const [a] = r.sendSync('echo', sent, false, false);
      const [part, whole] = r.sendSync('echo', sent, false, true);
      // Main keeps its view; the renderer drops its result at once.
      r.sendSync('echo', bytes(1 << 20, 8), true, false);
      // The renderer keeps its result (a copy: its own memory), main drops its view.
      const keptHere = r.sendSync('echo', bytes(1 << 20, 9), false, false)[0];
      const shared = r.allocShared(1 << 20);
      bytes(1 << 20, 10).copy(shared);
      const [zero] = r.sendSync('echo', shared, false, false);
      shared.fill(0); // the result is a copy: writing the block now changes nothing in it
      r.handle('blocks', () => r.wire._sharedStats().blocks);
      out('r', {
        a: a.equals(sent), part: part.equals(sent.subarray(1000, 1000 + 300 * 1024)), whole: whole.equals(sent),
        zero: zero.equals(bytes(1 << 20, 10)), notSame: a !== sent && a.buffer !== sent.buffer,
      });
      await new Promise((resolve) => r.once('check', resolve));
      out('kept', keptHere.equals(bytes(1 << 20, 9)) && shared.length === 1 << 20); // shared: still held until here
      await new Promise((resolve) => r.once('done', resolve));
      r.close();
    `,
      { address: main.address },
    );
    const r = await child.msg('r', 45_000);
    expect(r).toEqual({ a: true, part: true, whole: true, zero: true, notSame: true });
    // Six byte arrays went back, every one as a reference: main's reply pool was never used.
    expect(peer.link._sharedStats()).toMatchObject({ echoed: 6, sent: 0, fellBack: 0, blocks: 0 });
    const collected = async (want: (n: number) => boolean): Promise<number> => {
      let n = -1;
      for (let i = 0; i < 100; i++) {
        collect();
        await new Promise((resolve) => setTimeout(resolve, 20));
        n = await peer.invoke('blocks');
        if (want(n)) break;
      }
      return n;
    };
    // Main still holds the view it kept (and the allocShared Buffer is still the renderer's): those blocks stay.
    expect(await collected((n) => n <= 2)).toBe(2);
    peer.send('check');
    expect(await child.msg('kept', 10_000)).toBe(true);
    kept.length = 0;
    expect(await collected((n) => n <= 1)).toBeLessThanOrEqual(1);
    peer.send('done');
    await exitsCleanly(child);
  });

  test.skipIf(!linux)('a hostile reference to the renderer\'s own pool (not a block in use, or outside it) is ERR_IPC_BAD_FRAME', { timeout: 60_000 }, async () => {
    const main = makeMain();
    const bogus = [BOGUS_OWN_REF.outside, BOGUS_OWN_REF.noBlock, BOGUS_OWN_REF.pastBlock];
    let which = 0;
    main.on('echo', (e: any, buf: Buffer) => {
      corruptOwnPoolReferences(e.sender.link, bogus[which]);
      e.returnValue = [buf];
    });
    main.handle('still', () => 'here');
    for (which = 0; which < bogus.length; which++) {
      const child = runNode(
        `${CHILD_BYTES}
        const r = ipcwire.ipcRenderer;
        await new Promise((resolve) => r.invoke('noop').then(resolve, resolve));
        let code = null;
        try { r.sendSync('echo', bytes(1 << 20, 1)); } catch (err) { code = err.code; }
        out('r', code);
        r.close();
      `,
        { address: main.address },
      );
      expect(await child.msg('r', 45_000)).toBe('ERR_IPC_BAD_FRAME');
      await exitsCleanly(child);
    }
    // Main carries on with other renderers.
    const ok = runNode(`out('r', await ipcwire.ipcRenderer.invoke('still')); ipcwire.ipcRenderer.close();`, { address: main.address });
    expect(await ok.msg('r', 20_000)).toBe('here');
    await exitsCleanly(ok);
  });

  test.skipIf(!linux)('an invoke answer echoing its argument travels back as a reference to the renderer\'s own block; abandoned invokes let their blocks go', { timeout: 60_000 }, async () => {
    // The renderer holds the blocks of an invoke's arguments until it has read the answer, so main answers with
    // the place of a view of them (or of part of one) instead of copying it into its own pool. An invoke the
    // renderer abandons (a timeout: it sends a cancel) is still answered, with the abort, so that it lets go of its
    // blocks: twelve abandoned 8 MiB invokes through the default 64 MiB pool leave none held.
    const main = makeMain();
    let peer: any;
    main.handle('echo', (e: any, buf: Buffer, part: boolean) => {
      peer = e.sender;
      return part ? buf.subarray(1000, 1000 + 300 * 1024) : buf;
    });
    main.handle('late', async (_e: any, buf: Buffer) => {
      await new Promise((resolve) => setTimeout(resolve, 200));
      return buf;
    });
    main.handle('collect', () => {
      collect();
      return true;
    });
    const child = runNode(
      `${CHILD_BYTES}
      require('node:v8').setFlagsFromString('--expose-gc');
      const gc = require('node:vm').runInNewContext('gc');
      const r = ipcwire.ipcRenderer;
      await new Promise((resolve) => r.invoke('noop').then(resolve, resolve));
      const sent = bytes(1 << 20, 7);
      let a = await r.invoke('echo', sent, false);
      let part = await r.invoke('echo', sent, true);
      const res = { a: a.equals(sent), part: part.equals(sent.subarray(1000, 1000 + 300 * 1024)), notSame: a !== sent && a.buffer !== sent.buffer };
      const codes = new Set();
      for (let i = 0; i < 12; i++) {
        try { await r.invokeWith({ timeout: 30 }, 'late', bytes(8 << 20, i)); codes.add('answered'); } catch (err) { codes.add(err.code); }
      }
      let after = await r.invoke('echo', bytes(2 << 20, 9), false);
      res.after = after.equals(bytes(2 << 20, 9));
      res.codes = [...codes];
      a = part = after = null;
      let blocks = -1;
      for (let i = 0; i < 100 && blocks !== 0; i++) {
        gc();
        await r.invoke('collect');
        await new Promise((resolve) => setTimeout(resolve, 20));
        blocks = r.wire._sharedStats().blocks;
      }
      res.blocks = blocks;
      res.fellBack = r.wire._sharedStats().fellBack;
      res.connected = r.connected;
      out('r', res);
      await new Promise((resolve) => r.once('done', resolve));
      r.close();
    `,
      { address: main.address },
    );
    const r = await child.msg('r', 45_000);
    expect(r).toMatchObject({ a: true, part: true, notSame: true, after: true, codes: ['ERR_IPC_TIMEOUT'], blocks: 0, connected: true });
    // Every byte array went back as a reference: main's own pool was never used. Three at least: a 'late' handler
    // that finished before its cancel arrived (a loaded machine) answered with its argument too.
    const stats = peer.link._sharedStats();
    expect(stats).toMatchObject({ sent: 0, fellBack: 0 });
    expect(stats.echoed).toBeGreaterThanOrEqual(3);
    peer.send('done');
    await exitsCleanly(child);
  });

  test.skipIf(!linux)('a hostile reference to the renderer\'s own pool in an invoke answer (no block there, or past its end) is ERR_IPC_BAD_FRAME', { timeout: 60_000 }, async () => {
    const main = makeMain();
    const bogus = [BOGUS_OWN_REF.noBlock, BOGUS_OWN_REF.pastBlock];
    let which = 0;
    main.handle('echo', (e: any, buf: Buffer) => {
      corruptOwnPoolReferences(e.sender.link, bogus[which]);
      return buf;
    });
    main.handle('still', () => 'here');
    for (which = 0; which < bogus.length; which++) {
      const child = runNode(
        `${CHILD_BYTES}
        const r = ipcwire.ipcRenderer;
        await new Promise((resolve) => r.invoke('noop').then(resolve, resolve));
        const closed = new Promise((resolve) => r.link.once('disconnect', (err) => resolve(err && err.code)));
        let got = null;
        try { await r.invoke('echo', bytes(1 << 20, 1)); got = 'answered'; } catch (err) { got = err.code; }
        out('r', { got, closedWith: await closed });
        r.close();
      `,
        { address: main.address },
      );
      const r = await child.msg('r', 45_000);
      expect(r.closedWith).toBe('ERR_IPC_BAD_FRAME');
      expect(r.got).not.toBe('answered');
      await exitsCleanly(child);
    }
    const ok = runNode(`out('r', await ipcwire.ipcRenderer.invoke('still')); ipcwire.ipcRenderer.close();`, { address: main.address });
    expect(await ok.msg('r', 20_000)).toBe('here');
    await exitsCleanly(ok);
  });

  test('hostile shared-memory frames close that connection with ERR_IPC_BAD_FRAME, and main carries on', { timeout: 60_000 }, async () => {
    const main = makeMain();
    const errors: any[] = [];
    main.peers.on('error', (err: any) => errors.push(err));
    main.handle('ping', () => 'pong');
    const { hello } = await captureHandshake(main);
    const SHM = 13;
    const SHM_BLOB = 14;
    const blobRef = (segment: number, slot: number, offset: number, length: number) => {
      const p = Buffer.alloc(16);
      p.writeUInt32LE(segment, 0);
      p.writeUInt32LE(slot, 4);
      p.writeUInt32LE(offset, 8);
      p.writeUInt32LE(length, 12);
      return p;
    };
    const cases = [
      frame(SHM_BLOB, 0, blobRef(0, 0, 4096, 100)), // no segment announced
      frame(SHM_BLOB, 0, Buffer.alloc(3)), // malformed reference
      frame(SHM, 0, Buffer.alloc(8)), // a segment without its descriptor
      frame(SHM, 7, Buffer.alloc(8)), // another segment number
      frame(SHM, 0, Buffer.alloc(2)), // malformed announcement
    ];
    const clients = cases.map((bytes) => {
      const raw = rawClient(main.address);
      raw.socket.write(Buffer.concat([hello, bytes]));
      return raw;
    });
    await Promise.all(clients.map((c) => c.closed));
    await waitUntil(() => errors.length >= cases.length, 10_000, 'an error per hostile connection');
    expect(errors.map((e) => e.code)).toEqual(cases.map(() => 'ERR_IPC_BAD_FRAME'));
    const child = runNode(`out('r', await ipcwire.ipcRenderer.invoke('ping')); ipcwire.ipcRenderer.close();`, { address: main.address });
    expect(await child.msg('r')).toBe('pong');
    await exitsCleanly(child);
  });

  test('a sendSync reply through shared memory right after a message that announced the other pool, unread', { timeout: 60_000 }, async () => {
    // The push announces main's message pool (HANDLES + SHM) and arrives while the renderer is blocked: it is
    // handed to JS only after the call returns, so the reply must come through a pool announced with it, and the
    // reply's descriptor must not be taken for the push's (or the other way round).
    const main = makeMain();
    main.on('trigger', (e: any) => e.reply('pushed', bytes(1 << 20, 1)));
    main.on('sync', (e: any) => (e.returnValue = [bytes(1 << 20, 2), bytes(2 << 20, 3)]));
    const child = runNode(
      `const r = ipcwire.ipcRenderer;
      await new Promise((resolve) => r.invoke('noop').then(resolve, resolve));
      const pushed = new Promise((resolve) => r.once('pushed', (_e, buf) => resolve(sha256(buf))));
      r.send('trigger');
      const t = Date.now();
      while (Date.now() - t < 300); // main's push is in the socket before the blocking call starts
      const reply = r.sendSync('sync').map(sha256);
      out('r', { reply, pushed: await pushed });
      r.close();
    `,
      { address: main.address },
    );
    const r = await child.msg('r', 45_000);
    await exitsCleanly(child);
    expect(r.reply).toEqual([sha256(bytes(1 << 20, 2)), sha256(bytes(2 << 20, 3))]);
    expect(r.pushed).toBe(sha256(bytes(1 << 20, 1)));
  });
});
