import { open, readFile, type FileHandle } from 'node:fs/promises';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { dirname, join } from 'node:path';
import { MigraceError } from '../../trace/errors.js';
import { debugFileDirectories } from '../debug-dirs.js';

/**
 * An x86-64 ELF file's layout, parsed here rather than through readelf so
 * that nothing beyond gdb is required.
 *
 * Parts, in order:
 * - ElfInfo: what discovery needs before asking gdb anything (the build-id,
 *   the cache key and how a profile is matched to a binary; whether debug
 *   info is there, in the file or in a separate debug file gdb loads too);
 * - the layout parser (header, sections, program headers, notes), written
 *   once over a reader so that readElfInfo reads only the headers and
 *   loadElfLayout reads the whole file for elf-image.ts;
 * - where gdb finds a separate debug file: the build-id directory, then the
 *   `.gnu_debuglink` name beside the binary, in `.debug/`, and under the
 *   global debug directories (gdb's own order; debug-dirs.ts says which),
 *   with the CRC gdb checks.
 */
export interface ElfInfo {
  path: string;
  /** Lowercase hex of NT_GNU_BUILD_ID, or null when the binary has none. */
  buildId: string | null;
  /** `.debug_info` (or compressed `.zdebug_info`) present in the file itself. */
  hasDebugInfo: boolean;
  /** A separate debug file gdb loads for this binary (build-id directory or .gnu_debuglink), or null. */
  separateDebugFile: string | null;
  /** The `.gnu_debuglink` name, when the binary has one (found or not). */
  debugLink: string | null;
  /** EXEC or DYN (PIE). */
  type: 'EXEC' | 'DYN' | 'OTHER';
  machine: 'x86-64';
  sectionNames: string[];
}

export interface ElfSection {
  name: string;
  type: number;
  /** Virtual address (0 when not loaded). */
  addr: number;
  offset: number;
  size: number;
  link: number;
  entsize: number;
}

/** A PT_LOAD segment: file bytes [offset, offset+filesz) are mapped at vaddr. */
export interface ElfSegment {
  vaddr: number;
  offset: number;
  filesz: number;
  memsz: number;
}

export interface ElfLayout {
  info: ElfInfo;
  sections: ElfSection[];
  segments: ElfSegment[];
}

/** The ELF numbers migrace reads (elf.h), in one place for elf.ts and elf-image.ts. */
export const ELF = {
  EM_X86_64: 62,
  SHT_SYMTAB: 2, SHT_RELA: 4, SHT_NOTE: 7, SHT_NOBITS: 8, SHT_DYNSYM: 11,
  PT_LOAD: 1, PT_NOTE: 4,
  NT_GNU_BUILD_ID: 3,
  STT_OBJECT: 1, STT_FUNC: 2,
  R_X86_64_64: 1, R_X86_64_RELATIVE: 8,
} as const;
/** Section tables this large are not something a compiler wrote. */
const MAX_SECTIONS = 65535;

/** Bytes at a file offset: a file handle for the headers only, a buffer for the whole file. */
interface Reader {
  size: number;
  read(offset: number, length: number): Promise<Buffer>;
}

function truncated(path: string, offset: number, length: number, got: number): MigraceError {
  return new MigraceError('BAD_INPUT', `${path}: truncated ELF file (wanted ${length} bytes at offset ${offset}, got ${got})`);
}

function handleReader(fh: FileHandle, size: number, path: string): Reader {
  return {
    size,
    async read(offset, length) {
      const buf = Buffer.alloc(length);
      const { bytesRead } = await fh.read(buf, 0, length, offset);
      if (bytesRead < length) throw truncated(path, offset, length, bytesRead);
      return buf;
    },
  };
}

function bufferReader(data: Buffer, path: string): Reader {
  return {
    size: data.length,
    async read(offset, length) {
      if (offset < 0 || offset + length > data.length) throw truncated(path, offset, length, Math.max(0, data.length - offset));
      return data.subarray(offset, offset + length);
    },
  };
}

/** Offsets are u64 in the file; anything past 2^53 is corrupt for our purposes. */
export function u64(buf: Buffer, at: number): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError('offset too large');
  return Number(v);
}

/** Notes are (namesz, descsz, type, name padded to 4, desc padded to 4). */
export function buildIdFromNotes(notes: Buffer): string | null {
  let at = 0;
  while (at + 12 <= notes.length) {
    const namesz = notes.readUInt32LE(at);
    const descsz = notes.readUInt32LE(at + 4);
    const type = notes.readUInt32LE(at + 8);
    const nameStart = at + 12;
    const descStart = nameStart + align4(namesz);
    const next = descStart + align4(descsz);
    if (next > notes.length || descStart + descsz > notes.length) return null;
    const name = notes.subarray(nameStart, nameStart + namesz).toString('latin1').replace(/\0+$/, '');
    if (name === 'GNU' && type === ELF.NT_GNU_BUILD_ID && descsz > 0) {
      return notes.subarray(descStart, descStart + descsz).toString('hex');
    }
    at = next;
  }
  return null;
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

async function openElf<T>(path: string, use: (fh: FileHandle) => Promise<T>): Promise<T> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw openError(path, e);
  }
  try {
    return await use(fh);
  } catch (e) {
    if (e instanceof MigraceError) throw e;
    throw new MigraceError('BAD_INPUT', `${path}: malformed ELF file (${(e as Error).message})`);
  } finally {
    await fh.close();
  }
}

