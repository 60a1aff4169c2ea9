/*
 * One fuzz campaign over one target: its regressions first (inputs that
 * once failed, kept under test/fuzz/regressions), then `count` inputs the
 * seeded mutator makes from its seeds, each judged (targets.ts). A
 * campaign keeps its numbers in an object: inputs, accepted, refused,
 * findings with their inputs, the slowest input and the time spent.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TraceStore } from '../../trace/store.js';
import { mutate, Rng } from './mutate.js';
import { judge, regressionsOf, type FuzzTarget } from './targets.js';

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

  /** `htmlEvery`: render every Nth input's sessions to HTML too (regressions always). */
  constructor(readonly target: FuzzTarget, readonly seed: number, readonly htmlEvery = 1) {}

  /** Inputs a second over the campaign. */
  get rate(): number {
    return this.elapsedMs > 0 ? (this.inputs * 1000) / this.elapsedMs : 0;
  }

  async run(count: number): Promise<this> {
    const dir = mkdtempSync(join(tmpdir(), `migrace-fuzz-${this.target.name}-`));
    // The file name the parser sees, as a user's would be: every refusal must name it.
    const file = join(dir, `input-${this.target.name}.txt`);
    const store = TraceStore.open(join(dir, 'fuzz.db'));
    const started = performance.now();
    try {
      for (const r of regressionsOf(this.target)) {
        this.regressions++;
        await this.one(file, r.text, store, `regression ${r.name}`, true);
      }
      const rng = new Rng(this.seed);
      const texts = this.target.seeds.map((s) => s.text);
      for (let i = 0; i < count; i++) {
        const text = mutate(rng.pick(texts), rng, texts);
        await this.one(file, text, store, `seed ${this.seed} input ${i}`, i % this.htmlEvery === 0);
      }
    } finally {
      this.elapsedMs = performance.now() - started;
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
    return this;
  }

  private async one(file: string, text: string, store: TraceStore, input: string, html: boolean): Promise<void> {
    const t0 = performance.now();
    const v = await judge(this.target, file, text, store, html);
    const ms = performance.now() - t0;
    this.inputs++;
    if (v.accepted) this.accepted++;
    else this.refused++;
    if (v.finding) this.findings.push({ input, what: v.finding, text });
    if (ms > this.slowestMs) {
      this.slowestMs = ms;
      this.slowest = `${input} (${text.length} chars)`;
    }
  }
}
