import type { Session, Thread, TraceEvent, EventKind } from '../trace/schema.js';
import type { Analysis, Finding, FindingClass, ThreadRef, Verdict } from '../analyzer/types.js';
import { MigraceError } from '../trace/errors.js';
import { cleanText, truncate } from './safe-text.js';
import { binTooltip, displayStateName, eventLabel, formatDuration, laneLabel, markTooltip, replyLabel } from './labels.js';
import { reproduceCommand } from './reproduce.js';
import { explainFinding, sessionVerdict } from './sentences.js';

/*
 * The one timeline layout every renderer draws from: lanes per thread, one
 * mark per event (or density bins for large sessions), the read->publish
 * window of each finding as a band and an arrow from the crossing transition
 * into it. Pure: data in, plain data out. Coordinates are SVG pixels; the text
 * and Perfetto renderers use the order, lanes, labels and clock values only.
 *
 * layoutTimeline runs these phases in order, each a named part below:
 *  1. extract    EventColumns: the events in seq order as typed columns
 *  2. clock      chooseClock: real time, or event order when any event lacks one
 *  3. lanes      LaneSet: one lane per thread (readers, then writers, then the
 *                rest), one for the QMP client; Citations: what each event is
 *                to the findings
 *  4. selection  selectMarks: which events are drawn as marks, which get a
 *                label, and the density bins over the rest (large sessions)
 *  5. placement  Spacing (time scaled into the width, quiet stretches as
 *                breaks) and Placement (the left-to-right walk that puts
 *                marks, bins and breaks at x without label collisions)
 *  6. findings   findingView, then bands and arrows: each finding's window on
 *                the reader lane and an arrow from the crossing into it
 *  7. ticks      keepTicks: time labels that do not overprint each other
 * Then the tooltips (labels.ts) and the verdict sentence (sentences.ts).
 * TimelineFactsReader runs phases 1 to 3 and the finding views only: the
 * reading without the drawing, for exports that write every event
 * (perfetto.ts). It is fed the events one at a time and keeps only their
 * columns, so such an export can stream a session from the store twice
 * instead of holding it.
 * Shared parts live beside it: safe-text.ts (cleaning trace text), labels.ts
 * (names and tooltips), reproduce.ts (the replay command and its schedule),
 * sentences.ts (finding explanations, the verdict), session-meta.ts (what a
 * session's meta says about how it was made).
 */

export interface LayoutOptions {
  /** Drawing width the layout aims for (px). It grows when labels need room. */
  width?: number;
  /** Sessions with more events are summarized (density bins). */
  summarizeAbove?: number;
  /** Events drawn in full on each side of a finding's evidence when summarized. */
  margin?: number;
  /** Sessions with at most this many events get a label on every mark. */
  labelAllBelow?: number;
  /** Density bins across the whole drawing when summarized. */
  maxBins?: number;
  /** Findings whose windows are drawn mark by mark when summarized (worst first). */
  maxFullFindings?: number;
  /** Title line drawn at the top of the SVG. */
  title?: string;
}

export type Clock = 'time' | 'order';
export type VerdictKind = 'reproduced' | 'not-reproduced' | 'undetermined' | 'replies-fail' | 'clean' | 'unanalyzed' | 'infeasible';

export interface Lane {
  index: number;
  /** "tid:N" for threads, "client" for the QMP client lane. */
  key: string;
  kind: 'thread' | 'client';
  tid: number | null;
  name: string | null;
  lwp: number | null;
  /** `name (LWP n)`, or "QMP client" for the lane of thread-less events. */
  label: string;
  role: 'reader' | 'writer' | 'reader+writer' | null;
  /** Events of the whole session on this lane (drawn or not). */
  events: number;
  top: number;
  height: number;
  /** Centre line: marks sit on it. */
  y: number;
}

export interface MarkVerdict {
  finding: string;
  text: string;
  fails: boolean;
}

export interface Mark {
  seq: number;
  /** Position of the event in the session's seq order. */
  index: number;
  kind: EventKind;
  event: TraceEvent;
  lane: number;
  x: number;
  y: number;
  /** ns since the first event (time clock) or the event's position (order clock). */
  clock: number;
  label: string;
  tooltip: string;
  /** Drawn with its label; unlabelled marks are dots with a tooltip. */
  labelled: boolean;
  /** 0: label above the mark, 1: below. */
  tier: 0 | 1;
  classes: string[];
  /** Findings whose evidence cites this event. */
  findings: string[];
  /** What the event is to a finding: read, crossing, publish, reply, query-begin, query-end. */
  roles: string[];
  /** Reply marks of a finding: the verdict drawn beside them. */
  verdict: MarkVerdict | null;
}

export interface Band {
  finding: string;
  cls: FindingClass;
  lane: number;
  fromSeq: number;
  toSeq: number;
  x0: number;
  x1: number;
  y0: number;
  y1: number;
  label: string;
  tooltip: string;
  /** True when an end lies inside a density bin (summarized, not drawn in full). */
  approximate: boolean;
}

export interface Arrow {
  finding: string;
  /** The crossing transition. */
  fromSeq: number;
  /** The publish it spoiled (or the query end / read when there is no publish). */
  toSeq: number | null;
  fromLane: number;
  toLane: number;
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  label: string;
}

export interface Break {
  afterSeq: number;
  beforeSeq: number;
  x0: number;
  x1: number;
  /** Quiet time elided, ns. */
  gap: number;
  label: string;
}

export interface Bin {
  fromSeq: number;
  toSeq: number;
  fromIndex: number;
  toIndex: number;
  count: number;
  x0: number;
  x1: number;
  clock0: number;
  clock1: number;
  /** Count per lane index (0 for lanes without events in the bin). */
  perLane: number[];
  kinds: Partial<Record<EventKind, number>>;
  tooltip: string;
}

export interface Tick {
  x: number;
  label: string;
}

export interface FindingView {
  id: string;
  cls: FindingClass;
  finding: Finding;
  /** Reader lane index, or null when the reader is unknown. */
  lane: number | null;
  reader: string;
  read: { seq: number; value: string } | null;
  crossing: Array<{ seq: number; released: number | null; thread: string; lane: number | null; old: string; new: string }>;
  publish: { seq: number; value: string } | null;
  query: { id: string | null; begin: number | null; end: number | null } | null;
  reply: { seq: number | null; label: string; verdict: Verdict } | null;
  evidence: number[];
  /** Every cited event is drawn as a mark. */
  drawnInFull: boolean;
  /** "LP#1994002" when this is that bug's exact shape. */
  knownAs: string | null;
  /** One sentence, from the layout's own reading of the evidence. */
  explanation: string;
  reproduce: string;
}

