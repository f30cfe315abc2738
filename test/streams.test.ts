/**
 * Streams over invoke, with real processes: a handler (main's or a renderer's) answering with an async iterable or a
 * web ReadableStream, streams as arguments, flow control (a slow reader bounds what the producer pulls), and every
 * way a stream ends (break, reader.cancel(), an AbortSignal, a producer error, a disconnect) reaching the other
 * side, with nothing left behind.
 */
import { describe, expect, test } from 'vitest';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { exitsCleanly, ipcwire, localRenderer, makeMain, runNode, tmpDir, useHarness, waitUntil } from './helpers';
import { KIND, captureHandshake, frame, parseFrames, rawClient } from './helpers/wire';

useHarness();

/** An async generator of `n` tokens that records how far it got and whether its `finally` ran. */
function tokens(n: number, log: { pulled: number; finished: boolean }) {
  return (async function* () {
    try {
      for (let i = 0; i < n; i++) {
        log.pulled = i + 1;
        yield `tok${i}`;
      }
    } finally {
      log.finished = true;
    }
  })();
}

describe('streams', () => {
  test('streams: a main handler returning an async generator: for await reads it chunk by chunk, await gets all chunks, both directions', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const log = { pulled: 0, finished: false };
    main.handle('tokens', (_e: any, n: number) => tokens(n, log));
    main.handle('web', () => new ReadableStream({
      start(c) {
        c.enqueue({ a: 1 });
        c.enqueue(new Map([[1, 2n]]));
        c.close();
      },
    }));
    const child = runNode(`
      const r = ipcwire.ipcRenderer;
      const seen = [];
      for await (const t of r.invoke('tokens', 5)) seen.push(t);
      out('iterated', seen);
      out('whole', await r.invoke('tokens', 3));
      const web = await r.invoke('web');
      out('web', [web[0], [...web[1]].map(([k, v]) => [k, typeof v + ' ' + v])]);
      // The ReadableStream view of a streamed result (ReadableStream.from reads the call's async iterator).
      const rs = ReadableStream.from(r.invoke('tokens', 2));
      const fromRs = [];
      for await (const t of rs) fromRs.push(t);
      out('readable', fromRs);
      out('counts', r.wire._streamCounts());
      // A renderer handler answering main's peer.invoke with a stream.
      r.handle('countdown', (_e, from) => (async function* () { for (let i = from; i > 0; i--) yield i; })());
      out('ready', true);
      await new Promise((res) => r.once('done', res));
      r.removeHandler('countdown');
      r.close();
    `, { address: main.address });
    expect(await child.msg('iterated')).toEqual(['tok0', 'tok1', 'tok2', 'tok3', 'tok4']);
    expect(await child.msg('whole')).toEqual(['tok0', 'tok1', 'tok2']);
    expect(await child.msg('web')).toEqual([{ a: 1 }, [[1, 'bigint 2']]]);
    expect(await child.msg('readable')).toEqual(['tok0', 'tok1']);
    expect(await child.msg('counts')).toEqual({ streamsIn: 0, streamsOut: 0, drainWaiters: 0 });
    await child.msg('ready');
    const [peer] = main.peers.list();
    const got: number[] = [];
    for await (const n of peer.invoke('countdown', 4)) got.push(n);
    expect(got).toEqual([4, 3, 2, 1]);
    expect(await peer.invoke('countdown', 2)).toEqual([2, 1]);
    expect(peer.link._streamCounts()).toEqual({ streamsIn: 0, streamsOut: 0, drainWaiters: 0 });
    peer.send('done');
    await exitsCleanly(child);
  });

  test('streams: stream arguments either way, large Buffer chunks out of band, intact and in order', { timeout: 30_000 }, async () => {
    const main = makeMain();
    main.handle('digest', async (_e: any, label: string, chunks: any) => {
      const { createHash } = await import('node:crypto');
      const h = createHash('sha256');
      let n = 0;
      let bytes = 0;
      for await (const c of chunks) {
        h.update(c);
        n++;
        bytes += c.length;
        if (!Buffer.isBuffer(c)) throw new Error('not a Buffer');
      }
      return { label, n, bytes, sha: h.digest('hex') };
    });
    // Echo: the argument stream becomes the result stream, transformed on the way.
    main.handle('upper', (_e: any, words: AsyncIterable<string>) => (async function* () {
      for await (const w of words) yield w.toUpperCase();
    })());
    const child = runNode(`
      const r = ipcwire.ipcRenderer;
      const crypto = require('node:crypto');
      const parts = [];
      for (let i = 0; i < 12; i++) parts.push(crypto.randomBytes(i % 3 === 0 ? 100 : 300 * 1024 + i));
      async function* gen() { for (const p of parts) yield p; }
      const res = await r.invoke('digest', 'x', gen());
      out('digest', { ...res, expected: sha256(Buffer.concat(parts)), bytes2: parts.reduce((a, p) => a + p.length, 0) });
      // A Node Readable is an async iterable too.
      const viaReadable = await r.invoke('digest', 'y', require('node:stream').Readable.from(parts));
      out('readable', viaReadable.sha === res.sha && viaReadable.n === 12);
      out('upper', await r.invoke('upper', (async function* () { yield 'a'; yield 'bc'; })()));
      // Main's peer.invoke passing a stream to a renderer handler.
      r.handle('count', async (_e, s) => { let n = 0; for await (const x of s) n += x; return n; });
      out('ready', true);
      await new Promise((res) => r.once('done', res));
      r.removeHandler('count');
      r.close();
    `, { address: main.address });
    const d = await child.msg('digest');
    expect(d).toMatchObject({ label: 'x', n: 12 });
    expect(d.sha).toBe(d.expected);
    expect(d.bytes).toBe(d.bytes2);
    expect(await child.msg('readable')).toBe(true);
    expect(await child.msg('upper')).toEqual(['A', 'BC']);
    await child.msg('ready');
    const [peer] = main.peers.list();
    expect(await peer.invoke('count', new ReadableStream({
      start(c) {
        for (let i = 1; i <= 100; i++) c.enqueue(i);
        c.close();
      },
    }))).toBe(5050);
    peer.send('done');
    await exitsCleanly(child);
  });

  test('streams: a slow reader bounds what the producer pulls to its window of chunks', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const log = { pulled: 0, finished: false };
    main.handle('endless', () => tokens(1e9, log));
    const WINDOW = 4;
    const child = runNode(`
      const r = ipcwire.ipcRenderer;
      let read = 0;
      for await (const t of r.invokeWith({ streamWindow: { chunks: ${WINDOW} } }, 'endless')) {
        read++;
        out('read' + read, t);
        await new Promise((res) => r.once('next', res));
        if (read === 10) break;
      }
      out('counts', r.wire._streamCounts());
      r.close();
    `, { address: main.address });
    let maxAhead = 0;
    await child.msg('read1');
    const [peer] = main.peers.list();
    for (let i = 1; i <= 10; i++) {
      expect(await child.msg('read' + i)).toBe(`tok${i - 1}`);
      // Give the producer every chance to run ahead before the reader takes the next chunk.
      await new Promise((res) => setTimeout(res, 30));
      maxAhead = Math.max(maxAhead, log.pulled - i);
      peer.send('next');
    }
    // The producer holds at most one pulled chunk beyond what is in flight (window) and what was read.
    expect(maxAhead).toBeGreaterThanOrEqual(1);
    expect(maxAhead).toBeLessThanOrEqual(WINDOW + 1);
    expect(await child.msg('counts')).toEqual({ streamsIn: 0, streamsOut: 0, drainWaiters: 0 });
    await waitUntil(() => log.finished, 5000, "the generator's finally");
    await exitsCleanly(child);
    await waitUntil(() => peer.link._streamCounts().streamsOut === 0 || peer.isDestroyed(), 5000, 'producer gone');
  });

  test('streams: break, reader.cancel() and an AbortSignal end the stream on both sides (the producer\'s finally runs)', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const logs: Array<{ pulled: number; finished: boolean }> = [];
    main.handle('endless', () => {
      const log = { pulled: 0, finished: false };
      logs.push(log);
      return tokens(1e9, log);
    });
    const child = runNode(`
      const r = ipcwire.ipcRenderer;
      for await (const t of r.invoke('endless')) if (t === 'tok3') break;
      out('broke', true);
      const reader = ReadableStream.from(r.invoke('endless')).getReader();
      out('first', (await reader.read()).value);
      await reader.cancel();
      out('cancelled', true);
      const ac = new AbortController();
      const got = [];
      try {
        for await (const t of r.invokeWith({ signal: ac.signal }, 'endless')) {
          got.push(t);
          if (got.length === 2) ac.abort(new Error('enough'));
        }
        out('aborted', 'not thrown');
      } catch (e) {
        out('aborted', { name: e.name, code: e.code, cause: e.cause && e.cause.message, got });
      }
      out('listeners', require('node:events').getEventListeners(ac.signal, 'abort').length);
      // An abort while awaiting the whole result rejects it too.
      const ac2 = new AbortController();
      const whole = r.invokeWith({ signal: ac2.signal }, 'endless');
      setTimeout(() => ac2.abort(), 50);
      out('whole', await whole.then(() => 'resolved', (e) => e.name));
      out('counts', r.wire._streamCounts());
      r.close();
    `, { address: main.address });
    expect(await child.msg('broke')).toBe(true);
    expect(await child.msg('first')).toBe('tok0');
    expect(await child.msg('cancelled')).toBe(true);
    expect(await child.msg('aborted')).toEqual({ name: 'AbortError', code: 'ABORT_ERR', cause: 'enough', got: ['tok0', 'tok1'] });
    expect(await child.msg('listeners')).toBe(0);
    expect(await child.msg('whole')).toBe('AbortError');
    expect(await child.msg('counts')).toEqual({ streamsIn: 0, streamsOut: 0, drainWaiters: 0 });
    await waitUntil(() => logs.length === 4 && logs.every((l) => l.finished), 5000, 'every producer finally');
    await exitsCleanly(child);
  });

  test('streams: a stream argument ends in the caller too: unread (cancelled when the handler answers), broken out of, or its call aborted', { timeout: 30_000 }, async () => {
    const main = makeMain();
    let abortedRead: any = null;
    main.handle('ignore', () => 'ignored');
    main.handle('firstTwo', async (_e: any, s: AsyncIterable<number>) => {
      const got = [];
      for await (const x of s) if (got.push(x) === 2) break;
      return got;
    });
    main.handle('slowRead', async (event: any, s: AsyncIterable<number>) => {
      event.sender.send('reading');
      try {
        for await (const _ of s) { /* until the caller aborts */ }
      } catch (e: any) {
        abortedRead = { message: e.message, code: e.code };
      }
    });
    const child = runNode(`
      const r = ipcwire.ipcRenderer;
      const started = [];
      const finallies = [];
      const gen = (tag) => (async function* () {
        started.push(tag);
        try { for (let i = 1; ; i++) { yield i; await new Promise((res) => setImmediate(res)); } }
        finally { finallies.push(tag); }
      })();
      out('ignore', await r.invoke('ignore', gen('ignore')));
      out('firstTwo', await r.invoke('firstTwo', gen('firstTwo')));
      const ac = new AbortController();
      r.once('reading', () => setTimeout(() => ac.abort(), 20));
      out('abort', await r.invokeWith({ signal: ac.signal }, 'slowRead', gen('abort')).then(() => 'resolved', (e) => e.name));
      // Every generator that started has run its finally (an unread one may never have started: the handler's
      // answer can cancel it before it was first pulled, and a generator closed before its start has no finally to run).
      while (finallies.length < started.length || finallies.length < 2) await new Promise((res) => setTimeout(res, 10));
      out('finallies', { started: started.sort(), finallies: finallies.sort() });
      out('counts', r.wire._streamCounts());
      r.close();
    `, { address: main.address });
    expect(await child.msg('ignore')).toBe('ignored');
    expect(await child.msg('firstTwo')).toEqual([1, 2]);
    expect(await child.msg('abort')).toBe('AbortError');
    const { started, finallies } = await child.msg('finallies');
    expect(finallies).toEqual(started);
    expect(finallies).toEqual(expect.arrayContaining(['abort', 'firstTwo']));
    expect(await child.msg('counts')).toEqual({ streamsIn: 0, streamsOut: 0, drainWaiters: 0 });
    await waitUntil(() => abortedRead !== null, 5000, "the handler's read to fail");
    expect(abortedRead.message).toMatch(/^Error in a stream argument of 'slowRead': AbortError: invoke\('slowRead'\) was aborted/);
    expect(abortedRead.code).toBe('ABORT_ERR');
    await exitsCleanly(child);
  });

  test('streams: worker threads read streams on their own connections while the main thread reads one too', { timeout: 30_000 }, async () => {
    const main = makeMain();
    main.handle('count', (_e: any, who: string, n: number) => (async function* () {
      for (let i = 0; i < n; i++) {
        yield `${who}:${i}`;
        if (i % 10 === 0) await new Promise((res) => setImmediate(res));
      }
    })());
    const child = runNode(`
      const { Worker } = require('node:worker_threads');
      const workers = [1, 2].map(() => {
        const w = new Worker(require.resolve('./worker.cjs'), { workerData: { code: \`
          const got = [];
          for await (const x of ipcwire.ipcRenderer.invoke('count', 'w' + threadId, 200)) got.push(x);
          post('w', { n: got.length, last: got[199] === 'w' + threadId + ':199', peerId: ipcwire.ipcRenderer.peerId });
          ipcwire.ipcRenderer.close();
        \` } });
        return new Promise((resolve) => { w.on('message', (m) => resolve(m.data)); w.on('error', (e) => resolve(errInfo(e))); });
      });
      const mine = await ipcwire.ipcRenderer.invoke('count', 'main', 300);
      const ws = await Promise.all(workers);
      out('result', { main: mine.length, workers: ws.map((w) => [w.n, w.last]), distinct: new Set(ws.map((w) => w.peerId).concat(ipcwire.ipcRenderer.peerId)).size });
      ipcwire.ipcRenderer.close();
    `, { address: main.address });
    expect(await child.msg('result')).toEqual({ main: 300, workers: [[200, true], [200, true]], distinct: 3 });
    await exitsCleanly(child);
  });

  test('streams: a producer error reaches the reader as the remote error; a non-stream result cannot be iterated; a nested stream is refused', { timeout: 30_000 }, async () => {
    const main = makeMain();
    main.handle('fails', () => (async function* () {
      yield 1;
      throw Object.assign(new Error('boom'), { code: 'E_BOOM' });
    })());
    main.handle('plain', () => 42);
    main.handle('args', async (_e: any, s: any) => {
      try {
        for await (const _ of s) { /* read */ }
        return 'no error';
      } catch (e: any) {
        return `${e.message} (${e.code})`;
      }
    });
    const child = runNode(`
      const r = ipcwire.ipcRenderer;
      const got = [];
      try { for await (const x of r.invoke('fails')) got.push(x); } catch (e) { out('iter', { got, message: e.message, code: e.code }); }
      out('whole', await r.invoke('fails').then(() => 'resolved', (e) => e.message));
      try { for await (const x of r.invoke('plain')) got.push(x); } catch (e) { out('plain', e.code); }
      out('nested', await r.invoke('plain', { s: (async function* () {})() }).then(() => 'resolved', (e) => [e.code, e.message]));
      try { r.send('x', (async function* () {})()); } catch (e) { out('send', e.code); }
      out('argerr', await r.invoke('args', (async function* () { yield 1; throw new TypeError('bad input'); })()));
      out('counts', r.wire._streamCounts());
      r.close();
    `, { address: main.address });
    expect(await child.msg('iter')).toEqual({ got: [1], message: "Error invoking remote method 'fails': Error: boom", code: 'E_BOOM' });
    expect(await child.msg('whole')).toBe("Error invoking remote method 'fails': Error: boom");
    expect(await child.msg('plain')).toBe('ERR_IPC_NOT_A_STREAM');
    expect(await child.msg('nested')).toEqual(['ERR_IPC_UNCLONABLE',
      'An object could not be cloned. args[0].s is a stream (only invoke arguments and results may be streams, not nested in them).']);
    expect(await child.msg('send')).toBe('ERR_IPC_UNCLONABLE');
    expect(await child.msg('argerr')).toBe("Error in a stream argument of 'args': TypeError: bad input (undefined)");
    expect(await child.msg('counts')).toEqual({ streamsIn: 0, streamsOut: 0, drainWaiters: 0 });
    await exitsCleanly(child);
  });

  test('streams: a chunk larger than the reader accepts ends its stream with ERR_IPC_MESSAGE_TOO_LARGE; the connection stays', { timeout: 30_000 }, async () => {
    const main = makeMain();
    let closed = false;
    main.handle('big', () => (async function* () {
      try {
        yield Buffer.alloc(100, 1);
        yield Buffer.alloc(4096, 2);
        yield 'never';
      } finally {
        closed = true;
      }
    })());
    main.handle('ping', () => 'pong');
    const child = runNode(`
      const r = new ipcwire.IpcRenderer({ maxMessageSize: 1024 });
      r.connect(process.env.IPCWIRE_ADDRESS);
      const got = [];
      try { for await (const c of r.invoke('big')) got.push(c.length); } catch (e) { out('err', { got, code: e.code, message: e.message }); }
      out('after', await r.invoke('ping'));
      r.close();
    `, { address: main.address });
    const err = await child.msg('err');
    expect(err.got).toEqual([100]);
    expect(err.code).toBe('ERR_IPC_MESSAGE_TOO_LARGE');
    expect(err.message).toMatch(/^Error invoking remote method 'big': IpcError: Message of \d+ bytes exceeds the 1024 bytes the peer accepts/);
    expect(await child.msg('after')).toBe('pong');
    await waitUntil(() => closed, 5000, "the generator's finally");
    await exitsCleanly(child);
  });

  test('streams: a bad streamWindow is a clear error before anything is sent', { timeout: 20_000 }, async () => {
    const { IpcMain, IpcRenderer } = ipcwire();
    expect(() => new IpcMain({ streamWindow: 5 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => new IpcRenderer({ streamWindow: { bytes: -1 } })).toThrow(expect.objectContaining({
      code: 'ERR_OUT_OF_RANGE', message: 'The "streamWindow.bytes" option must be an integer from 1 to 4294967295. Received -1' }));
    const main = makeMain();
    let calls = 0;
    main.handle('tokens', () => {
      calls++;
      return (async function* () { yield 1; })();
    });
    const r = localRenderer(main.address);
    await expect(r.invokeWith({ streamWindow: { chunks: 0 } }, 'tokens')).rejects.toMatchObject({
      code: 'ERR_OUT_OF_RANGE', message: 'The "options.streamWindow.chunks" option must be an integer from 1 to 4294967295. Received 0' });
    // Nothing was sent: the next call is the handler's first.
    expect(await r.invokeWith({ streamWindow: { chunks: 1, bytes: 1 } }, 'tokens')).toEqual([1]);
    expect(calls).toBe(1);
  });

  test('streams: OS handles as chunks arrive working, those dropped by a cancel are closed; a net.Socket result is a socket, not a stream', { timeout: 30_000 }, async () => {
    const { IpcHandle } = ipcwire();
    const main = makeMain();
    const file = path.join(tmpDir(), 'chunk.txt');
    fs.writeFileSync(file, 'in the file');
    main.handle('files', () => (async function* () {
      let h: any = null;
      try {
        for (;;) {
          h = new IpcHandle(fs.openSync(file, 'r'));
          yield h; // sent: closed here once its chunk is written
          h = null;
        }
      } finally {
        h?.close(); // pulled but never sent
      }
    })());
    const accepted: net.Socket[] = [];
    const server = net.createServer({ pauseOnConnect: true }, (s) => accepted.push(s));
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    const heard = new Promise<string>((res) => {
      let text = '';
      client.on('data', (d) => (text += d));
      client.on('end', () => res(text));
    });
    await waitUntil(() => accepted.length === 1, 5000, 'the TCP connection');
    main.handle('socket', () => accepted[0]);
    main.handle('ready', () => true);
    const child = runNode(`
      const fs = require('node:fs');
      const net = require('node:net');
      const r = ipcwire.ipcRenderer;
      await r.invoke('ready'); // connected, handshake done: its descriptors are counted in 'before'
      // Descriptors of this process open on the file the chunks' handles are for.
      const onFile = () => fs.readdirSync('/dev/fd').filter((f) => {
        try { return fs.readlinkSync('/dev/fd/' + f) === ${JSON.stringify(fs.realpathSync(file))}; } catch { return false; }
      }).length;
      const before = onFile();
      let waiting = -1;
      const read = [];
      const call = r.invokeWith({ streamWindow: { chunks: 4 } }, 'files');
      for await (const h of call) {
        const b = Buffer.alloc(64);
        read.push(b.subarray(0, fs.readSync(h.fd, b, 0, 64, 0)).toString());
        h.close();
        if (read.length === 2) {
          // Let the window fill: up to 4 handles wait unread when the loop breaks.
          await new Promise((res) => setTimeout(res, 100));
          waiting = onFile();
          break;
        }
      }
      out('read', read);
      out('fds', [before, waiting, onFile()]);
      const s = await r.invoke('socket');
      out('socket', s instanceof net.Socket);
      s.end('hello from the renderer');
      await new Promise((res) => s.on('close', res));
      r.close();
    `, { address: main.address });
    expect(await child.msg('read')).toEqual(['in the file', 'in the file']);
    const [before, waiting, after] = await child.msg('fds');
    expect(before).toBe(0);
    expect(waiting).toBeGreaterThan(0); // handles received and not read yet are open
    expect(after).toBe(0); // the cancel closed them, and those still in flight
    expect(await child.msg('socket')).toBe(true);
    expect(await heard).toBe('hello from the renderer');
    await exitsCleanly(child);
    client.destroy();
    await new Promise<void>((res) => server.close(() => res()));
  });

  test('streams: a dead peer errors every open stream with ERR_IPC_DISCONNECTED and closes the local producers', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const log = { pulled: 0, finished: false };
    let argError: any = null;
    main.handle('endless', () => tokens(1e9, log));
    main.handle('upload', async (_e: any, s: AsyncIterable<unknown>) => {
      try {
        for await (const _ of s) { /* read until the renderer dies */ }
      } catch (e) {
        argError = e;
      }
    });
    const child = runNode(`
      const r = ipcwire.ipcRenderer;
      r.invoke('upload', (async function* () { for (let i = 0; ; i++) { yield i; await new Promise((res) => setTimeout(res, 5)); } })());
      for await (const t of r.invoke('endless')) if (t === 'tok2') break;
      const s = r.invoke('endless');
      for await (const t of s) { out('reading', t); await new Promise(() => {}); }
    `, { address: main.address });
    await child.msg('reading');
    const [peer] = main.peers.list();
    await waitUntil(() => peer.link._streamCounts().streamsIn === 1 && peer.link._streamCounts().streamsOut >= 1, 5000, 'streams open');
    child.kill('SIGKILL');
    await child.exited;
    await waitUntil(() => argError !== null && log.finished, 5000, 'stream argument errored and producer closed');
    expect(argError.code).toBe('ERR_IPC_DISCONNECTED');
    expect(peer.link._streamCounts()).toEqual({ streamsIn: 0, streamsOut: 0, drainWaiters: 0 });

    // And the other way: main going away errors the renderer's open stream.
    const main2 = makeMain();
    main2.handle('slow', () => (async function* () { yield 1; await new Promise(() => {}); })());
    const child2 = runNode(`
      const r = ipcwire.ipcRenderer;
      const got = [];
      try { for await (const x of r.invoke('slow')) { got.push(x); out('got', x); } } catch (e) { out('err', { code: e.code, got }); }
    `, { address: main2.address });
    await child2.msg('got');
    main2.close();
    expect(await child2.msg('err')).toEqual({ code: 'ERR_IPC_DISCONNECTED', got: [1] });
    await exitsCleanly(child2);
  });

  test('streams: 1,000 streams aborted at random leave no entries, listeners or producers on either side', { timeout: 60_000 }, async () => {
    const main = makeMain();
    let started = 0;
    let finished = 0;
    main.handle('s', (_e: any, n: number) => (async function* () {
      started++;
      try {
        for (let i = 0; i < n; i++) {
          yield i;
          if (i % 7 === 0) await new Promise((res) => setImmediate(res));
        }
      } finally {
        finished++;
      }
    })());
    const child = runNode(`
      const r = ipcwire.ipcRenderer;
      const signals = [];
      let outcomes = { done: 0, aborted: 0, broke: 0 };
      const jobs = [];
      let seed = 12345;
      const rnd = (n) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
      for (let k = 0; k < 1000; k++) {
        const ac = new AbortController();
        signals.push(ac.signal);
        const len = rnd(40);
        const abortAfter = rnd(50);
        const breakAt = rnd(60);
        jobs.push((async () => {
          let i = 0;
          try {
            for await (const x of r.invokeWith({ signal: ac.signal, streamWindow: { chunks: 1 + rnd(8) } }, 's', len)) {
              if (i++ === abortAfter) ac.abort();
              if (i === breakAt) { outcomes.broke++; return; }
            }
            outcomes.done++;
          } catch (e) {
            if (e.name !== 'AbortError') throw e;
            outcomes.aborted++;
          }
        })());
        if (k % 50 === 49) await Promise.all(jobs.splice(0));
      }
      await Promise.all(jobs);
      out('outcomes', outcomes);
      out('listeners', signals.reduce((n, s) => n + require('node:events').getEventListeners(s, 'abort').length, 0));
      out('counts', [r.wire._counts(), r.wire._streamCounts()]);
      r.close();
    `, { address: main.address });
    const outcomes = await child.msg('outcomes', 50_000);
    expect(outcomes.done + outcomes.aborted + outcomes.broke).toBe(1000);
    expect(outcomes.aborted).toBeGreaterThan(0);
    expect(outcomes.broke).toBeGreaterThan(0);
    expect(await child.msg('listeners')).toBe(0);
    expect(await child.msg('counts')).toEqual([{ pending: 0, answering: 0 }, { streamsIn: 0, streamsOut: 0, drainWaiters: 0 }]);
    const [peer] = main.peers.list();
    if (peer) await waitUntil(() => peer.link._streamCounts().streamsOut === 0, 5000, 'producers gone');
    await waitUntil(() => finished === started && started === 1000, 10_000, 'every producer finally');
    await exitsCleanly(child);
  });
});

