import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';

/** Written when the suite leaves processes behind; .ci/run counts it as a failure (each of its vitest runs names its own). */
const SURVIVORS = process.env.MIGRACE_SURVIVORS_FILE || 'test-results/survivors.txt';

/**
 * Build once for every test file: the bundled C target, and dist/ for the
 * tests that run the CLI as users do (bin/migrace.js loads dist/).
 */
export function setup(): void {
  rmSync(SURVIVORS, { force: true });
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
    .filter((l) => /^\s*\d+\s+\d+\s+[^Z\s]\S*\s+(gdb|minimig|minimig-patche|qemu-system-x86)\b/.test(l));
  if (left.length > 0) {
    // A throw here is only logged by vitest; the exit code and the marker make it fail the run.
    process.stderr.write(`FAIL processes left behind by the test run:\n${left.join('\n')}\n`);
    mkdirSync('test-results', { recursive: true });
    writeFileSync(SURVIVORS, `${left.join('\n')}\n`);
    process.exitCode = 1;
  }
}
