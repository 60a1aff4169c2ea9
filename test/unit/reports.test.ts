import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findInterleavings, stateName } from '../../analyzer/interleavings.js';
import { STATUS_TABLES } from '../../trace/status.js';
import { BODIES, MAIN, MIG, syntheticPolling, Trace } from '../helpers/events.js';
import { loadBundle, writeStoredPerfetto } from '../../cli/report.js';
import { tempStore } from '../helpers/db.js';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// @ts-ignore d3-node has no type declarations; its jsdom window parses what we render.
import { D3Node } from 'd3-node';
import { buildLp1994002Bundle, EVIL, EVIL_SCRIPT, type Bundle } from '../bench/reports.bench.js';
import { layoutTimeline, type TimelineLayout } from '../../reports/timeline.js';
import { displayStateName } from '../../reports/labels.js';
import { reproduceCommand, reproduction } from '../../reports/reproduce.js';
import { infeasibleOf, invocationOf, parseCommand } from '../../reports/session-meta.js';
import { builtinSchedule, parseSchedule, readThenTransition } from '../../analyzer/schedule.js';
import { cleanText, printableJson, printableShellWord } from '../../reports/safe-text.js';
import { renderSvg, renderSessionSvg } from '../../reports/svg.js';
import { escapeHtml, renderHtml, REPORT_CSS, REPORT_SCRIPT } from '../../reports/html.js';
import { escapeMarkdown, renderMarkdown, renderText } from '../../reports/text.js';
import { PerfettoExport, writePerfetto, type ChromeTraceEvent } from '../../reports/perfetto.js';
import { checkChromeTraceFile, perfettoText } from '../helpers/chrome-trace.js';
import { diffSessions, pairText, renderDiffHtml, renderDiffText } from '../../reports/diff.js';
import type { Session, Thread, TraceEvent } from '../../trace/schema.js';

interface Win {
  DOMParser: new () => { parseFromString(s: string, type: string): Document };
}
const win = (new D3Node() as { window: Win }).window;

function parseSvg(svg: string): Document {
  const doc = win.DOMParser ? new win.DOMParser().parseFromString(svg, 'image/svg+xml') : null;
  if (!doc) throw new Error('no DOMParser');
  const err = doc.getElementsByTagName('parsererror');
  if (err.length) throw new Error(`SVG is not well-formed XML: ${err[0]!.textContent}`);
  return doc;
}

function parseHtml(html: string): Document {
  return new win.DOMParser().parseFromString(html, 'text/html');
}

function ev(b: Bundle, pred: (e: TraceEvent) => boolean): TraceEvent {
  const e = b.events.find(pred);
  if (!e) throw new Error('no such event');
  return e;
}

const width80 = (text: string): string[] => text.split('\n').filter((l) => Array.from(l).length > 80);

let unpatched: Bundle;
let patched: Bundle;
let layout: TimelineLayout;

beforeAll(() => {
  unpatched = buildLp1994002Bundle({ variant: 'unpatched' });
  patched = buildLp1994002Bundle({ variant: 'patched' });
  layout = layoutTimeline(unpatched.session, unpatched.threads, unpatched.events, unpatched.analysis);
});

