import { describe, expect, it } from 'vitest';
import { LineFramer, encodeCommand, parseQmpLine, quoteLine } from '../../recorder/qmp.js';
import { MigraceError } from '../../trace/errors.js';

// Captured from Debian bookworm qemu-system-x86 1:7.2+dfsg-7+deb12u18+b3 over
// a unix QMP socket (bytes as received, CRLF included).
const QEMU72 = {
  greeting:
    '{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}\r\n',
  notNegotiated:
    '{"error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with \'qmp_capabilities\'"}}\r\n',
  emptyReturnWithId: '{"return": {}, "id": "migrace-1"}\r\n',
  garbage: '{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword \'garbage\'"}}\r\n',
  notFound: '{"id": "x", "error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}\r\n',
  missingUri: '{"id": 7, "error": {"class": "GenericError", "desc": "Parameter \'uri\' is missing"}}\r\n',
  hmp: '{"return": "globals:\\r\\nstore-global-state: on\\r\\nonly-migratable: off\\r\\n", "id": "h"}\r\n',
  eventSetup:
    '{"timestamp": {"seconds": 1795651911, "microseconds": 710127}, "event": "MIGRATION", "data": {"status": "setup"}}\r\n',
  eventPass: '{"timestamp": {"seconds": 1795651911, "microseconds": 711657}, "event": "MIGRATION_PASS", "data": {"pass": 1}}\r\n',
  active:
    '{"return": {"expected-downtime": 300, "status": "active", "setup-time": 1, "total-time": 301, "ram": {"total": 134750208, "postcopy-requests": 0, "dirty-sync-count": 1, "multifd-bytes": 0, "pages-per-second": 28841, "downtime-bytes": 78475, "page-size": 4096, "remaining": 99049472, "postcopy-bytes": 0, "mbps": 2.0780198019801976, "transferred": 78475, "dirty-sync-missed-zero-copy": 0, "precopy-bytes": 0, "duplicate": 8716, "dirty-pages-rate": 0, "skipped": 0, "normal-bytes": 0, "normal": 0}}, "id": "migrace-9"}\r\n',
  shutdown:
    '{"timestamp": {"seconds": 1795651925, "microseconds": 769586}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}\r\n',
};

// Captured from samples/minimig (the unpatched build, forced under gdb).
const MINIMIG = {
  greeting:
    '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 6}, "package": "minimig"}, "capabilities": []}}\r\n',
  bugReply: '{"return": {"status": "active"}, "id": "q1"}\r\n',
};

