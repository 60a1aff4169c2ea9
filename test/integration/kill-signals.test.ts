import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { QmpClient } from '../../recorder/qmp.js';
import { track, waitGone } from '../../recorder/reaper.js';
import { uprobeUnavailable } from '../../recorder/uprobe/tracefs.js';
import { expectNoSurvivors, withoutSweeps } from '../helpers/processes.js';
import { bookwormQemu } from '../helpers/qemu-binaries.js';
import { CliRun, leftovers, sessionFacts, type Victim } from '../kill/harness.js';
import { sleep } from '../../trace/async.js';

/**
 * What others do to the processes of a run, and what migrace says then
 * (#14 defects 5, 6, 7, 18 and 21): a signal sent to the target is the
 * target's (SIGTERM ends it as it would without gdb; SIGSTOP ends the run
 * at once instead of freezing it for its timeout), a target killed as it
 * starts is named with how it ended, no timer holds the exit after the
 * error is printed, an error is one line, and a destination QEMU that dies
 * during the migration makes the session say so.
 */

const qemu = bookwormQemu();
const noUprobes = uprobeUnavailable();

afterEach(() => expectNoSurvivors());

/** The test's folder: the database lives in it, migrace's TMPDIR is `tmp` below it, which a clean run leaves empty. */
let base = '';
let tmp = '';
function freshTmp(): string {
  if (base) rmSync(base, { recursive: true, force: true });
  base = mkdtempSync(join(tmpdir(), 'migrace-ks-'));
  tmp = join(base, 'tmp');
  mkdirSync(tmp);
  return base;
}
afterEach(() => {
  if (base) rmSync(base, { recursive: true, force: true });
  base = '';
});

/** The run's one closing line (stderr for record, stdout for replay) and the session it names. */
function closing(run: CliRun, stream: 'stderr' | 'stdout' = 'stderr'): { line: string; session: number } {
  const all = run.stderr + run.stdout;
  expect(all).not.toMatch(/^\s+at /m);
  expect(all).not.toMatch(/internal error|Node\.js v/);
  const line = run.lastLine(stream);
  const m = /session (\d+)/.exec(line);
  expect(m, all).not.toBeNull();
  return { line, session: Number(m![1]) };
}

async function nothingLeft(run: CliRun): Promise<void> {
  expect(await leftovers(run)).toEqual({ processes: [], files: [], mounts: [], uprobes: [] });
}

/** Signal a victim the moment it exists (after `afterMs`), returning when it was signalled. */
async function signalWhenUp(run: CliRun, kind: Victim, sig: NodeJS.Signals, afterMs: number, timeoutMs = 60_000): Promise<number> {
  await run.until(() => run.victim(kind) !== null, timeoutMs, `a ${kind} process`, 2);
  if (afterMs > 0) await sleep(afterMs);
  const v = run.victim(kind);
  expect(v, `${kind} still there after ${afterMs} ms`).not.toBeNull();
  run.signal(v!, sig);
  return Date.now();
}

const backends = [
  { backend: 'gdb', skip: false },
  { backend: 'gdb-fast', skip: false },
  { backend: 'uprobe', skip: noUprobes !== null },
];

