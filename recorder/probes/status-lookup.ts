import type { StatusNames } from '../../trace/schema.js';
import { knownTableFor, STATUS_TABLES, tableIdFor, tableIdMatching, type StatusTableId } from '../../trace/status.js';
import { ElfImage, type ElfSymbol } from './elf-image.js';
import type { Profile } from './profile.js';

/**
 * The names of the MigrationStatus values, read from the binary itself:
 * QAPI generates
 *
 *     const QEnumLookup MigrationStatus_lookup = {
 *         .array = (const char *const[]) { [MIGRATION_STATUS_NONE] = "none", ... },
 *         .size = MIGRATION_STATUS__MAX
 *     };
 *
 * and every Debian build exports it. QEnumLookup is `{ array, size }` (16
 * bytes, QEMU 5.2) or `{ array, special_features, size }` (24 bytes, 6.x
 * on): the symbol's size says which. In a PIE every pointer is relocated,
 * so elf-image.ts resolves them as the loader would.
 *
 * Parts: reading the table, then deciding which names a profile uses (the
 * binary's, the version table's when it has none, or a refusal).
 */

export const STATUS_LOOKUP_SYMBOL = 'MigrationStatus_lookup';

/** MigrationStatus has 14 values in 4.2 and 17 in 11.1; anything far beyond is not this table. */
const MAX_VALUES = 64;
/** QAPI enum member names: lowercase words joined by '-'. */
const MEMBER_NAME = /^[a-z][a-z0-9-]{0,63}$/;

export type StatusLookup =
  | { found: true; names: string[]; symbol: string; address: number; how: string }
  | { found: false; why: string };

/**
 * `symbols`: where to find the table's address; a stripped binary whose
 * symbols live in its separate debug file passes those (the data is the
 * binary's either way).
 */
export function readStatusLookup(img: ElfImage, symbols: ElfSymbol[] = img.symbols()): StatusLookup {
  const sym = lookupSymbol(symbols);
  if (!sym) return { found: false, why: `${img.path} has no ${STATUS_LOOKUP_SYMBOL} symbol (neither exported nor local)` };
  const where = `${STATUS_LOOKUP_SYMBOL} at 0x${sym.value.toString(16)} (${sym.size} bytes, ${sym.table})`;
  const sizeAt = sym.size === 16 ? 8 : sym.size === 24 ? 16 : null;
  if (sizeAt === null) return { found: false, why: `${where}: not a QEnumLookup (16 or 24 bytes)` };
  const body = img.bytes(sym.value, sym.size);
  if (!body) return { found: false, why: `${where}: its bytes are not in the file` };
  const count = body.readInt32LE(sizeAt);
  if (count < 1 || count > MAX_VALUES) return { found: false, why: `${where}: size ${count} is not a MigrationStatus count` };
  const array = img.pointer(sym.value);
  if (array === null || array === 0) return { found: false, why: `${where}: its array pointer cannot be resolved` };
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    const slot = array + i * 8;
    const p = img.pointer(slot);
    const name = p === null ? null : img.cString(p, 65);
    if (name === null || !MEMBER_NAME.test(name)) {
      return { found: false, why: `${where}: entry ${i} (slot 0x${slot.toString(16)}) is not a member name${name === null ? '' : ` (${JSON.stringify(name.slice(0, 40))})`}` };
    }
    names.push(name);
  }
  if (names[0] !== 'none' || !names.includes('active')) {
    return { found: false, why: `${where}: ${names.slice(0, 4).join(', ')}... is not the MigrationStatus table` };
  }
  return { found: true, names, symbol: STATUS_LOOKUP_SYMBOL, address: sym.value, how: `${where}: ${count} names through ${sym.size === 16 ? '{array, size}' : '{array, special_features, size}'}` };
}

function lookupSymbol(symbols: ElfSymbol[]): ElfSymbol | null {
  const candidates = symbols.filter((s) => s.name === STATUS_LOOKUP_SYMBOL && s.kind === 'object');
  return candidates.find((s) => s.table === 'dynsym') ?? candidates[0] ?? null;
}

/* ------------------------------------------------------------------ */
/* Which names a profile uses */

export interface StatusDecision {
  status_table: StatusTableId;
  status_names: StatusNames;
  /** One line for the profile's notes. */
  note: string;
}

/**
 * The binary's own names when it has the table; the version table when it
 * has not but its version has one; otherwise nothing can name the states
 * and the binary is refused with both reasons.
 */
export function decideStatusNames(lookup: StatusLookup, qemuVersion: string | null): StatusDecision | { refused: string } {
  if (lookup.found) {
    const matching = tableIdMatching(lookup.names);
    const table = matching ?? tableIdFor(qemuVersion);
    const landmarks = ['setup', 'active', 'completed'].map((n) => `${n}=${lookup.names.indexOf(n)}`).join(' ');
    const versus = matching
      ? `the same as version table ${matching}`
      : `unlike every version table (the nearest for QEMU ${qemuVersion ?? '?'} is ${table}): the binary's names are the ones used`;
    return {
      status_table: table,
      status_names: { source: 'binary', names: lookup.names },
      note: `status names from the binary: ${lookup.how} (${landmarks}), ${versus}`,
    };
  }
  const known = knownTableFor(qemuVersion);
  if ('why' in known) {
    return { refused: `${lookup.why}, and ${known.why}, so nothing names its MigrationStatus values` };
  }
  return {
    status_table: known.id,
    status_names: { source: 'version-table', names: [...STATUS_TABLES[known.id]] },
    note: `status names from the version table ${known.id} for QEMU ${qemuVersion}: ${lookup.why}`,
  };
}

/**
 * A profile that did not come from discovery (minimig's built-in one, a
 * hand-written --profile) named its states by a version table: read the
 * binary's own table and use that, saying so in the profile's notes. A
 * binary without one keeps the profile's table, and the notes say that too.
 */
export async function withBinaryStatusNames(profile: Profile, binary: string): Promise<Profile> {
  if (profile.status_names?.source === 'binary') return profile;
  let lookup: StatusLookup;
  try {
    lookup = readStatusLookup(await ElfImage.load(binary));
  } catch (e) {
    lookup = { found: false, why: `${binary} could not be read as ELF (${e instanceof Error ? e.message : String(e)})` };
  }
  if (!lookup.found) {
    return { ...profile, notes: [...profile.notes, `status names from the version table ${profile.status_table}: ${lookup.why}`] };
  }
  return {
    ...profile,
    status_table: tableIdMatching(lookup.names) ?? profile.status_table,
    status_names: { source: 'binary', names: lookup.names },
    notes: [...profile.notes, `status names from the binary: ${lookup.how}`],
  };
}
