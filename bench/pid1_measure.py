#!/usr/bin/python3
"""PID-1 benchmark helper for bench/pid1.sh (python3, standard library only).

    pid1_measure.py reap --tmp DIR --ember BIN [--runs 5] [--orphans 10000]  -> DIR/reap.json
    pid1_measure.py boot [--variant V] LOG...                               -> JSON on stdout
    pid1_measure.py native-boot --tmp DIR --ember BIN --config GUEST.toml   -> JSON on stdout
    pid1_measure.py report --tmp DIR                                        -> markdown table

reap: ember, tini and catatonit, each as PID 1 of a fresh PID namespace
    unshare --pid --fork --mount-proc --uts --kill-child <init ...>
run one "main" child (main.py, written into DIR). On a go file, main forks an
intermediate, which forks N children that exit at once (os._exit(0)), sleeps 0.5 s so
that all of them are zombies under it, writes time.monotonic() to a file and exits: its
N zombies are reparented to PID 1 at that instant. main reaps only the intermediate and
sleeps. This script polls /proc/<PID 1>/task/<PID 1>/children in a tight loop until only
main is left and takes time.monotonic() then (the same CLOCK_MONOTONIC): reap time =
done - start. The CPU PID 1 used meanwhile is the utime+stime delta of /proc/PID/stat
(clock ticks, coarse) and the sum of /proc/PID/task/*/schedstat run times (ns).
Runs are interleaved (the order of the inits rotates every round); the median is
reported. Every wait is bounded.

boot: reads ember's own lines from qemu console logs:
    ember ... starting as PID 1 (Machine) at uptime X s
    first service spawned N us after ember started (uptime Y s)
    boot complete: every service settled M ms after ember started (uptime Z s)

native-boot: the guest's services on this machine, ember as PID 1 of a PID namespace
(its last service only sleeps): ember's own first-spawn and boot-complete figures.

report: the markdown table (ratios are peer / ember) from DIR/reap.json,
DIR/boot-*.json, DIR/native-boot.json, DIR/check-native.txt and DIR/sizes.txt.
"""

import argparse
import glob
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")

# Runs inside the namespace as the init's only child. argv: DIR N
MAIN_PY = r'''
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 60
while not os.path.exists(os.path.join(d, "go")):
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.005)
inter = os.fork()
if inter == 0:
    made = 0
    try:
        for _ in range(n):
            if os.fork() == 0:
                os._exit(0)
            made += 1
    except OSError as e:
        with open(os.path.join(d, "error"), "w") as f:
            f.write(f"fork {made + 1} of {n}: {e}\n")
    time.sleep(0.5)              # every child has exited: N zombies under us
    t = time.monotonic()
    with open(os.path.join(d, "start.tmp"), "w") as f:
        f.write(repr(t) + "\n")
    os.rename(os.path.join(d, "start.tmp"), os.path.join(d, "start"))
    os._exit(0)                  # the zombies go to PID 1 now
os.waitpid(inter, 0)             # reap only the intermediate
while True:
    time.sleep(3600)
'''


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def read_bytes(path, size=1 << 20):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, size)
    except OSError:
        return None
    finally:
        os.close(fd)


def children(pid):
    raw = read_bytes(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in raw.split()] if raw else []


def cpu_ticks(pid):
    raw = read_bytes(f"/proc/{pid}/stat")
    if raw is None:
        return None
    f = raw[raw.rindex(b")") + 2:].split()
    return int(f[11]) + int(f[12])          # utime + stime (fields 14 and 15)


def schedstat(pid):
    """(ns on a CPU, ns waiting on a run queue, context switches), summed over every
    thread: /proc/PID/task/TID/schedstat."""
    total = [0, 0, 0]
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        raw = read_bytes(f"/proc/{pid}/task/{tid}/schedstat")
        if raw:
            for i, v in enumerate(raw.split()[:3]):
                total[i] += int(v)
    return total


