import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { MigraceError, messageOf } from '../trace/errors.js';

/*
 * JSON output too large to be one string (V8 stops at about 512 MiB: a
 * session of two million events): the object is written as
 * JSON.stringify(value, null, indent) would write it, its last member an
 * array written one element at a time, in chunks. Used by `events --json`
 * and `export`.
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

/** Where a command's JSON goes: stdout, or a file that is removed again when writing it fails. */
export function jsonTarget(file: string | undefined, fn: (write: (s: string) => void) => void): void {
  if (file === undefined) {
    fn((s) => process.stdout.write(s));
    return;
  }
  let fd: number;
  try {
    fd = openSync(file, 'w');
  } catch (e) {
    throw new MigraceError('BAD_INPUT', `cannot write ${file}: ${messageOf(e)}`);
  }
  try {
    fn((s) => {
      try {
        writeSync(fd, s);
      } catch (e) {
        throw new MigraceError('BAD_INPUT', `cannot write ${file}: ${messageOf(e)}`);
      }
    });
    closeSync(fd);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      // Already closed.
    }
    // Half a file is worse than none.
    rmSync(file, { force: true });
    throw e;
  }
}
