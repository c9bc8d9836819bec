#!/usr/bin/python3
"""Side-by-side benchmark: ember against dinit, s6, runit and busybox init, in one run.

Driven by bench/run.sh (which installs and builds the peers and ember); can also be run
directly as root:
    /usr/bin/python3 bench/measure.py --ember target/release/ember --dinit PATH \
        --busybox PATH [--quick] [--only ember,dinit]

Every supervisor is PID 1 of a fresh PID namespace,
    unshare --pid --fork --mount-proc --uts --kill-child <supervisor ...>
and every figure is taken from outside, the same way for every supervisor. ember runs
its DEFAULT configuration: only the control socket's path and the services are written,
so output goes to ember ("log"), services get their cgroups, and so on.

The services are bench/probe.c (compiled at run time): `probe up FILE I` records one
fixed-width line with its CLOCK_MONOTONIC start time in FILE and then waits for ever
(sleep infinity with a time stamp); other modes record SIGTERM, crash, or make zombies.
The benchmark reads those records (the clock of time.monotonic()), so a start-up time is
the latest start of a service process minus the launch, exactly, not a /proc poll.

Python standard library only. Every wait is bounded. See run.sh for the list of figures.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

RECORD_LEN = 30          # probe.c's record: "K IIIIII SSSSSSSSSS.NNNNNNNNN\n"
N_ZOMBIES = 10000
N_BOOT = 3000            # the boot during which SIGTERM and ctl status are sent
BOOT_SIGNAL_AT = 300     # ... once this many of its services have started
CLK_TCK = os.sysconf("SC_CLK_TCK")
FIGURES = ["scale", "idle", "respawn", "ready", "orphan", "sigterm", "ctl", "adapters"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# /proc helpers
# --------------------------------------------------------------------------------------

def read_bytes(path, limit=1 << 20):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        chunks = []
        while True:
            b = os.read(fd, 1 << 16)
            if not b:
                break
            chunks.append(b)
            if sum(map(len, chunks)) >= limit:
                break
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def stat_fields(pid):
    """(comm, fields after comm) of /proc/PID/stat; fields[0] is the state."""
    raw = read_bytes(f"/proc/{pid}/stat")
    if not raw:
        return None
    s = raw.decode(errors="replace")
    lp, rp = s.index("("), s.rindex(")")
    return s[lp + 1:rp], s[rp + 2:].split()


def state_of(pid):
    st = stat_fields(pid)
    return st[1][0] if st else None


def comm_of(pid):
    raw = read_bytes(f"/proc/{pid}/comm")
    return raw.decode(errors="replace").strip() if raw else None


def pidns(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def ns_local_pid(pid):
    raw = read_bytes(f"/proc/{pid}/status")
    if raw is None:
        return None
    for line in raw.decode().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    return None


def children_of(pid):
    """Every child of every thread of PID (a reparented orphan may be any thread's)."""
    kids = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        raw = read_bytes(f"/proc/{pid}/task/{tid}/children", limit=1 << 24)
        if raw:
            kids += [int(x) for x in raw.split()]
    return kids


def cpu_busy(window=0.3):
    """Fraction of all CPUs busy over `window` seconds, from /proc/stat."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]
    t0, i0 = sample()
    time.sleep(window)
    t1, i1 = sample()
    return 1 - (i1 - i0) / max(1, t1 - t0)


def smaps_rollup(pid):
    """The "Name: N kB" lines of /proc/PID/smaps_rollup as {name: KiB}."""
    raw = read_bytes(f"/proc/{pid}/smaps_rollup")
    out = {}
    if raw:
        for line in raw.decode().splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                out[parts[0][:-1]] = int(parts[1])
    return out


def heap_and_anon(pid):
    """(Pss of [heap], Pss of other anonymous mappings) in KiB, from /proc/PID/smaps."""
    raw = read_bytes(f"/proc/{pid}/smaps", limit=1 << 24)
    heap = anon = 0
    kind = None
    if not raw:
        return None
    for line in raw.decode(errors="replace").splitlines():
        parts = line.split()
        if not parts:
            continue
        if "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
            name = parts[5] if len(parts) >= 6 else ""
            kind = "heap" if name == "[heap]" else ("anon" if name == "" else None)
        elif parts[0] == "Pss:" and kind:
            if kind == "heap":
                heap += int(parts[1])
            else:
                anon += int(parts[1])
    return heap, anon


def ctxt_switches(pid):
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        raw = read_bytes(f"/proc/{pid}/task/{tid}/status")
        if raw is None:
            continue
        for line in raw.decode().splitlines():
            if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                total += int(line.split()[1])
    return total


def cpu_ns(pid):
    """CPU time of every thread of PID in ns (/proc/PID/task/TID/schedstat)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        raw = read_bytes(f"/proc/{pid}/task/{tid}/schedstat")
        if raw:
            total += int(raw.split()[0])
    return total


def cpu_ticks(pid):
    st = stat_fields(pid)
    if st is None:
        return None
    return int(st[1][11]) + int(st[1][12])


# --------------------------------------------------------------------------------------
# The probe's records
# --------------------------------------------------------------------------------------

class Records:
    """probe.c's fixed-width records in one file."""

    def __init__(self, path):
        self.path = path

    def count(self):
        try:
            return os.stat(self.path).st_size // RECORD_LEN
        except FileNotFoundError:
            return 0

    def read(self):
        """[(kind, index, time)]"""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        out = []
        for i in range(0, len(data) - RECORD_LEN + 1, RECORD_LEN):
            rec = data[i:i + RECORD_LEN].decode()
            out.append((rec[0], int(rec[2:8]), float(rec[9:29])))
        return out

    def times(self, kind):
        return [t for k, _, t in self.read() if k == kind]


# --------------------------------------------------------------------------------------
# Supervisors
# --------------------------------------------------------------------------------------

def write_file(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def run_script(argv):
    return "#!/bin/sh\nexec " + " ".join(argv) + "\n"


class Supervisor:
    name = "?"            # column and --only name
    label = "?"           # header
    comms = set()         # comm of the supervisor's own processes (their PSS is summed)
    stop_signal = signal.SIGTERM
    stop_grace = 10.0
    tuned = False         # not a default configuration: shown apart, clearly labelled

    def missing(self):
        """None when it can run here, else why not."""
        return None

    def prepare(self, d, services, respawn=False):
        """Write the configuration of `services` [(name, argv)] into d; return argv.
        respawn: the services crash on purpose; use the fastest restart setting."""
        raise NotImplementedError

    def ctl_status(self, inst):
        """argv of the supervisor's own status request, or None."""
        return None


class Ember(Supervisor):
    name = "ember"
    label = "ember"
    comms = {"ember"}
    stop_grace = 30.0
    extra = []            # service keys of a tuned variant

    def __init__(self, binary):
        self.binary = binary

    def missing(self):
        if self.binary and os.access(self.binary, os.X_OK):
            return None
        return f"no ember binary at {self.binary}"

    def prepare(self, d, services, respawn=False, tables=""):
        sock = os.path.join(d, "control.sock")
        conf = ["[control]", f'socket = "{sock}"', "", tables]
        for name, argv in services:
            conf += [f"[service.{name}]", "command = " + json.dumps(argv)]
            if respawn:
                conf += ['restart = "always"', 'restart_delay = "0ms"',
                         'restart_delay_max = "0ms"', "start_limit = 0"]
            conf += self.extra + [""]
        path = os.path.join(d, "ember.toml")
        write_file(path, "\n".join(conf))
        return [self.binary, "--config", path]

    def ctl_status(self, inst):
        return [self.binary, "ctl", "--socket", os.path.join(inst.dir, "control.sock"), "status"]


class EmberNull(Ember):
    name = "ember-null"
    label = "ember, TUNED: stdout/stderr = \"null\""
    extra = ['stdout = "null"', 'stderr = "null"']
    tuned = True


class EmberFiles(Ember):
    """Not ember's default, and not chosen to flatter: each service's output to a file
    that ember rotates (issue 15 section 3), to show what that setting costs. Only with
    --only ember-files."""
    name = "ember-files"
    label = "ember, OTHER SETTING: stdout/stderr to rotated files"
    tuned = True

    def prepare(self, d, services, respawn=False, tables=""):
        self.extra = [f'stdout = {{ file = "{d}/out.log", max_size = "1M", keep = 2 }}',
                      f'stderr = {{ file = "{d}/err.log", max_size = "1M", keep = 2 }}']
        return super().prepare(d, services, respawn, tables)


class Dinit(Supervisor):
    name = "dinit"
    label = "dinit"
    comms = {"dinit"}
    log_type = None

    def __init__(self, binary):
        self.binary = binary

    def missing(self):
        if self.binary and os.access(self.binary, os.X_OK):
            return None
        return f"no dinit binary at {self.binary} (bench/run.sh builds it from the shared tarball)"

    def prepare(self, d, services, respawn=False):
        sd = os.path.join(d, "dinit.d")
        os.mkdir(sd)
        for name, argv in services:
            lines = ["type = process", "command = " + " ".join(argv)]
            if self.log_type:
                lines.append(f"log-type = {self.log_type}")
            if respawn:
                lines += ["restart = true", "restart-delay = 0", "restart-limit-count = 0"]
            write_file(os.path.join(sd, name), "\n".join(lines) + "\n")
        write_file(os.path.join(sd, "boot"),
                   "type = internal\n" + "".join(f"waits-for = {n}\n" for n, _ in services))
        return [self.binary, "-o", "-q", "-d", sd, "-p", os.path.join(d, "dinit.sock")]

    def ctl_status(self, inst):
        ctl = os.path.join(os.path.dirname(self.binary), "dinitctl")
        return [ctl, "-p", os.path.join(inst.dir, "dinit.sock"), "list"]


class DinitBuffer(Dinit):
    name = "dinit-buffer"
    label = "dinit, log-type = buffer (output kept in memory, as ember's \"log\")"
    log_type = "buffer"
    tuned = True


class S6(Supervisor):
    name = "s6"
    label = "s6"
    comms = {"s6-svscan", "s6-supervise"}

    def missing(self):
        return None if shutil.which("s6-svscan") else "s6-svscan not installed (apt-get install s6)"

    def prepare(self, d, services, respawn=False):
        sv = os.path.join(d, "scan")
        os.mkdir(sv)
        for name, argv in services:
            os.mkdir(os.path.join(sv, name))
            write_file(os.path.join(sv, name, "run"), run_script(argv), 0o755)
        argv = [shutil.which("s6-svscan")]
        if len(services) > 500:           # s6-svscan caps itself at 500 services
            argv += ["-c", str(len(services) + 10)]
        return argv + [sv]


class Runit(Supervisor):
    name = "runit"
    label = "runit"
    comms = {"runsvdir", "runsv"}

    def missing(self):
        return None if shutil.which("runsvdir") else "runsvdir not installed (apt-get install runit)"

    def prepare(self, d, services, respawn=False):
        sv = os.path.join(d, "service")
        os.mkdir(sv)
        for name, argv in services:
            os.mkdir(os.path.join(sv, name))
            write_file(os.path.join(sv, name, "run"), run_script(argv), 0o755)
        return [shutil.which("runsvdir"), "-P", sv]


class Busybox(Supervisor):
    """busybox init reads /etc/inittab only: a private overlay of /etc in the namespace's
    own mount namespace gives it one (a /bin/sh wrapper mounts it, then execs init, so
    init is still PID 1). Its SIGTERM path sleeps (TERM, 1 s, KILL): it is stopped with
    SIGKILL, except in the SIGTERM figure."""
    name = "busybox"
    label = "busybox init"
    comms = {"busybox", "init"}
    stop_signal = signal.SIGKILL

    def __init__(self, binary):
        self.binary = binary

    def missing(self):
        if self.binary and os.access(self.binary, os.X_OK):
            return None
        return f"no busybox binary at {self.binary}"

    def prepare(self, d, services, respawn=False):
        etc = os.path.join(d, "etc")
        os.mkdir(etc)
        write_file(os.path.join(etc, "inittab"),
                   "".join(f"::respawn:{' '.join(argv)}\n" for _, argv in services))
        return ["/bin/sh", "-c",
                f"mount -t overlay overlay -o lowerdir={etc}:/etc /etc && exec {self.binary} init"]


class Supervisord(Supervisor):
    """Not in the default set (--only ...,supervisord): a Python supervisor, not an init."""
    name = "supervisord"
    label = "supervisord"
    comms = {"supervisord"}

    def missing(self):
        return None if shutil.which("supervisord") else "supervisord not installed"

    def prepare(self, d, services, respawn=False):
        conf = ["[supervisord]", "nodaemon=true", f"logfile={d}/supervisord.log",
                f"pidfile={d}/supervisord.pid", f"childlogdir={d}",
                f"minfds={max(1024, 8 * len(services) + 64)}", ""]
        for name, argv in services:
            conf += [f"[program:{name}]", "command=" + " ".join(argv), "autostart=true",
                     "autorestart=true", "startsecs=0", "startretries=1000000",
                     "stdout_logfile=NONE", "stderr_logfile=NONE", ""]
        path = os.path.join(d, "supervisord.conf")
        write_file(path, "\n".join(conf))
        return [shutil.which("supervisord"), "-n", "-c", path]


# --------------------------------------------------------------------------------------
# One supervisor in its own PID namespace
# --------------------------------------------------------------------------------------

class Instance:
    def __init__(self, bench, sup, services, tag, respawn=False, argv=None):
        self.bench, self.sup = bench, sup
        bench.seq += 1
        self.dir = os.path.join(bench.tmp, f"{bench.seq:03d}-{sup.name}-{tag}")
        os.mkdir(self.dir)
        self.records = Records(os.path.join(self.dir, "records"))
        services = [(n, [a.replace("@REC@", self.records.path) for a in argv_])
                    for n, argv_ in services]
        self.argv = argv or sup.prepare(self.dir, services, respawn=respawn)
        # runsvdir skips a service directory modified in the current second (and looks
        # again ~1 s later): at boot the directories are old, so make them so for all.
        old = time.time() - 60
        for root, dirs, files in os.walk(self.dir):
            for x in dirs + files:
                os.utime(os.path.join(root, x), (old, old), follow_symlinks=False)
        self.proc = self.init = self.ns = self.t0 = None
        self.prefix = []        # a tracer around unshare (bench/profile.py)
        self.logf = None
        self.exit_code = None
        self.killed = False
        self.exited_early = False

    def start(self):
        self.logf = open(os.path.join(self.dir, "supervisor.log"), "wb")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.prefix + ["unshare", "--pid", "--fork", "--mount-proc", "--uts", "--kill-child"]
            + self.argv,
            stdin=subprocess.DEVNULL, stdout=self.logf, stderr=subprocess.STDOUT, cwd=self.dir)
        self.bench.register(self.proc.pid)
        deadline = time.monotonic() + 30
        own_ns = pidns(self.proc.pid)
        while time.monotonic() < deadline:
            # The first descendant in another PID namespace (unshare's child; below a
            # tracer given as a prefix, one level further down).
            todo, seen = [self.proc.pid], 0
            while todo and seen < 8:
                pid = todo.pop(0)
                seen += 1
                for kid in children_of(pid) or []:
                    ns = pidns(kid)
                    if ns is not None and ns != own_ns:
                        self.init, self.ns = kid, ns
                        return
                    todo.append(kid)
            if self.proc.poll() is not None:
                raise RuntimeError(f"unshare exited {self.proc.returncode} at start: {self.log_tail()}")
            time.sleep(0.0005)
        raise RuntimeError("the namespace's init did not appear within 30 s")

    def members(self):
        return [p for p in pids() if pidns(p) == self.ns]

    def sup_pids(self):
        return [p for p in self.members() if comm_of(p) in self.sup.comms]

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_records(self, n, kind=None, timeout=120.0, stall=20.0, interval=0.002):
        """Wait until the record file holds n records (of `kind`, when given: read then);
        returns True, or False on timeout / no progress for `stall` s / an early exit."""
        deadline = time.monotonic() + timeout
        best, progress = -1, time.monotonic()
        while True:
            c = self.records.count() if kind is None else len(self.records.times(kind))
            if c >= n:
                return True
            now = time.monotonic()
            if c > best:
                best, progress = c, now
            if now > deadline or now - progress > stall:
                return False
            if not self.alive():
                raise RuntimeError(f"exited early ({self.proc.returncode}): {self.log_tail()}")
            time.sleep(interval)

    def log_tail(self, n=400):
        try:
            with open(os.path.join(self.dir, "supervisor.log"), "rb") as f:
                return f.read()[-n:].decode(errors="replace").strip()
        except OSError:
            return ""

    def stop(self, sig=None, grace=None):
        sig = sig or self.sup.stop_signal
        grace = self.sup.stop_grace if grace is None else grace
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            self.exited_early = True
        else:
            try:
                os.kill(self.init, sig)
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.killed = True
                try:
                    os.kill(self.init, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            except ProcessLookupError:
                self.proc.wait(timeout=10)
        self.exit_code = self.proc.returncode
        self.bench.unregister(self.proc.pid)
        if self.logf:
            self.logf.close()
            self.logf = None
        if isinstance(self.sup, Ember) and sig == signal.SIGTERM:
            # ember as PID 1 of a namespace takes SIGTERM as "reboot": it stops every
            # service and calls reboot(2), which ends the namespace's init (SIGHUP).
            if self.killed:
                self.bench.note(f"{self.sup.name} did not exit within {grace:.0f} s of SIGTERM "
                                f"({self.dir}); SIGKILLed")
            elif self.exited_early:
                self.bench.note(f"{self.sup.name} had exited before it was stopped "
                                f"({self.exit_code}): {self.log_tail(300)!r}")
            elif self.exit_code not in (0, -signal.SIGHUP, -signal.SIGINT):
                self.bench.note(f"{self.sup.name} exited {self.exit_code} after SIGTERM "
                                f"({self.dir}): {self.log_tail(300)!r}")
        return self.exit_code


def probe_services(probe, n, mode="up"):
    return [(f"s{i}", [probe, mode, "@REC@", str(i)]) for i in range(n)]


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# --------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args, sups):
        self.args = args
        self.quick = args.quick
        self.tmp = args.tmp
        self.sups = sups
        self.probe = None
        self.seq = 0
        self.live = set()
        self.notes = []
        self.res = {}           # (metric, supervisor name) -> value
        self.runs = {}          # (metric, supervisor name) -> [values]
        self.busy = []          # CPU busy fraction before each timed run
        self.reps = 1 if self.quick else 3
        self.settle = 1.0 if self.quick else 2.0
        self.idle_secs = 10.0 if self.quick else 30.0
        self.respawn_secs = 3.0 if self.quick else 5.0
        self.failed = []        # figures that could not be measured

    # -- bookkeeping: run.sh's trap (lib.sh's cleanup_run) kills what a crash left
    def register(self, pid):
        self.live.add(pid)
        self._write_pids()

    def unregister(self, pid):
        self.live.discard(pid)
        self._write_pids()

    def _write_pids(self):
        with open(os.path.join(self.tmp, "pids"), "w") as f:
            f.write("".join(f"{p} unshare\n" for p in sorted(self.live)))

    def note(self, msg):
        log("  NOTE: " + msg)
        self.notes.append(msg)

    def fail(self, what, sup, why):
        msg = f"NOT MEASURED: {what} for {sup.name}: {why}"
        log("  " + msg)
        self.failed.append(msg)

    def add(self, metric, sup, value):
        self.runs.setdefault((metric, sup.name), []).append(value)

    def wait_quiet(self, limit=0.25, timeout=1.0):
        """Wait (a little) for the machine to be quiet; record how busy it was."""
        deadline = time.monotonic() + timeout
        while True:
            busy = cpu_busy(0.2)
            if busy <= limit or time.monotonic() > deadline:
                self.busy.append(busy)
                return
            time.sleep(0.2)

    def guard(self, what, sup, fn, *args):
        try:
            return fn(sup, *args)
        except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as e:
            self.fail(what, sup, str(e)[:500])
            return None

    def build_probe(self):
        src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe.c")
        out = os.path.join(self.tmp, "probe")
        cc = shutil.which("cc") or shutil.which("gcc")
        if not cc:
            raise SystemExit("measure.py: need a C compiler (cc) for bench/probe.c")
        subprocess.run([cc, "-O2", "-o", out, src], check=True, timeout=120)
        self.probe = out

    # -- scale: n services up; the time to all started, then the supervisor's PSS
    def scale_once(self, sup, n, rep):
        self.wait_quiet()
        inst = Instance(self, sup, probe_services(self.probe, n), f"up{n}-{rep}")
        try:
            inst.start()
            if not inst.wait_records(n, timeout=180):
                raise RuntimeError(f"only {inst.records.count()}/{n} services started "
                                   f"(gave up after {time.monotonic() - inst.t0:.0f} s)")
            starts = inst.records.times("u")
            if len({i for k, i, _ in inst.records.read() if k == "u"}) != n:
                self.note(f"{sup.name}, {n} services: some service started twice")
            up_ms = (max(starts) - inst.t0) * 1000
            time.sleep(self.settle)
            sp = inst.sup_pids()
            if not sp:
                raise RuntimeError(f"no process named {sorted(sup.comms)} in the namespace")
            rolls = [smaps_rollup(p) for p in sp]
            pss = sum(r.get("Pss", 0) for r in rolls)
            self.add(f"up{n}", sup, up_ms)
            self.add(f"pss{n}", sup, pss / 1024)
            self.add(f"anon{n}", sup, sum(r.get("Pss_Anon", 0) for r in rolls) / 1024)
            self.add(f"procs{n}", sup, len(sp))
            if isinstance(sup, Ember):
                ha = heap_and_anon(sp[0])
                if ha:
                    self.add(f"heap{n}", sup, ha[0])
                    self.add(f"otheranon{n}", sup, ha[1])
                try:
                    self.add(f"threads{n}", sup, len(os.listdir(f"/proc/{sp[0]}/task")))
                except OSError:
                    pass
                if rep == 0:
                    self.ember_sanity(inst, n)
            running = len([p for p in inst.members() if comm_of(p) == "probe"])
            if running != n:
                self.note(f"{sup.name}, {n} services: {running} probe processes running "
                          f"after the settle time (expected {n})")
            log(f"  {sup.name:>12} {n:>5} up in {up_ms:8.1f} ms, PSS {pss / 1024:7.2f} MiB "
                f"in {len(sp)} process(es)")
        finally:
            inst.stop()

    def ember_sanity(self, inst, n):
        """ember's own view against /proc: n services active, each with a running pid."""
        try:
            out = subprocess.run(inst.sup.ctl_status(inst) + ["--json"], capture_output=True,
                                 text=True, timeout=20)
        except subprocess.TimeoutExpired:
            self.note(f"{inst.sup.name}: ctl status --json timed out")
            return
        try:
            status = json.loads(out.stdout)
        except ValueError:
            self.note(f"{inst.sup.name}: ctl status --json exited {out.returncode}: "
                      f"{out.stderr.strip()[:200]}")
            return
        if isinstance(status, dict):
            status = status.get("services", status)
        if not isinstance(status, list):
            self.note(f"{inst.sup.name}: ctl status --json is not a list of services")
            return
        active = [s for s in status if isinstance(s, dict) and s.get("state") == "active"]
        if len(active) != n:
            self.note(f"{inst.sup.name}: ctl status with {n} services: {len(active)} active")
        probes = {ns_local_pid(p) for p in inst.members() if comm_of(p) == "probe"}
        bad = [s.get("name") for s in active if s.get("pid") not in probes]
        if bad:
            self.note(f"{inst.sup.name}: ctl status: {len(bad)} active services report a pid "
                      f"that is not a running service process, e.g. {bad[:3]}")

    # -- idle: 10 services each, every supervisor at once (idle is idle), one window
    def idle_all(self, sups):
        n = 10
        insts = []
        try:
            for sup in sups:
                inst = Instance(self, sup, probe_services(self.probe, n), "idle")
                try:
                    inst.start()
                    if not inst.wait_records(n, timeout=60):
                        raise RuntimeError(f"only {inst.records.count()}/{n} services started")
                    insts.append(inst)
                except (RuntimeError, OSError) as e:
                    self.fail("idle wakeups", sup, str(e))
                    inst.stop()
            time.sleep(max(2.0, self.settle))
            before = {}
            for inst in insts:
                sp = inst.sup_pids()
                before[inst] = {p: (ctxt_switches(p), cpu_ticks(p)) for p in sp}
            t0 = time.monotonic()
            time.sleep(self.idle_secs)
            dt = time.monotonic() - t0
            for inst in insts:
                b = before[inst]
                after = {p: (ctxt_switches(p), cpu_ticks(p)) for p in inst.sup_pids()}
                common = [p for p in b if p in after and None not in b[p] + after[p]]
                if len(common) != len(b) or len(after) != len(b):
                    self.note(f"{inst.sup.name}: supervisor processes changed while idle "
                              f"({len(b)} -> {len(after)})")
                cs = sum(after[p][0] - b[p][0] for p in common)
                tk = sum(after[p][1] - b[p][1] for p in common)
                self.add("wake", inst.sup, cs / dt)
                self.add("ticks", inst.sup, tk / dt)
                log(f"  {inst.sup.name:>12}: {cs} context switches, {tk} CPU ticks in {dt:.1f} s")
        finally:
            for inst in insts:
                inst.stop()

    # -- respawn: one crashing service at its fastest restart setting
    def respawn(self, sup):
        self.wait_quiet()
        inst = Instance(self, sup, [("crash", [self.probe, "crash", "@REC@", "0"])],
                        "respawn", respawn=True)
        try:
            inst.start()
            if not inst.wait_records(1, timeout=15):
                raise RuntimeError("the crashing service never started")
            t0 = time.monotonic()
            time.sleep(self.respawn_secs)
            sp = inst.sup_pids()
            cpu = sum(cpu_ticks(p) or 0 for p in sp)
        finally:
            inst.stop()
        ts = [t for t in inst.records.times("c") if t <= t0 + self.respawn_secs]
        iv = [(b - a) * 1000 for a, b in zip(ts, ts[1:])]
        if not iv:
            raise RuntimeError(f"started only {len(ts)} time(s)")
        self.add("respawn", sup, median(iv))
        self.add("respawn_n", sup, len(ts))
        log(f"  {sup.name:>12}: {len(ts)} starts, median interval {median(iv):.2f} ms "
            f"(min {min(iv):.2f}, max {max(iv):.2f})")

    # -- zombies: 10,000 at once, or one by one as orphans
    def zombies_once(self, sup, mode, rep):
        self.wait_quiet()
        inst = Instance(self, sup, [("zombies", [self.probe, mode, "@REC@", str(N_ZOMBIES)])],
                        f"{mode}-{rep}")
        try:
            inst.start()
            # The maker records 'u', waits 300 ms, then begins: PID 1's children now are
            # the supervisor's own (and the service's), and none is a zombie.
            if not inst.wait_records(1, timeout=60):
                raise RuntimeError("the zombie maker never started")
            base = set(children_of(inst.init) or [])
            cpu0 = cpu_ns(inst.init)
            t_clear = self.wait_no_zombies(inst, base, "z" if mode == "ready" else "r",
                                           timeout=120)
            cpu1 = cpu_ns(inst.init)
            recs = inst.records.read()
        finally:
            inst.stop()
        marks = {k: t for k, _, t in recs}
        start = marks.get("z" if mode == "ready" else "r")
        if start is None:
            raise RuntimeError("the zombie maker did not finish")
        ms = (t_clear - start) * 1000
        self.add(f"reap_{mode}", sup, ms)
        if cpu0 is not None and cpu1 is not None:
            self.add(f"reap_{mode}_cpu", sup, (cpu1 - cpu0) / 1e6)
        log(f"  {sup.name:>12}: {N_ZOMBIES} zombies ({mode}): none left {ms:.1f} ms after "
            + ("they were orphaned" if mode == "ready" else "the orphans were told to exit")
            + (f"; PID 1 CPU {(cpu1 - cpu0) / 1e6:.1f} ms" if cpu0 is not None and cpu1 is not None else ""))

    def wait_no_zombies(self, inst, base, done_kind, timeout):
        """Poll until the maker recorded `done_kind` and no child of PID 1 beyond `base` is
        a zombie or a live orphan (a probe), then check the whole namespace once (no
        zombie, the maker the only probe); returns the time of the first clean poll."""
        deadline = time.monotonic() + timeout
        done_seen = False
        while time.monotonic() < deadline:
            if not done_seen:
                done_seen = any(k == done_kind for k, _, _ in inst.records.read())
                if not done_seen:
                    time.sleep(0.001)
                    continue
            now = time.monotonic()
            kids = children_of(inst.init)
            if kids is None:
                raise RuntimeError("the namespace's init is gone")
            extra = [p for p in kids if p not in base]
            if len(extra) <= 64 and not any(state_of(p) == "Z" or comm_of(p) == "probe"
                                            for p in extra):
                members = inst.members()
                if not any(state_of(p) == "Z" for p in members) and \
                        sum(1 for p in members if comm_of(p) == "probe") <= 1:
                    return now
            time.sleep(0.001)
        raise RuntimeError(f"zombies left after {timeout:.0f} s")

    # -- the boot of 3,000 services: SIGTERM latency, ctl status latency
    def boot_sigterm(self, sup, rep):
        self.wait_quiet()
        inst = Instance(self, sup, probe_services(self.probe, N_BOOT, "term"), f"term-{rep}")
        t_sig = None
        try:
            inst.start()
            if not inst.wait_records(BOOT_SIGNAL_AT, timeout=120):
                raise RuntimeError(f"only {inst.records.count()} services started")
            up_at_sig = inst.records.count()
            t_sig = time.monotonic()
            os.kill(inst.init, signal.SIGTERM)
            first = None
            deadline = t_sig + 60
            while time.monotonic() < deadline:
                if inst.proc.poll() is not None:       # the init exited: the kernel kills all
                    first = time.monotonic()
                    how = "its init exited"
                    break
                ts = inst.records.times("t")
                if ts:
                    first = min(ts)
                    how = "first service got SIGTERM"
                    break
                time.sleep(0.001)
            try:
                inst.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
            t_end = time.monotonic()
        finally:
            inst.stop(sig=signal.SIGKILL)
        recs = inst.records.read()
        started = len([1 for k, _, _ in recs if k == "u"])
        after = len([1 for k, _, t in recs if k == "u" and t > t_sig])
        if first is None:
            raise RuntimeError("nothing stopped within 60 s of SIGTERM")
        ms = (first - t_sig) * 1000
        self.add("sigterm", sup, ms)
        self.add("sigterm_end", sup, (t_end - t_sig) * 1000)
        self.add("sigterm_after", sup, after)
        log(f"  {sup.name:>12}: SIGTERM with {up_at_sig}/{N_BOOT} up: {how} after {ms:.1f} ms; "
            f"{after} more services started after the signal; namespace gone after "
            f"{(t_end - t_sig) * 1000:.0f} ms")

    def boot_ctl(self, sup, rep):
        self.wait_quiet()
        inst = Instance(self, sup, probe_services(self.probe, N_BOOT), f"ctl-{rep}")
        try:
            inst.start()
            if not inst.wait_records(BOOT_SIGNAL_AT, timeout=120):
                raise RuntimeError(f"only {inst.records.count()} services started")
            before = inst.records.count()
            argv = sup.ctl_status(inst)
            t = time.monotonic()
            out = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 timeout=60)
            during = (time.monotonic() - t) * 1000
            after = inst.records.count()
            if out.returncode not in (0, 1):
                raise RuntimeError(f"{' '.join(argv)} exited {out.returncode}: "
                                   f"{out.stderr.decode(errors='replace')[:200]}")
            if not inst.wait_records(N_BOOT, timeout=300, stall=60):
                raise RuntimeError(f"only {inst.records.count()}/{N_BOOT} services started")
            up_all = (max(inst.records.times("u")) - inst.t0) * 1000
            time.sleep(self.settle)
            t = time.monotonic()
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
            settled = (time.monotonic() - t) * 1000
        finally:
            inst.stop()
        self.add("ctl", sup, during)
        self.add("ctl_settled", sup, settled)
        self.add("up3000", sup, up_all)
        log(f"  {sup.name:>12}: status during the boot ({before} -> {after} of {N_BOOT} started "
            f"meanwhile) {during:.1f} ms; once all were up {settled:.1f} ms")

    # -- adapters: their PSS, as separate processes or inside ember
    def adapters(self, ember):
        mosq, bus = shutil.which("mosquitto") or "/usr/sbin/mosquitto", shutil.which("dbus-daemon")
        if not (os.access(mosq, os.X_OK) and bus):
            self.fail("adapter PSS", ember, "mosquitto or dbus-daemon missing")
            return
        res = {}
        for with_tables in (False, True):
            import socket
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
            inst = Instance(self, ember, [], "adapters" if with_tables else "adapters-base",
                            argv=["true"])
            d = inst.dir
            write_file(f"{d}/mosquitto.conf", f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                       "persistence false\nlog_dest none\n")
            policy = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "config",
                                  "dbus-1", "io.ember.Init1.conf")
            write_file(f"{d}/bus.conf", f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={d}/bus.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/></policy>
  <include ignore_missing="yes">{os.path.abspath(policy)}</include>
</busconfig>
""")
            services = probe_services(self.probe, 10)
            services = [(n, [a.replace("@REC@", inst.records.path) for a in argv])
                        for n, argv in services]
            services += [("broker", [mosq, "-c", f"{d}/mosquitto.conf"]),
                         ("bus", [bus, f"--config-file={d}/bus.conf", "--nofork", "--nopidfile",
                                  "--nosyslog"])]
            tables = ""
            if with_tables:
                tables = (f'[mqtt]\nurl = "mqtt://127.0.0.1:{port}"\nallow = ["*"]\n\n'
                          f'[dbus]\nbus = "unix:path={d}/bus.sock"\n\n')
            inst.argv = ember.prepare(d, services, tables=tables)
            try:
                inst.start()
                if not inst.wait_records(10, timeout=60):
                    raise RuntimeError("the 10 services did not start")
                time.sleep(3.0)
                members = inst.members()
                core = [p for p in members if comm_of(p) == "ember"]
                adapters = {p: comm_of(p) for p in members
                            if (comm_of(p) or "").startswith("ember-")}
                res[with_tables] = (sum(smaps_rollup(p).get("Pss", 0) for p in core),
                                    {c: smaps_rollup(p).get("Pss", 0) for p, c in adapters.items()})
            except (RuntimeError, OSError) as e:
                self.fail("adapter PSS", ember, str(e))
                return
            finally:
                inst.stop()
        base, (core, procs) = res[False][0], res[True]
        self.adapter_line = (base, core, procs)
        log(f"  ember with [mqtt]+[dbus]: core {core / 1024:.2f} MiB (without: {base / 1024:.2f}); "
            + ", ".join(f"{c} {k / 1024:.2f} MiB" for c, k in procs.items()))

    # -- busybox's wrapper: what mounting its inittab costs before init runs
    def wrapper_cost(self, bb):
        """Launch → a probe's start record, 5 times each way: the probe as the namespace's
        PID 1 itself, and behind busybox's wrapper (/bin/sh mounting the /etc overlay)."""
        etc = os.path.join(self.tmp, "wrapper-etc")
        os.makedirs(etc, exist_ok=True)
        write_file(os.path.join(etc, "inittab"), "")
        times = {"direct": [], "wrapped": []}
        for i in range(5):
            for how in times:
                rec = Records(os.path.join(self.tmp, f"wrapper-{how}-{i}"))
                cmd = f"{self.probe} up {rec.path} 0"
                argv = cmd.split() if how == "direct" else \
                    ["/bin/sh", "-c", f"mount -t overlay overlay -o lowerdir={etc}:/etc /etc && exec {cmd}"]
                t0 = time.monotonic()
                p = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"] + argv,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
                self.register(p.pid)
                try:
                    deadline = time.monotonic() + 10
                    while rec.count() < 1 and time.monotonic() < deadline:
                        time.sleep(0.0005)
                    if rec.count():
                        times[how].append((rec.times("u")[0] - t0) * 1000)
                finally:
                    p.kill()
                    p.wait(timeout=10)
                    self.unregister(p.pid)
        if times["direct"] and times["wrapped"]:
            self.res[("wrapper", bb.name)] = median(times["wrapped"]) - median(times["direct"])
            log(f"  busybox's wrapper (sh + mount of the /etc overlay) adds "
                f"{self.res[('wrapper', bb.name)]:.1f} ms to its launch")

    # -- the whole run
    def run(self):
        self.build_probe()
        self.busy0 = cpu_busy(1.0)
        sups = self.sups
        main = [s for s in sups if not s.tuned]
        want = self.args.figures
        if "scale" in want:
            log(f"== scale: 1, 100 and 1,000 services; start-up time and PSS; "
                f"{self.reps} round(s), interleaved")
            for rep in range(self.reps):
                for n in (1, 100, 1000):
                    for s in sups:
                        self.guard(f"{n} services up / PSS", s, self.scale_once, n, rep)
        bbs = [s for s in main if isinstance(s, Busybox)]
        if "scale" in want and bbs:
            self.wrapper_cost(bbs[0])
        if "idle" in want:
            log(f"== idle: 10 services each, every supervisor at once, {self.idle_secs:.0f} s")
            self.idle_all(main)
        if "respawn" in want:
            log(f"== respawn interval, restart delay 0, {self.respawn_secs:.0f} s each")
            for s in main:
                self.guard("respawn", s, self.respawn)
        for mode in ("ready", "orphan"):
            if mode in want:
                log(f"== {N_ZOMBIES:,} zombies, {mode}: {self.reps} round(s), interleaved")
                for rep in range(self.reps):
                    for s in main:
                        self.guard(f"reap ({mode})", s, self.zombies_once, mode, rep)
        if "sigterm" in want:
            log(f"== a boot of {N_BOOT:,} services: SIGTERM once {BOOT_SIGNAL_AT} have started")
            for rep in range(self.reps):
                for s in main:
                    self.guard("SIGTERM during boot", s, self.boot_sigterm, rep)
        if "ctl" in want:
            log(f"== a boot of {N_BOOT:,} services: the supervisor's status request once "
                f"{BOOT_SIGNAL_AT} have started")
            for rep in range(self.reps):
                for s in main:
                    if type(s).ctl_status is not Supervisor.ctl_status:
                        self.guard("status during boot", s, self.boot_ctl, rep)
        embers = [s for s in main if isinstance(s, Ember)]
        if "adapters" in want and embers:
            log("== adapters: 10 services with [mqtt] and [dbus] (broker and bus as services)")
            self.adapters(embers[0])
        for (metric, name), xs in self.runs.items():
            self.res[(metric, name)] = median(xs)

    # -- report
    def report(self):
        R = self.res
        main = [s for s in self.sups if not s.tuned]
        tuned = [s for s in self.sups if s.tuned]
        peers = [s for s in main if s.name != "ember"]
        has_ember = any(s.name == "ember" for s in main)

        for s in self.sups:
            p100, p1000 = R.get(("pss100", s.name)), R.get(("pss1000", s.name))
            if p100 is not None and p1000 is not None:
                R[("slope", s.name)] = (p1000 - p100) * 1024 / 900
        reps = f"median of {self.reps}" if self.reps > 1 else "1 run (quick)"
        rows = [
            ("PSS, 1 service (MiB)", "pss1", "{:.2f}", "scale"),
            ("PSS, 100 services (MiB)", "pss100", "{:.2f}", "scale"),
            ("PSS, 1,000 services (MiB)", "pss1000", "{:.2f}", "scale"),
            ("per service, 100 → 1,000 (KiB)", "slope", "{:.1f}", "scale"),
            (f"100 services up (ms, {reps})", "up100", "{:.1f}", "scale"),
            (f"1,000 services up (ms, {reps})", "up1000", "{:.0f}", "scale"),
            ("respawn interval, restart delay 0 (ms, median)", "respawn", "{:.2f}", "respawn"),
            (f"reap 10,000 zombies ready at once (ms, {reps})", "reap_ready", "{:.1f}", "ready"),
            (f"reap 10,000 zombies as they orphan (ms, {reps})", "reap_orphan", "{:.1f}", "orphan"),
            (f"idle wakeups, 10 services (per s, {self.idle_secs:.0f} s)", "wake", "{:.2f}", "idle"),
            (f"SIGTERM during a boot of 3,000 → stopping (ms, {reps})", "sigterm", "{:.1f}", "sigterm"),
            (f"status request during a boot of 3,000 (ms, {reps})", "ctl", "{:.1f}", "ctl"),
        ]
        rows = [r[:3] for r in rows if r[3] in self.args.figures]

        def ratio(e, v):
            if e is None or v is None:
                return None
            if v == 0:
                return "=" if e == 0 else "∞"
            r = e / v
            if r < 0.1:
                return f"{r:.3f}×"
            return f"{r:.2f}×" if r < 100 else f"{r:,.0f}×"

        def cell(metric, s, fmt):
            v = R.get((metric, s.name))
            if v is None:
                if metric in ("ctl",) and type(s).ctl_status is Supervisor.ctl_status:
                    return "—"
                return "**not measured**"
            txt = fmt.format(v)
            if s.name != "ember" and has_ember:
                r = ratio(R.get((metric, "ember")), v)
                if r:
                    txt += f" ({r})"
            return txt

        def best(metric):
            e = R.get((metric, "ember"))
            vals = [(R.get((metric, p.name)), p.name) for p in peers
                    if R.get((metric, p.name)) is not None]
            if e is None or not vals:
                return "n/a"
            v, who = min(vals)
            return f"**{ratio(e, v)}** {who}"

        out = ["", "| figure | " + " | ".join(s.label for s in main) + " | ember / best peer |",
               "|---|" + "---:|" * len(main) + "---|"]
        for label, m, fmt in rows:
            out.append(f"| {label} | " + " | ".join(cell(m, s, fmt) for s in main) + f" | {best(m)} |")
        out.append("")
        out.append("Cells of peers show the ratio ember / that peer in parentheses (below 1× ember is "
                   "smaller or faster); every figure is lower-is-better. ember runs its default "
                   "configuration (stdout/stderr = \"log\", cgroups); each peer runs its own default "
                   "(dinit's default log-type is none: output discarded).")
        if hasattr(self, "adapter_line"):
            base, core, procs = self.adapter_line
            parts = [f"{c} {k / 1024:.2f} MiB (separate process)" for c, k in sorted(procs.items())]
            missing = [a for a in ("ember-mqtt", "ember-dbus") if a not in procs]
            parts += [f"{a}: no such process (inside ember)" for a in missing]
            out.append("")
            out.append(f"Adapters (PSS, ember with 10 services + broker + bus, [mqtt] and [dbus] on): "
                       + "; ".join(parts) + f"; ember itself {core / 1024:.2f} MiB against "
                       f"{base / 1024:.2f} MiB with the same services and no adapter tables "
                       f"({(core - base) / 1024:+.2f} MiB).")
        if tuned:
            out.append("")
            out.append("Not default configurations, for context (same runs, interleaved):")
            out.append("")
            out.append("| figure | " + " | ".join(s.label for s in tuned) + " |")
            out.append("|---|" + "---:|" * len(tuned))
            for label, m, fmt in [r for r in rows if r[1] in ("pss1", "pss100", "pss1000", "slope", "up100", "up1000")]:
                out.append(f"| {label} | " + " | ".join(
                    fmt.format(R[(m, s.name)]) if R.get((m, s.name)) is not None else "**not measured**"
                    for s in tuned) + " |")
        out.append("")
        out.append("Details:")
        for s in self.sups:
            bits = []
            for n in (1, 100, 1000):
                if (f"procs{n}", s.name) in R:
                    bits.append(f"{n}: {R[(f'procs{n}', s.name)]:.0f} process(es), PSS anon "
                                f"{R[(f'anon{n}', s.name)]:.2f} MiB"
                                + (f", [heap] {R[(f'heap{n}', s.name)] / 1024:.2f} MiB, other anon "
                                   f"{R[(f'otheranon{n}', s.name)] / 1024:.2f} MiB, "
                                   f"{R[(f'threads{n}', s.name)]:.0f} thread(s)"
                                   if (f"heap{n}", s.name) in R else ""))
            for n in (100, 1000):
                xs = self.runs.get((f"up{n}", s.name))
                if xs:
                    bits.append(f"{n} up: " + "/".join(f"{x:.0f}" for x in xs) + " ms")
            if ("respawn_n", s.name) in R:
                bits.append(f"{R[('respawn_n', s.name)]:.0f} starts in {self.respawn_secs:.0f} s")
            for mode in ("ready", "orphan"):
                if (f"reap_{mode}_cpu", s.name) in R:
                    bits.append(f"PID 1 CPU reaping ({mode}) {R[(f'reap_{mode}_cpu', s.name)]:.1f} ms")
            if ("ticks", s.name) in R:
                bits.append(f"idle CPU {R[('ticks', s.name)]:.3f} ticks/s")
            if ("sigterm_end", s.name) in R:
                bits.append(f"after SIGTERM: {R[('sigterm_after', s.name)]:.0f} more services "
                            f"started, namespace gone in {R[('sigterm_end', s.name)]:.0f} ms")
            if ("wrapper", s.name) in R:
                bits.append(f"its start-up times include {R[('wrapper', s.name)]:.1f} ms of the /bin/sh "
                            f"wrapper that mounts the /etc overlay with its inittab")
            if ("ctl_settled", s.name) in R:
                bits.append(f"status once all 3,000 are up: {R[('ctl_settled', s.name)]:.1f} ms")
            if ("up3000", s.name) in R:
                bits.append(f"3,000 services up in {R[('up3000', s.name)]:.0f} ms (with the status "
                            "request at 300)")
            out.append(f"- {s.name}: " + ("; ".join(bits) or "no figures"))
        out.append(f"- machine: {os.cpu_count()} CPUs, {self.busy0 * 100:.0f}% busy with other work "
                   f"before the run; before timed runs median {median(self.busy) * 100 if self.busy else 0:.0f}%, "
                   f"max {max(self.busy) * 100 if self.busy else 0:.0f}% busy")
        if self.notes:
            out.append("")
            out.append("Notes:")
            out += [f"- {n}" for n in self.notes]
        if self.failed:
            out.append("")
            out.append("**INCOMPLETE: figures that could not be measured**")
            out += [f"- **{f}**" for f in self.failed]
        print("\n".join(out), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ember", required=True)
    ap.add_argument("--dinit", default=None)
    ap.add_argument("--busybox", default=None)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1")
    ap.add_argument("--only", default=None,
                    help="comma-separated: ember,dinit,s6,runit,busybox,ember-null,dinit-buffer,supervisord")
    ap.add_argument("--figures", default=",".join(FIGURES),
                    help="comma-separated subset of: " + ",".join(FIGURES))
    ap.add_argument("--no-tuned", action="store_true",
                    help="leave out the non-default variants (ember-null, dinit-buffer)")
    args = ap.parse_args()
    args.figures = args.figures.split(",")
    if set(args.figures) - set(FIGURES):
        sys.exit(f"measure.py: unknown figure(s): {', '.join(set(args.figures) - set(FIGURES))}")
    if os.geteuid() != 0:
        sys.exit("measure.py: must run as root (unshare --pid)")

    everything = [Ember(args.ember), Dinit(args.dinit), S6(), Runit(), Busybox(args.busybox),
                  EmberNull(args.ember), DinitBuffer(args.dinit), Supervisord(),
                  EmberFiles(args.ember)]
    if args.only:
        keep = args.only.split(",")
        unknown = set(keep) - {s.name for s in everything}
        if unknown:
            sys.exit(f"measure.py: unknown supervisor(s): {', '.join(sorted(unknown))}")
        sups = [s for s in everything if s.name in keep]
    else:
        sups = [s for s in everything if s.name not in ("supervisord", "ember-files")
                and not (s.tuned and (args.quick or args.no_tuned))]
    missing = [(s, s.missing()) for s in sups if s.missing()]
    # The adapters run as users of their own and must reach the control socket in here.
    os.chmod(args.tmp, 0o755)
    bench = Bench(args, [s for s in sups if not s.missing()])
    for s, why in missing:
        bench.failed.append(f"NOT MEASURED AT ALL: {s.name}: {why}")
        log(f"!! {s.name}: NOT MEASURED: {why}")

    def on_signal(signum, _frame):
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)

    try:
        bench.run()
    except KeyboardInterrupt as e:
        log(f"interrupted ({e})")
        sys.exit(130)
    finally:
        for pid in list(bench.live):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    bench.report()
    sys.exit(3 if bench.failed else 0)


if __name__ == "__main__":
    main()
