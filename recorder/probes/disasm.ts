/**
 * gdb's `disassemble` output (AT&T syntax, gdb 13) as data. Pure: the
 * text comes from `gdb -batch -nx -ex 'disassemble FUNC' BINARY` or, for
 * an address range, `disassemble START,END`, whose lines carry the nearest
 * symbol (`<migrate_get_current+7>`) or, where no symbol covers the code of
 * a stripped build, no label at all:
 *
 *    0x0000000000518fa5 <+117>:\tmov    0x238(%rbx),%eax
 *    0x0000000000518f41 <+17>:\tmov    0x8b0788(%rip),%rbx        # 0xdc96d0
 *    0x0000000000518fae <+126>:\tja     0x518feb <qmp_query_migrate+187>
 *    0x00000000005179e3:\tmov    %rsi,%rbp
 *
 * Parts: the listing and its lines, then operands (registers, memory,
 * immediates) and how reports print them.
 */

export interface DisasmLine {
  address: number;
  /** Bytes from the function's start (`<+117>`, or from the range's start when one is given). */
  offset: number;
  /** The instruction as gdb printed it, without the `# ...` comment. */
  text: string;
  mnemonic: string;
  /** lock, rep, notrack, cs, ... in the order printed. */
  prefixes: string[];
  /** Split at top-level commas, AT&T order (sources first, destination last). */
  operands: string[];
  /** What gdb put after `#`: the target of a rip-relative operand, maybe with a symbol. */
  comment: string | null;
  commentAddress: number | null;
  /** Direct jump or call target. */
  target: number | null;
  /** `qmp_query_migrate+187`, `g_malloc0@plt`. */
  targetSymbol: string | null;
}

export interface DisasmListing {
  /** From `Dump of assembler code for function NAME:`, null when gdb printed a raw range. */
  function: string | null;
  lines: DisasmLine[];
}

const PREFIXES = new Set([
  'lock', 'rep', 'repz', 'repe', 'repnz', 'repne', 'notrack', 'bnd', 'cs', 'ds', 'ss', 'es', 'fs', 'gs',
  'data16', 'data32', 'addr32', 'xacquire', 'xrelease', 'rex', 'rex.W', 'rex.B', 'rex.R', 'rex.X',
]);

const LINE = /^\s*(?:=>\s*)?(0x[0-9a-fA-F]+)(?:\s+<([^>]*)>)?:\s*(.*)$/;

/**
 * A whole listing. `range` is the function a range disassembly covers: its
 * name, and its start, from which offsets are counted (the labels of a
 * range may name another symbol, or none).
 */
export function parseDisassembly(text: string, range?: { name: string; start: number }): DisasmListing {
  let fn: string | null = range?.name ?? null;
  const lines: DisasmLine[] = [];
  for (const raw of text.split('\n')) {
    const head = /^Dump of assembler code for function (.+?):\s*$/.exec(raw);
    if (head) {
      fn = head[1];
      continue;
    }
    const parsed = parseDisasmLine(raw);
    if (parsed) lines.push(range ? { ...parsed, offset: parsed.address - range.start } : parsed);
  }
  return { function: fn, lines };
}

/** One instruction line, or null for anything else (headers, blank, "End of assembler dump."). */
export function parseDisasmLine(raw: string): DisasmLine | null {
  const m = LINE.exec(raw);
  if (!m) return null;
  const address = Number.parseInt(m[1], 16);
  const where = /([+-]\d+)$/.exec(m[2] ?? '');
  const offset = where ? Number(where[1]) : 0;
  let body = m[3].trim();
  let comment: string | null = null;
  const hash = body.indexOf('#');
  if (hash >= 0) {
    comment = body.slice(hash + 1).trim();
    body = body.slice(0, hash).trim();
  }
  const commentAddrMatch = comment ? /^(0x[0-9a-fA-F]+)/.exec(comment) : null;
  const commentAddress = commentAddrMatch ? Number.parseInt(commentAddrMatch[1], 16) : null;

  const tokens = body.split(/\s+/).filter(Boolean);
  const prefixes: string[] = [];
  while (tokens.length > 1 && PREFIXES.has(tokens[0])) prefixes.push(tokens.shift()!);
  const mnemonic = tokens.shift() ?? '';
  const rest = tokens.join(' ');
  const operands = splitOperands(rest);

  let target: number | null = null;
  let targetSymbol: string | null = null;
  if (isJump(mnemonic) || isCall(mnemonic)) {
    const t = /^(0x[0-9a-fA-F]+)(?:\s+<([^>]+)>)?$/.exec(operands[0] ?? '');
    if (t) {
      target = Number.parseInt(t[1], 16);
      targetSymbol = t[2] ?? null;
    }
  }
  return { address, offset, text: body, mnemonic, prefixes, operands, comment, commentAddress, target, targetSymbol };
}

function splitOperands(s: string): string[] {
  if (!s) return [];
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(' || ch === '<') depth++;
    if (ch === ')' || ch === '>') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur.trim());
      cur = '';
    } else {
      cur += ch;
    }
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

export function isJump(mnemonic: string): boolean {
  return /^j[a-z]+$/.test(mnemonic);
}

export function isCall(mnemonic: string): boolean {
  return mnemonic === 'call' || mnemonic === 'callq';
}

export function isUnconditionalJump(mnemonic: string): boolean {
  return mnemonic === 'jmp' || mnemonic === 'jmpq';
}

export function isReturn(mnemonic: string): boolean {
  return mnemonic === 'ret' || mnemonic === 'retq' || mnemonic === 'iret' || mnemonic === 'iretq';
}

