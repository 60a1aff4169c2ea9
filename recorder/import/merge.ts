import { blankLocation, type NewEvent, type Thread } from '../../trace/schema.js';

/*
 * The shape every post-mortem importer produces, and the merge of a libvirt
 * log with a QEMU trace log of the same guest on wall time.
 *
 * Parsers are pure: text in, an ImportedLog out. They never guess: what they
 * could not understand is a warning with its line number, and a text that is
 * not their kind of log at all is an IMPORT error naming the file and line.
 * index.ts does the file reading and the store writes.
 */

/** The largest pid Linux gives (pid_max's limit, 2^22): a larger TID or LWP is a damaged line, and the store takes only safe integers. */
export const MAX_PID = 2 ** 22;

/**
 * A source line number as gdb or libvirt prints it, or null: line numbers of
 * C files are ints, so digits past 2**31 - 1 (a mangled paste) are no line.
 */
export function sourceLine(digits: string): number | null {
  const n = Number(digits);
  return Number.isInteger(n) && n > 0 && n <= 0x7fffffff ? n : null;
}

/** Something a parser skipped or could not place, with the 1-based line it came from. */
export interface ImportWarning {
  line: number;
  /** The offending text, cut to a readable length. */
  text: string;
  reason: string;
}

/** Where a parser puts its warnings: a WarningList, or a plain array in tests. */
export interface WarningSink {
  push(w: ImportWarning): void;
}

/** Warnings of one log, the first WarningList.MAX kept: a hostile file cannot fill memory with them. */
export class WarningList implements WarningSink {
  static readonly MAX = 1000;
  readonly items: ImportWarning[] = [];
  unlisted = 0;

  push(w: ImportWarning): void {
    if (this.items.length < WarningList.MAX) this.items.push(w);
    else this.unlisted++;
  }
}

/** One session's worth of imported events. */
export interface ImportedLog {
  /** What the session is about: "qemu pid 1234", "mon=0x7f..", the file name. */
  title: string;
  threads: Thread[];
  /** In order; the store assigns seqs in this order. t_ns is null: no import has a monotonic clock. */
  events: NewEvent[];
  /** For each event, the 1-based line of the source file it came from (same length as events). */
  lines: number[];
  warnings: ImportWarning[];
  /** Warnings beyond the ones listed (WarningList.MAX). */
  unlisted?: number;
  /** A QEMU version the log itself reveals (QMP greeting, monitor banner), else null. */
  qemuVersion: string | null;
  /** Free facts for the session's meta (process ids, counts of skipped lines, ...). */
  meta: Record<string, unknown>;
}

const MAX_TEXT = 200;

export function clip(text: string): string {
  return clipLong(text, text.length);
}

/** clip() of a text of which only the head was kept. */
export function clipLong(head: string, length: number): string {
  return length > MAX_TEXT ? `${head.slice(0, MAX_TEXT)}... (${length} chars)` : head;
}

/** Heuristic log kind of a text, for error messages that say what a file is instead. */
export type LogKind = 'gdb' | 'qemu-trace' | 'libvirt';

const KIND_PATTERNS: Record<LogKind, RegExp> = {
  gdb: /^(?:\(gdb\) |Thread \d+ "[^"]*" hit |Breakpoint \d+(?:\.\d+)?, |\$\d+ = |Reading symbols from )/m,
  'qemu-trace': /^(?:\d+@\d+\.\d+:|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z )?migrate_set_state new state \S+/m,
  libvirt: /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}[+-]\d{4}: \d+: (?:debug|info|warning|error) : /m,
};

/** The kinds whose signature lines occur in the first 64 KiB of the text. */
export function sniffKinds(text: string): LogKind[] {
  const head = text.slice(0, 65536);
  return (Object.keys(KIND_PATTERNS) as LogKind[]).filter((k) => KIND_PATTERNS[k].test(head));
}

export const KIND_NAMES: Record<LogKind, string> = {
  gdb: 'a GDB transcript (migrace import gdb)',
  'qemu-trace': 'a QEMU trace log (migrace import qemu-trace)',
  libvirt: 'a libvirt debug log (migrace import libvirt)',
};

/**
 * Why a text is not readable as a log at all, or null when it is: NUL bytes
 * or mostly control characters mean binary data (a core file, a tarball, a
 * still-compressed log).
 */
