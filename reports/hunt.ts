import { CONTROL, type HuntCell, type HuntView } from '../analyzer/hunt-record.js';
import { escapeHtml, h, htmlPage } from './html.js';
import { cleanText, codeSpan, printableShellWord } from './safe-text.js';

/*
 * A hunt's matrix, rendered three ways: plain text for a terminal, Markdown
 * that pastes into a bug (GitLab, GitHub), and a self-contained HTML page
 * whose broken cells link to their own timelines. Pure: a HuntView in, text
 * out; the caller says where each cell's timeline page is.
 *
 * Parts: the matrix as rows of short cell texts (shared by all three); the
 * facts under it (build, scenarios, oracle, read points and their
 * cross-check, broken cells with their schedule and replay command,
 * infeasible cells with their lock-wait stack); the three renderers.
 * reports/hunt-diff.ts renders two hunts cell by cell with the same styles.
 */

/** The matrix's columns: the transitions, then the controls. */
function columnKeys(v: HuntView): string[] {
  return [...v.data.columns.map((c) => c.key), CONTROL];
}

function cellAt(v: HuntView, row: string, col: string): HuntCell | undefined {
  return v.cells.find((c) => c.row === row && c.col === col);
}

/** A cell in a few words: its class, and for a broken one what differs. */
export function cellText(c: HuntCell | undefined): string {
  if (!c) return 'not run';
  return c.class === 'broken' && c.data.note ? `broken: ${c.data.note}` : c.class;
}

/** The replay command of a broken cell, from the hunt's invocation. */
export function replayCommand(v: HuntView, c: HuntCell): string | null {
  if (!c.data.schedule_file) return null;
  const inv = (v.data.options.invocation ?? {}) as Record<string, unknown>;
  // Printable, and still the stored bytes: a path with a control character pastes as $'...\x1b...', never U+FFFD.
  const q = printableShellWord;
  const words = ['migrace', 'replay', '--schedule', q(c.data.schedule_file)];
  if (v.data.kind === 'minimig') {
    words.push('--target', 'minimig');
    if (typeof inv.binary === 'string') words.push('--binary', q(inv.binary));
    else if (inv.patched) words.push('--patched');
    if (typeof inv.setup_ms === 'number') words.push('--setup-ms', String(inv.setup_ms));
    if (typeof inv.transfer_ms === 'number') words.push('--transfer-ms', String(inv.transfer_ms));
    if (inv.bql_completion) words.push('--bql-completion');
  } else {
    const qemu = typeof inv.qemu === 'string' ? inv.qemu : v.target.binary ?? '/path/to/qemu-system-x86_64';
    words.push('--target', 'qemu', '--qemu', q(qemu));
    if (typeof inv.profile === 'string') words.push('--profile', q(inv.profile));
    if (typeof inv.memory === 'string' && inv.memory !== '128') words.push('--memory', q(inv.memory));
  }
  return words.join(' ');
}

/** "minimig (unpatched), /path/minimig, build-id ...": which build a hunt ran on. Not cleaned. */
export function buildLine(v: HuntView): string {
  const t = v.target;
  const what = t.kind === 'minimig' ? `minimig (${t.variant})` : `QEMU ${t.qemu_version ?? '?'} (${t.variant})`;
  return `${what}, ${t.binary ?? '?'}${v.data.build_id ? `, build-id ${v.data.build_id}` : ''}`;
}

function counts(v: HuntView): string {
  const by = new Map<string, number>();
  for (const c of v.cells) by.set(c.class, (by.get(c.class) ?? 0) + 1);
  return [...by].map(([k, n]) => `${n} ${k}`).join(', ') || 'no cells';
}

interface Facts {
  title: string;
  summary: string[];
  scenarios: string[];
  oracle: string[];
  points: string[];
  crossCheck: string[];
  broken: Array<{ cell: HuntCell; lines: string[] }>;
  infeasible: string[];
  timeouts: string[];
}

