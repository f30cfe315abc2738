/**
 * The seed example of the original `ipc` module runs as written (module name changed only), from
 * CommonJS and from ESM; and the README's modern example.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { childPids, exitsCleanly, FIXTURES, HAS_PROC, isAlive, makeMain, ROOT, runNode, spawnNode, trackPid, useHarness, waitUntil } from './helpers';

useHarness();

function count(lines: string[], word: string): number {
  return lines.filter((l) => l === word).length;
}

/** The IPCWIRE_ADDRESS a process was started with (Linux: /proc/<pid>/environ). */
function addressInEnvironment(pid: number): string | undefined {
  const env = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
  return env.find((e) => e.startsWith('IPCWIRE_ADDRESS='))?.slice('IPCWIRE_ADDRESS='.length);
}

/**
 * Without /proc (macOS) another process's environment is out of reach: the fresh private address `fork` made
 * main listen on is found by its name instead (`<main's pid>-<random>.sock` in the per-user directory).
 */
function privateAddressOf(mainPid: number): string | undefined {
  const base = process.env.XDG_RUNTIME_DIR;
  const dir = base && path.isAbsolute(base) ? path.join(base, 'ipcwire') : path.join(os.tmpdir(), `ipcwire-${process.getuid!()}`);
  const names = fs.readdirSync(dir).filter((f) => f.startsWith(`${mainPid}-`) && f.endsWith('.sock'));
  return names.length === 1 ? path.join(dir, names[0]) : undefined;
}

/**
 * Run a main script that forks its renderer, wait for the expected output, then SIGKILL main (it would run
 * forever: its listening socket keeps it alive). The renderer must then end by itself, and the stale socket
 * file main leaves is removed here.
 */
async function runSeed(mainScript: string, done: (lines: string[]) => boolean) {
  const main = spawnNode([mainScript]);
  await waitUntil(() => done(main.lines()) || main.done, 20_000, 'the seed output').catch((e) => {
    throw new Error(`${(e as Error).message}\n--- stdout:\n${main.stdout}\n--- stderr:\n${main.stderr}`);
  });
  expect(main.done, `main exited early: ${main.stderr}`).toBe(false);
  const renderers = childPids(main.pid);
  expect(renderers).toHaveLength(1);
  const address = HAS_PROC ? addressInEnvironment(renderers[0]) : privateAddressOf(main.pid);
  expect(address, 'fork puts the address in the renderer environment').toBeTruthy();
  renderers.forEach(trackPid);
  main.kill('SIGKILL');
  await main.waitExit();
  // The renderer has a listener, so it lived on its connection; with main gone it must end by itself.
  await waitUntil(() => !isAlive(renderers[0]), 5000, 'the renderer to exit after main died');
  // A SIGKILLed main cannot remove its socket file and lock file: those stale files are this test's to clean.
  fs.rmSync(address!, { force: true });
  fs.rmSync(`${address}.lock`, { force: true });
  return { lines: main.lines(), stderr: main.stderr };
}

/**
 * The README's whole-program code blocks (a ```js block whose first line names a file, `// main.js`), split into
 * files at their `// <name>.js` / `// <name>.mjs` header lines: { name, code }. Blocks without such a header are
 * fragments of an API section, whose runnable form is that section's examples/<name> directory.
 */
function readmeFiles(): Array<{ name: string; code: string }> {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const files: Array<{ name: string; code: string }> = [];
  const header = /^\/\/ (\S+\.m?js)$/;
  for (const block of readme.matchAll(/^```js\n([\s\S]*?)^```$/gm)) {
    const lines = block[1].split('\n');
    if (!header.test(lines[0])) continue;
    for (const line of lines) {
      const h = header.exec(line);
      if (h) files.push({ name: h[1], code: '' });
      else files[files.length - 1].code += line + '\n';
    }
  }
  return files;
}

