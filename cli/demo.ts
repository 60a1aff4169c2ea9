import type { Command } from 'commander';
import { Option } from 'commander';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { explore } from '../analyzer/explore.js';
import { replay, type ReplayResult } from '../analyzer/replay.js';
import { builtinSchedule } from '../analyzer/schedule.js';
import { MigraceError, messageOf } from '../trace/errors.js';
import { record } from '../recorder/record.js';
import { isAlive, track, waitGone } from '../recorder/reaper.js';
import { isInstalledPackage, packageRoot, userCacheDir } from '../recorder/targets/package-paths.js';
import { analysisText, analyzeSession } from './analyze.js';
import { action, out, progress } from './common.js';
import { prepareTarget, summarizeRecord, type TargetCliOptions } from './record.js';
import { describeReplay } from './replay.js';
import { abortOnSignals } from './signals.js';
import { TraceStore } from '../trace/store.js';
import { writeReports } from './report.js';

/**
 * The main job of the README: record, analyze, explore, replay and report,
 * on an unpatched and a patched build, in one command.
 */

interface DemoOptions {
  target: 'minimig' | 'qemu';
  qemuUnpatched?: string;
  qemuPatched: string;
  out: string;
  gdb: string;
}

interface Side {
  name: string;
  opts: TargetCliOptions;
}

/** How long the fetch of the unpatched QEMU may take (a cold fetch takes seconds; a slow mirror, minutes). */
export const FETCH_TIMEOUT_MS = 600_000;

export interface FetchOptions {
  /** The fetch script (run with the argument 5.2); default samples/fetch-qemu.sh. */
  script?: string;
  timeoutMs?: number;
  /** Aborting (SIGINT / SIGTERM through cli/signals.ts) kills the fetch. */
  signal?: AbortSignal;
}

/**
 * The unpatched Debian QEMU, fetched by the project's script when it is not
 * there yet: its last stdout line is the binary's path. The script runs
 * registered with the reaper, killed at the timeout or on abort. An installed
 * package caches the build in the user's cache, a checkout in samples/.cache.
 */
export async function fetchUnpatchedQemu(opts: FetchOptions = {}): Promise<string> {
  const script = opts.script ?? join(packageRoot(), 'samples', 'fetch-qemu.sh');
  const timeoutMs = opts.timeoutMs ?? FETCH_TIMEOUT_MS;
  if (opts.signal?.aborted) throw new MigraceError('INTERRUPTED', `interrupted (${String(opts.signal.reason ?? 'SIGINT')}) before fetching the unpatched QEMU`);
  progress('fetching the unpatched Debian bullseye QEMU 5.2 (once)...');
  const env = isInstalledPackage() ? { ...process.env, MIGRACE_QEMU_CACHE: userCacheDir('qemu') } : process.env;
  const child = spawn('bash', [script, '5.2'], { stdio: ['ignore', 'pipe', 'inherit'], env });
  let stdout = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error: Error | null }>((done) => {
    child.once('error', (error) => done({ code: null, signal: null, error }));
    child.once('close', (code, signal) => done({ code, signal, error: null }));
  });
  const pid = child.pid;
  const untrack = pid ? track(pid, 'fetch-qemu.sh 5.2') : () => undefined;
  let stopped: 'timeout' | 'interrupted' | null = null;
  const stop = (why: 'timeout' | 'interrupted'): void => {
    if (stopped || !pid) return;
    stopped = why;
    child.kill('SIGTERM');
    void waitGone(pid, 2000).then((gone) => { if (!gone && isAlive(pid)) child.kill('SIGKILL'); });
  };
  const timer = setTimeout(() => stop('timeout'), timeoutMs);
  const onAbort = (): void => stop('interrupted');
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  let r: Awaited<typeof ended>;
  try {
    r = await ended;
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
    untrack();
  }
  if (r.error) throw new MigraceError('TARGET_MISSING', `cannot run ${script} to fetch the unpatched QEMU 5.2: ${messageOf(r.error)}; pass --qemu-unpatched PATH`);
  if (stopped === 'timeout') {
    throw new MigraceError('TARGET_MISSING', `fetching the unpatched QEMU 5.2 took longer than ${timeoutMs / 1000} s and was stopped; pass --qemu-unpatched PATH`);
  }
  if (stopped === 'interrupted') throw new MigraceError('INTERRUPTED', `interrupted (${String(opts.signal?.reason ?? 'SIGINT')}) while fetching the unpatched QEMU 5.2`);
  const path = stdout.trim().split('\n').at(-1) ?? '';
  if (r.code !== 0 || !path || !existsSync(path)) {
    throw new MigraceError('TARGET_MISSING', `cannot fetch the unpatched QEMU 5.2 (${r.code !== null ? `exit ${r.code}` : `killed by ${r.signal}`}); pass --qemu-unpatched PATH`);
  }
  return path;
}

