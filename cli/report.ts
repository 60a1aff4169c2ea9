import type { Command } from 'commander';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findInterleavings, InterleavingScan } from '../analyzer/interleavings.js';
import type { SessionBundle } from '../analyzer/compare.js';
import { PerfettoExport, writePerfetto, type PerfettoSink } from '../reports/perfetto.js';
import { MigraceError, messageOf } from '../trace/errors.js';
import type { Session } from '../trace/schema.js';
import type { TraceStore } from '../trace/store.js';
import { resolveSession } from './analyze.js';
import { loadHunt } from '../analyzer/hunt-record.js';
import { action, dbOption, huntId, jsonOption, openStore, out, parseIntOption, printJson, sessionId, type DbOptions } from './common.js';
import { reportHunt } from './hunt.js';
import { writeFileStreamed } from './json-out.js';

/**
 * The renderers, loaded when a command renders: d3-node brings jsdom, about
 * 0.6 s of start-up every other command should not pay.
 */
async function renderers() {
  const [diff, huntDiff, html, svg, text] = await Promise.all([
    import('../reports/diff.js'), import('../reports/hunt-diff.js'), import('../reports/html.js'),
    import('../reports/svg.js'), import('../reports/text.js'),
  ]);
  return { ...diff, ...huntDiff, ...html, ...svg, ...text };
}

/** A stored session as the reports show it: with the database a --finding replay must name (the reports print the command). */
function reportedSession(store: TraceStore, sid: number): Session {
  const session = store.session(sid);
  return { ...session, meta: { ...session.meta, db: store.path } };
}

/** A session with its analysis, as every renderer takes it. */
export function loadBundle(store: TraceStore, sid: number): SessionBundle {
  const session = reportedSession(store, sid);
  const threads = store.threads(sid);
  const events = store.events(sid);
  return { session, threads, events, analysis: findInterleavings(session, threads, events) };
}

/**
 * A stored session's Perfetto trace, read from the store twice and never
 * held: the first pass feeds the analysis and the export's own first pass,
 * the second writes. writePerfetto of loadBundle's bundle writes the same.
 */
export function writeStoredPerfetto(store: TraceStore, sid: number, sink: PerfettoSink): void {
  const session = reportedSession(store, sid);
  const threads = store.threads(sid);
  const scan = new InterleavingScan(session, threads);
  const x = new PerfettoExport(session, threads);
  for (const e of store.iterateEvents(sid)) {
    scan.event(e);
    x.see(e);
  }
  x.write(scan.finish(), store.iterateEvents(sid), sink);
}

/** A file that could not be written whole is removed: a 0-byte or cut report must not pass for one. */
function writeFailed(path: string, e: unknown): MigraceError {
  rmSync(path, { force: true });
  return new MigraceError('BAD_INPUT', `cannot write ${path}: ${messageOf(e)} (nothing written)`);
}

function write(path: string, text: string): string {
  try {
    writeFileSync(path, text);
  } catch (e) {
    throw writeFailed(path, e);
  }
  return path;
}

/** A streamed file (a Perfetto trace may be large): removed again when it could not be written whole. */
function writeStreamed(path: string, produce: (sink: (chunk: string) => void) => void): string {
  writeFileStreamed(path, produce);
  return path;
}

/** What the demo leaves behind: every rendering of the unpatched replay, and the diff against the patched one. */
export async function writeReports(store: TraceStore, unpatched: number, patched: number, dir: string): Promise<string[]> {
  const { renderHtml, renderSessionSvg, renderMarkdown, renderDiffHtml, renderDiffText } = await renderers();
  const a = loadBundle(store, unpatched);
  const b = loadBundle(store, patched);
  return [
    write(join(dir, 'report.html'), renderHtml(a.session, a.threads, a.events, a.analysis)),
    write(join(dir, 'report.svg'), renderSessionSvg(a.session, a.threads, a.events, a.analysis)),
    write(join(dir, 'report.md'), renderMarkdown(a.session, a.threads, a.events, a.analysis)),
    writeStreamed(join(dir, 'report.perfetto.json'), (sink) => writePerfetto(a.session, a.threads, a.events, a.analysis, sink)),
    write(join(dir, 'diff.html'), renderDiffHtml(a, b)),
    write(join(dir, 'diff.txt'), renderDiffText(a, b)),
  ];
}

interface ReportOptions extends DbOptions {
  html?: string;
  svg?: string;
  text?: boolean;
  markdown?: boolean;
  perfetto?: string;
  columns: number;
  hunt?: string;
}

