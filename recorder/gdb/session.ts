/**
 * GdbSession: one gdb process driven over GDB/MI (mi3), meant for non-stop
 * control of a multi-threaded inferior.
 *
 * - Every record is stamped on arrival (process.hrtime.bigint()) and numbered
 *   (`seq`, the order gdb printed it).
 * - Command answers and async events are delivered in that order. A new
 *   thread's event waits for its `-thread-info` (LWP, name) and everything
 *   behind it waits too, so no listener sees a thread stop before it exists.
 * - gdb and every inferior it starts are registered with the reaper. gdb 13
 *   sets PTRACE_O_EXITKILL on programs it starts, so a killed gdb normally
 *   takes its inferior along; the session kills it anyway (a gdb that dies
 *   between fork and ptrace setup, or one that is hung, does not). A process
 *   it attached to is left group-stopped (state T) by a killed gdb; the
 *   session sends it SIGCONT.
 */
import { statSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { procStartTime, tracerPid } from '../../trace/proc.js';
import { execa } from 'execa';
import { MigraceError } from '../../trace/errors.js';
import { gdbDebugDirOptions } from '../debug-dirs.js';
import { ledgerAddProcess, ledgerRemoveProcess } from '../ledger.js';
import { dieWithParent, findProgram, isAlive, track, waitGone } from '../reaper.js';
import { sleep } from '../../trace/async.js';
import { shellQuote } from '../../trace/shell-quote.js';
import {
  MiParseError,
  MiTuple,
  miQuote,
  parseMiLine,
  type MiRecord,
  type MiResultClass,
} from './mi-parser.js';

// ---------------------------------------------------------------- types

export interface Frame {
  level: number | null;
  addr: string | null;
  func: string | null;
  file: string | null;
  fullname: string | null;
  line: number | null;
  /** The shared library, when there is no debug info. */
  from: string | null;
  /** Arguments as gdb printed them (in stops and `-thread-info` frames). */
  args: Array<{ name: string; value: string }> | null;
}

/** Where gdb put a breakpoint or one of its locations, and whether it is enabled. */
interface BreakpointPlace {
  enabled: boolean;
  /** An address; a breakpoint's own may be `<MULTIPLE>` or `<PENDING>`. */
  addr: string;
  func: string | null;
  file: string | null;
  fullname: string | null;
  line: number | null;
}

export interface BreakpointLocation extends BreakpointPlace {
  /** "1" for a single-location breakpoint, "1.1", "1.2", ... otherwise. */
  number: string;
}

export interface Breakpoint extends BreakpointPlace {
  number: number;
  type: string;
  disp: string;
  times: number;
  cond: string | null;
  originalLocation: string | null;
  /** Every code location, also for a single-location breakpoint. */
  locations: BreakpointLocation[];
}

export interface ThreadInfo {
  id: number;
  targetId: string;
  lwp: number | null;
  name: string | null;
  state: string;
  core: number | null;
  frame: Frame | null;
}

export interface Instruction {
  address: string;
  funcName: string | null;
  offset: number | null;
  inst: string;
}

interface EventBase {
  /** Arrival order of the record this event came from. */
  seq: number;
  /** process.hrtime.bigint() when the record arrived. */
  at: bigint;
}

export interface StoppedEvent extends EventBase {
  kind: 'stopped';
  /** null for the stops gdb reports after attach. */
  reason: string | null;
  threadId: number | null;
  bkptno: number | null;
  /** Which location of a multi-location breakpoint (gdb 13+). */
  locno: number | null;
  disp: string | null;
  frame: Frame | null;
  stoppedThreads: number[] | 'all';
  signalName: string | null;
  signalMeaning: string | null;
  /** Decoded: gdb prints exit codes in octal ("012" is 10). */
  exitCode: number | null;
  core: number | null;
  results: MiTuple;
}

export interface RunningEvent extends EventBase {
  kind: 'running';
  threadId: number | 'all';
}

export interface ThreadCreatedEvent extends EventBase {
  kind: 'thread-created';
  id: number;
  groupId: string | null;
  lwp: number | null;
  /** Often still the parent's name: a new thread renames itself later. */
  name: string | null;
}

export interface ThreadExitedEvent extends EventBase {
  kind: 'thread-exited';
  id: number;
  groupId: string | null;
  lwp: number | null;
  name: string | null;
}

export interface ThreadGroupStartedEvent extends EventBase {
  kind: 'thread-group-started';
  groupId: string;
  pid: number;
}

export interface ThreadGroupExitedEvent extends EventBase {
  kind: 'thread-group-exited';
  groupId: string;
  pid: number | null;
  /** null when the process was killed or detached, not exited. */
  exitCode: number | null;
}

export interface BreakpointCreatedEvent extends EventBase {
  kind: 'breakpoint-created';
  breakpoint: Breakpoint;
}

export interface BreakpointModifiedEvent extends EventBase {
  kind: 'breakpoint-modified';
  breakpoint: Breakpoint;
}

export interface BreakpointDeletedEvent extends EventBase {
  kind: 'breakpoint-deleted';
  number: number;
}

export interface StreamEvent extends EventBase {
  kind: 'stream';
  stream: 'console' | 'target' | 'log';
  text: string;
}

export interface ExitEvent extends EventBase {
  kind: 'exit';
  code: number | null;
  signal: string | null;
  /** true when shutdown() asked for it. */
  expected: boolean;
}

export type GdbEvent =
  | StoppedEvent
  | RunningEvent
  | ThreadCreatedEvent
  | ThreadExitedEvent
  | ThreadGroupStartedEvent
  | ThreadGroupExitedEvent
  | BreakpointCreatedEvent
  | BreakpointModifiedEvent
  | BreakpointDeletedEvent
  | StreamEvent
  | ExitEvent;

export type GdbEventKind = GdbEvent['kind'];
export type GdbEventOf<K extends GdbEventKind> = Extract<GdbEvent, { kind: K }>;

/** The answer to a command. */
export interface MiResult {
  class: MiResultClass;
  results: MiTuple;
  token: number;
  seq: number;
  at: bigint;
}

/** A record as it arrived, for recorders that want everything. */
export interface StampedRecord {
  record: MiRecord;
  line: string;
  seq: number;
  at: bigint;
}

export interface DebugEntry {
  at: bigint;
  /** send: a command; recv: a raw record; console/target/log: decoded stream text; stderr; unparsed; note. */
  dir: 'send' | 'recv' | 'console' | 'target' | 'log' | 'stderr' | 'unparsed' | 'note';
  text: string;
}

export interface GdbSessionOptions {
  /** Default "gdb" from PATH. */
  gdbPath?: string;
  /** Per-command timeout; default 10 s. */
  commandTimeoutMs?: number;
  /** Set at start; default /dev/null so the inferior never touches the MI pipes. null: leave gdb's default. */
  inferiorTty?: string | null;
  /** Extra environment for gdb (and so for the inferior). */
  env?: Record<string, string>;
  cwd?: string;
  debug?: (entry: DebugEntry) => void;
  /** Ask `-thread-info` about each new thread before reporting it; default true. */
  threadDetails?: boolean;
  /** Events kept for waitFor({since}); default 10,000. */
  historySize?: number;
}

export interface EvaluateOptions {
  thread?: number;
  frame?: number;
  timeoutMs?: number;
}

export interface BreakpointOptions {
  condition?: string;
  temporary?: boolean;
  /** Only this gdb thread stops there. */
  thread?: number;
  /** Keep the breakpoint pending if the location is not known yet. */
  pending?: boolean;
}

// ---------------------------------------------------------------- helpers

const CONTROL = /[\u0000-\u001f\u007f]/;

function refuseControl(text: string, what: string): void {
  if (typeof text !== 'string') throw new MigraceError('BAD_INPUT', `${what} must be a string`);
  const m = CONTROL.exec(text);
  if (m) {
    const code = m[0].charCodeAt(0);
    const name = code === 10 ? 'a newline' : code === 13 ? 'a carriage return' : code === 9 ? 'a tab' : `control character 0x${code.toString(16).padStart(2, '0')}`;
    throw new MigraceError(
      'BAD_INPUT',
      `${what} contains ${name} at position ${m.index + 1}; GDB/MI commands are single lines (a newline would start a second command): ${JSON.stringify(text)}`,
    );
  }
}

function nonEmpty(text: string, what: string): void {
  refuseControl(text, what);
  if (text.trim() === '') throw new MigraceError('BAD_INPUT', `${what} is empty`);
}

function threadIdArg(id: number, what = 'thread id'): number {
  if (!Number.isSafeInteger(id) || id < 1) throw new MigraceError('BAD_INPUT', `${what} must be a positive integer, got ${String(id)}`);
  return id;
}

/**
 * A program path gdb can hand to /bin/sh unchanged. With startup-with-shell
 * on, gdb starts the inferior as `$SHELL -c "exec PROGRAM ARGS"`: ARGS are
 * ours (shellQuote), but PROGRAM is gdb's own text. gdb 13 single-quotes it
 * only when it contains one of ' ! " ( ) $ \ & ; < > space tab newline (and
 * then writes `!` as `\!`, which sh keeps literally inside quotes); a path with
 * | ` * ? ~ # [ ] { } = and the like goes to the shell bare: `a|b` runs `a`
 * piped into `b`, `*` globs. So only paths made of [A-Za-z0-9_./+,:@%-] pass
 * (not starting with `-`, which `exec` could read as an option).
 */
const SHELL_SAFE_PATH = /^[A-Za-z0-9_./+,:@%-]+$/;

/** Refuse (BAD_INPUT, naming the path) a program path gdb's `exec PROGRAM` would let the shell interpret. Call it before running a target. */
export function assertShellSafePath(path: string): void {
  if (typeof path !== 'string' || path === '') throw new MigraceError('BAD_INPUT', 'the program path is empty');
  const bad = [...path].find((c) => !SHELL_SAFE_PATH.test(c));
  if (bad !== undefined) {
    throw new MigraceError('BAD_INPUT',
      `program path ${JSON.stringify(path)} contains ${JSON.stringify(bad)}: gdb starts programs through /bin/sh ("exec PROGRAM") and does not quote every shell character; use a path of letters, digits and _ . / + , : @ % - only (copy or link the binary)`);
  }
  if (path.startsWith('-')) {
    throw new MigraceError('BAD_INPUT', `program path ${JSON.stringify(path)} starts with "-": the shell's exec would read it as an option; use ./${path}`);
  }
}

/** A process's name (/proc/PID/comm), or null. */
function readComm(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() || null;
  } catch {
    return null;
  }
}

function signalQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    /* already gone */
  }
}

function optNum(t: MiTuple, key: string): number | null {
  const s = t.optString(key);
  if (s === undefined || !/^-?\d+$/.test(s)) return null;
  return Number(s);
}

function optStr(t: MiTuple, key: string): string | null {
  return t.optString(key) ?? null;
}

export function parseFrame(t: MiTuple): Frame {
  const argList = t.optList('args');
  let args: Frame['args'] = null;
  if (argList) {
    args = argList.items.flatMap((a) =>
      a instanceof MiTuple && typeof a.get('name') === 'string'
        ? [{ name: a.string('name'), value: typeof a.get('value') === 'string' ? a.string('value') : '' }]
        : [],
    );
  }
  return {
    level: optNum(t, 'level'),
    addr: optStr(t, 'addr'),
    func: optStr(t, 'func'),
    file: optStr(t, 'file'),
    fullname: optStr(t, 'fullname'),
    line: optNum(t, 'line'),
    from: optStr(t, 'from'),
    args,
  };
}

function parsePlace(t: MiTuple): BreakpointPlace {
  return {
    enabled: t.optString('enabled') !== 'n',
    addr: t.optString('addr') ?? '',
    func: optStr(t, 'func'),
    file: optStr(t, 'file'),
    fullname: optStr(t, 'fullname'),
    line: optNum(t, 'line'),
  };
}

function parseLocation(t: MiTuple, fallbackNumber: string): BreakpointLocation {
  return { number: t.optString('number') ?? fallbackNumber, ...parsePlace(t) };
}

/** A `bkpt={...}` tuple; mi3 nests the locations of a multi-location breakpoint in `locations=[...]`. */
export function parseBreakpoint(t: MiTuple): Breakpoint {
  const number = t.int('number');
  const place = parsePlace(t);
  const nested = t.optList('locations');
  let locations: BreakpointLocation[];
  if (nested) locations = nested.tuples('locations').map((l, i) => parseLocation(l, `${number}.${i + 1}`));
  else if (place.addr === '' || place.addr === '<PENDING>') locations = [];
  else locations = [parseLocation(t, String(number))];
  return {
    number,
    type: t.optString('type') ?? 'breakpoint',
    disp: t.optString('disp') ?? 'keep',
    ...place,
    times: optNum(t, 'times') ?? 0,
    cond: optStr(t, 'cond'),
    originalLocation: optStr(t, 'original-location'),
    locations,
  };
}

