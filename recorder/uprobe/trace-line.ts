/**
 * One line of a tracing instance's trace_pipe, as the kernel prints it with
 * the default options:
 *
 *     qemu-system-x86-20611   [001] .....  5170.512774: transition_0: (0x55e0b6efcee0) addr=0x55e0b8e1a2e8 old=1 new=4
 *     <comm>-<tid>            [cpu] flags  sec.usec:    event:        (ip)             name=value ...
 *
 * comm is the thread's name at the hit (it may hold spaces and dashes, so
 * the tid is the last `-digits` before the CPU field); markers written to
 * trace_marker are `tracing_mark_write: TEXT`. Stages: split the header
 * from the body, then the body into the probe's ip and its arguments.
 */

export interface TraceHit {
  kind: 'hit';
  comm: string;
  tid: number;
  cpu: number;
  /** CLOCK_MONOTONIC (trace_clock mono), in ns; the kernel prints microseconds. */
  tsNs: bigint;
  event: string;
  ip: string | null;
  args: Map<string, string>;
}

export interface TraceMarker {
  kind: 'marker';
  tsNs: bigint;
  text: string;
}

export type TraceLine = TraceHit | TraceMarker;

const HEADER = /^\s*(.+?)-(\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(\d+)\]\s+(?:\S+\s+)?(\d+)\.(\d{6}):\s+([^:\s]+):\s?(.*)$/;

function microsToNs(sec: string, usec: string): bigint {
  return BigInt(sec) * 1_000_000_000n + BigInt(usec) * 1000n;
}

/** name=value pairs; values the kernel prints have no spaces (numbers, 0x addresses, or "(fault)"). */
function parseArgs(text: string): Map<string, string> {
  const args = new Map<string, string>();
  for (const part of text.trim().split(/\s+/)) {
    const eq = part.indexOf('=');
    if (eq > 0) args.set(part.slice(0, eq), part.slice(eq + 1));
  }
  return args;
}

/** A line of trace_pipe, or null for what is not an event line (a header, a lost-events notice). */
export function parseTraceLine(line: string): TraceLine | null {
  const m = HEADER.exec(line);
  if (!m) return null;
  const [, comm, tid, cpu, sec, usec, event, body] = m;
  const tsNs = microsToNs(sec, usec);
  if (event === 'tracing_mark_write') return { kind: 'marker', tsNs, text: body.trim() };
  const ip = /^\((0x[0-9a-f]+)(?:\s*<-\s*0x[0-9a-f]+)?\)\s*/.exec(body);
  return {
    kind: 'hit', comm, tid: Number(tid), cpu: Number(cpu), tsNs, event,
    ip: ip ? ip[1] : null,
    args: parseArgs(ip ? body.slice(ip[0].length) : body),
  };
}

/** Splits a byte stream into lines; keeps the partial last line for the next chunk. */
export class LineSplitter {
  private partial = '';

  push(chunk: string): string[] {
    const text = this.partial + chunk;
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    return lines;
  }
}
