import { zodProblems } from '../trace/zod-problems.js';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { jsonProblem, MigraceError } from '../trace/errors.js';
import { normalizeStatusName, STATUS_TABLES, statusValue } from '../trace/status.js';
import { ProbeSchema, type Probe, type Profile } from '../recorder/probes/profile.js';

/**
 * A replay schedule: which threads play which role, and the order in which
 * they are held and released. Nothing here is specific to setup -> active:
 * a schedule names any transition and any read point, and may name a state
 * by what another role saw ("the writer's old state") rather than by name,
 * so one schedule fits builds whose state machines differ.
 *
 * Besides holding and releasing, a schedule drives the migration the way a
 * scenario needs: capabilities and parameters before `migrate`, cancel,
 * migrate-continue, the start of postcopy, a destination that dies, and
 * `observe`, which takes undisturbed replies while the migration thread is
 * stopped at each of its transitions (the hunt's baseline). A schedule may
 * carry probes of its own (a read point the profile does not list), tied to
 * the build they were found in.
 *
 * Parts: the schema (roles, state references, steps, and the checks that
 * need the whole schedule); the built-in scenarios, all made by
 * forceAfterRead(); checkScheduleFor(), which checks a schedule against the
 * profile it will run with, and profileWithScheduleProbes(); parsing and
 * loading.
 */

const STATUS_NAME = /^[a-z][a-z-]*$/;
const StatusName = z.string().regex(STATUS_NAME, 'a MigrationStatus name such as "setup" or "postcopy-active"');

/** Whether a name read from a trace can stand in a schedule (imports carry whatever their source said). */
export function isStatusName(name: string): boolean {
  return STATUS_NAME.test(name);
}

const RoleName = z.string().regex(/^[a-z][\w-]*$/)
  // Schedules are plain objects: a role called "toString" would be found on every one of them.
  .refine((n) => !(n in Object.prototype), 'is a name every JavaScript object already has; pick another role name');

/**
 * A state named by what a transition role bound to: its `old` (the state it
 * moves from) or its `new`. Resolved when that role binds, so it holds on
 * any build (the step into completed starts at active on 7.2, at device on 10.x).
 */
export const StateRefSchema = z.object({ role: RoleName, of: z.enum(['old', 'new']) }).strict();
export type StateRef = z.infer<typeof StateRefSchema>;
const StateSpec = z.union([StatusName, StateRefSchema], { error: 'a MigrationStatus name such as "setup", or {"role": ROLE, "of": "old" | "new"}' });
export type StateSpec = z.infer<typeof StateSpec>;

/** A probe name as profiles spell them. */
const ProbeName = z.string().min(1).max(128).regex(/^[\w.@+-]+$/, 'a probe name from the profile ("migrace probes" lists them)');

export const RoleSchema = z.object({
  /** The probe role whose first matching hit binds this role to a thread. */
  probe: z.enum(['transition', 'read', 'publish', 'query']),
  /** Only this probe of that role, by its name in the profile (one read point of several). */
  at: ProbeName.optional(),
  /** Values that must match for the hit to bind: transition old/new, read/publish value. */
  when: z.object({ old: StatusName.optional(), new: StatusName.optional(), value: StateSpec.optional() }).strict().default({}),
});
export type Role = z.infer<typeof RoleSchema>;

const Timeout = z.number().int().positive().max(600_000).default(15_000);

/** QAPI names of capabilities and parameters (postcopy-ram, max-bandwidth). */
const QapiName = z.string().regex(/^[a-z][a-z0-9-]{0,63}$/, 'a QAPI name such as "postcopy-ram" or "max-bandwidth"');
const ParameterValue = z.union([z.number().int().nonnegative().max(2 ** 53), z.boolean(), z.string().max(256)]);

