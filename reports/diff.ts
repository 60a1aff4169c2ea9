import type { Session, Thread, TraceEvent } from '../trace/schema.js';
import type { Analysis, Finding, Verdict } from '../analyzer/types.js';
import { layoutTimeline, type LayoutOptions, type TimelineLayout, type VerdictKind } from './timeline.js';
import { displayStateName } from './labels.js';
import { reproduceCommand } from './reproduce.js';
import { cleanText, truncate, wrapWords } from './safe-text.js';
import { renderSvg } from './svg.js';
import { findingsHtml, h, htmlPage, timelineHtml } from './html.js';
import { swimlaneDiagram } from './text.js';

/*
 * Two sessions side by side, typically the same scenario on an unpatched and
 * a patched build. The comparison is pure data: what each side published and
 * replied per query (paired by order), which findings one side has and the
 * other does not, and each side's verdict. Findings match on class, the
 * reader's role (main or migration thread, so minimig and QEMU compare) and
 * the transitions that crossed.
 */

export interface SessionBundle {
  session: Session;
  threads: readonly Thread[];
  events: readonly TraceEvent[];
  analysis: Analysis | null;
}

export interface QueryOutcome {
  query: string;
  /** Ordinal of the query in its session, from 1. */
  n: number;
  read: string | null;
  published: string | null;
  reply: { seq: number; status: string | null; has_ram: boolean } | null;
  verdict: Verdict | null;
  /** Findings whose query this is. */
  findings: string[];
}

export interface QueryPair {
  n: number;
  a: QueryOutcome | null;
  b: QueryOutcome | null;
  same: boolean;
}

export interface SideSummary {
  session: { id: number; label: string; origin: string; state: string };
  target: Session['target'];
  verdict: { kind: VerdictKind; sentence: string };
  findings: number;
  queries: number;
  reproduce: string;
}

export interface FindingMatch {
  key: string;
  a: Finding;
  b: Finding;
}

export interface SessionDiff {
  a: SideSummary;
  b: SideSummary;
  queries: QueryPair[];
  /** Queries whose outcome differs. */
  differing: number;
  onlyA: Array<{ key: string; finding: Finding }>;
  onlyB: Array<{ key: string; finding: Finding }>;
  both: FindingMatch[];
  /** One line: what changed between the two. */
  summary: string;
}

/** Which thread of the program: names differ between minimig and QEMU, roles do not. */
export function threadRole(name: string | null): string {
  if (!name) return 'unknown';
  const n = name.toLowerCase();
  if (/^(qemu-system|qemu-kvm|qemu\b|minimig|main\b)/.test(n)) return 'main';
  if (/migration|live_migration|mig\/src/.test(n)) return 'migration';
  return cleanText(n).replace(/\s*\d+(\/\w+)?$/, '').trim() || 'thread';
}

export function findingKey(f: Finding, bundle: SessionBundle): string {
  const table = bundle.session.target.status_table;
  const t = f.reader.tid !== null ? bundle.threads.find((x) => x.tid === f.reader.tid) : undefined;
  const role = threadRole(t?.name ?? f.reader.name);
  const transitions = f.crossing.map((c) => `${displayStateName(c.old, table)}->${displayStateName(c.new, table)}`).join(',');
  return `${f.class}|${role}|${transitions}`;
}

/** Per query: what the reader read and published and what the client got back. */
export function queryOutcomes(bundle: SessionBundle): QueryOutcome[] {
  const table = bundle.session.target.status_table;
  const byId = new Map<string, QueryOutcome>();
  const order: QueryOutcome[] = [];
  const openOnThread = new Map<number, QueryOutcome>();
  const get = (id: string): QueryOutcome => {
    let q = byId.get(id);
    if (!q) {
      q = { query: id, n: order.length + 1, read: null, published: null, reply: null, verdict: null, findings: [] };
      byId.set(id, q);
      order.push(q);
    }
    return q;
  };
  const verdicts = new Map<number, Verdict>();
  for (const v of bundle.analysis?.replies ?? []) if (v.reply_seq !== null) verdicts.set(v.reply_seq, v);
  for (const f of bundle.analysis?.findings ?? []) {
    if (f.reply?.reply_seq != null) verdicts.set(f.reply.reply_seq, f.reply);
  }
  let sorted = bundle.events;
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.seq <= sorted[i - 1]!.seq) {
      sorted = [...bundle.events].sort((x, y) => x.seq - y.seq);
      break;
    }
  }
  for (const e of sorted) {
    switch (e.kind) {
      case 'query-begin': {
        const q = get(e.data.query);
        if (e.thread !== null) openOnThread.set(e.thread, q);
        break;
      }
      case 'query-end': {
        const q = get(e.data.query);
        if (e.thread !== null && openOnThread.get(e.thread) === q) openOnThread.delete(e.thread);
        break;
      }
      case 'read': {
        const q = e.thread !== null ? openOnThread.get(e.thread) : undefined;
        if (q && q.read === null) q.read = displayStateName(e.data.value, table);
        break;
      }
      case 'publish': {
        const q = e.thread !== null ? openOnThread.get(e.thread) : undefined;
        if (q) q.published = displayStateName(e.data.value, table);
        break;
      }
      case 'reply': {
        // A reply with no query id (imported logs) is a query of its own.
        const q = get(e.data.query ?? `reply #${e.seq}`);
        q.reply = { seq: e.seq, status: e.data.status, has_ram: e.data.has_ram };
        q.verdict = verdicts.get(e.seq) ?? null;
        break;
      }
      default:
        break;
    }
  }
  for (const f of bundle.analysis?.findings ?? []) {
    const id = f.query?.id;
    if (id && byId.has(id)) byId.get(id)!.findings.push(f.id);
  }
  return order;
}

