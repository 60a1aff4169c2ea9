import { resolve as resolvePath } from 'node:path';
import { MigraceError, messageOf } from '../../trace/errors.js';
import { GdbSession } from '../gdb/session.js';
import { parseExpression, type Expr, type TypeName } from '../probes/expr.js';
import { loadElfLayout, type ElfSegment } from '../probes/elf.js';
import type { Probe, Profile } from '../probes/profile.js';
import type { ProbeDefinition } from './tracefs.js';

/**
 * A profile, which says where to stop and what to read in gdb's terms,
 * turned into kernel uprobe definitions, once per run:
 *
 * 1. locations: gdb, run on the binary without starting it, places each
 *    location exactly as the gdb backend would (`-break-insert`: every
 *    code copy of a line, a function after its prologue) and gives
 *    link-time addresses; the ELF program headers turn each into the file
 *    offset a uprobe is defined at;
 * 2. values: each expression's tree (probes/expr.ts) becomes a fetch
 *    argument: registers as `%reg`, memory as `+OFF(...)`, and, for a
 *    build with debug info, named locals and parameters where gdb's `info
 *    scope` puts them at the probe's address: a register (optimized code,
 *    per address range) or the frame (DW_OP_fbreg offsets; the frame base
 *    of the -O0 code this supports is %rbp+16, checked from the prologue),
 *    and struct members at the offsets gdb computes from the types. An expression the kernel
 *    cannot fetch is an error that names it; nothing is silently dropped.
 */

/** Where a code location is in the source, as gdb placed it (all null without debug info). */
export interface SourcePlace { func: string | null; file: string | null; line: number | null }

export interface ResolvedProbe {
  probe: Probe;
  /** One definition per code location of the probe. */
  defs: ProbeDefinition[];
  /** defs[i]'s function, file and line: a uprobe hit carries only its address, so events take these. */
  places: SourcePlace[];
  /** fetch-argument name -> the profile's value name. */
  valueNames: Map<string, string>;
}

export interface Resolution {
  binary: string;
  probes: ResolvedProbe[];
}

/** The file offset a uprobe is defined at, for a link-time address in one of the file's PT_LOAD segments. */
export function fileOffsetOf(segments: readonly ElfSegment[], vaddr: number, path: string): number {
  const seg = segments.find((s) => vaddr >= s.vaddr && vaddr < s.vaddr + s.filesz);
  if (!seg) throw new MigraceError('UPROBE', `${path}: address 0x${vaddr.toString(16)} is in no loaded segment of the file`);
  return seg.offset + (vaddr - seg.vaddr);
}

/** gdb's x86-64 register names -> the kernel's pt_regs names and their width. */
const REGS: Record<string, { reg: string; bits: number }> = (() => {
  const m: Record<string, { reg: string; bits: number }> = {};
  for (const [k, names] of Object.entries({ ax: ['rax', 'eax', 'ax', 'al'], bx: ['rbx', 'ebx', 'bx', 'bl'], cx: ['rcx', 'ecx', 'cx', 'cl'], dx: ['rdx', 'edx', 'dx', 'dl'], si: ['rsi', 'esi', 'si', 'sil'], di: ['rdi', 'edi', 'di', 'dil'], bp: ['rbp', 'ebp', 'bp', 'bpl'], sp: ['rsp', 'esp', 'sp', 'spl'] })) {
    names.forEach((n, i) => { m[n] = { reg: k, bits: [64, 32, 16, 8][i] }; });
  }
  for (let r = 8; r <= 15; r++) {
    m[`r${r}`] = { reg: `r${r}`, bits: 64 };
    m[`r${r}d`] = { reg: `r${r}`, bits: 32 };
    m[`r${r}w`] = { reg: `r${r}`, bits: 16 };
    m[`r${r}b`] = { reg: `r${r}`, bits: 8 };
  }
  m.rip = { reg: 'ip', bits: 64 };
  m.pc = { reg: 'ip', bits: 64 };
  return m;
})();

/** What a C type fetches as: pointers print as hex addresses, the rest as signed or unsigned integers of their size. */
function fetchType(type: string, size: number): string {
  const t = type.trim();
  if (t.endsWith('*')) return 'x64';
  const bits = size * 8;
  if (![8, 16, 32, 64].includes(bits)) throw new Error(`a value of type ${t} (${size} bytes) is not an integer the kernel can fetch`);
  if (/^(unsigned|_Bool|bool|uint|guint|size_t|uintptr_t)/.test(t)) return `u${bits}`;
  return `s${bits}`;
}

