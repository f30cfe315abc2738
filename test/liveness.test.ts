/**
 * Liveness: a renderer connection keeps its process alive only while it has listeners, handlers
 * or calls pending; main's listening socket keeps main alive until close() (ref/unref as net.Server); no
 * thread or timer of the library keeps a process alive by itself.
 */
import { describe, expect, test } from 'vitest';
import { exitsCleanly, makeMain, once, runNode, sockPath, trackPath, useHarness, waitUntil } from './helpers';

useHarness();

describe('liveness', () => {
  test('liveness: a renderer with no listeners and nothing pending exits by itself after send, sendSync and invoke', { timeout: 20_000 }, async () => {
    const main = makeMain();
    const got: string[] = [];
    const disconnects: Array<{ pid: number; err: unknown; listening: boolean }> = [];
    main.peers.on('disconnect', (peer: any, err: unknown) => disconnects.push({ pid: peer.pid, err, listening: main.listening }));
    main.on('m', (_e: any, v: string) => got.push(v));
    main.on('s', (e: any) => (e.returnValue = 's'));
    main.handle('i', () => 'i');
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      r.send('m', 'one');
      out('r', [r.sendSync('s'), await r.invoke('i')]);
      r.send('m', 'last');
    `,
      { address: main.address },
    );
    expect(await child.msg('r')).toEqual(['s', 'i']);
    await exitsCleanly(child, 10_000);
    // The process ended because nothing needed it, not because of main: main kept listening and saw the renderer
    // leave cleanly (EOF, no error), after receiving everything it sent, its last message included.
    await waitUntil(() => disconnects.length === 1, 10_000, 'the renderer to leave main');
    expect(disconnects).toEqual([{ pid: child.pid, err: null, listening: true }]);
    expect(main.peers.size).toBe(0);
    expect(got).toEqual(['one', 'last']);
  });

  test('liveness: a renderer with a listener stays alive and exits once the listener is removed', { timeout: 20_000 }, async () => {
    const main = makeMain();
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const onPing = (e, n) => {
        out('ping', n);
        if (n === 3) r.removeListener('ping', onPing);
      };
      r.on('ping', onPing);
      r.send('up');
    `,
      { address: main.address },
    );
    const [event] = await once(main, 'up');
    // Idle for a while: nothing pending but the listener, which alone keeps the renderer here.
    for (let n = 1; n <= 3; n++) {
      await new Promise((r) => setTimeout(r, 300));
      expect(child.done).toBe(false);
      event.sender.send('ping', n);
      expect(await child.msg('ping')).toBeDefined();
    }
    await exitsCleanly(child, 10_000);
    expect(child.messages.filter((m) => m.tag === 'ping').map((m) => m.data)).toEqual([1, 2, 3]);
  });

  test('liveness: removeAllListeners() with no argument removes every listener and lets the renderer exit', { timeout: 20_000 }, async () => {
    const main = makeMain();
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      r.on('a', () => {});
      r.once('b', () => {});
      r.on('end', () => {
        r.removeAllListeners();
        out('left', { a: r.listenerCount('a'), b: r.listenerCount('b'), end: r.listenerCount('end') });
      });
      r.send('up');
    `,
      { address: main.address },
    );
    const [event] = await once(main, 'up');
    event.sender.send('end');
    expect(await child.msg('left')).toEqual({ a: 0, b: 0, end: 0 });
    await exitsCleanly(child, 10_000);
  });

  test('liveness: a renderer with a handler stays alive until removeHandler', { timeout: 20_000 }, async () => {
    const main = makeMain();
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      r.handle('job', (e, n) => { if (n === 2) setImmediate(() => r.removeHandler('job')); return n * 2; });
      r.send('up');
    `,
      { address: main.address },
    );
    const [event] = await once(main, 'up');
    await new Promise((r) => setTimeout(r, 300));
    expect(child.done).toBe(false);
    expect(await event.sender.invoke('job', 1)).toBe(2);
    expect(await event.sender.invoke('job', 2)).toBe(4);
    await exitsCleanly(child, 10_000);
  });

  test('liveness: a handleOnce handler that has answered no longer keeps the renderer alive', { timeout: 20_000 }, async () => {
    const main = makeMain();
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      r.handleOnce('job', (e, n) => n + 1);
      r.send('up');
    `,
      { address: main.address },
    );
    const [event] = await once(main, 'up');
    expect(await event.sender.invoke('job', 1)).toBe(2);
    await exitsCleanly(child, 10_000);
  });

  test('liveness: a pending invoke keeps the renderer alive until it settles', { timeout: 20_000 }, async () => {
    const main = makeMain();
    let answer: (v: string) => void = () => {};
    main.handle('slow', () => new Promise<string>((r) => (answer = r)));
    main.on('started', () => setTimeout(() => answer('settled'), 500));
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const p = r.invoke('slow');
      r.send('started');
      p.then((v) => out('r', v));
    `,
      { address: main.address },
    );
    expect(await child.msg('r')).toBe('settled');
    await exitsCleanly(child, 10_000);
  });

  test('liveness: main\'s listening socket keeps main alive until close()', { timeout: 20_000 }, async () => {
    const address = trackPath(sockPath());
    const mainProc = runNode(`
      const main = new ipcwire.IpcMain();
      main.listen(${JSON.stringify(address)});
      main.on('close-now', () => { out('closing'); main.close(); });
      out('ready');
    `);
    await mainProc.msg('ready');
    await new Promise((r) => setTimeout(r, 500));
    expect(mainProc.done).toBe(false);
    const child = runNode(`ipcwire.ipcRenderer.send('close-now');`, { address });
    await mainProc.msg('closing');
    await exitsCleanly(mainProc, 10_000);
    await exitsCleanly(child);
  });

  test('liveness: main.unref() lets main exit while listening; ref() keeps it again', { timeout: 20_000 }, async () => {
    const address = trackPath(sockPath());
    const unrefd = runNode(`
      const main = new ipcwire.IpcMain();
      main.listen(${JSON.stringify(address)});
      main.unref();
      out('ready');
      process.on('exit', () => main.close());
    `);
    await unrefd.msg('ready');
    await exitsCleanly(unrefd, 10_000);
    const refd = runNode(`
      const main = new ipcwire.IpcMain();
      main.listen(${JSON.stringify(address)});
      main.unref();
      main.ref();
      main.on('stop', () => main.close());
      out('ready');
    `);
    await refd.msg('ready');
    await new Promise((r) => setTimeout(r, 500));
    expect(refd.done).toBe(false);
    const child = runNode(`ipcwire.ipcRenderer.send('stop');`, { address });
    await exitsCleanly(refd, 10_000);
    await exitsCleanly(child);
  });

  test('liveness: main with connected renderers exits after close(), and they exit too', { timeout: 20_000 }, async () => {
    const address = trackPath(sockPath());
    const mainProc = runNode(`
      const main = new ipcwire.IpcMain();
      main.listen(${JSON.stringify(address)});
      main.peers.on('connect', () => { if (main.peers.size === 2) { out('both'); } });
      out('ready');
      await readLine();
      closeStdin();
      main.close();
    `);
    await mainProc.msg('ready');
    const code = `const r = ipcwire.ipcRenderer; r.on('never', () => {}); r.handle('never', () => 1); r.send('up');`;
    const a = runNode(code, { address });
    const b = runNode(code, { address });
    await mainProc.msg('both');
    mainProc.send('close');
    await exitsCleanly(mainProc, 10_000);
    await exitsCleanly(a, 10_000);
    await exitsCleanly(b, 10_000);
  });

  test('liveness: a closed renderer and a process that only loaded ipcwire exit by themselves', { timeout: 20_000 }, async () => {
    const main = makeMain();
    const plain = runNode(`out('loaded', typeof ipcwire.ipcRenderer.send);`);
    expect(await plain.msg('loaded')).toBe('function');
    await exitsCleanly(plain, 10_000);
    const closed = runNode(
      `
      const r = new ipcwire.IpcRenderer();
      r.connect();
      r.on('x', () => {});
      r.handle('y', () => 1);
      r.close();
      out('closed', true);
    `,
      { address: main.address },
    );
    expect(await closed.msg('closed')).toBe(true);
    await exitsCleanly(closed, 10_000);
  });
});
