import { SHAPE_FIELDS, normalizeReplyStatus as norm, replyFacts, type ReplyFacts, type ReplyForm } from '../trace/reply.js';
import type { EventOf } from '../trace/schema.js';
import { RAM_REQUIRED_BY_OLD_LIBVIRT } from '../trace/status.js';
import type { Verdict } from './types.js';

/*
 * What a query-migrate / info migrate reply says, and what libvirt does with it.
 *
 * libvirt behaviour, read in libvirt's src/qemu/qemu_monitor_json.c,
 * qemuMonitorJSONGetMigrationStatsReply():
 *  - libvirt/libvirt at 001769452b3610f17f223e49c7295c634a69ae98 (current): for
 *    active, postcopy-active, postcopy-paused, postcopy-recover,
 *    postcopy-recover-setup, completed, cancelling, pre-switchover and device it
 *    parses `ram` only `if (ram)`: a missing `ram` is tolerated. A `ram` without
 *    transferred/remaining/total still fails ("migration was active, but RAM
 *    'transferred' data was missing").
 *  - the older form of the same function (virJSONValuePtr era, same file): for
 *    ACTIVE, POSTCOPY (postcopy-active), COMPLETED and CANCELLING it does
 *    `if (!ram) { "migration was active, but no RAM info was set"; return -1; }`.
 *    That is RAM_REQUIRED_BY_OLD_LIBVIRT. Even older releases (the JSON
 *    GetMigrationStatusReply of libvirt 1.x) checked ACTIVE, CANCELLING and
 *    COMPLETED only; postcopy-active did not exist then.
 *  - both: no `status` -> "info migration reply was missing return status";
 *    a status string libvirt has no enum value for -> "unexpected migration
 *    status in X"; an `error` reply -> qemuMonitorJSONCheckError's
 *    "unable to execute QEMU command 'query-migrate': DESC".
 *  - downtime is taken from `downtime` for completed and from
 *    `expected-downtime` otherwise: which is why a foreign time field matters.
 *
 * Reading a reply (its form, status, ram, shape fields) is trace/reply.ts.
 */

// The reply reader lives in trace/reply.ts; these names stay importable from here for the analyzer's callers.
export { SHAPE_FIELDS, TIME_FIELDS, replyFacts, type ReplyFacts, type ReplyForm } from '../trace/reply.js';

export const LIBVIRT_NO_RAM = 'migration was active, but no RAM info was set';
export const LIBVIRT_NO_STATUS = 'info migration reply was missing return status';

/** Statuses for which current libvirt parses `ram` when it is there. */
const LIBVIRT_PARSES_RAM: ReadonlySet<string> = new Set([
  'active', 'postcopy-active', 'postcopy-paused', 'postcopy-recover', 'postcopy-recover-setup',
  'completed', 'cancelling', 'pre-switchover', 'device',
]);

/**
 * Status strings qemuMonitorMigrationStatusTypeFromString knows. QEMU never
 * sends "none" (it replies `{}`), and libvirt has no "colo".
 */
const LIBVIRT_KNOWS: ReadonlySet<string> = new Set([
  'inactive', 'setup', 'active', 'pre-switchover', 'device', 'postcopy-active', 'postcopy-paused',
  'postcopy-recover', 'postcopy-recover-setup', 'completed', 'failed', 'cancelling', 'cancelled',
  'wait-unplug',
]);

/**
 * fill_source_migration_info() by status (5.2 to 10.x): the SETUP-like
 * branches only set has_status; the ACTIVE-like branches and COMPLETED call
 * populate_time_info() and populate_ram_info(). populate_time_info() itself
 * re-reads s->state: downtime for COMPLETED, expected-downtime otherwise.
 * postcopy-recover-setup (9.1) and postcopy-device (10.2) are assumed to sit
 * with the ACTIVE-like branch, as their siblings do.
 */