export const StepSchema = z.discriminatedUnion('do', [
  /** From now on, the role's first matching hit holds its thread there. */
  z.object({ do: z.literal('arm'), role: RoleName }),
  /** Send `migrate` (without waiting: the writer may be held inside it). */
  z.object({ do: z.literal('migrate') }),
  /** Send one `query-migrate` (its reply arrives once the reader goes on). */
  z.object({ do: z.literal('query') }),
  /** Wait until the role's thread is held at its probe. */
  z.object({ do: z.literal('wait-held'), role: RoleName, timeout_ms: Timeout }),
  /** Let the role's thread go on. */
  /**
   * Let a held role go; with `until: 'return'`, only to the return of the
   * function it is held in (a writer's migrate_set_state: its
   * compare-and-swap done), and hold it there, so one transition lands and
   * not the ones after it.
   */
  z.object({ do: z.literal('release'), role: RoleName, until: z.literal('return').optional() }),
  /**
   * Wait until the state in memory is `equals`, read through a thread that is
   * held (`via`): the writer's release is only visible once its store lands.
   * Without `via` gdb reads the memory while every thread runs.
   */
  z.object({ do: z.literal('wait-state'), equals: StateSpec, via: RoleName.optional(), timeout_ms: Timeout }),
  /** Wait for the reply of the last query. */
  z.object({ do: z.literal('wait-reply'), timeout_ms: Timeout }),
  /** Let the migration finish: wait for its final state in memory, then take the final reply once. */
  z.object({ do: z.literal('finish'), timeout_ms: Timeout }),
  /** migrate-set-capabilities before `migrate`; `destination`: on the destination too (postcopy-ram needs both). */
  z.object({ do: z.literal('set-capabilities'), capabilities: z.record(QapiName, z.boolean()), destination: z.boolean().default(false) }),
  /** migrate-set-parameters (max-bandwidth to keep a migration active while a scenario acts on it). */
  z.object({ do: z.literal('set-parameters'), parameters: z.record(QapiName, ParameterValue) }),
  /** migrate_cancel. */
  z.object({ do: z.literal('cancel') }),
  /** migrate-continue from `state` (pause-before-switchover). */
  z.object({ do: z.literal('continue'), state: StatusName }),
  /** migrate-start-postcopy. */
  z.object({ do: z.literal('start-postcopy') }),
  /** Kill the destination while the source migrates: the migration fails. */
  z.object({ do: z.literal('kill-destination') }),
  /** Let time pass with the held threads held (a control: holding alone must change nothing). */
  z.object({ do: z.literal('pause'), ms: z.number().int().nonnegative().max(60_000) }),
  /**
   * From now on, hold every transition of a thread other than the query
   * thread at its entry, take `queries` undisturbed replies in the state it
   * leaves, and let it go; finish takes as many of the final state.
   */
  z.object({ do: z.literal('observe'), queries: z.number().int().min(1).max(20).default(3) }),
]);

/** Steps that act on the migration (the others wait, hold or query): what a transition is attributed to. */
export const ACTION_STEPS: ReadonlySet<Step['do']> = new Set([
  'migrate', 'release', 'set-capabilities', 'set-parameters', 'cancel', 'continue', 'start-postcopy', 'kill-destination',
]);
export type Step = z.infer<typeof StepSchema>;

