import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { processIsAlive } from '../../trace/proc.js';
import { TraceStore } from '../../trace/store.js';
import { uprobeUnavailable } from '../../recorder/uprobe/tracefs.js';
import { expectNoSurvivors } from '../helpers/processes.js';
import { bookwormQemu } from '../helpers/qemu-binaries.js';
import { CLI, CliRun, EventCounter, huntFacts, leftovers, sessionFacts, type Victim } from './harness.js';
import { sleep } from '../../trace/async.js';

/**
 * The kill matrix (#14), on real gdb, minimig and Debian's QEMU 7.2: each
 * process of a recording, a replay and a hunt killed at points chosen by
 * how many events the database had committed (read from outside while
 * migrace writes; a hunt's points count the events of all its runs). After
 * each: one closing line and no stack; the faulted session aborted (or
 * complete when every event it has was stamped before the fault, or
 * within 50 ms of it: the fault came at the end) with at least every event committed at the
 * fault, and (for a recording) exactly the count its line says; integrity
 * ok; no process, temp file, mount or uprobe group left. A hunt marks the
 * faulted cell as an error and goes on (the test then ends it with Ctrl-C,
 * which keeps the cells done so far); a faulted baseline, the only one of
 * `--scenarios precopy`, ends it at once ("no baseline migration ran"). After a SIGKILL of
 * migrace the next command cleans up after it and says so, and the next
 * writer closes its session as aborted.
 *
 * The suite runs a few points of each fault (quick); .ci/run runs the
 * whole matrix, >= 20 points per fault over the three phases, with
 * MIGRACE_KILL_MATRIX=full and writes its tables to
 * test-results/kill-matrix-{minimig,qemu}.txt. The faults of minimig and
 * of QEMU are two test files (test/integration/kill-matrix-*.test.ts), so
 * vitest runs them side by side: their binaries differ, so their probes
 * never wait for each other.
 */

const execFileP = promisify(execFile);
const FULL = process.env.MIGRACE_KILL_MATRIX === 'full';
const qemu = bookwormQemu();
const noUprobes = uprobeUnavailable();

type On = 'minimig' | 'qemu';
interface Fault { victim: Victim; signal: NodeJS.Signals; on: On }

const FAULTS: Fault[] = [
  { victim: 'gdb', signal: 'SIGKILL', on: 'minimig' },
  { victim: 'minimig', signal: 'SIGKILL', on: 'minimig' },
  { victim: 'source', signal: 'SIGKILL', on: 'qemu' },
  { victim: 'destination', signal: 'SIGKILL', on: 'qemu' },
  { victim: 'migrace', signal: 'SIGINT', on: 'minimig' },
  { victim: 'migrace', signal: 'SIGTERM', on: 'minimig' },
  { victim: 'migrace', signal: 'SIGKILL', on: 'minimig' },
];

type PhaseName = 'record' | 'replay' | 'hunt';

interface Phase {
  name: PhaseName;
  on: On;
  /**
   * Committed events to fault at: of the newest session (record, replay),
   * of all sessions (hunt). A replay of lp1994002 writes 17, the last 5
   * (its final query) often in one batch as it ends, so its points stop at 11; a minimig
   * recording of 5 s a few hundred; QEMU's 33-63; a minimig precopy
   * hunt about 260, 86 of them its baseline; QEMU's about 400, 86 of them its baseline.
   */
  points: { quick: number[]; full: number[] };
  /** The command; `i` is the point's index (a recording alternates gdb and uprobes in the full run, except when gdb is the victim). */
  args: (db: string, i: number, fault: Fault) => string[];
}

const qemuPath = 'skip' in qemu ? '' : qemu.path;
// Uprobes and gdb on one binary wait for each other (the probe lock): the
// suite's other files debug minimig and QEMU 7.2 all the time, so only the
// full run, alone on the machine, records through uprobes too.
// A uprobe recording's gdb lives only while the probes are resolved, before any event: gdb as the victim always records through gdb.
const backend = (i: number, fault: Fault): string => (FULL && !noUprobes && i % 2 === 1 && fault.victim !== 'gdb' ? 'uprobe' : 'gdb');

