/**
 * The renderer side: one connection to main per `IpcRenderer` (per thread for the default instance).
 * `sendSync` blocks this thread inside the addon; everything else is asynchronous over the same socket.
 */
import { EventEmitter } from 'node:events';
import { FRAME_HEADER_BYTES, Kind, PROTOCOL_VERSION, native, type NativeCredentials } from './native';
import { decode, decodeMessage, decodeSmallReply, encodeMessage, encodeSmallSync, encodeValue, NOT_SMALL, fromWireError, type Encoded, type WireError } from './codec';
import { checkCallOptions, checkChannel, checkTimeout, codeOf, disconnectedError, makeError, positiveInt, type CallOptions } from './errors';
import { HandlerRegistry, type InvokeHandler, type TypedHandler } from './handlers';
import {
  DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_QUEUED_BYTES, IncomingCall, Link, MAX_FRAME_BODY, receivedBytes, sharedMemoryConfig, wireBytes,
  type LinkOwner, type ReplyBody, type SharedMemoryOptions,
} from './link';
import { ADDRESS_ENV, checkPathLength, envAddress, isLocalMainAddress, resolveAddress } from './address';
import type { AnyChannels, ChannelArgs, ChannelName, ChannelResult } from './channels';
import { rejectedCall, streamWindowOption, type InvokeCall, type StreamWindow } from './streams';
import { checkTransfer, receivedPorts, type MessagePortMain } from './ports';
import { chConnect, chMessage, chSyncEnd, chSyncStart, outgoingTraceparent, type IpcTraceMessage } from './trace';

/** Options of {@link IpcRenderer}. */
export interface IpcRendererOptions {
  /** @internal Connect as an inspector (`npx ipcwire inspect`), not as a renderer. */
  inspect?: boolean;
  /**
   * Main's address; default: the `IPCWIRE_ADDRESS` environment variable that `fork` sets (read once when ipcwire
   * loads, and taken out of `process.env` so that processes this one starts do not inherit it).
   */
  address?: string;
  /** Milliseconds a `sendSync` waits for main before throwing ERR_IPC_TIMEOUT. Default: no timeout. */
  syncTimeout?: number;
  /**
   * Milliseconds an `invoke` waits for main's handler before rejecting with ERR_IPC_TIMEOUT (the handler's
   * `event.signal` aborts). Default: no timeout, as Electron.
   */
  invokeTimeout?: number;
  /**
   * How far a stream that arrives as an argument of main's `peer.invoke` may run ahead of the handler's reading:
   * chunks and bytes in flight. Default `{ chunks: 32, bytes: 4 MiB }`. (The window of a streamed result is set
   * per call, `invokeWith({ streamWindow })`.)
   */
  streamWindow?: StreamWindow;
  /** Milliseconds `connect` keeps retrying while main's listen queue is full. Default 5000. */
  connectTimeout?: number;
  /** Largest frame (bytes) accepted from main. Default 512 MiB. */
  maxMessageSize?: number;
  /**
   * Bytes that may wait for a main that does not read. A message written when more than this is queued throws
   * ERR_IPC_PEER_NOT_READING and the connection is closed with that error (`link` 'error' and 'disconnect').
   * Default 256 MiB.
   */
  maxQueuedBytes?: number;
  /**
   * Decides, from the kernel's credentials of the process listening at the address, whether it is the main to
   * talk to; return false to refuse it (`connect` then throws ERR_IPC_MAIN_REFUSED and nothing is sent). Default:
   * a main running as this process's user, or as root. (On Windows the pipe's access list already limits it to
   * this user; uid is -1 there and the default accepts.)
   */
  allowMain?: (credentials: NativeCredentials) => boolean;
  /**
   * Reconnect when main goes away (for example a restart on the same address): `true` for the defaults, or
   * the {@link ReconnectOptions}. Default: off (a lost connection stays lost, as in Electron).
   */
  reconnect?: boolean | ReconnectOptions;
  /**
   * Large byte arrays through shared memory (Linux, macOS): on by default with a 64 KiB threshold and a 64 MiB
   * pool for this side; `false` keeps every byte on the socket. See "Large payloads" in the README.
   */
  shm?: boolean | SharedMemoryOptions;
}

/**
 * How a renderer reconnects after losing main. Attempts wait `initialDelay`, then twice as long each time up to
 * `maxDelay`; the renderer gives up after `maxAttempts` attempts or `timeout` ms since the connection was lost,
 * whichever comes first.
 */
export interface ReconnectOptions {
  /** Milliseconds before the first attempt. Default 50. */
  initialDelay?: number;
  /** Longest wait between attempts, in milliseconds. Default 2000. */
  maxDelay?: number;
  /** Attempts before giving up. Default: no limit (the `timeout` still applies). */
  maxAttempts?: number;
  /** Milliseconds after the loss of the connection after which no new attempt starts. Default 30000. */
  timeout?: number;
  /**
   * Bytes of encoded `send` messages held while disconnected, delivered in order once reconnected. A `send`
   * that would exceed it throws ERR_IPC_RECONNECT_QUEUE_FULL (nothing of it is queued). Default 1 MiB; 0
   * queues nothing.
   */
  maxQueuedBytes?: number;
}

type ReconnectConfig = Required<ReconnectOptions>;

