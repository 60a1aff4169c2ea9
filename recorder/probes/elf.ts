import { open, type FileHandle } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { MigraceError } from '../../trace/errors.js';

/**
 * What discovery needs to know about a binary before asking gdb anything:
 * its build-id (the cache key, and how a profile is matched to a binary)
 * and whether debug info is there (symbolic transition probes). Parsed
 * here rather than through readelf so that nothing beyond gdb is required.
 */
export interface ElfInfo {
  path: string;
  /** Lowercase hex of NT_GNU_BUILD_ID, or null when the binary has none. */
  buildId: string | null;
  /** `.debug_info` (or compressed `.zdebug_info`) present in the file itself. */
  hasDebugInfo: boolean;
  /** Debian-style separate debug file found under /usr/lib/debug/.build-id (gdb loads it too). */
  separateDebugFile: string | null;
  /** EXEC or DYN (PIE). */
  type: 'EXEC' | 'DYN' | 'OTHER';
  machine: 'x86-64';
  sectionNames: string[];
}

const EM_X86_64 = 62;
const SHT_NOTE = 7;
const PT_NOTE = 4;
const NT_GNU_BUILD_ID = 3;
/** Section tables this large are not something a compiler wrote. */
const MAX_SECTIONS = 65535;

async function readAt(fh: FileHandle, offset: number, length: number, path: string): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  const { bytesRead } = await fh.read(buf, 0, length, offset);
  if (bytesRead < length) {
    throw new MigraceError('BAD_INPUT', `${path}: truncated ELF file (wanted ${length} bytes at offset ${offset}, got ${bytesRead})`);
  }
  return buf;
}

/** Offsets are u64 in the file; anything past 2^53 is corrupt for our purposes. */
function u64(buf: Buffer, at: number): number {
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
    if (name === 'GNU' && type === NT_GNU_BUILD_ID && descsz > 0) {
      return notes.subarray(descStart, descStart + descsz).toString('hex');
    }
    at = next;
  }
  return null;
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

export async function readElfInfo(path: string): Promise<ElfInfo> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new MigraceError('NOT_FOUND', `${path}: no such file`);
    if (code === 'EISDIR') throw new MigraceError('BAD_INPUT', `${path}: is a directory, not an ELF binary`);
    throw new MigraceError('BAD_INPUT', `${path}: cannot open (${code ?? String(e)})`);
  }
  try {
    return await parse(fh, path);
  } catch (e) {
    if (e instanceof MigraceError) throw e;
    throw new MigraceError('BAD_INPUT', `${path}: malformed ELF file (${(e as Error).message})`);
  } finally {
    await fh.close();
  }
}

