import type { Session, Thread, TraceEvent } from '../trace/schema.js';
import type { Analysis } from '../analyzer/types.js';
import { layoutTimeline, type LayoutOptions, type Mark, type TimelineLayout } from './timeline.js';
import { reproduceCommand } from './reproduce.js';
import { cleanText, truncate } from './safe-text.js';

/*
 * Chrome trace-event JSON (the object form) for Perfetto and chrome://tracing.
 *
 * What Perfetto's legacy JSON importer accepts shaped this file
 * (src/trace_processor/importers/json in google/perfetto):
 *  - v2 flows (`bind_id` + `flow_out` / `flow_in`) are read on B, X, b and n
 *    events only, never on instants; so the two ends of each flow arrow are
 *    zero-duration X slices, and every other transition/read/publish is an
 *    instant (ph 'i', s 't'). bind_id must be a number (a string is read as
 *    hex).
 *  - displayTimeUnit is honoured only near the start of the file, an unknown
 *    top-level key stops the import, and otherData is skipped: so the keys are
 *    displayTimeUnit, otherData, traceEvents, in that order.
 *  - the tokenizer looks for `ts` in each event and gives up on a top-level
 *    array value before it: `ts` comes right after `name` and `ph`, arrays
 *    only inside args.
 *  - X slices on one thread must nest; overlapping ones are clipped here.
 * Times are microseconds since the first event; with no clock (imports) each
 * event is one microsecond after the previous.
 */

export interface ChromeTraceEvent {
  name: string;
  ph: 'M' | 'X' | 'i' | 'C';
  ts: number;
  pid: number;
  tid: number;
  cat?: string;
  dur?: number;
  s?: 't';
  bind_id?: number;
  flow_out?: true;
  flow_in?: true;
  args?: Record<string, unknown>;
}

export interface ChromeTrace {
  displayTimeUnit: 'ns';
  otherData: Record<string, string>;
  traceEvents: ChromeTraceEvent[];
}

export type PerfettoOptions = LayoutOptions;

function us(layout: TimelineLayout, clock: number): number {
  const v = layout.clock === 'time' ? clock / 1000 : clock;
  return Math.round(v * 1000) / 1000;
}

function str(s: string, max = 500): string {
  return truncate(cleanText(s), max);
}

function jsonText(v: unknown, max: number): string {
  try {
    return str(typeof v === 'string' ? v : JSON.stringify(v) ?? 'undefined', max);
  } catch {
    return str(String(v), max);
  }
}

function markArgs(m: Mark): Record<string, unknown> {
  const e: TraceEvent = m.event;
  const a: Record<string, unknown> = { seq: e.seq, kind: e.kind };
  if (e.func) a.func = str(e.func);
  if (e.file) a.file = str(e.file);
  if (e.line !== null) a.line = e.line;
  if (e.pc) a.pc = str(e.pc);
  if (e.probe) a.probe = str(e.probe);
  if (e.t_ns !== null) a.t_ns = e.t_ns;
  switch (e.kind) {
    case 'transition':
      a.old = e.data.old ? `${str(e.data.old.name ?? '?')} (${e.data.old.value ?? '?'})` : null;
      a.new = `${str(e.data.new.name ?? '?')} (${e.data.new.value ?? '?'})`;
      if (e.data.addr) a.addr = str(e.data.addr);
      break;
    case 'read':
    case 'publish':
      a.value = `${str(e.data.value.name ?? '?')} (${e.data.value.value ?? '?'})`;
      break;
    case 'reply':
      a.command = str(e.data.command);
      a.query = e.data.query === null ? null : str(e.data.query);
      a.status = e.data.status === null ? null : str(e.data.status);
      a.has_ram = e.data.has_ram;
      a.body = jsonText(e.data.body, 2000);
      break;
    case 'query-begin':
    case 'query-end':
      a.query = str(e.data.query);
      break;
    case 'hold':
    case 'release':
      a.role = str(e.data.role);
      a.reason = str(e.data.reason);
      break;
    case 'note':
      a.text = str(e.data.text, 2000);
      break;
  }
  if (m.findings.length) a.findings = m.findings.map((f) => str(f)).join(' ');
  if (m.verdict) a.verdict = str(m.verdict.text);
  return a;
}