export function register(program: Command): void {
  program
    .command('report')
    .description('render a session: self-contained HTML, SVG, text or Markdown for a bug comment, Perfetto JSON')
    .argument('[session]', 'session number (default: the newest)')
    .option('--html <file>', 'a self-contained HTML page')
    .option('--svg <file>', 'the timeline as SVG')
    .option('--text', 'plain text for a bug comment, on stdout')
    .option('--markdown', 'Markdown for a bug comment, on stdout')
    .option('--perfetto <file>', 'Chrome trace-event JSON for ui.perfetto.dev, every event')
    .option('--columns <n>', 'text width', parseIntOption('--columns', 60, 400), 80)
    .option('--hunt <id>', 'render a hunt\'s matrix (with --html, --text or --markdown) instead of a session')
    .addOption(dbOption())
    .action(action(async (id: string | undefined, opts: ReportOptions) => {
      if (!opts.html && !opts.svg && !opts.text && !opts.markdown && !opts.perfetto) {
        throw new MigraceError('USAGE', 'report needs at least one of --html FILE, --svg FILE, --text, --markdown, --perfetto FILE');
      }
      if (opts.hunt !== undefined) {
        if (id !== undefined || opts.svg || opts.perfetto) throw new MigraceError('USAGE', '--hunt takes --html FILE, --text or --markdown, and no session');
        const store = openStore(opts, { readonly: true });
        try {
          await reportHunt(store, opts.hunt, opts);
        } finally {
          store.close();
        }
        return;
      }
      const store = openStore(opts, { readonly: true });
      try {
        const sid = resolveSession(store, id);
        // Perfetto alone is streamed from the store: a million-event session is never loaded for it. With
        // another report the session is loaded and analyzed anyway, once, and Perfetto is written from that.
        if (!opts.html && !opts.svg && !opts.text && !opts.markdown) {
          process.stderr.write(`wrote ${writeStreamed(opts.perfetto!, (sink) => writeStoredPerfetto(store, sid, sink))}\n`);
          return;
        }
        const { renderHtml, renderSessionSvg, renderText, renderMarkdown } = await renderers();
        const b = loadBundle(store, sid);
        const args = [b.session, b.threads, b.events, b.analysis] as const;
        if (opts.perfetto) process.stderr.write(`wrote ${writeStreamed(opts.perfetto, (sink) => writePerfetto(...args, sink))}\n`);
        if (opts.html) process.stderr.write(`wrote ${write(opts.html, renderHtml(...args))}\n`);
        if (opts.svg) process.stderr.write(`wrote ${write(opts.svg, renderSessionSvg(...args))}\n`);
        if (opts.text) out(renderText(...args, { columns: opts.columns }));
        if (opts.markdown) out(renderMarkdown(...args, { columns: opts.columns }));
      } finally {
        store.close();
      }
    }));

  program
    .command('diff')
    .description('two sessions side by side (typically one schedule on unpatched and patched builds), or with --hunt two hunts cell by cell')
    .argument('[a]', 'session A')
    .argument('[b]', 'session B')
    .option('--hunt <ids...>', 'compare two hunts instead, cell by cell: --hunt A B (hunt numbers as "migrace hunts" lists them)')
    .option('--html <file>', 'a self-contained HTML page')
    .option('--text', 'plain text (the default)')
    .option('--columns <n>', 'text width', parseIntOption('--columns', 60, 400), 80)
    .addOption(jsonOption())
    .addOption(dbOption())
    .action(action(async (a: string | undefined, b: string | undefined, opts: DiffOptions) => {
      if (opts.json && opts.text) throw new MigraceError('USAGE', '--json and --text both print on stdout: give one of them');
      if (opts.hunt !== undefined) return diffHuntsCommand(a, opts.hunt, opts);
      if (a === undefined || b === undefined) throw new MigraceError('USAGE', 'diff needs two sessions A and B (or --hunt A B for two hunts)');
      const { diffSessions, renderDiffHtml, renderDiffText } = await renderers();
      const sa = sessionId(a, 'A');
      const sb = sessionId(b, 'B');
      const store = openStore(opts, { readonly: true });
      try {
        const A = loadBundle(store, sa);
        const B = loadBundle(store, sb);
        if (opts.html) process.stderr.write(`wrote ${write(opts.html, renderDiffHtml(A, B))}\n`);
        if (opts.json) printJson(diffSessions(A, B));
        else if (opts.text || !opts.html) out(renderDiffText(A, B, { columns: opts.columns }));
      } finally {
        store.close();
      }
    }));
}

interface DiffOptions extends DbOptions {
  html?: string;
  text?: boolean;
  json?: boolean;
  columns: number;
  hunt?: string[];
}

/** `migrace diff --hunt A B`: two stored hunts paired cell by cell (reports/hunt-diff.ts). */
async function diffHuntsCommand(session: string | undefined, ids: string[], opts: DiffOptions): Promise<void> {
  if (session !== undefined) {
    throw new MigraceError('USAGE', `--hunt compares two hunts, never a hunt with a session: "migrace diff --hunt A B" takes no session (got "${session}" besides --hunt ${ids.join(' ')})`);
  }
  if (ids.length !== 2) throw new MigraceError('USAGE', `--hunt takes two hunt numbers, A and B (see "migrace hunts"), not ${ids.length}: ${ids.join(' ')}`);
  const [ha, hb] = [huntId(ids[0]!, '--hunt A'), huntId(ids[1]!, '--hunt B')];
  const { diffHunts, renderHuntDiffHtml, renderHuntDiffText } = await renderers();
  const store = openStore(opts, { readonly: true });
  try {
    const d = diffHunts(loadHunt(store, ha), loadHunt(store, hb));
    if (opts.html) process.stderr.write(`wrote ${write(opts.html, renderHuntDiffHtml(d))}\n`);
    if (opts.json) printJson(d);
    else if (opts.text || !opts.html) out(renderHuntDiffText(d, { columns: opts.columns }));
  } finally {
    store.close();
  }
}
