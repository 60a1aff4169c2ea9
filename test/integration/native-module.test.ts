/**
 * bin/migrace.js refuses to start, saying how to fix it, when
 * better-sqlite3's native module is missing or broken (npm 12 installs the
 * package without building it and still exits 0), and when dist/ is not
 * built. Each case runs the real bin/migrace.js in a copy of the package
 * tree in a temporary folder: its own package.json and a copy of
 * better-sqlite3 whose build/ is left out, replaced by a broken file, or
 * copied whole. The shared node_modules is never touched.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const CHECKOUT = process.cwd();
const REAL_MODULE = join(CHECKOUT, 'node_modules', 'better-sqlite3');
const tmp = mkdtempSync(join(tmpdir(), 'migrace-native-module-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

type Build = 'none' | 'broken' | 'real';

/** A package tree at tmp/NAME: bin/migrace.js, package.json (allowScripts as given), better-sqlite3 with `build`. */
function packageTree(name: string, opts: { module: boolean; build?: Build; allowScripts?: boolean }): string {
  const root = join(tmp, name);
  mkdirSync(join(root, 'bin'), { recursive: true });
  copyFileSync(join(CHECKOUT, 'bin', 'migrace.js'), join(root, 'bin', 'migrace.js'));
  const pkg = JSON.parse(readFileSync(join(CHECKOUT, 'package.json'), 'utf8')) as Record<string, unknown>;
  if (!opts.allowScripts) delete pkg.allowScripts;
  writeFileSync(join(root, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
  if (!opts.module) return root;
  const mod = join(root, 'node_modules', 'better-sqlite3');
  // Without build/ (the native module) and deps/ (SQLite's source, which nothing here reads).
  cpSync(REAL_MODULE, mod, { recursive: true, filter: (src) => !/^(build|deps)(\/|$)/.test(relative(REAL_MODULE, src)) });
  const release = join(mod, 'build', 'Release');
  if (opts.build === 'broken') {
    mkdirSync(release, { recursive: true });
    writeFileSync(join(release, 'better_sqlite3.node'), 'not a shared object\n');
  } else if (opts.build === 'real') {
    mkdirSync(release, { recursive: true });
    copyFileSync(join(REAL_MODULE, 'build', 'Release', 'better_sqlite3.node'), join(release, 'better_sqlite3.node'));
  }
  return root;
}

/** `node bin/migrace.js sessions` in the tree, with no module path but the tree's own. */
function start(root: string): { status: number | null; stderr: string; stdout: string } {
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: tmp };
  delete env.NODE_PATH;
  const r = spawnSync(process.execPath, [join(root, 'bin', 'migrace.js'), 'sessions', '--db', join(tmp, 'never.db')], {
    cwd: tmp, env, encoding: 'utf8', timeout: 30_000,
  });
  if (r.error) throw r.error;
  return { status: r.status, stderr: r.stderr, stdout: r.stdout };
}

const RULE = "(npm 12 skips install scripts that the package's allowScripts does not allow, and still exits 0)";

describe('bin/migrace.js: cannot start, and the fix', () => {
  it('the native module is not built, allowScripts allows it: exit 1, rebuild it', () => {
    const root = packageTree('allowed', { module: true, build: 'none', allowScripts: true });
    const r = start(root);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`migrace: cannot start: better-sqlite3's native module is not built ${RULE}. `
      + `Fix: (cd ${root} && npm rebuild better-sqlite3 --foreground-scripts)\n`);
  });

  it('not built, and the package does not allow its script: approve it first', () => {
    const root = packageTree('unapproved', { module: true, build: 'none', allowScripts: false });
    const r = start(root);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toBe(`migrace: cannot start: better-sqlite3's native module is not built ${RULE}. `
      + `Fix: (cd ${root} && npm install-scripts approve better-sqlite3 && npm rebuild better-sqlite3 --foreground-scripts)\n`);
  });

  it('a native module that does not load: the loader\'s first line', () => {
    const root = packageTree('broken', { module: true, build: 'broken', allowScripts: true });
    const r = start(root);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^migrace: cannot start: better-sqlite3's native module does not load \\(.*better_sqlite3\\.node: file too short\\) `));
    expect(r.stderr).toContain(`Fix: (cd ${root} && npm rebuild better-sqlite3 --foreground-scripts)\n`);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('no dependencies at all: run npm ci', () => {
    const root = packageTree('bare', { module: false });
    const r = start(root);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toBe(`migrace: cannot start: its dependencies are not installed; run "npm ci" in ${root}\n`);
  });

  it('the native module loads but dist/ is not built: run npm run build', () => {
    const root = packageTree('unbuilt', { module: true, build: 'real', allowScripts: true });
    const r = start(root);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^migrace: cannot start \(Cannot find module '.*\/dist\/cli\/main\.js'.*\); run "npm run build" first\n$/);
  });
});
