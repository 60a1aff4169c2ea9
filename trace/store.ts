import { zodProblems } from './zod-problems.js';
import Database from 'better-sqlite3';
import { accessSync, closeSync, constants, existsSync, openSync, readdirSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { MigraceError, messageOf } from './errors.js';
import { EVENT_COLUMNS, eventFromRow, type EventRow } from './event-row.js';
import { ownStartTime, processIsAlive } from './proc.js';
import {
  NewSessionSchema, SessionExportSchema, SessionSchema, TargetSchema, ThreadSchema,
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
  // Who is writing a recording session: a session left 'recording' by a
  // process that is gone (SIGKILL, a crash, a full disk) is marked aborted
  // by the next writer that opens the file.
  `ALTER TABLE sessions ADD COLUMN writer_pid INTEGER;
   ALTER TABLE sessions ADD COLUMN writer_start TEXT;`,
  // migrace hunt: one row per hunt (its build, profile, and what it learned
  // as JSON), one per matrix cell, written as each cell ends.
  `CREATE TABLE hunts (
     id INTEGER PRIMARY KEY,
     created_at TEXT NOT NULL,
     label TEXT NOT NULL,
     state TEXT NOT NULL,
     error TEXT,
     target TEXT NOT NULL,
     profile TEXT NOT NULL,
     data TEXT NOT NULL,
     writer_pid INTEGER,
     writer_start TEXT
   );
   CREATE TABLE hunt_cells (
     hunt_id INTEGER NOT NULL REFERENCES hunts(id) ON DELETE CASCADE,
     row TEXT NOT NULL,
     col TEXT NOT NULL,
     class TEXT NOT NULL,
     session_id INTEGER REFERENCES sessions(id) ON DELETE SET NULL,
     data TEXT NOT NULL,
     PRIMARY KEY (hunt_id, row, col)
   ) WITHOUT ROWID;`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** A hunt as stored; `data` and the cells' `data` are the hunt's own JSON (analyzer/hunt-record.ts reads them). */
export interface StoredHunt {
  id: number;
  created_at: string;
  label: string;
  state: 'running' | 'complete' | 'aborted';
  error: string | null;
  target: Target;
  profile: unknown;
  data: unknown;
}

export interface StoredHuntCell {
  row: string;
  col: string;
  class: string;
  session_id: number | null;
  data: unknown;
}

export interface SessionSummary extends Session {
  events: number;
  threads: number;
}

interface SessionRow {
  id: number; label: string; created_at: string; origin: string; target: string;
  profile: string | null; state: string; error: string | null; meta: string;
  writer_pid?: number | null; writer_start?: string | null;
}

/** A session a dead process left 'recording', closed by this open. */
export interface AbandonedSession {
  id: number;
  pid: number;
  events: number;
}

/** Room kept next to a database being recorded into, so a full disk can still close the session. */
const RESERVE_BYTES = 64 * 1024;
const RESERVE_SUFFIX = '.migrace-reserve-';

/**
 * What a failed SQLite write means for the user. better-sqlite3 reports
 * ENOSPC and EFBIG (a file-size limit) both as SQLITE_FULL.
 */
function storageProblem(e: unknown, path: string): string | null {
  const code = (e as { code?: unknown }).code;
  if (typeof code !== 'string') return null;
  if (code === 'SQLITE_FULL') return `the disk holding ${path} is full, or a file-size limit was reached`;
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) return `${path} is locked by another process`;
  if (code.startsWith('SQLITE_READONLY')) return `${path} is read-only`;
  if (code === 'SQLITE_IOERR_WRITE') return `writing ${path} failed (a file-size limit such as ulimit -f, or a disk error)`;
  if (code.startsWith('SQLITE_IOERR')) return `${path} cannot be written (I/O error ${code})`;
  if (isCorruption(e)) return `${path} is corrupt (integrity check: ${integrityProblem(path) ?? messageOf(e)})`;
  return null;
}
/** SQLite's codes for a damaged file. */
function isCorruption(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' && (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB');
}

/** SQLite's own words on one line: an integrity check lists its findings one per row, some over several lines. */
function oneLine(text: string): string {
  return text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !/^\*\*\* in database \w+ \*\*\*$/.test(l)).join('; ').slice(0, 300);
}

/**
 * The first problem SQLite's integrity check finds in a file, or what
 * stopped the check (a file so damaged it cannot be read); null when the
 * check passes.
 */
function integrityProblem(path: string): string | null {
  let db: Database.Database | null = null;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
    const first = db.pragma('integrity_check(1)', { simple: true });
    return first === 'ok' ? null : oneLine(String(first));
  } catch (e) {
    return oneLine(messageOf(e));
  } finally {
    db?.close();
  }
}

