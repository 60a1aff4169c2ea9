import { spawn, execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isAlive } from '../../recorder/reaper.js';
import { tempStore } from '../helpers/db.js';
import { fetchLibvirt, PrivateLibvirt } from '../helpers/libvirt.js';
import { expectNoSurvivors } from '../helpers/processes.js';
import { bullseyeQemu } from '../helpers/qemu-binaries.js';

/**
 * The real libvirt consequence of LP#1994002, once: bullseye's libvirt 7.0
 * (old libvirt) as a private session libvirtd saves a TCG guest on QEMU 5.2
 * (libvirt's migrate to an fd) while `migrace replay --attach PID` forces
 * the interleaving on that QEMU, and `virsh domjobinfo` is the query. virsh
 * must print libvirt's own error, and the libvirt log, imported, must give
 * the verdict that says so. Skips, saying why, when the archive does not
 * serve libvirt 7.0 or QEMU 5.2, or libvirtd cannot run here.
 */

const run = promisify(execFile);
const CLI = join(process.cwd(), 'bin', 'migrace.js');
const LIBVIRT_ERROR = 'migration was active, but no RAM info was set';

const qemu = bullseyeQemu();
const tree = 'skip' in qemu ? { skip: `QEMU 5.2: ${qemu.skip}` } : fetchLibvirt();
let lv: PrivateLibvirt | { skip: string } = 'skip' in tree ? tree : { skip: 'not started' };

beforeAll(async () => {
  if ('root' in tree) {
    // The monitor traffic (QEMU_MONITOR_SEND_MSG, _RECV_REPLY) and the error lines: what `migrace import libvirt` reads.
    lv = await PrivateLibvirt.start(tree.root, '1:qemu.qemu_monitor 1:qemu.qemu_monitor_json 4:*');
  }
  if ('skip' in lv) console.warn(`[libvirt-real] skipped: ${lv.skip}`);
}, 300_000);

afterAll(async () => {
  if (!('skip' in lv)) await lv.stop();
});

afterEach(() => expectNoSurvivors());

/** Resolves with the first stderr line matching re (the whole text so far), rejects after ms. */
function lineOf(text: () => string, re: RegExp, ms: number): Promise<string> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const t = setInterval(() => {
      if (re.test(text())) {
        clearInterval(t);
        resolve(text());
      } else if (Date.now() > deadline) {
        clearInterval(t);
        reject(new Error(`no line matching ${re} within ${ms / 1000} s; so far:\n${text()}`));
      }
    }, 50);
  });
}

interface Replay {
  out: () => string;
  err: () => string;
  exited: Promise<number | null>;
  /** SIGINT when it still runs (a failed test), then its exit. */
  end: () => Promise<number | null>;
}

/** `migrace replay --attach PID --scenario lp1994002` as a user runs it (XDG_CACHE_HOME from the caller: the discovery profile cache). */
function startReplay(pid: number, db: string): Replay {
  const child = spawn(process.execPath, [CLI, 'replay', '--attach', String(pid), '--scenario', 'lp1994002', '--db', db, '--driver-wait', '60'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
  child.stderr.on('data', (b: Buffer) => { err += b.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return {
    out: () => out, err: () => err, exited,
    end: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      return exited;
    },
  };
}

const WAITING = /waiting for the migration of process/;

describe('libvirt 7.0 on QEMU 5.2, LP#1994002 forced by replay --attach', () => {
  it('virsh domjobinfo fails with libvirt\'s own error, the save completes, the imported log agrees; Ctrl-C leaves the QEMU running', async (ctx) => {
    if ('skip' in lv) return ctx.skip(lv.skip);
    if ('skip' in qemu) return ctx.skip(qemu.skip);
    const libvirt = lv;
    const db = tempStore();
    const name = 'migrace-lp1994002';
    try {
      const began = Date.now();
      const phases: string[] = [];
      const phase = (what: string): void => { phases.push(`${what} ${((Date.now() - began) / 1000).toFixed(1)} s`); };
      const pid = await libvirt.createDomain(name, qemu.path, qemu.env.LD_LIBRARY_PATH ?? null, 64);
      phase('guest created');

      // Ctrl-C before anything happened: migrace detaches, the QEMU is libvirt's and runs on.
      const early = startReplay(pid, db.path);
      try {
        await lineOf(early.err, WAITING, 120_000);
        phase('attached');
      } finally {
        await early.end();
      }
      phase('detached by SIGINT');
      expect(early.out()).toMatch(/replay aborted: interrupted \(SIGINT\)/);
      expect(isAlive(pid)).toBe(true);
      expect((await libvirt.virsh(['domstate', name])).stdout.trim()).toBe('running');

      const replay = startReplay(pid, db.path);
      try {
        await lineOf(replay.err, WAITING, 60_000);
        phase('attached again');
        const save = libvirt.save(name, join(libvirt.dir, 'save', 'guest.img'));
        await lineOf(replay.err, /writer \(migrate_set_state\(setup -> active\)\) held/, 60_000);
        phase('writer held');
        const job = await libvirt.virsh(['domjobinfo', name]);
        phase('domjobinfo answered');
        const saved = await save;
        phase('saved');
        const code = await replay.exited;
        phase('migrace done');
        console.log(`[libvirt-real] virsh domjobinfo exit ${job.code}: ${job.stderr.trim()}; save: ${(saved.stdout + saved.stderr).trim()}; `
          + `migrace: ${replay.out().trim()}; ${phases.join(', ')}`);
        // libvirt's own words, through virsh.
        expect(job.code).not.toBe(0);
        expect(job.stderr).toContain(`error: internal error: ${LIBVIRT_ERROR}`);
        // The query failed, not the save: libvirt 7.0 follows the migration by QEMU's MIGRATION events.
        expect(saved.code, saved.stderr).toBe(0);
        expect(code, replay.err()).toBe(0);
        expect(replay.out()).toMatch(/: manifested; /);
        expect(replay.out()).toMatch(/moved setup -> active between .* read of setup .* and its publish of active/);
      } finally {
        await replay.end();
      }

      // The libvirt log says the same: the reply libvirt got, and the error it raised.
      const log = readFileSync(libvirt.log, 'utf8');
      // libvirt stopped the saved QEMU at once (a zombie nobody reaps would hold it 40 s in virProcessKillPainfully).
      expect(log).not.toMatch(/Failed to terminate process/);
      expect(log).toMatch(new RegExp(`error : qemuMonitorJSONGetMigrationStatsReply:\\d+ : internal error: ${LIBVIRT_ERROR}`));
      const { stdout } = await run(process.execPath, [CLI, 'import', 'libvirt', libvirt.log, '--db', db.path, '--json']);
      const imported = (JSON.parse(stdout) as Array<{ id: number; findings: unknown[] }>).filter((s) => s.findings.length > 0);
      expect(imported.length).toBe(1);
      const analysis = JSON.parse((await run(process.execPath, [CLI, 'analyze', String(imported[0].id), '--db', db.path, '--json'])).stdout) as {
        findings: Array<{ reply: { status: string; has_ram: boolean; old_libvirt: string; libvirt_error: string | null } | null }>;
      };
      expect(analysis.findings.map((f) => f.reply)).toContainEqual(
        expect.objectContaining({ status: 'active', has_ram: false, old_libvirt: 'fails', libvirt_error: LIBVIRT_ERROR }));
    } finally {
      db.cleanup();
    }
  }, 300_000);
});
