/**
 * Electron's V8 sandbox refuses external Buffers (napi_no_external_buffers_allowed). The addon notices the
 * first refusal, switches that environment to copying, and every message still arrives intact. On Node the
 * refusal is simulated (IPCWIRE_COPY_BUFFERS=sandbox) and copying can be forced (IPCWIRE_COPY_BUFFERS=1); CI
 * also runs the large-payload, blob and sendSync suites with copying forced.
 */
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { exitsCleanly, makeMain, nodeRequire, ROOT, runNode, sha256, useHarness } from './helpers';

useHarness();

const NATIVE = path.join(ROOT, 'dist', 'cjs', 'native.js');

/** A renderer child that receives a large message and a large sendSync reply, reporting the buffer mode around them. */
function renderer(address: string, mode: string) {
  return runNode(
    `
    const { native } = require(${JSON.stringify(NATIVE)});
    const r = ipcwire.ipcRenderer;
    const before = native().bufferMode;
    const got = new Promise((resolve) => r.once('big', (_e, buf, blob) => resolve({ a: sha256(buf), b: sha256(blob), n: buf.length })));
    r.send('ready');
    const pushed = await got;
    const afterPush = native().bufferMode;
    const reply = r.sendSync('sync-big');
    const replied = { a: sha256(reply.bytes), n: reply.bytes.length, tag: reply.tag };
    const invoked = await r.invoke('invoke-big');
    out('r', { before, afterPush, after: native().bufferMode, pushed, replied, invoked: sha256(invoked) });
    r.close();
  `,
    { address, env: { IPCWIRE_COPY_BUFFERS: mode } },
  );
}

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

describe('copied buffers (Electron)', () => {
  test('this process runs with the buffer mode its environment asks for', () => {
    const { native } = nodeRequire(NATIVE);
    expect(native().bufferMode).toBe(process.env.IPCWIRE_COPY_BUFFERS === '1' ? 'copy' : 'external');
  });

  for (const [mode, before] of [
    ['sandbox', 'external'],
    ['1', 'copy'],
    ['', 'external'],
  ] as const) {
    test(`IPCWIRE_COPY_BUFFERS=${JSON.stringify(mode)}: 4 MiB pushes, blobs, sendSync replies and invoke results arrive intact`, { timeout: 60_000 }, async () => {
      const main = makeMain();
      const big = bytes(4 << 20, 1);
      const blob = bytes(3 << 20, 2);
      const reply = bytes(5 << 20, 3);
      const invoked = bytes(2 << 20, 4);
      main.on('ready', (e: any) => e.reply('big', big, blob));
      main.on('sync-big', (e: any) => (e.returnValue = { tag: 'sync', bytes: reply }));
      main.handle('invoke-big', () => invoked);
      const child = renderer(main.address, mode);
      const r = await child.msg('r', 45_000);
      await exitsCleanly(child);
      expect(r.pushed).toEqual({ a: sha256(big), b: sha256(blob), n: big.length });
      expect(r.replied).toEqual({ a: sha256(reply), n: reply.length, tag: 'sync' });
      expect(r.invoked).toBe(sha256(invoked));
      expect(r.before).toBe(before);
      // A refusal (simulated here, Electron's sandbox there) switches the environment to copying for good;
      // without one, nothing switches.
      const expected = mode === '' ? 'external' : 'copy';
      expect(r.afterPush).toBe(expected);
      expect(r.after).toBe(expected);
    });
  }
});
