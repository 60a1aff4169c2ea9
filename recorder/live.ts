import { writeFileSync } from 'node:fs';
import { MigraceError, messageOf } from '../trace/errors.js';
import type { NewEvent, TraceEvent } from '../trace/schema.js';
import type { SessionWriter, TraceStore } from '../trace/store.js';
import { assertShellSafePath, GdbSession, type StoppedEvent, type ThreadInfo } from './gdb/session.js';
import type { Probe, Profile } from './probes/profile.js';
import { exitOf, processIsAlive } from '../trace/proc.js';
import { logTail } from './targets/private-dir.js';
import type { PreparedTarget } from './targets/types.js';
import { statusNamesOf } from '../trace/status.js';
import { BackendCore, EXIT_REPORT_MS, probeEvent, type RecordingBackend } from './backend.js';

/**
 * A target running under gdb in non-stop mode with a profile's probes
 * placed. Every hit becomes a trace event (values read in the stopped
 * thread); a hit handler then decides whether the thread goes on at once
 * (recording) or is held (replay). Hits are handled one at a time in the
 * order gdb reported them, which is the seq order of the trace.
 *
 * The steps every gdb-driven recording shares with the gdb-fast backend
 * (gdb-fast.ts) are the functions at the end: how errors name the target
 * (`targetName`), watching gdb and the target (`watchGdbRun`, which also
 * reports the target's exit), what a signal stop means (`isSignalStop`,
 * `onSignalStop`), loading the program (`loadTarget`), running or
 * attaching (`startTarget`), and ending (`endGdb`).
 *
 * Signals others send the target are its own business, as without gdb:
 * gdb passes the termination signals on without stopping (GdbSession), any
 * other signal stop is continued with the signal delivered, and a stop
 * signal (kill -STOP) ends the run at once, since a target frozen by
 * somebody else would otherwise keep the run waiting for its timeout. The
 * target's end is reported with its exit code or its signal, which gdb
 * says in the `*stopped,reason="exited-signalled"` that follows
 * `=thread-group-exited`.
 */

export interface ProbeHit {
  probe: Probe;
  tid: number;
  event: TraceEvent;
  /** The values as gdb printed them, by the profile's names. */
  raw: Record<string, string>;
}

export type HitDecision = 'continue' | 'hold';

/** Signals that freeze a process (job control): a run cannot wait them out. */
const STOP_SIGNALS: ReadonlySet<string> = new Set(['SIGSTOP', 'SIGTSTP', 'SIGTTIN', 'SIGTTOU']);
export type HitHandler = (hit: ProbeHit) => Promise<HitDecision> | HitDecision;

export interface LiveOptions {
  store: TraceStore;
  sessionId: number;
  writer: SessionWriter;
  target: PreparedTarget;
  profile: Profile;
  gdbPath?: string;
  progress?: (msg: string) => void;
  /** Attach to this running process instead of starting the target; it is detached, never killed, at the end. */
  attachPid?: number;
}

export interface ThreadState {
  tid: number;
  lwp: number | null;
  name: string | null;
  /** The name is read again at the first hit: a new thread carries its parent's name until it renames itself. */
  confirmed: boolean;
}

export class LiveTarget extends BackendCore implements RecordingBackend {
  readonly backend = 'gdb' as const;
  readonly gdb: GdbSession;
  readonly threads = new Map<number, ThreadState>();
  private readonly byBreakpoint = new Map<string, Probe>();
  private handler: HitHandler = () => 'continue';
  private queue: Promise<void> = Promise.resolve();
  private expectingExit = false;

  private constructor(private readonly opts: LiveOptions, gdb: GdbSession) {
    super(opts.writer);
    this.gdb = gdb;
  }

  static async start(opts: LiveOptions): Promise<LiveTarget> {
    const gdb = await GdbSession.start({ gdbPath: opts.gdbPath });
    const live = new LiveTarget(opts, gdb);
    return BackendCore.begin(live, () => live.setup());
  }


