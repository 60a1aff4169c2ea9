import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chooseBackend } from '../../recorder/record.js';
import { LineSplitter, parseTraceLine } from '../../recorder/uprobe/trace-line.js';
import { parseScope } from '../../recorder/uprobe/resolve.js';
import { definitionLine, uprobeUnavailable } from '../../recorder/uprobe/tracefs.js';
import { MigraceError } from '../../trace/errors.js';

/** Lines captured from a tracing instance's trace_pipe on this machine (kernel 6.18), recording Debian QEMU 7.2 and minimig. */
const CAPTURED = [
  '            node-8598    [001] ...1.  7943.666961: tracing_mark_write: hello marker',
  ' qemu-system-x86-8616    [000] DBZff  7943.708847: transition_0: (0x563b62abbee0) addr=0x563b86c04bc8 old=0 new=1',
  '  live_migration-8633    [001] DBZff  7943.713472: transition_0: (0x563b62abbee0) addr=0x563b86c04bc8 old=1 new=4',
  ' qemu-system-x86-8616    [000] DBZff  7943.754034: query_0: (0x563b62abb140)',
  ' qemu-system-x86-8616    [000] DBZff  7943.754098: read_0: (0x563b62abb1c5) value=4',
  ' qemu-system-x86-8616    [000] DBZff  7943.754772: query_0_ret: (0x563b62de257d <- 0x563b62abb140)',
  '         minimig-1232    [000] DBZff  7332.428109: read_0: (0x564a1f3e2d46) value=1',
];

describe('trace_pipe lines', () => {
  it('reads comm (with dashes), tid, cpu, the monotonic time in ns, the event and its values', () => {
    expect(parseTraceLine(CAPTURED[1])).toEqual({
      kind: 'hit', comm: 'qemu-system-x86', tid: 8616, cpu: 0, tsNs: 7943708847000n, event: 'transition_0',
      ip: '0x563b62abbee0', args: new Map([['addr', '0x563b86c04bc8'], ['old', '0'], ['new', '1']]),
    });
    expect(parseTraceLine(CAPTURED[2])).toMatchObject({ comm: 'live_migration', tid: 8633, cpu: 1, event: 'transition_0' });
    expect(parseTraceLine(CAPTURED[3])).toMatchObject({ event: 'query_0', args: new Map() });
    expect(parseTraceLine(CAPTURED[6])).toMatchObject({ comm: 'minimig', tid: 1232, event: 'read_0', args: new Map([['value', '1']]) });
  });

  it('takes the return address of a return probe and reads markers', () => {
    expect(parseTraceLine(CAPTURED[5])).toMatchObject({ event: 'query_0_ret', ip: '0x563b62de257d' });
    expect(parseTraceLine(CAPTURED[0])).toEqual({ kind: 'marker', tsNs: 7943666961000n, text: 'hello marker' });
  });

  it('keeps a comm with spaces whole, and ignores what is not an event line', () => {
    expect(parseTraceLine('       CPU 0/TCG-8620    [001] DBZff  7943.800000: transition_0: (0x1) old=4 new=5')).toMatchObject({ comm: 'CPU 0/TCG', tid: 8620 });
    expect(parseTraceLine('')).toBeNull();
    expect(parseTraceLine('CPU:1 [LOST 12 EVENTS]')).toBeNull();
  });

  it('splits a stream into lines whatever the chunk boundaries', () => {
    const s = new LineSplitter();
    const all = `${CAPTURED.join('\n')}\n`;
    const lines: string[] = [];
    for (let i = 0; i < all.length; i += 37) lines.push(...s.push(all.slice(i, i + 37)));
    expect(lines).toEqual(CAPTURED);
  });
});

describe('uprobe definitions', () => {
  const d = { event: 'transition_0', path: '/usr/bin/qemu-system-x86_64', fileOffset: 0x5fcee0, args: [{ name: 'old', fetch: '%si:s32' }, { name: 'p', fetch: '+4(-24(%bp)):s32' }] };

  it('writes one line in the kernel syntax', () => {
    expect(definitionLine('migrace_1', d)).toBe('p:migrace_1/transition_0 /usr/bin/qemu-system-x86_64:0x5fcee0 old=%si:s32 p=+4(-24(%bp)):s32');
    expect(definitionLine('migrace_1', { ...d, args: [], ret: true })).toBe('r:migrace_1/transition_0 /usr/bin/qemu-system-x86_64:0x5fcee0');
  });

  it('refuses anything that could hold a second definition or another place', () => {
    expect(() => definitionLine('g', { ...d, path: '/tmp/a b' })).toThrow(/without white space/);
    expect(() => definitionLine('g', { ...d, path: '/tmp/a\nr:g/x /bin/sh:0x0' })).toThrow(/without white space/);
    expect(() => definitionLine('g', { ...d, event: 'x y' })).toThrow(/bad probe event name/);
    expect(() => definitionLine('g', { ...d, args: [{ name: 'v', fetch: '%si\n-:g/x' }] })).toThrow(/bad fetch argument/);
    expect(() => definitionLine('g', { ...d, args: [{ name: 'v', fetch: '%si x=%di' }] })).toThrow(/bad fetch argument/);
  });
});

