import { MigraceError } from '../trace/errors.js';
import type { Probe } from '../recorder/probes/profile.js';
import { parseSchedule, type Role, type Schedule, type Step } from './schedule.js';

/**
 * The migrations a hunt drives, and the schedules it runs: one baseline per
 * scenario (undisturbed, observed) and one per matrix cell. A scenario is a
 * list of drive steps (what a user or libvirt would do to the migration),
 * never a list of the transitions it is expected to make: those are learned
 * from its baseline.
 *
 * Parts: the scenarios and the --scenarios names; baselineSchedule();
 * cellSchedule() and controlSchedule(), which insert the forcing right after
 * the drive step the transition came after in the baseline.
 */

export const SCENARIO_NAMES = ['precopy', 'cancel-setup', 'cancel-active', 'fail', 'switchover', 'postcopy'] as const;
export type ScenarioName = (typeof SCENARIO_NAMES)[number];

/** --scenarios takes these; `cancel` is both cancels. */
const SCENARIO_GROUPS: Record<string, ScenarioName[]> = {
  precopy: ['precopy'],
  cancel: ['cancel-setup', 'cancel-active'],
  'cancel-setup': ['cancel-setup'],
  'cancel-active': ['cancel-active'],
  fail: ['fail'],
  switchover: ['switchover'],
  postcopy: ['postcopy'],
};

export function parseScenarioList(text: string): ScenarioName[] {
  const out: ScenarioName[] = [];
  for (const word of text.split(',').map((w) => w.trim()).filter(Boolean)) {
    const names = Object.hasOwn(SCENARIO_GROUPS, word) ? SCENARIO_GROUPS[word] : undefined;
    if (!names) throw new MigraceError('USAGE', `--scenarios: unknown scenario "${word}" (known: ${Object.keys(SCENARIO_GROUPS).join(', ')})`);
    for (const n of names) if (!out.includes(n)) out.push(n);
  }
  if (out.length === 0) throw new MigraceError('USAGE', '--scenarios needs at least one scenario');
  // The hunt's order, whatever order they were given in: the matrix does not depend on how the list was typed.
  return SCENARIO_NAMES.filter((n) => out.includes(n));
}

export interface Scenario {
  name: ScenarioName;
  description: string;
  /** Roles the drive steps use (a gate that holds the migration thread while the scenario acts). */
  roles: Record<string, Role>;
  drive: Step[];
}

/**
 * QEMU migrates a paused 128 MiB guest in tens of milliseconds: a scenario
 * that acts while the migration is active slows it down first (about 1 s
 * per 100 kB of zero-page headers). minimig stays active for --transfer-ms
 * and has no parameters.
 */
const SLOW_BYTES_PER_S = 100_000;

export function scenario(name: ScenarioName, kind: 'minimig' | 'qemu'): Scenario {
  const slow: Step[] = kind === 'qemu' ? [{ do: 'set-parameters', parameters: { 'max-bandwidth': SLOW_BYTES_PER_S } }] : [];
  const wait = (equals: string): Step => ({ do: 'wait-state', equals, timeout_ms: 30_000 });
  switch (name) {
    case 'precopy':
      return { name, description: 'a plain precopy migration', roles: {}, drive: [{ do: 'migrate' }] };
    case 'cancel-setup':
      // Setup is over in milliseconds: the migration thread is held at its first step out of setup while the cancel lands.
      return {
        name, description: 'migrate_cancel during setup (the migration thread held at setup -> active meanwhile)',
        roles: { gate: { probe: 'transition', when: { old: 'setup' } } },
        drive: [{ do: 'arm', role: 'gate' }, { do: 'migrate' }, { do: 'wait-held', role: 'gate', timeout_ms: 15_000 }, { do: 'cancel' }, { do: 'release', role: 'gate' }],
      };
    case 'cancel-active':
      return { name, description: 'migrate_cancel while active', roles: {}, drive: [...slow, { do: 'migrate' }, wait('active'), { do: 'cancel' }] };
    case 'fail':
      return { name, description: 'the destination dies while active', roles: {}, drive: [...slow, { do: 'migrate' }, wait('active'), { do: 'kill-destination' }] };
    case 'switchover':
      return {
        name, description: 'pause-before-switchover, then migrate-continue', roles: {},
        drive: [{ do: 'set-capabilities', capabilities: { 'pause-before-switchover': true }, destination: false }, { do: 'migrate' }, wait('pre-switchover'), { do: 'continue', state: 'pre-switchover' }],
      };
    case 'postcopy':
      return {
        name, description: 'postcopy-ram on both sides, migrate-start-postcopy while active', roles: {},
        drive: [{ do: 'set-capabilities', capabilities: { 'postcopy-ram': true }, destination: true }, ...slow, { do: 'migrate' }, wait('active'), { do: 'start-postcopy' }],
      };
  }
}

