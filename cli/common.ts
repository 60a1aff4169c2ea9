import { Command, InvalidArgumentError, Option } from 'commander';
import { MigraceError, messageOf } from '../trace/errors.js';
import { storageError, TraceStore } from '../trace/store.js';
import { cleanText, printableJson } from '../reports/safe-text.js';

/** Options every command that touches the trace database takes. */
export interface DbOptions {
  db: string;
}

export const DEFAULT_DB = './migrace.db';

export function dbOption(): Option {
  return new Option('--db <file>', 'trace database').default(DEFAULT_DB);
}

export function jsonOption(): Option {
  return new Option('--json', 'print results as JSON on stdout');
}

export function openStore(opts: DbOptions, mode: { readonly?: boolean } = {}): TraceStore {
  const store = TraceStore.open(opts.db, mode);
  for (const s of store.abandoned) {
    progress(`migrace: session ${s.id} was left recording by process ${s.pid}, which is gone: marked aborted (its ${s.events} stored events are kept)`);
  }
  return store;
}

/** Parse a session id argument: a positive integer. */
export function sessionId(text: string, what = 'SESSION'): number {
  if (!/^\d+$/.test(text) || Number(text) <= 0 || !Number.isSafeInteger(Number(text))) {
    throw new MigraceError('USAGE', `${what} must be a session number (see "migrace sessions"), not "${text}"`);
  }
  return Number(text);
}

/** Parse a hunt id argument: a positive integer, as "migrace hunts" lists them. */
export function huntId(text: string, what = 'HUNT'): number {
  if (!/^\d+$/.test(text) || Number(text) <= 0 || !Number.isSafeInteger(Number(text))) {
    throw new MigraceError('USAGE', `${what} must be a hunt number (see "migrace hunts"), not "${text}"`);
  }
  return Number(text);
}

/** A whole-number option; commander reports a bad value as a usage error naming the option. */
export function parseIntOption(name: string, min: number, max: number) {
  return (text: string): number => {
    if (!/^-?\d+$/.test(text)) throw new InvalidArgumentError(`${name} must be a whole number, not "${text}"`);
    const n = Number(text);
    if (n < min || n > max) throw new InvalidArgumentError(`${name} must be between ${min} and ${max}, not ${n}`);
    return n;
  };
}

/** Results on stdout; progress on stderr. */
export function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

export function progress(text: string): void {
  process.stderr.write(`${text}\n`);
}

/**
 * What --json leaves of the progress: the lines that start "migrace: "
 * (a wait for another migrace's probes, a warning, a clean-up after a dead
 * run) still go to stderr; the JSON on stdout is untouched either way.
 */
export function warningsOnly(text: string): void {
  if (text.startsWith('migrace: ')) progress(text);
}

/** Valid JSON whose strings (labels, notes, replies from a trace) cannot steer a terminal: C1 and bidi controls escaped. */
export function printJson(value: unknown): void {
  out(printableJson(value, 2));
}

let debug = false;
export function setDebug(on: boolean): void {
  debug = on;
}

/** The exit code of every usage mistake, commander's and migrace's own. */
export const USAGE_EXIT = 2;

/** The --db of a command's arguments (commander passes the options object after the arguments). */
function dbOf(args: readonly unknown[]): string | null {
  for (const a of args) {
    if (typeof a === 'object' && a !== null && typeof (a as { db?: unknown }).db === 'string') return (a as { db: string }).db;
  }
  return null;
}

/**
 * Wrap a command action: a MigraceError becomes one line on stderr and exit
 * code 1 (2 for usage); anything else is a bug and says so. Stacks only
 * with --debug. A SQLite failure met while reading (a corrupt page deep in
 * a session) is said as the store says it, naming the file.
 */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void> | void): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (e) {
      const db = e instanceof MigraceError ? null : dbOf(args);
      const err = (db !== null ? storageError(db, e) : null) ?? e;
      reportError(err);
      process.exitCode = err instanceof MigraceError && err.code === 'USAGE' ? USAGE_EXIT : 1;
    }
  };
}

export function reportError(e: unknown): void {
  // Messages quote file names and input lines: nothing in them may drive the terminal; cleanText also makes them one line.
  if (e instanceof MigraceError) {
    process.stderr.write(`migrace: ${cleanText(e.message)}\n`);
  } else {
    process.stderr.write(`migrace: internal error: ${cleanText(messageOf(e))} (please report; rerun with --debug for details)\n`);
  }
  if (debug && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
}

/** A fixed-width table for terminals. Cells hold trace text: each goes through cleanText, so none can drive the terminal. */
export function table(headers: string[], rows: Array<Array<string | number | null>>): string {
  const cells = rows.map((r) => r.map((c) => (c === null ? '-' : cleanText(String(c)))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(headers), ...cells.map(line)].join('\n');
}

export type Register = (program: Command) => void;