export function binaryReason(text: string): string | null {
  const head = text.slice(0, 8192);
  if (head.length === 0) return null;
  const nul = head.indexOf('\0');
  if (nul >= 0) {
    const line = head.slice(0, nul).split('\n').length;
    return `binary data (a NUL byte on line ${line})`;
  }
  let control = 0;
  for (let i = 0; i < head.length; i++) {
    const c = head.charCodeAt(i);
    if ((c < 32 && c !== 9 && c !== 10 && c !== 13 && c !== 27) || c === 0xfffd) control++;
  }
  if (control > head.length / 20) return 'binary data (mostly control characters or invalid UTF-8)';
  return null;
}

/** Lines without their terminators; CR LF and lone CR (terminal captures) both end a line. */
export function splitLines(text: string): string[] {
  const t = text.startsWith('\ufeff') ? text.slice(1) : text;
  const lines = t.split(/\r?\n|\r(?!\n)/);
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/* ------------------------------------------------------------------------ */
/* Merge on wall time */

/** The last date-and-zone parsed: consecutive events share their second. */
let lastParsed = { key: '', ms: Number.NaN };

/** Microseconds since the epoch from an event's wall field, or null. */
export function wallMicros(wall: string | null): number | null {
  if (wall === null) return null;
  const m = /^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:?\d\d)?$/.exec(wall);
  if (!m) return null;
  const zone = m[4] === undefined || m[4] === 'Z' ? 'Z' : m[4].replace(/^([+-]\d\d)(\d\d)$/, '$1:$2');
  const key = `${m[1]}T${m[2]}${zone}`;
  if (key !== lastParsed.key) lastParsed = { key, ms: Date.parse(key) };
  const ms = lastParsed.ms;
  if (Number.isNaN(ms)) return null;
  const frac = (m[3] ?? '').padEnd(6, '0').slice(0, 6);
  return ms * 1000 + Number(frac);
}

/** The wall-clock resolution of a wall string in microseconds (libvirt: 1000, QEMU: 1). */
export function wallResolution(wall: string): number {
  const m = /\.(\d+)/.exec(wall);
  const digits = m ? m[1].length : 0;
  return digits >= 6 ? 1 : 10 ** (6 - digits);
}

export interface MergeOptions {
  /** Added to every QEMU wall time before comparing (clock skew between two hosts), in microseconds. */
  qemuOffsetMicros?: number;
  /**
   * The QEMU main thread's tid in the merged thread list: query events from
   * libvirt are put on it (QMP commands run on QEMU's main thread), so the
   * main thread's own transitions are not taken for crossings.
   */
  mainTid?: number | null;
}

interface Keyed {
  e: NewEvent;
  line: number;
  from: 'libvirt' | 'qemu';
  /** Interval [lo, hi) in µs within which the event happened. */
  lo: number;
  hi: number;
  /** Tie class inside one overlapping interval: 0 before QEMU events, 2 after, 1 QEMU. */
  tie: number;
  index: number;
}

/**
 * One event list from a libvirt log and a QEMU trace log of the same guest.
 *
 * Order: by wall time; the libvirt log has millisecond stamps, QEMU's trace
 * microsecond ones, so a QEMU event inside a libvirt event's millisecond has
 * no known order against it. The tie rule for that case: a query's begin
 * (libvirt wrote the command) sorts before the QEMU events of its millisecond,
 * and everything else libvirt logged (the reply, the query's end, MIGRATION
 * events) sorts after them. QEMU can only answer, or emit an event, after it
 * did what it reports, and a command is only run after libvirt wrote it; so a
 * transition and a reply in the same millisecond are taken as "the transition
 * came first", which puts the transition inside the query's window: the
 * analyzer then reports a window-only finding rather than missing a crossing.
 * Such ties get a note next to the transition, so nobody mistakes the order
 * for a measured one. Events of one source keep their relative order (stable),
 * and events without a usable wall time keep their place after the event
 * before them in their own source.
 */
