/**
 * OS handles in messages (Unix), with real processes and real sockets: a raw descriptor (IpcHandle) in send,
 * sendSync's returnValue and an invoke's result; accepted TCP connections handed by main to a renderer that
 * serves them; a listening net.Server handed to a renderer that accepts on it; and descriptors arriving with a
 * message that fails to decode, or that nothing adopts, closed (descriptors counted in main).
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { ROOT, catchSync, exitsCleanly, ipcwire, makeMain, nodeRequire, openFds, runNode, tmpDir, useHarness, waitUntil } from './helpers';

useHarness();

const unix = process.platform !== 'win32';

function fileWith(content: string): string {
  const file = path.join(tmpDir(), 'f.txt');
  fs.writeFileSync(file, content);
  return file;
}

/** What the descriptor of an IpcHandle reads from its start (pread: the shared file offset is left alone). */
function readAll(fd: number): string {
  const buf = Buffer.alloc(256);
  const n = fs.readSync(fd, buf, 0, buf.length, 0);
  return buf.subarray(0, n).toString();
}

/** Connects to 127.0.0.1:port, writes `text`, resolves with everything read until the server ends. */
function ask(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const c = net.connect(port, '127.0.0.1', () => c.write(text));
    c.on('data', (d) => chunks.push(d));
    c.on('end', () => {
      c.destroy();
      resolve(Buffer.concat(chunks).toString());
    });
    c.on('error', reject);
  });
}

