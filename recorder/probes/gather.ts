import { hex } from './disasm.js';
import { FIRST_PASS_FUNCTIONS, planQueryPath, stateHandles, type Analysis, type DisassemblyInput } from './analysis.js';
import { ElfImage, type ElfSymbol } from './elf-image.js';
import type { ElfInfo } from './elf.js';
import { cloneBase, FunctionTable, type FunctionRange } from './functions.js';
import { debugFacts, disassembleRanges, type GdbOptions } from './gdb-batch.js';
import { QUERY_PATH_DEPTH, type FunctionCode } from './query-path.js';

/**
 * What discovery reads before it analyzes, and what debug info adds after:
 *
 * 1. the functions it needs, by the ELF symbol table (exported and local
 *    symbols, a separate debug file's too), never by a gdb name lookup;
 * 2. their code, disassembled by address range with --readnever;
 * 3. the query path, a round per depth: the callees planQueryPath wants,
 *    their extent from a symbol or the unwind tables, deeper calls only when
 *    they carry MigrationState or their bytes refer to it;
 * 4. with debug info: offsetof the state, whether gdb's own lookup of each
 *    name gives the symbol table's address (a name that lands on a clone is
 *    no anchor for a location), and file:line with the inlined function of
 *    every point found.
 */

export interface Gathered {
  input: DisassemblyInput;
  table: FunctionTable;
  image: ElfImage;
  /** The binary's symbols and its separate debug file's. */
  symbols: ElfSymbol[];
  /** What the gathering found, for the report. */
  notes: string[];
}

/** A name gdb's expression parser reads as one symbol (`a.part.0` would be a member access). */
const PLAIN_NAME = /^[A-Za-z_]\w*$/;

