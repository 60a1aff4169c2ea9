import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { QmpClient, QmpCommandError, type QmpEvent, type QmpReply } from '../../recorder/qmp.js';
import { track, waitGone } from '../../recorder/reaper.js';
import { MigraceError } from '../../trace/errors.js';
import { expectNoSurvivors } from '../helpers/processes.js';
import { sleep } from '../../trace/async.js';

const MINIMIG_DIR = resolve('samples/minimig');

interface Target {
  child: ChildProcess;
  dir: string;
  sock: string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive: () => boolean;
}

const started: Target[] = [];
const clients: QmpClient[] = [];
const servers: net.Server[] = [];

/** A private directory (0700) so no other user can reach the socket. */
function privateDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'migrace-qmp-'));
  expect(statSync(dir).mode & 0o777).toBe(0o700);
  return dir;
}

function startMinimig(binary: 'minimig' | 'minimig-patched', extra: string[] = [], qmp = true): Target {
  const dir = privateDir();
  const sock = join(dir, 'qmp.sock');
  const args = qmp ? ['-qmp', `unix:${sock},server,wait=off`, ...extra] : extra;
  const child = spawn(join(MINIMIG_DIR, binary), args, { stdio: ['ignore', 'ignore', 'pipe'] });
  if (child.pid === undefined) throw new Error(`could not start ${binary}`);
  const untrack = track(child.pid, binary);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    child.once('exit', (code, signal) => {
      untrack();
      res({ code, signal });
    }),
  );
  const t: Target = {
    child,
    dir,
    sock,
    stderr: () => stderr,
    exited,
    alive: () => child.exitCode === null && child.signalCode === null,
  };
  started.push(t);
  return t;
}

async function connect(t: Target, onEvent?: (e: QmpEvent) => void): Promise<QmpClient> {
  const c = await QmpClient.connect(t.sock, { timeoutMs: 5000, retryMs: 10, onEvent, isAlive: t.alive });
  clients.push(c);
  return c;
}

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  for (const s of servers.splice(0)) await new Promise<void>((r) => s.close(() => r()));
  for (const t of started.splice(0)) {
    if (t.alive()) {
      t.child.kill('SIGTERM');
      const gone = await Promise.race([t.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 3000))]);
      if (!gone) t.child.kill('SIGKILL');
    }
    await t.exited;
    if (t.child.pid !== undefined) await waitGone(t.child.pid, 2000);
    rmSync(t.dir, { recursive: true, force: true });
  }
  expectNoSurvivors();
});

type Info = {
  status?: string;
  ram?: Record<string, number>;
  'total-time'?: number;
  'setup-time'?: number;
  'expected-downtime'?: number;
  downtime?: number;
};


/** Poll query-migrate every 10 ms until `until` holds for a reply. */
async function pollUntil(c: QmpClient, until: (i: Info) => boolean, limitMs = 10_000): Promise<QmpReply<Info>[]> {
  const replies: QmpReply<Info>[] = [];
  const deadline = Date.now() + limitMs;
  for (;;) {
    const r = await c.execute<Info>('query-migrate');
    replies.push(r);
    if (until(r.ret)) return replies;
    if (Date.now() > deadline) throw new Error(`status never reached: last ${JSON.stringify(r.ret)}`);
    await sleep(10);
  }
}

function dedup<T>(xs: T[]): T[] {
  return xs.filter((x, i) => i === 0 || x !== xs[i - 1]);
}

const RAM_KEYS = [
  'transferred',
  'remaining',
  'total',
  'duplicate',
  'normal',
  'normal-bytes',
  'mbps',
  'dirty-sync-count',
  'page-size',
  'pages-per-second',
];

