import { describe, expect, it } from 'vitest';
import { ExpressionSchema, LocationSchema, ProfileSchema, readPointProbe } from '../../recorder/probes/profile.js';

const base = {
  format: 'migrace-profile', version: 1, kind: 'address', binary: null, build_id: null, qemu_version: '7.2.22',
  status_table: '4.2', variant: 'patched', state_offset: 0x2e8, state_addr_expr: null, notes: [],
};
const transition = { name: 'transition', role: 'transition', locations: ['migrate_set_state'], values: { addr: '$rdi', old: '$esi', new: '$edx' } };
const read = { name: 'read', role: 'read', locations: ['*qmp_query_migrate+133'], values: { value: '$r13d' } };

describe('probe profiles passed by hand', () => {
  it('accepts what discovery and the minimig profile use', () => {
    for (const e of ['$r13d', 'state', 'info->status', '(int)s->state', '*(int*)0x55555556f280',
      '(int *)(*(char **)((char *)migrate_get_current + 0xb939a8) + 0x2e8)']) {
      expect(ExpressionSchema.safeParse(e).success, e).toBe(true);
    }
    expect(ProfileSchema.safeParse({ ...base, probes: [transition, read] }).success).toBe(true);
  });

  it('refuses expressions that change the target or run its code on every hit', () => {
    for (const e of ['s->state++', '--s->state', 'exit(0)', 'free (s)', '(int)abort()', 'x\ny', 'a = 1', '(int)(umask)(0x1ff)']) {
      expect(ExpressionSchema.safeParse(e).success, e).toBe(false);
    }
  });

  it('names the value a role is missing, and the roles a profile cannot do without', () => {
    const r = ProfileSchema.safeParse({ ...base, probes: [{ ...transition, values: { addr: '$rdi', old: '$esi' } }, read] });
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`)).toContain('probes.0.values.new: a transition probe needs the value "new"');
    const noRead = ProfileSchema.safeParse({ ...base, probes: [transition] });
    expect(noRead.error?.issues.map((i) => i.message)).toContain('needs a read probe');
  });
});

const readPoint = {
  name: 'qmp_query_migrate+432', function: 'qmp_query_migrate', offset: 432, pc: '0x5fc2f0', next_pc: '0x5fc2f9',
  instruction: 'cmpl $0x8,0x2e8(%r12)', access: 'compare', location: '*qmp_query_migrate+441', value: '*(int *)($r12 + 0x2e8)',
  via: ['qmp_query_migrate'], found: ['static'], why: 'populate_time_info inlined',
};

describe('read points', () => {
  it('are listed beside the probes, and a hunt turns one into a read probe by name', () => {
    const p = ProfileSchema.parse({ ...base, probes: [transition, read], read_points: [readPoint] });
    expect(p.read_points[0].source).toBeNull();
    expect(readPointProbe(p, 'qmp_query_migrate+432')).toEqual({
      name: 'qmp_query_migrate+432', role: 'read', locations: ['*qmp_query_migrate+441'], values: { value: '*(int *)($r12 + 0x2e8)' },
      why: 'read point qmp_query_migrate+432 (static): populate_time_info inlined',
    });
    expect(readPointProbe(p, 'nothing+1')).toBeNull();
    // Profiles from before read points were listed still load.
    expect(ProfileSchema.parse({ ...base, probes: [transition, read] }).read_points).toEqual([]);
  });

  it('refuse what could reach gdb unchecked, and two read points of one name', () => {
    const bad = ProfileSchema.safeParse({ ...base, probes: [transition, read], read_points: [{ ...readPoint, location: '*qmp_query_migrate+441; kill' }, { ...readPoint, pc: '0xABC' }, readPoint] });
    expect(bad.error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`)).toEqual(expect.arrayContaining([
      'read_points.0.location: must be func, file.c:LINE, *func+OFFSET, *func-OFFSET or *0xADDR',
      'read_points.1.pc: must be lower-case hex (0x...)',
      'read_points.2.name: "qmp_query_migrate+432" names two read points',
    ]));
  });

  it('a location may count back from a symbol: code of a stripped build\'s local function', () => {
    expect(LocationSchema.safeParse('*qmp_query_migrate-5178').success).toBe(true);
    expect(LocationSchema.safeParse('*qmp_query_migrate--5').success).toBe(false);
  });
});