async function sides(opts: DemoOptions, signal: AbortSignal): Promise<[Side, Side]> {
  const base = { memory: '128', gdb: opts.gdb };
  if (opts.target === 'minimig') {
    return [
      { name: 'minimig (reads the state twice)', opts: { ...base, target: 'minimig' } },
      { name: 'minimig-patched (reads it once)', opts: { ...base, target: 'minimig', patched: true } },
    ];
  }
  const unpatched = opts.qemuUnpatched ?? await fetchUnpatchedQemu({ signal });
  return [
    { name: `QEMU ${unpatched}`, opts: { ...base, target: 'qemu', qemu: unpatched } },
    { name: `QEMU ${opts.qemuPatched}`, opts: { ...base, target: 'qemu', qemu: opts.qemuPatched } },
  ];
}

/** The output folder, created if need be; anything in the way is a clear error. */
function makeOutDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'EEXIST' || code === 'ENOTDIR' ? 'a file of that name is in the way' : messageOf(e);
    throw new MigraceError('BAD_INPUT', `cannot create the output folder ${dir}: ${why}${code ? ` (${code})` : ''}`);
  }
}

async function recordSide(store: TraceStore, side: Side, signal: AbortSignal): Promise<number> {
  const { target, profile } = await prepareTarget(side.opts, [], progress);
  const r = await record({ store, target, profile, label: `demo recording: ${side.name}`, gdbPath: side.opts.gdb, progress, signal, pollMs: 10 });
  out(`  ${summarizeRecord(r)}`);
  if (r.state !== 'complete') throw new MigraceError('GDB_ERROR', `the demo recording of ${side.name} failed: ${r.error}`);
  return r.sessionId;
}

async function replaySide(store: TraceStore, side: Side, signal: AbortSignal): Promise<ReplayResult> {
  const { target, profile } = await prepareTarget(side.opts, [], undefined);
  const r = await replay({ store, target, profile, schedule: builtinSchedule('lp1994002'), label: `demo replay lp1994002: ${side.name}`, gdbPath: side.opts.gdb, signal,
    meta: { command: ['migrace', 'replay', '--scenario', 'lp1994002', '--target', side.opts.target, ...(side.opts.patched ? ['--patched'] : []), ...(side.opts.qemu ? ['--qemu', side.opts.qemu] : [])] } });
  out(`  ${describeReplay(r)}`);
  if (r.state !== 'complete') throw new MigraceError('REPLAY', `the demo replay on ${side.name} failed: ${r.error}`);
  return r;
}

export function register(program: Command): void {
  program
    .command('demo')
    .description('record, analyze, explore, replay and report LP#1994002 on an unpatched and a patched build')
    .addOption(new Option('--target <kind>', 'the bundled target or real Debian QEMU').choices(['minimig', 'qemu']).default('minimig'))
    .option('--qemu-unpatched <path>', 'qemu: the unpatched build (default: Debian bullseye 5.2, fetched)')
    .option('--qemu-patched <path>', 'qemu: the patched build', '/usr/bin/qemu-system-x86_64')
    .option('--out <dir>', 'where the database and the reports go', 'migrace-demo')
    .option('--gdb <path>', 'the gdb to use', 'gdb')
    .action(action(async (opts: DemoOptions) => {
      // First: a SIGINT / SIGTERM during the preparation (the fetch, discovery) must still reap.
      const signals = abortOnSignals();
      let store: TraceStore | null = null;
      try {
        makeOutDir(opts.out);
        const dbPath = join(opts.out, 'migrace.db');
        store = TraceStore.open(dbPath);
        const [unpatched, patched] = await sides(opts, signals.signal);
        out(`1. record a migration on each build (query-migrate every 10 ms)`);
        const recU = await recordSide(store, unpatched, signals.signal);
        const recP = await recordSide(store, patched, signals.signal);

        out(`\n2. analyze the recordings`);
        for (const sid of [recU, recP]) out(analysisText(analyzeSession(store, sid), store.session(sid).label).replace(/^/gm, '  '));

        out(`\n3. explore the unpatched recording: what could have happened`);
        const x = explore(store.session(recU), store.threads(recU), store.events(recU));
        for (const h of x.hazards) out(`  ${h.id} ${h.kind} [${h.affects.join(', ') || 'none'}]: ${h.transition.old} -> ${h.transition.new} ${h.placement}`);

        out(`\n4. replay LP#1994002 on both builds`);
        const repU = await replaySide(store, unpatched, signals.signal);
        const repP = await replaySide(store, patched, signals.signal);

        out(`\n5. reports`);
        const files = await writeReports(store, repU.sessionId, repP.sessionId, opts.out);
        for (const f of files) out(`  ${f}`);
        out(`\ndatabase: ${dbPath} (try: migrace sessions --db ${dbPath})`);
      } finally {
        signals.dispose();
        store?.close();
      }
    }));
}
