import { MigraceError } from '../../trace/errors.js';
import { tableIdFor } from '../../trace/status.js';
import type { Variant } from '../../trace/schema.js';
import { describe, gdbRegister, hex, isCall, parseDisassembly, parseOperand, type DisasmLine, type DisasmListing, type Operand } from './disasm.js';
import {
  ARG_REGS, FunctionModel, get, parseFieldLabel, put, symbolBase, uniformGlobal, uniformOffset, type Context, type GlobalInfo, type State,
} from './dataflow.js';
import { ProfileSchema, type Probe, type Profile } from './profile.js';

/**
 * The pure analysis of discovery: from gdb's disassembly text to what a
 * profile says. No process, no file: the effects live in discover.ts.
 *
 * Parts, in order:
 * - the functions asked for, and the shapes the analysis returns;
 * - helpers that read one listing (the global behind migrate_get_current,
 *   the state offset an exported helper reveals, the state loads);
 * - analyzeDisassembly, one named step each: required functions, where
 *   MigrationState lives, the state offset, the read, the destination-side
 *   loads it skips, the publishes, the variant, the transition probe, the
 *   state address;
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
export const DISCOVERY_REVISION = 1;
export const REVISION_NOTE = `discovery revision ${DISCOVERY_REVISION}`;

/** `info->status` sits after `bool has_status` in every QAPI-generated MigrationInfo we have seen. */
export const STATUS_FIELD_OFFSET = 4;

/** Allocators QEMU (g_malloc0 / g_new0) and minimig (calloc) use for the reply. */
const ALLOCATORS = new Set(['g_malloc0', 'g_malloc0_n', 'g_try_malloc0', 'g_try_malloc0_n', 'calloc']);

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
  const base = findMigrationState(input, notes);
  const offset = findStateOffset(input, base, notes);
  const found = findRead(input, qmp, base, offset, notes);
  noteDestinationLoads(found, notes);
  const publishes = findPublishes(found, statusOff, notes);
  const { variant, variantWhy } = classifyVariant(found, publishes);
  notes.push(`variant: ${variant}: ${variantWhy}`);
  const transition = transitionProbe(setState, input.debugInfo, notes);
  const query: Probe = {
    name: 'query', role: 'query', locations: ['qmp_query_migrate'], values: {},
    why: 'entry of qmp_query_migrate: opens the query window',
  };
  const stateAddrExpr = stateAddressExpression(offset.stateOffset, base, notes);
  return {
    stateOffset: offset.stateOffset, workingStateOffset: found.workingStateOffset,
    stateOffsetWhy: offset.why || `assumed ${hex(found.workingStateOffset)} (see notes)`,
    global: base.global, migrateGetCurrent: base.migrateGetCurrent, stateAddrExpr, transition, read: found.read, publishes, query,
    variant, variantWhy, notes,
  };
}

/** migrate_set_state and qmp_query_migrate, or a PROBES error naming what is missing. */
function requiredListings(input: DisassemblyInput): { setState: DisasmListing; qmp: DisasmListing } {
  const missing = REQUIRED_FUNCTIONS.filter((f) => !listingOf(input, f));
  if (missing.length > 0) {
    const all = Object.values(input.listings).every((t) => !t);
    throw probesError(
      input.binary,
      `${missing.map((f) => `symbol ${f}`).join(' and ')} not found${all ? ' (gdb found none of the QEMU migration functions: not a QEMU system emulator, or stripped of its dynamic symbols)' : ''}; ` +
        `migrace needs ${missing.join(' and ')} for the transition and read probes`,
    );
  }
  return { setState: listingOf(input, 'migrate_set_state')!, qmp: listingOf(input, 'qmp_query_migrate')! };
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
function findRead(input: DisassemblyInput, qmp: DisasmListing, base: Base, offset: StateOffset, notes: string[]): ReadFound {
  const { stateOffset, tried } = offset;
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
function findPublishes({ search: { model, ins }, readIdx, workingStateOffset }: ReadFound, statusOff: number, notes: string[]): StoreFinding[] {
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
      offset: l.offset,
      location: `*${model.name}+${l.offset}`,
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

/** The transition: the entry of migrate_set_state, its arguments by name with debug info, by the SysV ABI without. */
function transitionProbe(setState: DisasmListing, debugInfo: boolean, notes: string[]): Probe {
  const cas = setState.lines.find((l) => l.mnemonic.startsWith('cmpxchg'));
  const casWhy = cas ? `; its compare-and-swap is ${describe(cas)}` : '';
  const transition: Probe = debugInfo
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
  notes.push(`transition: migrate_set_state, ${Object.entries(transition.values).map(([k, v]) => `${k}=${v}`).join(' ')}${debugInfo ? ' (debug info)' : ' (no debug info: ABI registers)'}`);
  return transition;
}

/** The state's address relative to a symbol, so that it holds for a PIE loaded anywhere, with no inferior call. */
function stateAddressExpression(stateOffset: number | null, { global, migrateGetCurrent }: Base, notes: string[]): string | null {
  if (stateOffset === null || !global || migrateGetCurrent === null) {
    notes.push('state address: not known statically; take it from the first migrate_set_state hit ($rdi)');
    return null;
  }
  const sign = (n: number): string => (n < 0 ? `- ${hex(-n)}` : `+ ${hex(n)}`);
  const expr = global.kind === 'pointer'
    ? `(int *)(*(char **)((char *)migrate_get_current ${sign(global.address - migrateGetCurrent)}) + ${hex(stateOffset)})`
    : `(int *)((char *)migrate_get_current ${sign(global.address - migrateGetCurrent + stateOffset)})`;
  notes.push(`state address: ${expr}`);
  return expr;
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

