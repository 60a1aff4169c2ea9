import { z } from 'zod';
import { StatusTableIdSchema, Variant } from '../../trace/schema.js';
import { ExpressionError, parseExpression } from './expr.js';

/**
 * A probe profile says where to stop and what to read, independent of the
 * backend that places it (gdb breakpoints today, uprobes later). Profiles are
 * JSON: cached by build-id, passed by hand with --profile.
 */

export const ProbeRole = z.enum(['transition', 'read', 'publish', 'query']);
export type ProbeRole = z.infer<typeof ProbeRole>;

/** No control characters: a newline in an MI command is a second command. */
const Safe = z.string().min(1).max(512).regex(/^[^\x00-\x1f\x7f]*$/, 'must not contain control characters');

/** A gdb location: `func`, `file.c:LINE`, `*func+OFFSET`, `*0xADDR`. */
export const LocationSchema = Safe.regex(
  /^(\*(0x[0-9a-fA-F]+|[A-Za-z_][\w.]*(\+\d+)?)|[A-Za-z_][\w.]*|[\w./-]+\.[ch]:\d+)$/,
  'must be func, file.c:LINE, *func+OFFSET or *0xADDR',
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

export const ProbeSchema = z.object({
  name: z.string().regex(/^[\w.-]+$/),
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

export const ProfileSchema = z.object({
  format: z.literal('migrace-profile'),
  version: z.literal(1),
  /** symbolic: debug info; exported: exported symbols + ABI; address: *func+OFFSET from disassembly. */
  kind: z.enum(['symbolic', 'exported', 'address']),
  binary: z.string().nullable(),
  build_id: z.string().nullable(),
  qemu_version: z.string().nullable(),
  status_table: StatusTableIdSchema,
  variant: Variant,
  /** Offset of `state` inside MigrationState, when known. */
  state_offset: z.number().int().nonnegative().nullable(),
  /** An expression for the address of the state variable, usable from any stopped thread. */
  state_addr_expr: ExpressionSchema.nullable(),
  probes: z.array(ProbeSchema).min(1),
  notes: z.array(z.string()).default([]),
}).superRefine((p, ctx) => {
  // Without these two roles nothing can be found: no transition, no read.
  for (const role of ['transition', 'read'] as const) {
    if (!p.probes.some((x) => x.role === role)) ctx.addIssue({ code: 'custom', path: ['probes'], message: `needs a ${role} probe` });
  }
});
export type Profile = z.infer<typeof ProfileSchema>;

export function probesOf(profile: Profile, role: ProbeRole): Probe[] {
  return profile.probes.filter((p) => p.role === role);
}
