import { zodProblems } from '../../trace/zod-problems.js';
import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync, unlinkSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { jsonProblem, MigraceError } from '../../trace/errors.js';
import { analyzeDisassembly, buildProfile, REVISION_NOTE, type Analysis } from './analysis.js';
import { readElfInfo, type ElfInfo } from './elf.js';
import { addDebugFacts, gatherCode } from './gather.js';
import { describeFailure, exitText, spawnErrno, tracked } from './gdb-batch.js';
import { ProfileSchema, type Profile } from './profile.js';
import { decideStatusNames, readStatusLookup } from './status-lookup.js';

/**
 * Probe discovery, the effects: where to stop in a QEMU binary to see the
 * state read that decides the query-migrate reply, the stores that publish
 * a status and every other read of the state on the query path, and what
 * the binary calls its states. The reasoning is pure and lives elsewhere
 * (dataflow.ts: the x86 model; analysis.ts and query-path.ts: offset,
 * read, publishes, variant, read points, profile); gather.ts collects the
 * code through gdb; this file runs the steps and keeps what they found.
 *
 * Parts, in order:
 * - options, results, the cache directory, profiles read from a file;
 * - QEMU -version;
 * - the profile cache, keyed by build-id;
 * - discoverProfile: ELF facts, cache, code, analysis, debug facts, status
 *   names, version, cache write.
 */

export interface DiscoverOptions {
  /** Environment for running the binary (LD_LIBRARY_PATH for a fetched build). */
  env?: Record<string, string | undefined>;
  /** Where cached profiles live; default $XDG_CACHE_HOME/migrace/profiles. */
  cacheDir?: string;
  /** Ignore a cached profile and rediscover. */
  refresh?: boolean;
  gdb?: string;
  timeoutMs?: number;
}

export interface DiscoveryResult {
  profile: Profile;
  /** What was found and why, one finding a line. */
  report: string[];
  cached: boolean;
  ms: number;
  cacheFile: string | null;
  elf: ElfInfo;
}

export function defaultCacheDir(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  const base = xdg && xdg.startsWith('/') ? xdg : join(homedir(), '.cache');
  return join(base, 'migrace', 'profiles');
}

/** A hand-written profile (--profile FILE): every problem names its field. */
export function loadProfileFile(path: string): Profile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new MigraceError(code === 'ENOENT' ? 'NOT_FOUND' : 'BAD_INPUT', `profile ${path}: cannot read it (${code ?? String(e)})`);
  }
  return parseProfileText(text, `profile ${path}`);
}

export function parseProfileText(text: string, what: string): Profile {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new MigraceError('BAD_INPUT', `${what}: not valid JSON (${jsonProblem(e, text)})`);
  }
  const parsed = ProfileSchema.safeParse(data);
  if (!parsed.success) {
    throw new MigraceError('BAD_INPUT', `${what}: not a valid migrace profile: ${zodProblems(parsed.error, 8)}`);
  }
  return parsed.data;
}

/** `QEMU emulator version 5.2.0 (Debian 1:5.2+dfsg-11+deb11u3)` -> 5.2.0 and the whole line. */
export function parseVersionOutput(text: string): { version: string; line: string } | null {
  const m = /QEMU emulator version (\d+\.\d+(?:\.\d+)?)[^\n]*/.exec(text);
  return m ? { version: m[1], line: m[0].trim() } : null;
}

interface VersionProbe {
  found: { version: string; line: string } | null;
  /** Why `-version` said nothing usable, when it failed to run. */
  failure: string | null;
}

async function qemuVersion(binary: string, env: Record<string, string | undefined> | undefined): Promise<VersionProbe> {
  const r = await tracked(execa(binary, ['-version'], {
    reject: false, timeout: 15_000, forceKillAfterDelay: 2000, stdin: 'ignore', env: env ?? {}, maxBuffer: 1024 * 1024,
  }), 'qemu -version');
  const spawnCode = spawnErrno(r);
  if (spawnCode) return { found: null, failure: `${binary} -version failed: cannot run it: ${spawnCode}${describeFailure(r)}` };
  const found = parseVersionOutput(`${String(r.stdout ?? '')}\n${String(r.stderr ?? '')}`);
  if (found || r.exitCode === 0) return { found, failure: null };
  const said = String(r.stderr ?? '').trim().split('\n')[0] || exitText(r);
  const hint = /shared libraries/.test(said) ? ' (give it its library path: LD_LIBRARY_PATH in the environment)' : '';
  return { found: null, failure: `${binary} -version failed: ${said}${hint}` };
}

