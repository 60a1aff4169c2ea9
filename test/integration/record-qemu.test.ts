import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { expectRejection } from '../helpers/errors.js';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { discoverProfile } from '../../recorder/probes/discover.js';
import { minimigProfile } from '../../recorder/probes/minimig.js';
import { QmpClient } from '../../recorder/qmp.js';
import { record } from '../../recorder/record.js';
import { isAlive, track, waitGone } from '../../recorder/reaper.js';
import { makePrivateDir } from '../../recorder/targets/private-dir.js';
import { minimigDir } from '../../recorder/targets/minimig.js';
import { prepareQemuPair, startDestination } from '../../recorder/targets/qemu.js';
import { TraceStore } from '../../trace/store.js';
import type { TraceEvent } from '../../trace/schema.js';
import { tempStore } from '../helpers/db.js';
import { expectNoSurvivors, withoutSweeps } from '../helpers/processes.js';
import { checkRecording } from '../helpers/recording.js';
import { BUILDS, bookwormQemu, qemuBuild } from '../helpers/qemu-binaries.js';

const CLI = join(process.cwd(), 'bin', 'migrace.js');
afterEach(() => expectNoSurvivors());

// Debian's own (stripped) builds; the -O2 -g builds are #15's.
const builds = BUILDS.filter((b) => b.debug === 'stripped');

const rejection = expectRejection;

