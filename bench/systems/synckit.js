'use strict';
// Reference point, not a competitor on the same terms: synckit 0.12.3 makes a *same-process* synchronous call
// into a worker thread (Atomics.wait on a SharedArrayBuffer, the message itself via a MessageChannel). No
// socket and no second process are involved. Its "throughput" is sync calls per second (each one a round
// trip with a tiny answer), as it has no one-way send.
const path = require('node:path');
const { createSyncFn } = require('synckit');
const C = require('../lib/common');

async function driver(cfg) {
  const call = createSyncFn(path.join(__dirname, 'synckit-worker.js'));
  const rt = (msg) => call('ping', msg);
  await C.runCells(cfg, async (cell) => {
    if (cell.kind === 'latency') return C.latency(rt, C.makeMessage(cell.payload), cell.cfg, false);
    const msg = C.makeMessage(cell.payload, 'tp');
    const burst = async (count) => {
      for (let i = 0; i < count; i++) if (call('tp', msg) !== true) throw new Error('synckit worker answered wrongly');
    };
    return C.throughput(burst, C.PAYLOADS[cell.payload] || C.payloadBytes('small'), cell.cfg);
  }, async (m) => rt(m));
  process.exit(0); // synckit's worker is ref'd for the life of the process
}

driver(C.driverConfig()).catch((e) => {
  console.error(e);
  process.exit(1);
});
