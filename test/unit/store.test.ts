import { mkdtempSync, writeFileSync, rmSync, chmodSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MigraceError } from '../../trace/errors.js';
import { SessionWriter, TraceStore, SCHEMA_VERSION } from '../../trace/store.js';
import { blankLocation, type NewEvent } from '../../trace/schema.js';
import { statusName, statusValue, tableIdFor } from '../../trace/status.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'migrace-store-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const target = { kind: 'minimig' as const, binary: '/x/minimig', build_id: null, qemu_version: null, variant: 'unpatched' as const, status_table: '4.2' as const };

function transition(thread: number, t: number, o: number, n: number): NewEvent {
  return {
    kind: 'transition', t_ns: t, wall: null, thread, ...blankLocation(), probe: 'transition', func: 'migrate_set_state',
    data: { addr: '0x4040a0', old: { value: o, name: statusName(o, '4.2') }, new: { value: n, name: statusName(n, '4.2') } },
  };
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(MigraceError);
    return (e as MigraceError).code;
  }
  throw new Error('did not throw');
}

describe('TraceStore', () => {
  it('round-trips a session, threads and events in seq order', () => {
    const path = join(dir, 't.db');
    const store = TraceStore.open(path);
    const id = store.createSession({ label: 'rt', origin: 'live', target, profile: { any: 'json' } });
    store.upsertThread(id, { tid: 1, gdb_id: 1, lwp: 100, name: null });
    store.upsertThread(id, { tid: 1, gdb_id: 1, lwp: null, name: 'minimig' });
    store.upsertThread(id, { tid: 2, gdb_id: 2, lwp: 101, name: 'live_migration' });
    const w = new SessionWriter(store, id, { batchSize: 2 });
    w.push(transition(1, 10, 0, 1));
    w.push(transition(2, 20, 1, 4));
    w.push({ kind: 'reply', t_ns: 30, wall: '2026-01-01T00:00:00Z', thread: null, ...blankLocation(),
      data: { query: 'q1', command: 'query-migrate', status: 'active', has_ram: false, body: { status: 'active' } } });
    w.close();
    store.finishSession(id, 'complete');
    store.close();

    const again = TraceStore.open(path, { readonly: true });
    const s = again.session(id);
    expect(s.state).toBe('complete');
    expect(s.profile).toEqual({ any: 'json' });
    expect(again.threads(id)).toEqual([
      { tid: 1, gdb_id: 1, lwp: 100, name: 'minimig' },
      { tid: 2, gdb_id: 2, lwp: 101, name: 'live_migration' },
    ]);
    const ev = again.events(id);
    expect(ev.map((e) => e.seq)).toEqual([0, 1, 2]);
    expect(ev[1]).toMatchObject({ kind: 'transition', thread: 2, data: { new: { value: 4, name: 'active' } } });
    expect(ev[2]).toMatchObject({ kind: 'reply', data: { body: { status: 'active' } } });

    const exported = again.exportSession(id);
    again.close();
    const other = TraceStore.open(join(dir, 'other.db'));
    const id2 = other.importSession(JSON.parse(JSON.stringify(exported)));
    expect(other.exportSession(id2)).toEqual(exported);
    expect(other.listSessions()[0]).toMatchObject({ id: id2, events: 3, threads: 2, state: 'complete' });
    other.close();
  });

  it('keeps every event written before an abort', () => {
    const path = join(dir, 'a.db');
    const store = TraceStore.open(path);
    const id = store.createSession({ label: 'abort', origin: 'live', target, profile: null });
    const w = new SessionWriter(store, id, { batchSize: 1000, batchMs: 10_000 });
    for (let i = 0; i < 5; i++) w.push(transition(1, i, 0, 1));
    // An abort path flushes what was buffered before it marks the session.
    w.close();
    store.finishSession(id, 'aborted', 'gdb exited with signal SIGKILL');
    store.close();
    const again = TraceStore.open(path, { readonly: true });
    expect(again.session(id)).toMatchObject({ state: 'aborted', error: 'gdb exited with signal SIGKILL' });
    expect(again.events(id)).toHaveLength(5);
    again.close();
  });

  it('refuses a database of a newer schema', () => {
    const path = join(dir, 'new.db');
    TraceStore.open(path).close();
    const raw = new Database(path);
    raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    raw.close();
    expect(codeOf(() => TraceStore.open(path))).toBe('DB_NEWER');
  });

  it('refuses foreign files without touching them', () => {
    const text = join(dir, 'notes.txt');
    writeFileSync(text, 'hello, not a database');
    expect(codeOf(() => TraceStore.open(text))).toBe('DB_FOREIGN');
    const other = join(dir, 'other.sqlite');
    const raw = new Database(other);
    raw.exec('CREATE TABLE mine (x INTEGER)');
    raw.close();
    expect(codeOf(() => TraceStore.open(other))).toBe('DB_FOREIGN');
    const raw2 = new Database(other);
    expect(raw2.prepare('SELECT count(*) AS n FROM sqlite_master').get()).toEqual({ n: 1 });
    raw2.close();
  });

  it('gives a clear error for an unwritable place and a missing file', () => {
    expect(codeOf(() => TraceStore.open(join(dir, 'missing.db'), { readonly: true }))).toBe('DB_OPEN');
    expect(codeOf(() => TraceStore.open(join(dir, 'no', 'such', 'dir.db')))).toBe('DB_OPEN');
    if (process.getuid?.() !== 0) {
      const ro = join(dir, 'ro');
      mkdirSync(ro);
      chmodSync(ro, 0o500);
      expect(codeOf(() => TraceStore.open(join(ro, 'x.db')))).toBe('DB_OPEN');
    }
    expect(codeOf(() => TraceStore.open(dir))).toBe('DB_OPEN');
  });

  it('rejects a malformed export naming the field', () => {
    const store = TraceStore.open(join(dir, 'x.db'));
    try {
      store.importSession({ format: 'migrace-session', version: 1, session: {}, threads: [], events: [] }, 'bad.json');
      throw new Error('accepted');
    } catch (e) {
      expect((e as MigraceError).message).toMatch(/^bad\.json is not a migrace session export: session\./);
    }
    expect(store.listSessions()).toHaveLength(0);
    store.close();
  });
});

