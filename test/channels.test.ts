/**
 * Channels: ipcMain and ipcRenderer are EventEmitters whose event names are channels
 * (on/once/off/addListener/removeListener/removeAllListeners/listenerCount); any string is a channel.
 */
import { describe, expect, test } from 'vitest';
import { exitsCleanly, ipcwire, makeMain, once, runNode, useHarness, waitUntil } from './helpers';

useHarness();

describe('channels', () => {
  test('channels: main once/on/off/removeAllListeners/listenerCount follow EventEmitter semantics', { timeout: 20_000 }, async () => {
    const main = makeMain();
    const log: string[] = [];
    const onA = (_e: any, n: number) => log.push(`on-a-${n}`);
    main.on('a', onA);
    main.once('a', (_e: any, n: number) => log.push(`once-a-${n}`));
    main.addListener('b', (_e: any, n: number) => log.push(`b-${n}`));
    expect(main.listenerCount('a')).toBe(2);
    expect(main.listenerCount('b')).toBe(1);
    main.on('step', (event: any, step: number) => {
      if (step === 1) main.off('a', onA);
      if (step === 2) main.removeAllListeners('b');
      event.returnValue = [main.listenerCount('a'), main.listenerCount('b')];
    });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const res = [];
      r.send('a', 1); r.send('a', 2); r.send('b', 1);
      res.push(r.sendSync('step', 1));
      r.send('a', 3); r.send('b', 2);
      res.push(r.sendSync('step', 2));
      r.send('b', 3);
      res.push(r.sendSync('step', 3));
      out('r', res);
    `,
      { address: main.address },
    );
    expect(await child.msg('r')).toEqual([
      [0, 1],
      [0, 0],
      [0, 0],
    ]);
    await exitsCleanly(child);
    expect(log).toEqual(['on-a-1', 'once-a-1', 'on-a-2', 'b-1', 'b-2']);
  });

  test('channels: main removeAllListeners() with no argument removes every channel listener', () => {
    const { IpcMain } = ipcwire();
    const main = new IpcMain();
    main.on('a', () => {});
    main.once('b', () => {});
    main.handle('h', () => 1);
    main.removeAllListeners();
    expect(main.listenerCount('a')).toBe(0);
    expect(main.listenerCount('b')).toBe(0);
    main.removeHandler('h');
  });

  test('channels: a sendSync channel whose only listener was removed throws ERR_IPC_NO_LISTENER', { timeout: 20_000 }, async () => {
    const main = makeMain();
    main.once('once-sync', (event: any) => (event.returnValue = 'first'));
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const first = r.sendSync('once-sync');
      let err;
      try { r.sendSync('once-sync'); } catch (e) { err = errInfo(e); }
      out('r', { first, code: err && err.code });
    `,
      { address: main.address },
    );
    expect(await child.msg('r')).toEqual({ first: 'first', code: 'ERR_IPC_NO_LISTENER' });
    await exitsCleanly(child);
  });

  test('channels: renderer once/on/off/listenerCount follow EventEmitter semantics', { timeout: 20_000 }, async () => {
    const main = makeMain();
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const log = [];
      const onX = (e, n) => log.push('on-' + n);
      r.on('x', onX);
      r.once('x', (e, n) => log.push('once-' + n));
      r.on('step', (e, step) => {
        if (step === 1) r.off('x', onX);
        if (step === 2) { r.removeAllListeners('x'); r.removeAllListeners('step'); out('r', { log, count: r.listenerCount('x') }); }
      });
      r.send('up');
    `,
      { address: main.address },
    );
    const [event] = await once(main, 'up');
    const peer = event.sender;
    peer.send('x', 1);
    peer.send('x', 2);
    peer.send('step', 1);
    peer.send('x', 3);
    peer.send('step', 2);
    expect(await child.msg('r')).toEqual({ log: ['on-1', 'once-1', 'on-2'], count: 0 });
    await exitsCleanly(child);
  });

  test('channels: any string is a channel (unicode, spaces, very long, names of Object.prototype members)', { timeout: 20_000 }, async () => {
    const main = makeMain();
    const names = ['ü ☃ 😀', 'with spaces and/slashes', 'x'.repeat(5000), 'constructor', '__proto__', 'toString', 'hasOwnProperty'];
    const got: string[] = [];
    for (const n of names) main.on(n, (_e: any, v: string) => got.push(v));
    for (const n of names) main.handle(n, (_e: any, v: string) => `h:${v}`);
    const child = runNode(
      `
      const names = ${JSON.stringify(names)};
      const r = ipcwire.ipcRenderer;
      for (const n of names) r.send(n, n.slice(0, 20));
      out('r', await Promise.all(names.map((n) => r.invoke(n, n.slice(0, 20)))));
    `,
      { address: main.address },
    );
    expect(await child.msg('r')).toEqual(names.map((n) => `h:${n.slice(0, 20)}`));
    await exitsCleanly(child);
    await waitUntil(() => got.length === names.length);
    expect(got).toEqual(names.map((n) => n.slice(0, 20)));
  });

  test('channels: a channel that is not a string is a TypeError, thrown or rejected at once', { timeout: 20_000 }, async () => {
    const main = makeMain();
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const res = {};
      try { r.send(42); res.send = 'no throw'; } catch (e) { res.send = e.name; }
      try { r.sendSync({}); res.sendSync = 'no throw'; } catch (e) { res.sendSync = e.name; }
      try { await r.invoke(null); res.invoke = 'resolved'; } catch (e) { res.invoke = e.name; }
      out('r', res);
    `,
      { address: main.address },
    );
    expect(await child.msg('r')).toEqual({ send: 'TypeError', sendSync: 'TypeError', invoke: 'TypeError' });
    await exitsCleanly(child);
  });
});
