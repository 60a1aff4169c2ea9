import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { MigraceError } from '../../trace/errors.js';
import { discoverProfile, type DiscoveryResult } from '../../recorder/probes/discover.js';
import { readElfInfo } from '../../recorder/probes/elf.js';
import { ProfileSchema, type Profile } from '../../recorder/probes/profile.js';
import { probesCommandOutput } from '../../recorder/probes/report.js';
import { track, untrack, waitGone } from '../../recorder/reaper.js';
import { STATUS_TABLES } from '../../trace/status.js';
import { BUILDS, bookwormQemu, bullseyeQemu, isAvailable, qemuBuild, withDebugFileDirectory } from '../helpers/qemu-binaries.js';
import { gdbDebugDirOptions } from '../../recorder/debug-dirs.js';
import { expectNoSurvivors } from '../helpers/processes.js';
import { lockBinaryForProbes } from '../../recorder/probe-lock.js';
import { sleep } from '../../trace/async.js';

const tmp = mkdtempSync(join(tmpdir(), 'migrace-probes-real-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const BOOKWORM_ID = 'd9541fd67c4ea37f9ca7fca0f5096f32b3b7e7e0';
const BULLSEYE_ID = 'e75c4e44f088a4a9c5bb4880bed10e7a81dc2606';
const MINIMIG = resolve('samples/minimig/minimig');
const MINIMIG_PATCHED = resolve('samples/minimig/minimig-patched');

function probe(profile: Profile, name: string) {
  const p = profile.probes.find((x) => x.name === name);
  if (!p) throw new Error(`profile has no probe ${name}`);
  return p;
}

/** Cold (fresh cache directory) then cached; prints both timings. */
async function coldThenCached(label: string, binary: string, env: Record<string, string>): Promise<{ cold: DiscoveryResult; warm: DiscoveryResult }> {
  const cacheDir = mkdtempSync(join(tmp, 'cache-'));
  const cold = await discoverProfile(binary, { env, cacheDir });
  const warm = await discoverProfile(binary, { env, cacheDir });
  console.log(`[probes] ${label}: cold discovery ${cold.ms.toFixed(0)} ms, cached ${warm.ms.toFixed(1)} ms (build-id ${cold.elf.buildId})`);
  expect(cold.cached).toBe(false);
  expect(warm.cached).toBe(true);
  expect(warm.profile).toEqual(cold.profile);
  expect(existsSync(cold.cacheFile!)).toBe(true);
  ProfileSchema.parse(JSON.parse(readFileSync(cold.cacheFile!, 'utf8')));
  return { cold, warm };
}

/* ------------------------------------------------------------------ */
/* A profile checked live: gdb places every probe and prints its values */

/**
 * The probes, or the read points (gdb runs only the first command list of
 * breakpoints that share an address, and the read probe shares one with
 * its read point): each prints its values and the state as the profile's
 * address expression finds it.
 */
function gdbScript(profile: Profile, env: Record<string, string>, what: 'probes' | 'read points' = 'probes'): string {
  const lines = ['set pagination off', 'set confirm off', 'set startup-with-shell off', 'set debuginfod enabled off',
    'handle SIGUSR1 SIGUSR2 SIGPIPE nostop noprint pass'];
  for (const [k, v] of Object.entries(env)) lines.push(`set environment ${k}=${v}`);
  const points = what === 'probes'
    ? profile.probes.filter((p) => p.role !== 'query').flatMap((p) => p.locations.map((loc) => ({ name: p.name, loc, values: Object.entries(p.values) })))
    : profile.read_points.filter((r) => r.value).map((r) => ({ name: `rp:${r.name}`, loc: r.location, values: [['value', r.value!]] as Array<[string, string]> }));
  for (const { name, loc, values } of points) {
    if (profile.state_addr_expr) values.push(['stateaddr', `(long)(${profile.state_addr_expr})`], ['state', `*(${profile.state_addr_expr})`]);
    const fmt = values.map(([k]) => `${k}=%ld`).join(' ');
    const args = values.map(([, v]) => `(long)(${v})`).join(', ');
    // dprintf, not break + commands + continue: gdb 18 (sid) returns from a
    // batch `run` at a stop in another thread before that breakpoint's
    // commands ran; a dprintf never stops the command line.
    lines.push(`dprintf ${loc},"MIGRACE ${name} at=${loc} ${fmt}\\n", ${args}`);
  }
  lines.push('run');
  return `${lines.join('\n')}\n`;
}

interface Hit { probe: string; at: string; values: Record<string, number> }

function parseHits(stdout: string): Hit[] {
  return stdout.split('\n').flatMap((l) => {
    const m = /^MIGRACE (\S+) at=(\S+) (.*)$/.exec(l);
    if (!m) return [];
    const values = Object.fromEntries(m[3].split(' ').map((kv) => kv.split('=')).map(([k, v]) => [k, Number(v)]));
    return [{ probe: m[1], at: m[2], values }];
  });
}

function childrenOf(pid: number): number[] {
  try {
    return execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' }).split('\n').map((s) => Number(s.trim())).filter((n) => n > 0);
  } catch {
    return [];
  }
}

type Qmp = (execute: string, args?: unknown) => Promise<Record<string, unknown>>;

/** Minimal QMP over a unix socket: one JSON object a line, events skipped. */
async function withQmp<T>(path: string, fn: (cmd: Qmp) => Promise<T>): Promise<T> {
  const deadline = Date.now() + 30_000;
  while (!existsSync(path)) {
    if (Date.now() > deadline) throw new Error(`no QMP socket at ${path}`);
    await sleep(50);
  }
  const sock = createConnection(path);
  // The target closes the socket on quit; that is not an error here.
  sock.on('error', () => {});
  let buf = '';
  const waiting: Array<(v: Record<string, unknown>) => void> = [];
  sock.on('data', (d) => {
    buf += d.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line) continue;
      const msg = JSON.parse(line) as Record<string, unknown>;
      if ('event' in msg) continue;
      waiting.shift()?.(msg);
    }
  });
  const next = (): Promise<Record<string, unknown>> => new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error('QMP reply timeout')), 20_000);
    waiting.push((v) => {
      clearTimeout(t);
      res(v);
    });
  });
  try {
    await next(); // greeting
    const cmd: Qmp = (execute, args) => {
      const reply = next();
      sock.write(`${JSON.stringify(args === undefined ? { execute } : { execute, arguments: args })}\n`);
      return reply;
    };
    return await fn(cmd);
  } finally {
    sock.destroy();
  }
}

