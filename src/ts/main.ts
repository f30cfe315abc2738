/**
 * The main side: `IpcMain` listens, accepts renderers (each a `Peer`), checks their handshake and dispatches
 * their messages to channel listeners and invoke handlers. Connection lifecycle lives on `ipcMain.peers`, never
 * on `ipcMain` itself, so no lifecycle event can collide with a channel name.
 */
import { EventEmitter } from 'node:events';
import { debuglog } from 'node:util';
import { Kind, PROTOCOL_VERSION, native, type NativeConnection, type NativeCredentials, type NativeServer } from './native';
import { decode, decodeMessage, decodeSmallMessage, encodeMessage, toWireError, type WireError } from './codec';
import { checkCallOptions, checkChannel, checkTimeout, codeOf, makeError, positiveInt, type CallOptions } from './errors';
import { HandlerRegistry, type InvokeHandler, type TypedHandler } from './handlers';
import {
  DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_QUEUED_BYTES, IncomingCall, Link, MAX_FRAME_BODY, receivedBytes, sharedMemoryConfig, wireBytes,
  type LinkOwner, type SharedMemoryConfig, type SharedMemoryOptions,
} from './link';
import { checkPathLength, inRuntimeDir, isWindows, resolveAddress, setLocalMainAddress, sweepRuntimeDir } from './address';
import type { AnyChannels, ChannelArgs, ChannelName, ChannelResult } from './channels';
import { rejectedCall, streamWindowOption, type InvokeCall, type StreamWindow } from './streams';
import { Inspector } from './inspector';
import { checkTransfer, receivedPorts, type MessagePortMain } from './ports';
import { chConnect, chHandleEnd, chHandleStart, chMessage, chSend, outgoingTraceparent, type IpcTraceMessage } from './trace';

/** Options of {@link IpcMain}. */
export interface IpcMainOptions {
  /** Largest frame (bytes) accepted from a renderer; bigger ones close that connection. Default 512 MiB. */
  maxMessageSize?: number;
  /**
   * Bytes that may wait, per renderer, for a renderer that does not read. A message written when more than this
   * is queued is refused and that renderer's connection is closed with ERR_IPC_PEER_NOT_READING (on
   * `ipcMain.peers` 'error' and 'disconnect'). Default 256 MiB; one connection holds at most this plus one message.
   */
  maxQueuedBytes?: number;
  /**
   * After the handshake, a renderer from which no whole frame arrives for this many ms is disconnected with
   * ERR_IPC_IDLE_TIMEOUT (a peer trickling bytes of a frame that never completes counts as idle). Off by default:
   * a renderer that only listens is idle by nature.
   */
  idleTimeout?: number;
  /**
   * Lets `npx ipcwire inspect <address>` attach (same user only) and watch this main's traffic live. Default:
   * off, or on when the environment has IPCWIRE_INSPECT=1. Collecting costs what tracing costs.
   */
  inspect?: boolean;
  /** A connection that has not said hello after this many ms is closed. Default 5000. */
  handshakeTimeout?: number;
  /** Refuse a renderer by its kernel credentials: return false to refuse. */
  allowPeer?: (credentials: NativeCredentials) => boolean;
  /** Listen backlog. Default 511 (a small backlog makes bursts of connects fail with EAGAIN). */
  backlog?: number;
  /** Mode of the socket file. Default 0o600. */
  socketMode?: number;
  /**
   * Milliseconds a `peer.invoke` waits for the renderer's handler before rejecting with ERR_IPC_TIMEOUT (the
   * handler's `event.signal` aborts). Default: no timeout, as Electron.
   */
  invokeTimeout?: number;
  /**
   * How far a stream that arrives as an invoke argument may run ahead of the handler's reading: chunks and bytes
   * in flight. Default `{ chunks: 32, bytes: 4 MiB }`. (A caller sets the window of a streamed result per call,
   * `invokeWith({ streamWindow })`.)
   */
  streamWindow?: StreamWindow;
  /**
   * Large byte arrays through shared memory (Linux, macOS): on by default with a 64 KiB threshold and a 64 MiB
   * pool per renderer for main's side; `false` keeps every byte on the socket. See "Large payloads" in the README.
   */
  shm?: boolean | SharedMemoryOptions;
}

/** The event a `send`/`sendSync` listener receives (`IpcMainEvent`). */
export class IpcMainEvent<C = AnyChannels, R = any> {
  /** The renderer that sent the message. */
  readonly sender: Peer<C>;
  /** The renderer's OS pid, from the kernel's peer credentials. */
  readonly processId: number;
  /** Electron compatibility: no frames here. */
  readonly frameId = 0;
  /** The MessagePorts transferred with a `postMessage`, in the order of its transfer list. */
  readonly ports: MessagePortMain[];
  /** The W3C trace context the renderer sent with this message, if any (see Tracing in the README). */
  readonly traceparent: string | undefined;

