// d3-node ships no type declarations and @types/d3 is not installed: the
// small part of the selection API used here is typed by `Sel` below.
// @ts-ignore
import { D3Node } from 'd3-node';
import type { Session, Thread, TraceEvent } from '../trace/schema.js';
import type { Analysis } from '../analyzer/types.js';
import { RAM_REQUIRED_BY_OLD_LIBVIRT, normalizeStatusName } from '../trace/status.js';
import { CHAR_W, layoutTimeline, type LayoutOptions, type Mark, type TimelineLayout } from './timeline.js';
import { cleanMultiline, cleanText, truncate, wrapWords } from './safe-text.js';

/*
 * The timeline as SVG, built through d3-node's DOM: every piece of trace text
 * goes in as a text node or an attribute value and the serializer escapes it.
 * No markup is ever assembled from trace text by hand. Colours are
 * presentation attributes, not a <style> block, so the same SVG works
 * standalone and inside the HTML report under a strict CSP.
 */

interface Sel {
  node(): unknown;
  append(name: string): Sel;
  attr(name: string, value: string | number): Sel;
  text(value: string): Sel;
}

interface D3NodeInstance {
  createSVG(width?: number, height?: number, attrs?: Record<string, string | number>): Sel;
  window: { XMLSerializer: new () => { serializeToString(node: unknown): string } };
  document: { body: { replaceChildren(): void } };
}

export interface SvgOptions {
  /** Draw the title and verdict lines (off when the page around says them already). */
  header?: boolean;
  /** Prefix of element ids (the arrowhead marker): unique per SVG on one page. */
  idPrefix?: string;
  /** Add the XML declaration for a file of its own. */
  standalone?: boolean;
}

export const COLORS = {
  manifested: '#d93025',
  benign: '#188038',
  'window-only': '#e37400',
  transition: '#e37400',
  crossing: '#d93025',
  read: '#1a73e8',
  publish: '#1a73e8',
  query: '#5f6368',
  replyOk: '#188038',
  replyBad: '#d93025',
  hold: '#9334e6',
  note: '#80868b',
  ink: '#202124',
  muted: '#5f6368',
  laneA: '#f8f9fb',
  laneB: '#ffffff',
  grid: '#c7cad1',
  bin: '#6b7280',
} as const;

const FONT = "ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace";

function r1(n: number): number {
  return Math.round(n * 10) / 10;
}

function t(s: string): string {
  return cleanText(s);
}

function bandFill(cls: string): string {
  return cls === 'manifested' ? '#fce8e6' : cls === 'benign' ? '#e6f4ea' : '#fef7e0';
}

function replyBad(m: Mark): boolean {
  if (m.verdict) return m.verdict.fails;
  const e = m.event;
  return e.kind === 'reply' && (e.data.status === null || (RAM_REQUIRED_BY_OLD_LIBVIRT.has(normalizeStatusName(e.data.status)) && !e.data.has_ram));
}

type ShapeKey = 'transition' | 'crossing' | 'read' | 'publish' | 'spoiled' | 'query-begin' | 'query-end'
  | 'reply-ok' | 'reply-bad' | 'hold' | 'release' | 'note';

