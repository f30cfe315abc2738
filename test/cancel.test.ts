/**
 * Cancellation and timeouts of invoke in both directions: invokeWith({ signal, timeout }), the handler's
 * event.signal, default invokeTimeout per instance, sendSyncWith({ timeout }), and that abandoned calls leave
 * nothing behind (pending entries, abort listeners, timers, memory).
 */
import { getEventListeners } from 'node:events';
import { describe, expect, test } from 'vitest';
import { catchAsync, exitsCleanly, ipcwire, makeMain, once, runNode, useHarness, waitUntil } from './helpers';

useHarness();

/** Prints an error's shape, cause included (what the caller of an abandoned call sees). */
const SHOW = `
  const show = (e) => ({ name: e.name, code: e.code, message: e.message, isError: e instanceof Error,
    isAbortError: e instanceof ipcwire.AbortError, cause: e.cause === undefined ? null : String(e.cause && e.cause.message || e.cause) });
`;

describe('cancel', () => {
  test('cancel: a signal aborted before the call sends nothing and rejects with AbortError (cause = reason)', { timeout: 20_000 }, async () => {
    const main = makeMain();
    let calls = 0;
    main.handle('work', () => ++calls);
    const child = runNode(`${SHOW}
      const r = ipcwire.ipcRenderer;
      const ac = new AbortController();
      ac.abort(new Error('user left'));
      out('early', await r.invokeWith({ signal: ac.signal }, 'work').then(() => 'resolved', show));
      out('after', await r.invoke('work'));
      r.close();
    `, { address: main.address });
    expect(await child.msg('early')).toEqual({ name: 'AbortError', code: 'ABORT_ERR', message: "invoke('work') was aborted",
      isError: true, isAbortError: true, cause: 'user left' });
    // The aborted call never reached main: the next one is its first.
    expect(await child.msg('after')).toBe(1);
    expect(calls).toBe(1);
    await exitsCleanly(child);
  });

  test('cancel: aborting during the handler rejects at once, aborts event.signal within 50 ms, drops the late result', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const TRIALS = 5;
    const seen: any[] = [];
    const abortedAt = new Map<number, number>();
    main.handle('slow', (event: any, n: number) => new Promise((resolve) => {
      seen.push({ n, abortedAtStart: event.signal.aborted });
      event.signal.addEventListener('abort', () => {
        // Wall-clock time on the machine's one clock, comparable with the renderer's.
        abortedAt.set(n, performance.timeOrigin + performance.now());
        seen.push({ n, reason: event.signal.reason?.name });
        // A handler that ignores the abort still resolves: that late result must go nowhere.
        setTimeout(() => resolve(`late ${n}`), 20);
      });
      event.sender.send('abort-now', n);
    }));
    main.handle('fast', (_e: any, n: number) => `fast ${n}`);
    const child = runNode(`${SHOW}
      const r = ipcwire.ipcRenderer;
      const controllers = new Map();
      const calls = new Map();
      r.on('abort-now', (_e, n) => {
        out('abort-at-' + n, performance.timeOrigin + performance.now());
        controllers.get(n).abort('stop');
        // Rejected at once: before the event loop turns (nothing waits for main).
        Promise.race([calls.get(n).then(() => 'resolved', show), new Promise((res) => setImmediate(() => res('not yet')))])
          .then((v) => out('r' + n, v));
      });
      for (let n = 1; n <= ${TRIALS}; n++) {
        const ac = new AbortController();
        controllers.set(n, ac);
        const p = r.invokeWith({ signal: ac.signal }, 'slow', n);
        calls.set(n, p);
        await p.catch(() => {});
        // Later calls get their own results, never the late one.
        out('next' + n, [await r.invoke('fast', 2 * n), await r.invoke('fast', 2 * n + 1)]);
      }
      await new Promise((res) => setTimeout(res, 100)); // the late replies, if main sent them, have arrived by now
      out('listeners', [...controllers.values()].map((ac) => require('node:events').getEventListeners(ac.signal, 'abort').length));
      out('counts', r.wire._counts());
      r.removeAllListeners('abort-now');
      r.close();
    `, { address: main.address });
    const latencies: number[] = [];
    for (let n = 1; n <= TRIALS; n++) {
      expect(await child.msg('r' + n)).toMatchObject({ name: 'AbortError', code: 'ABORT_ERR', isAbortError: true, cause: 'stop' });
      expect(await child.msg('next' + n)).toEqual([`fast ${2 * n}`, `fast ${2 * n + 1}`]);
      await waitUntil(() => abortedAt.has(n), 5000, `handler ${n} to see the abort`);
      latencies.push(abortedAt.get(n)! - (await child.msg('abort-at-' + n)));
    }
    expect(seen.filter((x) => 'abortedAtStart' in x)).toEqual(Array.from({ length: TRIALS }, (_, i) => ({ n: i + 1, abortedAtStart: false })));
    expect(seen.filter((x) => 'reason' in x).map((x) => x.reason)).toEqual(Array(TRIALS).fill('AbortError'));
    // From the renderer aborting to main's handler seeing event.signal abort: the median of the trials (one
    // slow trial on a loaded machine does not decide), and every trial bounded.
    latencies.sort((a, b) => a - b);
    expect(latencies[Math.floor(TRIALS / 2)], `abort latencies (ms): ${latencies.join(', ')}`).toBeLessThan(50);
    expect(latencies[TRIALS - 1]).toBeLessThan(1000);
    expect(await child.msg('listeners')).toEqual(Array(TRIALS).fill(0));
    expect(await child.msg('counts')).toEqual({ pending: 0, answering: 0 });
    await exitsCleanly(child);
  });

  test('cancel: aborting after the reply changes nothing and leaves no listener', { timeout: 20_000 }, async () => {
    const main = makeMain();
    const aborted: boolean[] = [];
    main.handle('quick', (event: any, x: number) => {
      setTimeout(() => aborted.push(event.signal.aborted), 200);
      return x * 2;
    });
    const child = runNode(`
      const r = ipcwire.ipcRenderer;
      const ac = new AbortController();
      const v = await r.invokeWith({ signal: ac.signal, timeout: 10000 }, 'quick', 21);
      out('listeners', require('node:events').getEventListeners(ac.signal, 'abort').length);
      ac.abort();
      out('v', v);
      out('timers', process.getActiveResourcesInfo().filter((x) => x === 'Timeout').length);
      r.close();
    `, { address: main.address });
    expect(await child.msg('v')).toBe(42);
    expect(await child.msg('listeners')).toBe(0);
    expect(await child.msg('timers')).toBe(0);
    await exitsCleanly(child);
    await waitUntil(() => aborted.length === 1, 5000, 'the handler timer');
    expect(aborted).toEqual([false]);
  });

  test('cancel: timeout per call and invokeTimeout per renderer reject with ERR_IPC_TIMEOUT and abort event.signal', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const reasons: string[] = [];
    main.handle('hang', (event: any) => new Promise((_resolve, reject) => {
      event.signal.addEventListener('abort', () => {
        reasons.push(event.signal.reason.name);
        reject(event.signal.reason);
      });
    }));
    main.handle('ok', () => 'ok');
    const child = runNode(`${SHOW}
      const r = new ipcwire.IpcRenderer({ invokeTimeout: 150 });
      let t0 = performance.now();
      out('per-call', await r.invokeWith({ timeout: 100 }, 'hang').then(() => 'resolved', (e) => ({ ...show(e), timeout: e.timeout, ms: performance.now() - t0 })));
      t0 = performance.now();
      out('default', await r.invoke('hang').then(() => 'resolved', (e) => ({ ...show(e), timeout: e.timeout, ms: performance.now() - t0 })));
      // timeout 0 overrides the instance default: waits for ever (here: for a fast reply).
      out('zero', await r.invokeWith({ timeout: 0 }, 'ok'));
      out('bad', await Promise.all([
        r.invokeWith({ timeout: -1 }, 'ok').catch((e) => [e.name, e.code]),
        r.invokeWith({ signal: {} }, 'ok').catch((e) => [e.name, e.code]),
        r.invokeWith(null, 'ok').catch((e) => [e.name, e.code]),
      ]));
      out('ctor', (() => { try { new ipcwire.IpcRenderer({ invokeTimeout: 1.5 }); } catch (e) { return [e.name, e.code]; } })());
      out('counts', r.wire._counts());
      r.close();
    `, { address: main.address });
    const perCall = await child.msg('per-call');
    expect(perCall).toMatchObject({ name: 'IpcError', code: 'ERR_IPC_TIMEOUT', timeout: 100, message: "invoke('hang') got no reply within 100 ms" });
    expect(perCall.ms).toBeGreaterThanOrEqual(99);
    const byDefault = await child.msg('default');
    expect(byDefault).toMatchObject({ code: 'ERR_IPC_TIMEOUT', timeout: 150 });
    expect(byDefault.ms).toBeGreaterThanOrEqual(149);
    expect(await child.msg('zero')).toBe('ok');
    expect(await child.msg('bad')).toEqual([['RangeError', 'ERR_OUT_OF_RANGE'], ['TypeError', 'ERR_INVALID_ARG_TYPE'], ['TypeError', 'ERR_INVALID_ARG_TYPE']]);
    expect(await child.msg('ctor')).toEqual(['RangeError', 'ERR_OUT_OF_RANGE']);
    expect(await child.msg('counts')).toEqual({ pending: 0, answering: 0 });
    await exitsCleanly(child);
    expect(reasons).toEqual(['AbortError', 'AbortError']);
  });

  test('cancel: peer.invokeWith and IpcMain invokeTimeout abort the renderer handler\'s event.signal', { timeout: 30_000 }, async () => {
    const main = makeMain({ invokeTimeout: 200 });
    const child = runNode(`
      const r = ipcwire.ipcRenderer;
      const reasons = [];
      r.handle('hang', (event) => new Promise(() => {
        event.signal.addEventListener('abort', () => {
          reasons.push(event.signal.reason.name);
          if (reasons.length === 2) out('reasons', reasons);
        });
      }));
      r.once('bye', () => { r.removeHandler('hang'); out('counts', r.wire._counts()); r.close(); });
      r.send('up');
    `, { address: main.address });
    const [peer] = await once(main.peers, 'connect');
    const ac = new AbortController();
    const aborted = catchAsync(peer.invokeWith({ signal: ac.signal }, 'hang'));
    setTimeout(() => ac.abort(new Error('enough')), 50);
    const err = await aborted;
    expect(err).toBeInstanceOf(ipcwire().AbortError);
    expect([err.name, err.code, err.cause.message]).toEqual(['AbortError', 'ABORT_ERR', 'enough']);
    expect(getEventListeners(ac.signal, 'abort').length).toBe(0);
    const timedOut = await catchAsync(peer.invoke('hang'));
    expect([timedOut.code, timedOut.timeout]).toEqual(['ERR_IPC_TIMEOUT', 200]);
    expect(await child.msg('reasons')).toEqual(['AbortError', 'AbortError']);
    expect(peer.link._counts()).toEqual({ pending: 0, answering: 0 });
    peer.send('bye');
    expect(await child.msg('counts')).toEqual({ pending: 0, answering: 0 });
    await exitsCleanly(child);
  });

  test('cancel: a renderer that disconnects aborts the signal of the handlers still running for it', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const reasons: string[] = [];
    let started = 0;
    main.handle('hang', (event: any) => new Promise(() => {
      started++;
      event.signal.addEventListener('abort', () => reasons.push(event.signal.reason.code));
    }));
    const child = runNode(`
      const r = ipcwire.ipcRenderer;
      r.invoke('hang'); r.invoke('hang');
      out('sent', true);
    `, { address: main.address });
    await child.msg('sent');
    await waitUntil(() => started === 2, 10_000, 'both handlers to start');
    child.kill('SIGKILL');
    await waitUntil(() => reasons.length === 2, 10_000, 'both signals to abort');
    expect(reasons).toEqual(['ERR_IPC_DISCONNECTED', 'ERR_IPC_DISCONNECTED']);
    await child.waitExit();
  });

  test('cancel: sendSyncWith({ timeout }) overrides syncTimeout for one call', { timeout: 20_000 }, async () => {
    const main = makeMain();
    main.on('slow', (event: any, ms: number) => setTimeout(() => { event.returnValue = ms; }, ms));
    const child = runNode(`
      const r = new ipcwire.IpcRenderer({ syncTimeout: 5000 });
      const t0 = performance.now();
      try { r.sendSyncWith({ timeout: 100 }, 'slow', 1000); out('short', 'returned'); }
      catch (e) { out('short', { code: e.code, timeout: e.timeout, ms: performance.now() - t0 }); }
      out('long', r.sendSyncWith({ timeout: 0 }, 'slow', 50));
      out('plain', r.sendSync('slow', 10));
      out('bad', [
        (() => { try { r.sendSyncWith({ signal: new AbortController().signal }, 'slow', 1); } catch (e) { return [e.name, e.code]; } })(),
        (() => { try { r.sendSyncWith({ timeout: 'x' }, 'slow', 1); } catch (e) { return [e.name, e.code]; } })(),
      ]);
      r.close();
    `, { address: main.address });
    const short = await child.msg('short');
    expect([short.code, short.timeout]).toEqual(['ERR_IPC_TIMEOUT', 100]);
    expect(short.ms).toBeLessThan(1000);
    expect(await child.msg('long')).toBe(50);
    expect(await child.msg('plain')).toBe(10);
    expect(await child.msg('bad')).toEqual([['TypeError', 'ERR_INVALID_ARG_TYPE'], ['RangeError', 'ERR_OUT_OF_RANGE']]);
    await exitsCleanly(child);
  });

  test('cancel: 10,000 invokes each aborted at a random point leave no pending call, listener or timer on either side; memory flat', { timeout: 120_000 }, async () => {
    const main = makeMain();
    let handled = 0;
    let sawAbort = 0;
    main.handle('job', (event: any, delay: number) => {
      handled++;
      if (delay < 0) return 'now';
      return new Promise((resolve) => {
        const t = setTimeout(() => resolve('done'), delay);
        event.signal.addEventListener('abort', () => {
          sawAbort++;
          clearTimeout(t);
          resolve('aborted');
        }, { once: true });
      });
    });
    const child = runNode(`
      const { getEventListeners } = require('node:events');
      const r = ipcwire.ipcRenderer;
      const timers = () => process.getActiveResourcesInfo().filter((x) => x === 'Timeout').length;
      const outcome = { resolved: 0, aborted: 0, timedOut: 0, other: 0, leftListeners: 0 };
      // One call: abort before sending, right after, after a tick, after a random delay, after its reply, or by timeout.
      async function one(i) {
        const ac = new AbortController();
        const point = Math.floor(Math.random() * 6);
        const delay = Math.random() < 0.3 ? -1 : Math.floor(Math.random() * 3);
        if (point === 0) ac.abort();
        const opts = point === 5 ? { signal: ac.signal, timeout: 1 + Math.floor(Math.random() * 3) } : { signal: ac.signal };
        const p = r.invokeWith(opts, 'job', delay);
        if (point === 1) ac.abort();
        if (point === 2) setImmediate(() => ac.abort());
        if (point === 3) setTimeout(() => ac.abort(), Math.random() * 3);
        try { await p; outcome.resolved++; }
        catch (e) {
          if (e.name === 'AbortError') outcome.aborted++;
          else if (e.code === 'ERR_IPC_TIMEOUT') outcome.timedOut++;
          else { outcome.other++; out('other', errInfo(e)); }
        }
        if (point === 4) ac.abort();
        await new Promise((res) => setTimeout(res, 4)); // the setTimeout abort, if any, has fired
        outcome.leftListeners += getEventListeners(ac.signal, 'abort').length;
      }
      async function round(n) {
        for (let i = 0; i < n; i += 100) await Promise.all(Array.from({ length: 100 }, (_, k) => one(i + k)));
      }
      const timersBefore = timers();
      await round(5000);
      global.gc(); global.gc();
      const heap1 = process.memoryUsage().heapUsed;
      await round(5000);
      global.gc(); global.gc();
      const heap2 = process.memoryUsage().heapUsed;
      out('result', { outcome, counts: r.wire._counts(), timers: timers() - timersBefore, heapGrowth: heap2 - heap1 });
      await readLine();
      r.close();
      closeStdin();
    `, { address: main.address, execArgv: ['--expose-gc'] });
    const { outcome, counts, timers, heapGrowth } = await child.msg('result', 110_000);
    expect(outcome.resolved + outcome.aborted + outcome.timedOut).toBe(10_000);
    expect(outcome.other).toBe(0);
    expect(outcome.aborted).toBeGreaterThan(3000);
    expect(outcome.resolved).toBeGreaterThan(1000);
    expect(outcome.leftListeners).toBe(0);
    expect(counts).toEqual({ pending: 0, answering: 0 });
    expect(timers).toBe(0);
    // 5,000 more abandoned calls add no retained memory (a leak of one small object per call would be ~1 MB).
    expect(heapGrowth).toBeLessThan(512 * 1024);
    // Main: every handler settled, none left in flight; calls aborted before they were sent never reached it.
    const [peer] = main.peers.list();
    await waitUntil(() => peer.link._counts().answering === 0, 10_000, 'main to have no invoke in flight');
    expect(peer.link._counts()).toEqual({ pending: 0, answering: 0 });
    expect(handled).toBeLessThan(10_000);
    expect(sawAbort).toBeGreaterThan(0);
    child.send('done');
    await exitsCleanly(child);
  });
});
