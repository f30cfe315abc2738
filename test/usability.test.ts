/**
 * What a new user runs into: the address a renderer inherits must not leak to its own subprocesses, a renderer
 * file run by mistake without a main explains itself, calls that can never complete fail at once with a code,
 * a closed renderer reconnects where it was, paths with spaces work end to end, and NODE_DEBUG=ipcwire says when
 * a sendSync stays unanswered.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, test } from 'vitest';
import {
  ROOT,
  RUN_CJS,
  catchSync,
  exitsCleanly,
  ipcwire,
  localRenderer,
  makeMain,
  runNode,
  sockPath,
  spawnNode,
  tmpDir,
  trackPath,
  useHarness,
} from './helpers';

useHarness();

describe('usability', () => {
  test('usability: a renderer takes IPCWIRE_ADDRESS out of its environment; its subprocesses do not inherit it, its worker threads still reach main', { timeout: 60_000 }, async () => {
    const main = makeMain();
    main.handle('who', (event: any) => ({ level: 'top', pid: event.processId }));
    const child = runNode(
      `
      const cp = require('node:child_process');
      const { Worker } = require('node:worker_threads');
      const envAfterLoad = process.env.IPCWIRE_ADDRESS ?? null;
      const fromHere = await ipcwire.ipcRenderer.invoke('who');
      // A plain subprocess sees no address.
      const grandEnv = cp.spawnSync(process.execPath, ['-e', 'process.stdout.write(JSON.stringify(process.env.IPCWIRE_ADDRESS ?? null))'],
        { encoding: 'utf8' }).stdout;
      // A subprocess that loads ipcwire/ipc is no renderer of the top main: it gets the main side.
      const grandRole = cp.spawnSync(process.execPath, ['-e',
        "const ipc = require('ipcwire/ipc'); process.stdout.write(JSON.stringify(ipc === require('ipcwire').ipcMain))"],
        { encoding: 'utf8', cwd: process.cwd() });
      // A worker thread of this renderer is part of it and still connects to main.
      const w = new Worker(
        "const { ipcRenderer } = require('ipcwire'); const { parentPort } = require('node:worker_threads');" +
        "ipcRenderer.invoke('who').then((v) => { parentPort.postMessage(v); ipcRenderer.close(); });",
        { eval: true });
      const fromWorker = await new Promise((res, rej) => { w.once('message', res); w.once('error', rej); });
      await new Promise((res) => w.once('exit', res));
      // ipcwire's fork() from a renderer hands on this process's own main address, never the top main's.
      const { ipcMain, fork } = ipcwire;
      ipcMain.handle('who', (event) => ({ level: 'middle', pid: event.processId }));
      const grand = fork(${JSON.stringify(RUN_CJS)},
        ["out('grand', await ipcwire.ipcRenderer.invoke('who')); ipcwire.ipcRenderer.close();"]);
      const grandCode = await new Promise((res) => grand.once('exit', res));
      ipcMain.close();
      ipcwire.ipcRenderer.close();
      out('r', { envAfterLoad, fromHere, grandEnv: JSON.parse(grandEnv), grandRole: grandRole.stdout, grandRoleErr: grandRole.stderr,
        fromWorker, grandPid: grand.pid, grandCode });
    `,
      { address: main.address },
    );
    const r = await child.msg('r');
    const grand = await child.msg('grand');
    await exitsCleanly(child);
    expect(r.envAfterLoad).toBeNull();
    expect(r.fromHere).toEqual({ level: 'top', pid: child.pid });
    expect(r.grandEnv).toBeNull();
    expect(r.grandRoleErr).toBe('');
    expect(r.grandRole).toBe('true');
    expect(r.fromWorker).toEqual({ level: 'top', pid: child.pid });
    expect(grand).toEqual({ level: 'middle', pid: r.grandPid });
    expect(r.grandCode).toBe(0);
  });

  test('usability: the seed renderer.js run directly says there is no main address and how to start a renderer', { timeout: 20_000 }, async () => {
    const child = spawnNode([path.join(ROOT, 'examples', 'seed', 'renderer.js')]);
    const { code } = await child.waitExit();
    expect(code).toBe(1);
    expect(child.stderr).not.toMatch(/is not a function/);
    expect(child.stderr).toMatch(/\[ERR_IPC_NO_ADDRESS\]|code: 'ERR_IPC_NO_ADDRESS'/);
    expect(child.stderr).toMatch(/ipc\.sendSync\(\) is a renderer call, but this process has no main address \(IPCWIRE_ADDRESS is not set\)/);
    expect(child.stderr).toMatch(/took the main side \(ipcMain\)/);
    expect(child.stderr).toMatch(/with fork\('.*renderer\.js'\) from 'ipcwire'/);
  });

  test('usability: sendSync to an ipcMain listening on the same thread throws ERR_IPC_SAME_THREAD at once', { timeout: 20_000 }, async () => {
    const main = makeMain();
    let heard = 0;
    main.on('x', (event: any) => {
      heard++;
      event.returnValue = 1;
    });
    const r = localRenderer(main.address);
    const t0 = Date.now();
    const err = catchSync(() => r.sendSync('x', 1));
    expect(Date.now() - t0).toBeLessThan(5000); // a liveness bound: the alternative is blocking for ever
    expect(err.code).toBe('ERR_IPC_SAME_THREAD');
    expect(err.name).toBe('IpcError');
    expect(err.message).toMatch(/^sendSync\('x'\) to an ipcMain listening on this same thread would block it for ever/);
    // Nothing was sent; asynchronous traffic on the same connection still works.
    main.handle('y', () => 'ok');
    expect(await r.invoke('y')).toBe('ok');
    expect(heard).toBe(0);
    // Once that main has closed, the address is no longer this thread's.
    main.close();
    const other = runNode(`
      const m = new ipcwire.IpcMain();
      m.listen(${JSON.stringify(main.address)});
      m.on('x', (e) => { e.returnValue = 'from-child'; });
      m.on('bye', () => m.close());
      out('ready');
    `);
    await other.msg('ready');
    const again = localRenderer(main.address);
    expect(again.sendSync('x')).toBe('from-child');
    again.send('bye');
    await exitsCleanly(other);
  });

  test('usability: connect() after close() reconnects to the address the renderer was given', { timeout: 20_000 }, async () => {
    const main = makeMain();
    main.handle('n', (_e: any, n: number) => n * 2);
    const { IpcRenderer } = ipcwire();
    const r = new IpcRenderer();
    r.connect(main.address);
    expect(await r.invoke('n', 1)).toBe(2);
    r.close();
    expect(catchSync(() => r.send('n')).code).toBe('ERR_IPC_DISCONNECTED');
    r.connect();
    expect(r.connected).toBe(true);
    expect(await r.invoke('n', 2)).toBe(4);
    r.close();
    await new Promise<void>((res) => r.link.once('disconnect', () => res()));
  });

  test('usability: after main died during sendSync, send says the connection is closed', { timeout: 30_000 }, async () => {
    const address = trackPath(sockPath());
    const main = runNode(`
      const m = new ipcwire.IpcMain();
      m.listen(${JSON.stringify(address)});
      m.on('die', () => process.exit(0));
      out('ready');
    `);
    await main.msg('ready');
    const child = runNode(
      `
      const res = {};
      try { ipcwire.ipcRenderer.sendSync('die'); res.sync = 'returned'; } catch (e) { res.sync = errInfo(e); }
      try { ipcwire.ipcRenderer.send('after'); res.send = 'no throw'; } catch (e) { res.send = errInfo(e); }
      out('res', res);
    `,
      { address },
    );
    const res = await child.msg('res');
    await exitsCleanly(child);
    await exitsCleanly(main);
    expect(res.sync.code).toBe('ERR_IPC_DISCONNECTED');
    expect(res.sync.message).toBe("IPC connection is closed: main went away during sendSync('die')");
    expect(res.send.code).toBe('ERR_IPC_DISCONNECTED');
    expect(res.send.message).toBe('IPC connection is closed');
  });

  test('usability: a socket path and a renderer path with spaces, the renderer forked by its file URL', { timeout: 30_000 }, async () => {
    const dir = path.join(tmpDir(), 'my app dir');
    fs.mkdirSync(dir);
    const rendererFile = path.join(dir, 'the renderer.cjs');
    fs.writeFileSync(
      rendererFile,
      `const { ipcRenderer } = require(${JSON.stringify(ROOT)});\n` +
        `ipcRenderer.invoke('hi', __filename).then((v) => { ipcRenderer.send('done', v, ipcRenderer.sendSync('sync')); ipcRenderer.close(); });\n`,
    );
    const address = trackPath(path.join(dir, 'main socket.sock'));
    const main = runNode(`
      const { ipcMain, fork } = ipcwire;
      ipcMain.listen(${JSON.stringify(address)});
      ipcMain.handle('hi', (e, file) => 'hi ' + file);
      ipcMain.on('sync', (e) => { e.returnValue = 'sync ok'; });
      const child = fork(require('node:url').pathToFileURL(${JSON.stringify(rendererFile)}));
      const done = await new Promise((res) => ipcMain.once('done', (e, ...args) => res(args)));
      const code = await new Promise((res) => child.once('exit', res));
      ipcMain.close();
      out('r', { address: ipcMain.address, done, code });
    `);
    const r = await main.msg('r');
    await exitsCleanly(main);
    expect(r).toEqual({ address, done: [`hi ${rendererFile}`, 'sync ok'], code: 0 });
    expect(pathToFileURL(rendererFile).href).toMatch(/my%20app%20dir\/the%20renderer\.cjs$/);
  });

  test('usability: NODE_DEBUG=ipcwire warns in main about a sendSync still unanswered a second after its listeners returned', { timeout: 30_000 }, async () => {
    const address = trackPath(sockPath());
    const main = runNode(
      `
      const m = new ipcwire.IpcMain();
      m.listen(${JSON.stringify(address)});
      const held = [];
      m.on('quick', (e) => { held.push(e); setTimeout(() => { e.returnValue = 'quick'; }, 50); });
      m.on('slow', (e) => { held.push(e); setTimeout(() => { e.returnValue = 'slow'; }, 1800); });
      m.on('bye', () => { m.close(); out('closed'); });
      out('ready');
    `,
      { env: { NODE_DEBUG: 'ipcwire' } },
    );
    await main.msg('ready');
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const got = [r.sendSync('quick'), r.sendSync('slow')];
      r.send('bye');
      r.close();
      out('got', got);
    `,
      { address },
    );
    expect(await child.msg('got')).toEqual(['quick', 'slow']);
    await exitsCleanly(child);
    await main.msg('closed');
    await exitsCleanly(main);
    const warnings = main.stderr.split('\n').filter((l) => /still unanswered/.test(l));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(
      new RegExp(`^IPCWIRE ${main.pid}: sendSync\\('slow'\\) from renderer \\d+ is still unanswered 1000 ms after its listeners returned`),
    );
  });
});

