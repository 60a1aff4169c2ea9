import { hex } from './disasm.js';
import type { ElfSymbol, Extent } from './elf-image.js';

/**
 * Which code is which function, from the ELF file alone: never from a gdb
 * name lookup, which with debug info can land on a clone gcc split off
 * (QEMU 5.2 at -O2 -g: `migrate_get_current` resolved to
 * `migrate_get_current.part.0`, the failed-assert path).
 *
 * Parts: clone names (`.part.N`, `.cold`, `.isra.N`, `.constprop.N`, ...),
 * then FunctionTable: a function by name (with its clones when the name
 * itself is missing), the function that starts at an address (its symbol,
 * or its unwind entry when a stripped build has no symbol there), and the
 * symbol that covers an address.
 */

export interface FunctionRange {
  /** What reports call it: its symbol, or `sub_HEX` for code a stripped build names nowhere. */
  name: string;
  start: number;
  end: number;
  /** The symbol it comes from, or null when only the unwind tables know it. */
  symbol: ElfSymbol | null;
}

/** gcc's suffixes for copies of a function: IPA-split parts, hot/cold splits, changed signatures, constant propagation. */
const CLONE = /\.(?:part|cold|isra|constprop|lto_priv|localalias|llvm)(?:\.\d+)?/;

/** `migrate_get_current.part.0` -> `migrate_get_current`; a name that is no clone is returned as it is. */
export function cloneBase(name: string): string {
  const m = CLONE.exec(name);
  return m ? name.slice(0, m.index) : name;
}

function isClone(name: string): boolean {
  return cloneBase(name) !== name;
}

function subName(address: number): string {
  return `sub_${address.toString(16)}`;
}

export type NamedFunction =
  | { found: true; range: FunctionRange }
  | { found: false; why: string; clones: ElfSymbol[] };

export class FunctionTable {
  private readonly funcs: ElfSymbol[];
  private readonly byStart = new Map<number, ElfSymbol>();

  /** `symbols`: the binary's and its debug file's; `unwind`: the extent the unwind tables give code at an address. */
  constructor(symbols: ElfSymbol[], private readonly unwind: (addr: number) => Extent | null) {
    const seen = new Set<string>();
    this.funcs = [];
    for (const s of symbols) {
      if (s.kind !== 'func') continue;
      const key = `${s.name}@${s.value}`;
      if (seen.has(key)) continue;
      seen.add(key);
      this.funcs.push(s);
      // An exported name wins over a local alias at the same address.
      if (!this.byStart.has(s.value) || (isClone(this.byStart.get(s.value)!.name) && !isClone(s.name))) this.byStart.set(s.value, s);
    }
  }

  /** The function a name means in the symbol table: exactly one sized FUNC symbol of that name. */
  byName(name: string): NamedFunction {
    const exact = this.funcs.filter((s) => s.name === name && s.size > 0);
    const clones = this.funcs.filter((s) => s.name !== name && cloneBase(s.name) === name);
    const distinct = [...new Set(exact.map((s) => s.value))];
    if (distinct.length === 1) {
      const s = exact[0];
      return { found: true, range: { name, start: s.value, end: s.value + s.size, symbol: s } };
    }
    if (distinct.length > 1) {
      return { found: false, why: `${name} names ${distinct.length} functions in the symbol table (${distinct.map(hex).join(', ')})`, clones };
    }
    const cloneText = clones.length > 0
      ? `; the symbol table has only ${clones.map((c) => `${c.name} at ${hex(c.value)}`).join(', ')}, copies gcc made whose code and arguments are not ${name}'s`
      : '';
    return { found: false, why: `no symbol ${name}${cloneText}`, clones };
  }

  /** The function that starts at `start`: its symbol's extent, or its unwind entry's. */
  startingAt(start: number): FunctionRange | null {
    const s = this.byStart.get(start);
    if (s && s.size > 0) return { name: s.name, start, end: start + s.size, symbol: s };
    const unwind = this.unwind(start);
    if (unwind && unwind.start === start) return { name: s?.name ?? subName(start), start, end: unwind.end, symbol: s ?? null };
    return null;
  }

  /** The sized FUNC symbol whose extent covers `addr`, if any. */
  covering(addr: number): ElfSymbol | null {
    return this.funcs.find((s) => s.size > 0 && addr >= s.value && addr < s.value + s.size) ?? null;
  }

  /** A name the symbol table gives one function, and not itself a clone's. */
  unambiguous(name: string): boolean {
    return this.byName(name).found && !isClone(name);
  }

  /** Local symbols too (an unstripped build, or a debug file's symbol table): local functions have names. */
  hasLocalSymbols(): boolean {
    return this.funcs.some((s) => s.table === 'symtab' && s.binding === 'local');
  }
}
