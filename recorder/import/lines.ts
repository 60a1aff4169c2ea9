import { closeSync, createReadStream, openSync, readSync, statSync } from 'node:fs';
import { createGunzip } from 'node:zlib';
import type { Readable } from 'node:stream';
import { MigraceError, messageOf } from '../../trace/errors.js';
import { splitLines } from './merge.js';

/*
 * How text reaches an importer: a LineSink is fed the file's head (for the
 * checks that need no parsing: binary, which kind of log it looks like),
 * then one line at a time, then asked for its result. Lines longer than the
 * sink's maxLine never reach it whole: it hears their number, length and
 * first characters instead, so one giant line costs no memory.
 *
 * Two feeders: readText() for a text already in memory (tests, the parse*
 * functions), readFileLines() for a file, read as a stream: gzip (by its
 * magic bytes) is inflated on the way with a cap on the inflated size, and
 * memory follows the longest line kept (maxLine), not the file.
 */

/** How much of a file's start `begin` sees. */
export const HEAD_CHARS = 65536;
/** How much of an over-long line its sink sees. */
export const LONG_LINE_HEAD = 256;
const MAX_STRING = 2 ** 29 - 24;
/** The most an import reads: a plain file's size, or what a gzip inflates to. */
export const MAX_INPUT_BYTES = 512 * 1024 * 1024;

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

const MiB = (n: number): string => `${(n / 1048576).toFixed(n < 10 * 1048576 ? 1 : 0)} MiB`;

