import { MigraceError, messageOf } from '../trace/errors.js';
import type { TraceStore } from '../trace/store.js';
import type { TraceEvent } from '../trace/schema.js';
import { statusValue } from '../trace/status.js';
import { LiveTarget, type ProbeHit } from '../recorder/live.js';
import type { Profile } from '../recorder/probes/profile.js';
import type { PreparedTarget } from '../recorder/targets/types.js';
import { connectQmp, endRun, failOnAbort, FINAL, openRun, queryOnce, rootCause, sleep } from '../recorder/record.js';
import { parseInteger } from '../recorder/values.js';
import { findInterleavings } from './interleavings.js';
import { checkScheduleFor, type Schedule, type Role, type Step } from './schedule.js';
import type { Finding, Verdict } from './types.js';

/**
 * Deterministic live replay: the schedule's roles bind to threads at their
 * first matching probe hit, held threads stay stopped while the others run
 * (gdb non-stop), and a held reader is released only once the writer's
 * transition is visible in memory. The run is recorded as a new session and
 * judged by the same analyzer as any recording.
 */

export type ReplayOutcomeClass = 'manifested' | 'benign' | 'window-only' | 'no-crossing' | 'infeasible';

export interface ReplayResult {
  sessionId: number;
  state: 'complete' | 'aborted';
  schedule: string;
  outcome: ReplayOutcomeClass | null;
  /** Why the schedule could not happen, or why the run failed. */
  reason: string | null;
  error: string | null;
  finding: Finding | null;
  verdict: Verdict | null;
  /** The body of the forced query's reply. */
  reply: unknown;
  wallMs: number;
}