export function mergeOnWallTime(
  libvirt: ImportedLog,
  qemu: ImportedLog,
  opts: MergeOptions = {},
): ImportedLog {
  const offset = opts.qemuOffsetMicros ?? 0;
  const keyed: Keyed[] = [];
  const push = (log: ImportedLog, from: 'libvirt' | 'qemu'): void => {
    let prevLo = Number.NEGATIVE_INFINITY;
    let prevHi = Number.NEGATIVE_INFINITY;
    log.events.forEach((e, i) => {
      const w = e.wall === null ? null : wallMicros(e.wall);
      let lo: number;
      let hi: number;
      if (w === null) {
        lo = prevLo;
        hi = prevHi;
      } else {
        lo = w + (from === 'qemu' ? offset : 0);
        hi = lo + wallResolution(e.wall!);
      }
      prevLo = lo;
      prevHi = hi;
      const tie = from === 'qemu' ? 1 : e.kind === 'query-begin' ? 0 : 2;
      keyed.push({ e, line: log.lines[i] ?? 0, from, lo, hi, tie, index: keyed.length });
    });
  };
  push(libvirt, 'libvirt');
  push(qemu, 'qemu');

  // Sort by the start of the interval; an event whose interval contains the
  // other's start is tied, and the tie class decides. Within one source the
  // original order always wins (stable by index, sources never reorder).
  const cmp = (a: Keyed, b: Keyed): number => {
    if (a.from === b.from) return a.index - b.index;
    const overlap = a.lo < b.hi && b.lo < a.hi;
    if (overlap && a.tie !== b.tie && (a.hi - a.lo > 1 || b.hi - b.lo > 1)) return a.tie - b.tie;
    if (a.lo !== b.lo) return a.lo - b.lo;
    return a.tie - b.tie || a.index - b.index;
  };
  // A merge of two already ordered lists keeps each source's order exactly.
  const L = keyed.filter((k) => k.from === 'libvirt');
  const Q = keyed.filter((k) => k.from === 'qemu');
  const out: Keyed[] = [];
  let i = 0;
  let j = 0;
  while (i < L.length || j < Q.length) {
    if (j >= Q.length || (i < L.length && cmp(L[i], Q[j]) <= 0)) out.push(L[i++]);
    else out.push(Q[j++]);
  }

  const mainTid = opts.mainTid ?? null;
  const events: NewEvent[] = [];
  const lines: number[] = [];
  const ties: number[] = [];
  for (let k = 0; k < out.length; k++) {
    const x = out[k];
    let e = x.e;
    if (x.from === 'libvirt' && mainTid !== null && (e.kind === 'query-begin' || e.kind === 'query-end') && e.thread === null) {
      e = { ...e, thread: mainTid };
    }
    events.push(e);
    lines.push(x.line);
    if (x.from === 'qemu' && e.kind === 'transition') {
      const neighbours = out.filter((y) => y.from === 'libvirt' && y.e.kind !== 'note' && y.lo < x.hi && x.lo < y.hi);
      if (neighbours.length > 0) {
        ties.push(x.line);
        events.push({
          kind: 'note', t_ns: null, wall: e.wall, thread: e.thread, ...blankLocation(), probe: 'import:merge',
          data: { text: `order unknown: this transition (line ${x.line} of its log) falls in the same millisecond as libvirt line(s) ${neighbours.map((n) => n.line).join(', ')}; placed by the tie rule (after a query's begin, before its reply)` },
        });
        lines.push(x.line);
      }
    }
  }

  // libvirt's threads are none (its thread ids are libvirtd's); QEMU's are the session's threads.
  return {
    title: `${libvirt.title} + ${qemu.title}`,
    threads: [...qemu.threads, ...libvirt.threads],
    events,
    lines,
    warnings: [
      ...libvirt.warnings.map((w) => ({ ...w, reason: `libvirt log: ${w.reason}` })),
      ...qemu.warnings.map((w) => ({ ...w, reason: `QEMU trace log: ${w.reason}` })),
    ],
    qemuVersion: qemu.qemuVersion ?? libvirt.qemuVersion,
    meta: { libvirt: libvirt.meta, qemu: qemu.meta, merged_on: 'wall time', tied_transitions_at_qemu_lines: ties },
  };
}

/** Wall-time span [first, last] of a log in µs, or null when it has no wall times. */
export function wallSpan(log: ImportedLog): [number, number] | null {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const e of log.events) {
    const w = wallMicros(e.wall);
    if (w === null) continue;
    lo = Math.min(lo, w);
    hi = Math.max(hi, w);
  }
  return lo <= hi ? [lo, hi] : null;
}