/** LWP from a target-id: `Thread 0x7f.. (LWP 1234)`, `LWP 1234`, or `process 1234` before libthread_db. */
export function lwpOf(targetId: string): number | null {
  const m = /\bLWP (\d+)\b/.exec(targetId) ?? /^process (\d+)$/.exec(targetId);
  return m ? Number(m[1]) : null;
}

export function parseThreadInfo(t: MiTuple): ThreadInfo {
  const targetId = t.optString('target-id') ?? '';
  const frame = t.optTuple('frame');
  return {
    id: t.int('id'),
    targetId,
    lwp: lwpOf(targetId),
    name: optStr(t, 'name'),
    state: t.optString('state') ?? 'unknown',
    core: optNum(t, 'core'),
    frame: frame ? parseFrame(frame) : null,
  };
}

/** gdb prints exit codes with "0%o". */
function octalExitCode(s: string | undefined): number | null {
  if (s === undefined || !/^[0-7]+$/.test(s)) return null;
  return Number.parseInt(s, 8);
}

// ---------------------------------------------------------------- session

interface Pending {
  token: number;
  command: string;
  resolve: (r: MiResult) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  /** Answered at once, not in order: used by the session's own lookups the queue may be waiting on. */
  internal: boolean;
}

interface QueueItem {
  ready: boolean;
  deliver: () => void;
}

interface Inferior {
  groupId: string;
  pid: number;
  startTime: string | null;
  /** Started by this session (run), so it must not outlive it. */
  owned: boolean;
  exited: boolean;
  seq: number;
  untrack: (() => void) | null;
}

type Listener = (e: GdbEvent) => void;

function spawnGdb(path: string, env: Record<string, string>, cwd: string | undefined) {
  // SIGTERM when migrace dies: gdb quits as on Ctrl-D, killing what it ran and detaching from what it attached to.
  const cmd = dieWithParent(path, ['--interpreter=mi3', '-nx', '-q', ...gdbDebugDirOptions()], 'TERM');
  return execa(cmd.file, cmd.args, {
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: false,
    reject: false,
    env,
    cwd,
    // Its own process group: gdb forks helpers of its own (the ptrace feature check stops a forked gdb with
    // SIGSTOP); killed before it reaps one, gdb leaves it stopped for ever. onExit ends the group.
    detached: true,
  });
}

export class GdbSession {
  private readonly child: ReturnType<typeof spawnGdb>;
  private readonly opts: Required<Pick<GdbSessionOptions, 'commandTimeoutMs' | 'threadDetails' | 'historySize'>> &
    GdbSessionOptions;
  private readonly debugFn: ((e: DebugEntry) => void) | undefined;
  private readonly originalShell: string | undefined;
  private nextToken = 0;
  private arrivedSeq = 0;
  private readonly pending = new Map<number, Pending>();
  private readonly queue: QueueItem[] = [];
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly anyListeners = new Set<Listener>();
  private readonly recordListeners = new Set<(r: StampedRecord) => void>();
  private readonly history: GdbEvent[] = [];
  private readonly threads = new Map<number, { groupId: string | null; lwp: number | null; name: string | null }>();
  /** Every process gdb reported, in order: a group (i1) is reused by each run. */
  private readonly inferiors = new Map<number, Inferior>();
  private partial: Buffer[] = [];
  private readonly decoder = new TextDecoder('utf-8');
  private stderrTail: string[] = [];
  private asyncMode = false;
  private attaching: { own: boolean } | null = null;
  private exitInfo: { code: number | null; signal: string | null } | null = null;
  private finalized = false;
  private stdoutClosed = false;
  private closing = false;
  private shutdownPromise: Promise<void> | null = null;
  private resolveClosed!: () => void;
  /** Resolves when gdb has exited and its output is processed. */
  readonly closed: Promise<void>;
  readonly gdbPid: number;
  private readonly untrackGdb: () => void;
  private readonly gdbStartTime: string | null;

