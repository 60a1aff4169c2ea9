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
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MigraceError';
    this.code = code;
  }
}

/** A message for any thrown value, without a stack. */
export function messageOf(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
