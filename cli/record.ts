import type { Command } from 'commander';
import { InvalidArgumentError, Option } from 'commander';
import { readlinkSync } from 'node:fs';
import { MigraceError } from '../trace/errors.js';
import { discoverProfile, loadProfileFile } from '../recorder/probes/discover.js';
import { readElfInfo } from '../recorder/probes/elf.js';
import { withBinaryStatusNames } from '../recorder/probes/status-lookup.js';
import { minimigProfile } from '../recorder/probes/minimig.js';
import type { Profile } from '../recorder/probes/profile.js';
import { minimigDir, prepareMinimig } from '../recorder/targets/minimig.js';
import { checkQemuBinary, extractedTreeEnv, isQemuMemory, prepareQemuPair } from '../recorder/targets/qemu.js';
import type { PreparedTarget } from '../recorder/targets/types.js';
import { chooseBackend, record, recordAttached, type BackendChoice, type RecordResult } from '../recorder/record.js';
import { action, dbOption, jsonOption, openStore, out, parseIntOption, printJson, progress, warningsOnly, type DbOptions } from './common.js';
import { abortOnSignals } from './signals.js';
import { cleanText } from '../reports/safe-text.js';
import { findProgram } from '../recorder/reaper.js';

export interface TargetCliOptions {
  target: 'minimig' | 'qemu';
  patched?: boolean;
  binary?: string;
  qemu?: string;
  memory?: string;
  profile?: string;
  env?: string[];
  maxBandwidth?: number;
  setupMs?: number;
  transferMs?: number;
  bqlCompletion?: boolean;
  gdb: string;
  refreshProbes?: boolean;
}

/**
 * What a record or replay was started with, stored as the session's
 * meta.invocation so the same target can be started again (the reproduce
 * line is built from it). Options that do not apply to the target are kept
 * as given; an option left out is null.
 */
export interface Invocation {
  command: 'record' | 'replay';
  target: 'minimig' | 'qemu';
  patched: boolean;
  binary: string | null;
  qemu: string | null;
  /** The --profile file, or null when discovery (or minimig's own profile) placed the probes. */
  profile: string | null;
  memory: string | null;
  extra_args: string[];
  max_bandwidth: number | null;
  setup_ms: number | null;
  transfer_ms: number | null;
  bql_completion: boolean;
}

export function cliInvocation(command: Invocation['command'], opts: TargetCliOptions, extraArgs: readonly string[]): Invocation {
  return {
    command,
    target: opts.target,
    patched: Boolean(opts.patched),
    binary: opts.binary ?? null,
    qemu: opts.qemu ?? null,
    profile: opts.profile ?? null,
    memory: opts.memory ?? null,
    extra_args: [...extraArgs],
    max_bandwidth: opts.maxBandwidth ?? null,
    setup_ms: opts.setupMs ?? null,
    transfer_ms: opts.transferMs ?? null,
    bql_completion: Boolean(opts.bqlCompletion),
  };
}

interface RecordCliOptions extends DbOptions, TargetCliOptions {
  backend: BackendChoice;
  label?: string;
  pollMs: number;
  timeout: number;
  attach?: number;
  qmp?: string;
  json?: boolean;
}

export function summarizeRecord(r: RecordResult): string {
  const lost = r.lostEvents > 0 ? `; INCOMPLETE: the kernel dropped ${r.lostEvents} probe hits` : '';
  return r.state === 'complete'
    ? `session ${r.sessionId}: complete, ${r.events} events (${r.hits} probe hits, ${r.queries} queries) in ${(r.wallMs / 1000).toFixed(2)} s through ${r.backend}; last status ${r.lastStatus}${lost}`
    : `session ${r.sessionId}: aborted after ${r.events} events: ${r.error}${lost}`;
}

function parseEnv(list: string[] | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const item of list ?? []) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(item);
    if (!m || /[\n\r\0]/.test(m[2])) throw new MigraceError('USAGE', `--env takes NAME=VALUE without newlines, not "${item}"`);
    env[m[1]] = m[2];
  }
  return env;
}

/** Said whenever migrace puts gdb on a process it did not start. */
export const ATTACHED_UNDER_GDB = 'migrace: warning: recording an attached process under gdb: if gdb is killed (SIGKILL) while its breakpoints are in, the process dies of SIGTRAP';

/** The program a running process runs (what --attach probes) and its profile, or a clear error when there is no such process. */
export async function attachedProfile(pid: number, opts: TargetCliOptions, say?: (m: string) => void): Promise<{ binary: string; profile: Profile }> {
  let binary: string;
  try {
    binary = readlinkSync(`/proc/${pid}/exe`);
  } catch {
    throw new MigraceError('TARGET_MISSING', `no process ${pid} to attach to (or not allowed to read /proc/${pid}/exe)`);
  }
  return { binary, profile: await profileFor(binary, { ...extractedTreeEnv(binary), ...parseEnv(opts.env) }, opts, say) };
}