export const ACTIVE_LIKE: ReadonlySet<string> = new Set([
  'active', 'cancelling', 'postcopy-active', 'pre-switchover', 'device', 'postcopy-paused',
  'postcopy-recover', 'postcopy-recover-setup', 'postcopy-device',
]);
const STATUS_ONLY: ReadonlySet<string> = new Set(['setup', 'failed', 'cancelled', 'colo', 'wait-unplug']);

/** The shape QEMU gives an undisturbed reply of this status, or null when we do not know. */
export function qemuShape(status: string | null): string[] | null {
  if (status === null) return null;
  const s = norm(status);
  if (s === 'completed') return ['total-time', 'setup-time', 'downtime', 'ram'];
  if (ACTIVE_LIKE.has(s)) return ['total-time', 'setup-time', 'expected-downtime', 'ram'];
  if (STATUS_ONLY.has(s)) return [];
  return null;
}

/** Undisturbed reply shapes of a session, per command and status. */
export interface ShapeBaseline {
  /** `kind` is 'qmp' or 'hmp' for parsed replies (see formKey), else the command. */
  lookup(kind: string, status: string): { fields: string[]; count: number } | null;
}

function formKey(command: string, form: ReplyForm): string {
  // HMP and QMP replies differ in what they always print; never mix them.
  return form === 'hmp' ? 'hmp' : form === 'qmp' ? 'qmp' : command;
}

/**
 * The majority shape of each (command, status) among the replies not in
 * `exclude` (the ones a finding already explains). Majority rather than union:
 * a race reply that no finding cites must not teach the baseline its fields.
 */
export function shapeBaseline(replies: readonly EventOf<'reply'>[], exclude?: ReadonlySet<number>): ShapeBaseline {
  const entries: { command: string; facts: ReplyFacts }[] = [];
  for (const r of replies) {
    if (!exclude?.has(r.seq)) entries.push({ command: r.data.command, facts: replyFacts(r.data.body, r.data) });
  }
  return shapeBaselineFrom(entries);
}

/** shapeBaseline over replies already read (a large session reads each body once). */
export function shapeBaselineFrom(entries: Iterable<{ command: string; facts: ReplyFacts }>): ShapeBaseline {
  const acc = new Map<string, { count: number; per: Map<string, number> }>();
  for (const { command, facts: f } of entries) {
    if (f.status === null || (f.form !== 'qmp' && f.form !== 'hmp')) continue;
    const key = `${formKey(command, f.form)}\u0000${f.status}`;
    let a = acc.get(key);
    if (!a) acc.set(key, (a = { count: 0, per: new Map() }));
    a.count++;
    for (const field of f.fields) a.per.set(field, (a.per.get(field) ?? 0) + 1);
  }
  const shapes = new Map<string, { fields: string[]; count: number }>();
  for (const [key, a] of acc) {
    const fields = SHAPE_FIELDS.filter((field) => (a.per.get(field) ?? 0) * 2 > a.count);
    shapes.set(key, { fields, count: a.count });
  }
  return {
    lookup(kind, status) {
      return shapes.get(`${kind}\u0000${norm(status)}`) ?? null;
    },
  };
}

export interface ShapeCheck {
  status: string;
  against: 'session' | 'qemu';
  /** Undisturbed replies the session reference rests on (0 for the QEMU table). */
  reference_count: number;
  reference: string[];
  missing: string[];
  foreign: string[];
}

/** Compare a reply's fields with the session's undisturbed shape, else with QEMU's. */
export function checkShape(facts: ReplyFacts, command: string, baseline?: ShapeBaseline): ShapeCheck | null {
  if (facts.status === null || (facts.form !== 'qmp' && facts.form !== 'hmp')) return null;
  const ref = baseline?.lookup(formKey(command, facts.form), facts.status) ?? null;
  let reference: string[];
  let against: ShapeCheck['against'];
  let present = facts.fields;
  if (ref) {
    reference = ref.fields;
    against = 'session';
  } else {
    const q = qemuShape(facts.status);
    if (q === null) return null;
    reference = q;
    against = 'qemu';
    // Old HMP prints "total time" for every status and 10.1 HMP only when it is
    // non-zero: neither tells whether QEMU filled it.
    if (facts.form === 'hmp') {
      reference = reference.filter((f) => f !== 'total-time');
      present = present.filter((f) => f !== 'total-time');
    }
  }
  const missing = reference.filter((f) => !present.includes(f));
  const foreign = present.filter((f) => !reference.includes(f));
  return { status: facts.status, against, reference_count: ref?.count ?? 0, reference, missing, foreign };
}