export function isNop(line: DisasmLine): boolean {
  return line.mnemonic.startsWith('nop') || (line.mnemonic === 'xchg' && line.operands.join(',') === '%ax,%ax');
}

/* ------------------------------------------------------------------ */
/* Operands */

export type Width = 8 | 16 | 32 | 64;

export type Operand =
  | { kind: 'reg'; reg: string; canon: string; width: Width }
  | { kind: 'imm'; value: bigint }
  | { kind: 'mem'; seg: string | null; disp: number; base: string | null; index: string | null; scale: number }
  /** A direct jump/call target `0x518feb <...>` or an absolute address. */
  | { kind: 'addr'; value: number }
  /** `*%rax`, `*0x10(%rax)`. */
  | { kind: 'indirect'; inner: Operand }
  | { kind: 'other'; text: string };

const GPR64 = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'];

/** Every name of a general-purpose register, mapped to its 64-bit name and width. */
const REGS: Map<string, { canon: string; width: Width }> = (() => {
  const m = new Map<string, { canon: string; width: Width }>();
  for (const r of ['a', 'b', 'c', 'd']) {
    m.set(`r${r}x`, { canon: `r${r}x`, width: 64 });
    m.set(`e${r}x`, { canon: `r${r}x`, width: 32 });
    m.set(`${r}x`, { canon: `r${r}x`, width: 16 });
    m.set(`${r}l`, { canon: `r${r}x`, width: 8 });
    m.set(`${r}h`, { canon: `r${r}x`, width: 8 });
  }
  for (const r of ['si', 'di', 'bp', 'sp']) {
    m.set(`r${r}`, { canon: `r${r}`, width: 64 });
    m.set(`e${r}`, { canon: `r${r}`, width: 32 });
    m.set(r, { canon: `r${r}`, width: 16 });
    m.set(`${r}l`, { canon: `r${r}`, width: 8 });
  }
  for (let i = 8; i <= 15; i++) {
    m.set(`r${i}`, { canon: `r${i}`, width: 64 });
    m.set(`r${i}d`, { canon: `r${i}`, width: 32 });
    m.set(`r${i}w`, { canon: `r${i}`, width: 16 });
    m.set(`r${i}b`, { canon: `r${i}`, width: 8 });
  }
  m.set('rip', { canon: 'rip', width: 64 });
  return m;
})();

export function isGpr(canon: string): boolean {
  return GPR64.includes(canon);
}

/** `%r13d` -> `$r13d`: the name gdb evaluates for that register. */
export function gdbRegister(name: string): string {
  return `$${name.replace(/^%/, '')}`;
}

function parseNumber(s: string): bigint | null {
  const neg = s.startsWith('-');
  const body = neg ? s.slice(1) : s;
  if (!/^(0x[0-9a-fA-F]+|\d+)$/.test(body)) return null;
  const v = BigInt(body);
  return neg ? -v : v;
}

/** Interpret an unsigned 64-bit immediate as the signed value the CPU adds. */
function signed64(v: bigint): bigint {
  return v >= 1n << 63n ? v - (1n << 64n) : v;
}

export function parseOperand(op: string): Operand {
  const s = op.trim();
  if (s.startsWith('*')) return { kind: 'indirect', inner: parseOperand(s.slice(1)) };
  if (s.startsWith('$')) {
    const v = parseNumber(s.slice(1));
    return v === null ? { kind: 'other', text: s } : { kind: 'imm', value: signed64(v) };
  }
  const reg = /^%(\w+)$/.exec(s);
  if (reg) {
    const info = REGS.get(reg[1]);
    return info ? { kind: 'reg', reg: reg[1], canon: info.canon, width: info.width } : { kind: 'other', text: s };
  }
  const mem = /^(?:%(\w+):)?(-?(?:0x[0-9a-fA-F]+|\d+))?\(\s*(?:%(\w+))?\s*(?:,\s*%(\w+)\s*)?(?:,\s*(\d+)\s*)?\)$/.exec(s);
  if (mem) {
    const disp = mem[2] ? Number(parseNumber(mem[2])) : 0;
    return {
      kind: 'mem',
      seg: mem[1] ?? null,
      disp,
      base: mem[3] ? (REGS.get(mem[3])?.canon ?? mem[3]) : null,
      index: mem[4] ? (REGS.get(mem[4])?.canon ?? mem[4]) : null,
      scale: mem[5] ? Number(mem[5]) : 1,
    };
  }
  // %fs:0x28 -- a segment plus an absolute displacement.
  const segAbs = /^%(\w+):(-?(?:0x[0-9a-fA-F]+|\d+))$/.exec(s);
  if (segAbs) return { kind: 'mem', seg: segAbs[1], disp: Number(parseNumber(segAbs[2])), base: null, index: null, scale: 1 };
  const addr = /^(0x[0-9a-fA-F]+)(?:\s+<[^>]+>)?$/.exec(s);
  if (addr) return { kind: 'addr', value: Number.parseInt(addr[1], 16) };
  return { kind: 'other', text: s };
}

/** `0x238` for 568, `-0x18` for -24: how gdb prints addresses and displacements. */
export function hex(n: number): string {
  return n < 0 ? `-0x${(-n).toString(16)}` : `0x${n.toString(16)}`;
}

/** `+117 mov 0x238(%rbx),%eax` for reports. */
export function describe(line: DisasmLine): string {
  return `+${line.offset} \`${line.text.replace(/\s+/, ' ')}\``;
}
