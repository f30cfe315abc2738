/**
 * OS handles in messages, as child_process's `send(message, sendHandle)` has them, but anywhere in the
 * arguments of `send`, `sendSync`, `invoke` and in the values handlers return: a `net.Socket` (TCP or Unix
 * socket), a listening `net.Server`, or a raw descriptor wrapped in an {@link IpcHandle}. Each travels as codec
 * extension 0x24 with its descriptor on the message's HANDLES frame; the receiver gets a working `net.Socket`,
 * a listening `net.Server`, or an `IpcHandle` of its own.
 */
import * as net from 'node:net';
import { registerHandleType } from './codec';
import { makeError } from './errors';
import { native } from './native';

/**
 * A raw OS descriptor (Unix file descriptor) that can be sent to another process: the receiver gets an
 * `IpcHandle` over its own descriptor for the same open file, pipe or socket. The handle owns its descriptor
 * and closes it with {@link IpcHandle.close}. Sending moves it: the sender's is closed once the message is
 * handed to the connection, unless marked with {@link keepOpen}.
 */
export class IpcHandle {
  /** The descriptor; -1 once closed. */
  fd: number;

  /** Wraps a descriptor; the IpcHandle owns it from now on (close it with `close()`). */
  constructor(fd: number) {
    if (!Number.isInteger(fd) || fd < 0) throw new TypeError(`IpcHandle expects a descriptor (a non-negative integer). Received ${String(fd)}`);
    this.fd = fd;
  }

  /** Closes the descriptor. Idempotent. */
  close(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    native().closeHandle(fd);
  }
}

const keptOpen = new WeakSet<net.Socket | IpcHandle>();

/**
 * Marks a `net.Socket` or an {@link IpcHandle} to stay open in this process after it is sent (child_process's
 * `keepOpen`); by default a sent socket is destroyed, and a sent IpcHandle closed, here once the message is
 * handed to the connection, as child_process does with a socket. Returns its argument.
 */
export function keepOpen<T extends net.Socket | IpcHandle>(handle: T): T {
  keptOpen.add(handle);
  return handle;
}

/** The descriptor under a net.Socket or net.Server (Unix), or a clear error. */
function descriptorOf(what: string, handle: unknown): number {
  const fd = (handle as { fd?: unknown } | null | undefined)?.fd;
  if (process.platform === 'win32') {
    throw makeError('ERR_IPC_TRANSFER_UNSUPPORTED',
      `A ${what} cannot be sent on Windows: Node cannot rebuild one from a duplicated handle there; send an IpcHandle`);
  }
  if (typeof fd !== 'number' || fd < 0) {
    throw makeError('ERR_IPC_UNCLONABLE', `A ${what} can be sent only while it has an open descriptor (connected or listening)`);
  }
  return fd;
}

interface WireHandle {
  /** What the descriptor is: a socket, a listening server, or a raw descriptor. */
  k: 's' | 'l' | 'h';
  /** A socket's allowHalfOpen. */
  h?: boolean;
}

registerHandleType<net.Socket | net.Server | IpcHandle>({
  type: 0x24,
  is: (value): value is net.Socket | net.Server | IpcHandle =>
    value instanceof IpcHandle || value instanceof net.Socket || value instanceof net.Server,
  encode(value) {
    if (value instanceof IpcHandle) {
      if (value.fd < 0) throw makeError('ERR_IPC_UNCLONABLE', 'A closed IpcHandle cannot be sent');
      return { fds: [value.fd], data: { k: 'h' } satisfies WireHandle };
    }
    if (value instanceof net.Server) {
      if (!value.listening) throw makeError('ERR_IPC_UNCLONABLE', 'A net.Server can be sent only while it is listening');
      return { fds: [descriptorOf('net.Server', (value as unknown as { _handle: unknown })._handle)], data: { k: 'l' } satisfies WireHandle };
    }
    const fd = descriptorOf('net.Socket', (value as unknown as { _handle: unknown })._handle);
    // Bytes this process already read from the socket would not reach the receiver: refuse rather than lose them.
    if (value.readableLength > 0) {
      throw makeError('ERR_IPC_UNCLONABLE',
        `A net.Socket with ${value.readableLength} bytes already read here cannot be sent (they would be lost); send it ` +
          `from the 'connection' listener, or create the server with pauseOnConnect: true`);
    }
    return { fds: [fd], data: { k: 's', h: value.allowHalfOpen } satisfies WireHandle };
  },
  sent(value) {
    // As child_process: a sent socket is closed here unless kept open; a server stays shared by both processes.
    if (value instanceof net.Server || keptOpen.has(value)) return;
    if (value instanceof net.Socket) value.destroy();
    else value.close();
  },
  decode(data, fds) {
    const wire = data as WireHandle | null;
    if (fds.length !== 1 || typeof wire !== 'object' || wire === null) throw new TypeError('Malformed OS handle');
    const fd = fds[0];
    switch (wire.k) {
      case 'h':
        return new IpcHandle(fd);
      case 's':
        return new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: wire.h === true });
      case 'l': {
        const server = net.createServer();
        server.listen({ fd });
        return server;
      }
      default:
        throw new TypeError('Malformed OS handle');
    }
  },
  dispose(value) {
    if (value instanceof IpcHandle) value.close();
    else if (value instanceof net.Socket) value.destroy();
    else if (value instanceof net.Server) value.close();
  },
});