function foreignNote(field: string, status: string): string {
  if (field === 'downtime' && status !== 'completed') return 'downtime (only completed replies have it)';
  if (field === 'expected-downtime' && status === 'completed') return 'expected-downtime (completed replies have downtime instead)';
  return field;
}

/** "shape differs from ...: missing x; foreign y", or null when the shape is as expected. */
export function shapeNote(check: ShapeCheck | null): string | null {
  if (!check || (check.missing.length === 0 && check.foreign.length === 0)) return null;
  const parts: string[] = [];
  if (check.missing.length) parts.push(`missing ${check.missing.join(', ')}`);
  if (check.foreign.length) parts.push(`foreign ${check.foreign.map((f) => foreignNote(f, check.status)).join(', ')}`);
  const ref = check.against === 'session'
    ? `the session's ${check.reference_count} undisturbed ${check.status} ${check.reference_count === 1 ? 'reply' : 'replies'}`
    : `what QEMU fills for ${check.status}`;
  return `shape differs from ${ref}: ${parts.join('; ')}`;
}

export interface ReplyJudgement {
  verdict: Verdict;
  facts: ReplyFacts;
  shape: ShapeCheck | null;
}

export interface ReplyInput {
  command: string;
  status: string | null;
  has_ram: boolean;
  body: unknown;
}

/** judgeReply for data that is not (yet) an event: the model's synthetic replies. */
export function judgeReplyData(data: ReplyInput, seq: number | null, baseline?: ShapeBaseline): ReplyJudgement {
  return judgeFacts(replyFacts(data.body, data), data.command, seq, baseline);
}

/** The verdict on a reply already read with replyFacts. */
export function judgeFacts(facts: ReplyFacts, command: string, seq: number | null, baseline?: ShapeBaseline): ReplyJudgement {
  const shape = checkShape(facts, command, baseline);
  let old: Verdict['old_libvirt'] = 'accepts';
  let cur: Verdict['current_libvirt'] = 'accepts';
  let oldErr: string | null = null;
  let curErr: string | null = null;
  let what: string;

  if (facts.form === 'error') {
    old = cur = 'fails';
    oldErr = curErr = `unable to execute QEMU command 'query-migrate': ${facts.error ?? 'error'}`;
    what = `error reply (${facts.error ?? 'no description'})`;
  } else if (facts.status === null) {
    old = cur = 'fails';
    oldErr = curErr = LIBVIRT_NO_STATUS;
    // libvirt only polls inside a migration job, when QEMU is past NONE; a {}
    // reply is what a query before `migrate` gets, not a symptom of the race.
    what = facts.form === 'empty' ? 'no migration has run (empty reply)' : 'reply without a status';
  } else if (!LIBVIRT_KNOWS.has(facts.status)) {
    old = cur = 'fails';
    oldErr = curErr = `unexpected migration status in ${facts.status}`;
    what = `${facts.status} (a status libvirt does not know)`;
  } else {
    const ramNote = facts.has_ram ? 'with ram' : 'without ram';
    const times = facts.time_fields.length ? ` (${facts.time_fields.join(', ')})` : '';
    what = `${facts.status} ${ramNote}${times}`;
    if (RAM_REQUIRED_BY_OLD_LIBVIRT.has(facts.status) && !facts.has_ram) {
      old = 'fails';
      oldErr = LIBVIRT_NO_RAM;
    }
    if (facts.has_ram && facts.ram_missing.length > 0) {
      const msg = `migration was active, but RAM '${facts.ram_missing[0]}' data was missing`;
      if (RAM_REQUIRED_BY_OLD_LIBVIRT.has(facts.status) && old === 'accepts') {
        old = 'fails';
        oldErr = msg;
      }
      if (LIBVIRT_PARSES_RAM.has(facts.status)) {
        cur = 'fails';
        curErr = msg;
      }
    }
  }

  let libvirt: string;
  if (old === cur) {
    libvirt = old === 'accepts' ? 'libvirt accepts it' : `libvirt fails: "${oldErr}"`;
  } else {
    libvirt = `old libvirt ${old === 'fails' ? `fails: "${oldErr}"` : 'accepts it'}, current libvirt ${cur === 'fails' ? `fails: "${curErr}"` : 'accepts it'}`;
  }
  const note = shapeNote(shape);
  const summary = `${what}: ${libvirt}${note ? `; ${note}` : ''}`;
  return {
    verdict: {
      reply_seq: seq,
      status: facts.status,
      has_ram: facts.has_ram,
      time_fields: facts.time_fields,
      old_libvirt: old,
      current_libvirt: cur,
      libvirt_error: oldErr ?? curErr,
      shape: shape && (shape.missing.length > 0 || shape.foreign.length > 0)
        ? { against: shape.against, missing: shape.missing, foreign: shape.foreign } : null,
      summary,
    },
    facts,
    shape,
  };
}

