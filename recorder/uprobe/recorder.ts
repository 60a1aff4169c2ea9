import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readdirSync } from 'node:fs';
import { MigraceError, messageOf } from '../../trace/errors.js';
import type { TraceEvent } from '../../trace/schema.js';
import type { SessionWriter } from '../../trace/store.js';
import { processIsAlive, readProcStat } from '../../trace/proc.js';
import { sleep, withTimeout } from '../../trace/async.js';
import { statusNamesOf } from '../../trace/status.js';
import { BackendCore, probeEvent, type RecordingBackend } from '../backend.js';
import type { Probe, Profile } from '../probes/profile.js';
import { dieWithParent, track, waitGone } from '../reaper.js';
import { logTail } from '../targets/private-dir.js';
import type { PreparedTarget } from '../targets/types.js';
import { resolveProfile, type Resolution, type SourcePlace } from './resolve.js';
import { LineSplitter, parseTraceLine, type TraceHit } from './trace-line.js';
import { UprobeGroup, type ProbeDefinition } from './tracefs.js';

/**
 * Recording through kernel uprobes: the profile's probes become uprobe
 * events in a tracing instance of our own, filtered to the target's
 * threads; each hit is stored by the kernel with the fetched values and
 * the thread goes on at once. Nothing ptraces the target: an attached QEMU
 * stays untraced (TracerPid 0) and survives whatever happens to migrace.
 * Uprobes cannot hold a thread: replay and hunt stay on gdb.
 *
 * Parts: `start` resolves the profile (resolve.ts), defines the group
 * (tracefs.ts), starts the target stopped or filters an attached one, and
 * starts the reader (a `cat` of trace_pipe); `onLine` turns each line into
 * an event; `drain` writes a marker and waits for it (trace_pipe is
 * ordered by time across CPUs, so every hit before the marker has been
 * read when it arrives); `shutdown` stops the reader, removes the group and
 * counts what the kernel dropped.
 */

export interface UprobeOptions {
  writer: SessionWriter;
  profile: Profile;
  /** The program the probes are placed in (the attached process's /proc/PID/exe, or the target's binary). */
  binary: string;
  /** Start this target (stopped until the pid filter is set)... */
  target?: PreparedTarget;
  /** ...or record this running process. */
  attachPid?: number;
  gdbPath?: string;
  bufferKb?: number;
  progress?: (msg: string) => void;
  /**
   * Close each query at qmp_query_migrate's return (a return probe): for a
   * passive attach, where the replies go to somebody else. When migrace
   * sends the queries, the reply closes them.
   */
  queryReturns?: boolean;
}

/** Probe event name -> the probe and whether it is a query's return. */
interface EventInfo { probe: Probe; queryEnd: boolean; place: SourcePlace }

export class UprobeRecorder extends BackendCore implements RecordingBackend {
  readonly backend = 'uprobe' as const;
  /** Hits whose query id was made up here: queries others sent (passive attach). */
  unsolicited = 0;
  private readonly events = new Map<string, EventInfo>();
  private readonly names = new Map<number, string>();
  private readonly splitter = new LineSplitter();
  private readonly markers = new Map<string, () => void>();
  private nextMarker = 0;
  private group: UprobeGroup | null = null;
  private reader: ChildProcess | null = null;
  private target: ChildProcess | null = null;
  private watch: NodeJS.Timeout | null = null;
  private expectingExit = false;
  private shutdownDone = false;
  private lost = 0;
  private readonly openQueries = new Map<number, string>();
  /** Fires for every hit, after its event is pushed (passive attach ends on a final transition). */
  onHit: ((e: TraceEvent) => void) | null = null;
  resolution: Resolution | null = null;

  private constructor(private readonly opts: UprobeOptions) {
    super(opts.writer);
  }

  static async start(opts: UprobeOptions): Promise<UprobeRecorder> {
    const r = new UprobeRecorder(opts);
    return BackendCore.begin(r, () => r.setup());
  }


  /** Events the kernel dropped because the reader fell behind (read at shutdown). */
  get lostEvents(): number {
    return this.lost;
  }

