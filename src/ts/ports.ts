/**
 * MessagePorts between processes (Electron's `MessageChannelMain` / `MessagePortMain`).
 *
 * A channel is a connected socket pair (a named-pipe pair on Windows). An end that is used (started, or posted on)
 * wraps its side in a {@link Link}: the same framing, out-of-band Buffers and write batching as a renderer↔main
 * connection. Once both ends are placed, their messages go straight from one process to the other.
 *
 * An end moves to another process as a descriptor attached to a message on a carrier (a renderer↔main connection,
 * or another port), with its state: role, received-but-undelivered messages (the backlog), and whether the other end
 * waits to be resumed. An end that is not reading (fresh from its channel, or arrived and not used yet) has read
 * nothing the socket still owes it, so its state travels inline in that message. An end that reads may be in the
 * middle of a frame: it first asks the other end to stop writing (PAUSE); the other end answers PAUSED as the last
 * thing it writes until told to RESUME. Everything the leaving end read before PAUSED then travels in a PORT_STATE
 * frame on the same carrier, after the message that carried the descriptor; the receiving process delivers that
 * backlog before anything it reads itself, and its first frame on the socket is RESUME. When both ends leave at
 * once, the end created as `port2` gives way (answers PAUSED, leaves after RESUME), so one moves at a time.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { Kind, native } from './native';
import { TRANSFER_ONLY, decode, encodeValue, registerHandleType, type Encoded } from './codec';
import { DEFAULT_MAX_MESSAGE_SIZE, Link, type LinkOwner } from './link';
import { makeError } from './errors';

/** Control frames on a port's own socket (kind PORT; the operation is the frame id). */
const PAUSE = 1;
const PAUSED = 2;
const RESUME = 3;

/**
 * The most messages a port that reads but was not started holds (a port reads once it posted, or after
 * start()); past this, or {@link PORT_QUEUE_MAX_BYTES}, the port closes (both ends emit 'close'). A port that was
 * neither started nor posted on reads nothing: messages for it wait in the socket and in the sender's write
 * queue, which closes the port past {@link PORT_MAX_QUEUED_BYTES}.
 */
export const PORT_QUEUE_MAX_MESSAGES = 100_000;
/** The most payload bytes a port that reads but was not started holds (see {@link PORT_QUEUE_MAX_MESSAGES}). */
export const PORT_QUEUE_MAX_BYTES = 64 * 1024 * 1024;
/** Bytes that may wait in a port's write queue for an end that does not read; past it the port closes. */
export const PORT_MAX_QUEUED_BYTES = 64 * 1024 * 1024;

/** A transferred port on the wire (extension 0x25, one descriptor): a token, and its state when it travels inline. */
type WireRef = [token: string, inline: WireState | null];
/** An end's state when it moves. */
export interface WireState {
  /** 0 for a channel's port1, 1 for its port2: who gives way when both ends move at once. */
  r: number;
  /** The other end was paused and waits for RESUME. */
  o: boolean;
  /** The other end had closed: deliver the backlog, then 'close'. */
  c: boolean;
  /** Messages read and not delivered, in order: [data, ports]. */
  b: Array<[unknown, MessagePortMain[]]>;
}

/** The event a port's 'message' listeners receive (a MessageEvent-like object). */
export class PortMessageEvent {
  readonly type = 'message';
  /** @internal */
  constructor(
    /** The message: a structured clone of what the other end posted. */
    readonly data: unknown,
    /** The ports transferred with it, in the order of the sender's transfer list. */
    readonly ports: MessagePortMain[],
  ) {}
}

/** Where a moving end's state goes: the carrier its descriptor left on. */
interface Carrier {
  /** Sends `[token, state]` (PORT_STATE); the ports in its backlog move with it. */
  sendState(token: string, state: WireState): void;
  /** A port carrier must not itself move before the states of the ports it carried went out. */
  hold?(delta: number): void;
}

/** A port put in an outgoing frame under `token`: once the frame is written, it leaves (see beginMove). */
export type Move = [port: MessagePortMain, token: string];

