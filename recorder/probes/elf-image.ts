import { cStringIn, ELF, loadElfLayout, u64, type ElfLayout, type ElfSection } from './elf.js';

/**
 * A loaded ELF file as discovery reads it without running it: symbols,
 * the bytes at a virtual address, pointers as the dynamic loader would
 * relocate them, and function extents from the unwind tables.
 *
 * Parts, in order:
 * - symbols of .dynsym (exported) and .symtab (local too, when not stripped;
 *   a separate debug file made with `objcopy --only-keep-debug` keeps one);
 * - data at a virtual address through the PT_LOAD segments, C strings;
 * - pointers: a PIE's slot holds 0 and .rela.dyn's R_X86_64_RELATIVE addend
 *   is the value (R_X86_64_64 adds a symbol); a slot with its value in
 *   place (RELR, non-PIE) is read as it is;
 * - function extents from .eh_frame_hdr / .eh_frame: every function with
 *   unwind info has one, even the local functions of a stripped build.
 */

export interface ElfSymbol {
  name: string;
  value: number;
  size: number;
  kind: 'func' | 'object' | 'other';
  binding: 'local' | 'global' | 'weak';
  table: 'dynsym' | 'symtab';
}

export interface Extent {
  start: number;
  end: number;
}


interface Relocation {
  type: number;
  sym: number;
  addend: number;
}

export class ElfImage {
  private symbolList: ElfSymbol[] | null = null;
  private dynamicSymbols: ElfSymbol[] | null = null;
  private relocations: RelocationIndex | null = null;
  private unwind: UnwindIndex | null | undefined;

  constructor(readonly path: string, readonly layout: ElfLayout, private readonly data: Buffer) {}

  static async load(path: string): Promise<ElfImage> {
    const { layout, data } = await loadElfLayout(path);
    return new ElfImage(path, layout, data);
  }

  section(name: string): ElfSection | null {
    return this.layout.sections.find((s) => s.name === name && s.type !== ELF.SHT_NOBITS) ?? null;
  }

  /** Every defined symbol with a name, exported ones first. */
  symbols(): ElfSymbol[] {
    if (!this.symbolList) {
      this.symbolList = [...this.symbolsOf(ELF.SHT_DYNSYM, 'dynsym'), ...this.symbolsOf(ELF.SHT_SYMTAB, 'symtab')].filter((s) => s.name && s.value !== 0);
    }
    return this.symbolList;
  }

  private symbolsOf(type: number, table: ElfSymbol['table']): ElfSymbol[] {
    const out: ElfSymbol[] = [];
    for (const s of this.layout.sections) {
      if (s.type !== type || s.entsize < 24 || s.offset + s.size > this.data.length) continue;
      const strings = this.layout.sections[s.link];
      if (!strings || strings.type === ELF.SHT_NOBITS || strings.offset + strings.size > this.data.length) continue;
      const names = this.data.subarray(strings.offset, strings.offset + strings.size);
      for (let at = s.offset; at + 24 <= s.offset + s.size; at += s.entsize) {
        const info = this.data[at + 4];
        const shndx = this.data.readUInt16LE(at + 6);
        if (shndx === 0) continue; // undefined: an import
        const t = info & 0xf;
        const b = info >> 4;
        out.push({
          name: cStringIn(names, this.data.readUInt32LE(at)),
          value: u64(this.data, at + 8),
          size: u64(this.data, at + 16),
          kind: t === ELF.STT_FUNC ? 'func' : t === ELF.STT_OBJECT ? 'object' : 'other',
          binding: b === 0 ? 'local' : b === 2 ? 'weak' : 'global',
          table,
        });
      }
    }
    return out;
  }

