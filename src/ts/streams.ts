/**
 * Streams over invoke: a handler may return an AsyncIterable or a web ReadableStream, and invoke arguments may be
 * streams too. The producing side pulls one chunk at a time from its source and sends it as a STREAM frame once the
 * consuming side has granted credit for it (STREAM_CTRL frames carry the credit and the consumer's cancel); the
 * consumer sees an {@link IpcStream}. Credit is a window of chunks and bytes: the producer never has more than that
 * in flight, so a slow consumer bounds both sides' memory, and it waits while the connection's write queue is long,
 * yielding between chunks, so the frames of other calls interleave with a large stream's.
 *
 * Frames (id = the stream id, allocated by the producer; ids of the two directions are separate spaces):
 *   STREAM       producer → consumer: [0, chunk] (large byte arrays as BLOB frames before it) | [1] end | [2, error]
 *   STREAM_CTRL  consumer → producer: [0, consumedChunks, consumedBytes, windowChunks, windowBytes] | [1] cancel
 */
import { Kind, FRAME_HEADER_BYTES } from './native';
import { decode, disposeHandles, encodeValue, fromWireError, isHandleValue, StreamRef, toWireError, type Encoded, type WireError } from './codec';
import { abortError, makeError } from './errors';

/** How much a stream's producer may send ahead of what its consumer has read. */
export interface StreamWindow {
  /** Chunks in flight at most (default 32). */
  chunks?: number;
  /** Bytes in flight at most, frame headers included (default 4 MiB); one chunk larger than this still goes alone. */
  bytes?: number;
}

/** The default window of a stream's consumer. */
export const DEFAULT_STREAM_WINDOW: Readonly<Required<StreamWindow>> = Object.freeze({ chunks: 32, bytes: 4 * 1024 * 1024 });

/**
 * The producer waits while the connection has more than this queued for the kernel, so a small call made
 * meanwhile waits behind at most one chunk of a stream (measured with 1 MiB chunks: a small invoke's p99 during
 * the stream was about half of what a 1 MiB threshold gave, at the same throughput). Small chunks of one turn
 * still go out in one batch.
 */
const STREAM_QUEUE_HIGH = 64 * 1024;
/** A producer yields to the event loop after this many bytes or chunks (so other frames go in between). */
const YIELD_BYTES = 256 * 1024;
const YIELD_CHUNKS = 128;

/** The chunk type of a stream result type (`AsyncIterable<T>` or `ReadableStream<T>`). */
export type StreamChunk<R> = R extends AsyncIterable<infer T> ? T : R extends ReadableStream<infer T> ? T : never;

/** What `await invoke(...)` resolves to: a stream result's chunks as an array, any other result as it is. */
export type Collected<R> = R extends AsyncIterable<infer T> ? T[] : R extends ReadableStream<infer T> ? T[] : R;

/**
 * What `invoke` returns: a Promise of the whole result (a stream's chunks as an array) that is also async
 * iterable: `for await (const chunk of ipcRenderer.invoke('tokens'))` reads a streamed result chunk by chunk, with
 * flow control; `break` cancels it on both sides. Iterating a result that is not a stream rejects with
 * ERR_IPC_NOT_A_STREAM.
 */
export interface InvokeCall<R> extends Promise<Collected<R>> {
  [Symbol.asyncIterator](): AsyncIterator<StreamChunk<R>>;
}

