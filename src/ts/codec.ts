/**
 * Values on the wire: msgpackr with structured-clone semantics (shared and cyclic references, Map, Set, Date,
 * RegExp, Error, BigInt, every typed array as its own type). Two things msgpack cannot say — `-0` and holes in
 * sparse arrays — travel as private extensions, only when a message has them. Before encoding, a walk finds
 * what Electron's structured clone refuses (functions, symbols, promises, weak collections) and names where it
 * sits, so the user gets `An object could not be cloned.` with a path instead of a silently mangled value.
 */
import * as msgpackr from 'msgpackr';
/**
 * msgpackr's pure-JS build (same wire format, same version), used to decode small payloads. The default Node
 * entry decodes strings through msgpackr-extract, a native extractor that costs one call into it per
 * message: ~55 ns more than JS for a small message (a micro-benchmark: 146 vs 91 ns per unpack), up to a
 * quarter of main's CPU when a stream of small messages arrives; from a few hundred bytes of strings on it is
 * faster (1 KiB: 302 vs 581 ns). Each build has its own extension registry: ours are registered in both.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const jsOnly = require('msgpackr/index-no-eval') as typeof msgpackr;
const { Packr } = msgpackr;
/** Payloads below this many bytes are decoded by the pure-JS build (see above). */
const SMALL_DECODE = 192;

function addExtension(ext: Parameters<typeof msgpackr.addExtension>[0]): void {
  msgpackr.addExtension(ext);
  jsOnly.addExtension(ext);
}
import { isTraceparent } from './trace';
import { makeError } from './errors';

class NegativeZero {}
/**
 * Buffers and Uint8Arrays of at least this many bytes travel out of band: as BLOB frames written straight from
 * the caller's memory (no copy into the msgpack payload), read by the receiver into their final allocation.
 */
export const BLOB_MIN_BYTES = 64 * 1024;

/** Where a large byte array sits: the index of its BLOB frame among those preceding the message. */
class BlobRef {
  constructor(
    readonly index: number,
    readonly isBuffer: boolean,
  ) {}
}

/** The BLOB frames of the message being decoded (set only for the duration of one unpack). */
let decodingBlobs: Buffer[] | null = null;

function isBlobCandidate(value: ArrayBufferView): value is Uint8Array {
  return value.byteLength >= BLOB_MIN_BYTES && value instanceof Uint8Array &&
    (Buffer.isBuffer(value) || value.constructor === Uint8Array);
}

/** A plain object with an own `__proto__` key, which msgpackr would otherwise rename. */
class OwnProtoObject {
  constructor(readonly entries: unknown[]) {}
}
class SparseArray {
  constructor(
    readonly length: number,
    readonly entries: unknown[],
  ) {}
}

// Extension type numbers are part of the wire protocol (PROTOCOL_VERSION).
addExtension({
  Class: NegativeZero,
  type: 0x20,
  pack: () => Buffer.alloc(0),
  unpack: () => -0,
});
/**
 * The most arguments one message may carry. Listeners and handlers receive them spread into a call
 * (`listener(event, ...args)`), and V8 puts every spread argument on the stack: ~150,000 of them overflow it,
 * a few billion exhaust the heap. A peer declaring more is a bad frame; a sender passing more gets a clear
 * error before anything is written.
 */
export const MAX_ARGS = 8192;

/**
 * The longest sparse array a message may declare. A sparse array's length costs the sender nothing on the
 * wire (holes are not sent), but the receiver's code sees an array of that length: anything that walks it
 * (`map`, `join`, `JSON.stringify`, a spread) runs for that many steps. 16 Mi elements bounds such a walk
 * to well under a second and a spread array to 128 MiB.
 */
export const MAX_SPARSE_LENGTH = 1 << 24;

addExtension({
  Class: SparseArray,
  type: 0x21,
  write: (s: SparseArray) => [s.length, s.entries],
  read: (data: [number, unknown[]]) => {
    if (!Array.isArray(data)) throw new TypeError('Malformed sparse array');
    const [length, entries] = data;
    if (!Number.isInteger(length) || length < 0 || !Array.isArray(entries)) {
      throw new TypeError('Malformed sparse array');
    }
    if (length > MAX_SPARSE_LENGTH) {
      throw new RangeError(`Sparse array of length ${length} exceeds the limit of ${MAX_SPARSE_LENGTH}`);
    }
    const out: unknown[] = new Array(length);
    for (let i = 0; i + 1 < entries.length; i += 2) {
      const index = entries[i] as number;
      if (!Number.isInteger(index) || index < 0 || index >= length) throw new TypeError('Malformed sparse array');
      out[index] = entries[i + 1];
    }
    return out;
  },
});

addExtension({
  Class: OwnProtoObject,
  type: 0x22,
  write: (o: OwnProtoObject) => o.entries,
  read: (entries: unknown[]) => {
    if (!Array.isArray(entries)) throw new TypeError('Malformed object');
    const out: Record<string, unknown> = {};
    for (let i = 0; i + 1 < entries.length; i += 2) {
      // defineProperty keeps `__proto__` an own data property instead of replacing the prototype
      Object.defineProperty(out, String(entries[i]), { value: entries[i + 1], writable: true, enumerable: true, configurable: true });
    }
    return out;
  },
});

addExtension({
  Class: BlobRef,
  type: 0x23,
  write: (ref: BlobRef) => [ref.index, ref.isBuffer ? 1 : 0],
  read: (data: [number, number]) => {
    const blob = Array.isArray(data) && Number.isInteger(data[0]) ? decodingBlobs?.[data[0]] : undefined;
    if (!blob) throw new TypeError('Reference to a missing blob');
    return data[1] ? blob : new Uint8Array(blob.buffer, blob.byteOffset, blob.byteLength);
  },
});

/** A stream in an invoke's arguments or result: the id its producer sends it under. */
export class StreamRef {
  constructor(readonly id: number) {}
}

