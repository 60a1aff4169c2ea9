/*
 * The harness the kill tests drive migrace with: the CLI as a user runs it,
 * in its own temp folder, watched from outside.
 *
 *  - CliRun: one `migrace ...` child process; its output, its exit, and
 *    every process below it it was ever seen with (polled from /proc, with
 *    start times, so a pid the kernel reused is never mistaken for ours);
 *  - victims: the process of a kind (gdb, minimig, the source or the
 *    destination QEMU, migrace itself) to fault;
 *  - EventCounter: the committed events of the newest session and of all
 *    sessions (a hunt writes one a run), read from the database while
 *    migrace writes it (WAL: a reader sees every commit);
 *  - leftovers: what a finished run may not leave (processes, files in its
 *    temp folder, mounts under it, uprobe groups of its pid), and the state
 *    of a process migrace attached to (running, untraced).
 *
 * Nothing here signals a process that was not seen below a run of ours.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { processIsAlive, readProcStat, tracerPid } from '../../trace/proc.js';
import { TraceStore } from '../../trace/store.js';
import { sleep } from '../../trace/async.js';

export const CLI = resolve('bin', 'migrace.js');

export interface ProcInfo {
  pid: number;
  ppid: number;
  comm: string;
  cmdline: string;
  start: string;
}

function readProc(pid: number): ProcInfo | null {
  const stat = readProcStat(pid);
  if (!stat || stat.state === 'Z') return null;
  try {
    const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
    return { pid, ppid: stat.ppid, comm, cmdline, start: stat.startTime };
  } catch {
    return null;
  }
}

/** Every living process below `root`, through the kernel's children lists. */
export function descendants(root: number): ProcInfo[] {
  const out: ProcInfo[] = [];
  const walk = (pid: number): void => {
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {
      return;
    }
    for (const tid of tasks) {
      let kids: string;
      try {
        kids = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const k of kids.trim().split(/\s+/).filter(Boolean).map(Number)) {
        const info = readProc(k);
        if (info) {
          out.push(info);
          walk(k);
        }
      }
    }
  };
  walk(root);
  return out;
}

export type Victim = 'gdb' | 'minimig' | 'source' | 'destination' | 'migrace';

/** Which process below migrace a victim kind is. */
export function isVictim(p: ProcInfo, kind: Victim): boolean {
  switch (kind) {
    case 'gdb': return p.comm === 'gdb';
    case 'minimig': return p.comm === 'minimig' || p.comm === 'minimig-patche';
    case 'source': return p.comm.startsWith('qemu-system') && /-name source\b/.test(p.cmdline);
    case 'destination': return p.comm.startsWith('qemu-system') && /-name destination\b/.test(p.cmdline);
    case 'migrace': return false;
  }
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Date.now() at the exit. */
  at: number;
}


/** One `migrace ARGS` process with TMPDIR set to `tmp`. */
export class CliRun {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly started = Date.now();
  /** Every process seen below migrace while it ran, by pid. */
  readonly seen = new Map<number, ProcInfo>();
  readonly done: Promise<Exit>;
  exit: Exit | null = null;
  private out = '';
  private err = '';
  private readonly poll: NodeJS.Timeout;

