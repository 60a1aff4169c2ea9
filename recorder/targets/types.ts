import type { MigraceError } from '../../trace/errors.js';
import type { Target } from '../../trace/schema.js';

/**
 * A target ready to be started under gdb: the program, its arguments and
 * environment, where its QMP socket will appear, and what to migrate to.
 * Preparing may start helpers (a QEMU destination); dispose() stops them and
 * removes the private folder.
 */
export interface PreparedTarget {
  /** What the session records about the target. */
  info: Target;
  binary: string;
  args: string[];
  env: Record<string, string>;
  /** The QMP unix socket the target will listen on. */
  qmpPath: string;
  /** The `uri` argument of `migrate`. */
  migrateUri: string;
  /** Where the target's own stdout/stderr go (a file in the private folder). */
  logPath: string;
  /** QMP commands to send after capabilities and before `migrate` (e.g. a bandwidth cap). */
  setup: Array<{ execute: string; arguments?: Record<string, unknown> }>;
  /** The other end of the migration, for scenarios that act on it (the hunt's failure and postcopy). */
  destination?: Destination;
  /**
   * Why a helper the target needs (the destination QEMU) is gone before
   * dispose() stopped it, or null. Polled while a run is live: a dead
   * destination fails the source's migration, and the run says so.
   */
  helperFailure?(): MigraceError | null;
  dispose(): Promise<void>;
}

export interface Destination {
  /** Kill it while the source migrates: the source's migration fails, as when a real destination dies. */
  kill(): Promise<void>;
  /** A QMP command on the destination's own monitor; null when it has none (minimig's sink). */
  execute: ((command: string, args?: Record<string, unknown>) => Promise<unknown>) | null;
}
