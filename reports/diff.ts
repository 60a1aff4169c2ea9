import type { Session } from '../trace/schema.js';
import type { Finding } from '../analyzer/types.js';
import {
  compareSessions, type Comparable, type Outcome, type Pair, type QueryOutcome, type QueryPair, type SessionBundle,
} from '../analyzer/compare.js';
import { layoutTimeline, type LayoutOptions, type TimelineLayout, type VerdictKind } from './timeline.js';
import { replyBrief } from './labels.js';
import { reproduction, scheduleJsonLines, type Reproduction } from './reproduce.js';
import { cleanText, truncate, wrapWords } from './safe-text.js';
import { renderSvg } from './svg.js';
import { findingsHtml, h, htmlPage, reproduceHtml, timelineHtml } from './html.js';
import { swimlaneDiagram } from './text.js';

/*
 * Two sessions side by side, typically the same schedule on an unpatched and
 * a patched build. analyzer/compare.ts does the comparison (findings paired
 * by what they are, queries by order); this file adds each side's verdict and
 * reproduce command (diffSessions) and renders it all: 80-column text
 * (renderDiffText) and a page with the two timelines (renderDiffHtml). A
 * pair whose outcome changed is one row: "setup -> active inside q1:
 * manifested (active, no ram) -> benign (setup)".
 */

export interface SideSummary {
  session: { id: number; label: string; origin: string; state: string };
  target: Session['target'];
  verdict: { kind: VerdictKind; sentence: string };
  findings: number;
  queries: number;
  /** Its schedule, when it replayed one from a file, is saved as schedule-a.json / schedule-b.json. */
  reproduce: Reproduction;
}

export interface SessionDiff {
  a: SideSummary;
  b: SideSummary;
  /** Findings that are the same interleaving on both sides, in A's order. */
  pairs: Pair<Finding>[];
  onlyA: Comparable<Finding>[];
  onlyB: Comparable<Finding>[];
  queries: QueryPair[];
  /** Queries whose outcome differs. */
  differing: number;
  /** One line: what changed between the two. */
  summary: string;
}

function side(tag: 'a' | 'b', bundle: SessionBundle, layout: TimelineLayout, queries: number): SideSummary {
  const s = bundle.session;
  return {
    session: { id: s.id, label: s.label, origin: s.origin, state: s.state },
    target: s.target,
    verdict: layout.verdict,
    findings: bundle.analysis?.findings.length ?? 0,
    queries,
    reproduce: reproduction(s, layout.findings[0]?.finding ?? null, { scheduleFile: `schedule-${tag}.json` }),
  };
}

function diffWithLayouts(a: SessionBundle, b: SessionBundle, la: TimelineLayout, lb: TimelineLayout): SessionDiff {
  const c = compareSessions(a, b);
  const { pairs, onlyA, onlyB } = c.findings;
  const sa = side('a', a, la, c.queries.filter((q) => q.a).length);
  const sb = side('b', b, lb, c.queries.filter((q) => q.b).length);
  const changed = pairs.filter((p) => p.changed).length;
  const name = (s: SideSummary): string => `session ${s.session.id} (${s.target.variant})`;
  const summary = sa.verdict.kind === sb.verdict.kind && changed === 0 && onlyA.length === 0 && onlyB.length === 0
    ? `Both sessions agree: ${sa.verdict.kind}; ${c.differing} of ${c.queries.length} queries differ in outcome.`
    : `${name(sa)}: ${sa.verdict.kind}; ${name(sb)}: ${sb.verdict.kind}. ${changed} ${changed === 1 ? 'finding' : 'findings'} with another outcome, ${pairs.length - changed} the same, ${onlyA.length} only in A, ${onlyB.length} only in B; ${c.differing} of ${c.queries.length} queries differ in what was published or replied.`;
  return { a: sa, b: sb, pairs, onlyA, onlyB, queries: c.queries, differing: c.differing, summary };
}

