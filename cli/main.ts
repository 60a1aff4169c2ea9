import { Command, CommanderError } from 'commander';
import { cleanText } from '../reports/safe-text.js';
import { progress, setDebug, USAGE_EXIT, type Register } from './common.js';
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

/**
 * commander's own complaints (an unknown option, a bad value) as migrace's
 * other errors look: one line, "migrace: " first, the text cleaned (it
 * quotes what the user typed, which may hold terminal escapes).
 */
export function usageLine(text: string): string {
  return `migrace: ${cleanText(text.trim().replace(/^error: /, ''))} (add --help for usage)\n`;
}

export function buildProgram(): Command {
  const program = new Command();
  // Set before the commands are added: subcommands copy these settings when they are created.
  program
    .name('migrace')
    .description('record, analyze, replay and report read-then-transition races in QEMU migration status code')
    .option('--debug', 'print stack traces with errors')
    .configureOutput({ outputError: (text, write) => write(usageLine(text)) })
    .exitOverride((err) => {
      throw err;
    })
    .hook('preAction', (cmd) => setDebug(Boolean(cmd.opts().debug)));
  for (const register of COMMANDS) register(program);
  return program;
}

/** Exit code for what commander stopped at: 0 for --help and --version, the usage code for every mistake. */
export function commanderExitCode(err: CommanderError): number {
  return err.exitCode === 0 ? 0 : USAGE_EXIT;
}

export async function main(argv: string[]): Promise<void> {
  // A file-size limit (ulimit -f) must make the write fail with EFBIG, which
  // the store reports, not kill the process: Node ignores SIGXFSZ, but execa's
  // signal-exit listens to it and re-raises it when it is the only listener.
  process.on('SIGXFSZ', () => undefined);
  for (const line of [...sweepLeftovers(), ...removeStaleGroups()]) progress(`migrace: ${line}`);
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    // commander printed its message already.
    if (!(e instanceof CommanderError)) throw e;
    process.exitCode = commanderExitCode(e);
  }
  exitWhenDone();
}

/**
 * The command has finished and said what it had to say: nothing may keep
 * the process alive now. A timer left by a step that lost a race (a wait
 * whose run failed first) would hold the exit for its whole timeout, so
 * the exit comes at once; the reaper's and the writers' exit hooks still run.
 */
function exitWhenDone(): void {
  const code = typeof process.exitCode === 'number' ? process.exitCode : 0;
  // stdout/stderr are synchronous for files and pipes on Linux; a TTY too. Let a pending write drain first.
  if (process.stdout.writableLength === 0 && process.stderr.writableLength === 0) process.exit(code);
  let waiting = 0;
  const drained = (): void => {
    if (--waiting <= 0) process.exit(code);
  };
  for (const s of [process.stdout, process.stderr]) {
    if (s.writableLength > 0) {
      waiting++;
      s.once('drain', drained);
    }
  }
  setTimeout(() => process.exit(code), 2000).unref();
}
