/**
 * Tracing: every message, on both sides, published on Node's `diagnostics_channel` (the convention `http` and
 * `undici` follow, which APM and OpenTelemetry instrumentations subscribe to), and `NODE_DEBUG=ipcwire` lines.
 * A call site costs one `hasSubscribers` check when nobody listens; the debug printer is itself a subscriber, so
 * `NODE_DEBUG` adds no check of its own.
 */
import * as dc from 'node:diagnostics_channel';
import { debuglog } from 'node:util';

/** What every published message carries. */
export interface IpcTraceMessage {
  /** Which end published it: main (`ipcMain`, a `Peer`) or a renderer. */
  side: 'main' | 'renderer';
  /** `out`: this process sent it; `in`: this process received it. */
  direction: 'out' | 'in';
  /** The renderer's id in main (`peer.id`); null before the handshake completed. */
  peerId: number | null;
  /** The OS pid of the process at the other end of the connection. */
  pid: number;
  /** The channel; empty for connect / disconnect. */
  channel: string;
  /** `send`, `invoke`, `sendSync`, `connect`, `disconnect`. */
  kind: 'send' | 'invoke' | 'sendSync' | 'connect' | 'disconnect';
  /** Bytes on the wire (payload and out-of-band byte arrays, frame headers included); 0 when none. */
  bytes: number;
  /** The request id linking a call's start, its serving on the other side and its end; 0 for `send`. */
  id: number;
  /** W3C trace context carried with the message, if the caller had one. */
  traceparent?: string;
  /** On `:end`: milliseconds since the matching `:start`. */
  durationMs?: number;
  /** On `:end` / `ipcwire:error`: the error the call ended with. */
  error?: Error;
}

/** The channel names, stable API: subscribe with `diagnostics_channel.subscribe(name, fn)`. */
export const TRACE_CHANNELS = {
  /** A call (`invoke` / `peer.invoke`) sent; its `:end` when it settles (result, error, abort, timeout). */
  invokeStart: 'ipcwire:invoke:start',
  invokeEnd: 'ipcwire:invoke:end',
  /** A renderer's `sendSync` sent; its `:end` when it returns or throws. */
  sendSyncStart: 'ipcwire:sendSync:start',
  sendSyncEnd: 'ipcwire:sendSync:end',
  /** The serving side of an `invoke` / `sendSync`: the call arrived; `:end` when its reply was sent. */
  handleStart: 'ipcwire:handle:start',
  handleEnd: 'ipcwire:handle:end',
  /** An asynchronous message sent (`send`, `peer.send`, `event.reply`, `broadcast`, `postMessage`). */
  send: 'ipcwire:send',
  /** An asynchronous message received (before listeners run). */
  message: 'ipcwire:message',
  /** A call that ended in an error (also reported on its `:end`). */
  error: 'ipcwire:error',
  /** A connection completed its handshake / ended. */
  connect: 'ipcwire:connect',
  disconnect: 'ipcwire:disconnect',
} as const;

export const chInvokeStart = dc.channel(TRACE_CHANNELS.invokeStart);
export const chInvokeEnd = dc.channel(TRACE_CHANNELS.invokeEnd);
export const chSyncStart = dc.channel(TRACE_CHANNELS.sendSyncStart);
export const chSyncEnd = dc.channel(TRACE_CHANNELS.sendSyncEnd);
export const chHandleStart = dc.channel(TRACE_CHANNELS.handleStart);
export const chHandleEnd = dc.channel(TRACE_CHANNELS.handleEnd);
export const chSend = dc.channel(TRACE_CHANNELS.send);
export const chMessage = dc.channel(TRACE_CHANNELS.message);
export const chError = dc.channel(TRACE_CHANNELS.error);
export const chConnect = dc.channel(TRACE_CHANNELS.connect);
export const chDisconnect = dc.channel(TRACE_CHANNELS.disconnect);

const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** Whether `value` is a W3C traceparent header value (`00-<32 hex>-<16 hex>-<2 hex>`). */
export function isTraceparent(value: unknown): value is string {
  return typeof value === 'string' && value.length === 55 && TRACEPARENT.test(value);
}

let provider: (() => string | undefined) | null = null;

/**
 * Sets where outgoing messages take their W3C `traceparent` from when the call gives none: typically the active
 * OpenTelemetry context (`propagation.inject(context.active(), carrier); return carrier.traceparent`) or an
 * AsyncLocalStorage store. `null` removes it. A provider that throws or returns a non-traceparent adds nothing.
 */
export function setTraceparentProvider(fn: (() => string | undefined) | null): void {
  if (fn !== null && typeof fn !== 'function') {
    throw Object.assign(new TypeError('The provider must be a function or null'), { code: 'ERR_INVALID_ARG_TYPE' });
  }
  provider = fn;
}

/** The traceparent an outgoing message carries: the call's own, else the provider's (one branch when unset). */
export function outgoingTraceparent(own: string | undefined): string | undefined {
  if (own !== undefined) return own;
  if (provider === null) return undefined;
  try {
    const v = provider();
    return isTraceparent(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** `NODE_DEBUG=ipcwire`: one line per message, printed by a subscriber of every channel. */
const debug = debuglog('ipcwire');
if (debug.enabled) {
  const line = (name: string) => (m: unknown) => {
    const t = m as IpcTraceMessage;
    debug('%s %s %s peer=%s pid=%d ch=%j id=%d bytes=%d%s%s%s', name.slice(8), t.side, t.direction, t.peerId, t.pid,
      t.channel, t.id, t.bytes,
      t.durationMs !== undefined ? ` ms=${t.durationMs.toFixed(3)}` : '',
      t.error ? ` error=${(t.error as { code?: string }).code ?? t.error.name}` : '',
      t.traceparent ? ` traceparent=${t.traceparent}` : '');
  };
  for (const name of Object.values(TRACE_CHANNELS)) {
    if (name !== TRACE_CHANNELS.error) dc.subscribe(name, line(name));
  }
}
