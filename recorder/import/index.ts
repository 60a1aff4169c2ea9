import { zodProblems } from '../../trace/zod-problems.js';
import { basename } from 'node:path';
import { MigraceError, messageOf } from '../../trace/errors.js';
import { EventSchema, type NewEvent, type NewSession, type Origin, type Thread, type TraceEvent, type Variant } from '../../trace/schema.js';
import { tableIdFor } from '../../trace/status.js';
import type { TraceStore } from '../../trace/store.js';
import { GdbTranscriptImport, variantOf } from './gdb-transcript.js';
import { LibvirtLogImport } from './libvirt-log.js';
import { readFileLines } from './lines.js';
import { clip, mergeOnWallTime, wallMicros, wallSpan, WarningList, type ImportWarning, type ImportedLog } from './merge.js';
import { CollectedTrace, QemuTraceImport, type QemuTraceProcessInfo, type TraceEventSink } from './qemu-trace.js';

/*
 * Post-mortem import: files in, sessions out.
 *
 * Files are read as streams (lines.ts): a GDB transcript and a libvirt log
 * keep only their migration traffic in memory and are written once read; a
 * QEMU trace log, where every line is an event, is written to the store while
 * it is read (StoreTraceSink), one session per QEMU process. Whatever goes
 * wrong with the input (a file that is not that kind of log, a bomb, an
 * event the importer could not make valid), the sessions this import had
 * written are deleted again, so a bad file in any position of the list leaves
 * no session behind. A session whose writing fails (the store's fault) is
 * finished as aborted with the error, never left complete or recording.
 */

export type ImportKind = 'gdb' | 'qemu-trace' | 'libvirt';

export interface ImportOptions {
  label: string;
  /** A QEMU trace log of the same guest, merged on wall time into the libvirt sessions (kind 'libvirt' only). */
  qemuLog?: string;
  /** The QEMU version the logs come from: picks the MigrationStatus numbering. */
  qemuVersion?: string;
}

const MAX_META_WARNINGS = 200;
const MAX_META_LINES = 50_000;

const ORIGINS: Record<ImportKind, Origin> = {
  gdb: 'import:gdb-log',
  'qemu-trace': 'import:qemu-trace',
  libvirt: 'import:libvirt-log',
};

/**
 * t_ns from wall time: microseconds since the session's first timed event,
 * in ns, never going back (a merge of millisecond and microsecond stamps can
 * put a later stamp first by the tie rule). An event without a wall time has
 * none (a GDB transcript has no clock at all; a trace line's stamp may be no
 * date), and neither has one more than 2^53 ns (104 days) after the first:
 * the store's t_ns is a safe integer ('far').
 */
class WallClock {
  private t0: number | null = null;
  private last = 0;

  tNs(wall: string | null): number | 'far' | null {
    const m = wallMicros(wall);
    if (m === null) return null;
    this.t0 ??= m;
    const t = Math.max(this.last, Math.max(0, m - this.t0) * 1000);
    if (!Number.isSafeInteger(t)) return 'far';
    this.last = t;
    return t;
  }
}

/** Which line of the source each event came from, by seq, while there are few enough to keep in the meta. */
class SourceLines {
  private lines: number[] | null = [];
  push(line: number): void {
    if (this.lines === null) return;
    if (this.lines.length >= MAX_META_LINES) this.lines = null;
    else this.lines.push(line);
  }
  get value(): number[] | null {
    return this.lines;
  }
}

/**
 * One session being written: each event given its clock and seq, checked,
 * and stored in batches. Batches are written synchronously (no timer as in
 * SessionWriter): the reading awaits between chunks, and a store failure
 * must come back to the import, not out of a timer.
 */
class SessionOut {
  static readonly BATCH = 4096;
  readonly id: number;
  private readonly clock = new WallClock();
  private batch: TraceEvent[] = [];
  readonly lines = new SourceLines();
  /** Events the clock could not place (see WallClock): warnings for the session's meta. */
  readonly warnings = new WarningList();
  count = 0;

  constructor(private readonly store: TraceStore, private readonly file: string, session: NewSession) {
    this.id = store.createSession(session);
  }

  push(event: NewEvent, line: number): void {
    let t = this.clock.tNs(event.wall);
    if (t === 'far') {
      t = null;
      this.warnings.push({ line, text: clip(`${event.kind} at ${event.wall}`), reason: 'more than 104 days after the first timed event of its session (a damaged timestamp?): kept without a time' });
    }
    // Object.assign, not a spread: this runs for every event of a multi-million-line log.
    const e = Object.assign({}, event, { t_ns: t, seq: this.count }) as TraceEvent;
    const r = EventSchema.safeParse(e);
    if (!r.success) {
      throw new MigraceError('IMPORT', `${this.file}:${line}: the importer made an invalid ${e.kind} event (${zodProblems(r.error)}); nothing was written`);
    }
    this.batch.push(e);
    this.lines.push(line);
    this.count++;
    if (this.batch.length >= SessionOut.BATCH) this.flush();
  }

