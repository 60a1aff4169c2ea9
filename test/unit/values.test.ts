import { describe, expect, it } from 'vitest';
import { parseAddress, parseInteger, parseStateValue } from '../../recorder/values.js';

// Shapes printed by gdb 13 for -data-evaluate-expression on minimig and QEMU.
describe('gdb value parsing', () => {
  it('reads pointers', () => {
    expect(parseAddress('(int *) 0x55555555c2a8 <current_migration+8>')).toBe('0x55555555c2a8');
    expect(parseAddress('0x7FFD0010')).toBe('0x7ffd0010');
    expect(parseAddress('<optimized out>')).toBeNull();
    // gdb prints $rdi (type long) in decimal: the shape seen at migrate_set_state's entry on stripped QEMU.
    expect(parseAddress('93825009839848')).toBe('0x55555661eee8');
    expect(parseAddress('-1')).toBe('0xffffffffffffffff');
  });
  it('reads integers and states', () => {
    expect(parseInteger('4')).toBe(4);
    expect(parseInteger('0x1')).toBe(1);
    expect(parseInteger('active')).toBeNull();
    expect(parseStateValue('1', '4.2')).toEqual({ value: 1, name: 'setup' });
    expect(parseStateValue('MIGRATION_STATUS_COMPLETED', '9.1')).toEqual({ value: 9, name: 'completed' });
    expect(parseStateValue('99', '4.2')).toEqual({ value: 99, name: null });
    expect(parseStateValue('<optimized out>', '4.2')).toEqual({ value: null, name: null });
  });
});
