'use strict';
// MessagePorts (bench/run.js section "ports"). This process is main; it starts two renderers, gives them the two
// ends of a MessageChannelMain, then measures, alternating, `rounds` rounds each:
//  - the renderer↔renderer round trip over the port (A posts, B echoes) against A's `invoke` round trip to main
//    (the same small message), so the ratio compares one direct hop each way with the renderer↔main hop;
//  - main's CPU time (process.cpuUsage) while A and B exchange `messages` messages over the port after placement,
//    per message: what main spends on traffic that does not pass through it.
// Prints one JSON line: {type: 'ports', kind: 'rtt', ...} and {type: 'ports', kind: 'main-cpu', ...}.
// Usage: node ports.js '{"iters":20000,"rounds":3,"messages":100000}'
const path = require('node:path');
const { spawn } = require('node:child_process');
const C = require('../lib/common');

const modulePath = process.env.IPCWIRE_BENCH_MODULE || path.join(__dirname, '..', '..');
const MESSAGE = ['ping', 123];

async function renderer() {
  const { ipcRenderer } = require(modulePath);
  const role = process.argv[3];
  const port = await new Promise((resolve) => ipcRenderer.once('port', (e) => resolve(e.ports[0])));
  port.start();
  if (role === 'echo') {
    port.on('message', ({ data }) => {
      if (data === 'bye') {
        port.close();
        ipcRenderer.close();
        return;
      }
      port.postMessage(data);
    });
    ipcRenderer.send('ready', role);
    return;
  }
  // The driver side: one round trip at a time, as the latency loops of the other rows.
  let waiting = null;
  port.on('message', ({ data }) => waiting(data));
  const viaPort = () => new Promise((resolve) => {
    waiting = resolve;
    port.postMessage(MESSAGE);
  });
  const viaInvoke = () => ipcRenderer.invoke('ping', MESSAGE);
  ipcRenderer.handle('rtt', async (_e, iters) => {
    const time = async (rt) => {
      for (let i = 0; i < Math.min(1000, iters); i++) await rt(); // warm-up
      const samples = new Float64Array(iters);
      for (let i = 0; i < iters; i++) {
        const t0 = C.now();
        await rt();
        samples[i] = C.now() - t0;
      }
      return C.summarize(samples);
    };
    return { port: await time(viaPort), invoke: await time(viaInvoke) };
  });
  ipcRenderer.handle('burst', async (_e, count) => {
    // `count` messages in flight at most 256 at a time, each echoed back: traffic main never sees.
    let back = 0;
    let sent = 0;
    await new Promise((resolve) => {
      waiting = () => {
        back++;
        if (sent < count) {
          sent++;
          port.postMessage(MESSAGE);
        }
        if (back === count) resolve();
      };
      for (; sent < Math.min(256, count); sent++) port.postMessage(MESSAGE);
    });
    return back;
  });
  ipcRenderer.handle('bye', () => {
    port.postMessage('bye');
    setImmediate(() => ipcRenderer.close());
  });
  ipcRenderer.send('ready', role);
}

async function driver(cfg) {
  const { IpcMain, MessageChannelMain } = require(modulePath);
  const main = new IpcMain();
  const sock = C.tmpSocket('pt');
  main.listen(sock.path);
  main.handle('ping', (_e, m) => m);
  const peers = {};
  const ready = new Promise((resolve) => main.on('ready', (e, role) => {
    peers[role] = e.sender;
    if (peers.drive && peers.echo) resolve();
  }));
  const kids = ['drive', 'echo'].map((role) => spawn(process.execPath, [__filename, 'renderer', role], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, IPCWIRE_ADDRESS: sock.path },
  }));
  const { port1, port2 } = new MessageChannelMain();
  // The ends go out before the renderers ask: each takes its end from its first 'port' message.
  await new Promise((resolve) => main.peers.on('connect', () => main.peers.list().length === 2 && resolve()));
  const [a, b] = main.peers.list();
  a.postMessage('port', null, [port1]);
  b.postMessage('port', null, [port2]);
  await ready;
  const drive = peers.drive;

  const port = [];
  const invoke = [];
  for (let round = 0; round < cfg.rounds; round++) {
    const r = await drive.invoke('rtt', cfg.iters);
    port.push(r.port);
    invoke.push(r.invoke);
  }
  const med = (xs, k) => xs.map((x) => x[k]).sort((p, q) => p - q)[Math.floor(xs.length / 2)];
  const portMedian = med(port, 'median_us');
  const invokeMedian = med(invoke, 'median_us');
  C.emit({
    type: 'ports', kind: 'rtt', iters: cfg.iters, rounds: cfg.rounds,
    port_median_us: portMedian, port_p99_us: med(port, 'p99_us'),
    invoke_median_us: invokeMedian, invoke_p99_us: med(invoke, 'p99_us'),
    ratio: Math.round((portMedian / invokeMedian) * 100) / 100,
  });

  // Main's CPU while the renderers talk over the port (the invoke that starts the burst and its reply are
  // included: two messages for the whole burst).
  const cpu0 = process.cpuUsage();
  const t0 = C.now();
  const back = await drive.invoke('burst', cfg.messages);
  const secs = (C.now() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const cpuUs = cpu.user + cpu.system;
  C.emit({
    type: 'ports', kind: 'main-cpu', messages: back * 2, seconds: Math.round(secs * 100) / 100,
    main_cpu_ms: Math.round(cpuUs / 10) / 100,
    main_cpu_ns_per_message: Math.round((cpuUs * 1000) / (back * 2)),
    messages_per_s: Math.round((back * 2) / secs),
  });
  await drive.invoke('bye');
  await Promise.all(kids.map((k) => new Promise((resolve) => k.exitCode !== null ? resolve() : k.on('exit', resolve))));
  main.close();
  require('node:fs').rmSync(sock.dir, { recursive: true, force: true });
}

if (process.argv[2] === 'renderer') {
  renderer().catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else {
  driver(JSON.parse(process.argv[2] || '{"iters":20000,"rounds":3,"messages":100000}')).catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
