#!/usr/bin/python3
"""Where ember's start-up time and per-service memory go (driven by bench/profile.sh).

ember runs its default configuration, PID 1 of a PID namespace, with N services of
bench/probe.c (`probe up`: records its start, then waits for ever), as bench/measure.py runs
it. For each N it prints, in markdown:

 untraced  start-up time; the interval between consecutive service starts (from the
           probes' CLOCK_MONOTONIC records: the serial cost of one spawn in ember's loop,
           no tracer); ember's CPU time (schedstat) per service; dinit the same, for scale.
 memory    ember's PSS by mapping kind ([heap], other anonymous, [stack], the binary, libc
           and other files), per service as the slope between the two N; glibc's own
           accounting (malloc_stats() called in ember by gdb: bytes in use vs. bytes the heap
           holds from the system).
 strace    strace -f -tt -T of the same start (every figure is inflated by ptrace; read
           the shares and counts): per spawn, how long ember's loop is blocked in std's
           Command::spawn (clone to the end of its read of the CLOEXEC error pipe), the
           child's write of "0" to cgroup.procs, its execve, its 64 rt_sigaction; ember's
           system calls per service by name (count and time).
 perf      perf record -e cpu-clock -g (software clock: no hardware counters in this VM):
           ember's samples by DSO and the top symbols (kernel and user).
 sigterm   strace -tt of ember while 3,000 services boot; SIGTERM once 300 have started:
           what ember does between the signal and its first kill(2), and how long.
 spawn     bench/spawn_cost.c: the spawning thread's blocked time per spawn for fork +
           a cgroup.procs write in the child (ember today), fork alone, vfork-style
           clone + write, and clone3(CLONE_VM|CLONE_VFORK|CLONE_INTO_CGROUP), from a small
           process and from one holding 2,000 fds and 12 MiB (ember at 1,000 services).
 massif    valgrind --tool=massif of ember (not PID 1: PID 1's reboot(2) would kill valgrind
           before it writes), N services: the heap at its peak by allocation site.
"""

import argparse
import collections
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import measure as M  # noqa: E402  the /proc helpers, Records, Instance


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


