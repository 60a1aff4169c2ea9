import { expect } from 'vitest';
import type { TraceEvent } from '../../trace/schema.js';
import { BUILDS, type BuildSpec } from './qemu-binaries.js';

/**
 * What every real recording of a QEMU migration must show, whatever placed
 * the probes: the build's transitions, none -> setup by the main thread and
 * every later step by the migration thread (its name differs between
 * builds: live_migration, mig/src/main), at one address; each query's read
 * and publish on the main thread and its reply; the final reply completed.
 */
export function checkRecording(events: TraceEvent[], threads: Array<{ tid: number; name: string | null; lwp: number | null }>,
  expected: BuildSpec['transitions'] = BUILDS[0].transitions): void {
  const main = threads.find((t) => t.name === 'qemu-system-x86');
  expect(main?.lwp, JSON.stringify(threads)).toBeGreaterThan(0);
  const transitions = events.filter((e) => e.kind === 'transition');
  const mig = threads.find((t) => t.tid === transitions[1]?.thread);
  expect(mig?.lwp, JSON.stringify(threads)).toBeGreaterThan(0);
  expect(mig?.tid).not.toBe(main?.tid);
  expect(transitions.map((e) => [e.thread, e.data.old?.name, e.data.new.name]))
    .toEqual(expected.map(([from, to], i) => [i === 0 ? main!.tid : mig!.tid, from, to]));
  expect(new Set(transitions.map((e) => e.data.addr)).size).toBe(1);
  expect(transitions[0].data.addr).toMatch(/^0x[0-9a-f]+$/);
  const begins = events.filter((e) => e.kind === 'query-begin');
  expect(begins.length).toBeGreaterThanOrEqual(2);
  for (const b of begins) {
    if (b.kind !== 'query-begin') continue;
    const reply = events.find((e) => e.kind === 'reply' && e.data.query === b.data.query);
    expect(reply, `reply to ${b.data.query}`).toBeDefined();
    const inWindow = events.filter((e) => e.seq > b.seq && e.seq < reply!.seq && e.thread === main!.tid);
    expect(inWindow.filter((e) => e.kind === 'read')).toHaveLength(1);
    // Before any migration (an attached QEMU polled before its user migrates) the reply is {}: nothing is published.
    const published = reply?.kind === 'reply' && reply.data.status !== null ? 1 : 0;
    expect(inWindow.filter((e) => e.kind === 'publish')).toHaveLength(published);
    const pub = inWindow.find((e) => e.kind === 'publish');
    if (reply?.kind === 'reply' && pub?.kind === 'publish') expect(reply.data.status).toBe(pub.data.value.name);
  }
  const last = events.filter((e) => e.kind === 'reply').at(-1);
  expect(last?.kind === 'reply' && last.data.status).toBe('completed');
}
