import { replyFacts, judgeFacts } from './verdict.js';

/**
 * What undisturbed runs teach a hunt, and how a forced reply is judged by
 * it. Pure: the baseline runs (analyzer/hunt.ts) hand in their replies and
 * transitions.
 *
 * Parts, in order:
 * - the oracle: per status, the fields of the undisturbed replies (always,
 *   sometimes, and by implication never present) and what old and current
 *   libvirt do with them;
 * - judgeReplyShape(): a forced reply against the oracle of its own status:
 *   broken or consistent, and the difference in a few words;
 * - the columns: every distinct old -> new that landed in a baseline run,
 *   with the scenario, the thread and the scenario step it came after.
 */

/* ------------------------------------------------------------------ */
/* The oracle */

export type LibvirtStance = 'accepts' | 'fails' | 'mixed';

export interface StatusShape {
  status: string;
  /** Undisturbed replies of this status the shape rests on. */
  replies: number;
  /** Top-level fields every one of them had (status itself left out). */
  always: string[];
  /** Fields some had and some did not. Anything else was never seen with this status. */
  sometimes: string[];
  old_libvirt: LibvirtStance;
  current_libvirt: LibvirtStance;
}

export type Oracle = Record<string, StatusShape>;

/** The top-level fields of a reply body, or null for an error or a body that is not a reply. */
export function replyFields(body: unknown): { status: string | null; fields: string[] } | null {
  let b = body;
  if (typeof b === 'string') {
    try {
      b = JSON.parse(b) as unknown;
    } catch {
      return null;
    }
  }
  if (typeof b !== 'object' || b === null || Array.isArray(b)) return null;
  const obj = b as Record<string, unknown>;
  if ('error' in obj) return null;
  const ret = 'return' in obj ? obj.return : obj;
  if (typeof ret !== 'object' || ret === null || Array.isArray(ret)) return null;
  const r = ret as Record<string, unknown>;
  return { status: typeof r.status === 'string' ? r.status : null, fields: Object.keys(r).filter((k) => k !== 'status').sort() };
}

function stance(values: Array<'accepts' | 'fails'>): LibvirtStance {
  if (values.every((v) => v === 'accepts')) return 'accepts';
  if (values.every((v) => v === 'fails')) return 'fails';
  return 'mixed';
}

/** The oracle of a build: every undisturbed reply of every scenario, grouped by status. */
export function buildOracle(bodies: readonly unknown[]): Oracle {
  const by = new Map<string, { fieldSets: string[][]; old: Array<'accepts' | 'fails'>; cur: Array<'accepts' | 'fails'> }>();
  for (const body of bodies) {
    const f = replyFields(body);
    if (!f?.status) continue;
    let acc = by.get(f.status);
    if (!acc) by.set(f.status, (acc = { fieldSets: [], old: [], cur: [] }));
    acc.fieldSets.push(f.fields);
    const v = judgeFacts(replyFacts(body), 'query-migrate', null).verdict;
    acc.old.push(v.old_libvirt);
    acc.cur.push(v.current_libvirt);
  }
  const oracle: Oracle = {};
  for (const status of [...by.keys()].sort()) {
    const acc = by.get(status)!;
    const all = [...new Set(acc.fieldSets.flat())].sort();
    const always = all.filter((k) => acc.fieldSets.every((s) => s.includes(k)));
    oracle[status] = {
      status, replies: acc.fieldSets.length, always, sometimes: all.filter((k) => !always.includes(k)),
      old_libvirt: stance(acc.old), current_libvirt: stance(acc.cur),
    };
  }
  return oracle;
}

/* ------------------------------------------------------------------ */
/* Judging a forced reply */

export interface ShapeJudgement {
  class: 'broken' | 'consistent';
  status: string | null;
  fields: string[];
  /** Fields never seen with this status in an undisturbed reply. */
  foreign: string[];
  /** Fields every undisturbed reply of this status had. */
  missing: string[];
  /** What libvirt does with it where it accepts the undisturbed replies; null otherwise. */
  libvirt: string | null;
  /** A few words: "active without ram, total-time; old libvirt fails". Null when consistent and unremarkable. */
  note: string | null;
}

export function judgeReplyShape(oracle: Oracle, body: unknown): ShapeJudgement {
  const f = replyFields(body);
  const facts = replyFacts(body);
  const verdict = judgeFacts(facts, 'query-migrate', null).verdict;
  if (!f) {
    const why = facts.form === 'error' ? `an error reply (${facts.error ?? 'no description'})` : 'no reply';
    return { class: 'broken', status: null, fields: [], foreign: [], missing: [], libvirt: null, note: why };
  }
  const status = f.status;
  const shape = status === null ? oracle.none : oracle[status];
  const parts: string[] = [];
  let foreign: string[] = [];
  let missing: string[] = [];
  if (!shape) {
    parts.push(`no undisturbed ${status ?? 'status-less'} reply to compare with`);
  } else {
    foreign = f.fields.filter((k) => !shape.always.includes(k) && !shape.sometimes.includes(k));
    missing = shape.always.filter((k) => !f.fields.includes(k));
    if (missing.length) parts.push(`${status} without ${missing.join(', ')}`);
    if (foreign.length) parts.push(`${status} with ${foreign.join(', ')}`);
  }
  const refused: string[] = [];
  if (verdict.old_libvirt === 'fails' && (!shape || shape.old_libvirt === 'accepts')) refused.push('old');
  if (verdict.current_libvirt === 'fails' && (!shape || shape.current_libvirt === 'accepts')) refused.push('current');
  // Without undisturbed replies of the status, libvirt's refusal alone is the evidence.
  const libvirt = refused.length ? `${refused.join(' and ')} libvirt ${refused.length > 1 ? 'fail' : 'fails'}: "${verdict.libvirt_error ?? 'refused'}"` : null;
  if (libvirt) parts.push(libvirt);
  const broken = foreign.length > 0 || missing.length > 0 || libvirt !== null;
  return { class: broken ? 'broken' : 'consistent', status, fields: f.fields, foreign, missing, libvirt, note: parts.length ? parts.join('; ') : null };
}

/* ------------------------------------------------------------------ */
/* Columns */

export interface LearnedTransition {
  old: string;
  new: string;
  /** The thread that made it: gdb id and name. */
  thread: { tid: number; name: string | null };
  /** Index in the scenario's drive steps of the action it came after. */
  after: number;
}

export interface Column {
  /** `setup->active`. */
  key: string;
  old: string;
  new: string;
  /** The first scenario (in the hunt's order) that produced it: its cells run that scenario. */
  scenario: string;
  /** Every scenario that produced it. */
  scenarios: string[];
  thread: { tid: number; name: string | null };
  after: number;
}

export function columnKey(old: string, nu: string): string {
  return `${old}->${nu}`;
}

/** Every distinct transition, in the order the scenarios (in hunt order) made them. */
export function learnColumns(runs: ReadonlyArray<{ scenario: string; transitions: readonly LearnedTransition[] }>): Column[] {
  const columns = new Map<string, Column>();
  for (const run of runs) {
    for (const t of run.transitions) {
      const key = columnKey(t.old, t.new);
      const known = columns.get(key);
      if (known) {
        if (!known.scenarios.includes(run.scenario)) known.scenarios.push(run.scenario);
        continue;
      }
      columns.set(key, { key, old: t.old, new: t.new, scenario: run.scenario, scenarios: [run.scenario], thread: t.thread, after: t.after });
    }
  }
  return [...columns.values()];
}
