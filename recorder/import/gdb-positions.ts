import { normalizeStatusName } from '../../trace/status.js';

/*
 * Where in fill_source_migration_info() a stop is, and what a `p` printed.
 * The GDB importer's finalize step (gdb-stops.ts) reads a transcript by
 * meaning with these two answers: a stop inside a branch of the switch on
 * the state is a read of that branch's value, a stop at or after the status
 * store is the publish, and a print is either the value the code loaded, the
 * state field itself (evidence of what the state is, not a read), the output
 * field, or a name lookup.
 *
 * Positions come, best first, from:
 *  1. the address probes of stripped Debian builds (offsets into
 *     qmp_query_migrate, read in their disassembly: docs/qemu-facts.md and
 *     test/fixtures/disasm/);
 *  2. the source text the transcript shows: the line gdb echoes at a stop,
 *     and `list` output around it (the nearest `case` above the stop's line);
 *  3. the line numbers of migration/migration.c in QEMU releases whose
 *     source was read (5.2.0), or derived from it (6.2.0: see below), when
 *     the transcript or the user says which release it is;
 *  4. nothing: 'unknown'. The caller then falls back on what was printed.
 */

export type Position =
  /** After the switch's load, before the branch: the value is in a local or a register. */
  | { kind: 'loaded'; how: string; register: string | null }
  /** Inside the branch of these statuses. */
  | { kind: 'branch'; statuses: string[]; how: string }
  /** At the status store, before it runs: `reads` is what it stores. */
  | { kind: 'store'; reads: 'field' | 'local' | 'register'; register: string | null; how: string }
  /** After the status store: info->status holds what was published. */
  | { kind: 'after-store'; how: string }
  /** At `switch (s->state)`: the state is not loaded yet. */
  | { kind: 'before-load'; how: string }
  | { kind: 'unknown' };

/* ------------------------------------------------------------------------ */
/* 1. Stripped Debian builds, by offset into qmp_query_migrate */

interface OffsetBuild {
  build: string;
  /** Offsets right after the switch's load, and the register that holds the value from there on. */
  loaded: { at: number[]; register: string };
  /** The status stores `mov REG,0x4(...)`, each storing that register. */
  stores: { at: number[]; register: string };
  branches: { from: number; to: number; statuses: string[] }[];
}

const OFFSET_BUILDS: readonly OffsetBuild[] = [
  {
    // Unpatched: `mov 0x238(%rbx),%eax` at +117; every store is preceded by a re-read into %eax.
    build: 'Debian QEMU 5.2 (1:5.2+dfsg-11+deb11u3)',
    loaded: { at: [123], register: 'eax' },
    stores: { at: [187, 457, 636], register: 'eax' },
    // +440 has_status = true, +445 has_total_time = false (the SETUP case of 5.2.0's source), +451 the re-read.
    branches: [{ from: 440, to: 451, statuses: ['setup'] }],
  },
  {
    // Patched (read once): `mov 0x2e8(%r12),%r13d` at +125; %r13d is stored as is.
    build: 'Debian QEMU 7.2 (1:7.2+dfsg-7+deb12u18+b3)',
    loaded: { at: [133], register: 'r13d' },
    stores: { at: [332, 513, 676], register: 'r13d' },
    branches: [],
  },
  {
    build: 'Debian QEMU 10.0 (1:10.0.2+ds-2+deb13u1~bpo12+1 and 1:10.0.13+ds-0+deb13u1)',
    loaded: { at: [199, 214, 222], register: 'r13d' },
    stores: { at: [430, 484], register: 'r13d' },
    branches: [],
  },
];

/** The position an offset has in every known build that has it; null when the builds disagree or none has it. */
function byOffset(off: number): Position | null {
  const found: Position[] = [];
  for (const b of OFFSET_BUILDS) {
    const how = `qmp_query_migrate+${off} in ${b.build}`;
    if (b.loaded.at.includes(off)) found.push({ kind: 'loaded', how, register: b.loaded.register });
    else if (b.stores.at.includes(off)) found.push({ kind: 'store', reads: 'register', register: b.stores.register, how });
    else {
      const br = b.branches.find((x) => off >= x.from && off <= x.to);
      if (br) found.push({ kind: 'branch', statuses: br.statuses, how });
    }
  }
  if (found.length === 0) return null;
  return found.every((p) => p.kind === found[0].kind) ? found[0] : null;
}

/* ------------------------------------------------------------------------ */
/* 2. Source text the transcript shows */

const CASE = /^\s*case\s+MIGRATION_STATUS_([A-Z0-9_]+)\s*:/;
const SWITCH = /\bswitch\s*\(\s*([^)]*)\)/;
const STORE = /\binfo\s*(?:->|\.)\s*status\s*=\s*([^;]+);/;

