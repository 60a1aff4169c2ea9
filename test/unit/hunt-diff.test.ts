import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { compareHunts, huntCellComparables } from '../../analyzer/compare.js';
import { buildOracle, judgeReplyShape } from '../../analyzer/hunt-oracle.js';
import { loadHunt, type CellClass, type HuntData, type HuntView } from '../../analyzer/hunt-record.js';
import { staticReadPoints } from '../../analyzer/hunt-readpoints.js';
import { minimigProfile } from '../../recorder/probes/minimig.js';
import { minimigDir } from '../../recorder/targets/minimig.js';
import { changedCellText, diffHunts, renderHuntDiffHtml, renderHuntDiffText } from '../../reports/hunt-diff.js';
import { tempStore } from '../helpers/db.js';

/*
 * Two stored hunts paired cell by cell (analyzer/compare.ts compareHunts)
 * and the diff rendered (reports/hunt-diff.ts). Hunt A is the cells a real
 * `migrace hunt --dynamic` on unpatched minimig gave (the forced replies of
 * test/fixtures/hunt/minimig-replies.json, with their classes and notes); B
 * is a hunt of the patched build as test/integration/hunt-minimig.test.ts
 * finds it: no status re-read, precopy only, and LP#1994002's cell
 * consistent (its setup reply judged here by the same oracle).
 */

interface Forced { row: string; col: string; class: CellClass; note: string | null; reply: unknown }
const fixture = JSON.parse(readFileSync('test/fixtures/hunt/minimig-replies.json', 'utf8')) as { baselines: Record<string, unknown[]>; forced: Forced[] };
const oracle = buildOracle(Object.values(fixture.baselines).flat());
const LP_NOTE = 'active without expected-downtime, ram, setup-time, total-time; old libvirt fails: "migration was active, but no RAM info was set"';
const EVIL = 'desc </td><script>alert(1)</script> \u001b[31m\u202e';

function readPoint(name: string) {
  const [tpl] = staticReadPoints(minimigProfile(minimigDir(), '/work/minimig', false));
  return { ...tpl!, name };
}

function column(key: string) {
  const [old, nu] = key.split('->');
  return { key, old: old!, new: nu!, scenario: 'precopy', scenarios: ['precopy'], thread: { tid: 2, name: 'live_migration' }, after: 0 };
}

function data(rows: string[], columns: string[]): HuntData {
  return {
    format: 'migrace-hunt', version: 1, kind: 'minimig', build_id: null,
    options: { scenarios: ['precopy'], dynamic: false, queries: 3, cell_timeout_ms: 90_000, invocation: null },
    baselines: [], oracle, columns: columns.map(column), rows: rows.map(readPoint), cross_check: [], trace: null, timing: null,
  };
}

interface CellSpec { row: string; col: string; class: CellClass; note: string | null; reply?: unknown }

let db: ReturnType<typeof tempStore> | null = null;
afterEach(() => {
  db?.cleanup();
  db = null;
});

/** A hunt written to the test's store (one per test, so its hunts number 1, 2, ...) and read back with loadHunt, as `migrace diff --hunt` reads it. */
function storedHunt(label: string, variant: 'unpatched' | 'patched', rows: string[], columns: string[], cells: CellSpec[]): HuntView {
  db ??= tempStore();
  const id = db.store.createHunt({
    label, target: { kind: 'minimig', binary: `/work/${variant === 'patched' ? 'minimig-patched' : 'minimig'}`, build_id: null, qemu_version: null, variant, status_table: '4.2' },
    profile: {}, data: data(rows, columns),
  });
  const target = db.store.hunt(id).target;
  for (const c of cells) {
    // Every cell is a replay session of its own, as in a real hunt.
    const session = db.store.createSession({ label: `hunt ${id} ${c.row} x ${c.col}`, origin: 'replay', target, profile: null });
    const judged = c.reply !== undefined && c.reply !== null ? judgeReplyShape(oracle, c.reply) : null;
    db.store.putHuntCell(id, {
      row: c.row, col: c.col, class: c.class, session_id: session,
      data: { note: c.note, reason: null, status: judged?.status ?? null, fields: judged?.fields ?? [], reply: c.reply ?? null, schedule: null, schedule_file: null, ms: 900 },
    });
  }
  db.store.updateHunt(id, { state: 'complete' });
  return loadHunt(db.store, id);
}

