/**
 * Hostile peers: garbage, oversized or malformed frames close that connection with an error event
 * on ipcMain.peers while main keeps serving everyone else and loses nothing already accepted; a connection
 * that never completes the handshake is closed; msgpackr hostile payloads (headers declaring huge
 * arrays, maps or strings, record-definition extensions) inside
 * well-formed frames do not crash main; a frame split at any byte arrives intact and once.
 */
import * as net from 'node:net';
import { describe, expect, test } from 'vitest';
import { type Any, exitsCleanly, makeMain, nodeRequire, once, runNode, sha256, sockPath, trackRaw, useHarness, waitUntil, within } from './helpers';
import { GOOD_RENDERER, KIND, captureHandshake, frame, parseFrames, proxy, rawClient } from './helpers/wire';

useHarness();


async function goodRenderer(main: Any) {
  const child = runNode(GOOD_RENDERER, { address: main.address });
  const [event] = await once(main, 'up');
  return { child, peer: event.sender };
}


describe('hostile', () => {
  test('hostile: a raw client writing garbage is dropped with ERR_IPC_BAD_FRAME while other renderers keep working', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const errors: Any[] = [];
    main.peers.on('error', (err: Any, peer: Any) => errors.push({ err, peer }));
    const { child, peer } = await goodRenderer(main);
    const raw = rawClient(main.address);
    await raw.connected;
    // A small declared length, then bytes that are no frame at all (0xc1 is never used by msgpack).
    raw.socket.write(Buffer.concat([Buffer.from([16, 0, 0, 0]), Buffer.alloc(16, 0xc1)]));
    await raw.closed;
    await waitUntil(() => errors.length === 1, 5000, 'an error event');
    expect(errors[0].err.code).toBe('ERR_IPC_BAD_FRAME');
    expect(errors[0].err).toBeInstanceOf(Error);
    // The connection never became a peer: no peer, or one already destroyed and never listed.
    if (errors[0].peer) {
      expect(errors[0].peer.isDestroyed()).toBe(true);
      expect(main.peers.get(errors[0].peer.id)).toBeUndefined();
    }
    expect(await peer.invoke('ping', 1)).toBe('pong 1');
    expect(main.peers.size).toBe(1);
    // Text garbage reads as a huge length: dropped as well.
    const text = rawClient(main.address);
    text.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await text.closed;
    await waitUntil(() => errors.length === 2, 5000, 'a second error event');
    expect(['ERR_IPC_BAD_FRAME', 'ERR_IPC_FRAME_TOO_LARGE']).toContain(errors[1].err.code);
    expect(await peer.invoke('ping', 2)).toBe('pong 2');
    peer.send('bye');
    await exitsCleanly(child);
  });

  test('hostile: a huge length prefix (0xFFFFFFF0) is dropped with ERR_IPC_FRAME_TOO_LARGE before allocating', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const errors: Any[] = [];
    main.peers.on('error', (err: Any) => errors.push(err));
    const { child, peer } = await goodRenderer(main);
    const rssBefore = process.memoryUsage().rss;
    const raw = rawClient(main.address);
    const head = Buffer.alloc(9);
    head.writeUInt32LE(0xfffffff0, 0);
    head.writeUInt8(KIND.HELLO, 4);
    raw.socket.write(head);
    await raw.closed;
    await waitUntil(() => errors.length === 1, 5000, 'an error event');
    expect(errors[0].code).toBe('ERR_IPC_FRAME_TOO_LARGE');
    // Just above the documented default maximum (512 MiB) is refused as well.
    const justOver = rawClient(main.address);
    const head512 = Buffer.alloc(9);
    head512.writeUInt32LE(512 * 1024 * 1024 + 4096, 0);
    head512.writeUInt8(KIND.HELLO, 4);
    justOver.socket.write(head512);
    await justOver.closed;
    await waitUntil(() => errors.length === 2, 5000, 'a second error event');
    expect(errors[1].code).toBe('ERR_IPC_FRAME_TOO_LARGE');
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(512 * 1024 * 1024);
    // Just above the configured maximum is refused too, right from the header.
    const small = makeMain({ maxMessageSize: 1024 });
    const smallErrors: Any[] = [];
    small.peers.on('error', (err: Any) => smallErrors.push(err));
    const raw2 = rawClient(small.address);
    const head2 = Buffer.alloc(4);
    head2.writeUInt32LE(64 * 1024, 0);
    raw2.socket.write(head2);
    await raw2.closed;
    await waitUntil(() => smallErrors.length === 1, 5000, 'an error event');
    expect(smallErrors[0].code).toBe('ERR_IPC_FRAME_TOO_LARGE');
    expect(await peer.invoke('ping', 'still')).toBe('pong still');
    peer.send('bye');
    await exitsCleanly(child);
  });

  test('hostile: a client that never completes the handshake is closed after handshakeTimeout', { timeout: 30_000 }, async () => {
    const main = makeMain({ handshakeTimeout: 300 });
    const errors: Any[] = [];
    main.peers.on('error', (err: Any) => errors.push(err));
    const silent = rawClient(main.address);
    const partial = rawClient(main.address);
    await partial.connected;
    partial.socket.write(Buffer.from([20, 0])); // half a length prefix, then nothing
    await silent.closed;
    await partial.closed;
    await waitUntil(() => errors.length === 2, 5000, 'two error events');
    expect(errors.map((e) => e.code)).toEqual(['ERR_IPC_HANDSHAKE_TIMEOUT', 'ERR_IPC_HANDSHAKE_TIMEOUT']);
    expect(main.peers.size).toBe(0);
    // Main still serves.
    const { child, peer } = await goodRenderer(main);
    expect(await peer.invoke('ping', 3)).toBe('pong 3');
    peer.send('bye');
    await exitsCleanly(child);
  });

  test('hostile: a handshake with another protocol version is refused with ERR_IPC_PROTOCOL_VERSION', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const { hello } = await captureHandshake(main);
    const errors: Any[] = [];
    main.peers.on('error', (err: Any) => errors.push(err));
    // The captured HELLO with only its version changed (decoded and re-encoded with msgpackr).
    const { unpack, Packr } = nodeRequire('msgpackr');
    const body = unpack(hello.subarray(9));
    expect(body.version).toBeTypeOf('number');
    expect(body.version).toBe(3);
    // Version 2 (before descriptor passing) and a version from the future.
    for (const [i, version] of [2, body.version + 1000].entries()) {
      const patched = frame(KIND.HELLO, hello.readUInt32LE(5), new Packr().pack({ ...body, version }));
      const raw = rawClient(main.address);
      raw.socket.write(patched);
      await raw.closed;
      await waitUntil(() => errors.length === i + 1, 5000, 'an error event');
      expect(errors[i].code).toBe('ERR_IPC_PROTOCOL_VERSION');
      expect(errors[i].message).toContain(`speaks ${version}`);
      expect(main.peers.size).toBe(0);
      // The client was told why, in a frame, before being closed (a clear error, not garbage).
      const answer = parseFrames(raw.received()).frames;
      expect(answer.length).toBeGreaterThanOrEqual(1);
      expect(answer[0].readUInt8(4)).toBe(KIND.WELCOME);
      expect(answer[0].includes('ERR_IPC_PROTOCOL_VERSION')).toBe(true);
    }
  });

  test('hostile: msgpackr hostile payloads inside well-formed frames do not crash main', { timeout: 60_000 }, async () => {
    const main = makeMain();
    const { hello } = await captureHandshake(main);
    const { child, peer } = await goodRenderer(main);
    main.on('ch', () => {});
    main.on('ch-sync', (e: Any) => (e.returnValue = 1));
    main.handle('ch-inv', () => 1);
    const errors: Any[] = [];
    main.peers.on('error', (err: Any) => errors.push(err));
    const array16Chain = Buffer.alloc(3 * 24_000);
    for (let i = 0; i < array16Chain.length; i += 3) array16Chain.set([0xdc, 0xff, 0xff], i);
    const payloads: Array<[string, Buffer]> = [
      ['array32 header', Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff])],
      ['chain of array16 headers (72 KB)', array16Chain],
      ['map32 header', Buffer.from([0xdf, 0xff, 0xff, 0xff, 0xff])],
      ['str32 huge', Buffer.from([0xdb, 0xff, 0xff, 0xff, 0xf0, 0x61])],
      ['bin32 huge', Buffer.from([0xc6, 0xff, 0xff, 0xff, 0xf0, 0x00])],
      ['ext32 huge', Buffer.from([0xc9, 0xff, 0xff, 0xff, 0xf0, 0x01])],
      ['never-used byte', Buffer.from([0xc1])],
      ['truncated array', Buffer.from([0x93, 0x01])],
      ['unknown fixext', Buffer.from([0xd4, 0x7f, 0x00])],
      ['record definition abuse', Buffer.from([0xd4, 0x72, 0x40, 0x92, 0xa1, 0x61, 0xa1, 0x62])],
      ['nil', Buffer.from([0xc0])],
      ['wrong shape [1, 2]', Buffer.from([0x92, 0x01, 0x02])],
      ['wrong shape ["ch", 5]', Buffer.from([0x92, 0xa2, 0x63, 0x68, 0x05])],
      ['wrong shape {"__proto__": {"x": 1}}', Buffer.from([0x81, 0xa9, ...Buffer.from('__proto__'), 0x81, 0xa1, 0x78, 0x01])],
      ['empty payload', Buffer.alloc(0)],
    ];
    const kinds = [KIND.MESSAGE, KIND.SYNC, KIND.INVOKE, KIND.SYNC_REPLY, KIND.INVOKE_REPLY, KIND.HELLO, KIND.BLOB, 200];
    const clients: Array<ReturnType<typeof rawClient>> = [];
    for (const kind of kinds) {
      for (const [, payload] of payloads) {
        const raw = rawClient(main.address);
        raw.socket.write(Buffer.concat([hello, frame(kind, 1, payload)]));
        clients.push(raw);
      }
    }
    // Left open: an INVOKE_REPLY that decodes but answers no call is dropped, and a BLOB frame waits for the
    // message that would claim it. Every other connection is refused: closed, with one ERR_IPC_BAD_FRAME each.
    const label = (i: number) => `${kinds[Math.floor(i / payloads.length)]}:${payloads[i % payloads.length][0]}`;
    const expectedOpen = [
      ...['never-used byte', 'nil', 'wrong shape [1, 2]', 'wrong shape ["ch", 5]', 'wrong shape {"__proto__": {"x": 1}}']
        .map((p) => `${KIND.INVOKE_REPLY}:${p}`),
      ...payloads.map(([p]) => `${KIND.BLOB}:${p}`),
    ];
    const refused = clients.length - expectedOpen.length;
    await waitUntil(() => clients.filter((c) => c.isClosed()).length >= refused && errors.length >= refused, 20_000,
      'main to refuse the hostile connections');
    await new Promise((r) => setTimeout(r, 200)); // nothing more is closed or reported after that
    expect(clients.map((c, i) => (c.isClosed() ? null : label(i))).filter(Boolean)).toEqual(expectedOpen);
    expect(errors).toHaveLength(refused);
    for (const e of errors) {
      expect(e).toBeInstanceOf(Error);
      expect(e.code).toBe('ERR_IPC_BAD_FRAME');
    }
    expect(({} as Any).x).toBeUndefined();
    expect(await peer.invoke('ping', 'alive')).toBe('pong alive');
    for (const c of clients) c.socket.destroy();
    peer.send('bye');
    await exitsCleanly(child);
  });

  test('hostile: an oversized frame after valid ones closes only that connection; everything accepted before is emitted', { timeout: 30_000 }, async () => {
    const main = makeMain({ maxMessageSize: 1024 * 1024 });
    const got: number[] = [];
    main.on('m', (_e: Any, i: number) => got.push(i));
    const errors: Any[] = [];
    main.peers.on('error', (err: Any, peer: Any) => errors.push({ err, peer }));
    const disconnects: Any[] = [];
    main.peers.on('disconnect', (peer: Any, err: Any) => disconnects.push({ peer, err }));
    const { child: good, peer: goodPeer } = await goodRenderer(main);
    const px = proxy(main.address);
    const victim = runNode(
      `
      const r = ipcwire.ipcRenderer;
      r.on('never', () => {});
      await r.invoke('ready');
      out('ready');
      await readLine();
      closeStdin();
      for (let i = 0; i < 100; i++) r.send('m', i);
      out('sent');
    `,
      { address: px.address },
    );
    main.handle('ready', () => true);
    await victim.msg('ready'); // connected, and nothing of it still in flight through the proxy
    px.hold = true;
    victim.send('go');
    await victim.msg('sent');
    await waitUntil(() => parseFrames(px.held).frames.length === 100, 5000, 'the 100 frames to reach the proxy');
    const badHead = Buffer.alloc(9);
    badHead.writeUInt32LE(2 * 1024 * 1024, 0);
    badHead.writeUInt8(KIND.MESSAGE, 4);
    px.release(badHead); // the 100 messages and the bad header in one write
    await waitUntil(() => disconnects.length === 1, 5000, 'the victim to be disconnected');
    expect(got).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(disconnects[0].err?.code).toBe('ERR_IPC_FRAME_TOO_LARGE');
    expect(disconnects[0].peer).not.toBe(goodPeer);
    expect(errors.map((e) => e.err.code)).toEqual(['ERR_IPC_FRAME_TOO_LARGE']);
    expect(errors[0].peer).toBe(disconnects[0].peer);
    expect(await goodPeer.invoke('ping', 4)).toBe('pong 4');
    // The victim loses its connection and, with it, its reason to live.
    await exitsCleanly(victim);
    goodPeer.send('bye');
    await exitsCleanly(good);
    px.close();
  });

  test('hostile: out-of-band byte frames adding up beyond maxMessageSize close that connection', { timeout: 30_000 }, async () => {
    const main = makeMain({ maxMessageSize: 1024 * 1024 });
    const { hello } = await captureHandshake(main);
    const { child, peer } = await goodRenderer(main);
    const errors: Any[] = [];
    main.peers.on('error', (err: Any) => errors.push(err));
    const raw = rawClient(main.address);
    raw.socket.write(hello);
    // Each frame is under the maximum; together, with no message to claim them, they are not.
    for (let i = 0; i < 8; i++) raw.socket.write(frame(KIND.BLOB, 0, Buffer.alloc(512 * 1024, i)));
    await within(raw.closed, 10_000, 'main closing the connection');
    await waitUntil(() => errors.length === 1, 5000, 'an error event');
    expect(errors[0].code).toBe('ERR_IPC_FRAME_TOO_LARGE');
    expect(errors[0].message).toBe('Blobs of one message exceed maxMessageSize (1048576 bytes)');
    expect(await peer.invoke('ping', 'blob')).toBe('pong blob');
    peer.send('bye');
    await exitsCleanly(child);
  });

  test('hostile: a renderer facing malformed or oversized frames from a fake main fails cleanly, blocked or not', { timeout: 60_000 }, async () => {
    const real = makeMain();
    const { welcome } = await captureHandshake(real);
    const array32 = frame(KIND.MESSAGE, 0, Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff]));
    const huge = Buffer.alloc(9);
    huge.writeUInt32LE(0xfffffff0, 0);
    huge.writeUInt8(KIND.MESSAGE, 4);
    // [label, bad frame, during sendSync, the call's code]: a bad frame ends the connection, so the pending call
    // fails with ERR_IPC_DISCONNECTED; only a sync reply that is itself malformed is reported as ERR_IPC_BAD_FRAME.
    const cases: Array<[string, Buffer, boolean, string]> = [
      ['huge length', huge, false, 'ERR_IPC_DISCONNECTED'],
      ['array32 payload', array32, false, 'ERR_IPC_DISCONNECTED'],
      ['huge length during sendSync', huge, true, 'ERR_IPC_DISCONNECTED'],
      ['array32 payload as the sync reply', frame(KIND.SYNC_REPLY, 1, Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff])), true, 'ERR_IPC_BAD_FRAME'],
    ];
    for (const [label, bad, duringSync, callCode] of cases) {
      const address = sockPath();
      // A fake main: answers the handshake as a real one did, then sends the bad frame when asked to.
      const server = trackRaw(
        net.createServer((s) => {
          s.on('error', () => {});
          let seen = Buffer.alloc(0);
          s.on('data', (c) => {
            const before = parseFrames(seen).frames.length;
            seen = Buffer.concat([seen, c]);
            const frames = parseFrames(seen).frames;
            if (before === 0 && frames.length >= 1) s.write(welcome);
            // The renderer's second frame is its invoke or sendSync: answer it with the bad frame.
            if (before < 2 && frames.length >= 2) s.write(bad);
          });
        }),
      );
      await new Promise<void>((r) => server.listen(address, r));
      const child = runNode(
        `
        const r = ipcwire.ipcRenderer;
        r.link.on('error', (e) => out('link-error', errInfo(e)));
        r.link.on('disconnect', (e) => out('disconnect', e && errInfo(e)));
        r.on('anything', () => {});
        r.connect();
        if (${duringSync}) {
          try { r.sendSync('x'); out('call', 'returned'); } catch (e) { out('call', errInfo(e)); }
        } else {
          try { await r.invoke('x'); out('call', 'resolved'); } catch (e) { out('call', errInfo(e)); }
        }
        try { r.send('later'); out('later', 'no throw'); } catch (e) { out('later', e.code); }
      `,
        { address },
      );
      const call = await child.msg('call');
      expect(call?.isError, `${label}: ${JSON.stringify(call)}`).toBe(true);
      expect(call.code, label).toBe(callCode);
      expect(await child.msg('disconnect')).toBeDefined();
      expect(await child.msg('later'), label).toBe('ERR_IPC_DISCONNECTED');
      // The connection is gone, so its listener no longer holds the renderer: it ends by itself.
      await exitsCleanly(child);
      server.close();
    }
  });

  test('hostile: frames trickled one byte at a time both ways arrive intact and once', { timeout: 60_000 }, async () => {
    const main = makeMain();
    const got: Any[] = [];
    main.on('m', (_e: Any, i: number, hash: string, buf: Buffer) => got.push([i, hash === sha256(buf)]));
    main.on('s', (e: Any, buf: Buffer) => {
      e.sender.send('back', 'during-sync');
      e.returnValue = { len: buf.length, hash: sha256(buf) };
    });
    main.handle('i', (_e: Any, buf: Buffer) => ({ len: buf.length, hash: sha256(buf) }));
    const px = proxy(main.address, { trickle: { up: true, down: true } });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const back = [];
      r.on('back', (e, v) => back.push(v));
      const blob = (n) => require('node:crypto').randomBytes(n);
      for (let i = 0; i < 3; i++) { const b = blob(100 + i * 300); r.send('m', i, sha256(b), b); }
      { const b = blob(64 * 1024); r.send('m', 3, sha256(b), b); } // large enough to travel out of band
      const b1 = blob(1500);
      const s = r.sendSync('s', b1);
      const b2 = blob(700);
      const v = await r.invoke('i', b2);
      while (back.length < 2) await sleep(5);
      r.removeAllListeners('back');
      out('r', { s: s.hash === sha256(b1) && s.len === 1500, v: v.hash === sha256(b2) && v.len === 700, back });
    `,
      { address: px.address },
    );
    main.once('s', (e: Any) => e.sender.send('back', 'after-sync'));
    expect(await child.msg('r', 50_000)).toEqual({ s: true, v: true, back: ['during-sync', 'after-sync'] });
    await exitsCleanly(child);
    expect(got).toEqual([
      [0, true],
      [1, true],
      [2, true],
      [3, true],
    ]);
    px.close();
  });
});