async function underGdb<T>(
  profile: Profile, binary: string, args: string[], env: Record<string, string>, qmpPath: string, drive: (cmd: Qmp) => Promise<T>,
  what: 'probes' | 'read points' = 'probes',
): Promise<{ hits: Hit[]; result: T; stdout: string }> {
  const script = join(tmp, `gdb-${Date.now()}-${Math.random().toString(36).slice(2)}.gdb`);
  writeFileSync(script, gdbScript(profile, env, what));
  // gdb's breakpoints would not fire where another test's uprobes are on this binary: take the lock migrace takes.
  const unlock = await lockBinaryForProbes(binary, 'gdb');
  // Shorter than the test timeout, so the cleanup below always runs.
  // Where migrace's own gdb looks for debug files (MIGRACE_DEBUG_FILE_DIRECTORY), this one looks too.
  const gdb = execa('gdb', ['-batch', '-nx', '-q', ...gdbDebugDirOptions(), '-x', script, '--args', binary, ...args],
    { reject: false, stdin: 'ignore', timeout: 40_000, env: { LC_ALL: 'C' } });
  const gdbPid = gdb.pid!;
  track(gdbPid, 'gdb (probes-real)');
  try {
    const result = await withQmp(qmpPath, drive);
    const r = await gdb;
    return { hits: parseHits(String(r.stdout)), result, stdout: String(r.stdout) + String(r.stderr) };
  } finally {
    const inferiors = childrenOf(gdbPid);
    for (const pid of inferiors) track(pid, 'inferior (probes-real)');
    for (const pid of [...inferiors, gdbPid]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
      await waitGone(pid, 5000);
      untrack(pid);
    }
    await gdb.catch(() => undefined);
    unlock();
  }
}

/** minimig migrates; query until completed, then quit. The statuses the replies had. */
async function migrateAndQuery(cmd: Qmp): Promise<string[]> {
  await cmd('qmp_capabilities');
  await cmd('migrate', { uri: 'tcp:127.0.0.1:0' });
  const seen: string[] = [];
  for (let i = 0; i < 200; i++) {
    const r = (await cmd('query-migrate')) as { return?: { status?: string } };
    seen.push(r.return?.status ?? '?');
    if (r.return?.status === 'completed') break;
    await sleep(25);
  }
  await cmd('quit');
  return seen;
}

/** A QEMU that never migrates, under gdb with the probes or the read points: one query-migrate, then quit. */
function queryOnceUnderGdb(profile: Profile, binary: string, env: Record<string, string>, tag: string, what: 'probes' | 'read points' = 'probes', qemuArgs: readonly string[] = []) {
  const sock = join(tmp, `qmp-${tag}-${process.pid}.sock`);
  return underGdb(profile, binary,
    [...qemuArgs, '-machine', 'none', '-nodefaults', '-display', 'none', '-S', '-qmp', `unix:${sock},server=on,wait=off`], env, sock,
    async (cmd) => {
      await cmd('qmp_capabilities');
      const reply = await cmd('query-migrate');
      await cmd('quit');
      return reply;
    }, what);
}

