import { afterEach, describe, expect, it } from 'vitest';
import { findInterleavings } from '../../analyzer/interleavings.js';
import { discoverProfile } from '../../recorder/probes/discover.js';
import { minimigProfile } from '../../recorder/probes/minimig.js';
import { withBinaryStatusNames } from '../../recorder/probes/status-lookup.js';
import { record, type Backend } from '../../recorder/record.js';
import { minimigDir, prepareMinimig } from '../../recorder/targets/minimig.js';
import { prepareQemuPair } from '../../recorder/targets/qemu.js';
import { uprobeUnavailable } from '../../recorder/uprobe/tracefs.js';
import type { Thread, TraceEvent } from '../../trace/schema.js';
import { tempStore } from '../helpers/db.js';
import { expectNoSurvivors } from '../helpers/processes.js';
import { bookwormQemu, qemuBuild } from '../helpers/qemu-binaries.js';
import { checkRecording } from '../helpers/recording.js';

/**
 * The same target recorded through gdb over MI, through gdb-fast (hits
 * handled inside gdb) and through kernel uprobes gives the same trace: the same kinds of events from the same threads (by name),
 * the same transitions, and per query a read, a publish and a reply that
 * agree; the analysis finds the same classes. Timing differs (uprobes do
 * not stop the target), so only what holds for any interleaving is compared.
 */

const noUprobes = uprobeUnavailable();
afterEach(() => expectNoSurvivors());

interface Recorded { events: TraceEvent[]; threads: Thread[]; meta: Record<string, unknown> }

function summary(r: Recorded) {
  const name = new Map(r.threads.map((t) => [t.tid, t.name]));
  return {
    kinds: [...new Set(r.events.map((e) => e.kind))].sort(),
    threads: [...new Set(r.events.flatMap((e) => (e.thread === null ? [] : [name.get(e.thread)])))].sort(),
    transitions: r.events.flatMap((e) => (e.kind === 'transition' ? [`${name.get(e.thread!)}:${e.data.old?.name}->${e.data.new.name}`] : [])),
    finalReply: r.events.filter((e) => e.kind === 'reply').at(-1)?.kind === 'reply' ? (r.events.filter((e) => e.kind === 'reply').at(-1) as Extract<TraceEvent, { kind: 'reply' }>).data.status : null,
  };
}

/** Per query: what was read, what was published and what the reply said, all on one thread. */
function queriesAgree(r: Recorded, patched: boolean): void {
  let current: { read?: string | null; publish?: string | null } | null = null;
  let checked = 0;
  for (const e of r.events) {
    if (e.kind === 'query-begin') current = {};
    else if (e.kind === 'read' && current) current.read = e.data.value.name;
    else if (e.kind === 'publish' && current) current.publish = e.data.value.name;
    else if (e.kind === 'reply' && current) {
      if (current.publish !== undefined) {
        expect(e.data.status).toBe(current.publish);
        // Read once (patched): the published value is the value read.
        if (patched) expect(current.publish).toBe(current.read);
        checked++;
      }
      current = null;
    }
  }
  expect(checked).toBeGreaterThan(1);
}

async function recordWith(backend: Backend, kind: 'minimig' | 'minimig-patched' | 'qemu'): Promise<Recorded> {
  const db = tempStore();
  try {
    let target;
    let profile;
    if (kind === 'qemu') {
      const bin = bookwormQemu();
      if ('skip' in bin) throw new Error(bin.skip);
      profile = (await discoverProfile(bin.path, { env: bin.env })).profile;
      target = await prepareQemuPair({ qemu: bin.path, env: bin.env, profile });
    } else {
      const patched = kind === 'minimig-patched';
      target = await prepareMinimig({ patched });
      profile = minimigProfile(minimigDir(), target.binary, patched);
    }
    const result = await record({ store: db.store, target, profile, label: `${kind} ${backend}`, pollMs: 5, backend });
    expect(result.state, result.error ?? '').toBe('complete');
    expect(result.backend).toBe(backend);
    expect(result.lostEvents).toBe(0);
    const s = db.store.session(result.sessionId);
    return { events: db.store.events(result.sessionId), threads: db.store.threads(result.sessionId), meta: s.meta };
  } finally {
    db.cleanup();
  }
}

