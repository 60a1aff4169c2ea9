import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeJsonWithArray } from '../../cli/json-out.js';
import { register as registerEvents } from '../../cli/events.js';
import { register as registerExport } from '../../cli/export.js';
import { register as registerSessions } from '../../cli/sessions.js';
import { runCommand } from '../helpers/cli.js';
import { tempStore } from '../helpers/db.js';

/** Streamed JSON is byte for byte what JSON.stringify prints, so `events --json` and `export` did not change. */

const collect = (head: Record<string, unknown>, key: string, items: unknown[], indent: number): string => {
  let out = '';
  writeJsonWithArray((s) => { out += s; }, head, key, items, indent);
  return out;
};

describe('writeJsonWithArray', () => {
  const exported = JSON.parse(readFileSync('samples/sessions/minimig-lp1994002-unpatched.json', 'utf8')) as Record<string, unknown> & { events: unknown[] };

  it.each([1, 2])('prints what JSON.stringify(value, null, %i) prints, events one at a time', (indent) => {
    const { events, ...head } = exported;
    expect(collect(head, 'events', events, indent)).toBe(`${JSON.stringify(exported, null, indent)}\n`);
  });

  it('an empty array, text with newlines and quotes, nothing before the array', () => {
    const odd = { note: 'line 1\nline "2"\t</script>', nested: { a: [1, { b: null }] } };
    expect(collect(odd, 'events', [], 2)).toBe(`${JSON.stringify({ ...odd, events: [] }, null, 2)}\n`);
    expect(collect({}, 'events', [odd], 2)).toBe(`${JSON.stringify({ events: [odd] }, null, 2)}\n`);
  });
});

describe('events --json and export through the CLI', () => {
  it('print the session as before: events --json the {session, threads, events} object, export what the store exports', async () => {
    const t = tempStore('migrace-json-out');
    try {
      const id = t.store.importSession(JSON.parse(readFileSync('samples/sessions/minimig-lp1994002-unpatched.json', 'utf8')), 'x');
      const ev = await runCommand(registerEvents, ['events', String(id), '--json', '--db', t.path]);
      expect(ev.err).toBe('');
      expect(JSON.parse(ev.out)).toEqual({ session: t.store.session(id), threads: t.store.threads(id), events: t.store.events(id) });
      const file = join(t.dir, 'out.json');
      const ex = await runCommand(registerExport, ['export', String(id), '-o', file, '--db', t.path]);
      expect(ex.code).toBeUndefined();
      expect(readFileSync(file, 'utf8')).toBe(`${JSON.stringify(t.store.exportSession(id), null, 1)}\n`);
      // A file that cannot be written: one line, and no half file.
      const bad = await runCommand(registerExport, ['export', String(id), '-o', join(t.dir, 'no', 'such', 'dir.json'), '--db', t.path]);
      expect(bad.code).toBe(1);
      expect(bad.err).toMatch(/^migrace: cannot write .*dir\.json: ENOENT/);
    } finally {
      t.cleanup();
    }
  });
});

describe('--json of labels from a trace', () => {
  it('escapes bidi and C1 controls, so the JSON parses back the same but cannot reorder or steer a terminal', async () => {
    const t = tempStore('migrace-json-bidi');
    try {
      const label = 'fix\u202eevil\u009b31m';
      const id = t.store.importSession(JSON.parse(readFileSync('samples/sessions/minimig-lp1994002-unpatched.json', 'utf8')));
      t.store.updateSession(id, { label });
      const r = await runCommand(registerSessions, ['sessions', '--json', '--db', t.path]);
      expect(r.out).not.toMatch(/[\u202e\u009b]/);
      expect(r.out).toContain('fix\\u202eevil\\u009b31m');
      expect((JSON.parse(r.out) as Array<{ label: string }>)[0]!.label).toBe(label);
    } finally {
      t.cleanup();
    }
  });
});
