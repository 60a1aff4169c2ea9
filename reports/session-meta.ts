import type { Session } from '../trace/schema.js';
import { parseSchedule, SCENARIOS, type Schedule } from '../analyzer/schedule.js';

/*
 * What a report reads from a session's meta, which the recorder and replay
 * fill and nothing validates for the reports (an exported session can carry
 * anything): how the session was made (invocationOf), the schedule a replay
 * ran (scheduleOf), and why a replay could not happen (infeasibleOf). Each
 * reader takes what it understands and ignores the rest.
 *
 * How the session was made comes from `meta.invocation` (the structured
 * record of the options) when a session has it, else from `meta.command`
 * (the argv of `migrace replay ...`), else from `meta.args` (the target's
 * own argument list: memory, extra QEMU arguments, minimig's timings).
 */

/** The options that made the session, as far as its meta says. */
export interface Invocation {
  /** Where this came from: 'invocation', 'command', 'args' or 'none'. */
  source: 'invocation' | 'command' | 'args' | 'none';
  target: 'minimig' | 'qemu' | null;
  patched: boolean;
  binary: string | null;
  qemu: string | null;
  profile: string | null;
  memory: string | null;
  /** QEMU arguments after `--`, as given. */
  extraArgs: string[];
  env: string[];
  maxBandwidth: number | null;
  setupMs: number | null;
  transferMs: number | null;
  bqlCompletion: boolean;
  /** The schedule options of the command line, when it was a replay. */
  scenario: string | null;
  scheduleFile: string | null;
  finding: string | null;
}

const asString = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);
const asNumber = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : null);
const asStrings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
const targetKind = (v: unknown): Invocation['target'] => (v === 'minimig' || v === 'qemu' ? v : null);

function empty(source: Invocation['source']): Invocation {
  return {
    source, target: null, patched: false, binary: null, qemu: null, profile: null, memory: null, extraArgs: [], env: [],
    maxBandwidth: null, setupMs: null, transferMs: null, bqlCompletion: false, scenario: null, scheduleFile: null, finding: null,
  };
}

/** Options of record / replay that take a value (cli/record.ts addTargetOptions, cli/replay.ts). */
const VALUE_OPTIONS = new Set([
  '--target', '--binary', '--qemu', '--memory', '--profile', '--max-bandwidth', '--setup-ms', '--transfer-ms', '--gdb',
  '--scenario', '--schedule', '--finding', '--session', '--repeat', '--label', '--db', '--poll-ms', '--timeout', '--attach', '--qmp',
]);
/** Options that take every following word up to the next option (commander's `<value...>`). */
const VARIADIC_OPTIONS = new Set(['--env']);

/** A `migrace replay ...` argv read the way commander reads it: options anywhere, everything after `--` and every bare word are QEMU arguments. */
export function parseCommand(argv: readonly string[]): Invocation {
  const inv = empty('command');
  const values = new Map<string, string>();
  const flags = new Set<string>();
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      inv.extraArgs.push(...argv.slice(i + 1));
      break;
    }
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const name = eq > 0 ? a.slice(0, eq) : a;
    if (VALUE_OPTIONS.has(name)) {
      const v = eq > 0 ? a.slice(eq + 1) : argv[++i];
      if (v !== undefined) values.set(name, v);
    } else if (VARIADIC_OPTIONS.has(name)) {
      if (eq > 0) inv.env.push(a.slice(eq + 1));
      while (i + 1 < argv.length && !argv[i + 1]!.startsWith('-')) inv.env.push(argv[++i]!);
    } else if (a.startsWith('--')) flags.add(a);
    else inv.extraArgs.push(a);
  }
  inv.target = targetKind(values.get('--target') ?? 'minimig');
  inv.patched = flags.has('--patched');
  inv.binary = values.get('--binary') ?? null;
  inv.qemu = values.get('--qemu') ?? null;
  inv.profile = values.get('--profile') ?? null;
  inv.memory = values.get('--memory') ?? null;
  inv.maxBandwidth = asNumber(values.get('--max-bandwidth'));
  inv.setupMs = asNumber(values.get('--setup-ms'));
  inv.transferMs = asNumber(values.get('--transfer-ms'));
  inv.bqlCompletion = flags.has('--bql-completion');
  inv.scenario = values.get('--scenario') ?? null;
  inv.scheduleFile = values.get('--schedule') ?? null;
  inv.finding = values.get('--finding') ?? null;
  return inv;
}

/** The target's own argument list (recorder/targets): what it tells about memory, extra arguments and minimig's timings. */
function fromTargetArgs(kind: Session['target']['kind'], args: readonly string[]): Invocation {
  const inv = empty('args');
  const after = (flag: string): string | null => {
    const i = args.indexOf(flag);
    return i >= 0 && i + 1 < args.length ? args[i + 1]! : null;
  };
  if (kind === 'qemu') {
    inv.target = 'qemu';
    inv.memory = after('-m');
    // The source's arguments end with the user's, after migrace's own -qmp socket.
    const q = args.indexOf('-qmp');
    if (q >= 0) inv.extraArgs = args.slice(q + 2);
  } else if (kind === 'minimig') {
    inv.target = 'minimig';
    inv.setupMs = asNumber(after('--setup-ms'));
    inv.transferMs = asNumber(after('--transfer-ms'));
    inv.bqlCompletion = args.includes('--bql-completion');
  }
  return inv;
}