function reconnectConfig(value: boolean | ReconnectOptions | undefined): ReconnectConfig | null {
  if (value === undefined || value === false) return null;
  if (value !== true && (typeof value !== 'object' || value === null)) {
    throw makeError('ERR_INVALID_ARG_TYPE', 'reconnect must be a boolean or an object of options');
  }
  const o = value === true ? {} : value;
  const nonNegative = (v: number | undefined, def: number, name: string): number => {
    if (v === undefined) return def;
    if (typeof v !== 'number' || !(v >= 0)) throw makeError('ERR_OUT_OF_RANGE', `reconnect.${name} must be a number >= 0; got ${String(v)}`);
    return v;
  };
  const config: ReconnectConfig = {
    initialDelay: nonNegative(o.initialDelay, 50, 'initialDelay'),
    maxDelay: nonNegative(o.maxDelay, 2000, 'maxDelay'),
    maxAttempts: nonNegative(o.maxAttempts, Infinity, 'maxAttempts'),
    timeout: nonNegative(o.timeout, 30_000, 'timeout'),
    maxQueuedBytes: nonNegative(o.maxQueuedBytes, 1024 * 1024, 'maxQueuedBytes'),
  };
  if (config.maxDelay < config.initialDelay) config.maxDelay = config.initialDelay;
  return config;
}

/** A `send` accepted while disconnected, encoded when it was called. */
interface QueuedSend {
  channel: string;
  encoded: Encoded;
  bytes: number;
}

/** The time between losing main and the handshake of a new connection. */
interface Gap {
  since: number;
  attempts: number;
  timer: NodeJS.Timeout | null;
  /** A new connection is open and waits for main's handshake reply. */
  connecting: boolean;
  lastError: Error | null;
  queue: QueuedSend[];
  queuedBytes: number;
}

/** What `link` emits with `'reconnecting'`: the attempt about to start and the wait before it. */
export interface ReconnectingInfo {
  attempt: number;
  delay: number;
}

/** What `link` emits with `'reconnect'`: attempts it took, and how many queued `send`s were then written. */
export interface ReconnectInfo {
  attempts: number;
  delivered: number;
}

/** The event a renderer listener receives (`IpcRendererEvent`). */
export interface IpcRendererEvent<C = AnyChannels> {
  readonly sender: IpcRenderer<C>;
  readonly senderId: number;
  /** The MessagePorts main transferred with a `postMessage`, in the order of its transfer list. */
  readonly ports: MessagePortMain[];
  /** The W3C trace context main sent with this message, if any (see Tracing in the README). */
  readonly traceparent?: string;
}

/** The event a renderer's invoke handler receives (answering main's `peer.invoke`). */
export interface IpcRendererInvokeEvent<C = AnyChannels> {
  readonly sender: IpcRenderer<C>;
  /** Aborts when main abandons the call (its signal aborted or its timeout passed) or the connection goes. */
  readonly signal: AbortSignal;
  /** The W3C trace context main sent with this call, if any (see Tracing in the README). */
  readonly traceparent: string | undefined;
}

class RendererInvokeEvent implements IpcRendererInvokeEvent<any> {
  constructor(
    readonly sender: IpcRenderer<any>,
    private readonly call: IncomingCall,
  ) {}
  get signal(): AbortSignal {
    return this.call.signal;
  }
  get traceparent(): string | undefined {
    return this.call.traceparent;
  }
}

const noop = () => {};

/** A traced sendSync: its start record and time, and the reply's size once it came. */
interface SyncTrace {
  trace: IpcTraceMessage | null;
  t0: number;
  replyBytes: number;
}
/** Called by the addon between wait slices of a blocking call so that thread termination is noticed. */
const stillAlive = () => {};
/**
 * Where the addon copies a small sendSync reply of this thread (instead of a fresh Buffer per call): read at once
 * by the small decoder, else copied out before anything else runs. Larger replies still come as their own Buffer.
 */
const replyScratch = Buffer.allocUnsafeSlow(4096);
/** The blobs of a request that has none. */
const NO_BLOBS: readonly Uint8Array[] = [];

/**
 * A renderer's endpoint. An EventEmitter whose event names are channels (listener `(event, ...args)`), plus
 * `send`, `sendSync`, `invoke` and `handle`. Connection events are on `link`.
 */
export class IpcRenderer<C = AnyChannels> extends EventEmitter {
  /**
   * Connection events: `'connect'`, `'disconnect' (err | null)`, `'error' (err)`, `'drain'`; with `reconnect`,
   * also `'reconnecting' (ReconnectingInfo)`, `'reconnect' (ReconnectInfo)` and `'reconnect-failed' (err)`.
   * They live here, not on the renderer itself, whose event names are channels main sends on.
   */
  readonly link = new EventEmitter();
  /** Milliseconds a `sendSync` waits before ERR_IPC_TIMEOUT; 0 or undefined waits for ever. */
  syncTimeout: number | undefined;
  /** Milliseconds an `invoke` waits before ERR_IPC_TIMEOUT; 0 or undefined waits for ever. */
  invokeTimeout: number | undefined;
  private readonly streamWindow: Required<StreamWindow>;
  private readonly options: IpcRendererOptions;
  private readonly handlers = new HandlerRegistry<IpcRendererInvokeEvent>();
  private wire: Link<IpcRendererInvokeEvent> | null = null;
  private closedByUser = false;
  private peerIdValue: number | null = null;
  /** The resolved address of the current connection. */
  private resolved: string | null = null;
  private readonly ready: boolean;
  private reconnectOptions: ReconnectConfig | null;
  /** The address of the last connect: for reconnecting, and for `connect()` after `close()`. */
  private target: string | null = null;
  private gap: Gap | null = null;
  /** Set when reconnecting gave up: later calls report it until connect() is called again. */
  private gaveUp = false;

