import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync, unlinkSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { MigraceError } from '../../trace/errors.js';
import { track } from '../reaper.js';
import { tableIdFor } from '../../trace/status.js';
import type { Variant } from '../../trace/schema.js';
import {
  describe, gdbRegister, hex, isCall, isGpr, isJump, isNop, isReturn, isUnconditionalJump, parseDisassembly,
  parseOperand, type DisasmLine, type DisasmListing, type Operand,
} from './disasm.js';
import { readElfInfo, type ElfInfo } from './elf.js';
import { ProfileSchema, type Probe, type Profile } from './profile.js';

/**
 * Probe discovery: where to stop in a QEMU binary to see the state read
 * that decides the query-migrate reply and the stores that publish a
 * status, found from gdb's disassembly so that stripped distribution builds
 * work. The pure part (analyzeDisassembly, buildProfile) takes gdb's text;
 * discoverProfile runs gdb, asks the binary its version and caches the
 * result by build-id.
 */

/** Functions asked from gdb up front. The helpers only serve to find the state offset. */
export const REQUIRED_FUNCTIONS = ['migrate_set_state', 'qmp_query_migrate'] as const;
export const OFFSET_HELPERS = ['migration_in_setup', 'migration_is_active', 'migration_has_failed', 'migration_is_running'] as const;
export const FIRST_PASS_FUNCTIONS = [...REQUIRED_FUNCTIONS, 'migrate_get_current', ...OFFSET_HELPERS];

/**
 * Bumped whenever discovery would place probes differently: cached profiles
 * from an older revision are rediscovered rather than trusted.
 */
export const DISCOVERY_REVISION = 1;
const REVISION_NOTE = `discovery revision ${DISCOVERY_REVISION}`;

/** `info->status` sits after `bool has_status` in every QAPI-generated MigrationInfo we have seen. */
export const STATUS_FIELD_OFFSET = 4;

/** Allocators QEMU (g_malloc0 / g_new0) and minimig (calloc) use for the reply. */
const ALLOCATORS = new Set(['g_malloc0', 'g_malloc0_n', 'g_try_malloc0', 'g_try_malloc0_n', 'calloc']);
const NORETURN = new Set([
  'abort', 'exit', '_exit', '__stack_chk_fail', '__assert_fail', 'g_assertion_message_expr',
  'g_assertion_message', 'g_assertion_message_cmpnum', 'error_exit', '__fortify_fail',
]);

export interface DisassemblyInput {
  /** gdb's `disassemble` text per function; null when gdb had no such symbol. */
  listings: Record<string, string | null>;
  /** The binary has DWARF (in the file or a separate debug file gdb loads). */
  debugInfo: boolean;
  /** offsetof(MigrationState, state) as gdb reports it from debug info. */
  debugStateOffset?: number | null;
  statusFieldOffset?: number;
  /** Only for messages. */
  binary?: string;
}

export interface GlobalInfo {
  address: number;
  /** pointer: the global holds MigrationState* (QEMU's current_migration); object: it is the MigrationState (minimig). */
  kind: 'pointer' | 'object';
  line: string;
}

export interface PointFinding {
  fn: string;
  /** Offset of the instruction the probe is placed at. */
  offset: number;
  location: string;
  register: string;
  value: string;
  why: string;
}

export interface StoreFinding extends PointFinding {
  sources: Array<{ kind: 'read' | 're-read' | 'other'; offset: number | null; text: string }>;
}

export interface Analysis {
  stateOffset: number | null;
  /** The offset the analysis worked with: stateOffset, or one inferred from the read when nothing else said. */
  workingStateOffset: number;
  stateOffsetWhy: string;
  global: GlobalInfo | null;
  migrateGetCurrent: number | null;
  stateAddrExpr: string | null;
  transition: Probe;
  read: PointFinding;
  publishes: StoreFinding[];
  query: Probe;
  variant: Variant;
  variantWhy: string;
  /** Every finding, in order, as the report prints it. */
  notes: string[];
}

/* ------------------------------------------------------------------ */
/* Abstract values: which registers hold MigrationState*, the reply, or a state load */

/**
 * Labels: `S+k` (pointer to MigrationState plus k), `I+k` (pointer to the
 * reply plus k), `F:off@idx` (a 32-bit load of MigrationState+off at
 * instruction idx), `P:addr` (pointer loaded from another global), `?`.
 */
type Label = string;
type LabelSet = ReadonlySet<Label>;
type State = Map<string, LabelSet>;

const UNKNOWN: LabelSet = new Set(['?']);
const MAX_LABELS = 16;

function get(st: State, key: string): LabelSet {
  return st.get(key) ?? UNKNOWN;
}

function put(st: State, key: string, v: LabelSet): void {
  if (v.size === 1 && v.has('?')) st.delete(key);
  else st.set(key, v.size > MAX_LABELS ? UNKNOWN : v);
}

function union(a: LabelSet, b: LabelSet): LabelSet {
  if (a === b) return a;
  const out = new Set(a);
  for (const x of b) out.add(x);
  return out;
}

function joinStates(a: State, b: State): State {
  const out: State = new Map();
  for (const k of new Set([...a.keys(), ...b.keys()])) put(out, k, union(get(a, k), get(b, k)));
  return out;
}

