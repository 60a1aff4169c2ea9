import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEBUG_DIR_VARIABLE } from '../../recorder/debug-dirs.js';
import { extractedTreeEnv } from '../../recorder/targets/qemu.js';

/**
 * Every real QEMU build the integration tests can use, and why one is
 * missing when it is.
 *
 * Parts:
 * - BUILDS: what each build is (where it comes from, patched or not, its
 *   debug info, and what docs/qemu-facts.md verified for that exact build-id).
 * - locate(): finds one build. The system's /usr/bin/qemu-system-x86_64 is
 *   7.2 on the bookworm host and 11.1 inside the sid chroot
 *   (samples/sid-chroot.sh); 5.2 and 10.0.2 come from samples/fetch-qemu.sh
 *   (a cold fetch takes seconds); the -O2 -g builds of 5.2 only from the
 *   cache samples/build-qemu-dbg.sh fills (a build takes minutes: .ci/install
 *   runs it, a test never does): unstripped, stripped with a debuglink, and
 *   stripped without one (its debug file found by build-id only).
 * - qemuBuilds() / qemuBuild(name): the answers, computed once per process.
 *   MIGRACE_TEST_QEMU=11.1,5.2 limits the builds a run uses (the chroot runs
 *   only its own); the others skip, saying so.
 * - bookwormQemu() / bullseyeQemu(): the two builds by their old names.
 */

export type BuildName = '5.2' | '7.2' | '10.0.2' | '11.1' | '5.2-dbg' | '5.2-dbg-split' | '5.2-dbg-build-id';

export interface BuildSpec {
  name: BuildName;
  label: string;
  variant: 'patched' | 'unpatched';
  /** stripped: Debian's binary; full: unstripped -O2 -g; separate: stripped plus a debug file (by debuglink or build-id). */
  debug: 'stripped' | 'full' | 'separate';
  /** The transitions of one undisturbed precopy migration, by name. */
  transitions: Array<[string, string]>;
  /** Probe points docs/qemu-facts.md verified on one exact build (checked when the build-id matches). */
  known: { buildId: string; read: string; publishes: string[]; stateOffset: number } | null;
}

export interface QemuBuild extends BuildSpec {
  path: string;
  env: Record<string, string>;
  /** Extra QEMU arguments the build needs (the firmware path of the -O2 -g builds). */
  args: string[];
  /** The first line of `-version`. */
  version: string;
  /**
   * The debug-file-directory holding .build-id/NN/REST.debug, for the build
   * with no debuglink: MIGRACE_DEBUG_FILE_DIRECTORY must name it while the
   * build is used (withDebugFileDirectory).
   */
  debugFileDirectory?: string;
}

export type QemuAvailability = QemuBuild | (BuildSpec & { skip: string });

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const FETCH_SCRIPT = join(ROOT, 'samples/fetch-qemu.sh');
export const DBG_SCRIPT = join(ROOT, 'samples/build-qemu-dbg.sh');
export const SYSTEM_QEMU = '/usr/bin/qemu-system-x86_64';
/** The firmware of bookworm's (or sid's) packages: the -O2 -g build has none of its own. */
const FIRMWARE_ARGS = ['-L', '/usr/share/seabios', '-L', '/usr/share/qemu'];

const PRECOPY: Array<[string, string]> = [['none', 'setup'], ['setup', 'active'], ['active', 'completed']];
const PRECOPY_10: Array<[string, string]> = [['none', 'setup'], ['setup', 'active'], ['active', 'device'], ['device', 'completed']];

