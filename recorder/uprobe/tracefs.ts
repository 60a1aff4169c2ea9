import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MigraceError, messageOf } from '../../trace/errors.js';
import { processIsAlive } from '../../trace/proc.js';

/**
 * The kernel's tracing file system, as much of it as the uprobe backend
 * needs: where it is (mounting it when it is not), probe definitions in
 * `uprobe_events` under a group named after this process, and a tracing
 * instance of our own (`instances/NAME`: its own ring buffer, clock,
 * `trace_pipe`, pid filter and drop counters, so runs on one machine never
 * read or resize each other's buffers).
 *
 * Every definition line is built by the caller from validated parts; this
 * module only refuses lines that could hold a second definition.
 *
 * Cleanup is layered: `UprobeGroup.remove()` on every exit path of a run;
 * `removeStaleGroups()` at the start of every command for groups whose
 * process is gone (a SIGKILLed migrace cannot remove its own).
 */

const MOUNTS = ['/sys/kernel/tracing', '/sys/kernel/debug/tracing'];
const GROUP_PREFIX = 'migrace_';

/**
 * Why the uprobe backend cannot run here, or null when it can. `here`
 * replaces the process's uid and the tracefs it finds (unit tests give a
 * directory that lacks what a kernel without uprobes lacks).
 */
export function uprobeUnavailable(here: { uid?: number; tracefs?: string | null } = {}): string | null {
  if ((here.uid ?? process.getuid?.()) !== 0) return 'kernel uprobes need root (tracefs is root-only)';
  const dir = here.tracefs !== undefined ? here.tracefs : findTracefs();
  if (!dir) return 'tracefs is not mounted and could not be mounted (mount -t tracefs nodev /sys/kernel/tracing)';
  if (!existsSync(join(dir, 'uprobe_events'))) return `${dir}/uprobe_events is missing: this kernel has no uprobe support (CONFIG_UPROBE_EVENTS)`;
  if (!existsSync(join(dir, 'instances'))) return `${dir}/instances is missing: this kernel cannot make a private tracing instance`;
  return null;
}

let mounted: string | null | undefined;

/** The tracefs mount point, mounting it once when needed (root). */
export function findTracefs(): string | null {
  if (mounted !== undefined) return mounted;
  for (const dir of MOUNTS) {
    if (existsSync(join(dir, 'uprobe_events'))) return (mounted = dir);
  }
  if (process.getuid?.() === 0 && existsSync(MOUNTS[0])) {
    try {
      execFileSync('mount', ['-t', 'tracefs', 'nodev', MOUNTS[0]], { stdio: 'ignore', timeout: 5000 });
      if (existsSync(join(MOUNTS[0], 'uprobe_events'))) return (mounted = MOUNTS[0]);
    } catch {
      /* not allowed here */
    }
  }
  return (mounted = null);
}

function tracefs(): string {
  const dir = findTracefs();
  if (!dir) throw new MigraceError('UPROBE', uprobeUnavailable() ?? 'tracefs is not available');
  return dir;
}

/** A write to a tracefs control file; the kernel's complaint goes in the message. */
function writeControl(file: string, text: string, what: string, flag: 'a' | 'w' = 'w'): void {
  try {
    writeFileSync(file, text, { flag });
  } catch (e) {
    const log = errorLog();
    throw new MigraceError('UPROBE', `cannot ${what}: ${(e as NodeJS.ErrnoException).code ?? messageOf(e)}${log ? ` (tracefs says: ${log})` : ''}`, { cause: e });
  }
}

/** The kernel's last complaint about a definition, from tracefs's error_log. */
function errorLog(): string {
  try {
    const lines = readFileSync(join(tracefs(), 'error_log'), 'utf8').trim().split('\n').filter(Boolean);
    return lines.slice(-2).map((l) => l.replace(/^\[[^\]]*\]\s*/, '').trim()).join(' ');
  } catch {
    return '';
  }
}

