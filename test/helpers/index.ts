/**
 * Shared test harness: real processes, real sockets. Everything a test opens through these helpers (IpcMain
 * instances, in-process renderers, raw sockets, child processes, socket paths, temp dirs) is tracked, and
 * `useHarness()` checks after each test that nothing was left behind: no child process still running, no
 * socket file on disk, no extra file descriptor or active handle in this process.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once as eventsOnce, type EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, beforeEach, expect } from 'vitest';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const FIXTURES = path.join(ROOT, 'test', 'fixtures');
export const RUN_CJS = path.join(FIXTURES, 'run.cjs');
export const RUN_MJS = path.join(FIXTURES, 'run.mjs');

/** Node's own `require`, rooted in the package: `require('ipcwire')` self-references the built package. */
export const nodeRequire = createRequire(path.join(ROOT, 'test', 'helpers', 'index.cjs'));

// The public API as README.md designs it. Typed loosely on purpose: the tests are written from the contract.
/* eslint-disable @typescript-eslint/no-explicit-any */
export type Any = any;

/** The built package, loaded the way users load it (`require('ipcwire')`). */
export function ipcwire(): Any {
  return nodeRequire('ipcwire');
}

/** Values shared by the test process and the fixtures (test/fixtures/values.cjs). */
export function values(): Any {
  return nodeRequire(path.join(FIXTURES, 'values.cjs'));
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function sha256(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Serialisable view of an error (the same shape the fixtures print). */
export function errInfo(e: Any): Any {
  if (!e || typeof e !== 'object') return { thrown: String(e) };
  return {
    isError: e instanceof Error,
    name: e.name,
    message: e.message,
    code: e.code,
    syscall: e.syscall,
    address: e.address,
    path: e.path,
    string: String(e),
  };
}

/** Run `fn`, expect it to throw synchronously, return the thrown value. */
export function catchSync(fn: () => unknown): Any {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a synchronous throw, got none');
}

/** Await `p`, expect it to reject, return the reason. */
export async function catchAsync(p: Promise<unknown> | unknown): Promise<Any> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection, got a fulfilment');
}

/** Wait for one event (liveness bound only, never a speed assertion). Resolves with the event's arguments. */
export async function once(emitter: EventEmitter, event: string, timeoutMs = 10_000): Promise<Any[]> {
  return eventsOnce(emitter, event, { signal: AbortSignal.timeout(timeoutMs) }).catch((e) => {
    throw new Error(`event '${event}' did not come within ${timeoutMs} ms (${(e as Error).message})`);
  });
}

/** Poll `pred` until it holds (liveness bound only). */
export async function waitUntil(pred: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`${what} did not hold within ${timeoutMs} ms`);
    await sleep(5);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Tracked resources
// ---------------------------------------------------------------------------------------------------------

let counter = 0;
const socketPaths = new Set<string>();
const tmpDirs = new Set<string>();
const mains = new Set<Any>();
const localRenderers = new Set<Any>();
const rawSockets = new Set<net.Socket | net.Server>();
const children = new Set<Child>();

/** A short, unique socket path for this test (unix socket paths must stay < 108 bytes). */
export function sockPath(): string {
  const p = path.join(os.tmpdir(), `iwt-${process.pid}-${++counter}.sock`);
  socketPaths.add(p);
  return p;
}

/** Track a socket path created some other way (bare names, private addresses) so that its removal is checked. */
export function trackPath(p: string): string {
  socketPaths.add(p);
  return p;
}

/** A fresh temp directory, removed after the test. */
export function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `iwtd-${process.pid}-`));
  tmpDirs.add(d);
  return d;
}

/** `new IpcMain(options)` listening on a fresh socket path; closed after the test if the test did not. */
export function makeMain(options?: Any, address: string = sockPath()): Any {
  const { IpcMain } = ipcwire();
  const main = new IpcMain(options);
  mains.add(main);
  main.listen(address);
  trackPath(main.address);
  return main;
}

/** Track an IpcMain made by the test itself. */
export function trackMain<T>(main: T): T {
  mains.add(main);
  return main;
}

/** An in-process `IpcRenderer` (async traffic only: a sendSync to a main in this thread would deadlock). */
export function localRenderer(address: string, options?: Any): Any {
  const { IpcRenderer } = ipcwire();
  const r = new IpcRenderer(options);
  localRenderers.add(r);
  r.connect(address);
  return r;
}

/** Track a raw `node:net` socket or server; destroyed after the test. */
export function trackRaw<T extends net.Socket | net.Server>(s: T): T {
  rawSockets.add(s);
  return s;
}

