import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MigraceError } from '../../trace/errors.js';

/**
 * Where migrace's own files are, whether it runs from a checkout (sources
 * under vitest, or dist/ after `npm run build`) or from an installed package
 * (`npm install -g migrace-X.tgz`), and where it may write per-user files.
 *
 * - packageRoot(): the folder holding migrace's package.json.
 * - isInstalledPackage(): true inside a node_modules tree. An installed
 *   package may be read-only and ships no build products besides dist/, so
 *   what a checkout builds in place (minimig) is built into the user cache.
 * - userCacheDir(...parts): $XDG_CACHE_HOME/migrace/... (~/.cache when unset
 *   or relative, as the XDG spec says).
 */

let root: string | undefined;

export function packageRoot(): string {
  if (root) return root;
  // Walk up from this file: recorder/targets in the sources, dist/recorder/targets when built.
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir); dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'migrace') {
      root = dir;
      return dir;
    }
  }
  throw new MigraceError('TARGET_MISSING', `no package.json of migrace above ${fileURLToPath(import.meta.url)}: the installation is incomplete`);
}

export function isInstalledPackage(): boolean {
  return packageRoot().split(sep).includes('node_modules');
}

export function userCacheDir(...parts: string[]): string {
  const xdg = process.env.XDG_CACHE_HOME;
  const base = xdg && xdg.startsWith('/') ? xdg : join(homedir(), '.cache');
  return join(base, 'migrace', ...parts);
}