describe('when uprobes cannot run', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'migrace-tracefs-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('names the reason: not root, no tracefs, a kernel without uprobe events, no instances', () => {
    expect(uprobeUnavailable({ uid: 1000, tracefs: dir })).toBe('kernel uprobes need root (tracefs is root-only)');
    expect(uprobeUnavailable({ uid: 0, tracefs: null })).toMatch(/^tracefs is not mounted and could not be mounted/);
    expect(uprobeUnavailable({ uid: 0, tracefs: dir })).toBe(`${dir}/uprobe_events is missing: this kernel has no uprobe support (CONFIG_UPROBE_EVENTS)`);
    writeFileSync(join(dir, 'uprobe_events'), '');
    expect(uprobeUnavailable({ uid: 0, tracefs: dir })).toMatch(/\/instances is missing: this kernel cannot make a private tracing instance$/);
    mkdirSync(join(dir, 'instances'));
    expect(uprobeUnavailable({ uid: 0, tracefs: dir })).toBeNull();
  });

  it('--backend uprobe is refused with the reason; auto falls back to gdb-fast and says why; gdb and gdb-fast never look', () => {
    const why = (): string => 'kernel uprobes need root (tracefs is root-only)';
    let e: unknown;
    try {
      chooseBackend('uprobe', undefined, why);
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(MigraceError);
    expect((e as MigraceError).code).toBe('UPROBE');
    expect((e as MigraceError).message).toBe('--backend uprobe cannot run here: kernel uprobes need root (tracefs is root-only)');
    const said: string[] = [];
    expect(chooseBackend('auto', (m) => said.push(m), why)).toBe('gdb-fast');
    expect(said).toEqual(['recording through gdb-fast, breakpoints handled inside gdb (uprobes unavailable: kernel uprobes need root (tracefs is root-only))']);
    const never = (): string => { throw new Error('looked'); };
    expect(chooseBackend('gdb', undefined, never)).toBe('gdb');
    expect(chooseBackend('gdb-fast', undefined, never)).toBe('gdb-fast');
    expect(chooseBackend('auto', undefined, () => null)).toBe('uprobe');
  });
});

/** gdb 13's `info scope migrate_set_state`, captured: minimig (-O0) and QEMU 5.2 built -O2 -g from Debian's source. */
const scope = (name: string): string => readFileSync(join(import.meta.dirname, '../fixtures/gdb-scope', name), 'utf8');

describe('info scope: where a named value lives', () => {
  it('-O0: parameters in the frame (DW_OP_fbreg)', () => {
    const homes = parseScope(scope('minimig-O0-migrate_set_state.txt'));
    expect(homes.get('state')).toEqual({ fbreg: -40, regs: [] });
    expect(homes.get('old_state')).toEqual({ fbreg: -44, regs: [] });
    expect(homes.get('new_state')).toEqual({ fbreg: -48, regs: [] });
  });

  it('-O2: parameters in their argument registers over address ranges, entry values left out', () => {
    const homes = parseScope(scope('qemu-5.2-O2g-migrate_set_state.txt'));
    const at = (name: string, addr: number) => homes.get(name)?.regs.find((r) => addr >= r.from && addr < r.to)?.reg ?? null;
    // gdb places `break migrate_set_state` at 0x2ca930 (the entry) and 0x2caa21 (line 1663).
    for (const addr of [0x2ca930, 0x2caa21]) {
      expect([at('state', addr), at('old_state', addr), at('new_state', addr)]).toEqual(['rdi', 'rsi', 'rdx']);
    }
    // Between 0x2ca95d and 0x2ca97c `state` is only DW_OP_entry_value: no register holds it, so nothing is fetched there.
    expect(at('state', 0x2ca960)).toBeNull();
    expect(homes.get('state')?.fbreg).toBeNull();
    expect(homes.get('__PRETTY_FUNCTION__')).toEqual({ fbreg: null, regs: [] });
  });
});
