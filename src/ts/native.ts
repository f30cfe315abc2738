/**
 * The only module that loads the addon. Everything the C++ side offers is declared here, so the native
 * surface can be reviewed in one screen. The addon is per-environment (worker threads each load their own
 * instance); nothing here keeps JS state beyond the loaded binding.
 *
 * Wire format (shared by both directions, implemented once, in C++ framing + TS codec):
 *   frame   = u32le bodyLength | body
 *   body    = u8 kind | u32le id | payload (msgpack, may be empty)
 * The 5-byte body header lets the addon recognise the reply to a blocking call (kind SYNC_REPLY, same id)
 * without decoding msgpack.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { makeError } from './errors';

/** Bumped whenever frames or payloads change shape; checked in the handshake. */
export const PROTOCOL_VERSION = 3;

/** Frame kinds. Values are part of the wire protocol (see PROTOCOL_VERSION). */
export const enum Kind {
  HELLO = 1, // renderer → main: payload msgpack {magic, version, maxFrame}
  WELCOME = 2, // main → renderer: payload msgpack {version, peerId, maxFrame} or {error}
  MESSAGE = 3, // either way: [channel, args]
  SYNC = 4, // renderer → main: [channel, args], id = call id
  SYNC_REPLY = 5, // main → renderer: {v} | {e}, id = call id
  INVOKE = 6, // either way: [channel, args], id = call id
  INVOKE_REPLY = 7, // either way: {v} | {e}, id = call id
  BLOB = 8, // either way: the raw bytes of one large Buffer of the next message, which refers to it by index
  CANCEL = 9, // either way (since version 2): the caller no longer waits for INVOKE `id`; empty payload
  /**
   * Either way (since version 3): `id` descriptors for the next MESSAGE / SYNC / SYNC_REPLY / INVOKE / INVOKE_REPLY
   * frame (like BLOB frames). Unix: they ride on this frame's first byte as SCM_RIGHTS, payload empty. Windows: the
   * payload is the u64le handle values, already duplicated into the receiving process by the sender.
   */
  HANDLES = 10,
  STREAM = 11, // producer → consumer: a chunk, the end or an error of stream `id` (see streams.ts)
  STREAM_CTRL = 12, // consumer → producer: credit for stream `id`, or its cancel
  // either way, when both said `shm` in the handshake: the sender's shared-memory segment, id = segment number,
  // payload u64le size; its descriptor rides on the HANDLES frame right before it
  SHM = 13,
  // either way: in place of a BLOB frame, a byte array in the sender's segment: u32le segment, slot, offset, length
  SHM_BLOB = 14,
  // reserved: blocks come back through their slot counters in the segment header, never through a frame
  SHM_RELEASE = 15,
  /**
   * On a MessagePort's own socket (since version 3): a control frame, the operation in `id` (1 PAUSE: the sender is
   * moving to another process, stop writing; 2 PAUSED: the last frame written until RESUME; 3 RESUME). Empty payload.
   */
  PORT = 16,
  /**
   * Either way (since version 3): `[token, state]`, the state (backlog) of a MessagePort whose descriptor an earlier
   * message on the same connection carried under `token`.
   */
  PORT_STATE = 17,
}

/** Bytes of `u32 length | u8 kind | u32 id` before each payload. */
export const FRAME_HEADER_BYTES = 9;

/**
 * The sending side's shared-memory segment (memfd on Linux, an unlinked 0600 shm_open object on macOS), mapped
 * here. Used only on the JS thread of the environment that made it.
 */
export interface NativeShmPool {
  /** The segment's descriptor until `closeFd()` (-1 after): what is passed to the peer. */
  readonly fd: number;
  /** Bytes of the segment, its 4 KiB header included. */
  readonly size: number;
  closeFd(): void;
  /**
   * The block the peer reads `bytes` from, as [slot, offset]: no copy when `bytes` lie inside a block of this
   * pool (allocShared), else a copy into a free block. Counts one more send of that block. null when no block is
   * free (the peer still holds them) or the pool is closed.
   */
  put(bytes: Uint8Array): [number, number] | null;
  /** A Buffer over a fresh block (not zeroed), or null when none is free or external Buffers are refused. */
  alloc(size: number): Buffer | null;
  /**
   * A copy of `length` bytes at `offset` of this pool, which the peer referred to instead of sending them back.
   * Throws ERR_IPC_BAD_FRAME unless they lie inside one block in use.
   */
  copyOut(offset: number, length: number): Buffer;
  /** Holds the block containing those bytes until unpin(block); the block's offset, or -1 if none in use does. */
  pin(offset: number, length: number): number;
  unpin(block: number): void;
  /**
   * A Buffer over `length` bytes at `offset` of this pool that the peer referred to in an invoke answer (no copy; the
   * block stays held while it lives). Throws ERR_IPC_BAD_FRAME unless they lie inside one block in use.
   */
  viewOwn(offset: number, length: number): Buffer;
  /** Blocks not yet given back, and their bytes. */
  stats(): { blocks: number; bytesInUse: number };
  /** Idempotent. The mapping lives on until the last Buffer over one of its blocks is collected. */
  close(): void;
}

