import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SessionWriter, TraceStore } from '../../trace/store.js';
import type { NewEvent } from '../../trace/schema.js';

/**
 * The store against bare better-sqlite3 doing the same work on the same
 * rows: ingest (the same events, their data serialized, inserted into a
 * table of the events table's shape in one transaction) and read (the
 * same rows selected in seq order, their data parsed). The store writes in
 * the batches a recording uses (SessionWriter's defaults) and reads through
 * iterateEvents. Each is measured REPS times, alternating with its
 * baseline, and the fastest of each is kept: on a shared machine the
 * slower runs measure the neighbours. CPU time is given too.
 */

export interface BenchRow { name: string; baselineMs: number; ms: number; ratio: number; note?: string }

const REPS = 3;

function syntheticEvent(i: number): NewEvent {
  return {
    kind: 'transition', t_ns: i * 1000, wall: null, thread: 1 + (i % 2), probe: 'transition', pc: '0x401136',
    func: 'migrate_set_state', file: 'minimig.c', line: 140,
    data: { addr: '0x4040a0', old: { value: 1, name: 'setup' }, new: { value: 4, name: 'active' } },
  };
}

/** The events table as trace/store.ts creates it (migration 1). */
const EVENTS_DDL = `CREATE TABLE events (
  session_id INTEGER NOT NULL, seq INTEGER NOT NULL, t_ns INTEGER, wall TEXT, thread INTEGER, kind TEXT NOT NULL,
  probe TEXT, pc TEXT, func TEXT, file TEXT, line INTEGER, data TEXT NOT NULL,
  PRIMARY KEY (session_id, seq)) WITHOUT ROWID`;
const SELECT = 'SELECT seq, t_ns, wall, thread, kind, probe, pc, func, file, line, data FROM events WHERE session_id = ? ORDER BY seq';

interface Timing { ms: number; cpuMs: number }

function timed(fn: () => void): Timing {
  globalThis.gc?.();
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  fn();
  const ms = performance.now() - t0;
  const c = process.cpuUsage(cpu);
  return { ms, cpuMs: (c.user + c.system) / 1000 };
}

function best(list: Timing[]): Timing {
  return { ms: Math.min(...list.map((t) => t.ms)), cpuMs: Math.min(...list.map((t) => t.cpuMs)) };
}

function bare(dir: string, rep: number, n: number): { ingest: Timing; read: Timing } {
  const db = new Database(join(dir, `bare-${rep}.db`));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec(EVENTS_DDL);
  const ins = db.prepare('INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)');
  const ingest = timed(() => db.transaction(() => {
    for (let i = 0; i < n; i++) {
      const e = syntheticEvent(i);
      ins.run(1, i, e.t_ns, e.wall, e.thread, e.kind, e.probe, e.pc, e.func, e.file, e.line, JSON.stringify(e.data));
    }
  })());
  let count = 0;
  const read = timed(() => {
    for (const r of db.prepare(SELECT).iterate(1) as IterableIterator<{ data: unknown }>) {
      r.data = JSON.parse(r.data as string);
      count++;
    }
  });
  db.close();
  if (count !== n) throw new Error(`bare read ${count} of ${n} rows`);
  return { ingest, read };
}

function throughStore(dir: string, rep: number, n: number): { ingest: Timing; read: Timing } {
  const store = TraceStore.open(join(dir, `store-${rep}.db`));
  try {
    const id = store.createSession({ label: 'bench', origin: 'live', profile: null,
      target: { kind: 'minimig', binary: null, build_id: null, qemu_version: null, variant: 'unknown', status_table: '4.2' } });
    const ingest = timed(() => {
      const w = new SessionWriter(store, id);
      for (let i = 0; i < n; i++) w.push(syntheticEvent(i));
      w.close();
    });
    let count = 0;
    const read = timed(() => {
      for (const _ of store.iterateEvents(id)) count++;
    });
    if (count !== n) throw new Error(`the store read back ${count} of ${n} events`);
    return { ingest, read };
  } finally {
    store.close();
  }
}

export async function benchStore(n = 1_000_000): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'migrace-bench-'));
  try {
    const base: Array<{ ingest: Timing; read: Timing }> = [];
    const ours: Array<{ ingest: Timing; read: Timing }> = [];
    for (let rep = 0; rep < REPS; rep++) {
      base.push(bare(dir, rep, n));
      ours.push(throughStore(dir, rep, n));
    }
    const row = (what: 'ingest' | 'read', name: string): BenchRow => {
      const b = best(base.map((x) => x[what]));
      const o = best(ours.map((x) => x[what]));
      return {
        name, baselineMs: b.ms, ms: o.ms, ratio: o.ms / b.ms,
        note: `cpu ${o.cpuMs.toFixed(0)} ms vs ${b.cpuMs.toFixed(0)} ms (ratio ${(o.cpuMs / b.cpuMs).toFixed(2)}); ${Math.round(n / (o.ms / 1000))} events/s; best of ${REPS}`,
      };
    };
    return [
      row('ingest', `store ingest ${n} events (SessionWriter)`),
      row('read', `store read ${n} events (iterateEvents)`),
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
