import type { NewEvent, StateValue, Thread } from '../../trace/schema.js';
import { normalizeStatusName, statusName, statusValue, type StatusTableId } from '../../trace/status.js';
import { clip, type ImportWarning, type ImportedLog } from './merge.js';

/*
 * The GDB transcript importer's last stage (see gdb-transcript.ts for the
 * stages before it): what the reader collected, and how it becomes events.
 *
 *  - Frames and printed values: the text of a hit line or a frame
 *    ("migrate_set_state (state=..., old_state=1) at f.c:12") and of a `p`
 *    answer (a number, an enum name, a pointer).
 *  - Slots: the reader's output, in transcript order. A stop (a thread that
 *    stopped, with the prints made while it was stopped), a print at its own
 *    place in time, the resume of a stopped thread, or an event that needs no
 *    interpretation (a query, a reply, a note).
 *  - finalize(): gives each stop its role (transition, read, publish or a
 *    note), decides which stopped writers were held while something else
 *    happened, and turns the slots into events.
 */

export interface GdbTranscript extends ImportedLog {
  /** 'unpatched' / 'patched' when the binary tells (minimig builds, QEMU >= 7.1), else 'unknown'. */
  variant: 'unpatched' | 'patched' | 'unknown';
  binary: string | null;
}

/* ------------------------------------------------------------------------ */
/* Frames and values */

export interface Frame {
  pc: string | null;
  func: string | null;
  args: Map<string, string>;
  file: string | null;
  srcLine: number | null;
}

export const NO_FRAME = (): Frame => ({ pc: null, func: null, args: new Map(), file: null, srcLine: null });

