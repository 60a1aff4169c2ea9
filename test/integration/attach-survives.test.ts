import { spawn, execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { discoverProfile } from '../../recorder/probes/discover.js';
import { QmpClient } from '../../recorder/qmp.js';
import { isAlive, track, waitGone } from '../../recorder/reaper.js';
import { makePrivateDir } from '../../recorder/targets/private-dir.js';
import { startDestination } from '../../recorder/targets/qemu.js';
import { uprobeUnavailable } from '../../recorder/uprobe/tracefs.js';
import { readProcStat, tracerPid } from '../../trace/proc.js';
import { TraceStore } from '../../trace/store.js';
import { tempStore } from '../helpers/db.js';
import { expectNoSurvivors } from '../helpers/processes.js';
import { bookwormQemu } from '../helpers/qemu-binaries.js';
import { sleep } from '../../trace/async.js';

/**
 * A QEMU somebody else runs and migrates, recorded with `record --attach`
 * (the default backend as root: kernel uprobes). Whatever happens to
 * migrace, that QEMU lives on: it is never ptraced (TracerPid 0 at every
 * sample), it is never left stopped, it keeps answering its own monitor,
 * and the probes of a SIGKILLed migrace are removed by the next command.
 * Without a monitor of its own (libvirt holds QEMU's only one), migrace
 * records the queries the client makes, and what the probes saw published
 * is what the client was told.
 */

const run = promisify(execFile);
const CLI = join(process.cwd(), 'bin', 'migrace.js');
const bin = bookwormQemu();
const noUprobes = uprobeUnavailable();
const skip = 'skip' in bin ? bin.skip : noUprobes;

afterEach(() => expectNoSurvivors());

interface Guest {
  qemu: ChildProcess;
  pid: number;
  user: QmpClient;
  migraceSock: string;
  destUri: string;
  stop: () => Promise<void>;
}

/**
 * A guest with two monitors (the user's and one for migrace), or with the
 * user's only (as libvirt runs QEMU), and a destination, slow enough to stay
 * active for seconds.
 */
async function startGuest(dir: string, bandwidth: number, monitors: 1 | 2 = 2): Promise<Guest> {
  if ('skip' in bin) throw new Error(bin.skip);
  const found = await discoverProfile(bin.path, { env: bin.env });
  const dest = await startDestination({ qemu: bin.path, profile: found.profile, memory: '512' }, dir);
  const ours = join(dir, 'user.sock');
  const theirs = join(dir, 'migrace.sock');
  const qemu = spawn(bin.path, ['-nodefaults', '-display', 'none', '-S', '-m', '512', '-name', 'guest,debug-threads=on',
    '-qmp', `unix:${ours},server=on,wait=off`, ...(monitors === 2 ? ['-qmp', `unix:${theirs},server=on,wait=off`] : [])], { stdio: 'ignore' });
  const untrack = track(qemu.pid!, 'attach test qemu');
  const user = await QmpClient.connect(ours, { timeoutMs: 15_000 });
  await user.execute('migrate-set-parameters', { 'max-bandwidth': bandwidth });
  return {
    qemu, pid: qemu.pid!, user, migraceSock: theirs, destUri: dest.uri,
    stop: async () => {
      await user.execute('quit').catch(() => undefined);
      await user.close();
      if (!(await waitGone(qemu.pid!, 5000))) qemu.kill('SIGKILL');
      untrack();
      await dest.stop();
    },
  };
}

/** TracerPid and state of the guest, sampled every 20 ms until stopped. */
function sampler(pid: number): { stop: () => { samples: number; traced: number; stopped: number } } {
  let samples = 0;
  let traced = 0;
  let stopped = 0;
  const t = setInterval(() => {
    samples++;
    if ((tracerPid(pid) ?? 0) !== 0) traced++;
    const st = readProcStat(pid)?.state;
    if (st === 'T' || st === 't') stopped++;
  }, 20);
  return { stop: () => { clearInterval(t); return { samples, traced, stopped }; } };
}

/** `record --attach` on the guest: with a monitor of its own, or passive (the queries others make are what is recorded). */
function startRecorder(guest: Guest, db: string, passive = false): { child: ChildProcess; started: Promise<void>; exit: Promise<number | null>; stderr: () => string } {
  const monitor = passive ? [] : ['--qmp', guest.migraceSock];
  const child = spawn(process.execPath, [CLI, 'record', '--attach', String(guest.pid), ...monitor, '--db', db, '--poll-ms', '10'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  const exit = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  const started = new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (d) => {
      stderr += String(d);
      if (stderr.includes('until the migration ends')) resolve();
    });
    void exit.then(() => reject(new Error(`migrace exited early: ${stderr}`)));
  });
  child.stdout!.resume();
  return { child, started, exit, stderr: () => stderr };
}