/** Whether a value is something ipcwire sends as a stream (a web ReadableStream or any AsyncIterable). */
export function isStreamSource(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  // A net.Socket is async iterable too, but travels as the OS handle it is.
  if (isHandleValue(value)) return false;
  if (typeof ReadableStream !== 'undefined' && value instanceof ReadableStream) return true;
  return typeof (value as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function';
}

function checkWindow(w: StreamWindow | undefined, name: string): Required<StreamWindow> {
  if (w === undefined) return DEFAULT_STREAM_WINDOW;
  if (typeof w !== 'object' || w === null) {
    throw Object.assign(new TypeError(`The "${name}" option must be an object { chunks, bytes }`), { code: 'ERR_INVALID_ARG_TYPE' });
  }
  const out = { ...DEFAULT_STREAM_WINDOW };
  for (const key of ['chunks', 'bytes'] as const) {
    const v = w[key];
    if (v === undefined) continue;
    if (!Number.isInteger(v) || v < 1 || v > 0xffffffff) {
      throw Object.assign(new RangeError(`The "${name}.${key}" option must be an integer from 1 to 4294967295. Received ${String(v)}`),
        { code: 'ERR_OUT_OF_RANGE' });
    }
    out[key] = v;
  }
  return out;
}

/** Validates a `streamWindow` option. */
export function streamWindowOption(w: StreamWindow | undefined, name = 'streamWindow'): Required<StreamWindow> {
  return checkWindow(w, name);
}

/** What the hub needs from its connection. */
export interface StreamTransport {
  writeStreamFrame(kind: Kind, id: number, encoded: Encoded): void;
  readonly bufferedAmount: number;
  /** Resolves at the next 'drain' or close. */
  whenDrained(): Promise<void>;
  /** The error streams get once the connection is gone. */
  deadError(): Error;
  isClosed: boolean;
  updateRef(): void;
  fail(err: Error): void;
}

interface Source {
  next(): Promise<IteratorResult<unknown>>;
  close(): void;
}

function openSource(value: unknown): Source {
  if (typeof ReadableStream !== 'undefined' && value instanceof ReadableStream) {
    const reader = value.getReader();
    return {
      next: () => reader.read() as Promise<IteratorResult<unknown>>,
      close: () => {
        reader.cancel().catch(() => {});
      },
    };
  }
  const it = (value as AsyncIterable<unknown>)[Symbol.asyncIterator]();
  return {
    next: () => it.next(),
    close: () => {
      // An async generator runs its `finally` blocks (after a pending next() settles).
      if (typeof it.return === 'function') Promise.resolve().then(() => it.return!()).catch(() => {});
    },
  };
}

/** Constant frames, copied out of the encoder's shared buffer. */
function constant(value: unknown[]): Encoded {
  const e = encodeValue(value, 'stream');
  return { payload: Buffer.from(e.payload), blobs: e.blobs };
}
const END: Encoded = constant([1]);
const CANCEL: Encoded = constant([1]);

/** One stream this side produces. */
class OutStream {
  private source: Source | null = null;
  private cancelled = false;
  private sentChunks = 0;
  private sentBytes = 0;
  private ackChunks = 0;
  private ackBytes = 0;
  private window: Required<StreamWindow> = { chunks: 0, bytes: 0 };
  private wake: (() => void) | null = null;
  private sinceYield = 0;
  private chunksSinceYield = 0;

  constructor(
    private readonly hub: StreamHub,
    readonly id: number,
    private readonly value: unknown,
  ) {}

  start(): void {
    try {
      this.source = openSource(this.value);
    } catch (err) {
      this.finishWithError(err);
      return;
    }
    void this.pump();
  }

  private canSend(): boolean {
    if (this.window.chunks === 0) return false; // no credit yet
    if (this.sentChunks === this.ackChunks) return true;
    return this.sentChunks - this.ackChunks < this.window.chunks && this.sentBytes - this.ackBytes < this.window.bytes;
  }

  private wait(): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
    });
  }

  private async pump(): Promise<void> {
    const t = this.hub.transport;
    try {
      for (;;) {
        while (!this.cancelled && !this.canSend()) await this.wait();
        while (!this.cancelled && !t.isClosed && t.bufferedAmount > STREAM_QUEUE_HIGH) await t.whenDrained();
        if (this.cancelled || t.isClosed) return;
        const r = await this.source!.next();
        if (this.cancelled || t.isClosed) return;
        if (r.done) {
          t.writeStreamFrame(Kind.STREAM, this.id, END);
          this.finish();
          return;
        }
        const encoded = encodeValue([0, r.value], 'stream chunk', true);
        t.writeStreamFrame(Kind.STREAM, this.id, encoded);
        const n = chunkBytes(encoded);
        this.sentChunks++;
        this.sentBytes += n;
        // Let other frames of this connection (small calls, other streams) go between chunks: a turn of the
        // event loop every YIELD_BYTES or YIELD_CHUNKS (small chunks of one turn are written in one batch).
        this.sinceYield += n;
        if (this.sinceYield >= YIELD_BYTES || ++this.chunksSinceYield >= YIELD_CHUNKS) {
          this.sinceYield = 0;
          this.chunksSinceYield = 0;
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
      }
    } catch (err) {
      if (!this.cancelled && !t.isClosed) this.finishWithError(err);
    }
  }

  private finishWithError(err: unknown): void {
    this.sendError(err);
    // A chunk that could not be encoded leaves the source suspended: close it (harmless when it threw itself).
    this.cancel();
  }

  private finish(): void {
    this.cancelled = true;
    this.hub.dropOut(this.id);
  }

  /** Credit from the consumer (cumulative counts; the window it wants). */
  credit(chunks: number, bytes: number, windowChunks: number, windowBytes: number): void {
    if (chunks > this.ackChunks) this.ackChunks = chunks;
    if (bytes > this.ackBytes) this.ackBytes = bytes;
    this.window = { chunks: windowChunks, bytes: windowBytes };
    this.kick();
  }

  private kick(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  /** The call carrying it was abandoned: the consumer's reads fail with `err`, the source is closed. */
  abort(err: Error): void {
    if (this.cancelled) return;
    this.sendError(err);
    this.cancel();
  }

  /** Tells the consumer the stream failed with `err` (its reads reject with it), while the connection lasts. */
  private sendError(err: unknown): void {
    const t = this.hub.transport;
    if (t.isClosed) return;
    try {
      t.writeStreamFrame(Kind.STREAM, this.id, encodeValue([2, toWireError(err)], 'error'));
    } catch {
      // the connection went meanwhile: the consumer learns it from the disconnect
    }
  }

  /** The consumer cancelled, the call was abandoned or the connection went: the source is closed (its finally runs). */
  cancel(closeSource = true): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.hub.dropOut(this.id);
    this.kick();
    if (closeSource) {
      if (this.source) this.source.close();
      else closeUnopened(this.value);
    }
  }
}

