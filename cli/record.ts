import type { Command } from 'commander';
import { Option } from 'commander';
import { MigraceError } from '../trace/errors.js';
import { minimigProfile } from '../recorder/probes/minimig.js';
import { minimigDir, prepareMinimig } from '../recorder/targets/minimig.js';
import { record, type RecordResult } from '../recorder/record.js';
import { action, dbOption, jsonOption, openStore, out, parseIntOption, printJson, progress, type DbOptions } from './common.js';
import { abortOnSignals } from './signals.js';

interface RecordCliOptions extends DbOptions {
  target: 'minimig' | 'qemu';
  patched?: boolean;
  label?: string;
  pollMs: number;
  timeout: number;
  setupMs?: number;
  transferMs?: number;
  gdb?: string;
  binary?: string;
  json?: boolean;
}

export function summarizeRecord(r: RecordResult): string {
  const head = r.state === 'complete'
    ? `session ${r.sessionId}: complete, ${r.events} events (${r.hits} probe hits, ${r.queries} queries) in ${(r.wallMs / 1000).toFixed(2)} s; last status ${r.lastStatus}`
    : `session ${r.sessionId}: aborted after ${r.events} events: ${r.error}`;
  return head;
}

export function register(program: Command): void {
  program
    .command('record')
    .description('record a migration under gdb: every state transition, read and publish, and every query-migrate reply')
    .addOption(new Option('--target <kind>', 'what to record').choices(['minimig', 'qemu']).default('minimig'))
    .option('--patched', 'minimig: the build that reads the state once (like QEMU >= 7.1)')
    .option('--label <text>', 'a label for the session')
    .option('--poll-ms <n>', 'query-migrate every N ms', parseIntOption('--poll-ms', 1, 60_000), 20)
    .option('--timeout <s>', 'give up when the migration takes longer (seconds)', parseIntOption('--timeout', 1, 86_400), 120)
    .option('--setup-ms <n>', 'minimig: time spent in setup', parseIntOption('--setup-ms', 0, 600_000))
    .option('--transfer-ms <n>', 'minimig: time spent active', parseIntOption('--transfer-ms', 0, 600_000))
    .option('--binary <path>', 'minimig: a minimig binary other than the bundled build')
    .option('--gdb <path>', 'the gdb to use', 'gdb')
    .addOption(dbOption())
    .addOption(jsonOption())
    .action(action(async (opts: RecordCliOptions) => {
      if (opts.target !== 'minimig') {
        throw new MigraceError('USAGE', 'record --target qemu needs --qemu PATH');
      }
      const target = await prepareMinimig({ binary: opts.binary, patched: opts.patched, setupMs: opts.setupMs, transferMs: opts.transferMs });
      const profile = minimigProfile(minimigDir(), target.binary, Boolean(opts.patched));
      const store = openStore(opts);
      const signals = abortOnSignals();
      try {
        const result = await record({
          store, target, profile, label: opts.label ?? `${opts.patched ? 'minimig-patched' : 'minimig'} recording`,
          pollMs: opts.pollMs, timeoutMs: opts.timeout * 1000, gdbPath: opts.gdb,
          progress: opts.json ? undefined : progress, signal: signals.signal,
        });
        if (opts.json) printJson(result);
        else if (result.state === 'complete') out(summarizeRecord(result));
        else process.stderr.write(`migrace: ${summarizeRecord(result)}\n`);
        if (result.state !== 'complete') process.exitCode = 1;
      } finally {
        signals.dispose();
        store.close();
      }
    }));
}
