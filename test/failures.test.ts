/**
 * No reply, never a silent hang: main exiting, crashing or closing while a renderer waits; every
 * call after the connection is gone throws the same code; no address anywhere.
 */
import * as fs from 'node:fs';
import { describe, expect, test } from 'vitest';
import { exitsCleanly, makeMain, once, runNode, sockPath, trackPath, useHarness } from './helpers';

useHarness();

/** Renderer code: two invokes pending, then a sendSync main never answers; reports everything after. */
const BLOCKED_RENDERER = `
  const r = ipcwire.ipcRenderer;
  const settled = [];
  const pending = [r.invoke('never', 1), r.invoke('never', 2)].map((p) =>
    p.then((v) => ({ resolved: v }), (e) => ({ ...errInfo(e), at: Date.now() })));
  out('blocking');
  let syncErr;
  try { r.sendSync('hang'); } catch (e) { syncErr = { ...errInfo(e), at: Date.now() }; }
  out('sync', syncErr);
  const invokes = await Promise.all(pending);
  const later = {};
  try { r.send('x', 1); later.send = 'no throw'; } catch (e) { later.send = errInfo(e); }
  try { r.sendSync('x'); later.sendSync = 'no throw'; } catch (e) { later.sendSync = errInfo(e); }
  try { await r.invoke('x'); later.invoke = 'resolved'; } catch (e) { later.invoke = errInfo(e); }
  out('after', { invokes, later, connected: r.connected });
`;

function expectDisconnectedEverywhere(sync: any, after: any, deadline: number) {
  expect(sync?.code).toBe('ERR_IPC_DISCONNECTED');
  expect(sync?.isError).toBe(true);
  expect(sync.at).toBeLessThanOrEqual(deadline);
  for (const inv of after.invokes) {
    expect(inv.code).toBe('ERR_IPC_DISCONNECTED');
    expect(inv.at).toBeLessThanOrEqual(deadline);
  }
  expect(after.later.send?.code).toBe('ERR_IPC_DISCONNECTED');
  expect(after.later.sendSync?.code).toBe('ERR_IPC_DISCONNECTED');
  expect(after.later.invoke?.code).toBe('ERR_IPC_DISCONNECTED');
  expect(after.connected).toBe(false);
}