  /** @internal */
  constructor(sender: Peer<C>, traceparent?: string, ports: MessagePortMain[] = []) {
    this.sender = sender;
    this.ports = ports;
    this.processId = sender.pid;
    this.traceparent = traceparent;
  }

  /** Sends a message back to the renderer that sent this one. */
  reply<K extends ChannelName<C>>(channel: K, ...args: ChannelArgs<C, K>): void;
  reply(channel: string, ...args: unknown[]): void {
    (this.sender as Peer).send(channel, ...args);
  }

  /** The answer of a `sendSync` (the first assignment is the reply); ignored on asynchronous messages. */
  set returnValue(_value: R) {
    // Electron ignores returnValue on asynchronous messages too.
  }
  get returnValue(): R {
    return undefined as R;
  }
}

interface SyncTicket {
  peer: Peer<any>;
  id: number;
  channel: string;
}

/**
 * A `sendSync` whose event is garbage-collected without a returnValue would otherwise leave the renderer
 * blocked forever: the finalizer answers it with ERR_IPC_NO_REPLY. The held ticket never references the event.
 */
const droppedSyncEvents = new FinalizationRegistry<SyncTicket>((ticket) => {
  ticket.peer._replySync(ticket.id, [1, libraryError('ERR_IPC_NO_REPLY',
    `No reply to sendSync('${ticket.channel}'): main dropped the event without setting returnValue`)]);
});

const debug = debuglog('ipcwire');

/** How long a `sendSync` event may stay unanswered after its listeners returned before NODE_DEBUG=ipcwire says so. */
const UNANSWERED_WARNING_MS = 1000;

/**
 * Under NODE_DEBUG=ipcwire: a `sendSync` whose listeners all returned without `returnValue` keeps its renderer
 * blocked until someone sets it, or until the garbage collector collects the event (ERR_IPC_NO_REPLY), which an
 * idle main may take seconds to do. Say so after a second. Holds the event weakly, so that it can still be
 * collected.
 */
function warnIfStillUnanswered(event: IpcMainSyncEvent, channel: string, peerId: number): void {
  const ref = new WeakRef(event);
  const timer = setTimeout(() => {
    const e = ref.deref();
    if (e && !e.answered) {
      debug(`sendSync('%s') from renderer %d is still unanswered %d ms after its listeners returned: set ` +
        `event.returnValue (the renderer stays blocked until then, or gets ERR_IPC_NO_REPLY once the event is ` +
        `garbage-collected)`, channel, peerId, UNANSWERED_WARNING_MS);
    }
  }, UNANSWERED_WARNING_MS);
  timer.unref();
}

function libraryError(code: string, message: string): WireError {
  return { text: `Error: ${message}`, name: 'Error', message, code, props: { code } };
}

/** The event of a `sendSync` message: setting `returnValue` (once) answers the renderer. */
class IpcMainSyncEvent extends IpcMainEvent<any, any> {
  private done = false;
  private value: unknown;

  /** @internal */
  constructor(
    sender: Peer<any>,
    private readonly id: number,
    traceparent: string | undefined,
  ) {
    super(sender, traceparent);
  }

  override set returnValue(value: any) {
    if (this.done) return; // the first assignment is the reply
    this.done = true;
    this.value = value;
    droppedSyncEvents.unregister(this);
    this.sender._replySync(this.id, [0, value]);
  }
  override get returnValue(): any {
    return this.value;
  }

  /** @internal */
  get answered(): boolean {
    return this.done;
  }
  /** @internal */
  fail(wire: WireError): void {
    if (this.done) return;
    this.done = true;
    droppedSyncEvents.unregister(this);
    this.sender._replySync(this.id, [1, wire]);
  }
}

/** A main-side listener of channel `K` in map `C`; `event.returnValue` is what `sendSync` on it returns. */
export type MainListener<C, K extends keyof C> = (event: IpcMainEvent<C, ChannelResult<C, K>>, ...args: ChannelArgs<C, K>) => void;

/** The event an invoke handler receives (`IpcMainInvokeEvent`). */
export interface IpcMainInvokeEvent<C = AnyChannels> {
  readonly sender: Peer<C>;
  readonly processId: number;
  /**
   * Aborts when the renderer abandons the call (its signal aborted or its timeout passed) or disconnects: pass
   * it on to the work the handler does (`fetch(url, { signal: event.signal })`) or check `signal.aborted`.
   */
  readonly signal: AbortSignal;
  /** The W3C trace context the renderer sent with this call, if any (see Tracing in the README). */
  readonly traceparent: string | undefined;
}

