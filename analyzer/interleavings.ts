import type { EventOf, Session, StateValue, Thread, TraceEvent } from '../trace/schema.js';
import { normalizeStatusName, statusName, type StatusTable, type StatusTableId } from '../trace/status.js';
import type { Analysis, Finding, FindingClass, ThreadRef, TransitionRef } from './types.js';
import { MigraceError } from '../trace/errors.js';
import { qemuShape, replyFacts, ReplyShapes, shapeBaselineFrom, type ReplyFacts, type ReplyJudgement } from './verdict.js';

/*
 * Read-then-transition interleavings (docs/architecture.md, "Analysis and verdicts").
 *
 * One pass over the events in seq order. Each thread has its open reads (a
 * read not yet followed by that thread's publish or the end of its query)
 * and at most one open query window. Transitions are appended to one array;
 * a window remembers the array length when it opened, so the transitions that
 * crossed it are the slice up to its close, minus the reader's own. Only
 * windows with a crossing are kept, so memory follows the findings, not the
 * trace. Replies often arrive after the window closed (the publish comes
 * first, the QMP reply last), so kept windows wait for theirs by query id, or
 * on the reader's timeline when the reply carries no id.
 *
 * A replay records the writer's transition when it hits the probe at the
 * entry of migrate_set_state() and then holds it there: the compare-and-swap
 * has not happened yet. A transition followed by a hold of its thread (or hit
 * while that thread is held) therefore takes effect at the thread's release,
 * and is placed there.
 *
 * The same entry probe matters without a hold: a writer can report its
 * transition just before a reader's load and do the compare-and-swap just
 * after it. A read that still shows the old value of the latest transition,
 * made by another thread, proves that swap landed after the read, so that
 * transition opens inside the read's window. Whether it, or any transition
 * entered inside a window, landed before the window closed needs proof too
 * (see landedBy).
 *
 * Parts, in file order: the state helpers (stateName, sameState,
 * threadLabel, where a read's window starts, the proofs that a transition
 * landed: withChainProof, replyProves); InterleavingScan, whose fields are
 * the scan's state and which has one method per event kind and finish() for
 * the end of the trace (close what is open, warnings, proofs by reply, the
 * shape baseline, the findings); findInterleavings, which feeds it the
 * events of an array (a stream, such as the store's rows, feeds the scan
 * itself: cli/report.ts's Perfetto export does, beside its own first pass);
 * classify and toFinding, which turn a kept window into a Finding.
 */

type Tid = number | null;

interface QueryWin {
  id: string;
  thread: Tid;
  begin: EventOf<'query-begin'>;
  startT: number;
  endSeq: number | null;
  sawRead: boolean;
  publish: EventOf<'publish'> | null;
  publishT: number | null;
}

interface Placed {
  e: EventOf<'transition'>;
  /** The release that let a held writer complete it, or null when it was never held. */
  releaseSeq: number | null;
}

interface OpenRead {
  read: EventOf<'read'>;
  reader: Tid;
  query: QueryWin | null;
  startT: number;
}

/** How a window ended: that decides what evidence there can be. */
type CloseReason = 'publish' | 'query-end' | 'reply' | 'superseded' | 'truncated';

interface Candidate {
  kind: 'read' | 'query';
  anchor: number;
  reader: Tid;
  read: EventOf<'read'> | null;
  crossing: Placed[];
  /** Transitions inside the window not yet proven to have landed before its close; the reply may prove them. */
  unproven: Placed[];
  publish: EventOf<'publish'> | null;
  query: QueryWin | null;
  queryId: string | null;
  closedBy: CloseReason;
  closeSeq: number | null;
  reply: EventOf<'reply'> | null;
}

const MAX_LISTED_WARNINGS = 5;
const ALL = (): boolean => true;
const NONE: never[] = [];

