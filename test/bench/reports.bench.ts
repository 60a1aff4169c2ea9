import type { Session, Thread, TraceEvent, StateValue } from '../../trace/schema.js';
import type { Analysis, Finding, Verdict } from '../../analyzer/types.js';
import { renderHtml } from '../../reports/html.js';
import { renderText } from '../../reports/text.js';
import { writePerfetto } from '../../reports/perfetto.js';
import { TraceStore } from '../../trace/store.js';
import { checkChromeTraceFile } from '../helpers/chrome-trace.js';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/*
 * Report speed and size on LP#1994002 sessions of 1 thousand, 100 thousand
 * and 1 million events, each against JSON.stringify of the same events in the
 * same run: the ratio says what drawing costs over merely serializing. The
 * Perfetto export writes every event to a file as a stream: it is measured
 * in a node process of its own (time, peak memory added over the loaded
 * events, file size) against the same events written one JSON line each,
 * also in a process of its own, and its file is checked streaming against
 * what Perfetto's importer needs (test/helpers/chrome-trace.ts).
 *
 * The command itself, `migrace report N --perfetto F`, is measured whole at
 * the largest size on a session stored in a temporary database: it reads
 * the events from the store twice (the analysis and the export's first
 * pass, then the writing) and never holds them. Its baseline is a child
 * that reads the same events from the store once and writes each as a JSON
 * line; both report their own getrusage (rusage-child.ts), and the
 * command's file gets the importer checks.
 *
 * The session builder is exported for the report tests: a hand-made
 * recording of the race (and its patched twin) with hand-made findings, so
 * the reports are tested without the analyzer.
 */

export interface BenchRow { name: string; baselineMs: number; ms: number; ratio: number; bytes: number; [extra: string]: string | number }

export interface Bundle {
  session: Session;
  threads: Thread[];
  events: TraceEvent[];
  analysis: Analysis;
}

export interface FixtureOptions {
  variant?: 'unpatched' | 'patched';
  target?: 'minimig' | 'qemu';
  /** Approximate number of events: polls are added before and after the race. */
  events?: number;
  /** Put markup into thread names, notes, the label, the binary path and a reply. */
  evil?: boolean;
  /** Imports have no clock: t_ns null everywhere. */
  clock?: boolean;
  sessionId?: number;
  /** Add an idle third thread (a CPU thread) with no events of interest. */
  extraThread?: boolean;
}

export const EVIL = '<img src=x onerror=alert(1)>';
export const EVIL_SCRIPT = '<script>alert(2)</script>';

const SETUP: StateValue = { value: 1, name: 'setup' };
const ACTIVE: StateValue = { value: 4, name: 'active' };
const NONE: StateValue = { value: 0, name: 'none' };
const COMPLETED: StateValue = { value: 8, name: 'completed' };

const NO_RAM = 'migration was active, but no RAM info was set';

function verdictOf(seq: number, status: string | null, hasRam: boolean): Verdict {
  const fails = status === 'active' && !hasRam;
  return {
    reply_seq: seq, status, has_ram: hasRam,
    time_fields: status === 'active' && hasRam ? ['total-time', 'setup-time', 'expected-downtime'] : [],
    old_libvirt: fails ? 'fails' : 'accepts', current_libvirt: 'accepts',
    libvirt_error: fails ? NO_RAM : null,
    shape: null,
    summary: fails
      ? `active without ram: old libvirt fails: "${NO_RAM}", current libvirt accepts it`
      : `${status ?? 'no status'} ${hasRam ? 'with ram' : 'without ram'}: libvirt accepts it`,
  };
}

/**
 * One LP#1994002 session: polls while in setup, the raced poll (read setup,
 * hold the reader, live_migration moves setup -> active, release, publish),
 * polls while active, completion. Unpatched publishes active and replies
 * {"status":"active"}; patched publishes setup and replies {"status":"setup"}.
 */
