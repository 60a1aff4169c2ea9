import {
  isCall, isGpr, isJump, isNop, isReturn, isUnconditionalJump, parseOperand, type DisasmLine, type DisasmListing, type Operand,
} from './disasm.js';

/**
 * The x86-64 data-flow model discovery reasons with: one function's
 * control-flow graph and a forward pass that labels what each register and
 * stack slot holds. It knows nothing about probes or profiles; the analysis
 * (analysis.ts) asks it questions.
 *
 * Parts, in order:
 * - labels and label sets: the abstract values (MigrationState pointer,
 *   reply pointer, a load of a MigrationState field, another global);
 * - Context: what the analysis tells the model (where MigrationState lives,
 *   which call allocates the reply);
 * - FunctionModel: successors (a switch's jump table over-approximated), the
 *   transfer function of each instruction, the fixed-point pass, and the
 *   32-bit MigrationState field accesses it finds.
 */

/** Calls that do not return: the path ends there. */
const NORETURN = new Set([
  'abort', 'exit', '_exit', '__stack_chk_fail', '__assert_fail', 'g_assertion_message_expr',
  'g_assertion_message', 'g_assertion_message_cmpnum', 'error_exit', '__fortify_fail',
]);

export interface GlobalInfo {
  address: number;
  /** pointer: the global holds MigrationState* (QEMU's current_migration); object: it is the MigrationState (minimig). */
  kind: 'pointer' | 'object';
  line: string;
}

/* ------------------------------------------------------------------ */
/* Abstract values: which registers hold MigrationState*, the reply, or a state load */

/**
 * Labels: `S+k` (pointer to MigrationState plus k), `I+k` (pointer to the
 * reply plus k), `F:off@idx` (a 32-bit load of MigrationState+off at
 * instruction idx), `P:addr` (pointer loaded from another global), `?`.
 */
export type Label = string;
export type LabelSet = ReadonlySet<Label>;
export type State = Map<string, LabelSet>;

export const UNKNOWN: LabelSet = new Set(['?']);
const MAX_LABELS = 16;

export function get(st: State, key: string): LabelSet {
  return st.get(key) ?? UNKNOWN;
}

export function put(st: State, key: string, v: LabelSet): void {
  if (v.size === 1 && v.has('?')) st.delete(key);
  else st.set(key, v.size > MAX_LABELS ? UNKNOWN : v);
}

function union(a: LabelSet, b: LabelSet): LabelSet {
  if (a === b) return a;
  const out = new Set(a);
  for (const x of b) out.add(x);
  return out;
}

export function joinStates(a: State, b: State): State {
  const out: State = new Map();
  for (const k of new Set([...a.keys(), ...b.keys()])) put(out, k, union(get(a, k), get(b, k)));
  return out;
}

export function sameStates(a: State, b: State): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w || w.size !== v.size) return false;
    for (const x of v) if (!w.has(x)) return false;
  }
  return true;
}

/** The common k when every label is `PREFIX+k` with the same k. */
export function uniformOffset(set: LabelSet, prefix: 'S' | 'I'): number | null {
  let k: number | null = null;
  for (const l of set) {
    const m = /^([SI])\+(-?\d+)$/.exec(l);
    if (!m || m[1] !== prefix) return null;
    const v = Number(m[2]);
    if (k !== null && k !== v) return null;
    k = v;
  }
  return k;
}

export function uniformGlobal(set: LabelSet): number | null {
  let g: number | null = null;
  for (const l of set) {
    const m = /^P:(\d+)$/.exec(l);
    if (!m) return null;
    if (g !== null && g !== Number(m[1])) return null;
    g = Number(m[1]);
  }
  return g;
}

export function parseFieldLabel(l: Label): { off: number; idx: number } | null {
  const m = /^F:(-?\d+)@(\d+)$/.exec(l);
  return m ? { off: Number(m[1]), idx: Number(m[2]) } : null;
}

