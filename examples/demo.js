'use strict';
// `npm run demo`: runs the seed example (examples/seed: the original `ipc` module's example, as written) and shows what it prints, then
// measures ipcRenderer.sendSync round trips between two processes on this machine.
//
//   node examples/demo.js [calls]        (default 10000 measured calls, after 1000 warm-up calls)
//
// The seed's main keeps listening forever by design (a listening ipcMain keeps its process alive, like
// net.Server), so the demo stops it once the four expected lines have arrived.
const { spawn } = require('node:child_process');
const path = require('node:path');

const RENDERER = 'demo-renderer';

if (process.argv[2] === RENDERER) {
  renderer(Number(process.argv[3]));
} else {
  main().catch((err) => {
    console.error(`demo: ${err.stack || err}`);
    process.exitCode = 1;
  });
}

async function main() {
  // A fresh clone after `npm ci` has everything built; after edits, rebuild what is stale.
  const { ensureNative, ensureTs } = require('../scripts/ensure-built');
  const quiet = () => {};
  if (!ensureNative(quiet) || !ensureTs(quiet)) throw new Error('the build failed (see above)');

  console.log('$ node examples/seed/main.js');
  await runSeed();
  const calls = Number(process.argv[2]) || 10000;
  const { median, p99 } = await measure(calls);
  console.log(`sendSync round trip: median ${median.toFixed(1)} µs, p99 ${p99.toFixed(1)} µs over ${calls} calls (this machine)`);
}

/** Runs the seed main (which forks the seed renderer) until it printed ping, ping, pong, pong; then stops both. */
function runSeed() {
  return new Promise((resolve, reject) => {
    // Its own process group, so that stopping it also stops the renderer it forked.
    const child = spawn(process.execPath, [path.join(__dirname, 'seed', 'main.js')], {
      cwd: path.join(__dirname, 'seed'),
      stdio: ['ignore', 'pipe', 'inherit'],
      detached: true,
    });
    const expected = { ping: 2, pong: 2 };
    let buffered = '';
    let done = false;
    const stop = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const socket = seedAddress(child.pid);
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        // Already gone.
      }
      // A killed main cannot remove its socket file; the demo does, so that runs leave nothing behind.
      if (socket) child.once('exit', () => require('node:fs').rmSync(socket, { force: true }));
      if (err) reject(err);
      else child.once('exit', () => resolve());
    };
    const timer = setTimeout(
      () => stop(new Error(`the seed example did not print ping, ping, pong, pong within 20 s (still missing: ${JSON.stringify(expected)})`)),
      20_000,
    );
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (text) => {
      buffered += text;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        console.log(`  ${line}`);
        if (expected[line] > 0) expected[line] -= 1;
      }
      if (expected.ping === 0 && expected.pong === 0) stop(null);
    });
    child.on('error', stop);
    child.on('exit', (code, signal) => {
      if (!done) stop(new Error(`the seed main exited early (code ${code}, signal ${signal})`));
    });
  });
}

/** The address the seed main listens on, read from its renderer's environment (Linux /proc; else null). */
function seedAddress(mainPid) {
  const fs = require('node:fs');
  try {
    for (const pid of fs.readFileSync(`/proc/${mainPid}/task/${mainPid}/children`, 'utf8').trim().split(/\s+/)) {
      const env = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      const entry = env.find((e) => e.startsWith('IPCWIRE_ADDRESS='));
      if (entry) return entry.slice('IPCWIRE_ADDRESS='.length);
    }
  } catch {
    // Not Linux, or the renderer is gone.
  }
  return null;
}

/** Forks a renderer that calls sendSync `calls` times; main answers each at once. Returns µs percentiles. */
function measure(calls) {
  const { ipcMain, fork } = require('ipcwire');
  return new Promise((resolve, reject) => {
    let late;
    const finish = (err, result) => {
      clearTimeout(late);
      ipcMain.close();
      if (err) reject(err);
      else resolve(result);
    };
    ipcMain.on('demo-sync', (event, i) => {
      event.returnValue = i;
    });
    ipcMain.on('demo-result', (event, micros) => {
      micros.sort((a, b) => a - b);
      const at = (q) => micros[Math.min(micros.length - 1, Math.floor(q * micros.length))];
      finish(null, { median: at(0.5), p99: at(0.99) });
    });
    const child = fork(__filename, [RENDERER, String(calls)]);
    child.on('exit', (code, signal) => {
      // The result travels on the socket, the exit on SIGCHLD: either may be seen first.
      if (code !== 0) finish(new Error(`the measuring renderer exited with code ${code}, signal ${signal}`));
      else late = setTimeout(() => finish(new Error('the measuring renderer exited without sending its result')), 5000);
    });
  });
}

function renderer(calls) {
  const { ipcRenderer } = require('ipcwire');
  for (let i = 0; i < 1000; i++) ipcRenderer.sendSync('demo-sync', i);
  const micros = new Array(calls);
  for (let i = 0; i < calls; i++) {
    const t0 = process.hrtime.bigint();
    const v = ipcRenderer.sendSync('demo-sync', i);
    micros[i] = Number(process.hrtime.bigint() - t0) / 1000;
    if (v !== i) throw new Error(`sendSync returned ${v} for call ${i}`);
  }
  ipcRenderer.send('demo-result', micros);
  ipcRenderer.close();
}