/** A file as a stream of text chunks: gzip inflated (by its magic bytes, whatever the name), never past MAX_INPUT_BYTES. */
async function* textChunks(file: string, maxBytes = MAX_INPUT_BYTES): AsyncGenerator<string> {
  let size: number;
  let gzip = false;
  try {
    const st = statSync(file);
    if (st.isDirectory()) throw new MigraceError('IMPORT', `${file} is a directory, not a log file`);
    size = st.size;
    const fd = openSync(file, 'r');
    try {
      const magic = Buffer.alloc(2);
      gzip = readSync(fd, magic, 0, 2, 0) === 2 && magic[0] === 0x1f && magic[1] === 0x8b;
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    if (e instanceof MigraceError) throw e;
    throw new MigraceError('IMPORT', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : messageOf(e)}`, { cause: e });
  }
  if (size > maxBytes) {
    throw new MigraceError('IMPORT', `${file} is ${Math.round(size / 1048576)} MiB: larger than the ${maxBytes / 1048576} MiB an import reads; cut it to the migration's time span first`);
  }
  // Each read of a file stream allocates a buffer of highWaterMark bytes: 1 MiB
  // for a log of a few hundred bytes (two reads: the data, then EOF) made an
  // import of a small file mostly garbage collection. The size it had at the
  // stat, within 64 KiB and 1 MiB, reads a small file in one piece.
  const raw = createReadStream(file, { highWaterMark: Math.min(1 << 20, Math.max(1 << 16, size + 1)) });
  const inflater = gzip ? createGunzip({ chunkSize: 1 << 20 }) : null;
  if (inflater) {
    raw.on('error', (e) => inflater.destroy(e));
    raw.pipe(inflater);
  }
  const source: Readable = inflater ?? raw;
  const decoder = new TextDecoder('utf-8', { fatal: false });
  let inflated = 0;
  try {
    for await (const chunk of source) {
      const buf = chunk as Buffer;
      inflated += buf.length;
      if (inflated > maxBytes) {
        throw new MigraceError('IMPORT', `${file}: more than ${maxBytes / 1048576} MiB once inflated (from a file of ${MiB(size)}): a gzip bomb, or a log to cut to the migration's time span first`);
      }
      const text = decoder.decode(buf, { stream: true });
      if (text) yield text;
    }
  } catch (e) {
    if (e instanceof MigraceError) throw e;
    if (inflater && (e as NodeJS.ErrnoException).code !== 'ENOENT' && (e as NodeJS.ErrnoException).code !== 'EACCES') {
      const why = (e as NodeJS.ErrnoException).code === 'Z_BUF_ERROR' || /unexpected end of file/i.test(messageOf(e))
        ? 'truncated gzip data (the file ends before the compressed stream does)' : `corrupt gzip data (${messageOf(e)})`;
      throw new MigraceError('IMPORT', `${file}: ${why}`, { cause: e });
    }
    throw new MigraceError('IMPORT', `cannot read ${file}: ${messageOf(e)}`, { cause: e });
  } finally {
    source.destroy();
    raw.destroy();
  }
  const rest = decoder.decode();
  if (rest) yield rest;
}

/**
 * Feed a file to a sink as lines, the way splitLines() cuts them (CR LF and
 * lone CR end a line too, a BOM is dropped): its head first, then each line
 * when it is complete; a line longer than maxLine is given as its length and
 * its first characters only.
 */
export async function readFileLines<R>(file: string, sink: LineSink<R>): Promise<R> {
  let head = '';
  let begun = false;
  const held: [string, number][] = [];
  let cur = '';
  let curLen = 0;
  let n = 0;
  let pendingCR = false;
  let bom = true;

  const emit = (text: string, length: number): void => {
    n++;
    if (!begun) {
      held.push([text, length]);
      return;
    }
    deliver(text, length, n);
  };
  const deliver = (text: string, length: number, at: number): void => {
    if (length > sink.maxLine) sink.tooLong(at, length, text.slice(0, LONG_LINE_HEAD));
    else sink.line(text, at);
  };
  const start = (): void => {
    sink.begin(head);
    begun = true;
    held.forEach(([text, length], i) => deliver(text, length, i + 1));
    held.length = 0;
  };
  const add = (piece: string): void => {
    // Keep a line's text only up to its sink's limit (and a little, so the length shows).
    if (curLen <= sink.maxLine) cur += piece.length + curLen > sink.maxLine + 1 ? piece.slice(0, sink.maxLine + 1 - curLen) : piece;
    curLen += piece.length;
  };

  for await (let text of textChunks(file)) {
    if (bom) {
      if (text.startsWith('\ufeff')) text = text.slice(1);
      bom = false;
    }
    if (!begun) {
      head += text.slice(0, HEAD_CHARS - head.length);
      if (head.length >= HEAD_CHARS) start();
    }
    let i = 0;
    if (pendingCR) {
      pendingCR = false;
      if (text.startsWith('\n')) i = 1;
    }
    // The next LF and CR at or after i, each searched again only once passed (a chunk without CR is searched once).
    let nl = -2;
    let cr = -2;
    while (i < text.length) {
      if (nl !== -1 && nl < i) nl = text.indexOf('\n', i);
      if (cr !== -1 && cr < i) cr = text.indexOf('\r', i);
      const end = nl < 0 ? cr : cr < 0 ? nl : Math.min(nl, cr);
      if (end < 0) {
        add(text.slice(i));
        break;
      }
      add(text.slice(i, end));
      emit(cur, curLen);
      cur = '';
      curLen = 0;
      if (text[end] === '\r') {
        if (end + 1 === text.length) pendingCR = true;
        else if (text[end + 1] === '\n') i = end + 2;
        else i = end + 1;
        if (pendingCR) break;
        continue;
      }
      i = end + 1;
    }
  }
  if (curLen > 0) emit(cur, curLen);
  if (!begun) start();
  return sink.finish();
}

/** A whole (small) file's text, gzip inflated, under the same caps: for formats read in one piece (session JSON). */
export async function readWholeFile(file: string): Promise<string> {
  const parts: string[] = [];
  let length = 0;
  for await (const t of textChunks(file)) {
    length += t.length;
    // V8's longest string (2^29 - 24 characters): past it, a whole-file format cannot be read at all.
    if (length > MAX_STRING) throw new MigraceError('IMPORT', `${file}: more than ${Math.floor(MAX_STRING / 1048576)} MiB of text, more than one piece can hold: too large to read as one document`);
    parts.push(t);
  }
  const text = parts.join('');
  return text.startsWith('\ufeff') ? text.slice(1) : text;
}
