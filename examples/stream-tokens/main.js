'use strict';
// A streamed invoke producing tokens, as a language model's completion would: `node examples/stream-tokens/main.js`.
// main answers 'complete' with an async generator; the renderer prints the tokens as they come, stops one
// completion early (main's generator sees it: its `finally` runs), and awaits another whole.
const path = require('node:path');
const { ipcMain, fork } = require('ipcwire');

const WORDS = 'the quick brown fox jumps over the lazy dog'.split(' ');

ipcMain.handle('complete', async function* (event, prompt, maxTokens) {
  let sent = 0;
  try {
    for (let i = 0; i < maxTokens; i++) {
      await new Promise((resolve) => setTimeout(resolve, 5)); // "thinking"
      sent++;
      yield (i === 0 ? '' : ' ') + WORDS[(prompt.length + i) % WORDS.length];
    }
  } finally {
    // With the reader's window, main runs at most a few tokens ahead of what the renderer has read.
    console.log(sent === maxTokens
      ? `main: completion of '${prompt}' done (${sent} tokens)`
      : `main: completion of '${prompt}' stopped by the renderer after ${sent < 40 ? 'a few' : sent} tokens`);
  }
});

const child = fork(path.join(__dirname, 'renderer.js'));
child.on('exit', (code) => {
  ipcMain.close();
  process.exitCode = code ?? 1;
});
