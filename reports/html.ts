import { createHash } from 'node:crypto';
import type { Session, Thread, TraceEvent } from '../trace/schema.js';
import type { Analysis, Verdict } from '../analyzer/types.js';
import { layoutTimeline, type LayoutOptions, type Mark, type TimelineLayout } from './timeline.js';
import { formatDuration, statusNamesText } from './labels.js';
import { reproduction, scheduleJsonLines, type Reproduction } from './reproduce.js';
import { infeasibleOf } from './session-meta.js';
import { cleanMultiline, cleanText, truncate } from './safe-text.js';
import { renderSvg } from './svg.js';

/*
 * One self-contained HTML file per session: inline SVG, inline CSS, a small
 * inline script for hover tooltips, and a Content-Security-Policy that allows
 * exactly those two inline blocks (by hash) and nothing else: no request of
 * any kind leaves the page. Every piece of trace text goes through
 * escapeHtml (after cleanText); the SVG is escaped by its own serializer.
 */

/** Escape text for HTML element content and quoted attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '"' ? '&quot;' : '&#39;'));
}

/** Trace text for HTML: made printable, then escaped. */
export function h(s: string | null | undefined): string {
  return escapeHtml(cleanText(s ?? ''));
}

/** Multi-line text (JSON bodies) keeps its newlines. */
function hBlock(s: string): string {
  return escapeHtml(cleanMultiline(s));
}

export const REPORT_CSS = `
:root { --ink:#202124; --muted:#5f6368; --bad:#d93025; --good:#188038; --warn:#e37400; --line:#dadce0; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: #fff; }
header, section { padding: 10px 24px; }
h1 { font-size: 20px; margin: 6px 0; }
h2 { font-size: 16px; margin: 16px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 4px 0 6px; }
code, pre, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.verdict { font-size: 16px; font-weight: 600; padding: 10px 14px; border-left: 6px solid var(--muted); background: #f1f3f4; margin: 8px 0; }
.verdict.reproduced, .verdict.replies-fail { border-color: var(--bad); background: #fce8e6; }
.verdict.not-reproduced, .verdict.clean { border-color: var(--good); background: #e6f4ea; }
.verdict.undetermined, .verdict.infeasible { border-color: var(--warn); background: #fef7e0; }
pre.stack { margin: 4px 0 8px; }
dl.facts { display: grid; grid-template-columns: max-content minmax(0, 1fr) max-content minmax(0, 1fr); gap: 2px 14px; margin: 0; }
dl.facts dt, dl.finding-facts dt { color: var(--muted); }
dl.facts dd { margin: 0; font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; overflow-wrap: anywhere; }
dl.finding-facts { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 2px 14px; margin: 6px 0; }
dl.finding-facts dd { margin: 0; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
svg.migrace-timeline { display: block; }
svg .mark.hl, svg .band.hl, svg .crossing-arrow.hl { filter: drop-shadow(0 0 3px #1a73e8); }
.legend-note { color: var(--muted); font-size: 13px; margin: 6px 0; }
.warnings { color: var(--warn); }
.muted { color: var(--muted); }
table.events { border-collapse: collapse; font: 12px/1.35 ui-monospace, "DejaVu Sans Mono", Menlo, monospace; width: 100%; }
table.events th, table.events td { border-bottom: 1px solid #eee; padding: 2px 6px; text-align: left; vertical-align: top; }
table.events th { position: sticky; top: 0; background: #f8f9fa; }
table.events td.data { overflow-wrap: anywhere; max-width: 46em; }
tr.evidence { background: #fff8e1; }
tr.crossing td, tr.spoiled td { color: var(--bad); font-weight: 600; }
tr.hl { outline: 2px solid #1a73e8; }
tr.elided td { color: var(--muted); font-style: italic; text-align: center; }
pre { background: #f8f9fa; border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; overflow-x: auto; font-size: 12px; margin: 4px 0; }
.finding, .reply { border: 1px solid var(--line); border-left: 6px solid var(--muted); border-radius: 6px; padding: 6px 14px; margin: 10px 0; }
.finding-manifested, .reply.fails { border-left-color: var(--bad); }
.finding-benign, .reply.accepts { border-left-color: var(--good); }
.finding-window-only { border-left-color: var(--warn); }
.badge { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px; color: #fff; background: var(--muted); vertical-align: 1px; }
.badge.manifested, .badge.fails { background: var(--bad); }
.badge.benign, .badge.accepts { background: var(--good); }
.badge.window-only { background: var(--warn); }
.cmd { font-size: 14px; }
#tip { position: fixed; z-index: 10; left: 0; top: 0; max-width: 560px; white-space: pre-wrap; font: 12px/1.35 ui-monospace, "DejaVu Sans Mono", Menlo, monospace; background: #202124; color: #fff; padding: 6px 8px; border-radius: 4px; pointer-events: none; box-shadow: 0 2px 6px rgba(0,0,0,.3); }
#tip[hidden] { display: none; }
.sides { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 16px; }
.side { min-width: 0; }
table.diff { border-collapse: collapse; font: 12px/1.35 ui-monospace, "DejaVu Sans Mono", Menlo, monospace; }
table.diff th, table.diff td { border-bottom: 1px solid #eee; padding: 2px 8px; text-align: left; vertical-align: top; }
table.diff tr.differs td { background: #fce8e6; }
footer { color: var(--muted); font-size: 12px; padding: 12px 24px 24px; }
`;

