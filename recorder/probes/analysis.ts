import { MigraceError } from '../../trace/errors.js';
import type { Variant } from '../../trace/schema.js';
import { describe, gdbRegister, hex, isCall, parseOperand, type DisasmLine, type DisasmListing, type Operand } from './disasm.js';
import {
  ARG_REGS, FunctionModel, get, parseFieldLabel, put, symbolBase, uniformGlobal, uniformOffset, type Context, type GlobalInfo, type State,
} from './dataflow.js';
import { ProfileSchema, type Probe, type Profile, type ReadPoint } from './profile.js';
import {
  callWritesOf, CodeMap, QUERY_PATH_DEPTH, readPointsOn, toKnown, walkQueryPath, type FoundRead, type FunctionCode, type KnownFunction, type QueryPath,
  type WantedCode,
} from './query-path.js';
import type { StatusDecision } from './status-lookup.js';

/**
 * The pure analysis of discovery: from gdb's disassembly text to what a
 * profile says. No process, no file: the effects live in discover.ts.
 *
 * Parts, in order:
 * - the functions asked for, and the shapes the analysis returns;
 * - Anchors: how a location names code (a symbol gdb resolves right, or an
 *   offset from one, for code a stripped build names nowhere);
 * - helpers that read one listing (the global behind migrate_get_current,
 *   the state offset an exported helper reveals, the state loads);
 * - planQueryPath: which callees the effects should disassemble next;
 * - analyzeDisassembly, one named step each: required functions, where
 *   MigrationState lives, the state offset, the read, the destination-side
 *   loads it skips, the publishes, the variant, the transition probe, the
 *   state address, the read points of the query path;
 * - buildProfile: the analysis as a profile (schema in profile.ts).
 */

/** Functions asked from gdb up front. The helpers only serve to find the state offset. */
export const REQUIRED_FUNCTIONS = ['migrate_set_state', 'qmp_query_migrate'] as const;
export const OFFSET_HELPERS = ['migration_in_setup', 'migration_is_active', 'migration_has_failed', 'migration_is_running'] as const;
export const FIRST_PASS_FUNCTIONS = [...REQUIRED_FUNCTIONS, 'migrate_get_current', ...OFFSET_HELPERS];

/**
 * Bumped whenever discovery would place probes differently: cached profiles
 * from an older revision are rediscovered rather than trusted.
 */
export const DISCOVERY_REVISION = 2;
export const REVISION_NOTE = `discovery revision ${DISCOVERY_REVISION}`;

/** `info->status` sits after `bool has_status` in every QAPI-generated MigrationInfo we have seen. */
export const STATUS_FIELD_OFFSET = 4;

/** Allocators QEMU (g_malloc0 / g_new0) and minimig (calloc) use for the reply. */
const ALLOCATORS = new Set(['g_malloc0', 'g_malloc0_n', 'g_try_malloc0', 'g_try_malloc0_n', 'calloc']);

export interface DisassemblyInput {
  /** gdb's `disassemble` text per function; null when gdb had no such symbol. */
  listings: Record<string, string | null>;
  /** Callees on the query path, disassembled by address range (planQueryPath says which). */
  code?: FunctionCode[];
  /** Names in `listings` that are no gdb location for their code (with debug info gdb resolves them to a clone). */
  notAnchors?: string[];
  /** Why names are not anchors: the message when no name is left to place a probe from. */
  anchorProblems?: string[];
  /** Why a function in `listings` is missing from the symbol table (only clones of it, several of it). */
  symbolProblems?: Record<string, string>;
  /**
   * With debug info, where the transition probe stops when a breakpoint on
   * the name would also land on inlined copies: the out-of-line copy's
   * first location, and what was left out.
   */
  transitionEntry?: { address: number; leftOut: string[] };
  /** File, line and inlined function per instruction address (hex), from debug info. */
  sourceLines?: Record<string, string>;
  /** The binary has DWARF (in the file or a separate debug file gdb loads). */
  debugInfo: boolean;
  /** offsetof(MigrationState, state) as gdb reports it from debug info. */
  debugStateOffset?: number | null;
  statusFieldOffset?: number;
  /** Only for messages. */
  binary?: string;
}