/** The quick check of an open file: its first problem, or null. */
function integrityOf(db: Database.Database): string | null {
  const first = db.pragma('quick_check(1)', { simple: true });
  return first === 'ok' ? null : oneLine(String(first));
}

function corruptError(path: string, problem: string): MigraceError {
  return new MigraceError('DB_CORRUPT',
    `${path} is corrupt (integrity check: ${problem}); migrace writes nothing into it: restore a copy, or salvage what SQLite can read with "sqlite3 ${path} .recover"`);
}

/**
 * Why a writer may not write `path`, checked before SQLite opens it: SQLite
 * would open a file it may not write read-only without a word, and fail at
 * the first write. It also needs to create its journal files next to the
 * database. null when writing is allowed (or the folder is missing: the
 * open then says so).
 */
function writeRefusal(path: string, exists: boolean): string | null {
  const denied = (p: string): string | null => {
    try {
      accessSync(p, constants.W_OK);
      return null;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code ?? 'EACCES';
    }
  };
  const dir = dirname(path);
  const file = exists ? denied(path) : null;
  const folder = existsSync(dir) ? denied(dir) : null;
  if (file === 'EROFS' || folder === 'EROFS') return `${path} is on a read-only file system`;
  if (file) return `${path} is read-only (you may not write it)`;
  if (folder) return `${path} is in a folder you may not write (${dir}), where SQLite must create its journal`;
  return null;
}

/**
 * A SQLite failure as the error migrace reports: a corrupt file quoting its
 * integrity check, a read-only one saying so; null for anything else. For
 * callers that meet SQLite's errors outside the store's own wrappers (the
 * CLI, for an error met while reading).
 */
export function storageError(path: string, e: unknown): MigraceError | null {
  if (e instanceof MigraceError) return e;
  if (isCorruption(e)) return corruptError(path, integrityProblem(path) ?? oneLine(messageOf(e)));
  const code = (e as { code?: unknown }).code;
  // Only a WAL file that exists explains a failed open this way: anything else is the caller's "cannot open".
  if ((code === 'SQLITE_READONLY_DIRECTORY' || code === 'SQLITE_CANTOPEN') && isWalFile(path)) {
    return new MigraceError('DB_OPEN',
      `cannot read ${path}: it is in WAL mode and SQLite must create ${basename(path)}-shm in ${dirname(path)}, which you may not write (a migrace that writes the file switches it back to rollback mode when it closes it; or read a copy)`, { cause: e });
  }
  const problem = storageProblem(e, path);
  return problem ? new MigraceError('DB_WRITE', problem, { cause: e }) : null;
}

interface HuntRow {
  id: number; created_at: string; label: string; state: string; error: string | null;
  target: string; profile: string; data: string; writer_pid: number | null; writer_start: string | null;
}

