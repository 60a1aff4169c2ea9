import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { TraceStore } from '../../trace/store.js';
import { processIsAlive } from '../../trace/proc.js';
import { descendants, expectNoSurvivors } from '../helpers/processes.js';
import { bookwormQemu } from '../helpers/qemu-binaries.js';
import { sleep } from '../../trace/async.js';

/**
 * migrace itself SIGKILLed in the middle of a recording, as `kill -9` or
 * the OOM killer do: nothing of it may live on (the destination QEMU used
 * to run on with ppid 1), and the next migrace command cleans what could
 * not clean itself (the private folder) and says so.
 */

const run = promisify(execFile);
const CLI = join(process.cwd(), 'bin', 'migrace.js');

afterEach(() => expectNoSurvivors());

interface Killed { pid: number; children: number[]; dirs: string[] }

/**
 * Start `record`, wait until its children are up and `afterMs` has passed,
 * then SIGKILL it. Its temp folder (TMPDIR) is the test's own: the ledger of
 * the dead run is found by this test's next command, not swept by a
 * migrace another test starts meanwhile.
 */
async function recordAndKill(tmp: string, db: string, args: string[], afterMs: number): Promise<Killed> {
  const child = spawn(process.execPath, [CLI, 'record', '--db', db, ...args], { stdio: 'ignore', env: { ...process.env, TMPDIR: tmp } });
  const pid = child.pid!;
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  const deadline = Date.now() + 20_000;
  while (descendants(pid).length < 2 && Date.now() < deadline) await sleep(50);
  await sleep(afterMs);
  const children = descendants(pid);
  const ledger = join(tmp, `migrace-ledger-${pid}.json`);
  const dirs = existsSync(ledger) ? (JSON.parse(readFileSync(ledger, 'utf8')) as { dirs: string[] }).dirs : [];
  child.kill('SIGKILL');
  await exited;
  return { pid, children, dirs };
}

async function expectGone(pids: number[]): Promise<void> {
  const deadline = Date.now() + 3000;
  while (pids.some((p) => processIsAlive(p)) && Date.now() < deadline) await sleep(50);
  expect(pids.filter((p) => processIsAlive(p))).toEqual([]);
}

const qemu = bookwormQemu();

describe('migrace SIGKILLed while it records', () => {
  const cases: Array<{ name: string; args: string[]; skip: boolean }> = [
    { name: 'minimig', args: ['--transfer-ms', '20000'], skip: false },
    { name: 'QEMU 7.2 (a destination QEMU runs outside gdb)', args: ['--target', 'qemu', '--qemu', 'path' in qemu ? qemu.path : '', '--max-bandwidth', '200000', '--memory', '1024'], skip: !('path' in qemu) },
  ];
  for (const c of cases) {
    it.skipIf(c.skip)(`${c.name}: no process outlives it, and the next command cleans up after it and says so`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'migrace-kill-'));
      const db = join(dir, 't.db');
      try {
        for (const afterMs of [0, 700, 2000]) {
          const k = await recordAndKill(dir, db, c.args, afterMs);
          expect(k.children.length).toBeGreaterThan(0);
          await expectGone(k.children);
          expect(k.dirs.length).toBeGreaterThan(0);
          const { stderr } = await run(process.execPath, [CLI, 'sessions', '--db', db], { env: { ...process.env, TMPDIR: dir } });
          expect(stderr).toContain(`cleaned up after migrace process ${k.pid}`);
          for (const d of k.dirs) expect(existsSync(d), d).toBe(false);
          expect(existsSync(join(dir, `migrace-ledger-${k.pid}.json`))).toBe(false);
        }
        const store = TraceStore.open(db);
        const sessions = store.listSessions();
        store.close();
        expect(sessions.length).toBeGreaterThan(0);
        for (const s of sessions) {
          expect(s.state).toBe('aborted');
          expect(s.error).toMatch(/ended without closing the session/);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }, 120_000);
  }
});
