#!/usr/bin/env python3
"""Regenerate the GDB CLI transcripts by running the manual reproduction of
LP#1994002 (docs/qemu-facts.md, "The race and the fix") in gdb's CLI,
non-stop mode, on a pseudo-terminal, against:

  minimig / minimig-patched (debug info: symbolic breakpoints, `p state`)
  Debian QEMU 7.2 (stripped, patched): break *qmp_query_migrate+133, $r13d
  Debian QEMU 5.2 (stripped, unpatched): break *qmp_query_migrate+123, $eax

and the same race written the way the LP#1994002 reproducer is (RUNS: a stop
in the SETUP case of the switch, prose, `...` elisions, commands pasted
without their prompt), on minimig, minimig-patched, minimig built -O2 -g,
QEMU 5.2 and 7.2, plus two gdb sessions logged into one file.

What the terminal showed is written as is (CR LF -> LF). The monitor side (QMP
for minimig, the HMP socket for QEMU) is driven from here and pasted into the
transcript where it happened, the way people paste a second terminal.

Run from the repository root after `make -C samples/minimig` and
samples/fetch-qemu.sh 5.2: python3 samples/transcripts/generate.py
Every process it starts is killed before it exits.
"""
import io, json, os, re, shutil, subprocess, sys, tempfile, time

import pexpect

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from sample_lib import QEMU52, QEMU72, Q52_LIBS, connect_unix, free_port, kill_all  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))
MINIMIG = os.path.join(ROOT, 'samples', 'minimig')
procs = []


class TimedLog(io.StringIO):
    """A log that remembers when each piece arrived, so two sessions can be merged in time."""

    def __init__(self):
        super().__init__()
        self.chunks = []

    def write(self, s):
        self.chunks.append((time.monotonic(), s))
        return super().write(s)

    def lines_in_time(self):
        """(time, line) for each complete line, stamped when its end arrived."""
        out, cur = [], ''
        for t, s in self.chunks:
            cur += s.replace('\r\n', '\n').replace('\r', '')
            while '\n' in cur:
                line, cur = cur.split('\n', 1)
                out.append((t, line))
        if cur:
            out.append((self.chunks[-1][0], cur))
        return out


class Gdb:
    """gdb's CLI on a pty. Everything gdb prints is logged as it is read; `pending`
    holds what was read but not yet matched, so output drained before a paste is
    still there for the next wait."""

    def __init__(self, argv, env=None, width=80):
        self.log = TimedLog()
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
HIT = r'(?:Thread (\d+) "([^"]+)" hit )?Breakpoint (\d+)(?:\.\d+)?, '


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
        main_id, mig_id = to_migration_thread(g)
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


def start_destination(binary, env, base, tmp):
    """A destination QEMU waiting for the migration (migrate-incoming on a free port); returns (process, port)."""
    dsock = os.path.join(tmp, 'dst.sock')
    port = free_port()
    dst = subprocess.Popen([binary, *base, '-incoming', 'defer', '-qmp', f'unix:{dsock},server,nowait'],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env=dict(os.environ, **(env or {})))
    procs.append(dst)
    dq = Qmp(dsock)
    dq.send({'execute': 'qmp_capabilities'}); dq.read_reply()
    dq.send({'execute': 'migrate-incoming', 'arguments': {'uri': f'tcp:127.0.0.1:{port}'}}); dq.read_reply()
    return dst, port


def qemu_gdb(argv, env, tmp, brk='break migrate_set_state'):
    """gdb on a QEMU as the recipes have it: non-stop, the library path (through a short link:
    readline scrolls a long command line sideways on an 80-column pty), QEMU's signals passed on,
    a breakpoint at migrate_set_state."""
    g = Gdb(argv)
    g.cmd('set confirm off')
    g.cmd('set pagination off')
    g.cmd('set non-stop on')
    for k, v in (env or {}).items():
        link = os.path.join(tmp, 'lib')
        if not os.path.exists(link):
            os.symlink(v, link)
        g.cmd(f'set environment {k}={link}')
    g.cmd('handle SIGUSR1 SIGUSR2 SIGPIPE nostop noprint pass')
    g.cmd(brk)
    return g


def to_migration_thread(g, p=None, cont='continue &', prompt=True):
    """After `migrate`: the main thread's hit (none -> setup), its states printed with `p` (stripped
    builds) and let go with `cont` (pasted without its prompt unless `prompt`), then the migration
    thread's hit (setup -> active), which stays stopped. Returns their gdb ids."""
    m = g.wait_hit()
    main_id = m.group(1) or '1'
    if p:
        g.cmd(f'{p} $esi')
        g.cmd(f'{p} $edx')
    if prompt:
        g.cmd(cont)
    else:
        bare(g, cont)
    m = g.wait_hit()
    return main_id, m.group(1)


