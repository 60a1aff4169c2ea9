#!/usr/bin/env python3
"""Regenerate the QEMU trace-log samples by migrating real QEMUs over loopback.

Run from the repository root: python3 samples/trace-logs/generate.py [OUT_DIR]
Needs /usr/bin/qemu-system-x86_64 (Debian bookworm 7.2) and, for the 5.2
sample, samples/.cache/qemu-5.2 (samples/fetch-qemu.sh 5.2). Every QEMU it
starts is killed before it exits. The 10.1+ ISO-format sample is not made
here: no such QEMU runs on bookworm (see README.md in this folder).
"""
import json, os, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from sample_lib import QEMU52, QEMU72, Q52_LIBS, connect_unix, free_port, kill_all  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = ['-nodefaults', '-display', 'none', '-S', '-m', '128']
procs = []


def spawn(binary, args, env=None):
    p = subprocess.Popen([binary, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=env)
    procs.append(p)
    return p


class Qmp:
    def __init__(self, path):
        self.s = connect_unix(path, tries=200)
        self.f = self.s.makefile('rw')
        json.loads(self.f.readline())
        self.cmd('qmp_capabilities')

    def cmd(self, name, **args):
        msg = {'execute': name}
        if args:
            msg['arguments'] = args
        self.f.write(json.dumps(msg) + '\n')
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if 'return' in r or 'error' in r:
                return r


def migrate_once(binary, log, extra, env=None, scenario='ok', trace=('migrate_set_state',), dst_log=None):
    """One source process; scenario ok | fail-then-ok | cancel. Returns the log path."""
    tmp = tempfile.mkdtemp(prefix='migrace-gen-')
    sock = os.path.join(tmp, 'qmp.sock')
    traces = [a for t in trace for a in ('-trace', 'enable=' + t)]
    src = spawn(binary, [*BASE, '-name', 'src,debug-threads=on', *traces, '-D', log,
                         '-qmp', f'unix:{sock},server,wait=off', *extra], env)
    q = Qmp(sock)

    def poll_until(done, what):
        for _ in range(500):
            r = q.cmd('query-migrate')['return']
            if done(r):
                return r
            time.sleep(0.01)
        raise RuntimeError(f'migration never got {what}')

    def poll_until_done():
        return poll_until(lambda r: r.get('status') in ('completed', 'failed', 'cancelled'), 'to an end')

    def destination():
        # -incoming defer + migrate-incoming: the reply comes once it listens, and no probe
        # connection is needed (a probe would be taken for the one migration stream).
        port = free_port()
        dsock = os.path.join(tmp, 'dst.sock')
        dtrace = ['-trace', 'enable=migrate_set_state', '-D', dst_log, *extra] if dst_log else []
        dst = spawn(binary, [*BASE, '-incoming', 'defer', '-qmp', f'unix:{dsock},server,wait=off', *dtrace], env)
        Qmp(dsock).cmd('migrate-incoming', uri=f'tcp:127.0.0.1:{port}')
        return port, dst

    if scenario == 'fail-then-ok':
        # Nothing listens on this port: setup -> failed, then a second migration of the same process.
        q.cmd('migrate', uri=f'tcp:127.0.0.1:{free_port()}')
        poll_until_done()
    if scenario == 'cancel':
        # A paused guest's RAM is zero pages, a few bytes each on the wire: at 1 MiB/s its 128 MiB
        # went in about 0.3 s, so a cancel after a fixed sleep raced the end. At 16 KiB/s it takes
        # about 20 s, and the cancel comes as soon as the migration is active.
        q.cmd('migrate-set-parameters', **{'max-bandwidth': 16 << 10})
    port, dst = destination()
    q.cmd('migrate', uri=f'tcp:127.0.0.1:{port}')
    if scenario == 'cancel':
        poll_until(lambda r: r.get('status') == 'active', 'active')
        q.cmd('migrate_cancel')
    end = poll_until_done()
    if scenario == 'cancel' and end.get('status') == 'completed':
        raise RuntimeError('the migration completed before migrate_cancel: the cancel sample would show no cancel')
    q.cmd('quit')
    for p in (src, dst):
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return log


def main():
    # A folder to write to instead of this one (to try the generator without touching the samples).
    out = sys.argv[1] if len(sys.argv) > 1 else HERE
    try:
        # 7.2 without -msg timestamp=on: bare lines.
        migrate_once(QEMU72, os.path.join(out, 'qemu72-bare.log'), [])
        # 7.2 with it: TID@SEC.USEC lines.
        migrate_once(QEMU72, os.path.join(out, 'qemu72-tid.log'), ['-msg', 'timestamp=on'])
        # A cancelled migration (setup -> active -> cancelling -> cancelled).
        migrate_once(QEMU72, os.path.join(out, 'qemu72-cancel.log'), ['-msg', 'timestamp=on'], scenario='cancel')
        # Two processes in one file, the first migrating twice (failed, then completed),
        # plus other trace events than migrate_set_state.
        a = migrate_once(QEMU72, os.path.join(tempfile.mkdtemp(), 'a.log'), ['-msg', 'timestamp=on'],
                         scenario='fail-then-ok')
        b = migrate_once(QEMU72, os.path.join(tempfile.mkdtemp(), 'b.log'), ['-msg', 'timestamp=on'],
                         trace=('migrate_set_state', 'migration_thread_setup_complete', 'migrate_fd_cleanup',
                                'migration_socket_outgoing_connected', 'savevm_state_setup'))
        with open(os.path.join(out, 'qemu72-two-processes.log'), 'w') as f:
            for part in (a, b):
                with open(part) as g:
                    f.write(g.read())
        # The destination's side: incoming transitions, all made by its main thread.
        migrate_once(QEMU72, os.path.join(tempfile.mkdtemp(), 'src.log'), ['-msg', 'timestamp=on'],
                     dst_log=os.path.join(out, 'qemu72-destination.log'))
        if os.path.exists(QEMU52):
            env = dict(os.environ, LD_LIBRARY_PATH=Q52_LIBS)
            migrate_once(QEMU52, os.path.join(out, 'qemu52.log'), [], env)
        else:
            print('no QEMU 5.2 in samples/.cache (run samples/fetch-qemu.sh 5.2); skipped qemu52.log', file=sys.stderr)
    finally:
        kill_all(procs)


if __name__ == '__main__':
    main()