/** Each shape once, centred on (0,0); marks refer to them with <use>. */
function defineShapes(defs: Sel, prefix: string): void {
  const shape = (key: ShapeKey): Sel => defs.append('g').attr('id', `${prefix}-${key}`);
  const diamond = (s: number): string => `M0,${-s}L${s},0L0,${s}L${-s},0Z`;
  shape('transition').append('path').attr('d', diamond(7)).attr('fill', COLORS.transition).attr('stroke', '#fff').attr('stroke-width', 1);
  shape('crossing').append('path').attr('d', diamond(9)).attr('fill', COLORS.crossing).attr('stroke', '#fff').attr('stroke-width', 1);
  shape('read').append('circle').attr('r', 5.5).attr('fill', '#fff').attr('stroke', COLORS.read).attr('stroke-width', 2.5);
  shape('publish').append('rect').attr('x', -5.5).attr('y', -5.5).attr('width', 11).attr('height', 11).attr('fill', COLORS.publish);
  shape('spoiled').append('rect').attr('x', -5.5).attr('y', -5.5).attr('width', 11).attr('height', 11).attr('fill', COLORS.manifested);
  shape('query-begin').append('path').attr('d', 'M4,-10H-1V10H4').attr('fill', 'none').attr('stroke', COLORS.query).attr('stroke-width', 2);
  shape('query-end').append('path').attr('d', 'M-4,-10H1V10H-4').attr('fill', 'none').attr('stroke', COLORS.query).attr('stroke-width', 2);
  shape('reply-ok').append('rect').attr('x', -7).attr('y', -5).attr('width', 14).attr('height', 10).attr('rx', 3).attr('fill', COLORS.replyOk);
  shape('reply-bad').append('rect').attr('x', -7).attr('y', -5).attr('width', 14).attr('height', 10).attr('rx', 3).attr('fill', COLORS.replyBad);
  const hold = shape('hold');
  hold.append('rect').attr('x', -5).attr('y', -6).attr('width', 3.5).attr('height', 12).attr('fill', COLORS.hold);
  hold.append('rect').attr('x', 1.5).attr('y', -6).attr('width', 3.5).attr('height', 12).attr('fill', COLORS.hold);
  shape('release').append('path').attr('d', 'M-4,-6L6,0L-4,6Z').attr('fill', COLORS.hold);
  shape('note').append('circle').attr('r', 3).attr('fill', COLORS.note);
}

function shapeOf(m: Mark): ShapeKey {
  switch (m.kind) {
    case 'transition': return m.roles.includes('crossing') ? 'crossing' : 'transition';
    case 'publish': return m.classes.includes('spoiled') ? 'spoiled' : 'publish';
    case 'reply': return replyBad(m) ? 'reply-bad' : 'reply-ok';
    default: return m.kind;
  }
}

/**
 * One DOM for every SVG this process draws: a new D3Node is a new JSDOM
 * window, a third of the time of a small report (10 of 34 ms), and a hunt
 * draws one a cell. Each drawing is cleared from it once serialized.
 */
let sharedDom: D3NodeInstance | null = null;

/** Render a layout. Pure: layout in, SVG text out. */
export function renderSvg(layout: TimelineLayout, opts: SvgOptions = {}): string {
  const d3n = (sharedDom ??= new D3Node() as D3NodeInstance);
  try {
    return drawSvg(d3n, layout, opts);
  } finally {
    d3n.document.body.replaceChildren();
  }
}

/** One drawing in progress: what every part of it draws into and reads. */
interface Drawing {
  svg: Sel;
  layout: TimelineLayout;
  /** Prefix of this drawing's element ids (arrowhead, shapes). */
  prefix: string;
  /** The lanes' extent, top to bottom: ticks stand on it, breaks span it. */
  lanesTop: number;
  lanesBottom: number;
}

/** The parts in drawing order: later parts lie on top of earlier ones. */
function drawSvg(d3n: D3NodeInstance, layout: TimelineLayout, opts: SvgOptions): string {
  const prefix = (opts.idPrefix ?? `mt${layout.session.id}`).replace(/[^A-Za-z0-9_-]/g, '_');
  const d: Drawing = {
    svg: drawRoot(d3n, layout, opts, prefix),
    layout,
    prefix,
    lanesTop: layout.top,
    lanesBottom: layout.top + layout.lanes.reduce((s, l) => s + l.height, 0),
  };
  if (opts.header !== false) drawHeader(d);
  drawLanes(d);
  drawTicks(d);
  drawBreaks(d);
  drawBins(d);
  drawBands(d);
  drawArrows(d);
  drawMarks(d);
  drawLaneLabels(d);
  drawLegend(d);
  // XML serialization, not d3-node's svgString(): the HTML serializer leaves
  // '<' raw in attribute values and writes &nbsp;, neither of which is XML.
  // The XML form is also valid inline SVG in HTML.
  const out = new d3n.window.XMLSerializer().serializeToString(d.svg.node());
  return opts.standalone ? `<?xml version="1.0" encoding="UTF-8"?>\n${out}\n` : out;
}

