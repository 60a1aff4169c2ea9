import { afterEach, describe, expect, it } from 'vitest';
import { findInterleavings } from '../../analyzer/interleavings.js';
import { discoverProfile } from '../../recorder/probes/discover.js';
import { minimigProfile } from '../../recorder/probes/minimig.js';
import { record, type Backend } from '../../recorder/record.js';
import { minimigDir, prepareMinimig } from '../../recorder/targets/minimig.js';
import { prepareQemuPair } from '../../recorder/targets/qemu.js';
import { uprobeUnavailable } from '../../recorder/uprobe/tracefs.js';
import type { Thread, TraceEvent } from '../../trace/schema.js';
import { tempStore } from '../helpers/db.js';
import { expectNoSurvivors } from '../helpers/processes.js';
import { bookwormQemu } from '../helpers/qemu-binaries.js';
import { checkRecording } from '../helpers/recording.js';

/**
 * The same target recorded through gdb and through kernel uprobes gives the
 * same trace: the same kinds of events from the same threads (by name),
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

describe.skipIf(noUprobes !== null)('recording through uprobes and through gdb', () => {
  for (const kind of ['minimig', 'minimig-patched', 'qemu'] as const) {
    it(`${kind}: the same trace, bar timing`, async () => {
      if (kind === 'qemu' && 'skip' in bookwormQemu()) return;
      const viaGdb = await recordWith('gdb', kind);
      const viaUprobe = await recordWith('uprobe', kind);
      expect(viaUprobe.meta).toMatchObject({ backend: 'uprobe', uprobe: { lost_events: 0 } });
      expect(viaGdb.meta).toMatchObject({ backend: 'gdb' });
      const a = summary(viaGdb);
      const b = summary(viaUprobe);
      expect(b.kinds).toEqual(a.kinds);
      expect(b.threads).toEqual(a.threads);
      expect(b.transitions).toEqual(a.transitions);
      expect(b.finalReply).toBe('completed');
      queriesAgree(viaGdb, kind !== 'minimig');
      queriesAgree(viaUprobe, kind !== 'minimig');
      if (kind === 'qemu') {
        checkRecording(viaUprobe.events, viaUprobe.threads);
        checkRecording(viaGdb.events, viaGdb.threads);
      }
      // Analysis: classes that appear in the uprobe recording are ones the code can give; patched builds never manifest.
      const session = { id: 1, label: '', created_at: '', origin: 'live' as const, target: { kind: 'minimig' as const, binary: '', build_id: null, qemu_version: null, variant: 'unknown' as const, status_table: '4.2' as const }, profile: null, state: 'complete' as const, error: null, meta: {} };
      const classes = findInterleavings(session, viaUprobe.threads, viaUprobe.events).findings.map((f) => f.class);
      if (kind !== 'minimig') expect(classes).not.toContain('manifested');
    }, 120_000);
  }
});
