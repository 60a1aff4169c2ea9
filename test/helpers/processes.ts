import { execFileSync } from 'node:child_process';
import { survivors } from '../../recorder/reaper.js';

/** Child processes of this test worker whose command is one of ours. */
export function ourChildren(): string[] {
  const out = execFileSync('ps', ['-eo', 'pid=,ppid=,stat=,comm='], { encoding: 'utf8' });
  // A zombie is dead: it only waits for libuv to reap it.
  const rows = out.split('\n').map((l) => l.trim().split(/\s+/)).filter((r) => r.length >= 4 && !r[2].startsWith('Z'))
    .map((r) => [r[0], r[1], r[3]]);
  const children = new Map<number, number[]>();
  for (const [pid, ppid] of rows) {
    const list = children.get(Number(ppid)) ?? [];
    list.push(Number(pid));
    children.set(Number(ppid), list);
  }
  const names = new Map(rows.map((r) => [Number(r[0]), r[2]]));
  const found: string[] = [];
  const walk = (p: number): void => {
    for (const c of children.get(p) ?? []) {
      const n = names.get(c) ?? '';
      if (/^(gdb|minimig|minimig-patche|qemu-system-x86)/.test(n)) found.push(`${c} ${n}`);
      walk(c);
    }
  };
  walk(process.pid);
  return found;
}

/** Everything registered with the reaper or descended from us is gone. */
export function expectNoSurvivors(): void {
  const s = survivors();
  const c = ourChildren();
  if (s.length > 0 || c.length > 0) {
    throw new Error(`survivors: ${JSON.stringify(s)} ${JSON.stringify(c)}`);
  }
}

/** Every descendant of pid, read from ps. */
export function descendants(pid: number): number[] {
  const rows = execFileSync('ps', ['-eo', 'pid=,ppid='], { encoding: 'utf8' }).trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number));
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const [c, pp] of rows) if (pp === p) { out.push(c); walk(c); }
  };
  walk(pid);
  return out;
}

/** Those of pids still running. */
export function alive(pids: number[]): number[] {
  const live = new Set(execFileSync('ps', ['-eo', 'pid='], { encoding: 'utf8' }).trim().split('\n').map((l) => Number(l.trim())));
  return pids.filter((p) => live.has(p));
}

/**
 * A CLI's stderr without the lines in which its start-up sweep cleaned up
 * after another, dead migrace (cli/main.ts): uprobe groups are machine-wide,
 * so the SIGKILL tests' leftovers are removed by whichever migrace starts
 * next, in any test file. Tests of exact output compare what is left.
 */
export function withoutSweeps(stderr: string): string {
  return stderr.replace(/^migrace: (?:removed the kernel probes \(uprobe group \w+\) of migrace process \d+, which died without removing them|cleaned up after migrace process \d+, which died without doing it: .*)\n/gm, '');
}
