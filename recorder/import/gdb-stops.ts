import { replyFacts } from '../../trace/reply.js';
import { blankLocation, type NewEvent, type StateValue, type Thread } from '../../trace/schema.js';
import { normalizeStatusName, statusName, statusValue, type StatusTableId } from '../../trace/status.js';
import { positionOf, printKind, registerOf, sourceKey, type Position, type PrintKind } from './gdb-positions.js';
import { clip, sourceLine, type ImportedLog, type WarningList } from './merge.js';

/*
 * The GDB transcript importer's last stage (see gdb-transcript.ts for the
 * stages before it): what the reader collected, and how it becomes events.
 *
 *  - Frames and printed values: the text of a hit line or a frame
 *    ("migrate_set_state (state=..., old_state=1) at f.c:12") and of a `p`
 *    answer (a number, an enum name, a pointer), read as states with the
 *    names the transcript itself looked up (`p (MigrationStatus) 4`) before
 *    the table of the QEMU version.
 *  - Slots: the reader's output, in transcript order. A stop (a thread that
 *    stopped, with the prints made while it was stopped), a print at its own
 *    place in time, the resume of a stopped thread, or an event that needs no
 *    interpretation (a query, a reply, a note).
 *  - finalize(), in steps: the role of each stop (assignRoles), the publish
 *    a reply proves when no stop showed it (replyPublishes), the transitions
 *    only prints of the state show (printedTransitions), the writers held
 *    while another thread did something (heldWriters), the events (toEvents).
 *
 * Roles are read by meaning, not by order (gdb-positions.ts says where a
 * stop is and what a print is):
 *  - a stop at migrate_set_state is a transition attempt (old/new from the
 *    hit line's arguments or `p $esi` / `p $edx`);
 *  - a stop inside a branch of the switch on the state is a read of that
 *    branch's value; one right after the switch's load a read of the value
 *    loaded (the local `state`, the register of a known build); where the
 *    position is unknown, the first stop of a thread in a query is the read,
 *    valued by the loaded value if printed, else by the state printed at
 *    that stop before anything else could change it;
 *  - a print of the state field (`s->state`, `s.state`, `*(int *)ADDR`) is
 *    the state at that moment: evidence, never a read;
 *  - a print of info->status showing none is what is not published yet; the
 *    publish is the status store: a stop at it (valued by what it stores),
 *    after it (valued by info->status), or, when no stop showed it, the
 *    query's reply, placed where the reader went on;
 *  - `p (MigrationStatus) N` is a name fact, not an event;
 *  - after a second gdb session interleaves with the first, stops cannot be
 *    told apart: they stay notes. Nothing the transcript does not tell is
 *    filled in by a guess.
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

/** Calls `fn` with each character outside double quotes and its index; a backslash hides the character after it. */
export function eachUnquoted(s: string, fn: (c: string, i: number) => void): void {
  let quote = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (c === '"') quote = !quote;
    else if (!quote) fn(c, i);
  }
}

function splitArgs(s: string): Map<string, string> {
  const args = new Map<string, string>();
  let depth = 0;
  let start = 0;
  const parts: string[] = [];
  eachUnquoted(s, (c, i) => {
    if (c === '(' || c === '{' || c === '<' || c === '[') depth++;
    else if (c === ')' || c === '}' || c === '>' || c === ']') depth--;
    else if (c === ',' && depth === 0) {
      parts.push(s.slice(start, i));
      start = i + 1;
    }
  });
  parts.push(s.slice(start));
  for (const p of parts) {
    const m = /^\s*([A-Za-z_]\w*)=(.*)$/.exec(p);
    // -O2 builds: "old_state=old_state@entry=1" (the value it had on entry).
    if (m) args.set(m[1], m[2].trim().replace(/^[A-Za-z_]\w*@entry=/, ''));
  }
  return args;
}

