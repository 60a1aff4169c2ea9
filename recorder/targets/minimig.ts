import { createHash } from 'node:crypto';
import { accessSync, constants, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { MigraceError } from '../../trace/errors.js';
import { isInstalledPackage, packageRoot, userCacheDir } from './package-paths.js';
import { makePrivateDir } from './private-dir.js';
import type { Destination, PreparedTarget } from './types.js';

/**
 * minimig, the bundled C target: where its source and binaries are, and how
 * to start it.
 *
 * - minimigDir(): samples/minimig, the C source and its Makefile.
 * - minimigBinary(patched): in a checkout, the binaries `make -C
 *   samples/minimig` (npm run build) leaves there; in an installed package,
 *   built on first use into $XDG_CACHE_HOME/migrace/minimig/<source hash>/,
 *   so an edited or upgraded source never runs a stale binary (buildInCache).
 * - prepareMinimig(): the arguments and private folder for one run.
 */

const SOURCES = ['Makefile', 'minimig.c'] as const;

export function minimigDir(): string {
  const dir = join(packageRoot(), 'samples', 'minimig');
  if (!existsSync(join(dir, 'minimig.c'))) throw new MigraceError('TARGET_MISSING', `cannot find minimig.c in ${dir}: the installation is incomplete`);
  return dir;
}

export function minimigBinary(patched: boolean): string {
  const dir = isInstalledPackage() ? buildInCache(minimigDir()) : minimigDir();
  return join(dir, patched ? 'minimig-patched' : 'minimig');
}

/** The first 16 hex digits of a SHA-256 over the Makefile and the source. */
function sourceHash(srcDir: string): string {
  const h = createHash('sha256');
  for (const f of SOURCES) h.update(`${f}\0`).update(readFileSync(join(srcDir, f))).update('\0');
  return h.digest('hex').slice(0, 16);
}

function onPath(tool: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((d) => {
    try {
      accessSync(join(d || '.', tool), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/**
 * Build both binaries in a fresh folder beside the final one and rename it
 * into place: concurrent first uses never see a half-built binary, and the
 * loser of the race just drops its copy.
 */
function buildInCache(srcDir: string): string {
  const dir = userCacheDir('minimig', sourceHash(srcDir));
  if (existsSync(join(dir, '.complete'))) return dir;
  const missing = ['gcc', 'make'].filter((t) => !onPath(t));
  if (missing.length > 0) {
    throw new MigraceError('TARGET_MISSING',
      `minimig ships as C source and is built on first use, which needs gcc and make: ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not installed (Debian: apt-get install gcc make)`);
  }
  const parent = userCacheDir('minimig');
  let work: string;
  try {
    mkdirSync(parent, { recursive: true });
    work = mkdtempSync(join(parent, '.build-'));
  } catch (e) {
    throw new MigraceError('TARGET_MISSING', `cannot create the minimig build folder in ${parent}: ${(e as Error).message}`);
  }
  try {
    for (const f of SOURCES) copyFileSync(join(srcDir, f), join(work, f));
    const r = spawnSync('make', ['-s', '-C', work], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, MAKEFLAGS: '' } });
    if (r.error || r.status !== 0) {
      const why = r.error ? r.error.message : (r.stderr || r.stdout).trim().split('\n').slice(-3).join(' / ');
      throw new MigraceError('TARGET_MISSING', `building minimig from ${srcDir} failed: ${why}`);
    }
    writeFileSync(join(work, '.complete'), '');
    try {
      renameSync(work, dir);
    } catch (e) {
      // Another process finished first: its build is as good as ours.
      if (!existsSync(join(dir, '.complete'))) throw new MigraceError('TARGET_MISSING', `cannot move the minimig build into ${dir}: ${(e as Error).message}`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return dir;
}

export interface MinimigOptions {
  patched?: boolean;
  binary?: string;
  setupMs?: number;
  transferMs?: number;
  ramMb?: number;
  /** Take a big lock around active -> completed, as QEMU 10 does. */
  bqlCompletion?: boolean;
}

/**
 * minimig's destination: a loopback TCP sink that takes the pages and
 * throws them away. Killing it resets the connection, so the source's next
 * send fails and the migration goes to failed, as when a QEMU destination
 * dies. In-process: nothing to reap.
 */
async function startSink(): Promise<{ uri: string; destination: Destination; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('data', () => undefined);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  server.unref();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const close = async (): Promise<void> => {
    for (const s of sockets) s.resetAndDestroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return { uri: `tcp:127.0.0.1:${port}`, destination: { kill: close, execute: null }, close };
}

export async function prepareMinimig(opts: MinimigOptions = {}): Promise<PreparedTarget> {
  const binary = opts.binary ?? minimigBinary(opts.patched ?? false);
  if (!existsSync(binary)) {
    throw new MigraceError('TARGET_MISSING', `minimig binary not found: ${binary} (build it with "make -C samples/minimig" or "npm run build")`);
  }
  try {
    accessSync(binary, constants.X_OK);
  } catch {
    throw new MigraceError('TARGET_MISSING', `minimig binary is not executable: ${binary}`);
  }
  const dir = makePrivateDir('migrace-minimig');
  const qmpPath = join(dir.path, 'qmp.sock');
  const args = ['-qmp', `unix:${qmpPath},server,wait=off`, '-name', 'minimig,debug-threads=on'];
  if (opts.setupMs !== undefined) args.push('--setup-ms', String(opts.setupMs));
  if (opts.transferMs !== undefined) args.push('--transfer-ms', String(opts.transferMs));
  if (opts.ramMb !== undefined) args.push('--ram-mb', String(opts.ramMb));
  if (opts.bqlCompletion) args.push('--bql-completion');
  let sink: Awaited<ReturnType<typeof startSink>>;
  try {
    sink = await startSink();
  } catch (e) {
    dir.remove();
    throw new MigraceError('TARGET_EXITED', `cannot open minimig's destination socket on loopback: ${(e as Error).message}`);
  }
  return {
    info: {
      kind: 'minimig', binary, build_id: null, qemu_version: null,
      variant: opts.patched ? 'patched' : 'unpatched', status_table: '4.2',
    },
    binary,
    args,
    env: {},
    qmpPath,
    migrateUri: sink.uri,
    logPath: join(dir.path, 'target.log'),
    setup: [],
    destination: sink.destination,
    dispose: async () => {
      await sink.close();
      dir.remove();
    },
  };
}
