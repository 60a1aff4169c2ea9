import { chmodSync, mkdirSync, mkdtempSync, readFileSync, existsSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MigraceError } from '../../trace/errors.js';
import { analyzeDisassembly, buildProfile, findGlobal, FIRST_PASS_FUNCTIONS, planQueryPath, type DisassemblyInput } from '../../recorder/probes/analysis.js';
import { decideStatusNames, type StatusDecision } from '../../recorder/probes/status-lookup.js';
import { discoverProfile, loadProfileFile, parseProfileText, parseVersionOutput } from '../../recorder/probes/discover.js';
import { parseDisasmLine, parseDisassembly, parseOperand } from '../../recorder/probes/disasm.js';
import { buildIdFromNotes, parseDebugLink, readElfInfo } from '../../recorder/probes/elf.js';
import { DEBUG_DIR_VARIABLE, debugFileDirectories, gdbDebugDirOptions } from '../../recorder/debug-dirs.js';
import type { ElfSymbol } from '../../recorder/probes/elf-image.js';
import { cloneBase, FunctionTable } from '../../recorder/probes/functions.js';
import { ProfileSchema } from '../../recorder/probes/profile.js';
import { isAlive, survivors, waitGone } from '../../recorder/reaper.js';
import { sleep } from '../../trace/async.js';

const FIX = join(import.meta.dirname, '../fixtures/disasm');
const tmp = mkdtempSync(join(tmpdir(), 'migrace-discover-unit-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function captured(version: '5.2' | '7.2'): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  for (const f of FIRST_PASS_FUNCTIONS) {
    const p = join(FIX, `qemu-${version}.${f}.txt`);
    const text = existsSync(p) ? readFileSync(p, 'utf8') : '';
    out[f] = text.includes('Dump of assembler code') ? text : null;
  }
  return out;
}

/** A gdb-shaped listing from (offset, instruction) pairs; `@+N` in a jump is replaced by the address and symbol. */
function listing(fn: string, base: number, rows: Array<[number, string]>): string {
  const addr = (off: number): string => `0x${(base + off).toString(16)}`;
  const lines = rows.map(([off, ins]) => {
    const text = ins.replace(/@\+(\d+)/g, (_, n: string) => `${addr(Number(n))} <${fn}+${n}>`);
    return `   0x${(base + off).toString(16).padStart(16, '0')} <+${off}>:\t${text}`;
  });
  return `Dump of assembler code for function ${fn}:\n${lines.join('\n')}\nEnd of assembler dump.\n`;
}

/**
 * QEMU 10.0 as docs/qemu-facts.md describes it (Debian trixie 1:10.0.13+ds-0+deb13u1):
 * endbr64 everywhere, no migration_in_setup / migration_is_active,
 * migration_has_failed starts `mov 0x2f8(%rdi),%edx`, the destination part
 * stores at +188 from a read of 0x230(%rbx), the source reads once with
 * `mov 0x2f8(%r12),%r13d` at +214 and stores `mov %r13d,0x4(%r14)` at +430;
 * populate_time_info / populate_ram_info are out-of-line calls.
 */
