import { MigraceError } from '../../trace/errors.js';
import { replyData } from '../../trace/reply.js';
import type { Thread } from '../../trace/schema.js';
import { tableIdFor } from '../../trace/status.js';
import { printKind, sourceKey } from './gdb-positions.js';
import {
  NO_FRAME, QUERY_FUNCS, blank, eachUnquoted, finalize, nameFact, parseFrameText,
  type BreakpointDef, type Frame, type GdbTranscript, type Print, type Slot, type Stop,
} from './gdb-stops.js';
import { readText, type LineSink } from './lines.js';
import {
  KIND_NAMES, MAX_PID, WarningList, binaryReason, clip, clipLong, sniffKinds, sourceLine, type WarningSink,
} from './merge.js';

export type { GdbTranscript } from './gdb-stops.js';

/*
 * GDB CLI transcripts as people paste them into bug reports: prompts and
 * commands, breakpoint hits with or without debug info, `p` answers,
 * `info threads` tables, thread switches, non-stop `continue &`, and what a
 * second terminal showed (HMP `info migrate` output, QMP JSON), with prose,
 * `...` elisions and wrapped lines around them.
 *
 * The importer runs in three stages, each fed by the one before:
 *
 *  1. LogicalLines: physical lines to logical ones. ANSI escapes and
 *     backspace edits out, mail quoting ("> ") and a pasted block's indent
 *     removed (decided on the first PRELUDE_LINES lines), and the wraps put
 *     back: gdb's own, a pasting client's hard wrap, JSON over several lines.
 *  2. TranscriptReader: one logical line at a time. Its fields are what a
 *     reader of the transcript keeps in mind (threads, which thread is
 *     selected, who is stopped where, the command whose output follows);
 *     LINE_HANDLERS maps each kind of line (a hit, a `$N = ` value, an
 *     `info threads` row, ...) to the method that handles it, and
 *     COMMAND_HANDLERS does the same for typed commands. It produces slots:
 *     stops with their prints, resumes, and queries and replies.
 *  3. finalize() (gdb-stops.ts): the role of each stop, the publishes
 *     replies prove, the transitions prints of the state prove, the held
 *     writers, the events.
 *
 * What each stop and print means is decided in stage 3 (gdb-stops.ts has
 * the rules, gdb-positions.ts where a stop is): a stop at migrate_set_state
 * is a transition attempt, a stop inside a branch of the switch on the state
 * is a read of that branch's value, the status store is the publish, prints
 * of the state field are evidence, name lookups are name facts. The
 * monitor's side is read here: `info migrate` (HMP, after a `(qemu)`
 * prompt) and `{"execute":"query-migrate"}` (QMP) open a query (query-begin,
 * thread null: the transcript does not show which thread runs it); the HMP
 * output block or the QMP `return` closes it with query-end and a reply
 * (trace/reply.ts reads it).
 *
 * Threads: gdb ids are the session tids (plus 1000 per later `run` of the
 * same transcript, since gdb numbers threads anew). LWPs and names come from
 * `info threads`, thread switches and hit lines; `[New Thread ...]` lines give
 * an LWP the next gdb id only while the transcript has shown every thread
 * since `run` (an elision ends that), and any later `info threads` row
 * overrides that. A row also says where a thread stands: a stop the
 * transcript did not show, or a move it made unseen. One gdb id with two
 * LWPs means two gdb sessions were pasted together: from the line that may
 * have started the second one, stops are kept as notes.
 *
 * In non-stop mode a stop does not change the selected thread (a `p` right
 * after another thread's hit evaluates in the old one, or fails with
 * "Selected thread is running."); in all-stop mode it does. Prints are
 * attributed accordingly. Before any switch is shown thread 1 is selected
 * (`run` and `attach` select it, even when the transcript cut them), and an
 * answered print while none is known was made in the one stopped thread.
 * Commands that failed (an error line follows) have no effect; a print with
 * no answer at all is reported.
 */

export interface GdbImportOptions {
  /** Shown in errors and warnings: the file name. */
  source?: string;
  /** Overrides what the transcript reveals; picks the MigrationStatus numbering. */
  qemuVersion?: string | null;
}

const RUN_OFFSET = 1000;
const MAX_LINE = 64 * 1024;
const MAX_JOIN = 8;
const MAX_JSON_LINES = 400;
/** Quoting and indent are decided on this many lines: a transcript pasted into a bug is far shorter. */
const PRELUDE_LINES = 20_000;

/* ------------------------------------------------------------------------ */
/* Stage 1: logical lines */

interface LLine {
  text: string;
  line: number;
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Z0-9]|\x1b[=>]/g;