def cross_the_switch_read(g, main_id, mig_id, addr, reg):
    """LP#1994002 by hand on a stripped build: the main thread stopped right after its switch read
    prints what it loaded (`p $REG`), the migration thread goes on until the state at `addr` is
    active (4), then the main thread runs to the status store and prints what it stores."""
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


def hmp_query(g, h):
    """What the monitor printed since, pasted; then `info migrate` typed there, and the hit it leads to."""
    out = hmp_output(h)
    if out.strip():
        g.paste(out)
    g.paste('(qemu) info migrate')
    hmp_cmd(h, 'info migrate')
    g.wait_hit()


def qemu_run(binary, env, version, read_off, reg, pub_offs, out_name):
    tmp = tempfile.mkdtemp(prefix='migrace-tr-')
    mon = os.path.join(tmp, 'mon.sock')
    base = ['-nodefaults', '-display', 'none', '-S', '-m', '128']
    dst, port = start_destination(binary, env, base, tmp)
    g = qemu_gdb([binary, *base, '-name', 'src,debug-threads=on', '-monitor', f'unix:{mon},server,nowait'], env, tmp)
    try:
        g.cmd('run &')
        h = connect_unix(mon)
        banner = recv_all(h, r'\(qemu\) ')
        g.paste('# monitor, second terminal: socat - UNIX-CONNECT:' + mon + '\n' + banner.replace('\r\n', '\n').replace('(qemu) ', ''))
        g.paste(f'(qemu) migrate -d tcp:127.0.0.1:{port}')
        hmp_cmd(h, f'migrate -d tcp:127.0.0.1:{port}')
        main_id, mig_id = to_migration_thread(g, 'p')
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
        hmp_query(g, h)
        cross_the_switch_read(g, main_id, mig_id, addr, reg)
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


# --------------------------------------------------------------------------------
# Transcripts as people write them into a bug (the LP#1994002 reproducer's style):
# a breakpoint on the `break` of the SETUP case, the state printed there,
# `info threads`, the migration thread let go, the state printed again, `c`,
# and the monitor's answer. The gdb output is what gdb printed; the person's
# part is marked while the run goes (prose lines, `...` for what they cut,
# commands pasted without their "(gdb) " prompt) and applied by as_reported().

PROSE, ELIDE_BEGIN, ELIDE_END, NOPROMPT = '\x00PROSE ', '\x00ELIDE<', '\x00ELIDE>', '\x00NOPROMPT'


def prose(g, text):
    g.paste('\n'.join(PROSE + l for l in text.split('\n')))


def elide(g, fn):
    """Run fn; what gdb prints meanwhile is cut from the report and replaced by '...'."""
    g.paste(ELIDE_BEGIN)
    r = fn()
    g.drain(0.3)
    g.paste(ELIDE_END)
    return r


def bare(g, text):
    """A command whose "(gdb) " the person left out when pasting."""
    g.paste(NOPROMPT)
    return g.cmd(text)


def as_reported(raw, intro=''):
    out = intro.split('\n') if intro else []
    eliding = False
    pending_noprompt = False
    for line in raw.split('\n'):
        if line == ELIDE_BEGIN:
            eliding = True
            continue
        if line == ELIDE_END:
            eliding = False
            if not out or out[-1] != '...':
                out.append('...')
            continue
        if eliding:
            continue
        if line.startswith(PROSE):
            out.append(line[len(PROSE):])
            continue
        if line == NOPROMPT:
            # The prompt gdb printed before the command is on the line before the marker.
            if out and out[-1].strip() == '(gdb)':
                out.pop()
            pending_noprompt = True
            continue
        if pending_noprompt and line.startswith('(gdb) '):
            line = line[len('(gdb) '):]
        pending_noprompt = False
        out.append(line)
    return '\n'.join(out)


def setup_break_line(src_path):
    """The `break;` that ends the SETUP case of fill_source_migration_info's switch."""
    src = open(src_path).read().split('\n')
    case = next(i for i, l in enumerate(src) if 'case MIGRATION_STATUS_SETUP:' in l and i > next(j for j, m in enumerate(src) if 'migrace:read' in m))
    return next(i + 1 for i in range(case, len(src)) if src[i].strip() == 'break;')