/** The trace as an object (for tests and callers that embed it). */
export function perfettoTrace(session: Session, layout: TimelineLayout): ChromeTrace {
  const cat = 'migrace';
  // Real LWPs as tids when they are all known and distinct (what a kernel
  // trace of the same run would show); else synthetic ones.
  const threadLanes = layout.lanes.filter((l) => l.kind === 'thread');
  const lwps = threadLanes.map((l) => l.lwp);
  const useLwp = lwps.length > 0 && lwps.every((l) => l !== null) && new Set(lwps).size === lwps.length;
  const tidOf = new Map<number, number>();
  threadLanes.forEach((l, i) => tidOf.set(l.index, useLwp ? l.lwp! : 1000 + i));
  const pid = useLwp ? Math.min(...(lwps as number[])) : 1000;
  const client = layout.lanes.find((l) => l.kind === 'client');
  const clientPid = Math.max(pid, ...tidOf.values()) + 1;
  if (client) tidOf.set(client.index, clientPid);
  const pidOf = (lane: number): number => (client && lane === client.index ? clientPid : pid);

  const out: ChromeTraceEvent[] = [];
  const target = session.target;
  const procName = `${target.kind}${target.binary ? ` ${str(target.binary, 200)}` : ''} (${target.variant}) - session ${session.id}`;
  out.push({ name: 'process_name', ph: 'M', ts: 0, pid, tid: pid, args: { name: procName } });
  out.push({ name: 'process_sort_index', ph: 'M', ts: 0, pid, tid: pid, args: { sort_index: 0 } });
  if (client) {
    out.push({ name: 'process_name', ph: 'M', ts: 0, pid: clientPid, tid: clientPid, args: { name: 'QMP client (replies)' } });
    out.push({ name: 'process_sort_index', ph: 'M', ts: 0, pid: clientPid, tid: clientPid, args: { sort_index: 1 } });
  }
  for (const l of layout.lanes) {
    const tid = tidOf.get(l.index)!;
    out.push({ name: 'thread_name', ph: 'M', ts: 0, pid: pidOf(l.index), tid, args: { name: str(`${l.label}${l.role ? ` [${l.role}]` : ''}`, 200) } });
    out.push({ name: 'thread_sort_index', ph: 'M', ts: 0, pid: pidOf(l.index), tid, args: { sort_index: l.index } });
  }

  // Flows: one per arrow, numbered; each end is a zero-duration X slice.
  const markBySeq = new Map<number, Mark>();
  for (const m of layout.marks) markBySeq.set(m.seq, m);
  const flowsAt = new Map<number, Array<{ id: number; dir: 'out' | 'in'; finding: string }>>();
  let flowId = 0;
  for (const a of layout.arrows) {
    if (a.toSeq === null) continue;
    const from = markBySeq.get(a.fromSeq);
    const to = markBySeq.get(a.toSeq);
    if (!from || !to) continue;
    const id = ++flowId;
    const add = (seq: number, dir: 'out' | 'in'): void => {
      const list = flowsAt.get(seq) ?? [];
      list.push({ id, dir, finding: a.finding });
      flowsAt.set(seq, list);
    };
    add(a.fromSeq, 'out');
    add(a.toSeq, 'in');
  }

  // Slices per thread: query windows, holds, finding windows.
  interface Slice { lane: number; ts: number; end: number; name: string; args: Record<string, unknown> }
  const slices: Slice[] = [];
  const pairedQueryMarks = new Set<number>();
  const begins = new Map<string, Mark>();
  const replyOfQuery = new Map<string, Mark>();
  for (const m of layout.marks) {
    const e = m.event;
    if (e.kind === 'reply' && e.data.query !== null) replyOfQuery.set(e.data.query, m);
  }
  for (const m of layout.marks) {
    const e = m.event;
    if (e.kind === 'query-begin') begins.set(e.data.query, m);
    else if (e.kind === 'query-end') {
      const b = begins.get(e.data.query);
      if (!b) continue;
      begins.delete(e.data.query);
      const lane = layout.lanes[m.lane]!.kind === 'thread' ? m.lane : b.lane;
      const reply = replyOfQuery.get(e.data.query);
      const args: Record<string, unknown> = { query: str(e.data.query), begin_seq: b.seq, end_seq: m.seq };
      if (reply && reply.event.kind === 'reply') {
        args.reply_seq = reply.seq;
        args.reply = str(reply.label);
        if (reply.verdict) args.verdict = str(reply.verdict.text);
      }
      slices.push({ lane, ts: us(layout, b.clock), end: us(layout, m.clock), name: `query-migrate ${str(e.data.query, 60)}`, args });
      pairedQueryMarks.add(b.seq).add(m.seq);
    }
  }
  const holds = new Map<number, Mark[]>();
  for (const m of layout.marks) {
    const e = m.event;
    if (e.kind === 'hold') {
      const list = holds.get(m.lane) ?? [];
      list.push(m);
      holds.set(m.lane, list);
    } else if (e.kind === 'release') {
      const h = holds.get(m.lane)?.shift();
      if (!h || h.event.kind !== 'hold') continue;
      slices.push({
        lane: m.lane, ts: us(layout, h.clock), end: us(layout, m.clock), name: `held (${str(h.event.data.role, 60)})`,
        args: { hold_seq: h.seq, release_seq: m.seq, reason: str(h.event.data.reason) },
      });
    }
  }
  const lastClock = layout.marks.length ? us(layout, layout.marks[layout.marks.length - 1]!.clock) : 0;
  for (const list of holds.values()) {
    for (const h of list) {
      if (h.event.kind !== 'hold') continue;
      slices.push({ lane: h.lane, ts: us(layout, h.clock), end: lastClock, name: `held (${str(h.event.data.role, 60)}), never released`,
        args: { hold_seq: h.seq, reason: str(h.event.data.reason) } });
    }
  }
  for (const f of layout.findings) {
    const band = layout.bands.find((b) => b.finding === f.id);
    if (!band || band.approximate) continue;
    const a = markBySeq.get(band.fromSeq);
    const b = markBySeq.get(band.toSeq);
    if (!a || !b) continue;
    slices.push({
      lane: band.lane, ts: us(layout, a.clock), end: us(layout, b.clock),
      name: `${str(f.id, 40)} ${f.cls}: read ${f.read?.value ?? '?'} -> publish ${f.publish?.value ?? '?'}`,
      args: { finding: str(f.id), class: f.cls, explanation: str(f.explanation, 1000), evidence: f.evidence.join(' '), reproduce: str(f.reproduce) },
    });
  }

  // Nest per lane: sort by start, longer first; clip a slice that would
  // outlive its parent (the importer drops improperly nested slices).
  const byLane = new Map<number, Slice[]>();
  for (const s of slices) {
    const list = byLane.get(s.lane) ?? [];
    list.push(s);
    byLane.set(s.lane, list);
  }
  for (const [lane, list] of byLane) {
    list.sort((x, y) => x.ts - y.ts || (y.end - y.ts) - (x.end - x.ts));
    const stack: Slice[] = [];
    for (const s of list) {
      while (stack.length && stack[stack.length - 1]!.end < s.ts) stack.pop();
      const parent = stack[stack.length - 1];
      if (parent && s.end > parent.end) s.end = parent.end;
      stack.push(s);
      out.push({ name: s.name, ph: 'X', ts: s.ts, pid: pidOf(lane), tid: tidOf.get(lane)!, cat, dur: Math.max(0, Math.round((s.end - s.ts) * 1000) / 1000), args: s.args });
    }
  }

  // Marks: instants, or zero-duration slices where a flow binds.
  for (const m of layout.marks) {
    if (pairedQueryMarks.has(m.seq) && !flowsAt.has(m.seq)) continue;
    const ts = us(layout, m.clock);
    const p = pidOf(m.lane);
    const tid = tidOf.get(m.lane)!;
    const name = str(m.label, 120);
    const flows = flowsAt.get(m.seq);
    if (!flows) {
      out.push({ name, ph: 'i', ts, pid: p, tid, cat, s: 't', args: markArgs(m) });
      continue;
    }
    flows.forEach((f, i) => {
      const ev: ChromeTraceEvent = {
        name: i === 0 ? name : `${name} (${str(f.finding, 40)})`, ph: 'X', ts, pid: p, tid, cat, dur: 0, bind_id: f.id,
        args: i === 0 ? markArgs(m) : { seq: m.seq, finding: str(f.finding) },
      };
      if (f.dir === 'out') ev.flow_out = true;
      else ev.flow_in = true;
      out.push(ev);
    });
  }

  // Summarized stretches: events per lane per bin as counters.
  for (let i = 0; i < layout.bins.length; i++) {
    const b = layout.bins[i]!;
    const args: Record<string, number> = {};
    b.perLane.forEach((c, li) => { args[str(layout.lanes[li]!.label, 100)] = c; });
    out.push({ name: 'events (summarized)', ph: 'C', ts: us(layout, b.clock0), pid, tid: pid, cat, args });
    const next = layout.bins[i + 1];
    if (!next || next.fromIndex !== b.toIndex + 1) {
      const zero: Record<string, number> = {};
      for (const k of Object.keys(args)) zero[k] = 0;
      out.push({ name: 'events (summarized)', ph: 'C', ts: us(layout, b.clock1), pid, tid: pid, cat, args: zero });
    }
  }

  return {
    displayTimeUnit: 'ns',
    otherData: {
      generator: 'migrace',
      session: `${session.id}: ${str(session.label, 200)}`,
      origin: session.origin,
      state: session.state,
      target: `${target.kind} ${target.binary ? str(target.binary, 200) : '-'} variant ${target.variant}${target.qemu_version ? ` QEMU ${str(target.qemu_version, 40)}` : ''}${target.build_id ? ` build-id ${str(target.build_id, 80)}` : ''}`,
      clock: layout.clock === 'time' ? 'microseconds since the first event' : 'event order (1 us per event; the session has no clock)',
      verdict: str(layout.verdict.sentence, 1000),
      reproduce: str(reproduceCommand(session, layout.findings[0]?.finding ?? null)),
      events: `${layout.totalEvents}${layout.summarized ? ' (summarized: counters stand for the elided stretches)' : ''}`,
    },
    traceEvents: out,
  };
}

/** The JSON text to load in ui.perfetto.dev or chrome://tracing. */
export function renderPerfetto(
  session: Session, threads: readonly Thread[], events: readonly TraceEvent[], analysis: Analysis | null,
  opts: PerfettoOptions = {},
): string {
  const layout = layoutTimeline(session, threads, events, analysis, opts);
  return renderPerfettoFromLayout(session, layout);
}

export function renderPerfettoFromLayout(session: Session, layout: TimelineLayout): string {
  const trace = perfettoTrace(session, layout);
  // One event per line: diffable, and still one JSON object.
  return `{"displayTimeUnit":"ns","otherData":${JSON.stringify(trace.otherData)},"traceEvents":[\n${trace.traceEvents.map((e) => JSON.stringify(e)).join(',\n')}\n]}\n`;
}
