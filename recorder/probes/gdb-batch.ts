import { execa } from 'execa';
import { MigraceError } from '../../trace/errors.js';
import { gdbDebugDirOptions } from '../debug-dirs.js';
import { track } from '../reaper.js';
import { hex } from './disasm.js';

/**
 * gdb in batch mode, for discovery: one run answers many questions, each
 * marked in stdout by an `echo @@migrace MARKER` before its commands.
 *
 * Parts, in order:
 * - children: what execa says about a run, and the reaper registration
 *   every child of discovery gets while it runs;
 * - runGdb: the run and its answers by marker;
 * - disassembleRanges: `disassemble START,END` per function, with
 *   `--readnever`, so the symbol table alone labels the code;
 * - debugFacts: what only debug info knows (offsetof the state, the address
 *   gdb's own name lookup gives a function, the source line and inlined
 *   function of an instruction).
 */

export interface GdbOptions {
  gdb?: string;
  timeoutMs?: number;
  /** Load DWARF (and a separate debug file); without it gdb runs with --readnever. */
  withDebugInfo?: boolean;
}

export interface GdbStep {
  marker: string;
  commands: string[];
}

/** What execa says about a run, the part that matters for a message. */
interface RunResult {
  failed?: boolean;
  code?: string;
  exitCode?: number;
  signal?: string;
  timedOut?: boolean;
  shortMessage?: string;
  originalMessage?: string;
}

/** The errno code (ENOENT, EACCES, ...) when the program could not be started at all, else null. */
export function spawnErrno(r: RunResult): string | null {
  return r.failed && r.exitCode === undefined && !r.signal && !r.timedOut && typeof r.code === 'string' ? r.code : null;
}

export function describeFailure(r: RunResult): string {
  const m = r.originalMessage ?? r.shortMessage ?? '';
  return m ? ` (${m})` : '';
}

export function exitText(r: RunResult): string {
  if (r.timedOut) return 'timed out';
  if (r.exitCode !== undefined) return `exit ${r.exitCode}`;
  if (r.signal) return `killed by ${r.signal}`;
  return r.shortMessage ?? 'no exit status';
}

/**
 * A child registered with the reaper while it runs (a signal or an exit of
 * ours mid-discovery must not leave gdb or QEMU behind).
 */
export async function tracked<T>(child: Promise<T> & { pid?: number }, label: string): Promise<T> {
  const untrack = child.pid ? track(child.pid, label) : () => undefined;
  try {
    return await child;
  } finally {
    untrack();
  }
}

async function runGdb(binary: string, script: GdbStep[], opts: GdbOptions): Promise<Map<string, string>> {
  const args = ['-batch', '-nx', '-q',
    // Disassembly needs the symbol table only: never DWARF, whose names can mean a clone.
    ...(opts.withDebugInfo ? [] : ['--readnever']),
    // Never reach for the network or run scripts shipped next to the binary.
    '-iex', 'set debuginfod enabled off', '-iex', 'set auto-load no', '-iex', 'set width 0', '-iex', 'set height 0',
    ...gdbDebugDirOptions()];
  for (const s of script) {
    args.push('-ex', `echo @@migrace ${s.marker}\\n`);
    for (const c of s.commands) args.push('-ex', c);
  }
  args.push(binary);
  const gdb = opts.gdb ?? 'gdb';
  const timeoutMs = opts.timeoutMs ?? 60_000;
  let r;
  try {
    r = await tracked(execa(gdb, args, {
      reject: false, timeout: timeoutMs, forceKillAfterDelay: 2000, stdin: 'ignore', env: { LC_ALL: 'C' }, maxBuffer: 64 * 1024 * 1024,
    }), 'gdb (probe discovery)');
  } catch (e) {
    throw new MigraceError('GDB_ERROR', `gdb failed to start: ${(e as Error).message}`);
  }
  const spawnCode = spawnErrno(r);
  if (spawnCode === 'ENOENT') {
    throw new MigraceError('GDB_MISSING', `${gdb} is not installed (apt-get install -y gdb)`);
  }
  if (spawnCode) throw new MigraceError('GDB_ERROR', `cannot run gdb (${gdb}): ${spawnCode}${describeFailure(r)}`);
  if (r.timedOut) throw new MigraceError('GDB_TIMEOUT', `gdb took longer than ${timeoutMs / 1000} s to ${opts.withDebugInfo ? 'read the debug info of' : 'disassemble'} ${binary}`);
  const out = new Map<string, string>();
  let current: string | null = null;
  let buf: string[] = [];
  for (const line of String(r.stdout).split('\n')) {
    const m = /^@@migrace (\S+)$/.exec(line);
    if (m) {
      if (current) out.set(current, buf.join('\n'));
      current = m[1];
      buf = [];
    } else if (current) {
      buf.push(line);
    }
  }
  if (current) out.set(current, buf.join('\n'));
  if (out.size === 0) {
    const said = String(r.stderr ?? '').trim().split('\n').slice(-3).join(' / ');
    throw new MigraceError('GDB_ERROR', `gdb printed nothing for ${binary}: ${said || exitText(r)}`);
  }
  return out;
}