  constructor(options: IpcRendererOptions = {}) {
    super();
    positiveInt(options.maxMessageSize, DEFAULT_MAX_MESSAGE_SIZE, 'maxMessageSize', MAX_FRAME_BODY);
    positiveInt(options.connectTimeout, 5000, 'connectTimeout');
    positiveInt(options.maxQueuedBytes, DEFAULT_MAX_QUEUED_BYTES, 'maxQueuedBytes');
    if (options.allowMain !== undefined && typeof options.allowMain !== 'function') {
      throw new TypeError('The "allowMain" option must be a function');
    }
    if (options.syncTimeout !== undefined) positiveInt(options.syncTimeout, 0, 'syncTimeout');
    this.reconnectOptions = reconnectConfig(options.reconnect);
    sharedMemoryConfig(options.shm);
    this.options = options;
    this.syncTimeout = options.syncTimeout;
    if (options.invokeTimeout !== undefined) checkTimeout(options.invokeTimeout, 'invokeTimeout');
    this.invokeTimeout = options.invokeTimeout;
    this.streamWindow = streamWindowOption(options.streamWindow);
    // As Electron: main may send on the channel 'error' without crashing the renderer.
    EventEmitter.prototype.on.call(this, 'error', noop);
    this.ready = true;
  }

  /** Whether a connection to main is open (while reconnecting: only once main answered the handshake). */
  get connected(): boolean {
    return this.wire !== null && !this.wire.isClosed && (this.gap === null || !this.gap.connecting);
  }

  /** Whether the renderer lost main and is trying to reconnect (`send`s are queued meanwhile). */
  get reconnecting(): boolean {
    return this.gap !== null;
  }

  /**
   * Changes options after construction, e.g. of the default `ipcRenderer`:
   * `ipcRenderer.configure({ reconnect: { maxAttempts: 10 } })`. Applies from the next loss of the connection.
   */
  configure(options: Pick<IpcRendererOptions, 'reconnect' | 'syncTimeout'>): this {
    if ('reconnect' in options) this.reconnectOptions = reconnectConfig(options.reconnect);
    if ('syncTimeout' in options) {
      if (options.syncTimeout !== undefined) positiveInt(options.syncTimeout, 0, 'syncTimeout');
      this.syncTimeout = options.syncTimeout;
    }
    return this;
  }

  /** This renderer's id in main (`peer.id`), once the handshake completed. */
  get peerId(): number | null {
    return this.peerIdValue;
  }

  /** Bytes queued for main and not yet taken by the kernel. */
  get bufferedAmount(): number {
    return this.wire ? this.wire.bufferedAmount : 0;
  }

  /**
   * Connects synchronously to `address` (default: the address of the previous `connect`, else the options'
   * address, else `IPCWIRE_ADDRESS`). A no-op when already connected.
   */
  connect(address?: string): this {
    if (this.wire && !this.wire.isClosed) return this;
    const target = address ?? this.target ?? this.options.address ?? envAddress();
    if (!target) {
      throw makeError('ERR_IPC_NO_ADDRESS',
        `ipcRenderer has no address to connect to: start this process with fork() from ipcwire in main, ` +
          `set ${ADDRESS_ENV}, or call ipcRenderer.connect(address)`);
    }
    this.open(target, this.options.connectTimeout ?? 5000);
    this.target = target;
    this.gaveUp = false;
    return this;
  }