export const REPORT_SCRIPT = `
(function () {
  'use strict';
  var tip = document.getElementById('tip');
  if (!tip) return;
  // Native <title> tooltips would show beside ours: keep their text aside.
  var titled = document.querySelectorAll('svg .mark, svg .band, svg .bin, svg .crossing-arrow, svg .lane, svg .lane-head, svg .break');
  for (var i = 0; i < titled.length; i++) {
    var el = titled[i];
    for (var c = el.firstElementChild; c; c = c.nextElementSibling) {
      if (c.tagName.toLowerCase() === 'title') {
        el.setAttribute('data-tip', c.textContent);
        el.removeChild(c);
        break;
      }
    }
  }
  // Lane names stay at the left edge while a wide timeline scrolls, and a
  // wide timeline opens scrolled to its first finding's window.
  var boxes = document.querySelectorAll('.scroll');
  function stick(box) {
    var heads = box.querySelector('.lane-labels');
    if (heads) heads.setAttribute('transform', 'translate(' + box.scrollLeft + ',0)');
  }
  for (var b = 0; b < boxes.length; b++) {
    (function (box) {
      box.addEventListener('scroll', function () { stick(box); });
      var band = box.querySelector('.band');
      if (band && band.getBBox) {
        var bb = band.getBBox();
        if (bb.x + bb.width + 40 > box.clientWidth) box.scrollLeft = Math.max(0, bb.x + bb.width / 2 - box.clientWidth / 2);
      }
      stick(box);
    })(boxes[b]);
  }
  function rowFor(el) {
    var seq = el.getAttribute('data-seq');
    if (seq === null) return null;
    var scope = el.closest('[data-prefix]');
    var prefix = scope ? scope.getAttribute('data-prefix') : '';
    return document.getElementById(prefix + 'ev-' + seq);
  }
  function markFor(row) {
    var seq = row.getAttribute('data-seq');
    var scope = row.closest('[data-prefix]');
    if (seq === null || !scope) return null;
    var prefix = scope.getAttribute('data-prefix');
    var box = document.querySelector('.scroll[data-prefix="' + prefix + '"]');
    return box ? box.querySelector('.mark[data-seq="' + seq + '"]') : null;
  }
  function place(ev) {
    var x = ev.clientX + 14, y = ev.clientY + 16;
    var w = tip.offsetWidth, h = tip.offsetHeight;
    if (x + w > window.innerWidth - 8) x = Math.max(8, ev.clientX - w - 14);
    if (y + h > window.innerHeight - 8) y = Math.max(8, ev.clientY - h - 16);
    tip.style.left = x + 'px';
    tip.style.top = y + 'px';
  }
  var current = null, currentRow = null;
  function clear() {
    if (current) current.classList.remove('hl');
    if (currentRow) currentRow.classList.remove('hl');
    current = currentRow = null;
  }
  document.addEventListener('mouseover', function (ev) {
    var t = ev.target;
    var el = t && t.closest ? t.closest('[data-tip]') : null;
    var row = !el && t && t.closest ? t.closest('tr[data-seq]') : null;
    if (row) {
      if (row === currentRow) return;
      clear();
      currentRow = row;
      row.classList.add('hl');
      current = markFor(row);
      if (current) current.classList.add('hl');
      tip.hidden = true;
      return;
    }
    if (el === current && el) return;
    clear();
    if (!el) { tip.hidden = true; return; }
    current = el;
    tip.textContent = el.getAttribute('data-tip');
    tip.hidden = false;
    place(ev);
    el.classList.add('hl');
    currentRow = rowFor(el);
    if (currentRow) currentRow.classList.add('hl');
  });
  document.addEventListener('mousemove', function (ev) { if (!tip.hidden) place(ev); });
  document.addEventListener('click', function (ev) {
    var t = ev.target;
    var el = t && t.closest ? t.closest('.mark[data-seq]') : null;
    var row = el ? rowFor(el) : null;
    if (row) row.scrollIntoView({ block: 'center' });
  });
})();
`;