  /** The bytes at a virtual address, or null when no segment has them in the file. */
  bytes(vaddr: number, length: number): Buffer | null {
    for (const seg of this.layout.segments) {
      if (vaddr < seg.vaddr || vaddr + length > seg.vaddr + seg.filesz) continue;
      const at = seg.offset + (vaddr - seg.vaddr);
      if (at + length > this.data.length) return null;
      return this.data.subarray(at, at + length);
    }
    return null;
  }

  /** A NUL-terminated string at a virtual address, at most `max` bytes, or null. */
  cString(vaddr: number, max = 256): string | null {
    for (let n = Math.min(max, 16); ; n = Math.min(max, n * 4)) {
      const buf = this.bytes(vaddr, n) ?? this.tail(vaddr, n);
      if (!buf) return null;
      const end = buf.indexOf(0);
      if (end >= 0) return buf.subarray(0, end).toString('latin1');
      if (n >= max) return null;
    }
  }

  /** What is left of a segment from vaddr, when fewer than n bytes are. */
  private tail(vaddr: number, n: number): Buffer | null {
    for (const seg of this.layout.segments) {
      if (vaddr < seg.vaddr || vaddr >= seg.vaddr + seg.filesz) continue;
      return this.bytes(vaddr, Math.min(n, seg.vaddr + seg.filesz - vaddr));
    }
    return null;
  }

  /** A 64-bit pointer at vaddr as the loader leaves it (relative to a load base of 0), or null. */
  pointer(vaddr: number): number | null {
    const rel = this.relocationAt(vaddr);
    if (rel?.type === ELF.R_X86_64_RELATIVE) return rel.addend;
    if (rel?.type === ELF.R_X86_64_64) {
      const sym = this.dynamicSymbol(rel.sym);
      return sym ? sym.value + rel.addend : null;
    }
    if (rel) return null;
    const slot = this.bytes(vaddr, 8);
    return slot ? u64(slot, 0) : null;
  }

  private relocationAt(vaddr: number): Relocation | undefined {
    this.relocations ??= RelocationIndex.of(this.layout.sections, this.data);
    return this.relocations.at(vaddr);
  }

  private dynamicSymbol(index: number): ElfSymbol | null {
    if (!this.dynamicSymbols) {
      const dynsym = this.layout.sections.find((s) => s.type === ELF.SHT_DYNSYM);
      this.dynamicSymbols = [];
      if (dynsym && dynsym.entsize >= 24) {
        const strings = this.layout.sections[dynsym.link];
        const names = strings ? this.data.subarray(strings.offset, strings.offset + strings.size) : Buffer.alloc(0);
        for (let at = dynsym.offset; at + 24 <= dynsym.offset + dynsym.size; at += dynsym.entsize) {
          this.dynamicSymbols.push({
            name: cStringIn(names, this.data.readUInt32LE(at)), value: u64(this.data, at + 8), size: u64(this.data, at + 16),
            kind: 'other', binding: 'global', table: 'dynsym',
          });
        }
      }
    }
    return this.dynamicSymbols[index] ?? null;
  }

  /**
   * Whether code in [start, end) may refer to an address `test` accepts:
   * a rel32 (call, jump, or rip-relative operand, with up to 4 bytes of
   * immediate after it) that lands there. Decoded from every byte offset, so
   * it can say yes wrongly, never no wrongly.
   */
  refersTo(start: number, end: number, test: (addr: number) => boolean): boolean {
    const code = this.bytes(start, end - start);
    if (!code) return true;
    for (let p = 0; p + 4 <= code.length; p++) {
      const rel = code.readInt32LE(p);
      for (const imm of [0, 1, 2, 4]) if (test(start + p + 4 + imm + rel)) return true;
    }
    return false;
  }

  /** Targets of what decodes as `call rel32` (e8) or `jmp rel32` (e9) anywhere in [start, end): a superset of the direct calls. */
  branchTargets(start: number, end: number): number[] {
    const code = this.bytes(start, end - start);
    if (!code) return [];
    const out = new Set<number>();
    for (let p = 0; p + 5 <= code.length; p++) {
      if (code[p] === 0xe8 || code[p] === 0xe9) out.add(start + p + 5 + code.readInt32LE(p + 1));
    }
    return [...out];
  }

