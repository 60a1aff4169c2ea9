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