/** What a source line says about a stop on it, or null when it says nothing by itself. */
function byLineText(text: string, how: string): Position | null {
  // minimig marks its probe lines.
  if (/migrace:read/.test(text)) return { kind: 'loaded', how: `${how} (minimig's read line)`, register: null };
  if (/migrace:publish/.test(text)) return { kind: 'after-store', how: `${how} (minimig's publish line)` };
  const st = STORE.exec(text);
  if (st) {
    const rhs = st[1].trim();
    return { kind: 'store', reads: /(?:->|\.)\s*state$/.test(rhs) ? 'field' : 'local', register: null, how: `${how} (the status store)` };
  }
  // `int state = qatomic_read(&s->state);`: the load itself, not done yet at a stop on its line.
  if (/\b(?:q?atomic_read|atomic_load\w*)\s*\(\s*&\s*\w+\s*->\s*state\b|=\s*\w+\s*->\s*state\s*;/.test(text) && !STORE.test(text)) {
    return { kind: 'before-load', how: `${how} (the load of the state, not done yet)` };
  }
  const sw = SWITCH.exec(text);
  if (sw && /state/.test(sw[1])) {
    return /(?:->|\.)\s*state$/.test(sw[1].trim())
      ? { kind: 'before-load', how: `${how} (the switch, before its load)` }
      : { kind: 'loaded', how: `${how} (the switch on a local)`, register: null };
  }
  return null;
}

/**
 * The stop's line inside the switch, from the lines around it: the nearest
 * `case` labels above it (all of a run of them), with every line in between
 * shown and none of them ending a branch or the switch.
 */
function byListing(lines: ReadonlyMap<number, string>, at: number, how: string): Position | null {
  const own = lines.get(at);
  if (own !== undefined) {
    const p = byLineText(own, how);
    if (p) return p;
  }
  // Counted steps, not `n--` alone: past 2**53 a line number is a float that
  // `n - 1` leaves where it was ("minimig.c:99999999999999999999" never ended).
  const statuses: string[] = [];
  for (let step = 0; step < 200 && at - step > 0; step++) {
    const n = at - step;
    const text = lines.get(n);
    if (text === undefined) return null;
    const c = CASE.exec(text);
    if (c) {
      statuses.push(normalizeStatusName(c[1]));
      continue;
    }
    if (statuses.length > 0) {
      return { kind: 'branch', statuses: statuses.reverse(), how: `${how} (under "case ${statuses.map((s) => s.toUpperCase()).join(':, case ')}:" in the source the transcript shows)` };
    }
    if (n === at) continue;
    if (/^\s*(?:break|return)\b/.test(text) || SWITCH.test(text) || /^\s*}\s*$/.test(text)) return null;
    if (STORE.test(text)) return { kind: 'after-store', how: `${how} (after the status store in the source the transcript shows)` };
  }
  return null;
}

/* ------------------------------------------------------------------------ */
/* 3. Known releases' migration/migration.c */

interface ReleaseLines {
  release: string;
  /** major.minor of the QEMU the transcript is about. */
  version: string;
  switchLine: number;
  /** Branch line ranges, inclusive. */
  branches: { from: number; to: number; statuses: string[] }[];
  store: number;
}

/*
 * fill_source_migration_info() of QEMU 5.2.0, read in its source: switch
 * (s->state) at 1059, the status store at 1104. 6.2.0 has the same function
 * 19 lines further down, every line of it (docs/qemu-facts.md, "Source lines
 * of fill_source_migration_info()": switch 1078, SETUP `break` 1086, store
 * 1123). A 6.2 with the read-once fix backported is one line lower still.
 */
const QEMU_5_2_0: ReleaseLines = {
  release: 'QEMU 5.2.0',
  version: '5.2',
  switchLine: 1059,
  branches: [
    { from: 1060, to: 1063, statuses: ['none'] },
    { from: 1064, to: 1067, statuses: ['setup'] },
    { from: 1068, to: 1080, statuses: ['active', 'cancelling', 'postcopy-active', 'pre-switchover', 'device', 'postcopy-paused', 'postcopy-recover'] },
    { from: 1081, to: 1084, statuses: ['colo'] },
    { from: 1085, to: 1089, statuses: ['completed'] },
    { from: 1090, to: 1096, statuses: ['failed'] },
    { from: 1097, to: 1099, statuses: ['cancelled'] },
    { from: 1100, to: 1102, statuses: ['wait-unplug'] },
  ],
  store: 1104,
};

