/**
 * The expressions a probe profile may ask for: a small grammar, parsed
 * before anything reaches gdb. gdb evaluates what it is given in the
 * target, on every hit, and its expression language can call target code
 * (`f(x)`, and `(f)(x)` when `f` is not a type), assign, and step
 * counters. A regex cannot tell `(int)(x)` from `(umask)(0x1ff)`; a parser
 * that knows which names are types can.
 *
 * Parts, in order:
 * - `tokenize`: the characters into tokens (names, $registers, numbers, punctuation);
 * - `Parser`: tokens into an `Expr` tree, one method per grammar rule:
 *     expr    := unary (('+' | '-') unary)*      one side of each +/- a constant
 *     unary   := '*' unary | '&' unary | '-' NUMBER | '(' type ')' unary | postfix
 *     postfix := primary ('->' name | '.' name | '[' expr ']')*
 *     primary := NUMBER | $register | name | '(' expr ')'
 *     type    := qualifiers, a base type or a known typedef, then '*'s
 * - `parseExpression`: the entry point, with errors that quote the place.
 *
 * Nothing in the grammar calls, assigns or changes anything: there is no
 * call syntax at all, and `(` after a complete operand is an error.
 * The tree is also what the uprobe backend translates into fetch arguments.
 */

export type Expr =
  | { kind: 'num'; value: bigint }
  | { kind: 'reg'; name: string }
  | { kind: 'name'; name: string }
  | { kind: 'cast'; type: TypeName; expr: Expr }
  | { kind: 'deref'; expr: Expr }
  | { kind: 'addr'; expr: Expr }
  | { kind: 'member'; expr: Expr; field: string; arrow: boolean }
  | { kind: 'index'; expr: Expr; index: Expr }
  | { kind: 'offset'; expr: Expr; delta: bigint };

export interface TypeName {
  /** The base type as written, normalized to single spaces: `unsigned int`, `struct MigrationState`. */
  base: string;
  pointers: number;
}

export class ExpressionError extends Error {}

type Token =
  | { t: 'name'; v: string; at: number }
  | { t: 'reg'; v: string; at: number }
  | { t: 'num'; v: bigint; at: number }
  | { t: 'punct'; v: string; at: number }
  | { t: 'end'; at: number };

const PUNCT = ['->', '(', ')', '[', ']', '*', '&', '.', '+', '-'];

function tokenize(text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === ' ' || c === '\t') { i++; continue; }
    const rest = text.slice(i);
    const name = /^[A-Za-z_][A-Za-z0-9_]*/.exec(rest);
    if (name) { out.push({ t: 'name', v: name[0], at: i }); i += name[0].length; continue; }
    const reg = /^\$[A-Za-z_][A-Za-z0-9_]*/.exec(rest);
    if (reg) { out.push({ t: 'reg', v: reg[0].slice(1), at: i }); i += reg[0].length; continue; }
    const num = /^(0[xX][0-9a-fA-F]+|\d+)(?![A-Za-z0-9_])/.exec(rest);
    if (num) { out.push({ t: 'num', v: BigInt(num[1]), at: i }); i += num[0].length; continue; }
    const p = PUNCT.find((s) => rest.startsWith(s));
    if (p) {
      // `++` and `--` would be read as two signs; they change the target, so say so.
      if ((p === '+' || p === '-') && rest[1] === p) throw new ExpressionError(`"${p}${p}" at ${i + 1} would change the target on every hit`);
      out.push({ t: 'punct', v: p, at: i });
      i += p.length;
      continue;
    }
    throw new ExpressionError(`"${c}" at ${i + 1} is not allowed (only names, $registers, numbers, casts, *, &, ->, ., [], and + or - of a constant)`);
  }
  out.push({ t: 'end', at: text.length });
  return out;
}

const QUALIFIERS = new Set(['const', 'volatile']);
const BASE_WORDS = new Set(['char', 'short', 'int', 'long', 'unsigned', 'signed', 'bool', '_Bool', 'void']);
const TAGS = new Set(['struct', 'enum', 'union']);
/**
 * Names gdb may treat as types in a cast. A name not listed here is never a
 * type to this parser, so `(f)(x)` is refused instead of being a call.
 */
const TYPEDEFS = new Set([
  'MigrationStatus', 'MigrationState', 'MigrationInfo', 'MigrationIncomingState', 'QEnumLookup',
  'int8_t', 'int16_t', 'int32_t', 'int64_t', 'uint8_t', 'uint16_t', 'uint32_t', 'uint64_t',
  'size_t', 'ssize_t', 'intptr_t', 'uintptr_t', 'gboolean', 'gint', 'guint', 'gint64', 'guint64',
]);

function startsType(tok: Token): boolean {
  return tok.t === 'name' && (QUALIFIERS.has(tok.v) || BASE_WORDS.has(tok.v) || TAGS.has(tok.v) || TYPEDEFS.has(tok.v));
}

class Parser {
  private pos = 0;

  constructor(private readonly tokens: Token[], private readonly text: string) {}