/** A patched QEMU with no migration yet: one query reads none (0), and the state address points at it. */
async function expectReadHoldsLive(name: string, binary: string, env: Record<string, string>, qemuArgs: readonly string[]): Promise<void> {
  const { profile } = await discoverProfile(binary, { env, cacheDir: join(tmp, 'live-cache') });
  const { hits, result, stdout } = await queryOnceUnderGdb(profile, binary, env, name, 'probes', qemuArgs);
  const reads = hits.filter((h) => h.probe === 'read');
  expect(reads, stdout).toHaveLength(1);
  expect(reads[0].values).toMatchObject({ value: 0, state: 0 });
  expect(reads[0].values.stateaddr).toBeGreaterThan(0x1000);
  expect(result).toEqual({ return: {} });
  expectNoSurvivors();
}

/* ------------------------------------------------------------------ */

describe('discovery on the installed Debian bookworm QEMU (patched 7.2)', () => {
  const q = bookwormQemu();
  it.skipIf('skip' in q)(`finds the read-once probes${'skip' in q ? ` (skipped: ${q.skip})` : ''}`, async () => {
    if ('skip' in q) return;
    const { cold } = await coldThenCached('bookworm 7.2', q.path, q.env);
    const p = cold.profile;
    expect(p.variant).toBe('patched');
    expect(p.qemu_version).toMatch(/^7\.2\./);
    expect(p.status_table).toBe('4.2');
    expect(p.status_names).toEqual({ source: 'binary', names: [...STATUS_TABLES['4.2']] });
    expect(probe(p, 'transition').values).toEqual({ addr: '$rdi', old: '$esi', new: '$edx' });
    if (cold.elf.buildId === BOOKWORM_ID) {
      expect(p.state_offset).toBe(0x2e8);
      expect(probe(p, 'read')).toMatchObject({ locations: ['*qmp_query_migrate+133'], values: { value: '$r13d' } });
      expect(probe(p, 'publish')).toMatchObject({
        locations: ['*qmp_query_migrate+332', '*qmp_query_migrate+513', '*qmp_query_migrate+676'], values: { value: '$r13d' },
      });
      // The read once, populate_time_info's compares (inlined twice), populate_ram_info's (out of line, no symbol).
      expect(p.read_points.map((r) => [r.name, r.pc, r.access, r.location])).toEqual([
        ['qmp_query_migrate+125', '0x5fc1bd', 'load', '*qmp_query_migrate+133'],
        ['qmp_query_migrate+432', '0x5fc2f0', 'compare', '*qmp_query_migrate+441'],
        ['qmp_query_migrate+606', '0x5fc39e', 'compare', '*qmp_query_migrate+615'],
        ['sub_5fa520+339', '0x5fa673', 'compare', '*qmp_query_migrate-6854'],
      ]);
    } else {
      console.log(`[probes] bookworm QEMU has build-id ${cold.elf.buildId}, not ${BOOKWORM_ID}: exact offsets not checked`);
    }
  });

  it.skipIf('skip' in q)('the read probe and the state address hold in a live process', async () => {
    if ('skip' in q) return;
    await expectReadHoldsLive('72', q.path, q.env, []);
  });

  it.skipIf('skip' in q)('every read point is accepted by gdb in the running PIE; with no migration only the switch read is reached', async () => {
    if ('skip' in q) return;
    await readPointsWithoutMigration(q.path, q.env, '72');
  });
});

/**
 * The read points placed in a QEMU that never migrates: gdb must accept
 * every one (a location gdb cannot resolve after the PIE is relocated
 * would print an error), and a query in state none reaches the first only.
 */
async function readPointsWithoutMigration(binary: string, env: Record<string, string>, tag: string): Promise<void> {
  const { profile } = await discoverProfile(binary, { env, cacheDir: join(tmp, `rp-cache-${tag}`) });
  const { hits, stdout } = await queryOnceUnderGdb(profile, binary, env, `rp-${tag}`, 'read points');
  expect(stdout).not.toMatch(/Cannot access memory|Cannot insert breakpoint|No symbol/);
  expect(stdout.match(/^(Breakpoint|Dprintf) \d+ at /gm) ?? [], stdout).toHaveLength(profile.read_points.length);
  expect(hits.map((h) => [h.probe, h.values.value, h.values.state])).toEqual([[`rp:${profile.read_points[0].name}`, 0, 0]]);
  expectNoSurvivors();
}

