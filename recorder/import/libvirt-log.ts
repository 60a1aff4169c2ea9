import { MigraceError } from '../../trace/errors.js';
import { replyData } from '../../trace/reply.js';
import type { NewEvent, StateValue } from '../../trace/schema.js';
import { normalizeStatusName, statusValue, tableIdFor, type StatusTableId } from '../../trace/status.js';
import {
  KIND_NAMES, binaryReason, clip, mergeOnWallTime, sniffKinds, splitLines, type ImportWarning, type ImportedLog,
} from './merge.js';

/*
 * libvirt debug logs: the QMP traffic between libvirtd and QEMU.
 *
 * Line format, from libvirt's src/util/virlog.c (virLogFormatString and the
 * timestamp virLogOutputToFd puts before it):
 *   "%s: %llu: %s : %s:%d : %s\n"  ->  TIME: THREAD: PRIORITY : FUNC:LINE : MESSAGE
 *   2024-01-02 03:04:05.678+0000: 1234: info : qemuMonitorJSONIOProcessLine:240 : QEMU_MONITOR_RECV_REPLY: ...
 * The monitor records are PROBE()s (src/util/virprobe.h logs "NAME: " FMT at
 * info level); their formats, from src/qemu/qemu_monitor.c and
 * src/qemu/qemu_monitor_json.c (libvirt/libvirt):
 *   QEMU_MONITOR_SEND_MSG: mon=%p msg=%s fd=%d          (qemuMonitorSend, the API thread queues it)
 *   QEMU_MONITOR_IO_WRITE: mon=%p buf=%s len=%zu ret=%d errno=%d   (qemuMonitorIOWrite, on the socket)
 *   QEMU_MONITOR_RECV_REPLY: mon=%p reply=%s            (qemuMonitorJSONIOProcessLine)
 *   QEMU_MONITOR_RECV_EVENT: mon=%p event=%s            (qemuMonitorJSONIOProcessLine)
 *   QEMU_MONITOR_NEW: mon=%p refs=%d fd=%d / QEMU_MONITOR_CLOSE: mon=%p
 * libvirt's JSON commands end in "\r\n" (LINE_ENDING), so msg= and buf= are
 * followed by a line break and the rest of the record (" fd=-1",
 * " len=48 ret=48 errno=0") on a line of its own: lines without a timestamp
 * continue the record before them. Checked against a log libvirt 9.0 wrote
 * on this machine (samples/libvirt-logs/).
 *
 * What becomes of it:
 *  - each query-migrate is a query (id = libvirt's "libvirt-N"): query-begin
 *    when the command went onto the socket (IO_WRITE; SEND_MSG when the log
 *    has no IO_WRITE for it), query-end and a `reply` at RECV_REPLY.
 *    `human-monitor-command` with "info migrate" is the HMP form, reply text
 *    as the body. Queries have thread null: libvirt's thread ids are
 *    libvirtd's, and the log does not say which QEMU thread answered.
 *  - MIGRATION events become transitions with thread null: QEMU sends one
 *    from migrate_set_state() right after the compare-and-swap, so each is a
 *    transition QEMU itself reports, stamped with QEMU's clock (the event's
 *    "timestamp", microseconds). Old = the previous MIGRATION status of the
 *    same monitor ("setup" always comes from "none"), marked with probe
 *    "libvirt:MIGRATION event (old inferred)"; null for the first otherwise.
 *    They are placed by QEMU's timestamp among libvirt's millisecond stamps
 *    with the tie rule of merge.ts, not where libvirt happened to read them
 *    (QEMU may hold an event while its main thread is busy). When a QEMU
 *    trace log of the same guest is merged in, its transitions (with
 *    threads) replace these: set `migrationEvents: 'notes'`.
 *  - other migration-related commands (migrate, migrate_cancel,
 *    migrate-set-*, stop, cont) and events (STOP, RESUME, MIGRATION_PASS)
 *    become notes; the rest of the traffic is left out.
 *  - each monitor (mon=0x...) is one QEMU process and one session; a
 *    QEMU_MONITOR_NEW for an address seen before starts a new one. Monitors
 *    with no migration traffic (capability probing) are left out.
 */