  private flush(): void {
    const b = this.batch;
    this.batch = [];
    this.store.appendEvents(this.id, b);
  }

  finish(threads: readonly Thread[], patch: { label?: string; meta: Record<string, unknown> }): void {
    // The threads with the last batch: one transaction, not one a thread.
    const b = this.batch;
    this.batch = [];
    this.store.appendBatch(this.id, threads, b);
    this.store.updateSession(this.id, patch);
    this.store.finishSession(this.id, 'complete');
  }
}

/** The meta of an imported session: the parser's warnings, then the writer's. */
function importMeta(kind: ImportKind, file: string, opts: ImportOptions, log: { title: string; warnings: ImportWarning[]; unlisted?: number; meta: Record<string, unknown> }, out: SessionOut): Record<string, unknown> {
  return {
    import: {
      kind,
      file,
      qemu_log: opts.qemuLog ?? null,
      title: log.title,
      warning_count: log.warnings.length + (log.unlisted ?? 0) + out.warnings.items.length + out.warnings.unlisted,
      warnings: [...log.warnings.slice(0, MAX_META_WARNINGS), ...out.warnings.items.slice(0, MAX_META_WARNINGS)].slice(0, MAX_META_WARNINGS),
      // Which line of the source each event came from, by seq.
      source_lines: out.lines.value,
      ...log.meta,
    },
  };
}

interface Context {
  store: TraceStore;
  kind: ImportKind;
  opts: ImportOptions;
  /** Sessions this import wrote (or is writing), for the labels and for the rollback. */
  written: { id: number; file: string; title: string }[];
}

function newSession(cx: Context, file: string, title: string, binary: string | null, variant: Variant, version: string | null): NewSession {
  return {
    label: cx.opts.label,
    origin: ORIGINS[cx.kind],
    target: { kind: 'import', binary, build_id: null, qemu_version: version, variant, status_table: tableIdFor(version) },
    profile: null,
    meta: { import: { kind: cx.kind, file, title, state: 'being read' } },
  };
}

/** Errors of the store, not of the input: their session stays, aborted. */
const storeFailures = new WeakSet<Error>();

/** A store failure while writing: the session says so, the import stops. */
function aborted(cx: Context, id: number, file: string, e: unknown): MigraceError {
  const msg = `import of ${file} failed while writing: ${messageOf(e)}`;
  try {
    cx.store.finishSession(id, 'aborted', msg);
  } catch {
    // The store itself is failing; the session stays 'recording', never 'complete'.
  }
  const err = new MigraceError('IMPORT', msg, { cause: e });
  storeFailures.add(err);
  return err;
}

/** Write a log that is already in memory (a transcript, a libvirt monitor) as one session. */
function writeLog(cx: Context, file: string, log: ImportedLog, binary: string | null, variant: Variant, version: string | null): void {
  let out: SessionOut | null = null;
  try {
    out = new SessionOut(cx.store, file, newSession(cx, file, log.title, binary, variant, version));
    cx.written.push({ id: out.id, file, title: log.title });
    log.events.forEach((e, i) => out!.push(e, log.lines[i] ?? 0));
    out.finish(log.threads, { meta: importMeta(cx.kind, file, cx.opts, log, out) });
  } catch (e) {
    if (e instanceof MigraceError || out === null) throw e;
    throw aborted(cx, out.id, file, e);
  }
}

/** A QEMU trace log's events straight into the store: a session per process, opened at its first event. */
class StoreTraceSink implements TraceEventSink {
  readonly sessions: (SessionOut | undefined)[] = [];

  constructor(private readonly cx: Context, private readonly file: string) {}

  event(index: number, e: NewEvent, line: number): void {
    let out = this.sessions[index];
    const version = this.cx.opts.qemuVersion ?? null;
    try {
      if (!out) {
        out = new SessionOut(this.cx.store, this.file, newSession(this.cx, this.file, `${this.file}: QEMU run ${index + 1}`, null, variantOf(null, version), version));
        this.sessions[index] = out;
        this.cx.written.push({ id: out.id, file: this.file, title: `${this.file}: QEMU run ${index + 1}` });
      }
      out.push(e, line);
    } catch (err) {
      if (err instanceof MigraceError || !out) throw err;
      throw aborted(this.cx, out.id, this.file, err);
    }
  }

  finish(processes: QemuTraceProcessInfo[]): void {
    processes.forEach((p, i) => {
      const out = this.sessions[i];
      if (!out) return;
      const w = this.cx.written.find((x) => x.id === out.id)!;
      w.title = p.title;
      try {
        out.finish(p.threads, { meta: importMeta(this.cx.kind, this.file, this.cx.opts, p, out) });
      } catch (e) {
        throw aborted(this.cx, out.id, this.file, e);
      }
    });
  }
}

