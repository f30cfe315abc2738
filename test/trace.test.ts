/**
 * Tracing: diagnostics_channel publications on both sides with their fields and request ids, W3C traceparent
 * carried to handlers and listeners (per call and through a provider), and NODE_DEBUG=ipcwire lines.
 */
import * as dc from 'node:diagnostics_channel';
import { describe, expect, test } from 'vitest';
import { exitsCleanly, ipcwire, makeMain, once, runNode, useHarness, waitUntil } from './helpers';

useHarness();

const TP1 = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
const TP2 = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

/** Subscribes to every ipcwire channel; returns the records and an unsubscribe function. */
function record(): { records: Array<{ name: string } & Record<string, any>>; stop: () => void } {
  const records: Array<{ name: string } & Record<string, any>> = [];
  const subs: Array<[string, (m: unknown) => void]> = [];
  for (const name of Object.values(ipcwire().TRACE_CHANNELS) as string[]) {
    const fn = (m: unknown) => records.push({ name, ...(m as object) });
    dc.subscribe(name, fn);
    subs.push([name, fn]);
  }
  return { records, stop: () => subs.forEach(([n, fn]) => dc.unsubscribe(n, fn)) };
}

/** The renderer side of the field test: subscribes, makes one call of each kind, prints its records. */
const TRACED_RENDERER = `
  const dc = require('node:diagnostics_channel');
  const records = [];
  for (const name of Object.values(ipcwire.TRACE_CHANNELS)) {
    dc.subscribe(name, (m) => records.push({ name, ...m, error: m.error && (m.error.code || m.error.name) }));
  }
  const r = ipcwire.ipcRenderer;
  r.handle('back', (event, x) => x + 1);
  await r.invoke('warm'); // the handshake is done: the peer id is known from here on
  r.send('note', 'hello');
  out('inv', await r.invoke('double', 21));
  out('sync', r.sendSync('sync', 5));
  out('fail', await r.invoke('fail').catch((e) => e.message));
  r.once('bye', () => {
    r.removeHandler('back');
    out('records', records);
    r.close();
  });
  r.send('ready');
`;