export interface LibvirtLogOptions {
  source?: string;
  qemuVersion?: string | null;
  /** 'transitions' (default) or 'notes' when a QEMU trace log supplies the transitions. */
  migrationEvents?: 'transitions' | 'notes';
}

export interface LibvirtMonitorLog extends ImportedLog {
  mon: string;
}

export interface LibvirtLogResult {
  monitors: LibvirtMonitorLog[];
  /** Monitors seen with no migration traffic (probing processes), by address. */
  idle: string[];
  warnings: ImportWarning[];
}

const RECORD = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?([+-]\d\d:?\d\d|Z)?: (\d+): (debug|info|warning|error) : ([^:\s]+):(\d+) : (.*)$/;
const PROBE = /^(QEMU_MONITOR_[A-Z_]+): mon=(0x[0-9a-fA-F]+|\(nil\))\s*(.*)$/s;
const NOTE_COMMANDS = /^(?:migrate|migrate_cancel|migrate-cancel|migrate-set-capabilities|migrate-set-parameters|migrate_set_speed|migrate_set_downtime|migrate-continue|migrate-incoming|migrate-pause|migrate-recover|migrate-start-postcopy|stop|cont|quit)$/;
const NOTE_EVENTS = new Set(['STOP', 'RESUME', 'MIGRATION_PASS', 'SHUTDOWN', 'POWERDOWN', 'RESET']);
const MAX_LISTED = 200;

interface Rec {
  line: number;
  wall: string;
  libvirtThread: number;
  func: string;
  srcLine: number;
  probe: string;
  mon: string;
  rest: string;
}

function isoWall(date: string, time: string, frac: string | undefined, zone: string | undefined): string {
  const z = zone === undefined || zone === 'Z' ? 'Z' : zone.replace(/^([+-]\d\d)(\d\d)$/, '$1:$2');
  const ms = Date.parse(`${date}T${time}${z}`);
  const f = (frac ?? '').padEnd(3, '0');
  if (Number.isNaN(ms)) return `${date}T${time}.${f}Z`;
  return `${new Date(ms).toISOString().slice(0, 19)}.${f}Z`;
}

/** The JSON at the start of a probe's text: "{...} len=.." -> {...}. */
function leadingJson(s: string): unknown {
  const t = s.trim();
  if (!t.startsWith('{')) return undefined;
  let depth = 0;
  let quote = false;
  for (let i = 0; i < t.length; i++) {
    const c = t[i];
    if (quote) {
      if (c === '\\') i++;
      else if (c === '"') quote = false;
      continue;
    }
    if (c === '"') quote = true;
    else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') {
      depth--;
      if (depth === 0) {
        try {
          return JSON.parse(t.slice(0, i + 1));
        } catch {
          return undefined;
        }
      }
    }
  }
  return undefined;
}

function idOf(obj: unknown): string | null {
  if (typeof obj !== 'object' || obj === null) return null;
  const id = (obj as { id?: unknown }).id;
  return id === undefined || id === null ? null : typeof id === 'string' ? id : JSON.stringify(id);
}

interface MonState {
  mon: string;
  generation: number;
  events: NewEvent[];
  lines: number[];
  /** QEMU-clocked transitions (MIGRATION events), merged by time at the end. */
  qemuClocked: NewEvent[];
  qemuLines: number[];
  warnings: ImportWarning[];
  /** Queries by id: the command and when it went out. */
  pending: Map<string, { command: 'query-migrate' | 'info migrate'; begun: boolean; line: number }>;
  lastStatus: string | null;
  migrationTraffic: boolean;
  version: string | null;
}

