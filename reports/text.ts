import type { Session, Thread, TraceEvent } from '../trace/schema.js';
import type { Analysis } from '../analyzer/types.js';
import { layoutTimeline, type Bin, type LayoutOptions, type Mark, type TimelineLayout } from './timeline.js';
import { reproduction, scheduleJsonLines } from './reproduce.js';
import { cleanText, codeSpan, truncate, wrapWords } from './safe-text.js';
import { statusNamesText } from './labels.js';
import { infeasibleOf } from './session-meta.js';

/*
 * Plain text and Markdown for a Launchpad or Bugzilla comment: a swimlane
 * diagram that fits 80 columns (a column per thread, a row per event in seq
 * order, runs of uninteresting events folded into one line), the findings
 * with their evidence seqs, the verdict and the command that reproduces it
 * (with the schedule itself, as fenced JSON, when the session replayed one
 * that is not built in). Every line of the plain text, and every line inside
 * the Markdown fences, is at most `width` characters, but for a schedule's
 * JSON: plain text shortens a long description to fit (names it cannot),
 * Markdown prints the schedule whole.
 */

export interface TextOptions extends LayoutOptions {
  /** Line width (default 80). */
  columns?: number;
}

const MIN_COL = 14;

function len(s: string): number {
  return Array.from(s).length;
}

function pad(s: string, w: number): string {
  const l = len(s);
  return l >= w ? s : s + ' '.repeat(w - l);
}

function padLeft(s: string, w: number): string {
  const l = len(s);
  return l >= w ? s : ' '.repeat(w - l) + s;
}

function fit(s: string, w: number): string {
  return truncate(s, Math.max(1, w));
}

/** Wrap to `width` with a hanging indent. */
function wrap(s: string, width: number, indent = '', first = ''): string[] {
  const w = Math.min(width - len(indent), width - len(first));
  const lines = wrapWords(cleanText(s), Math.max(10, w));
  return lines.map((l, i) => (i === 0 ? first : indent) + l);
}

/** A shell command broken at spaces with backslash continuations. */
function wrapCommand(cmd: string, width: number, indent: string): string[] {
  const words = cmd.split(' ');
  const out: string[] = [];
  let cur = indent;
  for (const w of words) {
    const next = cur.trim() ? `${cur} ${w}` : `${cur}${w}`;
    if (len(next) + 2 > width && cur.trim()) {
      out.push(`${cur} \\`);
      cur = `${indent}    ${w}`;
    } else {
      cur = next;
    }
  }
  out.push(cur);
  return out;
}

interface Column {
  lanes: number[];
  title: string[];
  width: number;
  merged: boolean;
}

