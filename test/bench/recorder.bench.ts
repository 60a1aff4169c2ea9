import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { minimigProfile } from '../../recorder/probes/minimig.js';
import { QmpClient } from '../../recorder/qmp.js';
import { record } from '../../recorder/record.js';
import { track, waitGone } from '../../recorder/reaper.js';
import { minimigBinary, minimigDir, prepareMinimig } from '../../recorder/targets/minimig.js';
import { TraceStore } from '../../trace/store.js';
import type { BenchRow } from './store.bench.js';

const TRANSFER_MS = 3000;

/** Queries per second against minimig with no debugger: the baseline. */
async function baselineQueriesPerSecond(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'migrace-bench-'));
  const sock = join(dir, 'qmp.sock');
  const child = spawn(minimigBinary(false), ['-qmp', `unix:${sock},server,wait=off`, '--transfer-ms', String(TRANSFER_MS)], { stdio: 'ignore' });
  const untrack = track(child.pid!, 'bench minimig');
  try {
    const qmp = await QmpClient.connect(sock, { timeoutMs: 10_000 });
    await qmp.execute('migrate', { uri: 'tcp:127.0.0.1:0' });
    let n = 0;
    const t0 = performance.now();
    for (;;) {
      const r = await qmp.execute<{ status?: string }>('query-migrate');
      n++;
      if (r.ret.status === 'completed') break;
    }
    const s = (performance.now() - t0) / 1000;
    await qmp.execute('quit').catch(() => undefined);
    await qmp.close();
    return n / s;
  } finally {
    child.kill('SIGKILL');
    await waitGone(child.pid!, 3000);
    untrack();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The recorder polling as fast as it can (poll 1 ms): every query is three
 * probe hits (query, read, publish), each a gdb stop, evaluation and
 * continue. Rate = hits per second of recording; the per-hit cost is the
 * time a query costs more than without gdb, divided by its hits.
 */
export async function benchRecorder(): Promise<BenchRow[]> {
  const baseQps = await baselineQueriesPerSecond();
  const dir = mkdtempSync(join(tmpdir(), 'migrace-bench-'));
  const store = TraceStore.open(join(dir, 'b.db'));
  try {
    const target = await prepareMinimig({ transferMs: TRANSFER_MS });
    const profile = minimigProfile(minimigDir(), target.binary, false);
    const r = await record({ store, target, profile, label: 'bench', pollMs: 1 });
    if (r.state !== 'complete') throw new Error(`bench recording aborted: ${r.error}`);
    const events = store.events(r.sessionId);
    const hitsEv = events.filter((e) => e.probe !== null);
    const spanS = (hitsEv.at(-1)!.t_ns! - hitsEv[0].t_ns!) / 1e9;
    const hitsPerS = hitsEv.length / spanS;
    const recQps = r.queries / spanS;
    const perHitMs = ((1 / recQps - 1 / baseQps) * 1000) / 3;
    return [
      { name: 'recorder probe hits per second (minimig)', baselineMs: 1000 / baseQps, ms: 1000 / recQps, ratio: baseQps / recQps,
        note: `${Math.round(hitsPerS)} hits/s, ${perHitMs.toFixed(2)} ms added per hit; baseline ${Math.round(baseQps)} queries/s without gdb, ${Math.round(recQps)} with` },
      { name: 'one recorded migration of minimig (wall)', baselineMs: TRANSFER_MS, ms: r.wallMs, ratio: r.wallMs / TRANSFER_MS, note: `${r.events} events; baseline: the migration's own length` },
    ];
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
