import { readFileSync, realpathSync } from 'node:fs';
import { MigraceError, messageOf } from '../trace/errors.js';
import { parseBreakpoint, type GdbSession } from './gdb/session.js';
import { LocationSchema } from './probes/profile.js';
import {
  gdbRegister, hex, isCall, isJump, isReturn, isUnconditionalJump, parseDisasmLine, parseOperand, type DisasmLine, type Operand,
} from './probes/disasm.js';

/**
 * The dynamic read points: which instructions really read the migration
 * state while a query is served. A hardware read watchpoint would say it in
 * one trap, but debug registers do not work on every machine (a VM that
 * does not pass them through: gdb's rwatch and perf's breakpoint events
 * then never fire), so the query is single-stepped instead: the thread that
 * serves it goes instruction by instruction through qmp_query_migrate and
 * the binary's own functions it calls (to a depth), stepping over calls
 * that leave the binary (PLT calls into glib and libc) and indirect calls;
 * at every instruction whose memory operand's effective address, computed
 * from the registers, is the state's address, the pc is a read point.
 *
 * Parts, in order:
 * - the pure part: which operand of an instruction touches memory, its
 *   effective address from register values, what kind of access it is and
 *   how the value it read can be named right after it; the binary's text
 *   ranges and load bias from /proc/PID/maps;
 * - ReadTracer: the stepping engine (one object per hunt, one trace per
 *   state), bounded in steps and time, with the reads it found.
 */

/* ------------------------------------------------------------------ */
/* The pure part */

export type Access = 'load' | 'compare' | 'other';

/** Instructions whose memory operand is not a data read of the program's (addresses, stack, hints). */
const NOT_A_READ = /^(lea|nop|prefetch|push|pop|call|jmp|ret|endbr|leave|clflush)/;

/** The memory operand an instruction reads through, or null (none, or only the stack). */
export function memoryOperand(line: DisasmLine): Operand & { kind: 'mem' } | null {
  if (NOT_A_READ.test(line.mnemonic) || isJump(line.mnemonic) || isCall(line.mnemonic)) return null;
  if (/^(stos|lods|scas|cmps|movs[bwlq]?$)/.test(line.mnemonic) && !line.operands.length) return null;
  for (const text of line.operands) {
    const op = parseOperand(text);
    if (op.kind !== 'mem') continue;
    // The stack holds locals and spills, never MigrationState.
    if (op.base === 'rsp' && !op.index) return null;
    return op;
  }
  return null;
}

/** base + index * scale + disp; rip-relative counts from the next instruction. Null when a register is unknown. */
export function effectiveAddress(op: Operand & { kind: 'mem' }, regs: ReadonlyMap<string, bigint>, nextPc: bigint): bigint | null {
  if (op.seg) return null;
  let a = BigInt(op.disp);
  if (op.base) {
    const v = op.base === 'rip' ? nextPc : regs.get(op.base);
    if (v === undefined) return null;
    a += v;
  }
  if (op.index) {
    const v = regs.get(op.index);
    if (v === undefined) return null;
    a += v * BigInt(op.scale);
  }
  return BigInt.asUintN(64, a);
}

export function accessKind(line: DisasmLine): Access {
  const m = line.mnemonic;
  if (/^(cmp|test)/.test(m)) return 'compare';
  const dst = line.operands.length === 2 ? parseOperand(line.operands[1]) : null;
  if (/^mov/.test(m) && dst?.kind === 'reg') return 'load';
  return 'other';
}

/**
 * An expression for the value the instruction read, valid at the next
 * instruction: the register a load wrote, or, for a compare (which writes
 * no register), the state word through the base register it used. Null
 * when neither holds (a load into its own base register is the first case).
 */
export function valueAfter(line: DisasmLine, op: Operand & { kind: 'mem' }): string | null {
  const kind = accessKind(line);
  if (kind === 'load') {
    const dst = parseOperand(line.operands[1]);
    return dst.kind === 'reg' && dst.width === 32 ? gdbRegister(dst.reg) : null;
  }
  if (kind === 'compare' && op.base && op.base !== 'rip' && !op.index) {
    const sign = op.disp < 0 ? `- ${hex(-op.disp)}` : `+ ${hex(op.disp)}`;
    return `*(int *)($${op.base} ${sign})`;
  }
  return null;
}

