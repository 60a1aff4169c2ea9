import type { Session, Thread, TraceEvent } from '../trace/schema.js';
import { CONTROL, type HuntCell, type HuntView } from './hunt-record.js';
import { stateName } from './interleavings.js';
import type { Analysis, Finding, Verdict } from './types.js';
import { judgeFacts, replyFacts } from './verdict.js';

/*
 * Two runs compared by what their findings are, not by where they sit: an
 * unpatched and a patched replay of one schedule have the same interleaving
 * with another outcome, and that is one row, not "one only in A, one only in
 * B". Pure: data in, plain data out; reports/diff.ts renders it.
 *
 *  - Identity: what a thing is (the reading thread's part in the program,
 *    its read point, the crossing transition, the query it happened in).
 *    Outcome: how it turned out (class, what was read and published, the
 *    reply, whether libvirt fails it).
 *  - compareByIdentity: pairs two lists of Comparables, first on the whole
 *    identity, then on all but the query position (two recordings poll a
 *    different number of times before the race); the rest stays apart.
 *    Nothing in it knows findings: a hunt's cells compare with it too.
 *  - findingComparables: a session's findings as Comparables.
 *  - queryOutcomes and compareSessions: per query, what was read, published
 *    and replied, paired by order; with the findings, a whole session diff.
 *  - huntCellComparables and compareHunts: a hunt's cells (read point x
 *    transition by name, query null; outcome the cell's class and note),
 *    two hunts paired cell by cell, with the read points and transitions
 *    only one of them has.
 */

/** What a finding (or a hunt cell) is, whatever its outcome. */
export interface Identity {
  /** The reading thread's part in the program (threadRoles): thread names differ between builds, roles do not. */
  reader: string;
  /** Where it read: the read probe's name, or null for a window no read probe saw. */
  readPoint: string | null;
  /** The crossing transitions, "setup -> active" (several joined by ", "). */
  transition: string;
  /** The query it happened in, 1 for the session's first; null where a position means nothing (a hunt cell). */
  query: number | null;
}

/** How it turned out. */
export interface Outcome {
  /** A finding's class (manifested, benign, window-only) or a hunt cell's judgement. */
  class: string;
  /** A hunt cell's note: the broken shape, the lock, why it was not reached. Null for a finding, whose values say it. */
  detail: string | null;
  read: string | null;
  published: string | null;
  reply: { status: string | null; has_ram: boolean } | null;
  /** Old libvirt fails the job on this reply. */
  fails: boolean;
}

export interface Comparable<T> {
  identity: Identity;
  outcome: Outcome;
  item: T;
}

export interface Pair<T> {
  a: Comparable<T>;
  b: Comparable<T>;
  /** The query positions are equal too (false: paired on the rest of the identity). */
  samePlace: boolean;
  /** Class, values, reply or libvirt's verdict differ. */
  changed: boolean;
}

export interface Comparison<T> {
  /** In A's order. */
  pairs: Pair<T>[];
  onlyA: Comparable<T>[];
  onlyB: Comparable<T>[];
}

/**
 * Each thread's part in the program, from what it does in the run: the
 * thread that answers queries is `main`, one that only moves the state is
 * `migration`, any other `other`. Never from names: the migration thread is
 * live_migration on QEMU 5.2/7.2 and mig/src/main on 10.x, and an import
 * may name no thread at all.
 */
export function threadRoles(events: readonly TraceEvent[]): Map<number, string> {
  const roles = new Map<number, string>();
  for (const e of events) {
    if (e.thread === null) continue;
    if (e.kind === 'query-begin' || e.kind === 'query-end') roles.set(e.thread, 'main');
    else if (e.kind === 'transition' && !roles.has(e.thread)) roles.set(e.thread, 'migration');
  }
  return roles;
}

function withoutPlace(i: Identity): string {
  return JSON.stringify([i.reader, i.readPoint, i.transition]);
}

function withPlace(i: Identity): string {
  return JSON.stringify([i.reader, i.readPoint, i.transition, i.query]);
}

export function sameOutcome(a: Outcome, b: Outcome): boolean {
  return a.class === b.class && a.detail === b.detail && a.read === b.read && a.published === b.published && a.fails === b.fails
    && (a.reply?.status ?? null) === (b.reply?.status ?? null) && (a.reply?.has_ram ?? null) === (b.reply?.has_ram ?? null);
}

/**
 * Pair A's items with B's by identity: the whole identity first, then all
 * but the query position, each B item used once, in A's order.
 */
