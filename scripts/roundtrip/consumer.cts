// Type-checked (not run) by scripts/pack-check.sh against the installed package: CommonJS consumer.
import ipcwire = require('ipcwire');
import ipc = require('ipcwire/ipc');

const main: ipcwire.IpcMain = new ipcwire.IpcMain();
main.handle('x', async () => 1);
const value: unknown = ipcwire.ipcRenderer.sendSync('x');
void value;
void ipc;
