/**
 * The live inspector as a user runs it: a main that allows inspection, a renderer making calls, and
 * `ipcwire inspect <address>` (the package's bin) as a child process whose output is read.
 */
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { ROOT, exitsCleanly, makeMain, once, runNode, spawnNode, useHarness } from './helpers';

useHarness();

const CLI = path.join(ROOT, 'dist', 'cjs', 'cli.js');

describe('inspect', () => {
  test('inspect: prints per-channel counts, bytes, latency percentiles, errors and a tail with previews cut at --preview', { timeout: 40_000 }, async () => {
    const main = makeMain({ inspect: true });
    main.handle('double', (_e: any, x: number) => x * 2);
    main.handle('boom', () => {
      throw new Error('boom');
    });
    main.on('log', () => {});
    main.on('config', (event: any) => {
      event.returnValue = 'dark';
    });
    const child = runNode(`
      const r = ipcwire.ipcRenderer;
      for (let i = 0; i < 5; i++) await r.invoke('double', i);
      for (let i = 0; i < 3; i++) r.send('log', 'line ' + i, { text: 'x'.repeat(500) });
      r.sendSync('config');
      await r.invoke('boom').catch(() => {});
      out('done', true);
      await readLine();
      r.close();
      closeStdin();
    `, { address: main.address });
    await child.msg('done');
    const inspector = spawnNode([CLI, 'inspect', main.address, '--count', '1', '--preview', '40']);
    await exitsCleanly(inspector, 20_000);
    const lines = inspector.stdout.split('\n');
    expect(lines[0]).toMatch(new RegExp(`^ipcwire main pid ${process.pid} at ${main.address.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: 1 renderer\\(s\\)`));
    expect(lines[1].split(/\s+/)).toEqual(['channel', 'count', 'bytes', 'p50', 'ms', 'p99', 'ms', 'errors']);
    const row = (ch: string) => lines.find((l) => l.startsWith(ch + ' '))?.trim().split(/\s{2,}/);
    const double = row('double')!;
    expect(double.slice(0, 2)).toEqual(['double', '5']);
    expect(double[2]).toMatch(/^\d+ B$/);
    expect(Number(double[3])).toBeGreaterThan(0); // p50 ms
    expect(Number(double[4])).toBeGreaterThanOrEqual(Number(double[3])); // p99 ms
    expect(double[5]).toBe('0');
    expect(row('log')!.slice(0, 2)).toEqual(['log', '3']);
    expect(row('log')![3]).toBe('-'); // messages have no latency
    expect(row('config')!.slice(0, 2)).toEqual(['config', '1']);
    expect(row('boom')![1]).toBe('1');
    expect(row('boom')![5]).toBe('1'); // its error
    const recent = lines.slice(lines.indexOf('recent:') + 1).filter((l) => l.trim());
    expect(recent.some((l) => /<- peer \d+ invoke double \d+ B \[ 4 \]$/.test(l))).toBe(true);
    const logLine = recent.find((l) => / <- peer \d+ send log /.test(l))!;
    const preview = logLine.slice(logLine.indexOf('['));
    expect(preview.startsWith("[ 'line ")).toBe(true);
    expect(preview.length).toBe(40); // cut at --preview, ending with an ellipsis
    expect(preview.endsWith('…')).toBe(true);
    // The inspector was never one of main's renderers.
    expect(main.peers.size).toBe(1);
    child.send('bye');
    await exitsCleanly(child);
  });

  test('inspect: a main that does not allow it refuses the inspector, which says why and exits 1', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const refused = once(main.peers, 'error');
    const inspector = spawnNode([CLI, 'inspect', main.address, '--count', '1']);
    await exitsCleanly(inspector, 20_000, 1);
    expect(inspector.stderr).toContain('ERR_IPC_PEER_REFUSED: This main does not allow inspection');
    expect((await refused)[0].code).toBe('ERR_IPC_PEER_REFUSED');
    expect(main.peers.size).toBe(0);
    const usage = spawnNode([CLI, 'inspekt']);
    await exitsCleanly(usage, 20_000, 2);
    expect(usage.stderr).toContain('usage: ipcwire inspect <address>');
  });
});
