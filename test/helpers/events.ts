import { type Session, type StateValue, type Thread, type TraceEvent } from '../../trace/schema.js';
import { statusValue, type StatusTableId } from '../../trace/status.js';

/*
 * Hand-built traces for unit tests and benches: seqs and clocks assigned in
 * call order, threads by object or tid, states by name (numbers from the
 * session's MigrationStatus table). No vitest import: the bench uses this too.
 */

export const MAIN: Thread = { tid: 1, gdb_id: 1, lwp: 1234, name: 'main' };
export const MIG: Thread = { tid: 2, gdb_id: 5, lwp: 1240, name: 'live_migration' };
export const IOTHREAD: Thread = { tid: 3, gdb_id: 3, lwp: 1236, name: 'IO mon_iothread' };

const RAM_ACTIVE = {
  transferred: 52035678, remaining: 81629184, total: 1091379200, duplicate: 241063, skipped: 0, normal: 12608,
  'normal-bytes': 51642368, 'dirty-pages-rate': 0, mbps: 268.3, 'dirty-sync-count': 1, 'postcopy-requests': 0,
  'page-size': 4096, 'multifd-bytes': 0, 'pages-per-second': 8192,
};
const RAM_COMPLETED = { ...RAM_ACTIVE, transferred: 138870891, remaining: 0, normal: 33661, 'normal-bytes': 137875456, 'dirty-sync-count': 3 };

/** query-migrate return objects, shaped as docs/qemu-facts.md's QMP section describes them. */
export const BODIES = {
  none: {},
  setup: { status: 'setup' },
  active: { status: 'active', 'total-time': 1520, 'setup-time': 12, 'expected-downtime': 300, ram: RAM_ACTIVE },
  completed: { status: 'completed', 'total-time': 3021, 'setup-time': 12, downtime: 35, ram: RAM_COMPLETED },
  cancelling: { status: 'cancelling', 'total-time': 880, 'setup-time': 12, 'expected-downtime': 300, ram: RAM_ACTIVE },
  cancelled: { status: 'cancelled' },
  /** LP#1994002: the switch took SETUP, the status store re-read ACTIVE. */
  lp1994002: { status: 'active' },
  /** The 7.2 race: the active branch, but populate_*() saw COMPLETED. */
  race72: { status: 'active', 'total-time': 0, 'setup-time': 12, downtime: 0, ram: RAM_COMPLETED },
  error: { error: { class: 'GenericError', desc: 'Command query-migrate has been disabled' } },
} as const;

/** `info migrate` text as QEMU 5.2 / 7.2 print it. */
export const HMP = {
  setup: 'Migration status: setup\ntotal time: 0 ms\n',
  active:
    'globals:\nstore-global-state: on\nonly-migratable: off\n' +
    'Migration status: active\ntotal time: 1520 ms\nexpected downtime: 300 ms\nsetup: 12 ms\n' +
    'transferred ram: 50816 kbytes\nthroughput: 268.30 mbps\nremaining ram: 79716 kbytes\ntotal ram: 1065800 kbytes\n' +
    'duplicate: 241063 pages\nskipped: 0 pages\nnormal: 12608 pages\nnormal bytes: 50432 kbytes\ndirty sync count: 1\n' +
    'page size: 4 kbytes\nmultifd bytes: 0 kbytes\npages-per-second: 8192\n',
  completed:
    'Migration status: completed\ntotal time: 3021 ms\ndowntime: 35 ms\nsetup: 12 ms\n' +
    'transferred ram: 135616 kbytes\nthroughput: 368.00 mbps\nremaining ram: 0 kbytes\ntotal ram: 1065800 kbytes\n',
  /** docs/qemu-facts.md, "The race and the fix": 5.2 prints this. */
  lp1994002: 'Migration status: active\ntotal time: 0 ms\n',
  /** docs/qemu-facts.md, the race patched 7.2 still has. */
  race72:
    'Migration status: active\ntotal time: 0 ms\ndowntime: 0 ms\nsetup: 12 ms\n' +
    'transferred ram: 135616 kbytes\nthroughput: 0.00 mbps\nremaining ram: 0 kbytes\ntotal ram: 1065800 kbytes\n',
  /** 10.1+ layout. */
  active101:
    'Status: active\nTime (ms): total=1520, setup=12, exp_down=300\nRAM info:\n  Throughput (Mbps): 268.30\n' +
    '  Sizes (KiB): pagesize=4, total=1065800,\n    transferred=50816, remain=79716,\n    precopy=50816, multifd=0, postcopy=0\n' +
    '  Pages: normal=12608, zero=241063, rate_per_sec=8192\n  Others: dirty_syncs=1\n',
} as const;

