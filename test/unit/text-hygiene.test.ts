import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../helpers/cli.js';
import type { Analysis, Verdict } from '../../analyzer/types.js';
import { analysisText, register as registerAnalyze, replyShape } from '../../cli/analyze.js';
import { table, type Register } from '../../cli/common.js';
import { register as registerEvents } from '../../cli/events.js';
import { register as registerImport } from '../../cli/import.js';
import { register as registerSessions } from '../../cli/sessions.js';

/*
 * Everything the terminal commands print from a trace goes through cleanText:
 * a thread name, label, note or reply must not be able to move the cursor,
 * retitle the window, ring the bell or reorder the line (bidi overrides).
 */

const EVIL = '\x1b]0;pwned\x07\x1b[2J\x1b[31m\r\u202eevil\u2066\x9b\x7f\ud800';
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069\ufeff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

const run = runCommand;

const verdict = (status: string): Verdict => ({
  reply_seq: 7, status, has_ram: false, time_fields: [], old_libvirt: 'fails', current_libvirt: 'accepts',
  libvirt_error: 'no ram', shape: null, summary: `reply ${status}`,
});

describe('terminal output cleans trace text', () => {
  it('table() cleans every cell and keeps the columns aligned', () => {
    const t = table(['A', 'B', 'C'], [[`x${EVIL}`, 1, null], ['plain', `y${EVIL}`, `z${EVIL}`]]);
    expect(t).not.toMatch(UNSAFE);
    expect(t).toContain('\ufffd');
    const lines = t.split('\n');
    expect(lines).toHaveLength(3);
    // One cell per control character: the columns still line up.
    const col = lines[0]!.indexOf('B');
    expect(lines[1]!.slice(col, col + 2)).toBe('1 ');
    expect(lines[2]!.slice(col, col + 1)).toBe('y');
  });

  it('analysisText cleans the label, summaries, statuses and warnings', () => {
    const a: Analysis = {
      session_id: 3,
      findings: [{
        id: 'F1', session_id: 3, class: 'manifested', reader: { tid: 1, name: EVIL, lwp: 2 }, read: null, crossing: [],
        publish: null, query: null, reply: null, evidence: [1, 2], summary: `thread ${EVIL} moved`,
      }],
      replies: [verdict(`act${EVIL}ive`)],
      warnings: [`probe ${EVIL} missing`],
    };
    const text = analysisText(a, `label ${EVIL}`);
    expect(text).not.toMatch(UNSAFE);
    expect(text.split('\n')).toHaveLength(5);
    expect(text).toMatch(/^session 3 \(label .*\): 1 finding\(s\), 1 replies judged$/m);
    expect(text).toMatch(/^ {2}warning: probe .* missing$/m);
  });

  it('replyShape cleans the status and the field names of a reply', () => {
    const s = replyShape({ status: `active${EVIL}`, [`ram${EVIL}`]: {}, id: 1 });
    expect(s).not.toMatch(UNSAFE);
    expect(s).toMatch(/^active.* \[ram.*, id\]$/);
    expect(replyShape(null)).toBe('-');
  });

  describe('the commands, on a session whose every string is hostile', () => {
    let dir: string;
    let db: string;
    let file: string;

    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'migrace-hygiene-'));
      db = join(dir, 'trace.db');
      const x = JSON.parse(readFileSync('samples/sessions/minimig-lp1994002-unpatched.json', 'utf8'));
      x.session.label = `label ${EVIL}`;
      x.session.state = 'aborted';
      x.session.error = `error ${EVIL}`;
      for (const t of x.threads) t.name = `${t.name}${EVIL}`;
      for (const e of x.events) {
        if (e.func) e.func = `${e.func}${EVIL}`;
        if (e.file) e.file = `${e.file}${EVIL}`;
        if (e.pc) e.pc = `${e.pc}${EVIL}`;
        if (e.probe) e.probe = `${e.probe}${EVIL}`;
        if (e.kind === 'hold') e.data.reason = `reason ${EVIL}`;
      }
      const last = x.events[x.events.length - 1];
      x.events.push({ ...last, seq: last.seq + 1, kind: 'note', data: { text: `note ${EVIL}` } });
      file = join(dir, 'session.json');
      writeFileSync(file, JSON.stringify(x));
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('import session, sessions, events and analyze print nothing that drives the terminal', async () => {
      const imp = await run(registerImport, ['import', 'session', file, '--db', db]);
      expect(imp.err).toBe('');
      expect(imp.code).toBeUndefined();
      expect(imp.out).toMatch(/^session 1: label .*: 18 events/m);
      expect(imp.out).toMatch(/^ {2}F1 manifested: /m);
      const sessions = await run(registerSessions, ['sessions', '--db', db]);
      expect(sessions.out).toMatch(/aborted: error /);
      const events = await run(registerEvents, ['events', '1', '--db', db]);
      expect(events.out).toMatch(/note /);
      expect(events.out).toMatch(/reason /);
      const analyze = await run(registerAnalyze, ['analyze', '1', '--db', db]);
      expect(analyze.out).toMatch(/F1 manifested/);
      for (const r of [imp, sessions, events, analyze]) {
        expect(r.code).toBeUndefined();
        expect(r.out).toContain('\ufffd');
        expect(r.out).not.toMatch(UNSAFE);
      }
      // --json keeps the data as it is (JSON escapes it).
      const json = await run(registerEvents, ['events', '1', '--db', db, '--json']);
      expect(JSON.parse(json.out).events.at(-1).data.text).toBe(`note ${EVIL}`);
    });
  });
});

describe('start-up cost', () => {
  /** Static imports (not `import type`, not `import()`) reachable from a module. */
  function staticImports(entry: string): { files: Set<string>; packages: Set<string> } {
    const files = new Set<string>();
    const packages = new Set<string>();
    const todo = [resolve(entry)];
    while (todo.length) {
      const f = todo.pop()!;
      if (files.has(f)) continue;
      files.add(f);
      const src = readFileSync(f, 'utf8');
      for (const m of src.matchAll(/^\s*(?:import|export)\s+(?!type\b)(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/gm)) {
        const spec = m[1]!;
        if (spec.startsWith('.')) todo.push(resolve(dirname(f), spec.replace(/\.js$/, '.ts')));
        else packages.add(spec.replace(/^node:/, ''));
      }
    }
    return { files, packages };
  }

  it('the CLI cleans text without loading the renderers: no d3-node or jsdom before a report is asked for', () => {
    const t = staticImports('reports/safe-text.ts');
    // safe-text.ts loads only the POSIX quoting it shares with gdb's `set args`, and no package.
    expect([...t.files].map((f) => f.replace(`${process.cwd()}/`, '')).sort()).toEqual(['reports/safe-text.ts', 'trace/shell-quote.ts']);
    expect([...t.packages]).toEqual([]);
    const cli = staticImports('cli/main.ts');
    expect(cli.files).toContain(resolve('reports/safe-text.ts'));
    expect([...cli.packages]).not.toContain('d3-node');
    expect([...cli.packages]).not.toContain('jsdom');
    expect([...cli.files].map((f) => f.replace(`${process.cwd()}/`, ''))).not.toContain('reports/svg.ts');
  });
});