export const ScheduleSchema = z.object({
  format: z.literal('migrace-schedule'),
  version: z.literal(1),
  name: z.string().regex(/^[\w.-]+$/),
  description: z.string().default(''),
  roles: z.record(RoleName, RoleSchema),
  steps: z.array(StepSchema).min(1),
  /** Probes the schedule needs beyond the profile's (a read point by name); they replace profile probes of the same name. */
  probes: z.array(ProbeSchema).max(16).optional(),
  /** The build the probes were found in (their addresses are that build's): replay refuses another. */
  build_id: z.string().regex(/^[0-9a-f]{2,128}$/).nullable().optional(),
}).superRefine((s, ctx) => {
  const defined = (name: string): boolean => Object.hasOwn(s.roles, name);
  const undefinedRole = (name: string): string => `names role "${name}", which "roles" does not define`;
  const checkRef = (ref: StateSpec | undefined, path: (string | number)[]): void => {
    if (ref === undefined || typeof ref === 'string') return;
    if (!defined(ref.role)) ctx.addIssue({ code: 'custom', path: [...path, 'role'], message: undefinedRole(ref.role) });
    else if (s.roles[ref.role]!.probe !== 'transition') {
      ctx.addIssue({ code: 'custom', path: [...path, 'role'], message: `names role "${ref.role}", which is not a transition role: only a transition has an old and a new state` });
    }
  };
  for (const [name, role] of Object.entries(s.roles)) checkRef(role.when.value, ['roles', name, 'when', 'value']);
  s.steps.forEach((step, i) => {
    for (const key of ['role', 'via'] as const) {
      const name = (step as Record<string, unknown>)[key];
      if (typeof name === 'string' && !defined(name)) {
        ctx.addIssue({ code: 'custom', path: ['steps', i, key], message: undefinedRole(name) });
      }
    }
    if (step.do === 'wait-state') checkRef(step.equals, ['steps', i, 'equals']);
  });
  if (s.probes?.length && s.build_id === undefined) {
    ctx.addIssue({ code: 'custom', path: ['build_id'], message: 'a schedule with probes names the build they were found in (its build-id, or null)' });
  }
});
export type Schedule = z.infer<typeof ScheduleSchema>;

/**
 * The generic forcing of a read-then-transition race: hold the writer at
 * migrate_set_state(old -> new), query, hold the reader right after its read
 * of `old`, release the writer until the state is `new`, release the reader.
 * A side the caller leaves out is taken from the writer's own hit: the
 * writer binds at any transition into `new` (or out of `old`), and the
 * reader's value and the state waited for follow what it bound to.
 */
export function forceAfterRead(name: string, description: string, writer: { old?: string; new?: string }): Schedule {
  const o = writer.old === undefined ? undefined : normalizeStatusName(writer.old);
  const n = writer.new === undefined ? undefined : normalizeStatusName(writer.new);
  const ofWriter = (of: 'old' | 'new'): StateRef => ({ role: 'writer', of });
  return parseSchedule({
    format: 'migrace-schedule',
    version: 1,
    name,
    description,
    roles: {
      writer: { probe: 'transition', when: { ...(o !== undefined && { old: o }), ...(n !== undefined && { new: n }) } },
      reader: { probe: 'read', when: { value: o ?? ofWriter('old') } },
    },
    steps: [
      { do: 'arm', role: 'writer' },
      { do: 'migrate' },
      { do: 'wait-held', role: 'writer' },
      { do: 'arm', role: 'reader' },
      { do: 'query' },
      { do: 'wait-held', role: 'reader' },
      { do: 'release', role: 'writer' },
      { do: 'wait-state', equals: n ?? ofWriter('new'), via: 'reader' },
      { do: 'release', role: 'reader' },
      { do: 'wait-reply' },
      { do: 'finish' },
    ],
  }, `the schedule for ${o ?? '*'} -> ${n ?? '*'}`);
}

/** forceAfterRead for one fixed transition (a finding's, a hazard's). */
export function readThenTransition(name: string, oldState: string, newState: string, description: string): Schedule {
  return forceAfterRead(name, description, { old: oldState, new: newState });
}

const BUILTIN: Record<string, () => Schedule> = {
  lp1994002: () => readThenTransition('lp1994002', 'setup', 'active',
    'LP#1994002: query-migrate reads setup for its switch, the migration thread moves setup -> active, the status published is active without ram'),
  'into-completed': () => forceAfterRead('into-completed',
    'the step into completed, whichever state it starts from (active on QEMU 5.2/7.2 and minimig, device on 10.x): the switch reads that state, the migration thread completes before populate_time_info/populate_ram_info re-read it (still in QEMU 7.2)',
    { new: 'completed' }),
};

/** Old names that keep working: active-completed named the step into completed before 10.x added the device step. */
export const SCENARIO_ALIASES: Readonly<Record<string, string>> = { 'active-completed': 'into-completed' };

/** Every name --scenario takes, the old ones included (sessions recorded before a rename still name them). */
export const SCENARIOS: Readonly<Record<string, () => Schedule>> = {
  ...BUILTIN,
  ...Object.fromEntries(Object.entries(SCENARIO_ALIASES).map(([alias, name]) => [alias, BUILTIN[name]!])),
};