function sameStates(a: State, b: State): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w || w.size !== v.size) return false;
    for (const x of v) if (!w.has(x)) return false;
  }
  return true;
}

/** The common k when every label is `PREFIX+k` with the same k. */
function uniformOffset(set: LabelSet, prefix: 'S' | 'I'): number | null {
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

function uniformGlobal(set: LabelSet): number | null {
  let g: number | null = null;
  for (const l of set) {
    const m = /^P:(\d+)$/.exec(l);
    if (!m) return null;
    if (g !== null && g !== Number(m[1])) return null;
    g = Number(m[1]);
  }
  return g;
}

function parseFieldLabel(l: Label): { off: number; idx: number } | null {
  const m = /^F:(-?\d+)@(\d+)$/.exec(l);
  return m ? { off: Number(m[1]), idx: Number(m[2]) } : null;
}

const CALLER_SAVED = ['rax', 'rcx', 'rdx', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11'];
const ARG_REGS = ['rdi', 'rsi', 'rdx', 'rcx', 'r8', 'r9'];

function symbolBase(sym: string | null): string | null {
  if (!sym) return null;
  return sym.replace(/[+-]\d+$/, '').replace(/@plt$/, '');
}

interface Context {
  global: GlobalInfo | null;
  migrateGetCurrent: number | null;
  /** Index of the call whose result is the reply, or -1. */
  allocSite: number;
  /** No MigrationState pointer could be traced: match state loads by offset alone. */
  offsetOnly: number | null;
}

/* ------------------------------------------------------------------ */
/* One function: control flow and a forward data-flow pass */

class FunctionModel {
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
      for (const r of CALLER_SAVED) out.delete(r);
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
}

function reach(starts: number[], succ: number[][]): Set<number> {
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

function at(model: FunctionModel, i: number): string {
  return describe(model.lines[i]);
}

function probesError(binary: string | undefined, what: string): MigraceError {
  const b = binary ? `${binary}: ` : '';
  return new MigraceError(
    'PROBES',
    `${b}${what}. migrace cannot place its probes automatically in this binary; write a profile by hand and pass it with --profile FILE`,
  );
}

/* ------------------------------------------------------------------ */
/* The pure analysis */

function listingOf(input: DisassemblyInput, fn: string): DisasmListing | null {
  const text = input.listings[fn];
  if (!text) return null;
  const listing = parseDisassembly(text);
  return listing.lines.length > 0 ? listing : null;
}

/** Skip endbr64 and a frame-pointer prologue: the body starts after them. */
function bodyStart(lines: DisasmLine[]): number {
  let i = 0;
  while (i < lines.length) {
    const l = lines[i];
    if (l.mnemonic === 'endbr64' || (l.mnemonic === 'push' && l.operands[0] === '%rbp') || (l.mnemonic === 'mov' && l.operands.join(',') === '%rsp,%rbp')) i++;
    else break;
  }
  return i;
}

/** migrate_get_current: `mov X(%rip),%rax  # G` (QEMU) or `lea X(%rip),%rax  # G` (a static object). */
export function findGlobal(listing: DisasmListing): GlobalInfo | null {
  const lines = listing.lines;
  for (let i = bodyStart(lines); i < Math.min(lines.length, bodyStart(lines) + 4); i++) {
    const l = lines[i];
    const [src, dst] = l.operands.map(parseOperand);
    if (dst?.kind === 'reg' && dst.canon === 'rax' && src?.kind === 'mem' && src.base === 'rip' && l.commentAddress !== null) {
      if (l.mnemonic === 'mov' && dst.width === 64) return { address: l.commentAddress, kind: 'pointer', line: describe(l) };
      if (l.mnemonic === 'lea') return { address: l.commentAddress, kind: 'object', line: describe(l) };
    }
  }
  return null;
}

interface OffsetEvidence {
  fn: string;
  off: number;
  line: string;
}

/** The first 32-bit access of a MigrationState field in a helper that takes `MigrationState *s` or reads the global. */
function offsetFromHelper(fn: string, listing: DisasmListing, base: Omit<Context, 'allocSite' | 'offsetOnly'>): OffsetEvidence | null {
  const model = new FunctionModel(listing, fn);
  const ctx: Context = { ...base, allocSite: -1, offsetOnly: null };
  const entry: State = new Map([['rdi', new Set(['S+0'])]]);
  const access = model.fieldAccesses(model.dataflow(entry, ctx), ctx).sort((a, b) => a.idx - b.idx)[0];
  if (!access) return null;
  // migration_in_setup is exactly `s->state == MIGRATION_STATUS_SETUP`: a compare with 1, or (at -O0) a load then the compare.
  const first = model.lines[access.idx];
  if (fn === 'migration_in_setup' && !access.load && !(first.mnemonic.startsWith('cmp') && first.operands[0] === '$0x1')) return null;
  return { fn, off: access.off, line: at(model, access.idx) };
}

interface ReadSearch {
  model: FunctionModel;
  ins: Array<State | undefined>;
  ctx: Context;
  loads: Array<{ idx: number; off: number; dst: Operand | null }>;
}

function searchReads(model: FunctionModel, entry: State, ctx: Context, stateOffset: number | null): ReadSearch {
  const ins = model.dataflow(entry, ctx);
  const loads = model.fieldAccesses(ins, ctx).filter((a) => a.load && (stateOffset === null || a.off === stateOffset));
  return { model, ins, ctx, loads };
}

function tracesMigrationState(ins: Array<State | undefined>): boolean {
  return ins.some((st) => st && [...st.values()].some((v) => [...v].some((l) => l.startsWith('S+'))));
}

export function analyzeDisassembly(input: DisassemblyInput): Analysis {
  const notes: string[] = [];
  const statusOff = input.statusFieldOffset ?? STATUS_FIELD_OFFSET;

  const missing = REQUIRED_FUNCTIONS.filter((f) => !listingOf(input, f));
  if (missing.length > 0) {
    const all = Object.values(input.listings).every((t) => !t);
    throw probesError(
      input.binary,
      `${missing.map((f) => `symbol ${f}`).join(' and ')} not found${all ? ' (gdb found none of the QEMU migration functions: not a QEMU system emulator, or stripped of its dynamic symbols)' : ''}; ` +
        `migrace needs ${missing.join(' and ')} for the transition and read probes`,
    );
  }
  const setState = listingOf(input, 'migrate_set_state')!;
  const qmp = listingOf(input, 'qmp_query_migrate')!;

  const mgcListing = listingOf(input, 'migrate_get_current');
  const migrateGetCurrent = mgcListing?.lines[0]?.address ?? null;
  const global = mgcListing ? findGlobal(mgcListing) : null;
  if (global) {
    notes.push(`MigrationState: migrate_get_current ${global.kind === 'pointer' ? 'returns the pointer held in' : 'returns the address of'} the global at ${hex(global.address)} (${global.line})`);
  } else if (mgcListing) {
    notes.push('MigrationState: migrate_get_current does not start with a rip-relative load; only calls to it identify MigrationState pointers');
  } else {
    notes.push('MigrationState: migrate_get_current not found; MigrationState pointers cannot be traced, state loads are matched by offset alone');
  }
  const base = { global, migrateGetCurrent };

  // The state offset: debug info first, then the exported helpers, in the order of how directly they say it.
  const evidence: OffsetEvidence[] = [];
  for (const fn of OFFSET_HELPERS) {
    const l = listingOf(input, fn);
    if (!l) continue;
    const e = offsetFromHelper(fn, l, base);
    if (e) evidence.push(e);
  }
  let stateOffset: number | null = null;
  let stateOffsetWhy = '';
  if (input.debugStateOffset !== undefined && input.debugStateOffset !== null) {
    stateOffset = input.debugStateOffset;
    stateOffsetWhy = `offsetof(MigrationState, state) = ${hex(stateOffset)} from debug info`;
  } else if (evidence.length > 0) {
    stateOffset = evidence[0].off;
    stateOffsetWhy = `state offset ${hex(stateOffset)} from ${evidence[0].fn}: ${evidence[0].line}`;
  }
  for (const e of evidence) {
    if (stateOffset !== null && e.off !== stateOffset) {
      notes.push(`warning: ${e.fn} reads MigrationState+${hex(e.off)} (${e.line}), not the state offset ${hex(stateOffset)}; kept ${hex(stateOffset)}`);
    }
  }
  const agreeing = evidence.filter((e) => e.off === stateOffset && !stateOffsetWhy.includes(`from ${e.fn}:`)).map((e) => e.fn);
  if (stateOffset !== null) {
    notes.push(stateOffsetWhy + (agreeing.length > 0 ? ` (${agreeing.join(', ')} ${agreeing.length === 1 ? 'agrees' : 'agree'})` : ''));
  }
  const tried = OFFSET_HELPERS.map((f) => `${f} ${listingOf(input, f) ? 'has no MigrationState field access' : 'absent'}`);

  // The read: the first load of the state into a register on the source path of qmp_query_migrate.
  const qmpModel = new FunctionModel(qmp, 'qmp_query_migrate');
  const allocSite = qmpModel.lines.findIndex((l) => isCall(l.mnemonic) && ALLOCATORS.has(symbolBase(l.targetSymbol) ?? ''));
  let ctx: Context = { ...base, allocSite, offsetOnly: null };
  let search = searchReads(qmpModel, new Map(), ctx, stateOffset);
  if (search.loads.length === 0 && stateOffset !== null && !tracesMigrationState(search.ins)) {
    ctx = { ...ctx, offsetOnly: stateOffset };
    search = searchReads(qmpModel, new Map(), ctx, stateOffset);
    if (search.loads.length > 0) notes.push(`warning: no MigrationState pointer traced in qmp_query_migrate; state loads matched by offset ${hex(stateOffset)} alone`);
  }
  const searchedIn = ['qmp_query_migrate'];
  if (search.loads.length === 0) {
    // fill_source_migration_info is inlined in distribution builds; at -O0 or with noinline it is a callee.
    for (let i = 0; i < qmpModel.lines.length && search.loads.length === 0; i++) {
      const l = qmpModel.lines[i];
      const callee = symbolBase(l.targetSymbol);
      if (!isCall(l.mnemonic) || !callee || l.targetSymbol?.endsWith('@plt') || callee === 'migrate_get_current') continue;
      const listing = listingOf(input, callee);
      if (!listing) continue;
      searchedIn.push(callee);
      const callerState = search.ins[i];
      const entry: State = new Map();
      for (const r of ARG_REGS) if (callerState?.has(r)) put(entry, r, callerState.get(r)!);
      const model = new FunctionModel(listing, callee);
      const cctx: Context = { ...base, allocSite: -1, offsetOnly: null };
      const found = searchReads(model, entry, cctx, stateOffset);
      if (found.loads.length > 0) {
        notes.push(`qmp_query_migrate calls ${callee} (${describe(l)}): the source part is there, not inlined`);
        search = found;
      }
    }
  }
  if (search.loads.length === 0) {
    const what = stateOffset !== null
      ? `no load of MigrationState.state (offset ${hex(stateOffset)}) into a register in ${searchedIn.join(' or ')}`
      : `no state offset (${tried.join('; ')}; no debug info) and no load of a MigrationState field into a register in ${searchedIn.join(' or ')}`;
    throw probesError(input.binary, `pattern not found: ${what}, so there is no read point`);
  }

  const { model, ins } = search;
  const firsts = search.loads.filter((c) => !search.loads.some((o) => o.idx !== c.idx && model.reachableFrom(o.idx).has(c.idx)));
  const chosen = (firsts.length > 0 ? firsts : search.loads).sort((a, b) => a.idx - b.idx)[0];
  if (firsts.length !== 1) {
    notes.push(`warning: ${firsts.length === 0 ? 'every state load is reachable from another' : `${firsts.length} state loads come first on some path`}; took the lowest address, ${at(model, chosen.idx)}`);
  }
  const workingStateOffset = stateOffset ?? chosen.off;
  if (stateOffset === null) {
    notes.push(
      `state offset unknown (${tried.join('; ')}; no debug info): assumed ${hex(chosen.off)} from the first MigrationState field load in ${model.name}; ` +
        'it must be confirmed from the first migrate_set_state hit as `$rdi - (long)migrate_get_current()`',
    );
  }
  const readIdx = chosen.idx;
  const next = model.lines[readIdx + 1];
  if (!next) throw probesError(input.binary, `pattern not found: the state load ${at(model, readIdx)} is the last instruction of ${model.name}`);
  const readReg = chosen.dst!.kind === 'reg' ? chosen.dst!.reg : '';
  const readLoc = `*${model.name}+${next.offset}`;
  const read: PointFinding = {
    fn: model.name,
    offset: next.offset,
    location: readLoc,
    register: readReg,
    value: gdbRegister(readReg),
    why: `${at(model, readIdx)} loads MigrationState.state (offset ${hex(workingStateOffset)}) first on the source path of ${model.name}; ` +
      `stopped on the next instruction (+${next.offset}), ${gdbRegister(readReg)} holds the value the switch uses`,
  };
  notes.push(`read: ${readLoc}, value ${read.value}: ${read.why}`);
  const others = search.loads.filter((c) => c.idx !== readIdx);
  if (others.length > 0) notes.push(`re-reads of the state after it: ${others.map((c) => `+${model.lines[c.idx].offset}`).join(', ')}`);

  // Loads of another object's 32-bit fields ahead of the read: the destination side (current_incoming).
  const skipped: string[] = [];
  model.lines.forEach((l, i) => {
    const st = ins[i];
    const ops = model.ops[i];
    if (!st || i >= readIdx || l.mnemonic !== 'mov' || ops[0]?.kind !== 'mem' || ops[1]?.kind !== 'reg' || ops[1].width !== 32) return;
    const src = ops[0];
    if (!src.base || src.base === 'rip' || src.index) return;
    const g = uniformGlobal(get(st, src.base));
    if (g !== null && skipped.length < 3) skipped.push(`${at(model, i)} (%${src.base} from the global at ${hex(g)}, not MigrationState)`);
  });
  if (skipped.length > 0) notes.push(`not the source state: ${skipped.join('; ')} -- the destination side (current_incoming), read first`);

  // Publishes: stores of a 32-bit register into info->status reached from the read.
  const afterRead = model.reachableFrom(readIdx);
  const tracesReply = ins.some((st) => st && [...st.values()].some((v) => [...v].some((x) => x.startsWith('I+'))));
  if (!tracesReply) notes.push(`warning: the reply allocation was not traced in ${model.name}; any store to offset ${statusOff} counts as info->status`);
  const publishes: StoreFinding[] = [];
  const otherStores: string[] = [];
  model.lines.forEach((l, i) => {
    const st = ins[i];
    const ops = model.ops[i];
    if (!st || !afterRead.has(i) || !(l.mnemonic === 'mov' || l.mnemonic === 'movl') || ops.length !== 2) return;
    const [src, dst] = ops;
    if (dst.kind !== 'mem' || !dst.base || dst.index || dst.base === 'rip') return;
    const k = uniformOffset(get(st, dst.base), 'I');
    const toStatus = tracesReply ? k !== null && k + dst.disp === statusOff : dst.disp === statusOff;
    if (!toStatus) return;
    if (src.kind !== 'reg' || src.width !== 32) {
      otherStores.push(at(model, i));
      return;
    }
    const sources: StoreFinding['sources'] = [];
    for (const lab of get(st, src.canon)) {
      const f = parseFieldLabel(lab);
      if (f && f.off === workingStateOffset) {
        sources.push({ kind: f.idx === readIdx ? 'read' : 're-read', offset: model.lines[f.idx].offset, text: at(model, f.idx) });
      } else {
        sources.push({ kind: 'other', offset: f ? model.lines[f.idx].offset : null, text: lab === '?' ? 'an untraced value' : lab });
      }
    }
    if (!sources.some((s) => s.kind !== 'other')) {
      if (!tracesReply) return;
      otherStores.push(at(model, i));
      return;
    }
    sources.sort((a, b) => (a.offset ?? -1) - (b.offset ?? -1));
    const rereads = sources.filter((s) => s.kind === 're-read');
    const fromRead = sources.some((s) => s.kind === 'read');
    const parts: string[] = [];
    const distance = (s: { offset: number | null }): string => {
      const d = s.offset === null ? -1 : l.offset - s.offset;
      return d > 0 && d <= 64 ? `, ${d} bytes before` : ', reached by a jump';
    };
    if (rereads.length > 0) parts.push(`a fresh re-read of the state: ${rereads.map((s) => `${s.text}${distance(s)}`).join('; ')}`);
    if (fromRead) parts.push(`the switch read at +${model.lines[readIdx].offset}`);
    if (sources.some((s) => s.kind === 'other')) parts.push('on some path a value not traced to the state');
    publishes.push({
      fn: model.name,
      offset: l.offset,
      location: `*${model.name}+${l.offset}`,
      register: src.reg,
      value: gdbRegister(src.reg),
      sources,
      why: `${at(model, i)} stores ${gdbRegister(src.reg)} into info->status (offset ${statusOff} of the reply); the value is ${parts.join(', or ')}`,
    });
  });
  for (const p of publishes) notes.push(`publish: ${p.location}, value ${p.value}: ${p.why}`);
  if (otherStores.length > 0) notes.push(`stores into info->status not traced to the state (not probed): ${otherStores.join('; ')}`);

  let variant: Variant;
  let variantWhy: string;
  const rereading = publishes.filter((p) => p.sources.some((s) => s.kind === 're-read'));
  if (publishes.length === 0) {
    variant = 'unknown';
    variantWhy = `no store of the state into info->status was found after the read in ${model.name}; the reply is the only evidence`;
  } else if (rereading.length > 0) {
    variant = 'unpatched';
    variantWhy = `${rereading.length} of ${publishes.length} status stores publish a fresh re-read of the state (${rereading.map((p) => `+${p.offset}`).join(', ')}), not the value the switch read: the code before 552de79b ("migration: Read state once")`;
  } else if (publishes.every((p) => p.sources.every((s) => s.kind === 'read'))) {
    variant = 'patched';
    variantWhy = `every status store (${publishes.map((p) => `+${p.offset}`).join(', ')}) publishes the value read once for the switch at +${model.lines[readIdx].offset}: upstream 552de79b ("migration: Read state once")`;
  } else {
    variant = 'unknown';
    variantWhy = 'the status stores publish the switch read on some paths and an untraced value on others';
  }
  notes.push(`variant: ${variant}: ${variantWhy}`);

  // Transition: the compare-and-swap on *state.
  const cas = setState.lines.find((l) => l.mnemonic.startsWith('cmpxchg'));
  const casWhy = cas ? `; its compare-and-swap is ${describe(cas)}` : '';
  const transition: Probe = input.debugInfo
    ? {
        name: 'transition', role: 'transition', locations: ['migrate_set_state'],
        values: { addr: 'state', old: 'old_state', new: 'new_state' },
        why: `debug info: entry of migrate_set_state, its parameters by name (state, old_state, new_state)${casWhy}`,
      }
    : {
        name: 'transition', role: 'transition', locations: ['migrate_set_state'],
        values: { addr: '$rdi', old: '$esi', new: '$edx' },
        why: `exported symbol migrate_set_state(int *state, int old_state, int new_state), x86-64 SysV arguments at entry: $rdi, $esi, $edx${casWhy}`,
      };
  notes.push(`transition: migrate_set_state, ${Object.entries(transition.values).map(([k, v]) => `${k}=${v}`).join(' ')}${input.debugInfo ? ' (debug info)' : ' (no debug info: ABI registers)'}`);

  const query: Probe = {
    name: 'query', role: 'query', locations: ['qmp_query_migrate'], values: {},
    why: 'entry of qmp_query_migrate: opens the query window',
  };

  let stateAddrExpr: string | null = null;
  if (stateOffset !== null && global && migrateGetCurrent !== null) {
    const sign = (n: number): string => (n < 0 ? `- ${hex(-n)}` : `+ ${hex(n)}`);
    // Relative to a symbol so that it holds for a PIE loaded anywhere, with no inferior call.
    stateAddrExpr = global.kind === 'pointer'
      ? `(int *)(*(char **)((char *)migrate_get_current ${sign(global.address - migrateGetCurrent)}) + ${hex(stateOffset)})`
      : `(int *)((char *)migrate_get_current ${sign(global.address - migrateGetCurrent + stateOffset)})`;
    notes.push(`state address: ${stateAddrExpr}`);
  } else {
    notes.push('state address: not known statically; take it from the first migrate_set_state hit ($rdi)');
  }

  return {
    stateOffset, workingStateOffset, stateOffsetWhy: stateOffsetWhy || `assumed ${hex(workingStateOffset)} (see notes)`,
    global, migrateGetCurrent, stateAddrExpr, transition, read, publishes, query, variant, variantWhy, notes,
  };
}

/** Names of direct callees of qmp_query_migrate worth disassembling when the read is not inlined. */
export function calleesToInspect(listings: Record<string, string | null>): string[] {
  const text = listings.qmp_query_migrate;
  if (!text) return [];
  const listing = parseDisassembly(text);
  const names = new Set<string>();
  for (const l of listing.lines) {
    if (!isCall(l.mnemonic) || !l.targetSymbol || l.targetSymbol.endsWith('@plt')) continue;
    const name = symbolBase(l.targetSymbol);
    if (name && !(name in listings) && /^[A-Za-z_]\w*$/.test(name)) names.add(name);
  }
  return [...names].slice(0, 12);
}

export interface ProfileMeta {
  binary: string | null;
  buildId: string | null;
  qemuVersion: string | null;
  /** What the binary printed for -version, for the report. */
  versionLine?: string | null;
}

export function buildProfile(a: Analysis, meta: ProfileMeta): Profile {
  const byRegister = new Map<string, StoreFinding[]>();
  for (const p of a.publishes) byRegister.set(p.value, [...(byRegister.get(p.value) ?? []), p]);
  const publishProbes: Probe[] = [...byRegister.entries()].map(([value, stores]) => ({
    name: byRegister.size === 1 ? 'publish' : `publish-${value.slice(1)}`,
    role: 'publish',
    locations: stores.map((s) => s.location),
    values: { value },
    why: stores.map((s) => s.why).join(' | '),
  }));
  const tableId = tableIdFor(meta.qemuVersion);
  const notes = [...a.notes];
  notes.push(REVISION_NOTE);
  notes.push(meta.qemuVersion
    ? `QEMU ${meta.qemuVersion}${meta.versionLine ? ` (${meta.versionLine})` : ''}: MigrationStatus table ${tableId}`
    : `no QEMU version (the binary printed no "QEMU emulator version"): MigrationStatus table ${tableId}`);
  return ProfileSchema.parse({
    format: 'migrace-profile',
    version: 1,
    kind: 'address',
    binary: meta.binary,
    build_id: meta.buildId,
    qemu_version: meta.qemuVersion,
    status_table: tableId,
    variant: a.variant,
    state_offset: a.stateOffset,
    state_addr_expr: a.stateAddrExpr,
    probes: [
      a.transition,
      { name: 'read', role: 'read', locations: [a.read.location], values: { value: a.read.value }, why: a.read.why },
      ...publishProbes,
      a.query,
    ],
    notes,
  });
}

/* ------------------------------------------------------------------ */
/* Effects: gdb, -version, the cache */

export interface DiscoverOptions {
  /** Environment for running the binary (LD_LIBRARY_PATH for a fetched build). */
  env?: Record<string, string | undefined>;
  /** Where cached profiles live; default $XDG_CACHE_HOME/migrace/profiles. */
  cacheDir?: string;
  /** Ignore a cached profile and rediscover. */
  refresh?: boolean;
  gdb?: string;
  timeoutMs?: number;
}

export interface DiscoveryResult {
  profile: Profile;
  /** What was found and why, one finding a line. */
  report: string[];
  cached: boolean;
  ms: number;
  cacheFile: string | null;
  elf: ElfInfo;
}

export function defaultCacheDir(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  const base = xdg && xdg.startsWith('/') ? xdg : join(homedir(), '.cache');
  return join(base, 'migrace', 'profiles');
}

/** A hand-written profile (--profile FILE): every problem names its field. */
export function loadProfileFile(path: string): Profile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new MigraceError(code === 'ENOENT' ? 'NOT_FOUND' : 'BAD_INPUT', `profile ${path}: cannot read it (${code ?? String(e)})`);
  }
  return parseProfileText(text, `profile ${path}`);
}

export function parseProfileText(text: string, what: string): Profile {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new MigraceError('BAD_INPUT', `${what}: not valid JSON (${(e as Error).message})`);
  }
  const parsed = ProfileSchema.safeParse(data);
  if (!parsed.success) {
    const problems = parsed.error.issues.slice(0, 8).map((i) => `${i.path.length > 0 ? i.path.join('.') : '(top level)'}: ${i.message}`);
    const more = parsed.error.issues.length > 8 ? ` (and ${parsed.error.issues.length - 8} more)` : '';
    throw new MigraceError('BAD_INPUT', `${what}: not a valid migrace profile: ${problems.join('; ')}${more}`);
  }
  return parsed.data;
}