function readCache(file: string, buildId: string): { profile: Profile | null; problem: string | null } {
  if (!existsSync(file)) return { profile: null, problem: null };
  try {
    const profile = parseProfileText(readFileSync(file, 'utf8'), `cached profile ${file}`);
    if (profile.build_id !== buildId) return { profile: null, problem: `cached profile ${file} is for build-id ${profile.build_id}, not ${buildId}` };
    if (!profile.notes.includes(REVISION_NOTE)) return { profile: null, problem: `cached profile ${file} was made by an older discovery (not ${REVISION_NOTE})` };
    return { profile, problem: null };
  } catch (e) {
    return { profile: null, problem: (e as Error).message };
  }
}

function writeCache(file: string, dir: string, profile: Profile): string | null {
  try {
    mkdirSync(dir, { recursive: true });
    // Write then rename: a reader never sees half a file.
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(profile, null, 2)}\n`);
    renameSync(tmp, file);
    return null;
  } catch (e) {
    try {
      unlinkSync(`${file}.${process.pid}.tmp`);
    } catch {
      /* nothing to clean up */
    }
    return `could not write the profile cache ${file}: ${(e as Error).message}`;
  }
}

function elfLines(elf: ElfInfo): string[] {
  const debug = elf.hasDebugInfo ? 'debug info in the file' : elf.separateDebugFile ? `debug info in ${elf.separateDebugFile}` : 'no debug info (stripped)';
  return [`binary: ${elf.path}`, `build-id: ${elf.buildId ?? 'none'}`, `ELF x86-64 ${elf.type === 'DYN' ? 'PIE' : elf.type}, ${debug}`];
}

export async function discoverProfile(binary: string, opts: DiscoverOptions = {}): Promise<DiscoveryResult> {
  const started = performance.now();
  const path = resolve(binary);
  const elf = await readElfInfo(path);
  const report = elfLines(elf);
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  // Keyed by whether debug info is found too: the same build-id stripped and with its debug
  // file (installed later, or found only under MIGRACE_DEBUG_FILE_DIRECTORY) gives other probes.
  const withDebug = elf.hasDebugInfo || elf.separateDebugFile !== null;
  const cacheFile = elf.buildId ? join(cacheDir, `${elf.buildId}${withDebug ? '.debug' : ''}.json`) : null;

  if (cacheFile && elf.buildId) {
    const { profile, problem } = opts.refresh ? { profile: null, problem: null } : readCache(cacheFile, elf.buildId);
    if (profile) {
      const here = { ...profile, binary: path };
      return {
        profile: here, report: [...report, `cached profile: ${cacheFile}`, ...here.notes], cached: true,
        ms: performance.now() - started, cacheFile, elf,
      };
    }
    if (problem) report.push(`ignored the cache: ${problem}; rediscovered and rewrote it`);
    if (opts.refresh) report.push('cache bypassed (--refresh)');
  } else {
    report.push('no build-id: the profile cannot be cached');
  }

  const gathered = await gatherCode(path, elf, opts);
  report.push(...gathered.notes);
  let analysis: Analysis | null = null;
  let firstFailure: unknown = null;
  try {
    analysis = analyzeDisassembly(gathered.input);
  } catch (e) {
    firstFailure = e;
  }
  if (elf.hasDebugInfo || elf.separateDebugFile) {
    // Debug info may fix what failed (the state offset, a name gdb resolves to a clone): analyze again either way.
    report.push(...await addDebugFacts(gathered, analysis, opts));
    analysis = analyzeDisassembly(gathered.input);
  } else if (!analysis) {
    throw firstFailure;
  }
  const lookup = readStatusLookup(gathered.image, gathered.symbols);
  const version = await qemuVersion(path, opts.env);
  const qemuVersionFound = version.found?.version ?? null;
  const status = decideStatusNames(lookup, qemuVersionFound);
  if ('refused' in status) {
    throw new MigraceError('PROBES', `${path}: ${status.refused}${version.failure ? ` (${version.failure})` : ''}; write a profile by hand (with status_names) and pass it with --profile FILE`);
  }
  const profile = buildProfile(analysis, { binary: path, buildId: elf.buildId, qemuVersion: qemuVersionFound, versionLine: version.found?.line ?? null, status });
  report.push(...profile.notes);
  if (version.failure) report.push(version.failure);
  if (cacheFile && version.failure) {
    // A profile without the version would keep it unknown for good.
    report.push('not cached: -version failed, so the QEMU version may be wrong; run again with the environment the binary needs');
  } else if (cacheFile) {
    const problem = writeCache(cacheFile, cacheDir, profile);
    report.push(problem ?? `cached as ${cacheFile}`);
  }
  return { profile, report, cached: false, ms: performance.now() - started, cacheFile, elf };
}
