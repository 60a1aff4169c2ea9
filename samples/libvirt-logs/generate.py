#!/usr/bin/env python3
"""Regenerate the libvirt debug-log samples with Debian's libvirt 9.0 driving a
QEMU TCG guest (128 MiB, no disk) through `virsh save`, while `virsh domjobinfo`
makes libvirt poll query-migrate. gdb (CLI, non-stop, attached to the QEMU that
libvirt started) holds the migration thread at its transitions so that the
polls land in each state:

  save-qemu72: Debian QEMU 7.2 (patched). Migration thread held at
      setup -> active, then at active -> completed, a few polls in each.
  save-qemu52-race: Debian QEMU 5.2 (unpatched) through a wrapper script (it
      needs its own libraries). The LP#1994002 interleaving forced by hand
      (docs/qemu-facts.md): libvirt's query-migrate gets {"status": "active"} with no ram.
      Its gdb transcript goes to samples/transcripts/.

Each run keeps: the libvirt log lines of the job (monitor traffic and the
qemuMonitor* debug lines around it, not the capability probing), the QEMU
trace log of the same guest (-trace enable=migrate_set_state via
<qemu:commandline>; libvirt passes -msg timestamp=on, so TID@SEC.USEC lines).

Needs root, libvirt-daemon-system and libvirt-clients. Starts its own virtlogd
and libvirtd with a private log config and stops both (and the guest) before
it exits. Run from the repository root: python3 samples/libvirt-logs/generate.py
"""
import os, re, shutil, signal, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, os.path.join(ROOT, 'samples'))
sys.path.insert(0, os.path.join(ROOT, 'samples', 'transcripts'))
from generate import Gdb, HIT, cross_the_switch_read  # noqa: E402
from sample_lib import QEMU52, QEMU72, Q52_LIBS  # noqa: E402

URI = 'qemu:///system'
daemons = []


