import { MigraceError } from '../../trace/errors.js';
import { blankLocation, type NewEvent, type StateValue, type Thread } from '../../trace/schema.js';
import { normalizeStatusName, statusValue, tableIdFor, type StatusTableId } from '../../trace/status.js';
import { readText, type LineSink } from './lines.js';
import {
  KIND_NAMES, MAX_PID, WarningList, binaryReason, clip, clipLong, sniffKinds, type ImportWarning, type ImportedLog,
} from './merge.js';

/*
 * QEMU trace logs (the `log` trace backend, `-trace enable=migrate_set_state
 * -D FILE` or `-d trace:...`). The event is
 *   migrate_set_state(const char *new_state) "new state %s"
 * logged after a successful compare-and-swap: the new state's name only.
 * Three line formats (docs/qemu-facts.md):
 *   TID@SEC.USEC:migrate_set_state new state active     4.2, 5.2; 6.x-10.0 with -msg timestamp=on
 *   migrate_set_state new state active                  6.x-10.0 without it
 *   2025-07-21T18:43:28.089797Z migrate_set_state new state active   10.1+ (fraction dropped when zero)
 * Lines of other trace events become notes; anything else is counted and
 * reported with its line number.
 *
 * Old states: the log has none. A transition's old state is the new state of
 * the previous transition of the same process (and migration), and such
 * events carry probe "trace:migrate_set_state (old inferred)". `setup` is the
 * exception that needs no inference: the only way into SETUP is the
 * NONE -> SETUP compare-and-swap of qmp_migrate()/migrate_init(), so its old
 * is `none`. The first other transition of a process has old = null.
 *
 * Processes. One file can hold several QEMU processes (logs concatenated, a
 * restarted guest writing to the same -D file). Decided here:
 *  - TID lines: a `setup` comes from the main thread (QMP/HMP `migrate` runs
 *    there), whose TID is the PID. A `setup` by a TID that is not a thread of
 *    the current process, or by one that was the current process's migration
 *    thread (a TID reused by another process), starts a new process; so does
 *    the clock going back by more than a second (another run's log appended).
 *    A second `setup` by the same main TID is the same process migrating
 *    again: one session with both migrations.
 *  - bare and ISO lines have no TID: nothing says whether two migrations
 *    were one process, so each `setup` (after a terminal state, after a
 *    non-terminal one: a restart, or at the start) and each backward clock
 *    step starts a new session.
 * Each process becomes its own session.
 *
 * Reading: QemuTraceImport takes one line at a time (a LineSink, lines.ts)
 * and hands each event to a TraceEventSink as soon as it is made, so a
 * trace log of millions of events is written to the store while it is read
 * (recorder/import/index.ts); parseQemuTrace() collects them in memory.
 * A timestamp no date can hold keeps its event, without a time, and says so.
 *
 * Threads (TID lines only; the session tid is the Linux TID): the TID of a
 * `setup` is named `main`. Another TID of the same process that moves the
 * state out of `setup` is named `live_migration` (only the migration thread
 * does setup -> active/failed on the source). Other TIDs keep no name (a
 * destination's main thread without a `setup` line, postcopy threads), and a
 * process without a `setup` line names nobody. Bare and ISO lines carry no
 * thread at all: their events have thread = null.
 */

export type TraceLineFormat = 'tid' | 'iso' | 'bare';

export interface QemuTraceOptions {
  source?: string;
  /** Picks the MigrationStatus numbering for the numbers stored next to the names. */
  qemuVersion?: string | null;
}

/** One QEMU process of a trace log; its events went to the TraceEventSink. */
export interface QemuTraceProcessInfo extends Omit<ImportedLog, 'events' | 'lines'> {
  /** The main thread's TID (the PID) when a `setup` line showed it. */
  pid: number | null;
  format: TraceLineFormat;
  eventCount: number;
}

export interface QemuTraceProcess extends QemuTraceProcessInfo, ImportedLog {}

export interface QemuTraceSummary {
  processes: QemuTraceProcessInfo[];
  /** Lines that are neither trace events nor blank, with their numbers (also in the processes' warnings). */
  skipped: ImportWarning[];
  formats: TraceLineFormat[];
}

export interface QemuTraceResult extends QemuTraceSummary {
  processes: QemuTraceProcess[];
}

/** Where a trace log's events go while it is read: process `index` is the index-th QEMU process in the file. */
export interface TraceEventSink {
  event(index: number, e: NewEvent, line: number): void;
}