const G10 = 0x1a2b3f8;
const INCOMING10 = 0x1a2b3f0;
function qemu10(): Record<string, string | null> {
  return {
    migrate_set_state: listing('migrate_set_state', 0x6b0000, [
      [0, 'endbr64'], [4, 'push   %rbp'], [5, 'mov    %edx,%ebp'], [7, 'push   %rbx'], [8, 'mov    %esi,%eax'],
      [10, 'sub    $0x8,%rsp'], [14, 'lock cmpxchg %edx,(%rdi)'], [18, 'jne    @+40'], [20, 'mov    %ebp,%edi'],
      [22, 'call   0x6c0000 <migrate_generate_event>'], [27, 'add    $0x8,%rsp'], [31, 'pop    %rbx'], [32, 'pop    %rbp'],
      [33, 'ret'], [40, 'add    $0x8,%rsp'], [44, 'pop    %rbx'], [45, 'pop    %rbp'], [46, 'ret'],
    ]),
    migrate_get_current: listing('migrate_get_current', 0x6a8000, [
      [0, 'endbr64'], [4, `mov    0x${(G10 - 0x6a800b).toString(16)}(%rip),%rax        # 0x${G10.toString(16)}`],
      [11, 'test   %rax,%rax'], [14, 'je     @+17'], [16, 'ret'], [17, 'push   %rax'], [18, 'call   0x6a7000'],
    ]),
    migration_in_setup: null,
    migration_is_active: null,
    migration_has_failed: listing('migration_has_failed', 0x6a9000, [
      [0, 'endbr64'], [4, 'mov    0x2f8(%rdi),%edx'], [10, 'cmp    $0x3,%edx'], [13, 'sete   %al'], [16, 'cmp    $0xa,%edx'],
      [19, 'sete   %dl'], [22, 'or     %edx,%eax'], [24, 'ret'],
    ]),
    migration_is_running: listing('migration_is_running', 0x6a9100, [
      [0, 'endbr64'], [4, `mov    0x${(G10 - 0x6a910b).toString(16)}(%rip),%rax        # 0x${G10.toString(16)}`],
      [11, 'test   %rax,%rax'], [14, 'je     @+40'], [16, 'mov    0x2f8(%rax),%eax'], [22, 'cmp    $0xe,%eax'],
      [25, 'ja     @+40'], [27, 'mov    $0x78f6,%edx'], [32, 'bt     %rax,%rdx'], [36, 'setb   %al'], [39, 'ret'],
      [40, 'xor    %eax,%eax'], [42, 'ret'],
    ]),
    qmp_query_migrate: listing('qmp_query_migrate', 0x6a0000, [
      [0, 'endbr64'], [4, 'push   %r14'], [6, 'mov    $0x110,%edi'], [11, 'push   %r13'], [13, 'push   %r12'],
      [15, 'push   %rbp'], [16, 'push   %rbx'], [17, 'call   0x40b1c0 <g_malloc0@plt>'],
      [22, `mov    0x98b3c5(%rip),%rbx        # 0x${INCOMING10.toString(16)}`], [29, 'test   %rbx,%rbx'],
      [32, 'je     @+560'], [38, 'mov    %rax,%r14'], [41, 'cmpq   $0x0,0x3d8(%rbx)'], [49, 'je     @+84'],
      [51, 'movb   $0x1,0x100(%rax)'], [58, 'lea    0x3a0000(%rip),%rsi        # 0xa4003a <visit_type_SocketAddressList>'],
      [65, 'mov    0x3d8(%rbx),%rdi'], [72, 'call   0xa80000 <qapi_clone>'], [77, 'mov    %rax,0x108(%r14)'],
      [84, 'mov    0x230(%rbx),%eax'], [90, 'cmp    $0x9,%eax'], [93, 'je     @+176'], [99, 'jg     @+160'],
      [105, 'test   %eax,%eax'], [107, 'jne    @+140'], [113, 'jmp    @+192'], [118, 'cs nopw 0x0(%rax,%rax,1)'],
      [140, 'lea    -0x1(%rax),%edx'], [143, 'cmp    $0x7,%edx'], [146, 'ja     @+188'], [148, 'movb   $0x1,(%r14)'],
      [152, 'mov    0x230(%rbx),%eax'], [158, 'jmp    @+188'], [160, 'movb   $0x1,(%r14)'], [164, 'mov    0x230(%rbx),%eax'],
      [170, 'jmp    @+188'], [172, 'nopl   0x0(%rax)'], [176, 'movb   $0x1,(%r14)'], [180, 'xchg   %ax,%ax'],
      [182, 'mov    0x230(%rbx),%eax'], [188, 'mov    %eax,0x4(%r14)'],
      [192, `mov    0x98b25f(%rip),%r12        # 0x${G10.toString(16)}`], [199, 'test   %r12,%r12'], [202, 'je     @+565'],
      [208, 'nopw   0x0(%rax,%rax,1)'], [214, 'mov    0x2f8(%r12),%r13d'],
      [222, 'mov    0x98b240(%rip),%rbp        # 0x1a2b3e8'], [229, 'movq   $0x0,0xc0(%r14)'], [240, 'lea    0xc0(%r14),%rdi'],
      [247, 'call   0x6c2000 <qemu_savevm_non_migratable_list>'], [252, 'cmp    $0xe,%r13d'], [256, 'ja     @+426'],
      [262, 'lea    0x4a0000(%rip),%rdx        # 0xb40106'], [269, 'mov    %r13d,%eax'], [272, 'movslq (%rdx,%rax,4),%rax'],
      [276, 'add    %rdx,%rax'], [279, 'notrack jmp *%rax'], [282, 'nopw   0x0(%rax,%rax,1)'],
      [288, 'movb   $0x1,(%r14)'], [292, 'mov    %r12,%rsi'], [295, 'mov    %r14,%rdi'], [298, 'call   0x6a1000'],
      [303, 'mov    %r12,%rsi'], [306, 'mov    %r14,%rdi'], [309, 'call   0x6a1200'], [314, 'mov    %r14,%rdi'],
      [317, 'call   0x7a0000 <populate_vfio_info>'], [322, 'jmp    @+430'], [327, 'nop'],
      [328, 'movb   $0x1,(%r14)'], [332, 'movb   $0x0,0x48(%r14)'], [337, 'jmp    @+430'],
      [342, 'movb   $0x1,(%r14)'], [346, 'cmpq   $0x0,0x620(%r12)'], [355, 'je     @+430'], [361, 'mov    0x620(%r12),%rdi'],
      [369, 'call   0xa90000 <error_get_pretty>'], [374, 'mov    %rax,%rdi'], [377, 'call   0x40a7c0 <g_strdup@plt>'],
      [382, 'movb   $0x1,0x98(%r14)'], [390, 'mov    %rax,0xa0(%r14)'], [397, 'jmp    @+430'],
      [402, 'movb   $0x1,(%r14)'], [406, 'mov    %r12,%rsi'], [409, 'mov    %r14,%rdi'], [412, 'call   0x6a1000'],
      [417, 'mov    %r14,%rdi'], [420, 'call   0x6a1200'], [425, 'nop'], [426, 'movb   $0x1,(%r14)'],
      [430, 'mov    %r13d,0x4(%r14)'], [434, 'pop    %rbx'], [435, 'mov    %r14,%rax'], [438, 'pop    %rbp'],
      [439, 'pop    %r12'], [441, 'pop    %r13'], [443, 'pop    %r14'], [445, 'ret'],
      [560, 'call   0x6a7100'], [565, 'call   0x6a7000'],
    ]),
  };
}

/** The names a binary without MigrationStatus_lookup gets: its version's table. */
function versionTable(version: string): StatusDecision {
  const d = decideStatusNames({ found: false, why: 'no MigrationStatus_lookup in a captured listing' }, version);
  if ('refused' in d) throw new Error(d.refused);
  return d;
}

function probe(profile: ReturnType<typeof buildProfile>, name: string) {
  const p = profile.probes.find((x) => x.name === name);
  if (!p) throw new Error(`no probe ${name}`);
  return p;
}

describe('disassembly lines', () => {
  it('parses a captured gdb line into address, offset, mnemonic and operands', () => {
    const l = parseDisasmLine('   0x0000000000518fa5 <+117>:\tmov    0x238(%rbx),%eax');
    expect(l).toMatchObject({ address: 0x518fa5, offset: 117, mnemonic: 'mov', operands: ['0x238(%rbx)', '%eax'], comment: null });
    expect(parseOperand('0x238(%rbx)')).toEqual({ kind: 'mem', seg: null, disp: 0x238, base: 'rbx', index: null, scale: 1 });
    expect(parseOperand('%r13d')).toEqual({ kind: 'reg', reg: 'r13d', canon: 'r13', width: 32 });
  });

  it('keeps the rip-relative target from the comment and jump targets with their symbol', () => {
    const rip = parseDisasmLine('   0x0000000000518f41 <+17>:\tmov    0x8b0788(%rip),%rbx        # 0xdc96d0');
    expect(rip).toMatchObject({ text: 'mov    0x8b0788(%rip),%rbx', commentAddress: 0xdc96d0 });
    const ja = parseDisasmLine('   0x0000000000518fae <+126>:\tja     0x518feb <qmp_query_migrate+187>');
    expect(ja).toMatchObject({ mnemonic: 'ja', target: 0x518feb, targetSymbol: 'qmp_query_migrate+187' });
    const call = parseDisasmLine('   0x0000000000518f3c <+12>:\tcall   0x3be770 <g_malloc0@plt>');
    expect(call).toMatchObject({ mnemonic: 'call', target: 0x3be770, targetSymbol: 'g_malloc0@plt' });
  });

  it('handles prefixes, the current-pc marker, memory with an index, and non-instruction lines', () => {
    expect(parseDisasmLine('=> 0x00005555559fcf07 <+39>:\tlock cmpxchg %edx,(%rdi)')).toMatchObject({
      offset: 39, prefixes: ['lock'], mnemonic: 'cmpxchg', operands: ['%edx', '(%rdi)'],
    });
    expect(parseDisasmLine('   0x00000000006a0117 <+279>:\tnotrack jmp *%rax')).toMatchObject({ prefixes: ['notrack'], mnemonic: 'jmp', operands: ['*%rax'] });
    expect(parseOperand('(%rdx,%rax,4)')).toMatchObject({ kind: 'mem', base: 'rdx', index: 'rax', scale: 4, disp: 0 });
    expect(parseOperand('%fs:0x28')).toMatchObject({ kind: 'mem', seg: 'fs', disp: 0x28 });
    expect(parseDisasmLine('End of assembler dump.')).toBeNull();
    expect(parseDisasmLine('Dump of assembler code for function qmp_query_migrate:')).toBeNull();
  });

  it('parses a whole captured listing', () => {
    const l = parseDisassembly(readFileSync(join(FIX, 'qemu-7.2.qmp_query_migrate.txt'), 'utf8'));
    expect(l.function).toBe('qmp_query_migrate');
    expect(l.lines).toHaveLength(194);
    expect(l.lines.find((x) => x.offset === 125)?.text).toBe('mov    0x2e8(%r12),%r13d');
    expect(findGlobal(parseDisassembly(readFileSync(join(FIX, 'qemu-5.2.migrate_get_current.txt'), 'utf8')))).toMatchObject({ address: 0xdc96d8, kind: 'pointer' });
  });
});

