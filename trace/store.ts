import Database from 'better-sqlite3';
import { existsSync, openSync, readSync, closeSync, statSync } from 'node:fs';
import { MigraceError, messageOf } from './errors.js';
import {
  EventSchema, NewSessionSchema, SessionExportSchema, SessionSchema, ThreadSchema,
  type NewEvent, type NewSession, type Session, type SessionExport, type SessionState,
  type Target, type Thread, type TraceEvent,
} from './schema.js';

/** 'MGRC': marks a SQLite file as ours, so we never rewrite somebody else's database. */
const APPLICATION_ID = 0x4d475243;

/**
 * Numbered schema migrations. Never edit a released step: add the next one.
 * user_version holds the number of steps applied.
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE sessions (
     id INTEGER PRIMARY KEY,
     label TEXT NOT NULL,
     created_at TEXT NOT NULL,
     origin TEXT NOT NULL,
     target TEXT NOT NULL,
     profile TEXT,
     state TEXT NOT NULL,
     error TEXT,
     meta TEXT NOT NULL
   );
   CREATE TABLE threads (
     session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
     tid INTEGER NOT NULL,
     gdb_id INTEGER,
     lwp INTEGER,
     name TEXT,
     PRIMARY KEY (session_id, tid)
   );
   CREATE TABLE events (
     session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
     seq INTEGER NOT NULL,
     t_ns INTEGER,
     wall TEXT,
     thread INTEGER,
     kind TEXT NOT NULL,
     probe TEXT,
     pc TEXT,
     func TEXT,
     file TEXT,
     line INTEGER,
     data TEXT NOT NULL,
     PRIMARY KEY (session_id, seq)
   ) WITHOUT ROWID;`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

export interface SessionSummary extends Session {
  events: number;
  threads: number;
}

interface SessionRow {
  id: number; label: string; created_at: string; origin: string; target: string;
  profile: string | null; state: string; error: string | null; meta: string;
}
interface EventRow {
  seq: number; t_ns: number | null; wall: string | null; thread: number | null; kind: string;
  probe: string | null; pc: string | null; func: string | null; file: string | null; line: number | null;
  data: string;
}

function isSqliteFile(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(16);
    const n = readSync(fd, buf, 0, 16, 0);
    return n === 16 && buf.toString('latin1') === 'SQLite format 3\0';
  } finally {
    closeSync(fd);
  }
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new MigraceError('DB_FOREIGN', `corrupt ${what} in the trace database: not JSON`);
  }
}

/**
 * The SQLite trace store: the only code that knows the file format.
 * All writes are short transactions in WAL mode, so a reader (or a crash)
 * sees every batch that was committed.
 */
export class TraceStore {
  readonly path: string;
  private readonly db: Database.Database;

  private constructor(path: string, db: Database.Database) {
    this.path = path;
    this.db = db;
  }

  static open(path: string, opts: { readonly?: boolean } = {}): TraceStore {
    if (path.includes('\0')) throw new MigraceError('DB_OPEN', 'database path contains a NUL byte');
    const exists = existsSync(path);
    if (exists) {
      if (statSync(path).isDirectory()) throw new MigraceError('DB_OPEN', `${path} is a directory, not a trace database`);
      if (statSync(path).size > 0 && !isSqliteFile(path)) {
        throw new MigraceError('DB_FOREIGN', `${path} is not a migrace trace database (not an SQLite file); refusing to touch it`);
      }
    } else if (opts.readonly) {
      throw new MigraceError('DB_OPEN', `no trace database at ${path} (record or import something first)`);
    }
    let db: Database.Database;
    try {
      db = new Database(path, { readonly: opts.readonly ?? false, fileMustExist: opts.readonly ?? false });
    } catch (e) {
      throw new MigraceError('DB_OPEN', `cannot open trace database ${path}: ${messageOf(e)}`, { cause: e });
    }
    try {
      TraceStore.checkAndMigrate(path, db, opts.readonly ?? false);
    } catch (e) {
      db.close();
      throw e;
    }
    return new TraceStore(path, db);
  }

