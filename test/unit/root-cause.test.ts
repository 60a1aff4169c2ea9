import { describe, expect, it } from 'vitest';
import { RunFailure, type RecordingBackend } from '../../recorder/backend.js';
import { rootCause } from '../../recorder/record.js';
import { MigraceError } from '../../trace/errors.js';

/** rootCause reads only the run's failure: a run whose backend fails with each of `reports` at its time. */
function runReporting(...reports: Array<[MigraceError, number]>): RecordingBackend {
  const failed = new RunFailure();
  for (const [e, ms] of reports) {
    if (ms === 0) failed.fail(e);
    else setTimeout(() => failed.fail(e), ms);
  }
  return { get failure() { return failed.failure; } } as unknown as RecordingBackend;
}

// As the QMP client and gdb's backend word them.
const qmpView = new MigraceError('TARGET_EXITED', 'the target exited before its QMP socket /x accepted a connection (waited 0 ms)', { secondHand: true });
const qmpClosed = new MigraceError('TARGET_EXITED', 'the target exited; its QMP connection /x closed', { secondHand: true });
const gdbView = new MigraceError('TARGET_EXITED', 'minimig exited (signal SIGKILL) before the scenario finished');
const gdbDied = new MigraceError('GDB_EXITED', 'gdb exited unexpectedly (signal SIGKILL); the session keeps what was recorded');

describe('rootCause: what a failed run says', () => {
  it('the QMP client saw the target gone first: the backend names how it ended (#7)', async () => {
    expect((await rootCause(runReporting([gdbView, 150]), qmpView)).message).toBe(gdbView.message);
  });

  it('a step put the QMP client\'s view into the run first (replay does): the backend\'s report still wins', async () => {
    const live = runReporting([qmpClosed, 0], [gdbView, 150]);
    expect((await rootCause(live, live.failure)).message).toBe(gdbView.message);
  });

  it('a symptom (a closed socket) gives way to the death the backend reports', async () => {
    const closed = new MigraceError('QMP', 'QMP connection to /x was closed by the server');
    expect((await rootCause(runReporting([gdbView, 100]), closed)).message).toBe(gdbView.message);
  });

  it('when the backend never says, the step\'s own view is what is said', async () => {
    expect((await rootCause(runReporting(), qmpView)).message).toBe(qmpView.message);
  });

  it('a first-hand cause is said as it is, not replaced by a later report', async () => {
    expect((await rootCause(runReporting([gdbView, 100]), gdbDied)).message).toBe(gdbDied.message);
  });
});

describe('RunFailure: the first cause, not the first symptom', () => {
  it('a symptom that came first gives way to the cause; the steps were stopped by the first', async () => {
    const f = new RunFailure();
    const step = f.guard(new Promise(() => undefined));
    f.fail(qmpClosed);
    f.fail(gdbView);
    await expect(step).rejects.toBe(qmpClosed);
    expect(f.failure).toBe(gdbView);
  });

  it('a cause stays: neither a later cause nor a symptom replaces it', () => {
    const f = new RunFailure();
    f.fail(gdbDied);
    f.fail(gdbView);
    f.fail(qmpClosed);
    expect(f.failure).toBe(gdbDied);
  });
});
