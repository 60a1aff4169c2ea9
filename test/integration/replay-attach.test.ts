import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { register as registerReplay } from '../../cli/replay.js';
import { replay, type ReplayResult } from '../../analyzer/replay.js';
import { builtinSchedule } from '../../analyzer/schedule.js';
import { minimigProfile } from '../../recorder/probes/minimig.js';
import { QmpClient } from '../../recorder/qmp.js';
import { isAlive, track, waitGone } from '../../recorder/reaper.js';
import { attachedTarget } from '../../recorder/record.js';
import { minimigDir, prepareMinimig } from '../../recorder/targets/minimig.js';
import { runCommand } from '../helpers/cli.js';
import { tempStore } from '../helpers/db.js';
import { expectNoSurvivors } from '../helpers/processes.js';

/**
 * `replay --attach PID` on a minimig this test starts and drives itself, as
 * libvirt drives a QEMU: migrace holds and releases at the probes, the test
 * sends migrate and query-migrate on its own monitor, and gets the reply
 * LP#1994002 gives. The process is left running, detached. (The same with
 * real libvirt 7.0 and QEMU 5.2: libvirt-real.test.ts.)
 */

afterEach(() => expectNoSurvivors());

/** Resolves once a progress line matches re. */
function progressWatch(): { say: (m: string) => void; until: (re: RegExp, ms: number) => Promise<void>; lines: string[] } {
  const lines: string[] = [];
  const waiters: Array<{ re: RegExp; done: () => void }> = [];
  return {
    lines,
    say: (m) => {
      lines.push(m);
      for (const w of [...waiters]) {
        if (w.re.test(m)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.done();
        }
      }
    },
    until: (re, ms) => new Promise<void>((resolve, reject) => {
      if (lines.some((l) => re.test(l))) return resolve();
      const timer = setTimeout(() => reject(new Error(`no progress line matching ${re} within ${ms} ms: ${lines.join(' | ')}`)), ms);
      waiters.push({ re, done: () => { clearTimeout(timer); resolve(); } });
    }),
  };
}

describe('replay --attach: the driver migrates and queries, migrace only holds and releases', () => {
  it('lp1994002 on an attached minimig: the driver\'s own query-migrate gets active without ram; the process runs on', async () => {
    const db = tempStore();
    const target = await prepareMinimig();
    const profile = minimigProfile(minimigDir(), target.binary, false);
    const child = spawn(target.binary, target.args, { stdio: 'ignore' });
    const untrack = track(child.pid!, 'attached minimig');
    let driver: QmpClient | null = null;
    try {
      driver = await QmpClient.connect(target.qmpPath, { timeoutMs: 15_000 });
      const watch = progressWatch();
      const running: Promise<ReplayResult> = replay({
        store: db.store, target: attachedTarget(target.binary, profile, null), profile, schedule: builtinSchedule('lp1994002'),
        label: 'attached', attachPid: child.pid!, driverWaitMs: 30_000, progress: watch.say,
      });
      await watch.until(/waiting for the migration of process/, 30_000);
      await driver.execute('migrate', { uri: target.migrateUri });
      await watch.until(/^writer .* held/, 30_000);
      const reply = (await driver.execute('query-migrate', undefined, { timeoutMs: 30_000 })).ret as Record<string, unknown>;
      const r = await running;
      expect(r.state, r.error ?? '').toBe('complete');
      expect(r.outcome).toBe('manifested');
      // The reply went to the driver, not to migrace.
      expect(r.reply).toBeNull();
      expect(reply.status).toBe('active');
      expect(reply).not.toHaveProperty('ram');
      expect(watch.lines).toContain('reader released');
      const session = db.store.session(r.sessionId);
      expect(session.state).toBe('complete');
      expect(session.meta).toMatchObject({ scenario: 'lp1994002' });
      // Detached, not killed: it still answers its monitor.
      expect(isAlive(child.pid!)).toBe(true);
      expect((await driver.execute('query-migrate')).ret).toMatchObject({ status: 'completed' });
    } finally {
      await driver?.execute('quit').catch(() => undefined);
      await driver?.close();
      if (!(await waitGone(child.pid!, 5_000))) child.kill('SIGKILL');
      untrack();
      await target.dispose();
      db.cleanup();
    }
  }, 120_000);

  it('usage: --repeat and QEMU arguments do not go with --attach; a pid that is not there is named', async () => {
    const db = tempStore();
    try {
      const rep = await runCommand(registerReplay, ['replay', '--attach', String(process.pid), '--scenario', 'lp1994002', '--repeat', '2', '--db', db.path]);
      expect(rep.err).toContain('--repeat goes without --attach');
      const args = await runCommand(registerReplay, ['replay', '--attach', String(process.pid), '--scenario', 'lp1994002', '--db', db.path, '--', '-m', '64']);
      expect(args.err).toContain('--attach takes no QEMU arguments');
      const gone = await runCommand(registerReplay, ['replay', '--attach', '4194303', '--scenario', 'lp1994002', '--db', db.path]);
      expect(gone.err).toContain('no process 4194303 to attach to');
      for (const r of [rep, args, gone]) expect(r.code).not.toBe(0);
    } finally {
      db.cleanup();
    }
  });
});
