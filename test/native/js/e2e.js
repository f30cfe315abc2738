'use strict';
// Two processes: the parent listens, the child connects, writes, and does blocking calls.
const { fork } = require('node:child_process');
const assert = require('node:assert');
const fs = require('node:fs');
const { binding, parseChunks, tmpSock } = require('./common');

if (process.argv[2] === 'child') {
  const conn = binding.connect(process.argv[3], 2000);
  const got = [];
  conn.start((chunks) => { for (const f of parseChunks(chunks)) got.push(f); },
    (err) => { process.send({ closed: err && err.code, got: got.map((f) => [f.kind, f.id, f.payload.toString()]) }); },
    () => {});
  conn.ref();
  conn.write(3, 0, Buffer.from('hello'));
  const N = 2000;
  const t0 = process.hrtime.bigint();
  for (let i = 1; i <= N; i++) {
    const r = conn.call(i, Buffer.from('ping' + i), 0, () => {});
    assert.strictEqual(r.toString(), 'pong' + i);
  }
  const us = Number(process.hrtime.bigint() - t0) / 1000 / N;
  process.send({ rtt_us: us, creds: conn.credentials });
  // The server sends an async message before each reply: they were kept and arrive after call() returns.
  conn.write(3, 0, Buffer.from('bye'));
} else {
  const addr = tmpSock();
  let conns = 0;
  const server = binding.listen(addr, 511, 0o600, (c) => {
    conns++;
    c.start((chunks) => {
      for (const f of parseChunks(chunks)) {
        if (f.kind === 4) {
          c.write(3, 0, Buffer.from('early' + f.id));
          c.write(5, f.id, Buffer.from(f.payload.toString().replace('ping', 'pong')));
        } else if (f.payload.toString() === 'bye') {
          c.end();
        }
      }
    }, (err) => {}, () => {});
  }, (err) => { throw err; });
  assert.strictEqual((fs.statSync(addr).mode & 0o777), 0o600);
  const child = fork(__filename, ['child', addr]);
  const msgs = [];
  child.on('message', (m) => msgs.push(m));
  child.on('exit', (code) => {
    server.close();
    assert.ok(!fs.existsSync(addr) && !fs.existsSync(addr + '.lock'), 'close() removes the socket and lock files');
    assert.strictEqual(code, 0);
    assert.strictEqual(conns, 1);
    const { rtt_us, creds } = msgs[0];
    assert.strictEqual(creds.pid, process.pid);
    const { closed, got } = msgs[1];
    assert.strictEqual(closed, null);
    assert.strictEqual(got.length, 2000);
    for (let i = 0; i < 2000; i++) assert.deepStrictEqual(got[i], [3, 0, 'early' + (i + 1)]);
    console.log(JSON.stringify({ test: 'e2e', ok: true, call_rtt_us: +rtt_us.toFixed(1) }));
  });
}
