import type { Command } from 'commander';
import type { Session } from '../trace/schema.js';
import { action, dbOption, jsonOption, openStore, out, printJson, table, type DbOptions } from './common.js';

export function register(program: Command): void {
  program
    .command('sessions')
    .description('list the recorded and imported sessions')
    .addOption(dbOption())
    .addOption(jsonOption())
    .action(action((opts: DbOptions & { json?: boolean }) => {
      const store = openStore(opts, { readonly: true });
      try {
        const sessions = store.listSessions();
        if (opts.json) return printJson(sessions);
        if (sessions.length === 0) return out(`no sessions in ${opts.db}`);
        out(table(
          ['ID', 'LABEL', 'ORIGIN', 'TARGET', 'VARIANT', 'STATE', 'EVENTS', 'CREATED'],
          sessions.map((s) => [s.id, s.label, s.origin, s.target.qemu_version ? `${s.target.kind} ${s.target.qemu_version}` : s.target.kind,
            s.target.variant, sessionStateText(s), s.events, s.created_at]),
        ));
      } finally {
        store.close();
      }
    }));
}

/** The state as a user needs it: why a session aborted, and that a complete one is missing hits the kernel dropped (uprobe backend). */
function sessionStateText(s: Session): string {
  const state = s.error ? `${s.state}: ${s.error}` : s.state;
  return typeof s.meta.incomplete === 'string' ? `${state}, INCOMPLETE: ${s.meta.incomplete}` : state;
}
