import type { EventOf, Session, Thread, TraceEvent } from '../trace/schema.js';
import type { StatusTable } from '../trace/status.js';
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

type Transition = RecordedTransition & { tid: Tid };

/**
 * The first pass, event by event: the query windows with the state each
 * read, and the distinct transitions (by old, new and thread).
 */
class WindowScan {
  readonly wins: Win[] = [];
  private readonly byId = new Map<string, Win>();
  /** Each thread's open query. */
  private readonly ownQuery = new Map<Tid, Win>();
  private readonly distinct = new Map<string, Transition>();
  /** The state the last transition left. */
  private state: string | null = null;
  private unknownOld = 0;
  /** Transitions an import named with something that is not a state name, by pair: their hazards are skipped. */
  private readonly oddTransitions = new Map<string, number>();

  constructor(private readonly table: StatusTable, private readonly threadMap: ReadonlyMap<number, Thread>) {}

  event(e: TraceEvent): void {
    switch (e.kind) {
      case 'transition': return this.transition(e);
      case 'query-begin': return this.queryBegin(e);
      case 'read': return this.read(e);
      case 'query-end': return this.queryEnd(e);
      case 'reply': return this.reply(e);
      default: return;
    }
  }

  private transition(e: EventOf<'transition'>): void {
    const neu = stateName(e.data.new, this.table);
    // QEMU trace logs carry the new state only; the previous one is the old.
    const old = stateName(e.data.old, this.table) ?? this.state;
    if (neu !== null && old !== null && (!isStatusName(old) || !isStatusName(neu))) {
      const pair = `${old} -> ${neu}`;
      if (!this.oddTransitions.has(pair)) this.oddTransitions.set(pair, e.seq);
    } else if (neu !== null && old !== null) {
      const key = `${old}>${neu}@${e.thread ?? '?'}`;
      if (!this.distinct.has(key)) {
        this.distinct.set(key, { old, new: neu, thread: threadRef(e.thread, this.threadMap), seq: e.seq, tid: e.thread });
      }
    } else {
      this.unknownOld++;
    }
    if (neu !== null) this.state = neu;
  }

  private queryBegin(e: EventOf<'query-begin'>): void {
    const w: Win = { id: e.data.query, reader: e.thread, anchor: e.seq, read: null, stateAtBegin: this.state, replyStatus: null };
    this.wins.push(w);
    this.byId.set(w.id, w);
    this.ownQuery.set(e.thread, w);
  }

  private read(e: EventOf<'read'>): void {
    const v = stateName(e.data.value, this.table);
    const w = this.ownQuery.get(e.thread);
    if (w) {
      // The first read of a query is the switch read; later ones are re-reads.
      if (w.read === null) w.read = v;
    } else {
      this.wins.push({ id: `read@${e.seq}`, reader: e.thread, anchor: e.seq, read: v, stateAtBegin: this.state, replyStatus: null });
    }
  }

  private queryEnd(e: EventOf<'query-end'>): void {
    const w = this.ownQuery.get(e.thread);
    if (w && w.id === e.data.query) this.ownQuery.delete(e.thread);
  }

  private reply(e: EventOf<'reply'>): void {
    const w = e.data.query !== null ? this.byId.get(e.data.query) : undefined;
    if (w) w.replyStatus = e.data.status ?? (e.data.body !== null && typeof e.data.body === 'object' && Object.keys(e.data.body).length === 0 ? 'none' : null);
  }

  transitions(): Transition[] {
    return [...this.distinct.values()];
  }

  warnings(): string[] {
    const out: string[] = [];
    if (this.unknownOld > 0) out.push(`${this.unknownOld} transition(s) whose old or new state is unknown were left out`);
    for (const [pair, seq] of this.oddTransitions) {
      const bad = pair.split(' -> ').filter((n) => !isStatusName(n));
      out.push(`transition ${pair} (seq ${seq}) and its hazards skipped: ${bad.map((n) => JSON.stringify(n)).join(' and ')} is not a MigrationStatus name`);
    }
    return out;
  }
}

/**
 * The second pass: every window's state against every transition that can
 * start from it, each (state, transition) pair modelled once and the
 * hazards shared by every window that read that state.
 */
class HazardPlacer {
  /** Windows with a known state, examined. */
  examined = 0;
  private readonly byPair = new Map<string, Hazard[]>();
  private readonly order: { h: Hazard; anchor: number; seq: number; p: number }[] = [];
  private unknownState = 0;
  private readonly oddReads = new Set<string>();