function factsOf(v: HuntView): Facts {
  const d = v.data;
  const timing = d.timing ? `; ${(d.timing.total_ms / 1000).toFixed(1)} s in all (baselines ${(d.timing.baselines_ms / 1000).toFixed(1)} s, cells ${(d.timing.cells_ms / 1000).toFixed(1)} s)` : '';
  const summary = [
    `build: ${buildLine(v)}`,
    `state: ${v.state}${v.error ? ` (${v.error})` : ''}; ${v.cells.length} cells: ${counts(v)}${timing}`,
  ];
  const scenarios = d.baselines.map((b) => b.status === 'ok'
    ? `${b.scenario}: ${b.transitions.map((t) => `${t.old} -> ${t.new} (${t.thread.name ?? `thread ${t.thread.tid}`})`).join(', ') || 'no transition'}; ${b.replies} undisturbed replies (session ${b.session_id})`
    : `${b.scenario}: ${b.status}: ${b.reason ?? 'no reason given'}`);
  const oracle = Object.values(d.oracle).map((s) => `${s.status} (${s.replies} replies): always ${s.always.join(', ') || 'nothing'}${s.sometimes.length ? `; sometimes ${s.sometimes.join(', ')}` : ''}; old libvirt ${s.old_libvirt}, current ${s.current_libvirt}`);
  const points = d.rows.map((r) => `${r.name}: ${r.instruction ?? r.probe.locations.join(', ')}${r.function ? ` in ${r.function}` : ''}, held at ${r.probe.locations.join(', ')} with ${Object.values(r.probe.values).join(', ')}; found ${r.found.join(' and ')}${r.states.length ? ` (executed in ${r.states.join(', ')})` : ''}`);
  const crossCheck = d.trace === null
    ? ['not run (the hunt ran without --dynamic)']
    : d.cross_check.map((c) => `${c.point}: ${c.static && c.dynamic ? 'both' : c.static ? 'static only' : 'dynamic only'}${c.note ? ` -- ${c.note}` : ''}`);
  if (d.trace) crossCheck.push(`traces: ${d.trace.runs.map((r) => `${r.state} ${r.steps} instructions in ${(r.ms / 1000).toFixed(1)} s${r.truncated ? ` (cut: ${r.truncated})` : ''}`).join('; ')}`);
  const broken = v.cells.filter((c) => c.class === 'broken').map((c) => ({
    cell: c,
    lines: [
      `${c.row} x ${c.col}: ${c.data.note ?? ''}`,
      `reply: ${JSON.stringify(c.data.reply)}`,
      ...(c.session_id ? [`session ${c.session_id}`] : []),
      ...(c.data.schedule_file ? [`schedule: ${c.data.schedule_file}`] : []),
      ...(replayCommand(v, c) ? [`replay: ${replayCommand(v, c)}`] : []),
    ],
  }));
  const infeasible = v.cells.filter((c) => c.class === 'infeasible').map((c) => `${c.row} x ${c.col}: ${c.data.reason ?? c.data.note ?? ''}`);
  const timeouts = v.cells.filter((c) => c.class === 'timeout' || c.class === 'error').map((c) => `${c.row} x ${c.col}: ${c.class}: ${c.data.reason ?? c.data.note ?? ''}`);
  return { title: `migrace hunt ${v.id}: ${cleanText(v.label)}`, summary, scenarios, oracle, points, crossCheck, broken, infeasible, timeouts };
}

/* ------------------------------------------------------------------ */
/* Text */