  private open(target: string, connectTimeout: number): void {
    const binding = native();
    const resolved = resolveAddress(target);
    checkPathLength(resolved, binding.maxPathLength);
    const conn = binding.connect(resolved, connectTimeout);
    // Whoever can create a socket at this path could pose as main: check who listens before saying anything.
    const creds = conn.credentials;
    const allowMain = this.options.allowMain ?? sameUserOrRoot;
    let allowed = false;
    try {
      allowed = allowMain({ pid: creds.pid, uid: creds.uid, gid: creds.gid }) === true;
    } finally {
      if (!allowed) conn.close();
    }
    if (!allowed) {
      throw makeError('ERR_IPC_MAIN_REFUSED',
        `Refused to talk to the process listening at ${resolved} (pid ${creds.pid}, uid ${creds.uid}): ` +
          `it is not running as this user${this.options.allowMain ? ' (allowMain returned false)' : ''}`,
        { address: resolved, pid: creds.pid, uid: creds.uid, gid: creds.gid });
    }
    this.resolved = resolved;
    if (this.gap) {
      // A connection made while reconnecting (by an attempt, or by the user) completes the gap on main's
      // handshake reply; no further attempt is scheduled meanwhile.
      if (this.gap.timer) clearTimeout(this.gap.timer);
      this.gap.timer = null;
      this.gap.connecting = true;
    }
    let wire: Link<IpcRendererInvokeEvent> | null = null;
    const owner: LinkOwner<IpcRendererInvokeEvent> = {
      onFrame: (kind, id, src, start, end, blobs) => this.onFrame(kind, id, src, start, end, blobs),
      onClose: (err) => this.onClose(wire!, err),
      onDrain: () => this.link.emit('drain'),
      wantsRef: () => this.wantsRef(),
      handlers: this.handlers,
      invokeEvent: (call) => new RendererInvokeEvent(this, call),
      side: 'renderer',
      peerId: () => this.peerIdValue,
    };
    const maxFrame = this.options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    wire = new Link(conn, owner, maxFrame, this.options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES, sharedMemoryConfig(this.options.shm));
    wire.streamWindow = this.streamWindow;
    this.wire = wire;
    this.closedByUser = false;
    // syncBlobs: this addon's blocking call returns BLOB frames with the reply, so main may send a sendSync
    // return value's large byte arrays out of band (no copy into the msgpack payload on main's side).
    const hello: Record<string, unknown> = { magic: 'ipcwire', version: PROTOCOL_VERSION, maxFrame, syncBlobs: binding.syncReplyBlobs === true };
    if (this.options.inspect) hello.inspect = true;
    if (wire.shm) hello.shm = true;
    if (wire.shm && process.platform !== 'win32') {
      // This addon's blocking call hands over the descriptors of the frames it holds with a reply (not on Windows,
      // whose handles travel in the frames): main may then send sendSync return values through shared memory.
      hello.shmSync = true;
      // And takes, in such a reply, a reference to bytes of its own pool in place of a copy (main echoing an
      // argument it received through shared memory).
      hello.shmEcho = true;
      // And, in an invoke answer, the same reference to bytes of its invoke's own arguments, whose blocks it holds
      // until it has read the answer: main echoing a view costs no copy there either.
      hello.shmEchoInvoke = true;
      wire.pinsInvokeArgs = true;
    }
    wire.write(Kind.HELLO, 0, encodeValue(hello, 'hello').payload);
    wire.updateRef();
    process.nextTick(() => this.link.emit('connect'));
  }

  /**
   * Sends an asynchronous message to main's `ipcMain.on(channel)` listeners. While reconnecting, the message
   * is queued (see {@link ReconnectOptions.maxQueuedBytes}) and written once main answers the new handshake.
   */
  send<K extends ChannelName<C>>(channel: K, ...args: ChannelArgs<C, K>): void;
  send(channel: string, ...args: unknown[]): void {
    checkChannel(channel);
    const gap = this.currentGap();
    if (gap) this.enqueue(gap, channel, args);
    else this.ensure().send(channel, args);
  }

  /**
   * Electron's `ipcRenderer.postMessage(channel, message, transfer)`: one message, received in main as
   * `(event, message)`; the MessagePorts in `transfer` move to main and arrive in its `event.ports`, in this order.
   */
  postMessage<K extends ChannelName<C>>(channel: K, message: ChannelArgs<C, K>[0], transfer?: readonly unknown[]): void;
  postMessage(channel: string, message: unknown, transfer?: readonly unknown[]): void {
    checkChannel(channel);
    const ports = checkTransfer(transfer, null);
    if (ports.length === 0) {
      (this as IpcRenderer).send(channel, message);
      return;
    }
    // Ports cannot wait in a reconnect queue (their descriptors belong to this connection's frames).
    if (this.currentGap()) throw disconnectedError('reconnecting; ports cannot be queued');
    this.ensure().postMessage(channel, message, ports);
  }

  /**
   * Sends a message and blocks this thread until main sets `event.returnValue`; returns it. Messages main
   * sends meanwhile are emitted after this returns, in order.
   */
  sendSync<K extends ChannelName<C>>(channel: K, ...args: ChannelArgs<C, K>): ChannelResult<C, K>;
  sendSync(channel: string, ...args: unknown[]): any {
    return this.syncCall(this.syncTimeout, channel, args);
  }

  /**
   * `sendSync` with per-call options: `{ timeout }` in ms (0 waits for ever) instead of `syncTimeout`.
   * `sendSyncWith({ timeout: 500 }, 'config:get', key)`.
   */
  sendSyncWith<K extends ChannelName<C>>(options: Omit<CallOptions, 'signal'>, channel: K, ...args: ChannelArgs<C, K>): ChannelResult<C, K>;
  sendSyncWith(options: Omit<CallOptions, 'signal'>, channel: string, ...args: unknown[]): any {
    const { timeout, traceparent } = checkCallOptions(options, false);
    return this.syncCall(timeout ?? this.syncTimeout, channel, args, traceparent);
  }

  private syncCall(timeoutMs: number | undefined, channel: string, args: unknown[], traceparent?: string): any {
    if (!chSyncStart.hasSubscribers && !chSyncEnd.hasSubscribers) return this.syncCallRaw(timeoutMs, channel, args, traceparent, null);
    const traced: SyncTrace = { trace: null, t0: 0, replyBytes: 0 };
    let value: unknown;
    try {
      value = this.syncCallRaw(timeoutMs, channel, args, traceparent, traced);
    } catch (err) {
      if (traced.trace) this.wire!.traceEnd(chSyncEnd, traced.trace, traced.t0, err as Error, traced.replyBytes);
      throw err;
    }
    if (traced.trace) this.wire!.traceEnd(chSyncEnd, traced.trace, traced.t0, undefined, traced.replyBytes);
    return value;
  }

