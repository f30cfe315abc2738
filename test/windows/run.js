'use strict';
// The Windows suite, run under wine's node.exe by scripts/windows-ci.sh (or on a real Windows machine:
// `node test/windows/run.js`). A small runner of its own rather than `node --test`: no helper process between
// us and node.exe, fixtures in fixtures/ are never mistaken for tests, and the closing line is the plain
// `N passed, N failed[, N skipped]`. Tests are named <area>-<behaviour>; every one uses its own pipe name.
// Each check skipped under wine names the wine divergence it stands for.
const assert = require('node:assert/strict');
const net = require('node:net');
const { spawn } = require('node:child_process');
const path = require('node:path');
const { Worker } = require('node:worker_threads');

const root = path.join(__dirname, '..', '..');
const { IpcMain, IpcRenderer, ADDRESS_ENV, MessageChannelMain, IpcHandle } = require(path.join(root, 'dist', 'cjs', 'index.js'));
const fixtures = path.join(__dirname, 'fixtures');

// Wine sets these in every process it runs; real Windows has neither.
const underWine = Boolean(process.env.WINELOADER || process.env.WINEPREFIX || process.env.WINEDEBUG);
const only = process.argv[2] ? new RegExp(process.argv[2]) : null;

const tests = [];
const test = (name, fn, opts = {}) => tests.push({ name, fn, ...opts });

