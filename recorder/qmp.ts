import net from 'node:net';
import { EventEmitter } from 'node:events';
import { StringDecoder } from 'node:string_decoder';
import { z } from 'zod';
import { MigraceError } from '../trace/errors.js';
import { sleep } from '../trace/async.js';

/*
 * QMP client over a unix socket: the monitor of QEMU and of minimig.
 *
 * The wire format is one JSON object per line (QEMU ends lines with CRLF).
 * The framing and message classification below are pure and tested on their
 * own; the client class is the thin socket part. Every reply and event is
 * stamped with process.hrtime.bigint() when its bytes arrived, so replies can
 * be placed on the same clock as the probe hits a recorder collects.
 */

// ---------------------------------------------------------------------------
// Pure part: framing and parsing

/**
 * Splits a byte stream into lines. Chunks may end anywhere, including inside
 * a multi-byte UTF-8 character. Lines come back without their CR/LF; blank
 * lines are dropped (QMP never sends one that means anything).
 */
export class LineFramer {
  private readonly decoder = new StringDecoder('utf8');
  private rest = '';

  push(chunk: Buffer | string): string[] {
    this.rest += typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    const lines: string[] = [];
    let start = 0;
    for (;;) {
      const nl = this.rest.indexOf('\n', start);
      if (nl < 0) break;
      const line = stripCr(this.rest.slice(start, nl));
      if (line.trim() !== '') lines.push(line);
      start = nl + 1;
    }
    this.rest = this.rest.slice(start);
    return lines;
  }

  /** Text received after the last newline (a message cut short if the peer closed). */
  get pending(): string {
    return this.rest;
  }
}

function stripCr(line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}

const versionTriple = z.object({
  major: z.number().int(),
  minor: z.number().int(),
  micro: z.number().int(),
});

const greetingSchema = z.object({
  QMP: z.object({
    version: z.object({ qemu: versionTriple, package: z.string() }),
    capabilities: z.array(z.string()),
  }),
});

const errorSchema = z.object({ class: z.string(), desc: z.string() });

const timestampSchema = z.object({ seconds: z.number(), microseconds: z.number() });

const eventSchema = z.object({
  event: z.string(),
  data: z.unknown().optional(),
  timestamp: timestampSchema.optional(),
});

export interface QmpGreeting {
  /** QEMU's version triple (minimig claims 6.2.0). */
  qemu: { major: number; minor: number; micro: number };
  /** The distro package string, e.g. "Debian 1:7.2+dfsg-7+deb12u18+b3", or "minimig". */
  package: string;
  capabilities: string[];
  raw: Record<string, unknown>;
}

export type QmpMessage =
  | { kind: 'greeting'; greeting: QmpGreeting }
  | { kind: 'return'; id: unknown; ret: unknown; raw: Record<string, unknown> }
  | { kind: 'error'; id: unknown; errorClass: string; desc: string; raw: Record<string, unknown> }
  | {
      kind: 'event';
      event: string;
      data: unknown;
      timestamp: { seconds: number; microseconds: number } | null;
      raw: Record<string, unknown>;
    };

/** A line as it can be quoted in an error message: JSON-quoted, and cut when long. */
export function quoteLine(line: string, max = 200): string {
  return JSON.stringify(line.length > max ? `${line.slice(0, max)}...` : line);
}

function protocolError(what: string, line: string): MigraceError {
  return new MigraceError('QMP', `QMP peer sent ${what}: ${quoteLine(line)}`);
}

/** Classify one line from a QMP server; throws MigraceError('QMP') naming the line. */
export function parseQmpLine(line: string): QmpMessage {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw protocolError('invalid JSON', line);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw protocolError('a message that is not a JSON object', line);
  }
  const raw = value as Record<string, unknown>;
  if ('QMP' in raw) {
    const g = greetingSchema.safeParse(raw);
    if (!g.success) throw protocolError('a malformed greeting', line);
    const { version, capabilities } = g.data.QMP;
    return { kind: 'greeting', greeting: { qemu: version.qemu, package: version.package, capabilities, raw } };
  }
  if ('return' in raw) {
    return { kind: 'return', id: raw.id, ret: raw.return, raw };
  }
  if ('error' in raw) {
    const e = errorSchema.safeParse(raw.error);
    if (!e.success) throw protocolError('a malformed error reply', line);
    return { kind: 'error', id: raw.id, errorClass: e.data.class, desc: e.data.desc, raw };
  }
  if ('event' in raw) {
    const ev = eventSchema.safeParse(raw);
    if (!ev.success) throw protocolError('a malformed event', line);
    return {
      kind: 'event',
      event: ev.data.event,
      data: ev.data.data,
      timestamp: ev.data.timestamp ?? null,
      raw,
    };
  }
  throw protocolError('a message that is neither greeting, reply nor event', line);
}

