import { MigraceError } from '../../trace/errors.js';
import type { NewEvent, StateValue, Thread } from '../../trace/schema.js';
import { normalizeStatusName, statusName, statusValue, tableIdFor, type StatusTableId } from '../../trace/status.js';
import {
  KIND_NAMES, binaryReason, clip, sniffKinds, splitLines, type ImportWarning, type ImportedLog,
} from './merge.js';

/*
 * GDB CLI transcripts as people paste them into bug reports: prompts and
 * commands, breakpoint hits with or without debug info, `p` answers,
 * `info threads` tables, thread switches, non-stop `continue &`, and what a
 * second terminal showed (HMP `info migrate` output, QMP JSON), with prose,
 * `...` elisions and wrapped lines around them.
 *
 * What the transcript says happened, in its order:
 *  - a stop at migrate_set_state is a transition attempt; old/new come from
 *    the hit line's arguments (debug info) or from `p $esi` / `p $edx` (the
 *    SysV ABI registers in a stripped build). The compare-and-swap happens
 *    only when that thread runs again: when other events come between the
 *    stop and the thread's resume, a hold follows the transition and a release
 *    sits at the resume, which is where the analyzer places the change
 *    (analyzer/interleavings.ts). A writer never resumed gets no release.
 *  - a stop in fill_source_migration_info / qmp_query_migrate is a read or a
 *    publish. The known address probes of Debian's 5.2 and 7.2 builds
 *    (facts.md) decide by offset; otherwise a print of `...status...` marks a
 *    publish, and the first query-path stop of a thread since its last reply
 *    is the read, a later one the publish. The value is the first print at
 *    that stop of the switch's own value (a local, a register, `s->state`);
 *    prints of `*(int*)ADDR` are polls of memory and only become notes unless
 *    nothing else was printed.
 *  - the monitor's side: `info migrate` (HMP, after a `(qemu)` prompt) and
 *    `{"execute":"query-migrate"}` (QMP) open a query (query-begin, thread
 *    null: the transcript does not show which thread runs it); the HMP output
 *    block or the QMP `return` closes it with query-end and a reply.
 *
 * Threads: gdb ids are the session tids (plus 1000 per later `run` of the
 * same transcript, since gdb numbers threads anew). LWPs and names come from
 * `info threads`, thread switches and hit lines; `[New Thread ...]` lines give
 * an LWP the next gdb id only while the transcript has shown every thread
 * since `run`, and any later `info threads` row overrides that.
 *
 * In non-stop mode a stop does not change the selected thread (a `p` right
 * after another thread's hit evaluates in the old one, or fails with
 * "Selected thread is running."); in all-stop mode it does. Prints are
 * attributed accordingly. Commands that failed (an error line follows) have
 * no effect.
 */

export interface GdbImportOptions {
  /** Shown in errors and warnings: the file name. */
  source?: string;
  /** Overrides what the transcript reveals; picks the MigrationStatus numbering. */
  qemuVersion?: string | null;
}

export interface GdbTranscript extends ImportedLog {
  /** 'unpatched' / 'patched' when the binary tells (minimig builds, QEMU >= 7.1), else 'unknown'. */
  variant: 'unpatched' | 'patched' | 'unknown';
  binary: string | null;
}

/** Verified read/publish points of stripped Debian builds (facts.md). */
const KNOWN_ADDRESS_PROBES: ReadonlyArray<{ version: string; read: number[]; publish: number[] }> = [
  { version: '5.2', read: [123], publish: [187, 457, 636] },
  { version: '7.2', read: [133], publish: [332, 513, 676] },
  { version: '10.0', read: [214, 222], publish: [430] },
];

const QUERY_FUNCS = new Set(['fill_source_migration_info', 'qmp_query_migrate']);
const RUN_OFFSET = 1000;
const MAX_LINE = 64 * 1024;
const MAX_JOIN = 8;
const MAX_JSON_LINES = 400;

/* ------------------------------------------------------------------------ */
/* Lines */

interface LLine {
  text: string;
  line: number;
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Z0-9]|\x1b[=>]/g;

const RECORD_START = /^(?:\(gdb\)|\(qemu\)|Thread \d+ |Breakpoint \d+|Temporary breakpoint \d+|\$\d+ = |\[|#\d+\s|\d+\t|Continuing\.|\{|->|<-|Run till|Program |Id\s+Target Id|\*?\s*\d+\s+(?:Thread|process) )/;

function parenBalance(s: string): number {
  let depth = 0;
  let quote = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (c === '"') quote = !quote;
    else if (!quote && c === '(') depth++;
    else if (!quote && c === ')') depth--;
  }
  return depth;
}

function braceBalance(s: string): number {
  let depth = 0;
  let quote = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quote && c === '\\') {
      i++;
      continue;
    }
    if (c === '"') quote = !quote;
    else if (!quote && (c === '{' || c === '[')) depth++;
    else if (!quote && (c === '}' || c === ']')) depth--;
  }
  return depth;
}

const GDB_RECORD = /^(?:Thread \d+ "[^"]*" hit |Breakpoint \d+, |Temporary breakpoint \d+, |#\d+\s|\*?\s*\d+\s+Thread 0x[0-9a-f]+ \(LWP \d+\))/;
const JSON_PREFIX = /^(?:->|<-|qmp>|QMP>)\s*/;

/**
 * Physical lines to logical ones: ANSI escapes out, quoting ("> ") and a
 * common indent removed, and the wraps put back: gdb's own (a hit line or
 * frame cut after "(", with "    at file:line" on the next line), a pasting
 * client's hard wrap of such a line, and JSON spread over several lines.
 */
