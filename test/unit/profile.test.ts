import { describe, expect, it } from 'vitest';
import { ExpressionSchema, ProfileSchema } from '../../recorder/probes/profile.js';

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
