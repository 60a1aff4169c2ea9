import type { Session, Thread, TraceEvent } from '../trace/schema.js';
import type { Analysis } from '../analyzer/types.js';
import { MigraceError } from '../trace/errors.js';
import { inSeqOrder, TimelineFactsReader, type FindingView, type Lane, type TimelineFacts } from './timeline.js';
import { reproduction } from './reproduce.js';
import { cleanText, printableJson, truncate } from './safe-text.js';

/*
 * Chrome trace-event JSON (the object form) for Perfetto and chrome://tracing,
 * with every event of the session: the user who opens Perfetto wants to zoom
 * into each one (the HTML report summarizes large sessions; this does not).
 * It is written as a stream, one event per line, in chunks handed to a sink,
 * so a million-event session never becomes one string.
 *
 * What Perfetto's legacy JSON importer accepts shaped the output
 * (src/trace_processor/importers/json in google/perfetto):
 *  - v2 flows (`bind_id` + `flow_out` / `flow_in`) are read on B, X, b and n
 *    events only, never on instants: the two ends of each flow arrow are
 *    zero-duration X slices, every other event is an instant (ph 'i', s 't').
 *    bind_id must be a number (a string is read as hex).
 *  - displayTimeUnit is honoured only near the start of the file, an unknown
 *    top-level key stops the import, and otherData is skipped: so the keys are
 *    displayTimeUnit, otherData, traceEvents, in that order.
 *  - the tokenizer looks for `ts` in each event and gives up on a top-level
 *    array value before it: `ts` comes right after `name` and `ph`, and no
 *    event has an array.
 *  - slices on one thread must nest. Query windows, holds and finding windows
 *    are B/E pairs opened and closed as the events come: a slice still open
 *    when an outer one closes ends with it, and what is open at the end
 *    closes at the last event's time.
 * Times are microseconds since the first event; with no clock (imports) each
 * event is one microsecond after the previous.
 *
 * Everything the file says before the first event (the clock, the lanes
 * and their order, which events exist to carry a flow's ends) depends on
 * the whole session, so the export reads the events twice and holds only
 * the timeline's columns between the passes (timeline.ts,
 * TimelineFactsReader): at a million events the command's memory is the
 * columns, the analysis's state and a chunk, not the events.
 *
 * Parts: Tracks (pid/tid per lane and their metadata), planFlows (every
 * finding's arrows, numbered), planWindows (where each finding's window opens
 * and closes), PerfettoWriter (the second pass: what opens at an event, its
 * own mark, what closes), PerfettoExport (the two passes), then writePerfetto
 * (both passes over an array).
 */

export interface ChromeTraceEvent {
  name: string;
  ph: 'M' | 'B' | 'E' | 'X' | 'i';
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

/** Receives the JSON text in order, in chunks of about CHUNK characters. */
export type PerfettoSink = (chunk: string) => void;

const CHUNK = 1 << 20;
const CAT = 'migrace';

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

/** pid and tid per lane: real LWPs when they are all known and distinct (what a kernel trace of the same run would show), else synthetic ones. */
class Tracks {
  readonly pid: number;
  private readonly tids: number[] = [];
  private readonly clientLane: number | null;
  private readonly clientPid: number;

  constructor(private readonly lanes: readonly Lane[]) {
    const threadLanes = lanes.filter((l) => l.kind === 'thread');
    const lwps = threadLanes.map((l) => l.lwp);
    const useLwp = lwps.length > 0 && lwps.every((l) => l !== null) && new Set(lwps).size === lwps.length;
    threadLanes.forEach((l, i) => { this.tids[l.index] = useLwp ? l.lwp! : 1000 + i; });
    this.pid = useLwp ? Math.min(...(lwps as number[])) : 1000;
    const client = lanes.find((l) => l.kind === 'client');
    this.clientLane = client?.index ?? null;
    this.clientPid = Math.max(this.pid, ...threadLanes.map((l) => this.tids[l.index]!)) + 1;
    if (client) this.tids[client.index] = this.clientPid;
  }

  pidOf(lane: number): number {
    return lane === this.clientLane ? this.clientPid : this.pid;
  }

  tidOf(lane: number): number {
    return this.tids[lane]!;
  }

