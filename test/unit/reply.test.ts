import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { replyData, replyFacts } from '../../trace/reply.js';
import { parseGdbTranscript } from '../../recorder/import/gdb-transcript.js';
import { parseLibvirtLog } from '../../recorder/import/libvirt-log.js';
import { runModel } from '../../analyzer/model.js';

/*
 * The one reply reader on replies captured from real QEMU builds
 * (test/fixtures/replies/capture.py: QMP messages exactly as QEMU sent them,
 * HMP text as the monitor printed it), and the importers and the model
 * reading through it.
 */

interface Captured {
  qemu: string;
  replies: { state: string; qmp: string; hmp: string }[];
  forced: { hmp: string };
}
const captured = (v: string): Captured => JSON.parse(readFileSync(`test/fixtures/replies/qemu-${v}.json`, 'utf8')) as Captured;
const ACTIVE_FIELDS = ['total-time', 'setup-time', 'expected-downtime', 'ram'];
const COMPLETED_FIELDS = ['total-time', 'setup-time', 'downtime', 'ram'];

describe.each(['5.2', '7.2'])('replies of Debian QEMU %s', (v) => {
  const c = captured(v);
  const at = (state: string) => c.replies.find((r) => r.state === state)!;

  it('was captured from the build it says', () => {
    expect(c.qemu).toMatch(new RegExp(`^QEMU emulator version ${v.replace('.', '\\.')}`));
  });

  it('QMP: status, ram and shape at every state', () => {
    expect(replyFacts(JSON.parse(at('none').qmp))).toMatchObject({ form: 'empty', status: null, has_ram: false, fields: [] });
    expect(replyFacts(JSON.parse(at('active').qmp))).toMatchObject({ form: 'qmp', status: 'active', has_ram: true, fields: ACTIVE_FIELDS, ram_missing: [] });
    expect(replyFacts(JSON.parse(at('completed').qmp))).toMatchObject({ form: 'qmp', status: 'completed', has_ram: true, fields: COMPLETED_FIELDS });
    expect(replyFacts(JSON.parse(at('cancelled').qmp))).toMatchObject({ form: 'qmp', status: 'cancelled', has_ram: false, fields: [] });
    expect(replyFacts(JSON.parse(at('failed').qmp))).toMatchObject({ form: 'qmp', status: 'failed', has_ram: false, fields: [] });
    // The message as text reads the same as the parsed message.
    expect(replyFacts(at('active').qmp)).toEqual(replyFacts(JSON.parse(at('active').qmp)));
  });

  it('HMP: the same statuses; globals alone is no migration; failed keeps its reason out of the status', () => {
    expect(replyFacts(at('none').hmp)).toMatchObject({ form: 'empty', status: null, has_ram: false });
    expect(replyFacts(at('active').hmp)).toMatchObject({ form: 'hmp', status: 'active', has_ram: true, fields: ACTIVE_FIELDS, ram_missing: [] });
    expect(replyFacts(at('completed').hmp)).toMatchObject({ form: 'hmp', status: 'completed', has_ram: true, fields: COMPLETED_FIELDS });
    expect(replyFacts(at('failed').hmp)).toMatchObject({ form: 'hmp', status: 'failed', has_ram: false });
    // Old HMP prints "total time" for every status, even where QMP leaves it out.
    expect(replyFacts(at('cancelled').hmp)).toMatchObject({ status: 'cancelled', fields: ['total-time'] });
  });

  it('the forced interleaving: 5.2 answers active without ram, 7.2 setup', () => {
    const f = replyFacts(c.forced.hmp);
    if (v === '5.2') expect(f).toMatchObject({ form: 'hmp', status: 'active', has_ram: false, fields: ['total-time'] });
    else expect(f).toMatchObject({ form: 'hmp', status: 'setup', has_ram: false });
  });

  it('replyData keeps the body and stores what replyFacts read', () => {
    const body = JSON.parse(at('active').qmp) as unknown;
    expect(replyData('q1', 'query-migrate', body)).toEqual({ query: 'q1', command: 'query-migrate', status: 'active', has_ram: true, body });
    expect(replyData(null, 'info migrate', c.forced.hmp)).toMatchObject({ status: v === '5.2' ? 'active' : 'setup', has_ram: false });
  });
});

describe('error replies and odd bodies', () => {
  it('a QMP error, HMP "Error:", and a body that says nothing fall back as documented', () => {
    expect(replyFacts({ error: { class: 'GenericError', desc: 'no migration' } })).toMatchObject({ form: 'error', error: 'no migration' });
    expect(replyFacts('Error: no such command\n')).toMatchObject({ form: 'error', status: null });
    expect(replyFacts(42, { status: 'active', has_ram: true })).toMatchObject({ form: 'unknown', status: 'active', has_ram: true });
    expect(replyFacts('{"return": {"status": "act')).toMatchObject({ status: null, has_ram: false });
  });
});

describe('every reader of replies reads through it', () => {
  it('a GDB transcript: the HMP block and the QMP return', () => {
    for (const f of ['qemu52-stripped.gdb.txt', 'minimig-unpatched.gdb.txt']) {
      const t = parseGdbTranscript(readFileSync(`samples/transcripts/${f}`, 'utf8'));
      for (const e of t.events) {
        if (e.kind !== 'reply') continue;
        const facts = replyFacts(e.data.body);
        expect([e.data.status, e.data.has_ram], f).toEqual([facts.status, facts.has_ram]);
      }
    }
  });

  it('a libvirt log: QMP query-migrate replies', () => {
    const m = parseLibvirtLog(readFileSync('samples/libvirt-logs/save-qemu52-race.libvirtd.log', 'utf8')).monitors[0];
    const replies = m.events.filter((e) => e.kind === 'reply');
    expect(replies.length).toBeGreaterThan(0);
    for (const e of replies) {
      if (e.kind !== 'reply') continue;
      const facts = replyFacts(e.data.body);
      expect([e.data.status, e.data.has_ram]).toEqual([facts.status, facts.has_ram]);
    }
  });

  it('the model: its synthetic reply has the shape the reader finds in a real one', () => {
    const real = replyFacts(JSON.parse(captured('7.2').replies.find((r) => r.state === 'active')!.qmp));
    const m = runModel('patched', 'active', [{ kind: 'read' }]);
    expect(m.fields).toEqual(real.fields);
    expect(m.ram).toBe(real.has_ram);
    const race = runModel('unpatched', 'setup', [{ kind: 'read' }, { kind: 'transition', old: 'setup', new: 'active' }]);
    expect([race.published, race.ram, race.fields]).toEqual(['active', false, []]);
  });
});
