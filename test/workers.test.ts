/**
 * worker_threads: each thread its own connection, a sendSync blocks only its own thread; a
 * thread blocked in sendSync does not hold up worker.terminate() or process.exit().
 */
import { describe, expect, test } from 'vitest';
import { exitsCleanly, makeMain, once, runNode, useHarness, waitUntil } from './helpers';

useHarness();

/** Child-side helper: start a worker running `code` (fixtures/worker.cjs) and forward its posts to `out`. */
const START_WORKER = `
  const { Worker } = require('node:worker_threads');
  const startWorker = (code) => {
    const w = new Worker(require.resolve('./worker.cjs'), { workerData: { code } });
    w.on('message', (m) => out(m.tag, m.data));
    w.on('error', (e) => out('worker-error', errInfo(e)));
    return w;
  };
`;

describe('workers', () => {
  test('workers: sendSync from two workers and the main thread at once, each on its own connection', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const pending: any[] = [];
    main.on('sync', (event: any, who: string) => {
      pending.push({ event, who });
      // A barrier: nobody is answered until all three threads are blocked in sendSync at the same time.
      if (pending.length === 3) {
        for (const p of pending) p.event.returnValue = `${p.who}@${p.event.sender.id}`;
      }
    });
    const child = runNode(
      START_WORKER +
        `
      const workers = [1, 2].map((n) => startWorker(\`
        const v = ipcwire.ipcRenderer.sendSync('sync', 'worker' + threadId);
        post('w' + threadId, { v, peerId: ipcwire.ipcRenderer.peerId });
      \`));
      await sleep(100);
      const v = ipcwire.ipcRenderer.sendSync('sync', 'main0');
      out('main', { v });
      await Promise.all(workers.map((w) => new Promise((r) => w.once('exit', r))));
      out('done');
    `,
      { address: main.address },
    );
    await child.msg('done');
    await exitsCleanly(child);
    const whos = pending.map((p) => p.who).sort();
    expect(whos).toEqual(['main0', 'worker1', 'worker2']);
    const senderIds = pending.map((p) => p.event.sender.id);
    expect(new Set(senderIds).size).toBe(3);
    for (const p of pending) expect(p.event.processId).toBe(child.pid);
    const byWho = new Map(pending.map((p) => [p.who, `${p.who}@${p.event.sender.id}`]));
    expect((await child.msg('main')).v).toBe(byWho.get('main0'));
    expect((await child.msg('w1')).v).toBe(byWho.get('worker1'));
    expect((await child.msg('w2')).v).toBe(byWho.get('worker2'));
    await waitUntil(() => main.peers.size === 0, 10_000, 'every thread connection to close');
  });

  test('workers: a sendSync blocks only its own thread; the main thread keeps running', { timeout: 30_000 }, async () => {
    const main = makeMain();
    main.on('slow', (event: any) => setTimeout(() => (event.returnValue = 'slow'), 500));
    const child = runNode(
      START_WORKER +
        `
      let ticks = 0;
      const t = setInterval(() => ticks++, 10);
      const w = startWorker(\`post('v', ipcwire.ipcRenderer.sendSync('slow'));\`);
      await new Promise((r) => w.once('exit', r));
      clearInterval(t);
      out('r', { ticks });
    `,
      { address: main.address },
    );
    expect(await child.msg('v')).toBe('slow');
    expect((await child.msg('r')).ticks).toBeGreaterThan(10);
    await exitsCleanly(child);
  });

  test('workers: worker.terminate() during a blocked sendSync finishes within a second and closes its connection', { timeout: 30_000 }, async () => {
    const main = makeMain();
    main.on('hang', (event: any) => {
      hangPeer = event.sender;
      child.send('terminate');
    });
    let hangPeer: any;
    const child = runNode(
      START_WORKER +
        `
      const w = startWorker(\`
        try { ipcwire.ipcRenderer.sendSync('hang'); post('returned'); } catch (e) { post('threw', errInfo(e)); }
      \`);
      await readLine();
      closeStdin();
      const t0 = Date.now();
      await w.terminate();
      out('terminated', { ms: Date.now() - t0 });
    `,
      { address: main.address },
    );
    const { ms } = await child.msg('terminated');
    expect(ms).toBeLessThan(1000);
    expect(child.messages.find((m) => m.tag === 'returned')).toBeUndefined();
    await exitsCleanly(child);
    if (!hangPeer.isDestroyed()) await once(hangPeer, 'disconnect');
    expect(hangPeer.isDestroyed()).toBe(true);
  });

  test('workers: process.exit() while a worker blocks in sendSync exits within a second', { timeout: 30_000 }, async () => {
    const main = makeMain();
    main.on('hang', () => child.send('exit'));
    const child = runNode(
      START_WORKER +
        `
      startWorker(\`ipcwire.ipcRenderer.sendSync('hang');\`);
      await readLine();
      out('exiting', Date.now());
      process.exit(0);
    `,
      { address: main.address },
    );
    const exiting = await child.record('exiting');
    const r = await child.waitExit();
    const exitedAt = Date.now();
    expect({ code: r.code, signal: r.signal }, `exit status; stderr:\n${child.stderr}`).toEqual({ code: 0, signal: null });
    expect(exitedAt - exiting.at).toBeLessThan(1000);
    await waitUntil(() => main.peers.size === 0, 5000, 'the worker connection to close');
  });

  test('workers: a worker that finishes closes its own connection and main sees it leave', { timeout: 30_000 }, async () => {
    const main = makeMain();
    main.handle('id', (e: any) => e.sender.id);
    const left: any[] = [];
    main.peers.on('disconnect', (peer: any) => left.push(peer.id));
    const child = runNode(
      START_WORKER +
        `
      const w = startWorker(\`post('id', await ipcwire.ipcRenderer.invoke('id'));\`);
      const code = await new Promise((r) => w.once('exit', r));
      out('exit', code);
      out('main-thread', await ipcwire.ipcRenderer.invoke('id'));
    `,
      { address: main.address },
    );
    const id = await child.msg('id');
    expect(await child.msg('exit')).toBe(0);
    await waitUntil(() => left.includes(id), 5000, "the worker's peer to disconnect");
    expect(await child.msg('main-thread')).not.toBe(id);
    await exitsCleanly(child);
  });
});
