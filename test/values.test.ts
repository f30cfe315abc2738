/**
 * Values: the structured-clone table round-trips both ways, through every kind of call; unclonable
 * values fail synchronously (send, sendSync) or as a rejection (invoke), naming where they sit.
 */
import { describe, expect, test } from 'vitest';
import { catchAsync, catchSync, exitsCleanly, makeMain, once, runNode, useHarness, values } from './helpers';

useHarness();

describe('values', () => {
  test('values: the table round-trips renderer → main through send, sendSync and invoke arguments', { timeout: 20_000 }, async () => {
    const main = makeMain();
    const { check, checkArgs } = values();
    const problems: Record<string, string[]> = {};
    main.on('obj', (_e: any, v: unknown) => (problems.send = check(v)));
    main.on('args', (_e: any, ...args: unknown[]) => (problems.sendArgs = checkArgs(args)));
    main.on('sync', (e: any, v: unknown) => {
      problems.sendSync = check(v);
      e.returnValue = 'ok';
    });
    main.handle('inv', (_e: any, v: unknown, ...rest: unknown[]) => {
      problems.invoke = check(v);
      problems.invokeArgs = checkArgs(rest);
      return 'ok';
    });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      r.send('obj', values.make());
      r.send('args', ...values.makeArgs());
      const s = r.sendSync('sync', values.make());
      const i = await r.invoke('inv', values.make(), ...values.makeArgs());
      out('r', [s, i]);
    `,
      { address: main.address },
    );
    expect(await child.msg('r')).toEqual(['ok', 'ok']);
    await exitsCleanly(child);
    expect(problems).toEqual({ send: [], sendArgs: [], sendSync: [], invoke: [], invokeArgs: [] });
  });

  test('values: the table round-trips main → renderer through returnValue, invoke results, peer.send and peer.invoke', { timeout: 20_000 }, async () => {
    const main = makeMain();
    const { make, makeArgs, check } = values();
    main.on('sync', (e: any) => (e.returnValue = make()));
    main.handle('inv', () => make());
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const problems = {};
      problems.returnValue = values.check(r.sendSync('sync'));
      problems.invokeResult = values.check(await r.invoke('inv'));
      const sent = new Promise((res) => r.once('push', (e, v) => res(values.check(v))));
      const sentArgs = new Promise((res) => r.once('push-args', (e, ...args) => res(values.checkArgs(args))));
      r.handle('echo', (e, v, ...rest) => {
        setImmediate(() => r.removeHandler('echo'));
        return { problems: values.check(v), argProblems: values.checkArgs(rest), back: v };
      });
      r.send('ready');
      problems.peerSend = await sent;
      problems.peerSendArgs = await sentArgs;
      out('r', problems);
    `,
      { address: main.address },
    );
    const [event] = await once(main, 'ready');
    const peer = event.sender;
    peer.send('push', make());
    peer.send('push-args', ...makeArgs());
    const echoed = await peer.invoke('echo', make(), ...makeArgs());
    expect(echoed.problems).toEqual([]);
    expect(echoed.argProblems).toEqual([]);
    expect(check(echoed.back)).toEqual([]);
    expect(await child.msg('r')).toEqual({ returnValue: [], invokeResult: [], peerSend: [], peerSendArgs: [] });
    await exitsCleanly(child);
  });

  test('values: a Buffer arrives as a Buffer, a Uint8Array as a Uint8Array, each typed array as its own type', { timeout: 20_000 }, async () => {
    const main = makeMain();
    let got: any;
    main.on('t', (_e: any, v: any) => (got = v));
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const payload = { buf: Buffer.from([1, 2, 3]), u8: new Uint8Array([4, 5]) };
      for (const [T, init] of values.TYPED) payload[T.name] = new T(init);
      r.send('t', payload);
      out('sent');
    `,
      { address: main.address },
    );
    await child.msg('sent');
    await exitsCleanly(child);
    await new Promise((r) => setTimeout(r, 10));
    for (let i = 0; i < 200 && !got; i++) await new Promise((r) => setTimeout(r, 10));
    expect(Buffer.isBuffer(got.buf)).toBe(true);
    expect([...got.buf]).toEqual([1, 2, 3]);
    expect(Buffer.isBuffer(got.u8)).toBe(false);
    expect(got.u8).toBeInstanceOf(Uint8Array);
    for (const [T] of values().TYPED) {
      if (T === Uint8Array) continue;
      expect(Object.getPrototypeOf(got[T.name]), T.name).toBe(T.prototype);
    }
  });

  test('values: large byte arrays keep type, identity, bounds and content in every position and direction', { timeout: 30_000 }, async () => {
    const main = makeMain();
    // Built identically on both sides: big Buffers and Uint8Arrays in args, nested, in a Map and a Set, shared
    // twice, as views at an offset into a bigger buffer, next to small ones.
    const build = `(() => {
      const pattern = (n, seed) => { const b = Buffer.allocUnsafe(n); for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 255; return b; };
      const big = pattern(200 * 1024, 1);
      const bigU8 = new Uint8Array(pattern(100 * 1024, 2));
      const backing = pattern(1024 * 1024, 3);
      const view = new Uint8Array(backing.buffer, backing.byteOffset + 4097, 300 * 1024);
      const slice = backing.subarray(12345, 12345 + 128 * 1024);
      return { big, bigU8, view, slice, small: Buffer.from([1, 2, 3]), nested: { deep: [big] }, map: new Map([['k', bigU8]]), set: new Set([slice]), again: big };
    })()`;
    const check = `((v) => {
      const want = ${build};
      const p = [];
      const same = (a, b) => a && b && a.byteLength === b.byteLength && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
      if (!Buffer.isBuffer(v.big) || !same(v.big, want.big)) p.push('big');
      if (Buffer.isBuffer(v.bigU8) || !(v.bigU8 instanceof Uint8Array) || !same(v.bigU8, want.bigU8)) p.push('bigU8');
      if (Buffer.isBuffer(v.view) || !same(v.view, want.view)) p.push('view');
      if (!Buffer.isBuffer(v.slice) || !same(v.slice, want.slice)) p.push('slice');
      if (!Buffer.isBuffer(v.small) || !same(v.small, want.small)) p.push('small');
      if (v.nested.deep[0] !== v.big) p.push('nested identity');
      if (v.again !== v.big) p.push('shared identity');
      if (!same(v.map.get('k'), want.bigU8)) p.push('map');
      if (!same([...v.set][0], want.slice)) p.push('set');
      return p;
    })`;
    const problems: Record<string, string[]> = {};
    const checkHere = (0, eval)(check);
    const buildHere = () => (0, eval)(build);
    main.on('send', (_e: any, v: any) => (problems.send = checkHere(v)));
    main.on('sync', (e: any, v: any) => {
      problems.sendSync = checkHere(v);
      e.sender.send('during', buildHere()); // large messages queued while the renderer is blocked
      e.returnValue = buildHere();
    });
    main.handle('inv', (_e: any, v: any) => {
      problems.invoke = checkHere(v);
      return buildHere();
    });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const check = ${check};
      const res = {};
      const during = new Promise((res2) => r.once('during', (e, v) => res2(check(v))));
      r.send('send', ${build});
      res.returnValue = check(r.sendSync('sync', ${build}));
      res.invokeResult = check(await r.invoke('inv', ${build}));
      res.during = await during;
      out('r', res);
    `,
      { address: main.address },
    );
    expect(await child.msg('r')).toEqual({ returnValue: [], invokeResult: [], during: [] });
    await exitsCleanly(child);
    expect(problems).toEqual({ send: [], sendSync: [], invoke: [] });
  });

  test('values: argument counts are kept, trailing undefined included, both ways', { timeout: 20_000 }, async () => {
    const main = makeMain();
    const counts: number[] = [];
    main.on('n', (_e: any, ...args: unknown[]) => counts.push(args.length));
    main.on('s', (e: any, ...args: unknown[]) => (e.returnValue = args.length));
    main.handle('i', (_e: any, ...args: unknown[]) => args.length);
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      r.send('n'); r.send('n', undefined); r.send('n', 1, undefined, undefined);
      const sync = [r.sendSync('s'), r.sendSync('s', undefined), r.sendSync('s', null, undefined)];
      const inv = [await r.invoke('i'), await r.invoke('i', undefined), await r.invoke('i', undefined, undefined, undefined)];
      const fromMain = new Promise((res) => r.once('back', (e, ...args) => res(args.length)));
      r.send('ask');
      out('r', { sync, inv, fromMain: await fromMain });
    `,
      { address: main.address },
    );
    main.on('ask', (e: any) => e.sender.send('back', undefined, undefined));
    expect(await child.msg('r')).toEqual({ sync: [0, 1, 2], inv: [0, 1, 3], fromMain: 2 });
    expect(counts).toEqual([0, 1, 3]);
    await exitsCleanly(child);
  });

  test('values: class instances arrive as plain objects with their own enumerable fields', { timeout: 20_000 }, async () => {
    const main = makeMain();
    main.handle('inst', (_e: any, v: any) => ({ proto: Object.getPrototypeOf(v) === Object.prototype, v }));
    const child = runNode(
      `
      class Point { constructor() { this.x = 1; this.y = [2]; } get sum() { return 3; } }
      out('r', await ipcwire.ipcRenderer.invoke('inst', new Point()));
    `,
      { address: main.address },
    );
    expect(await child.msg('r')).toEqual({ proto: true, v: { x: 1, y: [2] } });
    await exitsCleanly(child);
  });

  test('values: unclonable values throw synchronously from send and sendSync and reject invoke, naming the path', { timeout: 20_000 }, async () => {
    const main = makeMain();
    let received = 0;
    main.on('x', () => received++);
    main.on('sx', (e: any) => {
      received++;
      e.returnValue = 1;
    });
    main.handle('ix', () => {
      received++;
      return 1;
    });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const res = [];
      const record = (what, fn) => { try { fn(); res.push([what, 'no throw']); } catch (e) { res.push([what, errInfo(e)]); } };
      for (const [k, v] of Object.entries(values.unclonables())) {
        record('send ' + k, () => r.send('x', { [k]: v }));
        record('sendSync ' + k, () => r.sendSync('sx', 'fine', { [k]: v }));
        let p;
        record('invoke-call ' + k, () => { p = r.invoke('ix', { [k]: v }); });
        try { await p; res.push(['invoke ' + k, 'resolved']); } catch (e) { res.push(['invoke ' + k, errInfo(e)]); }
      }
      record('nested', () => r.send('x', 1, { onDone() {} }));
      record('top', () => r.send('x', () => {}));
      record('in-array', () => r.send('x', { list: [1, 2, Symbol('s')] }));
      record('deep', () => r.send('x', { a: { b: { onDone: () => {} } } }));
      // Nothing of a refused message went out: the next message is the first main sees.
      out('r', { res, after: r.sendSync('sx') });
    `,
      { address: main.address },
    );
    const r = await child.msg('r');
    await exitsCleanly(child);
    expect(r.after).toBe(1);
    expect(received).toBe(1);
    const res = new Map<string, any>(r.res);
    for (const k of ['function', 'symbol', 'promise', 'weakMap', 'weakSet']) {
      expect(res.get(`invoke-call ${k}`), `invoke(${k}) must not throw synchronously`).toBe('no throw');
      const where = { send: `args[0].${k}`, sendSync: `args[1].${k}`, invoke: `args[0].${k}` } as const;
      for (const kind of ['send', 'sendSync', 'invoke'] as const) {
        const e = res.get(`${kind} ${k}`);
        expect(e?.isError, `${kind} ${k}: ${JSON.stringify(e)}`).toBe(true);
        expect(e.message, `${kind} ${k}`).toMatch(/^An object could not be cloned\./);
        expect(e.code, `${kind} ${k}`).toBe('ERR_IPC_UNCLONABLE');
        expect(e.message, `${kind} ${k}`).toContain(where[kind]);
        expect(e.path, `${kind} ${k}`).toBe(where[kind]);
      }
    }
    expect(res.get('nested').path).toBe('args[1].onDone');
    expect(res.get('nested').message).toContain('args[1].onDone');
    expect(res.get('top').path).toBe('args[0]');
    expect(res.get('in-array').path).toBe('args[0].list[2]');
    expect(res.get('deep').path).toBe('args[0].a.b.onDone');
    expect(res.get('deep').message).toContain('args[0].a.b.onDone');
  });

  test('values: main refuses unclonable values synchronously in peer.send and broadcast, with the path', { timeout: 20_000 }, async () => {
    const main = makeMain();
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const got = [];
      r.on('m', (e, v) => got.push(v));
      r.once('end', () => { r.removeAllListeners('m'); out('got', got); });
      r.send('ready');
    `,
      { address: main.address },
    );
    const [event] = await once(main, 'ready');
    const peer = event.sender;
    const e1 = catchSync(() => peer.send('m', { onDone() {} }));
    expect(e1.message).toMatch(/^An object could not be cloned\./);
    expect(e1.code).toBe('ERR_IPC_UNCLONABLE');
    expect(e1.message).toContain('args[0].onDone');
    const e2 = catchSync(() => main.broadcast('m', 'ok', new WeakSet()));
    expect(e2.code).toBe('ERR_IPC_UNCLONABLE');
    expect(e2.path).toBe('args[1]');
    const e3 = await catchAsync(peer.invoke('nothing', Symbol('s')));
    expect(e3.code).toBe('ERR_IPC_UNCLONABLE');
    peer.send('m', 'the only one');
    peer.send('end');
    expect(await child.msg('got')).toEqual(['the only one']);
    await exitsCleanly(child);
  });

  test('values: __proto__ keys cannot pollute main\'s prototypes', { timeout: 20_000 }, async () => {
    const main = makeMain();
    let got: any;
    main.handle('p', (_e: any, v: any) => {
      got = v;
      return JSON.parse('{"__proto__": {"pollutedRenderer": true}, "ok": 1}');
    });
    const child = runNode(
      `
      const v = await ipcwire.ipcRenderer.invoke('p', JSON.parse('{"__proto__": {"polluted": true}, "constructor": {"prototype": {"polluted2": true}}, "ok": 1}'));
      out('r', { ok: v.ok, polluted: ({}).pollutedRenderer === true, protoIsObject: Object.getPrototypeOf(v) === Object.prototype });
    `,
      { address: main.address },
    );
    expect(await child.msg('r')).toEqual({ ok: 1, polluted: false, protoIsObject: true });
    await exitsCleanly(child);
    expect(({} as any).polluted).toBeUndefined();
    expect(({} as any).polluted2).toBeUndefined();
    expect(Object.getPrototypeOf(got)).toBe(Object.prototype);
    expect(got.ok).toBe(1);
  });

  test('values: an own __proto__ key round-trips as an own data property, as structured clone keeps it', { timeout: 20_000 }, async () => {
    const main = makeMain();
    let got: any;
    main.on('p', (_e: any, v: any) => (got = v));
    const child = runNode(`ipcwire.ipcRenderer.send('p', JSON.parse('{"__proto__": {"x": 1}}')); out('sent');`, {
      address: main.address,
    });
    await child.msg('sent');
    await exitsCleanly(child);
    for (let i = 0; i < 200 && !got; i++) await new Promise((r) => setTimeout(r, 10));
    expect(Object.getPrototypeOf(got)).toBe(Object.prototype);
    expect(Object.getOwnPropertyNames(got)).toEqual(['__proto__']);
    expect(Object.getOwnPropertyDescriptor(got, '__proto__')?.value).toEqual({ x: 1 });
  });

  test('values: a graph of 200,000 small objects round-trips (shared references, -0 and holes kept) and an unclonable value deep in it is named exactly', { timeout: 60_000 }, async () => {
    const main = makeMain();
    const seen: Record<string, unknown> = {};
    main.handle('big', (_e: any, v: any) => {
      const list = v.list as any[];
      let bad = 0;
      for (let i = 0; i < list.length; i++) {
        const o = list[i];
        if (o.id !== i || o.name !== `item-${i}` || o.tags.length !== 2 || o.tags[1] !== `t${i % 7}`) bad++;
      }
      seen.count = list.length;
      seen.bad = bad;
      seen.shared = list[10].tags === list[11].tags; // distinct arrays stay distinct
      seen.sameRef = v.shared === v.again && v.list[5].owner === v; // identity and the cycle kept
      seen.negZero = Object.is(v.negZero, -0);
      seen.hole = v.holes.length === 3 && !(1 in v.holes);
      return list.length;
    });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const make = (n) => { const list = new Array(n); for (let i = 0; i < n; i++) list[i] = { id: i, name: 'item-' + i, tags: ['a', 't' + (i % 7)] }; return list; };
      const shared = { s: 1 };
      const v = { list: make(200000), shared, again: shared, negZero: -0, holes: [1, , 3] };
      v.list[5].owner = v;
      const n = await r.invoke('big', v);
      // A function at index 123,456 of a flat graph (the fast path) and of one with a shared object.
      const flat = { list: make(200000) };
      flat.list[123456].onDone = () => {};
      let e1; try { r.send('x', flat); } catch (e) { e1 = errInfo(e); }
      const withShared = { list: make(2000), a: shared, b: shared };
      withShared.list[1999].tags[1] = Symbol('late');
      let e2; try { r.sendSync('x', 'first', withShared); } catch (e) { e2 = errInfo(e); }
      out('r', { n, e1, e2 });
    `,
      { address: main.address },
    );
    // Two graphs of 200,000 objects built, encoded and walked in a child: seconds on a loaded 2-core machine.
    const r = await child.msg('r', 50_000);
    await exitsCleanly(child);
    expect(r.n).toBe(200000);
    expect(seen).toEqual({ count: 200000, bad: 0, shared: false, sameRef: true, negZero: true, hole: true });
    expect(r.e1.code).toBe('ERR_IPC_UNCLONABLE');
    expect(r.e1.path).toBe('args[0].list[123456].onDone');
    expect(r.e1.message).toBe('An object could not be cloned. args[0].list[123456].onDone is a function.');
    expect(r.e2.code).toBe('ERR_IPC_UNCLONABLE');
    expect(r.e2.path).toBe('args[1].list[1999].tags[1]');
  });

  test('values: plain objects and arrays are refused for what their own keys make them (an async iterator, the transfer-only mark), objects of other classes as before', { timeout: 20_000 }, async () => {
    const main = makeMain();
    const got: unknown[] = [];
    main.on('echo', (e: any, ...args: unknown[]) => {
      got.push(args);
      e.returnValue = args;
    });
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const attempt = (...args) => { try { return { back: r.sendSync('echo', ...args) }; } catch (e) { return errInfo(e); } };
      class Point { constructor() { this.x = 1; this.y = [2, , 4]; } }
      const bare = Object.assign(Object.create(null), { a: 1, list: [{ b: 2 }] });
      out('r', {
        iterator: attempt({ a: [{ x: 1 }, { [Symbol.asyncIterator]: async function* () {} }] }),
        inArray: attempt([[1, { n: 1 }], [{ deep: { [Symbol.for('ipcwire.transferOnly')]: true } }]]),
        promise: attempt({ list: [{}, { p: Promise.resolve(1) }] }),
        accepted: attempt(new Point(), bare, { shared: bare, again: bare }, [[{ k: 'v' }]]),
      });
    `,
      { address: main.address },
    );
    const r = await child.msg('r');
    await exitsCleanly(child);
    expect(r.iterator).toMatchObject({ code: 'ERR_IPC_UNCLONABLE', path: 'args[0].a[1]' });
    expect(r.iterator.message).toContain('is a stream');
    expect(r.inArray).toMatchObject({ code: 'ERR_IPC_UNCLONABLE', path: 'args[0][1][0].deep' });
    expect(r.inArray.message).toContain('is a MessagePortMain');
    expect(r.promise).toMatchObject({ code: 'ERR_IPC_UNCLONABLE', path: 'args[0].list[1].p' });
    expect(r.promise.message).toContain('is a Promise');
    // Only the accepted call reached main, intact: class instances and null-prototype objects travel as plain
    // objects, holes and a shared object kept.
    expect(got).toHaveLength(1);
    const [point, bare, pair, nested] = got[0] as any[];
    expect(point).toEqual({ x: 1, y: [2, undefined, 4] });
    expect(1 in point.y).toBe(false);
    expect(bare).toEqual({ a: 1, list: [{ b: 2 }] });
    expect(pair.shared).toBe(pair.again);
    expect(nested).toEqual([[{ k: 'v' }]]);
    expect(r.accepted.back).toHaveLength(4);
  });
});
