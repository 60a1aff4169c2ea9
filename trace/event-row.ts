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

/** The columns iterateEvents selects, in that order. */
export interface EventRow {
  seq: number; t_ns: number | null; wall: string | null; thread: number | null; kind: string;
  probe: string | null; pc: string | null; func: string | null; file: string | null; line: number | null;
  data: string;
}

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

const COLUMNS: Array<[keyof EventRow, Check, string]> = [
  ['t_ns', (v) => v === null || (Number.isInteger(v) && (v as number) >= 0), 'a non-negative integer or null'],
  ['wall', strOrNull, 'a string or null'], ['thread', intOrNull, 'an integer or null'], ['probe', strOrNull, 'a string or null'],
  ['pc', strOrNull, 'a string or null'], ['func', strOrNull, 'a string or null'], ['file', strOrNull, 'a string or null'],
  ['line', intOrNull, 'an integer or null'],
];

/**
 * The event a row holds; the row object itself is reused (its data column
 * replaced by the parsed data), so a read allocates no second object.
 */
export function eventFromRow(row: EventRow, where: () => string): TraceEvent {
  const bad = (field: string, expected: string): MigraceError =>
    new MigraceError('DB_FOREIGN', `event ${row.seq} of ${where()} is malformed: ${field}: expected ${expected}`);
  const fields = Object.hasOwn(DATA_FIELDS, row.kind) ? DATA_FIELDS[row.kind as EventKind] : undefined;
  if (fields === undefined) throw bad('kind', `one of ${Object.keys(DATA_FIELDS).join(', ')}, not ${JSON.stringify(row.kind)}`);
  if (!Number.isInteger(row.seq) || row.seq < 0) throw bad('seq', 'a non-negative integer');
  for (const [column, check, expected] of COLUMNS) if (!check(row[column])) throw bad(column, expected);
  let data: unknown;
  try {
    data = JSON.parse(row.data);
  } catch {
    throw bad('data', 'JSON');
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw bad('data', 'an object');
  for (const [key, check, expected] of fields) {
    if (!check((data as Record<string, unknown>)[key])) throw bad(`data.${key}`, expected);
  }
  (row as unknown as { data: unknown }).data = data;
  return row as unknown as TraceEvent;
}
