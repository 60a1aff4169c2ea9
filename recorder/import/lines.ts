import { splitLines } from './merge.js';

/*
 * How text reaches an importer: a LineSink is fed the file's head (for the
 * checks that need no parsing: empty, binary, which kind of log it looks
 * like), then one line at a time, then asked for its result. Lines longer
 * than the sink's maxLine never reach it whole: it hears their number,
 * length and first characters instead, so one giant line costs no memory.
 */

/** How much of a file's start `begin` sees. */
export const HEAD_CHARS = 65536;
/** How much of an over-long line its sink sees. */
export const LONG_LINE_HEAD = 256;

export interface LineSink<R> {
  readonly maxLine: number;
  begin(head: string): void;
  line(text: string, n: number): void;
  tooLong(n: number, length: number, head: string): void;
  finish(): R;
}

/** Feed a text that is already in memory (tests, small files) to a sink. */
export function readText<R>(sink: LineSink<R>, text: string): R {
  sink.begin(text.slice(0, HEAD_CHARS));
  splitLines(text).forEach((raw, i) => {
    if (raw.length > sink.maxLine) sink.tooLong(i + 1, raw.length, raw.slice(0, LONG_LINE_HEAD));
    else sink.line(raw, i + 1);
  });
  return sink.finish();
}