  sessionMeta(): Record<string, unknown> {
    return {
      backend: 'uprobe',
      uprobe: { hits: this.hits, lost_events: this.lost },
      ...(this.lost > 0 ? { incomplete: `the kernel dropped ${this.lost} probe hits: the reader fell behind its ring buffer` } : {}),
    };
  }

  private async setup(): Promise<void> {
    const { profile, progress } = this.opts;
    this.resolution = await resolveProfile(this.opts.binary, profile, { gdbPath: this.opts.gdbPath });
    const defs: ProbeDefinition[] = [];
    for (const rp of this.resolution.probes) {
      for (const [i, d] of rp.defs.entries()) {
        defs.push(d);
        this.events.set(d.event, { probe: rp.probe, queryEnd: false, place: rp.places[i]! });
        progress?.(`uprobe ${rp.probe.name} at ${d.path}:0x${d.fileOffset.toString(16)}${d.args.length ? ` (${d.args.map((a) => `${a.name}=${a.fetch}`).join(' ')})` : ''}`);
      }
      // A query's return closes its window when nobody else's reply does (passive attach).
      if (rp.probe.role === 'query' && this.opts.queryReturns) {
        for (const d of rp.defs) {
          const ret = { ...d, event: `${d.event}_ret`, args: [], ret: true };
          defs.push(ret);
          this.events.set(ret.event, { probe: rp.probe, queryEnd: true, place: { func: 'qmp_query_migrate', file: null, line: null } });
        }
      }
    }
    await this.lockProbes(this.opts.binary, 'uprobe', progress);
    this.group = UprobeGroup.open(defs, { bufferKb: this.opts.bufferKb ?? 8192 });
    this.startReader();
    if (this.opts.attachPid !== undefined) {
      this.pid = this.opts.attachPid;
      this.group.filterPids(tasksOf(this.pid));
      this.group.enable();
      this.watchAttached(this.pid);
    } else if (this.opts.target) {
      await this.launch(this.opts.target);
    } else {
      throw new MigraceError('UPROBE', 'nothing to record: neither a target nor a pid');
    }
  }