class Fake:
    """Just enough of measure.Bench for measure.Instance."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.seq = 0
        self.live = set()
        self.notes = []

    def register(self, pid):
        self.live.add(pid)
        self._write()

    def unregister(self, pid):
        self.live.discard(pid)
        self._write()

    def _write(self):
        with open(os.path.join(self.tmp, "pids"), "w") as f:
            f.write("".join(f"{p} unshare\n" for p in sorted(self.live)))

    def note(self, msg):
        log("  NOTE: " + msg)
        self.notes.append(msg)


def smaps_kinds(pid, binary):
    """Pss (KiB) of /proc/PID/smaps by mapping kind."""
    raw = M.read_bytes(f"/proc/{pid}/smaps", limit=1 << 24)
    out = collections.Counter()
    kind = None
    for line in (raw or b"").decode(errors="replace").splitlines():
        parts = line.split()
        if not parts:
            continue
        if "-" in parts[0] and not parts[0].endswith(":") and len(parts) >= 5:
            name = parts[5] if len(parts) >= 6 else ""
            if name == "[heap]":
                kind = "[heap]"
            elif name == "":
                kind = "anonymous (not [heap])"
            elif name.startswith("[stack"):
                kind = "[stack]"
            elif name.startswith("["):
                kind = "other [..]"
            elif os.path.realpath(name) == os.path.realpath(binary):
                kind = "ember binary"
            elif "/libc." in name or "/libc-" in name:
                kind = "libc"
            else:
                kind = "other files"
        elif parts[0] == "Pss:" and kind:
            out[kind] += int(parts[1])
    return out


def malloc_stats(pid, logfile):
    """glibc's malloc_stats() run inside PID by gdb; it prints to ember's stderr."""
    if not shutil.which("gdb"):
        return None
    size0 = os.path.getsize(logfile)
    subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx", "-ex", "call (void) malloc_stats()"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    time.sleep(0.2)
    with open(logfile, "rb") as f:
        f.seek(size0)
        text = f.read().decode(errors="replace")
    m = re.search(r"Total \(incl\. mmap\):\s*system bytes\s*=\s*(\d+)\s*in use bytes\s*=\s*(\d+)", text)
    if not m:
        return None
    arena = re.search(r"Arena 0:\s*system bytes\s*=\s*(\d+)\s*in use bytes\s*=\s*(\d+)", text)
    return {"system": int(m.group(1)), "in_use": int(m.group(2)),
            "arena0_system": int(arena.group(1)) if arena else None,
            "arena0_in_use": int(arena.group(2)) if arena else None}


# ----------------------------------------------------------------------------------------
# strace -f -tt -T parsing
# ----------------------------------------------------------------------------------------

LINE = re.compile(r"^(\d+)\s+(\d\d):(\d\d):(\d\d\.\d+)\s+(.*)$")
CALL = re.compile(r"^(\w+)\((.*)$")
RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
DUR = re.compile(r"<(\d+\.\d+)>\s*$")
RET = re.compile(r"\)\s+=\s+(-?\d+|\?|0x[0-9a-f]+)")


def parse_strace(path):
    """[(pid, t_start, name, args+result text, duration or None)] with unfinished calls
    joined to their resumption (start time of the call, duration of the whole)."""
    calls = []
    pending = {}
    with open(path, errors="replace") as f:
        for line in f:
            m = LINE.match(line.rstrip("\n"))
            if not m:
                continue
            pid = int(m.group(1))
            t = int(m.group(2)) * 3600 + int(m.group(3)) * 60 + float(m.group(4))
            rest = m.group(5)
            if rest.startswith("---") or rest.startswith("+++"):
                calls.append((pid, t, rest[:60], rest, None))
                continue
            r = RESUMED.match(rest)
            if r:
                name = r.group(1)
                start = pending.pop((pid, name), None)
                d = DUR.search(rest)
                if start is not None:
                    t0, text = start
                    calls.append((pid, t0, name, text + r.group(2), float(d.group(1)) if d else None))
                continue
            c = CALL.match(rest)
            if not c:
                continue
            name = c.group(1)
            if rest.endswith("<unfinished ...>"):
                pending[(pid, name)] = (t, rest)
                continue
            d = DUR.search(rest)
            calls.append((pid, t, name, rest, float(d.group(1)) if d else None))
    calls.sort(key=lambda c: c[1])
    return calls


EXEC_WAIT = re.compile(r'^(read|recvfrom)\(\d+,.*"", 8[,)].*\)\s+=\s+0\b')


def strace_summary(path, ember_binary, n):
    calls = parse_strace(path)
    ember_pid = None
    for pid, t, name, text, d in calls:
        if name == "execve" and text.startswith(f'execve("{ember_binary}",') and "= 0" in text:
            ember_pid = pid
            break
    if ember_pid is None:
        return ["(strace: ember's execve not found)"]
    # The start only: up to the SIGTERM that ends the run.
    end = next((t for pid, t, name, text, d in calls
                if pid == ember_pid and name.startswith("--- SIGTERM")), float("inf"))
    calls = [c for c in calls if c[1] < end]
    tracer_child = calls[0][0]                  # unshare; ember is its child
    spawn_spans, exec_wait, mkdirs = [], [], []
    clone_t = None
    by_name = collections.defaultdict(lambda: [0, 0.0])
    for pid, t, name, text, d in calls:
        if pid != ember_pid or name.startswith(("---", "+++")):
            continue
        by_name[name][0] += 1
        by_name[name][1] += d or 0.0
        if name in ("clone", "clone3", "fork", "vfork"):
            clone_t = t
        elif EXEC_WAIT.match(text):
            exec_wait.append(d or 0)
            if clone_t is not None:
                spawn_spans.append((t + (d or 0)) - clone_t)
                clone_t = None
        elif name == "mkdir":
            mkdirs.append(d or 0)
    cg_write, execs, sigact, child_span, probe_start = [], [], [], [], []
    first = {}
    for pid, t, name, text, d in calls:
        if pid in (ember_pid, tracer_child) or name.startswith(("---", "+++")):
            continue
        first.setdefault(pid, t)
        if name == "write" and re.match(r'write\(\d+, "0", 1\)\s+=\s+1', text):
            cg_write.append(d or 0)
        elif name == "execve":
            execs.append(d or 0)
            child_span.append(t - first[pid])
        elif name == "rt_sigaction":
            sigact.append(d or 0)
    us = lambda x: f"{x * 1e6:,.0f}"
    out = [f"strace -f -tt -T, {n} services, the start only (ptrace stops every system call, which "
           "inflates every figure, the child's most: read the counts and the shares):", ""]
    out.append("| per spawn | count | median µs | p90 µs | total ms |")
    out.append("|---|---:|---:|---:|---:|")
    for label, xs in [
        ("ember blocked in Command::spawn: clone → the CLOEXEC channel's read returns 0", spawn_spans),
        ("  of which waiting in that read (until the child's execve)", exec_wait),
        ("child: write \"0\" to cgroup.procs (the move into its cgroup)", cg_write),
        ("child: execve of the service", execs),
        ("child: each rt_sigaction (64 per spawn)", sigact),
        ("child: from its first system call to its execve", child_span),
        ("ember: mkdir of the service's cgroup", mkdirs),
    ]:
        out.append(f"| {label} | {len(xs)} | {us(med(xs))} | {us(pct(xs, 90))} | {sum(xs) * 1e3:,.1f} |")
    out.append("")
    out.append(f"ember's own system calls while starting {n} services, per service (count, time "
               "inside the call under strace; a blocking read is time spent waiting):")
    out.append("")
    out.append("| syscall | calls per service | µs per service | share of ember's syscall time |")
    out.append("|---|---:|---:|---:|")
    total = sum(v[1] for v in by_name.values()) or 1
    for name, (c, s_) in sorted(by_name.items(), key=lambda kv: -kv[1][1])[:18]:
        out.append(f"| {name} | {c / n:.2f} | {s_ / n * 1e6:,.0f} | {s_ / total * 100:.1f}% |")
    return out


def sigterm_summary(path, ember_binary):
    calls = parse_strace(path)
    ember_pid = None
    for pid, t, name, text, d in calls:
        if name == "execve" and text.startswith(f'execve("{ember_binary}",') and "= 0" in text:
            ember_pid = pid
            break
    mine = [c for c in calls if c[0] == ember_pid]
    sig_t = next((t for pid, t, name, text, d in mine if "SIGTERM" in name and name.startswith("---")), None)
    if sig_t is None:
        return ["(no SIGTERM seen in ember's trace)"]
    kill_t = next((t for pid, t, name, text, d in mine if t > sig_t and name in ("kill", "tgkill")
                   and "SIGTERM" in text), None)
    between = [c for c in mine if c[1] >= sig_t and (kill_t is None or c[1] <= kill_t)]
    counts = collections.Counter(c[2] for c in between)
    spent = collections.Counter()
    for c in between:
        spent[c[2]] += c[4] or 0
    clones_after = sum(1 for c in between if c[2] in ("clone", "clone3"))
    out = [f"strace -tt of ember booting 3,000 services, SIGTERM once 300 had started:", ""]
    if kill_t is None:
        out.append("- no kill(SIGTERM) after the signal in the trace")
        return out
    out.append(f"- SIGTERM delivered → ember's first kill(…, SIGTERM): {(kill_t - sig_t) * 1e3:.1f} ms "
               f"(under strace); {len(between)} system calls in between, {clones_after} of them "
               f"clone (spawns still in progress)")
    gaps = sorted(((b[1] - (a[1] + (a[4] or 0)), a[2]) for a, b in zip(between, between[1:])),
                  reverse=True)[:3]
    out.append("- the longest stretches without a system call (user-space work, or waiting for a "
               "CPU): " + ", ".join(f"{g * 1e3:.1f} ms after {name}" for g, name in gaps))
    out.append("- in between, by time: " + ", ".join(
        f"{name} ×{counts[name]} ({spent[name] * 1e3:.1f} ms)" for name, _ in spent.most_common(8)))
    return out


# ----------------------------------------------------------------------------------------
# The runs
# ----------------------------------------------------------------------------------------

class Prof:
    def __init__(self, args):
        self.args = args
        self.tmp = args.tmp
        self.fake = Fake(self.tmp)
        self.ember = M.Ember(args.ember)
        self.dinit = M.Dinit(args.dinit) if args.dinit and os.access(args.dinit, os.X_OK) else None
        self.out = []

    def say(self, *lines):
        for line in lines:
            print(line, flush=True)

    def boot(self, sup, n, tag, wrap=None, mode="up", wait=True):
        inst = M.Instance(self.fake, sup, M.probe_services(self.args.probe, n, mode), tag)
        if wrap:
            inst.prefix = wrap(inst)
        inst.start()
        if wait and not inst.wait_records(n, timeout=900, stall=120):
            inst.stop()
            raise RuntimeError(f"{sup.name}: only {inst.records.count()}/{n} started")
        return inst

    def ember_pid(self, inst):
        for p in inst.members():
            if M.comm_of(p) == "ember":
                return p
        return inst.init

    def untraced(self, ns):
        self.say(f"### Untraced start-up (PID 1 of a namespace, default configuration)", "",
                 "| | services | up (ms) | interval between starts, median / p90 (µs) | supervisor CPU per service (µs) |",
                 "|---|---:|---:|---:|---:|")
        mem, fds = {}, {}
        for n in ns:
            for sup in [self.ember] + ([self.dinit] if self.dinit else []):
                inst = self.boot(sup, n, f"plain-{n}")
                try:
                    starts = sorted(inst.records.times("u"))
                    gaps = [(b - a) * 1e6 for a, b in zip(starts, starts[1:])]
                    up = (starts[-1] - inst.t0) * 1e3
                    pid = self.ember_pid(inst) if sup is self.ember else inst.init
                    cpu = M.cpu_ns(pid) / 1e3 / n
                    self.say(f"| {sup.name} | {n} | {up:.0f} | {med(gaps):,.0f} / {pct(gaps, 90):,.0f} | {cpu:,.0f} |")
                    if sup is self.ember:
                        time.sleep(2)
                        kinds = smaps_kinds(pid, self.args.ember)
                        ms = malloc_stats(pid, os.path.join(inst.dir, "supervisor.log"))
                        mem[n] = (kinds, ms, M.smaps_rollup(pid).get("Pss", 0))
                        fds[n] = len(os.listdir(f"/proc/{pid}/fd"))
                finally:
                    inst.stop()
        self.say("", "ember's open fds once all have started: " +
                 ", ".join(f"{fds[n]:,} with {n} services" for n in sorted(fds)) +
                 " (each is copied into every forked child and closed by its execve).", "")
        if len(mem) >= 2:
            a, b = sorted(mem)[0], sorted(mem)[-1]
            ka, kb = mem[a][0], mem[b][0]
            self.say(f"### ember's memory by kind (PSS KiB), {a} and {b} services", "",
                     f"| kind | {a} | {b} | per service (KiB) |", "|---|---:|---:|---:|")
            for k in sorted(set(ka) | set(kb), key=lambda k: -kb.get(k, 0)):
                self.say(f"| {k} | {ka.get(k, 0):,} | {kb.get(k, 0):,} | {(kb.get(k, 0) - ka.get(k, 0)) / (b - a):.2f} |")
            self.say(f"| total (smaps_rollup Pss) | {mem[a][2]:,} | {mem[b][2]:,} | {(mem[b][2] - mem[a][2]) / (b - a):.2f} |", "")
            if mem[a][1] and mem[b][1]:
                ma, mb = mem[a][1], mem[b][1]
                self.say("glibc malloc_stats() in ember (gdb): bytes in use by the program vs. bytes "
                         "the allocator holds from the system:", "",
                         f"| | {a} | {b} | per service (bytes) |", "|---|---:|---:|---:|",
                         f"| in use | {ma['in_use']:,} | {mb['in_use']:,} | {(mb['in_use'] - ma['in_use']) / (b - a):,.0f} |",
                         f"| held (system bytes) | {ma['system']:,} | {mb['system']:,} | {(mb['system'] - ma['system']) / (b - a):,.0f} |",
                         "")
            else:
                self.say("(malloc_stats via gdb: not available)", "")

    def strace(self, n):
        if not shutil.which("strace"):
            self.say("(strace not installed)")
            return
        out = os.path.join(self.tmp, f"strace-{n}.txt")
        inst = self.boot(self.ember, n, f"strace-{n}",
                         wrap=lambda i: ["strace", "-f", "-tt", "-T", "-s", "64", "-o", out])
        # The namespace's PID 1 is still ember: strace runs outside, around unshare.
        # (Instance found unshare's child; with strace in front that is strace's child.)
        try:
            time.sleep(1)
        finally:
            self.stop_ns(inst)
        self.say(*strace_summary(out, self.args.ember, n), "")

    def stop_ns(self, inst):
        """SIGTERM ember, wherever it runs in the namespace; wait for the whole to end."""
        pid = self.ember_pid(inst)
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            inst.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            inst.proc.kill()
            inst.proc.wait(timeout=10)
        self.fake.unregister(inst.proc.pid)

    def perf(self, n):
        if not shutil.which("perf"):
            self.say("(perf not installed)")
            return
        data = os.path.join(self.tmp, f"perf-{n}.data")
        ctl, ack = os.path.join(self.tmp, f"perf-{n}.ctl"), os.path.join(self.tmp, f"perf-{n}.ack")
        os.mkfifo(ctl)
        os.mkfifo(ack)
        inst = self.boot(self.ember, n, f"perf-{n}",
                         wrap=lambda i: ["perf", "record", "-q", "-e", "cpu-clock", "-F", "4000",
                                         "-g", "--control", f"fifo:{ctl},{ack}", "-o", data, "--"])
        try:
            # Recorded until every service has started: the shutdown is not profiled.
            with open(ctl, "w") as f:
                f.write("disable\n")
            with open(ack) as f:
                f.read(4)
            pid = self.ember_pid(inst)
            cpu_ms = M.cpu_ns(pid) / 1e6
        finally:
            self.stop_ns(inst)

        def report(*extra):
            return subprocess.run(["perf", "report", "-i", data, "--stdio", "-q", "-g", "none"]
                                  + list(extra), capture_output=True, text=True,
                                  timeout=600).stdout.splitlines()
        share = {}
        for l in report("--no-children", "--sort", "comm,dso"):
            x = l.split()
            if len(x) >= 3:
                share[(x[1], x[2])] = float(x[0].rstrip("%"))
        ember_total = sum(v for (c, _), v in share.items() if c == "ember") or 1
        rows = {}
        for l in report("--comm", "ember", "--children", "--sort", "sym"):
            x = l.split(None, 3)
            if len(x) == 4 and x[2] in ("[k]", "[.]"):
                rows.setdefault(x[3].strip(), (float(x[0].rstrip("%")), float(x[1].rstrip("%")), x[2]))
        rel = lambda v: v / ember_total * 100
        self.say(f"perf record -e cpu-clock -g, {n} services, from the launch until every service had "
                 f"started: ember's CPU time {cpu_ms:.0f} ms ({cpu_ms * 1e3 / n:.0f} µs per service). "
                 "Samples of comm \"ember\" (ember, and each child between fork and exec) by DSO: "
                 + ", ".join(f"{d} {rel(v):.0f}%" for (c, d), v in sorted(share.items(), key=lambda kv: -kv[1])
                             if c == "ember" and rel(v) >= 0.5) + ".", "",
                 "Kernel work in those samples, inclusive, % of them:", "",
                 "| kernel function | % | what it is here |", "|---|---:|---|")
        for sym, what in [
            ("__do_sys_clone", "fork: the child gets a copy of ember's page tables and fd table"),
            ("dup_mmap", "  of which copying the memory map (copy_page_range)"),
            ("dup_fd", "  of which copying the fd table (about 2 fds per service)"),
            ("exit_mmap", "the child's execve dropping its copy of ember's memory"),
            ("do_close_on_exec", "the child's execve closing every close-on-exec fd it inherited"),
            ("do_wp_page", "copy-on-write faults after each fork (ember writing its own pages)"),
            ("asm_exc_page_fault", "every page fault"),
            ("__x64_sys_mkdir", "mkdir of the service's cgroup"),
            ("cgroup_procs_write", "the child's write to cgroup.procs (CPU only; waits are not samples)"),
            ("__x64_sys_pipe2", "pipe2: output pipes"),
            ("__x64_sys_socketpair", "socketpair: std's exec error channel"),
            ("__x64_sys_epoll_ctl", "epoll_ctl: the output pipes registered with tokio"),
            ("__x64_sys_close", "close"),
            ("__x64_sys_openat", "openat (cgroup.procs, cpu.stat, memory.events, /dev/null)"),
            ("__x64_sys_write", "write (ember's log lines, cgroup.procs)"),
            ("__x64_sys_rt_sigaction", "rt_sigaction: the child resets 64 dispositions"),
            ("schedule", "context switches"),
        ]:
            v = rows.get(f"{sym}")
            self.say(f"| {sym} | {rel(v[0]):.1f} | {what} |" if v else f"| {sym} | — | {what} |")
        self.say("", "Top self symbols, % of ember's samples (user-space stacks are not unwound: "
                 "the release build has no frame pointers):", "", "```")
        top = sorted(rows.items(), key=lambda kv: -kv[1][1])[:18]
        self.say(*[f"{rel(v[1]):6.1f}%  {v[2]} {sym[:110]}" for sym, v in top])
        self.say("```", "")

    def sigterm(self):
        if shutil.which("strace"):
            out = os.path.join(self.tmp, "strace-sigterm.txt")
            inst = self.boot(self.ember, M.N_BOOT, "strace-sigterm", mode="term", wait=False,
                             wrap=lambda i: ["strace", "-f", "-tt", "-T", "-s", "64", "-o", out])
            try:
                if not inst.wait_records(M.BOOT_SIGNAL_AT, timeout=600, stall=120):
                    raise RuntimeError("the boot did not get going")
                os.kill(self.ember_pid(inst), signal.SIGTERM)
                inst.proc.wait(timeout=300)
                self.fake.unregister(inst.proc.pid)
            except subprocess.TimeoutExpired:
                self.stop_ns(inst)
            self.say(*sigterm_summary(out, self.args.ember), "")
        if not shutil.which("perf"):
            return
        # The same, untraced, with perf recording only from the SIGTERM to the first
        # service's SIGTERM record.
        data = os.path.join(self.tmp, "perf-sigterm.data")
        ctl, ack = os.path.join(self.tmp, "perf-sigterm.ctl"), os.path.join(self.tmp, "perf-sigterm.ack")
        os.mkfifo(ctl)
        os.mkfifo(ack)
        inst = self.boot(self.ember, M.N_BOOT, "perf-sigterm", mode="term", wait=False,
                         wrap=lambda i: ["perf", "record", "-q", "-e", "cpu-clock", "-F", "10000",
                                         "-g", "-D", "-1", "--control", f"fifo:{ctl},{ack}",
                                         "-o", data, "--"])
        fc = open(ctl, "w")
        fa = open(ack)
        try:
            if not inst.wait_records(M.BOOT_SIGNAL_AT, timeout=600, stall=120):
                raise RuntimeError("the boot did not get going")
            fc.write("enable\n")
            fc.flush()
            fa.read(4)
            t_sig = time.monotonic()
            os.kill(self.ember_pid(inst), signal.SIGTERM)
            while not inst.records.times("t") and time.monotonic() < t_sig + 60:
                time.sleep(0.0005)
            fc.write("disable\n")
            fc.flush()
            fa.read(4)
            first = min(inst.records.times("t") or [float("nan")])
            inst.proc.wait(timeout=300)
            self.fake.unregister(inst.proc.pid)
        except subprocess.TimeoutExpired:
            self.stop_ns(inst)
        finally:
            fc.close()
            fa.close()
        rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "-q", "-g", "none", "--comm",
                              "ember", "--no-children", "--percentage", "relative", "--sort", "dso,sym"],
                             capture_output=True, text=True, timeout=600).stdout.splitlines()
        self.say(f"perf, untraced: SIGTERM → the first service's SIGTERM record {(first - t_sig) * 1e3:.0f} ms; "
                 "what ember's CPU did meanwhile (self, % of its samples):", "", "```")
        self.say(*[l.rstrip()[:150] for l in rep if l.strip()][:20])
        self.say("```", "")

    def spawn(self):
        """bench/spawn_cost.c: one spawn's cost to the spawning thread, by way of spawning,
        from a small process and from one holding what ember holds at 1,000 services."""
        src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spawn_cost.c")
        exe = os.path.join(self.tmp, "spawn_cost")
        subprocess.run(["cc", "-O2", "-o", exe, src], check=True, timeout=120)
        for fds, mib, pin in [(0, 0, False), (2000, 12, False), (2000, 12, True)]:
            argv = [exe, "300", str(fds), str(mib), "/bin/true"]
            if pin:
                argv = ["taskset", "-c", "0"] + argv
            out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
            self.say(f"spawn_cost: 300 spawns each way, the spawner holding {fds} fds and {mib} MiB "
                     f"of touched heap{', pinned to one CPU (taskset -c 0)' if pin else ''}:", "",
                     out.stdout.strip() or out.stderr.strip(), "")

    def massif(self, n):
        if not shutil.which("valgrind"):
            self.say("(valgrind not installed)")
            return
        out = os.path.join(self.tmp, f"massif-{n}.out")
        steady = os.path.join(self.tmp, f"massif-{n}-steady.out")
        # /bin/sh is PID 1 of the namespace; ember under valgrind is its child, a supervisor
        # that on SIGTERM stops its services and exits, so massif writes its file.
        inst = M.Instance(self.fake, self.ember, M.probe_services(self.args.probe, n), f"massif-{n}")
        inst.argv = ["/bin/sh", "-c", 'valgrind --tool=massif --depth=60 --threshold=0.1 --fullpath-after= '
                     f'--massif-out-file={out} "$@" & wait', "sh"] + inst.argv
        inst.start()
        try:
            if not inst.wait_records(n, timeout=900, stall=180):
                raise RuntimeError(f"under valgrind only {inst.records.count()}/{n} started")
            time.sleep(3)
            # valgrind's process (whatever its comm) is the init's only child but the probes'.
            tool = [p for p in M.children_of(inst.init) or [] if M.comm_of(p) != "probe"]
            # The heap once all are up (what a board keeps), besides the peak massif writes
            # at the end (start-up's: the parsed configuration).
            for p in tool:
                # vgdb finds valgrind by its pid in the namespace (its FIFOs' names).
                subprocess.run(["nsenter", "-t", str(inst.init), "-p", "-m", "vgdb",
                                f"--pid={M.ns_local_pid(p)}", "detailed_snapshot", steady],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
            for p in tool:
                os.kill(p, signal.SIGTERM)
            inst.proc.wait(timeout=300)
        finally:
            if inst.proc.poll() is None:
                os.kill(inst.init, signal.SIGKILL)
                inst.proc.wait(timeout=30)
            self.fake.unregister(inst.proc.pid)
        if not os.path.exists(out):
            self.say("(massif wrote nothing)")
            return
        self.say(*massif_summary(out, n, "at its peak"), "")
        if os.path.exists(steady):
            self.say(*massif_summary(steady, n, "once all had started (vgdb detailed_snapshot)"), "")
        else:
            self.say("(vgdb took no snapshot once all had started)", "")


def ember_sources():
    """Full paths of ember's own sources (massif runs with --fullpath-after=), but main.rs."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = set()
    for top in ("src", "ipc/src", "adapters/dbus/src"):
        for root, _, files in os.walk(os.path.join(repo, top)):
            paths.update(os.path.join(root, f) for f in files if f.endswith(".rs"))
    paths.discard(os.path.join(repo, "src", "main.rs"))
    return paths


