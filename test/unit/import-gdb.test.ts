import { readFileSync } from 'node:fs';
import { expectCatch } from '../helpers/errors.js';
import { describe, expect, it } from 'vitest';
import { parseGdbTranscript, type GdbTranscript } from '../../recorder/import/gdb-transcript.js';
import type { TraceEvent } from '../../trace/schema.js';
import { analyzeImport } from '../helpers/imports.js';
import { MigraceError } from '../../trace/errors.js';

const sample = (f: string): string => readFileSync(`samples/transcripts/${f}`, 'utf8');
const parse = (f: string): GdbTranscript => parseGdbTranscript(sample(f), { source: f });

function kinds(t: GdbTranscript, kind: string): TraceEvent[] {
  return t.events.filter((e) => e.kind === kind) as TraceEvent[];
}
const threadName = (t: GdbTranscript, tid: number | null): string | null => t.threads.find((x) => x.tid === tid)?.name ?? null;

const analyze = (t: GdbTranscript) => analyzeImport(t);

describe('GDB transcripts generated from real gdb sessions', () => {
  it('minimig, unpatched: threads, the two transitions by the right threads, read setup, publish active, the QMP reply', () => {
    const t = parse('minimig-unpatched.gdb.txt');
    expect(t.variant).toBe('unpatched');
    expect(t.qemuVersion).toBe('6.2.0');
    const main = t.threads.find((x) => x.gdb_id === 1)!;
    const mig = t.threads.find((x) => x.gdb_id === 2)!;
    expect(main.name).toBe('minimig');
    expect(mig.name).toBe('live_migration');
    expect(main.lwp).toBeGreaterThan(0);
    expect(mig.lwp).toBeGreaterThan(0);

    const tr = kinds(t, 'transition') as Extract<TraceEvent, { kind: 'transition' }>[];
    expect(tr.map((e) => `${threadName(t, e.thread)}:${e.data.old?.name}->${e.data.new.name}`)).toEqual([
      'minimig:none->setup', 'live_migration:setup->active', 'live_migration:active->completed',
    ]);
    expect(tr[1].data.addr).toMatch(/^0x[0-9a-f]+$/);
    expect(tr[1].file).toBe('minimig.c');

    const reads = kinds(t, 'read') as Extract<TraceEvent, { kind: 'read' }>[];
    expect(reads.map((r) => [r.thread, r.data.value.name])).toEqual([[1, 'setup'], [1, 'completed']]);
    const pubs = kinds(t, 'publish') as Extract<TraceEvent, { kind: 'publish' }>[];
    // q1's publish is the stop after the status store; q2 has none, and its reply says what was stored.
    expect(pubs.map((p) => [p.thread, p.data.value])).toEqual([[1, { value: 4, name: 'active' }], [1, { value: 8, name: 'completed' }]]);
    expect(pubs[0].probe).toMatch(/minimig's publish line/);
    expect(pubs[1].probe).toMatch(/valued by the reply/);

    const replies = kinds(t, 'reply') as Extract<TraceEvent, { kind: 'reply' }>[];
    expect(replies.map((r) => [r.data.query, r.data.command, r.data.status, r.data.has_ram])).toEqual([
      ['q1', 'query-migrate', 'active', false], ['q2', 'query-migrate', 'completed', true],
    ]);
    // The held writer: its transition takes effect when it is resumed, after the read.
    const seqOf = (e: TraceEvent): number => t.events.indexOf(e as never);
    const hold = t.events.findIndex((e) => e.kind === 'hold' && e.thread === 2);
    const release = t.events.findIndex((e) => e.kind === 'release' && e.thread === 2);
    expect(hold).toBe(seqOf(tr[1]) + 1);
    expect(release).toBeGreaterThan(seqOf(reads[0]));
    expect(release).toBeLessThan(seqOf(pubs[0]));
    expect(t.warnings).toEqual([]);
  });

  it('minimig, unpatched: the analyzer finds LP#1994002 manifested', () => {
    const a = analyze(parse('minimig-unpatched.gdb.txt'));
    const m = a.findings.filter((f) => f.class === 'manifested');
    expect(m).toHaveLength(1);
    expect(m[0].reader.name).toBe('minimig');
    expect(m[0].read?.value.name).toBe('setup');
    expect(m[0].crossing.map((c) => `${c.thread.name}:${c.old?.name}->${c.new.name}`)).toContain('live_migration:setup->active');
    expect(m[0].publish?.value.name).toBe('active');
    expect(m[0].reply?.status).toBe('active');
    expect(m[0].reply?.has_ram).toBe(false);
  });

  it('minimig-patched: publishes what it read; no manifested finding', () => {
    const t = parse('minimig-patched.gdb.txt');
    expect(t.variant).toBe('patched');
    const pubs = kinds(t, 'publish') as Extract<TraceEvent, { kind: 'publish' }>[];
    expect(pubs.map((p) => p.data.value.name)).toEqual(['setup', 'completed']);
    const a = analyze(t);
    expect(a.findings.filter((f) => f.class === 'manifested')).toEqual([]);
    expect(a.findings.some((f) => f.class === 'benign')).toBe(true);
  });

  it('QEMU 5.2, stripped: register values, address probes by offset, HMP reply without RAM lines', () => {
    const t = parse('qemu52-stripped.gdb.txt');
    expect(t.qemuVersion).toBe('5.2.0');
    const tr = kinds(t, 'transition') as Extract<TraceEvent, { kind: 'transition' }>[];
    expect(tr.map((e) => `${threadName(t, e.thread)}:${e.data.old?.value}->${e.data.new.value}`)).toEqual([
      'qemu-system-x86:0->1', 'live_migration:1->4',
    ]);
    const read = kinds(t, 'read')[0] as Extract<TraceEvent, { kind: 'read' }>;
    expect(read.probe).toContain('*qmp_query_migrate+123');
    expect(read.data.value.name).toBe('setup');
    const pub = kinds(t, 'publish')[0] as Extract<TraceEvent, { kind: 'publish' }>;
    expect(pub.probe).toContain('*qmp_query_migrate+457');
    expect(pub.data.value.name).toBe('active');
    const replies = kinds(t, 'reply') as Extract<TraceEvent, { kind: 'reply' }>[];
    expect(replies.map((r) => [r.data.command, r.data.status, r.data.has_ram])).toEqual([
      ['info migrate', 'active', false], ['info migrate', 'completed', true],
    ]);
    expect(String(replies[0].data.body)).toContain('total time: 0 ms');
    // The poll of memory from the held reader is a note, not the read.
    expect(t.events.some((e) => e.kind === 'note' && /\*\(int\*\)0x[0-9a-f]+ = 4/.test((e.data as { text: string }).text))).toBe(true);
    // The later hit with nothing printed is reported, with its line.
    expect(t.warnings).toHaveLength(1);
    expect(t.warnings[0].reason).toMatch(/no new state was printed/);
    expect(sample('qemu52-stripped.gdb.txt').split('\n')[t.warnings[0].line - 1]).toMatch(/hit Breakpoint 1/);

    const a = analyze(t);
    const m = a.findings.filter((f) => f.class === 'manifested');
    expect(m).toHaveLength(1);
    expect(m[0].reader.name).toBe('qemu-system-x86');
    expect(m[0].crossing[0].thread.name).toBe('live_migration');
    expect(m[0].reply?.status).toBe('active');
  });

  it('QEMU 7.2, stripped: patched; publishes setup; no manifested finding', () => {
    const t = parse('qemu72-stripped.gdb.txt');
    expect(t.variant).toBe('patched');
    const pub = kinds(t, 'publish')[0] as Extract<TraceEvent, { kind: 'publish' }>;
    expect(pub.data.value.name).toBe('setup');
    const replies = kinds(t, 'reply') as Extract<TraceEvent, { kind: 'reply' }>[];
    expect(replies[0].data.status).toBe('setup');
    expect(analyze(t).findings.filter((f) => f.class === 'manifested')).toEqual([]);
  });

  it('gdb attached to the QEMU 5.2 libvirt started: the race with libvirt as the client', () => {
    const t = parse('save-qemu52-race.gdb.txt');
    const a = analyze(t);
    expect(a.findings.filter((f) => f.class === 'manifested')).toHaveLength(1);
    // The attach-time stops and the SIGTERM are notes, "[New LWP" lines noise: only the pasted virsh output is left over.
    expect(t.warnings.map((w) => w.text)).toEqual(['Job type:         Unbounded', 'Operation:        Save', 'Time elapsed:     5239         ms']);
  });
});

describe('GDB transcripts as pasted', () => {
  it('prose, an indented block, elisions and hard-wrapped lines give the same events as the original', () => {
    const orig = parse('minimig-unpatched.gdb.txt');
    const pasted = parse('minimig-unpatched-pasted.txt');
    const sig = (t: GdbTranscript): string[] => t.events.filter((e) => e.kind !== 'note')
      .map((e) => `${e.kind}:${e.thread}:${JSON.stringify(e.data).replace(/line \d+/g, 'line N').slice(0, 80)}`);
    expect(sig(pasted)).toEqual(sig(orig));
    expect(analyze(pasted).findings.filter((f) => f.class === 'manifested')).toHaveLength(1);
    // The prose and the half of a wrapped command line are reported, with their line numbers.
    const text = sample('minimig-unpatched-pasted.txt').split('\n');
    for (const w of pasted.warnings) expect(text[w.line - 1].trim().startsWith(w.text.slice(0, 15))).toBe(true);
    expect(pasted.warnings.map((w) => w.line)).toEqual([1, 2, 3, 12, 151, 152, 153]);
    expect(pasted.warnings.some((w) => /^Hi, I can reproduce/.test(w.text))).toBe(true);
  });

  it('mail quoting ("> ") and [...] elisions', () => {
    const t = parse('qemu52-mail-quoted.txt');
    const a = analyze(t);
    expect(a.findings.filter((f) => f.class === 'manifested')).toHaveLength(1);
  });

  it('debug-info hits with arguments and a source line, publish printed as an enum name', () => {
    const t = parse('qemu52-debuginfo-handwritten.txt');
    const tr = kinds(t, 'transition') as Extract<TraceEvent, { kind: 'transition' }>[];
    expect(tr.map((e) => `${e.thread}:${e.data.old?.name}->${e.data.new.name}@${e.file}:${e.line}`)).toEqual([
      '1:none->setup@../../migration/migration.c:1661', '4:setup->active@../../migration/migration.c:1661',
    ]);
    expect((kinds(t, 'read')[0] as Extract<TraceEvent, { kind: 'read' }>).data.value.name).toBe('setup');
    expect((kinds(t, 'publish')[0] as Extract<TraceEvent, { kind: 'publish' }>).data.value).toEqual({ value: 4, name: 'active' });
    const reply = kinds(t, 'reply')[0] as Extract<TraceEvent, { kind: 'reply' }>;
    expect([reply.data.status, reply.data.has_ram]).toEqual(['active', false]);
    expect(analyze(t).findings.filter((f) => f.class === 'manifested')).toHaveLength(1);
  });
});

describe('what the GDB importer does not guess', () => {
  it('a print in the wrong thread is not a read: the read stop is reported, not filled in', () => {
    const text = [
      '(gdb) set non-stop on',
      '(gdb) run &',
      'Thread 2 "live_migration" hit Breakpoint 1, migrate_set_state (state=0x5555 <current_migration+64>, old_state=1, new_state=4) at minimig.c:263',
      '{"execute":"query-migrate","id":"q1"}',
      'Thread 1 "minimig" hit Breakpoint 2, fill_source_migration_info (info=0x55) at minimig.c:408',
      '(gdb) thread 2',
      '[Switching to thread 2 (Thread 0x7ffff7dd06c0 (LWP 20162))]',
      '(gdb) p state',
      '$1 = (int *) 0x55555556f280 <current_migration+64>',
    ].join('\n');
    const t = parseGdbTranscript(text);
    expect(kinds(t, 'read')).toEqual([]);
    expect(t.warnings.some((w) => w.line === 5 && /no state value was printed/.test(w.reason))).toBe(true);
  });

  it('a failed continue does not resume; "Selected thread is running." leaves the value unset', () => {
    const text = [
      '(gdb) set non-stop on',
      '(gdb) run &',
      'Thread 1 "qemu-system-x86" hit Breakpoint 1, 0x0000555555b50ee0 in migrate_set_state ()',
      '(gdb) p $esi',
      '$1 = 1',
      '(gdb) p $edx',
      '$2 = 4',
      '(qemu) info migrate',
      '(gdb) thread 9',
      'Invalid thread ID: 9',
      '(gdb) continue &',
      'Cannot execute this command while the selected thread is running.',
      'Thread 2 "qemu-system-x86" hit Breakpoint 2, 0x0000555555b501c5 in qmp_query_migrate ()',
      '(gdb) p $r13d',
      'Selected thread is running.',
    ].join('\n');
    const t = parseGdbTranscript(text);
    // Thread 1 was never resumed: held to the end, no release.
    expect(t.events.filter((e) => e.kind === 'release')).toEqual([]);
    expect(t.events.some((e) => e.kind === 'hold' && e.thread === 1)).toBe(true);
    expect(kinds(t, 'read')).toEqual([]);
  });

  it('a value with no print before it and prose are reported with their line numbers', () => {
    const t = parseGdbTranscript('(gdb) info threads\n$7 = 4\nthen I waited a bit\n');
    expect(t.warnings.map((w) => w.line)).toEqual([2, 3]);
  });
});

describe('malformed input', () => {
  it('empty file', () => {
    expect(expectCatch(() => parseGdbTranscript('', { source: 'e.txt' })).message).toMatch(/e\.txt: empty file/);
  });
  it('binary garbage', () => {
    const bytes = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256)).toString('latin1');
    const e = expectCatch(() => parseGdbTranscript(bytes, { source: 'core' }));
    expect(e.code).toBe('IMPORT');
    expect(e.message).toMatch(/core: binary data/);
  });
  it('a wrong kind of log names the file, the line and what it looks like', () => {
    const e = expectCatch(() => parseGdbTranscript(readFileSync('samples/trace-logs/qemu72-tid.log', 'utf8'), { source: 'qemu72-tid.log' }));
    expect(e.message).toMatch(/^qemu72-tid\.log:1: not a GDB transcript/);
    expect(e.message).toMatch(/looks like a QEMU trace log/);
    const l = expectCatch(() => parseGdbTranscript(readFileSync('samples/libvirt-logs/save-qemu72.libvirtd.log', 'utf8'), { source: 'lv' }));
    expect(l.message).toMatch(/looks like a libvirt debug log/);
    // The hint names the command that reads it: the kind is positional, there is no --kind.
    expect(e.message).toMatch(/\(migrace import qemu-trace\)/);
    expect(l.message).toMatch(/\(migrace import libvirt\)/);
    expect(`${e.message} ${l.message}`).not.toMatch(/--kind/);
  });
  it('a line of 1 MB is skipped with a warning, the rest still parses', () => {
    const text = `${sample('minimig-unpatched.gdb.txt')}\n${'x'.repeat(1 << 20)}\n`;
    const t = parseGdbTranscript(text);
    expect(kinds(t, 'publish')).toHaveLength(2);
    expect(t.warnings.some((w) => /too long/.test(w.reason))).toBe(true);
  });
  it('a transcript cut in the middle keeps what it has and never throws', () => {
    const full = sample('qemu52-stripped.gdb.txt');
    for (let cut = 0; cut < full.length; cut += 97) {
      const part = full.slice(0, cut);
      try {
        parseGdbTranscript(part);
      } catch (e) {
        expect(e).toBeInstanceOf(MigraceError);
      }
    }
  });
});