function sha256(s: string): string {
  return `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;
}

/** The page's policy: nothing but the two inline blocks, by hash. */
export function contentSecurityPolicy(css: string, script: string): string {
  return [
    "default-src 'none'",
    `style-src ${sha256(css)}`,
    `script-src ${sha256(script)}`,
    "img-src 'none'",
    "font-src 'none'",
    "connect-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
  ].join('; ');
}

/**
 * A complete page around `body` (already escaped HTML), with the report's
 * style and script unless the page brings its own (a page with no script
 * gets no tooltip either).
 */
export function htmlPage(title: string, body: string, own: { css: string; script: string } = { css: REPORT_CSS, script: REPORT_SCRIPT }): string {
  const csp = contentSecurityPolicy(own.css, own.script);
  const script = own.script ? `<div id="tip" role="tooltip" hidden></div>\n<script>${own.script}</script>\n` : '';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${escapeHtml(csp)}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light">
<title>${h(title)}</title>
<style>${own.css}</style>
</head>
<body>
${body}
${script}</body>
</html>
`;
}

export interface HtmlOptions extends LayoutOptions {
  /** Event table rows above which only labelled events are listed. */
  maxTableRows?: number;
  /** Replies listed in full above which only the findings' and failing ones are. */
  maxReplies?: number;
}

function fact(name: string, value: string | number | null | undefined): string {
  const v = value === null || value === undefined || value === '' ? '<span class="muted">-</span>' : h(String(value));
  return `<dt>${escapeHtml(name)}</dt><dd>${v}</dd>`;
}

/** An infeasible replay's lock-wait stack, innermost frame first. */
function lockWaitHtml(session: Session): string {
  const inf = infeasibleOf(session);
  if (!inf || inf.stack.length === 0) return '';
  return `<p>The reader's stack${inf.lock ? `, waiting in <code>${h(inf.lock)}</code>` : ''}:</p>
<pre class="stack">${inf.stack.map((f, i) => `#${i} ${h(f)}`).join('\n')}</pre>
`;
}

/** The command that reproduces a session, after the schedule to save first when it replays one from a file. */
export function reproduceHtml(r: Reproduction): string {
  const schedule = r.schedule
    ? `<pre class="schedule"><code>${hBlock(scheduleJsonLines(r.schedule).lines.join('\n'))}</code></pre>
<p>save as <code>${h(r.scheduleFile)}</code>, then:</p>
`
    : '';
  return `${schedule}<pre class="cmd"><code>${h(r.command)}</code></pre>`;
}

/** Header: target, session, verdict. */
export function headerHtml(session: Session, layout: TimelineLayout, threads: number): string {
  const t = session.target;
  const clock = layout.clock === 'time' ? 'real time (t_ns)' : 'event order (no clock in this session)';
  const span = layout.clock === 'time' && layout.marks.length
    ? formatDuration(Math.max(layout.marks[layout.marks.length - 1]!.clock, layout.bins.length ? layout.bins[layout.bins.length - 1]!.clock1 : 0))
    : null;
  return `<h1>migrace report: session ${session.id} <span class="mono">${h(session.label)}</span></h1>
<p class="verdict ${layout.verdict.kind}">${h(layout.verdict.sentence)}</p>
${lockWaitHtml(session)}<dl class="facts">
${fact('target', t.kind)}${fact('binary', t.binary)}
${fact('variant', t.variant)}${fact('QEMU version', t.qemu_version)}
${fact('build-id', t.build_id)}${fact('state names', statusNamesText(t))}
${fact('session', `${session.id}: ${session.label}`)}${fact('origin', session.origin)}
${fact('state', session.state)}${fact('created', session.created_at)}
${fact('events', `${layout.totalEvents}${layout.summarized ? ' (summarized: density bins between the findings)' : ''}`)}${fact('threads', threads)}
${fact('clock', clock)}${fact('recorded span', span)}
${session.error ? fact('error', session.error) : ''}
</dl>`;
}

export function timelineHtml(layout: TimelineLayout, svg: string, prefix: string, withTable = true): string {
  const warn = layout.warnings.length
    ? `<ul class="warnings">${layout.warnings.map((w) => `<li>${h(w)}</li>`).join('')}</ul>` : '';
  return `<div class="scroll" data-prefix="${escapeHtml(prefix)}">${svg}</div>
<p class="legend-note">One lane per thread; the QMP client lane holds the replies. The shaded band is a finding's read-&gt;publish window on the reader; the red arrow comes from the transition that crossed it. Hover a mark for its details${withTable ? '; click it to find it in the event table' : ''}.${layout.breaks.length ? ' Grey zigzag columns are quiet stretches drawn compressed.' : ''}</p>${warn}`;
}