/** What execa says about a run, the part that matters for a message. */
interface RunResult {
  failed?: boolean;
  code?: string;
  exitCode?: number;
  signal?: string;
  timedOut?: boolean;
  shortMessage?: string;
  originalMessage?: string;
}

/** The errno code (ENOENT, EACCES, ...) when the program could not be started at all, else null. */
function spawnFailure(r: RunResult): string | null {
  return r.failed && r.exitCode === undefined && !r.signal && !r.timedOut && typeof r.code === 'string' ? r.code : null;
}

function describeFailure(r: RunResult): string {
  const m = r.originalMessage ?? r.shortMessage ?? '';
  return m ? ` (${m})` : '';
}

function exitText(r: RunResult): string {
  if (r.timedOut) return 'timed out';
  if (r.exitCode !== undefined) return `exit ${r.exitCode}`;
  if (r.signal) return `killed by ${r.signal}`;
  return r.shortMessage ?? 'no exit status';
}

/**
 * A child registered with the reaper while it runs (a signal or an exit of
 * ours mid-discovery must not leave gdb or QEMU behind).
 */
async function tracked<T>(child: Promise<T> & { pid?: number }, label: string): Promise<T> {
  const untrack = child.pid ? track(child.pid, label) : () => undefined;
  try {
    return await child;
  } finally {
    untrack();
  }
}

