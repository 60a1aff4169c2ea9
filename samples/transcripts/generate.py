#!/usr/bin/env python3
"""Regenerate the GDB CLI transcripts by running the manual reproduction of
LP#1994002 (facts.md, "The forced interleaving, done by hand") in gdb's CLI,
non-stop mode, on a pseudo-terminal, against:

  minimig / minimig-patched (debug info: symbolic breakpoints, `p state`)
  Debian QEMU 7.2 (stripped, patched): break *qmp_query_migrate+133, $r13d
  Debian QEMU 5.2 (stripped, unpatched): break *qmp_query_migrate+123, $eax

What the terminal showed is written as is (CR LF -> LF). The monitor side (QMP
for minimig, the HMP socket for QEMU) is driven from here and pasted into the
transcript where it happened, the way people paste a second terminal.

Run from the repository root after `make -C samples/minimig` and
samples/fetch-qemu.sh 5.2: python3 samples/transcripts/generate.py
Every process it starts is killed before it exits.
"""
import io, json, os, re, shutil, socket, subprocess, sys, tempfile, time

import pexpect

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))
MINIMIG = os.path.join(ROOT, 'samples', 'minimig')
Q52_ROOT = os.path.join(ROOT, 'samples', '.cache', 'qemu-5.2', 'root')
QEMU52 = os.path.join(Q52_ROOT, 'usr', 'bin', 'qemu-system-x86_64')
QEMU72 = '/usr/bin/qemu-system-x86_64'
procs = []


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def connect_unix(path, tries=300):
    for _ in range(tries):
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            return s
        except OSError:
            time.sleep(0.02)
    raise RuntimeError('nothing listens on ' + path)


class Gdb:
    """gdb's CLI on a pty. Everything gdb prints is logged as it is read; `pending`
    holds what was read but not yet matched, so output drained before a paste is
    still there for the next wait."""

    def __init__(self, argv, env=None, width=80):
        self.log = io.StringIO()
        self.pending = ''
        e = dict(os.environ, TERM='dumb', **(env or {}))
        args = ['-q', '-nx', '--args', *argv] if argv else ['-q', '-nx']
        self.c = pexpect.spawn('gdb', args, env=e, dimensions=(50, width),
                               encoding='utf-8', codec_errors='replace', timeout=30)
        self.c.logfile_read = self.log
        self.wait(re.escape('(gdb) '))

    def read_some(self, timeout):
        try:
            self.pending += self.c.read_nonblocking(65536, timeout=timeout)
            return True
        except pexpect.TIMEOUT:
            return False

    def drain(self, quiet=0.3):
        while self.read_some(quiet):
            pass

    def wait(self, pattern, timeout=30):
        deadline = time.time() + timeout
        while True:
            m = re.search(pattern, self.pending)
            if m:
                self.pending = self.pending[m.end():]
                return m
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError(f'gdb never printed {pattern!r}; last output: {self.pending[-300:]!r}')
            self.read_some(min(left, 1.0))

    def wait_hit(self, timeout=30):
        m = self.wait(HIT, timeout)
        self.drain()  # the rest of the stop report, before anything is pasted or typed
        return m

    def cmd(self, text):
        """A command answered before the next prompt (not one that resumes and stops later)."""
        self.drain(0.1)
        self.pending = ''
        self.c.sendline(text)
        self.wait(re.escape('(gdb) '))
        return self.log.getvalue()[-2000:]

    def value(self, expr):
        out = self.cmd('p ' + expr)
        m = list(re.finditer(r'\$\d+ = (.*)', out))
        return m[-1].group(1).strip() if m else None

    def paste(self, text):
        """Text from another terminal, pasted where it happened, on lines of its own."""
        self.drain(0.1)
        if not self.log.getvalue().endswith('\n'):
            self.log.write('\n')
        self.log.write(text if text.endswith('\n') else text + '\n')

    def close(self):
        try:
            self.cmd('kill')
            self.c.sendline('quit')
            self.c.expect(pexpect.EOF, timeout=10)
        except Exception:
            pass
        self.c.close(force=True)
        return self.log.getvalue().replace('\r\n', '\n').replace('\r', '')


# With one thread alive gdb leaves out the "Thread N "name" hit" part.
HIT = r'(?:Thread (\d+) "([^"]+)" hit )?Breakpoint (\d+), '


def recv_all(sock, until, timeout=10):
    sock.settimeout(timeout)
    data = b''
    while not re.search(until, data.decode('utf-8', 'replace')):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode('utf-8', 'replace')


