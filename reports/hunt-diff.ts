import { compareHunts, type Comparable, type Outcome } from '../analyzer/compare.js';
import type { HuntCell, HuntView } from '../analyzer/hunt-record.js';
import { escapeHtml, h, htmlPage } from './html.js';
import { buildLine, HUNT_CSS } from './hunt.js';
import { replyBrief } from './labels.js';
import { cleanText, truncate, wrapWords } from './safe-text.js';

/*
 * Two hunts cell by cell, typically one build unpatched and patched, or two
 * builds of QEMU. analyzer/compare.ts pairs the cells by what they are (read
 * point and transition by name); this file turns that into plain data
 * (diffHunts, which `diff --hunt --json` prints as it is) and renders it:
 * text that wraps at a width (renderHuntDiffText) and a self-contained page
 * (renderHuntDiffHtml). A paired cell whose outcome changed is one row:
 * "fill_source_migration_info+29 x setup -> active: broken (active without
 * ram; ...) -> consistent (setup)"; the cells whose outcome is the same are
 * counted; the read points, transitions and cells only one hunt has are
 * listed apart.
 */

export interface HuntSide {
  id: number;
  label: string;
  state: string;
  /** Which build it ran on (buildLine). */
  build: string;
  cells: number;
}

/** A cell's outcome as the diff shows it. */
export interface CellOutcome {
  class: string;
  note: string | null;
  reply: { status: string | null; has_ram: boolean } | null;
  /** Old libvirt fails the job on the cell's reply. */
  fails: boolean;
  session_id: number | null;
}

export interface PairedCell {
  read_point: string;
  transition: string;
  a: CellOutcome;
  b: CellOutcome;
}

export interface UnpairedCell {
  read_point: string;
  transition: string;
  outcome: CellOutcome;
  /** Why the other hunt has no such cell: it has no such read point, learned no such transition, or has both and did not run the cell (stopped early). */
  because: 'read point' | 'transition' | 'not run';
}

export interface OneSideOnly {
  read_points: string[];
  transitions: string[];
  cells: UnpairedCell[];
}

export interface HuntDiff {
  a: HuntSide;
  b: HuntSide;
  /** Paired cells whose outcome differs, in A's matrix order. */
  changed: PairedCell[];
  /** Paired cells with the same outcome. */
  unchanged: PairedCell[];
  only_a: OneSideOnly;
  only_b: OneSideOnly;
  /** One line: what changed between the two. */
  summary: string;
}

function sideOf(v: HuntView): HuntSide {
  return { id: v.id, label: v.label, state: v.state, build: buildLine(v), cells: v.cells.length };
}

function outcomeOf(x: Comparable<HuntCell>): CellOutcome {
  const o: Outcome = x.outcome;
  return { class: o.class, note: o.detail, reply: o.reply, fails: o.fails, session_id: x.item.session_id };
}

function oneSide(cells: Comparable<HuntCell>[], readPoints: string[], transitions: string[]): OneSideOnly {
  return {
    read_points: readPoints,
    transitions,
    cells: cells.map((x) => ({
      read_point: x.identity.readPoint ?? '',
      transition: x.identity.transition,
      outcome: outcomeOf(x),
      because: readPoints.includes(x.identity.readPoint ?? '') ? 'read point' : transitions.includes(x.identity.transition) ? 'transition' : 'not run',
    })),
  };
}

/** Compare two hunts. Pure. */
export function diffHunts(a: HuntView, b: HuntView): HuntDiff {
  const c = compareHunts(a, b);
  const paired = c.cells.pairs.map((p) => ({
    changed: p.changed,
    cell: { read_point: p.a.identity.readPoint ?? '', transition: p.a.identity.transition, a: outcomeOf(p.a), b: outcomeOf(p.b) },
  }));
  const changed = paired.filter((p) => p.changed).map((p) => p.cell);
  const unchanged = paired.filter((p) => !p.changed).map((p) => p.cell);
  const onlyA = oneSide(c.cells.onlyA, c.readPoints.onlyA, c.transitions.onlyA);
  const onlyB = oneSide(c.cells.onlyB, c.readPoints.onlyB, c.transitions.onlyB);
  const n = (k: number, what: string): string => `${k} ${what}${k === 1 ? '' : 's'}`;
  const apart = onlyA.cells.length + onlyB.cells.length;
  const summary = paired.length === 0
    ? `The hunts share no cell: ${n(onlyA.cells.length, 'cell')} only in A, ${onlyB.cells.length} only in B.`
    : changed.length === 0 && apart === 0
    ? `The hunts agree on every one of their ${n(paired.length, 'cell')}.`
    : `${changed.length} of ${n(paired.length, 'paired cell')} changed, ${unchanged.length} the same; ${n(onlyA.cells.length, 'cell')} only in A, ${onlyB.cells.length} only in B.`;
  return { a: sideOf(a), b: sideOf(b), changed, unchanged, only_a: onlyA, only_b: onlyB, summary };
}