  /** Process and thread names and their order. */
  metadata(session: Session): ChromeTraceEvent[] {
    const t = session.target;
    const procName = `${t.kind}${t.binary ? ` ${str(t.binary, 200)}` : ''} (${t.variant}) - session ${session.id}`;
    const out: ChromeTraceEvent[] = [
      { name: 'process_name', ph: 'M', ts: 0, pid: this.pid, tid: this.pid, args: { name: procName } },
      { name: 'process_sort_index', ph: 'M', ts: 0, pid: this.pid, tid: this.pid, args: { sort_index: 0 } },
    ];
    if (this.clientLane !== null) {
      out.push({ name: 'process_name', ph: 'M', ts: 0, pid: this.clientPid, tid: this.clientPid, args: { name: 'QMP client (replies)' } });
      out.push({ name: 'process_sort_index', ph: 'M', ts: 0, pid: this.clientPid, tid: this.clientPid, args: { sort_index: 1 } });
    }
    for (const l of this.lanes) {
      const pid = this.pidOf(l.index);
      const tid = this.tidOf(l.index);
      out.push({ name: 'thread_name', ph: 'M', ts: 0, pid, tid, args: { name: str(`${l.label}${l.role ? ` [${l.role}]` : ''}`, 200) } });
      out.push({ name: 'thread_sort_index', ph: 'M', ts: 0, pid, tid, args: { sort_index: l.index } });
    }
    return out;
  }
}

interface FlowEnd { id: number; dir: 'out' | 'in'; finding: string }

/**
 * One flow per crossing of every finding, numbered from 1: from the
 * transition (from its release when the writer was held there: the swap
 * happened then) to the publish it spoiled, or the query end. Both ends
 * must be events of the session.
 */
function planFlows(facts: TimelineFacts): Map<number, FlowEnd[]> {
  const at = new Map<number, FlowEnd[]>();
  const add = (seq: number, end: FlowEnd): void => {
    const list = at.get(seq) ?? [];
    list.push(end);
    at.set(seq, list);
  };
  let id = 0;
  for (const v of facts.findings) {
    const to = v.finding.publish?.seq ?? v.finding.query?.end_seq ?? null;
    if (to === null || !facts.has(to)) continue;
    for (const c of v.crossing) {
      const from = c.released !== null && facts.has(c.released) ? c.released : c.seq;
      if (from === to || !facts.has(from)) continue;
      id++;
      add(from, { id, dir: 'out', finding: v.id });
      add(to, { id, dir: 'in', finding: v.id });
    }
  }
  return at;
}

interface Window {
  key: string;
  lane: number;
  name: string;
  args: Record<string, unknown>;
}

/** Each finding's window on its reader's lane: read -> publish, else the query window, else the evidence. */
function planWindows(facts: TimelineFacts): { opens: Map<number, Window[]>; closes: Map<number, Window[]> } {
  const opens = new Map<number, Window[]>();
  const closes = new Map<number, Window[]>();
  const add = (m: Map<number, Window[]>, seq: number, w: Window): void => {
    const list = m.get(seq) ?? [];
    list.push(w);
    m.set(seq, list);
  };
  for (const v of facts.findings) {
    const f = v.finding;
    const from = f.read?.seq ?? f.query?.begin_seq ?? v.evidence[0];
    const to = f.publish?.seq ?? f.query?.end_seq ?? v.evidence[v.evidence.length - 1];
    if (v.lane === null || from == null || to == null || from >= to || !facts.has(from) || !facts.has(to)) continue;
    const w: Window = {
      key: `finding:${v.id}`,
      lane: v.lane,
      name: `${str(v.id, 40)} ${v.cls}: read ${v.read?.value ?? '?'} -> publish ${v.publish?.value ?? '?'}`,
      args: windowArgs(v),
    };
    add(opens, from, w);
    add(closes, to, w);
  }
  return { opens, closes };
}

function windowArgs(v: FindingView): Record<string, unknown> {
  const a: Record<string, unknown> = { finding: str(v.id), class: v.cls, explanation: str(v.explanation, 1000), evidence: v.evidence.join(' ') };
  // The reply comes after the query's end: a query slice cannot carry it, the finding's window can.
  if (v.reply) {
    a.reply_seq = v.reply.seq;
    a.reply = str(v.reply.label);
    a.verdict = str(v.reply.verdict.summary, 1000);
  }
  a.reproduce = str(v.reproduce);
  return a;
}

function eventArgs(e: TraceEvent, findings: readonly string[], verdict: string | null): Record<string, unknown> {
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
  if (findings.length) a.findings = findings.map((f) => str(f)).join(' ');
  if (verdict) a.verdict = str(verdict);
  return a;
}

interface OpenSlice { key: string; name: string }

/**
 * The pass over the events. At each event: the slices it opens (a query,
 * a finding's window, a hold), its own mark (an instant, or one zero-length
 * slice per flow that ends there), then the slices it closes, innermost
 * first. Per lane, a stack of open slices keeps B/E balanced and nested.
 */
class PerfettoWriter {
  private buf = '';
  private first = true;
  private lastTs = 0;
  private readonly stacks: OpenSlice[][];

