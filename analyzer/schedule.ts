import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { MigraceError } from '../trace/errors.js';
import { normalizeStatusName, STATUS_TABLES, statusValue } from '../trace/status.js';
import type { Profile } from '../recorder/probes/profile.js';

/**
 * A replay schedule: which threads play which role, and the order in which
 * they are held and released. Nothing here is specific to setup -> active:
 * a schedule names any transition and any read point.
 */

const STATUS_NAME = /^[a-z][a-z-]*$/;
const StatusName = z.string().regex(STATUS_NAME, 'a MigrationStatus name such as "setup" or "postcopy-active"');

/** Whether a name read from a trace can stand in a schedule (imports carry whatever their source said). */
export function isStatusName(name: string): boolean {
  return STATUS_NAME.test(name);
}

export const RoleSchema = z.object({
  /** The probe role whose first matching hit binds this role to a thread. */
  probe: z.enum(['transition', 'read', 'publish', 'query']),
  /** Values that must match for the hit to bind: transition old/new, read/publish value. */
  when: z.object({ old: StatusName.optional(), new: StatusName.optional(), value: StatusName.optional() }).default({}),
});
export type Role = z.infer<typeof RoleSchema>;

const RoleName = z.string().regex(/^[a-z][\w-]*$/)
  // Schedules are plain objects: a role called "toString" would be found on every one of them.
  .refine((n) => !(n in Object.prototype), 'is a name every JavaScript object already has; pick another role name');
const Timeout = z.number().int().positive().max(600_000).default(15_000);

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
  z.object({ do: z.literal('release'), role: RoleName }),
  /**
   * Wait until the state in memory is `equals`, read through a thread that is
   * held (`via`): the writer's release is only visible once its store lands.
   */
  z.object({ do: z.literal('wait-state'), equals: StatusName, via: RoleName, timeout_ms: Timeout }),
  /** Wait for the reply of the last query. */
  z.object({ do: z.literal('wait-reply'), timeout_ms: Timeout }),
  /** Let the migration finish: wait for its final state in memory, then take the final reply once. */
  z.object({ do: z.literal('finish'), timeout_ms: Timeout }),
]);
export type Step = z.infer<typeof StepSchema>;

export const ScheduleSchema = z.object({
  format: z.literal('migrace-schedule'),
  version: z.literal(1),
  name: z.string().regex(/^[\w.-]+$/),
  description: z.string().default(''),
  roles: z.record(RoleName, RoleSchema),
  steps: z.array(StepSchema).min(1),
}).superRefine((s, ctx) => {
  s.steps.forEach((step, i) => {
    for (const key of ['role', 'via'] as const) {
      const name = (step as Record<string, unknown>)[key];
      if (typeof name === 'string' && !Object.hasOwn(s.roles, name)) {
        ctx.addIssue({ code: 'custom', path: ['steps', i, key], message: `names role "${name}", which "roles" does not define` });
      }
    }
  });
});
export type Schedule = z.infer<typeof ScheduleSchema>;

/**
 * The generic forcing of a read-then-transition race: hold the writer at
 * migrate_set_state(old -> new), query, hold the reader right after its read
 * of `old`, release the writer until the state is `new`, release the reader.
 */
export function readThenTransition(name: string, oldState: string, newState: string, description: string): Schedule {
  const o = normalizeStatusName(oldState);
  const n = normalizeStatusName(newState);
  return parseSchedule({
    format: 'migrace-schedule',
    version: 1,
    name,
    description,
    roles: {
      writer: { probe: 'transition', when: { old: o, new: n } },
      reader: { probe: 'read', when: { value: o } },
    },
    steps: [
      { do: 'arm', role: 'writer' },
      { do: 'migrate' },
      { do: 'wait-held', role: 'writer' },
      { do: 'arm', role: 'reader' },
      { do: 'query' },
      { do: 'wait-held', role: 'reader' },
      { do: 'release', role: 'writer' },
      { do: 'wait-state', equals: n, via: 'reader' },
      { do: 'release', role: 'reader' },
      { do: 'wait-reply' },
      { do: 'finish' },
    ],
  }, `the schedule for ${o} -> ${n}`);
}

export const SCENARIOS: Record<string, () => Schedule> = {
  lp1994002: () => readThenTransition('lp1994002', 'setup', 'active',
    'LP#1994002: query-migrate reads setup for its switch, the migration thread moves setup -> active, the status published is active without ram'),
  'active-completed': () => readThenTransition('active-completed', 'active', 'completed',
    'the re-reads in populate_time_info/populate_ram_info: the switch reads active, the migration thread moves active -> completed before the reply is filled (still in QEMU 7.2)'),
};

export function builtinSchedule(name: string): Schedule {
  const make = Object.hasOwn(SCENARIOS, name) ? SCENARIOS[name] : undefined;
  if (!make) {
    throw new MigraceError('USAGE', `unknown scenario "${name}" (known: ${Object.keys(SCENARIOS).join(', ')})`);
  }
  return make();
}

/**
 * Check a schedule against the profile it will run with, before anything
 * starts: every state it names exists in the target's MigrationStatus table,
 * and every role's probe is in the profile. Otherwise a typo would only show
 * as a role that "never arrived".
 */
export function checkScheduleFor(schedule: Schedule, profile: Profile): void {
  const where = `schedule ${schedule.name}`;
  for (const [name, role] of Object.entries(schedule.roles)) {
    if (!profile.probes.some((p) => p.role === role.probe)) {
      throw new MigraceError('BAD_INPUT', `${where}: roles.${name}.probe is "${role.probe}", but the profile has no ${role.probe} probe`);
    }
    for (const [key, state] of Object.entries(role.when)) {
      if (state !== undefined && statusValue(state, profile.status_table) === null) {
        throw new MigraceError('BAD_INPUT', `${where}: roles.${name}.when.${key} is "${state}", not a MigrationStatus of this target (table ${profile.status_table}: ${STATUS_TABLES[profile.status_table].join(', ')})`);
      }
    }
  }
  schedule.steps.forEach((step, i) => {
    if (step.do === 'wait-state' && statusValue(step.equals, profile.status_table) === null) {
      throw new MigraceError('BAD_INPUT', `${where}: steps.${i}.equals is "${step.equals}", not a MigrationStatus of this target`);
    }
  });
}

export function parseSchedule(data: unknown, source: string): Schedule {
  const parsed = ScheduleSchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    // A bad role name is reported by zod as "Invalid key in record"; the reason is inside.
    const message = issue?.code === 'invalid_key' ? issue.issues[0]?.message ?? issue.message : issue?.message;
    throw new MigraceError('BAD_INPUT', `${source}: ${issue?.path.join('.') || '(top)'}: ${message}`);
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
    throw new MigraceError('BAD_INPUT', `${path} is not JSON: ${(e as Error).message}`);
  }
  return parseSchedule(data, path);
}