function castType(t: TypeName): { text: string; size: number | null } {
  if (t.pointers > 0) return { text: `${t.base} ${'*'.repeat(t.pointers)}`, size: 8 };
  const sizes: Record<string, number> = {
    char: 1, 'unsigned char': 1, 'signed char': 1, bool: 1, _Bool: 1, short: 2, 'unsigned short': 2, int: 4, unsigned: 4,
    'unsigned int': 4, 'signed int': 4, long: 8, 'unsigned long': 8, 'long long': 8, 'unsigned long long': 8,
    int8_t: 1, uint8_t: 1, int16_t: 2, uint16_t: 2, int32_t: 4, uint32_t: 4, int64_t: 8, uint64_t: 8,
    size_t: 8, ssize_t: 8, intptr_t: 8, uintptr_t: 8, gboolean: 4, gint: 4, guint: 4, gint64: 8, guint64: 8, MigrationStatus: 4,
  };
  return { text: t.base, size: sizes[t.base] ?? null };
}

/** A value in the making: where it is, and its C type when known. */
type Place =
  | { kind: 'reg'; reg: string; bits: number }
  | { kind: 'mem'; addr: string; type: string | null; size: number | null }
  | { kind: 'addr'; fetch: string };

/** Where `info scope` says a name lives: a frame offset, or registers over address ranges (optimized code). */
interface SymbolHome {
  fbreg: number | null;
  /** [from, to) link-time addresses and the register the value is in there; from 0 to Infinity for "a variable in $reg". */
  regs: Array<{ from: number; to: number; reg: string }>;
}

/** `info scope` output, one block per "Symbol NAME is ...". */
export function parseScope(text: string): Map<string, SymbolHome> {
  const homes = new Map<string, SymbolHome>();
  for (const block of text.split(/\n(?=Symbol \w+ is )/)) {
    const head = /^(?:Scope for [^\n]*\n)?Symbol (\w+) is /.exec(block);
    if (!head) continue;
    const home: SymbolHome = { fbreg: null, regs: [] };
    const body = block.replace(/^Scope for [^\n]*\n/, '');
    const fb = /^Symbol \w+ is (?:a variable |a complex DWARF expression:\s*0: )?(?:at frame base reg \$\w+ offset \d+\+)?DW_OP_fbreg (-?\d+)/m.exec(body);
    if (fb) home.fbreg = Number(fb[1]);
    const single = /^Symbol \w+ is a variable in \$(\w+)/m.exec(body);
    if (single) home.regs.push({ from: 0, to: Number.POSITIVE_INFINITY, reg: single[1]! });
    for (const r of block.matchAll(/Range (0x[0-9a-f]+)-(0x[0-9a-f]+): a variable in \$(\w+)/g)) {
      home.regs.push({ from: Number.parseInt(r[1]!, 16), to: Number.parseInt(r[2]!, 16), reg: r[3]! });
    }
    homes.set(head[1]!, home);
  }
  return homes;
}

/** What gdb knows about the names at one probe address, asked once per location. */
class Scope {
  private homes: Map<string, SymbolHome> | null = null;

  constructor(
    private readonly gdb: GdbSession, private readonly location: string, private readonly func: string | null,
    private readonly frameBaseOk: boolean, private readonly addr: number,
  ) {}

  private async symbols(): Promise<Map<string, SymbolHome>> {
    this.homes ??= parseScope(await this.gdb.cli(`info scope ${this.location}`));
    return this.homes;
  }

  /**
   * A named local or parameter: in a register at this address (optimized
   * code: gcc -O2 keeps migrate_set_state's parameters in their argument
   * registers, and DWARF says so per address range), or in the frame
   * (-O0: DW_OP_fbreg).
   */
  async local(name: string): Promise<Place> {
    if (!this.func) throw new Error(`"${name}" is a local, but the location is in no known function`);
    const home = (await this.symbols()).get(name);
    const inReg = home?.regs.find((r) => this.addr >= r.from && this.addr < r.to);
    if (inReg) {
      const r = REGS[inReg.reg];
      if (!r) throw new Error(`"${name}" is in $${inReg.reg} at ${this.location}, not a register the kernel can fetch`);
      const { type, size } = await this.typeOf(name);
      if (type.endsWith('*')) return { kind: 'addr', fetch: `%${r.reg}` };
      return { kind: 'reg', reg: r.reg, bits: Number.isFinite(size) && size > 0 ? Math.min(size * 8, r.bits) : r.bits };
    }
    const off = home?.fbreg ?? undefined;
    if (off === undefined) throw new Error(`"${name}" is neither in a register at 0x${this.addr.toString(16)} nor a local at ${this.location} whose frame offset gdb knows (an optimized-out variable cannot be fetched)`);
    if (!this.frameBaseOk) throw new Error(`"${name}" lives in the frame of ${this.func}, whose prologue is not the push %rbp; mov %rsp,%rbp the backend reads frames by`);
    const { type, size } = await this.typeOf(name);
    return { kind: 'mem', addr: `${16 + off}(%bp)`, type, size };
  }

