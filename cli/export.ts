import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { MigraceError, messageOf } from '../trace/errors.js';
import { resolveSession } from './analyze.js';
import { action, dbOption, openStore, out, type DbOptions } from './common.js';

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
        const text = `${JSON.stringify(store.exportSession(resolveSession(store, id)), null, 1)}\n`;
        if (!opts.output) return out(text);
        try {
          writeFileSync(opts.output, text);
        } catch (e) {
          throw new MigraceError('BAD_INPUT', `cannot write ${opts.output}: ${messageOf(e)}`);
        }
        process.stderr.write(`wrote ${opts.output}\n`);
      } finally {
        store.close();
      }
    }));
}
