import Database from 'better-sqlite3';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { buildOracle } from '../../analyzer/hunt-oracle.js';
import { loadHunt, matrixKey, type HuntData } from '../../analyzer/hunt-record.js';
import { staticReadPoints } from '../../analyzer/hunt-readpoints.js';
import { minimigProfile } from '../../recorder/probes/minimig.js';
import { minimigDir } from '../../recorder/targets/minimig.js';
import { cellText, renderHuntHtml, renderHuntMarkdown, renderHuntText, replayCommand } from '../../reports/hunt.js';
import { SCHEMA_VERSION, TraceStore } from '../../trace/store.js';
import { tempStore } from '../helpers/db.js';

/*
 * A hunt in the store and back, and its three renderings. The data is what
 * a real minimig hunt learns (captured replies), with cells of every class;
 * text that came from the target (an error-desc, a lock stack) carries
 * markup and control characters.
 */

const replies = JSON.parse(readFileSync('test/fixtures/hunt/minimig-replies.json', 'utf8')) as { baselines: Record<string, unknown[]> };
const EVIL = 'desc </td><script>alert(1)</script> \u001b[31m | `x` **y**';

function data(): HuntData {
  const profile = minimigProfile(minimigDir(), '/work/minimig', false);
  const col = (old: string, nu: string, tid: number) => ({ key: `${old}->${nu}`, old, new: nu, scenario: 'precopy', scenarios: ['precopy'], thread: { tid, name: null }, after: 0 });
  return {
    format: 'migrace-hunt', version: 1, kind: 'minimig', build_id: 'abc',
    options: { scenarios: ['precopy', 'postcopy'], dynamic: false, queries: 3, cell_timeout_ms: 60_000, invocation: { target: 'minimig', patched: false, bql_completion: true } },
    baselines: [
      { scenario: 'precopy', description: 'a plain precopy migration', status: 'ok', reason: null, session_id: null, transitions: [{ old: 'setup', new: 'active', thread: { tid: 2, name: 'live_migration' }, after: 0 }], replies: 9, ms: 1 },
      { scenario: 'postcopy', description: 'postcopy', status: 'skipped', reason: "migrate-set-capabilities: Parameter 'capability' does not accept value 'postcopy-ram'", session_id: null, transitions: [], replies: 0, ms: 1 },
    ],
    oracle: buildOracle(Object.values(replies.baselines).flat()),
    columns: [col('none', 'setup', 1), col('setup', 'active', 2), col('active', 'completed', 2)],
    rows: staticReadPoints(profile),
    cross_check: [], trace: null, timing: { baselines_ms: 1000, cells_ms: 4000, total_ms: 5200 },
  };
}

const cell = (note: string | null, reason: string | null, extra: Record<string, unknown> = {}) => ({
  note, reason, status: null, fields: [], reply: null, schedule: null, schedule_file: null, ms: 10, ...extra,
});

let cleanup: (() => void) | null = null;
afterEach(() => {
  cleanup?.();
  cleanup = null;
});

function stored() {
  const db = tempStore();
  cleanup = db.cleanup;
  const id = db.store.createHunt({ label: 'hunt on minimig', target: { kind: 'minimig', binary: '/work/minimig', build_id: null, qemu_version: null, variant: 'unpatched', status_table: '4.2' }, profile: {}, data: data() });
  db.store.putHuntCell(id, { row: 'read', col: 'none->setup', class: 'infeasible', session_id: null, data: cell('the writer is the query thread', 'thread 1 serves query-migrate') });
  db.store.putHuntCell(id, { row: 'read', col: 'setup->active', class: 'broken', session_id: null, data: cell('active without ram; old libvirt fails', null, { reply: { status: 'active' }, schedule_file: '/tmp/it\'s here/cell.json' }) });
  db.store.putHuntCell(id, { row: 'read', col: 'active->completed', class: 'infeasible', session_id: null, data: cell('the query waits in bql_lock while the writer is held', `thread 1 waits in bql_lock (${EVIL})`) });
  db.store.putHuntCell(id, { row: 'read', col: 'control', class: 'consistent', session_id: null, data: cell(null, null) });
  return { ...db, id };
}