def virsh(*args, check=True, timeout=60):
    r = subprocess.run(['virsh', '-c', URI, *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f'virsh {" ".join(args)}: {r.stderr.strip()}')
    return r.stdout


def start_daemons(tmp):
    conf = os.path.join(tmp, 'libvirtd.conf')
    log = os.path.join(tmp, 'libvirtd.log')
    with open(conf, 'w') as f:
        # The monitor traffic is logged by qemu.qemu_monitor (QEMU_MONITOR_SEND_MSG, _IO_WRITE) and
        # qemu.qemu_monitor_json (QEMU_MONITOR_RECV_REPLY, _RECV_EVENT); level 1 keeps the debug lines too.
        f.write('log_filters="1:qemu.qemu_monitor 1:qemu.qemu_monitor_json 4:*"\n')
        f.write(f'log_outputs="1:file:{log}"\n')
    for argv in (['virtlogd'], ['libvirtd', '-f', conf]):
        daemons.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for _ in range(100):
        if subprocess.run(['virsh', '-c', URI, 'version'], capture_output=True).returncode == 0:
            return log
        time.sleep(0.1)
    raise RuntimeError('libvirtd did not come up')


def stop_daemons():
    for p in reversed(daemons):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    daemons.clear()


def domain_xml(name, emulator, trace_log):
    return f"""<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>{emulator}</emulator>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-trace'/>
    <qemu:arg value='enable=migrate_set_state'/>
    <qemu:arg value='-D'/>
    <qemu:arg value='{trace_log}'/>
  </qemu:commandline>
</domain>
"""


def qemu_pid(name):
    with open(f'/run/libvirt/qemu/{name}.pid') as f:
        return int(f.read().strip())


def jobinfo_async():
    return subprocess.Popen(['virsh', '-c', URI, 'domjobinfo', NAME], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


NAME = 'migrace-save'


def run(tag, emulator, race):
    tmp = tempfile.mkdtemp(prefix='migrace-lv-')
    os.chmod(tmp, 0o777)
    trace_log = os.path.join(tmp, 'qemu-trace.log')
    save_file = os.path.join(tmp, 'save.img')
    log = start_daemons(tmp)
    g = None
    save = None
    try:
        xml = os.path.join(tmp, 'dom.xml')
        with open(xml, 'w') as f:
            f.write(domain_xml(NAME, emulator, trace_log))
        virsh('create', xml)
        pid = qemu_pid(NAME)
        g = Gdb(None)
        g.cmd('set confirm off')
        g.cmd('set pagination off')
        g.cmd('set non-stop on')
        g.cmd('handle SIGUSR1 SIGUSR2 SIGPIPE nostop noprint pass')
        g.cmd(f'attach {pid}')
        g.cmd('break migrate_set_state')
        g.cmd('continue -a &')
        mark = time.time()
        save = subprocess.Popen(['virsh', '-c', URI, 'save', NAME, save_file], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        m = g.wait_hit()
        main_id = m.group(1)
        g.cmd(f'thread {main_id}')
        g.cmd('p $esi')
        g.cmd('p $edx')
        g.cmd('continue &')
        m = g.wait_hit()
        mig_id = m.group(1)
        g.cmd(f'thread {mig_id}')
        g.cmd('p $esi')
        g.cmd('p $edx')
        addr = g.value('/x $rdi')
        if not race:
            for _ in range(3):
                out = jobinfo_async().communicate(timeout=30)[0]
                time.sleep(0.2)
            g.cmd('continue &')
            g.wait_hit()
            g.cmd(f'thread {mig_id}')
            g.cmd('p $esi')
            g.cmd('p $edx')
            for _ in range(3):
                out = jobinfo_async().communicate(timeout=30)[0]
                time.sleep(0.2)
            g.cmd('delete')
            g.cmd('continue &')
        else:
            g.cmd('break *qmp_query_migrate+123')
            for off in (187, 457, 636):
                g.cmd(f'break *qmp_query_migrate+{off}')
            job = jobinfo_async()
            g.wait_hit()
            cross_the_switch_read(g, main_id, mig_id, addr, 'eax')
            g.cmd('delete')
            g.cmd('continue &')
            out = job.communicate(timeout=30)[0]
            g.paste('# virsh domjobinfo, meanwhile:\n' + out.strip())
            # The migration thread meanwhile stopped at active -> completed: let it finish.
            g.cmd(f'thread {mig_id}')
            g.cmd('continue &')
        save_out = save.communicate(timeout=60)[0]
        g.cmd('detach')
        transcript = g.close()
        g = None
        time.sleep(0.5)
    finally:
        if g is not None:
            g.close()
        if save is not None and save.poll() is None:
            save.kill()
        subprocess.run(['virsh', '-c', URI, 'destroy', NAME], capture_output=True)
        stop_daemons()
    keep_job_lines(log, os.path.join(HERE, f'{tag}.libvirtd.log'), mark)
    shutil.copy(trace_log, os.path.join(HERE, f'{tag}.qemu-trace.log'))
    if race:
        with open(os.path.join(ROOT, 'samples', 'transcripts', f'{tag}.gdb.txt'), 'w') as f:
            f.write(trim_symbol_lines(transcript))
    shutil.rmtree(tmp, ignore_errors=True)
    print(tag, save_out.strip())


def trim_symbol_lines(text):
    """Attaching reads symbols of ~40 shared libraries: cut those lines to one elision, as people do."""
    out, cut = [], False
    for line in text.split('\n'):
        lib = re.match(r'^(?:Reading symbols from |\(No debugging symbols found in )(?:target:)?/(?:lib|usr/lib|.*/usr/lib/)', line)
        if lib:
            if not cut:
                out.append('[...]')
            cut = True
            continue
        cut = False
        out.append(line)
    return '\n'.join(out)


STAMP = re.compile(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\+0000: ')


def keep_job_lines(src, dst, since):
    """The save job's lines: from a little before `virsh save` on, the monitor traffic and the
    qemuMonitor* debug lines (continuation lines such as " len=48 ret=48 errno=0" stay with
    their record); the capability probing at daemon start is left out."""
    out = []
    keep = False
    with open(src, errors='replace') as f:
        for line in f:
            m = STAMP.match(line)
            if m:
                t = time.mktime(time.strptime(m.group(1)[:19], '%Y-%m-%d %H:%M:%S')) - time.timezone
                keep = t >= int(since) - 1 and len(line) < 4000 and ('QEMU_MONITOR' in line or ': debug : qemuMonitor' in line)
            if keep:
                out.append(line)
    with open(dst, 'w') as f:
        f.writelines(out)


def main():
    if os.geteuid() != 0:
        sys.exit('needs root (libvirtd, and gdb attaching to the QEMU libvirt started)')
    run('save-qemu72', QEMU72, race=False)
    if os.path.exists(QEMU52):
        wrapper_dir = tempfile.mkdtemp(prefix='migrace-q52-')
        os.chmod(wrapper_dir, 0o755)
        wrapper = os.path.join(wrapper_dir, 'qemu-system-x86_64')
        with open(wrapper, 'w') as f:
            f.write('#!/bin/sh\n# libvirt clears the environment: give QEMU 5.2 its libraries here.\n'
                    f'LD_LIBRARY_PATH={Q52_LIBS} exec {QEMU52} "$@"\n')
        os.chmod(wrapper, 0o755)
        try:
            run('save-qemu52-race', wrapper, race=True)
        finally:
            shutil.rmtree(wrapper_dir, ignore_errors=True)
    else:
        print('no QEMU 5.2 in samples/.cache: skipped the race sample', file=sys.stderr)


if __name__ == '__main__':
    try:
        main()
    finally:
        stop_daemons()