/** The request line for a command: JSON.stringify only, never string building. */
export function encodeCommand(command: string, args: Record<string, unknown> | undefined, id: string): string {
  const request: Record<string, unknown> = { execute: command };
  if (args !== undefined) request.arguments = args;
  request.id = id;
  return `${JSON.stringify(request)}\n`;
}

// ---------------------------------------------------------------------------
// The client

export interface QmpEvent {
  event: string;
  data: unknown;
  /** The server's wall-clock stamp, when it sent one. */
  timestamp: { seconds: number; microseconds: number } | null;
  raw: Record<string, unknown>;
  /** process.hrtime.bigint() when the bytes arrived. */
  receivedAt: bigint;
}

export interface QmpReply<T = unknown> {
  ret: T;
  /** The whole reply object, as received. */
  raw: Record<string, unknown>;
  /** process.hrtime.bigint() just before the request was written. */
  sentAt: bigint;
  /** process.hrtime.bigint() when the reply's bytes arrived. */
  receivedAt: bigint;
}

export interface QmpConnectOptions {
  /** Budget for the whole connect: socket appearing, greeting, qmp_capabilities. */
  timeoutMs: number;
  /** Pause between attempts while the socket is missing or refuses (default 20). */
  retryMs?: number;
  onEvent?: (event: QmpEvent) => void;
  /** The target's liveness: once false, stop waiting (TARGET_EXITED). */
  isAlive?: () => boolean;
  /** Default reply timeout for execute() (default 10000). */
  commandTimeoutMs?: number;
}

export interface QmpExecuteOptions {
  timeoutMs?: number;
}

/** A command the server answered with an error; code QMP. */
export class QmpCommandError extends MigraceError {
  readonly command: string;
  readonly errorClass: string;
  readonly desc: string;
  readonly raw: Record<string, unknown>;
  constructor(command: string, errorClass: string, desc: string, raw: Record<string, unknown>) {
    super('QMP', `QMP command '${command}' failed: ${errorClass}: ${desc}`);
    this.name = 'QmpCommandError';
    this.command = command;
    this.errorClass = errorClass;
    this.desc = desc;
    this.raw = raw;
  }
}

interface Pending {
  command: string;
  sentAt: bigint;
  timer: NodeJS.Timeout;
  resolve: (reply: QmpReply) => void;
  reject: (err: Error) => void;
}

/** Errors on which connecting again later can succeed: the server is not listening yet. */
const RETRYABLE = new Set(['ENOENT', 'ECONNREFUSED', 'EAGAIN']);