export const BUILDS: readonly BuildSpec[] = [
  { name: '5.2', label: 'bullseye 5.2 (unpatched)', variant: 'unpatched', debug: 'stripped', transitions: PRECOPY,
    known: { buildId: 'e75c4e44f088a4a9c5bb4880bed10e7a81dc2606', read: '*qmp_query_migrate+123', publishes: ['+187', '+457', '+636'], stateOffset: 0x238 } },
  { name: '7.2', label: 'bookworm 7.2 (patched)', variant: 'patched', debug: 'stripped', transitions: PRECOPY,
    known: { buildId: 'd9541fd67c4ea37f9ca7fca0f5096f32b3b7e7e0', read: '*qmp_query_migrate+133', publishes: ['+332', '+513', '+676'], stateOffset: 0x2e8 } },
  { name: '10.0.2', label: 'bookworm-backports 10.0.2 (patched)', variant: 'patched', debug: 'stripped', transitions: PRECOPY_10,
    known: { buildId: '0fbbd5ca8d2d0a32532049e20739f3e0d521c5ed', read: '*qmp_query_migrate+199', publishes: ['+484'], stateOffset: 0x2f8 } },
  { name: '11.1', label: 'sid 11.1 (patched, in the chroot)', variant: 'patched', debug: 'stripped', transitions: PRECOPY_10,
    // From objdump of 1:11.1.3+ds-1: the read-once load at +221 (7 bytes), the status store at +428.
    known: { buildId: '19082c1198d23ae45c6960a77fdc889301dfb4de', read: '*qmp_query_migrate+228', publishes: ['+428'], stateOffset: 0x310 } },
  { name: '5.2-dbg', label: 'bullseye 5.2 built -O2 -g (unpatched)', variant: 'unpatched', debug: 'full', transitions: PRECOPY, known: null },
  { name: '5.2-dbg-split', label: 'bullseye 5.2 built -O2 -g, separate debug file (unpatched)', variant: 'unpatched', debug: 'separate', transitions: PRECOPY, known: null },
  { name: '5.2-dbg-build-id', label: 'bullseye 5.2 built -O2 -g, no debuglink, debug file by build-id (unpatched)', variant: 'unpatched', debug: 'separate', transitions: PRECOPY, known: null },
];

/** The first line of `-version`, or why it does not run. */
function versionOf(path: string, env: Record<string, string>, args: string[]): { version: string } | { skip: string } {
  const r = spawnSync(path, [...args, '-version'], { encoding: 'utf8', timeout: 15_000, env: { ...process.env, ...env } });
  if (r.error || r.status !== 0) return { skip: `${path} -version failed: ${(r.error?.message ?? r.stderr ?? '').trim().split('\n')[0]}` };
  return { version: (r.stdout ?? '').split('\n')[0] ?? '' };
}

/** Runs a cache script; its last stdout line is the binary's path. */
function fromScript(script: string, args: string[], what: string, timeoutMs: number): { path: string } | { skip: string } {
  const r = spawnSync('bash', [script, ...args], { encoding: 'utf8', timeout: timeoutMs });
  const lastErr = (r.stderr ?? '').trim().split('\n').filter(Boolean).slice(-1)[0]?.replace(/^[\w-]+: /, '') ?? '';
  if (r.error) return { skip: `${what}: the script did not finish: ${r.error.message}` };
  if (r.status === 3) return { skip: `${what} unavailable (the registry does not serve it): ${lastErr}` };
  if (r.status === 4) return { skip: `${what} is not built: ${lastErr}` };
  if (r.status !== 0) return { skip: `${what} unavailable (exit ${r.status}): ${lastErr}` };
  const path = (r.stdout ?? '').trim().split('\n').slice(-1)[0] ?? '';
  return path && existsSync(path) ? { path } : { skip: `${what}: the script printed no usable path (${JSON.stringify(path)})` };
}

