import { writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { withTimeout } from '../trace/async.js';
import { MigraceError, messageOf } from '../trace/errors.js';
import type { TraceEvent } from '../trace/schema.js';
import { statusNamesOf } from '../trace/status.js';
import { BackendCore, probeEvent, type HitPlace, type RecordingBackend } from './backend.js';
import { GdbSession } from './gdb/session.js';
import { HOOK_PY } from './gdb-fast-hook.js';
import { parseHookLine, type HookHit, type HookLine } from './gdb-fast-line.js';
import { endGdb, isSignalStop, loadTarget, onSignalStop, startTarget, targetName, watchGdbRun, type LiveOptions } from './live.js';
import type { Probe, Profile } from './probes/profile.js';
import { makePrivateDir } from './targets/private-dir.js';
import { LineSplitter } from './uprobe/trace-line.js';

/**
 * Recording through gdb without a round trip per hit, for users without
 * root (no uprobes): a hook inside gdb (gdb-fast-hook.ts, Python) reads
 * each hit's values in the stopped thread, writes one line to a unix
 * socket of ours and lets the thread go on, so a hit costs what gdb's own
 * `commands`/`silent`/`continue` costs instead of several MI exchanges.
 * MI still drives everything else (start, attach, threads, exit). The
 * lines (gdb-fast-line.ts) become the same events as the MI path's, made
 * by the same `probeEvent`. It records only: replay and hunt hold threads,
 * which needs the MI path (live.ts).
 *
 * Parts: `start` makes a private folder with the socket, the hook and the
 * probes file, starts gdb as the MI path does (live.ts's shared steps),
 * loads the hook, which places the probes, and runs or attaches;
 * `onLine` turns the hook's lines into threads, places and events;
 * `drain` asks the hook for a marker (gdb handles hits and commands one at
 * a time, so every hit before the marker has been written when it
 * arrives); `shutdown` detaches or ends gdb and removes the folder.
 */

/** What the MI backend is given, less the store: hits go to the writer only. */
export type GdbFastOptions = Omit<LiveOptions, 'store' | 'sessionId'>;

/** Paths that go into gdb's `source` command and a Python string literal as they are. */
const PLAIN_PATH = /^\/[A-Za-z0-9_./-]+$/;

export class GdbFastTarget extends BackendCore implements RecordingBackend {
  readonly backend = 'gdb-fast' as const;
  /** Fires for every hit, after its event is pushed (passive attach ends on a final transition). */
  onHit: ((e: TraceEvent) => void) | null = null;
  readonly lostEvents = 0;
  private readonly dir = makePrivateDir('migrace-gdbfast');
  private readonly splitter = new LineSplitter();
  private readonly places = new Map<string, HitPlace>();
  private readonly markers = new Map<number, () => void>();
  private nextMarker = 0;
  private gdb: GdbSession | null = null;
  private server: Server | null = null;
  private hook: Socket | null = null;
  private expectingExit = false;
  private shutdownDone = false;

  private constructor(private readonly opts: GdbFastOptions) {
    super(opts.writer);
  }

  static async start(opts: GdbFastOptions): Promise<GdbFastTarget> {
    const r = new GdbFastTarget(opts);
    return BackendCore.begin(r, () => r.setup());
  }


  expectExit(): void {
    this.expectingExit = true;
  }

  sessionMeta(): Record<string, unknown> {
    return { backend: 'gdb-fast', gdb_fast: { hits: this.hits } };
  }

  private async setup(): Promise<void> {
    const { target, profile, progress, attachPid } = this.opts;
    if (!PLAIN_PATH.test(this.dir.path)) {
      throw new MigraceError('USAGE', `the gdb-fast backend needs a temporary folder path of letters, digits and _ . / - only, not ${JSON.stringify(this.dir.path)} (set TMPDIR)`);
    }
    const sockPath = join(this.dir.path, 'hits.sock');
    const connected = this.listen(sockPath);
    const gdb = await GdbSession.start({ gdbPath: this.opts.gdbPath });
    this.gdb = gdb;
    watchGdbRun(gdb, target, {
      fail: (e) => this.fail(e),
      expectingExit: () => this.expectingExit,
      targetExited: () => { this.exited = true; },
      thread: (id, lwp, name) => this.opts.writer.thread({ tid: id, gdb_id: id, lwp, name }),
      what: targetName(target, attachPid),
    });
    // The hook handles breakpoint stops inside gdb; a signal stop still comes over MI.
    gdb.on('stopped', (stop) => {
      if (!isSignalStop(stop, this.expectingExit)) return;
      onSignalStop(gdb, stop, this.opts, (e) => this.fail(e)).catch((e) => {
        // A target that died as its signal was passed on: its death, reported next, is the cause.
        if (!this.targetGone()) this.fail(e instanceof MigraceError ? e : new MigraceError('GDB_ERROR', `passing a signal on failed: ${messageOf(e)}`));
      });
    });
    await loadTarget(gdb, target, attachPid);
    await this.lockProbes(target.binary, 'gdb', progress);
    await this.loadHook(gdb, sockPath, profile);
    await withTimeout(connected, 5000, () => new MigraceError('GDB_ERROR', 'the gdb-fast hook inside gdb did not connect to migrace within 5 s'));
    this.pid = await startTarget(gdb, target, attachPid, (t) => this.opts.writer.thread({ tid: t.id, gdb_id: t.id, lwp: t.lwp, name: t.name }));
    progress?.(`gdb-fast: ${profile.probes.length} probes placed; each hit is handled inside gdb`);
  }

  /** The socket the hook writes to; resolves when the hook (the only client) is connected. */
  private listen(path: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const server = createServer((sock) => {
        if (this.hook) {
          sock.destroy();
          return;
        }
        this.hook = sock;
        sock.setEncoding('utf8');
        sock.on('data', (chunk: string) => {
          for (const line of this.splitter.push(chunk)) this.onLine(line);
        });
        sock.on('error', () => undefined);
        resolve();
      });
      server.on('error', (e) => reject(new MigraceError('GDB_ERROR', `cannot listen on ${path} for the gdb-fast hook: ${messageOf(e)}`)));
      server.listen(path);
      this.server = server;
    });
  }

  /** Source the hook and let it place every probe; a location gdb cannot place is an error naming it. */
  private async loadHook(gdb: GdbSession, sockPath: string, profile: Profile): Promise<void> {
    const hookPath = join(this.dir.path, 'hook.py');
    const probesPath = join(this.dir.path, 'probes.json');
    writeFileSync(hookPath, HOOK_PY, { mode: 0o600 });
    // The profile's locations and expressions reach gdb as data, never as command text.
    writeFileSync(probesPath, JSON.stringify(profile.probes.map((p) => ({ locations: p.locations, values: Object.entries(p.values) }))), { mode: 0o600 });
    try {
      await gdb.cli(`source ${hookPath}`);
    } catch (e) {
      throw new MigraceError('GDB_ERROR', `the gdb-fast backend needs a gdb with Python (${messageOf(e).replace(/ \(command: .*\)$/, '')}); use --backend gdb`, { cause: e });
    }
    const said = await gdb.cli(`python migrace_hook = migrace_start(${JSON.stringify(sockPath)}, ${JSON.stringify(probesPath)})`);
    const summary = said.split('\n').filter((l) => l.startsWith('{')).at(-1);
    let answer: { placed?: Array<Array<{ number: number; locations: number }>>; error?: { probe: number; location: string; message: string } };
    try {
      answer = JSON.parse(summary ?? '') as typeof answer;
    } catch {
      throw new MigraceError('GDB_ERROR', `the gdb-fast hook did not say what it placed: ${JSON.stringify(said.slice(0, 300))}`);
    }
    if (answer.error) {
      const probe = profile.probes[answer.error.probe];
      throw new MigraceError('PROBES', `probe ${probe?.name ?? answer.error.probe}: gdb cannot place ${answer.error.location} in ${this.opts.target.binary}: ${answer.error.message}`);
    }
    answer.placed?.forEach((bps, i) => {
      for (const [j, bp] of bps.entries()) {
        this.opts.progress?.(`probe ${profile.probes[i].name} at ${profile.probes[i].locations[j]}: ${bp.locations} location(s)`);
      }
    });
  }

  private onLine(line: string): void {
    let parsed: HookLine;
    try {
      parsed = parseHookLine(line);
    } catch (e) {
      this.fail(e instanceof MigraceError ? e : new MigraceError('GDB_ERROR', messageOf(e)));
      return;
    }
    switch (parsed.kind) {
      case 'hit':
        this.hit(parsed);
        return;
      case 'thread':
        // Read by the hook at the thread's first hit: its own name by then.
        this.opts.writer.thread({ tid: parsed.thread, gdb_id: parsed.thread, lwp: parsed.lwp, name: parsed.name });
        return;
      case 'place':
        this.places.set(parsed.pc, { pc: parsed.pc, func: parsed.func, file: parsed.file, line: parsed.line });
        return;
      case 'mark': {
        const done = this.markers.get(parsed.id);
        this.markers.delete(parsed.id);
        done?.();
        return;
      }
      case 'error': {
        const probe = this.probeAt(parsed.probe);
        const what = parsed.value === null ? 'its values' : `the value ${parsed.value} = "${probe.values[parsed.value] ?? '?'}"`;
        this.fail(new MigraceError('PROBES', `probe ${probe.name}: gdb cannot print ${what} at ${probe.locations.join(', ')}: ${parsed.message} (the gdb-fast backend records integers, enums and pointers; the session keeps what was recorded)`));
      }
    }
  }

  private probeAt(index: number): Probe {
    const probe = this.opts.profile.probes[index];
    if (!probe) throw new MigraceError('GDB_ERROR', `the gdb-fast hook reported probe ${index}, which the profile does not have`);
    return probe;
  }

  private hit(h: HookHit): void {
    try {
      const probe = this.probeAt(h.probe);
      this.hits++;
      const names = Object.keys(probe.values);
      const raw = Object.fromEntries(names.map((n, i) => [n, h.values[i]]));
      const t_ns = this.clock.nsSince(h.tNs);
      const place = this.places.get(h.pc) ?? { pc: h.pc, func: null, file: null, line: null };
      const event = this.push(probeEvent(probe, h.thread, t_ns, this.wallAt(t_ns), place, raw, statusNamesOf(this.opts.profile),
        { current: this.currentQuery, unsolicited: () => `unsolicited-${this.hits}` }));
      if (event.kind === 'query-begin') this.queryThreads.set(event.data.query, h.thread);
      this.onHit?.(event);
    } catch (e) {
      this.fail(e instanceof MigraceError ? e : new MigraceError('GDB_ERROR', `a probe hit could not be recorded: ${messageOf(e)}`));
    }
  }

  /** Every hit gdb handled before now is pushed when this resolves. */
  async drain(): Promise<void> {
    const gdb = this.gdb;
    if (!gdb || !this.hook || gdb.exited) return;
    const id = ++this.nextMarker;
    const seen = new Promise<void>((resolve) => this.markers.set(id, resolve));
    await gdb.cli(`python migrace_hook.mark(${id})`);
    await this.guard(withTimeout(seen, 5000, () => new MigraceError('GDB_ERROR', 'the gdb-fast hook did not answer a marker within 5 s')));
  }

  async shutdown(): Promise<void> {
    if (this.shutdownDone) return;
    this.shutdownDone = true;
    this.expectingExit = true;
    try {
      // Only once attached: a refused attach has nothing to detach from.
      if (this.gdb) {
        await endGdb(this.gdb, { attached: this.opts.attachPid !== undefined && this.pid !== null && !this.exited, drain: () => this.drain(), progress: this.opts.progress });
      }
    } finally {
      this.unlockProbes();
    }
    this.hook?.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.dir.remove();
  }
}
