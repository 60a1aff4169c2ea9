import { findInterleavings } from '../../analyzer/interleavings.js';
import type { Analysis } from '../../analyzer/types.js';
import type { ImportedLog } from '../../recorder/import/merge.js';
import type { Origin, Session, TraceEvent, Variant } from '../../trace/schema.js';
import { tableIdFor } from '../../trace/status.js';

/** Run the analyzer over an import as if it were stored: seqs in event order. */
export function analyzeImport(log: ImportedLog & { variant?: Variant }, origin: Origin = 'import:gdb-log'): Analysis {
  const session: Session = {
    id: 1, label: 'x', created_at: '', origin, profile: null, state: 'complete', error: null, meta: {},
    target: {
      kind: 'import', binary: null, build_id: null, qemu_version: log.qemuVersion, variant: log.variant ?? 'unknown',
      status_table: tableIdFor(log.qemuVersion),
    },
  };
  return findInterleavings(session, log.threads, log.events.map((e, seq) => ({ ...e, seq })) as TraceEvent[]);
}