describe('timeline layout', () => {
  it('has one lane per thread plus one for the QMP client, labelled name (LWP n)', () => {
    const threadLanes = layout.lanes.filter((l) => l.kind === 'thread');
    expect(threadLanes.map((l) => l.tid).sort()).toEqual(unpatched.threads.map((t) => t.tid).sort());
    expect(threadLanes.map((l) => l.label)).toEqual(['minimig (LWP 4242)', 'live_migration (LWP 4250)']);
    expect(layout.lanes.filter((l) => l.kind === 'client')).toHaveLength(1);
    expect(layout.lanes.find((l) => l.tid === 1)!.role).toBe('reader');
    expect(layout.lanes.find((l) => l.tid === 2)!.role).toBe('writer');
  });

  it('keeps a lane for a thread without events, and readers first', () => {
    const b = buildLp1994002Bundle({ extraThread: true });
    const threads = [b.threads[2]!, b.threads[1]!, b.threads[0]!];
    const l = layoutTimeline(b.session, threads, b.events, b.analysis);
    expect(l.lanes.map((x) => x.label)).toEqual(['minimig (LWP 4242)', 'live_migration (LWP 4250)', 'CPU 0/TCG (LWP 4244)', 'QMP client']);
    expect(l.lanes[2]!.events).toBe(0);
  });

  it('draws one mark per event, in seq order, on its thread lane, with state-name labels', () => {
    expect(layout.marks.map((m) => m.seq)).toEqual(unpatched.events.map((e) => e.seq));
    for (let i = 1; i < layout.marks.length; i++) expect(layout.marks[i]!.x).toBeGreaterThan(layout.marks[i - 1]!.x);
    const f = unpatched.analysis.findings[0]!;
    const bySeq = new Map(layout.marks.map((m) => [m.seq, m]));
    expect(bySeq.get(f.read!.seq)!.label).toBe('read setup');
    expect(bySeq.get(f.crossing[0]!.seq)!.label).toBe('setup -> active');
    expect(bySeq.get(f.publish!.seq)!.label).toBe('publish active');
    expect(bySeq.get(f.reply!.reply_seq!)!.label).toBe('reply active, no ram');
    expect(layout.marks.find((m) => m.kind === 'hold')!.label).toBe('hold reader');
    const writerLane = layout.lanes.find((l) => l.tid === 2)!.index;
    expect(bySeq.get(f.crossing[0]!.seq)!.lane).toBe(writerLane);
    const client = layout.lanes.find((l) => l.kind === 'client')!.index;
    expect(layout.marks.filter((m) => m.kind === 'reply').every((m) => m.lane === client)).toBe(true);
    const tip = bySeq.get(f.crossing[0]!.seq)!.tooltip;
    expect(tip).toContain(`#${f.crossing[0]!.seq}`);
    expect(tip).toContain('live_migration (LWP 4250)');
    expect(tip).toContain('migrate_set_state minimig.c:140');
    expect(tip).toContain('setup (1) -> active (4)');
    expect(tip).toContain('F1 (manifested): crossing');
  });

  it('starts the arrow at the release of a writer held at migrate_set_state, where its swap happened', () => {
    // The shape of a real replay: the writer's probe hit comes first, it is held, and released inside the window.
    const tr = new Trace();
    tr.transition(MAIN, 'none', 'setup');
    const tx = tr.transition(MIG, 'setup', 'active');
    tr.hold(MIG, 'writer', 'held at transition');
    tr.queryBegin(MAIN, 'q1');
    const rd = tr.read(MAIN, 'setup');
    tr.hold(MAIN, 'reader', 'held at read');
    const rel = tr.release(MIG, 'writer');
    tr.release(MAIN, 'reader');
    const pb = tr.publish(MAIN, 'active');
    tr.queryEnd(MAIN, 'q1');
    tr.reply('q1', BODIES.lp1994002);
    const session = tr.session({ origin: 'replay' });
    const analysis = findInterleavings(session, tr.threads, tr.events);
    const l = layoutTimeline(session, tr.threads, tr.events, analysis);
    expect(l.arrows).toHaveLength(1);
    const relMark = l.marks.find((m) => m.seq === rel)!;
    expect(l.arrows[0]).toMatchObject({ fromSeq: rel, x1: relMark.x });
    expect(relMark.x).toBeGreaterThan(l.marks.find((m) => m.seq === rd)!.x);
    expect(relMark.x).toBeLessThan(l.marks.find((m) => m.seq === pb)!.x);
    expect(l.findings[0]!.explanation).toContain(`(#${tx}, held there and released at #${rel})`);
  });

  it('puts the window on the reader lane and the arrow from the crossing transition into it', () => {
    const f = unpatched.analysis.findings[0]!;
    expect(layout.bands).toHaveLength(1);
    const band = layout.bands[0]!;
    const readerLane = layout.lanes.find((l) => l.tid === f.reader.tid)!.index;
    expect(band.lane).toBe(readerLane);
    expect(band.fromSeq).toBe(f.read!.seq);
    expect(band.toSeq).toBe(f.publish!.seq);
    expect(band.approximate).toBe(false);
    const read = layout.marks.find((m) => m.seq === f.read!.seq)!;
    const publish = layout.marks.find((m) => m.seq === f.publish!.seq)!;
    expect(band.x0).toBeLessThanOrEqual(read.x);
    expect(band.x1).toBeGreaterThanOrEqual(publish.x);

    expect(layout.arrows).toHaveLength(1);
    const a = layout.arrows[0]!;
    const cross = layout.marks.find((m) => m.seq === f.crossing[0]!.seq)!;
    expect(a.fromSeq).toBe(cross.seq);
    expect(a.toSeq).toBe(f.publish!.seq);
    expect(a.x1).toBe(cross.x);
    expect(Math.abs(a.y1 - cross.y)).toBeLessThan(12);
    expect(a.fromLane).toBe(cross.lane);
    expect(a.toLane).toBe(readerLane);
    expect(a.x2).toBeGreaterThan(band.x0);
    expect(a.x2).toBeLessThan(band.x1);
    expect([band.y0, band.y1]).toContain(a.y2);
    // The transition happened inside the window, and the arrow shows it.
    expect(cross.x).toBeGreaterThan(read.x);
    expect(cross.x).toBeLessThan(publish.x);
  });

  it('puts the reply after its query end with the finding verdict beside it', () => {
    const f = unpatched.analysis.findings[0]!;
    const reply = layout.marks.find((m) => m.seq === f.reply!.reply_seq)!;
    const end = layout.marks.find((m) => m.seq === f.query!.end_seq)!;
    expect(reply.x).toBeGreaterThan(end.x);
    expect(reply.verdict).not.toBeNull();
    expect(reply.verdict!.fails).toBe(true);
    expect(reply.verdict!.text).toContain('old libvirt fails');
    expect(reply.verdict!.text).toContain('migration was active, but no RAM info was set');
  });

  it('says the verdict in one sentence with the libvirt consequence', () => {
    expect(layout.verdict.kind).toBe('reproduced');
    expect(layout.verdict.sentence).toMatch(/^Reproduced LP#1994002: live_migration \(LWP 4250\) moved setup -> active after minimig \(LWP 4242\) read setup/);
    expect(layout.verdict.sentence).toContain('old libvirt fails the migration job with "migration was active, but no RAM info was set"');
    const p = layoutTimeline(patched.session, patched.threads, patched.events, patched.analysis);
    expect(p.verdict.kind).toBe('not-reproduced');
    expect(p.verdict.sentence).toContain('published what it read (setup)');
    const none = layoutTimeline(unpatched.session, unpatched.threads, unpatched.events, null);
    expect(none.verdict.kind).toBe('unanalyzed');
    // The 7.2 race: active read, active -> completed crossed, reply with ram but completed's fields.
    const f = unpatched.analysis.findings[0]!;
    const v72 = {
      ...f, crossing: [{ ...f.crossing[0]!, old: { value: 4, name: 'active' }, new: { value: 8, name: 'completed' } }],
      read: { ...f.read!, value: { value: 4, name: 'active' } },
      reply: { ...f.reply!, status: 'active', has_ram: true, old_libvirt: 'accepts' as const, libvirt_error: null, shape: { against: 'session' as const, missing: ['expected-downtime'], foreign: ['downtime'] } },
    };
    const l72 = layoutTimeline(unpatched.session, unpatched.threads, unpatched.events, { ...unpatched.analysis, findings: [v72] });
    expect(l72.verdict.sentence).toContain('Race manifested: live_migration (LWP 4250) moved active -> completed');
    expect(l72.verdict.sentence).toContain('with ram but with the fields of another status (foreign downtime; missing expected-downtime) and libvirt accepts it');
    expect(l72.findings[0]!.knownAs).toBeNull();
  });

  it('uses event order without a clock and compresses long quiet stretches into breaks with one', () => {
    const b = buildLp1994002Bundle({ clock: false });
    const l = layoutTimeline(b.session, b.threads, b.events, b.analysis);
    expect(l.clock).toBe('order');
    expect(l.breaks).toHaveLength(0);
    expect(l.marks.every((m, i) => m.clock === i)).toBe(true);

    const q = buildLp1994002Bundle({ events: 200 });
    // Ten minutes of silence after the race.
    const race = q.analysis.findings[0]!.reply!.reply_seq!;
    for (const e of q.events) if (e.seq > race) e.t_ns = e.t_ns! + 600e9;
    const lq = layoutTimeline(q.session, q.threads, q.events, q.analysis);
    expect(lq.clock).toBe('time');
    expect(lq.breaks).toHaveLength(1);
    expect(lq.breaks[0]!.afterSeq).toBe(race);
    expect(lq.breaks[0]!.label).toMatch(/^\+600\.\d+ s$/);
    expect(lq.breaks[0]!.x1 - lq.breaks[0]!.x0).toBeLessThan(60);
  });
});

describe('displayStateName', () => {
  it("is the analyzer's name, cleaned, with ? for none", () => {
    for (const [id, names] of Object.entries(STATUS_TABLES) as Array<[keyof typeof STATUS_TABLES, readonly string[]]>) {
      for (let v = -1; v <= names.length; v++) {
        expect(displayStateName({ value: v, name: null }, id)).toBe(stateName({ value: v, name: null }, id));
      }
      expect(displayStateName({ value: 1, name: 'MIGRATION_STATUS_POSTCOPY_ACTIVE' }, id)).toBe('postcopy-active');
      expect(displayStateName({ value: null, name: 'set\x1bup\u202e' }, id)).toBe('set\ufffdup\ufffd');
      expect(displayStateName({ value: null, name: null }, id)).toBe('?');
      expect(displayStateName(null, id)).toBe('?');
    }
  });
});

describe('reproduceCommand', () => {
  it('names the scenario, the target and the variant', () => {
    expect(reproduceCommand(unpatched.session, unpatched.analysis.findings[0])).toBe('migrace replay --scenario lp1994002 --target minimig');
    expect(reproduceCommand(patched.session, patched.analysis.findings[0])).toBe('migrace replay --scenario lp1994002 --target minimig --patched');
    const q = buildLp1994002Bundle({ target: 'qemu' });
    expect(reproduceCommand(q.session, null)).toBe('migrace replay --scenario lp1994002 --target qemu --qemu /opt/qemu-5.2/usr/bin/qemu-system-x86_64');
    const odd = { ...q.session, target: { ...q.session.target, binary: "/tmp/my qemu/it's" } };
    expect(reproduceCommand(odd, null)).toBe(`migrace replay --scenario lp1994002 --target qemu --qemu '/tmp/my qemu/it'\\''s'`);
    expect(printableShellWord('$(rm -rf ~)')).toBe(`'$(rm -rf ~)'`);
  });

  it('picks the scenario that forces the finding, else replays the finding from the database', () => {
    const f = unpatched.analysis.findings[0]!;
    const completed = { ...f, crossing: [{ ...f.crossing[0]!, old: { value: 4, name: 'active' }, new: { value: 8, name: 'completed' } }] };
    expect(reproduceCommand(unpatched.session, completed)).toBe('migrace replay --scenario into-completed --target minimig');
    const odd = { ...f, crossing: [{ ...f.crossing[0]!, old: { value: 1, name: 'setup' }, new: { value: 2, name: 'cancelling' } }] };
    const withDb = { ...unpatched.session, meta: { scenario: 'session7-F1', db: '/srv/traces/run 1.db' } };
    expect(reproduceCommand(withDb, odd)).toBe(`migrace replay --finding 1:F1 --db '/srv/traces/run 1.db' --target minimig`);
    const own = { ...unpatched.session, target: { ...unpatched.session.target, binary: '/home/me/minimig-debug' } };
    expect(reproduceCommand(own, f)).toBe('migrace replay --scenario lp1994002 --target minimig --binary /home/me/minimig-debug');
  });

  it('quotes control characters and bidi overrides from the session as $\'...\' escapes', () => {
    const evil = '/tmp/x\x07\x1b[31m\r\u202e';
    const s = { ...unpatched.session, target: { ...unpatched.session.target, binary: evil } };
    const cmd = reproduceCommand(s, unpatched.analysis.findings[0]);
    expect(cmd).toBe(`migrace replay --scenario lp1994002 --target minimig --binary $'/tmp/x\\x07\\x1b[31m\\x0d\\u202e'`);
    // eslint-disable-next-line no-control-regex
    expect(cmd).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
    const q = buildLp1994002Bundle({ target: 'qemu' });
    const qs = { ...q.session, target: { ...q.session.target, binary: "/opt/it's\\\u2066x\u2069\u0085" } };
    expect(reproduceCommand(qs, null)).toBe(`migrace replay --scenario lp1994002 --target qemu --qemu $'/opt/it\\'s\\\\\\u2066x\\u2069\\u0085'`);
    // Plain quoting stays as it was for everything else.
    expect(printableShellWord('a b')).toBe(`'a b'`);
    expect(printableShellWord('')).toBe(`''`);
  });

  it.skipIf(!existsSync('/bin/bash'))('a $\'...\' word reads back in bash as the same bytes', () => {
    const evil = "/tmp/x\x07\x1b[31m\r\u202e it's \\ \u2066\x7f\u0085";
    const got = execFileSync('/bin/bash', ['-c', `printf %s ${printableShellWord(evil)}`], { env: { LC_ALL: 'C.UTF-8' } });
    expect(got.toString('utf8')).toBe(evil);
  });

  it('takes only the scenarios the table defines, not what every object inherits', () => {
    for (const name of ['toString', 'constructor', '__proto__', 'hasOwnProperty']) {
      const s = { ...unpatched.session, meta: { scenario: name } };
      expect(reproduceCommand(s, null)).toBe('migrace replay --scenario lp1994002 --target minimig');
    }
    const known = { ...unpatched.session, meta: { scenario: 'active-completed' } };
    expect(reproduceCommand(known, null)).toBe('migrace replay --scenario active-completed --target minimig');
  });
});

describe('reproducing a replay exactly', () => {
  const custom = readThenTransition('mine', 'active', 'cancelling', 'hold the reader on active while the migration is cancelled');
  const qemuReplay = (meta: Record<string, unknown>) => {
    const q = buildLp1994002Bundle({ target: 'qemu' });
    return { ...q, session: { ...q.session, origin: 'replay' as const, meta: { schedule: custom, scenario: custom.name, ...meta } } };
  };
  const argv = ['migrace', 'replay', '--schedule', 'my schedule.json', '--target', 'qemu', '--qemu', '/opt/q/qemu-system-x86_64',
    '--profile', '/tmp/p.json', '--memory', '512', '--max-bandwidth', '1048576', '--repeat', '5', '--', '-cpu', 'max', '-smp', '2'];
  const expected = 'migrace replay --schedule schedule.json --target qemu --qemu /opt/q/qemu-system-x86_64 --profile /tmp/p.json --memory 512 --max-bandwidth 1048576 -- -cpu max -smp 2';
  /** The fenced JSON of a text or Markdown report, parsed as replay would read the file. */
  const fencedSchedule = (text: string) => parseSchedule(JSON.parse(/^```json\n([\s\S]*?)\n```$/m.exec(text)![1]!), 'report');

  it('replays a --schedule replay from the schedule it prints, with the QEMU, profile, memory, bandwidth and extra arguments (meta.command)', () => {
    const b = qemuReplay({ command: argv });
    const r = reproduction(b.session, b.analysis.findings[0]);
    expect(r.command).toBe(expected);
    expect(r.schedule).toEqual(custom);
    const text = renderText(b.session, b.threads, b.events, b.analysis);
    expect(width80(text)).toEqual([]);
    expect(fencedSchedule(text)).toEqual({ ...custom, description: expect.any(String) });
    expect(text).toMatch(/^save as schedule\.json, then:\n {2}migrace replay --schedule schedule\.json --target qemu --qemu/m);
    expect(text).toContain('-- -cpu max -smp 2\n');
    expect(text).not.toContain('--scenario lp1994002');
    const md = renderMarkdown(b.session, b.threads, b.events, b.analysis);
    expect(fencedSchedule(md)).toEqual(custom);
    expect(md).toMatch(/save as schedule\.json, then:\n```sh\nmigrace replay --schedule schedule\.json/);
    const doc = parseHtml(renderHtml(b.session, b.threads, b.events, b.analysis));
    expect(parseSchedule(JSON.parse(doc.querySelector('#reproduce pre.schedule')!.textContent!), 'html')).toEqual(custom);
    expect(doc.querySelector('#reproduce p')!.textContent).toBe('save as schedule.json, then:');
    expect(doc.querySelector('#reproduce pre.cmd')!.textContent).toBe(expected);
    const otherData = JSON.parse(perfettoText(b.session, b.threads, b.events, b.analysis)).otherData as Record<string, string>;
    expect(otherData.reproduce).toBe(expected);
    expect(parseSchedule(JSON.parse(otherData.schedule!.replace(/^save as schedule\.json: /, '')), 'perfetto')).toEqual(custom);
  });

  it('reads the same from meta.invocation, which wins over meta.command', () => {
    const invocation = {
      command: 'replay', target: 'qemu', patched: false, binary: null, qemu: '/opt/q/qemu-system-x86_64', profile: '/tmp/p.json',
      memory: '512', extra_args: ['-cpu', 'max', '-smp', '2'], max_bandwidth: 1048576, setup_ms: null, transfer_ms: null, bql_completion: false,
    };
    expect(reproduceCommand(qemuReplay({ invocation }).session)).toBe(expected);
    expect(reproduceCommand(qemuReplay({ invocation, command: ['migrace', 'replay', '--target', 'qemu', '--qemu', '/elsewhere'] }).session)).toBe(expected);
    // Without a profile file or extras, none are invented; the default memory is left out.
    expect(reproduceCommand(qemuReplay({ invocation: { ...invocation, profile: null, memory: '128', extra_args: [], max_bandwidth: null } }).session))
      .toBe('migrace replay --schedule schedule.json --target qemu --qemu /opt/q/qemu-system-x86_64');
    const minimig = { ...unpatched.session, origin: 'replay' as const, meta: { schedule: custom, invocation: { target: 'minimig', patched: true, setup_ms: 300, transfer_ms: 2000, bql_completion: true } } };
    expect(reproduceCommand(minimig)).toBe('migrace replay --schedule schedule.json --target minimig --patched --setup-ms 300 --transfer-ms 2000 --bql-completion');
  });

  it('replays a --finding replay from its schedule, and a schedule that is a built-in scenario by name', () => {
    const fromFinding = readThenTransition('session7-F1', 'setup', 'cancelling', 'replay of F1 in session 7');
    const s = { ...unpatched.session, origin: 'replay' as const, meta: { schedule: fromFinding, command: ['migrace', 'replay', '--finding', '7:F1', '--target', 'minimig', '--patched'] } };
    expect(reproduction(s).command).toBe('migrace replay --schedule schedule.json --target minimig --patched');
    expect(reproduction(s).schedule).toEqual(fromFinding);
    const builtin = { ...s, meta: { schedule: builtinSchedule('lp1994002'), command: ['migrace', 'replay', '--schedule', 'copy.json', '--target', 'minimig'] } };
    expect(reproduction(builtin)).toMatchObject({ command: 'migrace replay --scenario lp1994002 --target minimig', schedule: null });
    // A meta.schedule that is not a schedule is not printed as one.
    const broken = { ...s, meta: { schedule: { format: 'migrace-schedule', steps: 'x' }, command: ['migrace', 'replay', '--schedule', 'x.json', '--target', 'minimig'] } };
    expect(reproduction(broken)).toMatchObject({ command: 'migrace replay --schedule x.json --target minimig', schedule: null });
  });

  it('falls back to the target arguments (meta.args) for memory and extra QEMU arguments', () => {
    const q = buildLp1994002Bundle({ target: 'qemu' });
    const args = ['-nodefaults', '-display', 'none', '-S', '-m', '1024', '-name', 'source,debug-threads=on', '-qmp', 'unix:/tmp/x/qmp.sock,server=on,wait=off', '-cpu', 'max'];
    const rec = { ...q.session, origin: 'live' as const, meta: { args } };
    expect(reproduceCommand(rec, q.analysis.findings[0])).toBe('migrace replay --scenario lp1994002 --target qemu --qemu /opt/qemu-5.2/usr/bin/qemu-system-x86_64 --memory 1024 -- -cpu max');
    expect(invocationOf(rec)).toMatchObject({ source: 'args', memory: '1024', extraArgs: ['-cpu', 'max'] });
    // The demo's argv has no extra arguments; its target's own arguments still count.
    const demo = { ...rec, origin: 'replay' as const, meta: { args, command: ['migrace', 'replay', '--scenario', 'lp1994002', '--target', 'qemu', '--qemu', '/q'] } };
    expect(reproduceCommand(demo)).toBe('migrace replay --scenario lp1994002 --target qemu --qemu /q --memory 1024 -- -cpu max');
  });

  it('reads argv as commander does: --opt=value, variadic --env, bare words are QEMU arguments', () => {
    expect(parseCommand(['migrace', 'replay', '--qemu=/q', '--target', 'qemu', '--env', 'A=1', 'B=2', '--patched', '-cpu', 'max'])).toMatchObject({
      target: 'qemu', qemu: '/q', env: ['A=1', 'B=2'], patched: true, extraArgs: ['-cpu', 'max'],
    });
    expect(parseCommand(['migrace', 'replay', '--scenario', 'lp1994002'])).toMatchObject({ target: 'minimig', scenario: 'lp1994002', extraArgs: [] });
  });

  it('keeps hostile schedule text printable and exact, and the text within 80 columns', () => {
    const evil = { ...custom, description: `x\u202ey\x1b[2J\u2028${'long '.repeat(30)}\`\`\`` };
    const b = qemuReplay({ schedule: evil, command: argv });
    const text = renderText(b.session, b.threads, b.events, b.analysis);
    expect(width80(text)).toEqual([]);
    // eslint-disable-next-line no-control-regex
    expect(text).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u202a-\u202e]/);
    expect(text).toContain('(the description is shortened to fit; the replay does not read it)');
    const md = renderMarkdown(b.session, b.threads, b.events, b.analysis);
    const block = /^(`{3,})json\n([\s\S]*?)\n\1$/m.exec(md)!;
    expect(block[1]!.length).toBeGreaterThan(3);
    expect(parseSchedule(JSON.parse(block[2]!), 'md')).toEqual(evil);
    expect(printableJson('a\u202eb\u0085')).toBe('"a\\u202eb\\u0085"');
  });
});

describe('an infeasible replay', () => {
  // As analyzer/replay.ts stores it (a real one: minimig --bql-completion, active -> completed).
  const REASON = 'reader (the read probe with value active) cannot arrive: thread 1 "minimig" waits in futex_wait (futex_wait <- __GI___lll_lock_wait <- lll_mutex_lock_optimized <- ___pthread_mutex_lock <- bql_lock <- handle_line) while writer (migrate_set_state(active -> completed)) is held; the held thread owns the lock';
  const infeasible = (v: unknown) => {
    const events = unpatched.events.slice(0, 3);
    return { ...unpatched, events, session: { ...unpatched.session, meta: { ...unpatched.session.meta, infeasible: v } }, analysis: { ...unpatched.analysis, findings: [], replies: [] } };
  };

  it('says so in the verdict, with the lock-wait stack, in every rendering', () => {
    const b = infeasible(REASON);
    const l = layoutTimeline(b.session, b.threads, b.events, b.analysis);
    expect(l.verdict.kind).toBe('infeasible');
    expect(l.verdict.sentence).toBe(`Infeasible: the schedule cannot happen on this build: ${REASON}.`);
    const text = renderText(b.session, b.threads, b.events, b.analysis);
    expect(width80(text)).toEqual([]);
    expect(text).toContain("The reader's stack, waiting in futex_wait:\n  #0 futex_wait\n  #1 __GI___lll_lock_wait\n");
    expect(text).toContain('  #5 handle_line\n');
    const doc = parseHtml(renderHtml(b.session, b.threads, b.events, b.analysis));
    expect(doc.querySelector('.verdict.infeasible')!.textContent).toContain('waits in futex_wait');
    expect(doc.querySelector('pre.stack')!.textContent!.split('\n')).toHaveLength(6);
    expect(renderMarkdown(b.session, b.threads, b.events, b.analysis)).toContain('**Verdict:** Infeasible');
  });

  it('reads a structured meta.infeasible too', () => {
    const b = infeasible({ reason: 'the writer holds the big lock', lock: 'bql_lock_impl', stack: [{ func: 'pthread_mutex_lock' }, { func: 'bql_lock_impl' }, { func: 'qmp_dispatch' }] });
    expect(infeasibleOf(b.session)).toEqual({ reason: 'the writer holds the big lock', lock: 'bql_lock_impl', stack: ['pthread_mutex_lock', 'bql_lock_impl', 'qmp_dispatch'] });
    const l = layoutTimeline(b.session, b.threads, b.events, b.analysis);
    expect(l.verdict.sentence).toBe('Infeasible: the schedule cannot happen on this build: the writer holds the big lock. Lock-wait stack: pthread_mutex_lock <- bql_lock_impl <- qmp_dispatch.');
    expect(infeasibleOf(unpatched.session)).toBeNull();
  });
});

describe('escaping', () => {
  it('escapeHtml escapes the five characters', () => {
    expect(escapeHtml(`<img src=x onerror=alert(1)>`)).toBe('&lt;img src=x onerror=alert(1)&gt;');
    expect(escapeHtml(`a & "b" 'c'`)).toBe('a &amp; &quot;b&quot; &#39;c&#39;');
    expect(escapeHtml('&amp;')).toBe('&amp;amp;');
  });

  it('cleanText removes control and bidi characters', () => {
    expect(cleanText('a\u0000b\u202ec\nd')).toBe('a\ufffdb\ufffdc d');
    expect(cleanText('x\ud800y')).toBe('x\ufffdy');
  });

  it('renders markup in thread names, notes, labels and replies as text everywhere', () => {
    const b = buildLp1994002Bundle({ evil: true });
    const html = renderHtml(b.session, b.threads, b.events, b.analysis);
    expect(html).not.toContain(EVIL);
    expect(html).not.toContain(EVIL_SCRIPT);
    expect(html).not.toContain('<img');
    expect(html).not.toContain('alert(3)</script>');
    expect(html.match(/<script/g)).toHaveLength(1);
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
    const doc = parseHtml(html);
    expect(doc.querySelectorAll('img')).toHaveLength(0);
    expect(doc.querySelectorAll('script')).toHaveLength(1);
    const labels = [...doc.querySelectorAll('svg .lane-label')].map((n) => n.textContent);
    expect(labels.some((t) => t?.startsWith(EVIL))).toBe(true);
    expect(doc.body.textContent).toContain(`${EVIL} ${EVIL_SCRIPT} & "quotes"`);

    const svg = renderSessionSvg(b.session, b.threads, b.events, b.analysis);
    const sdoc = parseSvg(svg);
    expect(sdoc.getElementsByTagName('img')).toHaveLength(0);
    expect(sdoc.getElementsByTagName('script')).toHaveLength(0);
    expect(svg).not.toContain(EVIL);

    const md = renderMarkdown(b.session, b.threads, b.events, b.analysis);
    // Markup may only appear inside code (fenced blocks, code spans), where it is literal.
    const outsideCode = md.split(/^`{3,}.*$/m).filter((_, i) => i % 2 === 0).join('\n').replace(/(`+)[^`][\s\S]*?\1/g, '');
    expect(outsideCode).not.toMatch(/(?<!\\)<(img|script)/);
    expect(md).toContain('`race </title><script>alert(3)</script> <img src=x onerror=alert(1)>`');
    expect(escapeMarkdown('<b>*x*</b>')).toBe('\\<b\\>\\*x\\*\\</b\\>');

    const json = JSON.parse(perfettoText(b.session, b.threads, b.events, b.analysis)) as { traceEvents: ChromeTraceEvent[] };
    const names = json.traceEvents.filter((e) => e.name === 'thread_name').map((e) => e.args!.name as string);
    expect(names.some((n) => n.startsWith(EVIL))).toBe(true);

    const diff = renderDiffHtml(b, patched);
    expect(diff).not.toContain(EVIL);
    expect(diff.match(/<script/g)).toHaveLength(1);
  });
});

