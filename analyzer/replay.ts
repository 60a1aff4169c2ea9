import { MigraceError, messageOf } from '../trace/errors.js';
import type { TraceStore } from '../trace/store.js';
import { blankLocation, type EventOf, type StateValue, type TraceEvent } from '../trace/schema.js';
import { statusNamesOf, statusValue, type StatusTableId } from '../trace/status.js';
import { LiveTarget, type HitDecision, type ProbeHit } from '../recorder/live.js';
import type { Frame, GdbSession } from '../recorder/gdb/session.js';
import { QmpCommandError, type QmpClient } from '../recorder/qmp.js';
import type { Profile } from '../recorder/probes/profile.js';
import { readElfInfo } from '../recorder/probes/elf.js';
import type { PreparedTarget } from '../recorder/targets/types.js';
import { connectQmp, endRun, failOnAbort, FINAL, openRun, queryOnce, rootCause, throwIfRunFailed, type SessionRunOptions } from '../recorder/record.js';
import { sleep, withTimeout } from '../trace/async.js';
import { parseInteger } from '../recorder/values.js';
import { findInterleavings, sameState, stateName } from './interleavings.js';
import {
  ACTION_STEPS, checkScheduleFor, profileWithScheduleProbes, type Role, type Schedule, type StateRef, type Step,
} from './schedule.js';
import type { Finding, Verdict } from './types.js';

/**
 * Deterministic live replay: the schedule's roles bind to threads at their
 * first matching probe hit, held threads stay stopped while the others run
 * (gdb non-stop), and a held reader is released only once the writer's
 * transition is visible in memory. The run is recorded as a new session and
 * judged by the same analyzer as any recording.
 *
 * A role that waits for a transition the migration can no longer make (it
 * has ended, or the state has left the role's old state) fails at once and
 * names the transitions that did happen, rather than waiting out its timeout.
 * A reader whose query has already been answered cannot arrive either: the
 * schedule is `unreachable`. A reader whose thread is held, or waits on a
 * lock a held thread owns, makes it `infeasible`.
 *
 * Besides roles, a run drives the migration (capabilities, cancel, continue,
 * postcopy, a dying destination) and can observe it: hold the migration
 * thread at each of its transitions and take undisturbed replies in the
 * state it leaves (a QueryTracer may single-step one of them).
 *
 * Parts: StatePath follows the migration's states for those waiting roles;
 * ReplayRun is one run once gdb and the monitor are up (its fields are the
 * run's state, its methods the step kinds, the hit handler that binds roles,
 * matching a role's conditions, including states named by another role, and
 * the waits: for a role, for a state in memory, and the lock-wait diagnosis
 * that makes a schedule infeasible); judge() analyzes the recorded session;
 * replay() opens the session, starts the target, hands over to a ReplayRun
 * and ends the run whatever happened.
 *
 * Attached (replay --attach PID), the QEMU is somebody else's: libvirt starts
 * the migration and `virsh domjobinfo` makes the query. The schedule's
 * migrate and query steps then wait for them instead of sending anything
 * (a step that would send another command is refused as UNSUPPORTED), the
 * roles are held and released at the probes as always, and the end detaches
 * and leaves QEMU running; the reply went to the driver, so its log (migrace
 * import libvirt) carries the verdict.
 */

export type ReplayOutcomeClass = 'manifested' | 'benign' | 'window-only' | 'no-crossing' | 'infeasible' | 'unreachable' | 'aborted';

/** The thread that serves QMP commands, query-migrate among them: gdb's thread 1, the main thread, in QEMU and minimig. */
export const QUERY_THREAD = 1;

/** A transition that moved the state (its compare-and-swap succeeded), in the order it landed. */
export interface LandedTransition {
  seq: number;
  tid: number;
  old: StateValue | null;
  new: StateValue;
  /** Index in the schedule's steps of the last action step begun before its hit (-1: none). */
  after_step: number;
}

/** Single-steps one held query (the hunt's dynamic read points, recorder/read-trace.ts). */
export interface QueryTracer {
  /** Whether a query in this state is to be traced. */
  wants(state: string): boolean;
  /** Trace thread `tid`, stopped at the query probe, until its query function returns; the thread stays stopped. */
  trace(gdb: GdbSession, tid: number, state: string, stateAddr: string): Promise<void>;
}

export interface ReplayResult {
  sessionId: number;
  state: 'complete' | 'aborted';
  schedule: string;
  /** `aborted` when the run failed (error says why): never null. */
  outcome: ReplayOutcomeClass;
  /** Why the schedule could not happen, or why the run failed. */
  reason: string | null;
  error: string | null;
  finding: Finding | null;
  verdict: Verdict | null;
  /** The body of the forced query's reply (null when attached: the reply went to the driver). */
  reply: unknown;
  /** The process replayed on when it was somebody else's (replay --attach). */
  attachedPid: number | null;
  /** The error's code when the run failed (REPLAY_TIMEOUT for a wait that timed out). */
  errorCode: string | null;
  /** What moved the state, in order. */
  transitions: LandedTransition[];
  /** An infeasible schedule's lock: the frame the reader waits in, with the stack. */
  lock: LockWait | null;
  wallMs: number;
}

