/**
 * Fuzzing the message envelope and argument decoding (TypeScript, msgpackr) through a real main: a seeded random
 * mutator over valid frames captured from a real renderer (and the committed corpus in test/fuzz/corpus), fed by
 * raw clients, the handshake included. Invariants: main never crashes or throws outside a listener, every
 * connection-level fault is an ERR_IPC_* 'error' for that connection only, listeners only ever get an event and
 * an array of at most MAX_ARGS arguments, and a good renderer keeps being served. The other direction too: a fake
 * main sends mutated frames (captured from a real main) to a real renderer, which must only ever report ERR_IPC_*
 * faults on its link and never crash or hang. An input that breaks one is
 * written to test/fuzz/regressions/ (commit it: every file there is replayed first, for ever).
 *
 * Bounded: IPCWIRE_FUZZ_MS milliseconds of mutation per side (scripts/fuzz.sh), else 40 connections per side;
 * IPCWIRE_FUZZ_SEED reproduces a run.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as net from 'node:net';
import { describe, expect, test } from 'vitest';
import { type Any, ROOT, exitsCleanly, ipcwire, makeMain, once, runNode, sockPath, trackRaw, useHarness, waitUntil } from './helpers';
import { KIND, frame, parseFrames, proxy, rawClient } from './helpers/wire';
import { xorshift32 } from '../scripts/lib/xorshift';

useHarness();

/**
 * With IPCWIRE_FUZZ_MS (scripts/fuzz.sh, the CI fuzz step) each side mutates for that long; without it (the
 * ordinary suite) each side makes FUZZ_ROUNDS connections, few enough not to starve tests running beside it.
 */
const FUZZ_MS = Number(process.env.IPCWIRE_FUZZ_MS ?? 0);
const FUZZ_ROUNDS = FUZZ_MS > 0 ? Number.MAX_SAFE_INTEGER : 40;
const FUZZ_BUDGET_MS = FUZZ_MS > 0 ? FUZZ_MS : 60_000;
const SEED = Number(process.env.IPCWIRE_FUZZ_SEED ?? Date.now() % 0x7fffffff) >>> 0 || 1;
const CORPUS = path.join(ROOT, 'test', 'fuzz', 'corpus');
const REGRESSIONS = path.join(ROOT, 'test', 'fuzz', 'regressions');
const PROBE_ID = 0x7ffffff0;
/** A valid sendSync on 'probe' ([channel, args] = ['probe', []]): its reply says main got through a batch. */
const PROBE = frame(KIND.SYNC, PROBE_ID, Buffer.from([0x92, 0xa5, ...Buffer.from('probe'), 0x90]));


const INTERESTING = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x90, 0x9f, 0xc0, 0xc1, 0xc4, 0xc7, 0xc9, 0xcc, 0xce, 0xcf, 0xd4, 0xd8,
  0xd9, 0xdc, 0xdd, 0xde, 0xdf, 0xa0, 0xbf, 0x21, 0x72, 0x73, 0x78];

/** One mutation of a frame's payload (and sometimes of its kind or id); the length prefix stays right. */
function mutate(next: () => number, seeds: Buffer[]): Buffer {
  const src = seeds[next() % seeds.length];
  let kind = src[4];
  let id = src.readUInt32LE(5);
  let p = Buffer.from(src.subarray(9));
  const rounds = next() % 4 === 0 ? 2 + (next() % 3) : 1;
  for (let r = 0; r < rounds; r++) {
    const at = p.length ? next() % p.length : 0;
    switch (next() % 10) {
      case 0: if (p.length) p[at] ^= 1 << (next() % 8); break;
      case 1: if (p.length) p[at] = INTERESTING[next() % INTERESTING.length]; break;
      case 2: p = Buffer.concat([p.subarray(0, at), Buffer.from(Array.from({ length: 1 + (next() % 8) }, () => next() & 0xff)), p.subarray(at)]); break;
      case 3: p = Buffer.concat([p.subarray(0, at), p.subarray(Math.min(p.length, at + 1 + (next() % 16)))]); break;
      case 4: { const len = 1 + (next() % 32); p = Buffer.concat([p.subarray(0, at), p.subarray(at, at + len), p.subarray(at)]); break; }
      case 5: { const other = seeds[next() % seeds.length].subarray(9); p = Buffer.concat([p.subarray(0, at), other.subarray(next() % (other.length || 1))]); break; }
      case 6: { // a big-endian length field set to something large
        if (p.length >= at + 5) p.writeUInt32BE([0xffffffff, 0x7fffffff, 0x10000, 8193, 1 << 24, (1 << 24) + 1][next() % 6], at + 1);
        break;
      }
      case 7: { // deep nesting
        const depth = [100, 5000, 100_000][next() % 3];
        p = Buffer.concat([p.subarray(0, at), Buffer.alloc(depth, 0x91), Buffer.from([0xc0]), p.subarray(at)]);
        break;
      }
      case 8: kind = [KIND.MESSAGE, KIND.SYNC, KIND.INVOKE, KIND.BLOB, KIND.HELLO, KIND.INVOKE_REPLY, 9, 0][next() % 8]; break;
      default: id = next(); break;
    }
  }
  if (p.length > 256 * 1024) p = p.subarray(0, 256 * 1024);
  return frame(kind, id, p);
}