  private syncCallRaw(timeoutMs: number | undefined, channel: string, args: unknown[], traceparent: string | undefined,
    traced: SyncTrace | null): any {
    checkChannel(channel);
    const wire = this.ensure();
    if (this.resolved !== null && isLocalMainAddress(this.resolved)) {
      // The main that would answer runs on this very thread, which the call would block: it could never reply.
      throw makeError('ERR_IPC_SAME_THREAD',
        `sendSync('${channel}') to an ipcMain listening on this same thread would block it for ever: ` +
          `run the renderer in another process (fork) or worker thread, or use invoke()`);
    }
    const tp = outgoingTraceparent(traceparent);
    // A small flat request is written into a reused buffer, valid until the next such encode: only when no trace
    // subscriber runs between here and the write (one could call sendSync itself).
    const small = tp === undefined && traced === null ? encodeSmallSync(channel, args) : null;
    const encoded = small === null ? encodeMessage(channel, args, true, tp) : null;
    const payload = small ?? encoded!.payload;
    const blobs = encoded === null ? NO_BLOBS : encoded.blobs;
    wire.checkSize(payload, blobs);
    const id = wire.allocId();
    if (traced) {
      traced.trace = wire.traceMessage('out', 'sendSync', channel, id, wireBytes(encoded!), tp);
      traced.t0 = performance.now();
      if (chSyncStart.hasSubscribers) chSyncStart.publish(traced.trace);
    }
    const timeout = timeoutMs && timeoutMs > 0 ? timeoutMs : 0;
    let got: Buffer | Buffer[] | number;
    try {
      got = wire.call(id, payload, blobs, timeout, stillAlive, encoded?.handles ?? null, traced ? undefined : replyScratch);
      encoded?.sent?.();
    } catch (err) {
      const code = codeOf(err);
      if (code === 'ERR_IPC_DISCONNECTED') {
        // Later calls say the connection is closed (as after any end of it), not how this call ended.
        wire.markDisconnected(null);
        throw disconnectedError(`main went away during sendSync('${channel}')`);
      }
      if (code === 'ERR_IPC_TIMEOUT') {
        // The reply, if it ever comes, arrives as an ordinary frame and is dropped by onFrame.
        throw makeError('ERR_IPC_TIMEOUT', `sendSync('${channel}') got no reply within ${timeout} ms`, { timeout });
      }
      throw err;
    }
    let raw: Buffer | Buffer[];
    if (typeof got === 'number') {
      // The reply is in replyScratch, which the next call overwrites. Most answers are a few flat values, read
      // at once into strings and numbers; anything else is copied out first, since the general decoder may
      // hand the user views of its input (byte arrays).
      const value = decodeSmallReply(replyScratch, got);
      if (value !== NOT_SMALL) return value;
      raw = Buffer.allocUnsafeSlow(got);
      replyScratch.copy(raw, 0, 0, got);
    } else {
      raw = got;
      if (!traced && !Array.isArray(raw)) {
        // Most answers are a few flat values: read directly (anything else goes on to the general decoder).
        const value = decodeSmallReply(raw);
        if (value !== NOT_SMALL) return value;
      }
    }
    if (traced) {
      const parts = Array.isArray(raw) ? raw : [raw];
      for (const part of parts) traced.replyBytes += part.length + FRAME_HEADER_BYTES;
    }
    let body: ReplyBody;
    try {
      // [reply, ...blobs] when main sent the return value's large byte arrays out of band.
      const { payload: replyPayload, blobs: replyBlobs } = wire.syncReplyParts(raw);
      wire.armInboundHandles();
      body = decode(replyPayload, replyBlobs) as ReplyBody;
      if (!Array.isArray(body)) throw makeError('ERR_IPC_BAD_FRAME', 'Malformed sendSync reply');
    } catch (err) {
      wire.fail(err as Error);
      throw err;
    } finally {
      // What the reply did not adopt (everything, if it failed to decode) is closed.
      wire.closeInboundHandles();
    }
    if (body[0] === 0) return body[1];
    const remote = (body[1] ?? {}) as WireError;
    throw fromWireError(remote, typeof remote.message === 'string' ? remote.message : String(remote.text));
  }

  /**
   * A Buffer of `size` bytes (not zeroed) inside this connection's shared-memory pool: sending it to main moves
   * no bytes, only its place. It is an ordinary Buffer when shared memory is off, not agreed with main yet (main
   * answers the handshake asynchronously after the connection opens), or the pool has no room. Writing into it
   * after sending changes what main reads from that message's Buffer (only those bytes); allocate one per message.
   */
  allocShared(size: number): Buffer {
    return this.ensure().allocShared(size);
  }

  /** Calls main's `ipcMain.handle(channel)` handler; resolves with its result. */
  invoke<K extends ChannelName<C>>(channel: K, ...args: ChannelArgs<C, K>): InvokeCall<ChannelResult<C, K>>;
  invoke(channel: string, ...args: unknown[]): InvokeCall<any> {
    let wire: Link<IpcRendererInvokeEvent>;
    try {
      checkChannel(channel);
      wire = this.ensure();
    } catch (err) {
      return rejectedCall(err);
    }
    return wire.invoke(channel, args, undefined, this.invokeTimeout ?? 0);
  }