function sameOutcome(a: QueryOutcome | null, b: QueryOutcome | null): boolean {
  if (!a || !b) return false;
  return a.published === b.published && a.reply?.status === b.reply?.status && a.reply?.has_ram === b.reply?.has_ram;
}

function side(bundle: SessionBundle, layout: TimelineLayout, queries: number): SideSummary {
  const s = bundle.session;
  return {
    session: { id: s.id, label: s.label, origin: s.origin, state: s.state },
    target: s.target,
    verdict: layout.verdict,
    findings: bundle.analysis?.findings.length ?? 0,
    queries,
    reproduce: reproduceCommand(s, layout.findings[0]?.finding ?? null),
  };
}

function diffWithLayouts(a: SessionBundle, b: SessionBundle, la: TimelineLayout, lb: TimelineLayout): SessionDiff {
  const qa = queryOutcomes(a);
  const qb = queryOutcomes(b);
  const queries: QueryPair[] = [];
  let differing = 0;
  for (let i = 0; i < Math.max(qa.length, qb.length); i++) {
    const pa = qa[i] ?? null;
    const pb = qb[i] ?? null;
    const same = sameOutcome(pa, pb);
    if (!same) differing++;
    queries.push({ n: i + 1, a: pa, b: pb, same });
  }

  const keyed = (bundle: SessionBundle) => (bundle.analysis?.findings ?? []).map((f) => ({ key: findingKey(f, bundle), finding: f }));
  const fa = keyed(a);
  const fb = keyed(b);
  const both: FindingMatch[] = [];
  const onlyA: SessionDiff['onlyA'] = [];
  const usedB = new Set<number>();
  for (const x of fa) {
    const j = fb.findIndex((y, k) => !usedB.has(k) && y.key === x.key);
    if (j < 0) onlyA.push(x);
    else {
      usedB.add(j);
      both.push({ key: x.key, a: x.finding, b: fb[j]!.finding });
    }
  }
  const onlyB = fb.filter((_, k) => !usedB.has(k));

  const sa = side(a, la, qa.length);
  const sb = side(b, lb, qb.length);
  const name = (s: SideSummary): string => `session ${s.session.id} (${s.target.variant})`;
  let summary: string;
  if (sa.verdict.kind === sb.verdict.kind && onlyA.length === 0 && onlyB.length === 0) {
    summary = `Both sessions agree: ${sa.verdict.kind}; ${differing} of ${queries.length} queries differ in outcome.`;
  } else {
    summary = `${name(sa)}: ${sa.verdict.kind}; ${name(sb)}: ${sb.verdict.kind}. ${onlyA.length} finding(s) only in A, ${onlyB.length} only in B; ${differing} of ${queries.length} queries differ in what was published or replied.`;
  }
  return { a: sa, b: sb, queries, differing, onlyA, onlyB, both, summary };
}

/** Compare two sessions. Pure. */
export function diffSessions(a: SessionBundle, b: SessionBundle, opts: LayoutOptions = {}): SessionDiff {
  // The layouts give the verdict sentences; they are cheap next to the events pass.
  const la = layoutTimeline(a.session, a.threads, a.events, a.analysis, opts);
  const lb = layoutTimeline(b.session, b.threads, b.events, b.analysis, opts);
  return diffWithLayouts(a, b, la, lb);
}

function outcomeText(q: QueryOutcome | null): string {
  if (!q) return '-';
  const reply = q.reply ? `${q.reply.status ?? '{}'}${q.reply.has_ram ? '+ram' : q.reply.status === 'active' ? ' no ram' : ''}` : 'no reply';
  const fails = q.verdict && (q.verdict.old_libvirt === 'fails' || q.verdict.current_libvirt === 'fails') ? ' FAILS' : '';
  return `${q.read ?? '?'}/${q.published ?? '?'} -> ${reply}${fails}`;
}

