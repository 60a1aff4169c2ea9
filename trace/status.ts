/**
 * MigrationStatus numbering by QEMU version. The C enum gained values in the
 * middle (9.1, 10.2), so a number means nothing without the version: map by
 * name, store both.
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

export type StatusTableId = '4.2' | '9.1' | '10.2';

export const STATUS_TABLES: Record<StatusTableId, readonly string[]> = {
  '4.2': BASE,
  '9.1': V9_1,
  '10.2': V10_2,
};

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
 * (minimig uses it too); callers that care check `tableIdFor` themselves.
 */
export function tableIdFor(version: string | null | undefined): StatusTableId {
  const v = version ? parseQemuVersion(version) : null;
  if (!v) return '4.2';
  const [major, minor] = v;
  if (major > 10 || (major === 10 && minor >= 2)) return '10.2';
  if (major > 9 || (major === 9 && minor >= 1)) return '9.1';
  return '4.2';
}

export function statusTable(id: StatusTableId): readonly string[] {
  return STATUS_TABLES[id];
}

export function statusName(value: number, id: StatusTableId): string | null {
  return STATUS_TABLES[id][value] ?? null;
}

export function statusValue(name: string, id: StatusTableId): number | null {
  const i = STATUS_TABLES[id].indexOf(normalizeStatusName(name));
  return i < 0 ? null : i;
}

/** "MIGRATION_STATUS_POSTCOPY_ACTIVE" or "postcopy_active" -> "postcopy-active". */
export function normalizeStatusName(name: string): string {
  return name.trim().replace(/^MIGRATION_STATUS_/i, '').toLowerCase().replace(/_/g, '-');
}
