import type { EventOf, Session, StateValue, Thread, TraceEvent } from '../trace/schema.js';
import { normalizeStatusName, statusName, type StatusTableId } from '../trace/status.js';
import type { Analysis, Finding, FindingClass, ThreadRef, TransitionRef } from './types.js';
import { judgeFacts, qemuShape, replyFacts, shapeBaselineFrom, type ReplyJudgement } from './verdict.js';

/*
 * Read-then-transition interleavings (DESIGN.md, "Findings").
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
export function stateName(v: StateValue | null | undefined, table: StatusTableId): string | null {
  if (!v) return null;
  if (v.name) return normalizeStatusName(v.name);
  if (v.value !== null) return statusName(v.value, table) ?? `#${v.value}`;
  return null;
}

function withName(v: StateValue, table: StatusTableId): StateValue {
  return { value: v.value, name: stateName(v, table) };
}

function sameState(a: StateValue, b: StateValue, table: StatusTableId): boolean {
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

export function findInterleavings(session: Session, threads: readonly Thread[], events: readonly TraceEvent[]): Analysis {
  const table = session.target.status_table;
  const warnings: string[] = [];
  const evs = inOrder(events) ? events : [...events].sort((a, b) => a.seq - b.seq);
  if (evs !== events) warnings.push('events were not in seq order; analyzed them sorted by seq');

  const threadMap = new Map<number, Thread>();
  for (const t of threads) threadMap.set(t.tid, t);

  // null: a transition moved to its thread's release (see the header).
  const trans: (Placed | null)[] = [];
  const held = new Set<Tid>();
  const pending = new Map<Tid, Placed[]>();
  /** Index in `trans` of a thread's transition while it is still that thread's latest event. */
  const lastTrans = new Map<Tid, number>();
  const openReads = new Map<Tid, OpenRead[]>();
  const ownQuery = new Map<Tid, QueryWin>();
  const openQueries = new Map<string, QueryWin>();
  const awaitById = new Map<string, Candidate[]>();
  const awaitByThread = new Map<Tid, Candidate[]>();
  const candidates: Candidate[] = [];
  const replies: EventOf<'reply'>[] = [];
  let reads = 0;
  let publishes = 0;
  let strayPublishes = 0;
  const superseded: number[] = [];
  const truncated: number[] = [];

  const crossingsOf = (startT: number, endT: number, reader: Tid): Placed[] => {
    const out: Placed[] = [];
    for (let i = startT; i < endT; i++) {
      const p = trans[i];
      if (!p) continue;
      const t = p.e;
      // A transition on an unknown thread may be another thread's: keep it.
      if (t.thread === null || reader === null || t.thread !== reader) out.push(p);
    }
    return out;
  };

  /**
   * The probe sits at migrate_set_state's entry: a transition event says the
   * swap is coming, not that it happened. It crossed a window only with proof
   * that it landed before the close: the writer was held and released there
   * (a replay releases the reader only once the new state is in memory), the
   * publish or the reply shows the new state, or the writer reached a later
   * probe. Without proof it may have landed after the publish (the unpatched
   * status re-read then still shows the old value): no finding.
   */
  const landedBy = (p: Placed, publish: EventOf<'publish'> | null): boolean => {
    if (p.releaseSeq !== null) return true;
    if (publish !== null && sameState(p.e.data.new, publish.data.value, table)) return true;
    return (lastSeqOf.get(p.e.thread) ?? -1) > p.e.seq;
  };

  const addAwait = (c: Candidate): void => {
    if (c.queryId !== null) {
      const l = awaitById.get(c.queryId);
      if (l) l.push(c);
      else awaitById.set(c.queryId, [c]);
    }
    const l = awaitByThread.get(c.reader);
    if (l) l.push(c);
    else awaitByThread.set(c.reader, [c]);
  };

  const closeRead = (
    o: OpenRead,
    reason: CloseReason,
    closeSeq: number | null,
    publish: EventOf<'publish'> | null,
    reply: EventOf<'reply'> | null,
  ): void => {
    const inside = o.startT === trans.length ? NONE : crossingsOf(o.startT, trans.length, o.reader);
    const crossing = inside.filter((p) => landedBy(p, publish));
    const unproven = inside.filter((p) => !crossing.includes(p));
    if (reason === 'superseded') superseded.push(o.read.seq);
    if (reason === 'truncated') truncated.push(o.read.seq);
    if (inside.length === 0) return;
    const c: Candidate = {
      kind: 'read', anchor: o.read.seq, reader: o.reader, read: o.read, crossing, unproven, publish,
      query: o.query, queryId: o.query?.id ?? null, closedBy: reason, closeSeq, reply,
    };
    candidates.push(c);
    if (reply === null && (reason === 'publish' || reason === 'query-end')) addAwait(c);
  };

  const closeQuery = (q: QueryWin, endSeq: number | null, reply: EventOf<'reply'> | null, reason: CloseReason): void => {
    q.endSeq = endSeq;
    if (openQueries.get(q.id) === q) openQueries.delete(q.id);
    if (ownQuery.get(q.thread) === q) ownQuery.delete(q.thread);
    if (q.sawRead) return;
    // No read probe in this query: whatever crossed it, its effect is unknown.
    const crossing = crossingsOf(q.startT, q.publishT ?? trans.length, q.thread);
    if (crossing.length === 0) return;
    const c: Candidate = {
      kind: 'query', anchor: q.begin.seq, reader: q.thread, read: null, crossing, unproven: [], publish: q.publish,
      query: q, queryId: q.id, closedBy: reason, closeSeq: endSeq ?? reply?.seq ?? null, reply,
    };
    candidates.push(c);
    if (reply === null && reason === 'query-end') addAwait(c);
  };

  /** Close the reads of `tid` that `keep` does not keep. */
  const closeReadsOf = (
    tid: Tid,
    pick: (o: OpenRead) => boolean,
    reason: CloseReason,
    closeSeq: number | null,
    publish: EventOf<'publish'> | null,
    reply: EventOf<'reply'> | null,
  ): void => {
    const list = openReads.get(tid);
    if (!list || list.length === 0) return;
    if (pick === ALL) {
      openReads.delete(tid);
      for (const o of list) closeRead(o, reason, closeSeq, publish, reply);
      return;
    }
    const keep: OpenRead[] = [];
    for (const o of list) {
      if (pick(o)) closeRead(o, reason, closeSeq, publish, reply);
      else keep.push(o);
    }
    if (keep.length) openReads.set(tid, keep);
    else openReads.delete(tid);
  };

  const closeQueryReads = (q: QueryWin, reason: CloseReason, closeSeq: number | null, reply: EventOf<'reply'> | null): void => {
    if (q.thread !== null) {
      closeReadsOf(q.thread, (o) => o.query === q, reason, closeSeq, null, reply);
    } else {
      for (const tid of [...openReads.keys()]) closeReadsOf(tid, (o) => o.query === q, reason, closeSeq, null, reply);
    }
  };

  const timeline = (tid: Tid): Tid[] => (tid !== null ? [tid] : [...new Set<Tid>([...openReads.keys(), ...ownQuery.keys(), ...awaitByThread.keys()])]);

  /** Each thread's latest event so far: a writer seen after its transition was past migrate_set_state. */
  const lastSeqOf = new Map<Tid, number>();
  for (const e of evs) {
    // Holds and releases happen at a probe, not past it; a later transition does prove the earlier swap done.
    if (e.thread !== null && e.kind !== 'hold' && e.kind !== 'release' && e.kind !== 'note') lastSeqOf.set(e.thread, e.seq);
    if (lastTrans.size && e.kind !== 'transition' && e.kind !== 'hold') lastTrans.delete(e.thread);
    switch (e.kind) {
      case 'transition': {
        const p: Placed = { e, releaseSeq: null };
        if (held.has(e.thread)) {
          const l = pending.get(e.thread);
          if (l) l.push(p);
          else pending.set(e.thread, [p]);
        } else {
          trans.push(p);
          lastTrans.set(e.thread, trans.length - 1);
        }
        break;
      }

      case 'read': {
        reads++;
        const r = e.thread;
        const q = ownQuery.get(r) ?? (r !== null ? ownQuery.get(null) : undefined) ?? null;
        // A new read outside the query of the previous ones means that query is
        // over even though no publish or end was seen.
        if (openReads.has(r)) closeReadsOf(r, q === null ? ALL : (o) => o.query !== q, 'superseded', e.seq, null, null);
        if (q === null) awaitByThread.delete(r);
        else q.sawRead = true;
        const list = openReads.get(r);
        const o: OpenRead = { read: e, reader: r, query: q, startT: readWindowStart(trans, e, r, table) };
        if (list) list.push(o);
        else openReads.set(r, [o]);
        break;
      }

      case 'publish': {
        publishes++;
        const r = e.thread;
        const list = openReads.get(r);
        if (list && list.length) {
          closeReadsOf(r, ALL, 'publish', e.seq, e, null);
        } else {
          const q = ownQuery.get(r);
          if (q && !q.sawRead && q.publish === null) {
            q.publish = e;
            q.publishT = trans.length;
          } else {
            strayPublishes++;
          }
        }
        break;
      }

      case 'query-begin': {
        const r = e.thread;
        const prev = ownQuery.get(r);
        if (prev) {
          warnings.push(`query ${prev.id} (seq ${prev.begin.seq}) has no end before the next query (seq ${e.seq})`);
          closeQueryReads(prev, 'superseded', e.seq, null);
          closeQuery(prev, null, null, 'superseded');
        }
        const dup = openQueries.get(e.data.query);
        if (dup) closeQuery(dup, null, null, 'superseded');
        closeReadsOf(r, ALL, 'superseded', e.seq, null, null);
        awaitByThread.delete(r);
        const q: QueryWin = {
          id: e.data.query, thread: r, begin: e, startT: trans.length, endSeq: null,
          sawRead: false, publish: null, publishT: null,
        };
        openQueries.set(q.id, q);
        ownQuery.set(r, q);
        break;
      }

      case 'query-end': {
        const q = openQueries.get(e.data.query) ?? ownQuery.get(e.thread);
        if (q) {
          closeQueryReads(q, 'query-end', e.seq, null);
          closeQuery(q, e.seq, null, 'query-end');
        } else {
          // The begin was not recorded; the reads of this thread still end here.
          closeReadsOf(e.thread, ALL, 'query-end', e.seq, null, null);
        }
        break;
      }

      case 'reply': {
        replies.push(e);
        const qid = e.data.query;
        let attached = false;
        if (qid !== null) {
          const waiting = awaitById.get(qid);
          if (waiting) {
            for (const c of waiting) {
              if (c.reply === null) {
                c.reply = e;
                attached = true;
              }
            }
            awaitById.delete(qid);
          }
        }
        const q = qid !== null ? openQueries.get(qid) : undefined;
        if (q) {
          closeQueryReads(q, 'reply', e.seq, e);
          closeQuery(q, null, e, 'reply');
          attached = true;
        } else if (openReads.size > 0 || ownQuery.size > 0) {
          const pick = qid === null ? ALL : (o: OpenRead): boolean => o.query === null;
          for (const tid of timeline(e.thread)) {
            closeReadsOf(tid, pick, 'reply', e.seq, null, e);
            const own = ownQuery.get(tid);
            if (own && qid === null) {
              closeQueryReads(own, 'reply', e.seq, e);
              closeQuery(own, null, e, 'reply');
            }
          }
        }
        if (!attached && awaitByThread.size > 0) {
          for (const tid of timeline(e.thread)) {
            const list = awaitByThread.get(tid);
            if (!list) continue;
            const rest = list.filter((c) => {
              if (c.reply !== null) return false;
              if (qid !== null && c.queryId !== null && c.queryId !== qid) return true;
              c.reply = e;
              if (c.queryId === null) c.queryId = qid;
              return false;
            });
            if (rest.length) awaitByThread.set(tid, rest);
            else awaitByThread.delete(tid);
          }
        }
        break;
      }

      case 'hold': {
        // Held readers follow the same rules; only a held writer moves its transition.
        if (e.thread === null) break;
        held.add(e.thread);
        const i = lastTrans.get(e.thread);
        if (i !== undefined) {
          const p = trans[i]!;
          trans[i] = null;
          const l = pending.get(e.thread);
          if (l) l.push(p);
          else pending.set(e.thread, [p]);
          lastTrans.delete(e.thread);
        }
        break;
      }
      case 'release': {
        held.delete(e.thread);
        const l = pending.get(e.thread);
        if (l) {
          for (const p of l) {
            p.releaseSeq = e.seq;
            trans.push(p);
          }
          pending.delete(e.thread);
        }
        break;
      }
      case 'note':
        break;
    }
  }

  for (const [tid, l] of pending) {
    const w = threadLabel(threadRef(tid, threadMap));
    warnings.push(`${w} is still held at the end with ${l.length} transition(s) not completed (seq ${l.map((p) => p.e.seq).join(', ')}): they are left out`);
  }
  for (const tid of [...openReads.keys()]) closeReadsOf(tid, ALL, 'truncated', null, null, null);
  for (const q of [...openQueries.values()]) {
    warnings.push(`query ${q.id} (seq ${q.begin.seq}) has no end and no reply: the session stops inside it`);
    closeQuery(q, null, null, 'truncated');
  }

  const listed = (seqs: number[]): string =>
    seqs.slice(0, MAX_LISTED_WARNINGS).join(', ') + (seqs.length > MAX_LISTED_WARNINGS ? `, ... (${seqs.length} in all)` : '');
  if (truncated.length) {
    warnings.push(`read(s) at seq ${listed(truncated)} have no publish and no query end: the session stops before them (truncated?)`);
  }
  if (superseded.length && publishes > 0) {
    warnings.push(`read(s) at seq ${listed(superseded)} were followed by another read before any publish or query end: a publish probe may be missing`);
  }
  if (reads > 0 && publishes === 0) {
    warnings.push('no publish probe hit in this session: read windows end at the query end or reply, and the reply decides the class');
  }
  if (strayPublishes > 0) warnings.push(`${strayPublishes} publish hit(s) without a preceding read on their thread`);

  // The reply can prove what the window's close could not (see landedBy);
  // a window the session ends inside keeps them: window-only says "unknown".
  for (let i = candidates.length - 1; i >= 0; i--) {
    const c = candidates[i]!;
    if (c.unproven.length === 0) continue;
    const kept = c.closedBy === 'truncated' ? c.unproven : c.unproven.filter((p) => replyProves(p, c.reply, table));
    c.crossing = withChainProof(kept.length ? [...c.crossing, ...kept] : c.crossing, c.unproven, table);
    if (c.crossing.length === 0) candidates.splice(i, 1);
  }

  // Replies a finding explains are not "undisturbed": keep them out of the shape baseline.
  const disturbed = new Set<number>();
  for (const c of candidates) if (c.reply) disturbed.add(c.reply.seq);
  const facts = replies.map((r) => replyFacts(r.data.body, r.data));
  const undisturbed: { command: string; facts: ReturnType<typeof replyFacts> }[] = [];
  replies.forEach((r, i) => {
    if (!disturbed.has(r.seq)) undisturbed.push({ command: r.data.command, facts: facts[i]! });
  });
  const baseline = shapeBaselineFrom(undisturbed);
  const judged = new Map<number, ReplyJudgement>();
  replies.forEach((r, i) => judged.set(r.seq, judgeFacts(facts[i]!, r.data.command, r.seq, baseline)));

  candidates.sort((a, b) => a.anchor - b.anchor);
  const findings = candidates.map((c, i) => toFinding(c, i, session.id, table, threadMap, c.reply ? judged.get(c.reply.seq)! : null));

  return {
    session_id: session.id,
    findings,
    replies: replies.map((r) => judged.get(r.seq)!.verdict),
    warnings,
  };
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