function openError(path: string, e: unknown): MigraceError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new MigraceError('NOT_FOUND', `${path}: no such file`);
  if (code === 'EISDIR') return new MigraceError('BAD_INPUT', `${path}: is a directory, not an ELF binary`);
  return new MigraceError('BAD_INPUT', `${path}: cannot open (${code ?? String(e)})`);
}

/** The headers only: cheap enough for every command that matches a profile to a binary. */
export async function readElfInfo(path: string): Promise<ElfInfo> {
  return openElf(path, async (fh) => {
    const st = await fh.stat();
    if (!st.isFile()) throw new MigraceError('BAD_INPUT', `${path}: not a regular file`);
    return (await parseLayout(handleReader(fh, st.size, path), path)).info;
  });
}

/** The whole file, for symbols, relocations and data (elf-image.ts). */
export async function loadElfLayout(path: string): Promise<{ layout: ElfLayout; data: Buffer }> {
  let data: Buffer;
  try {
    if (!statSync(path).isFile()) throw new MigraceError('BAD_INPUT', `${path}: not a regular file`);
    data = await readFile(path);
  } catch (e) {
    if (e instanceof MigraceError) throw e;
    throw openError(path, e);
  }
  try {
    return { layout: await parseLayout(bufferReader(data, path), path), data };
  } catch (e) {
    if (e instanceof MigraceError) throw e;
    throw new MigraceError('BAD_INPUT', `${path}: malformed ELF file (${(e as Error).message})`);
  }
}