describe('discovery on the fetched Debian bullseye QEMU (unpatched 5.2)', () => {
  const q = bullseyeQemu();
  if ('skip' in q) console.log(`[probes] bullseye QEMU 5.2 tests skipped: ${q.skip}`);
  it.skipIf('skip' in q)(`finds the re-read before each status store${'skip' in q ? ` (skipped: ${q.skip})` : ''}`, async () => {
    if ('skip' in q) return;
    const { cold } = await coldThenCached('bullseye 5.2', q.path, q.env);
    const p = cold.profile;
    expect(p.variant).toBe('unpatched');
    expect(p.qemu_version).toBe('5.2.0');
    expect(p.status_names).toEqual({ source: 'binary', names: [...STATUS_TABLES['4.2']] });
    if (cold.elf.buildId === BULLSEYE_ID) {
      expect(p.state_offset).toBe(0x238);
      expect(probe(p, 'read')).toMatchObject({ locations: ['*qmp_query_migrate+123'], values: { value: '$eax' } });
      expect(probe(p, 'publish')).toMatchObject({
        locations: ['*qmp_query_migrate+187', '*qmp_query_migrate+457', '*qmp_query_migrate+636'], values: { value: '$eax' },
      });
      expect(p.read_points.map((r) => `${r.name} ${r.pc} ${r.access}`)).toEqual([
        'qmp_query_migrate+117 0x518fa5 load', 'qmp_query_migrate+181 0x518fe5 load', 'qmp_query_migrate+290 0x519052 compare',
        'qmp_query_migrate+425 0x5190d9 load', 'qmp_query_migrate+451 0x5190f3 load', 'qmp_query_migrate+528 0x519140 load',
        'qmp_query_migrate+570 0x51916a compare', 'qmp_query_migrate+630 0x5191a6 load', 'sub_5179e0+271 0x517aef compare',
      ]);
    } else {
      console.log(`[probes] bullseye QEMU has build-id ${cold.elf.buildId}, not ${BULLSEYE_ID}: exact offsets not checked`);
    }
  });

  it.skipIf('skip' in q)('without its library path: the probes are found, the version failure is reported and nothing is cached', async () => {
    if ('skip' in q) return;
    const cacheDir = mkdtempSync(join(tmp, 'nolib-'));
    const r = await discoverProfile(q.path, { env: { LD_LIBRARY_PATH: '' }, cacheDir });
    expect(r.profile.qemu_version).toBeNull();
    expect(r.profile.variant).toBe('unpatched');
    expect(r.report.join('\n')).toMatch(/-version failed: .*shared libraries.*LD_LIBRARY_PATH/);
    expect(r.report.join('\n')).toMatch(/not cached/);
    expect(existsSync(r.cacheFile!)).toBe(false);
  });

  it.skipIf('skip' in q)('every read point is accepted by gdb in the running PIE (library path in the inferior)', async () => {
    if ('skip' in q) return;
    await readPointsWithoutMigration(q.path, q.env, '52');
  });

  it.skipIf('skip' in q)('the read probe and the state address hold in a live process (library path in the inferior)', async () => {
    if ('skip' in q) return;
    const { profile } = await discoverProfile(q.path, { env: q.env, cacheDir: join(tmp, 'live-cache') });
    const { hits, stdout } = await queryOnceUnderGdb(profile, q.path, q.env, '52');
    const reads = hits.filter((h) => h.probe === 'read');
    expect(reads, stdout).toHaveLength(1);
    expect(reads[0].values).toMatchObject({ value: 0, state: 0 });
    expectNoSurvivors();
  });
});

// Debian's other builds (10.0.2 natively, 11.1 in the sid chroot): the points docs/qemu-facts.md verified.
describe.each(BUILDS.filter((b) => b.debug === 'stripped' && b.name !== '5.2' && b.name !== '7.2'))('discovery on Debian QEMU $name', (spec) => {
  const q = qemuBuild(spec.name);
  if ('skip' in q) console.log(`[probes] QEMU ${spec.name} tests skipped: ${q.skip}`);
  it.skipIf('skip' in q)(`finds the read and publish probes (${spec.label})`, async () => {
    if ('skip' in q) return;
    const { cold } = await coldThenCached(spec.label, q.path, q.env);
    const p = cold.profile;
    expect(p.variant).toBe(spec.variant);
    expect(p.qemu_version?.startsWith(spec.name)).toBe(true);
    expect(probe(p, 'transition').values).toEqual({ addr: '$rdi', old: '$esi', new: '$edx' });
    if (spec.known && cold.elf.buildId === spec.known.buildId) {
      expect(p.state_offset).toBe(spec.known.stateOffset);
      expect(probe(p, 'read').locations).toEqual([spec.known.read]);
      expect(probe(p, 'publish').locations).toEqual(spec.known.publishes.map((o) => `*qmp_query_migrate${o}`));
    } else {
      console.log(`[probes] QEMU ${spec.name} has build-id ${cold.elf.buildId}, not ${spec.known?.buildId}: exact offsets not checked`);
    }
  });

  it.skipIf('skip' in q)('the read probe and the state address hold in a live process', async () => {
    if ('skip' in q) return;
    await expectReadHoldsLive(spec.name, q.path, q.env, q.args);
  });
});