async function expectHealthy(guest: Guest): Promise<void> {
  expect(isAlive(guest.pid)).toBe(true);
  expect(tracerPid(guest.pid)).toBe(0);
  expect(readProcStat(guest.pid)?.state).not.toMatch(/^[Tt]$/);
  const r = await guest.user.execute<{ status?: string }>('query-migrate');
  expect(typeof r.ret).toBe('object');
}

/** The uprobe definitions of migrace process `pid` (other test files may have live groups of their own). */
function groupsOf(pid: number): string[] {
  return readFileSync('/sys/kernel/tracing/uprobe_events', 'utf8').split('\n').filter((l) => l.startsWith(`p:migrace_${pid}/`) || l.startsWith(`r:migrace_${pid}/`));
}

describe.skipIf(skip !== null)('record --attach through uprobes leaves the attached QEMU alone', () => {
  it('records a whole migration without ever tracing or stopping the guest', async () => {
    const dir = makePrivateDir('migrace-attach-up');
    const db = tempStore();
    db.store.close();
    const guest = await startGuest(dir.path, 8 * 1024 * 1024);
    try {
      const s = sampler(guest.pid);
      const rec = startRecorder(guest, db.path);
      await rec.started;
      await guest.user.execute('migrate', { uri: guest.destUri });
      const code = await rec.exit;
      const seen = s.stop();
      expect(code, rec.stderr()).toBe(0);
      expect(seen.samples).toBeGreaterThan(10);
      expect(seen).toMatchObject({ traced: 0, stopped: 0 });
      await expectHealthy(guest);
      const store = TraceStore.open(db.path, { readonly: true });
      const [session] = store.listSessions();
      expect(session.meta.backend).toBe('uprobe');
      const events = store.events(session.id);
      const kinds = new Set(events.map((e) => e.kind));
      for (const k of ['transition', 'read', 'publish', 'query-begin', 'reply']) expect(kinds.has(k as never), k).toBe(true);
      const moves = events.flatMap((e) => (e.kind === 'transition' ? [`${e.data.old?.name}->${e.data.new.name}`] : []));
      expect(moves).toEqual(expect.arrayContaining(['setup->active', 'active->completed']));
      store.close();
      expect(groupsOf(rec.child.pid!)).toEqual([]);
    } finally {
      await guest.stop();
      dir.remove();
      db.cleanup();
    }
  }, 90_000);

  it('passive: a QEMU whose only monitor a libvirt-like client polls is recorded from that client\'s queries, never traced', async () => {
    const dir = makePrivateDir('migrace-attach-passive');
    const db = tempStore();
    db.store.close();
    const guest = await startGuest(dir.path, 4 * 1024 * 1024, 1);
    try {
      const s = sampler(guest.pid);
      const rec = startRecorder(guest, db.path, true);
      await rec.started;
      // libvirt's part: migrate, then poll query-migrate (as virsh domjobinfo does) until the end.
      await guest.user.execute('migrate', { uri: guest.destUri });
      const seen: string[] = [];
      for (;;) {
        const r = await guest.user.execute<{ status?: string }>('query-migrate');
        seen.push(r.ret.status ?? 'none');
        if (r.ret.status === 'completed' || r.ret.status === 'failed') break;
        await sleep(20);
      }
      const code = await rec.exit;
      const sampled = s.stop();
      expect(code, rec.stderr()).toBe(0);
      expect(sampled).toMatchObject({ traced: 0, stopped: 0 });
      expect(seen.at(-1)).toBe('completed');
      const store = TraceStore.open(db.path, { readonly: true });
      const [session] = store.listSessions();
      const events = store.events(session.id);
      const threads = store.threads(session.id);
      store.close();
      expect(session.meta).toMatchObject({ backend: 'uprobe', passive: true, uprobe: { lost_events: 0 } });
      // No reply reaches migrace: each query is opened at qmp_query_migrate's entry and closed at its return.
      expect(events.filter((e) => e.kind === 'reply')).toEqual([]);
      const main = threads.find((t) => t.name === 'qemu-system-x86');
      const begins = events.filter((e) => e.kind === 'query-begin');
      expect(begins.length).toBe(seen.length);
      const published: string[] = [];
      for (const b of begins) {
        if (b.kind !== 'query-begin') continue;
        expect(b.thread).toBe(main?.tid);
        const end = events.find((e) => e.kind === 'query-end' && e.data.query === b.data.query);
        expect(end, `end of ${b.data.query}`).toBeDefined();
        const inside = events.filter((e) => e.seq > b.seq && e.seq < end!.seq && e.thread === b.thread);
        expect(inside.filter((e) => e.kind === 'read')).toHaveLength(1);
        const pub = inside.find((e) => e.kind === 'publish');
        published.push(pub?.kind === 'publish' ? pub.data.value.name ?? '?' : 'none');
      }
      // What the client was told is what the probes saw QEMU publish, query for query.
      expect(published).toEqual(seen);
      const moves = events.flatMap((e) => (e.kind === 'transition' ? [`${e.data.old?.name}->${e.data.new.name}`] : []));
      expect(moves).toEqual(expect.arrayContaining(['setup->active', 'active->completed']));
      expect(groupsOf(rec.child.pid!)).toEqual([]);
      await expectHealthy(guest);
    } finally {
      await guest.stop();
      dir.remove();
      db.cleanup();
    }
  }, 90_000);

  it('a SIGKILLed migrace at any point: the guest runs on untraced, and the next command removes the dead run\'s probes', async () => {
    const dir = makePrivateDir('migrace-attach-kill');
    const db = tempStore();
    db.store.close();
    const guest = await startGuest(dir.path, 64 * 1024);
    try {
      await guest.user.execute('migrate', { uri: guest.destUri });
      for (const afterMs of [0, 150, 600, 1500]) {
        const s = sampler(guest.pid);
        const rec = startRecorder(guest, db.path);
        await rec.started;
        await sleep(afterMs);
        rec.child.kill('SIGKILL');
        await rec.exit;
        await sleep(100);
        const seen = s.stop();
        expect(seen).toMatchObject({ traced: 0, stopped: 0 });
        await expectHealthy(guest);
        expect(groupsOf(rec.child.pid!).length).toBeGreaterThan(0);
        const { stderr } = await run(process.execPath, [CLI, 'sessions', '--db', db.path]);
        // Removed by this command, or by another test file's migrace that started first (the sweep is machine-wide).
        if (groupsOf(rec.child.pid!).length === 0 && !stderr.includes(`of migrace process ${rec.child.pid},`)) console.log(`group of ${rec.child.pid} removed by another migrace first`);
        else expect(stderr).toContain(`of migrace process ${rec.child.pid}, which died without removing them`);
        expect(groupsOf(rec.child.pid!)).toEqual([]);
        await expectHealthy(guest);
      }
      // The killed runs' sessions are aborted with what they stored; the guest migrated on regardless.
      const store = TraceStore.open(db.path, { readonly: true });
      const sessions = store.listSessions();
      store.close();
      expect(sessions).toHaveLength(4);
      for (const x of sessions) expect(x.state).toBe('aborted');
      expect(sessions.reduce((n, x) => n + x.events, 0)).toBeGreaterThan(0);
      await guest.user.execute('migrate_cancel').catch(() => undefined);
    } finally {
      await guest.stop();
      dir.remove();
      db.cleanup();
    }
  }, 120_000);
});

