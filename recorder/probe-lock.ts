import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, chmodSync, closeSync, constants, existsSync, openSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MigraceError } from '../trace/errors.js';
import { dieWithParent, findProgram, track } from './reaper.js';

/**
 * Kernel uprobes and gdb's breakpoints must not meet on one binary.
 *
 * A uprobe is set on a file (its inode and offset), so it is in every
 * process that runs that binary, including one gdb started; when such a
 * process reaches the address, the kernel handles its trap and steps the
 * original instruction, and a gdb breakpoint at the same place never
 * fires. So a gdb-driven run (record, replay, a hunt cell) on a binary and
 * a uprobe recording of it exclude each other: gdb runs take a shared
 * lock on the binary, uprobe runs an exclusive one, waiting for each other
 * (and saying so) rather than losing hits without a word.
 *
 * The lock is flock(1) on a file named by the binary's device and inode,
 * held by a small child process (a shell that opened the file read-only,
 * locked it and became `cat`) that dies with migrace: with the
 * parent-death signal, or when its stdin, our pipe, closes. migrace
 * creates the file itself, world-readable, so that another user's run can
 * open it without O_CREAT (which fs.protected_regular refuses on a file
 * somebody else owns in a sticky folder). Without flock (not util-linux)
 * there is no lock, as before.
 */

export type ProbeLockKind = 'gdb' | 'uprobe';

const WAIT_S = 600;

function lockDir(): string {
  // Machine-wide, not $TMPDIR: two users of one binary may have different temp folders.
  try {
    accessSync('/run/lock', constants.W_OK);
    return '/run/lock';
  } catch {
    return tmpdir();
  }
}

/** The lock file, made readable by every user when this run creates it. */
function ensureLockFile(path: string): void {
  if (existsSync(path)) return;
  closeSync(openSync(path, 'a', 0o644));
  chmodSync(path, 0o644);
}

/** The lock file of a binary: one per inode, whatever path names it. */
export function probeLockPath(binary: string): string {
  const st = statSync(binary);
  return join(lockDir(), `migrace-probes-${st.dev}-${st.ino}.lock`);
}

/** The flock children still waiting for a lock, so a signal to migrace alone (SIGTERM) ends their wait too. */
const waiting = new Set<ChildProcess>();

/**
 * Give up every lock wait in progress: each throws INTERRUPTED. Ctrl-C in
 * a terminal reaches the waiting flock with migrace (one process group),
 * a SIGTERM sent to migrace alone does not; cli/signals.ts calls this.
 */
export function interruptLockWaits(): void {
  for (const child of waiting) child.kill('SIGTERM');
}

/**
 * Take the lock for placing probes of `kind` on `binary`; resolves with
 * the function that releases it. Waits (up to 10 minutes, saying so once)
 * while the other kind holds it.
 */
export async function lockBinaryForProbes(binary: string, kind: ProbeLockKind, say?: (msg: string) => void): Promise<() => void> {
  const flock = findProgram('flock', '/usr/bin:/bin');
  let path: string;
  try {
    path = probeLockPath(binary);
  } catch {
    return () => undefined;
  }
  if (flock === null) return () => undefined;
  try {
    ensureLockFile(path);
  } catch {
    /* the shell's open below says why */
  }
  // The file and the flock command are positional parameters of the script, never part of its text.
  // flock, a child of the shell while it waits, dies with the shell; the shell, then cat, with migrace.
  const wait = dieWithParent(flock, [kind === 'gdb' ? '--shared' : '--exclusive', '-w', String(WAIT_S), '9']);
  const cmd = dieWithParent('/bin/sh', ['-c', 'exec 9<"$1" || exit 66; shift; "$@" || exit $?; echo locked; exec cat', 'sh',
    path, wait.file, ...wait.args]);
  const began = Date.now();
  const child: ChildProcess = spawn(cmd.file, cmd.args, { stdio: ['pipe', 'pipe', 'ignore'] });
  const untrack = child.pid ? track(child.pid, 'probe lock (flock)') : () => undefined;
  const release = (): void => {
    untrack();
    child.stdin?.end();
    child.kill('SIGKILL');
  };
  const other = kind === 'gdb' ? 'kernel uprobes' : 'gdb breakpoints';
  const slow = setTimeout(() => say?.(`migrace: waiting for another migrace's ${other} on ${binary} to go (the kernel's probes hide gdb's at the same places)`), 1000);
  let outcome: 'locked' | { code: number | null; signal: NodeJS.Signals | null };
  waiting.add(child);
  try {
    outcome = await new Promise<'locked' | { code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      let out = '';
      child.stdout!.on('data', (d) => {
        out += String(d);
        if (out.includes('locked')) resolve('locked');
      });
      child.on('error', () => resolve({ code: null, signal: null }));
      child.on('exit', (code, signal) => resolve({ code, signal }));
    });
  } finally {
    clearTimeout(slow);
    waiting.delete(child);
  }
  if (outcome !== 'locked') {
    release();
    // Ctrl-C reaches the waiting child too: the wait was given up, not the lock.
    if (outcome.signal !== null) throw new MigraceError('INTERRUPTED', `interrupted while waiting for another migrace's ${other} on ${binary}`);
    // flock's conflict code, after the whole wait: the other kind kept the binary all that time.
    if (outcome.code === 1 && Date.now() - began >= (WAIT_S - 1) * 1000) {
      throw new MigraceError('PROBES', `another migrace kept ${other} on ${binary} for more than ${WAIT_S} s; try again when it has ended`);
    }
    say?.(`migrace: warning: no probe lock on ${binary} (${path}: exit ${outcome.code ?? 'error'}); gdb breakpoints and kernel uprobes of this binary at the same time in another migrace would hide each other's hits`);
    return () => undefined;
  }
  // Held in the background: it must not keep migrace's event loop alive (it dies with migrace anyway).
  child.unref();
  for (const stream of [child.stdin, child.stdout]) (stream as unknown as { unref?: () => void } | null)?.unref?.();
  return release;
}