export interface ReplayOptions extends SessionRunOptions {
  schedule: Schedule;
  /** How long a role may be missing before the lock-wait check (default min(2 s, half its timeout)). */
  blockedAfterMs?: number;
  tracer?: QueryTracer;
  /**
   * Attach to this running QEMU instead of starting the target: its driver
   * (libvirt) makes the migration and the queries; it is detached, never
   * killed, at the end.
   */
  attachPid?: number;
  /** Attached: how long to wait for the driver's migration and query (default 120 s). */
  driverWaitMs?: number;
}

interface RoleState {
  name: string;
  spec: Role;
  armed: boolean;
  tid: number | null;
  held: boolean;
  /** The hit that bound the role. */
  event: TraceEvent | null;
}

/** Frames that mean "waiting for a lock": a held writer may own it. */
const LOCK_WAIT = /(pthread_mutex_lock|__lll_lock_wait|futex_wait|qemu_mutex_lock|bql_lock|qemu_mutex_lock_iothread|lock_impl)/;

class Infeasible extends Error {
  /** The lock the reader waits on, when that is why (else the reader's thread is held). */
  constructor(message: string, readonly lock: LockWait | null = null) {
    super(message);
  }
}
class Unreachable extends Error {}

export interface LockWait {
  /** The outermost lock frame shown (bql_lock_impl), else the innermost. */
  func: string;
  /** The top frames, innermost first: "futex_wait <- __lll_lock_wait <- ...". */
  chain: string;
}

/**
 * Whether a running thread waits for a lock: stop it, read its stack, let it
 * go. Only the interrupt's own stop counts; a probe hit of the thread
 * belongs to the hit handler.
 */
export async function lockWaitOf(gdb: GdbSession, tid: number): Promise<LockWait | null> {
  let stopped = false;
  try {
    const mark = gdb.mark();
    await gdb.interrupt(tid);
    await gdb.waitForStop(tid, 5_000, { since: mark, reason: 'signal-received' });
    stopped = true;
    const frames = await gdb.stack(tid);
    const top = frames.slice(0, 6);
    const isLock = (f: Frame): boolean => LOCK_WAIT.test(f.func ?? '');
    // Of the frames shown, the outermost lock frame names the lock (bql_lock_impl); the innermost only the futex.
    const lockFrame = [...top].reverse().find(isLock) ?? frames.find(isLock);
    return lockFrame ? { func: lockFrame.func ?? '??', chain: top.map((f) => f.func ?? '??').join(' <- ') } : null;
  } catch {
    /* a thread that exited or cannot be stopped tells us nothing */
    return null;
  } finally {
    if (stopped) await gdb.continueThread(tid).catch(() => undefined);
  }
}

/**
 * QEMU's postcopy recovery loops back (postcopy-active -> postcopy-paused ->
 * postcopy-recover -> postcopy-active); every other state is entered at most
 * once per migration, so once the state has left it, no transition out of it
 * can come.
 */
function reentrant(state: string): boolean {
  return state.startsWith('postcopy-');
}

/**
 * The migration's states as its transitions land, for a role that waits for
 * one: has the state already passed the role's old state, has the migration
 * ended? A hit at migrate_set_state's entry whose old state is not the
 * current one is a compare-and-swap that fails, and moves nothing.
 */
export class StatePath {
  private readonly states: StateValue[] = [];
  /** The transitions that moved the state, in order. */
  readonly moves: EventOf<'transition'>[] = [];
  /** States the migration has moved out of. */
  private readonly left = new Set<string>();
  private ended = false;

  constructor(private readonly table: StatusTableId) {}

  /** A transition that has landed, or will without anyone holding it. */
  landed(e: EventOf<'transition'>): void {
    const current = this.states[this.states.length - 1];
    const old = e.data.old;
    if (current !== undefined && old !== null && !sameState(current, old, this.table)) return;
    if (current === undefined) this.states.push(old ?? { value: null, name: null });
    const from = stateName(this.states[this.states.length - 1], this.table);
    if (from !== null) this.left.add(from);
    this.states.push(e.data.new);
    this.moves.push(e);
    if (FINAL.has(e.data.new.name ?? '')) this.ended = true;
  }

  /** "none -> setup -> active -> completed" */
  text(): string {
    return this.states.length ? this.states.map((v) => stateName(v, this.table) ?? '?').join(' -> ') : 'no transition yet';
  }

  /** Why a transition role with these conditions can no longer bind, or null while it may. */
  ruledOut(when: Role['when']): string | null {
    if (this.ended) return `the migration already ended (${this.text()})`;
    const current = this.states[this.states.length - 1];
    const old = when.old;
    if (old !== undefined && this.left.has(old) && stateName(current, this.table) !== old && !reentrant(old)) {
      return `the state already left ${old} (${this.text()})`;
    }
    return null;
  }
}

/**
 * One replay once gdb and the monitor are up: the roles, the forced query
 * and the final transition, with one method per step kind. It binds and
 * holds roles through the hit handler it installs on the live target.
 */