let seq = 0;
const uniqueName = (what) => `wt-${process.pid}-${++seq}-${what}`;
const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts `node <script> ...args`; `done` resolves with { code, signal, stdout, stderr }. */
function node(script, args = [], env = {}) {
  const child = spawn(process.execPath, [script, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    windowsHide: true,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const done = new Promise((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done, out: () => stdout, err: () => stderr };
}

/** A renderer fixture process connected to `main`. */
const renderer = (main, scenario, arg) =>
  node(path.join(fixtures, 'renderer.js'), arg === undefined ? [scenario] : [scenario, String(arg)], {
    [ADDRESS_ENV]: main.address,
  });

/** Resolves with the first `n` messages on `channel` as [event, ...args] arrays. */
function collect(main, channel, n) {
  return new Promise((resolve) => {
    const got = [];
    main.on(channel, function listener(event, ...args) {
      got.push([event, ...args]);
      if (got.length === n) {
        main.off(channel, listener);
        resolve(got);
      }
    });
  });
}

/** Waits for `p`, failing with the child's output after `ms`. */
async function within(ms, p, what, child) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      const extra = child ? `\n--- stdout:\n${child.out()}\n--- stderr:\n${child.err()}` : '';
      reject(new Error(`${what}: no result within ${ms} ms${extra}`));
    }, ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function exitsCleanly(child, what) {
  const r = await within(20000, child.done, `${what} exit`, child);
  assert.equal(r.code, 0, `${what} exited with ${r.code} ${r.signal || ''}\n${r.stderr}`);
  return r;
}

function withMain(fn, options) {
  return async () => {
    const main = new IpcMain(options);
    main.listen(uniqueName('main'));
    try {
      await fn(main);
    } finally {
      main.close();
    }
  };
}

// ---- addresses -------------------------------------------------------------------------------------------------

test('address-bare-name-is-a-named-pipe', () => {
  const main = new IpcMain();
  const name = uniqueName('bare');
  try {
    assert.equal(main.listen(name), `\\\\.\\pipe\\${name}`);
    assert.equal(main.address, `\\\\.\\pipe\\${name}`);
  } finally {
    main.close();
  }
  const fresh = new IpcMain();
  try {
    assert.match(fresh.listen(), /^\\\\\.\\pipe\\ipcwire-/);
  } finally {
    fresh.close();
  }
});

test('listen-name-in-use-is-eaddrinuse', () => {
  // On Windows FILE_FLAG_FIRST_PIPE_INSTANCE makes the second CreateNamedPipeW fail. Wine ignores that flag;
  // the addon's WaitNamedPipeW probe before it is what this exercises under wine.
  const name = uniqueName('inuse');
  const a = new IpcMain();
  const b = new IpcMain();
  try {
    a.listen(name);
    assert.throws(() => b.listen(name), (err) => {
      assert.equal(err.code, 'EADDRINUSE');
      assert.equal(err.syscall, 'listen');
      assert.equal(err.address, `\\\\.\\pipe\\${name}`);
      return true;
    });
    a.close();
    // The name is free again once its server closed.
    assert.equal(b.listen(name), `\\\\.\\pipe\\${name}`);
  } finally {
    a.close();
    b.close();
  }
});

test('address-too-long-is-refused-not-truncated', () => {
  // Windows allows 256 characters for "\\.\pipe\<name>".
  const main = new IpcMain();
  try {
    assert.throws(() => main.listen('x'.repeat(300)), (err) => err.code === 'ERR_IPC_PATH_TOO_LONG');
    assert.throws(() => new IpcRenderer().connect('x'.repeat(300)), (err) => err.code === 'ERR_IPC_PATH_TOO_LONG');
  } finally {
    main.close();
  }
});

test('connect-missing-pipe-is-enoent', () => {
  const name = uniqueName('missing');
  const r = new IpcRenderer();
  assert.throws(() => r.connect(name), (err) => {
    assert.equal(err.code, 'ENOENT');
    assert.equal(err.syscall, 'connect');
    assert.equal(err.address, `\\\\.\\pipe\\${name}`);
    return true;
  });
});

// ---- the seed example ------------------------------------------------------------------------------------------

test('seed-example-prints-ping-and-pong', async () => {
  // examples/seed/main.js forks examples/seed/renderer.js; main keeps listening (as Electron's main does), so
  // it is stopped once both sides printed.
  const p = node(path.join(root, 'examples', 'seed', 'main.js'));
  try {
    await within(20000, (async () => {
      while (p.out().trim().split(/\r?\n/).filter(Boolean).length < 4) await delay(50);
    })(), 'seed output', p);
    const lines = p.out().trim().split(/\r?\n/).sort();
    assert.deepEqual(lines, ['ping', 'ping', 'pong', 'pong'], p.out());
  } finally {
    p.child.kill();
    await p.done;
  }
});

// ---- send / sendSync / invoke both ways ------------------------------------------------------------------------

test('messages-send-sendsync-invoke-both-ways', withMain(async (main) => {
  main.on('sync-double', (event, x) => {
    event.returnValue = x * 2;
  });
  main.handle('inc', (event, x) => x + 1);
  main.handle('throws', () => {
    throw new Error('some error');
  });
  const pids = [];
  main.on('async', async (event, text) => {
    pids.push(event.processId);
    assert.equal(text, 'hello main');
    const doubled = await event.sender.invoke('r-double', 5);
    event.sender.send('to-renderer', { doubled });
  });
  const report = collect(main, 'report', 1);
  const p = renderer(main, 'basic');
  const [[event, out]] = await within(20000, report, 'basic report', p);
  await exitsCleanly(p, 'renderer');
  assert.equal(out.sync, 42);
  assert.equal(out.invoke, 42);
  assert.equal(out.invokeError, "Error invoking remote method 'throws': Error: some error");
  assert.equal(out.noListener.code, 'ERR_IPC_NO_LISTENER');
  assert.deepEqual(out.fromMain, { doubled: 10 });
  // event.processId comes from GetNamedPipeClientProcessId, not from anything the renderer says.
  assert.equal(event.processId, p.child.pid);
  assert.equal(out.pid, p.child.pid);
  assert.equal(event.sender.pid, p.child.pid);
  assert.deepEqual(pids, [p.child.pid]);
}));

test('ordering-across-apis-and-during-sendsync', withMain(async (main) => {
  const seen = [];
  main.on('seq', (event, i) => seen.push(i));
  main.on('seq-sync', (event, i) => {
    seen.push(i);
    event.returnValue = i;
  });
  main.handle('seq-invoke', (event, i) => {
    seen.push(i);
    return i;
  });
  main.on('hold', (event, n) => {
    // Sent while the renderer is blocked in sendSync: queued there, emitted after it returns.
    for (let i = 0; i < n; i++) event.sender.send('during', i);
    setTimeout(() => {
      event.returnValue = 'released';
    }, 100);
  });
  const report = collect(main, 'report', 1);
  const p = renderer(main, 'ordering');
  const [[, out]] = await within(30000, report, 'ordering report', p);
  await exitsCleanly(p, 'renderer');
  assert.deepEqual(seen, Array.from({ length: 150 }, (_, i) => i));
  assert.equal(out.answer, 'released');
  assert.deepEqual(out.got, Array.from({ length: 50 }, (_, i) => i));
  assert.equal(out.reentrant, 0);
  assert.equal(out.before, 0);
}));

// ---- values --------------------------------------------------------------------------------------------------------

test('values-round-trip-through-sendsync', withMain(async (main) => {
  main.on('echo', (event, v) => {
    event.returnValue = v;
  });
  main.on('echo-args', (event, ...args) => {
    event.returnValue = args;
  });
  const report = collect(main, 'report', 1);
  const p = renderer(main, 'valueTable');
  const [[, out]] = await within(20000, report, 'values report', p);
  await exitsCleanly(p, 'renderer');
  assert.deepEqual(out.problems, []);
  assert.deepEqual(out.argProblems, []);
  assert.deepEqual(out.unclonable, []);
}));

// ---- the peer going away -------------------------------------------------------------------------------------------

for (const how of ['exit', 'crash']) {
  test(`disconnect-main-${how}s-during-sendsync-and-invoke`, async () => {
    const m = node(path.join(fixtures, 'main-dies.js'), [uniqueName(how), how]);
    try {
      await within(15000, (async () => {
        while (!/listening /.test(m.out())) await delay(20);
      })(), 'main-dies listening', m);
      const address = /listening (\S+)/.exec(m.out())[1];
      const r = new IpcRenderer();
      r.connect(address);
      const t0 = Date.now();
      // This thread blocks in sendSync until main is gone: it must throw, at once, not hang.
      assert.throws(() => r.sendSync('hang'), (err) => err.code === 'ERR_IPC_DISCONNECTED');
      const waited = Date.now() - t0;
      assert.ok(waited < 5000, `sendSync returned ${waited} ms after main left`);
      await assert.rejects(r.invoke('hang'), (err) => err.code === 'ERR_IPC_DISCONNECTED');
      assert.throws(() => r.send('x'), (err) => err.code === 'ERR_IPC_DISCONNECTED');
    } finally {
      m.child.kill();
      await m.done;
    }
  });
}

test('disconnect-pending-invoke-rejects-when-main-leaves', async () => {
  const m = node(path.join(fixtures, 'main-dies.js'), [uniqueName('inv'), 'crash']);
  try {
    await within(15000, (async () => {
      while (!/listening /.test(m.out())) await delay(20);
    })(), 'main-dies listening', m);
    const r = new IpcRenderer();
    r.connect(/listening (\S+)/.exec(m.out())[1]);
    await within(10000, assert.rejects(r.invoke('hang'), (err) => err.code === 'ERR_IPC_DISCONNECTED'), 'invoke');
  } finally {
    m.child.kill();
    await m.done;
  }
});

// ---- many renderers ----------------------------------------------------------------------------------------------

test('scale-many-renderers-at-once', withMain(async (main) => {
  // More clients at once than the server keeps instances waiting: the rest retry on ERROR_PIPE_BUSY.
  const n = 8;
  main.on('whoami', (event, i) => {
    event.returnValue = { i, pid: event.processId };
  });
  main.handle('inc', (event, x) => x + 1);
  const connected = new Set();
  main.peers.on('connect', (peer) => connected.add(peer.id));
  const reports = collect(main, 'report', n);
  const kids = Array.from({ length: n }, (_, i) => renderer(main, 'many', i));
  const got = await within(90000, reports, 'reports from every renderer').catch(async (err) => {
    // Say which renderers never reported, and why.
    const ended = await Promise.all(kids.map((k) => Promise.race([k.done, delay(100).then(() => null)])));
    const why = ended.map((r, i) => `renderer ${i}: ${r ? `exited ${r.code}: ${r.stderr.trim().split(/\r?\n/).slice(0, 3).join(' | ')}` : 'still running'}`);
    err.message += `\n${why.join('\n')}`;
    throw err;
  });
  await Promise.all(kids.map((k, i) => exitsCleanly(k, `renderer ${i}`)));
  const byIndex = new Map(got.map(([event, out]) => [out.index, { out, pid: event.processId }]));
  assert.equal(byIndex.size, n);
  for (let i = 0; i < n; i++) {
    const { out, pid } = byIndex.get(i);
    assert.equal(pid, kids[i].child.pid);
    assert.deepEqual(out.echoed, { i, pid: kids[i].child.pid });
    assert.equal(out.inc, i + 1);
  }
  assert.equal(connected.size, n);
}), { timeout: 150000 });

test('scale-connect-burst-retries-busy-instances', async () => {
  // 40 synchronous connects in a row, faster than the accept thread re-arms its 4 waiting instances: the
  // client's ERROR_PIPE_BUSY path (WaitNamedPipeW, result ignored, CreateFileW again) must get every one in.
  const { native } = require(path.join(root, 'dist', 'cjs', 'native.js'));
  const binding = native();
  const address = `\\\\.\\pipe\\${uniqueName('burst')}`;
  const accepted = [];
  let allIn;
  const all = new Promise((resolve) => (allIn = resolve));
  const server = binding.listen(address, 511, 0o600, (conn) => {
    accepted.push(conn);
    if (accepted.length === 40) allIn();
  }, () => {});
  const clients = [];
  for (let i = 0; i < 40; i++) clients.push(binding.connect(address, 10000));
  await within(30000, all, 'all 40 accepted');
  const pids = new Set(accepted.map((c) => c.credentials.pid));
  for (const c of [...clients, ...accepted]) c.close();
  server.close();
  assert.deepEqual([...pids], [process.pid]);
});

// ---- a large message -------------------------------------------------------------------------------------------

test('large-message-64mib-both-ways', withMain(async (main) => {
  const size = 64 * 1024 * 1024;
  main.on('big', (event, buf) => {
    assert.equal(buf.length, size);
    event.reply('big-back', buf);
  });
  const report = collect(main, 'report', 1);
  const p = renderer(main, 'large', size);
  const [[, out]] = await within(120000, report, 'large report', p);
  await exitsCleanly(p, 'renderer');
  assert.equal(out.ok, true, JSON.stringify(out));
  console.log(`#   64 MiB there and back in ${out.ms} ms`);
}), { timeout: 150000 });

// ---- worker threads ------------------------------------------------------------------------------------------------

test('workers-each-thread-its-own-connection', withMain(async (main) => {
  main.on('thread-add', (event, index, i) => {
    event.returnValue = index * 1000 + i;
  });
  main.handle('inc', (event, x) => x + 1);
  const pids = new Set();
  main.peers.on('connect', (peer) => pids.add(peer.pid));
  const results = await within(60000, Promise.all([1, 2, 3].map((index) => new Promise((resolve, reject) => {
    const w = new Worker(path.join(fixtures, 'worker.js'), { workerData: { address: main.address, index, mode: 'calls' } });
    w.once('message', resolve);
    w.once('error', reject);
  }))), 'worker results');
  results.forEach((r, k) => {
    const index = k + 1;
    assert.deepEqual(r.sums, Array.from({ length: 20 }, (_, i) => index * 1000 + i));
    assert.equal(r.inc, index + 1);
  });
  assert.equal(new Set(results.map((r) => r.threadId)).size, 3);
  assert.deepEqual([...pids], [process.pid]);
}));

test('workers-terminate-while-blocked-in-sendsync', withMain(async (main) => {
  main.on('never-answered', () => {});
  const w = new Worker(path.join(fixtures, 'worker.js'), { workerData: { address: main.address, index: 0, mode: 'block' } });
  await within(20000, new Promise((resolve) => w.once('message', resolve)), 'worker blocking');
  await delay(200);
  const t0 = Date.now();
  await within(10000, w.terminate(), 'terminate');
  const took = Date.now() - t0;
  assert.ok(took < 3000, `terminate() took ${took} ms`);
}));

test('sync-timeout-then-late-reply-is-discarded', withMain(async (main) => {
  main.on('slow', (event) => setTimeout(() => {
    event.returnValue = 'late';
  }, 600));
  main.on('fast', (event) => {
    event.returnValue = 'fast';
  });
  const w = new Worker(path.join(fixtures, 'worker.js'), { workerData: { address: main.address, mode: 'timeout' } });
  const out = await within(30000, new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  }), 'worker result');
  assert.equal(out.first.code, 'ERR_IPC_TIMEOUT');
  assert.equal(out.second, 'fast');
}));

