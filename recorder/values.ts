import { normalizeStatusName, statusName, statusValue, type StatusTable } from '../trace/status.js';
import type { StateValue } from '../trace/schema.js';

/**
 * gdb prints values in many shapes: `4`, `-1`, `MIGRATION_STATUS_ACTIVE`,
 * `(int *) 0x55d0c0a8 <current_migration+568>`, `0x7ffd1234`. These turn the
 * printed text into what the trace stores.
 */

/**
 * The address in a printed pointer, as lower-case hex. A register such as
 * `$rdi` prints as a plain (possibly negative) decimal integer.
 */
export function parseAddress(text: string): string | null {
  const t = text.trim();
  if (/^-?\d+$/.test(t)) {
    const n = BigInt.asUintN(64, BigInt(t));
    return n === 0n ? null : `0x${n.toString(16)}`;
  }
  const m = /0x[0-9a-fA-F]+/.exec(t);
  return m ? `0x${m[0].slice(2).toLowerCase().replace(/^0+(?=.)/, '')}` : null;
}

/** A printed integer (decimal or hex), or null. */
export function parseInteger(text: string): number | null {
  const t = text.trim();
  if (/^-?\d+$/.test(t)) return Number(t);
  if (/^0x[0-9a-fA-F]+$/.test(t)) return Number.parseInt(t.slice(2), 16);
  return null;
}

/**
 * A state as printed: a number (registers give unsigned 32-bit values for
 * negative ints, but states are small) or an enum name (QEMU 10 types the
 * arguments as MigrationStatus).
 */
export function parseStateValue(text: string, table: StatusTable): StateValue {
  const n = parseInteger(text);
  if (n !== null) return { value: n, name: statusName(n, table) };
  const name = normalizeStatusName(text.replace(/^\(.*?\)\s*/, ''));
  const value = statusValue(name, table);
  return { value, name: value === null ? null : name };
}
