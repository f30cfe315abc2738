/**
 * One live connection seen from JS, on either side: frame parsing, outgoing `invoke`s awaiting replies,
 * answering incoming `invoke`s, liveness (ref/unref) and the exit-time flush. Main's `Peer` and the renderer's
 * `IpcRenderer` each own one per connection and receive the frames this class does not handle itself.
 */
import { FRAME_HEADER_BYTES, Kind, native, type NativeConnection, type NativeShmMapping, type NativeShmPool } from './native';
import {
  decode, decodeMessage, encodeMessage, encodeSmallReply, encodeValue, fromWireError, setInboundHandles, setStreamDecoder, toWireError,
  type Encoded, type WireError,
} from './codec';
import {
  DEFAULT_STREAM_WINDOW, invokeCall, IpcStream, isStreamSource, StreamHub, streamWindowOption,
  type InvokeCall, type InvokeMode, type StreamTransport, type StreamWindow,
} from './streams';
import { AbortError, abortError, codeOf, disconnectedError, makeError, positiveInt } from './errors';
import type { InvokeHandler } from './handlers';
import { carrierClosed, encodeWithPorts, linkCarrier, receiveState, setReceivingCarrier, settleMoves, type MessagePortMain } from './ports';
import {
  chDisconnect, chError, chHandleEnd, chHandleStart, chInvokeEnd, chInvokeStart, chSend, outgoingTraceparent,
  type IpcTraceMessage,
} from './trace';

/** Largest frame body accepted by default (bytes). */
export const DEFAULT_MAX_MESSAGE_SIZE = 512 * 1024 * 1024;
/**
 * Default bound on the bytes queued for one peer that are not yet taken by the kernel (maxQueuedBytes). A
 * message is refused, and the connection closed with ERR_IPC_PEER_NOT_READING, when more than this is already
 * queued: what one connection can hold is this plus one message. A producer that honours `bufferedAmount` and
 * 'drain' never gets near it.
 */
export const DEFAULT_MAX_QUEUED_BYTES = 256 * 1024 * 1024;
/** The largest frame body the u32 length prefix can declare. */
export const MAX_FRAME_BODY = 0xffffffff;

/**
 * Shared memory for large byte arrays, per connection and direction: byte arrays of at least `threshold` bytes
 * are copied into the sender's pool (`poolSize` bytes of data in a segment mapped by both processes) and only their
 * place crosses the socket. See "Large payloads" in the README.
 */
export interface SharedMemoryOptions {
  /** Smallest byte array sent through the pool. Default 64 KiB (smaller ones always ride in the message). */
  threshold?: number;
  /** Bytes of this side's pool per connection (its upper bound of shared memory). Default 64 MiB. */
  poolSize?: number;
}

/** Default smallest byte array sent through shared memory (measured: below it the socket is as fast). */
export const DEFAULT_SHM_THRESHOLD = 64 * 1024;
/** Default size of one side's shared-memory pool per connection. */
export const DEFAULT_SHM_POOL_SIZE = 64 * 1024 * 1024;
/** Segment numbers: one pool per side for messages, and main's pool for sendSync replies. */
const SEG_MESSAGES = 0;
const SEG_SYNC_REPLIES = 1;
/**
 * In a sendSync reply only: the byte array lies in the receiver's own message pool (the return value holds a
 * view main received of it, echoed back), at the frame's offset; nothing was copied into main's pool.
 */
const SEG_YOURS = 2;
/** sendSync reply byte arrays up to this size are copied out of shared memory (see syncReplyParts). */
const SYNC_REPLY_COPY_BYTES = 16 * 1024 * 1024;
/** Bytes of an SHM_BLOB payload: u32le segment, slot, offset, length. */
const SHM_BLOB_BYTES = 16;
/**
 * A segment starts with one page of per-block counters; its data area follows. The segment is made that much
 * larger than `poolSize`, so that the pool holds `poolSize` bytes of data: four 16 MiB arrays in the default
 * 64 MiB, not three.
 */
const SHM_HEADER_BYTES = 4096;

/** The payload of an SHM_BLOB frame. */
function shmBlobPayload(segment: number, slot: number, offset: number, length: number): Buffer {
  const p = Buffer.allocUnsafe(SHM_BLOB_BYTES);
  p.writeUInt32LE(segment, 0);
  p.writeUInt32LE(slot, 4);
  p.writeUInt32LE(offset, 8);
  p.writeUInt32LE(length, 12);
  return p;
}

/** Resolved shared-memory settings; null when off (`shm: false`, or the platform has none). */
export interface SharedMemoryConfig {
  threshold: number;
  poolSize: number;
}

/** Checks a user's `shm` option; null when it turns shared memory off. */
export function sharedMemoryConfig(option: boolean | SharedMemoryOptions | undefined): SharedMemoryConfig | null {
  if (option === false) return null;
  const opts = option === undefined || option === true ? {} : option;
  if (typeof opts !== 'object' || opts === null) {
    throw new TypeError(`The "shm" option must be false, true or { threshold, poolSize }. Received ${String(option)}`);
  }
  const threshold = positiveInt(opts.threshold, DEFAULT_SHM_THRESHOLD, 'shm.threshold');
  const poolSize = positiveInt(opts.poolSize, DEFAULT_SHM_POOL_SIZE, 'shm.poolSize', 0xffffffff);
  if (poolSize < 64 * 1024) {
    throw new RangeError(`The "shm.poolSize" option must be at least 65536. Received ${poolSize}`);
  }
  return { threshold, poolSize };
}

/** Bytes of the body header (kind + id) counted in a frame body. */
const BODY_HEADER = FRAME_HEADER_BYTES - 4;
/** Most descriptors one HANDLES frame carries (Linux's limit per sendmsg); more go on several frames. */
const MAX_HANDLES_PER_FRAME = 253;
/**
 * Bytes a message's byte arrays put in the shared-memory pool from which it is written at once instead of at the
 * end of the turn (see writeEncoded). One write costs a few microseconds; copying 1 MiB into the pool, ~60.
 */
const POOL_FLUSH_BYTES = 1 << 20;

/** Size of a connection's write batch, and the largest frame (payload bytes) that is batched. */
const BATCH_BYTES = 64 * 1024;
const BATCH_FRAME_MAX = 4 * 1024;

/** A reply body: `[0, value]` or `[1, wireError]`. */
export type ReplyBody = [0, unknown] | [1, WireError];

/** What a link hands to its owner. */
export interface LinkOwner<E> {
  /**
   * Frames the link does not handle itself (MESSAGE, SYNC, SYNC_REPLY, HELLO, WELCOME), with the BLOB frames that
   * preceded them (their large byte arrays). The payload is `src[start, end)`, decoded in place.
   */
  onFrame(kind: number, id: number, src: Buffer, start: number, end: number, blobs: Buffer[] | null): void;
  onClose(err: Error | null): void;
  onDrain(): void;
  /** Whether listeners or handlers want this connection to keep the process alive. */
  wantsRef(): boolean;
  /** Set when main refused this peer in the handshake: its calls are answered with this error, never run. */
  refusal?(): Error | null;
  /** Main with an inspector: sees each incoming invoke's arguments (for its previews). */
  inspectArgs?(channel: string, args: unknown[], bytes: number): void;
  /** Handlers answering the peer's `invoke`, and the event they receive. */
  readonly handlers: { get(channel: string): InvokeHandler<E> | undefined };
  /** The event for one incoming invoke; its `signal` and `traceparent` come from `call`. */
  invokeEvent(call: IncomingCall): E;
  /** For tracing: which end this is, and the renderer's id in main (null before the handshake). */
  readonly side: 'main' | 'renderer';
  peerId(): number | null;
}

/**
 * Gives a Buffer received through shared memory back to the sender's pool now, instead of when V8 collects it.
 * Its ArrayBuffer is detached: it and every view over the same bytes (subarrays, a Uint8Array made from it) read
 * as empty from then on, so nothing can see the block after the sender has reused it. Returns true for such a
 * Buffer; anything else (an ordinary or copied Buffer, one that came through the socket, one from allocShared) is
 * left as it is and gives false. Call it once nothing needs the bytes: a Buffer passed to `send` or `invoke` has been copied
 * or referenced by the time the call returns.
 */