function logicalLines(text: string, warnings: ImportWarning[]): LLine[] {
  const phys = splitLines(text).map((raw, i) => {
    let t = raw.replace(ANSI, '');
    // Terminal captures keep backspace edits: apply them.
    while (t.includes('\x08')) t = t.replace(/[^\x08]\x08/, '').replace(/^\x08+/, '');
    return { text: t.replace(/\s+$/, ''), line: i + 1 };
  });
  for (const p of phys) {
    if (p.text.length > MAX_LINE) {
      warnings.push({ line: p.line, text: clip(p.text), reason: `line of ${p.text.length} characters: too long for a transcript line, skipped` });
      p.text = '';
    }
  }
  const nonEmpty = phys.filter((p) => p.text.trim() !== '');
  const quoted = nonEmpty.filter((p) => /^\s*>/.test(p.text) && !/^\s*>\s*$/.test(p.text) && !JSON_PREFIX.test(p.text.trim())).length;
  if (nonEmpty.length > 0 && quoted * 2 > nonEmpty.length) {
    for (const p of phys) p.text = p.text.replace(/^\s*(?:>\s?)+/, '');
  }
  // A transcript pasted as an indented block (Launchpad, Markdown) inside unindented prose:
  // the block's indent is that of its gdb lines.
  let indent: number | null = null;
  for (const p of phys) {
    if (!/^\s*(?:\(gdb\)|Thread \d+ "[^"]*" hit |Breakpoint \d+, |\$\d+ = )/.test(p.text)) continue;
    const n = /^[ ]*/.exec(p.text)![0].length;
    indent = indent === null ? n : Math.min(indent, n);
  }
  if (indent) for (const p of phys) p.text = p.text.slice(Math.min(indent, /^[ ]*/.exec(p.text)![0].length));

  const out: LLine[] = [];
  for (let i = 0; i < phys.length; i++) {
    let cur = phys[i].text;
    const line = phys[i].line;
    const body = cur.replace(/^\(gdb\)\s*/, '').replace(JSON_PREFIX, '');
    if (body.startsWith('{') && braceBalance(body) > 0) {
      let j = i + 1;
      let joined = cur;
      while (j < phys.length && j - i <= MAX_JSON_LINES && braceBalance(joined.replace(/^\(gdb\)\s*/, '').replace(JSON_PREFIX, '')) > 0) {
        joined += ` ${phys[j].text.trim()}`;
        j++;
      }
      if (braceBalance(joined.replace(/^\(gdb\)\s*/, '').replace(JSON_PREFIX, '')) === 0) {
        out.push({ text: joined, line });
        i = j - 1;
        continue;
      }
    }
    let joins = 0;
    const isRecord = GDB_RECORD.test(cur.trim());
    while (i + 1 < phys.length && joins < MAX_JOIN) {
      const next = phys[i + 1].text;
      if (next.trim() === '') break;
      const open = parenBalance(cur) > 0;
      const indented = /^\s/.test(next);
      const atLine = /^\s+at \S+:\d+$/.test(next) || /^\s+from \S+$/.test(next);
      // An `info threads` row whose frame went to the next line.
      const bareRow = /^\*?\s*\d+\s+Thread 0x[0-9a-fA-F]+ \(LWP \d+\)(?: "[^"]*")?$/.test(cur.trim()) && parseFrame(next.trim().replace(/\($/, '()')) !== null;
      if (bareRow || (atLine && (isRecord || /\)$/.test(cur.trim()))) || (open && (indented || !RECORD_START.test(next.trim())))) {
        cur = `${cur.replace(/\s+$/, '')}${/[(,]$/.test(cur.trim()) && !/^\s*\)/.test(next) ? ' ' : ' '}${next.trim()}`;
        i++;
        joins++;
      } else {
        break;
      }
    }
    out.push({ text: cur.replace(/\( /g, '(').replace(/ +\)/g, ')'), line });
  }
  return out;
}

/* ------------------------------------------------------------------------ */
/* Frames and values */

interface Frame {
  pc: string | null;
  func: string | null;
  args: Map<string, string>;
  file: string | null;
  srcLine: number | null;
}

