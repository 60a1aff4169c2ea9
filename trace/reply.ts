import { normalizeStatusName } from './status.js';

/*
 * The one reader of query-migrate replies: a QMP message or return object
 * (as the recorder, a transcript or a libvirt log carries it), its JSON
 * text, or the text HMP `info migrate` prints. It says which form the reply
 * has, its status, whether `ram` is there and which of the fields whose
 * presence QEMU decides per status (the reply's shape) it carries.
 *
 * replyFacts() reads a body; replyData() is what a reply event stores
 * (status and ram presence next to the body, so a table can show them
 * without reading the body again). What a reply means for libvirt, and what
 * QEMU fills for a status, is the analyzer's (analyzer/verdict.ts).
 */

export const TIME_FIELDS = ['total-time', 'setup-time', 'expected-downtime', 'downtime'] as const;
/** The fields whose presence QEMU decides per status: the reply's shape. */
export const SHAPE_FIELDS = [...TIME_FIELDS, 'ram'] as const;

const RAM_KEYS = ['transferred', 'remaining', 'total'] as const;

export type ReplyForm = 'qmp' | 'hmp' | 'empty' | 'error' | 'unknown';

export interface ReplyFacts {
  form: ReplyForm;
  status: string | null;
  has_ram: boolean;
  time_fields: string[];
  /** SHAPE_FIELDS present, in SHAPE_FIELDS order. */
  fields: string[];
  /** transferred/remaining/total absent from a present `ram` (libvirt fails on those). */
  ram_missing: string[];
  /** The error text of an error reply. */
  error: string | null;
}

/** What a reply event stores about its body. */
export interface ReplyData {
  query: string | null;
  /** 'query-migrate' (QMP) or 'info migrate' (HMP text). */
  command: string;
  status: string | null;
  has_ram: boolean;
  body: unknown;
}

/** normalizeStatusName, skipping the regexes for names already in QAPI form (every QMP reply). */
export function normalizeReplyStatus(name: string): string {
  return /^[a-z-]+$/.test(name) ? name : normalizeStatusName(name);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The facts of a QMP or HMP reply, from the shape fields found in it. */
function factsFromFields(form: ReplyForm, status: string | null, present: Set<string>, ramMissing: string[]): ReplyFacts {
  const fields = SHAPE_FIELDS.filter((f) => present.has(f));
  return { form, status, has_ram: present.has('ram'), time_fields: fields.filter((f) => f !== 'ram'), fields, ram_missing: ramMissing, error: null };
}

function errorFacts(error: string): ReplyFacts {
  return { form: 'error', status: null, has_ram: false, time_fields: [], fields: [], ram_missing: [], error };
}

function qmpFacts(obj: Record<string, unknown>): ReplyFacts {
  const present = new Set<string>();
  for (const f of SHAPE_FIELDS) if (obj[f] !== undefined) present.add(f);
  const ram = obj['ram'];
  const ramMissing = isObject(ram) ? RAM_KEYS.filter((k) => ram[k] === undefined) : [];
  const status = typeof obj['status'] === 'string' ? normalizeReplyStatus(obj['status']) : null;
  const keys = Object.keys(obj).filter((k) => k !== 'blocked-reasons');
  return factsFromFields(status === null && keys.length === 0 ? 'empty' : 'qmp', status, present, ramMissing);
}

/*
 * HMP `info migrate` text. Two layouts: up to 10.0 one line per field
 * ("Migration status:", "total time:", "expected downtime:", "downtime:",
 * "setup:", "transferred ram:" ...); 10.1 regrouped them ("Status:",
 * "Time (ms): total=.., setup=.., exp_down=.., down=..", "RAM info:").
 * Old HMP prints "total time" whenever there is a status, even when QMP would
 * leave total-time out: compare HMP replies with HMP replies only.
 */
function hmpFacts(text: string): ReplyFacts {
  if (/^\s*Error:/m.test(text) && !/^(?:Migration status|Status):/m.test(text)) return errorFacts(text.trim());
  const m = /^(?:Migration status|Status):\s*([A-Za-z_-]+)/m.exec(text);
  const status = m ? normalizeStatusName(m[1]!) : null;
  const present = new Set<string>();
  if (/^total time:/m.test(text)) present.add('total-time');
  if (/^expected downtime:/m.test(text)) present.add('expected-downtime');
  if (/^downtime:/m.test(text)) present.add('downtime');
  if (/^setup:\s*\d/m.test(text)) present.add('setup-time');
  const t = /^Time \(ms\):(.*)$/m.exec(text);
  if (t) {
    present.add('total-time');
    if (/\bsetup=/.test(t[1]!)) present.add('setup-time');
    if (/\bexp_down=/.test(t[1]!)) present.add('expected-downtime');
    if (/\bdown=/.test(t[1]!)) present.add('downtime');
  }
  let ramMissing: string[] = [];
  const ramAt = text.search(/^RAM info:/m);
  if (ramAt >= 0) {
    present.add('ram');
    const ramText = text.slice(ramAt);
    const has = { transferred: /\btransferred=/, remaining: /\bremain=/, total: /\btotal=/ };
    ramMissing = RAM_KEYS.filter((k) => !has[k].test(ramText));
  } else if (/^(?:transferred|remaining|total) ram:/m.test(text)) {
    present.add('ram');
    const has = { transferred: /^transferred ram:/m, remaining: /^remaining ram:/m, total: /^total ram:/m };
    ramMissing = RAM_KEYS.filter((k) => !has[k].test(text));
  }
  return factsFromFields(status === null && present.size === 0 ? 'empty' : 'hmp', status, present, ramMissing);
}

/**
 * Read a reply body: a QMP return object, a whole QMP message
 * ({"return": ...} / {"error": ...}), its JSON text, or HMP text. When the
 * body says nothing usable the recorder's own status/has_ram stand in.
 */
export function replyFacts(body: unknown, fallback?: { status: string | null; has_ram: boolean }): ReplyFacts {
  let b = body;
  if (typeof b === 'string') {
    const s = b.trim();
    if (s.startsWith('{')) {
      try {
        b = JSON.parse(s) as unknown;
      } catch {
        // Not JSON after all: treat as monitor text.
      }
    }
  }
  if (typeof b === 'string') return hmpFacts(b);
  if (isObject(b)) {
    if (isObject(b['error'])) {
      const e = b['error'];
      return errorFacts(typeof e['desc'] === 'string' ? e['desc'] : typeof e['class'] === 'string' ? e['class'] : 'error');
    }
    if ('return' in b) {
      const r = b['return'];
      if (typeof r === 'string') return hmpFacts(r);
      if (isObject(r)) return qmpFacts(r);
    } else {
      return qmpFacts(b);
    }
  }
  const status = fallback?.status ? normalizeStatusName(fallback.status) : null;
  const has_ram = fallback?.has_ram ?? false;
  return {
    form: 'unknown', status, has_ram, time_fields: [], fields: has_ram ? ['ram'] : [], ram_missing: [], error: null,
  };
}

/** A reply event's data for a body as the monitor sent it (see replyFacts for the forms). */
export function replyData(query: string | null, command: string, body: unknown): ReplyData {
  const f = replyFacts(body);
  return { query, command, status: f.status, has_ram: f.has_ram, body };
}