export interface TextMap {
  /** Executable ranges of the binary itself, [start, end). */
  ranges: Array<[bigint, bigint]>;
  /** Subtract from a runtime pc for the binary's own (link-time) address. */
  bias: bigint;
}

/** The binary's executable mappings in /proc/PID/maps and its load bias (0 for a non-PIE executable). */
export function textMapOf(maps: string, binary: string, pie: boolean): TextMap {
  const ranges: Array<[bigint, bigint]> = [];
  let base: bigint | null = null;
  for (const line of maps.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+)\s+(\S+)\s+([0-9a-f]+)\s+\S+\s+\d+\s+(.*)$/.exec(line.trim());
    if (!m || m[5].trim() !== binary) continue;
    const start = BigInt(`0x${m[1]}`);
    if (base === null && BigInt(`0x${m[4]}`) === 0n) base = start;
    if (m[3].includes('x')) ranges.push([start, BigInt(`0x${m[2]}`)]);
  }
  return { ranges, bias: pie && base !== null ? base : 0n };
}

function inText(map: TextMap, pc: bigint): boolean {
  return map.ranges.some(([a, b]) => pc >= a && pc < b);
}

/** ELF type ET_DYN: a position-independent executable, loaded at a bias. */
function isPie(binary: string): boolean {
  const head = readFileSync(binary).subarray(0, 18);
  return head.length === 18 && head.readUInt16LE(16) === 3;
}

/* ------------------------------------------------------------------ */
/* The stepping engine */

export interface TracedRead {
  /** The binary's own address of the reading instruction (runtime pc minus the load bias). */
  file_pc: string;
  pc: string;
  /** The function it is in: its symbol, or `sub_HEX` (the binary's address of its entry) where a stripped build has none. */
  function: string;
  /** Of the instruction, from the function's entry. */
  offset: number;
  next_pc: string;
  /** Where to stop right after it: `*function+N` with a symbol, else relative to qmp_query_migrate. */
  location: string;
  instruction: string;
  access: Access;
  /** The value it read, as an expression at next_pc, or null. */
  value: string | null;
  /** Calls below qmp_query_migrate (0: in it, inlined code included). */
  depth: number;
  /** States whose queries executed it. */
  states: string[];
  /** The runtime pcs executed right after it, up to the next read of the state (a static probe a few instructions later still matches). */
  following: string[];
}

export interface TraceRun {
  state: string;
  steps: number;
  ms: number;
  /** Why the trace stopped before the query function returned, if it did. */
  truncated: string | null;
  /** The runtime pcs of the reads, in the order this query first executed them. */
  order: string[];
}

export interface ReadTracerOptions {
  /** The binary as the target runs it (its mappings name it). */
  binary: string;
  /** Calls followed below qmp_query_migrate (fill_source_migration_info, populate_time_info, ...). */
  maxDepth?: number;
  /** Per query. */
  maxSteps?: number;
  /** For all traces of the hunt together. */
  budgetMs?: number;
  progress?: (msg: string) => void;
}

interface Insn {
  line: DisasmLine;
  /** The symbol gdb names the instruction with, when it has one. */
  fn: string | null;
  next: bigint;
}

/** A function the walk is in: where it starts and what it is called. */
interface WalkFrame {
  start: bigint;
  name: string;
  /** gdb knows the symbol: `*name+N` is a location. */
  symbol: boolean;
}

/** The probes' own breakpoints, as gdb placed them: a static read probe is matched to a dynamic read by address. */
export interface PlacedBreakpoint {
  location: string | null;
  addrs: string[];
}

const FOLLOWING = 8;

export class ReadTracer {
  readonly reads = new Map<string, TracedRead>();
  readonly runs: TraceRun[] = [];
  /** Every breakpoint of the profile, read once at the first trace. */
  breakpoints: PlacedBreakpoint[] = [];
  /** Runtime address of qmp_query_migrate, where every trace starts. */
  private anchor: bigint | null = null;
  private readonly traced = new Set<string>();
  private readonly insns = new Map<bigint, Insn>();
  private spentMs = 0;
  private text: TextMap | null = null;
  private readonly maxDepth: number;
  private readonly maxSteps: number;
  private readonly budgetMs: number;
  private readonly binary: string;

