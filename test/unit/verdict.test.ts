import { describe, expect, it } from 'vitest';
import {
  LIBVIRT_NO_RAM, LIBVIRT_NO_STATUS, checkShape, judgeReply, judgeReplyData, qemuShape, replyFacts, shapeBaseline,
} from '../../analyzer/verdict.js';
import type { EventOf } from '../../trace/schema.js';
import { BODIES, HMP, Trace } from '../helpers/events.js';

function replyOf(body: unknown, opts: { query?: string | null; command?: string } = {}): EventOf<'reply'> {
  const tr = new Trace();
  tr.reply(opts.query ?? null, body, { command: opts.command });
  return tr.events[0] as EventOf<'reply'>;
}

describe('judgeReply: QMP', () => {
  it('accepts an undisturbed active reply and lists its time fields', () => {
    const v = judgeReply(replyOf(BODIES.active));
    expect(v).toMatchObject({
      status: 'active', has_ram: true, old_libvirt: 'accepts', current_libvirt: 'accepts', libvirt_error: null,
      time_fields: ['total-time', 'setup-time', 'expected-downtime'],
    });
    expect(v.reply_seq).toBe(1);
  });

  it('LP#1994002: {"status":"active"} fails old libvirt, current libvirt accepts it', () => {
    const v = judgeReply(replyOf(BODIES.lp1994002));
    expect(v.status).toBe('active');
    expect(v.has_ram).toBe(false);
    expect(v.time_fields).toEqual([]);
    expect(v.old_libvirt).toBe('fails');
    expect(v.current_libvirt).toBe('accepts');
    expect(v.libvirt_error).toBe('migration was active, but no RAM info was set');
    expect(v.summary).toContain('active without ram');
    expect(v.summary).toContain(LIBVIRT_NO_RAM);
  });

  it.each(['active', 'postcopy-active', 'completed', 'cancelling'])('%s without ram fails old libvirt', (status) => {
    const v = judgeReply(replyOf({ status }));
    expect(v.old_libvirt).toBe('fails');
    expect(v.current_libvirt).toBe('accepts');
    expect(v.libvirt_error).toBe(LIBVIRT_NO_RAM);
  });

  it.each(['setup', 'cancelled', 'failed', 'device', 'postcopy-paused'])('%s without ram is fine for both', (status) => {
    const v = judgeReply(replyOf({ status }));
    expect(v.old_libvirt).toBe('accepts');
    expect(v.current_libvirt).toBe('accepts');
  });

  it('reads a whole QMP message and its JSON text as well as the bare return object', () => {
    expect(judgeReply(replyOf({ return: BODIES.lp1994002 })).old_libvirt).toBe('fails');
    expect(judgeReply(replyOf(JSON.stringify({ return: BODIES.active }))).has_ram).toBe(true);
    expect(judgeReply(replyOf({ return: { status: 'setup', 'blocked-reasons': ['virtio-net failover'] } })).status).toBe('setup');
  });

  it('{} is "no migration": libvirt would miss the status (it only asks during a job)', () => {
    const v = judgeReply(replyOf(BODIES.none));
    expect(v.status).toBeNull();
    expect(v.has_ram).toBe(false);
    expect(v.old_libvirt).toBe('fails');
    expect(v.current_libvirt).toBe('fails');
    expect(v.libvirt_error).toBe(LIBVIRT_NO_STATUS);
    expect(v.summary).toContain('no migration has run');
    expect(replyFacts({ return: {} }).form).toBe('empty');
  });

  it('error replies fail with the QMP error text', () => {
    const v = judgeReply(replyOf(BODIES.error));
    expect(v.status).toBeNull();
    expect(v.old_libvirt).toBe('fails');
    expect(v.current_libvirt).toBe('fails');
    expect(v.libvirt_error).toBe("unable to execute QEMU command 'query-migrate': Command query-migrate has been disabled");
  });

  it('a ram object without total fails current libvirt too', () => {
    const { total: _t, ...ram } = BODIES.active.ram;
    const v = judgeReply(replyOf({ ...BODIES.active, ram }));
    expect(v.old_libvirt).toBe('fails');
    expect(v.current_libvirt).toBe('fails');
    expect(v.libvirt_error).toBe("migration was active, but RAM 'total' data was missing");
  });

  it('a status libvirt has no name for is an error', () => {
    const v = judgeReply(replyOf({ status: 'colo' }));
    expect(v.old_libvirt).toBe('fails');
    expect(v.libvirt_error).toBe('unexpected migration status in colo');
  });

  it('falls back to the recorded status when the body is missing', () => {
    const v = judgeReplyData({ command: 'query-migrate', status: 'active', has_ram: false, body: null }, 3);
    expect(v.verdict).toMatchObject({ reply_seq: 3, status: 'active', old_libvirt: 'fails' });
    expect(v.facts.form).toBe('unknown');
  });
});

