import { MigraceError, messageOf } from '../trace/errors.js';
import { SessionWriter, type TraceStore } from '../trace/store.js';
import { replyData } from '../trace/reply.js';
import { blankLocation, type NewSession, type TraceEvent } from '../trace/schema.js';
import { sleep } from '../trace/async.js';
import { exitOf, readProcStat } from '../trace/proc.js';
import { uprobeUnavailable } from './uprobe/tracefs.js';
import { UprobeRecorder } from './uprobe/recorder.js';
import { EXIT_REPORT_MS, isFirstHand, type RecordingBackend } from './backend.js';
import { GdbFastTarget } from './gdb-fast.js';
import { LiveTarget, type LiveOptions } from './live.js';
import type { Profile } from './probes/profile.js';
import { QmpClient } from './qmp.js';
import type { PreparedTarget } from './targets/types.js';

/**
 * The live recording: start the target with the probes placed (gdb
 * breakpoints over MI or handled inside gdb, or kernel uprobes that never
 * stop it; `startBackend`), migrate, poll
 * query-migrate until the migration ends, and write every probe hit and
 * every reply as it happens. Whatever stops the run, the session is closed
 * (complete or aborted with the reason) and gdb, the target and its helpers
 * are gone.
 */

export type Backend = 'gdb' | 'gdb-fast' | 'uprobe';
export type BackendChoice = Backend | 'auto';

/**
 * The backend a run uses: `auto` takes uprobes when root and tracefs allow
 * them (they never stop the target) and falls back to gdb-fast (a hit
 * handled inside gdb), saying why.
 */
export function chooseBackend(choice: BackendChoice, say?: (m: string) => void, unavailable: () => string | null = uprobeUnavailable, opts: { attached?: boolean } = {}): Backend {
  if (choice === 'gdb' || choice === 'gdb-fast') return choice;
  const why = unavailable();
  if (choice === 'uprobe') {
    if (why) throw new MigraceError('UPROBE', `--backend uprobe cannot run here: ${why}`);
    return 'uprobe';
  }
  // auto never puts gdb's breakpoints into a process migrace did not start: a killed gdb leaves them in, and it dies of SIGTRAP.
  if (why && opts.attached) {
    throw new MigraceError('USAGE', `record --attach records through kernel uprobes, which leave the process untouched whatever happens to migrace, and they cannot run here (${why}); --backend gdb-fast or gdb records it under gdb, at the risk that a killed gdb leaves its breakpoints in and the process dies of SIGTRAP`);
  }
  if (why) {
    say?.(`recording through gdb-fast, breakpoints handled inside gdb (uprobes unavailable: ${why})`);
    return 'gdb-fast';
  }
  return 'uprobe';
}

/** What every run that writes a session (a recording, a replay) is given. */
export interface SessionRunOptions {
  store: TraceStore;
  target: PreparedTarget;
  profile: Profile;
  /** The session's label. */
  label: string;
  gdbPath?: string;
  progress?: (msg: string) => void;
  /** Abort (Ctrl-C): the session ends as aborted with everything kept. */
  signal?: AbortSignal;
  /** Merged into the session's meta. */
  meta?: Record<string, unknown>;
}

export interface RecordOptions extends SessionRunOptions {
  /** How often query-migrate is polled (ms). */
  pollMs?: number;
  /** How long the whole migration may take. */
  timeoutMs?: number;
  /** How long to wait for the target's QMP socket (default 15 s). */
  qmpTimeoutMs?: number;
  /** gdb breakpoints over MI (default), handled inside gdb (gdb-fast), or kernel uprobes. */
  backend?: Backend;
}

export interface RecordResult {
  sessionId: number;
  state: 'complete' | 'aborted';
  error: string | null;
  events: number;
  hits: number;
  queries: number;
  wallMs: number;
  lastStatus: string | null;
  backend: Backend;
  /** Probe hits the kernel dropped (uprobe backend): the session is then incomplete. */
  lostEvents: number;
}

/** Statuses a migration does not leave. */
export const FINAL: ReadonlySet<string> = new Set(['completed', 'failed', 'cancelled']);

/**
 * Abort the run when the caller's signal fires. Returns the listener's
 * removal: `replay --repeat` and the demo run many targets under one
 * signal, and listeners left on it pile up (Node warns past 10).
 */
export function failOnAbort(live: RecordingBackend, signal: AbortSignal | undefined): () => void {
  if (!signal) return () => undefined;
  const onAbort = (): void => live.fail(new MigraceError('INTERRUPTED', `interrupted (${String(signal.reason ?? 'SIGINT')}); the session keeps what was recorded`));
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  return () => signal.removeEventListener('abort', onAbort);
}