const PHASES: Phase[] = [
  {
    name: 'record', on: 'minimig', points: { quick: [1, 30], full: [1, 4, 10, 20, 35, 60, 100, 150] },
    args: (db, i, f) => ['record', '--db', db, '--backend', backend(i, f), '--transfer-ms', '5000', '--poll-ms', '20'],
  },
  {
    name: 'replay', on: 'minimig', points: { quick: [1, 11], full: [1, 3, 5, 7, 9, 11] },
    args: (db) => ['replay', '--scenario', 'lp1994002', '--db', db],
  },
  {
    name: 'hunt', on: 'minimig', points: { quick: [100], full: [1, 40, 90, 105, 130, 160] },
    args: (db) => ['hunt', '--scenarios', 'precopy', '--db', db, '--schedules', join(db, '..', 'schedules')],
  },
  {
    // A 128 MiB guest migrates in under a second on a quiet machine: 13 events, and the points past them
    // never land. 1 GiB at 1 MB/s takes a few seconds (a fault ends the run early anyway).
    name: 'record', on: 'qemu', points: { quick: [10], full: [1, 4, 8, 12, 16, 20, 24, 28] },
    args: (db, i, f) => ['record', '--target', 'qemu', '--qemu', qemuPath, '--db', db, '--backend', backend(i, f), '--memory', '1024', '--max-bandwidth', '1000000'],
  },
  {
    // A quiet machine commits a QEMU replay's last 5-9 events in one batch as it ends (8 -> 17): the points
    // past 8 often never land.
    name: 'replay', on: 'qemu', points: { quick: [4], full: [1, 2, 3, 4, 5, 6, 7, 8] },
    args: (db) => ['replay', '--scenario', 'lp1994002', '--target', 'qemu', '--qemu', qemuPath, '--db', db],
  },
  {
    name: 'hunt', on: 'qemu', points: { quick: [], full: [1, 30, 60, 90, 110, 140] },
    args: (db) => ['hunt', '--target', 'qemu', '--qemu', qemuPath, '--scenarios', 'precopy', '--db', db, '--schedules', join(db, '..', 'schedules')],
  },
];

/** How close to a run's last event a fault may land and find the session complete. */
const AT_THE_END_MS = 50;

/** One row of the matrix, as the note's table gives it. */
interface Row { phase: string; fault: string; landed: boolean; at: number; acknowledged: number; kept: number; state: string; exit: string; leftovers: number }
const rows: Row[] = [];

/** Where a fault landed: the newest session then, its committed events, and when. */
interface Landed { session: number; acknowledged: number; at: number }

/** Wait for the point, then fault; null when the run ended first (or the victim was gone). */
async function faultAt(run: CliRun, counter: EventCounter, phase: Phase, fault: Fault, at: number): Promise<Landed | null> {
  while (!run.exit) {
    const now = counter.now();
    if (now && (phase.name === 'hunt' ? now.total : now.events) >= at) {
      const v = run.victim(fault.victim);
      if (v) {
        const c = counter.now() ?? now;
        const landed = { session: c.session, acknowledged: c.events, at: Date.now() };
        return run.signal(v, fault.signal) ? landed : null;
      }
    }
    await sleep(3);
  }
  return null;
}

/** A hunt goes on past a failed cell: once it has moved on (or ended), stop it as a user would. */
async function interruptHuntAfter(run: CliRun, counter: EventCounter, session: number): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (!run.exit && Date.now() < deadline) {
    const now = counter.now();
    const me = run.victim('migrace');
    if (now && now.session > session && me) {
      run.signal(me, 'SIGINT');
      return;
    }
    await sleep(10);
  }
}

/** What a dead migrace's ledger lists that still exists (a process, a folder), or null. */
function leftBehind(tmp: string, pid: number): string | null {
  const file = join(tmp, `migrace-ledger-${pid}.json`);
  if (!existsSync(file)) return null;
  const d = JSON.parse(readFileSync(file, 'utf8')) as { children: Array<{ pid: number; start: string | null }>; attached: Array<{ pid: number; start: string | null }>; dirs: string[] };
  const alive = [...d.children, ...(d.attached ?? [])].filter((c) => processIsAlive(c.pid, c.start ?? undefined)).map((c) => `process ${c.pid}`);
  const dirs = d.dirs.filter((x) => existsSync(x));
  return alive.length + dirs.length > 0 ? [...alive, ...dirs].join(', ') : null;
}

