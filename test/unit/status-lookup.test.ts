import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ElfImage } from '../../recorder/probes/elf-image.js';
import { decideStatusNames, readStatusLookup } from '../../recorder/probes/status-lookup.js';
import { isAvailable, qemuBuild } from '../helpers/qemu-binaries.js';
import {
  knownTableFor, STATUS_TABLES, statusName, statusNamesOf, statusSourceOf, statusValue, tableIdFor, tableIdMatching,
} from '../../trace/status.js';

/**
 * The MigrationStatus names read from each binary's MigrationStatus_lookup,
 * against the enum its source declares (test/fixtures/status: qapi
 * excerpts of each version, and 11.1.3's own schema introspection, whose
 * source is not to be had here; minimig.c for minimig). A binary that is
 * not on this machine skips with where it was looked for.
 */

const ROOT = resolve(import.meta.dirname, '../..');
const STATUS_FIX = join(ROOT, 'test/fixtures/status');

/** The 'data' list of a QAPI enum excerpt. */
function qapiEnum(file: string): string[] {
  const text = readFileSync(join(STATUS_FIX, file), 'utf8').replace(/^#.*$/gm, '');
  const data = /'data':\s*\[([^\]]*)\]/.exec(text);
  if (!data) throw new Error(`${file}: no 'data' list`);
  return [...data[1].matchAll(/'([^']+)'/g)].map((m) => m[1]);
}

/**
 * The members of MigrationStatus in a captured query-qmp-schema excerpt:
 * query-migrate's return type, its status member's type, that enum's
 * members (the names of non-builtin types are masked numbers).
 */
function schemaEnum(file: string): string[] {
  const lines = readFileSync(join(STATUS_FIX, file), 'utf8').split('\n');
  const entries = lines.flatMap((l, i) => {
    if (l.trim() === '' || l.startsWith('#')) return [];
    try {
      return [JSON.parse(l) as { name: string; 'ret-type'?: string; members?: Array<{ name: string; type?: string }> }];
    } catch (e) {
      throw new Error(`${file}:${i + 1}: not a JSON schema entry (${(e as Error).message})`);
    }
  });
  const byName = new Map(entries.map((e) => [e.name, e]));
  const entry = (name: string | undefined, what: string) => {
    const e = name === undefined ? undefined : byName.get(name);
    if (!e) throw new Error(`${file}: no entry for ${what} (${name ?? 'unnamed'})`);
    return e;
  };
  const info = entry(entry('query-migrate', 'the command query-migrate')['ret-type'], "query-migrate's ret-type");
  const status = info.members?.find((m) => m.name === 'status');
  const members = entry(status?.type, "the status member's type").members;
  if (!members) throw new Error(`${file}: the status type has no members`);
  return members.map((m) => m.name);
}

/** minimig's enum, MIGRATION_STATUS_X = N, in the source the binary was built from. */
function minimigEnum(): string[] {
  const src = readFileSync(join(ROOT, 'samples/minimig/minimig.c'), 'utf8');
  const body = /typedef enum MigrationStatus \{([\s\S]*?)\} MigrationStatus;/.exec(src)![1];
  const out: string[] = [];
  for (const m of body.matchAll(/MIGRATION_STATUS_(\w+) = (\d+)/g)) if (m[1] !== '_MAX') out[Number(m[2])] = m[1].toLowerCase().replace(/_/g, '-');
  return out;
}

/** A fetched build under samples/.cache (the fetch scripts' layout), or where MIGRACE_QEMU_<version> says. */
function fetched(version: string): { path: string } | { skip: string } {
  const env = process.env[`MIGRACE_QEMU_${version.replace(/\./g, '_')}`];
  const path = env ?? join(ROOT, `samples/.cache/qemu-${version}/root/usr/bin/qemu-system-x86_64`);
  return existsSync(path) ? { path } : { skip: `no QEMU ${version} at ${path} (fetch it, or set MIGRACE_QEMU_${version.replace(/\./g, '_')})` };
}

/** The sid chroot's QEMU (samples/sid-chroot.sh): its ELF data is read here on the host; it runs only inside. */
function sidChroot(): { path: string } | { skip: string } {
  const env = process.env.MIGRACE_QEMU_11_1_3;
  const cache = process.env.MIGRACE_QEMU_CACHE ?? join(ROOT, 'samples/.cache');
  const path = env ?? join(cache, 'sid-chroot/root/usr/bin/qemu-system-x86_64');
  return existsSync(path) ? { path } : { skip: `no QEMU 11.1.3 at ${path} (bash samples/sid-chroot.sh build; .ci/install does; or set MIGRACE_QEMU_11_1_3)` };
}

/** bookworm's QEMU, where the tests find it (elsewhere, as in the sid chroot where /usr/bin has 11.1, skipped saying which). */
function installed72(): { path: string } | { skip: string } {
  const b = qemuBuild('7.2');
  return isAvailable(b) ? { path: b.path } : { skip: b.skip };
}

const BINARIES: Array<{ label: string; where: { path: string } | { skip: string }; source: () => string[] }> = [
  { label: 'QEMU 5.2 (bullseye)', where: fetched('5.2'), source: () => qapiEnum('qemu-5.2.0.MigrationStatus.qapi') },
  {
    label: 'QEMU 7.2 (bookworm)',
    where: installed72(),
    source: () => qapiEnum('qemu-7.2.0.MigrationStatus.qapi'),
  },
  { label: 'QEMU 10.0.2 (bookworm-backports)', where: fetched('10.0.2'), source: () => qapiEnum('qemu-10.0.2.MigrationStatus.qapi') },
  { label: 'QEMU 11.1.3 (sid)', where: sidChroot(), source: () => schemaEnum('qemu-11.1.3.MigrationStatus.qmp-schema') },
  ...['minimig', 'minimig-patched'].map((b) => {
    const path = join(ROOT, 'samples/minimig', b);
    return { label: b, where: existsSync(path) ? { path } : { skip: `${path} is not built (npm run build)` }, source: minimigEnum };
  }),
];

