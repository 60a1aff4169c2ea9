import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { discoverProfile } from '../../recorder/probes/discover.js';
import { QmpClient } from '../../recorder/qmp.js';
import { recordAttached, type Backend } from '../../recorder/record.js';
import { dieWithParent, track, waitGone } from '../../recorder/reaper.js';
import { makePrivateDir } from '../../recorder/targets/private-dir.js';
import { startDestination } from '../../recorder/targets/qemu.js';
import { uprobeUnavailable } from '../../recorder/uprobe/tracefs.js';
import { TraceStore } from '../../trace/store.js';
import { bookwormQemu } from '../helpers/qemu-binaries.js';
import type { BenchRow } from './store.bench.js';
import { sleep } from '../../trace/async.js';

/**
 * How much a recorder disturbs the QEMU it records: the latency of
 * query-migrate as its own client sees it (p50 and p99 of QUERIES
 * sequential queries), on Debian's QEMU 7.2 in the middle of a slow
 * migration, with nothing attached and then with `record --attach` (passive:
 * migrace has no monitor of its own, the probes see the client's queries)
 * through each backend. Every query is three probe hits: query, read,
 * publish.
 */

const QUERIES = 1000;

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function latencies(qmp: QmpClient): Promise<{ p50: number; p99: number }> {
  const ms: number[] = [];
  for (let i = 0; i < QUERIES; i++) {
    const t0 = performance.now();
    const r = await qmp.execute<{ status?: string }>('query-migrate');
    ms.push(performance.now() - t0);
    if (r.ret.status !== 'active') throw new Error(`the migration is ${r.ret.status} after ${i} queries: the bench needs it active throughout`);
  }
  ms.sort((a, b) => a - b);
  return { p50: percentile(ms, 50), p99: percentile(ms, 99) };
}

export async function benchPerturbation(): Promise<BenchRow[]> {
  const bin = bookwormQemu();
  if ('skip' in bin) throw new Error(`QEMU 7.2: ${bin.skip}`);
  const noUprobes = uprobeUnavailable();
  const { profile } = await discoverProfile(bin.path, { env: bin.env });
  const dir = makePrivateDir('migrace-bench-perturb');
  const dest = await startDestination({ qemu: bin.path, env: bin.env, profile, memory: '1024' }, dir.path);
  const sock = join(dir.path, 'user.sock');
  const cmd = dieWithParent(bin.path, ['-nodefaults', '-display', 'none', '-S', '-m', '1024', '-name', 'guest,debug-threads=on',
    '-qmp', `unix:${sock},server=on,wait=off`]);
  const qemu = spawn(cmd.file, cmd.args, { stdio: 'ignore', env: { ...process.env, ...bin.env } });
  const untrack = track(qemu.pid!, 'bench qemu');
  const store = TraceStore.open(join(dir.path, 'b.db'));
  const rows: BenchRow[] = [];
  let qmp: QmpClient | null = null;
  try {
    qmp = await QmpClient.connect(sock, { timeoutMs: 15_000 });
    // 16 KiB/s: 1 GiB of zero pages (a few bytes each on the wire) stays active for minutes, longer than the bench runs.
    await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 16 * 1024 });
    await qmp.execute('migrate', { uri: dest.uri });
    for (let i = 0; (await qmp.execute<{ status?: string }>('query-migrate')).ret.status !== 'active'; i++) {
      if (i > 500) throw new Error('the migration did not become active within 5 s');
      await sleep(10);
    }
    const base = await latencies(qmp);
    rows.push({ name: `query-migrate p50, QEMU 7.2, no recorder`, baselineMs: base.p50, ms: base.p50, ratio: 1, note: `p99 ${base.p99.toFixed(3)} ms over ${QUERIES} queries` });
    for (const backend of (noUprobes ? ['gdb', 'gdb-fast'] : ['gdb', 'gdb-fast', 'uprobe']) as Backend[]) {
      const stop = new AbortController();
      let started!: () => void;
      const ready = new Promise<void>((r) => { started = r; });
      const recording = recordAttached({
        store, pid: qemu.pid!, binary: bin.path, qmpPath: null, profile, label: `perturbation ${backend}`, backend, signal: stop.signal,
        progress: (m) => { if (m.includes('until the migration ends')) started(); },
      });
      await Promise.race([ready, recording.then((r) => { throw new Error(`${backend} ended before the queries: ${r.error}`); })]);
      let got: { p50: number; p99: number };
      try {
        got = await latencies(qmp);
      } finally {
        stop.abort('bench done');
      }
      const r = await recording;
      if (r.state !== 'complete') throw new Error(`perturbation recording through ${backend} aborted: ${r.error}`);
      const queriesSeen = store.events(r.sessionId).filter((e) => e.kind === 'query-begin').length;
      rows.push({ name: `query-migrate p50, QEMU 7.2, --backend ${backend}`, baselineMs: base.p50, ms: got.p50, ratio: got.p50 / base.p50,
        note: `p99 ${got.p99.toFixed(3)} ms (no recorder ${base.p99.toFixed(3)}, ratio ${(got.p99 / base.p99).toFixed(2)}); ${queriesSeen} queries recorded, ${r.hits} hits, lost ${r.lostEvents}` });
    }
  } finally {
    await qmp?.execute('quit').catch(() => undefined);
    await qmp?.close().catch(() => undefined);
    if (!(await waitGone(qemu.pid!, 5000))) qemu.kill('SIGKILL');
    untrack();
    await dest.stop();
    store.close();
    dir.remove();
  }
  return rows;
}