function inOrder(events: readonly TraceEvent[]): boolean {
  for (let i = 1; i < events.length; i++) if (events[i]!.seq <= events[i - 1]!.seq) return false;
  return true;
}

/** A state's name, from the event or, failing that, the session's table. */
export function stateName(v: StateValue | null | undefined, table: StatusTable): string | null {
  if (!v) return null;
  if (v.name) return normalizeStatusName(v.name);
  if (v.value !== null) return statusName(v.value, table) ?? `#${v.value}`;
  return null;
}

function withName(v: StateValue, table: StatusTableId): StateValue {
  return { value: v.value, name: stateName(v, table) };
}

/** Two state values alike: by name when both have one (from the event or the table), else by number. */
export function sameState(a: StateValue, b: StateValue, table: StatusTableId): boolean {
  const an = stateName(a, table);
  const bn = stateName(b, table);
  if (an !== null && bn !== null) return an === bn;
  return a.value !== null && a.value === b.value;
}

export function threadRef(tid: Tid, threads: ReadonlyMap<number, Thread>): ThreadRef {
  if (tid === null) return { tid: null, name: null, lwp: null };
  const t = threads.get(tid);
  return { tid, name: t?.name ?? null, lwp: t?.lwp ?? null };
}

/** "live_migration (LWP 1234)", "thread 3", "LWP 77", "an unknown thread". */
export function threadLabel(ref: ThreadRef, withLwp = true): string {
  if (ref.name === null && ref.tid === null) return ref.lwp !== null ? `LWP ${ref.lwp}` : 'an unknown thread';
  const base = ref.name ?? `thread ${ref.tid}`;
  return withLwp && ref.lwp !== null ? `${base} (LWP ${ref.lwp})` : base;
}

/** "W moved setup -> active -> completed, then V moved ..." */
function describeMoves(crossing: readonly TransitionRef[]): string {
  const parts: string[] = [];
  let who: string | null = null;
  let path: string[] = [];
  const flush = (): void => {
    if (who !== null) parts.push(`${who} moved ${path.join(' -> ')}`);
  };
  for (const t of crossing) {
    const w = threadLabel(t.thread);
    const oldName = t.old?.name ?? '?';
    const newName = t.new.name ?? '?';
    if (w === who && path[path.length - 1] === oldName) {
      path.push(newName);
    } else {
      flush();
      who = w;
      path = [oldName, newName];
    }
  }
  flush();
  return parts.join(', then ');
}

/** Where a read's window starts in `trans`: one earlier when the latest transition had not landed yet (see the header). */
function readWindowStart(trans: readonly (Placed | null)[], read: EventOf<'read'>, reader: Tid, table: StatusTableId): number {
  let i = trans.length - 1;
  while (i >= 0 && trans[i] === null) i--;
  const last = i >= 0 ? trans[i] : null;
  const old = last?.e.data.old;
  if (last && old && last.e.thread !== reader && sameState(old, read.data.value, table) && !sameState(last.e.data.new, read.data.value, table)) {
    return i;
  }
  return trans.length;
}

/** Where a placed transition takes effect in seq order. */
function placedAt(p: Placed): number {
  return p.releaseSeq ?? p.e.seq;
}

/**
 * Compare-and-swap chains: a proven transition out of state S proves the one
 * into S before it landed first. Returns the proven set in effect order.
 */
function withChainProof(proven: Placed[], unproven: readonly Placed[], table: StatusTableId): Placed[] {
  const out = [...proven];
  for (let grew = true; grew;) {
    grew = false;
    for (const p of unproven) {
      if (out.includes(p)) continue;
      if (out.some((q) => placedAt(q) > placedAt(p) && q.e.data.old !== null && sameState(q.e.data.old, p.e.data.new, table))) {
        out.push(p);
        grew = true;
      }
    }
  }
  return out.sort((a, b) => placedAt(a) - placedAt(b));
}