async function importGdb(cx: Context, file: string): Promise<void> {
  const t = await readFileLines(file, new GdbTranscriptImport({ source: file, qemuVersion: cx.opts.qemuVersion ?? null }));
  writeLog(cx, file, t, t.binary, t.variant, cx.opts.qemuVersion ?? t.qemuVersion);
}

async function importTrace(cx: Context, file: string): Promise<void> {
  const sink = new StoreTraceSink(cx, file);
  const summary = await readFileLines(file, new QemuTraceImport({ source: file, qemuVersion: cx.opts.qemuVersion ?? null }, sink));
  sink.finish(summary.processes);
}

async function importLibvirt(cx: Context, file: string): Promise<void> {
  const opts = cx.opts;
  const lv = await readFileLines(file, new LibvirtLogImport({
    source: file, qemuVersion: opts.qemuVersion ?? null, migrationEvents: opts.qemuLog !== undefined ? 'notes' : 'transitions',
  }));
  if (lv.monitors.length === 0) {
    throw new MigraceError('IMPORT',
      `${file}: no migration traffic (query-migrate, info migrate or MIGRATION events) on any of its ${lv.idle.length} QEMU monitor(s)`);
  }
  let qemu: ImportedLog[] | null = null;
  if (opts.qemuLog !== undefined) {
    const collected = new CollectedTrace();
    const summary = await readFileLines(opts.qemuLog, new QemuTraceImport({ source: opts.qemuLog, qemuVersion: opts.qemuVersion ?? null }, collected));
    qemu = collected.attach(summary).processes;
  }
  const version = opts.qemuVersion ?? null;
  for (const m of lv.monitors) {
    let log: ImportedLog = { ...m, warnings: [...lv.warnings, ...m.warnings] };
    if (qemu) {
      const span = wallSpan(m);
      // The QEMU process of this monitor: the one whose trace overlaps the monitor's traffic most.
      let best: (typeof qemu)[number] | null = null;
      let bestOverlap = -1;
      for (const p of qemu) {
        const ps = wallSpan(p);
        if (!span || !ps) continue;
        const overlap = Math.min(span[1], ps[1]) - Math.max(span[0], ps[0]);
        if (overlap > bestOverlap) {
          best = p;
          bestOverlap = overlap;
        }
      }
      if (best && bestOverlap >= -60e6) {
        log = mergeOnWallTime(log, best, { mainTid: (best as { pid?: number | null }).pid ?? null });
        log.title = `${m.title} + ${best.title}`;
      } else {
        log.warnings.push({ line: 0, text: opts.qemuLog!, reason: 'no QEMU process in the trace log overlaps this monitor\'s traffic in time (different guest, or clocks apart?): not merged' });
      }
    }
    writeLog(cx, file, log, null, variantOf(null, version), version);
  }
}

/**
 * Import files of one kind; returns the new sessions' ids, in file order.
 * A GDB transcript gives one session; a QEMU trace log one per QEMU process
 * in it; a libvirt log one per QEMU monitor with migration traffic (merged
 * with `qemuLog` when given).
 */
export async function importFiles(store: TraceStore, kind: ImportKind, files: string[], opts: ImportOptions): Promise<number[]> {
  if (files.length === 0) throw new MigraceError('BAD_INPUT', 'no file to import');
  if (opts.qemuLog !== undefined && kind !== 'libvirt') {
    throw new MigraceError('BAD_INPUT', `a QEMU trace log to merge (${opts.qemuLog}) goes with a libvirt log (migrace import libvirt FILE --qemu-log ${opts.qemuLog}), not with migrace import ${kind}`);
  }
  const cx: Context = { store, kind, opts, written: [] };
  try {
    for (const file of files) {
      if (kind === 'gdb') await importGdb(cx, file);
      else if (kind === 'qemu-trace') await importTrace(cx, file);
      else await importLibvirt(cx, file);
    }
  } catch (e) {
    // Bad input: nothing of this import stays. A session the store failed on stays, aborted, with its error.
    if (!(e instanceof Error) || !storeFailures.has(e)) {
      for (const w of cx.written) {
        try {
          store.deleteSession(w.id);
        } catch {
          // Already gone, or the store is failing: the error below is what matters.
        }
      }
    }
    throw e;
  }
  // Labels: the user's, with the file and the session's title when one import made several.
  if (cx.written.length > 1) {
    for (const w of cx.written) {
      const label = `${opts.label} (${w.title.startsWith(w.file) ? basename(w.file) + w.title.slice(w.file.length) : w.title})`;
      store.updateSession(w.id, { label });
    }
  }
  return cx.written.map((w) => w.id);
}
