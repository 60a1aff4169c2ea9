import type { Session, Thread, TraceEvent } from '../trace/schema.js';
import { isStatusName, readThenTransition, type Schedule } from './schedule.js';
import type { ThreadRef } from './types.js';
import { stateName, threadLabel, threadRef } from './interleavings.js';
import { runBoth, sameReply, type ModelOutcome, type ModelStep, type ModelVariant } from './model.js';
import { shapeNote } from './verdict.js';

/*
 * Every placement of every recorded transition into every query window, run
 * through the model for both variants. A recording of an undisturbed
 * migration already says which transitions exist and which states the queries
 * read; the model says what each forced order would make QEMU reply, and the
 * hazards are the orders worth replaying.
 *
 * "Inside the window" has two sub-placements because the fill functions
 * re-read the state between the switch read and the publish: before them
 * (the reader held right after its read: what a replay can force with a read
 * probe) and after them (the reader held after populate_ram_info()). When
 * both give the same replies for both variants they are reported once as
 * `inside`.
 */

export type Placement = 'before-read' | 'inside' | 'inside-before-fill' | 'inside-after-fill' | 'after-publish';

export type HazardKind =
  /** The unpatched double read: the status comes from a later state than the branch, which filled nothing for it (LP#1994002 family). */
  | 'lp1994002'
  /** populate_time_info()/populate_ram_info() saw another state than the published one (the 7.2 race; on unpatched code also when the status re-read comes after them). */
  | 'populate-reread'
  /** Both replies are well-formed; the variants only report different states. */
  | 'consistent-difference'
  | 'other';

export interface RecordedTransition {
  old: string;
  new: string;
  thread: ThreadRef;
  /** The first recorded seq of this transition by this thread. */
  seq: number;
}

export interface Hazard {
  id: string;
  /** The first query this applies to. */
  query: string;
  /** Every query window that read the same state (the same hazard applies to each). */
  queries: string[];
  reader: ThreadRef;
  /** The state the query's switch read in the recording. */
  read_value: string;
  transition: RecordedTransition;
  placement: Placement;
  kind: HazardKind;
  /** Variants whose reply is malformed for its status under this placement. */
  affects: ModelVariant[];
  unpatched: ModelOutcome;
  patched: ModelOutcome;
  /** A replay schedule that forces this placement, when the probes can (a hold after the read; no probe sits between the fills and the status re-read). */
  schedule: Schedule | null;
  summary: string;
}

export interface Exploration {
  session_id: number;
  /** Query windows examined. */
  windows: number;
  transitions: RecordedTransition[];
  hazards: Hazard[];
  warnings: string[];
}

type Tid = number | null;

interface Win {
  id: string;
  reader: Tid;
  anchor: number;
  read: string | null;
  stateAtBegin: string | null;
  replyStatus: string | null;
}

const READ: ModelStep = { kind: 'read' };
const FILL: ModelStep = { kind: 'fill' };
const PUBLISH: ModelStep = { kind: 'publish' };

function placements(old: string, neu: string): [Placement, ModelStep[]][] {
  const t: ModelStep = { kind: 'transition', old, new: neu };
  return [
    ['before-read', [t, READ, FILL, PUBLISH]],
    ['inside-before-fill', [READ, t, FILL, PUBLISH]],
    ['inside-after-fill', [READ, FILL, t, PUBLISH]],
    ['after-publish', [READ, FILL, PUBLISH, t]],
  ];
}

const PLACEMENT_ORDER: Placement[] = ['before-read', 'inside', 'inside-before-fill', 'inside-after-fill', 'after-publish'];

function scheduleFor(t: RecordedTransition, placement: Placement): Schedule | null {
  if (placement !== 'inside' && placement !== 'inside-before-fill') return null;
  return readThenTransition(`${t.old}-to-${t.new}-after-read`, t.old, t.new,
    `hold the writer at migrate_set_state(${t.old} -> ${t.new}), hold the reader right after its read of ${t.old}, release the writer until the state is ${t.new}, release the reader`);
}

