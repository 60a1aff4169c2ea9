import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync, unlinkSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { MigraceError } from '../../trace/errors.js';
import { track } from '../reaper.js';
import { analyzeDisassembly, buildProfile, calleesToInspect, FIRST_PASS_FUNCTIONS, REVISION_NOTE, type Analysis, type DisassemblyInput } from './analysis.js';
import { readElfInfo, type ElfInfo } from './elf.js';
import { ProfileSchema, type Profile } from './profile.js';

/**
 * Probe discovery, the effects: where to stop in a QEMU binary to see the
 * state read that decides the query-migrate reply and the stores that
 * publish a status. The reasoning is pure and lives elsewhere (dataflow.ts:
 * the x86 model; analysis.ts: offset, read, publishes, variant, profile);
 * this file runs what it needs and keeps what it found.
 *
 * Parts, in order:
 * - options, results, the cache directory, profiles read from a file;
 * - running children (gdb -batch, QEMU -version) registered with the reaper;
 * - the profile cache, keyed by build-id;
 * - discoverProfile: ELF facts, cache, gdb passes, analysis, version, cache write.
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
    throw new MigraceError('BAD_INPUT', `${what}: not valid JSON (${(e as Error).message})`);
  }
  const parsed = ProfileSchema.safeParse(data);
  if (!parsed.success) {
    const problems = parsed.error.issues.slice(0, 8).map((i) => `${i.path.length > 0 ? i.path.join('.') : '(top level)'}: ${i.message}`);
    const more = parsed.error.issues.length > 8 ? ` (and ${parsed.error.issues.length - 8} more)` : '';
    throw new MigraceError('BAD_INPUT', `${what}: not a valid migrace profile: ${problems.join('; ')}${more}`);
  }
  return parsed.data;
}

/** What execa says about a run, the part that matters for a message. */
interface RunResult {
  failed?: boolean;
  code?: string;
  exitCode?: number;
  signal?: string;
  timedOut?: boolean;
  shortMessage?: string;
  originalMessage?: string;
}

/** The errno code (ENOENT, EACCES, ...) when the program could not be started at all, else null. */
function spawnFailure(r: RunResult): string | null {
  return r.failed && r.exitCode === undefined && !r.signal && !r.timedOut && typeof r.code === 'string' ? r.code : null;
}

function describeFailure(r: RunResult): string {
  const m = r.originalMessage ?? r.shortMessage ?? '';
  return m ? ` (${m})` : '';
}

function exitText(r: RunResult): string {
  if (r.timedOut) return 'timed out';
  if (r.exitCode !== undefined) return `exit ${r.exitCode}`;
  if (r.signal) return `killed by ${r.signal}`;
  return r.shortMessage ?? 'no exit status';
}

/**
 * A child registered with the reaper while it runs (a signal or an exit of
 * ours mid-discovery must not leave gdb or QEMU behind).
 */
async function tracked<T>(child: Promise<T> & { pid?: number }, label: string): Promise<T> {
  const untrack = child.pid ? track(child.pid, label) : () => undefined;
  try {
    return await child;
  } finally {
    untrack();
  }
}

async function runGdb(binary: string, script: Array<{ marker: string; commands: string[] }>, opts: DiscoverOptions): Promise<Map<string, string>> {
  const args = ['-batch', '-nx', '-q',
    // Never reach for the network or run scripts shipped next to the binary.
    '-iex', 'set debuginfod enabled off', '-iex', 'set auto-load no', '-iex', 'set width 0', '-iex', 'set height 0'];
  for (const s of script) {
    args.push('-ex', `echo @@migrace ${s.marker}\\n`);
    for (const c of s.commands) args.push('-ex', c);
  }
  args.push(binary);
  const gdb = opts.gdb ?? 'gdb';
  const timeoutMs = opts.timeoutMs ?? 60_000;
  let r;
  try {
    r = await tracked(execa(gdb, args, {
      reject: false, timeout: timeoutMs, forceKillAfterDelay: 2000, stdin: 'ignore', env: { LC_ALL: 'C' }, maxBuffer: 64 * 1024 * 1024,
    }), 'gdb (probe discovery)');
  } catch (e) {
    throw new MigraceError('GDB_ERROR', `gdb failed to start: ${(e as Error).message}`);
  }
  const spawnCode = spawnFailure(r);
  if (spawnCode === 'ENOENT') {
    throw new MigraceError('GDB_MISSING', `${gdb} is not installed (apt-get install -y gdb)`);
  }
  if (spawnCode) throw new MigraceError('GDB_ERROR', `cannot run gdb (${gdb}): ${spawnCode}${describeFailure(r)}`);
  if (r.timedOut) throw new MigraceError('GDB_TIMEOUT', `gdb took longer than ${timeoutMs / 1000} s to disassemble ${binary}`);
  const out = new Map<string, string>();
  let current: string | null = null;
  let buf: string[] = [];
  for (const line of String(r.stdout).split('\n')) {
    const m = /^@@migrace (\S+)$/.exec(line);
    if (m) {
      if (current) out.set(current, buf.join('\n'));
      current = m[1];
      buf = [];
    } else if (current) {
      buf.push(line);
    }
  }
  if (current) out.set(current, buf.join('\n'));
  if (out.size === 0) {
    const said = String(r.stderr ?? '').trim().split('\n').slice(-3).join(' / ');
    throw new MigraceError('GDB_ERROR', `gdb printed nothing for ${binary}: ${said || exitText(r)}`);
  }
  return out;
}