const RECORD_START = /^(?:\(gdb\)|\(qemu\)|Thread \d+ |Breakpoint \d+|Temporary breakpoint \d+|\$\d+ = |\[|#\d+\s|\d+\t|Continuing\.|\{|->|<-|Run till|Program |Id\s+Target Id|\*?\s*\d+\s+(?:Thread|process) )/;
const GDB_RECORD = /^(?:Thread \d+ "[^"]*" hit |Breakpoint \d+(?:\.\d+)?, |Temporary breakpoint \d+(?:\.\d+)?, |#\d+\s|\*?\s*\d+\s+Thread 0x[0-9a-f]+ \(LWP \d+\))/;
const JSON_PREFIX = /^(?:->|<-|qmp>|QMP>)\s*/;
const GDB_LINE_START = /^\s*(?:\(gdb\)|Thread \d+ "[^"]*" hit |Breakpoint \d+(?:\.\d+)?, |\$\d+ = )/;

function parenBalance(s: string): number {
  let depth = 0;
  eachUnquoted(s, (c) => {
    if (c === '(') depth++;
    else if (c === ')') depth--;
  });
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

const jsonBody = (s: string): string => s.replace(/^\(gdb\)\s*/, '').replace(JSON_PREFIX, '');

/**
 * Physical lines in, logical lines out (to `emit`). Lines are held until the
 * prelude decides quoting and indent, then only as many as a join can look
 * ahead: memory follows the window, not the transcript.
 */
class LogicalLines {
  private q: LLine[] = [];
  private head = 0;
  private decided = false;
  private quoted = false;
  private indent = 0;

  constructor(private readonly warnings: WarningSink, private readonly emit: (l: LLine) => void) {}

  push(raw: string, line: number): void {
    let t = raw.replace(ANSI, '');
    // Terminal captures keep backspace edits: apply them.
    while (t.includes('\x08')) t = t.replace(/[^\x08]\x08/, '').replace(/^\x08+/, '');
    const p = { text: t.replace(/\s+$/, ''), line };
    if (this.decided) this.unwrap(p);
    this.q.push(p);
    if (!this.decided && this.q.length >= PRELUDE_LINES) this.decide();
    if (this.decided) this.pump(false);
  }

  end(): void {
    if (!this.decided) this.decide();
    this.pump(true);
  }

  /** Mail quoting when most lines are quoted; the indent of an indented block's gdb lines. */
  private decide(): void {
    const nonEmpty = this.q.filter((p) => p.text.trim() !== '');
    const quoted = nonEmpty.filter((p) => /^\s*>/.test(p.text) && !/^\s*>\s*$/.test(p.text) && !JSON_PREFIX.test(p.text.trim())).length;
    this.quoted = nonEmpty.length > 0 && quoted * 2 > nonEmpty.length;
    if (this.quoted) for (const p of this.q) p.text = p.text.replace(/^\s*(?:>\s?)+/, '');
    // A transcript pasted as an indented block (Launchpad, Markdown) inside unindented prose:
    // the block's indent is that of its gdb lines.
    let indent: number | null = null;
    for (const p of this.q) {
      if (!GDB_LINE_START.test(p.text)) continue;
      const n = /^[ ]*/.exec(p.text)![0].length;
      indent = indent === null ? n : Math.min(indent, n);
    }
    this.indent = indent ?? 0;
    if (this.indent) for (const p of this.q) this.dedent(p);
    this.decided = true;
  }

  private unwrap(p: LLine): void {
    if (this.quoted) p.text = p.text.replace(/^\s*(?:>\s?)+/, '');
    if (this.indent) this.dedent(p);
  }

  private dedent(p: LLine): void {
    p.text = p.text.slice(Math.min(this.indent, /^[ ]*/.exec(p.text)![0].length));
  }

  private pump(final: boolean): void {
    // A JSON join looks at most MAX_JSON_LINES + 1 lines ahead.
    while (this.q.length - this.head > MAX_JSON_LINES + 1 || (final && this.head < this.q.length)) this.head = this.one(this.head);
    if (this.head > 4096) {
      this.q = this.q.slice(this.head);
      this.head = 0;
    }
  }

  /** Emit the logical line starting at q[i]; returns the index after it. */
  private one(i: number): number {
    const phys = this.q;
    let cur = phys[i].text;
    const line = phys[i].line;
    const body = jsonBody(cur);
    if (body.startsWith('{') && braceBalance(body) > 0) {
      let j = i + 1;
      let joined = cur;
      while (j < phys.length && j - i <= MAX_JSON_LINES && braceBalance(jsonBody(joined)) > 0) {
        joined += ` ${phys[j].text.trim()}`;
        j++;
      }
      if (braceBalance(jsonBody(joined)) === 0) {
        this.emit({ text: joined, line });
        return j;
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
      const bareRow = /^\*?\s*\d+\s+Thread 0x[0-9a-fA-F]+ \(LWP \d+\)(?: "[^"]*")?$/.test(cur.trim()) && parseFrameText(next.trim().replace(/\($/, '()')) !== null;
      if (bareRow || (atLine && (isRecord || /\)$/.test(cur.trim()))) || (open && (indented || !RECORD_START.test(next.trim())))) {
        cur = `${cur.replace(/\s+$/, '')} ${next.trim()}`;
        i++;
        joins++;
      } else {
        break;
      }
    }
    this.emit({ text: cur.replace(/\( /g, '(').replace(/ +\)/g, ')'), line });
    return i + 1;
  }
}

/* ------------------------------------------------------------------------ */
/* Stage 2: the reader */

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

const ASYNC_AFTER_PROMPT = /^(?:\[|Thread \d+ |Breakpoint \d+(?:\.\d+)?, |Temporary breakpoint \d+(?:\.\d+)?, |\$\d+ = |Continuing\.|Using host libthread_db|Starting program)/;

const ELISION = /^(?:\.{3,}|…+|\[\.{3}\]|\(\.{3}\)|<\.{3}>|<snip(?:ped)?>|\[snip(?:ped)?\]|-+ ?snip ?-+|\.{3}\s*\(.*\)\s*\.{0,3}|\[\s*\d+ lines? (?:cut|removed|elided|snipped)\s*\])$/i;

const HMP_START = /^(?:globals:|capabilities:|Migration status:|Status:\s)/;
const HMP_LINE = /^(?:[a-z][a-z0-9 _/()-]*:(?:\s.*)?|Migration status:.*|Status:.*|Time \(ms\):.*|RAM info:.*|Postcopy[^:]*:.*|Xbzrle[^:]*:.*|XBZRLE[^:]*:.*|Compression[^:]*:.*|Multifd[^:]*:.*|Blocked[^:]*:.*|Dirty[^:]*:.*|Throughput[^:]*:.*|Sizes[^:]*:.*|Transfers[^:]*:.*|Channels[^:]*:.*|Page[^:]*:.*|Disk[^:]*:.*|Error: .*|\s+\S.*)$/;

const COMMANDS_WITHOUT_PROMPT = /^(?:(?:p|print|output|call|inspect)(?:\s*\/\w+)?\s+\S.*|info threads|info thread|thread \d+|thread|(?:continue|cont|c|fg)(?:\s+-a|\s+&|\s+\d+)*|interrupt(?:\s+-a)?|(?:break|b|tbreak|hbreak|br)\s+\S+.*|delete(?:\s+\d+)*|d(?:\s+\d+)+|(?:bt|backtrace|where)(?:\s+(?:full|-?\d+))*|kill|k|quit|q|(?:run|r)(?:\s+&)?|start|set\s+(?:non-stop|pagination|confirm|environment|scheduler-locking|width|height|print|style|logging)\b.*|handle\s+SIG.*|x\/\S+\s+\S+|(?:next|step|finish|stepi|nexti|si|ni|until|advance)(?:\s+\S+)?|info (?:registers|breakpoints|break|frame|locals|args|inferiors|sharedlibrary)\b.*|frame(?:\s+\d+)?|up|down|disassemble.*|detach|attach \d+)$/;

/** The first logical line that only a GDB transcript has. */
const SIGNATURE = /^(?:\(gdb\)|Thread \d+ "[^"]*" hit |Breakpoint \d+(?:\.\d+)?, |Temporary breakpoint \d+(?:\.\d+)?, |\$\d+ = )/;

/** `m` matched the line without its prompt and blanks (`m.input`); `l` is the whole logical line. */
type LineHandler = (r: TranscriptReader, m: RegExpExecArray, l: LLine) => boolean | void;

/**
 * Lines that are not prompts, monitor output or JSON, by what they start
 * with, in the order they are tried. A handler that returns false passes the
 * line on to the next pattern (a row outside a thread table, a frame when no
 * step is pending). Patterns marked 'untrimmed' see the line's leading blanks.
 */
const LINE_HANDLERS: ReadonlyArray<[RegExp, LineHandler, 'untrimmed'?]> = [
  [/^(?:Thread (\d+)(?: "((?:[^"\\]|\\.)*)")? hit )?(Temporary breakpoint|Breakpoint) (\d+)(?:\.\d+)?, (.*)$/, (r, m, l) => r.onBreakpointHit(m, l)],
  [/^(?:Thread (\d+)(?: "((?:[^"\\]|\\.)*)")? hit )?(Hardware (?:read |access \(read\/write\) )?watchpoint|Watchpoint) (\d+): (.*)$/, (r, m, l) => r.onWatchpointHit(m, l)],
  [/^Thread (\d+)(?: "((?:[^"\\]|\\.)*)")? stopped\.$/, (r, m, l) => r.onInterrupted(m, l)],
  [/^(?:Thread (\d+)(?: "((?:[^"\\]|\\.)*)")? received signal|Program received signal) (SIG\w+)/, (r, m, l) => r.onSignal(m, l)],
  [/^\$(\d+) = (.*)$/, (r, m, l) => r.onValue(m, l)],
  [/^\[(?:Switching to|Current thread is) thread (\d+) \(Thread 0x[0-9a-fA-F]+ \(LWP (\d+)\)\)\]/, (r, m) => r.onSwitchedTo(m)],
  [/^\[Switching to Thread 0x[0-9a-fA-F]+ \(LWP (\d+)\)\]$/, (r, m) => r.onSwitchedToLwp(m)],
  [/^\[New Thread 0x[0-9a-fA-F]+ \(LWP (\d+)\)\]$/, (r, m) => r.onNewThread(m)],
  [/^\[Thread 0x[0-9a-fA-F]+ \(LWP (\d+)\) exited\]$/, (r, m, l) => r.onThreadExited(m, l)],
  [/^\[Inferior \d+ \(process (\d+)\) (killed|exited normally|exited with code \d+)\]$/, (r, m, l) => r.onInferiorGone(m, l)],
  [/^\s*Id\s+Target Id\s+Frame\s*$/, (r) => r.onThreadTableHeader()],
  [/^(\*)?\s*(\d+)\s+(?:Thread 0x[0-9a-fA-F]+ \(LWP (\d+)\)|process (\d+)|LWP (\d+))(?: "((?:[^"\\]|\\.)*)")?\s*(.*)$/, (r, m, l) => r.onThreadRow(m, l)],
  // Frames and source lines: after a step or an interrupt they say where the thread is.
  [/^#(\d+)\s+(.*)$/, (r, m, l) => r.onBacktraceFrame(m, l)],
  [/^(\d+)(?:\t|\s{2,})(.*)$/, (r, m) => r.onSourceLine(m), 'untrimmed'],
  [/^/, (r, m, l) => r.onSteppedFrame(m, l)],
  // A frame printed outside a step (bt, a stop report after attach): where, not what.
  [/^0x[0-9a-fA-F]+ in /, () => true],
  [/\)(?:\s+at\s+\S+:\d+)?$/, (_r, m) => parseFrameText(m.input) !== null && /\(\)|=|at \S+:\d+$/.test(m.input)],
  [/^Continuing\.$/, (r) => r.applyPendingResume()],
  [GDB_ERROR, (r) => r.onCommandFailed()],
  [/^(?:Temporary b|B)reakpoint (\d+) at (0x[0-9a-fA-F]+)(?:: file (\S+), line (\d+)\.)?/, (r, m) => r.onBreakpointSet(m)],
  [/^(Reading symbols from|Starting program:) (\S+)/, (r, m, l) => r.onBinary(m, l)],
  [/^QEMU (\d+\.\d+(?:\.\d+)?)\S* monitor - type 'help'/, (r, m) => r.onMonitorBanner(m)],
  [HMP_START, (r, m, l) => r.onMonitorOutput(m, l)],
  [NOISE, () => true],
  [/^(?:#|\/\/|```|~~~|\$ |% )/, () => true],
  // gdb echoes what was typed after asynchronous output without a fresh prompt.
  [COMMANDS_WITHOUT_PROMPT, (r, m, l) => r.command(m.input, l)],
];

type CommandHandler = (r: TranscriptReader, m: RegExpExecArray, l: LLine) => void;

/** Typed gdb commands that change what the reader knows; others are only seen. */
const COMMAND_HANDLERS: ReadonlyArray<[RegExp, CommandHandler]> = [
  [/^set\s+non-stop\s+(on|off|1|0)$/, (r, m) => r.setNonStop(m[1] === 'on' || m[1] === '1')],
  // With the scheduler locked, an all-stop `continue` runs the selected thread only.
  [/^set\s+scheduler-locking\s+(on|off|step|replay)$/, (r, m) => r.setSchedulerLocked(m[1] === 'on')],
  [/^(?:(?:run|r|start|starti)(?:\s|$)|attach\s+\d+)/, (r) => r.newRun()],
  [/^thread\s+(\d+)$/, (r, m) => r.selectThread(Number(m[1]))],
  [/^(?:p|print|output|call|inspect)(?:\s*\/(\w+))?\s+(.+)$/, (r, m, l) => r.print(m[2].trim(), l)],
  [/^(?:list|l)\s+(?:\*?\s*)?([^\s:,]+\.[a-z]+):/, (r, m) => r.listFile(m[1])],
  [/^(?:continue|cont|c|fg)((?:\s+(?:-a|&|\d+))*)$/, (r, m, l) => r.continueCommand(/-a/.test(m[1]), l)],
  [/^(?:next|step|finish|stepi|nexti|si|ni|until|advance|n|s|u)(?:\s+\S+)?$/, (r, _m, l) => r.step(l)],
  [/^(?:kill|k)$/, (r) => r.kill()],
  [/^detach\b/, (r, _m, l) => r.detach(l)],
  [/^(?:break|b|br|tbreak|hbreak|thbreak)\s+(.+)$/, (r, m) => r.breakCommand(m[1].trim())],
  [/^info\s+threads?$/, (r) => r.infoThreads()],
  // Not a gdb command: the monitor's, typed or pasted without its "(qemu)" prompt.
  [/^info\s+migrate\b/, (r, m, l) => r.monitor(m.input, l)],
];

class TranscriptReader {
  readonly warnings: WarningList;
  /* what stage 3 gets */
  private readonly slots: Slot[] = [];
  private readonly threads = new Map<number, Thread>();
  private readonly bps = new Map<number, BreakpointDef>();
  /** Source lines gdb showed (stops, `list`), by sourceKey(file). */
  private readonly sources = new Map<string, Map<number, string>>();
  /** State names the transcript looked up (`p (MigrationStatus) 4`), by number. */
  private readonly names = new Map<number, string>();
  private qemuVersion: string | null = null;
  private binary: string | null = null;
  private runIndex = -1;

  /* threads and who is where */
  private readonly lwpAuthoritative = new Set<number>();
  private readonly byLwp = new Map<number, number>();
  private readonly stopped = new Map<number, Stop>();
  private current: number | null = null;
  /** The gdb id the next `[New Thread]` gets, while every thread since `run` was shown. */
  private inferNext: number | null = null;
  private nonStop = false;
  private schedulerLocked = false;
  /** The line from which two gdb sessions interleave. */
  private mixedFrom: number | null = null;
  /** The first line that may start a second session: a second `run`/`attach` or "Reading symbols from". */
  private secondStart: number | null = null;
  private starts = { runs: 0, symbols: 0 };
  private lineNow = 0;

  /* the command whose output follows */
  private pendingBreakSpec: string | null = null;
  private lastPrint: { print: Print; stop: Stop | null; tid: number | null } | null = null;
  private pendingResume: Pending | null = null;
  private pendingThreadSwitch: { prev: number | null } | null = null;
  private stepping: number | null = null;
  private inThreadTable = false;
  private elidedSince = false;
  /** The file whose lines gdb prints next (a stop's, a frame's, `list FILE:N`'s). */
  private listingFile: string | null = null;

  /* the monitor's side */
  private readonly hmpQueue: { query: string; line: number }[] = [];
  private hmpBlock: { line: number; lines: string[] } | null = null;
  private readonly qmpQueue: QmpRequest[] = [];
  private queryCounter = 0;

  /* is this a transcript at all */
  private seenSignature = false;
  private signature: LLine | null = null;
  private first: LLine | null = null;
  private lineCount = 0;

  constructor(private readonly source: string, warnings: WarningList) {
    this.warnings = warnings;
  }

  line(l: LLine): void {
    this.lineCount++;
    this.lineNow = l.line;
    if (this.first === null && l.text.trim() !== '') this.first = l;
    if (this.signature === null && SIGNATURE.test(l.text)) this.signature = l;

    let t = l.text;
    const trimmed = t.trim();

    // The monitor's output block runs until a line that is not one of its fields.
    if (this.hmpBlock) {
      if (trimmed !== '' && HMP_LINE.test(t) && !/^\(qemu\)/.test(trimmed)) {
        this.hmpBlock.lines.push(t);
        return;
      }
      this.closeHmpBlock();
    }
    if (trimmed === '') {
      this.inThreadTable = false;
      return;
    }
    if (ELISION.test(trimmed)) {
      this.elidedSince = true;
      this.inThreadTable = false;
      // Threads may have been cut: the next [New Thread] no longer tells its gdb id.
      this.inferNext = null;
      return;
    }

    // Prompts: "(gdb) cmd", sometimes several on one line when output was empty.
    if (/^\(gdb\)/.test(trimmed)) {
      this.seenSignature = true;
      let rest = trimmed;
      while (/^\(gdb\)/.test(rest)) rest = rest.replace(/^\(gdb\)\s?/, '');
      if (/^\(qemu\)/.test(rest)) {
        this.monitor(rest.replace(/^\(qemu\)\s?/, ''), l);
        return;
      } else if (rest.trim().startsWith('{') || ASYNC_AFTER_PROMPT.test(rest)) {
        // Asynchronous output lands right after a prompt that was already printed.
        t = rest;
      } else {
        this.command(rest, l);
        return;
      }
    }
    if (/^\(qemu\)/.test(trimmed)) {
      this.monitor(trimmed.replace(/^\(qemu\)\s?/, ''), l);
      return;
    }
    const tt = t.trim();

    // QMP JSON, possibly marked with -> / <-.
    const jsonText = tt.replace(JSON_PREFIX, '');
    if (jsonText.startsWith('{')) {
      let obj: unknown;
      try {
        obj = JSON.parse(jsonText);
      } catch {
        this.warnings.push({ line: l.line, text: clip(tt), reason: 'looks like QMP JSON but does not parse' });
        return;
      }
      this.onJson(obj, l);
      return;
    }

    for (const [pattern, handle, untrimmed] of LINE_HANDLERS) {
      const m = pattern.exec(untrimmed ? t : tt);
      if (m && handle(this, m, l) !== false) return;
    }
    this.warnings.push({ line: l.line, text: clip(tt), reason: 'not understood (prose?): skipped' });
  }

  finish(opts: { qemuVersion?: string | null }): GdbTranscript {
    this.closeHmpBlock();
    this.unanswered();
    this.applyPendingResume();
    if (!this.signature) {
      const hint = this.kinds.length ? `; it looks like ${KIND_NAMES[this.kinds[0]]}` : '';
      const first = this.first;
      throw new MigraceError('IMPORT',
        `${this.source}:${first?.line ?? 1}: not a GDB transcript: no "(gdb)" prompt, breakpoint hit or "$N = " value in its ${this.lineCount} lines${hint} (line ${first?.line ?? 1}: ${JSON.stringify(clip(first?.text ?? ''))})`);
    }
    if (!this.seenSignature) {
      throw new MigraceError('IMPORT', `${this.source}:${this.signature.line}: not a GDB transcript: no prompt, hit or value could be read`);
    }
    const version = opts.qemuVersion ?? this.qemuVersion;
    if (this.mixedFrom !== null) {
      for (const slot of this.slots) if (slot.type === 'stop' && slot.stop.line >= this.mixedFrom) slot.stop.mixed = true;
    }
    return finalize({
      slots: this.slots, threads: this.threads, bps: this.bps, table: tableIdFor(version), warnings: this.warnings,
      names: this.names, sources: this.sources, version,
      title: this.source, qemuVersion: this.qemuVersion, binary: this.binary, variant: variantOf(this.binary, version),
      runs: this.runIndex + 1,
    });
  }

  /** What the file's head looks like, for the error when it is not a transcript. */
  kinds: ReturnType<typeof sniffKinds> = [];

  /* ---- threads ---- */

  private tidOf(gdbId: number): number {
    // gdb numbers threads from 1; an id past any pid is a damaged line, and would not fit the store's integers.
    if (!Number.isSafeInteger(gdbId) || gdbId > MAX_PID) {
      throw new MigraceError('IMPORT', `${this.source}: line ${this.lineNow}: thread id ${String(gdbId).slice(0, 30)} is not one gdb gives (1 to ${MAX_PID})`);
    }
    return gdbId + RUN_OFFSET * Math.max(0, this.runIndex);
  }

  private label(tid: number | null): string {
    if (tid === null) return 'an unknown thread';
    const t = this.threads.get(tid);
    return `thread ${tid % RUN_OFFSET}${t?.name ? ` "${t.name}"` : ''}`;
  }

  private thread(gdbId: number, given: number | null = null, name: string | null = null, authoritative = true): number {
    const tid = this.tidOf(gdbId);
    const lwp = given !== null && given > MAX_PID ? null : given;
    if (lwp !== given) this.warnings.push({ line: this.lineNow, text: clip(`LWP ${given}`), reason: 'an LWP no Linux thread can have: the thread is kept without it' });
    const t = this.threads.get(tid) ?? { tid, gdb_id: gdbId, lwp: null, name: null };
    if (authoritative && lwp !== null && t.lwp !== null && t.lwp !== lwp && this.lwpAuthoritative.has(tid)) {
      // gdb never gives one id to two threads of a run: this line is another gdb's.
      this.interleaved(`thread ${gdbId} is LWP ${t.lwp} and LWP ${lwp}`);
    }
    if (lwp !== null && (authoritative || !this.lwpAuthoritative.has(tid))) {
      if (t.lwp !== null && t.lwp !== lwp && this.byLwp.get(t.lwp) === tid) this.byLwp.delete(t.lwp);
      const other = this.byLwp.get(lwp);
      if (authoritative && other !== undefined && other !== tid) {
        // A guess from [New Thread] lines gave this LWP to another gdb id: gdb says otherwise.
        const o = this.threads.get(other);
        if (o && o.lwp === lwp) o.lwp = null;
      }
      t.lwp = lwp;
      this.byLwp.set(lwp, tid);
      if (authoritative) this.lwpAuthoritative.add(tid);
    }
    if (name !== null) t.name = name;
    this.threads.set(tid, t);
    return tid;
  }

  /** The thread a hit line names, else the selected one (gdb leaves the name out while one thread exists: thread 1). */
  private hitThread(m: RegExpExecArray): number {
    return m[1] ? this.thread(Number(m[1]), null, m[2] ?? null) : this.current ?? this.thread(1);
  }

  private note(text: string, line: number, tid: number | null = null): void {
    this.slots.push({ type: 'event', line, event: blank('note', tid, { text }) });
  }

  /** A print that got neither a value nor an error before the next command (or the end): cut short. */
  private unanswered(): void {
    const lp = this.lastPrint;
    if (!lp || lp.print.value !== null || this.elidedSince) return;
    this.warnings.push({ line: lp.print.line, text: clip(`p ${lp.print.expr}`), reason: 'a print with no answer after it (the transcript is cut here?): nothing taken from it' });
  }

  /* ---- stops and resumes ---- */

  private resume(tids: number[] | 'all', line: number): void {
    const list = tids === 'all' ? [...this.stopped.keys()] : tids;
    for (const tid of list) {
      const s = this.stopped.get(tid);
      if (!s) continue;
      s.releaseSlot = this.slots.length;
      this.slots.push({ type: 'release', stop: s, line });
      this.stopped.delete(tid);
    }
  }

  applyPendingResume(): void {
    if (this.pendingResume) {
      this.resume(this.pendingResume.tids, this.pendingResume.line);
      this.pendingResume = null;
    }
  }

  /** The process is gone: nothing stopped will run again. */
  private endAllStops(): void {
    this.stopped.clear();
    this.stepping = null;
  }

  private addStop(tid: number, kind: Stop['kind'], bp: number | null, frame: Frame, l: LLine): Stop {
    this.applyPendingResume();
    const prev = this.stopped.get(tid);
    if (prev) {
      if (!this.elidedSince) {
        this.warnings.push({ line: l.line, text: clip(l.text), reason: `${this.label(tid)} stopped again without a resume since line ${prev.line}: taken as resumed just before` });
      }
      this.resume([tid], l.line);
    }
    if (!this.nonStop) {
      // All-stop: a stop selects the thread that stopped.
      this.current = tid;
    } else {
      // Non-stop: `run`/`attach` selected thread 1, and nothing shown has changed that (the `run` may be cut).
      this.current ??= this.thread(1);
    }
    const stop: Stop = { tid, line: l.line, kind, bp, frame, prints: [], releaseSlot: null, text: l.text, mixed: false };
    this.listingFile = frame.file ?? (bp !== null ? this.bps.get(bp)?.file ?? null : null);
    this.slots.push({ type: 'stop', stop, line: l.line });
    this.stopped.set(tid, stop);
    this.elidedSince = false;
    return stop;
  }

  /* ---- line handlers (LINE_HANDLERS) ---- */

  onBreakpointHit(m: RegExpExecArray, l: LLine): void {
    this.seenSignature = true;
    const frame = parseFrameText(m[5]);
    const tid = this.hitThread(m);
    if (!frame) {
      this.warnings.push({ line: l.line, text: clip(m.input), reason: 'breakpoint hit whose location is not understood' });
      return;
    }
    this.addStop(tid, 'breakpoint', Number(m[4]), frame, l);
  }

  onWatchpointHit(m: RegExpExecArray, l: LLine): void {
    this.seenSignature = true;
    const tid = this.hitThread(m);
    this.addStop(tid, 'watchpoint', Number(m[4]), NO_FRAME(), l);
    this.note(`${this.label(tid)} hit ${m[3].toLowerCase()} ${m[4]} on ${m[5]}`, l.line, tid);
  }

  onInterrupted(m: RegExpExecArray, l: LLine): void {
    const tid = this.thread(Number(m[1]), null, m[2] ?? null);
    this.addStop(tid, 'interrupt', null, NO_FRAME(), l);
    this.stepping = tid;
  }

  onSignal(m: RegExpExecArray, l: LLine): void {
    const tid = this.hitThread(m);
    this.addStop(tid, 'signal', null, NO_FRAME(), l);
    this.stepping = tid;
  }

  onValue(m: RegExpExecArray, l: LLine): void {
    this.seenSignature = true;
    const lp = this.lastPrint;
    if (!lp || lp.print.value !== null) {
      this.warnings.push({ line: l.line, text: clip(m.input), reason: 'a value with no print command before it (left out of the transcript?)' });
      return;
    }
    lp.print.value = m[2];
    if (lp.tid === null && this.stopped.size === 1) {
      // gdb answered, so the selected thread (never shown) is stopped: the one stopped thread.
      const [tid, stop] = [...this.stopped][0];
      this.current = tid;
      stop.prints.push(lp.print);
      Object.assign(lp, { tid, stop });
    }
    if (lp.print.kind === 'lookup') {
      const fact = nameFact(lp.print.expr, m[2]);
      if (fact) this.names.set(fact[0], fact[1]);
      return;
    }
    if (m[2].trim() === '<optimized out>' && lp.print.kind !== 'other') {
      this.warnings.push({ line: l.line, text: clip(`p ${lp.print.expr}`), reason: `${lp.print.expr} is <optimized out> here: the build kept no value for it, nothing is read from it` });
    }
    if (lp.stop) {
      // Where a print that is not a probe value becomes a note: at its own place in time.
      this.slots.push({ type: 'print', stop: lp.stop, print: lp.print, line: l.line });
    } else {
      this.note(`p ${lp.print.expr} = ${m[2]} (${this.label(lp.tid)}, not stopped at a probe)`, l.line, lp.tid);
    }
  }

  onSwitchedTo(m: RegExpExecArray): void {
    this.current = this.thread(Number(m[1]), Number(m[2]));
    this.pendingThreadSwitch = null;
  }

  /** All-stop's report of the thread that stopped: the hit line that follows names it. */
  onSwitchedToLwp(m: RegExpExecArray): void {
    const known = this.byLwp.get(Number(m[1]));
    if (known !== undefined) this.current = known;
  }

  onNewThread(m: RegExpExecArray): void {
    const lwp = Number(m[1]);
    if (this.inferNext !== null && !this.byLwp.has(lwp)) this.thread(this.inferNext++, lwp, null, false);
  }

  onThreadExited(m: RegExpExecArray, l: LLine): void {
    const tid = this.byLwp.get(Number(m[1]));
    if (tid === undefined) return;
    this.stopped.delete(tid);
    this.note(`${this.label(tid)} (LWP ${m[1]}) exited`, l.line, tid);
  }

  onInferiorGone(m: RegExpExecArray, l: LLine): void {
    this.applyPendingResume();
    this.endAllStops();
    this.note(`process ${m[1]} ${m[2]}`, l.line);
  }

  onThreadTableHeader(): void {
    this.inThreadTable = true;
  }

  /** An `info threads` row: who the thread is, and whether it runs or where it stands. */
  onThreadRow(m: RegExpExecArray, l: LLine): boolean {
    if (!this.inThreadTable && !m[1]) return false;
    const lwp = Number(m[3] ?? m[4] ?? m[5]);
    const tid = this.thread(Number(m[2]), lwp, m[6] ?? null);
    if (m[1]) this.current = tid;
    const where = m[7].trim();
    const s = this.stopped.get(tid);
    if (where === '(running)') {
      if (s) {
        if (!this.elidedSince) this.warnings.push({ line: l.line, text: clip(m.input), reason: `${this.label(tid)} is running, but the transcript never resumed it since line ${s.line}: taken as resumed here` });
        this.resume([tid], l.line);
      }
    } else {
      // Where the thread stands: a stop the transcript did not show, or one it moved on from unseen.
      const frame = parseFrameText(where);
      const relevant = frame !== null && (frame.func === 'migrate_set_state' || QUERY_FUNCS.has(frame.func ?? ''));
      if (s && frame && s.frame.func === null) {
        s.frame = frame;
      } else if (s && frame && movedOn(s.frame, frame)) {
        if (!this.elidedSince) this.warnings.push({ line: l.line, text: clip(m.input), reason: `${this.label(tid)} stands in ${frame.func} now, not where it stopped at line ${s.line}: it ran on unseen, taken as resumed here` });
        this.resume([tid], l.line);
        if (relevant) this.addStop(tid, 'seen', null, frame, l);
      } else if (!s && relevant) {
        if (!this.elidedSince) this.warnings.push({ line: l.line, text: clip(m.input), reason: `${this.label(tid)} is stopped in ${frame!.func}, a stop the transcript does not show: placed here` });
        this.addStop(tid, 'seen', null, frame!, l);
      }
    }
    return true;
  }

  onBacktraceFrame(m: RegExpExecArray, l: LLine): void {
    if (m[1] === '0') this.listingFile = parseFrameText(m[2])?.file ?? this.listingFile;
    if (this.stepping === null || m[1] !== '0') return;
    const frame = parseFrameText(m[2]);
    if (frame) this.placeStep(frame, l);
    this.stepping = null;
  }

  /** The frame line gdb prints after a step or an interrupt. */
  onSteppedFrame(m: RegExpExecArray, l: LLine): boolean {
    if (this.stepping === null) return false;
    const frame = parseFrameText(m.input);
    if (!frame) return false;
    this.placeStep(frame, l);
    this.stepping = null;
    return true;
  }

  private placeStep(frame: Frame, l: LLine): void {
    const s = this.stopped.get(this.stepping!);
    if (s && s.frame.func === null) s.frame = frame;
    else if (!s) this.addStop(this.stepping!, 'step', null, frame, l);
  }

  /** The command before failed: it had no effect. */
  onCommandFailed(): void {
    this.pendingResume = null;
    this.lastPrint = null;
    if (this.pendingThreadSwitch) {
      this.current = this.pendingThreadSwitch.prev;
      this.pendingThreadSwitch = null;
    }
    if (this.stepping !== null && !this.stopped.has(this.stepping)) this.stepping = null;
  }

  onBreakpointSet(m: RegExpExecArray): void {
    this.bps.set(Number(m[1]), { spec: this.pendingBreakSpec, addr: m[2].toLowerCase(), file: m[3] ?? null, line: m[4] ? sourceLine(m[4]) : null });
    this.pendingBreakSpec = null;
  }

  onBinary(m: RegExpExecArray, l: LLine): void {
    if (m[1] === 'Reading symbols from' && ++this.starts.symbols === 2) this.secondStart ??= l.line;
    this.binary ??= m[2].replace(/\.{3}$/, '');
  }

  /** A source line gdb printed: at a stop, or in a `list`. */
  onSourceLine(m: RegExpExecArray): void {
    const n = sourceLine(m[1]);
    if (n === null || this.listingFile === null || /: No such file or directory\.$/.test(m[2])) return;
    const key = sourceKey(this.listingFile);
    let lines = this.sources.get(key);
    if (!lines) this.sources.set(key, (lines = new Map()));
    lines.set(n, m[2]);
  }

  listFile(file: string): void {
    this.listingFile = file;
  }

  /**
   * Two gdb sessions pasted together: from the first line that may have
   * started the second one, no stop can be given to a thread of either.
   */
  private interleaved(why: string): void {
    if (this.mixedFrom !== null) return;
    this.mixedFrom = Math.min(this.secondStart ?? this.lineNow, this.lineNow);
    this.warnings.push({
      line: this.lineNow, text: why,
      reason: `two gdb sessions interleave (${why}), from line ${this.mixedFrom} on: their stops cannot be told apart and are kept as notes`,
    });
  }

  onMonitorBanner(m: RegExpExecArray): void {
    this.qemuVersion ??= m[1];
  }

  onMonitorOutput(m: RegExpExecArray, l: LLine): void {
    this.hmpBlock = { line: l.line, lines: [m.input] };
  }

  /* ---- the monitor: HMP and QMP ---- */

  private closeHmpBlock(): void {
    const block = this.hmpBlock;
    if (!block) return;
    const body = block.lines.join('\n');
    const q = this.hmpQueue.shift();
    if (q) {
      this.slots.push({ type: 'event', line: block.line, event: blank('query-end', null, { query: q.query }) });
    } else {
      this.warnings.push({ line: block.line, text: clip(block.lines[0]), reason: 'monitor output with no "(qemu) info migrate" before it: kept as a reply to no known query' });
    }
    this.slots.push({
      type: 'event', line: block.line,
      event: blank('reply', null, replyData(q?.query ?? null, 'info migrate', body)),
    });
    this.hmpBlock = null;
  }

  monitor(cmd: string, l: LLine): void {
    this.closeHmpBlock();
    const c = cmd.trim();
    if (c === '') return;
    if (/^info\s+migrate$/.test(c)) {
      this.applyPendingResume();
      const query = `hmp-${++this.queryCounter}`;
      this.hmpQueue.push({ query, line: l.line });
      this.slots.push({ type: 'event', line: l.line, event: blank('query-begin', null, { query }) });
    } else {
      this.note(`monitor: ${c}`, l.line);
    }
  }

  private onJson(obj: unknown, l: LLine): void {
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
      this.warnings.push({ line: l.line, text: clip(l.text), reason: 'JSON that is not a QMP message' });
      return;
    }
    const o = obj as Record<string, unknown>;
    if (typeof o.QMP === 'object' && o.QMP !== null) {
      const v = (o.QMP as { version?: { qemu?: { major?: number; minor?: number; micro?: number } } }).version?.qemu;
      if (v && typeof v.major === 'number') this.qemuVersion ??= `${v.major}.${v.minor ?? 0}.${v.micro ?? 0}`;
      return;
    }
    const idOf = (): string | null => (o.id === undefined ? null : typeof o.id === 'string' ? o.id : JSON.stringify(o.id));
    if (typeof o.execute === 'string' || typeof o['exec-oob'] === 'string') {
      const execute = (o.execute ?? o['exec-oob']) as string;
      const id = idOf();
      let query: string | null = null;
      if (execute === 'query-migrate') {
        query = id ?? `qmp-${++this.queryCounter}`;
        this.applyPendingResume();
        this.slots.push({ type: 'event', line: l.line, event: blank('query-begin', null, { query }) });
      } else if (execute !== 'qmp_capabilities') {
        this.note(`QMP ${execute}${o.arguments ? ` ${JSON.stringify(o.arguments)}` : ''}`, l.line);
      }
      this.qmpQueue.push({ execute, id, query, line: l.line });
      return;
    }
    if ('return' in o || 'error' in o) {
      const id = idOf();
      let i = id === null ? 0 : this.qmpQueue.findIndex((r) => r.id === id);
      if (i < 0) i = this.qmpQueue.findIndex((r) => r.id === null);
      const req = i >= 0 && i < this.qmpQueue.length ? this.qmpQueue.splice(i, 1)[0] : null;
      const ret = o.return;
      const looksLikeMigrate = typeof ret === 'object' && ret !== null && !Array.isArray(ret) &&
        (Object.keys(ret).length === 0 || 'status' in ret);
      if (req?.execute === 'query-migrate' || (!req && looksLikeMigrate && 'status' in (ret as object))) {
        this.applyPendingResume();
        if (req?.query) this.slots.push({ type: 'event', line: l.line, event: blank('query-end', null, { query: req.query }) });
        else this.warnings.push({ line: l.line, text: clip(l.text), reason: 'a query-migrate reply with no request before it: kept as a reply to no known query' });
        this.slots.push({ type: 'event', line: l.line, event: blank('reply', null, replyData(req?.query ?? null, 'query-migrate', obj)) });
      }
      return;
    }
    if (typeof o.event === 'string') {
      const data = o.data as Record<string, unknown> | undefined;
      const status = data && typeof data.status === 'string' ? ` ${data.status}` : '';
      this.note(`QMP event ${o.event}${status}`, l.line);
      return;
    }
    this.warnings.push({ line: l.line, text: clip(l.text), reason: 'JSON that is not a QMP message' });
  }

  /* ---- commands (COMMAND_HANDLERS) ---- */

  command(cmd: string, l: LLine): void {
    const c = cmd.trim();
    if (c === '') return;
    // A command ends what the previous one printed.
    this.inThreadTable = false;
    this.unanswered();
    this.lastPrint = null;
    this.pendingThreadSwitch = null;
    for (const [pattern, handle] of COMMAND_HANDLERS) {
      const m = pattern.exec(c);
      if (m) {
        handle(this, m, l);
        return;
      }
    }
  }

  setNonStop(on: boolean): void {
    this.nonStop = on;
  }

  setSchedulerLocked(on: boolean): void {
    this.schedulerLocked = on;
  }

  newRun(): void {
    if (++this.starts.runs === 2) this.secondStart ??= this.lineNow;
    this.applyPendingResume();
    this.endAllStops();
    this.runIndex++;
    this.inferNext = 2;
    this.current = this.thread(1);
  }

  selectThread(gdbId: number): void {
    this.applyPendingResume();
    this.pendingThreadSwitch = { prev: this.current };
    this.current = this.thread(gdbId);
  }

  print(expr: string, l: LLine): void {
    this.applyPendingResume();
    const print: Print = { expr, kind: printKind(expr), value: null, line: l.line, used: false };
    const stop = this.current !== null ? this.stopped.get(this.current) ?? null : null;
    if (stop) stop.prints.push(print);
    this.lastPrint = { print, stop, tid: this.current };
  }

  continueCommand(allThreads: boolean, l: LLine): void {
    this.applyPendingResume();
    const all = allThreads || (!this.nonStop && !this.schedulerLocked);
    this.pendingResume = { tids: all ? 'all' : this.current !== null ? [this.current] : [], line: l.line };
  }

  step(l: LLine): void {
    this.applyPendingResume();
    if (this.current === null) return;
    this.pendingResume = { tids: this.nonStop ? [this.current] : 'all', line: l.line };
    this.stepping = this.current;
  }

  kill(): void {
    this.applyPendingResume();
    this.endAllStops();
  }

  detach(l: LLine): void {
    this.applyPendingResume();
    this.resume('all', l.line);
  }

  breakCommand(spec: string): void {
    this.pendingBreakSpec = spec;
  }

  infoThreads(): void {
    this.applyPendingResume();
    this.inThreadTable = true;
  }
}

/** Whether a thread shown at `now` has left the place it stopped at. */
function movedOn(stop: Frame, now: Frame): boolean {
  if (stop.func !== now.func) return true;
  if (stop.srcLine !== null && now.srcLine !== null && stop.srcLine !== now.srcLine) return true;
  return stop.pc !== null && now.pc !== null && stop.pc !== now.pc;
}

/* ------------------------------------------------------------------------ */
/* The stages wired together */

/** A transcript read line by line (see lines.ts). */
export class GdbTranscriptImport implements LineSink<GdbTranscript> {
  readonly maxLine = MAX_LINE;
  private readonly warnings = new WarningList();
  private readonly reader: TranscriptReader;
  private readonly lines: LogicalLines;
  private nonBlank = 0;

  constructor(private readonly opts: GdbImportOptions = {}) {
    this.reader = new TranscriptReader(opts.source ?? 'input', this.warnings);
    this.lines = new LogicalLines(this.warnings, (l) => this.reader.line(l));
  }

  begin(head: string): void {
    const source = this.opts.source ?? 'input';
    const bin = binaryReason(head);
    if (bin) throw new MigraceError('IMPORT', `${source}: ${bin}: not a GDB transcript (a compressed file is read only when it is gzip)`);
    this.reader.kinds = sniffKinds(head).filter((k) => k !== 'gdb');
  }

  line(text: string, n: number): void {
    if (this.nonBlank === 0 && text.trim() !== '') this.nonBlank++;
    this.lines.push(text, n);
  }

  /** Too long to be a transcript's line: it stays an empty line, so the numbering holds. */
  tooLong(n: number, length: number, head: string): void {
    this.nonBlank++;
    this.warnings.push({ line: n, text: clipLong(head, length), reason: `line of ${length} characters: too long for a transcript line, skipped` });
    this.lines.push('', n);
  }

  finish(): GdbTranscript {
    if (this.nonBlank === 0) throw new MigraceError('IMPORT', `${this.opts.source ?? 'input'}: empty file: not a GDB transcript`);
    this.lines.end();
    return this.reader.finish({ qemuVersion: this.opts.qemuVersion });
  }
}

export function parseGdbTranscript(text: string, opts: GdbImportOptions = {}): GdbTranscript {
  return readText(new GdbTranscriptImport(opts), text);
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