const enum Phase {
  /** Holds a descriptor and reads nothing (fresh, or arrived and not used yet). */
  Idle,
  /** Arrived; its state (the backlog) comes in a later frame. Reads nothing. */
  Awaiting,
  /** Reads and writes through its link. */
  Live,
  /** Asked the other end to pause; waits for PAUSED. */
  Leaving,
  /** Moved to another process. */
  Gone,
  Closed,
}

/** Arrived ports waiting for their state, by the token the sending process chose. */
const awaiting = new Map<string, MessagePortMain>();

/** Descriptors of ports collected while not reading (no link owns them): closed when the port is collected. */
const idleFinalizer = new FinalizationRegistry<{ fd: number }>((held) => {
  if (held.fd >= 0) closeQuietly(held.fd);
});

/**
 * One end of a {@link MessageChannelMain} (Electron's `MessagePortMain`). Events: `'message'` (a
 * {@link PortMessageEvent}: `data` and `ports`) once {@link start} was called, and `'close'` once the other end
 * closed or its process ended (after its earlier messages), or this end was closed.
 */
export class MessagePortMain extends EventEmitter {
  private phase: Phase;
  /** The socket: owned here while Idle/Awaiting, by `link` while Live/Leaving (the number is still ours to pass). */
  private fd: number;
  private fdHold: { fd: number } | null = null;
  private link: Link<unknown> | null = null;
  private role: number;
  private started = false;
  private closeEmitted = false;
  private queue: PortMessageEvent[] = [];
  private queuedBytes = 0;
  private delivering = false;
  /** The other end paused us (it is moving): until RESUME only control frames are written. */
  private mayWrite = true;
  /** Frames posted while we may not write, or before our state arrived, in order. */
  private outbox: Array<{ kind: Kind; encoded: Encoded; moves: Move[] }> = [];
  /** The other end was paused (by a previous holder) and waits for our RESUME. */
  private owesResume = false;
  /** The other end closed before we read (it arrived so, or closed while we were leaving). */
  private peerEnded = false;
  /** A move that has to wait (we are paused, or ports we carried are still leaving). */
  private pendingMove: [Carrier, string] | null = null;
  /** While Leaving, and after: where our state went / goes. */
  private moveTo: [Carrier, string] | null = null;
  /** Ports carried by this one whose states have not gone out yet (they follow on this port, so we may not move). */
  private carriedPending = 0;
  /** The carrier this end arrived on, while Awaiting (its loss closes the end). */
  private arrivedOn: Link<unknown> | null = null;
  private reserved = false;
  /** While awaiting its state: the token it arrived under. */
  private token: string | null = null;

  /** @internal */
  constructor(fd: number, role: number, phase: Phase = Phase.Idle) {
    super();
    this.fd = fd;
    this.role = role;
    this.phase = phase;
    this.fdHold = { fd };
    idleFinalizer.register(this, this.fdHold, this);
    // Ref'd while started with a 'message' listener: adding or removing one re-evaluates it.
    this.on('newListener', (name) => name === 'message' && process.nextTick(() => this.link?.updateRef()));
    this.on('removeListener', (name) => name === 'message' && this.link?.updateRef());
  }

  /**
   * Sends `message` (any value the structured clone takes; large Buffers out of band) to the other end. `transfer`:
   * ports moved along with it; they arrive in the receiver's `event.ports`, in this order, and are unusable here
   * from now on. Posting on a closed port does nothing, as in Electron; on a port transferred away, it throws.
   */
  postMessage(message: unknown, transfer?: readonly MessagePortMain[]): void {
    if (this.phase === Phase.Gone || this.phase === Phase.Leaving || this.reserved) {
      throw makeError('ERR_IPC_PORT_TRANSFERRED', 'postMessage on a MessagePortMain that was transferred away');
    }
    if (this.phase === Phase.Closed) return;
    const ports = checkTransfer(transfer, this);
    const { encoded, moves } = encodeWithPorts([message, ports], 'message', ports);
    if (this.phase === Phase.Idle) this.goLive();
    this.writeOrQueue(Kind.MESSAGE, encoded, moves);
  }

