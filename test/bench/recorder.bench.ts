import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Backend } from '../../recorder/record.js';
import { dieWithParent, track, waitGone } from '../../recorder/reaper.js';
import { resolveProfile } from '../../recorder/uprobe/resolve.js';
import { UprobeGroup, uprobeUnavailable } from '../../recorder/uprobe/tracefs.js';
import { TraceStore } from '../../trace/store.js';
import { HITS_PER_ROUND, recordStress, stressTarget, stressTimes } from '../helpers/stress.js';
import type { BenchRow } from './store.bench.js';

/**
 * Probe hits per second of each recording backend on minimig --stress (a
 * loop of migrate_set_state and query-migrate's read and publish, four
 * hits a round, nothing else), against two ceilings measured in the same
 * run on the same binary and the same four points:
 *
 * - gdb's own: breakpoints with `commands` / `silent` / `continue`, which
 *   print nothing and store nothing (what any gdb-based recorder can reach);
 * - the kernel's: a bare uprobe group with the same fetch arguments, read
 *   by `cat trace_pipe >/dev/null` (what the uprobe backend can reach).
 *
 * Each run's cost per hit is its loop time (minimig measures its own loop)
 * less the loop without any probe, divided by the hits. Rounds differ per
 * backend so that each run lasts seconds; rates are per hit, so they
 * compare. Targets (issue 12): uprobe <= 25 us per hit and >= 20x the gdb
 * ceiling's rate; gdb-fast >= 2/3 of the ceiling's rate.
 */

const ROUNDS: Record<Backend | 'bare' | 'gdb-ceiling' | 'kernel', number> = {
  bare: 200_000, kernel: 50_000, uprobe: 50_000, 'gdb-ceiling': 5_000, 'gdb-fast': 5_000, gdb: 500,
};

/** One stress loop: its wall and CPU seconds (a uprobe's kernel work is the target's system time; a gdb stop is not). */
interface Loop { seconds: number; cpuSeconds: number; hits: number; note?: string }

/** Run a program to its end, collecting stdout; the stress line gives the loop time. */
function runToEnd(file: string, args: string[], what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const cmd = dieWithParent(file, args);
    const child = spawn(cmd.file, cmd.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const untrack = child.pid ? track(child.pid, what) : () => undefined;
    let out = '';
    child.stdout!.on('data', (d) => { out += String(d); });
    child.stderr!.on('data', (d) => { out += String(d); });
    child.on('error', reject);
    child.on('exit', (code) => {
      untrack();
      if (code === 0) resolve(out);
      else reject(new Error(`${what} exited with ${code}: ${out.slice(-400)}`));
    });
  });
}

function loopOf(out: string, rounds: number, what: string): Loop {
  const times = stressTimes(out);
  if (times === null) throw new Error(`${what}: no stress line in ${JSON.stringify(out.slice(-300))}`);
  return { ...times, hits: rounds * HITS_PER_ROUND };
}

async function bareLoop(): Promise<Loop> {
  const { target } = stressTarget(ROUNDS.bare);
  try {
    return loopOf(await runToEnd(target.binary, target.args, 'bench minimig'), ROUNDS.bare, 'bare minimig');
  } finally {
    await target.dispose();
  }
}

/** gdb's ceiling: each of the profile's locations a breakpoint whose commands are silent and continue. */
async function gdbCeiling(): Promise<Loop> {
  const rounds = ROUNDS['gdb-ceiling'];
  const { target, profile } = stressTarget(rounds);
  const dir = mkdtempSync(join(tmpdir(), 'migrace-bench-'));
  try {
    const script = join(dir, 'ceiling.gdb');
    const lines = ['set pagination off', 'set confirm off'];
    for (const p of profile.probes) {
      for (const loc of p.locations) lines.push(`break ${loc}`, 'commands', 'silent', 'continue', 'end');
    }
    lines.push(`run ${target.args.join(' ')}`, 'quit');
    writeFileSync(script, `${lines.join('\n')}\n`);
    const out = await runToEnd('gdb', ['-nx', '-batch', '-x', script, target.binary], 'bench gdb ceiling');
    return loopOf(out, rounds, 'gdb ceiling');
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await target.dispose();
  }
}

/** The kernel's ceiling: the uprobe backend's own definitions, enabled, drained by cat into /dev/null. */
async function kernelCeiling(): Promise<Loop> {
  const rounds = ROUNDS.kernel;
  const { target, profile } = stressTarget(rounds);
  const resolution = await resolveProfile(target.binary, profile);
  const group = UprobeGroup.open(resolution.probes.flatMap((p) => p.defs), { bufferKb: 8192 });
  let reader: ReturnType<typeof spawn> | null = null;
  try {
    group.enable();
    reader = spawn('/bin/sh', ['-c', 'exec cat "$0" >/dev/null', group.pipePath], { stdio: 'ignore' });
    const untrack = track(reader.pid!, 'bench trace_pipe cat');
    try {
      const loop = loopOf(await runToEnd(target.binary, target.args, 'bench minimig'), rounds, 'kernel ceiling');
      return { ...loop, note: `lost ${group.lostEvents()}` };
    } finally {
      reader.kill('SIGKILL');
      await waitGone(reader.pid!, 3000);
      untrack();
    }
  } finally {
    group.remove();
    await target.dispose();
  }
}