/** Compare two sessions. Pure. */
export function diffSessions(a: SessionBundle, b: SessionBundle, opts: LayoutOptions = {}): SessionDiff {
  // The layouts give the verdict sentences; they are cheap next to the events pass.
  const la = layoutTimeline(a.session, a.threads, a.events, a.analysis, opts);
  const lb = layoutTimeline(b.session, b.threads, b.events, b.analysis, opts);
  return diffWithLayouts(a, b, la, lb);
}

/** "manifested (active, no ram)", "benign (setup)". Cleaned. */
function findingOutcomeText(o: Outcome): string {
  return `${cleanText(o.class)} (${o.reply ? replyBrief(o.reply.status, o.reply.has_ram) : 'no reply'})`;
}

/** What the paired findings are: "setup -> active inside q1" (q1 / q3 when the positions differ). Cleaned. */
function pairSubject(p: Pair<Finding>): string {
  const id = p.a.identity;
  const where = id.query === null ? '' : p.samePlace ? ` inside q${id.query}` : ` inside q${id.query} / q${p.b.identity.query ?? '?'}`;
  const at = id.readPoint !== null && id.readPoint !== 'read' ? ` at ${id.readPoint}` : '';
  return cleanText(`${id.transition || 'a transition'}${where}${at}`);
}

/** One row per pair: the outcome change, or the outcome both share. */
export function pairText(p: Pair<Finding>): string {
  return p.changed
    ? `${pairSubject(p)}: ${findingOutcomeText(p.a.outcome)} -> ${findingOutcomeText(p.b.outcome)}`
    : `${pairSubject(p)}: ${findingOutcomeText(p.a.outcome)} on both`;
}

/** "setup/active -> active no ram FAILS": read/published -> reply. Cleaned. */
function queryOutcomeText(q: QueryOutcome | null): string {
  if (!q) return '-';
  const reply = q.reply ? `${q.reply.status ?? '{}'}${q.reply.has_ram ? '+ram' : q.reply.status === 'active' ? ' no ram' : ''}` : 'no reply';
  const fails = q.verdict && (q.verdict.old_libvirt === 'fails' || q.verdict.current_libvirt === 'fails') ? ' FAILS' : '';
  return cleanText(`${q.read ?? '?'}/${q.published ?? '?'} -> ${reply}${fails}`);
}

/** Pairs worth listing: every differing one, plus the first few, up to `max`. */
function shownPairs(d: SessionDiff, max: number): QueryPair[] {
  if (d.queries.length <= max) return d.queries;
  const picked = d.queries.filter((q, i) => !q.same || i < 5 || (q.a?.findings.length ?? 0) > 0 || (q.b?.findings.length ?? 0) > 0);
  return picked.slice(0, max);
}

function findingLine(x: Comparable<Finding>): string {
  return `${cleanText(x.item.id)} ${x.item.class}: ${cleanText(x.item.summary)}`;
}