const A_ROWS = ['read', 'populate_time_info.61', 'fill_source_migration_info.236'];
const A_COLS = ['setup->active', 'active->completed', 'active->failed', 'active->pre-switchover', 'pre-switchover->device', 'device->completed', 'cancelling->cancelled'];

function unpatched(): HuntView {
  return storedHunt('hunt on minimig', 'unpatched', A_ROWS, A_COLS, fixture.forced);
}

const forced = (row: string, col: string): CellSpec => ({ ...fixture.forced.find((f) => f.row === row && f.col === col)! });

/** The patched build: two read points, precopy's transitions, the LP#1994002 cell consistent. */
function patchedCells(): CellSpec[] {
  const setup = judgeReplyShape(oracle, { status: 'setup' });
  const cells: CellSpec[] = [
    { row: 'read', col: 'none->setup', class: 'infeasible', note: 'the writer is the query thread' },
    { row: 'read', col: 'setup->active', class: setup.class, note: setup.note, reply: { status: 'setup' } },
    forced('read', 'active->completed'),
    forced('read', 'control'),
    { row: 'populate_time_info.61', col: 'none->setup', class: 'infeasible', note: 'the writer is the query thread' },
    { row: 'populate_time_info.61', col: 'setup->active', class: 'unreachable', note: 'the read point was not hit with the old state' },
    forced('populate_time_info.61', 'active->completed'),
    forced('populate_time_info.61', 'control'),
  ];
  return cells;
}

function patched(rows = ['read', 'populate_time_info.61'], cols = ['none->setup', 'setup->active', 'active->completed'], cells = patchedCells()): HuntView {
  return storedHunt('hunt on minimig-patched', 'patched', rows, cols, cells);
}