class ReplayRun {
  readonly roles: Map<string, RoleState>;
  /** The body of the forced query's reply. */
  reply: unknown = null;
  private queries = 0;
  private pendingReply: Promise<Record<string, unknown>> | null = null;
  /** The forced query has been answered: a reader that has not arrived cannot arrive. */
  private replied = false;
  private finalSeen: EventOf<'transition'> | null = null;
  readonly path: StatePath;
  /** Transitions of held writers: they land when the writer is released. */
  private readonly heldTransitions = new Map<number, EventOf<'transition'>>();
  /** Wake-ups for waitFor(): each hit that binds a role or moves the state calls them. */
  private readonly changed = new Set<() => void>();
  private readonly hasQueryProbe: boolean;
  /** The state word's address, from the latest transition hit. */
  private stateAddr: string | null = null;
  /** Index of the action step begun last, and per transition hit the one it came after. */
  private lastAction = -1;
  readonly actionAt = new Map<number, number>();
  /** observe: replies to take per state left, or null when not observing. */
  private observing: number | null = null;
  private readonly samplings = new Set<Promise<void>>();
  /** The state whose next query the tracer single-steps, and whether a trace runs now. */
  private traceState: string | null = null;
  private tracing = false;
  /** Queries go one at a time: each query's events belong to one query id. */
  private queryChain: Promise<unknown> = Promise.resolve();
  private readonly blockedAfterMs: number;

  /** qmp is null when attached: the QEMU's own driver migrates and queries. */
  constructor(private readonly live: LiveTarget, private readonly qmp: QmpClient | null, private readonly opts: ReplayOptions) {
    this.roles = new Map(Object.entries(opts.schedule.roles).map(([name, spec]) => [name, { name, spec, armed: false, tid: null, held: false, event: null }]));
    this.hasQueryProbe = opts.profile.probes.some((p) => p.role === 'query');
    this.path = new StatePath(opts.profile.status_table);
    this.blockedAfterMs = opts.blockedAfterMs ?? 2_000;
    live.setHandler((hit) => this.onHit(hit));
  }

  private get name(): string {
    return this.opts.schedule.name;
  }

  async run(): Promise<void> {
    const steps = this.opts.schedule.steps;
    for (let i = 0; i < steps.length; i++) {
      if (ACTION_STEPS.has(steps[i].do)) this.lastAction = i;
      await this.step(steps[i]);
    }
    await this.settleSamplings();
  }

  private step(step: Step): Promise<void> {
    switch (step.do) {
      case 'arm': return this.arm(step);
      case 'migrate': return this.migrate();
      case 'query': return this.query();
      case 'wait-held': return this.waitHeld(step);
      case 'release': return this.release(step);
      case 'wait-state': return this.waitState(step);
      case 'wait-reply': return this.waitReply(step);
      case 'finish': return this.finish(step);
      case 'set-capabilities': return this.setCapabilities(step);
      case 'set-parameters': return this.command('migrate-set-parameters', step.parameters);
      case 'cancel': return this.command('migrate_cancel');
      case 'continue': return this.command('migrate-continue', { state: step.state });
      case 'start-postcopy': return this.command('migrate-start-postcopy');
      case 'kill-destination': return this.killDestination();
      case 'pause': return this.pause(step);
      case 'observe': return this.observe(step);
    }
  }

  /**
   * The hit handler: the first armed role a hit matches binds to its thread
   * and holds it there. Otherwise, when observing, a transition of the
   * migration thread is held for its samples, and a query the tracer wants
   * is held for its trace.
   */
  private onHit(hit: ProbeHit): HitDecision {
    const e = hit.event;
    if (e.kind === 'transition') {
      if (FINAL.has(e.data.new.name ?? '')) this.finalSeen = e;
      if (e.data.addr) this.stateAddr = e.data.addr;
      this.actionAt.set(e.seq, this.lastAction);
    }
    let decision: HitDecision = 'continue';
    for (const r of this.roles.values()) {
      if (!r.armed || (r.tid !== null && r.tid !== hit.tid) || !this.matches(r.spec, hit)) continue;
      r.armed = false;
      r.tid = hit.tid;
      r.event = e;
      r.held = true;
      this.mark('hold', hit.tid, r.name, `held at ${hit.probe.name} (seq ${e.seq})`);
      decision = 'hold';
      break;
    }
    if (decision === 'continue' && e.kind === 'query-begin' && this.traceState !== null && this.opts.tracer) {
      decision = 'hold';
      this.track(this.runTrace(hit.tid, this.traceState));
      this.traceState = null;
    }
    if (decision === 'continue' && e.kind === 'transition' && this.observing !== null && hit.tid !== QUERY_THREAD) {
      decision = 'hold';
      this.track(this.sample(hit.tid, e, this.observing));
    }
    if (e.kind === 'transition') {
      if (decision === 'hold') this.heldTransitions.set(hit.tid, e);
      else this.path.landed(e);
    }
    this.notify();
    return decision;
  }

  private matches(role: Role, hit: ProbeHit): boolean {
    if (hit.probe.role !== role.probe) return false;
    if (role.at !== undefined && hit.probe.name !== role.at) return false;
    const e = hit.event;
    const w = role.when;
    if (e.kind === 'transition') {
      if (w.old !== undefined && e.data.old?.name !== w.old) return false;
      if (w.new !== undefined && e.data.new.name !== w.new) return false;
      return true;
    }
    if ((e.kind === 'read' || e.kind === 'publish') && w.value !== undefined) {
      if (typeof w.value === 'string') return e.data.value.name === w.value;
      const want = this.resolve(w.value);
      return want !== null && sameState(e.data.value, want, this.opts.profile.status_table);
    }
    return true;
  }