  constructor(private readonly transitions: readonly Transition[], private readonly threadMap: ReadonlyMap<number, Thread>) {}

  window(w: Win): void {
    const s = w.read ?? w.stateAtBegin ?? w.replyStatus;
    if (s === null) {
      this.unknownState++;
      return;
    }
    if (!isStatusName(s)) {
      this.oddReads.add(s);
      return;
    }
    this.examined++;
    for (const t of this.transitions) {
      if (t.old !== s) continue; // migrate_set_state is a CAS: it cannot fire from another state.
      if (w.reader !== null && t.tid !== null && t.tid === w.reader) continue; // the reader's own step is not a race
      // The outcome depends on the read state and the transition only: model each pair once.
      const pairKey = `${s}|${t.old}>${t.new}@${t.tid ?? '?'}`;
      const known = this.byPair.get(pairKey);
      if (known) {
        for (const h of known) h.queries.push(w.id);
        continue;
      }
      this.byPair.set(pairKey, this.model(w, s, t));
    }
  }

  /** The hazards of one window's read of s crossed by t: the placements whose replies differ between the variants or are malformed. */
  private model(w: Win, s: string, t: Transition): Hazard[] {
    const listed: Hazard[] = [];
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
      const h = this.hazard(w, s, t, r.p, u, pt);
      listed.push(h);
      this.order.push({ h, anchor: w.anchor, seq: t.seq, p: PLACEMENT_ORDER.indexOf(r.p) });
    }
    return listed;
  }

  private hazard(w: Win, s: string, t: Transition, placement: Placement, u: ModelOutcome, pt: ModelOutcome): Hazard {
    const affects: ModelVariant[] = [];
    if (!u.consistent) affects.push('unpatched');
    if (!pt.consistent) affects.push('patched');
    const { tid: _tid, ...transition } = t;
    const reader = threadRef(w.reader, this.threadMap);
    const summary =
      `${threadLabel(t.thread)} moving ${t.old} -> ${t.new} ${placementText(placement)} of ${threadLabel(reader, false)}'s query ${w.id} (read ${s}): ` +
      `unpatched ${describeOutcome(u)}; patched ${describeOutcome(pt)}`;
    return {
      id: '',
      query: w.id,
      queries: [w.id],
      reader,
      read_value: s,
      transition,
      placement,
      kind: kindOf(u, pt, affects),
      affects,
      unpatched: u,
      patched: pt,
      schedule: scheduleFor(t, placement),
      summary,
    };
  }

  /** The hazards in the order of their window, transition and placement, numbered H1, H2, ... */
  hazards(): Hazard[] {
    this.order.sort((a, b) => a.anchor - b.anchor || a.seq - b.seq || a.p - b.p);
    return this.order.map((o, i) => {
      o.h.id = `H${i + 1}`;
      return o.h;
    });
  }

  warnings(): string[] {
    const out: string[] = [];
    if (this.unknownState > 0) out.push(`${this.unknownState} query window(s) with no read and no known state were skipped`);
    if (this.oddReads.size > 0) {
      out.push(`query windows that read ${[...this.oddReads].map((n) => JSON.stringify(n)).join(', ')} were skipped: not a MigrationStatus name`);
    }
    if (this.transitions.length === 0) out.push('no transitions recorded: nothing to place');
    return out;
  }
}

export function explore(session: Session, threads: readonly Thread[], events: readonly TraceEvent[]): Exploration {
  const threadMap = new Map<number, Thread>();
  for (const t of threads) threadMap.set(t.tid, t);
  const sorted = events.every((e, i) => i === 0 || e.seq > events[i - 1]!.seq) ? events : [...events].sort((a, b) => a.seq - b.seq);

  const scan = new WindowScan(session.target.status_table, threadMap);
  for (const e of sorted) scan.event(e);
  const transitions = scan.transitions();
  const placer = new HazardPlacer(transitions, threadMap);
  for (const w of scan.wins) placer.window(w);
  const hazards = placer.hazards();

  return {
    session_id: session.id,
    windows: placer.examined,
    transitions: transitions.map(({ tid: _tid, ...t }) => t),
    hazards,
    warnings: [...scan.warnings(), ...placer.warnings()],
  };
}

/** The hazard for one transition and placement, if explore listed it. */
export function findHazard(x: Exploration, old: string, neu: string, placement?: Placement): Hazard[] {
  return x.hazards.filter((h) => h.transition.old === old && h.transition.new === neu && (placement === undefined || h.placement === placement));
}
