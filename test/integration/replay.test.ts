import { afterEach, describe, expect, it } from 'vitest';
import { builtinSchedule, parseSchedule, type Schedule } from '../../analyzer/schedule.js';
import { replay, type ReplayResult } from '../../analyzer/replay.js';
import { findInterleavings } from '../../analyzer/interleavings.js';
import { discoverProfile } from '../../recorder/probes/discover.js';
import { minimigProfile } from '../../recorder/probes/minimig.js';
import { minimigDir, prepareMinimig, type MinimigOptions } from '../../recorder/targets/minimig.js';
import { extractedTreeEnv, prepareQemuPair } from '../../recorder/targets/qemu.js';
import type { PreparedTarget } from '../../recorder/targets/types.js';
import type { Profile } from '../../recorder/probes/profile.js';
import type { TraceStore } from '../../trace/store.js';
import { tempStore } from '../helpers/db.js';
import { expectNoSurvivors } from '../helpers/processes.js';
import { BUILDS, qemuBuild, type BuildName } from '../helpers/qemu-binaries.js';

afterEach(() => expectNoSurvivors());

type Launch = () => Promise<{ target: PreparedTarget; profile: Profile }>;

function minimig(opts: MinimigOptions = {}): Launch {
  return async () => {
    const target = await prepareMinimig(opts);
    return { target, profile: minimigProfile(minimigDir(), target.binary, Boolean(opts.patched)) };
  };
}

function qemu(name: BuildName): { launch: Launch; skip: string | null } {
  const bin = qemuBuild(name);
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

const q52 = qemu('5.2');
const q72 = qemu('7.2');
const q100 = qemu('10.0.2');
// The system QEMU inside the sid chroot only (samples/sid-chroot.sh test runs this file with MIGRACE_TEST_QEMU=11.1).
const q111 = qemu('11.1');

// The same schedule, every time, on each build: the outcome issue #4 promises.
const cases = [
  { name: 'minimig', launch: minimig(), skip: null, outcome: 'manifested', status: 'active', ram: false },
  { name: 'minimig-patched', launch: minimig({ patched: true }), skip: null, outcome: 'benign', status: 'setup', ram: false },
  // Debian's own builds; the -O2 -g builds are #15's.
  ...BUILDS.filter((b) => b.debug === 'stripped').map((b) => ({ name: `QEMU ${b.label}`, ...qemu(b.name),
    ...(b.variant === 'unpatched' ? { outcome: 'manifested', status: 'active' } as const : { outcome: 'benign', status: 'setup' } as const), ram: false })),
];

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
        // The hold/release events that forced it are in the session; the crossing is the held writer's,
        // whatever the build calls its migration thread (live_migration, mig/src/main).
        const holds = events.filter((e) => e.kind === 'hold');
        expect(holds.map((e) => e.kind === 'hold' && e.data.role)).toEqual(['writer', 'reader']);
        expect(f.crossing[0].thread.tid).toBe(holds[0].thread);
        expect(f.reader.tid).toBe(holds[1].thread);
      }
      expect(new Set(outcomes).size).toBe(1);
    } finally {
      db.cleanup();
    }
  }, 180_000);
});

/** The transition the writer role was held at: from the hold event back to the hit it names. */
function writerStep(store: TraceStore, sessionId: number): string {
  const events = store.events(sessionId);
  const hold = events.find((e) => e.kind === 'hold' && e.data.role === 'writer');
  const m = hold?.kind === 'hold' ? /\(seq (\d+)\)/.exec(hold.data.reason) : null;
  const hit = m ? events.find((e) => e.seq === Number(m[1])) : undefined;
  return hit?.kind === 'transition' ? `${hit.data.old?.name} -> ${hit.data.new.name}` : '(none)';
}

function schedule(data: Record<string, unknown>): Schedule {
  return parseSchedule({ format: 'migrace-schedule', version: 1, ...data }, 'test');
}

