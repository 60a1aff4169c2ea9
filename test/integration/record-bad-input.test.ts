import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { discoverProfile } from '../../recorder/probes/discover.js';
import { uprobeUnavailable } from '../../recorder/uprobe/tracefs.js';
import { TraceStore } from '../../trace/store.js';
import { tempStore } from '../helpers/db.js';
import { expectNoSurvivors, withoutSweeps } from '../helpers/processes.js';
import { bookwormQemu } from '../helpers/qemu-binaries.js';
import { HITS_PER_ROUND, recordStress } from '../helpers/stress.js';
import { sleep } from '../../trace/async.js';

/**
 * What `record` does when the recording cannot be what was asked for, run
 * for real: as an unprivileged user (setpriv to nobody) `--backend uprobe`
 * names the reason and exits 1 while `auto` records through gdb-fast and
 * says why on stderr; a profile made for another build-id is refused; a
 * ring buffer that fills (its reader stopped) is a count of lost hits in
 * the session, which says it is incomplete.
 */

const CLI = join(process.cwd(), 'bin', 'migrace.js');
const noUprobes = uprobeUnavailable();
const canDropRoot = process.getuid?.() === 0 && spawnSync('setpriv', ['--version']).status === 0;
afterEach(() => expectNoSurvivors());

/** A folder nobody may write in, for a database and a cache of its own. */
function nobodyDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'migrace-nobody-'));
  chmodSync(dir, 0o777);
  return dir;
}

function asNobody(dir: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', process.execPath, CLI, ...args],
    { encoding: 'utf8', timeout: 60_000, env: { ...process.env, HOME: dir, XDG_CACHE_HOME: join(dir, 'cache') } });
}

describe.skipIf(!canDropRoot)('record without root', () => {
  it('--backend uprobe names the reason and exits 1, storing nothing', () => {
    const dir = nobodyDir();
    try {
      const r = asNobody(dir, ['record', '--backend', 'uprobe', '--db', join(dir, 'trace.db')]);
      expect(withoutSweeps(r.stderr)).toBe('migrace: --backend uprobe cannot run here: kernel uprobes need root (tracefs is root-only)\n');
      expect(r.status).toBe(1);
      expect(existsSync(join(dir, 'trace.db'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--attach with auto refuses gdb instead of falling back: a killed gdb would leave its breakpoints in the process (#14 defect 4)', () => {
    const dir = nobodyDir();
    try {
      const r = asNobody(dir, ['record', '--attach', '1', '--db', join(dir, 'trace.db')]);
      expect(withoutSweeps(r.stderr)).toMatch(/^migrace: record --attach records through kernel uprobes, which leave the process untouched whatever happens to migrace, and they cannot run here \(kernel uprobes need root \(tracefs is root-only\)\); --backend gdb-fast or gdb records it under gdb, at the risk .* SIGTRAP\n$/);
      expect(r.status).toBe(2);
      expect(existsSync(join(dir, 'trace.db'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('auto falls back to gdb-fast, says so on stderr (with --json too), and the session says gdb-fast', () => {
    const dir = nobodyDir();
    try {
      const r = asNobody(dir, ['record', '--json', '--db', join(dir, 'trace.db')]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toContain('recording through gdb-fast, breakpoints handled inside gdb (uprobes unavailable: kernel uprobes need root (tracefs is root-only))');
      expect(JSON.parse(r.stdout)).toMatchObject({ state: 'complete', backend: 'gdb-fast', lastStatus: 'completed' });
      const store = TraceStore.open(join(dir, 'trace.db'), { readonly: true });
      const [s] = store.listSessions();
      store.close();
      expect(s.meta.backend).toBe('gdb-fast');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe.skipIf('skip' in bookwormQemu())('a profile of another build', () => {
  it('is refused before anything starts, naming both build-ids', async () => {
    const bin = bookwormQemu();
    if ('skip' in bin) return;
    const { profile } = await discoverProfile(bin.path, { env: bin.env });
    const dir = mkdtempSync(join(tmpdir(), 'migrace-buildid-'));
    try {
      const other = { ...profile, build_id: '0123456789abcdef0123456789abcdef01234567' };
      const file = join(dir, 'other.json');
      writeFileSync(file, JSON.stringify(other));
      for (const backend of ['uprobe', 'gdb-fast', 'gdb']) {
        if (backend === 'uprobe' && noUprobes) continue;
        const r = spawnSync(process.execPath, [CLI, 'record', '--target', 'qemu', '--qemu', bin.path, '--profile', file, '--backend', backend, '--db', join(dir, 'trace.db')],
          { encoding: 'utf8', timeout: 60_000 });
        expect(withoutSweeps(r.stderr)).toBe(`migrace: ${file} is a profile for build-id ${other.build_id}, but ${bin.path} is ${profile.build_id}; its addresses would be wrong here (run "migrace probes ${bin.path}" to make one for this build)\n`);
        expect(r.status).toBe(1);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

/** The pids of our own children reading a trace_pipe (the uprobe backend's reader; the probe lock's holder is a `cat` too). */
function readerPids(): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(process.pid), '-f', '^cat .*/trace_pipe$'], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

describe.skipIf(noUprobes !== null)('a ring buffer that fills', () => {
  it('is a count of lost hits in the session, which says it is incomplete; every hit is either stored or counted', async () => {
    const db = tempStore();
    try {
      const rounds = 20_000;
      const run = recordStress(db.store, 'uprobe', { rounds, bufferKb: 8 });
      // Stop the reader while the loop runs: the smallest buffer fills in milliseconds.
      let stopped: number[] = [];
      for (let i = 0; i < 500 && stopped.length === 0; i++) {
        stopped = readerPids();
        await sleep(5);
      }
      expect(stopped.length).toBe(1);
      process.kill(stopped[0], 'SIGSTOP');
      await sleep(500);
      process.kill(stopped[0], 'SIGCONT');
      const r = await run;
      expect(r.state, r.error ?? '').toBe('complete');
      expect(r.lostEvents).toBeGreaterThan(0);
      const s = db.store.session(r.sessionId);
      expect(s.meta).toMatchObject({ backend: 'uprobe', uprobe: { lost_events: r.lostEvents } });
      expect(s.meta.incomplete).toBe(`the kernel dropped ${r.lostEvents} probe hits: the reader fell behind its ring buffer`);
      expect(db.store.eventCount(r.sessionId) + r.lostEvents).toBe(rounds * HITS_PER_ROUND);
      const list = spawnSync(process.execPath, [CLI, 'sessions', '--db', db.path], { encoding: 'utf8' });
      expect(list.stdout).toContain(`complete, INCOMPLETE: the kernel dropped ${r.lostEvents} probe hits`);
    } finally {
      db.cleanup();
    }
  }, 120_000);
});