const DEFAULT_MEMORY = '128';

function parseMemory(text: string): string {
  if (!isQemuMemory(text)) throw new InvalidArgumentError(`--memory takes QEMU's -m sizes such as 128, 512M or 1G, not "${text}"`);
  return text;
}

/** The options every command that starts a target takes (record, replay, demo). */
export function addTargetOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--target <kind>', 'what to run').choices(['minimig', 'qemu']).default('minimig'))
    .option('--patched', 'minimig: the build that reads the state once (like QEMU >= 7.1)')
    .option('--binary <path>', 'minimig: a minimig binary other than the bundled build')
    .option('--qemu <path>', 'qemu: the QEMU binary (source and destination)')
    .option('--memory <size>', 'qemu: guest memory (-m)', parseMemory, DEFAULT_MEMORY)
    .option('--profile <file>', 'qemu: a probe profile file instead of discovery')
    .option('--refresh-probes', 'qemu: ignore the cached profile and discover again')
    .option('--env <NAME=VALUE...>', 'qemu: extra environment (LD_LIBRARY_PATH is set for an extracted Debian tree)')
    .option('--max-bandwidth <bytes>', 'qemu: migrate-set-parameters max-bandwidth', parseIntOption('--max-bandwidth', 1, 2 ** 40))
    .option('--setup-ms <n>', 'minimig: time spent in setup', parseIntOption('--setup-ms', 0, 600_000))
    .option('--transfer-ms <n>', 'minimig: time spent active', parseIntOption('--transfer-ms', 0, 600_000))
    .option('--bql-completion', 'minimig: hold a big lock around active -> completed, as QEMU 10 does')
    .option('--gdb <path>', 'the gdb to use', 'gdb');
}

export async function profileFor(binary: string, env: Record<string, string>, opts: TargetCliOptions, say?: (m: string) => void): Promise<Profile> {
  if (opts.profile) {
    const profile = loadProfileFile(opts.profile);
    // Address probes of another build land in the middle of instructions.
    const { buildId } = await readElfInfo(binary);
    if (profile.build_id && buildId && profile.build_id !== buildId) {
      throw new MigraceError('PROBES', `${opts.profile} is a profile for build-id ${profile.build_id}, but ${binary} is ${buildId}; its addresses would be wrong here (run "migrace probes ${binary}" to make one for this build)`);
    }
    return withBinaryStatusNames(profile, binary);
  }
  const found = await discoverProfile(binary, { env, gdb: opts.gdb, refresh: opts.refreshProbes });
  say?.(`probes for ${binary}: ${found.profile.kind}, ${found.profile.variant}${found.cached ? ' (cached)' : ''} in ${Math.round(found.ms)} ms`);
  return found.profile;
}

/** --gdb names a program that exists: refused before anything starts, not as the first step of a session. */
export function checkGdbOption(gdb: string): void {
  if (gdb === '') throw new MigraceError('USAGE', '--gdb is empty: give the gdb to use (default: gdb from PATH)');
  if (findProgram(gdb) === null) {
    throw new MigraceError('USAGE', gdb.includes('/')
      ? `--gdb ${gdb} is not an executable program (install the Debian package gdb, or give the path of a gdb)`
      : `--gdb ${gdb}: no such program on PATH (install the Debian package gdb)`);
  }
}

/**
 * The target options checked on their own, before a database is opened or
 * anything starts: a mistake in them leaves no session and no process.
 */
export function checkTargetOptions(opts: TargetCliOptions): void {
  checkGdbOption(opts.gdb);
  if (opts.target === 'minimig') {
    if (opts.qemu) throw new MigraceError('USAGE', '--qemu goes with --target qemu');
    if (opts.memory !== undefined && opts.memory !== DEFAULT_MEMORY) throw new MigraceError('USAGE', '--memory goes with --target qemu: minimig has no guest memory');
    return;
  }
  if (!opts.qemu) throw new MigraceError('USAGE', '--target qemu needs --qemu PATH (Debian: /usr/bin/qemu-system-x86_64)');
  if (opts.patched) throw new MigraceError('USAGE', '--patched is for minimig; a QEMU build is patched or not, and discovery says which');
  checkQemuBinary(opts.qemu);
}

