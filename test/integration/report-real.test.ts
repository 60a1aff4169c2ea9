import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replay } from '../../analyzer/replay.js';
import { builtinSchedule, parseSchedule, readThenTransition } from '../../analyzer/schedule.js';
import { loadBundle, register as reportCmds, writeReports, writeStoredPerfetto } from '../../cli/report.js';
import { importFiles } from '../../recorder/import/index.js';
import { minimigProfile } from '../../recorder/probes/minimig.js';
import { minimigDir, prepareMinimig } from '../../recorder/targets/minimig.js';
import { renderDiffText, type SessionDiff } from '../../reports/diff.js';
import { renderHtml } from '../../reports/html.js';
import type { ChromeTraceEvent } from '../../reports/perfetto.js';
import { renderSessionSvg } from '../../reports/svg.js';
import { renderMarkdown, renderText } from '../../reports/text.js';
import { layoutTimeline } from '../../reports/timeline.js';
import type { SessionBundle } from '../../analyzer/compare.js';
import { checkChromeTraceFile, perfettoText } from '../helpers/chrome-trace.js';
import { tempStore } from '../helpers/db.js';
import { runCommand } from '../helpers/cli.js';
import { expectNoSurvivors } from '../helpers/processes.js';

// The reports of the analyzer issue's replays, checked against their events.
let db: ReturnType<typeof tempStore>;
let unpatched: SessionBundle;
let patched: SessionBundle;
let imported: SessionBundle;
let infeasible: SessionBundle;
const bqlStep = readThenTransition('bql-step', 'active', 'completed', "the step into completed, taken under minimig's big lock");

/** A --schedule replay that cannot happen: with --bql-completion the held writer owns the lock the reader waits for. */
async function replayInfeasible(): Promise<number> {
  const target = await prepareMinimig({ bqlCompletion: true });
  const r = await replay({
    store: db.store, target, profile: minimigProfile(minimigDir(), target.binary, false), schedule: bqlStep, label: 'bql step',
    meta: { command: ['migrace', 'replay', '--schedule', 'bql-step.json', '--target', 'minimig', '--bql-completion'] },
  });
  expect(r.outcome, r.error ?? '').toBe('infeasible');
  return r.sessionId;
}

async function replayMinimig(isPatched: boolean): Promise<number> {
  const target = await prepareMinimig({ patched: isPatched });
  const r = await replay({ store: db.store, target, profile: minimigProfile(minimigDir(), target.binary, isPatched), schedule: builtinSchedule('lp1994002'), label: `lp1994002 ${isPatched}` });
  expect(r.state, r.error ?? '').toBe('complete');
  return r.sessionId;
}

beforeAll(async () => {
  db = tempStore();
  unpatched = loadBundle(db.store, await replayMinimig(false));
  patched = loadBundle(db.store, await replayMinimig(true));
  const [id] = await importFiles(db.store, 'gdb', [join(process.cwd(), 'samples/transcripts/minimig-unpatched.gdb.txt')], { label: 'transcript' });
  imported = loadBundle(db.store, id);
  infeasible = loadBundle(db.store, await replayInfeasible());
  expectNoSurvivors();
}, 120_000);
afterAll(() => db.cleanup());

const layoutOf = (b: SessionBundle) => layoutTimeline(b.session, b.threads, b.events, b.analysis);