async function disassemble(binary: string, fns: string[], opts: DiscoverOptions, withDebugOffset: boolean): Promise<{ listings: Record<string, string | null>; debugOffset: number | null }> {
  const script = fns.map((f) => ({ marker: `fn:${f}`, commands: [`disassemble ${f}`] }));
  if (withDebugOffset) script.push({ marker: 'offset', commands: ['print/x (long)&((MigrationState *)0)->state'] });
  const out = await runGdb(binary, script, opts);
  const listings: Record<string, string | null> = {};
  for (const f of fns) {
    const text = out.get(`fn:${f}`) ?? '';
    listings[f] = /Dump of assembler code/.test(text) ? text : null;
  }
  const off = /^\$\d+ = (0x[0-9a-f]+)/m.exec(out.get('offset') ?? '');
  return { listings, debugOffset: off ? Number.parseInt(off[1], 16) : null };
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
  const spawnCode = spawnFailure(r);
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

function headerLines(elf: ElfInfo): string[] {
  const debug = elf.hasDebugInfo ? 'debug info in the file' : elf.separateDebugFile ? `debug info in ${elf.separateDebugFile}` : 'no debug info (stripped)';
  return [`binary: ${elf.path}`, `build-id: ${elf.buildId ?? 'none'}`, `ELF x86-64 ${elf.type === 'DYN' ? 'PIE' : elf.type}, ${debug}`];
}

export async function discoverProfile(binary: string, opts: DiscoverOptions = {}): Promise<DiscoveryResult> {
  const started = performance.now();
  const path = resolve(binary);
  const elf = await readElfInfo(path);
  const report = headerLines(elf);
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  const cacheFile = elf.buildId ? join(cacheDir, `${elf.buildId}.json`) : null;

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

  const debugInfo = elf.hasDebugInfo || elf.separateDebugFile !== null;
  const first = await disassemble(path, FIRST_PASS_FUNCTIONS, opts, debugInfo);
  const input: DisassemblyInput = { listings: first.listings, debugInfo, debugStateOffset: first.debugOffset, binary: path };
  let analysis: Analysis;
  try {
    analysis = analyzeDisassembly(input);
  } catch (e) {
    // The source part may be a separate function (-O0, noinline): look one call deeper before giving up.
    const callees = calleesToInspect(first.listings);
    if (callees.length === 0) throw e;
    const more = await disassemble(path, callees, opts, false);
    analysis = analyzeDisassembly({ ...input, listings: { ...first.listings, ...more.listings } });
  }
  const version = await qemuVersion(path, opts.env);
  const profile = buildProfile(analysis, { binary: path, buildId: elf.buildId, qemuVersion: version.found?.version ?? null, versionLine: version.found?.line ?? null });
  report.push(...profile.notes);
  if (version.failure) report.push(version.failure);
  if (cacheFile && version.failure) {
    // A profile without the version would pick the wrong status table for good.
    report.push('not cached: -version failed, so the QEMU version (and the status table) may be wrong; run again with the environment the binary needs');
  } else if (cacheFile) {
    const problem = writeCache(cacheFile, cacheDir, profile);
    report.push(problem ?? `cached as ${cacheFile}`);
  }
  return { profile, report, cached: false, ms: performance.now() - started, cacheFile, elf };
}