  /** The extent of the function that starts at (or contains) addr, from its unwind entry; null without one. */
  unwindExtent(addr: number): Extent | null {
    if (this.unwind === undefined) this.unwind = UnwindIndex.from(this);
    return this.unwind?.extentAt(addr) ?? null;
  }
}

/* ------------------------------------------------------------------ */
/* .rela.dyn: searched in place */

/**
 * QEMU has some 190,000 dynamic relocations, and discovery needs a few
 * dozen: search the tables where they lie. Linkers sort them by offset, so
 * halving finds an entry at once; a miss is confirmed by a scan, since
 * nothing promises the order.
 */
class RelocationIndex {
  private constructor(private readonly tables: ElfSection[], private readonly data: Buffer) {}

  static of(sections: readonly ElfSection[], data: Buffer): RelocationIndex {
    // .rela.plt fills function slots at run time; data pointers live in .rela.dyn.
    return new RelocationIndex(sections.filter((s) => s.type === ELF.SHT_RELA && s.entsize >= 24 && s.offset + s.size <= data.length && s.name !== '.rela.plt'), data);
  }

  private offsetAt(at: number): number {
    return this.data.readUInt32LE(at) + this.data.readUInt32LE(at + 4) * 2 ** 32;
  }

  private entry(at: number): Relocation {
    return { type: this.data.readUInt32LE(at + 8), sym: this.data.readUInt32LE(at + 12), addend: this.data.readUInt32LE(at + 16) + this.data.readInt32LE(at + 20) * 2 ** 32 };
  }

  at(vaddr: number): Relocation | undefined {
    for (const t of this.tables) {
      let lo = 0;
      let hi = Math.floor(t.size / t.entsize) - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        const o = this.offsetAt(t.offset + mid * t.entsize);
        if (o === vaddr) return this.entry(t.offset + mid * t.entsize);
        if (o < vaddr) lo = mid + 1;
        else hi = mid - 1;
      }
    }
    for (const t of this.tables) {
      for (let at = t.offset; at + 24 <= t.offset + t.size; at += t.entsize) if (this.offsetAt(at) === vaddr) return this.entry(at);
    }
    return undefined;
  }
}

/* ------------------------------------------------------------------ */
/* .eh_frame_hdr: a sorted table of (function start, FDE address) */

const DW_EH_PE_omit = 0xff;

/** A pointer in DWARF EH encoding, read at `at` (a virtual address). */
interface Cursor {
  img: ElfImage;
  at: number;
}

function readEncoded(c: Cursor, enc: number, bases: { data?: number } = {}): number | null {
  if (enc === DW_EH_PE_omit) return null;
  const start = c.at;
  const format = enc & 0x0f;
  const sizes: Record<number, number> = { 0x00: 8, 0x02: 2, 0x03: 4, 0x04: 8, 0x0a: 2, 0x0b: 4, 0x0c: 8 };
  const size = sizes[format];
  if (size === undefined) return null;
  const b = c.img.bytes(start, size);
  if (!b) return null;
  let v: number;
  switch (format) {
    case 0x02: v = b.readUInt16LE(0); break;
    case 0x03: v = b.readUInt32LE(0); break;
    case 0x0a: v = b.readInt16LE(0); break;
    case 0x0b: v = b.readInt32LE(0); break;
    case 0x0c: v = Number(b.readBigInt64LE(0)); break;
    default: v = Number(b.readBigUInt64LE(0));
  }
  c.at += size;
  switch (enc & 0x70) {
    case 0x00: return v;
    case 0x10: return start + v;
    case 0x30: return bases.data === undefined ? null : bases.data + v;
    default: return null;
  }
}