interface Line {
  format: TraceLineFormat;
  tid: number | null;
  wall: string | null;
  micros: number | null;
  name: string;
  args: string;
  line: number;
}

const MAX_LINE = 64 * 1024;
const MAX_LISTED = 200;
/** The last microsecond a Date can hold (8.64e15 ms after the epoch). */
const MAX_MICROS = 8.64e18;

const TID_LINE = /^(\d+)@(\d+)\.(\d{1,6}):([A-Za-z_][A-Za-z0-9_]*)(?: (.*))?$/;
const ISO_LINE = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z) (.*)$/;
const EVENT = /^([a-z_][a-z0-9_]*_[a-z0-9_]*)(?: (.*))?$/;

/** The date part of the last second seen: a log's lines share their seconds, a Date per line is most of a line's cost. */
let lastSecond = { sec: Number.NaN, date: '' };

function isoFromEpoch(micros: number, usec: string): string {
  const sec = Math.floor(micros / 1e6);
  if (sec !== lastSecond.sec) lastSecond = { sec, date: new Date(sec * 1000).toISOString().slice(0, 19) };
  return `${lastSecond.date}.${usec.padStart(6, '0')}Z`;
}

function isoMicros(iso: string): number {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?Z$/.exec(iso)!;
  return Date.parse(`${m[1]}Z`) * 1000 + Number((m[2] ?? '').padEnd(6, '0').slice(0, 6));
}

/** A trace line, or null when it is not one; `bad` is set when its timestamp is no date, `badTid` when its TID is no Linux thread's. */
function parseLine(raw: string, line: number): (Line & { bad: string | null; badTid: string | null }) | null {
  const t = raw.trim();
  let m = TID_LINE.exec(t);
  if (m) {
    const micros = Number(m[2]) * 1e6 + Number(m[3].padStart(6, '0'));
    const ok = Number.isSafeInteger(Number(m[2])) && micros <= MAX_MICROS;
    const tid = Number(m[1]);
    return {
      format: 'tid', tid: tid <= MAX_PID ? tid : null, wall: ok ? isoFromEpoch(micros, m[3]) : null, micros: ok ? micros : null,
      name: m[4], args: (m[5] ?? '').trim(), line, bad: ok ? null : `${m[2]}.${m[3]}`, badTid: tid <= MAX_PID ? null : m[1],
    };
  }
  m = ISO_LINE.exec(t);
  if (m) {
    const e = EVENT.exec(m[2].trim());
    if (!e) return null;
    const micros = isoMicros(m[1]);
    const ok = Number.isFinite(micros);
    return { format: 'iso', tid: null, wall: ok ? m[1] : null, micros: ok ? micros : null, name: e[1], args: (e[2] ?? '').trim(), line, bad: ok ? null : m[1], badTid: null };
  }
  m = EVENT.exec(t);
  if (m) return { format: 'bare', tid: null, wall: null, micros: null, name: m[1], args: (m[2] ?? '').trim(), line, bad: null, badTid: null };
  return null;
}

class Proc {
  readonly warnings = new WarningList();
  readonly tids = new Map<number, Thread>();
  mainTid: number | null = null;
  migrationTids = new Set<number>();
  last: string | null = null;
  lastMicros: number | null = null;
  readonly firstLine: number;
  migrations = 0;
  events = 0;
  transitions = 0;
  constructor(readonly index: number, readonly format: TraceLineFormat, line: number) {
    this.firstLine = line;
  }
  thread(tid: number): void {
    if (!this.tids.has(tid)) this.tids.set(tid, { tid, gdb_id: null, lwp: tid, name: null });
  }
}

/** A QEMU trace log read line by line (see the header): events to `sink`, the processes' facts from finish(). */
export class QemuTraceImport implements LineSink<QemuTraceSummary> {
  readonly maxLine = MAX_LINE;
  private readonly source: string;
  private readonly table: StatusTableId;
  private readonly procs: Proc[] = [];
  private cur: Proc | null = null;
  private readonly skipped: ImportWarning[] = [];
  private skippedCount = 0;
  /** Skipped lines before the first process: they go to it. */
  private readonly early: ImportWarning[] = [];
  private readonly formats = new Set<TraceLineFormat>();
  private seenTransition = false;
  private seenPrefixed = false;
  private nonBlank = 0;
  private first: { line: number; text: string } | null = null;
  private lines = 0;
  private kinds: ReturnType<typeof sniffKinds> = [];

  constructor(private readonly opts: QemuTraceOptions, private readonly sink: TraceEventSink) {
    this.source = opts.source ?? 'input';
    this.table = tableIdFor(opts.qemuVersion ?? null);
  }