/** "broken (active without ram; ...)", "consistent (setup)", "unreachable (the read point was not hit ...)". Cleaned. */
export function cellOutcomeText(o: CellOutcome): string {
  const why = o.note ?? (o.reply ? replyBrief(o.reply.status, o.reply.has_ram) : null);
  return cleanText(why ? `${o.class} (${why})` : o.class);
}

/** What a cell is: "fill_source_migration_info+29 x setup -> active". Cleaned. */
export function cellName(c: { read_point: string; transition: string }): string {
  return cleanText(`${c.read_point} x ${c.transition}`);
}

/** One row per changed cell: "RP x T: A's outcome -> B's". Cleaned. */
export function changedCellText(p: PairedCell): string {
  return `${cellName(p)}: ${cellOutcomeText(p.a)} -> ${cellOutcomeText(p.b)}`;
}

function unpairedText(u: UnpairedCell): string {
  return `${cellName(u)}: ${cellOutcomeText(u.outcome)}`;
}

const BECAUSE: Record<UnpairedCell['because'], (other: string) => string> = {
  'read point': (other) => `${other} has no such read point`,
  transition: (other) => `${other} learned no such transition`,
  'not run': (other) => `${other} did not run it`,
};

/** `head` and the items joined by ", ", wrapped between items only ("active -> failed" stays on one line). Cleaned. */
function listLines(head: string, items: string[], width: number, indent = '     '): string[] {
  const out: string[] = [];
  let line = cleanText(head);
  items.map(cleanText).forEach((item, i) => {
    const piece = i < items.length - 1 ? `${item},` : item;
    const sep = i === 0 ? '' : ' ';
    if (i > 0 && [...line].length + sep.length + [...piece].length > width) {
      out.push(line);
      line = indent + piece;
    } else line += sep + piece;
  });
  out.push(line);
  return out;
}

/** Plain text, `columns` wide: the two builds, the summary, the changed cells, the unchanged count, what only one hunt has. */
export function renderHuntDiffText(d: HuntDiff, opts: { columns?: number } = {}): string {
  const width = opts.columns ?? 80;
  const lines: string[] = [];
  const wrap = (s: string, first = '', indent = '     '): void => {
    wrapWords(cleanText(s), Math.max(10, width - indent.length)).forEach((l, i) => lines.push((i === 0 ? first : indent) + l));
  };
  wrap(`migrace diff: A = hunt ${d.a.id} "${d.a.label}" vs B = hunt ${d.b.id} "${d.b.label}"`, '', '  ');
  lines.push('');
  for (const [tag, s] of [['A', d.a], ['B', d.b]] as const) wrap(`${tag}: ${s.build}; ${s.state}, ${s.cells} cells`, '', '   ');
  lines.push('');
  wrap(d.summary, '', '');
  lines.push('');
  lines.push('Cells whose outcome changed (read point x transition: A -> B):');
  if (d.changed.length === 0) lines.push('  (none)');
  for (const p of d.changed) wrap(changedCellText(p), '  ');
  lines.push(`Cells with the same outcome in both: ${d.unchanged.length}`);
  for (const [tag, side, hunt, other] of [['A', d.only_a, d.a, `hunt ${d.b.id}`], ['B', d.only_b, d.b, `hunt ${d.a.id}`]] as const) {
    lines.push(`Only in ${tag} (hunt ${hunt.id}):`);
    if (side.read_points.length === 0 && side.transitions.length === 0 && side.cells.length === 0) lines.push('  (none)');
    if (side.read_points.length) lines.push(...listLines(`  read points ${other} does not have: `, side.read_points, width));
    if (side.transitions.length) lines.push(...listLines(`  transitions ${other} did not learn: `, side.transitions, width));
    const notRun = side.cells.filter((u) => u.because === 'not run');
    if (side.cells.length) wrap(`${side.cells.length} cells${notRun.length ? `, ${notRun.length} of them where ${BECAUSE['not run'](other)}` : ''}:`, '  ');
    for (const u of side.cells) wrap(unpairedText(u), '    ', '       ');
  }
  return `${lines.map((l) => truncate(l, width)).join('\n')}\n`;
}