export async function gatherCode(path: string, elf: ElfInfo, opts: GdbOptions): Promise<Gathered> {
  const image = await ElfImage.load(path);
  const debugImage = elf.separateDebugFile ? await ElfImage.load(elf.separateDebugFile).catch(() => null) : null;
  const symbols = [...image.symbols(), ...(debugImage?.symbols() ?? [])];
  const table = new FunctionTable(symbols, (a) => image.unwindExtent(a));
  const notes: string[] = [];
  const local = table.hasLocalSymbols();
  notes.push(`symbols: ${local ? 'exported and local' : 'exported only (stripped)'}${debugImage ? `, with ${elf.separateDebugFile}'s` : ''}; function extents from the symbol table, else the unwind tables`);

  const named = new Map<string, FunctionRange>();
  const symbolProblems: Record<string, string> = {};
  for (const name of FIRST_PASS_FUNCTIONS) {
    const r = table.byName(name);
    if (r.found) named.set(name, r.range);
    else if (r.clones.length > 0 || !r.why.startsWith('no symbol')) symbolProblems[name] = r.why;
  }
  for (const [name, why] of Object.entries(symbolProblems)) notes.push(`symbol ${name}: ${why}`);
  const input: DisassemblyInput = {
    listings: Object.fromEntries(FIRST_PASS_FUNCTIONS.map((n) => [n, null])), code: [], debugInfo: false, binary: path, symbolProblems,
    notAnchors: FIRST_PASS_FUNCTIONS.filter((n) => !PLAIN_NAME.test(n)),
  };
  const g: Gathered = { input, table, image, symbols, notes };
  notes.push(...await followQueryPath(path, g, named, opts));
  return g;
}

/** How many functions a round fetches ahead of need, at most: gdb's start-up is what a round costs. */
const LOOKAHEAD = 80;

/**
 * Rounds of planQueryPath until it wants nothing new. Each gdb run also
 * fetches, ahead of need, what the code it disassembles may call (every
 * e8/e9 rel32 that lands on a function start): most rounds then find their
 * code already there. Round 0 is the named functions and qmp_query_migrate's
 * callees.
 */
async function followQueryPath(path: string, g: Gathered, named: Map<string, FunctionRange>, opts: GdbOptions): Promise<string[]> {
  const { input, table, image } = g;
  const fetched = new Set<number>();
  const unfollowed: string[] = [];
  let declined = 0;
  let runs = 0;
  let batch: FunctionRange[] = [...named.values()];
  const qmp = named.get('qmp_query_migrate');
  for (let round = 0; round <= QUERY_PATH_DEPTH + 1 && (batch.length > 0 || round === 0); round++) {
    const all = [...batch, ...lookAhead(g, batch, fetched)];
    if (all.length === 0) break;
    const texts = await disassembleRanges(path, all, opts);
    runs++;
    for (const r of all) fetched.add(r.start);
    for (const [name, r] of named) if (texts.has(r.start)) input.listings[name] = texts.get(r.start) ?? null;
    const refers = refersToState(g);
    for (const r of all) {
      const text = texts.get(r.start);
      if (!text || [...named.values()].includes(r)) continue;
      input.code!.push({
        name: r.name, start: r.start, text, anchor: r.symbol !== null && PLAIN_NAME.test(r.name) && table.unambiguous(r.name), refersToState: refers(r),
      });
    }
    batch = [];
    for (const w of planQueryPath(input)) {
      if (fetched.has(w.target)) continue;
      fetched.add(w.target);
      const range = table.startingAt(w.target);
      if (!range) {
        const inside = image.unwindExtent(w.target);
        const where = inside ? `inside the code at ${hex(inside.start)}, entered at +${w.target - inside.start}` : 'no symbol or unwind entry gives its extent';
        unfollowed.push(`${hex(w.target)} (${w.line.mnemonic} from ${w.from}: ${where})`);
      } else if (!w.certain && !refers(range)) {
        declined++;
      } else {
        batch.push(range);
      }
    }
    if (!qmp) break;
  }
  const walked = input.code!.length;
  const notes = [`query path: ${runs} gdb run(s), ${walked} callee(s) disassembled by address (some ahead of need); deeper calls passed no MigrationState are followed only into code that refers to it`];
  if (declined > 0) notes.push(`query path: ${declined} deeper call(s) left out (passed no MigrationState, and their code never refers to it)`);
  if (unfollowed.length > 0) notes.push(`not followed (no function starts there): ${unfollowed.slice(0, 6).join('; ')}${unfollowed.length > 6 ? `; and ${unfollowed.length - 6} more` : ''}`);
  return notes;
}

/** What the batch may call, two calls deep, that nobody fetched yet: at most LOOKAHEAD functions, nearest first. */
function lookAhead(g: Gathered, batch: FunctionRange[], fetched: Set<number>): FunctionRange[] {
  const seen = new Set([...fetched, ...batch.map((r) => r.start)]);
  const out: FunctionRange[] = [];
  let level = batch;
  for (let depth = 0; depth < 2 && out.length < LOOKAHEAD; depth++) {
    const next: FunctionRange[] = [];
    for (const a of level.flatMap((r) => g.image.branchTargets(r.start, r.end))) {
      if (seen.has(a)) continue;
      seen.add(a);
      const r = g.table.startingAt(a);
      if (r) next.push(r);
    }
    out.push(...next.slice(0, LOOKAHEAD - out.length));
    level = next;
  }
  return out;
}

/** Whether code may refer to MigrationState itself: the global behind migrate_get_current, or a call to it. */
function refersToState(g: Gathered): (r: FunctionRange) => boolean {
  const handles = stateHandles(g.input);
  const global = handles.global;
  return (r) => g.image.refersTo(r.start, r.end, (a) =>
    a === handles.migrateGetCurrent || (global !== null && (global.kind === 'pointer' ? a === global.address : a >= global.address && a < global.address + 0x10000)));
}

/**
 * Ask gdb, with debug info loaded, what only it knows, and fold the answers
 * into the input for the final analysis. `found` is the analysis made
 * without them: its points are the ones whose source lines are asked.
 */
export async function addDebugFacts(g: Gathered, found: Analysis | null, opts: GdbOptions): Promise<string[]> {
  const { input, table } = g;
  const anchorsUsed = [
    ...Object.keys(input.listings).filter((n) => input.listings[n] && !(input.notAnchors ?? []).includes(n)),
    ...(input.code ?? []).filter((c) => c.anchor).map((c) => c.name),
  ];
  const points = found
    ? [found.read.address, ...found.publishes.map((p) => p.address), ...found.readPoints.map((r) => Number.parseInt(r.pc, 16))]
    : [];
  const answers = await debugFacts(input.binary ?? '', { names: [...new Set(anchorsUsed)], lines: [...new Set(points)], breakpoints: ['migrate_set_state'] }, opts);
  const notes: string[] = [];
  if (answers.stateOffset === null) {
    notes.push('debug info: gdb knows no MigrationState type; the probes are placed as for a stripped build');
    return notes;
  }
  input.debugInfo = true;
  input.debugStateOffset = answers.stateOffset;
  const problems: string[] = [];
  const startOf = (name: string): number | null => table.byName(name).found ? (table.byName(name) as { range: FunctionRange }).range.start : null;
  for (const name of new Set(anchorsUsed)) {
    const want = startOf(name);
    const got = answers.addresses.get(name);
    if (want === null || got === want) continue;
    const clone = got === undefined ? null : table.covering(got);
    problems.push(`gdb resolves ${name} to ${got === undefined ? 'nothing' : `${hex(got)}${clone ? ` (${clone.name})` : ''}`}, the symbol table has it at ${hex(want)}`);
    input.notAnchors = [...(input.notAnchors ?? []), name];
    for (const c of input.code ?? []) if (c.name === name) c.anchor = false;
  }
  input.anchorProblems = problems;
  const setState = table.byName('migrate_set_state');
  const placed = answers.breakpoints.get('migrate_set_state') ?? [];
  if (setState.found && placed.length > 0) {
    const { start, end } = setState.range;
    const inside = placed.filter((a) => a >= start && a < end).sort((a, b) => a - b);
    const outside = placed.filter((a) => a < start || a >= end);
    if (inside.length > 0 && outside.length > 0) {
      input.transitionEntry = { address: inside[0], leftOut: outside.map((a) => `${hex(a)} in ${table.covering(a)?.name ?? '?'}`) };
    } else if (inside.length === 0) {
      problems.push(`a breakpoint on migrate_set_state lands at ${placed.map(hex).join(', ')}, outside the symbol table's ${hex(start)}..${hex(end)}`);
      input.notAnchors = [...(input.notAnchors ?? []), 'migrate_set_state'];
    }
  }
  for (const p of problems) notes.push(`debug info: ${p}; locations in it are placed from another symbol`);
  const sourceLines: Record<string, string> = {};
  for (const [addr, l] of answers.lines) {
    const holder = table.covering(addr)?.name;
    const where = !holder || holder === l.fn ? '' : cloneBase(holder) === l.fn ? ` (gcc's copy ${holder})` : ` (inlined into ${holder})`;
    sourceLines[hex(addr)] = `${l.file}:${l.line} in ${l.fn}${where}`;
  }
  input.sourceLines = sourceLines;
  notes.push(`debug info: offsetof(MigrationState, state) = ${hex(answers.stateOffset)}; ${answers.lines.size} of ${points.length} point(s) have a source line`);
  return notes;
}
