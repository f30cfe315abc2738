/**
 * Large messages: hundreds of MiB work, byte-equal; a message larger than the peer accepts is refused
 * before sending.
 */
import { describe, expect, test } from 'vitest';
import { catchSync, exitsCleanly, makeMain, once, runNode, sha256, useHarness } from './helpers';

useHarness();

const MiB = 1024 * 1024;

describe('large', () => {
  test('large: a 256 MiB Buffer round-trips through invoke byte-equal, both directions', { timeout: 240_000 }, async () => {
    const main = makeMain();
    let mainSaw: any;
    main.handle('echo', (_e: any, buf: Buffer, hash: string) => {
      mainSaw = { isBuffer: Buffer.isBuffer(buf), length: buf.length, equal: sha256(buf) === hash };
      return buf; // back to the renderer: the main → renderer direction
    });
    const child = runNode(
      `
      const size = 256 * 1024 * 1024;
      const buf = Buffer.allocUnsafe(size);
      // A random block of prime length repeated: any shifted, dropped or duplicated chunk changes the hash.
      buf.fill(require('node:crypto').randomBytes(1048573));
      const hash = sha256(buf);
      const back = await ipcwire.ipcRenderer.invoke('echo', buf, hash);
      out('r', { isBuffer: Buffer.isBuffer(back), length: back.length, equal: sha256(back) === hash });
    `,
      { address: main.address, execArgv: ['--max-old-space-size=4096'] },
    );
    expect(await child.msg('r', 200_000)).toEqual({ isBuffer: true, length: 256 * MiB, equal: true });
    expect(mainSaw).toEqual({ isBuffer: true, length: 256 * MiB, equal: true });
    await exitsCleanly(child);
    mainSaw = undefined;
  });

  test('large: 64 MiB through sendSync and back through returnValue, byte-equal', { timeout: 60_000 }, async () => {
    const main = makeMain();
    main.on('big', (event: any, buf: Buffer) => {
      // Return a transformed copy so that the answer cannot be an echo of stale bytes.
      const copy = Buffer.from(buf);
      copy.reverse();
      event.returnValue = copy;
    });
    const child = runNode(
      `
      const buf = require('node:crypto').randomBytes(64 * 1024 * 1024);
      const back = ipcwire.ipcRenderer.sendSync('big', buf);
      out('r', { length: back.length, reversed: sha256(back) === sha256(Buffer.from(buf).reverse()) });
    `,
      { address: main.address },
    );
    expect(await child.msg('r', 50_000)).toEqual({ length: 64 * MiB, reversed: true });
    await exitsCleanly(child);
  });

  test('large: 32 MiB from main to a renderer through peer.send and peer.invoke, byte-equal', { timeout: 60_000 }, async () => {
    const main = makeMain();
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      r.on('big', (e, buf, hash) => out('send', { isBuffer: Buffer.isBuffer(buf), equal: sha256(buf) === hash }));
      r.handle('big', (e, buf) => sha256(buf));
      r.once('end', () => { r.removeAllListeners('big'); r.removeHandler('big'); });
      r.send('ready');
    `,
      { address: main.address },
    );
    const [event] = await once(main, 'ready');
    const buf = Buffer.alloc(32 * MiB, 7);
    buf.writeUInt32LE(0xdeadbeef, 16 * MiB + 3);
    const hash = sha256(buf);
    event.sender.send('big', buf, hash);
    expect(await event.sender.invoke('big', buf)).toBe(hash);
    expect(await child.msg('send')).toEqual({ isBuffer: true, equal: true });
    event.sender.send('end');
    await exitsCleanly(child);
  });

  test('large: a message larger than main accepts is refused before sending with ERR_IPC_MESSAGE_TOO_LARGE', { timeout: 30_000 }, async () => {
    const main = makeMain({ maxMessageSize: 1 * MiB });
    const got: number[] = [];
    main.on('m', (_e: any, b: Buffer) => got.push(b.length));
    main.on('s', (e: any, b: Buffer) => (e.returnValue = b.length));
    main.handle('i', (_e: any, b: Buffer) => b.length);
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      r.send('m', Buffer.alloc(1000));
      await r.invoke('i', Buffer.alloc(10)); // by its answer, the handshake has told the renderer main's limit
      const res = {};
      try { r.send('m', Buffer.alloc(2 * 1024 * 1024)); res.send = 'no throw'; } catch (e) { res.send = errInfo(e); }
      try { r.sendSync('s', Buffer.alloc(2 * 1024 * 1024)); res.sendSync = 'no throw'; } catch (e) { res.sendSync = errInfo(e); }
      try { await r.invoke('i', Buffer.alloc(2 * 1024 * 1024)); res.invoke = 'resolved'; } catch (e) { res.invoke = errInfo(e); }
      res.after = [r.sendSync('s', Buffer.alloc(512 * 1024)), await r.invoke('i', Buffer.alloc(100))];
      r.send('m', Buffer.alloc(2000));
      out('r', res);
    `,
      { address: main.address },
    );
    const res = await child.msg('r');
    for (const k of ['send', 'sendSync', 'invoke']) {
      expect(res[k].code, k).toBe('ERR_IPC_MESSAGE_TOO_LARGE');
      expect(res[k].isError, k).toBe(true);
    }
    expect(res.after).toEqual([512 * 1024, 100]);
    await exitsCleanly(child);
    await new Promise((r) => setTimeout(r, 50));
    for (let i = 0; i < 200 && got.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(got).toEqual([1000, 2000]);
  });

  test('large: main refuses to send a message larger than the renderer accepts', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const child = runNode(
      `
      const r = new ipcwire.IpcRenderer({ maxMessageSize: 1024 * 1024 });
      r.connect();
      const got = [];
      r.on('m', (e, b) => got.push(b.length));
      r.on('end', () => { r.close(); out('got', got); });
      r.send('ready');
    `,
      { address: main.address },
    );
    const [event] = await once(main, 'ready');
    const err = catchSync(() => event.sender.send('m', Buffer.alloc(2 * MiB)));
    expect(err.code).toBe('ERR_IPC_MESSAGE_TOO_LARGE');
    event.sender.send('m', Buffer.alloc(10));
    event.sender.send('end');
    expect(await child.msg('got')).toEqual([10]);
    await exitsCleanly(child);
  });
});
