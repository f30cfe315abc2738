/**
 * Opt-in reconnect: a renderer created with `reconnect` survives main being killed (SIGKILL) and restarted on
 * the same address. Sends made meanwhile are queued within a bound and delivered once, in order; calls that
 * were waiting fail (never retried); giving up and an exceeded bound are reported with a code; a
 * reconnecting renderer keeps its process alive only if a connected one would.
 */
import * as fs from 'node:fs';
import { describe, expect, test } from 'vitest';
import { exitsCleanly, runNode, sockPath, useHarness, type Child } from './helpers';

useHarness();

/** A main in its own process, so that it can be SIGKILLed. */
function startMain(address: string): Child {
  return runNode(
    `
    const main = new ipcwire.IpcMain();
    main.listen(process.env.ADDR);
    const got = [];
    main.on('m', (_e, n) => got.push(n));
    main.handle('got', () => got);
    main.handle('ping', () => 'pong');
    main.handle('hang', () => { out('invoke-waiting'); return new Promise(() => {}); });
    // Never answers: main blocks in the listener until it is killed, the renderer in sendSync.
    main.on('hang-sync', () => { out('sync-waiting'); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); });
    main.on('quit', () => { main.close(); });
    out('listening');
  `,
    { env: { ADDR: address } },
  );
}

async function killMain(main: Child): Promise<void> {
  main.kill('SIGKILL');
  await main.exited;
}

