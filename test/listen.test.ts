/**
 * Addresses: bare names, absolute paths, fresh private addresses; EADDRINUSE, stale files,
 * too-long paths, private socket files that other users cannot connect to, system errors shaped as node:net
 * gives them.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { catchSync, exitsCleanly, ipcwire, localRenderer, makeMain, otherUserTree, runNode, skipBecause, sockPath, tmpDir, trackMain, trackPath, useHarness } from './helpers';

useHarness();

function runtimeDir(): string {
  const base = process.env.XDG_RUNTIME_DIR;
  return base && path.isAbsolute(base) ? path.join(base, 'ipcwire') : path.join(os.tmpdir(), `ipcwire-${process.getuid!()}`);
}

describe('listen', () => {
  test('listen: returns the address and sets .address; close() removes the socket file and is idempotent', () => {
    const { IpcMain } = ipcwire();
    const main = trackMain(new IpcMain());
    const p = sockPath();
    expect(main.listen(p)).toBe(p);
    expect(main.address).toBe(p);
    expect(fs.statSync(p).isSocket()).toBe(true);
    main.close();
    expect(fs.existsSync(p)).toBe(false);
    expect(() => main.close()).not.toThrow();
  });

  test('listen: a bare name becomes a 0600 socket in the per-user 0700 directory', () => {
    const { IpcMain } = ipcwire();
    const main = trackMain(new IpcMain());
    const name = `iw-test-${process.pid}-bare`;
    const address = trackPath(main.listen(name));
    expect(address).toBe(path.join(runtimeDir(), `${name}.sock`));
    expect(main.address).toBe(address);
    expect(fs.statSync(address).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(address)).mode & 0o777).toBe(0o700);
    const r = localRenderer(name); // a renderer resolves the same bare name the same way
    expect(r.connected).toBe(true);
    r.close();
    main.close();
    expect(fs.existsSync(address)).toBe(false);
  });

  test('listen: no address gives a fresh private 0600 socket in a 0700 directory', () => {
    const { IpcMain } = ipcwire();
    const a = trackMain(new IpcMain());
    const b = trackMain(new IpcMain());
    const pa = trackPath(a.listen());
    const pb = trackPath(b.listen());
    expect(pa).not.toBe(pb);
    expect(path.isAbsolute(pa)).toBe(true);
    expect(Buffer.byteLength(pa)).toBeLessThan(108);
    expect(fs.statSync(pa).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(pa)).mode & 0o777).toBe(0o700);
    a.close();
    b.close();
    expect(fs.existsSync(pa)).toBe(false);
    expect(fs.existsSync(pb)).toBe(false);
  });

  test('listen: an absolute path gets a 0600 socket file (socketMode changes it)', () => {
    const main = makeMain();
    expect(fs.statSync(main.address).mode & 0o777).toBe(0o600);
    const other = makeMain({ socketMode: 0o660 });
    expect(fs.statSync(other.address).mode & 0o777).toBe(0o660);
  });

  test('listen: a path a live server holds fails with EADDRINUSE (code, syscall, address) and is left intact', async () => {
    const main = makeMain();
    main.handle('alive', () => 'yes');
    const { IpcMain } = ipcwire();
    const second = trackMain(new IpcMain());
    const err = catchSync(() => second.listen(main.address));
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe('EADDRINUSE');
    expect(err.syscall).toBe('listen');
    expect(err.address).toBe(main.address);
    expect(typeof err.errno).toBe('number');
    // The live server is untouched.
    const r = localRenderer(main.address);
    expect(await r.invoke('alive')).toBe('yes');
  });

  test('listen: a stale socket file left by a SIGKILLed server is replaced', { timeout: 20_000 }, async () => {
    const address = trackPath(sockPath());
    const dead = runNode(`
      const main = new ipcwire.IpcMain();
      main.listen(${JSON.stringify(address)});
      out('ready');
    `);
    await dead.msg('ready');
    dead.kill('SIGKILL');
    await dead.waitExit();
    expect(fs.statSync(address).isSocket()).toBe(true);
    const main = makeMain(undefined, address);
    main.handle('who', () => 'new server');
    const r = localRenderer(address);
    expect(await r.invoke('who')).toBe('new server');
  });

  test('listen: a regular file at the path is not clobbered', () => {
    const dir = tmpDir();
    const file = path.join(dir, 'not-a-socket');
    fs.writeFileSync(file, 'precious');
    const { IpcMain } = ipcwire();
    const main = trackMain(new IpcMain());
    const err = catchSync(() => main.listen(file));
    expect(err.code).toBe('EADDRINUSE');
    expect(fs.readFileSync(file, 'utf8')).toBe('precious');
  });

  test('listen: a path longer than the platform allows fails with ERR_IPC_PATH_TOO_LONG, not a truncated bind', () => {
    const dir = tmpDir();
    const long = path.join(dir, 'x'.repeat(120) + '.sock');
    const { IpcMain, IpcRenderer } = ipcwire();
    const main = trackMain(new IpcMain());
    const err = catchSync(() => main.listen(long));
    expect(err.code).toBe('ERR_IPC_PATH_TOO_LONG');
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toContain(long);
    // Nothing was bound under a truncated name.
    expect(fs.readdirSync(dir)).toEqual([]);
    const rErr = catchSync(() => new IpcRenderer().connect(long));
    expect(rErr.code).toBe('ERR_IPC_PATH_TOO_LONG');
    // 107 bytes is the longest that fits sun_path on Linux; 108 does not.
    const exact = path.join(dir, 'y'.repeat(107 - dir.length - 1));
    expect(Buffer.byteLength(exact)).toBe(107);
    const ok = trackMain(new IpcMain());
    expect(ok.listen(trackPath(exact))).toBe(exact);
    ok.close();
    const tooLong = exact + 'z';
    expect(catchSync(() => trackMain(new IpcMain()).listen(tooLong)).code).toBe('ERR_IPC_PATH_TOO_LONG');
  });

  test('listen: connecting to a missing socket fails with ENOENT, syscall connect, address', () => {
    const { IpcRenderer } = ipcwire();
    const missing = path.join(os.tmpdir(), `iwt-${process.pid}-missing.sock`);
    const err = catchSync(() => new IpcRenderer().connect(missing));
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe('ENOENT');
    expect(err.syscall).toBe('connect');
    expect(err.address).toBe(missing);
    expect(typeof err.errno).toBe('number');
  });

  test('listen: connecting to a stale socket file fails with ECONNREFUSED', { timeout: 20_000 }, async () => {
    const address = trackPath(sockPath());
    const dead = runNode(`new ipcwire.IpcMain().listen(${JSON.stringify(address)}); out('ready');`);
    await dead.msg('ready');
    dead.kill('SIGKILL');
    await dead.waitExit();
    const { IpcRenderer } = ipcwire();
    const err = catchSync(() => new IpcRenderer({ connectTimeout: 500 }).connect(address));
    expect(err.code).toBe('ECONNREFUSED');
    expect(err.syscall).toBe('connect');
    expect(err.address).toBe(address);
    fs.rmSync(address);
  });

  test('listen: another user cannot connect (EACCES) to an absolute path or a bare name', { timeout: 20_000 }, async (ctx) => {
    const other = otherUserTree();
    if (typeof other === 'string') return skipBecause(ctx, other);
    const main = makeMain();
    const { IpcMain } = ipcwire();
    const bare = trackMain(new IpcMain());
    const name = `iw-test-${process.pid}-perm`;
    const bareAddress = trackPath(bare.listen(name));
    const child = runNode(
      `
      const res = {};
      for (const [k, a] of Object.entries({ path: ${JSON.stringify(main.address)}, bare: ${JSON.stringify(bareAddress)} })) {
        try { new ipcwire.IpcRenderer().connect(a); res[k] = 'connected'; } catch (e) { res[k] = errInfo(e); }
      }
      out('r', { uid: process.getuid(), res });
    `,
      other,
    );
    const r = await child.msg('r');
    expect(r.uid).toBe(other.uid);
    expect(r.res.path.code).toBe('EACCES');
    expect(r.res.path.syscall).toBe('connect');
    expect(r.res.bare.code).toBe('EACCES');
    expect(main.peers.size).toBe(0);
    await exitsCleanly(child);
  });

  test('listen: listening twice on one IpcMain fails clearly and keeps the first socket', () => {
    const main = makeMain();
    const second = sockPath();
    const err = catchSync(() => main.listen(second));
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe('ERR_IPC_ALREADY_LISTENING');
    expect(err.message).toBe(`Already listening on ${main.address}`);
    expect(fs.existsSync(second)).toBe(false);
    expect(fs.statSync(main.address).isSocket()).toBe(true);
  });
});
