/**
 * GDB/MI output parser (pure). One call parses one line of gdb's MI output
 * into a typed record. Grammar: "GDB/MI Output Syntax" in the gdb manual.
 *
 * The only thing it ever throws is MiParseError (code MI_PARSE), which names
 * the 1-based column where the input stopped making sense, so a caller can
 * log an unparsable line and go on instead of dying on a TypeError.
 */
import { MigraceError } from '../../trace/errors.js';

export class MiParseError extends MigraceError {
  /** 1-based column (UTF-16 units) of the problem; null for a field check. */
  readonly column: number | null;
  readonly input: string | null;
  constructor(message: string, column: number | null = null, input: string | null = null) {
    super('MI_PARSE', message);
    this.name = 'MiParseError';
    this.column = column;
    this.input = input;
  }
}

export type MiValue = string | MiTuple | MiList;

function miKind(v: MiValue | undefined): string {
  if (v === undefined) return 'missing';
  if (typeof v === 'string') return 'a string';
  return v.kind === 'tuple' ? 'a tuple' : 'a list';
}

/**
 * A tuple `{a="1",b={...}}` or the results of a record. gdb repeats keys in
 * places (e.g. `-break-info`'s `body=[bkpt={...},bkpt={...}]`, some older
 * records), so entries keep order and duplicates: `get` is the first,
 * `getAll` every one.
 */
export class MiTuple {
  readonly kind = 'tuple' as const;
  readonly entries: ReadonlyArray<readonly [string, MiValue]>;

  constructor(entries: ReadonlyArray<readonly [string, MiValue]>) {
    this.entries = entries;
  }

  static readonly EMPTY = new MiTuple([]);

  get(key: string): MiValue | undefined {
    for (const [k, v] of this.entries) if (k === key) return v;
    return undefined;
  }

  getAll(key: string): MiValue[] {
    const out: MiValue[] = [];
    for (const [k, v] of this.entries) if (k === key) out.push(v);
    return out;
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  keys(): string[] {
    return this.entries.map(([k]) => k);
  }

  private fail(key: string, want: string, got: MiValue | undefined): never {
    throw new MiParseError(
      `GDB/MI field "${key}": expected ${want}, found ${miKind(got)} (fields: ${this.keys().join(', ') || 'none'})`,
    );
  }

  /** The first `key`, checked to be the kind `is` accepts (`want` names it in the error). */
  private typed<T extends MiValue>(key: string, want: string, is: (v: MiValue | undefined) => v is T): T {
    const v = this.get(key);
    if (!is(v)) this.fail(key, want, v);
    return v;
  }

  string(key: string): string {
    return this.typed(key, 'a string', (v): v is string => typeof v === 'string');
  }

  optString(key: string): string | undefined {
    return this.has(key) ? this.string(key) : undefined;
  }

  /** A decimal integer field (gdb sends every number as a string). */
  int(key: string): number {
    const s = this.string(key);
    if (!/^-?\d+$/.test(s)) this.fail(key, 'a decimal integer', s);
    return Number(s);
  }

  optInt(key: string): number | undefined {
    return this.has(key) ? this.int(key) : undefined;
  }

  tuple(key: string): MiTuple {
    return this.typed(key, 'a tuple', (v): v is MiTuple => v instanceof MiTuple);
  }

  optTuple(key: string): MiTuple | undefined {
    return this.has(key) ? this.tuple(key) : undefined;
  }

  list(key: string): MiList {
    return this.typed(key, 'a list', (v): v is MiList => v instanceof MiList);
  }

  optList(key: string): MiList | undefined {
    return this.has(key) ? this.list(key) : undefined;
  }

  /** Plain JSON for logs: a repeated key becomes an array of its values. */
  toJSON(): Record<string, unknown> {
    const groups = new Map<string, unknown[]>();
    for (const [k, v] of this.entries) {
      const g = groups.get(k);
      if (g) g.push(toPlain(v));
      else groups.set(k, [toPlain(v)]);
    }
    const out: Record<string, unknown> = {};
    for (const [k, g] of groups) out[k] = g.length === 1 ? g[0] : g;
    return out;
  }
}

/**
 * A list: either of values `["1","2"]` / `[{...},{...}]`, or of results
 * `[frame={...},frame={...}]`; for the latter `keys` holds each item's name.
 * An empty list `[]` has keys null (the grammar cannot tell which it is).
 */
export class MiList {
  readonly kind = 'list' as const;
  readonly items: readonly MiValue[];
  readonly keys: readonly string[] | null;