/**
 * A session's replies judged once per shape. A long recording polls
 * hundreds of thousands of times with a handful of distinct replies, and
 * every reply of one shape gets the same verdict but for its seq: keeping
 * each reply's body until the end, and a verdict text and arrays per reply,
 * made the analysis of a million events hold 140 MB. facts() reads a reply
 * as it comes and returns the one facts object of its shape; after
 * setBaseline(), verdict() and judgement() judge each (shape, command) once
 * and share its text, arrays and shape check.
 */
export class ReplyShapes {
  private readonly factsByKey = new Map<string, ReplyFacts>();
  private readonly judged = new Map<ReplyFacts, Map<string, ReplyJudgement>>();
  private baseline: ShapeBaseline | undefined;

  facts(data: { body: unknown; status: string | null; has_ram: boolean }): ReplyFacts {
    const f = replyFacts(data.body, data);
    // The lists hold field names from fixed sets (no commas); the two free texts go last, the first with its length.
    const st = f.status ?? '';
    const key = `${f.form} ${f.has_ram} ${f.time_fields} ${f.fields} ${f.ram_missing} ${f.status === null ? -1 : st.length}:${st}${f.error === null ? '' : `:${f.error}`}`;
    const known = this.factsByKey.get(key);
    if (known) return known;
    this.factsByKey.set(key, f);
    return f;
  }

  /** The baseline every later judgement is against (judgements made before are dropped). */
  setBaseline(baseline: ShapeBaseline): void {
    this.baseline = baseline;
    this.judged.clear();
  }

  judgement(facts: ReplyFacts, command: string, seq: number | null): ReplyJudgement {
    const j = this.shared(facts, command);
    return { ...j, verdict: { ...j.verdict, reply_seq: seq } };
  }

  verdict(facts: ReplyFacts, command: string, seq: number | null): Verdict {
    return { ...this.shared(facts, command).verdict, reply_seq: seq };
  }

  private shared(facts: ReplyFacts, command: string): ReplyJudgement {
    let byCommand = this.judged.get(facts);
    if (!byCommand) this.judged.set(facts, (byCommand = new Map()));
    let j = byCommand.get(command);
    if (!j) byCommand.set(command, (j = judgeFacts(facts, command, null, this.baseline)));
    return j;
  }
}

export function judgeReplyDetailed(reply: EventOf<'reply'>, baseline?: ShapeBaseline): ReplyJudgement {
  return judgeReplyData(reply.data, reply.seq, baseline);
}

/**
 * What a reply says and what libvirt does with it. With a baseline (the
 * session's undisturbed replies, see shapeBaseline) the summary also says
 * which fields are missing or foreign for that status.
 */
export function judgeReply(reply: EventOf<'reply'>, baseline?: ShapeBaseline): Verdict {
  return judgeReplyDetailed(reply, baseline).verdict;
}