/** The swimlane diagram, every line at most `width` characters. */
export function swimlaneDiagram(layout: TimelineLayout, width = 80): string[] {
  const lastSeq = layout.marks.length ? layout.marks[layout.marks.length - 1]!.seq : 0;
  const binLast = layout.bins.length ? layout.bins[layout.bins.length - 1]!.toSeq : 0;
  const seqW = Math.max(4, len(`#${Math.max(lastSeq, binLast)}`)) + 1;

  // Columns: lanes that have something to show; readers and writers first
  // (the layout already ordered them so).
  const busy = layout.lanes.filter((l) => l.events > 0 || l.role);
  const idle = layout.lanes.filter((l) => !(l.events > 0 || l.role));
  const maxCols = Math.max(1, Math.floor((width - seqW) / MIN_COL));
  const cols: Column[] = [];
  busy.forEach((l, i) => {
    if (i < maxCols - 1 || busy.length <= maxCols) {
      cols.push({ lanes: [l.index], title: [], width: 0, merged: false });
    } else if (i === maxCols - 1) {
      cols.push({ lanes: [l.index], title: [], width: 0, merged: true });
    } else {
      cols[cols.length - 1]!.lanes.push(l.index);
    }
  });
  if (cols.length === 0) return ['(no events)'];
  const avail = width - seqW;
  const colW = Math.floor(avail / cols.length);
  cols.forEach((c, i) => {
    c.width = i === cols.length - 1 ? avail - colW * (cols.length - 1) : colW;
    if (c.merged && c.lanes.length > 1) {
      c.title = [fit('other threads', c.width - 1), fit(`(${c.lanes.length} lanes)`, c.width - 1)];
    } else {
      const lane = layout.lanes[c.lanes[0]!]!;
      const name = lane.kind === 'client' ? 'QMP client' : cleanText(lane.name ?? `thread ${lane.tid}`);
      const sub = lane.kind === 'client' ? '(replies)' : lane.lwp !== null ? `(LWP ${lane.lwp})` : lane.tid !== null ? `(tid ${lane.tid})` : '';
      c.title = [fit(name, c.width - 1), fit(`${sub}${lane.role ? ` ${lane.role}` : ''}`, c.width - 1)];
    }
  });
  const colOfLane = new Map<number, number>();
  cols.forEach((c, i) => c.lanes.forEach((l) => colOfLane.set(l, i)));
  const colStart = (i: number): number => seqW + cols.slice(0, i).reduce((s, c) => s + c.width, 0);

  // Open windows per reader lane: which finding's read->publish is open.
  const windows = layout.bands.map((b) => ({ lane: b.lane, from: b.fromSeq, to: b.toSeq, id: cleanText(b.finding) }));
  const readerOpen = (lane: number, seq: number): string | null => {
    for (const w of windows) if (w.lane === lane && seq > w.from && seq < w.to) return w.id;
    return null;
  };

  const lines: string[] = [];
  const row = (cells: string[], seqText: string): string => {
    let s = padLeft(seqText, seqW - 1) + ' ';
    cells.forEach((c, i) => {
      const w = cols[i]!.width;
      s += i === cols.length - 1 ? fit(c, w) : pad(fit(c, w - 1), w);
    });
    return s.replace(/\s+$/, '');
  };
  lines.push(row(cols.map((c) => c.title[0]!), 'seq'));
  lines.push(row(cols.map((c) => c.title[1]!), ''));
  lines.push(row(cols.map((c) => '-'.repeat(Math.max(1, c.width - 1))), '-'.repeat(seqW - 1)));

  const idleCell = (laneIdx: number, seq: number): string => (readerOpen(laneIdx, seq) ? ':' : '|');
  const cellsFor = (seq: number, except: number | null): string[] =>
    cols.map((c, i) => (i === except ? '' : c.lanes.some((l) => readerOpen(l, seq)) ? ':' : idleCell(c.lanes[0]!, seq)));

  const markText = (m: Mark): string => {
    const bits: string[] = [];
    for (const id of m.findings.map(cleanText)) {
      if (m.roles.includes('crossing')) bits.push(`>>${id}`);
      else if (m.roles.includes('read')) bits.push(`[${id}`);
      else if (m.roles.includes('publish')) bits.push(`${id}]`);
      else if (m.roles.includes('reply')) bits.push(`<${id}`);
    }
    const col = cols[colOfLane.get(m.lane)!]!;
    let label = m.label;
    if (col.merged && col.lanes.length > 1) {
      const lane = layout.lanes[m.lane]!;
      label = `${cleanText(lane.name ?? `t${lane.tid}`)}: ${label}`;
    }
    const marker = bits.length ? ` ${[...new Set(bits)].join(' ')}` : '';
    return fit(label, col.width - 1 - len(marker)) + marker;
  };

  // Fold runs of unlabelled marks and bins.
  let pendingMarks: Mark[] = [];
  let pendingBins: Bin[] = [];
  const flush = (): void => {
    if (pendingMarks.length === 0 && pendingBins.length === 0) return;
    if (pendingBins.length === 0 && pendingMarks.length <= 2) {
      for (const m of pendingMarks) emitMark(m);
    } else {
      let events = pendingMarks.length;
      let polls = pendingMarks.filter((m) => m.kind === 'query-begin').length;
      let from = Infinity;
      let to = -Infinity;
      for (const m of pendingMarks) { from = Math.min(from, m.seq); to = Math.max(to, m.seq); }
      for (const b of pendingBins) {
        events += b.count;
        polls += b.kinds['query-begin'] ?? 0;
        from = Math.min(from, b.fromSeq);
        to = Math.max(to, b.toSeq);
      }
      const what = polls > 0
        ? `... ${polls.toLocaleString('en-US')} ${polls === 1 ? 'poll' : 'polls'} elided (${events.toLocaleString('en-US')} events, #${from}-#${to}) ...`
        : `... ${events.toLocaleString('en-US')} events elided (#${from}-#${to}) ...`;
      lines.push(fit(' '.repeat(seqW) + what, width));
    }
    pendingMarks = [];
    pendingBins = [];
  };
  const emitMark = (m: Mark): void => {
    const ci = colOfLane.get(m.lane);
    if (ci === undefined) return;
    const cells = cellsFor(m.seq, ci);
    cells[ci] = markText(m);
    lines.push(row(cells, `#${m.seq}`));
    if (m.verdict) {
      const start = colStart(ci);
      const indent = width - start >= 34 ? start : seqW;
      const text = `^ ${cleanText(m.verdict.text)}`;
      for (const l of wrap(text, width, ' '.repeat(indent + 2), ' '.repeat(indent))) lines.push(l);
    }
  };
  const few = layout.marks.length <= 12;
  let bi = 0;
  for (const m of layout.marks) {
    while (bi < layout.bins.length && layout.bins[bi]!.fromIndex < m.index) pendingBins.push(layout.bins[bi++]!);
    if (m.labelled || few) {
      flush();
      emitMark(m);
    } else {
      pendingMarks.push(m);
    }
  }
  while (bi < layout.bins.length) pendingBins.push(layout.bins[bi++]!);
  flush();

  if (layout.bands.length) {
    const id = cleanText(layout.bands[0]!.finding);
    lines.push('');
    for (const l of wrap(`[${id} .. ${id}] is ${id}'s read->publish window on the reader (":" while it is open); >>${id} marks the transition that crossed it; <${id} the reply it produced.`, width, '  ', '')) lines.push(l);
  }
  if (idle.length) {
    for (const l of wrap(`threads without events: ${idle.map((l) => l.label).join(', ')}`, width, '  ', '')) lines.push(l);
  }
  return lines.map((l) => fit(l, width));
}