  private static checkAndMigrate(path: string, db: Database.Database, readonly: boolean): void {
    const appId = db.pragma('application_id', { simple: true }) as number;
    const version = db.pragma('user_version', { simple: true }) as number;
    const tables = (db.prepare(`SELECT count(*) AS n FROM sqlite_master`).get() as { n: number }).n;
    if (appId !== APPLICATION_ID && (tables > 0 || appId !== 0)) {
      throw new MigraceError('DB_FOREIGN', `${path} is an SQLite database that migrace did not create; refusing to touch it`);
    }
    if (version > SCHEMA_VERSION) {
      throw new MigraceError('DB_NEWER',
        `${path} uses trace schema ${version}, newer than this migrace understands (${SCHEMA_VERSION}); upgrade migrace to read it`);
    }
    if (readonly) {
      if (version < SCHEMA_VERSION) {
        throw new MigraceError('DB_OPEN', `${path} uses an older trace schema (${version}); open it once read-write to upgrade it`);
      }
      return;
    }
    try {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      db.transaction(() => {
        for (let v = version; v < SCHEMA_VERSION; v++) db.exec(MIGRATIONS[v]);
        db.pragma(`application_id = ${APPLICATION_ID}`);
        db.pragma(`user_version = ${SCHEMA_VERSION}`);
      })();
    } catch (e) {
      if (e instanceof MigraceError) throw e;
      throw new MigraceError('DB_WRITE', `cannot write trace database ${path}: ${messageOf(e)}`, { cause: e });
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private write<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof MigraceError) throw e;
      throw new MigraceError('DB_WRITE', `cannot ${what} in ${this.path}: ${messageOf(e)}`, { cause: e });
    }
  }

  createSession(input: NewSession): number {
    const s = NewSessionSchema.parse(input);
    return this.write('create a session', () => {
      const info = this.db.prepare(
        `INSERT INTO sessions (label, created_at, origin, target, profile, state, error, meta)
         VALUES (?, ?, ?, ?, ?, 'recording', NULL, ?)`,
      ).run(s.label, s.created_at ?? new Date().toISOString(), s.origin, JSON.stringify(s.target),
        s.profile === null || s.profile === undefined ? null : JSON.stringify(s.profile), JSON.stringify(s.meta));
      return Number(info.lastInsertRowid);
    });
  }

  /** Close a session. An aborted session keeps every event written so far. */
  finishSession(id: number, state: Exclude<SessionState, 'recording'>, error: string | null = null): void {
    this.write('finish the session', () => {
      this.db.prepare(`UPDATE sessions SET state = ?, error = ? WHERE id = ?`).run(state, error, id);
    });
  }

  updateSession(id: number, patch: { target?: Target; profile?: unknown; meta?: Record<string, unknown>; label?: string }): void {
    const current = this.session(id);
    const target = patch.target ?? current.target;
    const meta = { ...current.meta, ...(patch.meta ?? {}) };
    const profile = patch.profile === undefined ? current.profile : patch.profile;
    this.write('update the session', () => {
      this.db.prepare(`UPDATE sessions SET target = ?, profile = ?, meta = ?, label = ? WHERE id = ?`)
        .run(JSON.stringify(target), profile === null ? null : JSON.stringify(profile), JSON.stringify(meta),
          patch.label ?? current.label, id);
    });
  }

  private rowToSession(row: SessionRow): Session {
    const parsed = SessionSchema.safeParse({
      ...row,
      target: parseJson(row.target, `target of session ${row.id}`),
      profile: row.profile === null ? null : parseJson(row.profile, `profile of session ${row.id}`),
      meta: parseJson(row.meta, `meta of session ${row.id}`),
    });
    if (!parsed.success) {
      throw new MigraceError('DB_FOREIGN', `session ${row.id} in ${this.path} is malformed: ${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message}`);
    }
    return parsed.data;
  }

  session(id: number): Session {
    const row = this.db.prepare(`SELECT * FROM sessions WHERE id = ?`).get(id) as SessionRow | undefined;
    if (!row) throw new MigraceError('NOT_FOUND', `no session ${id} in ${this.path} (see "migrace sessions")`);
    return this.rowToSession(row);
  }

  /** The newest session, optionally of one origin. */
  latestSession(filter: { origins?: string[] } = {}): Session | null {
    const rows = this.db.prepare(`SELECT * FROM sessions ORDER BY id DESC`).all() as SessionRow[];
    const row = rows.find((r) => !filter.origins || filter.origins.includes(r.origin));
    return row ? this.rowToSession(row) : null;
  }

  listSessions(): SessionSummary[] {
    const rows = this.db.prepare(
      `SELECT s.*, (SELECT count(*) FROM events e WHERE e.session_id = s.id) AS n_events,
              (SELECT count(*) FROM threads t WHERE t.session_id = s.id) AS n_threads
       FROM sessions s ORDER BY s.id`,
    ).all() as Array<SessionRow & { n_events: number; n_threads: number }>;
    return rows.map((r) => ({ ...this.rowToSession(r), events: r.n_events, threads: r.n_threads }));
  }

  upsertThread(sessionId: number, thread: Thread): void {
    const t = ThreadSchema.parse(thread);
    this.write('record a thread', () => {
      // Keep what we knew when a later sighting lacks it (a name read after exit, say).
      this.db.prepare(
        `INSERT INTO threads (session_id, tid, gdb_id, lwp, name) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (session_id, tid) DO UPDATE SET
           gdb_id = coalesce(excluded.gdb_id, gdb_id),
           lwp = coalesce(excluded.lwp, lwp),
           name = coalesce(excluded.name, name)`,
      ).run(sessionId, t.tid, t.gdb_id, t.lwp, t.name);
    });
  }

  threads(sessionId: number): Thread[] {
    const rows = this.db.prepare(`SELECT tid, gdb_id, lwp, name FROM threads WHERE session_id = ? ORDER BY tid`).all(sessionId);
    return rows.map((r) => ThreadSchema.parse(r));
  }

  nextSeq(sessionId: number): number {
    const r = this.db.prepare(`SELECT max(seq) AS m FROM events WHERE session_id = ?`).get(sessionId) as { m: number | null };
    return r.m === null ? 0 : r.m + 1;
  }

  /** Append events with their seqs already assigned, in one transaction. */
  appendEvents(sessionId: number, events: readonly TraceEvent[]): void {
    if (events.length === 0) return;
    const insert = this.db.prepare(
      `INSERT INTO events (session_id, seq, t_ns, wall, thread, kind, probe, pc, func, file, line, data)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.write('append events', () => {
      this.db.transaction(() => {
        for (const e of events) {
          insert.run(sessionId, e.seq, e.t_ns, e.wall, e.thread, e.kind, e.probe, e.pc, e.func, e.file, e.line,
            JSON.stringify(e.data));
        }
      })();
    });
  }

  private rowToEvent(sessionId: number, r: EventRow): TraceEvent {
    const parsed = EventSchema.safeParse({ ...r, data: parseJson(r.data, `event ${r.seq} of session ${sessionId}`) });
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new MigraceError('DB_FOREIGN', `event ${r.seq} of session ${sessionId} is malformed: ${issue?.path.join('.')}: ${issue?.message}`);
    }
    return parsed.data;
  }

  /** A session's events in seq order. */
  events(sessionId: number): TraceEvent[] {
    return [...this.iterateEvents(sessionId)];
  }

  *iterateEvents(sessionId: number): Generator<TraceEvent> {
    const stmt = this.db.prepare(
      `SELECT seq, t_ns, wall, thread, kind, probe, pc, func, file, line, data FROM events WHERE session_id = ? ORDER BY seq`,
    );
    for (const r of stmt.iterate(sessionId) as IterableIterator<EventRow>) yield this.rowToEvent(sessionId, r);
  }

  eventCount(sessionId: number): number {
    return (this.db.prepare(`SELECT count(*) AS n FROM events WHERE session_id = ?`).get(sessionId) as { n: number }).n;
  }

  deleteSession(id: number): void {
    this.session(id);
    this.write('delete the session', () => {
      this.db.transaction(() => {
        this.db.prepare(`DELETE FROM events WHERE session_id = ?`).run(id);
        this.db.prepare(`DELETE FROM threads WHERE session_id = ?`).run(id);
        this.db.prepare(`DELETE FROM sessions WHERE id = ?`).run(id);
      })();
    });
  }

  exportSession(id: number): SessionExport {
    const { id: _id, ...session } = this.session(id);
    return { format: 'migrace-session', version: 1, session, threads: this.threads(id), events: this.events(id) };
  }

  /** Store an exported session as a new one; returns its id. Validates everything first. */
  importSession(data: unknown, source = 'input'): number {
    const parsed = SessionExportSchema.safeParse(data);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new MigraceError('BAD_INPUT', `${source} is not a migrace session export: ${issue?.path.join('.') || '(top)'}: ${issue?.message}`);
    }
    const x = parsed.data;
    for (let i = 1; i < x.events.length; i++) {
      if (x.events[i].seq <= x.events[i - 1].seq) {
        throw new MigraceError('BAD_INPUT', `${source}: events.${i}.seq (${x.events[i].seq}) does not increase`);
      }
    }
    return this.write('import the session', () => this.db.transaction(() => {
      const id = this.createSession({ ...x.session });
      this.db.prepare(`UPDATE sessions SET state = ?, error = ?, created_at = ? WHERE id = ?`)
        .run(x.session.state, x.session.error, x.session.created_at, id);
      for (const t of x.threads) this.upsertThread(id, t);
      this.appendEvents(id, x.events);
      return id;
    })());
  }
}

/**
 * Buffers the events of one session being recorded and writes them in short
 * transactions: every `batchMs`, every `batchSize` events, on flush() and on
 * process exit. Assigns strictly increasing seqs in arrival order.
 */
export class SessionWriter {
  private buffer: TraceEvent[] = [];
  private seq: number;
  private timer: NodeJS.Timeout | null = null;
  private readonly onExit = (): void => this.flush();
  private closed = false;

  constructor(
    private readonly store: TraceStore,
    readonly sessionId: number,
    private readonly opts: { batchMs?: number; batchSize?: number } = {},
  ) {
    this.seq = store.nextSeq(sessionId);
    process.on('exit', this.onExit);
  }

  push(event: NewEvent): TraceEvent {
    if (this.closed) throw new MigraceError('DB_WRITE', `session ${this.sessionId} is closed for writing`);
    const e = { ...event, seq: this.seq++ } as TraceEvent;
    this.buffer.push(e);
    if (this.buffer.length >= (this.opts.batchSize ?? 256)) this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.opts.batchMs ?? 25);
      this.timer.unref();
    }
    return e;
  }

  get written(): number {
    return this.seq;
  }

  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.buffer.length === 0) return;
    const batch = this.buffer;
    this.buffer = [];
    this.store.appendEvents(this.sessionId, batch);
  }

  close(): void {
    this.flush();
    this.closed = true;
    process.off('exit', this.onExit);
  }
}
