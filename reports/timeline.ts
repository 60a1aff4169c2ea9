import type { Session, StateValue, Thread, TraceEvent, EventKind } from '../trace/schema.js';
import type { Analysis, Finding, FindingClass, ThreadRef, Verdict } from '../analyzer/types.js';
import { RAM_REQUIRED_BY_OLD_LIBVIRT, normalizeStatusName } from '../trace/status.js';
import { stateName as analyzerStateName } from '../analyzer/interleavings.js';
import { SCENARIOS } from '../analyzer/schedule.js';

/*
 * The one timeline layout every renderer draws from: lanes per thread, one
 * mark per event (or density bins for large sessions), the read->publish
 * window of each finding as a band and an arrow from the crossing transition
 * into it. Pure: data in, plain data out. Coordinates are SVG pixels; the text
 * and Perfetto renderers use the order, lanes, labels and clock values only.
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
export type VerdictKind = 'reproduced' | 'not-reproduced' | 'undetermined' | 'replies-fail' | 'clean' | 'unanalyzed';

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

// ---------------------------------------------------------------------------
// Text helpers shared by every renderer.

/**
 * Make trace text safe to show on one line: control characters, bidi
 * overrides (which can make a thread name read as something else) and lone
 * surrogates become U+FFFD; newlines and tabs become spaces.
 */
export function cleanText(s: string): string {
  return s
    .replace(/[\t\n\r]/g, ' ')
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069\ufeff]/g, '\ufffd')
    .replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

/** cleanText line by line: for tooltips, which keep their line breaks. */
export function cleanMultiline(s: string): string {
  return s.split('\n').map(cleanText).join('\n');
}

export function truncate(s: string, max: number): string {
  const chars = Array.from(s);
  if (chars.length <= max) return s;
  return `${chars.slice(0, Math.max(0, max - 1)).join('')}\u2026`;
}

/** Split at spaces into at most `maxLines` lines of `width` characters; the last one is cut with an ellipsis. */
export function wrapWords(s: string, width: number, maxLines = Infinity): string[] {
  const words = s.split(/ +/);
  const lines: string[] = [];
  let cur = '';
  for (const w of words) {
    const chunks = Array.from(w).length > width ? (w.match(new RegExp(`.{1,${width}}`, 'gu')) ?? [w]) : [w];
    for (const c of chunks) {
      if (!cur) cur = c;
      else if (Array.from(cur).length + 1 + Array.from(c).length <= width) cur += ` ${c}`;
      else {
        lines.push(cur);
        cur = c;
      }
    }
  }
  if (cur) lines.push(cur);
  if (lines.length > maxLines) {
    const kept = lines.slice(0, maxLines);
    kept[maxLines - 1] = truncate(`${kept[maxLines - 1]} ${lines[maxLines]}`, width);
    return kept;
  }
  return lines;
}

/** "12 ns", "3.4 us", "12.345 ms", "1.234 s". ASCII so it pastes anywhere. */
export function formatDuration(ns: number): string {
  const a = Math.abs(ns);
  if (a < 1_000) return `${Math.round(ns)} ns`;
  if (a < 1_000_000) return `${(ns / 1_000).toFixed(1)} us`;
  if (a < 1_000_000_000) return `${(ns / 1_000_000).toFixed(3)} ms`;
  return `${(ns / 1_000_000_000).toFixed(3)} s`;
}

// Not analyzer/interleavings.ts threadLabel on purpose: a lane label, cleaned and never empty ("unknown thread (LWP n)", not a sentence's "LWP n").
export function threadLabel(t: { name: string | null; lwp: number | null; tid: number | null }): string {
  const name = t.name ? cleanText(t.name) : t.tid !== null ? `thread ${t.tid}` : 'unknown thread';
  if (t.lwp !== null) return `${name} (LWP ${t.lwp})`;
  return name;
}

/** The analyzer's state name, cleaned for display, and "?" where it has none. */
export function stateName(v: StateValue | null | undefined, table: Session['target']['status_table']): string {
  return cleanText(analyzerStateName(v, table) ?? '?');
}

function needsRam(status: string | null): boolean {
  return status !== null && RAM_REQUIRED_BY_OLD_LIBVIRT.has(normalizeStatusName(status));
}

export function replyLabel(status: string | null, hasRam: boolean): string {
  if (status === null) return 'reply {} (no status)';
  const s = cleanText(normalizeStatusName(status));
  if (needsRam(s) || hasRam) return `reply ${s}, ${hasRam ? 'ram' : 'no ram'}`;
  return `reply ${s}`;
}

/** One short label per event: `setup -> active`, `read setup`, `publish active`, `reply active, no ram`. */
export function eventLabel(e: TraceEvent, table: Session['target']['status_table']): string {
  switch (e.kind) {
    case 'transition':
      return `${stateName(e.data.old, table)} -> ${stateName(e.data.new, table)}`;
    case 'read':
      return `read ${stateName(e.data.value, table)}`;
    case 'publish':
      return `publish ${stateName(e.data.value, table)}`;
    case 'query-begin':
      return 'query begin';
    case 'query-end':
      return 'query end';
    case 'reply':
      return replyLabel(e.data.status, e.data.has_ram);
    case 'hold':
      return `hold ${cleanText(e.data.role)}`;
    case 'release':
      return `release ${cleanText(e.data.role)}`;
    case 'note':
      return `note: ${cleanText(e.data.text)}`;
  }
}