describe('a hunt in the store', () => {
  it('comes back as it went in, cells by row and column', () => {
    const { store, id } = stored();
    store.updateHunt(id, { state: 'complete' });
    const v = loadHunt(store, id);
    expect(v.state).toBe('complete');
    expect(v.data.columns.map((c) => c.key)).toEqual(['none->setup', 'setup->active', 'active->completed']);
    expect(matrixKey(v)).toEqual([
      'read x none->setup: infeasible (the writer is the query thread)',
      'read x setup->active: broken (active without ram; old libvirt fails)',
      'read x active->completed: infeasible (the query waits in bql_lock while the writer is held)',
      'read x control: consistent',
    ]);
  });

  it('a hunt left running by a process that is gone reads as aborted, its cells kept', () => {
    const { store, id, path } = stored();
    store.close();
    const raw = new Database(path);
    raw.prepare('UPDATE hunts SET writer_pid = 2147483646 WHERE id = ?').run(id);
    raw.close();
    const again = TraceStore.open(path, { readonly: true });
    try {
      const v = loadHunt(again, id);
      expect(v.state).toBe('aborted');
      expect(v.error).toMatch(/the hunting process \(pid 2147483646\) ended without closing the hunt/);
      expect(v.cells).toHaveLength(4);
    } finally {
      again.close();
    }
  });

  it('a database from before the hunt tables gets them on its next read-write open', () => {
    const db = tempStore();
    cleanup = db.cleanup;
    db.store.close();
    const raw = new Database(db.path);
    raw.exec('DROP TABLE hunt_cells; DROP TABLE hunts');
    raw.pragma('user_version = 2');
    raw.close();
    expect(() => TraceStore.open(db.path, { readonly: true })).toThrow(/older trace schema \(2\)/);
    const s = TraceStore.open(db.path);
    expect(s.hunts()).toEqual([]);
    s.close();
    expect(SCHEMA_VERSION).toBe(3);
  });

  it('names a hunt that is not there', () => {
    const { store } = stored();
    expect(() => store.hunt(99)).toThrow(/no hunt 99 in .* \(see "migrace hunts"\)/);
  });
});

describe('the matrix rendered', () => {
  it('text: a row per read point, a column per transition and the control, skipped scenarios with their reason', () => {
    const { store, id } = stored();
    const t = renderHuntText(loadHunt(store, id));
    expect(t).toMatch(/read point\s+none->setup\s+setup->active\s+active->completed\s+control/);
    expect(t).toContain("postcopy: skipped: migrate-set-capabilities: Parameter 'capability' does not accept value 'postcopy-ram'");
    expect(t).toContain("replay: migrace replay --schedule '/tmp/it'\\''s here/cell.json' --target minimig --bql-completion");
    expect(t).not.toMatch(/\u001b/);
    expect(cellText(undefined)).toBe('not run');
  });

  it('the pasted replay command names the stored path, printable: control characters as $\'...\' escapes', () => {
    const { store, id } = stored();
    const view = loadHunt(store, id);
    const cell = view.cells.find((c) => c.data.schedule_file)!;
    cell.data.schedule_file = '/tmp/a\u001b[31m b/cell.json';
    const cmd = replayCommand(view, cell)!;
    expect(cmd).toContain(String.raw`--schedule $'/tmp/a\x1b[31m b/cell.json'`);
    expect(cmd).not.toMatch(/[\u001b\ufffd]/);
    // Markdown keeps a backtick of the path: the code span is longer than any run of backticks inside.
    cell.data.schedule_file = '/tmp/a`b/cell.json';
    expect(renderHuntMarkdown(view)).toContain("  - ``replay: migrace replay --schedule '/tmp/a`b/cell.json' --target minimig");
  });

  it('Markdown: one table cell per read point x transition, target text escaped', () => {
    const { store, id } = stored();
    const md = renderHuntMarkdown(loadHunt(store, id));
    const rows = md.split('\n').filter((l) => l.startsWith('| `read`'));
    expect(rows).toHaveLength(1);
    expect(rows[0].split(' | ')).toHaveLength(1 + 3 + 1);
    expect(rows[0]).toContain('**broken: active without ram; old libvirt fails**');
    expect(md).toContain('\\<script\\>alert(1)\\</script\\>');
    expect(md).toContain('\\| \\`x\\` \\*\\*y\\*\\*');
  });

  it('HTML: cells carry their class, timelines link where the caller says, markup from the target stays text', () => {
    const { store, id } = stored();
    const v = loadHunt(store, id);
    v.cells[0].session_id = 7;
    const html = renderHuntHtml(v, { timelineHref: (sid) => `cell-${sid}.html` });
    expect(html.match(/<td class="(broken|consistent|infeasible|unreachable|timeout|error|not-run)"/g)).toHaveLength(4);
    expect(html).toContain('<a href="cell-7.html">');
    expect(html).not.toContain('<script>alert(1)</script>');
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).toMatch(/Content-Security-Policy" content="default-src &#39;none&#39;/);
    expect(html).not.toMatch(/https?:\/\//);
  });
});