export function buildLp1994002Bundle(opts: FixtureOptions = {}): Bundle {
  const variant = opts.variant ?? 'unpatched';
  const kind = opts.target ?? 'minimig';
  const evil = opts.evil ?? false;
  const clock = opts.clock ?? true;
  const id = opts.sessionId ?? (variant === 'unpatched' ? 1 : 2);
  const mainName = evil ? `${EVIL}main` : kind === 'minimig' ? 'minimig' : 'qemu-system-x86';
  const migName = evil ? `live_migration${EVIL_SCRIPT}` : 'live_migration';
  const threads: Thread[] = [
    { tid: 1, gdb_id: 1, lwp: 4242, name: mainName },
    { tid: 2, gdb_id: 5, lwp: 4250, name: migName },
  ];
  if (opts.extraThread) threads.push({ tid: 3, gdb_id: 3, lwp: 4244, name: 'CPU 0/TCG' });
  const binary = kind === 'minimig'
    ? `samples/minimig/${variant === 'patched' ? 'minimig-patched' : 'minimig'}`
    : variant === 'patched' ? '/usr/bin/qemu-system-x86_64' : '/opt/qemu-5.2/usr/bin/qemu-system-x86_64';
  const session: Session = {
    id,
    label: evil ? `race </title><script>alert(3)</script> ${EVIL}` : `lp1994002 ${variant} ${kind}`,
    created_at: '2025-11-26T00:00:00.000Z',
    origin: 'replay',
    target: {
      kind,
      binary: evil ? `${binary}"><img src=x onerror=alert(4)>` : binary,
      build_id: kind === 'qemu' ? (variant === 'patched' ? 'd9541fd67c4ea37f9ca7fca0f5096f32b3b7e7e0' : 'e75c4e44f088a4a9c5bb4880bed10e7a81dc2606') : null,
      qemu_version: kind === 'qemu' ? (variant === 'patched' ? '7.2.22' : '5.2.0') : null,
      variant,
      status_table: '4.2',
    },
    profile: null,
    state: 'complete',
    error: null,
    meta: { scenario: 'lp1994002' },
  };

  const events: TraceEvent[] = [];
  const replies: Verdict[] = [];
  let seq = 0;
  let t = 1_000_000;
  const file = kind === 'minimig' ? 'minimig.c' : 'migration/migration.c';
  const lines = kind === 'minimig' ? { read: 88, publish: 112, set: 140 } : { read: 1059, publish: 1104, set: 1661 };
  type Loc = Pick<TraceEvent, 'probe' | 'pc' | 'func' | 'file' | 'line'>;
  const loc = (probe: string | null, func: string | null, line: number | null): Loc => ({
    probe, pc: func ? `0x55555555${(line ?? 0).toString(16).padStart(4, '0')}` : null, func, file: func ? file : null, line,
  });
  const L = {
    query: loc('query', 'qmp_query_migrate', null),
    read: loc('read', 'qmp_query_migrate', lines.read),
    publish: loc('publish', 'qmp_query_migrate', lines.publish),
    end: loc(null, 'qmp_query_migrate', null),
    set: loc('transition', 'migrate_set_state', lines.set),
    none: loc(null, null, null),
  };
  // Every event built with the same key order: one hidden class, as rows
  // read back from the store would have, and fast to build a million of.
  const push = <K extends TraceEvent['kind']>(kind: K, thread: number | null, where: Loc, data: Extract<TraceEvent, { kind: K }>['data'], dt: number): TraceEvent => {
    t += dt;
    const ev = {
      seq: ++seq, t_ns: clock ? t : null, wall: null, thread,
      probe: where.probe, pc: where.pc, func: where.func, file: where.file, line: where.line, kind, data,
    } as TraceEvent;
    events.push(ev);
    return ev;
  };
  const activeBody = { status: 'active', 'total-time': 12, 'setup-time': 3, 'expected-downtime': 300, ram: { transferred: 1024, remaining: 4096, total: 131072 } };
  let q = 0;
  const poll = (state: StateValue): void => {
    const qid = `q${++q}`;
    push('query-begin', 1, L.query, { query: qid }, 20_000_000);
    push('read', 1, L.read, { value: state }, 30_000);
    push('publish', 1, L.publish, { value: state }, 30_000);
    push('query-end', 1, L.end, { query: qid }, 30_000);
    const hasRam = state.name === 'active' || state.name === 'completed';
    const r = push('reply', null, L.none, {
      query: qid, command: 'query-migrate', status: state.name, has_ram: hasRam, body: hasRam ? activeBody : { status: state.name },
    }, 150_000);
    replies.push(verdictOf(r.seq, state.name, hasRam));
  };

  const target = opts.events ?? 0;
  // The race sits in the middle: ~half the padding polls before it.
  const fixed = 20;
  const padPolls = Math.max(0, Math.floor((target - fixed) / 5));
  const before = Math.max(1, Math.floor(padPolls / 2));
  const after = Math.max(1, padPolls - before);

  push('transition', 1, L.set, { addr: '0x5555566a0238', old: NONE, new: SETUP }, 0);
  for (let i = 0; i < before; i++) poll(SETUP);

  // The raced query.
  const qid = `q${++q}`;
  const begin = push('query-begin', 1, L.query, { query: qid }, 20_000_000);
  const read = push('read', 1, L.read, { value: SETUP }, 30_000);
  push('hold', 1, L.none, { role: 'reader', reason: 'after the switch read' }, 40_000);
  if (evil) push('note', 1, L.none, { text: `${EVIL} ${EVIL_SCRIPT} & "quotes"` }, 10_000);
  const cross = push('transition', 2, L.set, { addr: '0x5555566a0238', old: SETUP, new: ACTIVE }, 900_000);
  push('release', 1, L.none, { role: 'reader', reason: 'state is active in memory' }, 300_000);
  const pubValue = variant === 'patched' ? SETUP : ACTIVE;
  const publish = push('publish', 1, L.publish, { value: pubValue }, 50_000);
  const end = push('query-end', 1, L.end, { query: qid }, 30_000);
  const body = variant === 'patched' ? { status: 'setup' } : evil ? { status: 'active', note: `${EVIL_SCRIPT}</pre>` } : { status: 'active' };
  const reply = push('reply', null, L.none, {
    query: qid, command: 'query-migrate', status: pubValue.name, has_ram: false, body,
  }, 150_000);
  const verdict = verdictOf(reply.seq, pubValue.name, false);
  replies.push(verdict);

  for (let i = 0; i < after; i++) poll(ACTIVE);
  push('transition', 2, L.set, { addr: '0x5555566a0238', old: ACTIVE, new: COMPLETED }, 5_000_000);
  poll(COMPLETED);

  const reader = { tid: 1, name: mainName, lwp: 4242 };
  const writer = { tid: 2, name: migName, lwp: 4250 };
  const finding: Finding = {
    id: 'F1',
    session_id: id,
    class: variant === 'patched' ? 'benign' : 'manifested',
    reader,
    read: { seq: read.seq, value: SETUP },
    crossing: [{ seq: cross.seq, thread: writer, old: SETUP, new: ACTIVE }],
    publish: { seq: publish.seq, value: pubValue },
    query: { id: qid, begin_seq: begin.seq, end_seq: end.seq },
    reply: verdict,
    evidence: [begin.seq, read.seq, cross.seq, publish.seq, end.seq, reply.seq],
    summary: variant === 'patched'
      ? `thread ${migName} moved setup -> active between the read (#${read.seq}) and the publish (#${publish.seq}) of ${mainName}, which published setup as it read`
      : `thread ${migName} moved setup -> active between the read of setup (#${read.seq}) and the publish of active (#${publish.seq}) by ${mainName}`,
  };
  return { session, threads, events, analysis: { session_id: id, findings: [finding], replies, warnings: [] } };
}