export interface TimelineLayout {
  session: { id: number; label: string; origin: string; state: string };
  title: string;
  clock: Clock;
  width: number;
  height: number;
  /** Left area holding lane labels. */
  gutter: number;
  /** Top of the first lane. */
  top: number;
  lanes: Lane[];
  marks: Mark[];
  bands: Band[];
  arrows: Arrow[];
  breaks: Break[];
  bins: Bin[];
  ticks: Tick[];
  findings: FindingView[];
  verdict: { kind: VerdictKind; sentence: string };
  summarized: boolean;
  totalEvents: number;
  /** First event's t_ns (time clock), else null. */
  t0: number | null;
  warnings: string[];
}

const DEFAULTS = {
  width: 1200,
  summarizeAbove: 5000,
  margin: 12,
  labelAllBelow: 80,
  maxBins: 240,
  maxFullFindings: 40,
};

/** Monospace 11px: the width of one character, for label collision only. */
export const CHAR_W = 6.7;
export const LANE_H = 88;
const TOP = 76;
const BOTTOM = 40;
const LABEL_GAP = 18;
const DOT_GAP = 4;
const BIN_W = 4;
const BREAK_W = 40;
const LABEL_MAX = 44;
const BAND_UP = 30;
const BAND_DOWN = 32;

function findingRank(c: FindingClass): number {
  return c === 'manifested' ? 0 : c === 'window-only' ? 1 : 2;
}

// ---------------------------------------------------------------------------
// Phase 1, extract.

const KINDS: readonly EventKind[] = ['transition', 'read', 'publish', 'query-begin', 'query-end', 'reply', 'hold', 'release', 'note'];
const KIND_CODE = Object.fromEntries(KINDS.map((k, i) => [k, i])) as Record<EventKind, number>;

/** A switch rather than a keyed lookup: internalized strings compare by pointer. */
function kindCode(k: EventKind): number {
  switch (k) {
    case 'transition': return 0;
    case 'read': return 1;
    case 'publish': return 2;
    case 'query-begin': return 3;
    case 'query-end': return 4;
    case 'reply': return 5;
    case 'hold': return 6;
    case 'release': return 7;
    default: return 8;
  }
}

