'use strict';
// Runs the addon's plain-JS tests, each in its own process (they touch process and thread lifetime).
// Under a sanitizer build (IPCWIRE_NATIVE_PATH + LD_PRELOAD, see scripts/asan-build.sh) a test also
// fails on any ASan/UBSan error, and on LeakSanitizer reports whose stack runs through src/native/
// (Node itself leaves some allocations at exit).
//   node test/native/js/run.js [name...]     prints "native-js: N passed, N failed"
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const fs = require('node:fs');

const all = ['errors', 'e2e', 'frames', 'call', 'worker', 'server'];
const names = process.argv.slice(2).length ? process.argv.slice(2) : all;
let passed = 0, failed = 0;
for (const name of names) {
  const file = path.join(__dirname, name + '.js');
  if (!fs.existsSync(file)) continue;
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 300000, env: process.env });
  const out = (r.stdout || '') + (r.stderr || '');
  const problems = [];
  if (r.status !== 0) problems.push(`exit ${r.status}${r.signal ? ' ' + r.signal : ''}`);
  if (/ERROR: AddressSanitizer|runtime error:/.test(out)) problems.push('sanitizer error');
  for (const block of out.split(/\n(?=(?:Direct|Indirect) leak)/)) {
    if (/^(Direct|Indirect) leak/.test(block) && /src\/native\//.test(block.split('\n\n')[0])) {
      problems.push('leak through src/native');
      break;
    }
  }
  if (problems.length === 0 && /Direct leak/.test(out)) {
    // Only Node/V8's own allocations leaked: tolerated (RELIABILITY.md), but not when it is the only output.
  }
  const line = out.split('\n').find((l) => l.startsWith('{"test"')) || '';
  if (problems.length) {
    failed++;
    console.log(`FAIL ${name} (${Date.now() - t0} ms): ${problems.join(', ')}`);
    console.log(out.split('\n').slice(0, 60).join('\n'));
  } else {
    passed++;
    console.log(`ok   ${name} (${Date.now() - t0} ms) ${line}`);
  }
}
console.log(`native-js: ${passed} passed, ${failed} failed`);
process.exitCode = failed ? 1 : 0;
