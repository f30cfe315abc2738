/**
 * Claiming a socket path is atomic: a lock file beside the socket (`<path>.lock`), held by the server for its
 * life, decides who owns the path. Two listen() calls racing on one fresh or stale path never both succeed;
 * a live server's socket is never removed, whatever a connect probe answers.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { catchSync, childPids, exitsCleanly, HAS_PROC, ipcwire, isAlive, threadCount, localRenderer, makeMain, runNode, sockPath, tmpDir, trackMain, trackPath, trackRaw, useHarness, type Any, type Child } from './helpers';

useHarness();

/** A child that listens on each path when told, at a shared instant, and reports what happened. */
const RACER = `
  const fs = require('node:fs');
  const now = () => performance.timeOrigin + performance.now();
  let main = null;
  for (;;) {
    const cmd = JSON.parse(await readLine());
    if (cmd.op === 'end') break;
    if (cmd.op === 'race') {
      while (now() < cmd.at) {} // both racers leave this spin at the same instant
      const t0 = now();
      main = new ipcwire.IpcMain();
      try {
        main.listen(cmd.path);
        out('r' + cmd.round, { ok: true, t0, t1: now(), ino: fs.statSync(cmd.path).ino });
      } catch (e) {
        main = null;
        out('r' + cmd.round, { ok: false, t0, t1: now(), err: errInfo(e) });
      }
    } else if (cmd.op === 'close') {
      main.close();
      main = null;
      out('c' + cmd.round);
    }
  }
  closeStdin();
`;

/** A child that leaves dead servers behind when SIGKILLed: ipcwire mains (socket + lock) and node:net servers (socket only). */
async function leaveDeadServers(ipcwirePaths: string[], netPaths: string[]): Promise<void> {
  const victim = runNode(`
    const net = require('node:net');
    const mains = ${JSON.stringify(ipcwirePaths)}.map((p) => { const m = new ipcwire.IpcMain(); m.listen(p); return m; });
    for (const p of ${JSON.stringify(netPaths)}) await new Promise((r) => net.createServer().listen(p, r));
    out('ready', mains.length);
  `);
  await victim.msg('ready', 60_000);
  victim.kill('SIGKILL');
  await victim.waitExit();
}

/**
 * What macOS shows when a live server's listen queue is full, made on Linux: a live main (answering 'alive')
 * whose socket file was moved to `moved` and replaced by a dead server's socket, so that a connect to `address`
 * is refused while main's lock on the path is held.
 */
async function liveMainBehindDeadSocket(): Promise<{ dir: string; address: string; main: Any; moved: string }> {
  const dir = tmpDir();
  const address = path.join(dir, 'busy.sock');
  const main = makeMain(undefined, address);
  main.handle('alive', () => 'yes');
  const moved = path.join(dir, 'moved.sock');
  fs.renameSync(address, moved);
  const dead = path.join(dir, 'dead.sock');
  await leaveDeadServers([], [dead]);
  fs.renameSync(dead, address);
  return { dir, address, main, moved };
}

async function connects(address: string): Promise<void> {
  const s = trackRaw(net.createConnection(address));
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  s.destroy();
}