function wrapCell(s: string, width: number): string[] {
  const out: string[] = [];
  let line = '';
  for (const w of s.split(' ')) {
    if (line && line.length + 1 + w.length > width) {
      out.push(line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) out.push(line);
  return out.length ? out : [''];
}

/** The matrix as a fixed-width table; long cells wrap inside their column. */
export function renderHuntMatrix(v: HuntView, opts: { cellWidth?: number } = {}): string {
  const width = opts.cellWidth ?? 28;
  const cols = columnKeys(v);
  const header = ['read point', ...cols];
  const rows = v.data.rows.map((r) => [r.name, ...cols.map((c) => cellText(cellAt(v, r.name, c)))]);
  const wrapped = [header, ...rows].map((r) => r.map((c, i) => wrapCell(cleanText(c), i === 0 ? 40 : width)));
  const widths = header.map((_, i) => Math.max(...wrapped.map((r) => Math.max(...r[i].map((l) => l.length)))));
  const out: string[] = [];
  wrapped.forEach((r, ri) => {
    const height = Math.max(...r.map((c) => c.length));
    for (let k = 0; k < height; k++) out.push(r.map((c, i) => (c[k] ?? '').padEnd(widths[i])).join('  ').trimEnd());
    if (ri === 0) out.push(widths.map((w) => '-'.repeat(w)).join('  '));
  });
  return out.join('\n');
}

function section(title: string, lines: string[]): string[] {
  return lines.length ? ['', `${title}:`, ...lines.map((l) => `  ${cleanText(l)}`)] : [];
}

export function renderHuntText(v: HuntView): string {
  const f = factsOf(v);
  return [
    f.title,
    ...f.summary.map(cleanText),
    '',
    renderHuntMatrix(v),
    ...section('scenarios (undisturbed baselines)', f.scenarios),
    ...section('undisturbed reply shapes', f.oracle),
    ...section('read points', f.points),
    ...section('static and dynamic read points', f.crossCheck),
    ...section('broken cells', f.broken.flatMap((b) => b.lines)),
    ...section('infeasible cells', f.infeasible),
    ...section('cells that timed out or failed', f.timeouts),
  ].join('\n');
}

/* ------------------------------------------------------------------ */
/* Markdown */

/** Cell text for a Markdown table: no pipe, no markup of its own. */
function md(s: string): string {
  return cleanText(s).replace(/[\\`*_[\]<>|]/g, (c) => `\\${c}`);
}

export function renderHuntMarkdown(v: HuntView): string {
  const f = factsOf(v);
  const cols = columnKeys(v);
  const list = (title: string, lines: string[]): string[] => (lines.length ? ['', `**${title}**`, '', ...lines.map((l) => `- ${md(l)}`)] : []);
  return [
    `### ${md(f.title)}`,
    '',
    ...f.summary.map((l) => `${md(l)}  `),
    '',
    `| read point | ${cols.map((c) => `\`${cleanText(c).replace(/`/g, "'")}\``).join(' | ')} |`,
    `|---|${cols.map(() => '---').join('|')}|`,
    ...v.data.rows.map((r) => `| \`${cleanText(r.name).replace(/`/g, "'")}\` | ${cols.map((c) => {
      const cell = cellAt(v, r.name, c);
      const text = md(cellText(cell));
      return cell?.class === 'broken' ? `**${text}**` : text;
    }).join(' | ')} |`),
    ...list('Scenarios (undisturbed baselines)', f.scenarios),
    ...list('Undisturbed reply shapes', f.oracle),
    ...list('Read points', f.points),
    ...list('Static and dynamic read points', f.crossCheck),
    ...(f.broken.length ? ['', '**Broken cells**', '', ...f.broken.flatMap((b) => [
      `- ${md(b.lines[0])}`,
      // A code span as long as it must be: the replay command keeps its backticks, as pasted.
      ...b.lines.slice(1).map((l) => `  - ${codeSpan(l)}`),
    ])] : []),
    ...list('Infeasible cells', f.infeasible),
    ...list('Cells that timed out or failed', f.timeouts),
  ].join('\n');
}

/* ------------------------------------------------------------------ */
/* HTML */

