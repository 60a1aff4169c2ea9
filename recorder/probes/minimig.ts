import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MigraceError } from '../../trace/errors.js';
import { ProfileSchema, type Profile } from './profile.js';

/**
 * The built-in symbolic profile for the bundled target. The read and publish
 * lines are found by their marker comments, so editing minimig.c never
 * silently moves a probe.
 */
export function markerLine(source: string, marker: string, file: string): number {
  const lines = source.split('\n');
  const hits = lines.flatMap((l, i) => (l.includes(`/* migrace:${marker} */`) ? [i + 1] : []));
  if (hits.length !== 1) {
    throw new MigraceError('PROBES', `${file}: expected exactly one "/* migrace:${marker} */" marker, found ${hits.length}`);
  }
  return hits[0];
}

export function minimigProfile(dir: string, binary: string, patched: boolean): Profile {
  const file = join(dir, 'minimig.c');
  let source: string;
  try {
    source = readFileSync(file, 'utf8');
  } catch {
    throw new MigraceError('PROBES', `cannot read ${file} to place the read and publish probes`);
  }
  const read = markerLine(source, 'read', file);
  const publish = markerLine(source, 'publish', file);
  return ProfileSchema.parse({
    format: 'migrace-profile',
    version: 1,
    kind: 'symbolic',
    binary,
    build_id: null,
    qemu_version: null,
    status_table: '4.2',
    variant: patched ? 'patched' : 'unpatched',
    state_offset: null,
    // The writer's transition hit gives the state's address; no inferior calls needed.
    state_addr_expr: null,
    probes: [
      { name: 'transition', role: 'transition', locations: ['migrate_set_state'],
        values: { addr: 'state', old: 'old_state', new: 'new_state' },
        why: 'entry of migrate_set_state: its arguments are the state pointer and the compare-and-swap values' },
      { name: 'read', role: 'read', locations: [`minimig.c:${read}`], values: { value: 'state' },
        why: `the switch line (marker "migrace:read", line ${read}): reached right after the load into the local the switch uses` },
      { name: 'publish', role: 'publish', locations: [`minimig.c:${publish}`], values: { value: 'info->status' },
        why: `the statement after the status store (marker "migrace:publish", line ${publish}): info->status is what was published` },
      { name: 'query', role: 'query', locations: ['qmp_query_migrate'], values: {},
        why: 'entry of qmp_query_migrate: opens the query window' },
    ],
    notes: [],
  });
}
