import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { TraceStore } from '../../trace/store.js';
import { expectNoSurvivors } from '../helpers/processes.js';
import { CLI, CliRun, EventCounter, leftovers, sessionFacts, type Victim } from '../kill/harness.js';

/**
 * The kill matrix (#14), on real gdb and minimig: each process of a
 * recording and of a replay killed at points chosen by how many events the
 * database had committed (read from outside while migrace writes). After
 * each: one closing line and no stack; the session aborted (or complete
 * when the run ended first) with at least every event committed at the
 * fault, and (for a recording) exactly the count its line says;
 * integrity ok; no process, temp file, mount or uprobe group left. After a
 * SIGKILL of migrace the next command cleans up after it and says so, and
 * the next writer closes its session as aborted.
 */

const execFileP = promisify(execFile);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

afterEach(() => expectNoSurvivors());

interface Fault { victim: Victim; signal: NodeJS.Signals }

const FAULTS: Fault[] = [
  { victim: 'gdb', signal: 'SIGKILL' },
  { victim: 'minimig', signal: 'SIGKILL' },
  { victim: 'migrace', signal: 'SIGINT' },
  { victim: 'migrace', signal: 'SIGTERM' },
  { victim: 'migrace', signal: 'SIGKILL' },
];

/** Each phase with the committed event counts to fault at (a replay of lp1994002 writes 17). */
const PHASES: Array<{ name: string; points: number[]; args: (db: string) => string[] }> = [
  { name: 'record', points: [1, 15, 45], args: (db) => ['record', '--db', db, '--backend', 'gdb', '--transfer-ms', '5000', '--poll-ms', '20'] },
  { name: 'replay', points: [1, 6, 12], args: (db) => ['replay', '--scenario', 'lp1994002', '--db', db] },
];

/** One row of the matrix, as the note's table gives it. */
interface Row { phase: string; fault: string; at: number; acknowledged: number; kept: number; state: string; exit: string; leftovers: number }
const rows: Row[] = [];

async function one(phase: (typeof PHASES)[number], fault: Fault, at: number): Promise<Row> {
  const base = mkdtempSync(join(tmpdir(), 'migrace-km-'));
  const tmp = join(base, 'tmp');
  mkdirSync(tmp);
  const db = join(base, 't.db');
  const counter = new EventCounter(db);
  try {
    const run = new CliRun(phase.args(db), tmp);
    let acknowledged = 0;
    let faulted = false;
    // Wait for the point; a run that ends first is a fault after the end.
    while (!run.exit) {
      const now = counter.now();
      if (now && now.events >= at) {
        const v = run.victim(fault.victim);
        if (v) {
          acknowledged = counter.now()?.events ?? now.events;
          faulted = run.signal(v, fault.signal);
          break;
        }
      }
      await sleep(3);
    }
    const exit = await run.finished(60_000);
    counter.close();
    const all = run.stderr + run.stdout;
    expect(all).not.toMatch(/^\s+at |internal error|Node\.js v/m);
    const killedMigrace = faulted && fault.victim === 'migrace' && fault.signal === 'SIGKILL';
    if (killedMigrace) {
      // The next command cleans up after the dead one and closes its session.
      const { stderr } = await execFileP(process.execPath, [CLI, 'sessions', '--db', db], { env: { ...process.env, TMPDIR: tmp } });
      expect(stderr).toContain(`cleaned up after migrace process ${run.pid}`);
      // sessions only reads; the next writer closes the dead writer's session.
      TraceStore.open(db).close();
    }
    const session = counter.now()?.session ?? 1;
    const facts = sessionFacts(db, session);
    expect(facts.integrity).toBe('ok');
    expect(facts.events).toBeGreaterThanOrEqual(acknowledged);
    // A fault that lands after the run wrote its last event (it was closing) may find it complete.
    const afterTheEnd = faulted && facts.state === 'complete' && exit.code === 0 && facts.events === acknowledged;
    if (faulted && !afterTheEnd) {
      expect(exit.code ?? exit.signal, all).not.toBe(0);
      expect(facts.state, all).toBe('aborted');
    } else if (!faulted) {
      expect(facts.state).toBe('complete');
    }
    if (!killedMigrace) {
      // A recording's line counts the events kept; a replay's names the cause.
      const said = /aborted after (\d+) events/.exec(all);
      if (faulted && !afterTheEnd && phase.name === 'record') {
        expect(said, all).not.toBeNull();
        expect(Number(said![1])).toBe(facts.events);
      }
      if (faulted && !afterTheEnd) expect(all).toMatch(/^migrace: session \d+: aborted after \d+ events: .+$|^session \d+: replay aborted: .+$/m);
    }
    const left = await leftovers(run);
    const count = left.processes.length + left.files.length + left.mounts.length + left.uprobes.length;
    expect(left).toEqual({ processes: [], files: [], mounts: [], uprobes: [] });
    return {
      phase: phase.name, fault: `${fault.signal} ${fault.victim}`, at, acknowledged, kept: facts.events, state: facts.state ?? '?',
      exit: String(exit.code ?? exit.signal), leftovers: count,
    };
  } finally {
    counter.close();
    rmSync(base, { recursive: true, force: true });
  }
}

describe('kill matrix: every process of a run, at points by committed events', () => {
  for (const phase of PHASES) {
    for (const fault of FAULTS) {
      // The replay's minimig is held at its breakpoints: killing it is the same fault as in a recording.
      if (phase.name === 'replay' && fault.victim === 'minimig') continue;
      it(`${phase.name}: ${fault.signal} ${fault.victim} at ${phase.points.join(', ')} committed events`, async () => {
        for (const at of phase.points) rows.push(await one(phase, fault, at));
      }, 300_000);
    }
  }

  it('prints the table', () => {
    process.stderr.write(`kill matrix (phase, fault, point, acknowledged, kept, state, exit, leftovers):\n${rows.map((r) => `  ${r.phase} | ${r.fault} | ${r.at} | ${r.acknowledged} | ${r.kept} | ${r.state} | ${r.exit} | ${r.leftovers}`).join('\n')}\n`);
    expect(rows.every((r) => r.kept >= r.acknowledged && r.leftovers === 0)).toBe(true);
  });
});