  setHandler(handler: HitHandler): void {
    this.handler = handler;
  }

  private async setup(): Promise<void> {
    const { target, profile, progress } = this.opts;
    const gdb = this.gdb;
    watchGdbRun(gdb, target, {
      fail: (e) => this.fail(e),
      expectingExit: () => this.expectingExit,
      targetExited: () => { this.exited = true; },
      thread: (id, lwp, name) => { this.noteThread(id, lwp, name, false); },
      what: targetName(target, this.opts.attachPid),
    });
    gdb.on('stopped', (stop) => {
      if (isExitStop(stop)) return;
      this.queue = this.queue.then(() => this.onStopped(stop)).catch((e) => {
        // A hit handled as the target dies fails on gdb's side ("Thread id: 1 has terminated"): the death, reported next, is the cause.
        if (this.targetGone()) return;
        this.fail(e instanceof MigraceError ? e : new MigraceError('GDB_ERROR', `handling a probe hit failed: ${messageOf(e)}`));
      });
    });
    await loadTarget(gdb, target, this.opts.attachPid);
    await this.lockProbes(target.binary, 'gdb', progress);
    for (const probe of profile.probes) {
      for (const location of probe.locations) {
        const bp = await gdb.insertBreakpoint(location);
        this.byBreakpoint.set(String(bp.number), probe);
        progress?.(`probe ${probe.name} at ${location}: ${bp.locations.length} location(s)`);
      }
    }
    this.pid = await startTarget(gdb, target, this.opts.attachPid, (t) => { this.noteThread(t.id, t.lwp, t.name, true); });
  }

  private noteThread(tid: number, lwp: number | null, name: string | null, confirmed: boolean): ThreadState {
    const known = this.threads.get(tid);
    const t: ThreadState = {
      tid, lwp: lwp ?? known?.lwp ?? null, name: name ?? known?.name ?? null, confirmed: confirmed || (known?.confirmed ?? false),
    };
    this.threads.set(tid, t);
    this.opts.writer.thread({ tid, gdb_id: tid, lwp: t.lwp, name: t.name });
    return t;
  }

  private async confirmThread(tid: number): Promise<void> {
    const known = this.threads.get(tid);
    if (known?.confirmed) return;
    const all = await this.gdb.threadInfo(tid);
    const info = all.find((t) => t.id === tid);
    this.noteThread(tid, info?.lwp ?? null, info?.name ?? null, true);
  }

  private async onStopped(stop: StoppedEvent): Promise<void> {
    if (isSignalStop(stop, this.expectingExit)) return onSignalStop(this.gdb, stop, this.opts, (e) => this.fail(e));
    if (stop.reason !== 'breakpoint-hit' || stop.bkptno === null || stop.threadId === null) return;
    const probe = this.byBreakpoint.get(String(stop.bkptno));
    if (!probe) return;
    const tid = stop.threadId;
    this.hits++;
    const t_ns = this.nsSince(stop.at);
    // Pipelined: gdb answers in order, so one round trip covers every value.
    const names = Object.keys(probe.values);
    const [texts] = await Promise.all([
      Promise.all(names.map((n) => this.gdb.evaluate(probe.values[n], { thread: tid, frame: 0 }))),
      this.confirmThread(tid),
    ]);
    const raw = Object.fromEntries(names.map((n, i) => [n, texts[i]]));
    const event = this.push(this.eventFor(probe, tid, t_ns, stop, raw));
    const decision = await this.handler({ probe, tid, event, raw });
    if (decision === 'continue') await this.gdb.continueThread(tid);
  }

  private eventFor(probe: Probe, tid: number, t_ns: number, stop: StoppedEvent, raw: Record<string, string>): NewEvent {
    const place = { pc: stop.frame?.addr ?? null, func: stop.frame?.func ?? null, file: stop.frame?.file ?? null, line: stop.frame?.line ?? null };
    const event = probeEvent(probe, tid, t_ns, this.wallAt(t_ns), place, raw, statusNamesOf(this.opts.profile),
      { current: this.currentQuery, unsolicited: () => `unsolicited-${this.hits}` });
    if (event.kind === 'query-begin') this.queryThreads.set(event.data.query, tid);
    return event;
  }