async function runGdb(binary: string, script: Array<{ marker: string; commands: string[] }>, opts: DiscoverOptions): Promise<Map<string, string>> {
  const args = ['-batch', '-nx', '-q',
    // Never reach for the network or run scripts shipped next to the binary.
    '-iex', 'set debuginfod enabled off', '-iex', 'set auto-load no', '-iex', 'set width 0', '-iex', 'set height 0'];
  for (const s of script) {
    args.push('-ex', `echo @@migrace ${s.marker}\\n`);
    for (const c of s.commands) args.push('-ex', c);
  }
  args.push(binary);
  const gdb = opts.gdb ?? 'gdb';
  const timeoutMs = opts.timeoutMs ?? 60_000;
  let r;
  try {
    r = await tracked(execa(gdb, args, {
      reject: false, timeout: timeoutMs, forceKillAfterDelay: 2000, stdin: 'ignore', env: { LC_ALL: 'C' }, maxBuffer: 64 * 1024 * 1024,
    }), 'gdb (probe discovery)');
  } catch (e) {
    throw new MigraceError('GDB_ERROR', `gdb failed to start: ${(e as Error).message}`);
  }
  const spawnCode = spawnFailure(r);
  if (spawnCode === 'ENOENT') {
    throw new MigraceError('GDB_MISSING', `${gdb} is not installed (apt-get install -y gdb)`);
  }
  if (spawnCode) throw new MigraceError('GDB_ERROR', `cannot run gdb (${gdb}): ${spawnCode}${describeFailure(r)}`);
  if (r.timedOut) throw new MigraceError('GDB_TIMEOUT', `gdb took longer than ${timeoutMs / 1000} s to disassemble ${binary}`);
  const out = new Map<string, string>();
  let current: string | null = null;
  let buf: string[] = [];
  for (const line of String(r.stdout).split('\n')) {
    const m = /^@@migrace (\S+)$/.exec(line);
    if (m) {
      if (current) out.set(current, buf.join('\n'));
      current = m[1];
      buf = [];
    } else if (current) {
      buf.push(line);
    }
  }
  if (current) out.set(current, buf.join('\n'));
  if (out.size === 0) {
    const said = String(r.stderr ?? '').trim().split('\n').slice(-3).join(' / ');
    throw new MigraceError('GDB_ERROR', `gdb printed nothing for ${binary}: ${said || exitText(r)}`);
  }
  return out;
}

