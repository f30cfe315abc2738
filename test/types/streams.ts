// Compile-time tests of streamed invoke results and stream arguments, checked by `tsc --noEmit -p test/types`.
import { IpcMain, IpcRenderer, IpcStream, type InvokeCall, type StreamWindow } from 'ipcwire';

interface Channels {
  tokens(prompt: string): AsyncIterable<string>;
  bytes(): ReadableStream<Uint8Array>;
  upload(name: string, body: AsyncIterable<Buffer>): number;
  sum(a: number, b: number): number;
}

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;
declare function assertEqual<T extends true>(): void;

async function renderer(r: IpcRenderer<Channels>) {
  // Awaited whole: the chunks as an array.
  const all = await r.invoke('tokens', 'hi');
  assertEqual<Equal<typeof all, string[]>>();
  const bytes = await r.invoke('bytes');
  assertEqual<Equal<typeof bytes, Uint8Array[]>>();
  // Iterated: chunk by chunk.
  for await (const tok of r.invoke('tokens', 'hi')) {
    assertEqual<Equal<typeof tok, string>>();
  }
  for await (const tok of r.invokeWith({ streamWindow: { chunks: 4, bytes: 1 << 20 } }, 'tokens', 'hi')) {
    assertEqual<Equal<typeof tok, string>>();
  }
  const n = await r.invoke('upload', 'f', (async function* () { yield Buffer.from('x'); })());
  assertEqual<Equal<typeof n, number>>();
  // A plain result stays what it was.
  const s = await r.invoke('sum', 1, 2);
  assertEqual<Equal<typeof s, number>>();
  const call: InvokeCall<AsyncIterable<string>> = r.invoke('tokens', 'x');
  const w: StreamWindow = { chunks: 1 };
  // @ts-expect-error the window is numbers
  r.invokeWith({ streamWindow: { chunks: '4' } }, 'tokens', 'x');
  return [call, w];
}

function main(m: IpcMain<Channels>) {
  m.handle('tokens', async function* (_e, prompt) {
    yield prompt;
  });
  m.handle('bytes', () => new ReadableStream<Uint8Array>());
  m.handle('upload', async (_e, _name, body) => {
    let n = 0;
    for await (const chunk of body) n += chunk.length;
    return n;
  });
  // @ts-expect-error a stream of numbers is not a stream of strings
  m.handle('tokens', async function* () { yield 1; });
  // Received stream arguments are IpcStreams (untyped map).
  new IpcMain().handle('any', async (_e, s: IpcStream<number>) => {
    const chunks = await s.all();
    const rs: ReadableStream<number> = s.readable;
    s.cancel();
    return [chunks, rs, s.bufferedChunks];
  });
}

export { renderer, main };
