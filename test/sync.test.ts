/**
 * sendSync: genuinely blocking, returnValue semantics, and every way it ends without a reply
 * (no listener, timeout with a late reply, event garbage-collected, EINTR).
 */
import * as fs from 'node:fs';
import { describe, expect, test } from 'vitest';
import { childPids, exitsCleanly, makeMain, runNode, sha256, sockPath, threadCount, tmpDir, trackPath, useHarness } from './helpers';

useHarness();

describe('sync', () => {
  test('sync: returnValue set after a timer is returned', { timeout: 20_000 }, async () => {
    const main = makeMain();
    main.on('timer', (event: any, arg: number) => {
      setTimeout(() => {
        event.returnValue = { later: arg * 2 };
      }, 100);
    });
    const child = runNode(`out('r', ipcwire.ipcRenderer.sendSync('timer', 21));`, { address: main.address });
    expect(await child.msg('r')).toEqual({ later: 42 });
    await exitsCleanly(child);
  });

  test('sync: returnValue set after an await is returned', { timeout: 20_000 }, async () => {
    const main = makeMain();
    main.on('await', async (event: any, arg: string) => {
      await new Promise((r) => setImmediate(r));
      const v = await Promise.resolve(arg + '!');
      event.returnValue = v;
    });
    const child = runNode(`out('r', ipcwire.ipcRenderer.sendSync('await', 'awaited'));`, { address: main.address });
    expect(await child.msg('r')).toBe('awaited!');
    await exitsCleanly(child);
  });

  test('sync: the first returnValue assignment wins, later ones are ignored', { timeout: 20_000 }, async () => {
    const main = makeMain();
    const thrown: unknown[] = [];
    main.on('twice', (event: any, n: number) => {
      event.returnValue = `first-${n}`;
      try {
        event.returnValue = `second-${n}`;
      } catch (e) {
        thrown.push(e);
      }
      setTimeout(() => {
        try {
          event.returnValue = `third-${n}`;
        } catch (e) {
          thrown.push(e);
        }
      }, 20);
    });
    main.on('delayed-twice', (event: any) => {
      setTimeout(() => {
        event.returnValue = 'delayed-first';
        event.returnValue = 'delayed-second';
      }, 50);
    });
    main.on('undef', (event: any) => {
      event.returnValue = undefined;
      event.returnValue = 'not me';
    });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const a = r.sendSync('twice', 1);
      const b = r.sendSync('delayed-twice');
      const u = r.sendSync('undef');
      await sleep(50);
      const c = r.sendSync('twice', 2);
      out('r', { a, b, c, undefinedReply: u === undefined });
    `,
      { address: main.address },
    );
    expect(await child.msg('r')).toEqual({ a: 'first-1', b: 'delayed-first', c: 'first-2', undefinedReply: true });
    await exitsCleanly(child);
    expect(thrown).toEqual([]);
  });

  test('sync: sendSync blocks its thread: no timer, immediate or message callback runs inside it', { timeout: 20_000 }, async () => {
    const main = makeMain();
    main.on('slow', (event: any) => {
      event.sender.send('during', 1);
      setTimeout(() => (event.returnValue = 'slow'), 200);
    });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const seen = [];
      setTimeout(() => seen.push('timeout'), 0);
      setImmediate(() => seen.push('immediate'));
      r.on('during', () => seen.push('message'));
      const v = r.sendSync('slow');
      const inside = seen.slice();
      await sleep(100);
      r.removeAllListeners('during');
      out('r', { v, inside, after: seen.sort() });
    `,
      { address: main.address },
    );
    expect(await child.msg('r')).toEqual({ v: 'slow', inside: [], after: ['immediate', 'message', 'timeout'] });
    await exitsCleanly(child);
  });

  test('sync: a blocked sendSync neither spins the CPU nor starts a helper thread or process', { timeout: 20_000 }, async () => {
    const main = makeMain();
    let during: { threads: number; children: number } | undefined;
    main.on('hold', (event: any) => {
      // Observe the renderer from outside while it is blocked, then answer after a second.
      const pid = event.processId;
      setTimeout(() => {
        during = { threads: threadCount(pid), children: childPids(pid).length };
        setTimeout(() => (event.returnValue = 'released'), 800);
      }, 200);
    });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      r.connect();
      await r.invoke('warm-up').catch(() => {});
      const fs = require('node:fs');
      // Linux: /proc; macOS: ps -M (one line per thread, after a header).
      const threads = fs.existsSync('/proc/self/task')
        ? fs.readdirSync('/proc/self/task').length
        : require('node:child_process').execFileSync('ps', ['-M', '-p', String(process.pid)], { encoding: 'utf8' }).trim().split('\\n').length - 1;
      const cpu0 = process.cpuUsage();
      const t0 = Date.now();
      const v = r.sendSync('hold');
      const wall = Date.now() - t0;
      const cpu = process.cpuUsage(cpu0);
      out('r', { v, threads, wall, cpuMs: (cpu.user + cpu.system) / 1000 });
    `,
      { address: main.address },
    );
    const r = await child.msg('r');
    await exitsCleanly(child);
    expect(r.v).toBe('released');
    expect(r.wall).toBeGreaterThanOrEqual(900);
    expect(during).toEqual({ threads: r.threads, children: 0 });
    // Waiting in slices costs a little; spinning would cost about the whole wall time.
    expect(r.cpuMs).toBeLessThan(r.wall * 0.25);
  });

  test('sync: sendSync with no listener throws ERR_IPC_NO_LISTENER at once and the connection stays usable', { timeout: 20_000 }, async () => {
    const main = makeMain();
    main.on('known', (event: any) => (event.returnValue = 'known'));
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      let err;
      try { r.sendSync('nobody-listens', 1); } catch (e) { err = errInfo(e); }
      r.send('nobody-listens-either', 2); // dropped silently
      out('r', { err, after: r.sendSync('known') });
    `,
      { address: main.address },
    );
    const r = await child.msg('r');
    expect(r.err.isError).toBe(true);
    expect(r.err.code).toBe('ERR_IPC_NO_LISTENER');
    expect(r.after).toBe('known');
    await exitsCleanly(child);
  });

  test('sync: syncTimeout throws ERR_IPC_TIMEOUT and the late reply is discarded, never handed to the next call', { timeout: 20_000 }, async () => {
    const main = makeMain();
    const pending: any[] = [];
    const lateAssign: unknown[] = [];
    main.on('slow', (event: any, n: number) => {
      if (n === 1) {
        pending.push(event); // not answered until the next call arrives
        return;
      }
      // The late reply to call 1 goes out first, while the renderer is blocked in call 2.
      try {
        pending[0].returnValue = 'late-1';
      } catch (e) {
        lateAssign.push(e);
      }
      setTimeout(() => (event.returnValue = `answer-${n}`), 50);
    });
    main.on('orphan', (event: any) => pending.push(event));
    main.on('fast', (event: any, n: number) => {
      // Answer an earlier timed-out call now, while no call is blocked.
      try {
        pending[1].returnValue = 'late-orphan';
      } catch (e) {
        lateAssign.push(e);
      }
      event.returnValue = `fast-${n}`;
    });
    const child = runNode(
      `
      const r = new ipcwire.IpcRenderer({ syncTimeout: 300 });
      r.connect();
      const got = {};
      const t0 = Date.now();
      try { got.first = r.sendSync('slow', 1); } catch (e) { got.firstErr = errInfo(e); }
      got.waited = Date.now() - t0;
      got.second = r.sendSync('slow', 2);
      try { got.orphan = r.sendSync('orphan'); } catch (e) { got.orphanErr = errInfo(e); }
      got.fast = r.sendSync('fast', 3);
      await sleep(50);
      got.fast2 = r.sendSync('fast', 4);
      r.close();
      out('r', got);
    `,
      { address: main.address },
    );
    const got = await child.msg('r');
    expect(got.firstErr?.code).toBe('ERR_IPC_TIMEOUT');
    expect(got.firstErr?.isError).toBe(true);
    expect(got.waited).toBeGreaterThanOrEqual(290);
    expect(got.second).toBe('answer-2');
    expect(got.orphanErr?.code).toBe('ERR_IPC_TIMEOUT');
    expect(got.fast).toBe('fast-3');
    expect(got.fast2).toBe('fast-4');
    await exitsCleanly(child);
  });

  test('sync: an event garbage-collected without returnValue makes sendSync throw ERR_IPC_NO_REPLY', { timeout: 30_000 }, async () => {
    const address = trackPath(sockPath());
    // Main runs in its own process so that it can collect garbage on demand (--expose-gc).
    const mainProc = runNode(
      `
      const main = new ipcwire.IpcMain();
      main.listen(${JSON.stringify(address)});
      main.on('drop', () => { /* returnValue never set, event dropped */ });
      main.on('answer', (event) => { event.returnValue = 'answered'; });
      const gcTimer = setInterval(() => global.gc(), 20);
      main.on('done', () => { clearInterval(gcTimer); main.close(); });
      out('ready');
    `,
      { execArgv: ['--expose-gc'] },
    );
    await mainProc.msg('ready');
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      let err;
      try { r.sendSync('drop'); } catch (e) { err = errInfo(e); }
      out('r', { err, after: r.sendSync('answer') });
      r.send('done');
    `,
      { address },
    );
    const r = await child.msg('r');
    expect(r.err?.code).toBe('ERR_IPC_NO_REPLY');
    expect(r.err?.isError).toBe(true);
    expect(r.after).toBe('answered');
    await exitsCleanly(child);
    await exitsCleanly(mainProc);
  });

  test('sync: a sendSync listener that throws never leaves the renderer hanging', { timeout: 30_000 }, async () => {
    const address = trackPath(sockPath());
    // Main runs in its own process: an exception in a user listener may end it, as in Electron.
    const mainProc = runNode(`
      const main = new ipcwire.IpcMain();
      main.listen(${JSON.stringify(address)});
      main.on('throws', () => { throw new Error('listener failed'); });
      main.on('ok', (event) => { event.returnValue = 'ok'; });
      main.on('done', () => main.close());
      out('ready');
    `);
    await mainProc.msg('ready');
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      let err;
      try { r.sendSync('throws'); } catch (e) { err = errInfo(e); }
      out('r', err);
      try { r.sendSync('ok'); r.send('done'); } catch (e) { /* main may be gone */ }
    `,
      { address },
    );
    const err = await child.msg('r');
    try {
      // The renderer gets the listener's error, written before main rethrows it.
      expect(err).toMatchObject({
        isError: true,
        code: 'ERR_IPC_LISTENER_THREW',
        message: "A listener of sendSync('throws') threw: Error: listener failed",
      });
      await exitsCleanly(child);
      // Main then dies of the uncaught exception, as an Electron main does.
      const { code } = await mainProc.waitExit();
      expect(code).toBe(1);
      expect(mainProc.stderr).toMatch(/Error: listener failed/);
    } finally {
      fs.rmSync(address, { force: true }); // main may have died without close()
    }
  });

  test('sync: a sendSync interrupted by signals (SIGPROF from --cpu-prof) still returns main\'s answer', { timeout: 20_000 }, async () => {
    const main = makeMain();
    main.on('slow', (event: any, n: number) => {
      setTimeout(() => (event.returnValue = n + 1), 500);
    });
    const dir = tmpDir();
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const got = [r.sendSync('slow', 1), r.sendSync('slow', 2)];
      out('r', got);
    `,
      { address: main.address, execArgv: ['--cpu-prof', '--cpu-prof-interval', '100', '--cpu-prof-dir', dir] },
    );
    expect(await child.msg('r')).toEqual([2, 3]);
    await exitsCleanly(child);
  });

  test('sync: event.processId, sender and reply on a sendSync event', { timeout: 20_000 }, async () => {
    const main = makeMain();
    let seen: any;
    main.on('who', (event: any) => {
      seen = { processId: event.processId, senderPid: event.sender.pid, hasReply: typeof event.reply };
      event.reply('replied', 'via reply');
      event.returnValue = event.processId;
    });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const replied = new Promise((res) => r.once('replied', (e, v) => res(v)));
      out('r', { pid: r.sendSync('who'), replied: await replied });
    `,
      { address: main.address },
    );
    const r = await child.msg('r');
    expect(r).toEqual({ pid: child.pid, replied: 'via reply' });
    expect(seen).toEqual({ processId: child.pid, senderPid: child.pid, hasReply: 'function' });
    await exitsCleanly(child);
  });
  test('sync: large byte arrays in a returnValue come back whole, also when main sends a message with its own large Buffer just before the reply', { timeout: 30_000 }, async () => {
    const main = makeMain();
    main.on('mixed', (e: any, big: Buffer) => {
      // On the wire: BLOB, MESSAGE ('side'), BLOB, BLOB, SYNC_REPLY — the blocked call must keep the first
      // BLOB with its message (delivered after sendSync returns) and take the last two as the reply's.
      e.sender.send('side', big, sha256(big));
      e.returnValue = [big.subarray(0, 100_000), 'x', new Uint8Array(big.subarray(5, 200_005)), big.length];
    });
    main.on('echo', (e: any, ...args: unknown[]) => (e.returnValue = args));
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const big = require('node:crypto').randomBytes(1 << 20);
      const orig = Buffer.from(big); // the loop below changes big before 'side' is emitted
      const side = new Promise((res) => r.once('side', (_e, b, hash) => res(Buffer.isBuffer(b) && b.equals(orig) && sha256(b) === hash)));
      const m = r.sendSync('mixed', big);
      const mixed = {
        first: Buffer.isBuffer(m[0]) && m[0].equals(big.subarray(0, 100000)),
        second: m[1],
        third: m[2] instanceof Uint8Array && !Buffer.isBuffer(m[2]) && Buffer.from(m[2]).equals(big.subarray(5, 200005)),
        fourth: m[3],
      };
      // 100 round trips of 1 MiB: every reply intact, memory flat (replies are ordinary Buffers).
      let bad = 0;
      const rss0 = process.memoryUsage().rss;
      for (let i = 0; i < 100; i++) {
        big[0] = i;
        const [echoed] = r.sendSync('echo', big);
        if (!Buffer.isBuffer(echoed) || echoed[0] !== i || !echoed.equals(big)) bad++;
      }
      out('r', { mixed, side: await side, bad, rssGrowthMiB: Math.round((process.memoryUsage().rss - rss0) / 1048576) });
    `,
      { address: main.address },
    );
    const r = await child.msg('r');
    expect(r.mixed).toEqual({ first: true, second: 'x', third: true, fourth: 1 << 20 });
    expect(r.side).toBe(true);
    expect(r.bad).toBe(0);
    // Under AddressSanitizer freed memory sits in its quarantine, so RSS says nothing there.
    if (!/asan/.test(process.env.LD_PRELOAD ?? '')) expect(r.rssGrowthMiB).toBeLessThan(64);
    await exitsCleanly(child);
  });

  test('sync: a reply with large byte arrays that comes after syncTimeout is discarded with them; the next call gets its own', { timeout: 30_000 }, async () => {
    const main = makeMain();
    let n = 0;
    main.on('slow-big', (e: any) => {
      const call = ++n;
      const answer = () => (e.returnValue = [call, Buffer.alloc(300_000, call)]);
      if (call === 1) setTimeout(answer, 600);
      else answer();
    });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      r.syncTimeout = 200;
      let first;
      try { r.sendSync('slow-big'); first = 'no throw'; } catch (e) { first = e.code; }
      await new Promise((res) => setTimeout(res, 800)); // the late reply and its blob arrive meanwhile
      r.syncTimeout = 0;
      const [call, buf] = r.sendSync('slow-big');
      out('r', { first, call, len: buf.length, fill: buf.every((b) => b === 2) });
    `,
      { address: main.address },
    );
    expect(await child.msg('r')).toEqual({ first: 'ERR_IPC_TIMEOUT', call: 2, len: 300_000, fill: true });
    await exitsCleanly(child);
  });
});
