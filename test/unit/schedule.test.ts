import { describe, expect, it } from 'vitest';
import { builtinSchedule, checkScheduleFor, parseSchedule, readThenTransition, SCENARIOS } from '../../analyzer/schedule.js';
import { minimigProfile } from '../../recorder/probes/minimig.js';
import { minimigDir } from '../../recorder/targets/minimig.js';
import { expectCatch } from '../helpers/errors.js';

const profile = minimigProfile(minimigDir(), 'minimig', false);

describe('schedules', () => {
  it('built-ins are own entries only', () => {
    expect(builtinSchedule('lp1994002').roles.writer.when).toEqual({ old: 'setup', new: 'active' });
    for (const name of ['toString', 'constructor', '__proto__']) {
      expect(expectCatch(() => builtinSchedule(name)).message).toBe(`unknown scenario "${name}" (known: lp1994002, into-completed (or active-completed))`);
    }
  });

  it('a schedule built from a finding with an odd state name is a clear error, not a crash', () => {
    expect(expectCatch(() => readThenTransition('x', 'set up', 'active', '')).message).toMatch(/^the schedule for set up -> active: roles\.writer\.when\.old: /);
  });

  it('is checked against the profile before anything runs: state names and probe roles', () => {
    checkScheduleFor(builtinSchedule('lp1994002'), profile);
    const typo = parseSchedule({
      format: 'migrace-schedule', version: 1, name: 't',
      roles: { writer: { probe: 'transition', when: { old: 'setpu', new: 'active' } } },
      steps: [{ do: 'arm', role: 'writer' }],
    }, 't');
    expect(expectCatch(() => checkScheduleFor(typo, profile)).message).toMatch(/^schedule t: roles\.writer\.when\.old is "setpu", not a MigrationStatus of this target \(table 4\.2: none, setup, /);
    const noQuery = { ...profile, probes: profile.probes.filter((p) => p.role !== 'query') };
    const q = parseSchedule({
      format: 'migrace-schedule', version: 1, name: 'q',
      roles: { reader: { probe: 'query' } }, steps: [{ do: 'arm', role: 'reader' }],
    }, 'q');
    expect(expectCatch(() => checkScheduleFor(q, noQuery)).message).toBe('schedule q: roles.reader.probe is "query", but the profile has no query probe');
  });

  it('names the step that refers to an undefined role', () => {
    const r = expectCatch(() => parseSchedule({
      format: 'migrace-schedule', version: 1, name: 'r',
      roles: { writer: { probe: 'transition' } }, steps: [{ do: 'release', role: 'reader' }],
    }, 'r.json'));
    expect(r.message).toBe('r.json: steps.0.role: names role "reader", which "roles" does not define');
  });

  it('roles named after what every object inherits are refused at parse (#14)', () => {
    const base = { format: 'migrace-schedule', version: 1, name: 'p', roles: { writer: { probe: 'transition' } } };
    for (const name of ['toString', 'constructor', 'hasOwnProperty', 'valueOf']) {
      expect(expectCatch(() => parseSchedule({ ...base, steps: [{ do: 'arm', role: name }] }, 'p.json')).message)
        .toBe('p.json: steps.0.role: is a name every JavaScript object already has; pick another role name');
      expect(expectCatch(() => parseSchedule({ ...base, steps: [{ do: 'wait-state', equals: 'active', via: name }] }, 'p.json')).message)
        .toBe('p.json: steps.0.via: is a name every JavaScript object already has; pick another role name');
      expect(expectCatch(() => parseSchedule({ ...base, roles: { [name]: { probe: 'read' } }, steps: [{ do: 'query' }] }, 'p.json')).message)
        .toBe(`p.json: roles.${name}: is a name every JavaScript object already has; pick another role name`);
    }
    // From a file, as a user would give it.
    const json = JSON.parse('{"format":"migrace-schedule","version":1,"name":"p","roles":{"writer":{"probe":"transition"}},"steps":[{"do":"arm","role":"toString"}]}');
    expect(expectCatch(() => parseSchedule(json, 's.json')).message).toBe('s.json: steps.0.role: is a name every JavaScript object already has; pick another role name');
  });
});

describe('scenarios by meaning (#11)', () => {
  it('the step into completed names no old state: the writer binds at whichever transition enters completed', () => {
    const s = builtinSchedule('into-completed');
    expect(s.name).toBe('into-completed');
    expect(s.roles.writer).toEqual({ probe: 'transition', when: { new: 'completed' } });
    // The reader holds after its read of what the writer moves from; the state waited for is completed.
    expect(s.roles.reader).toEqual({ probe: 'read', when: { value: { role: 'writer', of: 'old' } } });
    expect(s.steps.find((st) => st.do === 'wait-state')).toEqual({ do: 'wait-state', equals: 'completed', via: 'reader', timeout_ms: 15_000 });
    checkScheduleFor(s, profile);
    // The old name still works and gives the same schedule.
    expect(builtinSchedule('active-completed')).toEqual(s);
    // No built-in names a fixed old state but LP#1994002's setup, which every build has.
    expect(Object.keys(SCENARIOS)).toEqual(['lp1994002', 'into-completed', 'active-completed']);
    for (const make of Object.values(SCENARIOS)) {
      const w = make().roles.writer!.when;
      if (w.old !== undefined) expect(w).toEqual({ old: 'setup', new: 'active' });
    }
    // A fixed transition (from a finding or a hazard) keeps fixed values.
    expect(readThenTransition('x', 'active', 'device', '').roles.reader.when).toEqual({ value: 'active' });
  });

  it('a state reference must name a transition role that the schedule defines', () => {
    const base = { format: 'migrace-schedule', version: 1, name: 'r', roles: { writer: { probe: 'transition' }, reader: { probe: 'read' } } };
    const ref = (role: string) => ({ ...base, roles: { ...base.roles, other: { probe: 'read', when: { value: { role, of: 'old' } } } }, steps: [{ do: 'query' }] });
    expect(expectCatch(() => parseSchedule(ref('nobody'), 'r.json')).message).toBe('r.json: roles.other.when.value.role: names role "nobody", which "roles" does not define');
    expect(expectCatch(() => parseSchedule(ref('reader'), 'r.json')).message).toBe('r.json: roles.other.when.value.role: names role "reader", which is not a transition role: only a transition has an old and a new state');
    expect(expectCatch(() => parseSchedule({ ...base, steps: [{ do: 'wait-state', equals: { role: 'reader', of: 'new' }, via: 'reader' }] }, 'r.json')).message)
      .toBe('r.json: steps.0.equals.role: names role "reader", which is not a transition role: only a transition has an old and a new state');
    const half = { ...base, roles: { ...base.roles, other: { probe: 'read', when: { value: { role: 'writer' } } } }, steps: [{ do: 'query' }] };
    expect(expectCatch(() => parseSchedule(half, 'r.json')).message).toBe('r.json: roles.other.when.value: a MigrationStatus name such as "setup", or {"role": ROLE, "of": "old" | "new"}');
    expect(expectCatch(() => parseSchedule({ ...base, roles: { writer: { probe: 'transition', when: { vaule: 'setup' } } }, steps: [{ do: 'query' }] }, 'r.json')).message)
      .toMatch(/^r\.json: roles\.writer\.when: .*vaule/);
  });

  it('a role binds to one probe by name: checked against the profile (minimig\'s probes)', () => {
    const at = (probe: string, name: string) => parseSchedule({
      format: 'migrace-schedule', version: 1, name: 'a', roles: { reader: { probe, at: name } }, steps: [{ do: 'arm', role: 'reader' }],
    }, 'a.json');
    checkScheduleFor(at('read', 'read'), profile);
    checkScheduleFor(at('publish', 'publish'), profile);
    expect(expectCatch(() => checkScheduleFor(at('read', 'read-populate'), profile)).message).toBe('schedule a: roles.reader.at is "read-populate", but the profile\'s read probes are read');
    expect(expectCatch(() => checkScheduleFor(at('read', 'publish'), profile)).message).toBe('schedule a: roles.reader.at is "publish", a publish probe, but the role binds at a read probe');
    expect(expectCatch(() => at('read', 'bad name')).message).toMatch(/^a\.json: roles\.reader\.at: a probe name from the profile/);
  });
});