  /** Let a held thread go. */
  async release(tid: number): Promise<void> {
    await this.gdb.continueThread(tid);
  }

  /** Wait until every hit reported so far has been handled. */
  async drain(): Promise<void> {
    await this.queue;
  }

  /**
   * Stop everything: gdb and the target are gone when this resolves. An
   * attached target is detached instead (gdb removes its breakpoints), and
   * keeps running.
   */
  async shutdown(): Promise<void> {
    this.expectingExit = true;
    // Only once attached: a refused attach has nothing to detach from.
    try {
      await endGdb(this.gdb, { attached: this.opts.attachPid !== undefined && this.pid !== null && !this.exited, drain: () => this.drain(), progress: this.opts.progress });
    } finally {
      this.unlockProbes();
    }
  }

  readonly lostEvents = 0;

  sessionMeta(): Record<string, unknown> {
    return { backend: 'gdb' };
  }

  /** The next stops will be the target's own exit, not a failure. */
  expectExit(): void {
    this.expectingExit = true;
  }
}

/** What a gdb-driven run is told about gdb and the target (both gdb backends). */
export interface GdbRunHooks {
  fail(e: MigraceError): void;
  /** The target's exit (or gdb's) is the end of the scenario now, not a failure. */
  expectingExit(): boolean;
  targetExited(): void;
  thread(id: number, lwp: number | null, name: string | null): void;
  /** The target as errors name it: minimig, qemu, the attached process N. */
  what: string;
}

/** gdb's *stopped for the end of the program (MI reports an exit as a stop). */
export function isExitStop(stop: StoppedEvent): boolean {
  return stop.reason === 'exited' || stop.reason === 'exited-normally' || stop.reason === 'exited-signalled';
}

/** gdb dying or the target exiting before its time ends the run; new threads are reported. */
export function watchGdbRun(gdb: GdbSession, target: PreparedTarget, hooks: GdbRunHooks): void {
  let reported = false;
  // Once, however many of gdb's records announce it: unless the end was expected, the run fails saying how.
  const exited = (how: string): void => {
    hooks.targetExited();
    if (reported) return;
    reported = true;
    if (hooks.expectingExit()) return;
    // The log goes with the private folder when the run ends: quote it.
    const said = target.logPath ? logTail(target.logPath) : '';
    hooks.fail(new MigraceError('TARGET_EXITED', `${hooks.what} exited (${how}) before the scenario finished${said ? `; it said: ${said}` : ''}`));
  };
  gdb.on('exit', (info) => {
    if (!hooks.expectingExit()) {
      hooks.fail(new MigraceError('GDB_EXITED', `gdb exited unexpectedly (${info.signal ? `signal ${info.signal}` : `code ${info.code}`}); the session keeps what was recorded`));
    }
  });
  gdb.on('thread-created', (t) => hooks.thread(t.id, t.lwp, t.name));
  gdb.on('thread-group-exited', (g) => {
    hooks.targetExited();
    // Killed: no exit code here; the *stopped that follows names the signal.
    if (g.exitCode !== null) exited(`code ${g.exitCode}`);
    else setTimeout(() => exited('killed by a signal'), EXIT_REPORT_MS).unref();
  });
  gdb.on('stopped', (stop) => {
    if (isExitStop(stop)) exited(stop.signalName ? `signal ${stop.signalName}` : `code ${stop.exitCode ?? 0}`);
  });
}

/** The target as errors name it: minimig, qemu, or the attached process N. */
export function targetName(target: PreparedTarget, attachPid: number | undefined): string {
  return attachPid !== undefined ? `the attached process ${attachPid}` : target.info.kind;
}

/** A thread of the target stopped by a signal `handle` does not pass silently (gdb stops it and waits). */
export function isSignalStop(stop: StoppedEvent, expectingExit: boolean): stop is StoppedEvent & { threadId: number } {
  return stop.reason === 'signal-received' && stop.threadId !== null && stop.signalName !== '0' && !expectingExit;
}