async function disassemble(binary: string, fns: string[], opts: DiscoverOptions, withDebugOffset: boolean): Promise<{ listings: Record<string, string | null>; debugOffset: number | null }> {
  const script = fns.map((f) => ({ marker: `fn:${f}`, commands: [`disassemble ${f}`] }));
  if (withDebugOffset) script.push({ marker: 'offset', commands: ['print/x (long)&((MigrationState *)0)->state'] });
  const out = await runGdb(binary, script, opts);
  const listings: Record<string, string | null> = {};
  for (const f of fns) {
    const text = out.get(`fn:${f}`) ?? '';
    listings[f] = /Dump of assembler code/.test(text) ? text : null;
  }
  const off = /^\$\d+ = (0x[0-9a-f]+)/m.exec(out.get('offset') ?? '');
  return { listings, debugOffset: off ? Number.parseInt(off[1], 16) : null };
}

/** `QEMU emulator version 5.2.0 (Debian 1:5.2+dfsg-11+deb11u3)` -> 5.2.0 and the whole line. */
export function parseVersionOutput(text: string): { version: string; line: string } | null {
  const m = /QEMU emulator version (\d+\.\d+(?:\.\d+)?)[^\n]*/.exec(text);
  return m ? { version: m[1], line: m[0].trim() } : null;
}

