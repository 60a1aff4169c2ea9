/*
 * A worker thread of `npm run fuzz` (run.ts): judges one target's inputs
 * from position `from` on, in a bench folder run.ts made: posts { ready }
 * once the bench is open, each outcome (a Judged) as it has it, then
 * { done, heapPeak }. run.ts counts
 * the outcomes, so when this worker hangs or dies on an input, nothing it
 * judged before is lost and the input it was on is known.
 */
import { getHeapStatistics } from 'node:v8';
import { parentPort, workerData } from 'node:worker_threads';
import { FuzzBench, fuzzInputs } from './campaign.js';
import { fuzzTargets } from './targets.js';

export interface WorkerJob {
  target: string;
  seed: number;
  count: number;
  htmlEvery: number;
  from: number;
  dir: string;
}

export type WorkerNews = { ready: true } | { done: true; heapPeak: number };

const job = workerData as WorkerJob;
const target = fuzzTargets().find((t) => t.name === job.target);
if (!target || !parentPort) throw new Error(`fuzz worker: no target ${job.target}, or not a worker`);
const port = parentPort;
const bench = new FuzzBench(target, job.dir);
port.postMessage({ ready: true } satisfies WorkerNews);
let heapPeak = 0;
try {
  for (const input of fuzzInputs(target, job.seed, job.count, job.htmlEvery)) {
    if (input.pos < job.from) continue;
    port.postMessage(await bench.judge(input));
    // Committed heap after each input: V8 keeps what an input grew it to for a while, so this sees most peaks.
    heapPeak = Math.max(heapPeak, getHeapStatistics().total_heap_size);
  }
} finally {
  bench.close();
}
port.postMessage({ done: true, heapPeak } satisfies WorkerNews);
