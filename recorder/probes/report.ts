import { resolve } from 'node:path';
import { statusNamesOf, statusSourceOf } from '../../trace/status.js';
import { discoverProfile, loadProfileFile, type DiscoverOptions, type DiscoveryResult } from './discover.js';
import { readElfInfo, type ElfInfo } from './elf.js';
import type { Profile } from './profile.js';

/**
 * What `migrace probes BINARY` prints: enough for a maintainer to check
 * every probe against `gdb -batch -ex 'disassemble qmp_query_migrate'`
 * by hand, and the same as JSON for scripts: the facts, the probes record
 * places, the read points it does not (for the hunt), and the findings.
 */

export interface ProbesOptions extends DiscoverOptions {
  /** A profile written by hand: shown (and checked against the binary's build-id) instead of discovering one. */
  profile?: string;
}

export interface ProbesJson {
  binary: string;
  build_id: string | null;
  debug_info: 'embedded' | 'separate' | 'none';
  qemu_version: string | null;
  status_table: Profile['status_table'];
  /** Where the state names came from: the binary's MigrationStatus_lookup, or the version table. */
  status_source: 'binary' | 'version-table';
  /** Index = the C value. */
  status_names: readonly string[];
  variant: Profile['variant'];
  variant_why: string | null;
  state_offset: number | null;
  state_addr_expr: string | null;
  kind: Profile['kind'];
  source: 'discovered' | 'cache' | 'file';
  cache_file: string | null;
  ms: number;
  probes: Profile['probes'];
  /** Every read of the state on the query path; record places none of them. */
  read_points: Profile['read_points'];
  report: string[];
  profile: Profile;
}

function debugInfo(elf: ElfInfo): ProbesJson['debug_info'] {
  return elf.hasDebugInfo ? 'embedded' : elf.separateDebugFile ? 'separate' : 'none';
}

function noteAfter(profile: Profile, prefix: string): string | null {
  const n = profile.notes.find((x) => x.startsWith(prefix));
  return n ? n.slice(prefix.length) : null;
}

export function probesJson(result: DiscoveryResult, source: ProbesJson['source']): ProbesJson {
  const p = result.profile;
  const variantNote = noteAfter(p, `variant: ${p.variant}: `);
  return {
    binary: result.elf.path,
    build_id: result.elf.buildId,
    debug_info: debugInfo(result.elf),
    qemu_version: p.qemu_version,
    status_table: p.status_table,
    status_source: statusSourceOf(p),
    status_names: statusNamesOf(p),
    variant: p.variant,
    variant_why: variantNote,
    state_offset: p.state_offset,
    state_addr_expr: p.state_addr_expr,
    kind: p.kind,
    source,
    cache_file: result.cacheFile,
    ms: Math.round(result.ms * 10) / 10,
    probes: p.probes,
    read_points: p.read_points,
    report: result.report,
    profile: p,
  };
}

function padColumn(s: string, n: number): string {
  return s.length >= n ? `${s} ` : s + ' '.repeat(n - s.length);
}

export function probesText(j: ProbesJson): string {
  const out: string[] = [];
  const mark = (name: string): string => `${name}=${j.status_names.indexOf(name)}`;
  const field = (k: string, v: string): void => {
    out.push(`  ${padColumn(k, 16)}${v}`);
  };
  out.push(`migrace probes ${j.binary}`);
  field('build-id', j.build_id ?? 'none');
  field('debug info', j.debug_info === 'embedded' ? 'in the file' : j.debug_info === 'separate' ? 'separate debug file' : 'none (stripped)');
  field('QEMU version', j.qemu_version ?? 'unknown (not a QEMU emulator, or it printed no version)');
  const source = j.status_source === 'binary' ? 'from the binary (MigrationStatus_lookup)' : `version table ${j.status_table}`;
  field('status names', `${source}: ${['setup', 'active', 'completed'].map(mark).join(' ')} (${j.status_names.length} values)`);
  field('variant', j.variant_why ? `${j.variant}: ${j.variant_why}` : j.variant);
  field('state offset', j.state_offset === null ? 'unknown: take it from the first migrate_set_state hit ($rdi - (long)migrate_get_current())' : `0x${j.state_offset.toString(16)}`);
  field('state address', j.state_addr_expr ?? 'from the first migrate_set_state hit ($rdi)');
  const how = j.source === 'cache' ? `cached profile ${j.cache_file}` : j.source === 'file' ? 'profile file given by hand' : `discovered${j.cache_file ? `, cached as ${j.cache_file}` : ''}`;
  field('profile', `${j.kind}, ${how} (${j.ms.toFixed(0)} ms)`);
  out.push('');
  out.push('probes');
  for (const p of j.probes) {
    const values = Object.entries(p.values).map(([k, v]) => `${k}=${v}`).join(' ');
    out.push(`  ${padColumn(p.name === p.role ? p.name : `${p.name} (${p.role})`, 21)}${p.locations[0]}`);
    for (const loc of p.locations.slice(1)) out.push(`  ${' '.repeat(21)}${loc}`);
    if (values) out.push(`  ${' '.repeat(21)}values: ${values}`);
    for (const why of p.why.split(' | ').filter(Boolean)) out.push(`  ${' '.repeat(21)}why: ${why}`);
  }
  out.push('');
  out.push(`read points (${j.read_points.length}; listed for the hunt, record places none of them)`);
  for (const r of j.read_points) {
    out.push(`  ${padColumn(r.name, 31)}${padColumn(r.pc, 11)}${r.access.padEnd(8)}${r.instruction}`);
    out.push(`  ${' '.repeat(31)}stop ${r.location}${r.value ? `, value ${r.value}` : ''}; via ${r.via.join(' > ')}`);
    if (r.source) out.push(`  ${' '.repeat(31)}source ${r.source}`);
  }
  out.push('');
  out.push('findings');
  for (const line of j.report) out.push(`  - ${line}`);
  return `${out.join('\n')}\n`;
}

export async function probesCommandOutput(binary: string, opts: ProbesOptions = {}): Promise<{ text: string; json: ProbesJson }> {
  let result: DiscoveryResult;
  let source: ProbesJson['source'];
  if (opts.profile) {
    const started = performance.now();
    const elf = await readElfInfo(resolve(binary));
    const profile = loadProfileFile(opts.profile);
    const report = [`profile given by hand: ${resolve(opts.profile)}`];
    if (profile.build_id && elf.buildId && profile.build_id !== elf.buildId) {
      report.push(`warning: the profile is for build-id ${profile.build_id}, the binary is ${elf.buildId}; its addresses may be wrong for this binary`);
    }
    report.push(...profile.notes);
    result = { profile, report, cached: false, ms: performance.now() - started, cacheFile: null, elf };
    source = 'file';
  } else {
    result = await discoverProfile(binary, opts);
    source = result.cached ? 'cache' : 'discovered';
  }
  const json = probesJson(result, source);
  return { text: probesText(json), json };
}
