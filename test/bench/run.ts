/**
 * `npm run bench`: speed targets live here, never in timed tests. Every
 * number is a ratio against a baseline measured in the same run on the same
 * machine, so results compare across machines.
 */
import { benchStore, type BenchRow } from './store.bench.js';

type Bench = { name: string; run: () => Promise<BenchRow[]> };

async function loadBenches(): Promise<Bench[]> {
  const benches: Bench[] = [{ name: 'store', run: () => benchStore() }];
  // Optional benches register themselves by file; a missing one is reported, not fatal.
  const optional: Array<[string, string, string]> = [
    ['analyzer', './analyze.bench.js', 'benchAnalyze'],
    ['reports', './reports.bench.js', 'benchReports'],
    ['recorder', './recorder.bench.js', 'benchRecorder'],
    ['perturb', './perturb.bench.js', 'benchPerturbation'],
    ['import', './import.bench.js', 'benchImport'],
    ['hunt', './hunt.bench.js', 'benchHunt'],
  ];
  for (const [name, file, fn] of optional) {
    try {
      const mod = (await import(file)) as Record<string, () => Promise<BenchRow[]>>;
      benches.push({ name, run: () => mod[fn]() });
    } catch (e) {
      process.stderr.write(`bench ${name}: not available (${(e as Error).message})\n`);
    }
  }
  return benches;
}

function fmt(n: number): string {
  return n >= 100 ? n.toFixed(0) : n.toFixed(2);
}

const only = process.argv.slice(2);
for (const bench of await loadBenches()) {
  if (only.length > 0 && !only.includes(bench.name)) continue;
  process.stderr.write(`running ${bench.name}...\n`);
  const rows = await bench.run();
  for (const r of rows) {
    const extra = Object.entries(r).filter(([k]) => !['name', 'baselineMs', 'ms', 'ratio'].includes(k)).map(([k, v]) => `${k}=${v}`).join(' ');
    process.stdout.write(`${bench.name.padEnd(9)} ${r.name.padEnd(48)} ${fmt(r.ms).padStart(9)} ms  baseline ${fmt(r.baselineMs).padStart(9)} ms  ratio ${r.ratio.toFixed(2).padStart(7)}  ${extra}\n`);
  }
}
