#!/usr/bin/env node
import('../dist/cli/main.js').then((m) => m.main(process.argv)).catch((err) => {
  process.stderr.write(`migrace: cannot start (${err && err.message ? err.message : err}); run "npm run build" first\n`);
  process.exit(1);
});
