/**
 * gdb runs and uprobe recordings of one binary exclude each other
 * (recorder/probe-lock.ts): a kernel uprobe hides a gdb breakpoint at the
 * same place in every process of that binary. Run for real: a gdb run's
 * lock held on minimig makes `record --backend uprobe` wait and say so,
 * and the recording goes on once the lock is let go.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { lockBinaryForProbes, probeLockPath } from '../../recorder/probe-lock.js';
import { uprobeUnavailable } from '../../recorder/uprobe/tracefs.js';
import { TraceStore } from '../../trace/store.js';
import { expectNoSurvivors } from '../helpers/processes.js';
import { sleep } from '../../trace/async.js';

const CLI = join(process.cwd(), 'bin', 'migrace.js');
const MINIMIG = resolve('samples/minimig/minimig');
const noUprobes = uprobeUnavailable();
const tmp = mkdtempSync(join(tmpdir(), 'migrace-probe-lock-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
afterEach(() => expectNoSurvivors());

/** `record --backend uprobe ARGS` started while the test holds a gdb lock on minimig, once it says it waits (or after 30 s). */
async function waitingRecord(args: string[]): Promise<{ child: ChildProcess; exit: Promise<number | null>; readonly stderr: string }> {
  const child = spawn(process.execPath, [CLI, 'record', '--backend', 'uprobe', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => { stderr += String(d); });
  const exit = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  const deadline = Date.now() + 30_000;
  while (!stderr.includes("waiting for another migrace's gdb breakpoints") && Date.now() < deadline) await sleep(50);
  return { child, exit, get stderr() { return stderr; } };
}

describe.skipIf(noUprobes !== null)('the probe lock', () => {
  it('a uprobe recording waits while a gdb run holds the binary, says so (with --json too), and records once it is let go', async () => {
    expect(probeLockPath(MINIMIG)).toMatch(/migrace-probes-\d+-\d+\.lock$/);
    const unlock = await lockBinaryForProbes(MINIMIG, 'gdb');
    const db = join(tmp, 'lock.db');
    const run = await waitingRecord(['--json', '--db', db]);
    const { child, exit } = run;
    try {
      expect(run.stderr).toContain(`waiting for another migrace's gdb breakpoints on ${MINIMIG}`);
      // Still waiting two seconds later: no kernel probe of its own is defined yet.
      await sleep(2000);
      expect(child.exitCode).toBeNull();
      expect(readFileSync('/sys/kernel/tracing/uprobe_events', 'utf8')).not.toContain(`:migrace_${child.pid}/`);
    } finally {
      unlock();
    }
    expect(await exit, run.stderr).toBe(0);
    const store = TraceStore.open(db, { readonly: true });
    const [session] = store.listSessions();
    store.close();
    expect(session).toMatchObject({ state: 'complete' });
    expect(session.meta.backend).toBe('uprobe');
  }, 90_000);

  it('a SIGTERM to the waiting migrace alone (not its process group) ends the wait at once: aborted, one line, no flock left', async () => {
    const unlock = await lockBinaryForProbes(MINIMIG, 'gdb');
    const db = join(tmp, 'term.db');
    const run = await waitingRecord(['--db', db]);
    const { child, exit } = run;
    try {
      expect(run.stderr).toContain('waiting for another migrace');
      const sent = Date.now();
      child.kill('SIGTERM');
      const code = await exit;
      expect(Date.now() - sent).toBeLessThan(5_000);
      expect(code, run.stderr).not.toBe(0);
      expect(run.stderr.trim().split('\n').at(-1)).toMatch(/^migrace: session \d+: aborted after 0 events: interrupted while waiting for another migrace's gdb breakpoints on /);
    } finally {
      unlock();
    }
    const store = TraceStore.open(db, { readonly: true });
    const [session] = store.listSessions();
    store.close();
    expect(session).toMatchObject({ state: 'aborted' });
  }, 90_000);
});