describe('reconnect', () => {
  test('reconnect: main killed and restarted: queued sends arrive once, in order; the pending invoke rejects, the blocked sendSync throws', { timeout: 60_000 }, async () => {
    const address = sockPath();
    const main1 = startMain(address);
    await main1.msg('listening');
    const r = runNode(
      `
      const r = new ipcwire.IpcRenderer({ address: process.env.ADDR, reconnect: { initialDelay: 20, maxDelay: 100, timeout: 30000 } });
      const events = [];
      r.link.on('disconnect', (err) => events.push(['disconnect', err && err.code]));
      r.link.on('reconnect', (info) => events.push(['reconnect', info]));
      let attempts = 0;
      r.link.on('reconnecting', (info) => { attempts = info.attempt; });
      const reconnected = new Promise((res) => r.link.once('reconnect', res));
      for (let i = 0; i < 10; i++) r.send('m', i);
      const pending = r.invoke('hang').then(() => 'resolved', (e) => errInfo(e));
      let syncErr = null;
      try { r.sendSync('hang-sync'); } catch (e) { syncErr = errInfo(e); }
      // Main is gone: these are queued, in order, for the next main.
      for (let i = 10; i < 60; i++) r.send('m', i);
      let gapInvoke = null;
      try { await r.invoke('ping'); } catch (e) { gapInvoke = errInfo(e); }
      let gapSync = null;
      try { r.sendSync('ping'); } catch (e) { gapSync = errInfo(e); }
      out('gap', { syncErr, invokeErr: await pending, gapInvoke, gapSync, reconnecting: r.reconnecting, connected: r.connected });
      const info = await reconnected;
      for (let i = 60; i < 70; i++) r.send('m', i);
      const got = await r.invoke('got');
      r.send('quit');
      r.close();
      out('done', { info, got, events, attempts, connected: r.connected });
    `,
      { env: { ADDR: address } },
    );
    await main1.msg('sync-waiting');
    expect(main1.messages.map((m) => m.tag)).toEqual(['listening', 'invoke-waiting', 'sync-waiting']);
    await killMain(main1);
    const gap = await r.msg('gap');
    expect(gap.syncErr.code).toBe('ERR_IPC_DISCONNECTED');
    expect(gap.invokeErr.code).toBe('ERR_IPC_DISCONNECTED');
    expect(gap.gapInvoke.code).toBe('ERR_IPC_DISCONNECTED');
    expect(gap.gapSync.code).toBe('ERR_IPC_DISCONNECTED');
    expect(gap).toMatchObject({ reconnecting: true, connected: false });
    const main2 = startMain(address);
    const done = await r.msg('done');
    await exitsCleanly(r);
    await main2.waitExit();
    // The 10 sent before the kill went to the first main; the 50 queued ones and the 10 after, once each, in order.
    expect(done.got).toEqual(Array.from({ length: 60 }, (_, i) => i + 10));
    expect(done.info).toEqual({ attempts: done.attempts, delivered: 50 });
    expect(done.attempts).toBeGreaterThanOrEqual(1);
    expect(done.events[0][0]).toBe('disconnect');
    expect(done.events.filter((e: any) => e[0] === 'reconnect')).toHaveLength(1);
  });

  test('reconnect: a send beyond the queue bound throws ERR_IPC_RECONNECT_QUEUE_FULL; giving up reports ERR_IPC_RECONNECT_FAILED with what was not sent', { timeout: 60_000 }, async () => {
    const address = sockPath();
    const main = startMain(address);
    await main.msg('listening');
    const r = runNode(
      `
      const r = new ipcwire.IpcRenderer({ address: process.env.ADDR, reconnect: { initialDelay: 10, maxDelay: 40, maxAttempts: 5, maxQueuedBytes: 1000 } });
      r.on('news', () => {}); // a listener: the renderer keeps its process alive, connected or reconnecting
      r.send('m', 'before');
      out('connected', await r.invoke('ping'));
      await new Promise((res) => r.link.once('disconnect', res));
      let queued = 0;
      let full = null;
      for (let i = 0; i < 1000 && !full; i++) {
        try { r.send('m', 'x'.repeat(90), i); queued++; } catch (e) { full = { ...errInfo(e), limit: e.limit, size: e.size }; }
      }
      const failed = await new Promise((res) => r.link.once('reconnect-failed', res));
      let after = null;
      try { r.send('m', 'after'); } catch (e) { after = errInfo(e); }
      out('r', { queued, full, failed: { ...errInfo(failed), attempts: failed.attempts, unsent: failed.unsent, channels: new Set(failed.unsentChannels).size },
        after, reconnecting: r.reconnecting });
    `,
      { env: { ADDR: address } },
    );
    expect(await r.msg('connected')).toBe('pong');
    await killMain(main);
    const res = await r.msg('r');
    await exitsCleanly(r);
    fs.rmSync(address, { force: true }); // the killed main's socket file
    expect(res.queued).toBeGreaterThan(5);
    expect(res.full).toMatchObject({ code: 'ERR_IPC_RECONNECT_QUEUE_FULL', limit: 1000 });
    expect(res.failed).toMatchObject({ code: 'ERR_IPC_RECONNECT_FAILED', attempts: 5, unsent: res.queued, channels: 1 });
    expect(res.failed.message).toContain(`${res.queued} queued message(s) were not sent`);
    expect(res.after.code).toBe('ERR_IPC_DISCONNECTED');
    expect(res.reconnecting).toBe(false);
  });

  test('reconnect: with nothing to do a reconnecting renderer lets its process exit; with a listener it keeps trying until it gives up (default ipcRenderer, configure)', { timeout: 60_000 }, async () => {
    const address = sockPath();
    const main = startMain(address);
    await main.msg('listening');
    const code = (listen: boolean) => `
      const r = ipcwire.ipcRenderer;
      r.configure({ reconnect: { initialDelay: 50, maxDelay: 50, maxAttempts: 20 } });
      ${listen ? "r.on('news', () => {});" : ''}
      // Held open until main goes: without a listener, the connection itself does not hold the process.
      const keep = setInterval(() => {}, 1000);
      r.link.once('disconnect', () => clearInterval(keep));
      out('connected', await r.invoke('ping'));
      r.link.on('reconnecting', (info) => out('reconnecting-' + info.attempt));
      r.link.on('reconnect-failed', (e) => out('failed', { code: e.code, attempts: e.attempts }));
    `;
    const idle = runNode(code(false), { address });
    const listening = runNode(code(true), { address });
    expect(await idle.msg('connected')).toBe('pong');
    expect(await listening.msg('connected')).toBe('pong');
    await killMain(main);
    // No listener, no queued send: the first attempt is scheduled, but its timer does not hold the process.
    await idle.msg('reconnecting-1');
    await exitsCleanly(idle);
    expect(idle.messages.some((m) => m.tag === 'failed')).toBe(false);
    // A channel listener keeps the process alive, as it would while connected: all 20 attempts, then it exits.
    expect(await listening.msg('failed', 30_000)).toEqual({ code: 'ERR_IPC_RECONNECT_FAILED', attempts: 20 });
    expect(listening.messages.filter((m) => m.tag.startsWith('reconnecting-'))).toHaveLength(20);
    await exitsCleanly(listening);
    fs.rmSync(address, { force: true });
  });

  test('reconnect: close() while reconnecting gives up at once, reporting the queued sends as not sent', { timeout: 60_000 }, async () => {
    const address = sockPath();
    const main = startMain(address);
    await main.msg('listening');
    const r = runNode(
      `
      const r = new ipcwire.IpcRenderer({ address: process.env.ADDR, reconnect: { initialDelay: 10000 } });
      r.on('news', () => {});
      out('connected', await r.invoke('ping'));
      await new Promise((res) => r.link.once('disconnect', res));
      r.send('m', 1);
      r.send('other', 2);
      let failed = null;
      r.link.once('reconnect-failed', (e) => { failed = { code: e.code, unsent: e.unsent, channels: e.unsentChannels, attempts: e.attempts }; });
      r.close();
      let after = null;
      try { r.send('m', 3); } catch (e) { after = e.code; }
      out('r', { failed, after, reconnecting: r.reconnecting });
    `,
      { env: { ADDR: address } },
    );
    expect(await r.msg('connected')).toBe('pong');
    await killMain(main);
    // The 10 s wait before the first attempt is never waited for: close() ends it, and the process exits.
    expect(await r.msg('r')).toEqual({
      failed: { code: 'ERR_IPC_RECONNECT_FAILED', unsent: 2, channels: ['m', 'other'], attempts: 1 },
      after: 'ERR_IPC_DISCONNECTED',
      reconnecting: false,
    });
    await exitsCleanly(r, 5_000);
    fs.rmSync(address, { force: true });
  });
});