# --------------------------------------------------------------------------------
# minimig: QMP only, symbolic breakpoints from debug info


class Qmp:
    def __init__(self, path):
        self.s = connect_unix(path)
        self.s.settimeout(20)
        self.f = self.s.makefile('rw')
        self.greeting = self.f.readline().strip()

    def send(self, obj):
        line = json.dumps(obj, separators=(',', ':'))
        self.f.write(line + '\n')
        self.f.flush()
        return line

    def read_reply(self):
        while True:
            line = self.f.readline().strip()
            r = json.loads(line)
            if 'return' in r or 'error' in r:
                return line


def qmp_request(g, q, obj):
    """Paste the request first: what it causes in gdb must come after it."""
    g.paste(json.dumps(obj, separators=(',', ':')))
    q.send(obj)


def minimig_run(binary, out_name):
    tmp = tempfile.mkdtemp(prefix='migrace-tr-')
    sock = os.path.join(tmp, 'qmp.sock')
    g = Gdb([binary, '-qmp', f'unix:{sock},server,wait=off'])
    try:
        g.cmd('set confirm off')
        g.cmd('set non-stop on')
        g.cmd('break migrate_set_state')
        g.cmd('run &')
        q = Qmp(sock)
        g.paste('# second terminal: socat - UNIX-CONNECT:' + sock + '\n' + q.greeting + '\n')
        qmp_request(g, q, {'execute': 'qmp_capabilities'})
        g.paste(q.read_reply() + '\n')
        qmp_request(g, q, {'execute': 'migrate', 'arguments': {'uri': 'tcp:127.0.0.1:4444'}})
        m = g.wait_hit()
        main_id = m.group(1) or '1'
        g.cmd('continue &')
        m = g.wait_hit()
        mig_id = m.group(1)
        g.paste(q.read_reply() + '\n')
        g.cmd(f'thread {mig_id}')
        g.cmd('bt 2')
        g.cmd(f'thread {main_id}')
        # Hold the migration thread at SETUP -> ACTIVE; place read and publish probes.
        src = open(binary.replace('-patched', '') + '.c').read().split('\n')
        read_line = next(i + 1 for i, l in enumerate(src) if 'migrace:read' in l)
        pub_line = next(i + 1 for i, l in enumerate(src) if 'migrace:publish' in l)
        g.cmd(f'break minimig.c:{read_line}')
        g.cmd(f'break minimig.c:{pub_line}')
        g.cmd('info threads')
        qmp_request(g, q, {'execute': 'query-migrate', 'id': 'q1'})
        g.wait_hit()
        g.cmd('p state')
        g.cmd('p (MigrationStatus) state')
        g.cmd('info threads')
        g.cmd(f'thread {mig_id}')
        g.cmd('continue &')
        time.sleep(0.3)
        g.cmd(f'thread {main_id}')
        g.cmd('p s->state')
        g.cmd('continue &')
        g.wait_hit()
        g.cmd('p info->status')
        g.cmd('continue &')
        g.paste(q.read_reply() + '\n')
        # The migration thread meanwhile stopped at ACTIVE -> COMPLETED.
        g.cmd('info threads')
        g.cmd(f'thread {mig_id}')
        g.cmd('continue &')
        time.sleep(0.3)
        g.cmd(f'thread {main_id}')
        qmp_request(g, q, {'execute': 'query-migrate', 'id': 'q2'})
        g.wait_hit()
        g.cmd('p state')
        g.cmd('delete')
        g.cmd('continue &')
        g.paste(q.read_reply() + '\n')
    finally:
        text = g.close()
        shutil.rmtree(tmp, ignore_errors=True)
    with open(os.path.join(HERE, out_name), 'w') as f:
        f.write(text)


# --------------------------------------------------------------------------------
# Debian QEMU: stripped, address probes, HMP monitor


def hmp_cmd(sock, text):
    sock.sendall((text + '\n').encode())


def hmp_output(sock):
    """What the monitor printed after a command, as a terminal shows it: QEMU's
    readline echoes the command with cursor escapes; drop that echo line."""
    out = recv_all(sock, r'\(qemu\) ').replace('\r\n', '\n')
    out = out.split('\n', 1)[1] if '\n' in out else ''
    return out[: -len('(qemu) ')] if out.endswith('(qemu) ') else out