  /** The state a reference names, once its role has bound; null before. */
  private resolve(ref: StateRef): StateValue | null {
    const e = this.roles.get(ref.role)?.event;
    if (e?.kind !== 'transition') return null;
    return ref.of === 'old' ? e.data.old : e.data.new;
  }

  private stateLabel(v: StateValue | null): string {
    return stateName(v, statusNamesOf(this.opts.profile)) ?? '?';
  }

  private describe(role: RoleState): string {
    const w = role.spec.when;
    const e = role.event;
    const at = role.spec.at !== undefined ? ` ${role.spec.at}` : '';
    let what: string;
    if (e?.kind === 'transition') what = `migrate_set_state(${this.stateLabel(e.data.old)} -> ${this.stateLabel(e.data.new)})`;
    else if (role.spec.probe === 'transition') what = `migrate_set_state(${w.old ?? '*'} -> ${w.new ?? '*'})`;
    else if (w.value === undefined) what = `the ${role.spec.probe} probe${at}`;
    else if (typeof w.value === 'string') what = `the ${role.spec.probe} probe${at} with value ${w.value}`;
    else {
      const v = this.resolve(w.value);
      what = `the ${role.spec.probe} probe${at} with ${w.value.role}'s ${w.value.of} state${v ? ` (${this.stateLabel(v)})` : ''}`;
    }
    return `${role.name} (${what})`;
  }

  /** Why a role that has not bound can no longer bind: its transition cannot come, or its query is over. */
  private ruledOut(r: RoleState): string | null {
    if (r.held || r.event !== null) return null;
    if (r.spec.probe === 'transition') return this.path.ruledOut(r.spec.when);
    if (this.replied) return `the query was answered without reaching it (reply ${JSON.stringify(this.reply)})`;
    return null;
  }

  private role(name: string): RoleState {
    return this.roles.get(name)!;
  }

  private notify(): void {
    for (const f of [...this.changed]) f();
  }

  /** A hold or release event: what the replay did to a thread. */
  private mark(kind: 'hold' | 'release', tid: number, role: string, reason: string): void {
    const t = this.live.now();
    this.live.push({ kind, t_ns: t, wall: this.live.wallAt(t), thread: tid, ...blankLocation(), data: { role, reason } });
  }

  private note(text: string): void {
    const t = this.live.now();
    this.live.push({ kind: 'note', t_ns: t, wall: this.live.wallAt(t), thread: null, ...blankLocation(), data: { text } });
  }

  /** Background work of the run (samples, traces): its failure fails the run. */
  private track(p: Promise<void>): void {
    const tracked = p.catch((e) => this.live.fail(e instanceof MigraceError ? e : new MigraceError('REPLAY', messageOf(e))));
    this.samplings.add(tracked);
    void tracked.finally(() => this.samplings.delete(tracked));
  }

  private async settleSamplings(): Promise<void> {
    while (this.samplings.size > 0) await this.live.guard(Promise.all([...this.samplings]));
  }

  private async arm(step: Extract<Step, { do: 'arm' }>): Promise<void> {
    this.role(step.role).armed = true;
  }

  /** The monitor migrace sends on; attached, there is none: a step that would send is refused. */
  private monitor(what: string): QmpClient {
    if (this.qmp === null) throw new MigraceError('UNSUPPORTED', `replay ${this.name}: ${what} needs a monitor of migrace's own; attached (replay --attach), the driver migrates and queries`);
    return this.qmp;
  }

  private async migrate(): Promise<void> {
    const { target } = this.opts;
    if (this.qmp === null) {
      this.opts.progress?.(`waiting for the migration of process ${this.opts.attachPid} that its driver starts (virsh migrate, virsh save)`);
      return;
    }
    this.opts.progress?.(`migrate ${target.migrateUri}`);
    // Not awaited: the writer may be held inside it.
    this.qmp.execute('migrate', { uri: target.migrateUri }, { timeoutMs: 600_000 }).catch((e) => {
      this.live.fail(e instanceof MigraceError ? e : new MigraceError('QMP', messageOf(e)));
    });
  }

  /**
   * One monitor command of a scenario; a command or argument the target
   * refuses is UNSUPPORTED, naming both. Done when it is answered, or when
   * a role binds while it is pending (a writer bound in migrate_cancel, or
   * one that holds a lock the answer waits for): its answer then comes
   * after the release, and a failure still ends the run.
   */
  private async command(execute: string, args?: Record<string, unknown>, on: 'source' | 'destination' = 'source'): Promise<void> {
    const what = `${execute}${args ? ` ${JSON.stringify(args)}` : ''}${on === 'destination' ? ' on the destination' : ''}`;
    this.opts.progress?.(what);
    const unsupported = (e: unknown): MigraceError => (e instanceof QmpCommandError
      ? new MigraceError('UNSUPPORTED', `${what}: ${e.desc}`, { cause: e })
      : e instanceof MigraceError ? e : new MigraceError('QMP', `${what}: ${messageOf(e)}`));
    if (on === 'destination') {
      const send = this.opts.target.destination?.execute;
      if (!send) throw new MigraceError('UNSUPPORTED', `${what}: this target's destination has no monitor`);
      await this.live.guard(send(execute, args).catch((e: unknown) => { throw unsupported(e); }));
      return;
    }
    let answered = false;
    const reply = this.monitor(what).execute(execute, args, { timeoutMs: 600_000 }).then(() => { answered = true; this.notify(); }, (e: unknown) => {
      answered = true;
      const err = unsupported(e);
      this.live.fail(err);
      throw err;
    });
    reply.catch(() => undefined);
    // A role bound meanwhile may hold the thread that would answer, or a lock it needs (QEMU 10's migrate-continue).
    const heldBefore = new Set([...this.roles.values()].filter((r) => r.held).map((r) => r.name));
    const newlyHeld = (): boolean => [...this.roles.values()].some((r) => r.held && !heldBefore.has(r.name));
    if (!(await this.waitFor(() => answered || newlyHeld(), 30_000))) {
      throw new MigraceError('REPLAY_TIMEOUT', `replay ${this.name}: ${what} was not answered within 30 s`);
    }
    if (answered) await this.live.guard(reply);
  }