describe('discovery on captured Debian builds', () => {
  it('7.2 (bookworm): read once at +125, probes at +133 / +332 +513 +676 in $r13d, patched', () => {
    const a = analyzeDisassembly({ listings: captured('7.2'), debugInfo: false });
    expect(a.stateOffset).toBe(0x2e8);
    expect(a.global).toMatchObject({ address: 0x118eef8, kind: 'pointer' });
    expect(a.read).toMatchObject({ location: '*qmp_query_migrate+133', value: '$r13d' });
    expect(a.publishes.map((p) => [p.location, p.value])).toEqual([
      ['*qmp_query_migrate+332', '$r13d'], ['*qmp_query_migrate+513', '$r13d'], ['*qmp_query_migrate+676', '$r13d'],
    ]);
    expect(a.variant).toBe('patched');
    // The destination side reads current_incoming first, at another offset: not the read.
    expect(a.notes.join('\n')).toMatch(/\+80 `mov 0x1d0\(%rbx\),%eax`.*destination/);
    const profile = buildProfile(a, { binary: '/usr/bin/qemu-system-x86_64', buildId: 'd9541fd67c4ea37f9ca7fca0f5096f32b3b7e7e0', qemuVersion: '7.2.22', status: versionTable('7.2.22') });
    expect(ProfileSchema.parse(profile)).toEqual(profile);
    expect(profile).toMatchObject({ kind: 'address', status_table: '4.2', variant: 'patched', state_offset: 0x2e8 });
    expect(probe(profile, 'transition')).toMatchObject({ locations: ['migrate_set_state'], values: { addr: '$rdi', old: '$esi', new: '$edx' } });
    expect(probe(profile, 'read')).toMatchObject({ locations: ['*qmp_query_migrate+133'], values: { value: '$r13d' } });
    expect(probe(profile, 'publish')).toMatchObject({
      locations: ['*qmp_query_migrate+332', '*qmp_query_migrate+513', '*qmp_query_migrate+676'], values: { value: '$r13d' },
    });
    expect(profile.state_addr_expr).toBe('(int *)(*(char **)((char *)migrate_get_current + 0xb939a8) + 0x2e8)');
  });

  it('5.2 (bullseye): read at +117, probes at +123 / +187 +457 +636 in $eax, each store after a re-read: unpatched', () => {
    const a = analyzeDisassembly({ listings: captured('5.2'), debugInfo: false });
    expect(a.stateOffset).toBe(0x238);
    expect(a.global).toMatchObject({ address: 0xdc96d8, kind: 'pointer' });
    expect(a.read).toMatchObject({ location: '*qmp_query_migrate+123', value: '$eax' });
    expect(a.publishes.map((p) => [p.location, p.value])).toEqual([
      ['*qmp_query_migrate+187', '$eax'], ['*qmp_query_migrate+457', '$eax'], ['*qmp_query_migrate+636', '$eax'],
    ]);
    for (const [store, reread] of [[187, 181], [457, 451], [636, 630]]) {
      const p = a.publishes.find((x) => x.offset === store)!;
      expect(p.sources).toContainEqual(expect.objectContaining({ kind: 're-read', offset: reread }));
    }
    expect(a.variant).toBe('unpatched');
    expect(a.variantWhy).toMatch(/re-read/);
    const profile = buildProfile(a, { binary: null, buildId: 'e75c4e44f088a4a9c5bb4880bed10e7a81dc2606', qemuVersion: '5.2.0', status: versionTable('5.2.0') });
    expect(profile).toMatchObject({ variant: 'unpatched', state_offset: 0x238, status_table: '4.2' });
    expect(profile.state_addr_expr).toBe('(int *)(*(char **)((char *)migrate_get_current + 0x8b1478) + 0x238)');
  });

  it('with debug info the transition probe reads the parameters by name', () => {
    const a = analyzeDisassembly({ listings: captured('7.2'), debugInfo: true, debugStateOffset: 0x2e8 });
    expect(a.transition.values).toEqual({ addr: 'state', old: 'old_state', new: 'new_state' });
    expect(a.read.location).toBe('*qmp_query_migrate+133');
    expect(a.stateOffsetWhy).toMatch(/debug info/);
  });
});