async function parseLayout(r: Reader, path: string): Promise<ElfLayout> {
  const head = await r.read(0, Math.min(64, r.size));
  if (head.length < 4 || head.readUInt32BE(0) !== 0x7f454c46) {
    const hint = head.subarray(0, 2).toString('latin1') === '#!' ? ' (a script, not a compiled binary)' : r.size === 0 ? ' (empty)' : '';
    throw new MigraceError('BAD_INPUT', `${path}: not an ELF file${hint}`);
  }
  if (r.size < 64) throw new MigraceError('BAD_INPUT', `${path}: truncated ELF file (${r.size} bytes)`);
  const eh = head;
  if (eh[4] !== 2) {
    throw new MigraceError('BAD_INPUT', `${path}: a 32-bit ELF file; migrace only understands x86-64 binaries`);
  }
  if (eh[5] !== 1) {
    throw new MigraceError('BAD_INPUT', `${path}: a big-endian ELF file; migrace only understands x86-64 binaries`);
  }
  const eType = eh.readUInt16LE(16);
  const machine = eh.readUInt16LE(18);
  if (machine !== ELF.EM_X86_64) {
    throw new MigraceError('BAD_INPUT', `${path}: ELF machine ${machine} (${machineName(machine)}), not x86-64; migrace only understands x86-64 binaries`);
  }
  const phoff = u64(eh, 32);
  const shoff = u64(eh, 40);
  const phentsize = eh.readUInt16LE(54);
  const phnum = eh.readUInt16LE(56);
  const shentsize = eh.readUInt16LE(58);
  let shnum = eh.readUInt16LE(60);
  let shstrndx = eh.readUInt16LE(62);

  const raw: Array<Omit<ElfSection, 'name'> & { nameAt: number }> = [];
  if (shoff !== 0 && shentsize >= 64) {
    // More than 0xff00 sections: the real counts live in section 0.
    if (shnum === 0 || shstrndx === 0xffff) {
      const s0 = await r.read(shoff, 64);
      if (shnum === 0) shnum = u64(s0, 32);
      if (shstrndx === 0xffff) shstrndx = s0.readUInt32LE(40);
    }
    if (shnum > MAX_SECTIONS) throw new MigraceError('BAD_INPUT', `${path}: malformed ELF file (${shnum} sections)`);
    const table = await r.read(shoff, shnum * shentsize);
    for (let i = 0; i < shnum; i++) {
      const at = i * shentsize;
      raw.push({
        nameAt: table.readUInt32LE(at),
        type: table.readUInt32LE(at + 4),
        addr: u64(table, at + 16),
        offset: u64(table, at + 24),
        size: u64(table, at + 32),
        link: table.readUInt32LE(at + 40),
        entsize: u64(table, at + 56),
      });
    }
  }
  let names: Buffer | null = null;
  const strtab = raw[shstrndx];
  if (strtab && strtab.size > 0 && strtab.offset + strtab.size <= r.size) names = await r.read(strtab.offset, strtab.size);
  const sections: ElfSection[] = raw.map(({ nameAt, ...s }) => ({ ...s, name: names ? cStringIn(names, nameAt) : '' }));

  const programHeaders = phoff !== 0 && phentsize >= 56 ? await r.read(phoff, phnum * phentsize) : Buffer.alloc(0);
  const segments: ElfSegment[] = [];
  const noteRanges: Array<{ offset: number; size: number }> = [];
  for (let i = 0; i < programHeaders.length / Math.max(phentsize, 1); i++) {
    const at = i * phentsize;
    const type = programHeaders.readUInt32LE(at);
    const offset = u64(programHeaders, at + 8);
    if (type === ELF.PT_LOAD) {
      segments.push({ vaddr: u64(programHeaders, at + 16), offset, filesz: u64(programHeaders, at + 32), memsz: u64(programHeaders, at + 40) });
    } else if (type === ELF.PT_NOTE) {
      noteRanges.push({ offset, size: u64(programHeaders, at + 32) });
    }
  }

  let buildId: string | null = null;
  for (const s of sections) {
    if (s.type !== ELF.SHT_NOTE || s.size === 0 || s.offset + s.size > r.size) continue;
    buildId = buildIdFromNotes(await r.read(s.offset, s.size));
    if (buildId) break;
  }
  // Stripped of section headers (sstrip and friends): the program headers still point at the notes.
  for (const n of noteRanges) {
    if (buildId || n.size === 0 || n.offset + n.size > r.size) continue;
    buildId = buildIdFromNotes(await r.read(n.offset, n.size));
  }

  const link = sections.find((s) => s.name === '.gnu_debuglink' && s.type !== ELF.SHT_NOBITS && s.offset + s.size <= r.size);
  const debugLink = link ? parseDebugLink(await r.read(link.offset, link.size)) : null;
  const sectionNames = sections.map((s) => s.name);
  const hasDebugInfo = sections.some((s) => (s.name === '.debug_info' || s.name === '.zdebug_info') && s.type !== ELF.SHT_NOBITS);
  return {
    info: {
      path,
      buildId,
      hasDebugInfo,
      separateDebugFile: hasDebugInfo ? null : findSeparateDebugFile(path, buildId, debugLink),
      debugLink: debugLink?.file ?? null,
      type: eType === 2 ? 'EXEC' : eType === 3 ? 'DYN' : 'OTHER',
      machine: 'x86-64',
      sectionNames,
    },
    sections,
    segments,
  };
}

export function cStringIn(buf: Buffer, at: number): string {
  const end = buf.indexOf(0, at);
  return buf.subarray(at, end < 0 ? buf.length : end).toString('latin1');
}

/** `.gnu_debuglink`: a file name, NUL, padding to 4, the CRC-32 of the debug file. */
export function parseDebugLink(section: Buffer): { file: string; crc: number } | null {
  const end = section.indexOf(0);
  if (end <= 0) return null;
  const crcAt = align4(end + 1);
  if (crcAt + 4 > section.length) return null;
  const file = section.subarray(0, end).toString('latin1');
  // A link is a file name, never a path: gdb looks it up in fixed directories.
  if (file.includes('/')) return null;
  return { file, crc: section.readUInt32LE(crcAt) };
}

/**
 * Where gdb would find the debug file, in gdb's order: the build-id
 * directory of each global debug directory, then the debuglink name next
 * to the binary, in its `.debug/`, and under each global debug directory.
 * A debuglink file whose CRC does not match is skipped, as gdb skips it.
 */
function findSeparateDebugFile(path: string, buildId: string | null, link: { file: string; crc: number } | null): string | null {
  const globals = debugFileDirectories();
  if (buildId && buildId.length > 2) {
    for (const g of globals) {
      const byId = join(g, '.build-id', buildId.slice(0, 2), `${buildId.slice(2)}.debug`);
      if (existsSync(byId)) return byId;
    }
  }
  if (!link) return null;
  const dir = dirname(path);
  for (const candidate of [join(dir, link.file), join(dir, '.debug', link.file), ...globals.map((g) => join(g, dir, link.file))]) {
    if (candidate === path || !existsSync(candidate)) continue;
    if (crc32(readFileSync(candidate)) >>> 0 === link.crc) return candidate;
  }
  return null;
}

function machineName(m: number): string {
  const names: Record<number, string> = { 3: 'i386', 40: 'ARM', 183: 'AArch64', 243: 'RISC-V', 21: 'PowerPC64', 22: 's390', 8: 'MIPS' };
  return names[m] ?? 'unknown';
}