describe('seed', () => {
  test('seed: every JavaScript block of README.md is, byte for byte, a file under examples/ that a test runs', () => {
    const files = readmeFiles();
    // The CommonJS seed example (examples/seed) and the modern ESM example (examples/readme), both run below.
    expect(files.map((f) => f.name)).toEqual(['main.js', 'renderer.js', 'main.mjs', 'renderer.mjs']);
    for (const { name, code } of files) {
      const file = path.join(ROOT, 'examples', name.endsWith('.mjs') ? 'readme' : 'seed', name);
      expect(fs.readFileSync(file, 'utf8').split('\n').slice(1).join('\n').trim(), file).toBe(code.trim());
    }
  });

  test('seed: the CommonJS example prints ping, ping in main and pong, pong in the renderer', { timeout: 30_000 }, async () => {
    const { lines, stderr } = await runSeed(
      path.join(ROOT, 'examples', 'seed', 'main.js'),
      (l) => count(l, 'ping') >= 2 && count(l, 'pong') >= 2,
    );
    expect(stderr).toBe('');
    expect([...lines].sort()).toEqual(['ping', 'ping', 'pong', 'pong']);
    // The synchronous exchange completes before the asynchronous one starts.
    expect(lines.slice(0, 2)).toEqual(['ping', 'pong']);
  });

  test('seed: the ESM example prints ping, ping in main and pong, pong in the renderer', { timeout: 30_000 }, async () => {
    const { lines, stderr } = await runSeed(
      path.join(FIXTURES, 'seed-esm', 'main.mjs'),
      (l) => count(l, 'ping') >= 2 && count(l, 'pong') >= 2,
    );
    expect(stderr).toBe('');
    expect([...lines].sort()).toEqual(['ping', 'ping', 'pong', 'pong']);
    expect(lines.slice(0, 2)).toEqual(['ping', 'pong']);
  });

  test('seed: the README modern example prints 5 and the peer log line', { timeout: 30_000 }, async () => {
    const { lines, stderr } = await runSeed(
      path.join(ROOT, 'examples', 'readme', 'main.mjs'),
      (l) => l.includes('5') && l.some((x) => /I am peer/.test(x)),
    );
    expect(stderr).toBe('');
    expect(lines).toContain('5');
    const log = lines.find((x) => /I am peer/.test(x))!;
    expect(log).toMatch(/^\[\d+\] I am peer \S+$/);
  });

  test('seed: ipcwire/ipc is the main side in a process without an address', { timeout: 20_000 }, async () => {
    const child = runNode(`
      const ipc = require('ipcwire/ipc');
      out('role', { isMain: ipc === ipcwire.ipcMain, hasHandle: typeof ipc.handle === 'function' });
    `);
    expect(await child.msg('role')).toEqual({ isMain: true, hasHandle: true });
    await exitsCleanly(child);
  });

  test('seed: ipcwire/ipc renderer listeners receive the arguments only, ipcRenderer ones (event, ...args)', { timeout: 20_000 }, async () => {
    const main = makeMain();
    main.on('go', (event: any) => {
      event.sender.send('both', 'a', 2);
    });
    const child = runNode(
      `
      const ipc = require('ipcwire/ipc');
      const seed = new Promise((r) => ipc.once('both', (...args) => r(args)));
      const modern = new Promise((r) => ipcwire.ipcRenderer.once('both', (event, ...args) => r({ hasSender: !!event && typeof event === 'object' && 'sender' in event, args })));
      ipc.send('go');
      out('seed', await seed);
      out('modern', await modern);
    `,
      { address: main.address },
    );
    expect(await child.msg('seed')).toEqual(['a', 2]);
    expect(await child.msg('modern')).toEqual({ hasSender: true, args: ['a', 2] });
    await exitsCleanly(child);
  });

  test('seed: import ipc from ipcwire/ipc and named imports from ipcwire work from ESM', { timeout: 20_000 }, async () => {
    const child = runNode(
      `
      const ipc = (await import('ipcwire/ipc')).default;
      const { ipcMain, IpcMain, fork, ipcRenderer, IpcRenderer } = await import('ipcwire');
      out('esm', {
        ipcIsMain: ipc === ipcMain,
        types: [typeof IpcMain, typeof fork, typeof IpcRenderer, typeof ipcRenderer],
        sameAsRequire: ipcMain === require('ipcwire').ipcMain,
      });
    `,
      { esm: true },
    );
    expect(await child.msg('esm')).toEqual({
      ipcIsMain: true,
      types: ['function', 'function', 'function', 'object'],
      sameAsRequire: true,
    });
    await exitsCleanly(child);
  });
});