  constructor(args: readonly string[], readonly tmp: string, env: Record<string, string> = {}) {
    this.child = spawn(process.execPath, [CLI, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TMPDIR: tmp, ...env },
    });
    this.pid = this.child.pid!;
    this.child.stdout!.on('data', (d: Buffer) => { this.out += d.toString(); });
    this.child.stderr!.on('data', (d: Buffer) => { this.err += d.toString(); });
    this.poll = setInterval(() => this.look(), 15);
    this.done = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        clearInterval(this.poll);
        this.exit = { code, signal, at: Date.now() };
        resolve(this.exit);
      });
    });
  }

  /** Note every process below migrace now; returns them. */
  look(): ProcInfo[] {
    const now = descendants(this.pid);
    for (const p of now) if (!this.seen.has(p.pid)) this.seen.set(p.pid, p);
    return now;
  }

  get stdout(): string {
    return this.out;
  }

  get stderr(): string {
    return this.err;
  }

  /** The living process of a kind below migrace (migrace itself for 'migrace'). */
  victim(kind: Victim): ProcInfo | null {
    if (kind === 'migrace') return readProc(this.pid);
    return this.look().find((p) => isVictim(p, kind)) ?? null;
  }

  /** Resolves when cond() holds (polled every `everyMs`), rejects after timeoutMs or when migrace exits first. */
  async until(cond: () => boolean, timeoutMs: number, what: string, everyMs = 5): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (cond()) return;
      if (this.exit) throw new Error(`migrace exited (${this.exit.code ?? this.exit.signal}) before ${what}:\n${this.err}${this.out}`);
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}:\n${this.err}${this.out}`);
      await sleep(everyMs);
    }
  }

  waitOutput(text: string | RegExp, timeoutMs = 60_000): Promise<void> {
    const hit = (): boolean => (typeof text === 'string' ? (this.err + this.out).includes(text) : text.test(this.err + this.out));
    return this.until(hit, timeoutMs, `output ${String(text)}`);
  }

  /** Send a signal to a process seen below this run (or migrace), by pid; false when it was gone. */
  signal(p: ProcInfo, sig: NodeJS.Signals): boolean {
    if (p.pid !== this.pid && this.seen.get(p.pid)?.start !== p.start) throw new Error(`refusing to signal ${p.pid}: not seen below this run`);
    if (!processIsAlive(p.pid, p.start)) return false;
    try {
      process.kill(p.pid, sig);
      return true;
    } catch {
      return false;
    }
  }

  /** Wait for the exit, at most timeoutMs (a hang is an error), SIGKILLing what is left of the run on the way out. */
  async finished(timeoutMs: number): Promise<Exit> {
    const timer = new Promise<null>((r) => setTimeout(() => r(null), timeoutMs).unref());
    const exit = await Promise.race([this.done, timer]);
    if (exit) return exit;
    for (const p of [...this.seen.values()]) if (processIsAlive(p.pid, p.start)) process.kill(p.pid, 'SIGKILL');
    this.child.kill('SIGKILL');
    await this.done;
    throw new Error(`migrace did not exit within ${timeoutMs} ms (hung):\n${this.err}${this.out}`);
  }

  /** The last line of what the run printed on a stream. */
  lastLine(stream: 'stdout' | 'stderr'): string {
    return (stream === 'stdout' ? this.out : this.err).trim().split('\n').at(-1) ?? '';
  }
}

/**
 * Committed events of the newest session of a database, read while it is
 * being written. A reader in WAL mode sees each commit and never blocks
 * the writer.
 */
export class EventCounter {
  private db: Database.Database | null = null;

  constructor(readonly path: string) {}

  private open(): Database.Database | null {
    if (this.db) return this.db;
    if (!existsSync(this.path)) return null;
    try {
      const db = new Database(this.path, { readonly: true, fileMustExist: true });
      db.pragma('busy_timeout = 50');
      if (!db.prepare(`SELECT 1 FROM sqlite_master WHERE name = 'events'`).get()) {
        db.close();
        return null;
      }
      this.db = db;
    } catch {
      return null;
    }
    return this.db;
  }

  /**
   * The newest session and its committed event count, and the committed
   * events of all sessions (a hunt writes one session per run), or null
   * before there is a session. One read transaction: the numbers agree.
   */
  now(): { session: number; events: number; state: string; total: number } | null {
    const db = this.open();
    if (!db) return null;
    try {
      return db.transaction(() => {
        const s = db.prepare(`SELECT id, state FROM sessions ORDER BY id DESC LIMIT 1`).get() as { id: number; state: string } | undefined;
        if (!s) return null;
        const n = (db.prepare(`SELECT count(*) AS n FROM events WHERE session_id = ?`).get(s.id) as { n: number }).n;
        const total = (db.prepare(`SELECT count(*) AS n FROM events`).get() as { n: number }).n;
        return { session: s.id, events: n, state: s.state, total };
      })();
    } catch {
      return null;
    }
  }

  close(): void {
    this.db?.close();
    this.db = null;
  }
}

/** What a database holds about one session, with SQLite's own integrity verdict. */
export interface SessionFacts {
  integrity: string;
  state: string | null;
  error: string | null;
  events: number;
  /** Date.parse of the wall clock of the session's last event (0 without events). */
  lastEventAt: number;
}

export function sessionFacts(path: string, session: number): SessionFacts {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const integrity = String(db.pragma('integrity_check', { simple: true }));
    const row = db.prepare(`SELECT state, error FROM sessions WHERE id = ?`).get(session) as { state: string; error: string | null } | undefined;
    const ev = db.prepare(`SELECT count(*) AS n, max(wall) AS last FROM events WHERE session_id = ?`).get(session) as { n: number; last: string | null };
    return { integrity, state: row?.state ?? null, error: row?.error ?? null, events: ev.n, lastEventAt: ev.last ? Date.parse(ev.last) : 0 };
  } finally {
    db.close();
  }
}

/** What a database holds about its newest hunt: its state, and which cell or baseline each session was. */
export function huntFacts(path: string): { state: string; error: string | null; cells: Map<number, { cls: string; note: string | null }>; baselines: Map<number, string> } | null {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    if (!db.prepare(`SELECT 1 FROM sqlite_master WHERE name = 'hunts'`).get()) return null;
    const h = db.prepare(`SELECT id, state, error, data FROM hunts ORDER BY id DESC LIMIT 1`).get() as { id: number; state: string; error: string | null; data: string } | undefined;
    if (!h) return null;
    // Through the store too: a hunt whose writer died reads as aborted there.
    const stored = TraceStore.open(path, { readonly: true });
    try {
      const read = stored.hunts().find((x) => x.id === h.id);
      if (read) Object.assign(h, { state: read.state, error: read.error });
    } finally {
      stored.close();
    }
    const cells = new Map<number, { cls: string; note: string | null }>();
    for (const c of db.prepare(`SELECT session_id, class, data FROM hunt_cells WHERE hunt_id = ? AND session_id IS NOT NULL`).all(h.id) as Array<{ session_id: number; class: string; data: string }>) {
      cells.set(c.session_id, { cls: c.class, note: (JSON.parse(c.data) as { note: string | null }).note });
    }
    const data = JSON.parse(h.data) as { baselines?: Array<{ session_id: number; status: string }> };
    const baselines = new Map((data.baselines ?? []).map((b) => [b.session_id, b.status]));
    return { state: h.state, error: h.error, cells, baselines };
  } finally {
    db.close();
  }
}

export interface Leftovers {
  /** Processes of the run still alive ("pid comm"). */
  processes: string[];
  /** Entries left in the run's temp folder. */
  files: string[];
  /** Mount points under the run's temp folder. */
  mounts: string[];
  /** uprobe definitions and tracing instances named after the run's pid. */
  uprobes: string[];
}

const TRACEFS = ['/sys/kernel/tracing', '/sys/kernel/debug/tracing'].find((d) => existsSync(join(d, 'uprobe_events'))) ?? null;

/** uprobe groups and instances of a migrace pid. */
export function uprobeGroupsOf(pid: number): string[] {
  if (!TRACEFS) return [];
  const group = `migrace_${pid}`;
  const found: string[] = [];
  try {
    for (const l of readFileSync(join(TRACEFS, 'uprobe_events'), 'utf8').split('\n')) if (l.includes(`:${group}/`)) found.push(l);
  } catch {
    /* not readable: nothing to check */
  }
  if (existsSync(join(TRACEFS, 'instances', group))) found.push(`instances/${group}`);
  return found;
}

/** Wait up to `graceMs` for the run's processes to go, then list what is left behind. */
export async function leftovers(run: CliRun, opts: { spare?: number[]; graceMs?: number } = {}): Promise<Leftovers> {
  const spare = new Set(opts.spare ?? []);
  const alive = (): ProcInfo[] => [...run.seen.values()].filter((p) => !spare.has(p.pid) && processIsAlive(p.pid, p.start));
  const deadline = Date.now() + (opts.graceMs ?? 3000);
  while (alive().length > 0 && Date.now() < deadline) await sleep(50);
  const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m.startsWith(`${run.tmp}/`) || m === run.tmp);
  return {
    processes: alive().map((p) => `${p.pid} ${p.comm}`),
    files: existsSync(run.tmp) ? readdirSync(run.tmp) : [],
    mounts,
    uprobes: uprobeGroupsOf(run.pid),
  };
}

/** A process migrace attached to must be left running and untraced. */
export function attachedHealth(pid: number): { alive: boolean; state: string | null; tracer: number | null } {
  return { alive: processIsAlive(pid), state: readProcStat(pid)?.state ?? null, tracer: tracerPid(pid) };
}
