import type { Command } from 'commander';
import { MigraceError } from '../trace/errors.js';
import { builtinSchedule, loadScheduleFile, readThenTransition, scenarioList, type Schedule } from '../analyzer/schedule.js';
import { replay, type ReplayResult } from '../analyzer/replay.js';
import { findInterleavings } from '../analyzer/interleavings.js';
import { explore } from '../analyzer/explore.js';
import type { TraceStore } from '../trace/store.js';
import { action, dbOption, jsonOption, openStore, out, parseIntOption, printJson, progress, warningsOnly, sessionId, type DbOptions } from './common.js';
import { addTargetOptions, ATTACHED_UNDER_GDB, attachedProfile, cliInvocation, prepareTarget, type TargetCliOptions } from './record.js';
import { attachedTarget } from '../recorder/record.js';
import type { PreparedTarget } from '../recorder/targets/types.js';
import type { Profile } from '../recorder/probes/profile.js';
import { abortOnSignals } from './signals.js';

interface ReplayCliOptions extends DbOptions, TargetCliOptions {
  scenario?: string;
  schedule?: string;
  finding?: string;
  session?: string;
  repeat: number;
  label?: string;
  json?: boolean;
  attach?: number;
  driverWait: number;
}

/** A schedule from a finding: hold its writer at the crossing transition, its reader after the read. */
export function scheduleFromFinding(store: TraceStore, sid: number, findingId: string): Schedule {
  const session = store.session(sid);
  const analysis = findInterleavings(session, store.threads(sid), store.events(sid));
  const f = analysis.findings.find((x) => x.id === findingId);
  if (!f) {
    throw new MigraceError('NOT_FOUND', `session ${sid} has no finding ${findingId} (it has ${analysis.findings.map((x) => x.id).join(', ') || 'none'}; see "migrace analyze ${sid}")`);
  }
  const t = f.crossing[0];
  if (!t?.old?.name || !t.new.name) throw new MigraceError('REPLAY', `finding ${findingId} of session ${sid} has no named crossing transition to replay`);
  return readThenTransition(`session${sid}-${findingId}`, t.old.name, t.new.name, `replay of ${findingId} in session ${sid}: ${f.summary}`);
}

/** A schedule from an explore hazard: what a recording showed could happen. */
export function scheduleFromHazard(store: TraceStore, sid: number, hazardId: string): Schedule {
  const x = explore(store.session(sid), store.threads(sid), store.events(sid));
  const h = x.hazards.find((y) => y.id === hazardId);
  if (!h) throw new MigraceError('NOT_FOUND', `session ${sid} has no hazard ${hazardId} (it has ${x.hazards.map((y) => y.id).join(', ') || 'none'}; see "migrace explore ${sid}")`);
  if (!h.schedule) throw new MigraceError('REPLAY', `hazard ${hazardId} of session ${sid} (${h.placement}) cannot be forced with the current probe roles`);
  return h.schedule;
}

/** --scenario or --schedule, checked before any database is opened (or created). */
function scheduleFromOptions(opts: ReplayCliOptions): Schedule | null {
  const given = [opts.scenario, opts.schedule, opts.finding].filter((x) => x !== undefined).length;
  if (given !== 1) throw new MigraceError('USAGE', `replay needs exactly one of --scenario (${scenarioList()}), --schedule FILE or --finding ID`);
  if (opts.scenario) return builtinSchedule(opts.scenario);
  if (opts.schedule) return loadScheduleFile(opts.schedule);
  return null;
}

function scheduleFromStore(opts: ReplayCliOptions, store: TraceStore): Schedule {
  const m = /^(?:(\d+):)?([FH]\d+)$/.exec(opts.finding!);
  if (!m) throw new MigraceError('USAGE', `--finding takes a finding or hazard id such as F1 or H2 (with --session N), or 12:F1, not "${opts.finding}"`);
  const sid = m[1] ? sessionId(m[1], '--finding') : opts.session ? sessionId(opts.session, '--session') : store.latestSession()?.id;
  if (!sid) throw new MigraceError('NOT_FOUND', 'no session to take the finding from');
  return m[2].startsWith('H') ? scheduleFromHazard(store, sid, m[2]) : scheduleFromFinding(store, sid, m[2]);
}

