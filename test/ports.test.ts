/**
 * MessagePorts (MessageChannelMain / MessagePortMain): channels in one process, ends given to renderers that
 * then talk directly, ends moved again while in use (nothing lost or reordered), process death, worker threads,
 * bad transfer lists, and descriptors accounted for (the harness counts this process's fds).
 */
import { describe, expect, test } from 'vitest';
import { catchSync, exitsCleanly, ipcwire, makeMain, nodeRequire, once, runNode, useHarness, waitUntil } from './helpers';
import { KIND, captureHandshake, frame, rawClient } from './helpers/wire';

useHarness();

/** Renderer side: take the port main sends on 'port', exchange `n` numbered messages, check order, report. */
const EXCHANGE = `
  const r = ipcwire.ipcRenderer;
  const n = Number(process.env.N);
  r.on('port', (e, info) => {
    const port = e.ports[0];
    let next = 0, bad = 0;
    const calls = [];
    port.on('message', (ev) => {
      if (ev.data !== next) bad++;
      const k = ++next;
      if (k % 1000 === 0) {
        // main stays usable meanwhile: a blocking call and an invoke on the renderer's own connection
        if (r.sendSync('plus1', k) !== k + 1) bad++;
        calls.push(r.invoke('twice', k).then((v) => { if (v !== 2 * k) bad++; }));
      }
      // The other end may finish (and close) first: this end's own calls still complete before it disconnects.
      if (k === n) Promise.all(calls).then(() => { out('done', { who: info.who, bad, next }); port.close(); r.close(); });
    });
    port.start();
    for (let i = 0; i < n; i++) port.postMessage(i);
  });
  r.send('ready');
`;

function answerCalls(main: any): void {
  main.on('plus1', (e: any, k: number) => { e.returnValue = k + 1; });
  main.handle('twice', (_e: any, k: number) => 2 * k);
}

/**
 * Main's side of handing out a channel: once every renderer of `wait` has sent `on` (naming itself in the
 * argument; a renderer that sends no name is named in order of arrival), the ends of a new channel go on 'port'
 * to `ends[0]` (port1) and `ends[1]` (port2), with `data(name)` as the argument. Returns the renderers by name.
 */
function placeChannel(main: any, ends: [string, string], options: { on?: string; wait?: string[]; data?: (name: string) => unknown } = {}): Record<string, any> {
  const { on = 'hello', wait = ends, data = () => null } = options;
  const peers: Record<string, any> = {};
  let arrived = 0;
  let placed = false;
  main.on(on, (e: any, name?: string) => {
    peers[typeof name === 'string' ? name : wait[arrived]] = e.sender;
    arrived++;
    if (placed || !wait.every((w) => peers[w])) return;
    placed = true;
    const { MessageChannelMain } = ipcwire();
    const { port1, port2 } = new MessageChannelMain();
    peers[ends[0]].postMessage('port', data(ends[0]), [port1]);
    peers[ends[1]].postMessage('port', data(ends[1]), [port2]);
  });
  return peers;
}

