import type { Session } from '../trace/schema.js';
import type { Finding } from '../analyzer/types.js';
import { SCENARIOS, type Schedule } from '../analyzer/schedule.js';
import { displayStateName } from './labels.js';
import { printableJson, printableShellWord, truncate } from './safe-text.js';
import { invocationOf, scheduleOf, type Invocation } from './session-meta.js';

/*
 * The command a report prints to force its finding again (cli/replay.ts),
 * exactly as the session was made: which schedule, which target and build,
 * the profile file when one was given, the QEMU memory, bandwidth and extra
 * arguments, minimig's timings.
 *
 *  - reproduction: the command, and the schedule to save first when the
 *    session replayed one that is not built in (a --schedule or --finding
 *    replay: the report must stand alone, so it carries the schedule);
 *  - scheduleJsonLines: that schedule as JSON a reader saves and replays,
 *    one role or step per line.
 * Every word that comes from the session is quoted with printableShellWord.
 */

export interface Reproduction {
  command: string;
  /** The schedule to save as `scheduleFile` before running the command; null when the command needs no file. */
  schedule: Schedule | null;
  scheduleFile: string;
}

/** The built-in scenario that forces `old -> new` after a read of `old`, if there is one. */
function scenarioFor(oldName: string, newName: string): string | null {
  for (const [name, make] of Object.entries(SCENARIOS)) {
    const roles = make().roles;
    const w = Object.values(roles).find((r) => r.probe === 'transition')?.when;
    // A writer that names no old state (into-completed) forces the step from whatever state precedes `new`.
    if (w && (w.old === undefined || w.old === oldName) && w.new === newName) return name;
  }
  return null;
}

/** What the command replays: the session's own schedule for a replay, else the finding. */
function scheduleWords(session: Session, finding: Finding | null, inv: Invocation, scheduleFile: string): { words: string[]; schedule: Schedule | null } {
  const meta = session.meta ?? {};
  const ran = session.origin === 'replay' ? scheduleOf(session) : null;
  if (ran) {
    return ran.builtin ? { words: ['--scenario', ran.builtin], schedule: null } : { words: ['--schedule', printableShellWord(scheduleFile)], schedule: ran.schedule };
  }
  if (session.origin === 'replay' && inv.scenario && Object.hasOwn(SCENARIOS, inv.scenario)) return { words: ['--scenario', inv.scenario], schedule: null };
  if (session.origin === 'replay' && inv.scheduleFile) return { words: ['--schedule', printableShellWord(inv.scheduleFile)], schedule: null };
  const table = session.target.status_table;
  const x = finding?.crossing[0];
  const fromFinding = x ? scenarioFor(displayStateName(x.old, table), displayStateName(x.new, table)) : null;
  if (fromFinding) return { words: ['--scenario', fromFinding], schedule: null };
  if (finding && x) {
    const db = typeof meta['db'] === 'string' ? meta['db'] : null;
    return { words: ['--finding', `${session.id}:${printableShellWord(finding.id)}`, ...(db ? ['--db', printableShellWord(db)] : [])], schedule: null };
  }
  const metaScenario = typeof meta['scenario'] === 'string' && Object.hasOwn(SCENARIOS, meta['scenario']) ? meta['scenario'] : null;
  return { words: ['--scenario', metaScenario ?? 'lp1994002'], schedule: null };
}

/**
 * Target, build and their options. minimig's two bundled builds are chosen
 * by --patched, another minimig binary by --binary; for QEMU the binary is
 * the variant, and a profile file, memory, bandwidth, environment and extra
 * arguments come from the invocation.
 */
function targetWords(session: Session, inv: Invocation): string[] {
  const t = session.target;
  const meta = session.meta ?? {};
  const q = printableShellWord;
  const words: string[] = [];
  if ((inv.target ?? (t.kind === 'minimig' ? 'minimig' : 'qemu')) === 'minimig') {
    words.push('--target', 'minimig');
    const binary = inv.binary ?? t.binary;
    const base = binary ? binary.split('/').pop() : null;
    if (binary && base !== 'minimig' && base !== 'minimig-patched') words.push('--binary', q(binary));
    else if (inv.patched || t.variant === 'patched' || base === 'minimig-patched') words.push('--patched');
    if (inv.setupMs !== null) words.push('--setup-ms', String(inv.setupMs));
    if (inv.transferMs !== null) words.push('--transfer-ms', String(inv.transferMs));
    if (inv.bqlCompletion) words.push('--bql-completion');
    return words;
  }
  const metaQemu = typeof meta['qemu'] === 'string' ? meta['qemu'] : null;
  const bin = inv.qemu ?? t.binary ?? metaQemu;
  words.push('--target', 'qemu', '--qemu', bin ? q(bin) : '/path/to/qemu-system-x86_64');
  if (inv.profile) words.push('--profile', q(inv.profile));
  if (inv.memory !== null && inv.memory !== '128') words.push('--memory', q(inv.memory));
  if (inv.maxBandwidth !== null) words.push('--max-bandwidth', String(inv.maxBandwidth));
  if (inv.env.length) words.push('--env', ...inv.env.map(q));
  if (inv.extraArgs.length) words.push('--', ...inv.extraArgs.map(q));
  return words;
}

/** How to force the finding again (or, for a replay, the replay itself). */
export function reproduction(session: Session, finding?: Finding | null, opts: { scheduleFile?: string } = {}): Reproduction {
  const scheduleFile = opts.scheduleFile ?? 'schedule.json';
  const inv = invocationOf(session);
  const s = scheduleWords(session, finding ?? null, inv, scheduleFile);
  return { command: ['migrace', 'replay', ...s.words, ...targetWords(session, inv)].join(' '), schedule: s.schedule, scheduleFile };
}

/** The command alone (reproduction(...).command). */
export function reproduceCommand(session: Session, finding?: Finding | null): string {
  return reproduction(session, finding).command;
}

/**
 * The schedule as JSON that `migrace replay --schedule` reads back as the
 * same schedule: one role or step per line, every character printable
 * (printableJson). With `width`, a description too long for it is shortened
 * (it is prose: the replay does not depend on it) and `shortened` says so.
 */
export function scheduleJsonLines(schedule: Schedule, width?: number): { lines: string[]; shortened: boolean } {
  const j = (v: unknown): string => printableJson(v);
  const member = (key: string, value: unknown, last = false): string => `  ${j(key)}: ${j(value)}${last ? '' : ','}`;
  const len = (s: string): number => Array.from(s).length;
  let descLine = member('description', schedule.description);
  let shortened = false;
  for (let keep = len(schedule.description); width !== undefined && keep > 0 && len(descLine) > width;) {
    keep = Math.max(0, keep - Math.max(1, len(descLine) - width));
    descLine = member('description', keep > 0 ? truncate(schedule.description, keep) : '');
    shortened = true;
  }
  const roles = Object.entries(schedule.roles);
  const lines = [
    '{',
    member('format', schedule.format),
    member('version', schedule.version),
    member('name', schedule.name),
    descLine,
    `  ${j('roles')}: {`,
    ...roles.map(([name, role], i) => `    ${j(name)}: ${j(role)}${i < roles.length - 1 ? ',' : ''}`),
    '  },',
    `  ${j('steps')}: [`,
    ...schedule.steps.map((step, i) => `    ${j(step)}${i < schedule.steps.length - 1 ? ',' : ''}`),
    '  ]',
    '}',
  ];
  return { lines, shortened };
}
