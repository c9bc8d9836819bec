#!/usr/bin/env python3
"""Side-by-side benchmark of ember against runit, s6 and supervisord.

Driven by bench/run.sh (which installs the peers and builds ember); can also be
run directly as root:  python3 bench/measure.py [--quick] [--only ember,runit]

Every supervisor is started as PID 1 of a fresh PID namespace,
    unshare --pid --fork --mount-proc --uts --kill-child <supervisor ...>
so that killing it (SIGTERM, then SIGKILL after a timeout) makes the kernel kill
every process it spawned. All state lives in a temporary directory. Every wait
is bounded by a timeout. Python standard library only.

What is measured (see run.sh for the summary printed in the header):
 (a) PSS of the supervisor tree with 10 and 1,000 `sleep` services: the sum of
     the "Pss:" line of /proc/PID/smaps_rollup over the supervisor processes only
     (runit: runsvdir + every runsv; s6: s6-svscan + every s6-supervise;
     supervisord: the python process; ember: the ember process), measured 2 s
     after every service process is running.
 (b) Time to bring 100 services up: from just before the supervisor is launched
     until 100 distinct service processes (`/bin/sleep 1000NNN`, unique argv) are
     seen in /proc inside the supervisor's PID namespace. /proc is polled every
     ~2 ms. Median of 3 launches, interleaved across supervisors, each after
     waiting (bounded) for the machine to be idle. Config files are backdated
     60 s (runsvdir defers a directory modified in the current second by ~1 s).
 (c) Respawn interval: one service that appends CLOCK_MONOTONIC to a file and
     exits 1 (a tiny C program built at run time with cc, else rustc), at each
     supervisor's fastest restart setting. Median interval
     between consecutive starts over a ~5 s window.
 (d) Idle wakeups: with 10 sleep services up (and 2 s settled), the delta over
     30 s (10 s with --quick) of voluntary + nonvoluntary context switches
     (summed over every thread, /proc/PID/task/TID/status) and of utime+stime
     (/proc/PID/stat, clock ticks), summed over the supervisor processes.
     Reported per second.
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

SLEEP = "/bin/sleep"
MARK_BASE = 1000000          # service i runs `sleep 1000000+i`, i.e. 1000NNN
CLK_TCK = os.sysconf("SC_CLK_TCK")

STAMP_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
/* Append CLOCK_MONOTONIC (seconds.nanoseconds) to argv[1], then fail. */
int main(int argc, char **argv) {
    struct timespec ts;
    char buf[64];
    int fd, n;
    if (argc < 2) return 2;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    n = snprintf(buf, sizeof buf, "%lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
    fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd >= 0) { (void)write(fd, buf, n); close(fd); }
    return 1;
}
"""