describe('reports of a real replay', () => {
  it('lays out one lane per thread, the window from the read to the publish, and the arrow from the writer release', () => {
    const l = layoutOf(unpatched);
    const threadLanes = l.lanes.filter((x) => x.kind === 'thread');
    expect(threadLanes.map((x) => x.name).sort()).toEqual(unpatched.threads.map((t) => t.name).sort());
    for (const lane of threadLanes) expect(lane.label).toBe(`${lane.name} (LWP ${unpatched.threads.find((t) => t.tid === lane.tid)!.lwp})`);
    const f = unpatched.analysis!.findings[0];
    expect(f.class).toBe('manifested');
    const release = unpatched.events.find((e) => e.kind === 'release' && e.data.role === 'writer')!;
    expect(l.bands).toHaveLength(1);
    expect(l.bands[0]).toMatchObject({ fromSeq: f.read!.seq, toSeq: f.publish!.seq });
    expect(l.arrows).toHaveLength(1);
    expect(l.arrows[0]).toMatchObject({ fromSeq: release.seq, toSeq: f.publish!.seq });
    // Every event has a mark, labelled with state names.
    expect(l.marks).toHaveLength(unpatched.events.length);
    const label = (seq: number) => l.marks.find((m) => m.seq === seq)!.label;
    expect(label(f.read!.seq)).toBe('read setup');
    expect(label(f.publish!.seq)).toBe('publish active');
    expect(label(f.crossing[0].seq)).toBe('setup -> active');
    expect(label(f.reply!.reply_seq!)).toBe('reply active, no ram');
  });

  it('renders the four outputs consistently with the events', () => {
    const { session, threads, events, analysis } = unpatched;
    const text = renderText(session, threads, events, analysis);
    expect(text.split('\n').every((line) => [...line].length <= 80)).toBe(true);
    expect(text).toContain('reply active, no ram');
    expect(text).toContain('migrace replay --scenario lp1994002 --target minimig');
    expect(renderMarkdown(session, threads, events, analysis)).toContain('```');
    const svg = renderSessionSvg(session, threads, events, analysis);
    expect(svg.match(/class="lane lane-/g)?.length).toBe(threads.length + 1);
    expect(svg).toContain('crossing-arrow');
    const html = renderHtml(session, threads, events, analysis);
    expect(html).toMatch(/http-equiv="Content-Security-Policy" content="default-src (&#39;|')none/);
    expect(html).not.toMatch(/https?:\/\/(?!www\.w3\.org)/);
    const trace = JSON.parse(perfettoText(session, threads, events, analysis)) as { traceEvents: ChromeTraceEvent[] };
    const names = trace.traceEvents.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => (e.args as { name: string }).name);
    for (const t of threads) expect(names.some((n) => n.startsWith(t.name!))).toBe(true);
    const out = trace.traceEvents.filter((e) => (e as { flow_out?: boolean }).flow_out).map((e) => (e as { bind_id?: number }).bind_id);
    const inn = trace.traceEvents.filter((e) => (e as { flow_in?: boolean }).flow_in).map((e) => (e as { bind_id?: number }).bind_id);
    expect(out.length).toBe(1);
    expect(inn).toEqual(out);
  });

  it('streams the same Perfetto trace from the store as from the loaded session, for every kind of session here', () => {
    for (const b of [unpatched, patched, imported, infeasible]) {
      const parts: string[] = [];
      writeStoredPerfetto(db.store, b.session.id, (c) => parts.push(c));
      expect(parts.join(''), `session ${b.session.id} (${b.session.label})`).toBe(perfettoText(b.session, b.threads, b.events, b.analysis));
    }
    // The replays' findings give the traces their flows: the comparison covers them.
    expect(unpatched.analysis!.findings.length + patched.analysis!.findings.length).toBeGreaterThanOrEqual(2);
  });

  it('report --perfetto alone (streamed) and with --html (from the loaded session) write the same trace', async () => {
    const out = mkdtempSync(join(tmpdir(), 'migrace-perfetto-'));
    try {
      const sid = String(unpatched.session.id);
      const alone = await runCommand(reportCmds, ['report', sid, '--perfetto', join(out, 'a.json'), '--db', db.path]);
      const both = await runCommand(reportCmds, ['report', sid, '--perfetto', join(out, 'b.json'), '--html', join(out, 'b.html'), '--db', db.path]);
      expect([alone.code, both.code], alone.err + both.err).toEqual([undefined, undefined]);
      const a = readFileSync(join(out, 'a.json'), 'utf8');
      expect(a).toBe(perfettoText(unpatched.session, unpatched.threads, unpatched.events, unpatched.analysis));
      expect(readFileSync(join(out, 'b.json'), 'utf8')).toBe(a);
      expect(readFileSync(join(out, 'b.html'), 'utf8')).toMatch(/^<!DOCTYPE html>/i);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('diffs the unpatched replay against the patched one', () => {
    const text = renderDiffText(unpatched, patched);
    expect(patched.analysis!.findings.map((f) => f.class)).toEqual(['benign']);
    // The same interleaving with another outcome: one paired row, nothing left apart.
    expect(text).toContain('\n  setup -> active inside q1: manifested (active, no ram) -> benign (setup)\n');
    expect(text).toMatch(/Findings only in A:\n {2}\(none\)\nFindings only in B:\n {2}\(none\)/);
  });

  it('diff --json: the same pairing as data', async () => {
    const r = await runCommand(reportCmds, ['diff', String(unpatched.session.id), String(patched.session.id), '--json', '--db', db.path]);
    expect(r.code, r.err).toBeUndefined();
    const d = JSON.parse(r.out) as SessionDiff;
    expect(d.pairs.map((p) => [p.a.identity, p.a.outcome.class, p.b.outcome.class, p.changed])).toEqual([
      [{ reader: 'main', readPoint: 'read', transition: 'setup -> active', query: 1 }, 'manifested', 'benign', true],
    ]);
    expect([d.onlyA, d.onlyB]).toEqual([[], []]);
    expect([d.a.verdict.kind, d.b.verdict.kind]).toEqual(['reproduced', 'not-reproduced']);
  });

  it("writes the demo's files, with the paired row in diff.txt and diff.html", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'migrace-report-real-'));
    try {
      const files = await writeReports(db.store, unpatched.session.id, patched.session.id, dir);
      expect(files.map((f) => f.slice(dir.length + 1))).toEqual(['report.html', 'report.svg', 'report.md', 'report.perfetto.json', 'diff.html', 'diff.txt']);
      const row = 'setup -> active inside q1: manifested (active, no ram) -> benign (setup)';
      expect(readFileSync(join(dir, 'diff.txt'), 'utf8')).toContain(`\n  ${row}\n`);
      const trace = checkChromeTraceFile(join(dir, 'report.perfetto.json'));
      expect(trace.problems).toEqual([]);
      expect(trace.seqs).toBe(unpatched.events.length);
      expect(trace.flows).toBe(1);
      expect(readFileSync(join(dir, 'diff.html'), 'utf8')).toContain(`<td class="pair">setup -&gt; active inside q1: manifested (active, no ram) -&gt; benign (setup)</td>`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports an infeasible --schedule replay: the verdict with the lock-wait stack, the schedule to save, the exact command', () => {
    const { session, threads, events, analysis } = infeasible;
    const text = renderText(session, threads, events, analysis);
    expect(text.split('\n').every((line) => [...line].length <= 80)).toBe(true);
    // The verdict paragraph, unwrapped.
    expect(text.replace(/\n {2}(?=\S)/g, ' ')).toMatch(/^Verdict: Infeasible: the schedule cannot happen on this build: reader .* cannot arrive: thread 1 "minimig" waits in /m);
    const stack = /^The reader's stack, waiting in (\S+):\n((?: {2}#\d+ .*\n)+)/m.exec(text);
    expect(stack, text).not.toBeNull();
    expect(stack![2]).toMatch(/pthread_mutex_lock|lll_lock_wait/);
    const json = /^```json\n([\s\S]*?)\n```$/m.exec(text)![1]!;
    expect(parseSchedule(JSON.parse(json), 'report')).toEqual(bqlStep);
    expect(text).toContain('save as schedule.json, then:\n  migrace replay --schedule schedule.json --target minimig --bql-completion\n');
    const html = renderHtml(session, threads, events, analysis);
    expect(html).toContain('<p class="verdict infeasible">Infeasible: ');
    expect(html).toContain('<pre class="stack">#0 ');
  });

  it('reports an imported GDB transcript (no clock) with the same structure', () => {
    const l = layoutOf(imported);
    expect(l.clock).not.toBe('time');
    const f = imported.analysis!.findings.find((x) => x.class === 'manifested')!;
    expect(f).toBeDefined();
    expect(l.bands.length).toBeGreaterThan(0);
    expect(l.arrows.length).toBeGreaterThan(0);
    expect(l.lanes.filter((x) => x.kind === 'thread').map((x) => x.name)).toEqual(expect.arrayContaining(['minimig', 'live_migration']));
    const html = renderHtml(imported.session, imported.threads, imported.events, imported.analysis);
    expect(html).toContain('Reproduced LP#1994002');
  });
});
