'use strict';
// Descriptor passing (Unix): socketpair / adoptConnection / closeHandle, HANDLES frames written with
// writeHandles and taken with takeHandles. Descriptors arrive in order with their frames (also behind a full
// socket and partial writes, and while a blocking call() reads), untaken ones are closed with the connection,
// a peer sending too many is cut off, and nothing leaks (descriptors counted around everything).
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { binding, parseChunks } = require('./common');

const HANDLES = 10;
const MESSAGE = 3;

if (process.argv[2] === 'child') {
  // fd 3 is our end of a socketpair made by the parent. Answers each SYNC with a descriptor of the file named in
  // its payload (sent as HANDLES + MESSAGE before the reply), then closes when told.
  const conn = binding.adoptConnection(3);
  conn.start((chunks) => {
    for (const f of parseChunks(chunks)) {
      if (f.kind === 4) {
        const fd = fs.openSync(f.payload.toString(), 'r');
        conn.writeHandles([fd]);
        fs.closeSync(fd);  // the frame carries its own duplicate
        conn.write(MESSAGE, f.id, Buffer.from('file'));
        conn.write(5, f.id, Buffer.from('reply' + f.id));
      } else if (f.kind === MESSAGE && f.payload.toString() === 'bye') {
        conn.end();
      }
    }
  }, () => {}, () => {});
  conn.ref();
  return;
}

const fdDir = fs.existsSync('/proc/self/fd') ? '/proc/self/fd' : '/dev/fd';
const openFds = () => fs.readdirSync(fdDir).length;
const until = async (cond, ms = 60000) => {
  const t = Date.now();
  while (!cond()) {
    if (Date.now() - t > ms) throw new Error('timeout');
    await new Promise((r) => setTimeout(r, 2));
  }
};
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iwh-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
const files = [];
for (let i = 0; i < 40; i++) {
  const f = path.join(dir, 'f' + i);
  fs.writeFileSync(f, 'content ' + i);
  files.push(f);
}
const inode = (fd) => fs.fstatSync(fd).ino;
const inodes = files.map((f) => fs.statSync(f).ino);

function pair() {
  const [x, y] = binding.socketpair();
  return [binding.adoptConnection(x), binding.adoptConnection(y)];
}

/** Collects frames; a HANDLES frame's descriptors are taken at once and attached to the next frame. */
function receiver(conn, { take = true } = {}) {
  const st = { frames: [], closed: undefined, held: [] };
  conn.start((chunks) => {
    for (const f of parseChunks(chunks)) {
      if (f.kind === HANDLES) {
        if (take) st.held.push(...conn.takeHandles(f.id));
        continue;
      }
      st.frames.push({ kind: f.kind, id: f.id, payload: f.payload.toString(), fds: st.held });
      st.held = [];
    }
  }, (err) => { st.closed = err; }, () => {});
  return st;
}

function closeAll(fds) {
  for (const fd of fds) binding.closeHandle(fd);
}