/** Makes the consumer of a stream reference while an invoke or its reply is decoded (null elsewhere). */
let decodingStreams: ((id: number) => unknown) | null = null;

addExtension({
  Class: StreamRef,
  type: 0x26,
  write: (ref: StreamRef) => ref.id,
  read: (id: number) => {
    if (!decodingStreams) throw new TypeError('A stream outside an invoke\'s arguments or result');
    if (!Number.isInteger(id) || id < 1 || id > 0xffffffff) throw new TypeError('Malformed stream reference');
    return decodingStreams(id);
  },
});

/**
 * A kind of value that travels with OS descriptors (Unix) or handles (Windows): a socket, a server, a raw
 * descriptor, a MessagePort. Registered once per extension type; an outgoing message containing such a value
 * carries its descriptors on a HANDLES frame, and the receiver rebuilds the value from them.
 */
export interface HandleType<T extends object = object> {
  /** Extension type number (part of the wire protocol). */
  type: number;
  /** Whether `value` is one of these. Called for objects in outgoing messages: keep it cheap. */
  is(value: object): value is T;
  /**
   * The descriptors to send with the value (duplicates travel: the value keeps its own) and any cloneable data
   * the receiver needs. Throws (a clear error with a code) when this value cannot be sent.
   */
  encode(value: T): { fds: number[]; data?: unknown };
  /** After the message was handed to the connection (written or queued): close or neuter the sender's object. */
  sent?(value: T): void;
  /** Rebuilds the value from its data and descriptors, which are its own from now on. */
  decode(data: unknown, fds: number[]): unknown;
  /** Undoes decode() when the rest of the message fails to decode: close what decode made. */
  dispose?(value: unknown): void;
}

/**
 * A value of a registered handle type in an outgoing message: its descriptors are `fds[first, first + count)` of
 * those the value collected. On the wire `first` counts from the end of the message's descriptors (written as
 * `first - total`), so that descriptors placed before them (ports of a transfer list) do not move it.
 */
class HandleRef {
  constructor(
    readonly first: number,
    readonly count: number,
    readonly data: unknown,
  ) {}
}

const handleTypes: Array<HandleType<object>> = [];
const handleRefClasses = new Map<number, new (first: number, count: number, data: unknown) => HandleRef>();

function handleTypeOf(value: object): HandleType<object> | undefined {
  for (let i = 0; i < handleTypes.length; i++) if (handleTypes[i].is(value)) return handleTypes[i];
  return undefined;
}

/**
 * What the descriptors of one incoming message became while it is decoded. `fds` is the link's own list for the
 * message: an adopted entry is set to -1 (as ports do with theirs), and the link closes those left >= 0.
 */
interface HandleDecoding {
  fds: number[];
  made: Array<{ type: HandleType<object>; value: unknown; taken: Array<[number, number]> }>;
}
/** The descriptors of the message decode() reads next (set by the link just before it dispatches a frame). */
let nextHandles: number[] | null = null;
let decodingHandles: HandleDecoding | null = null;
/** How many descriptors the value being packed collected (HandleRef.first is written relative to the end). */
let packingHandles = 0;

/** Whether `value` is an OS handle (or another registered handle type) rather than data. */
export function isHandleValue(value: object): boolean {
  return handleTypes.length > 0 && handleTypeOf(value) !== undefined;
}

/**
 * Closes the OS handles a decoded value holds (a stream chunk dropped unread): each object of a registered handle
 * type found in it is disposed of, as a message that failed to decode is.
 */
export function disposeHandles(value: unknown): void {
  if (handleTypes.length === 0 || typeof value !== 'object' || value === null) return;
  const seen = new Set<object>();
  const stack: unknown[] = [value];
  while (stack.length) {
    const v = stack.pop();
    if (typeof v !== 'object' || v === null || seen.has(v) || ArrayBuffer.isView(v)) continue;
    seen.add(v);
    const type = handleTypeOf(v);
    if (type) {
      try {
        type.dispose?.(v);
      } catch {
        // closed already
      }
    } else if (v instanceof Map) {
      for (const [k, x] of v) stack.push(k, x);
    } else if (v instanceof Set) {
      for (const x of v) stack.push(x);
    } else {
      for (const key of Object.keys(v)) stack.push((v as Record<string, unknown>)[key]);
    }
  }
}

/**
 * Registers a handle type (see HandleType). Its extension type must be unused; registering the same type twice
 * throws.
 */
export function registerHandleType<T extends object>(spec: HandleType<T>): void {
  if (handleRefClasses.has(spec.type)) throw new Error(`Handle extension type ${spec.type} is already registered`);
  const Ref = class extends HandleRef {};
  handleRefClasses.set(spec.type, Ref);
  handleTypes.push(spec as unknown as HandleType<object>);
  addExtension({
    Class: Ref,
    type: spec.type,
    write: (ref: HandleRef) => [ref.first - packingHandles, ref.count, ref.data],
    read: (raw: unknown) => {
      const ctx = decodingHandles;
      if (!Array.isArray(raw) || raw.length !== 3) throw new TypeError('Malformed handle reference');
      const [fromEnd, count, data] = raw as [number, number, unknown];
      const first = ctx && Number.isInteger(fromEnd) ? ctx.fds.length + fromEnd : -1;
      if (!ctx || fromEnd >= 0 || first < 0 || !Number.isInteger(count) || count < 0 || first + count > ctx.fds.length) {
        throw new TypeError('Reference to descriptors that did not come with the message');
      }
      const fds = ctx.fds.slice(first, first + count);
      if (fds.some((fd) => fd < 0)) throw new TypeError('A descriptor referenced twice');
      // A decode() that throws took nothing: its descriptors stay the link's, to be closed.
      const value = spec.decode(data, fds);
      const taken: Array<[number, number]> = [];
      for (let i = first; i < first + count; i++) {
        taken.push([i, ctx.fds[i]]);
        ctx.fds[i] = -1;
      }
      ctx.made.push({ type: spec as unknown as HandleType<object>, value, taken });
      return value;
    },
  });
}

