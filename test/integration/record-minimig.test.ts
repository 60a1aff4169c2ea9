import { execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { explore } from '../../analyzer/explore.js';
import { findInterleavings } from '../../analyzer/interleavings.js';
import { minimigProfile } from '../../recorder/probes/minimig.js';
import { record } from '../../recorder/record.js';
import { minimigDir, prepareMinimig } from '../../recorder/targets/minimig.js';
import type { Thread, TraceEvent } from '../../trace/schema.js';
import { TraceStore } from '../../trace/store.js';
import { tempStore } from '../helpers/db.js';
import { expectNoSurvivors, withoutSweeps } from '../helpers/processes.js';

const run = promisify(execFile);
const CLI = join(process.cwd(), 'bin', 'migrace.js');

afterEach(() => expectNoSurvivors());

function byName(threads: Thread[], name: string): Thread {
  const t = threads.find((x) => x.name === name);
  if (!t) throw new Error(`no thread named ${name} in ${JSON.stringify(threads)}`);
  return t;
}

async function recordMinimig(patched: boolean) {
  const db = tempStore();
  // 300 ms in setup: queries land there even when a loaded machine is slow to start polling.
  const target = await prepareMinimig({ patched, setupMs: 300 });
  const profile = minimigProfile(minimigDir(), target.binary, patched);
  const result = await record({ store: db.store, target, profile, label: 't', pollMs: 20 });
  return { db, result };
}

/** The events of each query, from its query-begin to its reply. */
function queries(events: TraceEvent[]): Map<string, TraceEvent[]> {
  const out = new Map<string, TraceEvent[]>();
  let current: string | null = null;
  for (const e of events) {
    if (e.kind === 'query-begin') current = e.data.query;
    if (current) out.set(current, [...(out.get(current) ?? []), e]);
    if (e.kind === 'reply') current = null;
  }
  return out;
}

describe.each([false, true])('record minimig (patched=%s) under real gdb', (patched) => {
  it('records transitions by the right threads, reads, publishes and replies', async () => {
    const { db, result } = await recordMinimig(patched);
    try {
      expect(result.state, result.error ?? '').toBe('complete');
      const session = db.store.session(result.sessionId);
      expect(session.state).toBe('complete');
      expect(session.target.variant).toBe(patched ? 'patched' : 'unpatched');
      const threads = db.store.threads(result.sessionId);
      const events = db.store.events(result.sessionId);
      const main = byName(threads, 'minimig');
      const mig = byName(threads, 'live_migration');
      expect(main.lwp).toBeGreaterThan(0);
      expect(mig.lwp).toBeGreaterThan(0);
      expect(mig.lwp).not.toBe(main.lwp);

      const transitions = events.filter((e) => e.kind === 'transition');
      expect(transitions.map((e) => [e.thread, e.data.old?.name, e.data.new.name])).toEqual([
        [main.tid, 'none', 'setup'],
        [mig.tid, 'setup', 'active'],
        [mig.tid, 'active', 'completed'],
      ]);
      // Seqs strictly increase and the clock never goes back.
      for (let i = 1; i < events.length; i++) {
        expect(events[i].seq).toBe(events[i - 1].seq + 1);
        expect(events[i].t_ns!).toBeGreaterThanOrEqual(events[i - 1].t_ns!);
      }

      const statuses: string[] = [];
      for (const [q, evs] of queries(events)) {
        const reply = evs.find((e) => e.kind === 'reply');
        expect(reply, `reply of ${q}`).toBeDefined();
        if (reply?.kind !== 'reply' || reply.data.status === null) continue;
        statuses.push(reply.data.status);
        const read = evs.find((e) => e.kind === 'read');
        const publish = evs.find((e) => e.kind === 'publish');
        expect(read?.thread, `read in ${q}`).toBe(main.tid);
        expect(publish?.thread, `publish in ${q}`).toBe(main.tid);
        if (read?.kind !== 'read' || publish?.kind !== 'publish') continue;
        // What the reply says is what was published.
        expect(reply.data.status).toBe(publish.data.value.name);
        if (patched) {
          expect(publish.data.value).toEqual(read.data.value);
        } else if (publish.data.value.value !== read.data.value.value) {
          // Only the migration thread's move from the read value to the published one explains a difference.
          const moved = events.some((e) => e.kind === 'transition' && e.thread === mig.tid && e.seq < publish.seq
            && e.data.old?.value === read.data.value.value && e.data.new.value === publish.data.value.value);
          expect(moved, `publish ${publish.data.value.name} after read ${read.data.value.name} in ${q}`).toBe(true);
        }
        if (reply.data.status === 'active' || reply.data.status === 'completed') {
          // ram is missing exactly when the switch saw setup: the race, caught by the recording.
          expect(reply.data.has_ram).toBe(read.data.value.name !== 'setup');
        }
      }
      // setup -> active -> completed, in that order, with ram once active.
      const order = ['setup', 'active', 'completed'];
      const ranks = statuses.map((s) => order.indexOf(s));
      expect(ranks.every((r) => r >= 0)).toBe(true);
      expect([...ranks].sort((a, b) => a - b)).toEqual(ranks);
      expect(statuses.at(-1)).toBe('completed');
      expect(statuses).toContain('active');
      expect(events.some((e) => e.kind === 'reply' && e.data.status === 'active' && e.data.has_ram)).toBe(true);

      // analyze: the patched build never manifests. The unpatched one can, for
      // real, when the recorder's own stops widen the window; then the reply
      // is really broken, and every broken reply is explained by a finding.
      const a = findInterleavings(session, threads, events);
      const manifested = a.findings.filter((f) => f.class === 'manifested');
      if (patched) expect(manifested).toEqual([]);
      const broken = events.filter((e) => e.kind === 'reply' && e.data.status === 'active' && !e.data.has_ram).map((e) => e.seq);
      expect(manifested.filter((f) => f.read?.value.name === 'setup').map((f) => f.reply?.reply_seq)).toEqual(broken);
      for (const f of manifested) expect(f.crossing.every((t) => t.thread.name === 'live_migration')).toBe(true);

      // explore: the setup -> active hazard is the unpatched variant's only.
      const x = explore(session, threads, events);
      const lp = x.hazards.filter((h) => h.transition.old === 'setup' && h.transition.new === 'active');
      expect(lp.length).toBeGreaterThan(0);
      for (const h of lp) expect(h.affects).toEqual(['unpatched']);
    } finally {
      db.cleanup();
    }
  });
});

describe('record names the states by the binary itself', () => {
  it('minimig\'s own MigrationStatus_lookup names the session\'s states, and the report says where they came from', async () => {
    const db = tempStore();
    db.store.close();
    try {
      await run('node', [CLI, 'record', '--db', db.path, '--backend', 'gdb', '--transfer-ms', '10']);
      const store = TraceStore.open(db.path, { readonly: true });
      const [s] = store.listSessions();
      store.close();
      expect(s.target.status_names?.source).toBe('binary');
      expect(s.target.status_names?.names.slice(0, 5)).toEqual(['none', 'setup', 'cancelling', 'cancelled', 'active']);
      expect((s.profile as { notes: string[] }).notes.join(' ')).toMatch(/status names from the binary: MigrationStatus_lookup at 0x[0-9a-f]+/);
      const { stdout } = await run('node', [CLI, 'report', String(s.id), '--db', db.path, '--markdown']);
      expect(stdout).toMatch(/state names from the binary \(MigrationStatus\\?_lookup\)/);
    } finally {
      db.cleanup();
    }
  });
});

describe('record: bad input and failures', () => {
  it('names a missing binary and a missing gdb', async () => {
    const db = tempStore();
    try {
      const missing = await run('node', [CLI, 'record', '--db', db.path, '--binary', '/nonexistent/minimig']).catch((e) => e);
      expect(missing.code).toBe(1);
      expect(withoutSweeps(missing.stderr)).toMatch(/^migrace: minimig binary not found: \/nonexistent\/minimig/);
      expect(missing.stdout).toBe('');
      expect(missing.stderr).not.toMatch(/\n\s+at /);
      // A gdb that is not there is a usage mistake, said before the database opens: no session is left.
      const before = db.store.listSessions().length;
      const nogdb = await run('node', [CLI, 'record', '--db', db.path, '--gdb', '/nonexistent/gdb']).catch((e) => e);
      expect(nogdb.code).toBe(2);
      expect(withoutSweeps(nogdb.stderr)).toMatch(/^migrace: --gdb \/nonexistent\/gdb is not an executable program \(install the Debian package gdb, or give the path of a gdb\)\n$/m);
      expect(db.store.listSessions()).toHaveLength(before);
    } finally {
      db.cleanup();
    }
  });

  it('refuses a foreign or unwritable database', async () => {
    const db = tempStore();
    try {
      const foreign = join(db.dir, 'notes.db');
      writeFileSync(foreign, 'my notes, not a database\n');
      const r = await run('node', [CLI, 'record', '--db', foreign]).catch((e) => e);
      expect(r.code).toBe(1);
      expect(withoutSweeps(r.stderr).trim()).toBe(`migrace: ${foreign} is not a migrace trace database (not an SQLite file); refusing to touch it`);
      const r2 = await run('node', [CLI, 'record', '--db', '/proc/migrace.db']).catch((e) => e);
      expect(r2.code).toBe(1);
      expect(withoutSweeps(r2.stderr)).toMatch(/^migrace: cannot open trace database \/proc\/migrace\.db/);
    } finally {
      db.cleanup();
    }
  });

  it('aborts with a clear message when the QMP socket never appears', async () => {
    const db = tempStore();
    try {
      const target = await prepareMinimig();
      const profile = minimigProfile(minimigDir(), target.binary, false);
      const result = await record({ store: db.store, target: { ...target, qmpPath: join(db.dir, 'never.sock') }, profile, label: 'noqmp', qmpTimeoutMs: 1500 });
      expect(result.state).toBe('aborted');
      expect(result.error).toMatch(/no QMP server at .*never\.sock/);
      expect(db.store.session(result.sessionId)).toMatchObject({ state: 'aborted' });
    } finally {
      db.cleanup();
    }
  });

  it('ends as aborted, keeping every event, when gdb is killed mid-run', async () => {
    const db = tempStore();
    try {
      const target = await prepareMinimig({ transferMs: 5000 });
      const profile = minimigProfile(minimigDir(), target.binary, false);
      let killed = false;
      const result = await record({
        store: db.store, target, profile, label: 'kill',
        progress: (m) => {
          if (!killed && m.startsWith('migrating')) {
            killed = true;
            // Give the recorder a few hits, then kill gdb as a crash would.
            setTimeout(() => {
              const ps = spawn('pkill', ['-KILL', '-f', `gdb --interpreter=mi3`, '-P', String(process.pid)]);
              ps.on('error', () => undefined);
            }, 600);
          }
        },
      });
      expect(result.state).toBe('aborted');
      expect(result.error).toMatch(/gdb exited unexpectedly/);
      const events = db.store.events(result.sessionId);
      expect(events.length).toBeGreaterThan(3);
      expect(events.length).toBe(result.events);
      expect(db.store.session(result.sessionId)).toMatchObject({ state: 'aborted', error: result.error });
    } finally {
      db.cleanup();
    }
  });

  it('Ctrl-C ends the recording as aborted with its events kept, and no process survives', async () => {
    const db = tempStore();
    db.store.close();
    try {
      const child = spawn('node', [CLI, 'record', '--db', db.path, '--transfer-ms', '10000'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d) => {
        stderr += String(d);
        if (stderr.includes('migrating') && !child.killed) setTimeout(() => child.kill('SIGINT'), 500);
      });
      const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      expect(code).toBe(1);
      expect(stderr).toMatch(/\nmigrace: session 1: aborted after \d+ events: interrupted \(SIGINT\); the session keeps what was recorded\n$/);
      const store = TraceStore.open(db.path, { readonly: true });
      const [s] = store.listSessions();
      expect(s.state).toBe('aborted');
      expect(s.events).toBeGreaterThan(3);
      store.close();
    } finally {
      db.cleanup();
    }
  });
});