class MainInvokeEvent implements IpcMainInvokeEvent<any> {
  readonly processId: number;
  constructor(
    readonly sender: Peer<any>,
    private readonly call: IncomingCall,
  ) {
    this.processId = sender.pid;
  }
  get signal(): AbortSignal {
    return this.call.signal;
  }
  get traceparent(): string | undefined {
    return this.call.traceparent;
  }
}

let nextPeerId = 1;

const inspectorCalls = makeError('ERR_IPC_PEER_REFUSED', 'An inspector connection cannot make calls');

/**
 * One connected renderer (Electron's `webContents`). Events: `'disconnect' (err | null)`, `'drain'`.
 */
export class Peer<C = AnyChannels> extends EventEmitter {
  /** Unique in this process. */
  readonly id = nextPeerId++;
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
  /**
   * Listeners and handlers for this renderer only (Electron's `webContents.ipc`): its messages are emitted here
   * first, then on `ipcMain`; a handler here takes precedence over `ipcMain.handle` for the same channel.
   */
  readonly ipc: IpcMainChannels<C> = new IpcMainChannels<C>();
  /** @internal */
  readonly link: Link<IpcMainInvokeEvent>;
  private destroyed = false;
  private handshaken = false;
  private refusal: Error | null = null;
  private handshakeTimer: NodeJS.Timeout | null = null;

  /** @internal */
  constructor(
    private readonly main: IpcMain<any>,
    conn: NativeConnection,
  ) {
    super();
    const { pid, uid, gid } = conn.credentials;
    this.pid = pid;
    this.uid = uid;
    this.gid = gid;
    const owner: LinkOwner<IpcMainInvokeEvent> = {
      onFrame: (kind, id, src, start, end, blobs) => this.onFrame(kind, id, src, start, end, blobs),
      onClose: (err) => this.onClose(err),
      onDrain: () => this.emit('drain'),
      wantsRef: () => false, // the listening socket keeps main alive, not its connections
      handlers: { get: (channel) => this.ipc._handlers.get(channel) ?? main._handlers.get(channel) },
      invokeEvent: (call) => new MainInvokeEvent(this, call),
      side: 'main',
      peerId: () => this.id,
      // An inspector's calls are answered with an error, never run.
      refusal: () => this.refusal ?? (this.inspecting ? inspectorCalls : null),
      inspectArgs: main._inspector
        ? (channel, args, bytes) => this.main._inspector?.incoming(this.id, 'invoke', channel, bytes, args)
        : undefined,
    };
    this.link = new Link(conn, owner, main._maxMessageSize, main._maxQueuedBytes, main._shm);
    this.link.streamWindow = main._streamWindow;
    this.link.updateRef();
    this.handshakeTimer = setTimeout(() => {
      if (this.handshaken) return;
      this.link.fail(makeError('ERR_IPC_HANDSHAKE_TIMEOUT',
        `Renderer (pid ${this.pid}) did not complete the handshake within ${main._handshakeTimeout} ms`));
    }, main._handshakeTimeout);
    this.handshakeTimer.unref();
  }

  /** Sends an asynchronous message to this renderer's `ipcRenderer.on(channel)` listeners. */
  send<K extends ChannelName<C>>(channel: K, ...args: ChannelArgs<C, K>): void;
  send(channel: string, ...args: unknown[]): void {
    checkChannel(channel);
    this.link.send(channel, args);
  }

  /**
   * A Buffer of `size` bytes (not zeroed) inside this connection's shared-memory pool: sending it to this
   * renderer moves no bytes, only its place. It is an ordinary Buffer when shared memory is off or not (yet)
   * agreed with this renderer, or the pool has no room. Writing into it after sending changes what the renderer
   * reads from that message's Buffer (only those bytes); allocate a new one per message.
   */
  allocShared(size: number): Buffer {
    return this.link.allocShared(size);
  }

  /**
   * Electron's `webContents.postMessage(channel, message, transfer)`: one message, received as `(event, message)`;
   * the MessagePorts in `transfer` move to the renderer and arrive in its `event.ports`, in this order.
   */
  postMessage<K extends ChannelName<C>>(channel: K, message: ChannelArgs<C, K>[0], transfer?: readonly unknown[]): void;
  postMessage(channel: string, message: unknown, transfer?: readonly unknown[]): void {
    checkChannel(channel);
    this.link.postMessage(channel, message, checkTransfer(transfer, null));
  }