function fuzzMain(): { main: Any; problems: string[]; calls: () => number } {
  const main = makeMain({ handshakeTimeout: 20_000 });
  const problems: string[] = [];
  let calls = 0;
  const { MAX_ARGS } = ipcwire();
  const check = (channel: string) => (event: Any, ...args: unknown[]) => {
    calls++;
    if (!event || typeof event !== 'object' || !event.sender) problems.push(`${channel}: listener got no event`);
    if (args.length > MAX_ARGS) problems.push(`${channel}: ${args.length} arguments`);
    if (event && 'returnValue' in event) event.returnValue = channel === 'probe' ? 'ok' : args.length;
  };
  for (const ch of ['m', 's', 'probe', 'values']) main.on(ch, check(ch));
  main.handle('i', (_e: Any, ...args: unknown[]) => { calls++; return args.length; });
  main.peers.on('error', (err: Any) => {
    if (!(err instanceof Error) || typeof err.code !== 'string' || !err.code.startsWith('ERR_IPC_')) {
      problems.push(`peers 'error' that is not an ERR_IPC_* error: ${String(err && err.code)} ${String(err)}`);
    }
  });
  return { main, problems, calls: () => calls };
}

async function captureSeeds(main: Any): Promise<{ hello: Buffer; seeds: Buffer[]; welcome: Buffer; down: Buffer[] }> {
  main.once('m', (e: Any) => e.sender.send('back', 1, 'two', { three: [3n, new Date(0), new Map([[1, new Set([2])]])] }, [1, , 3], Buffer.alloc(100, 5)));
  const px = proxy(main.address);
  const child = runNode(`
    const r = ipcwire.ipcRenderer;
    const v = values.all ? values.all() : [1, 'two', { three: [3n, new Date(0), new Map([[1, 2]]), new Set([1])] }];
    r.send('m', 1, 'a', null, undefined, -0, NaN, [1, , 3], { a: { b: [1.5, true] } }, Buffer.alloc(10, 1), new Uint16Array([1, 2]));
    r.send('m', new Error('boom'), /re/g, 2n ** 70n, new Float64Array(3), Buffer.alloc(70 * 1024, 2));
    out('s', r.sendSync('s', 'x', { y: [1, 2, 3] }, new Map([['k', new Set(['v'])]])));
    out('i', await r.invoke('i', [1, [2, [3, [4]]]], 'long'.repeat(100)));
  `, { address: px.address });
  expect(await child.msg('i')).toBe(2);
  await child.waitExit();
  px.close();
  const frames = parseFrames(px.up).frames;
  const hello = frames[0];
  expect(hello[4]).toBe(KIND.HELLO);
  const seeds = frames.slice(1);
  if (process.env.IPCWIRE_FUZZ_WRITE_CORPUS) {
    // Refreshes the committed corpus from what a real renderer sends (run once after a protocol change).
    fs.mkdirSync(CORPUS, { recursive: true });
    for (const f of seeds) fs.writeFileSync(path.join(CORPUS, `seed-${createHash('sha1').update(f).digest('hex').slice(0, 12)}.bin`), f);
  }
  for (const f of fs.existsSync(CORPUS) ? fs.readdirSync(CORPUS).sort() : []) seeds.push(fs.readFileSync(path.join(CORPUS, f)));
  const down = parseFrames(px.down).frames;
  const welcome = down[0];
  expect(welcome[4]).toBe(KIND.WELCOME);
  return { hello, seeds, welcome, down: down.slice(1) };
}