function kindOf(u: ModelOutcome, p: ModelOutcome, affects: ModelVariant[]): HazardKind {
  if (affects.length === 0) return 'consistent-difference';
  const hit = affects.map((v) => (v === 'unpatched' ? u : p));
  // Fields filled from one state and the status from another: the populate
  // re-read, whichever read came late. Only then the status-only double read.
  if (hit.some((o) => o.fill_saw !== null && o.published !== null && o.fill_saw !== o.published)) return 'populate-reread';
  if (hit.some((o) => o.published !== null && o.published !== o.branch)) return 'lp1994002';
  return 'other';
}

function describeOutcome(o: ModelOutcome): string {
  if (o.published === null) return 'reply {}';
  const fields = o.time_fields.length ? ` (${o.time_fields.join(', ')})` : '';
  const shape = o.consistent ? 'well-formed' : shapeNote(o.shape) ?? 'malformed';
  const libvirt = o.verdict.old_libvirt === 'fails' ? `; old libvirt fails: "${o.verdict.libvirt_error}"` : '';
  return `reply ${o.published} ${o.ram ? 'with' : 'without'} ram${fields}, ${shape}${libvirt}`;
}

function placementText(p: Placement): string {
  switch (p) {
    case 'before-read': return 'before the read';
    case 'inside': return 'between the read and the publish';
    case 'inside-before-fill': return 'between the read and populate_*()';
    case 'inside-after-fill': return 'between populate_*() and the publish';
    case 'after-publish': return 'after the publish';
  }
}

