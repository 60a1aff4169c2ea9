import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { importFiles } from '../../recorder/import/index.js';
import { findInterleavings } from '../../analyzer/interleavings.js';
import { TraceStore } from '../../trace/store.js';
import { MigraceError } from '../../trace/errors.js';

let dir: string;
let store: TraceStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'migrace-import-'));
  store = TraceStore.open(join(dir, 'trace.db'));
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const analysis = (id: number) => findInterleavings(store.session(id), store.threads(id), store.events(id));

async function importError(fn: () => Promise<unknown>): Promise<MigraceError> {
  try {
    await fn();
  } catch (e) {
    expect(e).toBeInstanceOf(MigraceError);
    expect((e as MigraceError).code).toMatch(/^(IMPORT|BAD_INPUT)$/);
    return e as MigraceError;
  }
  throw new Error('expected an import error');
}

describe('importFiles into a real TraceStore', () => {
  it('GDB transcripts: complete sessions; unpatched ones analyze as manifested, patched ones do not', async () => {
    const unpatched = ['minimig-unpatched.gdb.txt', 'qemu52-stripped.gdb.txt', 'save-qemu52-race.gdb.txt', 'minimig-unpatched-pasted.txt', 'qemu52-mail-quoted.txt'];
    const patched = ['minimig-patched.gdb.txt', 'qemu72-stripped.gdb.txt'];
    for (const f of unpatched) {
      const [id] = await importFiles(store, 'gdb', [`samples/transcripts/${f}`], { label: f });
      const s = store.session(id);
      expect(s.state).toBe('complete');
      expect(s.origin).toBe('import:gdb-log');
      expect(s.target.kind).toBe('import');
      const m = analysis(id).findings.filter((x) => x.class === 'manifested');
      expect(m, f).toHaveLength(1);
      expect(m[0].read?.value.name).toBe('setup');
      expect(m[0].crossing.some((c) => c.thread.name === 'live_migration' && c.old?.name === 'setup' && c.new.name === 'active')).toBe(true);
      expect(m[0].publish?.value.name ?? m[0].reply?.status).toBe('active');
      // The libvirt-driven transcript has no reply in it (libvirt got it: see the libvirt sample).
      if (f !== 'save-qemu52-race.gdb.txt') expect(m[0].reply?.has_ram, f).toBe(false);
    }
    for (const f of patched) {
      const [id] = await importFiles(store, 'gdb', [`samples/transcripts/${f}`], { label: f });
      expect(store.session(id).state).toBe('complete');
      expect(store.session(id).target.variant).toBe('patched');
      expect(analysis(id).findings.filter((x) => x.class === 'manifested'), f).toEqual([]);
    }
  });

  it('transcripts in the LP#1994002 reproducer\'s style: one manifested finding unpatched, none patched, evidence from the SETUP-branch stop to the reply', async () => {
    const cases = [
      { f: 'minimig-lp-style.txt', manifested: 1 }, { f: 'qemu52-lp-style.txt', manifested: 1 }, { f: 'qemu52-debuginfo-lp-style.txt', manifested: 1 },
      { f: 'minimig-patched-lp-style.txt', manifested: 0 }, { f: 'qemu72-lp-style.txt', manifested: 0 },
      { f: 'minimig-O2-lp-style.txt', manifested: 0 }, { f: 'qemu52-two-sessions-interleaved.txt', manifested: 0 },
    ];
    for (const { f, manifested } of cases) {
      const file = `samples/transcripts/${f}`;
      const [id] = await importFiles(store, 'gdb', [file], { label: f });
      expect(store.session(id).state, f).toBe('complete');
      const events = store.events(id);
      const lines = (store.session(id).meta.import as { source_lines: number[] }).source_lines;
      const findings = analysis(id).findings;
      expect(findings.filter((x) => x.class === 'manifested'), f).toHaveLength(manifested);
      if (f.includes('O2') || f.includes('two-sessions')) continue;
      const found = findings.find((x) => x.class === (manifested ? 'manifested' : 'benign'))!;
      const bySeq = new Map(events.map((e) => [e.seq, e]));
      const read = bySeq.get(found.read!.seq)!;
      // The read is the stop in the SETUP case: the hit line of breakpoint 2.
      const src = readFileSync(file, 'utf8').split('\n');
      expect(src[lines[read.seq] - 1], f).toMatch(/hit Breakpoint 2, /);
      expect(read.kind === 'read' && read.data.value.name).toBe('setup');
      const cross = found.crossing.map((c) => bySeq.get(c.seq)!);
      expect(cross.map((c) => c.kind === 'transition' && `${c.data.old?.name}->${c.data.new.name}`), f).toEqual(['setup->active']);
      const pub = bySeq.get(found.publish!.seq)!;
      const reply = bySeq.get(found.reply!.reply_seq!)!;
      expect(pub.kind === 'publish' && pub.data.value.name, f).toBe(manifested ? 'active' : 'setup');
      expect(reply.kind === 'reply' && [reply.data.status, reply.data.has_ram], f).toEqual([manifested ? 'active' : 'setup', false]);
      expect(found.evidence, f).toEqual(expect.arrayContaining([read.seq, cross[0].seq, pub.seq, reply.seq]));
      if (manifested) expect(found.reply?.libvirt_error, f).toMatch(/no RAM info/);
    }
  });

  it('events keep their order, t_ns is null without a clock, source lines and warnings are in the meta', async () => {
    const [id] = await importFiles(store, 'gdb', ['samples/transcripts/qemu52-stripped.gdb.txt'], { label: 'x' });
    const events = store.events(id);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i));
    expect(events.every((e) => e.t_ns === null)).toBe(true);
    const imp = store.session(id).meta.import as { source_lines: number[]; warning_count: number; warnings: { line: number }[] };
    expect(imp.source_lines).toHaveLength(events.length);
    expect(imp.warning_count).toBe(1);
    expect(store.threads(id).find((t) => t.name === 'live_migration')?.gdb_id).toBe(5);
  });

  it('a QEMU trace log with two processes gives two sessions, with a clock from the wall times', async () => {
    const ids = await importFiles(store, 'qemu-trace', ['samples/trace-logs/qemu72-two-processes.log'], { label: 'two', qemuVersion: '7.2.22' });
    expect(ids).toHaveLength(2);
    for (const id of ids) {
      const s = store.session(id);
      expect(s.state).toBe('complete');
      expect(s.origin).toBe('import:qemu-trace');
      expect(s.target.variant).toBe('patched');
      expect(s.label).toMatch(/^two \(qemu72-two-processes\.log: QEMU pid \d+\)$/);
      const ev = store.events(id);
      expect(ev[0].t_ns).toBe(0);
      expect(ev.every((e, i) => i === 0 || e.t_ns! >= ev[i - 1].t_ns!)).toBe(true);
    }
  });

  it('a gzipped libvirt log merged with the QEMU trace log: one session, the race found on libvirt\'s query', async () => {
    const gz = join(dir, 'libvirtd.log.1');
    writeFileSync(gz, gzipSync(readFileSync('samples/libvirt-logs/save-qemu52-race.libvirtd.log')));
    const ids = await importFiles(store, 'libvirt', [gz], { label: 'race', qemuLog: 'samples/libvirt-logs/save-qemu52-race.qemu-trace.log', qemuVersion: '5.2.0' });
    expect(ids).toHaveLength(1);
    const s = store.session(ids[0]);
    expect(s.state).toBe('complete');
    expect(s.origin).toBe('import:libvirt-log');
    const f = analysis(ids[0]).findings.find((x) => x.query?.id === 'libvirt-378')!;
    expect(f.crossing[0].thread.name).toBe('live_migration');
    expect(f.reply?.libvirt_error).toMatch(/no RAM info/);
  });
});