type ThreadArg = Thread | number | null;

export interface TraceOptions {
  startSeq?: number;
  /** Clock step per event; null gives t_ns null (imports without a clock). */
  stepNs?: number | null;
  table?: StatusTableId;
}

export class Trace {
  readonly events: TraceEvent[] = [];
  readonly threads: Thread[];
  readonly table: StatusTableId;
  private nextSeq: number;
  private t = 0;
  private readonly stepNs: number | null;

  constructor(threads: Thread[] = [MAIN, MIG], opts: TraceOptions = {}) {
    this.threads = threads;
    this.table = opts.table ?? '4.2';
    this.nextSeq = opts.startSeq ?? 1;
    this.stepNs = opts.stepNs === undefined ? 1_000 : opts.stepNs;
  }

  /** Seq the next event will get. */
  get seq(): number {
    return this.nextSeq;
  }

  sv(name: string): StateValue {
    return { value: statusValue(name, this.table), name };
  }

  /** Let time pass without an event (polling gaps). */
  wait(ns: number): this {
    this.t += ns;
    return this;
  }

  /** Skip seqs, as a store does when events were lost. */
  skip(n: number): this {
    this.nextSeq += n;
    return this;
  }

  /** Every event is built here, with one property order: one hidden class for all kinds. */
  private mk<K extends TraceEvent['kind']>(kind: K, thread: ThreadArg, probe: string | null, data: Extract<TraceEvent, { kind: K }>['data']): number {
    const seq = this.nextSeq++;
    let t_ns: number | null = null;
    if (this.stepNs !== null) {
      this.t += this.stepNs;
      t_ns = this.t;
    }
    const tid = thread === null ? null : typeof thread === 'number' ? thread : thread.tid;
    const e = { seq, t_ns, wall: null, thread: tid, probe, pc: null, func: null, file: null, line: null, kind, data } as TraceEvent;
    this.events.push(e);
    return seq;
  }

  transition(thread: ThreadArg, old: string | null, neu: string, addr: string | null = '0x5555d0a4c2e8'): number {
    return this.mk('transition', thread, 'transition', { addr, old: old === null ? null : this.sv(old), new: this.sv(neu) });
  }

  read(thread: ThreadArg, value: string): number {
    return this.mk('read', thread, 'read', { value: this.sv(value) });
  }

  publish(thread: ThreadArg, value: string): number {
    return this.mk('publish', thread, 'publish', { value: this.sv(value) });
  }

  queryBegin(thread: ThreadArg, query: string): number {
    return this.mk('query-begin', thread, 'query', { query });
  }

  queryEnd(thread: ThreadArg, query: string): number {
    return this.mk('query-end', thread, 'query', { query });
  }

  /** A reply; status and has_ram are derived from the body the way a recorder would. */
  reply(query: string | null, body: unknown, opts: { thread?: ThreadArg; command?: string } = {}): number {
    const command = opts.command ?? (typeof body === 'string' ? 'info migrate' : 'query-migrate');
    const { status, has_ram } = summarizeBody(body);
    return this.mk('reply', opts.thread ?? null, null, { query, command, status, has_ram, body });
  }

  hold(thread: ThreadArg, role: string, reason = 'schedule'): number {
    return this.mk('hold', thread, null, { role, reason });
  }

  release(thread: ThreadArg, role: string, reason = 'schedule'): number {
    return this.mk('release', thread, null, { role, reason });
  }

  note(text: string, thread: ThreadArg = null): number {
    return this.mk('note', thread, null, { text });
  }

  /** A whole undisturbed query: begin, read, publish, end, reply. Returns the read's seq. */
  query(thread: ThreadArg, id: string, state: string, body: unknown = bodyFor(state)): number {
    this.queryBegin(thread, id);
    const r = this.read(thread, state);
    if (state !== 'none') this.publish(thread, state); // the NONE branch returns before the store
    this.queryEnd(thread, id);
    this.reply(id, body);
    return r;
  }