export interface PointFinding {
  fn: string;
  /** Link-time address of the instruction the probe is placed at. */
  address: number;
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
  /** Every read of the state on the query path, the switch read among them. */
  readPoints: ReadPoint[];
  /** Every finding, in order, as the report prints it. */
  notes: string[];
}

/* ------------------------------------------------------------------ */
/* Anchors: the names a location can start from */

/** The exported names a location is placed from, most readable first. */
const ANCHOR_ORDER = ['qmp_query_migrate', 'migrate_set_state', 'migrate_get_current'] as const;

/**
 * A gdb location must name code through a symbol gdb resolves to that code.
 * A function is an anchor when its name is one (the effects check the
 * symbol table, and gdb's own lookup when debug info is loaded); code of a
 * non-anchor is placed as an offset from the first anchor of ANCHOR_ORDER.
 */
class Anchors {
  private readonly named = new Map<string, KnownFunction>();

  constructor(private readonly input: DisassemblyInput, code: CodeMap) {
    for (const f of code.all()) if (f.anchor) this.named.set(f.name, f);
  }

  private primary(): KnownFunction {
    for (const name of ANCHOR_ORDER) {
      const f = this.named.get(name);
      if (f) return f;
    }
    const why = this.input.anchorProblems?.length ? `: ${this.input.anchorProblems.join('; ')}` : '';
    throw probesError(this.input.binary, `no function name gdb resolves to the code the symbol table gives it (${ANCHOR_ORDER.join(', ')})${why}`);
  }

  /** `*fn+OFF`, or `*anchor±DELTA` for code whose own name gdb cannot be trusted with. */
  at(fn: KnownFunction, offset: number): string {
    if (fn.anchor) return `*${fn.name}+${offset}`;
    const a = this.primary();
    const d = fn.start + offset - a.start;
    return d >= 0 ? `*${a.name}+${d}` : `*${a.name}-${-d}`;
  }

  /** The entry of a named function: its name (gdb skips the prologue), or its address from an anchor. */
  entry(name: string, fn: KnownFunction | null): string {
    return fn && fn.anchor ? name : fn ? this.at(fn, 0) : name;
  }