export function releaseShared(bytes: ArrayBufferView | ArrayBuffer): boolean {
  if (!ArrayBuffer.isView(bytes) && !(bytes instanceof ArrayBuffer)) {
    const got = bytes === null ? 'null' : typeof bytes;
    throw Object.assign(new TypeError(`The "bytes" argument must be a Buffer, TypedArray, DataView or ArrayBuffer. Received ${got}`),
      { code: 'ERR_INVALID_ARG_TYPE' });
  }
  return native().releaseShared(bytes);
}

/** Bytes a message takes on the wire: its frame and those of its out-of-band byte arrays. */
export function wireBytes(encoded: Encoded): number {
  return framedBytes(encoded.payload.length, encoded.blobs);
}

/** The same for a received message: its payload spans `start`..`end`, its byte arrays came as `blobs`. */
export function receivedBytes(start: number, end: number, blobs: readonly Uint8Array[] | null): number {
  return framedBytes(end - start, blobs);
}

function framedBytes(payloadBytes: number, blobs: readonly Uint8Array[] | null): number {
  let n = payloadBytes + FRAME_HEADER_BYTES;
  if (blobs) for (const blob of blobs) n += blob.length + FRAME_HEADER_BYTES;
  return n;
}

interface PendingInvoke {
  channel: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  /** Removes the abort listener and clears the timer of a call made with a signal or a timeout. */
  disarm: (() => void) | null;
  /** Set when the start was traced (someone subscribed): its record and time, for the end's duration. */
  trace: IpcTraceMessage | null;
  t0: number;
  /** Streams among the arguments, producing for the handler. */
  outs: ReturnType<StreamHub['prepare']>;
  /** For a streamed result: iterated or read whole, the window its reader grants, the call's signal. */
  mode: InvokeMode;
  window: Required<StreamWindow>;
  signal: AbortSignal | undefined;
}

/**
 * An invoke this side is answering. Its AbortSignal is made only when the handler reads `event.signal` (most
 * never do, and an AbortController per call would cost every invoke); it aborts when the caller cancels (its
 * own signal or timeout) or the connection goes.
 */
export class IncomingCall {
  private controller: AbortController | null = null;
  private reason: unknown = undefined;
  aborted = false;
  /** When its start was traced: what to publish its end with. */
  trace: IpcTraceMessage | null = null;
  t0 = 0;
  /** Streams among its arguments. */
  argStreams: IpcStream[] | null = null;

  /** Cancels the argument streams the handler did not start reading (`all`: every one not finished). */
  cancelArgStreams(unstartedOnly: boolean): void {
    if (!this.argStreams) return;
    for (const s of this.argStreams) if (!unstartedOnly || !s._started) s.cancel();
    this.argStreams = null;
  }

  constructor(readonly traceparent: string | undefined) {}

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}

const liveLinks = new Set<Link<unknown>>();
let exitHookInstalled = false;
/** Set once the process emits 'exit': from then on every write is flushed before it returns. */
let exiting = false;
/** How long the exit-time flush may block per connection (ms). */
const EXIT_FLUSH_MS = 5000;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Whatever `send` accepted is delivered even if the process exits right after (process.exit included):
  // the 'exit' event runs synchronously before the process goes, and flush() blocks until the kernel has it.
  // Writes made by 'exit' listeners that run after this one are flushed as they are made (see write()).
  process.on('exit', () => {
    exiting = true;
    for (const link of liveLinks) link.flushAtExit();
  });
}

export class Link<E> implements StreamTransport {
  private closed = false;
  /** end() was called: nothing more is accepted (the addon still flushes what was). */
  private ending = false;
  private closeError: Error | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, PendingInvoke>();
  /** Incoming invokes whose handler has not settled yet, by call id: what a CANCEL frame aborts. */
  private readonly answering = new Map<number, IncomingCall>();
  private refd = false;
  /** BLOB frames received for the next message, and their total size (bounded by maxFrameSize). */
  private inboundBlobs: Buffer[] | null = null;
  /** Descriptors received (HANDLES frames) for the next message; ours until something adopts them. */
  private inboundHandles: number[] | null = null;
  private inboundBlobBytes = 0;
  /** Largest body the peer accepts; learned from the handshake. */
  peerMaxFrame = DEFAULT_MAX_MESSAGE_SIZE;
  /**
   * The peer (a renderer) said in its hello that its blocking call takes a reply's large byte arrays as BLOB
   * frames before the reply; otherwise a SYNC_REPLY carries them inline.
   */
  peerTakesSyncBlobs = false;
  /** Streams in invoke arguments and results, both directions. */
  readonly streams: StreamHub = new StreamHub(this);
  /** The window this side grants to streams it receives as invoke arguments. */
  streamWindow: Required<StreamWindow> = DEFAULT_STREAM_WINDOW;
  /** The window of the streams met by the decode under way, and their consumers (see streamDecoder). */
  private decodeWindow: Required<StreamWindow> = DEFAULT_STREAM_WINDOW;
  private decodedStreams: IpcStream[] | null = null;
  /** Makes the consumer of a stream reference in an invoke or its reply being decoded. */
  private readonly streamDecoder = (sid: number): unknown => {
    const s = this.streams.consumer(sid, this.decodeWindow);
    (this.decodedStreams ??= []).push(s);
    return s;
  };

  private takeDecodedStreams(): IpcStream[] | null {
    const made = this.decodedStreams;
    this.decodedStreams = null;
    return made;
  }

  /** Stream producers waiting for the write queue to drain. */
  private drainWaiters: Array<() => void> = [];
  /** Both sides said `shm` in the handshake: large byte arrays may go through this side's pools (the peer maps them). */
  peerShm = false;
  /** The peer (a renderer) takes sendSync replies through shared memory (`shmSync` in its hello). */
  peerShmSync = false;
  /**
   * The peer (a renderer) takes, in a sendSync reply, a reference to bytes of its own message pool in place of
   * a copy of them (`shmEcho` in its hello): what an echo of a view main received becomes.
   */
  peerShmEcho = false;
  /**
   * The peer (a renderer) holds the pool blocks of its invoke arguments until it has read the answer, and takes in
   * that answer a reference to bytes of them in place of a copy (`shmEchoInvoke` in its hello).
   */
  peerShmEchoInvoke = false;
  /** This side does what `peerShmEchoInvoke` says of the peer (a renderer that said `shmEchoInvoke`). */
  pinsInvokeArgs = false;
  /**
   * Blocks of this side's pool held for each invoke sent, until its answer arrives (the peer answers even an invoke
   * abandoned here, see the CANCEL case of dispatch) or the connection ends.
   */
  private readonly invokePins = new Map<number, number[]>();
  /** For each invoke being answered: where its arguments' bytes lie in the peer's pool, as [start, end) pairs. */
  private readonly echoRanges = new Map<number, number[]>();
  /** This side's pools by segment number, each made on first use; `shmOutFailed` once making one failed (seccomp…). */
  private readonly shmOut: Array<NativeShmPool | null> = [null, null];
  private shmOutFailed = false;
  /** Byte arrays sent through the pool, and those of at least the threshold that fell back to the socket. */
  private shmSent = 0;
  private shmFellBack = 0;
  /** sendSync reply and invoke answer byte arrays sent back to the peer as references to its own pool (no copy). */
  private shmEchoed = 0;
  /** The peer's pools, mapped here, by segment number. */
  private readonly shmIn: Array<NativeShmMapping | null> = [null, null];
  /** This side's shared-memory settings, offered in the handshake; null when off or not available here. */
  readonly shm: SharedMemoryConfig | null;

  constructor(
    readonly conn: NativeConnection,
    private readonly owner: LinkOwner<E>,
    maxFrameSize: number,
    private readonly maxQueuedBytes: number = DEFAULT_MAX_QUEUED_BYTES,
    /** This side's shared-memory settings (null: off); offered in the handshake. */
    shm: SharedMemoryConfig | null = null,
  ) {
    // IPCWIRE_SHM=0 turns it off for the whole process (to compare, or where a sandbox forbids it).
    this.shm = shm && native().shmSupported && process.env.IPCWIRE_SHM !== '0' ? shm : null;
    conn.maxFrameSize = maxFrameSize;
    liveLinks.add(this as Link<unknown>);
    installExitHook();
    this.bufferedCell = conn.start(
      (chunks) => this.onChunks(chunks),
      (err) => this.onNativeClose(err),
      () => {
        this.batchedSinceDrain = false;
        this.drained();
      },
    );
  }

