#!/usr/bin/env node
/**
 * `npx ipcwire inspect <address> [--interval ms] [--count n] [--preview chars]`: attaches to a running main that
 * allows it (`new IpcMain({ inspect: true })` or IPCWIRE_INSPECT=1, same user) and prints, at each snapshot, a
 * table per channel (count, bytes, p50/p99 latency, errors) and the most recent messages with previews.
 */
import { IpcRenderer } from './renderer';
import type { InspectSnapshot } from './inspector';

const USAGE = `usage: ipcwire inspect <address> [--count n] [--preview chars]
  Attaches to a main started with new IpcMain({ inspect: true }) (or IPCWIRE_INSPECT=1), same user only,
  and prints its traffic per channel and the most recent messages, twice a second.
  --count n        exit after n snapshots (default: run until main goes or Ctrl-C)
  --preview chars  cut payload previews at this many characters (default 60)`;

function fail(message: string): never {
  process.stderr.write(`ipcwire: ${message}\n`);
  process.exit(2);
}

function num(v: number | null, digits: number): string {
  return v === null ? '-' : v.toFixed(digits);
}

function bytes(n: number): string {
  if (n < 10 * 1024) return `${n} B`;
  if (n < 10 * 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function render(s: InspectSnapshot, previewChars: number): string {
  const lines: string[] = [];
  lines.push(`ipcwire main pid ${s.pid} at ${s.address ?? '?'}: ${s.renderers} renderer(s), ${new Date().toISOString()}`);
  const rows = [['channel', 'count', 'bytes', 'p50 ms', 'p99 ms', 'errors']];
  for (const c of s.channels) rows.push([c.channel, String(c.count), bytes(c.bytes), num(c.p50, 3), num(c.p99, 3), String(c.errors)]);
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) lines.push(r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  '));
  lines.push('recent:');
  for (const t of s.tail) {
    const time = new Date(t.time).toISOString().slice(11, 23);
    let preview = t.preview;
    if (preview.length > previewChars) preview = preview.slice(0, previewChars - 1) + '…';
    lines.push(`  ${time} ${t.direction === 'in' ? '<-' : '->'} peer ${t.peerId} ${t.kind} ${t.channel} ${bytes(t.bytes)}${preview ? ' ' + preview : ''}`);
  }
  return lines.join('\n');
}

function main(argv: string[]): void {
  if (argv[0] !== 'inspect' || !argv[1] || argv[1].startsWith('-')) fail(`${argv[0] ? `unknown command '${argv.join(' ')}'\n` : ''}${USAGE}`);
  const address = argv[1];
  let count = Infinity;
  let previewChars = 60;
  for (let i = 2; i < argv.length; i += 2) {
    const value = Number(argv[i + 1]);
    if (!Number.isInteger(value) || value <= 0) fail(`${argv[i]} needs a positive integer\n${USAGE}`);
    if (argv[i] === '--count') count = value;
    else if (argv[i] === '--preview') previewChars = value;
    else fail(`unknown option ${argv[i]}\n${USAGE}`);
  }
  const r = new IpcRenderer({ address, inspect: true });
  let seen = 0;
  r.on('ipcwire:inspect', (_event, snapshot: InspectSnapshot) => {
    process.stdout.write(`${render(snapshot, previewChars)}\n\n`);
    if (++seen >= count) r.close();
  });
  r.link.on('disconnect', (err: (Error & { code?: string }) | null) => {
    if (seen < count) {
      process.stderr.write(`ipcwire: ${err ? `${err.code ? `${err.code}: ` : ''}${err.message}` : 'main went away'}\n`);
      process.exitCode = 1;
    }
    r.removeAllListeners('ipcwire:inspect');
  });
  try {
    r.connect();
  } catch (err) {
    fail(`cannot attach to ${address}: ${(err as Error).message}`);
  }
}

main(process.argv.slice(2));