export function compareByIdentity<T>(a: readonly Comparable<T>[], b: readonly Comparable<T>[]): Comparison<T> {
  const partner = new Array<number>(a.length).fill(-1);
  const used = new Set<number>();
  for (const key of [withPlace, withoutPlace]) {
    const free = new Map<string, number[]>();
    b.forEach((y, j) => {
      if (used.has(j)) return;
      const k = key(y.identity);
      free.set(k, [...(free.get(k) ?? []), j]);
    });
    a.forEach((x, i) => {
      if (partner[i] !== -1) return;
      const j = free.get(key(x.identity))?.shift();
      if (j === undefined) return;
      partner[i] = j;
      used.add(j);
    });
  }
  const pairs: Pair<T>[] = [];
  const onlyA: Comparable<T>[] = [];
  a.forEach((x, i) => {
    const j = partner[i]!;
    if (j < 0) {
      onlyA.push(x);
      return;
    }
    const y = b[j]!;
    pairs.push({ a: x, b: y, samePlace: x.identity.query === y.identity.query, changed: !sameOutcome(x.outcome, y.outcome) });
  });
  return { pairs, onlyA, onlyB: b.filter((_, j) => !used.has(j)) };
}

/** A session with its analysis: what a comparison reads. */
export interface SessionBundle {
  session: Session;
  threads: readonly Thread[];
  events: readonly TraceEvent[];
  analysis: Analysis | null;
}

/** Per query: what the reader read and published and what the client got back. */
export interface QueryOutcome {
  query: string;
  /** Position of the query in its session, from 1. */
  n: number;
  read: string | null;
  published: string | null;
  reply: { seq: number; status: string | null; has_ram: boolean } | null;
  verdict: Verdict | null;
  /** Findings whose query this is. */
  findings: string[];
}

function inSeqOrder(events: readonly TraceEvent[]): readonly TraceEvent[] {
  for (let i = 1; i < events.length; i++) {
    if (events[i]!.seq <= events[i - 1]!.seq) return [...events].sort((x, y) => x.seq - y.seq);
  }
  return events;
}

/** Every query of a run in order of its first event, with what it read, published and got back. */
export function queryOutcomes(run: SessionBundle): QueryOutcome[] {
  const table = run.session.target.status_table;
  const byId = new Map<string, QueryOutcome>();
  const order: QueryOutcome[] = [];
  const openOnThread = new Map<number, QueryOutcome>();
  const get = (id: string): QueryOutcome => {
    let q = byId.get(id);
    if (!q) {
      q = { query: id, n: order.length + 1, read: null, published: null, reply: null, verdict: null, findings: [] };
      byId.set(id, q);
      order.push(q);
    }
    return q;
  };
  const verdicts = new Map<number, Verdict>();
  for (const v of run.analysis?.replies ?? []) if (v.reply_seq !== null) verdicts.set(v.reply_seq, v);
  for (const f of run.analysis?.findings ?? []) {
    if (f.reply?.reply_seq != null) verdicts.set(f.reply.reply_seq, f.reply);
  }
  for (const e of inSeqOrder(run.events)) {
    switch (e.kind) {
      case 'query-begin': {
        const q = get(e.data.query);
        if (e.thread !== null) openOnThread.set(e.thread, q);
        break;
      }
      case 'query-end': {
        const q = get(e.data.query);
        if (e.thread !== null && openOnThread.get(e.thread) === q) openOnThread.delete(e.thread);
        break;
      }
      case 'read': {
        const q = e.thread !== null ? openOnThread.get(e.thread) : undefined;
        if (q && q.read === null) q.read = stateName(e.data.value, table);
        break;
      }
      case 'publish': {
        const q = e.thread !== null ? openOnThread.get(e.thread) : undefined;
        if (q) q.published = stateName(e.data.value, table);
        break;
      }
      case 'reply': {
        // A reply with no query id (imported logs) is a query of its own.
        const q = get(e.data.query ?? `reply #${e.seq}`);
        q.reply = { seq: e.seq, status: e.data.status, has_ram: e.data.has_ram };
        q.verdict = verdicts.get(e.seq) ?? null;
        break;
      }
      default:
        break;
    }
  }
  for (const f of run.analysis?.findings ?? []) {
    const id = f.query?.id;
    if (id && byId.has(id)) byId.get(id)!.findings.push(f.id);
  }
  return order;
}

/** A run's findings as Comparables; `queries` are the run's queryOutcomes (for the positions). */
export function findingComparables(run: SessionBundle, queries: readonly QueryOutcome[] = queryOutcomes(run)): Comparable<Finding>[] {
  const table = run.session.target.status_table;
  const position = new Map(queries.map((q) => [q.query, q.n]));
  const probeOf = new Map<number, string | null>();
  const wanted = new Set((run.analysis?.findings ?? []).flatMap((f) => (f.read ? [f.read.seq] : [])));
  for (const e of run.events) if (wanted.has(e.seq)) probeOf.set(e.seq, e.probe);
  const roles = threadRoles(run.events);
  // A reader inside a query answers queries, whether or not its thread is known.
  const role = (f: Finding): string => (f.query ? 'main' : f.reader.tid !== null ? roles.get(f.reader.tid) ?? 'other' : 'unknown');
  return (run.analysis?.findings ?? []).map((f) => ({
    identity: {
      reader: role(f),
      readPoint: f.read ? probeOf.get(f.read.seq) ?? 'read' : null,
      transition: f.crossing.map((c) => `${stateName(c.old, table) ?? '?'} -> ${stateName(c.new, table) ?? '?'}`).join(', '),
      query: f.query?.id ? position.get(f.query.id) ?? null : null,
    },
    outcome: {
      class: f.class,
      detail: null,
      read: f.read ? stateName(f.read.value, table) : null,
      published: f.publish ? stateName(f.publish.value, table) : null,
      reply: f.reply ? { status: f.reply.status, has_ram: f.reply.has_ram } : null,
      fails: f.reply?.old_libvirt === 'fails',
    },
    item: f,
  }));
}

