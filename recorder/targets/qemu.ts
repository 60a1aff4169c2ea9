import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, openSync, closeSync, statSync } from 'node:fs';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { MigraceError, messageOf } from '../../trace/errors.js';
import { exitOf, readProcStat } from '../../trace/proc.js';
import { assertShellSafePath } from '../gdb/session.js';
import { dieWithParent, isAlive, track, waitGone } from '../reaper.js';
import type { Profile } from '../probes/profile.js';
import { QmpClient } from '../qmp.js';
import { freePort } from './ports.js';
import { logTail, makePrivateDir } from './private-dir.js';
import type { Destination, PreparedTarget } from './types.js';

/**
 * A QEMU migration pair on loopback: the destination runs on its own
 * (`-incoming defer`, then `migrate-incoming` over its QMP socket, so we know
 * it listens before the source migrates), the source is what gdb starts.
 * Both get a private 0700 folder for their sockets and logs.
 */

export interface QemuPairOptions {
  qemu: string;
  /** Extra environment for both QEMUs (LD_LIBRARY_PATH for the bullseye build). */
  env?: Record<string, string>;
  /** -m for both (QEMU's syntax: 128, 128M, 1G). */
  memory?: string;
  /** Extra arguments for both sides (after ours). */
  extraArgs?: string[];
  profile: Profile;
  /** Bytes per second: slows the migration down when a scenario needs time. */
  maxBandwidth?: number;
}

const MEMORY = /^\d+[KMGT]?$/i;

/** QEMU's -m syntax as migrace accepts it: a number of MiB, or a number with K, M, G or T. */
export function isQemuMemory(text: string): boolean {
  return MEMORY.test(text) && Number.parseInt(text, 10) > 0;
}

/**
 * The QEMU binary a run will start: it exists, is an executable regular
 * file, and its path survives gdb's `exec PROGRAM` through /bin/sh (a usage
 * error otherwise). Checked before discovery and before the destination
 * starts, so a refused path leaves nothing behind.
 */
export function checkQemuBinary(path: string): void {
  try {
    assertShellSafePath(path);
  } catch (e) {
    throw new MigraceError('USAGE', `--qemu: ${(e as Error).message}`);
  }
  if (!existsSync(path)) throw new MigraceError('TARGET_MISSING', `QEMU binary not found: ${path} (Debian: apt-get install qemu-system-x86)`);
  // A directory passes X_OK (search permission): require a regular file.
  let isFile = false;
  try {
    isFile = statSync(path).isFile();
  } catch (e) {
    throw new MigraceError('TARGET_MISSING', `QEMU binary cannot be read: ${path} (${(e as NodeJS.ErrnoException).code ?? messageOf(e)})`);
  }
  if (!isFile) throw new MigraceError('TARGET_MISSING', `QEMU binary is not a regular file: ${path}`);
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new MigraceError('TARGET_MISSING', `QEMU binary is not executable: ${path}`);
  }
}

function commonArgs(memory: string): string[] {
  return ['-nodefaults', '-display', 'none', '-S', '-m', memory];
}

/** A spawn failure (ENOENT, EACCES, ...) as the error migrace reports. */
function spawnFailure(qemu: string, e: NodeJS.ErrnoException): MigraceError {
  const code = e.code ?? 'unknown error';
  const why = code === 'ENOENT' ? 'not found (or its interpreter is missing)' : code === 'EACCES' ? 'not executable' : code;
  return new MigraceError(code === 'ENOENT' || code === 'EACCES' ? 'TARGET_MISSING' : 'TARGET_EXITED',
    `cannot start the destination QEMU ${qemu}: ${why} (${e.message})`, { cause: e });
}

export interface RunningDestination {
  pid: number;
  uri: string;
  stop: () => Promise<void>;
  /** Why the destination is gone before stop() ended it (it was killed, it crashed), or null. */
  failure: () => MigraceError | null;
  /** What the hunt's scenarios do to the destination. */
  destination: Destination;
}