/** Prepare the target an option set names, with its profile. */
export async function prepareTarget(opts: TargetCliOptions, extraArgs: string[], say?: (m: string) => void): Promise<{ target: PreparedTarget; profile: Profile }> {
  checkTargetOptions(opts);
  if (opts.target === 'minimig') {
    const target = await prepareMinimig({ binary: opts.binary, patched: opts.patched, setupMs: opts.setupMs, transferMs: opts.transferMs, bqlCompletion: opts.bqlCompletion });
    // minimig exports MigrationStatus_lookup as QEMU does: its states are named by the binary too.
    const profile = await withBinaryStatusNames(minimigProfile(minimigDir(), target.binary, Boolean(opts.patched)), target.binary);
    target.info = { ...target.info, status_table: profile.status_table, ...(profile.status_names ? { status_names: profile.status_names } : {}) };
    return { target, profile };
  }
  const qemu = opts.qemu!;
  const env = { ...extractedTreeEnv(qemu), ...parseEnv(opts.env) };
  const profile = await profileFor(qemu, env, opts, say);
  const target = await prepareQemuPair({ qemu, env, memory: opts.memory, extraArgs, profile, maxBandwidth: opts.maxBandwidth });
  return { target, profile };
}

function report(result: RecordResult, json: boolean | undefined): void {
  if (json) printJson(result);
  else if (result.state === 'complete') out(summarizeRecord(result));
  else process.stderr.write(`migrace: ${cleanText(summarizeRecord(result))}\n`);
  if (result.state !== 'complete') process.exitCode = 1;
}

export function register(program: Command): void {
  const cmd = program
    .command('record')
    .description('record a migration: every state transition, read and publish, and every query-migrate reply')
    .argument('[qemu-args...]', 'qemu: extra arguments for both QEMUs, after --');
  addTargetOptions(cmd)
    .addOption(new Option('--backend <kind>', 'how probes are placed: kernel uprobes (root; never stop the target), gdb breakpoints handled inside gdb (gdb-fast), gdb breakpoints over MI (gdb), or auto (uprobes when they work, else gdb-fast; with --attach, uprobes or a refusal)').choices(['auto', 'uprobe', 'gdb-fast', 'gdb']).default('auto'))
    .option('--attach <pid>', 'record a running QEMU driven by somebody else; it is left running at the end', parseIntOption('--attach', 1, 2 ** 22))
    .option('--qmp <path>', 'with --attach: a QMP socket of the running QEMU for migrace to poll (without it, the queries others make are recorded)')
    .option('--label <text>', 'a label for the session')
    .option('--poll-ms <n>', 'query-migrate every N ms', parseIntOption('--poll-ms', 1, 60_000), 20)
    .option('--timeout <s>', 'give up when the migration takes longer (seconds)', parseIntOption('--timeout', 1, 86_400), 120)
    .addOption(dbOption())
    .addOption(jsonOption())
    .action(action(async (extra: string[], opts: RecordCliOptions) => {
      const say = opts.json ? warningsOnly : progress;
      if (opts.attach !== undefined) {
        checkGdbOption(opts.gdb);
        const backend = chooseBackend(opts.backend, progress, undefined, { attached: true });
        const { binary: exe, profile } = await attachedProfile(opts.attach, opts, say);
        if (backend === 'gdb' || backend === 'gdb-fast') {
          progress(`${ATTACHED_UNDER_GDB}; as root, --backend uprobe never touches it`);
        }
        const store = openStore(opts);
        const signals = abortOnSignals();
        try {
          report(await recordAttached({
            store, pid: opts.attach, binary: exe, qmpPath: opts.qmp ?? null, profile, label: opts.label ?? `attach ${opts.attach}`,
            pollMs: opts.pollMs, gdbPath: opts.gdb, progress: say, signal: signals.signal, backend,
          }), opts.json);
        } finally {
          signals.dispose();
          store.close();
        }
        return;
      }
      if (opts.qmp) throw new MigraceError('USAGE', '--qmp goes with --attach');
      checkTargetOptions(opts);
      // The fallback is said on stderr even with --json: a recording that stops the target for each hit is no quiet detail.
      const backend = chooseBackend(opts.backend, progress);
      const store = openStore(opts);
      // Before anything starts: a signal during preparation must still reach the cleanup.
      const signals = abortOnSignals();
      try {
        const { target, profile } = await prepareTarget(opts, extra, say);
        report(await record({
          store, target, profile, label: opts.label ?? (opts.target === 'qemu' ? `qemu ${profile.qemu_version ?? ''} recording`.replace('  ', ' ') : `${opts.patched ? 'minimig-patched' : 'minimig'} recording`),
          pollMs: opts.pollMs, timeoutMs: opts.timeout * 1000, gdbPath: opts.gdb, progress: say, signal: signals.signal,
          meta: { invocation: cliInvocation('record', opts, extra) }, backend,
        }), opts.json);
      } finally {
        signals.dispose();
        store.close();
      }
    }));
}
