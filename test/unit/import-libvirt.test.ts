import { readFileSync } from 'node:fs';
import { expectCatch, expectRejection } from '../helpers/errors.js';
import { describe, expect, it } from 'vitest';
import { parseLibvirtLog } from '../../recorder/import/libvirt-log.js';
import { parseQemuTrace } from '../../recorder/import/qemu-trace.js';
import { mergeOnWallTime, type ImportedLog } from '../../recorder/import/merge.js';
import { importFiles } from '../../recorder/import/index.js';
import { variantOf } from '../../recorder/import/gdb-transcript.js';
import { tempStore } from '../helpers/db.js';
import type { TraceEvent } from '../../trace/schema.js';
import { analyzeImport } from '../helpers/imports.js';

const sample = (f: string): string => readFileSync(`samples/libvirt-logs/${f}`, 'utf8');
type Reply = Extract<TraceEvent, { kind: 'reply' }>;
type Tr = Extract<TraceEvent, { kind: 'transition' }>;

const analyze = (log: ImportedLog) => analyzeImport(log, 'import:libvirt-log');

describe('libvirt 9.0 logs of virsh save (real)', () => {
  it('QEMU 7.2: every query-migrate is a query with its reply; MIGRATION events are transitions on QEMU time', () => {
    const r = parseLibvirtLog(sample('save-qemu72.libvirtd.log'), { source: 'lv' });
    expect(r.monitors).toHaveLength(1);
    const m = r.monitors[0];
    const replies = m.events.filter((e) => e.kind === 'reply') as Reply[];
    expect(replies.map((e) => [e.data.query, e.data.status, e.data.has_ram])).toEqual([
      ['libvirt-411', null, false],
      ['libvirt-417', 'setup', false], ['libvirt-418', 'setup', false], ['libvirt-419', 'setup', false], ['libvirt-420', 'setup', false],
      ['libvirt-421', 'active', true], ['libvirt-422', 'active', true], ['libvirt-423', 'active', true],
      ['libvirt-424', 'completed', true],
    ]);
    const begins = m.events.filter((e) => e.kind === 'query-begin');
    expect(begins).toHaveLength(9);
    // query-begin is the IO_WRITE (on the socket), not the SEND_MSG.
    expect(begins.every((e) => e.probe === 'libvirt:QEMU_MONITOR_IO_WRITE')).toBe(true);
    const tr = m.events.filter((e) => e.kind === 'transition') as Tr[];
    expect(tr.map((e) => `${e.data.old?.name}->${e.data.new.name}`)).toEqual(['none->setup', 'setup->active', 'active->completed']);
    expect(tr.every((e) => e.thread === null && /\.\d{6}Z$/.test(e.wall!))).toBe(true);
    expect(m.warnings).toEqual([]);
    expect(m.lines.every((l) => l > 0)).toBe(true);
    // Undisturbed: nothing crossed a query's window.
    expect(analyze(m).findings).toEqual([]);
  });

  it('QEMU 5.2 with the race forced: libvirt got {"status":"active"} without ram while setup -> active crossed its query', () => {
    const m = parseLibvirtLog(sample('save-qemu52-race.libvirtd.log')).monitors[0];
    const bad = (m.events.filter((e) => e.kind === 'reply') as Reply[]).find((e) => e.data.query === 'libvirt-378')!;
    expect([bad.data.status, bad.data.has_ram, bad.data.body]).toEqual(['active', false, { return: { status: 'active' }, id: 'libvirt-378' }]);
    const a = analyze(m);
    const f = a.findings.find((x) => x.query?.id === 'libvirt-378')!;
    expect(f.class).toBe('window-only');
    expect(f.crossing.map((c) => `${c.old?.name}->${c.new.name}`)).toContain('setup->active');
    expect(f.reply?.old_libvirt).toBe('fails');
  });

  it('merged with the same guest\'s QEMU trace log: the crossing transition is the migration thread\'s, the query the main thread\'s', () => {
    const lv = parseLibvirtLog(sample('save-qemu52-race.libvirtd.log'), { migrationEvents: 'notes' }).monitors[0];
    const q = parseQemuTrace(sample('save-qemu52-race.qemu-trace.log')).processes[0];
    const m = mergeOnWallTime(lv, q, { mainTid: q.pid });
    expect(m.events.filter((e) => e.kind === 'transition')).toHaveLength(3);
    const a = analyze(m);
    const f = a.findings.find((x) => x.query?.id === 'libvirt-378')!;
    expect(f.reader.name).toBe('main');
    expect(f.crossing.map((c) => `${c.thread.name}:${c.old?.name}->${c.new.name}`)).toEqual(['live_migration:setup->active', 'live_migration:active->completed']);
    expect(f.reply?.status).toBe('active');
    expect(f.reply?.has_ram).toBe(false);
    // Stable: each source keeps its own order.
    const lvOrder = m.events.filter((e) => lv.events.includes(e as never) || (e.probe ?? '').startsWith('libvirt:'));
    expect(lvOrder.length).toBeGreaterThan(0);
  });
});

