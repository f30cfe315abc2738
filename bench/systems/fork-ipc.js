'use strict';
// Baseline: child_process.fork's built-in IPC channel, with `serialization: 'json'` or `'advanced'` (the
// structured clone of v8.serialize). The child echoes each message (latency) or counts them and confirms
// (throughput). With 'json' a Buffer travels as {type: 'Buffer', data: [...]} and is not revived.
const { fork } = require('node:child_process');
const C = require('../lib/common');

function server() {
  let expected = -1;
  let count = 0;
  process.on('message', (msg) => {
    if (msg.channel === 'ping') process.send(msg);
    else if (msg.channel === 'tp') {
      if (++count === expected) process.send({ channel: 'done', args: [count] });
    } else if (msg.channel === 'tp-expect') {
      expected = msg.args[0];
      count = 0;
    }
  });
  process.on('disconnect', () => process.exit(0));
}

async function driver(cfg) {
  const child = fork(__filename, ['server'], { serialization: cfg.serialization, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  let pending = null;
  child.on('message', (msg) => {
    const p = pending;
    pending = null;
    p(msg);
  });
  const rt = (msg) =>
    new Promise((resolve) => {
      pending = resolve;
      child.send(msg);
    });
  // child.send returns false once its queue is past a threshold; then wait for that message's callback.
  const sendFlow = (msg) =>
    new Promise((resolve, reject) => {
      let sync = true;
      let ok = true;
      ok = child.send(msg, (err) => {
        if (err) reject(err);
        else if (!sync || !ok) resolve();
      });
      sync = false;
      if (ok) resolve();
    });

  await C.runCells(cfg, async (cell) => {
    if (cell.kind === 'latency') return C.latency(rt, C.makeMessage(cell.payload), cell.cfg, true);
    const msg = C.makeMessage(cell.payload, 'tp');
    const burst = async (count) => {
      const done = new Promise((resolve) => (pending = resolve));
      child.send({ channel: 'tp-expect', args: [count] });
      for (let i = 0; i < count; i++) {
        const ok = child.send(msg);
        if (!ok) await sendFlow({ channel: 'noop', args: [] });
      }
      const reply = await done;
      if (reply.args[0] !== count) throw new Error(`child counted ${reply.args[0]} of ${count}`);
    };
    return C.throughput(burst, C.PAYLOADS[cell.payload] || C.payloadBytes('small'), cell.cfg);
  }, rt);
  child.disconnect();
  await new Promise((res) => (child.exitCode !== null ? res() : child.once('exit', res)));
}

if (process.argv[2] === 'server') server();
else driver(C.driverConfig()).catch((e) => {
  console.error(e);
  process.exit(1);
});
