import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { mergeReadPoints, staticReadPoints } from '../../analyzer/hunt-readpoints.js';
import { accessKind, effectiveAddress, memoryOperand, textMapOf, valueAfter, type PlacedBreakpoint, type TracedRead, type TraceRun } from '../../recorder/read-trace.js';
import { parseDisasmLine } from '../../recorder/probes/disasm.js';
import { ProfileSchema, type Probe, type Profile } from '../../recorder/probes/profile.js';
import { minimigProfile } from '../../recorder/probes/minimig.js';
import { minimigDir } from '../../recorder/targets/minimig.js';
import { MigraceError } from '../../trace/errors.js';

/*
 * The read points: the single-stepping tracer's pure parts on instructions
 * gdb printed for real builds, and the merge of its reads (captured from
 * real traces, test/fixtures/hunt/) with the profile's static read points.
 */

interface TraceCapture { reads: TracedRead[]; runs: TraceRun[]; breakpoints: PlacedBreakpoint[]; profile_read: Probe[] }
const capture = (name: string): TraceCapture => JSON.parse(readFileSync(`test/fixtures/hunt/${name}`, 'utf8')) as TraceCapture;
const line = (text: string, addr = '0x555555b501bd') => parseDisasmLine(`${addr} <qmp_query_migrate+125>:\t${text}`)!;

describe('which instructions read memory, and where', () => {
  it('a load, a compare, a rip-relative read; not the stack, not lea, not a call', () => {
    expect(memoryOperand(line('mov    0x2e8(%r12),%r13d'))).toMatchObject({ base: 'r12', disp: 0x2e8 });
    expect(memoryOperand(line('cmpl   $0x8,0x2e8(%rbp)'))).toMatchObject({ base: 'rbp', disp: 0x2e8 });
    expect(memoryOperand(line('mov    0x7d4a25(%rip),%rax        # 0xdc96d8'))).toMatchObject({ base: 'rip' });
    expect(memoryOperand(line('mov    0x8(%rsp),%rax'))).toBeNull();
    expect(memoryOperand(line('lea    0x2e8(%r12),%rdi'))).toBeNull();
    expect(memoryOperand(line('call   *0x10(%rax)'))).toBeNull();
    expect(memoryOperand(line('push   0x10(%rax)'))).toBeNull();
  });

  it('computes base + index * scale + disp from register values, rip from the next instruction', () => {
    const regs = new Map([['r12', 0x5555567ab8e0n], ['rax', 3n], ['rbx', 0x1000n]]);
    expect(effectiveAddress(memoryOperand(line('mov    0x2e8(%r12),%r13d'))!, regs, 0n)).toBe(0x5555567abbc8n);
    expect(effectiveAddress(memoryOperand(line('mov    0x10(%rbx,%rax,4),%edx'))!, regs, 0n)).toBe(0x101cn);
    expect(effectiveAddress(memoryOperand(line('mov    0x20(%rip),%eax'))!, regs, 0x5000n)).toBe(0x5020n);
    expect(effectiveAddress(memoryOperand(line('mov    0x10(%rcx),%eax'))!, regs, 0n)).toBeNull();
    expect(effectiveAddress(memoryOperand(line('mov    -0x8(%rbx),%eax'))!, regs, 0n)).toBe(0xff8n);
  });

  it('names the value read: the register a load wrote, the state word through the base register of a compare', () => {
    const load = line('mov    0x2e8(%r12),%r13d');
    expect(accessKind(load)).toBe('load');
    expect(valueAfter(load, memoryOperand(load)!)).toBe('$r13d');
    const cmp = line('cmpl   $0x8,0x2e8(%rbp)');
    expect(accessKind(cmp)).toBe('compare');
    expect(valueAfter(cmp, memoryOperand(cmp)!)).toBe('*(int *)($rbp + 0x2e8)');
    const wide = line('mov    0x2e8(%r12),%rax');
    expect(valueAfter(wide, memoryOperand(wide)!)).toBeNull();
    const other = line('addl   $0x1,0x2e8(%r12)');
    expect(accessKind(other)).toBe('other');
  });

  it('finds the binary\'s executable mappings and its load bias in /proc/PID/maps', () => {
    const maps = readFileSync('test/fixtures/hunt/minimig.maps', 'utf8');
    const bin = '/work/wt/hunt/samples/minimig/minimig';
    const t = textMapOf(maps, bin, true);
    expect(t.ranges).toEqual([[0x55dfd8d2a000n, 0x55dfd8d31000n]]);
    expect(t.bias).toBe(0x55dfd8d28000n);
    expect(textMapOf(maps, bin, false).bias).toBe(0n);
    expect(textMapOf(maps, '/other', true).ranges).toEqual([]);
  });
});