/* ------------------------------------------------------------------ */
/* HTML */

const DIFF_CSS = `${HUNT_CSS}
table.matrix td.mono, table.matrix th.mono, p code { white-space: nowrap; }
details { margin: 8px 0; } summary { cursor: pointer; }
`;

function outcomeTd(o: CellOutcome): string {
  const cls = escapeHtml(cleanText(o.class));
  const why = o.note ?? (o.reply ? replyBrief(o.reply.status, o.reply.has_ram) : null);
  const session = o.session_id !== null ? ` <span class="muted">(session ${o.session_id})</span>` : '';
  return `<td class="${cls}"><span class="cls">${cls}</span>${session}${why ? `<span class="note">${h(why)}</span>` : ''}</td>`;
}

function pairedTable(d: HuntDiff, cells: PairedCell[]): string {
  const rows = cells.map((p) => `<tr data-row="${h(p.read_point)}" data-col="${h(p.transition)}"><td class="mono">${h(p.read_point)}</td><td class="mono">${h(p.transition)}</td>${outcomeTd(p.a)}${outcomeTd(p.b)}</tr>`);
  return `<table class="matrix">
<thead><tr><th>read point</th><th>transition</th><th>A: hunt ${d.a.id}</th><th>B: hunt ${d.b.id}</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody>
</table>`;
}

function onlyHtml(tag: string, side: OneSideOnly, hunt: HuntSide, other: string): string {
  const parts: string[] = [];
  if (side.read_points.length) parts.push(`<p>Read points ${escapeHtml(other)} does not have: ${side.read_points.map((r) => `<code>${h(r)}</code>`).join(', ')}</p>`);
  if (side.transitions.length) parts.push(`<p>Transitions ${escapeHtml(other)} did not learn: ${side.transitions.map((t) => `<code>${h(t)}</code>`).join(', ')}</p>`);
  if (side.cells.length) {
    const rows = side.cells.map((u) => `<tr data-row="${h(u.read_point)}" data-col="${h(u.transition)}"><td class="mono">${h(u.read_point)}</td><td class="mono">${h(u.transition)}</td>${outcomeTd(u.outcome)}<td>${escapeHtml(BECAUSE[u.because](other))}</td></tr>`);
    parts.push(`<table class="matrix">
<thead><tr><th>read point</th><th>transition</th><th>${escapeHtml(tag)}: hunt ${hunt.id}</th><th>why unpaired</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody>
</table>`);
  }
  return `<h2>Only in ${escapeHtml(tag)} (hunt ${hunt.id})</h2>\n${parts.join('\n') || '<p class="muted">none</p>'}`;
}

/** A self-contained page: no script, no network; the hunt pages' styles. */
export function renderHuntDiffHtml(d: HuntDiff): string {
  const title = `migrace diff: hunt ${d.a.id} vs hunt ${d.b.id}`;
  const side = (tag: string, s: HuntSide): string => `<p><strong>${tag}: hunt ${s.id}</strong> <span class="mono">${h(s.label)}</span>: ${h(s.build)}; ${h(s.state)}, ${s.cells} cells</p>`;
  return htmlPage(title, `<h1>${escapeHtml(title)}</h1>
${side('A', d.a)}
${side('B', d.b)}
<p>${h(d.summary)}</p>
<h2>Cells whose outcome changed</h2>
<p class="muted">Paired by what they are: the read point and the transition, by name, so hunts of builds with other read points or transitions pair what they share.</p>
${d.changed.length ? pairedTable(d, d.changed) : '<p class="muted">none</p>'}
<h2>Cells with the same outcome in both: ${d.unchanged.length}</h2>
${d.unchanged.length ? `<details><summary>list them</summary>\n${pairedTable(d, d.unchanged)}\n</details>` : ''}
${onlyHtml('A', d.only_a, d.a, `hunt ${d.b.id}`)}
${onlyHtml('B', d.only_b, d.b, `hunt ${d.a.id}`)}
<p class="muted">Generated by migrace from hunts ${d.a.id} and ${d.b.id}. This file makes no network request.</p>`, { css: DIFF_CSS, script: '' });
}