def cpu_busy(window=0.2):
    """Fraction of all CPUs busy (not idle/iowait) over `window` seconds, from /proc/stat."""
    def sample():
        f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return sum(f), f[3] + f[4]
    t0, i0 = sample()
    time.sleep(window)
    t1, i1 = sample()
    return 1 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet(limit=0.15, timeout=3):
    """Waits (bounded) until the machine is mostly idle; returns the last busy fraction."""
    deadline = time.monotonic() + timeout
    while True:
        b = cpu_busy()
        if b <= limit or time.monotonic() > deadline:
            return b


def proc_state(pid):
    raw = read_bytes(f"/proc/{pid}/stat")
    if raw is None:
        return None
    return raw[raw.rindex(b")") + 2:raw.rindex(b")") + 3].decode()


def wait_for(pred, timeout, interval=0.002, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# (a) reaping orphans
# --------------------------------------------------------------------------

class Reap:
    def __init__(self, args):
        self.tmp = args.tmp
        self.ember = args.ember
        self.n = args.orphans
        self.runs = args.runs
        self.python = sys.executable if os.path.isabs(sys.executable) else "/usr/bin/python3"
        self.main_py = os.path.join(self.tmp, "main.py")
        with open(self.main_py, "w") as f:
            f.write(MAIN_PY)
        self.pidfile = os.path.join(self.tmp, "unshare.pids")
        # Off by default (a tight loop). Reading the children file takes tasklist_lock
        # for reading, which PID 1's wait4 (release_task) takes for writing: a sleep
        # between polls shows how much the polling itself slows every init down.
        self.poll_sleep = float(os.environ.get("PID1_POLL_SLEEP_MS", "0")) / 1000
        # With 2 or more CPUs: this poller on the first CPU, the namespace (PID 1, main and
        # the orphans) on the others, so that the tight loop never takes PID 1's CPU.
        cpus = sorted(os.sched_getaffinity(0))
        self.pin_init = []
        if len(cpus) >= 2 and os.environ.get("PID1_PIN", "1") == "1":
            os.sched_setaffinity(0, {cpus[0]})
            self.pin_init = ["taskset", "-c", ",".join(str(c) for c in cpus[1:])]
        self.live = set()

    def register(self, pid, add=True):
        (self.live.add if add else self.live.discard)(pid)
        with open(self.pidfile, "w") as f:
            f.write("".join(f"{p}\n" for p in sorted(self.live)))

    def argv(self, init, d):
        main = [self.python, self.main_py, d, str(self.n)]
        if init == "tini":
            return ["tini", "--"] + main
        if init == "catatonit":
            return ["catatonit", "--"] + main
        cfg = os.path.join(d, "ember.toml")
        q = json.dumps      # TOML basic strings and JSON strings agree for paths
        with open(cfg, "w") as f:
            f.write("[control]\n"
                    f"socket = {q(os.path.join(d, 'ember.sock'))}\n\n"
                    "[service.main]\n"
                    f"command = [{', '.join(q(a) for a in main)}]\n"
                    'stdout = "null"\n')
        return [self.ember, "--config", cfg]

    def once(self, init, run):
        d = os.path.join(self.tmp, f"reap-{init}-{run}")
        os.mkdir(d)
        argv = self.argv(init, d)
        logf = open(os.path.join(d, "init.log"), "wb")
        proc = subprocess.Popen(
            self.pin_init + ["unshare", "--pid", "--fork", "--mount-proc", "--uts", "--kill-child"] + argv,
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, cwd=d)
        self.register(proc.pid)
        try:
            pid1 = wait_for(lambda: (children(proc.pid) or [None])[0], 10, what=f"{init}: PID 1")
            main = wait_for(lambda: (children(pid1) or [None])[0], 10, what=f"{init}: main")
            # Let PID 1 settle (ember's start-up costs CPU too; not part of the reaping).
            time.sleep(0.3)
            busy = wait_quiet()
            ticks0, ss0 = cpu_ticks(pid1), schedstat(pid1)
            open(os.path.join(d, "go"), "w").close()
            inter = wait_for(lambda: (children(main) or [None])[0], 10, what=f"{init}: intermediate")
            start_file = os.path.join(d, "start")
            wait_for(lambda: os.path.exists(start_file), 60, interval=0.001,
                     what=f"{init}: {self.n} forks")
            # Tight loop: until PID 1's children are only main (or fewer).
            path = f"/proc/{pid1}/task/{pid1}/children"
            mine = f"{main} ".encode()
            seen_many = False
            deadline = time.monotonic() + 60
            polls = 0
            while True:
                fd = os.open(path, os.O_RDONLY)
                raw = os.read(fd, 1 << 20)
                os.close(fd)
                polls += 1
                if len(raw) <= len(mine):
                    if raw in (b"", mine) and (
                            seen_many or proc_state(inter) in (None, "Z", "X")):
                        done = time.monotonic()
                        break
                else:
                    seen_many = True
                if self.poll_sleep:
                    time.sleep(self.poll_sleep)
                if polls % 256 == 0 and time.monotonic() > deadline:
                    raise TimeoutError(f"{init}: {len(raw.split())} children of PID 1 still there after 60 s")
            ticks1, ss1 = cpu_ticks(pid1), schedstat(pid1)
            with open(start_file) as f:
                start = float(f.read())
            err = os.path.join(d, "error")
            if os.path.exists(err):
                raise RuntimeError(f"{init}: {open(err).read().strip()}")
            return {
                "ms": (done - start) * 1000,
                "cpu_ms": (ticks1 - ticks0) * 1000 / CLK_TCK,
                "run_ms": (ss1[0] - ss0[0]) / 1e6,
                "queue_ms": (ss1[1] - ss0[1]) / 1e6,
                "switches": ss1[2] - ss0[2],
                "busy_before": busy,
                "polls": polls,
                "threads": len(os.listdir(f"/proc/{pid1}/task")),
            }
        finally:
            # unshare --kill-child: SIGKILL to unshare makes the kernel SIGKILL its PID 1,
            # which takes the whole namespace with it.
            try:
                proc.kill()
                proc.wait(timeout=10)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
            logf.close()
            self.register(proc.pid, add=False)

    def run(self):
        inits = ["ember", "tini", "catatonit"]
        res = {i: [] for i in inits}
        for r in range(self.runs):
            order = inits[r % 3:] + inits[:r % 3]
            for init in order:
                x = self.once(init, r)
                log(f"  reap {init} run {r + 1}: {x['ms']:.1f} ms, PID 1 cpu "
                    f"{x['cpu_ms']:.0f} ms (ticks) / {x['run_ms']:.1f} ms on CPU + "
                    f"{x['queue_ms']:.1f} ms runnable-waiting, {x['switches']} switches (schedstat), "
                    f"{x['polls']} polls, {x['threads']} thread(s), machine {x['busy_before']:.0%} busy before")
                res[init].append(x)
        out = {"orphans": self.n, "runs": self.runs, "results": res}
        with open(os.path.join(self.tmp, "reap.json"), "w") as f:
            json.dump(out, f, indent=1)


# --------------------------------------------------------------------------
# (b) qemu boot logs
# --------------------------------------------------------------------------

RE_START = re.compile(r"ember: ember \S+ starting as PID 1 \((\w+)\) at uptime ([0-9.]+) s")
RE_FIRST = re.compile(r"ember: first service spawned (\d+) us after ember started \(uptime ([0-9.]+) s\)")
RE_DONE = re.compile(r"ember: boot complete: every service settled (\d+) ms after ember started "
                     r"\(uptime ([0-9.]+) s\)")
RE_ACTIVE = re.compile(r"ember: ([\w.@-]+): active \(")
RE_FAILED = re.compile(r"ember: ([\w.@-]+): failed \(")


def parse_boot(path):
    text = open(path, "rb").read().decode(errors="replace")
    r = {"log": path}
    m = RE_START.search(text)
    if m:
        r["role"], r["x"] = m.group(1), float(m.group(2))
    m = RE_FIRST.search(text)
    if m:
        r["first_us"], r["y"] = int(m.group(1)), float(m.group(2))
    m = RE_DONE.search(text)
    if m:
        r["settled_ms"], r["z"] = int(m.group(1)), float(m.group(2))
    r["active"] = len(set(RE_ACTIVE.findall(text)))
    m = re.search(r"ember-bench: (\d+) services active", text)       # quiet boots
    if m:
        r["active"] = max(r["active"], int(m.group(1)))
    m = re.search(r"ember-bench: 5 x ember check took (\d+) ms", text)
    if m:
        r["check_ms"] = int(m.group(1))
    r["failed"] = sorted(set(RE_FAILED.findall(text)))
    r["powered_off"] = bool(re.search(r"reboot: Power down|System halted|Power down", text))
    r["ok"] = all(k in r for k in ("x", "first_us", "z")) and not r["failed"]
    return r


def native_boot(args):
    """The guest configuration on this machine, ember as PID 1 of a PID namespace
    (Namespace role: no mounts, no hostname), the last service's power-off replaced by a
    sleep: ember's own first-spawn and boot-complete lines, for comparison with TCG."""
    import tomllib
    with open(args.config, "rb") as f:
        guest = tomllib.load(f)
    out = []
    for run in range(args.runs):
        d = os.path.join(args.tmp, f"native-{run}")
        os.mkdir(d)
        text = open(args.config).read()
        # Same file, but the control socket in the temp dir and a harmless last service.
        start = text.index("[service.poweroff]")
        tail = text[start:]
        cmd_at = tail.index("command = [")
        text = (text[:start] + tail[:cmd_at] + 'command = ["/bin/sleep", "30"]\n')
        text = text.replace('stdout = "console"', 'stdout = "null"')
        cfg = os.path.join(d, "ember.toml")
        with open(cfg, "w") as f:
            f.write(f'[control]\nsocket = {json.dumps(os.path.join(d, "ember.sock"))}\n\n' + text)
        logp = os.path.join(d, "ember.log")
        with open(logp, "wb") as logf:
            proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "--uts", "--kill-child",
                                     args.ember, "--config", cfg],
                                    stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, cwd=d)
            try:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and proc.poll() is None:
                    if b"boot complete" in open(logp, "rb").read():
                        break
                    time.sleep(0.02)
            finally:
                proc.kill()
                proc.wait(timeout=10)
        t = open(logp, "rb").read().decode(errors="replace")
        r = {"services": len(guest.get("service", {}))}
        m = re.search(r"first service spawned (\d+) us", t)
        if m:
            r["first_us"] = int(m.group(1))
        m = re.search(r"boot complete: every service settled (\d+) ms", t)
        if m:
            r["settled_ms"] = int(m.group(1))
        out.append(r)
    json.dump(out, sys.stdout)
    print()


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, nd=1):
    return "n/a" if v is None else f"{v:.{nd}f}"