function uleb(c: Cursor): number | null {
  let v = 0;
  let shift = 0;
  for (let i = 0; i < 10; i++) {
    const b = c.img.bytes(c.at++, 1);
    if (!b) return null;
    v += (b[0] & 0x7f) * 2 ** shift;
    if (!(b[0] & 0x80)) return v;
    shift += 7;
  }
  return null;
}

class UnwindIndex {
  private readonly fdeEncoding = new Map<number, number | null>();

  private constructor(private readonly img: ElfImage, private readonly hdr: number, private readonly count: number, private readonly tableEnc: number) {}

  static from(img: ElfImage): UnwindIndex | null {
    const hdr = img.section('.eh_frame_hdr');
    if (!hdr) return null;
    const head = img.bytes(hdr.addr, 4);
    if (!head || head[0] !== 1) return null;
    const c: Cursor = { img, at: hdr.addr + 4 };
    readEncoded(c, head[1], { data: hdr.addr });
    const count = readEncoded(c, head[2], { data: hdr.addr });
    // Binary search needs fixed-size entries: sdata4 relative to the header is what linkers write.
    if (count === null || head[3] !== 0x3b) return null;
    return new UnwindIndex(img, hdr.addr, count, head[3]);
  }

  private entry(i: number): { start: number; fde: number } | null {
    const c: Cursor = { img: this.img, at: this.hdr + 12 + i * 8 };
    const start = readEncoded(c, this.tableEnc, { data: this.hdr });
    const fde = readEncoded(c, this.tableEnc, { data: this.hdr });
    return start === null || fde === null ? null : { start, fde };
  }

  extentAt(addr: number): Extent | null {
    let lo = 0;
    let hi = this.count - 1;
    let found: { start: number; fde: number } | null = null;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const e = this.entry(mid);
      if (!e) return null;
      if (e.start <= addr) {
        found = e;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    if (!found) return null;
    const range = this.fdeRange(found.fde);
    if (range === null || addr >= found.start + range) return null;
    return { start: found.start, end: found.start + range };
  }

  /** pc_range of the FDE at `fde`, in the encoding its CIE names. */
  private fdeRange(fde: number): number | null {
    const head = this.img.bytes(fde, 8);
    if (!head || head.readUInt32LE(0) === 0xffffffff) return null;
    const ciePointer = head.readUInt32LE(4);
    if (ciePointer === 0) return null;
    const enc = this.cieEncoding(fde + 4 - ciePointer);
    if (enc === null) return null;
    const c: Cursor = { img: this.img, at: fde + 8 };
    if (readEncoded(c, enc) === null) return null;
    // The range is a length: its value format, never relative to anything.
    return readEncoded(c, enc & 0x0f);
  }

  /** The FDE pointer encoding from a CIE's "zR" augmentation (absptr without one). */
  private cieEncoding(cie: number): number | null {
    if (this.fdeEncoding.has(cie)) return this.fdeEncoding.get(cie)!;
    let enc: number | null = null;
    const head = this.img.bytes(cie, 9);
    if (head && head.readUInt32LE(4) === 0) {
      const version = head[8];
      const aug = this.img.cString(cie + 9, 16);
      if (aug !== null) {
        const c: Cursor = { img: this.img, at: cie + 9 + aug.length + 1 };
        uleb(c); // code alignment
        uleb(c); // data alignment (sleb, same length)
        if (version === 1) c.at += 1;
        else uleb(c);
        enc = 0x00;
        if (aug.startsWith('z')) {
          uleb(c);
          for (const ch of aug.slice(1)) {
            const b = this.img.bytes(c.at, 1);
            if (!b) break;
            if (ch === 'R') {
              enc = b[0];
              break;
            }
            if (ch === 'P') {
              c.at += 1;
              readEncoded(c, b[0]);
            } else if (ch === 'L') {
              c.at += 1;
            }
          }
        }
      }
    }
    this.fdeEncoding.set(cie, enc);
    return enc;
  }
}
