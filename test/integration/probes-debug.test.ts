import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { discoverProfile } from '../../recorder/probes/discover.js';
import type { Profile } from '../../recorder/probes/profile.js';
import { track, untrack } from '../../recorder/reaper.js';
import { expectNoSurvivors } from '../helpers/processes.js';
import { lockBinaryForProbes } from '../../recorder/probe-lock.js';

/**
 * Discovery on one program built four ways (test/fixtures/c/split.c, gcc
 * -O2 -g -rdynamic, where gcc splits migrate_get_current off a .part.0
 * copy): with debug info in the file, with `--strip-debug` (local symbols
 * kept), stripped to its exported symbols, and with its debug info in a
 * separate file found through .gnu_debuglink. Real gcc, real strip and
 * objcopy, real gdb. Every build must give the same read points and probe
 * locations, and every read point must fire with the value the program had.
 */

const SRC = resolve('test/fixtures/c/split.c');
const tmp = mkdtempSync(join(tmpdir(), 'migrace-probes-debug-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function tool(name: string): string | null {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'pipe' });
    return null;
  } catch {
    return `${name} is not installed`;
  }
}
const missing = ['gcc', 'strip', 'objcopy', 'gdb'].map(tool).find((x) => x !== null) ?? null;

const BUILDS = ['debug', 'nodebug', 'stripped', 'debuglink'] as const;
type Build = (typeof BUILDS)[number];
const bin = (b: Build): string => join(tmp, b, 'split');
const profiles = new Map<Build, Profile>();
const reports = new Map<Build, string[]>();

beforeAll(async () => {
  if (missing) return;
  for (const b of BUILDS) execFileSync('mkdir', ['-p', join(tmp, b)]);
  execFileSync('gcc', ['-O2', '-g', '-rdynamic', '-o', bin('debug'), SRC]);
  execFileSync('strip', ['--strip-debug', '-o', bin('nodebug'), bin('debug')]);
  execFileSync('strip', ['--strip-all', '-o', bin('stripped'), bin('debug')]);
  // As a distribution ships it: the binary stripped of debug info, a link to split.debug beside it.
  copyFileSync(bin('debug'), join(tmp, 'debuglink', 'full'));
  execFileSync('objcopy', ['--only-keep-debug', join(tmp, 'debuglink', 'full'), join(tmp, 'debuglink', 'split.debug')]);
  execFileSync('objcopy', ['--strip-debug', `--add-gnu-debuglink=${join(tmp, 'debuglink', 'split.debug')}`, join(tmp, 'debuglink', 'full'), bin('debuglink')]);
  rmSync(join(tmp, 'debuglink', 'full'));
  for (const b of BUILDS) {
    // Same build-id for all four: one cache each, or they would share a profile.
    const r = await discoverProfile(bin(b), { cacheDir: join(tmp, `cache-${b}`), refresh: true });
    profiles.set(b, r.profile);
    reports.set(b, r.report);
    console.log(`[probes-debug] ${b}: ${r.ms.toFixed(0)} ms, ${r.profile.read_points.length} read points`);
  }
}, 120_000);

/** What the stripped build must agree on: every read point by address, and where each probe but the transition stops. */
function placement(p: Profile): unknown {
  return {
    read_points: p.read_points.map((r) => [r.pc, r.next_pc, r.instruction, r.access, r.location, r.value]),
    probes: p.probes.filter((x) => x.role !== 'transition').map((x) => [x.name, x.role, x.locations]),
    state_offset: p.state_offset,
    variant: p.variant,
  };
}

