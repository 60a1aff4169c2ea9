import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { TraceStore } from '../../trace/store.js';
import { afterEach, describe, expect, it } from 'vitest';
import { expectNoSurvivors } from '../helpers/processes.js';

/**
 * Storage that fails under a real recording of minimig (the CLI as a user
 * runs it): a full filesystem, a file-size limit, and a database another
 * process keeps locked. Each ends with one line, the session aborted, and
 * every event the line counts on disk, intact.
 */

const run = promisify(execFile);
const CLI = join(process.cwd(), 'bin', 'migrace.js');
const isRoot = process.getuid?.() === 0;

afterEach(() => expectNoSurvivors());

interface Outcome { code: number | null; stderr: string }

/** A shell line runs the CLI so that ulimit applies to it alone. */
function recordIn(db: string, opts: { ulimitKb?: number; transferMs?: number } = {}): Promise<Outcome> {
  const args = [CLI, 'record', '--db', db, '--transfer-ms', String(opts.transferMs ?? 4000), '--poll-ms', '1'];
  const line = `${opts.ulimitKb ? `ulimit -f ${opts.ulimitKb}; ` : ''}exec "$0" "$@"`;
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', line, process.execPath, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.on('exit', (code) => resolve({ code, stderr }));
  });
}

/** The last stderr line is the run's one line; no stack trace anywhere. */
function abortedLine(o: Outcome): { session: number; events: number; line: string } {
  expect(o.stderr).not.toMatch(/^\s+at /m);
  expect(o.stderr).not.toMatch(/internal error|Node\.js v/);
  const line = o.stderr.trim().split('\n').at(-1) ?? '';
  const m = /^migrace: session (\d+): aborted after (\d+) events: (.+)$/.exec(line);
  expect(m, o.stderr).not.toBeNull();
  expect(o.code).toBe(1);
  return { session: Number(m![1]), events: Number(m![2]), line };
}

function checkDb(path: string, session: number, events: number): { state: string; error: string | null } {
  const db = new Database(path, { readonly: true });
  try {
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    const row = db.prepare('SELECT state, error FROM sessions WHERE id = ?').get(session) as { state: string; error: string | null };
    const n = (db.prepare('SELECT count(*) AS n FROM events WHERE session_id = ?').get(session) as { n: number }).n;
    expect(n).toBe(events);
    expect(events).toBeGreaterThan(0);
    return row;
  } finally {
    db.close();
  }
}

describe('record when the storage fails', () => {
  it.skipIf(!isRoot)('a full filesystem (1 MiB tmpfs): one line, the session aborted, the stored events kept', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'migrace-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
    try {
      const o = await recordIn(join(dir, 't.db'));
      const r = abortedLine(o);
      expect(r.line).toMatch(/the disk holding .*t\.db is full/);
      const row = checkDb(join(dir, 't.db'), r.session, r.events);
      if (row.state === 'recording') {
        // The disk was too full for the closing write too: the line says so, and the session reads as aborted
        // (its writer is gone) until a writer can store the mark.
        expect(r.line).toMatch(/and cannot close session \d+: .*is full.*: the next migrace command that opens .*t\.db marks session \d+ aborted$/);
        const store = TraceStore.open(join(dir, 't.db'), { readonly: true });
        try {
          expect(store.session(r.session)).toMatchObject({ state: 'aborted' });
        } finally {
          store.close();
        }
      } else {
        expect(row.state, o.stderr).toBe('aborted');
        expect(row.error).toMatch(/is full/);
      }
    } finally {
      execFileSync('umount', [dir]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a file-size limit (ulimit -f 150): the write fails instead of SIGXFSZ killing migrace', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'migrace-fsize-'));
    try {
      const o = await recordIn(join(dir, 't.db'), { ulimitKb: 150 });
      const r = abortedLine(o);
      expect(r.line).toMatch(/file-size limit/);
      const row = checkDb(join(dir, 't.db'), r.session, r.events);
      expect(row.state).toBe('aborted');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a database another process keeps locked: short locks are waited out, a long one aborts with everything stored', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'migrace-lock-'));
    mkdirSync(dir, { recursive: true });
    const path = join(dir, 't.db');
    try {
      // The file exists at the current schema before the lock is taken.
      await run(process.execPath, [CLI, 'record', '--db', path, '--transfer-ms', '10']);
      const holdFor = (afterMs: number, ms: number): Promise<void> => new Promise((resolve) => {
        setTimeout(() => {
          const locker = new Database(path);
          locker.exec('BEGIN IMMEDIATE');
          setTimeout(() => { locker.exec('COMMIT'); locker.close(); resolve(); }, ms);
        }, afterMs);
      });
      // Held in a worker's own event loop: the recording runs in a child process.
      const short = holdFor(1500, 3000);
      const ok = await recordIn(path, { transferMs: 6000 });
      await short;
      expect(ok.code, ok.stderr).toBe(0);
      const long = holdFor(1500, 14_000);
      const o = await recordIn(path, { transferMs: 15_000 });
      await long;
      const r = abortedLine(o);
      expect(r.line).toMatch(/locked by another process for more than 10 s/);
      const row = checkDb(path, r.session, r.events);
      expect(row.state).toBe('aborted');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
