import { gdbRegister, hex, isCall, isJump, parseDisassembly, type DisasmLine, type DisasmListing } from './disasm.js';
import { ARG_REGS, FunctionModel, joinStates, sameStates, type Context, type State, type StateRead } from './dataflow.js';

/**
 * The query path: qmp_query_migrate and everything it calls, followed by
 * address to a fixed depth (calls, tail jumps, jumps into a `.cold` part),
 * with what each callee receives in its argument registers, and every
 * instruction on it that reads the state field. Pure: the effects
 * (discover.ts) disassemble what `wanted` asks for and call again.
 *
 * Parts, in order:
 * - the code discovery has: named listings and callee listings, by address;
 * - walkQueryPath: a worklist over functions whose entry states are the
 *   join of their call sites, and the calls it could not follow yet;
 * - readPointsOn: the state reads of every function on the path.
 */

/** qmp_query_migrate is depth 0; fill_source_migration_info's callees are 2 when it is not inlined. */
export const QUERY_PATH_DEPTH = 4;
/** A guard against a call graph that explodes, not a limit QEMU comes near. */
const MAX_FUNCTIONS = 400;

/** A function's disassembly, as the effects got it by address range. */
export interface FunctionCode {
  /** Its symbol, or `sub_HEX` when a stripped build names it nowhere. */
  name: string;
  start: number;
  /** gdb's `disassemble START,END`. */
  text: string;
  /** The name is a gdb location that means this function (see Anchors in analysis.ts). */
  anchor: boolean;
  /** Its bytes refer to the MigrationState global or migrate_get_current: worth walking even when a call passes it nothing. */
  refersToState: boolean;
}

export interface KnownFunction {
  name: string;
  start: number;
  listing: DisasmListing;
  anchor: boolean;
  refersToState: boolean;
}

/** Offsets always count from the first instruction, whatever gdb's labels say. */
export function toKnown(name: string, text: string | null, anchor: boolean, refersToState = true): KnownFunction | null {
  if (!text) return null;
  const first = parseDisassembly(text).lines[0];
  if (!first) return null;
  const listing = parseDisassembly(text, { name, start: first.address });
  return { name, start: first.address, listing, anchor, refersToState };
}

export class CodeMap {
  private readonly byStart = new Map<number, KnownFunction>();

  constructor(functions: Iterable<KnownFunction>) {
    for (const f of functions) if (!this.byStart.has(f.start)) this.byStart.set(f.start, f);
  }

  at(start: number): KnownFunction | null {
    return this.byStart.get(start) ?? null;
  }

  all(): KnownFunction[] {
    return [...this.byStart.values()];
  }
}

/**
 * What a call to known code may write: every register its instructions
 * write, through its own calls and tail jumps; null (every caller-saved
 * register) when a path leaves for code not in the map. gcc's IPA-RA lets a
 * caller keep values in caller-saved registers across a call to a local
 * function that leaves them alone, so the model must know too.
 */
export function callWritesOf(code: CodeMap, base: Pick<Context, 'global' | 'migrateGetCurrent'>): (target: number) => ReadonlySet<string> | null {
  const memo = new Map<number, ReadonlySet<string> | null>();
  const writesOf = (start: number): ReadonlySet<string> | null => {
    if (memo.has(start)) return memo.get(start)!;
    const fn = code.at(start);
    if (!fn) return null;
    memo.set(start, null); // recursion is unknown code until it is done
    const model = new FunctionModel(fn.listing, fn.name);
    const ctx: Context = { ...base, allocSite: -1, offsetOnly: null, callWrites: writesOf };
    const all = new Set<string>();
    for (const e of edgesOf(model)) {
      if (e.call) continue;
      const far = writesOf(e.target);
      if (!far) return null;
      for (const r of far) all.add(r);
    }
    for (let i = 0; i < model.lines.length; i++) for (const r of model.writes(i, ctx)) all.add(r);
    memo.set(start, all);
    return all;
  };
  return writesOf;
}

/** One function on the query path and what reaches it. */
export interface PathFunction {
  fn: KnownFunction;
  model: FunctionModel;
  depth: number;
  /** Names from qmp_query_migrate down to this function. */
  via: string[];
  entry: State;
  ins: Array<State | undefined>;
  ctx: Context;
}

/** A call or jump the walk would follow and has no code for. */
export interface WantedCode {
  target: number;
  from: string;
  line: DisasmLine;
  depth: number;
  /**
   * Followed for certain: a depth-1 call, a jump, or a call passed
   * MigrationState or the reply. Otherwise the effects follow it only when
   * its code refers to MigrationState itself (the global, migrate_get_current).
   */
  certain: boolean;
}

export interface QueryPath {
  functions: PathFunction[];
  wanted: WantedCode[];
}

/** Which edges leave a function: direct calls, and jumps to code outside it (tail calls, cold parts). */
function edgesOf(model: FunctionModel): Array<{ idx: number; target: number; call: boolean }> {
  const lines = model.lines;
  const first = lines[0]?.address ?? 0;
  const last = lines[lines.length - 1]?.address ?? 0;
  const out: Array<{ idx: number; target: number; call: boolean }> = [];
  lines.forEach((l, idx) => {
    if (l.target === null || l.targetSymbol?.endsWith('@plt')) return;
    if (isCall(l.mnemonic) && !model.isNoreturnCall(idx)) out.push({ idx, target: l.target, call: true });
    else if (isJump(l.mnemonic) && (l.target < first || l.target > last)) out.push({ idx, target: l.target, call: false });
  });
  return out;
}