  /**
   * `invoke` with per-call options, keeping `invoke(channel, ...args)` exactly Electron's:
   * `invokeWith({ signal, timeout }, channel, ...args)`. When `signal` aborts or `timeout` ms pass first, the
   * promise rejects at once (an AbortError whose `cause` is the signal's reason, or ERR_IPC_TIMEOUT), main's
   * handler sees `event.signal` abort, and its late result is dropped. `timeout` overrides `invokeTimeout`.
   */
  invokeWith<K extends ChannelName<C>>(options: CallOptions, channel: K, ...args: ChannelArgs<C, K>): InvokeCall<ChannelResult<C, K>>;
  invokeWith(options: CallOptions, channel: string, ...args: unknown[]): InvokeCall<any> {
    let wire: Link<IpcRendererInvokeEvent>;
    let opts: CallOptions;
    try {
      opts = checkCallOptions(options, true);
      checkChannel(channel);
      wire = this.ensure();
    } catch (err) {
      return rejectedCall(err);
    }
    return wire.invoke(channel, args, opts.signal, opts.timeout ?? this.invokeTimeout ?? 0, opts.traceparent,
      opts.streamWindow);
  }

  /** Answers main's `peer.invoke(channel)`. */
  handle<K extends ChannelName<C>>(channel: K, fn: TypedHandler<IpcRendererInvokeEvent<C>, C, K>): void;
  handle(channel: string, fn: InvokeHandler<IpcRendererInvokeEvent>): void {
    this.handlers.handle(channel, fn);
    this.afterListenerChange(true);
  }
  handleOnce<K extends ChannelName<C>>(channel: K, fn: TypedHandler<IpcRendererInvokeEvent<C>, C, K>): void;
  handleOnce(channel: string, fn: InvokeHandler<IpcRendererInvokeEvent>): void {
    this.handlers.handleOnce(channel, fn);
    this.afterListenerChange(true);
  }
  removeHandler(channel: ChannelName<C>): void {
    this.handlers.removeHandler(channel);
    this.afterListenerChange(false);
  }

  /**
   * `on(channel, listener)` returning its own disposer, so a listener cannot be leaked by losing the function
   * needed to remove it: `const stop = ipcRenderer.subscribe('progress', onProgress); … stop();`.
   */
  subscribe<K extends ChannelName<C>>(channel: K, listener: (event: IpcRendererEvent<C>, ...args: ChannelArgs<C, K>) => void): () => void {
    this.on(channel, listener);
    return () => {
      this.removeListener(channel, listener);
    };
  }

  /** Disconnects after flushing what `send` accepted. Idempotent. Later calls throw ERR_IPC_DISCONNECTED. */
  close(): void {
    this.closedByUser = true;
    this.giveUp(null, 'ipcRenderer.close() was called while reconnecting');
    this.wire?.end();
  }

  override on<K extends ChannelName<C>>(channel: K, listener: (event: IpcRendererEvent<C>, ...args: ChannelArgs<C, K>) => void): this;
  override on(event: symbol, listener: (...args: any[]) => void): this;
  override on(event: string | symbol, listener: (...args: any[]) => void): this {
    super.on(event, listener);
    this.afterListenerChange(true);
    return this;
  }
  override addListener<K extends ChannelName<C>>(channel: K, listener: (event: IpcRendererEvent<C>, ...args: ChannelArgs<C, K>) => void): this;
  override addListener(event: symbol, listener: (...args: any[]) => void): this;
  override addListener(event: string | symbol, listener: (...args: any[]) => void): this {
    (this as IpcRenderer).on(event as string, listener);
    return this;
  }
  override prependListener<K extends ChannelName<C>>(channel: K, listener: (event: IpcRendererEvent<C>, ...args: ChannelArgs<C, K>) => void): this;
  override prependListener(event: symbol, listener: (...args: any[]) => void): this;
  override prependListener(event: string | symbol, listener: (...args: any[]) => void): this {
    super.prependListener(event, listener);
    this.afterListenerChange(true);
    return this;
  }
  override once<K extends ChannelName<C>>(channel: K, listener: (event: IpcRendererEvent<C>, ...args: ChannelArgs<C, K>) => void): this;
  override once(event: symbol, listener: (...args: any[]) => void): this;
  override once(event: string | symbol, listener: (...args: any[]) => void): this {
    super.once(event, listener);
    this.afterListenerChange(true);
    return this;
  }
  override prependOnceListener<K extends ChannelName<C>>(channel: K, listener: (event: IpcRendererEvent<C>, ...args: ChannelArgs<C, K>) => void): this;
  override prependOnceListener(event: symbol, listener: (...args: any[]) => void): this;
  override prependOnceListener(event: string | symbol, listener: (...args: any[]) => void): this {
    super.prependOnceListener(event, listener);
    this.afterListenerChange(true);
    return this;
  }
  override removeListener<K extends ChannelName<C>>(channel: K, listener: (event: IpcRendererEvent<C>, ...args: ChannelArgs<C, K>) => void): this;
  override removeListener(event: symbol, listener: (...args: any[]) => void): this;
  override removeListener(event: string | symbol, listener: (...args: any[]) => void): this {
    super.removeListener(event, listener);
    this.afterListenerChange(false);
    return this;
  }
  override off<K extends ChannelName<C>>(channel: K, listener: (event: IpcRendererEvent<C>, ...args: ChannelArgs<C, K>) => void): this;
  override off(event: symbol, listener: (...args: any[]) => void): this;
  override off(event: string | symbol, listener: (...args: any[]) => void): this {
    (this as IpcRenderer).removeListener(event as string, listener);
    return this;
  }
  override removeAllListeners(channel?: ChannelName<C>): this;
  override removeAllListeners(event?: string | symbol): this;
  override removeAllListeners(event?: string | symbol): this {
    // Node's EventEmitter tells "all events" from an explicit undefined by arguments.length.
    if (event === undefined) super.removeAllListeners();
    else super.removeAllListeners(event);
    if (event === undefined || event === 'error') EventEmitter.prototype.on.call(this, 'error', noop);
    this.afterListenerChange(false);
    return this;
  }

