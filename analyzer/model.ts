import { MigraceError } from '../trace/errors.js';
import { replyFacts } from '../trace/reply.js';
import { normalizeStatusName } from '../trace/status.js';
import type { Verdict } from './types.js';
import { ACTIVE_LIKE, judgeFacts, type ShapeCheck } from './verdict.js';

/*
 * A model of fill_source_migration_info() against one writer: what the
 * reply of query-migrate holds for a given order of the reader's steps and
 * the writer's transitions.
 *
 *   read        `switch (s->state)` (unpatched) / `state = qatomic_read(&s->state)` (patched):
 *               picks the branch.
 *   fill        the branch's populate_time_info() + populate_ram_info(): both
 *               re-read s->state in every variant (downtime vs expected-downtime,
 *               ram->remaining). Only the ACTIVE-like branches and COMPLETED fill.
 *   publish     `info->status = s->state` (unpatched: a second read) /
 *               `info->status = state` (patched, 552de79b, QEMU 7.1).
 *   transition  migrate_set_state(): a compare-and-swap, so it only takes
 *               effect when the state still is `old`.
 *
 * `unpatched` is QEMU <= 7.0 and minimig; `patched` is 7.1 and later, which
 * still has the fill re-reads (docs/qemu-facts.md, "The race and the fix":
 * forced on 7.2; there in 7.2, 10.0.2 and 11.1.3).
 */

export type ModelVariant = 'unpatched' | 'patched';

export type ModelStep =
  | { kind: 'read' }
  | { kind: 'fill' }
  | { kind: 'publish' }
  | { kind: 'transition'; old: string; new: string };

export interface ModelOutcome {
  variant: ModelVariant;
  initial: string;
  /** The state after every step. */
  final: string;
  /** The status the switch used. */
  branch: string;
  /** info->status; null when the NONE branch returned before setting it (reply `{}`). */
  published: string | null;
  ram: boolean;
  time_fields: string[];
  /** SHAPE_FIELDS present in the reply. */
  fields: string[];
  /** The state populate_* saw, or null when the branch does not fill. */
  fill_saw: string | null;
  /** Per transition step, in order: whether its compare-and-swap took effect. */
  applied: boolean[];
  /** The QMP return object the code would produce (numbers are placeholders). */
  reply: Record<string, unknown>;
  verdict: Verdict;
  /** The reply against what QEMU fills for the published status. */
  shape: ShapeCheck | null;
  /** True when the reply has exactly the fields an undisturbed reply of its status has. */
  consistent: boolean;
}

/** Put the implicit steps where the code has them: fill right after the read, publish last. */
function normalize(steps: readonly ModelStep[]): ModelStep[] {
  const reads = steps.filter((s) => s.kind === 'read').length;
  if (reads !== 1) {
    throw new MigraceError('BAD_INPUT', `a model schedule needs exactly one read step, got ${reads}`);
  }
  for (const k of ['fill', 'publish'] as const) {
    if (steps.filter((s) => s.kind === k).length > 1) {
      throw new MigraceError('BAD_INPUT', `a model schedule has at most one ${k} step`);
    }
  }
  const out = [...steps];
  const at = (k: ModelStep['kind']): number => out.findIndex((s) => s.kind === k);
  if (at('fill') < 0) out.splice(at('read') + 1, 0, { kind: 'fill' });
  if (at('publish') < 0) out.push({ kind: 'publish' });
  if (at('fill') < at('read') || at('publish') < at('fill')) {
    throw new MigraceError('BAD_INPUT', 'a model schedule must read, then fill, then publish');
  }
  return out;
}

function ramObject(remainingFilled: boolean): Record<string, unknown> {
  // populate_ram_info() leaves ram->remaining at 0 when it sees COMPLETED.
  return {
    transferred: 52035678,
    remaining: remainingFilled ? 81629184 : 0,
    total: 1091379200,
    duplicate: 241063,
    skipped: 0,
    normal: 12608,
    'normal-bytes': 51642368,
    'dirty-pages-rate': 0,
    mbps: 268.3,
    'dirty-sync-count': 1,
    'postcopy-requests': 0,
    'page-size': 4096,
    'multifd-bytes': 0,
    'pages-per-second': 8192,
  };
}

/** Run one schedule of steps from `initial` for one variant. */
export function runModel(variant: ModelVariant, initial: string, steps: readonly ModelStep[]): ModelOutcome {
  let state = normalizeStatusName(initial);
  let branch = state;
  let published: string | null = null;
  let returned = false;
  let fillSaw: string | null = null;
  const applied: boolean[] = [];
  const reply: Record<string, unknown> = {};

  for (const step of normalize(steps)) {
    switch (step.kind) {
      case 'transition': {
        const ok = state === normalizeStatusName(step.old);
        if (ok) state = normalizeStatusName(step.new);
        applied.push(ok);
        break;
      }
      case 'read':
        branch = state;
        // "no migration has happened ever": return before touching info.
        returned = branch === 'none';
        break;
      case 'fill':
        if (returned) break;
        if (ACTIVE_LIKE.has(branch) || branch === 'completed') {
          fillSaw = state;
          reply['total-time'] = 0;
          reply['setup-time'] = 12;
          if (state === 'completed') reply['downtime'] = 35;
          else reply['expected-downtime'] = 300;
          reply['ram'] = ramObject(state !== 'completed');
        }
        break;
      case 'publish':
        if (returned) break;
        published = variant === 'unpatched' ? state : branch;
        break;
    }
  }

  const body: Record<string, unknown> = published === null ? {} : { status: published, ...reply };
  const facts = replyFacts(body);
  const judged = judgeFacts(facts, 'query-migrate', null);
  const shape = judged.shape;
  return {
    variant,
    initial: normalizeStatusName(initial),
    final: state,
    branch,
    published,
    ram: facts.has_ram,
    time_fields: facts.time_fields,
    fields: facts.fields,
    fill_saw: fillSaw,
    applied,
    reply: body,
    verdict: judged.verdict,
    shape,
    // No shape check means `{}` (NONE) or a status QEMU fills nothing we track for.
    consistent: shape === null || (shape.missing.length === 0 && shape.foreign.length === 0),
  };
}

/** Both variants for the same schedule. */
export function runBoth(initial: string, steps: readonly ModelStep[]): { unpatched: ModelOutcome; patched: ModelOutcome } {
  return { unpatched: runModel('unpatched', initial, steps), patched: runModel('patched', initial, steps) };
}

/** What an undisturbed query sees in `status`: no transition anywhere. */
export function undisturbed(status: string): ModelOutcome {
  return runModel('patched', status, [{ kind: 'read' }, { kind: 'fill' }, { kind: 'publish' }]);
}

/** Same reply as far as the client can tell: status, ram, time fields. */
export function sameReply(a: ModelOutcome, b: ModelOutcome): boolean {
  return a.published === b.published && a.fields.join() === b.fields.join();
}
