import { describe, expect, it } from 'vitest';
import { runBoth, runModel, sameReply, undisturbed, type ModelStep } from '../../analyzer/model.js';
import { LIBVIRT_NO_RAM, qemuShape } from '../../analyzer/verdict.js';
import { MigraceError } from '../../trace/errors.js';

const read: ModelStep = { kind: 'read' };
const fill: ModelStep = { kind: 'fill' };
const publish: ModelStep = { kind: 'publish' };
const tr = (o: string, n: string): ModelStep => ({ kind: 'transition', old: o, new: n });

describe('model of fill_source_migration_info', () => {
  it('LP#1994002: setup -> active between the reads', () => {
    const { unpatched: u, patched: p } = runBoth('setup', [read, tr('setup', 'active'), publish]);
    expect(u).toMatchObject({ variant: 'unpatched', branch: 'setup', published: 'active', ram: false, time_fields: [], consistent: false });
    expect(u.reply).toEqual({ status: 'active' });
    expect(u.verdict.old_libvirt).toBe('fails');
    expect(u.verdict.current_libvirt).toBe('accepts');
    expect(u.verdict.libvirt_error).toBe(LIBVIRT_NO_RAM);
    expect(p).toMatchObject({ variant: 'patched', branch: 'setup', published: 'setup', ram: false, consistent: true });
    expect(p.reply).toEqual({ status: 'setup' });
    expect(p.verdict.old_libvirt).toBe('accepts');
    expect(u.final).toBe('active');
  });

  it('the same transition before the read or after the publish changes nothing between variants', () => {
    for (const steps of [[tr('setup', 'active'), read, fill, publish], [read, fill, publish, tr('setup', 'active')]]) {
      const { unpatched: u, patched: p } = runBoth('setup', steps);
      expect(sameReply(u, p)).toBe(true);
      expect(u.consistent && p.consistent).toBe(true);
    }
    expect(runModel('unpatched', 'setup', [tr('setup', 'active'), read]).fields).toEqual(['total-time', 'setup-time', 'expected-downtime', 'ram']);
  });

  it('the 7.2 race: active -> completed before populate_*() — patched says active with downtime', () => {
    const { unpatched: u, patched: p } = runBoth('active', [read, tr('active', 'completed'), fill, publish]);
    expect(p).toMatchObject({ branch: 'active', published: 'active', fill_saw: 'completed', ram: true, consistent: false });
    expect(p.time_fields).toEqual(['total-time', 'setup-time', 'downtime']);
    expect(p.shape).toMatchObject({ missing: ['expected-downtime'], foreign: ['downtime'] });
    expect(p.verdict.old_libvirt).toBe('accepts'); // ram is there: libvirt does not notice
    expect(p.verdict.summary).toContain('foreign downtime');
    expect((p.reply['ram'] as Record<string, number>)['remaining']).toBe(0);
    // Unpatched re-reads at the publish too: a well-formed completed reply.
    expect(u).toMatchObject({ published: 'completed', consistent: true });
  });

  it('active -> completed after populate_*(): unpatched says completed with expected-downtime', () => {
    const { unpatched: u, patched: p } = runBoth('active', [read, fill, tr('active', 'completed'), publish]);
    expect(u).toMatchObject({ branch: 'active', published: 'completed', fill_saw: 'active', consistent: false });
    expect(u.shape).toMatchObject({ missing: ['downtime'], foreign: ['expected-downtime'] });
    expect(p).toMatchObject({ published: 'active', consistent: true });
  });

  it('fill defaults to right after the read, as in the code', () => {
    const a = runModel('patched', 'active', [read, tr('active', 'completed'), publish]);
    expect(a.fill_saw).toBe('active');
    expect(a.consistent).toBe(true);
    const b = runModel('unpatched', 'active', [read, tr('active', 'completed')]);
    expect(b.fill_saw).toBe('active');
    expect(b.published).toBe('completed');
    expect(b.consistent).toBe(false);
  });

  it('migrate_set_state is a compare-and-swap', () => {
    const o = runModel('unpatched', 'setup', [read, tr('active', 'completed'), publish]);
    expect(o.applied).toEqual([false]);
    expect(o.published).toBe('setup');
    expect(runModel('unpatched', 'setup', [tr('setup', 'active'), tr('active', 'completed'), read]).applied).toEqual([true, true]);
  });

  it('NONE returns before the status store, in both variants', () => {
    const { unpatched: u, patched: p } = runBoth('none', [read, tr('none', 'setup'), publish]);
    expect(u.published).toBeNull();
    expect(u.reply).toEqual({});
    expect(p.reply).toEqual({});
    expect(u.consistent).toBe(true);
  });

  it('cancel path: setup -> cancelling between the reads gives a cancelling reply without ram (unpatched)', () => {
    const { unpatched: u, patched: p } = runBoth('setup', [read, tr('setup', 'cancelling'), publish]);
    expect(u).toMatchObject({ published: 'cancelling', ram: false, consistent: false });
    expect(u.verdict.old_libvirt).toBe('fails');
    expect(p).toMatchObject({ published: 'setup', consistent: true });
  });

  it('undisturbed replies have the shape QEMU fills for each status', () => {
    for (const s of ['setup', 'active', 'cancelling', 'postcopy-active', 'device', 'completed', 'failed', 'cancelled']) {
      const o = undisturbed(s);
      expect(o.fields, s).toEqual(qemuShape(s));
      expect(o.consistent, s).toBe(true);
      expect(o.verdict.old_libvirt, s).toBe('accepts');
    }
  });

  it('rejects schedules the code cannot run', () => {
    expect(() => runModel('patched', 'setup', [publish])).toThrow(MigraceError);
    expect(() => runModel('patched', 'setup', [read, read])).toThrow(/exactly one read/);
    expect(() => runModel('patched', 'setup', [publish, read])).toThrow(/read, then fill, then publish/);
  });
});
