import type { StateValue } from '../trace/schema.js';

/**
 * What the analyzer says about a session. Reports, diff and the CLI read
 * these; they carry their evidence as event seqs so a reader can check them
 * against the trace.
 */

export type FindingClass = 'manifested' | 'benign' | 'window-only';

export interface ThreadRef {
  tid: number | null;
  name: string | null;
  lwp: number | null;
}

export interface TransitionRef {
  /** The probe hit at migrate_set_state's entry. */
  seq: number;
  /** When the writer was held there: the release after which the swap happened. */
  released_seq?: number | null;
  thread: ThreadRef;
  old: StateValue | null;
  new: StateValue;
}

/** What a reply says and what libvirt does with it. */
export interface Verdict {
  reply_seq: number | null;
  status: string | null;
  has_ram: boolean;
  /** Time fields present in the reply: total-time, setup-time, expected-downtime, downtime. */
  time_fields: string[];
  /** Old libvirt (before it tolerated a missing `ram`). */
  old_libvirt: 'fails' | 'accepts';
  current_libvirt: 'fails' | 'accepts';
  /** The error old libvirt raises, e.g. "migration was active, but no RAM info was set". */
  libvirt_error: string | null;
  /**
   * Fields missing or foreign for the reply's status, compared with the
   * session's undisturbed replies of that status (or QEMU's table): how a
   * race that publishes a consistent status still shows (the 7.2 re-reads).
   * null when the shape is as expected or cannot be judged.
   */
  shape: { against: 'session' | 'qemu'; missing: string[]; foreign: string[] } | null;
  /** One sentence for a human. */
  summary: string;
}

export interface Finding {
  /** Stable within a session: "F1", "F2", ... in order of the read. */
  id: string;
  session_id: number;
  class: FindingClass;
  reader: ThreadRef;
  /** Seq of the read (null for window-only findings). */
  read: { seq: number; value: StateValue } | null;
  /** The transitions by other threads after the read and before the publish (or query end). */
  crossing: TransitionRef[];
  publish: { seq: number; value: StateValue } | null;
  query: { id: string | null; begin_seq: number | null; end_seq: number | null } | null;
  reply: Verdict | null;
  /** Every seq the finding rests on, ascending. */
  evidence: number[];
  /** One sentence: "thread live_migration moved setup -> active between ...". */
  summary: string;
}

export interface Analysis {
  session_id: number;
  findings: Finding[];
  /** Every reply judged, whether or not a finding explains it. */
  replies: Verdict[];
  /** What the analyzer could not judge (missing probes, truncated session). */
  warnings: string[];
}
