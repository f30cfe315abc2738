'use strict';
// Compiles src/ts to CommonJS (dist/cjs) and writes thin ESM wrappers (dist/esm) that re-export the CommonJS
// build, so that `require` and `import` share one copy of every class (no dual-package hazard).
//
// The wrappers' named exports are read from the TypeScript program (the value exports of src/ts/index.ts), not
// by requiring the compiled module: requiring it would load the addon and create the ready-made instances at
// build time, and would make the TS build depend on the native one.
const fs = require('node:fs');
const path = require('node:path');
const ts = require('typescript');

const root = path.join(__dirname, '..');
const configPath = path.join(root, 'tsconfig.json');

function compile() {
  const { config, error } = ts.readConfigFile(configPath, ts.sys.readFile);
  if (error) fail([error]);
  const parsed = ts.parseJsonConfigFileContent(config, ts.sys, root, undefined, configPath);
  if (parsed.errors.length) fail(parsed.errors);
  fs.rmSync(path.join(root, 'dist'), { recursive: true, force: true });
  const program = ts.createProgram({ rootNames: parsed.fileNames, options: parsed.options });
  const emitted = program.emit();
  const diagnostics = [...ts.getPreEmitDiagnostics(program), ...emitted.diagnostics];
  if (diagnostics.length) fail(diagnostics);
  return program;
}

function fail(diagnostics) {
  const host = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => root, getNewLine: () => '\n' };
  process.stderr.write(ts.formatDiagnosticsWithColorAndContext(diagnostics, host));
  process.exit(1);
}

/** Names of the runtime values `file` exports (types and interfaces are left out: they have no value). */
function valueExports(program, file) {
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(file);
  if (!source) throw new Error(`build-ts: ${path.relative(root, file)} is not part of the program`);
  const moduleSymbol = checker.getSymbolAtLocation(source);
  if (!moduleSymbol) return [];
  return checker
    .getExportsOfModule(moduleSymbol)
    .filter((s) => {
      const target = s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s;
      return (target.flags & ts.SymbolFlags.Value) !== 0 && !(target.flags & ts.SymbolFlags.ConstEnum);
    })
    .map((s) => s.getName())
    .filter((n) => n !== 'default')
    .sort();
}

const program = compile();
const esm = path.join(root, 'dist', 'esm');
fs.mkdirSync(esm, { recursive: true });
const write = (name, text) => fs.writeFileSync(path.join(esm, name), text);

// `ipcwire`: every named export of the CommonJS build, plus the module object as default (what Node gives
// `import api from` a CommonJS module, so both spellings keep working).
const names = valueExports(program, path.join(root, 'src', 'ts', 'index.ts'));
write(
  'index.mjs',
  `import api from '../cjs/index.js';\n${names.length ? `export const { ${names.join(', ')} } = api;\n` : ''}export default api;\n`,
);
write('index.d.mts', `export * from '../cjs/index.js';\nimport api = require('../cjs/index.js');\nexport default api;\n`);

// `ipcwire/ipc`: `export =` one object in CommonJS, its default export in ESM.
if (fs.existsSync(path.join(root, 'src', 'ts', 'ipc.ts'))) {
  write('ipc.mjs', `import ipc from '../cjs/ipc.js';\nexport default ipc;\n`);
  write('ipc.d.mts', `import ipc = require('../cjs/ipc.js');\nexport default ipc;\n`);
}
console.log(`build-ts: dist/cjs compiled; dist/esm wraps ${names.length} named exports (${names.join(', ')})`);