export interface QueryPair {
  n: number;
  a: QueryOutcome | null;
  b: QueryOutcome | null;
  same: boolean;
}

export interface SessionComparison {
  findings: Comparison<Finding>;
  /** Queries paired by order. */
  queries: QueryPair[];
  /** Queries whose outcome differs. */
  differing: number;
}

function sameQuery(a: QueryOutcome | null, b: QueryOutcome | null): boolean {
  if (!a || !b) return false;
  return a.published === b.published && a.reply?.status === b.reply?.status && a.reply?.has_ram === b.reply?.has_ram;
}

/** Two runs side by side: findings paired by identity, queries by order. */
export function compareSessions(a: SessionBundle, b: SessionBundle): SessionComparison {
  const qa = queryOutcomes(a);
  const qb = queryOutcomes(b);
  const queries: QueryPair[] = [];
  let differing = 0;
  for (let i = 0; i < Math.max(qa.length, qb.length); i++) {
    const pa = qa[i] ?? null;
    const pb = qb[i] ?? null;
    const same = sameQuery(pa, pb);
    if (!same) differing++;
    queries.push({ n: i + 1, a: pa, b: pb, same });
  }
  return { findings: compareByIdentity(findingComparables(a, qa), findingComparables(b, qb)), queries, differing };
}

/* ------------------------------------------------------------------ */
/* Hunts */

/** The transition a hunt column stands for, "setup -> active"; the control column holds the reader with none. */
function columnTransition(v: HuntView, col: string): string {
  if (col === CONTROL) return CONTROL;
  const c = v.data.columns.find((x) => x.key === col);
  return c ? `${c.old} -> ${c.new}` : col;
}

/** What a cell's reply was and whether old libvirt fails the job on it; nothing for a cell that got no reply. */
function cellReply(c: HuntCell): Pick<Outcome, 'reply' | 'fails'> {
  if (c.data.reply === null || c.data.reply === undefined) return { reply: null, fails: false };
  const facts = replyFacts(c.data.reply);
  return { reply: { status: facts.status, has_ram: facts.has_ram }, fails: judgeFacts(facts, 'query-migrate', null).verdict.old_libvirt === 'fails' };
}

/**
 * A hunt's cells as Comparables, in the matrix's order (read points as
 * queries execute them, then the transitions, then the control): each cell
 * is what it is by name, the read point and the transition's state names,
 * so a hunt of another build with another list pairs what it shares.
 */
export function huntCellComparables(v: HuntView): Comparable<HuntCell>[] {
  const cols = [...v.data.columns.map((c) => c.key), CONTROL];
  const place = new Map(v.data.rows.flatMap((r) => cols.map((col) => JSON.stringify([r.name, col]))).map((k, i) => [k, i]));
  const rank = (c: HuntCell): number => place.get(JSON.stringify([c.row, c.col])) ?? place.size;
  // Stable: a cell of no listed row or column (a hunt cut before it learned them) keeps the store's order, last.
  return [...v.cells].sort((x, y) => rank(x) - rank(y)).map((c) => ({
    identity: { reader: 'main', readPoint: c.row, transition: columnTransition(v, c.col), query: null },
    outcome: { class: c.class, detail: c.data.note, read: null, published: null, ...cellReply(c) },
    item: c,
  }));
}

export interface HuntComparison {
  /** Cells paired by read point and transition, in A's matrix order; the unpaired ones. */
  cells: Comparison<HuntCell>;
  /** Read points only one hunt has, by name, in its order. */
  readPoints: { onlyA: string[]; onlyB: string[] };
  /** Transitions only one hunt learned, "old -> new", in its order. */
  transitions: { onlyA: string[]; onlyB: string[] };
}

/** Two hunts cell by cell: typically one build unpatched and patched, or two builds' hunts. Pure. */
export function compareHunts(a: HuntView, b: HuntView): HuntComparison {
  const points = (v: HuntView): string[] => v.data.rows.map((r) => r.name);
  const transitions = (v: HuntView): string[] => v.data.columns.map((c) => columnTransition(v, c.key));
  const apart = (x: string[], y: string[]): string[] => x.filter((n) => !y.includes(n));
  return {
    cells: compareByIdentity(huntCellComparables(a), huntCellComparables(b)),
    readPoints: { onlyA: apart(points(a), points(b)), onlyB: apart(points(b), points(a)) },
    transitions: { onlyA: apart(transitions(a), transitions(b)), onlyB: apart(transitions(b), transitions(a)) },
  };
}