describe('streams-hostile', () => {
  test('streams-hostile: a peer overrunning its window, a malformed credit or a stream inside a chunk closes that connection with ERR_IPC_BAD_FRAME', { timeout: 30_000 }, async () => {
    const main = makeMain({ streamWindow: { chunks: 2 } });
    const { hello } = await captureHandshake(main);
    const errors: any[] = [];
    main.peers.on('error', (err: any) => errors.push(err));
    const held: any[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    main.handle('upload', (_e: any, s: any) => {
      held.push(s);
      return gate;
    });
    // ['upload', [<stream 1>]]: msgpack by hand; msgpackr writes the stream reference as extension 0x26 (fixext 1,
    // data 0) followed by its id.
    const invoke = frame(KIND.INVOKE, 7, Buffer.from([0x92, 0xa6, ...Buffer.from('upload'), 0x91, 0xd4, 0x26, 0x00, 0x01]));
    const chunk = (id: number) => frame(KIND.STREAM, id, Buffer.from([0x92, 0x00, 0x2a])); // [0, 42]

    // 1. More chunks than the two the window allows, before any credit beyond it.
    const a = rawClient(main.address);
    a.socket.write(Buffer.concat([hello, invoke]));
    await waitUntil(() => parseFrames(a.received()).frames.some((f) => f.readUInt8(4) === KIND.STREAM_CTRL), 5000, 'the first credit');
    a.socket.write(Buffer.concat([chunk(1), chunk(1), chunk(1)]));
    await a.closed;
    await waitUntil(() => errors.length === 1, 5000, 'an error event');
    expect(errors[0].code).toBe('ERR_IPC_BAD_FRAME');
    expect(errors[0].message).toMatch(/more chunks than its window/);
    // The handler's stream ends with the reason the connection closed.
    await expect(held[0].all()).rejects.toMatchObject({ code: 'ERR_IPC_DISCONNECTED' });

    // 2. A malformed credit for a stream main never made.
    const b = rawClient(main.address);
    b.socket.write(Buffer.concat([hello, frame(KIND.STREAM_CTRL, 5, Buffer.from([0x92, 0x00, 0xa1, 0x78]))]));
    await b.closed;
    await waitUntil(() => errors.length === 2, 5000, 'a second error event');
    expect(errors[1].code).toBe('ERR_IPC_BAD_FRAME');

    // 3. A chunk that itself holds a stream reference.
    const c = rawClient(main.address);
    c.socket.write(Buffer.concat([hello, invoke]));
    await waitUntil(() => held.length === 2, 5000, 'the second upload');
    c.socket.write(frame(KIND.STREAM, 1, Buffer.from([0x92, 0x00, 0xd4, 0x26, 0x00, 0x02])));
    await c.closed;
    await waitUntil(() => errors.length === 3, 5000, 'a third error event');
    expect(errors[2].code).toBe('ERR_IPC_BAD_FRAME');
    release();
    expect(main.peers.size).toBe(0);
  });
});