/** The target of one run: the QEMU given by --attach (somebody else's), or one migrace starts. */
async function targetFor(opts: ReplayCliOptions, extra: string[], say?: (m: string) => void): Promise<{ target: PreparedTarget; profile: Profile }> {
  if (opts.attach === undefined) return prepareTarget(opts, extra, say);
  progress(ATTACHED_UNDER_GDB);
  const { binary, profile } = await attachedProfile(opts.attach, opts, say);
  return { target: attachedTarget(binary, profile, null), profile };
}

/** The reply's status as a word: "none" when the reply had none (or there was no reply). */
function replyStatus(r: ReplayResult): string {
  const status = ((r.reply ?? {}) as Record<string, unknown>).status;
  return typeof status === 'string' ? status : 'none';
}

/** A run for --json: what did not happen (no reply, no finding) is left out rather than printed as null. */
export function replayJson(r: ReplayResult): Record<string, unknown> {
  return Object.fromEntries(Object.entries(r).filter(([, v]) => v !== null));
}

/** What must be the same across repeats: the outcome and the reply's shape, not its counters. */
export function outcomeKey(r: ReplayResult): string {
  const body = (r.reply ?? {}) as Record<string, unknown>;
  return JSON.stringify({
    outcome: r.outcome, state: r.state, status: replyStatus(r), fields: Object.keys(body).sort(),
    libvirt: r.verdict?.old_libvirt, shape: r.verdict?.shape ?? undefined,
  });
}

export function describeReplay(r: ReplayResult): string {
  if (r.state === 'aborted') return `session ${r.sessionId}: replay aborted: ${r.error}`;
  if (r.outcome === 'infeasible' || r.outcome === 'unreachable') return `session ${r.sessionId}: ${r.outcome}: ${r.reason}`;
  const reply = r.reply !== null ? `reply ${JSON.stringify(r.reply)}`
    : r.attachedPid !== null ? `the reply went to the driver of process ${r.attachedPid} (its log has it: migrace import libvirt LOG judges it)` : 'no reply';
  const shape = r.verdict?.shape;
  const broken = shape ? `; reply shape broken for ${r.verdict?.status}: ${[shape.missing.length ? `missing ${shape.missing.join(', ')}` : '', shape.foreign.length ? `foreign ${shape.foreign.join(', ')}` : ''].filter(Boolean).join(', ')}` : '';
  const libvirt = r.verdict === null && r.attachedPid !== null ? 'no verdict of its own' : r.verdict ? `old libvirt ${r.verdict.old_libvirt}${r.verdict.libvirt_error ? ` ("${r.verdict.libvirt_error}")` : ''}, current libvirt ${r.verdict.current_libvirt}` : 'no verdict';
  return `session ${r.sessionId}: ${r.outcome}${broken}; ${reply}; ${libvirt}${r.finding ? `\n  ${r.finding.summary}` : ''}`;
}

/** The line after --repeat: all the same, or how they differ. */
export function describeRepeats(results: readonly ReplayResult[], repeat: number, keys: ReadonlyMap<string, number>): string {
  const first = results[0];
  if (!first) return `no run finished (of ${repeat})`;
  if (keys.size === 1) {
    const what = first.state === 'aborted' ? `aborted (${first.error})` : `${first.outcome}, reply status ${replyStatus(first)}`;
    return `${results.length}/${repeat} runs identical: ${what}`;
  }
  return `outcomes differ across ${results.length} runs:\n${[...keys].map(([k, n]) => `  ${n} x ${k}`).join('\n')}`;
}

