import { Command } from 'commander';
import { progress, setDebug, type Register } from './common.js';
import { sweepLeftovers } from '../recorder/ledger.js';
import { removeStaleGroups } from '../recorder/uprobe/tracefs.js';
import { register as sessions } from './sessions.js';
import { register as events } from './events.js';
import { register as recordCmd } from './record.js';
import { register as replayCmd } from './replay.js';
import { register as analyzeCmds } from './analyze.js';
import { register as probesCmd } from './probes.js';
import { register as importCmd } from './import.js';
import { register as reportCmds } from './report.js';
import { register as demoCmd } from './demo.js';
import { register as exportCmd } from './export.js';
import { register as huntCmds } from './hunt.js';

/** Every command lives in its own file and registers itself here. */
const COMMANDS: Register[] = [recordCmd, replayCmd, huntCmds, analyzeCmds, reportCmds, probesCmd, importCmd, exportCmd, demoCmd, sessions, events];

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('migrace')
    .description('record, analyze, replay and report read-then-transition races in QEMU migration status code')
    .option('--debug', 'print stack traces with errors')
    .showHelpAfterError('(add --help for usage)')
    .hook('preAction', (cmd) => setDebug(Boolean(cmd.opts().debug)));
  for (const register of COMMANDS) register(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  // A file-size limit (ulimit -f) must make the write fail with EFBIG, which
  // the store reports, not kill the process: Node ignores SIGXFSZ, but execa's
  // signal-exit listens to it and re-raises it when it is the only listener.
  process.on('SIGXFSZ', () => undefined);
  for (const line of [...sweepLeftovers(), ...removeStaleGroups()]) progress(`migrace: ${line}`);
  const program = buildProgram();
  program.exitOverride((err) => {
    // commander already printed its message; keep its exit code (0 for --help).
    process.exit(err.exitCode);
  });
  await program.parseAsync(argv);
}
