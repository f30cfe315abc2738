'use strict';
// What a run measures: the systems, the payloads each one takes, and the iteration budgets of a full run
// (about 7 minutes on the 2-core VM) and of the smoke run (well under a minute, for CI).

/** Latency rows: key → label. Every system runs the same payloads unless `skip` says otherwise. */
const SYSTEMS = [
  { id: 'c', label: 'C ping-pong (limit)', kind: 'c' },
  // The large-payload limit (Linux): the same ping-pong through a memfd pool mapped by both processes, only
  // {block, length} on the socket (bench/native/shm_pingpong.cc), the design ipcwire's shared-memory path follows.
  { id: 'c-shm', label: 'C shm ping-pong (limit, large)', kind: 'c', binary: 'shm_pingpong',
    skip: { small: 'large payloads only', '1KiB': 'large payloads only' } },
  // Diagnostic row, latency only: the addon's blocking call() against an addon echo server, without the
  // TypeScript layer or msgpack (bench/native/call-rtt.js, owned with the addon). Not used by any target.
  { id: 'addon', label: 'ipcwire addon only (call())', kind: 'addon', script: '../native/call-rtt.js', latencyOnly: true,
    skip: { '1MiB': 'diagnostic row: small payloads only', '16MiB': 'diagnostic row: small payloads only' } },
  // tpReleaseApi: one-way again with main calling releaseShared() on each Buffer it counted (large payloads only).
  { id: 'ipcwire', kind: 'node', script: 'ipcwire.js', apis: ['sendSync', 'invoke', 'send+reply'], tpApi: 'send', tpReleaseApi: 'send, releaseShared' },
  { id: 'net', label: 'node:net + msgpackr', kind: 'node', script: 'net-msgpackr.js' },
  { id: 'fork-json', label: "fork IPC 'json'", kind: 'node', script: 'fork-ipc.js', extra: { serialization: 'json' } },
  { id: 'fork-advanced', label: "fork IPC 'advanced'", kind: 'node', script: 'fork-ipc.js', extra: { serialization: 'advanced' } },
  {
    id: 'node-ipc',
    label: 'node-ipc 9.2.1',
    kind: 'node',
    script: 'node-ipc.js',
    skip: {
      '16MiB':
        "node-ipc appends every read to one string and re-scans it (quadratic): a single 16 MiB round trip took 58 s here",
    },
  },
  { id: 'synckit', label: 'synckit 0.12.3 (same-process worker, sync)', kind: 'node', script: 'synckit.js' },
];

/** Row label of a system (and ipcwire API). */
/** Scale attribution rows: addon-only callers against ipcwire's main, and against an addon-only main. */
const RAW_TO_MAIN = 'addon call() → ipcwire main';
const RAW_TO_RAW = 'addon call() → addon echo';

function label(sys, api) {
  if (sys.id === 'ipcwire') return `ipcwire ${api}`;
  return sys.label;
}

