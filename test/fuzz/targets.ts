/*
 * What the fuzz runs feed: every parser of untrusted input, each with its
 * seeds (real captured files: the samples' GDB transcripts, QEMU trace logs
 * and libvirt logs, gdb's MI output captured in test/fixtures/mi, a profile
 * discovery wrote for Debian's QEMU 7.2, the built-in schedules and
 * minimig's profile as JSON) and the way the CLI reads a file of its kind.
 *
 *  - FuzzTarget.feed(): hand one input to the parser as `migrace import`,
 *    `replay --schedule` or `record --profile` would; an accepted import is
 *    also analyzed and rendered to HTML, text and Perfetto.
 *  - judge(): what an input's outcome says. Accepted, or refused with a
 *    MigraceError on one line that names the file (or, for MI, the column):
 *    fine. Anything else (another error, a stack, a multi-line message, an
 *    error that does not say where, an importer refusing its own events) is
 *    a finding.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { findInterleavings } from '../../analyzer/interleavings.js';
import { builtinSchedule, loadScheduleFile, SCENARIOS } from '../../analyzer/schedule.js';
import { readJson } from '../../cli/import.js';
import { parseMiLines } from '../../recorder/gdb/mi-parser.js';
import { importFiles, type ImportKind } from '../../recorder/import/index.js';
import { loadProfileFile } from '../../recorder/probes/discover.js';
import { minimigProfile } from '../../recorder/probes/minimig.js';
import { renderHtml } from '../../reports/html.js';
import { writePerfetto } from '../../reports/perfetto.js';
import { renderText } from '../../reports/text.js';
import { MigraceError } from '../../trace/errors.js';
import type { TraceStore } from '../../trace/store.js';

export const FUZZ_DIR = resolve('test', 'fuzz');
/** Inputs that once failed, one folder per target: replayed by every run. */
export const REGRESSIONS = join(FUZZ_DIR, 'regressions');

export interface FuzzTarget {
  name: string;
  /** The seed texts, by name. */
  seeds: Array<{ name: string; text: string }>;
  /**
   * Feed one input (written to `file` first); true when it was accepted.
   * Throws what the parser threw. `html`: render accepted sessions to HTML
   * too (a tenth of a second each: runs choose how often).
   */
  feed(file: string, text: string, store: TraceStore, html: boolean): Promise<boolean>;
  /** What a refusal must name so a user finds the fault: the file, or null when the input has no file (MI lines). */
  names(file: string): string | null;
}

function filesIn(dir: string, pattern: RegExp): Array<{ name: string; text: string }> {
  return readdirSync(dir).filter((f) => pattern.test(f)).sort().map((f) => ({ name: f, text: readFileSync(join(dir, f), 'utf8') }));
}

/** Analyze and render every session an import made, then drop it: an accepted input must render. */
function renderAndDrop(store: TraceStore, ids: number[], html: boolean): void {
  for (const id of ids) {
    const session = store.session(id);
    const threads = store.threads(id);
    const events = store.events(id);
    const analysis = findInterleavings(session, threads, events);
    if (html) renderHtml(session, threads, events, analysis);
    renderText(session, threads, events, analysis, { columns: 100 });
    writePerfetto(session, threads, events, analysis, () => undefined);
    store.deleteSession(id);
  }
}

function importer(name: string, kind: ImportKind, seeds: FuzzTarget['seeds']): FuzzTarget {
  return {
    name, seeds,
    feed: async (file, text, store, html) => {
      writeFileSync(file, text);
      renderAndDrop(store, await importFiles(store, kind, [file], { label: name }), html);
      return true;
    },
    names: (file) => file,
  };
}

/** A file the CLI reads whole and checks (a schedule, a profile): accepted when `parse` returns. */
function fileParser(name: string, seeds: FuzzTarget['seeds'], parse: (file: string) => unknown): FuzzTarget {
  return {
    name, seeds,
    feed: async (file, text) => {
      writeFileSync(file, text);
      parse(file);
      return true;
    },
    names: (file) => file,
  };
}

