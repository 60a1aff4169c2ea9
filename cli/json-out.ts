import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { MigraceError, messageOf } from '../trace/errors.js';

/*
 * JSON output too large to be one string (V8 stops at about 512 MiB: a
 * session of two million events): the object is written as
 * JSON.stringify(value, null, indent) would write it, its last member an
 * array written one element at a time, in chunks (`events --json`,
 * `export`); and a file written from chunks, removed again when it cannot
 * be written whole (cli/report.ts has its own writeStreamed that this can
 * replace).
 */

const CHUNK = 1 << 20;

/** `{ ...head, [key]: [...items] }`, byte for byte as JSON.stringify(that, null, indent) prints it. */
export function writeJsonWithArray(write: (s: string) => void, head: Record<string, unknown>, key: string, items: Iterable<unknown>, indent: number): void {
  const pad = ' '.repeat(indent);
  const nested = (v: unknown, depth: string): string => JSON.stringify(v, null, indent).replace(/\n/g, `\n${depth}`);
  let buf = '{';
  let first = true;
  const flush = (): void => {
    write(buf);
    buf = '';
  };
  for (const [k, v] of Object.entries(head)) {
    if (v === undefined) continue;
    buf += `${first ? '' : ','}\n${pad}${JSON.stringify(k)}: ${nested(v, pad)}`;
    first = false;
  }
  buf += `${first ? '' : ','}\n${pad}${JSON.stringify(key)}: [`;
  let none = true;
  for (const item of items) {
    buf += `${none ? '' : ','}\n${pad}${pad}${nested(item, pad + pad)}`;
    none = false;
    if (buf.length >= CHUNK) flush();
  }
  buf += none ? ']\n}\n' : `\n${pad}]\n}\n`;
  flush();
}

/**
 * Write a file as `produce` hands it over in chunks (never one string), each
 * chunk written to the end even when the kernel takes it in parts; a file
 * that could not be written whole is removed again: half a file is worse
 * than none.
 */
export function writeFileStreamed(path: string, produce: (write: (chunk: string) => void) => void): void {
  let fd: number;
  try {
    fd = openSync(path, 'w');
  } catch (e) {
    throw new MigraceError('BAD_INPUT', `cannot write ${path}: ${messageOf(e)}`);
  }
  let ok = false;
  try {
    produce((chunk) => {
      const bytes = Buffer.from(chunk, 'utf8');
      try {
        for (let off = 0; off < bytes.length;) off += writeSync(fd, bytes, off);
      } catch (e) {
        throw new MigraceError('BAD_INPUT', `cannot write ${path}: ${messageOf(e)}`);
      }
    });
    ok = true;
  } finally {
    closeSync(fd);
    if (!ok) rmSync(path, { force: true });
  }
}

/** Where a command's JSON goes: stdout, or a file (see writeFileStreamed). */
export function jsonTarget(file: string | undefined, fn: (write: (s: string) => void) => void): void {
  if (file === undefined) fn((s) => process.stdout.write(s));
  else writeFileStreamed(file, fn);
}