function fromInvocation(o: Record<string, unknown>): Invocation {
  // `command` may be the argv itself: its schedule options still count.
  const argv = asStrings(o['command']);
  const inv = argv.length > 1 ? { ...parseCommand(argv), source: 'invocation' as const } : empty('invocation');
  inv.target = targetKind(o['target']) ?? inv.target;
  inv.patched = o['patched'] === true || inv.patched;
  inv.binary = asString(o['binary']) ?? inv.binary;
  inv.qemu = asString(o['qemu']) ?? inv.qemu;
  inv.profile = asString(o['profile']) ?? inv.profile;
  inv.memory = asString(o['memory']) ?? (typeof o['memory'] === 'number' ? String(o['memory']) : inv.memory);
  if (Array.isArray(o['extra_args'])) inv.extraArgs = asStrings(o['extra_args']);
  if (Array.isArray(o['env'])) inv.env = asStrings(o['env']);
  inv.maxBandwidth = asNumber(o['max_bandwidth']) ?? inv.maxBandwidth;
  inv.setupMs = asNumber(o['setup_ms']) ?? inv.setupMs;
  inv.transferMs = asNumber(o['transfer_ms']) ?? inv.transferMs;
  inv.bqlCompletion = o['bql_completion'] === true || inv.bqlCompletion;
  inv.scenario = asString(o['scenario']) ?? inv.scenario;
  inv.scheduleFile = asString(o['schedule_file']) ?? inv.scheduleFile;
  inv.finding = asString(o['finding']) ?? inv.finding;
  return inv;
}

export function invocationOf(session: Session): Invocation {
  const meta = session.meta ?? {};
  const structured = meta['invocation'];
  if (structured && typeof structured === 'object' && !Array.isArray(structured)) return fromInvocation(structured as Record<string, unknown>);
  const argv = asStrings(meta['command']);
  if (argv.length > 1) {
    const inv = parseCommand(argv);
    // What the argv leaves out the target's own arguments may still tell (the demo's argv names no memory or QEMU arguments).
    const fromArgs = fromTargetArgs(session.target.kind, asStrings(meta['args']));
    if (inv.extraArgs.length === 0) inv.extraArgs = fromArgs.extraArgs;
    inv.memory ??= fromArgs.memory;
    return inv;
  }
  const args = asStrings(meta['args']);
  if (args.length) return fromTargetArgs(session.target.kind, args);
  return empty('none');
}

/** Keys sorted at every level: two schedules are the same when these are equal. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** The schedule a replay ran, validated, and the built-in scenario it is when it is one. */
export function scheduleOf(session: Session): { schedule: Schedule; builtin: string | null } | null {
  const raw = session.meta?.['schedule'];
  if (!raw || typeof raw !== 'object') return null;
  let schedule: Schedule;
  try {
    schedule = parseSchedule(raw, `session ${session.id} meta.schedule`);
  } catch {
    return null;
  }
  const c = canonical(schedule);
  const builtin = Object.keys(SCENARIOS).find((name) => canonical(SCENARIOS[name]!()) === c) ?? null;
  return { schedule, builtin };
}

/** Why a replay could not happen: the reader waits on a lock its held writer owns. */
export interface Infeasible {
  reason: string;
  /** The waiting thread's frames, innermost first, when the replay stored them. */
  stack: string[];
  /** The frame it waits in (bql_lock_impl, pthread_mutex_lock, ...). */
  lock: string | null;
}

/**
 * `meta.infeasible`: today the sentence replay.ts wrote ("... waits in LOCK
 * (f0 <- f1 <- ...) while ... is held"), whose stack is read back from it; a
 * structured {reason, stack, lock} is read as it is.
 */
export function infeasibleOf(session: Session): Infeasible | null {
  const v = session.meta?.['infeasible'];
  if (typeof v === 'string' && v !== '') {
    const m = /waits in (\S+) \(([^()]*)\)/.exec(v);
    return { reason: v, stack: m ? m[2]!.split(' <- ').filter(Boolean) : [], lock: m ? m[1]! : null };
  }
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    const stack = asStrings(o['stack']).length ? asStrings(o['stack'])
      : Array.isArray(o['stack']) ? (o['stack'] as unknown[]).map((f) => (f && typeof f === 'object' ? asString((f as Record<string, unknown>)['func']) ?? '??' : '??')) : [];
    return { reason: asString(o['reason']) ?? 'the schedule cannot happen on this build', stack, lock: asString(o['lock']) ?? null };
  }
  return null;
}
