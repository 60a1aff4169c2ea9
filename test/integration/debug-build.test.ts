import { afterEach, describe, expect, it } from 'vitest';
import { replay } from '../../analyzer/replay.js';
import { builtinSchedule } from '../../analyzer/schedule.js';
import { discoverProfile } from '../../recorder/probes/discover.js';
import { record } from '../../recorder/record.js';
import { prepareQemuPair } from '../../recorder/targets/qemu.js';
import { tempStore } from '../helpers/db.js';
import { expectNoSurvivors } from '../helpers/processes.js';
import { qemuBuild, withDebugFileDirectory, type BuildName } from '../helpers/qemu-binaries.js';
import { checkRecording } from '../helpers/recording.js';

/**
 * QEMU 5.2 built from Debian's source with -O2 -g, as a user with its
 * debug info has it: unstripped; stripped with a separate debug file found
 * by its .gnu_debuglink; stripped with no debuglink, the debug file found
 * by build-id under the directory MIGRACE_DEBUG_FILE_DIRECTORY names (the
 * layout of /usr/lib/debug/.build-id). Discovery is right on all three
 * (probes-real.test.ts compares them with the stripped build); here every
 * probe event of a recording carries the frame the debug info gives (file,
 * line, function), and LP#1994002 is forced every time.
 */

afterEach(() => expectNoSurvivors());

const BUILD_NAMES: BuildName[] = ['5.2-dbg', '5.2-dbg-split', '5.2-dbg-build-id'];
const RUNS = 20;

/**
 * The frame each probe's events are in, 5.2.0's migration.c: the
 * transition probe on migrate_set_state's first line, the switch read
 * (1059) and the status store (1104) of fill_source_migration_info, which
 * is inlined into qmp_query_migrate: gdb names the inlined function.
 */
const FRAMES: Record<string, { func: string; line: number }> = {
  transition: { func: 'migrate_set_state', line: 1662 },
  read: { func: 'fill_source_migration_info', line: 1059 },
  publish: { func: 'fill_source_migration_info', line: 1104 },
};

describe.each(BUILD_NAMES)('QEMU %s', (name) => {
  const q = qemuBuild(name);
  if ('skip' in q) console.warn(`skipping ${name}: ${q.skip}`);

  it.skipIf('skip' in q)('records the debug info\'s frame (file, line, function) in every probe event', async () => {
    if ('skip' in q) return;
    await withDebugFileDirectory(q, async () => {
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
        expect(new Set(probed.map((e) => e.kind))).toEqual(new Set(['transition', 'read', 'publish']));
        for (const e of probed) {
          const want = FRAMES[e.kind];
          const at = `${e.kind} seq ${e.seq} (${e.func} ${e.file}:${e.line})`;
          expect(e.file, at).toMatch(/migration\/migration\.c$/);
          expect(e.func, at).toBe(want.func);
          expect(e.line, at).toBe(want.line);
        }
        const frames = [...new Set(probed.map((e) => `${e.kind} ${e.func}:${e.line}`))].sort();
        console.log(`[debug-build] ${name}: ${probed.length} probe events, frames ${frames.join(', ')}`);
      } finally {
        db.cleanup();
      }
    });
  }, 120_000);

  it.skipIf('skip' in q)(`forces LP#1994002 ${RUNS}/${RUNS} times: active without ram, old libvirt fails`, async () => {
    if ('skip' in q) return;
    await withDebugFileDirectory(q, async () => {
      const { profile } = await discoverProfile(q.path, { env: q.env });
      const db = tempStore();
      const started = performance.now();
      try {
        for (let i = 0; i < RUNS; i++) {
          const target = await prepareQemuPair({ qemu: q.path, env: q.env, profile, extraArgs: q.args });
          const r = await replay({ store: db.store, target, profile, schedule: builtinSchedule('lp1994002'), label: `${name} ${i}` });
          expect(r.state, r.error ?? '').toBe('complete');
          expect(r.outcome).toBe('manifested');
          expect(r.reply).toEqual({ status: 'active' });
          expect(r.verdict?.old_libvirt).toBe('fails');
        }
        console.log(`[debug-build] ${name}: ${RUNS} replays of lp1994002 in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      } finally {
        db.cleanup();
      }
    });
  }, 600_000);
});