  private startReader(): void {
    const group = this.group!;
    const cmd = dieWithParent('cat', [group.pipePath]);
    const reader = spawn(cmd.file, cmd.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.reader = reader;
    if (reader.pid) track(reader.pid, 'trace_pipe reader');
    reader.stdout!.setEncoding('utf8');
    reader.stdout!.on('data', (chunk: string) => {
      for (const line of this.splitter.push(chunk)) this.onLine(line);
    });
    reader.on('exit', (code, signal) => {
      if (!this.expectingExit) this.fail(new MigraceError('UPROBE', `the trace_pipe reader exited (${signal ?? `code ${code}`})`));
    });
  }

  /** The target starts stopped, so the pid filter is in place before its first instruction. */
  private async launch(target: PreparedTarget): Promise<void> {
    const log = openSync(target.logPath, 'a', 0o600);
    const inner = ['-c', 'kill -STOP $$; exec "$0" "$@"', target.binary, ...target.args];
    const cmd = dieWithParent('/bin/sh', inner);
    let child: ChildProcess;
    try {
      child = spawn(cmd.file, cmd.args, { stdio: ['ignore', log, log], env: { ...process.env, ...target.env } });
    } finally {
      closeSync(log);
    }
    this.target = child;
    const pid = child.pid;
    if (!pid) throw new MigraceError('TARGET_MISSING', `cannot start ${target.binary}`);
    this.pid = pid;
    track(pid, `${target.info.kind} (uprobe target)`);
    child.on('exit', (code, signal) => {
      this.exited = true;
      if (!this.expectingExit) {
        const said = logTail(target.logPath);
        this.fail(new MigraceError('TARGET_EXITED', `${target.info.kind} exited (${signal ? `signal ${signal}` : `code ${code ?? '?'}`}) before the scenario finished${said ? `; it said: ${said}` : ''}`));
      }
    });
    // Wait for the shell to stop itself, then filter on its pid (exec keeps it) and let it run.
    const deadline = Date.now() + 5000;
    const stopped = (): boolean => readProcStat(pid)?.state === 'T';
    while (!stopped() && !this.exited && Date.now() < deadline) await sleep(2);
    if (!stopped()) throw new MigraceError('TARGET_EXITED', `${target.binary} did not start`);
    this.group!.filterPids([pid]);
    this.group!.enable();
    process.kill(pid, 'SIGCONT');
  }

  private watchAttached(pid: number): void {
    this.watch = setInterval(() => {
      if (processIsAlive(pid)) return;
      this.exited = true;
      if (!this.expectingExit) this.fail(new MigraceError('TARGET_EXITED', `the attached process ${pid} exited`));
    }, 200);
    this.watch.unref();
  }

  private onLine(line: string): void {
    const t = parseTraceLine(line);
    if (!t) return;
    if (t.kind === 'marker') {
      const done = this.markers.get(t.text);
      if (done) {
        this.markers.delete(t.text);
        done();
      }
      return;
    }
    const info = this.events.get(t.event);
    if (!info) return;
    try {
      const event = this.hit(t, info);
      this.onHit?.(event);
    } catch (e) {
      this.fail(e instanceof MigraceError ? e : new MigraceError('UPROBE', `a probe hit could not be recorded: ${messageOf(e)}`));
    }
  }

  private hit(t: TraceHit, info: EventInfo): TraceEvent {
    this.hits++;
    // Names change after a thread starts (QEMU names its threads itself): each hit carries the current one.
    if (this.names.get(t.tid) !== t.comm) {
      this.names.set(t.tid, t.comm);
      this.opts.writer.thread({ tid: t.tid, gdb_id: null, lwp: t.tid, name: t.comm });
    }
    const t_ns = this.clock.nsSince(t.tsNs);
    const place = { pc: t.ip, ...info.place };
    if (info.queryEnd) {
      const query = this.openQueries.get(t.tid) ?? `unsolicited-${this.hits}`;
      this.openQueries.delete(t.tid);
      return this.push({ t_ns, wall: this.wallAt(t_ns), thread: t.tid, kind: 'query-end', probe: info.probe.name, ...place, data: { query } });
    }
    const raw = Object.fromEntries(t.args);
    const event = this.push(probeEvent(info.probe, t.tid, t_ns, this.wallAt(t_ns), place, raw, statusNamesOf(this.opts.profile), {
      current: this.currentQuery,
      unsolicited: () => `p${++this.unsolicited}`,
    }));
    if (event.kind === 'query-begin') {
      this.queryThreads.set(event.data.query, t.tid);
      this.openQueries.set(t.tid, event.data.query);
    }
    return event;
  }

  /** Every hit before now is pushed when this resolves. */
  async drain(): Promise<void> {
    if (!this.group || !this.reader || this.reader.exitCode !== null) return;
    const text = `migrace-drain-${process.pid}-${++this.nextMarker}`;
    const seen = new Promise<void>((resolve) => this.markers.set(text, resolve));
    this.group.mark(text);
    await this.guard(withTimeout(seen, 5000, () => new MigraceError('UPROBE', 'the kernel trace did not deliver a marker within 5 s')));
  }

  expectExit(): void {
    this.expectingExit = true;
  }

  /**
   * Stop reading, remove the probes and the instance, stop a target we
   * started. The kernel's drop count is kept for the session.
   */
  async shutdown(): Promise<void> {
    if (this.shutdownDone) return;
    this.shutdownDone = true;
    this.expectingExit = true;
    if (this.watch) clearInterval(this.watch);
    if (this.group) this.lost = this.group.lostEvents();
    const reader = this.reader;
    if (reader?.pid && reader.exitCode === null) {
      reader.kill('SIGKILL');
      await waitGone(reader.pid, 2000);
    }
    try {
      this.group?.remove();
    } finally {
      this.unlockProbes();
    }
    const target = this.target;
    if (target?.pid && target.exitCode === null && target.signalCode === null) {
      target.kill('SIGKILL');
      await waitGone(target.pid, 5000);
    }
  }
}

function tasksOf(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).map(Number).filter((n) => Number.isSafeInteger(n) && n > 0);
  } catch {
    throw new MigraceError('TARGET_MISSING', `no process ${pid} to record`);
  }
}