const CALLER_SAVED = ['rax', 'rcx', 'rdx', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11'];
export const ARG_REGS = ['rdi', 'rsi', 'rdx', 'rcx', 'r8', 'r9'];
const GPRS = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'];

export function symbolBase(sym: string | null): string | null {
  if (!sym) return null;
  return sym.replace(/[+-]\d+$/, '').replace(/@plt$/, '');
}

export interface Context {
  global: GlobalInfo | null;
  migrateGetCurrent: number | null;
  /** Index of the call whose result is the reply, or -1. */
  allocSite: number;
  /** No MigrationState pointer could be traced: match state loads by offset alone. */
  offsetOnly: number | null;
  /** The registers a call to this address may write, when its code is known; otherwise every caller-saved one. */
  callWrites?: (target: number) => ReadonlySet<string> | null;
}

/* ------------------------------------------------------------------ */
/* One function: control flow and a forward data-flow pass */

export class FunctionModel {
  readonly name: string;
  readonly lines: DisasmLine[];
  readonly ops: Operand[][];
  readonly succ: number[][];
  /** rbp is a frame pointer (`mov %rsp,%rbp` in the prologue): rbp-relative memory is a stack slot. */
  readonly framePointer: boolean;
  readonly indirectJumps: number[];
  private readonly byAddress = new Map<number, number>();

  constructor(listing: DisasmListing, name: string) {
    this.name = listing.function ?? name;
    this.lines = listing.lines;
    this.ops = this.lines.map((l) => l.operands.map(parseOperand));
    this.lines.forEach((l, i) => this.byAddress.set(l.address, i));
    this.framePointer = this.lines.slice(0, 6).some((l) => l.mnemonic === 'mov' && l.operands.join(',') === '%rsp,%rbp');
    this.indirectJumps = this.lines.flatMap((l, i) => (isUnconditionalJump(l.mnemonic) && l.operands[0]?.startsWith('*') ? [i] : []));
    // Switch jump tables are not in the listing: an indirect jump may go to
    // any block that no direct edge reaches. Conservative, and exact for
    // the one-switch shape of fill_source_migration_info.
    const direct = this.lines.map((_, i) => this.directSuccessors(i));
    const seen = reach([0], direct);
    const leaders: number[] = [];
    for (let i = 0; i < this.lines.length; i++) {
      if (seen.has(i)) continue;
      const prev = this.lines[i - 1];
      if (i === 0 || seen.has(i - 1) || !prev || this.endsFlow(i - 1) || isNop(prev)) leaders.push(i);
    }
    this.succ = direct.map((s, i) => (this.indirectJumps.includes(i) ? leaders : s));
  }

  index(address: number): number | undefined {
    return this.byAddress.get(address);
  }

  private endsFlow(i: number): boolean {
    const l = this.lines[i];
    return isReturn(l.mnemonic) || isUnconditionalJump(l.mnemonic) || l.mnemonic === 'ud2' || l.mnemonic === 'hlt' || this.isNoreturnCall(i);
  }

  isNoreturnCall(i: number): boolean {
    const l = this.lines[i];
    return isCall(l.mnemonic) && NORETURN.has(symbolBase(l.targetSymbol) ?? '');
  }

  private directSuccessors(i: number): number[] {
    const l = this.lines[i];
    const next = i + 1 < this.lines.length ? [i + 1] : [];
    if (isReturn(l.mnemonic) || l.mnemonic === 'ud2' || l.mnemonic === 'hlt') return [];
    if (isJump(l.mnemonic)) {
      const t = l.target !== null ? this.byAddress.get(l.target) : undefined;
      const targets = t !== undefined ? [t] : [];
      return isUnconditionalJump(l.mnemonic) ? targets : [...next, ...targets];
    }
    if (this.isNoreturnCall(i)) return [];
    return next;
  }

  reachableFrom(i: number): Set<number> {
    return reach(this.succ[i], this.succ);
  }

  slotKey(op: Operand): string | null {
    if (op.kind !== 'mem' || op.index || op.seg) return null;
    if (op.base === 'rsp') return `slot:rsp:${op.disp}`;
    if (op.base === 'rbp' && this.framePointer) return `slot:rbp:${op.disp}`;
    return null;
  }

  /** The value a 32- or 64-bit load from memory operand `op` gives. */
  loadValue(i: number, op: Operand, width: number, st: State, ctx: Context): LabelSet {
    if (op.kind !== 'mem' || width < 32) return UNKNOWN;
    const slot = this.slotKey(op);
    if (slot) return get(st, slot);
    if (op.index || op.seg) return UNKNOWN;
    const l = this.lines[i];
    if (op.base === 'rip') {
      const a = l.commentAddress;
      if (a === null) return UNKNOWN;
      const g = ctx.global;
      if (g?.kind === 'pointer' && a === g.address && width === 64) return new Set(['S+0']);
      if (g?.kind === 'object' && a >= g.address && a - g.address < 0x10000 && width === 32) return new Set([`F:${a - g.address}@${i}`]);
      if (width === 64) return new Set([`P:${a}`]);
      return UNKNOWN;
    }
    if (!op.base) return UNKNOWN;
    const base = get(st, op.base);
    const k = uniformOffset(base, 'S');
    if (k !== null && width === 32) return new Set([`F:${k + op.disp}@${i}`]);
    if (ctx.offsetOnly !== null && width === 32 && op.disp === ctx.offsetOnly) return new Set([`F:${op.disp}@${i}`]);
    return UNKNOWN;
  }

  transfer(i: number, st: State, ctx: Context): State {
    const out: State = new Map(st);
    const l = this.lines[i];
    const ops = this.ops[i];
    const m = l.mnemonic;
    const last = ops[ops.length - 1];
    const clearSlots = (which: 'rsp' | 'all'): void => {
      for (const k of [...out.keys()]) if (k.startsWith(which === 'all' ? 'slot:' : 'slot:rsp:')) out.delete(k);
    };
    const setReg = (op: Operand | undefined, v: LabelSet): void => {
      if (!op || op.kind !== 'reg' || !isGpr(op.canon)) return;
      put(out, op.canon, op.width >= 32 ? v : UNKNOWN);
      if (op.canon === 'rsp') clearSlots('rsp');
    };
    const regValue = (op: Operand): LabelSet => (op.kind === 'reg' && op.width >= 32 ? get(st, op.canon) : UNKNOWN);
    const shift = (v: LabelSet, by: bigint): LabelSet => {
      for (const p of ['S', 'I'] as const) {
        const k = uniformOffset(v, p);
        if (k !== null && by > -0x100000n && by < 0x100000n) return new Set([`${p}+${k + Number(by)}`]);
      }
      return UNKNOWN;
    };

    if (m === 'mov' || m === 'movl' || m === 'movq' || m === 'movabs') {
      const [src, dst] = ops;
      if (dst?.kind === 'reg') {
        const v = src.kind === 'reg' ? regValue(src) : src.kind === 'mem' ? this.loadValue(i, src, dst.width, st, ctx) : UNKNOWN;
        setReg(dst, v);
      } else if (dst) {
        const slot = this.slotKey(dst);
        if (slot) put(out, slot, src.kind === 'reg' ? regValue(src) : UNKNOWN);
      }
      return out;
    }
    const stringOp = /^(stos|lods|scas|cmps)[bwlq]?$/.test(m) || (/^movs[bwlq]?$/.test(m) && ops.every((o) => o.kind === 'mem'));
    if (stringOp) {
      for (const r of ['rcx', 'rdi', 'rsi', 'rax']) out.delete(r);
      return out;
    }
    if (/^mov[sz]/.test(m) || m === 'movsxd') {
      const [src, dst] = ops;
      // A sign or zero extension keeps the value the state load gave.
      setReg(dst, src?.kind === 'reg' && src.width === 32 ? regValue(src) : src?.kind === 'mem' && /^movs(lq|xd)$/.test(m) ? this.loadValue(i, src, 32, st, ctx) : UNKNOWN);
      return out;
    }
    if (m === 'lea') {
      const [src, dst] = ops;
      let v: LabelSet = UNKNOWN;
      if (src.kind === 'mem' && !src.index) {
        const g = ctx.global;
        if (src.base === 'rip' && g?.kind === 'object' && l.commentAddress !== null && l.commentAddress >= g.address && l.commentAddress - g.address < 0x10000) {
          v = new Set([`S+${l.commentAddress - g.address}`]);
        } else if (src.base && src.base !== 'rip') {
          v = shift(get(st, src.base), BigInt(src.disp));
        }
      }
      setReg(dst, v);
      return out;
    }
    if ((m === 'add' || m === 'sub' || m === 'addq' || m === 'subq') && ops.length === 2) {
      const [src, dst] = ops;
      if (dst.kind === 'reg' && dst.canon === 'rsp') {
        clearSlots('rsp');
        return out;
      }
      if (src.kind === 'imm' && dst.kind === 'reg') setReg(dst, shift(get(st, dst.canon), m.startsWith('add') ? src.value : -src.value));
      else setReg(dst, UNKNOWN);
      return out;
    }
    if (m === 'xchg' && ops.length === 2 && ops[0].kind === 'reg' && ops[1].kind === 'reg') {
      const a = regValue(ops[0]);
      setReg(ops[0], regValue(ops[1]));
      setReg(ops[1], a);
      return out;
    }
    if (m.startsWith('cmov')) {
      const [src, dst] = ops;
      if (dst?.kind === 'reg') setReg(dst, union(get(st, dst.canon), src.kind === 'reg' ? regValue(src) : this.loadValue(i, src, dst.width, st, ctx)));
      return out;
    }
    if (isCall(m)) {
      // A callee whose code is known may leave some caller-saved registers alone, and gcc's IPA-RA relies on it.
      const writes = l.target !== null ? ctx.callWrites?.(l.target) ?? null : null;
      for (const r of CALLER_SAVED) if (!writes || writes.has(r)) out.delete(r);
      const callee = symbolBase(l.targetSymbol);
      if ((ctx.migrateGetCurrent !== null && l.target === ctx.migrateGetCurrent) || callee === 'migrate_get_current') {
        put(out, 'rax', new Set(['S+0']));
      } else if (i === ctx.allocSite) {
        put(out, 'rax', new Set(['I+0']));
      }
      return out;
    }
    if (m === 'push' || m === 'pushq') {
      clearSlots('rsp');
      return out;
    }
    if (m === 'pop' || m === 'popq') {
      setReg(ops[0], UNKNOWN);
      clearSlots('rsp');
      return out;
    }
    if (m === 'leave' || m === 'leaveq') {
      out.delete('rbp');
      clearSlots('all');
      return out;
    }
    if (m === 'cltq' || m === 'cdqe' || m === 'cwtl') return out;
    if (m === 'cqto' || m === 'cltd' || m === 'cqo' || m === 'cdq') {
      out.delete('rdx');
      return out;
    }
    if (/^(i?mul|i?div)[bwlq]?$/.test(m) && ops.length === 1) {
      out.delete('rax');
      out.delete('rdx');
      return out;
    }
    if (m.startsWith('cmpxchg')) {
      out.delete('rax');
      if (/^cmpxchg(8|16)b$/.test(m)) out.delete('rdx');
      if (last?.kind === 'reg') setReg(last, UNKNOWN);
      return out;
    }
    if (m === 'syscall') {
      for (const r of ['rax', 'rcx', 'r11']) out.delete(r);
      return out;
    }
    if (m === 'cpuid' || m === 'rdtsc' || m === 'rdtscp') {
      for (const r of ['rax', 'rbx', 'rcx', 'rdx']) out.delete(r);
      return out;
    }
    if (m === 'xadd' && ops.length === 2) {
      setReg(ops[0], UNKNOWN);
      setReg(ops[1], UNKNOWN);
      return out;
    }
    // Instructions that only read their operands.
    if (/^(cmp|test|bt[lqw]?$|j|ret|nop|endbr|hlt|ud2|int3|pause|[lsm]fence|prefetch|push)/.test(m)) return out;
    // Everything else writes its last operand, if that is a register.
    if (last?.kind === 'reg') setReg(last, UNKNOWN);
    if (last?.kind === 'mem') {
      const slot = this.slotKey(last);
      if (slot) out.delete(slot);
    }
    return out;
  }

  /**
   * The general-purpose registers instruction i may write: the transfer
   * function run on a state where each register holds only its own name.
   */
  writes(i: number, ctx: Context): string[] {
    const marked: State = new Map(GPRS.map((r) => [r, new Set([`R:${r}`])]));
    const out = this.transfer(i, marked, ctx);
    return GPRS.filter((r) => {
      const v = out.get(r);
      return !v || v.size !== 1 || !v.has(`R:${r}`);
    });
  }

  /** In-states per instruction (undefined: not reached). */
  dataflow(entry: State, ctx: Context): Array<State | undefined> {
    const ins: Array<State | undefined> = new Array(this.lines.length).fill(undefined);
    if (this.lines.length === 0) return ins;
    ins[0] = entry;
    const work = [0];
    const queued = new Set([0]);
    let steps = 0;
    while (work.length > 0) {
      // The lattice is finite; this only guards against a bug turning into a hang.
      if (++steps > 200_000) break;
      const i = work.shift()!;
      queued.delete(i);
      const out = this.transfer(i, ins[i]!, ctx);
      for (const s of this.succ[i]) {
        const prev = ins[s];
        const next = prev ? joinStates(prev, out) : out;
        if (!prev || !sameStates(prev, next)) {
          ins[s] = next;
          if (!queued.has(s)) {
            queued.add(s);
            work.push(s);
          }
        }
      }
    }
    return ins;
  }

  /** 32-bit accesses of MigrationState fields: loads into a register, and compares. */
  fieldAccesses(ins: Array<State | undefined>, ctx: Context): Array<{ idx: number; off: number; load: boolean; dst: Operand | null }> {
    const found: Array<{ idx: number; off: number; load: boolean; dst: Operand | null }> = [];
    this.lines.forEach((l, i) => {
      const st = ins[i];
      if (!st) return;
      const ops = this.ops[i];
      const m = l.mnemonic;
      if ((m === 'mov' || m === 'movl' || m === 'movslq') && ops.length === 2 && ops[0].kind === 'mem' && ops[1].kind === 'reg') {
        const width = m === 'movslq' ? 32 : ops[1].width;
        for (const lab of this.loadValue(i, ops[0], width, st, ctx)) {
          const f = parseFieldLabel(lab);
          if (f && f.idx === i) found.push({ idx: i, off: f.off, load: true, dst: ops[1] });
        }
        return;
      }
      const memAt = ops.findIndex((o) => o.kind === 'mem');
      if (/^cmp[l]?$/.test(m) && ops.length === 2 && memAt >= 0) {
        const other = ops[1 - memAt];
        const width = m === 'cmpl' || (other.kind === 'reg' && other.width === 32) ? 32 : 0;
        for (const lab of this.loadValue(i, ops[memAt], width, st, ctx)) {
          const f = parseFieldLabel(lab);
          if (f && f.idx === i) found.push({ idx: i, off: f.off, load: false, dst: null });
        }
      }
    });
    return found;
  }

  /**
   * Every instruction that reads the state field (`off` of MigrationState,
   * any width within its 4 bytes): a load into a register, a cmp or test
   * against it, or another instruction taking it as a source. Stores and
   * atomic exchanges are writes, and `lea` reads nothing.
   */
  stateReads(ins: Array<State | undefined>, ctx: Context, off: number): StateRead[] {
    const found: StateRead[] = [];
    this.lines.forEach((l, i) => {
      const st = ins[i];
      if (!st) return;
      const m = l.mnemonic;
      if (m === 'lea' || isNop(l) || /^(cmpxchg|xchg|xadd)/.test(m) || l.prefixes.includes('lock')) return;
      const ops = this.ops[i];
      ops.forEach((op, at) => {
        if (op.kind !== 'mem' || op.index || op.seg) return;
        const field = this.fieldOf(i, op, st, ctx);
        if (field === null || field < off || field >= off + 4) return;
        const isLast = at === ops.length - 1;
        let access: StateRead['access'];
        if (/^(cmp|test)/.test(m)) access = 'compare';
        else if (/^mov/.test(m) && isLast) return; // a store into the state
        else if (/^mov/.test(m) && ops[ops.length - 1]?.kind === 'reg') access = 'load';
        else access = 'other';
        found.push({ idx: i, access, mem: op, dst: access === 'load' ? ops[ops.length - 1] : null });
      });
    });
    return found;
  }

  /** The MigrationState field offset a memory operand addresses, or null when it is not MigrationState. */
  private fieldOf(i: number, op: Extract<Operand, { kind: 'mem' }>, st: State, ctx: Context): number | null {
    if (op.base === 'rip') {
      const a = this.lines[i].commentAddress;
      const g = ctx.global;
      return g?.kind === 'object' && a !== null && a >= g.address && a - g.address < 0x10000 ? a - g.address : null;
    }
    if (!op.base || (op.base === 'rsp' || (op.base === 'rbp' && this.framePointer))) return null;
    const k = uniformOffset(get(st, op.base), 'S');
    return k === null ? null : k + op.disp;
  }
}

export interface StateRead {
  idx: number;
  access: 'load' | 'compare' | 'other';
  mem: Extract<Operand, { kind: 'mem' }>;
  /** The register a load writes. */
  dst: Operand | null;
}

export function reach(starts: number[], succ: number[][]): Set<number> {
  const seen = new Set<number>();
  const stack = [...starts];
  while (stack.length > 0) {
    const i = stack.pop()!;
    if (seen.has(i)) continue;
    seen.add(i);
    for (const s of succ[i] ?? []) if (!seen.has(s)) stack.push(s);
  }
  return seen;
}

