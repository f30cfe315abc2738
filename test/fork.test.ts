/**
 * fork: child_process.fork with the address in the child's environment; makes ipcMain listen first;
 * any other way of starting a process works too, given the address. Several IpcMain endpoints in one process.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { FIXTURES, exitsCleanly, localRenderer, makeMain, runNode, useHarness } from './helpers';

useHarness();

describe('fork', () => {
  test('fork: passes args and options through, adds IPCWIRE_ADDRESS to the given env, and makes ipcMain listen', { timeout: 30_000 }, async () => {
    const renderer = path.join(FIXTURES, 'fork-renderer.cjs');
    const main = runNode(`
      const { ipcMain, fork } = ipcwire;
      const before = ipcMain.address ?? null;
      ipcMain.handle('info', (event, info) => ({ ...info, processId: event.processId }));
      const child = fork(${JSON.stringify(renderer)}, ['a1', 'a2'], { env: { ...process.env, IW_CUSTOM: 'yes' } });
      const info = await new Promise((res) => ipcMain.once('done', (event, i) => res({ ...i, processId: event.processId })));
      await new Promise((res) => child.once('exit', res));
      const address = ipcMain.address;
      ipcMain.close();
      out('r', { before, address, fileGone: !require('node:fs').existsSync(address), childPid: child.pid, info });
    `);
    const r = await main.msg('r');
    await exitsCleanly(main);
    expect(r.before).toBeNull();
    expect(typeof r.address).toBe('string');
    expect(r.fileGone).toBe(true);
    expect(r.info).toEqual({
      argv: ['a1', 'a2'],
      custom: 'yes',
      address: r.address,
      addressLeftInEnv: null,
      processId: r.childPid,
      viaInvoke: { argv: ['a1', 'a2'], processId: r.childPid },
    });
    expect(fs.existsSync(r.address)).toBe(false);
  });

  test('fork: a process started any other way connects given the address (spawn with IPCWIRE_ADDRESS, connect(address))', { timeout: 30_000 }, async () => {
    const main = makeMain();
    main.handle('who', (event: any, how: string) => `${how}:${event.processId}`);
    const viaEnv = runNode(`out('r', await ipcwire.ipcRenderer.invoke('who', 'env'));`, { address: main.address });
    const viaConnect = runNode(
      `const r = new ipcwire.IpcRenderer(); r.connect(${JSON.stringify(main.address)}); out('r', await r.invoke('who', 'connect')); r.close();`,
    );
    const viaOption = runNode(
      `const r = new ipcwire.IpcRenderer({ address: ${JSON.stringify(main.address)} }); out('r', await r.invoke('who', 'option')); r.close();`,
    );
    expect(await viaEnv.msg('r')).toBe(`env:${viaEnv.pid}`);
    expect(await viaConnect.msg('r')).toBe(`connect:${viaConnect.pid}`);
    expect(await viaOption.msg('r')).toBe(`option:${viaOption.pid}`);
    for (const c of [viaEnv, viaConnect, viaOption]) await exitsCleanly(c);
  });

  test('fork: several IpcMain endpoints in one process keep their channels, handlers and peers apart', { timeout: 30_000 }, async () => {
    const a = makeMain();
    const b = makeMain();
    a.handle('name', () => 'a');
    b.handle('name', () => 'b');
    const ra = localRenderer(a.address);
    const rb = localRenderer(b.address);
    expect(await ra.invoke('name')).toBe('a');
    expect(await rb.invoke('name')).toBe('b');
    expect(a.peers.size).toBe(1);
    expect(b.peers.size).toBe(1);
    const gotA: string[] = [];
    a.on('m', (_e: any, v: string) => gotA.push(v));
    rb.send('m', 'to b');
    ra.send('m', 'to a');
    await new Promise<void>((r) => a.once('m', () => r()));
    expect(gotA).toEqual(['to a']);
  });
});
