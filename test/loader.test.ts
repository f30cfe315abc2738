// Which addon file the package loads: a local build first, then prebuilds/<platform>-<arch>/, where Linux has one
// binary per C library. musl is recognised from Node's own report (no glibcVersionRuntime), on any musl system,
// not only where /etc/alpine-release exists (node-gyp-build's test).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { Any, ROOT, nodeRequire, spawnNode, tmpDir, useHarness } from './helpers';
// Every binary the package ships (the list the build and pack scripts use).
import { BINARIES as ALL } from '../scripts/lib/prebuilds';

useHarness();

const loader = (): Any => nodeRequire(path.join(ROOT, 'dist', 'cjs', 'native.js'));


/** A host with these files under /pkg. */
function host(platform: string, arch: string, libc: 'glibc' | 'musl' | undefined, files: string[], prebuildsOnly = false): Any {
  const set = new Set(files.map((f) => path.join('/pkg', f)));
  return { platform, arch, libc, prebuildsOnly, exists: (f: string) => set.has(f) };
}

describe('addonFile picks the binary for the platform, the CPU and the C library', () => {
  const cases = [
    ['linux', 'x64', 'glibc', 'prebuilds/linux-x64/ipcwire.glibc.node'],
    ['linux', 'x64', 'musl', 'prebuilds/linux-x64/ipcwire.musl.node'],
    ['linux', 'arm64', 'glibc', 'prebuilds/linux-arm64/ipcwire.glibc.node'],
    ['linux', 'arm64', 'musl', 'prebuilds/linux-arm64/ipcwire.musl.node'],
    ['darwin', 'x64', undefined, 'prebuilds/darwin-x64/ipcwire.node'],
    ['darwin', 'arm64', undefined, 'prebuilds/darwin-arm64/ipcwire.node'],
    ['win32', 'x64', undefined, 'prebuilds/win32-x64/ipcwire.node'],
    ['win32', 'arm64', undefined, 'prebuilds/win32-arm64/ipcwire.node'],
  ] as const;
  test.each(cases)('%s-%s %s', (platform, arch, libc, expected) => {
    expect(loader().addonFile('/pkg', host(platform, arch, libc, ALL))).toBe(path.join('/pkg', expected));
  });

  test('every binary the package ships is the one some host loads', () => {
    expect(cases.map((c) => c[3]).sort()).toEqual([...ALL].sort());
  });

  test('a musl system never gets the glibc binary, even when it is the only one', () => {
    const files = ['prebuilds/linux-x64/ipcwire.glibc.node'];
    expect(loader().addonFile('/pkg', host('linux', 'x64', 'musl', files))).toBeUndefined();
    expect(loader().addonFile('/pkg', host('linux', 'x64', 'glibc', files))).toBe('/pkg/prebuilds/linux-x64/ipcwire.glibc.node');
  });

  test('no binary for the platform: undefined (node-gyp-build then words the error)', () => {
    expect(loader().addonFile('/pkg', host('freebsd', 'x64', undefined, ALL))).toBeUndefined();
    expect(loader().addonFile('/pkg', host('linux', 'riscv64', 'glibc', ALL))).toBeUndefined();
  });

  test('a local build (npm rebuild) comes first, unless PREBUILDS_ONLY', () => {
    const files = [...ALL, 'build/Release/ipcwire.node'];
    expect(loader().addonFile('/pkg', host('linux', 'x64', 'musl', files))).toBe('/pkg/build/Release/ipcwire.node');
    expect(loader().addonFile('/pkg', host('linux', 'x64', 'musl', files, true))).toBe('/pkg/prebuilds/linux-x64/ipcwire.musl.node');
    expect(loader().addonFile('/pkg', host('linux', 'x64', 'glibc', ['build/Debug/ipcwire.node']))).toBe('/pkg/build/Debug/ipcwire.node');
  });
});

describe('libcOf reads the C library from Node’s report', () => {
  test('glibcVersionRuntime present: glibc; absent: musl; no report: glibc', () => {
    const { libcOf } = loader();
    expect(libcOf({ header: { glibcVersionRuntime: '2.36' } })).toBe('glibc');
    expect(libcOf({ header: {} })).toBe('musl');
    expect(libcOf(undefined)).toBe('glibc');
  });

  test.runIf(process.platform === 'linux')('this process: what its report says', () => {
    const header = (process.report!.getReport() as Any).header;
    expect(loader().currentHost().libc).toBe(header.glibcVersionRuntime ? 'glibc' : 'musl');
  });
});

// A real process whose report says musl (glibcVersionRuntime removed by a preload, as on a musl system without
// /etc/alpine-release) loads ipcwire.musl.node from a copy of the package, where the glibc file is not an addon.
test.runIf(process.platform === 'linux')('a process on "musl" loads the musl binary, one on glibc the glibc one', async () => {
  const built: string | undefined = process.env.IPCWIRE_NATIVE_PATH ?? loader().addonFile(ROOT);
  expect(built, 'a built addon to copy').toBeTruthy();
  const pkg = path.join(tmpDir(), 'pkg');
  fs.mkdirSync(path.join(pkg, 'prebuilds', `linux-${process.arch}`), { recursive: true });
  fs.cpSync(path.join(ROOT, 'dist'), path.join(pkg, 'dist'), { recursive: true });
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(pkg, 'package.json'));
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(pkg, 'node_modules'));
  fs.copyFileSync(built!, path.join(pkg, 'prebuilds', `linux-${process.arch}`, 'ipcwire.musl.node'));
  fs.writeFileSync(path.join(pkg, 'prebuilds', `linux-${process.arch}`, 'ipcwire.glibc.node'), 'not an addon');
  const preload = path.join(pkg, 'as-musl.cjs');
  fs.writeFileSync(
    preload,
    `const real = process.report.getReport.bind(process.report);
process.report.getReport = (...a) => { const r = real(...a); delete r.header.glibcVersionRuntime; return r; };\n`,
  );
  const code = `const l = require('./dist/cjs/native.js');
try { const b = l.native(); console.log(JSON.stringify({ file: l.addonFile(process.cwd()), connect: typeof b.connect })); }
catch (e) { console.log(JSON.stringify({ file: l.addonFile(process.cwd()), code: e.code, message: e.message })); }`;
  const env = { IPCWIRE_NATIVE_PATH: undefined, PREBUILDS_ONLY: '1' };

  const musl = spawnNode(['-r', preload, '-e', code], { cwd: pkg, env });
  expect((await musl.waitExit()).code, musl.stderr).toBe(0);
  expect(JSON.parse(musl.stdout)).toEqual({ file: path.join(pkg, 'prebuilds', `linux-${process.arch}`, 'ipcwire.musl.node'), connect: 'function' });

  const glibc = spawnNode(['-e', code], { cwd: pkg, env });
  expect((await glibc.waitExit()).code, glibc.stderr).toBe(0);
  const out = JSON.parse(glibc.stdout);
  expect(out.file).toBe(path.join(pkg, 'prebuilds', `linux-${process.arch}`, 'ipcwire.glibc.node'));
  expect(out.code).toBe('ERR_IPC_NATIVE_LOAD');
  expect(out.message).toContain('(Node-API 8, glibc)');
});