/** A SQLite file whose header says WAL (bytes 18 and 19 are 2); false for anything unreadable. */
function isWalFile(path: string): boolean {
  try {
    const fd = openSync(path, 'r');
    try {
      const buf = Buffer.alloc(20);
      return readSync(fd, buf, 0, 20, 0) === 20 && buf.toString('latin1', 0, 16) === 'SQLite format 3\0' && buf[18] === 2 && buf[19] === 2;
    } finally {
      closeSync(fd);
    }
  } catch {
    return false;
  }
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
    const readonly = opts.readonly ?? false;
    if (path.includes('\0')) throw new MigraceError('DB_OPEN', 'database path contains a NUL byte');
    const exists = existsSync(path);
    if (exists) {
      if (statSync(path).isDirectory()) throw new MigraceError('DB_OPEN', `${path} is a directory, not a trace database`);
      if (statSync(path).size > 0 && !isSqliteFile(path)) {
        throw new MigraceError('DB_FOREIGN', `${path} is not a migrace trace database (not an SQLite file); refusing to touch it`);
      }
    } else if (readonly) {
      throw new MigraceError('DB_OPEN', `no trace database at ${path} (record or import something first)`);
    }
    if (!readonly) {
      const refused = writeRefusal(path, exists);
      if (refused) {
        throw new MigraceError('DB_OPEN', `${refused}: record, replay and import need a trace database they can write (choose one with --db); sessions, analyze and report only read it`);
      }
    }
    let db: Database.Database;
    try {
      db = new Database(path, { readonly, fileMustExist: readonly });
    } catch (e) {
      throw storageError(path, e) ?? new MigraceError('DB_OPEN', `cannot open trace database ${path}: ${messageOf(e)}`, { cause: e });
    }
    try {
      TraceStore.checkAndMigrate(path, db, readonly);
    } catch (e) {
      db.close();
      throw storageError(path, e) ?? new MigraceError('DB_OPEN', `cannot open trace database ${path}: ${messageOf(e)}`, { cause: e });
    }
    const store = new TraceStore(path, db);
    if (!readonly) store.abandoned = store.closeAbandoned();
    return store;
  }

  /** Sessions this open found left 'recording' by a dead process and marked aborted. */
  abandoned: AbandonedSession[] = [];

  /**
   * Mark the sessions of writers that are gone as aborted (they keep every
   * event they committed), and remove the disk reserves such writers left.
   * A session of a live writer, or one from before writers were recorded, is
   * left as it is.
   */
  private closeAbandoned(): AbandonedSession[] {
    const rows = this.statement(
      `SELECT id, writer_pid, writer_start, (SELECT count(*) FROM events e WHERE e.session_id = s.id) AS n
       FROM sessions s WHERE state = 'recording' AND writer_pid IS NOT NULL`,
    ).all() as Array<{ id: number; writer_pid: number; writer_start: string | null; n: number }>;
    const dead = rows.filter((r) => !processIsAlive(r.writer_pid, r.writer_start));
    if (dead.length > 0) {
      try {
        const mark = this.statement(`UPDATE sessions SET state = 'aborted', error = ? WHERE id = ? AND state = 'recording'`);
        this.db.transaction(() => {
          for (const r of dead) {
            mark.run(`the recording process (pid ${r.writer_pid}) ended without closing the session (killed, or its disk was full); the ${r.n} events it stored are kept`, r.id);
          }
        })();
      } catch {
        // Read-only after all, or locked: a later writer tries again.
        return [];
      }
    }
    this.removeDeadReserves();
    return dead.map((r) => ({ id: r.id, pid: r.writer_pid, events: r.n }));
  }

  private reservePath(pid = process.pid): string {
    return `${this.path}${RESERVE_SUFFIX}${pid}`;
  }

  private removeDeadReserves(): void {
    const dir = dirname(this.path);
    const prefix = `${basename(this.path)}${RESERVE_SUFFIX}`;
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      if (!name.startsWith(prefix)) continue;
      const pid = Number(name.slice(prefix.length));
      if (Number.isSafeInteger(pid) && pid > 0 && !processIsAlive(pid)) rmSync(join(dir, name), { force: true });
    }
  }

  /**
   * Keep a little disk space in reserve while recording: when the disk fills
   * up, giving it back is what lets the session still be closed as aborted.
   */
  holdReserve(): void {
    try {
      writeFileSync(this.reservePath(), Buffer.alloc(RESERVE_BYTES), { flag: 'wx', mode: 0o600 });
    } catch {
      /* already held, or no room even for that: the close may then fail, and the next open marks the session */
    }
  }

  releaseReserve(): void {
    rmSync(this.reservePath(), { force: true });
  }

  /**
   * Refuse what is not ours or too new, then bring a writer's file to the
   * current schema. Two migrace processes may create the same new file at
   * once: the migrations run in an IMMEDIATE transaction (the second waits
   * for the first) that reads the schema version again once it holds the
   * lock, so the second finds the work done.
   */
  private static checkAndMigrate(path: string, db: Database.Database, readonly: boolean): void {
    const look = (): { appId: number; version: number } => {
      const appId = db.pragma('application_id', { simple: true }) as number;
      const version = db.pragma('user_version', { simple: true }) as number;
      const tables = (db.prepare(`SELECT count(*) AS n FROM sqlite_master`).get() as { n: number }).n;
      // An empty file is ours to claim; anything somebody else marked (tables, an id, a version) is not.
      if (appId !== APPLICATION_ID && (tables > 0 || appId !== 0 || version !== 0)) {
        throw new MigraceError('DB_FOREIGN', `${path} is an SQLite database that migrace did not create; refusing to touch it`);
      }
      if (version > SCHEMA_VERSION) {
        throw new MigraceError('DB_NEWER',
          `${path} uses trace schema ${version}, newer than this migrace understands (${SCHEMA_VERSION}); upgrade migrace to read it`);
      }
      return { appId, version };
    };
    // One read transaction: read one by one, the id, version and tables could come from before and after another process created the file.
    const { appId, version } = db.transaction(look)();
    // A writer adds to the file (even setting WAL mode writes its header): into a damaged one it would bury what can still be salvaged.
    if (!readonly) {
      const problem = integrityOf(db);
      if (problem) throw corruptError(path, problem);
    }
    if (readonly) {
      if (version < SCHEMA_VERSION) {
        throw new MigraceError('DB_OPEN', `${path} uses an older trace schema (${version}); open it once read-write to upgrade it`);
      }
      return;
    }
    try {
      setWalMode(db);
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      // A file at the current schema needs no write to open: another
      // process holding a write lock must not keep readers of it out.
      if (version < SCHEMA_VERSION || appId !== APPLICATION_ID) {
        db.transaction(() => {
          const now = look();
          for (let v = now.version; v < SCHEMA_VERSION; v++) db.exec(MIGRATIONS[v]);
          if (now.appId !== APPLICATION_ID) db.pragma(`application_id = ${APPLICATION_ID}`);
          if (now.version !== SCHEMA_VERSION) db.pragma(`user_version = ${SCHEMA_VERSION}`);
        }).immediate();
      }
    } catch (e) {
      if (e instanceof MigraceError || isCorruption(e)) throw e;
      throw new MigraceError('DB_WRITE', `cannot write trace database ${path}: ${messageOf(e)}`, { cause: e });
    }
  }

  /**
   * A writer leaves the file in rollback-journal mode when it is the last
   * one to close it: a WAL file that has no -shm next to it can only be read
   * by somebody who may create one there, so a database recorded by root
   * would be unreadable for other users, and on read-only media. With other
   * connections open, SQLite refuses the switch (busy) and the next closer
   * makes it.
   */
  close(): void {
    if (!this.db.open) return;
    if (!this.db.readonly) {
      try {
        this.db.pragma('busy_timeout = 0');
        this.db.pragma('journal_mode = DELETE');
      } catch {
        /* others have it open, or the disk is full: it stays in WAL mode, which is just as correct */
      }
    }
    this.db.close();
  }

  /**
   * Statements by their SQL, each prepared once: an import prepared a dozen
   * for every session it wrote. Not for iterate(): a statement being
   * iterated cannot serve another query (iterateEvents prepares its own).
   */
  private readonly statements = new Map<string, Database.Statement>();

  private statement(sql: string): Database.Statement {
    let stmt = this.statements.get(sql);
    if (!stmt) this.statements.set(sql, (stmt = this.db.prepare(sql)));
    return stmt;
  }

  private write<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof MigraceError) throw e;
      const problem = storageProblem(e, this.path);
      throw new MigraceError('DB_WRITE', problem ? `cannot ${what}: ${problem}` : `cannot ${what} in ${this.path}: ${messageOf(e)}`, { cause: e });
    }
  }

  /**
   * A write that must get through when the file is full: on failure, give
   * back the reserve and move the WAL into the database (a file-size limit
   * counts per file), then try once more.
   */
  private writeOrRescue<T>(what: string, fn: () => T): T {
    try {
      return this.write(what, fn);
    } catch (first) {
      this.releaseReserve();
      try {
        this.db.pragma('wal_checkpoint(TRUNCATE)');
      } catch {
        /* the retry says whether it helped */
      }
      try {
        return this.write(what, fn);
      } catch {
        throw first;
      }
    }
  }

  createSession(input: NewSession): number {
    const s = NewSessionSchema.parse(input);
    return this.write('create a session', () => {
      const info = this.statement(
        `INSERT INTO sessions (label, created_at, origin, target, profile, state, error, meta, writer_pid, writer_start)
         VALUES (?, ?, ?, ?, ?, 'recording', NULL, ?, ?, ?)`,
      ).run(s.label, s.created_at ?? new Date().toISOString(), s.origin, JSON.stringify(s.target),
        s.profile === null || s.profile === undefined ? null : JSON.stringify(s.profile), JSON.stringify(s.meta),
        process.pid, ownStartTime());
      return Number(info.lastInsertRowid);
    });
  }

  /** Close a session. An aborted session keeps every event written so far. */
  finishSession(id: number, state: Exclude<SessionState, 'recording'>, error: string | null = null): void {
    this.writeOrRescue(`close session ${id}`, () => {
      this.statement(`UPDATE sessions SET state = ?, error = ? WHERE id = ?`).run(state, error, id);
    });
    this.releaseReserve();
  }

  /** The last threads and events of a session and its closing, in one transaction. */
  finishSessionWith(id: number, threads: readonly Thread[], events: readonly TraceEvent[], state: Exclude<SessionState, 'recording'>, error: string | null): void {
    this.write(`close session ${id}`, () => {
      this.db.transaction(() => {
        this.appendBatch(id, threads, events);
        this.statement(`UPDATE sessions SET state = ?, error = ? WHERE id = ?`).run(state, error, id);
      })();
    });
    this.releaseReserve();
  }

  updateSession(id: number, patch: { target?: Target; profile?: unknown; meta?: Record<string, unknown>; label?: string }): void {
    const current = this.session(id);
    const target = patch.target ?? current.target;
    const meta = { ...current.meta, ...(patch.meta ?? {}) };
    const profile = patch.profile === undefined ? current.profile : patch.profile;
    this.write('update the session', () => {
      this.statement(`UPDATE sessions SET target = ?, profile = ?, meta = ?, label = ? WHERE id = ?`)
        .run(JSON.stringify(target), profile === null ? null : JSON.stringify(profile), JSON.stringify(meta),
          patch.label ?? current.label, id);
    });
  }

  private rowToSession(full: SessionRow): Session {
    const { writer_pid: pid, writer_start: start, ...row } = full;
    // Read-only opens do not write the mark; they show what the next writer will.
    if (row.state === 'recording' && typeof pid === 'number' && !processIsAlive(pid, start)) {
      row.state = 'aborted';
      row.error = `the recording process (pid ${pid}) ended without closing the session (killed, or its disk was full)`;
    }
    const parsed = SessionSchema.safeParse({
      ...row,
      target: parseJson(row.target, `target of session ${row.id}`),
      profile: row.profile === null ? null : parseJson(row.profile, `profile of session ${row.id}`),
      meta: parseJson(row.meta, `meta of session ${row.id}`),
    });
    if (!parsed.success) {
      throw new MigraceError('DB_FOREIGN', `session ${row.id} in ${this.path} is malformed: ${zodProblems(parsed.error)}`);
    }
    return parsed.data;
  }

  session(id: number): Session {
    const row = this.statement(`SELECT * FROM sessions WHERE id = ?`).get(id) as SessionRow | undefined;
    if (!row) throw new MigraceError('NOT_FOUND', `no session ${id} in ${this.path} (see "migrace sessions")`);
    return this.rowToSession(row);
  }

  /** The newest session, optionally of one origin. */
  latestSession(filter: { origins?: string[] } = {}): Session | null {
    const rows = this.statement(`SELECT * FROM sessions ORDER BY id DESC`).all() as SessionRow[];
    const row = rows.find((r) => !filter.origins || filter.origins.includes(r.origin));
    return row ? this.rowToSession(row) : null;
  }

  listSessions(): SessionSummary[] {
    const rows = this.statement(
      `SELECT s.*, (SELECT count(*) FROM events e WHERE e.session_id = s.id) AS n_events,
              (SELECT count(*) FROM threads t WHERE t.session_id = s.id) AS n_threads
       FROM sessions s ORDER BY s.id`,
    ).all() as Array<SessionRow & { n_events: number; n_threads: number }>;
    return rows.map((r) => ({ ...this.rowToSession(r), events: r.n_events, threads: r.n_threads }));
  }

  upsertThread(sessionId: number, thread: Thread): void {
    this.appendBatch(sessionId, [thread], []);
  }

  threads(sessionId: number): Thread[] {
    const rows = this.statement(`SELECT tid, gdb_id, lwp, name FROM threads WHERE session_id = ? ORDER BY tid`).all(sessionId);
    return rows.map((r) => ThreadSchema.parse(r));
  }

  nextSeq(sessionId: number): number {
    const r = this.statement(`SELECT max(seq) AS m FROM events WHERE session_id = ?`).get(sessionId) as { m: number | null };
    return r.m === null ? 0 : r.m + 1;
  }

  /** Append events with their seqs already assigned, in one transaction. */
  appendEvents(sessionId: number, events: readonly TraceEvent[]): void {
    this.appendBatch(sessionId, [], events);
  }

  /** The event writes, prepared once: a recording runs them every few milliseconds. */
  private eventSql: { append: (sessionId: number, threads: readonly Thread[], events: readonly TraceEvent[]) => void } | null = null;

  /** busy_timeout as the store was opened with, read once (a batch may shorten it for its own write). */
  private openBusyMs: number | null = null;

  private eventStatements(): NonNullable<TraceStore['eventSql']> {
    if (this.eventSql) return this.eventSql;
    const upsert = this.db.prepare(
      `INSERT INTO threads (session_id, tid, gdb_id, lwp, name) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (session_id, tid) DO UPDATE SET
         gdb_id = coalesce(excluded.gdb_id, gdb_id),
         lwp = coalesce(excluded.lwp, lwp),
         name = coalesce(excluded.name, name)`,
    );
    const insert = this.db.prepare(
      `INSERT INTO events (session_id, seq, t_ns, wall, thread, kind, probe, pc, func, file, line, data)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const append = this.db.transaction((sessionId: number, threads: readonly Thread[], events: readonly TraceEvent[]) => {
      for (const t of threads) upsert.run(sessionId, t.tid, t.gdb_id, t.lwp, t.name);
      for (const e of events) {
        insert.run(sessionId, e.seq, e.t_ns, e.wall, e.thread, e.kind, e.probe, e.pc, e.func, e.file, e.line, JSON.stringify(e.data));
      }
    });
    return (this.eventSql = { append });
  }

  /**
   * Threads (kept: what an earlier sighting knew and a later one lacks) and
   * events in one transaction. With `busyTimeoutMs`, a lock held by another
   * process is waited for that long only (a recorder must not stall its
   * target for the default 5 s), and the caller retries. Events are the
   * store's own kind (built by recorders, or validated where they entered):
   * they are written as they are.
   */
  appendBatch(sessionId: number, threads: readonly Thread[], events: readonly TraceEvent[], opts: { busyTimeoutMs?: number } = {}): void {
    if (threads.length === 0 && events.length === 0) return;
    const { append } = this.eventStatements();
    const checked = threads.map((t) => ThreadSchema.parse(t));
    const busy = opts.busyTimeoutMs === undefined ? null : Math.max(0, Math.floor(opts.busyTimeoutMs));
    if (busy !== null) {
      this.openBusyMs ??= this.db.pragma('busy_timeout', { simple: true }) as number;
      this.db.pragma(`busy_timeout = ${busy}`);
    }
    try {
      this.write(`store events of session ${sessionId}`, () => append(sessionId, checked, events));
    } finally {
      if (busy !== null) this.db.pragma(`busy_timeout = ${this.openBusyMs}`);
    }
  }

  /** A session's events in seq order. */
  events(sessionId: number): TraceEvent[] {
    return [...this.iterateEvents(sessionId)];
  }

  /**
   * Rows this store wrote get a structural check (trace/event-row.ts), not
   * a second validation. Prepared per call: a statement being iterated
   * cannot serve a second iteration.
   */
  *iterateEvents(sessionId: number): Generator<TraceEvent> {
    const stmt = this.db.prepare(`SELECT ${EVENT_COLUMNS} FROM events WHERE session_id = ? ORDER BY seq`).raw();
    const where = (): string => `session ${sessionId} in ${this.path}`;
    for (const r of stmt.iterate(sessionId) as IterableIterator<EventRow>) yield eventFromRow(r, where);
  }

  eventCount(sessionId: number): number {
    return (this.statement(`SELECT count(*) AS n FROM events WHERE session_id = ?`).get(sessionId) as { n: number }).n;
  }

  deleteSession(id: number): void {
    this.session(id);
    this.write('delete the session', () => {
      this.db.transaction(() => {
        this.statement(`DELETE FROM events WHERE session_id = ?`).run(id);
        this.statement(`DELETE FROM threads WHERE session_id = ?`).run(id);
        this.statement(`DELETE FROM sessions WHERE id = ?`).run(id);
      })();
    });
  }

  /* The hunt's tables: a hunt, its cells as they end, and reading them back. */

  createHunt(h: { label: string; target: Target; profile: unknown; data: unknown }): number {
    return this.write('create a hunt', () => Number(this.statement(
      `INSERT INTO hunts (created_at, label, state, error, target, profile, data, writer_pid, writer_start)
       VALUES (?, ?, 'running', NULL, ?, ?, ?, ?, ?)`,
    ).run(new Date().toISOString(), h.label, JSON.stringify(TargetSchema.parse(h.target)), JSON.stringify(h.profile), JSON.stringify(h.data),
      process.pid, ownStartTime()).lastInsertRowid));
  }

  updateHunt(id: number, patch: { state?: 'complete' | 'aborted'; error?: string | null; data?: unknown }): void {
    this.write(`update hunt ${id}`, () => {
      const set = this.statement(`UPDATE hunts SET state = coalesce(?, state), error = coalesce(?, error), data = coalesce(?, data) WHERE id = ?`);
      set.run(patch.state ?? null, patch.error ?? null, patch.data === undefined ? null : JSON.stringify(patch.data), id);
    });
  }

  putHuntCell(huntId: number, cell: StoredHuntCell): void {
    this.write(`store a cell of hunt ${huntId}`, () => {
      this.statement(`INSERT OR REPLACE INTO hunt_cells (hunt_id, row, col, class, session_id, data) VALUES (?, ?, ?, ?, ?, ?)`)
        .run(huntId, cell.row, cell.col, cell.class, cell.session_id, JSON.stringify(cell.data));
    });
  }

  /** A hunt whose process is gone while it was running reads as aborted (its cells are kept). */
  hunt(id: number): StoredHunt {
    const row = this.statement(`SELECT * FROM hunts WHERE id = ?`).get(id) as HuntRow | undefined;
    if (!row) throw new MigraceError('NOT_FOUND', `no hunt ${id} in ${this.path} (see "migrace hunts")`);
    return this.rowToHunt(row);
  }

  hunts(): StoredHunt[] {
    return (this.statement(`SELECT * FROM hunts ORDER BY id`).all() as HuntRow[]).map((r) => this.rowToHunt(r));
  }

  huntCells(id: number): StoredHuntCell[] {
    const rows = this.statement(`SELECT row, col, class, session_id, data FROM hunt_cells WHERE hunt_id = ? ORDER BY row, col`).all(id) as Array<Omit<StoredHuntCell, 'data'> & { data: string }>;
    return rows.map((r) => ({ ...r, data: parseJson(r.data, `cell ${r.row} x ${r.col} of hunt ${id}`) }));
  }

  private rowToHunt(r: HuntRow): StoredHunt {
    let { state, error } = r;
    if (state === 'running' && typeof r.writer_pid === 'number' && !processIsAlive(r.writer_pid, r.writer_start)) {
      state = 'aborted';
      error = `the hunting process (pid ${r.writer_pid}) ended without closing the hunt; the cells it stored are kept`;
    }
    const target = TargetSchema.safeParse(parseJson(r.target, `target of hunt ${r.id}`));
    if (!target.success || !['running', 'complete', 'aborted'].includes(state)) throw new MigraceError('DB_FOREIGN', `hunt ${r.id} in ${this.path} is malformed`);
    return {
      id: r.id, created_at: r.created_at, label: r.label, state: state as StoredHunt['state'], error, target: target.data,
      profile: parseJson(r.profile, `profile of hunt ${r.id}`), data: parseJson(r.data, `data of hunt ${r.id}`),
    };
  }

  exportSession(id: number): SessionExport {
    const { id: _id, ...session } = this.session(id);
    return { format: 'migrace-session', version: 1, session, threads: this.threads(id), events: this.events(id) };
  }

  /** Store an exported session as a new one; returns its id. Validates everything first. */
  importSession(data: unknown, source = 'input'): number {
    // Storing a value means JSON.stringify, which recurses: a hostile file nests deep enough to overflow the stack.
    const deep = tooDeep(data, MAX_DEPTH);
    if (deep) throw new MigraceError('BAD_INPUT', `${source} is not a migrace session export: ${deep} is nested deeper than ${MAX_DEPTH} levels`);
    const parsed = SessionExportSchema.safeParse(data);
    if (!parsed.success) {
      throw new MigraceError('BAD_INPUT', `${source} is not a migrace session export: ${zodProblems(parsed.error)}`);
    }
    const x = parsed.data;
    for (let i = 1; i < x.events.length; i++) {
      if (x.events[i].seq <= x.events[i - 1].seq) {
        throw new MigraceError('BAD_INPUT', `${source}: events.${i}.seq (${x.events[i].seq}) does not increase`);
      }
    }
    return this.write('import the session', () => this.db.transaction(() => {
      const id = this.createSession({ ...x.session });
      this.statement(`UPDATE sessions SET state = ?, error = ?, created_at = ? WHERE id = ?`)
        .run(x.session.state, x.session.error, x.session.created_at, id);
      for (const t of x.threads) this.upsertThread(id, t);
      this.appendEvents(id, x.events);
      return id;
    })());
  }
}

/** How deep an imported value may nest: far beyond what migrace writes, far below what recursion can take. */
const MAX_DEPTH = 64;

/** The path of the first value nested deeper than `max` (walked without recursion), or null. */
function tooDeep(value: unknown, max: number): string | null {
  const stack: Array<{ v: unknown; depth: number; path: string }> = [{ v: value, depth: 0, path: '(top)' }];
  while (stack.length > 0) {
    const { v, depth, path } = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth >= max) return path.length > 80 ? `${path.slice(0, 80)}...` : path;
    for (const [k, child] of Object.entries(v)) {
      if (typeof child === 'object' && child !== null) stack.push({ v: child, depth: depth + 1, path: path === '(top)' ? k : `${path}.${k}` });
    }
  }
  return null;
}

/**
 * Switch a file to WAL. A file a writer left in rollback mode needs an
 * exclusive lock for that, and SQLite answers SQLITE_BUSY at once, without
 * its busy handler, while another process holds a write transaction: wait
 * it out as writes do, 10 s at most.
 */
function setWalMode(db: Database.Database): void {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      db.pragma('journal_mode = WAL');
      return;
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      const busy = typeof code === 'string' && code.startsWith('SQLITE_BUSY');
      if (!busy || Date.now() > deadline) throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    }
  }
}

/** Locked by another process: worth waiting for, unlike a full disk. */
function isBusy(e: MigraceError): boolean {
  const code = (e.cause as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'));
}

/**
 * Buffers the events (and thread sightings) of one session being recorded
 * and writes them in short transactions: every `batchMs`, every `batchSize`
 * events, on flush() and on process exit. Assigns strictly increasing seqs in
 * arrival order.
 *
 * A write never throws out of a timer. A lock held by another process is
 * retried without stalling the recorder, for `busyGiveUpMs`; any other
 * failure (a full disk, a file-size limit) and a lock held longer are kept
 * as the writer's failure and passed to onError, which ends the run, and
 * the batch stays in memory. `stored` is what is on disk.
 */
export class SessionWriter {
  private buffer: TraceEvent[] = [];
  private threads = new Map<number, Thread>();
  private seq: number;
  private timer: NodeJS.Timeout | null = null;
  private readonly onExit = (): void => {
    this.flush();
  };
  private closed = false;
  private failed: MigraceError | null = null;
  private busySince: number | null = null;
  private errorHandler: ((e: MigraceError) => void) | null = null;
  /** Events committed to the database. */
  stored = 0;

  constructor(
    private readonly store: TraceStore,
    readonly sessionId: number,
    private readonly opts: { batchMs?: number; batchSize?: number; busyGiveUpMs?: number } = {},
  ) {
    this.seq = store.nextSeq(sessionId);
    store.holdReserve();
    process.on('exit', this.onExit);
  }

  /** Called once, with the first write that failed for good. */
  onError(fn: (e: MigraceError) => void): void {
    this.errorHandler = fn;
    if (this.failed) fn(this.failed);
  }

  get failure(): MigraceError | null {
    return this.failed;
  }

  push(event: NewEvent): TraceEvent {
    if (this.closed) throw new MigraceError('DB_WRITE', `session ${this.sessionId} is closed for writing`);
    // A literal of one shape, not a spread: at uprobe speed this runs tens of thousands of times a second.
    const e = {
      seq: this.seq++, t_ns: event.t_ns, wall: event.wall, thread: event.thread, kind: event.kind, probe: event.probe,
      pc: event.pc, func: event.func, file: event.file, line: event.line, data: event.data,
    } as TraceEvent;
    this.buffer.push(e);
    this.schedule();
    return e;
  }

  /** A thread seen (or renamed); merged with what was known, written with the next batch. */
  thread(t: Thread): void {
    const known = this.threads.get(t.tid);
    this.threads.set(t.tid, known ? { tid: t.tid, gdb_id: t.gdb_id ?? known.gdb_id, lwp: t.lwp ?? known.lwp, name: t.name ?? known.name } : t);
    this.schedule();
  }

  private schedule(): void {
    if (this.failed || this.closed) return;
    if (this.buffer.length >= (this.opts.batchSize ?? 256) && this.busySince === null) this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.busySince === null ? (this.opts.batchMs ?? 25) : 100);
      this.timer.unref();
    }
  }

  /** Events handed to the writer (seqs assigned), stored or not. */
  get written(): number {
    return this.seq;
  }

  /** Events handed to the writer that are not on disk. */
  get unstored(): number {
    return this.buffer.length;
  }

  /** Write what is buffered; false when it could not be written now. */
  flush(opts: { final?: boolean } = {}): boolean {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.buffer.length === 0 && this.threads.size === 0) return true;
    const batch = this.buffer;
    const threads = [...this.threads.values()];
    try {
      // The last write may wait for a lock as any command does; the ones during a run must not stall it.
      this.store.appendBatch(this.sessionId, threads, batch, opts.final ? {} : { busyTimeoutMs: 20 });
      this.buffer = [];
      this.threads.clear();
      this.stored += batch.length;
      this.busySince = null;
      return true;
    } catch (e) {
      const err = e instanceof MigraceError ? e : new MigraceError('DB_WRITE', messageOf(e), { cause: e });
      const now = Date.now();
      if (isBusy(err) && !opts.final) {
        this.busySince ??= now;
        if (now - this.busySince < (this.opts.busyGiveUpMs ?? 10_000)) {
          this.schedule();
          return false;
        }
      }
      if (!this.failed) {
        this.failed = isBusy(err)
          ? new MigraceError('DB_WRITE', `${err.message} for more than ${Math.round((now - (this.busySince ?? now)) / 1000)} s`, { cause: err })
          : err;
        this.errorHandler?.(this.failed);
      }
      return false;
    }
  }

  /** A last write of what is buffered, leaving the session's state to the caller. */
  close(): void {
    if (this.closed) return;
    this.flush({ final: true });
    this.closed = true;
    process.off('exit', this.onExit);
  }

  /**
   * The end of the session: what is still buffered and the final state in
   * one transaction; when that cannot be written, the state alone (with the
   * room the reserve gives back), saying how many events were lost. Returns
   * the error the session was closed with, or throws when even the state
   * could not be written (the next writer that opens the file marks it).
   */
  finish(error: MigraceError | null): MigraceError | null {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.closed = true;
    process.off('exit', this.onExit);
    let err = error ?? this.failed;
    try {
      this.store.finishSessionWith(this.sessionId, [...this.threads.values()], this.buffer, err ? 'aborted' : 'complete', err?.message ?? null);
      this.stored += this.buffer.length;
      this.buffer = [];
      this.threads.clear();
      return err;
    } catch (e) {
      const why = e instanceof MigraceError ? e : new MigraceError('DB_WRITE', messageOf(e), { cause: e });
      const base = err ?? why;
      const lost = this.buffer.length > 0 ? `; ${this.buffer.length} later events could not be stored` : '';
      err = new MigraceError(base.code, `${base.message}${lost}`, { cause: base });
      this.store.finishSession(this.sessionId, 'aborted', err.message);
      return err;
    }
  }
}
