import { isTraceparent } from './trace';

/**
 * One error factory for the whole library. ipcwire's own errors carry a stable `ERR_IPC_*` code; system
 * errors (built by the addon) carry `code`, `errno`, `syscall` and `address` as `node:net` gives them.
 * The addon receives `makeError` at load time, so every error a user sees comes from here.
 */

/** The stable codes of ipcwire's own errors. */
export type IpcErrorCode =
  | 'ERR_IPC_DISCONNECTED'
  | 'ERR_IPC_TIMEOUT'
  | 'ERR_IPC_NO_LISTENER'
  | 'ERR_IPC_NO_REPLY'
  | 'ERR_IPC_UNCLONABLE'
  | 'ERR_IPC_MESSAGE_TOO_LARGE'
  | 'ERR_IPC_TOO_MANY_ARGS'
  | 'ERR_IPC_FRAME_TOO_LARGE'
  | 'ERR_IPC_BAD_FRAME'
  | 'ERR_IPC_TRUNCATED'
  | 'ERR_IPC_PEER_NOT_READING'
  | 'ERR_IPC_IDLE_TIMEOUT'
  | 'ERR_IPC_MAIN_REFUSED'
  | 'ERR_IPC_PROTOCOL_VERSION'
  | 'ERR_IPC_HANDSHAKE_TIMEOUT'
  | 'ERR_IPC_PEER_REFUSED'
  | 'ERR_IPC_NO_ADDRESS'
  | 'ERR_IPC_PATH_TOO_LONG'
  | 'ERR_IPC_INTERRUPTED'
  | 'ERR_IPC_LISTENER_THREW'
  | 'ERR_IPC_ALREADY_LISTENING'
  | 'ERR_IPC_NATIVE_LOAD'
  | 'ERR_IPC_TRANSFER_UNSUPPORTED'
  | 'ERR_IPC_BAD_TRANSFER'
  | 'ERR_IPC_PORT_CLOSED'
  | 'ERR_IPC_PORT_TRANSFERRED'
  | 'ERR_IPC_RECONNECT_QUEUE_FULL'
  | 'ERR_IPC_RECONNECT_FAILED'
  | 'ERR_IPC_NO_HANDLER'
  | 'ERR_IPC_HANDLER_EXISTS'
  | 'ERR_IPC_SAME_THREAD'
  | 'ERR_IPC_NOT_A_STREAM'
  | 'ERR_IPC_STREAM_CONSUMED';

/** An error raised by ipcwire itself; `code` is one of {@link IpcErrorCode}. */
export class IpcError extends Error {
  code: IpcErrorCode;
  constructor(code: IpcErrorCode, message: string, props?: Record<string, unknown>) {
    super(message);
    this.code = code;
    if (props) Object.assign(this, props);
  }
}
// 'IpcError' (as `err.name` and in stack traces); the message stays the text Electron users know.
Object.defineProperty(IpcError.prototype, 'name', { value: 'IpcError', writable: true, configurable: true });

/**
 * The error a call abandoned through its `AbortSignal` rejects with: the same shape as Node's own AbortError
 * (`name` 'AbortError', `code` 'ABORT_ERR', `cause` the signal's reason), so code that already tells Node's
 * aborted operations apart (`err.name === 'AbortError'`) handles ipcwire's the same way.
 */
export class AbortError extends Error {
  readonly code = 'ABORT_ERR';
  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AbortError';
  }
}

/** The AbortError for a call abandoned because `signal` aborted. */
export function abortError(signal: AbortSignal, what: string): AbortError {
  return new AbortError(`${what} was aborted`, { cause: signal.reason });
}

/** Per-call options of `invokeWith` / `sendSyncWith`. */
export interface CallOptions {
  /** Abandons the call when it aborts: the promise rejects with an AbortError and the handler's `event.signal` aborts. */
  signal?: AbortSignal;
  /** Milliseconds to wait for the reply before ERR_IPC_TIMEOUT; 0 waits for ever (overrides the instance default). */
  timeout?: number;
  /** W3C trace context sent with the call (`00-<trace id>-<span id>-<flags>`); the handler reads it as `event.traceparent`. */
  traceparent?: string;
  /**
   * For a streamed result: how far the handler's stream may run ahead of this caller's reading (chunks and bytes
   * in flight; defaults `{ chunks: 32, bytes: 4 MiB }`).
   */
  streamWindow?: { chunks?: number; bytes?: number };
}

/** Validates per-call options; the TypeError / RangeError carry Node's validation codes. */
export function checkCallOptions(options: unknown, allowSignal: boolean): CallOptions {
  if (typeof options !== 'object' || options === null) {
    throw Object.assign(new TypeError(`The "options" argument must be an object. Received ${options === null ? 'null' : typeof options}`),
      { code: 'ERR_INVALID_ARG_TYPE' });
  }
  const { signal, timeout } = options as CallOptions;
  if (signal !== undefined) {
    if (!allowSignal) {
      throw Object.assign(new TypeError('sendSync cannot be aborted by a signal (it blocks this thread); use "timeout"'),
        { code: 'ERR_INVALID_ARG_TYPE' });
    }
    if (!(signal instanceof AbortSignal)) {
      throw Object.assign(new TypeError('The "options.signal" property must be an instance of AbortSignal'),
        { code: 'ERR_INVALID_ARG_TYPE' });
    }
  }
  if (timeout !== undefined) checkTimeout(timeout, 'options.timeout');
  const { traceparent } = options as CallOptions;
  if (traceparent !== undefined && !isTraceparent(traceparent)) {
    throw Object.assign(new TypeError(`The "options.traceparent" property must be a W3C traceparent ('00-<32 hex>-<16 hex>-<2 hex>'). Received ${JSON.stringify(traceparent)}`),
      { code: 'ERR_INVALID_ARG_VALUE' });
  }
  return options as CallOptions;
}

/** A timeout in ms: a non-negative integer (0 means none). */
export function checkTimeout(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0x7fffffff) {
    throw Object.assign(
      new RangeError(`The "${name}" option must be an integer from 0 to 2147483647 (ms; 0 = no timeout). Received ${String(value)}`),
      { code: 'ERR_OUT_OF_RANGE' });
  }
  return value;
}

/** Factory handed to the addon and used everywhere in TS. */
export function makeError(code: string, message: string, props?: Record<string, unknown>): Error {
  return new IpcError(code as IpcErrorCode, message, props);
}

/** `err.code` if it is an object with a string code. */
export function codeOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string'
    ? (err as { code: string }).code
    : undefined;
}

/** The error every call after the connection is gone gets. */
export function disconnectedError(detail?: string): Error {
  return makeError(
    'ERR_IPC_DISCONNECTED',
    detail ? `IPC connection is closed: ${detail}` : 'IPC connection is closed',
  );
}

/** Channels are strings, as in Electron; anything else is a TypeError before anything is sent. */
export function checkChannel(channel: unknown): asserts channel is string {
  if (typeof channel !== 'string') {
    throw new TypeError(`The "channel" argument must be of type string. Received type ${typeof channel}`);
  }
}

/** Validates a numeric option: undefined gives `fallback`; anything but a positive integer is a RangeError. */
export function positiveInt(value: number | undefined, fallback: number, name: string, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value <= 0 || value > max) {
    throw new RangeError(`The "${name}" option must be a positive integer. Received ${String(value)}`);
  }
  return value;
}
