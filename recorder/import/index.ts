import { readFileSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { MigraceError, messageOf } from '../../trace/errors.js';
import { EventSchema, type NewEvent, type Origin, type Variant } from '../../trace/schema.js';
import { tableIdFor } from '../../trace/status.js';
import { SessionWriter, type TraceStore } from '../../trace/store.js';
import { parseGdbTranscript, variantOf } from './gdb-transcript.js';
import { parseLibvirtLog } from './libvirt-log.js';
import { mergeOnWallTime, wallMicros, wallSpan, type ImportedLog } from './merge.js';
import { parseQemuTrace } from './qemu-trace.js';

/*
 * Post-mortem import: files in, sessions out.
 *
 * Everything is read and parsed before anything is written, so a malformed
 * file (in any position of the list) leaves no session behind at all. A
 * session whose writing fails half-way is finished as aborted with the
 * error, never left complete or recording.
 */

export type ImportKind = 'gdb' | 'qemu-trace' | 'libvirt';

export interface ImportOptions {
  label: string;
  /** A QEMU trace log of the same guest, merged on wall time into the libvirt sessions (kind 'libvirt' only). */
  qemuLog?: string;
  /** The QEMU version the logs come from: picks the MigrationStatus numbering. */
  qemuVersion?: string;
}

/** Larger files are refused: the importers hold a file in memory. */
const MAX_FILE_BYTES = 512 * 1024 * 1024;
const MAX_META_WARNINGS = 200;
const MAX_META_LINES = 50_000;

const ORIGINS: Record<ImportKind, Origin> = {
  gdb: 'import:gdb-log',
  'qemu-trace': 'import:qemu-trace',
  libvirt: 'import:libvirt-log',
};

/** A file's text; gzip (by its magic bytes, whatever the name) is inflated first. */
export function readLogFile(file: string): string {
  let st;
  try {
    st = statSync(file);
  } catch (e) {
    throw new MigraceError('IMPORT', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : messageOf(e)}`, { cause: e });
  }
  if (st.isDirectory()) throw new MigraceError('IMPORT', `${file} is a directory, not a log file`);
  if (st.size > MAX_FILE_BYTES) {
    throw new MigraceError('IMPORT', `${file} is ${Math.round(st.size / 1048576)} MiB: larger than the ${MAX_FILE_BYTES / 1048576} MiB an import reads; cut it to the migration's time span first`);
  }
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch (e) {
    throw new MigraceError('IMPORT', `cannot read ${file}: ${messageOf(e)}`, { cause: e });
  }
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      buf = gunzipSync(buf, { maxOutputLength: MAX_FILE_BYTES });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const why = code === 'Z_BUF_ERROR' ? 'truncated gzip data (the file ends before the compressed stream does)'
        : code === 'ERR_BUFFER_TOO_LARGE' || /too large|maxOutputLength/i.test(messageOf(e)) ? `more than ${MAX_FILE_BYTES / 1048576} MiB once inflated`
          : `corrupt gzip data (${messageOf(e)})`;
      throw new MigraceError('IMPORT', `${file}: ${why}`, { cause: e });
    }
  }
  return new TextDecoder('utf-8', { fatal: false }).decode(buf);
}

interface Planned {
  file: string;
  log: ImportedLog;
  variant: Variant;
  binary: string | null;
  qemuVersion: string | null;
}

function planGdb(file: string, text: string, opts: ImportOptions): Planned[] {
  const t = parseGdbTranscript(text, { source: file, qemuVersion: opts.qemuVersion ?? null });
  return [{ file, log: t, variant: t.variant, binary: t.binary, qemuVersion: opts.qemuVersion ?? t.qemuVersion }];
}

function planTrace(file: string, text: string, opts: ImportOptions): Planned[] {
  const r = parseQemuTrace(text, { source: file, qemuVersion: opts.qemuVersion ?? null });
  return r.processes.map((p) => ({ file, log: p, variant: variantOf(null, opts.qemuVersion ?? null), binary: null, qemuVersion: opts.qemuVersion ?? null }));
}

function planLibvirt(file: string, text: string, opts: ImportOptions, qemuText: { file: string; text: string } | null): Planned[] {
  const lv = parseLibvirtLog(text, {
    source: file, qemuVersion: opts.qemuVersion ?? null, migrationEvents: qemuText ? 'notes' : 'transitions',
  });
  if (lv.monitors.length === 0) {
    throw new MigraceError('IMPORT',
      `${file}: no migration traffic (query-migrate, info migrate or MIGRATION events) on any of its ${lv.idle.length} QEMU monitor(s)`);
  }
  const qemu = qemuText ? parseQemuTrace(qemuText.text, { source: qemuText.file, qemuVersion: opts.qemuVersion ?? null }) : null;
  return lv.monitors.map((m) => {
    let log: ImportedLog = { ...m, warnings: [...lv.warnings, ...m.warnings] };
    if (qemu) {
      const span = wallSpan(m);
      // The QEMU process of this monitor: the one whose trace overlaps the monitor's traffic most.
      let best: (typeof qemu.processes)[number] | null = null;
      let bestOverlap = -1;
      for (const p of qemu.processes) {
        const ps = wallSpan(p);
        if (!span || !ps) continue;
        const overlap = Math.min(span[1], ps[1]) - Math.max(span[0], ps[0]);
        if (overlap > bestOverlap) {
          best = p;
          bestOverlap = overlap;
        }
      }
      if (best && bestOverlap >= -60e6) {
        log = mergeOnWallTime(log, best, { mainTid: best.pid });
        log.title = `${m.title} + ${best.title}`;
      } else {
        log.warnings.push({ line: 0, text: qemuText!.file, reason: 'no QEMU process in the trace log overlaps this monitor\'s traffic in time (different guest, or clocks apart?): not merged' });
      }
    }
    return { file, log, variant: variantOf(null, opts.qemuVersion ?? null), binary: null, qemuVersion: opts.qemuVersion ?? null };
  });
}

