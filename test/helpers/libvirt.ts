import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitGone } from '../../recorder/reaper.js';
import { sleep } from '../../trace/async.js';

/**
 * A private libvirtd 7.0 (bullseye's, from samples/fetch-libvirt.sh) for the
 * tests that need libvirt itself: nothing of it is installed, nothing
 * system-wide is touched, nothing is left behind.
 *
 * Parts:
 * - fetchLibvirt(): the unpacked tree, or why there is none.
 * - PrivateLibvirt.start(): libvirtd in session mode (as nobody: as root,
 *   libvirtd is always the system daemon with /var and /etc paths) with its
 *   socket, config, cache and log under one temp folder, inside its own
 *   mount and pid namespaces. The mount namespace lays the tree's /usr/share
 *   and /usr/lib over the system's (read-only overlays: libvirt finds
 *   cpu_map and libvirt_iohelper only at compiled-in paths). In the pid
 *   namespace a shell is init and libvirtd its child: the QEMUs libvirtd
 *   daemonizes are orphans of that shell, which reaps them (libvirtd, as
 *   init, would not: a zombie QEMU answers kill(pid, 0), and libvirt then
 *   waits 40 s in virProcessKillPainfully for it to die; this VM's own init
 *   does not reap either). Everything in the namespace dies with it.
 * - client(): virsh and a libvirt API call (virDomainSave through python's
 *   ctypes: virsh save would poll the job itself) as nobody, outside the
 *   namespaces, on that socket.
 * - createDomain(): a TCG guest (no disk, no devices to speak of) on a given
 *   emulator, and its pid as the host sees it.
 * - stop(): domains destroyed, libvirtd stopped, the namespaces and the
 *   folder gone.
 */

const NOBODY = 65534;
const ROOT = join(import.meta.dirname, '..', '..');
export const FETCH_LIBVIRT = join(ROOT, 'samples', 'fetch-libvirt.sh');

/** The unpacked libvirt 7.0 tree, or why the tests that need it skip. */
export function fetchLibvirt(): { root: string } | { skip: string } {
  const r = spawnSync('bash', [FETCH_LIBVIRT], { encoding: 'utf8', timeout: 300_000 });
  const said = (r.stderr ?? '').trim().split('\n').filter(Boolean).pop() ?? '';
  if (r.status === 3) return { skip: `libvirt 7.0 unavailable: ${said}` };
  if (r.status !== 0) throw new Error(`samples/fetch-libvirt.sh failed (exit ${r.status}): ${r.stderr}`);
  return { root: r.stdout.trim().split('\n').pop()! };
}

export interface ClientResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** virDomainSave(conn, name, path): one blocking API call, no job polling of its own (virsh save polls). */
const SAVE_PY = `
import ctypes, sys
lv = ctypes.CDLL('libvirt.so.0')
lv.virConnectOpen.restype = ctypes.c_void_p
lv.virConnectOpen.argtypes = [ctypes.c_char_p]
lv.virDomainLookupByName.restype = ctypes.c_void_p
lv.virDomainLookupByName.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
lv.virDomainSave.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
lv.virGetLastErrorMessage.restype = ctypes.c_char_p
conn = lv.virConnectOpen(sys.argv[1].encode())
dom = lv.virDomainLookupByName(conn, sys.argv[2].encode()) if conn else None
if not dom or lv.virDomainSave(dom, sys.argv[3].encode()) < 0:
    sys.exit('error: ' + lv.virGetLastErrorMessage().decode())
print('saved')
`;

/** Wait until check() is true, polling every 100 ms; false after ms. */
async function until(check: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
  return true;
}