/** Closes a source that was never started (its message could not be sent). */
function closeUnopened(value: unknown): void {
  try {
    openSource(value).close();
  } catch {
    // nothing to close
  }
}

function chunkBytes(encoded: Encoded): number {
  let n = encoded.payload.length + FRAME_HEADER_BYTES;
  for (const blob of encoded.blobs) n += blob.length + FRAME_HEADER_BYTES;
  return n;
}

/**
 * A stream the peer sends: an argument a handler received, or a streamed invoke result. Read it once, with
 * `for await`, through {@link IpcStream.readable}, or whole with {@link IpcStream.all}; `cancel()` (or `break`)
 * ends it on both sides. A producer's error rejects the read with the remote error; a disconnect with
 * ERR_IPC_DISCONNECTED.
 */
export class IpcStream<T = unknown> implements AsyncIterable<T> {
  private readonly queue: Array<[unknown, number]> = [];
  private done = false;
  private error: Error | null = null;
  private waiter: { resolve: (r: IteratorResult<T>) => void; reject: (err: Error) => void } | null = null;
  private started = false;
  private consumedChunks = 0;
  private consumedBytes = 0;
  private grantedChunks = 0;
  private grantedBytes = 0;
  private receivedChunks = 0;
  private disarmSignal: (() => void) | null = null;
  /** @internal What a producer's error is reported as ("Error invoking remote method 'ch': …"). */
  _label = 'stream';

