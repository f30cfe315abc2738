'use strict';
// The live inspector: `node examples/inspect/main.js`. A main that allows inspection serves a renderer; once the
// renderer is done, `ipcwire inspect <address>` (what `npx ipcwire inspect` runs) attaches and prints one
// snapshot. Against your own app: start its main with new IpcMain({ inspect: true }) or IPCWIRE_INSPECT=1, then
// run `npx ipcwire inspect <address>` in another terminal.
const { execFile, fork } = require('node:child_process');
const path = require('node:path');
const { IpcMain, ADDRESS_ENV } = require('ipcwire');

const main = new IpcMain({ inspect: true });
main.handle('square', (_event, x) => x * x);
main.on('log', () => {});
const address = main.listen();

const child = fork(path.join(__dirname, 'renderer.js'), { env: { ...process.env, [ADDRESS_ENV]: address } });
main.once('done', () => {
  const cli = path.join(path.dirname(require.resolve('ipcwire/package.json')), 'dist', 'cjs', 'cli.js');
  execFile(process.execPath, [cli, 'inspect', address, '--count', '1', '--preview', '30'], (err, stdout, stderr) => {
    process.stdout.write(stdout);
    if (err) process.stderr.write(stderr);
    for (const peer of main.peers) peer.send('bye');
  });
});
child.on('exit', (code) => {
  main.close();
  process.exitCode = code ?? 1;
});
