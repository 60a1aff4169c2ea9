import { describe, expect, it } from 'vitest';
import {
  compareByIdentity, compareSessions, findingComparables, queryOutcomes, threadRoles,
  type Comparable, type Identity, type Outcome, type SessionBundle,
} from '../../analyzer/compare.js';
import { findInterleavings } from '../../analyzer/interleavings.js';
import { BODIES, MAIN, MIG, Trace } from '../helpers/events.js';

/*
 * analyzer/compare.ts: findings paired by what they are. The sessions are
 * built with the test trace builder and judged by the real analyzer.
 */

/** One LP#1994002 replay: `polls` undisturbed queries, then the forced one, published as `published`. */
function replayLike(published: 'active' | 'setup', polls = 0, id = 1): SessionBundle {
  const tr = new Trace([MAIN, MIG]);
  tr.transition(MAIN, 'none', 'setup');
  for (let i = 0; i < polls; i++) tr.query(MAIN, `q${i + 1}`, 'setup');
  const q = `q${polls + 1}`;
  tr.transition(MIG, 'setup', 'active');
  tr.hold(MIG, 'writer');
  tr.queryBegin(MAIN, q);
  tr.read(MAIN, 'setup');
  tr.hold(MAIN, 'reader');
  tr.release(MIG, 'writer');
  tr.release(MAIN, 'reader');
  tr.publish(MAIN, published);
  tr.queryEnd(MAIN, q);
  tr.reply(q, published === 'active' ? BODIES.lp1994002 : BODIES.setup);
  tr.transition(MIG, 'active', 'completed');
  tr.query(MAIN, `q${polls + 2}`, 'completed');
  const session = tr.session({ id, origin: 'replay', target: { ...tr.session().target, variant: published === 'active' ? 'unpatched' : 'patched' } });
  return { session, threads: tr.threads, events: tr.events, analysis: findInterleavings(session, tr.threads, tr.events) };
}

const cell = (readPoint: string, transition: string, cls: string, item = `${readPoint}/${transition}`): Comparable<string> => ({
  identity: { reader: 'main', readPoint, transition, query: null },
  outcome: { class: cls, detail: null, read: null, published: null, reply: null, fails: false },
  item,
});

describe('compareSessions', () => {
  it('pairs the unpatched and the patched replay of one schedule as one finding with another outcome', () => {
    const a = replayLike('active');
    const b = replayLike('setup', 0, 2);
    expect(a.analysis!.findings.map((f) => f.class)).toEqual(['manifested']);
    expect(b.analysis!.findings.map((f) => f.class)).toEqual(['benign']);
    const c = compareSessions(a, b);
    expect(c.findings.onlyA).toEqual([]);
    expect(c.findings.onlyB).toEqual([]);
    expect(c.findings.pairs).toHaveLength(1);
    const p = c.findings.pairs[0]!;
    expect(p.a.identity).toEqual<Identity>({ reader: 'main', readPoint: 'read', transition: 'setup -> active', query: 1 });
    expect(p.b.identity).toEqual(p.a.identity);
    expect(p.samePlace).toBe(true);
    expect(p.changed).toBe(true);
    expect(p.a.outcome).toEqual<Outcome>({ class: 'manifested', detail: null, read: 'setup', published: 'active', reply: { status: 'active', has_ram: false }, fails: true });
    expect(p.b.outcome).toEqual<Outcome>({ class: 'benign', detail: null, read: 'setup', published: 'setup', reply: { status: 'setup', has_ram: false }, fails: false });
    expect(p.a.item).toBe(a.analysis!.findings[0]);
    expect(c.queries.map((q) => q.same)).toEqual([false, true]);
    expect(c.differing).toBe(1);
  });

  it('pairs a race found at another query position, and says the positions differ', () => {
    const c = compareSessions(replayLike('active', 3), replayLike('active', 1));
    expect(c.findings.pairs).toHaveLength(1);
    const p = c.findings.pairs[0]!;
    expect([p.a.identity.query, p.b.identity.query]).toEqual([4, 2]);
    expect(p.samePlace).toBe(false);
    expect(p.changed).toBe(false);
  });

  it('keeps apart what has no counterpart', () => {
    const clean = new Trace([MAIN, MIG]);
    clean.transition(MAIN, 'none', 'setup');
    clean.query(MAIN, 'q1', 'setup');
    const session = clean.session({ id: 3 });
    const b: SessionBundle = { session, threads: clean.threads, events: clean.events, analysis: findInterleavings(session, clean.threads, clean.events) };
    const c = compareSessions(replayLike('active'), b);
    expect(c.findings.pairs).toEqual([]);
    expect(c.findings.onlyA.map((x) => x.item.class)).toEqual(['manifested']);
    expect(c.findings.onlyB).toEqual([]);
  });
});