STAMP_RS = r"""
use std::io::Write;
fn main() {
    let mut ts = std::mem::MaybeUninit::<[i64; 2]>::uninit();
    extern "C" { fn clock_gettime(clk: i32, ts: *mut [i64; 2]) -> i32; }
    let ts = unsafe { clock_gettime(1, ts.as_mut_ptr()); ts.assume_init() };
    let path = std::env::args().nth(1).expect("path");
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(path).unwrap();
    let _ = write!(f, "{}.{:09}\n", ts[0], ts[1]);
    std::process::exit(1);
}
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# /proc helpers
# --------------------------------------------------------------------------

def read_bytes(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 65536)
    except OSError:
        return None
    finally:
        os.close(fd)


def pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def stat_fields(pid):
    """(comm, fields after comm) of /proc/PID/stat; fields[0] is state."""
    raw = read_bytes(f"/proc/{pid}/stat")
    if raw is None:
        return None
    s = raw.decode(errors="replace")
    lp, rp = s.index("("), s.rindex(")")
    return s[lp + 1:rp], s[rp + 2:].split()


def ppid_of(pid):
    st = stat_fields(pid)
    return int(st[1][1]) if st else None


def comm_of(pid):
    raw = read_bytes(f"/proc/{pid}/comm")
    return raw.decode(errors="replace").strip() if raw else None


def pidns(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def ns_local_pid(pid):
    """The PID as seen inside its own (innermost) PID namespace: last NSpid field."""
    raw = read_bytes(f"/proc/{pid}/status")
    if raw is None:
        return None
    for line in raw.decode().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    return None


def cpu_busy(window=0.3):
    """Fraction of all CPUs busy (not idle/iowait) over `window` seconds, from /proc/stat."""
    def sample():
        f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return sum(f), f[3] + f[4]
    t0, i0 = sample()
    time.sleep(window)
    t1, i1 = sample()
    return 1 - (i1 - i0) / max(1, t1 - t0)


def ns_members(ns):
    return [p for p in pids() if pidns(p) == ns]


def pss_kib(pid, field="Pss:"):
    """A line of /proc/PID/smaps_rollup in KiB ("Pss:", "Pss_Anon:", "Pss_File:")."""
    raw = read_bytes(f"/proc/{pid}/smaps_rollup")
    if raw is None:
        return None
    for line in raw.decode().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return None


def ctxt_switches(pid):
    """Voluntary + nonvoluntary context switches summed over all threads."""
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


def cpu_ticks(pid):
    st = stat_fields(pid)
    if st is None:
        return None
    f = st[1]          # f[0] is field 3 (state); utime is field 14, stime 15
    return int(f[11]) + int(f[12])


# --------------------------------------------------------------------------
# Supervisors
# --------------------------------------------------------------------------

def write_file(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def run_script(argv):
    return "#!/bin/sh\nexec " + " ".join(argv) + "\n"


class Supervisor:
    name = "?"
    comms = set()          # comm names of the supervisor's own processes

    def available(self):
        return True

    def prepare(self, d, services):
        """Write config for services [(name, argv)] into dir d; return argv."""
        raise NotImplementedError


class Runit(Supervisor):
    name = "runit"
    comms = {"runsvdir", "runsv"}

    def available(self):
        return shutil.which("runsvdir") is not None

    def prepare(self, d, services):
        sv = os.path.join(d, "service")
        os.mkdir(sv)
        for name, argv in services:
            os.mkdir(os.path.join(sv, name))
            write_file(os.path.join(sv, name, "run"), run_script(argv), 0o755)
        return [shutil.which("runsvdir"), "-P", sv]


class S6(Supervisor):
    name = "s6"
    comms = {"s6-svscan", "s6-supervise"}

    def available(self):
        return shutil.which("s6-svscan") is not None

    def prepare(self, d, services):
        sv = os.path.join(d, "scan")
        os.mkdir(sv)
        for name, argv in services:
            os.mkdir(os.path.join(sv, name))
            write_file(os.path.join(sv, name, "run"), run_script(argv), 0o755)
        argv = [shutil.which("s6-svscan")]
        if len(services) > 500:           # s6-svscan's default -c (max services) is 500
            argv += ["-c", str(len(services))]
        return argv + [sv]


class Supervisord(Supervisor):
    name = "supervisord"
    comms = {"supervisord"}

    def available(self):
        return shutil.which("supervisord") is not None

    def prepare(self, d, services):
        conf = [
            "[supervisord]",
            "nodaemon=true",
            f"logfile={d}/supervisord.log",
            f"pidfile={d}/supervisord.pid",
            f"childlogdir={d}",
            f"minfds={max(1024, 8 * len(services) + 64)}",
            "",
        ]
        for name, argv in services:
            conf += [
                f"[program:{name}]",
                "command=" + " ".join(argv),
                "autostart=true",
                "autorestart=true",
                "startsecs=0",
                "startretries=1000000",
                "stdout_logfile=NONE",
                "stderr_logfile=NONE",
                "",
            ]
        path = os.path.join(d, "supervisord.conf")
        write_file(path, "\n".join(conf))
        return [shutil.which("supervisord"), "-n", "-c", path]


class Ember(Supervisor):
    name = "ember"
    comms = {"ember"}

    def __init__(self, binary):
        self.binary = binary
        self.socket = None

    def available(self):
        return bool(self.binary) and os.access(self.binary, os.X_OK)

    def prepare(self, d, services):
        self.socket = os.path.join(d, "control.sock")
        conf = ["[control]", f'socket = "{self.socket}"', ""]
        for name, argv in services:
            conf += [
                f"[service.{name}]",
                "command = " + json.dumps(argv),
                'restart = "always"',
                'restart_delay = "0ms"',
                'restart_delay_max = "0ms"',
                "start_limit = 0",
                'stdout = "null"',
                'stderr = "null"',
                "",
            ]
        path = os.path.join(d, "ember.toml")
        write_file(path, "\n".join(conf))
        return [self.binary, "--config", path]

    def ctl_status(self):
        try:
            out = subprocess.run(
                [self.binary, "ctl", "--socket", self.socket, "status", "--json"],
                capture_output=True, timeout=10, text=True)
        except subprocess.TimeoutExpired:
            return None, "`ember ctl status --json` timed out after 10 s"
        if out.returncode != 0:
            return None, f"`ember ctl status --json` exited {out.returncode}: {out.stderr.strip()[:300]}"
        try:
            return json.loads(out.stdout), None
        except ValueError as e:
            return None, f"`ember ctl status --json` printed invalid JSON ({e}): {out.stdout[:200]!r}"


# --------------------------------------------------------------------------
# One supervisor instance in its own PID namespace
# --------------------------------------------------------------------------

class Instance:
    """A supervisor running as PID 1 of a new PID namespace."""

    def __init__(self, bench, sup, services, tag):
        self.bench, self.sup = bench, sup
        self.dir = os.path.join(bench.tmp, f"{sup.name}-{tag}")
        os.mkdir(self.dir)
        self.argv = sup.prepare(self.dir, services)
        # Backdate everything we wrote: runsvdir ignores a service directory whose
        # mtime is the current second and looks again ~1 s later (a guard against
        # half-written directories). At boot the directories are old, so make them so.
        old = time.time() - 60
        for root, dirs, files in os.walk(self.dir):
            for x in dirs + files:
                os.utime(os.path.join(root, x), (old, old), follow_symlinks=False)
        os.utime(self.dir, (old, old))
        self.proc = None
        self.init = None        # host PID of the namespace's PID 1
        self.ns = None
        self.t0 = None
        self.exit_code = None
        self.killed = False
        self.exited_early = False      # had exited before stop() signalled it

    def start(self):
        self.logf = open(os.path.join(self.dir, "supervisor.log"), "wb")
        self.before = set(pids())
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", "--uts", "--kill-child"] + self.argv,
            stdin=subprocess.DEVNULL, stdout=self.logf, stderr=subprocess.STDOUT,
            cwd=self.dir)
        self.bench.register(self.proc.pid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            child = self._child_of(self.proc.pid)
            if child is not None:
                ns = pidns(child)
                if ns is not None and ns != pidns(self.proc.pid):
                    self.init, self.ns = child, ns
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.sup.name}: unshare exited {self.proc.returncode} at start; "
                                   f"see {self.logf.name}: {self.log_tail()}")
            time.sleep(0.001)
        raise RuntimeError(f"{self.sup.name}: namespace init did not appear within 10 s")

    @staticmethod
    def _child_of(pid):
        raw = read_bytes(f"/proc/{pid}/task/{pid}/children")
        if raw is not None:
            kids = raw.split()
            return int(kids[0]) if kids else None
        for p in pids():
            if ppid_of(p) == pid:
                return p
        return None

    def members(self):
        return ns_members(self.ns)

    def sup_pids(self):
        return [p for p in self.members() if comm_of(p) in self.sup.comms]

    def services_up(self):
        """Distinct service markers (1000NNN) of running sleep processes in the namespace."""
        seen = set()
        for p in pids():
            if p in self.before:
                continue
            raw = read_bytes(f"/proc/{p}/cmdline")
            if not raw or not raw.startswith(b"/bin/sleep\0"):
                continue
            argv = raw.split(b"\0")
            if len(argv) >= 2 and argv[1].startswith(b"1000") and pidns(p) == self.ns:
                seen.add(argv[1])
        return seen

    def wait_up(self, n, timeout, interval):
        """Poll until n services are up; return seconds since launch, or None
        on timeout or when the count has not grown for 15 s."""
        deadline = self.t0 + timeout
        best, progress = -1, self.t0
        while True:
            now = time.monotonic()
            up = len(self.services_up())
            if up >= n:
                return now - self.t0
            if up > best:
                best, progress = up, now
            if now > deadline or now - progress > 15:
                return None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.sup.name} exited early with {self.proc.returncode}: {self.log_tail()}")
            time.sleep(interval)

    def log_tail(self, n=400):
        try:
            with open(os.path.join(self.dir, "supervisor.log"), "rb") as f:
                return f.read()[-n:].decode(errors="replace").strip()
        except OSError:
            return ""

    def stop(self, grace=5.0):
        """SIGTERM the namespace init, SIGKILL after `grace` s. Returns (exit code, killed)."""
        if self.proc is None or self.proc.poll() is not None:
            self.exited_early = True
            self.exit_code = self.proc.returncode if self.proc else None
            self._close()
            return self.exit_code, self.killed
        try:
            if self.init is not None:
                os.kill(self.init, signal.SIGTERM)
            else:
                self.proc.terminate()
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.killed = True
            try:
                if self.init is not None:
                    os.kill(self.init, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                self.proc.kill()
                self.proc.wait(timeout=10)
        except ProcessLookupError:
            self.proc.wait(timeout=10)
        self.exit_code = self.proc.returncode
        self._close()
        return self.exit_code, self.killed

    def _close(self):
        self.bench.unregister(self.proc.pid if self.proc else None)
        if getattr(self, "logf", None):
            self.logf.close()
            self.logf = None


# --------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------

def sleep_services(n):
    return [(f"s{i}", [SLEEP, str(MARK_BASE + i)]) for i in range(n)]


def median(xs):
    return statistics.median(xs) if xs else None


class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.tmp = args.tmp
        self.pidfile = os.path.join(self.tmp, "unshare.pids")
        self.live = set()
        self.notes = []
        self.res = {}           # (metric, supervisor) -> value
        self.detail = []
        self.idle_secs = 10 if self.quick else 30
        self.respawn_secs = 5.0
        self.busy_runs = 0

    # -- process bookkeeping (run.sh's trap kills whatever is left in the pid file)
    def register(self, pid):
        self.live.add(pid)
        self._write_pids()

    def unregister(self, pid):
        self.live.discard(pid)
        self._write_pids()

    def _write_pids(self):
        with open(self.pidfile, "w") as f:
            f.write("".join(f"{p}\n" for p in sorted(self.live)))

    def note(self, msg):
        log("  NOTE: " + msg)
        self.notes.append(msg)

    def stop(self, inst, grace=None):
        if grace is None:
            grace = 10.0 if inst.sup.name == "ember" else 5.0
        code, killed = inst.stop(grace)
        if inst.sup.name == "ember" and not inst.exited_early:
            # As PID 1 ember treats SIGTERM as "reboot" (sysvinit convention): it stops
            # every service and calls reboot(2), which in a child PID namespace ends
            # the namespace's init as if by SIGHUP (SIGINT for power-off).
            if killed:
                self.note(f"ember did not exit within {grace:.0f} s of SIGTERM ({inst.dir}); SIGKILLed")
            elif code not in (0, -signal.SIGHUP, -signal.SIGINT):
                self.note(f"ember exited {code} after SIGTERM, expected 0 or reboot(2) ({inst.dir}): "
                          f"{inst.log_tail(300)!r}")
        return code

    def ember_sanity(self, inst, n):
        """Cross-check ember's own view against /proc."""
        if inst.sup.name != "ember":
            return
        status, err = inst.sup.ctl_status()
        if err:
            self.note(err)
            return
        if not isinstance(status, list):
            self.note(f"`ember ctl status --json` is not a JSON array: {str(status)[:200]}")
            return
        active = [s for s in status if isinstance(s, dict) and s.get("state") == "active"]
        if len(status) != n or len(active) != n:
            states = {}
            for s in status:
                st = s.get("state") if isinstance(s, dict) else repr(s)
                states[st] = states.get(st, 0) + 1
            self.note(f"ember ctl status with {n} services: {len(status)} entries, states {states}")
        # ember reports PIDs as seen inside its namespace; map ours the same way.
        sleeps = {ns_local_pid(p) for p in inst.members() if comm_of(p) == "sleep"}
        bad = [s.get("name") for s in active if s.get("pid") not in sleeps]
        if bad:
            self.note(f"ember ctl status: {len(bad)} active services report a pid that is not a running "
                      f"service process, e.g. {bad[:3]}")

    # -- (a) + (d): 10 services, memory then idle wakeups
    def idle_and_small_memory(self, sup):
        n = 10
        inst = Instance(self, sup, sleep_services(n), "idle")
        try:
            inst.start()
            t = inst.wait_up(n, timeout=60, interval=0.01)
            if t is None:
                self.note(f"{sup.name}: only {len(inst.services_up())}/{n} services up (gave up after {time.monotonic() - inst.t0:.0f} s)")
                return
            time.sleep(2)
            sp = inst.sup_pids()
            self.res[("pss10", sup.name)] = sum(pss_kib(p) or 0 for p in sp) / 1024
            self.res[("procs10", sup.name)] = len(sp)
            self.res[("anon10", sup.name)] = sum(pss_kib(p, "Pss_Anon:") or 0 for p in sp) / 1024
            before = {p: (ctxt_switches(p), cpu_ticks(p)) for p in sp}
            t0 = time.monotonic()
            time.sleep(self.idle_secs)
            dt = time.monotonic() - t0
            after = {p: (ctxt_switches(p), cpu_ticks(p)) for p in inst.sup_pids()}
            common = [p for p in before if p in after and None not in before[p] + after[p]]
            if len(common) != len(before) or len(after) != len(before):
                self.note(f"{sup.name}: supervisor process set changed while idle "
                          f"({len(before)} -> {len(after)} processes)")
            cs = sum(after[p][0] - before[p][0] for p in common)
            tk = sum(after[p][1] - before[p][1] for p in common)
            self.res[("wake", sup.name)] = cs / dt
            self.res[("ticks", sup.name)] = tk / dt
            still = len(inst.services_up())
            if still != n:
                self.note(f"{sup.name}: {still}/{n} services running at the end of the idle period")
            self.ember_sanity(inst, n)      # after the figures: a ctl call wakes ember up
            log(f"  {sup.name}: PSS {self.res[('pss10', sup.name)]:.2f} MiB in {len(sp)} processes; "
                f"idle {cs} switches, {tk} ticks in {dt:.1f} s")
        finally:
            self.stop(inst)

    # -- (a): 1,000 services
    def big_memory(self, sup):
        n = 1000
        self.wait_quiet()
        inst = Instance(self, sup, sleep_services(n), "1000")
        try:
            inst.start()
            t = inst.wait_up(n, timeout=120, interval=0.05)
            if t is None:
                self.note(f"{sup.name}: only {len(inst.services_up())}/{n} services up (gave up after "
                          f"{time.monotonic() - inst.t0:.0f} s); "
                          f"PSS not measured")
                return
            time.sleep(2)
            sp = inst.sup_pids()
            self.res[("pss1000", sup.name)] = sum(pss_kib(p) or 0 for p in sp) / 1024
            self.res[("procs1000", sup.name)] = len(sp)
            self.res[("anon1000", sup.name)] = sum(pss_kib(p, "Pss_Anon:") or 0 for p in sp) / 1024
            self.res[("up1000", sup.name)] = t * 1000
            self.ember_sanity(inst, n)
            log(f"  {sup.name}: 1000 up in {t * 1000:.0f} ms; PSS "
                f"{self.res[('pss1000', sup.name)]:.2f} MiB in {len(sp)} processes")
        finally:
            self.stop(inst)

    def guard(self, fn, *args):
        """Run one measurement; a supervisor that fails to start or dies early
        becomes a note instead of aborting the whole benchmark."""
        try:
            return fn(*args)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            self.note(f"{args[0].name}: {fn.__name__} failed: {e}")
            return None

    def wait_quiet(self, limit=0.15, timeout=20):
        """Wait (bounded) until the machine is nearly idle, so that other work on it
        does not land in a timing sample; note it if it never gets quiet."""
        deadline = time.monotonic() + timeout
        while True:
            busy = cpu_busy()
            if busy <= limit:
                return
            if time.monotonic() > deadline:
                self.busy_runs += 1
                return
            time.sleep(0.5)

    # -- (b): 100 services up, one launch
    def startup_once(self, sup, run):
        n = 100
        self.wait_quiet()
        inst = Instance(self, sup, sleep_services(n), f"up{run}")
        try:
            inst.start()
            t = inst.wait_up(n, timeout=60, interval=0.002)
            if t is None:
                self.note(f"{sup.name}: run {run}: only {len(inst.services_up())}/{n} up (gave up after {time.monotonic() - inst.t0:.0f} s)")
                return None
            return t * 1000
        finally:
            self.stop(inst)

    # -- (c): respawn interval
    def respawn(self, sup):
        stamps = os.path.join(self.tmp, f"stamps-{sup.name}")
        inst = Instance(self, sup, [("crash", [self.stamp, stamps])], "respawn")
        try:
            inst.start()
            deadline = time.monotonic() + 15
            while not os.path.exists(stamps) and time.monotonic() < deadline:
                time.sleep(0.01)
            if not os.path.exists(stamps):
                self.note(f"{sup.name}: crashing service never started within 15 s")
                return
            t0 = time.monotonic()
            sp0 = inst.sup_pids()
            tick0 = {p: cpu_ticks(p) for p in sp0}
            pss0 = sum(pss_kib(p) or 0 for p in sp0)
            time.sleep(self.respawn_secs)
            tick1 = {p: cpu_ticks(p) for p in sp0}
            pss1 = sum(pss_kib(p) or 0 for p in sp0)
            dt = time.monotonic() - t0
        finally:
            self.stop(inst)
        with open(stamps) as f:
            ts = [float(x) for x in f.read().split()]
        ts = [x for x in ts if x <= t0 + self.respawn_secs]  # keep the ~5 s window
        iv = [(b - a) * 1000 for a, b in zip(ts, ts[1:])]
        if not iv:
            self.note(f"{sup.name}: crashing service started only {len(ts)} time(s) in {self.respawn_secs:.0f} s")
            return
        self.res[("respawn", sup.name)] = median(iv)
        self.res[("starts", sup.name)] = len(ts)
        self.res[("respawn_range", sup.name)] = (min(iv), max(iv))
        busy = sum((tick1[p] or 0) - (tick0[p] or 0) for p in sp0 if tick0[p] is not None) / CLK_TCK / dt
        self.res[("respawn_cpu", sup.name)] = busy * 100
        self.res[("respawn_pss", sup.name)] = (pss0 / 1024, pss1 / 1024)
        log(f"  {sup.name}: {len(ts)} starts, median interval {median(iv):.2f} ms, "
            f"min {min(iv):.2f}, max {max(iv):.2f}; supervisor CPU {busy * 100:.0f}%")

    def build_stamp(self):
        src_dir = os.path.join(self.tmp, "stamp")
        os.mkdir(src_dir)
        out = os.path.join(src_dir, "stamp")
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc:
            write_file(os.path.join(src_dir, "stamp.c"), STAMP_C)
            subprocess.run([cc, "-O2", "-o", out, os.path.join(src_dir, "stamp.c")],
                           check=True, timeout=120)
        elif shutil.which("rustc"):
            write_file(os.path.join(src_dir, "stamp.rs"), STAMP_RS)
            subprocess.run(["rustc", "-O", "-o", out, os.path.join(src_dir, "stamp.rs")],
                           check=True, timeout=300)
        else:
            raise RuntimeError("need cc or rustc to build the respawn probe")
        self.stamp = out

    def run(self, sups):
        self.build_stamp()
        self.busy0 = cpu_busy(1.0)
        log(f"== (a)+(d) 10 services: PSS, then {self.idle_secs} s idle")
        for s in sups:
            self.guard(self.idle_and_small_memory, s)
        log("== (a) 1,000 services: PSS")
        for s in sups:
            self.guard(self.big_memory, s)
        log("== (b) 100 services up, 3 launches each (interleaved)")
        runs = {s.name: [] for s in sups}
        for r in range(3):
            for s in sups:
                t = self.guard(self.startup_once, s, r)
                if t is not None:
                    runs[s.name].append(t)
                time.sleep(0.3)
        for s in sups:
            if runs[s.name]:
                self.res[("up100", s.name)] = median(runs[s.name])
            log(f"  {s.name}: " + ", ".join(f"{t:.1f}" for t in runs[s.name]) + " ms")
        self.up_runs = runs
        log(f"== (c) respawn interval of a crashing service, {self.respawn_secs:.0f} s each")
        if self.busy_runs:
            self.note(f"the machine stayed busy (>15% CPU used by something else) for 20 s before "
                      f"{self.busy_runs} timed run(s); those timings are probably inflated")
        for s in sups:
            self.wait_quiet()
            self.guard(self.respawn, s)

    # -- report
    def report(self, names):
        peers = [n for n in names if n != "ember"]
        has_ember = "ember" in names
        R = self.res

        def cell(metric, name, fmt):
            v = R.get((metric, name))
            if v is None:
                return "n/a"
            s = fmt.format(v)
            if name != "ember" and has_ember:
                e = R.get((metric, "ember"))
                if e is None:
                    pass
                elif e == 0:
                    s += " (∞×)" if v > 0 else " (=)"
                else:
                    s += f" ({v / e:.2f}×)" if v / e < 10 else f" ({v / e:,.0f}×)"
            return s

        def goal(metric):
            e = R.get((metric, "ember"))
            if metric == "pss1000":
                txt = "< 8 MiB"
                ok = e is not None and e < 8
            elif metric == "up100":
                txt = "faster than every peer"
                ps = [R.get((metric, p)) for p in peers]
                ok = e is not None and bool(ps) and all(p is not None and e < p for p in ps)
            elif metric == "wake":
                txt = "0 /s"
                ok = e is not None and e == 0 and R.get(("ticks", "ember")) == 0
            else:
                return "—"
            if e is None:
                return txt + ": not measured"
            return f"{txt}: **{'PASS' if ok else 'FAIL'}**"

        rows = [
            ("(a) PSS, 10 services (MiB)", "pss10", "{:.2f}"),
            ("(a) PSS, 1,000 services (MiB)", "pss1000", "{:.2f}"),
            ("(b) 100 services up (ms, median of 3)", "up100", "{:.1f}"),
            ("(c) respawn interval, crashing service (ms, median)", "respawn", "{:.2f}"),
            (f"(d) idle wakeups, 10 services (ctx switches/s, {self.idle_secs} s)", "wake", "{:.2f}"),
            ("(d) idle CPU, 10 services (ticks/s)", "ticks", "{:.3f}"),
        ]
        out = []
        out.append("")
        out.append("| metric | " + " | ".join(names) + " | goal (ember) |")
        out.append("|---|" + "---:|" * len(names) + "---|")
        for label, m, fmt in rows:
            out.append(f"| {label} | " + " | ".join(cell(m, n, fmt) for n in names) + f" | {goal(m)} |")
        out.append("")
        out.append("Ratios in parentheses are peer / ember (above 1× means ember uses less / is faster).")
        out.append("dinit: not measured (source not available offline)")
        out.append("")
        out.append("Details:")
        for n in names:
            bits = []
            if ("procs10", n) in R:
                bits.append(f"supervisor processes {R[('procs10', n)]} (10 svc) / {R.get(('procs1000', n), 'n/a')} (1,000 svc)")
            if ("anon10", n) in R:
                bits.append(f"PSS anonymous part {R[('anon10', n)]:.2f} MiB (10 svc)"
                            + (f" / {R[('anon1000', n)]:.2f} MiB (1,000 svc)" if ("anon1000", n) in R else ""))
            if ("up1000", n) in R:
                bits.append(f"1,000 services up in {R[('up1000', n)]:.0f} ms")
            if getattr(self, "up_runs", {}).get(n):
                bits.append("100-up runs " + "/".join(f"{t:.1f}" for t in self.up_runs[n]) + " ms")
            if ("starts", n) in R:
                lo, hi = R[("respawn_range", n)]
                p0, p1 = R[("respawn_pss", n)]
                bits.append(f"{R[('starts', n)]} starts in {self.respawn_secs:.0f} s of crash loop "
                            f"(intervals {lo:.2f}–{hi:.2f} ms), supervisor CPU "
                            f"{R[('respawn_cpu', n)]:.0f}%, PSS {p0:.2f} → {p1:.2f} MiB across it")
            out.append(f"- {n}: " + ("; ".join(bits) or "no figures (see notes)"))
        out.append(f"- {os.cpu_count()} CPUs; CPU busy with other work just before the run "
                   f"{self.busy0 * 100:.0f}%; timed runs (1,000-up, 100-up, respawn) each waited (≤20 s) for <15% busy")
        if self.notes:
            out.append("")
            out.append("Notes:")
            out += [f"- {n}" for n in self.notes]
        print("\n".join(out), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ember", default=None, help="path to the ember binary")
    ap.add_argument("--tmp", default=None, help="work directory (default: mktemp -d)")
    ap.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1")
    ap.add_argument("--only", default=None, help="comma-separated subset: ember,runit,s6,supervisord")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("must run as root (unshare --pid)")
    own_tmp = args.tmp is None
    if own_tmp:
        import tempfile
        args.tmp = tempfile.mkdtemp(prefix="ember-bench.")

    sups = [Ember(args.ember), Runit(), S6(), Supervisord()]
    if args.only:
        keep = set(args.only.split(","))
        sups = [s for s in sups if s.name in keep]
    missing = [s.name for s in sups if not s.available()]
    for m in missing:
        log(f"{m}: not available, skipped")
    sups = [s for s in sups if s.available()]
    names = [s.name for s in sups]

    bench = Bench(args)

    def on_signal(signum, _frame):
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):   # let cleanup finish
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)

    try:
        bench.run(sups)
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); stopped every supervisor")
        sys.exit(130)
    finally:
        for pid in list(bench.live):      # normally empty: every Instance stops itself
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if own_tmp and not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(args.tmp, ignore_errors=True)
    bench.report(names)
    for m in missing:
        print(f"{m}: not measured (not available)")


if __name__ == "__main__":
    main()