async function main() {
  const before = openFds();

  // Argument checks.
  {
    const [a, b] = pair();
    assert.throws(() => a.writeHandles('x'), TypeError);
    assert.throws(() => a.writeHandles([-1]), TypeError);
    assert.throws(() => a.writeHandles(new Array(254).fill(0)), RangeError);
    assert.throws(() => a.writeHandles([123456]), (e) => e.code === 'EBADF');
    assert.throws(() => b.takeHandles(1), (e) => e.code === 'ERR_IPC_BAD_FRAME');
    assert.deepStrictEqual(b.takeHandles(0), []);
    assert.throws(() => binding.closeHandle(123456), (e) => e.code === 'EBADF');
    const fileFd = fs.openSync(files[0], 'r');
    assert.throws(() => binding.adoptConnection(fileFd), (e) => e.code === 'ENOTSOCK');
    assert.throws(() => fs.fstatSync(fileFd), (e) => e.code === 'EBADF', 'ownership passed: the descriptor was closed');
    assert.throws(() => binding.adoptConnection(123456), (e) => e.code === 'EBADF');
    a.close();
    b.close();
    a.close();  // idempotent
  }

  // In order with their frames: each message carries a descriptor of file i; the receiver gets exactly that file.
  {
    const [a, b] = pair();
    const sb = receiver(b);
    for (let i = 0; i < files.length; i++) {
      const fd = fs.openSync(files[i], 'r');
      a.writeHandles([fd]);
      fs.closeSync(fd);
      a.write(MESSAGE, i, Buffer.from('m' + i));
      if (i % 3 === 0) a.write(MESSAGE, 1000 + i, Buffer.from('no handle'));
    }
    await until(() => sb.frames.filter((f) => f.id < 1000).length === files.length);
    for (const f of sb.frames) {
      if (f.id >= 1000) {
        assert.strictEqual(f.fds.length, 0);
        continue;
      }
      assert.strictEqual(f.fds.length, 1, 'frame ' + f.id);
      assert.strictEqual(inode(f.fds[0]), inodes[f.id], 'the descriptor of file ' + f.id);
      assert.strictEqual(fs.readFileSync(files[f.id], 'utf8'), 'content ' + f.id);
      if (fs.existsSync('/proc/self/fdinfo')) {
        const flags = /flags:\s*(\d+)/.exec(fs.readFileSync('/proc/self/fdinfo/' + f.fds[0], 'utf8'))[1];
        assert.ok(parseInt(flags, 8) & 0o2000000, 'received descriptors are close-on-exec');
      }
      closeAll(f.fds);
    }
    a.close();
    b.close();
    await until(() => sb.closed !== undefined);
  }

  // Behind a full socket: a large frame fills the kernel buffers first, so everything after it is queued and
  // written later in partial writes, HANDLES frames among the coalesced small ones. Several descriptors at once.
  {
    const [a, b] = pair();
    const big = Buffer.alloc(8 * 1024 * 1024, 1);
    a.write(MESSAGE, 5000, big);
    assert.ok(a.bufferedAmount > 0, 'the socket is full');
    for (let i = 0; i < files.length; i += 2) {
      const fds = [fs.openSync(files[i], 'r'), fs.openSync(files[i + 1], 'r')];
      a.writeHandles(fds);
      closeAll(fds);
      a.write(MESSAGE, i, Buffer.alloc(30000 + i, 2));  // frames that straddle write boundaries
    }
    const queuedBefore = openFds();
    const sb = receiver(b);
    await until(() => sb.frames.length === 1 + files.length / 2);
    assert.strictEqual(sb.frames[0].fds.length, 0);
    for (const f of sb.frames.slice(1)) {
      assert.deepStrictEqual(f.fds.map(inode), [inodes[f.id], inodes[f.id + 1]], 'frame ' + f.id);
      closeAll(f.fds);
    }
    await until(() => a.bufferedAmount === 0);
    // Our duplicates were closed once sent.
    assert.ok(openFds() <= queuedBefore - files.length, `sent duplicates closed: ${openFds()} vs ${queuedBefore}`);
    a.close();
    b.close();
    await until(() => sb.closed !== undefined);
  }

  // Duplicates still queued are closed when the connection closes; received but untaken ones too.
  {
    const start = openFds();
    const [a, b] = pair();
    a.write(MESSAGE, 1, Buffer.alloc(8 * 1024 * 1024));
    const fd = fs.openSync(files[0], 'r');
    for (let i = 0; i < 20; i++) a.writeHandles([fd, fd]);
    fs.closeSync(fd);
    assert.strictEqual(openFds(), start + 2 + 40, 'two sockets and 40 queued duplicates');
    a.close();
    assert.strictEqual(openFds(), start + 1, 'queued duplicates closed with the connection');
    b.close();
    assert.strictEqual(openFds(), start);

    const [c, d] = pair();
    const sd = receiver(d, { take: false });
    const fd2 = fs.openSync(files[1], 'r');
    for (let i = 0; i < 10; i++) {
      c.writeHandles([fd2, fd2, fd2]);
      c.write(MESSAGE, i, null);
    }
    fs.closeSync(fd2);
    await until(() => sd.frames.length === 10);
    assert.strictEqual(openFds(), start + 2 + 30, 'thirty received, untaken');
    d.close();
    assert.strictEqual(openFds(), start + 1, 'untaken descriptors closed with the connection');
    c.close();
    await until(() => sd.closed !== undefined);
  }

  // A peer that sends more than 256 descriptors nobody takes is cut off with ERR_IPC_BAD_FRAME.
  {
    const start = openFds();
    const [a, b] = pair();
    const sb = receiver(b, { take: false });
    const sa = receiver(a);
    const fd = fs.openSync(files[2], 'r');
    a.writeHandles(new Array(200).fill(fd));
    a.writeHandles(new Array(200).fill(fd));
    a.write(MESSAGE, 1, null);
    fs.closeSync(fd);
    await until(() => sb.closed !== undefined && sa.closed !== undefined);
    assert.strictEqual(sb.closed && sb.closed.code, 'ERR_IPC_BAD_FRAME');
    assert.match(sb.closed.message, /more than 256/);
    a.close();
    await until(() => openFds() === start);
  }

  // During a blocking call(): the child answers with a descriptor (HANDLES + MESSAGE) before the reply; call()
  // reads them with recvmsg, and they are there when the frames are delivered after it returns.
  {
    const [mine, theirs] = binding.socketpair();
    const child = spawn(process.execPath, [__filename, 'child'], { stdio: ['ignore', 'inherit', 'inherit', theirs] });
    binding.closeHandle(theirs);
    const conn = binding.adoptConnection(mine);
    const st = receiver(conn);
    conn.ref();
    for (let i = 0; i < 10; i++) {
      const reply = conn.call(i + 1, Buffer.from(files[i]), 10000, () => {});
      assert.strictEqual(reply.toString(), 'reply' + (i + 1));
    }
    await until(() => st.frames.length === 10);
    for (const f of st.frames) {
      assert.strictEqual(f.payload, 'file');
      assert.strictEqual(f.fds.length, 1);
      assert.strictEqual(inode(f.fds[0]), inodes[f.id - 1]);
      closeAll(f.fds);
    }
    conn.write(MESSAGE, 0, Buffer.from('bye'));
    await until(() => st.closed !== undefined);
    assert.strictEqual(st.closed, null);
    const code = await new Promise((r) => (child.exitCode !== null ? r(child.exitCode) : child.on('exit', r)));
    assert.strictEqual(code, 0);
  }

  await until(() => openFds() === before, 5000).catch(() => {
    throw new Error(`descriptor leak: ${openFds()} open, ${before} before`);
  });
  console.log(JSON.stringify({ test: 'handles', fds: openFds() }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
