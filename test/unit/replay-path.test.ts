import { describe, expect, it } from 'vitest';
import { StatePath } from '../../analyzer/replay.js';
import type { EventOf } from '../../trace/schema.js';
import { MIG, Trace } from '../helpers/events.js';

/** A path fed the transitions of a trace, in order. */
function pathOf(steps: [string | null, string][], table: Trace['table'] = '4.2'): StatePath {
  const tr = new Trace([MIG], { table });
  for (const [o, n] of steps) tr.transition(MIG, o, n);
  const p = new StatePath(table);
  for (const e of tr.events) p.landed(e as EventOf<'transition'>);
  return p;
}

describe('StatePath: can a waiting transition role still come?', () => {
  it('a role whose old state the migration has left is ruled out, naming the path', () => {
    const p = pathOf([['none', 'setup'], ['setup', 'active']]);
    expect(p.ruledOut({ old: 'setup', new: 'failed' })).toBe('the state already left setup (none -> setup -> active)');
    expect(p.ruledOut({ old: 'active', new: 'completed' })).toBeNull();
    expect(p.ruledOut({ new: 'completed' })).toBeNull();
    // Not reached yet: it may still come.
    expect(p.ruledOut({ old: 'device', new: 'completed' })).toBeNull();
  });

  it('an ended migration rules out every transition role', () => {
    const p = pathOf([['none', 'setup'], ['setup', 'active'], ['active', 'device'], ['device', 'completed']], '9.1');
    expect(p.ruledOut({ new: 'completed' })).toBe('the migration already ended (none -> setup -> active -> device -> completed)');
    expect(pathOf([['none', 'setup'], ['setup', 'cancelling'], ['cancelling', 'cancelled']]).ruledOut({})).toMatch(/^the migration already ended/);
  });

  it('a compare-and-swap from a state the migration is not in moves nothing', () => {
    // migrate_set_state(active -> completed) after a cancel: the swap fails, the state stays cancelling.
    const p = pathOf([['none', 'setup'], ['setup', 'active'], ['active', 'cancelling'], ['active', 'completed']]);
    expect(p.text()).toBe('none -> setup -> active -> cancelling');
    expect(p.ruledOut({ new: 'cancelled' })).toBeNull();
  });

  it('postcopy states come back (the recovery loop): leaving one does not rule it out', () => {
    const p = pathOf([['none', 'setup'], ['setup', 'active'], ['active', 'postcopy-active'], ['postcopy-active', 'postcopy-paused'], ['postcopy-paused', 'postcopy-recover']]);
    expect(p.ruledOut({ old: 'postcopy-active', new: 'postcopy-paused' })).toBeNull();
    expect(p.ruledOut({ old: 'active', new: 'completed' })).toMatch(/^the state already left active/);
  });
});
