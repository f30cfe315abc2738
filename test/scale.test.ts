/**
 * Many renderers at once (each with sendSync and invoke, pids from the kernel), a connect burst beyond a
 * small listen backlog (the kernel refuses connects with EAGAIN once it is full), and main running out of file
 * descriptors (accept fails with EMFILE: extra connections are shed, main keeps serving).
 */
import { describe, expect, test } from 'vitest';
import { exitsCleanly, makeMain, runNode, sockPath, trackPath, useHarness, waitUntil } from './helpers';

useHarness();

describe('scale', () => {
  test('scale: 50 renderers at once each do sendSync and invoke; event.processId and peer.pid are their real pids', { timeout: 180_000 }, async () => {
    const main = makeMain();
    const syncPids = new Map<number, number>();
    const invokePids = new Map<number, number>();
    const peerPids = new Map<number, number>();
    main.on('sync', (event: any, claimed: number) => {
      syncPids.set(claimed, event.processId);
      peerPids.set(claimed, event.sender.pid);
      // Answer later, so that many renderers are blocked at the same time.
      setTimeout(() => (event.returnValue = `sync-${claimed}`), 20);
    });
    main.handle('inv', (event: any, claimed: number) => {
      invokePids.set(claimed, event.processId);
      return `inv-${claimed}`;
    });
    const kids = Array.from({ length: 50 }, () =>
      runNode(
        `
        const r = ipcwire.ipcRenderer;
        const s = r.sendSync('sync', process.pid);
        const i = await r.invoke('inv', process.pid);
        out('r', [s, i]);
      `,
        { address: main.address },
      ),
    );
    for (const k of kids) expect(await k.msg('r', 150_000)).toEqual([`sync-${k.pid}`, `inv-${k.pid}`]);
    for (const k of kids) await exitsCleanly(k);
    for (const k of kids) {
      expect(syncPids.get(k.pid)).toBe(k.pid);
      expect(invokePids.get(k.pid)).toBe(k.pid);
      expect(peerPids.get(k.pid)).toBe(k.pid);
    }
    await waitUntil(() => main.peers.size === 0, 10_000, 'every peer to disconnect');
  });

  test('scale: 1,000 connections from 4 processes each invoke and sendSync; every peer is listed, then all leave', { timeout: 90_000 }, async () => {
    const main = makeMain();
    main.handle('n', (event: any, n: number) => `${event.sender.id}:${n}`);
    main.on('s', (event: any, n: number) => (event.returnValue = n * 2));
    let peak = 0;
    main.peers.on('connect', () => (peak = Math.max(peak, main.peers.size)));
    const kids = [0, 1, 2, 3].map((k) =>
      runNode(
        `
        const rs = [];
        for (let i = 0; i < 250; i++) { const r = new ipcwire.IpcRenderer(); r.connect(); rs.push(r); }
        const got = await Promise.all(rs.map((r, i) => r.invoke('n', ${k} * 1000 + i)));
        const sync = rs.map((r, i) => r.sendSync('s', i));
        const ids = new Set(got.map((g) => g.split(':')[0]));
        out('r', { ids: ids.size, ok: got.every((g, i) => g.endsWith(':' + (${k} * 1000 + i))), sync: sync.every((v, i) => v === i * 2) });
        await readLine();
        closeStdin();
        for (const r of rs) r.close();
      `,
        { address: main.address },
      ),
    );
    for (const k of kids) expect(await k.msg('r', 60_000)).toEqual({ ids: 250, ok: true, sync: true });
    expect(main.peers.size).toBe(1000);
    expect(peak).toBe(1000);
    expect(new Set(main.peers.list().map((p: any) => p.id)).size).toBe(1000);
    for (const k of kids) k.send('close');
    for (const k of kids) await exitsCleanly(k);
    await waitUntil(() => main.peers.size === 0, 20_000, 'all 1,000 peers to leave');
  });

  test('scale: a burst of connections beyond a tiny backlog to a busy main is retried until all are served', { timeout: 60_000 }, async () => {
    const address = trackPath(sockPath());
    // Main listens with backlog 2, then blocks its event loop for a while: the queue fills, connects get EAGAIN.
    const mainProc = runNode(`
      const main = new ipcwire.IpcMain({ backlog: 2 });
      main.listen(${JSON.stringify(address)});
      main.handle('n', (event, n) => n);
      let served = 0;
      main.on('done', () => { if (++served === 1) { main.close(); } });
      await readLine();
      out('blocking');
      blockMs(1000);
      out('unblocked', Date.now());
      closeStdin();
    `);
    await new Promise((r) => setTimeout(r, 200));
    const child = runNode(
      `
      const rs = [];
      await readLine();
      closeStdin();
      for (let i = 0; i < 60; i++) {
        const r = new ipcwire.IpcRenderer({ connectTimeout: 20000 });
        r.connect();
        rs.push(r);
      }
      out('connected', Date.now());
      const got = await Promise.all(rs.map((r, i) => r.invoke('n', i)));
      rs.forEach((r) => r.close());
      const last = new ipcwire.IpcRenderer();
      last.connect();
      last.send('done');
      last.close();
      out('r', got);
    `,
      { address },
    );
    mainProc.send('go');
    await mainProc.msg('blocking');
    child.send('go');
    expect(await child.msg('r', 40_000)).toEqual(Array.from({ length: 60 }, (_, i) => i));
    // The queue holds 3 connections while main is blocked, so the 60 connects could only finish after main
    // accepted again: the others were retried through EAGAIN, not failed.
    expect(await child.msg('connected')).toBeGreaterThanOrEqual(await mainProc.msg('unblocked'));
    await exitsCleanly(child);
    await exitsCleanly(mainProc);
  });

  test('scale: a connect that cannot get into a full listen queue gives up with EAGAIN after connectTimeout', { timeout: 60_000 }, async () => {
    const address = trackPath(sockPath());
    const mainProc = runNode(`
      const main = new ipcwire.IpcMain({ backlog: 1 });
      main.listen(${JSON.stringify(address)});
      out('ready');
      await readLine();
      out('blocking');
      blockMs(4000); // accepts nothing meanwhile
      await readLine();
      closeStdin();
      main.close();
    `);
    await mainProc.msg('ready');
    const child = runNode(
      `
      const res = [];
      const rs = [];
      out('loaded');
      await readLine();
      closeStdin();
      for (let i = 0; i < 6; i++) {
        const t0 = Date.now();
        try { const r = new ipcwire.IpcRenderer({ connectTimeout: 300 }); r.connect(); rs.push(r); res.push('connected'); }
        catch (e) { res.push({ code: e.code, syscall: e.syscall, address: e.address, waited: Date.now() - t0 }); }
      }
      for (const r of rs) r.close();
      out('r', res);
    `,
      { address },
    );
    await child.msg('loaded');
    mainProc.send('go');
    await mainProc.msg('blocking');
    child.send('go');
    const res = await child.msg('r', 30_000);
    const failures = res.filter((x: any) => x !== 'connected');
    expect(failures.length).toBeGreaterThan(0);
    for (const f of failures) {
      expect(f.code).toBe('EAGAIN');
      expect(f.syscall).toBe('connect');
      expect(f.address).toBe(address);
      expect(f.waited).toBeGreaterThanOrEqual(250); // retried until the deadline, not failed at the first EAGAIN
    }
    await exitsCleanly(child);
    mainProc.send('close');
    await exitsCleanly(mainProc);
  });

  test('scale: main out of file descriptors sheds extra connections without crashing and recovers', { timeout: 60_000 }, async () => {
    const address = trackPath(sockPath());
    const mainProc = runNode(
      `
      const main = new ipcwire.IpcMain();
      main.listen(${JSON.stringify(address)});
      main.handle('n', (event, n) => n);
      let errors = 0;
      main.peers.on('error', () => errors++);
      main.on('done', () => { out('main', { errors }); main.close(); });
      out('ready');
    `,
      { shellPrefix: 'ulimit -n 64;' },
    );
    await mainProc.msg('ready');
    const child = runNode(
      `
      const rs = [];
      const results = await Promise.all(Array.from({ length: 120 }, async (_, i) => {
        try {
          const r = new ipcwire.IpcRenderer({ connectTimeout: 2000 });
          rs.push(r);
          r.connect();
          return { ok: await r.invoke('n', i) };
        } catch (e) {
          return { err: e.code };
        }
      }));
      for (const r of rs) r.close();
      await sleep(200);
      // Recovered: a fresh connection is served.
      const again = new ipcwire.IpcRenderer();
      again.connect();
      const v = await again.invoke('n', 'again');
      again.send('done');
      again.close();
      out('r', { ok: results.filter((r) => 'ok' in r).length, codes: [...new Set(results.filter((r) => r.err).map((r) => r.err))], again: v });
    `,
      { address },
    );
    const r = await child.msg('r', 40_000);
    expect(r.again).toBe('again');
    expect(r.ok).toBeGreaterThan(0);
    // 120 connections held at once cannot fit in 64 descriptors: some were shed, and said so.
    expect(r.ok).toBeLessThan(120);
    expect(r.codes.length).toBeGreaterThan(0);
    // Shed connections are reported as disconnections, never as a hang or a crash.
    for (const c of r.codes) expect(c).toMatch(/^(ERR_IPC_DISCONNECTED|ECONNRESET|ECONNREFUSED|EAGAIN|EPIPE)$/);
    await exitsCleanly(child);
    await mainProc.msg('main');
    await exitsCleanly(mainProc);
  });
});