describe('minimig (debug info): symbolic transition probe, discovered read and publish', () => {
  const built = existsSync(MINIMIG) && existsSync(MINIMIG_PATCHED);
  it.skipIf(!built)('discovers both builds and tells them apart', async () => {
    const cacheDir = join(tmp, 'minimig-cache');
    const un = await discoverProfile(MINIMIG, { cacheDir, refresh: true });
    const pa = await discoverProfile(MINIMIG_PATCHED, { cacheDir, refresh: true });
    console.log(`[probes] minimig: cold discovery ${un.ms.toFixed(0)} ms`);
    for (const r of [un, pa]) {
      expect(r.elf.hasDebugInfo).toBe(true);
      expect(probe(r.profile, 'transition')).toMatchObject({ locations: ['migrate_set_state'], values: { addr: 'state', old: 'old_state', new: 'new_state' } });
      expect(probe(r.profile, 'read').locations[0]).toMatch(/^\*fill_source_migration_info\+\d+$/);
      expect(r.profile.qemu_version).toBeNull();
      expect(r.profile.state_addr_expr).not.toBeNull();
    }
    expect(un.profile.variant).toBe('unpatched');
    expect(pa.profile.variant).toBe('patched');
  });

  it.skipIf(!built)('every probe of the discovered profile fires with sensible values under gdb', async () => {
    const { profile } = await discoverProfile(MINIMIG, { cacheDir: join(tmp, 'minimig-cache') });
    const sock = join(tmp, `qmp-mm-${process.pid}.sock`);
    const { hits, result: statuses, stdout } = await underGdb(profile, MINIMIG,
      ['-qmp', `unix:${sock},server,wait=off`, '--setup-ms', '300', '--transfer-ms', '100'], {}, sock, migrateAndQuery);
    expect(statuses).toContain('completed');
    const transitions = hits.filter((h) => h.probe === 'transition');
    expect(transitions.length, stdout).toBeGreaterThanOrEqual(2);
    expect(transitions.slice(0, 2).map((t) => [t.values.old, t.values.new])).toEqual([[0, 1], [1, 4]]);
    // The symbolic `state` parameter and the static state address expression agree.
    for (const t of transitions) expect(t.values.addr).toBe(t.values.stateaddr);
    const reads = hits.filter((h) => h.probe === 'read');
    const publishes = hits.filter((h) => h.probe === 'publish');
    expect(reads.length).toBeGreaterThanOrEqual(2);
    expect(publishes.length).toBe(reads.length);
    for (const r of reads) expect([1, 4, 8]).toContain(r.values.value);
    expectNoSurvivors();
  });
});

describe('minimig: every read point fires during a migration', () => {
  const built = existsSync(MINIMIG) && existsSync(MINIMIG_PATCHED);
  // By function and order, not offset: gcc versions (bookworm's 12, sid's 15) place the loads differently.
  for (const [label, binary, expected] of [
    ['minimig', MINIMIG, ['fill_source_migration_info', 'fill_source_migration_info', 'populate_time_info']],
    ['minimig-patched', MINIMIG_PATCHED, ['fill_source_migration_info', 'populate_time_info']],
  ] as const) {
    it.skipIf(!built)(`${label}: the switch read, ${label === 'minimig' ? 'the re-read it publishes, ' : ''}populate_time_info's`, async () => {
      const { profile } = await discoverProfile(binary, { cacheDir: join(tmp, `minimig-rp-${label}`) });
      expect(profile.read_points.map((r) => r.function)).toEqual(expected);
      expect(profile.status_names).toEqual({ source: 'binary', names: [...STATUS_TABLES['4.2']] });
      expect(profile.read_points.every((r) => r.source?.startsWith('minimig.c:'))).toBe(true);
      const [switchRead, ...rest] = profile.read_points.map((r) => r.name);
      const timeRead = rest[rest.length - 1];
      const reRead = label === 'minimig' ? rest[0] : undefined;
      const sock = join(tmp, `qmp-mmrp-${label}-${process.pid}.sock`);
      const { hits, result: statuses, stdout } = await underGdb(profile, binary,
        ['-qmp', `unix:${sock},server,wait=off`, '--setup-ms', '300', '--transfer-ms', '100'], {}, sock, migrateAndQuery, 'read points');
      const at = (name: string): number[] => hits.filter((h) => h.probe === `rp:${name}`).map((h) => h.values.value);
      // The switch read sees every query; populate_time_info only those whose switch read active or completed.
      // (Counted from the switch, not the replies: unpatched, the state can move between the switch and the
      // re-read it publishes, and the reply says active without it: LP#1994002, unforced, under load.)
      expect(at(switchRead), stdout).toHaveLength(statuses.length);
      for (const v of at(switchRead)) expect([1, 4, 8]).toContain(v);
      expect(at(timeRead).length).toBe(at(switchRead).filter((v) => v === 4 || v === 8).length);
      for (const v of at(timeRead)) expect([4, 8]).toContain(v);
      if (reRead) expect(at(reRead)).toHaveLength(statuses.length);
      expectNoSurvivors();
    });
  }
});

