import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MigraceError } from '../../trace/errors.js';
import { SessionWriter, TraceStore } from '../../trace/store.js';
import { DATA_FIELDS } from '../../trace/event-row.js';
import { blankLocation, EventSchema } from '../../trace/schema.js';

/**
 * Rows the store reads back are checked by shape, not re-validated: what a
 * recorder wrote comes back as it was, and a database edited or damaged by
 * something else gives an error naming the event, the session and the field.
 */

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'migrace-rows-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const target = { kind: 'minimig' as const, binary: null, build_id: null, qemu_version: null, variant: 'unknown' as const, status_table: '4.2' as const };

/** A session with one event of every kind a recording writes; returns the path and the session. */
function recorded(): { path: string; id: number } {
  const path = join(dir, 't.db');
  const store = TraceStore.open(path);
  const id = store.createSession({ label: 'rows', origin: 'live', target, profile: null });
  const w = new SessionWriter(store, id);
  const at = { t_ns: 5, wall: '2026-01-01T00:00:00.000Z', thread: 1, ...blankLocation() };
  w.push({ ...at, kind: 'transition', probe: 'transition', data: { addr: '0x10', old: { value: 1, name: 'setup' }, new: { value: 4, name: 'active' } } });
  w.push({ ...at, kind: 'query-begin', data: { query: 'q1' } });
  w.push({ ...at, kind: 'read', data: { value: { value: 1, name: 'setup' } } });
  w.push({ ...at, kind: 'publish', data: { value: { value: 4, name: null } } });
  w.push({ ...at, kind: 'query-end', data: { query: 'q1' } });
  w.push({ ...at, thread: null, kind: 'reply', data: { query: 'q1', command: 'query-migrate', status: 'active', has_ram: false, body: { status: 'active' } } });
  w.push({ ...at, kind: 'hold', data: { role: 'writer', reason: 'at transition' } });
  w.push({ ...at, kind: 'release', data: { role: 'writer', reason: 'state visible' } });
  w.push({ ...at, thread: null, kind: 'note', data: { text: 'hello' } });
  w.close();
  store.finishSession(id, 'complete');
  store.close();
  return { path, id };
}

function damage(path: string, sql: string): void {
  const raw = new Database(path);
  raw.exec(sql);
  raw.close();
}

function readError(path: string, id: number): string {
  const store = TraceStore.open(path, { readonly: true });
  try {
    store.events(id);
  } catch (e) {
    expect(e).toBeInstanceOf(MigraceError);
    expect((e as MigraceError).code).toBe('DB_FOREIGN');
    return (e as MigraceError).message;
  } finally {
    store.close();
  }
  throw new Error('the damaged row was read without an error');
}

describe('event rows read back', () => {
  it('are what the writer was given, every kind', () => {
    const { path, id } = recorded();
    const store = TraceStore.open(path, { readonly: true });
    const events = store.events(id);
    store.close();
    expect(events.map((e) => e.kind)).toEqual(['transition', 'query-begin', 'read', 'publish', 'query-end', 'reply', 'hold', 'release', 'note']);
    expect(events[0]).toEqual({
      seq: 0, t_ns: 5, wall: '2026-01-01T00:00:00.000Z', thread: 1, kind: 'transition', probe: 'transition', pc: null, func: null, file: null, line: null,
      data: { addr: '0x10', old: { value: 1, name: 'setup' }, new: { value: 4, name: 'active' } },
    });
    expect(events[5]).toMatchObject({ thread: null, data: { has_ram: false, body: { status: 'active' } } });
  });

  it('name the event, the session and the field when the data is not what its kind needs', () => {
    const { path, id } = recorded();
    damage(path, `UPDATE events SET data = '{"addr": null, "old": null, "new": {"value": "four", "name": null}}' WHERE seq = 0`);
    expect(readError(path, id)).toMatch(new RegExp(`^event 0 of session ${id} in .*t\\.db is malformed: data\\.new: expected a state`));
  });

  it('name a row whose data is not JSON, an unknown kind, and a column of the wrong type', () => {
    let r = recorded();
    damage(r.path, `UPDATE events SET data = '{"query": ' WHERE seq = 1`);
    expect(readError(r.path, r.id)).toMatch(/^event 1 of session \d+ .* is malformed: data: expected JSON$/);
    rmSync(r.path);
    r = recorded();
    damage(r.path, `UPDATE events SET kind = 'teleport' WHERE seq = 2`);
    expect(readError(r.path, r.id)).toMatch(/event 2 of .* is malformed: kind: expected one of transition, .*, not "teleport"/);
    rmSync(r.path);
    r = recorded();
    damage(r.path, `UPDATE events SET t_ns = 'soon' WHERE seq = 3`);
    expect(readError(r.path, r.id)).toMatch(/event 3 of .* is malformed: t_ns: expected a non-negative integer or null/);
    rmSync(r.path);
    r = recorded();
    damage(r.path, `UPDATE events SET data = '[1, 2]' WHERE seq = 8`);
    expect(readError(r.path, r.id)).toMatch(/event 8 of .* is malformed: data: expected an object/);
  });

  it('check the fields the zod schemas define, kind for kind (reply.body is free-form)', () => {
    const schema = Object.fromEntries(EventSchema.options.map((o) => [o.shape.kind.value, Object.keys(o.shape.data.shape).filter((k) => k !== 'body').sort()]));
    const checked = Object.fromEntries(Object.entries(DATA_FIELDS).map(([kind, fields]) => [kind, fields.map(([k]) => k).sort()]));
    expect(checked).toEqual(schema);
  });
});