describe('svg', () => {
  it('is a standalone, well-formed SVG with lanes, marks, a window and the crossing arrow', () => {
    const svg = renderSessionSvg(unpatched.session, unpatched.threads, unpatched.events, unpatched.analysis);
    expect(svg.startsWith('<?xml')).toBe(true);
    const doc = parseSvg(svg);
    const root = doc.documentElement;
    expect(root.getAttribute('xmlns')).toBe('http://www.w3.org/2000/svg');
    const lanes = [...doc.querySelectorAll('.lane')];
    expect(lanes.map((l) => l.getAttribute('data-thread'))).toEqual(['1', '2', 'client']);
    const marks = [...doc.querySelectorAll('.mark')];
    expect(marks).toHaveLength(unpatched.events.length);
    for (const m of marks) {
      expect(m.getAttribute('data-seq')).toMatch(/^\d+$/);
      expect(m.getAttribute('data-kind')).toBeTruthy();
      expect(m.getElementsByTagName('title')).toHaveLength(1);
    }
    const f = unpatched.analysis.findings[0]!;
    const cross = doc.querySelector(`.mark[data-seq="${f.crossing[0]!.seq}"]`)!;
    expect(cross.getAttribute('class')).toContain('crossing');
    expect(cross.getAttribute('data-kind')).toBe('transition');
    const arrow = doc.querySelector('.crossing-arrow')!;
    expect(arrow.getAttribute('data-from-seq')).toBe(String(f.crossing[0]!.seq));
    const markerRef = /url\(#([^)]+)\)/.exec(arrow.getAttribute('marker-end')!)![1]!;
    expect(doc.getElementById(markerRef)!.tagName).toBe('marker');
    expect(doc.querySelector('.band.band-manifested')!.getAttribute('data-finding')).toBe('F1');
    expect(doc.querySelector('.verdict-label')!.textContent).toContain('old libvirt fails');
  });

  it('gives each SVG on a page its own marker id', () => {
    const a = renderSvg(layout, { idPrefix: 'a1' });
    const b = renderSvg(layout, { idPrefix: 'b2' });
    expect(a).toContain('id="a1-arrowhead"');
    expect(b).toContain('id="b2-arrowhead"');
  });
});

describe('html', () => {
  it('is self-contained under a hash-based CSP', () => {
    const html = renderHtml(unpatched.session, unpatched.threads, unpatched.events, unpatched.analysis);
    const hash = (s: string): string => `'sha256-${createHash('sha256').update(s).digest('base64')}'`;
    const doc = parseHtml(html);
    const csp = doc.querySelector('meta[http-equiv="Content-Security-Policy"]')!.getAttribute('content')!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain(`style-src ${hash(REPORT_CSS)}`);
    expect(csp).toContain(`script-src ${hash(REPORT_SCRIPT)}`);
    expect(csp).not.toContain('unsafe');
    expect(doc.querySelector('style')!.textContent).toBe(REPORT_CSS);
    expect(doc.querySelector('script')!.textContent).toBe(REPORT_SCRIPT);
    expect(doc.querySelectorAll('link, img, iframe, object, embed, [src]')).toHaveLength(0);
    for (const a of doc.querySelectorAll('[href]')) expect(a.getAttribute('href')!.startsWith('#')).toBe(true);
    expect(html).not.toMatch(/style="/);
  });

  it('has the header, the timeline, the findings, the events, the replies and the command', () => {
    const html = renderHtml(unpatched.session, unpatched.threads, unpatched.events, unpatched.analysis);
    const doc = parseHtml(html);
    const sections = [...doc.querySelectorAll('section')].map((s) => s.id);
    expect(sections).toEqual(['timeline', 'findings', 'events', 'replies', 'reproduce']);
    expect(doc.querySelector('.verdict.reproduced')!.textContent).toContain('migration was active, but no RAM info was set');
    expect(doc.querySelector('dl.facts')!.textContent).toContain('samples/minimig/minimig');
    expect(doc.querySelectorAll('table.events tbody tr')).toHaveLength(unpatched.events.length);
    expect(doc.querySelector('#finding-F1')!.textContent).toContain('setup -> active');
    const replies = [...doc.querySelectorAll('#replies pre')].map((p) => p.textContent);
    expect(replies).toContain('{\n  "status": "active"\n}');
    expect(doc.querySelector('#reproduce code')!.textContent).toBe('migrace replay --scenario lp1994002 --target minimig');
  });
});

describe('text and markdown', () => {
  it('fits 80 columns and tells the story row by row', () => {
    const text = renderText(unpatched.session, unpatched.threads, unpatched.events, unpatched.analysis);
    expect(width80(text)).toEqual([]);
    const f = unpatched.analysis.findings[0]!;
    const rows = text.split('\n');
    const row = (seq: number): string => rows.find((l) => l.trimStart().startsWith(`#${seq} `))!;
    expect(row(f.read!.seq)).toMatch(/^\s+#\d+ read setup \[F1/);
    expect(row(f.crossing[0]!.seq)).toMatch(/^\s+#\d+ :\s+setup -> active >>F1/);
    expect(row(f.publish!.seq)).toMatch(/publish active F1\]/);
    expect(row(f.reply!.reply_seq!)).toMatch(/reply active, no ram <F1/);
    expect(text).toContain('^ F1: old libvirt fails');
    expect(text).toContain('Verdict: Reproduced LP#1994002');
    expect(text).toContain('evidence: #7 #8 #10 #12 #13 #14');
    expect(text).toContain('migrace replay --scenario lp1994002 --target minimig');
    // Columns: one per thread with events, plus the client.
    expect(rows.find((l) => l.startsWith(' seq'))).toMatch(/seq minimig\s+live_migration\s+QMP client/);
  });

  it('elides runs of uninteresting polls', () => {
    const b = buildLp1994002Bundle({ events: 600 });
    const text = renderText(b.session, b.threads, b.events, b.analysis);
    expect(width80(text)).toEqual([]);
    expect(text).toMatch(/\.\.\. \d+ polls elided \(\d+ events, #\d+-#\d+\) \.\.\./);
    expect(text.split('\n').length).toBeLessThan(80);
  });

  it('keeps 80 columns with long names and many threads', () => {
    const b = buildLp1994002Bundle({ extraThread: true });
    const threads = [...b.threads, ...[4, 5, 6, 7].map((tid) => ({ tid, gdb_id: tid, lwp: 5000 + tid, name: `worker-with-a-very-long-name-${tid}` }))];
    const events = [...b.events, ...[4, 5, 6, 7].map((tid, i): TraceEvent => ({
      seq: 1000 + i, t_ns: b.events[b.events.length - 1]!.t_ns! + 1000 * (i + 1), wall: null, thread: tid,
      probe: null, pc: null, func: null, file: null, line: null, kind: 'note', data: { text: 'x'.repeat(200) },
    }))];
    const text = renderText(b.session, threads, events, b.analysis);
    expect(width80(text)).toEqual([]);
    expect(text).toContain('other threads');
  });

  it('fences the diagram in Markdown', () => {
    const md = renderMarkdown(unpatched.session, unpatched.threads, unpatched.events, unpatched.analysis);
    const fences = md.match(/^```text\n([\s\S]*?)\n```$/m);
    expect(fences).not.toBeNull();
    expect(width80(fences![1]!)).toEqual([]);
    expect(fences![1]).toContain('setup -> active >>F1');
    expect(md).toContain('**Verdict:** Reproduced LP\\#1994002');
    expect(md).toMatch(/```sh\nmigrace replay --scenario lp1994002 --target minimig\n```/);
  });
});

describe('perfetto', () => {
  const load = (b: Bundle) => JSON.parse(perfettoText(b.session, b.threads, b.events, b.analysis)) as {
    displayTimeUnit: string; otherData: Record<string, string>; traceEvents: ChromeTraceEvent[];
  };
  /** Stream a bundle's trace into a file and check it as the importer needs it. */
  const written = (b: Pick<Bundle, 'session' | 'threads' | 'events' | 'analysis'>) => {
    const file = join(tmp, `trace-${++files}.json`);
    const chunks: number[] = [];
    const fd = openSync(file, 'w');
    try {
      writePerfetto(b.session, b.threads, b.events, b.analysis, (c) => {
        chunks.push(c.length);
        writeSync(fd, c);
      });
    } finally {
      closeSync(fd);
    }
    return { file, chunks, check: checkChromeTraceFile(file) };
  };
  let tmp: string;
  let files = 0;
  beforeAll(() => { tmp = mkdtempSync(join(tmpdir(), 'migrace-perfetto-')); });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('is the JSON object format, keys in the order the importer needs', () => {
    const text = perfettoText(unpatched.session, unpatched.threads, unpatched.events, unpatched.analysis);
    const json = JSON.parse(text) as Record<string, unknown>;
    expect(Object.keys(json)).toEqual(['displayTimeUnit', 'otherData', 'traceEvents']);
    expect(json.displayTimeUnit).toBe('ns');
    for (const e of (json as { traceEvents: ChromeTraceEvent[] }).traceEvents) {
      expect(Object.keys(e).slice(0, 3)).toEqual(['name', 'ph', 'ts']);
      expect(Object.values(e).some((v) => Array.isArray(v))).toBe(false);
    }
    expect(String(json.otherData && (json.otherData as Record<string, string>).reproduce)).toBe('migrace replay --scenario lp1994002 --target minimig');
  });

  it('names every thread it uses and marks transitions, reads and publishes as instants', () => {
    const json = load(unpatched);
    const named = new Set(json.traceEvents.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => `${e.pid}/${e.tid}`));
    const used = new Set(json.traceEvents.filter((e) => e.ph !== 'M').map((e) => `${e.pid}/${e.tid}`));
    for (const u of used) expect(named).toContain(u);
    expect(named.size).toBe(3);
    const threadNames = json.traceEvents.filter((e) => e.name === 'thread_name').map((e) => e.args!.name);
    expect(threadNames).toContain('minimig (LWP 4242) [reader]');
    const instants = json.traceEvents.filter((e) => e.ph === 'i');
    expect(instants.every((e) => e.s === 't')).toBe(true);
    expect(instants.map((e) => e.name)).toContain('read setup');
    expect(instants.map((e) => e.name)).toContain('none -> setup');
    const begins = json.traceEvents.filter((e) => e.ph === 'B').map((e) => e.name);
    expect(begins).toEqual(expect.arrayContaining(['query-migrate q2', 'held (reader)', 'F1 manifested: read setup -> publish active']));
  });

  it('pairs flows from the crossing transition to the publish it spoiled', () => {
    const json = load(unpatched);
    const outs = json.traceEvents.filter((e) => e.flow_out);
    const ins = json.traceEvents.filter((e) => e.flow_in);
    expect(outs).toHaveLength(1);
    for (const o of outs) {
      expect(typeof o.bind_id).toBe('number');
      const matching = ins.filter((i) => i.bind_id === o.bind_id);
      expect(matching).toHaveLength(1);
      expect(o.ph).toBe('X');
      expect(matching[0]!.ph).toBe('X');
    }
    const f = unpatched.analysis.findings[0]!;
    const out = outs[0]!;
    const inn = ins.find((i) => i.bind_id === out.bind_id)!;
    expect(out.args!.seq).toBe(f.crossing[0]!.seq);
    expect(out.name).toBe('setup -> active');
    expect(out.tid).toBe(4250);
    expect(inn.args!.seq).toBe(f.publish!.seq);
    expect(inn.name).toBe('publish active');
    expect(inn.tid).toBe(4242);
    expect(inn.ts).toBeGreaterThan(out.ts);
  });

  it('nests the slices of each thread: the finding inside its query, the held reader inside the finding', () => {
    const { check } = written(unpatched);
    expect(check.problems).toEqual([]);
    const json = load(unpatched);
    const onReader = json.traceEvents.filter((e) => (e.ph === 'B' || e.ph === 'E') && e.tid === 4242).map((e) => `${e.ph} ${e.name}`);
    const raced = onReader.indexOf('B query-migrate q2');
    expect(onReader.slice(raced, raced + 6)).toEqual([
      'B query-migrate q2', 'B F1 manifested: read setup -> publish active', 'B held (reader)',
      'E held (reader)', 'E F1 manifested: read setup -> publish active', 'E query-migrate q2',
    ]);
  });

  it('uses event order as the clock when there is none', () => {
    const b = buildLp1994002Bundle({ clock: false });
    const t = load(b);
    const ts = t.traceEvents.filter((e) => e.ph === 'i').map((e) => e.ts);
    expect(ts.every((x) => Number.isInteger(x))).toBe(true);
    expect(t.otherData.clock).toContain('event order');
    expect(written(b).check.problems).toEqual([]);
  });

  it('writes every event of a session the HTML summarizes, in chunks, with the flows of every finding', () => {
    const b = buildLp1994002Bundle({ events: 20_000, target: 'qemu' });
    const f = b.analysis.findings[0]!;
    // Three findings: every one gets its flow and its window.
    const more = [2, 3].map((k) => ({ ...f, id: `F${k}` }));
    const analysis = { ...b.analysis, findings: [f, ...more] };
    const { check, chunks, file } = written({ ...b, analysis });
    expect(check.problems).toEqual([]);
    expect(check.seqs).toBe(b.events.length);
    const count = (k: string) => b.events.filter((e) => e.kind === k).length;
    for (const k of ['transition', 'read', 'publish', 'reply', 'hold', 'release']) expect(check.kinds[k], k).toBe(count(k));
    // query begin and end are the B and E of the query slices.
    expect(check.byPhase.B).toBe(count('query-begin') + 3 + count('hold'));
    expect(check.byPhase.E).toBe(check.byPhase.B);
    expect(check.flows).toBe(3);
    // Windows that end together close as they nest: none was cut short.
    expect(readFileSync(file, 'utf8')).not.toContain('cut_short_by');
    expect(String(check.otherData!.events)).toBe(`${b.events.length} (every event)`);
    expect(chunks.length).toBeGreaterThan(2);
    expect(Math.max(...chunks)).toBeLessThan((1 << 20) + 10_000);
  });

  describe('streamed from the store', () => {
    let db: ReturnType<typeof tempStore>;
    beforeAll(() => { db = tempStore('migrace-perfetto-store'); });
    afterAll(() => db.cleanup());

    const store = (session: Session, threads: readonly Thread[], events: readonly TraceEvent[]): number => {
      const { label, origin, target, profile, meta } = session;
      const id = db.store.createSession({ label, origin, target, profile, meta });
      db.store.appendBatch(id, threads, events);
      db.store.finishSession(id, 'complete');
      return id;
    };
    const streamed = (id: number): string => {
      const parts: string[] = [];
      writeStoredPerfetto(db.store, id, (c) => parts.push(c));
      return parts.join('');
    };
    const inMemory = (id: number): string => {
      const b = loadBundle(db.store, id);
      return perfettoText(b.session, b.threads, b.events, b.analysis);
    };

    it('writes what writePerfetto writes of the loaded session, flows of every finding included', () => {
      // Many findings, manifested and benign (a held writer released inside the window), and notes on no thread.
      const s = syntheticPolling(30_000, { perPhase: 10, raceEvery: 3 });
      const id = store(s.session, s.threads, s.events);
      const text = streamed(id);
      expect(text).toBe(inMemory(id));
      const findings = loadBundle(db.store, id).analysis!.findings;
      expect(findings.length).toBe(s.manifested.length + s.benign.length);
      expect(findings.length).toBeGreaterThan(10);
      const file = join(tmp, 'stored.json');
      writeFileSync(file, text);
      const check = checkChromeTraceFile(file);
      expect(check.problems).toEqual([]);
      expect(check.flows).toBe(findings.reduce((n, f) => n + f.crossing.length, 0));
      expect(check.seqs).toBe(s.events.length);
    });

    it('writes the same for a session without a clock, with evil text, and with no events', () => {
      for (const b of [buildLp1994002Bundle({ clock: false }), buildLp1994002Bundle({ evil: true, extraThread: true })]) {
        const id = store(b.session, b.threads, b.events);
        expect(loadBundle(db.store, id).analysis!.findings.length).toBe(1);
        expect(streamed(id)).toBe(inMemory(id));
      }
      const empty = store(unpatched.session, unpatched.threads, []);
      expect(streamed(empty)).toBe(inMemory(empty));
    });

    it('stops at the events of its first pass and fails when they changed under it', () => {
      const b = buildLp1994002Bundle({});
      const second = (events: readonly TraceEvent[]): string => {
        const x = new PerfettoExport(b.session, b.threads);
        for (const e of b.events) x.see(e);
        const parts: string[] = [];
        x.write(b.analysis, events, (c) => parts.push(c));
        return parts.join('');
      };
      const last = b.events[b.events.length - 1]!;
      // A recording that went on between the passes: what came after the first is left out.
      expect(second([...b.events, { ...last, seq: last.seq + 1 }])).toBe(perfettoText(b.session, b.threads, b.events, b.analysis));
      expect(() => second(b.events.slice(0, -1))).toThrow(/changed between the two passes .*: \d+ events, were \d+/);
      expect(() => second(b.events.filter((e) => e.seq !== 5))).toThrow(/event 5 is #6, was #5/);
      const x = new PerfettoExport(b.session, b.threads);
      x.see(b.events[1]!);
      expect(() => x.see(b.events[0]!)).toThrow(/event 1 comes after event 2: the timeline needs the events in seq order/);
    });
  });

  it('has a checker that rejects what the importer would not take', () => {
    const file = join(tmp, 'bad.json');
    const check = (events: object[], head = '{"displayTimeUnit":"ns","otherData":{},"traceEvents":[') => {
      writeFileSync(file, `${head}\n${events.map((e) => JSON.stringify(e)).join(',\n')}\n]}\n`);
      return checkChromeTraceFile(file).problems.join('; ');
    };
    const named = { name: 'thread_name', ph: 'M', ts: 0, pid: 1, tid: 1, args: { name: 't' } };
    const i = (ts: number, extra: object = {}) => ({ name: 'x', ph: 'i', ts, pid: 1, tid: 1, s: 't', ...extra });
    expect(check([named, i(1), i(2)])).toBe('');
    expect(check([named, i(2), i(1)])).toContain('ts 1 before 2');
    expect(check([named, { name: 'q', ph: 'B', ts: 1, pid: 1, tid: 1 }])).toContain('never closed');
    expect(check([named, { name: 'q', ph: 'E', ts: 1, pid: 1, tid: 1 }])).toContain('nothing open');
    expect(check([named, { name: 'a', ph: 'X', ts: 1, pid: 1, tid: 1, dur: 0, bind_id: 1, flow_out: true }])).toContain('flow 1 has no flow_in');
    expect(check([named, i(1, { bind_id: 2, flow_in: true })])).toContain('flow on a i event');
    expect(check([named, { ph: 'i', name: 'x', ts: 1, pid: 1, tid: 1, s: 't' }])).toContain('not name,ph,ts');
    expect(check([named, i(1, { args: {} }), { name: 'x', ph: 'i', ts: 2, pid: 1, tid: 2, s: 't' }])).toContain('thread 1/2 has no thread_name');
    expect(check([named], '{"otherData":{},"displayTimeUnit":"ns","traceEvents":[')).toContain('top-level keys otherData,displayTimeUnit,traceEvents');
    // Truncated files and strings with structure inside them.
    writeFileSync(file, '{"displayTimeUnit":"ns","otherData":{"a":"} ] \\" ,"},"traceEvents":[\n{"name":"x","ph":"i"');
    expect(() => checkChromeTraceFile(file)).toThrow(/end of file/);
    expect(check([named, i(1, { name: 'a "}]" \\', args: { s: '[{' } })])).toBe('');
  });

  it('keeps B/E balanced when the session does not nest: a hold outliving its query, a query never ended, an end never begun', () => {
    const tr = new Trace();
    tr.transition(MAIN, 'none', 'setup');
    tr.queryBegin(MAIN, 'q1');
    tr.read(MAIN, 'setup');
    tr.hold(MAIN, 'reader');
    tr.queryEnd(MAIN, 'q1');
    tr.release(MAIN, 'reader');
    tr.queryEnd(MAIN, 'q9');
    tr.queryBegin(MAIN, 'q2');
    tr.read(MAIN, 'setup');
    const session = tr.session();
    const b = { session, threads: tr.threads, events: tr.events, analysis: findInterleavings(session, tr.threads, tr.events) };
    expect(written(b).check.problems).toEqual([]);
    const json = load(b as Bundle);
    const es = json.traceEvents.filter((e) => e.ph === 'E');
    expect(es.find((e) => e.name === 'held (reader)')!.args).toEqual({ cut_short_by: 'query:q1' });
    expect(es.find((e) => e.name === 'query-migrate q2')!.args).toEqual({ unfinished: true });
    // The lone end is still there, as an instant.
    expect(json.traceEvents.filter((e) => e.ph === 'i' && e.args!.query === 'q9')).toHaveLength(1);
  });
});

describe('diff', () => {
  it('pairs the same interleaving on both sides as one row with the outcome change', () => {
    const d = diffSessions(unpatched, patched);
    expect(d.onlyA).toEqual([]);
    expect(d.onlyB).toEqual([]);
    expect(d.pairs).toHaveLength(1);
    const p = d.pairs[0]!;
    expect(p.a.identity).toEqual({ reader: 'main', readPoint: 'read', transition: 'setup -> active', query: 2 });
    expect(p.changed).toBe(true);
    expect(pairText(p)).toBe('setup -> active inside q2: manifested (active, no ram) -> benign (setup)');
    expect(d.summary).toContain('1 finding with another outcome, 0 the same, 0 only in A, 0 only in B');
    expect(d.a.verdict.kind).toBe('reproduced');
    expect(d.b.verdict.kind).toBe('not-reproduced');
    const raced = d.queries.find((q) => !q.same)!;
    expect(d.differing).toBe(1);
    expect(raced.a!.read).toBe('setup');
    expect(raced.a!.published).toBe('active');
    expect(raced.a!.reply).toMatchObject({ status: 'active', has_ram: false });
    expect(raced.a!.verdict!.old_libvirt).toBe('fails');
    expect(raced.b!.published).toBe('setup');
    expect(raced.b!.reply).toMatchObject({ status: 'setup' });
    expect(raced.a!.findings).toEqual(['F1']);
  });

  it('matches findings across minimig and QEMU by thread role', () => {
    const q = buildLp1994002Bundle({ target: 'qemu', sessionId: 9 });
    const d = diffSessions(unpatched, q);
    expect(d.pairs).toHaveLength(1);
    expect(d.pairs[0]!.changed).toBe(false);
    expect(pairText(d.pairs[0]!)).toBe('setup -> active inside q2: manifested (active, no ram) on both');
    expect(d.onlyA).toHaveLength(0);
    expect(d.onlyB).toHaveLength(0);
  });

  it('renders text in 80 columns and a page with two timelines', () => {
    const text = renderDiffText(unpatched, patched);
    expect(width80(text)).toEqual([]);
    expect(text).toContain('Findings only in A:');
    expect(text).toContain('\n  setup -> active inside q2: manifested (active, no ram) -> benign (setup)\n');
    expect(text).toMatch(/\*\s+2\s+setup\/active -> active no ram FAILS\s+setup\/setup -> setup/);
    const html = renderDiffHtml(unpatched, patched);
    const doc = parseHtml(html);
    expect(doc.querySelectorAll('svg.migrace-timeline')).toHaveLength(2);
    expect(doc.querySelectorAll('.crossing-arrow')).toHaveLength(2);
    const ids = [...doc.querySelectorAll('marker')].map((m) => m.id);
    expect(new Set(ids).size).toBe(2);
    expect(doc.querySelector('meta[http-equiv="Content-Security-Policy"]')!.getAttribute('content')).toContain("default-src 'none'");
    expect(doc.querySelector('table.diff tr.differs')).not.toBeNull();
    expect(doc.querySelector('#diff-findings table.pairs tr.differs td.pair')!.textContent).toBe('setup -> active inside q2: manifested (active, no ram) -> benign (setup)');
  });
});

describe('large sessions', () => {
  it('summarizes a million events and still draws the finding in full', () => {
    const b = buildLp1994002Bundle({ events: 1_000_000, target: 'qemu' });
    expect(b.events.length).toBeGreaterThan(999_000);
    const l = layoutTimeline(b.session, b.threads, b.events, b.analysis);
    expect(l.summarized).toBe(true);
    expect(l.marks.length).toBeLessThan(1000);
    expect(l.bins.length).toBeGreaterThan(0);
    expect(l.bins.reduce((s, x) => s + x.count, 0) + l.marks.length).toBe(b.events.length);
    const f = b.analysis.findings[0]!;
    const seqs = new Set(l.marks.map((m) => m.seq));
    for (const s of f.evidence) expect(seqs).toContain(s);
    // A margin of events around the window is drawn too.
    expect(seqs).toContain(f.evidence[0]! - 5);
    expect(seqs).toContain(f.evidence[f.evidence.length - 1]! + 5);
    expect(l.bands).toHaveLength(1);
    expect(l.bands[0]!.approximate).toBe(false);
    expect(l.arrows).toHaveLength(1);
    expect(l.findings[0]!.drawnInFull).toBe(true);

    const html = renderHtml(b.session, b.threads, b.events, b.analysis);
    expect(Buffer.byteLength(html)).toBeLessThan(2 * 1024 * 1024);
    const doc = parseHtml(html);
    expect(doc.querySelectorAll('svg .crossing-arrow')).toHaveLength(1);
    expect(doc.querySelector(`svg .mark[data-seq="${f.crossing[0]!.seq}"]`)).not.toBeNull();
    expect(doc.querySelectorAll('svg .bin').length).toBeGreaterThan(0);
    expect(doc.querySelectorAll('table.events tr.elided').length).toBeGreaterThan(0);

    const text = renderText(b.session, b.threads, b.events, b.analysis);
    expect(width80(text)).toEqual([]);
    expect(text.length).toBeLessThan(20_000);
    expect(text).toContain('setup -> active >>F1');
    expect(text).toMatch(/\.\.\. 99,99\d polls elided/);

  });
});

describe('odd sessions', () => {
  it('renders an empty session and an import that only has replies', () => {
    const empty = { ...unpatched, events: [], analysis: { ...unpatched.analysis, findings: [], replies: [] } };
    for (const b of [empty]) {
      expect(() => renderHtml(b.session, b.threads, b.events, b.analysis)).not.toThrow();
      expect(width80(renderText(b.session, b.threads, b.events, b.analysis))).toEqual([]);
      expect(() => JSON.parse(perfettoText(b.session, b.threads, b.events, b.analysis))).not.toThrow();
    }
    const replies = unpatched.events.filter((e) => e.kind === 'reply').map((e) => ({ ...e, t_ns: null, thread: null }));
    const imp = { ...unpatched, session: { ...unpatched.session, origin: 'import:libvirt-log' as const, target: { ...unpatched.session.target, kind: 'import' as const, binary: null } }, threads: [], events: replies, analysis: { ...unpatched.analysis, findings: [] } };
    const l = layoutTimeline(imp.session, imp.threads, imp.events, imp.analysis);
    expect(l.lanes.map((x) => x.label)).toEqual(['QMP client']);
    expect(l.clock).toBe('order');
    expect(l.verdict.kind).toBe('replies-fail');
    const text = renderText(imp.session, imp.threads, imp.events, imp.analysis);
    expect(width80(text)).toEqual([]);
    expect(text).toContain('reply active, no ram');
    expect(reproduceCommand(imp.session, null)).toBe('migrace replay --scenario lp1994002 --target qemu --qemu /path/to/qemu-system-x86_64');
  });

  it('survives a finding that cites events the session does not have, and unsorted events', () => {
    const f = unpatched.analysis.findings[0]!;
    const broken = { ...f, id: 'F2', read: { ...f.read!, seq: 9999 }, evidence: [9999, ...f.evidence] };
    const shuffled = [...unpatched.events].reverse();
    const l = layoutTimeline(unpatched.session, unpatched.threads, shuffled, { ...unpatched.analysis, findings: [f, broken] });
    expect(l.marks.map((m) => m.seq)).toEqual(unpatched.events.map((e) => e.seq));
    expect(l.bands.map((b) => b.finding)).toEqual(['F1']);
    expect(l.warnings.join(' ')).toContain('F2');
  });
});