function valueText(v: StateValue | null, table: Session['target']['status_table']): string {
  if (!v) return '?';
  const name = stateName(v, table);
  return v.value !== null ? `${name} (${v.value})` : name;
}

function compactJson(body: unknown, max: number): string {
  let s: string;
  try {
    s = typeof body === 'string' ? body : JSON.stringify(body) ?? 'undefined';
  } catch {
    s = String(body);
  }
  return truncate(cleanText(s), max);
}

// ---------------------------------------------------------------------------
// Reproduction command and verdict sentence.

/**
 * What must not reach a terminal raw when a command is pasted: C0 and C1
 * controls, DEL, bidi embeddings, overrides and isolates, BOM, line and
 * paragraph separators, lone surrogates.
 */
const UNSAFE_IN_SHELL = String.raw`[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]`;
const SHELL_UNSAFE = new RegExp(UNSAFE_IN_SHELL);
/** What $'...' writes as an escape: the unsafe characters, and the backslash and quote it must escape. */
const ANSI_C_ESCAPE = new RegExp(String.raw`[\\']|${UNSAFE_IN_SHELL}`, 'g');

/**
 * Shell quoting for a word that may hold anything: bare when plain,
 * 'single-quoted' otherwise, and bash $'...' with \xHH / \uHHHH escapes when
 * it holds a character of SHELL_UNSAFE, so the command shows and pastes as
 * printable text yet still names the same bytes.
 */
export function shellQuote(s: string): string {
  if (/^[A-Za-z0-9_\/.,:=+@%-]+$/.test(s)) return s;
  if (!SHELL_UNSAFE.test(s)) return `'${s.replace(/'/g, `'\\''`)}'`;
  return `$'${s.replace(ANSI_C_ESCAPE, (c) => {
    if (c === '\\' || c === "'") return `\\${c}`;
    const n = c.charCodeAt(0);
    return n < 0x80 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
  })}'`;
}

/** The built-in scenario that forces `old -> new` after a read of `old`, if there is one. */
function scenarioFor(oldName: string, newName: string): string | null {
  for (const [name, make] of Object.entries(SCENARIOS)) {
    const roles = make().roles;
    const w = Object.values(roles).find((r) => r.probe === 'transition')?.when;
    // A writer that names no old state (into-completed) forces the step from whatever state precedes `new`.
    if (w && (w.old === undefined || w.old === oldName) && w.new === newName) return name;
  }
  return null;
}

/**
 * The command that forces the finding again (cli/replay.ts). A built-in
 * scenario when one forces the finding's crossing transition (a bug comment
 * reader has no database), else `--finding SESSION:ID` with the session's
 * database when the session knows it. Target kind, binary and variant come
 * from the session: minimig's two bundled builds are chosen by --patched,
 * another minimig binary by --binary; for QEMU the binary is the variant.
 */
export function reproduceCommand(session: Session, finding?: Finding | null): string {
  const meta = session.meta ?? {};
  const table = session.target.status_table;
  const parts = ['migrace', 'replay'];
  const x = finding?.crossing[0];
  const fromFinding = x ? scenarioFor(stateName(x.old, table), stateName(x.new, table)) : null;
  const metaScenario = typeof meta['scenario'] === 'string' && Object.hasOwn(SCENARIOS, meta['scenario']) ? meta['scenario'] : null;
  const db = typeof meta['db'] === 'string' ? meta['db'] : null;
  if (fromFinding) parts.push('--scenario', fromFinding);
  else if (finding && x) {
    parts.push('--finding', `${session.id}:${shellQuote(finding.id)}`);
    if (db) parts.push('--db', shellQuote(db));
  } else parts.push('--scenario', metaScenario ?? 'lp1994002');

  const t = session.target;
  if (t.kind === 'minimig') {
    parts.push('--target', 'minimig');
    const base = t.binary ? t.binary.split('/').pop() : null;
    if (t.binary && base !== 'minimig' && base !== 'minimig-patched') parts.push('--binary', shellQuote(t.binary));
    else if (t.variant === 'patched' || base === 'minimig-patched') parts.push('--patched');
  } else {
    const metaQemu = typeof meta['qemu'] === 'string' ? meta['qemu'] : null;
    const bin = t.binary ?? metaQemu;
    parts.push('--target', 'qemu', '--qemu', bin ? shellQuote(bin) : '/path/to/qemu-system-x86_64');
  }
  return parts.join(' ');
}

function findingRank(c: FindingClass): number {
  return c === 'manifested' ? 0 : c === 'window-only' ? 1 : 2;
}

function quoteStatus(status: string | null): string {
  return status === null ? '{}' : `"${cleanText(status)}"`;
}