function carriesState(st: State): boolean {
  return [...st.values()].some((v) => [...v].some((x) => x.startsWith('S+') || x.startsWith('I+')));
}

function isMigrateGetCurrent(line: DisasmLine, ctx: Context): boolean {
  if (ctx.migrateGetCurrent !== null) return line.target === ctx.migrateGetCurrent;
  return line.targetSymbol === 'migrate_get_current';
}

/**
 * Walk the query path from qmp_query_migrate. A function reached again
 * with more in its arguments (or by a shorter chain) is walked again; the
 * lattice is finite, MAX_FUNCTIONS guards against a bug.
 */
export function walkQueryPath(root: KnownFunction, rootCtx: Context, code: CodeMap, calleeCtx: Context): QueryPath {
  const nodes = new Map<number, PathFunction>();
  const wanted = new Map<number, WantedCode>();
  nodes.set(root.start, { fn: root, model: new FunctionModel(root.listing, root.name), depth: 0, via: [root.name], entry: new Map(), ins: [], ctx: rootCtx });
  const work = [root.start];
  let steps = 0;
  while (work.length > 0 && steps++ < MAX_FUNCTIONS * 4) {
    const node = nodes.get(work.shift()!)!;
    node.ins = node.model.dataflow(node.entry, node.ctx);
    for (const e of edgesOf(node.model)) {
      const st = node.ins[e.idx];
      const line = node.model.lines[e.idx];
      if (!st || isMigrateGetCurrent(line, node.ctx)) continue;
      const depth = e.call ? node.depth + 1 : node.depth;
      if (depth > QUERY_PATH_DEPTH) continue;
      // A call passes its argument registers; a jump (tail call, cold part) continues with every register as it is.
      const passed: State = new Map([...st].filter(([k]) => !e.call || ARG_REGS.includes(k)));
      const fn = code.at(e.target);
      const certain = depth <= 1 || !e.call || carriesState(passed);
      if (!fn) {
        wanted.set(e.target, { target: e.target, from: node.fn.name, line, depth, certain: certain || (wanted.get(e.target)?.certain ?? false) });
        continue;
      }
      // Code the effects fetched ahead of need is walked only where the policy would have fetched it.
      if (!certain && !fn.refersToState) continue;
      const known = nodes.get(fn.start);
      if (!known) {
        if (nodes.size >= MAX_FUNCTIONS) continue;
        const model = new FunctionModel(fn.listing, fn.name);
        nodes.set(fn.start, { fn, model, depth, via: [...node.via, fn.name], entry: passed, ins: [], ctx: calleeCtx });
        work.push(fn.start);
        continue;
      }
      const joined = joinStates(known.entry, passed);
      const shorter = depth < known.depth;
      if (!sameStates(joined, known.entry) || shorter) {
        known.entry = joined;
        if (shorter) {
          known.depth = depth;
          known.via = [...node.via, fn.name];
        }
        if (!work.includes(fn.start)) work.push(fn.start);
      }
    }
  }
  return { functions: [...nodes.values()], wanted: [...wanted.values()] };
}

/** A read of the state field on the query path, before it becomes a profile entry. */
export interface FoundRead {
  path: PathFunction;
  read: StateRead;
  line: DisasmLine;
  /** The instruction after it: where a probe stops, right after the read. */
  next: DisasmLine | null;
  /** What holds the value read, at `next`. */
  value: string | null;
}

/** Every state read on the path, in the order of the walk (depth, then address). */
export function readPointsOn(path: QueryPath, stateOffset: number, stateAddrExpr: string | null): FoundRead[] {
  const out: FoundRead[] = [];
  const seen = new Set<number>();
  const ordered = [...path.functions].sort((a, b) => a.depth - b.depth || a.fn.start - b.fn.start);
  for (const p of ordered) {
    for (const r of p.model.stateReads(p.ins, p.ctx, stateOffset)) {
      const line = p.model.lines[r.idx];
      if (seen.has(line.address)) continue;
      seen.add(line.address);
      out.push({ path: p, read: r, line, next: p.model.lines[r.idx + 1] ?? null, value: valueOf(r, stateAddrExpr) });
    }
  }
  return out;
}

/** A load leaves the value in its register; otherwise it is still in memory while the writer is held. */
function valueOf(r: StateRead, stateAddrExpr: string | null): string | null {
  if (r.access === 'load' && r.dst?.kind === 'reg' && r.dst.width >= 32) return gdbRegister(r.dst.reg);
  if (r.mem.base && r.mem.base !== 'rip') {
    const d = r.mem.disp;
    return `*(int *)($${r.mem.base} ${d < 0 ? '-' : '+'} ${hex(Math.abs(d))})`;
  }
  return stateAddrExpr ? `*${stateAddrExpr}` : null;
}
