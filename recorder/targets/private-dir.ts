import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ledgerAddDir, ledgerRemoveDir } from '../ledger.js';

/**
 * A private folder (mode 0700) for sockets and logs: a QMP socket in a
 * world-writable place would let any local user drive the target.
 */
export function makePrivateDir(prefix: string): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), `${prefix}-`));
  chmodSync(path, 0o700);
  // Listed in the ledger: a migrace killed before remove() runs leaves it to the next one.
  ledgerAddDir(path);
  return {
    path,
    remove: () => {
      rmSync(path, { recursive: true, force: true });
      ledgerRemoveDir(path);
    },
  };
}

/**
 * gdb writes its own warning into the inferior's terminal when that is a
 * file: it is not the program's word.
 */
const GDB_TTY_WARNING = /^&"warning: GDB: Failed to set controlling terminal/;

/** The last lines a program wrote to its log, on one line, for an error message. */
export function logTail(path: string, lines = 2): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return '';
  }
  return text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !GDB_TTY_WARNING.test(l)).slice(-lines).join(' | ').slice(0, 400);
}