  private async setCapabilities(step: Extract<Step, { do: 'set-capabilities' }>): Promise<void> {
    const capabilities = Object.entries(step.capabilities).map(([capability, state]) => ({ capability, state }));
    // The source first: a capability the build lacks is named by the source's own refusal.
    await this.command('migrate-set-capabilities', { capabilities });
    if (step.destination) await this.command('migrate-set-capabilities', { capabilities }, 'destination');
  }

  private async killDestination(): Promise<void> {
    const dest = this.opts.target.destination;
    if (!dest) throw new MigraceError('UNSUPPORTED', `replay ${this.name}: this target has no destination to kill`);
    this.opts.progress?.('killing the destination');
    await this.live.guard(dest.kill());
  }

  private async pause(step: Extract<Step, { do: 'pause' }>): Promise<void> {
    await this.live.guard(sleep(step.ms));
  }

  private async observe(step: Extract<Step, { do: 'observe' }>): Promise<void> {
    this.observing = step.queries;
  }

  /** One query-migrate after the ones before it. */
  private ask(): Promise<Record<string, unknown>> {
    this.queries++;
    const id = `q${this.queries}`;
    const qmp = this.monitor('query-migrate');
    const p = this.queryChain.then(() => queryOnce(this.live, qmp, id, this.hasQueryProbe, 600_000));
    this.queryChain = p.catch(() => undefined);
    return p;
  }

  private async query(): Promise<void> {
    if (this.qmp === null) {
      this.opts.progress?.(`waiting for a query-migrate from the driver of process ${this.opts.attachPid} (virsh domjobinfo)`);
      return;
    }
    const pending = this.ask();
    this.pendingReply = pending;
    pending.then((r) => {
      this.reply = r;
      this.replied = true;
      this.notify();
    }, () => undefined);
  }

  /**
   * observe: the migration thread is held at a transition's entry, so the
   * state is the one it leaves, and nothing but the query thread (which
   * answers the queries, one at a time) can move it while the replies are
   * taken: no reply can straddle a transition. Then the thread runs to the
   * return of migrate_set_state and the state it entered is sampled the
   * same way, which also covers a state whose way out is taken under a
   * lock. A query that waits on a lock the held thread owns (QEMU 10's
   * steps under the big lock) lets the thread go at once: that state cannot
   * be sampled while the thread is stopped there.
   */
  private async sample(tid: number, e: EventOf<'transition'>, n: number): Promise<void> {
    const step = `migrate_set_state(${this.stateLabel(e.data.old)} -> ${this.stateLabel(e.data.new)})`;
    this.mark('hold', tid, 'observe', `held at ${step} (seq ${e.seq}) for ${n} undisturbed replies before and after it`);
    const land = (): void => {
      const t = this.heldTransitions.get(tid);
      if (t) {
        this.heldTransitions.delete(tid);
        this.path.landed(t);
      }
    };
    let released = false;
    const release = async (why: string): Promise<void> => {
      if (released) return;
      released = true;
      this.mark('release', tid, 'observe', why);
      land();
      await this.live.release(tid);
      this.notify();
    };
    try {
      if (!(await this.takeSamples(n, this.stateLabel(e.data.old), step, 'at the entry of'))) {
        await release('the query waits for a lock this thread owns');
        return;
      }
      // To the instruction after the call: the compare-and-swap has been done.
      this.mark('release', tid, 'observe', `replies taken; run to the return of ${step}`);
      land();
      await this.runToReturn(tid, step);
      this.mark('hold', tid, 'observe', `held after ${step} returned`);
      const now = await this.live.gdb.evaluate(`*(int*)${e.data.addr ?? this.stateAddress()}`, { thread: tid, frame: 0 });
      const state = stateName({ value: parseInteger(now), name: null }, this.opts.profile.status_table) ?? this.stateLabel(e.data.new);
      await this.takeSamples(n, state, step, 'after');
    } finally {
      await release('replies taken');
    }
  }

  /** n replies in `state` while the migration thread is held; false when the query thread waits on its lock. */
  private async takeSamples(n: number, state: string, step: string, where: string): Promise<boolean> {
    for (let i = 0; i < n; i++) {
      if (i === 0 && this.opts.tracer?.wants(state)) this.traceState = state;
      const reply = this.ask();
      const lock = await this.blockedBehind(reply);
      if (lock) {
        this.note(`observe: query-migrate waits in ${lock.func} (${lock.chain}) while the migration thread is held ${where} ${step}; released it`);
        this.traceState = null;
        return false;
      }
      await this.live.guard(reply);
    }
    return true;
  }