describe.each(['minimig', 'minimig-patched'] as const)('%s over QMP', (binary) => {
  it('greets as QEMU 6.2, answers {} before migrate, and runs setup -> active -> completed', async () => {
    const t = startMinimig(binary, ['--setup-ms', '80', '--transfer-ms', '250', '--ram-mb', '64']);
    const events: QmpEvent[] = [];
    const c = await connect(t, (e) => events.push(e));

    expect(c.greeting.qemu).toEqual({ major: 6, minor: 2, micro: 0 });
    expect(c.greeting.package).toBe('minimig');
    expect(c.greeting.capabilities).toEqual([]);

    const before = await c.execute<Info>('query-migrate');
    expect(before.ret).toEqual({});
    expect(before.raw).toEqual({ return: {}, id: expect.stringMatching(/^migrace-\d+$/) });
    expect(before.receivedAt).toBeGreaterThanOrEqual(before.sentAt);

    const mig = await c.execute('migrate', { uri: 'tcp:127.0.0.1:4444' });
    expect(mig.ret).toEqual({});
    const replies = await pollUntil(c, (i) => i.status === 'completed');

    const statuses = dedup(replies.map((r) => r.ret.status));
    expect(statuses).toEqual(['setup', 'active', 'completed']);
    for (const r of replies) {
      const i = r.ret;
      if (i.status === 'setup') expect(i).toEqual({ status: 'setup' });
      if (i.status === 'active') {
        expect(Object.keys(i.ram ?? {}).sort()).toEqual([...RAM_KEYS].sort());
        expect(i.ram?.total).toBe(64 * 1024 * 1024);
        expect(i['total-time']).toBeGreaterThanOrEqual(0);
        expect(i['setup-time']).toBeGreaterThanOrEqual(70);
        expect(i['expected-downtime']).toBeGreaterThanOrEqual(0);
        expect(i).not.toHaveProperty('downtime');
      }
    }
    // Counters only grow while active.
    const transferred = replies.filter((r) => r.ret.status === 'active').map((r) => r.ret.ram?.transferred ?? -1);
    expect(transferred).toEqual([...transferred].sort((a, b) => a - b));

    const done = replies[replies.length - 1].ret;
    expect(done).toMatchObject({ status: 'completed', ram: { remaining: 0, 'dirty-sync-count': 2 } });
    expect(done.ram?.transferred).toBeGreaterThan(0);
    expect(done.downtime).toBeGreaterThanOrEqual(0);
    expect(done['total-time']).toBeGreaterThanOrEqual(done['setup-time'] ?? 0);
    expect(done).not.toHaveProperty('expected-downtime');

    // The completed event can arrive a moment after the reply that showed it.
    for (let i = 0; i < 100 && events.length < 3; i++) await sleep(10);
    expect(events.map((e) => [e.event, (e.data as { status: string }).status])).toEqual([
      ['MIGRATION', 'setup'],
      ['MIGRATION', 'active'],
      ['MIGRATION', 'completed'],
    ]);
    for (const e of events) {
      expect(e.timestamp?.seconds).toBeGreaterThan(1_600_000_000);
      expect(typeof e.receivedAt).toBe('bigint');
    }
    expect(events[0].receivedAt).toBeLessThan(mig.receivedAt + 1n); // SETUP is announced before the reply
  });

  it('cancels an active migration: active -> cancelling -> cancelled, and can migrate again', async () => {
    const t = startMinimig(binary, ['--setup-ms', '20', '--transfer-ms', '60000']);
    const events: string[] = [];
    const c = await connect(t, (e) => events.push((e.data as { status: string }).status));
    await c.execute('migrate', { uri: 'unix:/nonexistent' });
    await pollUntil(c, (i) => i.status === 'active');

    const refused = await c.execute('migrate', { uri: 'tcp:x' }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(QmpCommandError);
    expect(refused).toMatchObject({ code: 'QMP', errorClass: 'GenericError', desc: "There's a migration process in progress" });

    expect((await c.execute('migrate_cancel')).ret).toEqual({});
    const after = await pollUntil(c, (i) => i.status === 'cancelled');
    expect(after[after.length - 1].ret).toEqual({ status: 'cancelled' });
    for (let i = 0; i < 100 && events.length < 4; i++) await sleep(10);
    expect(events).toEqual(['setup', 'active', 'cancelling', 'cancelled']);

    // Cancel with nothing running is a no-op, as in QEMU.
    expect((await c.execute('migrate_cancel')).ret).toEqual({});

    await c.execute('migrate', { uri: 'tcp:127.0.0.1:4444' });
    expect((await c.execute<Info>('query-migrate')).ret.status).toMatch(/^(setup|active)$/);
  });

  it('cancels during setup: the migration thread never reaches active', async () => {
    const t = startMinimig(binary, ['--setup-ms', '300']);
    const events: string[] = [];
    const c = await connect(t, (e) => events.push((e.data as { status: string }).status));
    await c.execute('migrate', { uri: 'tcp:127.0.0.1:4444' });
    expect((await c.execute<Info>('query-migrate')).ret).toEqual({ status: 'setup' });
    await c.execute('migrate_cancel');
    await pollUntil(c, (i) => i.status === 'cancelled');
    for (let i = 0; i < 100 && events.length < 3; i++) await sleep(10);
    expect(events).toEqual(['setup', 'cancelling', 'cancelled']);
  });
});

/** A raw line-oriented connection, to send what QmpClient never would. */
async function rawConnection(path: string): Promise<{ send: (s: string | Buffer) => void; next: () => Promise<string>; end: () => Promise<void> }> {
  const sock = net.createConnection({ path });
  await new Promise<void>((res, rej) => {
    sock.once('connect', () => res());
    sock.once('error', rej);
  });
  const lines: string[] = [];
  const waiters: Array<(l: string) => void> = [];
  let buf = '';
  sock.on('data', (d: Buffer) => {
    buf += d.toString('utf8');
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      const w = waiters.shift();
      if (w) w(line);
      else lines.push(line);
    }
  });
  return {
    send: (s) => sock.write(s),
    next: () =>
      lines.length > 0
        ? Promise.resolve(lines.shift() as string)
        : new Promise((res, rej) => {
            const timer = setTimeout(() => rej(new Error('no line within 3 s')), 3000);
            waiters.push((l) => {
              clearTimeout(timer);
              res(l);
            });
          }),
    end: () =>
      new Promise((res) => {
        sock.once('close', () => res());
        sock.end();
      }),
  };
}

