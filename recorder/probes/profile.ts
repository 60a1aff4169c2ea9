import { z } from 'zod';
import { StatusNamesSchema, StatusTableIdSchema, Variant } from '../../trace/schema.js';
import { ExpressionError, parseExpression } from './expr.js';

/**
 * A probe profile says where to stop and what to read, independent of the
 * backend that places it (gdb breakpoints today, uprobes later). Profiles are
 * JSON: cached by build-id, passed by hand with --profile.
 *
 * Parts: roles and the values each needs, locations and expressions (what
 * may reach gdb), a probe, a read point (listed for the hunt, never placed
 * by record), the profile, and helpers over it.
 */

export const ProbeRole = z.enum(['transition', 'read', 'publish', 'query']);
export type ProbeRole = z.infer<typeof ProbeRole>;

/** No control characters: a newline in an MI command is a second command. */
const Safe = z.string().min(1).max(512).regex(/^[^\x00-\x1f\x7f]*$/, 'must not contain control characters');

/**
 * A gdb location: `func`, `file.c:LINE`, `*func+OFFSET`, `*func-OFFSET`
 * (code of a stripped build's local function, placed from an exported one),
 * `*0xADDR`.
 */
export const LocationSchema = Safe.regex(
  /^(\*(0x[0-9a-fA-F]+|[A-Za-z_][\w.]*([+-]\d+)?)|[A-Za-z_][\w.]*|[\w./-]+\.[ch]:\d+)$/,
  'must be func, file.c:LINE, *func+OFFSET, *func-OFFSET or *0xADDR',
);

/**
 * An expression gdb evaluates in the stopped thread on every hit: registers,
 * names, casts and member access, parsed by a grammar with no call or
 * assignment in it (expr.ts), so no profile can run target code or change
 * the target.
 */
export const ExpressionSchema = Safe.superRefine((e, ctx) => {
  try {
    parseExpression(e);
  } catch (err) {
    if (!(err instanceof ExpressionError)) throw err;
    ctx.addIssue({ code: 'custom', message: `not an allowed expression: ${err.message}` });
  }
});

/** The values each role's events are made of. */
const REQUIRED_VALUES: Record<z.infer<typeof ProbeRole>, string[]> = {
  transition: ['old', 'new'],
  read: ['value'],
  publish: ['value'],
  query: [],
};

/** Probe and read-point names: `read`, `publish-eax`, `qmp_query_migrate+117`. */
const NameSchema = z.string().min(1).max(128).regex(/^[\w.+-]+$/, 'may only use letters, digits, _, ., + and -');

export const ProbeSchema = z.object({
  name: NameSchema,
  role: ProbeRole,
  /** Every location the probe is placed at (a line can have several code copies). */
  locations: z.array(LocationSchema).min(1),
  /**
   * Expressions evaluated when the probe hits. transition: `addr`, `old`, `new`;
   * read / publish: `value`; query: none.
   */
  values: z.record(z.string().regex(/^\w+$/), ExpressionSchema),
  /** Why this placement was chosen (shown by `migrace probes`). */
  why: z.string().default(''),
}).superRefine((p, ctx) => {
  for (const key of REQUIRED_VALUES[p.role]) {
    if (!(key in p.values)) ctx.addIssue({ code: 'custom', path: ['values', key], message: `a ${p.role} probe needs the value "${key}"` });
  }
});
export type Probe = z.infer<typeof ProbeSchema>;

const Hex = z.string().regex(/^0x[0-9a-f]+$/, 'must be lower-case hex (0x...)');

/**
 * An instruction that reads MigrationState.state on the query path. Record
 * places only `probes`; read points are for the hunt, which binds a role to
 * one by name (readPointProbe). Addresses are the binary's own (link-time):
 * for a PIE add the load base before comparing with a live pc.
 */
export const ReadPointSchema = z.object({
  name: NameSchema,
  /** The function the instruction is in: its symbol, or `sub_HEX` where a stripped build has none. */
  function: z.string().min(1).max(256),
  /** Of the instruction, from the function's start. */
  offset: z.number().int().nonnegative(),
  pc: Hex,
  /** The instruction after it: where the probe stops, right after the read. */
  next_pc: Hex,
  instruction: z.string().min(1).max(256),
  access: z.enum(['load', 'compare', 'other']),
  /** Where to stop right after the read. */
  location: LocationSchema,
  /** The value it read, evaluated at `location` while the writer is held. */
  value: ExpressionSchema.nullable(),
  /** Calls from qmp_query_migrate down to `function`. */
  via: z.array(z.string()).min(1),
  /**
   * How it was found: `static`, in the disassembly, is the only kind
   * discovery writes (the hunt's single-stepped reads are `dynamic` in the
   * hunt's own data: analyzer/hunt-record.ts). `watchpoint` is still
   * accepted so that a profile written against the first version of this
   * schema stays readable; nothing in migrace ever wrote it (hardware
   * watchpoints do not trigger here: docs/qemu-facts.md), and it only shows
   * in the read point's `why`.
   */
  found: z.array(z.enum(['static', 'watchpoint'])).min(1),
  /** Source line and inlined function, from debug info, when there is any. */
  source: z.string().nullable().default(null),
  why: z.string().default(''),
});
export type ReadPoint = z.infer<typeof ReadPointSchema>;

export const ProfileSchema = z.object({
  format: z.literal('migrace-profile'),
  version: z.literal(1),
  /** symbolic: debug info; exported: exported symbols + ABI; address: *func+OFFSET from disassembly. */
  kind: z.enum(['symbolic', 'exported', 'address']),
  binary: z.string().nullable(),
  build_id: z.string().nullable(),
  qemu_version: z.string().nullable(),
  status_table: StatusTableIdSchema,
  /** The names the states have in this binary and where they came from; absent: the version table status_table. */
  status_names: StatusNamesSchema.optional(),
  variant: Variant,
  /** Offset of `state` inside MigrationState, when known. */
  state_offset: z.number().int().nonnegative().nullable(),
  /** An expression for the address of the state variable, usable from any stopped thread. */
  state_addr_expr: ExpressionSchema.nullable(),
  probes: z.array(ProbeSchema).min(1),
  /** Every read of the state on the query path (see ReadPointSchema); not placed by record. */
  read_points: z.array(ReadPointSchema).default([]),
  notes: z.array(z.string()).default([]),
}).superRefine((p, ctx) => {
  // Without these two roles nothing can be found: no transition, no read.
  for (const role of ['transition', 'read'] as const) {
    if (!p.probes.some((x) => x.role === role)) ctx.addIssue({ code: 'custom', path: ['probes'], message: `needs a ${role} probe` });
  }
  const names = new Set<string>();
  p.read_points.forEach((r, i) => {
    if (names.has(r.name)) ctx.addIssue({ code: 'custom', path: ['read_points', i, 'name'], message: `"${r.name}" names two read points` });
    names.add(r.name);
  });
});
export type Profile = z.infer<typeof ProfileSchema>;

/**
 * A read point as a `read` probe: what a hunt places to hold the reader
 * right after that one read. Null when the value it read cannot be named.
 */
export function readPointProbe(profile: Profile, name: string): Probe | null {
  const r = profile.read_points.find((x) => x.name === name);
  if (!r || r.value === null) return null;
  return ProbeSchema.parse({
    name: r.name, role: 'read', locations: [r.location], values: { value: r.value },
    why: `read point ${r.name} (${r.found.join(', ')}): ${r.why}`,
  });
}
