/*
 * One fuzz campaign over one target, in three parts:
 *
 *  - fuzzInputs(): the inputs in order, each with its position: the
 *    target's regressions first (inputs that once failed, kept under
 *    test/fuzz/regressions), then `count` inputs the seeded mutator makes
 *    from its seeds. The order is fixed by the seed, so a run that lost its
 *    worker to a hang (run.ts) resumes at the next position.
 *  - FuzzBench: where inputs are judged (targets.ts): a folder with the
 *    input file the parser reads and the store accepted imports go to.
 *  - Campaign: the numbers (inputs, accepted, refused, findings with their
 *    inputs, the slowest input, the time spent), kept as verdicts come in:
 *    from run() in this process (the unit suite), or from a worker (run.ts).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TraceStore } from '../../trace/store.js';
import { mutate, Rng } from './mutate.js';
import { judge, regressionsOf, type FuzzTarget } from './targets.js';

export interface FuzzInput {
  pos: number;
  /** "regression NAME" or "seed S input I". */
  name: string;
  regression: boolean;
  text: string;
  /** Render accepted sessions to HTML too. */
  html: boolean;
}

/** `htmlEvery`: every Nth mutated input is rendered to HTML too (regressions always). */
export function* fuzzInputs(target: FuzzTarget, seed: number, count: number, htmlEvery: number): Generator<FuzzInput> {
  let pos = 0;
  for (const r of regressionsOf(target)) yield { pos: pos++, name: `regression ${r.name}`, regression: true, text: r.text, html: true };
  const rng = new Rng(seed);
  const texts = target.seeds.map((s) => s.text);
  for (let i = 0; i < count; i++) {
    const text = mutate(rng.pick(texts), rng, texts);
    yield { pos: pos++, name: `seed ${seed} input ${i}`, regression: false, text, html: i % htmlEvery === 0 };
  }
}

/**
 * A folder for one bench, on tmpfs where there is one: the input file is
 * rewritten for every input, and on ext4 a file truncated and written again
 * is flushed to disk at its close (auto_da_alloc), as are the fuzz store's
 * WAL checkpoints. That was 2 ms of disk wait an input, which measured the
 * disk rather than the parser; what is judged is the same on either.
 */
export function benchDir(target: FuzzTarget): string {
  const prefix = `migrace-fuzz-${target.name}-`;
  if (existsSync('/dev/shm')) {
    try {
      return mkdtempSync(join('/dev/shm', prefix));
    } catch {
      /* not writable here: the usual temp folder */
    }
  }
  return mkdtempSync(join(tmpdir(), prefix));
}

/** The outcome of one input, as a worker sends it (the text only with a finding: it is what gets saved). */
export interface Judged {
  pos: number;
  name: string;
  regression: boolean;
  chars: number;
  accepted: boolean;
  finding: string | null;
  text: string | null;
  ms: number;
}

export class FuzzBench {
  /** The file name the parser sees, as a user's would be: every refusal must name it. */
  readonly file: string;
  private readonly store: TraceStore;

  constructor(readonly target: FuzzTarget, dir: string) {
    this.file = join(dir, `input-${target.name}.txt`);
    this.store = TraceStore.open(join(dir, 'fuzz.db'));
  }

  async judge(input: FuzzInput): Promise<Judged> {
    const t0 = performance.now();
    const v = await judge(this.target, this.file, input.text, this.store, input.html);
    const ms = performance.now() - t0;
    return {
      pos: input.pos, name: input.name, regression: input.regression, chars: input.text.length,
      accepted: v.accepted, finding: v.finding, text: v.finding === null ? null : input.text, ms,
    };
  }

  close(): void {
    this.store.close();
  }
}

export interface Finding {
  /** "regression NAME" or "seed S input I". */
  input: string;
  what: string;
  text: string;
}

export class Campaign {
  inputs = 0;
  accepted = 0;
  refused = 0;
  regressions = 0;
  readonly findings: Finding[] = [];
  slowestMs = 0;
  slowest = '';
  elapsedMs = 0;
  /** The largest V8 heap (bytes) the judging grew to, when a worker measured it. */
  heapPeak: number | null = null;

  /** `htmlEvery`: render every Nth input's sessions to HTML too (regressions always). */
  constructor(readonly target: FuzzTarget, readonly seed: number, readonly htmlEvery = 1) {}

  /** Inputs a second over the campaign. */
  get rate(): number {
    return this.elapsedMs > 0 ? (this.inputs * 1000) / this.elapsedMs : 0;
  }

  inputsFrom(count: number): Generator<FuzzInput> {
    return fuzzInputs(this.target, this.seed, count, this.htmlEvery);
  }

  add(j: Judged): void {
    this.inputs++;
    if (j.regression) this.regressions++;
    if (j.accepted) this.accepted++;
    else this.refused++;
    if (j.finding !== null) this.findings.push({ input: j.name, what: j.finding, text: j.text ?? '' });
    if (j.ms > this.slowestMs) {
      this.slowestMs = j.ms;
      this.slowest = `${j.name} (${j.chars} chars)`;
    }
  }

  /** Judge every input here, in this process (a hang here is a hang of the caller: run.ts runs campaigns in workers). */
  async run(count: number): Promise<this> {
    const dir = benchDir(this.target);
    const bench = new FuzzBench(this.target, dir);
    const started = performance.now();
    try {
      for (const input of this.inputsFrom(count)) this.add(await bench.judge(input));
    } finally {
      this.elapsedMs = performance.now() - started;
      bench.close();
      rmSync(dir, { recursive: true, force: true });
    }
    return this;
  }
}