function locate(spec: BuildSpec): QemuAvailability {
  const only = process.env.MIGRACE_TEST_QEMU?.split(',').map((s) => s.trim()).filter(Boolean);
  if (only && !only.includes(spec.name)) return { ...spec, skip: `not selected in this run (MIGRACE_TEST_QEMU=${only.join(',')})` };
  let found: { path: string; env: Record<string, string>; args: string[]; debugFileDirectory?: string } | { skip: string };
  switch (spec.name) {
    case '7.2':
    case '11.1':
      found = existsSync(SYSTEM_QEMU) ? { path: SYSTEM_QEMU, env: {}, args: [] }
        : { skip: `${SYSTEM_QEMU} is not installed (apt-get install -y --no-install-recommends qemu-system-x86)` };
      break;
    case '5.2':
    case '10.0.2': {
      // A cold fetch takes seconds; a slow mirror, minutes.
      const r = fromScript(FETCH_SCRIPT, [spec.name], `QEMU ${spec.name}`, 300_000);
      found = 'skip' in r ? r : { path: r.path, env: extractedTreeEnv(r.path), args: [] };
      break;
    }
    case '5.2-dbg':
    case '5.2-dbg-split':
    case '5.2-dbg-build-id': {
      const r = fromScript(DBG_SCRIPT, ['--cached-only'], 'the -O2 -g build of QEMU 5.2', 30_000);
      if ('skip' in r) {
        found = r;
      } else if (spec.name === '5.2-dbg') {
        found = { path: r.path, env: {}, args: FIRMWARE_ARGS };
      } else if (spec.name === '5.2-dbg-split') {
        found = { path: join(dirname(r.path), 'split', 'qemu-system-x86_64'), env: {}, args: FIRMWARE_ARGS };
      } else {
        found = { path: join(dirname(r.path), 'build-id-only', 'qemu-system-x86_64'), env: {}, args: FIRMWARE_ARGS,
          debugFileDirectory: join(dirname(r.path), 'debug-file-directory') };
      }
      break;
    }
  }
  if ('skip' in found) return { ...spec, skip: found.skip };
  const v = versionOf(found.path, found.env, found.args);
  if ('skip' in v) return { ...spec, skip: v.skip };
  // The system binary is one build or the other, depending on where the tests run.
  const want = spec.name.replace(/-dbg.*/, '');
  if (!v.version.includes(`version ${want}`)) return { ...spec, skip: `${found.path} is ${v.version.replace(/^QEMU emulator /, '')}, not ${want}` };
  return { ...spec, ...found, version: v.version };
}

const answers = new Map<BuildName, QemuAvailability>();

export function qemuBuild(name: BuildName): QemuAvailability {
  let a = answers.get(name);
  if (!a) {
    a = locate(BUILDS.find((b) => b.name === name)!);
    answers.set(name, a);
  }
  return a;
}

/** Every build, available or with the reason it is not. */
export function qemuBuilds(): QemuAvailability[] {
  return BUILDS.map((b) => qemuBuild(b.name));
}

export function isAvailable(b: QemuAvailability): b is QemuBuild {
  return !('skip' in b);
}

/** The old shape: path and environment, or why not. */
export type QemuBinary = { path: string; env: Record<string, string> } | { skip: string };

function binary(name: BuildName): QemuBinary {
  const b = qemuBuild(name);
  return isAvailable(b) ? { path: b.path, env: b.env } : { skip: b.skip };
}

/**
 * `fn` with MIGRACE_DEBUG_FILE_DIRECTORY naming the build's debug-file-directory
 * when it has one (the build with no debuglink), as a user with unpacked
 * -dbgsym files sets it; restored afterwards.
 */
export async function withDebugFileDirectory<T>(b: QemuBuild, fn: () => Promise<T>): Promise<T> {
  if (!b.debugFileDirectory) return fn();
  const before = process.env[DEBUG_DIR_VARIABLE];
  process.env[DEBUG_DIR_VARIABLE] = b.debugFileDirectory;
  try {
    return await fn();
  } finally {
    if (before === undefined) delete process.env[DEBUG_DIR_VARIABLE];
    else process.env[DEBUG_DIR_VARIABLE] = before;
  }
}

export function bookwormQemu(): QemuBinary {
  return binary('7.2');
}

export function bullseyeQemu(): QemuBinary {
  return binary('5.2');
}