export interface Range {
  start: number;
  end: number;
}

/** gdb's listing of each range, by its start; null where gdb printed none. */
export async function disassembleRanges(binary: string, ranges: Range[], opts: GdbOptions): Promise<Map<number, string | null>> {
  const out = new Map<number, string | null>();
  if (ranges.length === 0) return out;
  const said = await runGdb(binary, ranges.map((r) => ({ marker: `code:${hex(r.start)}`, commands: [`disassemble ${hex(r.start)},${hex(r.end)}`] })), { ...opts, withDebugInfo: false });
  for (const r of ranges) {
    const text = said.get(`code:${hex(r.start)}`) ?? '';
    out.set(r.start, /Dump of assembler code/.test(text) ? text : null);
  }
  return out;
}

export interface DebugQuestions {
  /** Names whose address gdb's own lookup should give. */
  names: string[];
  /** Function names to set a breakpoint on, for the addresses gdb picks (inlined copies included). */
  breakpoints: string[];
  /** Instruction addresses whose source line and function to ask. */
  lines: number[];
}

export interface DebugAnswers {
  /** offsetof(MigrationState, state), or null when the debug info has no MigrationState. */
  stateOffset: number | null;
  /** The address gdb resolves each name to; absent when it knows no such name. */
  addresses: Map<string, number>;
  /** `../migration/migration.c:1059 in fill_source_migration_info`, by address. */
  lines: Map<number, { file: string; line: number; fn: string }>;
  /** Every address a breakpoint on the name gets. */
  breakpoints: Map<string, number[]>;
}

/**
 * The source line of an address and the innermost function around it, an
 * inlined one included (`list *ADDR` names only the function the code was
 * inlined into). gdb's Python, defined once per run; a gdb without Python
 * answers nothing and the points simply have no source line.
 */
const WHERE = 'python exec("def migrace_where(a):\\n b = gdb.block_for_pc(a)\\n while b is not None and b.function is None:\\n  b = b.superblock\\n s = gdb.find_pc_line(a)\\n'
  + ' print(\\"@where %s:%d %s\\" % (s.symtab.filename if s.symtab else \\"?\\", s.line, b.function.name if b else \\"?\\"))")';

export async function debugFacts(binary: string, q: DebugQuestions, opts: GdbOptions): Promise<DebugAnswers> {
  const script: GdbStep[] = [{ marker: 'offset', commands: ['print/x (long)&((MigrationState *)0)->state'] }];
  for (const n of q.names) script.push({ marker: `addr:${n}`, commands: [`print/x (long)&${n}`] });
  for (const n of q.breakpoints) script.push({ marker: `break:${n}`, commands: [`break ${n}`, 'info breakpoints', 'delete'] });
  if (q.lines.length > 0) script.push({ marker: 'where', commands: [WHERE] });
  for (const a of q.lines) script.push({ marker: `line:${hex(a)}`, commands: [`python migrace_where(${hex(a)})`] });
  const said = await runGdb(binary, script, { ...opts, withDebugInfo: true });
  const value = (marker: string): number | null => {
    const m = /^\$\d+ = (0x[0-9a-f]+)/m.exec(said.get(marker) ?? '');
    return m ? Number.parseInt(m[1], 16) : null;
  };
  const addresses = new Map<string, number>();
  for (const n of q.names) {
    const v = value(`addr:${n}`);
    if (v !== null) addresses.set(n, v);
  }
  const lines = new Map<number, { file: string; line: number; fn: string }>();
  for (const a of q.lines) {
    const m = /^@where (.+):(\d+) (\S+)$/m.exec(said.get(`line:${hex(a)}`) ?? '');
    if (m && m[1] !== '?' && m[3] !== '?') lines.set(a, { file: m[1], line: Number(m[2]), fn: m[3] });
  }
  const breakpoints = new Map<string, number[]>();
  for (const n of q.breakpoints) {
    const listed = [...(said.get(`break:${n}`) ?? '').matchAll(/^\S+\s+(?:breakpoint\s+keep\s+)?y\s+(0x[0-9a-f]+)\s+in /gm)];
    breakpoints.set(n, listed.map((m) => Number.parseInt(m[1], 16)));
  }
  return { stateOffset: value('offset'), addresses, lines, breakpoints };
}
