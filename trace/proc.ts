import { readFileSync } from 'node:fs';
import { constants } from 'node:os';

/**
 * What /proc says about a process, read one way for everybody: the reaper,
 * GdbSession and the store (which tells a live recorder from a dead one).
 * A pid alone is not an identity: the kernel reuses pids, so a process is
 * named by its pid and its start time (field 22 of /proc/PID/stat, in clock
 * ticks since boot), and nothing is signalled or declared dead on the pid
 * alone when the start time is known.
 */

export interface ProcStat {
  /** R, S, D, T (stopped), t (traced), Z (zombie), ... */
  state: string;
  ppid: number;
  startTime: string;
  /** The wait status (field 52), which the kernel fills in once the process has exited: a zombie's says how it ended. */
  exitStatus: number | null;
}

export function readProcStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // comm may hold spaces and parentheses: the fields start after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  if (fields.length < 20) return null;
  const status = fields.length > 49 ? Number(fields[49]) : NaN;
  return { state: fields[0], ppid: Number(fields[1]), startTime: fields[19], exitStatus: Number.isInteger(status) ? status : null };
}

const SIGNAL_NAMES = new Map(Object.entries(constants.signals).map(([name, n]) => [n, name]));

/**
 * How a process that has exited but was not reaped yet (a zombie) ended:
 * "signal SIGKILL" or "code 3"; null while it runs or once it is gone. Its
 * parent may be a tracer that never tells (gdb loses a program killed while
 * it loads libthread_db), so this is the one place left to ask.
 */
export function exitOf(pid: number): string | null {
  const stat = readProcStat(pid);
  if (!stat || stat.state !== 'Z' || stat.exitStatus === null) return null;
  const sig = stat.exitStatus & 0x7f;
  return sig !== 0 ? `signal ${SIGNAL_NAMES.get(sig) ?? sig}` : `code ${(stat.exitStatus >> 8) & 0xff}`;
}

export function procStartTime(pid: number): string | null {
  return readProcStat(pid)?.startTime ?? null;
}

let ownStart: string | null | undefined;

/**
 * This process's start time, read once: it cannot change, and the store
 * asks for it at every session it creates or reads while recording (a read
 * of /proc/self/stat sums every thread's counters: a fifth of a millisecond).
 */
export function ownStartTime(): string | null {
  if (ownStart === undefined) ownStart = procStartTime(process.pid);
  return ownStart;
}

/** Alive and not a zombie; when `startTime` is given, also the same process. */
export function processIsAlive(pid: number, startTime?: string | null): boolean {
  if (pid === process.pid) {
    const own = ownStartTime();
    return startTime === undefined || startTime === null || own === null || own === startTime;
  }
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const stat = readProcStat(pid);
  if (stat === null) return true; // /proc hidden (hidepid): trust the signal
  if (stat.state === 'Z') return false;
  return startTime === undefined || startTime === null || stat.startTime === startTime;
}

/** The TracerPid line of /proc/PID/status: 0 when nobody ptraces the process. */
export function tracerPid(pid: number): number | null {
  try {
    const m = /^TracerPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}
