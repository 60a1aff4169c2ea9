import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { judgeReplyShape } from '../../analyzer/hunt-oracle.js';
import { loadHunt, matrixKey, type HuntView } from '../../analyzer/hunt-record.js';
import { register as huntCmds } from '../../cli/hunt.js';
import { register as replayCmd } from '../../cli/replay.js';
import { renderHuntMatrix } from '../../reports/hunt.js';
import { TraceStore } from '../../trace/store.js';
import { runCommand } from '../helpers/cli.js';
import { expectNoSurvivors } from '../helpers/processes.js';
import { bookwormQemu, bullseyeQemu } from '../helpers/qemu-binaries.js';

/*
 * migrace hunt on Debian's stripped QEMU builds, precopy: the read point
 * comes from discovery, the transitions from the baseline, the verdicts
 * from the undisturbed replies. docs/qemu-facts.md's cells: LP#1994002 broken on 5.2
 * and consistent on 7.2, and 7.2's populate_time_info race found by itself.
 * Every broken cell replays 5/5 from its schedule file; the matrices are
 * printed.
 */

afterEach(() => expectNoSurvivors());

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDb(): string {
  const dir = mkdtempSync(join(tmpdir(), 'migrace-hunt-qemu-'));
  dirs.push(dir);
  return join(dir, 'hunt.db');
}

async function cliHunt(db: string, qemu: string, args: string[] = []): Promise<HuntView> {
  const r = await runCommand(huntCmds, ['hunt', '--db', db, '--target', 'qemu', '--qemu', qemu, '--scenarios', 'precopy', ...args]);
  expect(r.code, r.err).toBeUndefined();
  const store = TraceStore.open(db, { readonly: true });
  try {
    const view = loadHunt(store, store.hunts().at(-1)!.id);
    console.log(`${view.label}, ${view.target.qemu_version}:\n${renderHuntMatrix(view)}`);
    return view;
  } finally {
    store.close();
  }
}

const cellOf = (v: HuntView, row: string, col: string) => v.cells.find((c) => c.row === row && c.col === col);

async function replayBrokenFiveTimes(v: HuntView, qemu: string): Promise<void> {
  for (const c of v.cells.filter((x) => x.class === 'broken')) {
    const r = await runCommand(replayCmd, ['replay', '--schedule', c.data.schedule_file!, '--target', 'qemu', '--qemu', qemu, '--repeat', '5', '--json', '--db', tempDb()]);
    expect(r.code, r.err).toBeUndefined();
    const runs = (JSON.parse(r.out) as { runs: Array<{ reply: unknown }> }).runs;
    expect(runs).toHaveLength(5);
    for (const run of runs) {
      const j = judgeReplyShape(v.data.oracle, run.reply);
      expect({ cell: `${c.row} x ${c.col}`, class: j.class, note: j.note }).toEqual({ cell: `${c.row} x ${c.col}`, class: c.class, note: c.data.note });
    }
  }
}

const q72 = bookwormQemu();
const q52 = bullseyeQemu();

describe('hunt on QEMU 7.2 (bookworm, patched)', () => {
  if ('skip' in q72) console.warn(`skipping QEMU 7.2: ${q72.skip}`);

  it.skipIf('skip' in q72)('LP#1994002 is consistent, the populate_time_info race is broken, and a second hunt gives the same matrix', async () => {
    const qemu = (q72 as { path: string }).path;
    const db = tempDb();
    const v = await cliHunt(db, qemu);
    expect(v.data.columns.map((c) => c.key)).toEqual(['none->setup', 'setup->active', 'active->completed']);
    // Discovery's static list; the read once comes first.
    const read = 'qmp_query_migrate+125';
    expect(v.data.rows[0].name).toBe(read);
    expect(v.data.rows.map((r) => r.name).sort()).toEqual(['qmp_query_migrate+125', 'qmp_query_migrate+432', 'qmp_query_migrate+606', 'sub_5fa520+339']);
    expect(cellOf(v, read, 'setup->active')).toMatchObject({ class: 'consistent', data: { status: 'setup' } });
    // docs/qemu-facts.md: an "active" reply carrying completed's downtime and no expected-downtime.
    expect(cellOf(v, read, 'active->completed')).toMatchObject({ class: 'broken', data: { status: 'active', note: 'active without expected-downtime; active with downtime' } });
    expect(cellOf(v, read, 'none->setup')!.class).toBe('infeasible');
    expect(cellOf(v, read, 'control')!.class).toBe('consistent');
    await replayBrokenFiveTimes(v, qemu);
    const again = await cliHunt(db, qemu);
    expect(matrixKey(again)).toEqual(matrixKey(v));
  }, 900_000);
});

describe('hunt on QEMU 5.2 (bullseye, unpatched)', () => {
  if ('skip' in q52) console.warn(`skipping QEMU 5.2: ${q52.skip}`);

  it.skipIf('skip' in q52)('LP#1994002 is broken: "active" without ram, which old libvirt fails', async () => {
    const qemu = (q52 as { path: string }).path;
    const v = await cliHunt(tempDb(), qemu);
    const read = 'qmp_query_migrate+117';
    expect(v.data.rows[0].name).toBe(read);
    expect(cellOf(v, read, 'setup->active')).toMatchObject({
      class: 'broken',
      data: { reply: { status: 'active' }, note: 'active without expected-downtime, ram, setup-time, total-time; old libvirt fails: "migration was active, but no RAM info was set"' },
    });
    // The status is read again, so a completion after the switch read gives a whole completed reply.
    expect(cellOf(v, read, 'active->completed')!.class).toBe('consistent');
    await replayBrokenFiveTimes(v, qemu);
  }, 900_000);
});
