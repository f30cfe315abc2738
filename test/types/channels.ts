// Compile-time tests of the typed channel maps, checked by `tsc --noEmit -p test/types` in `npm test`.
// Every `@ts-expect-error` line is a misuse that must stay a compile error; the build fails when one compiles.
import {
  IpcError,
  IpcMain,
  IpcRenderer,
  ipcMain,
  ipcRenderer,
  typed,
  type IpcErrorCode,
  type IpcMainEvent,
  type Peer,
} from 'ipcwire';

interface Channels {
  sum(a: number, b: number): number;
  config(key: string): { value: string } | null;
  log(line: string, level?: 'info' | 'warn'): void;
  progress(done: number, total: number): void;
  fetchPage(url: string): Promise<string>;
}

declare function expectType<T>(value: T): void;
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;
declare function assertEqual<T extends true>(): void;

async function renderer(r: IpcRenderer<Channels>) {
  r.send('log', 'hello');
  r.send('log', 'hello', 'warn');
  // @ts-expect-error unknown channel
  r.send('lgo', 'hello');
  // @ts-expect-error wrong argument type
  r.send('log', 42);
  // @ts-expect-error wrong enum member
  r.send('log', 'x', 'error');
  // @ts-expect-error missing argument
  r.send('progress', 1);

  const n = await r.invoke('sum', 1, 2);
  assertEqual<Equal<typeof n, number>>();
  // @ts-expect-error wrong return type
  const s: string = await r.invoke('sum', 1, 2);
  // @ts-expect-error wrong argument
  r.invoke('sum', 1, '2');
  // @ts-expect-error unknown channel
  r.invoke('summ', 1, 2);
  const page = await r.invokeWith({ timeout: 100 }, 'fetchPage', 'https://x');
  assertEqual<Equal<typeof page, string>>(); // a handler's promise is awaited
  // @ts-expect-error wrong argument
  r.invokeWith({ signal: new AbortController().signal }, 'fetchPage', 1);

  const cfg = r.sendSync('config', 'theme');
  assertEqual<Equal<typeof cfg, { value: string } | null>>();
  // @ts-expect-error wrong return type
  const cfgN: number = r.sendSync('config', 'theme');
  // @ts-expect-error wrong argument
  r.sendSyncWith({ timeout: 10 }, 'config', 1);

  r.on('progress', (event, done, total) => {
    expectType<number>(done);
    expectType<number>(total);
    expectType<IpcRenderer<Channels>>(event.sender);
  });
  // @ts-expect-error wrong listener argument type
  r.on('progress', (_event, done: string) => {});
  // @ts-expect-error unknown channel
  r.on('progres', () => {});
  const stop = r.subscribe('log', (_e, line) => expectType<string>(line));
  expectType<() => void>(stop);

  r.handle('sum', (event, a, b) => {
    expectType<AbortSignal>(event.signal);
    return a + b;
  });
  r.handle('fetchPage', async (_e, url) => url);
  // @ts-expect-error wrong return type
  r.handle('sum', () => 'three');
  // @ts-expect-error wrong parameter type
  r.handle('sum', (_e, a: string) => 1);
  // @ts-expect-error unknown channel
  r.removeHandler('nope');
}

function main(m: IpcMain<Channels>, peer: Peer<Channels>) {
  m.on('config', (event, key) => {
    expectType<string>(key);
    event.returnValue = { value: key };
    event.returnValue = null;
    // @ts-expect-error wrong returnValue type
    event.returnValue = 'dark';
    // @ts-expect-error typo
    event.retrunValue = { value: key };
    event.reply('progress', 1, 2);
    // @ts-expect-error wrong reply arguments
    event.reply('progress', '1', 2);
    // @ts-expect-error unknown reply channel
    event.reply('progess', 1, 2);
  });
  m.on('log', (_event, line, level) => {
    expectType<string>(line);
    expectType<'info' | 'warn' | undefined>(level);
  });
  // @ts-expect-error unknown channel
  m.on('lgo', () => {});
  m.handle('sum', (event, a, b) => {
    expectType<number>(event.processId);
    expectType<AbortSignal>(event.signal);
    return a + b;
  });
  m.handle('config', async () => null);
  // @ts-expect-error wrong return type
  m.handle('config', () => 42);
  // @ts-expect-error wrong return type (async)
  m.handle('sum', async () => '3');

  peer.send('progress', 1, 10);
  // @ts-expect-error wrong arguments
  peer.send('progress', 1);
  peer.invoke('sum', 1, 2).then((v) => expectType<number>(v));
  // @ts-expect-error wrong return type
  peer.invoke('sum', 1, 2).then((v: string) => v);
  // @ts-expect-error unknown channel
  peer.invokeWith({ timeout: 5 }, 'sub', 1, 2);
  m.broadcast('progress', 1, 2);
  // @ts-expect-error wrong broadcast arguments
  m.broadcast('progress', 'a');
  for (const p of m.peers) expectType<Peer<Channels>>(p);
  m.peers.get(1)?.send('log', 'x');
  const stop = m.subscribe('log', (_e, line) => expectType<string>(line));
  stop();
}

// The singletons and untyped instances stay Electron-compatible: any string channel, any value.
async function untyped(plain: IpcRenderer) {
  const v = await ipcRenderer.invoke('anything', 1, 'two', { three: 3 });
  assertEqual<Equal<typeof v, any>>();
  ipcRenderer.send('whatever', Symbol.iterator, null);
  const r = ipcRenderer.sendSync('x');
  assertEqual<Equal<typeof r, any>>();
  ipcRenderer.on('any', (_event, ...args) => expectType<any[]>(args));
  plain.handle('h', (_e, a, b) => a + b);
  ipcMain.on('ch', (event: IpcMainEvent, x) => {
    event.returnValue = x;
    event.reply('other', 1, 2, 3);
  });
  ipcMain.handle('ch', async () => ({ anything: true }));
  ipcMain.on(Symbol.for('events'), () => {}); // still an EventEmitter
  for (const p of ipcMain.peers) await p.invoke('ch', 1);
}

// A typed view of the singletons.
async function views() {
  const r = typed<Channels>(ipcRenderer);
  const n = await r.invoke('sum', 1, 2);
  assertEqual<Equal<typeof n, number>>();
  // @ts-expect-error unknown channel on the typed view
  r.invoke('nope');
  const m = typed<Channels>(ipcMain);
  // @ts-expect-error wrong handler return type on the typed view
  m.handle('sum', () => 'x');
}

// Exact error types.
function errors(e: unknown) {
  if (e instanceof IpcError) {
    expectType<IpcErrorCode>(e.code);
    if (e.code === 'ERR_IPC_TIMEOUT') return;
    // @ts-expect-error not a documented code
    if (e.code === 'ERR_IPC_TIMEOUTT') return;
  }
}

// Internal members are not part of the public types.
function internals(m: IpcMain, peer: Peer) {
  // @ts-expect-error internal
  m._handlers;
  // @ts-expect-error internal
  peer.link;
  // @ts-expect-error internal
  m._invokeTimeout;
}

void renderer;
void main;
void untyped;
void views;
void errors;
void internals;
