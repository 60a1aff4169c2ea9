import { MigraceError } from './errors.js';
import type { EventKind, TraceEvent } from './schema.js';

/**
 * An events row the store wrote, turned back into a TraceEvent without a
 * second zod validation: the store validated nothing on the way in that
 * it did not build itself, and zod costs more than SQLite does on a large
 * read. What stays is a structural check, a few typeof tests per row, so a
 * corrupt or hand-edited database gives an error that names the event and
 * the field instead of a crash somewhere in the analyzer. Data from outside
 * (imports, JSON files) is validated by the zod schemas where it enters.
 *
 * Parts: the row as SQLite returns it; per kind, the fields its data must
 * have (mirroring trace/schema.ts; keep them in step); `eventFromRow`.
 */

/**
 * The columns iterateEvents selects, in this order, as SQLite returns a row
 * in raw mode: an array, which better-sqlite3 builds in about 60% of the
 * time an object row takes (0.9 s less per million events here).
 */
export const EVENT_COLUMNS = 'seq, t_ns, wall, thread, kind, probe, pc, func, file, line, data';

export type EventRow = [
  seq: number, t_ns: number | null, wall: string | null, thread: number | null, kind: string,
  probe: string | null, pc: string | null, func: string | null, file: string | null, line: number | null,
  data: string,
];

type Check = (v: unknown) => boolean;

const str: Check = (v) => typeof v === 'string';
const strOrNull: Check = (v) => v === null || typeof v === 'string';
const intOrNull: Check = (v) => v === null || Number.isInteger(v);
const state: Check = (v) => typeof v === 'object' && v !== null && intOrNull((v as { value?: unknown }).value) && strOrNull((v as { name?: unknown }).name);
const stateOrNull: Check = (v) => v === null || state(v);
const bool: Check = (v) => typeof v === 'boolean';

/**
 * What each kind's data must hold, and what a field is expected to be (for
 * the message). test/unit/event-row.test.ts checks the keys against the zod
 * schemas, so the two cannot drift apart unnoticed.
 */
export const DATA_FIELDS: Record<EventKind, Array<[string, Check, string]>> = {
  transition: [['addr', strOrNull, 'a string or null'], ['old', stateOrNull, 'a state or null'], ['new', state, 'a state {value, name}']],
  read: [['value', state, 'a state {value, name}']],
  publish: [['value', state, 'a state {value, name}']],
  'query-begin': [['query', str, 'a string']],
  'query-end': [['query', str, 'a string']],
  reply: [['query', strOrNull, 'a string or null'], ['command', str, 'a string'], ['status', strOrNull, 'a string or null'], ['has_ram', bool, 'true or false']],
  hold: [['role', str, 'a string'], ['reason', str, 'a string']],
  release: [['role', str, 'a string'], ['reason', str, 'a string']],
  note: [['text', str, 'a string']],
};

/** Position in EventRow, name, check, what it should be. */
const COLUMNS: Array<[number, string, Check, string]> = [
  [1, 't_ns', (v) => v === null || (Number.isInteger(v) && (v as number) >= 0), 'a non-negative integer or null'],
  [2, 'wall', strOrNull, 'a string or null'], [3, 'thread', intOrNull, 'an integer or null'], [5, 'probe', strOrNull, 'a string or null'],
  [6, 'pc', strOrNull, 'a string or null'], [7, 'func', strOrNull, 'a string or null'], [8, 'file', strOrNull, 'a string or null'],
  [9, 'line', intOrNull, 'an integer or null'],
];

/**
 * The event a row holds, built with the keys in SessionWriter.push's order:
 * one hidden class for every event, whether recorded or read back.
 */
export function eventFromRow(row: EventRow, where: () => string): TraceEvent {
  const [seq, t_ns, wall, thread, kind, probe, pc, func, file, line, text] = row;
  const bad = (field: string, expected: string): MigraceError =>
    new MigraceError('DB_FOREIGN', `event ${seq} of ${where()} is malformed: ${field}: expected ${expected}`);
  const fields = Object.hasOwn(DATA_FIELDS, kind) ? DATA_FIELDS[kind as EventKind] : undefined;
  if (fields === undefined) throw bad('kind', `one of ${Object.keys(DATA_FIELDS).join(', ')}, not ${JSON.stringify(kind)}`);
  if (!Number.isInteger(seq) || seq < 0) throw bad('seq', 'a non-negative integer');
  for (const [at, column, check, expected] of COLUMNS) if (!check(row[at])) throw bad(column, expected);
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw bad('data', 'JSON');
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw bad('data', 'an object');
  for (const [key, check, expected] of fields) {
    if (!check((data as Record<string, unknown>)[key])) throw bad(`data.${key}`, expected);
  }
  return { seq, t_ns, wall, thread, kind, probe, pc, func, file, line, data } as TraceEvent;
}