/** The <svg> element with its title, the arrowhead and shapes, and the white background. */
function drawRoot(d3n: D3NodeInstance, layout: TimelineLayout, opts: SvgOptions, prefix: string): Sel {
  // Without the header the drawing starts just above the tick row.
  const crop = opts.header === false ? 46 : 0;
  const svg = d3n.createSVG(layout.width, layout.height - crop, {
    viewBox: `0 ${crop} ${layout.width} ${layout.height - crop}`,
    class: 'migrace-timeline',
    role: 'img',
    'aria-label': `${t(layout.title)}. ${t(layout.verdict.sentence)}`,
    'font-family': FONT,
    'font-size': 11,
    'data-clock': layout.clock,
    'data-summarized': layout.summarized ? 'true' : 'false',
  });
  svg.append('title').text(`${t(layout.title)}\n${t(layout.verdict.sentence)}`);
  const defs = svg.append('defs');
  defs.append('marker').attr('id', `${prefix}-arrowhead`).attr('class', 'arrowhead')
    .attr('viewBox', '0 0 10 10').attr('refX', 9).attr('refY', 5)
    .attr('markerWidth', 7).attr('markerHeight', 7).attr('orient', 'auto-start-reverse')
    .append('path').attr('d', 'M0,0L10,5L0,10Z').attr('fill', COLORS.crossing);
  defineShapes(defs, prefix);
  svg.append('rect').attr('class', 'background').attr('width', layout.width).attr('height', layout.height).attr('fill', '#fff');
  return svg;
}

/** What this is and what happened: the title and up to two verdict lines. */
function drawHeader({ svg, layout }: Drawing): void {
  const head = svg.append('g').attr('class', 'header');
  head.append('text').attr('x', 10).attr('y', 17).attr('font-size', 13).attr('font-weight', 'bold').attr('fill', COLORS.ink)
    .text(truncate(t(layout.title), Math.floor((layout.width - 20) / 7.8)));
  const vColor = layout.verdict.kind === 'reproduced' || layout.verdict.kind === 'replies-fail'
    ? COLORS.manifested : layout.verdict.kind === 'not-reproduced' || layout.verdict.kind === 'clean' ? COLORS.benign
      : layout.verdict.kind === 'infeasible' ? COLORS['window-only'] : COLORS.muted;
  const perLine = Math.max(40, Math.floor((layout.width - 20) / CHAR_W));
  wrapWords(t(layout.verdict.sentence), perLine, 2).forEach((line, i) => {
    head.append('text').attr('class', 'verdict-line').attr('x', 10).attr('y', 34 + i * 14).attr('fill', vColor).text(line);
  });
}

/** Lanes: background and axis; the names are drawn last, on top (drawLaneLabels). */
function drawLanes({ svg, layout }: Drawing): void {
  const lanesG = svg.append('g').attr('class', 'lanes');
  for (const lane of layout.lanes) {
    const g = lanesG.append('g').attr('class', `lane lane-${lane.kind}${lane.role ? ` lane-${lane.role.replace('+', '-')}` : ''}`)
      .attr('data-thread', lane.tid === null ? 'client' : String(lane.tid)).attr('data-lane', lane.index);
    g.append('title').text(`${t(lane.label)}${lane.role ? ` (${lane.role})` : ''}: ${lane.events} events`);
    g.append('rect').attr('x', 0).attr('y', lane.top).attr('width', layout.width).attr('height', lane.height)
      .attr('fill', lane.index % 2 === 0 ? COLORS.laneA : COLORS.laneB);
    g.append('line').attr('x1', layout.gutter).attr('x2', layout.width - 10).attr('y1', lane.y).attr('y2', lane.y)
      .attr('stroke', COLORS.grid).attr('stroke-width', 1);
  }
}

