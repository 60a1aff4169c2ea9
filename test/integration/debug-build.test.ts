import { afterEach, describe, expect, it } from 'vitest';
import { replay } from '../../analyzer/replay.js';
import { builtinSchedule } from '../../analyzer/schedule.js';
import { discoverProfile } from '../../recorder/probes/discover.js';
import { record } from '../../recorder/record.js';
import { prepareQemuPair } from '../../recorder/targets/qemu.js';
import { tempStore } from '../helpers/db.js';
import { expectNoSurvivors } from '../helpers/processes.js';
import { qemuBuild, type BuildName } from '../helpers/qemu-binaries.js';
import { checkRecording } from '../helpers/recording.js';

/**
 * QEMU 5.2 built from Debian's source with -O2 -g, as debuginfod users have
 * it: unstripped, and stripped with a separate debug file. Discovery is
 * right on both (probes-real.test.ts compares them with the stripped
 * build); here the recording carries file and line in every probe event,
 * and LP#1994002 is forced every time.
 */

afterEach(() => expectNoSurvivors());

const RUNS: Record<string, number> = { '5.2-dbg': 20, '5.2-dbg-split': 5 };

describe.each(['5.2-dbg', '5.2-dbg-split'] as BuildName[])('QEMU %s', (name) => {
  const q = qemuBuild(name);
  if ('skip' in q) console.warn(`skipping ${name}: ${q.skip}`);

  it.skipIf('skip' in q)('records with file and line in every probe event', async () => {
    if ('skip' in q) return;
    const { profile } = await discoverProfile(q.path, { env: q.env });
    expect(profile.variant).toBe('unpatched');
    const db = tempStore();
    try {
      const target = await prepareQemuPair({ qemu: q.path, env: q.env, profile, extraArgs: q.args });
      const r = await record({ store: db.store, target, profile, label: name, pollMs: 5 });
      expect(r.state, r.error ?? '').toBe('complete');
      const events = db.store.events(r.sessionId);
      checkRecording(events, db.store.threads(r.sessionId), q.transitions);
      const probed = events.filter((e) => e.kind === 'transition' || e.kind === 'read' || e.kind === 'publish');
      expect(probed.length).toBeGreaterThan(3);
      for (const e of probed) {
        expect(e.file, `${e.kind} seq ${e.seq}`).toMatch(/migration\/migration\.c$/);
        expect(e.line).toBeGreaterThan(0);
      }
      // The switch read is migration.c:1059, its status store 1104 (5.2.0's source).
      expect(new Set(events.filter((e) => e.kind === 'read').map((e) => e.line))).toEqual(new Set([1059]));
      expect(events.find((e) => e.kind === 'read')?.func).toBe('fill_source_migration_info');
    } finally {
      db.cleanup();
    }
  }, 120_000);

  it.skipIf('skip' in q)(`forces LP#1994002 ${RUNS[name]}/${RUNS[name]} times: active without ram, old libvirt fails`, async () => {
    if ('skip' in q) return;
    const { profile } = await discoverProfile(q.path, { env: q.env });
    const db = tempStore();
    try {
      for (let i = 0; i < RUNS[name]; i++) {
        const target = await prepareQemuPair({ qemu: q.path, env: q.env, profile, extraArgs: q.args });
        const r = await replay({ store: db.store, target, profile, schedule: builtinSchedule('lp1994002'), label: `${name} ${i}` });
        expect(r.state, r.error ?? '').toBe('complete');
        expect(r.outcome).toBe('manifested');
        expect(r.reply).toEqual({ status: 'active' });
        expect(r.verdict?.old_libvirt).toBe('fails');
      }
    } finally {
      db.cleanup();
    }
  }, 600_000);
});