/** The host's pid of the process that is `nsPid` in the pid namespace `nsLink` (as /proc/PID/ns/pid reads). */
function hostPid(nsLink: string, nsPid: number): number | null {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readlinkSync(`/proc/${name}/ns/pid`) !== nsLink) continue;
      const m = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${name}/status`, 'utf8'));
      const ids = m ? m[1].trim().split(/\s+/).map(Number) : [];
      if (ids.length >= 2 && ids[ids.length - 1] === nsPid) return ids[0];
    } catch {
      /* gone meanwhile */
    }
  }
  return null;
}

/** The whole environment of libvirtd and its clients: session mode puts everything under these folders. */
function sessionEnv(dir: string, root: string): Record<string, string> {
  const libs = join(root, 'usr/lib/x86_64-linux-gnu');
  return {
    PATH: '/usr/bin:/bin', HOME: join(dir, 'home'), XDG_RUNTIME_DIR: join(dir, 'run'), XDG_CONFIG_HOME: join(dir, 'config'),
    XDG_CACHE_HOME: join(dir, 'cache'), LD_LIBRARY_PATH: libs, LIBVIRT_DRIVER_DIR: join(libs, 'libvirt/connection-driver'),
  };
}

export class PrivateLibvirt {
  readonly uri = 'qemu:///session';
  readonly log: string;
  private readonly env: Record<string, string>;
  private readonly domains: string[] = [];

  private constructor(readonly dir: string, readonly root: string, private readonly ns: ChildProcess) {
    this.log = join(dir, 'log', 'libvirtd.log');
    this.env = sessionEnv(dir, root);
  }

  /**
   * libvirtd up and answering on its socket, or why it cannot start here
   * (not root, no namespaces or overlays, a missing tool): the caller skips
   * with that reason.
   */
  static async start(root: string, logFilters: string): Promise<PrivateLibvirt | { skip: string }> {
    if (process.getuid?.() !== 0) return { skip: 'needs root (namespaces, overlay mounts, libvirtd as nobody)' };
    for (const tool of ['unshare', 'setpriv', 'python3']) {
      if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return { skip: `needs ${tool}, which is not installed` };
    }
    const dir = mkdtempSync('/tmp/migrace-libvirt-');
    chmodSync(dir, 0o755);
    for (const sub of ['home', 'run', 'config/libvirt', 'cache', 'log', 'save', 'bin']) {
      mkdirSync(join(dir, sub), { recursive: true, mode: 0o700 });
    }
    writeFileSync(join(dir, 'config/libvirt/libvirtd.conf'), `log_filters="${logFilters}"\nlog_outputs="1:file:${join(dir, 'log', 'libvirtd.log')}"\n`);
    // QEMU's stdout and stderr to a file: virtlogd is not needed then.
    writeFileSync(join(dir, 'config/libvirt/qemu.conf'), 'stdio_handler = "file"\n');
    for (const sub of ['home', 'run', 'config', 'config/libvirt', 'config/libvirt/libvirtd.conf', 'config/libvirt/qemu.conf', 'cache', 'log', 'save']) {
      chownSync(join(dir, sub), NOBODY, NOBODY);
    }
    chmodSync(join(dir, 'bin'), 0o755);
    const script = 'mount -t overlay overlay -o "lowerdir=$0/usr/share:/usr/share" /usr/share'
      + ' && mount -t overlay overlay -o "lowerdir=$0/usr/lib:/usr/lib" /usr/lib'
      + ` && { setpriv --reuid=${NOBODY} --regid=${NOBODY} --clear-groups "$0/usr/sbin/libvirtd" & wait; }`;
    let said = '';
    const ns = spawn('unshare', ['--mount', '--propagation', 'private', '--pid', '--fork', '--mount-proc', 'sh', '-c', script, root], {
      env: sessionEnv(dir, root), stdio: ['ignore', 'pipe', 'pipe'],
    });
    ns.stdout!.on('data', (b: Buffer) => { said += b.toString(); });
    ns.stderr!.on('data', (b: Buffer) => { said += b.toString(); });
    const lv = new PrivateLibvirt(dir, root, ns);
    const up = await until(() => ns.exitCode !== null || existsSync(join(dir, 'run/libvirt/libvirt-sock')), 20_000)
      && ns.exitCode === null && (await lv.virsh(['version'])).code === 0;
    if (!up) {
      const why = said.trim() || (existsSync(lv.log) ? readFileSync(lv.log, 'utf8').split('\n').filter((l) => / error : /.test(l)).slice(-1)[0] : '') || 'no socket within 20 s';
      await lv.stop();
      return { skip: `the private libvirtd did not start: ${why}` };
    }
    return lv;
  }

  /** A client as nobody (the daemon's user) on the daemon's socket. */
  private client(argv: string[], timeoutMs: number): Promise<ClientResult> {
    return new Promise((resolve) => {
      const p = spawn('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', ...argv], { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
      p.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
      const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
      p.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
  }

  virsh(args: string[], timeoutMs = 60_000): Promise<ClientResult> {
    return this.client([join(this.root, 'usr/bin/virsh'), '-c', this.uri, ...args], timeoutMs);
  }

  /** virDomainSave: libvirt migrates the guest to a file (QEMU's migrate to an fd), then stops it. */
  save(name: string, file: string, timeoutMs = 120_000): Promise<ClientResult> {
    return this.client(['python3', '-c', SAVE_PY, this.uri, name, file], timeoutMs);
  }

  /**
   * A TCG guest on `qemu` (which needs `libs`: libvirt passes QEMU a clean
   * environment, so a wrapper script gives it LD_LIBRARY_PATH). Returns the
   * QEMU's pid on the host.
   */
  async createDomain(name: string, qemu: string, libs: string | null, memoryMiB: number): Promise<number> {
    const wrapper = join(this.dir, 'bin', 'qemu-system-x86_64');
    writeFileSync(wrapper, `#!/bin/sh\n${libs ? `LD_LIBRARY_PATH='${libs}' ` : ''}exec '${qemu}' "$@"\n`, { mode: 0o755 });
    const xml = join(this.dir, 'save', `${name}.xml`);
    writeFileSync(xml, `<domain type='qemu'>
  <name>${name}</name>
  <memory unit='MiB'>${memoryMiB}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>${wrapper}</emulator>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
`);
    chownSync(xml, NOBODY, NOBODY);
    const r = await this.virsh(['create', xml]);
    if (r.code !== 0) throw new Error(`virsh create: ${r.stderr.trim()}`);
    this.domains.push(name);
    const pidFile = join(this.dir, 'run/libvirt/qemu/run', `${name}.pid`);
    const nsPid = Number(readFileSync(pidFile, 'utf8').trim());
    const init = this.nsInit();
    const pid = init === null ? null : hostPid(readlinkSync(`/proc/${init}/ns/pid`), nsPid);
    if (pid === null) throw new Error(`no host pid for ${name}'s QEMU (pid ${nsPid} in libvirtd's namespace)`);
    return pid;
  }

  /** The host's pid of a child of `parent` (named `name`, when given), or null. */
  private static childOf(parent: number | undefined | null, name?: string): number | null {
    if (parent === undefined || parent === null) return null;
    const r = spawnSync('pgrep', ['-P', String(parent), ...(name ? ['-x', name] : [])], { encoding: 'utf8' });
    const pid = Number(r.stdout.trim().split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  }

  /** The namespace's init (the shell): unshare's only child. */
  private nsInit(): number | null {
    return PrivateLibvirt.childOf(this.ns.pid);
  }

  /** Domains destroyed, libvirtd stopped (its namespace, and anything left in it, with it), the folder removed. */
  async stop(): Promise<void> {
    if (this.ns.exitCode === null) {
      for (const d of this.domains) await this.virsh(['destroy', d], 15_000);
      const init = this.nsInit();
      const daemon = PrivateLibvirt.childOf(init, 'libvirtd');
      if (daemon !== null) {
        process.kill(daemon, 'SIGTERM');
        if (!(await waitGone(daemon, 10_000))) process.kill(daemon, 'SIGKILL');
      }
      // The shell ends with libvirtd; SIGKILL to a namespace's init takes everything in it.
      if (init !== null && !(await waitGone(init, 5_000))) process.kill(init, 'SIGKILL');
      if (!(await until(() => this.ns.exitCode !== null || this.ns.signalCode !== null, 10_000))) this.ns.kill('SIGKILL');
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