describe('compareHunts', () => {
  it('pairs the cells of an unpatched and a patched hunt by read point and transition; what one hunt has alone stays apart', () => {
    const a = unpatched();
    const b = patched();
    const c = compareHunts(a, b);
    expect(c.cells.pairs.map((p) => `${p.a.identity.readPoint} x ${p.a.identity.transition}: ${p.a.outcome.class} -> ${p.b.outcome.class}${p.changed ? ' *' : ''}`)).toEqual([
      'read x setup -> active: broken -> consistent *',
      'read x active -> completed: consistent -> consistent',
      'read x control: consistent -> consistent',
      'populate_time_info.61 x active -> completed: broken -> broken',
      'populate_time_info.61 x control: consistent -> consistent',
    ]);
    const lp = c.cells.pairs[0]!;
    expect(lp.a.identity).toEqual({ reader: 'main', readPoint: 'read', transition: 'setup -> active', query: null });
    expect(lp.a.outcome).toEqual({ class: 'broken', detail: LP_NOTE, read: null, published: null, reply: { status: 'active', has_ram: false }, fails: true });
    expect(lp.b.outcome).toEqual({ class: 'consistent', detail: null, read: null, published: null, reply: { status: 'setup', has_ram: false }, fails: false });
    expect(lp.a.item).toBe(a.cells.find((x) => x.row === 'read' && x.col === 'setup->active'));
    expect(c.readPoints).toEqual({ onlyA: ['fill_source_migration_info.236'], onlyB: [] });
    expect(c.transitions).toEqual({
      onlyA: ['active -> failed', 'active -> pre-switchover', 'pre-switchover -> device', 'device -> completed', 'cancelling -> cancelled'],
      onlyB: ['none -> setup'],
    });
    expect(c.cells.onlyA).toHaveLength(a.cells.length - 5);
    expect(c.cells.onlyB.map((x) => `${x.identity.readPoint} x ${x.identity.transition}`)).toEqual([
      'read x none -> setup', 'populate_time_info.61 x none -> setup', 'populate_time_info.61 x setup -> active',
    ]);
  });

  it('goes by names, not positions: a build whose discovery lists the read points and transitions in another order pairs the same cells', () => {
    const b = patched(['populate_time_info.61', 'read'], ['active->completed', 'setup->active', 'none->setup'], patchedCells().reverse());
    const pairs = compareHunts(unpatched(), b).cells.pairs.map((p) => `${p.a.item.row} x ${p.a.item.col} = ${p.b.item.row} x ${p.b.item.col}${p.changed ? ' *' : ''}`);
    expect(pairs).toEqual([
      'read x setup->active = read x setup->active *',
      'read x active->completed = read x active->completed',
      'read x control = read x control',
      'populate_time_info.61 x active->completed = populate_time_info.61 x active->completed',
      'populate_time_info.61 x control = populate_time_info.61 x control',
    ]);
    // B's own order is its matrix order, not the store's (which sorts by name).
    expect(huntCellComparables(b).map((x) => `${x.item.row} x ${x.item.col}`).slice(0, 3)).toEqual([
      'populate_time_info.61 x active->completed', 'populate_time_info.61 x setup->active', 'populate_time_info.61 x none->setup',
    ]);
  });

  it('a shape that changed is a change; the same outcome in another session is not', () => {
    const base = patchedCells();
    const other = base.map((c) => (c.row === 'populate_time_info.61' && c.col === 'active->completed'
      ? { ...c, note: 'completed without downtime' }
      : c));
    const c = compareHunts(patched(undefined, undefined, base), patched(undefined, undefined, other));
    expect(c.cells.pairs.filter((p) => p.changed).map((p) => `${p.a.identity.readPoint} x ${p.a.identity.transition}: ${p.a.outcome.detail} -> ${p.b.outcome.detail}`)).toEqual([
      'populate_time_info.61 x active -> completed: completed without downtime; completed with expected-downtime -> completed without downtime',
    ]);
    expect(c.cells.pairs).toHaveLength(8);
    expect([c.cells.onlyA, c.cells.onlyB, c.readPoints.onlyA, c.transitions.onlyB]).toEqual([[], [], [], []]);
  });
});