function attemptConnect(path: string): Promise<net.Socket | NodeJS.ErrnoException> {
  return new Promise((resolve) => {
    const socket = net.createConnection({ path });
    const onError = (err: NodeJS.ErrnoException): void => {
      socket.destroy();
      resolve(err);
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

/**
 * Events: 'event' (QmpEvent), 'close' (the MigraceError that ended the
 * connection, or undefined after close()).
 */
export class QmpClient extends EventEmitter {
  readonly path: string;
  private readonly socket: net.Socket;
  private readonly framer = new LineFramer();
  private readonly pending = new Map<string, Pending>();
  private readonly onEventCb?: (event: QmpEvent) => void;
  private readonly isAlive?: () => boolean;
  private readonly commandTimeoutMs: number;
  private nextId = 0;
  private greetingValue: QmpGreeting | null = null;
  private greetingWaiter: { resolve: () => void; reject: (e: Error) => void } | null = null;
  private closedFlag = false;
  private closingByUs = false;
  private failure: MigraceError | null = null;
  private socketError: NodeJS.ErrnoException | null = null;
  private readonly closedPromise: Promise<void>;

  private constructor(path: string, socket: net.Socket, opts: QmpConnectOptions) {
    super();
    this.path = path;
    this.socket = socket;
    this.onEventCb = opts.onEvent;
    this.isAlive = opts.isAlive;
    this.commandTimeoutMs = opts.commandTimeoutMs ?? 10_000;
    this.closedPromise = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.onData(chunk, process.hrtime.bigint()));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // 'close' follows; remember why, so pending commands get the reason.
      this.socketError ??= err;
    });
    socket.on('close', () => this.onClose());
  }

  /**
   * Connect to a QMP server, waiting (bounded) for its socket to appear,
   * read the greeting and leave capabilities-negotiation mode.
   */
  static async connect(path: string, opts: QmpConnectOptions): Promise<QmpClient> {
    const started = Date.now();
    const deadline = started + opts.timeoutMs;
    const retryMs = opts.retryMs ?? 20;
    let socket: net.Socket | null = null;
    let lastCode = 'ENOENT';

    while (socket === null) {
      if (opts.isAlive && !opts.isAlive()) {
        throw new MigraceError(
          'TARGET_EXITED',
          `the target exited before its QMP socket ${path} accepted a connection (waited ${Date.now() - started} ms)`,
          { secondHand: true },
        );
      }
      const r = await attemptConnect(path);
      if (r instanceof net.Socket) {
        socket = r;
        break;
      }
      const code = r.code ?? 'unknown';
      if (!RETRYABLE.has(code)) {
        throw new MigraceError('QMP', `cannot connect to QMP socket ${path}: ${r.message}`, { cause: r });
      }
      lastCode = code;
      if (Date.now() + retryMs > deadline) {
        const why = lastCode === 'ENOENT' ? 'it never appeared' : `connection refused (${lastCode})`;
        throw new MigraceError(
          'QMP_TIMEOUT',
          `no QMP server at ${path} after waiting ${Date.now() - started} ms (timeout ${opts.timeoutMs} ms): ${why}`,
        );
      }
      await sleep(retryMs);
    }

    const client = new QmpClient(path, socket, opts);
    try {
      await client.waitGreeting(Math.max(1, deadline - Date.now()), opts.timeoutMs);
      await client.execute('qmp_capabilities', undefined, { timeoutMs: Math.max(1, deadline - Date.now()) });
    } catch (e) {
      client.socket.destroy();
      throw e;
    }
    return client;
  }

  /** The server's greeting (QEMU version, package, capabilities). */
  get greeting(): QmpGreeting {
    if (!this.greetingValue) throw new MigraceError('QMP', `no QMP greeting from ${this.path} yet`);
    return this.greetingValue;
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /**
   * Send a command and wait for its reply. Rejects with QmpCommandError (code
   * QMP) on an error reply, QMP_TIMEOUT when no reply comes in time, and QMP
   * (or TARGET_EXITED) when the connection ends first.
   */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    opts: QmpExecuteOptions = {},
  ): Promise<QmpReply<T>> {
    if (this.closedFlag || this.failure) {
      return Promise.reject(this.failure ?? new MigraceError('QMP', `QMP connection to ${this.path} is closed`));
    }
    if (typeof command !== 'string' || command === '') {
      return Promise.reject(new MigraceError('BAD_INPUT', 'a QMP command name must be a non-empty string'));
    }
    const id = `migrace-${++this.nextId}`;
    let line: string;
    try {
      line = encodeCommand(command, args, id);
    } catch (e) {
      return Promise.reject(
        new MigraceError('BAD_INPUT', `arguments of QMP command '${command}' cannot be serialized: ${String(e)}`),
      );
    }
    const timeoutMs = opts.timeoutMs ?? this.commandTimeoutMs;
    return new Promise<QmpReply<T>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(
          new MigraceError(
            'QMP_TIMEOUT',
            `QMP command '${command}' got no reply within ${timeoutMs} ms (socket ${this.path})`,
          ),
        );
      }, timeoutMs);
      const sentAt = process.hrtime.bigint();
      this.pending.set(id, {
        command,
        sentAt,
        timer,
        resolve: resolve as (reply: QmpReply) => void,
        reject,
      });
      this.socket.write(line);
    });
  }

  /** human-monitor-command: the HMP text output. */
  hmp(commandLine: string, opts: QmpExecuteOptions = {}): Promise<QmpReply<string>> {
    return this.execute<string>('human-monitor-command', { 'command-line': commandLine }, opts);
  }

  /** Close the connection; commands still waiting are rejected. */
  async close(): Promise<void> {
    if (!this.closedFlag) {
      this.closingByUs = true;
      this.socket.end();
      const timer = setTimeout(() => this.socket.destroy(), 1000);
      await this.closedPromise;
      clearTimeout(timer);
    }
  }

  private waitGreeting(budgetMs: number, totalMs: number): Promise<void> {
    if (this.greetingValue) return Promise.resolve();
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.greetingWaiter = null;
        reject(
          new MigraceError(
            'QMP_TIMEOUT',
            `connected to ${this.path} but no QMP greeting came within ${totalMs} ms ` +
              '(QEMU and minimig serve one client at a time: is another one connected?)',
          ),
        );
      }, budgetMs);
      this.greetingWaiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  private onData(chunk: Buffer, receivedAt: bigint): void {
    if (this.failure) return;
    try {
      for (const line of this.framer.push(chunk)) this.onLine(line, receivedAt);
    } catch (e) {
      const err = e instanceof MigraceError ? e : new MigraceError('QMP', String(e), { cause: e });
      // After a line we cannot read, replies can no longer be trusted to match.
      this.fail(err);
      this.socket.destroy();
    }
  }

  private onLine(line: string, receivedAt: bigint): void {
    const msg = parseQmpLine(line);
    switch (msg.kind) {
      case 'greeting': {
        if (this.greetingValue) throw protocolError('a second greeting', line);
        this.greetingValue = msg.greeting;
        const w = this.greetingWaiter;
        this.greetingWaiter = null;
        w?.resolve();
        return;
      }
      case 'event': {
        const ev: QmpEvent = { event: msg.event, data: msg.data, timestamp: msg.timestamp, raw: msg.raw, receivedAt };
        this.deliverEvent(ev);
        return;
      }
      case 'return':
      case 'error': {
        if (!this.greetingValue) throw protocolError('a reply before the greeting', line);
        const p = this.takePending(msg.id);
        if (!p) return; // the reply to a command that already timed out
        clearTimeout(p.timer);
        if (msg.kind === 'return') {
          p.resolve({ ret: msg.ret, raw: msg.raw, sentAt: p.sentAt, receivedAt });
        } else {
          p.reject(new QmpCommandError(p.command, msg.errorClass, msg.desc, msg.raw));
        }
        return;
      }
    }
  }

  /**
   * Replies carry our id. One without an id answers a request the server could
   * not parse; the server answers in order, so it belongs to the oldest.
   */
  private takePending(id: unknown): Pending | undefined {
    let key: string | undefined;
    if (typeof id === 'string') {
      key = this.pending.has(id) ? id : undefined;
    } else if (id === undefined) {
      key = this.pending.keys().next().value;
    }
    if (key === undefined) return undefined;
    const p = this.pending.get(key);
    this.pending.delete(key);
    return p;
  }

  private deliverEvent(ev: QmpEvent): void {
    // A throwing listener is the caller's bug; it must not desynchronize the stream.
    try {
      this.onEventCb?.(ev);
      this.emit('event', ev);
    } catch (e) {
      queueMicrotask(() => {
        throw e;
      });
    }
  }

  private fail(err: MigraceError): void {
    this.failure ??= err;
    const w = this.greetingWaiter;
    this.greetingWaiter = null;
    w?.reject(this.failure);
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(this.failure);
    }
  }

  private onClose(): void {
    this.closedFlag = true;
    const cleanByUs = this.closingByUs && !this.failure;
    let reason: MigraceError;
    if (this.failure) {
      reason = this.failure;
    } else if (this.closingByUs) {
      reason = new MigraceError('QMP', `QMP connection to ${this.path} was closed by migrace`);
    } else if (this.isAlive && !this.isAlive()) {
      reason = new MigraceError('TARGET_EXITED', `the target exited; its QMP connection ${this.path} closed`, { secondHand: true });
    } else {
      const tail = this.framer.pending.trim();
      const how = this.socketError ? `failed: ${this.socketError.message}` : 'was closed by the server';
      reason = new MigraceError(
        'QMP',
        `QMP connection to ${this.path} ${how}` + (tail ? ` in the middle of a message: ${quoteLine(tail)}` : ''),
        { cause: this.socketError ?? undefined },
      );
    }
    this.fail(reason);
    this.emit('close', cleanByUs ? undefined : reason);
  }
}
