import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bookwormQemu } from '../helpers/qemu-binaries.js';
import { withoutSweeps } from '../helpers/processes.js';

/**
 * Usage mistakes as a user makes them at the shell (#14 defect 19 and the
 * smaller ones): commander's complaints and migrace's own are one line,
 * cleaned of terminal escapes, exit 2; options a target cannot use and
 * unsafe paths are refused before anything starts (no session, no database).
 */

const execFileP = promisify(execFile);
const CLI = join(process.cwd(), 'bin', 'migrace.js');
const qemu = bookwormQemu();

let dir = '';
beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'migrace-usage-')); });
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function usage(args: string[]): Promise<string> {
  let code = 0;
  let stderr = '';
  try {
    ({ stderr } = await execFileP(process.execPath, [CLI, ...args], { env: { ...process.env, TMPDIR: dir } }));
  } catch (e) {
    ({ code, stderr } = e as { code: number; stderr: string });
  }
  expect(code, stderr).toBe(2);
  expect(stderr).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
  expect(stderr).not.toMatch(/^\s+at |internal error/m);
  // Another test's SIGKILLed migrace may leave probes that this one's start-up sweep removes and says so.
  const lines = withoutSweeps(stderr).trim().split('\n');
  expect(lines, stderr).toHaveLength(1);
  return lines[0];
}

describe('usage errors: one line, no escapes, exit 2', () => {
  it('a --target value holding an OSC escape is quoted cleaned', async () => {
    const line = await usage(['record', '--target', '\x1b]0;X\x07', '--db', join(dir, 't.db')]);
    expect(line).toMatch(/^migrace: option '--target <kind>' argument .* is invalid\. Allowed choices are minimig, qemu\. \(add --help for usage\)$/);
    expect(existsSync(join(dir, 't.db'))).toBe(false);
  });

  it('an unknown option: commander\'s words, migrace\'s shape and exit code', async () => {
    expect(await usage(['sessions', '--no-such-option'])).toBe("migrace: unknown option '--no-such-option' (add --help for usage)");
  });

  it('--memory abc is refused for every target; --memory with minimig says it has none', async () => {
    expect(await usage(['record', '--memory', 'abc', '--db', join(dir, 't.db')])).toMatch(/--memory takes QEMU's -m sizes such as 128, 512M or 1G, not "abc"/);
    expect(await usage(['record', '--memory', '512', '--db', join(dir, 't.db')])).toBe('migrace: --memory goes with --target qemu: minimig has no guest memory');
    expect(existsSync(join(dir, 't.db'))).toBe(false);
  });

  it.skipIf('skip' in qemu)('an unsafe --qemu path is refused before discovery and before the destination starts', async () => {
    if ('skip' in qemu) return;
    const odd = join(dir, 'qemu;true');
    copyFileSync(qemu.path, odd);
    const line = await usage(['record', '--target', 'qemu', '--qemu', odd, '--db', join(dir, 't.db')]);
    expect(line).toMatch(/^migrace: --qemu: /);
    expect(existsSync(join(dir, 't.db'))).toBe(false);
  });
});