export interface ProbeDefinition {
  /** Event name inside the group: [A-Za-z_][A-Za-z0-9_]*. */
  event: string;
  /** Absolute path of the binary (no white space). */
  path: string;
  /** Offset in the file, not a virtual address. */
  fileOffset: number;
  /** name=fetcharg:type, already validated. */
  args: Array<{ name: string; fetch: string }>;
  /** A return probe (uretprobe): fires when the function returns. */
  ret?: boolean;
}

const EVENT_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const SAFE_PATH = /^\/[^\s\x00-\x1f\x7f]+$/;
const FETCH = /^[A-Za-z0-9_%@+\-():.$]+$/;

export function definitionLine(group: string, d: ProbeDefinition): string {
  if (!EVENT_NAME.test(d.event)) throw new MigraceError('UPROBE', `bad probe event name ${JSON.stringify(d.event)}`);
  if (!SAFE_PATH.test(d.path)) throw new MigraceError('UPROBE', `the uprobe backend needs a binary path without white space or control characters, not ${JSON.stringify(d.path)}`);
  const args = d.args.map((a) => {
    if (!EVENT_NAME.test(a.name) || !FETCH.test(a.fetch)) throw new MigraceError('UPROBE', `bad fetch argument ${JSON.stringify(`${a.name}=${a.fetch}`)}`);
    return `${a.name}=${a.fetch}`;
  });
  return [`${d.ret ? 'r' : 'p'}:${group}/${d.event}`, `${d.path}:0x${d.fileOffset.toString(16)}`, ...args].join(' ');
}

/**
 * One run's probes and instance. Created by `open`, which defines the
 * probes and the instance; nothing is enabled until `enable`.
 */
export class UprobeGroup {
  readonly group: string;
  readonly instanceDir: string;
  private readonly root: string;
  private readonly events: string[] = [];
  private removed = false;

  private constructor(root: string, group: string) {
    this.root = root;
    this.group = group;
    this.instanceDir = join(root, 'instances', group);
  }

  /** A group named after this process; a group of ours already there (an earlier run in this process) is removed first. */
  static open(defs: readonly ProbeDefinition[], opts: { bufferKb: number }): UprobeGroup {
    const root = tracefs();
    const g = new UprobeGroup(root, `${GROUP_PREFIX}${process.pid}`);
    removeGroup(root, g.group);
    try {
      for (const d of defs) {
        writeControl(join(root, 'uprobe_events'), `${definitionLine(g.group, d)}\n`, `define uprobe ${d.event} at ${d.path}:0x${d.fileOffset.toString(16)}`, 'a');
        g.events.push(d.event);
      }
      if (!existsSync(g.instanceDir)) {
        try {
          // mkdir in instances/ creates a whole tracing instance; mode and recursion do not apply.
          execFileSync('mkdir', [g.instanceDir], { stdio: 'ignore' });
        } catch (e) {
          throw new MigraceError('UPROBE', `cannot create the tracing instance ${g.instanceDir}: ${messageOf(e)}`);
        }
      }
      writeControl(join(g.instanceDir, 'tracing_on'), '0', 'stop the instance while it is set up');
      writeControl(join(g.instanceDir, 'trace_clock'), 'mono', 'set the trace clock to CLOCK_MONOTONIC');
      writeControl(join(g.instanceDir, 'buffer_size_kb'), String(opts.bufferKb), 'set the ring buffer size');
      // When the reader falls behind, new events are dropped and counted, never old ones silently overwritten.
      writeControl(join(g.instanceDir, 'options', 'overwrite'), '0', 'turn off overwriting');
      writeControl(join(g.instanceDir, 'options', 'event-fork'), '1', 'follow new threads of the traced process');
      writeControl(join(g.instanceDir, 'trace'), '', 'clear the instance');
    } catch (e) {
      g.remove();
      throw e;
    }
    return g;
  }

  /** Only these tasks (and the threads they start) are traced. */
  filterPids(pids: readonly number[]): void {
    writeControl(join(this.instanceDir, 'set_event_pid'), pids.join(' '), 'filter the traced pids');
  }