describe('MigrationStatus names read from the binary equal the source-level enum', () => {
  for (const b of BINARIES) {
    const skip = 'skip' in b.where ? b.where.skip : null;
    it.skipIf(skip !== null)(`${b.label}${skip ? ` (skipped: ${skip})` : ''}`, async () => {
      if (!('path' in b.where)) return;
      const r = readStatusLookup(await ElfImage.load(b.where.path));
      expect(r.found, r.found ? '' : r.why).toBe(true);
      if (!r.found) return;
      expect(r.names).toEqual(b.source());
      console.log(`[status] ${b.label}: ${r.how}: completed=${r.names.indexOf('completed')}, ${r.names.length} values`);
    });
  }

  it('the sources themselves: 5.2 and 7.2 share the 4.2 table, 10.0 has 9.1\'s, 11.1 has 11.0\'s (failing at 11)', () => {
    expect(tableIdMatching(qapiEnum('qemu-5.2.0.MigrationStatus.qapi'))).toBe('4.2');
    expect(tableIdMatching(qapiEnum('qemu-7.2.0.MigrationStatus.qapi'))).toBe('4.2');
    expect(tableIdMatching(qapiEnum('qemu-10.0.2.MigrationStatus.qapi'))).toBe('9.1');
    expect(tableIdMatching(schemaEnum('qemu-11.1.3.MigrationStatus.qmp-schema'))).toBe('11.0');
    expect(STATUS_TABLES['11.0'].map((n, i) => `${n}${i}`).slice(9)).toEqual([
      'postcopy-recover9', 'completed10', 'failing11', 'failed12', 'colo13', 'pre-switchover14', 'device15', 'wait-unplug16',
    ]);
  });
});

describe('a binary without the table', () => {
  it('/bin/true: not found, and why', async () => {
    const r = readStatusLookup(await ElfImage.load('/bin/true'));
    expect(r).toEqual({ found: false, why: '/bin/true has no MigrationStatus_lookup symbol (neither exported nor local)' });
  });

  it('falls back to the version table and says so; with neither, it is refused with both reasons', () => {
    const missing = { found: false as const, why: 'x has no MigrationStatus_lookup symbol' };
    const d = decideStatusNames(missing, '10.0.2');
    expect(d).toMatchObject({ status_table: '9.1', status_names: { source: 'version-table', names: [...STATUS_TABLES['9.1']] } });
    expect('note' in d && d.note).toMatch(/^status names from the version table 9\.1 for QEMU 10\.0\.2: x has no MigrationStatus_lookup symbol$/);
    expect(decideStatusNames(missing, null)).toEqual({ refused: 'x has no MigrationStatus_lookup symbol, and no QEMU version, so nothing names its MigrationStatus values' });
    expect(decideStatusNames(missing, '12.0.0')).toEqual({
      refused: 'x has no MigrationStatus_lookup symbol, and QEMU 12.0.0 is newer than the newest MigrationStatus table (11.x), so nothing names its MigrationStatus values',
    });
  });

  it('names from the binary win over the version, and say when no table has them', () => {
    const odd = ['none', 'setup', 'active', 'completed'];
    const d = decideStatusNames({ found: true, names: odd, symbol: 'MigrationStatus_lookup', address: 0x10, how: 'MigrationStatus_lookup at 0x10' }, '7.2.22');
    expect(d).toMatchObject({ status_table: '4.2', status_names: { source: 'binary', names: odd } });
    expect('note' in d && d.note).toMatch(/setup=1 active=2 completed=3\), unlike every version table \(the nearest for QEMU 7\.2\.22 is 4\.2\)/);
  });
});

describe('version tables and a session\'s own names', () => {
  it('picks the table by version, 11.x included', () => {
    expect(tableIdFor('11.1.3')).toBe('11.0');
    expect(tableIdFor('11.0.0')).toBe('11.0');
    expect(tableIdFor('10.2.2')).toBe('10.2');
    expect(knownTableFor('11.1.3')).toEqual({ id: '11.0' });
    expect(knownTableFor('12.0')).toMatchObject({ why: expect.stringMatching(/newer than the newest/) });
    expect(knownTableFor(null)).toEqual({ why: 'no QEMU version' });
  });

  it('looks names up in a table id or in a list alike', () => {
    const names = STATUS_TABLES['11.0'];
    expect(statusName(11, '11.0')).toBe('failing');
    expect(statusName(11, names)).toBe('failing');
    expect(statusValue('MIGRATION_STATUS_WAIT_UNPLUG', names)).toBe(16);
    expect(statusValue('failing', '4.2')).toBeNull();
  });

  it('a session or profile carries its names and their source; without them its version table named the states', () => {
    const own = { status_table: '4.2' as const, status_names: { source: 'binary' as const, names: ['none', 'setup', 'active'] } };
    expect(statusNamesOf(own)).toEqual(['none', 'setup', 'active']);
    expect(statusSourceOf(own)).toBe('binary');
    expect(statusNamesOf({ status_table: '9.1' })).toBe(STATUS_TABLES['9.1']);
    expect(statusSourceOf({ status_table: '9.1' })).toBe('version-table');
  });
});
