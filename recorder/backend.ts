import { MigraceError } from '../trace/errors.js';
import { exitOf, processIsAlive } from '../trace/proc.js';
import type { NewEvent, TraceEvent } from '../trace/schema.js';
import type { StatusTable } from '../trace/status.js';
import type { SessionWriter } from '../trace/store.js';
import type { Probe } from './probes/profile.js';
import { parseAddress, parseStateValue } from './values.js';
import { lockBinaryForProbes, type ProbeLockKind } from './probe-lock.js';
import { removeStaleGroups } from './uprobe/tracefs.js';

/**
 * What the recording loop (record.ts) needs from whatever places the
 * probes: gdb breakpoints over MI (live.ts), gdb breakpoints handled inside
 * gdb (gdb-fast.ts) or kernel uprobes (uprobe/recorder.ts).
 * All three make the same events from the same profile through
 * `probeEvent` and share `BackendCore`: the session's clock (`RunClock`),
 * the run's first failure (`RunFailure`), the writer, and the start that
 * undoes a half-done setup.
 */
export interface RecordingBackend {
  readonly backend: 'gdb' | 'gdb-fast' | 'uprobe';
  /** The query in flight, for query-begin events (queries are sequential). */
  currentQuery: string | null;
  /** The thread that entered qmp_query_migrate for each query. */
  readonly queryThreads: Map<string, number>;
  readonly hits: number;
  /** The target's pid once it runs (started or attached to). */
  readonly pid: number | null;
  /** The target process is gone. */
  readonly exited: boolean;
  readonly failure: MigraceError | null;
  fail(e: MigraceError): void;
  guard<T>(p: Promise<T>): Promise<T>;
  nsSince(at: bigint): number;
  wallAt(ns: number): string;
  now(): number;
  push(event: NewEvent): TraceEvent;
  /** Resolves when every probe hit that happened before the call is pushed. */
  drain(): Promise<void>;
  /** The next exit of the target is the end of the scenario, not a failure. */
  expectExit(): void;
  /** Everything placed is removed and everything started is gone (an attached process is left running). */
  shutdown(): Promise<void>;
  /** Probe hits the kernel could not store (uprobe backend); known after shutdown. */
  readonly lostEvents: number;
  /** What the session should say about how it was recorded, after shutdown. */
  sessionMeta(): Record<string, unknown>;
}

/** The session's clock: CLOCK_MONOTONIC ns since the run started, and wall time for display. */
export class RunClock {
  readonly startNs = process.hrtime.bigint();
  readonly startWall = Date.now();

  nsSince(at: bigint): number {
    const d = at - this.startNs;
    return d < 0n ? 0 : Number(d);
  }

  wallAt(ns: number): string {
    return new Date(this.startWall + ns / 1e6).toISOString();
  }

  now(): number {
    return this.nsSince(process.hrtime.bigint());
  }
}

/**
 * How long a gdb backend waits for gdb to name the signal that killed the
 * target (its *stopped follows the thread group's exit, later under load)
 * before it reports "killed by a signal"; rootCause waits longer than this.
 */
export const EXIT_REPORT_MS = 300;

/** What ends a run first-hand; anything else (a closed socket, a timeout, the QMP client's view of an exit) may be its symptom. */
const ROOT_CAUSES: ReadonlySet<string> = new Set(['GDB_EXITED', 'INTERRUPTED', 'TARGET_EXITED', 'TARGET_STOPPED', 'DB_WRITE']);

export function isFirstHand(e: MigraceError): boolean {
  return ROOT_CAUSES.has(e.code) && !e.secondHand;
}

/**
 * The first reason a run cannot go on, and a promise every step races
 * against. A symptom that came first (a step saw the QMP socket close) gives
 * way to the cause reported after it (gdb names the signal that killed the
 * target): the steps have already stopped on the first, and what the run
 * says and stores is the cause.
 */
export class RunFailure {
  private failed: MigraceError | null = null;
  private reject: ((e: MigraceError) => void) | null = null;
  private readonly promise: Promise<never>;

  constructor() {
    this.promise = new Promise<never>((_, reject) => {
      this.reject = reject;
    });
    // Nobody may be awaiting it yet; an unhandled rejection would kill the process.
    this.promise.catch(() => undefined);
  }

  get failure(): MigraceError | null {
    return this.failed;
  }