/** Backends this machine can run: gdb-fast needs no root, uprobes do. */
const BACKENDS: Backend[] = noUprobes === null ? ['gdb', 'gdb-fast', 'uprobe'] : ['gdb', 'gdb-fast'];

/**
 * The classes analyze can give a build's recordings, whatever the timing:
 * a build that reads the state once publishes what it read, so it never
 * manifests. Which windows a transition crosses depends on timing (uprobes
 * do not stop the target, gdb does), so the classes found are compared
 * against what the code allows, not against each other.
 */
function classesAllowed(kind: 'minimig' | 'minimig-patched' | 'qemu'): string[] {
  return kind === 'minimig' ? ['benign', 'manifested', 'window-only'] : ['benign', 'window-only'];
}

describe(`recording through each backend (${BACKENDS.join(', ')}${noUprobes ? `; uprobe skipped: ${noUprobes}` : ''})`, () => {
  for (const kind of ['minimig', 'minimig-patched', 'qemu'] as const) {
    const qemu = bookwormQemu();
    it.skipIf(kind === 'qemu' && 'skip' in qemu)(`${kind}: the same trace, bar timing${kind === 'qemu' && 'skip' in qemu ? ` (skipped: ${qemu.skip})` : ''}`, async () => {
      const viaGdb = await recordWith('gdb', kind);
      expect(viaGdb.meta).toMatchObject({ backend: 'gdb' });
      const a = summary(viaGdb);
      for (const backend of BACKENDS) {
        const other = backend === 'gdb' ? viaGdb : await recordWith(backend, kind);
        expect(other.meta, backend).toMatchObject({ backend });
        if (backend === 'uprobe') expect(other.meta).toMatchObject({ uprobe: { lost_events: 0 } });
        const b = summary(other);
        expect(b.kinds, backend).toEqual(a.kinds);
        expect(b.threads, backend).toEqual(a.threads);
        expect(b.transitions, backend).toEqual(a.transitions);
        expect(b.finalReply, backend).toBe('completed');
        queriesAgree(other, kind !== 'minimig');
        if (kind === 'qemu') checkRecording(other.events, other.threads);
        const classes = new Set(findInterleavings(sessionOf(kind), other.threads, other.events).findings.map((f) => f.class));
        for (const c of classes) expect(classesAllowed(kind), `${backend}: class ${c}`).toContain(c);
      }
    }, 240_000);
  }
});

function sessionOf(kind: 'minimig' | 'minimig-patched' | 'qemu') {
  return {
    id: 1, label: '', created_at: '', origin: 'live' as const, profile: null, state: 'complete' as const, error: null, meta: {},
    target: { kind: kind === 'qemu' ? 'qemu' as const : 'minimig' as const, binary: '', build_id: null, qemu_version: null, variant: kind === 'minimig' ? 'unpatched' as const : 'patched' as const, status_table: '4.2' as const },
  };
}