function headerLines(session: Session, layout: TimelineLayout, width: number): string[] {
  const t = session.target;
  const out: string[] = [];
  out.push(...wrap(`migrace report: session ${session.id} "${cleanText(session.label)}" (${session.origin}, ${session.state})`, width, '  ', ''));
  const target = [t.kind, t.binary ? cleanText(t.binary) : null, t.qemu_version ? `QEMU ${cleanText(t.qemu_version)}` : null, `variant ${t.variant}`,
    t.build_id ? `build-id ${cleanText(t.build_id)}` : null].filter(Boolean).join(', ');
  out.push(...wrap(`target: ${target}`, width, '  ', ''));
  const span = layout.clock === 'time' ? 'real time' : 'event order (no clock)';
  out.push(...wrap(`events: ${layout.totalEvents}${layout.summarized ? ' (summarized)' : ''}; clock: ${span}`, width, '  ', ''));
  if (session.error) out.push(...wrap(`error: ${cleanText(session.error)}`, width, '  ', ''));
  return out;
}

function findingLines(layout: TimelineLayout, width: number): string[] {
  const out: string[] = [];
  if (layout.findings.length === 0) {
    out.push('No read-then-transition interleaving was found.');
    return out;
  }
  for (const f of layout.findings) {
    out.push(...wrap(`${cleanText(f.id)} ${f.cls}${f.knownAs ? ` (${f.knownAs})` : ''}, reader ${f.reader}`, width, '     ', '  '));
    out.push(...wrap(f.explanation, width, '     ', '     '));
    if (f.reply) out.push(...wrap(`reply #${f.reply.seq ?? '?'}: ${f.reply.verdict.summary}`, width, '       ', '     '));
    out.push(...wrap(`evidence: ${f.evidence.map((s) => `#${s}`).join(' ')}`, width, '       ', '     '));
    out.push(...wrap(`reproduce: ${f.reproduce}`, width, '       ', '     '));
  }
  return out;
}

/** An infeasible replay's lock-wait stack, innermost frame first. */
function lockWaitLines(session: Session): string[] {
  const inf = infeasibleOf(session);
  if (!inf || inf.stack.length === 0) return [];
  return [`The reader's stack${inf.lock ? `, waiting in ${cleanText(inf.lock)}` : ''}:`, ...inf.stack.map((f, i) => `  #${i} ${cleanText(f)}`)];
}

/**
 * The Reproduce part: the schedule to save first as fenced JSON (whose
 * lines are never cut: `raw` lists them), then the command, fenced in
 * Markdown, indented in plain text.
 */
function reproduceLines(session: Session, layout: TimelineLayout, width: number, markdown: boolean): { lines: string[]; raw: Set<number> } {
  const r = reproduction(session, layout.findings[0]?.finding ?? null);
  const lines: string[] = [];
  const raw = new Set<number>();
  if (r.schedule) {
    // Plain text keeps its width (a long description is shortened); Markdown keeps the schedule whole.
    const json = scheduleJsonLines(r.schedule, markdown ? undefined : width);
    for (const l of fence(json.lines, 'json')) {
      raw.add(lines.length);
      lines.push(l);
    }
    if (json.shortened) lines.push(...wrap('(the description is shortened to fit; the replay does not read it)', width, '  ', ''));
    lines.push(`save as ${r.scheduleFile}, then:`);
  }
  lines.push(...(markdown ? fence(wrapCommand(r.command, width, ''), 'sh') : wrapCommand(r.command, width, '  ')));
  return { lines, raw };
}

function textFromLayout(session: Session, layout: TimelineLayout, width: number): string {
  const lines: string[] = [];
  lines.push(...headerLines(session, layout, width));
  lines.push('');
  lines.push(...wrap(`Verdict: ${layout.verdict.sentence}`, width, '  ', ''));
  const stack = lockWaitLines(session);
  if (stack.length) lines.push('', ...stack.map((l) => fit(l, width)));
  lines.push('');
  lines.push(...swimlaneDiagram(layout, width));
  lines.push('');
  lines.push('Findings');
  lines.push(...findingLines(layout, width));
  lines.push('');
  lines.push('Reproduce:');
  const rep = reproduceLines(session, layout, width, false);
  const out = lines.map((l) => fit(l, width));
  rep.lines.forEach((l, i) => out.push(rep.raw.has(i) ? l : fit(l, width)));
  return `${out.join('\n')}\n`;
}

/** A renderer of a session's layout at a width, as one of a session: the layout made first. */
function fromSession(render: (session: Session, layout: TimelineLayout, width: number) => string) {
  return (
    session: Session, threads: readonly Thread[], events: readonly TraceEvent[], analysis: Analysis | null,
    opts: TextOptions = {},
  ): string => render(session, layoutTimeline(session, threads, events, analysis, opts), opts.columns ?? 80);
}

/** Plain text for a bug comment. */
export const renderText = fromSession(textFromLayout);

/** Markdown: escape what would be read as markup, including raw HTML. */
export function escapeMarkdown(s: string): string {
  return cleanText(s).replace(/[\\`*_[\]<>|~&#!]/g, (c) => `\\${c}`);
}

function fence(body: string[], info: string): string[] {
  const longest = Math.max(0, ...body.map((l) => Math.max(0, ...(l.match(/`+/g) ?? []).map((r) => r.length))));
  const f = '`'.repeat(Math.max(3, longest + 1));
  return [`${f}${info}`, ...body, f];
}

