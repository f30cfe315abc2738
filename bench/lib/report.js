'use strict';
// Turns the measured cells into the results: aggregated rows with ratios, the targets, a console table, the
// SVG chart and the figures section of bench/README.md.
const fs = require('node:fs');
const os = require('node:os');
const { execFileSync } = require('node:child_process');
const { SYSTEMS, label, RAW_TO_MAIN, RAW_TO_RAW } = require('./plan');

const PAYLOAD_ORDER = ['small', '1KiB', '1MiB', '16MiB'];
const C_LABEL = label(SYSTEMS[0]);
const SCALE_LABEL = 'ipcwire sendSync';
const NET_LABEL = 'node:net + msgpackr';

/** Rows in a stable order: the C limit, ipcwire's APIs, then the alternatives. */
function labelOrder() {
  const out = [];
  for (const s of SYSTEMS) {
    for (const api of s.apis || [null]) out.push(label(s, api));
    if (s.tpApi) out.push(label(s, s.tpApi));
    if (s.tpReleaseApi) out.push(label(s, s.tpReleaseApi));
  }
  out.push(RAW_TO_MAIN, RAW_TO_RAW);
  return out;
}

function machine(extra) {
  let cpu = (os.cpus()[0] || {}).model || 'unknown';
  let nproc = os.cpus().length;
  try {
    nproc = Number(execFileSync('nproc', { encoding: 'utf8' }).trim()) || nproc;
  } catch {}
  let distro = '';
  try {
    distro = (fs.readFileSync('/etc/os-release', 'utf8').match(/^PRETTY_NAME="?([^"\n]*)/m) || [])[1] || '';
  } catch {}
  return {
    date: new Date().toISOString(),
    nproc,
    cpu,
    memory_gib: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    v8: process.versions.v8,
    kernel: `${os.type()} ${os.release()}`,
    distro,
    loadavg_end: os.loadavg().map((x) => Math.round(x * 100) / 100),
    ...extra,
  };
}

const median = (xs) => {
  const a = [...xs].sort((x, y) => x - y);
  const n = a.length;
  return n === 0 ? null : n % 2 ? a[(n - 1) / 2] : (a[n / 2 - 1] + a[n / 2]) / 2;
};
const round = (x, d = 2) => (x == null || !isFinite(x) ? null : Math.round(x * 10 ** d) / 10 ** d);

