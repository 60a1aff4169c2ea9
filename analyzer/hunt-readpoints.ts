import { MigraceError } from '../trace/errors.js';
import { ProbeSchema, readPointProbe, type Probe, type Profile } from '../recorder/probes/profile.js';
import type { PlacedBreakpoint, TracedRead, TraceRun } from '../recorder/read-trace.js';

/**
 * The rows of a hunt: every read of the migration state on the query path,
 * from the profile (static, found in the disassembly) and from single-stepped
 * queries (dynamic, recorder/read-trace.ts), merged and cross-checked.
 *
 * Parts, in order:
 * - staticReadPoints(): the profile's `read_points` (discovery's static
 *   list: every load or compare of the state offset on the query path), or,
 *   for a profile without them (written by hand, or minimig's own), its
 *   `read` probes, one read point each;
 * - mergeReadPoints(): the dynamic reads joined to the static points they
 *   are (same instruction) or that sit right after them (a probe placed a
 *   few instructions after the load, as minimig's line probe is), the rest
 *   added as dynamic-only rows, in the order the queries execute them, and
 *   the cross-check that says where the two lists differ and why.
 */

export type Found = 'static' | 'dynamic';

export interface HuntReadPoint {
  /** Its name in the matrix and in schedules (`read`, `qmp_query_migrate+125`). */
  name: string;
  function: string | null;
  /** Of the reading instruction, from the function's start, when known. */
  offset: number | null;
  /** The binary's own address of the reading instruction, when known. */
  file_pc: string | null;
  instruction: string | null;
  access: 'load' | 'compare' | 'other' | null;
  /** Where the reader is held and what it read: a `read` probe. */
  probe: Probe;
  found: Found[];
  /** States whose traced queries executed it (dynamic). */
  states: string[];
  why: string;
}

function functionOfLocation(location: string): string | null {
  const m = /^\*([A-Za-z_][\w.]*)[+-]\d+$/.exec(location) ?? /^([A-Za-z_][\w.]*)$/.exec(location);
  return m ? m[1] : null;
}

/** The static read points of a profile; a profile without any names what is missing. */
export function staticReadPoints(profile: Profile): HuntReadPoint[] {
  const points: HuntReadPoint[] = [];
  for (const r of profile.read_points) {
    // A read whose value cannot be named after it cannot be held "when it read old".
    const probe = readPointProbe(profile, r.name);
    if (!probe) continue;
    points.push({
      name: r.name, function: r.function, offset: r.offset, file_pc: r.pc, instruction: r.instruction,
      access: r.access, probe, found: ['static'], states: [], why: r.why,
    });
  }
  if (points.length > 0) return points;
  const reads = profile.probes.filter((p) => p.role === 'read');
  if (reads.length === 0) {
    throw new MigraceError('PROBES', `the profile${profile.binary ? ` of ${profile.binary}` : ''} has no read point: no read_points list and no read probe (migrace probes shows what discovery found)`);
  }
  return reads.map((p) => ({
    name: p.name, function: functionOfLocation(p.locations[0] ?? ''), offset: null, file_pc: null, instruction: null, access: null,
    probe: p, found: ['static'], states: [], why: p.why,
  }));
}

export interface CrossCheck {
  point: string;
  static: boolean;
  dynamic: boolean;
  /** Why the lists differ here; null where they agree. */
  note: string | null;
}

export interface MergedReadPoints {
  points: HuntReadPoint[];
  crossCheck: CrossCheck[];
}

/** A dynamic read as a read probe, named `function+offset` as discovery names its read points; null when its value cannot be named. */
function probeOfRead(r: TracedRead): Probe | null {
  if (r.value === null) return null;
  const parsed = ProbeSchema.safeParse({
    name: `${r.function}+${r.offset}`, role: 'read', locations: [r.location], values: { value: r.value },
    why: `found by single-stepping queries in ${r.states.join(', ')}: ${r.instruction} reads the state (${r.access}); held at the next instruction, the value it read is ${r.value}`,
  });
  return parsed.success ? parsed.data : null;
}

/** The runtime addresses gdb placed a probe at (its breakpoint's locations). */
function addressesOf(probe: Probe, placed: readonly PlacedBreakpoint[]): string[] {
  const norm = (a: string): string => `0x${BigInt(a).toString(16)}`;
  const out: string[] = [];
  for (const loc of probe.locations) {
    for (const b of placed) {
      if (b.location === loc || (b.location !== null && !loc.startsWith('*') && b.location.endsWith(`/${loc}`))) out.push(...b.addrs.map(norm));
    }
  }
  return out;
}