function lowerBound(arr: ArrayLike<number>, v: number): number {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (arr[mid]! < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The events in seq order: the array itself when it is (the store's always are), else a sorted copy. */
export function inSeqOrder(events: readonly TraceEvent[]): readonly TraceEvent[] {
  for (let i = 1; i < events.length; i++) {
    if (events[i]!.seq <= events[i - 1]!.seq) return [...events].sort((a, b) => a.seq - b.seq);
  }
  return events;
}

/**
 * The events in seq order as typed columns: what every later phase reads
 * per event, so that none of them walks the event objects again (on a
 * million events each pass over the objects costs far more than the
 * arithmetic after it) and an export that streams the events needs only
 * these between its two passes. Few typed arrays, too: they count as
 * external memory and a large enough allocation makes V8 collect the whole
 * (event-laden) heap. Built by ColumnsBuilder.
 */
class EventColumns {
  constructor(
    readonly n: number,
    readonly seqs: Float64Array,
    /** ns since the first event, never running backwards; the position once the order clock is chosen. */
    readonly clk: Float64Array,
    /** Thread of each event as a small code: 0 is "no thread" (the QMP client). */
    readonly tcode: Int32Array,
    readonly kind: Uint8Array,
    /** The thread id of each code. */
    readonly threadOfCode: ReadonlyArray<number | null>,
    /** Some event has no clock. */
    readonly clockless: boolean,
    /** The first event's t_ns. */
    readonly t0: number | null,
  ) {}

  /** The columns of events already in seq order (inSeqOrder). */
  static of(events: readonly TraceEvent[]): EventColumns {
    const b = new ColumnsBuilder(events.length);
    for (let i = 0; i < events.length; i++) b.add(events[i]!);
    return b.build();
  }

  /** Position of the event with this seq, or -1. */
  indexOf(seq: number): number {
    const i = lowerBound(this.seqs, seq);
    return i < this.n && this.seqs[i] === seq ? i : -1;
  }
}

/** `bigger` holding `a` at its start. */
function grown<T extends Float64Array | Int32Array | Uint8Array>(a: T, bigger: T): T {
  bigger.set(a);
  return bigger;
}

/**
 * EventColumns one event at a time, in seq order (an event that goes back
 * is an error: a stream cannot be sorted afterwards). The columns grow by
 * doubling when the count was not known up front.
 */
class ColumnsBuilder {
  private n = 0;
  private seqs: Float64Array;
  private clk: Float64Array;
  private tcode: Int32Array;
  private kind: Uint8Array;
  private readonly codes = new Map<number, number>();
  private readonly threadOfCode: Array<number | null> = [null];
  private clockless = false;
  private t0: number | null = null;
  private prevSeq = -Infinity;
  private prevClock = 0;
  /** The last event's thread and its code: consecutive events of one thread skip the map. */
  private lastThread: number | null | undefined = undefined;
  private lastCode = 0;

  constructor(capacity = 1 << 16) {
    const c = Math.max(1, capacity);
    this.seqs = new Float64Array(c);
    this.clk = new Float64Array(c);
    this.tcode = new Int32Array(c);
    this.kind = new Uint8Array(c);
  }

  add(e: TraceEvent): void {
    const i = this.n;
    if (i === this.seqs.length) this.grow();
    const sq = e.seq;
    if (sq < this.prevSeq) throw new MigraceError('BAD_INPUT', `event ${sq} comes after event ${this.prevSeq}: the timeline needs the events in seq order`);
    this.prevSeq = sq;
    this.seqs[i] = sq;
    const t = e.t_ns;
    if (i === 0) this.t0 = t;
    if (t === null || this.t0 === null) this.clockless = true;
    else {
      // seq order is authoritative; a clock that runs backwards is clamped.
      const v = t - this.t0 > this.prevClock ? t - this.t0 : this.prevClock;
      this.clk[i] = v;
      this.prevClock = v;
    }
    const th = e.thread;
    if (th !== this.lastThread) {
      this.lastThread = th;
      if (th === null) this.lastCode = 0;
      else {
        let c = this.codes.get(th);
        if (c === undefined) {
          c = this.threadOfCode.length;
          this.codes.set(th, c);
          this.threadOfCode.push(th);
        }
        this.lastCode = c;
      }
    }
    this.tcode[i] = this.lastCode;
    this.kind[i] = kindCode(e.kind);
    this.n = i + 1;
  }

  /** The columns so far, trimmed to the events seen (views, not copies). */
  build(): EventColumns {
    const n = this.n;
    return new EventColumns(
      n, this.seqs.subarray(0, n), this.clk.subarray(0, n), this.tcode.subarray(0, n), this.kind.subarray(0, n),
      this.threadOfCode, this.clockless, this.t0,
    );
  }

  private grow(): void {
    const c = this.seqs.length * 2;
    this.seqs = grown(this.seqs, new Float64Array(c));
    this.clk = grown(this.clk, new Float64Array(c));
    this.tcode = grown(this.tcode, new Int32Array(c));
    this.kind = grown(this.kind, new Uint8Array(c));
  }
}

// ---------------------------------------------------------------------------
// Phase 2, clock.

/** Real time only when every event has one: a partial clock would put clockless events at arbitrary places. */
function chooseClock(cols: EventColumns): { clock: Clock; t0: number | null } {
  const clock: Clock = cols.n > 0 && !cols.clockless ? 'time' : 'order';
  if (clock === 'order') for (let i = 0; i < cols.n; i++) cols.clk[i] = i;
  return { clock, t0: clock === 'time' ? cols.t0 : null };
}

function tickLabel(cols: EventColumns, clock: Clock, i: number): string {
  return clock === 'time' ? `t=+${formatDuration(cols.clk[i]!)}` : `#${cols.seqs[i]!}`;
}

// ---------------------------------------------------------------------------
// Phase 3, lanes and citations.

/** Lanes: readers, then writers, then the rest in the order given, then the QMP client. */
class LaneSet {
  readonly lanes: Lane[] = [];
  readonly byTid = new Map<number, Thread>();
  private readonly laneOfTid = new Map<number, number>();
  /** Lane index per thread code of the columns. */
  private readonly laneOfCode: number[];

  constructor(threads: readonly Thread[], private readonly cols: EventColumns, findings: readonly Finding[], warnings: string[]) {
    for (const t of threads) this.byTid.set(t.tid, t);
    const roleOf = new Map<number, Set<'reader' | 'writer'>>();
    const addRole = (tid: number | null, r: 'reader' | 'writer'): void => {
      if (tid === null) return;
      const s = roleOf.get(tid) ?? new Set();
      s.add(r);
      roleOf.set(tid, s);
    };
    for (const f of findings) {
      addRole(f.reader.tid, 'reader');
      for (const c of f.crossing) addRole(c.thread.tid, 'writer');
    }
    const { threadOfCode, tcode } = cols;
    const perCode = new Array<number>(threadOfCode.length).fill(0);
    for (let i = 0; i < cols.n; i++) perCode[tcode[i]!]!++;
    const laneCounts = new Map<number | null, number>();
    threadOfCode.forEach((th, c) => {
      if (perCode[c]! > 0) laneCounts.set(th, perCode[c]!);
    });
    const threadList: Thread[] = [...threads];
    for (const tid of laneCounts.keys()) {
      if (tid !== null && !this.byTid.has(tid)) {
        const t: Thread = { tid, gdb_id: null, lwp: null, name: null };
        threadList.push(t);
        this.byTid.set(tid, t);
        warnings.push(`events name thread ${tid}, which the session does not list`);
      }
    }
    const rank = (t: Thread): number => {
      const r = roleOf.get(t.tid);
      if (r?.has('reader')) return 0;
      if (r?.has('writer')) return 1;
      return 2;
    };
    const ordered = threadList.map((t, i) => ({ t, i })).sort((a, b) => rank(a.t) - rank(b.t) || a.i - b.i).map((x) => x.t);
    for (const t of ordered) {
      const r = roleOf.get(t.tid);
      const role: Lane['role'] = r ? (r.has('reader') && r.has('writer') ? 'reader+writer' : r.has('reader') ? 'reader' : 'writer') : null;
      this.laneOfTid.set(t.tid, this.lanes.length);
      this.lanes.push({
        index: this.lanes.length, key: `tid:${t.tid}`, kind: 'thread', tid: t.tid, name: t.name, lwp: t.lwp,
        label: laneLabel(t), role, events: laneCounts.get(t.tid) ?? 0, top: 0, height: LANE_H, y: 0,
      });
    }
    let clientLane = -1;
    if (laneCounts.has(null)) {
      clientLane = this.lanes.length;
      this.lanes.push({
        index: clientLane, key: 'client', kind: 'client', tid: null, name: null, lwp: null,
        label: 'QMP client', role: null, events: laneCounts.get(null) ?? 0, top: 0, height: LANE_H, y: 0,
      });
    }
    this.lanes.forEach((l, i) => {
      l.top = TOP + i * LANE_H;
      l.y = l.top + LANE_H / 2;
    });
    this.laneOfCode = threadOfCode.map((th) => (th === null ? clientLane : this.laneOfTid.get(th)!));
  }

  /** The lane of the event at position i. */
  laneAt(i: number): number {
    return this.laneOfCode[this.cols.tcode[i]!]!;
  }

  laneOf(tid: number | null): number | null {
    return tid !== null ? this.laneOfTid.get(tid) ?? null : null;
  }

  /** A thread a finding names, labelled as its lane is. */
  label(ref: ThreadRef): string {
    const t = ref.tid !== null ? this.byTid.get(ref.tid) : undefined;
    return laneLabel(t ?? ref);
  }
}

/** What each event is to the findings: which findings cite it, and as what. */
class Citations {
  readonly findingsOfSeq = new Map<number, string[]>();
  /** read, crossing, publish, query-begin, query-end, reply. */
  readonly rolesOfSeq = new Map<number, string[]>();
  readonly classOfFinding = new Map<string, FindingClass>();

  constructor(findings: readonly Finding[]) {
    for (const f of findings) {
      this.classOfFinding.set(f.id, f.class);
      this.cite(f.read?.seq, f.id, 'read');
      for (const c of f.crossing) this.cite(c.seq, f.id, 'crossing');
      this.cite(f.publish?.seq, f.id, 'publish');
      this.cite(f.query?.begin_seq, f.id, 'query-begin');
      this.cite(f.query?.end_seq, f.id, 'query-end');
      this.cite(f.reply?.reply_seq, f.id, 'reply');
      for (const s of f.evidence) this.cite(s, f.id, null);
    }
  }

  private cite(seq: number | null | undefined, id: string, role: string | null): void {
    if (seq === null || seq === undefined) return;
    const f = this.findingsOfSeq.get(seq) ?? [];
    if (!f.includes(id)) f.push(id);
    this.findingsOfSeq.set(seq, f);
    if (role) {
      const r = this.rolesOfSeq.get(seq) ?? [];
      if (!r.includes(role)) r.push(role);
      this.rolesOfSeq.set(seq, r);
    }
  }
}

// ---------------------------------------------------------------------------
// Phase 4, selection.

/** A finding whose evidence spans more events than this is drawn around each cited event, not as one stretch. */
const MAX_WINDOW = 400;

type Item =
  | { type: 'mark'; i: number }
  | { type: 'bin'; from: number; to: number };

interface Selection {
  summarized: boolean;
  /** Per event position: 1 when drawn as a mark. */
  drawn: Uint8Array;
  /** Per event position: 1 when its mark carries a label. */
  labelled: Uint8Array;
  /** Findings whose evidence is drawn mark by mark. */
  fullFindings: Set<string>;
  /** Marks and bins, left to right. */
  items: Item[];
}

function evidenceRange(f: Finding, cols: EventColumns): [number, number] | null {
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of f.evidence) {
    const i = cols.indexOf(s);
    if (i < 0) continue;
    lo = Math.min(lo, i);
    hi = Math.max(hi, i);
  }
  return lo === Infinity ? null : [lo, hi];
}

/** Which events are drawn, and which of those get a label. */
function selectMarks(
  cols: EventColumns, findings: readonly Finding[], cites: Citations, o: Required<Omit<LayoutOptions, 'title'>>, warnings: string[],
): Selection {
  const n = cols.n;
  const summarized = n > o.summarizeAbove;
  const drawn = new Uint8Array(n);
  const labelled = new Uint8Array(n);
  const fullFindings = new Set<string>();
  if (!summarized) {
    drawn.fill(1);
    for (const f of findings) fullFindings.add(f.id);
  } else {
    let extra = 0;
    for (const f of findings) {
      if (fullFindings.size >= o.maxFullFindings) break;
      const r = evidenceRange(f, cols);
      if (!r) continue;
      fullFindings.add(f.id);
      if (r[1] - r[0] <= MAX_WINDOW) {
        for (let i = Math.max(0, r[0] - o.margin); i <= Math.min(n - 1, r[1] + o.margin); i++) drawn[i] = 1;
      } else {
        for (const s of f.evidence) {
          const i = cols.indexOf(s);
          if (i < 0) continue;
          for (let j = Math.max(0, i - o.margin); j <= Math.min(n - 1, i + o.margin); j++) drawn[j] = 1;
        }
      }
    }
    // Transitions, holds and releases are rare and say what the threads did:
    // keep them as marks while there are few enough.
    for (let i = 0; i < n && extra < 400; i++) {
      const k = cols.kind[i]!;
      if ((k === KIND_CODE.transition || k === KIND_CODE.hold || k === KIND_CODE.release) && !drawn[i]) {
        drawn[i] = 1;
        extra++;
      }
    }
    if (findings.length > fullFindings.size) {
      warnings.push(`${findings.length - fullFindings.size} of ${findings.length} findings are drawn over density bins, not event by event`);
    }
  }
  if (n <= o.labelAllBelow) {
    labelled.fill(1);
  } else {
    for (let i = 0; i < n; i++) {
      if (!drawn[i]) continue;
      const k = cols.kind[i]!;
      if (k === KIND_CODE.transition || k === KIND_CODE.hold || k === KIND_CODE.release || cites.findingsOfSeq.has(cols.seqs[i]!)) labelled[i] = 1;
    }
    // Everything inside a fully drawn finding's window is part of its story.
    for (const f of findings) {
      if (!fullFindings.has(f.id)) continue;
      const r = evidenceRange(f, cols);
      if (!r || r[1] - r[0] > MAX_WINDOW) continue;
      for (let i = r[0]; i <= r[1]; i++) if (drawn[i]) labelled[i] = 1;
    }
  }
  return { summarized, drawn, labelled, fullFindings, items: itemsOf(drawn, summarized, o.maxBins) };
}

/** Items in order: drawn marks, and density bins over the runs between them. */
function itemsOf(drawn: Uint8Array, summarized: boolean, maxBins: number): Item[] {
  const n = drawn.length;
  const items: Item[] = [];
  if (!summarized) {
    for (let i = 0; i < n; i++) items.push({ type: 'mark', i });
    return items;
  }
  let elided = 0;
  for (let i = 0; i < n; i++) if (!drawn[i]) elided++;
  let i = 0;
  while (i < n) {
    if (drawn[i]) {
      items.push({ type: 'mark', i });
      i++;
      continue;
    }
    let j = i;
    while (j < n && !drawn[j]) j++;
    const len = j - i;
    const k = Math.max(1, Math.min(len, Math.round((len / elided) * maxBins)));
    for (let b = 0; b < k; b++) {
      const from = i + Math.floor((b * len) / k);
      const to = i + Math.floor(((b + 1) * len) / k) - 1;
      if (to >= from) items.push({ type: 'bin', from, to });
    }
    i = j;
  }
  return items;
}

// ---------------------------------------------------------------------------
// Phase 5, placement.

/**
 * Horizontal spacing: a base spacing (wide next to labels, narrow between
 * dots), plus time scaled into the remaining width; gaps far longer than
 * the usual ones become breaks of fixed width.
 */
class Spacing {
  /** Clock time between item k-1's end and item k's start (0 inside a density strip). */
  private readonly gaps: Float64Array;
  /** Gaps above this are quiet stretches drawn as breaks. */
  private readonly cap: number;
  /** Pixels per clock unit. */
  private readonly scale: number;
  /** Left area holding lane labels. */
  readonly gutter: number;

  constructor(private readonly items: readonly Item[], cols: EventColumns, private readonly clock: Clock, private readonly labelled: Uint8Array, lanes: readonly Lane[], width: number) {
    const clk = cols.clk;
    const startClock = (it: Item): number => (it.type === 'mark' ? clk[it.i]! : clk[it.from]!);
    const endClock = (it: Item): number => (it.type === 'mark' ? clk[it.i]! : clk[it.to]!);
    const gaps = new Float64Array(items.length);
    for (let k = 1; k < items.length; k++) gaps[k] = Math.max(0, startClock(items[k]!) - endClock(items[k - 1]!));
    const span = items.length ? endClock(items[items.length - 1]!) - startClock(items[0]!) : 0;
    let cap = Infinity;
    if (clock === 'time' && items.length > 1) {
      // The 90th percentile is the session's own rhythm (the poll interval in a
      // recording); only gaps far beyond it are quiet stretches worth a break.
      const pos = Array.from(gaps.subarray(1)).filter((g) => g > 0).sort((a, b) => a - b);
      const p90 = pos.length ? pos[Math.min(pos.length - 1, Math.floor(pos.length * 0.9))]! : 0;
      cap = Math.max(20 * p90, span / 40, 1);
    }
    // Consecutive bins form one density strip: the ordinary time between them
    // is inside the strip, not spacing; only a quiet stretch breaks it.
    for (let k = 1; k < items.length; k++) {
      if (items[k]!.type === 'bin' && items[k - 1]!.type === 'bin' && gaps[k]! <= cap) gaps[k] = 0;
    }
    this.gaps = gaps;
    this.cap = cap;
    let baseTotal = 0;
    let timeTotal = 0;
    for (let k = 0; k < items.length; k++) {
      baseTotal += this.base(k) + (items[k]!.type === 'bin' ? BIN_W : 0);
      if (this.isBreak(k)) baseTotal += BREAK_W;
      else if (k > 0) timeTotal += Math.min(gaps[k]!, cap);
    }
    const longest = lanes.reduce((m, l) => Math.max(m, Array.from(l.label).length), 10);
    this.gutter = Math.min(260, Math.max(130, Math.ceil(longest * CHAR_W) + 24));
    const inner = Math.max(200, width - this.gutter - 40);
    const budget = Math.max(inner - baseTotal, inner * 0.3);
    this.scale = timeTotal > 0 ? budget / timeTotal : 0;
  }

  isBreak(k: number): boolean {
    return this.clock === 'time' && k > 0 && this.gaps[k]! > this.cap;
  }

  gap(k: number): number {
    return this.gaps[k]!;
  }

  /** Fixed spacing before item k. */
  base(k: number): number {
    if (k === 0) return 0;
    const a = this.items[k - 1]!;
    const b = this.items[k]!;
    if (a.type === 'bin' && b.type === 'bin') return 0;
    if (a.type === 'bin' || b.type === 'bin') return DOT_GAP + 2;
    return this.isLabelled(a) || this.isLabelled(b) ? LABEL_GAP : DOT_GAP;
  }

  /** From the previous item's right edge to item k's x, before label collisions push it on. */
  step(k: number): number {
    return k === 0 ? 0 : this.base(k) + (this.isBreak(k) ? BREAK_W : this.scale * Math.min(this.gaps[k]!, this.cap));
  }

  private isLabelled(it: Item): boolean {
    return it.type === 'mark' && this.labelled[it.i] === 1;
  }
}

/** Reply verdicts drawn beside the replies of findings. */
function replyVerdicts(findings: readonly Finding[]): Map<number, MarkVerdict> {
  const verdictOfReply = new Map<number, MarkVerdict>();
  for (const f of findings) {
    const v = f.reply;
    if (!v || v.reply_seq === null || verdictOfReply.has(v.reply_seq)) continue;
    const fails = v.old_libvirt === 'fails' || v.current_libvirt === 'fails';
    const text = v.old_libvirt === 'fails'
      ? `${f.id}: old libvirt fails${v.libvirt_error ? `: "${cleanText(v.libvirt_error)}"` : ''}`
      : v.current_libvirt === 'fails'
        ? `${f.id}: libvirt fails${v.libvirt_error ? `: "${cleanText(v.libvirt_error)}"` : ''}`
        : `${f.id}: libvirt accepts it`;
    verdictOfReply.set(v.reply_seq, { finding: f.id, text: truncate(text, 80), fails });
  }
  return verdictOfReply;
}

/** The reader's lane per crossing transition: its label goes on the side away from the reader, so the arrow does not run through it. */
function readerLanesOfCrossings(findings: readonly Finding[], lanes: LaneSet): Map<number, number> {
  const readerLaneOfCrossing = new Map<number, number>();
  for (const f of findings) {
    if (f.reader.tid === null) continue;
    const rl = lanes.laneOf(f.reader.tid);
    if (rl === null) continue;
    for (const c of f.crossing) if (!readerLaneOfCrossing.has(c.seq)) readerLaneOfCrossing.set(c.seq, rl);
  }
  return readerLaneOfCrossing;
}

function markLabel(e: TraceEvent, table: Session['target']['status_table']): string {
  return truncate(eventLabel(e, table), LABEL_MAX);
}

const labelWidth = (s: string): number => Math.ceil(Array.from(s).length * CHAR_W) + 8;

interface PlacementInput {
  cols: EventColumns;
  /** In seq order: position i is the columns' i. */
  events: readonly TraceEvent[];
  clock: Clock;
  lanes: LaneSet;
  sel: Selection;
  spacing: Spacing;
  cites: Citations;
  table: Session['target']['status_table'];
  findings: readonly Finding[];
}

/**
 * The left-to-right walk over the items: each mark goes at its time, pushed
 * right when its label would overprint the last label on its lane (two tiers
 * per lane: above and below the line). Its outputs are the marks, bins,
 * breaks and first ticks, and `right`, the drawing's right edge.
 */
class Placement {
  readonly marks: Mark[] = [];
  readonly bins: Bin[] = [];
  readonly breaks: Break[] = [];
  readonly ticks: Tick[] = [];
  /** Right edge of everything placed so far. */
  right: number;
  /** Right end of the last label per lane and tier (index lane * 2 + tier). */
  private readonly laneRight: Float64Array;
  /** Where the previous item ended. */
  private cursor: number;
  private prevSeqEnd = -1;
  private readonly verdictOfReply: Map<number, MarkVerdict>;
  private readonly readerLaneOfCrossing: Map<number, number>;
  private readonly markAt = new Map<number, Mark>();
  private binStarts: number[] = [];

  constructor(private readonly p: PlacementInput) {
    this.laneRight = new Float64Array(p.lanes.lanes.length * 2).fill(p.spacing.gutter);
    this.cursor = p.spacing.gutter + 14;
    this.right = this.cursor;
    this.verdictOfReply = replyVerdicts(p.findings);
    this.readerLaneOfCrossing = readerLanesOfCrossings(p.findings, p.lanes);
  }

  run(): this {
    const { items } = this.p.sel;
    const { spacing, cols, clock } = this.p;
    for (let k = 0; k < items.length; k++) {
      const it = items[k]!;
      const brk = spacing.isBreak(k);
      const x = this.cursor + spacing.step(k);
      if (brk) {
        const firstIndex = it.type === 'mark' ? it.i : it.from;
        this.breaks.push({
          afterSeq: this.prevSeqEnd, beforeSeq: cols.seqs[firstIndex]!,
          x0: this.cursor + spacing.base(k) / 2 + 2, x1: x - spacing.base(k) / 2 - 2, gap: spacing.gap(k),
          label: `+${formatDuration(spacing.gap(k))}`,
        });
      }
      if (it.type === 'mark') this.placeMark(it.i, x, k === 0 || brk);
      else this.placeBin(it.from, it.to, x, k === 0 || brk);
    }
    if (cols.n > 0 && clock === 'time' && items.length > 1) {
      const last = items[items.length - 1]!;
      const li = last.type === 'mark' ? last.i : last.to;
      this.ticks.push({ x: last.type === 'mark' ? this.cursor : this.cursor - BIN_W, label: `end ${tickLabel(cols, clock, li)}` });
    }
    for (const m of this.marks) this.markAt.set(m.index, m);
    this.binStarts = this.bins.map((b) => b.fromIndex);
    return this;
  }

  private placeMark(i: number, x0: number, tick: boolean): void {
    const { cols, events, lanes, sel, cites, table } = this.p;
    const laneRight = this.laneRight;
    const e = events[i]!;
    const lane = lanes.laneAt(i);
    const isLab = sel.labelled[i] === 1;
    const label = markLabel(e, table);
    const verdict = e.kind === 'reply' ? this.verdictOfReply.get(e.seq) ?? null : null;
    let x = x0;
    let tier: 0 | 1 = 0;
    if (isLab) {
      const w = labelWidth(label);
      const l0 = laneRight[lane * 2]!;
      const l1 = laneRight[lane * 2 + 1]!;
      if (verdict) {
        const need = Math.max(l0, l1) + 10;
        x = Math.max(x, need);
        tier = 0;
        laneRight[lane * 2] = x - 4 + w;
        laneRight[lane * 2 + 1] = x - 4 + Math.max(w, labelWidth(verdict.text));
      } else {
        const readerLane = this.readerLaneOfCrossing.get(e.seq);
        let allowed: Array<0 | 1> = [0, 1];
        if (readerLane !== undefined && readerLane !== lane) allowed = readerLane < lane ? [1] : [0];
        let best: 0 | 1 = allowed[0]!;
        let bestX = Infinity;
        for (const t of allowed) {
          const need = Math.max(x, laneRight[lane * 2 + t]! + 10);
          if (need < bestX) {
            bestX = need;
            best = t;
          }
        }
        x = bestX;
        tier = best;
        laneRight[lane * 2 + tier] = x - 4 + w;
      }
    }
    const roles = cites.rolesOfSeq.get(e.seq) ?? [];
    const fids = cites.findingsOfSeq.get(e.seq) ?? [];
    const classes = ['mark', `mark-${e.kind}`];
    if (fids.length) classes.push('evidence');
    for (const r of roles) if (r === 'crossing' || r === 'read' || r === 'publish') classes.push(r);
    // A publish that differs from what the reader's switch used.
    if (roles.includes('publish') && fids.some((id) => cites.classOfFinding.get(id) === 'manifested')) classes.push('spoiled');
    if (verdict) classes.push(verdict.fails ? 'verdict-fails' : 'verdict-accepts');
    if (!isLab) classes.push('dot');
    this.marks.push({
      seq: e.seq, index: i, kind: e.kind, event: e, lane, x, y: lanes.lanes[lane]!.y, clock: cols.clk[i]!,
      label, tooltip: '', labelled: isLab, tier, classes, findings: fids, roles, verdict,
    });
    if (tick) this.ticks.push({ x, label: tickLabel(cols, this.p.clock, i) });
    this.cursor = x;
    this.right = Math.max(this.right, x, isLab ? laneRight[lane * 2 + tier]! : x);
    if (verdict) this.right = Math.max(this.right, laneRight[lane * 2 + 1]!);
    this.prevSeqEnd = e.seq;
  }

  private placeBin(from: number, to: number, x: number, tick: boolean): void {
    const { cols, lanes, clock } = this.p;
    const perLane = new Array<number>(lanes.lanes.length).fill(0);
    const kindCounts = new Array<number>(KINDS.length).fill(0);
    for (let i = from; i <= to; i++) {
      perLane[lanes.laneAt(i)]!++;
      kindCounts[cols.kind[i]!]!++;
    }
    const kinds: Partial<Record<EventKind, number>> = {};
    kindCounts.forEach((c, k) => {
      if (c) kinds[KINDS[k]!] = c;
    });
    const count = to - from + 1;
    const bin: Bin = {
      fromSeq: cols.seqs[from]!, toSeq: cols.seqs[to]!, fromIndex: from, toIndex: to, count,
      x0: x, x1: x + BIN_W, clock0: cols.clk[from]!, clock1: cols.clk[to]!, perLane, kinds, tooltip: '',
    };
    bin.tooltip = binTooltip(bin, lanes.lanes, clock);
    this.bins.push(bin);
    if (tick) this.ticks.push({ x, label: tickLabel(cols, clock, from) });
    this.cursor = x + BIN_W;
    this.right = Math.max(this.right, this.cursor);
    this.prevSeqEnd = bin.toSeq;
  }

  /** The mark of the event at position i, if it is drawn as one. */
  markOf(i: number): Mark | undefined {
    return this.markAt.get(i);
  }

  /** x of any event: its mark, or its place inside the bin that holds it. */
  xOfIndex(i: number): { x: number; exact: boolean } {
    const m = this.markAt.get(i);
    if (m) return { x: m.x, exact: true };
    const b = this.bins[Math.max(0, lowerBound(this.binStarts, i + 1) - 1)];
    if (!b) return { x: this.p.spacing.gutter, exact: false };
    const f = b.count > 1 ? (i - b.fromIndex) / (b.count - 1) : 0.5;
    return { x: b.x0 + f * (b.x1 - b.x0), exact: false };
  }
}

// ---------------------------------------------------------------------------
// Phase 6, findings: views, bands and arrows.

/** Bands beyond this many are not drawn (their findings are still listed). */
const MAX_BANDS = 500;

/** A finding as the renderers show it; `drawn` tells whether the event at a position is drawn as a mark (null: the finding is not drawn in full). */
function findingView(f: Finding, session: Session, cols: EventColumns, lanes: LaneSet, drawn: ((i: number) => boolean) | null): FindingView {
  const table = session.target.status_table;
  const reader = lanes.label(f.reader);
  const read = f.read ? { seq: f.read.seq, value: displayStateName(f.read.value, table) } : null;
  const publish = f.publish ? { seq: f.publish.seq, value: displayStateName(f.publish.value, table) } : null;
  const crossing = f.crossing.map((c) => ({
    seq: c.seq, released: c.released_seq ?? null, thread: lanes.label(c.thread),
    lane: lanes.laneOf(c.thread.tid),
    old: displayStateName(c.old, table), new: displayStateName(c.new, table),
  }));
  const reply = f.reply ? { seq: f.reply.reply_seq, label: replyLabel(f.reply.status, f.reply.has_ram), verdict: f.reply } : null;
  const knownAs = f.class === 'manifested' && read?.value === 'setup' && publish?.value === 'active'
    && crossing.some((c) => c.old === 'setup' && c.new === 'active') && !(f.reply?.has_ram ?? false)
    ? 'LP#1994002' : null;
  const evidence = [...f.evidence].sort((a, b) => a - b);
  const drawnInFull = drawn !== null && evidence.every((s) => {
    const i = cols.indexOf(s);
    return i >= 0 && drawn(i);
  });
  return {
    id: f.id, cls: f.class, finding: f, lane: lanes.laneOf(f.reader.tid), reader, read, crossing, publish,
    query: f.query ? { id: f.query.id, begin: f.query.begin_seq, end: f.query.end_seq } : null,
    reply, evidence, drawnInFull, knownAs, explanation: explainFinding(f.class, reader, read, crossing, publish),
    reproduce: reproduceCommand(session, f),
  };
}

/**
 * The finding's window on the reader lane (read -> publish, else the query
 * window, else the evidence) and an arrow from each crossing transition into
 * it; null when there is no room left (`room`) or, with a warning, nothing
 * to draw it on.
 */
function bandAndArrows(
  v: FindingView, cols: EventColumns, lanes: LaneSet, placement: Placement, room: boolean, warnings: string[],
): { band: Band; arrows: Arrow[] } | null {
  const f = v.finding;
  const readerLane = v.lane;
  const fromSeq = f.read?.seq ?? f.query?.begin_seq ?? v.evidence[0];
  const toSeq = f.publish?.seq ?? f.query?.end_seq ?? v.evidence[v.evidence.length - 1];
  if (readerLane === null || fromSeq === undefined || fromSeq === null || toSeq === undefined || toSeq === null) {
    warnings.push(`${f.id}: no reader lane or window to draw`);
    return null;
  }
  const fi = cols.indexOf(fromSeq);
  const ti = cols.indexOf(toSeq);
  if (fi < 0 || ti < 0) {
    warnings.push(`${f.id}: cites events the session does not have (#${fromSeq}..#${toSeq})`);
    return null;
  }
  if (!room) return null;
  const a = placement.xOfIndex(fi);
  const b = placement.xOfIndex(ti);
  const ly = lanes.lanes[readerLane]!.y;
  const { read, publish, crossing, reader } = v;
  const band: Band = {
    finding: f.id, cls: f.class, lane: readerLane, fromSeq, toSeq,
    x0: Math.min(a.x, b.x) - 6, x1: Math.max(a.x, b.x) + 6, y0: ly - BAND_UP, y1: ly + BAND_DOWN,
    label: `${f.id} ${f.class}`,
    tooltip: `${f.id} (${f.class}): ${read ? `read ${read.value} #${read.seq}` : `query #${fromSeq}`} -> ${publish ? `publish ${publish.value} #${publish.seq}` : `#${toSeq}`} on ${reader}\n${crossing.map((c) => `crossed by ${c.thread}: ${c.old} -> ${c.new} #${c.seq}`).join('\n')}`,
    approximate: !(a.exact && b.exact),
  };
  const arrows: Arrow[] = [];
  for (const c of crossing) {
    // A held writer's swap happens at its release: the arrow starts there.
    const ci = c.released !== null && cols.indexOf(c.released) >= 0 ? cols.indexOf(c.released) : cols.indexOf(c.seq);
    if (ci < 0 || c.lane === null) continue;
    const cx = placement.xOfIndex(ci).x;
    const wy = lanes.lanes[c.lane]!.y;
    const down = c.lane < readerLane;
    // Into the window: clamp to the band in case a clock quirk put it outside.
    const tx = Math.min(Math.max(cx, band.x0 + 3), band.x1 - 3);
    arrows.push({
      finding: f.id, fromSeq: c.released ?? c.seq, toSeq: f.publish?.seq ?? f.query?.end_seq ?? null,
      fromLane: c.lane, toLane: readerLane,
      x1: cx, y1: down ? wy + 9 : wy - 9,
      x2: tx, y2: c.lane === readerLane ? ly : down ? band.y0 : band.y1,
      label: `${c.old} -> ${c.new} crossed ${f.id}`,
    });
  }
  return { band, arrows };
}

// ---------------------------------------------------------------------------
// Phase 7, ticks.

/** The placement's ticks plus one at each fully drawn finding's read, without ticks that would overprint a kept one. */
function keepTicks(placement: Placement, views: readonly FindingView[], cols: EventColumns, clock: Clock): Tick[] {
  const ticks = placement.ticks;
  for (const v of views) {
    if (!v.read || !v.drawnInFull) continue;
    const i = cols.indexOf(v.read.seq);
    const m = placement.markOf(i);
    if (m) ticks.push({ x: m.x, label: tickLabel(cols, clock, i) });
  }
  ticks.sort((a, b) => a.x - b.x);
  const kept: Tick[] = [];
  for (const tk of ticks) {
    const w = tk.label.length * 6 + 16;
    const prev = kept[kept.length - 1];
    if (prev && tk.x - prev.x < (w + prev.label.length * 6) / 2) {
      // Keep the end tick over the one it collides with.
      if (tk.label.startsWith('end ')) kept[kept.length - 1] = tk;
      continue;
    }
    kept.push(tk);
  }
  return kept;
}

// ---------------------------------------------------------------------------
// The layout: the phases in order.

/** Phases 1 to 3: what every rendering needs before anything is drawn. */
interface SessionReading {
  cols: EventColumns;
  clock: Clock;
  t0: number | null;
  /** Worst first. */
  findings: Finding[];
  lanes: LaneSet;
  cites: Citations;
  warnings: string[];
}

function readSession(threads: readonly Thread[], cols: EventColumns, analysis: Analysis | null): SessionReading {
  const warnings: string[] = [];
  const { clock, t0 } = chooseClock(cols);
  // Worst first, for the summarization budget.
  const findings = [...(analysis?.findings ?? [])].sort((a, b) => findingRank(a.class) - findingRank(b.class));
  const lanes = new LaneSet(threads, cols, findings, warnings);
  return { cols, clock, t0, findings, lanes, cites: new Citations(findings), warnings };
}

/**
 * Phases 1 to 3 for exports that write every event (perfetto.ts) and so
 * read the events twice, never holding them: see() takes the first pass
 * one event at a time, in seq order, keeping the columns only; facts()
 * then answers what the second pass asks of each event.
 */
export class TimelineFactsReader {
  private readonly columns = new ColumnsBuilder();

  see(e: TraceEvent): void {
    this.columns.add(e);
  }

  facts(session: Session, threads: readonly Thread[], analysis: Analysis | null): TimelineFacts {
    return new TimelineFacts(session, readSession(threads, this.columns.build(), analysis), analysis);
  }
}

/**
 * The session read as the layout reads it, without drawing anything. Per
 * event values go by the event's position in seq order in the first pass.
 */
export class TimelineFacts {
  readonly clock: Clock;
  /** First event's t_ns (time clock), else null. */
  readonly t0: number | null;
  readonly lanes: Lane[];
  /** Worst first; drawnInFull is false (nothing is drawn). */
  readonly findings: FindingView[];
  readonly verdict: { kind: VerdictKind; sentence: string };
  readonly warnings: string[];
  /** Events the first pass saw. */
  readonly count: number;
  private readonly verdicts: Map<number, MarkVerdict>;
  private readonly table: Session['target']['status_table'];

  constructor(session: Session, private readonly r: SessionReading, analysis: Analysis | null) {
    this.clock = r.clock;
    this.t0 = r.t0;
    this.lanes = r.lanes.lanes;
    this.findings = r.findings.map((f) => findingView(f, session, r.cols, r.lanes, null));
    this.verdict = sessionVerdict(session, this.findings, analysis);
    this.warnings = r.warnings;
    this.count = r.cols.n;
    this.verdicts = replyVerdicts(r.findings);
    this.table = session.target.status_table;
  }

  /** The seq of the event at position i. */
  seqAt(i: number): number {
    return this.r.cols.seqs[i]!;
  }

  /** ns since the first event (never backwards), or the position without a clock. */
  clockAt(i: number): number {
    return this.r.cols.clk[i]!;
  }

  laneAt(i: number): number {
    return this.r.lanes.laneAt(i);
  }

  /** Findings whose evidence cites an event. */
  findingsOf(seq: number): readonly string[] {
    return this.r.cites.findingsOfSeq.get(seq) ?? [];
  }

  /** The verdict beside a finding's reply. */
  replyVerdict(seq: number): MarkVerdict | null {
    return this.verdicts.get(seq) ?? null;
  }

  /** Short label of an event (eventLabel, truncated like a mark's). */
  labelOf(e: TraceEvent): string {
    return markLabel(e, this.table);
  }

  /** The session has an event with this seq. */
  has(seq: number): boolean {
    return this.r.cols.indexOf(seq) >= 0;
  }
}

/**
 * Lay out a session. `threads` gives the lanes (one per thread, in this order
 * except that readers and writers of findings come first), `events` the marks
 * (any order; sorted by seq here), `analysis` the findings (null: none yet).
 */
export function layoutTimeline(
  session: Session,
  threads: readonly Thread[],
  events: readonly TraceEvent[],
  analysis: Analysis | null,
  opts: LayoutOptions = {},
): TimelineLayout {
  const o = { ...DEFAULTS, ...opts };
  const table = session.target.status_table;
  const sorted = inSeqOrder(events);
  const { cols, clock, t0, findings, lanes, cites, warnings } = readSession(threads, EventColumns.of(sorted), analysis);
  const sel = selectMarks(cols, findings, cites, o, warnings);
  const spacing = new Spacing(sel.items, cols, clock, sel.labelled, lanes.lanes, o.width);
  const placement = new Placement({ cols, events: sorted, clock, lanes, sel, spacing, cites, table, findings }).run();

  const views: FindingView[] = [];
  const bands: Band[] = [];
  const arrows: Arrow[] = [];
  for (const f of findings) {
    const v = findingView(f, session, cols, lanes, sel.fullFindings.has(f.id) ? (i) => placement.markOf(i) !== undefined : null);
    views.push(v);
    const drawn = bandAndArrows(v, cols, lanes, placement, bands.length < MAX_BANDS, warnings);
    if (!drawn) continue;
    bands.push(drawn.band);
    arrows.push(...drawn.arrows);
  }

  for (const m of placement.marks) m.tooltip = markTooltip(m, cols.n, lanes.lanes, clock, t0, table, views);
  const ticks = keepTicks(placement, views, cols, clock);

  const verdict = sessionVerdict(session, views, analysis);
  const width = Math.ceil(Math.max(o.width, placement.right + 40));
  const height = TOP + lanes.lanes.length * LANE_H + BOTTOM;
  const title = o.title ?? `migrace session ${session.id}: ${cleanText(session.label)}`;
  return {
    session: { id: session.id, label: cleanText(session.label), origin: session.origin, state: session.state },
    title: truncate(title, 140), clock, width, height, gutter: spacing.gutter, top: TOP, lanes: lanes.lanes,
    marks: placement.marks, bands, arrows, breaks: placement.breaks, bins: placement.bins, ticks,
    findings: views, verdict, summarized: sel.summarized, totalEvents: cols.n, t0, warnings,
  };
}