test('disconnect-main-close-while-renderer-blocked', withMain(async (main) => {
  main.on('close-me', () => setTimeout(() => main.close(), 200));
  const w = new Worker(path.join(fixtures, 'worker.js'), { workerData: { address: main.address, mode: 'closed-during' } });
  const out = await within(30000, new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  }), 'worker result');
  assert.equal(out.code, 'ERR_IPC_DISCONNECTED');
}));

// ---- hostile peers ---------------------------------------------------------------------------------------------

test('hostile-oversized-frame-closes-only-that-connection', withMain(async (main) => {
  // A raw connection (no handshake) declares a frame over main's limit: the length is refused before anything
  // is allocated, that connection closes with ERR_IPC_FRAME_TOO_LARGE, and main keeps serving others.
  const errors = [];
  main.peers.on('error', (err) => errors.push(err));
  const { native } = require(path.join(root, 'dist', 'cjs', 'native.js'));
  const raw = native().connect(main.address, 5000);
  const closed = new Promise((resolve) => raw.start(() => {}, resolve, () => {}));
  raw.ref();
  raw.write(3, 0, Buffer.alloc(64 * 1024));
  await within(10000, closed, 'raw connection closed by main');
  raw.close();
  assert.ok(errors.some((e) => e.code === 'ERR_IPC_FRAME_TOO_LARGE'), errors.map((e) => e.code).join(','));
  main.on('whoami', (event, i) => {
    event.returnValue = { i, pid: event.processId };
  });
  main.handle('inc', (event, x) => x + 1);
  const report = collect(main, 'report', 1);
  const p = renderer(main, 'many', 7);
  const [[, out]] = await within(20000, report, 'report after the bad peer', p);
  assert.equal(out.inc, 8);
  await exitsCleanly(p, 'renderer');
}, { maxMessageSize: 4096 }));