function shifted(r: ReleaseLines, release: string, version: string, by: number): ReleaseLines {
  return {
    release, version, switchLine: r.switchLine + by, store: r.store + by,
    branches: r.branches.map((b) => ({ ...b, from: b.from + by, to: b.to + by })),
  };
}

const RELEASES: readonly ReleaseLines[] = [QEMU_5_2_0, shifted(QEMU_5_2_0, 'QEMU 6.2.0 (5.2.0 + 19 lines)', '6.2', 19)];

function byRelease(version: string | null, file: string, line: number): Position | null {
  if (!version || !/(?:^|\/)migration\/migration\.c$/.test(file)) return null;
  const r = RELEASES.find((x) => version === x.version || version.startsWith(`${x.version}.`));
  if (!r) return null;
  const how = `${file}:${line} in ${r.release}`;
  if (line === r.switchLine) return { kind: 'before-load', how: `${how} (the switch, before its load)` };
  if (line === r.store) return { kind: 'store', reads: 'field', register: null, how: `${how} (the status store)` };
  const b = r.branches.find((x) => line >= x.from && line <= x.to);
  return b ? { kind: 'branch', statuses: b.statuses, how } : null;
}

/* ------------------------------------------------------------------------ */

export interface PositionQuery {
  /** The breakpoint's spec as typed (`*qmp_query_migrate+123`, `migration.c:1067`). */
  spec: string | null;
  func: string | null;
  file: string | null;
  line: number | null;
  /** The source lines the transcript showed for that file. */
  source: ReadonlyMap<number, string> | null;
  /** major.minor.micro, from the transcript or the user. */
  version: string | null;
}

export function positionOf(q: PositionQuery): Position {
  const off = q.spec ? /^\*\s*qmp_query_migrate\s*\+\s*(\d+)$/.exec(q.spec.trim()) : null;
  if (off && (q.func === null || q.func === 'qmp_query_migrate')) {
    const p = byOffset(Number(off[1]));
    if (p) return p;
  }
  if (q.file !== null && q.line !== null) {
    const where = `${q.file}:${q.line}`;
    if (q.source) {
      const p = byListing(q.source, q.line, where);
      if (p) return p;
    }
    const p = byRelease(q.version, q.file, q.line);
    if (p) return p;
  }
  return { kind: 'unknown' };
}

/** The key a source file is known by: its last two path components ("migration/migration.c", "minimig.c"). */
export function sourceKey(file: string): string {
  return file.split('/').filter((p) => p !== '' && p !== '.' && p !== '..').slice(-2).join('/');
}

/* ------------------------------------------------------------------------ */
/* What a print is */

export type PrintKind =
  /** The value the switch uses: the local `state`, or a register. */
  | 'loaded'
  /** MigrationState.state itself: s->state, s.state, *(int *)ADDR, ... */
  | 'field'
  /** MigrationInfo.status: info->status, info.status. */
  | 'status'
  /** `p (MigrationStatus) 4`, `p/d MIGRATION_STATUS_ACTIVE`: the enum's names, nothing about the run. */
  | 'lookup'
  /** migrate_set_state's arguments and the like: the transition stage reads them by name. */
  | 'other';

const CAST = /^\(\s*(?:enum\s+)?(?:MigrationStatus|int|unsigned(?:\s+int)?|int32_t|uint32_t)\s*\)\s*/;

export function printKind(expr: string): PrintKind {
  const e = expr.trim().replace(CAST, '').trim();
  const bare = e.replace(/^\((.*)\)$/, '$1').trim();
  if (/^-?(?:\d+|0x[0-9a-fA-F]+)$/.test(bare) || /^MIGRATION_STATUS_[A-Z0-9_]+$/.test(bare)) return 'lookup';
  if (/^(?:\(\s*\*\s*info\s*\)|info)\s*(?:->|\.)\s*status$/.test(bare)) return 'status';
  if (/^(?:\(\s*\*\s*\w+\s*\)|\w+|migrate_get_current\s*\(\s*\))\s*(?:->|\.)\s*state$/.test(bare) && !/^(?:mis|incoming)\b/.test(bare)) return 'field';
  if (/^\*\s*\(\s*(?:enum\s+)?(?:int|unsigned(?:\s+int)?|int32_t|uint32_t|MigrationStatus)\s*\*\s*\)\s*\S/.test(bare)) return 'field';
  if (bare === 'state' || /^\$(?:[re]?[a-z]{2}|r\d+d?)$/.test(bare)) return 'loaded';
  return 'other';
}

/** `$eax` -> 'eax', or null when the print is not a register. */
export function registerOf(expr: string): string | null {
  const m = /^\$([a-z]\w*)$/.exec(expr.trim().replace(CAST, '').trim());
  return m ? m[1] : null;
}