function time<T>(f: () => T): { ms: number; value: T } {
  const t0 = performance.now();
  const value = f();
  return { ms: performance.now() - t0, value };
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** What one streamed export cost, measured in a process of its own. */
interface StreamRun { ms: number; cpuMs: number; bytes: number; rssBeforeMb: number; peakRssMb: number; peakHeapMb: number; valid?: boolean; problems?: string[] }

const MB = 1024 * 1024;

/**
 * Write `n` events to `file` in 1 MiB chunks, sampling memory at every
 * chunk: `perfetto` is writePerfetto; `baseline` is the least any full
 * export does, each event JSON.stringify'd on a line of its own.
 */
function streamRun(mode: 'perfetto' | 'baseline', n: number, file: string): StreamRun {
  const b = buildLp1994002Bundle({ events: n, target: 'qemu' });
  gc();
  const rssBefore = process.memoryUsage.rss();
  let peakRss = rssBefore;
  let peakHeap = process.memoryUsage().heapUsed;
  let bytes = 0;
  const fd = openSync(file, 'w');
  const sink = (chunk: string): void => {
    const buf = Buffer.from(chunk, 'utf8');
    for (let off = 0; off < buf.length;) off += writeSync(fd, buf, off);
    bytes += buf.length;
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakHeap = Math.max(peakHeap, m.heapUsed);
  };
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  try {
    if (mode === 'perfetto') writePerfetto(b.session, b.threads, b.events, b.analysis, sink);
    else {
      let buf = '';
      for (const e of b.events) {
        buf += `${JSON.stringify(e)}\n`;
        if (buf.length >= MB) {
          sink(buf);
          buf = '';
        }
      }
      sink(buf);
    }
  } finally {
    closeSync(fd);
  }
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { ms, cpuMs: (cpu.user + cpu.system) / 1000, bytes, rssBeforeMb: rssBefore / MB, peakRssMb: peakRss / MB, peakHeapMb: peakHeap / MB };
}

/** Run streamRun in a fresh node (so its peak memory is its own), then check the file streaming. */
function streamRunIsolated(mode: 'perfetto' | 'baseline', n: number, file: string): StreamRun {
  const r = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), CHILD_FLAG, mode, String(n), file], { encoding: 'utf8', maxBuffer: 16 * MB });
  if (r.status !== 0) throw new Error(`bench child ${mode} ${n} failed (${r.status ?? r.signal}): ${r.stderr.trim().split('\n').slice(-3).join(' ')}`);
  const run = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as StreamRun;
  if (mode === 'perfetto') {
    const check = checkChromeTraceFile(file);
    run.valid = check.problems.length === 0 && check.seqs >= n - 100;
    run.problems = check.problems.slice(0, 3);
  }
  return run;
}