  private drained(): void {
    if (this.drainWaiters.length > 0) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
    }
    this.owner.onDrain();
  }

  /** Resolves at the next 'drain' (or when the connection closes). */
  whenDrained(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Writes a stream's frame (with its blobs); see streams.ts. */
  writeStreamFrame(kind: Kind, id: number, encoded: Encoded): void {
    this.writeEncoded(kind, id, encoded);
  }

  /** Closed, or ending (end() was called): either way it takes no more calls. */
  get isClosed(): boolean {
    return this.closed || this.ending;
  }

  get bufferedAmount(): number {
    if (this.closed) return 0;
    return (this.bufferedCell ? this.bufferedCell[0] : this.conn.bufferedAmount) + this.batchLen;
  }

  /** The addon's buffered byte count, readable without a call into it (see NativeConnection.start). */
  private readonly bufferedCell: Float64Array | undefined;

  /** A fresh call id (never 0, wraps at 2^32). */
  allocId(): number {
    const id = this.nextId;
    this.nextId = id >= 0xffffffff ? 1 : id + 1;
    return id;
  }

  /** Throws the error every call gets once the connection is gone (ERR_IPC_DISCONNECTED, or a refusal). */
  assertOpen(): void {
    if (this.closed || this.ending) throw this.deadError();
  }

  /**
   * A refusal in the handshake (ERR_IPC_PEER_REFUSED, ERR_IPC_PROTOCOL_VERSION) is what every later call
   * reports, since it says what to fix; any other end of the connection is ERR_IPC_DISCONNECTED.
   */
  deadError(): Error {
    const err = this.closeError;
    const code = codeOf(err);
    if (err && (code === 'ERR_IPC_PEER_REFUSED' || code === 'ERR_IPC_PROTOCOL_VERSION')) {
      return makeError(code, err.message);
    }
    return err ? disconnectedError(err.message) : disconnectedError();
  }

  /** Writes one frame; checks the size the peer accepts before anything is sent. */
  write(kind: Kind, id: number, payload: Uint8Array | null): void {
    this.assertOpen();
    this.checkSize(payload);
    this.checkQueue();
    this.writeFrame(kind, id, payload);
  }

  /**
   * Every frame goes out through here (callers have checked open and size). The first frame of a turn goes
   * straight to the addon, which writes it at once (lowest latency for a lone message); small frames that
   * follow in the same turn are appended to the batch, which reaches the addon in one call when the turn
   * ends (process.nextTick), when it is full, or before any frame that does not fit in it. A burst of small
   * sends thus costs one crossing into the addon and one write per 64 KiB instead of one per message. While
   * the process is exiting, everything is written and flushed at once.
   */
  private writeFrame(kind: Kind, id: number, payload: Uint8Array | null): void {
    const len = payload ? payload.length : 0;
    if (this.turnWritten && len <= BATCH_FRAME_MAX && kind !== Kind.SYNC_REPLY && !exiting) {
      this.addToBatch(kind, id, payload, len);
      return;
    }
    this.flushBatch();
    const buffered = this.conn.write(kind, id, payload);
    if (!this.turnWritten) {
      this.turnWritten = true;
      process.nextTick(this.endTurn);
    }
    if (exiting && buffered > 0) this.flushAtExit();
  }

  /** Small frames of this turn after the first, whole (headers included), waiting for one native write. */
  private batch: Buffer | null = null;
  private batchLen = 0;
  /** Whether a frame of the current turn has gone to the addon (later small ones are batched). */
  private turnWritten = false;
  /**
   * Batched bytes were counted in bufferedAmount since the last 'drain'. The addon emits 'drain' only when its
   * own queue empties after having held something; a batch the kernel takes whole never enters that queue, so
   * a producer that saw bufferedAmount > 0 and waits for 'drain' would wait for ever. The end of the turn
   * emits it instead when nothing is left buffered.
   */
  private batchedSinceDrain = false;
  private readonly endTurn = (): void => {
    this.turnWritten = false;
    if (this.closed) return;
    this.flushBatch();
    if (this.batchedSinceDrain && this.bufferedAmount === 0) {
      this.batchedSinceDrain = false;
      this.drained();
    }
  };

  private addToBatch(kind: Kind, id: number, payload: Uint8Array | null, len: number): void {
    const need = FRAME_HEADER_BYTES + len;
    if (this.batchLen + need > BATCH_BYTES) this.flushBatch();
    const buf = (this.batch ??= Buffer.allocUnsafeSlow(BATCH_BYTES));
    let off = this.batchLen;
    buf.writeUInt32LE(len + BODY_HEADER, off);
    buf[off + 4] = kind;
    buf.writeUInt32LE(id, off + 5);
    off += FRAME_HEADER_BYTES;
    if (len > 0) {
      if (len <= 32) for (let i = 0; i < len; i++) buf[off + i] = payload![i];
      else buf.set(payload!, off);
    }
    this.batchLen = off + len;
    this.batchedSinceDrain = true;
  }

  /** Hands the batch, if any, to the addon (which copies what the kernel does not take at once). */
  private flushBatch(): void {
    const n = this.batchLen;
    if (n === 0) return;
    this.batchLen = 0;
    try {
      this.conn.writeFrames(this.batch!.subarray(0, n));
    } catch (err) {
      // Closed meanwhile (natively, before onClose ran): what was batched is lost with the connection.
      // Anything else is a bug and must not silently eat messages.
      if (codeOf(err) !== 'ERR_IPC_DISCONNECTED') throw err;
    }
  }

  /** Writes a message's BLOB frames, then the message itself. */
  writeEncoded(kind: Kind, id: number, encoded: Encoded, pins: number[] | null = null, echoRanges: number[] | null = null): void {
    this.assertOpen();
    this.checkSize(encoded.payload, encoded.blobs);
    this.checkQueue();
    // A sendSync reply's byte arrays go through a pool of their own, announced (when new) right before the reply
    // that first uses it: the blocked caller sees only the frames right before its reply, and the messages' pool
    // may have been announced ahead of an earlier message that it has not processed yet.
    // Only to a renderer whose blocking call hands over the descriptors it holds (`shmSync` in its hello: Linux and
    // macOS); otherwise through the socket.
    const segment = kind !== Kind.SYNC_REPLY ? SEG_MESSAGES : this.peerShmSync ? SEG_SYNC_REPLIES : null;
    let pooled = 0;
    for (const blob of encoded.blobs) pooled += this.writeBlob(blob, segment, pins, echoRanges);
    // Right before the message (after its byte arrays, which may announce a shared-memory segment with a
    // descriptor of its own): the descriptors go natively, after whatever this turn batched so far.
    if (encoded.handles && encoded.handles.length > 0) this.writeHandles(encoded.handles);
    this.writeFrame(kind, id, encoded.payload);
    // A message whose bytes wait in the pool goes to the peer now rather than at the end of this turn: the blocks
    // come back only after the peer has read it, and a sender that copies several large ones in one turn would
    // otherwise find its pool full of blocks the peer has not even been told about, and fall back to the socket.
    if (pooled >= POOL_FLUSH_BYTES) this.flushBatch();
    encoded.sent?.();
  }

  /**
   * One large byte array of the next message: through the shared-memory pool when both sides have one and it
   * has room (one copy, or none for an allocShared Buffer), else as a BLOB frame.
   */
  private writeBlob(blob: Uint8Array, segment: number | null = SEG_MESSAGES, pins: number[] | null = null,
    echoRanges: number[] | null = null): number {
    if (echoRanges !== null && blob.byteLength >= this.shm!.threshold) {
      // An invoke answer holding bytes of the invoke's own arguments (a view main received, or part of one): the
      // renderer holds those blocks until it has read this answer, so their place is enough.
      const offset = this.shmIn[SEG_MESSAGES]?.locate(blob) ?? -1;
      for (let i = 0; offset >= 0 && i < echoRanges.length; i += 2) {
        if (offset >= echoRanges[i] && offset + blob.byteLength <= echoRanges[i + 1]) return this.writeEcho(offset, blob.byteLength);
      }
    }
    if (segment === SEG_SYNC_REPLIES && this.peerShmEcho && blob.byteLength >= this.shm!.threshold) {
      // Bytes of the renderer's own pool (a view of an argument, echoed back): the blocked renderer copies them
      // out before it allocates in that pool again, so their place is enough.
      const offset = this.shmIn[SEG_MESSAGES]?.locate(blob) ?? -1;
      if (offset >= 0) return this.writeEcho(offset, blob.byteLength);
    }
    if (segment !== null && this.peerShm && blob.byteLength >= this.shm!.threshold) {
      const pool = this.sharedPool(segment);
      const at = pool?.put(blob);
      if (at) {
        if (pins !== null) {
          const block = pool!.pin(at[1], blob.byteLength);
          if (block >= 0) pins.push(block);
        }
        this.writeFrame(Kind.SHM_BLOB, 0, shmBlobPayload(segment, at[0], at[1], blob.byteLength));
        this.shmSent++;
        return blob.byteLength;
      }
      this.shmFellBack++;
    }
    this.writeFrame(Kind.BLOB, 0, blob);
    return 0;
  }

  /** A byte array sent back as its place in the peer's own message pool (SEG_YOURS); 0 bytes went into ours. */
  private writeEcho(offset: number, length: number): number {
    this.writeFrame(Kind.SHM_BLOB, 0, shmBlobPayload(SEG_YOURS, 0, offset, length));
    this.shmEchoed++;
    return 0;
  }

  /**
   * This side's pool, made and announced to the peer on first use (its descriptor on a HANDLES frame, then an
   * SHM frame). null when shared memory cannot be had (memfd refused by a seccomp filter, out of descriptors…):
   * this connection then uses the socket only.
   */
  private sharedPool(segment: number): NativeShmPool | null {
    if (this.shmOut[segment] || this.shmOutFailed || this.closed) return this.shmOut[segment];
    let pool: NativeShmPool | null = null;
    try {
      pool = new (native().ShmPool)(Math.min(this.shm!.poolSize + SHM_HEADER_BYTES, 0xffffffff));
      this.flushBatch(); // the HANDLES frame is queued natively: frames batched before it go first
      this.conn.writeHandles([pool.fd]);
      pool.closeFd(); // the peer has its own duplicate now
      const size = Buffer.alloc(8);
      size.writeBigUInt64LE(BigInt(pool.size));
      this.writeFrame(Kind.SHM, segment, size);
      this.shmOut[segment] = pool;
    } catch (err) {
      pool?.close();
      this.shmOutFailed = true;
      if (codeOf(err) === 'ERR_IPC_DISCONNECTED') throw err;
    }
    return this.shmOut[segment];
  }

  /**
   * A Buffer inside this side's pool (zero copy when sent to this peer), or an ordinary one when the peer
   * has no shared memory, the pool has no room, or external Buffers are refused (Electron's sandbox).
   */
  allocShared(size: number): Buffer {
    if (!Number.isInteger(size) || size < 0 || size > 0xffffffff) {
      throw new RangeError(`The "size" argument must be an integer from 0 to 4294967295. Received ${String(size)}`);
    }
    const shared = this.peerShm && size > 0 ? this.sharedPool(SEG_MESSAGES)?.alloc(size) : null;
    return shared ?? Buffer.allocUnsafe(size);
  }

  /**
   * @internal Test hook: whether both sides agreed on shared memory, byte arrays sent through it and those that
   * fell back to the socket, sendSync reply and invoke answer byte arrays sent as references to the peer's own pool
   * (`echoed`), and this side's pool blocks not yet given back; on the receiving side, bytes of the peer's blocks that
   * views still hold.
   */
  _sharedStats(): {
    agreed: boolean;
    sent: number;
    fellBack: number;
    echoed: number;
    blocks: number;
    bytesInUse: number;
    viewBytes: number;
  } {
    let blocks = 0;
    let bytesInUse = 0;
    let viewBytes = 0;
    for (const pool of this.shmOut) {
      const st = pool?.stats();
      blocks += st?.blocks ?? 0;
      bytesInUse += st?.bytesInUse ?? 0;
    }
    for (const mapping of this.shmIn) {
      const st = mapping?.stats();
      viewBytes += st?.viewBytes ?? 0;
    }
    return { agreed: this.peerShm, sent: this.shmSent, fellBack: this.shmFellBack, echoed: this.shmEchoed, blocks, bytesInUse, viewBytes };
  }

  /** The peer's SHM frame: maps its segment (the descriptor came on the HANDLES frame before it). */
  private mapPeerSegment(segment: number, payload: Buffer): void {
    // What we offered in the handshake, not what the peer answered: main's first sendSync reply may carry
    // shared memory before its handshake answer reaches JS (both arrive during the renderer's blocking call).
    if (!this.shm) throw makeError('ERR_IPC_BAD_FRAME', 'Shared memory from a peer that was not offered it');
    if ((segment !== SEG_MESSAGES && segment !== SEG_SYNC_REPLIES) || this.shmIn[segment] || payload.length !== 8) {
      throw makeError('ERR_IPC_BAD_FRAME', 'Malformed shared-memory segment announcement');
    }
    // Its descriptor is the first of those received since the last message: a message's own descriptors go after
    // its byte arrays, which are what announces a segment.
    const fd = this.inboundHandles?.shift();
    if (fd === undefined) throw makeError('ERR_IPC_BAD_FRAME', 'A shared-memory segment announced without its descriptor');
    this.shmIn[segment] = new (native().ShmMapping)(fd);
  }

  /** The byte array an SHM_BLOB frame points at: a Buffer over the peer's block. */
  private sharedBlob(src: Buffer, start: number, end: number, copyUpTo = 0): Buffer {
    const mapping = end - start === SHM_BLOB_BYTES ? this.shmIn[src.readUInt32LE(start)] : undefined;
    if (!mapping) throw makeError('ERR_IPC_BAD_FRAME', 'A shared-memory byte array without a shared segment');
    const length = src.readUInt32LE(start + 12);
    return mapping.view(src.readUInt32LE(start + 4), src.readUInt32LE(start + 8), length, length <= copyUpTo);
  }

  /**
   * A Buffer over bytes of this side's own message pool that an invoke answer refers to (an argument the peer
   * echoed back; this side pinned its block until the answer is read): no copy. ERR_IPC_BAD_FRAME from a peer that
   * was not told this side takes such references, or unless they lie inside one block of the pool in use.
   */
  private ownView(src: Buffer, start: number): Buffer {
    const pool = this.pinsInvokeArgs && this.shm ? this.shmOut[SEG_MESSAGES] : null;
    if (!pool) throw makeError('ERR_IPC_BAD_FRAME', 'A reference to a shared-memory pool this side has not made');
    return pool.viewOwn(src.readUInt32LE(start + 8), src.readUInt32LE(start + 12));
  }

  /** Lets go of blocks pinned for an invoke (its answer has been read, it could not be sent, or the link ended). */
  private unpin(blocks: number[]): void {
    const pool = this.shmOut[SEG_MESSAGES];
    if (pool) for (const block of blocks) pool.unpin(block);
  }

  /**
   * A copy of bytes of this side's own message pool that a sendSync reply refers to (an argument main echoed
   * back). ERR_IPC_BAD_FRAME unless they lie inside one block of the pool in use.
   */
  private ownBlob(src: Buffer, start: number): Buffer {
    const pool = this.shm ? this.shmOut[SEG_MESSAGES] : null;
    if (!pool) throw makeError('ERR_IPC_BAD_FRAME', 'A reference to a shared-memory pool this side has not made');
    return pool.copyOut(src.readUInt32LE(start + 8), src.readUInt32LE(start + 12));
  }

  /**
   * The parts of a blocking call's result: the reply's payload and its byte arrays. `call()` returns the
   * frames held before the reply whole (`frames: true`) when shared-memory frames are among them.
   */
  syncReplyParts(raw: Buffer | Buffer[]): { payload: Buffer; blobs: Buffer[] | null } {
    if (!Array.isArray(raw)) return { payload: raw, blobs: null };
    if (!(raw as Buffer[] & { frames?: boolean }).frames) return { payload: raw[0], blobs: raw.slice(1) };
    const blobs: Buffer[] = [];
    // The held HANDLES frames' descriptors come with the result: others, of frames read meanwhile and delivered
    // later, are still ahead of them in the connection's queue.
    const held = (raw as Buffer[] & { handles?: number[] }).handles ?? [];
    let next = 0;
    try {
      for (let i = 1; i < raw.length; i++) {
        const frame = raw[i];
        const kind = frame[4];
        if (kind === Kind.BLOB) blobs.push(frame.subarray(FRAME_HEADER_BYTES));
        else if (kind === Kind.HANDLES) {
          const count = frame.readUInt32LE(5);
          if (next + count > held.length) throw makeError('ERR_IPC_BAD_FRAME', 'A HANDLES frame without its descriptors');
          (this.inboundHandles ??= []).push(...held.slice(next, next + count));
          next += count;
        }
        else if (kind === Kind.SHM) this.mapPeerSegment(frame.readUInt32LE(5), frame.subarray(FRAME_HEADER_BYTES));
        // Copied out (and the block given back at once) up to 16 MiB, as the addon does with a reply's BLOB frames:
        // a loop of sendSync calls never turns the event loop, so Buffer finalizers would not run meanwhile.
        else if (kind === Kind.SHM_BLOB && frame.length === FRAME_HEADER_BYTES + SHM_BLOB_BYTES && frame.readUInt32LE(FRAME_HEADER_BYTES) === SEG_YOURS) {
          blobs.push(this.ownBlob(frame, FRAME_HEADER_BYTES));
        }
        else if (kind === Kind.SHM_BLOB) blobs.push(this.sharedBlob(frame, FRAME_HEADER_BYTES, frame.length, SYNC_REPLY_COPY_BYTES));
        else throw makeError('ERR_IPC_BAD_FRAME', `Unexpected frame kind ${kind} before a sendSync reply`);
      }
    } finally {
      // The reply's own descriptors stay in inboundHandles for its decode (the caller closes what it leaves).
      if (next < held.length) {
        const binding = native();
        for (const fd of held.slice(next)) binding.closeHandle(fd);
      }
    }
    return { payload: raw[0], blobs };
  }

  /** Lets go of both pools (the mappings live on while Buffers over their blocks do). */
  private closeShared(): void {
    // Pins only matter to this pool's allocator, which closes here: nothing to give back to.
    this.invokePins.clear();
    this.echoRanges.clear();
    for (let i = 0; i < this.shmOut.length; i++) {
      this.shmOut[i]?.close();
      this.shmOut[i] = null;
      this.shmIn[i]?.close();
      this.shmIn[i] = null;
    }
  }

  /**
   * The blocking call behind `sendSync` (see NativeConnection.call): batched frames go first, so the request
   * follows every message sent before it.
   */
  call(id: number, payload: Uint8Array, blobs: readonly Uint8Array[], timeoutMs: number, alive: () => void,
    handles: readonly number[] | null = null, replyInto?: Uint8Array): Buffer | Buffer[] | number {
    this.assertOpen();
    this.checkQueue();
    // Large byte arrays go first as BLOB or SHM_BLOB frames (queued in order), then the descriptors; the blocking
    // call flushes them before the request.
    for (const blob of blobs) this.writeBlob(blob);
    if (handles && handles.length > 0) this.writeHandles(handles);
    this.flushBatch();
    return this.conn.call(id, payload, timeoutMs, alive, replyInto);
  }

  /**
   * A peer that does not read must not make this process hold an unbounded queue (a renderer pipelining
   * sendSync requests and never reading the replies grew main by 216 MiB). When more than maxQueuedBytes wait
   * for it, the connection is closed with ERR_IPC_PEER_NOT_READING (reported as its close reason) and the
   * message being written is refused with that error.
   */
  private checkQueue(): void {
    const queued = this.bufferedAmount;
    if (queued <= this.maxQueuedBytes) return;
    const err = makeError('ERR_IPC_PEER_NOT_READING',
      `The peer is not reading: ${queued} bytes are queued for it, more than maxQueuedBytes ` +
        `(${this.maxQueuedBytes}); the connection is closed`,
      { queued, limit: this.maxQueuedBytes });
    this.fail(err);
    throw err;
  }

  /** Throws ERR_IPC_MESSAGE_TOO_LARGE if the message (with its blobs) exceeds what the peer accepts. */
  checkSize(payload: Uint8Array | null, blobs?: readonly Uint8Array[]): void {
    let body = (payload ? payload.length : 0) + BODY_HEADER;
    if (blobs) for (const blob of blobs) body += blob.length + BODY_HEADER;
    if (body > this.peerMaxFrame) {
      throw makeError(
        'ERR_IPC_MESSAGE_TOO_LARGE',
        `Message of ${body} bytes exceeds the ${this.peerMaxFrame} bytes the peer accepts (maxMessageSize)`,
        { size: body, limit: this.peerMaxFrame },
      );
    }
  }

  send(channel: string, args: unknown[]): void {
    this.assertOpen();
    const tp = outgoingTraceparent(undefined);
    const encoded = encodeMessage(channel, args, true, tp);
    this.writeEncoded(Kind.MESSAGE, 0, encoded);
    if (chSend.hasSubscribers) chSend.publish(this.traceMessage('out', 'send', channel, 0, wireBytes(encoded), tp));
  }

  /**
   * `postMessage(channel, message, transfer)`: one message whose transferred ports move to the peer (their
   * descriptors go with it; a port that was reading sends its backlog after it, on this link).
   */
  postMessage(channel: string, message: unknown, ports: MessagePortMain[]): void {
    if (ports.length === 0) {
      this.send(channel, [message]);
      return;
    }
    this.assertOpen();
    const tp = outgoingTraceparent(undefined);
    const meta: { tp?: string; p: MessagePortMain[] } = { p: ports };
    if (tp !== undefined) meta.tp = tp;
    const { encoded, moves } = encodeWithPorts([channel, [message], meta], 'args', ports, 1);
    this.writeEncoded(Kind.MESSAGE, 0, encoded);
    settleMoves(moves, linkCarrier(this as Link<unknown>));
    if (chSend.hasSubscribers) chSend.publish(this.traceMessage('out', 'send', channel, 0, wireBytes(encoded), tp));
  }

  /** The other end's pid (kernel credentials), read once. */
  private remotePid = -1;

  /** @internal A trace record of one message of this connection. */
  traceMessage(direction: 'in' | 'out', kind: IpcTraceMessage['kind'], channel: string, id: number, bytes: number,
    traceparent?: string): IpcTraceMessage {
    if (this.remotePid < 0) {
      try {
        this.remotePid = this.conn.credentials.pid;
      } catch {
        this.remotePid = 0;
      }
    }
    const msg: IpcTraceMessage = { side: this.owner.side, direction, peerId: this.owner.peerId(), pid: this.remotePid, channel, kind, bytes, id };
    if (traceparent !== undefined) msg.traceparent = traceparent;
    return msg;
  }

  /** @internal Publishes a traced call's end (and, for a failure, `ipcwire:error`). */
  traceEnd(channel: typeof chInvokeEnd, start: IpcTraceMessage, t0: number, error?: Error, bytes?: number): void {
    const end: IpcTraceMessage = { ...start, durationMs: performance.now() - t0 };
    if (bytes !== undefined) end.bytes = bytes;
    if (error) end.error = error;
    if (channel.hasSubscribers) channel.publish(end);
    if (error && chError.hasSubscribers) chError.publish(end);
  }

  /**
   * Calls the peer's handler. With `signal` or `timeoutMs` (> 0) the call can be abandoned: the promise rejects
   * at once (AbortError or ERR_IPC_TIMEOUT), the peer is told with a CANCEL frame (its handler's `event.signal`
   * aborts) and the late reply, if any, is dropped.
   */
  invoke(channel: string, args: unknown[], signal?: AbortSignal, timeoutMs = 0, traceparent?: string,
    streamWindow?: StreamWindow): InvokeCall<unknown> {
    const mode: InvokeMode = { stream: false, collected: false };
    return invokeCall(channel, this.startInvoke(channel, args, signal, timeoutMs, traceparent, streamWindow, mode), mode);
  }

  private startInvoke(channel: string, args: unknown[], signal: AbortSignal | undefined, timeoutMs: number,
    traceparent: string | undefined, streamWindow: StreamWindow | undefined, mode: InvokeMode): Promise<unknown> {
    let encoded: Encoded;
    let window: Required<StreamWindow>;
    const tp = outgoingTraceparent(traceparent);
    let outs: PendingInvoke['outs'] = null;
    try {
      if (signal?.aborted) throw abortError(signal, `invoke('${channel}')`);
      this.assertOpen();
      window = streamWindow === undefined ? DEFAULT_STREAM_WINDOW : streamWindowOption(streamWindow, 'options.streamWindow');
      outs = this.streams.prepare(args);
      encoded = encodeMessage(channel, args, true, tp);
    } catch (err) {
      this.streams.discard(outs);
      return Promise.reject(err);
    }
    const id = this.allocId();
    return new Promise((resolve, reject) => {
      const call: PendingInvoke = { channel, resolve, reject, disarm: null, trace: null, t0: 0, outs, mode, window, signal };
      if (chInvokeStart.hasSubscribers || chInvokeEnd.hasSubscribers) {
        call.trace = this.traceMessage('out', 'invoke', channel, id, wireBytes(encoded), tp);
        call.t0 = performance.now();
        if (chInvokeStart.hasSubscribers) chInvokeStart.publish(call.trace);
      }
      this.pending.set(id, call);
      const pins = this.pinsInvokeArgs && encoded.blobs.length > 0 ? [] as number[] : null;
      try {
        this.writeEncoded(Kind.INVOKE, id, encoded, pins);
        if (pins !== null && pins.length > 0) this.invokePins.set(id, pins);
      } catch (err) {
        if (pins !== null) this.unpin(pins);
        this.pending.delete(id);
        this.streams.discard(outs);
        reject(err as Error);
        return;
      }
      this.streams.start(outs);
      if (signal || timeoutMs > 0) this.arm(id, call, signal, timeoutMs);
      this.updateRef();
    });
  }

  private arm(id: number, call: PendingInvoke, signal: AbortSignal | undefined, timeoutMs: number): void {
    const onAbort = () => this.abandon(id, abortError(signal!, `invoke('${call.channel}')`));
    signal?.addEventListener('abort', onAbort, { once: true });
    // Unreferenced: while the call is pending its connection keeps the process alive, not the timer.
    const timer = timeoutMs > 0
      ? setTimeout(() => this.abandon(id, makeError('ERR_IPC_TIMEOUT',
        `invoke('${call.channel}') got no reply within ${timeoutMs} ms`, { timeout: timeoutMs })), timeoutMs).unref()
      : null;
    call.disarm = () => {
      if (timer) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
  }

  /** Gives up on a pending invoke: rejects it now, tells the peer, and forgets the id (a late reply is dropped). */
  private abandon(id: number, err: Error): void {
    const call = this.pending.get(id);
    if (!call) return;
    this.pending.delete(id);
    call.disarm?.();
    // Streams among its arguments end for the handler with the same error.
    if (call.outs) for (const out of call.outs) out.abort(err);
    if (!this.closed && !this.ending) {
      try {
        this.writeFrame(Kind.CANCEL, id, null);
      } catch {
        // closed meanwhile: the peer's handler learns it from the disconnect
      }
    }
    if (call.trace) this.traceEnd(chInvokeEnd, call.trace, call.t0, err);
    call.reject(err);
    this.updateRef();
  }

  /** @internal Test hook: calls awaiting a reply and incoming calls being answered. */
  _counts(): { pending: number; answering: number } {
    return { pending: this.pending.size, answering: this.answering.size };
  }

  /** @internal Test hook: open streams this side reads (in) and produces (out), and producers waiting for 'drain'. */
  _streamCounts(): { streamsIn: number; streamsOut: number; drainWaiters: number } {
    return { ...this.streams.counts(), drainWaiters: this.drainWaiters.length };
  }

  /** Re-evaluates whether this connection keeps the process alive. */
  updateRef(): void {
    if (this.closed) return;
    const want = this.pending.size > 0 || this.streams.wantsRef() || this.owner.wantsRef();
    if (want === this.refd) return;
    this.refd = want;
    if (want) this.conn.ref();
    else this.conn.unref();
  }

  /**
   * MessagePort ends leaving on this connection whose state (what they had read) has not followed yet. An end in
   * use first waits for its other end to pause, then sends its state here: ending the connection before that
   * would lose every message the moved port had in flight.
   */
  private portMovesInFlight = 0;
  /** end() was called while ports were still leaving: it runs once the last state is written. */
  private endAfterPortMoves = false;

  /** @internal A port leaves on this connection (+1) or its state has been written (-1); see ports.ts. */
  holdForPortMove(delta: number): void {
    this.portMovesInFlight += delta;
    if (this.portMovesInFlight <= 0 && this.endAfterPortMoves) {
      this.portMovesInFlight = 0;
      this.endAfterPortMoves = false;
      this.end();
    }
  }

  /** Closes after flushing what was already accepted (and the state of ports leaving on it). Idempotent. */
  end(): void {
    if (this.closed || this.ending) return;
    if (this.portMovesInFlight > 0) {
      this.endAfterPortMoves = true;
      return;
    }
    this.ending = true;
    this.flushBatch();
    this.conn.end();
  }

  /** Closes at once. Idempotent. */
  destroy(): void {
    if (this.closed) return;
    this.conn.close();
  }

  flushAtExit(): void {
    if (this.closed) return;
    this.flushBatch();
    try {
      if (this.conn.bufferedAmount > 0) this.conn.flush(EXIT_FLUSH_MS);
    } catch {
      // the peer is gone: nothing left to deliver to
    }
  }

  /** Marks the link dead right away (e.g. a blocking call saw the peer go); onClose follows from native. */
  markDisconnected(err: Error | null): void {
    if (this.closed) return;
    this.closed = true;
    this.closeError = err;
    this.batchLen = 0;
    this.batch = null;
    liveLinks.delete(this as Link<unknown>);
    this.closeShared();
    for (const [id, call] of this.pending) {
      this.pending.delete(id);
      call.disarm?.();
      const err = this.deadError();
      if (call.trace) this.traceEnd(chInvokeEnd, call.trace, call.t0, err);
      call.reject(err);
    }
    if (this.answering.size > 0) {
      const gone = this.deadError();
      for (const call of this.answering.values()) call.abort(gone);
      this.answering.clear();
    }
    this.streams.closeAll(this.deadError());
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  private onNativeClose(err: Error | null): void {
    // A failure we decided (a protocol error, a refusal) is the reason, even if the peer, closing on it,
    // made the socket report ECONNRESET (it closed with our last frames unread).
    let reason = this.failure ?? err;
    if (!reason && this.inboundBlobs) {
      // The peer closed between a message's BLOB frames and the message itself: that message was cut off.
      reason = makeError('ERR_IPC_TRUNCATED',
        `The connection closed in the middle of a message (${this.inboundBlobs.length} of its byte arrays received)`);
    }
    this.markDisconnected(reason);
    this.closeInboundHandles();
    carrierClosed(this);
    if (chDisconnect.hasSubscribers) {
      const msg = this.traceMessage('in', 'disconnect', '', 0, 0);
      if (reason) msg.error = reason;
      chDisconnect.publish(msg);
    }
    this.owner.onClose(reason);
  }

  /** When the last whole frames arrived (Date.now()); what an idle timeout measures. */
  lastInbound = Date.now();

  private onChunks(chunks: Buffer[]): void {
    this.lastInbound = Date.now();
    for (const chunk of chunks) {
      let offset = 0;
      while (offset + 4 <= chunk.length) {
        const bodyLength = chunk.readUInt32LE(offset);
        const end = offset + 4 + bodyLength;
        if (bodyLength < BODY_HEADER || end > chunk.length) {
          // The addon hands over whole frames only; anything else is a bug worth failing loudly on.
          this.fail(makeError('ERR_IPC_BAD_FRAME', 'Truncated frame from the transport'));
          return;
        }
        const kind = chunk[offset + 4];
        const id = chunk.readUInt32LE(offset + 5);
        const start = offset + FRAME_HEADER_BYTES;
        offset = end;
        if (this.closed) return;
        try {
          if (kind === Kind.BLOB) {
            this.takeBlob(chunk.subarray(start, end));
            continue;
          }
          if (kind === Kind.SHM_BLOB) {
            this.takeBlob(end - start === SHM_BLOB_BYTES && chunk.readUInt32LE(start) === SEG_YOURS
              ? this.ownView(chunk, start)
              : this.sharedBlob(chunk, start, end));
            continue;
          }
          if (kind === Kind.SHM) {
            this.mapPeerSegment(id, chunk.subarray(start, end));
            continue;
          }
          if (kind === Kind.HANDLES) {
            this.takeHandles(id);
            continue;
          }
          const blobs = this.inboundBlobs;
          this.inboundBlobs = null;
          this.inboundBlobBytes = 0;
          if (this.inboundHandles) {
            this.armInboundHandles();
            try {
              this.dispatch(kind, id, chunk, start, end, blobs);
            } finally {
              // Descriptors that came with this frame and nothing adopted (ports and handle values take theirs;
              // everything, if decoding or dispatch failed) are closed, never leaked.
              this.closeInboundHandles();
            }
          } else {
            this.dispatch(kind, id, chunk, start, end, blobs);
          }
        } catch (err) {
          const code = codeOf(err);
          if (code === 'ERR_IPC_BAD_FRAME' || code === 'ERR_IPC_FRAME_TOO_LARGE') {
            this.fail(err as Error);
            return;
          }
          // A user listener threw: report it as Node would (uncaught), but keep delivering the rest in order.
          process.nextTick(() => {
            throw err;
          });
        }
      }
    }
  }

  /** Closes this connection because the peer broke the protocol; the owner hears about it via onClose. */
  fail(err: Error): void {
    if (this.closed) return;
    this.failure = err;
    this.markDisconnected(err);
    this.conn.close();
  }

  /** The protocol error that made us close, reported instead of the plain local close. */
  failure: Error | null = null;

  /**
   * Queues HANDLES frames carrying duplicates of `fds` (the caller keeps its own), after every frame written
   * before: the JS batch goes to the addon first.
   */
  private writeHandles(fds: readonly number[]): void {
    if (typeof this.conn.writeHandles !== 'function') {
      throw makeError('ERR_IPC_TRANSFER_UNSUPPORTED', 'This platform\'s connections cannot carry OS handles yet');
    }
    this.flushBatch();
    for (let i = 0; i < fds.length; i += MAX_HANDLES_PER_FRAME) {
      this.conn.writeHandles(fds.slice(i, i + MAX_HANDLES_PER_FRAME));
    }
  }

  /**
   * @internal Offers the descriptors received for the frame about to be handled to its decode (handle values,
   * ports among them, adopt theirs by setting their entries to -1); closeInboundHandles follows.
   */
  armInboundHandles(): void {
    setReceivingCarrier(this as Link<unknown>);
    setInboundHandles(this.inboundHandles);
  }

  /** Takes the descriptors a HANDLES frame announced from the addon; they belong to the next message. */
  private takeHandles(count: number): void {
    const fds = this.conn.takeHandles(count);
    if (this.inboundHandles) this.inboundHandles.push(...fds);
    else this.inboundHandles = fds;
  }

  /** @internal Closes the descriptors received for the message just handled that nothing adopted. */
  closeInboundHandles(): void {
    setInboundHandles(null);
    const fds = this.inboundHandles;
    this.inboundHandles = null;
    if (!fds) return;
    const binding = native();
    for (const fd of fds) {
      if (fd < 0) continue;
      try {
        binding.closeHandle(fd);
      } catch {
        // already closed by whoever adopted it
      }
    }
  }

  private takeBlob(payload: Buffer): void {
    this.inboundBlobBytes += payload.length;
    if (this.inboundBlobBytes > this.conn.maxFrameSize) {
      throw makeError('ERR_IPC_FRAME_TOO_LARGE',
        `Blobs of one message exceed maxMessageSize (${this.conn.maxFrameSize} bytes)`);
    }
    (this.inboundBlobs ??= []).push(payload);
  }

  private dispatch(kind: number, id: number, src: Buffer, start: number, end: number, blobs: Buffer[] | null): void {
    const refusal = this.owner.refusal?.();
    if (refusal && kind === Kind.INVOKE) {
      const { code, message } = refusal as Error & { code: string };
      this.reply(Kind.INVOKE_REPLY, id, [1, { text: `Error: ${message}`, name: 'Error', message, code, props: { code } }]);
      return;
    }
    switch (kind) {
      case Kind.INVOKE:
        this.answerInvoke(id, src, start, end, blobs);
        return;
      case Kind.INVOKE_REPLY: {
        const call = this.pending.get(id);
        this.decodeWindow = call ? call.window : DEFAULT_STREAM_WINDOW;
        this.decodedStreams = null;
        let body: ReplyBody;
        setStreamDecoder(this.streamDecoder);
        try {
          body = decode(src, blobs, start, end) as ReplyBody;
        } finally {
          setStreamDecoder(null);
          // The answer's views of pinned blocks (if any) hold them now; an answer to a call abandoned meanwhile
          // lets them go too.
          const pins = this.invokePins.get(id);
          if (pins) {
            this.invokePins.delete(id);
            this.unpin(pins);
          }
        }
        const made = this.takeDecodedStreams();
        if (!call) {
          // a reply to nothing we are waiting for (or to a call abandoned meanwhile)
          if (made) for (const s of made) s.cancel();
          return;
        }
        this.pending.delete(id);
        call.disarm?.();
        this.updateRef();
        if (!Array.isArray(body)) throw makeError('ERR_IPC_BAD_FRAME', 'Malformed invoke reply');
        if (made) for (const s of made) {
          if (body[0] !== 0 || s !== body[1]) {
            s.cancel(); // only a result that is a stream itself is one
            continue;
          }
          s._label = `Error invoking remote method '${call.channel}'`;
          if (call.signal) s._bindSignal(call.signal, `invoke('${call.channel}')`);
        }
        if (body[0] === 0) {
          if (call.trace) this.traceEnd(chInvokeEnd, call.trace, call.t0, undefined, end - start + FRAME_HEADER_BYTES);
          const value = body[1];
          if (value instanceof IpcStream && !call.mode.stream) {
            call.mode.collected = true;
            call.resolve(value.all());
          } else call.resolve(value);
        } else {
          const wire = (body[1] ?? {}) as WireError;
          const text = typeof wire.text === 'string' ? wire.text : 'Error';
          const err = fromWireError(wire, `Error invoking remote method '${call.channel}': ${text}`);
          if (call.trace) this.traceEnd(chInvokeEnd, call.trace, call.t0, err, end - start + FRAME_HEADER_BYTES);
          call.reject(err);
        }
        return;
      }
      case Kind.STREAM:
        this.streams.onStream(id, src, start, end, blobs);
        return;
      case Kind.STREAM_CTRL:
        if (blobs) throw makeError('ERR_IPC_BAD_FRAME', 'Byte arrays before a stream control frame');
        this.streams.onCtrl(id, src, start, end);
        return;
      case Kind.PORT_STATE:
        receiveState(src, blobs, start, end);
        return;
      case Kind.CANCEL: {
        const call = this.answering.get(id);
        if (!call) return; // already answered: the reply crossed the cancel
        this.answering.delete(id);
        const reason = new AbortError('The caller abandoned this invoke (its signal aborted or it timed out)');
        call.abort(reason);
        // A caller that holds its arguments' pool blocks until the answer (echoRanges were noted for this call) is
        // answered anyway, so that it lets them go; it drops the answer itself, as it would a late one.
        if (this.echoRanges.has(id)) this.reply(Kind.INVOKE_REPLY, id, [1, toWireError(reason)]);
        return;
      }
      default:
        this.owner.onFrame(kind, id, src, start, end, blobs);
    }
  }

  private answerInvoke(id: number, src: Buffer, start: number, end: number, blobs: Buffer[] | null): void {
    this.decodeWindow = this.streamWindow;
    this.decodedStreams = null;
    let msg: ReturnType<typeof decodeMessage>;
    setStreamDecoder(this.streamDecoder);
    try {
      msg = decodeMessage(src, blobs, start, end);
    } finally {
      setStreamDecoder(null);
    }
    const { channel, args, traceparent } = msg;
    if (this.peerShmEchoInvoke && blobs !== null) {
      const mapping = this.shmIn[SEG_MESSAGES];
      let ranges: number[] | null = null;
      for (const blob of blobs) {
        const at = mapping ? mapping.locate(blob) : -1;
        if (at >= 0) (ranges ??= []).push(at, at + blob.length);
      }
      if (ranges !== null) this.echoRanges.set(id, ranges);
    }
    const argStreams = this.takeDecodedStreams();
    if (argStreams) for (const s of argStreams) s._label = `Error in a stream argument of '${channel}'`;
    const call = new IncomingCall(traceparent);
    call.argStreams = argStreams;
    if (chHandleStart.hasSubscribers || chHandleEnd.hasSubscribers) {
      call.trace = this.traceMessage('in', 'invoke', channel, id, receivedBytes(start, end, blobs), traceparent);
      call.t0 = performance.now();
      if (chHandleStart.hasSubscribers) chHandleStart.publish(call.trace);
    }
    if (this.owner.inspectArgs) this.owner.inspectArgs(channel, args, end - start + FRAME_HEADER_BYTES);
    const handler = this.owner.handlers.get(channel);
    if (!handler) {
      const code = 'ERR_IPC_NO_HANDLER';
      this.finishInvoke(id, call, [1, { text: `Error: No handler registered for '${channel}'`, code, props: { code } }], true,
        makeError(code, `No handler registered for '${channel}'`));
      return;
    }
    let result: unknown;
    try {
      result = handler(this.owner.invokeEvent(call), ...args);
    } catch (err) {
      this.finishInvoke(id, call, [1, toWireError(err)], true, err as Error);
      return;
    } finally {
      this.updateRef(); // a handleOnce handler has just removed itself
    }
    // Only a call still running can be cancelled; the reply of one cancelled meanwhile is not sent.
    this.answering.set(id, call);
    Promise.resolve(result).then(
      (value) => this.finishInvoke(id, call, [0, value]),
      (err) => this.finishInvoke(id, call, [1, toWireError(err)], false, err as Error),
    );
  }

  /** Sends an answered invoke's reply (`now`: it never waited in `answering`); traces its end. */
  private finishInvoke(id: number, call: IncomingCall, body: ReplyBody, now = false, err?: Error): void {
    const streamed = body[0] === 0 && isStreamSource(body[1]);
    if (!now) {
      if (this.answering.get(id) !== call) {
        // cancelled, or the connection went: no reply is sent (but see the CANCEL case of dispatch)
        if (call.trace) this.traceEnd(chHandleEnd, call.trace, call.t0, call.signal.reason as Error, 0);
        if (streamed) this.streams.discard(this.streams.prepare([body[1]]));
        call.cancelArgStreams(false);
        return;
      }
      this.answering.delete(id);
    }
    // A stream argument the handler never started reading is cancelled once it has answered with something other
    // than a stream (a streamed result may still read it later); after an error, every one is.
    if (!streamed) call.cancelArgStreams(body[0] === 0);
    let outs: ReturnType<StreamHub['prepare']> = null;
    if (streamed) {
      const result = [body[1]];
      outs = this.streams.prepare(result);
      body = [0, result[0]];
    }
    const bytes = this.reply(Kind.INVOKE_REPLY, id, body);
    if (outs) {
      if (bytes > 0) this.streams.start(outs);
      else this.streams.discard(outs);
    }
    if (call.trace) this.traceEnd(chHandleEnd, call.trace, call.t0, err, bytes);
  }

  /**
   * Sends a reply body; an unclonable or oversized value becomes an error reply. Never throws (the peer may be
   * gone). Handshake bodies stay inline; a SYNC_REPLY too unless the peer takes its blobs (peerTakesSyncBlobs).
   */
  reply(kind: Kind, id: number, body: ReplyBody): number {
    let echoRanges: number[] | null = null;
    if (kind === Kind.INVOKE_REPLY) {
      echoRanges = this.echoRanges.get(id) ?? null;
      if (echoRanges !== null) this.echoRanges.delete(id);
    }
    if (this.closed) return 0;
    // A small flat sendSync answer is written from a reused buffer: a SYNC_REPLY goes to the addon at once,
    // which copies what the kernel does not take, so nothing keeps the buffer past this call.
    const small = kind === Kind.SYNC_REPLY && body[0] === 0 && !exiting ? encodeSmallReply(body[1]) : null;
    if (small !== null && small.length + BODY_HEADER <= this.peerMaxFrame) {
      try {
        // writeEncoded's steps for a message with no byte arrays and no descriptors
        this.assertOpen();
        this.checkQueue();
        this.writeFrame(kind, id, small);
        return small.length + FRAME_HEADER_BYTES;
      } catch {
        return 0; // the connection went away meanwhile; its close is reported separately
      }
    }
    let encoded: Encoded;
    try {
      const withBlobs = kind === Kind.INVOKE_REPLY || (kind === Kind.SYNC_REPLY && this.peerTakesSyncBlobs);
      // A returned value may carry OS handles either way (the blocking call holds HANDLES frames with its reply).
      encoded = encodeValue(body, body[0] === 0 ? 'returnValue' : 'error', withBlobs, 0, body[0] === 0);
      this.checkSize(encoded.payload, encoded.blobs);
    } catch (err) {
      // The value could not be cloned or does not fit: the caller gets that error instead. An error reply
      // that does not fit either (a long stack or message for a peer with a small maxMessageSize) is
      // shortened until it does, so a caller never waits for a reply that was dropped.
      encoded = this.fittingError(body[0] === 1 ? body[1] : toWireError(err));
    }
    try {
      this.writeEncoded(kind, id, encoded, null, echoRanges);
      return wireBytes(encoded);
    } catch {
      // the connection went away meanwhile; its close is reported separately
      return 0;
    }
  }

  /**
   * An error reply the peer accepts: the error as is when it fits; else without its stack and own properties
   * (its code kept), its text cut to what fits and marked as shortened. Below ~100 bytes of maxMessageSize not
   * even that fits: it is sent anyway, the peer closes the connection on it (ERR_IPC_FRAME_TOO_LARGE) and the
   * caller learns of it as a disconnect, still not as a silent hang.
   */
  private fittingError(wire: WireError): Encoded {
    const encode = (w: WireError): Encoded => encodeValue([1, w], 'error');
    const fits = (e: Encoded): boolean => e.payload.length + BODY_HEADER <= this.peerMaxFrame;
    try {
      const whole = encode(wire);
      if (fits(whole)) return whole;
    } catch {
      // not encodable as it is: fall through to the plain form
    }
    const rawCode = wire.code ?? wire.props?.code;
    const code = typeof rawCode === 'string' || typeof rawCode === 'number' ? rawCode : 'ERR_IPC_MESSAGE_TOO_LARGE';
    const name = typeof wire.name === 'string' ? wire.name.slice(0, 64) : 'Error';
    const text = typeof wire.text === 'string' ? wire.text : 'Error';
    const message = typeof wire.message === 'string' ? wire.message : text;
    const mark = ' [shortened to fit maxMessageSize]';
    let keep = Math.max(text.length, message.length);
    for (;;) {
      const cut = (s: string): string => (s.length > keep ? s.slice(0, keep) + mark : s);
      const short = encode({ text: cut(text), name, message: cut(message), code, props: { code, shortened: true } });
      if (fits(short) || keep === 0) return short;
      keep = keep > 16 ? Math.floor(keep / 2) : 0;
    }
  }
}
