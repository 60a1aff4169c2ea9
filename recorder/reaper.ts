import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { sleep } from '../trace/async.js';
import { processIsAlive, procStartTime } from '../trace/proc.js';
import { ledgerAddProcess, ledgerRemoveProcess } from './ledger.js';

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
 * - SIGKILL of this process: nothing here can run. Children are started
 *   through `dieWithParent`, which sets the kernel's parent-death signal
 *   (PR_SET_PDEATHSIG, util-linux's setpriv) before the program runs: the
 *   kernel signals them when migrace dies, however it dies. gdb's own
 *   inferiors die with gdb (PTRACE_O_EXITKILL); a process gdb attached to is
 *   detached when gdb quits.
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
  ledgerAddProcess('children', pid, label);
  installSignalHooks();
  return () => {
    untrack(pid);
  };
}

export function untrack(pid: number): void {
  tracked.delete(pid);
  ledgerRemoveProcess('children', pid);
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
    await sleep(20);
  }
  return !isAlive(pid);
}

const SETPRIV = '/usr/bin/setpriv';

/** A program's path: as given when it holds a slash, else found on PATH (ours, or the one the child will get); null when there is none. */
export function findProgram(name: string, path = process.env.PATH ?? ''): string | null {
  const candidates = name.includes('/') ? [name] : path.split(delimiter).filter(Boolean).map((d) => join(d, name));
  for (const c of candidates) {
    try {
      if (!statSync(c).isFile()) continue;
      accessSync(c, constants.X_OK);
      return isAbsolute(c) || name.includes('/') ? c : join(process.cwd(), c);
    } catch {
      /* next */
    }
  }
  return null;
}

/**
 * The command line that starts `file` so that the kernel sends it `signal`
 * when migrace dies, even by SIGKILL: setpriv sets the parent-death signal
 * and execs the program (same pid). KILL for programs that must not outlive
 * us (a destination QEMU); TERM for gdb, which then quits the way it does
 * on Ctrl-D: it kills what it started and detaches, removing its
 * breakpoints, from what it attached to. Without setpriv (not util-linux),
 * the program starts unguarded and only the reaper's hooks cover it.
 */
export function dieWithParent(file: string, args: readonly string[], signal: 'KILL' | 'TERM' = 'KILL'): { file: string; args: string[] } {
  if (findProgram(SETPRIV) === null) return { file, args: [...args] };
  return { file: SETPRIV, args: ['--pdeathsig', signal, '--', file, ...args] };
}
