/**
 * Limits on what a decoded message may declare. A message's arguments are spread into listener and handler
 * calls, so a peer that declares millions of them (a few bytes: a sparse array needs no bytes per hole) could
 * exhaust main's stack or heap. Each such message is a bad frame for its own connection only; a sender that
 * passes more than the limits gets a clear error before anything is written.
 */
import * as net from 'node:net';
import { describe, expect, test } from 'vitest';
import { type Any, exitsCleanly, ipcwire, isAlive, makeMain, once, runNode, sockPath, trackRaw, useHarness, waitUntil, within } from './helpers';
import { GOOD_RENDERER, KIND, captureHandshake, frame, parseFrames, rawClient } from './helpers/wire';

useHarness();


/** `[channel, args]` where args is a sparse-array extension declaring `length` elements and holding none. */
function sparseArgs(length: number): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(length);
  // fixarray(2), fixstr "c", fixext1 0x21 (the sparse-array marker), then its data: [uint32 length, []]
  return Buffer.concat([Buffer.from([0x92, 0xa1, 0x63, 0xd4, 0x21, 0x00, 0x92, 0xce]), len, Buffer.from([0x90])]);
}


describe('limits', () => {
  test('limits: the 13-byte message declaring 2^32-1 arguments is a bad frame; main keeps serving', { timeout: 60_000 }, async () => {
    const main = makeMain();
    let calls = 0;
    main.on('c', () => calls++);
    const errors: Any[] = [];
    main.peers.on('error', (err: Any) => errors.push(err));
    const { hello } = await captureHandshake(main);
    const good = runNode(GOOD_RENDERER, { address: main.address });
    const [event] = await once(main, 'up');
    const peer = event.sender;

    const payload = sparseArgs(0xffffffff);
    expect(payload.length).toBe(13);
    const cases: Array<[string, Buffer]> = [
      ['2^32-1 arguments as a message', frame(KIND.MESSAGE, 0, payload)],
      ['150,000 arguments as a sendSync on a listened channel', frame(KIND.SYNC, 1, sparseArgs(150_000))],
      ['150,000 arguments as an invoke', frame(KIND.INVOKE, 2, sparseArgs(150_000))],
      ['one argument more than the limit', frame(KIND.MESSAGE, 0, sparseArgs(ipcwire().MAX_ARGS + 1))],
    ];
    for (const [label, bad] of cases) {
      const raw = rawClient(main.address);
      raw.socket.write(Buffer.concat([hello, bad]));
      await within(raw.closed, 10_000, `${label}: main closing the connection`);
      await waitUntil(() => errors.length >= 1, 5000, `${label}: an error event`);
      const err = errors.shift();
      expect(err.code, label).toBe('ERR_IPC_BAD_FRAME');
      expect(err.message, label).toMatch(/arguments|Sparse array/);
      // Nothing of it reached a listener, and main is alive and serving.
      expect(calls, label).toBe(0);
      expect(await peer.invoke('ping', label)).toBe(`pong ${label}`);
    }
    expect(errors).toEqual([]);
    peer.send('bye');
    await exitsCleanly(good);
  });

  test('limits: a sparse array nested in an argument may not declare more than MAX_SPARSE_LENGTH elements', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const errors: Any[] = [];
    main.peers.on('error', (err: Any) => errors.push(err));
    const { hello } = await captureHandshake(main);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(0xffffffff);
    // [ "c", [ sparse(2^32-1) ] ]: the outer argument list is short, the array inside it is not.
    const payload = Buffer.concat([Buffer.from([0x92, 0xa1, 0x63, 0x91, 0xd4, 0x21, 0x00, 0x92, 0xce]), len, Buffer.from([0x90])]);
    const raw = rawClient(main.address);
    raw.socket.write(Buffer.concat([hello, frame(KIND.MESSAGE, 0, payload)]));
    await within(raw.closed, 10_000, 'main closing the connection');
    await waitUntil(() => errors.length === 1, 5000, 'an error event');
    expect(errors[0].code).toBe('ERR_IPC_BAD_FRAME');
    expect(errors[0].message).toContain('Sparse array of length 4294967295 exceeds the limit of 16777216');
  });

  test('limits: a nesting bomb (1 MiB of nested one-element arrays) is a bad frame, not a crash', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const errors: Any[] = [];
    main.peers.on('error', (err: Any) => errors.push(err));
    const { hello } = await captureHandshake(main);
    const payload = Buffer.concat([Buffer.from([0x92, 0xa1, 0x63, 0x91]), Buffer.alloc(1 << 20, 0x91), Buffer.from([0xc0])]);
    const raw = rawClient(main.address);
    raw.socket.write(Buffer.concat([hello, frame(KIND.MESSAGE, 0, payload)]));
    await within(raw.closed, 10_000, 'main closing the connection');
    await waitUntil(() => errors.length === 1, 5000, 'an error event');
    expect(errors[0].code).toBe('ERR_IPC_BAD_FRAME');
    // The decoder is usable afterwards: a real renderer round-trips nested values.
    main.handle('echo', (_e: Any, v: unknown) => v);
    const child = runNode(`out('r', await ipcwire.ipcRenderer.invoke('echo', [[[1, [2]]]]));`, { address: main.address });
    expect(await child.msg('r')).toEqual([[[1, [2]]]]);
    await exitsCleanly(child);
  });

  test('limits: MAX_ARGS arguments and a MAX_SPARSE_LENGTH sparse array travel; one more throws before sending', { timeout: 60_000 }, async () => {
    const main = makeMain();
    main.on('many', (e: Any, ...args: unknown[]) => (e.returnValue = [args.length, args[0], args[args.length - 1]]));
    main.handle('many', (_e: Any, ...args: unknown[]) => args.length);
    main.on('sparse', (e: Any, a: unknown[]) => (e.returnValue = [a.length, a[a.length - 1], Object.keys(a).length]));
    main.handle('echo-many', (e: Any) => e.sender.invoke('count', ...Array.from({ length: 8192 }, (_, i) => i)));
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const { MAX_ARGS, MAX_SPARSE_LENGTH } = ipcwire;
      r.handle('count', (e, ...args) => args.length);
      const args = Array.from({ length: MAX_ARGS }, (_, i) => i);
      out('sync', r.sendSync('many', ...args));
      out('invoke', await r.invoke('many', ...args));
      out('from-main', await r.invoke('echo-many'));
      const s = []; s[MAX_SPARSE_LENGTH - 1] = 'last';
      out('sparse', r.sendSync('sparse', s));
      const over = [...args, 'one more'];
      for (const [kind, call] of [['send', () => r.send('many', ...over)], ['sendSync', () => r.sendSync('many', ...over)]]) {
        try { call(); out(kind, 'no throw'); } catch (e) { out(kind, errInfo(e)); }
      }
      try { await r.invoke('many', ...over); out('invoke-over', 'resolved'); } catch (e) { out('invoke-over', errInfo(e)); }
      const longer = []; longer[MAX_SPARSE_LENGTH] = 1;
      try { r.send('sparse', { deep: [longer] }); out('sparse-over', 'no throw'); } catch (e) { out('sparse-over', errInfo(e)); }
      r.removeHandler('count');
    `,
      { address: main.address },
    );
    expect(await child.msg('sync')).toEqual([8192, 0, 8191]);
    expect(await child.msg('invoke')).toBe(8192);
    expect(await child.msg('from-main')).toBe(8192);
    expect(await child.msg('sparse')).toEqual([1 << 24, 'last', 1]);
    for (const kind of ['send', 'sendSync', 'invoke-over']) {
      const err = await child.msg(kind);
      expect(err.isError, kind).toBe(true);
      expect(err.code, kind).toBe('ERR_IPC_TOO_MANY_ARGS');
      expect(err.message, kind).toBe('A message may carry at most 8192 arguments; got 8193');
    }
    const sparse = await child.msg('sparse-over');
    expect(sparse.code).toBe('ERR_IPC_MESSAGE_TOO_LARGE');
    expect(sparse.message).toBe('args[0].deep[0] is a sparse array of length 16777217; the most a message may carry is 16777216');
    await exitsCleanly(child);
  });

  test('limits: a hostile main declaring 2^32-1 arguments cannot kill a renderer', { timeout: 60_000 }, async () => {
    const real = makeMain();
    const { welcome } = await captureHandshake(real);
    const address = sockPath();
    const server = trackRaw(
      net.createServer((s) => {
        s.on('error', () => {});
        let seen = Buffer.alloc(0);
        s.on('data', (c) => {
          const before = parseFrames(seen).frames.length;
          seen = Buffer.concat([seen, c]);
          if (before === 0 && parseFrames(seen).frames.length >= 1) s.write(Buffer.concat([welcome, frame(KIND.MESSAGE, 0, sparseArgs(0xffffffff))]));
        });
      }),
    );
    await new Promise<void>((r) => server.listen(address, r));
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      r.link.on('error', (e) => out('link-error', errInfo(e)));
      r.link.on('disconnect', (e) => out('disconnect', e && errInfo(e)));
      r.on('c', () => out('listener ran'));
      r.connect();
    `,
      { address },
    );
    const err = await child.msg('link-error');
    expect(err.code).toBe('ERR_IPC_BAD_FRAME');
    expect((await child.msg('disconnect')).code).toBe('ERR_IPC_BAD_FRAME');
    await exitsCleanly(child);
    expect(isAlive(child.pid)).toBe(false);
    server.close();
  });
});
