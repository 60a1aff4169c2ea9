import { spawnSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGzip } from 'node:zlib';

/*
 * Importing a large QEMU trace log (the 120 MB, 2.2-million-event log of
 * issue #14) as users do, `migrace import qemu-trace FILE` in a child
 * process, against a baseline measured in the same run: a child that reads
 * the same file line by line with node:readline and does nothing else. Time
 * (CPU, user + system: on a shared machine wall time says more about the
 * neighbours) and peak RSS (/usr/bin/time) of both; the ratios say what
 * parsing, checking and storing cost over merely reading, and the RSS that
 * the file is not held. Then `events --json` and `export` of the imported
 * session, against the same baseline.
 */

export interface BenchRow { name: string; baselineMs: number; ms: number; ratio: number; [k: string]: string | number }

const CLI = join(process.cwd(), 'bin', 'migrace.js');

interface Measured { ms: number; wallMs: number; rssMiB: number }

/** A child process's CPU time, wall time and peak RSS; stdout discarded. */
function measure(args: string[]): Measured {
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', 'cpu=%U+%S maxrss=%M', ...args], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'], maxBuffer: 1 << 24 });
  const wallMs = performance.now() - t0;
  const m = /cpu=([\d.]+)\+([\d.]+) maxrss=(\d+)\s*$/.exec(r.stderr);
  if (r.status !== 0 || !m) throw new Error(`${args.join(' ')} failed (${r.status}): ${r.stderr.slice(-500)}`);
  return { ms: (Number(m[1]) + Number(m[2])) * 1000, wallMs, rssMiB: Number(m[3]) / 1024 };
}

const READ_LINES = `
const rl = require('node:readline').createInterface({ input: require('node:fs').createReadStream(process.argv[1]), crlfDelay: Infinity });
let n = 0; rl.on('line', () => n++); rl.on('close', () => process.stdout.write(String(n)));`;

/** `lines` trace lines of one QEMU process: the setup/active/completed of a real 5.2 log, then other events. */
async function writeTrace(path: string, lines: number, gzip: boolean): Promise<void> {
  const head = readFileSync('samples/trace-logs/qemu52.log', 'utf8');
  const tid = /^(\d+)@/.exec(head)![1];
  const sec = Number([...head.matchAll(/@(\d+)\./g)].pop()![1]) + 1;
  const out = createWriteStream(path);
  const sink = gzip ? createGzip({ level: 6 }) : out;
  if (gzip) sink.pipe(out);
  sink.write(head);
  let batch = '';
  for (let i = 0; i < lines; i++) {
    batch += `${tid}@${sec + Math.floor(i / 1e6)}.${String(i % 1e6).padStart(6, '0')}:migration_bitmap_sync_end dirty_pages ${i}\n`;
    if (batch.length > 1 << 20) {
      if (!sink.write(batch)) await once(sink, 'drain');
      batch = '';
    }
  }
  sink.end(batch);
  await once(out, 'close');
}

export async function benchImport(lines = 2_200_000): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'migrace-bench-import-'));
  try {
    const log = join(dir, 'trace.log');
    const gz = join(dir, 'trace.log.gz');
    await writeTrace(log, lines, false);
    await writeTrace(gz, lines, true);
    const mb = (statSync(log).size / 1e6).toFixed(0);
    const node = process.execPath;
    const base = measure([node, '-e', READ_LINES, log]);
    const db = join(dir, 'a.db');
    const plain = measure([node, CLI, 'import', 'qemu-trace', log, '--db', db]);
    const zipped = measure([node, CLI, 'import', 'qemu-trace', gz, '--db', join(dir, 'b.db')]);
    const events = measure([node, CLI, 'events', '1', '--json', '--db', db]);
    const exported = measure([node, CLI, 'export', '1', '-o', join(dir, 'x.json'), '--db', db]);
    const row = (name: string, m: Measured): BenchRow => ({
      name, baselineMs: base.ms, ms: m.ms, ratio: m.ms / base.ms,
      wall_ms: Math.round(m.wallMs), rss_mib: Math.round(m.rssMiB), baseline_rss_mib: Math.round(base.rssMiB),
      rss_ratio: Number((m.rssMiB / base.rssMiB).toFixed(2)),
    });
    return [
      row(`import qemu-trace ${mb} MB, ${(lines / 1e6).toFixed(1)}M events`, plain),
      row(`import qemu-trace, same log gzipped (${(statSync(gz).size / 1e6).toFixed(0)} MB)`, zipped),
      row(`events --json of it (${(lines / 1e6).toFixed(1)}M events)`, events),
      row(`export of it (${(statSync(join(dir, 'x.json')).size / 1e6).toFixed(0)} MB)`, exported),
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