function libvirtClause(v: Verdict): string {
  if (v.old_libvirt === 'fails') {
    const err = v.libvirt_error ? ` with "${cleanText(v.libvirt_error)}"` : '';
    const cur = v.current_libvirt === 'accepts' ? ' (current libvirt tolerates it)' : '';
    return `old libvirt fails the migration job${err}${cur}`;
  }
  if (v.current_libvirt === 'fails') return `current libvirt fails it ("${cleanText(v.libvirt_error ?? 'error')}")`;
  return 'libvirt accepts it';
}

function sessionVerdict(views: FindingView[], analysis: Analysis | null): { kind: VerdictKind; sentence: string } {
  if (!analysis) return { kind: 'unanalyzed', sentence: 'Not analyzed: this session has no findings or reply verdicts yet.' };
  const manifested = views.filter((f) => f.cls === 'manifested');
  const more = (n: number, what: string): string => (n > 1 ? ` (${n} ${what} in this session)` : '');
  if (manifested.length > 0) {
    const f = manifested[0]!;
    const x = f.crossing[0];
    const head = f.knownAs ? `Reproduced ${f.knownAs}` : 'Race manifested';
    const what = x
      ? `${x.thread} moved ${x.old} -> ${x.new} after ${f.reader} read ${f.read?.value ?? '?'}${f.publish ? ` and before it published ${f.publish.value}` : ''}`
      : `${f.reader} published ${f.publish?.value ?? '?'} after reading ${f.read?.value ?? '?'}`;
    const sh = f.reply?.verdict.shape;
    // A reply with ram can still be wrong: fields of another status (the 7.2 re-reads).
    const shape = sh && f.reply!.verdict.has_ram && sh.foreign.length
      ? ` but with the fields of another status (foreign ${sh.foreign.map(cleanText).join(', ')}${sh.missing.length ? `; missing ${sh.missing.map(cleanText).join(', ')}` : ''})`
      : '';
    const reply = f.reply
      ? `, so the reply said ${quoteStatus(f.reply.verdict.status)} ${f.reply.verdict.has_ram ? 'with' : 'without'} ram${shape} and ${libvirtClause(f.reply.verdict)}`
      : '';
    return { kind: 'reproduced', sentence: `${head}: ${what}${reply}.${more(manifested.length, 'manifested findings')}` };
  }
  const windowOnly = views.filter((f) => f.cls === 'window-only');
  if (windowOnly.length > 0) {
    const f = windowOnly[0]!;
    const x = f.crossing[0];
    const reply = f.reply ? ` The reply said ${quoteStatus(f.reply.verdict.status)} ${f.reply.verdict.has_ram ? 'with' : 'without'} ram: ${libvirtClause(f.reply.verdict)}.` : '';
    return {
      kind: 'undetermined',
      sentence: `Undetermined: ${x ? `${x.thread} moved ${x.old} -> ${x.new}` : 'a transition happened'} inside a query window of ${f.reader}, but no read/publish probes saw what it published.${reply}${more(windowOnly.length, 'such windows')}`,
    };
  }
  const benign = views.filter((f) => f.cls === 'benign');
  if (benign.length > 0) {
    const f = benign[0]!;
    const x = f.crossing[0];
    const reply = f.reply ? `; the reply ${quoteStatus(f.reply.verdict.status)} is consistent and ${libvirtClause(f.reply.verdict)}` : '';
    return {
      kind: 'not-reproduced',
      sentence: `Not reproduced: ${x ? `${x.thread} moved ${x.old} -> ${x.new}` : 'a transition happened'} inside the query window, but ${f.reader} published what it read (${f.read?.value ?? '?'})${reply}.${more(benign.length, 'benign crossings')}`,
    };
  }
  const failing = analysis.replies.filter((r) => r.old_libvirt === 'fails' || r.current_libvirt === 'fails');
  if (failing.length > 0) {
    const r = failing[0]!;
    return {
      kind: 'replies-fail',
      sentence: `No read-then-transition interleaving was recorded, but ${failing.length} of ${analysis.replies.length} replies fail libvirt: ${cleanText(r.summary)}.`,
    };
  }
  return {
    kind: 'clean',
    sentence: `No read-then-transition interleaving in ${analysis.replies.length} ${analysis.replies.length === 1 ? 'reply' : 'replies'}; every reply is consistent and libvirt accepts it.`,
  };
}

// ---------------------------------------------------------------------------
// The layout.

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

type Item =
  | { type: 'mark'; i: number }
  | { type: 'bin'; from: number; to: number };