const FINISH: Step = { do: 'finish', timeout_ms: 60_000 };

/** The baseline: the scenario undisturbed, observed at each migration-thread transition. */
export function baselineSchedule(s: Scenario, queries: number): Schedule {
  return parseSchedule({
    format: 'migrace-schedule', version: 1, name: `baseline-${s.name}`,
    description: `hunt baseline: ${s.description}; ${queries} undisturbed replies in every state the migration thread leaves, and in the final one`,
    roles: s.roles, steps: [{ do: 'observe', queries }, ...s.drive, FINISH],
  }, `the baseline of ${s.name}`);
}

/** The offset of the drive steps inside a baseline schedule (observe comes first). */
export const BASELINE_DRIVE_OFFSET = 1;

export interface CellSpec {
  /** The read point: its probe, placed by the schedule itself. */
  point: Probe;
  old: string;
  new: string;
  /** The drive step the transition came after in the baseline. */
  after: number;
  buildId: string | null;
  name: string;
}

/**
 * A cell's schedule: the scenario's drive up to the step the transition came
 * after; the writer held at migrate_set_state(old -> new), a query, the
 * reader held right after the read point when it read `old`; `whileHeld`;
 * the reader released and its reply taken, the writer released; the rest of
 * the drive.
 */
function withForcing(s: Scenario, spec: CellSpec, whileHeld: Step[], description: string): Schedule {
  if (spec.after < 0 || spec.after >= s.drive.length) {
    throw new MigraceError('REPLAY', `cell ${spec.name}: the transition came after drive step ${spec.after} of ${s.name}, which has ${s.drive.length}`);
  }
  const steps: Step[] = [
    { do: 'arm', role: 'writer' },
    ...s.drive.slice(0, spec.after + 1),
    { do: 'wait-held', role: 'writer', timeout_ms: 30_000 },
    { do: 'arm', role: 'reader' },
    { do: 'query' },
    { do: 'wait-held', role: 'reader', timeout_ms: 15_000 },
    ...whileHeld,
    { do: 'release', role: 'reader' },
    { do: 'wait-reply', timeout_ms: 15_000 },
    { do: 'release', role: 'writer' },
    ...s.drive.slice(spec.after + 1),
    FINISH,
  ];
  return parseSchedule({
    format: 'migrace-schedule', version: 1, name: spec.name, description,
    // The writer first: a hit that matches both binds the writer.
    roles: {
      writer: { probe: 'transition', when: { old: spec.old, new: spec.new } },
      reader: { probe: 'read', at: spec.point.name, when: { value: { role: 'writer', of: 'old' } } },
      ...s.roles,
    },
    steps, probes: [spec.point], build_id: spec.buildId,
  }, `the schedule of cell ${spec.name}`);
}

/**
 * One matrix cell: hold the writer at migrate_set_state(old -> new), query,
 * hold the reader right after the read point when it read `old`, let the
 * writer run to migrate_set_state's return (`new` is in memory, nothing
 * after it has happened), release the reader, take the reply, release the
 * writer.
 */
export function cellSchedule(s: Scenario, spec: CellSpec): Schedule {
  return withForcing(s, spec, [
    // To migrate_set_state's return and held there: this transition lands, the ones after it wait for the reply.
    { do: 'release', role: 'writer', until: 'return' },
    { do: 'wait-state', equals: { role: 'writer', of: 'new' }, via: 'reader', timeout_ms: 15_000 },
  ], `hunt cell: ${spec.point.name} x ${spec.old} -> ${spec.new} (${s.name}): the reader held after reading ${spec.old}, the writer's transition to ${spec.new} lands, then the reader goes on`);
}

/** The control of a read point: the same holds, with no transition while the reader is held. */
export function controlSchedule(s: Scenario, spec: CellSpec): Schedule {
  return withForcing(s, spec, [{ do: 'pause', ms: 50 }], `hunt control: ${spec.point.name} held after reading ${spec.old} with the writer held before ${spec.old} -> ${spec.new} (${s.name}): holding alone must change nothing`);
}
