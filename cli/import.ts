import type { Command } from 'commander';
import { Argument } from 'commander';
import { jsonProblem, MigraceError, messageOf } from '../trace/errors.js';
import { importFiles, type ImportKind } from '../recorder/import/index.js';
import { readWholeFile } from '../recorder/import/lines.js';
import { cleanText } from '../reports/safe-text.js';
import { analyzeSession } from './analyze.js';
import { action, dbOption, jsonOption, openStore, out, printJson, type DbOptions } from './common.js';

/** An exported session: plain or gzipped JSON (readWholeFile inflates gzip by its magic bytes). */
export async function readJson(file: string): Promise<unknown> {
  const text = await readWholeFile(file);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new MigraceError('IMPORT', `${file} is not JSON: ${jsonProblem(e, text)}`);
  }
}

/** Sessions up to this size are analyzed right after the import. */
const MAX_ANALYZED = 200_000;

interface ImportCliOptions extends DbOptions {
  label?: string;
  qemuLog?: string;
  qemuVersion?: string;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('import')
    .description('turn what users already have (GDB transcripts, QEMU trace logs, libvirt logs, exported sessions) into sessions')
    .addArgument(new Argument('<kind>', 'what the files are').choices(['gdb', 'qemu-trace', 'libvirt', 'session']))
    .argument('<files...>', 'the files (gzip is recognized)')
    .option('--label <text>', 'a label for the sessions')
    .option('--qemu-log <file>', 'libvirt: a QEMU trace log of the same guest, merged on wall time')
    .option('--qemu-version <version>', 'the QEMU version the logs come from (picks the MigrationStatus numbering)')
    .addOption(dbOption())
    .addOption(jsonOption())
    .action(action(async (kind: ImportKind | 'session', files: string[], opts: ImportCliOptions) => {
      const store = openStore(opts);
      try {
        const ids: number[] = [];
        if (kind === 'session') for (const f of files) ids.push(store.importSession(await readJson(f), f));
        else ids.push(...await importFiles(store, kind, files, { label: opts.label ?? `import ${kind} ${files.join(' ')}`, qemuLog: opts.qemuLog, qemuVersion: opts.qemuVersion }));
        const sessions = ids.map((id) => {
          const s = store.session(id);
          const events = store.eventCount(id);
          // The analysis holds every event: for a huge session it is a command of its own.
          const a = events <= MAX_ANALYZED ? analyzeSession(store, id) : null;
          const imp = (s.meta.import ?? {}) as { warning_count?: number };
          return { id, label: s.label, state: s.state, events, warnings: imp.warning_count ?? 0,
            findings: a ? a.findings.map((f) => ({ id: f.id, class: f.class, summary: f.summary })) : null };
        });
        if (opts.json) return printJson(sessions);
        // Labels (file names, or the label inside an exported session) and summaries are trace text.
        for (const s of sessions) {
          out(cleanText(`session ${s.id}: ${s.label}: ${s.events} events, ${s.warnings} line(s) not understood${s.warnings ? ` (see "migrace events ${s.id} --json", meta.import.warnings)` : ''}`));
          if (s.findings === null) out(`  not analyzed here (more than ${MAX_ANALYZED} events): migrace analyze ${s.id}`);
          for (const f of s.findings ?? []) out(cleanText(`  ${f.id} ${f.class}: ${f.summary}`));
        }
      } finally {
        store.close();
      }
    }));
}
