import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TraceStore } from '../../trace/store.js';

/** A fresh trace database in a private temp folder. */
export function tempStore(prefix = 'migrace-test'): { store: TraceStore; dir: string; path: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const path = join(dir, 'trace.db');
  const store = TraceStore.open(path);
  return { store, dir, path, cleanup: () => { store.close(); rmSync(dir, { recursive: true, force: true }); } };
}
