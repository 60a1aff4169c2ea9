import { describe, expect, it } from 'vitest';
import { baselineSchedule, cellSchedule, controlSchedule, parseScenarioList, scenario, SCENARIO_NAMES } from '../../analyzer/hunt-scenarios.js';
import { parseSchedule, profileWithScheduleProbes, ScheduleSchema, type Schedule } from '../../analyzer/schedule.js';
import { minimigProfile } from '../../recorder/probes/minimig.js';
import type { Probe } from '../../recorder/probes/profile.js';
import { minimigDir } from '../../recorder/targets/minimig.js';
import { MigraceError } from '../../trace/errors.js';

/* The schedules a hunt runs: its scenarios, baselines, cells and controls. */

const point: Probe = { name: 'populate_time_info.61', role: 'read', locations: ['*populate_time_info+63'], values: { value: '$eax' }, why: '' };
const steps = (s: Schedule): string[] => s.steps.map((x) => ('role' in x ? `${x.do} ${x.role}${'until' in x && x.until ? ` until ${x.until}` : ''}` : x.do));

describe('--scenarios', () => {
  it('takes the issue\'s names, cancel meaning both cancels, in the hunt\'s own order', () => {
    expect(parseScenarioList('postcopy,cancel,precopy')).toEqual(['precopy', 'cancel-setup', 'cancel-active', 'postcopy']);
    expect(parseScenarioList('precopy,cancel,fail,switchover,postcopy')).toEqual([...SCENARIO_NAMES]);
    expect(parseScenarioList(' fail , fail ')).toEqual(['fail']);
  });

  it('refuses an unknown name with the list of known ones, and an empty list', () => {
    expect(() => parseScenarioList('precopy,nope')).toThrow(/unknown scenario "nope" \(known: precopy, cancel, cancel-setup, cancel-active, fail, switchover, postcopy\)/);
    expect(() => parseScenarioList(',')).toThrow(MigraceError);
  });
});

describe('scenarios', () => {
  it('slow a QEMU migration down where the scenario acts while active; minimig has no parameters', () => {
    expect(scenario('fail', 'qemu').drive.map((s) => s.do)).toEqual(['set-parameters', 'migrate', 'wait-state', 'kill-destination']);
    expect(scenario('fail', 'minimig').drive.map((s) => s.do)).toEqual(['migrate', 'wait-state', 'kill-destination']);
    expect(scenario('postcopy', 'qemu').drive[0]).toEqual({ do: 'set-capabilities', capabilities: { 'postcopy-ram': true }, destination: true });
  });

  it('a baseline observes first and finishes last', () => {
    const b = baselineSchedule(scenario('cancel-setup', 'minimig'), 3);
    expect(steps(b)).toEqual(['observe', 'arm gate', 'migrate', 'wait-held gate', 'cancel', 'release gate', 'finish']);
    expect(b.roles.gate).toMatchObject({ probe: 'transition', when: { old: 'setup' } });
  });
});

