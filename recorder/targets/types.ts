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
  dispose(): Promise<void>;
}