/** The peer's segment, mapped here (read-write, shared). */
export interface NativeShmMapping {
  readonly size: number;
  /**
   * A Buffer over the block (a copy with `copy`, and in copied-buffer mode); the block goes back to the peer when
   * the Buffer is collected (at once for a copy). Throws ERR_IPC_BAD_FRAME for a block outside the segment.
   */
  view(slot: number, offset: number, length: number, copy?: boolean): Buffer;
  /** The offset of `bytes` in the peer's segment when they lie inside its data area (a view of its block), else -1. */
  locate(bytes: Uint8Array): number;
  /** Bytes of the peer's blocks that Buffers of this process still hold (views not yet collected). */
  stats(): { viewBytes: number };
  close(): void;
}

/** Peer credentials read from the kernel (SO_PEERCRED / getpeereid / GetNamedPipeClientProcessId). */
export interface NativeCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/**
 * One connected socket (or named pipe). Created by `connect()` or handed to a server's `onConnection`.
 * Reading starts with `start()`; until then nothing is read.
 */
export interface NativeConnection {
  /**
   * Begin reading on the event loop. `onFrames` receives every complete frame one readable event brought
   * (or that accumulated during `call`), as Buffers each holding one or more whole frames back to back
   * (u32le length included). `onClose(err)` runs once, asynchronously, when the connection ends
   * (err null on a clean EOF or local close, else an Error with `code`: ECONNRESET, ERR_IPC_FRAME_TOO_LARGE,
   * ERR_IPC_BAD_FRAME, …). `onDrain` runs when the write queue empties after having been non-empty.
   * Returns a one-element Float64Array the addon keeps equal to `bufferedAmount` (read without a call into
   * the addon), or undefined where the transport cannot (Windows: its writes finish on another thread).
   */
  start(
    onFrames: (chunks: Buffer[]) => void,
    onClose: (err: Error | null) => void,
    onDrain: () => void,
  ): Float64Array | undefined;
  /**
   * Queue one frame: header built natively, payload written with writev (never copied if the kernel takes
   * it whole). Returns the bytes still buffered afterwards. Throws ERR_IPC_DISCONNECTED when closed.
   */
  write(kind: number, id: number, payload: Uint8Array | null): number;
  /**
   * Queue bytes that are already whole frames (headers included), as built by the JS write batch. Written at
   * once if nothing is queued; what the kernel does not take is copied (the caller reuses its buffer).
   * Returns the bytes still buffered afterwards; throws ERR_IPC_DISCONNECTED when closed.
   */
  writeFrames(frames: Uint8Array): number;
  /**
   * The blocking call behind `sendSync`: flush queued writes, write the frame, then block this thread on the
   * socket until a SYNC_REPLY frame with the same id arrives; return that frame's payload, or, when BLOB frames
   * came right before it (the reply's large byte arrays; see `syncReplyBlobs`), `[payload, ...blobs]`. Frames that arrive
   * meanwhile are kept and delivered to `onFrames` asynchronously after the call returns, in order.
   * Waits in slices of `sliceMs`, calling `alive()` between slices so that worker termination and
   * process.exit are noticed. `timeoutMs` <= 0 means no timeout.
   * Throws ERR_IPC_TIMEOUT, ERR_IPC_DISCONNECTED (peer gone; `onClose` follows asynchronously),
   * ERR_IPC_INTERRUPTED (the environment is terminating).
   * With `replyInto`, a reply without BLOB frames that fits is copied into it and its length returned instead
   * (the Windows addon ignores it and always returns a Buffer).
   */
  call(id: number, payload: Uint8Array, timeoutMs: number, alive: () => void, replyInto?: Uint8Array): Buffer | Buffer[] | number;
  /** Block until everything queued is written or `timeoutMs` passes; used at process exit. Returns bytes left. */
  flush(timeoutMs: number): number;
  /** Whether the connection keeps the event loop alive (queued writes always do, until flushed). */
  ref(): void;
  unref(): void;
  /** Idempotent. Stops reading, drops queued writes, closes the fd in the handle's close callback. */
  close(): void;
  /** Half-close after flushing: queued writes are still sent, then the fd is shut down and closed. */
  end(): void;
  /**
   * Queue a HANDLES frame carrying duplicates of these descriptors (at most 253), in order with the other frames;
   * the caller keeps its own and may close them at once. The duplicates are closed once sent, or when the
   * connection closes first. Returns the bytes still buffered; throws ERR_IPC_DISCONNECTED when closed.
   */
  writeHandles(fds: number[]): number;
  /**
   * The next `count` received descriptors, in arrival order; they are the caller's from now on (close them with
   * `closeHandle`). A HANDLES frame's descriptors are always there by the time the frame reaches `onFrames`.
   * Throws ERR_IPC_BAD_FRAME if fewer arrived. Descriptors nobody took are closed when the connection closes;
   * more than 256 untaken at once close the connection with ERR_IPC_BAD_FRAME, as do descriptors the kernel
   * dropped on the way.
   */
  takeHandles(count: number): number[];
  readonly bufferedAmount: number;
  readonly credentials: NativeCredentials;
  /** Largest frame body accepted from the peer; bigger declared lengths close the connection. */
  maxFrameSize: number;
}