describe('minimig QMP robustness', () => {
  it('answers garbage with QMP errors and keeps the connection', async () => {
    const t = startMinimig('minimig');
    for (let i = 0; i < 200 && !existsSync(t.sock); i++) await sleep(10);
    const raw = await rawConnection(t.sock);
    expect(JSON.parse(await raw.next())).toHaveProperty('QMP');

    raw.send('{"execute":"query-migrate","id":1}\n');
    expect(JSON.parse(await raw.next())).toEqual({
      error: { class: 'CommandNotFound', desc: "Expecting capabilities negotiation with 'qmp_capabilities'" },
      id: 1,
    });
    // A request split across writes, then two requests in one write.
    raw.send('{"execute":"qmp_cap');
    await sleep(20);
    raw.send('abilities"}\n');
    expect(JSON.parse(await raw.next())).toEqual({ return: {} });
    raw.send('{"execute":"query-migrate","id":"a"}\n{"execute":"query-migrate","id":{"n":[1,2]}}\n');
    expect(JSON.parse(await raw.next())).toEqual({ return: {}, id: 'a' });
    expect(JSON.parse(await raw.next())).toEqual({ return: {}, id: { n: [1, 2] } });

    const bad: Array<[string, string, RegExp]> = [
      ['garbage\n', 'GenericError', /^JSON parse error, invalid keyword 'garbage'$/],
      ['{"execute": "quit"\n', 'GenericError', /^JSON parse error/],
      ['[1,2]\n', 'GenericError', /must be a JSON object/],
      ['{"id": 9}\n', 'GenericError', /lacks member 'execute'/],
      ['{"execute": 42, "id": 7}\n', 'GenericError', /'execute' must be a string/],
      ['{"execute": "quit", "arguments": [], "id": 7}\n', 'GenericError', /'arguments' must be an object/],
      ['{"execute": "quit", "extra": 1}\n', 'GenericError', /member 'extra' is unexpected/],
      ['{"execute": "nope", "id": "x"}\n', 'CommandNotFound', /The command nope has not been found/],
      ['{"execute": "migrate", "arguments": {}}\n', 'GenericError', /Parameter 'uri' is missing/],
      ['{"execute": "migrate", "arguments": {"uri": 5}}\n', 'GenericError', /Invalid parameter type for 'uri'/],
      ['{"execute": "query-migrate", "arguments": {"x": 1}}\n', 'GenericError', /Parameter 'x' is unexpected/],
      ['{"execute": "qu\\u0000it"}\n', 'GenericError', /u0000 is not supported/],
      ['{"execute": "qmp_capabilities"}\n', 'CommandNotFound', /already complete/],
    ];
    for (const [line, cls, desc] of bad) {
      raw.send(line);
      const reply = JSON.parse(await raw.next()) as { error: { class: string; desc: string }; id?: unknown };
      expect(reply.error.class, line).toBe(cls);
      expect(reply.error.desc, line).toMatch(desc);
      const sent = (() => {
        try {
          return JSON.parse(line) as { id?: unknown };
        } catch {
          return {};
        }
      })();
      if (sent.id !== undefined) expect(reply.id, line).toEqual(sent.id);
    }
    // Bytes that are not UTF-8 inside a string.
    raw.send(Buffer.concat([Buffer.from('{"execute": "'), Buffer.from([0xff, 0xfe]), Buffer.from('", "id": 3}\n')]));
    expect(JSON.parse(await raw.next())).toEqual({
      error: { class: 'GenericError', desc: 'JSON parse error, invalid UTF-8 in string' },
    });
    // A request longer than the server's line buffer.
    raw.send(`{"execute": "${'x'.repeat(70_000)}"}\n`);
    expect(JSON.parse(await raw.next()).error.desc).toMatch(/longer than/);

    raw.send('{"execute":"query-migrate","id":"still"}\n');
    expect(JSON.parse(await raw.next())).toEqual({ return: {}, id: 'still' });
    await raw.end();

    // The next client is served; errors surface as QmpCommandError.
    const c = await connect(t);
    const err = await c.execute('no-such-command').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpCommandError);
    expect(err).toMatchObject({ code: 'QMP', errorClass: 'CommandNotFound' });
    expect((err as Error).message).toContain("'no-such-command'");
    expect((await c.execute('query-migrate')).ret).toEqual({});
  });

  it('quit replies, exits 0 and removes the socket', async () => {
    const t = startMinimig('minimig-patched');
    const c = await connect(t);
    const closed = new Promise((r) => c.once('close', r));
    expect((await c.execute('quit')).ret).toEqual({});
    expect(await t.exited).toEqual({ code: 0, signal: null });
    await closed;
    expect(existsSync(t.sock)).toBe(false);
    await expect(c.execute('query-migrate')).rejects.toMatchObject({ code: expect.stringMatching(/^(QMP|TARGET_EXITED)$/) });
  });

  it('exits 0 on SIGTERM in the middle of a migration and removes the socket', async () => {
    const t = startMinimig('minimig', ['--transfer-ms', '60000']);
    const c = await connect(t);
    await c.execute('migrate', { uri: 'tcp:127.0.0.1:4444' });
    const pending = c.execute('query-migrate', undefined, { timeoutMs: 5000 });
    await pending;
    t.child.kill('SIGTERM');
    expect(await t.exited).toEqual({ code: 0, signal: null });
    expect(existsSync(t.sock)).toBe(false);
    expect(t.stderr()).toContain('terminating on signal 15');
  });

  it('rejects unknown options with a usage error, and connect stops early with TARGET_EXITED', async () => {
    const t = startMinimig('minimig', ['--bogus']);
    const err = await QmpClient.connect(t.sock, { timeoutMs: 10_000, retryMs: 10, isAlive: t.alive }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MigraceError);
    expect(err).toMatchObject({ code: 'TARGET_EXITED' });
    expect((err as Error).message).toContain(t.sock);
    expect(await t.exited).toEqual({ code: 2, signal: null });
    expect(t.stderr()).toContain("unknown option '--bogus'");
    expect(t.stderr()).toContain('usage: minimig -qmp unix:PATH,server,wait=off');
  });

  it('requires -qmp, accepts -name and --opt=value', async () => {
    const none = startMinimig('minimig', [], false);
    expect((await none.exited).code).toBe(2);
    expect(none.stderr()).toContain('-qmp unix:PATH,server,wait=off is required');

    const t = startMinimig('minimig', ['-name', 'src,debug-threads=on', '--setup-ms=0', '--transfer-ms=0']);
    const c = await connect(t);
    await c.execute('migrate', { uri: 'tcp:127.0.0.1:4444' });
    await pollUntil(c, (i) => i.status === 'completed', 3000);
  });

  it('names its threads minimig and live_migration', async () => {
    const t = startMinimig('minimig-patched', ['--transfer-ms', '60000']);
    const c = await connect(t);
    await c.execute('migrate', { uri: 'tcp:127.0.0.1:4444' });
    await pollUntil(c, (i) => i.status === 'active');
    const { readdirSync, readFileSync } = await import('node:fs');
    const names = readdirSync(`/proc/${t.child.pid}/task`).map((tid) =>
      readFileSync(`/proc/${t.child.pid}/task/${tid}/comm`, 'utf8').trim(),
    );
    expect(names.sort()).toEqual(['live_migration', 'minimig']);
  });
});

