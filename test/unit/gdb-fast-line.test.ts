import { describe, expect, it } from 'vitest';
import { parseHookLine } from '../../recorder/gdb-fast-line.js';
import { LineSplitter } from '../../recorder/uprobe/trace-line.js';

/**
 * Lines the gdb-fast hook wrote from inside gdb 13.1 on this machine,
 * captured from its socket: minimig --stress 3 (symbolic probes, debug
 * info), a read probe given an unknown name and one given a struct, and a
 * recording of Debian QEMU 7.2 (address probes, a stripped build).
 */
const MINIMIG = [
  'thread 1 1 17925 "minimig"',
  'place 0x555555556770 {"func": "migrate_set_state", "file": "minimig.c", "line": 314}',
  'hit 0 1 0x555555556770 10819006883178 93824992342688 1 4',
  'hit 3 1 0x555555556e11 10819012703041 ',
  'hit 1 1 0x555555556d68 10819015038772 4',
  'mark 1',
];
const ERRORS = [
  'error 1 value "No symbol \\"nosuch_var\\" in current context."',
  'error 1 value "it is a MigrationState, not an integer, enum or pointer"',
];
const QEMU72 = [
  'thread 1 1 18492 "qemu-system-x86"',
  'place 0x555555b50ee0 {"func": "migrate_set_state", "file": null, "line": null}',
  'hit 0 1 0x555555b50ee0 10844860876491 93825011465160 0 1',
  'thread 6 6 18503 "live_migration"',
  'hit 0 6 0x555555b50ee0 10844892944366 93825011465160 1 4',
  'hit 2 1 0x555555b503e4 10844890922861 1',
];

describe('gdb-fast hook lines', () => {
  it('reads a hit: probe, gdb thread, pc, CLOCK_MONOTONIC ns and the values in order', () => {
    expect(parseHookLine(MINIMIG[2])).toEqual({ kind: 'hit', probe: 0, thread: 1, pc: '0x555555556770', tNs: 10819006883178n, values: ['93824992342688', '1', '4'] });
    expect(parseHookLine(MINIMIG[3])).toEqual({ kind: 'hit', probe: 3, thread: 1, pc: '0x555555556e11', tNs: 10819012703041n, values: [] });
    expect(parseHookLine(QEMU72[4])).toMatchObject({ thread: 6, values: ['93825011465160', '1', '4'] });
  });

  it('reads threads with their LWP and name, and places with or without a source line', () => {
    expect(parseHookLine(QEMU72[3])).toEqual({ kind: 'thread', thread: 6, num: 6, lwp: 18503, name: 'live_migration' });
    expect(parseHookLine(MINIMIG[1])).toEqual({ kind: 'place', pc: '0x555555556770', func: 'migrate_set_state', file: 'minimig.c', line: 314 });
    expect(parseHookLine(QEMU72[1])).toEqual({ kind: 'place', pc: '0x555555b50ee0', func: 'migrate_set_state', file: null, line: null });
    expect(parseHookLine('thread 3 3 20001 "CPU 0/TCG"')).toMatchObject({ name: 'CPU 0/TCG' });
  });

  it('reads the errors gdb gave for a value, and markers', () => {
    expect(parseHookLine(ERRORS[0])).toEqual({ kind: 'error', probe: 1, value: 'value', message: 'No symbol "nosuch_var" in current context.' });
    expect(parseHookLine(ERRORS[1])).toMatchObject({ value: 'value', message: 'it is a MigrationState, not an integer, enum or pointer' });
    expect(parseHookLine('error 2 - "Python Exception"')).toMatchObject({ probe: 2, value: null });
    expect(parseHookLine(MINIMIG[5])).toEqual({ kind: 'mark', id: 1 });
  });

  it('refuses what the hook never writes, quoting the line', () => {
    expect(() => parseHookLine('hit 0 1 0x1 12 0x4')).toThrow(/the value "0x4" is not an integer/);
    expect(() => parseHookLine('hit 0 1 pc 12 4')).toThrow(/the pc is not an address/);
    expect(() => parseHookLine('thread 1 1 x "a"')).toThrow(/the LWP is not a number/);
    expect(() => parseHookLine('place 0x1 {"func":')).toThrow(/the place is not JSON/);
    expect(() => parseHookLine('[Inferior 1 (process 2205) exited normally]')).toThrow(/unexpected line from the gdb-fast hook .*Inferior 1/);
  });

  it('splits the socket stream into the same lines whatever the chunk boundaries', () => {
    const all = `${[...MINIMIG, ...ERRORS, ...QEMU72].join('\n')}\n`;
    const s = new LineSplitter();
    const lines: string[] = [];
    for (let i = 0; i < all.length; i += 23) lines.push(...s.push(all.slice(i, i + 23)));
    expect(lines.map(parseHookLine)).toEqual([...MINIMIG, ...ERRORS, ...QEMU72].map(parseHookLine));
  });
});
