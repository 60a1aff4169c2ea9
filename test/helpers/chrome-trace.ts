import { closeSync, openSync, readSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { writePerfetto } from '../../reports/perfetto.js';

/*
 * A streaming reader and checker of Chrome trace-event JSON (object form),
 * for files too large to JSON.parse whole. Perfetto's own importer cannot be
 * installed from the registries this project reaches, so this checks what
 * that importer needs (reports/perfetto.ts lists it):
 *  - top-level keys displayTimeUnit, otherData, traceEvents, in that order;
 *  - every event starts with name, ph, ts and holds no array;
 *  - per thread, ts never goes back (metadata aside);
 *  - B/E balanced and nested per thread, X slices inside their parent;
 *  - each flow id has one flow_out and one flow_in, on X or B events, the
 *    in no earlier than the out; bind_id a number;
 *  - every thread used is named by thread_name metadata.
 * The parse itself is by characters, never by lines: a value is whatever
 * JSON says it is. perfettoText collects a small session's export whole.
 */

/** The whole Perfetto JSON of a session as one string (small sessions in tests; files stream). */
export function perfettoText(...args: Parameters<typeof writePerfetto> extends [...infer A, unknown] ? A : never): string {
  const parts: string[] = [];
  writePerfetto(...args, (chunk) => parts.push(chunk));
  return parts.join('');
}

/** Characters of a file, read in chunks. */
class CharReader {
  private text = '';
  private pos = 0;
  private eof = false;
  private readonly buf = Buffer.alloc(1 << 20);
  private readonly decoder = new StringDecoder('utf8');

  constructor(private readonly fd: number) {}

  private fill(): boolean {
    if (this.eof) return false;
    const n = readSync(this.fd, this.buf, 0, this.buf.length, null);
    if (n === 0) {
      this.eof = true;
      this.text = this.text.slice(this.pos) + this.decoder.end();
      this.pos = 0;
      return this.text.length > 0;
    }
    this.text = this.text.slice(this.pos) + this.decoder.write(this.buf.subarray(0, n));
    this.pos = 0;
    return true;
  }

  peek(): string | null {
    while (this.pos >= this.text.length) if (!this.fill()) return null;
    return this.text[this.pos]!;
  }

  next(): string {
    const c = this.peek();
    if (c === null) throw new Error('unexpected end of file');
    this.pos++;
    return c;
  }

  skipWs(): void {
    for (let c = this.peek(); c === ' ' || c === '\n' || c === '\r' || c === '\t'; c = this.peek()) this.pos++;
  }

  expect(ch: string): void {
    this.skipWs();
    const c = this.next();
    if (c !== ch) throw new Error(`expected ${JSON.stringify(ch)}, got ${JSON.stringify(c)}`);
  }

  /** The text of one JSON value (object, array, string or scalar), balanced by JSON's own rules. */
  valueText(): string {
    this.skipWs();
    const parts: string[] = [];
    let depth = 0;
    let inString = false;
    let start = this.pos;
    for (;;) {
      if (this.pos >= this.text.length) {
        parts.push(this.text.slice(start));
        if (!this.fill()) {
          if (depth === 0 && !inString) return parts.join('');
          throw new Error('unexpected end of file inside a value');
        }
        start = 0;
        continue;
      }
      const c = this.text[this.pos]!;
      if (inString) {
        if (c === '\\') {
          this.pos++;
          if (this.pos >= this.text.length) {
            parts.push(this.text.slice(start));
            if (!this.fill()) throw new Error('unexpected end of file in a string');
            start = 0;
          }
        } else if (c === '"') {
          inString = false;
          if (depth === 0) {
            this.pos++;
            parts.push(this.text.slice(start, this.pos));
            return parts.join('');
          }
        }
        this.pos++;
        continue;
      }
      if (c === '"') inString = true;
      else if (c === '{' || c === '[') depth++;
      else if (c === '}' || c === ']') {
        if (depth === 0) {
          parts.push(this.text.slice(start, this.pos));
          return parts.join('');
        }
        depth--;
        if (depth === 0) {
          this.pos++;
          parts.push(this.text.slice(start, this.pos));
          return parts.join('');
        }
      } else if (depth === 0 && (c === ',' || c === ' ' || c === '\n' || c === '\r' || c === '\t')) {
        parts.push(this.text.slice(start, this.pos));
        return parts.join('');
      }
      this.pos++;
    }
  }
}

/**
 * Stream a trace file: `onTop(key, value)` for every top-level member but
 * traceEvents, `onEvent(event)` for each of its elements, in file order.
 * Returns the top-level keys in order.
 */
export function streamChromeTrace(path: string, onEvent: (e: Record<string, unknown>) => void, onTop: (key: string, value: unknown) => void = () => undefined): string[] {
  const fd = openSync(path, 'r');
  try {
    const r = new CharReader(fd);
    const keys: string[] = [];
    r.expect('{');
    r.skipWs();
    if (r.peek() === '}') return keys;
    for (;;) {
      const key = JSON.parse(r.valueText()) as string;
      keys.push(key);
      r.expect(':');
      if (key === 'traceEvents') {
        r.expect('[');
        r.skipWs();
        if (r.peek() === ']') r.next();
        else {
          for (;;) {
            onEvent(JSON.parse(r.valueText()) as Record<string, unknown>);
            r.skipWs();
            const c = r.next();
            if (c === ']') break;
            if (c !== ',') throw new Error(`expected , or ] between events, got ${JSON.stringify(c)}`);
          }
        }
      } else {
        onTop(key, JSON.parse(r.valueText()));
      }
      r.skipWs();
      const c = r.next();
      if (c === '}') break;
      if (c !== ',') throw new Error(`expected , or } after "${key}", got ${JSON.stringify(c)}`);
    }
    r.skipWs();
    if (r.peek() !== null) throw new Error('text after the top-level object');
    return keys;
  } finally {
    closeSync(fd);
  }
}

export interface TraceCheck {
  /** Every broken invariant, with the event's position. Empty: the importer gets what it needs. */
  problems: string[];
  events: number;
  byPhase: Record<string, number>;
  flows: number;
  keys: string[];
  otherData: Record<string, unknown> | null;
  /** Events of each kind of the session (args.kind), counted over instants and flow ends. */
  kinds: Record<string, number>;
  /** Distinct session seqs the events carry (args seq, begin_seq, end_seq), for "every event is there" checks. */
  seqs: number;
}

/** Check a trace file against the importer's invariants, streaming. */
export function checkChromeTraceFile(path: string, opts: { maxProblems?: number } = {}): TraceCheck {
  const maxProblems = opts.maxProblems ?? 20;
  const problems: string[] = [];
  const problem = (n: number, what: string): void => {
    if (problems.length < maxProblems) problems.push(`event ${n}: ${what}`);
  };
  const byPhase: Record<string, number> = {};
  const kinds: Record<string, number> = {};
  const lastTs = new Map<string, number>();
  const stacks = new Map<string, Array<{ name: string; ts: number }>>();
  const named = new Set<string>();
  const used = new Set<string>();
  const outs = new Map<number, number>();
  const ins = new Map<number, number>();
  const seqs = new Set<number>();
  let n = 0;
  let otherData: Record<string, unknown> | null = null;
  const keys = streamChromeTrace(path, (e) => {
    n++;
    const ph = String(e.ph);
    byPhase[ph] = (byPhase[ph] ?? 0) + 1;
    const ks = Object.keys(e);
    if (ks[0] !== 'name' || ks[1] !== 'ph' || ks[2] !== 'ts') problem(n, `keys start ${ks.slice(0, 3).join(',')}, not name,ph,ts`);
    if (Object.values(e).some((v) => Array.isArray(v))) problem(n, 'holds an array');
    const ts = e.ts;
    if (typeof ts !== 'number' || !Number.isFinite(ts) || ts < 0) problem(n, `ts ${String(ts)}`);
    if (!Number.isInteger(e.pid) || !Number.isInteger(e.tid)) problem(n, 'pid/tid not integers');
    const track = `${String(e.pid)}/${String(e.tid)}`;
    const t = ts as number;
    if (ph === 'M') {
      if (e.name === 'thread_name') named.add(track);
      return;
    }
    used.add(track);
    const prev = lastTs.get(track);
    if (prev !== undefined && t < prev) problem(n, `ts ${t} before ${prev} on thread ${track}`);
    lastTs.set(track, t);
    const args = (e.args ?? {}) as Record<string, unknown>;
    if ((ph === 'i' || ph === 'X') && typeof args.kind === 'string') kinds[args.kind] = (kinds[args.kind] ?? 0) + 1;
    // Query begins and ends are the B and E of their slices.
    for (const k of ['seq', 'begin_seq', 'end_seq']) if (typeof args[k] === 'number') seqs.add(args[k]);
    const stack = stacks.get(track) ?? [];
    stacks.set(track, stack);
    switch (ph) {
      case 'B':
        stack.push({ name: String(e.name), ts: t });
        break;
      case 'E': {
        const open = stack.pop();
        if (!open) problem(n, `E "${String(e.name)}" with nothing open on ${track}`);
        else if (open.name !== e.name) problem(n, `E "${String(e.name)}" closes "${open.name}" on ${track}`);
        break;
      }
      case 'X':
        if (typeof e.dur !== 'number' || e.dur < 0) problem(n, `X dur ${String(e.dur)}`);
        break;
      case 'i':
        if (e.s !== 't') problem(n, 'instant without s:"t"');
        break;
      default:
        problem(n, `phase ${ph}`);
    }
    if (e.flow_out || e.flow_in) {
      if (ph !== 'X' && ph !== 'B') problem(n, `flow on a ${ph} event`);
      if (typeof e.bind_id !== 'number') problem(n, `bind_id ${String(e.bind_id)} is not a number`);
      const id = e.bind_id as number;
      const m = e.flow_out ? outs : ins;
      if (m.has(id)) problem(n, `second flow_${e.flow_out ? 'out' : 'in'} for id ${id}`);
      m.set(id, t);
    }
  }, (key, value) => {
    if (key === 'otherData') otherData = value as Record<string, unknown>;
    if (key === 'displayTimeUnit' && value !== 'ns') problems.push(`displayTimeUnit ${String(value)}`);
  });
  if (keys.join(',') !== 'displayTimeUnit,otherData,traceEvents') problems.push(`top-level keys ${keys.join(',')}`);
  for (const [track, stack] of stacks) if (stack.length) problems.push(`${stack.length} slice(s) never closed on ${track}: ${stack.map((s) => s.name).join(', ')}`);
  for (const track of used) if (!named.has(track)) problems.push(`thread ${track} has no thread_name`);
  for (const [id, t] of outs) {
    const tin = ins.get(id);
    if (tin === undefined) problems.push(`flow ${id} has no flow_in`);
    else if (tin < t) problems.push(`flow ${id} ends (${tin}) before it starts (${t})`);
  }
  for (const id of ins.keys()) if (!outs.has(id)) problems.push(`flow ${id} has no flow_out`);
  return { problems, events: n, byPhase, flows: outs.size, keys, otherData, kinds, seqs: seqs.size };
}
