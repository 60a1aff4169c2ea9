import { Command } from 'commander';
import { vi } from 'vitest';
import type { Register } from '../../cli/common.js';

/** Run one command in-process as `migrace ...` would: its stdout, stderr and exit code. */
export async function runCommand(register: Register, args: string[]): Promise<{ out: string; err: string; code: number | string | undefined }> {
  const program = new Command().exitOverride();
  register(program);
  let out = '';
  let err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => {
    out += String(c);
    return true;
  });
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => {
    err += String(c);
    return true;
  });
  const before = process.exitCode;
  let code: number | string | undefined;
  try {
    await program.parseAsync(['node', 'migrace', ...args]);
  } finally {
    o.mockRestore();
    e.mockRestore();
    code = process.exitCode;
    process.exitCode = before;
  }
  return { out, err, code };
}
