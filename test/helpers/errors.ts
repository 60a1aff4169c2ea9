import { expect } from 'vitest';
import { MigraceError } from '../../trace/errors.js';

/** The MigraceError fn throws; fails the test on any other outcome. */
export function expectCatch(fn: () => unknown): MigraceError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(MigraceError);
    return e as MigraceError;
  }
  throw new Error('expected an error');
}

/** The MigraceError p rejects with; fails the test on any other outcome. */
export async function expectRejection(p: Promise<unknown>): Promise<MigraceError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(MigraceError);
    return e as MigraceError;
  }
  throw new Error('expected a MigraceError, but it succeeded');
}
