import type { Command } from 'commander';
import { probesCommandOutput } from '../recorder/probes/report.js';
import { extractedTreeEnv } from '../recorder/targets/qemu.js';
import { action, jsonOption, out, printJson } from './common.js';

export function register(program: Command): void {
  program
    .command('probes')
    .description('find where to probe a QEMU binary (read, publish, transition) and say why')
    .argument('<binary>', 'a QEMU system emulator binary')
    .option('--profile <file>', 'show a hand-written profile for this binary instead of discovering')
    .option('--refresh', 'ignore the cached profile and discover again')
    .option('--gdb <path>', 'the gdb to use', 'gdb')
    .addOption(jsonOption())
    .action(action(async (binary: string, opts: { profile?: string; refresh?: boolean; gdb: string; json?: boolean }) => {
      const r = await probesCommandOutput(binary, { env: extractedTreeEnv(binary), profile: opts.profile, refresh: opts.refresh, gdb: opts.gdb });
      if (opts.json) printJson(r.json);
      else out(r.text);
    }));
}