/** "0x000055 in qmp_query_migrate ()", "migrate_set_state (state=..., old_state=1) at f.c:12". */
export function parseFrameText(s: string): Frame | null {
  const m = /^(?:(0x[0-9a-fA-F]+) in )?([A-Za-z_][\w:.~$]*(?:\+\d+)?)\s*\((.*)\)(?:\s+at\s+(\S+):(\d+))?(?:\s+from\s+\S+)?\s*$/.exec(s.trim());
  if (!m) return null;
  return {
    pc: m[1] ? m[1].toLowerCase() : null,
    func: m[2].replace(/\+\d+$/, ''),
    args: splitArgs(m[3]),
    file: m[4] ?? null,
    srcLine: m[5] ? sourceLine(m[5]) : null,
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

/**
 * Printed text as states: the names the transcript looked up itself come
 * first (they are the binary's own), then the table of the QEMU version.
 */
export class States {
  constructor(readonly table: StatusTableId, readonly names: ReadonlyMap<number, string>) {}

  /** Printed text as a state, or null when it is not one (a pointer, a struct, a huge number, <optimized out>). */
  of(v: string): StateValue | null {
    const p = parsePrinted(v);
    if (p.kind === 'int') {
      // Registers print unsigned: a state is a small enum index.
      if (p.n < 0 || p.n > 64) return null;
      return { value: p.n, name: this.names.get(p.n) ?? statusName(p.n, this.table) };
    }
    if (p.kind === 'enum') return this.named(p.name);
    return null;
  }

  named(name: string): StateValue {
    const n = normalizeStatusName(name);
    for (const [value, known] of this.names) if (known === n) return { value, name: n };
    return { value: statusValue(n, this.table), name: n };
  }
}

/** A name fact from a lookup print: `(MigrationStatus) 4` = MIGRATION_STATUS_ACTIVE, `/d MIGRATION_STATUS_ACTIVE` = 4. */
export function nameFact(expr: string, value: string): [number, string] | null {
  const e = expr.trim().replace(/^\(\s*(?:enum\s+)?(?:MigrationStatus|int|unsigned(?:\s+int)?)\s*\)\s*/, '');
  const num = /^(\d+|0x[0-9a-fA-F]+)$/.exec(e);
  const name = /^(?:\([\w ]+\)\s*)?MIGRATION_STATUS_([A-Z0-9_]+)$/.exec(value.trim());
  if (num && name) return [Number(num[1]), normalizeStatusName(name[1])];
  const ename = /^MIGRATION_STATUS_([A-Z0-9_]+)$/.exec(e);
  const n = /^(\d+)$/.exec(value.trim());
  if (ename && n) return [Number(n[1]), normalizeStatusName(ename[1])];
  return null;
}

/* ------------------------------------------------------------------------ */
/* What the reader collects */

export interface Print {
  expr: string;
  kind: PrintKind;
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
  /** Two gdb sessions interleave in the transcript by now: whose stop this is cannot be told. */
  mixed: boolean;
}

export type Slot =
  | { type: 'stop'; stop: Stop; line: number }
  | { type: 'print'; stop: Stop; print: Print; line: number }
  | { type: 'release'; stop: Stop; line: number }
  | { type: 'event'; event: NewEvent; line: number };

export interface BreakpointDef {
  spec: string | null;
  addr: string | null;
  /** Where gdb put it ("Breakpoint 2 at 0x..: file F, line N."), when it says. */
  file: string | null;
  line: number | null;
}

/** An event of the transcript itself (no probe location): queries, replies, notes. */
export function blank<K extends NewEvent['kind']>(kind: K, thread: number | null, data: Extract<NewEvent, { kind: K }>['data']): NewEvent {
  return { kind, t_ns: null, wall: null, thread, ...blankLocation(), probe: 'import:gdb', data } as NewEvent;
}

/* ------------------------------------------------------------------------ */
/* From stops to events */

export const QUERY_FUNCS = new Set(['fill_source_migration_info', 'qmp_query_migrate']);

const OLD_EXPR = /^(?:\(\w+\)\s*)?(?:\$(?:esi|rsi|si)|old_state)$/;
const NEW_EXPR = /^(?:\(\w+\)\s*)?(?:\$(?:edx|rdx|dx)|new_state)$/;
const ADDR_EXPR = /^(?:\$rdi|\$edi|state|\/x \$rdi)$/;

type Role = { kind: 'transition'; old: StateValue | null; neu: StateValue; addr: string | null }
  | { kind: 'read' | 'publish'; value: StateValue; how: string }
  | { kind: 'note'; text: string };

export interface FinalizeInput {
  slots: Slot[];
  threads: Map<number, Thread>;
  bps: Map<number, BreakpointDef>;
  table: StatusTableId;
  /** State names the transcript looked up itself, by number. */
  names: Map<number, string>;
  /** Source lines the transcript showed, by sourceKey(file). */
  sources: Map<string, Map<number, string>>;
  /** The QEMU version (the transcript's or the user's), for the known releases' line numbers. */
  version: string | null;
  warnings: WarningList;
  title: string;
  qemuVersion: string | null;
  binary: string | null;
  variant: GdbTranscript['variant'];
  runs: number;
}

/** Events finalize adds at a slot: emitted just before that slot's own. */
type Extra = Map<number, { event: NewEvent; line: number }[]>;

interface Finalizing extends FinalizeInput {
  states: States;
  name: (tid: number) => string;
  roles: Map<Stop, Role>;
  extra: Extra;
}

/**
 * Stage 3: the role of each stop, the publishes replies prove, the
 * transitions prints prove, the writers that were held, then the events in
 * slot order.
 */
export function finalize(input: FinalizeInput): GdbTranscript {
  const x: Finalizing = {
    ...input,
    states: new States(input.table, input.names),
    name: (tid) => {
      const t = input.threads.get(tid);
      return `thread ${t?.gdb_id ?? tid}${t?.name ? ` "${t.name}"` : ''}`;
    },
    roles: new Map(),
    extra: new Map(),
  };
  assignRoles(x);
  replyPublishes(x);
  printedTransitions(x);
  const needsHold = heldWriters(x);
  const { events, lines } = toEvents(x, needsHold);

  const used = new Set<number>();
  for (const e of events) if (e.thread !== null) used.add(e.thread);
  const threadList = [...x.threads.values()].filter((t) => used.has(t.tid) || t.lwp !== null).sort((a, b) => a.tid - b.tid);
  const names = Object.fromEntries([...x.names].sort((a, b) => a[0] - b[0]));
  return {
    title: x.title,
    threads: threadList,
    events,
    lines,
    warnings: x.warnings.items,
    unlisted: x.warnings.unlisted,
    qemuVersion: x.qemuVersion,
    meta: { binary: x.binary, runs: x.runs, ...(x.names.size ? { status_names_looked_up: names } : {}) },
    variant: x.variant,
    binary: x.binary,
  };
}

function addExtra(x: Finalizing, at: number, event: NewEvent, line: number): void {
  const l = x.extra.get(at);
  if (l) l.push({ event, line });
  else x.extra.set(at, [{ event, line }]);
}

function stopLocation(x: FinalizeInput, s: Stop): Pick<NewEvent, 'pc' | 'func' | 'file' | 'line' | 'probe'> {
  const bp = s.bp !== null ? x.bps.get(s.bp) : undefined;
  return {
    probe: s.bp !== null ? `gdb:breakpoint ${s.bp}${bp?.spec ? ` (${bp.spec})` : ''}` : `gdb:${s.kind}`,
    pc: s.frame.pc ?? bp?.addr ?? null,
    func: s.frame.func,
    file: s.frame.file ?? bp?.file ?? null,
    line: s.frame.srcLine ?? bp?.line ?? null,
  };
}

/** Prints of a stop in order, each with whether another thread could have changed the state since the stop. */
function printsWithLandings(x: FinalizeInput): Map<Print, boolean> {
  const out = new Map<Print, boolean>();
  const landedSince = new Map<Stop, boolean>();
  for (const slot of x.slots) {
    if (slot.type === 'stop') landedSince.set(slot.stop, false);
    else if (slot.type === 'release') {
      for (const [s] of landedSince) if (s.tid !== slot.stop.tid) landedSince.set(s, true);
    } else if (slot.type === 'print') out.set(slot.print, landedSince.get(slot.stop) ?? true);
  }
  return out;
}

function transitionRole(x: Finalizing, s: Stop): Role {
  const f = s.frame;
  const argOld = f.args.get('old_state');
  const argNew = f.args.get('new_state');
  const pOld = s.prints.find((p) => p.value !== null && OLD_EXPR.test(p.expr));
  const pNew = s.prints.find((p) => p.value !== null && NEW_EXPR.test(p.expr));
  const pAddr = s.prints.find((p) => p.value !== null && ADDR_EXPR.test(p.expr.replace(/^\/x\s*/, '')));
  const old = argOld !== undefined ? x.states.of(argOld) : pOld ? x.states.of(pOld.value!) : null;
  const neu = argNew !== undefined ? x.states.of(argNew) : pNew ? x.states.of(pNew.value!) : null;
  const argAddr = f.args.get('state');
  const addr = argAddr !== undefined ? addressOf(argAddr) : pAddr ? addressOf(pAddr.value!) : null;
  for (const p of [pOld, pNew, pAddr]) if (p) p.used = true;
  if (neu) return { kind: 'transition', old, neu, addr };
  const optimized = argNew === '<optimized out>' || pNew?.value === '<optimized out>';
  x.warnings.push({
    line: s.line, text: clip(s.text),
    reason: `${x.name(s.tid)} stopped at migrate_set_state but ${optimized ? 'new_state is <optimized out> there' : 'no new state was printed (new_state or $edx)'}: kept as a note`,
  });
  return { kind: 'note', text: `${x.name(s.tid)} stopped at migrate_set_state; new state unknown` };
}

/** The first print of `kinds` at a stop with a state value, optionally only those made before anything could land. */
function firstState(x: Finalizing, s: Stop, kinds: PrintKind[], ok: (p: Print) => boolean = () => true): { value: StateValue; print: Print } | null {
  for (const p of s.prints) {
    if (p.value === null || !kinds.includes(p.kind) || !ok(p)) continue;
    const v = x.states.of(p.value);
    if (v) return { value: v, print: p };
  }
  return null;
}

/** The role of a stop in the query path, from where it is and what was printed there. */
function queryRole(x: Finalizing, s: Stop, pos: Position, firstInQuery: boolean, landed: Map<Print, boolean>): Role {
  const where = `${x.name(s.tid)} stopped in ${s.frame.func}${s.frame.file ? ` at ${s.frame.file}:${s.frame.srcLine}` : ''}`;
  const untouched = (p: Print): boolean => landed.get(p) === false;
  const loadedPrint = (register: string | null) => firstState(x, s, ['loaded'], (p) => register === null || registerOf(p.expr) === null || registerOf(p.expr) === register);
  const status = firstState(x, s, ['status']);
  const use = (c: { value: StateValue; print: Print }, kind: 'read' | 'publish', how: string): Role => {
    c.print.used = true;
    return { kind, value: c.value, how };
  };
  // info->status != none: the store has run (a query's MigrationInfo starts zeroed, and NONE returns before the store).
  const published = status && status.value.name !== 'none' ? status : null;

  switch (pos.kind) {
    case 'loaded': {
      const c = loadedPrint(pos.register) ?? firstState(x, s, ['field'], untouched);
      if (c) {
        if (c.print.kind === 'field') {
          x.warnings.push({ line: c.print.line, text: clip(`p ${c.print.expr}`), reason: `the read value of ${x.name(s.tid)} is taken from memory (${c.print.expr}), not from what the code loaded` });
        }
        return use(c, 'read', pos.how);
      }
      break;
    }
    case 'branch': {
      if (pos.statuses.length === 1) return { kind: 'read', value: x.states.named(pos.statuses[0]), how: pos.how };
      const c = loadedPrint(null) ?? firstState(x, s, ['field'], untouched);
      if (c && c.value.name !== null && pos.statuses.includes(c.value.name)) return use(c, 'read', `${pos.how}, the branch of ${c.value.name}`);
      x.warnings.push({ line: s.line, text: clip(s.text), reason: `${where}: inside the branch of ${pos.statuses.join(', ')}, and nothing printed there says which: kept as a note` });
      return { kind: 'note', text: `${where} (the branch of ${pos.statuses.join(', ')})` };
    }
    case 'store': {
      const c = pos.reads === 'register' ? loadedPrint(pos.register) : firstState(x, s, [pos.reads === 'field' ? 'field' : 'loaded'], untouched);
      if (c) return use(c, 'publish', `${pos.how}: it stores ${c.print.expr}`);
      if (published) return use(published, 'publish', pos.how);
      return { kind: 'note', text: `${where} (the status store; its value comes from the reply)` };
    }
    case 'after-store':
      if (published) return use(published, 'publish', pos.how);
      return { kind: 'note', text: `${where} (after the status store; its value comes from the reply)` };
    case 'before-load':
      if (published) return use(published, 'publish', pos.how);
      return { kind: 'note', text: `${where} (${pos.how}: the switch has not read the state yet)` };
    case 'unknown':
      break;
  }
  if (published) return use(published, 'publish', `info->status printed ${published.value.name}`);
  if (pos.kind === 'unknown' && firstInQuery) {
    const c = loadedPrint(null) ?? firstState(x, s, ['field'], untouched);
    if (c) return use(c, 'read', c.print.kind === 'field' ? `the state printed at this stop (${c.print.expr})` : `the value the switch loaded (${c.print.expr})`);
  }
  const reason = pos.kind === 'loaded' ? 'right after the switch\'s load, but the loaded value was not printed'
    : pos.kind === 'unknown' && firstInQuery ? 'taken as the read, but no state value was printed there'
      : 'where in the function is unknown and it is not the first stop of this query';
  x.warnings.push({ line: s.line, text: clip(s.text), reason: `${where}: ${reason}: kept as a note` });
  return { kind: 'note', text: `${where} with no state printed` };
}

function assignRoles(x: Finalizing): void {
  const landed = printsWithLandings(x);
  const openRead = new Set<number>();
  for (const slot of x.slots) {
    if (slot.type === 'event') {
      if (slot.event.kind === 'reply' || slot.event.kind === 'query-begin') openRead.clear();
      continue;
    }
    if (slot.type !== 'stop') continue;
    const s = slot.stop;
    const f = s.frame;
    const isTransition = f.func === 'migrate_set_state' && (s.kind === 'breakpoint' || s.kind === 'seen');
    const isQuery = f.func !== null && QUERY_FUNCS.has(f.func) && s.kind !== 'signal' && s.kind !== 'interrupt';
    if (s.mixed && (isTransition || isQuery)) {
      x.warnings.push({ line: s.line, text: clip(s.text), reason: `${x.name(s.tid)} stopped in ${f.func}, but two gdb sessions interleave here and the hit names no process: kept as a note` });
      x.roles.set(s, { kind: 'note', text: `${x.name(s.tid)} (of one of two interleaved gdb sessions) stopped in ${f.func}` });
      continue;
    }
    if (isTransition) {
      x.roles.set(s, transitionRole(x, s));
      continue;
    }
    if (isQuery) {
      const bp = s.bp !== null ? x.bps.get(s.bp) : undefined;
      const file = f.file ?? bp?.file ?? null;
      const pos = positionOf({
        spec: bp?.spec ?? null, func: f.func, file, line: f.srcLine ?? bp?.line ?? null,
        source: file ? x.sources.get(sourceKey(file)) ?? null : null, version: x.version,
      });
      const role = queryRole(x, s, pos, !openRead.has(s.tid), landed);
      x.roles.set(s, role);
      if (role.kind === 'read') openRead.add(s.tid);
      else if (role.kind === 'publish') openRead.delete(s.tid);
      continue;
    }
    const what = s.kind === 'watchpoint' ? '' : `${x.name(s.tid)} stopped (${s.kind}) in ${f.func ?? '?'}${f.file ? ` at ${f.file}:${f.srcLine}` : ''}`;
    x.roles.set(s, { kind: 'note', text: what });
  }
}

/**
 * A query whose reader was seen reading but never seen storing the status
 * published what its reply says: info->status is what the reply carries.
 * The store ran after the reader went on and before the reply; it is placed
 * where the reader went on, so only what landed before that crosses.
 */
function replyPublishes(x: Finalizing): void {
  // Reads and publishes since the last query-begin or reply, by reader.
  let reads = new Map<number, { stop: Stop; slot: number }>();
  let begin: number | null = null;
  x.slots.forEach((slot, i) => {
    if (slot.type === 'stop') {
      const r = x.roles.get(slot.stop);
      if (r?.kind === 'read') reads.set(slot.stop.tid, { stop: slot.stop, slot: i });
      else if (r?.kind === 'publish') reads.delete(slot.stop.tid);
      return;
    }
    if (slot.type !== 'event') return;
    const e = slot.event;
    if (e.kind === 'query-begin') {
      reads = new Map();
      begin = i;
      return;
    }
    if (e.kind !== 'reply') return;
    const facts = replyFacts(e.data.body, e.data);
    const status = facts.status;
    if (status !== null && (facts.form === 'qmp' || facts.form === 'hmp') && begin !== null) {
      // The reply's own query-end, when there is one, sits just before it.
      const end = i > 0 && x.slots[i - 1].type === 'event' && (x.slots[i - 1] as { event: NewEvent }).event.kind === 'query-end' ? i - 1 : i;
      for (const { stop, slot: at } of reads.values()) {
        const r = stop.releaseSlot !== null && stop.releaseSlot > at && stop.releaseSlot < end ? stop.releaseSlot : end;
        const loc = stopLocation(x, stop);
        addExtra(x, r, {
          kind: 'publish', t_ns: null, wall: null, thread: stop.tid, ...loc,
          probe: `import:gdb (status store, valued by the reply at line ${slot.line})`, pc: null, line: null,
          data: { value: x.states.named(status) },
        }, slot.line);
      }
    }
    reads = new Map();
    begin = null;
  });
}

/**
 * Prints of the state field are the state at that moment. One that shows a
 * state no recorded transition leads to proves a transition the transcript
 * did not show: it is added (thread unknown) from the last known state.
 * One that contradicts a writer still waiting before its swap is reported.
 */
function printedTransitions(x: Finalizing): void {
  let known: StateValue | null = null;
  const waiting = new Map<number, StateValue>();
  x.slots.forEach((slot, i) => {
    if (slot.type === 'stop') {
      const r = x.roles.get(slot.stop);
      if (r?.kind === 'transition') {
        // The entry probe: the swap happens when the thread runs on.
        waiting.set(slot.stop.tid, r.neu);
      } else if (r?.kind === 'read') {
        known = r.value;
      }
      return;
    }
    if (slot.type === 'release') {
      const neu = waiting.get(slot.stop.tid);
      if (neu) {
        known = neu;
        waiting.delete(slot.stop.tid);
      }
      return;
    }
    if (slot.type === 'event') {
      if (slot.event.kind === 'transition') known = slot.event.data.new;
      return;
    }
    if (slot.type !== 'print' || slot.print.kind !== 'field' || slot.print.value === null || slot.print.used) return;
    const v = x.states.of(slot.print.value);
    if (!v || v.name === null) return;
    const pending = [...waiting].find(([, neu]) => neu.name === v.name);
    if (pending) {
      x.warnings.push({
        line: slot.line, text: clip(`p ${slot.print.expr} = ${slot.print.value}`),
        reason: `the state is already ${v.name} while ${x.name(pending[0])} still waits at migrate_set_state(-> ${v.name}): the stop was not at the swap, or another thread made it`,
      });
      known = v;
      return;
    }
    if (known !== null && known.name !== null && known.name !== v.name) {
      addExtra(x, i, {
        kind: 'transition', t_ns: null, wall: null, thread: null, ...blankLocation(), probe: `import:gdb (p ${slot.print.expr} at line ${slot.line})`,
        data: { addr: null, old: known, new: v },
      }, slot.line);
    }
    known = v;
  });
}

/** Writers stopped at a transition while another thread did something real: their swap happens at the resume. */
function heldWriters(x: Finalizing): Set<Stop> {
  const substantive = (slot: Slot, i: number): boolean | number | null => {
    if (x.extra.get(i)?.some((e) => e.event.kind !== 'note')) return true;
    if (slot.type === 'event') return slot.event.kind === 'note' ? null : slot.event.thread ?? true;
    if (slot.type === 'stop') {
      const r = x.roles.get(slot.stop);
      return r && r.kind !== 'note' ? slot.stop.tid : null;
    }
    return null;
  };
  const needsHold = new Set<Stop>();
  x.slots.forEach((slot, i) => {
    if (slot.type !== 'stop' || x.roles.get(slot.stop)?.kind !== 'transition') return;
    const end = slot.stop.releaseSlot ?? x.slots.length;
    for (let k = i + 1; k < end; k++) {
      const who = substantive(x.slots[k], k);
      if (who !== null && who !== slot.stop.tid) {
        needsHold.add(slot.stop);
        return;
      }
    }
  });
  return needsHold;
}

function toEvents(x: Finalizing, needsHold: Set<Stop>): { events: NewEvent[]; lines: number[] } {
  const events: NewEvent[] = [];
  const lines: number[] = [];
  const emit = (e: NewEvent, line: number): void => {
    events.push(e);
    lines.push(line);
  };
  x.slots.forEach((slot, i) => {
    for (const e of x.extra.get(i) ?? []) emit(e.event, e.line);
    if (slot.type === 'event') {
      emit(slot.event, slot.line);
      return;
    }
    const s = slot.stop;
    const loc = stopLocation(x, s);
    if (slot.type === 'print') {
      const p = slot.print;
      if (!p.used && p.value !== null && p.kind !== 'lookup') {
        const what = p.kind === 'field' ? 'the state' : p.kind === 'status' ? 'info->status' : null;
        const v = p.kind === 'field' || p.kind === 'status' ? x.states.of(p.value) : null;
        const meaning = what && v ? `: ${what} is ${v.name ?? v.value}${p.kind === 'status' && v.name === 'none' ? ' (not published yet)' : ''}` : '';
        emit({ t_ns: null, wall: null, thread: s.tid, ...loc, kind: 'note', data: { text: `p ${p.expr} = ${p.value} (${x.name(s.tid)}, stopped at line ${s.line})${meaning}` } }, slot.line);
      }
      return;
    }
    if (slot.type === 'release') {
      if (needsHold.has(s)) {
        emit({ kind: 'release', t_ns: null, wall: null, thread: s.tid, ...loc, data: { role: 'writer', reason: `resumed at transcript line ${slot.line}` } }, slot.line);
      }
      return;
    }
    const r = x.roles.get(s);
    if (!r) return;
    const base = { t_ns: null, wall: null, thread: s.tid, ...loc };
    if (r.kind === 'transition') {
      emit({ ...base, kind: 'transition', data: { addr: r.addr, old: r.old, new: r.neu } }, s.line);
      if (needsHold.has(s)) {
        emit({ ...base, kind: 'hold', data: { role: 'writer', reason: `stopped by gdb at transcript line ${s.line}` } }, s.line);
      }
    } else if (r.kind === 'read' || r.kind === 'publish') {
      emit({ ...base, probe: `${base.probe}: ${r.how}`, kind: r.kind, data: { value: r.value } }, s.line);
    } else if (r.kind === 'note' && r.text) {
      emit({ ...base, kind: 'note', data: { text: r.text } }, s.line);
    }
  });
  for (const e of x.extra.get(x.slots.length) ?? []) emit(e.event, e.line);
  return { events, lines };
}