/**
 * Whether a run may still wait for its target's monitor: once the run has
 * failed (gdb died), nobody awaits the connection any more, and a connect
 * loop still retrying would keep the process alive for its whole timeout.
 */
export function runAlive(live: RecordingBackend): () => boolean {
  return () => !live.exited && live.failure === null;
}

/**
 * Before a run calls itself complete. A failure (Ctrl-C, SIGTERM, a dead
 * gdb) that came after the last step awaited it is still the run's end;
 * and so is a helper that died since the watch last looked: the
 * destination's death fails the run even when the source said completed
 * (what the source sent last may still have been in the socket, and the
 * guest runs on nowhere).
 */
export function throwIfRunFailed(live: RecordingBackend, target: PreparedTarget): void {
  if (live.failure) throw live.failure;
  const helper = target.helperFailure?.() ?? null;
  if (helper) throw helper;
}

/**
 * Connect to the target's monitor and send its setup. From here on the run
 * is watched (watchRun): a target frozen by a stop signal, or a helper it
 * needs (the destination QEMU) dying, fails it at once.
 */
export async function connectQmp(live: RecordingBackend, target: PreparedTarget, timeoutMs = 15_000): Promise<QmpClient> {
  watchRun(live, target);
  const qmp = await live.guard(QmpClient.connect(target.qmpPath, { timeoutMs, isAlive: runAlive(live) }));
  for (const cmd of target.setup) await live.guard(qmp.execute(cmd.execute, cmd.arguments));
  return qmp;
}

const watches = new WeakMap<RecordingBackend, NodeJS.Timeout>();

/**
 * Poll, every 100 ms until endRun, what no event announces: the target in
 * group stop (state T: kill -STOP; under gdb a stopped thread is in
 * tracing stop, t, and gdb reports the signal itself), the target gone
 * without its backend saying so (gdb misses a program killed while it
 * loads libthread_db; the zombie still says how it ended), and the
 * target's helpers (PreparedTarget.helperFailure).
 */
export function watchRun(live: RecordingBackend, target: PreparedTarget): void {
  if (watches.has(live)) return;
  let stoppedSamples = 0;
  let goneSamples = 0;
  const timer = setInterval(() => {
    const helper = target.helperFailure?.() ?? null;
    if (helper) live.fail(helper);
    const pid = live.pid;
    if (pid === null) return;
    const what = target.info.kind === 'attach' ? `the attached process ${pid}` : target.info.kind;
    const stat = readProcStat(pid);
    stoppedSamples = stat?.state === 'T' ? stoppedSamples + 1 : 0;
    // Two samples: a shell that starts the target stopped (the uprobe backend) is released within one.
    if (stoppedSamples >= 2) {
      live.fail(new MigraceError('TARGET_STOPPED', `${what} (pid ${pid}) was stopped from outside migrace (state T: kill -STOP or -TSTP); the session keeps what was recorded`));
    }
    // Three samples: the backend's own report (with the target's last words) comes first when there is one.
    goneSamples = !live.exited && (stat === null || stat.state === 'Z') ? goneSamples + 1 : 0;
    if (goneSamples >= 3) {
      // How it ended is known only while its zombie is there (a parent other than gdb may have reaped it).
      const how = exitOf(pid);
      live.fail(new MigraceError('TARGET_EXITED', `${what} exited${how ? ` (${how})` : ''} before the scenario finished`));
    }
  }, 100);
  timer.unref();
  watches.set(live, timer);
}

function unwatchRun(live: RecordingBackend | null): void {
  if (!live) return;
  clearInterval(watches.get(live));
  watches.delete(live);
}

/**
 * One query-migrate with its events: query-begin (from the probe when the
 * profile has one, else at send time), query-end and the reply.
 */
export async function queryOnce(live: RecordingBackend, qmp: QmpClient, queryId: string, hasQueryProbe: boolean, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  live.currentQuery = queryId;
  if (!hasQueryProbe) {
    const t = live.now();
    live.push({ kind: 'query-begin', t_ns: t, wall: live.wallAt(t), thread: null, ...blankLocation(), data: { query: queryId } });
  }
  const res = await live.guard(qmp.execute('query-migrate', undefined, { timeoutMs }));
  // The reply can only arrive after the query's probe hits were reported; let them land first.
  await live.drain();
  const t = live.nsSince(res.receivedAt);
  const ret = (res.ret ?? {}) as Record<string, unknown>;
  const thread = live.queryThreads.get(queryId) ?? null;
  const base = { t_ns: t, wall: live.wallAt(t), ...blankLocation() };
  live.push({ ...base, kind: 'query-end', thread, func: 'qmp_query_migrate', data: { query: queryId } });
  live.push({ ...base, kind: 'reply', thread: null, data: replyData(queryId, 'query-migrate', res.raw) });
  live.currentQuery = null;
  return ret;
}

