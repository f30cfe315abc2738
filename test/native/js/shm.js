'use strict';
// The shared-memory pool's JS classes in one process: a pool and a mapping of its segment stand in for the two
// peers. Blocks come back when the receiver's Buffer is collected, hostile block references are refused, and
// closing both returns every mapping (/proc/self/maps) and descriptor to where it was.
const assert = require('node:assert');
const fs = require('node:fs');
const { binding } = require('./common');

require('node:v8').setFlagsFromString('--expose-gc');
const collect = require('node:vm').runInNewContext('gc');
// Buffer finalizers run after the collection, from the event loop.
const gc = () => new Promise((resolve) => { collect(); setImmediate(() => { collect(); setTimeout(resolve, 10); }); });
const maps = () => fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('memfd:ipcwire')).length;
const fds = () => fs.readdirSync('/proc/self/fd').length;

async function main() {
  if (!binding.shmSupported || !fs.existsSync('/proc/self/maps')) {
    console.log(JSON.stringify({ test: 'shm', skipped: 'no shared-memory pools or no /proc on this platform' }));
    return;
  }
  const maps0 = maps();
  const fds0 = fds();
  let pool = new binding.ShmPool(1 << 20);
  // The receiver maps the segment from its own descriptor (the transport hands it a duplicate).
  let mapping = new binding.ShmMapping(fs.openSync(`/proc/self/fd/${pool.fd}`, 'r+'));
  pool.closeFd();
  assert.strictEqual(mapping.size, 1 << 20);

  const src = Buffer.alloc(200000);
  for (let i = 0; i < src.length; i++) src[i] = (i * 7) & 0xff;
  let at = pool.put(src);
  assert.ok(at, 'a block for 200000 bytes');
  let view = mapping.view(at[0], at[1], src.length);
  assert.ok(view.equals(src));
  // Until the view is collected the block stays taken: a pool of 1 MiB holds only 5 such blocks.
  const held = [view];
  for (let i = 0; i < 4; i++) {
    const a = pool.put(src);
    assert.ok(a);
    held.push(mapping.view(a[0], a[1], src.length));
  }
  assert.strictEqual(pool.put(src), null, 'the pool is full while the receiver holds every block');
  assert.strictEqual(pool.stats().blocks, 5);
  held.length = 0;
  view = null;
  await gc();
  assert.strictEqual(pool.stats().blocks, 0, 'collected views gave their blocks back');

  // Zero copy: a Buffer from alloc() is sent where it is.
  let z = pool.alloc(100000);
  z.fill(9);
  at = pool.put(z.subarray(1000, 2000));
  assert.ok(at);
  let zv = mapping.view(at[0], at[1], 1000);
  z[1000] = 42; // the sender writing after sending changes that payload's bytes only
  assert.strictEqual(zv[0], 42);
  assert.strictEqual(zv[1], 9);

  // Hostile references: outside the segment, in the header, bad slots, lengths past the end.
  for (const [slot, offset, length] of [[0, 0, 10], [0, 4095, 2], [0, 4096, 1 << 20], [1024, 4096, 1], [0, (1 << 20) + 1, 0],
    [0xffffffff, 4096, 1], [0, 4096, -1], [0, 4096, 2 ** 32]]) {
    assert.throws(() => mapping.view(slot, offset, length), (e) => e.code === 'ERR_IPC_BAD_FRAME', `${slot},${offset},${length}`);
  }
  // A descriptor that is not a sealed segment is refused, and closed.
  const plain = fs.openSync(__filename, 'r');
  assert.throws(() => new binding.ShmMapping(plain), (e) => e.code === 'ERR_IPC_BAD_FRAME');
  assert.throws(() => fs.fstatSync(plain), (e) => e.code === 'EBADF');

  // A large view (not counted by V8 as this process's memory while it lives) gives its block back as well.
  {
    const bigPool = new binding.ShmPool(40 << 20);
    const bigMap = new binding.ShmMapping(fs.openSync(`/proc/self/fd/${bigPool.fd}`, 'r+'));
    bigPool.closeFd();
    const b = bigPool.alloc(20 << 20);
    b.fill(5);
    const a = bigPool.put(b);
    let bv = bigMap.view(a[0], a[1], 20 << 20);
    assert.strictEqual(bv[(20 << 20) - 1], 5);
    bv = null;
    await gc();
    assert.strictEqual(bigPool.put(Buffer.alloc(30 << 20)), null, 'the allocShared Buffer still holds its block');
    bigPool.close();
    bigMap.close();
  }

  pool.close();
  pool.close();
  mapping.close();
  pool = mapping = null;
  // Buffers over the segment keep it mapped until they are collected.
  assert.ok(maps() > maps0);
  const mapsHeld = maps() - maps0;
  z = zv = null;
  for (let i = 0; i < 5 && maps() !== maps0; i++) await gc();
  assert.strictEqual(maps(), maps0, 'every mapping is gone once the Buffers over it are');
  assert.strictEqual(fds(), fds0, 'no descriptor left open');
  console.log(JSON.stringify({ test: 'shm', mapsWhileHeld: mapsHeld, mapsAfter: maps() - maps0, fds: fds() - fds0 }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
