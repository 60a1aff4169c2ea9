import { readFileSync } from 'node:fs';
import { expectCatch } from '../helpers/errors.js';
import { describe, expect, it } from 'vitest';
import { parseQemuTrace } from '../../recorder/import/qemu-trace.js';
import type { TraceEvent } from '../../trace/schema.js';

const sample = (f: string): string => readFileSync(`samples/trace-logs/${f}`, 'utf8');
type Tr = Extract<TraceEvent, { kind: 'transition' }>;

function summary(p: { events: unknown[]; threads: { tid: number; name: string | null }[] }): string[] {
  const name = (tid: number | null): string => (tid === null ? '-' : p.threads.find((t) => t.tid === tid)?.name ?? `tid${tid}`);
  return (p.events as Tr[]).filter((e) => e.kind === 'transition').map((e) => `${name(e.thread)}:${e.data.old?.name ?? '?'}->${e.data.new.name}`);
}


describe('QEMU trace logs made by real QEMUs', () => {
  it('TID@SEC.USEC (7.2 with -msg timestamp=on): setup by the main thread, active and completed by the migration thread', () => {
    const r = parseQemuTrace(sample('qemu72-tid.log'), { source: 'qemu72-tid.log', qemuVersion: '7.2.22' });
    expect(r.formats).toEqual(['tid']);
    expect(r.processes).toHaveLength(1);
    const p = r.processes[0];
    expect(summary(p)).toEqual(['main:none->setup', 'live_migration:setup->active', 'live_migration:active->completed']);
    const main = p.threads.find((t) => t.name === 'main')!;
    expect(p.pid).toBe(main.tid);
    expect(main.lwp).toBe(main.tid);
    const tr = p.events as Tr[];
    expect(tr[0].wall).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(tr[1].data.new).toEqual({ value: 4, name: 'active' });
    // Old states come from the previous transition, and say so.
    expect(tr[0].probe).toBe('trace:migrate_set_state');
    expect(tr[1].probe).toBe('trace:migrate_set_state (old inferred)');
    expect(p.warnings).toEqual([]);
  });

  it('bare lines: no threads, no clock, values still there', () => {
    const r = parseQemuTrace(sample('qemu72-bare.log'));
    expect(r.formats).toEqual(['bare']);
    const p = r.processes[0];
    expect(p.threads).toEqual([]);
    expect(summary(p)).toEqual(['-:none->setup', '-:setup->active', '-:active->completed']);
    expect(p.events.every((e) => e.wall === null && e.thread === null)).toBe(true);
  });

  it('QEMU 5.2 always writes TID lines', () => {
    const p = parseQemuTrace(sample('qemu52.log')).processes[0];
    expect(summary(p)).toEqual(['main:none->setup', 'live_migration:setup->active', 'live_migration:active->completed']);
  });

  it('cancel: cancelling by the main thread', () => {
    const p = parseQemuTrace(sample('qemu72-cancel.log')).processes[0];
    const s = summary(p);
    expect(s.slice(0, 3)).toEqual(['main:none->setup', 'live_migration:setup->active', 'main:active->cancelling']);
    expect(s[3]).toMatch(/^live_migration:cancelling->(cancelled|failed)$/);
  });

  it('two processes in one file: two sessions; the first keeps both its migrations; other events are notes', () => {
    const r = parseQemuTrace(sample('qemu72-two-processes.log'));
    expect(r.processes).toHaveLength(2);
    expect(summary(r.processes[0])).toEqual([
      'main:none->setup', 'main:setup->failed', 'main:none->setup', 'live_migration:setup->active', 'live_migration:active->completed',
    ]);
    expect(r.processes[0].meta.migrations).toBe(2);
    expect(summary(r.processes[1])).toEqual(['main:none->setup', 'live_migration:setup->active', 'live_migration:active->completed']);
    const notes = r.processes[1].events.filter((e) => e.kind === 'note').map((e) => (e.data as { text: string }).text);
    expect(notes).toContain('migration_thread_setup_complete');
    expect(notes.some((n) => n.startsWith('migration_socket_outgoing_connected hostname='))).toBe(true);
    expect(r.processes[0].pid).not.toBe(r.processes[1].pid);
  });

  it('a destination: no setup line, so nobody is named and the first old state is unknown', () => {
    const p = parseQemuTrace(sample('qemu72-destination.log')).processes[0];
    expect(p.threads.every((t) => t.name === null)).toBe(true);
    const tr = p.events as Tr[];
    expect(tr[0].data.old).toBeNull();
    expect(tr[1].data.old?.name).toBe('active');
  });
});