async function one(phase: Phase, fault: Fault, at: number, index: number): Promise<Row> {
  const base = mkdtempSync(join(tmpdir(), 'migrace-km-'));
  const tmp = join(base, 'tmp');
  mkdirSync(tmp);
  const db = join(base, 't.db');
  const counter = new EventCounter(db);
  try {
    const args = phase.args(db, index, fault);
    const run = new CliRun(args, tmp, 'skip' in qemu ? {} : qemu.env);
    const landed = await faultAt(run, counter, phase, fault, at);
    const byMigrace = fault.victim === 'migrace';
    if (landed && phase.name === 'hunt' && !byMigrace) await interruptHuntAfter(run, counter, landed.session);
    const exit = await run.finished(120_000);
    counter.close();
    const all = run.stderr + run.stdout;
    expect(all).not.toMatch(/^\s+at |internal error|Node\.js v/m);
    const killedMigrace = landed !== null && byMigrace && fault.signal === 'SIGKILL';
    if (killedMigrace) {
      // The next command cleans up after the dead one, says so when the dead one left something (a hunt
      // killed between two cells has no target and no folder then), and closes its session.
      const left = leftBehind(tmp, run.pid);
      const { stderr } = await execFileP(process.execPath, [CLI, 'sessions', '--db', db], { env: { ...process.env, TMPDIR: tmp } });
      if (left) expect(stderr, left).toContain(`cleaned up after migrace process ${run.pid}`);
      else expect(stderr).not.toContain('cleaned up after');
      expect(existsSync(join(tmp, `migrace-ledger-${run.pid}.json`)), 'the dead run\'s ledger after the clean-up').toBe(false);
      expect(readdirSync(tmp).filter((n) => /^migrace-(?!ledger-)/.test(n)), 'its folders after the clean-up').toEqual([]);
      // sessions only reads; the next writer closes the dead writer's session.
      TraceStore.open(db).close();
    }
    const session = landed?.session ?? counter.now()?.session ?? 1;
    const facts = sessionFacts(db, session);
    expect(facts.integrity).toBe('ok');
    expect(facts.events).toBeGreaterThanOrEqual(landed?.acknowledged ?? 0);
    // A complete session whose events were all stamped before the fault, or within AT_THE_END of
    // it: the run had done its work when the fault came. (An event is stamped when migrace reads it: a
    // reply QEMU sent just before it was killed is read just after.)
    const afterTheEnd = landed !== null && facts.state === 'complete' && facts.lastEventAt <= landed.at + AT_THE_END_MS;
    const context = `${all}\nfault at ${landed?.at} (${landed ? new Date(landed.at).toISOString() : '-'}), session ${session}: ${JSON.stringify(facts)}`;
    if (landed && !afterTheEnd) expect(facts.state, context).toBe('aborted');
    if (!landed) expect(facts.state, context).toBe('complete');
    if (phase.name === 'hunt') checkHunt(db, fault, landed, afterTheEnd, exit.code, all, context);
    else if (landed && !afterTheEnd) {
      expect(exit.code ?? exit.signal, context).not.toBe(0);
      if (!killedMigrace) {
        // A recording's line counts the events kept; a replay's names the cause.
        expect(all, context).toMatch(/^migrace: session \d+: aborted after \d+ events: .+$|^session \d+: replay aborted: .+$/m);
        const said = /aborted after (\d+) events/.exec(all);
        if (phase.name === 'record') {
          expect(said, context).not.toBeNull();
          expect(Number(said![1])).toBe(facts.events);
        }
      }
    } else if (!landed) {
      expect(exit.code, context).toBe(0);
    }
    const left = await leftovers(run);
    const count = left.processes.length + left.files.length + left.mounts.length + left.uprobes.length;
    expect(left).toEqual({ processes: [], files: [], mounts: [], uprobes: [] });
    return {
      phase: `${phase.name} ${phase.on === 'qemu' ? 'QEMU 7.2' : 'minimig'}${phase.name === 'record' ? ` (${args[args.indexOf('--backend') + 1]})` : ''}`,
      fault: `${fault.signal} ${fault.victim}`, landed: landed !== null, at, acknowledged: landed?.acknowledged ?? 0, kept: facts.events,
      state: landed ? (afterTheEnd ? 'complete (fault after the end)' : facts.state ?? '?') : 'complete (ended first)',
      exit: String(exit.code ?? exit.signal), leftovers: count,
    };
  } finally {
    counter.close();
    rmSync(base, { recursive: true, force: true });
  }
}

