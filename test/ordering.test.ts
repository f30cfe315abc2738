/**
 * Order: per connection and direction, messages arrive in call order across send, sendSync and
 * invoke; what main sends while a renderer is blocked in sendSync is emitted after it returns, in order,
 * asynchronously.
 */
import { describe, expect, test } from 'vitest';
import { exitsCleanly, makeMain, once, runNode, useHarness } from './helpers';

useHarness();

describe('ordering', () => {
  test('ordering: 1,000 mixed send/sendSync/invoke from one renderer are handled in call order', { timeout: 60_000 }, async () => {
    const main = makeMain();
    const handled: number[] = [];
    main.on('op', (_e: any, i: number) => handled.push(i));
    main.on('op-sync', (e: any, i: number) => {
      handled.push(i);
      e.returnValue = i * 10;
    });
    main.handle('op-invoke', (_e: any, i: number) => {
      handled.push(i);
      return i * 100;
    });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const invokes = [];
      const syncBad = [];
      // A pseudo-random but reproducible mix, so that every pair of kinds follows every other.
      let seed = 12345;
      const kinds = [];
      for (let i = 0; i < 1000; i++) {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        const kind = seed % 3;
        kinds.push(kind);
        if (kind === 0) r.send('op', i);
        else if (kind === 1) { const v = r.sendSync('op-sync', i); if (v !== i * 10) syncBad.push([i, v]); }
        else invokes.push(r.invoke('op-invoke', i).then((v) => (v === i * 100 ? null : [i, v])));
      }
      const invokeBad = (await Promise.all(invokes)).filter(Boolean);
      out('r', { syncBad, invokeBad, counts: [0, 1, 2].map((k) => kinds.filter((x) => x === k).length) });
    `,
      { address: main.address },
    );
    const r = await child.msg('r');
    expect(r.syncBad).toEqual([]);
    expect(r.invokeBad).toEqual([]);
    expect(Math.min(...r.counts)).toBeGreaterThan(250);
    await exitsCleanly(child);
    expect(handled).toEqual(Array.from({ length: 1000 }, (_, i) => i));
  });

  test('ordering: messages main sends during a blocked sendSync are emitted after it returns, in order, not inside it', { timeout: 20_000 }, async () => {
    const main = makeMain();
    main.on('block', (event: any) => {
      for (let j = 0; j < 100; j++) event.sender.send('m', j);
      setTimeout(() => {
        // Sent after the reply is set: still after the others.
        event.returnValue = 'done';
        event.sender.send('m', 100);
      }, 100);
    });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const got = [];
      let inSync = false;
      r.on('m', (event, j) => got.push([j, inSync]));
      inSync = true;
      const v = r.sendSync('block');
      inSync = false;
      const emittedSynchronously = got.length;
      while (got.length < 101) await sleep(5);
      r.removeAllListeners('m');
      out('r', { v, emittedSynchronously, order: got.map((x) => x[0]), inside: got.filter((x) => x[1]).length });
    `,
      { address: main.address },
    );
    const r = await child.msg('r');
    expect(r.v).toBe('done');
    expect(r.emittedSynchronously).toBe(0);
    expect(r.inside).toBe(0);
    expect(r.order).toEqual(Array.from({ length: 101 }, (_, i) => i));
    await exitsCleanly(child);
  });

  test('ordering: messages queued during one sendSync come before a second sendSync\'s own queue', { timeout: 20_000 }, async () => {
    const main = makeMain();
    main.on('block', (event: any, round: number) => {
      for (let j = 0; j < 5; j++) event.sender.send('m', `${round}.${j}`);
      event.returnValue = round;
    });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const got = [];
      r.on('m', (event, x) => got.push(x));
      const a = r.sendSync('block', 1);
      const b = r.sendSync('block', 2);
      const during = got.length;
      while (got.length < 10) await sleep(5);
      r.removeAllListeners('m');
      out('r', { a, b, during, got });
    `,
      { address: main.address },
    );
    const r = await child.msg('r');
    expect(r).toEqual({
      a: 1,
      b: 2,
      during: 0,
      got: ['1.0', '1.1', '1.2', '1.3', '1.4', '2.0', '2.1', '2.2', '2.3', '2.4'],
    });
    await exitsCleanly(child);
  });

  test('ordering: a listener of a message queued during sendSync may itself call sendSync and invoke', { timeout: 20_000 }, async () => {
    const main = makeMain();
    const seen: string[] = [];
    main.on('outer', (event: any) => {
      seen.push('outer');
      event.sender.send('m', 1);
      event.sender.send('m', 2);
      event.returnValue = 'outer';
    });
    main.on('inner', (event: any, n: number) => {
      seen.push(`inner-${n}`);
      event.returnValue = `inner-${n}`;
    });
    main.handle('inv', (_e: any, n: number) => {
      seen.push(`inv-${n}`);
      return `inv-${n}`;
    });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const log = [];
      const invokes = [];
      r.on('m', (e, n) => {
        log.push('m' + n);
        log.push(r.sendSync('inner', n));
        invokes.push(r.invoke('inv', n).then((v) => log.push(v)));
      });
      log.push(r.sendSync('outer'));
      while (invokes.length < 2) await sleep(5);
      await Promise.all(invokes);
      r.removeAllListeners('m');
      out('r', log);
    `,
      { address: main.address },
    );
    expect(await child.msg('r')).toEqual(['outer', 'm1', 'inner-1', 'm2', 'inner-2', 'inv-1', 'inv-2']);
    expect(seen).toEqual(['outer', 'inner-1', 'inv-1', 'inner-2', 'inv-2']);
    await exitsCleanly(child);
  });

  test('ordering: nested invokes both ways (a handler that invokes the other side) resolve', { timeout: 20_000 }, async () => {
    const main = makeMain();
    main.handle('outer', async (event: any, n: number) => {
      const fromRenderer = await event.sender.invoke('double', n);
      return fromRenderer + 1;
    });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      r.handle('double', async (e, n) => (await r.invoke('plus-ten', n)) * 2);
      out('r', await r.invoke('outer', 1));
      r.removeHandler('double');
    `,
      { address: main.address },
    );
    main.handle('plus-ten', (_e: any, n: number) => n + 10);
    expect(await child.msg('r')).toBe(23);
    await exitsCleanly(child);
  });

  test('ordering: main\'s peer.send and peer.invoke reach the renderer in call order', { timeout: 20_000 }, async () => {
    const main = makeMain();
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const got = [];
      r.on('m', (event, i) => got.push(i));
      r.handle('h', (event, i) => { got.push(i); return i; });
      r.on('end', () => {
        r.removeAllListeners('m'); r.removeAllListeners('end'); r.removeHandler('h');
        out('r', got);
      });
      r.send('ready');
    `,
      { address: main.address },
    );
    const [event] = await once(main, 'ready');
    const peer = event.sender;
    const invokes: Promise<unknown>[] = [];
    for (let i = 0; i < 300; i++) {
      if (i % 3 === 1) invokes.push(peer.invoke('h', i));
      else peer.send('m', i);
    }
    const results = await Promise.all(invokes);
    expect(results).toEqual(Array.from({ length: 100 }, (_, k) => 3 * k + 1));
    peer.send('end');
    expect(await child.msg('r')).toEqual(Array.from({ length: 300 }, (_, i) => i));
    await exitsCleanly(child);
  });

  test('ordering: async replies to a renderer\'s invokes and main\'s sends interleave in main\'s order', { timeout: 20_000 }, async () => {
    const main = makeMain();
    main.handle('inv', (event: any, i: number) => {
      event.sender.send('note', `before-${i}`);
      return `result-${i}`;
    });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const seq = [];
      r.on('note', (e, x) => seq.push(x));
      await Promise.all([0, 1, 2].map((i) => r.invoke('inv', i).then((v) => seq.push(v))));
      r.removeAllListeners('note');
      out('r', seq);
    `,
      { address: main.address },
    );
    const seq: string[] = await child.msg('r');
    // Main sent each note before it replied: every note precedes its result, notes and results each in order.
    expect(seq.filter((x) => x.startsWith('before'))).toEqual(['before-0', 'before-1', 'before-2']);
    expect(seq.filter((x) => x.startsWith('result'))).toEqual(['result-0', 'result-1', 'result-2']);
    for (const i of [0, 1, 2]) expect(seq.indexOf(`before-${i}`)).toBeLessThan(seq.indexOf(`result-${i}`));
    await exitsCleanly(child);
  });
});
