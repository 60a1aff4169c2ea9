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
