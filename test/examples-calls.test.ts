/**
 * The runnable examples of invoke cancellation, streamed invokes, typed channels and tracing run as a user runs them
 * (`node examples/<name>/main.js`) and print what their comments promise.
 */
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { ROOT, exitsCleanly, spawnNode, useHarness } from './helpers';

useHarness();

async function runExample(name: string): Promise<string[]> {
  const child = spawnNode([path.join(ROOT, 'examples', name, 'main.js')]);
  await exitsCleanly(child, 30_000);
  return child.lines();
}

describe('examples-calls', () => {
  test('examples-calls: examples/cancel aborts one call, times out another, and main stops the work of both', { timeout: 40_000 }, async () => {
    const lines = await runExample('cancel');
    const renderer = lines.filter((l) => l.startsWith('renderer:'));
    expect(renderer).toEqual([
      'renderer: results for fast',
      'renderer: AbortError (ABORT_ERR), cause: the user typed something else',
      "renderer: ERR_IPC_TIMEOUT: invoke('search') got no reply within 100 ms",
    ]);
    expect(lines.filter((l) => l.startsWith('main:'))).toEqual([
      "main: search('slow') abandoned by the renderer (AbortError)",
      "main: search('slow') abandoned by the renderer (AbortError)",
    ]);
  });

  test('examples-calls: examples/stream-tokens streams tokens, stops one completion early (main\'s finally runs), awaits one whole', { timeout: 40_000 }, async () => {
    const lines = await runExample('stream-tokens');
    expect(lines.filter((l) => l.startsWith('renderer:'))).toEqual([
      'renderer: brown fox jumps over the lazy dog the quick',
      'renderer: first three: fox jumps over',
      'renderer: 4 tokens: ["quick"," brown"," fox"," jumps"]',
    ]);
    expect(lines.filter((l) => l.startsWith('main:'))).toEqual([
      "main: completion of 'hi' done (9 tokens)",
      "main: completion of 'abc' stopped by the renderer after a few tokens",
      "main: completion of 'x' done (4 tokens)",
    ]);
  });

  test('examples-calls: examples/ports-chat: two renderers chat over a port main gave them', { timeout: 40_000 }, async () => {
    const lines = await runExample('ports-chat');
    expect(lines.filter((l) => l.startsWith('alice:') || l.startsWith('bob:'))).toEqual([
      'bob: alice says "hi bob"',
      'alice: bob says "hi alice"',
      'bob: alice says "how is the port?"',
      'alice: bob says "direct, main never sees us"',
      'bob: alice says "bye"',
      'alice: bob says "bye"',
    ]);
    expect(lines.filter((l) => l.startsWith('main:')).sort()).toEqual([
      'main: alice is done after 3 line(s)',
      'main: bob is done after 3 line(s)',
      'main: introduced alice and bob',
    ]);
  });

  test.runIf(process.platform !== 'win32')('examples-calls: examples/tcp-handoff: TCP connections main accepted are served by two renderers', { timeout: 40_000 }, async () => {
    const lines = await runExample('tcp-handoff');
    const served = lines.filter((l) => l.startsWith('client got: '));
    expect(served.map((l) => l.replace(/ \(served by \w+\)$/, '')).sort()).toEqual(
      ['four', 'one', 'three', 'two'].map((w) => `client got: ${w}`));
    // Round robin: two each.
    expect(served.filter((l) => l.endsWith('(served by left)')).length).toBe(2);
    expect(served.filter((l) => l.endsWith('(served by right)')).length).toBe(2);
  });

  test('examples-calls: examples/typed runs (its types are checked by test/types) and its disposer removes the listener', { timeout: 40_000 }, async () => {
    const lines = await runExample('typed');
    expect(lines.filter((l) => l.startsWith('renderer:'))).toEqual([
      'renderer: hello typed world',
      'renderer: tick 1 from main',
      'renderer: add(2, 3) = 5.0',
    ]);
    expect(lines.filter((l) => l.startsWith('main:'))).toEqual(['main: tick 7']);
  });

  test('examples-calls: examples/tracing prints main\'s diagnostics_channel events and the trace id the renderer sent', { timeout: 40_000 }, async () => {
    const lines = await runExample('tracing');
    expect(lines.filter((l) => l.startsWith('renderer:'))).toEqual(['renderer: ABC']);
    expect(lines.filter((l) => l.startsWith('main:'))).toEqual([
      "main: ipcwire:handle:start invoke 'lookup' from peer 1, in, id 1",
      'main: handler runs in trace 4bf92f3577b34da6a3ce929d0e0e4736',
      "main: ipcwire:handle:end invoke 'lookup' from peer 1, in, id 1 (timed)",
      "main: ipcwire:message send 'log' from peer 1, in, id 0",
      'main: log done',
    ]);
  });

  test('examples-calls: examples/inspect prints the inspector\'s table and tail for the renderer\'s traffic', { timeout: 40_000 }, async () => {
    const lines = await runExample('inspect');
    expect(lines[0]).toMatch(/^ipcwire main pid \d+ at .*: 1 renderer\(s\)/);
    expect(lines.find((l) => l.startsWith('square '))!.trim().split(/\s{2,}/).slice(0, 2)).toEqual(['square', '4']);
    expect(lines.find((l) => l.startsWith('log '))!.trim().split(/\s{2,}/).slice(0, 2)).toEqual(['log', '1']);
    expect(lines.filter((l) => / <- peer \d+ invoke square /.test(l)).length).toBe(4);
    expect(lines.some((l) => / <- peer \d+ send log \d+ B \[ \{ level: 'info', text: 'a m…$/.test(l))).toBe(true);
  });
});
