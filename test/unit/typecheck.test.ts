import { spawnSync } from 'node:child_process';
import { expect, it } from 'vitest';

// The build emits even with type errors (so one bad file does not stop every
// other test); this is where they fail the run.
it('the whole project typechecks under strict TypeScript', () => {
  const r = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json', '--noEmit'], { encoding: 'utf8' });
  expect(r.stdout + r.stderr).toBe('');
  expect(r.status).toBe(0);
}, 120_000);