/** Ticks: time or seq at the start and after each break. */
function drawTicks({ svg, layout, lanesTop }: Drawing): void {
  const ticksG = svg.append('g').attr('class', 'ticks');
  for (const tk of layout.ticks) {
    ticksG.append('line').attr('x1', r1(tk.x)).attr('x2', r1(tk.x)).attr('y1', lanesTop - 6).attr('y2', lanesTop)
      .attr('stroke', COLORS.muted);
    ticksG.append('text').attr('x', r1(tk.x)).attr('y', lanesTop - 9).attr('font-size', 10).attr('fill', COLORS.muted)
      .attr('text-anchor', 'middle').text(t(tk.label));
  }
}

/** A break's edge: a zigzag down the lanes at x. */
function zigzag(x: number, top: number, bottom: number): string {
  let d = `M${r1(x)},${top}`;
  for (let y = top, i = 0; y < bottom; y += 8, i++) d += `L${r1(x + (i % 2 ? -3 : 3))},${Math.min(bottom, y + 8)}`;
  return d;
}

/** Breaks: quiet stretches drawn at a fixed width. */
function drawBreaks({ svg, layout, lanesTop, lanesBottom }: Drawing): void {
  const breaksG = svg.append('g').attr('class', 'breaks');
  for (const b of layout.breaks) {
    const g = breaksG.append('g').attr('class', 'break').attr('data-after-seq', b.afterSeq).attr('data-before-seq', b.beforeSeq);
    g.append('title').text(`${b.label} with no events (#${b.afterSeq} .. #${b.beforeSeq}), drawn compressed`);
    const w = Math.max(4, b.x1 - b.x0);
    g.append('rect').attr('x', r1(b.x0)).attr('y', lanesTop).attr('width', r1(w)).attr('height', lanesBottom - lanesTop)
      .attr('fill', '#eceff3');
    g.append('path').attr('d', zigzag(b.x0 + 2, lanesTop, lanesBottom)).attr('fill', 'none').attr('stroke', '#9aa0a6');
    g.append('path').attr('d', zigzag(b.x0 + w - 2, lanesTop, lanesBottom)).attr('fill', 'none').attr('stroke', '#9aa0a6');
    g.append('text').attr('x', r1(b.x0 + w / 2)).attr('y', lanesBottom + 12).attr('font-size', 10).attr('text-anchor', 'middle')
      .attr('fill', COLORS.muted).text(t(b.label));
  }
}

/** Density bins, when the session is summarized: one bar per lane, height and opacity on a log scale of the count. */
function drawBins({ svg, layout }: Drawing): void {
  if (!layout.bins.length) return;
  const binsG = svg.append('g').attr('class', 'bins');
  let max = 1;
  for (const b of layout.bins) for (const c of b.perLane) max = Math.max(max, c);
  const lmax = Math.log(max + 1);
  for (const b of layout.bins) {
    const g = binsG.append('g').attr('class', 'bin').attr('data-from-seq', b.fromSeq).attr('data-to-seq', b.toSeq).attr('data-count', b.count);
    g.append('title').text(cleanMultiline(b.tooltip));
    b.perLane.forEach((c, i) => {
      if (c === 0) return;
      const lane = layout.lanes[i]!;
      const h = 4 + 28 * (Math.log(c + 1) / lmax);
      g.append('rect').attr('x', r1(b.x0)).attr('y', r1(lane.y - h / 2)).attr('width', r1(b.x1 - b.x0)).attr('height', r1(h))
        .attr('fill', COLORS.bin).attr('fill-opacity', r1(0.25 + 0.6 * (Math.log(c + 1) / lmax)));
    });
  }
}

