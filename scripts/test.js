#!/usr/bin/env node
'use strict';
// The test command (`npm test`, README). Builds what is missing or stale (the addon with node-gyp, the
// TypeScript with scripts/build-ts.js), runs vitest once with a readable reporter and a JSON one, and prints as
// its LAST line `N passed, N failed` (`, N skipped` when some were skipped). Exits non-zero when anything failed
// or when no test ran.
//
//   node scripts/test.js [vitest arguments…]      e.g. `npm test -- test/framing.test.ts`
//
// The compile-time tests (test/types: typed channel maps, the public .d.ts) are `tsc --noEmit -p test/types`
// against the built declarations, counted as one test; they run with the whole suite (no arguments) or when an
// argument names test/types (`npm test -- test/types` runs only them).
//
// Environment: IPCWIRE_NATIVE_PATH (a specific addon build: nothing native is built), IPCWIRE_TEST_NO_BUILD=1
// (build nothing), IPCWIRE_TEST_REPORT (where the JSON report goes; default .tmp/vitest-report.json).
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { ensureNative, ensureTs } = require('./ensure-built');

const root = path.join(__dirname, '..');

/** Counts from vitest's JSON report. A test file that failed before running any test counts as one failure. */
function count(reportPath, vitestStatus) {
  const c = { passed: 0, failed: 0, skipped: 0 };
  let report;
  try {
    report = JSON.parse(fs.readFileSync(reportPath, 'utf8'));
  } catch (err) {
    console.error(`test: no readable vitest report at ${reportPath} (${err.message})`);
    c.failed = 1;
    return c;
  }
  c.passed = report.numPassedTests || 0;
  c.failed = report.numFailedTests || 0;
  c.skipped = (report.numPendingTests || 0) + (report.numTodoTests || 0);
  for (const file of report.testResults || []) {
    if (file.status === 'failed' && !(file.assertionResults || []).some((a) => a.status === 'failed')) {
      console.error(`test: ${path.relative(root, file.name)} failed outside any test: ${String(file.message).split('\n')[0]}`);
      c.failed += 1;
    }
  }
  if (vitestStatus !== 0 && c.failed === 0 && c.passed > 0) {
    // Unhandled errors, a timed-out teardown, a crashed worker: vitest fails the run although every test passed.
    console.error(`test: vitest exited with status ${vitestStatus} although no test failed (unhandled error?)`);
    c.failed = 1;
  }
  return c;
}

/** `tsc --noEmit -p test/types`: 1 passed or 1 failed (its diagnostics shown). */
function typeTests() {
  const tsc = path.join(path.dirname(require.resolve('typescript/package.json', { paths: [root] })), 'bin', 'tsc');
  console.log('> tsc --noEmit -p test/types');
  const r = spawnSync(process.execPath, [tsc, '--noEmit', '-p', path.join('test', 'types')], { cwd: root, stdio: 'inherit' });
  const ok = r.status === 0;
  console.log(`test/types: ${ok ? 'compile-time tests passed' : 'compile-time tests FAILED'}`);
  return ok ? { passed: 1, failed: 0 } : { passed: 0, failed: 1 };
}

function main() {
  const noBuild = process.env.IPCWIRE_TEST_NO_BUILD === '1';
  let buildFailures = 0;
  if (!noBuild) {
    if (!ensureNative()) buildFailures += 1;
    if (!ensureTs()) buildFailures += 1;
  }
  const args = process.argv.slice(2);
  const isTypesArg = (a) => /(^|\/)test\/types\/?$|^test\/types\//.test(a);
  const types = args.length === 0 || args.some(isTypesArg) ? typeTests() : { passed: 0, failed: 0 };
  const vitestArgs = args.filter((a) => !isTypesArg(a));
  if (args.length > 0 && vitestArgs.length === 0) {
    console.log(`${types.passed} passed, ${types.failed + buildFailures} failed`);
    process.exitCode = types.failed + buildFailures > 0 ? 1 : 0;
    return;
  }
  const reportPath = path.resolve(root, process.env.IPCWIRE_TEST_REPORT || path.join('.tmp', 'vitest-report.json'));
  fs.mkdirSync(path.dirname(reportPath), { recursive: true });
  fs.rmSync(reportPath, { force: true });

  const vitest = path.join(path.dirname(require.resolve('vitest/package.json', { paths: [root] })), 'vitest.mjs');
  const vitestCmd = [vitest, 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${reportPath}`];
  console.log(`> vitest run ${vitestArgs.join(' ')}`.trimEnd());
  const r = spawnSync(process.execPath, [...vitestCmd, ...vitestArgs], { cwd: root, stdio: 'inherit' });
  const status = r.status === null ? 1 : r.status;
  if (r.signal) console.error(`test: vitest was killed by ${r.signal}`);

  const c = count(reportPath, status);
  c.failed += buildFailures + types.failed;
  c.passed += types.passed;
  if (c.passed + c.failed === 0) console.error('test: no test ran');
  console.log(`${c.passed} passed, ${c.failed} failed${c.skipped ? `, ${c.skipped} skipped` : ''}`);
  process.exitCode = c.failed > 0 || c.passed === 0 ? 1 : 0;
}

main();