  /** Starts delivering messages: those queued so far, in order, then each as it arrives. */
  start(): void {
    if (this.started || this.phase === Phase.Gone || this.phase === Phase.Leaving || this.reserved) return;
    this.started = true;
    if (this.phase === Phase.Idle) this.goLive();
    this.link?.updateRef();
    this.scheduleDelivery();
  }

  /**
   * Closes this end. The other end emits 'close' after the messages posted here before (they are still
   * delivered); this end emits 'close' too. Idempotent.
   */
  close(): void {
    if (this.phase === Phase.Closed || this.phase === Phase.Gone || this.reserved) return;
    if (this.link) this.link.end();
    else this.releaseFd(true);
    this.link = null;
    if (this.token !== null && awaiting.get(this.token) === this) awaiting.delete(this.token);
    if (this.arrivedOn) carrierWatch(this.arrivedOn).delete(this);
    this.arrivedOn = null;
    this.phase = Phase.Closed;
    this.dropOutbox();
    this.dropQueue();
    this.emitClose();
  }

  /** Undelivered messages go with a closed port; the ports they carried are closed with them. */
  private dropQueue(): void {
    const queue = this.queue;
    this.queue = [];
    for (const ev of queue) for (const port of ev.ports) port.close();
  }

  // --- moving ----------------------------------------------------------------------------------------------

  /** @internal Why it cannot be put in a transfer list, or null. */
  _transferProblem(): string | null {
    if (this.phase === Phase.Closed) return 'is closed';
    if (this.phase === Phase.Gone || this.phase === Phase.Leaving || this.reserved) return 'was already transferred';
    return null;
  }

  /** @internal Its form in an outgoing frame: its descriptor, a token, and its state when that is complete now. */
  _encode(moves: Move[]): { fds: number[]; data: WireRef } {
    const token = randomBytes(12).toString('base64url');
    moves.push([this, token]);
    // An end that reads nothing has nothing in flight: with nothing queued either, its whole state travels inline.
    // Otherwise a PORT_STATE frame follows on the same connection (so its backlog is encoded as every message is).
    const inline = this.phase === Phase.Idle && this.queue.length === 0 ? this.stateNow() : null;
    return { fds: [this.fd], data: [token, inline] };
  }

  /** The state of an end that does not read (Idle), or of one that stopped reading (after PAUSED). */
  private stateNow(): WireState {
    const b: Array<[unknown, MessagePortMain[]]> = this.queue.map((ev) => [ev.data, ev.ports]);
    return { r: this.role, o: this.owesResume, c: this.peerEnded, b };
  }

  /**
   * @internal The frame carrying this end (a duplicate of its descriptor) has been written on `carrier`: let go.
   * An end that reads first stops the other end writing; an end awaiting its state forwards it once it comes.
   */
  _moved(carrier: Carrier, token: string): void {
    this.reserved = true;
    this.started = false;
    switch (this.phase) {
      case Phase.Idle: {
        this.releaseFd(true);
        // Its state went inline unless messages were queued: then they follow now (it reads nothing, so they
        // are all there is).
        const state = this.queue.length > 0 ? this.stateNow() : null;
        this.becomeGone();
        if (state) carrier.sendState(token, state);
        return;
      }
      case Phase.Awaiting:
        this.releaseFd(true);
        this.moveTo = [carrier, token];
        carrier.hold?.(1);
        this.phase = Phase.Gone;
        return;
      case Phase.Live:
        carrier.hold?.(1);
        this.pendingMove = [carrier, token];
        this.tryLeave();
        this.link?.updateRef();
        return;
      default:
        // Closed meanwhile (its carrier went): the receiver sees its end closed.
        carrier.sendState(token, { r: this.role, o: false, c: true, b: [] });
    }
  }

