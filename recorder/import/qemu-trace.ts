import { MigraceError } from '../../trace/errors.js';
import type { NewEvent, StateValue, Thread } from '../../trace/schema.js';
import { normalizeStatusName, statusValue, tableIdFor, type StatusTableId } from '../../trace/status.js';
import {
  KIND_NAMES, binaryReason, clip, sniffKinds, splitLines, type ImportWarning, type ImportedLog,
} from './merge.js';

/*
 * QEMU trace logs (the `log` trace backend, `-trace enable=migrate_set_state
 * -D FILE` or `-d trace:...`). The event is
 *   migrate_set_state(const char *new_state) "new state %s"
 * logged after a successful compare-and-swap: the new state's name only.
 * Three line formats (facts.md):
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

export interface QemuTraceProcess extends ImportedLog {
  /** The main thread's TID (the PID) when a `setup` line showed it. */
  pid: number | null;
  format: TraceLineFormat;
}

export interface QemuTraceResult {
  processes: QemuTraceProcess[];
  /** Lines that are neither trace events nor blank, with their numbers (also in the processes' warnings). */
  skipped: ImportWarning[];
  formats: TraceLineFormat[];
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

const TID_LINE = /^(\d+)@(\d+)\.(\d{1,6}):([A-Za-z_][A-Za-z0-9_]*)(?: (.*))?$/;
const ISO_LINE = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z) (.*)$/;
const EVENT = /^([a-z_][a-z0-9_]*_[a-z0-9_]*)(?: (.*))?$/;

function isoFromEpoch(sec: number, usec: string): string {
  const d = new Date(sec * 1000).toISOString().slice(0, 19);
  return `${d}.${usec.padStart(6, '0')}Z`;
}

function isoMicros(iso: string): number {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?Z$/.exec(iso)!;
  return Date.parse(`${m[1]}Z`) * 1000 + Number((m[2] ?? '').padEnd(6, '0').slice(0, 6));
}

function parseLine(raw: string, line: number): Line | null {
  const t = raw.trim();
  let m = TID_LINE.exec(t);
  if (m) {
    const sec = Number(m[2]);
    return {
      format: 'tid', tid: Number(m[1]), wall: isoFromEpoch(sec, m[3]), micros: sec * 1e6 + Number(m[3].padStart(6, '0')),
      name: m[4], args: (m[5] ?? '').trim(), line,
    };
  }
  m = ISO_LINE.exec(t);
  if (m) {
    const e = EVENT.exec(m[2].trim());
    if (!e) return null;
    return { format: 'iso', tid: null, wall: m[1], micros: isoMicros(m[1]), name: e[1], args: (e[2] ?? '').trim(), line };
  }
  m = EVENT.exec(t);
  if (m) return { format: 'bare', tid: null, wall: null, micros: null, name: m[1], args: (m[2] ?? '').trim(), line };
  return null;
}

class Proc {
  readonly events: NewEvent[] = [];
  readonly lines: number[] = [];
  readonly warnings: ImportWarning[] = [];
  readonly tids = new Map<number, Thread>();
  mainTid: number | null = null;
  migrationTids = new Set<number>();
  last: string | null = null;
  lastMicros: number | null = null;
  firstLine: number;
  migrations = 0;
  constructor(readonly format: TraceLineFormat, line: number) {
    this.firstLine = line;
  }
  thread(tid: number): void {
    if (!this.tids.has(tid)) this.tids.set(tid, { tid, gdb_id: null, lwp: tid, name: null });
  }
}