  /** The symbol state_addr_expr counts from: migrate_get_current when it is an anchor (the form profiles always had). */
  expressionBase(): KnownFunction {
    return this.named.get('migrate_get_current') ?? this.primary();
  }
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

function knownOf(input: DisassemblyInput, fn: string): KnownFunction | null {
  return toKnown(fn, input.listings[fn] ?? null, !(input.notAnchors ?? []).includes(fn));
}

function listingOf(input: DisassemblyInput, fn: string): DisasmListing | null {
  return knownOf(input, fn)?.listing ?? null;
}

/** Every listing the input has, named or reached by address. */
function codeMapOf(input: DisassemblyInput): CodeMap {
  const named = Object.keys(input.listings).map((n) => knownOf(input, n)).filter((f): f is KnownFunction => f !== null);
  const callees = (input.code ?? []).map((c) => toKnown(c.name, c.text, c.anchor, c.refersToState)).filter((f): f is KnownFunction => f !== null);
  return new CodeMap([...named, ...callees]);
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
  fn: KnownFunction;
  model: FunctionModel;
  ins: Array<State | undefined>;
  ctx: Context;
  loads: Array<{ idx: number; off: number; dst: Operand | null }>;
}

function searchReads(fn: KnownFunction, entry: State, ctx: Context, stateOffset: number | null): ReadSearch {
  const model = new FunctionModel(fn.listing, fn.name);
  const ins = model.dataflow(entry, ctx);
  const loads = model.fieldAccesses(ins, ctx).filter((a) => a.load && (stateOffset === null || a.off === stateOffset));
  return { fn, model, ins, ctx, loads };
}

/** The context of qmp_query_migrate: the call that allocates the reply, what calls to known code write. */
function rootContext(qmp: DisasmListing, base: Base, code: CodeMap): Context {
  const allocSite = qmp.lines.findIndex((l) => isCall(l.mnemonic) && ALLOCATORS.has(symbolBase(l.targetSymbol) ?? ''));
  return { ...base, allocSite, offsetOnly: null, callWrites: callWritesOf(code, base) };
}

function calleeContext(base: Base, code: CodeMap): Context {
  return { ...base, allocSite: -1, offsetOnly: null, callWrites: callWritesOf(code, base) };
}

/** The global behind migrate_get_current and migrate_get_current itself: what code that reads MigrationState refers to. */
export function stateHandles(input: DisassemblyInput): Base {
  return findMigrationState(input, []);
}

/**
 * What the effects should disassemble next: the calls of the query path no
 * listing covers yet. Never throws: it runs before anything is known.
 */
export function planQueryPath(input: DisassemblyInput): WantedCode[] {
  const code = codeMapOf(input);
  const qmp = knownOf(input, 'qmp_query_migrate');
  if (!qmp) return [];
  const base = findMigrationState(input, []);
  return walkQueryPath(qmp, rootContext(qmp.listing, base, code), code, calleeContext(base, code)).wanted;
}

function tracesMigrationState(ins: Array<State | undefined>): boolean {
  return ins.some((st) => st && [...st.values()].some((v) => [...v].some((l) => l.startsWith('S+'))));
}

/**
 * The whole analysis, in the order a maintainer would check it by hand:
 * the functions it needs, where MigrationState lives, the state offset, the
 * read, the publishes, the variant they imply, the transition probe and the
 * state address.
 */
export function analyzeDisassembly(input: DisassemblyInput): Analysis {
  const notes: string[] = [];
  const statusOff = input.statusFieldOffset ?? STATUS_FIELD_OFFSET;
  const { setState, qmp } = requiredListings(input);
  const code = codeMapOf(input);
  const anchors = new Anchors(input, code);
  const base = findMigrationState(input, notes);
  const offset = findStateOffset(input, base, notes);
  const found = findRead(input, qmp, base, offset, code, anchors, notes);
  noteDestinationLoads(found, notes);
  const publishes = findPublishes(found, statusOff, anchors, notes);
  const { variant, variantWhy } = classifyVariant(found, publishes);
  notes.push(`variant: ${variant}: ${variantWhy}`);
  const transition = transitionProbe(setState, input, anchors, knownOf(input, 'migrate_set_state'), notes);
  const query: Probe = {
    name: 'query', role: 'query', locations: [anchors.entry('qmp_query_migrate', qmp)], values: {},
    why: 'entry of qmp_query_migrate: opens the query window',
  };
  const stateAddrExpr = stateAddressExpression(offset.stateOffset, base, anchors, notes);
  const path = walkQueryPath(qmp, rootContext(qmp.listing, base, code), code, calleeContext(base, code));
  const readPoints = queryPathReadPoints(input, path, found, publishes, stateAddrExpr, anchors, notes);
  return {
    stateOffset: offset.stateOffset, workingStateOffset: found.workingStateOffset,
    stateOffsetWhy: offset.why || `assumed ${hex(found.workingStateOffset)} (see notes)`,
    global: base.global, migrateGetCurrent: base.migrateGetCurrent, stateAddrExpr, transition, read: found.read, publishes, query,
    variant, variantWhy, readPoints, notes,
  };
}

/** migrate_set_state and qmp_query_migrate, or a PROBES error naming what is missing. */
function requiredListings(input: DisassemblyInput): { setState: DisasmListing; qmp: KnownFunction } {
  const missing = REQUIRED_FUNCTIONS.filter((f) => !listingOf(input, f));
  if (missing.length > 0) {
    const all = Object.values(input.listings).every((t) => !t);
    const why = missing.map((f) => input.symbolProblems?.[f]).filter(Boolean);
    throw probesError(
      input.binary,
      `${missing.map((f) => `symbol ${f}`).join(' and ')} not found${why.length > 0 ? ` (${why.join('; ')})` : all ? ' (none of the QEMU migration functions is in the symbol table: not a QEMU system emulator, or stripped of its dynamic symbols)' : ''}; ` +
        `migrace needs ${missing.join(' and ')} for the transition and read probes`,
    );
  }
  return { setState: listingOf(input, 'migrate_set_state')!, qmp: knownOf(input, 'qmp_query_migrate')! };
}

type Base = Pick<Context, 'global' | 'migrateGetCurrent'>;

/** The global behind migrate_get_current: what makes a register a MigrationState pointer. */
function findMigrationState(input: DisassemblyInput, notes: string[]): Base {
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
  return { global, migrateGetCurrent };
}

interface StateOffset {
  stateOffset: number | null;
  why: string;
  /** What each helper said, for the message when nothing did. */
  tried: string[];
}

/** offsetof(MigrationState, state): debug info first, then the exported helpers, in the order of how directly they say it. */
function findStateOffset(input: DisassemblyInput, base: Base, notes: string[]): StateOffset {
  const evidence: OffsetEvidence[] = [];
  for (const fn of OFFSET_HELPERS) {
    const l = listingOf(input, fn);
    if (!l) continue;
    const e = offsetFromHelper(fn, l, base);
    if (e) evidence.push(e);
  }
  let stateOffset: number | null = null;
  let why = '';
  if (input.debugStateOffset !== undefined && input.debugStateOffset !== null) {
    stateOffset = input.debugStateOffset;
    why = `offsetof(MigrationState, state) = ${hex(stateOffset)} from debug info`;
  } else if (evidence.length > 0) {
    stateOffset = evidence[0].off;
    why = `state offset ${hex(stateOffset)} from ${evidence[0].fn}: ${evidence[0].line}`;
  }
  for (const e of evidence) {
    if (stateOffset !== null && e.off !== stateOffset) {
      notes.push(`warning: ${e.fn} reads MigrationState+${hex(e.off)} (${e.line}), not the state offset ${hex(stateOffset)}; kept ${hex(stateOffset)}`);
    }
  }
  const agreeing = evidence.filter((e) => e.off === stateOffset && !why.includes(`from ${e.fn}:`)).map((e) => e.fn);
  if (stateOffset !== null) {
    notes.push(why + (agreeing.length > 0 ? ` (${agreeing.join(', ')} ${agreeing.length === 1 ? 'agrees' : 'agree'})` : ''));
  }
  const tried = OFFSET_HELPERS.map((f) => `${f} ${listingOf(input, f) ? 'has no MigrationState field access' : 'absent'}`);
  return { stateOffset, why, tried };
}

interface ReadFound {
  search: ReadSearch;
  readIdx: number;
  read: PointFinding;
  workingStateOffset: number;
}

/** The read: the first load of the state into a register on the source path of qmp_query_migrate (or the callee that has it). */
function findRead(
  input: DisassemblyInput, qmp: KnownFunction, base: Base, offset: StateOffset, code: CodeMap, anchors: Anchors, notes: string[],
): ReadFound {
  const { stateOffset, tried } = offset;
  let ctx = rootContext(qmp.listing, base, code);
  let search = searchReads(qmp, new Map(), ctx, stateOffset);
  if (search.loads.length === 0 && stateOffset !== null && !tracesMigrationState(search.ins)) {
    ctx = { ...ctx, offsetOnly: stateOffset };
    search = searchReads(qmp, new Map(), ctx, stateOffset);
    if (search.loads.length > 0) notes.push(`warning: no MigrationState pointer traced in qmp_query_migrate; state loads matched by offset ${hex(stateOffset)} alone`);
  }
  const searchedIn = ['qmp_query_migrate'];
  if (search.loads.length === 0) {
    // fill_source_migration_info is inlined in distribution builds; at -O0 or with noinline it is a callee.
    const qmpModel = search.model;
    for (let i = 0; i < qmpModel.lines.length && search.loads.length === 0; i++) {
      const l = qmpModel.lines[i];
      if (!isCall(l.mnemonic) || l.target === null || l.targetSymbol?.endsWith('@plt') || l.target === base.migrateGetCurrent) continue;
      const callee = code.at(l.target) ?? knownOf(input, symbolBase(l.targetSymbol) ?? '');
      if (!callee || callee.name === 'migrate_get_current') continue;
      searchedIn.push(callee.name);
      const callerState = search.ins[i];
      const entry: State = new Map();
      for (const r of ARG_REGS) if (callerState?.has(r)) put(entry, r, callerState.get(r)!);
      const found = searchReads(callee, entry, calleeContext(base, code), stateOffset);
      if (found.loads.length > 0) {
        notes.push(`qmp_query_migrate calls ${callee.name} (${describe(l)}): the source part is there, not inlined`);
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

  const { model } = search;
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
  const readLoc = anchors.at(search.fn, next.offset);
  const read: PointFinding = {
    fn: model.name,
    address: next.address,
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
  return { search, readIdx, read, workingStateOffset };
}

/** Loads of another object's 32-bit fields ahead of the read: the destination side (current_incoming), worth a note. */
function noteDestinationLoads({ search: { model, ins }, readIdx }: ReadFound, notes: string[]): void {
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
}

/** Publishes: stores of a 32-bit register into info->status reached from the read, with where each stored value came from. */
function findPublishes({ search: { fn, model, ins }, readIdx, workingStateOffset }: ReadFound, statusOff: number, anchors: Anchors, notes: string[]): StoreFinding[] {
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
    publishes.push({
      fn: model.name,
      address: l.address,
      offset: l.offset,
      location: anchors.at(fn, l.offset),
      register: src.reg,
      value: gdbRegister(src.reg),
      sources,
      why: `${at(model, i)} stores ${gdbRegister(src.reg)} into info->status (offset ${statusOff} of the reply); the value is ${storedValueWhy(l, sources, model.lines[readIdx].offset)}`,
    });
  });
  for (const p of publishes) notes.push(`publish: ${p.location}, value ${p.value}: ${p.why}`);
  if (otherStores.length > 0) notes.push(`stores into info->status not traced to the state (not probed): ${otherStores.join('; ')}`);
  return publishes;
}

/** `a fresh re-read of the state: +181 ..., 6 bytes before, or the switch read at +117`. */
function storedValueWhy(store: DisasmLine, sources: StoreFinding['sources'], readOffset: number): string {
  const rereads = sources.filter((s) => s.kind === 're-read');
  const parts: string[] = [];
  const distance = (s: { offset: number | null }): string => {
    const d = s.offset === null ? -1 : store.offset - s.offset;
    return d > 0 && d <= 64 ? `, ${d} bytes before` : ', reached by a jump';
  };
  if (rereads.length > 0) parts.push(`a fresh re-read of the state: ${rereads.map((s) => `${s.text}${distance(s)}`).join('; ')}`);
  if (sources.some((s) => s.kind === 'read')) parts.push(`the switch read at +${readOffset}`);
  if (sources.some((s) => s.kind === 'other')) parts.push('on some path a value not traced to the state');
  return parts.join(', or ');
}

/** Unpatched when a status store publishes a re-read, patched when every one publishes the switch read. */
function classifyVariant({ search: { model }, readIdx }: ReadFound, publishes: StoreFinding[]): { variant: Variant; variantWhy: string } {
  const rereading = publishes.filter((p) => p.sources.some((s) => s.kind === 're-read'));
  if (publishes.length === 0) {
    return { variant: 'unknown', variantWhy: `no store of the state into info->status was found after the read in ${model.name}; the reply is the only evidence` };
  }
  if (rereading.length > 0) {
    return {
      variant: 'unpatched',
      variantWhy: `${rereading.length} of ${publishes.length} status stores publish a fresh re-read of the state (${rereading.map((p) => `+${p.offset}`).join(', ')}), not the value the switch read: the code before 552de79b ("migration: Read state once")`,
    };
  }
  if (publishes.every((p) => p.sources.every((s) => s.kind === 'read'))) {
    return {
      variant: 'patched',
      variantWhy: `every status store (${publishes.map((p) => `+${p.offset}`).join(', ')}) publishes the value read once for the switch at +${model.lines[readIdx].offset}: upstream 552de79b ("migration: Read state once")`,
    };
  }
  return { variant: 'unknown', variantWhy: 'the status stores publish the switch read on some paths and an untraced value on others' };
}

/**
 * The transition: the entry of migrate_set_state, its arguments by name
 * with debug info (gdb stops after the prologue, where -O0 code has stored
 * them), by the SysV ABI without, or when the location is its first
 * instruction (only the registers hold them for certain there). With debug
 * info a breakpoint on the name also lands on copies inlined into callers,
 * where the arguments may be optimized out: then the probe is the
 * out-of-line copy's own location, and the notes say what was left out.
 */
function transitionProbe(setState: DisasmListing, input: DisassemblyInput, anchors: Anchors, fn: KnownFunction | null, notes: string[]): Probe {
  const cas = setState.lines.find((l) => l.mnemonic.startsWith('cmpxchg'));
  const casWhy = cas ? `; its compare-and-swap is ${describe(cas)}` : '';
  const entry = input.transitionEntry && fn ? input.transitionEntry : null;
  const location = entry && fn ? anchors.at(fn, entry.address - fn.start) : anchors.entry('migrate_set_state', fn);
  const named = input.debugInfo && (location === 'migrate_set_state' || entry !== null);
  const leftOut = entry && entry.leftOut.length > 0 ? `; not placed on the copies inlined into callers (${entry.leftOut.join(', ')}), whose arguments may be optimized out` : '';
  const transition: Probe = named
    ? {
        name: 'transition', role: 'transition', locations: [location],
        values: { addr: 'state', old: 'old_state', new: 'new_state' },
        why: `debug info: entry of migrate_set_state, its parameters by name (state, old_state, new_state)${leftOut}${casWhy}`,
      }
    : {
        name: 'transition', role: 'transition', locations: [location],
        values: { addr: '$rdi', old: '$esi', new: '$edx' },
        why: `${location === 'migrate_set_state' ? 'exported symbol' : `the symbol table's migrate_set_state at ${location} (gdb's own lookup of the name lands elsewhere)`} migrate_set_state(int *state, int old_state, int new_state), x86-64 SysV arguments at entry: $rdi, $esi, $edx${casWhy}`,
      };
  const how = named ? ' (debug info)' : input.debugInfo ? ' (placed by address: ABI registers)' : ' (no debug info: ABI registers)';
  notes.push(`transition: ${location}, ${Object.entries(transition.values).map(([k, v]) => `${k}=${v}`).join(' ')}${how}${leftOut}`);
  return transition;
}

/** The state's address relative to a symbol, so that it holds for a PIE loaded anywhere, with no inferior call. */
function stateAddressExpression(stateOffset: number | null, { global, migrateGetCurrent }: Base, anchors: Anchors, notes: string[]): string | null {
  if (stateOffset === null || !global || migrateGetCurrent === null) {
    notes.push('state address: not known statically; take it from the first migrate_set_state hit ($rdi)');
    return null;
  }
  const from = anchors.expressionBase();
  const sign = (n: number): string => (n < 0 ? `- ${hex(-n)}` : `+ ${hex(n)}`);
  const expr = global.kind === 'pointer'
    ? `(int *)(*(char **)((char *)${from.name} ${sign(global.address - from.start)}) + ${hex(stateOffset)})`
    : `(int *)((char *)${from.name} ${sign(global.address - from.start + stateOffset)})`;
  notes.push(`state address: ${expr}`);
  return expr;
}

/**
 * Every read of the state on the query path as a profile entry: the switch
 * read, the re-reads that feed a publish, and every load, compare or test
 * in qmp_query_migrate and what it calls.
 */
function queryPathReadPoints(
  input: DisassemblyInput, path: QueryPath, found: ReadFound, publishes: StoreFinding[], stateAddrExpr: string | null, anchors: Anchors, notes: string[],
): ReadPoint[] {
  const reads = readPointsOn(path, found.workingStateOffset, stateAddrExpr);
  const switchRead = found.search.model.lines[found.readIdx].address;
  const published = new Map<number, number[]>();
  for (const p of publishes) {
    for (const src of p.sources) {
      if (src.kind !== 're-read' || src.offset === null) continue;
      const addr = found.search.fn.start + src.offset;
      published.set(addr, [...(published.get(addr) ?? []), p.offset]);
    }
  }
  const points = reads.filter((f) => f.next).map((f) => readPoint(input, f, switchRead, published, anchors));
  const depth = Math.max(0, ...path.functions.map((p) => p.depth));
  notes.push(`query path: ${path.functions.length} function(s) to depth ${depth} of ${QUERY_PATH_DEPTH}: ${path.functions.map((p) => p.fn.name).join(', ')}`);
  notes.push(points.length > 0
    ? `read points: ${points.map((r) => `${r.name} (${r.access})`).join(', ')}`
    : 'read points: none beside the read probe');
  return points;
}

function readPoint(input: DisassemblyInput, f: FoundRead, switchRead: number, published: Map<number, number[]>, anchors: Anchors): ReadPoint {
  const fn = f.path.fn;
  const next = f.next!;
  const what = f.read.access === 'load' ? 'loads' : f.read.access === 'compare' ? `${f.line.mnemonic.startsWith('test') ? 'tests' : 'compares'}` : 'reads';
  const role = f.line.address === switchRead
    ? '; the read the switch uses (probe "read")'
    : published.has(f.line.address) ? `; the re-read published at ${published.get(f.line.address)!.map((o) => `+${o}`).join(', ')}` : '';
  const pointer = f.read.mem.base === 'rip' ? 'the MigrationState global' : `%${f.read.mem.base}, a MigrationState pointer on every path here`;
  return {
    name: `${fn.name}+${f.line.offset}`,
    function: fn.name,
    offset: f.line.offset,
    pc: hex(f.line.address),
    next_pc: hex(next.address),
    instruction: f.line.text.replace(/\s+/, ' '),
    access: f.read.access,
    location: anchors.at(fn, next.offset),
    value: f.value,
    via: f.path.via,
    found: ['static'],
    source: input.sourceLines?.[hex(f.line.address)] ?? null,
    why: `${describe(f.line)} ${what} MigrationState.state through ${pointer}${role}`,
  };
}

export interface ProfileMeta {
  binary: string | null;
  buildId: string | null;
  qemuVersion: string | null;
  /** What the binary printed for -version, for the report. */
  versionLine?: string | null;
  /** The names of the states (status-lookup.ts decideStatusNames). */
  status: StatusDecision;
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
  const notes = [...a.notes];
  notes.push(REVISION_NOTE);
  notes.push(meta.qemuVersion
    ? `QEMU ${meta.qemuVersion}${meta.versionLine ? ` (${meta.versionLine})` : ''}: MigrationStatus table ${meta.status.status_table}`
    : `no QEMU version (the binary printed no "QEMU emulator version"): MigrationStatus table ${meta.status.status_table}`);
  notes.push(meta.status.note);
  return ProfileSchema.parse({
    format: 'migrace-profile',
    version: 1,
    kind: 'address',
    binary: meta.binary,
    build_id: meta.buildId,
    qemu_version: meta.qemuVersion,
    status_table: meta.status.status_table,
    status_names: meta.status.status_names,
    variant: a.variant,
    state_offset: a.stateOffset,
    state_addr_expr: a.stateAddrExpr,
    probes: [
      a.transition,
      { name: 'read', role: 'read', locations: [a.read.location], values: { value: a.read.value }, why: a.read.why },
      ...publishProbes,
      a.query,
    ],
    read_points: a.readPoints,
    notes,
  });
}