function aggregate(records, meta) {
  const groups = new Map();
  for (const r of records) {
    const key = [r.section, r.pin, r.label, r.payload || '', r.renderers || '', r.rate || ''].join('|');
    if (!groups.has(key)) groups.set(key, { section: r.section, pin: r.pin, label: r.label, payload: r.payload, renderers: r.renderers, rate: r.rate, ok: [], errors: [] });
    const g = groups.get(key);
    if (r.result) g.ok.push(r.result);
    else g.errors.push(r.error);
  }
  const order = labelOrder();
  const sortKey = (g) => [order.indexOf(g.label), PAYLOAD_ORDER.indexOf(g.payload)];
  const all = [...groups.values()].sort((a, b) => {
    const [x1, y1] = sortKey(a);
    const [x2, y2] = sortKey(b);
    return x1 - x2 || y1 - y2 || (a.rate || 0) - (b.rate || 0) || (a.renderers || 0) - (b.renderers || 0);
  });

  const latency = all.filter((g) => g.section === 'latency').map((g) => {
    const meds = g.ok.map((r) => r.median_us);
    return {
      pin: g.pin, label: g.label, payload: g.payload,
      median_us: round(median(meds)),
      p99_us: round(median(g.ok.map((r) => r.p99_us))),
      median_min_us: round(Math.min(...meds)),
      median_max_us: round(Math.max(...meds)),
      repeats: g.ok.length,
      n: g.ok.reduce((s, r) => s + (r.n || 0), 0),
      cold: g.ok.some((r) => r.cold) || undefined,
      error: g.errors[0] || undefined,
    };
  });
  for (const row of latency) {
    const c = latency.find((r) => r.pin === row.pin && r.payload === row.payload && r.label === C_LABEL);
    const net = latency.find((r) => r.pin === row.pin && r.payload === row.payload && r.label === NET_LABEL);
    row.x_c = c && row.median_us != null ? round(row.median_us / c.median_us) : null;
    row.x_c_p99 = c && row.p99_us != null ? round(row.p99_us / c.p99_us) : null;
    row.x_net = net && row.median_us != null ? round(row.median_us / net.median_us) : null;
  }

  const throughput = all.filter((g) => g.section === 'throughput').map((g) => {
    const rates = g.ok.map((r) => r.msgs_per_s);
    return {
      label: g.label, payload: g.payload,
      msgs_per_s: round(median(rates), 0),
      mb_per_s: round(median(g.ok.map((r) => r.mb_per_s)), 1),
      msgs_per_s_min: round(Math.min(...rates), 0),
      msgs_per_s_max: round(Math.max(...rates), 0),
      repeats: g.ok.length,
      error: g.errors[0] || undefined,
    };
  });
  for (const row of throughput) {
    const c = throughput.find((r) => r.payload === row.payload && r.label === C_LABEL);
    const net = throughput.find((r) => r.payload === row.payload && r.label === NET_LABEL);
    row.of_c = c && row.msgs_per_s != null ? round(row.msgs_per_s / c.msgs_per_s, 3) : null;
    row.of_net = net && row.msgs_per_s != null ? round(row.msgs_per_s / net.msgs_per_s, 3) : null;
  }

  const scale = all.filter((g) => g.section === 'scale').map((g) => ({ label: g.label, renderers: g.renderers, ...(g.ok[0] || {}), rate: g.rate, error: g.errors[0] || undefined }));
  for (const row of scale) {
    const single = scale.find((r) => r.label === row.label && r.renderers === 1 && r.rate === row.rate);
    const limit = row.label !== C_LABEL && !row.rate && scale.find((r) => r.label === C_LABEL && r.renderers === row.renderers && !r.rate);
    row.p99_x_c = limit && limit.p99_us && row.p99_us != null ? round(row.p99_us / limit.p99_us) : null;
    row.of_c = limit && limit.calls_per_s && row.calls_per_s != null ? round(row.calls_per_s / limit.calls_per_s, 3) : null;
    row.p99_x_single = single && row.p99_us != null ? round(row.p99_us / single.p99_us) : null;
    // Little's law for a closed loop: N callers each waiting for their own answer see a mean latency of
    // N ÷ throughput. Even if main kept the single renderer's rate, the mean could not drop below
    // N ÷ (single calls/s); as a multiple of the single renderer's p99, that is the floor of "p99 ×single".
    row.floor_x_single = !row.rate && single && single.calls_per_s && single.p99_us
      ? round(((row.renderers / single.calls_per_s) * 1e6) / single.p99_us) : null;
  }

  const idle = all.filter((g) => g.section === 'idle').map((g) => ({ label: g.label, ...(g.ok[0] || {}), error: g.errors[0] || undefined }));

  return { meta, latency, throughput, scale, idle, targets: targets(meta, latency, throughput, scale, idle) };
}