/**
 * A reply proves a transition landed before the query filled it when it says
 * the new state, or carries a field only the new state's branch fills (the
 * 7.2 re-read: an active reply with completed's downtime).
 */
function replyProves(p: Placed, reply: EventOf<'reply'> | null, table: StatusTableId): boolean {
  const newName = stateName(p.e.data.new, table);
  if (reply === null || newName === null) return false;
  const facts = replyFacts(reply.data.body, reply.data);
  if (facts.status === newName) return true;
  const want = qemuShape(newName);
  const have = qemuShape(facts.status);
  return want !== null && have !== null && facts.fields.some((f) => want.includes(f) && !have.includes(f));
}

/** Append to the list a map keeps under `key`. */
/** A reply as the scan keeps it until the end. */
interface SeenReply {
  seq: number;
  command: string;
  /** Shared with every reply of the same shape. */
  facts: ReplyFacts;
}

function pushTo<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const l = map.get(key);
  if (l) l.push(value);
  else map.set(key, [value]);
}

/**
 * The scan's state: one field per thing the header describes, one method
 * per event kind, and finish() for what only the end of the trace decides.
 * Events must come in seq order; one that goes back is an error, since a
 * stream cannot be sorted here.
 */
export class InterleavingScan {
  private readonly table: StatusTableId;
  private readonly threadMap = new Map<number, Thread>();
  /** Transitions in effect order; null where one moved to its thread's release (see the header). */
  private readonly trans: (Placed | null)[] = [];
  private readonly held = new Set<Tid>();
  /** Transitions of held writers, placed at their release. */
  private readonly pending = new Map<Tid, Placed[]>();
  /** Index in `trans` of a thread's transition while it is still that thread's latest event. */
  private readonly lastTrans = new Map<Tid, number>();
  /** Each thread's latest event so far: a writer seen after its transition was past migrate_set_state. */
  private readonly lastSeqOf = new Map<Tid, number>();
  private readonly openReads = new Map<Tid, OpenRead[]>();
  private readonly ownQuery = new Map<Tid, QueryWin>();
  private readonly openQueries = new Map<string, QueryWin>();
  /** Closed windows still waiting for their reply, by query id and by reader. */
  private readonly awaitById = new Map<string, Candidate[]>();
  private readonly awaitByThread = new Map<Tid, Candidate[]>();
  private readonly candidates: Candidate[] = [];
  /** Every reply, without its body: what judging it at the end needs (see ReplyShapes). */
  private readonly replies: SeenReply[] = [];
  private readonly shapes = new ReplyShapes();
  private reads = 0;
  private publishes = 0;
  private strayPublishes = 0;
  private readonly superseded: number[] = [];
  private readonly truncated: number[] = [];

  private lastSeq = -Infinity;

  constructor(private readonly session: Session, threads: readonly Thread[], private readonly warnings: string[] = []) {
    this.table = session.target.status_table;
    for (const t of threads) this.threadMap.set(t.tid, t);
  }

  event(e: TraceEvent): void {
    if (e.seq < this.lastSeq) throw new MigraceError('BAD_INPUT', `session ${this.session.id}: event ${e.seq} comes after event ${this.lastSeq}: the analysis needs the events in seq order`);
    this.lastSeq = e.seq;
    // Holds and releases happen at a probe, not past it; a later transition does prove the earlier swap done.
    if (e.thread !== null && e.kind !== 'hold' && e.kind !== 'release' && e.kind !== 'note') this.lastSeqOf.set(e.thread, e.seq);
    if (this.lastTrans.size && e.kind !== 'transition' && e.kind !== 'hold') this.lastTrans.delete(e.thread);
    switch (e.kind) {
      case 'transition': return this.transition(e);
      case 'read': return this.read(e);
      case 'publish': return this.publish(e);
      case 'query-begin': return this.queryBegin(e);
      case 'query-end': return this.queryEnd(e);
      case 'reply': return this.reply(e);
      case 'hold': return this.hold(e);
      case 'release': return this.release(e);
      case 'note': return;
    }
  }

