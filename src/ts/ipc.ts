/**
 * `ipcwire/ipc`: the seed-compatible module. It picks its role itself: a process started by an ipcwire main
 * (the address is in `IPCWIRE_ADDRESS`) gets the renderer side, any other gets `ipcMain`. As in the original
 * `ipc` module, renderer listeners receive the arguments only (no event).
 */
import { ADDRESS_ENV, envAddress } from './address';
import { ipcMain, type IpcMain } from './main';
import { ipcRenderer } from './renderer';
import { seedRenderer, type SeedRenderer } from './seed';
import { makeError } from './errors';

/**
 * A renderer file run directly (`node renderer.js`) has no main address, so it gets `ipcMain`: its renderer-only
 * calls then say why, instead of failing with "ipc.sendSync is not a function".
 */
function explainMainSide(main: IpcMain): IpcMain {
  for (const name of ['send', 'sendSync', 'invoke', 'postMessage']) {
    if (name in main) continue;
    Object.defineProperty(main, name, {
      configurable: true,
      writable: true,
      value: () => {
        throw makeError('ERR_IPC_NO_ADDRESS',
          `ipc.${name}() is a renderer call, but this process has no main address (${ADDRESS_ENV} is not set), ` +
            `so 'ipcwire/ipc' took the main side (ipcMain). Start this file as a renderer from the main process ` +
            `with fork('${process.argv[1] ?? 'renderer.js'}') from 'ipcwire', or set ${ADDRESS_ENV} to main's address.`);
      },
    });
  }
  return main;
}

const ipc: IpcMain | SeedRenderer = envAddress() ? seedRenderer(ipcRenderer) : explainMainSide(ipcMain);
export = ipc;
