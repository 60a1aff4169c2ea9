import { afterEach, describe, expect, it } from 'vitest';
import { builtinSchedule, parseSchedule } from '../../analyzer/schedule.js';
import { replay, type ReplayResult } from '../../analyzer/replay.js';
import { findInterleavings } from '../../analyzer/interleavings.js';
import { discoverProfile } from '../../recorder/probes/discover.js';
import { minimigProfile } from '../../recorder/probes/minimig.js';
import { minimigDir, prepareMinimig, type MinimigOptions } from '../../recorder/targets/minimig.js';
import { prepareQemuPair } from '../../recorder/targets/qemu.js';
import type { PreparedTarget } from '../../recorder/targets/types.js';
import type { Profile } from '../../recorder/probes/profile.js';
import type { TraceStore } from '../../trace/store.js';
import { tempStore } from '../helpers/db.js';
import { expectNoSurvivors } from '../helpers/processes.js';
import { bookwormQemu, bullseyeQemu } from '../helpers/qemu-binaries.js';

afterEach(() => expectNoSurvivors());

type Launch = () => Promise<{ target: PreparedTarget; profile: Profile }>;

function minimig(opts: MinimigOptions = {}): Launch {
  return async () => {
    const target = await prepareMinimig(opts);
    return { target, profile: minimigProfile(minimigDir(), target.binary, Boolean(opts.patched)) };
  };
}

function qemu(get: typeof bookwormQemu | typeof bullseyeQemu): { launch: Launch; skip: string | null } {
  const bin = get();
  if ('skip' in bin) return { launch: async () => { throw new Error(bin.skip); }, skip: bin.skip };
  return {
    skip: null,
    launch: async () => {
      const { profile } = await discoverProfile(bin.path, { env: bin.env });
      return { target: await prepareQemuPair({ qemu: bin.path, env: bin.env, profile }), profile };
    },
  };
}

async function runReplay(store: TraceStore, launch: Launch, scenario: string): Promise<ReplayResult> {
  const { target, profile } = await launch();
  return replay({ store, target, profile, schedule: builtinSchedule(scenario), label: scenario });
}

const q72 = qemu(bookwormQemu);
const q52 = qemu(bullseyeQemu);

// The same schedule, every time, on each build: the outcome issue #4 promises.
const cases = [
  { name: 'minimig', launch: minimig(), skip: null, outcome: 'manifested', status: 'active', ram: false },
  { name: 'minimig-patched', launch: minimig({ patched: true }), skip: null, outcome: 'benign', status: 'setup', ram: false },
  { name: 'QEMU 7.2 (bookworm)', launch: q72.launch, skip: q72.skip, outcome: 'benign', status: 'setup', ram: false },
  { name: 'QEMU 5.2 (bullseye)', launch: q52.launch, skip: q52.skip, outcome: 'manifested', status: 'active', ram: false },
] as const;

describe.each(cases)('replay lp1994002 on $name', (c) => {
  if (c.skip) console.warn(`skipping ${c.name}: ${c.skip}`);

  it.skipIf(c.skip !== null)('gives the same outcome three times, and analyze finds exactly that finding', async () => {
    const db = tempStore();
    try {
      const outcomes: string[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await runReplay(db.store, c.launch, 'lp1994002');
        expect(r.state, r.error ?? '').toBe('complete');
        expect(r.outcome).toBe(c.outcome);
        const ret = r.reply as Record<string, unknown>;
        expect(ret.status).toBe(c.status);
        if (c.outcome === 'manifested') expect(ret).toEqual({ status: 'active' });
        expect(r.verdict?.old_libvirt).toBe(c.outcome === 'manifested' ? 'fails' : 'accepts');
        outcomes.push(JSON.stringify([r.outcome, Object.keys(ret).sort(), ret.status]));

        // The replay session, analyzed like any other: one finding, citing the events.
        const events = db.store.events(r.sessionId);
        const a = findInterleavings(db.store.session(r.sessionId), db.store.threads(r.sessionId), events);
        expect(a.findings).toHaveLength(1);
        const f = a.findings[0];
        expect(f.class).toBe(c.outcome);
        const bySeq = new Map(events.map((e) => [e.seq, e]));
        expect(bySeq.get(f.read!.seq)).toMatchObject({ kind: 'read', data: { value: { name: 'setup' } } });
        expect(bySeq.get(f.crossing[0].seq)).toMatchObject({ kind: 'transition', data: { old: { name: 'setup' }, new: { name: 'active' } } });
        expect(bySeq.get(f.publish!.seq)).toMatchObject({ kind: 'publish', data: { value: { name: c.status } } });
        expect(bySeq.get(f.reply!.reply_seq!)).toMatchObject({ kind: 'reply', data: { status: c.status, has_ram: c.ram } });
        expect(f.crossing[0].thread.name).toBe('live_migration');
        // The hold/release events that forced it are in the session.
        expect(events.filter((e) => e.kind === 'hold').map((e) => e.kind === 'hold' && e.data.role)).toEqual(['writer', 'reader']);
      }
      expect(new Set(outcomes).size).toBe(1);
    } finally {
      db.cleanup();
    }
  }, 180_000);
});