describe('one program, four builds: debug info, --strip-debug, exports only, .gnu_debuglink', () => {
  it.skipIf(missing !== null)(`gdb's lookup of migrate_get_current lands on the .part.0 copy, and discovery does not use it${missing ? ` (skipped: ${missing})` : ''}`, () => {
    const nm = execFileSync('nm', [bin('debug')], { encoding: 'utf8' });
    const part = /^([0-9a-f]+) t migrate_get_current\.part\.0$/m.exec(nm);
    const real = /^([0-9a-f]+) T migrate_get_current$/m.exec(nm);
    expect(part && real, 'gcc no longer splits migrate_get_current: the fixture does not test what it should').toBeTruthy();
    const gdb = execFileSync('gdb', ['-batch', '-nx', '-q', '-iex', 'set debuginfod enabled off', '-ex', 'print/x (long)&migrate_get_current', bin('debug')], { encoding: 'utf8' });
    expect(gdb).toContain(`= 0x${part![1].replace(/^0+/, '')}`);
    for (const b of ['debug', 'debuglink'] as const) {
      expect(reports.get(b)!.join('\n')).toMatch(/gdb resolves migrate_get_current to 0x[0-9a-f]+ \(migrate_get_current\.part\.0\), the symbol table has it at 0x[0-9a-f]+/);
      expect(profiles.get(b)!.state_addr_expr).not.toContain('migrate_get_current');
    }
    expect(profiles.get('stripped')!.state_addr_expr).toContain('migrate_get_current');
  });

  it.skipIf(missing !== null)('every build has the same read points and probe locations; the separate debug file gives the same profile as debug info in the file', () => {
    const want = placement(profiles.get('stripped')!);
    for (const b of BUILDS) expect(placement(profiles.get(b)!), b).toEqual(want);
    const rp = profiles.get('stripped')!.read_points;
    expect(rp.map((r) => r.access)).toEqual(['load', 'load', 'load', 'compare']);
    expect(rp[3].via).toHaveLength(2);
    const { binary: _a, ...debug } = profiles.get('debug')!;
    const { binary: _b, ...linked } = profiles.get('debuglink')!;
    expect(linked).toEqual(debug);
    // What debug info adds: parameters by name, a source line and the inlined function of every read point.
    expect(profiles.get('stripped')!.probes[0]).toMatchObject({ locations: ['migrate_set_state'], values: { addr: '$rdi', old: '$esi', new: '$edx' } });
    // gcc inlined migrate_set_state into main too; a breakpoint on the name would land there, where the arguments are optimized out.
    expect(profiles.get('debug')!.probes[0]).toMatchObject({ locations: ['*migrate_set_state+0'], values: { addr: 'state', old: 'old_state', new: 'new_state' } });
    expect(profiles.get('debug')!.probes[0].why).toMatch(/not placed on the copies inlined into callers \(0x[0-9a-f]+ in main\)/);
    for (const r of profiles.get('debug')!.read_points) expect(r.source).toMatch(/^.*split\.c:\d+ in (fill_source_migration_info \(inlined into qmp_query_migrate\)|populate_time_info \(gcc's copy populate_time_info\.constprop\.0\))$/);
    expect(profiles.get('stripped')!.read_points.every((r) => r.source === null)).toBe(true);
    expect(profiles.get('debuglink')!.status_names).toEqual({ source: 'binary', names: expect.arrayContaining(['setup', 'active', 'failed']) });
  });

  for (const b of ['stripped', 'debuglink'] as const) {
    it.skipIf(missing !== null)(`${b}: every probe and read point fires in the running PIE with the state the program had`, async () => {
      // Two runs: gdb runs only the first command list of breakpoints that share an address (the read probe and its read point do).
      const hits = [...await runUnderGdb(profiles.get(b)!, bin(b), 'probes'), ...await runUnderGdb(profiles.get(b)!, bin(b), 'read points')];
      const values = (name: string, key = 'value'): number[] => hits.filter((h) => h.name === name).map((h) => h.values[key]);
      const p = profiles.get(b)!;
      // main: setup (inlined, so no probe sees it), query, setup -> active through a pointer, query, the same again (refused).
      expect(hits.filter((h) => h.name === 'transition').map((h) => [h.values.old, h.values.new])).toEqual([[1, 4], [1, 4]]);
      expect(values('read')).toEqual([1, 4]);
      expect(values('publish')).toEqual([1, 4]);
      const [switchRead, setupReread, activeReread, inCallee] = p.read_points.map((r) => r.name);
      expect(values(`rp:${switchRead}`)).toEqual([1, 4]);
      expect(values(`rp:${setupReread}`)).toEqual([1]);
      expect(values(`rp:${activeReread}`)).toEqual([4]);
      expect(values(`rp:${inCallee}`)).toEqual([4]);
      for (const h of hits) if (h.values.stateaddr !== undefined && h.name === 'transition') expect(h.values.addr).toBe(h.values.stateaddr);
      expectNoSurvivors();
    });
  }
});

interface Hit { name: string; values: Record<string, number> }

/** gdb runs the program with a breakpoint per probe location, or per read point, each printing its values. */
async function runUnderGdb(profile: Profile, binary: string, what: 'probes' | 'read points'): Promise<Hit[]> {
  const lines = ['set pagination off', 'set confirm off', 'set startup-with-shell off'];
  const place = (name: string, location: string, values: Array<[string, string]>): void => {
    const all = profile.state_addr_expr ? [...values, ['stateaddr', `(long)(${profile.state_addr_expr})`] as [string, string]] : values;
    lines.push(`break ${location}`, 'commands', 'silent',
      `printf "HIT ${name} ${all.map(([k]) => `${k}=%ld`).join(' ')}\\n", ${all.map(([, v]) => `(long)(${v})`).join(', ')}`, 'continue', 'end');
  };
  if (what === 'probes') {
    for (const p of profile.probes) {
      if (p.role === 'query') continue;
      for (const loc of p.locations) place(p.name, loc, Object.entries(p.values));
    }
  } else {
    for (const r of profile.read_points) if (r.value) place(`rp:${r.name}`, r.location, [['value', r.value]]);
  }
  lines.push('run');
  const script = join(tmp, `run-${Math.random().toString(36).slice(2)}.gdb`);
  writeFileSync(script, `${lines.join('\n')}\n`);
  // gdb's breakpoints would not fire where another test's uprobes are on this binary: take the lock migrace takes.
  const unlock = await lockBinaryForProbes(binary, 'gdb');
  const child = execa('gdb', ['-batch', '-nx', '-q', '-iex', 'set debuginfod enabled off', '-x', script, binary], { reject: false, timeout: 30_000, stdin: 'ignore', env: { LC_ALL: 'C' } });
  if (child.pid) track(child.pid, 'gdb (probes-debug)');
  const r = await child.finally(unlock);
  if (child.pid) untrack(child.pid);
  const out = String(r.stdout);
  expect(out, String(r.stderr)).toMatch(/\[Inferior 1 \(process \d+\) exited normally\]/);
  return out.split('\n').flatMap((l) => {
    const m = /^HIT (\S+) (.*)$/.exec(l);
    return m ? [{ name: m[1], values: Object.fromEntries(m[2].split(' ').map((kv) => kv.split('=')).map(([k, v]) => [k, Number(v)])) }] : [];
  });
}
