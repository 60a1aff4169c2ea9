/*
 * The seeded mutator of the fuzz runs: a small PRNG (mulberry32, so a seed
 * gives the same inputs on every machine) and the mutations, each a
 * function from text to text. They work on lines and on characters,
 * since every parser here reads lines first: lines dropped, doubled,
 * swapped, cut or spliced in from another seed, and characters flipped,
 * deleted or replaced by tokens that have broken parsers before (quotes,
 * backslashes, braces, control and bidi characters, numbers no type
 * holds, keys every JavaScript object inherits).
 */

/** mulberry32: 32 bits of state, enough for reproducible inputs. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  below(n: number): number {
    return Math.floor(this.next() * n);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)];
  }
}

/** Tokens that have broken parsers: syntax of the formats, escapes, numbers out of range, inherited keys. */
const TOKENS: readonly string[] = [
  '"', '\\', '\\"', '{', '}', '[', ']', '(', ')', ',', '=', ':', '@', '*', '^', '~', '&', '\t', '\r', '\0', '\x1b]0;X\x07', '\u202e',
  '\ufffd', '-1', '0', '4294967296', '9999999999999.620458', '1e309', 'NaN', '-0', '0x', '0xffffffffffffffff', 'null', 'true', '[]', '{}',
  '__proto__', 'constructor', 'toString', 'hasOwnProperty', '"__proto__":{}', 'setup x', 'active', 'completed', 'thread-id="1"',
  '*stopped,reason="breakpoint-hit"', 'migrate_set_state new state', '"id": "\t"', '{"return": {}}', 'x'.repeat(5000),
];

/** Up to `max` characters of `s` from `at`. */
function cut(s: string, at: number, max: number): string {
  return s.slice(at, at + max);
}

type Mutation = (text: string, rng: Rng, others: readonly string[]) => string;

function withLines(text: string, fn: (lines: string[]) => void): string {
  const lines = text.split('\n');
  fn(lines);
  return lines.join('\n');
}

const MUTATIONS: readonly Mutation[] = [
  // Characters.
  (t, r) => { const i = r.below(t.length + 1); return t.slice(0, i) + r.pick(TOKENS) + t.slice(i); },
  (t, r) => { const i = r.below(t.length + 1); return t.slice(0, i) + r.pick(TOKENS) + t.slice(i + 1 + r.below(8)); },
  (t, r) => { const i = r.below(t.length + 1); return t.slice(0, i) + t.slice(i + 1 + r.below(40)); },
  (t, r) => { const i = r.below(t.length); return t.slice(0, i) + String.fromCharCode(t.charCodeAt(i) ^ (1 << r.below(7))) + t.slice(i + 1); },
  (t, r) => { const i = r.below(t.length + 1); const c = cut(t, r.below(t.length + 1), 1 + r.below(60)); return t.slice(0, i) + c + t.slice(i); },
  // Digits: a number made larger, negative or not a number.
  (t, r) => t.replace(/\d+/g, (d) => (r.below(6) === 0 ? r.pick(['-1', '99999999999999999999', '1e400', '', d + d, '0x1g']) : d)),
  // Lines.
  (t, r) => withLines(t, (ls) => { ls.splice(r.below(ls.length), 1 + r.below(3)); }),
  (t, r) => withLines(t, (ls) => { const i = r.below(ls.length); ls.splice(i, 0, ...ls.slice(i, i + 1 + r.below(4))); }),
  (t, r) => withLines(t, (ls) => { const i = r.below(ls.length); const j = r.below(ls.length); [ls[i], ls[j]] = [ls[j], ls[i]]; }),
  (t, r) => withLines(t, (ls) => { const i = r.below(ls.length); ls[i] = ls[i].slice(0, r.below(ls[i].length + 1)); }),
  (t, r, others) => withLines(t, (ls) => { const o = r.pick(others).split('\n'); ls.splice(r.below(ls.length + 1), 0, ...o.slice(r.below(o.length), r.below(o.length) + 3)); }),
  // The whole input: cut short, or its end doubled.
  (t, r) => t.slice(0, r.below(t.length + 1)),
  (t, r) => t + t.slice(r.below(t.length + 1)),
];

/** One mutated input from a seed: 1 to 4 mutations in a row. */
export function mutate(seed: string, rng: Rng, others: readonly string[]): string {
  let text = seed;
  for (let n = 1 + rng.below(4); n > 0; n--) text = rng.pick(MUTATIONS)(text, rng, others.length > 0 ? others : [seed]);
  return text;
}