  private transition(e: EventOf<'transition'>): void {
    const p: Placed = { e, releaseSeq: null };
    if (this.held.has(e.thread)) {
      pushTo(this.pending, e.thread, p);
    } else {
      this.trans.push(p);
      this.lastTrans.set(e.thread, this.trans.length - 1);
    }
  }

  private read(e: EventOf<'read'>): void {
    this.reads++;
    const r = e.thread;
    const q = this.ownQuery.get(r) ?? (r !== null ? this.ownQuery.get(null) : undefined) ?? null;
    // A new read outside the query of the previous ones means that query is
    // over even though no publish or end was seen.
    if (this.openReads.has(r)) this.closeReadsOf(r, q === null ? ALL : (o) => o.query !== q, 'superseded', e.seq, null, null);
    if (q === null) this.awaitByThread.delete(r);
    else q.sawRead = true;
    pushTo(this.openReads, r, { read: e, reader: r, query: q, startT: readWindowStart(this.trans, e, r, this.table) });
  }

  private publish(e: EventOf<'publish'>): void {
    this.publishes++;
    const r = e.thread;
    const list = this.openReads.get(r);
    if (list && list.length) {
      this.closeReadsOf(r, ALL, 'publish', e.seq, e, null);
      return;
    }
    const q = this.ownQuery.get(r);
    if (q && !q.sawRead && q.publish === null) {
      q.publish = e;
      q.publishT = this.trans.length;
    } else {
      this.strayPublishes++;
    }
  }

  private queryBegin(e: EventOf<'query-begin'>): void {
    const r = e.thread;
    const prev = this.ownQuery.get(r);
    if (prev) {
      this.warnings.push(`query ${prev.id} (seq ${prev.begin.seq}) has no end before the next query (seq ${e.seq})`);
      this.closeQueryReads(prev, 'superseded', e.seq, null);
      this.closeQuery(prev, null, null, 'superseded');
    }
    const dup = this.openQueries.get(e.data.query);
    if (dup) this.closeQuery(dup, null, null, 'superseded');
    this.closeReadsOf(r, ALL, 'superseded', e.seq, null, null);
    this.awaitByThread.delete(r);
    const q: QueryWin = {
      id: e.data.query, thread: r, begin: e, startT: this.trans.length, endSeq: null,
      sawRead: false, publish: null, publishT: null,
    };
    this.openQueries.set(q.id, q);
    this.ownQuery.set(r, q);
  }

  private queryEnd(e: EventOf<'query-end'>): void {
    const q = this.openQueries.get(e.data.query) ?? this.ownQuery.get(e.thread);
    if (q) {
      this.closeQueryReads(q, 'query-end', e.seq, null);
      this.closeQuery(q, e.seq, null, 'query-end');
    } else {
      // The begin was not recorded; the reads of this thread still end here.
      this.closeReadsOf(e.thread, ALL, 'query-end', e.seq, null, null);
    }
  }

  private reply(e: EventOf<'reply'>): void {
    this.replies.push({ seq: e.seq, command: e.data.command, facts: this.shapes.facts(e.data) });
    const qid = e.data.query;
    let attached = false;
    if (qid !== null) {
      const waiting = this.awaitById.get(qid);
      if (waiting) {
        for (const c of waiting) {
          if (c.reply === null) {
            c.reply = e;
            attached = true;
          }
        }
        this.awaitById.delete(qid);
      }
    }
    const q = qid !== null ? this.openQueries.get(qid) : undefined;
    if (q) {
      this.closeQueryReads(q, 'reply', e.seq, e);
      this.closeQuery(q, null, e, 'reply');
      attached = true;
    } else if (this.openReads.size > 0 || this.ownQuery.size > 0) {
      const pick = qid === null ? ALL : (o: OpenRead): boolean => o.query === null;
      for (const tid of this.timeline(e.thread)) {
        this.closeReadsOf(tid, pick, 'reply', e.seq, null, e);
        const own = this.ownQuery.get(tid);
        if (own && qid === null) {
          this.closeQueryReads(own, 'reply', e.seq, e);
          this.closeQuery(own, null, e, 'reply');
        }
      }
    }
    if (!attached && this.awaitByThread.size > 0) this.attachByTimeline(e);
  }