export interface ReplayOptions {
  store: TraceStore;
  target: PreparedTarget;
  profile: Profile;
  schedule: Schedule;
  label: string;
  gdbPath?: string;
  pollMs?: number;
  progress?: (msg: string) => void;
  signal?: AbortSignal;
  meta?: Record<string, unknown>;
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

class Infeasible extends Error {}


/** Reject with `err()` after ms, and leave no timer behind when p settles first. */
function withTimeout<T>(p: Promise<T>, ms: number, err: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(err()), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function matches(role: Role, hit: ProbeHit): boolean {
  if (hit.probe.role !== role.probe) return false;
  const e = hit.event;
  const w = role.when;
  if (e.kind === 'transition') {
    if (w.old !== undefined && e.data.old?.name !== w.old) return false;
    if (w.new !== undefined && e.data.new.name !== w.new) return false;
    return true;
  }
  if (e.kind === 'read' || e.kind === 'publish') {
    return w.value === undefined || e.data.value.name === w.value;
  }
  return true;
}

function describeRole(role: RoleState): string {
  const w = role.spec.when;
  const what = role.spec.probe === 'transition'
    ? `migrate_set_state(${w.old ?? '*'} -> ${w.new ?? '*'})`
    : `the ${role.spec.probe} probe${w.value ? ` with value ${w.value}` : ''}`;
  return `${role.name} (${what})`;
}

export async function replay(opts: ReplayOptions): Promise<ReplayResult> {
  const { store, target, profile, schedule } = opts;
  const began = Date.now();
  try {
    checkScheduleFor(schedule, profile);
  } catch (e) {
    await target.dispose().catch(() => undefined);
    throw e;
  }
  const { sessionId, writer } = await openRun(store, target, {
    label: opts.label, origin: 'replay', target: target.info, profile,
    meta: { schedule, scenario: schedule.name, args: target.args, ...opts.meta },
  });
  const roles = new Map<string, RoleState>(
    Object.entries(schedule.roles).map(([name, spec]) => [name, { name, spec, armed: false, tid: null, held: false, event: null }]),
  );
  let live: LiveTarget | null = null;
  let qmp: Awaited<ReturnType<typeof connectQmp>> | null = null;
  let error: MigraceError | null = null;
  let infeasible: string | null = null;
  let reply: unknown = null;
  let queries = 0;
  let pendingReply: Promise<Record<string, unknown>> | null = null;
  let finalSeen: TraceEvent | null = null;
  const changed = new Set<() => void>();
  const notify = (): void => {
    for (const f of [...changed]) f();
  };

  const hold = (role: RoleState, tid: number, why: string): void => {
    const t = live!.now();
    live!.push({ kind: 'hold', t_ns: t, wall: live!.wallAt(t), thread: tid, probe: null, pc: null, func: null, file: null, line: null,
      data: { role: role.name, reason: why } });
  };

  /** Resolves true once cond holds, false after ms. */
  const waitFor = async (cond: () => boolean, ms: number): Promise<boolean> => {
    if (cond()) return true;
    return live!.guard(new Promise<boolean>((resolve) => {
      const check = (): void => {
        if (cond()) done(true);
      };
      const timer = setTimeout(() => done(false), ms);
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        changed.delete(check);
        resolve(ok);
      };
      changed.add(check);
    }));
  };

  const role = (name: string): RoleState => roles.get(name)!;

  /** Why a role has not arrived: a thread of the target waiting on a lock while another role is held. */
  const diagnoseBlocked = async (waiting: RoleState): Promise<string | null> => {
    const heldRoles = [...roles.values()].filter((r) => r.held);
    if (heldRoles.length === 0) return null;
    const heldTids = new Set(heldRoles.map((r) => r.tid));
    for (const t of await live!.gdb.threadInfo()) {
      if (heldTids.has(t.id)) continue;
      // Only threads that can play the role: the main thread serves queries.
      if (waiting.spec.probe !== 'transition' && t.id !== 1) continue;
      let stopped = false;
      try {
        const mark = live!.gdb.mark();
        await live!.gdb.interrupt(t.id);
        // Only our interrupt's stop: a probe hit of this thread belongs to the hit handler.
        await live!.gdb.waitForStop(t.id, 5_000, { since: mark, reason: 'signal-received' });
        stopped = true;
        const frames = await live!.gdb.stack(t.id);
        const lockFrame = frames.find((f) => LOCK_WAIT.test(f.func ?? ''));
        if (lockFrame) {
          const chain = frames.slice(0, 6).map((f) => f.func ?? '??').join(' <- ');
          return `${describeRole(waiting)} cannot arrive: thread ${t.id}${t.name ? ` "${t.name}"` : ''} waits in ${lockFrame.func} (${chain}) while ${heldRoles.map(describeRole).join(', ')} is held; the held thread owns the lock`;
        }
      } catch {
        /* a thread that exited or cannot be stopped tells us nothing */
      } finally {
        if (stopped) await live!.gdb.continueThread(t.id).catch(() => undefined);
      }
    }
    return null;
  };

  const run = async (step: Step): Promise<void> => {
    switch (step.do) {
      case 'arm':
        role(step.role).armed = true;
        return;
      case 'migrate':
        opts.progress?.(`migrate ${target.migrateUri}`);
        qmp!.execute('migrate', { uri: target.migrateUri }, { timeoutMs: 600_000 }).catch((e) => {
          live?.fail(e instanceof MigraceError ? e : new MigraceError('QMP', messageOf(e)));
        });
        return;
      case 'query': {
        queries++;
        const hasQueryProbe = profile.probes.some((p) => p.role === 'query');
        pendingReply = queryOnce(live!, qmp!, `q${queries}`, hasQueryProbe, 600_000);
        pendingReply.then((r) => { reply = r; }, () => undefined);
        return;
      }
      case 'wait-held': {
        const r = role(step.role);
        const blockedAfter = Math.min(2_000, step.timeout_ms / 2);
        if (!(await waitFor(() => r.held, blockedAfter))) {
          const why = await diagnoseBlocked(r);
          if (why) throw new Infeasible(why);
          if (!(await waitFor(() => r.held, step.timeout_ms - blockedAfter))) {
            throw new MigraceError('REPLAY_TIMEOUT', `replay ${schedule.name}: role ${describeRole(r)} never arrived within ${step.timeout_ms / 1000} s`);
          }
        }
        opts.progress?.(`${r.name} held (thread ${r.tid})`);
        return;
      }
      case 'release': {
        const r = role(step.role);
        if (!r.held || r.tid === null) throw new MigraceError('REPLAY', `replay ${schedule.name}: cannot release ${r.name}: it is not held`);
        const t = live!.now();
        live!.push({ kind: 'release', t_ns: t, wall: live!.wallAt(t), thread: r.tid, probe: null, pc: null, func: null, file: null, line: null,
          data: { role: r.name, reason: 'schedule step' } });
        r.held = false;
        await live!.release(r.tid);
        opts.progress?.(`${r.name} released`);
        return;
      }
      case 'wait-state': {
        const via = role(step.via);
        if (!via.held || via.tid === null) throw new MigraceError('REPLAY', `replay ${schedule.name}: wait-state needs ${via.name} held to read memory through`);
        const want = statusValue(step.equals, profile.status_table);
        if (want === null) throw new MigraceError('REPLAY', `replay ${schedule.name}: "${step.equals}" is not a state of table ${profile.status_table}`);
        await waitMemory(stateAddress(), want, via.tid, step.timeout_ms);
        return;
      }
      case 'wait-reply': {
        if (!pendingReply) throw new MigraceError('REPLAY', `replay ${schedule.name}: wait-reply without a query`);
        await live!.guard(withTimeout(pendingReply, step.timeout_ms,
          () => new MigraceError('REPLAY_TIMEOUT', `replay ${schedule.name}: no reply to query-migrate within ${step.timeout_ms / 1000} s`)));
        return;
      }
      case 'finish': {
        // Polling through the probes here would open new windows for the
        // migration's remaining transitions and could race for real; the
        // forced interleaving is over. Wait for the final transition, then
        // take the final reply once.
        if (!(await waitFor(() => finalSeen !== null, step.timeout_ms))) {
          throw new MigraceError('REPLAY_TIMEOUT', `replay ${schedule.name}: the migration did not finish within ${step.timeout_ms / 1000} s`);
        }
        // The probe fired at migrate_set_state's entry: the final reply must come after the swap.
        const fin = finalSeen as unknown as TraceEvent;
        if (fin.kind === 'transition' && fin.data.addr && fin.data.new.value !== null) {
          await waitMemory(fin.data.addr, fin.data.new.value, null, step.timeout_ms);
        }
        queries++;
        await queryOnce(live!, qmp!, `q${queries}`, profile.probes.some((p) => p.role === 'query'));
        return;
      }
    }
  };

  /**
   * Poll the state word until it holds `want`. Through a stopped thread when
   * one is given; otherwise gdb reads memory with every thread running
   * (no --thread: a running thread cannot be selected).
   */
  const waitMemory = async (addr: string, want: number, tid: number | null, timeoutMs: number): Promise<void> => {
    if (!/^0x[0-9a-f]+$/.test(addr)) throw new MigraceError('REPLAY', `replay ${schedule.name}: not an address: ${addr}`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const last = await live!.gdb.evaluate(`*(int*)${addr}`, tid === null ? {} : { thread: tid, frame: 0 });
      if (parseInteger(last) === want) return;
      if (Date.now() > deadline) {
        throw new MigraceError('REPLAY_TIMEOUT', `replay ${schedule.name}: the state at ${addr} never became ${want} within ${timeoutMs / 1000} s; last read ${last}`);
      }
      await live!.guard(sleep(2));
    }
  };

  const stateAddress = (): string => {
    for (const r of roles.values()) {
      if (r.event?.kind === 'transition' && r.event.data.addr) return r.event.data.addr;
    }
    throw new MigraceError('REPLAY', `replay ${schedule.name}: no transition role has bound yet, so the state's address is unknown`);
  };

  try {
    live = await LiveTarget.start({ store, sessionId, writer, target, profile, gdbPath: opts.gdbPath, progress: opts.progress });
    failOnAbort(live, opts.signal);
    live.setHandler((hit) => {
      if (hit.event.kind === 'transition' && FINAL.has(hit.event.data.new.name ?? '')) {
        finalSeen = hit.event;
        notify();
      }
      for (const r of roles.values()) {
        if (!r.armed || (r.tid !== null && r.tid !== hit.tid) || !matches(r.spec, hit)) continue;
        r.armed = false;
        r.tid = hit.tid;
        r.event = hit.event;
        r.held = true;
        hold(r, hit.tid, `held at ${hit.probe.name} (seq ${hit.event.seq})`);
        notify();
        return 'hold';
      }
      return 'continue';
    });
    qmp = await connectQmp(live, target);
    for (const step of schedule.steps) await run(step);
    live.expectExit();
    await qmp.execute('quit', undefined, { timeoutMs: 5_000 }).catch(() => undefined);
  } catch (e) {
    if (e instanceof Infeasible) infeasible = e.message;
    else error = await rootCause(live, e);
  } finally {
    if (infeasible) store.updateSession(sessionId, { meta: { infeasible } });
    await endRun({ store, sessionId, writer, target, live, qmp }, error);
  }

  let finding: Finding | null = null;
  let outcome: ReplayOutcomeClass | null = null;
  if (infeasible) outcome = 'infeasible';
  else if (!error) {
    const analysis = findInterleavings(store.session(sessionId), store.threads(sessionId), store.events(sessionId));
    const reader = [...roles.values()].find((r) => r.spec.probe === 'read' || r.spec.probe === 'query');
    finding = analysis.findings.find((f) => reader?.event && f.read?.seq === reader.event.seq) ?? analysis.findings[0] ?? null;
    outcome = finding ? finding.class : 'no-crossing';
  }
  return {
    sessionId, state: error ? 'aborted' : 'complete', schedule: schedule.name, outcome,
    reason: infeasible ?? error?.message ?? null, error: error?.message ?? null,
    finding, verdict: finding?.reply ?? null, reply, wallMs: Date.now() - began,
  };
}