test('hostile-silent-client-closed-after-handshake-timeout', withMain(async (main) => {
  const { native } = require(path.join(root, 'dist', 'cjs', 'native.js'));
  const raw = native().connect(main.address, 5000);
  const t0 = Date.now();
  const closed = new Promise((resolve) => raw.start(() => {}, resolve, () => {}));
  raw.ref();
  await within(10000, closed, 'silent connection closed by main');
  const took = Date.now() - t0;
  raw.close();
  assert.ok(took >= 300 && took < 8000, `closed after ${took} ms`);
}, { handshakeTimeout: 500 }));

// ---- backpressure ----------------------------------------------------------------------------------------------

test('backpressure-busy-main-fills-the-pipe-not-its-memory', withMain(async (main) => {
  // 20 MiB sent while main's JS is busy: main's I/O thread stops reading after 1 MiB of undelivered frames,
  // the pipe fills, and the renderer sees the rest in bufferedAmount. Everything arrives afterwards, in order.
  main.on('ready', (event) => {
    event.returnValue = true;
    setTimeout(() => {
      const until = Date.now() + 3000;
      while (Date.now() < until);
    }, 50);
  });
  const seen = [];
  main.on('flood', (event, i, chunk) => {
    assert.equal(chunk.length, 64 * 1024);
    seen.push(i);
  });
  const report = collect(main, 'report', 1);
  const p = renderer(main, 'flood');
  const [[, out]] = await within(60000, report, 'flood report', p);
  await exitsCleanly(p, 'renderer');
  assert.deepEqual(seen, Array.from({ length: 320 }, (_, i) => i));
  assert.ok(out.buffered > 10 * 1024 * 1024, `renderer buffered only ${out.buffered} bytes`);
}));

// ---- process lifetime --------------------------------------------------------------------------------------------

test('exit-flush-sends-before-process-exit', withMain(async (main) => {
  const got = collect(main, 'flush', 16);
  const p = renderer(main, 'exitFlush');
  const msgs = await within(30000, got, 'flushed messages', p);
  await exitsCleanly(p, 'renderer');
  assert.deepEqual(msgs.map(([, i]) => i), Array.from({ length: 16 }, (_, i) => i));
  for (const [, , chunk] of msgs) assert.equal(chunk.length, 64 * 1024);
}));

test('liveness-idle-renderer-exits-by-itself', withMain(async (main) => {
  const got = collect(main, 'idle', 1);
  const p = renderer(main, 'idle');
  const [[event, pid]] = await within(20000, got, 'idle message', p);
  assert.equal(pid, event.processId);
  await exitsCleanly(p, 'idle renderer');
}));