/* ------------------------------------------------------------------ */
/* QEMU 10.0.2 (bookworm-backports) and QEMU 5.2 built with -O2 -g */

const ROOT = resolve('.');
const q10 = qemuBuild('10.0.2');
const QEMU_10 = 'skip' in q10 ? '' : q10.path;
const QEMU_52_DBG = join(process.env.MIGRACE_QEMU_CACHE ?? join(ROOT, 'samples/.cache'), 'qemu-5.2-dbg');

describe('discovery on Debian bookworm-backports QEMU 10.0.2 (patched, endbr64, no migration_in_setup)', () => {
  const skip = 'skip' in q10 ? q10.skip : null;
  if (skip) console.log(`[probes] QEMU 10.0.2 tests skipped: ${skip}`);
  it.skipIf(skip !== null)(`finds the read once at +191 and populate_time_info/populate_ram_info's re-reads${skip ? ` (skipped: ${skip})` : ''}`, async () => {
    const { cold } = await coldThenCached('bookworm-backports 10.0.2', QEMU_10, {});
    const p = cold.profile;
    expect(p).toMatchObject({ variant: 'patched', qemu_version: '10.0.2', status_table: '9.1', state_offset: 0x2f8 });
    expect(p.status_names).toEqual({ source: 'binary', names: [...STATUS_TABLES['9.1']] });
    expect(probe(p, 'read')).toMatchObject({ locations: ['*qmp_query_migrate+199'], values: { value: '$r13d' } });
    expect(probe(p, 'publish')).toMatchObject({ locations: ['*qmp_query_migrate+484'], values: { value: '$r13d' } });
    expect(p.read_points[0]).toMatchObject({ name: 'qmp_query_migrate+191', access: 'load', instruction: 'mov 0x2f8(%r12),%r13d' });
    // populate_time_info and populate_ram_info are out of line here (no symbol in the stripped build): completed is 9.
    const callees = p.read_points.filter((r) => r.function.startsWith('sub_'));
    expect(callees.length).toBeGreaterThanOrEqual(2);
    expect(callees.filter((r) => r.access === 'compare').every((r) => /^cmpl \$0x9,0x2f8\(%r\w+\)$/.test(r.instruction))).toBe(true);
    console.log(`[probes] 10.0.2 read points: ${p.read_points.map((r) => `${r.name} ${r.instruction}`).join('; ')}`);
  });

  it.skipIf(skip !== null)('every read point is accepted by gdb in the running PIE', async () => {
    await readPointsWithoutMigration(QEMU_10, {}, '10');
  });
});

