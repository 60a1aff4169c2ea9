import { MigraceError } from '../trace/errors.js';

/**
 * One line of the gdb-fast hook (recorder/gdb-fast-hook.ts), as it writes
 * them to migrace's socket from inside gdb:
 *
 *     hit 0 1 0x555555556770 7943708847123 93824992342688 1 4
 *     hit <probe> <gdb thread> <pc> <CLOCK_MONOTONIC ns> <value>...   (values: decimal integers, in the probe's order)
 *     thread 2 2 20633 "live_migration"       <gdb global id> <per-inferior id> <LWP> <name as JSON>
 *     place 0x555555556770 {"func": "migrate_set_state", "file": "minimig.c", "line": 314}
 *     error 1 value "No symbol \"state\" in current context."    <probe> <value name, or -> <message as JSON>
 *     mark 3                                   a drain marker (every hit before it has been written)
 *
 * Stages: split the kind from its fields (words, then a JSON tail for the
 * kinds that carry text), then check each field. A line that is not one of
 * these is a hook of another version, and an error that quotes it.
 */

export interface HookHit { kind: 'hit'; probe: number; thread: number; pc: string; tNs: bigint; values: string[] }
export interface HookThread { kind: 'thread'; thread: number; num: number; lwp: number | null; name: string | null }
export interface HookPlace { kind: 'place'; pc: string; func: string | null; file: string | null; line: number | null }
export interface HookError { kind: 'error'; probe: number; value: string | null; message: string }
export interface HookMark { kind: 'mark'; id: number }
export type HookLine = HookHit | HookThread | HookPlace | HookError | HookMark;

function bad(line: string, why: string): MigraceError {
  return new MigraceError('GDB_ERROR', `unexpected line from the gdb-fast hook (${why}): ${JSON.stringify(line.slice(0, 200))}`);
}

/** The first `n` space-separated words and the rest of the line (the JSON tail). */
function words(line: string, n: number): { words: string[]; rest: string } {
  const out: string[] = [];
  let at = 0;
  while (out.length < n) {
    const sp = line.indexOf(' ', at);
    if (sp < 0) {
      out.push(line.slice(at));
      at = line.length;
      break;
    }
    out.push(line.slice(at, sp));
    at = sp + 1;
  }
  return { words: out, rest: line.slice(at) };
}

const UINT = /^\d+$/;
const INT = /^-?\d+$/;
const HEX = /^0x[0-9a-f]+$/;

function uint(line: string, text: string | undefined, what: string): number {
  if (text === undefined || !UINT.test(text)) throw bad(line, `${what} is not a number`);
  return Number(text);
}

function json(line: string, text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw bad(line, `${what} is not JSON`);
  }
}

function textOrNull(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

export function parseHookLine(line: string): HookLine {
  const { words: [kind], rest } = words(line, 1);
  switch (kind) {
    case 'hit': {
      const parts = rest.split(' ');
      if (parts.at(-1) === '') parts.pop(); // a probe without values ends in a space
      const [probe, thread, pc, t, ...values] = parts;
      if (pc === undefined || !HEX.test(pc)) throw bad(line, 'the pc is not an address');
      if (t === undefined || !UINT.test(t)) throw bad(line, 'the time is not a number');
      for (const v of values) if (!INT.test(v)) throw bad(line, `the value ${JSON.stringify(v)} is not an integer`);
      return { kind, probe: uint(line, probe, 'the probe'), thread: uint(line, thread, 'the thread'), pc, tNs: BigInt(t), values };
    }
    case 'thread': {
      const w = words(rest, 3);
      const lwp = uint(line, w.words[2], 'the LWP');
      return { kind, thread: uint(line, w.words[0], 'the thread'), num: uint(line, w.words[1], 'the thread number'), lwp: lwp === 0 ? null : lwp, name: textOrNull(json(line, w.rest, 'the name')) };
    }
    case 'place': {
      const w = words(rest, 1);
      if (!HEX.test(w.words[0] ?? '')) throw bad(line, 'the pc is not an address');
      const p = json(line, w.rest, 'the place');
      if (typeof p !== 'object' || p === null) throw bad(line, 'the place is not an object');
      const o = p as Record<string, unknown>;
      return { kind, pc: w.words[0], func: textOrNull(o.func), file: textOrNull(o.file), line: typeof o.line === 'number' && Number.isInteger(o.line) ? o.line : null };
    }
    case 'error': {
      const w = words(rest, 2);
      const message = json(line, w.rest, 'the message');
      if (typeof message !== 'string') throw bad(line, 'the message is not a string');
      return { kind, probe: uint(line, w.words[0], 'the probe'), value: w.words[1] === '-' ? null : w.words[1] ?? null, message };
    }
    case 'mark':
      return { kind, id: uint(line, rest, 'the marker') };
    default:
      throw bad(line, `no line kind ${JSON.stringify(kind)}`);
  }
}