test('liveness-main-exits-by-itself-after-close', async () => {
  // No thread or thread-safe function of the addon keeps main alive once it closed what it opened.
  const m = node(path.join(fixtures, 'main-dies.js'), [uniqueName('close'), 'close']);
  try {
    await within(15000, (async () => {
      while (!/listening /.test(m.out())) await delay(20);
    })(), 'main listening', m);
    const r = node(path.join(fixtures, 'renderer.js'), ['idle'], { [ADDRESS_ENV]: /listening (\S+)/.exec(m.out())[1] });
    await exitsCleanly(r, 'renderer');
    await exitsCleanly(m, 'main after close()');
  } finally {
    m.child.kill();
  }
});

test('peers-disconnect-is-observed', withMain(async (main) => {
  const left = new Promise((resolve) => main.peers.once('disconnect', (peer, err) => resolve({ peer, err })));
  const p = renderer(main, 'idle');
  const { peer, err } = await within(20000, left, 'disconnect', p);
  assert.equal(peer.pid, p.child.pid);
  assert.equal(peer.isDestroyed(), true);
  assert.equal(err, null);
  await exitsCleanly(p, 'renderer');
}));

// ---- MessagePorts between renderers ----------------------------------------------------------------------------

/** What the 'port' renderers call on main while their port carries messages: a blocking call and an invoke. */
function answerPortCalls(main) {
  main.on('plus1', (event, k) => {
    event.returnValue = k + 1;
  });
  main.handle('twice', (event, k) => 2 * k);
}

/** Resolves with the first `n` peers that send 'ready', in arrival order. */
function readyPeers(main, n) {
  return collect(main, 'ready', n).then((got) => got.map(([event]) => event.sender));
}

test('ports-two-renderers-exchange-in-order-directly', withMain(async (main) => {
  // main makes a channel and gives one end to each renderer; each sends 2,000 numbered messages to the other
  // over the port (a pipe pair main made, its ends duplicated into the two processes), while calling main.
  answerPortCalls(main);
  const n = 2000;
  const ready = readyPeers(main, 2);
  const reports = collect(main, 'report', 2);
  const a = renderer(main, 'port', n);
  const b = renderer(main, 'port', n);
  const [pa, pb] = await within(20000, ready, 'renderers ready', a);
  const { port1, port2 } = new MessageChannelMain();
  pa.postMessage('port', 'a', [port1]);
  pb.postMessage('port', 'b', [port2]);
  const got = (await within(60000, reports, 'port reports', b)).map(([, out]) => out);
  got.sort((x, y) => (x.who < y.who ? -1 : 1));
  assert.deepEqual(got.map(({ who, bad, next }) => ({ who, bad, next })), [
    { who: 'a', bad: 0, next: n },
    { who: 'b', bad: 0, next: n },
  ]);
  await exitsCleanly(a, 'renderer a');
  await exitsCleanly(b, 'renderer b');
}));

test('ports-between-a-worker-thread-and-another-process', withMain(async (main) => {
  answerPortCalls(main);
  const n = 1000;
  const ready = readyPeers(main, 2);
  const report = collect(main, 'report', 1);
  const w = new Worker(path.join(fixtures, 'worker.js'), { workerData: { address: main.address, mode: 'port', n } });
  const fromWorker = new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
  const p = renderer(main, 'port', n);
  const peers = await within(20000, ready, 'worker and renderer ready', p);
  // The worker's connection comes from this process; its end's handle is duplicated within it.
  const inWorker = peers.find((peer) => peer.pid === process.pid);
  const inProcess = peers.find((peer) => peer.pid === p.child.pid);
  assert.ok(inWorker && inProcess, peers.map((peer) => peer.pid).join(','));
  const { port1, port2 } = new MessageChannelMain();
  inWorker.postMessage('port', null, [port1]);
  inProcess.postMessage('port', 'process', [port2]);
  assert.deepEqual(await within(60000, fromWorker, 'worker result', p), { bad: 0, next: n });
  const [[, out]] = await within(60000, report, 'renderer report', p);
  assert.deepEqual({ bad: out.bad, next: out.next }, { bad: 0, next: n });
  await exitsCleanly(p, 'renderer');
  await w.terminate();
}));

test('ports-an-end-in-use-moves-to-a-third-renderer', withMain(async (main) => {
  // main keeps port2 and posts 1,000 numbered messages; renderer A reads 100 of them on port1, then sends port1
  // (in use) back to main, which hands it to renderer C: C gets the rest in order, and its answer reaches main.
  const n = 1000;
  const k = 100;
  const readyA = readyPeers(main, 1);
  const a = renderer(main, 'portMoveFirst', k);
  const [peerA] = await within(20000, readyA, 'renderer A ready', a);
  const readyC = readyPeers(main, 1);
  const c = renderer(main, 'portMoveSecond');
  const [peerC] = await within(20000, readyC, 'renderer C ready', c);
  const report = collect(main, 'report', 1);
  const { port1, port2 } = new MessageChannelMain();
  const answer = new Promise((resolve) => port2.on('message', (ev) => resolve(ev.data)));
  port2.start();
  const moved = new Promise((resolve) => {
    main.once('moved', (event, got) => {
      peerC.postMessage('port', n - got.length, [event.ports[0]]);
      resolve(got);
    });
  });
  peerA.postMessage('port', null, [port1]);
  for (let i = 0; i < n; i++) port2.postMessage(i);
  const first = await within(20000, moved, 'A moved its end', a);
  assert.deepEqual(first, Array.from({ length: k }, (_, i) => i));
  const [[, out]] = await within(30000, report, 'C read the rest', c);
  assert.deepEqual(out.got, Array.from({ length: n - k }, (_, i) => k + i));
  assert.equal(await within(20000, answer, 'answer from C over the moved end', c), 'from the new holder');
  peerA.send('bye');
  await exitsCleanly(a, 'renderer A');
  await exitsCleanly(c, 'renderer C');
  port2.close();
}));