describe('discovery on a QEMU 10.0-shaped listing (endbr64, no migration_in_setup)', () => {
  it('takes the offset from migration_has_failed and finds the read once at +214', () => {
    const a = analyzeDisassembly({ listings: qemu10(), debugInfo: false });
    expect(a.stateOffset).toBe(0x2f8);
    expect(a.stateOffsetWhy).toMatch(/migration_has_failed/);
    expect(a.notes.join('\n')).toMatch(/migration_is_running agrees/);
    expect(a.read).toMatchObject({ location: '*qmp_query_migrate+222', value: '$r13d' });
    expect(a.publishes.map((p) => [p.location, p.value])).toEqual([['*qmp_query_migrate+430', '$r13d']]);
    expect(a.variant).toBe('patched');
    const profile = buildProfile(a, { binary: null, buildId: null, qemuVersion: '10.0.3', status: versionTable('10.0.3') });
    expect(profile.status_table).toBe('9.1');
  });

  it('without any helper: the read is still found, the offset is left to the first migrate_set_state hit', () => {
    const l = { ...qemu10(), migration_has_failed: null, migration_is_running: null };
    const a = analyzeDisassembly({ listings: l, debugInfo: false });
    expect(a.stateOffset).toBeNull();
    expect(a.stateAddrExpr).toBeNull();
    expect(a.read.location).toBe('*qmp_query_migrate+222');
    expect(a.notes.join('\n')).toContain('$rdi - (long)migrate_get_current()');
    const profile = buildProfile(a, { binary: null, buildId: null, qemuVersion: '10.0.3', status: versionTable('10.0.3') });
    expect(profile.state_offset).toBeNull();
  });

  it('an unpatched variant of the same shape (a re-read before the store) is unpatched', () => {
    const l = qemu10();
    l.qmp_query_migrate = l.qmp_query_migrate!
      .replace('<+426>:\tmovb   $0x1,(%r14)', '<+426>:\tmov    0x2f8(%r12),%r13d')
      .replace(/<\+430>:\tmov    %r13d,0x4\(%r14\)/, '<+430>:\tmov    %r13d,0x4(%r14)');
    const a = analyzeDisassembly({ listings: l, debugInfo: false });
    expect(a.variant).toBe('unpatched');
    expect(a.publishes[0].sources).toContainEqual(expect.objectContaining({ kind: 're-read', offset: 426 }));
  });
});

/**
 * test/fixtures/c/split.c built with gcc 12 -O2 -g -rdynamic: gcc split
 * migrate_get_current into the function and migrate_get_current.part.0 (the
 * failed assert), made populate_time_info.constprop.0 and
 * qmp_query_migrate.cold. Listings as discovery takes them: by the symbol
 * table's range with --readnever; `split.by-name.*` is what `disassemble
 * migrate_get_current` gives with the debug info loaded.
 */
function splitInput(over: Partial<DisassemblyInput> = {}): DisassemblyInput {
  const read = (f: string): string => readFileSync(join(FIX, `split.${f}.txt`), 'utf8');
  const listings: Record<string, string | null> = {};
  for (const f of FIRST_PASS_FUNCTIONS) listings[f] = existsSync(join(FIX, `split.${f}.txt`)) ? read(f) : null;
  return {
    listings,
    code: [
      { name: 'populate_time_info.constprop.0', start: 0x12d0, text: read('populate_time_info.constprop.0'), anchor: false, refersToState: false },
      { name: 'qmp_query_migrate.cold', start: 0x1090, text: read('qmp_query_migrate.cold'), anchor: false, refersToState: false },
    ],
    debugInfo: false,
    ...over,
  };
}

describe('discovery on a captured split function (gcc -O2: migrate_get_current and its .part.0)', () => {
  it('the symbol table\'s migrate_get_current has the global; the name gdb resolves with debug info is the assert path', () => {
    const real = parseDisassembly(readFileSync(join(FIX, 'split.migrate_get_current.txt'), 'utf8'));
    expect(findGlobal(real)).toMatchObject({ address: 0x4278, kind: 'pointer' });
    const byName = readFileSync(join(FIX, 'split.by-name.migrate_get_current.txt'), 'utf8');
    expect(byName).toContain('__assert_fail@plt');
    expect(parseDisassembly(byName).lines[0].address).toBe(0x12a0);
    expect(findGlobal(parseDisassembly(byName))).toBeNull();
  });

  it('finds the read, both re-reads (one across a call gcc knows leaves %rcx alone) and the read in the .constprop clone', () => {
    const a = analyzeDisassembly(splitInput());
    expect(a.stateOffset).toBe(0x200);
    expect(a.read).toMatchObject({ location: '*qmp_query_migrate+46', value: '$edx' });
    expect(a.publishes.map((p) => p.location)).toEqual(['*qmp_query_migrate+81', '*qmp_query_migrate+126']);
    expect(a.variant).toBe('unpatched');
    expect(a.readPoints.map((r) => [r.name, r.pc, r.next_pc, r.access, r.location, r.value])).toEqual([
      ['qmp_query_migrate+40', '0x1378', '0x137e', 'load', '*qmp_query_migrate+46', '$edx'],
      ['qmp_query_migrate+75', '0x139b', '0x13a1', 'load', '*qmp_query_migrate+81', '$edx'],
      ['qmp_query_migrate+120', '0x13c8', '0x13ce', 'load', '*qmp_query_migrate+126', '$edx'],
      // A clone's name is no gdb location: placed from qmp_query_migrate.
      ['populate_time_info.constprop.0+7', '0x12d7', '0x12de', 'compare', '*qmp_query_migrate-114', '*(int *)($rsi + 0x200)'],
    ]);
    expect(a.readPoints[3].via).toEqual(['qmp_query_migrate', 'populate_time_info.constprop.0']);
    expect(a.stateAddrExpr).toBe('(int *)(*(char **)((char *)migrate_get_current + 0x2f78) + 0x200)');
  });

  it('when gdb resolves migrate_get_current to the clone, nothing is placed from that name', () => {
    const a = analyzeDisassembly(splitInput({ notAnchors: ['migrate_get_current'], debugInfo: true, debugStateOffset: 0x200 }));
    expect(a.stateAddrExpr).toBe('(int *)(*(char **)((char *)qmp_query_migrate + 0x2f28) + 0x200)');
    expect(a.read.location).toBe('*qmp_query_migrate+46');
    expect(a.transition).toMatchObject({ locations: ['migrate_set_state'], values: { addr: 'state', old: 'old_state', new: 'new_state' } });
  });

  it('when qmp_query_migrate and migrate_set_state are no anchors either, everything is placed from what is left', () => {
    const a = analyzeDisassembly(splitInput({ notAnchors: ['qmp_query_migrate', 'migrate_set_state'], debugInfo: true }));
    expect(a.read.location).toBe('*migrate_get_current+126');
    expect(a.query.locations).toEqual(['*migrate_get_current+80']);
    // At an address the registers are the arguments for certain, whatever the debug info says.
    expect(a.transition).toMatchObject({ locations: ['*migrate_get_current-144'], values: { addr: '$rdi', old: '$esi', new: '$edx' } });
  });

  it('with no name left to place from: a PROBES error naming the symbols and the clones', () => {
    const problems = ['gdb resolves migrate_get_current to 0x12a0 (migrate_get_current.part.0), the symbol table has it at 0x1300'];
    expect(() => analyzeDisassembly(splitInput({ notAnchors: ['qmp_query_migrate', 'migrate_set_state', 'migrate_get_current'], anchorProblems: problems })))
      .toThrow(/no function name gdb resolves to the code the symbol table gives it .*migrate_get_current\.part\.0.*--profile FILE/);
  });

  it('a required function that only exists as a clone names the clone and suggests --profile', () => {
    const l = splitInput();
    const e = (() => {
      try {
        analyzeDisassembly({ ...l, listings: { ...l.listings, qmp_query_migrate: null }, symbolProblems: { qmp_query_migrate: 'no symbol qmp_query_migrate; the symbol table has only qmp_query_migrate.part.0 at 0x1350' } });
      } catch (x) {
        return x as MigraceError;
      }
      return null;
    })();
    expect(e?.code).toBe('PROBES');
    expect(e?.message).toMatch(/symbol qmp_query_migrate not found \(no symbol qmp_query_migrate; the symbol table has only qmp_query_migrate\.part\.0 at 0x1350\).*--profile FILE/);
  });
});