function shapeText(shape: NonNullable<Verdict['shape']>): string {
  const parts: string[] = [];
  if (shape.missing.length) parts.push(`missing ${shape.missing.map(h).join(', ')}`);
  if (shape.foreign.length) parts.push(`foreign ${shape.foreign.map(h).join(', ')}`);
  const against = shape.against === 'session' ? "this session's undisturbed replies of that status" : 'what QEMU fills for that status';
  return `${parts.join('; ') || 'as expected'} (compared with ${against})`;
}

export function findingsHtml(layout: TimelineLayout, prefix: string, analysis: Analysis | null, linkEvents = true): string {
  if (!analysis) return '<p>This session has not been analyzed.</p>';
  const ev = (seq: number | null | undefined): string => (seq === null || seq === undefined ? '-'
    : linkEvents ? `<a href="#${escapeHtml(prefix)}ev-${seq}">#${seq}</a>` : `#${seq}`);
  const parts: string[] = [];
  if (layout.findings.length === 0) parts.push('<p>No read-then-transition interleaving was found.</p>');
  for (const f of layout.findings) {
    const v = f.reply?.verdict;
    const libvirt = v ? `old libvirt <span class="badge ${v.old_libvirt}">${v.old_libvirt}</span>, current libvirt <span class="badge ${v.current_libvirt}">${v.current_libvirt}</span>${v.libvirt_error ? ` &mdash; <q>${h(v.libvirt_error)}</q>` : ''}` : '-';
    parts.push(`<article class="finding finding-${escapeHtml(f.cls)}" id="${escapeHtml(prefix)}finding-${h(f.id)}">
<h3><span class="badge ${escapeHtml(f.cls)}">${escapeHtml(f.cls)}</span> ${h(f.id)}${f.knownAs ? ` &mdash; ${h(f.knownAs)}` : ''}</h3>
<p>${h(f.explanation)}</p>
<dl class="finding-facts">
<dt>reader</dt><dd>${h(f.reader)}</dd>
<dt>read</dt><dd>${f.read ? `${ev(f.read.seq)} ${h(f.read.value)}` : '-'}</dd>
<dt>crossing</dt><dd>${f.crossing.map((c) => `${ev(c.seq)} ${h(c.thread)}: <strong>${h(c.old)} -&gt; ${h(c.new)}</strong>`).join('<br>') || '-'}</dd>
<dt>published</dt><dd>${f.publish ? `${ev(f.publish.seq)} ${h(f.publish.value)}` : '-'}</dd>
<dt>query</dt><dd>${f.query ? `${h(f.query.id ?? '?')} ${ev(f.query.begin)} .. ${ev(f.query.end)}` : '-'}</dd>
<dt>reply</dt><dd>${f.reply ? `${ev(f.reply.seq)} ${h(f.reply.label)}: ${h(f.reply.verdict.summary)}` : '-'}</dd>
<dt>libvirt</dt><dd>${libvirt}</dd>
${v?.shape ? `<dt>reply shape</dt><dd>${shapeText(v.shape)}</dd>` : ''}
<dt>evidence</dt><dd>${f.evidence.map((s) => ev(s)).join(' ')}</dd>
<dt>analyzer</dt><dd>${h(f.finding.summary)}</dd>
<dt>reproduce</dt><dd><code>${h(f.reproduce)}</code></dd>
</dl>
</article>`);
  }
  if (analysis.warnings.length) parts.push(`<ul class="warnings">${analysis.warnings.map((w) => `<li>${h(w)}</li>`).join('')}</ul>`);
  return parts.join('\n');
}