describe('replay: the step into completed, found on each build (#11)', () => {
  it('minimig-patched: active -> completed, the populate re-read race that read-once code still has (like QEMU 7.2)', async () => {
    const db = tempStore();
    try {
      const r = await runReplay(db.store, minimig({ patched: true }), 'into-completed');
      expect(r.state, r.error ?? '').toBe('complete');
      expect(writerStep(db.store, r.sessionId)).toBe('active -> completed');
      expect(r.outcome).toBe('benign');
      expect((r.reply as Record<string, unknown>).status).toBe('active');
      expect(r.verdict?.shape).toMatchObject({ missing: ['expected-downtime'], foreign: ['downtime'] });
    } finally {
      db.cleanup();
    }
  });

  if (q52.skip) console.warn(`skipping QEMU 5.2: ${q52.skip}`);
  it.skipIf(q52.skip !== null)('Debian QEMU 5.2 (unpatched): active -> completed, manifested: the re-read publishes completed, a whole completed reply libvirt accepts', async () => {
    const db = tempStore();
    try {
      const r = await runReplay(db.store, q52.launch, 'into-completed');
      expect(r.state, r.error ?? '').toBe('complete');
      expect(writerStep(db.store, r.sessionId)).toBe('active -> completed');
      // Read active, published completed: the read and the reply disagree, the reply itself does not.
      expect(r.outcome).toBe('manifested');
      const events = db.store.events(r.sessionId);
      const bySeq = new Map(events.map((e) => [e.seq, e]));
      expect(bySeq.get(r.finding!.read!.seq)).toMatchObject({ kind: 'read', data: { value: { name: 'active' } } });
      expect(bySeq.get(r.finding!.publish!.seq)).toMatchObject({ kind: 'publish', data: { value: { name: 'completed' } } });
      const ret = r.reply as Record<string, unknown>;
      expect(ret.status).toBe('completed');
      expect(ret).toHaveProperty('ram');
      expect(ret).toHaveProperty('downtime');
      expect(r.verdict).toMatchObject({ status: 'completed', has_ram: true, old_libvirt: 'accepts', current_libvirt: 'accepts', shape: null });
    } finally {
      db.cleanup();
    }
  }, 120_000);

  it.skipIf(q72.skip !== null)('Debian QEMU 7.2: active -> completed, an active reply with completed-only fields', async () => {
    const db = tempStore();
    try {
      const r = await runReplay(db.store, q72.launch, 'into-completed');
      expect(writerStep(db.store, r.sessionId)).toBe('active -> completed');
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

  // The builds that take device -> completed under the big lock; 10.0.2 under the old scenario name, as the
  // README of earlier releases spells it. No bql_lock frame in 11.1's stack: its main loop takes the big lock
  // straight through qemu_mutex_lock_impl.
  const bigLock = [
    { name: 'Debian QEMU 10.0.2', build: q100, scenario: 'active-completed', thread: '.*', waits: String.raw`\S*(lock|futex)\S* \(.*bql_lock.*\)` },
    { name: 'Debian QEMU 11.1 (sid chroot)', build: q111, scenario: 'into-completed', thread: '"qemu-system-x86"', waits: String.raw`qemu_mutex_lock_impl \(.*pthread_mutex_lock <- qemu_mutex_lock_impl <- main_loop_wait <- .*\)` },
  ];
  for (const c of bigLock) {
    if (c.build.skip) console.warn(`skipping ${c.name}: ${c.build.skip}`);
    it.skipIf(c.build.skip !== null)(`${c.name}: device -> completed, infeasible: the main thread waits for the big lock the held writer owns`, async () => {
      const db = tempStore();
      try {
        const r = await runReplay(db.store, c.build.launch, c.scenario);
        expect(writerStep(db.store, r.sessionId)).toBe('device -> completed');
        expect(r.outcome, r.error ?? '').toBe('infeasible');
        expect(r.reason).toMatch(new RegExp(String.raw`^reader \(the read probe with writer's old state \(device\)\) cannot arrive: thread 1 ${c.thread} waits in ${c.waits} while writer \(migrate_set_state\(device -> completed\)\) is held; the held thread owns the lock$`));
        expect(db.store.session(r.sessionId)).toMatchObject({ state: 'complete', meta: { infeasible: r.reason } });
      } finally {
        db.cleanup();
      }
    }, 120_000);
  }

  it('says infeasible, with the lock wait, when the held writer owns a lock the reader needs, and cleans up (the old name active-completed)', async () => {
    const db = tempStore();
    try {
      const r = await runReplay(db.store, minimig({ patched: true, bqlCompletion: true }), 'active-completed');
      expect(r.schedule).toBe('into-completed');
      expect(r.outcome).toBe('infeasible');
      expect(r.reason).toMatch(/reader .* cannot arrive: thread 1 "minimig" waits in .*pthread_mutex_lock.*bql_lock.* while writer \(migrate_set_state\(active -> completed\)\) is held/);
      expect(db.store.session(r.sessionId)).toMatchObject({ state: 'complete', meta: { infeasible: r.reason } });
    } finally {
      db.cleanup();
    }
  });
});

describe('replay: a transition that can no longer happen fails at once (#11)', () => {
  // Timeouts of 600 s: a test that waited them out would time out itself.
  it('the state has left the role\'s old state: names the transitions that did happen', async () => {
    const db = tempStore();
    try {
      const s = schedule({
        name: 'never',
        roles: { writer: { probe: 'transition', when: { old: 'setup', new: 'failed' } } },
        steps: [{ do: 'arm', role: 'writer' }, { do: 'migrate' }, { do: 'wait-held', role: 'writer', timeout_ms: 600_000 }],
      });
      const { target, profile } = await minimig()();
      const r = await replay({ store: db.store, target, profile, schedule: s, label: 'never' });
      expect(r.state).toBe('aborted');
      expect(r.outcome).toBe('aborted');
      expect(r.error).toBe('replay never: role writer (migrate_set_state(setup -> failed)) can no longer arrive: the state already left setup (none -> setup -> active)');
      expect(db.store.session(r.sessionId).state).toBe('aborted');
    } finally {
      db.cleanup();
    }
  });

  it('the migration already ended', async () => {
    const db = tempStore();
    try {
      const s = schedule({
        name: 'late',
        roles: { writer: { probe: 'transition', when: { new: 'completed' } } },
        steps: [{ do: 'migrate' }, { do: 'finish' }, { do: 'arm', role: 'writer' }, { do: 'wait-held', role: 'writer', timeout_ms: 600_000 }],
      });
      const { target, profile } = await minimig()();
      const r = await replay({ store: db.store, target, profile, schedule: s, label: 'late' });
      expect(r.error).toBe('replay late: role writer (migrate_set_state(* -> completed)) can no longer arrive: the migration already ended (none -> setup -> active -> completed)');
    } finally {
      db.cleanup();
    }
  });

  it('a role that may still come but does not: named after its timeout', async () => {
    const db = tempStore();
    try {
      const s = schedule({
        name: 'noquery',
        roles: { reader: { probe: 'read', when: { value: 'setup' } } },
        steps: [{ do: 'arm', role: 'reader' }, { do: 'wait-held', role: 'reader', timeout_ms: 3000 }],
      });
      const { target, profile } = await minimig()();
      const r = await replay({ store: db.store, target, profile, schedule: s, label: 'noquery' });
      expect(r.error).toBe('replay noquery: role reader (the read probe with value setup) never arrived within 3 s');
    } finally {
      db.cleanup();
    }
  });
});

describe('replay: a role binds to a read point by its probe name (#10)', () => {
  it('holds the reader at the named read point, after the switch read went by', async () => {
    const db = tempStore();
    try {
      const { target, profile: base } = await minimig({ patched: true })();
      // A second read point, as discovery will list every read on the query path: populate_time_info's re-read.
      const profile: Profile = { ...base, probes: [...base.probes, {
        name: 'read-time-info', role: 'read', locations: ['populate_time_info'], values: { value: '(int)s->state' }, why: 'test: the re-read in populate_time_info',
      }] };
      const into = builtinSchedule('into-completed');
      const s: Schedule = { ...into, name: 'at-time-info', roles: { ...into.roles, reader: { ...into.roles.reader, at: 'read-time-info' } } };
      const r = await replay({ store: db.store, target, profile, schedule: s, label: 'at' });
      expect(r.state, r.error ?? '').toBe('complete');
      const events = db.store.events(r.sessionId);
      const hold = events.find((e) => e.kind === 'hold' && e.data.role === 'reader');
      expect(hold?.kind === 'hold' && hold.data.reason).toMatch(/^held at read-time-info \(seq \d+\)$/);
      const heldAt = Number(/seq (\d+)/.exec(hold?.kind === 'hold' ? hold.data.reason : '')![1]);
      const reads = events.filter((e) => e.kind === 'read' && e.seq <= heldAt);
      // The switch read of the same query went on; the reader was held at the re-read.
      expect(reads.slice(-2).map((e) => [e.probe, e.kind === 'read' && e.data.value.name])).toEqual([['read', 'active'], ['read-time-info', 'active']]);
      expect(r.finding?.read?.seq).toBe(heldAt);
      expect(r.outcome).toBe('benign');
      expect(r.verdict?.shape).toMatchObject({ foreign: ['downtime'] });
    } finally {
      db.cleanup();
    }
  });
});
