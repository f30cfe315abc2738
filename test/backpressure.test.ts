/**
 * A producer can tell when the peer is not keeping up (bufferedAmount, 'drain'). The kernel takes
 * about 228 KiB before EAGAIN on a Unix socket, so these tests push well past 8 MiB into a stopped peer.
 */
import { describe, expect, test } from 'vitest';
import { exitsCleanly, makeMain, once, runNode, sockPath, trackPath, useHarness } from './helpers';

useHarness();

const MiB = 1024 * 1024;

describe('backpressure', () => {
  test('backpressure: peer.bufferedAmount grows past 8 MiB while the renderer is stopped; drain fires when it resumes', { timeout: 60_000 }, async () => {
    // The socket's backpressure: shared memory off, else these 1 MiB Buffers would go through the pool instead.
    const main = makeMain({ shm: false });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      let n = 0, bytes = 0;
      r.on('chunk', (e, buf) => { n++; bytes += buf.length; });
      r.once('end', () => { r.removeAllListeners('chunk'); out('r', { n, bytes }); });
      r.send('up');
    `,
      { address: main.address },
    );
    const [event] = await once(main, 'up');
    const peer = event.sender;
    expect(peer.bufferedAmount).toBe(0);
    process.kill(child.pid, 'SIGSTOP');
    try {
      const chunk = Buffer.alloc(MiB, 1);
      const amounts: number[] = [];
      for (let i = 0; i < 16; i++) {
        peer.send('chunk', chunk);
        amounts.push(peer.bufferedAmount);
        await new Promise((r) => setImmediate(r));
      }
      expect(peer.bufferedAmount).toBeGreaterThan(8 * MiB);
      // Monotonic while nobody reads.
      for (let i = 1; i < amounts.length; i++) expect(amounts[i]).toBeGreaterThanOrEqual(amounts[i - 1]);
      const drained = once(peer, 'drain', 30_000);
      process.kill(child.pid, 'SIGCONT');
      await drained;
      expect(peer.bufferedAmount).toBe(0);
    } finally {
      process.kill(child.pid, 'SIGCONT');
    }
    peer.send('end');
    expect(await child.msg('r')).toEqual({ n: 16, bytes: 16 * MiB });
    await exitsCleanly(child);
  });

  test('backpressure: ipcRenderer.bufferedAmount grows past 8 MiB while main is stopped; link drain fires when it resumes', { timeout: 60_000 }, async () => {
    const address = trackPath(sockPath());
    const mainProc = runNode(`
      const main = new ipcwire.IpcMain({ shm: false }); // the socket's backpressure, not the pool's
      main.listen(${JSON.stringify(address)});
      let n = 0, bytes = 0;
      main.on('chunk', (e, buf) => { n++; bytes += buf.length; });
      main.on('end', () => { out('got', { n, bytes }); main.close(); });
      out('ready');
    `);
    await mainProc.msg('ready');
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      r.connect();
      await r.invoke('nothing').catch(() => {}); // handshake done
      out('connected');
      await readLine(); // main is stopped now
      const chunk = Buffer.alloc(1024 * 1024, 2);
      const amounts = [];
      for (let i = 0; i < 16; i++) { r.send('chunk', chunk); amounts.push(r.bufferedAmount); await new Promise((res) => setImmediate(res)); }
      const drained = new Promise((res) => r.link.once('drain', res));
      out('buffered', { amounts, now: r.bufferedAmount });
      await drained;
      out('drained', r.bufferedAmount);
      closeStdin();
      r.send('end');
    `,
      { address },
    );
    await child.msg('connected');
    process.kill(mainProc.pid, 'SIGSTOP');
    try {
      child.send('go');
      const { amounts, now } = await child.msg('buffered');
      expect(now).toBeGreaterThan(8 * MiB);
      for (let i = 1; i < amounts.length; i++) expect(amounts[i]).toBeGreaterThanOrEqual(amounts[i - 1]);
    } finally {
      process.kill(mainProc.pid, 'SIGCONT');
    }
    expect(await child.msg('drained', 30_000)).toBe(0);
    expect(await mainProc.msg('got')).toEqual({ n: 16, bytes: 16 * MiB });
    await exitsCleanly(child);
    await exitsCleanly(mainProc);
  });

  test('backpressure: a producer that waits for drain keeps main\'s buffer bounded while a slow renderer reads 64 MiB', { timeout: 60_000 }, async () => {
    const main = makeMain();
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      let bytes = 0;
      r.on('chunk', (e, buf) => { bytes += buf.length; blockMs(2); });
      r.once('end', () => { r.removeAllListeners('chunk'); out('r', bytes); });
      r.send('up');
    `,
      { address: main.address },
    );
    const [event] = await once(main, 'up');
    const peer = event.sender;
    const chunk = Buffer.alloc(256 * 1024, 3);
    let maxBuffered = 0;
    for (let i = 0; i < 256; i++) {
      peer.send('chunk', chunk);
      maxBuffered = Math.max(maxBuffered, peer.bufferedAmount);
      if (peer.bufferedAmount > 4 * MiB) await once(peer, 'drain', 30_000);
    }
    peer.send('end');
    expect(await child.msg('r', 50_000)).toBe(64 * MiB);
    expect(maxBuffered).toBeLessThan(4 * MiB + 512 * 1024);
    await exitsCleanly(child);
  });
});