/**
 * What both gdb backends do with a signal stop: a stop signal from outside
 * (kill -STOP) freezes the target, which would answer no query until the
 * run times out, so it ends the run at once; any other signal is the
 * target's and goes on to it.
 */
export async function onSignalStop(gdb: GdbSession, stop: StoppedEvent & { threadId: number }, opts: { target: PreparedTarget; attachPid?: number; progress?: (msg: string) => void }, fail: (e: MigraceError) => void): Promise<void> {
  const sig = stop.signalName ?? '?';
  if (STOP_SIGNALS.has(sig)) {
    const what = targetName(opts.target, opts.attachPid);
    fail(new MigraceError('TARGET_STOPPED', `${what} was stopped by ${sig} from outside migrace (kill -${sig.replace(/^SIG/, '')}); the session keeps what was recorded`));
    return;
  }
  opts.progress?.(`${opts.target.info.kind} thread ${stop.threadId} received ${sig}; passing it on`);
  await gdb.continueThread(stop.threadId);
}

/** Non-stop mode and the program with its arguments, environment and terminal (only the symbols for an attach). */
export async function loadTarget(gdb: GdbSession, target: PreparedTarget, attachPid: number | undefined): Promise<void> {
  await gdb.setNonStop();
  // gdb starts the program through /bin/sh, quoting only part of its path.
  if (attachPid === undefined) assertShellSafePath(target.binary);
  await gdb.fileExecAndSymbols(target.binary);
  if (attachPid !== undefined) return;
  await gdb.setInferiorArgs(target.args);
  for (const [k, v] of Object.entries(target.env)) await gdb.setInferiorEnv(k, v);
  // gdb opens the inferior's terminal without creating it; the target's own output lands here.
  writeFileSync(target.logPath, '', { flag: 'a', mode: 0o600 });
  await gdb.setInferiorTty(target.logPath);
}

/** Run the program, or attach and let every thread go on; returns the pid. */
export async function startTarget(gdb: GdbSession, target: PreparedTarget, attachPid: number | undefined, thread: (t: ThreadInfo) => void): Promise<number> {
  if (attachPid === undefined) return runProgram(gdb, target);
  // Attaching stops every thread; in non-stop mode they must be resumed explicitly.
  await gdb.attach(attachPid, { own: false });
  for (const t of await gdb.threadInfo()) thread(t);
  await gdb.continueAll();
  return attachPid;
}

/**
 * Run the program. Killed while gdb starts it, it fails -exec-run with
 * whatever gdb was doing then ("Couldn't get registers: No such
 * process"): say that the target died, and how when its zombie tells.
 */
async function runProgram(gdb: GdbSession, target: PreparedTarget): Promise<number> {
  try {
    return (await gdb.run()).pid;
  } catch (e) {
    if (!(e instanceof MigraceError) || e.code !== 'GDB_ERROR') throw e;
    const pid = gdb.inferiorPid;
    const how = pid === null ? null : exitOf(pid);
    const gone = pid === null || how !== null || !processIsAlive(pid);
    if (!gone) throw e;
    const said = e.message.replace(/ \(command: [^)]*\)$/, '');
    throw new MigraceError('TARGET_EXITED', `${target.info.kind} exited${how ? ` (${how})` : ''} while gdb started it (${said})`);
  }
}

/**
 * gdb and the target gone: an attached target is detached instead (gdb
 * removes its breakpoints) and keeps running.
 */
export async function endGdb(gdb: GdbSession, opts: { attached: boolean; drain: () => Promise<void>; progress?: (msg: string) => void }): Promise<void> {
  if (opts.attached) {
    try {
      await opts.drain();
      await gdb.detach();
    } catch (e) {
      opts.progress?.(`detach failed (${messageOf(e)}); gdb exits, which detaches too`);
    }
  }
  await gdb.shutdown();
}