function refLabel(ref: ThreadRef, byTid: Map<number, Thread>): string {
  const t = ref.tid !== null ? byTid.get(ref.tid) : undefined;
  if (t) return threadLabel(t);
  return threadLabel(ref);
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
  const warnings: string[] = [];

  // One pass over the event objects into typed arrays: on a million events
  // each pass over the objects costs far more than the arithmetic after it.
  // Few typed arrays, too: they count as external memory and a large enough
  // allocation makes V8 collect the whole (event-laden) heap.
  const extract = (evs: readonly TraceEvent[]) => {
    const m = evs.length;
    const seqs = new Float64Array(m);
    const clk = new Float64Array(m);
    const tcode = new Int32Array(m);
    const kind = new Uint8Array(m);
    // Thread ids as small codes: 0 is "no thread" (the QMP client).
    const codes = new Map<number, number>();
    const threadOfCode: Array<number | null> = [null];
    let ordered = true;
    let clockless = false;
    let prev = -Infinity;
    let lastThread: number | null | undefined;
    let lastCode = 0;
    const t0 = m > 0 ? evs[0]!.t_ns : null;
    let prevClock = 0;
    for (let i = 0; i < m; i++) {
      const e = evs[i]!;
      const sq = e.seq;
      if (sq <= prev) ordered = false;
      prev = sq;
      seqs[i] = sq;
      const t = e.t_ns;
      if (t === null || t0 === null) clockless = true;
      else {
        // seq order is authoritative; a clock that runs backwards is clamped.
        const v = t - t0 > prevClock ? t - t0 : prevClock;
        clk[i] = v;
        prevClock = v;
      }
      const th = e.thread;
      if (th !== lastThread) {
        lastThread = th;
        if (th === null) lastCode = 0;
        else {
          let c = codes.get(th);
          if (c === undefined) {
            c = threadOfCode.length;
            codes.set(th, c);
            threadOfCode.push(th);
          }
          lastCode = c;
        }
      }
      tcode[i] = lastCode;
      kind[i] = kindCode(e.kind);
    }
    return { seqs, clk, tcode, kind, threadOfCode, ordered, clockless, t0 };
  };
  let sorted: readonly TraceEvent[] = events;
  let ex = extract(events);
  if (!ex.ordered) {
    sorted = [...events].sort((a, b) => a.seq - b.seq);
    ex = extract(sorted);
  }
  const n = sorted.length;
  const { seqs, clk, tcode, kind: kindOf, threadOfCode } = ex;
  const indexOf = (seq: number): number => {
    const i = lowerBound(seqs, seq);
    return i < n && seqs[i] === seq ? i : -1;
  };

  // Clock: real time only when every event has one; a partial clock would
  // put clockless events at arbitrary places.
  const clock: Clock = n > 0 && !ex.clockless ? 'time' : 'order';
  const t0 = clock === 'time' ? ex.t0 : null;
  if (clock === 'order') for (let i = 0; i < n; i++) clk[i] = i;

  // Findings, worst first for the summarization budget.
  const findings = [...(analysis?.findings ?? [])].sort((a, b) => findingRank(a.class) - findingRank(b.class));
  const byTid = new Map<number, Thread>();
  for (const t of threads) byTid.set(t.tid, t);

  // Lanes: readers, then writers, then the rest as given, then the client.
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
  const perCode = new Array<number>(threadOfCode.length).fill(0);
  for (let i = 0; i < n; i++) perCode[tcode[i]!]!++;
  const laneCounts = new Map<number | null, number>();
  threadOfCode.forEach((th, c) => {
    if (perCode[c]! > 0) laneCounts.set(th, perCode[c]!);
  });
  const threadList: Thread[] = [...threads];
  for (const tid of laneCounts.keys()) {
    if (tid !== null && !byTid.has(tid)) {
      const t: Thread = { tid, gdb_id: null, lwp: null, name: null };
      threadList.push(t);
      byTid.set(tid, t);
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
  const lanes: Lane[] = [];
  const laneOfTid = new Map<number, number>();
  for (const t of ordered) {
    const r = roleOf.get(t.tid);
    const role: Lane['role'] = r ? (r.has('reader') && r.has('writer') ? 'reader+writer' : r.has('reader') ? 'reader' : 'writer') : null;
    laneOfTid.set(t.tid, lanes.length);
    lanes.push({
      index: lanes.length, key: `tid:${t.tid}`, kind: 'thread', tid: t.tid, name: t.name, lwp: t.lwp,
      label: threadLabel(t), role, events: laneCounts.get(t.tid) ?? 0, top: 0, height: LANE_H, y: 0,
    });
  }
  let clientLane = -1;
  if (laneCounts.has(null)) {
    clientLane = lanes.length;
    lanes.push({
      index: clientLane, key: 'client', kind: 'client', tid: null, name: null, lwp: null,
      label: 'QMP client', role: null, events: laneCounts.get(null) ?? 0, top: 0, height: LANE_H, y: 0,
    });
  }
  lanes.forEach((l, i) => {
    l.top = TOP + i * LANE_H;
    l.y = l.top + LANE_H / 2;
  });
  const laneOfCode = threadOfCode.map((th) => (th === null ? clientLane : laneOfTid.get(th)!));
  const laneAt = (i: number): number => laneOfCode[tcode[i]!]!;

  // What each event is to the findings.
  const findingsOfSeq = new Map<number, string[]>();
  const rolesOfSeq = new Map<number, string[]>();
  const cite = (seq: number | null | undefined, id: string, role: string | null): void => {
    if (seq === null || seq === undefined) return;
    const f = findingsOfSeq.get(seq) ?? [];
    if (!f.includes(id)) f.push(id);
    findingsOfSeq.set(seq, f);
    if (role) {
      const r = rolesOfSeq.get(seq) ?? [];
      if (!r.includes(role)) r.push(role);
      rolesOfSeq.set(seq, r);
    }
  };
  const classOfFinding = new Map<string, FindingClass>();
  for (const f of findings) {
    classOfFinding.set(f.id, f.class);
    cite(f.read?.seq, f.id, 'read');
    for (const c of f.crossing) cite(c.seq, f.id, 'crossing');
    cite(f.publish?.seq, f.id, 'publish');
    cite(f.query?.begin_seq, f.id, 'query-begin');
    cite(f.query?.end_seq, f.id, 'query-end');
    cite(f.reply?.reply_seq, f.id, 'reply');
    for (const s of f.evidence) cite(s, f.id, null);
  }

  // Which events are drawn, and which of those get a label.
  const summarized = n > o.summarizeAbove;
  const drawn = new Uint8Array(n);
  const labelled = new Uint8Array(n);
  const fullFindings = new Set<string>();
  const evidenceRange = (f: Finding): [number, number] | null => {
    let lo = Infinity;
    let hi = -Infinity;
    for (const s of f.evidence) {
      const i = indexOf(s);
      if (i < 0) continue;
      lo = Math.min(lo, i);
      hi = Math.max(hi, i);
    }
    return lo === Infinity ? null : [lo, hi];
  };
  const MAX_WINDOW = 400;
  if (!summarized) {
    drawn.fill(1);
    for (const f of findings) fullFindings.add(f.id);
  } else {
    let extra = 0;
    for (const f of findings) {
      if (fullFindings.size >= o.maxFullFindings) break;
      const r = evidenceRange(f);
      if (!r) continue;
      fullFindings.add(f.id);
      if (r[1] - r[0] <= MAX_WINDOW) {
        for (let i = Math.max(0, r[0] - o.margin); i <= Math.min(n - 1, r[1] + o.margin); i++) drawn[i] = 1;
      } else {
        for (const s of f.evidence) {
          const i = indexOf(s);
          if (i < 0) continue;
          for (let j = Math.max(0, i - o.margin); j <= Math.min(n - 1, i + o.margin); j++) drawn[j] = 1;
        }
      }
    }
    // Transitions, holds and releases are rare and say what the threads did:
    // keep them as marks while there are few enough.
    for (let i = 0; i < n && extra < 400; i++) {
      const k = kindOf[i]!;
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
      const e = sorted[i]!;
      if (e.kind === 'transition' || e.kind === 'hold' || e.kind === 'release' || findingsOfSeq.has(e.seq)) labelled[i] = 1;
    }
    // Everything inside a fully drawn finding's window is part of its story.
    for (const f of findings) {
      if (!fullFindings.has(f.id)) continue;
      const r = evidenceRange(f);
      if (!r || r[1] - r[0] > MAX_WINDOW) continue;
      for (let i = r[0]; i <= r[1]; i++) if (drawn[i]) labelled[i] = 1;
    }
  }

  // Items in order: drawn marks and density bins over the runs between them.
  const items: Item[] = [];
  if (!summarized) {
    for (let i = 0; i < n; i++) items.push({ type: 'mark', i });
  } else {
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
      const k = Math.max(1, Math.min(len, Math.round((len / elided) * o.maxBins)));
      for (let b = 0; b < k; b++) {
        const from = i + Math.floor((b * len) / k);
        const to = i + Math.floor(((b + 1) * len) / k) - 1;
        if (to >= from) items.push({ type: 'bin', from, to });
      }
      i = j;
    }
  }

  // Horizontal placement: a base spacing (wide next to labels, narrow between
  // dots), plus time scaled into the remaining width; gaps far longer than
  // the usual ones become breaks of fixed width.
  const startClock = (it: Item): number => (it.type === 'mark' ? clk[it.i]! : clk[it.from]!);
  const endClock = (it: Item): number => (it.type === 'mark' ? clk[it.i]! : clk[it.to]!);
  const isLabelled = (it: Item): boolean => it.type === 'mark' && labelled[it.i] === 1;
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
  const isBreak = (k: number): boolean => clock === 'time' && k > 0 && gaps[k]! > cap;
  const base = (k: number): number => {
    if (k === 0) return 0;
    const a = items[k - 1]!;
    const b = items[k]!;
    if (a.type === 'bin' && b.type === 'bin') return 0;
    if (a.type === 'bin' || b.type === 'bin') return DOT_GAP + 2;
    return isLabelled(a) || isLabelled(b) ? LABEL_GAP : DOT_GAP;
  };
  let baseTotal = 0;
  let timeTotal = 0;
  for (let k = 0; k < items.length; k++) {
    baseTotal += base(k) + (items[k]!.type === 'bin' ? BIN_W : 0);
    if (isBreak(k)) baseTotal += BREAK_W;
    else if (k > 0) timeTotal += Math.min(gaps[k]!, cap);
  }

  const longest = lanes.reduce((m, l) => Math.max(m, Array.from(l.label).length), 10);
  const gutter = Math.min(260, Math.max(130, Math.ceil(longest * CHAR_W) + 24));
  const inner = Math.max(200, o.width - gutter - 40);
  const budget = Math.max(inner - baseTotal, inner * 0.3);
  const scale = timeTotal > 0 ? budget / timeTotal : 0;

  const labelOf = (e: TraceEvent): string => truncate(eventLabel(e, table), LABEL_MAX);
  const labelWidth = (s: string): number => Math.ceil(Array.from(s).length * CHAR_W) + 8;

  // Reply verdicts beside the replies of findings.
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

  // Crossing transitions put their label on the side away from the reader so
  // the arrow does not run through it.
  const readerLaneOfCrossing = new Map<number, number>();
  for (const f of findings) {
    if (f.reader.tid === null) continue;
    const rl = laneOfTid.get(f.reader.tid);
    if (rl === undefined) continue;
    for (const c of f.crossing) if (!readerLaneOfCrossing.has(c.seq)) readerLaneOfCrossing.set(c.seq, rl);
  }

  const marks: Mark[] = [];
  const bins: Bin[] = [];
  const breaks: Break[] = [];
  const ticks: Tick[] = [];
  const laneRight = new Float64Array(lanes.length * 2).fill(gutter);
  let cursor = gutter + 14;
  let right = cursor;
  let prevSeqEnd = -1;

  const tickLabel = (i: number): string =>
    clock === 'time' ? `t=+${formatDuration(clk[i]!)}` : `#${sorted[i]!.seq}`;

  for (let k = 0; k < items.length; k++) {
    const it = items[k]!;
    const brk = isBreak(k);
    const step = k === 0 ? 0 : base(k) + (brk ? BREAK_W : scale * Math.min(gaps[k]!, cap));
    let x = cursor + step;
    const firstIndex = it.type === 'mark' ? it.i : it.from;
    if (brk) {
      breaks.push({
        afterSeq: prevSeqEnd, beforeSeq: sorted[firstIndex]!.seq,
        x0: cursor + base(k) / 2 + 2, x1: x - base(k) / 2 - 2, gap: gaps[k]!,
        label: `+${formatDuration(gaps[k]!)}`,
      });
    }
    if (it.type === 'mark') {
      const e = sorted[it.i]!;
      const lane = laneAt(it.i);
      const isLab = labelled[it.i] === 1;
      const label = labelOf(e);
      const verdict = e.kind === 'reply' ? verdictOfReply.get(e.seq) ?? null : null;
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
          const readerLane = readerLaneOfCrossing.get(e.seq);
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
      const roles = rolesOfSeq.get(e.seq) ?? [];
      const fids = findingsOfSeq.get(e.seq) ?? [];
      const classes = ['mark', `mark-${e.kind}`];
      if (fids.length) classes.push('evidence');
      for (const r of roles) if (r === 'crossing' || r === 'read' || r === 'publish') classes.push(r);
      // A publish that differs from what the reader's switch used.
      if (roles.includes('publish') && fids.some((id) => classOfFinding.get(id) === 'manifested')) classes.push('spoiled');
      if (verdict) classes.push(verdict.fails ? 'verdict-fails' : 'verdict-accepts');
      if (!isLab) classes.push('dot');
      marks.push({
        seq: e.seq, index: it.i, kind: e.kind, event: e, lane, x, y: lanes[lane]!.y, clock: clk[it.i]!,
        label, tooltip: '', labelled: isLab, tier, classes, findings: fids, roles, verdict,
      });
      if (k === 0 || brk) ticks.push({ x, label: tickLabel(it.i) });
      cursor = x;
      right = Math.max(right, x, isLab ? laneRight[lane * 2 + tier]! : x);
      if (verdict) right = Math.max(right, laneRight[lane * 2 + 1]!);
      prevSeqEnd = e.seq;
    } else {
      const perLane = new Array<number>(lanes.length).fill(0);
      const kindCounts = new Array<number>(KINDS.length).fill(0);
      for (let i = it.from; i <= it.to; i++) {
        perLane[laneOfCode[tcode[i]!]!]!++;
        kindCounts[kindOf[i]!]!++;
      }
      const kinds: Partial<Record<EventKind, number>> = {};
      kindCounts.forEach((c, k) => {
        if (c) kinds[KINDS[k]!] = c;
      });
      const count = it.to - it.from + 1;
      const bin: Bin = {
        fromSeq: sorted[it.from]!.seq, toSeq: sorted[it.to]!.seq, fromIndex: it.from, toIndex: it.to, count,
        x0: x, x1: x + BIN_W, clock0: clk[it.from]!, clock1: clk[it.to]!, perLane, kinds, tooltip: '',
      };
      bin.tooltip = binTooltip(bin, lanes, clock);
      bins.push(bin);
      if (k === 0 || brk) ticks.push({ x, label: tickLabel(it.from) });
      cursor = x + BIN_W;
      right = Math.max(right, cursor);
      prevSeqEnd = bin.toSeq;
    }
  }
  if (n > 0 && clock === 'time' && items.length > 1) {
    const last = items[items.length - 1]!;
    const li = last.type === 'mark' ? last.i : last.to;
    ticks.push({ x: last.type === 'mark' ? cursor : cursor - BIN_W, label: `end ${tickLabel(li)}` });
  }

  // x of any event: its mark, or its place inside the bin that holds it.
  const markAt = new Map<number, Mark>();
  for (const m of marks) markAt.set(m.index, m);
  const binStarts = bins.map((b) => b.fromIndex);
  const xOfIndex = (i: number): { x: number; exact: boolean } => {
    const m = markAt.get(i);
    if (m) return { x: m.x, exact: true };
    const b = bins[Math.max(0, lowerBound(binStarts, i + 1) - 1)];
    if (!b) return { x: gutter, exact: false };
    const f = b.count > 1 ? (i - b.fromIndex) / (b.count - 1) : 0.5;
    return { x: b.x0 + f * (b.x1 - b.x0), exact: false };
  };

  // Finding views, bands and arrows.
  const views: FindingView[] = [];
  const bands: Band[] = [];
  const arrows: Arrow[] = [];
  for (const f of findings) {
    const readerLane = f.reader.tid !== null ? laneOfTid.get(f.reader.tid) ?? null : null;
    const reader = refLabel(f.reader, byTid);
    const read = f.read ? { seq: f.read.seq, value: stateName(f.read.value, table) } : null;
    const publish = f.publish ? { seq: f.publish.seq, value: stateName(f.publish.value, table) } : null;
    const crossing = f.crossing.map((c) => ({
      seq: c.seq, released: c.released_seq ?? null, thread: refLabel(c.thread, byTid),
      lane: c.thread.tid !== null ? laneOfTid.get(c.thread.tid) ?? null : null,
      old: stateName(c.old, table), new: stateName(c.new, table),
    }));
    const reply = f.reply ? { seq: f.reply.reply_seq, label: replyLabel(f.reply.status, f.reply.has_ram), verdict: f.reply } : null;
    const knownAs = f.class === 'manifested' && read?.value === 'setup' && publish?.value === 'active'
      && crossing.some((c) => c.old === 'setup' && c.new === 'active') && !(f.reply?.has_ram ?? false)
      ? 'LP#1994002' : null;
    const evidence = [...f.evidence].sort((a, b) => a - b);
    const drawnInFull = fullFindings.has(f.id) && evidence.every((s) => {
      const i = indexOf(s);
      return i >= 0 && markAt.has(i);
    });
    const x0 = crossing[0];
    let explanation: string;
    if (f.class === 'window-only') {
      explanation = `${x0 ? `${x0.thread} moved ${x0.old} -> ${x0.new} (#${x0.seq})` : 'A transition happened'} inside the query window of ${reader}; no read/publish probe saw what it published.`;
    } else {
      const pub = publish ? ` and before it published ${publish.value} (#${publish.seq})` : '';
      const tail = f.class === 'manifested'
        ? `: it published ${publish?.value ?? '?'} although its switch took the ${read?.value ?? '?'} branch`
        : ': it published what it read';
      explanation = `${x0 ? `${x0.thread} moved ${x0.old} -> ${x0.new} (#${x0.seq}${x0.released !== null ? `, held there and released at #${x0.released}` : ''})` : 'A transition happened'} after ${reader} read ${read?.value ?? '?'}${read ? ` (#${read.seq})` : ''}${pub}${tail}.`;
    }
    views.push({
      id: f.id, cls: f.class, finding: f, lane: readerLane, reader, read, crossing, publish,
      query: f.query ? { id: f.query.id, begin: f.query.begin_seq, end: f.query.end_seq } : null,
      reply, evidence, drawnInFull, knownAs, explanation, reproduce: reproduceCommand(session, f),
    });

    // The window: read -> publish, else the query window, else the evidence.
    const fromSeq = f.read?.seq ?? f.query?.begin_seq ?? evidence[0];
    const toSeq = f.publish?.seq ?? f.query?.end_seq ?? evidence[evidence.length - 1];
    if (readerLane === null || fromSeq === undefined || fromSeq === null || toSeq === undefined || toSeq === null) {
      warnings.push(`${f.id}: no reader lane or window to draw`);
      continue;
    }
    const fi = indexOf(fromSeq);
    const ti = indexOf(toSeq);
    if (fi < 0 || ti < 0) {
      warnings.push(`${f.id}: cites events the session does not have (#${fromSeq}..#${toSeq})`);
      continue;
    }
    if (bands.length >= 500) continue;
    const a = xOfIndex(fi);
    const b = xOfIndex(ti);
    const ly = lanes[readerLane]!.y;
    const band: Band = {
      finding: f.id, cls: f.class, lane: readerLane, fromSeq, toSeq,
      x0: Math.min(a.x, b.x) - 6, x1: Math.max(a.x, b.x) + 6, y0: ly - BAND_UP, y1: ly + BAND_DOWN,
      label: `${f.id} ${f.class}`,
      tooltip: `${f.id} (${f.class}): ${read ? `read ${read.value} #${read.seq}` : `query #${fromSeq}`} -> ${publish ? `publish ${publish.value} #${publish.seq}` : `#${toSeq}`} on ${reader}\n${crossing.map((c) => `crossed by ${c.thread}: ${c.old} -> ${c.new} #${c.seq}`).join('\n')}`,
      approximate: !(a.exact && b.exact),
    };
    bands.push(band);
    for (const c of crossing) {
      // A held writer's swap happens at its release: the arrow starts there.
      const ci = c.released !== null && indexOf(c.released) >= 0 ? indexOf(c.released) : indexOf(c.seq);
      if (ci < 0 || c.lane === null) continue;
      const cx = xOfIndex(ci).x;
      const wy = lanes[c.lane]!.y;
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
  }

  for (const m of marks) m.tooltip = markTooltip(m, sorted.length, lanes, clock, t0, table, views);

  // Ticks also at the reads of the findings drawn in full; drop the ones that
  // would overprint a tick already placed.
  for (const v of views) {
    if (!v.read || !v.drawnInFull) continue;
    const i = indexOf(v.read.seq);
    const m = markAt.get(i);
    if (m) ticks.push({ x: m.x, label: tickLabel(i) });
  }
  ticks.sort((a, b) => a.x - b.x);
  const keptTicks: Tick[] = [];
  for (const tk of ticks) {
    const w = tk.label.length * 6 + 16;
    const prev = keptTicks[keptTicks.length - 1];
    if (prev && tk.x - prev.x < (w + prev.label.length * 6) / 2) {
      // Keep the end tick over the one it collides with.
      if (tk.label.startsWith('end ')) keptTicks[keptTicks.length - 1] = tk;
      continue;
    }
    keptTicks.push(tk);
  }

  const verdict = sessionVerdict(views, analysis);
  const width = Math.ceil(Math.max(o.width, right + 40));
  const height = TOP + lanes.length * LANE_H + BOTTOM;
  const title = o.title ?? `migrace session ${session.id}: ${cleanText(session.label)}`;
  return {
    session: { id: session.id, label: cleanText(session.label), origin: session.origin, state: session.state },
    title: truncate(title, 140), clock, width, height, gutter, top: TOP, lanes, marks, bands, arrows, breaks, bins, ticks: keptTicks,
    findings: views, verdict, summarized, totalEvents: n, t0, warnings,
  };
}

function binTooltip(b: Bin, lanes: Lane[], clock: Clock): string {
  const lines = [`${b.count} events #${b.fromSeq}..#${b.toSeq} (summarized)`];
  if (clock === 'time') lines.push(`t=+${formatDuration(b.clock0)} .. +${formatDuration(b.clock1)}`);
  b.perLane.forEach((c, i) => {
    if (c > 0) lines.push(`${lanes[i]!.label}: ${c}`);
  });
  const kinds = Object.entries(b.kinds).map(([k, v]) => `${k} ${v}`).join(', ');
  if (kinds) lines.push(kinds);
  return lines.join('\n');
}

function markTooltip(
  m: Mark, total: number, lanes: Lane[], clock: Clock, t0: number | null,
  table: Session['target']['status_table'], views: FindingView[],
): string {
  const e = m.event;
  const lines: string[] = [];
  const when = clock === 'time' && e.t_ns !== null && t0 !== null ? `t=+${formatDuration(e.t_ns - t0)}` : 'no clock';
  // Dots (events outside the story) get a short tooltip: a 5,000-event
  // drawing carries one per mark, and the event table has the rest.
  const brief = !m.labelled;
  lines.push(brief ? `#${e.seq} ${e.kind}  ${when}` : `#${e.seq} ${e.kind}  ${when}  (event ${m.index + 1} of ${total})`);
  lines.push(`thread: ${lanes[m.lane]!.label}`);
  if (brief) {
    lines.push(m.label);
    return lines.join('\n');
  }
  const loc = [
    e.func ? cleanText(e.func) : null,
    e.file ? `${cleanText(e.file)}${e.line !== null ? `:${e.line}` : ''}` : e.line !== null ? `line ${e.line}` : null,
    e.pc ? `pc ${cleanText(e.pc)}` : null,
  ].filter(Boolean);
  if (loc.length) lines.push(`at: ${loc.join(' ')}`);
  if (e.probe) lines.push(`probe: ${cleanText(e.probe)}`);
  switch (e.kind) {
    case 'transition':
      lines.push(`${valueText(e.data.old, table)} -> ${valueText(e.data.new, table)}${e.data.addr ? ` at ${cleanText(e.data.addr)}` : ''}`);
      break;
    case 'read':
    case 'publish':
      lines.push(`value: ${valueText(e.data.value, table)}`);
      break;
    case 'query-begin':
    case 'query-end':
      lines.push(`query: ${cleanText(e.data.query)}`);
      break;
    case 'reply':
      lines.push(`${cleanText(e.data.command)}${e.data.query ? ` (query ${cleanText(e.data.query)})` : ''}: ${compactJson(e.data.body, 300)}`);
      break;
    case 'hold':
    case 'release':
      lines.push(`role: ${cleanText(e.data.role)}; ${cleanText(e.data.reason)}`);
      break;
    case 'note':
      lines.push(truncate(cleanText(e.data.text), 300));
      break;
  }
  for (const id of m.findings) {
    const v = views.find((f) => f.id === id);
    if (!v) continue;
    const roles = m.roles.length ? m.roles.join(', ') : 'evidence';
    lines.push(`${id} (${v.cls}): ${roles}`);
  }
  if (m.verdict) lines.push(m.verdict.text);
  return lines.join('\n');
}
