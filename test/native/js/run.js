'use strict';
// Runs the addon's plain-JS tests, each in its own process (they touch process and thread lifetime).
// Under a sanitizer build (IPCWIRE_NATIVE_PATH + LD_PRELOAD, see scripts/asan-build.sh) a test also
// fails on any ASan/UBSan error, and on LeakSanitizer reports whose stack runs through src/native/
// (Node itself leaves some allocations at exit).
//   node test/native/js/run.js [name...]     prints "native-js: N passed, N failed" (", N skipped")
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const fs = require('node:fs');
const { childStatus, ourLeaks } = require('./sanitizer');

const all = ['errors', 'eacces', 'e2e', 'frames', 'call', 'worker', 'server', 'shm', 'handles'];
const names = process.argv.slice(2).length ? process.argv.slice(2) : all;
let passed = 0, failed = 0, skipped = 0;
// Leak reports exit with 23 (not ASan's default 1), so they are told apart from a failing test.
const env = { ...process.env };
if (env.LD_PRELOAD && /asan/.test(env.LD_PRELOAD)) env.ASAN_OPTIONS = [env.ASAN_OPTIONS, 'exitcode=23'].filter(Boolean).join(':');
for (const name of names) {
  const file = path.join(__dirname, name + '.js');
  if (!fs.existsSync(file)) continue;
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 300000, env, maxBuffer: 256 * 1024 * 1024 });
  const out = (r.stdout || '') + (r.stderr || '');
  const problems = [];
  if (childStatus(r.status, out) !== 0) problems.push(`exit ${r.status}${r.signal ? ' ' + r.signal : ''}`);
  if (/ERROR: AddressSanitizer|runtime error:/.test(out)) problems.push('sanitizer error');
  const leaks = ourLeaks(out);
  if (leaks.length) problems.push(`${leaks.length} leak(s) allocated by src/native`);
  const line = out.split('\n').find((l) => l.startsWith('{"test"')) || '';
  if (problems.length) {
    failed++;
    console.log(`FAIL ${name} (${Date.now() - t0} ms): ${problems.join(', ')}`);
    console.log((leaks.length ? leaks.join('\n') : out).split('\n').slice(0, 80).join('\n'));
  } else if (/"skipped":/.test(line)) {
    // A test that cannot run here says why ({"test":…,"skipped":"reason"}); it is counted apart, never as a pass.
    skipped++;
    console.log(`skip ${name}: ${JSON.parse(line).skipped}`);
  } else {
    passed++;
    console.log(`ok   ${name} (${Date.now() - t0} ms) ${line}`);
  }
}
console.log(`native-js: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exitCode = failed ? 1 : 0;