function chunksOf(text: string, size: number): Buffer[] {
  const buf = Buffer.from(text, 'utf8');
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

describe('LineFramer', () => {
  it('returns nothing until a line is complete, then the line without CRLF', () => {
    const f = new LineFramer();
    const [a, b] = [QEMU72.greeting.slice(0, 40), QEMU72.greeting.slice(40)];
    expect(f.push(a)).toEqual([]);
    expect(f.pending).toBe(a);
    expect(f.push(b)).toEqual([QEMU72.greeting.slice(0, -2)]);
    expect(f.pending).toBe('');
  });

  it('splits several messages arriving in one chunk, as QEMU sends them during a migration', () => {
    const f = new LineFramer();
    const chunk = QEMU72.eventSetup + '{"return": {}}\r\n' + '{"return": {"status": "setup"}}\r\n' + QEMU72.eventPass;
    expect(f.push(Buffer.from(chunk))).toEqual([
      QEMU72.eventSetup.trimEnd(),
      '{"return": {}}',
      '{"return": {"status": "setup"}}',
      QEMU72.eventPass.trimEnd(),
    ]);
  });

  it('survives one-byte chunks, including a UTF-8 character split between chunks', () => {
    const text = '{"return": "caf\u00e9 \u{1F600}", "id": "migrace-3"}\r\n' + QEMU72.emptyReturnWithId;
    const f = new LineFramer();
    const lines = chunksOf(text, 1).flatMap((c) => f.push(c));
    expect(lines).toEqual(['{"return": "caf\u00e9 \u{1F600}", "id": "migrace-3"}', QEMU72.emptyReturnWithId.trimEnd()]);
  });

  it('accepts bare LF and drops blank lines', () => {
    const f = new LineFramer();
    expect(f.push('\r\n\n{"return": {}}\n  \r\n{"return": 1}\n')).toEqual(['{"return": {}}', '{"return": 1}']);
  });

  it('keeps a trailing partial message as pending', () => {
    const f = new LineFramer();
    expect(f.push('{"return": {}}\r\n{"ret')).toEqual(['{"return": {}}']);
    expect(f.pending).toBe('{"ret');
  });
});

describe('parseQmpLine', () => {
  it('reads the QEMU 7.2 greeting', () => {
    const m = parseQmpLine(QEMU72.greeting.trimEnd());
    expect(m.kind).toBe('greeting');
    if (m.kind !== 'greeting') return;
    expect(m.greeting.qemu).toEqual({ major: 7, minor: 2, micro: 22 });
    expect(m.greeting.package).toBe('Debian 1:7.2+dfsg-7+deb12u18+b3');
    expect(m.greeting.capabilities).toEqual(['oob']);
  });

  it('reads the minimig greeting as QEMU 6.2.0', () => {
    const m = parseQmpLine(MINIMIG.greeting.trimEnd());
    expect(m).toMatchObject({ kind: 'greeting', greeting: { qemu: { major: 6, minor: 2, micro: 0 }, package: 'minimig' } });
  });

  it('reads returns with and without id, keeping the whole reply', () => {
    expect(parseQmpLine('{"return": {}}')).toMatchObject({ kind: 'return', id: undefined, ret: {} });
    expect(parseQmpLine(QEMU72.emptyReturnWithId.trimEnd())).toMatchObject({ kind: 'return', id: 'migrace-1' });
    const active = parseQmpLine(QEMU72.active.trimEnd());
    expect(active.kind).toBe('return');
    if (active.kind !== 'return') return;
    expect(active.ret).toMatchObject({ status: 'active', 'total-time': 301, ram: { 'page-size': 4096 } });
    expect(active.raw).toEqual(JSON.parse(QEMU72.active));
    const bug = parseQmpLine(MINIMIG.bugReply.trimEnd());
    expect(bug).toMatchObject({ kind: 'return', ret: { status: 'active' } });
    if (bug.kind === 'return') expect(bug.ret).not.toHaveProperty('ram');
  });

  it('reads HMP text returns', () => {
    const m = parseQmpLine(QEMU72.hmp.trimEnd());
    expect(m).toMatchObject({ kind: 'return', id: 'h' });
    if (m.kind === 'return') expect(m.ret).toContain('store-global-state: on\r\n');
  });

  it('reads errors, with the id wherever QEMU put it', () => {
    expect(parseQmpLine(QEMU72.notNegotiated.trimEnd())).toMatchObject({
      kind: 'error',
      id: undefined,
      errorClass: 'CommandNotFound',
    });
    expect(parseQmpLine(QEMU72.garbage.trimEnd())).toMatchObject({
      kind: 'error',
      errorClass: 'GenericError',
      desc: "JSON parse error, invalid keyword 'garbage'",
    });
    expect(parseQmpLine(QEMU72.notFound.trimEnd())).toMatchObject({ kind: 'error', id: 'x' });
    expect(parseQmpLine(QEMU72.missingUri.trimEnd())).toMatchObject({ kind: 'error', id: 7, desc: "Parameter 'uri' is missing" });
  });

  it('reads events with their timestamps', () => {
    expect(parseQmpLine(QEMU72.eventSetup.trimEnd())).toEqual({
      kind: 'event',
      event: 'MIGRATION',
      data: { status: 'setup' },
      timestamp: { seconds: 1795651911, microseconds: 710127 },
      raw: JSON.parse(QEMU72.eventSetup),
    });
    expect(parseQmpLine(QEMU72.shutdown.trimEnd())).toMatchObject({ kind: 'event', event: 'SHUTDOWN' });
    expect(parseQmpLine('{"event": "STOP"}')).toMatchObject({ kind: 'event', event: 'STOP', data: undefined, timestamp: null });
  });

  it('rejects what is not QMP with a QMP error that names the line', () => {
    const cases: Array<[string, RegExp]> = [
      ['{"return": {}', /invalid JSON: "\{\\"return\\": \{\}"/],
      ['[1, 2]', /not a JSON object/],
      ['"hello"', /not a JSON object/],
      ['{"hello": 1}', /neither greeting, reply nor event/],
      ['{"error": "oops"}', /malformed error reply/],
      ['{"event": 5}', /malformed event/],
      ['{"QMP": {}}', /malformed greeting/],
    ];
    for (const [line, re] of cases) {
      let err: unknown;
      try {
        parseQmpLine(line);
      } catch (e) {
        err = e;
      }
      expect(err, line).toBeInstanceOf(MigraceError);
      expect((err as MigraceError).code).toBe('QMP');
      expect((err as MigraceError).message).toMatch(re);
    }
  });

  it('quotes long lines cut short', () => {
    const q = quoteLine('x'.repeat(1000));
    expect(q.length).toBeLessThan(220);
    expect(q.endsWith('..."')).toBe(true);
  });
});

describe('encodeCommand', () => {
  it('serializes with JSON.stringify, arguments only when given, one line', () => {
    expect(encodeCommand('query-migrate', undefined, 'migrace-1')).toBe('{"execute":"query-migrate","id":"migrace-1"}\n');
    expect(encodeCommand('migrate', { uri: 'tcp:127.0.0.1:4444' }, 'migrace-2')).toBe(
      '{"execute":"migrate","arguments":{"uri":"tcp:127.0.0.1:4444"},"id":"migrace-2"}\n',
    );
  });

  it('cannot be broken out of by hostile names or arguments', () => {
    const line = encodeCommand('x"}\n{"execute":"quit', { 'command-line': 'a\nb"c' }, 'migrace-3');
    expect(line.split('\n')).toHaveLength(2);
    expect(JSON.parse(line)).toEqual({
      execute: 'x"}\n{"execute":"quit',
      arguments: { 'command-line': 'a\nb"c' },
      id: 'migrace-3',
    });
  });
});
