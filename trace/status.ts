/**
 * MigrationStatus: numbers and names. The C enum gained values in the
 * middle (9.1, 10.2, 11.0), so a number means nothing without the names of
 * the build that produced it: map by name, store both.
 *
 * Parts, in order:
 * - the version tables, for imports that have no binary (a live target's
 *   own names come from its MigrationStatus_lookup, read by
 *   recorder/probes/status-lookup.ts, and travel in `status_names`);
 * - which table a QEMU version uses, and whether that is known at all;
 * - lookups that take a table id or a session's own names alike;
 * - the names a session or profile used, and where they came from.
 */
const BASE = [
  'none', 'setup', 'cancelling', 'cancelled', 'active', 'postcopy-active',
  'postcopy-paused', 'postcopy-recover', 'completed', 'failed', 'colo',
  'pre-switchover', 'device', 'wait-unplug',
] as const;

function insertAt(list: readonly string[], index: number, name: string): string[] {
  return [...list.slice(0, index), name, ...list.slice(index)];
}

const V9_1 = insertAt(BASE, 7, 'postcopy-recover-setup');
const V10_2 = insertAt(V9_1, 5, 'postcopy-device');
/** `failing` (since 11.0) sits between completed and failed: completed 10, failing 11, failed 12. */
const V11_0 = insertAt(V10_2, V10_2.indexOf('failed'), 'failing');

export type StatusTableId = '4.2' | '9.1' | '10.2' | '11.0';

export const STATUS_TABLES: Record<StatusTableId, readonly string[]> = {
  '4.2': BASE,
  '9.1': V9_1,
  '10.2': V10_2,
  '11.0': V11_0,
};

/** The newest major version a table is known for; later ones may have moved again. */
const NEWEST_KNOWN_MAJOR = 11;

/** Statuses for which old libvirt insists on a `ram` object in the reply. */
export const RAM_REQUIRED_BY_OLD_LIBVIRT: ReadonlySet<string> = new Set([
  'active', 'postcopy-active', 'completed', 'cancelling',
]);

/** Parse "7.2.22", "QEMU emulator version 5.2.0 (Debian ...)", "10.0.3" into [major, minor]. */
export function parseQemuVersion(text: string): [number, number] | null {
  const m = /(\d+)\.(\d+)(?:\.\d+)?/.exec(text);
  if (!m) return null;
  return [Number(m[1]), Number(m[2])];
}

/**
 * The table for a QEMU version. Unknown or absent versions get the 4.2 table
 * (minimig uses it too); callers that care ask `knownTableFor`.
 */
export function tableIdFor(version: string | null | undefined): StatusTableId {
  const v = version ? parseQemuVersion(version) : null;
  if (!v) return '4.2';
  const [major, minor] = v;
  if (major >= 11) return '11.0';
  if (major > 10 || (major === 10 && minor >= 2)) return '10.2';
  if (major > 9 || (major === 9 && minor >= 1)) return '9.1';
  return '4.2';
}

/** The table of a version that has one for certain, or why there is none. */
export function knownTableFor(version: string | null | undefined): { id: StatusTableId } | { why: string } {
  const v = version ? parseQemuVersion(version) : null;
  if (!v) return { why: version ? `"${version}" is not a QEMU version` : 'no QEMU version' };
  if (v[0] > NEWEST_KNOWN_MAJOR) return { why: `QEMU ${version} is newer than the newest MigrationStatus table (${NEWEST_KNOWN_MAJOR}.x)` };
  return { id: tableIdFor(version) };
}

/** A version table by id, or a session's own names (index = C value). */
export type StatusTable = StatusTableId | readonly string[];

export function statusTable(table: StatusTable): readonly string[] {
  return typeof table === 'string' ? STATUS_TABLES[table] : table;
}

export function statusName(value: number, table: StatusTable): string | null {
  return statusTable(table)[value] ?? null;
}

export function statusValue(name: string, table: StatusTable): number | null {
  const i = statusTable(table).indexOf(normalizeStatusName(name));
  return i < 0 ? null : i;
}

/** "MIGRATION_STATUS_POSTCOPY_ACTIVE" or "postcopy_active" -> "postcopy-active". */
export function normalizeStatusName(name: string): string {
  return name.trim().replace(/^MIGRATION_STATUS_/i, '').toLowerCase().replace(/_/g, '-');
}

/** The version table whose names are exactly these, if one is. */
export function tableIdMatching(names: readonly string[]): StatusTableId | null {
  const ids = Object.keys(STATUS_TABLES) as StatusTableId[];
  return ids.find((id) => STATUS_TABLES[id].length === names.length && STATUS_TABLES[id].every((n, i) => n === names[i])) ?? null;
}

/** Where a session's or profile's state names came from (trace/schema.ts StatusNamesSchema). */
export interface StatusNamesOf {
  status_table: StatusTableId;
  status_names?: { source: 'binary' | 'version-table'; names: string[] };
}

/** The names a session or profile used: its own when it carries them, else its version table. */
export function statusNamesOf(t: StatusNamesOf): readonly string[] {
  return t.status_names?.names ?? STATUS_TABLES[t.status_table];
}

/** Which source named the states: the binary's own table, or the version table (also for sessions from before names were carried). */
export function statusSourceOf(t: StatusNamesOf): 'binary' | 'version-table' {
  return t.status_names?.source ?? 'version-table';
}
