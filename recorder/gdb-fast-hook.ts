/**
 * The Python half of the gdb-fast backend (recorder/gdb-fast.ts), loaded
 * into gdb with `source`. It places one gdb.Breakpoint per probe location
 * whose `stop()` reads the values in the stopped thread, writes one line
 * to migrace's socket and returns False, so gdb resumes the thread at
 * once: no stop is reported, no MI record is printed, and a hit costs what
 * a breakpoint with a false condition costs gdb.
 *
 * Why not dprintf or `commands` with printf: under MI, gdb prints every
 * hit as `=breakpoint-modified` (the hit count changed) plus the console
 * text, one write(2) per character or token (about 390 per hit, measured
 * with perf on gdb 13.1): over MI they cost more CPU than the MI backend's
 * round trips save. A stop() that returns False does not count a hit, so
 * gdb prints nothing.
 *
 * Parts: `_integer` (what a value may be), `_Probe` (one location),
 * `MigraceHook` (the socket, the lines, what each thread and pc is),
 * `migrace_start` (called by migrace with the socket and the probes file;
 * prints a JSON summary that gdb's console carries back). The lines are
 * parsed by recorder/gdb-fast-line.ts; keep the two in step.
 */
export const HOOK_PY = String.raw`# migrace gdb-fast hook (generated from recorder/gdb-fast-hook.ts)
import json
import socket
import time

import gdb

_INTEGERS = (gdb.TYPE_CODE_INT, gdb.TYPE_CODE_ENUM, gdb.TYPE_CODE_PTR,
             gdb.TYPE_CODE_BOOL, gdb.TYPE_CODE_CHAR)


def _integer(value):
    """The value as an integer; anything else is named in the error."""
    code = value.type.strip_typedefs().code
    if code not in _INTEGERS:
        raise gdb.error("it is a %s, not an integer, enum or pointer" % value.type)
    return int(value)


class _Probe(gdb.Breakpoint):
    def __init__(self, hook, index, location, values):
        super().__init__(location)
        self.hook = hook
        self.index = index
        self.values = values

    def stop(self):
        return self.hook.hit(self)


class MigraceHook:
    def __init__(self, sock_path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(sock_path)
        self.threads = set()
        self.places = set()

    def send(self, line):
        self.sock.sendall(line.encode("utf-8") + b"\n")

    def hit(self, probe):
        try:
            thread = gdb.selected_thread()
            gid = thread.global_num
            if gid not in self.threads:
                # Read at the first hit: a new thread has its parent's name until it names itself.
                self.threads.add(gid)
                self.send("thread %d %d %d %s" % (gid, thread.num, thread.ptid[1], json.dumps(thread.name)))
            frame = gdb.selected_frame()
            pc = frame.pc()
            if pc not in self.places:
                self.places.add(pc)
                sal = frame.find_sal()
                self.send("place 0x%x %s" % (pc, json.dumps({
                    "func": frame.name(),
                    "file": sal.symtab.filename if sal.symtab else None,
                    "line": sal.line or None,
                })))
            texts = []
            for name, expr in probe.values:
                try:
                    texts.append(str(_integer(gdb.parse_and_eval(expr))))
                except Exception as e:
                    # Reported once; the target runs on undisturbed while migrace ends the run.
                    probe.enabled = False
                    self.send("error %d %s %s" % (probe.index, name, json.dumps(str(e))))
                    return False
            self.send("hit %d %d 0x%x %d %s" % (probe.index, gid, pc, time.monotonic_ns(), " ".join(texts)))
        except Exception as e:
            probe.enabled = False
            self.send("error %d - %s" % (probe.index, json.dumps(str(e))))
        return False

    def mark(self, n):
        self.send("mark %d" % n)


def migrace_start(sock_path, probes_path):
    """Place every probe; print what was placed, or what could not be."""
    with open(probes_path) as f:
        probes = json.load(f)
    hook = MigraceHook(sock_path)
    placed = []
    for index, probe in enumerate(probes):
        numbers = []
        for location in probe["locations"]:
            try:
                bp = _Probe(hook, index, location, [(n, e) for n, e in probe["values"]])
            except Exception as e:
                gdb.write(json.dumps({"error": {"probe": index, "location": location, "message": str(e)}}) + "\n")
                return None
            if not bp.locations:
                # A Python breakpoint on an unknown place is made pending, not refused.
                bp.delete()
                gdb.write(json.dumps({"error": {"probe": index, "location": location, "message": "gdb finds no code there"}}) + "\n")
                return None
            numbers.append({"number": bp.number, "locations": len(bp.locations)})
        placed.append(numbers)
    gdb.write(json.dumps({"placed": placed}) + "\n")
    return hook
`;