describe('static read points from the profile', () => {
  it('falls back to the read probe of a profile that lists no read points', () => {
    const p = minimigProfile(minimigDir(), 'minimig', false);
    const pts = staticReadPoints(p);
    expect(pts.map((x) => [x.name, x.found, x.probe.locations[0]])).toEqual([['read', ['static'], expect.stringMatching(/^minimig\.c:\d+$/)]]);
  });

  it('takes discovery\'s read_points when the profile has them (value null: not a row)', () => {
    const base = minimigProfile(minimigDir(), 'minimig', false);
    const point = (name: string, pc: string, instruction: string, access: string, location: string, value: string | null) => ({
      name, function: name.split('+')[0], offset: Number(name.split('+')[1]), pc, next_pc: pc, instruction, access, location, value,
      via: ['qmp_query_migrate'], found: ['static'], why: 'from the disassembly',
    });
    const withList = ProfileSchema.parse({
      ...base,
      read_points: [
        point('qmp_query_migrate+125', '0x5fc1bd', 'mov    0x2e8(%r12),%r13d', 'load', '*qmp_query_migrate+133', '$r13d'),
        point('sub_5fa520+339', '0x5fa673', 'cmpl   $0x8,0x2e8(%rbp)', 'compare', '*qmp_query_migrate-6854', null),
      ],
    });
    const pts = staticReadPoints(withList);
    expect(pts.map((x) => [x.name, x.file_pc, x.probe.locations[0], x.probe.values.value])).toEqual([['qmp_query_migrate+125', '0x5fc1bd', '*qmp_query_migrate+133', '$r13d']]);
  });

  it('a profile with no read point at all is an error that says what is missing', () => {
    const p = { ...minimigProfile(minimigDir(), 'minimig', false), binary: '/x/qemu' };
    p.probes = p.probes.filter((x) => x.role !== 'read');
    const e = (() => { try { staticReadPoints(p); } catch (err) { return err; } return null; })();
    expect(e).toBeInstanceOf(MigraceError);
    expect((e as Error).message).toBe('the profile of /x/qemu has no read point: no read_points list and no read probe (migrace probes shows what discovery found)');
  });
});

describe('static and dynamic read points merged', () => {
  it('minimig: the line probe after the load is that read; the re-reads are dynamic-only rows, in execution order', () => {
    const c = capture('minimig-trace.json');
    const statics = staticReadPoints(ProfileSchema.parse({ ...minimigProfile(minimigDir(), 'minimig', false), probes: [...c.profile_read, ...minimigProfile(minimigDir(), 'minimig', false).probes.filter((p) => p.role !== 'read')] }));
    const m = mergeReadPoints(statics, c.reads, c.runs, c.breakpoints);
    expect(m.points.map((p) => [p.function, p.offset, p.found.join('+')])).toEqual([
      ['fill_source_migration_info', 29, 'static+dynamic'],
      ['populate_time_info', 61, 'dynamic'],
      ['fill_source_migration_info', 236, 'dynamic'],
    ]);
    expect(m.points[0].name).toBe('read');
    expect(m.points[1].probe).toMatchObject({ role: 'read', locations: ['*populate_time_info+63'], values: { value: '$eax' } });
    expect(m.crossCheck[0].note).toMatch(/stops a few instructions after the read/);
    expect(m.crossCheck.filter((x) => !x.static).map((x) => x.point)).toEqual([m.points[1].name, m.points[2].name]);
  });

  it('QEMU 7.2: the discovered read probe is exactly the read-once load; the inlined and out-of-line re-reads are dynamic-only', () => {
    const c = capture('qemu-7.2-trace.json');
    const statics = staticReadPoints({ ...minimigProfile(minimigDir(), 'x', false), probes: [...c.profile_read, ...minimigProfile(minimigDir(), 'x', false).probes.filter((p) => p.role === 'transition')] });
    const m = mergeReadPoints(statics, c.reads, c.runs, c.breakpoints);
    expect(m.points.map((p) => `${p.function}+${p.offset} ${p.found.join('+')} ${p.states.join(',')}`)).toEqual([
      'qmp_query_migrate+125 static+dynamic setup,active,completed',
      'qmp_query_migrate+606 dynamic completed',
      'qmp_query_migrate+432 dynamic active',
      'sub_5fa520+339 dynamic active,completed',
    ]);
    expect(m.crossCheck[0]).toEqual({ point: 'read', static: true, dynamic: true, note: null });
    expect(m.points[3].probe.values.value).toBe('*(int *)($rbp + 0x2e8)');
  });

  it('a static point no traced query executed stays a row, and the cross-check says which states were traced', () => {
    const c = capture('qemu-7.2-trace.json');
    const ghost: Probe = { name: 'ghost', role: 'read', locations: ['*qmp_query_migrate+900'], values: { value: '$eax' }, why: '' };
    const statics = staticReadPoints({ ...minimigProfile(minimigDir(), 'x', false), probes: [ghost, ...minimigProfile(minimigDir(), 'x', false).probes.filter((p) => p.role === 'transition')] });
    const m = mergeReadPoints(statics, c.reads, c.runs, c.breakpoints);
    expect(m.points.at(-1)!.name).toBe('ghost');
    expect(m.crossCheck.at(-1)).toEqual({ point: 'ghost', static: true, dynamic: false, note: 'never executed by the traced queries (in setup, active, completed): a branch those states do not take, or below the trace\'s depth' });
  });
});