describe('cells', () => {
  const spec = { point, old: 'cancelling', new: 'cancelled', after: 4, buildId: 'abc123', name: 'hunt1-cell' };

  it('the forcing comes right after the drive step the transition followed, then the rest of the drive', () => {
    const s = cellSchedule(scenario('cancel-setup', 'minimig'), spec);
    expect(steps(s)).toEqual([
      'arm writer', 'arm gate', 'migrate', 'wait-held gate', 'cancel', 'release gate',
      'wait-held writer', 'arm reader', 'query', 'wait-held reader', 'release writer until return', 'wait-state', 'release reader', 'wait-reply',
      // The writer waits at migrate_set_state's return until the reply is in: one transition per cell.
      'release writer', 'finish',
    ]);
    expect(Object.keys(s.roles)).toEqual(['writer', 'reader', 'gate']);
    expect(s.roles.reader).toEqual({ probe: 'read', at: 'populate_time_info.61', when: { value: { role: 'writer', of: 'old' } } });
    expect(s.probes).toEqual([point]);
    expect(s.build_id).toBe('abc123');
    const sw = cellSchedule(scenario('switchover', 'minimig'), { ...spec, old: 'active', new: 'pre-switchover', after: 1 });
    expect(steps(sw).slice(0, 4)).toEqual(['arm writer', 'set-capabilities', 'migrate', 'wait-held writer']);
    expect(steps(sw).slice(-4)).toEqual(['release writer', 'wait-state', 'continue', 'finish']);
  });

  it('a control holds the reader with the writer still held, and releases the writer after the reply', () => {
    const s = controlSchedule(scenario('precopy', 'qemu'), { ...spec, old: 'setup', new: 'active', after: 0 });
    expect(steps(s)).toEqual(['arm writer', 'migrate', 'wait-held writer', 'arm reader', 'query', 'wait-held reader', 'pause', 'release reader', 'wait-reply', 'release writer', 'finish']);
  });

  it('a cell\'s schedule survives its own JSON: what the hunt writes, replay reads back the same', () => {
    const s = cellSchedule(scenario('fail', 'qemu'), { ...spec, old: 'active', new: 'failed', after: 3 });
    expect(parseSchedule(JSON.parse(JSON.stringify(s)), 'file')).toEqual(s);
  });

  it('refuses a drive step the scenario does not have', () => {
    expect(() => cellSchedule(scenario('precopy', 'minimig'), { ...spec, after: 3 })).toThrow(/came after drive step 3 of precopy, which has 1/);
  });
});

describe('schedules that carry probes', () => {
  const base = { format: 'migrace-schedule', version: 1, name: 'x', roles: {}, steps: [{ do: 'migrate' }] };

  it('name the build they were found in', () => {
    expect(ScheduleSchema.safeParse({ ...base, probes: [point] }).success).toBe(false);
    expect(ScheduleSchema.safeParse({ ...base, probes: [point], build_id: null }).success).toBe(true);
    expect(() => parseSchedule({ ...base, probes: [{ ...point, values: { value: 'f(1)' } }], build_id: null }, 'evil.json')).toThrow(/evil.json: probes.0.values.value: not an allowed expression/);
  });

  it('run with their probes first, replacing the profile\'s of the same name', () => {
    const profile = minimigProfile(minimigDir(), 'minimig', false);
    const mine: Probe = { ...point, name: 'read' };
    const s = parseSchedule({ ...base, probes: [mine, point], build_id: null }, 'x');
    const merged = profileWithScheduleProbes(profile, s);
    expect(merged.probes.map((p) => p.name)).toEqual(['read', 'populate_time_info.61', 'transition', 'publish', 'query']);
    expect(merged.probes[0]).toEqual(mine);
  });

  it('the scenario steps parse, and refuse what QMP would not take', () => {
    const s = parseSchedule({ ...base, steps: [
      { do: 'set-capabilities', capabilities: { 'pause-before-switchover': true } }, { do: 'set-parameters', parameters: { 'max-bandwidth': 100000 } },
      { do: 'migrate' }, { do: 'wait-state', equals: 'active' }, { do: 'cancel' }, { do: 'continue', state: 'pre-switchover' },
      { do: 'start-postcopy' }, { do: 'kill-destination' }, { do: 'pause', ms: 5 }, { do: 'observe' },
    ] }, 'x');
    expect(s.steps[0]).toEqual({ do: 'set-capabilities', capabilities: { 'pause-before-switchover': true }, destination: false });
    expect(s.steps.at(-1)).toEqual({ do: 'observe', queries: 3 });
    expect(() => parseSchedule({ ...base, steps: [{ do: 'set-capabilities', capabilities: { 'Bad Name': true } }] }, 'f')).toThrow(/a QAPI name/);
    expect(() => parseSchedule({ ...base, steps: [{ do: 'observe', queries: 0 }] }, 'f')).toThrow(/f: steps.0.queries/);
  });
});