describe.skipIf('skip' in bin)('record --attach --backend gdb when gdb hangs', () => {
  it('a stopped gdb (kill -STOP) is woken to detach: the guest lives on, untraced and running', async () => {
    const dir = makePrivateDir('migrace-attach-gdbstop');
    const db = tempStore();
    db.store.close();
    const guest = await startGuest(dir.path, 64 * 1024);
    try {
      await guest.user.execute('migrate', { uri: guest.destUri });
      const child = spawn(process.execPath, [CLI, 'record', '--attach', String(guest.pid), '--qmp', guest.migraceSock, '--db', db.path, '--poll-ms', '10', '--backend', 'gdb'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      const exit = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
      await new Promise<void>((resolve, reject) => {
        child.stderr!.on('data', (d) => {
          stderr += String(d);
          if (stderr.includes('until the migration ends')) resolve();
        });
        void exit.then(() => reject(new Error(stderr)));
      });
      await sleep(300);
      const gdb = Number(execFileSyncText('pgrep', ['-P', String(child.pid), '-x', 'gdb']).trim().split('\n')[0]);
      expect(gdb).toBeGreaterThan(0);
      process.kill(gdb, 'SIGSTOP');
      const code = await exit;
      expect(code).toBe(1);
      expect(stderr).toMatch(/warning: recording an attached process under gdb/);
      expect(stderr.trim().split('\n').at(-1)).toMatch(/^migrace: session \d+: aborted after \d+ events: /);
      expect(await waitGone(gdb, 5000)).toBe(true);
      await sleep(200);
      await expectHealthy(guest);
    } finally {
      await guest.stop();
      dir.remove();
      db.cleanup();
    }
  }, 90_000);
});

function execFileSyncText(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8' });
  } catch {
    return '';
  }
}