describe('hand-written logs (formats no QEMU here writes, TID reuse)', () => {
  it('10.1+ ISO lines: a session per migration, fraction-less stamps, a QEMU message counted as skipped', () => {
    const r = parseQemuTrace(sample('qemu101-iso.log'), { source: 'iso.log', qemuVersion: '10.1.0' });
    expect(r.formats).toEqual(['iso']);
    expect(r.processes.map(summary)).toEqual([
      ['-:none->setup', '-:setup->active', '-:active->device', '-:device->completed'],
      ['-:none->setup', '-:setup->failed'],
    ]);
    // 10.1 numbering: completed is 9 there.
    const completed = (r.processes[0].events as Tr[]).find((e) => e.kind === 'transition' && e.data.new.name === 'completed')!;
    expect(completed.data.new.value).toBe(9);
    expect((r.processes[0].events as Tr[])[3].wall).toBe('2025-07-21T18:43:29Z');
    expect(r.skipped.map((w) => w.line)).toEqual([6]);
    expect(r.processes[0].warnings.map((w) => w.line)).toEqual([6]);
  });

  it('a TID that was a migration thread doing a setup is another process; the clock going back is another run', () => {
    const r = parseQemuTrace(sample('tid-reuse.log'));
    expect(r.processes.map((p) => p.pid)).toEqual([4100, 4119, 4100]);
    expect(summary(r.processes[0])).toHaveLength(6);
    expect(r.processes[1].threads.find((t) => t.tid === 4119)?.name).toBe('main');
    expect(r.processes[0].threads.find((t) => t.tid === 4119)?.name).toBe('live_migration');
    expect(r.processes[2].warnings.some((w) => w.line === 12 && /not a trace line/.test(w.reason))).toBe(true);
    expect(r.processes[1].warnings.some((w) => w.line === 10 && /clock goes back/.test(w.reason))).toBe(true);
  });
});

describe('malformed input', () => {
  it('empty, binary, wrong kind', () => {
    expect(expectCatch(() => parseQemuTrace('\n\n', { source: 'e.log' })).message).toMatch(/^e\.log: empty file/);
    const bin = Buffer.from(Array.from({ length: 2048 }, (_, i) => (i * 31) % 256)).toString('latin1');
    expect(expectCatch(() => parseQemuTrace(bin, { source: 'b' })).message).toMatch(/^b: binary data/);
    const e = expectCatch(() => parseQemuTrace(readFileSync('samples/libvirt-logs/save-qemu72.libvirtd.log', 'utf8'), { source: 'lv.log' }));
    expect(e.message).toMatch(/^lv\.log:1: not a QEMU trace log/);
    expect(e.message).toMatch(/libvirt debug log/);
    expect(expectCatch(() => parseQemuTrace(readFileSync('samples/transcripts/qemu52-stripped.gdb.txt', 'utf8'))).message).toMatch(/GDB transcript/);
  });

  it('a 1 MB line and garbage lines are counted and listed by line number, the rest imports', () => {
    const text = `${sample('qemu72-tid.log')}${'z'.repeat(1 << 20)}\nnot: a trace line\n`;
    const r = parseQemuTrace(text);
    expect(summary(r.processes[0])).toHaveLength(3);
    expect(r.skipped.map((w) => w.line)).toEqual([4, 5]);
  });

  it('a timestamp out of any date\'s range is a warning naming the line; the event is kept without a time', () => {
    const r = parseQemuTrace('8629@1700000000.000001:migrate_set_state new state setup\n8629@9999999999999.620458:migrate_set_state new state active\n');
    const p = r.processes[0];
    expect(p.events.map((e) => [e.kind, e.wall])).toEqual([['transition', '2023-11-14T22:13:20.000001Z'], ['transition', null]]);
    expect(p.warnings).toEqual([expect.objectContaining({ line: 2, reason: expect.stringMatching(/9999999999999\.620458 is out of range/) })]);
    // An ISO stamp that is no date at all, the same.
    const iso = parseQemuTrace('2025-13-45T99:00:00.000001Z migrate_set_state new state setup\n').processes[0];
    expect(iso.events[0].wall).toBeNull();
    expect(iso.warnings[0]).toMatchObject({ line: 1, reason: expect.stringMatching(/out of range/) });
  });

  it('a TID no Linux thread can have (past pid_max) is a warning naming the line; the event is kept without a thread', () => {
    // The store takes only safe integers: this TID failed the import "while writing" with a zod dump (found by npm run fuzz).
    const r = parseQemuTrace('8557@1700000000.000001:migrate_set_state new state setup\n99999999999999999999@1700000000.000002:migrate_set_state new state active\n');
    const p = r.processes[0];
    expect(p.events.map((e) => [e.kind, e.thread])).toEqual([['transition', 8557], ['transition', null]]);
    expect(p.threads.map((t) => t.tid)).toEqual([8557]);
    expect(p.warnings).toEqual([expect.objectContaining({ line: 2, reason: expect.stringMatching(/TID 99999999999999999999 is none Linux gives/) })]);
  });

  it('migrate_set_state without a state name is a warning, not a crash', () => {
    const r = parseQemuTrace('1@1.000001:migrate_set_state new state setup\n1@1.000002:migrate_set_state oops\n');
    expect(r.processes[0].warnings[0]).toMatchObject({ line: 2 });
  });
});
