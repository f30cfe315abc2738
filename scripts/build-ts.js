'use strict';
// Compiles src/ts to CommonJS (dist/cjs) and writes thin ESM wrappers (dist/esm) that re-export the CommonJS
// build, so that `require` and `import` share one copy of every class (no dual-package hazard).
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
fs.rmSync(path.join(root, 'dist'), { recursive: true, force: true });
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.json')], {
  stdio: 'inherit',
  cwd: root,
});

const esm = path.join(root, 'dist', 'esm');
fs.mkdirSync(esm, { recursive: true });
// Named exports of the main entry, read from the compiled module so the wrapper never drifts.
const api = require(path.join(root, 'dist', 'cjs', 'index.js'));
const names = Object.keys(api).filter((n) => n !== 'default' && n !== '__esModule');
fs.writeFileSync(
  path.join(esm, 'index.mjs'),
  `import api from '../cjs/index.js';\nexport const { ${names.join(', ')} } = api;\nexport default api;\n`,
);
fs.writeFileSync(path.join(esm, 'index.d.mts'), `export * from '../cjs/index.js';\nimport api = require('../cjs/index.js');\nexport default api;\n`);
fs.writeFileSync(path.join(esm, 'ipc.mjs'), `import ipc from '../cjs/ipc.js';\nexport default ipc;\n`);
fs.writeFileSync(path.join(esm, 'ipc.d.mts'), `import ipc = require('../cjs/ipc.js');\nexport default ipc;\n`);