  /** @internal */
  constructor(
    private readonly hub: StreamHub,
    private readonly id: number,
    private readonly window: Required<StreamWindow>,
  ) {
    this.grant();
  }

  /** Chunks received and not read yet (at most the window's chunks). */
  get bufferedChunks(): number {
    return this.queue.length;
  }

  private grant(): void {
    this.grantedChunks = this.consumedChunks;
    this.grantedBytes = this.consumedBytes;
    this.hub.sendCtrl(this.id, encodeValue([0, this.consumedChunks, this.consumedBytes, this.window.chunks, this.window.bytes], 'credit'));
  }

  /** @internal A STREAM frame for this stream. */
  _push(body: unknown[], bytes: number): void {
    if (this.done) return;
    switch (body[0]) {
      case 0:
        if (++this.receivedChunks - this.grantedChunks > this.window.chunks) {
          throw makeError('ERR_IPC_BAD_FRAME', `Stream ${this.id} sent more chunks than its window (${this.window.chunks})`);
        }
        if (this.waiter) {
          this.consumed(bytes);
          const w = this.waiter;
          this.waiter = null;
          this.hub.transport.updateRef();
          w.resolve({ value: body[1] as T, done: false });
        } else this.queue.push([body[1], bytes]);
        return;
      case 1:
        this.end(null);
        return;
      case 2: {
        const wire = (body[1] ?? {}) as WireError;
        const text = typeof wire.text === 'string' ? wire.text : 'Error';
        this.end(fromWireError(wire, `${this._label}: ${text}`));
        return;
      }
      default:
        throw makeError('ERR_IPC_BAD_FRAME', 'Malformed stream frame');
    }
  }

  private consumed(bytes: number): void {
    this.consumedChunks++;
    this.consumedBytes += bytes;
    // Chunks read after the producer ended need no credit.
    if (!this.done && this.consumedChunks - this.grantedChunks >= Math.ceil(this.window.chunks / 2) ||
      this.consumedBytes - this.grantedBytes >= Math.ceil(this.window.bytes / 2)) this.grant();
  }

  /** @internal Ends the stream: cleanly (null) or with an error; read chunks still come first. */
  _end(err: Error | null): void {
    this.end(err);
  }

  private end(err: Error | null): void {
    if (this.done) return;
    this.done = true;
    this.error = err;
    this.hub.dropIn(this.id);
    this.disarmSignal?.();
    this.disarmSignal = null;
    const w = this.waiter;
    if (!w) return;
    this.waiter = null;
    this.hub.transport.updateRef();
    if (err) w.reject(err);
    else w.resolve({ value: undefined, done: true });
  }

  /** @internal Whether a read is waiting (it keeps the connection, and so the process, alive). */
  get _reading(): boolean {
    return this.waiter !== null;
  }

  /** @internal Ends the stream when `signal` aborts (an invokeWith signal). */
  _bindSignal(signal: AbortSignal, what: string): void {
    if (this.done) return;
    if (signal.aborted) {
      this.cancel(abortError(signal, what));
      return;
    }
    const onAbort = () => this.cancel(abortError(signal, what));
    signal.addEventListener('abort', onAbort, { once: true });
    this.disarmSignal = () => signal.removeEventListener('abort', onAbort);
  }