  /** Listeners (other than the built-in no-op 'error' one) and handlers keep the process alive. */
  private wantsRef(): boolean {
    if (this.handlers.size > 0) return true;
    // Sends queued while reconnecting hold the process until they are written (or reconnecting gives up).
    if (this.gap && this.gap.queue.length > 0) return true;
    for (const name of this.eventNames()) {
      const count = this.listenerCount(name);
      if (count > (name === 'error' ? 1 : 0)) return true;
    }
    return false;
  }

  private afterListenerChange(added: boolean): void {
    if (!this.ready) return;
    // A listener needs a connection to hear anything: connect now if we know where to.
    if (added && !this.wire && !this.closedByUser && (this.options.address || envAddress())) {
      this.connect();
    }
    this.wire?.updateRef();
    this.refGap();
  }

  /** The open connection, connecting on first use; throws ERR_IPC_DISCONNECTED once it is gone. */
  private ensure(): Link<IpcRendererInvokeEvent> {
    if (!this.wire) {
      if (this.closedByUser) throw disconnectedError('ipcRenderer.close() was called');
      this.connect();
    }
    const gap = this.currentGap();
    // A call is never queued nor retried (it must not run twice): until main answered a new handshake,
    // invoke and sendSync fail.
    if (gap) throw disconnectedError(`main went away; reconnecting (${gap.attempts} attempt(s) so far)`);
    const wire = this.wire!;
    wire.assertOpen();
    return wire;
  }

  /**
   * The reconnect gap, begun here if the connection is already known dead (a `sendSync` saw main go) but
   * its close has not been delivered yet; null when connected or not reconnecting.
   */
  private currentGap(): Gap | null {
    if (this.gap) return this.gap;
    if (this.reconnectOptions && !this.closedByUser && !this.gaveUp && this.wire && this.wire.isClosed) {
      this.gap = { since: Date.now(), attempts: 0, timer: null, connecting: false, lastError: null, queue: [], queuedBytes: 0 };
      return this.gap;
    }
    return null;
  }

  private enqueue(gap: Gap, channel: string, args: unknown[]): void {
    const encoded = encodeMessage(channel, args, true, outgoingTraceparent(undefined));
    // Byte arrays sent out of band are the caller's memory: copy them, as the message is what it was now.
    if (encoded.blobs.length) encoded.blobs = encoded.blobs.map((b) => Buffer.from(b));
    let bytes = encoded.payload.length;
    for (const blob of encoded.blobs) bytes += blob.length;
    const limit = this.reconnectOptions?.maxQueuedBytes ?? 0;
    if (gap.queuedBytes + bytes > limit) {
      throw makeError('ERR_IPC_RECONNECT_QUEUE_FULL',
        `send('${channel}') while reconnecting to main: ${bytes} bytes would exceed the ${limit} bytes queued at most ` +
          `(${gap.queue.length} message(s), ${gap.queuedBytes} bytes already queued); it was not queued`,
        { channel, size: bytes, limit });
    }
    gap.queue.push({ channel, encoded, bytes });
    gap.queuedBytes += bytes;
    this.refGap();
    this.wire?.updateRef(); // a new connection waiting for main's handshake
  }

  /** A reconnecting renderer keeps the process alive only if a connected one would, or sends are queued. */
  private refGap(): void {
    const gap = this.gap;
    if (!gap || !gap.timer) return;
    if (this.wantsRef()) gap.timer.ref();
    else gap.timer.unref();
  }

  private scheduleAttempt(): void {
    const gap = this.gap!;
    const opts = this.reconnectOptions;
    const elapsed = Date.now() - gap.since;
    if (!opts || !this.target || gap.attempts >= opts.maxAttempts || elapsed >= opts.timeout) {
      this.giveUp(gap.lastError);
      return;
    }
    const delay = Math.min(opts.maxDelay, opts.initialDelay * 2 ** Math.min(gap.attempts, 30));
    gap.attempts++;
    gap.connecting = false;
    gap.timer = setTimeout(() => this.attempt(), delay);
    this.refGap();
    this.link.emit('reconnecting', { attempt: gap.attempts, delay } satisfies ReconnectingInfo);
  }

  private attempt(): void {
    const gap = this.gap;
    if (!gap) return;
    gap.timer = null;
    try {
      // No waiting inside connect: a full listen queue is one more failed attempt, not a blocked thread.
      this.open(this.target!, 0);
    } catch (err) {
      gap.lastError = err as Error;
      this.scheduleAttempt();
    }
  }