function locationText(e: TraceEvent): string {
  const bits = [
    e.func,
    e.file ? `${e.file}${e.line !== null ? `:${e.line}` : ''}` : e.line !== null ? `line ${e.line}` : null,
    e.pc,
  ].filter((x): x is string => !!x);
  return bits.join(' ');
}

function dataText(e: TraceEvent): string {
  let s: string;
  try {
    s = JSON.stringify(e.data) ?? '';
  } catch {
    s = String(e.data);
  }
  return truncate(s, 240);
}

export function eventsHtml(layout: TimelineLayout, prefix: string, maxRows: number): string {
  const all = layout.marks.length <= maxRows;
  const rows: string[] = [];
  const marks = layout.marks;
  const bins = layout.bins;
  let bi = 0;
  let pending = 0;
  let pendingFrom = -1;
  let pendingTo = -1;
  const flush = (): void => {
    if (pending === 0) return;
    rows.push(`<tr class="elided"><td colspan="7">&hellip; ${pending.toLocaleString('en-US')} events not listed (#${pendingFrom} .. #${pendingTo}) &hellip;</td></tr>`);
    pending = 0;
  };
  const elide = (count: number, from: number, to: number): void => {
    if (pending === 0) pendingFrom = from;
    pending += count;
    pendingTo = to;
  };
  const t0 = layout.t0;
  const laneLabel = (m: Mark): string => layout.lanes[m.lane]!.label;
  for (const m of marks) {
    while (bi < bins.length && bins[bi]!.fromIndex < m.index) {
      const b = bins[bi++]!;
      elide(b.count, b.fromSeq, b.toSeq);
    }
    if (!all && !m.labelled) {
      elide(1, m.seq, m.seq);
      continue;
    }
    flush();
    const e = m.event;
    const cls = ['kind-' + m.kind, ...(m.findings.length ? ['evidence'] : []), ...m.classes.filter((c) => c === 'crossing' || c === 'spoiled')];
    const time = e.t_ns !== null && t0 !== null ? `+${formatDuration(e.t_ns - t0)}` : '-';
    rows.push(`<tr id="${escapeHtml(prefix)}ev-${m.seq}" data-seq="${m.seq}" class="${cls.join(' ')}"><td>#${m.seq}</td><td>${time}</td><td>${h(laneLabel(m))}</td><td>${escapeHtml(m.kind)}</td><td>${h(m.label)}${m.findings.length ? ` <small>(${m.findings.map(h).join(', ')})</small>` : ''}</td><td>${h(locationText(e))}</td><td class="data">${h(dataText(e))}</td></tr>`);
  }
  while (bi < bins.length) {
    const b = bins[bi++]!;
    elide(b.count, b.fromSeq, b.toSeq);
  }
  flush();
  const note = all ? '' : `<p class="legend-note">${layout.totalEvents.toLocaleString('en-US')} events: the table lists the ones the timeline labels (findings, transitions, holds); the rest are counted in the elided rows.</p>`;
  return `${note}<table class="events" data-prefix="${escapeHtml(prefix)}"><thead><tr><th>seq</th><th>time</th><th>thread</th><th>kind</th><th>event</th><th>where</th><th>values</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody></table>`;
}

function prettyBody(body: unknown): string {
  try {
    if (typeof body === 'string') return body;
    return JSON.stringify(body, null, 2) ?? 'undefined';
  } catch {
    return String(body);
  }
}