  /** Resolves null once `reply` arrives, or the lock the query thread waits on when it stays away. */
  private async blockedBehind(reply: Promise<unknown>): Promise<LockWait | null> {
    let done = false;
    void reply.then(() => { done = true; }, () => { done = true; });
    for (;;) {
      await this.live.guard(Promise.race([reply.catch(() => undefined), sleep(this.blockedAfterMs)]));
      if (done) return null;
      // A query being single-stepped is slow, not blocked.
      if (this.tracing) continue;
      const lock = await lockWaitOf(this.live.gdb, QUERY_THREAD);
      if (lock || done) return lock;
    }
  }

  private async runTrace(tid: number, state: string): Promise<void> {
    this.tracing = true;
    try {
      await this.opts.tracer!.trace(this.live.gdb, tid, state, this.stateAddress());
    } catch (e) {
      // The trace is a cross-check: its failure is said, and the query goes on.
      this.note(`trace of the query in ${state} failed: ${messageOf(e)}`);
    } finally {
      this.tracing = false;
      await this.live.release(tid);
    }
  }

  private async waitHeld(step: Extract<Step, { do: 'wait-held' }>): Promise<void> {
    const r = this.role(step.role);
    this.checkQueryThreadFree(r);
    // A transition that can no longer happen ends the wait at once; the reason is what was seen at that moment.
    let out: string | null = null;
    const settled = (): boolean => r.held || (out = this.ruledOut(r)) !== null;
    // Attached, the role's thread moves when the driver acts: give it time to.
    const timeoutMs = this.qmp === null ? Math.max(step.timeout_ms, this.opts.driverWaitMs ?? 120_000) : step.timeout_ms;
    const blockedAfter = Math.min(this.blockedAfterMs, timeoutMs / 2);
    if (!(await this.waitFor(settled, blockedAfter))) {
      const blocked = await this.diagnoseBlocked(r);
      if (blocked) throw blocked;
      if (!(await this.waitFor(settled, timeoutMs - blockedAfter))) {
        throw new MigraceError('REPLAY_TIMEOUT', `replay ${this.name}: role ${this.describe(r)} never arrived within ${timeoutMs / 1000} s${this.qmp === null ? ' (attached: the driver did not get there)' : ''}`);
      }
    }
    if (!r.held && out !== null) {
      if (r.spec.probe !== 'transition') throw new Unreachable(`${this.describe(r)} was not reached: ${out}`);
      throw new MigraceError('REPLAY', `replay ${this.name}: role ${this.describe(r)} can no longer arrive: ${out}`);
    }
    this.opts.progress?.(`${this.describe(r)} held (thread ${r.tid})`);
  }

  /** A reader waits in vain while the thread that serves queries is held by another role. */
  private checkQueryThreadFree(waiting: RoleState): void {
    if (waiting.spec.probe === 'transition' || waiting.held) return;
    const holder = [...this.roles.values()].find((h) => h.held && h.tid === QUERY_THREAD);
    if (holder) {
      throw new Infeasible(`${this.describe(waiting)} cannot arrive: thread ${QUERY_THREAD} serves query-migrate, and it is held as ${this.describe(holder)}; a query cannot be answered by the thread that makes the transition`);
    }
  }

  /**
   * Let a held thread run to the return of the function it is held in
   * (-exec-finish) and stop there. A stop for anything else on the way (a
   * breakpoint inside, a signal) means gdb gave the finish up and the
   * thread is not where the schedule holds it: that ends the replay, it is
   * not a return. gdb 13 names the finish "function-finished" where it
   * knows the function and gives no reason in a stripped QEMU
   * (docs/qemu-facts.md).
   */
  private async runToReturn(tid: number, what: string): Promise<void> {
    const mark = this.live.gdb.mark();
    await this.live.gdb.execute(`-exec-finish --thread ${tid}`);
    const stop = await this.live.guard(this.live.gdb.waitForStop(tid, 15_000, { since: mark }));
    if (stop.reason !== 'function-finished' && stop.reason !== null) {
      const where = stop.frame?.func ? ` in ${stop.frame.func}` : '';
      throw new MigraceError('REPLAY', `replay ${this.name}: ${what} was run to its function's return but stopped first (${stop.reason}${where})`);
    }
  }

  private async release(step: Extract<Step, { do: 'release' }>): Promise<void> {
    const r = this.role(step.role);
    if (!r.held || r.tid === null) throw new MigraceError('REPLAY', `replay ${this.name}: cannot release ${r.name}: it is not held`);
    this.mark('release', r.tid, r.name, step.until === 'return' ? 'schedule step: run to the return of the held function' : 'schedule step');
    const t = this.heldTransitions.get(r.tid);
    if (t) {
      this.heldTransitions.delete(r.tid);
      this.path.landed(t);
    }
    if (step.until === 'return') {
      await this.runToReturn(r.tid, r.name);
      this.mark('hold', r.tid, r.name, 'held at the return of the function it was held in');
      this.opts.progress?.(`${r.name} ran to the return and is held there`);
      return;
    }
    r.held = false;
    await this.live.release(r.tid);
    this.opts.progress?.(`${r.name} released`);
  }