describe('read points of the captured Debian builds (qmp_query_migrate alone: no callee listings here)', () => {
  it('5.2: the switch read, the re-reads before each publish, and populate_time_info\'s compares', () => {
    const a = analyzeDisassembly({ listings: captured('5.2'), debugInfo: false });
    expect(a.readPoints.map((r) => `${r.offset} ${r.access} ${r.instruction}`)).toEqual([
      '117 load mov 0x238(%rbx),%eax', '181 load mov 0x238(%rbx),%eax', '290 compare cmpl $0x8,0x238(%rbx)',
      '425 load mov 0x238(%rbx),%eax', '451 load mov 0x238(%rbx),%eax', '528 load mov 0x238(%rbx),%eax',
      '570 compare cmpl $0x8,0x238(%rbx)', '630 load mov 0x238(%rbx),%eax',
    ]);
    expect(a.readPoints[0].why).toMatch(/the read the switch uses/);
    expect(a.readPoints.find((r) => r.offset === 451)?.why).toMatch(/the re-read published at \+457/);
    expect(a.readPoints.find((r) => r.offset === 290)).toMatchObject({ location: '*qmp_query_migrate+297', value: '*(int *)($rbx + 0x238)', next_pc: '0x519059' });
  });

  it('7.2: the read once, then the two compares populate_time_info was inlined into', () => {
    const a = analyzeDisassembly({ listings: captured('7.2'), debugInfo: false });
    expect(a.readPoints.map((r) => [r.name, r.pc, r.access])).toEqual([
      ['qmp_query_migrate+125', '0x5fc1bd', 'load'], ['qmp_query_migrate+432', '0x5fc2f0', 'compare'], ['qmp_query_migrate+606', '0x5fc39e', 'compare'],
    ]);
    // The destination side's 0x1d0 of current_incoming is not one of them.
    expect(a.readPoints.some((r) => r.instruction.includes('0x1d0'))).toBe(false);
  });
});

