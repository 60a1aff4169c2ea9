/**
 * samples/sid-chroot.sh leaves nothing mounted and nothing running, whatever
 * way it ends: a registry that does not serve sid (exit 3, the reason, no
 * half-built chroot: it fails before mounting), and, with /proc, /sys and
 * /dev mounted, a command that fails inside, `false`, a command killed by
 * a signal, and a SIGINT while a command runs. The ones inside need the
 * chroot .ci/install builds; they skip, saying so, without it. Mounts are
 * read from /proc/self/mountinfo (this process's mount namespace, the one
 * the script mounts in).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sleep } from '../../trace/async.js';

const SCRIPT = join(process.cwd(), 'samples', 'sid-chroot.sh');
// Where the scripts cache their builds (samples/fetch-qemu.sh and the others honour the same variable).
const CACHE = process.env.MIGRACE_QEMU_CACHE ?? join(process.cwd(), 'samples', '.cache');
const tmp = mkdtempSync(join(tmpdir(), 'migrace-sid-chroot-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const isRoot = process.getuid?.() === 0;
const hasDebootstrap = spawnSync('sh', ['-c', 'command -v debootstrap'], { encoding: 'utf8' }).status === 0;
const built = existsSync(join(CACHE, 'sid-chroot', '.complete'));
const cannotBuild = !isRoot ? 'needs root' : !hasDebootstrap ? 'needs debootstrap (.ci/install installs it)' : null;
const cannotRun = cannotBuild ?? (built ? null : 'no sid chroot built (bash samples/sid-chroot.sh build; .ci/install does)');
if (cannotRun) console.warn(`[sid-chroot] some tests skipped: ${cannotRun}`);

/** Mount points at or below `dir`: field 5 of mountinfo, whose blanks and backslashes are octal escapes. */
function mountsBelow(dir: string): string[] {
  const real = realpathSync(dir);
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m): m is string => Boolean(m))
    .map((m) => m.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((m) => m === real || m.startsWith(`${real}/`));
}

/** `sid-chroot.sh run -- CMD...`: its status and stderr; the chroot is still there afterwards, nothing mounted in it. */
function runInside(cmd: string[]): { status: number | null; stderr: string } {
  const r = spawnSync('bash', [SCRIPT, 'run', '--', ...cmd], { encoding: 'utf8', timeout: 120_000 });
  if (r.error) throw r.error;
  expect(mountsBelow(join(CACHE, 'sid-chroot', 'root'))).toEqual([]);
  // A failed command is not a failed build: the chroot stays.
  expect(existsSync(join(CACHE, 'sid-chroot', '.complete'))).toBe(true);
  expect(existsSync(join(CACHE, 'sid-chroot', 'root', 'usr', 'bin', 'qemu-system-x86_64'))).toBe(true);
  return { status: r.status, stderr: r.stderr };
}

/** A command that first checks /proc, /sys and /dev are mounted inside (exit 9 if not), then does `then`. */
const afterMounts = (then: string): string[] => ['sh', '-c', `for d in /proc /sys /dev; do mountpoint -q "$d" || exit 9; done; ${then}`];

/** Processes whose root directory is `root`. */
function processesInside(root: string): number[] {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((pid) => {
    try {
      return readlinkSync(`/proc/${pid}/root`) === root;
    } catch {
      return false;
    }
  }).map(Number);
}

describe('samples/sid-chroot.sh', () => {
  it.skipIf(cannotBuild !== null)('a registry that does not serve sid: exit 3 with the reason, nothing mounted, no half-built chroot', () => {
    const cache = join(tmp, 'unserved');
    const r = spawnSync('bash', [SCRIPT, 'build'], {
      encoding: 'utf8', timeout: 120_000,
      env: { ...process.env, MIGRACE_QEMU_CACHE: cache, MIGRACE_DEBIAN_URI: 'http://127.0.0.1:9/debian' },
    });
    expect(r.status, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/sid-chroot: the registry at http:\/\/127\.0\.0\.1:9\/debian did not serve sid: Failed getting release file/);
    expect(mountsBelow(cache)).toEqual([]);
    expect(existsSync(join(cache, 'sid-chroot', 'root'))).toBe(false);
  });

  it.skipIf(cannotRun !== null)('a command that fails inside: its exit status, everything unmounted', () => {
    const r = runInside(afterMounts('test -r /proc/self/status && test -c /dev/null && exit 7'));
    expect(r.status, r.stderr).toBe(7);
  });

  it.skipIf(cannotRun !== null)('false inside, after the mounts: exit 1, everything unmounted', () => {
    const r = runInside(afterMounts('exec false'));
    expect(r.status, r.stderr).toBe(1);
  });

  it.skipIf(cannotRun !== null)('a command killed by a signal inside: 128 + the signal, everything unmounted', () => {
    const r = runInside(afterMounts('kill -KILL $$'));
    expect(r.status, r.stderr).toBe(137);
  });

  it.skipIf(cannotRun !== null)('SIGINT while a command runs inside: the command ends, everything is unmounted, exit 130', async () => {
    const root = realpathSync(join(CACHE, 'sid-chroot', 'root'));
    const child = spawn('bash', [SCRIPT, 'run', '--', 'sleep', '600'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += String(d); });
    const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
    // Mounted and running inside.
    const deadline = Date.now() + 60_000;
    while (!(mountsBelow(root).length === 3 && processesInside(root).length > 0)) {
      if (Date.now() > deadline) throw new Error(`the chroot never came up: mounts ${JSON.stringify(mountsBelow(root))}, ${stderr}`);
      await sleep(100);
    }
    expect(mountsBelow(root).map((m) => m.slice(root.length)).sort()).toEqual(['/dev', '/proc', '/sys']);
    const inside = processesInside(root);
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(mountsBelow(root)).toEqual([]);
    expect(processesInside(root)).toEqual([]);
    for (const pid of inside) expect(existsSync(`/proc/${pid}`)).toBe(false);
  }, 120_000);
});