def ratio(peer, ember):
    if peer is None or ember is None or ember <= 0:
        return ""
    r = peer / ember
    return f" ({r:.2f}×)" if r < 10 else f" ({r:.0f}×)"


def report(tmp):
    rows = []          # metric, ember, tini, catatonit, goal
    reap = None
    if os.path.exists(os.path.join(tmp, "reap.json")):
        reap = json.load(open(os.path.join(tmp, "reap.json")))
    if reap:
        res = reap["results"]
        m = {i: med([x["ms"] for x in res[i]]) for i in res}
        goal = ""
        if m["ember"] is not None and m["tini"] is not None:
            goal = ("met" if m["ember"] <= m["tini"] else
                    f"missed: ember {m['ember'] / m['tini']:.2f}× tini's time") + " (≤ tini)"
        rows.append((f"reap {reap['orphans']:,} orphans (ms, median of {reap['runs']})",
                     fmt(m["ember"]), fmt(m["tini"]) + ratio(m["tini"], m["ember"]),
                     fmt(m["catatonit"]) + ratio(m["catatonit"], m["ember"]), goal))
        b = {i: min([x["ms"] for x in res[i]], default=None) for i in res}
        rows.append((f"reap {reap['orphans']:,} orphans (ms, best of {reap['runs']})",
                     fmt(b["ember"]), fmt(b["tini"]) + ratio(b["tini"], b["ember"]),
                     fmt(b["catatonit"]) + ratio(b["catatonit"], b["ember"]), ""))
        c = {i: med([x["run_ms"] for x in res[i]]) for i in res}
        t = {i: med([x["cpu_ms"] for x in res[i]]) for i in res}
        rows.append(("PID 1 CPU during the reap (ms: schedstat / utime+stime, median)",
                     f"{fmt(c['ember'])} / {fmt(t['ember'], 0)}",
                     f"{fmt(c['tini'])} / {fmt(t['tini'], 0)}" + ratio(c["tini"], c["ember"]),
                     f"{fmt(c['catatonit'])} / {fmt(t['catatonit'], 0)}" + ratio(c["catatonit"], c["ember"]),
                     ""))
    for arch in ("x86_64", "aarch64"):
        allboots = []
        for f in sorted(glob.glob(os.path.join(tmp, f"boot-{arch}-*.json"))):
            allboots += json.load(open(f))
        for variant in ("loglevel7", "quiet"):
            boots = [b for b in allboots if b.get("variant") == variant]
            if not boots:
                continue
            tag = f"qemu {arch}, {'loglevel=7' if variant == 'loglevel7' else 'quiet'}"
            n_all = len(boots)

            def over(key_ok, value):
                got = [value(b) for b in boots if key_ok(b) and not b["failed"]]
                return med(got), f"median of {len(got)}/{n_all} boots"
            x, xn = over(lambda b: "x" in b, lambda b: b["x"])
            n, nn = over(lambda b: "first_us" in b, lambda b: b["first_us"] / 1000)
            z, zn = over(lambda b: "x" in b and "z" in b, lambda b: (b["z"] - b["x"]) * 1000)
            svc = med([b["active"] for b in boots])
            failed = sorted({f for b in boots for f in b["failed"]})
            rows.append((f"{tag}: kernel handover to PID 1 (uptime at ember's start, s; {xn})",
                         fmt(x, 3), "", "", ""))
            goal = "" if n is None else ("met" if n < 20 else "missed") + " (< 20 ms)"
            rows.append((f"{tag}: PID 1 start to first spawn (ms; {nn})", fmt(n, 2), "", "", goal))
            missing = sum(1 for b in boots if "z" not in b)
            value = fmt(z)
            if missing:
                value += f" (no \"boot complete\" line in {missing}/{n_all})"
            if failed:
                value += f" (failed: {', '.join(failed)})"
            rows.append((f"{tag}: boot to all {fmt(svc, 0)} services active (ms, Z - X; {zn})",
                         value, "", "", ""))
    nf = os.path.join(tmp, "native-boot.json")
    if os.path.exists(nf):
        nat = json.load(open(nf))
        n = med([b["first_us"] / 1000 for b in nat if "first_us" in b])
        z = med([b["settled_ms"] for b in nat if "settled_ms" in b])
        k = len([b for b in nat if "settled_ms" in b])
        goal = "" if n is None else ("met" if n < 20 else "missed") + " (< 20 ms)"
        rows.append((f"native x86_64, PID 1 of a namespace, same services: PID 1 start to first spawn "
                     f"(ms; median of {k}/{len(nat)})", fmt(n, 2), "", "", goal))
        rows.append((f"native x86_64, PID 1 of a namespace: ember start to all services active "
                     f"(ms, ember's own count; median of {k}/{len(nat)})", fmt(z, 0), "", "", ""))
    # How much slower the emulated CPUs are: 5 runs of `ember check` of the guest config,
    # in the guest (from /proc/uptime, 10 ms steps) and on this machine.
    native = None
    nf = os.path.join(tmp, "check-native.txt")
    if os.path.exists(nf):
        native = float(open(nf).read())
    calib = [("x86_64 (native)", native)]
    for arch in ("x86_64", "aarch64"):
        cs = []
        for f in sorted(glob.glob(os.path.join(tmp, f"boot-{arch}-*.json"))):
            cs += [b["check_ms"] for b in json.load(open(f)) if "check_ms" in b]
        if cs:
            calib.append((f"{arch} guest", med(cs)))
    if len(calib) > 1:
        text = ", ".join(f"{k} {fmt(v)}" + (f" ({v / native:.0f}× native)" if native and "guest" in k else "")
                         for k, v in calib)
        rows.append(("calibration: 5 × `ember check` of the guest config, wall ms (TCG vs this CPU)",
                     text, "", "", ""))

    sizes = {}         # key -> (bytes | "failed" | "n/a", note)
    sf = os.path.join(tmp, "sizes.txt")
    if os.path.exists(sf):
        for line in open(sf):
            parts = line.strip().split(" ", 2)
            if len(parts) >= 2:
                sizes[parts[0]] = (int(parts[1]) if parts[1].isdigit() else parts[1],
                                   parts[2] if len(parts) > 2 else "")

    def size_row(label, key, limit):
        if key not in sizes:
            return
        v, note = sizes[key]
        goal_text = f"≤ {limit} MiB" if limit else ""
        label = f"{label}, {note} (MiB)" if note else f"{label} (MiB)"
        if not isinstance(v, int):
            rows.append((label, "n/a (not built yet)" if v == "n/a" else "build failed", "", "", goal_text))
            return
        extra = ""
        if key == "x86_64-musl-all" and isinstance(sizes.get("x86_64-musl", (None,))[0], int):
            extra = f" (+{(v - sizes['x86_64-musl'][0]) / 1024:.0f} KiB)"
        v /= 1 << 20
        goal = "" if not limit else ("met" if v <= limit else "missed") + f" ({goal_text})"
        rows.append((label, f"{v:.2f}{extra}", "", "", goal))
    size_row("binary, x86_64 musl static, stripped, no MQTT/D-Bus", "x86_64-musl", 1.5)
    size_row("binary, x86_64 musl static, stripped, every feature incl. TLS", "x86_64-musl-all", 3)
    size_row("binary, aarch64 musl static, stripped", "aarch64-musl", None)
    size_row("binary, x86_64 glibc target/release/ember, stripped (reference)", "x86_64-gnu", None)

    print("| metric | ember | tini | catatonit | goal |")
    print("|---|---:|---:|---:|---|")
    for r in rows:
        print("| " + " | ".join(x if x else "—" if i in (2, 3) else x for i, x in enumerate(r)) + " |")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("reap")
    a.add_argument("--tmp", required=True)
    a.add_argument("--ember", required=True)
    a.add_argument("--runs", type=int, default=5)
    a.add_argument("--orphans", type=int, default=10000)
    b = sub.add_parser("boot")
    b.add_argument("--variant", default="loglevel7")
    b.add_argument("logs", nargs="+")
    nb = sub.add_parser("native-boot")
    nb.add_argument("--tmp", required=True)
    nb.add_argument("--ember", required=True)
    nb.add_argument("--config", required=True)
    nb.add_argument("--runs", type=int, default=3)
    c = sub.add_parser("report")
    c.add_argument("--tmp", required=True)
    args = ap.parse_args()
    if getattr(args, "ember", None):
        args.ember = os.path.abspath(args.ember)
    if args.cmd == "reap":
        bench = Reap(args)

        def on_term(signum, frame):
            raise SystemExit(128 + signum)     # the finally blocks stop every init
        signal.signal(signal.SIGTERM, on_term)
        bench.run()
    elif args.cmd == "native-boot":
        native_boot(args)
    elif args.cmd == "boot":
        out = []
        for p in args.logs:
            r = parse_boot(p)
            r["variant"] = args.variant
            out.append(r)
        json.dump(out, sys.stdout, indent=1)
        print()
    else:
        report(args.tmp)


if __name__ == "__main__":
    main()