  private peek(k = 0): Token {
    return this.tokens[Math.min(this.pos + k, this.tokens.length - 1)];
  }

  private next(): Token {
    const t = this.peek();
    if (t.t !== 'end') this.pos++;
    return t;
  }

  private isPunct(v: string, k = 0): boolean {
    const t = this.peek(k);
    return t.t === 'punct' && t.v === v;
  }

  private fail(why: string, tok: Token = this.peek()): never {
    const where = tok.t === 'end' ? 'at the end' : `at ${tok.at + 1} ("${this.text.slice(tok.at, tok.at + 12)}")`;
    throw new ExpressionError(`${why} ${where}`);
  }

  private expect(v: string): void {
    if (!this.isPunct(v)) this.fail(`expected "${v}"`);
    this.next();
  }

  parseAll(): Expr {
    const e = this.expr();
    const t = this.peek();
    if (t.t !== 'end') {
      if (t.t === 'punct' && t.v === '(') this.fail('a function call (it would run target code on every hit) or a cast to an unknown type', t);
      this.fail('unexpected text', t);
    }
    return e;
  }

  private expr(): Expr {
    let left = this.unary();
    while (this.isPunct('+') || this.isPunct('-')) {
      const op = this.next() as Extract<Token, { t: 'punct' }>;
      const right = this.unary();
      const sign = op.v === '-' ? -1n : 1n;
      if (right.kind === 'num') left = { kind: 'offset', expr: left, delta: sign * right.value };
      else if (left.kind === 'num' && op.v === '+') left = { kind: 'offset', expr: right, delta: left.value };
      else this.fail(`"${op.v}" needs a constant on one side`, op);
    }
    return left;
  }

  private unary(): Expr {
    if (this.isPunct('*')) { this.next(); return { kind: 'deref', expr: this.unary() }; }
    if (this.isPunct('&')) { this.next(); return { kind: 'addr', expr: this.unary() }; }
    if (this.isPunct('-')) {
      this.next();
      const t = this.next();
      if (t.t !== 'num') this.fail('"-" as a sign only goes before a number', t);
      return { kind: 'num', value: -t.v };
    }
    if (this.isPunct('(') && startsType(this.peek(1))) {
      this.next();
      const type = this.typeName();
      this.expect(')');
      return { kind: 'cast', type, expr: this.unary() };
    }
    return this.postfix();
  }

  private typeName(): TypeName {
    const words: string[] = [];
    while (this.peek().t === 'name' && QUALIFIERS.has((this.peek() as { v: string }).v)) this.next();
    const first = this.next();
    if (first.t !== 'name') this.fail('expected a type', first);
    if (TAGS.has(first.v)) {
      const tag = this.next();
      if (tag.t !== 'name') this.fail(`expected a name after "${first.v}"`, tag);
      words.push(first.v, tag.v);
    } else if (TYPEDEFS.has(first.v)) {
      words.push(first.v);
    } else if (BASE_WORDS.has(first.v)) {
      words.push(first.v);
      while (this.peek().t === 'name' && BASE_WORDS.has((this.peek() as { v: string }).v)) words.push((this.next() as { v: string }).v);
    } else {
      this.fail('expected a type', first);
    }
    let pointers = 0;
    for (;;) {
      if (this.isPunct('*')) { this.next(); pointers++; continue; }
      const t = this.peek();
      if (t.t === 'name' && QUALIFIERS.has(t.v)) { this.next(); continue; }
      break;
    }
    return { base: words.join(' '), pointers };
  }

  private postfix(): Expr {
    let e = this.primary();
    for (;;) {
      if (this.isPunct('->') || this.isPunct('.')) {
        const arrow = (this.next() as { v: string }).v === '->';
        const field = this.next();
        if (field.t !== 'name') this.fail('expected a field name', field);
        e = { kind: 'member', expr: e, field: field.v, arrow };
      } else if (this.isPunct('[')) {
        this.next();
        const index = this.expr();
        this.expect(']');
        e = { kind: 'index', expr: e, index };
      } else {
        return e;
      }
    }
  }

  private primary(): Expr {
    const t = this.next();
    switch (t.t) {
      case 'num': return { kind: 'num', value: t.v };
      case 'reg': return { kind: 'reg', name: t.v };
      case 'name':
        if (QUALIFIERS.has(t.v) || BASE_WORDS.has(t.v) || TAGS.has(t.v)) this.fail(`"${t.v}" is a type, not a value`, t);
        return { kind: 'name', name: t.v };
      case 'punct':
        if (t.v === '(') {
          const inner = this.expr();
          this.expect(')');
          return inner;
        }
        return this.fail(`unexpected "${t.v}"`, t);
      case 'end':
        return this.fail('expected a value', t);
    }
  }
}

/** Parse a profile expression; throws ExpressionError saying what and where. */
export function parseExpression(text: string): Expr {
  if (text.trim() === '') throw new ExpressionError('empty expression');
  return new Parser(tokenize(text), text).parseAll();
}