function targets(meta, latency, throughput, scale, idle = []) {
  const pin = meta.pins.includes('pinned') ? 'pinned' : 'unpinned';
  const lat = (l) => latency.find((r) => r.pin === pin && r.payload === 'small' && r.label === l);
  const tp = (l, p) => throughput.find((r) => r.payload === p && r.label === l);
  const c = lat(C_LABEL);
  const s = lat('ipcwire sendSync');
  const inv = lat('ipcwire invoke');
  const out = [];
  const add = (id, text, value, limit, cmp, detail) => {
    const met = value == null || !isFinite(value) ? null : cmp === '<=' ? value <= limit : value >= limit;
    out.push({ id, text, value: round(value, 3), limit, cmp, met, detail });
  };
  const ratio = (a, b) => (a != null && b ? a / b : null);
  add('sendSync-median', `sendSync median ≤ 1.5× C median (${pin}, small)`, ratio(s && s.median_us, c && c.median_us), 1.5, '<=',
    s && c ? `${s.median_us} µs vs ${c.median_us} µs` : 'missing');
  add('sendSync-p99', `sendSync p99 ≤ 2.5× C p99 (${pin}, small)`, ratio(s && s.p99_us, c && c.p99_us), 2.5, '<=',
    s && c ? `${s.p99_us} µs vs ${c.p99_us} µs` : 'missing');
  add('invoke-median', `invoke median ≤ 1.8× C median (${pin}, small)`, ratio(inv && inv.median_us, c && c.median_us), 1.8, '<=',
    inv && c ? `${inv.median_us} µs vs ${c.median_us} µs` : 'missing');
  const ws = tp('ipcwire send', 'small');
  const ns = tp(NET_LABEL, 'small');
  add('small-throughput', 'small messages delivered ≥ 1.5× node:net + msgpackr (batched)', ratio(ws && ws.msgs_per_s, ns && ns.msgs_per_s), 1.5, '>=',
    ws && ns ? `${ws.msgs_per_s} vs ${ns.msgs_per_s} msgs/s` : 'missing');
  const w1 = tp('ipcwire send', '1MiB');
  const c1 = tp(C_LABEL, '1MiB');
  add('1MiB-throughput', '1 MiB Buffers ≥ 40% of the C MB/s', ratio(w1 && w1.mb_per_s, c1 && c1.mb_per_s), 0.4, '>=',
    w1 && c1 ? `${w1.mb_per_s} vs ${c1.mb_per_s} MB/s` : 'missing');
  // Large payloads (shared memory): round trips against the C socket program, one-way MB/s against it too.
  const big = (l) => latency.find((r) => r.pin === pin && r.payload === '1MiB' && r.label === l);
  const cBig = big(C_LABEL);
  for (const [api, id] of [['sendSync', 'sendSync-1MiB'], ['invoke', 'invoke-1MiB']]) {
    const w = big(`ipcwire ${api}`);
    add(id, `${api} 1 MiB round trip ≤ 1.2× C socket (${pin})`, ratio(w && w.median_us, cBig && cBig.median_us), 1.2, '<=',
      w && cBig ? `${w.median_us} µs vs ${cBig.median_us} µs` : 'missing');
  }
  for (const p of ['1MiB', '16MiB']) {
    const w = tp('ipcwire send', p);
    const cp = tp(C_LABEL, p);
    add(`${p}-shm-throughput`, `one-way ${p} Buffers ≥ 1.5× the C socket MB/s`, ratio(w && w.mb_per_s, cp && cp.mb_per_s), 1.5, '>=',
      w && cp ? `${w.mb_per_s} vs ${cp.mb_per_s} MB/s` : 'missing');
    const wr = tp('ipcwire send, releaseShared', p);
    add(`${p}-shm-throughput-release`, `one-way ${p} Buffers, main calls releaseShared() on each, ≥ 1.5× the C socket MB/s`,
      ratio(wr && wr.mb_per_s, cp && cp.mb_per_s), 1.5, '>=', wr && cp ? `${wr.mb_per_s} vs ${cp.mb_per_s} MB/s` : 'missing');
  }
  const s1 = scale.find((r) => r.label === SCALE_LABEL && r.renderers === 1 && !r.rate);
  const s100 = scale.find((r) => r.label === SCALE_LABEL && r.renderers === 100 && !r.rate);
  const c100 = scale.find((r) => r.label === C_LABEL && r.renderers === 100 && !r.rate);
  const noFail = s100 && s100.failures === 0;
  const r100 = ratio(s100 && s100.p99_us, s1 && s1.p99_us);
  out.push({
    id: 'scale-100', text: '100 renderers: no call fails, p99 ≤ 10× single-renderer p99',
    value: round(r100, 3), limit: 10, cmp: '<=',
    met: r100 == null || !s100 ? null : noFail && r100 <= 10,
    detail: s100 && s1 && s100.p99_us != null && s1.p99_us != null
      ? `${s100.failures} failed of ${s100.calls}; p99 ${s100.p99_us} µs vs ${s1.p99_us} µs; floor ${s100.floor_x_single}× (Little's law: 100 ÷ ${s1.calls_per_s} calls/s)` +
        (c100 && c100.p99_x_single != null ? `; the C limit itself: ${c100.p99_x_single}×` : '')
      : `missing${s100 && s100.error ? `: ${s100.error}` : ''}`,
  });
  for (const n of [10, 100]) {
    const w = scale.find((r) => r.label === SCALE_LABEL && r.renderers === n && !r.rate);
    const cn = scale.find((r) => r.label === C_LABEL && r.renderers === n && !r.rate);
    add(`scale-${n}-calls`, `${n} renderers back to back: calls/s ≥ 60% of the C server's (same N)`, ratio(w && w.calls_per_s, cn && cn.calls_per_s), 0.6, '>=',
      w && cn && w.calls_per_s != null && cn.calls_per_s != null ? `${w.calls_per_s} vs ${cn.calls_per_s} calls/s` : 'missing');
  }
  const id = idle.find((r) => r.idle != null && !r.skipped);
  const idleSkip = idle.find((r) => r.skipped || r.error);
  const idleMissing = idleSkip ? `missing: ${idleSkip.skipped || idleSkip.error}` : 'missing';
  add('idle-memory', `${id ? id.idle.toLocaleString('en-US') : 'N'} idle connections: main's RSS per idle connection ÷ 16 KiB ≤ 1`,
    id ? id.rss_bytes_per_idle / 16384 : null, 1, '<=',
    id ? `${(id.rss_bytes_per_idle / 1024).toFixed(1)} KiB RSS (V8 heap ${(id.heap_bytes_per_idle / 1024).toFixed(1)} KiB) per connection; main ${id.main_rss_mib} MiB` : idleMissing);
  add('idle-p99', `${id ? id.active : 'N'} active renderers' sendSync p99 with the idle connections ≤ 2× without`, id ? id.p99_ratio : null, 2, '<=',
    id ? `${id.during.p99_us} µs vs ${id.before.p99_us} µs; ${id.failures} failed calls` : idleMissing);
  return out;
}