function splitArgs(s: string): Map<string, string> {
  const args = new Map<string, string>();
  let depth = 0;
  let quote = false;
  let start = 0;
  const parts: string[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (c === '"') quote = !quote;
    if (quote) continue;
    if (c === '(' || c === '{' || c === '<' || c === '[') depth++;
    else if (c === ')' || c === '}' || c === '>' || c === ']') depth--;
    else if (c === ',' && depth === 0) {
      parts.push(s.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(s.slice(start));
  for (const p of parts) {
    const m = /^\s*([A-Za-z_]\w*)=(.*)$/.exec(p);
    if (m) args.set(m[1], m[2].trim());
  }
  return args;
}

/** "0x000055 in qmp_query_migrate ()", "migrate_set_state (state=..., old_state=1) at f.c:12". */
function parseFrame(s: string): Frame | null {
  const m = /^(?:(0x[0-9a-fA-F]+) in )?([A-Za-z_][\w:.~$]*(?:\+\d+)?)\s*\((.*)\)(?:\s+at\s+(\S+):(\d+))?(?:\s+from\s+\S+)?\s*$/.exec(s.trim());
  if (!m) return null;
  return {
    pc: m[1] ? m[1].toLowerCase() : null,
    func: m[2].replace(/\+\d+$/, ''),
    args: splitArgs(m[3]),
    file: m[4] ?? null,
    srcLine: m[5] ? Number(m[5]) : null,
  };
}

type Printed =
  | { kind: 'int'; n: number }
  | { kind: 'enum'; name: string }
  | { kind: 'pointer'; addr: string }
  | { kind: 'other' };

function parsePrinted(v: string): Printed {
  const t = v.trim();
  if (/^-?\d+$/.test(t)) return { kind: 'int', n: Number(t) };
  if (/^0x[0-9a-fA-F]+$/.test(t)) return { kind: 'int', n: Number.parseInt(t.slice(2), 16) };
  const e = /^(?:\([\w ]+\)\s*)?(MIGRATION_STATUS_[A-Z0-9_]+)$/.exec(t);
  if (e) return { kind: 'enum', name: e[1] };
  const p = /^\(([^()]*\*)\)\s*(0x[0-9a-fA-F]+)(?:\s+<[^>]*>)?$/.exec(t);
  if (p) return { kind: 'pointer', addr: p[2].toLowerCase() };
  return { kind: 'other' };
}

function addressOf(v: string): string | null {
  const p = parsePrinted(v);
  if (p.kind === 'pointer') return p.addr;
  const t = v.trim();
  if (/^0x[0-9a-fA-F]+$/.test(t)) return t.toLowerCase();
  if (/^-?\d+$/.test(t)) {
    const n = BigInt.asUintN(64, BigInt(t));
    return n > 0xffffn ? `0x${n.toString(16)}` : null;
  }
  const m = /^0x[0-9a-fA-F]+(?=\s+<)/.exec(t);
  return m ? m[0].toLowerCase() : null;
}

/** Printed text as a state, or null when it is not one (a pointer, a struct, a huge number). */
function stateOf(v: string, table: StatusTableId): StateValue | null {
  const p = parsePrinted(v);
  if (p.kind === 'int') {
    // Registers print unsigned: a state is a small enum index.
    if (p.n < 0 || p.n > 64) return null;
    return { value: p.n, name: statusName(p.n, table) };
  }
  if (p.kind === 'enum') {
    const name = normalizeStatusName(p.name);
    return { value: statusValue(name, table), name };
  }
  return null;
}

/* ------------------------------------------------------------------------ */
/* Parser state */

interface Print {
  expr: string;
  value: string | null;
  line: number;
  used: boolean;
}

interface Stop {
  tid: number;
  line: number;
  kind: 'breakpoint' | 'signal' | 'interrupt' | 'step' | 'watchpoint' | 'seen';
  bp: number | null;
  frame: Frame;
  prints: Print[];
  /** Index of the release slot, once the thread ran again. */
  releaseSlot: number | null;
  text: string;
}

type Slot =
  | { type: 'stop'; stop: Stop; line: number }
  | { type: 'print'; stop: Stop; print: Print; line: number }
  | { type: 'release'; stop: Stop; line: number }
  | { type: 'event'; event: NewEvent; line: number };

interface BreakpointDef {
  spec: string | null;
  addr: string | null;
}

interface Pending {
  /** 'current' resolved when the command was typed. */
  tids: number[] | 'all';
  line: number;
}

interface QmpRequest {
  execute: string;
  id: string | null;
  query: string | null;
  line: number;
}

const NOISE = new RegExp(
  '^(?:' + [
    'Reading symbols from ', '\\(No debugging symbols found', 'Starting program: ', '\\[Thread debugging using',
    'Using host libthread_db', 'Breakpoint \\d+ at ', 'Temporary breakpoint \\d+ at ', 'Hardware (?:read |access \\(read/write\\) )?watchpoint \\d+: ',
    'Watchpoint \\d+: ', 'Signal\\s+Stop\\s+Print', 'SIG[A-Z0-9]+\\s+(?:Yes|No)\\s', 'Num\\s+Type\\s+Disp', 'Run till exit',
    'Value returned is', 'Download', 'Debuginfod', 'Enable debuginfod', 'warning: ', 'Warning: ', 'Attaching to ',
    'Detaching from ', '\\[Detaching after ', 'Kill the program being debugged', 'Quit anyway', 'Make breakpoint pending',
    'Function ".*" not defined', 'Copyright', 'License GPLv3', 'This is free software', 'There is NO WARRANTY',
    'Type "show', 'This GDB was configured', 'For bug reporting', 'Find the GDB manual', '<https?:', 'For help, type',
    'Type "apropos', 'GNU gdb', '\\(More stack frames follow\\.\\.\\.\\)', 'Program terminated', 'The program being debugged',
    'Starting', '\\[New LWP ', '\\[New process \\d+\\]', '\\[LWP \\d+ exited\\]', 'Deleted breakpoint', 'Note: breakpoint', 'No breakpoints',
    'Dump of assembler code', 'End of assembler dump', '=?>?\\s+0x[0-9a-f]+ <[^>]+>:', 'rax\\s', 'rbx\\s', 'rcx\\s', 'rdx\\s',
    'rsi\\s', 'rdi\\s', 'rbp\\s', 'rsp\\s', 'r\\d+\\s', 'rip\\s', 'eflags\\s', '[a-z]s\\s+0x', 'fs_base', 'gs_base', 'k\\d\\s',
    'Please answer y or n', '\\(y or n\\)', 'Current language:', 'The current source language', 'Continuing in',
    'Thread \\d+ "[^"]*" received signal', 'Program received signal', 'Single stepping until exit', 'Inferior \\d+ \\[',
  ].join('|') + ')',
);

const GDB_ERROR = /^(?:Selected thread is running\.|Cannot execute this command .*|No symbol ".*" in current context\.|The program is not being run\.|Invalid thread ID.*|Unknown thread .*|No registers\.|Cannot access memory at address .*|Attempt to .*|A syntax error in expression.*|Undefined (?:info )?command: .*|Thread ID \d+ not known\.|History has not yet reached.*|No frame selected\.|No stack\.|Argument required.*|Invalid (?:number|argument).*|"finish" not meaningful.*|Target is executing\.)$/;

const ASYNC_AFTER_PROMPT = /^(?:\[|Thread \d+ |Breakpoint \d+, |Temporary breakpoint \d+, |\$\d+ = |Continuing\.|Using host libthread_db|Starting program)/;

const ELISION = /^(?:\.{3,}|…+|\[\.{3}\]|\(\.{3}\)|<\.{3}>|<snip(?:ped)?>|\[snip(?:ped)?\]|-+ ?snip ?-+|\.{3}\s*\(.*\)\s*\.{0,3}|\[\s*\d+ lines? (?:cut|removed|elided|snipped)\s*\])$/i;

const HMP_START = /^(?:globals:|capabilities:|Migration status:|Status:\s)/;
const HMP_LINE = /^(?:[a-z][a-z0-9 _/()-]*:(?:\s.*)?|Migration status:.*|Status:.*|Time \(ms\):.*|RAM info:.*|Postcopy[^:]*:.*|Xbzrle[^:]*:.*|XBZRLE[^:]*:.*|Compression[^:]*:.*|Multifd[^:]*:.*|Blocked[^:]*:.*|Dirty[^:]*:.*|Throughput[^:]*:.*|Sizes[^:]*:.*|Transfers[^:]*:.*|Channels[^:]*:.*|Page[^:]*:.*|Disk[^:]*:.*|Error: .*|\s+\S.*)$/;

const COMMANDS_WITHOUT_PROMPT = /^(?:(?:p|print|output|call|inspect)(?:\s*\/\w+)?\s+\S.*|info threads|info thread|thread \d+|thread|(?:continue|cont|c|fg)(?:\s+-a|\s+&|\s+\d+)*|interrupt(?:\s+-a)?|(?:break|b|tbreak|hbreak|br)\s+\S+.*|delete(?:\s+\d+)*|d(?:\s+\d+)+|(?:bt|backtrace|where)(?:\s+(?:full|-?\d+))*|kill|k|quit|q|(?:run|r)(?:\s+&)?|start|set\s+(?:non-stop|pagination|confirm|environment|scheduler-locking|width|height|print|style|logging)\b.*|handle\s+SIG.*|x\/\S+\s+\S+|(?:next|step|finish|stepi|nexti|si|ni|until|advance)(?:\s+\S+)?|info (?:registers|breakpoints|break|frame|locals|args|inferiors|sharedlibrary)\b.*|frame(?:\s+\d+)?|up|down|disassemble.*|detach|attach \d+)$/;

export function parseGdbTranscript(text: string, opts: GdbImportOptions = {}): GdbTranscript {
  const source = opts.source ?? 'input';
  if (text.trim() === '') {
    throw new MigraceError('IMPORT', `${source}: empty file: not a GDB transcript`);
  }
  const bin = binaryReason(text);
  if (bin) throw new MigraceError('IMPORT', `${source}: ${bin}: not a GDB transcript (a compressed file is read only when it is gzip)`);

  const warnings: ImportWarning[] = [];
  const lines = logicalLines(text, warnings);
  const signature = lines.find((l) => /^(?:\(gdb\)|Thread \d+ "[^"]*" hit |Breakpoint \d+, |Temporary breakpoint \d+, |\$\d+ = )/.test(l.text));
  if (!signature) {
    const kinds = sniffKinds(text).filter((k) => k !== 'gdb');
    const first = lines.find((l) => l.text.trim() !== '');
    const hint = kinds.length ? `; it looks like ${KIND_NAMES[kinds[0]]}` : '';
    throw new MigraceError('IMPORT',
      `${source}:${first?.line ?? 1}: not a GDB transcript: no "(gdb)" prompt, breakpoint hit or "$N = " value in its ${lines.length} lines${hint} (line ${first?.line ?? 1}: ${JSON.stringify(clip(first?.text ?? ''))})`);
  }

  /* ---- state ---- */
  const slots: Slot[] = [];
  const threads = new Map<number, Thread>();
  const lwpAuthoritative = new Set<number>();
  const byLwp = new Map<number, number>();
  const stopped = new Map<number, Stop>();
  const bps = new Map<number, BreakpointDef>();
  let nonStop = false;
  let schedulerLocked = false;
  let current = null as number | null;
  let runIndex = -1;
  let inferNext: number | null = null;
  let pendingBreakSpec: string | null = null;
  let lastPrint = null as { print: Print; stop: Stop | null; tid: number | null } | null;
  let pendingResume = null as Pending | null;
  let pendingThreadSwitch = null as { prev: number | null } | null;
  let stepping = null as number | null;
  let elidedSince = false;
  let qemuVersion: string | null = null;
  let binary: string | null = null;
  let inThreadTable = false;
  const hmpQueue: { query: string; line: number }[] = [];
  let hmpBlock = null as { line: number; lines: string[] } | null;
  const qmpQueue: QmpRequest[] = [];
  let queryCounter = 0;
  let seenSignature = false;

  const tidOf = (gdbId: number): number => gdbId + RUN_OFFSET * Math.max(0, runIndex);
  const gdbIdOf = (tid: number): number => tid % RUN_OFFSET;
  const label = (tid: number | null): string => {
    if (tid === null) return 'an unknown thread';
    const t = threads.get(tid);
    return `thread ${gdbIdOf(tid)}${t?.name ? ` "${t.name}"` : ''}`;
  };

  const thread = (gdbId: number, lwp: number | null = null, name: string | null = null, authoritative = true): number => {
    const tid = tidOf(gdbId);
    const t = threads.get(tid) ?? { tid, gdb_id: gdbId, lwp: null, name: null };
    if (lwp !== null && (authoritative || !lwpAuthoritative.has(tid))) {
      if (t.lwp !== null && t.lwp !== lwp && byLwp.get(t.lwp) === tid) byLwp.delete(t.lwp);
      const other = byLwp.get(lwp);
      if (authoritative && other !== undefined && other !== tid) {
        // A guess from [New Thread] lines gave this LWP to another gdb id: gdb says otherwise.
        const o = threads.get(other);
        if (o && o.lwp === lwp) o.lwp = null;
      }
      t.lwp = lwp;
      byLwp.set(lwp, tid);
      if (authoritative) lwpAuthoritative.add(tid);
    }
    if (name !== null) t.name = name;
    threads.set(tid, t);
    return tid;
  };

  const note = (text: string, line: number, tid: number | null = null): void => {
    slots.push({ type: 'event', line, event: blank('note', tid, { text }) });
  };

  const resume = (tids: number[] | 'all', line: number): void => {
    const list = tids === 'all' ? [...stopped.keys()] : tids;
    for (const tid of list) {
      const s = stopped.get(tid);
      if (!s) continue;
      s.releaseSlot = slots.length;
      slots.push({ type: 'release', stop: s, line });
      stopped.delete(tid);
    }
  };

  const applyPendingResume = (): void => {
    if (pendingResume) {
      resume(pendingResume.tids, pendingResume.line);
      pendingResume = null;
    }
  };

  const endAllStops = (): void => {
    // The process is gone: nothing stopped will run again.
    stopped.clear();
    stepping = null;
  };

  const addStop = (tid: number, kind: Stop['kind'], bp: number | null, frame: Frame, l: LLine): Stop => {
    applyPendingResume();
    const prev = stopped.get(tid);
    if (prev) {
      if (!elidedSince) {
        warnings.push({ line: l.line, text: clip(l.text), reason: `${label(tid)} stopped again without a resume since line ${prev.line}: taken as resumed just before` });
      }
      resume([tid], l.line);
    }
    if (!nonStop) {
      // All-stop: a stop selects the thread that stopped.
      current = tid;
    }
    const stop: Stop = { tid, line: l.line, kind, bp, frame, prints: [], releaseSlot: null, text: l.text };
    slots.push({ type: 'stop', stop, line: l.line });
    stopped.set(tid, stop);
    elidedSince = false;
    return stop;
  };

  const closeHmpBlock = (): void => {
    if (!hmpBlock) return;
    const body = hmpBlock.lines.join('\n');
    const st = /^(?:Migration status|Status):\s*([A-Za-z_-]+)/m.exec(body);
    const status = st ? normalizeStatusName(st[1]) : null;
    const hasRam = /^(?:transferred ram|remaining ram|total ram):/m.test(body) || /^RAM info:/m.test(body);
    const q = hmpQueue.shift();
    if (q) {
      slots.push({ type: 'event', line: hmpBlock.line, event: blank('query-end', null, { query: q.query }) });
    } else {
      warnings.push({ line: hmpBlock.line, text: clip(hmpBlock.lines[0]), reason: 'monitor output with no "(qemu) info migrate" before it: kept as a reply to no known query' });
    }
    slots.push({
      type: 'event', line: hmpBlock.line,
      event: blank('reply', null, { query: q?.query ?? null, command: 'info migrate', status, has_ram: hasRam, body }),
    });
    hmpBlock = null;
  };

  const handleJson = (obj: unknown, l: LLine): void => {
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
      warnings.push({ line: l.line, text: clip(l.text), reason: 'JSON that is not a QMP message' });
      return;
    }
    const o = obj as Record<string, unknown>;
    if (typeof o.QMP === 'object' && o.QMP !== null) {
      const v = (o.QMP as { version?: { qemu?: { major?: number; minor?: number; micro?: number } } }).version?.qemu;
      if (v && typeof v.major === 'number') qemuVersion ??= `${v.major}.${v.minor ?? 0}.${v.micro ?? 0}`;
      return;
    }
    if (typeof o.execute === 'string' || typeof o['exec-oob'] === 'string') {
      const execute = (o.execute ?? o['exec-oob']) as string;
      const id = o.id === undefined ? null : typeof o.id === 'string' ? o.id : JSON.stringify(o.id);
      let query: string | null = null;
      if (execute === 'query-migrate') {
        query = id ?? `qmp-${++queryCounter}`;
        applyPendingResume();
        slots.push({ type: 'event', line: l.line, event: blank('query-begin', null, { query }) });
      } else if (execute !== 'qmp_capabilities') {
        note(`QMP ${execute}${o.arguments ? ` ${JSON.stringify(o.arguments)}` : ''}`, l.line);
      }
      qmpQueue.push({ execute, id, query, line: l.line });
      return;
    }
    if ('return' in o || 'error' in o) {
      const id = o.id === undefined ? null : typeof o.id === 'string' ? o.id : JSON.stringify(o.id);
      let i = id === null ? 0 : qmpQueue.findIndex((r) => r.id === id);
      if (i < 0) i = qmpQueue.findIndex((r) => r.id === null);
      const req = i >= 0 && i < qmpQueue.length ? qmpQueue.splice(i, 1)[0] : null;
      const ret = o.return;
      const looksLikeMigrate = typeof ret === 'object' && ret !== null && !Array.isArray(ret) &&
        (Object.keys(ret).length === 0 || 'status' in ret);
      if (req?.execute === 'query-migrate' || (!req && looksLikeMigrate && 'status' in (ret as object))) {
        applyPendingResume();
        if (req?.query) slots.push({ type: 'event', line: l.line, event: blank('query-end', null, { query: req.query }) });
        else warnings.push({ line: l.line, text: clip(l.text), reason: 'a query-migrate reply with no request before it: kept as a reply to no known query' });
        const r = (typeof ret === 'object' && ret !== null ? ret : {}) as Record<string, unknown>;
        slots.push({
          type: 'event', line: l.line,
          event: blank('reply', null, {
            query: req?.query ?? null, command: 'query-migrate',
            status: typeof r.status === 'string' ? r.status : null,
            has_ram: typeof r.ram === 'object' && r.ram !== null,
            body: obj,
          }),
        });
      }
      return;
    }
    if (typeof o.event === 'string') {
      const data = o.data as Record<string, unknown> | undefined;
      const status = data && typeof data.status === 'string' ? ` ${data.status}` : '';
      note(`QMP event ${o.event}${status}`, l.line);
      return;
    }
    warnings.push({ line: l.line, text: clip(l.text), reason: 'JSON that is not a QMP message' });
  };

  const handleCommand = (cmd: string, l: LLine): void => {
    const c = cmd.trim();
    if (c === '') return;
    // A command ends what the previous one printed.
    inThreadTable = false;
    lastPrint = null;
    if (pendingThreadSwitch) pendingThreadSwitch = null;
    let m: RegExpExecArray | null;
    if ((m = /^set\s+non-stop\s+(on|off|1|0)$/.exec(c))) {
      nonStop = m[1] === 'on' || m[1] === '1';
      return;
    }
    if ((m = /^set\s+scheduler-locking\s+(on|off|step|replay)$/.exec(c))) {
      // With the scheduler locked, an all-stop `continue` runs the selected thread only.
      schedulerLocked = m[1] === 'on';
      return;
    }
    if (/^(?:run|r|start|starti)(?:\s|$)/.test(c) || /^attach\s+\d+/.test(c)) {
      applyPendingResume();
      endAllStops();
      runIndex++;
      inferNext = 2;
      current = thread(1);
      return;
    }
    if ((m = /^thread\s+(\d+)$/.exec(c))) {
      applyPendingResume();
      pendingThreadSwitch = { prev: current };
      current = thread(Number(m[1]));
      return;
    }
    if ((m = /^(?:p|print|output|call|inspect)(?:\s*\/(\w+))?\s+(.+)$/.exec(c))) {
      applyPendingResume();
      const print: Print = { expr: m[2].trim(), value: null, line: l.line, used: false };
      const stop = current !== null ? stopped.get(current) ?? null : null;
      if (stop) stop.prints.push(print);
      lastPrint = { print, stop, tid: current };
      return;
    }
    if ((m = /^(?:continue|cont|c|fg)((?:\s+(?:-a|&|\d+))*)$/.exec(c))) {
      applyPendingResume();
      const all = /-a/.test(m[1]) || (!nonStop && !schedulerLocked);
      pendingResume = { tids: all ? 'all' : current !== null ? [current] : [], line: l.line };
      return;
    }
    if (/^(?:next|step|finish|stepi|nexti|si|ni|until|advance|n|s|u)(?:\s+\S+)?$/.test(c)) {
      applyPendingResume();
      if (current !== null) {
        pendingResume = { tids: nonStop ? [current] : 'all', line: l.line };
        stepping = current;
      }
      return;
    }
    if (/^(?:kill|k)$/.test(c)) {
      applyPendingResume();
      endAllStops();
      return;
    }
    if (/^detach\b/.test(c)) {
      applyPendingResume();
      resume('all', l.line);
      return;
    }
    if ((m = /^(?:break|b|br|tbreak|hbreak|thbreak)\s+(.+)$/.exec(c))) {
      pendingBreakSpec = m[1].trim();
      return;
    }
    if (/^info\s+threads?$/.test(c)) {
      applyPendingResume();
      inThreadTable = true;
      return;
    }
    if (/^info\s+migrate\b/.test(c)) {
      // Not a gdb command: the monitor's, typed or pasted without its "(qemu)" prompt.
      handleMonitor(c, l);
      return;
    }
  };

  const handleMonitor = (cmd: string, l: LLine): void => {
    closeHmpBlock();
    const c = cmd.trim();
    if (c === '') return;
    if (/^info\s+migrate$/.test(c)) {
      applyPendingResume();
      const query = `hmp-${++queryCounter}`;
      hmpQueue.push({ query, line: l.line });
      slots.push({ type: 'event', line: l.line, event: blank('query-begin', null, { query }) });
    } else {
      note(`monitor: ${c}`, l.line);
    }
  };

  for (const l of lines) {
    let t = l.text;
    const trimmed = t.trim();

    // The monitor's output block runs until a line that is not one of its fields.
    if (hmpBlock) {
      if (trimmed !== '' && HMP_LINE.test(t) && !/^\(qemu\)/.test(trimmed)) {
        hmpBlock.lines.push(t);
        continue;
      }
      closeHmpBlock();
    }
    if (trimmed === '') {
      inThreadTable = false;
      continue;
    }
    if (ELISION.test(trimmed)) {
      elidedSince = true;
      inThreadTable = false;
      continue;
    }

    // Prompts: "(gdb) cmd", sometimes several on one line when output was empty.
    if (/^\(gdb\)/.test(trimmed)) {
      seenSignature = true;
      let rest = trimmed;
      while (/^\(gdb\)/.test(rest)) rest = rest.replace(/^\(gdb\)\s?/, '');
      if (/^\(qemu\)/.test(rest)) {
        handleMonitor(rest.replace(/^\(qemu\)\s?/, ''), l);
        continue;
      } else if (rest.trim().startsWith('{') || ASYNC_AFTER_PROMPT.test(rest)) {
        // Asynchronous output lands right after a prompt that was already printed.
        t = rest;
      } else {
        handleCommand(rest, l);
        continue;
      }
    }
    if (/^\(qemu\)/.test(trimmed)) {
      handleMonitor(trimmed.replace(/^\(qemu\)\s?/, ''), l);
      continue;
    }
    const tt = t.trim();

    // QMP JSON, possibly marked with -> / <-.
    const jsonText = tt.replace(JSON_PREFIX, '');
    if (jsonText.startsWith('{')) {
      let obj: unknown;
      try {
        obj = JSON.parse(jsonText);
      } catch {
        warnings.push({ line: l.line, text: clip(tt), reason: 'looks like QMP JSON but does not parse' });
        continue;
      }
      handleJson(obj, l);
      continue;
    }

    let m: RegExpExecArray | null;

    // A breakpoint hit.
    if ((m = /^(?:Thread (\d+)(?: "((?:[^"\\]|\\.)*)")? hit )?(Temporary breakpoint|Breakpoint) (\d+), (.*)$/.exec(tt))) {
      seenSignature = true;
      const frame = parseFrame(m[5]);
      let tid: number | null;
      if (m[1]) tid = thread(Number(m[1]), null, m[2] ?? null);
      else tid = current ?? thread(1);
      if (!frame) {
        warnings.push({ line: l.line, text: clip(tt), reason: 'breakpoint hit whose location is not understood' });
        continue;
      }
      addStop(tid, 'breakpoint', Number(m[4]), frame, l);
      continue;
    }
    if ((m = /^(?:Thread (\d+)(?: "((?:[^"\\]|\\.)*)")? hit )?(Hardware (?:read |access \(read\/write\) )?watchpoint|Watchpoint) (\d+): (.*)$/.exec(tt))) {
      seenSignature = true;
      const tid = m[1] ? thread(Number(m[1]), null, m[2] ?? null) : current ?? thread(1);
      addStop(tid, 'watchpoint', Number(m[4]), { pc: null, func: null, args: new Map(), file: null, srcLine: null }, l);
      note(`${label(tid)} hit ${m[3].toLowerCase()} ${m[4]} on ${m[5]}`, l.line, tid);
      continue;
    }
    if ((m = /^Thread (\d+)(?: "((?:[^"\\]|\\.)*)")? stopped\.$/.exec(tt))) {
      const tid = thread(Number(m[1]), null, m[2] ?? null);
      addStop(tid, 'interrupt', null, { pc: null, func: null, args: new Map(), file: null, srcLine: null }, l);
      stepping = tid;
      continue;
    }
    if ((m = /^(?:Thread (\d+)(?: "((?:[^"\\]|\\.)*)")? received signal|Program received signal) (SIG\w+)/.exec(tt))) {
      const tid = m[1] ? thread(Number(m[1]), null, m[2] ?? null) : current ?? thread(1);
      addStop(tid, 'signal', null, { pc: null, func: null, args: new Map(), file: null, srcLine: null }, l);
      stepping = tid;
      continue;
    }

    // A value.
    if ((m = /^\$(\d+) = (.*)$/.exec(tt))) {
      seenSignature = true;
      if (lastPrint && lastPrint.print.value === null) {
        lastPrint.print.value = m[2];
        if (lastPrint.stop) {
          // Where a print that is not a probe value becomes a note: at its own place in time.
          slots.push({ type: 'print', stop: lastPrint.stop, print: lastPrint.print, line: l.line });
        } else {
          note(`p ${lastPrint.print.expr} = ${m[2]} (${label(lastPrint.tid)}, not stopped at a probe)`, l.line, lastPrint.tid);
        }
      } else {
        warnings.push({ line: l.line, text: clip(tt), reason: 'a value with no print command before it (left out of the transcript?)' });
      }
      continue;
    }

    // Thread bookkeeping.
    if ((m = /^\[(?:Switching to|Current thread is) thread (\d+) \(Thread 0x[0-9a-fA-F]+ \(LWP (\d+)\)\)\]/.exec(tt))) {
      const tid = thread(Number(m[1]), Number(m[2]));
      current = tid;
      pendingThreadSwitch = null;
      continue;
    }
    if ((m = /^\[Switching to Thread 0x[0-9a-fA-F]+ \(LWP (\d+)\)\]$/.exec(tt))) {
      // All-stop's report of the thread that stopped: the hit line that follows names it.
      const known = byLwp.get(Number(m[1]));
      if (known !== undefined) current = known;
      continue;
    }
    if ((m = /^\[New Thread 0x[0-9a-fA-F]+ \(LWP (\d+)\)\]$/.exec(tt))) {
      const lwp = Number(m[1]);
      if (inferNext !== null && !byLwp.has(lwp)) thread(inferNext++, lwp, null, false);
      continue;
    }
    if ((m = /^\[Thread 0x[0-9a-fA-F]+ \(LWP (\d+)\) exited\]$/.exec(tt))) {
      const tid = byLwp.get(Number(m[1]));
      if (tid !== undefined) {
        stopped.delete(tid);
        note(`${label(tid)} (LWP ${m[1]}) exited`, l.line, tid);
      }
      continue;
    }
    if ((m = /^\[Inferior \d+ \(process (\d+)\) (killed|exited normally|exited with code \d+)\]$/.exec(tt))) {
      applyPendingResume();
      endAllStops();
      note(`process ${m[1]} ${m[2]}`, l.line);
      continue;
    }
    if (/^\s*Id\s+Target Id\s+Frame\s*$/.test(t)) {
      inThreadTable = true;
      continue;
    }
    if ((m = /^(\*)?\s*(\d+)\s+(?:Thread 0x[0-9a-fA-F]+ \(LWP (\d+)\)|process (\d+)|LWP (\d+))(?: "((?:[^"\\]|\\.)*)")?\s*(.*)$/.exec(tt)) && (inThreadTable || /^\*/.test(tt))) {
      const lwp = Number(m[3] ?? m[4] ?? m[5]);
      const tid = thread(Number(m[2]), lwp, m[6] ?? null);
      if (m[1]) current = tid;
      const where = m[7].trim();
      const s = stopped.get(tid);
      if (where === '(running)') {
        if (s) {
          if (!elidedSince) warnings.push({ line: l.line, text: clip(tt), reason: `${label(tid)} is running, but the transcript never resumed it since line ${s.line}: taken as resumed here` });
          resume([tid], l.line);
        }
      } else if (!s) {
        const frame = parseFrame(where);
        if (frame && (frame.func === 'migrate_set_state' || QUERY_FUNCS.has(frame.func ?? ''))) {
          warnings.push({ line: l.line, text: clip(tt), reason: `${label(tid)} is stopped in ${frame.func}, a stop the transcript does not show: placed here` });
          addStop(tid, 'seen', null, frame, l);
        }
      }
      continue;
    }

    // Frames and source lines: after a step or an interrupt they say where the thread is.
    if ((m = /^#(\d+)\s+(.*)$/.exec(tt))) {
      if (stepping !== null && m[1] === '0') {
        const s = stopped.get(stepping);
        const frame = parseFrame(m[2]);
        if (frame && s && s.frame.func === null) s.frame = frame;
        else if (frame && !s) addStop(stepping, 'step', null, frame, l);
        stepping = null;
      }
      continue;
    }
    if (/^\d+\t/.test(t) || /^\d+\s{2,}/.test(t)) {
      continue;
    }
    if (stepping !== null) {
      const frame = parseFrame(tt);
      if (frame) {
        const s = stopped.get(stepping);
        if (s && s.frame.func === null) s.frame = frame;
        else if (!s) addStop(stepping, 'step', null, frame, l);
        stepping = null;
        continue;
      }
    }

    // A frame printed outside a step (bt, a stop report after attach): where, not what.
    if (/^0x[0-9a-fA-F]+ in /.test(tt) || (/\)(?:\s+at\s+\S+:\d+)?$/.test(tt) && parseFrame(tt) !== null && /\(\)|=|at \S+:\d+$/.test(tt))) continue;

    if (tt === 'Continuing.') {
      applyPendingResume();
      continue;
    }
    if (GDB_ERROR.test(tt)) {
      // The command before failed: it had no effect.
      pendingResume = null;
      if (pendingThreadSwitch) {
        current = pendingThreadSwitch.prev;
        pendingThreadSwitch = null;
      }
      if (stepping !== null && !stopped.has(stepping)) stepping = null;
      continue;
    }
    if ((m = /^(?:Temporary b|B)reakpoint (\d+) at (0x[0-9a-fA-F]+)/.exec(tt))) {
      bps.set(Number(m[1]), { spec: pendingBreakSpec, addr: m[2].toLowerCase() });
      pendingBreakSpec = null;
      continue;
    }
    if ((m = /^(?:Reading symbols from|Starting program:) (\S+)/.exec(tt))) {
      binary ??= m[1].replace(/\.{3}$/, '');
      continue;
    }
    if ((m = /^QEMU (\d+\.\d+(?:\.\d+)?)\S* monitor - type 'help'/.exec(tt))) {
      qemuVersion ??= m[1];
      continue;
    }
    if (HMP_START.test(tt)) {
      hmpBlock = { line: l.line, lines: [tt] };
      continue;
    }
    if (NOISE.test(tt)) continue;
    if (/^(?:#|\/\/|```|~~~|\$ |% )/.test(tt)) continue;
    if (COMMANDS_WITHOUT_PROMPT.test(tt)) {
      // gdb echoes what was typed after asynchronous output without a fresh prompt.
      handleCommand(tt, l);
      continue;
    }
    warnings.push({ line: l.line, text: clip(tt), reason: 'not understood (prose?): skipped' });
  }
  closeHmpBlock();
  applyPendingResume();
  if (!seenSignature) {
    throw new MigraceError('IMPORT', `${source}:${signature.line}: not a GDB transcript: no prompt, hit or value could be read`);
  }

  /* ---- versions and the status table ---- */
  const version = opts.qemuVersion ?? qemuVersion;
  const table = tableIdFor(version);
  const variant = variantOf(binary, version);

  return finalize(slots, threads, bps, table, warnings, {
    title: source, qemuVersion, binary, variant, runs: runIndex + 1,
  });
}

function blank<K extends NewEvent['kind']>(kind: K, thread: number | null, data: Extract<NewEvent, { kind: K }>['data']): NewEvent {
  return { kind, t_ns: null, wall: null, thread, probe: 'import:gdb', pc: null, func: null, file: null, line: null, data } as NewEvent;
}

/** minimig's two bundled builds by name; a QEMU by version (null: no binary, as in trace and libvirt logs). */
export function variantOf(binary: string | null, version: string | null): GdbTranscript['variant'] {
  if (binary) {
    const base = binary.split('/').pop() ?? '';
    if (base === 'minimig-patched') return 'patched';
    if (base === 'minimig') return 'unpatched';
  }
  // 552de79b is in every QEMU from 7.1 on; older ones may carry a distro backport.
  const m = version ? /^(\d+)\.(\d+)/.exec(version) : null;
  if (m && (Number(m[1]) > 7 || (Number(m[1]) === 7 && Number(m[2]) >= 1))) return 'patched';
  return 'unknown';
}

/* ------------------------------------------------------------------------ */
/* From stops to events */

const OLD_EXPR = /^(?:\(\w+\)\s*)?(?:\$(?:esi|rsi|si)|old_state)$/;
const NEW_EXPR = /^(?:\(\w+\)\s*)?(?:\$(?:edx|rdx|dx)|new_state)$/;
const ADDR_EXPR = /^(?:\$rdi|\$edi|state|\/x \$rdi)$/;
const MEMORY_POKE = /^\*\s*\(\s*(?:int|unsigned|int32_t|MigrationStatus)\s*\*\s*\)\s*(?:0x[0-9a-fA-F]+|\d+)$/;

function probeRoleByOffset(spec: string | null, pcFunc: string | null): 'read' | 'publish' | null {
  if (!spec) return null;
  const m = /^\*\s*(\w+)\s*\+\s*(\d+)$/.exec(spec.trim());
  if (!m || m[1] !== 'qmp_query_migrate' || (pcFunc !== null && pcFunc !== 'qmp_query_migrate')) return null;
  const off = Number(m[2]);
  const reads = KNOWN_ADDRESS_PROBES.some((p) => p.read.includes(off));
  const publishes = KNOWN_ADDRESS_PROBES.some((p) => p.publish.includes(off));
  if (reads && !publishes) return 'read';
  if (publishes && !reads) return 'publish';
  return null;
}

function finalize(
  slots: Slot[],
  threads: Map<number, Thread>,
  bps: Map<number, BreakpointDef>,
  table: StatusTableId,
  warnings: ImportWarning[],
  info: { title: string; qemuVersion: string | null; binary: string | null; variant: GdbTranscript['variant']; runs: number },
): GdbTranscript {
  const name = (tid: number): string => {
    const t = threads.get(tid);
    return `thread ${t?.gdb_id ?? tid}${t?.name ? ` "${t.name}"` : ''}`;
  };
  type Role = { kind: 'transition'; old: StateValue | null; neu: StateValue; addr: string | null }
    | { kind: 'read' | 'publish'; value: StateValue; expr: string }
    | { kind: 'note'; text: string };
  const roles = new Map<Stop, Role>();
  const openRead = new Set<number>();

  const stateFromPrints = (s: Stop, prefer: (p: Print) => boolean): { value: StateValue; print: Print } | null => {
    const candidates = s.prints.filter((p) => p.value !== null);
    const ordered = [...candidates.filter((p) => prefer(p) && !MEMORY_POKE.test(p.expr)), ...candidates.filter((p) => !prefer(p) && !MEMORY_POKE.test(p.expr)), ...candidates.filter((p) => MEMORY_POKE.test(p.expr))];
    for (const p of ordered) {
      const v = stateOf(p.value!, table);
      if (v) return { value: v, print: p };
    }
    return null;
  };

  for (const slot of slots) {
    if (slot.type === 'event') {
      if (slot.event.kind === 'reply' || slot.event.kind === 'query-begin') openRead.clear();
      continue;
    }
    if (slot.type !== 'stop') continue;
    const s = slot.stop;
    const f = s.frame;
    const where = `${f.func ?? '?'}${f.file ? ` at ${f.file}:${f.srcLine}` : ''}`;
    if (f.func === 'migrate_set_state' && (s.kind === 'breakpoint' || s.kind === 'seen')) {
      const argOld = f.args.get('old_state');
      const argNew = f.args.get('new_state');
      const pOld = s.prints.find((p) => p.value !== null && OLD_EXPR.test(p.expr));
      const pNew = s.prints.find((p) => p.value !== null && NEW_EXPR.test(p.expr));
      const pAddr = s.prints.find((p) => p.value !== null && ADDR_EXPR.test(p.expr.replace(/^\/x\s*/, '')));
      const old = argOld !== undefined ? stateOf(argOld, table) : pOld ? stateOf(pOld.value!, table) : null;
      const neu = argNew !== undefined ? stateOf(argNew, table) : pNew ? stateOf(pNew.value!, table) : null;
      const argAddr = f.args.get('state');
      const addr = argAddr !== undefined ? addressOf(argAddr) : pAddr ? addressOf(pAddr.value!) : null;
      for (const p of [pOld, pNew, pAddr]) if (p) p.used = true;
      if (!neu) {
        warnings.push({ line: s.line, text: clip(s.text), reason: `${name(s.tid)} stopped at migrate_set_state but no new state was printed (new_state or $edx): kept as a note` });
        roles.set(s, { kind: 'note', text: `${name(s.tid)} stopped at migrate_set_state; new state unknown` });
      } else {
        roles.set(s, { kind: 'transition', old, neu, addr });
      }
      continue;
    }
    if (f.func !== null && QUERY_FUNCS.has(f.func) && s.kind !== 'signal' && s.kind !== 'interrupt') {
      const spec = s.bp !== null ? bps.get(s.bp)?.spec ?? null : null;
      let role = probeRoleByOffset(spec, f.func);
      if (role === null) {
        if (s.prints.some((p) => p.value !== null && /status/.test(p.expr))) role = 'publish';
        else role = openRead.has(s.tid) ? 'publish' : 'read';
      }
      const chosen = stateFromPrints(s, role === 'publish' ? (p) => /status|^\$/.test(p.expr) : (p) => !/status/.test(p.expr));
      if (!chosen) {
        warnings.push({ line: s.line, text: clip(s.text), reason: `${name(s.tid)} stopped in ${f.func} (taken as the ${role}) but no state value was printed there: kept as a note` });
        roles.set(s, { kind: 'note', text: `${name(s.tid)} stopped in ${where} (a ${role} point) with no state printed` });
        continue;
      }
      chosen.print.used = true;
      if (MEMORY_POKE.test(chosen.print.expr)) {
        warnings.push({ line: chosen.print.line, text: clip(`p ${chosen.print.expr}`), reason: `the ${role} value of ${name(s.tid)} is taken from memory (${chosen.print.expr}), not from what the code loaded` });
      }
      roles.set(s, { kind: role, value: chosen.value, expr: chosen.print.expr });
      if (role === 'read') openRead.add(s.tid);
      else openRead.delete(s.tid);
      continue;
    }
    const what = s.kind === 'watchpoint' ? null : `${name(s.tid)} stopped (${s.kind}) in ${where}`;
    roles.set(s, { kind: 'note', text: what ?? '' });
  }

  // Which events are real (not notes) and whose thread: to decide where holds are needed.
  const substantive = (slot: Slot): { tid: number | null } | null => {
    if (slot.type === 'event') return slot.event.kind === 'note' ? null : { tid: slot.event.thread };
    if (slot.type === 'stop') {
      const r = roles.get(slot.stop);
      return r && r.kind !== 'note' ? { tid: slot.stop.tid } : null;
    }
    return null;
  };
  const needsHold = new Set<Stop>();
  slots.forEach((slot, i) => {
    if (slot.type !== 'stop' || roles.get(slot.stop)?.kind !== 'transition') return;
    const end = slot.stop.releaseSlot ?? slots.length;
    for (let k = i + 1; k < end; k++) {
      const x = substantive(slots[k]);
      if (x && x.tid !== slot.stop.tid) {
        needsHold.add(slot.stop);
        return;
      }
    }
  });

  const events: NewEvent[] = [];
  const lines: number[] = [];
  const emit = (e: NewEvent, line: number): void => {
    events.push(e);
    lines.push(line);
  };
  const loc = (s: Stop): Pick<NewEvent, 'pc' | 'func' | 'file' | 'line' | 'probe'> => {
    const bp = s.bp !== null ? bps.get(s.bp) : undefined;
    return {
      probe: s.bp !== null ? `gdb:breakpoint ${s.bp}${bp?.spec ? ` (${bp.spec})` : ''}` : `gdb:${s.kind}`,
      pc: s.frame.pc ?? bp?.addr ?? null,
      func: s.frame.func,
      file: s.frame.file,
      line: s.frame.srcLine,
    };
  };
  for (const slot of slots) {
    if (slot.type === 'event') {
      emit(slot.event, slot.line);
      continue;
    }
    const s = slot.stop;
    const r = roles.get(s);
    if (slot.type === 'print') {
      const p = slot.print;
      if (!p.used && p.value !== null) {
        emit({ t_ns: null, wall: null, thread: s.tid, ...loc(s), kind: 'note', data: { text: `p ${p.expr} = ${p.value} (${name(s.tid)}, stopped at line ${s.line})` } }, slot.line);
      }
      continue;
    }
    if (slot.type === 'release') {
      if (needsHold.has(s)) {
        emit({ kind: 'release', t_ns: null, wall: null, thread: s.tid, ...loc(s), data: { role: 'writer', reason: `resumed at transcript line ${slot.line}` } }, slot.line);
      }
      continue;
    }
    if (!r) continue;
    const base = { t_ns: null, wall: null, thread: s.tid, ...loc(s) };
    if (r.kind === 'transition') {
      emit({ ...base, kind: 'transition', data: { addr: r.addr, old: r.old, new: r.neu } }, s.line);
      if (needsHold.has(s)) {
        emit({ ...base, kind: 'hold', data: { role: 'writer', reason: `stopped by gdb at transcript line ${s.line}` } }, s.line);
      }
    } else if (r.kind === 'read' || r.kind === 'publish') {
      emit({ ...base, kind: r.kind, data: { value: r.value } }, s.line);
    } else if (r.kind === 'note' && r.text) {
      emit({ ...base, kind: 'note', data: { text: r.text } }, s.line);
    }
  }

  const used = new Set<number>();
  for (const e of events) if (e.thread !== null) used.add(e.thread);
  const threadList = [...threads.values()].filter((t) => used.has(t.tid) || t.lwp !== null).sort((a, b) => a.tid - b.tid);
  return {
    title: info.title,
    threads: threadList,
    events,
    lines,
    warnings,
    qemuVersion: info.qemuVersion,
    meta: { binary: info.binary, runs: info.runs },
    variant: info.variant,
    binary: info.binary,
  };
}
