/*
 * `npm run fuzz [-- --count N] [--seed S] [--html-every K] [TARGET...]`: every parser of
 * untrusted input fed N mutated real inputs (10,000 by default), in a
 * benchmark-style run outside the test suite (test/unit/fuzz.test.ts runs
 * a fixed-seed 500 of each). Prints one row per target: inputs, inputs per
 * second, accepted, refused with a clear error, findings, the slowest
 * input; then the peak RSS. A finding's input is saved under
 * test/fuzz/regressions/TARGET/ so every later run replays it; the exit
 * code is 1 when there was one.
 */
import { createHash } from 'node:crypto';
import { Campaign } from './campaign.js';
import { fuzzTargets, saveRegression } from './targets.js';

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
// HTML rendering costs a tenth of a second a session (the SVG layout): every 10th input by default.
const htmlEvery = Math.max(1, option('--html-every', 10));
const only = process.argv.slice(2);
let findings = 0;
process.stdout.write(`fuzz: ${count} inputs per target, seed ${seed}, HTML for every ${htmlEvery}th\n`);
for (const target of fuzzTargets()) {
  if (only.length > 0 && !only.includes(target.name)) continue;
  const c = await new Campaign(target, seed, htmlEvery).run(count);
  findings += c.findings.length;
  process.stdout.write(`${target.name.padEnd(15)} ${String(c.inputs).padStart(6)} inputs ${c.rate.toFixed(0).padStart(6)}/s  accepted ${String(c.accepted).padStart(6)}  refused ${String(c.refused).padStart(6)}  findings ${c.findings.length}  slowest ${c.slowestMs.toFixed(1)} ms (${c.slowest})\n`);
  const seenWhat = new Set<string>();
  for (const f of c.findings) {
    const name = `${createHash('sha1').update(f.text).digest('hex').slice(0, 12)}.txt`;
    const path = saveRegression(target, name, f.text);
    // One line per kind of finding; every input is saved.
    const kind = f.what.replace(/\d+/g, 'N').slice(0, 120);
    if (!seenWhat.has(kind)) process.stdout.write(`  finding (${f.input}, saved as ${path}): ${f.what}\n`);
    seenWhat.add(kind);
  }
}
process.stdout.write(`peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB\n`);
process.exitCode = findings > 0 ? 1 : 0;