/** A run's error on one line: gdb's and the logs' words can span several, and the error is printed and stored as one. */
export function oneLineError(e: MigraceError): MigraceError {
  if (!/[\r\n]/.test(e.message)) return e;
  const text = e.message.split(/\r?\n/).map((l) => l.trim()).filter(Boolean).join('; ');
  return new MigraceError(e.code, text, { cause: e });
}

/**
 * The error to report for a failed run. When gdb dies, the target dies with
 * it and the QMP socket closes; when the target is killed, its socket may
 * close before its exit is reported: whichever pipe is read first, the
 * cause is the death, so wait briefly for it before naming a symptom. The
 * QMP client can see that the target is gone but not how it ended: its
 * TARGET_EXITED waits for the backend's, which names the signal or code.
 */
export async function rootCause(live: RecordingBackend | null, e: unknown): Promise<MigraceError> {
  const err = e instanceof MigraceError ? e : new MigraceError('GDB_ERROR', `recording failed: ${messageOf(e)}`, { cause: e });
  if (!live || isFirstHand(err)) return oneLineError(err);
  // Longer than a gdb backend waits for gdb to name the signal, so its report is what is said.
  const until = Date.now() + EXIT_REPORT_MS + 300;
  while (Date.now() < until && !(live.failure && isFirstHand(live.failure))) await sleep(20);
  const cause = live.failure;
  return oneLineError(cause && isFirstHand(cause) ? cause : err);
}

/**
 * Open the session a run writes to. If that fails (the database refuses the
 * write), the target prepared for the run is disposed before the error goes
 * on: its helpers (a destination QEMU, the private folder) are already there.
 */
export async function openRun(store: TraceStore, target: PreparedTarget, session: NewSession): Promise<{ sessionId: number; writer: SessionWriter }> {
  try {
    const sessionId = store.createSession(session);
    return { sessionId, writer: new SessionWriter(store, sessionId) };
  } catch (e) {
    await target.dispose().catch(() => undefined);
    throw e;
  }
}

/** What a live run holds until it ends. */
export interface RunParts {
  store: TraceStore;
  sessionId: number;
  writer: SessionWriter;
  target: PreparedTarget;
  live: RecordingBackend | null;
  qmp: QmpClient | null;
}

/**
 * The end of every live run, whatever ended it: the monitor closed, pending
 * hits written, gdb and the target (or the attachment) gone, the session
 * closed as complete or aborted with everything recorded so far. Returns the
 * error the run ends with: the one it had, or a storage failure met while
 * closing, with what could not be stored said in the same line.
 */
export async function endRun(run: RunParts, error: MigraceError | null): Promise<MigraceError | null> {
  unwatchRun(run.live);
  await run.qmp?.close().catch(() => undefined);
  await run.live?.drain().catch(() => undefined);
  await run.live?.shutdown().catch(() => undefined);
  await run.target.dispose().catch(() => undefined);
  const facts = run.live?.sessionMeta() ?? {};
  if (Object.keys(facts).length > 0) {
    try {
      run.store.updateSession(run.sessionId, { meta: facts });
    } catch {
      /* the close below meets the same storage problem and reports it */
    }
  }
  try {
    const ended = run.writer.finish(error);
    return ended ? oneLineError(ended) : null;
  } catch (e) {
    const why = e instanceof MigraceError ? e.message : messageOf(e);
    const base = error ?? run.writer.failure;
    return new MigraceError(base?.code ?? 'DB_WRITE',
      `${base ? `${base.message}; and ` : ''}${why}: the next migrace command that opens ${run.store.path} marks session ${run.sessionId} aborted`, { cause: e });
  }
}

/** What any backend needs to record a target migrace starts, or a process it attaches to: what the MI backend needs, and the uprobe backend's own. */
export interface BackendParts extends LiveOptions {
  /** uprobe: the ring buffer per CPU (default 8 MiB). */
  bufferKb?: number;
  /** uprobe, passive attach: close each query at its return. */
  queryReturns?: boolean;
}