/**
 * The descriptors that came with the frame the link is about to dispatch (its own list: adopted entries become
 * -1): the next decode() may adopt them. The link sets null again after the dispatch and closes what is left.
 */
export function setInboundHandles(fds: number[] | null): void {
  nextHandles = fds;
}

/**
 * While set, stream references met by decode() become what `resolver` makes of their ids (an invoke's arguments
 * or result being decoded); unset, a reference is a malformed message.
 */
export function setStreamDecoder(resolver: ((id: number) => unknown) | null): void {
  decodingStreams = resolver;
}

const packrOptions = { structuredClone: true, moreTypes: true, int64AsType: 'bigint' as const };
const packr = new Packr(packrOptions);
const smallUnpackr = new jsOnly.Packr(packrOptions);
/**
 * For values where no object can be reached twice: the same bytes as `packr` (same types, same extensions;
 * a test compares them) without structured clone's reference tracking, ~30 % less time per small message.
 */
const plainPackr = new Packr({ moreTypes: true, int64AsType: 'bigint' });

/** Encodes larger than this get a fresh encode buffer afterwards, so one big message does not pin memory. */
const LARGE_ENCODE = 1 << 20;

/** The exact text of Electron's clone error; ipcwire appends where the value sits. */
export const CLONE_ERROR_TEXT = 'An object could not be cloned.';

function unclonable(path: string, what: string): Error {
  return makeError('ERR_IPC_UNCLONABLE', `${CLONE_ERROR_TEXT} ${path} is ${what}.`, { path });
}

/** Result of inspecting a value before encoding. */
interface Inspection {
  needsRewrite: boolean;
  /** No object in it can be reached twice, so the plain packer (no reference tracking) encodes it. */
  flat?: boolean;
}

/**
 * An encoded message: the msgpack payload, the large byte arrays that go before it as BLOB frames, and the
 * descriptors that go before those on a HANDLES frame (null: none).
 */
export interface Encoded {
  payload: Buffer;
  blobs: Uint8Array[];
  /**
   * Descriptors sent with the message, as a HANDLES frame before it: ports' (a transfer list) first, then those of
   * the handle types found in the value (their references count from the end of this list).
   */
  handles?: number[] | null;
  /** To run once the message was handed to the connection (the handle types' `sent`). */
  sent?: (() => void) | null;
}

/** The descriptors collected while one value is encoded (set only for the duration of one encodeValue). */
let encodingHandles: { fds: number[]; sent: Array<() => void> } | null = null;

const NO_BLOBS: Uint8Array[] = [];

/** Marks objects that only a transfer list can move (MessagePortMain), never the message itself. */
export const TRANSFER_ONLY = Symbol.for('ipcwire.transferOnly');

function describe(value: unknown): string | undefined {
  switch (typeof value) {
    case 'function':
      return 'a function';
    case 'symbol':
      return 'a symbol';
    case 'object':
      if (value instanceof Promise) return 'a Promise';
      if (value instanceof WeakMap) return 'a WeakMap';
      if (value instanceof WeakSet) return 'a WeakSet';
      if (typeof WeakRef !== 'undefined' && value instanceof WeakRef) return 'a WeakRef';
      if (value !== null && isStreamLike(value)) return 'a stream (only invoke arguments and results may be streams, not nested in them)';
      if ((value as Record<symbol, unknown>)[TRANSFER_ONLY] === true) {
        return 'a MessagePortMain (put it in the transfer list; it arrives in event.ports)';
      }
      return undefined;
    default:
      return undefined;
  }
}