export function explore(session: Session, threads: readonly Thread[], events: readonly TraceEvent[]): Exploration {
  const table = session.target.status_table;
  const warnings: string[] = [];
  const threadMap = new Map<number, Thread>();
  for (const t of threads) threadMap.set(t.tid, t);

  const sorted = events.every((e, i) => i === 0 || e.seq > events[i - 1]!.seq) ? events : [...events].sort((a, b) => a.seq - b.seq);

  // One pass: the query windows with the state each read, and the distinct transitions.
  const wins: Win[] = [];
  const byId = new Map<string, Win>();
  const ownQuery = new Map<Tid, Win>();
  const distinct = new Map<string, RecordedTransition & { tid: Tid }>();
  let state: string | null = null;
  let unknownOld = 0;
  /** Transitions an import named with something that is not a state name, by pair: their hazards are skipped. */
  const oddTransitions = new Map<string, number>();

  for (const e of sorted) {
    switch (e.kind) {
      case 'transition': {
        const neu = stateName(e.data.new, table);
        // QEMU trace logs carry the new state only; the previous one is the old.
        const old = stateName(e.data.old, table) ?? state;
        if (neu !== null && old !== null && (!isStatusName(old) || !isStatusName(neu))) {
          const pair = `${old} -> ${neu}`;
          if (!oddTransitions.has(pair)) oddTransitions.set(pair, e.seq);
        } else if (neu !== null && old !== null) {
          const key = `${old}>${neu}@${e.thread ?? '?'}`;
          if (!distinct.has(key)) {
            distinct.set(key, { old, new: neu, thread: threadRef(e.thread, threadMap), seq: e.seq, tid: e.thread });
          }
        } else {
          unknownOld++;
        }
        if (neu !== null) state = neu;
        break;
      }
      case 'query-begin': {
        const w: Win = { id: e.data.query, reader: e.thread, anchor: e.seq, read: null, stateAtBegin: state, replyStatus: null };
        wins.push(w);
        byId.set(w.id, w);
        ownQuery.set(e.thread, w);
        break;
      }
      case 'read': {
        const v = stateName(e.data.value, table);
        const w = ownQuery.get(e.thread);
        if (w) {
          // The first read of a query is the switch read; later ones are re-reads.
          if (w.read === null) w.read = v;
        } else {
          const pw: Win = { id: `read@${e.seq}`, reader: e.thread, anchor: e.seq, read: v, stateAtBegin: state, replyStatus: null };
          wins.push(pw);
        }
        break;
      }
      case 'query-end': {
        const w = ownQuery.get(e.thread);
        if (w && w.id === e.data.query) ownQuery.delete(e.thread);
        break;
      }
      case 'reply': {
        const w = e.data.query !== null ? byId.get(e.data.query) : undefined;
        if (w) w.replyStatus = e.data.status ?? (e.data.body !== null && typeof e.data.body === 'object' && Object.keys(e.data.body).length === 0 ? 'none' : null);
        break;
      }
      default:
        break;
    }
  }
  if (unknownOld > 0) warnings.push(`${unknownOld} transition(s) whose old or new state is unknown were left out`);
  for (const [pair, seq] of oddTransitions) {
    const bad = pair.split(' -> ').filter((n) => !isStatusName(n));
    warnings.push(`transition ${pair} (seq ${seq}) and its hazards skipped: ${bad.map((n) => JSON.stringify(n)).join(' and ')} is not a MigrationStatus name`);
  }

  const transitions = [...distinct.values()];
  const byPair = new Map<string, Hazard[]>();
  const order: { h: Hazard; anchor: number; seq: number; p: number }[] = [];
  let examined = 0;
  let unknownState = 0;
  const oddReads = new Set<string>();

  for (const w of wins) {
    const s = w.read ?? w.stateAtBegin ?? w.replyStatus;
    if (s === null) {
      unknownState++;
      continue;
    }
    if (!isStatusName(s)) {
      oddReads.add(s);
      continue;
    }
    examined++;
    for (const t of transitions) {
      if (t.old !== s) continue; // migrate_set_state is a CAS: it cannot fire from another state.
      if (w.reader !== null && t.tid !== null && t.tid === w.reader) continue; // the reader's own step is not a race
      // The outcome depends on the read state and the transition only: model each pair once.
      const pairKey = `${s}|${t.old}>${t.new}@${t.tid ?? '?'}`;
      const known = byPair.get(pairKey);
      if (known) {
        for (const h of known) h.queries.push(w.id);
        continue;
      }
      const listed: Hazard[] = [];
      byPair.set(pairKey, listed);
      const runs = placements(t.old, t.new).map(([p, steps]) => ({ p, ...runBoth(s, steps) }));
      const before = runs.find((r) => r.p === 'inside-before-fill')!;
      const after = runs.find((r) => r.p === 'inside-after-fill')!;
      const merged = sameReply(before.unpatched, after.unpatched) && sameReply(before.patched, after.patched);
      const candidates = merged
        ? runs.filter((r) => r !== after).map((r) => (r === before ? { ...r, p: 'inside' as Placement } : r))
        : runs;
      for (const r of candidates) {
        const u = r.unpatched;
        const pt = r.patched;
        if (sameReply(u, pt) && u.consistent && pt.consistent) continue;
        const affects: ModelVariant[] = [];
        if (!u.consistent) affects.push('unpatched');
        if (!pt.consistent) affects.push('patched');
        const { tid: _tid, ...transition } = t;
        const reader = threadRef(w.reader, threadMap);
        const summary =
          `${threadLabel(t.thread)} moving ${t.old} -> ${t.new} ${placementText(r.p)} of ${threadLabel(reader, false)}'s query ${w.id} (read ${s}): ` +
          `unpatched ${describeOutcome(u)}; patched ${describeOutcome(pt)}`;
        const h: Hazard = {
          id: '',
          query: w.id,
          queries: [w.id],
          reader,
          read_value: s,
          transition,
          placement: r.p,
          kind: kindOf(u, pt, affects),
          affects,
          unpatched: u,
          patched: pt,
          schedule: scheduleFor(t, r.p),
          summary,
        };
        listed.push(h);
        order.push({ h, anchor: w.anchor, seq: t.seq, p: PLACEMENT_ORDER.indexOf(r.p) });
      }
    }
  }
  if (unknownState > 0) warnings.push(`${unknownState} query window(s) with no read and no known state were skipped`);
  if (oddReads.size > 0) {
    warnings.push(`query windows that read ${[...oddReads].map((n) => JSON.stringify(n)).join(', ')} were skipped: not a MigrationStatus name`);
  }
  if (transitions.length === 0) warnings.push('no transitions recorded: nothing to place');

  order.sort((a, b) => a.anchor - b.anchor || a.seq - b.seq || a.p - b.p);
  const hazards = order.map((o, i) => {
    o.h.id = `H${i + 1}`;
    return o.h;
  });

  return { session_id: session.id, windows: examined, transitions: transitions.map(({ tid: _tid, ...t }) => t), hazards, warnings };
}

/** The hazard for one transition and placement, if explore listed it. */
export function findHazard(x: Exploration, old: string, neu: string, placement?: Placement): Hazard[] {
  return x.hazards.filter((h) => h.transition.old === old && h.transition.new === neu && (placement === undefined || h.placement === placement));
}