describe('claiming a socket path', () => {
  test('the lock file: <path>.lock, 0600, held while listening, removed with the socket at close', () => {
    const main = makeMain();
    const lock = `${main.address}.lock`;
    expect(fs.lstatSync(lock).isFile()).toBe(true);
    expect(fs.lstatSync(lock).mode & 0o777).toBe(0o600);
    main.close();
    expect(fs.existsSync(main.address)).toBe(false);
    expect(fs.existsSync(lock)).toBe(false);
  });

  test(
    'race: 2,000 rounds of two processes listening at one instant on a fresh or stale path: exactly one wins, it serves, the other gets EADDRINUSE',
    { timeout: 300_000 },
    async () => {
      const dir = tmpDir();
      const racers: Child[] = [runNode(RACER), runNode(RACER)];
      const BATCH = 250;
      const BATCHES = 4; // each batch: BATCH rounds on fresh paths, BATCH on stale ones
      let round = 0;
      let contended = 0;
      const kinds: Record<string, number> = {};
      const started = Date.now();
      for (let b = 0; b < BATCHES; b++) {
        // Stale paths of three kinds: a SIGKILLed ipcwire main's socket and lock, a SIGKILLed node:net
        // server's socket (no lock), a lock file left without its socket.
        const stale = Array.from({ length: BATCH }, (_, i) => path.join(dir, `s${b}-${i}.sock`));
        await leaveDeadServers(stale.filter((_, i) => i % 4 < 2), stale.filter((_, i) => i % 4 === 2));
        for (const [i, p] of stale.entries()) if (i % 4 === 3) fs.writeFileSync(`${p}.lock`, '', { mode: 0o600 });
        const fresh = Array.from({ length: BATCH }, (_, i) => path.join(dir, `f${b}-${i}.sock`));
        for (const [i, p] of [...fresh, ...stale].entries()) {
          const kind = i < BATCH ? 'fresh' : ['stale ipcwire', 'stale ipcwire', 'stale net', 'lock only'][(i - BATCH) % 4];
          kinds[kind] = (kinds[kind] ?? 0) + 1;
          const r = ++round;
          const at = performance.timeOrigin + performance.now() + 4;
          for (const c of racers) c.send(JSON.stringify({ op: 'race', round: r, path: p, at }));
          const res: Any[] = await Promise.all(racers.map((c) => c.msg(`r${r}`)));
          const winners = res.filter((x) => x.ok);
          expect(winners.length, `round ${r} (${kind}): ${JSON.stringify(res)}`).toBe(1);
          const loser = res.find((x) => !x.ok);
          expect(loser.err, `round ${r} (${kind})`).toMatchObject({ code: 'EADDRINUSE', syscall: 'listen', address: p });
          // The two listen() calls overlapped in time: the race was real.
          if (res[0].t0 < res[1].t1 && res[1].t0 < res[0].t1) contended++;
          // The file at the path is the winner's socket, and it accepts.
          expect(fs.statSync(p).ino).toBe(winners[0].ino);
          await connects(p);
          const w = racers[res.indexOf(winners[0])];
          w.send(JSON.stringify({ op: 'close', round: r }));
          await w.msg(`c${r}`);
          expect(fs.existsSync(p), `round ${r}: socket file after close`).toBe(false);
          expect(fs.existsSync(`${p}.lock`), `round ${r}: lock file after close`).toBe(false);
        }
      }
      for (const c of racers) c.send(JSON.stringify({ op: 'end' }));
      await Promise.all(racers.map((c) => c.waitExit()));
      // The measure of this run, for the commit log: how many rounds really raced.
      console.log(`claim race: ${round} rounds (${JSON.stringify(kinds)}), ${contended} with overlapping listen() calls, ${Date.now() - started} ms`);
      expect(round).toBe(2 * BATCH * BATCHES);
      expect(fs.readdirSync(dir)).toEqual([]);
    },
  );

  test('a refused connect does not make a socket stale: while the lock is held the path is not taken', { timeout: 20_000 }, async () => {
    const { dir, address, main, moved } = await liveMainBehindDeadSocket();
    const { IpcMain, IpcRenderer } = ipcwire();
    expect(catchSync(() => new IpcRenderer({ connectTimeout: 100 }).connect(address)).code).toBe('ECONNREFUSED');
    const second = trackMain(new IpcMain());
    const err = catchSync(() => second.listen(address));
    expect(err).toMatchObject({ code: 'EADDRINUSE', syscall: 'listen', address });
    expect(fs.lstatSync(address).isSocket()).toBe(true); // not deleted
    const r = localRenderer(moved);
    expect(await r.invoke('alive')).toBe('yes');
    r.close();
    fs.rmSync(address);
    fs.renameSync(moved, address); // so that close() finds and removes its own socket
    main.close();
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  test('a live server that takes no lock (node:net) keeps its path: EADDRINUSE, still serving', async () => {
    const address = trackPath(sockPath());
    const server = trackRaw(net.createServer((s) => s.destroy()));
    await new Promise<void>((r) => server.listen(address, r));
    const { IpcMain } = ipcwire();
    const main = trackMain(new IpcMain());
    expect(catchSync(() => main.listen(address))).toMatchObject({ code: 'EADDRINUSE', syscall: 'listen', address });
    expect(fs.existsSync(`${address}.lock`)).toBe(false);
    await connects(address);
    await new Promise<void>((r) => server.close(() => r()));
  });

  test('a dead node:net server\'s socket (no lock file) is replaced; a symlinked lock file is refused', { timeout: 20_000 }, async () => {
    const dir = tmpDir();
    const address = path.join(dir, 'old.sock');
    await leaveDeadServers([], [address]);
    const main = makeMain(undefined, address);
    main.handle('who', () => 'new');
    const r = localRenderer(address);
    expect(await r.invoke('who')).toBe('new');
    r.close();
    main.close();
    // A symlink planted at the lock path is not followed (its target is not created or truncated).
    const target = path.join(dir, 'target');
    fs.writeFileSync(target, 'precious');
    const other = path.join(dir, 'other.sock');
    fs.symlinkSync(target, `${other}.lock`);
    const { IpcMain } = ipcwire();
    const err = catchSync(() => trackMain(new IpcMain()).listen(other));
    expect(err.code).toBe('ELOOP');
    expect(fs.readFileSync(target, 'utf8')).toBe('precious');
    expect(fs.existsSync(other)).toBe(false);
  });

  test('connect retries a refusal while the lock shows a live server (macOS answers a full backlog so), and fails fast on a dead one', { timeout: 30_000 }, async () => {
    const { address, main, moved } = await liveMainBehindDeadSocket();
    const child = runNode(`
      const r = new ipcwire.IpcRenderer({ connectTimeout: 10000 });
      out('connecting');
      const t0 = Date.now();
      r.connect(${JSON.stringify(address)});
      const ms = Date.now() - t0;
      out('r', { ms, v: await r.invoke('alive') });
      r.close();
    `);
    await child.msg('connecting');
    await new Promise((r) => setTimeout(r, 500));
    fs.renameSync(moved, address); // the "queue" drains: the live server is reachable again
    const r = await child.msg('r');
    expect(r.v).toBe('yes');
    expect(r.ms).toBeGreaterThanOrEqual(300); // it waited through refusals instead of failing at once
    await new Promise<void>((res) => child.proc.once('close', () => res()));
    main.close();
    // A dead server's socket (its lock free): refused at once, well before the connect timeout.
    await leaveDeadServers([address], []);
    const { IpcRenderer } = ipcwire();
    const t0 = Date.now();
    const err = catchSync(() => new IpcRenderer({ connectTimeout: 10_000 }).connect(address));
    expect(err).toMatchObject({ code: 'ECONNREFUSED', syscall: 'connect', address });
    expect(Date.now() - t0).toBeLessThan(5000);
    fs.rmSync(address);
    fs.rmSync(`${address}.lock`);
  });
});

describe('test helpers without /proc (what a macOS run uses)', () => {
  const hasPs = (() => {
    try {
      return execFileSync('ps', ['-o', 'pid=', '-p', String(process.pid)]).length > 0;
    } catch {
      return false;
    }
  })();
  test.skipIf(!hasPs || !HAS_PROC)('childPids, isAlive and threadCount from ps agree with /proc', { timeout: 20_000 }, async () => {
    const child = runNode(`out('ready'); await readLine(); closeStdin();`);
    await child.msg('ready');
    expect(childPids(process.pid, false)).toContain(child.pid);
    expect(childPids(process.pid, true)).toContain(child.pid);
    expect(childPids(child.pid, false)).toEqual(childPids(child.pid, true)); // none
    expect(isAlive(child.pid, false)).toBe(true);
    const viaPs = threadCount(child.pid, false);
    const viaProc = threadCount(child.pid, true);
    expect(viaPs).toBeGreaterThan(1);
    expect(Math.abs(viaPs - viaProc)).toBeLessThanOrEqual(2); // threads come and go between the two reads
    child.send('end');
    await child.waitExit();
    expect(isAlive(child.pid, false)).toBe(false);
    expect(isAlive(child.pid, true)).toBe(false);
  });
});

/** The per-user directory of bare names and fresh addresses, as the library computes it. */
function runtimeDir(): string {
  const base = process.env.XDG_RUNTIME_DIR;
  return base && path.isAbsolute(base) ? path.join(base, 'ipcwire') : path.join(os.tmpdir(), `ipcwire-${process.getuid!()}`);
}

describe('names and the per-user directory', () => {
  test("listen('x.sock') takes a bare name ending in .sock as is; 'x' and 'x.sock' are the same address", async () => {
    const { IpcMain } = ipcwire();
    const name = `iw-test-${process.pid}-named`;
    const main = trackMain(new IpcMain());
    const address = trackPath(main.listen(`${name}.sock`));
    expect(address).toBe(path.join(runtimeDir(), `${name}.sock`));
    expect(fs.existsSync(`${address}.sock`)).toBe(false);
    main.handle('who', () => 'named');
    for (const given of [name, `${name}.sock`, address]) {
      const r = localRenderer(given);
      expect(await r.invoke('who')).toBe('named');
      r.close();
    }
    main.close();
    expect(fs.existsSync(address)).toBe(false);
  });

  test('a relative path is resolved against the current directory of the process that gives it', { timeout: 20_000 }, async () => {
    const dir = tmpDir();
    fs.mkdirSync(path.join(dir, 'sub'));
    const child = runNode(
      `
      const main = new ipcwire.IpcMain();
      const address = main.listen('./sub/rel.sock');
      main.handle('where', () => process.cwd());
      const r = new ipcwire.IpcRenderer();
      r.connect('sub/rel.sock');
      out('r', { address, answer: await r.invoke('where') });
      r.close();
      main.close();
    `,
      { cwd: dir },
    );
    const r = await child.msg('r');
    expect(r.address).toBe(path.join(fs.realpathSync(dir), 'sub', 'rel.sock'));
    expect(r.answer).toBe(fs.realpathSync(dir));
    await exitsCleanly(child);
    expect(fs.readdirSync(path.join(dir, 'sub'))).toEqual([]);
  });

  test('listen() in the per-user directory removes dead sockets there, never live ones or other files', { timeout: 30_000 }, async () => {
    const dir = runtimeDir();
    const name = (what: string) => path.join(dir, `iw-test-${process.pid}-${what}.sock`);
    // Kept: a live main in another process, a live node:net server (no lock), a regular file named .sock.
    // (They come first: listen() in the per-user directory sweeps it, the live main's as well.)
    const live = runNode(`
      const main = new ipcwire.IpcMain();
      main.listen(${JSON.stringify(path.basename(name('live-main')))});
      main.handle('alive', () => 'yes');
      out('ready');
      await readLine();
      main.close();
      closeStdin();
    `);
    await live.msg('ready');
    const server = trackRaw(net.createServer((s) => s.destroy()));
    await new Promise<void>((r) => server.listen(name('live-net'), r));
    fs.writeFileSync(name('file'), 'precious');
    // Dead: a SIGKILLed main's socket and lock, a lock file alone, a SIGKILLed node:net server's socket.
    await leaveDeadServers([name('dead-main')], [name('dead-net')]);
    fs.writeFileSync(`${name('lock-only')}.lock`, '', { mode: 0o600 });
    const present = () => fs.readdirSync(dir).filter((f) => f.startsWith(`iw-test-${process.pid}-`)).sort();
    expect(present()).toEqual(
      ['dead-main.sock', 'dead-main.sock.lock', 'dead-net.sock', 'file.sock', 'live-main.sock', 'live-main.sock.lock', 'live-net.sock', 'lock-only.sock.lock']
        .map((f) => `iw-test-${process.pid}-${f}`),
    );
    const { IpcMain } = ipcwire();
    const main = trackMain(new IpcMain());
    const fresh = trackPath(main.listen());
    expect(present()).toEqual(
      ['file.sock', 'live-main.sock', 'live-main.sock.lock', 'live-net.sock'].map((f) => `iw-test-${process.pid}-${f}`),
    );
    expect(fs.readFileSync(name('file'), 'utf8')).toBe('precious');
    const r = localRenderer(name('live-main'));
    expect(await r.invoke('alive')).toBe('yes');
    r.close();
    await connects(name('live-net'));
    live.send('end');
    await exitsCleanly(live);
    await new Promise<void>((res) => server.close(() => res()));
    fs.rmSync(name('file'));
    main.close();
    expect(fs.existsSync(fresh)).toBe(false);
    expect(present()).toEqual([]);
  });
});