export async function startDestination(opts: QemuPairOptions, dir: string): Promise<RunningDestination> {
  const memory = opts.memory ?? '128';
  const qmpPath = join(dir, 'dst-qmp.sock');
  const log = openSync(join(dir, 'destination.log'), 'a', 0o600);
  let child: ReturnType<typeof spawn>;
  try {
    // Started on its own (not under gdb): only the parent-death signal ends it if migrace is SIGKILLed.
    const cmd = dieWithParent(opts.qemu, [
      ...commonArgs(memory), '-name', 'destination', '-incoming', 'defer',
      '-qmp', `unix:${qmpPath},server=on,wait=off`, ...(opts.extraArgs ?? []),
    ]);
    child = spawn(cmd.file, cmd.args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', log, log], detached: false });
  } catch (e) {
    // spawn throws synchronously only for bad arguments (a NUL byte, ...).
    throw new MigraceError('BAD_INPUT', `cannot start the destination QEMU ${opts.qemu}: ${messageOf(e)}`, { cause: e });
  } finally {
    closeSync(log);
  }
  // Without a listener an 'error' event (spawn failed, or a later kill failed)
  // is thrown by Node as an uncaught exception with a stack.
  let failure: MigraceError | null = null;
  let onFailure: ((e: MigraceError) => void) | null = null;
  const failed = new Promise<never>((_, reject) => {
    onFailure = reject;
  });
  failed.catch(() => undefined);
  child.on('error', (e: NodeJS.ErrnoException) => {
    if (failure) return;
    failure = spawnFailure(opts.qemu, e);
    onFailure?.(failure);
  });
  const pid = child.pid;
  // No pid: spawn failed, and the 'error' event follows on the next tick.
  if (!pid) return failed;
  const untrack = track(pid, 'destination qemu');
  let exited = false;
  let exitCode: number | null = null;
  let exitSignal: string | null = null;
  let stopping = false;
  child.on('exit', (code, signal) => { exited = true; exitCode = code; exitSignal = signal; });
  const died = (): MigraceError | null => {
    if (stopping) return null;
    // Asked at the end of a run too: a death the 'exit' event has not reported yet is read from /proc.
    const stat = exited ? null : readProcStat(pid);
    if (!exited && stat !== null && stat.state !== 'Z') return null;
    const how = exited ? (exitSignal ? `signal ${exitSignal}` : `code ${exitCode ?? '?'}`) : exitOf(pid) ?? 'killed';
    const said = logTail(join(dir, 'destination.log'));
    return new MigraceError('TARGET_EXITED', `the destination QEMU (pid ${pid}) exited (${how}) while the source migrated to it${said ? `; it said: ${said}` : ''}`);
  };
  const stop = async (): Promise<void> => {
    stopping = true;
    if (isAlive(pid)) child.kill('SIGTERM');
    if (!(await waitGone(pid, 2000))) child.kill('SIGKILL');
    await waitGone(pid, 3000);
    untrack();
  };
  /** `p`, or the spawn failure if that comes first. */
  const guard = <T>(p: Promise<T>): Promise<T> => Promise.race([p, failed]);
  try {
    const connecting = QmpClient.connect(qmpPath, { timeoutMs: 15_000, isAlive: () => !exited && failure === null });
    // If the failure wins, a connection made later is closed at once.
    connecting.then((late) => { if (failure) void late.close(); }, () => undefined);
    const qmp = await guard(connecting);
    try {
      const port = await freePort();
      const uri = `tcp:127.0.0.1:${port}`;
      await guard(qmp.execute('migrate-incoming', { uri }));
      return { pid, uri, stop, failure: died, destination: destinationControl(pid, qmpPath, () => exited, () => { stopping = true; }) };
    } finally {
      await qmp.close();
    }
  } catch (e) {
    await stop();
    // The log goes with the private folder: what it says is quoted here.
    const said = logTail(join(dir, 'destination.log'));
    // setpriv runs the program: its exec failure is an exit code and a line in the log.
    if (exitCode === 126 || exitCode === 127) {
      throw new MigraceError('TARGET_MISSING', `cannot start the destination QEMU ${opts.qemu}: ${exitCode === 127 ? 'not found (or its interpreter is missing)' : 'not executable'}${said ? ` (${said})` : ''}`);
    }
    const msg = e instanceof MigraceError ? e.message : messageOf(e);
    throw new MigraceError(e instanceof MigraceError ? e.code : 'TARGET_EXITED', `destination QEMU: ${msg}${said ? `; it said: ${said}` : ''}`);
  }
}

/**
 * What a scenario may do to the destination: kill it (SIGKILL, so it cannot
 * say goodbye: the source's next write fails), or send it a QMP command on
 * a connection of its own (QEMU serves one client per monitor socket; the
 * one startDestination used is closed).
 */
function destinationControl(pid: number, qmpPath: string, exited: () => boolean, expectEnd: () => void): Destination {
  return {
    kill: async () => {
      // Killed on purpose: not the failure helperFailure() reports.
      expectEnd();
      if (isAlive(pid)) process.kill(pid, 'SIGKILL');
      await waitGone(pid, 3000);
    },
    execute: async (command, args) => {
      const qmp = await QmpClient.connect(qmpPath, { timeoutMs: 10_000, isAlive: () => !exited() });
      try {
        return (await qmp.execute(command, args)).ret;
      } finally {
        await qmp.close();
      }
    },
  };
}

export async function prepareQemuPair(opts: QemuPairOptions): Promise<PreparedTarget> {
  checkQemuBinary(opts.qemu);
  const memory = opts.memory ?? '128';
  if (!isQemuMemory(memory)) throw new MigraceError('USAGE', `--memory must look like 128, 512M or 1G, not "${memory}"`);
  const dir = makePrivateDir('migrace-qemu');
  let dest: Awaited<ReturnType<typeof startDestination>>;
  try {
    dest = await startDestination(opts, dir.path);
  } catch (e) {
    dir.remove();
    throw e;
  }
  const qmpPath = join(dir.path, 'src-qmp.sock');
  const { profile } = opts;
  return {
    info: {
      kind: 'qemu', binary: opts.qemu, build_id: profile.build_id, qemu_version: profile.qemu_version,
      variant: profile.variant, status_table: profile.status_table,
      ...(profile.status_names ? { status_names: profile.status_names } : {}),
    },
    binary: opts.qemu,
    args: [...commonArgs(memory), '-name', 'source,debug-threads=on', '-qmp', `unix:${qmpPath},server=on,wait=off`, ...(opts.extraArgs ?? [])],
    env: opts.env ?? {},
    qmpPath,
    migrateUri: dest.uri,
    logPath: join(dir.path, 'source.log'),
    setup: opts.maxBandwidth ? [{ execute: 'migrate-set-parameters', arguments: { 'max-bandwidth': opts.maxBandwidth } }] : [],
    destination: dest.destination,
    helperFailure: dest.failure,
    dispose: async () => {
      await dest.stop();
      dir.remove();
    },
  };
}

/**
 * A QEMU extracted from a Debian package (dpkg-deb -x) lives in
 * ROOT/usr/bin and needs ROOT/usr/lib/x86_64-linux-gnu on its library path.
 * The system's own QEMU needs nothing.
 */
export function extractedTreeEnv(qemuPath: string): Record<string, string> {
  const bin = dirname(resolvePath(qemuPath));
  if (bin === '/usr/bin' || !bin.endsWith('/usr/bin')) return {};
  const lib = join(bin, '..', 'lib', 'x86_64-linux-gnu');
  return existsSync(lib) ? { LD_LIBRARY_PATH: resolvePath(lib) } : {};
}
