/*
 * Text from a trace, made safe to show. Everything a session holds (thread
 * names, labels, notes, replies, paths) is untrusted: a renderer or a CLI
 * command passes it through here before it reaches a terminal, a page or a
 * pasted shell command.
 *
 *  - cleanText / cleanMultiline: one printable line (or lines) for a
 *    terminal, an SVG or a tooltip;
 *  - truncate / wrapWords: fit that text to a width, counting code points;
 *  - printableShellWord: one word of a command a user pastes into a shell;
 *  - printableJson: JSON whose strings escape what must not reach a
 *    terminal, so it reads back as the same value.
 *
 * HTML and Markdown escaping happen after cleaning, in html.ts and text.ts.
 */
import { shellQuote } from '../trace/shell-quote.js';

/**
 * Make trace text safe to show on one line: control characters, bidi
 * overrides (which can make a thread name read as something else) and lone
 * surrogates become U+FFFD; newlines and tabs become spaces.
 */
// eslint-disable-next-line no-control-regex
const NEEDS_CLEANING = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]/;

export function cleanText(s: string): string {
  // Most trace text is plain: one test instead of three replaces (a million-event export cleans every field).
  if (!NEEDS_CLEANING.test(s)) return s;
  return s
    .replace(/[\t\n\r]/g, ' ')
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069\ufeff]/g, '\ufffd')
    .replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

/** cleanText line by line: for tooltips, which keep their line breaks. */
export function cleanMultiline(s: string): string {
  return s.split('\n').map(cleanText).join('\n');
}

export function truncate(s: string, max: number): string {
  // Code points never outnumber UTF-16 units: short strings need no split.
  if (s.length <= max) return s;
  const chars = Array.from(s);
  if (chars.length <= max) return s;
  return `${chars.slice(0, Math.max(0, max - 1)).join('')}\u2026`;
}

/** Split at spaces into at most `maxLines` lines of `width` characters; the last one is cut with an ellipsis. */
export function wrapWords(s: string, width: number, maxLines = Infinity): string[] {
  const words = s.split(/ +/);
  const lines: string[] = [];
  let cur = '';
  for (const w of words) {
    const chunks = Array.from(w).length > width ? (w.match(new RegExp(`.{1,${width}}`, 'gu')) ?? [w]) : [w];
    for (const c of chunks) {
      if (!cur) cur = c;
      else if (Array.from(cur).length + 1 + Array.from(c).length <= width) cur += ` ${c}`;
      else {
        lines.push(cur);
        cur = c;
      }
    }
  }
  if (cur) lines.push(cur);
  if (lines.length > maxLines) {
    const kept = lines.slice(0, maxLines);
    kept[maxLines - 1] = truncate(`${kept[maxLines - 1]} ${lines[maxLines]}`, width);
    return kept;
  }
  return lines;
}

/**
 * What must not reach a terminal raw when a command is pasted: C0 and C1
 * controls, DEL, bidi embeddings, overrides and isolates, BOM, line and
 * paragraph separators, lone surrogates.
 */
const UNSAFE_IN_SHELL = String.raw`[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]`;
const SHELL_UNSAFE = new RegExp(UNSAFE_IN_SHELL);
/** What $'...' writes as an escape: the unsafe characters, and the backslash and quote it must escape. */
const ANSI_C_ESCAPE = new RegExp(String.raw`[\\']|${UNSAFE_IN_SHELL}`, 'g');

/**
 * One word of a command a user will read and paste into bash: bare when
 * plain, 'single-quoted' otherwise, and $'...' with \xHH / \uHHHH escapes
 * when it holds a character of SHELL_UNSAFE, so the command shows and pastes
 * as printable text yet still names the same bytes. (Not for arguments a
 * program hands to /bin/sh itself: bash's $'...' is not POSIX.)
 */
export function printableShellWord(s: string): string {
  if (/^[A-Za-z0-9_\/.,:=+@%-]+$/.test(s)) return s;
  if (!SHELL_UNSAFE.test(s)) return shellQuote(s);
  return `$'${s.replace(ANSI_C_ESCAPE, (c) => {
    if (c === '\\' || c === "'") return `\\${c}`;
    const n = c.charCodeAt(0);
    return n < 0x80 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
  })}'`;
}

/** What JSON.stringify leaves raw but a terminal must not see: DEL, C1 controls, bidi, BOM, line and paragraph separators. */
// eslint-disable-next-line no-control-regex
const UNSAFE_IN_JSON = /[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/g;

/**
 * JSON.stringify, with every character that must not reach a terminal
 * written as a \uXXXX escape (JSON.stringify itself escapes C0 controls and
 * lone surrogates): printable, and JSON.parse gives the same value back.
 */
export function printableJson(value: unknown, space?: number): string {
  return (JSON.stringify(value, null, space) ?? 'null').replace(UNSAFE_IN_JSON, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A code span that survives backticks inside. */
export function codeSpan(s: string): string {
  const text = cleanText(s);
  const longest = Math.max(0, ...(text.match(/`+/g) ?? []).map((r) => r.length));
  const ticks = '`'.repeat(longest + 1);
  const padded = text.startsWith('`') || text.endsWith('`') ? ` ${text} ` : text;
  return `${ticks}${padded}${ticks}`;
}
