/**
 * Whatever `send` accepted before the process exits normally or calls process.exit() is delivered
 * (with plain sockets and process.exit(), most of 1 MiB is lost). Tested at 10 KB and 8 MiB, both ways.
 */
import * as fs from 'node:fs';
import { describe, expect, test } from 'vitest';
import { exitsCleanly, makeMain, runNode, sha256, sockPath, trackPath, useHarness, waitUntil } from './helpers';

useHarness();

const KB = 1024;
const MiB = 1024 * 1024;

/** What main received on 'data', checked; `gone()` once the (single) renderer's connection has closed. */
function collect(main: any) {
  const got: Array<{ i: number; len: number; ok: boolean }> = [];
  main.on('data', (_e: any, i: number, hash: string, buf: Buffer) => got.push({ i, len: buf.length, ok: sha256(buf) === hash }));
  let closed = false;
  main.peers.on('disconnect', () => (closed = true));
  // Everything the renderer wrote precedes its end of stream: once main saw the disconnect, all is emitted.
  const gone = () => waitUntil(() => closed, 10_000, 'the renderer connection to close');
  return { got, gone };
}

const SENDER = (sizes: number[], ending: string) => `
  const r = ipcwire.ipcRenderer;
  const sizes = ${JSON.stringify(sizes)};
  sizes.forEach((n, i) => { const b = require('node:crypto').randomBytes(n); r.send('data', i, sha256(b), b); });
  ${ending}
`;

describe('exit-flush', () => {
  for (const [label, size] of [
    ['10 KB', 10 * KB],
    ['8 MiB', 8 * MiB],
  ] as const) {
    test(`exit-flush: ${label} sent right before process.exit() is delivered whole`, { timeout: 30_000 }, async () => {
      const main = makeMain();
      const { got, gone } = collect(main);
      const child = runNode(SENDER([size], 'process.exit(0);'), { address: main.address });
      await exitsCleanly(child);
      await gone();
      expect(got).toEqual([{ i: 0, len: size, ok: true }]);
    });
  }

  test('exit-flush: 200 messages (10 KB to 1 MiB) sent before process.exit() all arrive, in order', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const { got, gone } = collect(main);
    const sizes = Array.from({ length: 200 }, (_, i) => (i % 20 === 0 ? MiB : 10 * KB));
    const child = runNode(SENDER(sizes, 'process.exit(3);'), { address: main.address });
    await exitsCleanly(child, undefined, 3);
    await gone();
    expect(got).toEqual(sizes.map((len, i) => ({ i, len, ok: true })));
  });

  test('exit-flush: 8 MiB sent before a natural exit is delivered whole', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const { got, gone } = collect(main);
    const child = runNode(SENDER([8 * MiB, 10 * KB], ''), { address: main.address });
    await exitsCleanly(child);
    await gone();
    expect(got).toEqual([
      { i: 0, len: 8 * MiB, ok: true },
      { i: 1, len: 10 * KB, ok: true },
    ]);
  });

  test('exit-flush: ipcRenderer.close() right after send delivers what send accepted (8 MiB), then the process exits', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const { got, gone } = collect(main);
    const child = runNode(SENDER([8 * MiB, 10 * KB], 'ipcwire.ipcRenderer.close();'), { address: main.address });
    await exitsCleanly(child);
    await gone();
    expect(got).toEqual([
      { i: 0, len: 8 * MiB, ok: true },
      { i: 1, len: 10 * KB, ok: true },
    ]);
  });

  test('exit-flush: messages sent from a process.on(\'exit\') handler after the last call are still delivered', { timeout: 30_000 }, async () => {
    const main = makeMain();
    const { got, gone } = collect(main);
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      r.send('data', 0, sha256(Buffer.alloc(10)), Buffer.alloc(10));
      process.on('exit', () => { const b = Buffer.alloc(1024 * 1024, 9); r.send('data', 1, sha256(b), b); });
      process.exit(0);
    `,
      { address: main.address },
    );
    await exitsCleanly(child);
    await gone();
    expect(got.map((g) => g.ok)).toEqual([true, true]);
  });

  for (const [label, size] of [
    ['10 KB', 10 * KB],
    ['8 MiB', 8 * MiB],
  ] as const) {
    test(`exit-flush: ${label} that main sends right before process.exit() reaches the renderer whole`, { timeout: 30_000 }, async () => {
      const address = trackPath(sockPath());
      const mainProc = runNode(`
        const main = new ipcwire.IpcMain();
        main.listen(${JSON.stringify(address)});
        main.on('up', (event) => {
          const b = require('node:crypto').randomBytes(${size});
          event.sender.send('data', sha256(b), b);
          process.exit(0);
        });
        out('ready');
      `);
      await mainProc.msg('ready');
      const child = runNode(
        `
        const r = ipcwire.ipcRenderer;
        r.once('data', (e, hash, b) => out('r', { len: b.length, ok: sha256(b) === hash }));
        r.send('up');
      `,
        { address },
      );
      expect(await child.msg('r')).toEqual({ len: size, ok: true });
      await exitsCleanly(mainProc);
      await exitsCleanly(child);
      fs.rmSync(address, { force: true }); // main exited without close(): its socket file is this test's to remove
    });
  }
});