/** Finding windows, each labelled on the side its arrows do not come from. */
function drawBands({ svg, layout }: Drawing): void {
  const bandsG = svg.append('g').attr('class', 'bands');
  for (const b of layout.bands) {
    const color = COLORS[b.cls];
    const g = bandsG.append('g').attr('class', `band band-${b.cls}${b.approximate ? ' approximate' : ''}`)
      .attr('data-finding', t(b.finding)).attr('data-from-seq', b.fromSeq).attr('data-to-seq', b.toSeq);
    g.append('title').text(cleanMultiline(b.tooltip));
    g.append('rect').attr('x', r1(b.x0)).attr('y', r1(b.y0)).attr('width', r1(Math.max(2, b.x1 - b.x0))).attr('height', r1(b.y1 - b.y0))
      .attr('rx', 6).attr('fill', bandFill(b.cls)).attr('stroke', color).attr('stroke-width', 1.5)
      .attr('stroke-dasharray', b.approximate ? '4 3' : 'none');
    const fromBelow = layout.arrows.some((a) => a.finding === b.finding && a.fromLane > b.lane);
    g.append('text').attr('class', 'band-label').attr('x', r1(b.x0 + 4)).attr('y', r1(fromBelow ? b.y0 - 4 : b.y1 + 10)).attr('font-size', 10)
      .attr('font-weight', 'bold').attr('fill', color).text(truncate(t(b.label), 40));
  }
}

/** Arrows from the crossing transitions into the windows. */
function drawArrows({ svg, layout, prefix }: Drawing): void {
  const arrowsG = svg.append('g').attr('class', 'arrows');
  for (const a of layout.arrows) {
    const mx = (a.x1 + a.x2) / 2 + 14;
    const my = (a.y1 + a.y2) / 2;
    const p = arrowsG.append('path').attr('class', 'crossing-arrow')
      .attr('d', `M${r1(a.x1)},${r1(a.y1)}Q${r1(mx)},${r1(my)} ${r1(a.x2)},${r1(a.y2)}`)
      .attr('fill', 'none').attr('stroke', COLORS.crossing).attr('stroke-width', 2.2)
      .attr('marker-end', `url(#${prefix}-arrowhead)`)
      .attr('data-finding', t(a.finding)).attr('data-from-seq', a.fromSeq).attr('data-to-seq', a.toSeq ?? '')
      .attr('data-from-lane', a.fromLane).attr('data-to-lane', a.toLane);
    p.append('title').text(t(a.label));
  }
}

/** The events: a shape each, with its label and a reply's verdict. */
function drawMarks({ svg, layout, prefix }: Drawing): void {
  const marksG = svg.append('g').attr('class', 'marks');
  for (const m of layout.marks) {
    const lane = layout.lanes[m.lane]!;
    const g = marksG.append('g').attr('class', m.classes.map(t).join(' '))
      .attr('data-seq', m.seq).attr('data-kind', m.kind)
      .attr('data-thread', lane.tid === null ? 'client' : String(lane.tid))
      .attr('transform', `translate(${r1(m.x)},${r1(m.y)})`);
    if (m.findings.length) g.attr('data-findings', m.findings.map(t).join(' '));
    // Events outside the story stay visible but step back.
    if (!m.labelled) g.attr('opacity', 0.55);
    g.append('title').text(cleanMultiline(m.tooltip));
    g.append('use').attr('class', 'mark-shape').attr('href', `#${prefix}-${shapeOf(m)}`);
    if (m.labelled) {
      const crossing = m.roles.includes('crossing');
      g.append('text').attr('class', 'mark-label').attr('x', -4).attr('y', m.tier === 0 ? -13 : 23)
        .attr('fill', crossing ? COLORS.crossing : COLORS.ink).attr('font-weight', crossing || m.findings.length ? 'bold' : 'normal')
        .text(t(m.label));
    }
    if (m.verdict) {
      g.append('text').attr('class', 'verdict-label').attr('x', -4).attr('y', 23).attr('font-weight', 'bold')
        .attr('fill', m.verdict.fails ? COLORS.replyBad : COLORS.replyOk).text(t(m.verdict.text));
    }
  }
}

/**
 * Lane names last, on an opaque strip: the HTML report keeps this group at
 * the left edge while the timeline scrolls, so a thread is always named.
 */
