import { z } from 'zod';
import { MigraceError } from '../trace/errors.js';
import { zodProblems } from '../trace/zod-problems.js';
import type { StoredHunt, TraceStore } from '../trace/store.js';
import { ProbeSchema } from '../recorder/probes/profile.js';

/**
 * A hunt as the store keeps it and the reports read it: what the hunt
 * learned (baselines, oracle, columns, read points, cross-check) and its
 * cells. The store holds them as JSON; they are checked here on the way
 * back, so a report never renders a row it does not understand.
 *
 * Parts: the cell classes; the schemas of the hunt's data and of a cell;
 * loadHunt(), the one way to read a hunt back.
 */

export const CELL_CLASSES = ['broken', 'consistent', 'infeasible', 'unreachable', 'timeout', 'error'] as const;
export type CellClass = (typeof CELL_CLASSES)[number];

/** The column of a read point's control cell. */
export const CONTROL = 'control';

const StateName = z.string().min(1).max(64);

const TransitionSchema = z.object({
  old: StateName, new: StateName,
  thread: z.object({ tid: z.number().int(), name: z.string().nullable() }),
  after: z.number().int(),
});

export const BaselineSchema = z.object({
  scenario: z.string(),
  description: z.string(),
  status: z.enum(['ok', 'skipped', 'error']),
  reason: z.string().nullable(),
  session_id: z.number().int().nullable(),
  transitions: z.array(TransitionSchema),
  replies: z.number().int(),
  ms: z.number(),
});
export type Baseline = z.infer<typeof BaselineSchema>;

const StatusShapeSchema = z.object({
  status: z.string(), replies: z.number().int(), always: z.array(z.string()), sometimes: z.array(z.string()),
  old_libvirt: z.enum(['accepts', 'fails', 'mixed']), current_libvirt: z.enum(['accepts', 'fails', 'mixed']),
});

export const ColumnSchema = z.object({
  key: z.string(), old: StateName, new: StateName, scenario: z.string(), scenarios: z.array(z.string()),
  thread: z.object({ tid: z.number().int(), name: z.string().nullable() }), after: z.number().int(),
});

export const ReadPointSchema = z.object({
  name: z.string(),
  function: z.string().nullable(),
  offset: z.number().int().nullable(),
  file_pc: z.string().nullable(),
  instruction: z.string().nullable(),
  access: z.enum(['load', 'compare', 'other']).nullable(),
  probe: ProbeSchema,
  found: z.array(z.enum(['static', 'dynamic'])),
  states: z.array(z.string()),
  why: z.string(),
});

const CrossCheckSchema = z.object({ point: z.string(), static: z.boolean(), dynamic: z.boolean(), note: z.string().nullable() });

const TraceRunSchema = z.object({
  state: z.string(), steps: z.number().int(), ms: z.number(), truncated: z.string().nullable(), order: z.array(z.string()),
});

export const HuntDataSchema = z.object({
  format: z.literal('migrace-hunt'),
  version: z.literal(1),
  kind: z.enum(['minimig', 'qemu']),
  build_id: z.string().nullable(),
  options: z.object({
    scenarios: z.array(z.string()), dynamic: z.boolean(), queries: z.number().int(), cell_timeout_ms: z.number().int(),
    /** How the target was started, for the replay command of a broken cell. */
    invocation: z.record(z.string(), z.unknown()).nullable(),
  }),
  baselines: z.array(BaselineSchema).default([]),
  oracle: z.record(z.string(), StatusShapeSchema).default({}),
  columns: z.array(ColumnSchema).default([]),
  rows: z.array(ReadPointSchema).default([]),
  cross_check: z.array(CrossCheckSchema).default([]),
  trace: z.object({ runs: z.array(TraceRunSchema), reads: z.number().int(), exhausted: z.boolean() }).nullable().default(null),
  /** ms spent on the baselines and on the cells, and one plain cell's replay for scale. */
  timing: z.object({ baselines_ms: z.number(), cells_ms: z.number(), total_ms: z.number() }).nullable().default(null),
});
export type HuntData = z.infer<typeof HuntDataSchema>;

export const CellDataSchema = z.object({
  /** The class in a few words: the shape difference, the lock, why it was not reached. */
  note: z.string().nullable(),
  /** The whole reason (the replay's). */
  reason: z.string().nullable(),
  status: z.string().nullable(),
  fields: z.array(z.string()),
  reply: z.unknown(),
  schedule: z.unknown(),
  schedule_file: z.string().nullable(),
  ms: z.number(),
});
export type CellData = z.infer<typeof CellDataSchema>;

export interface HuntCell {
  row: string;
  col: string;
  class: CellClass;
  session_id: number | null;
  data: CellData;
}

export interface HuntView extends Omit<StoredHunt, 'data'> {
  data: HuntData;
  cells: HuntCell[];
}

export function loadHunt(store: TraceStore, id: number): HuntView {
  const h = store.hunt(id);
  const data = HuntDataSchema.safeParse(h.data);
  if (!data.success) {
    throw new MigraceError('DB_FOREIGN', `hunt ${id} in ${store.path} is not a hunt this migrace can read: ${zodProblems(data.error)}`);
  }
  const cells: HuntCell[] = [];
  for (const c of store.huntCells(id)) {
    const cd = CellDataSchema.safeParse(c.data);
    if (!cd.success || !(CELL_CLASSES as readonly string[]).includes(c.class)) {
      throw new MigraceError('DB_FOREIGN', `cell ${c.row} x ${c.col} of hunt ${id} in ${store.path} is malformed`);
    }
    cells.push({ row: c.row, col: c.col, class: c.class as CellClass, session_id: c.session_id, data: cd.data });
  }
  return { ...h, data: data.data, cells };
}

/** The matrix as it compares across hunts: class and note per cell, in row and column order. */
export function matrixKey(h: HuntView): string[] {
  const out: string[] = [];
  for (const r of h.data.rows) {
    for (const col of [...h.data.columns.map((c) => c.key), CONTROL]) {
      const c = h.cells.find((x) => x.row === r.name && x.col === col);
      out.push(`${r.name} x ${col}: ${c ? `${c.class}${c.data.note ? ` (${c.data.note})` : ''}` : 'not run'}`);
    }
  }
  return out;
}