export interface NativeServer {
  /** Idempotent: stop accepting, close the listening fd, remove the socket file it bound, release the lock. */
  close(): void;
  ref(): void;
  unref(): void;
}

export interface NativeBinding {
  /**
   * Bind and listen on a Unix socket path (synchronously). Sets the socket file's mode to `mode` between bind
   * and listen. Throws Node-shaped system errors (code, errno, syscall, address): EADDRINUSE, EACCES, …
   * Claims the path atomically first: `<address>.lock`, flock'ed for the server's life (EADDRINUSE while
   * another server holds it); with the lock held, a socket file nobody accepts on is replaced.
   */
  listen(
    address: string,
    backlog: number,
    mode: number,
    onConnection: (conn: NativeConnection) => void,
    onError: (err: Error) => void,
  ): NativeServer;
  /**
   * Connect synchronously. EAGAIN (listen queue full) and, on Windows, ERROR_PIPE_BUSY are retried with
   * backoff until `timeoutMs`. Throws ENOENT, ECONNREFUSED, EACCES, … with syscall 'connect' and address.
   */
  connect(address: string, timeoutMs: number): NativeConnection;
  /**
   * Two connected stream sockets (Unix: socketpair(2), non-blocking, close-on-exec; Windows: a connected
   * named-pipe pair, handles as numbers). Each end can be adopted here, or sent to another process.
   */
  socketpair(): [number, number];
  /**
   * Wraps a connected descriptor as a connection (not started): same framing, blocking call, blobs and handles
   * as a renderer↔main connection; credentials read from the socket. Ownership passes, also when this throws
   * (ENOTSOCK for anything but a Unix stream socket; EBADF for a descriptor that is not open).
   */
  adoptConnection(fd: number): NativeConnection;
  /** Closes a descriptor JS owns (from socketpair() or takeHandles()). Throws EBADF if it is not open. */
  closeHandle(fd: number): void;
  /**
   * Removes the socket file at `socketPath` and its lock file when no live server holds the lock (never a file
   * that is not a socket, never a socket that still accepts connections). Whether they were removed; always
   * false on Windows.
   */
  removeStale(socketPath: string): boolean;
  /**
   * How large received frames reach JS in this environment: `'external'` (Buffers over the receive blocks, no
   * copy) or `'copy'` (ordinary Buffers): Electron's V8 sandbox refuses external Buffers, and the first refusal
   * switches the environment to copying; `IPCWIRE_COPY_BUFFERS=1` forces it.
   */
  readonly bufferMode: 'external' | 'copy';
  /** Longest socket path the platform accepts, in bytes (sizeof(sun_path) - 1). */
  readonly maxPathLength: number;
  /** Whether `call()` hands back the BLOB frames read right before its reply (as [reply, ...blobs]). */
  readonly syncReplyBlobs?: boolean;
  /** Whether this platform has shared-memory pools (memfd on Linux, shm_open on macOS, sections on Windows). */
  readonly shmSupported: boolean;
  /** A new segment of `size` bytes; throws a system error (EPERM, ENOSYS, EMFILE, ENOMEM, …) when refused. */
  ShmPool: new (size: number) => NativeShmPool;
  /** Maps a segment received from the peer; takes (and closes) `fd`. ERR_IPC_BAD_FRAME if it cannot be used. */
  ShmMapping: new (fd: number) => NativeShmMapping;
  /** Detaches `bytes`' ArrayBuffer when it is a view of a peer's shared-memory block (true); else false. */
  releaseShared(bytes: ArrayBufferView | ArrayBuffer): boolean;
  /** Hand the JS error class used for ERR_IPC_* errors to the addon (so codes come from one factory). */
  setErrorFactory(make: (code: string, message: string, props?: Record<string, unknown>) => Error): void;
}

let binding: NativeBinding | undefined;