test('ports-killed-renderer-closes-the-other-end', withMain(async (main) => {
  const ready = readyPeers(main, 2);
  const holder = renderer(main, 'portHold');
  const watcher = renderer(main, 'portWatch');
  const [p1, p2] = await within(20000, ready, 'renderers ready', watcher);
  const [hold, watch] = p1.pid === holder.child.pid ? [p1, p2] : [p2, p1];
  const watching = collect(main, 'watching', 1);
  const report = collect(main, 'report', 1);
  const { port1, port2 } = new MessageChannelMain();
  hold.postMessage('port', null, [port1]);
  watch.postMessage('port', null, [port2]);
  // The holder's message reached the watcher before the kill; then 'close'.
  await within(20000, watching, 'watcher got the first message', watcher);
  holder.child.kill();
  const [[, out]] = await within(20000, report, 'close seen by the other end', watcher);
  assert.deepEqual(out, { closed: true, got: ['holding'] });
  await holder.done;
  await exitsCleanly(watcher, 'watcher');
}));

test('ports-a-port-sent-over-a-port-by-a-renderer', withMain(async (main) => {
  // The renderer passes a handle over a pipe end it adopted (main's end learnt the renderer's pid from it).
  const ready = readyPeers(main, 1);
  const report = collect(main, 'report', 1);
  const p = renderer(main, 'portRelay');
  const [peer] = await within(20000, ready, 'renderer ready', p);
  const { port1, port2 } = new MessageChannelMain();
  const arrived = new Promise((resolve) => port2.once('message', resolve));
  port2.start();
  peer.postMessage('port', null, [port1]);
  const ev = await within(20000, arrived, 'message with a port', p);
  assert.equal(ev.data, 'take this');
  assert.equal(ev.ports.length, 1);
  ev.ports[0].postMessage('back over the relayed port');
  const [[, out]] = await within(20000, report, 'renderer report', p);
  assert.deepEqual(out, { echo: 'back over the relayed port' });
  await exitsCleanly(p, 'renderer');
  ev.ports[0].close();
  port2.close();
}));

// ---- shared memory ---------------------------------------------------------------------------------------------

test('shm-large-byte-arrays-go-through-shared-sections-both-ways', withMain(async (main) => {
  const bad = [];
  let received = 0;
  main.on('shm-in', (event, i, buf) => {
    if (buf.length !== 1 << 20 || buf[0] !== i || buf[buf.length - 1] !== i) bad.push(i);
    received++;
  });
  main.handle('shm-out', (event, n) => Array.from({ length: n }, (_, i) => Buffer.alloc(1 << 20, 100 + i)));
  main.on('shm-sync', (event, buf) => {
    event.returnValue = buf.length;
  });
  let mainStats;
  const report = new Promise((resolve) => {
    main.once('report', (event, out) => {
      mainStats = event.sender.link._sharedStats();
      resolve(out);
    });
  });
  const p = renderer(main, 'shm');
  const out = await within(30000, report, 'shm report', p);
  assert.equal(out.ok, true);
  assert.deepEqual(bad, []);
  assert.equal(received, 16);
  assert.equal(out.stats.agreed, true);
  // 16 sends and the blocking call's argument (replies to blocking calls never use shared memory).
  assert.equal(out.stats.sent, 17, JSON.stringify(out.stats));
  assert.equal(mainStats.agreed, true);
  assert.equal(mainStats.sent, 5, JSON.stringify(mainStats));
  await exitsCleanly(p, 'renderer');
}));

// ---- handle passing (the addon's own API, below the link) ------------------------------------------------------

const KIND_MESSAGE = 3;
const KIND_SYNC = 4;
const KIND_SYNC_REPLY = 5;
const KIND_HANDLES = 10;

/** Splits the chunks onFrames receives into [kind, id, payload] triples. */
function frameList(chunks) {
  const out = [];
  for (const chunk of chunks) {
    for (let at = 0; at < chunk.length; ) {
      const len = chunk.readUInt32LE(at);
      out.push([chunk[at + 4], chunk.readUInt32LE(at + 5), Buffer.from(chunk.subarray(at + 9, at + 4 + len))]);
      at += 4 + len;
    }
  }
  return out;
}

/** A started connection that records frames and its close; `next(pred)` waits for a matching frame. */
function watch(conn) {
  const got = [];
  const waiters = [];
  let closeErr;
  const closed = new Promise((resolve) => {
    conn.start(
      (chunks) => {
        for (const f of frameList(chunks)) {
          got.push(f);
          for (const w of waiters.splice(0)) w();
        }
      },
      (err) => {
        closeErr = err;
        resolve(err);
      },
      () => {},
    );
  });
  conn.ref();
  const next = async (pred) => {
    for (;;) {
      const i = got.findIndex(pred);
      if (i >= 0) return got.splice(i, 1)[0];
      await new Promise((resolve) => waiters.push(resolve));
    }
  };
  return { conn, got, next, closed, closeErr: () => closeErr };
}