export function parseQemuTrace(text: string, opts: QemuTraceOptions = {}): QemuTraceResult {
  const source = opts.source ?? 'input';
  if (text.trim() === '') throw new MigraceError('IMPORT', `${source}: empty file: not a QEMU trace log`);
  const bin = binaryReason(text);
  if (bin) {
    throw new MigraceError('IMPORT', `${source}: ${bin}: not a QEMU trace log of the "log" backend (a simple-trace binary file needs QEMU's scripts/simpletrace.py first)`);
  }
  const table: StatusTableId = tableIdFor(opts.qemuVersion ?? null);
  const raw = splitLines(text);
  const parsed: Line[] = [];
  const skipped: ImportWarning[] = [];
  let skippedCount = 0;
  raw.forEach((r, i) => {
    if (r.trim() === '') return;
    if (r.length > MAX_LINE) {
      skippedCount++;
      if (skipped.length < MAX_LISTED) skipped.push({ line: i + 1, text: clip(r), reason: `line of ${r.length} characters: not a trace line, skipped` });
      return;
    }
    const p = parseLine(r, i + 1);
    if (p) parsed.push(p);
    else {
      skippedCount++;
      if (skipped.length < MAX_LISTED) skipped.push({ line: i + 1, text: clip(r.trim()), reason: 'not a trace line, skipped' });
    }
  });
  const transitions = parsed.filter((p) => p.name === 'migrate_set_state');
  const prefixed = parsed.filter((p) => p.format !== 'bare');
  if (transitions.length === 0 && prefixed.length === 0) {
    const kinds = sniffKinds(text).filter((k) => k !== 'qemu-trace');
    const first = raw.findIndex((r) => r.trim() !== '');
    throw new MigraceError('IMPORT',
      `${source}:${first + 1}: not a QEMU trace log: no migrate_set_state event and no TID@SEC.USEC: or timestamped trace line in its ${raw.length} lines` +
      `${kinds.length ? `; it looks like ${KIND_NAMES[kinds[0]]}` : ''} (line ${first + 1}: ${JSON.stringify(clip(raw[first]?.trim() ?? ''))})`);
  }

  const procs: Proc[] = [];
  let cur: Proc | null = null;
  const start = (p: Line): Proc => {
    cur = new Proc(p.format, p.line);
    procs.push(cur);
    return cur;
  };

  for (const p of parsed) {
    let proc: Proc = cur ?? start(p);
    const backwards = proc.lastMicros !== null && p.micros !== null && p.micros < proc.lastMicros - 1e6;
    const state = p.name === 'migrate_set_state' ? /^new state (\S+)/.exec(p.args)?.[1] ?? null : null;
    if (backwards) {
      proc.warnings.push({ line: p.line, text: clip(`${p.name} ${p.args}`), reason: 'the clock goes back here: taken as another QEMU run, in a new session' });
      proc = start(p);
    } else if (state === 'setup') {
      if (p.tid !== null) {
        const known = proc.tids.has(p.tid);
        const wasMigrationThread = proc.migrationTids.has(p.tid);
        const hasTransitions = proc.mainTid !== null || proc.events.some((e) => e.kind === 'transition');
        if ((hasTransitions && !known) || wasMigrationThread) proc = start(p);
      } else if (proc.events.some((e) => e.kind === 'transition')) {
        proc = start(p);
      }
    } else if (p.format !== proc.format && proc.events.length > 0) {
      proc.warnings.push({ line: p.line, text: clip(`${p.name} ${p.args}`), reason: `line format changes from ${proc.format} to ${p.format}: taken as another QEMU run, in a new session` });
      proc = start(p);
    }
    if (p.micros !== null) proc.lastMicros = p.micros;
    if (p.tid !== null) proc.thread(p.tid);

    const base = { t_ns: null, wall: p.wall, thread: p.tid, pc: null, file: null, line: null };
    if (p.name === 'migrate_set_state') {
      if (state === null) {
        proc.warnings.push({ line: p.line, text: clip(`${p.name} ${p.args}`), reason: 'migrate_set_state without "new state NAME": skipped' });
        continue;
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
      proc.events.push({
        ...base, kind: 'transition', probe: inferred ? 'trace:migrate_set_state (old inferred)' : 'trace:migrate_set_state',
        func: 'migrate_set_state', data: { addr: null, old, new: neu },
      });
      proc.lines.push(p.line);
    } else {
      proc.events.push({ ...base, kind: 'note', probe: `trace:${p.name}`, func: null, data: { text: `${p.name}${p.args ? ` ${p.args}` : ''}` } });
      proc.lines.push(p.line);
    }
  }

  // Skipped lines are reported by the process they fall in.
  for (const w of skipped) {
    let owner = procs[0];
    for (const pr of procs) if (pr.firstLine <= w.line) owner = pr;
    owner?.warnings.push(w);
  }
  if (skippedCount > skipped.length && procs[0]) {
    procs[0].warnings.push({ line: 0, text: '', reason: `${skippedCount - skipped.length} more lines that are not trace lines were skipped (only the first ${MAX_LISTED} are listed)` });
  }

  const processes: QemuTraceProcess[] = procs.map((pr, i) => {
    const threads = [...pr.tids.values()].map((t) => ({
      ...t,
      name: t.tid === pr.mainTid ? 'main' : pr.migrationTids.has(t.tid) ? 'live_migration' : null,
    })).sort((a, b) => a.tid - b.tid);
    pr.warnings.sort((a, b) => a.line - b.line);
    const title = pr.mainTid !== null ? `QEMU pid ${pr.mainTid}` : procs.length > 1 ? `QEMU run ${i + 1}` : 'QEMU';
    return {
      title: `${source}: ${title}`,
      threads,
      events: pr.events,
      lines: pr.lines,
      warnings: pr.warnings,
      qemuVersion: null,
      meta: {
        format: pr.format,
        first_line: pr.firstLine,
        pid: pr.mainTid,
        migrations: pr.migrations,
        old_states: 'inferred from the previous transition of the same process (probe "... (old inferred)"); setup is always none -> setup',
        skipped_lines: pr.warnings.filter((w) => /not a trace line/.test(w.reason)).length,
      },
      pid: pr.mainTid,
      format: pr.format,
    };
  });
  return { processes, skipped, formats: [...new Set(parsed.map((p) => p.format))] };
}