  /** @internal Put in a frame that waits to be written: unusable here from now on. */
  _reserve(): void {
    this.reserved = true;
    this.started = false;
  }

  private tryLeave(): void {
    if (!this.pendingMove || this.phase !== Phase.Live || !this.mayWrite || this.outbox.length > 0 || this.carriedPending > 0) return;
    this.moveTo = this.pendingMove;
    this.pendingMove = null;
    this.phase = Phase.Leaving;
    try {
      this.link!.write(Kind.PORT, PAUSE, null);
    } catch {
      this.peerEnded = true; // the socket is gone: what we read is all there is
      this.finishLeaving();
      return;
    }
    this.link!.updateRef();
  }

  /** PAUSED arrived (or the socket ended): the backlog goes out, the socket is let go. */
  private finishLeaving(): void {
    const [carrier, token] = this.moveTo!;
    const link = this.link;
    this.link = null;
    // Nothing more arrives on the socket (the other end wrote PAUSED last), so closing drops nothing; the
    // receiver holds its own duplicate of the descriptor.
    link?.destroy();
    this.fd = -1;
    const state = this.stateNow();
    state.o = !this.peerEnded;
    this.becomeGone();
    carrier.sendState(token, state);
    carrier.hold?.(-1);
  }

  private becomeGone(): void {
    this.phase = Phase.Gone;
    this.queue = [];
    this.queuedBytes = 0;
    this.started = false;
  }

  /** This port as the carrier of ports posted on it: their states follow on the same socket. */
  private readonly carrier: Carrier = {
    sendState: (token, state) => {
      const { encoded, moves } = encodeState(token, state);
      if (this.phase === Phase.Closed) {
        settleMoves(moves, null);
        return;
      }
      this.writeOrQueue(Kind.PORT_STATE, encoded, moves);
    },
    hold: (delta) => {
      this.carriedPending += delta;
      if (this.carriedPending === 0) this.tryLeave();
    },
  };

  private writeOrQueue(kind: Kind, encoded: Encoded, moves: Move[]): void {
    if (this.phase === Phase.Live && this.mayWrite && this.outbox.length === 0) {
      this.link!.writeEncoded(kind, 0, encoded);
      settleMoves(moves, this.carrier);
      return;
    }
    // Paused, or our state has not arrived: in order, once we may write. The moved ports keep their descriptors
    // (and are unusable here) until then.
    for (const [port] of moves) port._reserve();
    this.outbox.push({ kind, encoded, moves });
  }

  private flushOutbox(): void {
    while (this.outbox.length > 0 && this.phase === Phase.Live && this.mayWrite) {
      const item = this.outbox.shift()!;
      try {
        this.link!.writeEncoded(item.kind, 0, item.encoded);
      } catch (err) {
        settleMoves(item.moves, null);
        throw err;
      }
      settleMoves(item.moves, this.carrier);
    }
    this.tryLeave();
  }

  private dropOutbox(): void {
    for (const item of this.outbox) settleMoves(item.moves, null);
    this.outbox = [];
  }

  // --- reading ---------------------------------------------------------------------------------------------

  /** Wraps the descriptor in a link: from now on this end reads (into its queue until started). */
  private goLive(): void {
    const conn = native().adoptConnection(this.fd);
    this.releaseFd(false);
    this.phase = Phase.Live;
    const owner: LinkOwner<unknown> = {
      onFrame: (kind, id, src, start, end, blobs) => this.onFrame(kind, id, src, start, end, blobs),
      onClose: () => this.onLinkClose(),
      onDrain: () => undefined,
      // Also while moving: the backlog must get out before this process may exit.
      wantsRef: () => (this.started && this.listenerCount('message') > 0) || this.phase === Phase.Leaving || this.pendingMove !== null,
      handlers: { get: () => undefined },
      invokeEvent: () => undefined as never,
      side: 'renderer',
      peerId: () => null,
    };
    const link = new Link<unknown>(conn, owner, DEFAULT_MAX_MESSAGE_SIZE, PORT_MAX_QUEUED_BYTES);
    this.link = link;
    link.peerMaxFrame = DEFAULT_MAX_MESSAGE_SIZE;
    this.fd = this.fd < 0 ? -1 : this.fd;
    if (this.owesResume) {
      this.owesResume = false;
      link.write(Kind.PORT, RESUME, null);
    }
    link.updateRef();
  }