  private async waitState(step: Extract<Step, { do: 'wait-state' }>): Promise<void> {
    const via = step.via === undefined ? null : this.role(step.via);
    if (via && (!via.held || via.tid === null)) throw new MigraceError('REPLAY', `replay ${this.name}: wait-state needs ${via.name} held to read memory through`);
    const table = this.opts.profile.status_table;
    let want: number | null;
    if (typeof step.equals === 'string') {
      want = statusValue(step.equals, table);
      if (want === null) throw new MigraceError('REPLAY', `replay ${this.name}: "${step.equals}" is not a state of table ${table}`);
    } else {
      const v = this.resolve(step.equals);
      if (v === null) throw new MigraceError('REPLAY', `replay ${this.name}: wait-state waits for ${step.equals.role}'s ${step.equals.of} state, but ${step.equals.role} has not bound`);
      // The number the target itself passed; the table only when gdb printed a name.
      want = v.value ?? (v.name !== null ? statusValue(v.name, table) : null);
      if (want === null) throw new MigraceError('REPLAY', `replay ${this.name}: ${step.equals.role}'s ${step.equals.of} state has no number to wait for`);
    }
    const began = Date.now();
    // The address comes with the first transition (none -> setup, inside `migrate`).
    if (!(await this.waitFor(() => this.stateAddr !== null, step.timeout_ms))) {
      throw new MigraceError('REPLAY_TIMEOUT', `replay ${this.name}: no transition within ${step.timeout_ms / 1000} s, so the state's address is unknown`);
    }
    await this.waitMemory(this.stateAddress(), want, via?.tid ?? null, step.timeout_ms - (Date.now() - began));
  }

  private async waitReply(step: Extract<Step, { do: 'wait-reply' }>): Promise<void> {
    // Attached, the reply goes to the driver: the reader's publish, already probed, is what migrace sees of it.
    if (this.qmp === null) return;
    if (!this.pendingReply) throw new MigraceError('REPLAY', `replay ${this.name}: wait-reply without a query`);
    await this.live.guard(withTimeout(this.pendingReply, step.timeout_ms,
      () => new MigraceError('REPLAY_TIMEOUT', `replay ${this.name}: no reply to query-migrate within ${step.timeout_ms / 1000} s`)));
  }

  /**
   * Polling through the probes here would open new windows for the
   * migration's remaining transitions and could race for real; the forced
   * interleaving is over. Wait for the final transition, then take the final
   * reply once (as many as observe asks for).
   */
  private async finish(step: Extract<Step, { do: 'finish' }>): Promise<void> {
    if (!(await this.waitFor(() => this.finalSeen !== null, step.timeout_ms))) {
      throw new MigraceError('REPLAY_TIMEOUT', `replay ${this.name}: the migration did not finish within ${step.timeout_ms / 1000} s (${this.path.text()})`);
    }
    if (this.qmp === null) {
      // Attached, there is no final query to take, and the driver may stop QEMU now (libvirt does after a save or a migration).
      this.live.expectExit();
      return;
    }
    // The probe fired at migrate_set_state's entry: the final reply must come after the swap.
    const fin = this.finalSeen!;
    if (fin.data.addr && fin.data.new.value !== null) await this.waitMemory(fin.data.addr, fin.data.new.value, null, step.timeout_ms);
    await this.settleSamplings();
    const final = this.stateLabel(fin.data.new);
    for (let i = 0; i < (this.observing ?? 1); i++) {
      if (i === 0 && this.observing !== null && this.opts.tracer?.wants(final)) this.traceState = final;
      await this.ask();
    }
    this.traceState = null;
  }

  /** Resolves true once cond holds, false after ms. */
  private async waitFor(cond: () => boolean, ms: number): Promise<boolean> {
    if (cond()) return true;
    return this.live.guard(new Promise<boolean>((resolve) => {
      const check = (): void => {
        if (cond()) done(true);
      };
      const timer = setTimeout(() => done(false), ms);
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        this.changed.delete(check);
        resolve(ok);
      };
      this.changed.add(check);
    }));
  }

  /** Why a role has not arrived: a thread of the target waiting on a lock while another role is held. */
  private async diagnoseBlocked(waiting: RoleState): Promise<Infeasible | null> {
    const heldRoles = [...this.roles.values()].filter((r) => r.held);
    if (heldRoles.length === 0) return null;
    const heldTids = new Set(heldRoles.map((r) => r.tid));
    for (const t of await this.live.gdb.threadInfo()) {
      if (heldTids.has(t.id)) continue;
      // Only threads that can play the role: the main thread serves queries.
      if (waiting.spec.probe !== 'transition' && t.id !== QUERY_THREAD) continue;
      const lock = await lockWaitOf(this.live.gdb, t.id);
      if (lock) {
        return new Infeasible(`${this.describe(waiting)} cannot arrive: thread ${t.id}${t.name ? ` "${t.name}"` : ''} waits in ${lock.func} (${lock.chain}) while ${heldRoles.map((h) => this.describe(h)).join(', ')} is held; the held thread owns the lock`, lock);
      }
    }
    return null;
  }

  /**
   * Poll the state word until it holds `want`. Through a stopped thread when
   * one is given; otherwise gdb reads memory with every thread running
   * (no --thread: a running thread cannot be selected).
   */
  private async waitMemory(addr: string, want: number, tid: number | null, timeoutMs: number): Promise<void> {
    if (!/^0x[0-9a-f]+$/.test(addr)) throw new MigraceError('REPLAY', `replay ${this.name}: not an address: ${addr}`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const last = await this.live.gdb.evaluate(`*(int*)${addr}`, tid === null ? {} : { thread: tid, frame: 0 });
      if (parseInteger(last) === want) return;
      if (Date.now() > deadline) {
        throw new MigraceError('REPLAY_TIMEOUT', `replay ${this.name}: the state at ${addr} never became ${want} within ${timeoutMs / 1000} s; last read ${last}`);
      }
      await this.live.guard(sleep(2));
    }
  }

  private stateAddress(): string {
    for (const r of this.roles.values()) {
      if (r.event?.kind === 'transition' && r.event.data.addr) return r.event.data.addr;
    }
    if (this.stateAddr) return this.stateAddr;
    throw new MigraceError('REPLAY', `replay ${this.name}: no transition has been seen yet, so the state's address is unknown`);
  }
}