export function parseLibvirtLog(text: string, opts: LibvirtLogOptions = {}): LibvirtLogResult {
  const source = opts.source ?? 'input';
  if (text.trim() === '') throw new MigraceError('IMPORT', `${source}: empty file: not a libvirt log`);
  const bin = binaryReason(text);
  if (bin) throw new MigraceError('IMPORT', `${source}: ${bin}: not a libvirt debug log`);
  const table: StatusTableId = tableIdFor(opts.qemuVersion ?? null);
  const asNotes = opts.migrationEvents === 'notes';
  const raw = splitLines(text);
  const warnings: ImportWarning[] = [];

  // Records, with their continuation lines folded back in.
  const recs: Rec[] = [];
  let records = 0;
  let beforeFirst = 0;
  let prev: Rec | null = null;
  for (let i = 0; i < raw.length; i++) {
    const line = raw[i];
    const m = RECORD.exec(line);
    if (!m) {
      if (prev) prev.rest += `\n${line}`;
      else if (line.trim() !== '') {
        beforeFirst++;
        if (beforeFirst <= MAX_LISTED) warnings.push({ line: i + 1, text: clip(line), reason: 'not a libvirt log record, skipped' });
      }
      continue;
    }
    records++;
    prev = null;
    const msg = m[9];
    if (!msg.startsWith('QEMU_MONITOR_')) continue;
    const p = PROBE.exec(msg);
    if (!p) {
      warnings.push({ line: i + 1, text: clip(line), reason: 'a QEMU_MONITOR record in an unknown format, skipped' });
      continue;
    }
    prev = {
      line: i + 1, wall: isoWall(m[1], m[2], m[3], m[4]), libvirtThread: Number(m[5]), func: m[7], srcLine: Number(m[8]),
      probe: p[1], mon: p[2], rest: p[3],
    };
    recs.push(prev);
  }
  if (records === 0) {
    const kinds = sniffKinds(text).filter((k) => k !== 'libvirt');
    const first = raw.findIndex((r) => r.trim() !== '');
    throw new MigraceError('IMPORT',
      `${source}:${first + 1}: not a libvirt debug log: no line of the form "YYYY-MM-DD HH:MM:SS.mmm+0000: THREAD: LEVEL : FUNC:LINE : MESSAGE" in its ${raw.length} lines` +
      `${kinds.length ? `; it looks like ${KIND_NAMES[kinds[0]]}` : ''} (line ${first + 1}: ${JSON.stringify(clip(raw[first]?.trim() ?? ''))})`);
  }
  if (recs.length === 0) {
    throw new MigraceError('IMPORT',
      `${source}: a libvirt log (${records} records) without QMP traffic: no QEMU_MONITOR_* record. Log with log_filters="1:qemu.qemu_monitor 1:qemu.qemu_monitor_json" (and log_outputs at level 1) to record it`);
  }

  // Which queries went onto the socket: their begin is the IO_WRITE, not the SEND_MSG.
  const written = new Set<string>();
  for (const r of recs) {
    if (r.probe === 'QEMU_MONITOR_IO_WRITE') {
      const id = idOf(leadingJson(r.rest.replace(/^buf=/, '')));
      if (id) written.add(`${r.mon} ${id}`);
    }
  }

  const monitors = new Map<string, MonState>();
  const done: MonState[] = [];
  const stateOf = (mon: string): MonState => {
    let s = monitors.get(mon);
    if (!s) {
      s = {
        mon, generation: 0, events: [], lines: [], qemuClocked: [], qemuLines: [], warnings: [], pending: new Map(),
        lastStatus: null, migrationTraffic: false, version: null,
      };
      monitors.set(mon, s);
    }
    return s;
  };
  const base = (r: Rec): Omit<NewEvent, 'kind' | 'data'> => ({
    t_ns: null, wall: r.wall, thread: null, probe: `libvirt:${r.probe}`, pc: null, func: r.func, file: null, line: r.srcLine,
  });
  const push = (s: MonState, e: NewEvent, line: number): void => {
    s.events.push(e);
    s.lines.push(line);
  };

  for (const r of recs) {
    if (r.probe === 'QEMU_MONITOR_NEW') {
      const old = monitors.get(r.mon);
      if (old && (old.events.length > 0 || old.qemuClocked.length > 0)) {
        done.push(old);
        monitors.delete(r.mon);
        stateOf(r.mon).generation = old.generation + 1;
      }
      continue;
    }
    const s = stateOf(r.mon);
    if (r.probe === 'QEMU_MONITOR_CLOSE') {
      if (s.migrationTraffic) push(s, { ...base(r), kind: 'note', data: { text: `libvirt closed the monitor ${r.mon}` } } as NewEvent, r.line);
      continue;
    }
    if (r.probe === 'QEMU_MONITOR_SEND_MSG' || r.probe === 'QEMU_MONITOR_IO_WRITE') {
      const json = r.probe === 'QEMU_MONITOR_SEND_MSG' ? r.rest.replace(/^msg=/, '') : r.rest.replace(/^buf=/, '');
      if (!/"execute"\s*:/.test(json.slice(0, 200))) continue;
      const obj = leadingJson(json) as { execute?: unknown; arguments?: Record<string, unknown> } | undefined;
      if (obj === undefined) {
        if (/query-migrate"|human-monitor-command"/.test(json.slice(0, 300))) {
          s.warnings.push({ line: r.line, text: clip(json), reason: 'a monitor command whose JSON does not parse (cut short?): skipped' });
        }
        continue;
      }
      const execute = typeof obj.execute === 'string' ? obj.execute : '';
      // libvirt numbers every command ("libvirt-N") and QEMU echoes the id: replies are matched by it.
      const id = idOf(obj);
      const hmp = execute === 'human-monitor-command' && typeof obj.arguments?.['command-line'] === 'string' &&
        /^\s*info\s+migrate\s*$/.test(obj.arguments['command-line'] as string);
      const command = execute === 'query-migrate' ? 'query-migrate' : hmp ? 'info migrate' : null;
      if (command && id !== null) {
        s.migrationTraffic = true;
        const isBegin = r.probe === 'QEMU_MONITOR_IO_WRITE' || !written.has(`${r.mon} ${id}`);
        if (!s.pending.has(id)) s.pending.set(id, { command, begun: false, line: r.line });
        const q = s.pending.get(id)!;
        if (isBegin && !q.begun) {
          q.begun = true;
          push(s, { ...base(r), kind: 'query-begin', data: { query: id } } as NewEvent, r.line);
        }
      } else if (command) {
        s.warnings.push({ line: r.line, text: clip(json), reason: `${command} without an id: its reply cannot be matched, skipped` });
      } else if (NOTE_COMMANDS.test(execute) && (r.probe === 'QEMU_MONITOR_IO_WRITE' || (id !== null && !written.has(`${r.mon} ${id}`)))) {
        if (/^migrat/.test(execute)) s.migrationTraffic = true;
        const args = obj.arguments ? ` ${JSON.stringify(obj.arguments)}` : '';
        push(s, { ...base(r), kind: 'note', data: { text: `QMP ${execute}${args.length > 300 ? ' {...}' : args}` } } as NewEvent, r.line);
      }
      continue;
    }
    if (r.probe === 'QEMU_MONITOR_RECV_REPLY') {
      const text = r.rest.replace(/^reply=/, '');
      // Most replies (schemas, CPU models) are large and of no interest: look at the id first.
      // QEMU puts the id last; older ones (and replies cut short) may have it first.
      const idm = /"id":\s*("(?:[^"\\]|\\.)*"|\d+)\s*}\s*$/.exec(text.trimEnd()) ?? /^\{\s*"id":\s*("(?:[^"\\]|\\.)*"|\d+)/.exec(text.trim());
      const key = idm ? (idm[1].startsWith('"') ? (JSON.parse(idm[1]) as string) : idm[1]) : null;
      if (key === null || !s.pending.has(key)) continue;
      const q = s.pending.get(key)!;
      s.pending.delete(key);
      const obj = leadingJson(text);
      if (obj === undefined) {
        s.warnings.push({ line: r.line, text: clip(text), reason: `the reply to ${key} does not parse as JSON (cut short?): kept as a reply with no body` });
      }
      // HMP through QMP: the body is the text the monitor printed.
      const ret = (obj as { return?: unknown } | undefined)?.return;
      const body: unknown = obj === undefined ? text : q.command === 'info migrate' ? (typeof ret === 'string' ? ret : '') : obj;
      if (!q.begun) push(s, { ...base(r), kind: 'query-begin', data: { query: key } } as NewEvent, q.line);
      push(s, { ...base(r), kind: 'query-end', data: { query: key } } as NewEvent, r.line);
      push(s, { ...base(r), kind: 'reply', data: replyData(key, q.command, body) } as NewEvent, r.line);
      continue;
    }
    if (r.probe === 'QEMU_MONITOR_RECV_EVENT') {
      const text = r.rest.replace(/^event=/, '');
      const name = /"event":\s*"([A-Z_0-9]+)"/.exec(text)?.[1] ?? null;
      if (name !== 'MIGRATION' && (name === null || !NOTE_EVENTS.has(name))) continue;
      const obj = leadingJson(text) as { event?: string; data?: Record<string, unknown>; timestamp?: { seconds?: number; microseconds?: number } } | undefined;
      if (!obj) {
        s.warnings.push({ line: r.line, text: clip(text), reason: `a ${name} event that does not parse as JSON: skipped` });
        continue;
      }
      if (name !== 'MIGRATION') {
        push(s, { ...base(r), kind: 'note', data: { text: `QMP event ${name}${obj.data ? ` ${JSON.stringify(obj.data)}` : ''}` } } as NewEvent, r.line);
        continue;
      }
      s.migrationTraffic = true;
      const st = typeof obj.data?.status === 'string' ? normalizeStatusName(obj.data.status) : null;
      if (st === null) {
        s.warnings.push({ line: r.line, text: clip(text), reason: 'a MIGRATION event without a status: skipped' });
        continue;
      }
      const ts = obj.timestamp;
      const qemuWall = ts && typeof ts.seconds === 'number' && ts.seconds > 0
        ? `${new Date(ts.seconds * 1000).toISOString().slice(0, 19)}.${String(ts.microseconds ?? 0).padStart(6, '0')}Z`
        : null;
      if (asNotes) {
        push(s, { ...base(r), kind: 'note', data: { text: `QMP event MIGRATION ${st}${qemuWall ? ` (QEMU time ${qemuWall})` : ''}` } } as NewEvent, r.line);
        s.lastStatus = st;
        continue;
      }
      let old: StateValue | null = null;
      let inferred = false;
      if (st === 'setup') old = { value: statusValue('none', table), name: 'none' };
      else if (s.lastStatus !== null) {
        old = { value: statusValue(s.lastStatus, table), name: s.lastStatus };
        inferred = true;
      }
      s.lastStatus = st;
      const e = {
        ...base(r), wall: qemuWall ?? r.wall, probe: `libvirt:MIGRATION event${inferred ? ' (old inferred)' : ''}`, func: 'migrate_set_state', line: null,
        kind: 'transition', data: { addr: null, old, new: { value: statusValue(st, table), name: st } },
      } as NewEvent;
      if (qemuWall) {
        s.qemuClocked.push(e);
        s.qemuLines.push(r.line);
      } else {
        push(s, e, r.line);
      }
      continue;
    }
  }
  for (const s of monitors.values()) done.push(s);

  const out: LibvirtMonitorLog[] = [];
  const idle: string[] = [];
  for (const s of done) {
    if (!s.migrationTraffic) {
      idle.push(s.mon);
      continue;
    }
    for (const [key, q] of s.pending) {
      s.warnings.push({ line: q.line, text: key, reason: `${q.command} ${key} has no reply in the log (the log ends, or the monitor closed, first)` });
    }
    const title = `${source}: mon=${s.mon}${s.generation ? ` #${s.generation + 1}` : ''}`;
    let log: ImportedLog = {
      title, threads: [], events: s.events, lines: s.lines, warnings: s.warnings, qemuVersion: null, meta: {},
    };
    if (s.qemuClocked.length > 0) {
      const qemuSide: ImportedLog = { title, threads: [], events: s.qemuClocked, lines: s.qemuLines, warnings: [], qemuVersion: null, meta: {} };
      const merged = mergeOnWallTime(log, qemuSide);
      log = { ...merged, title, warnings: s.warnings, meta: {} };
    }
    log.warnings.sort((a, b) => a.line - b.line);
    out.push({
      ...log,
      meta: {
        monitor: s.mon,
        migration_events: asNotes ? 'notes (a QEMU trace log supplies the transitions)' : 'transitions with thread null, old inferred from the previous event, placed by QEMU timestamps',
        queries: s.events.filter((e) => e.kind === 'query-begin').length,
      },
      mon: s.mon,
    });
  }
  return { monitors: out, idle, warnings };
}