  /** A reply no window took by id goes to the windows still waiting on the reader's timeline. */
  private attachByTimeline(e: EventOf<'reply'>): void {
    const qid = e.data.query;
    for (const tid of this.timeline(e.thread)) {
      const list = this.awaitByThread.get(tid);
      if (!list) continue;
      const rest = list.filter((c) => {
        if (c.reply !== null) return false;
        if (qid !== null && c.queryId !== null && c.queryId !== qid) return true;
        c.reply = e;
        if (c.queryId === null) c.queryId = qid;
        return false;
      });
      if (rest.length) this.awaitByThread.set(tid, rest);
      else this.awaitByThread.delete(tid);
    }
  }

  private hold(e: EventOf<'hold'>): void {
    // Held readers follow the same rules; only a held writer moves its transition.
    if (e.thread === null) return;
    this.held.add(e.thread);
    const i = this.lastTrans.get(e.thread);
    if (i === undefined) return;
    const p = this.trans[i]!;
    this.trans[i] = null;
    pushTo(this.pending, e.thread, p);
    this.lastTrans.delete(e.thread);
  }

  private release(e: EventOf<'release'>): void {
    this.held.delete(e.thread);
    const l = this.pending.get(e.thread);
    if (!l) return;
    for (const p of l) {
      p.releaseSeq = e.seq;
      this.trans.push(p);
    }
    this.pending.delete(e.thread);
  }

  private crossingsOf(startT: number, endT: number, reader: Tid): Placed[] {
    const out: Placed[] = [];
    for (let i = startT; i < endT; i++) {
      const p = this.trans[i];
      if (!p) continue;
      const t = p.e;
      // A transition on an unknown thread may be another thread's: keep it.
      if (t.thread === null || reader === null || t.thread !== reader) out.push(p);
    }
    return out;
  }

  /**
   * The probe sits at migrate_set_state's entry: a transition event says the
   * swap is coming, not that it happened. It crossed a window only with proof
   * that it landed before the close: the writer was held and released there
   * (a replay releases the reader only once the new state is in memory), the
   * publish or the reply shows the new state, or the writer reached a later
   * probe. Without proof it may have landed after the publish (the unpatched
   * status re-read then still shows the old value): no finding.
   */
  private landedBy(p: Placed, publish: EventOf<'publish'> | null): boolean {
    if (p.releaseSeq !== null) return true;
    if (publish !== null && sameState(p.e.data.new, publish.data.value, this.table)) return true;
    return (this.lastSeqOf.get(p.e.thread) ?? -1) > p.e.seq;
  }

  private addAwait(c: Candidate): void {
    if (c.queryId !== null) pushTo(this.awaitById, c.queryId, c);
    pushTo(this.awaitByThread, c.reader, c);
  }

  private closeRead(o: OpenRead, reason: CloseReason, closeSeq: number | null, publish: EventOf<'publish'> | null, reply: EventOf<'reply'> | null): void {
    const inside = o.startT === this.trans.length ? NONE : this.crossingsOf(o.startT, this.trans.length, o.reader);
    const crossing = inside.filter((p) => this.landedBy(p, publish));
    const unproven = inside.filter((p) => !crossing.includes(p));
    if (reason === 'superseded') this.superseded.push(o.read.seq);
    if (reason === 'truncated') this.truncated.push(o.read.seq);
    if (inside.length === 0) return;
    const c: Candidate = {
      kind: 'read', anchor: o.read.seq, reader: o.reader, read: o.read, crossing, unproven, publish,
      query: o.query, queryId: o.query?.id ?? null, closedBy: reason, closeSeq, reply,
    };
    this.candidates.push(c);
    if (reply === null && (reason === 'publish' || reason === 'query-end')) this.addAwait(c);
  }