describe('the merge tie rule', () => {
  const ev = (kind: string, wall: string, data: unknown, thread: number | null = null): TraceEvent =>
    ({ kind, wall, thread, t_ns: null, probe: null, pc: null, func: null, file: null, line: null, data }) as unknown as TraceEvent;
  const log = (events: TraceEvent[]): ImportedLog => ({ title: 't', threads: [], events, lines: events.map((_, i) => i + 1), warnings: [], qemuVersion: null, meta: {} });

  it('a QEMU transition in the millisecond of a libvirt query-begin goes after it, and before a reply in its millisecond', () => {
    const lv = log([
      ev('query-begin', '2026-01-01T00:00:00.100Z', { query: 'q' }),
      ev('query-end', '2026-01-01T00:00:00.200Z', { query: 'q' }),
      ev('reply', '2026-01-01T00:00:00.200Z', { query: 'q', command: 'query-migrate', status: 'active', has_ram: false, body: {} }),
    ]);
    const q = log([
      ev('transition', '2026-01-01T00:00:00.100400Z', { addr: null, old: null, new: { value: 4, name: 'active' } }, 7),
      ev('transition', '2026-01-01T00:00:00.200900Z', { addr: null, old: null, new: { value: 8, name: 'completed' } }, 7),
      ev('transition', '2026-01-01T00:00:00.201000Z', { addr: null, old: null, new: { value: 9, name: 'failed' } }, 7),
    ]);
    const m = mergeOnWallTime(lv, q);
    expect(m.events.filter((e) => e.kind !== 'note').map((e) => e.kind === 'transition' ? (e.data as { new: { name: string } }).new.name : e.kind)).toEqual([
      'query-begin', 'active', 'completed', 'query-end', 'reply', 'failed',
    ]);
    // Each tie is flagged next to its transition.
    expect(m.events.filter((e) => e.kind === 'note').length).toBe(2);
  });
});

