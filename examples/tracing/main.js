'use strict';
// Tracing: `node examples/tracing/main.js`. main subscribes to ipcwire's diagnostics_channel publications and
// prints one line per event; the renderer sends a W3C traceparent that main's handler reads, as an
// OpenTelemetry instrumentation would to continue the trace across the hop.
const dc = require('node:diagnostics_channel');
const path = require('node:path');
const { ipcMain, fork, TRACE_CHANNELS } = require('ipcwire');

for (const name of [TRACE_CHANNELS.handleStart, TRACE_CHANNELS.handleEnd, TRACE_CHANNELS.message]) {
  dc.subscribe(name, (m) => {
    const took = m.durationMs === undefined ? '' : ' (timed)';
    console.log(`main: ${name} ${m.kind} '${m.channel}' from peer ${m.peerId}, ${m.direction}, id ${m.id}${took}`);
  });
}

ipcMain.handle('lookup', (event, key) => {
  console.log(`main: handler runs in trace ${event.traceparent.split('-')[1]}`);
  return key.toUpperCase();
});
ipcMain.on('log', (_event, line) => console.log(`main: log ${line}`));

const child = fork(path.join(__dirname, 'renderer.js'));
child.on('exit', (code) => {
  ipcMain.close();
  process.exitCode = code ?? 1;
});
