/**
 * The one error type of migrace. The CLI prints `message` and exits non-zero;
 * the stack only matters with --debug. Codes are stable so tests and scripts
 * can tell failures apart without parsing prose.
 */
export type ErrorCode =
  | 'USAGE'
  | 'DB_OPEN'
  | 'DB_FOREIGN'
  | 'DB_NEWER'
  | 'DB_CORRUPT'
  | 'DB_WRITE'
  | 'NOT_FOUND'
  | 'BAD_INPUT'
  | 'GDB_MISSING'
  | 'GDB_ERROR'
  | 'GDB_EXITED'
  | 'GDB_TIMEOUT'
  | 'MI_PARSE'
  | 'TARGET_MISSING'
  | 'TARGET_EXITED'
  | 'TARGET_STOPPED'
  | 'QMP'
  | 'QMP_TIMEOUT'
  | 'PROBES'
  | 'UPROBE'
  | 'REPLAY'
  | 'REPLAY_TIMEOUT'
  /** The target cannot do what a scenario asks: a capability or a command it lacks. */
  | 'UNSUPPORTED'
  | 'INTERRUPTED'
  | 'IMPORT';

export class MigraceError extends Error {
  readonly code: ErrorCode;
  /**
   * Seen from outside: the QMP client finds the target gone, but only the
   * backend that runs the target can say how it ended (a signal, a code).
   */
  readonly secondHand: boolean;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; secondHand?: boolean }) {
    super(message, options);
    this.name = 'MigraceError';
    this.code = code;
    this.secondHand = options?.secondHand ?? false;
  }
}

/** A message for any thrown value, without a stack. */
export function messageOf(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

/**
 * Why JSON.parse refused a file's text, on one line and with where: V8
 * quotes the text around the fault (newlines and all) and gives a position
 * only for some faults; this says line and column instead of the quote.
 */
export function jsonProblem(e: unknown, text: string): string {
  // The token V8 names may itself be a control character ('\r'): written as its escape.
  const raw = messageOf(e).replace(/[\x00-\x1f\x7f]/g, (c) => JSON.stringify(c).slice(1, -1));
  const m = /at position (\d+)/.exec(raw);
  const reason = raw.replace(/, (?:\.\.\.)?".*$/s, '').replace(/ in JSON at position \d+.*$/, '').replace(/ \(line \d+ column \d+\)$/, '');
  if (!m) return reason;
  const before = text.slice(0, Number(m[1]));
  const line = before.split('\n').length;
  return `${reason} at line ${line} column ${Number(m[1]) - before.lastIndexOf('\n')}`;
}
