import { describe, expect, it } from 'vitest';
import { builtinSchedule, checkScheduleFor, parseSchedule, readThenTransition } from '../../analyzer/schedule.js';
import { minimigProfile } from '../../recorder/probes/minimig.js';
import { minimigDir } from '../../recorder/targets/minimig.js';
import { expectCatch } from '../helpers/errors.js';

const profile = minimigProfile(minimigDir(), 'minimig', false);

describe('schedules', () => {
  it('built-ins are own entries only', () => {
    expect(builtinSchedule('lp1994002').roles.writer.when).toEqual({ old: 'setup', new: 'active' });
    for (const name of ['toString', 'constructor', '__proto__']) {
      expect(expectCatch(() => builtinSchedule(name)).message).toBe(`unknown scenario "${name}" (known: lp1994002, active-completed)`);
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