  constructor(items: readonly MiValue[], keys: readonly string[] | null) {
    this.items = items;
    this.keys = keys;
  }

  get length(): number {
    return this.items.length;
  }

  get isResultList(): boolean {
    return this.keys !== null;
  }

  /** Every item as a string (`stopped-threads=["1","2"]`). */
  strings(what = 'list'): string[] {
    return this.items.map((v, i) => {
      if (typeof v !== 'string') throw new MiParseError(`GDB/MI ${what}[${i}]: expected a string, found ${miKind(v)}`);
      return v;
    });
  }

  /** Every item as a tuple, ignoring result names (`stack=[frame={...},...]`). */
  tuples(what = 'list'): MiTuple[] {
    return this.items.map((v, i) => {
      if (!(v instanceof MiTuple)) throw new MiParseError(`GDB/MI ${what}[${i}]: expected a tuple, found ${miKind(v)}`);
      return v;
    });
  }

  entries(): Array<[string, MiValue]> {
    const keys = this.keys ?? [];
    return this.items.map((v, i) => [keys[i] ?? '', v]);
  }

  toJSON(): unknown[] {
    return this.items.map(toPlain);
  }
}

export function toPlain(v: MiValue): unknown {
  return typeof v === 'string' ? v : v.toJSON();
}

export type MiResultClass = 'done' | 'running' | 'connected' | 'error' | 'exit';
const RESULT_CLASSES: ReadonlySet<string> = new Set(['done', 'running', 'connected', 'error', 'exit']);

/** `[token]^class,results` */
export interface MiResultRecord {
  type: 'result';
  token: number | null;
  class: MiResultClass;
  results: MiTuple;
}

/** `[token]*class,results`: the target's execution state changed. */
export interface MiExecRecord {
  type: 'exec';
  token: number | null;
  class: string;
  results: MiTuple;
}

/** `[token]+class,results`: progress of a slow operation. */
export interface MiStatusRecord {
  type: 'status';
  token: number | null;
  class: string;
  results: MiTuple;
}

/** `[token]=class,results`: threads, breakpoints, libraries, ... */
export interface MiNotifyRecord {
  type: 'notify';
  token: number | null;
  class: string;
  results: MiTuple;
}

export interface MiStreamRecord {
  /** console `~` (CLI output), target `@` (remote target output), log `&` (gdb's own messages). */
  type: 'console' | 'target' | 'log';
  text: string;
}

export interface MiPromptRecord {
  type: 'prompt';
}

export type MiAsyncRecord = MiExecRecord | MiStatusRecord | MiNotifyRecord;
export type MiRecord = MiResultRecord | MiAsyncRecord | MiStreamRecord | MiPromptRecord;

// Deep nesting cannot come from gdb; the limit turns a hostile line into a
// parse error instead of a RangeError from the call stack.
const MAX_DEPTH = 200;

const utf8 = new TextDecoder('utf-8');
const utf8enc = new TextEncoder();

function isNameChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) || // a-z
    (c >= 0x41 && c <= 0x5a) || // A-Z
    (c >= 0x30 && c <= 0x39) || // 0-9
    c === 0x2d || // -
    c === 0x5f || // _
    c === 0x2e // . (not in gdb's own names, harmless)
  );
}