  enable(): void {
    for (const e of this.events) {
      writeControl(join(this.instanceDir, 'events', this.group, e, 'enable'), '1', `enable uprobe ${e}`);
    }
    writeControl(join(this.instanceDir, 'tracing_on'), '1', 'start tracing');
  }

  get pipePath(): string {
    return join(this.instanceDir, 'trace_pipe');
  }

  /** A line in the trace, ordered with the probe events: how the reader knows it has seen everything before now. */
  mark(text: string): void {
    writeControl(join(this.instanceDir, 'trace_marker'), text, 'write a trace marker');
  }

  /** Events the kernel could not store because the reader fell behind, over all CPUs. */
  lostEvents(): number {
    let lost = 0;
    const cpus = join(this.instanceDir, 'per_cpu');
    let names: string[] = [];
    try {
      names = readdirSync(cpus);
    } catch {
      return 0;
    }
    for (const cpu of names) {
      try {
        const stats = readFileSync(join(cpus, cpu, 'stats'), 'utf8');
        for (const m of stats.matchAll(/^(overrun|dropped events): (\d+)$/gm)) lost += Number(m[2]);
      } catch {
        /* a CPU without stats */
      }
    }
    return lost;
  }

  /** Disable, remove the instance and every definition. Safe to call more than once; never throws. */
  remove(): void {
    if (this.removed) return;
    this.removed = true;
    removeGroup(this.root, this.group);
  }
}

/** Undo a group: its instance first (it holds the events enabled), then its definitions. */
function removeGroup(root: string, group: string): boolean {
  let did = false;
  const inst = join(root, 'instances', group);
  if (existsSync(inst)) {
    try {
      writeFileSync(join(inst, 'tracing_on'), '0');
      const evdir = join(inst, 'events', group);
      if (existsSync(evdir)) writeFileSync(join(evdir, 'enable'), '0');
    } catch {
      /* rmdir below is what counts */
    }
    try {
      rmdirSync(inst);
      did = true;
    } catch {
      /* busy: a reader still has trace_pipe open; the next sweep tries again */
    }
  }
  let defs = '';
  try {
    defs = readFileSync(join(root, 'uprobe_events'), 'utf8');
  } catch {
    return did;
  }
  for (const line of defs.split('\n')) {
    const m = /^[pr]:([^/\s]+)\/(\S+)\s/.exec(line);
    if (!m || m[1] !== group) continue;
    try {
      writeFileSync(join(root, 'uprobe_events'), `-:${m[1]}/${m[2]}\n`, { flag: 'a' });
      did = true;
    } catch {
      /* still enabled somewhere: the next sweep tries again */
    }
  }
  return did;
}

/**
 * Remove the groups and instances of migrace processes that are gone;
 * returns one line per group removed. Cheap when tracefs is not mounted or
 * we are not root: it does nothing.
 */
export function removeStaleGroups(): string[] {
  if (process.getuid?.() !== 0) return [];
  let root: string | null = null;
  for (const dir of MOUNTS) if (existsSync(join(dir, 'uprobe_events'))) root = dir;
  if (!root) return [];
  const groups = new Set<string>();
  try {
    for (const line of readFileSync(join(root, 'uprobe_events'), 'utf8').split('\n')) {
      const m = /^[pr]:(migrace_\d+)\//.exec(line);
      if (m) groups.add(m[1]);
    }
    for (const name of readdirSync(join(root, 'instances'))) {
      if (/^migrace_\d+$/.test(name) && statSync(join(root, 'instances', name)).isDirectory()) groups.add(name);
    }
  } catch {
    return [];
  }
  const said: string[] = [];
  for (const g of groups) {
    const pid = Number(g.slice(GROUP_PREFIX.length));
    if (pid === process.pid || processIsAlive(pid)) continue;
    if (removeGroup(root, g)) said.push(`removed the kernel probes (uprobe group ${g}) of migrace process ${pid}, which died without removing them`);
  }
  return said;
}