function jsonSeed(name: string, value: unknown): { name: string; text: string } {
  return { name, text: `${JSON.stringify(value, null, 2)}\n` };
}

export function fuzzTargets(): FuzzTarget[] {
  const samples = resolve('samples');
  return [
    importer('gdb-transcript', 'gdb', filesIn(join(samples, 'transcripts'), /\.txt$/)),
    importer('qemu-trace', 'qemu-trace', [...filesIn(join(samples, 'trace-logs'), /\.log$/), ...filesIn(join(samples, 'libvirt-logs'), /qemu-trace\.log$/)]),
    importer('libvirt-log', 'libvirt', filesIn(join(samples, 'libvirt-logs'), /libvirtd\.log$/)),
    {
      name: 'session-json',
      seeds: filesIn(join(samples, 'sessions'), /\.json$/),
      feed: async (file, text, store, html) => {
        writeFileSync(file, text);
        renderAndDrop(store, [store.importSession(await readJson(file), file)], html);
        return true;
      },
      names: (file) => file,
    },
    fileParser('schedule', Object.keys(SCENARIOS).sort().map((n) => jsonSeed(`${n}.json`, builtinSchedule(n))), loadScheduleFile),
    fileParser('profile', [
      ...filesIn(join(FUZZ_DIR, 'seeds'), /^profile-.*\.json$/),
      jsonSeed('minimig.json', minimigProfile(join(samples, 'minimig'), join(samples, 'minimig', 'minimig'), false)),
    ], loadProfileFile),
    {
      name: 'mi-records',
      seeds: filesIn(resolve('test', 'fixtures', 'mi'), /\.txt$/),
      feed: async (_file, text) => {
        parseMiLines(text);
        return true;
      },
      names: () => null,
    },
  ];
}

/** A finding: what was wrong, on one line. */
export interface Verdict {
  accepted: boolean;
  finding: string | null;
}

/**
 * Refusals that blame the importer, not the input: an event its own schema
 * refuses (a number it took from a line without checking it), or a store
 * that refused what it was given. The bench's store has room to spare, so a
 * real store failure does not happen here.
 */
const IMPORTER_FAULT = /: the importer made an invalid |^import of .* failed while writing: /;

/** What the outcome of feeding one input says (see the file's opening). */
export async function judge(target: FuzzTarget, file: string, text: string, store: TraceStore, html: boolean): Promise<Verdict> {
  try {
    return { accepted: await target.feed(file, text, store, html), finding: null };
  } catch (e) {
    if (!(e instanceof MigraceError)) return { accepted: false, finding: `not a MigraceError: ${String((e as Error)?.stack ?? e).split('\n').slice(0, 3).join(' | ')}` };
    if (/[\r\n]/.test(e.message)) return { accepted: false, finding: `a message over several lines: ${JSON.stringify(e.message.slice(0, 300))}` };
    if (IMPORTER_FAULT.test(e.message)) return { accepted: false, finding: `the importer refused what it made itself: ${e.message.slice(0, 300)}` };
    const where = target.names(file);
    if (where !== null && !e.message.includes(where)) return { accepted: false, finding: `a message that does not name ${where}: ${e.message.slice(0, 300)}` };
    return { accepted: false, finding: null };
  }
}

/** The inputs that once failed for a target, by file name. */
export function regressionsOf(target: FuzzTarget): Array<{ name: string; text: string }> {
  const dir = join(REGRESSIONS, target.name);
  try {
    return filesIn(dir, /./);
  } catch {
    return [];
  }
}

/** Keep an input that failed, for every later run to replay. */
export function saveRegression(target: FuzzTarget, name: string, text: string): string {
  const dir = join(REGRESSIONS, target.name);
  mkdirSync(dir, { recursive: true });
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}