/**
 * Queries execute reads in an order; a state's query may skip some. The
 * longest trace gives the order, the others slot their reads in after the
 * read they follow.
 */
function executionOrder(runs: ReadonlyArray<{ order: string[] }>): string[] {
  const sorted = [...runs].sort((a, b) => b.order.length - a.order.length);
  const out: string[] = [];
  for (const run of sorted) {
    let at = -1;
    for (const pc of run.order) {
      const i = out.indexOf(pc);
      if (i >= 0) at = i;
      else out.splice(++at, 0, pc);
    }
  }
  return out;
}

export function mergeReadPoints(
  statics: readonly HuntReadPoint[], reads: readonly TracedRead[], runs: readonly TraceRun[],
  placed: readonly PlacedBreakpoint[],
): MergedReadPoints {
  const order = executionOrder(runs);
  const rank = (r: TracedRead): number => {
    const i = order.indexOf(r.pc);
    return i < 0 ? order.length : i;
  };
  const sortedReads = [...reads].sort((a, b) => rank(a) - rank(b) || a.pc.localeCompare(b.pc));
  const points: HuntReadPoint[] = [];
  const crossCheck: CrossCheck[] = [];
  const traced = [...new Set(runs.map((r) => r.state))];
  const truncated = runs.filter((r) => r.truncated).map((r) => `${r.state} (${r.truncated})`);

  const staticMatch = new Map<HuntReadPoint, TracedRead>();
  for (const p of statics) {
    let hit: TracedRead | undefined;
    if (p.file_pc) hit = reads.find((r) => r.file_pc === p.file_pc);
    if (!hit) {
      const at = addressesOf(p.probe, placed);
      // The probe stops right after the read, or a few instructions later on a straight line.
      hit = reads.find((r) => at.includes(r.next_pc)) ?? reads.find((r) => r.following.some((pc) => at.includes(pc)));
    }
    if (hit) staticMatch.set(p, hit);
  }
  for (const r of sortedReads) {
    const s = [...staticMatch].find(([, hit]) => hit === r)?.[0];
    if (s) {
      const merged: HuntReadPoint = {
        ...s, function: s.function ?? r.function, offset: s.offset ?? r.offset, file_pc: s.file_pc ?? r.file_pc,
        instruction: s.instruction ?? r.instruction, access: s.access ?? r.access, found: ['static', 'dynamic'], states: r.states,
      };
      points.push(merged);
      const exact = s.file_pc === r.file_pc || s.probe.locations.includes(r.location);
      crossCheck.push({
        point: s.name, static: true, dynamic: true,
        note: exact ? null : `the static probe ${s.probe.locations.join(', ')} stops a few instructions after the read ${r.instruction} at ${r.function}+${r.offset} (the line after the load), with nothing else reading the state in between`,
      });
      continue;
    }
    const probe = probeOfRead(r);
    if (!probe) {
      crossCheck.push({ point: `${r.function}+${r.offset}`, static: false, dynamic: true, note: `read dynamically (${r.instruction}), but the value it read cannot be named after it (no register holds it): not a row` });
      continue;
    }
    const p: HuntReadPoint = {
      name: probe.name, function: r.function, offset: r.offset, file_pc: r.file_pc, instruction: r.instruction, access: r.access,
      probe, found: ['dynamic'], states: r.states, why: probe.why,
    };
    points.push(p);
    crossCheck.push({ point: p.name, static: false, dynamic: true, note: `not in the static list: ${r.instruction} at ${r.function}+${r.offset} (depth ${r.depth} below qmp_query_migrate) was executed by the query in ${r.states.join(', ')}` });
  }
  for (const p of statics) {
    if (staticMatch.has(p)) continue;
    points.push(p);
    const why = traced.length === 0
      ? 'no query was traced'
      : `never executed by the traced queries (in ${traced.join(', ')})${truncated.length ? `; traces cut short: ${truncated.join(', ')}` : ''}: a branch those states do not take, or below the trace's depth`;
    crossCheck.push({ point: p.name, static: true, dynamic: false, note: why });
  }
  return { points, crossCheck };
}

/** Without a dynamic trace, the static list is the matrix and is not cross-checked. */
export function staticOnly(statics: readonly HuntReadPoint[]): MergedReadPoints {
  return { points: [...statics], crossCheck: [] };
}