describe('every backend names the states by the binary\'s own table', () => {
  it.each(BACKENDS)('%s: a profile whose version table is another build\'s still records minimig\'s names', async (backend) => {
    const db = tempStore();
    try {
      const target = await prepareMinimig({ transferMs: 10 });
      // A binary whose table matches no version table keeps the version's guess beside its own names
      // (withBinaryStatusNames): here 11.0's, which puts postcopy-device at 5, so minimig's completed (8)
      // would read as postcopy-recover-setup.
      const profile = { ...await withBinaryStatusNames(minimigProfile(minimigDir(), target.binary, false), target.binary), status_table: '11.0' as const };
      expect(profile.status_names?.source).toBe('binary');
      const result = await record({ store: db.store, target, profile, label: `names ${backend}`, pollMs: 5, backend });
      expect(result.state, result.error ?? '').toBe('complete');
      const events = db.store.events(result.sessionId);
      const moves = events.flatMap((e) => (e.kind === 'transition' ? [`${e.data.old?.name}->${e.data.new.name}`] : []));
      expect(moves).toEqual(['none->setup', 'setup->active', 'active->completed']);
      // Names and numbers agree with the binary's table (gdb prints names, uprobes numbers: either one is looked up).
      const names = profile.status_names!.names;
      for (const e of events) {
        if (e.kind === 'transition') expect(names[e.data.new.value!], `${backend} seq ${e.seq}`).toBe(e.data.new.name);
        if (e.kind === 'read' || e.kind === 'publish') expect(names[e.data.value.value!], `${backend} seq ${e.seq}`).toBe(e.data.value.name);
      }
      const replies = events.flatMap((e) => (e.kind === 'reply' ? [e.data.status] : []));
      expect(replies.at(-1)).toBe('completed');
    } finally {
      db.cleanup();
    }
  }, 60_000);
});

/**
 * QEMU built -O2 -g (what debuginfod users have): discovery names the
 * transition's parameters (state, old_state, new_state), which gcc keeps in
 * their argument registers; the uprobe backend fetches them from there as
 * gdb's `info scope` says, and every event carries the file and line gdb
 * placed its probe at. It aborted with "not a local whose frame offset gdb
 * knows" before, and auto picks uprobes as root.
 */
describe.each(['5.2-dbg', '5.2-dbg-split'] as const)('uprobes on QEMU %s', (name) => {
  const bin = qemuBuild(name);
  if ('skip' in bin) console.warn(`skipping ${name}: ${bin.skip}`);
  it.skipIf('skip' in bin || noUprobes !== null)(`record through uprobes as through gdb, with file and line${noUprobes ? ` (skipped: ${noUprobes})` : ''}`, async () => {
    if ('skip' in bin) return;
    const { profile } = await discoverProfile(bin.path, { env: bin.env });
    expect(profile.probes.find((p) => p.role === 'transition')?.values).toEqual({ addr: 'state', old: 'old_state', new: 'new_state' });
    const runs: Record<string, TraceEvent[]> = {};
    for (const backend of ['gdb', 'uprobe'] as const) {
      const db = tempStore();
      try {
        const target = await prepareQemuPair({ qemu: bin.path, env: bin.env, profile, extraArgs: bin.args });
        const result = await record({ store: db.store, target, profile, label: `${name} ${backend}`, pollMs: 5, backend });
        expect(result.state, result.error ?? '').toBe('complete');
        runs[backend] = db.store.events(result.sessionId);
      } finally {
        db.cleanup();
      }
    }
    const moves = (evs: TraceEvent[]) => evs.flatMap((e) => (e.kind === 'transition' ? [`${e.data.old?.name}(${e.data.old?.value})->${e.data.new.name}(${e.data.new.value})`] : []));
    expect(moves(runs.uprobe!)).toEqual(moves(runs.gdb!));
    expect(moves(runs.uprobe!)).toEqual(['none(0)->setup(1)', 'setup(1)->active(4)', 'active(4)->completed(8)']);
    for (const e of runs.uprobe!) {
      if (e.kind === 'transition' || e.kind === 'read' || e.kind === 'publish' || e.kind === 'query-begin') {
        expect(e.file, `seq ${e.seq} ${e.kind}`).toMatch(/migration\.c$/);
        expect(e.line, `seq ${e.seq} ${e.kind}`).toBeGreaterThan(0);
        expect(e.func, `seq ${e.seq} ${e.kind}`).toBeTruthy();
      }
    }
  }, 120_000);
});
