/*
 * `npm run fuzz [-- --count N] [--seed S] [--html-every K] [--jobs J] [--hang-after SECONDS] [TARGET...]`:
 * every parser of untrusted input fed N mutated real inputs (10,000 by
 * default), in a benchmark-style run outside the test suite
 * (test/unit/fuzz.test.ts runs a fixed-seed 500 of each in its own process).
 *
 *  - Each target's campaign runs in a worker thread (worker.ts), J of them
 *    at once (one a core, at most 2). The worker posts every outcome; this
 *    thread counts them (campaign.ts) and watches: an input without a
 *    verdict after --hang-after seconds (60) is a hang, and a worker that
 *    dies (an uncaught error, out of its heap) is a crash. Either is a
 *    finding on that input, and a new worker goes on from the next one.
 *  - Prints one row per target as it ends: inputs, inputs per second,
 *    accepted, refused with a clear error, findings, the slowest input, the
 *    largest heap; then the whole run's wall time and peak RSS.
 *  - A finding's input is saved under test/fuzz/regressions/TARGET/ so
 *    every later run replays it; the exit code is 1 when there was one.
 */
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { benchDir, Campaign, type Judged } from './campaign.js';
import { fuzzTargets, saveRegression, type FuzzTarget } from './targets.js';
import type { WorkerJob, WorkerNews } from './worker.js';

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 0) throw new Error(`${name} takes a whole number`);
  process.argv.splice(i, 2);
  return v;
}

const count = option('--count', 10_000);
const seed = option('--seed', 0x5eed14);
// HTML rendering costs 20-40 ms a session (a DOM for the SVG layout): every 10th input by default.
const htmlEvery = Math.max(1, option('--html-every', 10));
const jobs = Math.max(1, option('--jobs', Math.min(2, availableParallelism())));
// The slowest input of a run is under a second, at a load of 10 on two cores.
const hangMs = Math.max(1, option('--hang-after', 60)) * 1000;
// Far above what a campaign needs (under 100 MiB): an input that makes a parser grow without bound is a crash of its worker, not of the run.
const HEAP_MB = 1024;

const MiB = (bytes: number): string => `${(bytes / 1048576).toFixed(0)} MiB`;

/** How one worker ended: it judged every input, or it stopped on the input at `pos`. */
type WorkerEnd = { done: true; heapPeak: number } | { done: false; pos: number; what: string; ms: number };

/** Bench folders of running workers (on tmpfs, in memory): removed when the run is interrupted too. */
const benches = new Set<string>();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    for (const dir of benches) rmSync(dir, { recursive: true, force: true });
    process.exit(signal === 'SIGINT' ? 130 : 143);
  });
}

/** One worker over the target's inputs from `from` on; every outcome is added to `c` as it comes. */
function runWorker(c: Campaign, from: number): Promise<WorkerEnd> {
  const dir = benchDir(c.target);
  benches.add(dir);
  const job: WorkerJob = { target: c.target.name, seed, count, htmlEvery, from, dir };
  const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: job, resourceLimits: { maxOldGenerationSizeMb: HEAP_MB } });
  let next = from;
  let ready = false;
  let since = performance.now();
  return new Promise<WorkerEnd>((resolve) => {
    let ended: WorkerEnd | null = null;
    const end = (e: WorkerEnd): void => {
      if (ended) return;
      ended = e;
      clearInterval(watch);
      // terminate() also stops a worker caught in a loop; its bench folder goes once it has.
      void worker.terminate().finally(() => {
        rmSync(dir, { recursive: true, force: true });
        benches.delete(dir);
        resolve(e);
      });
    };
    // A worker that dies before its bench is open would die again at every input: the harness is broken, not a parser.
    const stuck = (what: string): WorkerEnd => (ready ? { done: false, pos: next, what, ms: performance.now() - since } : { done: false, pos: -1, what, ms: 0 });
    const watch = setInterval(() => {
      if (performance.now() - since > hangMs) end(stuck(`hang: no verdict after ${hangMs / 1000} s`));
    }, 1000);
    worker.on('message', (m: Judged | WorkerNews) => {
      if ('ready' in m) {
        ready = true;
        since = performance.now();
        return;
      }
      if ('done' in m) return end({ done: true, heapPeak: m.heapPeak });
      c.add(m);
      next = m.pos + 1;
      since = performance.now();
    });
    worker.on('error', (e) => end(stuck(`crash: ${String(e?.message ?? e).split('\n')[0]}`)));
    worker.on('exit', (code) => end(stuck(`crash: the worker exited with code ${code}`)));
  });
}