const FULL = {
  name: 'full',
  // The host is shared: twice in one afternoon 2 of 3 repeats were disturbed, and a median of 3 followed them.
  // 4, not 5, since the full run grew to 657 s with this session's rows (a repeat costs ~70 s).
  repeats: 4,
  latencyPayloads: ['small', '1KiB', '1MiB', '16MiB'],
  latencyEveryRepeat: ['small', '1KiB'], // large payloads: first repeat only (each costs seconds)
  pinnedSkip: ['16MiB'], // 16 MiB latency unpinned only: pinning matters for small messages, and it saves a minute
  latency: {
    small: { warmup: 5000, warmupMs: 600, iters: 5000, capMs: 1000 },
    '1KiB': { warmup: 5000, warmupMs: 600, iters: 5000, capMs: 1000 },
    '1MiB': { warmup: 10, iters: 300, capMs: 1000 },
    '16MiB': { warmup: 2, iters: 20, capMs: 1500, minIters: 2 },
  },
  throughputPayloads: ['small', '1MiB', '16MiB'],
  throughputEveryRepeat: ['small', '1MiB'],
  throughput: {
    small: { targetMs: 700, minMsgs: 1000, maxMsgs: 5e6 },
    '1MiB': { targetMs: 700, minMsgs: 4, maxMsgs: 20000 },
    '16MiB': { targetMs: 700, minMsgs: 2, maxMsgs: 2000 },
  },
  // C program: [iters, warmup]; it has no time cap, so counts are sized to ~0.2–0.5 s each.
  cLatency: { small: [20000, 1000], '1KiB': [20000, 1000], '1MiB': [1000, 20], '16MiB': [40, 3] },
  addonMaxIters: 20000, // call-rtt.js: iterations as the C program (its warm-up is min(1000, iters))
  cThroughput: { small: [500000, 20000], '1MiB': [3000, 50], '16MiB': [150, 4] },
  scale: { counts: [1, 10, 100], attribution: [1, 10, 100], durationMs: 2000, timeoutMs: 120000, warmupCalls: 300, paced: { counts: [1, 100], rate: 20, durationMs: 3000 } },
  // Idle connections: `idle` silent renderer connections opened by `holders` processes, `active` renderers
  // calling sendSync back to back for scale.durationMs before and while they are connected (~40 s).
  idle: { idle: 10000, holders: 4, active: 10 },
  // Big object graphs: {list} of N small objects, medians of `reps` rounds (the 1 M case alone is ~10 s a round).
  graph: { sizes: [100000, 1000000], reps: 2 },
  // Streams (bench/systems/streams.js): 1 GiB of 1 MiB chunks, 2 alternating rounds against send; a slow reader for 10 s.
  streams: { totalMiB: 1024, chunkMiB: 1, rounds: 2, slowSeconds: 10, pings: 2000 },
  // MessagePorts (bench/systems/ports.js): port vs invoke round trips, 3 alternating rounds; main's CPU over a burst.
  ports: { iters: 20000, rounds: 3, messages: 100000 },
  // Zero copy (bench/systems/zerocopy.js): invoke with a 64 MiB allocShared Buffer against a small invoke, alternating
  // rounds (~3 s).
  zerocopy: { mib: 64, rounds: 3, small: 2000, big: 30 },
  driverTimeoutMs: 240000,
};

const SMOKE = {
  name: 'smoke',
  repeats: 1,
  latencyPayloads: ['small', '1KiB', '1MiB'],
  latencyEveryRepeat: ['small', '1KiB', '1MiB'],
  latency: {
    small: { warmup: 20, iters: 200, capMs: 100, minIters: 3 },
    '1KiB': { warmup: 20, iters: 200, capMs: 100, minIters: 3 },
    '1MiB': { warmup: 1, iters: 5, capMs: 100, minIters: 1 },
  },
  throughputPayloads: ['small', '1MiB'],
  throughputEveryRepeat: ['small', '1MiB'],
  throughput: {
    small: { targetMs: 100, minMsgs: 100, maxMsgs: 20000 },
    '1MiB': { targetMs: 100, minMsgs: 2, maxMsgs: 100 },
  },
  cLatency: { small: [500, 50], '1KiB': [500, 50], '1MiB': [20, 2] },
  cThroughput: { small: [10000, 500], '1MiB': [50, 2] },
  scale: { counts: [1, 10, 100], attribution: [10], durationMs: 200, timeoutMs: 90000, warmupCalls: 20 },
  idle: { idle: 200, holders: 2, active: 3 },
  graph: { sizes: [20000], reps: 1 },
  streams: { totalMiB: 32, chunkMiB: 1, rounds: 1, slowSeconds: 2, pings: 100 },
  ports: { iters: 200, rounds: 1, messages: 2000 },
  zerocopy: { mib: 64, rounds: 1, small: 100, big: 3 },
  driverTimeoutMs: 100000,
};

module.exports = { SYSTEMS, label, FULL, SMOKE, RAW_TO_MAIN, RAW_TO_RAW };