describe('findingComparables', () => {
  it('names the reader by role, the read point by probe, the crossing by state names and the query by position', () => {
    const run = replayLike('active', 2);
    const [x] = findingComparables(run);
    expect(x!.identity).toEqual({ reader: 'main', readPoint: 'read', transition: 'setup -> active', query: 3 });
    expect(queryOutcomes(run).map((q) => q.query)).toEqual(['q1', 'q2', 'q3', 'q4']);
    // Another read probe is another read point.
    const other = { ...run, events: run.events.map((e) => (e.kind === 'read' ? { ...e, probe: 'read-populate' } : e)) };
    expect(findingComparables(other)[0]!.identity.readPoint).toBe('read-populate');
  });

  it('gives an unanalyzed run nothing to compare', () => {
    expect(findingComparables({ ...replayLike('active'), analysis: null })).toEqual([]);
  });
});

describe('compareByIdentity', () => {
  it('compares two hunts cell by cell: read point x transition, no query position', () => {
    const a = [cell('read', 'setup -> active', 'broken'), cell('read', 'active -> completed', 'consistent'), cell('reread-time', 'active -> completed', 'broken')];
    const b = [cell('reread-time', 'active -> completed', 'infeasible'), cell('read', 'setup -> active', 'consistent'), cell('read', 'active -> device', 'unreachable')];
    const c = compareByIdentity(a, b);
    expect(c.pairs.map((p) => [p.a.item, p.a.outcome.class, p.b.outcome.class, p.changed, p.samePlace])).toEqual([
      ['read/setup -> active', 'broken', 'consistent', true, true],
      ['reread-time/active -> completed', 'broken', 'infeasible', true, true],
    ]);
    expect(c.onlyA.map((x) => x.item)).toEqual(['read/active -> completed']);
    expect(c.onlyB.map((x) => x.item)).toEqual(['read/active -> device']);
  });

  it('uses each item once, the exact identity before the one without a position, in order', () => {
    const at = (q: number | null, item: string): Comparable<string> => ({ ...cell('read', 'setup -> active', 'manifested', item), identity: { ...cell('read', 'setup -> active', 'x').identity, query: q } });
    const c = compareByIdentity([at(1, 'a1'), at(5, 'a5'), at(9, 'a9')], [at(5, 'b5'), at(2, 'b2')]);
    expect(c.pairs.map((p) => `${p.a.item}=${p.b.item}${p.samePlace ? '' : '~'}`)).toEqual(['a1=b2~', 'a5=b5']);
    expect(c.onlyA.map((x) => x.item)).toEqual(['a9']);
    expect(c.onlyB).toEqual([]);
  });

  it('never pairs another reader or another transition', () => {
    const a = [cell('read', 'setup -> active', 'manifested')];
    const other = { ...cell('read', 'setup -> active', 'manifested'), identity: { ...a[0]!.identity, reader: 'migration' } };
    expect(compareByIdentity(a, [other]).pairs).toEqual([]);
    expect(compareByIdentity(a, [cell('read', 'setup -> cancelling', 'manifested')]).pairs).toEqual([]);
  });
});

describe('threadRoles', () => {
  it('names threads by what they do, so minimig and every QEMU build agree whatever their names', () => {
    const run = replayLike('active');
    const roles = threadRoles(run.events);
    expect(roles.get(MAIN.tid)).toBe('main');
    expect(roles.get(MIG.tid)).toBe('migration');
    // Renamed threads (live_migration on 7.2, mig/src/main on 10.x) are the same roles.
    const renamed = { ...run, threads: run.threads.map((t) => ({ ...t, name: t.tid === MIG.tid ? 'mig/src/main' : 'qemu-system-x86' })) };
    expect(findingComparables(renamed).map((x) => x.identity)).toEqual(findingComparables(run).map((x) => x.identity));
  });
});