/** A target's campaign in workers: a worker lost on an input makes that input a finding, and the next worker starts after it. */
async function campaignOf(target: FuzzTarget): Promise<Campaign> {
  const c = new Campaign(target, seed, htmlEvery);
  const started = performance.now();
  for (let from = 0; ; ) {
    const e = await runWorker(c, from);
    if (e.done) {
      c.heapPeak = e.heapPeak;
      break;
    }
    if (e.pos < 0) throw new Error(`fuzz: the ${target.name} worker failed before its first input: ${e.what}`);
    let input = null;
    for (const i of c.inputsFrom(count)) {
      if (i.pos === e.pos) {
        input = i;
        break;
      }
    }
    // Lost after its last input: nothing left to judge.
    if (!input) break;
    c.add({ pos: input.pos, name: input.name, regression: input.regression, chars: input.text.length, accepted: false, finding: e.what, text: input.text, ms: e.ms });
    from = e.pos + 1;
  }
  c.elapsedMs = performance.now() - started;
  return c;
}

function report(c: Campaign): void {
  const heap = c.heapPeak === null ? '' : `  heap ${MiB(c.heapPeak)}`;
  process.stdout.write(`${c.target.name.padEnd(15)} ${String(c.inputs).padStart(6)} inputs ${c.rate.toFixed(0).padStart(6)}/s  accepted ${String(c.accepted).padStart(6)}  refused ${String(c.refused).padStart(6)}  findings ${c.findings.length}  slowest ${c.slowestMs.toFixed(1)} ms (${c.slowest})${heap}\n`);
  const seenWhat = new Set<string>();
  for (const f of c.findings) {
    const name = `${createHash('sha1').update(f.text).digest('hex').slice(0, 12)}.txt`;
    const path = saveRegression(c.target, name, f.text);
    // One line per kind of finding; every input is saved.
    const kind = f.what.replace(/\d+/g, 'N').slice(0, 120);
    if (!seenWhat.has(kind)) process.stdout.write(`  finding (${f.input}, saved as ${path}): ${f.what}\n`);
    seenWhat.add(kind);
  }
}

const only = process.argv.slice(2);
const targets = fuzzTargets();
const unknown = only.filter((n) => !targets.some((t) => t.name === n));
if (unknown.length > 0) throw new Error(`no fuzz target ${unknown.join(', ')} (targets: ${targets.map((t) => t.name).join(', ')})`);
const queue = targets.filter((t) => only.length === 0 || only.includes(t.name));
process.stdout.write(`fuzz: ${count} inputs per target, seed ${seed}, HTML for every ${htmlEvery}th, ${jobs} at once, a hang after ${hangMs / 1000} s\n`);
const started = performance.now();
let findings = 0;
let inputs = 0;
// The targets in their order, each taken by the next free job: the slow importers come first.
await Promise.all(Array.from({ length: Math.min(jobs, queue.length) }, async () => {
  for (let t = queue.shift(); t; t = queue.shift()) {
    const c = await campaignOf(t);
    findings += c.findings.length;
    inputs += c.inputs;
    report(c);
  }
}));
process.stdout.write(`${inputs} inputs in ${((performance.now() - started) / 1000).toFixed(0)} s, ${findings} findings; peak RSS ${MiB(process.resourceUsage().maxRSS * 1024)}\n`);
process.exitCode = findings > 0 ? 1 : 0;