async function parse(fh: FileHandle, path: string): Promise<ElfInfo> {
  const st = await fh.stat();
  if (!st.isFile()) throw new MigraceError('BAD_INPUT', `${path}: not a regular file`);
  const head = await readAt(fh, 0, Math.min(64, st.size), path);
  if (head.length < 4 || head.readUInt32BE(0) !== 0x7f454c46) {
    const hint = head.subarray(0, 2).toString('latin1') === '#!' ? ' (a script, not a compiled binary)' : st.size === 0 ? ' (empty)' : '';
    throw new MigraceError('BAD_INPUT', `${path}: not an ELF file${hint}`);
  }
  if (st.size < 64) throw new MigraceError('BAD_INPUT', `${path}: truncated ELF file (${st.size} bytes)`);
  const eh = head;
  const cls = eh[4];
  const data = eh[5];
  if (cls !== 2) {
    throw new MigraceError('BAD_INPUT', `${path}: a 32-bit ELF file; migrace only understands x86-64 binaries`);
  }
  if (data !== 1) {
    throw new MigraceError('BAD_INPUT', `${path}: a big-endian ELF file; migrace only understands x86-64 binaries`);
  }
  const eType = eh.readUInt16LE(16);
  const machine = eh.readUInt16LE(18);
  if (machine !== EM_X86_64) {
    throw new MigraceError('BAD_INPUT', `${path}: ELF machine ${machine} (${machineName(machine)}), not x86-64; migrace only understands x86-64 binaries`);
  }
  const phoff = u64(eh, 32);
  const shoff = u64(eh, 40);
  const phentsize = eh.readUInt16LE(54);
  const phnum = eh.readUInt16LE(56);
  const shentsize = eh.readUInt16LE(58);
  let shnum = eh.readUInt16LE(60);
  let shstrndx = eh.readUInt16LE(62);

  const sections: Array<{ name: number; type: number; offset: number; size: number }> = [];
  if (shoff !== 0 && shentsize >= 64) {
    // More than 0xff00 sections: the real counts live in section 0.
    if (shnum === 0 || shstrndx === 0xffff) {
      const s0 = await readAt(fh, shoff, 64, path);
      if (shnum === 0) shnum = u64(s0, 32);
      if (shstrndx === 0xffff) shstrndx = s0.readUInt32LE(40);
    }
    if (shnum > MAX_SECTIONS) throw new MigraceError('BAD_INPUT', `${path}: malformed ELF file (${shnum} sections)`);
    const table = await readAt(fh, shoff, shnum * shentsize, path);
    for (let i = 0; i < shnum; i++) {
      const at = i * shentsize;
      sections.push({
        name: table.readUInt32LE(at),
        type: table.readUInt32LE(at + 4),
        offset: u64(table, at + 24),
        size: u64(table, at + 32),
      });
    }
  }

  let sectionNames: string[] = [];
  const strtab = sections[shstrndx];
  if (strtab && strtab.size > 0 && strtab.offset + strtab.size <= st.size) {
    const names = await readAt(fh, strtab.offset, strtab.size, path);
    sectionNames = sections.map((s) => {
      const end = names.indexOf(0, s.name);
      return names.subarray(s.name, end < 0 ? names.length : end).toString('latin1');
    });
  }

  let buildId: string | null = null;
  for (const s of sections) {
    if (s.type !== SHT_NOTE || s.size === 0 || s.offset + s.size > st.size) continue;
    buildId = buildIdFromNotes(await readAt(fh, s.offset, s.size, path));
    if (buildId) break;
  }
  // Stripped of section headers (sstrip and friends): the program headers still point at the notes.
  if (!buildId && phoff !== 0 && phentsize >= 56) {
    const ph = await readAt(fh, phoff, phnum * phentsize, path);
    for (let i = 0; i < phnum && !buildId; i++) {
      const at = i * phentsize;
      if (ph.readUInt32LE(at) !== PT_NOTE) continue;
      const off = u64(ph, at + 8);
      const size = u64(ph, at + 32);
      if (size === 0 || off + size > st.size) continue;
      buildId = buildIdFromNotes(await readAt(fh, off, size, path));
    }
  }

  const hasDebugInfo = sectionNames.includes('.debug_info') || sectionNames.includes('.zdebug_info');
  let separateDebugFile: string | null = null;
  if (buildId && buildId.length > 2) {
    const candidate = `/usr/lib/debug/.build-id/${buildId.slice(0, 2)}/${buildId.slice(2)}.debug`;
    if (existsSync(candidate)) separateDebugFile = candidate;
  }
  return {
    path,
    buildId,
    hasDebugInfo,
    separateDebugFile,
    type: eType === 2 ? 'EXEC' : eType === 3 ? 'DYN' : 'OTHER',
    machine: 'x86-64',
    sectionNames,
  };
}

function machineName(m: number): string {
  const names: Record<number, string> = { 3: 'i386', 40: 'ARM', 183: 'AArch64', 243: 'RISC-V', 21: 'PowerPC64', 22: 's390', 8: 'MIPS' };
  return names[m] ?? 'unknown';
}