  /** Calls the renderer's `ipcRenderer.handle(channel)` handler; resolves with its result. */
  invoke<K extends ChannelName<C>>(channel: K, ...args: ChannelArgs<C, K>): InvokeCall<ChannelResult<C, K>>;
  invoke(channel: string, ...args: unknown[]): InvokeCall<any> {
    try {
      checkChannel(channel);
    } catch (err) {
      return rejectedCall(err);
    }
    return this.link.invoke(channel, args, undefined, this.main._invokeTimeout);
  }

  /**
   * `invoke` with per-call options: `peer.invokeWith({ signal, timeout }, channel, ...args)`. When `signal`
   * aborts or `timeout` ms pass first, the promise rejects at once (an AbortError whose `cause` is the signal's
   * reason, or ERR_IPC_TIMEOUT), the renderer's handler sees `event.signal` abort, and its late result is
   * dropped. `timeout` overrides the `invokeTimeout` option of `IpcMain`.
   */
  invokeWith<K extends ChannelName<C>>(options: CallOptions, channel: K, ...args: ChannelArgs<C, K>): InvokeCall<ChannelResult<C, K>>;
  invokeWith(options: CallOptions, channel: string, ...args: unknown[]): InvokeCall<any> {
    let opts: CallOptions;
    try {
      opts = checkCallOptions(options, true);
      checkChannel(channel);
    } catch (err) {
      return rejectedCall(err);
    }
    return this.link.invoke(channel, args, opts.signal, opts.timeout ?? this.main._invokeTimeout, opts.traceparent,
      opts.streamWindow);
  }

  isDestroyed(): boolean {
    return this.destroyed;
  }

  /** Closes this renderer's connection after flushing what was already sent. */
  disconnect(): void {
    this.link.end();
  }

  /** Bytes queued for this renderer and not yet taken by the kernel. */
  get bufferedAmount(): number {
    return this.link.bufferedAmount;
  }

  /** @internal */
  _replySync(id: number, body: [0, unknown] | [1, WireError]): void {
    const bytes = this.link.reply(Kind.SYNC_REPLY, id, body);
    if (this.syncTraces !== null) {
      const traced = this.syncTraces.get(id);
      if (traced) {
        this.syncTraces.delete(id);
        const err = body[0] === 1 ? makeError(String(body[1].code ?? 'Error') as 'ERR_IPC_NO_REPLY', String(body[1].message ?? body[1].text)) : undefined;
        this.link.traceEnd(chHandleEnd, traced.trace, traced.t0, err, bytes);
      }
    }
  }

  /** sendSync calls being served whose start was traced, by call id (null until tracing is first seen). */
  private syncTraces: Map<number, { trace: IpcTraceMessage; t0: number }> | null = null;

  private traceIn(kind: 'send' | 'sendSync', channel: string, id: number, src: Buffer, start: number, end: number,
    blobs: Buffer[] | null, traceparent: string | undefined): IpcTraceMessage {
    return this.link.traceMessage('in', kind, channel, id, receivedBytes(start, end, blobs), traceparent);
  }

  private onFrame(kind: number, id: number, src: Buffer, start: number, end: number, blobs: Buffer[] | null): void {
    if (!this.handshaken) {
      if (kind !== Kind.HELLO) throw makeError('ERR_IPC_BAD_FRAME', 'Expected a handshake as the first frame');
      this.onHello(src.subarray(start, end));
      return;
    }
    if (this.inspecting) return; // an inspector only listens
    if (this.refusal) {
      // A refused renderer's pipelined calls never reach listeners; a blocked sendSync learns why at once.
      if (kind === Kind.SYNC) {
        const { code, message } = this.refusal as Error & { code: string };
        this._replySync(id, [1, libraryError(code, message)]);
      }
      return;
    }
    switch (kind) {
      case Kind.MESSAGE: {
        const { channel, args, traceparent, ports } = decodeMessage(src, blobs, start, end);
        if (chMessage.hasSubscribers) chMessage.publish(this.traceIn('send', channel, 0, src, start, end, blobs, traceparent));
        if (this.main._inspector !== null) this.main._inspector.incoming(this.id, 'send', channel, receivedBytes(start, end, null), args);
        const event = new IpcMainEvent(this, traceparent, ports ? receivedPorts(ports) : undefined);
        this.ipc.emit(channel, event, ...args);
        this.main.emit(channel, event, ...args);
        return;
      }
      case Kind.SYNC: {
        // Most calls are a few flat values: read directly (anything else goes to the general decoder).
        const { channel, args, traceparent } = (blobs === null ? decodeSmallMessage(src, start, end) : null) ??
          decodeMessage(src, blobs, start, end);
        if (chHandleStart.hasSubscribers || chHandleEnd.hasSubscribers) {
          const trace = this.traceIn('sendSync', channel, id, src, start, end, blobs, traceparent);
          (this.syncTraces ??= new Map()).set(id, { trace, t0: performance.now() });
          if (chHandleStart.hasSubscribers) chHandleStart.publish(trace);
        }
        if (this.main._inspector !== null) this.main._inspector.incoming(this.id, 'sendSync', channel, receivedBytes(start, end, null), args);
        if (this.ipc.listenerCount(channel) + this.main.listenerCount(channel) === 0) {
          this._replySync(id, [1, libraryError('ERR_IPC_NO_LISTENER',
            `No listener for sendSync('${channel}') in main`)]);
          return;
        }
        const event = new IpcMainSyncEvent(this, id, traceparent);
        try {
          this.ipc.emit(channel, event, ...args);
          this.main.emit(channel, event, ...args);
          // Most listeners answer synchronously; only an event still unanswered needs the GC safety net
          // (registering every event cost ~3 µs per call).
          if (!event.answered) {
            droppedSyncEvents.register(event, { peer: this, id, channel }, event);
            if (debug.enabled) warnIfStillUnanswered(event, channel, this.id);
          }
        } catch (err) {
          const wire = toWireError(err);
          // The renderer's error carries the thrown error's own code, or ERR_IPC_LISTENER_THREW when it has none.
          const code = wire.code ?? 'ERR_IPC_LISTENER_THREW';
          event.fail({ ...wire, code, props: { ...wire.props, code },
            message: `A listener of sendSync('${channel}') threw: ${wire.text}` });
          throw err;
        }
        return;
      }
      default:
        throw makeError('ERR_IPC_BAD_FRAME', `Unexpected frame kind ${kind} from a renderer`);
    }
  }