describe('malformed input', () => {
  it('empty, binary, not a libvirt log, a libvirt log without monitor traffic', () => {
    expect(expectCatch(() => parseLibvirtLog('', { source: 'x' })).message).toMatch(/^x: empty file/);
    const bin = Buffer.from(Array.from({ length: 2048 }, (_, i) => (i * 13) % 256)).toString('latin1');
    expect(expectCatch(() => parseLibvirtLog(bin, { source: 'b' })).message).toMatch(/binary data/);
    const e = expectCatch(() => parseLibvirtLog(readFileSync('samples/trace-logs/qemu52.log', 'utf8'), { source: 'q.log' }));
    expect(e.message).toMatch(/^q\.log:1: not a libvirt debug log/);
    expect(e.message).toMatch(/QEMU trace log/);
    const quiet = '2024-01-02 03:04:05.678+0000: 1234: info : virNetServerNew:123 : hello\n';
    expect(expectCatch(() => parseLibvirtLog(quiet, { source: 'quiet' })).message).toMatch(/without QMP traffic.*log_filters/);
  });

  it('a reply cut short, a 1 MB reply of no interest, garbage before the first record', () => {
    const lines = [
      'garbage before',
      '2024-01-02 03:04:05.678+0000: 1: info : qemuMonitorIOWrite:452 : QEMU_MONITOR_IO_WRITE: mon=0x1 buf={"execute":"query-migrate","id":"libvirt-1"}',
      ' len=48 ret=48 errno=0',
      `2024-01-02 03:04:05.679+0000: 1: info : qemuMonitorJSONIOProcessLine:240 : QEMU_MONITOR_RECV_REPLY: mon=0x1 reply={"return": [${'"x",'.repeat(250000)}"y"], "id": "libvirt-0"}`,
      '2024-01-02 03:04:05.680+0000: 1: info : qemuMonitorJSONIOProcessLine:240 : QEMU_MONITOR_RECV_REPLY: mon=0x1 reply={"id": "libvirt-1", "return": {"status": "act',
      '2024-01-02 03:04:05.681+0000: 1: info : qemuMonitorIOWrite:452 : QEMU_MONITOR_IO_WRITE: mon=0x1 buf={"execute":"query-migrate","id":"libvirt-2"}',
    ];
    const r = parseLibvirtLog(lines.join('\n'));
    expect(r.warnings.map((w) => w.line)).toEqual([1]);
    const m = r.monitors[0];
    expect(m.warnings.map((w) => w.line)).toEqual([5, 6]);
    expect(m.warnings[1].reason).toMatch(/no reply/);
    const reply = m.events.find((e) => e.kind === 'reply') as Reply;
    expect(reply.data.status).toBeNull();
  });
});

describe('hostile ids', () => {
  it('a control character inside a reply\'s id is a warning naming the line, not a crash', () => {
    const lines = [
      '2024-01-02 03:04:05.678+0000: 1: info : qemuMonitorIOWrite:452 : QEMU_MONITOR_IO_WRITE: mon=0x1 buf={"execute":"query-migrate","id":"libvirt-1"}',
      '2024-01-02 03:04:05.679+0000: 1: info : qemuMonitorJSONIOProcessLine:240 : QEMU_MONITOR_RECV_REPLY: mon=0x1 reply={"return": {}, "id": "\t"}',
      '2024-01-02 03:04:05.680+0000: 1: info : qemuMonitorJSONIOProcessLine:240 : QEMU_MONITOR_RECV_REPLY: mon=0x1 reply={"return": {"status": "active"}, "id": "libvirt-1"}',
    ];
    const m = parseLibvirtLog(lines.join('\n')).monitors[0];
    expect(m.warnings).toEqual([expect.objectContaining({ line: 2, reason: expect.stringMatching(/id .* is not valid JSON/) })]);
    expect(m.events.filter((e) => e.kind === 'reply')).toHaveLength(1);
  });
});

describe('importFiles', () => {
  it('a QEMU trace log to merge with anything but a libvirt log names the command that takes it', async () => {
    const t = tempStore('migrace-import');
    try {
      const e = await expectRejection(importFiles(t.store, 'gdb', ['samples/transcripts/minimig-unpatched.gdb.txt'], { label: 'x', qemuLog: 'q.log' }));
      expect(e.code).toBe('BAD_INPUT');
      expect(e.message).toMatch(/migrace import libvirt FILE --qemu-log q\.log/);
      expect(e.message).toMatch(/not with migrace import gdb/);
      expect(e.message).not.toMatch(/--kind/);
      expect(t.store.listSessions()).toHaveLength(0);
    } finally {
      t.cleanup();
    }
  });

  it('trace and libvirt logs take their variant from the QEMU version, as transcripts do', async () => {
    expect(variantOf(null, '7.2.0')).toBe('patched');
    expect(variantOf(null, '8.0')).toBe('patched');
    expect(variantOf(null, '7.0.0')).toBe('unknown');
    expect(variantOf(null, null)).toBe('unknown');
    expect(variantOf('/usr/bin/minimig', null)).toBe('unpatched');
    const t = tempStore('migrace-import');
    try {
      const [id] = await importFiles(t.store, 'libvirt', ['samples/libvirt-logs/save-qemu72.libvirtd.log'], { label: 'lv', qemuVersion: '7.2.0' });
      expect(t.store.session(id!).target.variant).toBe('patched');
    } finally {
      t.cleanup();
    }
  });
});