def massif_summary(path, n, when):
    """The peak (or only) snapshot of a massif file, attributed to ember's own code: for each
    allocation, the first frame (from the allocation up the stack) that is in ember's
    sources, with the allocated type when a frame names one."""
    text = open(path, errors="replace").read()
    snaps = text.split("snapshot=")[1:]
    peak = next((s for s in snaps if "heap_tree=peak" in s), None)
    if peak is None:
        detailed = [s for s in snaps if "heap_tree=detailed" in s]
        if not detailed:
            return ["(massif: no detailed snapshot)"]
        peak = max(detailed, key=lambda s: int(re.search(r"mem_heap_B=(\d+)", s).group(1)))
    total = int(re.search(r"mem_heap_B=(\d+)", peak).group(1))
    extra = int(re.search(r"mem_heap_extra_B=(\d+)", peak).group(1))
    node_re = re.compile(r"^ *n(\d+): (\d+) (.*)$")
    lines = [l for l in peak.splitlines() if node_re.match(l)]
    pos = 0

    def parse():
        nonlocal pos
        m = node_re.match(lines[pos])
        pos += 1
        kids = [parse() for _ in range(int(m.group(1)))]
        return int(m.group(2)), m.group(3), kids

    root = parse()
    ours = ember_sources()
    loc_re = re.compile(r"\(([^()]*\.rs):(\d+)\)\s*$")
    tally = collections.Counter()
    types = {}

    def typ(desc):
        m = re.search(r"<(.*)>", desc)
        return m.group(1)[:110] if m else None

    def walk(node, seen_type):
        b, desc, kids = node
        loc = loc_re.search(desc)
        t = seen_type or typ(desc)
        if loc and loc.group(1) in ours:
            fn = re.sub(r"^0x[0-9A-F]+: ", "", desc[:loc.start()]).strip()
            fn = re.sub(r"<.*>", "", fn)[:60]
            where = loc.group(1).split("/src/", 1)[-1] if "/ipc/src/" not in loc.group(1) \
                else "ipc/" + loc.group(1).split("/ipc/src/", 1)[-1]
            key = f"{where}:{loc.group(2)} {fn}"
            tally[key] += b
            if t:
                types.setdefault(key, t)
            return
        if not kids:
            key = "elsewhere: " + re.sub(r"^0x[0-9A-F]+: ", "", desc)[:90]
            tally[key] += b
            return
        rest = b - sum(k[0] for k in kids)
        if rest > 0:
            tally["below massif's threshold"] += rest
        for k in kids:
            walk(k, t)

    for k in root[2]:
        walk(k, None)
    out = [f"valgrind massif, {n} services (ember not PID 1, same configuration), the heap {when}: "
           f"{total / 1024:,.0f} KiB requested + {extra / 1024:,.0f} KiB malloc overhead = "
           f"{(total + extra) / n:,.0f} bytes per service. By the first frame in ember's code "
           "(bytes per service; the type allocated, when a frame names it):", "",
           "| where (ember's code) | B per service | KiB | type |", "|---|---:|---:|---|"]
    for key, b in tally.most_common(25):
        out.append(f"| {key} | {b / n:,.0f} | {b / 1024:,.0f} | {types.get(key, '')} |")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ember", required=True, help="ember built with symbols (profile.sh builds it)")
    ap.add_argument("--dinit", default=None)
    ap.add_argument("--probe", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--services", default="100,1000")
    ap.add_argument("--parts", default="untraced,spawn,strace,perf,sigterm,massif")
    args = ap.parse_args()
    ns = [int(x) for x in args.services.split(",")]
    parts = args.parts.split(",")
    os.chmod(args.tmp, 0o755)
    p = Prof(args)
    print(f"## ember start-up profile ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} CPUs, {M.cpu_busy(1.0) * 100:.0f}% busy with other work)\n", flush=True)
    try:
        if "untraced" in parts:
            log("== untraced")
            p.untraced(ns)
        for n in ns:
            if "strace" in parts:
                log(f"== strace {n}")
                p.say(f"### strace, {n} services", "")
                p.strace(n)
        for n in ns:
            if "perf" in parts:
                log(f"== perf {n}")
                p.say(f"### perf, {n} services", "")
                p.perf(n)
        if "sigterm" in parts:
            log("== sigterm")
            p.say("### SIGTERM during a boot of 3,000", "")
            p.sigterm()
        if "spawn" in parts:
            log("== spawn_cost")
            p.say("### What one spawn costs, by way of spawning (bench/spawn_cost.c)", "")
            p.spawn()
        if "massif" in parts:
            log(f"== massif {ns[-1]}")
            p.say(f"### heap by allocation site, {ns[-1]} services", "")
            p.massif(ns[-1])
    finally:
        for pid in list(p.fake.live):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    main()