interface VersionProbe {
  found: { version: string; line: string } | null;
  /** Why `-version` said nothing usable, when it failed to run. */
  failure: string | null;
}

async function qemuVersion(binary: string, env: Record<string, string | undefined> | undefined): Promise<VersionProbe> {
  const r = await tracked(execa(binary, ['-version'], {
    reject: false, timeout: 15_000, forceKillAfterDelay: 2000, stdin: 'ignore', env: env ?? {}, maxBuffer: 1024 * 1024,
  }), 'qemu -version');
  const spawnCode = spawnFailure(r);
  if (spawnCode) return { found: null, failure: `${binary} -version failed: cannot run it: ${spawnCode}${describeFailure(r)}` };
  const found = parseVersionOutput(`${String(r.stdout ?? '')}\n${String(r.stderr ?? '')}`);
  if (found || r.exitCode === 0) return { found, failure: null };
  const said = String(r.stderr ?? '').trim().split('\n')[0] || exitText(r);
  const hint = /shared libraries/.test(said) ? ' (give it its library path: LD_LIBRARY_PATH in the environment)' : '';
  return { found: null, failure: `${binary} -version failed: ${said}${hint}` };
}

function readCache(file: string, buildId: string): { profile: Profile | null; problem: string | null } {
  if (!existsSync(file)) return { profile: null, problem: null };
  try {
    const profile = parseProfileText(readFileSync(file, 'utf8'), `cached profile ${file}`);
    if (profile.build_id !== buildId) return { profile: null, problem: `cached profile ${file} is for build-id ${profile.build_id}, not ${buildId}` };
    if (!profile.notes.includes(REVISION_NOTE)) return { profile: null, problem: `cached profile ${file} was made by an older discovery (not ${REVISION_NOTE})` };
    return { profile, problem: null };
  } catch (e) {
    return { profile: null, problem: (e as Error).message };
  }
}