describe('trace', () => {
  test('trace: every message is published on both sides with direction, peer, pid, channel, kind, bytes and a request id', { timeout: 30_000 }, async () => {
    const { records, stop } = record();
    try {
      const main = makeMain();
      main.on('note', () => {});
      main.handle('warm', () => true);
      main.handle('double', (_e: any, x: number) => x * 2);
      main.handle('fail', () => {
        throw Object.assign(new Error('nope'), { code: 'E_NOPE' });
      });
      main.on('sync', (event: any, x: number) => {
        event.returnValue = x + 1;
      });
      const ready = once(main, 'ready');
      const child = runNode(TRACED_RENDERER, { address: main.address });
      expect(await child.msg('inv')).toBe(42);
      expect(await child.msg('sync')).toBe(6);
      await ready;
      const [peer] = main.peers.list();
      expect(await peer.invoke('back', 1)).toBe(2);
      const gone = once(main.peers, 'disconnect');
      peer.send('bye');
      const theirs = await child.msg('records');
      await exitsCleanly(child);
      await gone;

      const base = { side: 'main', peerId: peer.id, pid: child.pid };
      const mine = (name: string, channel: string) => records.find((r) => r.name === name && r.channel === channel);
      expect(records.find((r) => r.name === 'ipcwire:connect')).toMatchObject({ ...base, kind: 'connect' });
      expect(mine('ipcwire:message', 'note')).toMatchObject({ ...base, direction: 'in', kind: 'send', id: 0 });
      expect(mine('ipcwire:message', 'note')!.bytes).toBeGreaterThan(9);
      const hStart = mine('ipcwire:handle:start', 'double')!;
      const hEnd = mine('ipcwire:handle:end', 'double')!;
      expect(hStart).toMatchObject({ ...base, direction: 'in', kind: 'invoke' });
      expect(hEnd).toMatchObject({ ...base, direction: 'in', kind: 'invoke', id: hStart.id });
      expect(hEnd.durationMs).toBeGreaterThanOrEqual(0);
      expect(hEnd.error).toBeUndefined();
      expect(mine('ipcwire:handle:start', 'sync')).toMatchObject({ ...base, kind: 'sendSync' });
      expect(mine('ipcwire:handle:end', 'sync')).toMatchObject({ ...base, kind: 'sendSync' });
      const failEnd = mine('ipcwire:handle:end', 'fail')!;
      expect(failEnd.error.code).toBe('E_NOPE');
      expect(mine('ipcwire:error', 'fail')).toMatchObject({ ...base, channel: 'fail' });
      const back = mine('ipcwire:invoke:start', 'back')!;
      expect(back).toMatchObject({ ...base, direction: 'out', kind: 'invoke' });
      expect(mine('ipcwire:invoke:end', 'back')).toMatchObject({ id: back.id });
      expect(mine('ipcwire:send', 'bye')).toMatchObject({ ...base, direction: 'out', kind: 'send' });
      expect(records.find((r) => r.name === 'ipcwire:disconnect')).toMatchObject({ ...base, kind: 'disconnect' });

      // The renderer's side of the same calls: the same request ids link its start/end to main's handling.
      const their = (name: string, channel: string) => theirs.find((r: any) => r.name === name && r.channel === channel);
      const rbase = { side: 'renderer', peerId: peer.id, pid: process.pid };
      expect(theirs.find((r: any) => r.name === 'ipcwire:connect')).toMatchObject({ ...rbase, kind: 'connect' });
      expect(their('ipcwire:send', 'note')).toMatchObject({ ...rbase, direction: 'out', kind: 'send' });
      expect(their('ipcwire:send', 'note').bytes).toBe(mine('ipcwire:message', 'note')!.bytes);
      expect(their('ipcwire:invoke:start', 'double')).toMatchObject({ ...rbase, direction: 'out', kind: 'invoke', id: hStart.id, bytes: hStart.bytes });
      expect(their('ipcwire:invoke:end', 'double')).toMatchObject({ id: hStart.id, bytes: hEnd.bytes });
      expect(their('ipcwire:invoke:end', 'double').durationMs).toBeGreaterThanOrEqual(0);
      expect(their('ipcwire:sendSync:start', 'sync')).toMatchObject({ ...rbase, kind: 'sendSync', id: mine('ipcwire:handle:start', 'sync')!.id });
      expect(their('ipcwire:sendSync:end', 'sync').durationMs).toBeGreaterThanOrEqual(0);
      expect(their('ipcwire:invoke:end', 'fail').error).toBe('E_NOPE');
      expect(their('ipcwire:error', 'fail')).toBeTruthy();
      expect(their('ipcwire:handle:start', 'back')).toMatchObject({ ...rbase, direction: 'in', id: back.id });
      expect(their('ipcwire:message', 'bye')).toMatchObject({ ...rbase, direction: 'in', kind: 'send' });
    } finally {
      stop();
    }
  });

  test('trace: a traceparent travels with invoke, sendSync and send, per call or from a provider, both ways', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const seen: Record<string, unknown> = {};
    main.handle('inv', (event: any) => {
      seen.inv = event.traceparent;
      return 'ok';
    });
    main.on('msg', (event: any) => {
      seen.msg = event.traceparent;
    });
    main.on('sync', (event: any) => {
      seen.sync = event.traceparent;
      event.returnValue = 'ok';
    });
    main.handle('plain', (event: any) => {
      seen.plain = event.traceparent ?? null;
      return 'ok';
    });
    const ready = once(main, 'ready');
    const child = runNode(`
      const { AsyncLocalStorage } = require('node:async_hooks');
      const r = ipcwire.ipcRenderer;
      await r.invoke('plain');
      await r.invokeWith({ traceparent: '${TP1}' }, 'inv');
      // A provider backed by an AsyncLocalStorage store, as a tracing library keeps its active span.
      const als = new AsyncLocalStorage();
      ipcwire.setTraceparentProvider(() => als.getStore());
      await als.run('${TP2}', async () => {
        r.send('msg');
        out('sync', r.sendSync('sync'));
      });
      ipcwire.setTraceparentProvider(null);
      out('bad', await r.invokeWith({ traceparent: 'not-a-traceparent' }, 'inv').catch((e) => [e.name, e.code]));
      r.handle('back', (event) => event.traceparent);
      r.on('note', (event) => { out('note', event.traceparent); r.removeHandler('back'); r.close(); });
      r.send('ready');
    `, { address: main.address });
    await ready;
    const [peer] = main.peers.list();
    expect(await peer.invokeWith({ traceparent: TP2 }, 'back')).toBe(TP2);
    ipcwire().setTraceparentProvider(() => TP1);
    try {
      peer.send('note');
    } finally {
      ipcwire().setTraceparentProvider(null);
    }
    expect(await child.msg('note')).toBe(TP1);
    expect(await child.msg('sync')).toBe('ok');
    expect(await child.msg('bad')).toEqual(['TypeError', 'ERR_INVALID_ARG_VALUE']);
    await exitsCleanly(child);
    expect(seen).toEqual({ plain: null, inv: TP1, msg: TP2, sync: TP2 });
  });

  test('trace: NODE_DEBUG=ipcwire prints one line per message', { timeout: 30_000 }, async () => {
    const main = makeMain();
    main.on('a', () => {});
    main.handle('b', () => 1);
    const child = runNode(`
      const r = ipcwire.ipcRenderer;
      r.send('a', 1);
      await r.invokeWith({ traceparent: '${TP1}' }, 'b');
      r.close();
    `, { address: main.address, env: { NODE_DEBUG: 'ipcwire' } });
    await exitsCleanly(child);
    const lines = child.stderr.split('\n').filter((l) => l.startsWith('IPCWIRE '));
    // send and invoke:start are written before main's handshake reply is read (their peer id is still null).
    const line = (what: string) => lines.filter((l) => l.split(' ')[2] === what);
    expect(lines.length, lines.join('\n')).toBe(5);
    expect(line('send')).toEqual([expect.stringMatching(new RegExp(`^IPCWIRE \\d+: send renderer out peer=null pid=${process.pid} ch="a" id=0 bytes=\\d+$`))]);
    expect(line('invoke:start')).toEqual([expect.stringMatching(new RegExp(`^IPCWIRE \\d+: invoke:start renderer out peer=null pid=${process.pid} ch="b" id=\\d+ bytes=\\d+ traceparent=${TP1}$`))]);
    expect(line('connect')).toEqual([expect.stringMatching(/^IPCWIRE \d+: connect renderer out peer=\d+ pid=\d+ ch="" id=0 bytes=0$/)]);
    expect(line('invoke:end')).toEqual([expect.stringMatching(/^IPCWIRE \d+: invoke:end renderer out peer=null .* ms=\d+\.\d{3} traceparent=/)]);
    expect(line('disconnect')).toEqual([expect.stringMatching(/^IPCWIRE \d+: disconnect renderer in peer=\d+ /)]);
    await waitUntil(() => main.peers.size === 0, 5000, 'the renderer to go');
  });
});