  /** A local's C type and size, as gdb reads them from the debug info. */
  private async typeOf(name: string): Promise<{ type: string; size: number }> {
    const size = Number((await this.gdb.evaluate(`sizeof(${this.func}::${name})`)).trim());
    const type = (await this.gdb.cli(`whatis ${this.func}::${name}`)).replace(/^type = /, '').trim();
    return { type, size };
  }

  /** sizeof a type gdb named (from the binary's own debug info), or null when gdb cannot size it (void, an incomplete struct). */
  async sizeOf(type: string): Promise<number | null> {
    try {
      const n = Number(await this.gdb.evaluate(`sizeof(${type})`));
      return Number.isFinite(n) && n > 0 ? n : null;
    } catch {
      return null;
    }
  }

  async member(structPtrType: string, field: string): Promise<{ offset: number; type: string; size: number }> {
    const base = `((${structPtrType})0)->${field}`;
    const off = await this.gdb.evaluate(`(long)&${base}`);
    const size = await this.gdb.evaluate(`sizeof(${base})`);
    const type = (await this.gdb.cli(`whatis ${base}`)).replace(/^type = /, '').trim();
    return { offset: Number(off), type, size: Number(size) };
  }
}

/** +OFF(FETCH): memory at an address that is itself fetched. */
function memAt(addrFetch: string, delta: number): string {
  return `${delta >= 0 ? '+' : ''}${delta}(${addrFetch})`;
}

class Translator {
  constructor(private readonly scope: Scope) {}

  /** The fetch argument for a whole expression, with its type. */
  async fetch(e: Expr): Promise<string> {
    const p = await this.place(e);
    switch (p.kind) {
      case 'reg':
        return `%${p.reg}:${p.bits === 64 ? 'x64' : `s${p.bits}`}`;
      case 'mem':
        if (p.size === null || p.type === null) throw new Error('the size of the value is unknown: cast it, e.g. (int)');
        return `${p.addr.startsWith('+') || p.addr.startsWith('-') ? p.addr : `+${p.addr}`}:${fetchType(p.type, p.size)}`;
      case 'addr':
        return `${p.fetch}:x64`;
    }
  }

  private async place(e: Expr): Promise<Place> {
    switch (e.kind) {
      case 'reg': {
        const r = REGS[e.name];
        if (!r) throw new Error(`$${e.name} is not an x86-64 register the kernel can fetch`);
        return { kind: 'reg', reg: r.reg, bits: r.bits };
      }
      case 'name':
        return this.scope.local(e.name);
      case 'cast': {
        const inner = await this.place(e.expr);
        const t = castType(e.type);
        if (inner.kind === 'reg') {
          if (e.type.pointers > 0) return { kind: 'addr', fetch: `%${inner.reg}` };
          return { kind: 'reg', reg: inner.reg, bits: t.size === null ? inner.bits : t.size * 8 };
        }
        if (inner.kind === 'mem') return { kind: 'mem', addr: inner.addr, type: t.text, size: t.size };
        return inner;
      }
      case 'deref': {
        const ptr = await this.pointer(e.expr);
        return { kind: 'mem', addr: memAt(ptr.fetch, ptr.delta), type: ptr.target, size: ptr.targetSize };
      }
      case 'member': {
        if (!e.arrow) throw new Error(`"${e.field}" of a struct held in the frame is not supported; use a pointer (->)`);
        const ptr = await this.pointer(e.expr);
        if (!ptr.pointerType) throw new Error(`the type of the pointer before ->${e.field} is unknown`);
        const m = await this.scope.member(ptr.pointerType, e.field);
        return { kind: 'mem', addr: memAt(ptr.fetch, ptr.delta + m.offset), type: m.type, size: m.size };
      }
      default:
        throw new Error(`${e.kind === 'index' ? 'indexing' : e.kind === 'addr' ? 'taking an address' : e.kind === 'offset' ? 'pointer arithmetic outside a dereference' : 'a constant'} is not supported here`);
    }
  }