describe('what discovery cannot do is a clear PROBES error', () => {
  const none = Object.fromEntries(FIRST_PASS_FUNCTIONS.map((f) => [f, null]));

  it('names the missing symbols and suggests --profile', () => {
    let err: unknown;
    try {
      analyzeDisassembly({ listings: none, debugInfo: false, binary: '/bin/true' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MigraceError);
    expect((err as MigraceError).code).toBe('PROBES');
    expect((err as MigraceError).message).toMatch(/^\/bin\/true: symbol migrate_set_state and symbol qmp_query_migrate not found/);
    expect((err as MigraceError).message).toContain('--profile FILE');
  });

  it('garbage instead of a listing counts as missing', () => {
    const l = { ...captured('7.2'), qmp_query_migrate: 'No symbol table is loaded.  Use the "file" command.\nrandom words 0x12 <+x>' };
    expect(() => analyzeDisassembly({ listings: l, debugInfo: false })).toThrow(/symbol qmp_query_migrate not found/);
  });

  it('names the pattern when qmp_query_migrate has no state load', () => {
    const l = { ...captured('7.2'), qmp_query_migrate: captured('7.2').migrate_get_current!.replace('migrate_get_current', 'qmp_query_migrate') };
    expect(() => analyzeDisassembly({ listings: l, debugInfo: false })).toThrow(
      /pattern not found: no load of MigrationState\.state \(offset 0x2e8\) into a register in qmp_query_migrate.*--profile FILE/,
    );
  });

  it('asks for the callees of qmp_query_migrate, not for library calls', () => {
    const wanted = planQueryPath({
      listings: { qmp_query_migrate: '   0x1000 <+0>:\tcall   0x2c12 <fill_source_migration_info>\n   0x1005 <+5>:\tcall   0x21d0 <calloc@plt>\n   0x100a <+10>:\tret' },
      debugInfo: false,
    });
    expect(wanted.map((w) => [w.target, w.depth, w.certain])).toEqual([[0x2c12, 1, true]]);
  });
});

describe('profiles passed by hand', () => {
  const good = buildProfile(analyzeDisassembly({ listings: captured('7.2'), debugInfo: false }), { binary: null, buildId: 'abc', qemuVersion: '7.2.22', status: versionTable('7.2.22') });

  it('round-trips through a file', () => {
    const f = join(tmp, 'good.json');
    writeFileSync(f, JSON.stringify(good));
    expect(loadProfileFile(f)).toEqual(good);
  });

  it('names the field that is wrong', () => {
    const bad = structuredClone(good) as Record<string, unknown> & { probes: Array<Record<string, unknown>> };
    bad.probes[1].locations = ['qmp_query_migrate; shell'];
    bad.variant = 'maybe';
    const f = join(tmp, 'bad.json');
    writeFileSync(f, JSON.stringify(bad));
    expect(() => loadProfileFile(f)).toThrow(/probes\.1\.locations\.0: must be func/);
    expect(() => loadProfileFile(f)).toThrow(/variant:/);
    try {
      loadProfileFile(f);
    } catch (e) {
      expect((e as MigraceError).code).toBe('BAD_INPUT');
    }
  });

  it('says when it is not JSON or not there', () => {
    expect(() => parseProfileText('{"format":', 'profile x.json')).toThrow(/profile x\.json: not valid JSON/);
    expect(() => loadProfileFile(join(tmp, 'absent.json'))).toThrow(/cannot read it \(ENOENT\)/);
  });
});

describe('QEMU -version', () => {
  it('parses the Debian builds and nothing else', () => {
    expect(parseVersionOutput('QEMU emulator version 5.2.0 (Debian 1:5.2+dfsg-11+deb11u3)\nCopyright (c) 2003-2020 Fabrice Bellard')).toEqual({
      version: '5.2.0', line: 'QEMU emulator version 5.2.0 (Debian 1:5.2+dfsg-11+deb11u3)',
    });
    expect(parseVersionOutput('QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)')?.version).toBe('7.2.22');
    expect(parseVersionOutput('minimig: unknown option')).toBeNull();
  });
});

/* ------------------------------------------------------------------ */
/* Functions by the symbol table */

describe('functions by the symbol table, never by a name lookup', () => {
  const sym = (name: string, value: number, size: number, table: ElfSymbol['table'] = 'symtab'): ElfSymbol => ({
    name, value, size, kind: 'func', binding: table === 'dynsym' ? 'global' : 'local', table,
  });
  // split.c's symbols, as `nm -S` lists them.
  const symbols = [
    sym('migrate_get_current', 0x1300, 0x13, 'dynsym'), sym('migrate_get_current', 0x1300, 0x13), sym('migrate_get_current.part.0', 0x12a0, 0x23),
    sym('populate_time_info.constprop.0', 0x12d0, 0x30), sym('qmp_query_migrate', 0x1350, 0x88, 'dynsym'), sym('qmp_query_migrate.cold', 0x1090, 0x5),
    sym('twice', 0x2000, 8), sym('twice', 0x3000, 8), sym('only.isra.0', 0x4000, 16),
  ];
  const unwind = (a: number) => (a === 0x5000 ? { start: 0x5000, end: 0x5040 } : null);
  const t = new FunctionTable(symbols, unwind);

  it('knows gcc\'s clone suffixes', () => {
    expect(['migrate_get_current.part.0', 'qmp_query_migrate.cold', 'populate_time_info.constprop.0', 'f.isra.0', 'f.constprop.0.isra.0', 'f.lto_priv.0', 'plain'].map(cloneBase))
      .toEqual(['migrate_get_current', 'qmp_query_migrate', 'populate_time_info', 'f', 'f', 'f', 'plain']);
  });

  it('a name is the one sized function of exactly that name, the same in .dynsym and .symtab', () => {
    expect(t.byName('migrate_get_current')).toMatchObject({ found: true, range: { start: 0x1300, end: 0x1313 } });
    expect(t.unambiguous('migrate_get_current')).toBe(true);
    expect(t.byName('twice')).toMatchObject({ found: false, why: 'twice names 2 functions in the symbol table (0x2000, 0x3000)' });
    expect(t.byName('only')).toMatchObject({
      found: false, why: "no symbol only; the symbol table has only only.isra.0 at 0x4000, copies gcc made whose code and arguments are not only's",
    });
    expect(t.byName('absent')).toMatchObject({ found: false, why: 'no symbol absent', clones: [] });
  });

  it('code that starts at an address: its symbol, else its unwind entry (a stripped build\'s local function)', () => {
    expect(t.startingAt(0x12d0)).toMatchObject({ name: 'populate_time_info.constprop.0', end: 0x1300 });
    expect(t.startingAt(0x5000)).toEqual({ name: 'sub_5000', start: 0x5000, end: 0x5040, symbol: null });
    expect(t.startingAt(0x5004)).toBeNull();
    expect(t.covering(0x12b0)?.name).toBe('migrate_get_current.part.0');
    expect(t.hasLocalSymbols()).toBe(true);
    expect(new FunctionTable(symbols.filter((x) => x.table === 'dynsym'), unwind).hasLocalSymbols()).toBe(false);
  });
});

/* ------------------------------------------------------------------ */
/* ELF */

interface FakeSymbol { name: string; value: number; size: number }

/**
 * A small x86-64 ELF: a build-id note, optionally .debug_info, a
 * .gnu_debuglink and a symbol table of FUNC symbols, and the program header
 * of the note when asked.
 */
function elf(opts: {
  cls?: number; machine?: number; sections?: boolean; debug?: boolean; phNote?: boolean; id?: string;
  symbols?: FakeSymbol[]; debugLink?: { file: string; crc: number };
}): Buffer {
  const id = Buffer.from(opts.id ?? 'd9541fd67c4ea37f9ca7fca0f5096f32b3b7e7e0', 'hex');
  const note = Buffer.alloc(12 + 4 + id.length);
  note.writeUInt32LE(4, 0);
  note.writeUInt32LE(id.length, 4);
  note.writeUInt32LE(3, 8);
  note.write('GNU\0', 12, 'latin1');
  id.copy(note, 16);
  const body: Array<{ name: string; type: number; data: Buffer; link?: number; entsize?: number }> = [
    { name: '.note.gnu.build-id', type: 7, data: note },
  ];
  if (opts.debug) body.push({ name: '.debug_info', type: 1, data: Buffer.alloc(8) });
  if (opts.debugLink) {
    const name = Buffer.from(`${opts.debugLink.file}\0`, 'latin1');
    const link = Buffer.alloc(((name.length + 3) & ~3) + 4);
    name.copy(link);
    link.writeUInt32LE(opts.debugLink.crc, link.length - 4);
    body.push({ name: '.gnu_debuglink', type: 1, data: link });
  }
  if (opts.symbols) {
    const names = Buffer.from(`\0${opts.symbols.map((x) => `${x.name}\0`).join('')}`, 'latin1');
    const table = Buffer.alloc(24 * (opts.symbols.length + 1));
    let at = 1;
    opts.symbols.forEach((x, i) => {
      const e = 24 * (i + 1);
      table.writeUInt32LE(at, e);
      table[e + 4] = 0x12; // GLOBAL FUNC
      table.writeUInt16LE(1, e + 6);
      table.writeBigUInt64LE(BigInt(x.value), e + 8);
      table.writeBigUInt64LE(BigInt(x.size), e + 16);
      at += x.name.length + 1;
    });
    // section indexes: 0 null, then body in order, so .strtab is the next one after .symtab.
    body.push({ name: '.symtab', type: 2, data: table, link: body.length + 2, entsize: 24 });
    body.push({ name: '.strtab', type: 3, data: names });
  }
  const shstr = Buffer.from(`\0${body.map((x) => `${x.name}\0`).join('')}.shstrtab\0`, 'latin1');
  body.push({ name: '.shstrtab', type: 3, data: shstr });
  let off = 64 + 56;
  const placed = body.map((x) => {
    const here = (off + 7) & ~7;
    off = here + x.data.length;
    return { ...x, off: here };
  });
  const shOff = (off + 7) & ~7;
  const secs = [{ name: '', type: 0, data: Buffer.alloc(0), off: 0 } as (typeof placed)[number], ...placed];
  const buf = Buffer.alloc(shOff + secs.length * 64);
  buf.writeUInt32BE(0x7f454c46, 0);
  buf[4] = opts.cls ?? 2;
  buf[5] = 1;
  buf[6] = 1;
  buf.writeUInt16LE(3, 16);
  buf.writeUInt16LE(opts.machine ?? 62, 18);
  buf.writeBigUInt64LE(64n, 32);
  buf.writeBigUInt64LE(opts.sections === false ? 0n : BigInt(shOff), 40);
  buf.writeUInt16LE(56, 54);
  buf.writeUInt16LE(opts.phNote ? 1 : 0, 56);
  buf.writeUInt16LE(64, 58);
  buf.writeUInt16LE(opts.sections === false ? 0 : secs.length, 60);
  buf.writeUInt16LE(opts.sections === false ? 0 : secs.length - 1, 62);
  if (opts.phNote) {
    buf.writeUInt32LE(4, 64);
    buf.writeBigUInt64LE(BigInt(placed[0].off), 64 + 8);
    buf.writeBigUInt64LE(BigInt(note.length), 64 + 32);
  }
  let nameAt = 1;
  secs.forEach((x, i) => {
    x.data.copy(buf, x.off);
    const at = shOff + i * 64;
    if (i > 0) {
      buf.writeUInt32LE(nameAt, at);
      nameAt += x.name.length + 1;
    }
    buf.writeUInt32LE(x.type, at + 4);
    buf.writeBigUInt64LE(BigInt(x.off), at + 24);
    buf.writeBigUInt64LE(BigInt(x.data.length), at + 32);
    buf.writeUInt32LE(x.link ?? 0, at + 40);
    buf.writeBigUInt64LE(BigInt(x.entsize ?? 0), at + 56);
  });
  return buf;
}

describe('ELF build-id and debug info', () => {
  const write = (name: string, data: Buffer | string): string => {
    const f = join(tmp, name);
    writeFileSync(f, data);
    return f;
  };

  it('reads NT_GNU_BUILD_ID from the note section and sees .debug_info', async () => {
    const info = await readElfInfo(write('a.elf', elf({ debug: true })));
    expect(info).toMatchObject({ buildId: 'd9541fd67c4ea37f9ca7fca0f5096f32b3b7e7e0', hasDebugInfo: true, machine: 'x86-64', type: 'DYN' });
    expect(info.sectionNames).toContain('.note.gnu.build-id');
    expect((await readElfInfo(write('b.elf', elf({ debug: false })))).hasDebugInfo).toBe(false);
  });

  it('falls back to PT_NOTE when there are no section headers', async () => {
    const info = await readElfInfo(write('c.elf', elf({ sections: false, phNote: true, id: 'e75c4e44f088a4a9c5bb4880bed10e7a81dc2606' })));
    expect(info.buildId).toBe('e75c4e44f088a4a9c5bb4880bed10e7a81dc2606');
    expect(info.hasDebugInfo).toBe(false);
  });

  it('rejects what is not an x86-64 ELF with a clear message', async () => {
    await expect(readElfInfo(write('script.sh', '#!/bin/sh\necho hello, this is not a binary at all, really not\n'))).rejects.toThrow(/not an ELF file \(a script/);
    await expect(readElfInfo(write('tiny', 'ELF'))).rejects.toThrow(/not an ELF file/);
    await expect(readElfInfo(write('i386.elf', elf({ cls: 1 })))).rejects.toThrow(/32-bit ELF.*x86-64/);
    await expect(readElfInfo(write('arm.elf', elf({ machine: 183 })))).rejects.toThrow(/machine 183 \(AArch64\), not x86-64/);
    await expect(readElfInfo(join(tmp, 'missing'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(readElfInfo(tmp)).rejects.toMatchObject({ code: 'BAD_INPUT' });
  });

  it('reads .gnu_debuglink, and finds the debug file beside the binary only when its CRC matches', async () => {
    expect(parseDebugLink(Buffer.from('qemu.debug\0\0\x78\x56\x34\x12', 'latin1'))).toEqual({ file: 'qemu.debug', crc: 0x12345678 });
    expect(parseDebugLink(Buffer.from('../etc/passwd\0\0\0\0\0\0', 'latin1'))).toBeNull();
    const dbg = write('linked.debug', 'the debug file');
    const { crc32 } = await import('node:zlib');
    const good = await readElfInfo(write('linked.elf', elf({ debugLink: { file: 'linked.debug', crc: crc32(readFileSync(dbg)) } })));
    expect(good).toMatchObject({ debugLink: 'linked.debug', separateDebugFile: dbg, hasDebugInfo: false });
    const bad = await readElfInfo(write('mislinked.elf', elf({ debugLink: { file: 'linked.debug', crc: 1 } })));
    expect(bad).toMatchObject({ debugLink: 'linked.debug', separateDebugFile: null });
  });

  it('finds the debug file by build-id under MIGRACE_DEBUG_FILE_DIRECTORY, before the debuglink; refuses a bad value by name', async () => {
    const id = 'd9541fd67c4ea37f9ca7fca0f5096f32b3b7e7e0';
    const dirs = [join(tmp, 'dbg-a'), join(tmp, 'dbg-b')];
    mkdirSync(join(dirs[1], '.build-id', id.slice(0, 2)), { recursive: true });
    mkdirSync(dirs[0], { recursive: true });
    const byId = join(dirs[1], '.build-id', id.slice(0, 2), `${id.slice(2)}.debug`);
    writeFileSync(byId, 'the debug file');
    const bin = write('by-id.elf', elf({ debug: false }));
    const before = process.env[DEBUG_DIR_VARIABLE];
    try {
      delete process.env[DEBUG_DIR_VARIABLE];
      expect(debugFileDirectories()).toEqual(['/usr/lib/debug']);
      expect(gdbDebugDirOptions()).toEqual([]);
      expect((await readElfInfo(bin)).separateDebugFile).toBeNull();
      process.env[DEBUG_DIR_VARIABLE] = dirs.join(':');
      expect(await readElfInfo(bin)).toMatchObject({ separateDebugFile: byId, debugLink: null, hasDebugInfo: false });
      expect(gdbDebugDirOptions()).toEqual(['-iex', `set debug-file-directory ${dirs.join(':')}`]);
      process.env[DEBUG_DIR_VARIABLE] = `${dirs[0]}:debug`;
      await expect(readElfInfo(bin)).rejects.toMatchObject({
        code: 'USAGE', message: `MIGRACE_DEBUG_FILE_DIRECTORY=${dirs[0]}:debug: debug is not an absolute path (a colon-separated list of directories, like gdb's debug-file-directory)`,
      });
      process.env[DEBUG_DIR_VARIABLE] = join(tmp, 'nowhere');
      expect(() => gdbDebugDirOptions()).toThrow(`MIGRACE_DEBUG_FILE_DIRECTORY=${join(tmp, 'nowhere')}: ${join(tmp, 'nowhere')} is not a directory`);
      process.env[DEBUG_DIR_VARIABLE] = `${dirs[0]}:`;
      expect(() => debugFileDirectories()).toThrow(/: an empty entry is not an absolute path/);
    } finally {
      if (before === undefined) delete process.env[DEBUG_DIR_VARIABLE];
      else process.env[DEBUG_DIR_VARIABLE] = before;
    }
  });

  it('ignores notes that are not the GNU build-id', () => {
    const n = Buffer.alloc(16 + 4);
    n.writeUInt32LE(4, 0);
    n.writeUInt32LE(4, 4);
    n.writeUInt32LE(1, 8);
    n.write('GNU\0', 12, 'latin1');
    expect(buildIdFromNotes(n)).toBeNull();
  });
});

/* ------------------------------------------------------------------ */
/* The children discovery runs: gdb -batch and QEMU -version */

describe('discovery runs gdb and -version as registered children', () => {
  const dir = join(tmp, 'children');
  mkdirSync(dir, { recursive: true });
  /** The functions of the captured 7.2 listings, at their addresses: what discovery looks up before gdb runs. */
  const captured72 = FIRST_PASS_FUNCTIONS.flatMap((name) => {
    const text = captured('7.2')[name];
    const lines = text ? parseDisassembly(text).lines : [];
    return lines.length > 0 ? [{ name, value: lines[0].address, size: lines[lines.length - 1].address - lines[0].address + 1 }] : [];
  });
  /** An x86-64 ELF with a build-id and those symbols that is not executable (mode 0644). */
  const fakeQemu = (): string => {
    const p = join(dir, 'qemu-system-x86_64');
    writeFileSync(p, elf({ id: '00112233445566778899aabbccddeeff00112233', symbols: captured72 }));
    return p;
  };
  const script = (name: string, text: string): string => {
    const p = join(dir, name);
    writeFileSync(p, text);
    chmodSync(p, 0o755);
    return p;
  };
  const opts = { cacheDir: join(dir, 'cache'), refresh: true };

  it('a directory as --gdb: GDB_ERROR naming it and the errno, not "printed nothing"', async () => {
    const e = await discoverProfile(fakeQemu(), { ...opts, gdb: dir }).then(() => null, (x: unknown) => x);
    expect(e).toBeInstanceOf(MigraceError);
    expect(e).toMatchObject({ code: 'GDB_ERROR' });
    expect((e as MigraceError).message).toMatch(/^cannot run gdb \(.*children\): EACCES \(spawn .* EACCES\)$/);
  });

  it('a missing gdb is still GDB_MISSING', async () => {
    await expect(discoverProfile(fakeQemu(), { ...opts, gdb: join(dir, 'no-such-gdb') })).rejects.toMatchObject({ code: 'GDB_MISSING' });
  });

  it('a gdb that hangs is registered with the reaper while it runs, and killed at the timeout', async () => {
    const gdb = script('hanging-gdb', '#!/bin/sh\nexec sleep 30\n');
    const running = discoverProfile(fakeQemu(), { ...opts, gdb, timeoutMs: 500 }).then(() => null, (x: unknown) => x);
    let seen: { pid: number; label: string } | undefined;
    for (let i = 0; i < 100 && !seen; i++) {
      seen = survivors().find((s) => s.label === 'gdb (probe discovery)');
      if (!seen) await sleep(10);
    }
    expect(seen).toBeDefined();
    const e = await running;
    expect(e).toMatchObject({ code: 'GDB_TIMEOUT' });
    expect(survivors().filter((s) => s.label === 'gdb (probe discovery)')).toEqual([]);
    expect(await waitGone(seen!.pid, 3000)).toBe(true);
    if (isAlive(seen!.pid)) process.kill(seen!.pid, 'SIGKILL');
  });

  it('a QEMU that cannot run and has no status table: refused, naming both, and nothing is cached', async () => {
    // A gdb that answers each range with the captured 7.2 listing that starts there.
    const cases = captured72.map((x) => `    "echo @@migrace code:0x${x.value.toString(16)}\\n") echo "@@migrace code:0x${x.value.toString(16)}"; cat "${FIX}/qemu-7.2.${x.name}.txt";;`);
    const gdb = script('listing-gdb', `#!/bin/sh
for a in "$@"; do
  case "$a" in
${cases.join('\n')}
    "echo @@migrace "*) m=\${a#echo @@migrace }; echo "@@migrace \${m%\\\\n}";;
  esac
done
`);
    const qemu = fakeQemu();
    const e = await discoverProfile(qemu, { ...opts, gdb }).then(() => null, (x: unknown) => x);
    expect(e).toMatchObject({ code: 'PROBES' });
    expect((e as MigraceError).message).toMatch(/has no MigrationStatus_lookup symbol .*, and no QEMU version, so nothing names its MigrationStatus values/);
    expect((e as MigraceError).message).toMatch(/-version failed: cannot run it: EACCES/);
    expect((e as MigraceError).message).toContain('--profile FILE');
    expect(existsSync(join(opts.cacheDir, '00112233445566778899aabbccddeeff00112233.json'))).toBe(false);
    expect(survivors()).toEqual([]);
  });
});