describe('judgeReply: HMP text', () => {
  it('reads "Migration status", the time lines and the RAM lines (5.2/7.2 layout)', () => {
    const v = judgeReply(replyOf(HMP.active));
    expect(v).toMatchObject({ status: 'active', has_ram: true, old_libvirt: 'accepts' });
    expect(v.time_fields).toEqual(['total-time', 'setup-time', 'expected-downtime']);
  });

  it('the LP#1994002 monitor output: active, total time 0 ms, no RAM lines', () => {
    const v = judgeReply(replyOf(HMP.lp1994002));
    expect(v.status).toBe('active');
    expect(v.has_ram).toBe(false);
    expect(v.old_libvirt).toBe('fails');
    expect(v.libvirt_error).toBe(LIBVIRT_NO_RAM);
  });

  it('does not take "expected downtime" for "downtime"', () => {
    expect(replyFacts(HMP.active).time_fields).not.toContain('downtime');
    expect(replyFacts(HMP.race72).time_fields).toEqual(['total-time', 'setup-time', 'downtime']);
  });

  it('reads the 10.1 layout', () => {
    const f = replyFacts(HMP.active101);
    expect(f).toMatchObject({ form: 'hmp', status: 'active', has_ram: true, ram_missing: [] });
    expect(f.time_fields).toEqual(['total-time', 'setup-time', 'expected-downtime']);
  });

  it('text without a status line is "no migration"', () => {
    expect(replyFacts('globals:\nstore-global-state: on\n').form).toBe('empty');
  });
});

describe('reply shape', () => {
  it('QEMU table: an active reply carrying downtime (the 7.2 race) is flagged', () => {
    const v = judgeReply(replyOf(BODIES.race72));
    expect(v.old_libvirt).toBe('accepts'); // it has ram: libvirt does not notice
    expect(v.summary).toContain('shape differs from what QEMU fills for active');
    expect(v.summary).toContain('missing expected-downtime');
    expect(v.summary).toContain('foreign downtime (only completed replies have it)');
  });

  it('session baseline: compares with the undisturbed replies of the same status', () => {
    const tr = new Trace();
    for (let i = 0; i < 5; i++) tr.reply(`q${i}`, BODIES.active);
    tr.reply('q5', BODIES.race72);
    const replies = tr.events as EventOf<'reply'>[];
    // The race reply is one of six: the majority shape is still the undisturbed one.
    const base = shapeBaseline(replies);
    const v = judgeReply(replies[5]!, base);
    expect(v.summary).toContain("the session's 6 undisturbed active replies");
    expect(v.summary).toContain('foreign downtime');
    expect(v.summary).toContain('missing expected-downtime');
    // Excluding it explicitly leaves five.
    expect(judgeReply(replies[5]!, shapeBaseline(replies, new Set([replies[5]!.seq]))).summary).toContain("session's 5 undisturbed");
    expect(judgeReply(replies[0]!, base).summary).not.toContain('shape differs');
  });

  it('LP#1994002 reply: everything but the status is missing', () => {
    const c = checkShape(replyFacts(BODIES.lp1994002), 'query-migrate');
    expect(c).toMatchObject({ against: 'qemu', missing: ['total-time', 'setup-time', 'expected-downtime', 'ram'], foreign: [] });
  });

  it('HMP replies are compared with HMP replies; the unconditional total time is ignored against the QEMU table', () => {
    const tr = new Trace();
    tr.reply('a', HMP.active);
    tr.reply('b', HMP.active);
    tr.reply('c', HMP.race72);
    tr.reply('d', HMP.setup);
    const r = tr.events as EventOf<'reply'>[];
    const base = shapeBaseline(r, new Set([r[2]!.seq]));
    expect(judgeReply(r[2]!, base).summary).toContain("the session's 2 undisturbed active replies: missing expected-downtime; foreign downtime");
    expect(judgeReply(r[3]!).summary).not.toContain('shape differs');
  });

  it('completed with expected-downtime is foreign too', () => {
    const { downtime: _d, ...rest } = BODIES.completed;
    const c = checkShape(replyFacts({ ...rest, 'expected-downtime': 300 }), 'query-migrate');
    expect(c?.foreign).toEqual(['expected-downtime']);
    expect(c?.missing).toEqual(['downtime']);
  });

  it('knows the QEMU shapes by status', () => {
    expect(qemuShape('setup')).toEqual([]);
    expect(qemuShape('active')).toEqual(['total-time', 'setup-time', 'expected-downtime', 'ram']);
    expect(qemuShape('completed')).toEqual(['total-time', 'setup-time', 'downtime', 'ram']);
    expect(qemuShape('none')).toBeNull();
  });
});