/** Sends `hello + frames + probe` on a fresh raw connection; resolves when main answered the probe or closed. */
async function feed(main: Any, hello: Buffer, frames: Buffer[]): Promise<'answered' | 'closed'> {
  const raw = rawClient(main.address);
  raw.socket.write(Buffer.concat([hello, ...frames, PROBE]));
  const answered = () => parseFrames(raw.received()).frames.some((f) => f[4] === KIND.SYNC_REPLY && f.readUInt32LE(5) === PROBE_ID);
  await waitUntil(() => raw.isClosed() || answered(), 20_000, 'main answering or closing a fuzzed connection');
  const outcome = answered() ? 'answered' : 'closed';
  raw.socket.destroy();
  await raw.closed;
  return outcome;
}

/** Files of test/fuzz/regressions: `to-renderer-*` are frames a main sent, the others frames a renderer sent. */
function regressionFiles(toRenderer: boolean): string[] {
  if (!fs.existsSync(REGRESSIONS)) return [];
  return fs.readdirSync(REGRESSIONS).filter((f) => f.startsWith('to-renderer-') === toRenderer).sort();
}

function saveRegression(hello: Buffer, frames: Buffer[], prefix = 'crash-'): string {
  const bytes = Buffer.concat(frames);
  const name = `${prefix}${createHash('sha1').update(bytes).digest('hex').slice(0, 16)}.bin`;
  fs.mkdirSync(REGRESSIONS, { recursive: true });
  fs.writeFileSync(path.join(REGRESSIONS, name), bytes);
  void hello;
  return name;
}

