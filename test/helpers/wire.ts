/**
 * Wire-level tools for hostile tests: a man-in-the-middle proxy between a real renderer and a real main
 * (records, holds, trickles byte by byte, injects), frame parsing, and raw clients that replay a real
 * renderer's handshake.
 *
 * Only the framing is assumed (src/ts/native.ts: `u32le bodyLength | u8 kind | u32le id | payload`); the
 * handshake bytes are captured from a real renderer, never hand-written.
 */
import * as net from 'node:net';
import { expect } from 'vitest';
import { type Any, runNode, sleep, sockPath, trackRaw } from './index';

export const KIND = { HELLO: 1, WELCOME: 2, MESSAGE: 3, SYNC: 4, SYNC_REPLY: 5, INVOKE: 6, INVOKE_REPLY: 7, BLOB: 8, STREAM: 11, STREAM_CTRL: 12 } as const;

/** A whole frame: length prefix, kind, id, payload. */
export function frame(kind: number, id: number, payload: Uint8Array): Buffer {
  const head = Buffer.alloc(9);
  head.writeUInt32LE(5 + payload.length, 0);
  head.writeUInt8(kind, 4);
  head.writeUInt32LE(id, 5);
  return Buffer.concat([head, payload]);
}

/** Split a byte stream into whole frames (the remainder stays unparsed). */
export function parseFrames(buf: Buffer): { frames: Buffer[]; rest: Buffer } {
  const frames: Buffer[] = [];
  let off = 0;
  while (buf.length - off >= 4) {
    const len = buf.readUInt32LE(off);
    if (buf.length - off - 4 < len) break;
    frames.push(buf.subarray(off, off + 4 + len));
    off += 4 + len;
  }
  return { frames, rest: buf.subarray(off) };
}

export interface Proxy {
  address: string;
  /** Bytes renderer → main and main → renderer seen so far (first connection). */
  up: Buffer;
  down: Buffer;
  /** When true, renderer → main bytes are held back until `release`. */
  hold: boolean;
  held: Buffer;
  /** Write what was held plus `extra` to main in one write. */
  release(extra?: Buffer): void;
  /** Write raw bytes to main on the (first) connection. */
  inject(bytes: Buffer): void;
  close(): void;
}

/**
 * Listen on a fresh path and forward each connection to `target`. `trickle` writes every byte separately,
 * with a turn of the event loop in between, in the given directions.
 */
export function proxy(target: string, opts: { trickle?: { up?: boolean; down?: boolean } } = {}): Proxy {
  const address = sockPath();
  let upstream: net.Socket | undefined;
  const p: Proxy = {
    address,
    up: Buffer.alloc(0),
    down: Buffer.alloc(0),
    hold: false,
    held: Buffer.alloc(0),
    release(extra) {
      const all = extra ? Buffer.concat([p.held, extra]) : p.held;
      p.held = Buffer.alloc(0);
      p.hold = false;
      upstream!.write(all);
    },
    inject(bytes) {
      upstream!.write(bytes);
    },
    close() {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
  const sockets = new Set<net.Socket>();
  const trickle = (dst: net.Socket, chunk: Buffer, queue: { q: Buffer[]; busy: boolean }) => {
    queue.q.push(chunk);
    if (queue.busy) return;
    queue.busy = true;
    void (async () => {
      while (queue.q.length) {
        const c = queue.q.shift()!;
        for (let i = 0; i < c.length; i++) {
          if (dst.destroyed) return;
          dst.write(c.subarray(i, i + 1));
          await new Promise((r) => setImmediate(r));
        }
      }
      queue.busy = false;
    })();
  };
  const server = trackRaw(
    net.createServer((down) => {
      const up = trackRaw(net.connect(target));
      sockets.add(down);
      sockets.add(up);
      const first = !upstream;
      if (first) upstream = up;
      const upQ = { q: [] as Buffer[], busy: false };
      const downQ = { q: [] as Buffer[], busy: false };
      down.on('data', (c: Buffer) => {
        if (first) p.up = Buffer.concat([p.up, c]);
        if (first && p.hold) p.held = Buffer.concat([p.held, c]);
        else if (opts.trickle?.up) trickle(up, c, upQ);
        else up.write(c);
      });
      up.on('data', (c: Buffer) => {
        if (first) p.down = Buffer.concat([p.down, c]);
        if (opts.trickle?.down) trickle(down, c, downQ);
        else down.write(c);
      });
      const end = () => {
        // Let trickled bytes drain before passing the end on.
        void (async () => {
          while (upQ.busy || downQ.busy) await sleep(5);
          up.end();
          down.end();
        })();
      };
      down.on('end', end);
      up.on('end', end);
      down.on('error', () => up.destroy());
      up.on('error', () => down.destroy());
      down.on('close', () => up.destroy());
      up.on('close', () => down.destroy());
    }),
  );
  server.listen(address);
  return p;
}

/** A raw `node:net` client to `address`, tracked; collects what it receives and whether it was closed. */
export function rawClient(address: string): {
  socket: net.Socket;
  received: () => Buffer;
  closed: Promise<void>;
  isClosed: () => boolean;
  connected: Promise<void>;
} {
  const socket = trackRaw(net.connect(address));
  let received = Buffer.alloc(0);
  let isClosed = false;
  socket.on('data', (c) => (received = Buffer.concat([received, c])));
  socket.on('error', () => {});
  const closed = new Promise<void>((r) =>
    socket.on('close', () => {
      isClosed = true;
      r();
    }),
  );
  const connected = new Promise<void>((r) => socket.once('connect', () => r()));
  return { socket, received: () => received, closed, isClosed: () => isClosed, connected };
}

/** A renderer that answers peer.invoke('ping'), says 'up' once connected, and ends on 'bye'. */
export const GOOD_RENDERER = `
  const r = ipcwire.ipcRenderer;
  r.handle('ping', (e, x) => 'pong ' + x);
  r.once('bye', () => { r.removeHandler('ping'); r.close(); });
  r.send('up');
`;

/**
 * A real renderer's handshake (HELLO) and main's answer (WELCOME), captured through a proxy, so that raw
 * clients and fake mains replay real bytes instead of hand-written ones.
 */
export async function captureHandshake(main: Any): Promise<{ hello: Buffer; welcome: Buffer }> {
  main.handle('capture', () => 'captured');
  const px = proxy(main.address);
  const child = runNode(`out('r', await ipcwire.ipcRenderer.invoke('capture'));`, { address: px.address });
  expect(await child.msg('r')).toBe('captured');
  await child.waitExit();
  px.close();
  main.removeHandler('capture');
  const hello = parseFrames(px.up).frames[0];
  const welcome = parseFrames(px.down).frames[0];
  expect(hello.readUInt8(4)).toBe(KIND.HELLO);
  expect(welcome.readUInt8(4)).toBe(KIND.WELCOME);
  return { hello, welcome };
}