  private onFrame(kind: number, id: number, src: Buffer, start: number, end: number, blobs: Buffer[] | null): void {
    if (kind === Kind.PORT) {
      this.onControl(id);
      return;
    }
    if (kind !== Kind.MESSAGE) throw makeError('ERR_IPC_BAD_FRAME', `Unexpected frame kind ${kind} on a MessagePort`);
    const body = decode(src, blobs, start, end) as [unknown, unknown];
    if (!Array.isArray(body) || body.length !== 2) throw makeError('ERR_IPC_BAD_FRAME', 'Malformed MessagePort message');
    this.queue.push(new PortMessageEvent(body[0], receivedPorts(body[1])));
    if (this.started && this.phase === Phase.Live) {
      this.scheduleDelivery();
      return;
    }
    this.queuedBytes += end - start;
    if (this.queue.length > PORT_QUEUE_MAX_MESSAGES || this.queuedBytes > PORT_QUEUE_MAX_BYTES) {
      this.link?.fail(makeError('ERR_IPC_PEER_NOT_READING',
        `A MessagePortMain that was not started holds more than ${PORT_QUEUE_MAX_MESSAGES} messages or ` +
          `${PORT_QUEUE_MAX_BYTES} bytes; the port is closed`));
    }
  }

  private onControl(op: number): void {
    switch (op) {
      case PAUSE:
        // Both ends leaving at once: port1's end goes first; port2's gives way when it reads port1's PAUSE.
        if (this.phase === Phase.Leaving && this.role === 0) return;
        this.link!.write(Kind.PORT, PAUSED, null);
        this.mayWrite = false;
        if (this.phase === Phase.Leaving) {
          this.pendingMove = this.moveTo;
          this.moveTo = null;
          this.phase = Phase.Live;
        }
        return;
      case PAUSED:
        if (this.phase !== Phase.Leaving) throw makeError('ERR_IPC_BAD_FRAME', 'PAUSED without PAUSE on a MessagePort');
        this.finishLeaving();
        return;
      case RESUME:
        this.mayWrite = true;
        this.flushOutbox();
        return;
      default:
        throw makeError('ERR_IPC_BAD_FRAME', `Unknown MessagePort control frame ${op}`);
    }
  }

  private scheduleDelivery(): void {
    if (this.delivering) return;
    if (this.queue.length === 0) {
      this.maybeEmitClose();
      return;
    }
    this.delivering = true;
    // Right after the frames of this read are taken in (a listener may move the port meanwhile: what is still
    // queued then travels with it).
    queueMicrotask(() => this.deliver());
  }

  private deliver(): void {
    this.delivering = false;
    while (this.queue.length > 0 && this.started && (this.phase === Phase.Live || this.phase === Phase.Closed)) {
      const event = this.queue.shift()!;
      try {
        this.emit('message', event);
      } catch (err) {
        process.nextTick(() => {
          throw err;
        });
      }
    }
    if (this.queue.length === 0) this.queuedBytes = 0;
    this.maybeEmitClose();
  }

  private onLinkClose(): void {
    if (this.phase === Phase.Leaving || this.pendingMove) {
      // The other end is gone before this one could leave: what was read goes on, and the new holder closes.
      this.peerEnded = true;
      this.moveTo ??= this.pendingMove;
      this.pendingMove = null;
      this.outbox = [];
      this.finishLeaving();
      return;
    }
    if (this.phase !== Phase.Live) return;
    this.link = null;
    this.phase = Phase.Closed;
    this.dropOutbox();
    this.maybeEmitClose();
  }

