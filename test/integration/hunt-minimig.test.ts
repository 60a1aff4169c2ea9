import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { hunt } from '../../analyzer/hunt.js';
import { judgeReplyShape } from '../../analyzer/hunt-oracle.js';
import { loadHunt, matrixKey, type HuntView } from '../../analyzer/hunt-record.js';
import { register as huntCmds } from '../../cli/hunt.js';
import { register as replayCmd } from '../../cli/replay.js';
import { register as reportCmds } from '../../cli/report.js';
import { minimigProfile } from '../../recorder/probes/minimig.js';
import { discoverProfile } from '../../recorder/probes/discover.js';
import { minimigBinary, minimigDir, prepareMinimig } from '../../recorder/targets/minimig.js';
import { renderHuntMatrix } from '../../reports/hunt.js';
import type { HuntDiff } from '../../reports/hunt-diff.js';
import { TraceStore } from '../../trace/store.js';
import { runCommand } from '../helpers/cli.js';
import { alive, descendants, expectNoSurvivors } from '../helpers/processes.js';
import { sleep } from '../../trace/async.js';

/*
 * migrace hunt on the bundled target, with real gdb: no built-in scenario,
 * no offset written anywhere. The cells docs/qemu-facts.md establishes (LP#1994002 on
 * the unpatched build and not on the patched one; the big lock of
 * --bql-completion) are asserted; every matrix is printed. The unpatched
 * and the patched hunts share one database, where `diff --hunt` compares
 * them cell by cell.
 */

afterEach(() => expectNoSurvivors());

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDb(): string {
  const dir = mkdtempSync(join(tmpdir(), 'migrace-hunt-test-'));
  dirs.push(dir);
  return join(dir, 'hunt.db');
}

/** The unpatched hunt and the two patched ones, for `diff --hunt` after them. */
const shared = tempDb();

async function cliHunt(db: string, args: string[]): Promise<{ view: HuntView; out: string; err: string; code: number | string | undefined }> {
  const r = await runCommand(huntCmds, ['hunt', '--db', db, ...args]);
  const store = TraceStore.open(db, { readonly: true });
  try {
    const view = loadHunt(store, store.hunts().at(-1)!.id);
    console.log(`${view.label} (${args.join(' ')}):\n${renderHuntMatrix(view)}`);
    return { view, ...r };
  } finally {
    store.close();
  }
}

const cellOf = (v: HuntView, row: string, col: string) => v.cells.find((c) => c.row === row && c.col === col);

/** Discovery's read points of a minimig build, by name: gcc versions place them at other offsets, so no test writes one. */
async function discoveredReadPoints(patched: boolean): Promise<string[]> {
  return (await discoverProfile(minimigBinary(patched))).profile.read_points.map((r) => r.name);
}

/** Replay a broken cell's schedule file 5 times: each run's reply judged by the hunt's oracle gives the cell again. */
async function replayFiveTimes(v: HuntView, row: string, col: string, target: string[]): Promise<void> {
  const c = cellOf(v, row, col)!;
  expect(c.data.schedule_file, `${row} x ${col} has a schedule file`).toBeTruthy();
  const r = await runCommand(replayCmd, ['replay', '--schedule', c.data.schedule_file!, ...target, '--repeat', '5', '--json', '--db', tempDb()]);
  expect(r.code, r.err).toBeUndefined();
  const runs = (JSON.parse(r.out) as { runs: Array<{ reply: unknown; state: string }> }).runs;
  expect(runs).toHaveLength(5);
  for (const run of runs) {
    expect(run.state).toBe('complete');
    const j = judgeReplyShape(v.data.oracle, run.reply);
    expect({ class: j.class, note: j.note }).toEqual({ class: c.class, note: c.data.note });
  }
}