describe('MigrationStatus tables', () => {
  it('maps by version', () => {
    expect(tableIdFor('QEMU emulator version 5.2.0 (Debian 1:5.2+dfsg-11+deb11u3)')).toBe('4.2');
    expect(tableIdFor('7.2.22')).toBe('4.2');
    expect(tableIdFor('9.1.0')).toBe('9.1');
    expect(tableIdFor('10.0.13')).toBe('9.1');
    expect(tableIdFor('10.2.0')).toBe('10.2');
    expect(statusValue('completed', '4.2')).toBe(8);
    expect(statusValue('MIGRATION_STATUS_COMPLETED', '9.1')).toBe(9);
    expect(statusValue('completed', '10.2')).toBe(10);
    expect(statusValue('postcopy-active', '10.2')).toBe(6);
    expect(statusName(13, '9.1')).toBe('device');
    expect(statusName(4, '10.2')).toBe('active');
  });
});

describe('a writer that dies without closing its session', () => {
  it('is marked aborted by the next writer, which keeps its events and removes its disk reserve', async () => {
    const { spawnSync } = await import('node:child_process');
    const { existsSync, readdirSync } = await import('node:fs');
    const path = join(dir, 't.db');
    // A real process: it records three events, then SIGKILLs itself mid-session.
    const script = `
      import { SessionWriter, TraceStore } from ${JSON.stringify(join(process.cwd(), 'dist/trace/store.js'))};
      const store = TraceStore.open(${JSON.stringify(path)});
      const id = store.createSession({ label: 'doomed', origin: 'live', target: ${JSON.stringify(target)}, profile: null });
      const w = new SessionWriter(store, id);
      for (let i = 0; i < 3; i++) w.push({ kind: 'note', t_ns: i, wall: null, thread: null, probe: null, pc: null, func: null, file: null, line: null, data: { text: 'n' + i } });
      w.flush();
      process.kill(process.pid, 'SIGKILL');
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.signal, r.stderr).toBe('SIGKILL');
    expect(readdirSync(dir).some((n) => n.includes('.migrace-reserve-'))).toBe(true);

    // Read-only: shown as what the next writer will make of it, the file untouched.
    const ro = TraceStore.open(path, { readonly: true });
    expect(ro.abandoned).toEqual([]);
    expect(ro.session(1).state).toBe('aborted');
    ro.close();
    const raw = new Database(path, { readonly: true });
    expect((raw.prepare('SELECT state FROM sessions WHERE id = 1').get() as { state: string }).state).toBe('recording');
    raw.close();

    const rw = TraceStore.open(path);
    expect(rw.abandoned).toEqual([{ id: 1, pid: expect.any(Number), events: 3 }]);
    const s = rw.session(1);
    expect(s.state).toBe('aborted');
    expect(s.error).toMatch(/ended without closing the session.*the 3 events it stored are kept/);
    expect(rw.events(1)).toHaveLength(3);
    expect(readdirSync(dir).some((n) => n.includes('.migrace-reserve-'))).toBe(false);
    rw.close();
    // Once marked, a later open has nothing to do.
    const again = TraceStore.open(path);
    expect(again.abandoned).toEqual([]);
    again.close();
    expect(existsSync(path)).toBe(true);
  });

  it('leaves the session of a live writer alone', () => {
    const path = join(dir, 't.db');
    const a = TraceStore.open(path);
    const id = a.createSession({ label: 'live', origin: 'live', target, profile: null });
    const b = TraceStore.open(path);
    expect(b.abandoned).toEqual([]);
    expect(b.session(id).state).toBe('recording');
    b.close();
    a.close();
  });
});