describe('ports', () => {
  test('ports: a channel in one process keeps order, carries Buffers out of band and ports, and closes both ends', { timeout: 30_000 }, async () => {
    const { MessageChannelMain, MessagePortMain } = ipcwire();
    const { port1, port2 } = new MessageChannelMain();
    expect(port1).toBeInstanceOf(MessagePortMain);
    const got: any[] = [];
    port2.on('message', (ev: any) => got.push(ev));
    // Posted before the receiver starts: queued, then delivered in order on start().
    const big = Buffer.alloc(300_000, 7);
    for (let i = 0; i < 1000; i++) port1.postMessage(i === 500 ? { i, big } : { i });
    const inner = new MessageChannelMain();
    port1.postMessage('with a port', [inner.port2]);
    port2.start();
    await waitUntil(() => got.length === 1001);
    expect(got.slice(0, 1000).map((ev) => ev.data.i)).toEqual([...Array(1000).keys()]);
    expect(got[500].data.big.equals(big)).toBe(true);
    expect(got[0].ports).toEqual([]);
    expect(got[1000].data).toBe('with a port');
    const moved = got[1000].ports[0];
    expect(moved).toBeInstanceOf(MessagePortMain);
    // The moved end works; the original object of it is unusable.
    expect(catchSync(() => inner.port2.postMessage(1)).code).toBe('ERR_IPC_PORT_TRANSFERRED');
    const echoed = once(inner.port1, 'message');
    inner.port1.start();
    moved.postMessage({ back: true });
    expect((await echoed)[0].data).toEqual({ back: true });
    const closes = [once(port1, 'close'), once(port2, 'close'), once(inner.port1, 'close'), once(moved, 'close')];
    port1.close();
    moved.close();
    await Promise.all(closes);
  });

  test('ports: a port that reads but was never started holds a bounded queue, then closes', { timeout: 60_000 }, async () => {
    const { MessageChannelMain, PORT_QUEUE_MAX_MESSAGES } = ipcwire();
    const { port1, port2 } = new MessageChannelMain();
    port2.postMessage('posting makes port2 read'); // ...but it is never started
    const closed = [once(port1, 'close', 30_000), once(port2, 'close', 30_000)];
    let sent = 0;
    // Past the bound port2 closes; port1 learns it as a close (its later posts do nothing).
    await new Promise<void>((resolve) => {
      const more = () => {
        for (let k = 0; k < 5000; k++) port1.postMessage(sent++);
        if (sent > PORT_QUEUE_MAX_MESSAGES + 5000) resolve();
        else setImmediate(more);
      };
      more();
    });
    await Promise.all(closed);
  });

  test('ports: bad transfer lists get clear errors and move nothing', { timeout: 30_000 }, () => {
    const { MessageChannelMain } = ipcwire();
    const a = new MessageChannelMain();
    const b = new MessageChannelMain();
    expect(catchSync(() => a.port1.postMessage(1, [{}])).code).toBe('ERR_IPC_BAD_TRANSFER');
    expect(catchSync(() => a.port1.postMessage(1, [b.port1, b.port1])).code).toBe('ERR_IPC_BAD_TRANSFER');
    expect(catchSync(() => a.port1.postMessage(1, [a.port1])).code).toBe('ERR_IPC_BAD_TRANSFER');
    expect(catchSync(() => a.port1.postMessage(1, 'x' as any)).code).toBe('ERR_IPC_BAD_TRANSFER');
    // A port inside the message rather than in the transfer list cannot be cloned.
    expect(catchSync(() => a.port1.postMessage({ p: b.port2 })).code).toBe('ERR_IPC_UNCLONABLE');
    b.port1.close();
    expect(catchSync(() => a.port1.postMessage(1, [b.port1])).code).toBe('ERR_IPC_PORT_CLOSED');
    a.port1.postMessage(1, [b.port2]);
    expect(catchSync(() => a.port1.postMessage(1, [b.port2])).code).toBe('ERR_IPC_PORT_TRANSFERRED');
    a.port1.close();
    a.port2.close();
  });

  test('ports: main gives the ends to two renderers, which exchange 10,000 messages each way directly while calling main', { timeout: 60_000 }, async () => {
    const main = makeMain();
    answerCalls(main);
    const relayed: string[] = [];
    placeChannel(main, ['a', 'b'], { on: 'ready', data: (who) => ({ who }) });
    main.on('anything-else', (_e: any, ch: string) => relayed.push(ch));
    const env = { N: '10000' };
    const a = runNode(EXCHANGE, { address: main.address, env });
    const b = runNode(EXCHANGE, { address: main.address, env });
    const results = [await a.msg('done', 40_000), await b.msg('done', 40_000)];
    expect(results.map((r) => r.who).sort()).toEqual(['a', 'b']);
    for (const r of results) expect(r).toMatchObject({ bad: 0, next: 10000 });
    await exitsCleanly(a);
    await exitsCleanly(b);
    expect(relayed).toEqual([]);
  });

  /** Main hands a fresh channel's ends to the two renderers that said 'ready' (each script knows its role). */
  const pairUp = (main: any): unknown => placeChannel(main, ['sender', 'receiver'], { on: 'ready', data: (who) => who });
  const RECEIVER = `
    const r = ipcwire.ipcRenderer;
    r.on('port', (e) => {
      const port = e.ports[0];
      let next = 0, bad = 0;
      port.on('message', (ev) => { if (ev.data !== next) bad++; next++; if (next === 1000) out('flowing', next); });
      port.on('close', () => { out('closed', { next, bad, at: Date.now() }); r.close(); });
      port.start();
    });
    r.send('ready');
  `;

  test('ports: a renderer that exits right after posting: every message arrives, then close', { timeout: 30_000 }, async () => {
    const main = makeMain();
    pairUp(main);
    const sender = runNode(`
      const r = ipcwire.ipcRenderer;
      r.on('port', (e) => {
        const port = e.ports[0];
        for (let i = 0; i < 20000; i++) port.postMessage(i);
        process.exit(0); // what was posted is flushed at exit, as for send()
      });
      r.send('ready');
    `, { address: main.address });
    const receiver = runNode(RECEIVER, { address: main.address });
    expect(await receiver.msg('closed')).toMatchObject({ next: 20000, bad: 0 });
    await exitsCleanly(sender);
    await exitsCleanly(receiver);
  });

  test('ports: a renderer killed mid-stream: the other end gets an unbroken prefix, then close within a second', { timeout: 30_000 }, async () => {
    const main = makeMain();
    pairUp(main);
    const sender = runNode(`
      const r = ipcwire.ipcRenderer;
      r.on('port', (e) => {
        const port = e.ports[0];
        let i = 0;
        while (i < 1000) port.postMessage(i++);
        setInterval(() => port.postMessage(i++), 5); // then a trickle, until killed
      });
      r.send('ready');
    `, { address: main.address });
    const receiver = runNode(RECEIVER, { address: main.address });
    await receiver.msg('flowing');
    const killedAt = Date.now();
    sender.kill('SIGKILL');
    const closed = await receiver.msg('closed');
    expect(closed.bad).toBe(0);
    expect(closed.next).toBeGreaterThanOrEqual(1000);
    expect(closed.at - killedAt).toBeLessThan(1000);
    await exitsCleanly(receiver);
    await sender.exited;
  });

  test('ports: an end in use moves to main and on to a third renderer with nothing lost or reordered', { timeout: 60_000 }, async () => {
    const main = makeMain();
    const peersBy = placeChannel(main, ['a', 'b'], { wait: ['a', 'b', 'c'] });
    // A hands its end back to main after 300 messages (while more are arriving); main hands it on to C.
    main.on('handing-back', (e: any, seen: number) => {
      const port = e.ports[0];
      peersBy.c.postMessage('port', seen, [port]);
    });
    const a = runNode(`
      const r = ipcwire.ipcRenderer;
      r.on('port', (e) => {
        const port = e.ports[0];
        let next = 0, bad = 0;
        port.on('message', (ev) => {
          if (ev.data !== next) bad++;
          next++;
          if (next === 300) { r.postMessage('handing-back', next, [port]); out('a', { next, bad }); setTimeout(() => r.close(), 200); }
        });
        port.start();
        port.postMessage('from-a-before-moving');
      });
      r.send('hello', 'a');
    `, { address: main.address });
    const b = runNode(`
      const r = ipcwire.ipcRenderer;
      r.on('port', (e) => {
        const port = e.ports[0];
        const got = [];
        port.on('message', (ev) => {
          got.push(ev.data);
          if (ev.data === 'from-c') { out('b', got); port.close(); r.close(); }
        });
        port.start();
        let i = 0;
        // a steady stream, so that frames are in flight while the end moves
        const send = () => { for (let k = 0; k < 50 && i < 3000; k++) port.postMessage(i++); if (i < 3000) setImmediate(send); };
        send();
      });
      r.send('hello', 'b');
    `, { address: main.address });
    const c = runNode(`
      const r = ipcwire.ipcRenderer;
      r.on('port', (e, seenByA) => {
        const port = e.ports[0];
        let next = seenByA, bad = 0;
        port.on('message', (ev) => {
          if (ev.data !== next) bad++;
          next++;
          if (next === 3000) { port.postMessage('from-c'); out('c', { first: seenByA, next, bad }); }
        });
        port.on('close', () => r.close());
        port.start();
      });
      r.send('hello', 'c');
    `, { address: main.address });
    expect(await a.msg('a', 30_000)).toEqual({ next: 300, bad: 0 });
    expect(await c.msg('c', 30_000)).toEqual({ first: 300, next: 3000, bad: 0 });
    expect(await b.msg('b', 30_000)).toEqual(['from-a-before-moving', 'from-c']);
    await exitsCleanly(a);
    await exitsCleanly(b);
    await exitsCleanly(c);
  });

  test('ports: a renderer that closes its connection right after posting an end in use still hands over everything it read', { timeout: 60_000 }, async () => {
    const main = makeMain();
    placeChannel(main, ['a', 'b']);
    // A gives its end back after 100 of B's 1,000 messages and closes its connection in the same turn: the
    // close waits until the end's state (what A read but did not deliver) has followed it to main.
    const got: { first: number; next: number; bad: number } = { first: -1, next: -1, bad: 0 };
    const done = new Promise<void>((resolve) => {
      main.on('handing-back', (e: any, seen: number) => {
        const port = e.ports[0];
        got.first = seen;
        got.next = seen;
        port.on('message', (ev: any) => {
          if (ev.data !== got.next) got.bad++;
          got.next++;
          if (got.next === 1000) {
            port.close();
            resolve();
          }
        });
        port.start();
      });
    });
    const a = runNode(`
      const r = ipcwire.ipcRenderer;
      r.on('port', (e) => {
        const port = e.ports[0];
        let next = 0;
        port.on('message', () => {
          next++;
          if (next === 100) { r.postMessage('handing-back', next, [port]); r.close(); out('a', next); }
        });
        port.start();
      });
      r.send('hello', 'a');
    `, { address: main.address });
    const b = runNode(`
      const r = ipcwire.ipcRenderer;
      r.on('port', (e) => {
        const port = e.ports[0];
        port.on('close', () => r.close());
        let i = 0;
        const send = () => { for (let k = 0; k < 20 && i < 1000; k++) port.postMessage(i++); if (i < 1000) setImmediate(send); };
        send();
      });
      r.send('hello', 'b');
    `, { address: main.address });
    expect(await a.msg('a', 30_000)).toBe(100);
    await done;
    expect(got).toEqual({ first: 100, next: 1000, bad: 0 });
    await exitsCleanly(a);
    await exitsCleanly(b);
  });

  test('ports: both ends of a channel in use move at once, each with what it had read', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const peers: Record<string, any> = {};
    main.on('ready', (e: any, who: string) => {
      peers[who] = e.sender;
      if (!peers.x || !peers.y) return;
      const { MessageChannelMain } = ipcwire();
      const { port1, port2 } = new MessageChannelMain();
      // Posting makes both ends read: each holds the other's message, undelivered, when both move in one turn.
      port1.postMessage('for port2');
      port2.postMessage('for port1');
      setTimeout(() => {
        peers.x.postMessage('port', 'x', [port1]);
        peers.y.postMessage('port', 'y', [port2]);
      }, 50);
    });
    const code = `
      const r = ipcwire.ipcRenderer;
      r.on('port', (e, who) => {
        const port = e.ports[0];
        const got = [];
        port.on('message', (ev) => {
          got.push(ev.data);
          if (got.length === 1001) { out('got', { who, first: got[0], rest: got.slice(1).every((v, i) => v === i) }); port.close(); }
        });
        port.on('close', () => r.close());
        port.start();
        for (let i = 0; i < 1000; i++) port.postMessage(i);
      });
      r.send('ready', process.env.WHO);
    `;
    const x = runNode(code, { address: main.address, env: { WHO: 'x' } });
    const y = runNode(code, { address: main.address, env: { WHO: 'y' } });
    expect(await x.msg('got')).toEqual({ who: 'x', first: 'for port1', rest: true });
    expect(await y.msg('got')).toEqual({ who: 'y', first: 'for port2', rest: true });
    await exitsCleanly(x);
    await exitsCleanly(y);
  });

  test('ports: a renderer creates a channel and sends one end to main; ports travel over ports', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const got: any[] = [];
    main.on('take', (e: any, msg: string) => {
      const port = e.ports[0];
      port.on('message', (ev: any) => {
        got.push(ev.data);
        if (ev.ports.length) {
          // A port that arrived over the port: answer on it.
          ev.ports[0].postMessage(`thanks for ${ev.data}`);
          ev.ports[0].close();
          port.close();
        }
      });
      port.start();
      port.postMessage(`got ${msg}`);
    });
    const child = runNode(`
      const { MessageChannelMain } = ipcwire;
      const r = ipcwire.ipcRenderer;
      const { port1, port2 } = new MessageChannelMain();
      r.postMessage('take', 'an end', [port2]);
      port1.on('message', (ev) => {
        const inner = new MessageChannelMain();
        inner.port1.on('message', (ev2) => { out('r', { first: ev.data, second: ev2.data }); inner.port1.close(); r.close(); });
        inner.port1.start();
        port1.postMessage('inner', [inner.port2]);
      });
      port1.start();
    `, { address: main.address });
    expect(await child.msg('r')).toEqual({ first: 'got an end', second: 'thanks for inner' });
    expect(got).toEqual(['inner']);
    await exitsCleanly(child);
  });

  test('ports: a worker thread using ipcRenderer receives a port and uses it', { timeout: 30_000 }, async () => {
    const main = makeMain();
    main.on('worker-ready', (e: any) => {
      const { MessageChannelMain } = ipcwire();
      const { port1, port2 } = new MessageChannelMain();
      port1.on('message', (ev: any) => {
        port1.postMessage(ev.data * 10);
        port1.close();
      });
      port1.start();
      e.sender.postMessage('port', null, [port2]);
    });
    const child = runNode(`
      const { Worker } = require('node:worker_threads');
      const w = new Worker(require.resolve('./worker.cjs'), { workerData: { code: \`
        const r = ipcwire.ipcRenderer;
        r.on('port', (e) => {
          const port = e.ports[0];
          port.on('message', (ev) => { post('w', { value: ev.data, threadId }); });
          port.on('close', () => r.close());
          port.start();
          port.postMessage(4);
        });
        r.send('worker-ready');
      \` } });
      w.on('message', (m) => out(m.tag, m.data));
      w.on('error', (e) => out('worker-error', errInfo(e)));
    `, { address: main.address });
    const got = await child.msg('w');
    expect(got.value).toBe(40);
    expect(got.threadId).toBeGreaterThan(0);
    await exitsCleanly(child);
  });

  test('ports: a peer referring to ports it did not send, or sending state for a port that never came, is cut off', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const { hello } = await captureHandshake(main);
    const errors: any[] = [];
    main.peers.on('error', (err: any) => errors.push(err));
    const heard: unknown[] = [];
    main.on('ch', (e: any, v: unknown) => {
      heard.push([v, e.ports.length]);
      for (const port of e.ports) port.close(); // a port nobody uses is closed (or collected)
    });
    const { Packr } = nodeRequire('msgpackr');
    const packr = new Packr({ structuredClone: true });
    const bad = [
      // a port reference without the descriptor it names
      frame(KIND.MESSAGE, 0, packr.pack(['ch', [1], { p: [[0, 'token-a', null]] }])),
      // a malformed reference
      frame(KIND.MESSAGE, 0, packr.pack(['ch', [2], { p: ['nonsense'] }])),
      // the state of a port nobody sent (PORT_STATE)
      frame(17, 0, packr.pack(['token-b', { r: 0, o: false, c: false, b: [] }])),
    ];
    for (const f of bad) {
      const raw = rawClient(main.address);
      raw.socket.write(Buffer.concat([hello, f]));
      await raw.closed;
    }
    await waitUntil(() => errors.length === 3, 5000, 'three error events');
    expect(errors.map((e) => e.code)).toEqual(['ERR_IPC_BAD_FRAME', 'ERR_IPC_BAD_FRAME', 'ERR_IPC_BAD_FRAME']);
    expect(heard).toEqual([]);
    // main still serves a good renderer, with ports.
    const child = runNode(`
      const { MessageChannelMain } = ipcwire;
      const { port1, port2 } = new MessageChannelMain();
      ipcwire.ipcRenderer.postMessage('ch', 3, [port2]);
      port1.close();
      ipcwire.ipcRenderer.close();
    `, { address: main.address });
    await exitsCleanly(child);
    await waitUntil(() => heard.length === 1, 5000, 'the good message');
    expect(heard).toEqual([[3, 1]]);
  });

  test('ports: an unstarted port keeps no process alive; unused ends are closed', { timeout: 30_000 }, async () => {
    const child = runNode(`
      const { MessageChannelMain } = ipcwire;
      const { port1, port2 } = new MessageChannelMain();
      port2.on('message', () => {});
      port1.postMessage('never read');
      out('posted', true);
    `);
    await child.msg('posted');
    await exitsCleanly(child, 5000);
  });
});