def minimig_lp_style(binary, out_name, label, stop=None):
    tmp = tempfile.mkdtemp(prefix='migrace-tr-')
    sock = os.path.join(tmp, 'qmp.sock')
    setup_line = setup_break_line(binary.replace('-patched', '') + '.c')
    argv = [binary, '-qmp', f'unix:{sock},server,wait=off']
    intro = (f'Reproducer on {label}, gdb 13 in non-stop mode; QMP in a second terminal.\n\n'
             f'$ gdb -q --args {" ".join(argv)}')
    g = Gdb(argv)
    try:
        g.cmd('set confirm off')
        g.cmd('set non-stop on')
        g.cmd('b migrate_set_state')
        q = elide(g, lambda: (g.cmd('run &'), Qmp(sock))[1])
        q.send({'execute': 'qmp_capabilities'}); q.read_reply()
        prose(g, 'Start a migration from the other terminal:')
        qmp_request(g, q, {'execute': 'migrate', 'arguments': {'uri': 'tcp:127.0.0.1:4444'}})
        main_id, mig_id = to_migration_thread(g, None, 'c &')
        g.paste(q.read_reply() + '\n')
        if stop is None:
            prose(g, f'\nThe migration thread (thread {mig_id}) now waits at SETUP -> ACTIVE.\n'
                     f'Stop the main thread in the SETUP case of the switch, on its break:')
            g.cmd(f'b minimig.c:{setup_line}')
        else:
            prose(g, f'\nThe migration thread (thread {mig_id}) now waits at SETUP -> ACTIVE.\n'
                     f'At -O2 a line breakpoint in the switch lands elsewhere, so stop where the function starts:')
            g.cmd(f'b {stop}')
        qmp_request(g, q, {'execute': 'query-migrate', 'id': 'q1'})
        g.wait_hit()
        if stop is None:
            g.cmd(f'list {setup_line - 8},{setup_line + 1}')
        else:
            g.cmd('p state')
        g.cmd('p (MigrationStatus) s.state')
        bare(g, 'p info.status')
        if stop is None:
            prose(g, '\nSo the switch took the SETUP branch and nothing is published yet.')
        else:
            prose(g, '\nThe state is SETUP here, before the function loads it, and nothing is published yet.')
        g.cmd('info threads')
        prose(g, 'Let the migration thread go:')
        g.cmd(f'thread {mig_id}')
        bare(g, 'continue &')
        g.wait_hit()
        g.cmd(f'thread {main_id}')
        g.cmd('p (MigrationStatus) s.state')
        g.cmd('p (MigrationStatus) 8')
        prose(g, 'The state is ACTIVE now (and the migration thread waits again, at ACTIVE -> COMPLETED).\n'
                 'Continue the main thread:')
        g.c.sendline('c')
        g.paste(q.read_reply() + '\n')
        prose(g, '\nThe reply to q1 is what libvirt got.')
        g.drain(0.3)
        g.c.sendintr()
        g.wait(re.escape('(gdb) '))
    finally:
        text = g.close()
        shutil.rmtree(tmp, ignore_errors=True)
    with open(os.path.join(HERE, out_name), 'w') as f:
        f.write(as_reported(text, intro))