describe('failures', () => {
  test('failures: main SIGKILLed while a renderer blocks in sendSync: ERR_IPC_DISCONNECTED within a second, invokes reject, later calls throw', { timeout: 30_000 }, async () => {
    const address = trackPath(sockPath());
    const mainProc = runNode(`
      const main = new ipcwire.IpcMain();
      main.listen(${JSON.stringify(address)});
      main.handle('never', () => new Promise(() => {}));
      main.on('hang', () => out('hang'));
      out('ready');
    `);
    await mainProc.msg('ready');
    const child = runNode(BLOCKED_RENDERER, { address });
    await child.msg('blocking');
    await mainProc.msg('hang');
    const killedAt = Date.now();
    mainProc.kill('SIGKILL');
    const sync = await child.msg('sync');
    const after = await child.msg('after');
    expectDisconnectedEverywhere(sync, after, killedAt + 1000);
    // Nothing pending, no listener: the renderer ends by itself.
    await exitsCleanly(child);
    await mainProc.waitExit();
    // The dead server's socket file is stale; removing it is this test's cleanup.
    fs.rmSync(address, { force: true });
  });

  test('failures: main exiting normally (process.exit) while a renderer blocks: ERR_IPC_DISCONNECTED at once', { timeout: 30_000 }, async () => {
    const address = trackPath(sockPath());
    const mainProc = runNode(`
      const main = new ipcwire.IpcMain();
      main.listen(${JSON.stringify(address)});
      main.handle('never', () => new Promise(() => {}));
      main.on('hang', () => { out('hang'); setTimeout(() => process.exit(0), 50); });
      out('ready');
    `);
    await mainProc.msg('ready');
    const child = runNode(BLOCKED_RENDERER, { address });
    await child.msg('blocking');
    const hang = await mainProc.record('hang');
    const sync = await child.msg('sync');
    const after = await child.msg('after');
    expectDisconnectedEverywhere(sync, after, hang.at + 50 + 1000);
    await exitsCleanly(child);
    await exitsCleanly(mainProc);
    fs.rmSync(address, { force: true });
  });

  test('failures: main.close() while a renderer blocks in sendSync disconnects it with ERR_IPC_DISCONNECTED', { timeout: 30_000 }, async () => {
    const main = makeMain();
    main.handle('never', () => new Promise(() => {}));
    let closedAt = 0;
    main.on('hang', () => {
      setTimeout(() => {
        closedAt = Date.now();
        main.close();
      }, 50);
    });
    const child = runNode(BLOCKED_RENDERER, { address: main.address });
    const sync = await child.msg('sync');
    const after = await child.msg('after');
    expectDisconnectedEverywhere(sync, after, closedAt + 1000);
    await exitsCleanly(child);
    expect(fs.existsSync(main.address)).toBe(false);
  });

  test('failures: the renderer link reports the disconnect and a renderer listening for messages then exits', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      r.on('never-sent', () => {});
      r.link.on('disconnect', (err) => out('disconnect', { err: err && errInfo(err), connected: r.connected }));
      r.send('ready');
    `,
      { address: main.address },
    );
    await once(main, 'ready');
    main.close();
    const d = await child.msg('disconnect');
    expect(d.connected).toBe(false);
    // A listener alone no longer keeps the process alive once the connection is gone.
    await exitsCleanly(child);
  });

  test('failures: after ipcRenderer.close(), every call throws ERR_IPC_DISCONNECTED and close() is idempotent', { timeout: 20_000 }, async () => {
    const main = makeMain();
    main.on('m', () => {});
    main.on('s', (e: any) => (e.returnValue = 1));
    main.handle('i', () => 1);
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      r.sendSync('s');
      r.close();
      r.close();
      const res = {};
      try { r.send('m'); res.send = 'no throw'; } catch (e) { res.send = e.code; }
      try { r.sendSync('s'); res.sendSync = 'no throw'; } catch (e) { res.sendSync = e.code; }
      try { await r.invoke('i'); res.invoke = 'resolved'; } catch (e) { res.invoke = e.code; }
      res.connected = r.connected;
      out('r', res);
    `,
      { address: main.address },
    );
    expect(await child.msg('r')).toEqual({
      send: 'ERR_IPC_DISCONNECTED',
      sendSync: 'ERR_IPC_DISCONNECTED',
      invoke: 'ERR_IPC_DISCONNECTED',
      connected: false,
    });
    await exitsCleanly(child);
  });

  test('failures: a renderer with no address anywhere gets ERR_IPC_NO_ADDRESS with a message saying how to get one', { timeout: 20_000 }, async () => {
    const child = runNode(`
      const res = {};
      try { ipcwire.ipcRenderer.send('x'); res.send = 'no throw'; } catch (e) { res.send = errInfo(e); }
      try { ipcwire.ipcRenderer.sendSync('x'); res.sendSync = 'no throw'; } catch (e) { res.sendSync = errInfo(e); }
      try { await ipcwire.ipcRenderer.invoke('x'); res.invoke = 'resolved'; } catch (e) { res.invoke = errInfo(e); }
      try { new ipcwire.IpcRenderer().connect(); res.connect = 'no throw'; } catch (e) { res.connect = errInfo(e); }
      out('r', res);
    `);
    const res = await child.msg('r');
    for (const k of ['send', 'sendSync', 'invoke', 'connect']) {
      expect(res[k].isError, k).toBe(true);
      expect(res[k].code, k).toBe('ERR_IPC_NO_ADDRESS');
      expect(res[k].message, k).toMatch(/IPCWIRE_ADDRESS/);
      expect(res[k].message, k).toMatch(/fork|connect/);
    }
    await exitsCleanly(child);
  });

  test('failures: a renderer killed during peer.invoke rejects it with ERR_IPC_DISCONNECTED and peer calls then throw', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      r.handle('never', () => { out('in-handler'); return new Promise(() => {}); });
      r.send('ready');
    `,
      { address: main.address },
    );
    const [event] = await once(main, 'ready');
    const peer = event.sender;
    const p = peer.invoke('never').then(
      () => 'resolved',
      (e: any) => e,
    );
    const disconnected = once(peer, 'disconnect');
    // Killed while its handler is running: the invoke reached the renderer and can only end by the disconnect.
    await child.msg('in-handler');
    child.kill('SIGKILL');
    const err = await p;
    expect(err.code).toBe('ERR_IPC_DISCONNECTED');
    await disconnected;
    expect(peer.isDestroyed()).toBe(true);
    let sendErr: any;
    try {
      peer.send('x');
    } catch (e) {
      sendErr = e;
    }
    expect(sendErr?.code).toBe('ERR_IPC_DISCONNECTED');
    const late = await peer.invoke('x').then(
      () => 'resolved',
      (e: any) => e,
    );
    expect(late.code).toBe('ERR_IPC_DISCONNECTED');
    await child.waitExit();
  });
});
