'use strict';
// The renderer of examples/cancel: one call that completes, one it aborts, one that times out.
const { ipcRenderer } = require('ipcwire');

async function run() {
  console.log('renderer:', await ipcRenderer.invokeWith({ timeout: 2000 }, 'search', 'fast'));

  const ac = new AbortController();
  setTimeout(() => ac.abort(new Error('the user typed something else')), 100);
  try {
    await ipcRenderer.invokeWith({ signal: ac.signal }, 'search', 'slow');
  } catch (err) {
    console.log(`renderer: ${err.name} (${err.code}), cause: ${err.cause.message}`);
  }

  try {
    await ipcRenderer.invokeWith({ timeout: 100 }, 'search', 'slow');
  } catch (err) {
    console.log(`renderer: ${err.code}: ${err.message}`);
  }
  ipcRenderer.close();
}

run();