  private onHello(payload: Buffer): void {
    const hello = decode(payload) as {
      magic?: unknown; version?: unknown; maxFrame?: unknown; syncBlobs?: unknown; inspect?: unknown;
      shm?: unknown; shmSync?: unknown; shmEcho?: unknown; shmEchoInvoke?: unknown;
    } | null;
    if (typeof hello !== 'object' || hello === null || hello.magic !== 'ipcwire') {
      throw makeError('ERR_IPC_BAD_FRAME', 'Not an ipcwire handshake');
    }
    this.handshaken = true;
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    let refusal: Error | null = null;
    if (hello.version !== PROTOCOL_VERSION) {
      refusal = makeError('ERR_IPC_PROTOCOL_VERSION',
        `Protocol version mismatch: main speaks ${PROTOCOL_VERSION}, renderer (pid ${this.pid}) speaks ${String(hello.version)}`);
    } else if (hello.inspect === true && !this.main._inspector) {
      refusal = makeError('ERR_IPC_PEER_REFUSED',
        'This main does not allow inspection: create it with new IpcMain({ inspect: true }) or set IPCWIRE_INSPECT=1');
    } else if (hello.inspect === true && !isWindows && this.uid !== process.getuid?.()) {
      refusal = makeError('ERR_IPC_PEER_REFUSED', `Only the user running main may inspect it (uid ${this.uid} may not)`);
    } else if (this.main._allowPeer && !this.main._allowPeer({ pid: this.pid, uid: this.uid, gid: this.gid })) {
      refusal = makeError('ERR_IPC_PEER_REFUSED', `Renderer (pid ${this.pid}, uid ${this.uid}) was refused by main`);
    }
    if (typeof hello.maxFrame === 'number' && hello.maxFrame > 0) this.link.peerMaxFrame = hello.maxFrame;
    this.link.peerTakesSyncBlobs = hello.syncBlobs === true;
    this.link.peerShm = hello.shm === true && this.link.shm !== null;
    this.link.peerShmSync = this.link.peerShm && hello.shmSync === true;
    this.link.peerShmEcho = this.link.peerShmSync && hello.shmEcho === true;
    this.link.peerShmEchoInvoke = this.link.peerShm && hello.shmEchoInvoke === true;
    if (refusal) {
      const { code, message } = refusal as Error & { code: string };
      this.refusal = refusal;
      this.link.failure = refusal;
      this.link.reply(Kind.WELCOME, 0, [0, { version: PROTOCOL_VERSION, error: { code, message } }]);
      // The renderer closes when it reads the refusal; calls it pipelined meanwhile are answered with the
      // refusal (see onFrame). One that never closes is cut off after the handshake timeout.
      const cutoff = setTimeout(() => this.link.destroy(), this.main._handshakeTimeout);
      cutoff.unref();
      this.handshakeTimer = cutoff;
      return;
    }
    const welcome: Record<string, unknown> = { version: PROTOCOL_VERSION, peerId: this.id, maxFrame: this.main._maxMessageSize };
    if (this.link.peerShm) welcome.shm = true;
    this.link.reply(Kind.WELCOME, 0, [0, welcome]);
    if (hello.inspect === true) {
      // An inspector, not a renderer: it is sent snapshots and is never one of main's peers.
      this.inspecting = true;
      this.detachInspector = this.main._inspector!.attach({
        push: (snapshot) => {
          try {
            this.link.send('ipcwire:inspect', [snapshot]);
          } catch {
            // going away: its close detaches it
          }
        },
      });
      return;
    }
    if (chConnect.hasSubscribers) chConnect.publish(this.link.traceMessage('in', 'connect', '', 0, 0));
    this.main._addPeer(this);
    if (this.main._idleTimeout > 0) this.watchIdle(this.main._idleTimeout);
  }