  /** 'close' once what was received has been delivered (at once when the port was never started). */
  private maybeEmitClose(): void {
    if (this.phase !== Phase.Closed || this.closeEmitted) return;
    if (this.queue.length > 0 && this.started) {
      this.scheduleDelivery();
      return;
    }
    this.emitClose();
  }

  private emitClose(): void {
    if (this.closeEmitted) return;
    this.closeEmitted = true;
    process.nextTick(() => this.emit('close'));
  }

  private releaseFd(close: boolean): void {
    if (this.fdHold) {
      idleFinalizer.unregister(this);
      this.fdHold.fd = -1;
      this.fdHold = null;
    }
    if (close && this.fd >= 0) closeQuietly(this.fd);
  }

  // --- arriving --------------------------------------------------------------------------------------------

  /** @internal A port that arrived: its descriptor, and its state now or later (by token, on `carrier`). */
  static _arrive(fd: number, token: string, inline: WireState | null, carrier: Link<unknown> | null): MessagePortMain {
    if (!inline && awaiting.has(token)) throw makeError('ERR_IPC_BAD_FRAME', 'A MessagePort token arrived twice');
    const port = new MessagePortMain(fd, 1, Phase.Awaiting);
    if (inline) {
      try {
        port._stateArrived(inline);
      } catch (err) {
        port.releaseFd(false); // the caller closes the descriptor
        port.phase = Phase.Closed;
        throw err;
      }
    } else {
      port.token = token;
      awaiting.set(token, port);
      port.arrivedOn = carrier;
      if (carrier) carrierWatch(carrier).add(port);
    }
    return port;
  }

  /** @internal Its state arrived (PORT_STATE); a port that moved on meanwhile forwards it. */
  _stateArrived(state: WireState): void {
    if (this.arrivedOn) carrierWatch(this.arrivedOn).delete(this);
    this.arrivedOn = null;
    if (this.phase === Phase.Gone && this.moveTo) {
      // It moved on before its state came: the state follows it (its ports arrive here and move on too).
      const [to, token] = this.moveTo;
      this.applyState(state, true);
      const next = this.stateNow();
      this.queue = [];
      to.sendState(token, next);
      to.hold?.(-1);
      return;
    }
    if (this.phase !== Phase.Awaiting) {
      // Closed meanwhile: the ports in its backlog are closed with it.
      this.applyState(state, true);
      this.dropQueue();
      return;
    }
    this.applyState(state);
    this.phase = Phase.Idle;
    if (this.peerEnded) {
      this.releaseFd(true);
      this.phase = Phase.Closed;
      this.maybeEmitClose();
      return;
    }
    // Reading resumes where its previous holder stopped (and what we posted meanwhile goes out) once used;
    // a port with something to send or already started reads now.
    if (this.started || this.outbox.length > 0) this.goLiveAndFlush();
  }

  /** @internal The carrier it was to arrive on closed before its state came: the backlog is lost; close. */
  _carrierLost(): void {
    if (this.phase === Phase.Gone && this.moveTo) {
      const [to, token] = this.moveTo;
      to.sendState(token, { r: this.role, o: false, c: true, b: [] });
      to.hold?.(-1);
      return;
    }
    if (this.phase !== Phase.Awaiting) return;
    this.releaseFd(true);
    this.phase = Phase.Closed;
    this.dropOutbox();
    this.maybeEmitClose();
  }

  private goLiveAndFlush(): void {
    this.goLive();
    this.flushOutbox();
    this.scheduleDelivery();
  }

  private applyState(state: WireState, keepPhase = false): void {
    if (!state || typeof state !== 'object' || !Array.isArray(state.b)) {
      throw makeError('ERR_IPC_BAD_FRAME', 'Malformed MessagePort state');
    }
    this.role = state.r === 0 ? 0 : 1;
    this.owesResume = state.o === true;
    this.peerEnded = state.c === true;
    const backlog: PortMessageEvent[] = [];
    for (const item of state.b) {
      if (!Array.isArray(item) || item.length !== 2) throw makeError('ERR_IPC_BAD_FRAME', 'Malformed MessagePort backlog');
      backlog.push(new PortMessageEvent(item[0], receivedPorts(item[1])));
    }
    // The backlog comes before anything received here (nothing can be, the port did not read yet).
    this.queue = backlog.concat(this.queue);
    if (!keepPhase && this.phase === Phase.Awaiting) this.phase = Phase.Idle;
  }
}