def qemu_lp_style(binary, env, label, out_name, stop, stop_why, field, reg=None, debuginfo=False):
    """Debian QEMU, stripped: address breakpoints, the state field read through a register (`stop` is the
    offset into qmp_query_migrate). With debuginfo (the -O2 -g 5.2.0 build): symbolic breakpoints (`stop` is
    FILE:LINE), the source listed, the state and info->status printed by name."""
    tmp = tempfile.mkdtemp(prefix='migrace-tr-')
    mon = os.path.join(tmp, 'mon.sock')
    base = (['-L', '/usr/share/seabios', '-L', '/usr/share/qemu'] if debuginfo else []) + ['-nodefaults', '-display', 'none', '-S', '-m', '128']
    dst, port = start_destination(binary, env, base, tmp)
    argv = [binary, *base, '-name', 'src,debug-threads=on', '-monitor', f'unix:{mon},server,nowait']
    why = ('built from source with -O2 -g (so with debug info and the source at hand).' if debuginfo else
           'no debug info, so address breakpoints (offsets from the disassembly of\nqmp_query_migrate, where fill_source_migration_info is inlined).')
    intro = f'{label}: {why}\n\n$ gdb -q --args {" ".join(argv)}'
    g = qemu_gdb(argv, env, tmp, 'b migrate_set_state')
    try:
        h = elide(g, lambda: (g.cmd('run &'), connect_unix(mon))[1])
        banner = recv_all(h, r'\(qemu\) ')
        if debuginfo:
            g.paste('# monitor, second terminal:\n' + banner.replace('\r\n', '\n').replace('(qemu) ', ''))
        else:
            prose(g, 'In the monitor:')
        g.paste(f'(qemu) migrate -d tcp:127.0.0.1:{port}')
        hmp_cmd(h, f'migrate -d tcp:127.0.0.1:{port}')
        main_id, mig_id = to_migration_thread(g, None if debuginfo else 'p/x', 'c &', prompt=not debuginfo)
        if not debuginfo:
            g.cmd(f'thread {mig_id}')
            g.cmd('p $esi')
            g.cmd('p $edx')
        prose(g, f'\nThread {mig_id} waits at SETUP -> ACTIVE. {stop_why}')
        g.cmd(f'b {stop}' if debuginfo else f'b *qmp_query_migrate+{stop}')
        hmp_query(g, h)
        if debuginfo:
            line = int(stop.split(':')[1])
            g.cmd(f'list {line - 8},{line + 1}')
        else:
            g.cmd(f'thread {main_id}')
        if reg:
            g.cmd(f'p ${reg}')
        g.cmd(f'p {field}')
        if debuginfo:
            g.cmd('p info->status')
        g.cmd('info threads')
        prose(g, 'Let the migration thread go, then look again from the main thread:')
        g.cmd(f'thread {mig_id}')
        bare(g, 'continue &')
        time.sleep(0.5)
        g.cmd(f'thread {main_id}')
        for _ in range(20):
            if g.value(field) in ('4', 'MIGRATION_STATUS_ACTIVE'):
                break
            time.sleep(0.2)
        prose(g, 'ACTIVE now. Continue the main thread; the monitor prints:')
        g.c.sendline('c')
        g.paste(hmp_output(h))
        g.drain(0.3)
        g.c.sendintr()
        g.wait(re.escape('(gdb) '))
    finally:
        text = g.close()
        dst.kill(); dst.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    with open(os.path.join(HERE, out_name), 'w') as f:
        f.write(as_reported(text, intro))


def interleaved_sessions(binary, env, out_name):
    """Two gdb sessions whose output went into one file line by line (two terminals
    logging to the same file): the destination QEMU under one gdb, the source under
    another, both stopping at migrate_set_state, the source also at the read point."""
    tmp = tempfile.mkdtemp(prefix='migrace-tr-')
    mon = os.path.join(tmp, 'mon.sock')
    port = free_port()
    base = ['-nodefaults', '-display', 'none', '-S', '-m', '128']

    def start(argv):
        g = qemu_gdb(argv, env, tmp)
        g.cmd('run &')
        return g

    dst = src = None
    try:
        dst = start([binary, *base, '-name', 'dst,debug-threads=on', '-incoming', f'tcp:127.0.0.1:{port}'])
        time.sleep(1.0)
        src = start([binary, *base, '-name', 'src,debug-threads=on', '-monitor', f'unix:{mon},server,nowait'])
        h = connect_unix(mon)
        recv_all(h, r'\(qemu\) ')

        def serve_dst():
            # The destination's own hits: print the states, look at the threads, go on.
            while True:
                dst.drain(0.2)
                if not re.search(HIT, dst.pending):
                    return
                dst.pending = re.sub(HIT, '', dst.pending, count=1)
                dst.cmd('p $esi')
                dst.cmd('p $edx')
                dst.cmd('info threads')
                dst.cmd('continue &')

        hmp_cmd(h, f'migrate -d tcp:127.0.0.1:{port}')
        main_id, mig_id = to_migration_thread(src, 'p')
        serve_dst()
        src.cmd(f'thread {mig_id}')
        src.cmd('p $esi')
        src.cmd('p $edx')
        src.cmd('break *qmp_query_migrate+123')
        hmp_output(h)
        hmp_cmd(h, 'info migrate')
        src.wait_hit()
        src.cmd(f'thread {main_id}')
        src.cmd('p $eax')
        serve_dst()
        src.cmd(f'thread {mig_id}')
        src.cmd('continue &')
        time.sleep(0.5)
        serve_dst()
        src.cmd(f'thread {main_id}')
        src.cmd('continue &')
        hmp_output(h)
        src.cmd('delete')
        src.cmd(f'thread {mig_id}')
        src.cmd('continue &')
        for _ in range(30):
            serve_dst()
            time.sleep(0.2)
    finally:
        logs = []
        for g in (dst, src):
            if g is not None:
                g.close()
                logs.append(g.log)
        shutil.rmtree(tmp, ignore_errors=True)
    merged = sorted(((t, i, n, line) for i, log in enumerate(logs) for n, (t, line) in enumerate(log.lines_in_time())),
                    key=lambda x: x[:3])
    intro = ('Two gdb sessions (destination, then source, Debian QEMU 5.2) that logged into one file:\n'
             'set logging file /tmp/gdb.txt and set logging overwrite off in both.\n')
    with open(os.path.join(HERE, out_name), 'w') as f:
        f.write(intro + '\n'.join(x[3] for x in merged) + '\n')