/** The hunt pages' styles: the matrix page's and the hunt diff's (reports/hunt-diff.ts). */
export const HUNT_CSS = `
:root { --ink:#202124; --muted:#5f6368; --line:#dadce0; }
body { margin: 0; padding: 10px 24px; font: 14px/1.45 system-ui, sans-serif; color: var(--ink); }
h1 { font-size: 20px; } h2 { font-size: 16px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
code, pre, .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
table.matrix { border-collapse: collapse; margin: 8px 0; }
table.matrix th, table.matrix td { border: 1px solid var(--line); padding: 4px 8px; vertical-align: top; max-width: 22em; }
table.matrix th { background: #f8f9fa; font-weight: 600; text-align: left; }
td.broken { background: #fce8e6; } td.consistent { background: #e6f4ea; }
td.infeasible { background: #fef7e0; } td.unreachable { background: #f1f3f4; color: var(--muted); }
td.timeout, td.error { background: #fde2f3; }
td .cls { font-weight: 600; } td .note { display: block; font-size: 12px; }
ul.facts li { overflow-wrap: anywhere; } .muted { color: var(--muted); }
`;

export interface HuntHtmlOptions {
  /** Where each cell's own timeline page is (relative to the matrix page), by session id. */
  timelineHref?: (sessionId: number) => string | null;
}

function cellHtml(v: HuntView, row: string, col: string, opts: HuntHtmlOptions): string {
  const c = cellAt(v, row, col);
  if (!c) return '<td class="not-run"><span class="cls">not run</span></td>';
  const href = c.session_id !== null ? opts.timelineHref?.(c.session_id) ?? null : null;
  const cls = escapeHtml(c.class);
  const label = href ? `<a href="${escapeHtml(href)}">${cls}</a>` : cls;
  const note = c.data.note ? `<span class="note">${h(c.data.note)}</span>` : '';
  const title = c.data.reason ? ` title="${h(c.data.reason)}"` : '';
  return `<td class="${cls}" data-row="${h(row)}" data-col="${h(col)}"${title}><span class="cls">${label}</span>${note}</td>`;
}

function listHtml(title: string, lines: string[]): string {
  return lines.length ? `<h2>${escapeHtml(title)}</h2>\n<ul class="facts">${lines.map((l) => `<li>${h(l)}</li>`).join('\n')}</ul>` : '';
}

export function renderHuntHtml(v: HuntView, opts: HuntHtmlOptions = {}): string {
  const f = factsOf(v);
  const cols = columnKeys(v);
  const head = `<tr><th>read point</th>${cols.map((c) => `<th class="mono">${h(c)}</th>`).join('')}</tr>`;
  const body = v.data.rows.map((r) => `<tr><th class="mono">${h(r.name)}</th>${cols.map((c) => cellHtml(v, r.name, c, opts)).join('')}</tr>`).join('\n');
  const broken = f.broken.map((b) => `<li>${b.lines.map((l, i) => (i === 0 ? h(l) : `<br><code>${h(l)}</code>`)).join('')}</li>`).join('\n');
  return htmlPage(f.title, `<h1>${h(f.title)}</h1>
${f.summary.map((l) => `<p>${h(l)}</p>`).join('\n')}
<h2>Matrix</h2>
<p class="muted">Rows: the reads of the migration state on the query path, in the order queries execute them. Columns: the transitions the scenarios made, and a control that holds the reader with no transition. Each cell is one deterministic replay judged against the undisturbed replies of its status.</p>
<table class="matrix">
<thead>${head}</thead>
<tbody>
${body}
</tbody>
</table>
${listHtml('Scenarios (undisturbed baselines)', f.scenarios)}
${listHtml('Undisturbed reply shapes', f.oracle)}
${listHtml('Read points', f.points)}
${listHtml('Static and dynamic read points', f.crossCheck)}
${broken ? `<h2>Broken cells</h2>\n<ul class="facts">${broken}</ul>` : ''}
${listHtml('Infeasible cells', f.infeasible)}
${listHtml('Cells that timed out or failed', f.timeouts)}
<p class="muted">Generated by migrace from hunt ${v.id}. This file makes no network request.</p>`, { css: HUNT_CSS, script: '' });
}