function isOctal(c: number): boolean {
  return c >= 0x30 && c <= 0x37;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

const SIMPLE_ESCAPES: Record<string, number> = {
  n: 0x0a,
  t: 0x09,
  '"': 0x22,
  '\\': 0x5c,
  "'": 0x27,
  e: 0x1b,
  a: 0x07,
  b: 0x08,
  f: 0x0c,
  r: 0x0d,
  v: 0x0b,
};

class LineParser {
  pos = 0;
  constructor(readonly s: string) {}

  fail(expected: string, at = this.pos): never {
    const found = at >= this.s.length ? 'end of line' : JSON.stringify(this.s.slice(at, at + 12));
    throw new MiParseError(
      `cannot parse GDB/MI output at column ${at + 1}: expected ${expected}, found ${found} in ${JSON.stringify(
        this.s.length > 120 ? this.s.slice(0, 120) + '...' : this.s,
      )}`,
      at + 1,
      this.s,
    );
  }

  peek(): number {
    return this.pos < this.s.length ? this.s.charCodeAt(this.pos) : -1;
  }

  expect(ch: string): void {
    if (this.s[this.pos] !== ch) this.fail(`'${ch}'`);
    this.pos++;
  }

  atEnd(): boolean {
    return this.pos >= this.s.length;
  }

  name(what: string): string {
    const start = this.pos;
    while (this.pos < this.s.length && isNameChar(this.s.charCodeAt(this.pos))) this.pos++;
    if (this.pos === start) this.fail(what);
    return this.s.slice(start, this.pos);
  }

  /** A C string starting at the opening quote. */
  cstring(): string {
    this.expect('"');
    const s = this.s;
    const start = this.pos;
    // Fast path: most strings have no escapes at all.
    let i = start;
    while (i < s.length) {
      const c = s.charCodeAt(i);
      if (c === 0x22) {
        this.pos = i + 1;
        return s.slice(start, i);
      }
      if (c === 0x5c) break;
      i++;
    }
    if (i >= s.length) this.fail('closing \'"\' of a C string', s.length);
    // Slow path: gdb escapes non-ASCII bytes one by one in octal (é is
    // \303\251), so the string is rebuilt as bytes and decoded as UTF-8 once,
    // across escaped and literal characters alike.
    const bytes: number[] = [];
    const pushText = (from: number, to: number): void => {
      for (let j = from; j < to; j++) {
        const c = s.charCodeAt(j);
        if (c < 0x80) bytes.push(c);
        else {
          // A literal non-ASCII run (gdb running in a UTF-8 locale): re-encode it whole.
          let k = j;
          while (k < to && s.charCodeAt(k) >= 0x80) k++;
          for (const b of utf8enc.encode(s.slice(j, k))) bytes.push(b);
          j = k - 1;
        }
      }
    };
    let runStart = start;
    i = start;
    for (;;) {
      if (i >= s.length) this.fail('closing \'"\' of a C string', s.length);
      const c = s.charCodeAt(i);
      if (c === 0x22) {
        pushText(runStart, i);
        this.pos = i + 1;
        return utf8.decode(Uint8Array.from(bytes));
      }
      if (c !== 0x5c) {
        i++;
        continue;
      }
      pushText(runStart, i);
      const escAt = i;
      i++;
      if (i >= s.length) this.fail('an escape after \'\\\'', i);
      const e = s[i]!;
      const simple = SIMPLE_ESCAPES[e];
      if (simple !== undefined) {
        bytes.push(simple);
        i++;
      } else if (isOctal(s.charCodeAt(i))) {
        let v = 0;
        let n = 0;
        while (n < 3 && i < s.length && isOctal(s.charCodeAt(i))) {
          v = v * 8 + (s.charCodeAt(i) - 0x30);
          i++;
          n++;
        }
        if (v > 0xff) this.fail('an octal escape of at most \\377', escAt);
        bytes.push(v);
      } else if (e === 'x') {
        i++;
        let v = 0;
        let n = 0;
        while (n < 2 && i < s.length && hexValue(s.charCodeAt(i)) >= 0) {
          v = v * 16 + hexValue(s.charCodeAt(i));
          i++;
          n++;
        }
        if (n === 0) this.fail('hex digits after \'\\x\'', i);
        bytes.push(v);
      } else {
        this.fail('a known escape (\\n \\t \\" \\\\ \\e \\a \\b \\f \\r \\v \\NNN \\xHH)', escAt);
      }
      runStart = i;
    }
  }

  value(depth: number): MiValue {
    if (depth > MAX_DEPTH) this.fail(`nesting of at most ${MAX_DEPTH} levels`);
    const c = this.peek();
    if (c === 0x22) return this.cstring();
    if (c === 0x7b) return this.tuple(depth + 1);
    if (c === 0x5b) return this.list(depth + 1);
    return this.fail('a value (\'"\', \'{\' or \'[\')');
  }

  result(depth: number): readonly [string, MiValue] {
    const key = this.name('a result name');
    this.expect('=');
    return [key, this.value(depth)] as const;
  }

  /** Past `open`; true, and past `close` too, when the tuple or list is empty. */
  private openedEmpty(open: string, close: number): boolean {
    this.expect(open);
    if (this.peek() !== close) return false;
    this.pos++;
    return true;
  }

  /** After an element: true past a ',' (another one follows), false past `close`. */
  private another(close: number, expected: string): boolean {
    const c = this.peek();
    if (c === 0x2c || c === close) {
      this.pos++;
      return c === 0x2c;
    }
    return this.fail(expected);
  }

  tuple(depth: number): MiTuple {
    if (this.openedEmpty('{', 0x7d)) return new MiTuple([]);
    const entries: Array<readonly [string, MiValue]> = [];
    do {
      entries.push(this.result(depth));
    } while (this.another(0x7d, "',' or '}'"));
    return new MiTuple(entries);
  }

  list(depth: number): MiList {
    if (this.openedEmpty('[', 0x5d)) return new MiList([], null);
    const c0 = this.peek();
    const ofResults = c0 !== 0x22 && c0 !== 0x7b && c0 !== 0x5b;
    const items: MiValue[] = [];
    const keys: string[] = [];
    do {
      if (ofResults) {
        const [k, v] = this.result(depth);
        keys.push(k);
        items.push(v);
      } else {
        items.push(this.value(depth));
      }
    } while (this.another(0x5d, "',' or ']'"));
    return new MiList(items, ofResults ? keys : null);
  }

  /** `( "," result )*` up to the end of the line. */
  results(): MiTuple {
    const entries: Array<readonly [string, MiValue]> = [];
    while (!this.atEnd()) {
      this.expect(',');
      entries.push(this.result(0));
    }
    return entries.length === 0 ? MiTuple.EMPTY : new MiTuple(entries);
  }
}

/**
 * Parse one line of MI output (without its newline; a trailing CR is
 * ignored). Throws only MiParseError.
 */
export function parseMiLine(line: string): MiRecord {
  let s = typeof line === 'string' ? line : String(line);
  if (s.endsWith('\r')) s = s.slice(0, -1);
  const p = new LineParser(s);
  if (s.length === 0) p.fail('a GDB/MI record');

  if (s.startsWith('(gdb)')) {
    if (s.slice(5).trim() !== '') p.fail('end of line after the (gdb) prompt', 5);
    return { type: 'prompt' };
  }

  const first = s.charCodeAt(0);
  if (first === 0x7e || first === 0x40 || first === 0x26) {
    p.pos = 1;
    const text = p.cstring();
    if (!p.atEnd()) p.fail('end of line after a stream record');
    return { type: first === 0x7e ? 'console' : first === 0x40 ? 'target' : 'log', text };
  }

  let token: number | null = null;
  while (p.pos < s.length && s.charCodeAt(p.pos) >= 0x30 && s.charCodeAt(p.pos) <= 0x39) p.pos++;
  if (p.pos > 0) {
    const digits = s.slice(0, p.pos);
    token = Number(digits);
    if (!Number.isSafeInteger(token)) p.fail('a token below 2^53', 0);
  }

  const kind = s[p.pos];
  if (kind !== '^' && kind !== '*' && kind !== '+' && kind !== '=') {
    p.fail(token === null ? 'a record type (^ * + = ~ @ & or (gdb))' : "a record type after the token ('^', '*', '+' or '=')");
  }
  p.pos++;
  const classAt = p.pos;
  const cls = p.name(kind === '^' ? 'a result class' : 'an async class');
  if (kind === '^') {
    if (!RESULT_CLASSES.has(cls)) p.fail('a result class (done, running, connected, error, exit)', classAt);
    const results = p.results();
    return { type: 'result', token, class: cls as MiResultClass, results };
  }
  const results = p.results();
  const type = kind === '*' ? 'exec' : kind === '+' ? 'status' : 'notify';
  return { type, token, class: cls, results };
}

/** Parse a block of output, one record per non-empty line. */
export function parseMiLines(text: string): MiRecord[] {
  return text
    .split('\n')
    .filter((l) => l.replace(/\r$/, '') !== '')
    .map(parseMiLine);
}

/**
 * Quote a string as an MI c-string argument. Control characters are
 * refused by the caller (a newline would end the command), so only the
 * quote and the backslash need escaping here.
 */
export function miQuote(s: string): string {
  return '"' + s.replace(/[\\"]/g, (c) => '\\' + c) + '"';
}