  private next(): Promise<IteratorResult<T>> {
    const item = this.queue.shift();
    if (item) {
      this.consumed(item[1]);
      return Promise.resolve({ value: item[0] as T, done: false });
    }
    if (this.done) return this.error ? Promise.reject(this.error) : Promise.resolve({ value: undefined, done: true });
    if (this.waiter) return Promise.reject(new TypeError('IpcStream: next() called while another read is pending'));
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
      this.hub.transport.updateRef();
    });
  }

  /**
   * Stops reading: the producer's source is closed (its `finally` runs) and what was buffered is dropped. A read
   * pending meanwhile rejects with `reason` when it is an Error (an AbortError from a signal), else it ends.
   */
  cancel(reason?: unknown): void {
    if (this.done) return;
    // Chunks dropped unread give back what they hold (OS handles).
    for (const [value] of this.queue) disposeHandles(value);
    this.queue.length = 0;
    this.hub.sendCtrl(this.id, CANCEL);
    this.end(reason instanceof Error ? reason : null);
    // A read after a plain cancel ends the iteration; after an abort it keeps rejecting with the abort.
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.started) throw makeError('ERR_IPC_STREAM_CONSUMED', 'This stream is already being read (a stream can be read once)');
    this.started = true;
    return {
      next: () => this.next(),
      return: (value?: unknown) => {
        this.cancel();
        return Promise.resolve({ value: value as T, done: true });
      },
    };
  }

  /** @internal Whether anything started reading it. */
  get _started(): boolean {
    return this.started;
  }

  /** What `console.log` and the inspector's previews show: the stream's state, not its connection. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    const state = this.done ? (this.error ? 'errored' : 'ended') : this.started ? 'reading' : 'unread';
    return `IpcStream { id: ${this.id}, ${state}, buffered: ${this.queue.length} }`;
  }

  /** Reads the whole stream into an array. */
  async all(): Promise<T[]> {
    const out: T[] = [];
    for await (const chunk of this) out.push(chunk);
    return out;
  }

  /** A web ReadableStream reading this stream (pull-based: it reads ahead no more than the window). */
  get readable(): ReadableStream<T> {
    const it = this[Symbol.asyncIterator]();
    return new ReadableStream<T>({
      pull: async (controller) => {
        const r = await it.next();
        if (r.done) controller.close();
        else controller.enqueue(r.value);
      },
      cancel: (reason) => {
        this.cancel(reason);
      },
    }, { highWaterMark: 0 });
  }
}

/** Every stream of one connection, both directions. */
export class StreamHub {
  private nextId = 1;
  private readonly outs = new Map<number, OutStream>();
  private readonly ins = new Map<number, IpcStream>();

  constructor(readonly transport: StreamTransport) {}

  /** Replaces top-level stream values in `values` by references; returns the producers to start once sent. */
  prepare(values: unknown[]): OutStream[] | null {
    let outs: OutStream[] | null = null;
    for (let i = 0; i < values.length; i++) {
      if (!isStreamSource(values[i])) continue;
      const id = this.nextId;
      this.nextId = id >= 0xffffffff ? 1 : id + 1;
      (outs ??= []).push(new OutStream(this, id, values[i]));
      values[i] = new StreamRef(id);
    }
    return outs;
  }

  /** The message carrying their references was sent: they produce now. */
  start(outs: OutStream[] | null): void {
    if (!outs) return;
    for (const out of outs) this.outs.set(out.id, out);
    for (const out of outs) out.start();
    this.transport.updateRef();
  }

  /** Their message was not sent, or the call was abandoned: close their sources. */
  discard(outs: OutStream[] | null): void {
    if (outs) for (const out of outs) out.cancel();
  }

  /** A consumer for a reference being decoded. */
  consumer(id: number, window: Required<StreamWindow>): IpcStream {
    if (this.ins.has(id)) throw new TypeError(`Stream ${id} referenced twice`);
    const s = new IpcStream(this, id, window);
    this.ins.set(id, s);
    return s;
  }

  sendCtrl(id: number, encoded: Encoded): void {
    if (this.transport.isClosed) return;
    try {
      this.transport.writeStreamFrame(Kind.STREAM_CTRL, id, encoded);
    } catch {
      // closed meanwhile: the producer learns it from the disconnect
    }
  }

  dropOut(id: number): void {
    if (this.outs.delete(id)) this.transport.updateRef();
  }

  dropIn(id: number): void {
    this.ins.delete(id);
  }

