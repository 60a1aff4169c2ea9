/**
 * `migrace demo` before it records anything: a bad --out and the fetch of the
 * unpatched QEMU (timeout, abort, failure), with nothing left running.
 */
import { spawnSync } from 'node:child_process';
import { expectRejection } from '../helpers/errors.js';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { fetchUnpatchedQemu } from '../../cli/demo.js';
import { survivors, waitGone } from '../../recorder/reaper.js';
import { expectNoSurvivors, withoutSweeps } from '../helpers/processes.js';
import { sleep } from '../../trace/async.js';

const CLI = join(process.cwd(), 'bin', 'migrace.js');
const tmp = mkdtempSync(join(tmpdir(), 'migrace-demo-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
afterEach(() => expectNoSurvivors());

const rejection = expectRejection;

function script(name: string, text: string): string {
  const p = join(tmp, name);
  writeFileSync(p, text);
  return p;
}

/** The pid a script wrote to `file`. */
function pidFrom(file: string): number {
  return Number(readFileSync(file, 'utf8').trim());
}

describe('migrace demo', () => {
  it('--out naming an existing file: one clear line, exit 1, no internal error', () => {
    const file = script('not-a-folder', 'x');
    const r = spawnSync('node', [CLI, 'demo', '--out', file], { encoding: 'utf8', timeout: 30_000 });
    expect(withoutSweeps(r.stderr)).toBe(`migrace: cannot create the output folder ${file}: a file of that name is in the way (EEXIST)\n`);
    expect(r.status).toBe(1);
  });

  it('--out below a file: ENOTDIR, same clear line', () => {
    const file = script('a-file', 'x');
    const r = spawnSync('node', [CLI, 'demo', '--out', join(file, 'sub')], { encoding: 'utf8', timeout: 30_000 });
    expect(withoutSweeps(r.stderr)).toMatch(/^migrace: cannot create the output folder .*a-file\/sub: .*\(ENOTDIR\)\n$/);
    expect(r.status).toBe(1);
  });
});

describe('fetching the unpatched QEMU', () => {
  it('a fetch that takes too long is stopped with a clear error, and the script is gone', async () => {
    const pidFile = join(tmp, 'slow.pid');
    const slow = script('slow-fetch.sh', `echo $$ > ${pidFile}\nexec sleep 30\n`);
    const e = await rejection(fetchUnpatchedQemu({ script: slow, timeoutMs: 500 }));
    expect(e.code).toBe('TARGET_MISSING');
    expect(e.message).toBe('fetching the unpatched QEMU 5.2 took longer than 0.5 s and was stopped; pass --qemu-unpatched PATH');
    const pid = pidFrom(pidFile);
    expect(pid).toBeGreaterThan(0);
    expect(await waitGone(pid, 3000)).toBe(true);
    expect(survivors()).toEqual([]);
  });

  it('an abort (SIGINT / SIGTERM through cli/signals.ts) stops the fetch: INTERRUPTED', async () => {
    const slow = script('slow-fetch-2.sh', 'exec sleep 30\n');
    const controller = new AbortController();
    const running = rejection(fetchUnpatchedQemu({ script: slow, signal: controller.signal }));
    await sleep(200);
    expect(survivors().map((s) => s.label)).toEqual(['fetch-qemu.sh 5.2']);
    controller.abort('SIGINT');
    const e = await running;
    expect(e.code).toBe('INTERRUPTED');
    expect(e.message).toMatch(/SIGINT.*while fetching/);
  });

  it('a failing fetch names its exit status; its last line is the path when it works', async () => {
    const fails = script('fails.sh', 'echo oops >&2\nexit 3\n');
    const e = await rejection(fetchUnpatchedQemu({ script: fails }));
    expect(e).toMatchObject({ code: 'TARGET_MISSING', message: 'cannot fetch the unpatched QEMU 5.2 (exit 3); pass --qemu-unpatched PATH' });
    const works = script('works.sh', `echo progress\necho ${tmp}\n`);
    expect(await fetchUnpatchedQemu({ script: works })).toBe(tmp);
  });
});