const CHILD_FLAG = '--reports-bench-child';

/** A whole command as the OS saw it. */
interface CommandRun { ms: number; cpuMs: number; maxRssMb: number; bytes: number }

/** The LP#1994002 QEMU session of about n events, stored in a new database; its id. */
function storeSession(db: string, n: number): number {
  const b = buildLp1994002Bundle({ events: n, target: 'qemu' });
  const store = TraceStore.open(db);
  try {
    const { session: s } = b;
    const id = store.createSession({ label: s.label, origin: s.origin, target: s.target, profile: s.profile, meta: s.meta });
    // Batches of the size a long import writes: one transaction of a million rows would only measure SQLite's journal.
    for (let i = 0; i < b.events.length; i += 50_000) store.appendBatch(id, i === 0 ? b.threads : [], b.events.slice(i, i + 50_000));
    store.finishSession(id, 'complete');
    return id;
  } finally {
    store.close();
  }
}

/** Run `args` under node with rusage-child.ts preloaded: wall time from here, CPU and peak RSS as the child's getrusage says. */
function commandRun(args: string[], out: string, rusageFile: string): CommandRun {
  const preload = fileURLToPath(new URL('./rusage-child.js', import.meta.url));
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ['--import', preload, ...args], {
    encoding: 'utf8', maxBuffer: 16 * MB, env: { ...process.env, MIGRACE_BENCH_RUSAGE: rusageFile },
  });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`bench command ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr.trim().split('\n').slice(-3).join(' ')}`);
  const u = JSON.parse(readFileSync(rusageFile, 'utf8')) as NodeJS.ResourceUsage;
  // maxRSS is in kilobytes, the CPU times in microseconds.
  return { ms, cpuMs: (u.userCPUTime + u.systemCPUTime) / 1000, maxRssMb: u.maxRSS / 1024, bytes: statSync(out).size };
}

/** The least a command that exports every stored event does: read them from the store once and write each as a JSON line. */
function storeLines(db: string, sid: number, file: string): void {
  const store = TraceStore.open(db, { readonly: true });
  const fd = openSync(file, 'w');
  try {
    let buf = '';
    const flush = (): void => {
      const bytes = Buffer.from(buf, 'utf8');
      for (let off = 0; off < bytes.length;) off += writeSync(fd, bytes, off);
      buf = '';
    };
    for (const e of store.iterateEvents(sid)) {
      buf += `${JSON.stringify(e)}\n`;
      if (buf.length >= MB) flush();
    }
    flush();
  } finally {
    closeSync(fd);
    store.close();
  }
}

/** `migrace report --perfetto` on a stored session of n events, against storeLines, each a process of its own. */
function commandRow(n: number, dir: string): BenchRow {
  const db = join(dir, 'bench.db');
  const sid = storeSession(db, n);
  gc();
  const lines = join(dir, 'store-lines.jsonl');
  const trace = join(dir, 'report.perfetto.json');
  const rusage = join(dir, 'rusage.json');
  const base = commandRun([fileURLToPath(import.meta.url), CHILD_FLAG, 'store-lines', db, String(sid), lines], lines, rusage);
  rmSync(lines, { force: true });
  const bin = fileURLToPath(new URL('../../../bin/migrace.js', import.meta.url));
  const cmd = commandRun([bin, 'report', String(sid), '--perfetto', trace, '--db', db], trace, rusage);
  const check = checkChromeTraceFile(trace);
  rmSync(trace, { force: true });
  const valid = check.problems.length === 0 && check.seqs >= n - 100 && check.flows >= 1;
  return {
    name: `migrace report --perfetto (from the store), ${sizeLabel(n)} events`, baselineMs: base.ms, ms: cmd.ms, ratio: cmd.ms / base.ms,
    cpuMs: Math.round(cmd.cpuMs), baselineCpuMs: Math.round(base.cpuMs), cpuRatio: Number((cmd.cpuMs / base.cpuMs).toFixed(2)),
    maxRssMb: Math.round(cmd.maxRssMb), baselineMaxRssMb: Math.round(base.maxRssMb),
    bytes: cmd.bytes, baselineBytes: base.bytes,
    target: `${cmd.ms < 10_000 ? 'met' : 'missed'} (< 10 s), ${cmd.maxRssMb < 300 ? 'met' : 'missed'} (< 300 MB)`,
    importerChecks: valid ? 'pass' : `FAIL ${check.problems.slice(0, 3).join('; ') || `${check.seqs} events, ${check.flows} flows`}`,
  };
}