function splitArgs(s: string): Map<string, string> {
  const args = new Map<string, string>();
  let depth = 0;
  let quote = false;
  let start = 0;
  const parts: string[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (c === '"') quote = !quote;
    if (quote) continue;
    if (c === '(' || c === '{' || c === '<' || c === '[') depth++;
    else if (c === ')' || c === '}' || c === '>' || c === ']') depth--;
    else if (c === ',' && depth === 0) {
      parts.push(s.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(s.slice(start));
  for (const p of parts) {
    const m = /^\s*([A-Za-z_]\w*)=(.*)$/.exec(p);
    if (m) args.set(m[1], m[2].trim());
  }
  return args;
}

/** "0x000055 in qmp_query_migrate ()", "migrate_set_state (state=..., old_state=1) at f.c:12". */
export function parseFrame(s: string): Frame | null {
  const m = /^(?:(0x[0-9a-fA-F]+) in )?([A-Za-z_][\w:.~$]*(?:\+\d+)?)\s*\((.*)\)(?:\s+at\s+(\S+):(\d+))?(?:\s+from\s+\S+)?\s*$/.exec(s.trim());
  if (!m) return null;
  return {
    pc: m[1] ? m[1].toLowerCase() : null,
    func: m[2].replace(/\+\d+$/, ''),
    args: splitArgs(m[3]),
    file: m[4] ?? null,
    srcLine: m[5] ? Number(m[5]) : null,
  };
}

type Printed =
  | { kind: 'int'; n: number }
  | { kind: 'enum'; name: string }
  | { kind: 'pointer'; addr: string }
  | { kind: 'other' };

function parsePrinted(v: string): Printed {
  const t = v.trim();
  if (/^-?\d+$/.test(t)) return { kind: 'int', n: Number(t) };
  if (/^0x[0-9a-fA-F]+$/.test(t)) return { kind: 'int', n: Number.parseInt(t.slice(2), 16) };
  const e = /^(?:\([\w ]+\)\s*)?(MIGRATION_STATUS_[A-Z0-9_]+)$/.exec(t);
  if (e) return { kind: 'enum', name: e[1] };
  const p = /^\(([^()]*\*)\)\s*(0x[0-9a-fA-F]+)(?:\s+<[^>]*>)?$/.exec(t);
  if (p) return { kind: 'pointer', addr: p[2].toLowerCase() };
  return { kind: 'other' };
}

function addressOf(v: string): string | null {
  const p = parsePrinted(v);
  if (p.kind === 'pointer') return p.addr;
  const t = v.trim();
  if (/^0x[0-9a-fA-F]+$/.test(t)) return t.toLowerCase();
  if (/^-?\d+$/.test(t)) {
    const n = BigInt.asUintN(64, BigInt(t));
    return n > 0xffffn ? `0x${n.toString(16)}` : null;
  }
  const m = /^0x[0-9a-fA-F]+(?=\s+<)/.exec(t);
  return m ? m[0].toLowerCase() : null;
}

/** Printed text as a state, or null when it is not one (a pointer, a struct, a huge number). */
function stateOf(v: string, table: StatusTableId): StateValue | null {
  const p = parsePrinted(v);
  if (p.kind === 'int') {
    // Registers print unsigned: a state is a small enum index.
    if (p.n < 0 || p.n > 64) return null;
    return { value: p.n, name: statusName(p.n, table) };
  }
  if (p.kind === 'enum') {
    const name = normalizeStatusName(p.name);
    return { value: statusValue(name, table), name };
  }
  return null;
}

/* ------------------------------------------------------------------------ */
/* What the reader collects */

export interface Print {
  expr: string;
  value: string | null;
  line: number;
  used: boolean;
}

export interface Stop {
  tid: number;
  line: number;
  kind: 'breakpoint' | 'signal' | 'interrupt' | 'step' | 'watchpoint' | 'seen';
  bp: number | null;
  frame: Frame;
  prints: Print[];
  /** Index of the release slot, once the thread ran again. */
  releaseSlot: number | null;
  text: string;
}

export type Slot =
  | { type: 'stop'; stop: Stop; line: number }
  | { type: 'print'; stop: Stop; print: Print; line: number }
  | { type: 'release'; stop: Stop; line: number }
  | { type: 'event'; event: NewEvent; line: number };

export interface BreakpointDef {
  spec: string | null;
  addr: string | null;
}

/** An event of the transcript itself (no probe location): queries, replies, notes. */
export function blank<K extends NewEvent['kind']>(kind: K, thread: number | null, data: Extract<NewEvent, { kind: K }>['data']): NewEvent {
  return { kind, t_ns: null, wall: null, thread, probe: 'import:gdb', pc: null, func: null, file: null, line: null, data } as NewEvent;
}

/* ------------------------------------------------------------------------ */
/* From stops to events */

/** Verified read/publish points of stripped Debian builds (facts.md). */
const KNOWN_ADDRESS_PROBES: ReadonlyArray<{ version: string; read: number[]; publish: number[] }> = [
  { version: '5.2', read: [123], publish: [187, 457, 636] },
  { version: '7.2', read: [133], publish: [332, 513, 676] },
  { version: '10.0', read: [214, 222], publish: [430] },
];

export const QUERY_FUNCS = new Set(['fill_source_migration_info', 'qmp_query_migrate']);

const OLD_EXPR = /^(?:\(\w+\)\s*)?(?:\$(?:esi|rsi|si)|old_state)$/;
const NEW_EXPR = /^(?:\(\w+\)\s*)?(?:\$(?:edx|rdx|dx)|new_state)$/;
const ADDR_EXPR = /^(?:\$rdi|\$edi|state|\/x \$rdi)$/;
const MEMORY_POKE = /^\*\s*\(\s*(?:int|unsigned|int32_t|MigrationStatus)\s*\*\s*\)\s*(?:0x[0-9a-fA-F]+|\d+)$/;

function probeRoleByOffset(spec: string | null, pcFunc: string | null): 'read' | 'publish' | null {
  if (!spec) return null;
  const m = /^\*\s*(\w+)\s*\+\s*(\d+)$/.exec(spec.trim());
  if (!m || m[1] !== 'qmp_query_migrate' || (pcFunc !== null && pcFunc !== 'qmp_query_migrate')) return null;
  const off = Number(m[2]);
  const reads = KNOWN_ADDRESS_PROBES.some((p) => p.read.includes(off));
  const publishes = KNOWN_ADDRESS_PROBES.some((p) => p.publish.includes(off));
  if (reads && !publishes) return 'read';
  if (publishes && !reads) return 'publish';
  return null;
}

type Role = { kind: 'transition'; old: StateValue | null; neu: StateValue; addr: string | null }
  | { kind: 'read' | 'publish'; value: StateValue; expr: string }
  | { kind: 'note'; text: string };

export interface FinalizeInput {
  slots: Slot[];
  threads: Map<number, Thread>;
  bps: Map<number, BreakpointDef>;
  table: StatusTableId;
  warnings: ImportWarning[];
  title: string;
  qemuVersion: string | null;
  binary: string | null;
  variant: GdbTranscript['variant'];
  runs: number;
}

/**
 * Stage 3 in three steps: the role of each stop, the writers that were held
 * while another thread did something, then the events in slot order.
 */
export function finalize(x: FinalizeInput): GdbTranscript {
  const name = (tid: number): string => {
    const t = x.threads.get(tid);
    return `thread ${t?.gdb_id ?? tid}${t?.name ? ` "${t.name}"` : ''}`;
  };
  const roles = assignRoles(x, name);
  const needsHold = heldWriters(x.slots, roles);
  const { events, lines } = toEvents(x, roles, needsHold, name);

  const used = new Set<number>();
  for (const e of events) if (e.thread !== null) used.add(e.thread);
  const threadList = [...x.threads.values()].filter((t) => used.has(t.tid) || t.lwp !== null).sort((a, b) => a.tid - b.tid);
  return {
    title: x.title,
    threads: threadList,
    events,
    lines,
    warnings: x.warnings,
    qemuVersion: x.qemuVersion,
    meta: { binary: x.binary, runs: x.runs },
    variant: x.variant,
    binary: x.binary,
  };
}

function assignRoles(x: FinalizeInput, name: (tid: number) => string): Map<Stop, Role> {
  const { table, warnings } = x;
  const roles = new Map<Stop, Role>();
  const openRead = new Set<number>();

  const stateFromPrints = (s: Stop, prefer: (p: Print) => boolean): { value: StateValue; print: Print } | null => {
    const candidates = s.prints.filter((p) => p.value !== null);
    const ordered = [...candidates.filter((p) => prefer(p) && !MEMORY_POKE.test(p.expr)), ...candidates.filter((p) => !prefer(p) && !MEMORY_POKE.test(p.expr)), ...candidates.filter((p) => MEMORY_POKE.test(p.expr))];
    for (const p of ordered) {
      const v = stateOf(p.value!, table);
      if (v) return { value: v, print: p };
    }
    return null;
  };

  for (const slot of x.slots) {
    if (slot.type === 'event') {
      if (slot.event.kind === 'reply' || slot.event.kind === 'query-begin') openRead.clear();
      continue;
    }
    if (slot.type !== 'stop') continue;
    const s = slot.stop;
    const f = s.frame;
    const where = `${f.func ?? '?'}${f.file ? ` at ${f.file}:${f.srcLine}` : ''}`;
    if (f.func === 'migrate_set_state' && (s.kind === 'breakpoint' || s.kind === 'seen')) {
      const argOld = f.args.get('old_state');
      const argNew = f.args.get('new_state');
      const pOld = s.prints.find((p) => p.value !== null && OLD_EXPR.test(p.expr));
      const pNew = s.prints.find((p) => p.value !== null && NEW_EXPR.test(p.expr));
      const pAddr = s.prints.find((p) => p.value !== null && ADDR_EXPR.test(p.expr.replace(/^\/x\s*/, '')));
      const old = argOld !== undefined ? stateOf(argOld, table) : pOld ? stateOf(pOld.value!, table) : null;
      const neu = argNew !== undefined ? stateOf(argNew, table) : pNew ? stateOf(pNew.value!, table) : null;
      const argAddr = f.args.get('state');
      const addr = argAddr !== undefined ? addressOf(argAddr) : pAddr ? addressOf(pAddr.value!) : null;
      for (const p of [pOld, pNew, pAddr]) if (p) p.used = true;
      if (!neu) {
        warnings.push({ line: s.line, text: clip(s.text), reason: `${name(s.tid)} stopped at migrate_set_state but no new state was printed (new_state or $edx): kept as a note` });
        roles.set(s, { kind: 'note', text: `${name(s.tid)} stopped at migrate_set_state; new state unknown` });
      } else {
        roles.set(s, { kind: 'transition', old, neu, addr });
      }
      continue;
    }
    if (f.func !== null && QUERY_FUNCS.has(f.func) && s.kind !== 'signal' && s.kind !== 'interrupt') {
      const spec = s.bp !== null ? x.bps.get(s.bp)?.spec ?? null : null;
      let role = probeRoleByOffset(spec, f.func);
      if (role === null) {
        if (s.prints.some((p) => p.value !== null && /status/.test(p.expr))) role = 'publish';
        else role = openRead.has(s.tid) ? 'publish' : 'read';
      }
      const chosen = stateFromPrints(s, role === 'publish' ? (p) => /status|^\$/.test(p.expr) : (p) => !/status/.test(p.expr));
      if (!chosen) {
        warnings.push({ line: s.line, text: clip(s.text), reason: `${name(s.tid)} stopped in ${f.func} (taken as the ${role}) but no state value was printed there: kept as a note` });
        roles.set(s, { kind: 'note', text: `${name(s.tid)} stopped in ${where} (a ${role} point) with no state printed` });
        continue;
      }
      chosen.print.used = true;
      if (MEMORY_POKE.test(chosen.print.expr)) {
        warnings.push({ line: chosen.print.line, text: clip(`p ${chosen.print.expr}`), reason: `the ${role} value of ${name(s.tid)} is taken from memory (${chosen.print.expr}), not from what the code loaded` });
      }
      roles.set(s, { kind: role, value: chosen.value, expr: chosen.print.expr });
      if (role === 'read') openRead.add(s.tid);
      else openRead.delete(s.tid);
      continue;
    }
    const what = s.kind === 'watchpoint' ? null : `${name(s.tid)} stopped (${s.kind}) in ${where}`;
    roles.set(s, { kind: 'note', text: what ?? '' });
  }
  return roles;
}

/** Writers stopped at a transition while another thread did something real: their swap happens at the resume. */
function heldWriters(slots: Slot[], roles: Map<Stop, Role>): Set<Stop> {
  const substantive = (slot: Slot): { tid: number | null } | null => {
    if (slot.type === 'event') return slot.event.kind === 'note' ? null : { tid: slot.event.thread };
    if (slot.type === 'stop') {
      const r = roles.get(slot.stop);
      return r && r.kind !== 'note' ? { tid: slot.stop.tid } : null;
    }
    return null;
  };
  const needsHold = new Set<Stop>();
  slots.forEach((slot, i) => {
    if (slot.type !== 'stop' || roles.get(slot.stop)?.kind !== 'transition') return;
    const end = slot.stop.releaseSlot ?? slots.length;
    for (let k = i + 1; k < end; k++) {
      const x = substantive(slots[k]);
      if (x && x.tid !== slot.stop.tid) {
        needsHold.add(slot.stop);
        return;
      }
    }
  });
  return needsHold;
}

function toEvents(
  x: FinalizeInput,
  roles: Map<Stop, Role>,
  needsHold: Set<Stop>,
  name: (tid: number) => string,
): { events: NewEvent[]; lines: number[] } {
  const events: NewEvent[] = [];
  const lines: number[] = [];
  const emit = (e: NewEvent, line: number): void => {
    events.push(e);
    lines.push(line);
  };
  const loc = (s: Stop): Pick<NewEvent, 'pc' | 'func' | 'file' | 'line' | 'probe'> => {
    const bp = s.bp !== null ? x.bps.get(s.bp) : undefined;
    return {
      probe: s.bp !== null ? `gdb:breakpoint ${s.bp}${bp?.spec ? ` (${bp.spec})` : ''}` : `gdb:${s.kind}`,
      pc: s.frame.pc ?? bp?.addr ?? null,
      func: s.frame.func,
      file: s.frame.file,
      line: s.frame.srcLine,
    };
  };
  for (const slot of x.slots) {
    if (slot.type === 'event') {
      emit(slot.event, slot.line);
      continue;
    }
    const s = slot.stop;
    const r = roles.get(s);
    if (slot.type === 'print') {
      const p = slot.print;
      if (!p.used && p.value !== null) {
        emit({ t_ns: null, wall: null, thread: s.tid, ...loc(s), kind: 'note', data: { text: `p ${p.expr} = ${p.value} (${name(s.tid)}, stopped at line ${s.line})` } }, slot.line);
      }
      continue;
    }
    if (slot.type === 'release') {
      if (needsHold.has(s)) {
        emit({ kind: 'release', t_ns: null, wall: null, thread: s.tid, ...loc(s), data: { role: 'writer', reason: `resumed at transcript line ${slot.line}` } }, slot.line);
      }
      continue;
    }
    if (!r) continue;
    const base = { t_ns: null, wall: null, thread: s.tid, ...loc(s) };
    if (r.kind === 'transition') {
      emit({ ...base, kind: 'transition', data: { addr: r.addr, old: r.old, new: r.neu } }, s.line);
      if (needsHold.has(s)) {
        emit({ ...base, kind: 'hold', data: { role: 'writer', reason: `stopped by gdb at transcript line ${s.line}` } }, s.line);
      }
    } else if (r.kind === 'read' || r.kind === 'publish') {
      emit({ ...base, kind: r.kind, data: { value: r.value } }, s.line);
    } else if (r.kind === 'note' && r.text) {
      emit({ ...base, kind: 'note', data: { text: r.text } }, s.line);
    }
  }
  return { events, lines };
}
