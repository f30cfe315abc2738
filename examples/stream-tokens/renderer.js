'use strict';
// The renderer of examples/stream-tokens: reads tokens as they arrive, stops early, then awaits a whole result.
const { ipcRenderer } = require('ipcwire');

async function run() {
  let text = '';
  for await (const token of ipcRenderer.invoke('complete', 'hi', 9)) text += token;
  console.log(`renderer: ${text}`);

  // Stop after three tokens: main's generator is closed (its finally runs) and produces no more.
  let first = '';
  let n = 0;
  for await (const token of ipcRenderer.invoke('complete', 'abc', 1000)) {
    first += token;
    if (++n === 3) break;
  }
  console.log(`renderer: first three: ${first}`);

  // Awaited, a streamed result is the array of its chunks.
  const tokens = await ipcRenderer.invoke('complete', 'x', 4);
  console.log(`renderer: ${tokens.length} tokens: ${JSON.stringify(tokens)}`);
  ipcRenderer.close();
}

run();
