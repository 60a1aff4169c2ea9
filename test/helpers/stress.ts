import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MigraceError } from '../../trace/errors.js';
import type { TraceStore } from '../../trace/store.js';
import { sleep } from '../../trace/async.js';
import { minimigProfile } from '../../recorder/probes/minimig.js';
import type { Profile } from '../../recorder/probes/profile.js';
import { endRun, openRun, startBackend, type Backend } from '../../recorder/record.js';
import { minimigBinary, minimigDir } from '../../recorder/targets/minimig.js';
import { makePrivateDir } from '../../recorder/targets/private-dir.js';
import type { PreparedTarget } from '../../recorder/targets/types.js';

/**
 * minimig's stress mode (`--stress N`: N rounds of four probe hits, no
 * monitor) recorded through a backend, for the benchmarks and for tests
 * that need a burst of hits: the target, its profile, one recording from
 * start to a closed session, and the loop time minimig prints.
 */

export const HITS_PER_ROUND = 4;

export function stressTarget(rounds: number, patched = false): { target: PreparedTarget; profile: Profile } {
  const dir = makePrivateDir('migrace-stress');
  const binary = minimigBinary(patched);
  const target: PreparedTarget = {
    info: { kind: 'minimig', binary, build_id: null, qemu_version: null, variant: patched ? 'patched' : 'unpatched', status_table: '4.2' },
    binary,
    args: ['--stress', String(rounds)],
    env: {},
    qmpPath: '',
    migrateUri: '',
    logPath: join(dir.path, 'target.log'),
    setup: [],
    dispose: async () => dir.remove(),
  };
  return { target, profile: minimigProfile(minimigDir(), binary, patched) };
}

/** The loop's own wall and CPU time (kernel time in its probes included), from the line minimig prints at the end of a stress run. */
export function stressTimes(log: string): { seconds: number; cpuSeconds: number } | null {
  const m = /stress rounds=\d+ hits=\d+ seconds=([\d.]+) cpu_seconds=([\d.]+)/.exec(log);
  return m ? { seconds: Number(m[1]), cpuSeconds: Number(m[2]) } : null;
}

export interface StressRecording {
  sessionId: number;
  state: 'complete' | 'aborted';
  error: string | null;
  hits: number;
  lostEvents: number;
  /** The target's loop, as it measured itself: wall and CPU seconds. */
  loopS: number;
  loopCpuS: number;
  /** From starting the backend to the session closed with every hit stored (gdb's start and end included). */
  totalMs: number;
  /** From the target's exit to the last hit pushed to the writer: how far the recorder was behind. */
  lagMs: number;
}

/** Record `rounds` rounds of the stress mode through `backend` into `store`. */
export async function recordStress(store: TraceStore, backend: Backend, opts: { rounds: number; patched?: boolean; bufferKb?: number; gdbPath?: string }): Promise<StressRecording> {
  const { target, profile } = stressTarget(opts.rounds, opts.patched);
  const { sessionId, writer } = await openRun(store, target, {
    label: `stress ${opts.rounds} through ${backend}`, origin: 'live', target: target.info, profile, meta: { backend, stress_rounds: opts.rounds },
  });
  const began = performance.now();
  let live = null;
  let error: MigraceError | null = null;
  let log = '';
  let exitedAt = began;
  let drainedAt = began;
  try {
    live = await startBackend(backend, { store, sessionId, writer, target, profile, gdbPath: opts.gdbPath, bufferKb: opts.bufferKb });
    // The stress run ends by exiting: that is its scenario, not a failure.
    live.expectExit();
    while (!live.exited && !live.failure) await sleep(2);
    exitedAt = performance.now();
    if (live.failure) throw live.failure;
    await live.drain();
    drainedAt = performance.now();
    log = readFileSync(target.logPath, 'utf8');
  } catch (e) {
    error = e instanceof MigraceError ? e : new MigraceError('TARGET_EXITED', String(e));
  } finally {
    error = await endRun({ store, sessionId, writer, target, live, qmp: null }, error);
  }
  const storedAt = performance.now();
  const loop = stressTimes(log);
  if (!error && loop === null) error = new MigraceError('TARGET_EXITED', `minimig --stress printed no loop time: ${JSON.stringify(log.slice(-200))}`);
  return {
    sessionId, state: error ? 'aborted' : 'complete', error: error?.message ?? null,
    hits: live?.hits ?? 0, lostEvents: live?.lostEvents ?? 0,
    loopS: loop?.seconds ?? 0, loopCpuS: loop?.cpuSeconds ?? 0, totalMs: storedAt - began, lagMs: drainedAt - exitedAt,
  };
}