describe('diffHunts and its renderings', () => {
  it('says why each unpaired cell is unpaired: the other hunt lacks its read point, its transition, or did not run it', () => {
    const a = unpatched();
    const b = patched();
    const d = diffHunts(a, b);
    expect(d.changed.map(changedCellText)).toEqual([`read x setup -> active: broken (${LP_NOTE}) -> consistent (setup)`]);
    const sessionOf = (v: HuntView) => v.cells.find((c) => c.row === 'read' && c.col === 'setup->active')!.session_id;
    expect([d.changed[0]!.a.session_id, d.changed[0]!.b.session_id]).toEqual([sessionOf(a), sessionOf(b)]);
    expect(d.unchanged).toHaveLength(4);
    const because = (cells: typeof d.only_a.cells) => Object.fromEntries(['read point', 'transition', 'not run'].map((k) => [k, cells.filter((u) => u.because === k).length]));
    expect(because(d.only_a.cells)).toEqual({ 'read point': 8, transition: 10, 'not run': 0 });
    expect(d.only_b.cells.map((u) => `${u.read_point} x ${u.transition}: ${u.because}`)).toEqual([
      'read x none -> setup: transition', 'populate_time_info.61 x none -> setup: transition',
      // A has populate_time_info.61 and setup -> active, but the hunt the fixture comes from stored no such cell.
      'populate_time_info.61 x setup -> active: not run',
    ]);
    expect(d.summary).toBe('1 of 5 paired cells changed, 4 the same; 18 cells only in A, 3 only in B.');
  });

  it('text: one row per changed cell, wrapped at the width, the unchanged count, what only one hunt has', () => {
    const d = diffHunts(unpatched(), patched());
    const text = renderHuntDiffText(d, { columns: 80 });
    expect(text.split('\n').every((l) => [...l].length <= 80)).toBe(true);
    // The row, unwrapped: continuation lines are indented five spaces.
    const unwrapped = text.replace(/\n {5}(?=\S)/g, ' ');
    expect(unwrapped).toContain(`\n  read x setup -> active: broken (${LP_NOTE}) -> consistent (setup)\nCells with the same outcome in both: 4\n`);
    expect(text).toMatch(/^migrace diff: A = hunt 1 "hunt on minimig" vs B = hunt 2 "hunt on\n {2}minimig-patched"$/m);
    expect(text).toContain('\nOnly in A (hunt 1):\n  read points hunt 2 does not have: fill_source_migration_info.236\n');
    // A list wraps between its items, never inside "old -> new".
    expect(text).toContain('\n  transitions hunt 2 did not learn: active -> failed, active -> pre-switchover,\n     pre-switchover -> device, device -> completed, cancelling -> cancelled\n');
    expect(text).toContain('\n    populate_time_info.61 x setup -> active: unreachable (the read point was\n       not hit with the old state)\n');
    expect(text).toContain('  3 cells, 1 of them where hunt 1 did not run it:\n');
    // Two hunts that agree list nothing.
    const same = renderHuntDiffText(diffHunts(patched(), patched()));
    expect(same).toContain('\nThe hunts agree on every one of their 8 cells.\n\nCells whose outcome changed (read point x transition: A -> B):\n  (none)\nCells with the same outcome in both: 8\nOnly in A (hunt 3):\n  (none)\nOnly in B (hunt 4):\n  (none)\n');
  });

  it('trace text reaches neither a terminal raw nor a page as markup', () => {
    const cells = patchedCells().map((c) => (c.col === 'none->setup' && c.row === 'read' ? { ...c, note: EVIL } : c));
    const d = diffHunts(patched(), storedHunt(`evil ${EVIL}`, 'patched', ['read', 'populate_time_info.61'], ['none->setup', 'setup->active', 'active->completed'], cells));
    expect(d.changed).toHaveLength(1);
    const text = renderHuntDiffText(d);
    // eslint-disable-next-line no-control-regex
    expect(text).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u202e]/);
    const html = renderHuntDiffHtml(d);
    expect(html).not.toContain('<script>alert(1)</script>');
    expect(html).toContain('&lt;/td&gt;&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).not.toMatch(/[\u001b\u202e]/);
  });

  it('HTML: self-contained, each changed cell a row with both outcomes in their class colours', () => {
    const html = renderHuntDiffHtml(diffHunts(unpatched(), patched()));
    expect(html).toMatch(/Content-Security-Policy" content="default-src &#39;none&#39;/);
    expect(html).not.toMatch(/https?:\/\/|<script/);
    const changed = html.slice(html.indexOf('<h2>Cells whose outcome changed'), html.indexOf('<h2>Cells with the same outcome'));
    expect(changed.match(/<tr data-row=/g)).toHaveLength(1);
    expect(changed).toMatch(/<tr data-row="read" data-col="setup -&gt; active"><td class="mono">read<\/td><td class="mono">setup -&gt; active<\/td><td class="broken"><span class="cls">broken<\/span> <span class="muted">\(session \d+\)<\/span><span class="note">active without expected-downtime, ram, setup-time, total-time; old libvirt fails: &quot;migration was active, but no RAM info was set&quot;<\/span><\/td><td class="consistent"><span class="cls">consistent<\/span> <span class="muted">\(session \d+\)<\/span><span class="note">setup<\/span><\/td><\/tr>/);
    expect(html).toContain('<h2>Cells with the same outcome in both: 4</h2>');
    expect(html).toContain('<td>hunt 1 did not run it</td>');
  });
});
