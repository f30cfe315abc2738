/**
 * `ipcwire/ipc`: the seed-compatible module. It picks its role itself: a process started by an ipcwire main
 * (the address is in `IPCWIRE_ADDRESS`) gets the renderer side, any other gets `ipcMain`. As in the original
 * `ipc` module, renderer listeners receive the arguments only (no event).
 */
import { ADDRESS_ENV } from './address';
import { ipcMain, type IpcMain } from './main';
import { ipcRenderer } from './renderer';
import { seedRenderer, type SeedRenderer } from './seed';

const ipc: IpcMain | SeedRenderer = process.env[ADDRESS_ENV] ? seedRenderer(ipcRenderer) : ipcMain;
export = ipc;
