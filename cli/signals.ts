import { interruptLockWaits } from '../recorder/probe-lock.js';
import { reapAll } from '../recorder/reaper.js';

/**
 * Ctrl-C and SIGTERM abort the run in progress through an AbortSignal, so it
 * can close its session as aborted and clean up. A second signal gives up
 * waiting: every child is killed at once.
 */
export function abortOnSignals(): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  let count = 0;
  const handler = (sig: NodeJS.Signals): void => {
    count++;
    if (count === 1) {
      process.stderr.write(`migrace: ${sig}: stopping, keeping what was recorded...\n`);
      controller.abort(sig);
      // A run waiting for the probe lock has not started yet: nothing of it to keep.
      interruptLockWaits();
    } else {
      reapAll();
      process.exit(130);
    }
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal: controller.signal,
    dispose: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}
