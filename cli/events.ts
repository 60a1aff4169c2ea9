import type { Command } from 'commander';
import type { Thread, TraceEvent } from '../trace/schema.js';
import { action, dbOption, jsonOption, openStore, out, sessionId, table, type DbOptions } from './common.js';
import { jsonTarget, writeJsonWithArray } from './json-out.js';

function stateWithNumber(v: { value: number | null; name: string | null } | null): string {
  if (!v) return '?';
  if (v.name && v.value !== null) return `${v.name}(${v.value})`;
  return v.name ?? String(v.value);
}

/** The values column of the events table: what a maintainer wants to see at a glance. */
export function describeEvent(e: TraceEvent): string {
  switch (e.kind) {
    case 'transition': return `${stateWithNumber(e.data.old)} -> ${stateWithNumber(e.data.new)}${e.data.addr ? ` @${e.data.addr}` : ''}`;
    case 'read': return `read ${stateWithNumber(e.data.value)}`;
    case 'publish': return `publish ${stateWithNumber(e.data.value)}`;
    case 'query-begin': case 'query-end': return `query ${e.data.query}`;
    case 'reply': return `${e.data.command}: status=${e.data.status ?? '(none)'} ram=${e.data.has_ram ? 'yes' : 'no'}`;
    case 'hold': case 'release': return `${e.data.role}: ${e.data.reason}`;
    case 'note': return e.data.text;
  }
}

// A narrow table column ("name/lwp", "#tid", "-"), not a sentence's thread name (the analyzer's threadLabel).
export function threadColumn(threads: Map<number, Thread>, tid: number | null): string {
  if (tid === null) return '-';
  const t = threads.get(tid);
  if (!t) return `#${tid}`;
  return `${t.name ?? '?'}${t.lwp !== null ? `/${t.lwp}` : ''}`;
}

function formatTime(ns: number | null): string {
  return ns === null ? '-' : (ns / 1e6).toFixed(3);
}

export function register(program: Command): void {
  program
    .command('events')
    .description("print a session's events in order")
    .argument('<session>', 'session number')
    .addOption(dbOption())
    .addOption(jsonOption())
    .action(action((id: string, opts: DbOptions & { json?: boolean }) => {
      const store = openStore(opts, { readonly: true });
      try {
        const sid = sessionId(id);
        const session = store.session(sid);
        const threads = store.threads(sid);
        // As printJson({ session, threads, events }) prints it, but never the whole session in memory.
        if (opts.json) return jsonTarget(undefined, (write) => writeJsonWithArray(write, { session, threads }, 'events', store.iterateEvents(sid), 2));
        const events = store.events(sid);
        const byTid = new Map(threads.map((t) => [t.tid, t]));
        out(table(
          ['SEQ', 'T(ms)', 'THREAD', 'KIND', 'PROBE', 'VALUES', 'WHERE'],
          events.map((e) => [e.seq, formatTime(e.t_ns), threadColumn(byTid, e.thread), e.kind, e.probe,
            describeEvent(e), e.func ? `${e.func}${e.line !== null ? ` ${e.file ?? ''}:${e.line}` : ''}${e.pc ? ` ${e.pc}` : ''}` : (e.pc ?? null)]),
        ));
      } finally {
        store.close();
      }
    }));
}