describe('fuzz', () => {
  test('fuzz: mutated envelopes, arguments and handshakes through a real main keep it serving', { timeout: FUZZ_BUDGET_MS + 120_000 }, async () => {
    const { main, problems, calls } = fuzzMain();
    const { hello, seeds } = await captureSeeds(main);
    expect(seeds.length).toBeGreaterThan(3);
    const good = runNode(`
      const r = ipcwire.ipcRenderer;
      r.handle('ping', (e, x) => 'pong ' + x);
      r.once('bye', () => { r.removeHandler('ping'); r.close(); });
      r.send('values', 'up');
    `, { address: main.address });
    const [event] = await once(main, 'values');
    const goodPeer = event.sender;

    // Every committed regression first: each must leave main serving.
    for (const name of regressionFiles(false)) {
      await feed(main, hello, [fs.readFileSync(path.join(REGRESSIONS, name))]);
      expect(problems, name).toEqual([]);
    }

    const next = xorshift32(SEED);
    const outcomes = { answered: 0, closed: 0, frames: 0, batches: 0 };
    const end = Date.now() + FUZZ_BUDGET_MS;
    let current: Buffer[] = [];
    const onUncaught = () => {
      if (current.length) process.stderr.write(`fuzz: uncaught exception; input saved as ${saveRegression(hello, current)}\n`);
    };
    process.prependListener('uncaughtException', onUncaught);
    try {
      while (Date.now() < end && outcomes.batches < FUZZ_ROUNDS) {
        // Sometimes the handshake itself is what is mutated.
        const mutatedHello = next() % 16 === 0;
        current = Array.from({ length: 1 + (next() % 3) }, () => mutate(next, seeds));
        const before = problems.length;
        const outcome = await feed(main, mutatedHello ? mutate(next, [hello]) : hello, current);
        outcomes[outcome]++;
        outcomes.frames += current.length;
        outcomes.batches++;
        if (problems.length > before) {
          const name = saveRegression(hello, current);
          throw new Error(`fuzz invariant broken (seed ${SEED}), input saved as test/fuzz/regressions/${name}: ${problems.slice(before).join('; ')}`);
        }
        if (outcomes.batches % 25 === 0) expect(await goodPeer.invoke('ping', outcomes.batches)).toBe(`pong ${outcomes.batches}`);
      }
    } finally {
      process.off('uncaughtException', onUncaught);
      current = [];
    }
    // eslint-disable-next-line no-console
    console.log(`fuzz: seed ${SEED}, ${outcomes.batches} connections, ${outcomes.frames} mutated frames, ` +
      `${outcomes.answered} answered, ${outcomes.closed} closed by main, ${calls()} listener calls`);
    expect(problems).toEqual([]);
    expect(outcomes.batches).toBeGreaterThan(0);
    expect(outcomes.answered).toBeGreaterThan(0);
    expect(outcomes.closed).toBeGreaterThan(0);
    expect(await goodPeer.invoke('ping', 'end')).toBe('pong end');
    await waitUntil(() => main.peers.size === 1, 10_000, 'only the good renderer left');
    goodPeer.send('bye');
    await exitsCleanly(good);
  });
  test('fuzz: a hostile main sending mutated frames cannot crash a renderer; faults are ERR_IPC_* on its link', { timeout: FUZZ_BUDGET_MS + 120_000 }, async () => {
    const { main } = fuzzMain();
    const { welcome, down } = await captureSeeds(main);
    expect(down.length).toBeGreaterThan(1);
    const next = xorshift32(SEED ^ 0x5eed);
    const probe = frame(KIND.MESSAGE, 0, Buffer.from([0x92, 0xa5, ...Buffer.from('probe'), 0x90]));
    let lastSent: Buffer[] = [];
    const fixed = regressionFiles(true).map((f) => fs.readFileSync(path.join(REGRESSIONS, f)));
    let connections = 0;
    const address = sockPath();
    const sockets = new Set<net.Socket>();
    // A fake main: answers the hello with a real WELCOME, then mutated frames, then a probe message.
    const server = trackRaw(net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
      s.once('data', () => {
        connections++;
        // Committed regressions first, one per connection; then fresh mutations.
        lastSent = fixed.length ? [fixed.shift()!] : Array.from({ length: 1 + (next() % 3) }, () => mutate(next, down));
        s.write(Buffer.concat([welcome, ...lastSent, probe]));
      });
    }));
    await new Promise<void>((r) => server.listen(address, r));
    const child = runNode(`
      const end = Date.now() + ${FUZZ_BUDGET_MS};
      const stats = { rounds: 0, probes: 0, closed: 0, codes: {}, bad: [] };
      while (Date.now() < end && stats.rounds < ${FUZZ_ROUNDS}) {
        stats.rounds++;
        const r = new ipcwire.IpcRenderer({ address: ${JSON.stringify(address)} });
        r.on('m', () => {}); r.on('back', () => {});
        r.handle('i', (e, ...a) => a.length);
        const outcome = await new Promise((resolve) => {
          const t = setTimeout(() => resolve('stuck'), 10000);
          r.once('probe', () => { clearTimeout(t); resolve('probe'); });
          r.link.on('error', (e) => {
            if (!(e instanceof Error) || typeof e.code !== 'string' || !e.code.startsWith('ERR_IPC_')) stats.bad.push(String(e && e.code) + ' ' + String(e));
            stats.codes[e.code] = (stats.codes[e.code] || 0) + 1;
          });
          r.link.once('disconnect', () => { clearTimeout(t); resolve('closed'); });
          r.connect();
        });
        if (outcome === 'stuck') stats.bad.push('neither the probe nor a disconnect within 10 s');
        if (outcome === 'probe') stats.probes++; else stats.closed++;
        r.removeHandler('i');
        r.removeAllListeners();
        r.close();
        if (stats.bad.length) break;
      }
      out('done', stats);
    `);
    let stats: Any;
    try {
      stats = await child.msg('done', FUZZ_BUDGET_MS + 60_000);
    } catch (err) {
      const name = saveRegression(welcome, lastSent, 'to-renderer-');
      throw new Error(`renderer fuzz (seed ${SEED}) failed; last frames sent saved as test/fuzz/regressions/${name} (main to renderer): ${String(err)}`);
    }
    // eslint-disable-next-line no-console
    console.log(`fuzz (renderer side): seed ${SEED}, ${stats.rounds} connections, ${stats.probes} served to the probe, ${stats.closed} closed, errors ${JSON.stringify(stats.codes)}`);
    expect(stats.bad).toEqual([]);
    expect(stats.rounds).toBeGreaterThan(0);
    expect(connections).toBeGreaterThan(0);
    await exitsCleanly(child);
    for (const s of sockets) s.destroy();
    server.close();
  });
});
