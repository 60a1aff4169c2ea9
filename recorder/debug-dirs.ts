import { statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { MigraceError } from '../trace/errors.js';

/**
 * Where separate debug files are looked for: gdb's `debug-file-directory`,
 * by build-id (DIR/.build-id/NN/REST.debug) and by `.gnu_debuglink` name
 * (DIR/BINARY'S-DIR/NAME). gdb's default is /usr/lib/debug, where Debian's
 * -dbgsym packages install them. MIGRACE_DEBUG_FILE_DIRECTORY, a
 * colon-separated list like gdb's setting, replaces it for migrace's own
 * lookup (elf.ts) and for every gdb migrace starts (probe discovery and
 * the recording sessions), so the two always agree: debug files unpacked
 * without root (`dpkg-deb -x PKG-dbgsym.deb DIR` puts them in
 * DIR/usr/lib/debug) are then found as installed ones are.
 */
export const DEBUG_DIR_VARIABLE = 'MIGRACE_DEBUG_FILE_DIRECTORY';
/** gdb's default (`show debug-file-directory` of Debian's gdb). */
export const DEFAULT_DEBUG_DIR = '/usr/lib/debug';

/** The directories, in gdb's order; a bad MIGRACE_DEBUG_FILE_DIRECTORY is a USAGE error naming it. */
export function debugFileDirectories(env: NodeJS.ProcessEnv = process.env): string[] {
  const value = env[DEBUG_DIR_VARIABLE];
  if (value === undefined || value === '') return [DEFAULT_DEBUG_DIR];
  const dirs = value.split(':');
  for (const dir of dirs) {
    const bad = (why: string) => new MigraceError('USAGE',
      `${DEBUG_DIR_VARIABLE}=${value}: ${dir === '' ? 'an empty entry' : dir} ${why} (a colon-separated list of directories, like gdb's debug-file-directory)`);
    if (!isAbsolute(dir)) throw bad('is not an absolute path');
    let isDir = false;
    try {
      isDir = statSync(dir).isDirectory();
    } catch {
      /* missing: said below */
    }
    if (!isDir) throw bad('is not a directory');
  }
  return dirs;
}

/** gdb options that make gdb look where migrace looks: none when gdb's default is used. */
export function gdbDebugDirOptions(env: NodeJS.ProcessEnv = process.env): string[] {
  const value = env[DEBUG_DIR_VARIABLE];
  if (value === undefined || value === '') return [];
  // -iex: before gdb reads the binary, which is when it looks for the debug file.
  return ['-iex', `set debug-file-directory ${debugFileDirectories(env).join(':')}`];
}
