/**
 * The npm package as a user gets it: `npm pack` of this tree (its prepack
 * builds dist/), `npm install -g --prefix` into an empty folder (which builds
 * better-sqlite3 from source here: minutes), then `migrace demo` from that
 * prefix, far from the checkout. minimig is built on first use into the
 * user's cache; without gcc or make that first use says what is missing.
 *
 * The pack runs in a copy of the tree (tracked and untracked files, not
 * ignored ones, with node_modules linked), so the checkout's own dist/ stays
 * as the other tests use it.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withoutSweeps } from '../helpers/processes.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const CHECKOUT = process.cwd();
const tmp = mkdtempSync(join(tmpdir(), 'migrace-package-test-'));
const prefix = join(tmp, 'prefix');
const bin = join(prefix, 'bin', 'migrace');
const pkgDir = join(prefix, 'lib', 'node_modules', 'migrace');
let tarball = '';
let files: string[] = [];

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs: number }): { stdout: string; stderr: string; status: number | null } {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, encoding: 'utf8', timeout: opts.timeoutMs, maxBuffer: 64 << 20 });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}\n${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

beforeAll(() => {
  const src = join(tmp, 'src');
  const listed = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: CHECKOUT, encoding: 'utf8' })
    // Regular files only: a worktree's samples/.cache or node_modules may be a symlink git does not ignore.
    .split('\0').filter((f) => f && existsSync(join(CHECKOUT, f)) && lstatSync(join(CHECKOUT, f)).isFile());
  mkdirSync(src);
  execFileSync('cp', ['--parents', '-t', src, ...listed], { cwd: CHECKOUT });
  symlinkSync(realpathSync(join(CHECKOUT, 'node_modules')), join(src, 'node_modules'));

  let t = Date.now();
  const pack = run('npm', ['pack', '--pack-destination', tmp, '--json'], { cwd: src, timeoutMs: 600_000 });
  expect(pack.status, pack.stderr).toBe(0);
  const [info] = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as Array<{ filename: string; files: Array<{ path: string }> }>;
  tarball = join(tmp, info.filename);
  files = info.files.map((f) => f.path);
  console.log(`[package] npm pack (prepack builds dist/): ${((Date.now() - t) / 1000).toFixed(0)} s, ${files.length} files`);

  t = Date.now();
  const install = run('npm', ['install', '-g', '--prefix', prefix, tarball, '--no-audit', '--no-fund'], { cwd: tmp, timeoutMs: 1_200_000 });
  expect(install.status, install.stderr).toBe(0);
  console.log(`[package] npm install -g --prefix (builds better-sqlite3): ${((Date.now() - t) / 1000).toFixed(0)} s`);
}, 1_800_000);

describe('the npm package', () => {
  it('ships the built CLI and minimig as C source, without tests, TypeScript, source maps or sample generators', () => {
    for (const f of ['bin/migrace.js', 'dist/cli/main.js', 'dist/recorder/targets/minimig.js', 'samples/minimig/minimig.c',
      'samples/minimig/Makefile', 'samples/fetch-qemu.sh', 'samples/debian-lib.sh', 'package.json', 'README.md']) {
      expect(files, f).toContain(f);
    }
    const unwanted = files.filter((f) => /^test\/|^dist\/test\/|\.ts$|\.map$|\.py$|^samples\/(sessions|transcripts|trace-logs|libvirt-logs)\/|^samples\/minimig\/minimig(-patched)?$/.test(f));
    expect(unwanted).toEqual([]);
  });

  it('installed into an empty prefix, `migrace demo` runs from there and builds minimig into the user cache', () => {
    const xdg = join(tmp, 'xdg');
    const work = join(tmp, 'demo-run');
    mkdirSync(work);
    const t = Date.now();
    const r = run(bin, ['demo', '--out', 'out'], { cwd: work, env: { ...process.env, XDG_CACHE_HOME: xdg }, timeoutMs: 300_000 });
    console.log(`[package] migrace demo from the prefix: ${((Date.now() - t) / 1000).toFixed(0)} s`);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/4\. replay LP#1994002 on both builds\n {2}session \d+: manifested;[^\n]*\n[^\n]*\n {2}session \d+: benign;/);
    expect(existsSync(join(work, 'out', 'report.html'))).toBe(true);
    // The diff of the two replays pairs the one interleaving: its outcome changed, one row (as report-real.test.ts words it).
    const row = 'setup -> active inside q1: manifested (active, no ram) -> benign (setup)';
    expect(readFileSync(join(work, 'out', 'diff.txt'), 'utf8')).toContain(`\n  ${row}\n`);
    expect(readFileSync(join(work, 'out', 'diff.html'), 'utf8')).toContain(`<td class="pair">${row.replace(/>/g, '&gt;')}</td>`);

    // Built once, from the package's own source, into $XDG_CACHE_HOME/migrace/minimig/<source hash>/.
    const builds = readdirSync(join(xdg, 'migrace', 'minimig')).filter((d) => !d.startsWith('.'));
    expect(builds).toHaveLength(1);
    expect(builds[0]).toMatch(/^[0-9a-f]{16}$/);
    const cached = join(xdg, 'migrace', 'minimig', builds[0]);
    expect(readdirSync(cached).sort()).toEqual(['.complete', 'Makefile', 'minimig', 'minimig-patched', 'minimig.c']);
    // The sessions name the cached binaries, never the checkout's.
    const sessions = run(bin, ['sessions', '--db', join(work, 'out', 'migrace.db'), '--json'], { cwd: work, timeoutMs: 60_000 });
    expect(sessions.status, sessions.stderr).toBe(0);
    const binaries = new Set((JSON.parse(sessions.stdout) as Array<{ target: { binary: string } }>).map((s) => s.target.binary));
    expect([...binaries].sort()).toEqual([join(cached, 'minimig'), join(cached, 'minimig-patched')]);
    expect(existsSync(join(pkgDir, 'samples', 'minimig', 'minimig'))).toBe(false);
  });

  it('without gcc and make on PATH, the first use of minimig says what is missing, in one line', () => {
    // A PATH with node and gdb only (gdb is checked first), and a cache minimig was never built in.
    const path = join(tmp, 'node-only');
    mkdirSync(path);
    symlinkSync(process.execPath, join(path, 'node'));
    symlinkSync('/usr/bin/gdb', join(path, 'gdb'));
    const r = run(bin, ['record', '--target', 'minimig', '--db', join(tmp, 'nogcc.db')],
      { cwd: tmp, env: { ...process.env, PATH: path, XDG_CACHE_HOME: join(tmp, 'xdg-nogcc') }, timeoutMs: 60_000 });
    expect(withoutSweeps(r.stderr)).toBe('migrace: minimig ships as C source and is built on first use, which needs gcc and make: gcc and make are not installed (Debian: apt-get install gcc make)\n');
    expect(r.status).toBe(1);
  });
});