/** Plain text, 80 columns: verdicts, findings on one side only, queries that differ, both diagrams. */
export function renderDiffText(a: SessionBundle, b: SessionBundle, opts: LayoutOptions & { columns?: number; diagrams?: boolean } = {}): string {
  const width = opts.columns ?? 80;
  const la = layoutTimeline(a.session, a.threads, a.events, a.analysis, opts);
  const lb = layoutTimeline(b.session, b.threads, b.events, b.analysis, opts);
  const d = diffWithLayouts(a, b, la, lb);
  const lines: string[] = [];
  const wrap = (s: string, indent = '  ', first = ''): void => {
    const w = Math.min(width - indent.length, width - first.length);
    wrapWords(cleanText(s), Math.max(10, w)).forEach((l, i) => lines.push((i === 0 ? first : indent) + l));
  };
  wrap(`migrace diff: A = session ${d.a.session.id} "${d.a.session.label}" vs B = session ${d.b.session.id} "${d.b.session.label}"`);
  lines.push('');
  for (const [tag, s] of [['A', d.a], ['B', d.b]] as const) {
    wrap(`${tag}: ${s.target.kind} ${s.target.binary ?? ''} (${s.target.variant}${s.target.qemu_version ? `, QEMU ${s.target.qemu_version}` : ''})`, '   ');
    wrap(s.verdict.sentence, '   ', '   ');
  }
  lines.push('');
  wrap(d.summary);
  lines.push('');
  lines.push('Findings in both, paired by what they are (reader, read point, crossing, query):');
  if (d.pairs.length === 0) lines.push('  (none)');
  for (const p of d.pairs) {
    wrap(pairText(p), '     ', '  ');
    wrap(`A ${p.a.item.id}, B ${p.b.item.id}; reader: ${p.a.identity.reader} thread`, '     ', '     ');
  }
  lines.push('Findings only in A:');
  if (d.onlyA.length === 0) lines.push('  (none)');
  for (const x of d.onlyA) wrap(findingLine(x), '     ', '  ');
  lines.push('Findings only in B:');
  if (d.onlyB.length === 0) lines.push('  (none)');
  for (const x of d.onlyB) wrap(findingLine(x), '     ', '  ');
  lines.push('');
  lines.push('Queries (read/published -> reply), paired by order:');
  const colW = Math.floor((width - 8) / 2);
  lines.push(`${'  #'.padEnd(6)}  ${'A'.padEnd(colW)}${'B'}`);
  for (const q of shownPairs(d, 40)) {
    const mark = q.same ? ' ' : '*';
    lines.push(truncate(`${mark}${String(q.n).padStart(4)}   ${truncate(queryOutcomeText(q.a), colW - 1).padEnd(colW)}${truncate(queryOutcomeText(q.b), colW)}`, width));
  }
  if (d.queries.length > 40) lines.push(`  (${d.queries.length} queries; ${d.differing} differ; differing ones and the first few are listed)`);
  lines.push('  * = the outcome differs');
  if (opts.diagrams ?? true) {
    for (const [tag, l] of [['A', la], ['B', lb]] as const) {
      lines.push('');
      lines.push(`${tag}: session ${l.session.id}`);
      lines.push(...swimlaneDiagram(l, width));
    }
  }
  lines.push('');
  lines.push('Reproduce:');
  const out = lines.map((l) => truncate(l, width));
  // A schedule's JSON is never cut: it must read back as the same schedule.
  for (const [tag, s] of [['A', d.a], ['B', d.b]] as const) {
    const r = s.reproduce;
    if (r.schedule) out.push('```json', ...scheduleJsonLines(r.schedule, width).lines, '```', `  ${tag}: save as ${r.scheduleFile}, then:`);
    out.push(truncate(`  ${tag}: ${r.command}`, width));
  }
  return `${out.join('\n')}\n`;
}

