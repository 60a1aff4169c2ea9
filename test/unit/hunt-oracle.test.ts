import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildOracle, judgeReplyShape, learnColumns, replyFields } from '../../analyzer/hunt-oracle.js';

/*
 * The oracle is learned from undisturbed replies of real builds (captured
 * by a hunt, test/fixtures/hunt/README.md) and judges the forced replies
 * those hunts produced.
 */

interface Capture {
  baselines: Record<string, unknown[]>;
  forced: Array<{ row: string; col: string; class: string; note: string | null; reply: unknown }>;
}

const load = (name: string): Capture => JSON.parse(readFileSync(`test/fixtures/hunt/${name}`, 'utf8')) as Capture;
const q72 = load('qemu-7.2-replies.json');
const q52 = load('qemu-5.2-replies.json');
const mini = load('minimig-replies.json');
const all = (c: Capture): unknown[] => Object.values(c.baselines).flat();

describe('the oracle of a build', () => {
  it('learns per status which fields undisturbed replies always have (QEMU 7.2)', () => {
    const o = buildOracle(all(q72));
    expect(o.active.always).toEqual(['expected-downtime', 'ram', 'setup-time', 'total-time']);
    expect(o.completed.always).toEqual(['downtime', 'ram', 'setup-time', 'total-time']);
    expect(o.setup.always).toEqual([]);
    expect(o.failed.always).toEqual(['error-desc']);
    expect(o.active.replies).toBeGreaterThanOrEqual(3);
    for (const s of Object.values(o)) {
      expect(s.old_libvirt).toBe('accepts');
      expect(s.current_libvirt).toBe('accepts');
    }
  });

  it('keeps a field some replies of a status have and others lack as "sometimes"', () => {
    const o = buildOracle([{ status: 'active', ram: {}, 'total-time': 1 }, { status: 'active', ram: {}, 'total-time': 2, 'cpu-throttle-percentage': 5 }]);
    expect(o.active.always).toEqual(['ram', 'total-time']);
    expect(o.active.sometimes).toEqual(['cpu-throttle-percentage']);
  });

  it('reads whole QMP messages, return objects and JSON text alike, and skips what is not a reply', () => {
    expect(replyFields({ return: { status: 'setup' }, id: 'x' })).toEqual({ status: 'setup', fields: [] });
    expect(replyFields('{"status":"active","ram":{}}')).toEqual({ status: 'active', fields: ['ram'] });
    expect(replyFields({ error: { class: 'GenericError', desc: 'x' } })).toBeNull();
    expect(replyFields('not json')).toBeNull();
    expect(Object.keys(buildOracle([{}, null, 'x', { error: {} }]))).toEqual([]);
  });
});

describe('judging a forced reply against its own status', () => {
  it('LP#1994002 on QEMU 5.2: active without its fields, and old libvirt fails it', () => {
    const o = buildOracle(all(q52));
    const j = judgeReplyShape(o, { status: 'active' });
    expect(j.class).toBe('broken');
    expect(j.missing).toEqual(['expected-downtime', 'ram', 'setup-time', 'total-time']);
    expect(j.libvirt).toBe('old libvirt fails: "migration was active, but no RAM info was set"');
  });

  it('the populate_time_info race on QEMU 7.2: active with completed\'s downtime', () => {
    const o = buildOracle(all(q72));
    const cell = q72.forced.find((c) => c.row === 'read' && c.col === 'active->completed')!;
    const j = judgeReplyShape(o, cell.reply);
    expect(j).toMatchObject({ class: 'broken', status: 'active', missing: ['expected-downtime'], foreign: ['downtime'], libvirt: null });
    expect(j.note).toBe(cell.note);
  });

  it('every forced reply a hunt stored is judged the same again', () => {
    for (const c of [q72, q52, mini]) {
      const o = buildOracle(all(c));
      for (const f of c.forced) expect({ cell: `${f.row} x ${f.col}`, ...judgeReplyShape(o, f.reply) }).toMatchObject({ cell: `${f.row} x ${f.col}`, class: f.class, note: f.note });
    }
  });

  it('an undisturbed reply of every status is consistent with its own oracle', () => {
    for (const c of [q72, q52, mini]) {
      const o = buildOracle(all(c));
      for (const body of all(c)) expect(judgeReplyShape(o, body).class).toBe('consistent');
    }
  });

  it('with no undisturbed reply of the status, libvirt alone decides, and the note says so', () => {
    const o = buildOracle(all(mini));
    delete o.active;
    expect(judgeReplyShape(o, { status: 'active' })).toMatchObject({ class: 'broken', note: 'no undisturbed active reply to compare with; old libvirt fails: "migration was active, but no RAM info was set"' });
    expect(judgeReplyShape(o, { status: 'wait-unplug' })).toMatchObject({ class: 'consistent', note: 'no undisturbed wait-unplug reply to compare with' });
  });

  it('an error reply is broken, and says why', () => {
    const j = judgeReplyShape(buildOracle(all(mini)), { error: { class: 'GenericError', desc: 'boom' } });
    expect(j).toMatchObject({ class: 'broken', note: 'an error reply (boom)' });
  });
});

describe('columns learned from baselines', () => {
  const t = (old: string, nu: string, after: number, tid = 5) => ({ old, new: nu, after, thread: { tid, name: tid === 1 ? 'main' : 'live_migration' } });

  it('one column per distinct transition, in scenario order, with the first scenario that made it', () => {
    const cols = learnColumns([
      { scenario: 'precopy', transitions: [t('none', 'setup', 0, 1), t('setup', 'active', 0), t('active', 'completed', 0)] },
      { scenario: 'fail', transitions: [t('none', 'setup', 1, 1), t('setup', 'active', 1), t('active', 'failed', 3)] },
    ]);
    expect(cols.map((c) => c.key)).toEqual(['none->setup', 'setup->active', 'active->completed', 'active->failed']);
    expect(cols[1]).toMatchObject({ scenario: 'precopy', scenarios: ['precopy', 'fail'], after: 0 });
    expect(cols[3]).toMatchObject({ scenario: 'fail', after: 3, thread: { tid: 5 } });
  });
});
