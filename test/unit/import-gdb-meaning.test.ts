import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { positionOf } from '../../recorder/import/gdb-positions.js';
import { parseGdbTranscript, type GdbTranscript } from '../../recorder/import/gdb-transcript.js';
import { MigraceError } from '../../trace/errors.js';
import type { EventOf, TraceEvent } from '../../trace/schema.js';
import { analyzeImport } from '../helpers/imports.js';

/*
 * Transcripts read by meaning, not by order, on transcripts written the way
 * the LP#1994002 reproducer is (samples/transcripts/generate.py, real gdb on
 * minimig, minimig-patched, Debian QEMU 5.2 and 7.2): a stop in the SETUP
 * case of the switch, the state and info->status printed there, the
 * migration thread let go, the state printed again, the monitor's answer.
 */

const text = (f: string): string => readFileSync(`samples/transcripts/${f}`, 'utf8');
const parse = (f: string, t = text(f), qemuVersion?: string): GdbTranscript => parseGdbTranscript(t, { source: f, qemuVersion });
const lineOf = (t: string, re: RegExp): number => t.split('\n').findIndex((l) => re.test(l)) + 1;
const of = <K extends TraceEvent['kind']>(t: GdbTranscript, kind: K): { e: EventOf<K>; seq: number; line: number }[] =>
  t.events.flatMap((e, seq) => (e.kind === kind ? [{ e: e as EventOf<K>, seq, line: t.lines[seq] }] : []));

const LP = [
  { file: 'minimig-lp-style.txt', patched: false, reply: 'active', stop: /hit Breakpoint 2, fill_source_migration_info/ },
  { file: 'minimig-patched-lp-style.txt', patched: true, reply: 'setup', stop: /hit Breakpoint 2, fill_source_migration_info/ },
  { file: 'qemu52-lp-style.txt', patched: false, reply: 'active', stop: /hit Breakpoint 2, .* in qmp_query_migrate/ },
  { file: 'qemu72-lp-style.txt', patched: true, reply: 'setup', stop: /hit Breakpoint 2, .* in qmp_query_migrate/ },
  // QEMU 5.2.0 built -O2 -g: `b migration/migration.c:1067`, multi-location hits ("Breakpoint 1.1,").
  { file: 'qemu52-debuginfo-lp-style.txt', patched: false, reply: 'active', stop: /hit Breakpoint 2, fill_source_migration_info/ },
];

describe.each(LP)('$file', ({ file, patched, reply, stop }) => {
  const src = text(file);
  const t = parse(file);

  it('the stop in the SETUP case is the read of setup; prints of the state there are not reads', () => {
    const reads = of(t, 'read');
    expect(reads.map((r) => [r.line, r.e.data.value.name])).toEqual([[lineOf(src, stop), 'setup']]);
    // Every print of the state field is a note that says what the state was.
    const fieldNotes = of(t, 'note').filter((n) => /: the state is /.test(n.e.data.text));
    expect(fieldNotes.map((n) => /the state is (\S+)$/.exec(n.e.data.text)?.[1])).toEqual(['setup', 'active']);
  });

  it('the publish is the status store, valued by the reply, after the writer was let go', () => {
    const pubs = of(t, 'publish');
    expect(pubs).toHaveLength(1);
    expect(pubs[0].e.data.value.name).toBe(reply);
    expect(pubs[0].e.probe).toMatch(/valued by the reply/);
    const release = of(t, 'release').find((r) => r.e.thread === pubs[0].e.thread! + (file.startsWith('minimig') ? 1 : 4))!;
    const rep = of(t, 'reply')[0];
    expect(release.seq).toBeLessThan(pubs[0].seq);
    expect(pubs[0].seq).toBeLessThan(rep.seq);
    expect([rep.e.data.status, rep.e.data.has_ram]).toEqual([reply, false]);
  });

  it('info->status printed as none is what is not published yet, never a publish', () => {
    if (!/p info\.status/.test(src)) return;
    const at = lineOf(src, /^\$\d+ = MIGRATION_STATUS_NONE$/);
    expect(of(t, 'publish').some((p) => p.line === at)).toBe(false);
    expect(of(t, 'note').find((n) => n.line === at)?.e.data.text).toMatch(/info->status is none \(not published yet\)/);
  });

  it(`the analyzer: ${patched ? 'no manifested finding' : 'one manifested finding'}, with the read, the crossing, the publish and the reply as evidence`, () => {
    const a = analyzeImport(t);
    const f = a.findings.filter((x) => x.class === (patched ? 'benign' : 'manifested'));
    expect(a.findings.filter((x) => x.class === 'manifested')).toHaveLength(patched ? 0 : 1);
    expect(f).toHaveLength(1);
    const [read] = of(t, 'read');
    const [pub] = of(t, 'publish');
    const [rep] = of(t, 'reply');
    const cross = of(t, 'transition').find((x) => x.e.data.old?.name === 'setup' && x.e.data.new.name === 'active')!;
    expect(f[0].read?.seq).toBe(read.seq);
    expect(f[0].crossing.map((c) => c.seq)).toEqual([cross.seq]);
    expect(f[0].publish?.seq).toBe(pub.seq);
    expect(f[0].reply?.reply_seq).toBe(rep.seq);
    expect(f[0].evidence).toEqual(expect.arrayContaining([read.seq, cross.seq, pub.seq, rep.seq]));
  });

  it('a cut anywhere never makes a read or a publish the whole transcript does not have, and never throws anything but a clear error', () => {
    const key = (x: GdbTranscript): string[] => x.events.flatMap((e, i) => (e.kind === 'read' || e.kind === 'publish' ? [`${e.kind} ${e.thread} ${x.lines[i]} ${e.data.value.name}`] : []));
    const full = new Set(key(t));
    const cuts = [...src.matchAll(/\n/g)].map((m) => m.index!).flatMap((i) => [i, i + 7]);
    for (const cut of cuts) {
      let part: GdbTranscript;
      try {
        part = parseGdbTranscript(src.slice(0, cut), { source: file });
      } catch (e) {
        expect(e).toBeInstanceOf(MigraceError);
        continue;
      }
      for (const k of key(part)) expect(full.has(k), `cut at ${cut}: ${k}`).toBe(true);
    }
  });
});