describe('a --qemu that cannot run', () => {
  // Any valid profile will do: these fail before a profile matters.
  const profile = minimigProfile(minimigDir(), join(minimigDir(), 'minimig'), false);

  it('a directory as --qemu: one clear line from the CLI, no stack, nothing left running', () => {
    const dir = makePrivateDir('migrace-qemu-dir-test');
    try {
      const notQemu = join(dir.path, 'qemu-system-x86_64');
      mkdirSync(notQemu);
      const profileFile = join(dir.path, 'profile.json');
      writeFileSync(profileFile, JSON.stringify(profile));
      const r = spawnSync('node', [CLI, 'record', '--target', 'qemu', '--qemu', notQemu, '--profile', profileFile, '--db', join(dir.path, 'trace.db')],
        { encoding: 'utf8', timeout: 30_000 });
      // One line (whichever check sees it first: the profile's build-id or the QEMU check), no stack.
      expect(withoutSweeps(r.stderr)).toMatch(/^migrace: [^\n]*not a regular file[^\n]*\n$/);
      expect(r.stderr).toContain(notQemu);
      expect(r.stderr).not.toMatch(/Unhandled|\n\s+at /);
      expect(r.status).toBe(1);
    } finally {
      dir.remove();
    }
  });

  it('prepareQemuPair refuses a directory before starting anything', async () => {
    const dir = makePrivateDir('migrace-qemu-dir-test');
    try {
      const e = await rejection(prepareQemuPair({ qemu: dir.path, profile }));
      expect(e.code).toBe('TARGET_MISSING');
      expect(e.message).toBe(`QEMU binary is not a regular file: ${dir.path}`);
    } finally {
      dir.remove();
    }
  });

  it('startDestination turns a failed spawn into a MigraceError instead of an unhandled error event', async () => {
    const dir = makePrivateDir('migrace-qemu-spawn-test');
    try {
      // A directory: spawn fails with EACCES.
      const e1 = await rejection(startDestination({ qemu: dir.path, profile }, dir.path));
      expect(e1.code).toBe('TARGET_MISSING');
      expect(e1.message).toMatch(/^cannot start the destination QEMU .*: not executable \(.*(EACCES|Permission denied)/);
      // An executable whose interpreter is missing: spawn fails with ENOENT.
      const script = join(dir.path, 'qemu-no-interpreter');
      writeFileSync(script, '#!/nonexistent/interpreter\n');
      chmodSync(script, 0o755);
      const e2 = await rejection(startDestination({ qemu: script, profile }, dir.path));
      expect(e2.code).toBe('TARGET_MISSING');
      expect(e2.message).toMatch(/ENOENT|No such file/);
      // A process that starts but exits at once: TARGET_EXITED from the connect, and it is reaped.
      const quits = join(dir.path, 'qemu-quits');
      writeFileSync(quits, '#!/bin/sh\nexit 3\n');
      chmodSync(quits, 0o755);
      const e3 = await rejection(startDestination({ qemu: quits, profile }, dir.path));
      expect(e3.code).toBe('TARGET_EXITED');
      expect(e3.message).toMatch(/^destination QEMU: the target exited before its QMP socket/);
    } finally {
      dir.remove();
    }
  });
});

describe.each(builds)('record real QEMU $name: $label', (spec) => {
  const bin = qemuBuild(spec.name);
  const skip = 'skip' in bin ? bin.skip : null;
  if (skip) console.warn(`skipping QEMU ${spec.name}: ${skip}`);

  it.skipIf(skip !== null)('discovers the probes and records a real migration over loopback', async () => {
    if ('skip' in bin) return;
    const found = await discoverProfile(bin.path, { env: bin.env });
    expect(found.profile.variant).toBe(spec.variant);
    if (spec.known && found.profile.build_id === spec.known.buildId) {
      const read = found.profile.probes.find((p) => p.role === 'read');
      expect(read?.locations).toEqual([spec.known.read]);
      const pubs = found.profile.probes.filter((p) => p.role === 'publish').flatMap((p) => p.locations);
      expect(pubs.map((l) => l.replace('*qmp_query_migrate', ''))).toEqual(spec.known.publishes);
    } else {
      console.log(`[record] QEMU ${spec.name} has build-id ${found.profile.build_id}, not ${spec.known?.buildId}: exact offsets not checked`);
    }

    const db = tempStore();
    try {
      const target = await prepareQemuPair({ qemu: bin.path, env: bin.env, extraArgs: bin.args, profile: found.profile });
      const result = await record({ store: db.store, target, profile: found.profile, label: spec.label, pollMs: 5 });
      expect(result.state, result.error ?? '').toBe('complete');
      const s = db.store.session(result.sessionId);
      expect(s.target).toMatchObject({ kind: 'qemu', variant: spec.variant, build_id: found.profile.build_id });
      checkRecording(db.store.events(result.sessionId), db.store.threads(result.sessionId), spec.transitions);
    } finally {
      db.cleanup();
    }
  });
});

describe('record --attach', () => {
  const bin = bookwormQemu();
  const skip = 'skip' in bin ? bin.skip : null;

  it.skipIf(skip !== null)('records a running QEMU migrated by someone else, then leaves it running and answering', async () => {
    if ('skip' in bin) return;
    const dir = makePrivateDir('migrace-attach-test');
    const db = tempStore();
    db.store.close();
    let qemu: ChildProcess | null = null;
    let dest: Awaited<ReturnType<typeof startDestination>> | null = null;
    const found = await discoverProfile(bin.path, { env: bin.env });
    try {
      dest = await startDestination({ qemu: bin.path, profile: found.profile }, dir.path);
      const ours = join(dir.path, 'user.sock');
      const theirs = join(dir.path, 'migrace.sock');
      qemu = spawn(bin.path, ['-nodefaults', '-display', 'none', '-S', '-m', '128', '-name', 'guest,debug-threads=on',
        '-qmp', `unix:${ours},server=on,wait=off`, '-qmp', `unix:${theirs},server=on,wait=off`], { stdio: 'ignore' });
      const untrack = track(qemu.pid!, 'attach test qemu');
      const user = await QmpClient.connect(ours, { timeoutMs: 15_000 });
      // Slow enough that the recorder sees setup and active.
      await user.execute('migrate-set-parameters', { 'max-bandwidth': 4 * 1024 * 1024 });

      const child = spawn('node', [CLI, 'record', '--attach', String(qemu.pid), '--qmp', theirs, '--db', db.path, '--poll-ms', '10'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      let stdout = '';
      child.stdout.on('data', (d) => { stdout += String(d); });
      await new Promise<void>((resolve, reject) => {
        child.stderr.on('data', (d) => {
          stderr += String(d);
          if (stderr.includes('until the migration ends')) resolve();
        });
        child.on('exit', () => reject(new Error(`migrace exited early: ${stderr}`)));
      });
      await user.execute('migrate', { uri: dest.uri });
      const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      expect(code, stderr).toBe(0);
      expect(stdout).toMatch(/complete, \d+ events/);

      // Detached: QEMU is alive, not traced, and answers.
      expect(isAlive(qemu.pid!)).toBe(true);
      const status = await user.execute<{ status: string }>('query-migrate');
      expect(status.ret.status).toBe('completed');
      const tracer = (await import('node:fs')).readFileSync(`/proc/${qemu.pid}/status`, 'utf8').match(/TracerPid:\s+(\d+)/)?.[1];
      expect(tracer).toBe('0');

      const store = TraceStore.open(db.path, { readonly: true });
      const [s] = store.listSessions();
      expect(s).toMatchObject({ state: 'complete', origin: 'live' });
      expect(s.target.kind).toBe('attach');
      checkRecording(store.events(s.id), store.threads(s.id));
      store.close();

      await user.execute('quit').catch(() => undefined);
      await user.close();
      expect(await waitGone(qemu.pid!, 5000)).toBe(true);
      untrack();
    } finally {
      if (qemu?.pid && isAlive(qemu.pid)) qemu.kill('SIGKILL');
      await dest?.stop();
      dir.remove();
      db.cleanup();
    }
  });
});