  begin(head: string): void {
    const bin = binaryReason(head);
    if (bin) {
      throw new MigraceError('IMPORT', `${this.source}: ${bin}: not a QEMU trace log of the "log" backend (a simple-trace binary file needs QEMU's scripts/simpletrace.py first)`);
    }
    this.kinds = sniffKinds(head).filter((k) => k !== 'qemu-trace');
  }

  tooLong(n: number, length: number, head: string): void {
    this.lines = n;
    this.nonBlank++;
    this.first ??= { line: n, text: head };
    this.skip({ line: n, text: clipLong(head, length), reason: `line of ${length} characters: not a trace line, skipped` });
  }

  line(r: string, n: number): void {
    this.lines = n;
    if (r.trim() === '') return;
    this.nonBlank++;
    this.first ??= { line: n, text: r.trim() };
    const p = parseLine(r, n);
    if (!p) {
      this.skip({ line: n, text: clip(r.trim()), reason: 'not a trace line, skipped' });
      return;
    }
    this.formats.add(p.format);
    if (p.format !== 'bare') this.seenPrefixed = true;
    if (p.name === 'migrate_set_state') this.seenTransition = true;
    const proc = this.processFor(p);
    if (p.bad !== null) {
      proc.warnings.push({ line: n, text: clip(r.trim()), reason: `the timestamp ${p.bad} is out of range for a date: the event is kept without a time` });
    }
    if (p.badTid !== null) {
      proc.warnings.push({ line: n, text: clip(r.trim()), reason: `the TID ${p.badTid.slice(0, 30)} is none Linux gives (1 to ${MAX_PID}): the event is kept without a thread` });
    }
    this.handle(proc, p);
  }

  private skip(w: ImportWarning): void {
    this.skippedCount++;
    if (this.skipped.length >= MAX_LISTED) return;
    this.skipped.push(w);
    if (this.cur) this.cur.warnings.push(w);
    else this.early.push(w);
  }

  private start(p: Line): Proc {
    const proc = new Proc(this.procs.length, p.format, p.line);
    if (this.procs.length === 0) for (const w of this.early.splice(0)) proc.warnings.push(w);
    this.procs.push(proc);
    this.cur = proc;
    return proc;
  }

  /** The process a line belongs to: the current one, or a new one (see the header). */
  private processFor(p: Line): Proc {
    let proc: Proc = this.cur ?? this.start(p);
    const backwards = proc.lastMicros !== null && p.micros !== null && p.micros < proc.lastMicros - 1e6;
    const state = p.name === 'migrate_set_state' ? /^new state (\S+)/.exec(p.args)?.[1] ?? null : null;
    if (backwards) {
      proc.warnings.push({ line: p.line, text: clip(`${p.name} ${p.args}`), reason: 'the clock goes back here: taken as another QEMU run, in a new session' });
      proc = this.start(p);
    } else if (state === 'setup') {
      if (p.tid !== null) {
        const known = proc.tids.has(p.tid);
        const wasMigrationThread = proc.migrationTids.has(p.tid);
        const hasTransitions = proc.mainTid !== null || proc.transitions > 0;
        if ((hasTransitions && !known) || wasMigrationThread) proc = this.start(p);
      } else if (proc.transitions > 0) {
        proc = this.start(p);
      }
    } else if (p.format !== proc.format && proc.events > 0) {
      proc.warnings.push({ line: p.line, text: clip(`${p.name} ${p.args}`), reason: `line format changes from ${proc.format} to ${p.format}: taken as another QEMU run, in a new session` });
      proc = this.start(p);
    }
    return proc;
  }

  private emit(proc: Proc, e: NewEvent, line: number): void {
    proc.events++;
    this.sink.event(proc.index, e, line);
  }

