import { execFile, execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { withoutSweeps } from '../helpers/processes.js';
import { sleep } from '../../trace/async.js';

/**
 * Databases a user may hand migrace (#14 defects 8, 9, 16 and the smaller
 * ones): a file they may not write, a corrupt one, a new one two `record`s
 * create at once, a foreign SQLite file marked with a version, a session
 * export nested 20,000 deep, and a report written to a full disk. Each is
 * the CLI as a user runs it; each says one line naming the file.
 */

const execFileP = promisify(execFile);
const CLI = join(process.cwd(), 'bin', 'migrace.js');
const SAMPLE = join(process.cwd(), 'samples', 'sessions', 'minimig-lp1994002-unpatched.json');
const isRoot = process.getuid?.() === 0;

interface Outcome { code: number; stdout: string; stderr: string }

async function cli(args: string[], opts: { user?: string } = {}): Promise<Outcome> {
  const [cmd, argv] = opts.user ? ['runuser', ['-u', opts.user, '--', process.execPath, CLI, ...args]] : [process.execPath, [CLI, ...args]];
  try {
    const r = await execFileP(cmd, argv as string[], { env: { ...process.env, TMPDIR: dir } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

/** One line on stderr, no stack trace, no internal error. */
function oneLine(o: Outcome): string {
  expect(o.stderr).not.toMatch(/^\s+at |internal error|Node\.js v/m);
  const lines = withoutSweeps(o.stderr).trim().split('\n');
  expect(lines, o.stderr).toHaveLength(1);
  return lines[0];
}

let dir = '';
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'migrace-dbf-'));
  chmodSync(dir, 0o755);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function importedDb(name = 't.db'): Promise<string> {
  const db = join(dir, name);
  const o = await cli(['import', 'session', SAMPLE, '--db', db]);
  expect(o.code, o.stderr).toBe(0);
  return db;
}

function sessionCount(db: string): number {
  const raw = new Database(db, { readonly: true });
  try {
    return (raw.prepare('SELECT count(*) AS n FROM sessions').get() as { n: number }).n;
  } finally {
    raw.close();
  }
}

describe('a database the user may not write (#8)', () => {
  it.skipIf(!isRoot)('root\'s file read by nobody: read-only commands work, writers say the file is read-only', async () => {
    const db = await importedDb();
    chmodSync(db, 0o644);
    // The writer left it in rollback mode: a reader needs no -shm file it cannot create.
    expect(existsSync(`${db}-wal`)).toBe(false);
    const list = await cli(['sessions', '--db', db], { user: 'nobody' });
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/lp1994002|minimig/);
    const an = await cli(['analyze', '1', '--db', db], { user: 'nobody' });
    expect(an.code, an.stderr).toBe(0);
    const imp = await cli(['import', 'session', SAMPLE, '--db', db], { user: 'nobody' });
    expect(imp.code).toBe(1);
    expect(oneLine(imp)).toBe(`migrace: ${db} is read-only (you may not write it): record, replay and import need a trace database they can write (choose one with --db); sessions, analyze and report only read it`);
    expect(sessionCount(db)).toBe(1);
  }, 60_000);
});

describe('a corrupt database (#9)', () => {
  const damages: Array<{ name: string; damage: (db: string) => void }> = [
    { name: 'truncated', damage: (db) => truncateSync(db, Math.floor(statSync(db).size / 2)) },
    {
      name: 'overwritten bytes',
      damage: (db) => {
        const b = readFileSync(db);
        // Page 2 onward (the schema's tables): garbage where b-tree pages were.
        for (let i = 4096; i < Math.min(b.length, 4096 * 3); i++) b[i] = (i * 131) & 0xff;
        writeFileSync(db, b);
      },
    },
    { name: 'a 16-byte header only', damage: (db) => writeFileSync(db, readFileSync(db).subarray(0, 16)) },
  ];
  for (const d of damages) {
    it(`${d.name}: "FILE is corrupt (integrity check: ...)", and import writes nothing`, async () => {
      const db = await importedDb();
      d.damage(db);
      const before = readFileSync(db);
      const imp = await cli(['import', 'session', SAMPLE, '--db', db]);
      expect(imp.code).toBe(1);
      expect(oneLine(imp)).toMatch(new RegExp(`^migrace: ${db.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is corrupt \\(integrity check: .+\\)`));
      expect(readFileSync(db).equals(before)).toBe(true);
      const list = await cli(['events', '1', '--db', db]);
      expect(list.code).toBe(1);
      expect(oneLine(list)).toMatch(/is corrupt \(integrity check: /);
    }, 60_000);
  }
});

describe('two records create one new database at once (#16)', () => {
  it('both succeed, two sessions, integrity ok', async () => {
    for (let round = 0; round < 3; round++) {
      const db = join(dir, `new-${round}.db`);
      const [a, b] = await Promise.all([
        cli(['record', '--db', db, '--transfer-ms', '200']),
        cli(['record', '--db', db, '--transfer-ms', '200']),
      ]);
      expect(a.code, a.stderr).toBe(0);
      expect(b.code, b.stderr).toBe(0);
      expect(sessionCount(db)).toBe(2);
      const raw = new Database(db, { readonly: true });
      expect(raw.pragma('integrity_check', { simple: true })).toBe('ok');
      raw.close();
    }
  }, 120_000);
});

describe('a file in rollback mode that another process is writing', () => {
  it('an import waits the write out instead of failing at once (switching to WAL needs the lock SQLite would not wait for)', async () => {
    const db = await importedDb();
    // The last writer left the file in rollback mode; another process now holds a write transaction until told.
    const holder = spawn(process.execPath, ['-e', `
      const D = require(${JSON.stringify(join(process.cwd(), 'node_modules', 'better-sqlite3'))});
      const d = new D(process.argv[1]); d.exec('BEGIN IMMEDIATE'); console.log('held');
      process.stdin.once('data', () => { d.exec('COMMIT'); d.close(); process.exit(0); });`, db], { stdio: ['pipe', 'pipe', 'inherit'] });
    const holderGone = new Promise((r) => holder.on('exit', r));
    await new Promise<void>((resolve) => holder.stdout!.once('data', () => resolve()));
    const imp = spawn(process.execPath, [CLI, 'import', 'session', SAMPLE, '--db', db], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, TMPDIR: dir } });
    let stderr = '';
    imp.stderr!.on('data', (d: Buffer) => { stderr += String(d); });
    const code = new Promise<number | null>((r) => imp.on('exit', (c) => r(c)));
    // Released only once the import has the file open (and so has met the lock), plus a while.
    const opened = (): boolean => {
      try {
        return readdirSync(`/proc/${imp.pid}/fd`).some((fd) => { try { return readlinkSync(`/proc/${imp.pid}/fd/${fd}`) === db; } catch { return false; } });
      } catch {
        return false;
      }
    };
    const deadline = Date.now() + 30_000;
    while (!opened() && imp.exitCode === null && Date.now() < deadline) await sleep(10);
    expect(imp.exitCode, stderr).toBeNull();
    await sleep(700);
    holder.stdin!.write('commit\n');
    expect(await code, stderr).toBe(0);
    expect(sessionCount(db)).toBe(2);
    await holderGone;
  });
});

describe('the smaller ones', () => {
  it('a foreign SQLite file with user_version=3 is foreign, not "a newer schema"', async () => {
    const db = join(dir, 'foreign.db');
    const raw = new Database(db);
    raw.pragma('user_version = 3');
    raw.close();
    const o = await cli(['sessions', '--db', db]);
    expect(o.code).toBe(1);
    expect(oneLine(o)).toBe(`migrace: ${db} is an SQLite database that migrace did not create; refusing to touch it`);
  });

  it('a session export with a 20,000-deep meta is refused with the path, not a stack overflow', async () => {
    const data = JSON.parse(readFileSync(SAMPLE, 'utf8')) as { session: { meta: unknown } };
    // Written as text: JSON.stringify itself cannot nest that deep.
    data.session.meta = '@DEEP@';
    const deep = `${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}`;
    const file = join(dir, 'deep.json');
    writeFileSync(file, JSON.stringify(data).replace('"@DEEP@"', deep));
    const db = join(dir, 't.db');
    const o = await cli(['import', 'session', file, '--db', db]);
    expect(o.code).toBe(1);
    expect(oneLine(o)).toMatch(/is not a migrace session export: session\.meta\.a\.a.* is nested deeper than 64 levels/);
  });

  it.skipIf(!isRoot)('a report written to a full disk leaves no 0-byte or cut file', async () => {
    const db = await importedDb();
    const small = join(dir, 'small');
    execFileSync('mkdir', [small]);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', small]);
    try {
      execFileSync('dd', ['if=/dev/zero', `of=${join(small, 'fill')}`, 'bs=4k'], { stdio: 'ignore' });
    } catch {
      /* ENOSPC: the disk is full now */
    }
    try {
      for (const [flag, name] of [['--html', 'r.html'], ['--perfetto', 'r.json']] as const) {
        const o = await cli(['report', '1', flag, join(small, name), '--db', db]);
        expect(o.code).toBe(1);
        expect(oneLine(o)).toMatch(new RegExp(`cannot write .*${name.replace('.', '\\.')}: .*ENOSPC`));
        expect(existsSync(join(small, name))).toBe(false);
      }
    } finally {
      execFileSync('umount', [small]);
    }
  }, 60_000);
});
