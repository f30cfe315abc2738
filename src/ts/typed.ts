import type { IpcMain, Peer } from './main';
import type { IpcRenderer } from './renderer';

/**
 * A typed view of an endpoint, for the ready-made singletons: `const ipc = typed<MyChannels>(ipcRenderer)`.
 * The same object at runtime; only its compile-time channel map changes.
 */
export function typed<C>(endpoint: IpcRenderer<any>): IpcRenderer<C>;
export function typed<C>(endpoint: IpcMain<any>): IpcMain<C>;
export function typed<C>(endpoint: Peer<any>): Peer<C>;
export function typed(endpoint: unknown): unknown {
  return endpoint;
}