/** Start a backend with its probes placed; the target runs (or the attached process is being watched) when this resolves. */
export async function startBackend(backend: Backend, parts: BackendParts): Promise<RecordingBackend> {
  const { writer, target, profile, gdbPath, progress, attachPid } = parts;
  switch (backend) {
    case 'uprobe':
      return UprobeRecorder.start({
        writer, profile, binary: target.binary, gdbPath, progress, bufferKb: parts.bufferKb, queryReturns: parts.queryReturns,
        ...(attachPid === undefined ? { target } : { attachPid }),
      });
    case 'gdb-fast':
      return GdbFastTarget.start({ writer, target, profile, gdbPath, progress, attachPid });
    case 'gdb':
      return LiveTarget.start({ store: parts.store, sessionId: parts.sessionId, writer, target, profile, gdbPath, progress, attachPid });
  }
}

const STARTING: Record<Backend, string> = { gdb: 'under gdb', 'gdb-fast': 'under gdb (gdb-fast: hits handled inside gdb)', uprobe: 'with kernel uprobes' };

export async function record(opts: RecordOptions): Promise<RecordResult> {
  const { store, target, profile } = opts;
  const backend = opts.backend ?? 'gdb';
  const pollMs = opts.pollMs ?? 20;
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const began = Date.now();
  const { sessionId, writer } = await openRun(store, target, {
    label: opts.label, origin: 'live', target: target.info, profile,
    meta: { poll_ms: pollMs, args: target.args, backend, ...opts.meta },
  });
  let live: RecordingBackend | null = null;
  let qmp: QmpClient | null = null;
  let error: MigraceError | null = null;
  let queries = 0;
  let lastStatus: string | null = null;
  let unlisten = (): void => undefined;
  try {
    opts.progress?.(`session ${sessionId}: starting ${target.binary} ${STARTING[backend]}`);
    live = await startBackend(backend, { store, sessionId, writer, target, profile, gdbPath: opts.gdbPath, progress: opts.progress });
    unlisten = failOnAbort(live, opts.signal);
    qmp = await connectQmp(live, target, opts.qmpTimeoutMs);
    opts.progress?.(`migrating to ${target.migrateUri}`);
    await live.guard(qmp.execute('migrate', { uri: target.migrateUri }));
    const hasQueryProbe = profile.probes.some((p) => p.role === 'query');
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      queries++;
      const ret = await queryOnce(live, qmp, `q${queries}`, hasQueryProbe);
      lastStatus = typeof ret.status === 'string' ? ret.status : null;
      if (lastStatus && FINAL.has(lastStatus)) break;
      if (Date.now() > deadline) {
        throw new MigraceError('QMP_TIMEOUT', `the migration did not finish within ${Math.round(timeoutMs / 1000)} s (last status: ${lastStatus ?? 'none'})`);
      }
      await live.guard(sleep(pollMs));
    }
    throwIfRunFailed(live, target);
    opts.progress?.(`migration ${lastStatus} after ${queries} queries; ${live.hits} probe hits`);
    live.expectExit();
    await qmp.execute('quit', undefined, { timeoutMs: 5_000 }).catch(() => undefined);
  } catch (e) {
    error = await rootCause(live, e);
  } finally {
    error = await endRun({ store, sessionId, writer, target, live, qmp }, error);
    unlisten();
  }
  return recordResult({ sessionId, writer, live, backend, began }, error, queries, lastStatus);
}

/** What a recording returns: how its session ended, what it stored, what it saw. */
function recordResult(
  run: { sessionId: number; writer: SessionWriter; live: RecordingBackend | null; backend: Backend; began: number },
  error: MigraceError | null, queries: number, lastStatus: string | null,
): RecordResult {
  return {
    sessionId: run.sessionId, state: error ? 'aborted' : 'complete', error: error?.message ?? null,
    events: run.writer.stored, hits: run.live?.hits ?? 0, queries, wallMs: Date.now() - run.began, lastStatus,
    backend: run.backend, lostEvents: run.live?.lostEvents ?? 0,
  };
}

export interface AttachOptions {
  store: TraceStore;
  pid: number;
  /** The running program (/proc/PID/exe), whatever the profile says. */
  binary: string;
  /**
   * A QMP socket migrace polls query-migrate on (a monitor of its own: QEMU
   * serves one client per socket). Without one the recording is passive:
   * the queries others make (libvirt's polling) are what is recorded.
   */
  qmpPath: string | null;
  profile: Profile;
  label: string;
  pollMs?: number;
  gdbPath?: string;
  progress?: (msg: string) => void;
  signal?: AbortSignal;
  backend?: Backend;
}

/**
 * A running process somebody else started, as a target: nothing to start,
 * nothing to dispose of (it is detached, never killed), a QMP socket only
 * when the caller has one of its own.
 */