  constructor(private readonly opts: ReadTracerOptions) {
    this.maxDepth = opts.maxDepth ?? 4;
    this.maxSteps = opts.maxSteps ?? 30_000;
    this.budgetMs = opts.budgetMs ?? 120_000;
    this.binary = realpathSync(opts.binary);
  }

  /** Each state once, while the time budget lasts. */
  wants(state: string): boolean {
    return !this.traced.has(state) && this.spentMs < this.budgetMs;
  }

  /** Whether the time budget ran out before every state was traced. */
  get exhausted(): boolean {
    return this.spentMs >= this.budgetMs;
  }

  /**
   * Trace thread `tid`, stopped at qmp_query_migrate's entry, until the
   * function returns (the thread is left stopped at its `ret`). Probes are
   * disabled meanwhile: a step onto a probe would be a probe hit.
   */
  async trace(gdb: GdbSession, tid: number, state: string, stateAddr: string): Promise<void> {
    this.traced.add(state);
    const began = Date.now();
    const want = BigInt(stateAddr);
    const run: TraceRun = { state, steps: 0, ms: 0, truncated: null, order: [] };
    this.runs.push(run);
    if (!this.text) {
      this.text = this.readText(gdb);
      this.breakpoints = await placedBreakpoints(gdb);
    }
    await gdb.execute('-break-disable');
    try {
      await this.walk(gdb, tid, state, want, run, began);
    } finally {
      await gdb.execute('-break-enable').catch(() => undefined);
      run.ms = Date.now() - began;
      this.spentMs += run.ms;
      this.opts.progress?.(`traced the query in ${state}: ${run.steps} instructions in ${(run.ms / 1000).toFixed(1)} s${run.truncated ? ` (stopped: ${run.truncated})` : ''}`);
    }
  }

  private readText(gdb: GdbSession): TextMap {
    const pid = gdb.inferiorPid;
    if (pid === null) throw new MigraceError('GDB_ERROR', 'the traced program has no pid');
    const map = textMapOf(readFileSync(`/proc/${pid}/maps`, 'utf8'), this.binary, isPie(this.binary));
    if (map.ranges.length === 0) throw new MigraceError('GDB_ERROR', `no executable mapping of ${this.binary} in /proc/${pid}/maps`);
    return map;
  }

  private async walk(gdb: GdbSession, tid: number, state: string, want: bigint, run: TraceRun, began: number): Promise<void> {
    const text = this.text!;
    let pc = BigInt(await gdb.evaluate('$pc', { thread: tid, frame: 0 }).then(firstHex));
    this.anchor ??= pc;
    const frames: WalkFrame[] = [await this.frameAt(gdb, pc, 'qmp_query_migrate')];
    let depth = 0;
    /** The read first seen last, whose following pcs are being collected. */
    let collecting: TracedRead | null = null;
    for (;;) {
      if (run.steps >= this.maxSteps) {
        run.truncated = `${this.maxSteps} instructions`;
        return;
      }
      if (this.spentMs + (Date.now() - began) > this.budgetMs) {
        run.truncated = `the time budget of ${this.budgetMs / 1000} s`;
        return;
      }
      const insn = await this.insnAt(gdb, pc);
      const l = insn.line;
      const op = memoryOperand(l);
      let isRead = false;
      if (op) {
        const regs = await registers(gdb, tid);
        if (effectiveAddress(op, regs, insn.next) === want) {
          isRead = true;
          const { read, fresh } = this.note(insn, op, frames[frames.length - 1], depth, state, text);
          collecting = fresh ? read : null;
          if (!run.order.includes(read.pc)) run.order.push(read.pc);
        }
      }
      if (!isRead && collecting) {
        collecting.following.push(hex64(pc));
        if (collecting.following.length >= FOLLOWING) collecting = null;
      }
      // Decide how to go on from this instruction.
      const m = l.mnemonic;
      if (isReturn(m)) {
        if (depth === 0) return;
        depth--;
        frames.pop();
        pc = await step(gdb, tid, 'step');
      } else if (isCall(m)) {
        const target = l.target === null ? null : BigInt(l.target);
        const into = target !== null && !l.targetSymbol?.endsWith('@plt') && inText(text, target) && depth < this.maxDepth;
        pc = await step(gdb, tid, into ? 'step' : 'next');
        if (into) {
          depth++;
          frames.push(await this.frameAt(gdb, pc, null));
        }
      } else if (isUnconditionalJump(m) && (l.targetSymbol?.endsWith('@plt') || (l.target !== null && !inText(text, BigInt(l.target))))) {
        // A tail call out of the binary: it returns to our caller.
        if (depth === 0) return;
        pc = await this.returnFromTailCall(gdb, tid);
        depth--;
        frames.pop();
      } else {
        pc = await step(gdb, tid, 'step');
      }
      run.steps++;
      if (!inText(text, pc)) {
        // An indirect jump into a library: come back at the caller's return address.
        if (depth === 0) return;
        pc = await finish(gdb, tid);
        depth--;
        frames.pop();
      }
    }
  }

