// Type-checked (not run) by scripts/pack-check.sh against the installed package: ESM consumer.
import { ipcMain, IpcMain, ipcRenderer, IpcRenderer, fork, IpcError } from 'ipcwire';
import type { IpcMainEvent, IpcMainInvokeEvent } from 'ipcwire';
import ipc from 'ipcwire/ipc';

const other: IpcMain = new IpcMain();
const address: string = other.listen();
other.close();
ipcMain.on('ch', (event: IpcMainEvent, ...args: unknown[]) => {
  event.returnValue = args.length;
  event.reply('re', address);
});
ipcMain.handle('add', (event: IpcMainInvokeEvent, a: number, b: number) => a + b);
const r: IpcRenderer = ipcRenderer;
const value: unknown = r.sendSync('ch', 1);
const later: Promise<unknown> = r.invoke('add', 1, 2);
r.send('ch', value, later);
const child = fork('./renderer.mjs');
child.kill();
const isIpcError = (e: unknown): e is IpcError => e instanceof IpcError;
void isIpcError;
void ipc;
