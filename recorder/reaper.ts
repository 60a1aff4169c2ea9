import { readFileSync } from 'node:fs';

/**
 * One registry of every child process migrace starts (gdb, its inferior,
 * QEMU, minimig). Whatever ends the run (normal exit, an error, SIGINT or
 * SIGTERM), everything still registered is killed, so no run leaves a
 * process behind. gdb sets PTRACE_O_EXITKILL for programs it starts, but a
 * stuck gdb may never be killed by us, and a process it attached to is left
 * stopped when it dies; so inferiors are registered on their own as soon as
 * their pid is known (attached ones as not ours to kill).
 */
const tracked = new Map<number, string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' listeners must be synchronous: process.kill is.
  process.on('exit', () => reapAll());
}

/** Register a process; returns the function that unregisters it. */
export function track(pid: number, label: string): () => void {
  installExitHook();
  tracked.set(pid, label);
  return () => {
    tracked.delete(pid);
  };
}

export function untrack(pid: number): void {
  tracked.delete(pid);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie still answers signal 0; it is gone for our purposes.
  return !isZombie(pid);
}

function isZombie(pid: number): boolean {
  try {
    const stat = readProcStat(pid);
    return stat !== null && stat.state === 'Z';
  } catch {
    return false;
  }
}

function readProcStat(pid: number): { state: string } | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // comm may contain spaces and parentheses: the state follows the last ')'.
  const close = text.lastIndexOf(')');
  return { state: text.slice(close + 2, close + 3) };
}

/** Kill everything still registered, synchronously (SIGKILL). */
export function reapAll(): void {
  for (const pid of [...tracked.keys()]) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    tracked.delete(pid);
  }
}

/** Registered processes that are still alive (for tests and diagnostics). */
export function survivors(): Array<{ pid: number; label: string }> {
  return [...tracked.entries()].filter(([pid]) => isAlive(pid)).map(([pid, label]) => ({ pid, label }));
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