/** A bare listening pipe (no handshake): `accepted` resolves with the first connection, watched. */
function bareServer(what) {
  const { native } = require(path.join(root, 'dist', 'cjs', 'native.js'));
  const binding = native();
  const address = `\\\\.\\pipe\\${uniqueName(what)}`;
  let server;
  const accepted = new Promise((resolve, reject) => {
    server = binding.listen(address, 16, 0o600, (conn) => resolve(watch(conn)), reject);
  });
  return { binding, address, server, accepted };
}

const handleChild = (scenario, address) => node(path.join(fixtures, 'handles.js'), [scenario, address]);

/** The first JSON line the child printed. */
async function childSays(p, what) {
  return within(20000, (async () => {
    while (!p.out().includes('\n')) await delay(20);
    return JSON.parse(p.out().split('\n')[0]);
  })(), what, p);
}

test('handles-socketpair-ends-talk-in-one-process', async () => {
  const { native } = require(path.join(root, 'dist', 'cjs', 'native.js'));
  const binding = native();
  const [a, b] = binding.socketpair();
  assert.ok(Number.isInteger(a) && Number.isInteger(b) && a !== b, `${a} ${b}`);
  const ea = watch(binding.adoptConnection(a));
  const eb = watch(binding.adoptConnection(b));
  try {
    // A second pair: one end travels over the first as a handle, the sender closes its own at once.
    const [c, d] = binding.socketpair();
    ea.conn.writeHandles([c]);
    binding.closeHandle(c);
    ea.conn.write(KIND_MESSAGE, 7, Buffer.from('with a handle'));
    const [, count] = await within(10000, eb.next(([k]) => k === KIND_HANDLES), 'HANDLES frame');
    assert.equal(count, 1);
    const [, id, payload] = await within(10000, eb.next(([k]) => k === KIND_MESSAGE), 'message after it');
    assert.deepEqual([id, payload.toString()], [7, 'with a handle']);
    const [c2] = eb.conn.takeHandles(1);
    assert.throws(() => eb.conn.takeHandles(1), (err) => err.code === 'ERR_IPC_BAD_FRAME');
    // The announcement frames never reach JS; each end knows the other's holder: this process.
    assert.equal(ea.got.length + eb.got.length, 0);
    assert.equal(ea.conn.credentials.pid, process.pid);
    const ec = watch(binding.adoptConnection(c2));
    const ed = watch(binding.adoptConnection(d));
    ec.conn.write(KIND_MESSAGE, 1, Buffer.from('over the passed end'));
    const [, , text] = await within(10000, ed.next(([k]) => k === KIND_MESSAGE), 'message over the passed end');
    assert.equal(text.toString(), 'over the passed end');
    ec.conn.close();
    assert.equal(await within(10000, ed.closed, 'peer end closed'), null);
    ed.conn.close();
  } finally {
    ea.conn.close();
    eb.conn.close();
  }
});

test('handles-errors-are-clear', async () => {
  const { native } = require(path.join(root, 'dist', 'cjs', 'native.js'));
  const binding = native();
  assert.throws(() => binding.adoptConnection(0x7ffffff0), (err) => err.code === 'EBADF');
  assert.throws(() => binding.closeHandle(0x7ffffff0), (err) => err.code === 'EBADF');
  assert.throws(() => binding.adoptConnection(-1), TypeError);
  const [a, b] = binding.socketpair();
  const ea = watch(binding.adoptConnection(a));
  try {
    assert.throws(() => ea.conn.writeHandles([0x7ffffff0]), (err) => err.code === 'EBADF');
    assert.throws(() => ea.conn.writeHandles(new Array(254).fill(b)), RangeError);
    assert.deepEqual(ea.conn.takeHandles(0), []);
    assert.throws(() => ea.conn.takeHandles(1), (err) => err.code === 'ERR_IPC_BAD_FRAME');
    ea.conn.close();
    assert.throws(() => ea.conn.writeHandles([b]), (err) => err.code === 'ERR_IPC_DISCONNECTED');
  } finally {
    ea.conn.close();
    binding.closeHandle(b);
  }
});

test('handles-pipe-end-passed-to-another-process-carries-blocking-calls', async () => {
  const srv = bareServer('pass');
  const p = handleChild('adopt', srv.address);
  let ours;
  try {
    const conn = await within(20000, srv.accepted, 'child connected', p);
    const [a, b] = srv.binding.socketpair();
    ours = watch(srv.binding.adoptConnection(a));
    conn.conn.writeHandles([b]);
    srv.binding.closeHandle(b);
    // The child answers over the end it received, with a blocking call this side replies to.
    const [, id, payload] = await within(20000, ours.next(([k]) => k === KIND_SYNC), 'SYNC over the passed end', p);
    assert.equal(payload.toString(), 'ping');
    // Two handles for the reply, as a HANDLES frame right before it.
    const [c, d] = srv.binding.socketpair();
    ours.conn.writeHandles([c, d]);
    srv.binding.closeHandle(c);
    srv.binding.closeHandle(d);
    ours.conn.write(KIND_SYNC_REPLY, id, Buffer.from('pong'));
    const said = await childSays(p, 'child report');
    assert.deepEqual(said, { reply: 'pong', frames: true, kinds: [KIND_HANDLES], took: 2, peerPid: process.pid });
    // The child's announcement told this end who holds the other one now.
    assert.equal(ours.conn.credentials.pid, p.child.pid);
    await exitsCleanly(p, 'child');
    assert.equal(await within(10000, ours.closed, 'passed end closed by the child'), null);
    conn.conn.close();
  } finally {
    if (ours) ours.conn.close();
    srv.server.close();
    p.child.kill();
  }
});

