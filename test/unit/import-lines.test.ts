import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { readFileLines, readText, type LineSink } from '../../recorder/import/lines.js';
import { expectRejection } from '../helpers/errors.js';

/** A file read as a stream is cut into the same lines as the same text in memory, whatever the chunk boundaries. */

const dir = mkdtempSync(join(tmpdir(), 'migrace-lines-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

class Recorder implements LineSink<string[]> {
  readonly seen: string[] = [];
  constructor(readonly maxLine = 64) {}
  begin(head: string): void {
    this.seen.push(`head ${head.length}`);
  }
  line(text: string, n: number): void {
    this.seen.push(`${n}:${text}`);
  }
  tooLong(n: number, length: number, head: string): void {
    this.seen.push(`${n}:long ${length} ${head.slice(0, 10)}`);
  }
  finish(): string[] {
    return this.seen;
  }
}

async function both(name: string, text: string, maxLine = 64): Promise<void> {
  const file = join(dir, name);
  writeFileSync(file, text);
  const fromFile = await readFileLines(file, new Recorder(maxLine));
  expect(fromFile).toEqual(readText(new Recorder(maxLine), text.replace(/^\ufeff/, '')));
  writeFileSync(`${file}.gz`, gzipSync(text));
  expect(await readFileLines(`${file}.gz`, new Recorder(maxLine))).toEqual(fromFile);
}

describe('readFileLines', () => {
  it('LF, CR LF, lone CR, a BOM, blank lines, no final newline', async () => {
    await both('a', '\ufeffone\r\ntwo\rthree\n\n\nfour');
    await both('b', 'x\n');
    await both('c', '');
  });

  it('a CR LF split by a chunk boundary (1 MiB) is one line end, and a line longer than the limit is only counted', async () => {
    const line = 'y'.repeat(63);
    const n = Math.ceil((1 << 20) / 65) + 3;
    const lines = Array.from({ length: n }, () => line);
    // Shift the text so that a "\r" lands on the last byte of the first chunk.
    const shift = (1 << 20) % 65;
    await both('d', `${'z'.repeat(shift - 1)}\r\n${lines.join('\r\n')}\r\n`);
    await both('e', `short\n${'w'.repeat(3 << 20)}\nafter\n`);
  });

  it('multi-byte characters across chunk boundaries decode as in memory', async () => {
    await both('f', `${'é'.repeat((1 << 19) + 1)}\n€\n`, 1 << 22);
  });

  it('a missing file, a directory, a truncated gzip: one clear error naming the file', async () => {
    expect((await expectRejection(readFileLines(join(dir, 'nope'), new Recorder()))).message).toMatch(/nope: no such file/);
    expect((await expectRejection(readFileLines(dir, new Recorder()))).message).toMatch(/is a directory/);
    const gz = gzipSync('x\n'.repeat(100_000));
    writeFileSync(join(dir, 'cut.gz'), gz.subarray(0, gz.length >> 1));
    expect((await expectRejection(readFileLines(join(dir, 'cut.gz'), new Recorder()))).message).toMatch(/cut\.gz: truncated gzip data/);
  });
});
