import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MigraceError, messageOf } from '../trace/errors.js';
import type { TraceStore } from '../trace/store.js';
import { readElfInfo } from '../recorder/probes/elf.js';
import type { Profile } from '../recorder/probes/profile.js';
import { ReadTracer } from '../recorder/read-trace.js';
import type { PreparedTarget } from '../recorder/targets/types.js';
import { buildOracle, judgeReplyShape, learnColumns, type Column, type LearnedTransition } from './hunt-oracle.js';
import { mergeReadPoints, staticOnly, staticReadPoints, type HuntReadPoint } from './hunt-readpoints.js';
import { CONTROL, loadHunt, type Baseline, type CellClass, type CellData, type HuntData, type HuntView } from './hunt-record.js';
import {
  BASELINE_DRIVE_OFFSET, baselineSchedule, cellSchedule, controlSchedule, scenario, type CellSpec, type ScenarioName,
} from './hunt-scenarios.js';
import { stateName } from './interleavings.js';
import { replay, type ReplayResult } from './replay.js';
import type { Schedule } from './schedule.js';

/**
 * `migrace hunt`: which read-then-transition windows does this build have?
 * An engine in steps, its state in one HuntRun object:
 *
 * 1. start: the profile of the build and its static read points (none is an
 *    error that names what is missing), the hunt row in the store;
 * 2. baselines: each scenario once, undisturbed and observed (replies in
 *    every state, a single-stepped query per state with --dynamic); a
 *    scenario the build cannot run (a capability it lacks) is skipped with
 *    the reason;
 * 3. learning: the oracle from every undisturbed reply, the columns from
 *    every transition that landed, the rows from the static and dynamic read
 *    points (cross-checked);
 * 4. cells: per row, one replay per column and a control, each a session,
 *    each stored as it ends; a cell that hangs times out and the hunt goes
 *    on; Ctrl-C stops after the cell in progress and keeps what is done;
 * 5. the end: the hunt closed, broken cells' schedules written to files.
 */

export interface HuntOptions {
  store: TraceStore;
  kind: 'minimig' | 'qemu';
  /** A fresh target (and its profile) for every run: the first only gives the profile and the build. */
  prepare: (purpose: 'start' | 'baseline' | 'cell') => Promise<{ target: PreparedTarget; profile: Profile }>;
  scenarios: ScenarioName[];
  /** Single-step a query per state to find the read points dynamically. */
  dynamic: boolean;
  /** Time for all single-stepping together. */
  dynamicBudgetMs?: number;
  /** Undisturbed replies per state in each baseline. */
  queries?: number;
  cellTimeoutMs: number;
  /** How long a missing reader waits before its lock-wait check. */
  blockedAfterMs?: number;
  /** Where broken cells' schedules go, once the hunt has its id; null: not written. */
  schedulesDir: (huntId: number) => string | null;
  label: string;
  invocation: Record<string, unknown> | null;
  gdbPath?: string;
  signal?: AbortSignal;
  /** One line per baseline and per cell. */
  progress?: (msg: string) => void;
}

export interface HuntResult {
  view: HuntView;
  /** Ctrl-C (or SIGTERM) stopped it; the cells done are stored. */
  interrupted: boolean;
}

/** A schedule's name, which is also its file's: the row and column, `+` as `.`, `->` as `-to-`, anything else as `_`. */
function fileSafe(s: string): string {
  return s.replace(/->/g, '-to-').replace(/\+/g, '.').replace(/[^\w.-]/g, '_').slice(0, 100);
}

class Interrupted extends Error {}

class HuntRun {
  private id = 0;
  private data!: HuntData;
  private profile!: Profile;
  private statics: HuntReadPoint[] = [];
  private tracer: ReadTracer | null = null;
  private replies: unknown[] = [];
  private cellsDone = 0;
  private cellsTotal = 0;
  private readonly began = Date.now();

  constructor(private readonly opts: HuntOptions) {}