function isStreamLike(value: object): boolean {
  if (isHandleValue(value)) return false;
  if (typeof ReadableStream !== 'undefined' && value instanceof ReadableStream) return true;
  return typeof (value as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function';
}

function isDense(array: unknown[]): boolean {
  for (let i = 0; i < array.length; i++) if (!(i in array)) return false;
  return true;
}

function sparseTooLong(path: string, length: number): Error {
  return makeError('ERR_IPC_MESSAGE_TOO_LARGE',
    `${path} is a sparse array of length ${length}; the most a message may carry is ${MAX_SPARSE_LENGTH}`,
    { path, limit: MAX_SPARSE_LENGTH });
}

function propPath(base: string, key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${base}.${key}` : `${base}[${JSON.stringify(key)}]`;
}

/** Pushes an array's elements, last first (so they pop in order); true when it has holes (skipped). */
function pushElements(array: unknown[], stack: unknown[]): boolean {
  let holes = false;
  for (let i = array.length - 1; i >= 0; i--) {
    if (i in array) stack.push(array[i]);
    else holes = true;
  }
  return holes;
}

const CLEAN: Inspection = { needsRewrite: false };
const CLEAN_FLAT: Inspection = { needsRewrite: false, flat: true };

/**
 * The common case without a walk: an array of strings, booleans, null/undefined, non-zero-or-positive numbers,
 * bigints and small byte views needs no path bookkeeping (nothing in it can be unclonable or need a rewrite).
 * Returns 0 when the walk is needed, 1 when not, 2 when moreover no object can repeat (at most one byte view).
 */
function isPlainFlat(root: unknown, withBlobs: boolean): 0 | 1 | 2 {
  if (!Array.isArray(root)) return 0;
  let views = 0;
  for (let i = 0; i < root.length; i++) {
    if (!(i in root)) return 0;
    const v = root[i];
    switch (typeof v) {
      case 'string':
      case 'boolean':
      case 'undefined':
      case 'bigint':
        continue;
      case 'number':
        if (v === 0 && 1 / v < 0) return 0;
        continue;
      case 'object':
        if (v === null) continue;
        if (ArrayBuffer.isView(v) && !(withBlobs && isBlobCandidate(v))) {
          views++;
          continue;
        }
        return 0;
      default:
        return 0;
    }
  }
  return views > 1 ? 1 : 2;
}

/**
 * Throws ERR_IPC_UNCLONABLE naming the first bad value; reports whether -0, holes, own `__proto__` keys or
 * large byte arrays need rewriting, and whether any object is reached twice.
 *
 * The walk names nothing: a payload of a million small objects would otherwise build a million path strings
 * (measured: most of the encode time, and most of that in the garbage collector). Only when it meets a value
 * it must refuse does {@link locate} walk again, in the same order, building paths, to name where it sits.
 */
function inspect(root: unknown, rootPath: string, withBlobs = false): Inspection {
  const flat = isPlainFlat(root, withBlobs);
  if (flat !== 0) return flat === 2 ? CLEAN_FLAT : CLEAN;
  let needsRewrite = false;
  let repeated = false;
  const seen = new Set<object>();
  const stack: unknown[] = [root];
  while (stack.length) {
    const value = stack.pop();
    if (typeof value === 'number') {
      if (value === 0 && 1 / value < 0) needsRewrite = true;
      continue;
    }
    if (value === null || typeof value !== 'object') {
      if (typeof value === 'function' || typeof value === 'symbol') locate(root, rootPath);
      continue;
    }
    // add() and a size check rather than has() then add(): one hash-table lookup per object, not two. For a graph
    // of millions of objects this set is most of the walk's cost (has() is free only on an object V8 never hashed).
    const before = seen.size;
    seen.add(value);
    if (seen.size === before) {
      repeated = true;
      continue;
    }
    // Plain objects and arrays, most of a big graph, skip the class checks below: none of those classes is on
    // their prototype chain. What only own keys can make unclonable (an async iterator, the transfer-only mark)
    // is still looked at.
    const proto = Object.getPrototypeOf(value);
    if (proto === Object.prototype) {
      const own = value as Record<symbol, unknown>;
      if (typeof own[Symbol.asyncIterator] === 'function' || own[TRANSFER_ONLY] === true) {
        locate(root, rootPath);
      }
      const keys = Object.keys(value);
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i];
        if (key === '__proto__') needsRewrite = true;
        stack.push((value as Record<string, unknown>)[key]);
      }
      continue;
    }
    if (proto === Array.prototype && Array.isArray(value)) {
      if (pushElements(value, stack)) {
        needsRewrite = true;
        if (value.length > MAX_SPARSE_LENGTH) locate(root, rootPath);
      }
      continue;
    }
    if (ArrayBuffer.isView(value)) {
      if (withBlobs && isBlobCandidate(value)) needsRewrite = true;
      continue;
    }
    if (handleTypes.length > 0 && handleTypeOf(value)) {
      if (!encodingHandles) locate(root, rootPath);
      needsRewrite = true;
      continue;
    }
    if (Array.isArray(value)) {
      if (pushElements(value, stack)) {
        needsRewrite = true;
        if (value.length > MAX_SPARSE_LENGTH) locate(root, rootPath);
      }
      continue;
    }
    if (value instanceof ArrayBuffer || value instanceof Date || value instanceof RegExp) continue;
    if (describe(value)) locate(root, rootPath);
    if (value instanceof Map) {
      for (const [k, v] of value) stack.push(k, v);
    } else if (value instanceof Set) {
      for (const v of value) stack.push(v);
    } else {
      const keys = Object.keys(value);
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i];
        if (key === '__proto__' && !(value instanceof Error)) needsRewrite = true;
        stack.push((value as Record<string, unknown>)[key]);
      }
    }
  }
  if (needsRewrite) return repeated ? { needsRewrite } : { needsRewrite, flat: true };
  return repeated ? CLEAN : CLEAN_FLAT;
}

/**
 * The slow walk behind {@link inspect}, run only once something must be refused: the same order, with a path
 * for every value, so that the error names the first bad value as `args[0].list[123456].onDone`.
 */
function locate(root: unknown, rootPath: string): never {
  const seen = new Set<object>();
  const stack: Array<[unknown, string]> = [[root, rootPath]];
  while (stack.length) {
    const [value, path] = stack.pop()!;
    if (value === null || typeof value !== 'object') {
      const bad = describe(value);
      if (bad) throw unclonable(path, bad);
      continue;
    }
    if (seen.has(value)) continue;
    seen.add(value);
    if (ArrayBuffer.isView(value)) continue;
    if (handleTypes.length > 0 && handleTypeOf(value)) {
      if (!encodingHandles) throw unclonable(path, 'an OS handle (it can travel only in a message, invoke or reply, not here)');
      continue;
    }
    if (Array.isArray(value)) {
      const n = value.length;
      if (n > MAX_SPARSE_LENGTH && !isDense(value)) throw sparseTooLong(path, n);
      for (let i = n - 1; i >= 0; i--) if (i in value) stack.push([value[i], `${path}[${i}]`]);
      continue;
    }
    if (value instanceof ArrayBuffer || value instanceof Date || value instanceof RegExp) continue;
    const bad = describe(value);
    if (bad) throw unclonable(path, bad);
    if (value instanceof Map) {
      let i = 0;
      for (const [k, v] of value) {
        stack.push([k, `${path}.<key ${i}>`], [v, `${path}.get(${typeof k === 'string' ? JSON.stringify(k) : `<key ${i}>`})`]);
        i++;
      }
    } else if (value instanceof Set) {
      let i = 0;
      for (const v of value) stack.push([v, `${path}.<entry ${i++}>`]);
    } else {
      for (const key of Object.keys(value)) stack.push([(value as Record<string, unknown>)[key], propPath(path, key)]);
    }
  }
  // inspect found something this walk did not: a getter or a proxy answering differently the second time.
  throw makeError('ERR_IPC_UNCLONABLE', `${CLONE_ERROR_TEXT} ${rootPath} changed while it was being inspected.`, { path: rootPath });
}

/**
 * A copy with -0, sparse arrays and own `__proto__` keys replaced by their extension markers, and (when `blobs`
 * is given) large byte arrays replaced by BlobRefs collected into `blobs`; keeps shared/cyclic references.
 */
function rewrite(value: unknown, memo: Map<object, unknown>, blobs: Uint8Array[] | null): unknown {
  if (typeof value === 'number') return value === 0 && 1 / value < 0 ? new NegativeZero() : value;
  if (value === null || typeof value !== 'object') return value;
  if (memo.has(value)) return memo.get(value);
  if (ArrayBuffer.isView(value)) {
    if (!blobs || !isBlobCandidate(value)) return value;
    const ref = new BlobRef(blobs.push(value) - 1, Buffer.isBuffer(value));
    memo.set(value, ref);
    return ref;
  }
  if (value instanceof ArrayBuffer || value instanceof Date || value instanceof RegExp) return value;
  if (value instanceof Error) return value;
  if (encodingHandles && handleTypes.length > 0) {
    const type = handleTypeOf(value);
    if (type) {
      const { fds, data } = type.encode(value);
      const Ref = handleRefClasses.get(type.type)!;
      const ref = new Ref(encodingHandles.fds.length, fds.length, data);
      encodingHandles.fds.push(...fds);
      if (type.sent) encodingHandles.sent.push(() => type.sent!(value));
      memo.set(value, ref);
      return ref;
    }
  }
  if (Array.isArray(value)) {
    let dense = true;
    for (let i = 0; i < value.length; i++) if (!(i in value)) { dense = false; break; }
    if (dense) {
      const out: unknown[] = new Array(value.length);
      memo.set(value, out);
      for (let i = 0; i < value.length; i++) out[i] = rewrite(value[i], memo, blobs);
      return out;
    }
    const entries: unknown[] = [];
    const out = new SparseArray(value.length, entries);
    memo.set(value, out);
    for (const key of Object.keys(value)) {
      const index = Number(key);
      if (Number.isInteger(index) && index >= 0) entries.push(index, rewrite(value[index], memo, blobs));
    }
    return out;
  }
  if (value instanceof Map) {
    const out = new Map();
    memo.set(value, out);
    for (const [k, v] of value) out.set(rewrite(k, memo, blobs), rewrite(v, memo, blobs));
    return out;
  }
  if (value instanceof Set) {
    const out = new Set();
    memo.set(value, out);
    for (const v of value) out.add(rewrite(v, memo, blobs));
    return out;
  }
  const keys = Object.keys(value);
  if (keys.includes('__proto__')) {
    const entries: unknown[] = [];
    const marker = new OwnProtoObject(entries);
    memo.set(value, marker);
    for (const key of keys) entries.push(key, rewrite((value as Record<string, unknown>)[key], memo, blobs));
    return marker;
  }
  const out: Record<string, unknown> = {};
  memo.set(value, out);
  for (const key of keys) out[key] = rewrite((value as Record<string, unknown>)[key], memo, blobs);
  return out;
}

function pack(value: unknown, flat = false): Buffer {
  const p = flat ? plainPackr : packr;
  const out = p.pack(value);
  if (out.length > LARGE_ENCODE) {
    // msgpackr grows one encode buffer and hands out views of it: after a big message, start a small one
    // so the big backing store is owned by this message alone and freed with it.
    p.useBuffer(Buffer.allocUnsafeSlow(64 * 1024));
  }
  return out;
}

/** Test hook: both packers' bytes for one value (they must be equal for every value the plain one takes). */
export function packBothForTest(value: unknown): [Buffer, Buffer] {
  return [Buffer.from(packr.pack(value)), Buffer.from(plainPackr.pack(value))];
}

/**
 * Encodes `[channel, args]`; throws ERR_IPC_UNCLONABLE (path `args[i]…`) synchronously. With `withBlobs`, large
 * byte arrays are left out of the payload and returned in `blobs`, to be written as BLOB frames before it.
 */
export function encodeMessage(channel: string, args: unknown[], withBlobs = true, traceparent?: string, ports?: unknown[]): Encoded {
  if (args.length > MAX_ARGS) throw tooManyArgs(args.length);
  // A third element, a metadata map, only when there is something to carry (W3C trace context, transferred ports).
  if (traceparent === undefined && ports === undefined) return encodeValue([channel, args], 'args', withBlobs, 1);
  const meta: { tp?: string; p?: unknown[] } = {};
  if (traceparent !== undefined) meta.tp = traceparent;
  if (ports !== undefined) meta.p = ports;
  return encodeValue([channel, args, meta], 'args', withBlobs, 1);
}

/** Bytes of the buffer that small sendSync requests are written into (see encodeSmallSync). */
const SMALL_SYNC_BYTES = 512;
let smallSync: Buffer | null = null;
let smallSyncView: DataView | null = null;
/** One view of `smallSync` per length, made once: a fresh view per call was measurable with many renderers. */
const smallSyncViews: Buffer[] = [];

/**
 * The request of a sendSync whose arguments are all ASCII strings, numbers, booleans or null (at most 15, and
 * the whole under 512 bytes), as `[channel, args]` msgpack, the same bytes the general encoder writes; null
 * for anything else (the caller then uses {@link encodeMessage}).
 *
 * The bytes are written into one buffer this thread reuses for every such call, not into fresh memory: with
 * ten renderer processes on two cores, the general path (~0.2 µs alone) cost each renderer ~20 µs of CPU per
 * call, its caches being cold at every call. The result is valid only until the next call: the caller must
 * hand it to the blocking write at once (which copies whatever the kernel does not take) and keep nothing of it.
 */
export function encodeSmallSync(channel: string, args: unknown[]): Buffer | null {
  const buf = smallSyncBuffer();
  buf[0] = 0x92; // [channel, args]
  const pos = writeAscii(buf, 1, channel);
  return pos < 0 ? null : smallSyncResult(writeFlatArray(buf, pos, args));
}

/**
 * A sendSync reply `[0, value]` (main's answer) when `value` is such a flat argument list or one such value,
 * under the same terms as {@link encodeSmallSync} (the same reused buffer; null for anything else).
 */
export function encodeSmallReply(value: unknown): Buffer | null {
  const buf = smallSyncBuffer();
  buf[0] = 0x92; // [0, value]
  buf[1] = 0x00;
  if (typeof value !== 'object' || value === null) return smallSyncResult(writeFlatValue(buf, 2, value));
  // Only plain arrays: the general encoder looks for extensions on anything else.
  if (!Array.isArray(value) || Object.getPrototypeOf(value) !== Array.prototype) return null;
  return smallSyncResult(writeFlatArray(buf, 2, value));
}

function smallSyncBuffer(): Buffer {
  if (smallSync !== null) return smallSync;
  const buf = (smallSync = Buffer.allocUnsafeSlow(SMALL_SYNC_BYTES));
  smallSyncView = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return buf;
}

function smallSyncResult(end: number): Buffer | null {
  return end < 0 ? null : (smallSyncViews[end] ??= smallSync!.subarray(0, end));
}

/** At most 15 flat values as a fixarray at `pos`; the position after it, or -1. */
function writeFlatArray(buf: Buffer, pos: number, values: unknown[]): number {
  const n = values.length;
  if (n > 15) return -1;
  buf[pos++] = 0x90 | n;
  for (let i = 0; i < n && pos >= 0; i++) pos = writeFlatValue(buf, pos, values[i]);
  return pos;
}

/** An ASCII string, number, boolean or null at `pos`; the position after it, or -1 (anything else, or no room). */
function writeFlatValue(buf: Buffer, pos: number, v: unknown): number {
  if (pos > SMALL_SYNC_BYTES - 9) return -1;
  switch (typeof v) {
    case 'string':
      return writeAscii(buf, pos, v);
    case 'number':
      return writeNumber(buf, pos, v);
    case 'boolean':
      buf[pos] = v ? 0xc3 : 0xc2;
      return pos + 1;
    case 'object':
      if (v !== null) return -1;
      buf[pos] = 0xc0;
      return pos + 1;
    default:
      return -1; // undefined (also what a hole reads as), bigint, functions, symbols: the general path
  }
}

/** What {@link decodeSmallReply} returns for a reply it does not cover. */
export const NOT_SMALL: unique symbol = Symbol('not small');

/**
 * The value of a sendSync reply `[0, value]` whose value is one flat value or a fixarray of them, in the forms
 * the small encoder writes (ASCII strings, integers up to 32 bits except 64–127 as one byte, float64, booleans,
 * null), read straight from `payload`: no DataView or other state added to a Buffer that is used once. Anything
 * else, including any malformed or truncated byte, is {@link NOT_SMALL}, for the general decoder to handle.
 */
export function decodeSmallReply(payload: Buffer, end: number = payload.length): unknown {
  if (end < 3 || payload[0] !== 0x92 || payload[1] !== 0x00) return NOT_SMALL;
  const head = payload[2];
  if ((head & 0xf0) !== 0x90) {
    const v = readFlat(payload, 2, end);
    return readEnd === end ? v : NOT_SMALL;
  }
  const n = head & 0x0f;
  const out = new Array<unknown>(n);
  let pos = 3;
  for (let i = 0; i < n; i++) {
    const v = readFlat(payload, pos, end);
    if (v === NOT_SMALL) return NOT_SMALL;
    out[i] = v;
    pos = readEnd;
  }
  return pos === end ? out : NOT_SMALL;
}

/**
 * A message `[channel, args]` in the small encoder's forms (see {@link decodeSmallReply}), decoded in place from
 * `src[start..end)`; null for anything else, which the general decoder then handles (and refuses if malformed).
 */
export function decodeSmallMessage(src: Buffer, start: number, end: number): DecodedMessage | null {
  if (end - start < 3 || src[start] !== 0x92) return null;
  const channel = readFlat(src, start + 1, end);
  if (typeof channel !== 'string') return null;
  let pos = readEnd;
  if (pos >= end) return null;
  const head = src[pos++];
  if ((head & 0xf0) !== 0x90) return null;
  const n = head & 0x0f;
  const args: unknown[] = [];
  for (let i = 0; i < n; i++) {
    const v = readFlat(src, pos, end);
    if (v === NOT_SMALL) return null;
    args.push(v);
    pos = readEnd;
  }
  return pos === end ? { channel, args, traceparent: undefined } : null;
}

/** Where the last {@link readFlat} stopped. */
let readEnd = 0;

function readFlat(b: Buffer, pos: number, end: number): unknown {
  if (pos >= end) return NOT_SMALL;
  const t = b[pos];
  if (t < 0x40) {
    readEnd = pos + 1;
    return t;
  }
  if (t >= 0xe0) {
    readEnd = pos + 1;
    return t - 0x100;
  }
  let len: number;
  let at: number;
  if ((t & 0xe0) === 0xa0) {
    len = t & 0x1f;
    at = pos + 1;
  } else {
    switch (t) {
      case 0xc0:
        readEnd = pos + 1;
        return null;
      case 0xc2:
        readEnd = pos + 1;
        return false;
      case 0xc3:
        readEnd = pos + 1;
        return true;
      case 0xcc:
        if (pos + 2 > end) return NOT_SMALL;
        readEnd = pos + 2;
        return b[pos + 1];
      case 0xcd:
        if (pos + 3 > end) return NOT_SMALL;
        readEnd = pos + 3;
        return b.readUInt16BE(pos + 1);
      case 0xce:
        if (pos + 5 > end) return NOT_SMALL;
        readEnd = pos + 5;
        return b.readUInt32BE(pos + 1);
      case 0xd0:
        if (pos + 2 > end) return NOT_SMALL;
        readEnd = pos + 2;
        return b.readInt8(pos + 1);
      case 0xd1:
        if (pos + 3 > end) return NOT_SMALL;
        readEnd = pos + 3;
        return b.readInt16BE(pos + 1);
      case 0xd2:
        if (pos + 5 > end) return NOT_SMALL;
        readEnd = pos + 5;
        return b.readInt32BE(pos + 1);
      case 0xcb:
        if (pos + 9 > end) return NOT_SMALL;
        readEnd = pos + 9;
        return b.readDoubleBE(pos + 1);
      case 0xd9:
        if (pos + 2 > end) return NOT_SMALL;
        len = b[pos + 1];
        at = pos + 2;
        break;
      default:
        return NOT_SMALL;
    }
  }
  const stop = at + len;
  if (stop > end) return NOT_SMALL;
  for (let i = at; i < stop; i++) if (b[i] >= 0x80) return NOT_SMALL;
  readEnd = stop;
  return b.toString('latin1', at, stop);
}

/** A str8/fixstr of an ASCII string at `pos`; the position after it, or -1 (not ASCII, or no room). */
function writeAscii(buf: Buffer, pos: number, s: string): number {
  const len = s.length;
  if (len >= 0x100 || pos + 2 + len > SMALL_SYNC_BYTES) return -1;
  if (len < 0x20) buf[pos++] = 0xa0 | len;
  else {
    buf[pos++] = 0xd9;
    buf[pos++] = len;
  }
  for (let i = 0; i < len; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) return -1;
    buf[pos++] = c;
  }
  return pos;
}

/** A number as the general encoder writes it (the smallest integer form up to 32 bits, else a float64); -1 for -0. */
function writeNumber(buf: Buffer, pos: number, v: number): number {
  if (v >>> 0 === v) {
    if (v === 0 && 1 / v < 0) return -1; // -0 is rewritten by the general path to survive the trip
    // 0x40–0x7f are not positive fixints for msgpackr (its record ids): it writes them as uint8.
    if (v < 0x40) buf[pos++] = v;
    else if (v < 0x100) {
      buf[pos++] = 0xcc;
      buf[pos++] = v;
    } else if (v < 0x10000) {
      buf[pos++] = 0xcd;
      buf[pos++] = v >> 8;
      buf[pos++] = v & 0xff;
    } else {
      buf[pos++] = 0xce;
      smallSyncView!.setUint32(pos, v);
      pos += 4;
    }
  } else if (v >> 0 === v) {
    if (v >= -0x20) buf[pos++] = 0x100 + v;
    else if (v >= -0x80) {
      buf[pos++] = 0xd0;
      buf[pos++] = v + 0x100;
    } else if (v >= -0x8000) {
      buf[pos++] = 0xd1;
      smallSyncView!.setInt16(pos, v);
      pos += 2;
    } else {
      buf[pos++] = 0xd2;
      smallSyncView!.setInt32(pos, v);
      pos += 4;
    }
  } else {
    buf[pos++] = 0xcb;
    smallSyncView!.setFloat64(pos, v);
    pos += 8;
  }
  return pos;
}

/**
 * Encodes any value (a reply, a handshake); `what` names it in a clone error. `pathFrom` skips that many outer
 * array levels when naming paths (so `[channel, args]` reports `args[0]…`).
 */
export function encodeValue(value: unknown, what: string, withBlobs = false, pathFrom = 0, withHandles = withBlobs): Encoded {
  const inner = pathFrom === 1 ? (value as unknown[])[1] : value;
  // Handle types are looked for only where descriptors can travel (messages, invokes and their replies).
  const collecting = withHandles && handleTypes.length > 0 ? { fds: [] as number[], sent: [] as Array<() => void> } : null;
  encodingHandles = collecting;
  try {
    let { needsRewrite, flat } = inspect(inner, what, withBlobs);
    // A message's metadata (after [channel, args]) is rewritten too when it holds handles (transferred ports).
    const meta = pathFrom === 1 && (value as unknown[]).length > 2 ? (value as unknown[]).slice(2) : null;
    if (meta && collecting) {
      const m = inspect(meta, 'transfer', withBlobs);
      if (m.needsRewrite) {
        needsRewrite = true;
        flat = false; // an object of the metadata may sit in the arguments too
      }
    }
    if (!needsRewrite) return { payload: pack(value, flat === true), blobs: NO_BLOBS };
    const blobs: Uint8Array[] | null = withBlobs ? [] : null;
    const memo = new Map<object, unknown>();
    const rewritten = pathFrom === 1
      ? [(value as unknown[])[0], rewrite(inner, memo, blobs), ...(meta ?? []).map((m) => rewrite(m, memo, blobs))]
      : rewrite(value, memo, blobs);
    // The rewrite keeps identity (one copy per original), so a value with no repeated object still has none.
    packingHandles = collecting ? collecting.fds.length : 0;
    const encoded: Encoded = { payload: pack(rewritten, flat === true), blobs: blobs ?? NO_BLOBS };
    if (collecting && collecting.fds.length > 0) encoded.handles = collecting.fds;
    if (collecting && collecting.sent.length > 0) {
      const hooks = collecting.sent;
      encoded.sent = () => {
        for (const hook of hooks) hook();
      };
    }
    return encoded;
  } finally {
    encodingHandles = null;
    packingHandles = 0;
  }
}

/**
 * Decodes one payload. msgpackr reports hostile input as TypeError, RangeError or SyntaxError (or, for an
 * extension it rejects, anything): all of it becomes ERR_IPC_BAD_FRAME for the connection to handle.
 */
export function decode(payload: Uint8Array, blobs: Buffer[] | null = null, start = 0, end = payload.length): unknown {
  decodingBlobs = blobs;
  // The descriptors that came with this frame are this decode's alone (a decode inside a listener sees none).
  const fds = nextHandles;
  nextHandles = null;
  const outer = decodingHandles;
  const ctx: HandleDecoding | null = fds ? { fds, made: [] } : null;
  decodingHandles = ctx;
  let ok = false;
  try {
    const unpackr = end - start < SMALL_DECODE ? smallUnpackr : packr;
    if (start === 0 && end === payload.length) {
      const whole = unpackr.unpack(payload);
      ok = true;
      return whole;
    }
    // A frame inside a larger chunk is decoded in place: a view per frame would cost msgpackr a fresh
    // DataView (and a property added to the view) per message. Frames start after their header, so `end`
    // (which msgpackr reads as "whole source" when 0) is never 0 here.
    UNPACK_RANGE.start = start;
    UNPACK_RANGE.end = end;
    const value = unpackr.unpack(payload, UNPACK_RANGE);
    ok = true;
    return value;
  } catch (err) {
    throw makeError('ERR_IPC_BAD_FRAME', `Malformed message: ${(err as Error).message}`, { cause: err });
  } finally {
    decodingBlobs = null;
    decodingHandles = outer;
    if (ctx) {
      if (!ok) {
        // Nothing of a message that failed to decode is kept: what was rebuilt is disposed of (or, for a type
        // that cannot, its descriptors go back to the link), and the link closes every descriptor not adopted.
        for (const { type, value, taken } of ctx.made) {
          if (!type.dispose) {
            for (const [i, fd] of taken) ctx.fds[i] = fd;
            continue;
          }
          try {
            type.dispose(value);
          } catch {
            // disposing must not hide the decode error
          }
        }
      }
    }
  }
}

/** Reused for every in-place decode: msgpackr reads it once, before decoding starts. */
const UNPACK_RANGE = { start: 0, end: 0 };

/** A message body after decoding and shape validation. */
export interface DecodedMessage {
  channel: string;
  args: unknown[];
  /** The W3C traceparent the sender attached, if any (malformed ones are ignored). */
  traceparent: string | undefined;
  /** References to the MessagePorts transferred with it (see ports.ts), if any. */
  ports?: unknown[];
}

function tooManyArgs(count: number): Error {
  return makeError('ERR_IPC_TOO_MANY_ARGS', `A message may carry at most ${MAX_ARGS} arguments; got ${count}`,
    { limit: MAX_ARGS });
}

/** Decodes and validates `[channel, args]` before any handler sees it. */
export function decodeMessage(payload: Uint8Array, blobs: Buffer[] | null = null, start = 0, end = payload.length): DecodedMessage {
  const value = decode(payload, blobs, start, end);
  if (!Array.isArray(value) || (value.length !== 2 && value.length !== 3) || typeof value[0] !== 'string' || !Array.isArray(value[1])) {
    throw makeError('ERR_IPC_BAD_FRAME', 'Malformed message: expected [channel, args] or [channel, args, meta]');
  }
  let traceparent: string | undefined;
  if (value.length === 3) {
    const meta = value[2] as { tp?: unknown; p?: unknown } | null;
    if (typeof meta !== 'object' || meta === null) throw makeError('ERR_IPC_BAD_FRAME', 'Malformed message metadata');
    if (isTraceparent(meta.tp)) traceparent = meta.tp;
    if (meta.p !== undefined) {
      if (!Array.isArray(meta.p)) throw makeError('ERR_IPC_BAD_FRAME', 'Malformed message metadata');
      return { channel: value[0], args: checkedArgs(value[1] as unknown[]), traceparent, ports: meta.p };
    }
  }
  return { channel: value[0], args: checkedArgs(value[1] as unknown[]), traceparent };
}

function checkedArgs(args: unknown[]): unknown[] {
  // The arguments are spread into listener calls: a peer must not choose how many.
  if (args.length > MAX_ARGS) {
    throw makeError('ERR_IPC_BAD_FRAME', `Malformed message: ${args.length} arguments (at most ${MAX_ARGS})`);
  }
  return args;
}

/** The wire form of an error thrown by a remote handler or listener. */
export interface WireError {
  text: string; // String(err), as Electron puts it in the rejection message
  name?: string;
  message?: string;
  code?: unknown;
  stack?: string;
  props?: Record<string, unknown>;
}

/** Packs an error for the other side without ever failing (fields that cannot be cloned are dropped). */
export function toWireError(err: unknown): WireError {
  let text: string;
  try {
    text = String(err);
  } catch {
    text = 'Error: <unprintable>';
  }
  if (typeof err !== 'object' || err === null) return { text };
  const e = err as Record<string, unknown>;
  const wire: WireError = { text };
  if (typeof e.name === 'string') wire.name = e.name;
  if (typeof e.message === 'string') wire.message = e.message;
  if (typeof e.stack === 'string') wire.stack = e.stack;
  const props: Record<string, unknown> = {};
  for (const key of Object.keys(e)) {
    if (key === 'stack' || key === 'message') continue;
    try {
      inspect(e[key], key);
      props[key] = e[key];
    } catch {
      // an unclonable field is left out rather than losing the whole error
    }
  }
  if ('code' in props) wire.code = props.code;
  if (Object.keys(props).length) wire.props = props;
  return wire;
}

/** Rebuilds a remote error as a local Error with `message`, carrying the remote name, code and own fields. */
export function fromWireError(wire: unknown, message: string): Error {
  const err = new Error(message) as Error & Record<string, unknown>;
  if (typeof wire !== 'object' || wire === null) return err;
  const w = wire as WireError;
  if (w.props && typeof w.props === 'object') {
    for (const [key, value] of Object.entries(w.props)) {
      if (key === '__proto__' || key === 'constructor' || key === 'prototype' || key === 'message') continue;
      err[key] = value;
    }
  }
  if (typeof w.name === 'string') Object.defineProperty(err, 'name', { value: w.name, writable: true, configurable: true, enumerable: false });
  if (typeof w.stack === 'string') err.remoteStack = w.stack;
  return err;
}
