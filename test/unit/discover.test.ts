import { chmodSync, mkdirSync, mkdtempSync, readFileSync, existsSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MigraceError } from '../../trace/errors.js';
import { analyzeDisassembly, buildProfile, calleesToInspect, findGlobal, FIRST_PASS_FUNCTIONS } from '../../recorder/probes/analysis.js';
import { discoverProfile, loadProfileFile, parseProfileText, parseVersionOutput } from '../../recorder/probes/discover.js';
import { parseDisasmLine, parseDisassembly, parseOperand } from '../../recorder/probes/disasm.js';
import { buildIdFromNotes, readElfInfo } from '../../recorder/probes/elf.js';
import { ProfileSchema } from '../../recorder/probes/profile.js';
import { isAlive, survivors, waitGone } from '../../recorder/reaper.js';

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
 * QEMU 10.0 as facts.md describes it (Debian trixie 1:10.0.13+ds-0+deb13u1):
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
    const profile = buildProfile(a, { binary: '/usr/bin/qemu-system-x86_64', buildId: 'd9541fd67c4ea37f9ca7fca0f5096f32b3b7e7e0', qemuVersion: '7.2.22' });
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
    const profile = buildProfile(a, { binary: null, buildId: 'e75c4e44f088a4a9c5bb4880bed10e7a81dc2606', qemuVersion: '5.2.0' });
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
    const profile = buildProfile(a, { binary: null, buildId: null, qemuVersion: '10.0.3' });
    expect(profile.status_table).toBe('9.1');
  });

  it('without any helper: the read is still found, the offset is left to the first migrate_set_state hit', () => {
    const l = { ...qemu10(), migration_has_failed: null, migration_is_running: null };
    const a = analyzeDisassembly({ listings: l, debugInfo: false });
    expect(a.stateOffset).toBeNull();
    expect(a.stateAddrExpr).toBeNull();
    expect(a.read.location).toBe('*qmp_query_migrate+222');
    expect(a.notes.join('\n')).toContain('$rdi - (long)migrate_get_current()');
    const profile = buildProfile(a, { binary: null, buildId: null, qemuVersion: '10.0.3' });
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

  it('asks for the callees when the source part is not inlined', () => {
    expect(calleesToInspect({ qmp_query_migrate: '   0x1 <+0>:\tcall   0x2c12 <fill_source_migration_info>\n   0x6 <+5>:\tcall   0x21d0 <calloc@plt>' })).toEqual(['fill_source_migration_info']);
  });
});

describe('profiles passed by hand', () => {
  const good = buildProfile(analyzeDisassembly({ listings: captured('7.2'), debugInfo: false }), { binary: null, buildId: 'abc', qemuVersion: '7.2.22' });

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
/* ELF */

function elf(opts: { cls?: number; machine?: number; sections?: boolean; debug?: boolean; phNote?: boolean; id?: string }): Buffer {
  const id = Buffer.from(opts.id ?? 'd9541fd67c4ea37f9ca7fca0f5096f32b3b7e7e0', 'hex');
  const note = Buffer.alloc(12 + 4 + id.length);
  note.writeUInt32LE(4, 0);
  note.writeUInt32LE(id.length, 4);
  note.writeUInt32LE(3, 8);
  note.write('GNU\0', 12, 'latin1');
  id.copy(note, 16);
  const names = Buffer.from('\0.note.gnu.build-id\0.debug_info\0.shstrtab\0', 'latin1');
  const noteOff = 64 + 56;
  const namesOff = noteOff + note.length;
  const debugOff = namesOff + names.length;
  const shOff = (debugOff + 8 + 7) & ~7;
  const secs = [
    { name: 0, type: 0, off: 0, size: 0 },
    { name: 1, type: 7, off: noteOff, size: note.length },
    ...(opts.debug ? [{ name: 20, type: 1, off: debugOff, size: 8 }] : []),
    { name: 32, type: 3, off: namesOff, size: names.length },
  ];
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
    buf.writeBigUInt64LE(BigInt(noteOff), 64 + 8);
    buf.writeBigUInt64LE(BigInt(note.length), 64 + 32);
  }
  note.copy(buf, noteOff);
  names.copy(buf, namesOff);
  secs.forEach((s, i) => {
    const at = shOff + i * 64;
    buf.writeUInt32LE(s.name, at);
    buf.writeUInt32LE(s.type, at + 4);
    buf.writeBigUInt64LE(BigInt(s.off), at + 24);
    buf.writeBigUInt64LE(BigInt(s.size), at + 32);
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
  /** An x86-64 ELF with a build-id that is not executable (mode 0644). */
  const fakeQemu = (): string => {
    const p = join(dir, 'qemu-system-x86_64');
    writeFileSync(p, elf({ id: '00112233445566778899aabbccddeeff00112233' }));
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
      if (!seen) await new Promise((r) => setTimeout(r, 10));
    }
    expect(seen).toBeDefined();
    const e = await running;
    expect(e).toMatchObject({ code: 'GDB_TIMEOUT' });
    expect(survivors().filter((s) => s.label === 'gdb (probe discovery)')).toEqual([]);
    expect(await waitGone(seen!.pid, 3000)).toBe(true);
    if (isAlive(seen!.pid)) process.kill(seen!.pid, 'SIGKILL');
  });

  it('a QEMU that cannot run: the -version failure names the errno, and the profile is not cached', async () => {
    // A gdb that answers with the captured 7.2 listings.
    const gdb = script('listing-gdb', `#!/bin/sh
for a in "$@"; do
  case "$a" in
    "echo @@migrace "*)
      m=\${a#echo @@migrace }; m=\${m%\\\\n}; echo "@@migrace $m"
      f="${FIX}/qemu-7.2.\${m#fn:}.txt"; if [ -f "$f" ]; then cat "$f"; fi;;
  esac
done
`);
    const qemu = fakeQemu();
    const found = await discoverProfile(qemu, { ...opts, gdb });
    expect(found.profile.variant).toBe('patched');
    expect(found.profile.qemu_version).toBeNull();
    expect(found.report.join('\n')).toMatch(/-version failed: cannot run it: EACCES \(spawn .* EACCES\)/);
    expect(found.report.join('\n')).toMatch(/not cached: -version failed/);
    expect(survivors()).toEqual([]);
  });
});