// ---------------------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------------------

export interface ChildMessage {
  tag: string;
  data: Any;
  at: number;
}

export interface Child {
  proc: ChildProcess;
  pid: number;
  stdout: string;
  stderr: string;
  messages: ChildMessage[];
  /** Resolves when the process exited and its stdio closed. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  done: boolean;
  /** First message with this tag (already received or future). Rejects if the child ends first. */
  msg(tag: string, timeoutMs?: number): Promise<Any>;
  /** The full message record (with its arrival time in this process). */
  record(tag: string, timeoutMs?: number): Promise<ChildMessage>;
  /** Plain stdout lines (without the `@@` messages). */
  lines(): string[];
  /** Write one line to the child's stdin. */
  send(line: string): void;
  kill(signal?: NodeJS.Signals): void;
  /** Wait for exit (liveness bound); rejects with the child's stderr if it does not end in time. */
  waitExit(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface SpawnOptions {
  /** Main's address, passed as IPCWIRE_ADDRESS (what `fork` does). Omitted: no address in the environment. */
  address?: string;
  env?: Record<string, string>;
  execArgv?: string[];
  cwd?: string;
  uid?: number;
  gid?: number;
  /** Run through `sh -c` with this prefix (e.g. `ulimit -n 64;`). */
  shellPrefix?: string;
  /** Run `run.cjs` / `run.mjs` from this directory instead of the checkout's test/fixtures (see `otherUserTree`). */
  fixtures?: string;
}

function baseEnv(opts: SpawnOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.IPCWIRE_ADDRESS;
  delete env.NODE_OPTIONS;
  for (const k of Object.keys(env)) if (k.startsWith('VITEST')) delete env[k];
  if (opts.address !== undefined) env.IPCWIRE_ADDRESS = opts.address;
  Object.assign(env, opts.env ?? {});
  return env;
}

/** Spawn `node <args>` tracked by the harness. Lines printed as `@@{"tag":…,"data":…}` become messages. */
export function spawnNode(args: string[], opts: SpawnOptions = {}): Child {
  const argv = [...(opts.execArgv ?? []), ...args];
  const proc = opts.shellPrefix
    ? spawn('/bin/sh', ['-c', `${opts.shellPrefix} exec "$0" "$@"`, process.execPath, ...argv], {
        env: baseEnv(opts),
        cwd: opts.cwd ?? ROOT,
        stdio: ['pipe', 'pipe', 'pipe'],
      })
    : spawn(process.execPath, argv, {
        env: baseEnv(opts),
        cwd: opts.cwd ?? ROOT,
        stdio: ['pipe', 'pipe', 'pipe'],
        uid: opts.uid,
        gid: opts.gid,
      });
  const waiters: Array<() => void> = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  let pending = '';
  const child: Child = {
    proc,
    pid: proc.pid as number,
    stdout: '',
    stderr: '',
    messages: [],
    done: false,
    exited: undefined as Any,
    async record(tag, timeoutMs = 20_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const m = child.messages.find((x) => x.tag === tag);
        if (m) return m;
        if (child.done) {
          throw new Error(
            `child ${child.pid} ended without message '${tag}'\n--- messages: ${JSON.stringify(child.messages)}` +
              `\n--- stdout:\n${child.stdout}\n--- stderr:\n${child.stderr}`,
          );
        }
        const left = end - Date.now();
        if (left <= 0) {
          throw new Error(
            `no message '${tag}' from child ${child.pid} within ${timeoutMs} ms\n--- messages: ` +
              `${JSON.stringify(child.messages)}\n--- stderr:\n${child.stderr}`,
          );
        }
        await new Promise<void>((r) => {
          const t = setTimeout(r, Math.min(left, 200));
          waiters.push(() => {
            clearTimeout(t);
            r();
          });
        });
      }
    },
    async msg(tag, timeoutMs) {
      return (await child.record(tag, timeoutMs)).data;
    },
    lines() {
      return child.stdout.split('\n').filter((l) => l.length > 0);
    },
    send(line) {
      proc.stdin!.write(line + '\n');
    },
    kill(signal = 'SIGKILL') {
      try {
        proc.kill(signal);
      } catch {
        /* already gone */
      }
    },
    async waitExit(timeoutMs = 20_000) {
      let t: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, rej) => {
        t = setTimeout(
          () =>
            rej(
              new Error(
                `child ${child.pid} did not exit within ${timeoutMs} ms\n--- messages: ` +
                  `${JSON.stringify(child.messages)}\n--- stdout:\n${child.stdout}\n--- stderr:\n${child.stderr}`,
              ),
            ),
          timeoutMs,
        );
      });
      try {
        return await Promise.race([child.exited, timeout]);
      } finally {
        clearTimeout(t);
      }
    },
  };
  proc.stdout!.setEncoding('utf8');
  proc.stderr!.setEncoding('utf8');
  proc.stdout!.on('data', (s: string) => {
    pending += s;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (line.startsWith('@@')) {
        const m = JSON.parse(line.slice(2));
        child.messages.push({ tag: m.tag, data: m.data, at: Date.now() });
      } else {
        child.stdout += line + '\n';
      }
    }
    wake();
  });
  proc.stderr!.on('data', (s: string) => {
    child.stderr += s;
  });
  proc.stdin!.on('error', () => {
    /* the child may exit before reading stdin */
  });
  child.exited = new Promise((resolve) => {
    proc.on('close', (code, signal) => {
      if (pending) child.stdout += pending;
      child.done = true;
      wake();
      resolve({ code, signal });
    });
  });
  children.add(child);
  childrenSeen.add(child.pid);
  return child;
}

