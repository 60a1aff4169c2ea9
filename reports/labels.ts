import type { Session, StateValue, TraceEvent } from '../trace/schema.js';
import { RAM_REQUIRED_BY_OLD_LIBVIRT, normalizeStatusName, statusSourceOf } from '../trace/status.js';
import { stateName } from '../analyzer/interleavings.js';
import { cleanText, truncate } from './safe-text.js';
import type { Bin, Clock, FindingView, Lane, Mark } from './timeline.js';

/*
 * What a report calls things, the same in every renderer: state names,
 * thread lanes, events, replies and durations (short labels), and the
 * tooltips of marks and density bins (the long form). Every piece of trace
 * text comes out cleaned (safe-text.ts).
 */

type StatusTable = Session['target']['status_table'];

/** "12 ns", "3.4 us", "12.345 ms", "1.234 s". ASCII so it pastes anywhere. */
export function formatDuration(ns: number): string {
  const a = Math.abs(ns);
  if (a < 1_000) return `${Math.round(ns)} ns`;
  if (a < 1_000_000) return `${(ns / 1_000).toFixed(1)} us`;
  if (a < 1_000_000_000) return `${(ns / 1_000_000).toFixed(3)} ms`;
  return `${(ns / 1_000_000_000).toFixed(3)} s`;
}

/**
 * A thread lane's label: `name (LWP n)`, cleaned and never empty
 * ("unknown thread (LWP n)"). Sentences name threads with the analyzer's
 * own label instead ("LWP n", "an unknown thread").
 */
export function laneLabel(t: { name: string | null; lwp: number | null; tid: number | null }): string {
  const name = t.name ? cleanText(t.name) : t.tid !== null ? `thread ${t.tid}` : 'unknown thread';
  if (t.lwp !== null) return `${name} (LWP ${t.lwp})`;
  return name;
}

/** The analyzer's state name, cleaned for display, and "?" where it has none. */
export function displayStateName(v: StateValue | null | undefined, table: StatusTable): string {
  return cleanText(stateName(v, table) ?? '?');
}

function needsRam(status: string | null): boolean {
  return status !== null && RAM_REQUIRED_BY_OLD_LIBVIRT.has(normalizeStatusName(status));
}

/** What a reply said, briefly: `active, no ram`, `setup`, `{} (no status)`. */
export function replyBrief(status: string | null, hasRam: boolean): string {
  if (status === null) return '{} (no status)';
  const s = cleanText(normalizeStatusName(status));
  if (needsRam(s) || hasRam) return `${s}, ${hasRam ? 'ram' : 'no ram'}`;
  return s;
}

export function replyLabel(status: string | null, hasRam: boolean): string {
  return `reply ${replyBrief(status, hasRam)}`;
}

/** One short label per event: `setup -> active`, `read setup`, `publish active`, `reply active, no ram`. */
export function eventLabel(e: TraceEvent, table: StatusTable): string {
  switch (e.kind) {
    case 'transition':
      return `${displayStateName(e.data.old, table)} -> ${displayStateName(e.data.new, table)}`;
    case 'read':
      return `read ${displayStateName(e.data.value, table)}`;
    case 'publish':
      return `publish ${displayStateName(e.data.value, table)}`;
    case 'query-begin':
      return 'query begin';
    case 'query-end':
      return 'query end';
    case 'reply':
      return replyLabel(e.data.status, e.data.has_ram);
    case 'hold':
      return `hold ${cleanText(e.data.role)}`;
    case 'release':
      return `release ${cleanText(e.data.role)}`;
    case 'note':
      return `note: ${cleanText(e.data.text)}`;
  }
}

function valueText(v: StateValue | null, table: StatusTable): string {
  if (!v) return '?';
  const name = displayStateName(v, table);
  return v.value !== null ? `${name} (${v.value})` : name;
}

function compactJson(body: unknown, max: number): string {
  let s: string;
  try {
    s = typeof body === 'string' ? body : JSON.stringify(body) ?? 'undefined';
  } catch {
    s = String(body);
  }
  return truncate(cleanText(s), max);
}

export function binTooltip(b: Bin, lanes: Lane[], clock: Clock): string {
  const lines = [`${b.count} events #${b.fromSeq}..#${b.toSeq} (summarized)`];
  if (clock === 'time') lines.push(`t=+${formatDuration(b.clock0)} .. +${formatDuration(b.clock1)}`);
  b.perLane.forEach((c, i) => {
    if (c > 0) lines.push(`${lanes[i]!.label}: ${c}`);
  });
  const kinds = Object.entries(b.kinds).map(([k, v]) => `${k} ${v}`).join(', ');
  if (kinds) lines.push(kinds);
  return lines.join('\n');
}

export function markTooltip(
  m: Mark, total: number, lanes: Lane[], clock: Clock, t0: number | null, table: StatusTable, views: FindingView[],
): string {
  const e = m.event;
  const lines: string[] = [];
  const when = clock === 'time' && e.t_ns !== null && t0 !== null ? `t=+${formatDuration(e.t_ns - t0)}` : 'no clock';
  // Dots (events outside the story) get a short tooltip: a 5,000-event
  // drawing carries one per mark, and the event table has the rest.
  const brief = !m.labelled;
  lines.push(brief ? `#${e.seq} ${e.kind}  ${when}` : `#${e.seq} ${e.kind}  ${when}  (event ${m.index + 1} of ${total})`);
  lines.push(`thread: ${lanes[m.lane]!.label}`);
  if (brief) {
    lines.push(m.label);
    return lines.join('\n');
  }
  const loc = [
    e.func ? cleanText(e.func) : null,
    e.file ? `${cleanText(e.file)}${e.line !== null ? `:${e.line}` : ''}` : e.line !== null ? `line ${e.line}` : null,
    e.pc ? `pc ${cleanText(e.pc)}` : null,
  ].filter(Boolean);
  if (loc.length) lines.push(`at: ${loc.join(' ')}`);
  if (e.probe) lines.push(`probe: ${cleanText(e.probe)}`);
  switch (e.kind) {
    case 'transition':
      lines.push(`${valueText(e.data.old, table)} -> ${valueText(e.data.new, table)}${e.data.addr ? ` at ${cleanText(e.data.addr)}` : ''}`);
      break;
    case 'read':
    case 'publish':
      lines.push(`value: ${valueText(e.data.value, table)}`);
      break;
    case 'query-begin':
    case 'query-end':
      lines.push(`query: ${cleanText(e.data.query)}`);
      break;
    case 'reply':
      lines.push(`${cleanText(e.data.command)}${e.data.query ? ` (query ${cleanText(e.data.query)})` : ''}: ${compactJson(e.data.body, 300)}`);
      break;
    case 'hold':
    case 'release':
      lines.push(`role: ${cleanText(e.data.role)}; ${cleanText(e.data.reason)}`);
      break;
    case 'note':
      lines.push(truncate(cleanText(e.data.text), 300));
      break;
  }
  for (const id of m.findings) {
    const v = views.find((f) => f.id === id);
    if (!v) continue;
    const roles = m.roles.length ? m.roles.join(', ') : 'evidence';
    lines.push(`${id} (${v.cls}): ${roles}`);
  }
  if (m.verdict) lines.push(m.verdict.text);
  return lines.join('\n');
}

/** Where a session's state names came from, for a report's facts. */
export function statusNamesText(t: Session['target']): string {
  return statusSourceOf(t) === 'binary'
    ? `from the binary (MigrationStatus_lookup)${t.status_names ? `, as version table ${t.status_table}` : ''}`
    : `version table ${t.status_table}`;
}
