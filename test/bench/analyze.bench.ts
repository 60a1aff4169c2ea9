import { explore } from '../../analyzer/explore.js';
import { findInterleavings } from '../../analyzer/interleavings.js';
import type { TraceEvent } from '../../trace/schema.js';
import { syntheticPolling } from '../helpers/events.js';

/*
 * The analyzer against a plain loop over the same event array (a switch on
 * the kind and a running sum, the least any single pass must do). The ratio
 * is what detection, reply judging and finding construction cost per event;
 * it should stay flat from 10k to 1M events if the analyzer is linear.
 */

export interface BenchRow { name: string; baselineMs: number; ms: number; ratio: number; findings?: number }

function plainLoop(events: readonly TraceEvent[]): number {
  let acc = 0;
  for (const e of events) {
    switch (e.kind) {
      case 'transition': acc += e.seq; break;
      case 'read':
      case 'publish': acc ^= e.seq; break;
      case 'reply': acc += e.data.has_ram ? 1 : 2; break;
      default: acc++; break;
    }
  }
  return acc;
}

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) g();
}

/** Best of `runs`: the least disturbed by other load on the machine. */
function best(runs: number, fn: () => unknown): { ms: number; result: unknown } {
  let ms = Infinity;
  let result: unknown;
  for (let i = 0; i < runs; i++) {
    gc();
    const t0 = performance.now();
    result = fn();
    ms = Math.min(ms, performance.now() - t0);
  }
  return { ms, result };
}

export async function benchAnalyze(sizes: number[] = [10_000, 100_000, 1_000_000]): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  let sink = 0;
  for (const n of sizes) {
    const s = syntheticPolling(n);
    const runs = n >= 1_000_000 ? 2 : n >= 100_000 ? 3 : 10;
    const base = best(runs, () => plainLoop(s.events));
    sink += base.result as number;
    const label = n >= 1_000_000 ? `${n / 1_000_000}M` : `${n / 1_000}k`;
    const a = best(runs, () => findInterleavings(s.session, s.threads, s.events));
    const findings = (a.result as ReturnType<typeof findInterleavings>).findings.length;
    rows.push({ name: `findInterleavings ${label} events`, baselineMs: base.ms, ms: a.ms, ratio: a.ms / base.ms, findings });
    const x = best(runs, () => explore(s.session, s.threads, s.events));
    rows.push({
      name: `explore ${label} events`, baselineMs: base.ms, ms: x.ms, ratio: x.ms / base.ms,
      findings: (x.result as ReturnType<typeof explore>).hazards.length,
    });
  }
  // Keep the baseline's result alive so the loop is not optimized away.
  if (sink === -1) process.stderr.write('');
  return rows;
}
