'use strict';
// The renderer of examples/tracing: the active trace lives in an AsyncLocalStorage store (where a tracing
// library keeps it); the provider hands it to every outgoing message.
const { AsyncLocalStorage } = require('node:async_hooks');
const { ipcRenderer, setTraceparentProvider } = require('ipcwire');

const activeTrace = new AsyncLocalStorage();
setTraceparentProvider(() => activeTrace.getStore());

activeTrace.run('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', async () => {
  console.log(`renderer: ${await ipcRenderer.invoke('lookup', 'abc')}`);
  ipcRenderer.send('log', 'done');
  ipcRenderer.close();
});
