/**
 * Faults that must be reported, never silent: a frame cut off by the connection closing (on either side, the
 * handshake included), and error replies too large for the caller's maxMessageSize, which are shortened so
 * that the caller gets them instead of waiting for ever.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { type Any, catchSync, exitsCleanly, ipcwire, makeMain, once, otherUserTree, runNode, skipBecause, sockPath, tmpDir, trackPath, trackRaw, useHarness, waitUntil, within } from './helpers';
import { GOOD_RENDERER, KIND, captureHandshake, frame, parseFrames, proxy, rawClient } from './helpers/wire';

useHarness();



describe('faults: truncation', () => {
  test('faults: a frame cut off by the peer closing is ERR_IPC_TRUNCATED on ipcMain.peers, not disconnect(null)', { timeout: 60_000 }, async () => {
    const main = makeMain();
    const errors: Any[] = [];
    const disconnects: Any[] = [];
    main.peers.on('error', (err: Any, peer: Any) => errors.push({ err, peer }));
    main.peers.on('disconnect', (peer: Any, err: Any) => disconnects.push({ peer, err }));
    let calls = 0;
    main.on('m', () => calls++);
    const { hello } = await captureHandshake(main);
    const good = runNode(GOOD_RENDERER, { address: main.address });
    const [event] = await once(main, 'up');
    const goodPeer = event.sender;
    disconnects.length = 0;

    // Small and large frames (the decoder reads large ones into their own buffer), cut at several points.
    const whole = frame(KIND.MESSAGE, 0, Buffer.concat([Buffer.from([0x92, 0xa1, 0x6d, 0x91, 0xc6]), Buffer.alloc(4), Buffer.alloc(200_000, 7)]));
    whole.writeUInt32BE(200_000, 4 + 5 + 5); // bin32 length
    for (const cut of [1, 4, 9, 12, 70_000, whole.length - 1]) {
      const raw = rawClient(main.address);
      await raw.connected;
      raw.socket.end(Buffer.concat([hello, whole.subarray(0, cut)]));
      await within(raw.closed, 10_000, `cut at ${cut}: connection closed`);
      await waitUntil(() => errors.length >= 1 && disconnects.length >= 1, 10_000, `cut at ${cut}: error and disconnect`);
      const { err, peer } = errors.shift();
      expect(err.code, `cut at ${cut}`).toBe('ERR_IPC_TRUNCATED');
      expect(err.received, `cut at ${cut}`).toBe(cut);
      const d = disconnects.shift();
      expect(d.peer).toBe(peer);
      expect(d.err).toBe(err);
    }
    // The same frame whole is delivered, and a clean close after whole frames is still disconnect(null).
    const raw = rawClient(main.address);
    await raw.connected;
    raw.socket.end(Buffer.concat([hello, whole]));
    await waitUntil(() => calls === 1 && disconnects.length === 1, 10_000, 'whole frame delivered, then a clean close');
    expect(disconnects[0].err).toBeNull();
    expect(errors).toEqual([]);
    expect(await goodPeer.invoke('ping', 1)).toBe('pong 1');
    goodPeer.send('bye');
    await exitsCleanly(good);
  });

  test('faults: a truncated hello is reported (ERR_IPC_TRUNCATED), not dropped without a trace', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const errors: Any[] = [];
    main.peers.on('error', (err: Any, peer: Any) => errors.push({ err, peer }));
    const { hello } = await captureHandshake(main);
    for (const cut of [2, 9, hello.length - 1]) {
      const raw = rawClient(main.address);
      await raw.connected;
      raw.socket.end(hello.subarray(0, cut));
      await within(raw.closed, 10_000, `hello cut at ${cut}: closed`);
      await waitUntil(() => errors.length === 1, 10_000, `hello cut at ${cut}: an error event`);
      const { err, peer } = errors.shift();
      expect(err.code).toBe('ERR_IPC_TRUNCATED');
      expect(err.received).toBe(cut);
      expect(peer === null || peer.isDestroyed()).toBe(true);
      expect(main.peers.size).toBe(0);
    }
  });

  test('faults: a renderer whose main dies in the middle of a frame gets ERR_IPC_TRUNCATED on its link', { timeout: 30_000 }, async () => {
    // A fake main: answers nothing, sends the first half of a frame and closes.
    const address = sockPath();
    const server = trackRaw(net.createServer((s) => {
      s.on('error', () => {});
      s.once('data', () => s.end(frame(KIND.MESSAGE, 0, Buffer.alloc(100, 0x90)).subarray(0, 50)));
    }));
    await new Promise<void>((r) => server.listen(address, r));
    const child = runNode(`
      const r = new ipcwire.IpcRenderer({ address: ${JSON.stringify(address)} });
      const errs = [];
      r.link.on('error', (e) => errs.push(e.code));
      r.link.on('disconnect', (e) => out('gone', { errs, code: e && e.code, received: e && e.received }));
      r.on('never', () => {});
      r.connect();
      const p = r.invoke('x').catch((e) => e.code);
      out('invoke', await p);
      r.removeAllListeners('never');
    `);
    expect(await child.msg('gone')).toEqual({ errs: ['ERR_IPC_TRUNCATED'], code: 'ERR_IPC_TRUNCATED', received: 50 });
    expect(await child.msg('invoke')).toBe('ERR_IPC_DISCONNECTED');
    await exitsCleanly(child);
    server.close();
  });
});

describe('faults: error replies that do not fit', () => {
  test('faults: a renderer with maxMessageSize 1 KiB gets main\'s too-large error replies shortened, with their code', { timeout: 60_000 }, async () => {
    // Main runs in its own process: its throwing listener is reported there as an uncaught exception.
    const address = sockPath();
    const mainChild = runNode(`
      const main = new ipcwire.IpcMain();
      const big = 'x'.repeat(20_000);
      main.on('sync-throws', () => {
        const err = new Error('listener failed: ' + big);
        err.code = 'E_MINE';
        err.detail = big;
        throw err;
      });
      process.on('uncaughtException', (e) => out('uncaught', e.code));
      main.on('sync-big-value', (e) => (e.returnValue = big));
      main.handle('invoke-throws', () => { throw new RangeError('handler failed: ' + big); });
      main.handle('invoke-big-value', () => big);
      main.peers.on('disconnect', () => { main.close(); });
      main.listen(${JSON.stringify(address)});
      out('listening', true);
    `);
    await mainChild.msg('listening');
    const child = runNode(`
      const r = new ipcwire.IpcRenderer({ maxMessageSize: 1024 });
      const info = (e) => ({ code: e.code, name: e.name, shortened: e.shortened, len: e.message.length, head: e.message.slice(0, 80) });
      try { r.sendSync('sync-throws'); out('a', 'returned'); } catch (e) { out('a', info(e)); }
      try { r.sendSync('sync-big-value'); out('b', 'returned'); } catch (e) { out('b', info(e)); }
      out('c', await r.invoke('invoke-throws').then(() => 'resolved', info));
      out('d', await r.invoke('invoke-big-value').then(() => 'resolved', info));
      try { r.sendSync('no-listener-' + 'y'.repeat(900)); out('e', 'returned'); } catch (e) { out('e', info(e)); }
      r.close();
    `, { address });
    const a = await child.msg('a');
    expect(a).toMatchObject({ code: 'E_MINE', shortened: true });
    expect(a.head).toMatch(/^A listener of sendSync\('sync-throws'\) threw: Error: listener failed: x/);
    expect(a.len).toBeLessThan(1024);
    const b = await child.msg('b');
    expect(b.code).toBe('ERR_IPC_MESSAGE_TOO_LARGE');
    expect(b.len).toBeLessThan(1024);
    const c = await child.msg('c');
    expect(c).toMatchObject({ code: 'ERR_IPC_MESSAGE_TOO_LARGE', name: 'RangeError', shortened: true });
    expect(c.head).toMatch(/^Error invoking remote method 'invoke-throws': RangeError: handler failed: x/);
    expect((await child.msg('d')).code).toBe('ERR_IPC_MESSAGE_TOO_LARGE');
    // A long channel name in the "no listener" error: shortened too, never dropped.
    expect(await child.msg('e')).toMatchObject({ code: 'ERR_IPC_NO_LISTENER', shortened: true });
    await exitsCleanly(child);
    expect(await mainChild.msg('uncaught')).toBe('E_MINE');
    await exitsCleanly(mainChild);
  });

  test('faults: main with maxMessageSize 1 KiB gets a renderer\'s too-large error reply to peer.invoke shortened', { timeout: 30_000 }, async () => {
    const main = makeMain({ maxMessageSize: 1024 });
    const child = runNode(`
      const r = ipcwire.ipcRenderer;
      r.handle('fail', () => { const e = new TypeError('renderer failed: ' + 'z'.repeat(50_000)); e.code = 'E_RENDERER'; throw e; });
      r.once('bye', () => { r.removeHandler('fail'); r.close(); });
      r.send('up');
    `, { address: main.address });
    const [event] = await once(main, 'up');
    const err: Any = await within(event.sender.invoke('fail').then(() => null, (x: Any) => x), 10_000, 'the rejection');
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe('E_RENDERER');
    expect(err.name).toBe('TypeError');
    expect(err.shortened).toBe(true);
    expect(err.message).toMatch(/^Error invoking remote method 'fail': TypeError: renderer failed: z+.*\[shortened to fit maxMessageSize\]/);
    expect(err.message.length).toBeLessThan(1024);
    event.sender.send('bye');
    await exitsCleanly(child);
  });
});

describe('faults: a peer that does not read', () => {
  test('faults: a raw client pipelining sendSync and never reading: main\'s queue stops at maxQueuedBytes, ERR_IPC_PEER_NOT_READING, others keep working', { timeout: 60_000 }, async () => {
    const MiB = 1024 * 1024;
    const limit = 4 * MiB;
    const main = makeMain({ maxQueuedBytes: limit });
    const reply = 'r'.repeat(1024);
    let asked = 0;
    let maxQueued = 0;
    const sampled = new Set<Any>();
    main.on('q', (e: Any) => {
      asked++;
      sampled.add(e.sender);
      maxQueued = Math.max(maxQueued, e.sender.bufferedAmount);
      e.returnValue = reply;
    });
    const errors: Any[] = [];
    const disconnects: Any[] = [];
    main.peers.on('error', (err: Any, peer: Any) => errors.push({ err, peer }));
    main.peers.on('disconnect', (peer: Any, err: Any) => disconnects.push({ peer, err }));
    const { hello } = await captureHandshake(main);
    const good = runNode(GOOD_RENDERER, { address: main.address });
    const [event] = await once(main, 'up');
    const goodPeer = event.sender;

    // 40,000 sendSync requests (fixarray(2), "q", no arguments) in one write: 40 MiB of replies if all were queued.
    const request = Buffer.from([0x92, 0xa1, 0x71, 0x90]);
    const frames: Buffer[] = [hello];
    for (let id = 1; id <= 40_000; id++) frames.push(frame(KIND.SYNC, id, request));
    const raw = rawClient(main.address);
    await raw.connected;
    raw.socket.pause(); // never reads
    raw.socket.write(Buffer.concat(frames));
    await waitUntil(() => errors.length === 1, 30_000, 'ERR_IPC_PEER_NOT_READING');
    const { err, peer } = errors[0];
    expect(err.code).toBe('ERR_IPC_PEER_NOT_READING');
    expect(err.limit).toBe(limit);
    expect(err.queued).toBeGreaterThan(limit);
    await waitUntil(() => disconnects.some((d) => d.peer === peer), 10_000, 'the disconnect');
    expect(disconnects.find((d) => d.peer === peer).err).toBe(err);
    expect(peer.isDestroyed()).toBe(true);
    // Bounded: at most the limit plus one reply frame was ever queued, and main stopped answering.
    const replyFrame = 9 + 3 + 1024 + 5;
    expect(maxQueued).toBeLessThanOrEqual(limit + replyFrame);
    expect(maxQueued).toBeGreaterThan(limit - 64 * 1024);
    expect(asked).toBeLessThan(40_000);
    expect(peer.bufferedAmount).toBe(0);
    // The good renderer was never affected.
    expect(await goodPeer.invoke('ping', 'still')).toBe('pong still');
    raw.socket.destroy();
    goodPeer.send('bye');
    await exitsCleanly(good);
  });

  test('faults: a renderer sending to a main that never reads throws ERR_IPC_PEER_NOT_READING past maxQueuedBytes', { timeout: 30_000 }, async () => {
    // A fake main that accepts and never reads.
    const address = sockPath();
    const sockets: net.Socket[] = [];
    const server = trackRaw(net.createServer({ pauseOnConnect: true }, (s) => {
      s.on('error', () => {});
      sockets.push(s);
    }));
    await new Promise<void>((r) => server.listen(address, r));
    const child = runNode(`
      const MiB = 1024 * 1024;
      const r = new ipcwire.IpcRenderer({ address: ${JSON.stringify(address)}, maxQueuedBytes: 2 * MiB });
      const errs = [];
      r.link.on('error', (e) => errs.push(e.code));
      const gone = new Promise((res) => r.link.once('disconnect', (e) => res(e && e.code)));
      const chunk = Buffer.alloc(64 * 1024, 1);
      let sent = 0, maxQueued = 0, threw = null;
      try {
        for (; sent < 1000; sent++) { r.send('x', chunk); maxQueued = Math.max(maxQueued, r.bufferedAmount); }
      } catch (e) { threw = e.code; }
      let after = null;
      try { r.send('x', 1); } catch (e) { after = e.code; }
      out('r', { threw, sent, maxQueued, after, closeCode: await gone, errs });
    `);
    const r = await child.msg('r');
    expect(r.threw).toBe('ERR_IPC_PEER_NOT_READING');
    expect(r.sent).toBeGreaterThan(16);
    expect(r.sent).toBeLessThan(1000);
    expect(r.maxQueued).toBeLessThanOrEqual(2 * 1024 * 1024 + 64 * 1024 + 64);
    expect(r.after).toBe('ERR_IPC_DISCONNECTED');
    expect(r.closeCode).toBe('ERR_IPC_PEER_NOT_READING');
    expect(r.errs).toEqual(['ERR_IPC_PEER_NOT_READING']);
    await exitsCleanly(child);
    for (const s of sockets) s.destroy();
    server.close();
  });
});

describe('faults: silent faults made loud', () => {
  test('faults: idleTimeout disconnects a renderer that trickles a frame for ever (ERR_IPC_IDLE_TIMEOUT); off by default; an active one stays', { timeout: 30_000 }, async () => {
    const idle = makeMain({ idleTimeout: 400 });
    const plain = makeMain();
    const errors: Any[] = [];
    idle.peers.on('error', (err: Any, peer: Any) => errors.push({ err, peer }));
    plain.peers.on('error', (err: Any) => errors.push({ err, peer: null, plain: true }));
    let got = 0;
    idle.on('m', () => got++);
    const { hello } = await captureHandshake(idle);
    const message = frame(KIND.MESSAGE, 0, Buffer.from([0x92, 0xa1, 0x6d, 0x90]));
    const big = frame(KIND.MESSAGE, 0, Buffer.alloc(1000, 0x90));
    const trickle = (main: Any) => {
      const raw = rawClient(main.address);
      raw.socket.write(hello);
      let i = 0;
      const timer = setInterval(() => raw.socket.write(big.subarray(i, ++i)), 50);
      return { raw, stop: () => clearInterval(timer) };
    };
    const slowIdle = trickle(idle);
    const slowPlain = trickle(plain);
    const active = rawClient(idle.address);
    active.socket.write(hello);
    const activeTimer = setInterval(() => active.socket.write(message), 100);
    try {
      await waitUntil(() => errors.length >= 1, 10_000, 'the idle timeout');
      const t0 = Date.now();
      const { err, peer } = errors[0];
      expect(err.code).toBe('ERR_IPC_IDLE_TIMEOUT');
      expect(err.idleTimeout).toBe(400);
      await within(slowIdle.raw.closed, 5000, 'the trickler cut off');
      expect(peer.isDestroyed()).toBe(true);
      // The active client and the trickler of the main without idleTimeout are still connected.
      await waitUntil(() => Date.now() - t0 > 500 && got >= 8, 10_000, 'the active client keeps sending');
      expect(active.isClosed()).toBe(false);
      expect(slowPlain.raw.isClosed()).toBe(false);
      expect(errors).toHaveLength(1);
    } finally {
      slowIdle.stop();
      slowPlain.stop();
      clearInterval(activeTimer);
      active.socket.destroy();
      slowPlain.raw.socket.destroy();
      slowIdle.raw.socket.destroy();
    }
  });

  test('faults: 50 connections declaring 511 MiB frames cost what arrived, not what they declared (VmSize and RSS)', { timeout: 60_000 }, async () => {
    const capture = makeMain();
    const { hello } = await captureHandshake(capture);
    capture.close();
    const address = sockPath();
    const mainChild = runNode(`
      const fs = require('node:fs');
      const mem = () => {
        try {
          const s = fs.readFileSync('/proc/self/status', 'utf8');
          const kb = (k) => Number(new RegExp(k + ':\\\\s+(\\\\d+) kB').exec(s)[1]) * 1024;
          return { vm: kb('VmSize'), rss: kb('VmRSS') };
        } catch { return { vm: null, rss: process.memoryUsage().rss }; }
      };
      const main = new ipcwire.IpcMain();
      let n = 0;
      main.peers.on('error', () => {});
      main.peers.on('connect', () => { if (++n === 50) setImmediate(() => out('after', mem())); });
      main.listen(${JSON.stringify(address)});
      out('before', mem());
      await readLine();
      main.close();
    `);
    const before = await mainChild.msg('before');
    const head = Buffer.alloc(9);
    head.writeUInt32LE(511 * 1024 * 1024, 0);
    head[4] = KIND.MESSAGE;
    const clients = [];
    for (let i = 0; i < 50; i++) {
      const raw = rawClient(address);
      raw.socket.write(Buffer.concat([hello, head, Buffer.alloc(1000, 0x90)]));
      clients.push(raw);
    }
    const after = await mainChild.msg('after', 30_000);
    const MiB = 1024 * 1024;
    // eslint-disable-next-line no-console
    console.log(`50 connections declaring 511 MiB: VmSize +${before.vm === null ? '?' : Math.round((after.vm - before.vm) / MiB)} MiB, ` +
      `RSS +${Math.round((after.rss - before.rss) / MiB)} MiB`);
    // Before growing buffers as bytes arrive this was 50 x 511 MiB of address space (26 GiB).
    if (before.vm !== null) expect(after.vm - before.vm).toBeLessThan(256 * MiB);
    expect(after.rss - before.rss).toBeLessThan(256 * MiB);
    for (const c of clients) c.socket.destroy();
    mainChild.send('done');
    await exitsCleanly(mainChild);
  });

  test('faults: accept failing for lack of descriptors is one \'error\' (EMFILE) per episode; main keeps serving', { timeout: 60_000 }, async () => {
    const address = sockPath();
    const mainChild = runNode(`
      const main = new ipcwire.IpcMain();
      const errors = [];
      main.peers.on('error', (e, peer) => { errors.push({ code: e.code, syscall: e.syscall, peer: peer === null ? null : 'peer' }); out('error', errors.length); });
      main.handle('ping', (e, x) => 'pong ' + x);
      main.listen(${JSON.stringify(address)});
      out('ready', true);
      await readLine();
      out('errors', errors);
      main.close();
    `, { shellPrefix: 'ulimit -n 64;' });
    await mainChild.msg('ready');
    const clients = [];
    for (let i = 0; i < 120; i++) clients.push(rawClient(address));
    await mainChild.msg('error', 20_000);
    // Shed connections are closed at once, not left waiting.
    await waitUntil(() => clients.filter((c) => c.isClosed()).length > 0, 10_000, 'shed connections closed');
    for (const c of clients) c.socket.destroy();
    // Descriptors free again: a renderer connects and is served.
    const child = runNode(`out('r', await ipcwire.ipcRenderer.invoke('ping', 1));`, { address });
    expect(await child.msg('r', 20_000)).toBe('pong 1');
    await exitsCleanly(child);
    mainChild.send('report');
    const errors = await mainChild.msg('errors');
    expect(errors).toEqual([{ code: 'EMFILE', syscall: 'accept', peer: null }]);
    await exitsCleanly(mainChild);
  });

  test('faults: allowMain sees main\'s kernel credentials; refusing throws ERR_IPC_MAIN_REFUSED and sends nothing', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const connects: Any[] = [];
    main.peers.on('connect', (p: Any) => connects.push(p));
    const child = runNode(`
      const seen = [];
      const r = new ipcwire.IpcRenderer({ allowMain: (c) => { seen.push(c); return false; } });
      try { r.connect(); out('r', 'connected'); } catch (e) { out('r', { code: e.code, uid: e.uid, seen, myUid: process.getuid() }); }
      const ok = new ipcwire.IpcRenderer({ allowMain: (c) => c.uid === process.getuid() });
      ok.connect();
      ok.send('hi');
      ok.close();
    `, { address: main.address });
    const [event] = await once(main, 'hi');
    const r = await child.msg('r');
    expect(r.code).toBe('ERR_IPC_MAIN_REFUSED');
    expect(r.seen).toEqual([{ pid: process.pid, uid: r.myUid, gid: expect.any(Number) }]);
    expect(connects).toEqual([event.sender]); // the refused connection never said hello
    await exitsCleanly(child);
  });

  test('faults: a renderer refuses a fake main run by another user (uid 65534) at the address (needs root to run one)', { timeout: 30_000 }, async (ctx) => {
    // The fake main runs from a world-readable copy of the package, so the checkout itself may be private (0700).
    const other = otherUserTree();
    if (typeof other === 'string') return skipBecause(ctx, other);
    const dir = tmpDir();
    fs.chmodSync(dir, 0o777); // a directory another user can create a socket in
    const address = trackPath(path.join(dir, 'main.sock'));
    const fake = runNode(`
      const main = new ipcwire.IpcMain({ socketMode: 0o666 });
      main.handle('who', () => process.getuid());
      main.listen(${JSON.stringify(address)});
      out('ready', process.getuid());
      await readLine();
      main.close();
    `, other);
    expect(await fake.msg('ready')).toBe(65534);
    const { IpcRenderer } = ipcwire();
    const err = catchSync(() => new IpcRenderer({ address }).connect());
    expect(err.code).toBe('ERR_IPC_MAIN_REFUSED');
    expect(err.uid).toBe(65534);
    expect(err.message).toMatch(/uid 65534/);
    // Trusting that user explicitly works.
    const trusting = new IpcRenderer({ address, allowMain: (c: Any) => c.uid === 65534 });
    expect(await trusting.invoke('who')).toBe(65534);
    trusting.close();
    fake.send('done');
    await exitsCleanly(fake);
  });
});
