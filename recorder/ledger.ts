import { existsSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { processIsAlive, procStartTime } from '../trace/proc.js';

/**
 * What this migrace process leaves in the system while it runs, written
 * down as it happens, so that a later migrace can clean up after one that
 * died without cleaning up (SIGKILL, the OOM killer): child processes (by
 * pid and start time, so a reused pid is never hit), private temp folders,
 * and processes it attached to (which may be left stopped). Kernel probe
 * groups carry the pid in their name and are swept from tracefs itself
 * (recorder/uprobe/tracefs.ts). One small JSON file per process in the temp folder, rewritten
 * atomically on every change and removed at a normal exit.
 *
 * `sweepLeftovers` is the other half: at the start of every command it
 * reads the ledgers of processes that are gone, undoes what they list and
 * says what it did.
 */

export interface LedgerProcess {
  pid: number;
  start: string | null;
  label: string;
}

interface LedgerData {
  pid: number;
  start: string | null;
  children: LedgerProcess[];
  attached: LedgerProcess[];
  dirs: string[];
}

const PREFIX = 'migrace-ledger-';

function ledgerDir(): string {
  return tmpdir();
}

function ledgerFile(pid = process.pid): string {
  return join(ledgerDir(), `${PREFIX}${pid}.json`);
}

let data: LedgerData | null = null;
let exitHook = false;

function current(): LedgerData {
  if (!data) {
    data = { pid: process.pid, start: procStartTime(process.pid), children: [], attached: [], dirs: [] };
    if (!exitHook) {
      exitHook = true;
      // Registered after the reaper's hook (ledger entries are made after a pid is tracked): by now it has killed everything.
      process.on('exit', () => removeLedger());
    }
  }
  return data;
}

function save(): void {
  const d = current();
  const empty = d.children.length === 0 && d.attached.length === 0 && d.dirs.length === 0;
  try {
    if (empty) {
      rmSync(ledgerFile(), { force: true });
      return;
    }
    const tmp = `${ledgerFile()}.tmp`;
    writeFileSync(tmp, JSON.stringify(d), { mode: 0o600 });
    renameSync(tmp, ledgerFile());
  } catch {
    // A full temp folder must not stop a recording; the cleanup of a crash is then left undone.
  }
}

function removeLedger(): void {
  try {
    rmSync(ledgerFile(), { force: true });
  } catch {
    /* nothing to do at exit */
  }
}

type Kind = 'children' | 'attached';

export function ledgerAddProcess(kind: Kind, pid: number, label: string): void {
  const d = current();
  d[kind] = d[kind].filter((p) => p.pid !== pid);
  d[kind].push({ pid, start: procStartTime(pid), label });
  save();
}

export function ledgerRemoveProcess(kind: Kind, pid: number): void {
  const d = current();
  const before = d[kind].length;
  d[kind] = d[kind].filter((p) => p.pid !== pid);
  if (d[kind].length !== before) save();
}

export function ledgerAddDir(path: string): void {
  current().dirs.push(path);
  save();
}

export function ledgerRemoveDir(path: string): void {
  const d = current();
  d.dirs = d.dirs.filter((p) => p !== path);
  save();
}

function readLedger(path: string): LedgerData | null {
  try {
    const d = JSON.parse(readFileSync(path, 'utf8')) as LedgerData;
    if (typeof d.pid !== 'number' || !Array.isArray(d.children) || !Array.isArray(d.dirs)) return null;
    return { ...d, attached: d.attached ?? [] };
  } catch {
    return null;
  }
}

/** A folder we may remove: one of our private folders directly in the temp folder. */
function isOurDir(path: string): boolean {
  return dirname(path) === ledgerDir() && /^migrace-[\w-]+$/.test(basename(path));
}

/** Signal each listed process that still lives (the same pid and start time), saying "VERB LABEL PID" in `done` for each. */
function signalLiving(procs: readonly LedgerProcess[], signal: NodeJS.Signals, verb: string, done: string[]): void {
  for (const p of procs) {
    if (!processIsAlive(p.pid, p.start)) continue;
    try {
      process.kill(p.pid, signal);
      done.push(`${verb} ${p.label} ${p.pid}`);
    } catch {
      /* gone meanwhile, or not ours to signal */
    }
  }
}

/**
 * Undo what migrace processes that are gone left behind; returns one line
 * per ledger cleaned, for the user.
 */
export function sweepLeftovers(): string[] {
  let names: string[];
  try {
    names = readdirSync(ledgerDir()).filter((n) => n.startsWith(PREFIX) && n.endsWith('.json'));
  } catch {
    return [];
  }
  const said: string[] = [];
  for (const name of names) {
    const file = join(ledgerDir(), name);
    const d = readLedger(file);
    if (!d) continue;
    if (d.pid === process.pid || processIsAlive(d.pid, d.start)) continue;
    const done: string[] = [];
    signalLiving(d.children, 'SIGKILL', 'killed', done);
    // A process gdb attached to can be left in group stop when gdb dies: it must run on.
    signalLiving(d.attached, 'SIGCONT', 'resumed', done);
    for (const dir of d.dirs) {
      if (!isOurDir(dir) || !existsSync(dir)) continue;
      rmSync(dir, { recursive: true, force: true });
      done.push(`removed ${dir}`);
    }
    rmSync(file, { force: true });
    if (done.length > 0) said.push(`cleaned up after migrace process ${d.pid}, which died without doing it: ${done.join(', ')}`);
  }
  return said;
}