describe('what decides a read', () => {
  const src = text('minimig-lp-style.txt');

  it('without the source listing, the state printed at the stop (before anything ran) says which branch', () => {
    const noList = src.replace(/^list \d+,\d+\n(?:\d+\t.*\n)+/m, '...\n');
    expect(noList).not.toMatch(/case MIGRATION_STATUS_SETUP/);
    const [read] = of(parse('cut', noList), 'read');
    expect(read.e.data.value.name).toBe('setup');
    expect(read.e.probe).toMatch(/the state printed at this stop/);
  });

  it('a print made after the writer was let go says nothing about the branch: no read', () => {
    const noList = src.replace(/^list \d+,\d+\n(?:\d+\t.*\n)+/m, '...\n');
    const lateOnly = noList.replace(/^\(gdb\) p \(MigrationStatus\) s\.state\n\$1 = MIGRATION_STATUS_SETUP\n/m, '');
    const t = parse('late', lateOnly);
    expect(of(t, 'read')).toEqual([]);
    expect(of(t, 'publish')).toEqual([]);
    expect(t.warnings.some((w) => /no state value was printed/.test(w.reason))).toBe(true);
    expect(analyzeImport(t).findings.filter((f) => f.class === 'manifested')).toEqual([]);
  });

  it('with the migration thread cut out, the state printed again proves a transition nobody showed', () => {
    // The person kept only the reader: the writer's hits, the switch to it and back are elided.
    const lines = src.split('\n');
    const cutBetween = (from: RegExp, to: RegExp, after = 0): void => {
      const a = lines.findIndex((l) => from.test(l));
      const b = lines.findIndex((l, i) => i > a && to.test(l));
      lines.splice(a, b - a + after, '...');
    };
    cutBetween(/^\(gdb\) \[New Thread/, /^\{"return": \{\}\}$/);
    cutBetween(/^So the switch took/, /^\(gdb\) p \(MigrationStatus\) s\.state$/);
    const t = parse('reader-only', lines.join('\n'));
    const tr = of(t, 'transition').filter((x) => x.e.thread === null);
    expect(tr.map((x) => `${x.e.data.old?.name}->${x.e.data.new.name}`)).toEqual(['setup->active']);
    expect(tr[0].e.probe).toMatch(/p \(MigrationStatus\) s\.state at line \d+/);
    const m = analyzeImport(t).findings.filter((f) => f.class === 'manifested');
    expect(m).toHaveLength(1);
    expect(m[0].crossing.map((c) => c.thread.tid)).toEqual([null]);
  });

  it('a name lookup (p (MigrationStatus) 8) is a name fact, not an event', () => {
    const t = parse('minimig-lp-style.txt');
    expect(t.meta.status_names_looked_up).toEqual({ 8: 'completed' });
    expect(t.events.some((e) => e.kind === 'note' && /\(MigrationStatus\) 8/.test(e.data.text))).toBe(false);
  });

  it('values printed in hex are values: p/x $esi, p/x $edx give the main thread\'s none -> setup', () => {
    const t = parse('qemu52-lp-style.txt');
    const tr = of(t, 'transition').map((x) => `${x.e.thread}:${x.e.data.old?.name}->${x.e.data.new.name}`);
    expect(tr.slice(0, 2)).toEqual(['1:none->setup', '5:setup->active']);
  });

  it('-O2: a stop before the load is no read, <optimized out> is reported, and an untouched reply stays a query window', () => {
    const src = text('minimig-O2-lp-style.txt');
    const t = parse('minimig-O2-lp-style.txt', src);
    expect(of(t, 'read')).toEqual([]);
    expect(of(t, 'publish')).toEqual([]);
    // At gdb's answer, naming the print it answers.
    expect(t.warnings.filter((w) => /optimized out/.test(w.reason))).toEqual([{
      line: lineOf(src, /^\$1 = <optimized out>$/), text: 'p state',
      reason: 'state is <optimized out> here: the build kept no value for it, nothing is read from it',
    }]);
    // old_state=old_state@entry=1: the entry value is the argument.
    expect(of(t, 'transition').map((x) => x.e.data.new.name)).toEqual(['setup', 'active', 'completed']);
    const a = analyzeImport(t);
    expect(a.findings.map((f) => f.class)).toEqual(['window-only']);
    expect(a.findings[0].reply?.has_ram).toBe(true);
  });

  it('a print gdb never answered is a warning at the print\'s line, at the end of a cut transcript or before the next command', () => {
    const src = text('minimig-unpatched.gdb.txt');
    const lines = src.split('\n');
    const at = lineOf(src, /^p state$/);
    expect(lines[at]).toBe('$1 = 1');
    const unanswered = { line: at, text: 'p state', reason: 'a print with no answer after it (the transcript is cut here?): nothing taken from it' };
    const noAnswer = (x: GdbTranscript) => x.warnings.filter((w) => /no answer/.test(w.reason));
    // Cut right after the print: the stop stays a note, no read is made of it.
    const cut = parse('cut', `${lines.slice(0, at).join('\n')}\n`);
    expect(noAnswer(cut)).toEqual([unanswered]);
    expect(of(cut, 'read')).toEqual([]);
    // The answer alone left out: the next command (a print of the same state, answered) shows it.
    const gap = parse('gap', lines.filter((_, i) => i !== at).join('\n'));
    expect(noAnswer(gap)).toEqual([unanswered]);
    expect(of(gap, 'read').map((r) => [r.line, r.e.data.value.name])).toEqual([[lineOf(src, /hit Breakpoint 2, fill_source_migration_info/), 'setup'], [expect.any(Number), 'completed']]);
    expect(noAnswer(parse('whole', src))).toEqual([]);
  });

  it('a line number no C file has (a mangled paste) is no line: the breakpoint\'s own line places the stop', () => {
    // Past 2**53, n - 1 === n: the walk up the listing from such a line never ended (found by npm run fuzz).
    const huge = src.replace(/at minimig\.c:466$/m, 'at minimig.c:99999999999999999999');
    expect(huge).not.toBe(src);
    const reads = of(parse('huge-line', huge), 'read');
    expect(reads.map((r) => [r.e.data.value.name, r.e.probe])).toEqual([['setup', expect.stringMatching(/\): minimig\.c:466 \(under "case SETUP:"/)]]);
    // positionOf itself, given such a line, walks at most its 200 lines.
    const listing = new Map([[2 ** 60, '    case MIGRATION_STATUS_SETUP:']]);
    expect(positionOf({ spec: null, func: null, file: 'minimig.c', line: 2 ** 60 + 1, source: listing, version: null }).kind).toBe('unknown');
  });

  it('a known QEMU release places line numbers of its migration.c: 5.2.0\'s 1067 is the SETUP case', () => {
    // The -O2 -g build's transcript without its `list`: the monitor's banner says 5.2.0.
    const noList = text('qemu52-debuginfo-lp-style.txt').replace(/^list \d+,\d+\n(?:\d+\t.*\n)+/m, '...\n');
    expect(noList).not.toMatch(/case MIGRATION_STATUS_SETUP/);
    const [read] = of(parse('no-list', noList), 'read');
    expect([read.e.data.value.name, read.e.probe]).toEqual(['setup', expect.stringMatching(/1067 in QEMU 5\.2\.0$/)]);
    // Without the banner and without the prints nothing says where the stop is: no read, a warning.
    const bare = noList.replace(/^QEMU 5\.2\.0 monitor.*\n/m, '').replace(/^\(gdb\) p \(MigrationStatus\) s->state\n\$1 = .*\n/m, '');
    const t = parse('bare', bare);
    expect(of(t, 'read')).toEqual([]);
    expect(t.warnings.some((w) => /fill_source_migration_info at \.\.\/migration\/migration\.c:1067: taken as the read, but no state value/.test(w.reason))).toBe(true);
    // The user's --qemu-version places it again.
    expect(of(parse('bare', bare, '5.2.0'), 'read').map((r) => r.e.data.value.name)).toEqual(['setup']);
  });
});

describe('two gdb sessions in one file', () => {
  it('once gdb ids name two LWPs, no stop becomes a read, a publish or a transition, and the line is named', () => {
    const t = parse('qemu52-two-sessions-interleaved.txt');
    expect(t.events.filter((e) => ['read', 'publish', 'transition', 'hold', 'release'].includes(e.kind))).toEqual([]);
    const w = t.warnings.find((x) => /two gdb sessions interleave/.test(x.reason))!;
    expect(w.reason).toMatch(/thread 1 is LWP \d+ and LWP \d+/);
    const from = Number(/from line (\d+)/.exec(w.reason)![1]);
    expect(text('qemu52-two-sessions-interleaved.txt').split('\n')[from - 1]).toMatch(/^Reading symbols from/);
    expect(t.warnings.filter((x) => /interleave here/.test(x.reason)).length).toBeGreaterThan(3);
  });
});