  private idleTimer: NodeJS.Timeout | null = null;

  /** Disconnects this renderer when no whole frame arrived from it for `ms` (checked lazily, one timer). */
  private watchIdle(ms: number): void {
    const check = (): void => {
      this.idleTimer = null;
      if (this.destroyed || this.link.isClosed) return;
      const idle = Date.now() - this.link.lastInbound;
      if (idle >= ms) {
        this.link.fail(makeError('ERR_IPC_IDLE_TIMEOUT',
          `Renderer (pid ${this.pid}) sent nothing for ${idle} ms (idleTimeout ${ms} ms); disconnected`,
          { idleTimeout: ms }));
        return;
      }
      this.idleTimer = setTimeout(check, ms - idle);
      this.idleTimer.unref();
    };
    this.idleTimer = setTimeout(check, ms);
    this.idleTimer.unref();
  }

  /** An inspector client (`npx ipcwire inspect`), not a renderer. */
  private inspecting = false;
  private detachInspector: (() => void) | null = null;

  private onClose(err: Error | null): void {
    this.detachInspector?.();
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.destroyed = true;
    this.main._removePeer(this, err);
  }
}

/**
 * The connected renderers, and their lifecycle: `'connect' (peer)`, `'disconnect' (peer, err | null)`,
 * `'error' (err, peer | null)` for connection-level failures. Iterable over peers.
 */
export class PeerRegistry<C = AnyChannels> extends EventEmitter {
  private readonly byId = new Map<number, Peer<C>>();

  get size(): number {
    return this.byId.size;
  }
  get(id: number): Peer<C> | undefined {
    return this.byId.get(id);
  }
  list(): Peer<C>[] {
    return [...this.byId.values()];
  }
  [Symbol.iterator](): IterableIterator<Peer<C>> {
    return this.byId.values();
  }

  /** @internal */
  _add(peer: Peer<C>): void {
    this.byId.set(peer.id, peer);
    this.emit('connect', peer);
  }

  /** @internal */
  _remove(peer: Peer<C>, err: Error | null): void {
    const known = this.byId.delete(peer.id);
    if (err && codeOf(err)?.startsWith('ERR_IPC_')) this._error(err, peer);
    if (known) {
      peer.emit('disconnect', err);
      this.emit('disconnect', peer, err);
    }
  }

  /** @internal Connection-level errors go to 'error' listeners, or become a process warning. */
  _error(err: Error, peer: Peer<C> | null): void {
    if (this.listenerCount('error') > 0) this.emit('error', err, peer);
    else process.emitWarning(`ipcwire: ${err.message}`, { code: codeOf(err) });
  }
}

/**
 * Channel listeners and invoke handlers: what `ipcMain` is, and what each peer's `peer.ipc` is (Electron's
 * `webContents.ipc`: listeners and handlers for that renderer only). A fresh instance has a no-op `'error'`
 * listener, so `'error'` is an ordinary channel.
 */
export class IpcMainChannels<C = AnyChannels> extends EventEmitter {
  /** @internal */ readonly _handlers = new HandlerRegistry<IpcMainInvokeEvent>();

  constructor() {
    super();
    // As Electron's ipcMain: a renderer may use the channel 'error' without crashing main.
    EventEmitter.prototype.on.call(this, 'error', () => {});
  }

  /** Registers the handler of `ipcRenderer.invoke(channel)`. */
  handle<K extends ChannelName<C>>(channel: K, fn: TypedHandler<IpcMainInvokeEvent<C>, C, K>): void;
  handle(channel: string, fn: InvokeHandler<IpcMainInvokeEvent>): void {
    this._handlers.handle(channel, fn);
  }
  handleOnce<K extends ChannelName<C>>(channel: K, fn: TypedHandler<IpcMainInvokeEvent<C>, C, K>): void;
  handleOnce(channel: string, fn: InvokeHandler<IpcMainInvokeEvent>): void {
    this._handlers.handleOnce(channel, fn);
  }
  removeHandler(channel: ChannelName<C>): void {
    this._handlers.removeHandler(channel);
  }