/** The replay's session analyzed like any recording: the finding of the reader's read, if any. */
function judge(store: TraceStore, sessionId: number, roles: ReadonlyMap<string, RoleState>): Finding | null {
  const analysis = findInterleavings(store.session(sessionId), store.threads(sessionId), store.events(sessionId));
  const reader = [...roles.values()].find((r) => r.spec.probe === 'read' || r.spec.probe === 'query');
  return analysis.findings.find((f) => reader?.event && f.read?.seq === reader.event.seq) ?? analysis.findings[0] ?? null;
}

/** A schedule's own probes hold for the build they were found in only: their addresses are that build's. */
async function checkScheduleBuild(schedule: Schedule, binary: string): Promise<void> {
  if (!schedule.probes?.length || !schedule.build_id) return;
  const { buildId } = await readElfInfo(binary);
  if (buildId !== schedule.build_id) {
    throw new MigraceError('BAD_INPUT', `schedule ${schedule.name} carries probes for build-id ${schedule.build_id}, but ${binary} is ${buildId ?? 'a binary without a build-id'}; their addresses would be wrong here`);
  }
}

export async function replay(opts: ReplayOptions): Promise<ReplayResult> {
  const { store, target, schedule } = opts;
  const began = Date.now();
  const profile = profileWithScheduleProbes(opts.profile, schedule);
  try {
    checkScheduleFor(schedule, profile);
    await checkScheduleBuild(schedule, target.binary);
  } catch (e) {
    await target.dispose().catch(() => undefined);
    throw e;
  }
  const { sessionId, writer } = await openRun(store, target, {
    label: opts.label, origin: 'replay', target: target.info, profile,
    meta: { schedule, scenario: schedule.name, args: target.args, ...opts.meta },
  });
  let live: LiveTarget | null = null;
  let qmp: QmpClient | null = null;
  let run: ReplayRun | null = null;
  let error: MigraceError | null = null;
  let infeasible: string | null = null;
  let lock: LockWait | null = null;
  let unreachable: string | null = null;
  let unlisten = (): void => undefined;
  try {
    live = await LiveTarget.start({ store, sessionId, writer, target, profile, gdbPath: opts.gdbPath, progress: opts.progress, attachPid: opts.attachPid });
    unlisten = failOnAbort(live, opts.signal);
    if (opts.attachPid === undefined) qmp = await connectQmp(live, target);
    else opts.progress?.(`attached to ${opts.attachPid} under gdb; its driver migrates and queries, migrace holds and releases`);
    run = new ReplayRun(live, qmp, { ...opts, profile });
    await run.run();
    throwIfRunFailed(live, target);
    live.expectExit();
    await qmp?.execute('quit', undefined, { timeoutMs: 5_000 }).catch(() => undefined);
  } catch (e) {
    if (e instanceof Infeasible) {
      infeasible = e.message;
      lock = e.lock;
    }
    else if (e instanceof Unreachable) unreachable = e.message;
    else error = await rootCause(live, e);
  } finally {
    if (infeasible || unreachable) {
      try {
        store.updateSession(sessionId, { meta: infeasible ? { infeasible } : { unreachable } });
      } catch {
        /* the close below reports the storage problem */
      }
    }
    // A storage failure met while closing ends the replay too.
    error = await endRun({ store, sessionId, writer, target, live, qmp }, error);
    unlisten();
  }

  let finding: Finding | null = null;
  let outcome: ReplayOutcomeClass = 'aborted';
  if (infeasible && !error) outcome = 'infeasible';
  else if (unreachable && !error) outcome = 'unreachable';
  else if (!error && run) {
    finding = judge(store, sessionId, run.roles);
    outcome = finding ? finding.class : 'no-crossing';
  }
  const transitions: LandedTransition[] = (run?.path.moves ?? []).map((e) => ({
    seq: e.seq, tid: e.thread ?? -1, old: e.data.old, new: e.data.new, after_step: run?.actionAt.get(e.seq) ?? -1,
  }));
  return {
    sessionId, state: error ? 'aborted' : 'complete', schedule: schedule.name, outcome,
    reason: (error ? null : infeasible ?? unreachable) ?? error?.message ?? null, error: error?.message ?? null,
    errorCode: error?.code ?? null, finding, verdict: finding?.reply ?? null, reply: run?.reply ?? null,
    transitions, lock: infeasible && !error ? lock : null, attachedPid: opts.attachPid ?? null, wallMs: Date.now() - began,
  };
}
