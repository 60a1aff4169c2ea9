import { z } from 'zod';

/**
 * The trace model. Every producer (live recorder, replay, importers) writes
 * these shapes, every consumer (analyzer, reports) reads them; the store
 * validates rows against them on the way in and out.
 */

export const Origin = z.enum(['live', 'replay', 'import:gdb-log', 'import:qemu-trace', 'import:libvirt-log']);
export type Origin = z.infer<typeof Origin>;

export const Variant = z.enum(['unpatched', 'patched', 'unknown']);
export type Variant = z.infer<typeof Variant>;

export const SessionStateSchema = z.enum(['recording', 'complete', 'aborted']);
export type SessionState = z.infer<typeof SessionStateSchema>;

export const StatusTableIdSchema = z.enum(['4.2', '9.1', '10.2', '11.0']);

/**
 * The MigrationStatus names a session's numbers mean (index = C value) and
 * where they came from: `binary`, the target's own MigrationStatus_lookup;
 * `version-table`, trace/status.ts's table for its QEMU version, used when
 * the binary has no lookup table. Absent (imports, sessions from before
 * names were carried): the version table `status_table` named them.
 */
export const StatusNamesSchema = z.object({
  source: z.enum(['binary', 'version-table']),
  names: z.array(z.string().min(1).max(64)).min(1).max(256),
});
export type StatusNames = z.infer<typeof StatusNamesSchema>;

export const TargetSchema = z.object({
  kind: z.enum(['minimig', 'qemu', 'attach', 'import']),
  binary: z.string().nullable(),
  build_id: z.string().nullable(),
  qemu_version: z.string().nullable(),
  variant: Variant,
  /** The MigrationStatus version table of this QEMU version (the one whose names status_names equals, when one does). */
  status_table: StatusTableIdSchema,
  status_names: StatusNamesSchema.optional(),
});
export type Target = z.infer<typeof TargetSchema>;

export const SessionSchema = z.object({
  id: z.number().int().positive(),
  label: z.string(),
  created_at: z.string(),
  origin: Origin,
  target: TargetSchema,
  /** The probe profile used (recorder/probes), or null for imports without one. */
  profile: z.unknown().nullable(),
  state: SessionStateSchema,
  error: z.string().nullable(),
  /** Free-form facts about how the session was made (scenario, schedule, command line, import warnings). */
  meta: z.record(z.string(), z.unknown()),
});
export type Session = z.infer<typeof SessionSchema>;

export const NewSessionSchema = SessionSchema.omit({ id: true, created_at: true, state: true, error: true }).extend({
  created_at: z.string().optional(),
  meta: z.record(z.string(), z.unknown()).default({}),
});
export type NewSession = z.input<typeof NewSessionSchema>;

/**
 * A thread as the session knows it. `tid` is the session-local key events
 * refer to: the gdb thread id for live sessions, a synthetic number for
 * imports that only know an LWP or a name.
 */
export const ThreadSchema = z.object({
  tid: z.number().int(),
  gdb_id: z.number().int().nullable(),
  lwp: z.number().int().nullable(),
  name: z.string().nullable(),
});
export type Thread = z.infer<typeof ThreadSchema>;

/** A state value as seen: the number (null when a source only has names) and its name. */
export const StateValueSchema = z.object({
  value: z.number().int().nullable(),
  name: z.string().nullable(),
});
export type StateValue = z.infer<typeof StateValueSchema>;

const EventBase = z.object({
  seq: z.number().int().nonnegative(),
  /** Monotonic ns since session start; null when an import has no clock. */
  t_ns: z.number().int().nonnegative().nullable(),
  wall: z.string().nullable(),
  thread: z.number().int().nullable(),
  probe: z.string().nullable(),
  pc: z.string().nullable(),
  func: z.string().nullable(),
  file: z.string().nullable(),
  line: z.number().int().nullable(),
});

export const TransitionData = z.object({
  /** Address of the state variable (hex), when known. */
  addr: z.string().nullable(),
  old: StateValueSchema.nullable(),
  new: StateValueSchema,
});
export const ReadData = z.object({ value: StateValueSchema });
export const PublishData = z.object({ value: StateValueSchema });
export const QueryData = z.object({
  /** Correlates query-begin, query-end and reply of one query. */
  query: z.string(),
});
export const ReplyData = z.object({
  query: z.string().nullable(),
  /** 'query-migrate' (QMP) or 'info migrate' (HMP text). */
  command: z.string(),
  status: z.string().nullable(),
  has_ram: z.boolean(),
  body: z.unknown(),
});
export const HoldData = z.object({ role: z.string(), reason: z.string() });
export const NoteData = z.object({ text: z.string() });

export const EventSchema = z.discriminatedUnion('kind', [
  EventBase.extend({ kind: z.literal('transition'), data: TransitionData }),
  EventBase.extend({ kind: z.literal('read'), data: ReadData }),
  EventBase.extend({ kind: z.literal('publish'), data: PublishData }),
  EventBase.extend({ kind: z.literal('query-begin'), data: QueryData }),
  EventBase.extend({ kind: z.literal('query-end'), data: QueryData }),
  EventBase.extend({ kind: z.literal('reply'), data: ReplyData }),
  EventBase.extend({ kind: z.literal('hold'), data: HoldData }),
  EventBase.extend({ kind: z.literal('release'), data: HoldData }),
  EventBase.extend({ kind: z.literal('note'), data: NoteData }),
]);
export type TraceEvent = z.infer<typeof EventSchema>;
export type EventKind = TraceEvent['kind'];
export type EventOf<K extends EventKind> = Extract<TraceEvent, { kind: K }>;

/** An event before the store assigns its seq. */
export type NewEvent = DistributiveOmit<TraceEvent, 'seq'>;
type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;

/** Fill the location fields a producer does not know with null. */
export function blankLocation(): Pick<TraceEvent, 'probe' | 'pc' | 'func' | 'file' | 'line'> {
  return { probe: null, pc: null, func: null, file: null, line: null };
}

/** The portable form of one session (samples, tests, `migrace export`). */
export const SessionExportSchema = z.object({
  format: z.literal('migrace-session'),
  version: z.literal(1),
  session: SessionSchema.omit({ id: true }),
  threads: z.array(ThreadSchema),
  events: z.array(EventSchema),
});
export type SessionExport = z.infer<typeof SessionExportSchema>;