  session(overrides: Partial<Session> = {}): Session {
    return makeSession({ ...overrides, target: { ...makeSession().target, status_table: this.table, ...overrides.target } });
  }
}

export function bodyFor(state: string): unknown {
  return (BODIES as Record<string, unknown>)[state] ?? { status: state };
}

/** What a recorder stores next to the body; deliberately independent of analyzer/verdict.ts. */
export function summarizeBody(body: unknown): { status: string | null; has_ram: boolean } {
  if (typeof body === 'string') {
    const m = /^(?:Migration status|Status): (\S+)/m.exec(body);
    return { status: m ? m[1]! : null, has_ram: /^(?:transferred ram:|RAM info:)/m.test(body) };
  }
  if (body !== null && typeof body === 'object') {
    const o = body as Record<string, unknown>;
    return { status: typeof o['status'] === 'string' ? o['status'] : null, has_ram: 'ram' in o };
  }
  return { status: null, has_ram: false };
}

export function makeSession(overrides: Partial<Session> = {}): Session {
  return {
    id: 7,
    label: 'test',
    created_at: '2026-01-01T00:00:00Z',
    origin: 'live',
    target: { kind: 'minimig', binary: '/x/minimig', build_id: null, qemu_version: null, variant: 'unpatched', status_table: '4.2' },
    profile: null,
    state: 'complete',
    error: null,
    meta: {},
    ...overrides,
  };
}

export interface Synthetic {
  session: Session;
  threads: Thread[];
  events: TraceEvent[];
  /** Read seqs of the planted windows, in order. */
  manifested: number[];
  benign: number[];
}

/**
 * `n` events of repeated migrations polled by query-migrate: none->setup by
 * main, setup->active and active->completed by live_migration, `perPhase`
 * queries per state. Every `raceEvery`-th migration has setup->active inside
 * a query window, alternately published as active (manifested) and as setup
 * (benign). Padded with notes to exactly n.
 */
export function syntheticPolling(n: number, opts: { perPhase?: number; raceEvery?: number } = {}): Synthetic {
  const perPhase = opts.perPhase ?? 20;
  const raceEvery = opts.raceEvery ?? 10;
  const tr = new Trace([MAIN, MIG], { stepNs: 50_000 });
  const manifested: number[] = [];
  const benign: number[] = [];
  const cycleLen = 8 + 15 * perPhase;
  let q = 0;
  let cycle = 0;
  while (tr.events.length + cycleLen <= n) {
    tr.transition(MAIN, 'none', 'setup');
    for (let i = 0; i < perPhase; i++) tr.query(MAIN, `q${++q}`, 'setup');
    if (cycle % raceEvery === raceEvery - 1) {
      const id = `q${++q}`;
      tr.queryBegin(MAIN, id);
      const r = tr.read(MAIN, 'setup');
      const published = manifested.length <= benign.length ? 'active' : 'setup';
      tr.transition(MIG, 'setup', 'active');
      // A benign window as replays make them: the writer held at its probe and
      // released inside the window (the proof its swap landed there).
      if (published === 'setup') {
        tr.hold(MIG, 'writer');
        tr.release(MIG, 'writer');
      }
      tr.publish(MAIN, published);
      tr.queryEnd(MAIN, id);
      tr.reply(id, published === 'active' ? BODIES.lp1994002 : BODIES.setup);
      (published === 'active' ? manifested : benign).push(r);
    } else {
      tr.transition(MIG, 'setup', 'active');
      tr.note('between queries');
      tr.note('between queries');
      tr.note('between queries');
      tr.note('between queries');
      tr.note('between queries');
    }
    for (let i = 0; i < perPhase; i++) tr.query(MAIN, `q${++q}`, 'active');
    tr.transition(MIG, 'active', 'completed');
    for (let i = 0; i < perPhase; i++) tr.query(MAIN, `q${++q}`, 'completed');
    cycle++;
  }
  while (tr.events.length < n) tr.note('padding');
  return { session: tr.session(), threads: tr.threads, events: tr.events, manifested, benign };
}