/** What `addonFile` needs to know about the running process; tests pass a made-up one. */
export interface AddonHost {
  platform: string;
  arch: string;
  /** Linux only: the C library the process runs on. */
  libc: 'glibc' | 'musl' | undefined;
  /** Skip local builds (build/Release, build/Debug), as node-gyp-build does under PREBUILDS_ONLY. */
  prebuildsOnly: boolean;
  exists(file: string): boolean;
}

/** The running process, as `addonFile` sees it. */
export function currentHost(): AddonHost {
  return {
    platform: process.platform,
    arch: process.arch,
    libc: process.platform === 'linux' ? libcOf(processReport()) : undefined,
    prebuildsOnly: !!process.env.PREBUILDS_ONLY,
    exists: (file) => fs.existsSync(file),
  };
}

/**
 * The addon file to load from the package folder `root`, or undefined when none fits: a local build first
 * (build/Release, then build/Debug: what `npm rebuild ipcwire` or a checkout's `npm run build` made), then
 * `prebuilds/<platform>-<arch>/ipcwire.node`, on Linux `ipcwire.glibc.node` or `ipcwire.musl.node` after the C
 * library the process runs on. node-gyp-build knows musl only by `/etc/alpine-release`, so on any other musl
 * system (Void, Chimera, distroless musl images) it would pick the glibc binary, which cannot load there.
 */
export function addonFile(root: string, host: AddonHost = currentHost()): string | undefined {
  const candidates: string[] = [];
  if (!host.prebuildsOnly) {
    candidates.push(path.join(root, 'build', 'Release', 'ipcwire.node'), path.join(root, 'build', 'Debug', 'ipcwire.node'));
  }
  const dir = path.join(root, 'prebuilds', `${host.platform}-${host.arch}`);
  candidates.push(path.join(dir, host.platform === 'linux' ? `ipcwire.${host.libc ?? 'glibc'}.node` : 'ipcwire.node'));
  return candidates.find((file) => host.exists(file));
}

/** Load the addon once per environment (a local build first, then the prebuilt binary for this platform). */
export function native(): NativeBinding {
  if (binding) return binding;
  const root = path.join(__dirname, '..', '..');
  // IPCWIRE_NATIVE_PATH points at a specific build (sanitizer builds, the cmake-js build) for tests.
  const override = process.env.IPCWIRE_NATIVE_PATH;
  try {
    // node-gyp-build is the fallback for layouts addonFile does not know (its <NAME>_PREBUILD variable, prebuilds
    // beside the node executable); it also words the error when nothing at all is there.
    const file = override ?? addonFile(root);
    binding = (file ? require(file) : require('node-gyp-build')(root)) as NativeBinding;
    binding.setErrorFactory(makeError);
  } catch (cause) {
    const libc = process.platform === 'linux' ? libcOf(processReport()) : 'native libc';
    const err = new Error(
      `ipcwire: no native addon for ${process.platform}-${process.arch} (Node-API 8, ${libc}). ` +
        (override
          ? `Looked at ${override} (IPCWIRE_NATIVE_PATH). `
          : `Looked in ${path.join(root, 'prebuilds', `${process.platform}-${process.arch}`)} and ${path.join(root, 'build', 'Release')}. `) +
        `Build it from source with \`npm rebuild ipcwire\` (needs python3, make and a C++17 compiler). ` +
        `Cause: ${(cause as Error).message}`,
    ) as Error & { code: string };
    err.code = 'ERR_IPC_NATIVE_LOAD';
    throw err;
  }
  return binding;
}

/** The header of Node's diagnostic report (which says which glibc the process runs on), or undefined. */
function processReport(): { header?: { glibcVersionRuntime?: string } } | undefined {
  const report = process.report as (NodeJS.ProcessReport & { excludeNetwork?: boolean }) | undefined;
  if (!report) return undefined;
  // The network part of a report can mean DNS lookups for the process's TCP handles: not wanted here.
  const excludeNetwork = report.excludeNetwork;
  const settable = typeof excludeNetwork === 'boolean'; // Node >= 20.13
  try {
    if (settable) report.excludeNetwork = true;
    return report.getReport() as { header?: { glibcVersionRuntime?: string } };
  } catch {
    return undefined;
  } finally {
    if (settable) report.excludeNetwork = excludeNetwork;
  }
}

/**
 * The C library of a Linux process from its diagnostic report: Node fills `header.glibcVersionRuntime` only when
 * it runs on glibc, so a report without it means musl. No report at all (reports disabled) is taken as glibc,
 * the common case.
 */
export function libcOf(report: { header?: { glibcVersionRuntime?: string } } | undefined): 'glibc' | 'musl' {
  if (!report?.header) return 'glibc';
  return report.header.glibcVersionRuntime ? 'glibc' : 'musl';
}