  /** The function entered at pc: gdb's symbol, or `sub_HEX` named by the binary's own address. */
  private async frameAt(gdb: GdbSession, pc: bigint, fallback: string | null): Promise<WalkFrame> {
    const insn = await this.insnAt(gdb, pc);
    if (insn.fn) return { start: pc - BigInt(insn.line.offset), name: insn.fn, symbol: true };
    return { start: pc, name: fallback ?? `sub_${(pc - this.text!.bias).toString(16)}`, symbol: fallback !== null };
  }

  /**
   * `*function+N` when gdb knows the function's symbol; otherwise relative to
   * qmp_query_migrate (exported by every build), so that it holds wherever
   * the binary is loaded. Until profiles accept `*sym-N`, a place before the
   * anchor is given by its runtime address (gdb starts programs without
   * address randomization, so it is the same in every run).
   */
  private locationFor(frame: WalkFrame, nextPc: bigint): string {
    if (frame.symbol) return `*${frame.name}+${nextPc - frame.start}`;
    const d = nextPc - (this.anchor ?? nextPc);
    const rel = d >= 0n ? `*qmp_query_migrate+${d}` : `*qmp_query_migrate-${-d}`;
    return LocationSchema.safeParse(rel).success ? rel : `*${hex64(nextPc)}`;
  }

  private note(insn: Insn, op: Operand & { kind: 'mem' }, frame: WalkFrame, depth: number, state: string, text: TextMap): { read: TracedRead; fresh: boolean } {
    const pc = BigInt(insn.line.address);
    const key = hex64(pc);
    let r = this.reads.get(key);
    const fresh = !r;
    if (!r) {
      // gdb's own symbol for the instruction wins over the frame the walk believes it is in (a tail jump).
      const fn = insn.fn ? { start: pc - BigInt(insn.line.offset), name: insn.fn, symbol: true } : frame;
      r = {
        file_pc: hex64(pc - text.bias), pc: key, function: fn.name, offset: Number(pc - fn.start),
        next_pc: hex64(insn.next), location: this.locationFor(fn, insn.next),
        instruction: insn.line.text, access: accessKind(insn.line), value: valueAfter(insn.line, op),
        depth, states: [], following: [],
      };
      this.reads.set(key, r);
    }
    if (!r.states.includes(state)) r.states.push(state);
    return { read: r, fresh };
  }

  /** The instruction at pc, disassembled with the ones after it (one gdb round trip per straight run of code). */
  private async insnAt(gdb: GdbSession, pc: bigint): Promise<Insn> {
    const known = this.insns.get(pc);
    if (known) return known;
    const r = await gdb.execute(`-data-disassemble -s ${hex64(pc)} -e ${hex64(pc + 96n)} -- 0`);
    const rows = r.results.list('asm_insns').tuples('asm_insns');
    const parsed: Array<{ addr: bigint; line: DisasmLine; fn: string | null }> = [];
    for (const t of rows) {
      const addr = t.string('address');
      const fn = t.optString('func-name') ?? null;
      const off = t.optString('offset') ?? '0';
      const line = parseDisasmLine(`${addr} <${fn ? `${fn}+${off}` : `+${off}`}>:\t${t.string('inst')}`);
      if (line) parsed.push({ addr: BigInt(addr), line, fn });
    }
    // The last one's length is unknown: it is fetched again when reached.
    for (let i = 0; i + 1 < parsed.length; i++) {
      if (!this.insns.has(parsed[i].addr)) this.insns.set(parsed[i].addr, { line: parsed[i].line, fn: parsed[i].fn, next: parsed[i + 1].addr });
    }
    const got = this.insns.get(pc);
    if (!got) throw new MigraceError('GDB_ERROR', `gdb could not disassemble the instruction at ${hex64(pc)}`);
    return got;
  }