Object.defineProperty(MessagePortMain.prototype, TRANSFER_ONLY, { value: true });

/** A pair of entangled ports (Electron's `MessageChannelMain`): what one end posts, the other receives. */
export class MessageChannelMain {
  readonly port1: MessagePortMain;
  readonly port2: MessagePortMain;
  constructor() {
    const [a, b] = native().socketpair();
    this.port1 = new MessagePortMain(a, 0);
    this.port2 = new MessagePortMain(b, 1);
  }
}

/** Validates a transfer list; returns the ports to move, in order. */
export function checkTransfer(transfer: readonly unknown[] | undefined | null, source: MessagePortMain | null): MessagePortMain[] {
  if (transfer === undefined || transfer === null) return [];
  if (!Array.isArray(transfer)) {
    throw makeError('ERR_IPC_BAD_TRANSFER', 'postMessage: the transfer list must be an array of MessagePortMain');
  }
  const seen = new Set<MessagePortMain>();
  transfer.forEach((item, i) => {
    if (!(item instanceof MessagePortMain)) {
      throw makeError('ERR_IPC_BAD_TRANSFER', `postMessage: transfer[${i}] is not a MessagePortMain (only ports can be transferred)`);
    }
    if (seen.has(item)) throw makeError('ERR_IPC_BAD_TRANSFER', `postMessage: transfer[${i}] appears twice in the transfer list`);
    if (item === source) throw makeError('ERR_IPC_BAD_TRANSFER', `postMessage: transfer[${i}] is the port being posted on`);
    const problem = item._transferProblem();
    if (problem) {
      throw makeError(problem === 'is closed' ? 'ERR_IPC_PORT_CLOSED' : 'ERR_IPC_PORT_TRANSFERRED',
        `postMessage: transfer[${i}] ${problem}`);
    }
    seen.add(item);
  });
  return [...seen];
}

/** After the frame holding them was written on `carrier` (null: it never will be), the moved ports let go. */
export function settleMoves(moves: readonly Move[], carrier: Carrier | null): void {
  for (const [port, token] of moves) {
    if (carrier) port._moved(carrier, token);
    else port.close();
  }
}

const NO_MOVES: Move[] = [];

/** The ports being put into the frame under construction, and what becomes of them (see encodeWithPorts). */
let transferring: { ports: Set<MessagePortMain>; moves: Move[] } | null = null;
/** The connection whose frame is being decoded (set by the link before it dispatches a frame with descriptors). */
let receivingCarrier: Link<unknown> | null = null;

/** @internal Called by a link before it decodes a frame that came with descriptors. */
export function setReceivingCarrier(link: Link<unknown> | null): void {
  receivingCarrier = link;
}

/**
 * Encodes `value` with the ports of a transfer list as extension 0x25 (each with its descriptor); a port that is
 * not in the list stays unclonable. Returns the ports' moves, to settle once the frame is written.
 */
export function encodeWithPorts(value: unknown, what: string, ports: readonly MessagePortMain[], pathFrom = 0):
  { encoded: Encoded; moves: Move[] } {
  if (ports.length === 0) return { encoded: encodeValue(value, what, true, pathFrom), moves: NO_MOVES };
  const ctx = { ports: new Set(ports), moves: [] as Move[] };
  const outer = transferring;
  transferring = ctx;
  try {
    return { encoded: encodeValue(value, what, true, pathFrom), moves: ctx.moves };
  } finally {
    transferring = outer;
  }
}