// ---- text -----------------------------------------------------------------------------------------------

function us(x) {
  if (x == null) return '—';
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)} s`;
  if (x >= 1e4) return `${(x / 1e3).toFixed(1)} ms`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(2)} ms`;
  if (x >= 100) return `${x.toFixed(0)} µs`;
  return `${x.toFixed(1)} µs`;
}
const num = (x) => (x == null ? '—' : Math.round(x).toLocaleString('en-US'));
const mb = (x) => (x == null ? '—' : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const times = (x) => (x == null ? '—' : `${x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)}×`);
const pct = (x) => (x == null ? '—' : `${(x * 100).toFixed(x < 0.01 ? 2 : 0)}%`);

function latencyRows(results, pin) {
  return results.latency.filter((r) => r.pin === pin).map((r) => [
    r.label, r.payload,
    r.error && r.median_us == null ? `ERROR` : us(r.median_us) + (r.cold ? '*' : ''),
    us(r.p99_us),
    r.repeats > 1 ? `${us(r.median_min_us)} – ${us(r.median_max_us)}` : '',
    times(r.x_c), times(r.x_c_p99), times(r.x_net),
  ]);
}
const LAT_HEAD = ['system', 'payload', 'median', 'p99', 'median range (repeats)', '×C median', '×C p99', '×net median'];

function throughputRows(results) {
  return results.throughput.map((r) => [
    r.label, r.payload, r.error && r.msgs_per_s == null ? 'ERROR' : num(r.msgs_per_s), mb(r.mb_per_s),
    r.repeats > 1 ? `${num(r.msgs_per_s_min)} – ${num(r.msgs_per_s_max)}` : '', pct(r.of_c), times(r.of_net),
  ]);
}
const TP_HEAD = ['system', 'payload', 'msgs/s', 'MB/s', 'msgs/s range', 'of C', '×net'];

function scaleRows(results) {
  return results.scale.map((r) => [
    r.label, r.rate ? `${r.renderers}, paced ${r.rate}/s each` : `${r.renderers}, back to back`, r.error ? 'ERROR' : num(r.calls_per_s), us(r.median_us), us(r.p99_us), times(r.p99_x_single),
    r.floor_x_single == null ? '' : times(r.floor_x_single), r.p99_x_c == null ? '' : times(r.p99_x_c),
    r.of_c == null ? '' : pct(r.of_c), r.failures == null ? '—' : `${r.failures} of ${num(r.calls)}`,
    r.main_cpu_pct == null ? '—' : `${r.main_cpu_pct}%`,
    r.main_cpu_us_per_call == null ? (r.client_cpu_us_per_call == null ? '—' : `— + ${r.client_cpu_us_per_call}`) : `${r.main_cpu_us_per_call} + ${r.renderer_cpu_us_per_call}`,
  ]);
}
const SCALE_HEAD = ['system', 'callers', 'calls/s (all)', 'median', 'p99', 'p99 ×single', 'floor ×single', 'p99 ×C (same N)', 'calls/s of C (same N)', 'failed calls', 'main CPU', 'CPU µs/call main + renderer'];

function targetRows(results) {
  return results.targets.map((t) => [t.text, t.value == null ? '—' : `${t.value}`, `${t.cmp} ${t.limit}`,
    t.met == null ? 'n/a' : t.met ? 'met' : 'MISSED', t.detail]);
}
function idleRows(results) {
  return results.idle.map((r) => r.skipped || r.error ? [r.label, 'skipped', r.skipped || r.error, '', '', '', '', '', '', ''] : [
    r.label, `${num(r.idle)} idle (${r.holders} processes), ${r.active} active`, `${(r.connect_ms / 1000).toFixed(1)} s`,
    `${(r.rss_bytes_per_idle / 1024).toFixed(1)} KiB`, `${(r.heap_bytes_per_idle / 1024).toFixed(1)} KiB`, `${r.main_rss_mib} MiB`,
    `${num(r.before.calls_per_s)} → ${num(r.during.calls_per_s)}`, `${us(r.before.p99_us)} → ${us(r.during.p99_us)}`, times(r.p99_ratio),
    `${r.failures} of ${num(r.before.calls + r.during.calls)}`,
  ]);
}
const IDLE_HEAD = ['system', 'connections', 'all connected in', 'main RSS per idle', 'V8 heap per idle', 'main RSS', 'active calls/s without → with', 'active p99 without → with', 'p99 ×without', 'failed calls'];

const TARGET_HEAD = ['target', 'ratio', 'needs', 'result', 'measured'];

function textTable(head, rows) {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => (i < 2 ? String(c).padEnd(w[i]) : String(c).padStart(w[i]))).join('  ');
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

function mdTable(head, rows) {
  const esc = (s) => String(s).replace(/\|/g, '\\|');
  return [`| ${head.map(esc).join(' | ')} |`, `|${head.map((_, i) => (i < 2 ? ' --- ' : ' ---: ')).join('|')}|`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n');
}

const GRAPH_HEAD = ['objects', 'MB', 'encode ipcwire', 'msgpackr structured', 'msgpackr plain', '×structured', '×plain',
  'decode ipcwire', 'msgpackr structured', 'msgpackr plain', '×structured', '×plain'];

/** The graph rows in wall time (`cpu` false) or in the process's CPU time (rows from before it was measured: none). */
function graphRows(results, cpu = false) {
  const k = cpu ? '_cpu' : '';
  return results.graph.filter((g) => !cpu || g.encode_cpu_ms).map((g) => {
    const enc = g[`encode${k}_ms`];
    const dec = g[`decode${k}_ms`];
    return [g.objects.toLocaleString('en-US'), (g.bytes / 1e6).toFixed(1),
      enc.ipcwire, enc.msgpackr_structured, enc.msgpackr_plain, g[`encode${k}_x_structured`], g[`encode${k}_x_plain`],
      dec.ipcwire, dec.msgpackr_structured, dec.msgpackr_plain, g[`decode${k}_x_structured`], g[`decode${k}_x_plain`]];
  });
}

const STREAM_TP_HEAD = ['total', 'chunks', 'stream MB/s', 'send MB/s', 'stream/send', 'CPU ms/GiB stream main', 'renderer', 'send main', 'renderer'];
const STREAM_LAT_HEAD = ['small invoke', 'alone median µs', 'alone p99 µs', 'during a stream median µs', 'during p99 µs', '×p99'];
const STREAM_RSS_HEAD = ['slow reader', 'chunks read', 'chunks main pulled', 'main RSS before MiB', 'max MiB', 'growth MiB'];

/** The streams section (bench/systems/streams.js): one row each for throughput, latency and the slow reader. */
function streamTables(results, fmt) {
  const st = results.streams || {};
  const out = [];
  const tp = st.throughput;
  if (tp) {
    out.push(['Streams: a streamed invoke result of 1 MiB Buffers (`for await`) against one-way `send` of the same Buffers (main → renderer, unpinned)',
      fmt(STREAM_TP_HEAD, [[`${Math.round(tp.total_bytes / 2 ** 20)} MiB`, `${Math.round(tp.chunk_bytes / 2 ** 20)} MiB`, tp.stream_mb_s, tp.send_mb_s, tp.ratio,
        tp.stream_cpu_ms_per_gib.main, tp.stream_cpu_ms_per_gib.renderer, tp.send_cpu_ms_per_gib.main, tp.send_cpu_ms_per_gib.renderer]])]);
  }
  const lat = st.latency;
  if (lat) {
    out.push(['Streams: small invoke round trips alone and while such a stream runs on the same connection',
      fmt(STREAM_LAT_HEAD, [['ping', lat.alone_median_us, lat.alone_p99_us, lat.during_median_us, lat.during_p99_us,
        Math.round((lat.during_p99_us / lat.alone_p99_us) * 10) / 10]])]);
  }
  const slow = st['slow-reader'];
  if (slow) {
    out.push([`Streams: main's memory while the renderer reads one 1 MiB chunk a second for ${slow.seconds} s (default window)`,
      fmt(STREAM_RSS_HEAD, [['1 chunk/s', slow.chunks_read, slow.chunks_pulled, slow.rss_before_mib, slow.rss_max_mib, slow.rss_growth_mib]])]);
  }
  return out;
}

const PORT_RTT_HEAD = ['round trip (small message)', 'median µs', 'p99 µs'];
const PORT_CPU_HEAD = ['messages between the renderers', 'seconds', 'messages/s', 'main CPU ms', 'main CPU ns per message'];

/** The MessagePorts section (bench/systems/ports.js): round trips, and main's CPU while the renderers talk. */
function portTables(results, fmt) {
  const pt = results.ports || {};
  const out = [];
  const rtt = pt.rtt;
  if (rtt) {
    out.push([`MessagePorts: renderer↔renderer round trip over a port against renderer→main invoke (unpinned; port/invoke median ${rtt.ratio}×)`,
      fmt(PORT_RTT_HEAD, [['port (renderer A → B → A)', rtt.port_median_us, rtt.port_p99_us], ['invoke (renderer → main → renderer)', rtt.invoke_median_us, rtt.invoke_p99_us]])]);
  }
  const cpu = pt['main-cpu'];
  if (cpu) {
    out.push(["MessagePorts: main's CPU while two renderers exchange messages over a port it placed",
      fmt(PORT_CPU_HEAD, [[cpu.messages.toLocaleString('en-US'), cpu.seconds, cpu.messages_per_s, cpu.main_cpu_ms, cpu.main_cpu_ns_per_message]])]);
  }
  return out;
}

const ZC_HEAD = ['round trip (unpinned)', 'median', 'p99', 'n', '×small invoke (median)'];

/** The zero-copy section (bench/systems/zerocopy.js): invoke with a 64 MiB allocShared Buffer against a small invoke. */
function zeroCopyTables(results, fmt) {
  const z = (results.zerocopy || {}).rtt;
  if (!z) return [];
  const how = z.shared ? 'through the pool, zero copy' : 'shared memory off: through the socket';
  return [[`Zero copy: invoke with a ${z.mib} MiB allocShared Buffer (${how}; main answers its length) against a small invoke, same connection, alternating rounds`,
    fmt(ZC_HEAD, [
      ['small invoke', us(z.small.median_us), us(z.small.p99_us), num(z.small.n), '1×'],
      [`invoke, ${z.mib} MiB allocShared`, us(z.big.median_us), us(z.big.p99_us), num(z.big.n), times(z.ratio)],
      ...(z.bigReleased ? [
        [`invoke, ${z.mib} MiB allocShared, main calls releaseShared()`, us(z.bigReleased.median_us), us(z.bigReleased.p99_us), num(z.bigReleased.n), times(z.bigReleasedRatio)],
        [`invoke, ${z.mib / 2} MiB allocShared, main calls releaseShared()`, us(z.halfReleased.median_us), us(z.halfReleased.p99_us), num(z.halfReleased.n), times(z.halfReleasedRatio)],
      ] : []),
    ])]];
}

/** The zero-copy target, from the zero-copy section's row. */
function zeroCopyTarget(zerocopy) {
  const z = (zerocopy || {}).rtt;
  const value = z && z.shared ? z.ratio : null;
  return {
    id: 'zero-copy-64MiB', text: '64 MiB zero-copy round trip (allocShared) within 3× a small round trip (unpinned)',
    value: value == null ? null : round(value, 3), limit: 3, cmp: '<=', met: value == null ? null : value <= 3,
    detail: z ? `${z.big.median_us} µs vs ${z.small.median_us} µs${z.shared ? '' : ' (shared memory off: not zero copy)'}` : 'missing',
  };
}

function sections(results, fmt) {
  const out = [];
  for (const pin of results.meta.pins) {
    out.push([`Round-trip latency, ${pin === 'pinned' ? 'every process pinned to CPU 0 (taskset -c 0)' : 'unpinned'}`, fmt(LAT_HEAD, latencyRows(results, pin))]);
  }
  if (results.throughput.length) out.push(['One-way throughput (unpinned)', fmt(TP_HEAD, throughputRows(results))]);
  if (results.scale.length) out.push(['Scale: N renderers doing sendSync at once against one main (unpinned)', fmt(SCALE_HEAD, scaleRows(results))]);
  if (results.idle && results.idle.length) out.push(['Idle connections: silent renderers held open against one main, active renderers doing sendSync meanwhile (unpinned)', fmt(IDLE_HEAD, idleRows(results))]);
  if (results.graph && results.graph.length) out.push(['Big object graphs: one message of N {id, name, tags} objects, ms (median), ipcwire against msgpackr alone in the same process', fmt(GRAPH_HEAD, graphRows(results))]);
  if (results.graph && results.graph.some((g) => g.encode_cpu_ms)) {
    out.push(['Big object graphs, the same calls in CPU time of the process (all its threads), ms (median)', fmt(GRAPH_HEAD, graphRows(results, true))]);
  }
  out.push(...streamTables(results, fmt));
  out.push(...portTables(results, fmt));
  out.push(...zeroCopyTables(results, fmt));
  out.push(['Targets (ratios from this run)', fmt(TARGET_HEAD, targetRows(results))]);
  return out;
}

function table(results) {
  const m = results.meta;
  const head = `ipcwire bench (${m.plan}) — ${m.date} — ${m.nproc} × ${m.cpu}, Node ${m.node}, ${m.durationS} s, load ${m.loadavg_start.join('/')} → ${m.loadavg_end.join('/')}`;
  const sub = `ipcwire: ${m.ipcwire}`;
  const body = sections(results, textTable).map(([t, s]) => `\n${t}\n${s}`).join('\n');
  const foot = [
    '\n* a single cold round trip: one took longer than the cell\'s time cap',
    ...m.skipped.map((s) => `skipped: ${s.system} ${s.payload} — ${s.why}`),
    ...m.notes.map((n) => `note: ${n}`),
  ].join('\n');
  return head + '\n' + sub + '\n' + body + '\n' + foot;
}

// ---- README ---------------------------------------------------------------------------------------------

function readmeFigures(results) {
  const m = results.meta;
  const lines = [
    `Measured ${m.date.slice(0, 16).replace('T', ' ')} UTC by \`npm run bench\` (${m.plan} run, ${m.durationS} s, ${m.repeats} repeats of the small/1 KiB latency and small/1 MiB throughput cells, 1 of the others).`,
    `ipcwire measured: ${m.ipcwire}.`,
    `Machine: ${m.nproc} × ${m.cpu}, ${m.memory_gib} GiB, ${m.kernel}${m.distro ? `, ${m.distro}` : ''}; Node ${m.node} (V8 ${m.v8}).`,
    `Load average at start ${m.loadavg_start.join(' / ')}, at end ${m.loadavg_end.join(' / ')} (1/5/15 min).`,
    '',
  ];
  for (const [title, t] of sections(results, mdTable)) lines.push(`#### ${title}`, '', t, '');
  lines.push('`*` a single cold round trip (it alone took longer than the cell\'s time cap).');
  for (const s of m.skipped) lines.push(`Skipped: ${s.system}, ${s.payload} — ${s.why}.`);
  for (const n of m.notes) lines.push(`Note: ${n}.`);
  return lines.join('\n');
}

function updateReadme(file, results) {
  const begin = '<!-- FIGURES:BEGIN (written by bench/run.js) -->';
  const end = '<!-- FIGURES:END -->';
  let text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : `# Benchmarks\n\n${begin}\n${end}\n`;
  const a = text.indexOf(begin);
  const b = text.indexOf(end);
  if (a < 0 || b < a) text += `\n${begin}\n${end}\n`;
  const i = text.indexOf(begin) + begin.length;
  const j = text.indexOf(end);
  text = text.slice(0, i) + '\n' + readmeFigures(results) + '\n' + text.slice(j);
  fs.writeFileSync(file, text);
}

// ---- SVG ------------------------------------------------------------------------------------------------

const escXml = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * One horizontal bar panel. items: {label, value, whisker?, text, highlight}. Linear scale from 0; the value
 * is also written next to each bar, so bars far below the longest stay readable.
 */
function panel(x, y, width, title, items, log = false) {
  const rowH = 18;
  const labelW = 250;
  const barW = width - labelW - 130;
  const max = Math.max(...items.map((it) => Math.max(it.value || 0, it.whisker || 0)), 1e-9);
  // Log scale (latency): from the decade below the smallest value, with a gridline per decade.
  const lo = log ? 10 ** Math.floor(Math.log10(Math.min(...items.map((it) => it.value || max)))) : 0;
  const hi = log ? 10 ** Math.ceil(Math.log10(max)) : max;
  const sx = (v) => (log ? (Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) : v / hi) * barW;
  const parts = [`<text x="${x}" y="${y + 14}" font-size="13" font-weight="bold">${escXml(title)}</text>`];
  if (log) {
    const bottom = y + 24 + items.length * rowH;
    for (let d = lo; d <= hi * 1.0001; d *= 10) {
      const gx = (x + labelW + sx(d)).toFixed(1);
      parts.push(`<line x1="${gx}" y1="${y + 20}" x2="${gx}" y2="${bottom}" stroke="#dee2e6"/>`);
      parts.push(`<text x="${gx}" y="${bottom + 10}" font-size="9" fill="#868e96" text-anchor="middle">${d < 1e3 ? `${d} µs` : d < 1e6 ? `${d / 1e3} ms` : `${d / 1e6} s`}</text>`);
    }
  }
  items.forEach((it, k) => {
    const yy = y + 24 + k * rowH;
    const w = it.value ? Math.max(1, sx(it.value)) : 0;
    const fill = it.highlight ? '#d9480f' : it.baseline ? '#495057' : '#4c6ef5';
    parts.push(`<text x="${x + labelW - 6}" y="${yy + 12}" font-size="11" text-anchor="end">${escXml(it.label)}</text>`);
    if (it.value) parts.push(`<rect x="${x + labelW}" y="${yy + 2}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="${fill}"/>`);
    if (it.whisker) {
      const wx = x + labelW + sx(it.whisker);
      parts.push(`<line x1="${x + labelW + w}" y1="${yy + rowH / 2 - 1}" x2="${wx.toFixed(1)}" y2="${yy + rowH / 2 - 1}" stroke="#868e96"/>`);
      parts.push(`<line x1="${wx.toFixed(1)}" y1="${yy + 4}" x2="${wx.toFixed(1)}" y2="${yy + rowH - 6}" stroke="#868e96"/>`);
    }
    const tx = x + labelW + Math.max(w, it.whisker ? sx(it.whisker) : 0) + 5;
    parts.push(`<text x="${Math.min(tx, x + width - 125).toFixed(1)}" y="${yy + 12}" font-size="10" fill="#212529">${escXml(it.text)}</text>`);
  });
  return { svg: parts.join('\n'), height: 30 + items.length * rowH + (log ? 26 : 14) };
}

function svg(results) {
  const width = 860;
  const panels = [];
  const pin = results.meta.pins.includes('pinned') ? 'pinned' : 'unpinned';
  const isOurs = (l) => l.startsWith('ipcwire');
  for (const payload of ['small', '1KiB']) {
    const rows = results.latency.filter((r) => r.pin === pin && r.payload === payload && r.median_us != null);
    if (rows.length) {
      panels.push([`Round trip, ${payload === 'small' ? 'small message' : '1 KiB Buffer'}, ${pin}: median (bar), p99 (whisker); log scale, lower is better`,
        rows.map((r) => ({ label: r.label, value: r.median_us, whisker: r.p99_us, text: `${us(r.median_us)} / ${us(r.p99_us)}`, highlight: isOurs(r.label), baseline: r.label === C_LABEL })), true]);
    }
  }
  const tpPanel = (payload, title, field, fmt) => {
    const rows = results.throughput.filter((r) => r.payload === payload && r[field] != null);
    if (rows.length) panels.push([title, rows.map((r) => ({ label: r.label, value: r[field], text: fmt(r[field]), highlight: isOurs(r.label), baseline: r.label === C_LABEL }))]);
  };
  tpPanel('small', 'Small messages one way, msgs/s — higher is better (synckit: sync round trips)', 'msgs_per_s', num);
  tpPanel('1MiB', '1 MiB Buffers one way, MB/s — higher is better', 'mb_per_s', (v) => `${mb(v)} MB/s`);
  tpPanel('16MiB', '16 MiB Buffers one way, MB/s — higher is better', 'mb_per_s', (v) => `${mb(v)} MB/s`);
  const sc = results.scale.filter((r) => r.p99_us != null && !r.rate && r.label === SCALE_LABEL);
  if (sc.length) {
    panels.push(['sendSync scale: aggregate calls/s', sc.map((r) => ({ label: `${r.renderers} renderer${r.renderers > 1 ? 's' : ''}`, value: r.calls_per_s, text: `${num(r.calls_per_s)} calls/s`, highlight: true }))]);
    panels.push(['sendSync scale: p99 per call, µs — lower is better', sc.map((r) => ({ label: `${r.renderers} renderer${r.renderers > 1 ? 's' : ''}`, value: r.p99_us, text: us(r.p99_us), highlight: true }))]);
  }
  const m = results.meta;
  let y = 50;
  const body = [];
  for (const [title, items, log] of panels) {
    const p = panel(20, y, width - 40, title, items, log);
    body.push(p.svg);
    y += p.height;
  }
  const header = `<text x="20" y="24" font-size="15" font-weight="bold">ipcwire benchmarks — ${escXml(m.date.slice(0, 10))}, ${m.nproc} × ${escXml(m.cpu)}, Node ${escXml(m.node)}</text>
<text x="20" y="40" font-size="11" fill="#495057">orange: ipcwire · dark grey: C ping-pong (the limit) · blue: alternatives · same run, ${escXml(m.plan)} plan</text>`;
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y + 10}" viewBox="0 0 ${width} ${y + 10}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">
<rect width="100%" height="100%" fill="#ffffff"/>
${header}
${body.join('\n')}
</svg>
`;
}

module.exports = { machine, aggregate, table, svg, updateReadme, readmeFigures, zeroCopyTarget };
