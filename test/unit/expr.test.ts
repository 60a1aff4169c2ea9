import { describe, expect, it } from 'vitest';
import { ExpressionError, parseExpression } from '../../recorder/probes/expr.js';

const refuse = (e: string): string => {
  try {
    parseExpression(e);
  } catch (err) {
    expect(err).toBeInstanceOf(ExpressionError);
    return (err as Error).message;
  }
  throw new Error(`accepted: ${e}`);
};

describe('profile expressions', () => {
  it('parses what discovery and the minimig profile write into a tree', () => {
    expect(parseExpression('$r13d')).toEqual({ kind: 'reg', name: 'r13d' });
    expect(parseExpression('info->status')).toEqual({ kind: 'member', expr: { kind: 'name', name: 'info' }, field: 'status', arrow: true });
    expect(parseExpression('(int)s->state')).toEqual({
      kind: 'cast', type: { base: 'int', pointers: 0 },
      expr: { kind: 'member', expr: { kind: 'name', name: 's' }, field: 'state', arrow: true },
    });
    expect(parseExpression('*(int*)0x55555556f280')).toEqual({
      kind: 'deref', expr: { kind: 'cast', type: { base: 'int', pointers: 1 }, expr: { kind: 'num', value: 0x55555556f280n } },
    });
    const state = parseExpression('(int *)(*(char **)((char *)migrate_get_current + 0xb939a8) + 0x2e8)');
    expect(state).toEqual({
      kind: 'cast', type: { base: 'int', pointers: 1 },
      expr: {
        kind: 'offset', delta: 0x2e8n,
        expr: { kind: 'deref', expr: { kind: 'cast', type: { base: 'char', pointers: 2 },
          expr: { kind: 'offset', delta: 0xb939a8n, expr: { kind: 'cast', type: { base: 'char', pointers: 1 }, expr: { kind: 'name', name: 'migrate_get_current' } } } } },
      },
    });
    expect(parseExpression('(unsigned long)(struct MigrationState *)$rdi')).toMatchObject({ kind: 'cast', type: { base: 'unsigned long', pointers: 0 } });
    expect(parseExpression('s->info.ram[2] - 8')).toMatchObject({ kind: 'offset', delta: -8n });
    expect(parseExpression('(MigrationStatus)$esi')).toMatchObject({ kind: 'cast', type: { base: 'MigrationStatus' } });
  });

  it('refuses a call spelled as a cast to a name that is not a type (the umask probe)', () => {
    expect(refuse('(int)(umask)(0x1ff)')).toMatch(/function call/);
    expect(refuse('(umask)(0x1ff)')).toMatch(/function call/);
    expect(refuse('umask(0x1ff)')).toMatch(/function call/);
    expect(refuse('$_streq(info)')).toMatch(/function call/);
    expect(refuse('(*(void (*)(int))umask)(0)')).toBeTruthy();
  });

  it('refuses anything that changes the target', () => {
    expect(refuse('s->state++')).toMatch(/change the target/);
    expect(refuse('--s->state')).toMatch(/change the target/);
    for (const e of ['a = 1', 's->state += 1', 'a, b', 'x\ny', "'minimig.c'::s", 'a@4', 'x ? y : z', 'a | b', 'a + b', 'sizeof(int)']) refuse(e);
  });

  it('says where the problem is', () => {
    expect(refuse('(int)s->state )')).toMatch(/at 15/);
    expect(refuse('')).toMatch(/empty/);
    expect(refuse('(int)')).toMatch(/at the end/);
  });
});

describe('a hand-written profile (--profile FILE) with a call in it', () => {
  it('is refused before gdb sees it, naming the field (it ran umask inside QEMU before)', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const { loadProfileFile } = await import('../../recorder/probes/discover.js');
    const dir = mkdtempSync(join(tmpdir(), 'migrace-expr-'));
    try {
      const file = join(dir, 'evil.json');
      writeFileSync(file, JSON.stringify({
        format: 'migrace-profile', version: 1, kind: 'address', binary: null, build_id: null, qemu_version: '7.2.22',
        status_table: '4.2', variant: 'patched', state_offset: 0x2e8, state_addr_expr: null, notes: [],
        probes: [
          { name: 'transition', role: 'transition', locations: ['migrate_set_state'], values: { addr: '$rdi', old: '$esi', new: '$edx' } },
          { name: 'read', role: 'read', locations: ['*qmp_query_migrate+133'], values: { value: '(int)(umask)(0x1ff)' } },
        ],
      }));
      expect(() => loadProfileFile(file)).toThrow(/evil\.json: not a valid migrace profile: probes\.1\.values\.value: not an allowed expression: a function call/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
