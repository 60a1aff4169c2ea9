"""What the sample generators (samples/*/generate.py) share: where the QEMU
builds are, a free loopback port for a destination, a connection to a unix
socket that waits for the process that is still starting to listen on it,
and the cleanup of what a generator started."""
import os, socket, time

SAMPLES = os.path.dirname(os.path.abspath(__file__))
# bookworm's own QEMU, and bullseye's 5.2 as samples/fetch-qemu.sh 5.2 unpacks it (with its libraries).
QEMU72 = '/usr/bin/qemu-system-x86_64'
Q52_ROOT = os.path.join(SAMPLES, '.cache', 'qemu-5.2', 'root')
QEMU52 = os.path.join(Q52_ROOT, 'usr', 'bin', 'qemu-system-x86_64')
Q52_LIBS = os.path.join(Q52_ROOT, 'usr', 'lib', 'x86_64-linux-gnu')


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


def kill_all(procs):
    """Kill and reap every process in procs that still runs: a generator leaves none behind."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