describe('QEMU 5.2 built from Debian\'s source with -O2 -g: unstripped, with a separate debug file, and --strip-debug', () => {
  const unstripped = join(QEMU_52_DBG, 'qemu-system-x86_64');
  const linked = join(QEMU_52_DBG, 'split/qemu-system-x86_64');
  const skip = existsSync(join(QEMU_52_DBG, '.complete')) && existsSync(unstripped) && existsSync(linked) ? null : `no -O2 -g build of QEMU 5.2 under ${QEMU_52_DBG}`;
  if (skip) console.log(`[probes] QEMU 5.2 -O2 -g tests skipped: ${skip}`);
  it.skipIf(skip !== null)(`the same read points and probe locations as the --strip-debug build; gdb's own lookup lands on migrate_get_current.part.0${skip ? ` (skipped: ${skip})` : ''}`, async () => {
    const stripped = join(tmp, 'qemu-5.2-dbg.strip-debug');
    execFileSync('strip', ['--strip-debug', '-o', stripped, unstripped]);
    const runs = [];
    for (const [label, bin] of [['unstripped', unstripped], ['.gnu_debuglink', linked], ['--strip-debug', stripped]] as const) {
      const r = await discoverProfile(bin, { cacheDir: mkdtempSync(join(tmp, 'dbg-cache-')), refresh: true });
      console.log(`[probes] 5.2 -O2 -g ${label}: ${r.ms.toFixed(0)} ms, ${r.profile.read_points.length} read points`);
      runs.push({ label, r });
    }
    const [full, split, plain] = runs.map((x) => x.r);
    const placement = (p: Profile) => ({
      probes: p.probes.map((x) => [x.name, x.locations]),
      read_points: p.read_points.map((r) => [r.pc, r.instruction, r.access, r.location, r.value]),
      state_offset: p.state_offset, variant: p.variant,
    });
    expect(placement(full.profile)).toEqual(placement(plain.profile));
    expect(placement(split.profile)).toEqual(placement(plain.profile));
    const { binary: _a, ...a } = full.profile;
    const { binary: _b, ...b } = split.profile;
    expect(b).toEqual(a);
    expect(full.elf.hasDebugInfo).toBe(true);
    expect(split.elf.separateDebugFile).toBe(`${linked}.debug`);
    expect(full.profile).toMatchObject({ variant: 'unpatched', state_offset: 0x200, status_names: { source: 'binary' } });
    expect(probe(full.profile, 'transition').values).toEqual({ addr: 'state', old: 'old_state', new: 'new_state' });
    expect(probe(plain.profile, 'transition').values).toEqual({ addr: '$rdi', old: '$esi', new: '$edx' });
    expect(full.report.join('\n')).toMatch(/gdb resolves migrate_get_current to 0x[0-9a-f]+ \(migrate_get_current\.part\.0\)/);
    expect(full.profile.state_addr_expr).not.toContain('migrate_get_current');
    // The switch read on migration.c:1059 (docs/qemu-facts.md), in fill_source_migration_info inlined into qmp_query_migrate.
    expect(full.profile.read_points[0].source).toBe('../migration/migration.c:1059 in fill_source_migration_info (inlined into qmp_query_migrate)');
    expect(full.profile.read_points.every((r) => r.source !== null)).toBe(true);
  });

  const byId = qemuBuild('5.2-dbg-build-id');
  const byIdSkip = skip ?? ('skip' in byId ? byId.skip : null);
  it.skipIf(byIdSkip !== null)(`no debuglink: found by build-id under MIGRACE_DEBUG_FILE_DIRECTORY, the debuglink build's profile, the --strip-debug build's probes; without it, refused${byIdSkip ? ` (skipped: ${byIdSkip})` : ''}`, async () => {
    if (!isAvailable(byId) || !byId.debugFileDirectory) throw new Error('no build-id-only build');
    const stripped = join(tmp, 'qemu-5.2-dbg.strip-debug.by-id');
    execFileSync('strip', ['--strip-debug', '-o', stripped, unstripped]);
    const plain = await discoverProfile(stripped, { cacheDir: mkdtempSync(join(tmp, 'dbg-cache-')) });
    const split = await discoverProfile(linked, { cacheDir: mkdtempSync(join(tmp, 'dbg-cache-')) });
    const cacheDir = mkdtempSync(join(tmp, 'by-id-cache-'));
    const found = await withDebugFileDirectory(byId, () => discoverProfile(byId.path, { cacheDir }));
    console.log(`[probes] 5.2 -O2 -g by build-id: ${found.ms.toFixed(0)} ms, ${found.profile.read_points.length} read points`);
    const id = found.elf.buildId!;
    const debugFile = join(byId.debugFileDirectory, '.build-id', id.slice(0, 2), `${id.slice(2)}.debug`);
    expect(found.elf).toMatchObject({ debugLink: null, hasDebugInfo: false, separateDebugFile: debugFile });
    expect(found.report).toContain(`ELF x86-64 PIE, debug info in ${debugFile}`);
    const { binary: _a, ...a } = found.profile;
    const { binary: _b, ...b } = split.profile;
    expect(a).toEqual(b);
    const placement = (p: Profile) => ({
      probes: p.probes.map((x) => [x.name, x.locations]),
      read_points: p.read_points.map((r) => [r.pc, r.instruction, r.access, r.location, r.value]),
      state_offset: p.state_offset, variant: p.variant,
    });
    expect(placement(found.profile)).toEqual(placement(plain.profile));
    expect(probe(found.profile, 'transition').values).toEqual({ addr: 'state', old: 'old_state', new: 'new_state' });
    expect(found.cacheFile).toBe(join(cacheDir, `${id}.debug.json`));

    // Without the directory: --strip-all left no symbol of these functions (a self-built QEMU exports none).
    const err = await discoverProfile(byId.path, { cacheDir }).then(() => null, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'PROBES', message: expect.stringMatching(/symbol migrate_set_state and symbol qmp_query_migrate not found/) });
    expect(existsSync(join(cacheDir, `${id}.json`))).toBe(false);

    // gdb itself finds the lines of migrate_set_state only with the directory.
    const infoLine = (extra: string[]) => {
      const r = spawnSync('gdb', ['-batch', '-nx', '-q', '-iex', 'set debuginfod enabled off', ...extra, '-ex', 'info line migrate_set_state', byId.path],
        { encoding: 'utf8', timeout: 60_000 });
      return `${r.stdout}${r.stderr}`;
    };
    expect(infoLine(['-iex', `set debug-file-directory ${byId.debugFileDirectory}`])).toMatch(/^Line 1662 of "\.\.\/migration\/migration\.c" starts at address/m);
    expect(infoLine([])).toMatch(/No symbol table is loaded|Function "migrate_set_state" not defined/);
  });

  it.skipIf(byIdSkip !== null)('no debuglink, by build-id: the read probe, the state address and every read point hold in a live process', async () => {
    if (!isAvailable(byId)) return;
    await withDebugFileDirectory(byId, async () => {
      const { profile } = await discoverProfile(byId.path, { cacheDir: join(tmp, 'dbg-live-by-id') });
      expect(probe(profile, 'transition').values).toEqual({ addr: 'state', old: 'old_state', new: 'new_state' });
      const { hits, stdout } = await queryOnceUnderGdb(profile, byId.path, {}, 'dbg-by-id');
      const reads = hits.filter((h) => h.probe === 'read');
      expect(reads, stdout).toHaveLength(1);
      expect(reads[0].values).toMatchObject({ value: 0, state: 0 });
      await readPointsWithoutMigration(byId.path, {}, 'dbg-by-id');
    });
  });

  for (const [label, rel] of [['unstripped', 'qemu-system-x86_64'], ['.gnu_debuglink', 'split/qemu-system-x86_64']] as const) {
    it.skipIf(skip !== null)(`${label}: the read probe, the state address and every read point hold in a live process`, async () => {
      const bin = join(QEMU_52_DBG, rel);
      const { profile } = await discoverProfile(bin, { cacheDir: join(tmp, `dbg-live-${label}`) });
      const { hits, stdout } = await queryOnceUnderGdb(profile, bin, {}, `dbg-${label.replace(/\W/g, '')}`);
      const reads = hits.filter((h) => h.probe === 'read');
      expect(reads, stdout).toHaveLength(1);
      expect(reads[0].values).toMatchObject({ value: 0, state: 0 });
      await readPointsWithoutMigration(bin, {}, `dbg-${label.replace(/\W/g, '')}`);
    });
  }
});