def minimig_optimized(out_name):
    """minimig built as distributions build QEMU (-O2 -g): arguments and locals may be <optimized out>."""
    tmp = tempfile.mkdtemp(prefix='migrace-o2-')
    try:
        shutil.copy(os.path.join(MINIMIG, 'minimig.c'), tmp)
        subprocess.run(['gcc', '-g', '-O2', '-pthread', '-o', os.path.join(tmp, 'minimig'), os.path.join(tmp, 'minimig.c')], check=True)
        minimig_lp_style(os.path.join(tmp, 'minimig'), out_name, 'minimig (unpatched) built with -O2 -g', stop='fill_source_migration_info')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


Q52_ENV = {'LD_LIBRARY_PATH': Q52_LIBS}
QEMU52_DBG = os.path.join(ROOT, 'samples', '.cache', 'qemu-5.2-dbg', 'qemu-system-x86_64')
RUNS = {
    'qemu52-dbg-lp': lambda: qemu_lp_style(
        QEMU52_DBG, None, 'QEMU 5.2.0', 'qemu52-debuginfo-lp-style.txt', 'migration/migration.c:1067',
        'Break on the `break` of the SETUP case:', '(MigrationStatus) s->state', debuginfo=True),
    'minimig-O2': lambda: minimig_optimized('minimig-O2-lp-style.txt'),
    'interleaved': lambda: interleaved_sessions(QEMU52, Q52_ENV, 'qemu52-two-sessions-interleaved.txt'),
    'qemu52-lp': lambda: qemu_lp_style(
        QEMU52, Q52_ENV, 'Debian QEMU 5.2 (1:5.2+dfsg-11+deb11u3)', 'qemu52-lp-style.txt', 440,
        'qmp_query_migrate+440 is the start of the SETUP case\n(has_status = true; has_total_time = false at +440/+445; +451 re-reads the state for the status).',
        '*(int *)($rbx + 0x238)'),
    'qemu72-lp': lambda: qemu_lp_style(
        QEMU72, None, 'Debian QEMU 7.2 (1:7.2+dfsg-7+deb12u18+b3)', 'qemu72-lp-style.txt', 133,
        'qmp_query_migrate+133 is right after the read-once load into %r13d.',
        '*(int *)($r12 + 0x2e8)', reg='r13d'),
    'minimig-lp': lambda: minimig_lp_style(os.path.join(MINIMIG, 'minimig'), 'minimig-lp-style.txt', 'minimig (unpatched)'),
    'minimig-patched-lp': lambda: minimig_lp_style(os.path.join(MINIMIG, 'minimig-patched'), 'minimig-patched-lp-style.txt', 'minimig-patched'),
}


def main():
    """No arguments: every transcript; else the named RUNS (python3 generate.py minimig-lp qemu52-lp)."""
    only = sys.argv[1:]
    try:
        if only:
            for name in only:
                RUNS[name]()
            return
        minimig_run(os.path.join(MINIMIG, 'minimig'), 'minimig-unpatched.gdb.txt')
        minimig_run(os.path.join(MINIMIG, 'minimig-patched'), 'minimig-patched.gdb.txt')
        qemu_run(QEMU72, None, '7.2', 133, 'r13d', (332, 513, 676), 'qemu72-stripped.gdb.txt')
        if os.path.exists(QEMU52):
            qemu_run(QEMU52, Q52_ENV, '5.2', 123, 'eax', (187, 457, 636), 'qemu52-stripped.gdb.txt')
        else:
            print('no QEMU 5.2 in samples/.cache (run samples/fetch-qemu.sh 5.2); skipped', file=sys.stderr)
        for name, run in RUNS.items():
            if ('qemu52' in name or name == 'interleaved') and not os.path.exists(QEMU52):
                continue
            if name == 'qemu52-dbg-lp' and not os.path.exists(QEMU52_DBG):
                print('no QEMU 5.2 -O2 -g build in samples/.cache/qemu-5.2-dbg; skipped', file=sys.stderr)
                continue
            run()
    finally:
        kill_all(procs)


if __name__ == '__main__':
    main()
