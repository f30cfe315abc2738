/**
 * Write batching and receive-block reuse (the throughput work) must not change what the library
 * promises (order, values, delivery of what `send` accepted): small frames written after the first one of a turn are batched in JS and handed to the addon in
 * one call, and large frames are read into recycled blocks. These tests push bursts that mix batched and
 * unbatched frames across every way a batch is flushed (end of turn, full batch, a large frame, sendSync,
 * close(), process.exit()), and check that recycled blocks never overwrite a Buffer still held by JS.
 */
import { describe, expect, test } from 'vitest';
import { exitsCleanly, makeMain, nodeRequire, ROOT, runNode, useHarness, waitUntil } from './helpers';
import * as path from 'node:path';

useHarness();

describe('batching', () => {
  test('batching: 20,000 small sends in one turn, with 256 KiB Buffers and sendSyncs among them, then process.exit(): all arrive, in order, intact', { timeout: 60_000 }, async () => {
    const main = makeMain();
    const got: number[] = [];
    const bad: number[] = [];
    main.on('b', (_e: any, i: number, data: Buffer | string) => {
      got.push(i);
      const ok = i % 1000 === 500
        ? Buffer.isBuffer(data) && data.length === 256 * 1024 && data.every((b) => b === (i & 0xff))
        : data === 'x'.repeat(i % 50);
      if (!ok) bad.push(i);
    });
    main.on('b-sync', (e: any, i: number) => {
      got.push(i);
      e.returnValue = i;
    });
    let closed = false;
    main.peers.on('disconnect', () => (closed = true));
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      for (let i = 0; i < 20000; i++) {
        if (i % 1000 === 500) r.send('b', i, Buffer.alloc(256 * 1024, i & 0xff));
        else if (i % 1000 === 999) { if (r.sendSync('b-sync', i) !== i) throw new Error('bad sync reply'); }
        else r.send('b', i, 'x'.repeat(i % 50));
      }
      process.exit(0);
    `,
      { address: main.address },
    );
    await exitsCleanly(child);
    await waitUntil(() => closed, 10_000, 'the renderer connection to close');
    expect(bad).toEqual([]);
    expect(got.length).toBe(20000);
    expect(got).toEqual(Array.from({ length: 20000 }, (_, i) => i));
  });

  test('batching: main answers a burst with 50,000 event.reply calls in one turn; the renderer gets them in order', { timeout: 60_000 }, async () => {
    const main = makeMain();
    main.on('go', (e: any, n: number) => {
      for (let i = 0; i < n; i++) e.reply('r', i, i % 7 === 0 ? { nested: [i, 'x'] } : i * 2);
    });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const n = 50000;
      let next = 0, wrong = 0;
      await new Promise((resolve) => {
        r.on('r', (_e, i, v) => {
          const want = i % 7 === 0 ? JSON.stringify({ nested: [i, 'x'] }) : JSON.stringify(i * 2);
          if (i !== next || JSON.stringify(v) !== want) wrong++;
          next++;
          if (next === n) resolve();
        });
        r.send('go', n);
      });
      out('r', { next, wrong });
      r.close();
    `,
      { address: main.address },
    );
    expect(await child.msg('r')).toEqual({ next: 50000, wrong: 0 });
    await exitsCleanly(child);
  });

  test('batching: sends batched before close() in the same turn are delivered; a send after close() throws ERR_IPC_DISCONNECTED', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const got: number[] = [];
    main.on('c', (_e: any, i: number) => got.push(i));
    let closed = false;
    main.peers.on('disconnect', () => (closed = true));
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      for (let i = 0; i < 5000; i++) r.send('c', i);
      r.close();
      let code = 'no throw';
      try { r.send('c', -1); } catch (e) { code = e.code; }
      out('r', { code, connected: r.connected });
    `,
      { address: main.address },
    );
    expect(await child.msg('r')).toEqual({ code: 'ERR_IPC_DISCONNECTED', connected: false });
    await exitsCleanly(child);
    await waitUntil(() => closed, 10_000, 'the renderer connection to close');
    expect(got).toEqual(Array.from({ length: 5000 }, (_, i) => i));
  });

  test('batching: a producer that saw bufferedAmount > 0 after a burst gets a drain even when the batch alone was buffered (both sides)', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const got: number[] = [];
    let mainDrains = -1;
    main.on('d', (_e: any, i: number) => got.push(i));
    main.on('echo-burst', async (e: any, n: number) => {
      const peer = e.sender;
      for (let i = 0; i < n; i++) peer.send('r', i);
      const before = peer.bufferedAmount;
      if (before > 0) await new Promise((res) => peer.once('drain', res));
      mainDrains = before;
      peer.send('r-done', before, peer.bufferedAmount);
    });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const results = [];
      for (let round = 0; round < 20; round++) {
        for (let i = 0; i < 50; i++) r.send('d', round * 50 + i);
        const before = r.bufferedAmount;
        if (before > 0) {
          let timer;
          await Promise.race([
            new Promise((res) => r.link.once('drain', res)),
            new Promise((_, rej) => (timer = setTimeout(() => rej(new Error('no drain in round ' + round + ' (bufferedAmount ' + before + ', now ' + r.bufferedAmount + ')')), 5000))),
          ]);
          clearTimeout(timer);
        }
        results.push([before > 0, r.bufferedAmount]);
      }
      let got = 0;
      const done = new Promise((res) => r.on('r-done', (_e, before, after) => res([before, after])));
      r.on('r', () => got++);
      r.send('echo-burst', 200);
      const [mainBefore, mainAfter] = await done;
      out('r', { sawBuffered: results.filter(([b]) => b).length, after: results.map(([, a]) => a).filter((a) => a > 0).length, got, mainBefore: mainBefore > 0, mainAfter });
      r.close();
    `,
      { address: main.address },
    );
    const res = await child.msg('r', 20_000);
    // Every round had its 49 batched messages in bufferedAmount when it asked (the first goes straight out).
    expect(res).toEqual({ sawBuffered: 20, after: 0, got: 200, mainBefore: true, mainAfter: 0 });
    await exitsCleanly(child);
    expect(got).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(mainDrains).toBeGreaterThan(0);
  });

  test('batching: recycled receive blocks never overwrite a Buffer JS still holds (400 × 256 KiB, every 7th kept, GC forced)', { timeout: 60_000 }, async () => {
    const main = makeMain();
    main.on('fill', (e: any, n: number) => {
      for (let i = 0; i < n; i++) e.reply('blk', i, Buffer.alloc(256 * 1024, i & 0xff));
      e.reply('end');
    });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const kept = [];
      let received = 0;
      await new Promise((resolve) => {
        r.on('blk', (_e, i, buf) => {
          received++;
          if (i % 7 === 0) kept.push([i, buf]);
          if (received % 50 === 0) global.gc();
        });
        r.on('end', resolve);
        r.send('fill', 400);
      });
      global.gc();
      await new Promise((res) => setTimeout(res, 50)); // let finalizers run and blocks return to the pool
      // Another round reuses the returned blocks; the kept Buffers must be untouched by it.
      await new Promise((resolve) => { r.removeAllListeners('end'); r.on('end', resolve); r.send('fill', 100); });
      const damaged = kept.filter(([i, buf]) => buf.length !== 256 * 1024 || buf.some((b) => b !== (i & 0xff))).map(([i]) => i);
      out('r', { received, kept: kept.length, damaged });
      r.close();
    `,
      { address: main.address, execArgv: ['--expose-gc'] },
    );
    expect(await child.msg('r')).toEqual({ received: 500, kept: 73, damaged: [] });
    await exitsCleanly(child);
  });

  test('batching: the plain encoder used for flat messages writes the same bytes as the structured-clone one', () => {
    const codec = nodeRequire(path.join(ROOT, 'dist', 'cjs', 'codec.js'));
    const samples: unknown[] = [
      ['ping', ['ping', 123]],
      ['c', [1.5, -3, 2 ** 40, 2n ** 70n, -(2n ** 70n), 5n, null, undefined, true, false, 'é'.repeat(40), 'a'.repeat(300)]],
      ['c', [new Uint8Array([1, 2, 3]), 'after']],
      ['c', [Buffer.from('hi')]],
      ['c', [new Float64Array([1.5, -2]), 0, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, NaN, Infinity]],
      ['c', [new BigInt64Array([1n, -1n])]],
      ['', []],
      [0, 'reply value'],
      // Objects, collections and dates take the plain encoder too when no object in them repeats.
      ['c', [{ id: 1, name: 'x', tags: ['a', 'b'] }, { nested: { deep: [{}, []] } }, new Date(5), /ab+c/gi]],
      ['c', [new Map<unknown, unknown>([['k', { a: 1 }], [2, [3]]]), new Set([1, 's', { z: 1 }]), new Error('boom'), new ArrayBuffer(4)]],
    ];
    for (const value of samples) {
      const [structured, plain] = codec.packBothForTest(value);
      expect(plain.equals(structured)).toBe(true);
    }
  });
});

describe('small sendSync', () => {
  // Requests and answers of flat ASCII strings, numbers, booleans and null are written by a small encoder into
  // a reused buffer; everything else by the general one. Both must put the same bytes on the wire.
  const flat: unknown[] = [
    0, 1, 63, 64, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53, -1, -32, -33, -128, -129, -32768,
    -32769, -(2 ** 31), -(2 ** 31) - 1, 1.5, -0.25, NaN, Infinity, -Infinity, Number.MAX_VALUE, Number.MIN_VALUE,
    true, false, null, '', 'a', 'x'.repeat(31), 'x'.repeat(32), 'x'.repeat(255), 'ping', '\u007f\u0000',
  ];
  // Each of these sends the whole call down the general path.
  const general: unknown[] = [-0, undefined, 'é', 'x'.repeat(256), 10n, {}, [], new Uint8Array(2)];

  test('small sendSync: the small encoder writes the general encoder\'s bytes, and declines what it does not cover', () => {
    const codec = nodeRequire(path.join(ROOT, 'dist', 'cjs', 'codec.js'));
    const same = (a: Buffer | null, b: Uint8Array) => a !== null && Buffer.from(a).equals(Buffer.from(b));
    for (const v of flat) {
      expect(same(codec.encodeSmallSync('ch', [v]), codec.encodeMessage('ch', [v], true).payload)).toBe(true);
      expect(same(codec.encodeSmallSync('c'.repeat(40), [v, 1]), codec.encodeMessage('c'.repeat(40), [v, 1], true).payload)).toBe(true);
      expect(same(codec.encodeSmallReply(v), codec.encodeValue([0, v], 'returnValue', true, 0, true).payload)).toBe(true);
      expect(same(codec.encodeSmallReply([v, 'x']), codec.encodeValue([0, [v, 'x']], 'returnValue', true, 0, true).payload)).toBe(true);
    }
    const fifteen = Array.from({ length: 15 }, (_, i) => i * 1000);
    expect(same(codec.encodeSmallSync('ch', fifteen), codec.encodeMessage('ch', fifteen, true).payload)).toBe(true);
    expect(same(codec.encodeSmallReply([]), codec.encodeValue([0, []], 'returnValue', true, 0, true).payload)).toBe(true);
    for (const v of general) {
      expect(codec.encodeSmallSync('ch', [1, v])).toBe(null);
      expect(codec.encodeSmallReply([v])).toBe(null);
    }
    expect(codec.encodeSmallSync('é', [])).toBe(null);
    expect(codec.encodeSmallSync('ch', [...fifteen, 1])).toBe(null);
    expect(codec.encodeSmallSync('ch', ['x'.repeat(255), 'y'.repeat(255)])).toBe(null); // over the buffer
    expect(codec.encodeSmallSync('ch', new Array(2))).toBe(null); // holes
    expect(codec.encodeSmallReply(new (class extends Array {})())).toBe(null);
    expect(codec.encodeSmallReply({ a: 1 })).toBe(null);
    expect(codec.encodeSmallReply([[1]])).toBe(null);
  });

  test('small sendSync: the small decoders read what the general decoder reads, and decline truncated, trailing or other bytes', () => {
    const codec = nodeRequire(path.join(ROOT, 'dist', 'cjs', 'codec.js'));
    const same = (a: unknown, b: unknown): boolean =>
      Array.isArray(a) ? Array.isArray(b) && a.length === b.length && a.every((x, i) => Object.is(x, b[i])) : Object.is(a, b);
    const pad = Buffer.from([0x92, 0x92, 0xc1]);
    let fast = 0;
    for (const v of flat) {
      for (const value of [v, [v, 'x'], [v, v, v]]) {
        const reply = Buffer.from(codec.encodeValue([0, value], 'returnValue', true, 0, true).payload);
        const got = codec.decodeSmallReply(reply);
        if (got !== codec.NOT_SMALL) fast++;
        expect(got === codec.NOT_SMALL || same(got, codec.decode(reply)[1])).toBe(true);
        for (let cut = 0; cut < reply.length; cut++) expect(codec.decodeSmallReply(reply.subarray(0, cut))).toBe(codec.NOT_SMALL);
        expect(codec.decodeSmallReply(Buffer.concat([reply, Buffer.from([0])]))).toBe(codec.NOT_SMALL);
        const args = Array.isArray(value) ? value : [value];
        // In place, inside a larger chunk, as main reads frames.
        const msg = Buffer.concat([pad, Buffer.from(codec.encodeMessage('ch', args, true).payload), pad]);
        const small = codec.decodeSmallMessage(msg, pad.length, msg.length - pad.length);
        const general = codec.decodeMessage(msg, null, pad.length, msg.length - pad.length);
        expect(small === null || (small.channel === general.channel && same(small.args, general.args) && small.traceparent === undefined)).toBe(true);
        if (small !== null) fast++;
        expect(codec.decodeSmallMessage(msg, pad.length, msg.length - pad.length - 1)).toBe(null);
      }
    }
    expect(fast).toBeGreaterThan(flat.length * 4); // most of them took the small path
    // Other values, and the forms the small encoder never writes (64–127 as one byte, float32, maps, nested arrays).
    for (const value of [{ a: 1 }, [[1]], -0, 'é', 10n, undefined]) {
      expect(codec.decodeSmallReply(Buffer.from(codec.encodeValue([0, value], 'returnValue', true, 0, true).payload))).toBe(codec.NOT_SMALL);
    }
    for (const bytes of [[0x92, 0x00, 0x40], [0x92, 0x00, 0xca, 0, 0, 0, 0], [0x92, 0x00, 0x80], [0x92, 0x01, 0xc0], [0x92, 0x00, 0xa1, 0xc3]]) {
      expect(codec.decodeSmallReply(Buffer.from(bytes))).toBe(codec.NOT_SMALL);
    }
    // Random bytes: whatever the small decoders accept, the general one reads the same way.
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) / 2 ** 24;
    for (let k = 0; k < 50_000; k++) {
      const b = Buffer.from(Array.from({ length: 1 + Math.floor(rnd() * 12) }, () => Math.floor(rnd() * 256)));
      if (rnd() < 0.6) b[0] = 0x92;
      if (b.length > 1 && rnd() < 0.5) b[1] = rnd() < 0.5 ? 0 : 0xa0 | Math.floor(rnd() * 3);
      const r = codec.decodeSmallReply(b);
      if (r !== codec.NOT_SMALL) expect(same(r, codec.decode(b)[1]) && codec.decode(b)[0] === 0).toBe(true);
      const m = codec.decodeSmallMessage(b, 0, b.length);
      if (m !== null) {
        const g = codec.decodeMessage(b);
        expect(m.channel === g.channel && same(m.args, g.args)).toBe(true);
      }
    }
  });

  test('small sendSync: flat and general calls mixed with sends arrive in order with their values intact, replies too; an unclonable argument is still refused', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const order: string[] = [];
    main.on('note', (_e: any, i: number) => order.push(`send ${i}`));
    main.on('echo', (e: any, i: number, ...args: unknown[]) => {
      order.push(`sync ${i}`);
      // Answered with the arguments as received: flat ones take the small encoder back, the rest the general one.
      e.returnValue = args.length === 1 ? args[0] : args;
    });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const flat = ${serialize(flat)};
      const general = ${serialize(general)};
      const same = (a, b) => Object.is(a, b) || (typeof a === 'object' && a !== null && JSON.stringify(a) === JSON.stringify(b));
      let i = 0;
      const bad = [];
      const call = (args) => {
        r.send('note', i);
        const got = r.sendSync('echo', i++, ...args);
        const want = args.length === 1 ? args[0] : args;
        const ok = Array.isArray(want) ? Array.isArray(got) && got.length === want.length && want.every((w, k) => same(got[k], w)) : same(got, want);
        if (!ok) bad.push(String(i - 1));
      };
      for (const v of flat) { call([v]); call([v, 'mid', v]); }
      for (const v of general) { call([v]); call([v, 7]); }
      for (const v of flat) call([v]); // the reused buffers again, after the general path ran in between
      let refused = null;
      try { r.sendSync('echo', -1, Symbol.iterator); } catch (e) { refused = e.code; }
      out('done', { bad, count: i, refused });
    `,
      { address: main.address },
    );
    const { bad, count, refused } = await child.msg('done');
    await exitsCleanly(child);
    expect(bad).toEqual([]);
    expect(refused).toBe('ERR_IPC_UNCLONABLE');
    expect(order).toEqual(Array.from({ length: count }, (_, k) => [`send ${k}`, `sync ${k}`]).flat());
  });

  test('small sendSync: a reply the renderer keeps (byte arrays, objects, strings, ~4 KiB either side) is never overwritten by later calls', { timeout: 30_000 }, async () => {
    const main = makeMain();
    // Reply i: its bytes all equal i % 251, in shapes the small decoder reads and those it hands to the general one.
    main.on('bytes', (e: any, i: number, size: number) => {
      const fill = i % 251;
      const bytes = Buffer.alloc(size, fill);
      const shape = i % 4;
      if (shape === 0) e.returnValue = bytes;
      else if (shape === 1) e.returnValue = { i, bytes, tail: new Uint8Array(3).fill(fill) };
      else if (shape === 2) e.returnValue = [i, 'x'.repeat(size), bytes.subarray(0, 5)];
      else e.returnValue = [i, 'é'.repeat(Math.ceil(size / 2))];
    });
    main.on('flat', (e: any, i: number) => (e.returnValue = [i, 'ok']));
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const sizes = [1, 7, 100, 4000, 4090, 4096, 4100, 9000];
      const kept = [];
      let n = 0;
      for (let round = 0; round < 6; round++) {
        for (const size of sizes) {
          const i = n++;
          kept.push({ i, size, v: r.sendSync('bytes', i, size) });
          // Flat answers and errors go through the same per-thread buffer in between.
          if (r.sendSync('flat', 1000 + i)[0] !== 1000 + i) throw new Error('flat reply');
          let code = null;
          try { r.sendSync('nobody-listens'); } catch (e) { code = e.code; }
          if (!code) throw new Error('an unanswered call returned');
        }
      }
      const bad = [];
      const all = (u, fill) => u instanceof Uint8Array && u.every((b) => b === fill);
      for (const { i, size, v } of kept) {
        const fill = i % 251;
        const shape = i % 4;
        const ok = shape === 0 ? all(v, fill) && v.length === size
          : shape === 1 ? v.i === i && all(v.bytes, fill) && v.bytes.length === size && all(v.tail, fill)
          : shape === 2 ? v[0] === i && v[1] === 'x'.repeat(size) && all(v[2], fill) && v[2].length === 5
          : v[0] === i && v[1] === 'é'.repeat(Math.ceil(size / 2));
        if (!ok) bad.push(i);
      }
      out('done', { bad, count: kept.length });
    `,
      { address: main.address },
    );
    const { bad, count } = await child.msg('done');
    await exitsCleanly(child);
    expect(count).toBe(48);
    expect(bad).toEqual([]);
  });
});

/** Source text that rebuilds `values` (the flat and general samples: numbers, strings, bigints, -0, …). */
function serialize(values: unknown[]): string {
  const one = (v: unknown): string => {
    if (typeof v === 'bigint') return `${v}n`;
    if (typeof v === 'number') return Object.is(v, -0) ? '-0' : Number.isNaN(v) ? 'NaN' : String(v);
    if (v === undefined) return 'undefined';
    if (v instanceof Uint8Array) return `new Uint8Array(${v.length})`;
    return JSON.stringify(v);
  };
  return `[${values.map(one).join(', ')}]`;
}