function sizeLabel(n: number): string {
  return n >= 1_000_000 ? `${n / 1_000_000}M` : n >= 1000 ? `${n / 1000}k` : String(n);
}

export async function benchReports(sizes: number[] = [1_000, 100_000, 1_000_000]): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  // Warm up once (module initialization, jsdom's first document, JIT), so
  // the first size is not charged for it.
  const warm = buildLp1994002Bundle({});
  renderHtml(warm.session, warm.threads, warm.events, warm.analysis);
  renderText(warm.session, warm.threads, warm.events, warm.analysis);
  for (const n of sizes) {
    let b: Bundle | null = buildLp1994002Bundle({ events: n });
    gc();
    const base = time(() => JSON.stringify(b!.events).length);
    const baselineMs = base.ms;
    const label = sizeLabel(n);
    const html = time(() => renderHtml(b!.session, b!.threads, b!.events, b!.analysis));
    rows.push({ name: `html report, ${label} events`, baselineMs, ms: html.ms, ratio: html.ms / baselineMs, bytes: Buffer.byteLength(html.value) });
    const text = time(() => renderText(b!.session, b!.threads, b!.events, b!.analysis));
    rows.push({ name: `text report, ${label} events`, baselineMs, ms: text.ms, ratio: text.ms / baselineMs, bytes: Buffer.byteLength(text.value) });
    b = null;
    gc();
  }
  // Perfetto writes every event, streamed to a file: each size in a process
  // of its own against the baseline (every event as a JSON line) in another.
  const dir = mkdtempSync(join(tmpdir(), 'migrace-bench-perfetto-'));
  try {
    for (const n of sizes) {
      const base = streamRunIsolated('baseline', n, join(dir, `baseline-${n}.jsonl`));
      const p = streamRunIsolated('perfetto', n, join(dir, `perfetto-${n}.json`));
      rmSync(join(dir, `baseline-${n}.jsonl`), { force: true });
      rmSync(join(dir, `perfetto-${n}.json`), { force: true });
      const added = p.peakRssMb - p.rssBeforeMb;
      const baseAdded = base.peakRssMb - base.rssBeforeMb;
      rows.push({
        name: `perfetto json (every event, streamed, in memory), ${sizeLabel(n)} events`, baselineMs: base.ms, ms: p.ms, ratio: p.ms / base.ms,
        // CPU time too: on a shared machine the wall time is mostly waiting.
        cpuMs: Math.round(p.cpuMs), baselineCpuMs: Math.round(base.cpuMs), cpuRatio: Number((p.cpuMs / base.cpuMs).toFixed(2)),
        bytes: p.bytes, baselineBytes: base.bytes,
        peakAddedMb: Math.round(added), baselinePeakAddedMb: Math.round(baseAdded), memRatio: Number((Math.max(1, added) / Math.max(1, baseAdded)).toFixed(2)),
        eventsLoadedMb: Math.round(p.rssBeforeMb), peakRssMb: Math.round(p.peakRssMb), peakHeapMb: Math.round(p.peakHeapMb),
        importerChecks: p.valid ? 'pass' : `FAIL ${p.problems?.join('; ')}`,
      });
    }
    rows.push(commandRow(Math.max(...sizes), dir));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

if (process.argv[2] === CHILD_FLAG && process.argv[1] === fileURLToPath(import.meta.url)) {
  const [mode, ...args] = process.argv.slice(3);
  if (mode === 'store-lines') storeLines(args[0]!, Number(args[1]), args[2]!);
  else process.stdout.write(`${JSON.stringify(streamRun(mode as 'perfetto' | 'baseline', Number(args[0]), args[1]!))}\n`);
}
