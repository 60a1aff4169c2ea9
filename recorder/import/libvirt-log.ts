import { MigraceError } from '../../trace/errors.js';
import { replyData } from '../../trace/reply.js';
import type { NewEvent, StateValue } from '../../trace/schema.js';
import { normalizeStatusName, statusValue, tableIdFor, type StatusTableId } from '../../trace/status.js';
import { readText, type LineSink } from './lines.js';
import {
  KIND_NAMES, WarningList, binaryReason, clip, clipLong, mergeOnWallTime, sniffKinds, sourceLine, type ImportWarning, type ImportedLog,
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
 *
 * Reading: LibvirtLogImport takes one line at a time (a LineSink, lines.ts)
 * and handles each record once its continuation lines are in; only the
 * migration traffic stays in memory. A command logged as SEND_MSG is placed
 * at its IO_WRITE when one follows, else (at its reply, or when the monitor
 * is done) back where the SEND_MSG was.
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
/** Longer lines (a huge reply of no interest: QMP schemas, CPU models) are skipped with a warning. */
const MAX_LINE = 8 * 1024 * 1024;

interface Rec {
  line: number;
  wall: string;
  libvirtThread: number;
  func: string;
  srcLine: number | null;
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

/** A command sent with SEND_MSG whose IO_WRITE has not been seen: where its event goes if none comes. */
interface Unwritten {
  at: number;
  event: NewEvent;
  line: number;
}

interface MonState {
  mon: string;
  generation: number;
  events: NewEvent[];
  lines: number[];
  /** QEMU-clocked transitions (MIGRATION events), merged by time at the end. */
  qemuClocked: NewEvent[];
  qemuLines: number[];
  warnings: WarningList;
  /** Queries by id: the command and when it went out. */
  pending: Map<string, { command: 'query-migrate' | 'info migrate'; begun: boolean; line: number }>;
  /** SEND_MSG events by id, waiting for their IO_WRITE. */
  unwritten: Map<string, Unwritten>;
  lastStatus: string | null;
  migrationTraffic: boolean;
}

/** A libvirt debug log read line by line (see the header). */
export class LibvirtLogImport implements LineSink<LibvirtLogResult> {
  readonly maxLine = MAX_LINE;
  private readonly source: string;
  private readonly table: StatusTableId;
  private readonly asNotes: boolean;
  private readonly warnings = new WarningList();
  private readonly monitors = new Map<string, MonState>();
  private readonly done: MonState[] = [];
  private prev: Rec | null = null;
  private records = 0;
  private monitorRecords = 0;
  private beforeFirst = 0;
  private nonBlank = 0;
  private first: { line: number; text: string } | null = null;
  private lines = 0;
  private kinds: ReturnType<typeof sniffKinds> = [];

  constructor(opts: LibvirtLogOptions = {}) {
    this.source = opts.source ?? 'input';
    this.table = tableIdFor(opts.qemuVersion ?? null);
    this.asNotes = opts.migrationEvents === 'notes';
  }

  begin(head: string): void {
    const bin = binaryReason(head);
    if (bin) throw new MigraceError('IMPORT', `${this.source}: ${bin}: not a libvirt debug log`);
    this.kinds = sniffKinds(head).filter((k) => k !== 'libvirt');
  }

  line(line: string, n: number): void {
    this.lines = n;
    if (line.trim() !== '') {
      this.nonBlank++;
      this.first ??= { line: n, text: line.trim() };
    }
    const m = RECORD.exec(line);
    if (!m) {
      if (this.prev) {
        if (this.prev.rest.length + line.length > MAX_LINE) {
          this.warn({ line: n, text: clip(line), reason: `the record of line ${this.prev.line} goes on past ${MAX_LINE} characters: the rest is skipped` });
          this.prev = null;
        } else {
          this.prev.rest += `\n${line}`;
        }
      } else if (line.trim() !== '') {
        this.beforeFirst++;
        if (this.beforeFirst <= MAX_LISTED) this.warnings.push({ line: n, text: clip(line), reason: 'not a libvirt log record, skipped' });
      }
      return;
    }
    this.flush();
    this.records++;
    const msg = m[9];
    if (!msg.startsWith('QEMU_MONITOR_')) return;
    const p = PROBE.exec(msg);
    if (!p) {
      this.warnings.push({ line: n, text: clip(line), reason: 'a QEMU_MONITOR record in an unknown format, skipped' });
      return;
    }
    this.monitorRecords++;
    this.prev = {
      line: n, wall: isoWall(m[1], m[2], m[3], m[4]), libvirtThread: Number(m[5]), func: m[7], srcLine: sourceLine(m[8]),
      probe: p[1], mon: p[2], rest: p[3],
    };
  }

  tooLong(n: number, length: number, head: string): void {
    this.lines = n;
    this.nonBlank++;
    this.first ??= { line: n, text: head };
    this.flush();
    if (RECORD.test(head)) this.records++;
    this.warn({ line: n, text: clipLong(head, length), reason: `line of ${length} characters: too long for a record of interest, skipped` });
  }

  /** A warning for the monitor a line's record is about, else for the whole log. */
  private warn(w: ImportWarning): void {
    this.warnings.push(w);
  }

  /** The record before is complete: handle it. */
  private flush(): void {
    const r = this.prev;
    this.prev = null;
    if (r) this.record(r);
  }

  private stateOf(mon: string): MonState {
    let s = this.monitors.get(mon);
    if (!s) {
      s = {
        mon, generation: 0, events: [], lines: [], qemuClocked: [], qemuLines: [], warnings: new WarningList(), pending: new Map(),
        unwritten: new Map(), lastStatus: null, migrationTraffic: false,
      };
      this.monitors.set(mon, s);
    }
    return s;
  }

  private base(r: Rec): Omit<NewEvent, 'kind' | 'data'> {
    return { t_ns: null, wall: r.wall, thread: null, probe: `libvirt:${r.probe}`, pc: null, func: r.func, file: null, line: r.srcLine };
  }

  private push(s: MonState, e: NewEvent, line: number): void {
    s.events.push(e);
    s.lines.push(line);
  }

  /** An event at an earlier place of the monitor's list (a SEND_MSG whose IO_WRITE never came). */
  private insert(s: MonState, u: Unwritten): void {
    s.events.splice(u.at, 0, u.event);
    s.lines.splice(u.at, 0, u.line);
    for (const other of s.unwritten.values()) if (other.at >= u.at) other.at++;
  }

  /** Commands that never reached IO_WRITE go back to their SEND_MSG. */
  private settle(s: MonState, id?: string): void {
    const ids = id !== undefined ? [id] : [...s.unwritten.keys()].sort((a, b) => s.unwritten.get(a)!.at - s.unwritten.get(b)!.at);
    for (const k of ids) {
      const u = s.unwritten.get(k);
      if (!u) continue;
      s.unwritten.delete(k);
      if (u.event.kind === 'query-begin') {
        const q = s.pending.get(k);
        if (q) q.begun = true;
      }
      this.insert(s, u);
    }
  }

  private retire(s: MonState): void {
    this.settle(s);
    this.done.push(s);
  }

  private record(r: Rec): void {
    if (r.probe === 'QEMU_MONITOR_NEW') {
      const old = this.monitors.get(r.mon);
      if (old && (old.events.length > 0 || old.qemuClocked.length > 0 || old.unwritten.size > 0)) {
        this.retire(old);
        this.monitors.delete(r.mon);
        this.stateOf(r.mon).generation = old.generation + 1;
      }
      return;
    }
    const s = this.stateOf(r.mon);
    if (r.probe === 'QEMU_MONITOR_CLOSE') {
      if (s.migrationTraffic) this.push(s, { ...this.base(r), kind: 'note', data: { text: `libvirt closed the monitor ${r.mon}` } } as NewEvent, r.line);
      return;
    }
    if (r.probe === 'QEMU_MONITOR_SEND_MSG' || r.probe === 'QEMU_MONITOR_IO_WRITE') this.command(s, r);
    else if (r.probe === 'QEMU_MONITOR_RECV_REPLY') this.reply(s, r);
    else if (r.probe === 'QEMU_MONITOR_RECV_EVENT') this.event(s, r);
  }

  private command(s: MonState, r: Rec): void {
    const written = r.probe === 'QEMU_MONITOR_IO_WRITE';
    const json = written ? r.rest.replace(/^buf=/, '') : r.rest.replace(/^msg=/, '');
    if (!/"execute"\s*:/.test(json.slice(0, 200))) return;
    const obj = leadingJson(json) as { execute?: unknown; arguments?: Record<string, unknown> } | undefined;
    if (obj === undefined) {
      if (/query-migrate"|human-monitor-command"/.test(json.slice(0, 300))) {
        s.warnings.push({ line: r.line, text: clip(json), reason: 'a monitor command whose JSON does not parse (cut short?): skipped' });
      }
      return;
    }
    const execute = typeof obj.execute === 'string' ? obj.execute : '';
    // libvirt numbers every command ("libvirt-N") and QEMU echoes the id: replies are matched by it.
    const id = idOf(obj);
    const hmp = execute === 'human-monitor-command' && typeof obj.arguments?.['command-line'] === 'string' &&
      /^\s*info\s+migrate\s*$/.test(obj.arguments['command-line'] as string);
    const command = execute === 'query-migrate' ? 'query-migrate' : hmp ? 'info migrate' : null;
    if (command && id !== null) {
      s.migrationTraffic = true;
      if (!s.pending.has(id)) s.pending.set(id, { command, begun: false, line: r.line });
      const q = s.pending.get(id)!;
      if (q.begun) return;
      const begin = { ...this.base(r), kind: 'query-begin', data: { query: id } } as NewEvent;
      if (written) {
        // On the socket: this is when the query began, not when it was queued.
        s.unwritten.delete(id);
        q.begun = true;
        this.push(s, begin, r.line);
      } else if (!s.unwritten.has(id)) {
        s.unwritten.set(id, { at: s.events.length, event: begin, line: r.line });
      }
    } else if (command) {
      s.warnings.push({ line: r.line, text: clip(json), reason: `${command} without an id: its reply cannot be matched, skipped` });
    } else if (NOTE_COMMANDS.test(execute)) {
      if (/^migrat/.test(execute)) s.migrationTraffic = true;
      const args = obj.arguments ? ` ${JSON.stringify(obj.arguments)}` : '';
      const note = { ...this.base(r), kind: 'note', data: { text: `QMP ${execute}${args.length > 300 ? ' {...}' : args}` } } as NewEvent;
      if (written) {
        if (id !== null) s.unwritten.delete(id);
        this.push(s, note, r.line);
      } else if (id !== null && !s.unwritten.has(id)) {
        s.unwritten.set(id, { at: s.events.length, event: note, line: r.line });
      }
    }
  }

  private reply(s: MonState, r: Rec): void {
    const text = r.rest.replace(/^reply=/, '');
    // Most replies (schemas, CPU models) are large and of no interest: look at the id first.
    // QEMU puts the id last; older ones (and replies cut short) may have it first.
    const idm = /"id":\s*("(?:[^"\\]|\\.)*"|\d+)\s*}\s*$/.exec(text.trimEnd()) ?? /^\{\s*"id":\s*("(?:[^"\\]|\\.)*"|\d+)/.exec(text.trim());
    let key: string | null = null;
    if (idm) {
      try {
        key = idm[1].startsWith('"') ? (JSON.parse(idm[1]) as string) : idm[1];
      } catch {
        s.warnings.push({ line: r.line, text: clip(text), reason: `the reply's id ${clip(idm[1])} is not valid JSON (a control character?): skipped` });
        return;
      }
    }
    if (key === null || !s.pending.has(key)) return;
    this.settle(s, key);
    const q = s.pending.get(key)!;
    s.pending.delete(key);
    const obj = leadingJson(text);
    if (obj === undefined) {
      s.warnings.push({ line: r.line, text: clip(text), reason: `the reply to ${key} does not parse as JSON (cut short?): kept as a reply with no body` });
    }
    // HMP through QMP: the body is the text the monitor printed.
    const ret = (obj as { return?: unknown } | undefined)?.return;
    const body: unknown = obj === undefined ? text : q.command === 'info migrate' ? (typeof ret === 'string' ? ret : '') : obj;
    if (!q.begun) this.push(s, { ...this.base(r), kind: 'query-begin', data: { query: key } } as NewEvent, q.line);
    this.push(s, { ...this.base(r), kind: 'query-end', data: { query: key } } as NewEvent, r.line);
    this.push(s, { ...this.base(r), kind: 'reply', data: replyData(key, q.command, body) } as NewEvent, r.line);
  }

  private event(s: MonState, r: Rec): void {
    const text = r.rest.replace(/^event=/, '');
    const name = /"event":\s*"([A-Z_0-9]+)"/.exec(text)?.[1] ?? null;
    if (name !== 'MIGRATION' && (name === null || !NOTE_EVENTS.has(name))) return;
    const obj = leadingJson(text) as { event?: string; data?: Record<string, unknown>; timestamp?: { seconds?: number; microseconds?: number } } | undefined;
    if (!obj) {
      s.warnings.push({ line: r.line, text: clip(text), reason: `a ${name} event that does not parse as JSON: skipped` });
      return;
    }
    if (name !== 'MIGRATION') {
      this.push(s, { ...this.base(r), kind: 'note', data: { text: `QMP event ${name}${obj.data ? ` ${JSON.stringify(obj.data)}` : ''}` } } as NewEvent, r.line);
      return;
    }
    s.migrationTraffic = true;
    const st = typeof obj.data?.status === 'string' ? normalizeStatusName(obj.data.status) : null;
    if (st === null) {
      s.warnings.push({ line: r.line, text: clip(text), reason: 'a MIGRATION event without a status: skipped' });
      return;
    }
    const ts = obj.timestamp;
    const usec = ts && typeof ts.microseconds === 'number' && Number.isInteger(ts.microseconds) && ts.microseconds >= 0 && ts.microseconds < 1e6 ? ts.microseconds : 0;
    let qemuWall: string | null = null;
    if (ts && typeof ts.seconds === 'number' && ts.seconds > 0) {
      if (ts.seconds * 1000 <= 8.64e15) qemuWall = `${new Date(Math.floor(ts.seconds) * 1000).toISOString().slice(0, 19)}.${String(usec).padStart(6, '0')}Z`;
      else s.warnings.push({ line: r.line, text: clip(text), reason: `the event's timestamp ${ts.seconds} is out of range for a date: placed by libvirt's time` });
    }
    if (this.asNotes) {
      this.push(s, { ...this.base(r), kind: 'note', data: { text: `QMP event MIGRATION ${st}${qemuWall ? ` (QEMU time ${qemuWall})` : ''}` } } as NewEvent, r.line);
      s.lastStatus = st;
      return;
    }
    const table = this.table;
    let old: StateValue | null = null;
    let inferred = false;
    if (st === 'setup') old = { value: statusValue('none', table), name: 'none' };
    else if (s.lastStatus !== null) {
      old = { value: statusValue(s.lastStatus, table), name: s.lastStatus };
      inferred = true;
    }
    s.lastStatus = st;
    const e = {
      ...this.base(r), wall: qemuWall ?? r.wall, probe: `libvirt:MIGRATION event${inferred ? ' (old inferred)' : ''}`, func: 'migrate_set_state', line: null,
      kind: 'transition', data: { addr: null, old, new: { value: statusValue(st, table), name: st } },
    } as NewEvent;
    if (qemuWall) {
      s.qemuClocked.push(e);
      s.qemuLines.push(r.line);
    } else {
      this.push(s, e, r.line);
    }
  }

  finish(): LibvirtLogResult {
    this.flush();
    const source = this.source;
    if (this.nonBlank === 0) throw new MigraceError('IMPORT', `${source}: empty file: not a libvirt log`);
    if (this.records === 0) {
      const first = this.first!;
      throw new MigraceError('IMPORT',
        `${source}:${first.line}: not a libvirt debug log: no line of the form "YYYY-MM-DD HH:MM:SS.mmm+0000: THREAD: LEVEL : FUNC:LINE : MESSAGE" in its ${this.lines} lines` +
        `${this.kinds.length ? `; it looks like ${KIND_NAMES[this.kinds[0]]}` : ''} (line ${first.line}: ${JSON.stringify(clip(first.text))})`);
    }
    if (this.monitorRecords === 0) {
      throw new MigraceError('IMPORT',
        `${source}: a libvirt log (${this.records} records) without QMP traffic: no QEMU_MONITOR_* record. Log with log_filters="1:qemu.qemu_monitor 1:qemu.qemu_monitor_json" (and log_outputs at level 1) to record it`);
    }
    for (const s of this.monitors.values()) this.retire(s);

    const out: LibvirtMonitorLog[] = [];
    const idle: string[] = [];
    for (const s of this.done) {
      if (!s.migrationTraffic) {
        idle.push(s.mon);
        continue;
      }
      for (const [key, q] of s.pending) {
        s.warnings.push({ line: q.line, text: key, reason: `${q.command} ${key} has no reply in the log (the log ends, or the monitor closed, first)` });
      }
      const title = `${source}: mon=${s.mon}${s.generation ? ` #${s.generation + 1}` : ''}`;
      const warnings = [...s.warnings.items].sort((a, b) => a.line - b.line);
      let log: ImportedLog = {
        title, threads: [], events: s.events, lines: s.lines, warnings, unlisted: s.warnings.unlisted, qemuVersion: null, meta: {},
      };
      if (s.qemuClocked.length > 0) {
        const qemuSide: ImportedLog = { title, threads: [], events: s.qemuClocked, lines: s.qemuLines, warnings: [], qemuVersion: null, meta: {} };
        const merged = mergeOnWallTime(log, qemuSide);
        log = { ...merged, title, warnings, unlisted: s.warnings.unlisted, meta: {} };
      }
      out.push({
        ...log,
        meta: {
          monitor: s.mon,
          migration_events: this.asNotes ? 'notes (a QEMU trace log supplies the transitions)' : 'transitions with thread null, old inferred from the previous event, placed by QEMU timestamps',
          queries: s.events.filter((e) => e.kind === 'query-begin').length,
        },
        mon: s.mon,
      });
    }
    return { monitors: out, idle, warnings: [...this.warnings.items] };
  }
}

export function parseLibvirtLog(text: string, opts: LibvirtLogOptions = {}): LibvirtLogResult {
  return readText(new LibvirtLogImport(opts), text);
}
