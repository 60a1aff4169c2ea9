import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Build the bundled C target once for every test file. */
export function setup(): void {
  if (existsSync('samples/minimig/Makefile')) {
    execFileSync('make', ['-s', '-C', 'samples/minimig'], { stdio: 'inherit' });
  }
}

/**
 * After the whole run: nothing we may have started is still alive. This is
 * the suite-wide survivor check; single tests also check their own pids.
 */
export function teardown(): void {
  const out = execFileSync('ps', ['-eo', 'pid=,ppid=,comm=,args='], { encoding: 'utf8' });
  const left = out
    .split('\n')
    .filter((l) => /^\s*\d+\s+\d+\s+(gdb|minimig|minimig-patche|qemu-system-x86)\b/.test(l))
    .filter((l) => !l.includes('.ci-keep'));
  if (left.length > 0) {
    throw new Error(`processes left behind by the test run:\n${left.join('\n')}`);
  }
}