  async run(): Promise<HuntResult> {
    await this.start();
    let interrupted = false;
    try {
      const b0 = Date.now();
      await this.baselines();
      this.checkSomeBaselineRan();
      const baselinesMs = Date.now() - b0;
      this.learn();
      const c0 = Date.now();
      await this.cells();
      this.data.timing = { baselines_ms: baselinesMs, cells_ms: Date.now() - c0, total_ms: Date.now() - this.began };
      this.opts.store.updateHunt(this.id, { state: 'complete', data: this.data });
    } catch (e) {
      interrupted = e instanceof Interrupted;
      const why = interrupted ? 'interrupted; the cells done so far are kept' : messageOf(e);
      this.opts.store.updateHunt(this.id, { state: 'aborted', error: why, data: this.data });
      if (!interrupted) throw e;
    }
    return { view: loadHunt(this.opts.store, this.id), interrupted };
  }

  private say(msg: string): void {
    this.opts.progress?.(msg);
  }

  private checkSignal(): void {
    if (this.opts.signal?.aborted) throw new Interrupted();
  }

  /* 1. start */

  private async start(): Promise<void> {
    const { target, profile } = await this.opts.prepare('start');
    // Only the profile and the build are needed here; every run prepares its own target.
    await target.dispose();
    this.profile = profile;
    this.statics = staticReadPoints(profile);
    const buildId = (await readElfInfo(target.binary)).buildId;
    if (this.opts.dynamic) {
      this.tracer = new ReadTracer({ binary: target.binary, budgetMs: this.opts.dynamicBudgetMs, progress: (m) => this.say(`  ${m}`) });
    }
    this.data = {
      format: 'migrace-hunt', version: 1, kind: this.opts.kind, build_id: buildId,
      options: {
        scenarios: this.opts.scenarios, dynamic: this.opts.dynamic, queries: this.opts.queries ?? 3,
        cell_timeout_ms: this.opts.cellTimeoutMs, invocation: this.opts.invocation,
      },
      baselines: [], oracle: {}, columns: [], rows: this.statics, cross_check: [], trace: null, timing: null,
    };
    this.id = this.opts.store.createHunt({ label: this.opts.label, target: target.info, profile, data: this.data });
    this.say(`hunt ${this.id}: ${this.statics.length} static read point(s) (${this.statics.map((p) => p.name).join(', ')}); scenarios ${this.opts.scenarios.join(', ')}`);
  }

  /* 2. baselines */

