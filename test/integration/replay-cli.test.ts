/**
 * `migrace replay` and `migrace record` as a user runs them, in-process on
 * minimig: what an aborted replay prints (text and --json, never "null"),
 * and the meta.invocation both store for the reproduce line.
 */
import { getEventListeners } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { replay } from '../../analyzer/replay.js';
import { builtinSchedule } from '../../analyzer/schedule.js';
import { register as registerRecord } from '../../cli/record.js';
import { register as registerReplay } from '../../cli/replay.js';
import { minimigProfile } from '../../recorder/probes/minimig.js';
import { record } from '../../recorder/record.js';
import { minimigDir, prepareMinimig } from '../../recorder/targets/minimig.js';
import type { Session } from '../../trace/schema.js';
import { TraceStore } from '../../trace/store.js';
import { runCommand } from '../helpers/cli.js';
import { tempStore } from '../helpers/db.js';
import { expectNoSurvivors } from '../helpers/processes.js';

afterEach(() => expectNoSurvivors());

const NEVER = {
  format: 'migrace-schedule', version: 1, name: 'never',
  roles: { writer: { probe: 'transition', when: { old: 'setup', new: 'failed' } } },
  steps: [{ do: 'arm', role: 'writer' }, { do: 'migrate' }, { do: 'wait-held', role: 'writer', timeout_ms: 600_000 }],
};
const NEVER_ERROR = 'replay never: role writer (migrate_set_state(setup -> failed)) can no longer arrive: the state already left setup (none -> setup -> active)';

/** The newest session of a database the command wrote. */
function latestOf(path: string): Session {
  const store = TraceStore.open(path, { readonly: true });
  try {
    return store.latestSession()!;
  } finally {
    store.close();
  }
}

describe('migrace replay: an aborted run', () => {
  it('--json: outcome "aborted" with the reason; nothing printed as null', async () => {
    const db = tempStore();
    try {
      const file = join(db.dir, 'never.json');
      writeFileSync(file, JSON.stringify(NEVER));
      const r = await runCommand(registerReplay, ['replay', '--schedule', file, '--db', db.path, '--json']);
      expect(r.code).toBe(1);
      expect(r.out).not.toMatch(/null/);
      const j = JSON.parse(r.out) as { runs: Record<string, unknown>[]; identical: boolean; outcomes: Record<string, number> };
      expect(j.runs).toHaveLength(1);
      expect(j.runs[0]).toMatchObject({ state: 'aborted', outcome: 'aborted', schedule: 'never', error: NEVER_ERROR, reason: NEVER_ERROR });
      expect(j.runs[0]).not.toHaveProperty('reply');
      expect(Object.keys(j.outcomes)).toHaveLength(1);
    } finally {
      db.cleanup();
    }
  });

  it('text with --repeat: each run and the summary say aborted and why, never null', async () => {
    const db = tempStore();
    try {
      const file = join(db.dir, 'never.json');
      writeFileSync(file, JSON.stringify(NEVER));
      const r = await runCommand(registerReplay, ['replay', '--schedule', file, '--db', db.path, '--repeat', '2']);
      expect(r.code).toBe(1);
      expect(r.out).not.toMatch(/null/);
      const lines = r.out.trim().split('\n');
      expect(lines).toEqual([
        expect.stringMatching(/^run 1: session \d+: replay aborted: /),
        expect.stringMatching(/^run 2: session \d+: replay aborted: /),
        `2/2 runs identical: aborted (${NEVER_ERROR})`,
      ]);
    } finally {
      db.cleanup();
    }
  });
});

describe('meta.invocation: what record and replay were started with', () => {
  it('replay stores the target options next to the schedule', async () => {
    const db = tempStore();
    try {
      const r = await runCommand(registerReplay, ['replay', '--scenario', 'lp1994002', '--patched', '--setup-ms', '80', '--db', db.path, '--json']);
      expect(r.code, r.err).toBeUndefined();
      expect(latestOf(db.path).meta).toMatchObject({
        scenario: 'lp1994002',
        invocation: {
          command: 'replay', target: 'minimig', patched: true, binary: null, qemu: null, profile: null, memory: '128',
          extra_args: [], max_bandwidth: null, setup_ms: 80, transfer_ms: null, bql_completion: false,
        },
      });
    } finally {
      db.cleanup();
    }
  });

  it('record stores it too', async () => {
    const db = tempStore();
    try {
      const r = await runCommand(registerRecord, ['record', '--transfer-ms', '50', '--bql-completion', '--db', db.path, '--json']);
      expect(r.code, r.err).toBeUndefined();
      expect(latestOf(db.path).meta.invocation).toEqual({
        command: 'record', target: 'minimig', patched: false, binary: null, qemu: null, profile: null, memory: '128',
        extra_args: [], max_bandwidth: null, setup_ms: null, transfer_ms: 50, bql_completion: true,
      });
    } finally {
      db.cleanup();
    }
  });
});

describe('runs under one signal', () => {
  it('replay and record leave no listener on the caller\'s signal (replay --repeat: Node warned past 10)', async () => {
    const db = tempStore();
    try {
      const controller = new AbortController();
      for (let i = 0; i < 2; i++) {
        const target = await prepareMinimig({});
        const r = await replay({ store: db.store, target, profile: minimigProfile(minimigDir(), target.binary, false), schedule: builtinSchedule('lp1994002'), label: `r${i}`, signal: controller.signal });
        expect(r.state, r.error ?? '').toBe('complete');
      }
      const target = await prepareMinimig({ transferMs: 10 });
      const r = await record({ store: db.store, target, profile: minimigProfile(minimigDir(), target.binary, false), label: 'rec', pollMs: 5, signal: controller.signal });
      expect(r.state, r.error ?? '').toBe('complete');
      expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    } finally {
      db.cleanup();
    }
  }, 60_000);
});