  /** A STREAM frame from the peer (for a stream it produces). */
  onStream(id: number, src: Buffer, start: number, end: number, blobs: Buffer[] | null): void {
    const s = this.ins.get(id);
    // Cancelled here while it was in flight: not even decoded, so that nothing it carries (descriptors) is adopted.
    if (!s) return;
    const body = decode(src, blobs, start, end);
    if (!Array.isArray(body)) throw makeError('ERR_IPC_BAD_FRAME', 'Malformed stream frame');
    let bytes = end - start + FRAME_HEADER_BYTES;
    if (blobs) for (const blob of blobs) bytes += blob.length + FRAME_HEADER_BYTES;
    s._push(body, bytes);
  }

  /** A STREAM_CTRL frame from the peer (about a stream this side produces). */
  onCtrl(id: number, src: Buffer, start: number, end: number): void {
    const body = decode(src, null, start, end);
    if (!Array.isArray(body)) throw makeError('ERR_IPC_BAD_FRAME', 'Malformed stream control frame');
    const out = this.outs.get(id);
    if (body[0] === 0) {
      const [, chunks, bytes, wc, wb] = body as number[];
      if (![chunks, bytes, wc, wb].every((n) => Number.isSafeInteger(n) && n >= 0) || wc < 1 || wb < 1) {
        throw makeError('ERR_IPC_BAD_FRAME', 'Malformed stream credit');
      }
      out?.credit(chunks, bytes, wc, wb);
    } else if (body[0] === 1) {
      out?.cancel();
    } else {
      throw makeError('ERR_IPC_BAD_FRAME', 'Malformed stream control frame');
    }
  }

  /** Whether open streams keep the connection referenced: producing ones, and consumers with a read pending. */
  wantsRef(): boolean {
    if (this.outs.size > 0) return true;
    for (const s of this.ins.values()) if (s._reading) return true;
    return false;
  }

  /** The connection is gone: consumers error with `err`, producers' sources are closed. */
  closeAll(err: Error): void {
    for (const out of [...this.outs.values()]) out.cancel();
    for (const s of [...this.ins.values()]) s._end(err);
  }

  counts(): { streamsIn: number; streamsOut: number } {
    return { streamsIn: this.ins.size, streamsOut: this.outs.size };
  }
}

/** How an invoke's streamed result is consumed: iterated (`stream`), or read whole (`collected`) when it arrived first. */
export interface InvokeMode {
  stream: boolean;
  collected: boolean;
}

/**
 * Wraps an invoke's promise: awaiting it gives the whole result (a stream's chunks as an array); iterating it
 * (before it settles, as `for await` does at once) reads a streamed result chunk by chunk instead.
 */
export function invokeCall(channel: string, result: Promise<unknown>, mode: InvokeMode): InvokeCall<unknown> {
  const call = result as InvokeCall<any>;
  call[Symbol.asyncIterator] = () => {
    if (!mode.collected) mode.stream = true;
    let inner: AsyncIterator<unknown> | null = null;
    const open = async (): Promise<AsyncIterator<unknown>> => {
      if (inner) return inner;
      const value = await result;
      if (value instanceof IpcStream) inner = value[Symbol.asyncIterator]();
      else if (mode.collected && Array.isArray(value)) inner = value[Symbol.iterator]() as unknown as AsyncIterator<unknown>;
      else {
        throw makeError('ERR_IPC_NOT_A_STREAM', `invoke('${channel}') did not answer with a stream; await it instead of iterating it`);
      }
      return inner;
    };
    return {
      next: async () => (await open()).next(),
      return: async (value?: unknown) => {
        if (inner) await inner.return?.(value);
        else result.then((v) => { if (v instanceof IpcStream) v.cancel(); }, () => {});
        return { value, done: true };
      },
    };
  };
  return call;
}

/** The InvokeCall of a call refused before anything was sent. */
export function rejectedCall(err: unknown): InvokeCall<any> {
  return invokeCall('', Promise.reject(err), { stream: false, collected: false });
}