/**
 * A hunt after a fault: a dead gdb, target or QEMU fails its cell (or
 * baseline), which says so, and the hunt went on until the test's Ctrl-C;
 * Ctrl-C and SIGTERM of migrace end the hunt as interrupted, exit 130,
 * with the cells done so far; after a SIGKILL the hunt reads as aborted.
 */
function checkHunt(db: string, fault: Fault, landed: Landed | null, afterTheEnd: boolean, code: number | null, all: string, context: string): void {
  const h = huntFacts(db);
  expect(h, context).not.toBeNull();
  if (!landed) {
    expect(h!.state, context).toBe('complete');
    expect(code, context).toBe(0);
    return;
  }
  if (fault.victim !== 'migrace') {
    if (!afterTheEnd) {
      const cell = h!.cells.get(landed.session);
      const baseline = h!.baselines.get(landed.session);
      // The failed run is a cell marked error with the cause, or a baseline marked error.
      if (cell) {
        expect(cell.cls, context).toBe('error');
        expect(cell.note ?? '', context).not.toBe('');
      } else {
        expect(baseline, context).toBe('error');
      }
    }
    // Ended by the test's Ctrl-C, by itself when the fault hit its last run, or at once when it failed the only baseline.
    if (h!.state === 'aborted' && h!.baselines.get(landed.session) === 'error') {
      expect(code, context).toBe(1);
      expect(h!.error, context).toMatch(/^no baseline migration ran \(precopy: error, .+\); there is nothing to hunt$/);
      expect(all, context).toMatch(/^migrace: no baseline migration ran/m);
    } else if (h!.state === 'aborted') {
      expect(code, context).toBe(130);
      expect(h!.error, context).toMatch(/interrupted/);
    } else {
      expect(h!.state, context).toBe('complete');
    }
    return;
  }
  if (fault.signal === 'SIGKILL') {
    expect(h!.state, context).toBe('aborted');
    expect(h!.error, context).toMatch(/ended without closing the hunt/);
    return;
  }
  expect(code, context).toBe(130);
  expect(h!.state, context).toBe('aborted');
  expect(all, context).toMatch(/^migrace: hunt \d+ interrupted: \d+ cells stored$/m);
}

/** The matrix of one kind of target: its faults over its phases, and its table at the end. */
export function killMatrix(on: On): void {
  afterEach(() => expectNoSurvivors());
  describe(`kill matrix on ${on}: every process of a run, at points by committed events`, () => {
    for (const phase of PHASES.filter((p) => p.on === on)) {
      for (const fault of FAULTS.filter((f) => f.on === on)) {
        const points = FULL ? phase.points.full : phase.points.quick;
        if (points.length === 0) continue;
        const skip = on === 'qemu' && 'skip' in qemu ? qemu.skip : null;
        it.skipIf(skip !== null)(`${phase.name}: ${fault.signal} ${fault.victim} at ${points.join(', ')} committed events`, async () => {
          for (const [i, at] of points.entries()) rows.push(await one(phase, fault, at, i));
        }, 900_000);
      }
    }

    // Last in the file: the runs above have filled `rows`. A point whose run ended before it, or whose victim never
    // appeared, faulted nothing and does not count.
    it.skipIf(on === 'qemu' && 'skip' in qemu)('every fault landed at >= 20 points over the three phases (full run; at least one in the suite)', () => {
      for (const fault of FAULTS.filter((f) => f.on === on)) {
        const name = `${fault.signal} ${fault.victim}`;
        const landed = rows.filter((r) => r.fault === name && r.landed);
        expect(landed.length, `${name}: ${landed.length} points landed`).toBeGreaterThanOrEqual(FULL ? 20 : 1);
        if (FULL) expect(new Set(landed.map((r) => r.phase.split(' ')[0])).size, `${name}: phases`).toBe(3);
      }
    });
  });

  afterAll(() => {
    const table = [
      'phase | fault | point (events) | acknowledged | kept | state | exit | leftovers',
      ...rows.map((r) => `${r.phase} | ${r.fault} | ${r.at} | ${r.acknowledged} | ${r.kept} | ${r.state} | ${r.exit} | ${r.leftovers}`),
    ].join('\n');
    process.stderr.write(`kill matrix on ${on} (${FULL ? 'full' : 'quick'}):\n${table}\n`);
    if (FULL) {
      mkdirSync('test-results', { recursive: true });
      writeFileSync(join('test-results', `kill-matrix-${on}.txt`), `${table}\n`);
    }
  });
}
