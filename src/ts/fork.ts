import * as child_process from 'node:child_process';
import { ADDRESS_ENV } from './address';
import { ipcMain } from './main';

/**
 * `child_process.fork` with main's address in the child's environment (`IPCWIRE_ADDRESS`), so that the child's
 * `ipcRenderer` (and `ipcwire/ipc`) connects to `ipcMain`. Makes `ipcMain` listen first if it isn't.
 */
export function fork(
  modulePath: string | URL,
  args?: readonly string[] | child_process.ForkOptions,
  options?: child_process.ForkOptions,
): child_process.ChildProcess {
  if (args !== undefined && !Array.isArray(args)) {
    options = args as child_process.ForkOptions;
    args = [];
  }
  const address = ipcMain.address ?? ipcMain.listen();
  const env = { ...(options?.env ?? process.env), [ADDRESS_ENV]: address };
  return child_process.fork(modulePath, (args as readonly string[] | undefined) ?? [], { ...options, env });
}