/** Two timelines side by side, the comparison below. Same page rules as the single report. */
export function renderDiffHtml(a: SessionBundle, b: SessionBundle, opts: LayoutOptions = {}): string {
  // Half a page each: only the findings' stories get labels, polls are dots.
  const lo = { width: 640, labelAllBelow: 0, ...opts };
  const la = layoutTimeline(a.session, a.threads, a.events, a.analysis, lo);
  const lb = layoutTimeline(b.session, b.threads, b.events, b.analysis, lo);
  const d = diffWithLayouts(a, b, la, lb);
  const sides = [
    { tag: 'A', bundle: a, layout: la, prefix: 'a-' },
    { tag: 'B', bundle: b, layout: lb, prefix: 'b-' },
  ] as const;
  // One grid row per kind of content, so the two timelines line up even when
  // one header is taller than the other.
  const gridRow = (cls: string, cell: (s: (typeof sides)[number]) => string): string =>
    `<div class="sides ${cls}">${sides.map((s) => `<div class="side" data-side="${s.tag}">${cell(s)}</div>`).join('\n')}</div>`;
  const sideFacts = (s: (typeof sides)[number]): string => {
    const t = s.bundle.session.target;
    return `<h2>${s.tag}: session ${s.bundle.session.id} <span class="mono">${h(s.bundle.session.label)}</span></h2>
<p class="verdict ${s.layout.verdict.kind}">${h(s.layout.verdict.sentence)}</p>
<dl class="finding-facts">
<dt>target</dt><dd class="mono">${h(`${t.kind} ${t.binary ?? ''}`)}</dd>
<dt>variant</dt><dd>${h(t.variant)}${t.qemu_version ? `, QEMU ${h(t.qemu_version)}` : ''}${t.build_id ? `, build-id <span class="mono">${h(t.build_id)}</span>` : ''}</dd>
<dt>session</dt><dd>${h(s.bundle.session.origin)}, ${h(s.bundle.session.state)}, ${s.layout.totalEvents} events${s.layout.summarized ? ' (summarized)' : ''}</dd>
</dl>`;
  };
  const sidesHtml = [
    gridRow('side-head', sideFacts),
    gridRow('side-timeline', (s) => timelineHtml(s.layout, renderSvg(s.layout, { idPrefix: `${s.tag.toLowerCase()}${s.bundle.session.id}`, header: false }), s.prefix, false)),
    gridRow('side-findings', (s) => `<h3>Findings</h3>\n${findingsHtml(s.layout, s.prefix, s.bundle.analysis, false)}`),
    gridRow('side-reproduce', (s) => `<p>Reproduce ${s.tag}:</p>${reproduceHtml(s.tag === 'A' ? d.a.reproduce : d.b.reproduce)}`),
  ].join('\n');
  const row = (q: QueryPair): string =>
    `<tr class="${q.same ? 'same' : 'differs'}"><td>${q.n}</td><td>${h(q.a?.query ?? '-')}</td><td>${h(queryOutcomeText(q.a))}</td><td>${h(q.b?.query ?? '-')}</td><td>${h(queryOutcomeText(q.b))}</td></tr>`;
  const identityText = (x: Comparable<Finding>): string =>
    `reader ${x.identity.reader}, read point ${x.identity.readPoint ?? 'none'}, ${x.identity.transition || 'no transition'}${x.identity.query !== null ? `, q${x.identity.query}` : ''}`;
  const list = (xs: Comparable<Finding>[]): string =>
    xs.length ? `<ul>${xs.map((x) => `<li><strong>${h(x.item.id)} ${h(x.item.class)}</strong>: ${h(x.item.summary)} <small class="muted">(${h(identityText(x))})</small></li>`).join('')}</ul>` : '<p class="muted">none</p>';
  const pairRow = (p: Pair<Finding>): string =>
    `<tr class="${p.changed ? 'differs' : 'same'}"><td class="pair">${h(pairText(p))}</td><td>${h(p.a.item.id)}</td><td>${h(p.b.item.id)}</td><td>${h(p.a.identity.reader)}</td></tr>`;
  const pairsHtml = d.pairs.length
    ? `<table class="diff pairs"><thead><tr><th>the same interleaving: A's outcome -&gt; B's</th><th>A</th><th>B</th><th>reader</th></tr></thead>
<tbody>${d.pairs.map(pairRow).join('\n')}</tbody></table>`
    : '<p class="muted">none</p>';
  const shown = shownPairs(d, 200);
  const body = `<header>
<h1>migrace diff: session ${d.a.session.id} vs session ${d.b.session.id}</h1>
<p class="verdict ${d.a.verdict.kind === d.b.verdict.kind ? d.a.verdict.kind : 'undetermined'}">${h(d.summary)}</p>
</header>
<section id="sides">
${sidesHtml}
</section>
<section id="diff-findings"><h2>Findings</h2>
<h3>In both</h3>
<p class="legend-note">Paired by what they are: the reader's part in the program, its read point, the crossing transition and the query.</p>
${pairsHtml}
<h3>Only in A (session ${d.a.session.id})</h3>${list(d.onlyA)}
<h3>Only in B (session ${d.b.session.id})</h3>${list(d.onlyB)}
</section>
<section id="diff-queries"><h2>Queries</h2>
<p class="legend-note">Paired by order. Each cell: read/published -&gt; reply. ${d.differing} of ${d.queries.length} differ${d.queries.length > shown.length ? `; the differing ones and the first few are listed` : ''}.</p>
<table class="diff"><thead><tr><th>#</th><th>A query</th><th>A</th><th>B query</th><th>B</th></tr></thead>
<tbody>${shown.map(row).join('\n')}</tbody></table>
</section>
<footer>Generated by migrace. This file makes no network request; its styles and script are inline.</footer>`;
  return htmlPage(`migrace diff: session ${d.a.session.id} vs ${d.b.session.id}`, body);
}