/**
 * Run `code` in a fresh Node process (test/fixtures/run.cjs or run.mjs): the body of an async function with
 * `require`, `ipcwire` (the package), `out(tag, data)`, `errInfo(e)`, `sleep`, `sha256`, `values`,
 * `readLine()` and `waitMs` in scope.
 */
export function runNode(code: string, opts: SpawnOptions & { esm?: boolean } = {}): Child {
  const dir = opts.fixtures ?? FIXTURES;
  return spawnNode([path.join(dir, opts.esm ? 'run.mjs' : 'run.cjs'), code], opts);
}

/**
 * Whether this system has a Linux-style /proc. Where it has not (macOS), the helpers below ask `ps` instead,
 * and file descriptors are counted in /dev/fd.
 */
export const HAS_PROC = fs.existsSync('/proc/self/stat');

/** `ps` output lines for the given options (macOS and the BSDs; also works on Linux with procps). */
function ps(args: string[]): string[] {
  try {
    return execFileSync('ps', args, { encoding: 'utf8' }).split('\n').map((l) => l.trim()).filter(Boolean);
  } catch {
    return []; // ps exits 1 when no process matched
  }
}

/** Direct children of `pid` (/proc, else `ps`). */
export function childPids(pid: number, useProc = HAS_PROC): number[] {
  const out: number[] = [];
  if (!useProc) {
    for (const line of ps(['-A', '-o', 'pid=,ppid='])) {
      const [child, parent] = line.split(/\s+/).map(Number);
      if (parent === pid) out.push(child);
    }
    return out;
  }
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Whether `pid` runs and is not a zombie (/proc, else `process.kill(pid, 0)` and `ps` for the state). */
export function isAlive(pid: number, useProc = HAS_PROC): boolean {
  if (!useProc) {
    try {
      process.kill(pid, 0);
    } catch (e) {
      // EPERM: it exists but belongs to another user.
      if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
    }
    const state = ps(['-o', 'stat=', '-p', String(pid)])[0];
    return state !== undefined && !state.startsWith('Z');
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Threads of process `pid` (/proc, else `ps -M` on macOS, `ps -T` elsewhere: one line per thread). */
export function threadCount(pid: number, useProc = HAS_PROC): number {
  if (useProc) return fs.readdirSync(`/proc/${pid}/task`).length;
  const lines = process.platform === 'darwin' ? ps(['-M', '-p', String(pid)]) : ps(['-T', '-p', String(pid)]);
  return lines.length - 1; // the header
}

/** This process's open file descriptors (/proc/self/fd, else /dev/fd), with what they point to where known. */
export function openFds(): string[] {
  const dir = HAS_PROC ? '/proc/self/fd' : '/dev/fd';
  return fs.readdirSync(dir).map((f) => {
    try {
      return `${f}->${fs.readlinkSync(`${dir}/${f}`)}`;
    } catch {
      return f;
    }
  });
}

/** Stray processes not spawned by the harness (grandchildren) that a test must see gone. */
const strayPids = new Set<number>();
export function trackPid(pid: number): void {
  strayPids.add(pid);
  childrenSeen.add(pid);
}

// ---------------------------------------------------------------------------------------------------------
// The per-test leak check
// ---------------------------------------------------------------------------------------------------------

/** The per-user directory of bare names and private addresses (README: listen). */
function runtimeDirPath(): string {
  const base = process.env.XDG_RUNTIME_DIR;
  return base && path.isAbsolute(base) ? path.join(base, 'ipcwire') : path.join(os.tmpdir(), `ipcwire-${process.getuid!()}`);
}

function listRuntimeDir(): string[] {
  try {
    return fs.readdirSync(runtimeDirPath());
  } catch {
    return [];
  }
}

/** Pids of every process spawned by the harness in the current test (and of their direct children). */
const childrenSeen = new Set<number>();

function fdCount(): number {
  return fs.readdirSync(HAS_PROC ? '/proc/self/fd' : '/dev/fd').length;
}

function resources(): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) m.set(r, (m.get(r) ?? 0) + 1);
  return m;
}

function extraResources(base: Map<string, number>): string[] {
  const extra: string[] = [];
  for (const [k, n] of resources()) {
    // Timers belong to vitest itself (test timeouts); the harness's own are cleared before the check.
    if (k === 'Timeout' || k === 'Immediate') continue;
    const b = base.get(k) ?? 0;
    if (n > b) extra.push(`${k} x${n - b}`);
  }
  return extra;
}

/**
 * Register the leak checks for every test of the calling file. Children get a grace period to exit by
 * themselves after every main is closed (a renderer must end when its main goes away); one still running
 * after that is a leak (and is killed).
 */
export function useHarness(): void {
  let baseFds = 0;
  let baseRes = new Map<string, number>();
  beforeAll(() => {
    ipcwire(); // load the addon once, outside any measurement
  });
  let baseRuntime = new Set<string>();
  beforeEach(() => {
    baseFds = fdCount();
    baseRes = resources();
    baseRuntime = new Set(listRuntimeDir());
  });
  afterEach(async () => {
    const leaks: string[] = [];
    for (const r of localRenderers) {
      try {
        r.close();
      } catch (e) {
        leaks.push(`renderer.close() threw: ${String(e)}`);
      }
    }
    localRenderers.clear();
    for (const s of rawSockets) {
      if (s instanceof net.Server) s.close();
      else s.destroy();
    }
    rawSockets.clear();
    for (const m of mains) {
      try {
        m.close();
      } catch (e) {
        leaks.push(`main.close() threw: ${String(e)}`);
      }
    }
    mains.clear();
    const living = [...children].filter((c) => !c.done);
    if (living.length) {
      const end = Date.now() + 3000;
      while (living.some((c) => !c.done) && Date.now() < end) await sleep(10);
      for (const c of living) {
        if (!c.done) {
          leaks.push(`child ${c.pid} still running after the test (killed): stderr=${c.stderr.slice(-500)}`);
          c.kill('SIGKILL');
          await c.exited;
        }
      }
    }
    children.clear();
    for (const pid of strayPids) {
      const end = Date.now() + 3000;
      while (isAlive(pid) && Date.now() < end) await sleep(10);
      if (isAlive(pid)) {
        leaks.push(`process ${pid} still running after the test (killed)`);
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    strayPids.clear();
    // Fresh private addresses (listen() with no address, fork()) are named <pid>-<random>.sock in the per-user
    // directory; one left by this process or by a child of this test is a leak.
    const ours = new Set([process.pid, ...childrenSeen]);
    childrenSeen.clear();
    for (const f of listRuntimeDir()) {
      const pid = Number(f.split('-')[0]);
      if (ours.has(pid) && !baseRuntime.has(f)) {
        leaks.push(`private socket file left behind: ${path.join(runtimeDirPath(), f)}`);
        fs.rmSync(path.join(runtimeDirPath(), f), { force: true });
      }
    }
    for (const p of socketPaths) {
      if (fs.existsSync(p)) {
        leaks.push(`socket file left behind: ${p}`);
        fs.rmSync(p, { force: true });
      }
      // A killed main leaves its lock file as well as its socket; close() removing both is tested where it
      // matters (claim.test.ts), so here it is only tidied away.
      fs.rmSync(`${p}.lock`, { force: true });
    }
    socketPaths.clear();
    for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
    tmpDirs.clear();
    // Handles close in their close callbacks: give the loop a moment before counting.
    const end = Date.now() + 2000;
    while ((fdCount() > baseFds || extraResources(baseRes).length) && Date.now() < end) await sleep(10);
    if (fdCount() > baseFds) {
      leaks.push(`file descriptors: ${baseFds} before, ${fdCount()} after (${openFds().join(', ')})`);
    }
    const extra = extraResources(baseRes);
    if (extra.length) leaks.push(`active handles left: ${extra.join(', ')}`);
    expect(leaks, 'the test left something behind').toEqual([]);
  });
}

/** Wait for `child` to exit (liveness bound) and expect exit code `code`, showing its stderr otherwise. */
export async function exitsCleanly(child: Child, timeoutMs?: number, code = 0): Promise<void> {
  const r = await child.waitExit(timeoutMs);
  expect({ code: r.code, signal: r.signal }, `child ${child.pid} exit status; stderr:\n${child.stderr}`).toEqual({
    code,
    signal: null,
  });
}

/** `p`, or a rejection naming `what` if it does not settle within `ms` (a liveness bound, not a speed check). */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, rej) => (t = setTimeout(() => rej(new Error(`${what} did not happen within ${ms} ms`)), ms))),
    ]);
  } finally {
    clearTimeout(t);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Running a child as another user
// ---------------------------------------------------------------------------------------------------------

/** The unprivileged user (`nobody`) a root test process starts a child as. */
export const OTHER_UID = 65534;

/** What a child started as {@link OTHER_UID} runs: the package and the fixtures, copied where that user can read. */
export interface OtherUserTree {
  /** Pass as `runNode(code, { fixtures, uid, gid, cwd, env })`. */
  fixtures: string;
  cwd: string;
  uid: number;
  gid: number;
  env: Record<string, string>;
}

/**
 * A copy of the built package (package.json, dist/, the addon, its runtime dependencies) and of the fixtures
 * in a world-readable temp directory, so that a child running as another user can load them wherever this
 * checkout lives (a private 0700 clone included). Returns the reason instead when this process cannot start a
 * child as another user (not root, or the kernel refuses the switch, or that user cannot run node): the caller
 * skips the test with it.
 */
export function otherUserTree(): OtherUserTree | string {
  if (typeof process.getuid !== 'function') return 'no Unix users on this platform';
  const uid = process.getuid();
  if (uid !== 0) return `running as uid ${uid}, not root: cannot start a process as another user`;
  const dir = tmpDir();
  fs.chmodSync(dir, 0o755);
  const copy = (from: string, to = from) => {
    const src = path.isAbsolute(from) ? from : path.join(ROOT, from);
    fs.cpSync(src, path.join(dir, to), { recursive: true, dereference: true });
  };
  copy('package.json');
  copy('dist');
  const env: Record<string, string> = {};
  const override = process.env.IPCWIRE_NATIVE_PATH;
  if (override) {
    copy(override, 'ipcwire.node');
    env.IPCWIRE_NATIVE_PATH = path.join(dir, 'ipcwire.node');
  } else {
    for (const d of ['build/Release/ipcwire.node', 'prebuilds']) if (fs.existsSync(path.join(ROOT, d))) copy(d);
  }
  for (const dep of ['msgpackr', 'node-gyp-build']) {
    copy(path.join('node_modules', dep));
  }
  for (const f of ['run.cjs', 'run.mjs', 'lib.cjs', 'values.cjs']) copy(path.join(FIXTURES, f), path.join('test', 'fixtures', f));
  const chmod = (p: string) => {
    const st = fs.statSync(p);
    fs.chmodSync(p, st.mode | (st.isDirectory() ? 0o755 : 0o444));
    if (st.isDirectory()) for (const e of fs.readdirSync(p)) chmod(path.join(p, e));
  };
  chmod(dir);
  const probe = spawnSync(process.execPath, ['-e', 'require("ipcwire")'], {
    cwd: dir,
    uid: OTHER_UID,
    gid: OTHER_UID,
    env: { ...process.env, ...env, NODE_OPTIONS: '' },
    encoding: 'utf8',
  });
  if (probe.error || probe.status !== 0) {
    const why = probe.error?.message ?? probe.stderr.split('\n').find((l) => /Error/.test(l)) ?? `exit status ${probe.status}`;
    return `cannot run node as uid ${OTHER_UID} here: ${why}`;
  }
  return { fixtures: path.join(dir, 'test', 'fixtures'), cwd: dir, uid: OTHER_UID, gid: OTHER_UID, env };
}

/** Skips the running test with `reason`, also printed, since vitest's summary shows only that a test was skipped. */
export function skipBecause(ctx: { skip(note?: string): never; task: { name: string } }, reason: string): never {
  console.warn(`skipped: ${ctx.task.name}: ${reason}`);
  return ctx.skip(reason);
}
