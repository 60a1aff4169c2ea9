import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { hunt } from '../analyzer/hunt.js';
import { loadHunt, type HuntView } from '../analyzer/hunt-record.js';
import { parseScenarioList, SCENARIO_NAMES } from '../analyzer/hunt-scenarios.js';
import { findInterleavings } from '../analyzer/interleavings.js';
import { discoverProfile } from '../recorder/probes/discover.js';
import type { Profile } from '../recorder/probes/profile.js';
import { MigraceError, messageOf } from '../trace/errors.js';
import type { TraceStore } from '../trace/store.js';
import { action, dbOption, huntId, jsonOption, openStore, out, parseIntOption, printJson, progress, table, type DbOptions } from './common.js';
import { addTargetOptions, cliInvocation, prepareTarget, type TargetCliOptions } from './record.js';
import { abortOnSignals } from './signals.js';

/**
 * `migrace hunt`: every read point against every learned transition, one
 * replay per cell (analyzer/hunt.ts); progress per cell on stderr, the
 * matrix on stdout. `migrace hunts` lists the stored hunts, and
 * reportHunt() serves `migrace report --hunt ID`.
 */

interface HuntCliOptions extends DbOptions, TargetCliOptions {
  scenarios: string;
  dynamic?: boolean;
  dynamicBudget: number;
  cellTimeout: number;
  queries: number;
  schedules?: string;
  label?: string;
  json?: boolean;
}

export function register(program: Command): void {
  const cmd = program
    .command('hunt')
    .description('find the read-then-transition windows of a build: every read of the state on the query path against every transition its migrations make, each forced once and judged by the reply')
    .argument('[qemu-args...]', 'qemu: extra arguments for both QEMUs, after --')
    .option('--scenarios <list>', `the migrations to learn transitions from: ${['precopy', 'cancel', 'fail', 'switchover', 'postcopy'].join(',')} (cancel is cancel-setup and cancel-active)`, SCENARIO_NAMES.join(','))
    .option('--dynamic', 'also find read points by single-stepping one undisturbed query per state, and cross-check them with the static ones')
    .option('--dynamic-budget <s>', 'seconds all single-stepping may take', parseIntOption('--dynamic-budget', 1, 3600), 120)
    .option('--cell-timeout <s>', 'seconds one cell may take before it is marked timed out', parseIntOption('--cell-timeout', 5, 3600), 90)
    .option('--queries <n>', 'undisturbed replies per state in each baseline', parseIntOption('--queries', 1, 20), 3)
    .option('--schedules <dir>', "where broken cells' schedules are written (default: DB-hunt-ID next to the database: migrace-hunt-1 for migrace.db)")
    .option('--label <text>', 'a label for the hunt');
  addTargetOptions(cmd)
    .addOption(dbOption())
    .addOption(jsonOption())
    .action(action(async (extra: string[], opts: HuntCliOptions) => {
      const scenarios = parseScenarioList(opts.scenarios);
      if (opts.target === 'qemu' && !opts.qemu) throw new MigraceError('USAGE', '--target qemu needs --qemu PATH (Debian: /usr/bin/qemu-system-x86_64)');
      const store = openStore(opts);
      const signals = abortOnSignals();
      let firstPrepare = true;
      try {
        const name = opts.target === 'qemu'
          ? `qemu ${basename(opts.qemu!)}`
          : `${opts.patched ? 'minimig-patched' : 'minimig'}${opts.bqlCompletion ? ' --bql-completion' : ''}`;
        const r = await hunt({
          store, kind: opts.target, scenarios, dynamic: Boolean(opts.dynamic), dynamicBudgetMs: opts.dynamicBudget * 1000,
          queries: opts.queries, cellTimeoutMs: opts.cellTimeout * 1000, blockedAfterMs: 1_500,
          label: opts.label ?? `hunt on ${name}`,
          invocation: { ...cliInvocation('replay', opts, extra) }, gdbPath: opts.gdb, signal: signals.signal, progress,
          prepare: async (purpose) => {
            // Discovery speaks once; every run after that uses the cached profile.
            const said = firstPrepare ? progress : undefined;
            firstPrepare = false;
            const prepared = await prepareTarget(opts, extra, said);
            return purpose === 'start' ? { ...prepared, profile: await withStaticReadPoints(prepared.profile, prepared.target.binary, opts.gdb, progress) } : prepared;
          },
          schedulesDir: (id) => opts.schedules ?? join(dirname(resolve(opts.db)), `${basename(opts.db).replace(/\.db$/, '')}-hunt-${id}`),
        });
        if (opts.json) printJson(huntJson(r.view));
        else out(await huntText(r.view));
        if (r.interrupted) {
          progress(`migrace: hunt ${r.view.id} interrupted: ${r.view.cells.length} cells stored`);
          process.exitCode = 130;
        }
      } finally {
        signals.dispose();
        store.close();
      }
    }));

  program
    .command('hunts')
    .description('list the stored hunts')
    .addOption(dbOption())
    .addOption(jsonOption())
    .action(action(async (opts: DbOptions & { json?: boolean }) => {
      const store = openStore(opts, { readonly: true });
      try {
        const list = store.hunts().map((h) => ({ id: h.id, created_at: h.created_at, label: h.label, state: h.state, cells: store.huntCells(h.id).length, binary: h.target.binary }));
        if (opts.json) printJson(list);
        else out(table(['ID', 'CREATED', 'STATE', 'CELLS', 'LABEL'], list.map((h) => [h.id, h.created_at, h.state, h.cells, h.label])));
      } finally {
        store.close();
      }
    }));
}