function drawLaneLabels({ svg, layout }: Drawing): void {
  const heads = svg.append('g').attr('class', 'lane-labels');
  for (const lane of layout.lanes) {
    const g = heads.append('g').attr('class', 'lane-head').attr('data-thread', lane.tid === null ? 'client' : String(lane.tid));
    g.append('title').text(`${t(lane.label)}${lane.role ? ` (${lane.role})` : ''}: ${lane.events} events`);
    g.append('rect').attr('x', 0).attr('y', lane.top).attr('width', layout.gutter - 6).attr('height', lane.height)
      .attr('fill', lane.index % 2 === 0 ? COLORS.laneA : COLORS.laneB).attr('fill-opacity', 0.94);
    const maxChars = Math.floor((layout.gutter - 16) / CHAR_W);
    g.append('text').attr('class', 'lane-label').attr('x', 8).attr('y', lane.y - 2)
      .attr('font-weight', lane.role ? 'bold' : 'normal').attr('fill', COLORS.ink)
      .text(truncate(t(lane.label), maxChars));
    const sub = lane.kind === 'client' ? 'replies' : lane.role ?? `${lane.events} events`;
    g.append('text').attr('class', 'lane-role').attr('x', 8).attr('y', lane.y + 13).attr('font-size', 10)
      .attr('fill', lane.role === 'reader' ? COLORS.read : lane.role ? COLORS.crossing : COLORS.muted).text(sub);
  }
}

/** The legend's entries: a label and how its sample is drawn. */
const LEGEND: ReadonlyArray<[string, (g: Sel) => void]> = [
  ['transition', (g) => g.append('path').attr('d', 'M0,-6L6,0L0,6L-6,0Z').attr('fill', COLORS.transition)],
  ['crossing transition', (g) => g.append('path').attr('d', 'M0,-6L6,0L0,6L-6,0Z').attr('fill', COLORS.crossing)],
  ['read', (g) => g.append('circle').attr('r', 4.5).attr('fill', '#fff').attr('stroke', COLORS.read).attr('stroke-width', 2)],
  ['publish', (g) => g.append('rect').attr('x', -5).attr('y', -5).attr('width', 10).attr('height', 10).attr('fill', COLORS.publish)],
  ['query begin/end', (g) => g.append('path').attr('d', 'M4,-7H-1V7H4').attr('fill', 'none').attr('stroke', COLORS.query).attr('stroke-width', 2)],
  ['reply ok / bad', (g) => {
    g.append('rect').attr('x', -7).attr('y', -5).attr('width', 7).attr('height', 10).attr('fill', COLORS.replyOk);
    g.append('rect').attr('x', 0).attr('y', -5).attr('width', 7).attr('height', 10).attr('fill', COLORS.replyBad);
  }],
  ['hold / release', (g) => g.append('path').attr('d', 'M-4,-6L6,0L-4,6Z').attr('fill', COLORS.hold)],
  ['read->publish window', (g) => g.append('rect').attr('x', -7).attr('y', -6).attr('width', 14).attr('height', 12).attr('rx', 3)
    .attr('fill', bandFill('manifested')).attr('stroke', COLORS.manifested)],
];
const LEGEND_BINS: [string, (g: Sel) => void] =
  ['events (summarized)', (g) => g.append('rect').attr('x', -2).attr('y', -6).attr('width', 4).attr('height', 12).attr('fill', COLORS.bin)];

/** The legend along the bottom; the bins' entry only where the session is summarized. */
function drawLegend({ svg, layout }: Drawing): void {
  const ly = layout.height - 14;
  const legend = svg.append('g').attr('class', 'legend').attr('font-size', 10).attr('fill', COLORS.muted);
  const items = layout.bins.length ? [...LEGEND, LEGEND_BINS] : LEGEND;
  let lx = 16;
  for (const [label, draw] of items) {
    const g = legend.append('g').attr('transform', `translate(${lx},${ly})`);
    draw(g);
    g.append('text').attr('x', 11).attr('y', 4).text(label);
    lx += 26 + Math.ceil(label.length * 6.2);
  }
}

/** Layout and render in one call: the standalone SVG file. */
export function renderSessionSvg(
  session: Session, threads: readonly Thread[], events: readonly TraceEvent[], analysis: Analysis | null,
  opts: LayoutOptions & SvgOptions = {},
): string {
  return renderSvg(layoutTimeline(session, threads, events, analysis, opts), { standalone: true, ...opts });
}