describe.runIf(unix)('handles', () => {
  test('handles: an IpcHandle travels in send, in sendSync\'s returnValue and in an invoke result; the sender\'s is closed unless kept open', { timeout: 30_000 }, async () => {
    const { IpcHandle } = ipcwire();
    const main = makeMain();
    const mainFile = fileWith('from main');
    const got: string[] = [];
    main.on('file', (_e: any, h: any, label: string) => {
      expect(h).toBeInstanceOf(IpcHandle);
      got.push(`${label}:${readAll(h.fd)}`);
      h.close();
    });
    main.on('sync', (e: any) => {
      const h = new IpcHandle(fs.openSync(mainFile, 'r'));
      e.returnValue = { h, n: 1 }; // sent: closed here once the reply is written
    });
    main.handle('get', () => new IpcHandle(fs.openSync(mainFile, 'r')));
    const child = runNode(`
      const fs = require('node:fs');
      const { IpcHandle } = ipcwire;
      const r = ipcwire.ipcRenderer;
      const { keepOpen } = ipcwire;
      const mine = keepOpen(new IpcHandle(fs.openSync(${JSON.stringify(fileWith('from the renderer'))}, 'r')));
      r.send('file', mine, 'sent');
      r.send('file', { deep: [mine] }.deep[0], 'again');
      const read = (h) => { const b = Buffer.alloc(64); return b.subarray(0, fs.readSync(h.fd, b, 0, 64, 0)).toString(); };
      out('kept', read(mine));
      mine.close();
      const { h, n } = r.sendSync('sync');
      out('sync', [h instanceof IpcHandle, read(h), n]);
      h.close();
      const g = await r.invoke('get');
      out('invoke', [g instanceof IpcHandle, read(g)]);
      g.close();
      r.close();
    `, { address: main.address });
    expect(await child.msg('kept')).toBe('from the renderer');
    expect(await child.msg('sync')).toEqual([true, 'from main', 1]);
    expect(await child.msg('invoke')).toEqual([true, 'from main']);
    await exitsCleanly(child);
    await waitUntil(() => got.length === 2, 10_000, 'both files');
    expect(got).toEqual(['sent:from the renderer', 'again:from the renderer']);
  });

  test('handles: a postMessage carries transferred ports and OS handles together, each where it belongs', { timeout: 30_000 }, async () => {
    const { IpcHandle, MessageChannelMain } = ipcwire();
    const main = makeMain();
    const file = fileWith('with a port');
    const child = runNode(`
      const fs = require('node:fs');
      const r = ipcwire.ipcRenderer;
      r.on('both', (event, message) => {
        const [port] = event.ports;
        const b = Buffer.alloc(64);
        const text = b.subarray(0, fs.readSync(message.h.fd, b, 0, 64, 0)).toString();
        message.h.close();
        port.on('message', ({ data }) => {
          out('got', [text, message.n, data, event.ports.length]);
          port.close();
          r.close();
        });
        port.start();
      });
      r.send('ready');
    `, { address: main.address });
    const [{ sender: peer }] = await new Promise<any[]>((res) => main.once('ready', (...a: any[]) => res(a)));
    const { port1, port2 } = new MessageChannelMain();
    peer.postMessage('both', { h: new IpcHandle(fs.openSync(file, 'r')), n: 7 }, [port1]);
    port2.postMessage('through the port');
    expect(await child.msg('got')).toEqual(['with a port', 7, 'through the port', 1]);
    port2.close();
    await exitsCleanly(child);
  });

  test('handles: main hands accepted TCP connections to a renderer that serves them', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const child = runNode(`
      const net = require('node:net');
      const r = ipcwire.ipcRenderer;
      let served = 0;
      r.on('conn', (_e, sock, n) => {
        if (!(sock instanceof net.Socket)) throw new Error('not a socket');
        sock.on('data', (d) => sock.end('renderer ' + process.pid + ' #' + n + ': ' + d));
        if (++served === 3) out('served', served);
      });
      r.send('ready');
      await new Promise((res) => r.once('done', res));
      r.close();
    `, { address: main.address });
    const [{ sender: peer }] = await new Promise<any[]>((res) => main.once('ready', (...a: any[]) => res(a)));
    const server = net.createServer({ pauseOnConnect: true });
    let n = 0;
    const sent: net.Socket[] = [];
    server.on('connection', (sock) => {
      peer.send('conn', sock, ++n);
      sent.push(sock);
    });
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
    const port = (server.address() as net.AddressInfo).port;
    const answers = await Promise.all([ask(port, 'a'), ask(port, 'b'), ask(port, 'c')]);
    expect(answers.sort()).toEqual([1, 2, 3].map((i) => answers.find((a) => a.includes(`#${i}:`))).sort());
    for (const a of answers) expect(a).toMatch(new RegExp(`^renderer ${child.pid} #\\d: [abc]$`));
    // As child_process: the socket is closed in the sending process.
    expect(sent.every((s) => s.destroyed)).toBe(true);
    expect(await child.msg('served')).toBe(3);
    await new Promise<void>((res) => server.close(() => res()));
    peer.send('done');
    await exitsCleanly(child);
  });

  test('handles: a listening net.Server handed to a renderer accepts there', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const child = runNode(`
      const net = require('node:net');
      const r = ipcwire.ipcRenderer;
      const server = await r.invoke('server');
      if (!(server instanceof net.Server)) throw new Error('not a server');
      server.on('connection', (s) => s.end('accepted by ' + process.pid));
      if (!server.listening) await new Promise((res) => server.once('listening', res));
      out('listening', server.address().port);
      await new Promise((res) => r.once('done', res));
      server.close();
      r.close();
    `, { address: main.address });
    const server = net.createServer(() => {
      throw new Error('main accepted a connection after handing its server on');
    });
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
    const port = (server.address() as net.AddressInfo).port;
    let peer: any;
    main.handle('server', (e: any) => {
      peer = e.sender;
      return server;
    });
    expect(await child.msg('listening')).toBe(port);
    // The server stays open in main (shared, as with child_process); main stops accepting so the renderer does.
    expect(server.listening).toBe(true);
    await new Promise<void>((res) => server.close(() => res()));
    expect(await ask(port, 'x')).toBe(`accepted by ${child.pid}`);
    peer.send('done');
    await exitsCleanly(child);
  });

  test('handles: descriptors that come with a message that fails to decode, or that nothing adopts, are closed', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const file = fileWith('secret');
    const errors: any[] = [];
    main.peers.on('error', (err: any) => errors.push(err));
    const received: unknown[] = [];
    main.on('plain', (_e: any, v: unknown) => received.push(v));
    const child = runNode(`
      const fs = require('node:fs');
      const r = ipcwire.ipcRenderer;
      await r.invoke('nothing').catch(() => {}); // the handshake is done
      out('ready', true);
      await readLine();
      const fd = fs.openSync(${JSON.stringify(file)}, 'r');
      const conn = r.wire.conn;
      // Three descriptors with a message that adopts none of them.
      conn.writeHandles([fd, fd, fd]);
      r.send('plain', 42);
      await r.invoke('nothing').catch(() => {});
      out('plain', true);
      await readLine();
      // Five with a message that does not decode (0xc1 is no msgpack type).
      conn.writeHandles([fd, fd, fd, fd, fd]);
      conn.write(3, 0, Buffer.from([0xc1]));
      fs.closeSync(fd);
    `, { address: main.address });
    expect(await child.msg('ready')).toBe(true);
    const before = openFds().length; // with the child's pipes and its connection
    child.send('go');
    expect(await child.msg('plain')).toBe(true);
    expect(received).toEqual([42]);
    // main's descriptors: the peer's connection, nothing else left from the three.
    const open = openFds();
    expect(open.filter((f) => f.endsWith(file)).length).toBe(0);
    expect(open.length, open.join(' ')).toBe(before);
    child.send('go');
    await waitUntil(() => errors.length === 1, 10_000, 'the peer to be cut off');
    expect(errors[0].code).toBe('ERR_IPC_BAD_FRAME');
    await exitsCleanly(child);
    // The harness checks that nothing is left once the child is gone; here: none of the five either.
    expect(openFds().filter((f) => f.endsWith(file)).length).toBe(0);
  });

  test('handles: a socket with bytes already read is refused; keepOpen keeps the sender\'s; a renderer\'s handler returns a socket to main', { timeout: 30_000 }, async () => {
    const { keepOpen } = ipcwire();
    const main = makeMain();
    const child = runNode(`
      const net = require('node:net');
      const r = ipcwire.ipcRenderer;
      let kept;
      r.on('kept', (_e, sock) => { kept = sock; out('kept', sock instanceof net.Socket); });
      r.handle('dial', (_e, port) => new Promise((res) => { const s = net.connect(port, '127.0.0.1', () => res(s)); }));
      r.send('ready');
      await new Promise((res) => r.once('done', res));
      kept.destroy();
      r.close();
    `, { address: main.address });
    const [{ sender: peer }] = await new Promise<any[]>((res) => main.once('ready', (...a: any[]) => res(a)));
    const accepted: net.Socket[] = [];
    const server = net.createServer((s) => accepted.push(s));
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
    const port = (server.address() as net.AddressInfo).port;
    const client = net.connect(port, '127.0.0.1');
    await waitUntil(() => accepted.length === 1, 10_000, 'the connection');
    const [busy] = accepted;
    busy.pause();
    client.write('already here');
    await waitUntil(() => busy.readableLength > 0, 10_000, 'bytes read by main');
    const err = catchSync(() => peer.send('kept', busy));
    expect(err.code).toBe('ERR_IPC_UNCLONABLE');
    expect(err.message).toMatch(/already read here/);
    expect(busy.destroyed).toBe(false);
    // keepOpen: the renderer gets the socket, main's stays usable.
    busy.resume(); // main takes what it read, then hands the socket on and keeps its own
    busy.read();
    peer.send('kept', keepOpen(busy));
    expect(await child.msg('kept')).toBe(true);
    expect(busy.destroyed).toBe(false);
    // A renderer's handler returns a socket it connected: main gets a working one.
    const dialed: net.Socket = await peer.invoke('dial', port);
    expect(dialed).toBeInstanceOf(net.Socket);
    await waitUntil(() => accepted.length === 2, 10_000, 'the renderer\'s connection');
    const got = new Promise<string>((res) => accepted[1].once('data', (d) => res(d.toString())));
    dialed.write('from the dialed socket');
    expect(await got).toBe('from the dialed socket');
    dialed.destroy();
    busy.destroy();
    client.destroy();
    for (const s of accepted) s.destroy();
    await new Promise<void>((res) => server.close(() => res()));
    peer.send('done');
    await exitsCleanly(child);
  });

  test('handles: a message referring to descriptors that did not come with it is refused, and those that did are closed', { timeout: 30_000 }, async () => {
    const { IpcHandle } = ipcwire();
    const { encodeMessage } = nodeRequire(path.join(ROOT, 'dist', 'cjs', 'codec.js'));
    const file = fileWith('forged');
    // A message with two handle values, sent with one descriptor only.
    const forged = encodeMessage('forged', [new IpcHandle(fs.openSync(file, 'r')), new IpcHandle(fs.openSync(file, 'r'))]);
    for (const fd of forged.handles) fs.closeSync(fd); // encoding alone sends nothing: the handles' own descriptors
    const main = makeMain();
    const errors: any[] = [];
    main.peers.on('error', (err: any) => errors.push(err));
    main.on('forged', () => {
      throw new Error('a forged message was delivered');
    });
    const child = runNode(`
      const fs = require('node:fs');
      const r = ipcwire.ipcRenderer;
      await r.invoke('nothing').catch(() => {});
      const fd = fs.openSync(${JSON.stringify(file)}, 'r');
      r.wire.conn.writeHandles([fd]);
      fs.closeSync(fd);
      r.wire.conn.write(3, 0, Buffer.from(${JSON.stringify(forged.payload.toString('hex'))}, 'hex'));
      out('sent', true);
    `, { address: main.address });
    expect(await child.msg('sent')).toBe(true);
    await waitUntil(() => errors.length === 1, 10_000, 'the peer to be cut off');
    expect(errors[0].code).toBe('ERR_IPC_BAD_FRAME');
    expect(errors[0].message).toMatch(/did not come with the message/);
    await exitsCleanly(child);
    await waitUntil(() => openFds().every((f) => !f.endsWith(file)), 10_000, 'the descriptor closed');
  });
});