test('handles-untaken-are-closed-with-the-connection', async () => {
  const srv = bareServer('untaken');
  const p = handleChild('ignore', srv.address);
  let ours;
  try {
    const conn = await within(20000, srv.accepted, 'child connected', p);
    const [a, b] = srv.binding.socketpair();
    ours = watch(srv.binding.adoptConnection(a));
    conn.conn.writeHandles([b]);
    srv.binding.closeHandle(b);
    assert.deepEqual(await childSays(p, 'child closed without taking'), { closed: true });
    // The only copy of the other end was the one waiting in the child: closing its connection closed it.
    assert.equal(await within(10000, ours.closed, 'the untaken end closed', p), null);
    conn.conn.close();
  } finally {
    if (ours) ours.conn.close();
    srv.server.close();
    p.child.kill();
    await p.done;
  }
});

test('handles-hostile-values-and-floods-close-the-connection', async () => {
  // A value that is no handle of the receiver's (a peer naming the receiver's own handles, or garbage).
  {
    const srv = bareServer('forged');
    const p = handleChild('hostile', srv.address);
    try {
      const conn = await within(20000, srv.accepted, 'child connected', p);
      const forged = Buffer.alloc(8);
      forged.writeUInt32LE(0x7ffffff0, 0);
      conn.conn.write(KIND_HANDLES, 1, forged);
      assert.equal((await childSays(p, 'forged value refused')).closeCode, 'ERR_IPC_BAD_FRAME');
      await exitsCleanly(p, 'child');
      conn.conn.close();
    } finally {
      srv.server.close();
      p.child.kill();
    }
  }
  // More than 256 handles nobody takes.
  {
    const srv = bareServer('flood');
    const p = handleChild('hostile', srv.address);
    try {
      const conn = await within(20000, srv.accepted, 'child connected', p);
      const [a, b] = srv.binding.socketpair();
      const many = new Array(200).fill(b);
      conn.conn.writeHandles(many);
      conn.conn.writeHandles(many);
      srv.binding.closeHandle(a);
      srv.binding.closeHandle(b);
      const said = await childSays(p, 'flood refused');
      assert.equal(said.closeCode, 'ERR_IPC_BAD_FRAME', said.message);
      assert.match(said.message, /256/);
      await exitsCleanly(p, 'child');
      conn.conn.close();
    } finally {
      srv.server.close();
      p.child.kill();
    }
  }
});

// ---- OS handles in messages -------------------------------------------------------------------------------------

test('oshandles-ipchandle-travels-and-net-objects-are-refused', withMain(async (main) => {
  const { native } = require(path.join(root, 'dist', 'cjs', 'native.js'));
  const binding = native();
  const ready = readyPeers(main, 1);
  const report = collect(main, 'report', 1);
  const p = renderer(main, 'ipcHandle');
  const [peer] = await within(20000, ready, 'renderer ready', p);
  // Node on Windows cannot rebuild a net.Server or net.Socket from a handle: a clear error, nothing sent.
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    assert.throws(() => peer.send('handle', server), (err) => err.code === 'ERR_IPC_TRANSFER_UNSUPPORTED');
  } finally {
    server.close();
  }
  // A raw HANDLE in an IpcHandle travels: one end of a pipe pair, adopted over there.
  const [a, b] = binding.socketpair();
  const ours = watch(binding.adoptConnection(a));
  try {
    peer.send('handle', new IpcHandle(b));
    const [[, out]] = await within(20000, report, 'renderer report', p);
    assert.deepEqual(out, { ok: true, left: 0 });
    const [, , text] = await within(20000, ours.next(([k]) => k === KIND_MESSAGE), 'frame over the passed handle', p);
    assert.equal(text.toString(), 'hello over the passed handle');
    assert.equal(await within(20000, ours.closed, 'the other end closed', p), null);
    await exitsCleanly(p, 'renderer');
  } finally {
    ours.conn.close();
  }
}));

// ---- checks Windows would pass and wine cannot show ------------------------------------------------------------

test('security-pipe-refuses-other-users-and-remote-clients', null, {
  skip: underWine
    ? 'wine: pipe DACLs and PIPE_REJECT_REMOTE_CLIENTS are accepted but not enforced (one user, one machine)'
    : 'needs a second Windows account or a remote client',
});

// ---- runner ----------------------------------------------------------------------------------------------------------

async function run() {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  console.log(`# ipcwire Windows suite on node ${process.version} ${process.platform}-${process.arch}` +
    `${underWine ? ' (under wine)' : ''}`);
  for (const t of tests) {
    if (only && !only.test(t.name)) continue;
    if (t.skip) {
      skipped++;
      console.log(`skip - ${t.name}: ${t.skip}`);
      continue;
    }
    const t0 = Date.now();
    try {
      await within(t.timeout || 90000, Promise.resolve().then(() => t.fn()), t.name);
      passed++;
      console.log(`ok - ${t.name} (${Date.now() - t0} ms)`);
    } catch (err) {
      failed++;
      console.log(`not ok - ${t.name} (${Date.now() - t0} ms)\n${String((err && err.stack) || err).replace(/^/gm, '#   ')}`);
    }
  }
  console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  return failed;
}

run().then(
  (failed) => process.exit(failed ? 1 : 0),
  (err) => {
    console.log(`runner crashed: ${err && err.stack}`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  },
);