  /** An address-valued expression as a fetch of the pointer plus a constant, and what it points to. */
  private async pointer(e: Expr): Promise<{ fetch: string; delta: number; pointerType: string | null; target: string | null; targetSize: number | null }> {
    if (e.kind === 'offset') {
      const inner = await this.pointer(e.expr);
      return { ...inner, delta: inner.delta + Number(e.delta), pointerType: null, target: null, targetSize: null };
    }
    if (e.kind === 'cast' && e.type.pointers > 0) {
      const inner = await this.pointer(e.expr);
      const pointee = e.type.pointers > 1 ? { text: `${e.type.base} ${'*'.repeat(e.type.pointers - 1)}`, size: 8 } : castType({ base: e.type.base, pointers: 0 });
      return { ...inner, pointerType: `${e.type.base} ${'*'.repeat(e.type.pointers)}`, target: pointee.text, targetSize: pointee.size };
    }
    const p = await this.place(e);
    if (p.kind === 'reg') return { fetch: `%${p.reg}`, delta: 0, pointerType: null, target: null, targetSize: null };
    if (p.kind === 'addr') return { fetch: p.fetch, delta: 0, pointerType: null, target: null, targetSize: null };
    if (p.type === null || !p.type.endsWith('*')) throw new Error(`${p.type ?? 'a value of unknown type'} is not a pointer`);
    const pointee = p.type.slice(0, -1).trim();
    const targetSize = await this.scope.sizeOf(pointee);
    const fetch = p.addr.startsWith('+') || p.addr.startsWith('-') ? p.addr : `+${p.addr}`;
    return { fetch, delta: 0, pointerType: p.type, target: pointee, targetSize };
  }
}

/** push %rbp; mov %rsp,%rbp at the start (after endbr64): the frame base gdb's fbreg offsets count from is %rbp+16. */
async function hasRbpFrame(gdb: GdbSession, func: string): Promise<boolean> {
  try {
    const ins = (await gdb.disassemble(func)).slice(0, 4).map((i) => i.inst.replace(/\s+/g, ' ').trim());
    const body = ins[0]?.startsWith('endbr64') ? ins.slice(1) : ins;
    return body[0] === 'push %rbp' && body[1] === 'mov %rsp,%rbp';
  } catch {
    return false;
  }
}

function eventName(probe: string, i: number): string {
  return `${probe.replace(/[^A-Za-z0-9_]/g, '_').replace(/^[^A-Za-z_]/, 'p')}_${i}`.slice(0, 60);
}

/** Resolve every probe of a profile for `binary`; gdb runs once, without starting the program. */
export async function resolveProfile(binary: string, profile: Profile, opts: { gdbPath?: string } = {}): Promise<Resolution> {
  const path = resolvePath(binary);
  const { segments } = (await loadElfLayout(path)).layout;
  const gdb = await GdbSession.start({ gdbPath: opts.gdbPath });
  try {
    await gdb.fileExecAndSymbols(path);
    const frames = new Map<string, boolean>();
    const out: ResolvedProbe[] = [];
    for (const probe of profile.probes) {
      const defs: ProbeDefinition[] = [];
      const places: SourcePlace[] = [];
      const valueNames = new Map<string, string>();
      for (const location of probe.locations) {
        let bp;
        try {
          bp = await gdb.insertBreakpoint(location);
        } catch (e) {
          throw new MigraceError('UPROBE', `probe ${probe.name}: gdb cannot place ${location} in ${path}: ${messageOf(e)}`);
        }
        await gdb.deleteBreakpoint(bp.number).catch(() => undefined);
        for (const loc of bp.locations) {
          if (!loc.addr || !/^0x[0-9a-f]+$/i.test(loc.addr)) throw new MigraceError('UPROBE', `probe ${probe.name}: ${location} has no address (${loc.addr ?? 'pending'})`);
          const func = loc.func ?? null;
          if (func && !frames.has(func)) frames.set(func, await hasRbpFrame(gdb, func));
          const vaddr = Number.parseInt(loc.addr, 16);
          const scope = new Scope(gdb, location, func, func ? frames.get(func) ?? false : false, vaddr);
          const tr = new Translator(scope);
          const args: ProbeDefinition['args'] = [];
          for (const [name, text] of Object.entries(probe.values)) {
            try {
              args.push({ name, fetch: await tr.fetch(parseExpression(text)) });
            } catch (e) {
              throw new MigraceError('UPROBE', `probe ${probe.name}: the uprobe backend cannot fetch the value ${name} = "${text}" at ${location}: ${messageOf(e)} (use --backend gdb, or an address profile from "migrace probes")`);
            }
            valueNames.set(name, name);
          }
          defs.push({ event: eventName(probe.name, defs.length), path, fileOffset: fileOffsetOf(segments, vaddr, path), args });
          places.push({ func, file: loc.file, line: loc.line });
        }
      }
      out.push({ probe, defs, places, valueNames });
    }
    return { binary: path, probes: out };
  } finally {
    await gdb.shutdown().catch(() => undefined);
  }
}