function markdownFromLayout(session: Session, layout: TimelineLayout, width: number): string {
  const t = session.target;
  const md: string[] = [];
  md.push(`### migrace: session ${session.id} ${codeSpan(session.label)}`);
  md.push('');
  md.push(`**Verdict:** ${escapeMarkdown(layout.verdict.sentence)}`);
  md.push('');
  const stack = lockWaitLines(session);
  if (stack.length) md.push(...fence(stack, 'text'), '');
  md.push(`- **target:** ${escapeMarkdown(t.kind)}${t.binary ? ` ${codeSpan(t.binary)}` : ''}, variant ${escapeMarkdown(t.variant)}${t.qemu_version ? `, QEMU ${codeSpan(t.qemu_version)}` : ''}${t.build_id ? `, build-id ${codeSpan(t.build_id)}` : ''}, state names ${escapeMarkdown(statusNamesText(t))}`);
  md.push(`- **session:** ${escapeMarkdown(session.origin)}, ${escapeMarkdown(session.state)}, ${layout.totalEvents} events${layout.summarized ? ' (summarized)' : ''}, clock: ${layout.clock === 'time' ? 'real time' : 'event order'}`);
  if (session.error) md.push(`- **error:** ${escapeMarkdown(session.error)}`);
  md.push('');
  md.push(...fence(swimlaneDiagram(layout, width), 'text'));
  md.push('');
  md.push('#### Findings');
  md.push('');
  if (layout.findings.length === 0) md.push('No read-then-transition interleaving was found.');
  for (const f of layout.findings) {
    md.push(`- **${escapeMarkdown(f.id)} ${escapeMarkdown(f.cls)}**${f.knownAs ? ` (${escapeMarkdown(f.knownAs)})` : ''}: ${escapeMarkdown(f.explanation)}`);
    if (f.reply) md.push(`  - reply #${f.reply.seq ?? '?'}: ${escapeMarkdown(f.reply.verdict.summary)}`);
    md.push(`  - evidence: ${f.evidence.map((s) => `#${s}`).join(' ')}`);
  }
  md.push('');
  md.push('#### Reproduce');
  md.push('');
  md.push(...reproduceLines(session, layout, width, true).lines);
  return `${md.join('\n')}\n`;
}

/** Markdown for trackers that render it: the diagram and the command in fenced blocks. */
export const renderMarkdown = fromSession(markdownFromLayout);
