/**
 * Resource limits of `migrace import`, `events --json` and `export`, run as
 * users run them (bin/migrace.js in a child process), with the V8 heap
 * capped and the peak RSS measured by /usr/bin/time: a file's size must not
 * become the process's size.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, createWriteStream, mkdtempSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { createGzip } from 'node:zlib';
import { withoutSweeps } from '../helpers/processes.js';
import { afterAll, describe, expect, it } from 'vitest';

const CLI = join(process.cwd(), 'bin', 'migrace.js');
const tmp = mkdtempSync(join(tmpdir(), 'migrace-limits-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Run { code: number | null; err: string; rssMiB: number }

/** `node --max-old-space-size=HEAP bin/migrace.js ARGS`, stdout to a file; its exit code, stderr and peak RSS. */
function migrace(args: string[], heapMiB: number, stdoutFile = '/dev/null'): Run {
  const fd = openSync(stdoutFile, 'w');
  try {
    const r = spawnSync('/usr/bin/time', ['-f', 'maxrss=%M', process.execPath, `--max-old-space-size=${heapMiB}`, CLI, ...args], {
      stdio: ['ignore', fd, 'pipe'], encoding: 'utf8', timeout: 240_000,
    });
    const rss = /maxrss=(\d+)\s*$/.exec(r.stderr);
    // /usr/bin/time adds its own lines: the peak RSS, and "Command exited with non-zero status N".
    const err = withoutSweeps(r.stderr).replace(/maxrss=\d+\s*$/, '').replace(/^Command exited with non-zero status \d+\n?/m, '').trim();
    return { code: r.status, err, rssMiB: rss ? Number(rss[1]) / 1024 : NaN };
  } finally {
    closeSync(fd);
  }
}

/** Write chunks through gzip (or not) to a file without holding them. */
async function writeFile(path: string, gzip: boolean, chunks: Iterable<string | Buffer>): Promise<void> {
  const out = createWriteStream(path);
  const sink = gzip ? createGzip({ level: 1 }) : out;
  if (gzip) sink.pipe(out);
  for (const c of chunks) {
    if (!sink.write(c)) await once(sink, 'drain');
  }
  sink.end();
  await once(out, 'close');
}

const TRACE_HEAD = readFileSync('samples/trace-logs/qemu52.log', 'utf8');

/** A QEMU 5.2 trace log (its own three lines) followed by `n` lines of another trace event of the same process. */
function* bigTrace(n: number): Generator<string> {
  yield TRACE_HEAD;
  const tid = /^(\d+)@/.exec(TRACE_HEAD)![1];
  // After the head's last stamp: a clock going back would start another session.
  const sec = Number([...TRACE_HEAD.matchAll(/@(\d+)\./g)].pop()![1]) + 1;
  const batch: string[] = [];
  for (let i = 0; i < n; i++) {
    batch.push(`${tid}@${sec + Math.floor(i / 1_000_000)}.${String(i % 1_000_000).padStart(6, '0')}:migration_bitmap_sync_end dirty_pages ${i}\n`);
    if (batch.length === 10_000) yield batch.splice(0).join('');
  }
  yield batch.join('');
}

describe('import reads as a stream', () => {
  it('a gzip that inflates to 400 MiB (under the cap) of one endless line imports with a warning, in little memory', async () => {
    const gz = join(tmp, 'long-line.log.gz');
    const mib = Buffer.alloc(1 << 20, 'x');
    await writeFile(gz, true, (function* () {
      yield TRACE_HEAD;
      for (let i = 0; i < 400; i++) yield mib;
      yield '\n';
    })());
    expect(statSync(gz).size).toBeLessThan(4 << 20);
    const r = migrace(['import', 'qemu-trace', gz, '--db', join(tmp, 'a.db'), '--json'], 128, join(tmp, 'a.json'));
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const [s] = JSON.parse(readFileSync(join(tmp, 'a.json'), 'utf8')) as { events: number; warnings: number }[];
    expect(s).toMatchObject({ events: 3, warnings: 1 });
    expect(r.rssMiB).toBeLessThan(300);
  });

  it('a gzip bomb is refused with the size, before it inflates past the cap in memory', async () => {
    const gz = join(tmp, 'bomb.gz');
    // Text, not zeros: zeros are refused at once as binary data.
    const zeros = Buffer.alloc(1 << 20, 'x');
    await writeFile(gz, true, (function* () {
      for (let i = 0; i < 600; i++) yield zeros;
    })());
    const r = migrace(['import', 'gdb', gz, '--db', join(tmp, 'b.db')], 128);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(new RegExp(`^migrace: ${gz.replace(/[.]/g, '\\.')}: more than 512 MiB once inflated \\(from a file of [\\d.]+ MiB\\)`));
    expect(r.err.split('\n'), r.err).toHaveLength(1);
    expect(r.rssMiB).toBeLessThan(300);
  });

  it('a trace log of 400,000 events imports, and `events --json` and `export` of it stream, each in little memory', async () => {
    const log = join(tmp, 'big.log');
    await writeFile(log, false, bigTrace(400_000));
    const db = join(tmp, 'c.db');
    const imp = migrace(['import', 'qemu-trace', log, '--db', db], 160);
    expect(imp.err).toBe('');
    expect(imp.code).toBe(0);
    expect(imp.rssMiB).toBeLessThan(300);

    const events = join(tmp, 'events.json');
    const ev = migrace(['events', '1', '--json', '--db', db], 96, events);
    expect(ev.err).toBe('');
    expect(ev.code).toBe(0);
    expect(ev.rssMiB).toBeLessThan(250);
    const exp = join(tmp, 'export.json');
    const ex = migrace(['export', '1', '-o', exp, '--db', db], 96);
    expect(ex.code).toBe(0);
    expect(ex.rssMiB).toBeLessThan(250);
    // Well-formed and complete.
    const back = JSON.parse(readFileSync(exp, 'utf8')) as { format: string; events: { seq: number }[] };
    expect(back.format).toBe('migrace-session');
    expect(back.events).toHaveLength(400_003);
    expect(back.events.every((e, i) => e.seq === i)).toBe(true);
    const text = readFileSync(events, 'utf8');
    expect(text.startsWith('{\n  "session": {')).toBe(true);
    expect(text.slice(text.indexOf('\n  "events": [')).match(/^ {4}\{$/gm)).toHaveLength(400_003);
  }, 600_000);
});