/** Pairs worth listing: every differing one, plus the first few, up to `max`. */
function shownPairs(d: SessionDiff, max: number): QueryPair[] {
  if (d.queries.length <= max) return d.queries;
  const picked = d.queries.filter((q, i) => !q.same || i < 5 || (q.a?.findings.length ?? 0) > 0 || (q.b?.findings.length ?? 0) > 0);
  return picked.slice(0, max);
}

function findingLine(x: { key: string; finding: Finding }): string {
  return `${cleanText(x.finding.id)} ${x.finding.class}: ${cleanText(x.finding.summary)}`;
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
  lines.push('Findings only in A:');
  if (d.onlyA.length === 0) lines.push('  (none)');
  for (const x of d.onlyA) wrap(findingLine(x), '     ', '  ');
  lines.push('Findings only in B:');
  if (d.onlyB.length === 0) lines.push('  (none)');
  for (const x of d.onlyB) wrap(findingLine(x), '     ', '  ');
  if (d.both.length) {
    lines.push('In both:');
    for (const m of d.both) wrap(`${cleanText(m.a.id)} / ${cleanText(m.b.id)}: ${m.key}`, '     ', '  ');
  }
  lines.push('');
  lines.push('Queries (read/published -> reply), paired by order:');
  const colW = Math.floor((width - 8) / 2);
  lines.push(`${'  #'.padEnd(6)}  ${'A'.padEnd(colW)}${'B'}`);
  for (const q of shownPairs(d, 40)) {
    const mark = q.same ? ' ' : '*';
    lines.push(truncate(`${mark}${String(q.n).padStart(4)}   ${truncate(outcomeText(q.a), colW - 1).padEnd(colW)}${truncate(outcomeText(q.b), colW)}`, width));
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
  lines.push(`  A: ${d.a.reproduce}`);
  lines.push(`  B: ${d.b.reproduce}`);
  return `${lines.map((l) => truncate(l, width)).join('\n')}\n`;
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
    gridRow('side-reproduce', (s) => `<p>Reproduce ${s.tag}:</p><pre class="cmd"><code>${h(reproduceCommand(s.bundle.session, s.layout.findings[0]?.finding ?? null))}</code></pre>`),
  ].join('\n');
  const row = (q: QueryPair): string =>
    `<tr class="${q.same ? 'same' : 'differs'}"><td>${q.n}</td><td>${h(q.a?.query ?? '-')}</td><td>${h(outcomeText(q.a))}</td><td>${h(q.b?.query ?? '-')}</td><td>${h(outcomeText(q.b))}</td></tr>`;
  const list = (xs: Array<{ key: string; finding: Finding }>): string =>
    xs.length ? `<ul>${xs.map((x) => `<li><strong>${h(x.finding.id)} ${h(x.finding.class)}</strong>: ${h(x.finding.summary)} <small class="muted">(${h(x.key)})</small></li>`).join('')}</ul>` : '<p class="muted">none</p>';
  const shown = shownPairs(d, 200);
  const body = `<header>
<h1>migrace diff: session ${d.a.session.id} vs session ${d.b.session.id}</h1>
<p class="verdict ${d.a.verdict.kind === d.b.verdict.kind ? d.a.verdict.kind : 'undetermined'}">${h(d.summary)}</p>
</header>
<section id="sides">
${sidesHtml}
</section>
<section id="diff-findings"><h2>Findings</h2>
<h3>Only in A (session ${d.a.session.id})</h3>${list(d.onlyA)}
<h3>Only in B (session ${d.b.session.id})</h3>${list(d.onlyB)}
<h3>In both</h3>${d.both.length ? `<ul>${d.both.map((m) => `<li>${h(m.a.id)} / ${h(m.b.id)}: ${h(m.key)}</li>`).join('')}</ul>` : '<p class="muted">none</p>'}
</section>
<section id="diff-queries"><h2>Queries</h2>
<p class="legend-note">Paired by order. Each cell: read/published -&gt; reply. ${d.differing} of ${d.queries.length} differ${d.queries.length > shown.length ? `; the differing ones and the first few are listed` : ''}.</p>
<table class="diff"><thead><tr><th>#</th><th>A query</th><th>A</th><th>B query</th><th>B</th></tr></thead>
<tbody>${shown.map(row).join('\n')}</tbody></table>
</section>
<footer>Generated by migrace. This file makes no network request; its styles and script are inline.</footer>`;
  return htmlPage(`migrace diff: session ${d.a.session.id} vs ${d.b.session.id}`, body);
}