describe('hunt on minimig', () => {
  it('unpatched, every scenario, with the dynamic cross-check: LP#1994002 is broken, postcopy is skipped, every broken cell replays 5/5', async () => {
    const db = shared;
    const { view: v, out, err, code } = await cliHunt(db, ['--dynamic']);
    expect(code, err).toBeUndefined();
    expect(v.state).toBe('complete');
    // Progress per cell on stderr, the matrix on stdout.
    expect(err).toMatch(/^\[1\/\d+\] fill_source_migration_info\+\d+ x none->setup: infeasible/m);
    expect(out).toMatch(/^read point\s+none->setup\s+setup->active\s+active->completed/m);

    expect(v.data.columns.map((c) => c.key)).toEqual([
      'none->setup', 'setup->active', 'active->completed', 'setup->cancelling', 'cancelling->cancelled', 'active->cancelling',
      'active->failed', 'active->pre-switchover', 'pre-switchover->device', 'device->completed',
    ]);
    const postcopy = v.data.baselines.find((b) => b.scenario === 'postcopy')!;
    expect(postcopy).toMatchObject({ status: 'skipped', reason: expect.stringContaining("does not accept value 'postcopy-ram'") });

    // The rows: discovery's static list, in the order queries execute them (the switch read, populate_time_info's, the
    // status re-read); single-stepping finds the same three.
    expect(v.data.rows.map((r) => `${r.function} ${r.found.join('+')}`)).toEqual([
      'fill_source_migration_info static+dynamic', 'populate_time_info static+dynamic', 'fill_source_migration_info static+dynamic',
    ]);
    expect(v.data.rows.map((r) => r.name).sort()).toEqual((await discoveredReadPoints(false)).sort());
    expect(v.data.cross_check.filter((c) => c.note !== null)).toEqual([]);
    const [read, time, status] = v.data.rows.map((r) => r.name);

    // LP#1994002: the switch read setup, the status read active.
    const lp = cellOf(v, read, 'setup->active')!;
    expect(lp.class).toBe('broken');
    expect(lp.data.reply).toEqual({ status: 'active' });
    expect(lp.data.note).toContain('old libvirt fails: "migration was active, but no RAM info was set"');
    // Transitions the main thread makes cannot cross its own query.
    for (const col of ['none->setup', 'setup->cancelling', 'active->cancelling']) expect(cellOf(v, read, col)!.class).toBe('infeasible');
    expect(cellOf(v, read, 'control')!.class).toBe('consistent');
    // The switch read active, the unpatched status re-read failed: a failed reply with active's fields.
    expect(cellOf(v, read, 'active->failed')).toMatchObject({ class: 'broken', data: { note: 'failed without error-desc; failed with expected-downtime, ram, setup-time, total-time' } });
    // populate_time_info chose active's time fields; the unpatched re-read published completed.
    expect(cellOf(v, time, 'active->completed')).toMatchObject({ class: 'broken', data: { note: 'completed without downtime; completed with expected-downtime' } });
    // populate_time_info is only called for active-like states: never with setup.
    expect(cellOf(v, time, 'setup->active')!.class).toBe('unreachable');
    // A hold after the status re-read changes nothing.
    expect(v.cells.filter((c) => c.row === status && c.class === 'broken')).toEqual([]);

    const broken = v.cells.filter((c) => c.class === 'broken');
    expect(broken.length).toBeGreaterThanOrEqual(3);
    for (const c of broken) await replayFiveTimes(v, c.row, c.col, ['--target', 'minimig']);
  }, 600_000);

  it('patched: the same hunt finds LP#1994002 consistent, and two hunts give the same matrix', async () => {
    const db = shared;
    const a = await cliHunt(db, ['--patched', '--scenarios', 'precopy']);
    const b = await cliHunt(db, ['--patched', '--scenarios', 'precopy']);
    // Discovery's two read points: the switch read first, populate_time_info's after it.
    expect(a.view.data.rows.map((r) => r.name)).toEqual(await discoveredReadPoints(true));
    expect(a.view.data.rows.map((r) => r.function)).toEqual(['fill_source_migration_info', 'populate_time_info']);
    const read = a.view.data.rows[0].name;
    expect(cellOf(a.view, read, 'setup->active')).toMatchObject({ class: 'consistent', data: { reply: { status: 'setup' } } });
    // Read once, but populate_time_info reads again (as QEMU 7.2 does): active with completed's downtime.
    expect(cellOf(a.view, read, 'active->completed')).toMatchObject({ class: 'broken', data: { note: 'active without expected-downtime; active with downtime' } });
    expect(matrixKey(b.view)).toEqual(matrixKey(a.view));
    expect(b.view.id).toBe(a.view.id + 1);
  }, 300_000);

  it('diff --hunt: the unpatched hunt against the patched one pairs their cells by name; LP#1994002 is one row, broken -> consistent', async () => {
    const store = TraceStore.open(shared, { readonly: true });
    let views: HuntView[];
    try {
      views = store.hunts().map((h) => loadHunt(store, h.id));
    } finally {
      store.close();
    }
    const un = views.find((v) => v.label === 'hunt on minimig');
    const [p1, p2] = views.filter((v) => v.label === 'hunt on minimig-patched');
    expect(un && p1 && p2, 'the two tests above stored their hunts in the shared database').toBeTruthy();
    const [read, , status] = un!.data.rows.map((r) => r.name);
    const diff = async (...args: string[]) => runCommand(reportCmds, ['diff', ...args, '--db', shared]);

    const j = await diff('--hunt', String(un!.id), String(p1!.id), '--json');
    expect(j.code, j.err).toBeUndefined();
    const d = JSON.parse(j.out) as HuntDiff;
    const lp = [...d.changed, ...d.unchanged].filter((c) => c.read_point === read && c.transition === 'setup -> active');
    expect(lp).toHaveLength(1);
    expect(d.changed).toContain(lp[0]);
    expect(lp[0]).toMatchObject({
      a: { class: 'broken', reply: { status: 'active', has_ram: false }, fails: true, note: expect.stringContaining('old libvirt fails: "migration was active, but no RAM info was set"') },
      b: { class: 'consistent', reply: { status: 'setup', has_ram: false }, fails: false },
    });
    // The patched build has the switch read and populate_time_info's under the same names, and learned precopy's
    // transitions, all of which the unpatched hunt has too: every patched cell pairs, the status re-read stays apart.
    const paired = p1!.data.rows.length * (p1!.data.columns.length + 1);
    expect(d.changed.length + d.unchanged.length).toBe(paired);
    expect(d.only_b).toEqual({ read_points: [], transitions: [], cells: [] });
    expect(d.only_a.read_points).toEqual([status]);
    expect(d.only_a.cells).toHaveLength(un!.cells.length - paired);
    // Each paired outcome is the stored cell's, found by its column's states.
    const stored = (v: HuntView, rp: string, t: string) => {
      const col = t === 'control' ? t : v.data.columns.find((c) => `${c.old} -> ${c.new}` === t)!.key;
      const c = cellOf(v, rp, col)!;
      return [c.class, c.data.note];
    };
    for (const c of [...d.changed, ...d.unchanged]) {
      expect([c.a.class, c.a.note, c.b.class, c.b.note]).toEqual([...stored(un!, c.read_point, c.transition), ...stored(p1!, c.read_point, c.transition)]);
    }

    // The text: the same row, wrapped at 80 columns (continuations indented five spaces).
    const t = await diff('--hunt', String(un!.id), String(p1!.id));
    expect(t.code, t.err).toBeUndefined();
    console.log(t.out);
    const rows = t.out.replace(/\n {5}(?=\S)/g, ' ').split('\n').filter((l) => l.startsWith(`  ${read} x setup -> active: `));
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatch(/: broken \(active without .*old libvirt fails: "migration was active, but no RAM info was set"\) -> consistent \(setup\)$/);

    const html = join(dirname(shared), 'hunt-diff.html');
    const hd = await diff('--hunt', String(un!.id), String(p1!.id), '--html', html);
    expect(hd.err).toBe(`wrote ${html}\n`);
    const page = readFileSync(html, 'utf8');
    const changed = page.slice(page.indexOf('<h2>Cells whose outcome changed'), page.indexOf('<h2>Cells with the same outcome'));
    expect(changed).toMatch(new RegExp(`<tr data-row="${read.replace(/[+.]/g, '\\$&')}" data-col="setup -&gt; active">.*<td class="broken">.*<td class="consistent">`));

    // Two hunts of one build agree on every cell.
    const same = JSON.parse((await diff('--hunt', String(p1!.id), String(p2!.id), '--json')).out) as HuntDiff;
    expect([same.changed, same.only_a.cells, same.only_b.cells, same.unchanged.length]).toEqual([[], [], [], paired]);

    // Usage: a hunt number that is not there is named; a session beside --hunt, or one hunt, is refused.
    expect(await diff('--hunt', String(un!.id), '99')).toMatchObject({ code: 1, err: `migrace: no hunt 99 in ${shared} (see "migrace hunts")\n` });
    const mixed = await diff(String(un!.cells[0]!.session_id), '--hunt', String(un!.id), String(p1!.id));
    expect(mixed).toMatchObject({ code: 2, err: expect.stringMatching(/^migrace: --hunt compares two hunts, never a hunt with a session: .*\n$/) });
    expect(await diff('--hunt', String(un!.id))).toMatchObject({ code: 2, err: `migrace: --hunt takes two hunt numbers, A and B (see "migrace hunts"), not 1: ${un!.id}\n` });
  }, 120_000);

  it('--bql-completion: the step into completed is infeasible, with the lock-wait stack', async () => {
    const { view: v } = await cliHunt(tempDb(), ['--bql-completion', '--scenarios', 'precopy']);
    // Told apart from a hunt of the plain build in `hunts` and in the report.
    expect(v.label).toBe('hunt on minimig --bql-completion');
    const read = v.data.rows[0].name;
    const c = cellOf(v, read, 'active->completed')!;
    expect(c.class).toBe('infeasible');
    expect(c.data.note).toBe('the query waits in bql_lock while the writer is held');
    expect(c.data.reason).toMatch(/waits in bql_lock \(.*pthread_mutex_lock.* <- bql_lock <- handle_line\) while writer \(migrate_set_state\(active -> completed\)\) is held/);
    expect(cellOf(v, read, 'setup->active')!.class).toBe('broken');
    for (const row of v.data.rows) expect(cellOf(v, row.name, 'active->completed')!.class).toBe('infeasible');
  }, 300_000);

  it('a cell that hangs times out, is marked, and the hunt goes on', async () => {
    const db = tempDb();
    const store = TraceStore.open(db);
    try {
      const r = await hunt({
        store, kind: 'minimig', scenarios: ['precopy'], dynamic: false, cellTimeoutMs: 4_000, schedulesDir: () => null,
        label: 'hanging cells', invocation: null,
        // The baseline runs as usual; every cell's minimig then stays in setup for ten minutes.
        prepare: async (purpose) => {
          const target = await prepareMinimig(purpose === 'cell' ? { setupMs: 600_000 } : {});
          return { target, profile: minimigProfile(minimigDir(), target.binary, false) };
        },
      });
      console.log(renderHuntMatrix(r.view));
      expect(r.view.state).toBe('complete');
      const classes = ['none->setup', 'setup->active', 'active->completed', 'control'].map((col) => `${col}: ${cellOf(r.view, 'read', col)?.class}`);
      expect(classes).toEqual(['none->setup: infeasible', 'setup->active: timeout', 'active->completed: timeout', 'control: unreachable']);
      expect(cellOf(r.view, 'read', 'setup->active')!.data.note).toBe('the cell took longer than 4 s');
    } finally {
      store.close();
    }
  }, 300_000);

  it('Ctrl-C keeps the cells done so far, ends the hunt as aborted, and leaves no process', async () => {
    const db = tempDb();
    const cli = join(process.cwd(), 'bin', 'migrace.js');
    const child = spawn(process.execPath, [cli, 'hunt', '--db', db, '--scenarios', 'precopy'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.stdout.resume();
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const deadline = Date.now() + 120_000;
    while (!/\[2\/\d+\]/.test(err) && Date.now() < deadline) await sleep(100);
    const before = descendants(child.pid!);
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(err).toMatch(/hunt 1 interrupted: \d+ cells stored/);
    for (let i = 0; i < 30 && alive(before).length > 0; i++) await sleep(100);
    expect(alive(before)).toEqual([]);
    const store = TraceStore.open(db, { readonly: true });
    try {
      const v = loadHunt(store, 1);
      expect(v.state).toBe('aborted');
      expect(v.error).toBe('interrupted; the cells done so far are kept');
      expect(v.cells.length).toBeGreaterThanOrEqual(2);
    } finally {
      store.close();
    }
  }, 300_000);

  it('refuses what it cannot hunt with one clear line', async () => {
    const r = await runCommand(huntCmds, ['hunt', '--db', tempDb(), '--scenarios', 'precopy,sideways']);
    expect(r.err).toBe('migrace: --scenarios: unknown scenario "sideways" (known: precopy, cancel, cancel-setup, cancel-active, fail, switchover, postcopy)\n');
    expect(r.code).toBe(2);
    const q = await runCommand(huntCmds, ['hunt', '--db', tempDb(), '--target', 'qemu', '--qemu', '/bin/true']);
    expect(q.err).toMatch(/^migrace: \/bin\/true: symbol migrate_set_state and symbol qmp_query_migrate not found .*migrace needs migrate_set_state and qmp_query_migrate for the transition and read probes/);
    expect(q.err.split('\n').filter(Boolean)).toHaveLength(1);
  }, 120_000);
});
