import type { Command } from 'commander';
import { findInterleavings } from '../analyzer/interleavings.js';
import { explore } from '../analyzer/explore.js';
import type { Analysis } from '../analyzer/types.js';
import { MigraceError } from '../trace/errors.js';
import { cleanText } from '../reports/safe-text.js';
import type { TraceStore } from '../trace/store.js';
import { action, dbOption, jsonOption, openStore, out, printJson, sessionId, type DbOptions } from './common.js';

export function resolveSession(store: TraceStore, id: string | undefined): number {
  if (id !== undefined) return sessionId(id);
  const latest = store.latestSession();
  if (!latest) throw new MigraceError('NOT_FOUND', `no sessions in ${store.path} (record, replay or import first)`);
  return latest.id;
}

export function analyzeSession(store: TraceStore, sid: number): Analysis {
  return findInterleavings(store.session(sid), store.threads(sid), store.events(sid));
}

/** The analysis for a terminal: labels, summaries, statuses and warnings are trace text, each line cleaned. */
export function analysisText(a: Analysis, label: string): string {
  const lines = [`session ${a.session_id} (${label}): ${a.findings.length} finding(s), ${a.replies.length} replies judged`];
  for (const f of a.findings) {
    lines.push(`  ${f.id} ${f.class}: ${f.summary}`);
    lines.push(`     evidence: seq ${f.evidence.join(', ')}`);
  }
  const failing = a.replies.filter((v) => v.old_libvirt === 'fails' && v.status !== null);
  if (failing.length) lines.push(`  replies old libvirt rejects: ${failing.map((v) => `seq ${v.reply_seq} (${v.status})`).join(', ')}`);
  for (const w of a.warnings) lines.push(`  warning: ${w}`);
  return lines.map(cleanText).join('\n');
}

/** A reply as a maintainer scans it: the status and which fields are there, not the counters. Cleaned: the reply is trace data. */
export function replyShape(reply: unknown): string {
  if (!reply || typeof reply !== 'object') return '-';
  const r = reply as Record<string, unknown>;
  const fields = Object.keys(r).filter((k) => k !== 'status');
  return cleanText(`${String(r.status ?? '(no status)')}${fields.length ? ` [${fields.join(', ')}]` : ' [nothing else]'}`);
}

/** Run fn on a session of a read-only store (the newest when no id is given), closing the store after. */
function withSession<T>(opts: DbOptions, id: string | undefined, fn: (store: TraceStore, sid: number) => T): T {
  const store = openStore(opts, { readonly: true });
  try {
    return fn(store, resolveSession(store, id));
  } finally {
    store.close();
  }
}

export function register(program: Command): void {
  program
    .command('analyze')
    .description('find read-then-transition interleavings in a session and judge every reply')
    .argument('[session]', 'session number (default: the newest)')
    .addOption(dbOption())
    .addOption(jsonOption())
    .action(action((id: string | undefined, opts: DbOptions & { json?: boolean }) => withSession(opts, id, (store, sid) => {
      const a = analyzeSession(store, sid);
      if (opts.json) printJson(a);
      else out(analysisText(a, store.session(sid).label));
    })));

  program
    .command('explore')
    .description("place every recorded transition before, inside and after every query's window and list the schedules where patched and unpatched code differ")
    .argument('[session]', 'session number (default: the newest)')
    .addOption(dbOption())
    .addOption(jsonOption())
    .action(action((id: string | undefined, opts: DbOptions & { json?: boolean }) => withSession(opts, id, (store, sid) => {
      const x = explore(store.session(sid), store.threads(sid), store.events(sid));
      if (opts.json) return printJson(x);
      const lines = [`session ${sid}: ${x.windows} query window(s), ${x.transitions.length} recorded transition(s), ${x.hazards.length} hazard(s)`];
      for (const h of x.hazards) {
        lines.push(`  ${h.id} ${h.kind} [${h.affects.join(', ') || 'none'}]: ${h.summary}`);
        lines.push(`     unpatched: ${replyShape(h.unpatched.reply)}   patched: ${replyShape(h.patched.reply)}`);
        lines.push(h.schedule ? `     force it: migrace replay --finding ${sid}:${h.id} --target ...` : '     cannot be forced with the current probe roles (needs a hold between the fills and the status store)');
      }
      for (const w of x.warnings) lines.push(`  warning: ${w}`);
      out(lines.map(cleanText).join('\n'));
    })));
}