describe('a signal sent to the target mid-recording is the target\'s, not swallowed (#5)', () => {
  for (const b of backends) {
    it.skipIf(b.skip)(`${b.backend}: kill -TERM minimig ends it as without gdb, and the run says so at once`, async () => {
      const db = join(freshTmp(), 't.db');
      const run = new CliRun(['record', '--db', db, '--backend', b.backend, '--transfer-ms', '15000', '--timeout', '40'], tmp);
      await run.waitOutput('migrating to');
      await sleep(500);
      const at = Date.now();
      run.signal(run.victim('minimig')!, 'SIGTERM');
      const exit = await run.finished(30_000);
      expect(exit.at - at).toBeLessThan(5000);
      expect(exit.code).toBe(1);
      const { line, session } = closing(run);
      expect(line).toMatch(/^migrace: session \d+: aborted after \d+ events: minimig exited \(code 0\) before the scenario finished; it said: .*terminating on signal 15$/);
      const facts = sessionFacts(db, session);
      expect(facts).toMatchObject({ integrity: 'ok', state: 'aborted' });
      expect(line).toContain(`aborted after ${facts.events} events`);
      await nothingLeft(run);
    }, 60_000);

    it.skipIf(b.skip)(`${b.backend}: kill -STOP minimig ends the run at once instead of freezing it for --timeout`, async () => {
      const db = join(freshTmp(), 't.db');
      const run = new CliRun(['record', '--db', db, '--backend', b.backend, '--transfer-ms', '15000', '--timeout', '40'], tmp);
      await run.waitOutput('migrating to');
      await sleep(500);
      const at = Date.now();
      run.signal(run.victim('minimig')!, 'SIGSTOP');
      const exit = await run.finished(50_000);
      expect(exit.at - at).toBeLessThan(6000);
      expect(exit.code).toBe(1);
      const { line, session } = closing(run);
      expect(line).toMatch(/aborted after \d+ events: minimig .*stopped .*SIGSTOP|aborted after \d+ events: minimig .*stopped from outside migrace \(state T/);
      expect(sessionFacts(db, session)).toMatchObject({ integrity: 'ok', state: 'aborted' });
      await nothingLeft(run);
    }, 60_000);
  }

  it.skipIf('skip' in qemu)('gdb: kill -TERM the source QEMU: it terminates as QEMU does, and the run says so', async () => {
    if ('skip' in qemu) return;
    const db = join(freshTmp(), 't.db');
    const run = new CliRun(['record', '--db', db, '--backend', 'gdb', '--target', 'qemu', '--qemu', qemu.path, '--memory', '1024', '--max-bandwidth', '200000', '--timeout', '60'], tmp);
    await run.waitOutput('migrating to', 90_000);
    await sleep(700);
    const at = Date.now();
    run.signal(run.victim('source')!, 'SIGTERM');
    const exit = await run.finished(30_000);
    expect(exit.at - at).toBeLessThan(6000);
    expect(exit.code).toBe(1);
    const { line } = closing(run);
    expect(line).toMatch(/aborted after \d+ events: qemu exited \(code 0\) before the scenario finished; it said: .*terminating on signal 15/);
    await nothingLeft(run);
  }, 120_000);
});

describe('a target killed as it starts is named with how it ended, at once (#7)', () => {
  for (const b of backends) {
    it.skipIf(b.skip)(`${b.backend}: SIGKILL 0-100 ms after minimig appears`, async () => {
      for (const afterMs of [0, 25, 50, 100]) {
        const db = join(freshTmp(), 't.db');
        const run = new CliRun(['record', '--db', db, '--backend', b.backend], tmp);
        const at = await signalWhenUp(run, 'minimig', 'SIGKILL', afterMs);
        const exit = await run.finished(30_000);
        expect(exit.at - at, run.stderr).toBeLessThan(3000);
        expect(exit.code).toBe(1);
        const { line } = closing(run);
        // gdb reaps a program killed while it starts it and never says how: then "exited while gdb started it"; when
        // it reports the thread group's end without an exit code and no signal follows, "killed by a signal"; when it
        // reaped it silently, the run's own watch, which cannot say how. Never the QMP client's second-hand view.
        expect(line).toMatch(/aborted after \d+ events: minimig exited( \((signal SIGKILL|killed by a signal)\) before the scenario finished| while gdb started it \(gdb: [^()]+\)| before the scenario finished)$/);
        await nothingLeft(run);
      }
    }, 150_000);
  }
});

describe('a replay\'s target killed while threads are held is named with how it ended', () => {
  it('SIGKILL minimig 0-50 ms after the writer is held: the run says minimig exited, never the QMP client\'s view', async () => {
    for (const afterMs of [0, 10, 25, 50]) {
      const db = join(freshTmp(), 't.db');
      const run = new CliRun(['replay', '--scenario', 'lp1994002', '--db', db], tmp);
      await run.waitOutput(') held (thread');
      if (afterMs > 0) await sleep(afterMs);
      run.signal(run.victim('minimig')!, 'SIGKILL');
      const exit = await run.finished(30_000);
      expect(exit.code, run.stdout + run.stderr).toBe(1);
      const { line } = closing(run, 'stdout');
      // The held reader's query is pending when minimig dies, so the QMP client sees its socket close; what is said is
      // gdb's report of the death (RunFailure lets it replace a symptom that a step put into the run first).
      expect(line, `${afterMs} ms`).toMatch(/replay aborted: minimig exited( \((signal SIGKILL|killed by a signal)\))? before the scenario finished$/);
      await nothingLeft(run);
    }
  }, 150_000);
});

describe('no timer keeps migrace alive after it printed its error (#6)', () => {
  it('gdb SIGKILLed 0-140 ms after the target starts: the exit follows the error line', async () => {
    for (const afterMs of [0, 20, 40, 60, 80, 100, 120, 140]) {
      const db = join(freshTmp(), 't.db');
      const run = new CliRun(['record', '--db', db, '--backend', 'gdb'], tmp);
      await run.until(() => run.victim('minimig') !== null, 60_000, 'minimig', 2);
      await sleep(afterMs);
      const gdb = run.victim('gdb');
      if (gdb) run.signal(gdb, 'SIGKILL');
      let printed = 0;
      void run.until(() => /aborted after/.test(run.stderr), 60_000, 'the error').then(() => { printed = Date.now(); }, () => undefined);
      const exit = await run.finished(40_000);
      const { line } = closing(run);
      expect(line).toMatch(/aborted after \d+ events: /);
      if (printed === 0) printed = exit.at;
      expect(exit.at - printed, `${afterMs} ms: ${line}`).toBeLessThan(2000);
      await nothingLeft(run);
    }
  }, 300_000);

  it('Ctrl-C right after the replay released its reader: the exit follows the error line', async () => {
    for (const afterMs of [0, 20, 50]) {
      const db = join(freshTmp(), 't.db');
      const run = new CliRun(['replay', '--scenario', 'lp1994002', '--db', db], tmp);
      await run.waitOutput('reader released');
      await sleep(afterMs);
      run.signal(run.victim('migrace')!, 'SIGINT');
      let printed = 0;
      void run.until(() => /replay aborted|session \d+: /.test(run.stdout), 60_000, 'the result').then(() => { printed = Date.now(); }, () => undefined);
      const exit = await run.finished(40_000);
      if (printed === 0) printed = exit.at;
      expect(exit.at - printed, run.stdout).toBeLessThan(2000);
      await nothingLeft(run);
    }
  }, 200_000);
});

/** A QEMU of the test's own, paused (-S), with a monitor for migrace. */
async function startGuest(dir: string): Promise<{ pid: number; sock: string; child: ChildProcess; stop: () => Promise<void> }> {
  if ('skip' in qemu) throw new Error(qemu.skip);
  const sock = join(dir, 'guest.sock');
  const child = spawn(qemu.path, ['-nodefaults', '-display', 'none', '-S', '-m', '64', '-name', 'guest', '-qmp', `unix:${sock},server=on,wait=off`], { stdio: 'ignore' });
  const untrack = track(child.pid!, 'test guest');
  const probe = await QmpClient.connect(sock, { timeoutMs: 15_000 });
  await probe.close();
  return {
    pid: child.pid!, sock, child,
    stop: async () => {
      child.kill('SIGKILL');
      await waitGone(child.pid!, 5000);
      untrack();
    },
  };
}

describe('errors are one line (#18)', () => {
  it('--gdb /etc/passwd: a usage error before anything starts', async () => {
    const db = join(freshTmp(), 't.db');
    const run = new CliRun(['record', '--db', db, '--gdb', '/etc/passwd'], tmp);
    const exit = await run.finished(30_000);
    expect(exit.code).toBe(2);
    // Another test's SIGKILLed uprobe recording may be swept by this run first (machine-wide groups).
    expect(withoutSweeps(run.stderr)).toBe('migrace: --gdb /etc/passwd is not an executable program (install the Debian package gdb, or give the path of a gdb)\n');
    expect(run.seen.size).toBe(0);
    await nothingLeft(run);
  });

  it.skipIf('skip' in qemu)('record --attach --backend gdb to a QEMU another debugger traces: one line naming the tracer', async () => {
    const dir = freshTmp();
    const guest = await startGuest(dir);
    // Another tracer: gdb in batch mode, attached and waiting in a shell command.
    const other = spawn('gdb', ['-nx', '-q', '-batch', '-p', String(guest.pid), '-ex', 'shell sleep 60'], { stdio: 'ignore' });
    const untrackOther = track(other.pid!, 'other tracer');
    try {
      const { tracerPid } = await import('../../trace/proc.js');
      const deadline = Date.now() + 20_000;
      while ((tracerPid(guest.pid) ?? 0) === 0 && Date.now() < deadline) await sleep(50);
      expect(tracerPid(guest.pid)).toBeGreaterThan(0);
      const run = new CliRun(['record', '--attach', String(guest.pid), '--qmp', guest.sock, '--db', join(dir, 't.db'), '--backend', 'gdb'], tmp);
      const exit = await run.finished(60_000);
      expect(exit.code).toBe(1);
      const lines = run.stderr.trim().split('\n');
      expect(lines.filter((l) => /detach failed/.test(l))).toEqual([]);
      expect(lines.at(-1)).toMatch(/^migrace: session \d+: aborted after 0 events: process \d+ is already traced by process \d+ \(gdb\); a process has one tracer: [^\n]+$/);
    } finally {
      other.kill('SIGKILL');
      await waitGone(other.pid!, 5000);
      untrackOther();
      await guest.stop();
    }
  }, 120_000);

  for (const b of backends) {
    it.skipIf('skip' in qemu || b.skip)(`${b.backend}: the attached QEMU killed mid-recording: one line saying so`, async () => {
      const dir = freshTmp();
      const guest = await startGuest(dir);
      try {
        const run = new CliRun(['record', '--attach', String(guest.pid), '--qmp', guest.sock, '--db', join(dir, 't.db'), '--backend', b.backend, '--poll-ms', '10'], tmp);
        await run.waitOutput('until the migration ends', 90_000);
        await sleep(500);
        guest.child.kill('SIGKILL');
        const exit = await run.finished(30_000);
        expect(exit.code).toBe(1);
        const { line } = closing(run);
        expect(line).toMatch(new RegExp(`aborted after \\d+ events: the attached process ${guest.pid} exited(( \\(signal SIGKILL\\))? before the scenario finished)?$`));
      } finally {
        await guest.stop();
      }
    }, 120_000);
  }
});

describe.skipIf('skip' in qemu)('the destination QEMU killed mid-migration (#21)', () => {
  it('the session says the destination died, and the exit is non-zero', async () => {
    if ('skip' in qemu) return;
    const db = join(freshTmp(), 't.db');
    const run = new CliRun(['record', '--db', db, '--target', 'qemu', '--qemu', qemu.path, '--memory', '1024', '--max-bandwidth', '200000'], tmp);
    await run.waitOutput('migrating to', 90_000);
    await sleep(800);
    run.signal(run.victim('destination')!, 'SIGKILL');
    const exit = await run.finished(30_000);
    expect(exit.code).toBe(1);
    const { line, session } = closing(run);
    expect(line).toMatch(/aborted after \d+ events: the destination QEMU \(pid \d+\) exited \(signal SIGKILL\) while the source migrated to it/);
    const facts = sessionFacts(db, session);
    expect(facts).toMatchObject({ integrity: 'ok', state: 'aborted' });
    expect(facts.error).toMatch(/destination QEMU .* exited/);
    await nothingLeft(run);
  }, 120_000);
});
