/**
 * GdbSession against real gdb and test/fixtures/c/threads.c (built here, in
 * a temp folder). Every test ends with gdb and the inferior gone.
 */
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { assertShellSafePath, GdbSession, type GdbEvent, type GdbSessionOptions, type StoppedEvent, type ThreadCreatedEvent } from '../../recorder/gdb/session.js';
import { isAlive, survivors, track, waitGone } from '../../recorder/reaper.js';
import { MigraceError } from '../../trace/errors.js';
import { expectNoSurvivors } from '../helpers/processes.js';
import { sleep } from '../../trace/async.js';

const SOURCE = join(import.meta.dirname, '../fixtures/c/threads.c');

function has(cmd: string): boolean {
  try {
    execFileSync(cmd, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const toolsPresent = has('gdb') && has('gcc');

let dir = '';
let prog = '';
let progO2 = '';
const sessions: GdbSession[] = [];

async function open(opts: GdbSessionOptions = {}): Promise<GdbSession> {
  const s = await GdbSession.start(opts);
  sessions.push(s);
  return s;
}

/** A session in non-stop mode with the program loaded. */
async function ready(args: string[], binary = prog): Promise<GdbSession> {
  const s = await open();
  await s.setNonStop();
  await s.fileExecAndSymbols(binary);
  await s.setInferiorArgs(args);
  return s;
}

async function expectCode(p: Promise<unknown>, code: string, message?: RegExp): Promise<MigraceError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(MigraceError);
    expect((e as MigraceError).code).toBe(code);
    if (message) expect((e as MigraceError).message).toMatch(message);
    return e as MigraceError;
  }
  throw new Error(`expected ${code}, but it succeeded`);
}

/** gdb's printing of a char*: `0x7ffd... "text"` with C escapes. */
function cString(printed: string): string {
  const m = /^0x[0-9a-f]+ "(.*)"$/s.exec(printed);
  if (!m) throw new Error(`not a printed string: ${printed}`);
  return m[1]!.replace(/\\(["\\])/g, '$1');
}

function procState(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}

function isStop(e: GdbEvent): e is StoppedEvent {
  return e.kind === 'stopped';
}

describe.skipIf(!toolsPresent)('GdbSession against real gdb', () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'migrace-gdb-'));
    prog = join(dir, 'threads');
    progO2 = join(dir, 'threads-O2');
    execFileSync('gcc', ['-g', '-O0', '-pthread', '-o', prog, SOURCE]);
    execFileSync('gcc', ['-g', '-O2', '-pthread', '-o', progO2, SOURCE]);
  });

  afterEach(async () => {
    while (sessions.length > 0) await sessions.pop()!.shutdown();
    expectNoSurvivors();
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a missing gdb is GDB_MISSING with the package to install', async () => {
    await expectCode(GdbSession.start({ env: { PATH: dir } }), 'GDB_MISSING', /^gdb not found: install the Debian package gdb$/);
    const path = join(dir, 'no-such-gdb');
    await expectCode(GdbSession.start({ gdbPath: path }), 'GDB_MISSING', new RegExp(`^gdb not found at ${path}: install the Debian package gdb$`));
  });

  it('non-stop: two threads stop at a breakpoint, one goes on while the other stays', async () => {
    const s = await ready(['hits', '3']);
    const events: GdbEvent[] = [];
    s.onAny((e) => events.push(e));
    const bp = await s.insertBreakpoint('probe_hit');
    expect(bp.number).toBe(1);
    expect(bp.locations).toHaveLength(1);
    expect(bp.locations[0]).toMatchObject({ number: '1', func: 'probe_hit' });

    const since = s.mark();
    const { pid } = await s.run();
    expect(pid).toBeGreaterThan(0);
    // Registered with the reaper as soon as gdb announced it.
    expect(survivors().map((x) => x.pid)).toContain(pid);

    const first = await s.waitFor(isStop, 10_000, 'a first breakpoint hit', { since });
    const second = await s.waitFor((e): e is StoppedEvent => isStop(e) && e.threadId !== first.threadId, 10_000, 'a hit in the other worker', { since });
    for (const stop of [first, second]) {
      expect(stop.reason).toBe('breakpoint-hit');
      expect(stop.bkptno).toBe(1);
      expect(stop.frame?.func).toBe('probe_hit');
      expect(stop.stoppedThreads).toEqual([stop.threadId]);
      expect(stop.at).toBeGreaterThan(0n);
    }
    const a = first.threadId!;
    const b = second.threadId!;
    const idA = await s.evaluate('id', { thread: a });
    const idB = await s.evaluate('id', { thread: b });
    expect(new Set([idA, idB])).toEqual(new Set(['1', '2']));
    expect(await s.evaluate('value', { thread: a, frame: 0 })).toBe('0');
    expect(await s.evaluate('hits_per_worker', { thread: a, frame: 1 })).toBe('3');

    const stack = await s.stack(a);
    expect(stack.map((f) => f.func).slice(0, 2)).toEqual(['probe_hit', 'worker']);
    expect(stack[0]!.level).toBe(0);

    // Continue A only: it stops again at its next hit; B has not moved.
    const cont = await s.continueThread(a);
    const again = await s.waitForStop(a, 10_000, { since: cont.seq });
    expect(again.seq).toBeGreaterThan(first.seq);
    expect(await s.evaluate('value', { thread: a })).toBe('1');
    expect(await s.evaluate('value', { thread: b })).toBe('0');
    const infoB = (await s.threadInfo(b))[0]!;
    expect(infoB.state).toBe('stopped');
    expect(infoB.frame?.func).toBe('probe_hit');
    const running = events.filter((e) => e.kind === 'running' && e.seq > cont.seq - 1);
    expect(running.map((e) => (e as { threadId: unknown }).threadId)).toContain(a);

    // Names (pthread_setname_np) and LWPs, checked against /proc.
    const threads = await s.threadInfo();
    const tasks = readdirSync(`/proc/${pid}/task`).map(Number).sort((x, y) => x - y);
    expect(threads.map((t) => t.lwp).sort((x, y) => x! - y!)).toEqual(tasks);
    for (const t of threads) expect(readFileSync(`/proc/${pid}/task/${t.lwp}/comm`, 'utf8').trim()).toBe(t.name);
    expect(threads.find((t) => t.id === a)?.name).toBe(`worker-${idA}`);
    expect(threads.find((t) => t.lwp === pid)?.id).toBe(1);

    // thread-created came with its LWP; its name was read at creation time.
    const created = events.filter((e): e is ThreadCreatedEvent => e.kind === 'thread-created');
    expect(created.map((e) => e.id)).toEqual([1, 2, 3]);
    expect(created.map((e) => e.lwp).sort((x, y) => x! - y!)).toEqual(tasks);
    for (const e of created) expect(e.name).not.toBeNull();
    // Delivery keeps gdb's order even though each new thread needed a lookup.
    const seqs = events.map((e) => e.seq);
    expect([...seqs].sort((x, y) => x - y)).toEqual(seqs);
    const firstStopIdx = events.indexOf(first);
    expect(events.findIndex((e) => e.kind === 'thread-created' && e.id === a)).toBeLessThan(firstStopIdx);

    // Let everything finish.
    await s.deleteBreakpoint(bp.number);
    const before = s.mark();
    await s.continueAll();
    const groupExit = await s.waitFor((e) => e.kind === 'thread-group-exited', 10_000, 'the program to exit', { since: before });
    expect(groupExit).toMatchObject({ pid, exitCode: 0 });
    const exitedThreads = events.filter((e) => e.kind === 'thread-exited');
    expect(exitedThreads).toHaveLength(3);
    expect(exitedThreads.every((e) => e.kind === 'thread-exited' && e.lwp !== null)).toBe(true);
    const final = await s.waitFor(isStop, 5000, 'the exit stop', { since: before });
    expect(final.reason).toBe('exited-normally');
    expect(s.inferiorPid).toBeNull();
    expect(await waitGone(pid, 2000)).toBe(true);
  });

  it('interrupt one thread, then all; kill the inferior alone', async () => {
    const s = await ready(['spin']);
    const { pid } = await s.run();
    // Both spinners exist and have renamed themselves.
    for (let i = 0; i < 100; i++) {
      const ts = await s.threadInfo();
      if (ts.filter((t) => t.name?.startsWith('spinner-')).length === 2) break;
      await sleep(20);
    }
    const threads = await s.threadInfo();
    const spinner = threads.find((t) => t.name === 'spinner-1')!;
    expect(spinner).toBeDefined();
    expect(threads.every((t) => t.state === 'running')).toBe(true);

    const r = await s.interrupt(spinner.id);
    const stop = await s.waitForStop(spinner.id, 5000, { since: r.seq - 1 });
    // In non-stop mode an interrupted thread reports signal "0", not SIGINT.
    expect(stop.reason).toBe('signal-received');
    expect(stop.signalName).toBe('0');
    expect(stop.frame?.func).toBe('spinner');
    const states = new Map((await s.threadInfo()).map((t) => [t.id, t.state]));
    expect(states.get(spinner.id)).toBe('stopped');
    expect([...states.values()].filter((x) => x === 'running')).toHaveLength(2);

    // Stopped means stopped: its counter does not move.
    const c1 = await s.evaluate('spin_counter[1]', { thread: spinner.id });
    await sleep(50);
    expect(await s.evaluate('spin_counter[1]', { thread: spinner.id })).toBe(c1);

    const mark = s.mark();
    await s.interrupt('all');
    const others = threads.filter((t) => t.id !== spinner.id).map((t) => t.id);
    for (const id of others) await s.waitForStop(id, 5000, { since: mark });
    expect((await s.threadInfo()).every((t) => t.state === 'stopped')).toBe(true);

    const m2 = s.mark();
    await s.continueAll();
    await s.waitFor((e) => e.kind === 'running' && e.threadId === spinner.id, 5000, 'spinner-1 to run', { since: m2 });

    const exited = s.waitFor((e) => e.kind === 'thread-group-exited', 5000, 'the killed program to go');
    await s.kill();
    expect(await exited).toMatchObject({ pid, exitCode: null });
    expect(isAlive(pid)).toBe(false);
    // gdb is still usable.
    expect((await s.execute('-gdb-show confirm')).results.string('value')).toBe('off');
  });

  it('a breakpoint on an inlined function has every location (-O2)', async () => {
    const s = await ready(['inline'], progO2);
    const bp = await s.insertBreakpoint('scale');
    expect(bp.addr).toBe('<MULTIPLE>');
    expect(bp.locations.map((l) => l.number)).toEqual([`${bp.number}.1`, `${bp.number}.2`]);
    expect(bp.locations.every((l) => l.func === 'scale' && l.line !== null)).toBe(true);
    const line = await s.insertBreakpoint(`threads.c:${bp.locations[0]!.line! + 1}`);
    expect(line.locations.length).toBeGreaterThanOrEqual(2);
    const relocated = s.waitFor((e) => e.kind === 'breakpoint-modified' && e.breakpoint.number === bp.number, 10_000, 'the breakpoint to be relocated');
    const mark = s.mark();
    await s.run();
    const hit = await s.waitForStop(1, 10_000, { since: mark });
    expect(hit.bkptno).toBe(bp.number);
    expect(hit.locno).toBe(1);
    const reloc = await relocated;
    expect(reloc.kind === 'breakpoint-modified' && reloc.breakpoint.locations).toHaveLength(2);
  });

  it('arguments with spaces and quotes, the environment and a log file as terminal arrive intact', async () => {
    const args = ['args', 'a b', 'c"d', "e'f", '$HOME', '*', 'x\\y', 'é', ''];
    const log = join(dir, 'inferior log.txt');
    await expectCode((await open()).setInferiorTty(log), 'BAD_INPUT', /create the file first/);
    writeFileSync(log, '');
    const s = await ready(args);
    await s.setInferiorEnv('MIGRACE_TEST_ENV', 'a b"c\\d =x');
    await s.setInferiorTty(log);
    await s.insertBreakpoint('args_seen');
    const mark = s.mark();
    await s.run();
    const stop = await s.waitForStop(1, 10_000, { since: mark });
    expect(await s.evaluate('argc', { thread: 1 })).toBe(String(args.length + 1));
    for (let i = 0; i < args.length; i++) {
      const printed = await s.evaluate(`argv[${i + 1}]`, { thread: 1 });
      expect(cString(printed)).toBe(args[i]);
    }
    expect(cString(await s.evaluate('env', { thread: 1 }))).toBe('a b"c\\d =x');
    // gdb itself ran with SHELL=/bin/sh (for the quoting); the program sees the original.
    const shell = await s.evaluate('(char *)getenv("SHELL")', { thread: 1 });
    if (process.env.SHELL) expect(cString(shell)).toBe(process.env.SHELL);
    else expect(shell).toBe('0x0');
    expect(stop.frame?.func).toBe('args_seen');
    const m2 = s.mark();
    await s.continueThread(1);
    await s.waitFor((e) => e.kind === 'thread-group-exited', 10_000, 'the program to exit', { since: m2 });
    expect(readFileSync(log, 'utf8')).toContain('args done\n');
  });

  it('gdb does not quote a program path with | for the shell: assertShellSafePath refuses it', async () => {
    const piped = join(dir, 'thr|eads');
    copyFileSync(prog, piped);
    execFileSync('chmod', ['755', piped]);
    expect(() => assertShellSafePath(piped)).toThrow(MigraceError);
    expect(() => assertShellSafePath(prog)).not.toThrow();
    // What the check prevents: gdb runs `exec DIR/thr|eads` through /bin/sh, a pipe into "eads".
    const s = await ready(['hits', '1'], piped);
    await expectCode(s.run(), 'GDB_ERROR', /During startup program exited with code 127/);
  });

  it('refuses control characters before sending anything', async () => {
    const s = await open();
    await expectCode(s.execute('-gdb-show confirm\n-gdb-exit'), 'BAD_INPUT', /newline/);
    await expectCode(s.evaluate('1\n2'), 'BAD_INPUT', /expression contains a newline/);
    await expectCode(s.insertBreakpoint('main\r'), 'BAD_INPUT', /carriage return/);
    await expectCode(s.insertBreakpoint('main', { condition: 'x\u0000' }), 'BAD_INPUT');
    await expectCode(s.setInferiorArgs(['ok', 'a\nb']), 'BAD_INPUT', /argument 2/);
    await expectCode(s.setInferiorEnv('A B', 'x'), 'BAD_INPUT');
    await expectCode(s.setInferiorEnv('A', ' leading'), 'BAD_INPUT');
    await expectCode(s.setInferiorEnv('A', 'x\ty'), 'BAD_INPUT');
    await expectCode(s.cli('echo a\u001b'), 'BAD_INPUT');
    await expectCode(s.continueThread(0), 'BAD_INPUT');
    // Nothing reached gdb: it is alive, in sync, and the next command gets its own answer.
    expect((await s.execute('-gdb-show pagination')).results.string('value')).toBe('on');
  });

  it('^error is GDB_ERROR with gdb\'s message; a slow command is GDB_TIMEOUT naming it', async () => {
    const s = await ready(['hits', '1']);
    await expectCode(s.insertBreakpoint('nosuchfunction'), 'GDB_ERROR', /Function "nosuchfunction" not defined\..*-break-insert/);
    await expectCode(s.evaluate('1 +'), 'GDB_ERROR', /syntax error/);
    await expectCode(s.stack(1), 'GDB_ERROR', /Invalid thread id: 1/);
    await expectCode(s.cli('python import time; time.sleep(1)', 200), 'GDB_TIMEOUT', /time\.sleep\(1\).*200 ms/);
    // The late answer to the timed-out command is dropped, the next one matched to its own token.
    expect((await s.execute('-gdb-show confirm')).results.string('value')).toBe('off');
    await expectCode(s.waitFor(() => false, 100, 'a sign that never comes'), 'GDB_TIMEOUT', /100 ms waiting for a sign that never comes/);
  });

  it('gdb killed with SIGKILL mid-run: pending commands reject with GDB_EXITED, the inferior goes too', async () => {
    const s = await ready(['spin']);
    const exits: GdbEvent[] = [];
    s.on('exit', (e) => exits.push(e));
    const { pid } = await s.run();
    await s.interrupt('all');
    const pending = s.cli('python import time; time.sleep(30)');
    const waiting = s.waitFor(() => false, 30_000, 'something');
    pending.catch(() => undefined);
    waiting.catch(() => undefined);
    await sleep(200);
    process.kill(s.gdbPid, 'SIGKILL');
    await expectCode(pending, 'GDB_EXITED', /SIGKILL.*time\.sleep\(30\)/);
    await expectCode(waiting, 'GDB_EXITED', /while waiting for something/);
    expect(exits).toMatchObject([{ kind: 'exit', signal: 'SIGKILL', expected: false }]);
    expect(await waitGone(pid, 5000)).toBe(true);
    await expectCode(s.evaluate('1'), 'GDB_EXITED');
    await s.shutdown();
    expect(isAlive(s.gdbPid)).toBe(false);
  });

  it('shutdown ends a running inferior and gdb', async () => {
    const s = await ready(['spin']);
    const { pid } = await s.run();
    const exit = s.waitFor((e) => e.kind === 'exit', 10_000, 'gdb to exit');
    await s.shutdown();
    expect(await exit).toMatchObject({ expected: true });
    expect(isAlive(pid)).toBe(false);
    expect(isAlive(s.gdbPid)).toBe(false);
    await s.shutdown(); // twice is fine
  });

  it('attach and detach leave a process we did not start alive', async () => {
    const child = spawn(prog, ['spin'], { stdio: 'ignore' });
    const untrack = track(child.pid!, 'test spinner');
    try {
      await sleep(200);
      const s = await open();
      await s.setNonStop();
      const mark = s.mark();
      await s.attach(child.pid!);
      await s.waitForStop(1, 10_000, { since: mark });
      const threads = await s.threadInfo();
      expect(threads.map((t) => t.name).sort()).toEqual(['spinner-1', 'spinner-2', 'threads']);
      expect(survivors().map((x) => x.label)).not.toContain('gdb inferior (i1)');
      await s.detach();
      await s.shutdown();
      expect(isAlive(child.pid!)).toBe(true);
      expect(procState(child.pid!)).not.toBe('T');

      // A killed gdb leaves an attached process group-stopped; the session resumes it.
      const s2 = await open();
      await s2.setNonStop();
      const m2 = s2.mark();
      await s2.attach(child.pid!);
      await s2.waitForStop(1, 10_000, { since: m2 });
      process.kill(s2.gdbPid, 'SIGKILL');
      await s2.closed;
      await s2.shutdown();
      expect(isAlive(child.pid!)).toBe(true);
      let state = procState(child.pid!);
      for (let i = 0; i < 50 && state === 'T'; i++) {
        await sleep(20);
        state = procState(child.pid!);
      }
      expect(state).not.toBe('T');
    } finally {
      child.kill('SIGKILL');
      await waitGone(child.pid!, 5000);
      untrack();
    }
  });

  it('disassembles a function', async () => {
    const s = await ready([]);
    const insns = await s.disassemble('probe_hit');
    expect(insns[0]).toMatchObject({ funcName: 'probe_hit', offset: 0 });
    expect(insns.at(-1)!.inst).toBe('ret');
    expect(insns.every((i) => /^0x[0-9a-f]+$/.test(i.address))).toBe(true);
  });

  it('measures: MI round trip, and breakpoint hit → 2 evaluations → continue', async () => {
    // Small enough to stay well inside the test timeout on a loaded 2-core machine.
    const PER_MODE = 500;
    const s = await ready(['bench', String(2 * PER_MODE)]);
    const rtts: number[] = [];
    for (let i = 0; i < 500; i++) {
      const t0 = process.hrtime.bigint();
      await s.execute('-gdb-show confirm');
      rtts.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
    rtts.sort((x, y) => x - y);
    const q = (p: number): string => rtts[Math.floor(p * (rtts.length - 1))]!.toFixed(0);

    await s.insertBreakpoint('probe_hit');
    let hits = 0;
    let failure: unknown = null;
    let mode: 'serial' | 'pipelined' = 'serial';
    const perMode = { serial: { hits: 0, ns: 0n }, pipelined: { hits: 0, ns: 0n } };
    let modeStart = 0n;
    const done = s.waitFor((e) => e.kind === 'thread-group-exited', 120_000, 'the bench loop to end');
    s.on('stopped', (e) => {
      if (e.reason !== 'breakpoint-hit' || e.threadId === null) return;
      const tid = e.threadId;
      hits++;
      if (hits === 1) modeStart = e.at;
      if (hits === PER_MODE + 1) {
        perMode.serial = { hits: PER_MODE, ns: e.at - modeStart };
        mode = 'pipelined';
        modeStart = e.at;
      }
      const step = async (): Promise<void> => {
        if (mode === 'serial') {
          await s.evaluate('id', { thread: tid });
          await s.evaluate('value', { thread: tid });
        } else {
          await Promise.all([s.evaluate('id', { thread: tid }), s.evaluate('value', { thread: tid })]);
        }
        await s.continueThread(tid);
      };
      step().catch((err) => (failure ??= err));
    });
    let lastStop = 0n;
    s.on('stopped', (e) => {
      if (e.reason === 'breakpoint-hit') lastStop = e.at;
    });
    await s.run();
    await done;
    expect(failure).toBeNull();
    expect(hits).toBe(2 * PER_MODE);
    perMode.pipelined = { hits: hits - PER_MODE - 1, ns: lastStop - modeStart };
    const rate = (m: { hits: number; ns: bigint }): string => ((m.hits / Number(m.ns)) * 1e9).toFixed(0);
    console.log(
      `[measure] MI round trip of -gdb-show: median ${q(0.5)} us, p90 ${q(0.9)} us, p99 ${q(0.99)} us (500 runs)\n` +
        `[measure] hit -> evaluate 2 expressions -> continue: ${rate(perMode.serial)} hits/s serial, ` +
        `${rate(perMode.pipelined)} hits/s with both evaluations pipelined (${PER_MODE} hits each; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]})`,
    );
  });
});
