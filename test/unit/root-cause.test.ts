import { describe, expect, it } from 'vitest';
import { rootCause } from '../../recorder/record.js';
import type { RecordingBackend } from '../../recorder/backend.js';
import { MigraceError } from '../../trace/errors.js';

/** rootCause reads only the run's failure: a run whose backend reports `later` after `ms`. */
function runReporting(later: MigraceError | null, ms: number): RecordingBackend {
  const run = { failure: null as MigraceError | null };
  if (later) setTimeout(() => { run.failure = later; }, ms);
  return run as unknown as RecordingBackend;
}

describe('rootCause: what a failed run says', () => {
  const qmpView = new MigraceError('TARGET_EXITED', 'the target exited before its QMP socket /x accepted a connection (waited 0 ms)');
  const gdbView = new MigraceError('TARGET_EXITED', 'minimig exited (signal SIGKILL) before the scenario finished');

  it('the QMP client saw the target gone first: the backend names how it ended (#7)', async () => {
    expect((await rootCause(runReporting(gdbView, 150), qmpView)).message).toBe(gdbView.message);
  });

  it('a symptom (a closed socket) gives way to the death the backend reports', async () => {
    const closed = new MigraceError('QMP', 'QMP connection to /x was closed by the server');
    expect((await rootCause(runReporting(gdbView, 100), closed)).message).toBe(gdbView.message);
  });

  it('when the backend never says, the step\'s own view is what is said', async () => {
    expect((await rootCause(runReporting(null, 0), qmpView)).message).toBe(qmpView.message);
  });

  it('a first-hand cause is said at once', async () => {
    const gdbDied = new MigraceError('GDB_EXITED', 'gdb exited unexpectedly (signal SIGKILL); the session keeps what was recorded');
    expect((await rootCause(runReporting(gdbView, 100), gdbDied)).message).toBe(gdbDied.message);
  });
});