  private async returnFromTailCall(gdb: GdbSession, tid: number): Promise<bigint> {
    const ret = BigInt(firstHex(await gdb.evaluate('*(unsigned long *)$rsp', { thread: tid, frame: 0 })));
    return runTo(gdb, tid, ret);
  }
}

function firstHex(text: string): string {
  const m = /0x[0-9a-f]+/.exec(text) ?? /\d+/.exec(text);
  if (!m) throw new MigraceError('GDB_ERROR', `not an address: ${text}`);
  return m[0];
}

function hex64(n: bigint): string {
  return `0x${n.toString(16)}`;
}

/** Every breakpoint gdb has, with its addresses. */
async function placedBreakpoints(gdb: GdbSession): Promise<PlacedBreakpoint[]> {
  const r = await gdb.execute('-break-list');
  return r.results.tuple('BreakpointTable').list('body').tuples('bkpt').map(parseBreakpoint)
    .map((b) => ({ location: b.originalLocation, addrs: b.locations.map((l) => l.addr) }));
}

const GPRS = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'];

/** rax..r15 of a stopped thread, in one round trip (gdb numbers them 0..15 on x86-64). */
async function registers(gdb: GdbSession, tid: number): Promise<Map<string, bigint>> {
  const r = await gdb.execute(`-data-list-register-values --thread ${tid} --frame 0 x ${GPRS.map((_, i) => i).join(' ')}`);
  const out = new Map<string, bigint>();
  for (const t of r.results.list('register-values').tuples('register-values')) {
    const n = Number(t.string('number'));
    const v = t.string('value');
    if (GPRS[n] && /^0x[0-9a-f]+$/.test(v)) out.set(GPRS[n], BigInt(v));
  }
  return out;
}

/** One stepi or nexti; resolves with the new pc once the thread stopped again. */
async function step(gdb: GdbSession, tid: number, how: 'step' | 'next'): Promise<bigint> {
  const mark = gdb.mark();
  await gdb.execute(`-exec-${how}-instruction --thread ${tid}`);
  return stoppedPc(gdb, tid, mark, how === 'next' ? 30_000 : 10_000);
}

async function finish(gdb: GdbSession, tid: number): Promise<bigint> {
  const mark = gdb.mark();
  await gdb.execute(`-exec-finish --thread ${tid}`);
  return stoppedPc(gdb, tid, mark, 30_000);
}

/** Run the thread to `addr` with a temporary breakpoint of its own. */
async function runTo(gdb: GdbSession, tid: number, addr: bigint): Promise<bigint> {
  const bp = await gdb.insertBreakpoint(`*${hex64(addr)}`, { temporary: true, thread: tid });
  try {
    const mark = gdb.mark();
    await gdb.continueThread(tid);
    return await stoppedPc(gdb, tid, mark, 30_000);
  } finally {
    await gdb.deleteBreakpoint(bp.number).catch(() => undefined);
  }
}

async function stoppedPc(gdb: GdbSession, tid: number, mark: number, timeoutMs: number): Promise<bigint> {
  try {
    const stop = await gdb.waitForStop(tid, timeoutMs, { since: mark });
    if (stop.frame?.addr) return BigInt(stop.frame.addr);
    return BigInt(firstHex(await gdb.evaluate('$pc', { thread: tid, frame: 0 })));
  } catch (e) {
    throw new MigraceError('GDB_ERROR', `single-stepping thread ${tid}: ${messageOf(e)}`);
  }
}