  constructor(
    private readonly facts: TimelineFacts,
    private readonly tracks: Tracks,
    private readonly flows: Map<number, FlowEnd[]>,
    private readonly windows: ReturnType<typeof planWindows>,
    private readonly sink: PerfettoSink,
  ) {
    this.stacks = facts.lanes.map(() => []);
  }

  start(session: Session): void {
    const t = session.target;
    const facts = this.facts;
    const r = reproduction(session, facts.findings[0]?.finding ?? null);
    const otherData: Record<string, string> = {
      generator: 'migrace',
      session: `${session.id}: ${str(session.label, 200)}`,
      origin: session.origin,
      state: session.state,
      target: `${t.kind} ${t.binary ? str(t.binary, 200) : '-'} variant ${t.variant}${t.qemu_version ? ` QEMU ${str(t.qemu_version, 40)}` : ''}${t.build_id ? ` build-id ${str(t.build_id, 80)}` : ''}`,
      clock: facts.clock === 'time' ? 'microseconds since the first event' : 'event order (1 us per event; the session has no clock)',
      verdict: str(facts.verdict.sentence, 1000),
      reproduce: str(r.command),
      events: `${facts.count} (every event)`,
    };
    // The schedule to save first, whole: the trace must stand alone like the other reports.
    if (r.schedule) otherData.schedule = `save as ${r.scheduleFile}: ${printableJson(r.schedule)}`;
    this.buf = `{"displayTimeUnit":"ns","otherData":${JSON.stringify(otherData)},"traceEvents":[\n`;
    for (const m of this.tracks.metadata(session)) this.emit(m);
  }

  /** The event at position i of the first pass. */
  event(i: number, e: TraceEvent): void {
    const facts = this.facts;
    if (e.seq !== facts.seqAt(i)) {
      throw new MigraceError('BAD_INPUT', `the events changed between the two passes of the Perfetto export: event ${i + 1} is #${e.seq}, was #${facts.seqAt(i)}`);
    }
    const lane = facts.laneAt(i);
    const c = facts.clockAt(i);
    const ts = Math.round((facts.clock === 'time' ? c / 1000 : c) * 1000) / 1000;
    this.lastTs = ts;

    if (e.kind === 'query-begin') this.open(lane, `query:${e.data.query}`, `query-migrate ${str(e.data.query, 60)}`, ts, { query: str(e.data.query), begin_seq: e.seq });
    for (const w of this.windows.opens.get(e.seq) ?? []) this.open(w.lane, w.key, w.name, ts, w.args);
    if (e.kind === 'hold') this.open(lane, 'hold', `held (${str(e.data.role, 60)})`, ts, { hold_seq: e.seq, reason: str(e.data.reason) });

    const flows = this.flows.get(e.seq);
    const slicedQuery = e.kind === 'query-begin' || (e.kind === 'query-end' && this.isOpen(lane, `query:${e.data.query}`));
    if (flows) this.flowEnds(e, lane, ts, flows);
    else if (!slicedQuery) this.mark(e, lane, ts);

    const ending = this.windows.closes.get(e.seq);
    if (ending) {
      // Innermost first: windows that end together close as they nest.
      const inner = [...ending].sort((x, y) => this.depth(y.lane, y.key) - this.depth(x.lane, x.key));
      for (const w of inner) this.close(w.lane, w.key, ts, { end_seq: e.seq });
    }
    if (e.kind === 'release') this.close(lane, 'hold', ts, { release_seq: e.seq });
    if (e.kind === 'query-end') this.close(lane, `query:${e.data.query}`, ts, { end_seq: e.seq });
  }

  finish(): void {
    this.stacks.forEach((stack, lane) => {
      while (stack.length) this.end(lane, stack.pop()!, this.lastTs, { unfinished: true });
    });
    this.buf += '\n]}\n';
    this.sink(this.buf);
    this.buf = '';
  }

  private mark(e: TraceEvent, lane: number, ts: number): void {
    const verdict = e.kind === 'reply' ? this.facts.replyVerdict(e.seq)?.text ?? null : null;
    this.emit({
      name: str(this.facts.labelOf(e), 120), ph: 'i', ts, pid: this.tracks.pidOf(lane), tid: this.tracks.tidOf(lane), cat: CAT, s: 't',
      args: eventArgs(e, this.facts.findingsOf(e.seq), verdict),
    });
  }