function writeCache(file: string, dir: string, profile: Profile): string | null {
  try {
    mkdirSync(dir, { recursive: true });
    // Write then rename: a reader never sees half a file.
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(profile, null, 2)}\n`);
    renameSync(tmp, file);
    return null;
  } catch (e) {
    try {
      unlinkSync(`${file}.${process.pid}.tmp`);
    } catch {
      /* nothing to clean up */
    }
    return `could not write the profile cache ${file}: ${(e as Error).message}`;
  }
}

function headerLines(elf: ElfInfo): string[] {
  const debug = elf.hasDebugInfo ? 'debug info in the file' : elf.separateDebugFile ? `debug info in ${elf.separateDebugFile}` : 'no debug info (stripped)';
  return [`binary: ${elf.path}`, `build-id: ${elf.buildId ?? 'none'}`, `ELF x86-64 ${elf.type === 'DYN' ? 'PIE' : elf.type}, ${debug}`];
}

export async function discoverProfile(binary: string, opts: DiscoverOptions = {}): Promise<DiscoveryResult> {
  const started = performance.now();
  const path = resolve(binary);
  const elf = await readElfInfo(path);
  const report = headerLines(elf);
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  const cacheFile = elf.buildId ? join(cacheDir, `${elf.buildId}.json`) : null;

  if (cacheFile && elf.buildId) {
    const { profile, problem } = opts.refresh ? { profile: null, problem: null } : readCache(cacheFile, elf.buildId);
    if (profile) {
      const here = { ...profile, binary: path };
      return {
        profile: here, report: [...report, `cached profile: ${cacheFile}`, ...here.notes], cached: true,
        ms: performance.now() - started, cacheFile, elf,
      };
    }
    if (problem) report.push(`ignored the cache: ${problem}; rediscovered and rewrote it`);
    if (opts.refresh) report.push('cache bypassed (--refresh)');
  } else {
    report.push('no build-id: the profile cannot be cached');
  }

  const debugInfo = elf.hasDebugInfo || elf.separateDebugFile !== null;
  const first = await disassemble(path, FIRST_PASS_FUNCTIONS, opts, debugInfo);
  const input: DisassemblyInput = { listings: first.listings, debugInfo, debugStateOffset: first.debugOffset, binary: path };
  let analysis: Analysis;
  try {
    analysis = analyzeDisassembly(input);
  } catch (e) {
    // The source part may be a separate function (-O0, noinline): look one call deeper before giving up.
    const callees = calleesToInspect(first.listings);
    if (callees.length === 0) throw e;
    const more = await disassemble(path, callees, opts, false);
    analysis = analyzeDisassembly({ ...input, listings: { ...first.listings, ...more.listings } });
  }
  const version = await qemuVersion(path, opts.env);
  const profile = buildProfile(analysis, { binary: path, buildId: elf.buildId, qemuVersion: version.found?.version ?? null, versionLine: version.found?.line ?? null });
  report.push(...profile.notes);
  if (version.failure) report.push(version.failure);
  if (cacheFile && version.failure) {
    // A profile without the version would pick the wrong status table for good.
    report.push('not cached: -version failed, so the QEMU version (and the status table) may be wrong; run again with the environment the binary needs');
  } else if (cacheFile) {
    const problem = writeCache(cacheFile, cacheDir, profile);
    report.push(problem ?? `cached as ${cacheFile}`);
  }
  return { profile, report, cached: false, ms: performance.now() - started, cacheFile, elf };
}