describe('replay: the engine is not specific to setup -> active', () => {
  it('forces the populate re-read race that read-once code still has (minimig-patched, like QEMU 7.2)', async () => {
    const db = tempStore();
    try {
      const r = await runReplay(db.store, minimig({ patched: true }), 'active-completed');
      expect(r.state, r.error ?? '').toBe('complete');
      expect(r.outcome).toBe('benign');
      expect((r.reply as Record<string, unknown>).status).toBe('active');
      expect(r.verdict?.shape).toMatchObject({ missing: ['expected-downtime'], foreign: ['downtime'] });
    } finally {
      db.cleanup();
    }
  });

  it.skipIf(q72.skip !== null)('forces it on Debian QEMU 7.2: an active reply with completed-only fields', async () => {
    const db = tempStore();
    try {
      const r = await runReplay(db.store, q72.launch, 'active-completed');
      expect(r.outcome).toBe('benign');
      const ret = r.reply as Record<string, unknown>;
      expect(ret.status).toBe('active');
      expect(ret).toHaveProperty('downtime');
      expect(ret).not.toHaveProperty('expected-downtime');
      expect(r.verdict?.shape?.foreign).toContain('downtime');
    } finally {
      db.cleanup();
    }
  }, 120_000);

  it('says infeasible, with the lock wait, when the held writer owns a lock the reader needs, and cleans up', async () => {
    const db = tempStore();
    try {
      const r = await runReplay(db.store, minimig({ patched: true, bqlCompletion: true }), 'active-completed');
      expect(r.outcome).toBe('infeasible');
      expect(r.reason).toMatch(/reader .* cannot arrive: thread 1 "minimig" waits in .*pthread_mutex_lock.*bql_lock.* while writer \(migrate_set_state\(active -> completed\)\) is held/);
      expect(db.store.session(r.sessionId)).toMatchObject({ state: 'complete', meta: { infeasible: r.reason } });
    } finally {
      db.cleanup();
    }
  });

  it('names the role that never arrived when a schedule waits for a transition that does not happen', async () => {
    const db = tempStore();
    try {
      const schedule = parseSchedule({
        format: 'migrace-schedule', version: 1, name: 'never',
        roles: { writer: { probe: 'transition', when: { old: 'setup', new: 'failed' } } },
        steps: [{ do: 'arm', role: 'writer' }, { do: 'migrate' }, { do: 'wait-held', role: 'writer', timeout_ms: 3000 }],
      }, 'test');
      const { target, profile } = await minimig()();
      const r = await replay({ store: db.store, target, profile, schedule, label: 'never' });
      expect(r.state).toBe('aborted');
      expect(r.error).toBe('replay never: role writer (migrate_set_state(setup -> failed)) never arrived within 3 s');
      expect(db.store.session(r.sessionId).state).toBe('aborted');
    } finally {
      db.cleanup();
    }
  });
});
