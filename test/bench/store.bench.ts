import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SessionWriter, TraceStore } from '../../trace/store.js';
import type { NewEvent } from '../../trace/schema.js';

export interface BenchRow { name: string; baselineMs: number; ms: number; ratio: number; note?: string }

function syntheticEvent(i: number): NewEvent {
  return {
    kind: 'transition', t_ns: i * 1000, wall: null, thread: 1 + (i % 2), probe: 'transition', pc: '0x401136',
    func: 'migrate_set_state', file: 'minimig.c', line: 140,
    data: { addr: '0x4040a0', old: { value: 1, name: 'setup' }, new: { value: 4, name: 'active' } },
  };
}

/**
 * Ingest through the store (zod-free append, JSON data column, batched
 * transactions) against bare better-sqlite3 inserting rows of the same
 * width with a primary key in one transaction: the ratio is our overhead.
 */
export async function benchStore(n = 1_000_000): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'migrace-bench-'));
  try {
    const baseDb = new Database(join(dir, 'base.db'));
    baseDb.pragma('journal_mode = WAL');
    baseDb.exec('CREATE TABLE e (s INTEGER, seq INTEGER, t INTEGER, kind TEXT, data TEXT, PRIMARY KEY (s, seq)) WITHOUT ROWID');
    const ins = baseDb.prepare('INSERT INTO e VALUES (?, ?, ?, ?, ?)');
    const data = JSON.stringify(syntheticEvent(0).data);
    let t0 = performance.now();
    baseDb.transaction(() => {
      for (let i = 0; i < n; i++) ins.run(1, i, i * 1000, 'transition', data);
    })();
    const baselineMs = performance.now() - t0;
    baseDb.close();

    const store = TraceStore.open(join(dir, 'store.db'));
    const id = store.createSession({ label: 'bench', origin: 'live', profile: null,
      target: { kind: 'minimig', binary: null, build_id: null, qemu_version: null, variant: 'unknown', status_table: '4.2' } });
    t0 = performance.now();
    const w = new SessionWriter(store, id, { batchSize: 4096 });
    for (let i = 0; i < n; i++) w.push(syntheticEvent(i));
    w.close();
    const ingestMs = performance.now() - t0;

    t0 = performance.now();
    let count = 0;
    for (const _ of store.iterateEvents(id)) count++;
    const readMs = performance.now() - t0;
    store.close();
    if (count !== n) throw new Error(`read back ${count} of ${n} events`);
    return [
      { name: `store ingest ${n} events`, baselineMs, ms: ingestMs, ratio: ingestMs / baselineMs, note: `${Math.round(n / (ingestMs / 1000))} events/s` },
      { name: `store read+validate ${n} events`, baselineMs, ms: readMs, ratio: readMs / baselineMs, note: 'baseline: bare insert of the same rows' },
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