export function register(program: Command): void {
  const cmd = program
    .command('replay')
    .description('force an interleaving on a live target, deterministically, and judge the reply')
    .argument('[qemu-args...]', 'qemu: extra arguments for both QEMUs, after --')
    .option('--scenario <name>', `a built-in schedule: ${scenarioList()}`)
    .option('--schedule <file>', 'a schedule file (JSON)')
    .option('--finding <id>', 'replay a finding (F1) or an explore hazard (H1): with --session, or as SESSION:F1')
    .option('--session <n>', 'the session --finding refers to (default: the newest)')
    .option('--repeat <n>', 'run the schedule N times and compare the outcomes', parseIntOption('--repeat', 1, 1000), 1)
    .option('--label <text>', 'a label for the replay sessions')
    .option('--attach <pid>', 'force the schedule on a running QEMU driven by somebody else (libvirt): its migrate and query steps wait for the driver (virsh migrate or save, virsh domjobinfo); the QEMU is left running', parseIntOption('--attach', 1, 2 ** 22))
    .option('--driver-wait <s>', 'with --attach: how long to wait for the driver to migrate and to query (seconds)', parseIntOption('--driver-wait', 1, 86_400), 120);
  addTargetOptions(cmd)
    .addOption(dbOption())
    .addOption(jsonOption())
    .action(action(async (extra: string[], opts: ReplayCliOptions) => {
      const given = scheduleFromOptions(opts);
      if (opts.attach !== undefined && opts.repeat !== 1) throw new MigraceError('USAGE', '--repeat goes without --attach: an attached QEMU migrates once');
      if (opts.attach !== undefined && extra.length > 0) throw new MigraceError('USAGE', `--attach takes no QEMU arguments (got ${extra.join(' ')}): the running QEMU has its own`);
      const store = openStore(opts);
      const signals = abortOnSignals();
      const say = opts.json ? warningsOnly : progress;
      const results: ReplayResult[] = [];
      try {
        const schedule = given ?? scheduleFromStore(opts, store);
        for (let i = 0; i < opts.repeat && !signals.signal.aborted; i++) {
          const { target, profile } = await targetFor(opts, extra, i === 0 ? say : undefined);
          const on = opts.attach !== undefined ? `attached ${opts.attach} (qemu ${profile.qemu_version ?? target.binary})`
            : opts.target === 'qemu' ? `qemu ${profile.qemu_version ?? target.binary}` : opts.patched ? 'minimig-patched' : 'minimig';
          const r = await replay({
            store, target, profile, schedule, gdbPath: opts.gdb, signal: signals.signal, progress: say,
            attachPid: opts.attach, driverWaitMs: opts.driverWait * 1000,
            label: opts.label ?? `replay ${schedule.name} on ${on}${opts.repeat > 1 ? ` #${i + 1}` : ''}`,
            meta: {
              command: ['migrace', 'replay', ...process.argv.slice(3)],
              // Attached, the reproduce line starts the same binary itself (without the driver).
              invocation: cliInvocation('replay', opts.attach !== undefined ? { ...opts, target: 'qemu', qemu: target.binary } : opts, extra),
              ...(opts.attach !== undefined && { attached_pid: opts.attach }),
            },
          });
          results.push(r);
          if (!opts.json) out(`${opts.repeat > 1 ? `run ${i + 1}: ` : ''}${describeReplay(r)}`);
        }
      } finally {
        signals.dispose();
        store.close();
      }
      const keys = new Map<string, number>();
      for (const r of results) keys.set(outcomeKey(r), (keys.get(outcomeKey(r)) ?? 0) + 1);
      const identical = keys.size === 1;
      if (opts.json) printJson({ runs: results.map(replayJson), identical, outcomes: Object.fromEntries(keys) });
      else if (opts.repeat > 1) out(describeRepeats(results, opts.repeat, keys));
      if (results.some((r) => r.state === 'aborted') || !identical || results.length < opts.repeat) process.exitCode = 1;
    }));
}