  private flowEnds(e: TraceEvent, lane: number, ts: number, flows: FlowEnd[]): void {
    const name = str(this.facts.labelOf(e), 120);
    const verdict = e.kind === 'reply' ? this.facts.replyVerdict(e.seq)?.text ?? null : null;
    flows.forEach((f, k) => {
      const ev: ChromeTraceEvent = {
        name: k === 0 ? name : `${name} (${str(f.finding, 40)})`, ph: 'X', ts, pid: this.tracks.pidOf(lane), tid: this.tracks.tidOf(lane),
        cat: CAT, dur: 0, bind_id: f.id,
        args: k === 0 ? eventArgs(e, this.facts.findingsOf(e.seq), verdict) : { seq: e.seq, finding: str(f.finding) },
      };
      if (f.dir === 'out') ev.flow_out = true;
      else ev.flow_in = true;
      this.emit(ev);
    });
  }

  private isOpen(lane: number, key: string): boolean {
    return this.depth(lane, key) >= 0;
  }

  /** Position of the innermost open slice with this key in its lane's stack, or -1. */
  private depth(lane: number, key: string): number {
    const stack = this.stacks[lane]!;
    for (let k = stack.length - 1; k >= 0; k--) if (stack[k]!.key === key) return k;
    return -1;
  }

  private open(lane: number, key: string, name: string, ts: number, args: Record<string, unknown>): void {
    this.stacks[lane]!.push({ key, name });
    this.emit({ name, ph: 'B', ts, pid: this.tracks.pidOf(lane), tid: this.tracks.tidOf(lane), cat: CAT, args });
  }

  /** Close the innermost open slice with this key, and what is still open inside it. */
  private close(lane: number, key: string, ts: number, args: Record<string, unknown>): void {
    const stack = this.stacks[lane]!;
    const at = this.depth(lane, key);
    if (at < 0) return;
    while (stack.length > at + 1) this.end(lane, stack.pop()!, ts, { cut_short_by: key });
    this.end(lane, stack.pop()!, ts, args);
  }

  private end(lane: number, s: OpenSlice, ts: number, args: Record<string, unknown>): void {
    this.emit({ name: s.name, ph: 'E', ts, pid: this.tracks.pidOf(lane), tid: this.tracks.tidOf(lane), cat: CAT, args });
  }

  private emit(e: ChromeTraceEvent): void {
    this.buf += this.first ? JSON.stringify(e) : `,\n${JSON.stringify(e)}`;
    this.first = false;
    if (this.buf.length >= CHUNK) {
      this.sink(this.buf);
      this.buf = '';
    }
  }
}

/**
 * The export in its two passes over a session's events in seq order: see()
 * every event (the first pass: what must be known before the first line),
 * then write() with the same events again. Between the passes it holds the
 * timeline's columns, not the events, so a session can come from the store
 * twice (cli/report.ts, which runs the analysis in the first pass too) as
 * well as from an array (writePerfetto).
 */
export class PerfettoExport {
  private readonly reader = new TimelineFactsReader();

  constructor(private readonly session: Session, private readonly threads: readonly Thread[]) {}

  see(e: TraceEvent): void {
    this.reader.see(e);
  }

  /**
   * The second pass: the events the first one saw, in the same order, and
   * no more (events a recording appended since are not in the trace).
   */
  write(analysis: Analysis | null, events: Iterable<TraceEvent>, sink: PerfettoSink): void {
    const facts = this.reader.facts(this.session, this.threads, analysis);
    const w = new PerfettoWriter(facts, new Tracks(facts.lanes), planFlows(facts), planWindows(facts), sink);
    w.start(this.session);
    let i = 0;
    for (const e of events) {
      if (i === facts.count) break;
      w.event(i++, e);
    }
    if (i < facts.count) {
      throw new MigraceError('BAD_INPUT', `the events changed between the two passes of the Perfetto export: ${i} events, were ${facts.count}`);
    }
    w.finish();
  }
}

/** Write the trace of a session held in memory, every event, to `sink` in chunks. Pure but for the sink. */
export function writePerfetto(
  session: Session, threads: readonly Thread[], events: readonly TraceEvent[], analysis: Analysis | null, sink: PerfettoSink,
): void {
  const sorted = inSeqOrder(events);
  const x = new PerfettoExport(session, threads);
  for (const e of sorted) x.see(e);
  x.write(analysis, sorted, sink);
}
