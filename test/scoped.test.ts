/**
 * Electron's `webContents.ipc` (here `peer.ipc`) and `postMessage`: listeners and handlers for
 * one renderer only, emitted before `ipcMain`'s, a scoped handler taking precedence over `ipcMain.handle`.
 */
import { describe, expect, test } from 'vitest';
import { exitsCleanly, makeMain, once, runNode, useHarness } from './helpers';

useHarness();

describe('scoped', () => {
  test('scoped: peer.ipc listeners run first and for that renderer only; its handler wins over ipcMain.handle', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const log: string[] = [];
    main.handle('who', () => 'global');
    main.on('hi', (_e: any, n: number) => log.push(`main-${n}`));
    let first: any = null;
    main.peers.on('connect', (peer: any) => {
      if (first) return;
      first = peer;
      peer.ipc.handle('who', () => 'scoped');
      peer.ipc.on('hi', (_e: any, n: number) => log.push(`scope-${n}`));
      peer.ipc.on('sync', (e: any) => { e.returnValue = 'scoped-sync'; });
    });
    const code = (n: number) => `
      const r = ipcwire.ipcRenderer;
      r.send('hi', ${n});
      let sync;
      try { sync = r.sendSync('sync'); } catch (e) { sync = e.code; }
      r.invoke('who').then((who) => { out('r', { who, sync }); r.close(); });
    `;
    const a = runNode(code(1), { address: main.address });
    expect(await a.msg('r')).toEqual({ who: 'scoped', sync: 'scoped-sync' });
    await exitsCleanly(a);
    const b = runNode(code(2), { address: main.address });
    expect(await b.msg('r')).toEqual({ who: 'global', sync: 'ERR_IPC_NO_LISTENER' });
    await exitsCleanly(b);
    expect(log).toEqual(['scope-1', 'main-1', 'main-2']);
  });

  test('scoped: postMessage delivers one message both ways and refuses a transfer list that is not ports', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const got: any[] = [];
    main.on('pm', (event: any, message: unknown) => {
      got.push({ message, ports: event.ports });
      event.sender.postMessage('back', { echoed: message });
    });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      let code = null;
      try { r.postMessage('pm', 1, [{}]); } catch (e) { code = e.code; }
      r.once('back', (_e, m) => { out('r', { m, code }); r.close(); });
      r.postMessage('pm', { a: [1, 2] });
    `,
      { address: main.address },
    );
    expect(await child.msg('r')).toEqual({ m: { echoed: { a: [1, 2] } }, code: 'ERR_IPC_BAD_TRANSFER' });
    expect(got).toEqual([{ message: { a: [1, 2] }, ports: [] }]);
    await exitsCleanly(child);
  });
});