/**
 * minimig's own profile places its probes by source line and lists no read
 * points; discovery reads them from its binary as from any QEMU. When that
 * fails, the profile's read probe stands in, and the hunt says so. The hunt
 * benchmark uses it too, so it measures the rows the command hunts.
 */
export async function withStaticReadPoints(profile: Profile, binary: string, gdb: string | undefined, say: (line: string) => void): Promise<Profile> {
  if (profile.read_points.length > 0) return profile;
  try {
    const found = await discoverProfile(binary, { gdb });
    say(`static read points of ${binary} from discovery: ${found.profile.read_points.map((r) => r.name).join(', ') || 'none'}`);
    return { ...profile, read_points: found.profile.read_points };
  } catch (e) {
    say(`static read points of ${binary}: discovery failed (${messageOf(e)}); the profile's read probe stands in`);
    return profile;
  }
}

/** The matrix and its facts, as `hunt` prints them. */
async function huntText(v: HuntView): Promise<string> {
  const { renderHuntText } = await import('../reports/hunt.js');
  return renderHuntText(v);
}

function huntJson(v: HuntView): Record<string, unknown> {
  return { id: v.id, state: v.state, error: v.error, label: v.label, target: v.target, ...v.data, cells: v.cells };
}

interface HuntReportOptions {
  html?: string;
  text?: boolean;
  markdown?: boolean;
}

/** Each broken cell's own timeline, written next to the matrix page: NAME-session-N.html. */
function timelinePath(matrixFile: string, sid: number): string {
  const dir = dirname(matrixFile);
  const base = basename(matrixFile).replace(/\.html?$/i, '');
  return join(dir, `${base}-session-${sid}.html`);
}

/** `migrace report --hunt ID`: the matrix as HTML (with the broken cells' timelines), text or Markdown. */
export async function reportHunt(store: TraceStore, idText: string, opts: HuntReportOptions): Promise<void> {
  const v = loadHunt(store, huntId(idText, '--hunt'));
  const r = await import('../reports/hunt.js');
  if (opts.html) {
    const { renderHtml } = await import('../reports/html.js');
    const linked = new Set<number>();
    for (const c of v.cells) {
      if (c.class !== 'broken' || c.session_id === null) continue;
      const session = store.session(c.session_id);
      const threads = store.threads(c.session_id);
      const events = store.events(c.session_id);
      write(timelinePath(opts.html, c.session_id), renderHtml(session, threads, events, findInterleavings(session, threads, events)));
      linked.add(c.session_id);
    }
    write(opts.html, r.renderHuntHtml(v, { timelineHref: (sid) => (linked.has(sid) ? basename(timelinePath(opts.html!, sid)) : null) }));
    process.stderr.write(`wrote ${opts.html} and ${linked.size} cell timeline(s)\n`);
  }
  if (opts.text) out(r.renderHuntText(v));
  if (opts.markdown) out(r.renderHuntMarkdown(v));
}

function write(path: string, text: string): void {
  try {
    writeFileSync(path, text);
  } catch (e) {
    throw new MigraceError('BAD_INPUT', `cannot write ${path}: ${messageOf(e)}`);
  }
}