  /**
   * `on(channel, listener)` returning its own disposer, so a listener cannot be leaked by losing the function
   * needed to remove it: `const stop = ipcMain.subscribe('log', onLog); … stop();`.
   */
  subscribe<K extends ChannelName<C>>(channel: K, listener: MainListener<C, K>): () => void {
    this.on(channel, listener);
    return () => {
      this.removeListener(channel, listener);
    };
  }

  override on<K extends ChannelName<C>>(channel: K, listener: MainListener<C, K>): this;
  override on(event: symbol, listener: (...args: any[]) => void): this;
  override on(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.on(event, listener);
  }
  override addListener<K extends ChannelName<C>>(channel: K, listener: MainListener<C, K>): this;
  override addListener(event: symbol, listener: (...args: any[]) => void): this;
  override addListener(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.addListener(event, listener);
  }
  override prependListener<K extends ChannelName<C>>(channel: K, listener: MainListener<C, K>): this;
  override prependListener(event: symbol, listener: (...args: any[]) => void): this;
  override prependListener(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.prependListener(event, listener);
  }
  override once<K extends ChannelName<C>>(channel: K, listener: MainListener<C, K>): this;
  override once(event: symbol, listener: (...args: any[]) => void): this;
  override once(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.once(event, listener);
  }
  override prependOnceListener<K extends ChannelName<C>>(channel: K, listener: MainListener<C, K>): this;
  override prependOnceListener(event: symbol, listener: (...args: any[]) => void): this;
  override prependOnceListener(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.prependOnceListener(event, listener);
  }
  override removeListener<K extends ChannelName<C>>(channel: K, listener: MainListener<C, K>): this;
  override removeListener(event: symbol, listener: (...args: any[]) => void): this;
  override removeListener(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.removeListener(event, listener);
  }
  override off<K extends ChannelName<C>>(channel: K, listener: MainListener<C, K>): this;
  override off(event: symbol, listener: (...args: any[]) => void): this;
  override off(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.off(event, listener);
  }
}

/**
 * The main process's endpoint. An EventEmitter whose event names are channels; listeners get
 * `(event, ...args)`. `ipcMain` is a ready instance.
 */
export class IpcMain<C = AnyChannels> extends IpcMainChannels<C> {
  /** Connected renderers and their lifecycle events. */
  readonly peers: PeerRegistry<C> = new PeerRegistry<C>();
  /** @internal */ readonly _maxMessageSize: number;
  /** @internal */ readonly _handshakeTimeout: number;
  /** @internal */ readonly _maxQueuedBytes: number;
  /** @internal */ readonly _shm: SharedMemoryConfig | null;
  /** @internal */ readonly _idleTimeout: number;
  /** @internal Collecting for inspector clients; null unless inspection is allowed and listening. */
  _inspector: Inspector | null = null;
  private readonly inspectAllowed: boolean;
  /** @internal */ readonly _allowPeer: ((credentials: NativeCredentials) => boolean) | undefined;
  /** @internal */ readonly _invokeTimeout: number;
  /** @internal */ readonly _streamWindow: Required<StreamWindow>;
  private readonly backlog: number;
  private readonly socketMode: number;
  private server: NativeServer | null = null;
  private readonly pendingPeers = new Set<Peer<C>>();
  private _address: string | null = null;

  constructor(options: IpcMainOptions = {}) {
    super();
    this._maxMessageSize = positiveInt(options.maxMessageSize, DEFAULT_MAX_MESSAGE_SIZE, 'maxMessageSize', MAX_FRAME_BODY);
    this._handshakeTimeout = positiveInt(options.handshakeTimeout, 5000, 'handshakeTimeout');
    this._maxQueuedBytes = positiveInt(options.maxQueuedBytes, DEFAULT_MAX_QUEUED_BYTES, 'maxQueuedBytes');
    this._shm = sharedMemoryConfig(options.shm);
    this._idleTimeout = positiveInt(options.idleTimeout, 0, 'idleTimeout') || 0;
    if (options.inspect !== undefined && typeof options.inspect !== 'boolean') {
      throw new TypeError('The "inspect" option must be a boolean');
    }
    this.inspectAllowed = options.inspect ?? process.env.IPCWIRE_INSPECT === '1';
    this.backlog = positiveInt(options.backlog, 511, 'backlog');
    this.socketMode = options.socketMode ?? 0o600;
    if (options.allowPeer !== undefined && typeof options.allowPeer !== 'function') {
      throw new TypeError('The "allowPeer" option must be a function');
    }
    this._allowPeer = options.allowPeer;
    this._invokeTimeout = options.invokeTimeout === undefined ? 0 : checkTimeout(options.invokeTimeout, 'invokeTimeout');
    this._streamWindow = streamWindowOption(options.streamWindow);
  }