  fail(e: MigraceError): void {
    if (this.failed) {
      if (!isFirstHand(this.failed) && isFirstHand(e)) this.failed = e;
      return;
    }
    this.failed = e;
    this.reject?.(e);
  }

  guard<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, this.promise]);
  }
}

/** What every backend does the same way: clock, failure, writer, and a start that cleans up after a failed setup. */
export abstract class BackendCore {
  /** The query in flight, for query-begin events (queries are sequential). */
  currentQuery: string | null = null;
  /** The thread that entered qmp_query_migrate for each query. */
  readonly queryThreads = new Map<string, number>();
  hits = 0;
  /** The target process is gone. */
  exited = false;
  /** The target's (or the attached process's) pid, once known. */
  pid: number | null = null;
  protected readonly clock = new RunClock();
  protected readonly failed = new RunFailure();
  private releaseProbeLock: (() => void) | null = null;

  protected constructor(protected readonly writer: SessionWriter) {}

  /** Whether the target process has ended (gone, or a zombie), whether or not its backend said so yet. */
  protected targetGone(): boolean {
    return this.exited || (this.pid !== null && (exitOf(this.pid) !== null || !processIsAlive(this.pid)));
  }

  /** Set `backend` up; a write that fails later (full disk, a lock held too long) ends the run, and a setup that fails is undone. */
  protected static async begin<B extends BackendCore>(backend: B, setup: () => Promise<void>): Promise<B> {
    backend.writer.onError((e) => backend.fail(e));
    try {
      await setup();
    } catch (e) {
      await backend.shutdown();
      throw e;
    }
    return backend;
  }

  abstract shutdown(): Promise<void>;

  /** Before placing probes: gdb runs and uprobe runs of one binary exclude each other (probe-lock.ts). */
  protected async lockProbes(binary: string, kind: ProbeLockKind, say?: (msg: string) => void): Promise<void> {
    this.releaseProbeLock ??= await lockBinaryForProbes(binary, kind, say);
    // A uprobe run killed before it removed its probes has let go of the lock: its probes go now.
    if (kind === 'gdb') for (const line of removeStaleGroups()) say?.(`migrace: ${line}`);
  }

  /** Once the probes are gone (gdb ended, the uprobe group removed). */
  protected unlockProbes(): void {
    this.releaseProbeLock?.();
    this.releaseProbeLock = null;
  }

  /** Why the run cannot go on, once that happened. */
  get failure(): MigraceError | null {
    return this.failed.failure;
  }

  fail(e: MigraceError): void {
    this.failed.fail(e);
  }

  /** Race a step against the failure of the run. */
  guard<T>(p: Promise<T>): Promise<T> {
    return this.failed.guard(p);
  }

  /** ns since the session started, from a process.hrtime.bigint() stamp. */
  nsSince(at: bigint): number {
    return this.clock.nsSince(at);
  }

  wallAt(ns: number): string {
    return this.clock.wallAt(ns);
  }

  now(): number {
    return this.clock.now();
  }

  push(event: NewEvent): TraceEvent {
    return this.writer.push(event);
  }
}

export interface HitPlace {
  pc: string | null;
  func: string | null;
  file: string | null;
  line: number | null;
}

/**
 * The event a probe hit is, from the values as text (gdb's printing or the
 * kernel's): the same for every backend. A query probe opens the query in
 * flight, or an unsolicited one (somebody else's query-migrate) named by
 * `unsolicited`.
 */
export function probeEvent(
  probe: Probe, tid: number, t_ns: number, wall: string, place: HitPlace, raw: Record<string, string>,
  table: StatusTable, query: { current: string | null; unsolicited: () => string },
): NewEvent {
  const state = (text: string | undefined) => (text === undefined ? { value: null, name: null } : parseStateValue(text, table));
  const base = { t_ns, wall, thread: tid, probe: probe.name, ...place };
  switch (probe.role) {
    case 'transition':
      return { ...base, kind: 'transition', data: {
        addr: raw.addr === undefined ? null : parseAddress(raw.addr),
        old: raw.old === undefined ? null : state(raw.old),
        new: state(raw.new),
      } };
    case 'read':
      return { ...base, kind: 'read', data: { value: state(raw.value) } };
    case 'publish':
      return { ...base, kind: 'publish', data: { value: state(raw.value) } };
    case 'query':
      return { ...base, kind: 'query-begin', data: { query: query.current ?? query.unsolicited() } };
  }
}