def qemu_run(binary, env, version, read_off, reg, pub_offs, out_name):
    tmp = tempfile.mkdtemp(prefix='migrace-tr-')
    mon = os.path.join(tmp, 'mon.sock')
    dsock = os.path.join(tmp, 'dst.sock')
    port = free_port()
    denv = dict(os.environ, **(env or {}))
    base = ['-nodefaults', '-display', 'none', '-S', '-m', '128']
    dst = subprocess.Popen([binary, *base, '-incoming', 'defer', '-qmp', f'unix:{dsock},server,nowait'],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=denv)
    procs.append(dst)
    dq = Qmp(dsock)
    dq.send({'execute': 'qmp_capabilities'}); dq.read_reply()
    dq.send({'execute': 'migrate-incoming', 'arguments': {'uri': f'tcp:127.0.0.1:{port}'}}); dq.read_reply()
    g = Gdb([binary, *base, '-name', 'src,debug-threads=on', '-monitor', f'unix:{mon},server,nowait'])
    try:
        g.cmd('set confirm off')
        g.cmd('set pagination off')
        g.cmd('set non-stop on')
        for k, v in (env or {}).items():
            # A short path: readline scrolls a long command line sideways on an 80-column pty.
            link = os.path.join(tmp, 'lib')
            os.symlink(v, link)
            g.cmd(f'set environment {k}={link}')
        g.cmd('handle SIGUSR1 SIGUSR2 SIGPIPE nostop noprint pass')
        g.cmd('break migrate_set_state')
        g.cmd('run &')
        h = connect_unix(mon)
        banner = recv_all(h, r'\(qemu\) ')
        g.paste('# monitor, second terminal: socat - UNIX-CONNECT:' + mon + '\n' + banner.replace('\r\n', '\n').replace('(qemu) ', ''))
        g.paste(f'(qemu) migrate -d tcp:127.0.0.1:{port}')
        hmp_cmd(h, f'migrate -d tcp:127.0.0.1:{port}')
        m = g.wait_hit()
        main_id = m.group(1) or '1'
        g.cmd('p $esi')
        g.cmd('p $edx')
        g.cmd('continue &')
        m = g.wait_hit()
        mig_id = m.group(1)
        # Non-stop mode does not select the thread that stopped: the first try fails, as it does by hand.
        g.cmd('p $esi')
        g.cmd(f'thread {mig_id}')
        g.cmd('p $esi')
        g.cmd('p $edx')
        addr = g.value('/x $rdi')
        g.cmd(f'break *qmp_query_migrate+{read_off}')
        for off in pub_offs:
            g.cmd(f'break *qmp_query_migrate+{off}')
        g.cmd('info threads')
        out = hmp_output(h)
        if out.strip():
            g.paste(out)
        g.paste('(qemu) info migrate')
        hmp_cmd(h, 'info migrate')
        g.wait_hit()
        g.cmd(f'thread {main_id}')
        g.cmd(f'p ${reg}')
        g.cmd(f'thread {mig_id}')
        g.cmd('continue &')
        time.sleep(0.3)
        g.cmd(f'thread {main_id}')
        for _ in range(20):
            if g.value(f'*(int*){addr}') == '4':
                break
            time.sleep(0.2)
        g.cmd('continue &')
        g.wait_hit()
        g.cmd(f'p ${reg}')
        g.cmd('continue &')
        g.paste(hmp_output(h))
        g.cmd('info threads')
        g.cmd('delete')
        g.cmd(f'thread {mig_id}')
        g.cmd('continue &')
        time.sleep(0.5)
        g.paste('(qemu) info migrate')
        hmp_cmd(h, 'info migrate')
        g.paste(hmp_output(h))
    finally:
        text = g.close()
        dst.kill(); dst.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    with open(os.path.join(HERE, out_name), 'w') as f:
        f.write(text)


def main():
    try:
        minimig_run(os.path.join(MINIMIG, 'minimig'), 'minimig-unpatched.gdb.txt')
        minimig_run(os.path.join(MINIMIG, 'minimig-patched'), 'minimig-patched.gdb.txt')
        qemu_run(QEMU72, None, '7.2', 133, 'r13d', (332, 513, 676), 'qemu72-stripped.gdb.txt')
        if os.path.exists(QEMU52):
            lib = os.path.join(Q52_ROOT, 'usr', 'lib', 'x86_64-linux-gnu')
            qemu_run(QEMU52, {'LD_LIBRARY_PATH': lib}, '5.2', 123, 'eax', (187, 457, 636), 'qemu52-stripped.gdb.txt')
        else:
            print('no QEMU 5.2 in samples/.cache (run samples/fetch-qemu.sh 5.2); skipped', file=sys.stderr)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


if __name__ == '__main__':
    main()
