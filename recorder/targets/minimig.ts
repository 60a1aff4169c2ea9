import { existsSync, accessSync, constants } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MigraceError } from '../../trace/errors.js';
import { makePrivateDir } from './private-dir.js';
import type { PreparedTarget } from './types.js';

/** samples/minimig relative to this file, both from the sources and from dist/. */
export function minimigDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const up of ['../../samples/minimig', '../../../samples/minimig']) {
    const dir = resolve(here, up);
    if (existsSync(join(dir, 'minimig.c'))) return dir;
  }
  throw new MigraceError('TARGET_MISSING', 'cannot find samples/minimig next to the migrace sources');
}

export function minimigBinary(patched: boolean): string {
  return join(minimigDir(), patched ? 'minimig-patched' : 'minimig');
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
  return {
    info: {
      kind: 'minimig', binary, build_id: null, qemu_version: null,
      variant: opts.patched ? 'patched' : 'unpatched', status_table: '4.2',
    },
    binary,
    args,
    env: {},
    qmpPath,
    migrateUri: 'tcp:127.0.0.1:0',
    logPath: join(dir.path, 'target.log'),
    setup: [],
    dispose: async () => dir.remove(),
  };
}
