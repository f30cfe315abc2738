/**
 * Peers: connections observable without colliding with channel names; Peer (webContents) API;
 * broadcast; event.reply; the channel 'error'.
 */
import { describe, expect, test } from 'vitest';
import { catchSync, exitsCleanly, ipcwire, makeMain, once, runNode, useHarness, waitUntil } from './helpers';

useHarness();

/** A renderer that reports messages, answers `peer.invoke('id')`, and ends when told ('bye'). */
const ECHO_RENDERER = `
  const r = ipcwire.ipcRenderer;
  r.on('hello', (event, ...args) => out('hello', args));
  r.handle('whoami', () => process.pid);
  r.once('bye', () => { r.removeAllListeners('hello'); r.removeHandler('whoami'); r.close(); });
  r.link.on('connect', () => out('link-connect', r.connected));
  r.link.on('disconnect', (err) => out('link-disconnect', err && errInfo(err)));
  r.send('up', process.pid);
`;

describe('peers', () => {
  test('peers: connect and disconnect events, size, get, list and iteration follow the renderers', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const connected: any[] = [];
    const disconnected: any[] = [];
    main.peers.on('connect', (peer: any) => connected.push(peer));
    main.peers.on('disconnect', (peer: any, err: any) => disconnected.push([peer, err]));
    expect(main.peers.size).toBe(0);
    const kids = [0, 1, 2].map(() => runNode(ECHO_RENDERER, { address: main.address }));
    await waitUntil(() => connected.length === 3, 10_000, '3 connect events');
    expect(main.peers.size).toBe(3);
    const pids = kids.map((k) => k.pid).sort();
    expect(connected.map((p) => p.pid).sort()).toEqual(pids);
    expect(new Set(connected.map((p) => p.id)).size).toBe(3);
    expect([...main.peers].map((p: any) => p.id).sort()).toEqual(connected.map((p) => p.id).sort());
    expect(main.peers.list().map((p: any) => p.id).sort()).toEqual(connected.map((p) => p.id).sort());
    for (const p of connected) {
      expect(main.peers.get(p.id)).toBe(p);
      expect(p.isDestroyed()).toBe(false);
      expect(p.uid).toBe(process.getuid!());
      expect(p.gid).toBe(process.getgid!());
    }
    for (const k of kids) expect(await k.msg('link-connect')).toBe(true);
    const first = connected[0];
    const firstDisconnect = once(first, 'disconnect');
    first.send('bye');
    const [err] = await firstDisconnect;
    expect(err).toBeNull();
    expect(first.isDestroyed()).toBe(true);
    expect(main.peers.size).toBe(2);
    expect(main.peers.get(first.id)).toBeUndefined();
    expect(disconnected.map(([p, e]) => [p, e])).toEqual([[first, null]]);
    for (const p of connected.slice(1)) p.send('bye');
    await waitUntil(() => disconnected.length === 3, 10_000, '3 disconnect events');
    expect(main.peers.size).toBe(0);
    for (const k of kids) await exitsCleanly(k);
  });

  test('peers: no lifecycle event is emitted as an ipcMain channel event', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const emitted: string[] = [];
    const realEmit = main.emit;
    main.emit = function (name: string, ...args: unknown[]) {
      emitted.push(String(name));
      return realEmit.call(this, name, ...args);
    };
    for (const ch of ['connect', 'connection', 'disconnect', 'close', 'error', 'peer', 'drain']) main.on(ch, () => {});
    main.on('up', () => {});
    const child = runNode(ECHO_RENDERER, { address: main.address });
    const [peer] = await once(main.peers, 'connect');
    await waitUntil(() => emitted.includes('up'), 10_000, "the 'up' message");
    peer.send('bye');
    await once(main.peers, 'disconnect');
    const killed = runNode(ECHO_RENDERER, { address: main.address });
    await once(main.peers, 'connect');
    await waitUntil(() => emitted.filter((n) => n === 'up').length === 2, 10_000, "the second 'up' message");
    killed.kill('SIGKILL');
    await once(main.peers, 'disconnect');
    expect(emitted.filter((n) => n !== 'newListener' && n !== 'removeListener')).toEqual(['up', 'up']);
    await child.waitExit();
    await killed.waitExit();
  });

  test('peers: event.processId and peer.pid are the renderer\'s real pid; event.sender is the peer', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const seen: any[] = [];
    main.on('up', (event: any, claimed: number) => seen.push({ event, claimed }));
    const child = runNode(ECHO_RENDERER, { address: main.address });
    const [peer] = await once(main.peers, 'connect');
    await waitUntil(() => seen.length === 1);
    expect(seen[0].event.processId).toBe(child.pid);
    expect(seen[0].claimed).toBe(child.pid);
    expect(peer.pid).toBe(child.pid);
    expect(seen[0].event.sender).toBe(peer);
    expect(await peer.invoke('whoami')).toBe(child.pid);
    peer.send('bye');
    await exitsCleanly(child);
  });

  test('peers: invoke events carry sender and processId only', { timeout: 30_000 }, async () => {
    const main = makeMain();
    let peerSeen: any;
    main.peers.on('connect', (p: any) => (peerSeen = p));
    main.handle('inv-event', (event: any) => ({
      processId: event.processId,
      senderIsPeer: event.sender === peerSeen,
      reply: typeof event.reply,
      hasReturnValue: 'returnValue' in event,
    }));
    const child = runNode(`out('r', await ipcwire.ipcRenderer.invoke('inv-event'));`, { address: main.address });
    expect(await child.msg('r')).toEqual({ processId: child.pid, senderIsPeer: true, reply: 'undefined', hasReturnValue: false });
    await exitsCleanly(child);
  });

  test('peers: peer.send, event.reply and event.sender.send reach that renderer only', { timeout: 30_000 }, async () => {
    const main = makeMain();
    main.on('up', (event: any) => {
      event.reply('hello', 'reply', event.processId);
      event.sender.send('hello', 'sender.send', event.processId);
    });
    const a = runNode(ECHO_RENDERER, { address: main.address });
    const b = runNode(ECHO_RENDERER, { address: main.address });
    expect(await a.msg('hello')).toEqual(['reply', a.pid]);
    expect(await b.msg('hello')).toEqual(['reply', b.pid]);
    await waitUntil(() => a.messages.filter((m) => m.tag === 'hello').length === 2);
    await waitUntil(() => b.messages.filter((m) => m.tag === 'hello').length === 2);
    expect(a.messages.filter((m) => m.tag === 'hello').map((m) => m.data)).toEqual([
      ['reply', a.pid],
      ['sender.send', a.pid],
    ]);
    main.broadcast('bye');
    await exitsCleanly(a);
    await exitsCleanly(b);
  });

  test('peers: broadcast sends one message to every connected peer', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const kids = [0, 1, 2, 3].map(() => runNode(ECHO_RENDERER, { address: main.address }));
    await waitUntil(() => main.peers.size === 4, 10_000, '4 peers');
    main.broadcast('hello', 'all', { n: 1 });
    for (const k of kids) expect(await k.msg('hello')).toEqual(['all', { n: 1 }]);
    main.broadcast('bye');
    for (const k of kids) await exitsCleanly(k);
    for (const k of kids) expect(k.messages.filter((m) => m.tag === 'hello')).toHaveLength(1);
  });

  test('peers: peer.disconnect() closes that renderer\'s connection; its link reports it', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const child = runNode(ECHO_RENDERER, { address: main.address });
    const [peer] = await once(main.peers, 'connect');
    const gone = once(peer, 'disconnect');
    peer.disconnect();
    await gone;
    expect(peer.isDestroyed()).toBe(true);
    expect(main.peers.size).toBe(0);
    expect(await child.msg('link-disconnect')).toBeDefined();
    await exitsCleanly(child);
  });

  test('peers: a renderer can use the channel \'error\' both ways without crashing either side', { timeout: 30_000 }, async () => {
    const { IpcMain } = ipcwire();
    expect(new IpcMain().listenerCount('error')).toBeGreaterThanOrEqual(1);
    const main = makeMain();
    // Without a user listener on 'error', a renderer sending on it is harmless (the no-op listener).
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      r.send('error', 'first');
      const got = new Promise((res) => r.once('error', (event, v) => res(v)));
      r.send('listen-now');
      out('r', await got);
    `,
      { address: main.address },
    );
    const gotError: unknown[] = [];
    main.on('listen-now', (event: any) => {
      main.on('error', (_e: any, v: unknown) => gotError.push(v));
      event.sender.send('error', 'to renderer');
      event.sender.send('error', 'first channel message');
    });
    expect(await child.msg('r')).toBe('to renderer');
    await exitsCleanly(child);
    expect(gotError).toEqual([]);
    // And with a listener, 'error' is an ordinary channel: (event, ...args).
    const child2 = runNode(`ipcwire.ipcRenderer.send('error', 'second', 2); out('sent');`, { address: main.address });
    await child2.msg('sent');
    await waitUntil(() => gotError.length === 1);
    expect(gotError).toEqual(['second']);
    await exitsCleanly(child2);
  });

  test('peers: allowPeer sees the kernel credentials and can refuse a renderer', { timeout: 30_000 }, async () => {
    const seen: any[] = [];
    const main = makeMain({
      allowPeer: (cred: any) => {
        seen.push(cred);
        return seen.length !== 1; // refuse the first renderer, accept the second
      },
    });
    const errors: any[] = [];
    main.peers.on('error', (err: any, peer: any) => errors.push([err, peer]));
    const code = `
      const r = ipcwire.ipcRenderer;
      try { out('r', { value: await r.invoke('id') }); } catch (e) { out('r', errInfo(e)); }
    `;
    main.handle('id', (e: any) => e.processId);
    const refused = runNode(code, { address: main.address });
    const refusedRes = await refused.msg('r');
    expect(refusedRes.code).toBe('ERR_IPC_PEER_REFUSED');
    expect(seen[0]).toEqual({ pid: refused.pid, uid: process.getuid!(), gid: process.getgid!() });
    await waitUntil(() => errors.length === 1);
    expect(errors[0][0].code).toBe('ERR_IPC_PEER_REFUSED');
    expect(main.peers.size).toBe(0);
    const accepted = runNode(code, { address: main.address });
    expect(await accepted.msg('r')).toEqual({ value: accepted.pid });
    await exitsCleanly(refused);
    await exitsCleanly(accepted);
  });

  test('peers: peer.send after the peer is gone throws ERR_IPC_DISCONNECTED', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const child = runNode(ECHO_RENDERER, { address: main.address });
    const [peer] = await once(main.peers, 'connect');
    peer.send('bye');
    await once(peer, 'disconnect');
    expect(catchSync(() => peer.send('hello')).code).toBe('ERR_IPC_DISCONNECTED');
    await exitsCleanly(child);
  });
});
