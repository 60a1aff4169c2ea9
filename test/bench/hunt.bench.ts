import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { hunt } from '../../analyzer/hunt.js';
import { withStaticReadPoints } from '../../cli/hunt.js';
import { replay } from '../../analyzer/replay.js';
import { builtinSchedule } from '../../analyzer/schedule.js';
import { discoverProfile } from '../../recorder/probes/discover.js';
import { minimigProfile } from '../../recorder/probes/minimig.js';
import type { Profile } from '../../recorder/probes/profile.js';
import { minimigDir, prepareMinimig } from '../../recorder/targets/minimig.js';
import { prepareQemuPair } from '../../recorder/targets/qemu.js';
import type { PreparedTarget } from '../../recorder/targets/types.js';
import { TraceStore } from '../../trace/store.js';
import { bookwormQemu } from '../helpers/qemu-binaries.js';
import type { BenchRow } from './store.bench.js';

/*
 * A precopy hunt per build against one plain replay of the same build, in
 * the same run: cells, seconds per cell and for the whole hunt. The target
 * is a precopy hunt of one build in under 60 s on a 2-core machine; the
 * load of the machine is printed with every row (other jobs share it).
 */

type Launch = (purpose?: 'start' | 'baseline' | 'cell') => Promise<{ target: PreparedTarget; profile: Profile }>;

function load(): string {
  return `load ${loadavg().map((l) => l.toFixed(1)).join(' ')} on ${readFileSync('/proc/cpuinfo', 'utf8').match(/^processor/gm)?.length ?? '?'} cores`;
}

async function benchBuild(name: string, kind: 'minimig' | 'qemu', launch: Launch, dynamic: boolean): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'migrace-bench-hunt-'));
  const store = TraceStore.open(join(dir, 'b.db'));
  try {
    const { target, profile } = await launch();
    const plain = await replay({ store, target, profile, schedule: builtinSchedule('lp1994002'), label: 'bench plain replay' });
    if (plain.state !== 'complete') throw new Error(`the plain replay on ${name} aborted: ${plain.error}`);
    const r = await hunt({
      store, kind, prepare: launch, scenarios: ['precopy'], dynamic, cellTimeoutMs: 90_000, blockedAfterMs: 1_500,
      schedulesDir: () => null, label: `bench ${name}`, invocation: null,
    });
    const t = r.view.data.timing!;
    const cells = r.view.cells.filter((c) => c.session_id !== null).length;
    const perCell = t.cells_ms / Math.max(1, cells);
    const what = `${name} precopy${dynamic ? ' --dynamic' : ''}`;
    return [
      { name: `hunt ${what}: per cell`, baselineMs: plain.wallMs, ms: perCell, ratio: perCell / plain.wallMs,
        note: `${cells} cells (${r.view.data.rows.length} read points x ${r.view.data.columns.length} transitions + controls); baseline: one plain lp1994002 replay; ${load()}` },
      { name: `hunt ${what}: whole hunt`, baselineMs: plain.wallMs, ms: t.total_ms, ratio: t.total_ms / plain.wallMs,
        note: `baselines ${(t.baselines_ms / 1000).toFixed(1)} s, cells ${(t.cells_ms / 1000).toFixed(1)} s; target < 60 s: ${t.total_ms < 60_000 ? 'met' : 'missed'}` },
    ];
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One build's rows, or a line saying why there are none: a run that fails under load keeps the other builds' rows. */
async function benchOrSay(name: string, kind: 'minimig' | 'qemu', launch: Launch, dynamic: boolean): Promise<BenchRow[]> {
  try {
    return await benchBuild(name, kind, launch, dynamic);
  } catch (e) {
    process.stderr.write(`bench hunt: ${name}${dynamic ? ' --dynamic' : ''} gave no row: ${(e as Error).message} (${load()})\n`);
    return [];
  }
}

export async function benchHunt(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  // As `migrace hunt` does: the start gets discovery's read points of the binary, the runs minimig's own probes.
  const minimig: Launch = async (purpose) => {
    const target = await prepareMinimig({});
    const profile = minimigProfile(minimigDir(), target.binary, false);
    return { target, profile: purpose === 'start' ? await withStaticReadPoints(profile, target.binary, undefined, () => {}) : profile };
  };
  rows.push(...await benchOrSay('minimig', 'minimig', minimig, false));
  rows.push(...await benchOrSay('minimig', 'minimig', minimig, true));
  const q = bookwormQemu();
  if ('skip' in q) {
    process.stderr.write(`bench hunt: QEMU 7.2 skipped: ${q.skip}\n`);
    return rows;
  }
  const { profile } = await discoverProfile(q.path, { env: q.env });
  const qemu: Launch = async () => ({ target: await prepareQemuPair({ qemu: q.path, env: q.env, profile }), profile });
  rows.push(...await benchOrSay('QEMU 7.2', 'qemu', qemu, false));
  rows.push(...await benchOrSay('QEMU 7.2', 'qemu', qemu, true));
  return rows;
}
