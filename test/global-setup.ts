import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/**
 * Build once for every test file: the bundled C target, and dist/ for the
 * tests that run the CLI as users do (bin/migrace.js loads dist/).
 */
export function setup(): void {
  if (existsSync('samples/minimig/Makefile')) {
    execFileSync('make', ['-s', '-C', 'samples/minimig'], { stdio: 'inherit' });
  }
  // tsc emits even with type errors; test/unit/typecheck.test.ts fails the run for them.
  spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], { stdio: 'ignore' });
}

/**
 * After the whole run: nothing we may have started is still alive. This is
 * the suite-wide survivor check; single tests also check their own pids.
 */
export function teardown(): void {
  const out = execFileSync('ps', ['-eo', 'pid=,ppid=,stat=,comm=,args='], { encoding: 'utf8' });
  const left = out
    .split('\n')
    .filter((l) => /^\s*\d+\s+\d+\s+[^Z\s]\S*\s+(gdb|minimig|minimig-patche|qemu-system-x86)\b/.test(l))
    .filter((l) => !l.includes('.ci-keep'));
  if (left.length > 0) {
    throw new Error(`processes left behind by the test run:\n${left.join('\n')}`);
  }
}