export function attachedTarget(binary: string, profile: Profile, qmpPath: string | null): PreparedTarget {
  return {
    info: {
      kind: 'attach', binary, build_id: profile.build_id, qemu_version: profile.qemu_version, variant: profile.variant,
      status_table: profile.status_table, ...(profile.status_names ? { status_names: profile.status_names } : {}),
    },
    binary,
    args: [], env: {}, qmpPath: qmpPath ?? '', migrateUri: '', logPath: '', setup: [],
    dispose: async () => undefined,
  };
}

/**
 * Record a QEMU that is already running and driven by somebody else (the
 * user, libvirt). migrace only watches: it polls query-migrate on its own
 * monitor when it has one, and stops when the migration ends (a reply or a
 * transition into a final state) or on Ctrl-C, leaving QEMU running: the
 * uprobe backend never touches it, the gdb backend detaches. Ctrl-C is the
 * normal end here, not an abort.
 */
export async function recordAttached(opts: AttachOptions): Promise<RecordResult> {
  const { store, profile } = opts;
  const backend = opts.backend ?? 'gdb';
  const began = Date.now();
  const target = attachedTarget(opts.binary, profile, opts.qmpPath);
  const { sessionId, writer } = await openRun(store, target, {
    label: opts.label, origin: 'live', target: target.info, profile,
    meta: { attached_pid: opts.pid, poll_ms: opts.pollMs ?? 20, backend, passive: opts.qmpPath === null },
  });
  let live: RecordingBackend | null = null;
  let qmp: QmpClient | null = null;
  let error: MigraceError | null = null;
  let queries = 0;
  let lastStatus: string | null = null;
  let ended = 'migration ended';
  const stopped = new Promise<void>((resolve) => {
    if (opts.signal?.aborted) resolve();
    opts.signal?.addEventListener('abort', () => resolve(), { once: true });
  });
  let userStopped = false;
  void stopped.then(() => { userStopped = true; });
  // Passive: the end is a transition into a final state, seen by the probes.
  let finalAt: number | null = null;
  const watchFinal = (e: TraceEvent): void => {
    if (e.kind === 'transition' && e.data.new.name && FINAL.has(e.data.new.name)) finalAt ??= Date.now();
  };
  try {
    live = await startBackend(backend, {
      store, sessionId, writer, target, profile, gdbPath: opts.gdbPath, progress: opts.progress, attachPid: opts.pid, queryReturns: opts.qmpPath === null,
    });
    if (live instanceof LiveTarget) {
      live.setHandler((hit) => {
        watchFinal(hit.event);
        return 'continue';
      });
    } else if (live instanceof UprobeRecorder || live instanceof GdbFastTarget) {
      live.onHit = watchFinal;
    }
    const attachedLive = live;
    opts.progress?.(backend === 'uprobe'
      ? `recording ${opts.pid} through kernel uprobes (never stopped, never ptraced) until the migration ends or Ctrl-C`
      : `attached to ${opts.pid} under gdb${backend === 'gdb-fast' ? ' (gdb-fast)' : ''}; recording until the migration ends or Ctrl-C`);
    watchRun(live, target);
    if (opts.qmpPath) qmp = await live.guard(QmpClient.connect(opts.qmpPath, { timeoutMs: 15_000, isAlive: runAlive(attachedLive) }));
    const hasQueryProbe = profile.probes.some((p) => p.role === 'query');
    let sawMigration = false;
    while (!userStopped) {
      if (qmp) {
        queries++;
        const ret = await queryOnce(live, qmp, `q${queries}`, hasQueryProbe);
        lastStatus = typeof ret.status === 'string' ? ret.status : null;
        if (lastStatus && !FINAL.has(lastStatus)) sawMigration = true;
        if (sawMigration && lastStatus && FINAL.has(lastStatus)) break;
      } else if (finalAt !== null && Date.now() - finalAt > 1000) {
        // A second for the queries that follow the end (libvirt asks once more).
        break;
      }
      await Promise.race([live.guard(sleep(opts.pollMs ?? 20)), stopped]);
    }
    if (userStopped) ended = 'stopped by the user';
    else throwIfRunFailed(live, target);
    opts.progress?.(`${ended}; ${backend === 'uprobe' ? 'removing the probes' : `detaching from ${opts.pid}`}`);
  } catch (e) {
    error = await rootCause(live, e);
  } finally {
    try {
      store.updateSession(sessionId, { meta: { ended } });
    } catch {
      /* the close below reports the storage problem */
    }
    error = await endRun({ store, sessionId, writer, target, live, qmp }, error);
  }
  return recordResult({ sessionId, writer, live, backend, began }, error, queries, lastStatus);
}