async function throughBackend(backend: Backend, store: TraceStore): Promise<Loop> {
  const rounds = ROUNDS[backend];
  const r = await recordStress(store, backend, { rounds });
  if (r.state !== 'complete') throw new Error(`stress recording through ${backend} aborted: ${r.error}`);
  const stored = store.eventCount(r.sessionId);
  return {
    seconds: r.loopS, cpuSeconds: r.loopCpuS, hits: rounds * HITS_PER_ROUND,
    note: `${r.hits} hits seen, ${stored} stored, lost ${r.lostEvents}; recorder ${(r.lagMs).toFixed(0)} ms behind at exit, ${(r.totalMs / 1000).toFixed(1)} s in all`,
  };
}

const usPerHit = (l: Loop, bare: Loop): number => ((l.seconds / l.hits) - (bare.seconds / bare.hits)) * 1e6;
const cpuUsPerHit = (l: Loop, bare: Loop): number => ((l.cpuSeconds / l.hits) - (bare.cpuSeconds / bare.hits)) * 1e6;
const hitsPerS = (l: Loop): number => l.hits / l.seconds;

export async function benchRecorder(): Promise<BenchRow[]> {
  const noUprobes = uprobeUnavailable();
  const bare = await bareLoop();
  const ceiling = await gdbCeiling();
  const kernel = noUprobes ? null : await kernelCeiling();
  const dir = mkdtempSync(join(tmpdir(), 'migrace-bench-'));
  const store = TraceStore.open(join(dir, 'b.db'));
  const runs: Array<[Backend, Loop]> = [];
  try {
    for (const backend of (noUprobes ? ['gdb', 'gdb-fast'] : ['gdb', 'gdb-fast', 'uprobe']) as Backend[]) {
      runs.push([backend, await throughBackend(backend, store)]);
    }
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const describe = (l: Loop): string => `${Math.round(hitsPerS(l))} hits/s, ${usPerHit(l, bare).toFixed(1)} us per hit`;
  // Where the kernel does the work (uprobes), the target's CPU time per hit is what a loaded machine does not inflate.
  const cpu = (l: Loop): string => `target CPU ${cpuUsPerHit(l, bare).toFixed(1)} us per hit (${(l.cpuSeconds / l.seconds).toFixed(2)} of the wall)`;
  const rows: BenchRow[] = [];
  const row = (name: string, l: Loop, base: Loop, baseName: string, target: string): void => {
    const ms = usPerHit(l, bare) / 1000;
    const baselineMs = usPerHit(base, bare) / 1000;
    rows.push({ name, baselineMs, ms, ratio: ms / baselineMs, note: `${describe(l)} vs ${baseName} ${describe(base)}; ${target}${l.note ? `; ${l.note}` : ''}` });
  };
  rows.push({ name: 'stress loop, no probes (per hit)', baselineMs: 0, ms: (bare.seconds / bare.hits) * 1000, ratio: 1, note: `${bare.hits} hit points in ${bare.seconds.toFixed(3)} s` });
  if (kernel) row('kernel: bare uprobes + cat trace_pipe (per hit)', kernel, ceiling, 'gdb ceiling', `rate ${(hitsPerS(kernel) / hitsPerS(ceiling)).toFixed(1)}x the gdb ceiling; ${cpu(kernel)}`);
  for (const [backend, l] of runs) {
    const rate = hitsPerS(l) / hitsPerS(ceiling);
    const target = backend === 'uprobe'
      ? `target <= 25 us/hit and >= 20x the ceiling's rate: ${usPerHit(l, bare).toFixed(1)} us, ${rate.toFixed(1)}x`
      : backend === 'gdb-fast' ? `target >= 0.67 of the ceiling's rate: ${rate.toFixed(2)}` : `rate ${rate.toFixed(2)} of the ceiling`;
    row(`record --backend ${backend} (per hit)`, l, ceiling, 'gdb ceiling', target);
    if (backend === 'uprobe') rows.at(-1)!.note += `; ${cpu(l)}`;
    if (backend === 'uprobe' && kernel) row('record --backend uprobe vs the kernel (per hit)', l, kernel, 'kernel', `${(hitsPerS(l) / hitsPerS(kernel)).toFixed(2)} of the kernel's rate`);
  }
  return rows;
}
