import { processIsAlive, procStartTime } from '../trace/proc.js';

/**
 * One registry of every child process migrace starts (gdb, its inferior,
 * QEMU, minimig). Whatever ends the run (normal exit, an error, SIGINT or
 * SIGTERM), everything still registered is killed, so no run leaves a
 * process behind. gdb sets PTRACE_O_EXITKILL for programs it starts, but a
 * stuck gdb may never be killed by us, and a process it attached to is left
 * stopped when it dies; so inferiors are registered on their own as soon as
 * their pid is known (attached ones as not ours to kill).
 *
 * How each end is covered:
 * - a normal exit, process.exit() or an uncaught exception: the 'exit' hook.
 * - SIGINT / SIGTERM: Node's default for these signals exits WITHOUT running
 *   'exit' listeners. A command that wants to stop gracefully installs its
 *   own handlers (cli/signals.ts) and those take precedence. For the time in
 *   between (a signal before the command installed them, or a library user
 *   without any), the reaper installs its own SIGINT / SIGTERM listener while
 *   something is tracked, but only for a signal nobody else listens to at that
 *   moment; it kills everything tracked and exits 130 / 143. It is removed as
 *   soon as nothing is tracked, and it stands back (does nothing) when another
 *   listener for the signal was added after it.
 * - SIGKILL of this process: nothing can run; gdb's PTRACE_O_EXITKILL is the
 *   only guard then.
 */
/** pid -> what it is and when it started (a pid reused by another process is not ours to kill). */
const tracked = new Map<number, { label: string; startTime: string | null }>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' listeners must be synchronous: process.kill is.
  process.on('exit', () => reapAll());
}

/** Exit codes a shell reports for a process ended by the signal: 128 + its number. */
const SIGNAL_EXIT: ReadonlyArray<readonly [NodeJS.Signals, number]> = [['SIGINT', 130], ['SIGTERM', 143]];
const signalHooks = new Map<NodeJS.Signals, () => void>();

function installSignalHooks(): void {
  for (const [sig, code] of SIGNAL_EXIT) {
    if (signalHooks.has(sig) || process.listenerCount(sig) !== 0) continue;
    const hook = (): void => {
      // Somebody installed a handler since (the CLI's graceful abort): theirs decides.
      if (process.listeners(sig).some((l) => l !== hook)) return;
      reapAll();
      process.exit(code);
    };
    signalHooks.set(sig, hook);
    process.on(sig, hook);
  }
}

/** Once nothing is tracked, leave the signals to Node's default and to the CLI. */
function removeSignalHooksIfIdle(): void {
  if (tracked.size > 0) return;
  for (const [sig, hook] of signalHooks) process.off(sig, hook);
  signalHooks.clear();
}

/** Register a process; returns the function that unregisters it. */
export function track(pid: number, label: string): () => void {
  installExitHook();
  tracked.set(pid, { label, startTime: procStartTime(pid) });
  installSignalHooks();
  return () => {
    untrack(pid);
  };
}

export function untrack(pid: number): void {
  tracked.delete(pid);
  removeSignalHooksIfIdle();
}

export function isAlive(pid: number): boolean {
  return processIsAlive(pid);
}

/** Kill everything still registered, synchronously (SIGKILL). */
export function reapAll(): void {
  for (const [pid, { startTime }] of [...tracked.entries()]) {
    try {
      if (processIsAlive(pid, startTime)) process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    tracked.delete(pid);
  }
  removeSignalHooksIfIdle();
}

/** Registered processes that are still alive (for tests and diagnostics). */
export function survivors(): Array<{ pid: number; label: string }> {
  return [...tracked.entries()].filter(([pid, { startTime }]) => processIsAlive(pid, startTime)).map(([pid, { label }]) => ({ pid, label }));
}

/** Wait until a process is gone, up to `ms`; true if it is. */
export async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return !isAlive(pid);
}