/**
 * t_ns from wall time: microseconds since the session's first event, in ns,
 * never going back (a merge of millisecond and microsecond stamps can put a
 * later stamp first by the tie rule). Null for every event when any event
 * has no wall time: a GDB transcript has no clock.
 */
function withClock(events: readonly NewEvent[]): NewEvent[] {
  const micros = events.map((e) => wallMicros(e.wall));
  if (events.length === 0 || micros.some((m) => m === null)) return events.map((e) => ({ ...e, t_ns: null }));
  const t0 = micros[0]!;
  let last = 0;
  return events.map((e, i) => {
    last = Math.max(last, Math.max(0, micros[i]! - t0) * 1000);
    return { ...e, t_ns: last };
  });
}

function validate(p: Planned): NewEvent[] {
  const events = withClock(p.log.events);
  events.forEach((e, i) => {
    const r = EventSchema.safeParse({ ...e, seq: i });
    if (!r.success) {
      const issue = r.error.issues[0];
      throw new MigraceError('IMPORT', `${p.file}:${p.log.lines[i] ?? '?'}: the importer made an invalid ${e.kind} event (${issue?.path.join('.')}: ${issue?.message}); nothing was written`);
    }
  });
  return events;
}

/**
 * Import files of one kind; returns the new sessions' ids, in file order.
 * A GDB transcript gives one session; a QEMU trace log one per QEMU process
 * in it; a libvirt log one per QEMU monitor with migration traffic (merged
 * with `qemuLog` when given).
 */
export function importFiles(store: TraceStore, kind: ImportKind, files: string[], opts: ImportOptions): number[] {
  if (files.length === 0) throw new MigraceError('BAD_INPUT', 'no file to import');
  if (opts.qemuLog !== undefined && kind !== 'libvirt') {
    throw new MigraceError('BAD_INPUT', `a QEMU trace log to merge (${opts.qemuLog}) goes with a libvirt log (migrace import libvirt FILE --qemu-log ${opts.qemuLog}), not with migrace import ${kind}`);
  }
  const qemuText = opts.qemuLog !== undefined ? { file: opts.qemuLog, text: readLogFile(opts.qemuLog) } : null;

  // Parse everything first: a bad file anywhere means no session at all.
  const planned: { p: Planned; events: NewEvent[] }[] = [];
  for (const file of files) {
    const text = readLogFile(file);
    const plans = kind === 'gdb' ? planGdb(file, text, opts) : kind === 'qemu-trace' ? planTrace(file, text, opts) : planLibvirt(file, text, opts, qemuText);
    for (const p of plans) planned.push({ p, events: validate(p) });
  }

  const ids: number[] = [];
  for (const { p, events } of planned) {
    const version = p.qemuVersion;
    const label = planned.length === 1 ? opts.label : `${opts.label} (${p.log.title.startsWith(p.file) ? basename(p.file) + p.log.title.slice(p.file.length) : p.log.title})`;
    const warnings = p.log.warnings;
    const meta: Record<string, unknown> = {
      import: {
        kind,
        file: p.file,
        qemu_log: opts.qemuLog ?? null,
        title: p.log.title,
        warning_count: warnings.length,
        warnings: warnings.slice(0, MAX_META_WARNINGS),
        // Which line of the source each event came from, by seq.
        source_lines: events.length <= MAX_META_LINES ? p.log.lines : null,
        ...p.log.meta,
      },
    };
    const id = store.createSession({
      label,
      origin: ORIGINS[kind],
      target: {
        kind: 'import', binary: p.binary, build_id: null, qemu_version: version, variant: p.variant,
        status_table: tableIdFor(version),
      },
      profile: null,
      meta,
    });
    ids.push(id);
    try {
      for (const t of p.log.threads) store.upsertThread(id, t);
      const w = new SessionWriter(store, id, { batchSize: 1000 });
      try {
        for (const e of events) w.push(e);
      } finally {
        w.close();
      }
      store.finishSession(id, 'complete');
    } catch (e) {
      const msg = `import of ${p.file} failed while writing: ${messageOf(e)}`;
      try {
        store.finishSession(id, 'aborted', msg);
      } catch {
        // The store itself is failing; the session stays 'recording', never 'complete'.
      }
      throw new MigraceError('IMPORT', msg, { cause: e });
    }
  }
  return ids;
}