  private handle(proc: Proc, p: Line): void {
    const table = this.table;
    if (p.micros !== null) proc.lastMicros = p.micros;
    if (p.tid !== null) proc.thread(p.tid);
    if (p.name !== 'migrate_set_state') {
      // The common line of a large log: a literal, not blankLocation() or any spread (spreading a base object
      // here tripled the import's time; a spread of blankLocation() costs 5x a literal in node 20, a frozen constant 3.5x).
      this.emit(proc, {
        t_ns: null, wall: p.wall, thread: p.tid, pc: null, file: null, line: null, kind: 'note',
        probe: 'trace:' + p.name, func: null, data: { text: p.args ? p.name + ' ' + p.args : p.name },
      }, p.line);
      return;
    }
    const base = { t_ns: null, wall: p.wall, thread: p.tid, ...blankLocation() };
    const state = /^new state (\S+)/.exec(p.args)?.[1] ?? null;
    if (state === null) {
      proc.warnings.push({ line: p.line, text: clip(`${p.name} ${p.args}`), reason: 'migrate_set_state without "new state NAME": skipped' });
      return;
    }
    const name = normalizeStatusName(state);
    const neu: StateValue = { value: statusValue(name, table), name };
    let old: StateValue | null;
    let inferred = false;
    if (name === 'setup') {
      old = { value: statusValue('none', table), name: 'none' };
      proc.migrations++;
      if (p.tid !== null) {
        proc.mainTid = p.tid;
        proc.migrationTids.delete(p.tid);
      }
    } else if (proc.last !== null) {
      old = { value: statusValue(proc.last, table), name: proc.last };
      inferred = true;
    } else {
      old = null;
    }
    if (p.tid !== null && proc.mainTid !== null && p.tid !== proc.mainTid && proc.last === 'setup') {
      proc.migrationTids.add(p.tid);
    }
    proc.last = name;
    proc.transitions++;
    this.emit(proc, {
      ...base, kind: 'transition', probe: inferred ? 'trace:migrate_set_state (old inferred)' : 'trace:migrate_set_state',
      func: 'migrate_set_state', data: { addr: null, old, new: neu },
    }, p.line);
  }

  finish(): QemuTraceSummary {
    const source = this.source;
    if (this.nonBlank === 0) throw new MigraceError('IMPORT', `${source}: empty file: not a QEMU trace log`);
    if (!this.seenTransition && !this.seenPrefixed) {
      const first = this.first!;
      throw new MigraceError('IMPORT',
        `${source}:${first.line}: not a QEMU trace log: no migrate_set_state event and no TID@SEC.USEC: or timestamped trace line in its ${this.lines} lines` +
        `${this.kinds.length ? `; it looks like ${KIND_NAMES[this.kinds[0]]}` : ''} (line ${first.line}: ${JSON.stringify(clip(first.text))})`);
    }
    if (this.skippedCount > this.skipped.length && this.procs[0]) {
      this.procs[0].warnings.push({ line: 0, text: '', reason: `${this.skippedCount - this.skipped.length} more lines that are not trace lines were skipped (only the first ${MAX_LISTED} are listed)` });
    }
    const procs = this.procs;
    const processes: QemuTraceProcessInfo[] = procs.map((pr, i) => {
      const threads = [...pr.tids.values()].map((t) => ({
        ...t,
        name: t.tid === pr.mainTid ? 'main' : pr.migrationTids.has(t.tid) ? 'live_migration' : null,
      })).sort((a, b) => a.tid - b.tid);
      const warnings = [...pr.warnings.items].sort((a, b) => a.line - b.line);
      const title = pr.mainTid !== null ? `QEMU pid ${pr.mainTid}` : procs.length > 1 ? `QEMU run ${i + 1}` : 'QEMU';
      return {
        title: `${source}: ${title}`,
        threads,
        warnings,
        unlisted: pr.warnings.unlisted,
        qemuVersion: null,
        meta: {
          format: pr.format,
          first_line: pr.firstLine,
          pid: pr.mainTid,
          migrations: pr.migrations,
          old_states: 'inferred from the previous transition of the same process (probe "... (old inferred)"); setup is always none -> setup',
          skipped_lines: warnings.filter((w) => /not a trace line/.test(w.reason)).length,
        },
        pid: pr.mainTid,
        format: pr.format,
        eventCount: pr.events,
      };
    });
    return { processes, skipped: this.skipped, formats: [...this.formats] };
  }
}

/** Events of each process in memory: for parseQemuTrace and for the merge with a libvirt log. */
export class CollectedTrace implements TraceEventSink {
  readonly events: NewEvent[][] = [];
  readonly lines: number[][] = [];

  event(index: number, e: NewEvent, line: number): void {
    (this.events[index] ??= []).push(e);
    (this.lines[index] ??= []).push(line);
  }

  /** The summary's processes with their events. */
  attach(summary: QemuTraceSummary): QemuTraceResult {
    return {
      ...summary,
      processes: summary.processes.map((p, i) => ({ ...p, events: this.events[i] ?? [], lines: this.lines[i] ?? [] })),
    };
  }
}

export function parseQemuTrace(text: string, opts: QemuTraceOptions = {}): QemuTraceResult {
  const collected = new CollectedTrace();
  return collected.attach(readText(new QemuTraceImport(opts, collected), text));
}
