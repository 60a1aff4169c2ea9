#!/usr/bin/env node
// The CLI's entry: check that better-sqlite3's native module loads, then run
// dist/cli/main.js. npm 12 installs better-sqlite3 without running the
// install script that builds the module unless allowScripts allows it, and
// `npm ci` still exits 0: say how to fix that here, not as a failure deep
// inside the first command that opens a database.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const here = dirname(dirname(new URL(import.meta.url).pathname));

function nativeModuleProblem() {
  let dir;
  try {
    dir = dirname(require.resolve('better-sqlite3/package.json'));
  } catch {
    return `its dependencies are not installed; run "npm ci" in ${here}`;
  }
  try {
    require(join(dir, 'build', 'Release', 'better_sqlite3.node'));
    return null;
  } catch (err) {
    const why = err && err.code === 'MODULE_NOT_FOUND' ? 'is not built' : `does not load (${String(err && err.message).split('\n')[0]})`;
    // The package whose node_modules holds better-sqlite3: a checkout, or the installed migrace.
    const root = dirname(dirname(dir));
    let allowed = false;
    try {
      allowed = require(join(root, 'package.json')).allowScripts?.['better-sqlite3'] === true;
    } catch { /* no package.json there: approve it first */ }
    const rebuild = 'npm rebuild better-sqlite3 --foreground-scripts';
    return `better-sqlite3's native module ${why} (npm 12 skips install scripts that the package's allowScripts does not allow, and still exits 0). ` +
      `Fix: (cd ${root} && ${allowed ? rebuild : `npm install-scripts approve better-sqlite3 && ${rebuild}`})`;
  }
}

const problem = nativeModuleProblem();
if (problem) {
  process.stderr.write(`migrace: cannot start: ${problem}\n`);
  process.exit(1);
}
import('../dist/cli/main.js').then((m) => m.main(process.argv)).catch((err) => {
  process.stderr.write(`migrace: cannot start (${err && err.message ? err.message : err}); run "npm run build" first\n`);
  process.exit(1);
});