/** A PORT_STATE frame's payload: the ports of its backlog move with it. */
function encodeState(token: string, state: WireState): { encoded: Encoded; moves: Move[] } {
  const ports: MessagePortMain[] = [];
  for (const [, ps] of state.b) ports.push(...ps);
  return encodeWithPorts([token, state], 'state', ports);
}

registerHandleType<MessagePortMain>({
  type: 0x25,
  is: (value): value is MessagePortMain => transferring !== null && transferring.ports.has(value as MessagePortMain),
  encode: (port) => port._encode(transferring!.moves),
  decode(data, fds) {
    if (!Array.isArray(data) || data.length !== 2 || typeof data[0] !== 'string' || fds.length !== 1 ||
      (data[1] !== null && typeof data[1] !== 'object')) {
      throw makeError('ERR_IPC_BAD_FRAME', 'Malformed MessagePort reference');
    }
    return MessagePortMain._arrive(fds[0], data[0], data[1] as WireState | null, receivingCarrier);
  },
  dispose: (value) => (value as MessagePortMain).close(),
});

/** A renderer↔main link as a carrier: states go on it as PORT_STATE frames. */
export function linkCarrier(link: Link<unknown>): Carrier {
  return {
    sendState: (token, state) => {
      const { encoded, moves } = encodeState(token, state);
      if (link.isClosed) {
        settleMoves(moves, null);
        return;
      }
      link.writeEncoded(Kind.PORT_STATE, 0, encoded);
      settleMoves(moves, linkCarrier(link));
    },
    hold: (delta) => link.holdForPortMove(delta),
  };
}

/** The ports of a received message (or backlog entry), checked: anything else is a malformed frame. */
export function receivedPorts(value: unknown): MessagePortMain[] {
  if (!Array.isArray(value)) throw makeError('ERR_IPC_BAD_FRAME', 'Malformed MessagePort list');
  if (value.length === 0) return NO_PORTS;
  for (const port of value) {
    if (!(port instanceof MessagePortMain)) throw makeError('ERR_IPC_BAD_FRAME', 'Malformed MessagePort reference');
  }
  return value as MessagePortMain[];
}

const NO_PORTS: MessagePortMain[] = [];

/** A PORT_STATE frame on `carrier`: the state of a port that arrived earlier. */
export function receiveState(src: Buffer, blobs: Buffer[] | null, start: number, end: number): void {
  const body = decode(src, blobs, start, end) as [string, WireState];
  if (!Array.isArray(body) || body.length !== 2 || typeof body[0] !== 'string') {
    throw makeError('ERR_IPC_BAD_FRAME', 'Malformed MessagePort state frame');
  }
  const port = awaiting.get(body[0]);
  if (!port) {
    // The ports its backlog brought are closed with the connection's refusal, not leaked.
    const backlog = (body[1] as Partial<WireState> | null)?.b;
    for (const item of Array.isArray(backlog) ? backlog : []) {
      const ports = Array.isArray(item) ? item[1] : null;
      if (Array.isArray(ports)) for (const p of ports) if (p instanceof MessagePortMain) p.close();
    }
    throw makeError('ERR_IPC_BAD_FRAME', 'State for a MessagePort that never arrived');
  }
  awaiting.delete(body[0]);
  port._stateArrived(body[1]);
}

/** Ports awaiting their state on each carrier (a carrier that closes first closes them). */
const watched = new WeakMap<object, Set<MessagePortMain>>();
function carrierWatch(carrier: object): Set<MessagePortMain> {
  let set = watched.get(carrier);
  if (!set) watched.set(carrier, (set = new Set()));
  return set;
}

/** A carrier link closed: ports whose state was to come on it close (or tell their own receivers so). */
export function carrierClosed(carrier: object): void {
  const set = watched.get(carrier);
  if (!set) return;
  watched.delete(carrier);
  for (const port of set) {
    for (const [token, p] of awaiting) if (p === port) awaiting.delete(token);
    port._carrierLost();
  }
}

function closeQuietly(fd: number): void {
  try {
    native().closeHandle(fd);
  } catch {
    // already closed
  }
}
