import type { Command } from 'commander';
import { Option } from 'commander';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { explore } from '../analyzer/explore.js';
import { replay, type ReplayResult } from '../analyzer/replay.js';
import { builtinSchedule } from '../analyzer/schedule.js';
import { MigraceError } from '../trace/errors.js';
import { record } from '../recorder/record.js';
import { minimigDir } from '../recorder/targets/minimig.js';
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

/** The unpatched Debian QEMU, fetched by the project's script when it is not there yet. */
function fetchUnpatchedQemu(): string {
  const script = resolve(minimigDir(), '..', 'fetch-qemu-5.2.sh');
  progress('fetching the unpatched Debian bullseye QEMU 5.2 (once)...');
  const r = spawnSync('bash', [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const path = r.stdout.trim().split('\n').at(-1) ?? '';
  if (r.status !== 0 || !existsSync(path)) {
    throw new MigraceError('TARGET_MISSING', `cannot fetch the unpatched QEMU 5.2 (exit ${r.status}); pass --qemu-unpatched PATH`);
  }
  return path;
}

function sides(opts: DemoOptions): [Side, Side] {
  const base = { memory: '128', gdb: opts.gdb };
  if (opts.target === 'minimig') {
    return [
      { name: 'minimig (reads the state twice)', opts: { ...base, target: 'minimig' } },
      { name: 'minimig-patched (reads it once)', opts: { ...base, target: 'minimig', patched: true } },
    ];
  }
  const unpatched = opts.qemuUnpatched ?? fetchUnpatchedQemu();
  return [
    { name: `QEMU ${unpatched}`, opts: { ...base, target: 'qemu', qemu: unpatched } },
    { name: `QEMU ${opts.qemuPatched}`, opts: { ...base, target: 'qemu', qemu: opts.qemuPatched } },
  ];
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
      mkdirSync(opts.out, { recursive: true });
      const dbPath = join(opts.out, 'migrace.db');
      const store = TraceStore.open(dbPath);
      const signals = abortOnSignals();
      try {
        const [unpatched, patched] = sides(opts);
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
        store.close();
      }
    }));
}