export function repliesHtml(layout: TimelineLayout, prefix: string, analysis: Analysis | null, max: number): string {
  const verdicts = new Map<number, NonNullable<Analysis['replies'][number]>>();
  for (const v of analysis?.replies ?? []) if (v.reply_seq !== null) verdicts.set(v.reply_seq, v);
  for (const f of layout.findings) if (f.reply?.verdict.reply_seq != null) verdicts.set(f.reply.verdict.reply_seq, f.reply.verdict);
  const replies = layout.marks.filter((m) => m.kind === 'reply');
  const total = layout.marks.length ? layout.bins.reduce((s, b) => s + (b.kinds.reply ?? 0), 0) + replies.length : 0;
  let shown = replies;
  if (replies.length > max) {
    shown = replies.filter((m, i) => {
      const v = verdicts.get(m.seq);
      return m.findings.length > 0 || (v && (v.old_libvirt === 'fails' || v.current_libvirt === 'fails')) || i < 10;
    }).slice(0, max);
  }
  if (replies.length === 0) return '<p>No replies were recorded.</p>';
  const parts = shown.map((m) => {
    const e = m.event;
    if (e.kind !== 'reply') return '';
    const v = verdicts.get(m.seq);
    const fails = v ? v.old_libvirt === 'fails' || v.current_libvirt === 'fails' : false;
    const badge = v ? `<span class="badge ${fails ? 'fails' : 'accepts'}">${fails ? 'fails' : 'accepted'}</span> ` : '';
    return `<article class="reply ${v ? (fails ? 'fails' : 'accepts') : ''}" id="${escapeHtml(prefix)}reply-${m.seq}">
<h3>${badge}<a href="#${escapeHtml(prefix)}ev-${m.seq}">#${m.seq}</a> ${h(e.data.command)}${e.data.query ? ` (query ${h(e.data.query)})` : ''}: ${h(m.label)}${m.findings.length ? ` &mdash; ${m.findings.map(h).join(', ')}` : ''}</h3>
${v ? `<p>${h(v.summary)}</p>` : ''}
<pre>${hBlock(prettyBody(e.data.body))}</pre>
</article>`;
  });
  const more = total - shown.length;
  if (more > 0) parts.push(`<p class="legend-note">${more.toLocaleString('en-US')} more replies are not listed here (the event table and the session database have them).</p>`);
  return parts.join('\n');
}

/** The whole report for one session. Pure: data in, HTML text out. */
export function renderHtml(
  session: Session, threads: readonly Thread[], events: readonly TraceEvent[], analysis: Analysis | null,
  opts: HtmlOptions = {},
): string {
  const layout = layoutTimeline(session, threads, events, analysis, opts);
  return renderHtmlFromLayout(session, threads.length, layout, analysis, opts);
}

export function renderHtmlFromLayout(
  session: Session, threadCount: number, layout: TimelineLayout, analysis: Analysis | null, opts: HtmlOptions = {},
): string {
  const prefix = '';
  const svg = renderSvg(layout, { idPrefix: `s${session.id}`, header: false });
  const body = `<header>
${headerHtml(session, layout, threadCount)}
</header>
<section id="timeline"><h2>Timeline</h2>
${timelineHtml(layout, svg, prefix)}
</section>
<section id="findings"><h2>Findings</h2>
${findingsHtml(layout, prefix, analysis)}
</section>
<section id="events"><h2>Events</h2>
<div data-prefix="${prefix}">${eventsHtml(layout, prefix, opts.maxTableRows ?? 1500)}</div>
</section>
<section id="replies"><h2>Replies</h2>
${repliesHtml(layout, prefix, analysis, opts.maxReplies ?? 60)}
</section>
<section id="reproduce"><h2>Reproduce</h2>
${reproduceHtml(reproduction(session, layout.findings[0]?.finding ?? null))}
<p class="legend-note">Forces the same interleaving with gdb in non-stop mode: the reader is held after its read until the writer's transition is visible in memory, then released.</p>
</section>
<footer>Generated by migrace from session ${session.id}. This file makes no network request; its styles and script are inline.</footer>`;
  return htmlPage(`migrace session ${session.id}: ${cleanText(session.label)} (${layout.verdict.kind})`, body);
}
