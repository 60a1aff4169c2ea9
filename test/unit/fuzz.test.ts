import { describe, expect, it } from 'vitest';
import { Campaign } from '../fuzz/campaign.js';
import { fuzzTargets } from '../fuzz/targets.js';

/**
 * The fuzz run's fixed-seed subset (`npm run fuzz` runs 10,000 a parser):
 * 500 mutated real inputs for every parser of untrusted input, after the
 * inputs that once failed (test/fuzz/regressions). Each is accepted (and
 * renders), or refused with one clear line naming the file; nothing else.
 */

const COUNT = 500;
const SEED = 0x14f022;

describe('fuzz smoke: 500 fixed-seed mutations per parser, and every saved regression', () => {
  for (const target of fuzzTargets()) {
    it(target.name, async () => {
      expect(target.seeds.length).toBeGreaterThan(0);
      const c = await new Campaign(target, SEED, 50).run(COUNT);
      expect(c.findings.map((f) => `${f.input}: ${f.what}`)).toEqual([]);
      expect(c.inputs).toBe(COUNT + c.regressions);
      // Both outcomes occur: a mutator that only breaks, or never does, tests nothing.
      expect(c.accepted).toBeGreaterThan(0);
      expect(c.refused).toBeGreaterThan(0);
    }, 120_000);
  }
});
