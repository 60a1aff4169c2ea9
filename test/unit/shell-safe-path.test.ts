import { describe, expect, it } from 'vitest';
import { assertShellSafePath } from '../../recorder/gdb/session.js';
import { expectCatch } from '../helpers/errors.js';

describe('assertShellSafePath: program paths gdb hands to /bin/sh', () => {
  it('accepts the paths migrace runs', () => {
    for (const p of [
      '/usr/bin/qemu-system-x86_64',
      '/work/main/samples/.cache/qemu-5.2/root/usr/bin/qemu-system-x86_64',
      'samples/minimig/minimig-patched',
      './minimig',
      '/tmp/migrace-gdb-AbC123/threads-O2',
      '/opt/q+e,m:u@l%a_t-or.1',
    ]) {
      expect(() => assertShellSafePath(p), p).not.toThrow();
    }
  });

  it('refuses every character outside [A-Za-z0-9_./+,:@%-], naming the path and the character', () => {
    // Unquoted by gdb (the reason for the check) and quoted by it (refused all the same).
    for (const c of ['|', '`', '*', '?', '~', '#', '[', ']', '{', '}', '=', '^', ' ', "'", '"', '$', ';', '&', '(', ')', '<', '>', '!', '\\', '\t', 'é']) {
      const path = `/tmp/q${c}emu`;
      const e = expectCatch(() => assertShellSafePath(path));
      expect(e.code).toBe('BAD_INPUT');
      expect(e.message).toContain(JSON.stringify(path));
      expect(e.message).toContain(`contains ${JSON.stringify(c)}`);
    }
  });

  it('refuses an empty path and one starting with "-"', () => {
    expect(expectCatch(() => assertShellSafePath('')).code).toBe('BAD_INPUT');
    const e = expectCatch(() => assertShellSafePath('-qemu'));
    expect(e.code).toBe('BAD_INPUT');
    expect(e.message).toMatch(/"-qemu" starts with "-".*\.\/-qemu/);
  });
});