  private async baselines(): Promise<void> {
    for (const name of this.opts.scenarios) {
      this.checkSignal();
      const s = scenario(name, this.opts.kind);
      const t0 = Date.now();
      const { target, profile } = await this.opts.prepare('baseline');
      const r = await replay({
        store: this.opts.store, target, profile, schedule: baselineSchedule(s, this.opts.queries ?? 3),
        label: `hunt ${this.id} baseline ${name}`, gdbPath: this.opts.gdbPath, signal: this.opts.signal,
        blockedAfterMs: this.opts.blockedAfterMs, tracer: this.tracer ?? undefined,
        meta: { hunt: this.id, hunt_role: 'baseline', invocation: this.opts.invocation },
      });
      this.checkSignal();
      const baseline = this.baselineOf(name, s.description, r, Date.now() - t0);
      this.data.baselines.push(baseline);
      this.opts.store.updateHunt(this.id, { data: this.data });
      const what = baseline.status === 'ok'
        ? `${baseline.transitions.map((t) => `${t.old}->${t.new}`).join(', ')}; ${baseline.replies} replies`
        : `${baseline.status}: ${baseline.reason}`;
      this.say(`baseline ${name}: ${what} (session ${r.sessionId}, ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    }
  }

  /** Without one undisturbed migration there are no transitions and no shapes: an empty matrix would read as "no windows". */
  private checkSomeBaselineRan(): void {
    const list = this.data.baselines;
    if (list.some((b) => b.status === 'ok')) return;
    const why = list.map((b) => `${b.scenario}: ${b.status}${b.reason ? `, ${b.reason}` : ''}`).join('; ');
    throw new MigraceError('REPLAY', `no baseline migration ran${why ? ` (${why})` : ''}; there is nothing to hunt`);
  }

  private baselineOf(name: string, description: string, r: ReplayResult, ms: number): Baseline {
    const base = { scenario: name, description, session_id: r.sessionId, ms };
    if (r.state === 'aborted') {
      const skipped = r.errorCode === 'UNSUPPORTED';
      return { ...base, status: skipped ? 'skipped' : 'error', reason: r.error, transitions: [], replies: 0 };
    }
    const { store } = this.opts;
    const table = this.profile.status_table;
    const names = new Map(store.threads(r.sessionId).map((t) => [t.tid, t.name]));
    const transitions: LearnedTransition[] = [];
    for (const t of r.transitions) {
      const old = stateName(t.old, table);
      const nu = stateName(t.new, table);
      if (old === null || nu === null) continue;
      transitions.push({ old, new: nu, thread: { tid: t.tid, name: names.get(t.tid) ?? null }, after: t.after_step - BASELINE_DRIVE_OFFSET });
    }
    let replies = 0;
    for (const e of store.events(r.sessionId)) {
      if (e.kind !== 'reply') continue;
      this.replies.push(e.data.body);
      replies++;
    }
    return { ...base, status: 'ok', reason: null, transitions, replies };
  }

  /* 3. learning */

  private learn(): void {
    const d = this.data;
    d.oracle = buildOracle(this.replies);
    d.columns = learnColumns(d.baselines.filter((b) => b.status === 'ok'));
    const merged = this.tracer
      ? mergeReadPoints(this.statics, [...this.tracer.reads.values()], this.tracer.runs, this.tracer.breakpoints)
      : staticOnly(this.statics);
    d.rows = merged.points;
    d.cross_check = merged.crossCheck;
    if (this.tracer) d.trace = { runs: this.tracer.runs, reads: this.tracer.reads.size, exhausted: this.tracer.exhausted };
    this.opts.store.updateHunt(this.id, { data: d });
    this.say(`learned ${d.columns.length} transition(s) (${d.columns.map((c) => c.key).join(', ')}) and the shapes of ${Object.keys(d.oracle).length} status(es); ${d.rows.length} read point(s)`);
  }

  /* 4. cells */

  private async cells(): Promise<void> {
    const { rows, columns } = this.data;
    this.cellsTotal = rows.length * (columns.length + 1);
    for (const row of rows) {
      let control: Column | null = null;
      for (const col of columns) {
        const cls = await this.cell(row, col, false);
        if (control === null && (cls === 'broken' || cls === 'consistent')) control = col;
      }
      if (control) await this.cell(row, control, true);
      else this.skipControl(row);
    }
  }

  private specOf(row: HuntReadPoint, col: Column, control: boolean): CellSpec {
    return {
      point: row.probe, old: col.old, new: col.new, after: col.after, buildId: this.data.build_id,
      name: fileSafe(`hunt${this.id}-${row.name}-${control ? CONTROL : col.key}`),
    };
  }

  private async cell(row: HuntReadPoint, col: Column, control: boolean): Promise<CellClass> {
    this.checkSignal();
    const s = scenario(col.scenario as ScenarioName, this.opts.kind);
    const spec = this.specOf(row, col, control);
    const schedule = control ? controlSchedule(s, spec) : cellSchedule(s, spec);
    const colName = control ? CONTROL : col.key;
    const t0 = Date.now();
    const { cls, data, sessionId } = await this.runCell(schedule, `${row.name} x ${colName}`);
    const ms = Date.now() - t0;
    if (cls === 'broken') data.schedule_file = this.writeSchedule(schedule);
    data.ms = ms;
    this.opts.store.putHuntCell(this.id, { row: row.name, col: colName, class: cls, session_id: sessionId, data });
    this.cellsDone++;
    this.say(`[${this.cellsDone}/${this.cellsTotal}] ${row.name} x ${colName}${control ? ` (holding at ${col.key})` : ''}: ${cls}${data.note ? ` (${data.note})` : ''} in ${(ms / 1000).toFixed(1)} s${sessionId ? `, session ${sessionId}` : ''}`);
    return cls;
  }

  private skipControl(row: HuntReadPoint): void {
    this.cellsDone++;
    const data: CellData = {
      note: 'not run: no transition cell reached this read point', reason: null, status: null, fields: [], reply: null,
      schedule: null, schedule_file: null, ms: 0,
    };
    this.opts.store.putHuntCell(this.id, { row: row.name, col: CONTROL, class: 'unreachable', session_id: null, data });
    this.say(`[${this.cellsDone}/${this.cellsTotal}] ${row.name} x ${CONTROL}: unreachable (${data.note})`);
  }

  /** One replay under its own time limit; what it says about the cell. */
  private async runCell(schedule: Schedule, what: string): Promise<{ cls: CellClass; data: CellData; sessionId: number | null }> {
    const limit = new AbortController();
    const timer = setTimeout(() => limit.abort(`the cell took longer than ${this.opts.cellTimeoutMs / 1000} s`), this.opts.cellTimeoutMs);
    const signal = this.opts.signal ? AbortSignal.any([this.opts.signal, limit.signal]) : limit.signal;
    const data: CellData = { note: null, reason: null, status: null, fields: [], reply: null, schedule, schedule_file: null, ms: 0 };
    let r: ReplayResult;
    try {
      const { target, profile } = await this.opts.prepare('cell');
      r = await replay({
        store: this.opts.store, target, profile, schedule, label: `hunt ${this.id} ${what}`, gdbPath: this.opts.gdbPath, signal,
        blockedAfterMs: this.opts.blockedAfterMs, meta: { hunt: this.id, hunt_role: 'cell', invocation: this.opts.invocation },
      });
    } catch (e) {
      data.reason = data.note = messageOf(e);
      return { cls: 'error', data, sessionId: null };
    } finally {
      clearTimeout(timer);
    }
    this.checkSignal();
    data.reason = r.reason;
    if (r.state === 'aborted') {
      const timedOut = limit.signal.aborted || r.errorCode === 'REPLAY_TIMEOUT';
      data.note = timedOut ? (limit.signal.aborted ? String(limit.signal.reason) : 'a step timed out') : r.error;
      return { cls: timedOut ? 'timeout' : 'error', data, sessionId: r.sessionId };
    }
    if (r.outcome === 'infeasible') {
      data.note = r.lock ? `the query waits in ${r.lock.func} while the writer is held` : 'the writer is the query thread';
      return { cls: 'infeasible', data, sessionId: r.sessionId };
    }
    if (r.outcome === 'unreachable') {
      data.note = 'the read point was not hit with the old state';
      return { cls: 'unreachable', data, sessionId: r.sessionId };
    }
    const j = judgeReplyShape(this.data.oracle, r.reply);
    Object.assign(data, { note: j.note, status: j.status, fields: j.fields, reply: r.reply });
    return { cls: j.class, data, sessionId: r.sessionId };
  }

  private writeSchedule(schedule: Schedule): string | null {
    const dir = this.opts.schedulesDir(this.id);
    if (!dir) return null;
    const file = join(dir, `${schedule.name}.json`);
    try {
      mkdirSync(dir, { recursive: true });
      writeFileSync(file, `${JSON.stringify(schedule, null, 2)}\n`);
      return file;
    } catch (e) {
      this.say(`cannot write ${file}: ${messageOf(e)}`);
      return null;
    }
  }
}

export async function hunt(opts: HuntOptions): Promise<HuntResult> {
  if (opts.scenarios.length === 0) throw new MigraceError('USAGE', 'a hunt needs at least one scenario');
  return new HuntRun(opts).run();
}