describe('what discovery refuses', () => {
  it('/bin/true: a PROBES error naming the missing symbols', async () => {
    let err: unknown;
    try {
      await discoverProfile('/bin/true', { cacheDir: join(tmp, 'true-cache') });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MigraceError);
    expect((err as MigraceError).code).toBe('PROBES');
    expect((err as MigraceError).message).toMatch(/symbol migrate_set_state and symbol qmp_query_migrate not found/);
    expect((err as MigraceError).message).toContain('--profile FILE');
  });

  it('a file that is not ELF: BAD_INPUT', async () => {
    const f = join(tmp, 'not-elf.txt');
    writeFileSync(f, 'hello world, certainly not a binary of any kind at all, long enough\n');
    await expect(discoverProfile(f, { cacheDir: join(tmp, 'x') })).rejects.toMatchObject({ code: 'BAD_INPUT' });
  });

  it('reads the build-ids of the real binaries like readelf does', async () => {
    for (const bin of ['/bin/true', '/usr/bin/qemu-system-x86_64']) {
      if (!existsSync(bin)) continue;
      const re = /Build ID: ([0-9a-f]+)/.exec(execFileSync('readelf', ['-n', bin], { encoding: 'utf8' }))?.[1] ?? null;
      expect((await readElfInfo(bin)).buildId).toBe(re);
    }
  });
});

describe('the profile cache', () => {
  const q = bookwormQemu();
  it.skipIf('skip' in q)('a corrupt cache file is ignored, reported and rewritten', async () => {
    if ('skip' in q) return;
    const cacheDir = mkdtempSync(join(tmp, 'corrupt-'));
    const first = await discoverProfile(q.path, { env: q.env, cacheDir });
    const file = first.cacheFile!;
    const stale = JSON.stringify({ ...first.profile, notes: first.profile.notes.filter((n) => !n.startsWith('discovery revision')) });
    for (const garbage of ['{"format": "migrace-profile", "version": 1, "probes": [', JSON.stringify({ ...first.profile, probes: [] }), stale]) {
      writeFileSync(file, garbage);
      const again = await discoverProfile(q.path, { env: q.env, cacheDir });
      expect(again.cached).toBe(false);
      expect(again.report.join('\n')).toMatch(/ignored the cache: cached profile .* (not valid JSON|not a valid migrace profile: probes|made by an older discovery)/);
      expect(again.profile).toEqual(first.profile);
      expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(first.profile);
      expect((await discoverProfile(q.path, { env: q.env, cacheDir })).cached).toBe(true);
    }
  });

  it.skipIf('skip' in q)('probesCommandOutput prints the findings and the same as JSON', async () => {
    if ('skip' in q) return;
    const cacheDir = mkdtempSync(join(tmp, 'cmd-'));
    const { text, json } = await probesCommandOutput(q.path, { env: q.env, cacheDir });
    expect(text).toContain(`build-id        ${json.build_id}`);
    expect(text).toMatch(/variant +patched: /);
    expect(text).toContain(probe(json.profile, 'read').locations[0]);
    expect(json.source).toBe('discovered');
    expect((await probesCommandOutput(q.path, { env: q.env, cacheDir })).json.source).toBe('cache');
    const f = join(tmp, 'hand.json');
    writeFileSync(f, JSON.stringify(json.profile));
    const byHand = await probesCommandOutput(q.path, { profile: f });
    expect(byHand.json.source).toBe('file');
    expect(byHand.json.probes).toEqual(json.probes);
  });
});
