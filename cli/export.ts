import type { Command } from 'commander';
import { resolveSession } from './analyze.js';
import { action, dbOption, openStore, type DbOptions } from './common.js';
import { jsonTarget, writeJsonWithArray } from './json-out.js';

export function register(program: Command): void {
  program
    .command('export')
    .description('write a session as portable JSON (migrace import session FILE reads it back)')
    .argument('[session]', 'session number (default: the newest)')
    .option('-o, --output <file>', 'write to a file instead of stdout')
    .addOption(dbOption())
    .action(action((id: string | undefined, opts: DbOptions & { output?: string }) => {
      const store = openStore(opts, { readonly: true });
      try {
        const sid = resolveSession(store, id);
        const { id: _id, ...session } = store.session(sid);
        // TraceStore.exportSession's shape, written one event at a time: a large session is larger than a string can be.
        const head = { format: 'migrace-session', version: 1, session, threads: store.threads(sid) };
        jsonTarget(opts.output, (write) => writeJsonWithArray(write, head, 'events', store.iterateEvents(sid), 1));
        if (opts.output) process.stderr.write(`wrote ${opts.output}\n`);
      } finally {
        store.close();
      }
    }));
}
