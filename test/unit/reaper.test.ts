/**
 * The reaper's SIGINT / SIGTERM cover, in a child node process (a signal to
 * the test worker itself would end the run). The child loads dist/, which
 * test/global-setup.ts builds before the run.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isAlive, waitGone } from '../../recorder/reaper.js';

const REAPER = pathToFileURL(join(process.cwd(), 'dist', 'recorder', 'reaper.js')).href;

interface Child {
  sleepPid: number;
  lines: string[];
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  nodePid: number;
}

/** Run `body` (ESM, `track` and `reapAll` in scope) in a node child; it prints `sleep PID` once the sleep is tracked. */
async function child(body: string): Promise<Child> {
  const script = `
    import { spawn } from 'node:child_process';
    import { track, reapAll } from ${JSON.stringify(REAPER)};
    ${body}
  `;
  const node = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let stderr = '';
  node.stderr.on('data', (d) => { stderr += String(d); });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => node.on('close', (code, signal) => resolve({ code, signal })));
  const sleepPid = await new Promise<number>((resolve, reject) => {
    let buf = '';
    node.stdout.on('data', (d) => {
      buf += String(d);
      const all = buf.split('\n');
      buf = all.pop() ?? '';
      for (const l of all) {
        lines.push(l);
        const m = /^sleep (\d+)$/.exec(l);
        if (m) resolve(Number(m[1]));
      }
    });
    void exit.then((e) => reject(new Error(`the child exited early (${e.code ?? e.signal}): ${stderr}`)));
  });
  return { sleepPid, lines, exit, nodePid: node.pid! };
}

const START_SLEEP = `
  const sleep = spawn('sleep', ['60'], { stdio: 'ignore' });
  track(sleep.pid, 'sleep');
`;

describe.skipIf(!existsSync(join(process.cwd(), 'dist', 'recorder', 'reaper.js')))('reaper and signals', () => {
  for (const [sig, code] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
    it(`${sig} to a process with no handler of its own kills what it tracked and exits ${code}`, async () => {
      const c = await child(`${START_SLEEP}
        console.log('sleep ' + sleep.pid);
        setInterval(() => undefined, 1000);`);
      try {
        process.kill(c.nodePid, sig);
        expect(await c.exit).toEqual({ code, signal: null });
        expect(await waitGone(c.sleepPid, 3000)).toBe(true);
      } finally {
        if (isAlive(c.sleepPid)) process.kill(c.sleepPid, 'SIGKILL');
      }
    });
  }

  it('a handler installed before the first track keeps the signal: the reaper adds none', async () => {
    const c = await child(`
      process.on('SIGTERM', () => { console.log('own handler, listeners ' + process.listenerCount('SIGTERM')); reapAll(); process.exit(7); });
      ${START_SLEEP}
      console.log('sigint listeners ' + process.listenerCount('SIGINT'));
      console.log('sleep ' + sleep.pid);
      setInterval(() => undefined, 1000);`);
    try {
      process.kill(c.nodePid, 'SIGTERM');
      expect(await c.exit).toEqual({ code: 7, signal: null });
      expect(c.lines).toContain('own handler, listeners 1');
      expect(c.lines).toContain('sigint listeners 1');
      expect(await waitGone(c.sleepPid, 3000)).toBe(true);
    } finally {
      if (isAlive(c.sleepPid)) process.kill(c.sleepPid, 'SIGKILL');
    }
  });

  it('a handler installed after the first track decides alone; the reaper\'s listener goes once nothing is tracked', async () => {
    const c = await child(`${START_SLEEP}
      const during = process.listenerCount('SIGTERM');
      process.on('SIGTERM', () => {
        console.log('graceful');
        reapAll();
        console.log('listeners after reaping ' + process.listenerCount('SIGTERM') + ' ' + process.listenerCount('SIGINT'));
        setTimeout(() => process.exit(0), 50);
      });
      console.log('listeners while tracked ' + during);
      console.log('sleep ' + sleep.pid);
      setInterval(() => undefined, 1000);`);
    try {
      process.kill(c.nodePid, 'SIGTERM');
      // Exit 0 from the graceful handler, not 143 from the reaper's.
      expect(await c.exit).toEqual({ code: 0, signal: null });
      expect(c.lines).toEqual(expect.arrayContaining(['listeners while tracked 1', 'graceful', 'listeners after reaping 1 0']));
      expect(await waitGone(c.sleepPid, 3000)).toBe(true);
    } finally {
      if (isAlive(c.sleepPid)) process.kill(c.sleepPid, 'SIGKILL');
    }
  });
});