describe('a failing import leaves no session marked complete', () => {
  it('a malformed file anywhere in the list: nothing is written at all', async () => {
    const bad = join(dir, 'bad.txt');
    writeFileSync(bad, Buffer.from([0, 1, 2, 3, 0xff, 0xfe, 0, 0]));
    const e = await importError(() => importFiles(store, 'gdb', ['samples/transcripts/minimig-unpatched.gdb.txt', bad], { label: 'x' }));
    expect(e.message).toContain(bad);
    expect(store.listSessions()).toEqual([]);
  });

  it('truncated gzip, an empty file, a missing file, a wrong kind, a 1 MB line: clear errors or counted skips, no crash', async () => {
    const gz = gzipSync(readFileSync('samples/transcripts/minimig-unpatched.gdb.txt'));
    const cut = join(dir, 'cut.gz');
    writeFileSync(cut, gz.subarray(0, gz.length - 20));
    expect((await importError(() => importFiles(store, 'gdb', [cut], { label: 'x' }))).message).toMatch(/cut\.gz: truncated gzip data/);
    const empty = join(dir, 'empty.log');
    writeFileSync(empty, '');
    expect((await importError(() => importFiles(store, 'qemu-trace', [empty], { label: 'x' }))).message).toMatch(/empty\.log: empty file/);
    expect((await importError(() => importFiles(store, 'libvirt', [join(dir, 'nope.log')], { label: 'x' }))).message).toMatch(/nope\.log: no such file/);
    expect((await importError(() => importFiles(store, 'libvirt', ['samples/trace-logs/qemu72-tid.log'], { label: 'x' }))).message)
      .toMatch(/qemu72-tid\.log:1: not a libvirt debug log.*QEMU trace log/);
    expect((await importError(() => importFiles(store, 'gdb', ['samples/transcripts/minimig-unpatched.gdb.txt'], { label: 'x', qemuLog: 'samples/trace-logs/qemu52.log' }))).code).toBe('BAD_INPUT');
    expect(store.listSessions()).toEqual([]);

    const long = join(dir, 'long.log');
    copyFileSync('samples/trace-logs/qemu52.log', long);
    writeFileSync(long, `${readFileSync(long, 'utf8')}${'y'.repeat(1 << 20)}\n`);
    const [id] = await importFiles(store, 'qemu-trace', [long], { label: 'long' });
    expect(store.session(id).state).toBe('complete');
    const imp = store.session(id).meta.import as { warnings: { line: number; reason: string }[] };
    expect(imp.warnings.map((w) => w.line)).toEqual([4]);
  });

  it('numbers the store cannot take are warnings naming the line, not a refusal of the file: an event 104 days (2^53 ns) after the first, a libvirt source line past any C file\'s', async () => {
    // Both were "the importer made an invalid ... event; nothing was written" (found by npm run fuzz).
    const far = join(dir, 'far.log');
    writeFileSync(far, '8629@1700000000.000001:migrate_set_state new state setup\n8630@1700000000.500001:migrate_set_state new state active\n8630@1900000000.000001:migrate_set_state new state completed\n');
    const [id] = await importFiles(store, 'qemu-trace', [far], { label: 'far' });
    expect(store.session(id).state).toBe('complete');
    expect(store.events(id).map((e) => [e.data && 'new' in e.data ? e.data.new.name : null, e.t_ns])).toEqual([['setup', 0], ['active', 500_000_000], ['completed', null]]);
    const imp = store.session(id).meta.import as { warnings: { line: number; reason: string }[] };
    expect(imp.warnings).toEqual([expect.objectContaining({ line: 3, reason: expect.stringMatching(/more than 104 days after the first timed event/) })]);

    const lv = join(dir, 'line.libvirtd.log');
    writeFileSync(lv, readFileSync('samples/libvirt-logs/save-qemu72.libvirtd.log', 'utf8').replace('qemuMonitorIOWrite:366 :', 'qemuMonitorIOWrite:99999999999999999999 :'));
    const ids = await importFiles(store, 'libvirt', [lv], { label: 'line' });
    const begins = ids.flatMap((i) => store.events(i).filter((e) => e.kind === 'query-begin').map((e) => [e.func, e.line]));
    expect(begins[0]).toEqual(['qemuMonitorIOWrite', null]);
    expect(begins.slice(1)).toContainEqual(['qemuMonitorIOWrite', 366]);
  });

  it('warnings past what the meta lists are still counted: 1,300 events out of the clock\'s range', async () => {
    const far = join(dir, 'many-far.log');
    const lines = ['8629@1700000000.000001:migrate_set_state new state setup'];
    for (let i = 0; i < 1300; i++) lines.push(`8629@${1900000000 + i}.000001:migrate_set_state new state active`);
    writeFileSync(far, `${lines.join('\n')}\n`);
    const [id] = await importFiles(store, 'qemu-trace', [far], { label: 'many-far' });
    const imp = store.session(id).meta.import as { warning_count: number; warnings: { line: number }[] };
    expect(store.events(id)).toHaveLength(1301);
    expect(imp.warning_count).toBe(1300);
    expect(imp.warnings).toHaveLength(200);
    expect(imp.warnings[0].line).toBe(2);
  });

  it('a write that fails half-way finishes the session as aborted, with the error', async () => {
    // Every write of threads and events goes through appendBatch (the last batch carries the threads).
    const original = store.appendBatch.bind(store);
    let calls = 0;
    store.appendBatch = (sid, threads, events, opts) => {
      if (++calls === 1) throw new Error('disk full');
      original(sid, threads, events, opts);
    };
    const e = await importError(() => importFiles(store, 'gdb', ['samples/transcripts/minimig-unpatched.gdb.txt'], { label: 'x' }));
    expect(e.message).toMatch(/disk full/);
    const sessions = store.listSessions();
    expect(sessions).toHaveLength(1);
    expect(sessions[0].state).toBe('aborted');
    expect(sessions[0].error).toMatch(/disk full/);
  });
});
