import { describe, expect, it } from 'vitest';
import { parseSchedule } from '../../analyzer/schedule.js';
import { explore, findHazard } from '../../analyzer/explore.js';
import { BODIES, IOTHREAD, MAIN, MIG, Trace } from '../helpers/events.js';

/** A plain recording of unpatched minimig: nothing forced, queries every 20 ms. */
function plainRecording(): Trace {
  const tr = new Trace();
  let q = 0;
  const poll = (state: string, n: number): void => {
    for (let i = 0; i < n; i++) tr.wait(20_000_000).query(MAIN, `q${++q}`, state);
  };
  poll('none', 2);
  tr.transition(MAIN, 'none', 'setup');
  poll('setup', 3);
  tr.transition(MIG, 'setup', 'active');
  poll('active', 4);
  tr.transition(MIG, 'active', 'completed');
  poll('completed', 2);
  return tr;
}

describe('explore', () => {
  it('plain unpatched recording: setup -> active is a hazard for unpatched only', () => {
    const tr = plainRecording();
    const x = explore(tr.session(), tr.threads, tr.events);
    expect(x.session_id).toBe(7);
    expect(x.windows).toBe(11);
    expect(x.transitions.map((t) => `${t.old}>${t.new}@${t.thread.name}`)).toEqual([
      'none>setup@main', 'setup>active@live_migration', 'active>completed@live_migration',
    ]);
    expect(x.warnings).toEqual([]);

    const lp = findHazard(x, 'setup', 'active');
    expect(lp).toHaveLength(1);
    const h = lp[0]!;
    expect(h.placement).toBe('inside');
    expect(h.kind).toBe('lp1994002');
    expect(h.affects).toEqual(['unpatched']);
    expect(h.query).toBe('q3');
    expect(h.queries).toEqual(['q3', 'q4', 'q5']);
    expect(h.read_value).toBe('setup');
    expect(h.reader).toEqual({ tid: 1, name: 'main', lwp: 1234 });
    expect(h.transition).toEqual({ old: 'setup', new: 'active', thread: { tid: 2, name: 'live_migration', lwp: 1240 }, seq: h.transition.seq });
    expect(tr.events.find((e) => e.seq === h.transition.seq)?.kind).toBe('transition');
    expect(h.unpatched).toMatchObject({ published: 'active', ram: false, consistent: false });
    expect(h.unpatched.verdict.old_libvirt).toBe('fails');
    expect(h.patched).toMatchObject({ published: 'setup', consistent: true });
    expect(h.patched.verdict.old_libvirt).toBe('accepts');
    expect(h.schedule?.name).toBe('setup-to-active-after-read');
    expect(h.schedule?.roles).toEqual({
      writer: { probe: 'transition', when: { old: 'setup', new: 'active' } },
      reader: { probe: 'read', when: { value: 'setup' } },
    });
    expect(h.schedule?.steps.map((st) => st.do)).toEqual(['arm', 'migrate', 'wait-held', 'arm', 'query', 'wait-held', 'release', 'wait-state', 'release', 'wait-reply', 'finish']);
    // What explore emits is a schedule the replay engine accepts as a file.
    expect(parseSchedule(JSON.parse(JSON.stringify(h.schedule)), 'hazard')).toEqual(h.schedule);
    expect(h.summary).toContain('live_migration (LWP 1240) moving setup -> active between the read and the publish');
  });

  it('plain recording: the populate re-read race on active -> completed is listed distinctly, on both variants', () => {
    const tr = plainRecording();
    const x = explore(tr.session(), tr.threads, tr.events);
    const pop = findHazard(x, 'active', 'completed');
    expect(pop.map((h) => [h.placement, h.kind, h.affects])).toEqual([
      ['inside-before-fill', 'populate-reread', ['patched']],
      ['inside-after-fill', 'populate-reread', ['unpatched']],
    ]);
    const [before, after] = pop;
    expect(before!.patched).toMatchObject({ published: 'active', fill_saw: 'completed', time_fields: ['total-time', 'setup-time', 'downtime'] });
    expect(before!.schedule?.roles.reader).toEqual({ probe: 'read', when: { value: 'active' } });
    expect(before!.schedule?.name).toBe('active-to-completed-after-read');
    expect(before!.summary).toContain('foreign downtime');
    expect(after!.unpatched).toMatchObject({ published: 'completed', fill_saw: 'active' });
    // No probe sits between the fills and the status re-read: nothing can force this placement yet.
    expect(after!.schedule).toBeNull();
    // Nothing else: none -> setup is main's own step, and no placement outside a window is a hazard.
    expect(x.hazards.map((h) => h.id)).toEqual(['H1', 'H2', 'H3']);
    expect(x.hazards.every((h) => h.placement !== 'before-read' && h.placement !== 'after-publish')).toBe(true);
  });

  it('a query without read probes uses the state at its begin', () => {
    const tr = new Trace();
    tr.transition(MAIN, 'none', 'setup');
    tr.queryBegin(MAIN, 'q1');
    tr.queryEnd(MAIN, 'q1');
    tr.reply('q1', BODIES.setup);
    tr.transition(MIG, 'setup', 'active');
    const x = explore(tr.session(), tr.threads, tr.events);
    expect(findHazard(x, 'setup', 'active')[0]?.query).toBe('q1');
  });

  it('transitions named without an old state (QEMU trace logs) take the previous state', () => {
    const tr = new Trace();
    tr.transition(MAIN, null, 'setup');
    tr.query(MAIN, 'q1', 'setup');
    tr.transition(MIG, null, 'active');
    const x = explore(tr.session(), tr.threads, tr.events);
    expect(x.transitions.map((t) => `${t.old}>${t.new}`)).toEqual(['setup>active']);
    expect(x.warnings.join()).toContain('1 transition(s)');
    expect(findHazard(x, 'setup', 'active')).toHaveLength(1);
  });

  it('cancel path: active -> cancelling only changes which state is reported; setup -> cancelling loses ram', () => {
    const tr = new Trace([MAIN, MIG, IOTHREAD]);
    tr.transition(MAIN, 'none', 'setup');
    tr.query(IOTHREAD, 'q1', 'setup');
    tr.transition(MAIN, 'setup', 'cancelling');
    tr.transition(MIG, 'cancelling', 'cancelled');
    tr.transition(MAIN, 'none', 'setup');
    tr.transition(MIG, 'setup', 'active');
    tr.query(IOTHREAD, 'q2', 'active');
    tr.transition(MAIN, 'active', 'cancelling');
    const x = explore(tr.session(), tr.threads, tr.events);
    const sc = findHazard(x, 'setup', 'cancelling');
    expect(sc.map((h) => [h.placement, h.kind, h.affects])).toEqual([['inside', 'lp1994002', ['unpatched']]]);
    expect(sc[0]!.unpatched.verdict.old_libvirt).toBe('fails');
    const ac = findHazard(x, 'active', 'cancelling');
    expect(ac.map((h) => [h.placement, h.kind, h.affects])).toEqual([['inside', 'consistent-difference', []]]);
    expect(ac[0]!.unpatched.published).toBe('cancelling');
    expect(ac[0]!.patched.published).toBe('active');
  });

  it('no transitions: nothing to place', () => {
    const tr = new Trace();
    tr.query(MAIN, 'q1', 'none');
    const x = explore(tr.session(), tr.threads, tr.events);
    expect(x.hazards).toEqual([]);
    expect(x.warnings).toContain('no transitions recorded: nothing to place');
  });

  it('an odd state name from an import skips the hazards it would make, with the reason, and keeps the rest (#13)', () => {
    // A libvirt log whose MIGRATION event said "setup x": names are whatever the source wrote.
    const tr = new Trace();
    tr.transition(null, null, 'setup x');
    tr.query(MAIN, 'q1', 'setup x');
    const odd = tr.transition(null, null, 'active');
    tr.query(MAIN, 'q2', 'active');
    tr.transition(null, null, 'completed');
    const x = explore(tr.session({ origin: 'import:libvirt-log' }), tr.threads, tr.events);
    expect(x.transitions.map((t) => `${t.old}>${t.new}`)).toEqual(['active>completed']);
    expect(x.warnings).toContain(`transition setup x -> active (seq ${odd}) and its hazards skipped: "setup x" is not a MigrationStatus name`);
    expect(x.warnings).toContain('query windows that read "setup x" were skipped: not a MigrationStatus name');
    // The well-named part still gives its hazards, each with a schedule that parses.
    expect(findHazard(x, 'active', 'completed').length).toBeGreaterThan(0);
    for (const h of x.hazards) if (h.schedule) expect(parseSchedule(JSON.parse(JSON.stringify(h.schedule)), 'h')).toEqual(h.schedule);
  });
});