  /** The address renderers connect to, once listening. */
  get address(): string | null {
    return this._address;
  }

  /** Whether `listen` succeeded and `close` has not been called since. */
  get listening(): boolean {
    return this.server !== null;
  }

  /**
   * Listens synchronously on a bare name, an absolute socket path (`\\.\pipe\name` on Windows), or, with no
   * argument, a fresh private address. Returns the address. Claiming a path is atomic (a lock file,
   * `<path>.lock`, is held for the server's life): a path a live server holds fails with EADDRINUSE, a socket
   * file left by a dead server is replaced, any other file at the path is never touched (EADDRINUSE).
   */
  listen(address?: string): string {
    if (this.server) {
      throw makeError('ERR_IPC_ALREADY_LISTENING', `Already listening on ${this._address}`);
    }
    const binding = native();
    const resolved = resolveAddress(address);
    checkPathLength(resolved, binding.maxPathLength);
    if (inRuntimeDir(resolved)) sweepRuntimeDir((socketPath) => binding.removeStale(socketPath));
    this.server = binding.listen(resolved, this.backlog, this.socketMode,
      (conn) => this.onConnection(conn),
      (err) => this.peers._error(err, null));
    this._address = resolved;
    setLocalMainAddress(resolved, true);
    if (this.inspectAllowed) {
      this._inspector = new Inspector((id) => id !== null && this.peers.get(id) !== undefined,
        () => ({ address: this._address, renderers: this.peers.size }));
      this._inspector.start();
    }
    if (!isWindows) {
      // A named pipe goes with its process; a socket file and its lock would stay.
      listeningMains.add(this);
      installSocketCleanup();
    }
    return resolved;
  }

  /** Stops listening, disconnects every renderer (after flushing), removes the socket file. Idempotent. */
  close(): void {
    const server = this.server;
    if (!server) return;
    this.server = null;
    listeningMains.delete(this);
    if (this._address) setLocalMainAddress(this._address, false);
    server.close(); // also removes the socket file and its lock
    this._inspector?.stop();
    this._inspector = null;
    for (const peer of [...this.peers, ...this.pendingPeers]) peer.link.end();
  }

  /** @internal At process exit: give up the address (socket file and lock) without the rest of close(). */
  _releaseAddress(): void {
    listeningMains.delete(this);
    this.server?.close();
  }

  /** Keeps (default) or stops keeping the process alive through the listening socket. */
  ref(): this {
    this.server?.ref();
    return this;
  }
  unref(): this {
    this.server?.unref();
    return this;
  }

  /** Sends one message to every connected renderer (encoded once). */
  broadcast<K extends ChannelName<C>>(channel: K, ...args: ChannelArgs<C, K>): void;
  broadcast(channel: string, ...args: unknown[]): void {
    checkChannel(channel);
    const tp = outgoingTraceparent(undefined);
    const encoded = encodeMessage(channel, args, true, tp);
    // OS handles in it go to every peer (each gets its own duplicates); the sender's are let go once, after all.
    const sent = encoded.sent;
    encoded.sent = null;
    for (const peer of this.peers) {
      try {
        peer.link.writeEncoded(Kind.MESSAGE, 0, encoded);
        if (chSend.hasSubscribers) chSend.publish(peer.link.traceMessage('out', 'send', channel, 0, wireBytes(encoded), tp));
      } catch {
        // a peer that is going away hears nothing more
      }
    }
    sent?.();
  }

  private onConnection(conn: NativeConnection): void {
    if (!this.server) {
      conn.close();
      return;
    }
    const peer = new Peer<C>(this as IpcMain<any>, conn);
    this.pendingPeers.add(peer);
  }

  /** @internal */
  _addPeer(peer: Peer<C>): void {
    this.pendingPeers.delete(peer);
    this.peers._add(peer);
  }

  /** @internal */
  _removePeer(peer: Peer<C>, err: Error | null): void {
    this.pendingPeers.delete(peer);
    this.peers._remove(peer, err);
  }
}


const listeningMains = new Set<IpcMain<any>>();
let socketCleanupInstalled = false;

/** A main that exits (normally or by process.exit) without close() leaves no socket file behind. */
function installSocketCleanup(): void {
  if (socketCleanupInstalled) return;
  socketCleanupInstalled = true;
  process.on('exit', () => {
    for (const main of listeningMains) main._releaseAddress();
  });
}

/** The ready main-process endpoint. */
export const ipcMain: IpcMain = new IpcMain();