/** "lp1994002, into-completed (or active-completed)": for help texts and errors. */
export function scenarioList(): string {
  return Object.keys(BUILTIN).map((name) => {
    const aliases = Object.keys(SCENARIO_ALIASES).filter((a) => SCENARIO_ALIASES[a] === name);
    return aliases.length ? `${name} (or ${aliases.join(', ')})` : name;
  }).join(', ');
}

export function builtinSchedule(name: string): Schedule {
  const make = Object.hasOwn(SCENARIOS, name) ? SCENARIOS[name] : undefined;
  if (!make) throw new MigraceError('USAGE', `unknown scenario "${name}" (known: ${scenarioList()})`);
  return make();
}

/**
 * The profile a schedule runs with: its own probes added, replacing the
 * profile's of the same name. They come first: of two probes at one address
 * gdb reports the breakpoint made first, and the schedule's read point must
 * be the one hit (a re-read whose next instruction is a publish store).
 */
export function profileWithScheduleProbes(profile: Profile, schedule: Schedule): Profile {
  if (!schedule.probes?.length) return profile;
  const own = new Map<string, Probe>(schedule.probes.map((p) => [p.name, p]));
  return { ...profile, probes: [...own.values(), ...profile.probes.filter((p) => !own.has(p.name))] };
}

/**
 * Check a schedule against the profile it will run with, before anything
 * starts: every state it names exists in the target's MigrationStatus table,
 * and every role's probe is in the profile. Otherwise a typo would only show
 * as a role that "never arrived".
 */
export function checkScheduleFor(schedule: Schedule, profile: Profile): void {
  const where = `schedule ${schedule.name}`;
  const table = profile.status_table;
  const notAState = (state: string): string => `"${state}", not a MigrationStatus of this target (table ${table}: ${STATUS_TABLES[table].join(', ')})`;
  for (const [name, role] of Object.entries(schedule.roles)) {
    const probes = profile.probes.filter((p) => p.role === role.probe);
    if (probes.length === 0) {
      throw new MigraceError('BAD_INPUT', `${where}: roles.${name}.probe is "${role.probe}", but the profile has no ${role.probe} probe`);
    }
    if (role.at !== undefined && !probes.some((p) => p.name === role.at)) {
      const other = profile.probes.find((p) => p.name === role.at);
      throw new MigraceError('BAD_INPUT', other
        ? `${where}: roles.${name}.at is "${role.at}", a ${other.role} probe, but the role binds at a ${role.probe} probe`
        : `${where}: roles.${name}.at is "${role.at}", but the profile's ${role.probe} probes are ${probes.map((p) => p.name).join(', ')}`);
    }
    for (const [key, state] of Object.entries(role.when)) {
      if (typeof state === 'string' && statusValue(state, table) === null) {
        throw new MigraceError('BAD_INPUT', `${where}: roles.${name}.when.${key} is ${notAState(state)}`);
      }
    }
  }
  schedule.steps.forEach((step, i) => {
    if (step.do === 'wait-state' && typeof step.equals === 'string' && statusValue(step.equals, table) === null) {
      throw new MigraceError('BAD_INPUT', `${where}: steps.${i}.equals is ${notAState(step.equals)}`);
    }
    if (step.do === 'continue' && statusValue(step.state, table) === null) {
      throw new MigraceError('BAD_INPUT', `${where}: steps.${i}.state is ${notAState(step.state)}`);
    }
  });
}

export function parseSchedule(data: unknown, source: string): Schedule {
  const parsed = ScheduleSchema.safeParse(data);
  if (!parsed.success) {
    throw new MigraceError('BAD_INPUT', `${source}: ${zodProblems(parsed.error)}`);
  }
  return parsed.data;
}

export function loadScheduleFile(path: string): Schedule {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new MigraceError('BAD_INPUT', `cannot read schedule ${path}: ${(e as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new MigraceError('BAD_INPUT', `${path} is not JSON: ${jsonProblem(e, text)}`);
  }
  return parseSchedule(data, path);
}