  private constructor(opts: GdbSessionOptions) {
    this.opts = {
      commandTimeoutMs: 10_000,
      threadDetails: true,
      historySize: 10_000,
      ...opts,
    };
    this.debugFn = opts.debug;
    this.closed = new Promise((r) => (this.resolveClosed = r));
    const baseEnv: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined) baseEnv[k] = v;
    Object.assign(baseEnv, opts.env ?? {});
    this.originalShell = baseEnv.SHELL;
    // gdb starts the inferior through $SHELL (`exec PROGRAM ARGS`); pinning a
    // POSIX sh makes shellQuote() right for ARGS whatever the user's login
    // shell is. PROGRAM is NOT quoted by us: gdb quotes it only when it holds
    // one of ' ! " ( ) $ \ & ; < > or a blank, and passes | ` * ? ~ # [ ] { }
    // to the shell as they are. Callers check the path with
    // assertShellSafePath() before running a target. The inferior gets the
    // original SHELL back in start().
    baseEnv.SHELL = '/bin/sh';
    this.child = spawnGdb(opts.gdbPath ?? 'gdb', baseEnv, opts.cwd);
    this.gdbPid = this.child.pid ?? -1;
    this.untrackGdb = this.gdbPid > 0 ? track(this.gdbPid, 'gdb') : () => undefined;
    this.gdbStartTime = this.gdbPid > 0 ? procStartTime(this.gdbPid) : null;
    this.child.stdout.on('data', (chunk: Buffer) => this.onStdout(chunk));
    this.child.stderr.on('data', (chunk: Buffer) => this.onStderr(chunk));
    // Writes after gdb died fail with EPIPE; the exit path reports that.
    this.child.stdin.on('error', (e: Error) => this.log('note', `gdb stdin: ${e.message}`));
    this.child.on('exit', (code: number | null, signal: NodeJS.Signals | null) => this.onExit(code, signal));
    this.child.stdout.on('close', () => {
      this.stdoutClosed = true;
      if (this.exitInfo) this.finalize();
    });
  }

  /** Spawn gdb and check that it speaks MI; rejects with GDB_MISSING if there is no gdb. */
  static async start(opts: GdbSessionOptions = {}): Promise<GdbSession> {
    // Looked up first: started through setpriv, a missing gdb would only show as setpriv's exit code.
    const notFound = (): MigraceError => new MigraceError('GDB_MISSING',
      `gdb not found${opts.gdbPath && opts.gdbPath !== 'gdb' ? ` at ${opts.gdbPath}` : ''}: install the Debian package gdb`);
    const found = findProgram(opts.gdbPath ?? 'gdb', opts.env?.PATH);
    if (found === null) throw notFound();
    const s = new GdbSession({ ...opts, gdbPath: found });
    if (s.gdbPid <= 0) {
      const r = await s.child;
      const code = (r as { code?: string }).code;
      if (code === 'ENOENT') throw notFound();
      throw new MigraceError('GDB_MISSING', `cannot start gdb (${opts.gdbPath ?? 'gdb'}): ${r.message ?? code}`);
    }
    try {
      try {
        await s.execute('-list-features');
      } catch (e) {
        // Not gdb at all (a wrong --gdb): its first answer never comes, and it exits by itself.
        // A gdb killed by a signal before it answered is a killed gdb, said as such.
        if (e instanceof MigraceError && e.code === 'GDB_EXITED' && !s.exitInfo?.signal) {
          throw new MigraceError('GDB_MISSING', `${found} does not speak GDB/MI: ${e.message.replace(/^gdb /, 'it ')} (is --gdb a gdb?)`);
        }
        throw e;
      }
      if (s.originalShell === undefined) await s.cli('unset environment SHELL');
      else if (s.originalShell !== '/bin/sh') await s.setInferiorEnv('SHELL', s.originalShell);
      const tty = opts.inferiorTty === undefined ? '/dev/null' : opts.inferiorTty;
      if (tty !== null) await s.setInferiorTty(tty);
    } catch (e) {
      await s.shutdown().catch(() => undefined);
      throw e;
    }
    return s;
  }

  // ------------------------------------------------------------ output side

  private log(dir: DebugEntry['dir'], text: string, at: bigint = process.hrtime.bigint()): void {
    if (!this.debugFn) return;
    try {
      this.debugFn({ at, dir, text });
    } catch {
      /* a broken logger must not break the session */
    }
  }

  private onStdout(chunk: Buffer): void {
    const at = process.hrtime.bigint();
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl < 0) break;
      let bytes = chunk.subarray(start, nl);
      if (this.partial.length > 0) {
        bytes = Buffer.concat([...this.partial, bytes]);
        this.partial = [];
      }
      start = nl + 1;
      this.onLine(this.decoder.decode(bytes), at);
    }
    if (start < chunk.length) this.partial.push(Buffer.from(chunk.subarray(start)));
  }

  private onStderr(chunk: Buffer): void {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line === '') continue;
      this.stderrTail.push(line);
      if (this.stderrTail.length > 20) this.stderrTail.shift();
      this.log('stderr', line);
    }
  }

  private onLine(rawLine: string, at: bigint): void {
    const line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine;
    if (line === '') return;
    let record: MiRecord;
    try {
      record = parseMiLine(line);
    } catch (e) {
      this.log('unparsed', `${line}  (${e instanceof Error ? e.message : String(e)})`, at);
      return;
    }
    if (record.type === 'prompt') return;
    const seq = ++this.arrivedSeq;
    if (record.type === 'console' || record.type === 'target' || record.type === 'log') this.log(record.type, record.text, at);
    else this.log('recv', line, at);
    for (const fn of this.recordListeners) this.callSafely(() => fn({ record, line, seq, at }));
    try {
      this.dispatch(record, seq, at);
    } catch (e) {
      // A record with an unexpected shape is logged, not fatal: one odd
      // notification must not end a recording.
      if (e instanceof MiParseError) this.log('unparsed', `${line}  (${e.message})`, at);
      else throw e;
    }
  }

  private dispatch(record: MiRecord, seq: number, at: bigint): void {
    switch (record.type) {
      case 'console':
      case 'target':
      case 'log':
        this.enqueueEvent({ kind: 'stream', stream: record.type, text: record.text, seq, at });
        return;
      case 'result': {
        const p = record.token === null ? undefined : this.pending.get(record.token);
        if (!p) {
          this.log('note', `answer with no waiting command (token ${record.token ?? 'none'}, ^${record.class})`, at);
          return;
        }
        const settle = (): void => this.settle(p, record.class, record.results, seq, at);
        if (p.internal) settle();
        else this.enqueue({ ready: true, deliver: settle });
        return;
      }
      case 'exec':
        if (record.class === 'stopped') this.enqueueEvent(this.stoppedEvent(record.results, seq, at));
        else if (record.class === 'running') {
          const id = record.results.optString('thread-id') ?? 'all';
          this.enqueueEvent({ kind: 'running', threadId: id === 'all' ? 'all' : Number(id), seq, at });
        }
        return;
      case 'notify':
        this.onNotify(record.class, record.results, seq, at);
        return;
      case 'status':
        return;
    }
  }

  private stoppedEvent(r: MiTuple, seq: number, at: bigint): StoppedEvent {
    const frame = r.optTuple('frame');
    const st = r.get('stopped-threads');
    let stoppedThreads: number[] | 'all' = [];
    if (st === 'all') stoppedThreads = 'all';
    else if (st !== undefined && typeof st !== 'string' && st.kind === 'list') stoppedThreads = st.strings('stopped-threads').map(Number);
    const tid = optNum(r, 'thread-id');
    if (Array.isArray(stoppedThreads) && stoppedThreads.length === 0 && tid !== null) stoppedThreads = [tid];
    return {
      kind: 'stopped',
      seq,
      at,
      reason: optStr(r, 'reason'),
      threadId: tid,
      bkptno: optNum(r, 'bkptno'),
      locno: optNum(r, 'locno'),
      disp: optStr(r, 'disp'),
      frame: frame ? parseFrame(frame) : null,
      stoppedThreads,
      signalName: optStr(r, 'signal-name'),
      signalMeaning: optStr(r, 'signal-meaning'),
      exitCode: octalExitCode(r.optString('exit-code')),
      core: optNum(r, 'core'),
      results: r,
    };
  }

  private onNotify(cls: string, r: MiTuple, seq: number, at: bigint): void {
    switch (cls) {
      case 'thread-group-started': {
        const groupId = r.string('id');
        const pid = r.int('pid');
        const own = this.attaching ? this.attaching.own : true;
        // Registered right now, before anything else can fail: from here on
        // a crash of gdb or of this process must not leave the inferior behind.
        // Not ours to kill: listed so a later migrace can resume it if we and gdb both die with it stopped.
        if (!own) ledgerAddProcess('attached', pid, 'attached process');
        const untrack = own ? track(pid, `gdb inferior (${groupId})`) : () => ledgerRemoveProcess('attached', pid);
        this.inferiors.set(seq, { groupId, pid, startTime: procStartTime(pid), owned: own, exited: false, seq, untrack });
        this.enqueueEvent({ kind: 'thread-group-started', groupId, pid, seq, at });
        return;
      }
      case 'thread-group-exited': {
        const groupId = r.string('id');
        let inf: Inferior | undefined;
        for (const i of this.inferiors.values()) if (i.groupId === groupId && !i.exited) inf = i;
        if (inf) {
          inf.exited = true;
          // A detached process lives on; only a gone one leaves the registry.
          if (!isAlive(inf.pid)) inf.untrack?.();
        }
        this.enqueueEvent({
          kind: 'thread-group-exited',
          groupId,
          pid: inf?.pid ?? null,
          exitCode: octalExitCode(r.optString('exit-code')),
          seq,
          at,
        });
        return;
      }
      case 'thread-created': {
        const id = r.int('id');
        const groupId = optStr(r, 'group-id');
        this.threads.set(id, { groupId, lwp: null, name: null });
        const ev: ThreadCreatedEvent = { kind: 'thread-created', id, groupId, lwp: null, name: null, seq, at };
        if (!this.opts.threadDetails || !this.asyncMode || this.exitInfo) {
          this.enqueueEvent(ev);
          return;
        }
        const item: QueueItem = { ready: false, deliver: () => this.emit(ev) };
        this.queue.push(item);
        this.threadInfo(id, { internal: true })
          .then((list) => {
            const t = list.find((x) => x.id === id);
            if (t) {
              ev.lwp = t.lwp;
              ev.name = t.name;
            }
          })
          .catch((e: unknown) => this.log('note', `-thread-info ${id} for a new thread failed: ${e instanceof Error ? e.message : String(e)}`))
          .finally(() => {
            item.ready = true;
            this.drain();
          });
        return;
      }
      case 'thread-exited': {
        const id = r.int('id');
        const groupId = optStr(r, 'group-id');
        const ev: ThreadExitedEvent = { kind: 'thread-exited', id, groupId, lwp: null, name: null, seq, at };
        // Read the cache at delivery: the thread's own -thread-info may still be in flight.
        this.enqueue({
          ready: true,
          deliver: () => {
            const known = this.threads.get(id);
            ev.lwp = known?.lwp ?? null;
            ev.name = known?.name ?? null;
            this.threads.delete(id);
            this.emit(ev);
          },
        });
        return;
      }
      case 'breakpoint-created':
      case 'breakpoint-modified': {
        const breakpoint = parseBreakpoint(r.tuple('bkpt'));
        this.enqueueEvent({ kind: cls, breakpoint, seq, at });
        return;
      }
      case 'breakpoint-deleted':
        this.enqueueEvent({ kind: 'breakpoint-deleted', number: r.int('id'), seq, at });
        return;
      default:
        return; // library-loaded, thread-group-added, cmd-param-changed, ...: available through onRecord
    }
  }

  private settle(p: Pending, cls: MiResultClass, results: MiTuple, seq: number, at: bigint): void {
    if (!this.pending.delete(p.token)) return;
    clearTimeout(p.timer);
    if (cls === 'error') {
      // gdb's messages can run over lines ("warning: ...\nptrace: ..."): an error is one line.
      const msg = (results.optString('msg') ?? '(no message)').split('\n').map((l) => l.trim()).filter(Boolean).join('; ');
      p.reject(new MigraceError('GDB_ERROR', `gdb: ${msg} (command: ${p.command})`));
    } else {
      p.resolve({ class: cls, results, token: p.token, seq, at });
    }
  }

  private enqueueEvent(ev: GdbEvent): void {
    this.enqueue({ ready: true, deliver: () => this.emit(ev) });
  }

  private enqueue(item: QueueItem): void {
    if (this.queue.length === 0 && item.ready) item.deliver();
    else {
      this.queue.push(item);
      this.drain();
    }
  }

  private drain(): void {
    while (this.queue.length > 0 && this.queue[0]!.ready) this.queue.shift()!.deliver();
  }

  private callSafely(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      // Like an EventEmitter, a throwing listener is a bug that must surface;
      // unlike one, it must not leave this session's parsing half-done.
      queueMicrotask(() => {
        throw e;
      });
    }
  }

  private emit(ev: GdbEvent): void {
    this.history.push(ev);
    // Trimmed in batches: one splice per event would shift the whole array each time.
    if (this.history.length > this.opts.historySize * 1.25) this.history.splice(0, this.history.length - this.opts.historySize);
    for (const fn of [...(this.listeners.get(ev.kind) ?? [])]) this.callSafely(() => fn(ev));
    for (const fn of [...this.anyListeners]) this.callSafely(() => fn(ev));
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.exitInfo) return;
    this.exitInfo = { code, signal };
    this.untrackGdb();
    this.log('note', `gdb exited (${signal ? `signal ${signal}` : `code ${code}`})`);
    // Whatever gdb left behind is dealt with now, not at some later
    // shutdown() that may never come.
    for (const inf of this.inferiors.values()) {
      if (inf.exited) continue;
      if (inf.startTime !== null && procStartTime(inf.pid) !== inf.startTime) continue;
      if (!inf.owned) {
        // Not ours to kill; but gdb stopped its threads and nobody will resume them.
        signalQuietly(inf.pid, 'SIGCONT');
        continue;
      }
      signalQuietly(inf.pid, 'SIGKILL');
      void waitGone(inf.pid, 5000).then((gone) => {
        if (gone) inf.untrack?.();
      });
    }
    // What gdb forked and left (a helper it stopped, a program it started): gdb's process group, migrace's alone.
    if (this.child.pid !== undefined) signalQuietly(-this.child.pid, 'SIGKILL');
    // stdout may close before or after 'exit'; an inferior that inherited
    // the pipe could hold it open, so do not wait for it for long.
    if (this.stdoutClosed) this.finalize();
    else setTimeout(() => this.finalize(), 300).unref();
  }

  private finalize(): void {
    if (this.finalized) return;
    this.finalized = true;
    if (this.partial.length > 0) {
      const rest = Buffer.concat(this.partial);
      this.partial = [];
      this.onLine(this.decoder.decode(rest), process.hrtime.bigint());
    }
    const info = this.exitInfo ?? { code: null, signal: null };
    const how = info.signal ? `signal ${info.signal}` : `code ${info.code}`;
    const tail = this.stderrTail.length > 0 ? `; its last words: ${this.stderrTail.slice(-3).join(' | ')}` : '';
    for (const p of [...this.pending.values()]) {
      this.pending.delete(p.token);
      clearTimeout(p.timer);
      p.reject(new MigraceError('GDB_EXITED', `gdb exited (${how}) before answering ${p.command}${tail}`));
    }
    this.enqueueEvent({ kind: 'exit', code: info.code, signal: info.signal, expected: this.closing, seq: ++this.arrivedSeq, at: process.hrtime.bigint() });
    // Nothing more will come: flush whatever still waits (their lookups were rejected above).
    for (const item of this.queue) item.ready = true;
    this.drain();
    this.resolveClosed();
  }

  // ------------------------------------------------------------ events

  /** Listen to one kind of event; returns the function that stops listening. */
  on<K extends GdbEventKind>(kind: K, fn: (e: GdbEventOf<K>) => void): () => void {
    let set = this.listeners.get(kind);
    if (!set) this.listeners.set(kind, (set = new Set()));
    const l = fn as Listener;
    set.add(l);
    return () => {
      set.delete(l);
    };
  }

  onAny(fn: (e: GdbEvent) => void): () => void {
    this.anyListeners.add(fn);
    return () => {
      this.anyListeners.delete(fn);
    };
  }

  /** Every record as it arrives, before ordering and enrichment (library-loaded and the like included). */
  onRecord(fn: (r: StampedRecord) => void): () => void {
    this.recordListeners.add(fn);
    return () => {
      this.recordListeners.delete(fn);
    };
  }

  /** The seq of the last record that arrived: pass it as `since` to catch events that follow. */
  mark(): number {
    return this.arrivedSeq;
  }

  /**
   * The first event matching `predicate`. With `since`, events already
   * delivered with a larger seq count too: a command's answer and the stop it
   * causes can arrive in one read, before the caller gets to wait.
   */
  waitFor<E extends GdbEvent>(
    predicate: (e: GdbEvent) => e is E,
    timeoutMs: number,
    description: string,
    opts?: { since?: number },
  ): Promise<E>;
  waitFor(predicate: (e: GdbEvent) => boolean, timeoutMs: number, description: string, opts?: { since?: number }): Promise<GdbEvent>;
  waitFor(predicate: (e: GdbEvent) => boolean, timeoutMs: number, description: string, opts: { since?: number } = {}): Promise<GdbEvent> {
    const since = opts.since;
    if (since !== undefined) {
      for (const e of this.history) if (e.seq > since && predicate(e)) return Promise.resolve(e);
    }
    return new Promise<GdbEvent>((resolve, reject) => {
      let off = (): void => undefined;
      const timer = setTimeout(() => {
        off();
        reject(new MigraceError('GDB_TIMEOUT', `timed out after ${timeoutMs} ms waiting for ${description}`));
      }, timeoutMs);
      off = this.onAny((e) => {
        if (since !== undefined && e.seq <= since) return;
        let hit = false;
        try {
          hit = predicate(e);
        } catch (err) {
          clearTimeout(timer);
          off();
          reject(err);
          return;
        }
        if (hit) {
          clearTimeout(timer);
          off();
          resolve(e);
        } else if (e.kind === 'exit') {
          clearTimeout(timer);
          off();
          reject(new MigraceError('GDB_EXITED', `gdb exited (${e.signal ? `signal ${e.signal}` : `code ${e.code}`}) while waiting for ${description}`));
        }
      });
      if (this.finalized && this.queue.length === 0) {
        clearTimeout(timer);
        off();
        reject(new MigraceError('GDB_EXITED', `gdb has exited; cannot wait for ${description}`));
      }
    });
  }

  /** The next (or, with since, a recent) stop of a thread (any thread if null). */
  waitForStop(threadId: number | null, timeoutMs = 10_000, opts?: { since?: number; reason?: string }): Promise<StoppedEvent> {
    return this.waitFor(
      (e): e is StoppedEvent =>
        e.kind === 'stopped' &&
        (threadId === null || e.threadId === threadId) &&
        (opts?.reason === undefined || e.reason === opts.reason),
      timeoutMs,
      `${threadId === null ? 'a thread' : `thread ${threadId}`} to stop${opts?.reason ? ` (${opts.reason})` : ''}`,
      opts,
    );
  }

  get exited(): boolean {
    return this.exitInfo !== null;
  }

  /** The pid of the inferior this session started or attached to, while it lives. */
  get inferiorPid(): number | null {
    let found: Inferior | null = null;
    for (const inf of this.inferiors.values()) if (!inf.exited && (!found || inf.seq > found.seq)) found = inf;
    return found?.pid ?? null;
  }

  // ------------------------------------------------------------ commands

  /**
   * Send one MI command and wait for its answer. `^error` rejects with
   * GDB_ERROR (gdb's message), no answer in time with GDB_TIMEOUT, gdb's
   * death with GDB_EXITED. Control characters are refused (BAD_INPUT).
   */
  execute(command: string, opts: { timeoutMs?: number; internal?: boolean } = {}): Promise<MiResult> {
    try {
      nonEmpty(command, 'GDB/MI command');
    } catch (e) {
      return Promise.reject(e);
    }
    if (this.exitInfo || !this.child.stdin.writable) {
      return Promise.reject(new MigraceError('GDB_EXITED', `gdb has exited; cannot send ${command}`));
    }
    const timeoutMs = opts.timeoutMs ?? this.opts.commandTimeoutMs;
    const token = ++this.nextToken;
    return new Promise<MiResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (!this.pending.delete(token)) return;
        reject(new MigraceError('GDB_TIMEOUT', `gdb did not answer ${command} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(token, { token, command, resolve, reject, timer, internal: opts.internal ?? false });
      this.log('send', `${token}${command}`);
      this.child.stdin.write(`${token}${command}\n`);
    });
  }

  /** Run a CLI command through MI; resolves with the console text it printed. */
  async cli(command: string, timeoutMs?: number): Promise<string> {
    nonEmpty(command, 'gdb command');
    const parts: string[] = [];
    const off = this.on('stream', (e) => {
      if (e.stream === 'console') parts.push(e.text);
    });
    try {
      await this.execute(`-interpreter-exec console ${miQuote(command)}`, { timeoutMs });
    } finally {
      off();
    }
    return parts.join('');
  }

  /**
   * mi-async and non-stop (before the inferior runs), no paging or
   * questions, QEMU's signals passed silently, and so are the signals that
   * ask a program to end (kill, Ctrl-C, a hangup): without that gdb stops
   * the thread that got one and the program never sees it (SIGINT is not
   * even passed by default). -exec-interrupt does not use SIGINT in
   * non-stop mode, so stopping threads still works.
   */
  async setNonStop(): Promise<void> {
    await this.execute('-gdb-set mi-async on');
    await this.execute('-gdb-set non-stop on');
    await this.execute('-gdb-set pagination off');
    await this.execute('-gdb-set confirm off');
    await this.cli('handle SIGUSR1 SIGUSR2 SIGPIPE nostop noprint pass');
    // Also what an attached QEMU's owner sends: libvirt stops QEMU with SIGTERM after a save or a migration.
    await this.cli('handle SIGTERM SIGINT SIGHUP SIGQUIT nostop noprint pass');
    this.asyncMode = true;
  }

  /**
   * The program to run (and its symbols). The path reaches gdb intact (MI
   * quoting), but `run` hands it to /bin/sh without full quoting: check it
   * with assertShellSafePath() first when the program will be started.
   */
  async fileExecAndSymbols(path: string): Promise<void> {
    nonEmpty(path, 'program path');
    await this.execute(`-file-exec-and-symbols ${miQuote(path)}`);
  }

  /**
   * gdb 13 hands the argument string to /bin/sh (startup-with-shell), so each
   * argument is shell-quoted. With startup-with-shell off gdb 13 only splits
   * on whitespace and keeps quotes literally: an argument with a space could
   * not survive, hence the explicit `on`.
   */
  async setInferiorArgs(args: readonly string[]): Promise<void> {
    args.forEach((a, i) => refuseControl(a, `inferior argument ${i + 1}`));
    await this.execute('-gdb-set startup-with-shell on');
    const line = args.map(shellQuote).join(' ');
    await this.execute(line === '' ? '-exec-arguments' : `-exec-arguments ${line}`);
  }

  async setInferiorEnv(name: string, value: string): Promise<void> {
    if (typeof name !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new MigraceError('BAD_INPUT', `environment variable name ${JSON.stringify(name)} is not a valid name`);
    }
    refuseControl(value, `value of ${name}`);
    // `set environment` drops leading blanks of the value; refuse rather than change it.
    if (/^[ \t]/.test(value)) {
      throw new MigraceError('BAD_INPUT', `value of ${name} starts with a blank, which gdb's "set environment" would drop`);
    }
    await this.cli(`set environment ${name}=${value}`);
  }

  /**
   * The inferior's stdin/stdout/stderr. A regular file works as a log, but
   * it must exist: gdb opens it without O_CREAT, and a missing one makes the
   * run fail with "During startup program exited with code 1". The file
   * also gets gdb's "Failed to set controlling terminal" warning.
   */
  async setInferiorTty(path = '/dev/null'): Promise<void> {
    nonEmpty(path, 'inferior terminal');
    try {
      statSync(path);
    } catch {
      throw new MigraceError('BAD_INPUT', `inferior terminal ${path} does not exist; gdb opens it without creating it: create the file first`);
    }
    await this.execute(`-inferior-tty-set ${miQuote(path)}`);
  }

  /** Start the program; resolves once the process exists, with its pid (already registered with the reaper). */
  async run(timeoutMs?: number): Promise<{ pid: number; groupId: string }> {
    const before = this.arrivedSeq;
    await this.execute('-exec-run', { timeoutMs });
    let latest: Inferior | null = null;
    for (const inf of this.inferiors.values()) if (inf.seq > before && (!latest || inf.seq > latest.seq)) latest = inf;
    if (!latest) throw new MigraceError('GDB_ERROR', 'gdb started the program but did not report its pid (no =thread-group-started)');
    return { pid: latest.pid, groupId: latest.groupId };
  }

  /**
   * Attach to a running process. In non-stop mode gdb answers first and
   * stops the threads afterwards (`*stopped` per thread; thread 1's has no
   * reason). The process is not ours to kill unless `own` is set: shutdown
   * detaches from it.
   */
  async attach(pid: number, opts: { own?: boolean } = {}): Promise<void> {
    threadIdArg(pid, 'pid');
    // A process has one tracer: say who it is rather than relay ptrace's EPERM.
    const tracer = tracerPid(pid);
    if (tracer !== null && tracer !== 0) {
      const comm = readComm(tracer);
      throw new MigraceError('TARGET_MISSING', `process ${pid} is already traced by process ${tracer}${comm ? ` (${comm})` : ''}; a process has one tracer: detach that one first, or record with --backend uprobe (root), which does not trace`);
    }
    this.attaching = { own: opts.own ?? false };
    try {
      await this.execute(`-target-attach ${pid}`);
    } finally {
      this.attaching = null;
    }
  }

  async detach(): Promise<void> {
    await this.execute('-target-detach');
  }

  /** Returns the breakpoint with every location gdb resolved the place to. */
  async insertBreakpoint(location: string, opts: BreakpointOptions = {}): Promise<Breakpoint> {
    nonEmpty(location, 'breakpoint location');
    const parts = ['-break-insert'];
    if (opts.temporary) parts.push('-t');
    if (opts.pending) parts.push('-f');
    if (opts.condition !== undefined) {
      nonEmpty(opts.condition, 'breakpoint condition');
      parts.push('-c', miQuote(opts.condition));
    }
    if (opts.thread !== undefined) parts.push('-p', String(threadIdArg(opts.thread)));
    // "--" keeps a location that starts with '-' from being read as an option.
    parts.push('--', miQuote(location));
    const r = await this.execute(parts.join(' '));
    return parseBreakpoint(r.results.tuple('bkpt'));
  }

  async deleteBreakpoint(number: number): Promise<void> {
    threadIdArg(number, 'breakpoint number');
    await this.execute(`-break-delete ${number}`);
  }

  async continueThread(id: number): Promise<MiResult> {
    return this.execute(`-exec-continue --thread ${threadIdArg(id)}`);
  }

  async continueAll(): Promise<MiResult> {
    return this.execute('-exec-continue --all');
  }

  /** In non-stop mode an interrupted thread stops with signal-name "0", not SIGINT. */
  async interrupt(id: number | 'all'): Promise<MiResult> {
    return this.execute(id === 'all' ? '-exec-interrupt --all' : `-exec-interrupt --thread ${threadIdArg(id)}`);
  }

  /** The value as gdb prints it. The thread must be stopped. */
  async evaluate(expr: string, opts: EvaluateOptions = {}): Promise<string> {
    nonEmpty(expr, 'expression');
    const sel: string[] = [];
    if (opts.thread !== undefined) sel.push(`--thread ${threadIdArg(opts.thread)}`);
    if (opts.thread !== undefined || opts.frame !== undefined) {
      const f = opts.frame ?? 0;
      if (!Number.isSafeInteger(f) || f < 0) throw new MigraceError('BAD_INPUT', `frame must be a non-negative integer, got ${String(f)}`);
      sel.push(`--frame ${f}`);
    }
    const r = await this.execute(`-data-evaluate-expression ${sel.join(' ')}${sel.length ? ' ' : ''}${miQuote(expr)}`, {
      timeoutMs: opts.timeoutMs,
    });
    return r.results.string('value');
  }

  async stack(thread: number): Promise<Frame[]> {
    const r = await this.execute(`-stack-list-frames --thread ${threadIdArg(thread)}`);
    return r.results.list('stack').tuples('stack').map(parseFrame);
  }

  /** All threads (or one), read now: names change after creation. */
  async threadInfo(id?: number, opts: { internal?: boolean } = {}): Promise<ThreadInfo[]> {
    const cmd = id === undefined ? '-thread-info' : `-thread-info ${threadIdArg(id)}`;
    const r = await this.execute(cmd, { internal: opts.internal });
    const list = r.results.list('threads').tuples('threads').map(parseThreadInfo);
    for (const t of list) {
      const known = this.threads.get(t.id);
      this.threads.set(t.id, { groupId: known?.groupId ?? null, lwp: t.lwp, name: t.name });
    }
    return list;
  }

  async disassemble(functionName: string): Promise<Instruction[]> {
    nonEmpty(functionName, 'function name');
    const r = await this.execute(`-data-disassemble -a ${miQuote(functionName)} -- 0`);
    return r.results
      .list('asm_insns')
      .tuples('asm_insns')
      .map((t) => ({
        address: t.string('address'),
        funcName: optStr(t, 'func-name'),
        offset: optNum(t, 'offset'),
        inst: t.string('inst'),
      }));
  }

  /** Kill the inferior, keep gdb. Resolves when the process is gone. */
  async kill(): Promise<void> {
    const live = [...this.inferiors.values()].filter((i) => !i.exited);
    if (live.length === 0) return;
    if (!this.exitInfo) {
      try {
        await this.cli('kill', 5000);
      } catch (e) {
        this.log('note', `gdb kill failed: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    for (const inf of live) {
      if (isAlive(inf.pid) && (inf.startTime === null || procStartTime(inf.pid) === inf.startTime)) signalQuietly(inf.pid, 'SIGKILL');
      if (!(await waitGone(inf.pid, 5000))) {
        throw new MigraceError('GDB_TIMEOUT', `inferior ${inf.pid} is still alive 5 s after SIGKILL`);
      }
      inf.exited = true;
      inf.untrack?.();
    }
  }

  /**
   * End gdb and the inferior: `-gdb-exit` (gdb kills what it started and
   * detaches from what it attached to), then SIGKILL to the inferior, SIGTERM
   * and SIGKILL to gdb. Resolves only when both are gone.
   */
  shutdown(): Promise<void> {
    this.shutdownPromise ??= this.doShutdown();
    return this.shutdownPromise;
  }

  private async doShutdown(): Promise<void> {
    this.closing = true;
    const gdbPid = this.gdbPid;
    if (gdbPid <= 0) return;
    if (!this.exitInfo) {
      try {
        await this.execute('-gdb-exit', { timeoutMs: 1500 });
      } catch {
        /* hung or already dying: signals follow */
      }
      await Promise.race([this.closed, sleep(1000)]);
    }
    const owned = [...this.inferiors.values()].filter((i) => i.owned);
    for (const inf of owned) {
      if (isAlive(inf.pid) && (inf.startTime === null || procStartTime(inf.pid) === inf.startTime)) signalQuietly(inf.pid, 'SIGKILL');
    }
    const gdbIsOurs = (): boolean => isAlive(gdbPid) && (this.gdbStartTime === null || procStartTime(gdbPid) === this.gdbStartTime);
    if (!this.exitInfo && gdbIsOurs()) {
      // A stopped gdb (kill -STOP) must run again to quit: on SIGTERM it kills what it
      // started and detaches from what it attached to, taking its breakpoints out first.
      signalQuietly(gdbPid, 'SIGCONT');
      await Promise.race([this.closed, sleep(1000)]);
    }
    if (!this.exitInfo && gdbIsOurs()) {
      signalQuietly(gdbPid, 'SIGTERM');
      await Promise.race([this.closed, sleep(1000)]);
    }
    if (!this.exitInfo && gdbIsOurs()) {
      signalQuietly(gdbPid, 'SIGKILL');
      await Promise.race([this.closed, sleep(2000)]);
    }
    const left: string[] = [];
    if (!(await waitGone(gdbPid, 3000))) left.push(`gdb ${gdbPid}`);
    for (const inf of owned) {
      if (await waitGone(inf.pid, 3000)) {
        inf.exited = true;
        inf.untrack?.();
      } else left.push(`inferior ${inf.pid}`);
    }
    // The exit event and the rejections of pending commands happen in finalize.
    await Promise.race([this.closed, sleep(1000)]);
    if (left.length > 0) throw new MigraceError('GDB_TIMEOUT', `could not end ${left.join(' and ')} after SIGKILL`);
    this.untrackGdb();
  }
}