  /** Main answered the handshake of a new connection: write what was queued, in order, then tell. */
  private endGap(wire: Link<IpcRendererInvokeEvent>): void {
    const gap = this.gap!;
    this.gap = null;
    let delivered = 0;
    for (const item of gap.queue) {
      try {
        wire.checkSize(item.encoded.payload, item.encoded.blobs);
        wire.writeEncoded(Kind.MESSAGE, 0, item.encoded);
        delivered++;
      } catch (err) {
        // Main now accepts smaller messages than when this one was queued: reported, the rest still goes.
        if (this.link.listenerCount('error') > 0) this.link.emit('error', err);
      }
    }
    wire.updateRef();
    this.link.emit('reconnect', { attempts: gap.attempts, delivered } satisfies ReconnectInfo);
  }

  /** Stops reconnecting; what was queued is reported as not sent. */
  private giveUp(cause: Error | null, why?: string): void {
    const gap = this.gap;
    if (!gap) return;
    this.gap = null;
    if (gap.timer) clearTimeout(gap.timer);
    this.gaveUp = true;
    const ms = Date.now() - gap.since;
    const err = makeError('ERR_IPC_RECONNECT_FAILED',
      `${why ?? `Gave up reconnecting to main after ${gap.attempts} attempt(s) in ${ms} ms`}; ` +
        `${gap.queue.length} queued message(s) were not sent${cause ? ` (last error: ${cause.message})` : ''}`,
      { attempts: gap.attempts, unsent: gap.queue.length, unsentChannels: gap.queue.map((q) => q.channel), cause });
    this.link.emit('reconnect-failed', err);
    if (this.link.listenerCount('error') > 0) this.link.emit('error', err);
  }

  private onFrame(kind: number, id: number, src: Buffer, start: number, end: number, blobs: Buffer[] | null): void {
    switch (kind) {
      case Kind.MESSAGE: {
        const { channel, args, traceparent, ports: refs } = decodeMessage(src, blobs, start, end);
        const ports = refs ? receivedPorts(refs) : [];
        if (chMessage.hasSubscribers && this.wire) {
          chMessage.publish(this.wire.traceMessage('in', 'send', channel, 0, receivedBytes(start, end, blobs), traceparent));
        }
        const event: IpcRendererEvent<C> = traceparent === undefined
          ? { sender: this, senderId: 0, ports }
          : { sender: this, senderId: 0, ports, traceparent };
        try {
          this.emit(channel, event, ...args);
        } finally {
          this.wire?.updateRef(); // once-listeners may have gone
        }
        return;
      }
      case Kind.WELCOME: {
        const body = decode(src, null, start, end) as ReplyBody;
        const welcome = (Array.isArray(body) ? body[1] : null) as
          | { version?: number; peerId?: number; maxFrame?: number; shm?: boolean; error?: { code: string; message: string } }
          | null;
        if (!welcome || typeof welcome !== 'object') throw makeError('ERR_IPC_BAD_FRAME', 'Malformed handshake reply');
        if (welcome.error) {
          const err = makeError(String(welcome.error.code), String(welcome.error.message));
          this.wire?.fail(err);
          return;
        }
        if (typeof welcome.peerId === 'number') this.peerIdValue = welcome.peerId;
        if (this.wire) this.wire.peerShm = welcome.shm === true && this.wire.shm !== null;
        if (chConnect.hasSubscribers && this.wire) chConnect.publish(this.wire.traceMessage('out', 'connect', '', 0, 0));
        if (typeof welcome.maxFrame === 'number' && welcome.maxFrame > 0 && this.wire) {
          this.wire.peerMaxFrame = welcome.maxFrame;
        }
        if (this.gap && this.wire && !this.wire.isClosed) this.endGap(this.wire);
        return;
      }
      case Kind.SYNC_REPLY:
        return; // the late reply to a sendSync that timed out: never handed to a later call
      default:
        throw makeError('ERR_IPC_BAD_FRAME', `Unexpected frame kind ${kind} from main`);
    }
  }

  private onClose(wire: Link<IpcRendererInvokeEvent>, err: Error | null): void {
    if (err && this.link.listenerCount('error') > 0 && codeOf(err)?.startsWith('ERR_IPC_')) this.link.emit('error', err);
    this.link.emit('disconnect', err);
    if (wire !== this.wire) return;
    const code = codeOf(err);
    if (code === 'ERR_IPC_PEER_REFUSED' || code === 'ERR_IPC_PROTOCOL_VERSION') {
      // Main refused this renderer: trying again would be refused again.
      this.gaveUp = true;
      this.giveUp(err, 'Main refused the new connection');
      return;
    }
    const gap = this.currentGap();
    if (!gap) return;
    if (err) gap.lastError = err;
    if (!gap.timer) this.scheduleAttempt();
  }
}

/** The default main check: same user as this process, or root (uid -1 where the OS has no uids). */
function sameUserOrRoot(creds: NativeCredentials): boolean {
  if (typeof process.getuid !== 'function' || creds.uid < 0) return true;
  return creds.uid === process.getuid() || creds.uid === 0;
}

/** The ready renderer endpoint of this thread; connects to `IPCWIRE_ADDRESS` on first use. */
export const ipcRenderer: IpcRenderer = new IpcRenderer();