describe('QmpClient', () => {
  it('times out with a clear error when the socket never appears', async () => {
    const dir = privateDir();
    try {
      const path = join(dir, 'never.sock');
      const t0 = Date.now();
      const err = await QmpClient.connect(path, { timeoutMs: 300, retryMs: 20 }).catch((e: unknown) => e);
      const waited = Date.now() - t0;
      expect(err).toBeInstanceOf(MigraceError);
      expect(err).toMatchObject({ code: 'QMP_TIMEOUT' });
      expect((err as Error).message).toContain(path);
      expect((err as Error).message).toMatch(/waiting \d+ ms \(timeout 300 ms\): it never appeared/);
      expect(waited).toBeGreaterThanOrEqual(280);
      expect(waited).toBeLessThan(2000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  /** A fake QMP server that runs `script` for each request line. */
  async function fakeServer(
    onLine: (line: string, sock: net.Socket) => void,
    greeting = '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 6}, "package": "fake"}, "capabilities": []}}\r\n',
  ): Promise<string> {
    const dir = privateDir();
    const path = join(dir, 'fake.sock');
    const server = net.createServer((sock) => {
      sock.write(greeting);
      let buf = '';
      sock.on('data', (d: Buffer) => {
        buf += d.toString();
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          const req = JSON.parse(line) as { execute: string; id: string };
          if (req.execute === 'qmp_capabilities') sock.write(`{"return": {}, "id": ${JSON.stringify(req.id)}}\r\n`);
          else onLine(line, sock);
        }
      });
      sock.on('error', () => undefined);
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(path, () => r()));
    server.on('close', () => rmSync(dir, { recursive: true, force: true }));
    return path;
  }

  it('matches replies by id even when they arrive byte by byte, or several in one chunk, out of order', async () => {
    const held: Array<{ id: string; sock: net.Socket }> = [];
    const path = await fakeServer((line, sock) => {
      const req = JSON.parse(line) as { execute: string; id: string; arguments?: { n: number } };
      held.push({ id: req.id, sock });
      if (held.length === 3) {
        // Reply in reverse order, all in one write, with an event in between.
        const text = [...held]
          .reverse()
          .map((h, i) => `{"return": {"n": ${JSON.stringify(h.id)}}, "id": ${JSON.stringify(h.id)}}\r\n` + (i === 0 ? '{"event": "X", "data": {}}\r\n' : ''))
          .join('');
        sock.write(text);
      }
      if (req.execute === 'slow') {
        const text = `{"return": "caf\u00e9", "id": ${JSON.stringify(req.id)}}\r\n`;
        const bytes = Buffer.from(text);
        let i = 0;
        const tick = (): void => {
          if (i < bytes.length) {
            sock.write(bytes.subarray(i, i + 1));
            i++;
            setTimeout(tick, 1);
          }
        };
        tick();
      }
    });
    const events: QmpEvent[] = [];
    const c = await QmpClient.connect(path, { timeoutMs: 2000, onEvent: (e) => events.push(e) });
    clients.push(c);
    expect(c.greeting.package).toBe('fake');
    const rs = await Promise.all([c.execute('a'), c.execute('b'), c.execute('c')]);
    expect(rs.map((r) => (r.ret as { n: string }).n)).toEqual(rs.map((r) => r.raw.id));
    expect(events).toHaveLength(1);
    const slow = await c.execute('slow');
    expect(slow.ret).toBe('caf\u00e9');
    expect(slow.receivedAt).toBeGreaterThan(slow.sentAt);
  });

  it('serializes commands and arguments with JSON.stringify', async () => {
    const seen: string[] = [];
    const path = await fakeServer((line, sock) => {
      seen.push(line);
      const req = JSON.parse(line) as { id: string };
      sock.write(`{"return": "ok", "id": ${JSON.stringify(req.id)}}\r\n`);
    });
    const c = await QmpClient.connect(path, { timeoutMs: 2000 });
    clients.push(c);
    await c.hmp('info migrate\n"quoted"');
    await c.execute('migrate', { uri: 'tcp:"x"' });
    expect(seen.map((l) => JSON.parse(l))).toEqual([
      { execute: 'human-monitor-command', arguments: { 'command-line': 'info migrate\n"quoted"' }, id: 'migrace-2' },
      { execute: 'migrate', arguments: { uri: 'tcp:"x"' }, id: 'migrace-3' },
    ]);
  });

  it('fails every pending command with a QMP error naming the line when the peer sends invalid JSON', async () => {
    const path = await fakeServer((line, sock) => {
      if (line.includes('"bad"')) sock.write('{"return": oops}\r\n');
    });
    const c = await QmpClient.connect(path, { timeoutMs: 2000 });
    clients.push(c);
    const waiting = c.execute('waits-forever', undefined, { timeoutMs: 5000 }).catch((e: unknown) => e);
    const bad = await c.execute('bad').catch((e: unknown) => e);
    expect(bad).toMatchObject({ code: 'QMP' });
    expect((bad as Error).message).toContain('invalid JSON: "{\\"return\\": oops}"');
    expect(await waiting).toBe(bad);
    await expect(c.execute('after')).rejects.toMatchObject({ code: 'QMP' });
  });

  it('rejects pending commands when the server closes the socket, and times out silent commands', async () => {
    const path = await fakeServer((line, sock) => {
      if (line.includes('"hangup"')) sock.destroy();
    });
    const c = await QmpClient.connect(path, { timeoutMs: 2000 });
    clients.push(c);
    const silent = await c.execute('silence', undefined, { timeoutMs: 100 }).catch((e: unknown) => e);
    expect(silent).toMatchObject({ code: 'QMP_TIMEOUT' });
    expect((silent as Error).message).toBe(`QMP command 'silence' got no reply within 100 ms (socket ${path})`);
    const waiting = c.execute('waits', undefined, { timeoutMs: 5000 }).catch((e: unknown) => e);
    const hung = await c.execute('hangup').catch((e: unknown) => e);
    expect(hung).toMatchObject({ code: 'QMP' });
    expect((hung as Error).message).toContain('closed by the server');
    expect(await waiting).toBe(hung);
    expect(c.closed).toBe(true);
  });

  it('times out waiting for the greeting when the server is busy with another client', async () => {
    const t = startMinimig('minimig');
    const first = await connect(t);
    const err = await QmpClient.connect(t.sock, { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'QMP_TIMEOUT' });
    expect((err as Error).message).toMatch(/no QMP greeting came within 300 ms/);
    expect((await first.execute('query-migrate')).ret).toEqual({});
  });
});
