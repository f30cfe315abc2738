/**
 * The live inspector's main side: with `new IpcMain({ inspect: true })` (or IPCWIRE_INSPECT=1), a same-user
 * client that says `inspect` in its handshake (`npx ipcwire inspect <address>`) is not a renderer: it receives
 * a snapshot of this main's traffic every interval (per channel: count, bytes, p50/p99 latency, errors; and a
 * tail of recent messages with previews of their arguments cut at a size). Numbers come from the tracing
 * publications, so an inspected main pays what tracing costs, and nothing when inspection is off.
 */
import * as dc from 'node:diagnostics_channel';
import { inspect as show } from 'node:util';
import { TRACE_CHANNELS, type IpcTraceMessage } from './trace';

/** Latencies kept per channel for the percentiles (the most recent ones). */
const LATENCY_WINDOW = 1024;
/** Recent messages kept for the tail. */
const TAIL = 20;

export interface ChannelStats {
  channel: string;
  count: number;
  bytes: number;
  errors: number;
  p50: number | null;
  p99: number | null;
}

export interface TailEntry {
  time: number;
  direction: 'in' | 'out';
  peerId: number | null;
  kind: string;
  channel: string;
  bytes: number;
  preview: string;
}

export interface InspectSnapshot {
  pid: number;
  address: string | null;
  renderers: number;
  channels: ChannelStats[];
  tail: TailEntry[];
}

interface Acc {
  count: number;
  bytes: number;
  errors: number;
  latencies: number[];
  next: number;
}

export class Inspector {
  private readonly stats = new Map<string, Acc>();
  private readonly tail: TailEntry[] = [];
  private readonly subs: Array<[string, (m: unknown) => void]> = [];
  private readonly clients = new Set<{ push(snapshot: InspectSnapshot): void }>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    /** Whether a trace record is about one of this main's renderers (not another IpcMain's, not an inspector). */
    private readonly ours: (peerId: number | null) => boolean,
    private readonly describe: () => { address: string | null; renderers: number },
    readonly previewChars = 120,
  ) {}

  /** Starts collecting (idempotent). */
  start(): void {
    if (this.subs.length) return;
    const on = (name: string, fn: (m: IpcTraceMessage) => void) => {
      const sub = (m: unknown) => {
        // main's own side only (a renderer in the same process publishes too)
        const t = m as IpcTraceMessage;
        if (t.side === 'main' && this.ours(t.peerId)) fn(t);
      };
      dc.subscribe(name, sub);
      this.subs.push([name, sub]);
    };
    // A call is counted once, at its end (with its latency and its reply's bytes; its request's bytes at its
    // start); a message when it passes.
    on(TRACE_CHANNELS.handleStart, (m) => this.addBytes(m));
    on(TRACE_CHANNELS.invokeStart, (m) => this.addBytes(m));
    on(TRACE_CHANNELS.handleEnd, (m) => this.count(m, m.bytes, m.durationMs));
    on(TRACE_CHANNELS.invokeEnd, (m) => {
      this.count(m, m.bytes, m.durationMs);
      this.addTail(m, '');
    });
    on(TRACE_CHANNELS.message, (m) => this.count(m, m.bytes, undefined));
    on(TRACE_CHANNELS.send, (m) => {
      this.count(m, m.bytes, undefined);
      this.addTail(m, '');
    });
  }

  /** Stops collecting and disconnects nothing (clients go with their connections). Idempotent. */
  stop(): void {
    for (const [name, fn] of this.subs) dc.unsubscribe(name, fn);
    this.subs.length = 0;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** A message from a renderer, with its arguments: the tail shows a preview of them. */
  incoming(peerId: number, kind: string, channel: string, bytes: number, args: unknown[]): void {
    let preview = show(args, { depth: 2, breakLength: Infinity, maxArrayLength: 10, maxStringLength: this.previewChars });
    if (preview.length > this.previewChars) preview = preview.slice(0, this.previewChars - 1) + '…';
    this.addTail({ direction: 'in', peerId, kind: kind as IpcTraceMessage['kind'], channel, bytes } as IpcTraceMessage, preview);
  }

  /** Adds a client that gets a snapshot every `intervalMs`; returns its remover. */
  attach(client: { push(snapshot: InspectSnapshot): void }, intervalMs = 500): () => void {
    this.clients.add(client);
    client.push(this.snapshot());
    if (!this.timer) {
      this.timer = setInterval(() => {
        const snap = this.snapshot();
        for (const c of this.clients) c.push(snap);
      }, intervalMs);
      this.timer.unref();
    }
    return () => {
      this.clients.delete(client);
      if (this.clients.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = null;
      }
    };
  }

  snapshot(): InspectSnapshot {
    const channels: ChannelStats[] = [];
    for (const [channel, a] of this.stats) {
      const sorted = [...a.latencies].sort((x, y) => x - y);
      const pct = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : null);
      channels.push({ channel, count: a.count, bytes: a.bytes, errors: a.errors, p50: pct(0.5), p99: pct(0.99) });
    }
    channels.sort((x, y) => y.count - x.count || (x.channel < y.channel ? -1 : 1));
    const { address, renderers } = this.describe();
    return { pid: process.pid, address, renderers, channels, tail: [...this.tail] };
  }

  private acc(channel: string): Acc {
    let a = this.stats.get(channel);
    if (!a) this.stats.set(channel, (a = { count: 0, bytes: 0, errors: 0, latencies: [], next: 0 }));
    return a;
  }

  private addBytes(m: IpcTraceMessage): void {
    this.acc(m.channel).bytes += m.bytes;
  }

  private count(m: IpcTraceMessage, bytes: number, latency: number | undefined): void {
    const a = this.acc(m.channel);
    a.count++;
    a.bytes += bytes;
    if (m.error) a.errors++;
    if (latency !== undefined) {
      if (a.latencies.length < LATENCY_WINDOW) a.latencies.push(latency);
      else a.latencies[a.next++ % LATENCY_WINDOW] = latency;
    }
  }

  private addTail(m: IpcTraceMessage, preview: string): void {
    this.tail.push({ time: Date.now(), direction: m.direction, peerId: m.peerId, kind: m.kind, channel: m.channel, bytes: m.bytes, preview });
    if (this.tail.length > TAIL) this.tail.shift();
  }
}