  private closeQuery(q: QueryWin, endSeq: number | null, reply: EventOf<'reply'> | null, reason: CloseReason): void {
    q.endSeq = endSeq;
    if (this.openQueries.get(q.id) === q) this.openQueries.delete(q.id);
    if (this.ownQuery.get(q.thread) === q) this.ownQuery.delete(q.thread);
    if (q.sawRead) return;
    // No read probe in this query: whatever crossed it, its effect is unknown.
    const crossing = this.crossingsOf(q.startT, q.publishT ?? this.trans.length, q.thread);
    if (crossing.length === 0) return;
    const c: Candidate = {
      kind: 'query', anchor: q.begin.seq, reader: q.thread, read: null, crossing, unproven: [], publish: q.publish,
      query: q, queryId: q.id, closedBy: reason, closeSeq: endSeq ?? reply?.seq ?? null, reply,
    };
    this.candidates.push(c);
    if (reply === null && reason === 'query-end') this.addAwait(c);
  }

  /** Close the reads of `tid` that `pick` picks. */
  private closeReadsOf(
    tid: Tid,
    pick: (o: OpenRead) => boolean,
    reason: CloseReason,
    closeSeq: number | null,
    publish: EventOf<'publish'> | null,
    reply: EventOf<'reply'> | null,
  ): void {
    const list = this.openReads.get(tid);
    if (!list || list.length === 0) return;
    if (pick === ALL) {
      this.openReads.delete(tid);
      for (const o of list) this.closeRead(o, reason, closeSeq, publish, reply);
      return;
    }
    const keep: OpenRead[] = [];
    for (const o of list) {
      if (pick(o)) this.closeRead(o, reason, closeSeq, publish, reply);
      else keep.push(o);
    }
    if (keep.length) this.openReads.set(tid, keep);
    else this.openReads.delete(tid);
  }

  private closeQueryReads(q: QueryWin, reason: CloseReason, closeSeq: number | null, reply: EventOf<'reply'> | null): void {
    if (q.thread !== null) {
      this.closeReadsOf(q.thread, (o) => o.query === q, reason, closeSeq, null, reply);
    } else {
      for (const tid of [...this.openReads.keys()]) this.closeReadsOf(tid, (o) => o.query === q, reason, closeSeq, null, reply);
    }
  }

  /** The threads a thread-less event may belong to. */
  private timeline(tid: Tid): Tid[] {
    return tid !== null ? [tid] : [...new Set<Tid>([...this.openReads.keys(), ...this.ownQuery.keys(), ...this.awaitByThread.keys()])];
  }

  /** The end of the trace: close what is open, say what could not be judged, prove by replies, judge every reply. */
  finish(): Analysis {
    this.closeAtEnd();
    this.endWarnings();
    this.proveByReplies();
    const judged = this.judgeReplies();
    this.candidates.sort((a, b) => a.anchor - b.anchor);
    const findings = this.candidates.map((c, i) => toFinding(c, i, this.session.id, this.table, this.threadMap, c.reply ? judged.get(c.reply.seq)! : null));
    return {
      session_id: this.session.id,
      findings,
      replies: this.replies.map((r) => this.shapes.verdict(r.facts, r.command, r.seq)),
      warnings: this.warnings,
    };
  }

  private closeAtEnd(): void {
    for (const [tid, l] of this.pending) {
      const w = threadLabel(threadRef(tid, this.threadMap));
      this.warnings.push(`${w} is still held at the end with ${l.length} transition(s) not completed (seq ${l.map((p) => p.e.seq).join(', ')}): they are left out`);
    }
    for (const tid of [...this.openReads.keys()]) this.closeReadsOf(tid, ALL, 'truncated', null, null, null);
    for (const q of [...this.openQueries.values()]) {
      this.warnings.push(`query ${q.id} (seq ${q.begin.seq}) has no end and no reply: the session stops inside it`);
      this.closeQuery(q, null, null, 'truncated');
    }
  }

