import { describe, expect, it } from 'vitest';
import { findInterleavings } from '../../analyzer/interleavings.js';
import { LIBVIRT_NO_RAM } from '../../analyzer/verdict.js';
import { BODIES, HMP, IOTHREAD, MAIN, MIG, Trace, syntheticPolling } from '../helpers/events.js';

function analyze(tr: Trace, origin: 'live' | 'replay' = 'live') {
  return findInterleavings(tr.session({ origin }), tr.threads, tr.events);
}

describe('findInterleavings', () => {
  it('LP#1994002 replay: read setup, setup -> active by live_migration, publish active', () => {
    const tr = new Trace();
    tr.transition(MAIN, 'none', 'setup');
    const qb = tr.queryBegin(MAIN, 'q1');
    const rd = tr.read(MAIN, 'setup');
    tr.hold(MAIN, 'reader', 'after read');
    tr.release(MAIN, 'reader', 'state == active');
    const tx = tr.transition(MIG, 'setup', 'active');
    const pb = tr.publish(MAIN, 'active');
    const qe = tr.queryEnd(MAIN, 'q1');
    const rp = tr.reply('q1', BODIES.lp1994002);

    const a = analyze(tr, 'replay');
    expect(a.findings).toHaveLength(1);
    const f = a.findings[0]!;
    expect(f.id).toBe('F1');
    expect(f.session_id).toBe(7);
    expect(f.class).toBe('manifested');
    expect(f.reader).toEqual({ tid: 1, name: 'main', lwp: 1234 });
    expect(f.read).toEqual({ seq: rd, value: { value: 1, name: 'setup' } });
    expect(f.publish).toEqual({ seq: pb, value: { value: 4, name: 'active' } });
    expect(f.crossing).toEqual([
      { seq: tx, released_seq: null, thread: { tid: 2, name: 'live_migration', lwp: 1240 }, old: { value: 1, name: 'setup' }, new: { value: 4, name: 'active' } },
    ]);
    expect(f.query).toEqual({ id: 'q1', begin_seq: qb, end_seq: qe });
    expect(f.evidence).toEqual([qb, rd, tx, pb, qe, rp]);
    expect(f.reply).toMatchObject({ reply_seq: rp, status: 'active', has_ram: false, old_libvirt: 'fails', libvirt_error: LIBVIRT_NO_RAM });
    expect(f.summary).toContain(
      `live_migration (LWP 1240) moved setup -> active between main's read of setup (seq ${rd}) and its publish of active (seq ${pb})`,
    );
    expect(f.summary).toContain(LIBVIRT_NO_RAM);
    expect(a.replies).toHaveLength(1);
  });

  it('an unheld writer reporting its transition just before the read, whose swap lands after it, crosses', () => {
    // Seen recording minimig under gdb: the entry probe of migrate_set_state
    // fires before the reader's load, the compare-and-swap after it.
    const tr = new Trace();
    tr.transition(MAIN, 'none', 'setup');
    tr.queryBegin(MAIN, 'q1');
    const tx = tr.transition(MIG, 'setup', 'active');
    const rd = tr.read(MAIN, 'setup');
    const pb = tr.publish(MAIN, 'active');
    tr.queryEnd(MAIN, 'q1');
    tr.reply('q1', BODIES.lp1994002);
    const a = analyze(tr, 'live');
    expect(a.findings).toHaveLength(1);
    expect(a.findings[0]).toMatchObject({ class: 'manifested', read: { seq: rd }, publish: { seq: pb }, crossing: [{ seq: tx }] });

    // A read that already shows the new value: the swap landed before it; nothing crossed.
    const ok = new Trace();
    ok.queryBegin(MAIN, 'q1');
    ok.transition(MIG, 'setup', 'active');
    ok.read(MAIN, 'active');
    ok.publish(MAIN, 'active');
    ok.queryEnd(MAIN, 'q1');
    ok.reply('q1', BODIES.active);
    expect(analyze(ok, 'live').findings).toHaveLength(0);

    // Unpatched code published the old value too: the swap landed after the
    // publish, so nothing crossed (seen in demo recordings).
    const late = new Trace();
    late.queryBegin(MAIN, 'q1');
    late.transition(MIG, 'setup', 'active');
    late.read(MAIN, 'setup');
    late.publish(MAIN, 'setup');
    late.queryEnd(MAIN, 'q1');
    late.reply('q1', BODIES.setup);
    expect(analyze(late, 'live').findings).toHaveLength(0);

    // The writer reached its next probe before the publish: its swap had landed inside the window.
    const moved = new Trace();
    moved.queryBegin(MAIN, 'q1');
    const t1 = moved.transition(MIG, 'active', 'completed');
    moved.read(MAIN, 'active');
    moved.transition(MIG, 'completed', 'none');
    moved.publish(MAIN, 'active');
    moved.queryEnd(MAIN, 'q1');
    moved.reply('q1', BODIES.race72);
    const f = analyze(moved, 'live').findings;
    expect(f.map((x) => [x.class, x.crossing.map((c) => c.seq)[0]])).toEqual([['benign', t1]]);
  });

  it('a writer held at migrate_set_state takes effect at its release, not at the probe hit', () => {
    // What a live replay records: the transition probe fires (the CAS has not
    // run yet), the writer is held, the query reads setup, then the writer goes.
    const tr = new Trace();
    const tx = tr.transition(MIG, 'setup', 'active');
    tr.hold(MIG, 'writer', 'at transition');
    tr.queryBegin(MAIN, 'q1');
    const rd = tr.read(MAIN, 'setup');
    tr.hold(MAIN, 'reader', 'after read');
    const rel = tr.release(MIG, 'writer');
    tr.note('state == active');
    tr.release(MAIN, 'reader');
    const pb = tr.publish(MAIN, 'active');
    tr.queryEnd(MAIN, 'q1');
    tr.reply('q1', HMP.lp1994002, { command: 'info migrate' });

    const a = analyze(tr, 'replay');
    expect(a.findings).toHaveLength(1);
    const f = a.findings[0]!;
    expect(f.class).toBe('manifested');
    expect(f.crossing.map((c) => [c.seq, c.released_seq])).toEqual([[tx, rel]]);
    expect(f.evidence).toContain(rel);
    expect(f.evidence).toEqual([...f.evidence].sort((x, y) => x - y));
    expect(f.publish?.seq).toBe(pb);
    expect(f.reply?.old_libvirt).toBe('fails');
    expect(f.read?.seq).toBe(rd);
  });

  it('a writer released before the read is not a crossing', () => {
    const tr = new Trace();
    tr.transition(MIG, 'setup', 'active');
    tr.hold(MIG, 'writer');
    tr.release(MIG, 'writer');
    tr.query(MAIN, 'q1', 'active');
    expect(analyze(tr, 'replay').findings).toEqual([]);
  });

  it('a writer still held at the end never completed its transition', () => {
    const tr = new Trace();
    tr.transition(MIG, 'setup', 'active');
    tr.hold(MIG, 'writer');
    tr.query(MAIN, 'q1', 'setup');
    const a = analyze(tr, 'replay');
    expect(a.findings).toEqual([]);
    expect(a.warnings.join('\n')).toContain('live_migration (LWP 1240) is still held at the end');
  });

  it('patched shape: it publishes what it read; benign, reply setup', () => {
    const tr = new Trace();
    tr.transition(MIG, 'setup', 'active');
    tr.hold(MIG, 'writer');
    tr.queryBegin(MAIN, 'q1');
    tr.read(MAIN, 'setup');
    tr.hold(MAIN, 'reader');
    tr.release(MIG, 'writer');
    tr.release(MAIN, 'reader');
    tr.publish(MAIN, 'setup');
    tr.queryEnd(MAIN, 'q1');
    tr.reply('q1', BODIES.setup);
    const a = analyze(tr, 'replay');
    expect(a.findings).toHaveLength(1);
    expect(a.findings[0]!.class).toBe('benign');
    expect(a.findings[0]!.reply).toMatchObject({ status: 'setup', old_libvirt: 'accepts', current_libvirt: 'accepts' });
    expect(a.findings[0]!.summary).toContain('it published what it read');
  });

  it('no publish probe: the reply decides', () => {
    const tr = new Trace();
    tr.queryBegin(MAIN, 'q1');
    const rd = tr.read(MAIN, 'setup');
    tr.transition(MIG, 'setup', 'active');
    const qe = tr.queryEnd(MAIN, 'q1');
    tr.reply('q1', BODIES.lp1994002);
    tr.queryBegin(MAIN, 'q2');
    tr.read(MAIN, 'active');
    tr.transition(MIG, 'active', 'completed');
    tr.queryEnd(MAIN, 'q2');
    tr.reply('q2', BODIES.active);
    const a = analyze(tr);
    // q2's active -> completed has no proof it landed before the reply (which
    // shows active, shaped as active): the probe fired at migrate_set_state's
    // entry and the swap may have come later. No finding for it.
    expect(a.findings.map((f) => f.class)).toEqual(['manifested']);
    expect(a.findings[0]!.publish).toBeNull();
    expect(a.findings[0]!.summary).toContain(`and the end of its query q1 (seq ${qe}); no publish probe`);
    expect(a.findings[0]!.read?.seq).toBe(rd);
    expect(a.warnings.join('\n')).toContain('no publish probe');
  });

  it('no publish and no query probes: the reply closes the window (reply on no thread, no query id)', () => {
    const tr = new Trace();
    tr.read(MAIN, 'setup');
    tr.transition(MIG, 'setup', 'active');
    tr.reply(null, BODIES.lp1994002);
    tr.read(MAIN, 'active');
    tr.reply(null, BODIES.active);
    tr.transition(MIG, 'active', 'completed'); // between queries
    tr.read(MAIN, 'completed');
    tr.reply(null, BODIES.completed);
    const a = analyze(tr);
    expect(a.findings).toHaveLength(1);
    expect(a.findings[0]!.class).toBe('manifested');
    expect(a.findings[0]!.query).toBeNull();
    expect(a.findings[0]!.reply?.status).toBe('active');
  });

  it('missing query probes: the reply after the publish attaches by timeline', () => {
    const tr = new Trace();
    tr.read(MAIN, 'setup');
    tr.transition(MIG, 'setup', 'active');
    tr.publish(MAIN, 'active');
    const rp = tr.reply('r17', BODIES.lp1994002);
    const f = analyze(tr).findings[0]!;
    expect(f.class).toBe('manifested');
    expect(f.reply?.reply_seq).toBe(rp);
    expect(f.query).toEqual({ id: 'r17', begin_seq: null, end_seq: null });
  });

  it('two queries: only the disturbed one is a finding, replies are all judged', () => {
    const tr = new Trace();
    tr.transition(MAIN, 'none', 'setup');
    tr.query(MAIN, 'q1', 'setup');
    tr.wait(20_000_000);
    tr.queryBegin(MAIN, 'q2');
    const rd = tr.read(MAIN, 'setup');
    tr.transition(MIG, 'setup', 'active');
    tr.publish(MAIN, 'active');
    tr.queryEnd(MAIN, 'q2');
    tr.reply('q2', BODIES.lp1994002);
    tr.wait(20_000_000);
    tr.query(MAIN, 'q3', 'active');
    const a = analyze(tr);
    expect(a.findings).toHaveLength(1);
    expect(a.findings[0]!.query?.id).toBe('q2');
    expect(a.findings[0]!.read?.seq).toBe(rd);
    expect(a.replies.map((v) => v.status)).toEqual(['setup', 'active', 'active']);
    expect(a.replies.map((v) => v.old_libvirt)).toEqual(['accepts', 'fails', 'accepts']);
    expect(a.warnings).toEqual([]);
  });

  it('replies whose query ids come late still attach to the right window', () => {
    const tr = new Trace();
    tr.queryBegin(MAIN, 'q1');
    tr.read(MAIN, 'setup');
    tr.transition(MIG, 'setup', 'active');
    tr.publish(MAIN, 'active');
    tr.queryEnd(MAIN, 'q1');
    tr.queryBegin(MAIN, 'q2');
    tr.read(MAIN, 'active');
    tr.publish(MAIN, 'active');
    tr.queryEnd(MAIN, 'q2');
    tr.reply('q2', BODIES.active);
    const rp1 = tr.reply('q1', BODIES.lp1994002);
    const f = analyze(tr).findings[0]!;
    expect(f.reply?.reply_seq).toBe(rp1);
  });

  it('transition after the publish is no finding', () => {
    const tr = new Trace();
    tr.queryBegin(MAIN, 'q1');
    tr.read(MAIN, 'setup');
    tr.publish(MAIN, 'setup');
    tr.transition(MIG, 'setup', 'active');
    tr.queryEnd(MAIN, 'q1');
    tr.reply('q1', BODIES.setup);
    expect(analyze(tr).findings).toEqual([]);
  });

  it("the reader's own transition is not a crossing", () => {
    const tr = new Trace();
    tr.queryBegin(MAIN, 'q1');
    tr.read(MAIN, 'active');
    tr.transition(MAIN, 'active', 'cancelling');
    tr.publish(MAIN, 'cancelling');
    tr.queryEnd(MAIN, 'q1');
    tr.reply('q1', BODIES.cancelling);
    expect(analyze(tr).findings).toEqual([]);
  });

  it('cancel path: active -> cancelling crosses the window; the reply still has ram', () => {
    const tr = new Trace([MAIN, MIG, IOTHREAD]);
    tr.queryBegin(IOTHREAD, 'q1');
    tr.read(IOTHREAD, 'active');
    tr.transition(MAIN, 'active', 'cancelling');
    tr.publish(IOTHREAD, 'cancelling');
    tr.queryEnd(IOTHREAD, 'q1');
    tr.reply('q1', BODIES.cancelling);
    tr.queryBegin(IOTHREAD, 'q2');
    tr.read(IOTHREAD, 'cancelling');
    tr.transition(MIG, 'cancelling', 'cancelled');
    tr.publish(IOTHREAD, 'cancelled');
    tr.queryEnd(IOTHREAD, 'q2');
    tr.reply('q2', BODIES.cancelled);
    const a = analyze(tr);
    expect(a.findings.map((f) => [f.class, f.crossing[0]!.new.name, f.reply?.old_libvirt])).toEqual([
      ['manifested', 'cancelling', 'accepts'],
      ['manifested', 'cancelled', 'accepts'],
    ]);
    expect(a.findings[0]!.summary).toContain("main (LWP 1234) moved active -> cancelling between IO mon_iothread's read of active");
  });

  it('truncated session: a read with no publish and no end is a warning; a finding only with a crossing', () => {
    const quiet = new Trace();
    quiet.queryBegin(MAIN, 'q1');
    quiet.read(MAIN, 'setup');
    const q = analyze(quiet);
    expect(q.findings).toEqual([]);
    expect(q.warnings.join('\n')).toMatch(/no publish and no query end/);

    const tr = new Trace();
    tr.queryBegin(MAIN, 'q1');
    const rd = tr.read(MAIN, 'setup');
    const tx = tr.transition(MIG, 'setup', 'active');
    const a = analyze(tr);
    expect(a.findings).toHaveLength(1);
    expect(a.findings[0]).toMatchObject({ class: 'window-only', publish: null, reply: null });
    expect(a.findings[0]!.evidence).toContain(rd);
    expect(a.findings[0]!.evidence).toContain(tx);
    expect(a.findings[0]!.summary).toContain('the session stops before its publish or query end');
    expect(a.warnings.join('\n')).toContain('query q1');
  });

  it('window-only: a transition inside a query with no read/publish probes', () => {
    const tr = new Trace();
    const qb = tr.queryBegin(MAIN, 'q1');
    const tx = tr.transition(MIG, 'setup', 'active');
    const qe = tr.queryEnd(MAIN, 'q1');
    const rp = tr.reply('q1', BODIES.lp1994002);
    const a = analyze(tr);
    expect(a.findings).toHaveLength(1);
    const f = a.findings[0]!;
    expect(f.class).toBe('window-only');
    expect(f.read).toBeNull();
    expect(f.query).toEqual({ id: 'q1', begin_seq: qb, end_seq: qe });
    expect(f.evidence).toEqual([qb, tx, qe, rp]);
    expect(f.reply?.old_libvirt).toBe('fails');
    expect(f.summary).toContain(`inside main's query q1 (seq ${qb}..${qe}) with no read probe`);
  });

  it('a transition between query end and reply is outside the window', () => {
    const tr = new Trace();
    tr.queryBegin(MAIN, 'q1');
    tr.queryEnd(MAIN, 'q1');
    tr.transition(MIG, 'setup', 'active');
    tr.reply('q1', BODIES.setup);
    expect(analyze(tr).findings).toEqual([]);
  });

  it('plain polling recording with no race: no findings, no warnings', () => {
    const tr = new Trace();
    tr.query(MAIN, 'q0', 'none');
    tr.transition(MAIN, 'none', 'setup');
    for (let i = 1; i <= 3; i++) tr.wait(20_000_000).query(MAIN, `q${i}`, 'setup');
    tr.transition(MIG, 'setup', 'active');
    for (let i = 4; i <= 8; i++) tr.wait(20_000_000).query(MAIN, `q${i}`, 'active');
    tr.transition(MIG, 'active', 'completed');
    tr.wait(20_000_000).query(MAIN, 'q9', 'completed');
    const a = analyze(tr);
    expect(a.findings).toEqual([]);
    expect(a.warnings).toEqual([]);
    expect(a.replies).toHaveLength(10);
    expect(a.replies.filter((v) => v.summary.includes('shape differs'))).toEqual([]);
  });

  it('several readers and writers: each reader only counts other threads, ids follow read order', () => {
    const tr = new Trace([MAIN, MIG, IOTHREAD]);
    tr.queryBegin(MAIN, 'm1');
    const r1 = tr.read(MAIN, 'active');
    tr.queryBegin(IOTHREAD, 'i1');
    const r2 = tr.read(IOTHREAD, 'active');
    const t1 = tr.transition(MIG, 'active', 'cancelling');
    tr.publish(IOTHREAD, 'active'); // IOTHREAD closes first
    tr.queryEnd(IOTHREAD, 'i1');
    const t2 = tr.transition(IOTHREAD, 'cancelling', 'cancelled');
    tr.publish(MAIN, 'cancelled');
    tr.queryEnd(MAIN, 'm1');
    tr.reply('i1', BODIES.active, { thread: IOTHREAD });
    tr.reply('m1', { status: 'cancelled' }, { thread: MAIN });
    const a = analyze(tr);
    // F1: the publish shows cancelled (t2 landed) and t2 swapped out of
    // cancelling (so t1 landed before it). IOTHREAD's own window has no
    // proof t1 landed before its publish of active: no finding there.
    expect(a.findings.map((f) => f.id)).toEqual(['F1']);
    expect(a.findings[0]!.read?.seq).toBe(r1);
    expect(a.findings[0]!.crossing.map((c) => c.seq)).toEqual([t1, t2]);
    expect(a.findings[0]!.class).toBe('manifested');
    expect(a.findings[0]!.summary).toContain('live_migration (LWP 1240) moved active -> cancelling, then IO mon_iothread (LWP 1236) moved cancelling -> cancelled');
    expect(a.findings.some((f) => f.read?.seq === r2)).toBe(false);
  });

  it('the 7.2 race: benign by its publish, but the reply shape is flagged', () => {
    const tr = new Trace();
    for (let i = 1; i <= 4; i++) tr.query(MAIN, `q${i}`, 'active');
    tr.queryBegin(MAIN, 'q5');
    tr.read(MAIN, 'active');
    tr.transition(MIG, 'active', 'completed');
    tr.publish(MAIN, 'active');
    tr.queryEnd(MAIN, 'q5');
    tr.reply('q5', BODIES.race72);
    const a = analyze(tr);
    expect(a.findings).toHaveLength(1);
    const f = a.findings[0]!;
    expect(f.class).toBe('benign');
    expect(f.reply?.old_libvirt).toBe('accepts');
    expect(f.summary).toContain("shape differs from the session's 4 undisturbed active replies");
    expect(f.summary).toContain('foreign downtime');
  });

  it('a new untagged read without publish closes the previous window', () => {
    const tr = new Trace();
    tr.read(MAIN, 'setup');
    tr.publish(MAIN, 'setup');
    tr.read(MAIN, 'setup'); // publish probe missed here
    tr.read(MAIN, 'setup');
    tr.transition(MIG, 'setup', 'active');
    tr.publish(MAIN, 'active');
    const a = analyze(tr);
    expect(a.findings).toHaveLength(1);
    expect(a.findings[0]!.read?.seq).toBe(4);
    expect(a.warnings.join('\n')).toContain('a publish probe may be missing');
  });

  it('names states from numbers with the session table when the event has no name', () => {
    const tr = new Trace([MAIN, MIG], { table: '9.1' });
    tr.queryBegin(MAIN, 'q1');
    tr.events.push({ ...tr.events[0]!, seq: 2, kind: 'read', data: { value: { value: 1, name: null } } } as never);
    tr.skip(1);
    tr.transition(MIG, 'active', 'completed');
    tr.events.push({ ...tr.events[0]!, seq: 4, kind: 'publish', data: { value: { value: 9, name: null } } } as never);
    const f = findInterleavings(tr.session(), tr.threads, tr.events).findings[0]!;
    expect(f.publish?.value).toEqual({ value: 9, name: 'completed' });
    expect(f.class).toBe('manifested');
  });

  it('1,000,000 synthetic events: every planted window is found, nothing else', () => {
    const s = syntheticPolling(1_000_000);
    expect(s.events).toHaveLength(1_000_000);
    expect(s.manifested.length).toBeGreaterThan(100);
    const a = findInterleavings(s.session, s.threads, s.events);
    const planted = [...s.manifested.map((seq) => [seq, 'manifested']), ...s.benign.map((seq) => [seq, 'benign'])]
      .sort((x, y) => (x[0] as number) - (y[0] as number));
    expect(a.findings.map((f) => [f.read!.seq, f.class])).toEqual(planted);
    expect(a.findings.map((f) => f.id)).toEqual(planted.map((_, i) => `F${i + 1}`));
    expect(a.findings.every((f) => f.crossing.length === 1 && f.reply !== null)).toBe(true);
    expect(a.warnings).toEqual([]);
    const failing = a.replies.filter((v) => v.old_libvirt === 'fails');
    expect(failing).toHaveLength(s.manifested.length);
  });
});
