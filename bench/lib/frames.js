'use strict';
// u32le length-prefixed frames over a byte stream, as the node:net baseline needs them. Chunks are kept in a
// list and joined once per frame, so a 16 MiB frame arriving in 64 KiB reads costs one copy, not a quadratic
// series of concatenations; a header split across reads is handled.

class FrameReader {
  constructor(onFrame) {
    this.onFrame = onFrame;
    this.chunks = [];
    this.have = 0;
    this.need = -1; // body length of the frame being read, -1 while reading a header
  }

  push(chunk) {
    this.chunks.push(chunk);
    this.have += chunk.length;
    for (;;) {
      if (this.need < 0) {
        if (this.have < 4) return;
        const head = this.take(4);
        this.need = head.readUInt32LE(0);
      }
      if (this.have < this.need) return;
      const body = this.take(this.need);
      this.need = -1;
      this.onFrame(body);
    }
  }

  take(n) {
    let first = this.chunks[0];
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.have -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      first = this.chunks[0];
      const k = Math.min(first.length, n - off);
      first.copy(out, off, 0, k);
      off += k;
      if (k === first.length) this.chunks.shift();
      else this.chunks[0] = first.subarray(k);
    }
    this.have -= n;
    return out;
  }
}

/** One frame: a 4-byte header and the body, as two buffers for a writev-style write. */
function header(len) {
  const h = Buffer.allocUnsafe(4);
  h.writeUInt32LE(len, 0);
  return h;
}

/**
 * Batches small frames into 64 KiB writes, as a tuned node:net sender would: the baseline the issue's
 * "small messages delivered" target is measured against.
 */
class Batcher {
  constructor(socket, size = 64 * 1024) {
    this.socket = socket;
    this.size = size;
    this.buf = Buffer.allocUnsafe(size);
    this.off = 0;
  }

  /** Returns false when the socket asked to wait for 'drain'. */
  add(body) {
    const need = 4 + body.length;
    let ok = true;
    if (this.off + need > this.size) ok = this.flush();
    if (need > this.size) {
      ok = this.socket.write(header(body.length)) && ok;
      return this.socket.write(body) && ok;
    }
    this.buf.writeUInt32LE(body.length, this.off);
    body.copy(this.buf, this.off + 4);
    this.off += need;
    return ok;
  }

  flush() {
    if (this.off === 0) return true;
    const out = this.buf.subarray(0, this.off);
    this.buf = Buffer.allocUnsafe(this.size); // the socket keeps `out` until written
    this.off = 0;
    return this.socket.write(out);
  }
}

module.exports = { FrameReader, Batcher, header };