  private endWarnings(): void {
    const listed = (seqs: number[]): string =>
      seqs.slice(0, MAX_LISTED_WARNINGS).join(', ') + (seqs.length > MAX_LISTED_WARNINGS ? `, ... (${seqs.length} in all)` : '');
    if (this.truncated.length) {
      this.warnings.push(`read(s) at seq ${listed(this.truncated)} have no publish and no query end: the session stops before them (truncated?)`);
    }
    if (this.superseded.length && this.publishes > 0) {
      this.warnings.push(`read(s) at seq ${listed(this.superseded)} were followed by another read before any publish or query end: a publish probe may be missing`);
    }
    if (this.reads > 0 && this.publishes === 0) {
      this.warnings.push('no publish probe hit in this session: read windows end at the query end or reply, and the reply decides the class');
    }
    if (this.strayPublishes > 0) this.warnings.push(`${this.strayPublishes} publish hit(s) without a preceding read on their thread`);
  }

  /**
   * The reply can prove what the window's close could not (see landedBy);
   * a window the session ends inside keeps them: window-only says "unknown".
   */
  private proveByReplies(): void {
    const cs = this.candidates;
    for (let i = cs.length - 1; i >= 0; i--) {
      const c = cs[i]!;
      if (c.unproven.length === 0) continue;
      const kept = c.closedBy === 'truncated' ? c.unproven : c.unproven.filter((p) => replyProves(p, c.reply, this.table));
      c.crossing = withChainProof(kept.length ? [...c.crossing, ...kept] : c.crossing, c.unproven, this.table);
      if (c.crossing.length === 0) cs.splice(i, 1);
    }
  }

  /**
   * Replies are judged against the shape of the undisturbed ones (replies a
   * finding explains are not undisturbed); this sets that baseline and
   * returns the judgements of the findings' replies by seq.
   */
  private judgeReplies(): Map<number, ReplyJudgement> {
    const disturbed = new Set<number>();
    for (const c of this.candidates) if (c.reply) disturbed.add(c.reply.seq);
    this.shapes.setBaseline(shapeBaselineFrom(this.replies.filter((r) => !disturbed.has(r.seq))));
    const judged = new Map<number, ReplyJudgement>();
    for (const r of this.replies) if (disturbed.has(r.seq)) judged.set(r.seq, this.shapes.judgement(r.facts, r.command, r.seq));
    return judged;
  }
}

export function findInterleavings(session: Session, threads: readonly Thread[], events: readonly TraceEvent[]): Analysis {
  const warnings: string[] = [];
  const evs = inOrder(events) ? events : [...events].sort((a, b) => a.seq - b.seq);
  if (evs !== events) warnings.push('events were not in seq order; analyzed them sorted by seq');
  const scan = new InterleavingScan(session, threads, warnings);
  for (const e of evs) scan.event(e);
  return scan.finish();
}

function classify(c: Candidate, table: StatusTableId, j: ReplyJudgement | null): FindingClass {
  if (c.kind === 'query' || c.read === null) return 'window-only';
  if (c.publish) return sameState(c.publish.data.value, c.read.data.value, table) ? 'benign' : 'manifested';
  if (j) {
    // QEMU answers {} when the switch saw NONE: that reply "says" none.
    const said = j.facts.status ?? (j.facts.form === 'empty' ? 'none' : null);
    if (said !== null && (j.facts.form === 'qmp' || j.facts.form === 'hmp' || j.facts.form === 'empty' || j.facts.form === 'unknown')) {
      return said === stateName(c.read.data.value, table) ? 'benign' : 'manifested';
    }
  }
  return 'window-only';
}

