import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCommand } from '../helpers/cli.js';
import { register } from '../../cli/import.js';
import { TraceStore } from '../../trace/store.js';

/** `migrace import session FILE... --db DB`: its stdout, stderr and exit code. */
function importSession(files: string[], db: string) {
  return runCommand(register, ['import', 'session', ...files, '--db', db]);
}

describe('migrace import session', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'migrace-import-session-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a gzipped export (by its magic bytes) as it reads a plain one', async () => {
    const text = readFileSync('samples/sessions/minimig-lp1994002-unpatched.json');
    const gz = join(dir, 'export.json.gz');
    writeFileSync(gz, gzipSync(text));
    const odd = join(dir, 'export-no-suffix');
    writeFileSync(odd, gzipSync(text));
    const plain = join(dir, 'export.json');
    writeFileSync(plain, text);
    const db = join(dir, 'trace.db');
    const r = await importSession([gz, odd, plain], db);
    expect(r.err).toBe('');
    expect(r.code).toBeUndefined();
    expect(r.out).toMatch(/^session 1: .*: 17 events/m);
    expect(r.out).toMatch(/^session 3: .*: 17 events/m);
    const store = TraceStore.open(db, { readonly: true });
    try {
      expect(store.listSessions().map((s) => s.events)).toEqual([17, 17, 17]);
      expect(store.events(1)).toEqual(store.events(3));
    } finally {
      store.close();
    }
  });

  it('a truncated gzip or a file that is not JSON is an import error naming the file', async () => {
    const gz = gzipSync(readFileSync('samples/sessions/minimig-lp1994002-unpatched.json'));
    const cut = join(dir, 'cut.json.gz');
    writeFileSync(cut, gz.subarray(0, gz.length >> 1));
    const db = join(dir, 'trace.db');
    const r = await importSession([cut], db);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/cut\.json\.gz: truncated gzip data/);
    const notJson = join(dir, 'not.json.gz');
    writeFileSync(notJson, gzipSync('hello'));
    const n = await importSession([notJson], db);
    expect(n.code).toBe(1);
    expect(n.err).toMatch(/not\.json\.gz is not JSON/);
  });
});