function toFinding(
  c: Candidate,
  index: number,
  sessionId: number,
  table: StatusTableId,
  threads: ReadonlyMap<number, Thread>,
  j: ReplyJudgement | null,
): Finding {
  const reader = threadRef(c.reader, threads);
  const crossing: TransitionRef[] = c.crossing.map(({ e: t, releaseSeq }) => ({
    seq: t.seq,
    released_seq: releaseSeq,
    thread: threadRef(t.thread, threads),
    old: t.data.old ? withName(t.data.old, table) : null,
    new: withName(t.data.new, table),
  }));
  const cls = classify(c, table, j);
  const query = c.query
    ? { id: c.query.id, begin_seq: c.query.begin.seq, end_seq: c.query.endSeq }
    : c.queryId !== null
      ? { id: c.queryId, begin_seq: null, end_seq: null }
      : null;

  const evidence = new Set<number>();
  if (c.read) evidence.add(c.read.seq);
  for (const p of c.crossing) {
    evidence.add(p.e.seq);
    if (p.releaseSeq !== null) evidence.add(p.releaseSeq);
  }
  if (c.publish) evidence.add(c.publish.seq);
  if (query?.begin_seq != null) evidence.add(query.begin_seq);
  if (query?.end_seq != null) evidence.add(query.end_seq);
  if (c.reply) evidence.add(c.reply.seq);

  const moves = describeMoves(crossing);
  const r = threadLabel(reader, false);
  const readName = c.read ? stateName(c.read.data.value, table) ?? '?' : null;
  let text: string;
  if (c.kind === 'query' || c.read === null) {
    const span = query ? `query ${query.id} (seq ${query.begin_seq ?? '?'}..${query.end_seq ?? c.closeSeq ?? 'end'})` : 'query';
    const pub = c.publish ? `, which published ${stateName(c.publish.data.value, table) ?? '?'} (seq ${c.publish.seq})` : '';
    text = `${moves} inside ${r}'s ${span}${pub} with no read probe: effect unknown`;
    if (c.closedBy === 'truncated') text += ', and the session stops inside the query';
  } else if (c.publish) {
    const v = stateName(c.publish.data.value, table) ?? '?';
    text = `${moves} between ${r}'s read of ${readName} (seq ${c.read.seq}) and its publish of ${v} (seq ${c.publish.seq})`;
    if (cls === 'benign') text += ': it published what it read';
  } else if (c.closedBy === 'truncated') {
    text = `${moves} after ${r}'s read of ${readName} (seq ${c.read.seq}); the session stops before its publish or query end`;
  } else if (c.closedBy === 'superseded') {
    text = `${moves} between ${r}'s read of ${readName} (seq ${c.read.seq}) and its next read or query (seq ${c.closeSeq}), with no publish or query end seen`;
  } else {
    const end = c.closedBy === 'reply' ? `the reply (seq ${c.closeSeq})` : `the end of its query${query ? ` ${query.id}` : ''} (seq ${c.closeSeq})`;
    text = `${moves} between ${r}'s read of ${readName} (seq ${c.read.seq}) and ${end}; no publish probe`;
  }
  if (j && c.reply) {
    text += `; reply (seq ${c.reply.seq}): ${j.verdict.summary}`;
  } else if (!c.reply && c.closedBy !== 'truncated') {
    text += '; no reply recorded';
  }
  return {
    id: `F${index + 1}`,
    session_id: sessionId,
    class: cls,
    reader,
    read: c.read ? { seq: c.read.seq, value: withName(c.read.data.value, table) } : null,
    crossing,
    publish: c.publish ? { seq: c.publish.seq, value: withName(c.publish.data.value, table) } : null,
    query,
    reply: j ? j.verdict : null,
    evidence: [...evidence].sort((a, b) => a - b),
    summary: text,
  };
}
