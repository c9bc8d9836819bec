#!/usr/bin/python3
"""Fault-injection soak of ember: 200 services of mixed kinds under chaos, then checks.

Driven by bench/soak.sh (which builds ember and installs the tools); can also be run
directly as root:  python3 bench/soak.py --ember target/release/ember --tmp DIR --minutes 2

ember runs as PID 1 of a fresh PID namespace
    unshare --pid --fork --mount-proc --uts --kill-child ember --config DIR/ember.toml
so that reaping everything in it is ember's job. Its 200 services (build_services()):
mosquitto and dbus-daemon themselves (ember's [mqtt] and [dbus] adapters talk to them),
plain sleepers, sleepers that `require` the broker, crash loops, slow starters, SIGTERM
ignorers, double-forkers (a grandchild that setsid()s out of the process group), fd
leakers and log floods (4 services, 10 MB/s in all of 100-byte lines, i.e. 100,000
lines a second, on stdout, into ember's log capture; --flood-mbps, --flood-line).

During the chaos (--minutes of it):
 - the broker and the bus are SIGKILLed, each at random every 2-8 s, and ember's two
   adapters, ember-mqtt and ember-dbus (ember starts them again), every 4-12 s;
 - a random service's main process is SIGKILLed every 0.3-0.9 s;
 - two clients send random start/stop/restart commands (~4/s in all) over the three
   interfaces, one command in flight per service at a time: `ember ctl`, `mosquitto_rr`
   (a JSON command with an id and a reply_to on ember/soak/service/NAME/cmd, waiting for
   the reply) and `busctl call io.ember.Init1 ... StartService/StopService/RestartService`.
   Each command is recorded with its outcome: ok (ember acknowledged it), refused (ember
   answered with an error), undelivered (the transport refused before ember saw it:
   no broker, no bus, name not owned) or unknown (sent, no answer: the broker or the bus
   died in between; ember may or may not have executed it);
 - `mosquitto_sub -q 1 -F '%U %r %q %t %p' -t ember/soak/#` (it reconnects and
   resubscribes by itself; restarted if it ever exits) and `busctl monitor --json=short
   io.ember.Init1` (restarted whenever the bus is gone) record every event to files.

All services have restart "always", start_limit 0 and restart_delay_max 2 s, so a
SIGKILLed or crashing service always comes back; the broker and the bus get neither
commands nor the random service kills (they have their own killers). Before the chaos,
once start-up has settled, ember's fd count and RSS are measured (10 samples, median).

Afterwards (chaos stopped, broker and bus back, services settled), the checks, each with
a PASS/FAIL line (the exit status is non-zero if any fails):
 - zombies: no process in state Z in ember's namespace in two samples 0.5 s apart at
   the end, nor in two samples 2 s apart during the run (strict). Processes outside
   every service's session ("escaped": the double-forkers' grandchildren) are counted
   and reported; with cgroups, every process must be in a running service's cgroup
   after the settling (strict: a stop that left a grandchild behind fails it);
 - final states: want down -> inactive; want up -> active (running), except crash
   loops (restart "always", start_limit 0: never failed), which may be active or
   activating. Every service is checked, the broker and the bus included;
 - acked commands: each service's final want is the want implied by the last command
   ember acknowledged on it (start/restart: up, stop: down; up if none), or by a later
   command whose outcome is unknown (such services are counted as ambiguous); and
   every MQTT state message of a service delivered from 2 s after an acknowledgement
   until the next command on that service was sent shows that want;
 - MQTT retained: a fresh `mosquitto_sub --retained-only` read of every state topic
   equals `ember ctl status --json` on state, sub_state, want and seq (snapshots taken
   before and after the read; a service that changed in between must lie between them);
 - MQTT live: the subscriber's last message per service, likewise;
 - seq: seq is one counter over all services, so every value ember published is a
   state message some service should show. Each value missing from the live stream must
   be covered by a republish of every service (after a reconnect: the adapter's own, or
   the retained messages the subscriber gets on resubscribing; or after the adapter
   lagged): a window of at most 250 messages holding every service that ends at or
   after the message that showed the gap and starts at most 250 messages before it;
 - D-Bus: GetManagedObjects of io.ember.Init1 equals `ember ctl status` (state,
   sub_state, want) for every service that did not change while reading; and no
   PropertiesChanged the monitor recorded changes nothing or Since alone;
 - fds: no fd leaker inherited any fd from ember beyond 0, 1 and 2;
 - ember's log has no panic and no "internal error";
 - fd count and RSS of ember within 10% of their values after start-up: measured (10
   samples, median) once start-up settled, and at the end after every stopped service
   was started again (so the same services run) and things settled.
Finally ember gets SIGTERM (as PID 1 of a namespace: stop everything, then reboot(2)
ends the namespace) and the shutdown time is reported.
"""

import argparse
import bisect
import collections
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

DEVICE = "soak"
PREFIX = "ember"
INFRA = ("mosquitto", "dbus")
T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------
# /proc
# ----------------------------------------------------------------------------------

def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return None


def stat_of(pid):
    """dict of /proc/PID/stat fields we need, or None."""
    s = read_text(f"/proc/{pid}/stat")
    if not s:
        return None
    lp, rp = s.find("("), s.rfind(")")
    f = s[rp + 2:].split()
    return {"comm": s[lp + 1:rp], "state": f[0], "ppid": int(f[1]), "pgid": int(f[2]),
            "sid": int(f[3]), "start": int(f[19])}


def ns_processes(ns):
    """Every process in PID namespace `ns` (a readlink of /proc/PID/ns/pid):
    host pid -> dict(stat fields, nspid)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{d}/ns/pid") != ns:
                continue
        except OSError:
            continue
        st = stat_of(d)
        status = read_text(f"/proc/{d}/status")
        if not st or not status:
            continue
        m = re.search(r"^NSpid:\s+(.*)$", status, re.M)
        if not m:
            continue
        st["nspid"] = int(m.group(1).split()[-1])
        cg = re.search(r"^0::(.*)$", read_text(f"/proc/{d}/cgroup") or "", re.M)
        st["cgroup"] = cg.group(1) if cg else None
        out[int(d)] = st
    return out


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    s = read_text(f"/proc/{pid}/stat")
    if not s:
        return None
    f = s[s.rfind(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def fd_kinds(pid):
    kinds = collections.Counter()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            kinds[target.split(":")[0] if ":" in target else "file"] += 1
    except OSError:
        pass
    return dict(kinds)


def rss_kib(pid):
    s = read_text(f"/proc/{pid}/status") or ""
    m = re.search(r"^VmRSS:\s+(\d+)", s, re.M)
    return int(m.group(1)) if m else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------------
# The services
# ----------------------------------------------------------------------------------

FLOOD_PY = r"""
import os, sys, time
rate = float(sys.argv[1])
body = b"x" * max(1, int(sys.argv[2]) - 11)
n = 0
chunk_lines = max(1, 25000 // (len(body) + 11))
t = time.monotonic()
while True:
    chunk = b"".join(b"%09d %s\n" % (n + i, body) for i in range(chunk_lines))
    n += chunk_lines
    os.write(1, chunk)
    t += len(chunk) / rate
    d = t - time.monotonic()
    if d > 0:
        time.sleep(d)
    elif d < -1:
        t = time.monotonic()
"""

FDLEAK_PY = r"""
import os, sys
fds = []
for fd in sorted(int(f) for f in os.listdir("/proc/self/fd")):
    try:
        target = os.readlink("/proc/self/fd/%d" % fd)
    except OSError:
        continue  # the directory listing's own fd, closed by now
    fds.append("%d=%s" % (fd, target))
print("inherited fds: " + " ".join(fds), flush=True)
kept = [os.open("/dev/null", os.O_RDONLY) for _ in range(64)]
r, w = os.pipe()
kept += [r, w]
for fd in kept:
    os.set_inheritable(fd, True)
os.execv("/bin/sleep", ["sleep", sys.argv[1]])
"""


def q(s):
    return json.dumps(s)


def build_services(tmp, port, flood_mbps, line_bytes):
    """name -> dict(kind, toml). 200 services, every one restart "always" and start_limit
    0 (a SIGKILLed or crashing service always comes back, and is never "failed")."""
    services = {}
    common = {"restart": '"always"', "start_limit": "0", "restart_delay": '"100ms"',
              "restart_delay_max": '"2s"', "stop_timeout": '"2s"'}

    def add(name, kind, command, **settings):
        keys = dict(common, **settings)
        body = "".join(f"{k} = {v}\n" for k, v in keys.items())
        services[name] = {"kind": kind, "toml": f"[service.{q(name)}]\n"
                          f"command = [{', '.join(q(a) for a in command)}]\n{body}"}

    add("mosquitto", "broker", ["/usr/sbin/mosquitto", "-c", f"{tmp}/mosquitto.conf"],
        ready=f'{{ tcp = "127.0.0.1:{port}" }}')
    # --print-address says it listens; dbus-daemon replaces the socket a SIGKILL left.
    add("dbus", "bus", ["/usr/bin/dbus-daemon", f"--config-file={tmp}/bus.conf", "--nofork",
                        "--nopidfile", "--nosyslog", "--print-address=1"],
        ready='{ log = "^unix:path=" }')
    mark = 100000000  # service i sleeps a unique number of seconds
    for i in range(84):
        add(f"sleep-{i:03d}", "sleeper", ["/bin/sleep", str(mark + i)])
    for i in range(10):
        add(f"dep-{i:02d}", "dependent", ["/bin/sleep", str(mark + 100 + i)],
            requires='["mosquitto"]')
    for i in range(20):
        # Runs 0.1-0.9 s and exits 3; backoff 200 ms doubling to 1 s, forever. Half are
        # ready 50 ms after the spawn, the rest at once.
        extra = {"ready": '{ delay = "50ms" }'} if i % 2 else {}
        add(f"crash-{i:02d}", "crash", ["/bin/sh", "-c", f"sleep 0.{i % 9 + 1}; exit 3"],
            restart_delay='"200ms"', restart_delay_max='"1s"', **extra)
    for i in range(20):
        secs = 1 + i % 3
        if i % 2:
            add(f"slow-{i:02d}", "slow", ["/bin/sleep", str(mark + 200 + i)],
                ready=f'{{ delay = "{secs}s" }}')
        else:
            add(f"slow-{i:02d}", "slow",
                ["/bin/sh", "-c", f"sleep {secs}; echo ready; exec /bin/sleep {mark + 200 + i}"],
                ready='{ log = "^ready$" }')
    for i in range(20):
        # SIGTERM ignored (an ignored disposition survives exec): a stop ends in SIGKILL.
        add(f"term-{i:02d}", "termignore",
            ["/bin/sh", "-c", f"trap '' TERM; exec /bin/sleep {mark + 300 + i}"],
            stop_timeout='"1s"')
    for i in range(20):
        # The subshell forks a grandchild and exits: the grandchild is orphaned (reaped by
        # ember, PID 1), has left the process group and session (setsid), and keeps the
        # service's stdout pipe open for 5 s.
        add(f"fork-{i:02d}", "doublefork",
            ["/bin/sh", "-c", f"(/usr/bin/setsid /bin/sleep 5 &); exec /bin/sleep {mark + 400 + i}"])
    for i in range(20):
        add(f"fdleak-{i:02d}", "fdleak", ["/usr/bin/python3", "-c", FDLEAK_PY, str(mark + 500 + i)])
    floods = 4
    for i in range(floods):
        add(f"flood-{i}", "flood",
            ["/usr/bin/python3", "-c", FLOOD_PY, str(flood_mbps * 1e6 / floods), str(line_bytes)])
    assert len(services) == 200, len(services)
    return services


def write_config(tmp, port, services):
    with open(f"{tmp}/mosquitto.conf", "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
                "max_queued_messages 100000\npersistence false\nlog_dest stdout\n")
    policy = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "config", "dbus-1",
                          "io.ember.Init1.conf")
    with open(f"{tmp}/bus.conf", "w") as f:
        f.write(f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={tmp}/bus.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <include>{os.path.abspath(policy)}</include>
</busconfig>
""")
    with open(f"{tmp}/ember.toml", "w") as f:
        f.write(f'[system]\ndevice = "{DEVICE}"\n\n[control]\nsocket = "{tmp}/control.sock"\n\n'
                f'[mqtt]\nurl = "mqtt://127.0.0.1:{port}"\nallow = ["*"]\n\n'
                f'[dbus]\nbus = "unix:path={tmp}/bus.sock"\ncontrol_group = "root"\n\n')
        for name in sorted(services):
            f.write(services[name]["toml"] + "\n")


# ----------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------

class Soak:
    def __init__(self, args):
        self.args = args
        self.ember = os.path.abspath(args.ember)
        self.tmp = os.path.abspath(args.tmp)
        self.port = free_port()
        self.sock = f"{self.tmp}/control.sock"
        self.bus = f"unix:path={self.tmp}/bus.sock"
        self.services = build_services(self.tmp, self.port, args.flood_mbps, args.flood_line)
        self.kinds = {n: s["kind"] for n, s in self.services.items()}
        # The adapters ember runs as services of its own ([mqtt], [dbus]).
        self.kinds.update({"ember-mqtt": "adapter", "ember-dbus": "adapter"})
        self.stop_chaos = threading.Event()
        self.stop_all = threading.Event()
        self.lock = threading.Lock()
        self.commands = []            # every command sent, as dicts
        self.busy = set()             # services with a command in flight
        self.kills = collections.Counter()
        self.live = []                # (mono, wall, retain, topic, payload) of the MQTT subscriber
        self.live_sessions = 0
        self.dbus_events = 0
        self.dbus_spurious = []       # PropertiesChanged that change nothing a state change would
        self.dbus_sessions = 0
        self.escaped_peak = 0
        self.zombie_samples = []      # (time, [host pids in Z])
        self.zombies_persistent = []  # seen in two consecutive samples during the run
        self.flood_bytes = 0
        self.peak = {"fds": 0, "rss": 0}
        self.flood_seconds = 0.0
        self.threads = []
        self.recorders = {}           # the subscriber processes running now
        self.unshare = None
        self.ember_pid = None
        self.ns = None
        self.status_cache = {}
        self.results = []             # (name, ok, detail)
        self.figures = []             # (name, value)

    # --- helpers ------------------------------------------------------------------

    def note_pid(self, proc, name):
        with open(f"{self.tmp}/pids", "a") as f:
            f.write(f"{proc.pid} {name}\n")

    def ctl(self, *args, timeout=20):
        return subprocess.run([self.ember, "ctl", "--socket", self.sock, *args],
                              capture_output=True, timeout=timeout)

    def status(self):
        """name -> status dict, from `ember ctl status --json`; {} if unanswered."""
        try:
            out = self.ctl("status", "--json")
        except subprocess.TimeoutExpired:
            return {}
        if out.returncode != 0:
            return {}
        try:
            return {s["name"]: s for s in json.loads(out.stdout)}
        except (ValueError, KeyError, TypeError):
            return {}

    def check(self, name, ok, detail):
        self.results.append((name, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)

    def figure(self, name, value):
        self.figures.append((name, value))

    def spawn_thread(self, target, *args):
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self.threads.append(t)
        return t

    def host_pid(self, nspid, procs=None):
        procs = procs if procs is not None else ns_processes(self.ns)
        for hp, p in procs.items():
            if p["nspid"] == nspid:
                return hp
        return None

    # --- start-up -----------------------------------------------------------------

    def start_ember(self):
        write_config(self.tmp, self.port, self.services)
        env = dict(os.environ)
        # Service lines are captured (ember ctl logs) but not logged: 10 MB/s of them would
        # fill the disk. Every transition and command stays in ember.log.
        env["EMBER_LOG"] = "info,ember::service=warn"
        logf = open(f"{self.tmp}/ember.log", "wb")
        self.unshare = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", "--uts", "--kill-child",
             self.ember, "--config", f"{self.tmp}/ember.toml"],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env)
        self.note_pid(self.unshare, "unshare")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            children = read_text(f"/proc/{self.unshare.pid}/task/{self.unshare.pid}/children") or ""
            if children.split() and os.path.exists(self.sock):
                self.ember_pid = int(children.split()[0])
                self.ns = os.readlink(f"/proc/{self.ember_pid}/ns/pid")
                log(f"ember is pid {self.ember_pid} on the host, PID 1 of its namespace")
                return
            if self.unshare.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit(f"ember did not start; see {self.tmp}/ember.log")

    def expected_ok(self, st):
        """Whether a service's state is what its want and kind call for."""
        kind = self.kinds.get(st["name"])
        if st["want"] == "down":
            return st["state"] == "inactive"
        if kind == "crash":
            return st["state"] in ("active", "activating")
        return st["state"] == "active" and st["sub_state"] == "running"

    def escaped(self, procs, statuses):
        """Processes in the namespace outside ember and outside every service's session.
        `procs` must be scanned before `statuses` was read, so that every service process
        in it was spawned before the status: its main pid (a session leader) is known."""
        sessions = set()
        for st in statuses.values():
            hp = self.host_pid(st["pid"], procs) if st.get("pid") else None
            if hp is not None:
                sessions.add(procs[hp]["sid"])
        return [(hp, p["comm"]) for hp, p in procs.items()
                if hp != self.ember_pid and p["state"] != "Z" and p["sid"] not in sessions]

    def uncontained(self, procs, statuses):
        """Processes in the namespace outside ember that no running service's cgroup
        holds: in no service's cgroup, or in the cgroup of one that is not running (a
        stop must take all of its processes, the double-forkers' grandchildren too).
        None when ember runs without cgroups (then only `escaped` applies)."""
        running = {n for n, st in statuses.items()
                   if st["state"] in ("active", "activating", "deactivating")}
        if not any(p.get("cgroup") and "/ember" in p["cgroup"] for hp, p in procs.items()
                   if hp != self.ember_pid):
            return None
        out = []
        for hp, p in procs.items():
            if hp == self.ember_pid or p["state"] == "Z":
                continue
            parts = (p.get("cgroup") or "").rstrip("/").split("/")
            service = parts[-1] if len(parts) >= 2 and parts[-2].startswith("ember") else None
            if service not in running:
                out.append((hp, p["comm"], p.get("cgroup")))
        return out

    def snapshot(self):
        """Processes (scanned before the status, and still there after it) and statuses."""
        procs = ns_processes(self.ns)
        statuses = self.status()
        after = ns_processes(self.ns)
        procs = {hp: p for hp, p in procs.items() if hp in after and after[hp]["start"] == p["start"]}
        return procs, statuses

    def wait_settled(self, what, timeout, need_no_escaped=True):
        deadline = time.monotonic() + timeout
        bad, esc, seen = [], [], 0
        while time.monotonic() < deadline:
            procs, statuses = self.snapshot()
            seen = len(statuses)
            # ember's status also lists the adapters it runs (ember-mqtt, ember-dbus):
            # they too must be up, as wanted.
            if set(self.services) <= set(statuses):
                bad = [n for n, s in statuses.items() if not self.expected_ok(s)]
                # Escaped grandchildren sleep 5 s: wait for them to end and be reaped.
                esc = self.escaped(procs, statuses) if need_no_escaped else []
                if not bad and not esc:
                    log(f"{what}: settled")
                    return True, statuses
            time.sleep(0.5)
        log(f"{what}: not settled after {timeout} s: {len(bad)} services off their want"
            f" ({', '.join(sorted(bad)[:8])}), {len(esc)} escaped,"
            f" {seen} of {len(self.services)} services in the status")
        return False, self.status()

    def bus_owner(self):
        try:
            out = subprocess.run(["busctl", f"--address={self.bus}", "--timeout=2", "call",
                                  "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                  "org.freedesktop.DBus", "GetNameOwner", "s", "io.ember.Init1"],
                                 capture_output=True, timeout=5)
            return out.returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def mqtt_online(self):
        """Whether the adapter is connected: its retained status reads `online`."""
        try:
            out = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.port),
                                  "-t", f"{PREFIX}/{DEVICE}/status", "-C", "1", "-W", "2"],
                                 capture_output=True, timeout=5)
            return out.stdout.strip() == b"online"
        except subprocess.TimeoutExpired:
            return False

    def wait_adapters(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.mqtt_online() and self.bus_owner():
                return True
            time.sleep(0.5)
        return False

    def measure_ember(self, label):
        fds, rss = [], []
        for _ in range(10):
            fds.append(fd_count(self.ember_pid))
            rss.append(rss_kib(self.ember_pid))
            time.sleep(0.3)
        fds = [x for x in fds if x is not None]
        rss = [x for x in rss if x is not None]
        m = (statistics.median(fds) if fds else None, statistics.median(rss) if rss else None)
        log(f"{label}: ember has {m[0]} fds ({fd_kinds(self.ember_pid)}), RSS {m[1]} KiB")
        return m

    # --- recorders ------------------------------------------------------------------

    def mqtt_recorder(self):
        """mosquitto_sub on ember/soak/#, restarted whenever it ends (the broker died)."""
        out = open(f"{self.tmp}/mqtt-live.log", "w")
        while not self.stop_all.is_set():
            p = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.port),
                                  "-q", "1", "-t", f"{PREFIX}/{DEVICE}/#",
                                  "-F", "%U %r %q %t %p"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            self.note_pid(p, "mosquitto_sub")
            self.recorders["mqtt"] = p
            with self.lock:
                self.live_sessions += 1
            out.write(f"# session {self.live_sessions} at {time.time():.6f}\n")
            for raw in p.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                out.write(line + "\n")
                parts = line.split(" ", 4)
                if len(parts) == 5:
                    try:
                        wall = float(parts[0])
                    except ValueError:
                        continue
                    with self.lock:
                        self.live.append((time.monotonic(), wall, parts[1] == "1", parts[3], parts[4]))
                if self.stop_all.is_set():
                    break
            p.kill()
            p.wait()
            out.flush()
            time.sleep(0.2)
        out.close()

    def dbus_recorder(self):
        """busctl monitor of io.ember.Init1, restarted whenever it ends (the bus died)."""
        out = open(f"{self.tmp}/dbus-monitor.log", "w")
        while not self.stop_all.is_set():
            p = subprocess.Popen(["stdbuf", "-oL", "busctl", f"--address={self.bus}", "monitor",
                                  "--json=short", "io.ember.Init1"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            self.note_pid(p, "busctl")  # stdbuf execs it
            self.recorders["dbus"] = p
            with self.lock:
                self.dbus_sessions += 1
            out.write(f"# session {self.dbus_sessions} at {time.time():.6f}\n")
            for raw in p.stdout:
                out.write(raw.decode(errors="replace"))
                try:
                    m = json.loads(raw)
                except ValueError:
                    continue
                if m.get("type") == "signal" and m.get("member") in ("PropertiesChanged", "ServiceStateChanged"):
                    with self.lock:
                        self.dbus_events += 1
                    # `Since` moves only with the state (an unpublished step between two
                    # states such as activating (auto-restart) -> inactive (waiting) ->
                    # activating (start) moves it with SubState alone): a signal that
                    # changes nothing or `Since` alone tells a subscriber nothing.
                    if m.get("member") == "PropertiesChanged" and "/service/" in m.get("path", ""):
                        try:
                            changed = m["payload"]["data"][1]
                        except (KeyError, IndexError, TypeError):
                            changed = {}
                        if set(changed) <= {"Since"}:
                            with self.lock:
                                self.dbus_spurious.append((m.get("path"), sorted(changed)))
                if self.stop_all.is_set():
                    break
            p.kill()
            p.wait()
            out.flush()
            time.sleep(0.2)
        out.close()

    def sampler(self):
        """Every 2 s: zombies and escaped processes in the namespace; flood throughput."""
        previous = set()
        flood_io = {}
        last = time.monotonic()
        while not self.stop_all.wait(2.0):
            procs, statuses = self.snapshot()
            z = {(hp, p["start"]) for hp, p in procs.items() if p["state"] == "Z"}
            with self.lock:
                self.zombie_samples.append((time.monotonic(), len(z)))
                for hp, start in z & previous:
                    p = procs.get(hp, {})
                    self.zombies_persistent.append((hp, p.get("comm"), p.get("ppid")))
            previous = z
            if not self.stop_chaos.is_set() and self.ember_pid:
                self.peak["fds"] = max(self.peak["fds"], fd_count(self.ember_pid) or 0)
                self.peak["rss"] = max(self.peak["rss"], rss_kib(self.ember_pid) or 0)
            if statuses:
                esc = self.escaped(procs, statuses)
                self.escaped_peak = max(self.escaped_peak, len(esc))
            # Bytes the floods wrote (/proc/PID/io wchar), per process lifetime.
            now = time.monotonic()
            for hp, p in procs.items():
                if p["comm"].startswith("python3"):
                    io = read_text(f"/proc/{hp}/io") or ""
                    cmd = read_text(f"/proc/{hp}/cmdline") or ""
                    if "FLOOD" not in cmd and "rate = float" not in cmd:
                        continue
                    m = re.search(r"^wchar:\s+(\d+)", io, re.M)
                    if m:
                        key = (hp, p["start"])
                        w = int(m.group(1))
                        with self.lock:
                            self.flood_bytes += w - flood_io.get(key, 0)
                        flood_io[key] = w
            if not self.stop_chaos.is_set():
                self.flood_seconds += now - last
            last = now

    def status_poller(self):
        while not self.stop_all.wait(1.0):
            st = self.status()
            if st:
                self.status_cache = st

    # --- chaos ----------------------------------------------------------------------

    def killer(self, comm, low, high):
        """SIGKILLs the process named `comm` in the namespace every low..high seconds."""
        while not self.stop_chaos.wait(random.uniform(low, high)):
            for hp, p in ns_processes(self.ns).items():
                if p["comm"] == comm and p["ppid"] == self.ember_pid:
                    try:
                        os.kill(hp, signal.SIGKILL)
                        with self.lock:
                            self.kills[comm] += 1
                    except OSError:
                        pass

    def service_killer(self):
        while not self.stop_chaos.wait(random.uniform(0.3, 0.9)):
            candidates = [s for n, s in self.status_cache.items() if n not in INFRA and s.get("pid")]
            if not candidates:
                continue
            st = random.choice(candidates)
            procs = ns_processes(self.ns)
            hp = self.host_pid(st["pid"], procs)
            if hp is None or hp == self.ember_pid or procs[hp]["nspid"] == 1:
                continue
            try:
                os.kill(hp, signal.SIGKILL)
                with self.lock:
                    self.kills["service"] += 1
            except OSError:
                pass

    def send(self, iface, verb, name, cid):
        """One command; returns (outcome, detail)."""
        try:
            if iface == "ctl":
                out = self.ctl(verb, name, timeout=15)
                if out.returncode == 0:
                    return "ok", ""
                err = out.stderr.decode(errors="replace").strip()
                if "cannot connect" in err.lower() or "connect" in err.lower() and "socket" in err.lower():
                    return "undelivered", err
                return "refused", err
            if iface == "mqtt":
                topic = f"{PREFIX}/{DEVICE}/service/{name}/cmd"
                reply = f"soak/reply/{cid}"
                body = json.dumps({"cmd": verb, "id": cid, "reply_to": reply})
                out = subprocess.run(["mosquitto_rr", "-h", "127.0.0.1", "-p", str(self.port),
                                      "-V", "mqttv311", "-q", "1", "-t", topic, "-e", reply,
                                      "-m", body, "-W", "5"],
                                     capture_output=True, timeout=15)
                text = out.stdout.decode(errors="replace").strip()
                err = out.stderr.decode(errors="replace").strip()
                if text:
                    try:
                        r = json.loads(text.splitlines()[-1])
                    except ValueError:
                        return "unknown", f"unreadable reply {text!r}"
                    if r.get("id") != cid:
                        return "unknown", f"reply for another id: {text}"
                    if r.get("ok") is True:
                        return "ok", ""
                    return "refused", json.dumps(r.get("error"))
                if "refused" in err.lower() or "unable to connect" in err.lower():
                    return "undelivered", err
                return "unknown", err or f"no reply (exit {out.returncode})"
            # D-Bus
            method = {"start": "StartService", "stop": "StopService", "restart": "RestartService"}[verb]
            out = subprocess.run(["busctl", f"--address={self.bus}", "--timeout=5", "call",
                                  "io.ember.Init1", "/io/ember/Init1", "io.ember.Init1.Manager",
                                  method, "s", name], capture_output=True, timeout=15)
            err = out.stderr.decode(errors="replace").strip()
            if out.returncode == 0:
                return "ok", ""
            low = err.lower()
            if "io.ember.init1.error" in low or "unknownservice" in low:
                return "refused", err
            if ("no such file" in low or "connection refused" in low or "not provided by any" in low
                    or "was not provided" in low or "failed to connect" in low or "could not activate" in low
                    or "name has no owner" in low or "serviceunknown" in low):
                return "undelivered", err
            return "unknown", err
        except subprocess.TimeoutExpired:
            return "unknown", "client timed out"

    def commander(self, seed):
        rng = random.Random(seed)
        names = [n for n in self.services if n not in INFRA]
        n = 0
        while not self.stop_chaos.wait(rng.uniform(0.2, 0.6)):
            with self.lock:
                free = [x for x in names if x not in self.busy]
                if not free:
                    continue
                name = rng.choice(free)
                self.busy.add(name)
            verb = rng.choices(["start", "stop", "restart"], weights=[35, 30, 35])[0]
            iface = rng.choice(["ctl", "mqtt", "dbus"])
            n += 1
            cid = f"c{seed}-{n}"
            sent_mono, sent_wall = time.monotonic(), time.time()
            outcome, detail = self.send(iface, verb, name, cid)
            done_mono, done_wall = time.monotonic(), time.time()
            with self.lock:
                self.commands.append({"id": cid, "service": name, "verb": verb, "iface": iface,
                                      "sent": sent_wall, "done": done_wall,
                                      "sent_mono": sent_mono, "done_mono": done_mono,
                                      "outcome": outcome, "detail": detail[:300]})
                self.busy.discard(name)

    # --- checks ---------------------------------------------------------------------

    def parse_live(self):
        """The live stream's state messages: list of (index, wall, retain, name, status)."""
        out = []
        with self.lock:
            live = list(self.live)
        pre = f"{PREFIX}/{DEVICE}/service/"
        for mono, wall, retain, topic, payload in live:
            if not (topic.startswith(pre) and topic.endswith("/state")):
                continue
            name = topic[len(pre):-len("/state")]
            if not payload:
                continue
            try:
                st = json.loads(payload)
            except ValueError:
                continue
            out.append((len(out), wall, retain, name, st))
        return out

    def check_seq(self, msgs):
        """Gaps in the global seq and whether a republish of every service covers each."""
        # Every service ember publishes: the soak's and the adapters it runs.
        n_services = len(self.kinds)
        seen = set()
        top = 0
        gaps = []  # (first missing, last missing, index where it showed)
        for idx, _, _, _, st in msgs:
            s = st.get("seq", 0)
            if s > top + 1:
                gaps.append((top + 1, s - 1, idx))
            top = max(top, s)
            seen.add(s)
        # Republish windows: for each message (the window's right end), the latest start
        # from which every service has a message up to it; a window counts as a republish
        # when it is at most 1.25x as long as there are services (a burst, not drift).
        limit = n_services + n_services // 4
        lefts = []          # nondecreasing; -1 while not every service has been seen
        valid = []          # right ends of republish windows
        count = collections.Counter()
        left = 0
        for right, (_, _, _, name, _) in enumerate(msgs):
            count[name] += 1
            while len(count) == n_services and count[msgs[left][3]] > 1:
                count[msgs[left][3]] -= 1
                left += 1
            full = len(count) == n_services
            lefts.append(left if full else -1)
            if full and right - left + 1 <= limit:
                valid.append(right)
        missing_total = 0
        uncovered = []
        for lo, hi, idx in gaps:
            still = [m for m in range(lo, hi + 1) if m not in seen]
            if not still:
                continue
            missing_total += len(still)
            # Covered: a republish window that ends at or after the message that showed
            # the gap and starts at most one window's length before it (a republish in
            # progress when the gap showed counts).
            first_right = max(idx, bisect.bisect_left(lefts, idx - limit))
            j = bisect.bisect_left(valid, first_right)
            if j == len(valid):
                uncovered.append((still[0], still[-1], idx, round(msgs[idx][1], 3)))
        bursts = sum(1 for i, r in enumerate(valid) if i == 0 or r != valid[i - 1] + 1)
        return len(gaps), missing_total, bursts, uncovered

    def run(self):
        minutes = self.args.minutes
        log(f"soak: 200 services, {minutes} min of chaos, floods {self.args.flood_mbps} MB/s in all;"
            f" broker on 127.0.0.1:{self.port}; files in {self.tmp}")
        self.start_ember()
        self.spawn_thread(self.mqtt_recorder)
        self.spawn_thread(self.dbus_recorder)
        self.spawn_thread(self.status_poller)
        self.spawn_thread(self.sampler)

        started = time.monotonic()
        ok, _ = self.wait_settled("start-up", 90)
        adapters = self.wait_adapters(30)
        self.figure("start-up settled (s)", f"{time.monotonic() - started:.1f}")
        if not ok or not adapters:
            self.check("start-up", False, f"services settled: {ok}, MQTT and D-Bus attached: {adapters}")
            # What ember said about it: the last warnings and errors of its log.
            text = read_text(f"{self.tmp}/ember.log") or ""
            for line in [l for l in text.splitlines() if " WARN " in l or " ERROR " in l][-5:]:
                log(f"ember.log: {line}")
            return
        time.sleep(5)
        base_fds, base_rss = self.measure_ember("after start-up")
        base_kinds = fd_kinds(self.ember_pid)

        # --- chaos ----------------------------------------------------------------
        log(f"chaos for {minutes} min")
        chaos = [self.spawn_thread(self.killer, "mosquitto", 2, 8),
                 self.spawn_thread(self.killer, "dbus-daemon", 2, 8),
                 self.spawn_thread(self.killer, "ember-mqtt", 4, 12),
                 self.spawn_thread(self.killer, "ember-dbus", 4, 12),
                 self.spawn_thread(self.service_killer),
                 self.spawn_thread(self.commander, 1),
                 self.spawn_thread(self.commander, 2)]
        chaos_start = time.monotonic()
        cpu_start = cpu_seconds(self.ember_pid)
        end = chaos_start + minutes * 60
        next_report = chaos_start + 30
        while time.monotonic() < end:
            time.sleep(1)
            if self.unshare.poll() is not None:
                break
            if time.monotonic() >= next_report:
                next_report += 30
                with self.lock:
                    c = collections.Counter(c["outcome"] for c in self.commands)
                log(f"chaos: {dict(self.kills)} killed, commands {dict(c)}, "
                    f"{len(self.live)} MQTT messages, {self.dbus_events} D-Bus signals, "
                    f"ember {fd_count(self.ember_pid)} fds, RSS {rss_kib(self.ember_pid)} KiB")
        self.stop_chaos.set()
        for t in chaos:
            t.join(timeout=30)
        chaos_secs = time.monotonic() - chaos_start
        cpu_end = cpu_seconds(self.ember_pid)
        if cpu_start is not None and cpu_end is not None:
            self.figure("ember CPU during the chaos (% of one core)", f"{(cpu_end - cpu_start) / chaos_secs * 100:.1f}")
        log("chaos over; waiting for the broker, the bus and the services to settle")
        if self.unshare.poll() is not None:
            self.check("ember alive", False, f"the namespace ended during the chaos (exit {self.unshare.returncode})")
            return
        self.check("ember alive", True, f"PID 1 of its namespace through {chaos_secs:.0f} s of chaos")

        adapters = self.wait_adapters(60)
        settled, _ = self.wait_settled("after chaos", 90)
        time.sleep(3)

        # --- snapshots ------------------------------------------------------------
        s1 = self.status()
        retained = self.read_retained()
        time.sleep(1.0)
        live_msgs = self.parse_live()
        managed = self.dbus_managed()
        s2 = self.status()
        procs_a = ns_processes(self.ns)
        time.sleep(0.5)
        procs_b, s3 = self.snapshot()

        # --- checks ---------------------------------------------------------------
        self.check("adapters back", adapters, "MQTT online and io.ember.Init1 owned after the chaos"
                   if adapters else "MQTT not online or io.ember.Init1 not owned 60 s after the chaos")

        za = {(hp, p["start"]) for hp, p in procs_a.items() if p["state"] == "Z"}
        zb = {(hp, p["start"]) for hp, p in procs_b.items() if p["state"] == "Z"}
        persistent = za & zb
        esc = self.escaped(procs_b, s3)
        with self.lock:
            run_z = list(self.zombies_persistent)
            peak_z = max((n for _, n in self.zombie_samples), default=0)
        self.check("no zombies", not persistent and not run_z,
                   f"{len(persistent)} at the end (in two samples 0.5 s apart: "
                   f"{[(hp, procs_b[hp]['comm'], procs_b[hp]['ppid']) for hp, _ in persistent]}); "
                   f"during the run: at most {peak_z} in one sample, {len(run_z)} seen in two samples 2 s apart {run_z[:5]}")
        # Strict, with cgroups: after the settling, every process belongs to a running
        # service's cgroup; what a stop left behind would show here.
        stray_a = self.uncontained(procs_a, s3) or []
        stray_b = self.uncontained(procs_b, s3)
        if stray_b is not None:
            lasting = [x for x in stray_b if any(x[0] == y[0] for y in stray_a)]
            self.check("no process outlives its service", not lasting,
                       f"{len(lasting)} processes outside every running service's cgroup "
                       f"in two samples 0.5 s apart {lasting[:5]}")
        self.figure("escaped processes (double-forkers' grandchildren outside any service session)",
                    f"peak {self.escaped_peak} during the run, {len(esc)} at the end {esc[:5]}")

        # Final states.
        wrong = []
        for name in sorted(self.services):
            st = s1.get(name)
            if st is None or not self.expected_ok(st):
                wrong.append(f"{name} ({self.kinds[name]}): " + (f"want {st['want']}, {st['state']} ({st['sub_state']})" if st else "missing"))
        by_kind = collections.Counter((self.kinds[n], s["want"]) for n, s in s1.items())
        self.check("final states match wants", settled and not wrong,
                   f"{len(self.services) - len(wrong)}/{len(self.services)} as wanted"
                   f" (want up/down by kind: {dict(sorted(by_kind.items()))})"
                   + (f"; off: {wrong[:10]}" if wrong else ""))

        self.check_commands(s1, live_msgs)
        self.check_mqtt(s1, s2, retained, live_msgs)
        self.check_dbus(s1, s2, managed)
        self.check_dbus_signals()
        self.check_fd_inheritance()
        text = read_text(f"{self.tmp}/ember.log") or ""
        panics = [line for line in text.splitlines() if "panicked" in line or "internal error" in line]
        self.check("no panic", not panics, f"{len(panics)} panic lines in ember.log {panics[:3]}")

        # --- resources: the same services up as at start-up --------------------
        down = [n for n, s in s1.items() if s["want"] == "down"]
        if down:
            self.ctl("start", *down, timeout=60)
        ok2, _ = self.wait_settled("all wanted up again", 90)
        time.sleep(5)
        fds, rss = self.measure_ember("at the end")
        end_kinds = fd_kinds(self.ember_pid)
        fd_ok = fds is not None and base_fds and abs(fds - base_fds) <= 0.10 * base_fds
        rss_ok = rss is not None and base_rss and abs(rss - base_rss) <= 0.10 * base_rss
        self.check("ember fd count within 10%", ok2 and fd_ok,
                   f"{base_fds} after start-up, {fds} at the end ({(fds - base_fds) / base_fds * 100:+.1f}%);"
                   f" by kind {base_kinds} -> {end_kinds}")
        self.check("ember RSS within 10%", ok2 and rss_ok,
                   f"{base_rss} KiB after start-up, {rss} KiB at the end ({(rss - base_rss) / base_rss * 100:+.1f}%)")

        # Figures.
        with self.lock:
            cmds = list(self.commands)
        per = collections.Counter((c["iface"], c["outcome"]) for c in cmds)
        lat = collections.defaultdict(list)
        for c in cmds:
            if c["outcome"] == "ok":
                lat[c["iface"]].append((c["done_mono"] - c["sent_mono"]) * 1000)
        self.figure("chaos (s)", f"{chaos_secs:.0f}")
        self.figure("kills", ", ".join(f"{k} {v}" for k, v in sorted(self.kills.items())))
        self.figure("commands", f"{len(cmds)}: " + ", ".join(f"{i} {o} {n}" for (i, o), n in sorted(per.items())))
        for iface, xs in sorted(lat.items()):
            xs.sort()
            self.figure(f"acknowledged {iface} command round trip (ms, client start-up included)",
                        f"p50 {xs[len(xs) // 2]:.0f}, p99 {xs[min(len(xs) - 1, int(len(xs) * 0.99))]:.0f}")
        self.figure("MQTT messages recorded", f"{len(self.live)} in {self.live_sessions} subscriber sessions")
        self.figure("D-Bus signals recorded", f"{self.dbus_events} in {self.dbus_sessions} monitor sessions")
        if self.flood_seconds:
            self.figure("log flood into ember (MB/s, all floods)", f"{self.flood_bytes / 1e6 / max(self.flood_seconds, 1):.1f}")
        self.figure("ember fds / RSS after start-up", f"{base_fds} / {base_rss} KiB")
        self.figure("ember fds / RSS at the end", f"{fds} / {rss} KiB")
        self.figure("ember fds / RSS at most during the run (every 2 s)", f"{self.peak['fds']} / {self.peak['rss']} KiB")
        self.outage_figures()
        with open(f"{self.tmp}/commands.jsonl", "w") as f:
            for c in cmds:
                f.write(json.dumps(c) + "\n")

    def outage_figures(self):
        """How long each adapter was away after losing the broker or the bus (ember.log)."""
        import datetime

        def when(line):
            try:
                return datetime.datetime.strptime(line[:26], "%Y-%m-%dT%H:%M:%S.%f").timestamp()
            except ValueError:
                return None
        gaps = {"mqtt": [], "dbus": []}
        lost = {}
        for line in (read_text(f"{self.tmp}/ember.log") or "").splitlines():
            t = when(line)
            if t is None:
                continue
            if "mqtt: lost the broker" in line:
                lost.setdefault("mqtt", t)
            elif "mqtt: connected to" in line and "mqtt" in lost:
                gaps["mqtt"].append(t - lost.pop("mqtt"))
            elif "dbus: lost the bus" in line:
                lost.setdefault("dbus", t)
            elif "dbus: re-attached" in line and "dbus" in lost:
                gaps["dbus"].append(t - lost.pop("dbus"))
        for k, label in (("mqtt", "MQTT adapter: broker lost -> connected again"),
                         ("dbus", "D-Bus adapter: bus lost -> io.ember.Init1 again")):
            xs = sorted(gaps[k])
            if xs:
                self.figure(f"{label} (ms)", f"{len(xs)} times, median {xs[len(xs) // 2] * 1000:.0f}, max {xs[-1] * 1000:.0f}")

    def read_retained(self):
        try:
            out = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.port),
                                  "-t", f"{PREFIX}/{DEVICE}/service/+/state", "--retained-only",
                                  "-W", "3", "-F", "%t %p"], capture_output=True, timeout=10)
        except subprocess.TimeoutExpired as e:
            out = e
        pre = f"{PREFIX}/{DEVICE}/service/"
        got = {}
        for line in (out.stdout or b"").decode(errors="replace").splitlines():
            topic, _, payload = line.partition(" ")
            if topic.startswith(pre) and payload:
                try:
                    got[topic[len(pre):-len("/state")]] = json.loads(payload)
                except ValueError:
                    pass
        return got

    def dbus_managed(self):
        try:
            out = subprocess.run(["busctl", f"--address={self.bus}", "--json=short", "call",
                                  "io.ember.Init1", "/io/ember/Init1",
                                  "org.freedesktop.DBus.ObjectManager", "GetManagedObjects"],
                                 capture_output=True, timeout=10)
            data = json.loads(out.stdout)["data"][0]
        except (subprocess.TimeoutExpired, ValueError, KeyError, IndexError, TypeError):
            return None
        got = {}
        for _path, ifaces in data.items():
            props = ifaces.get("io.ember.Init1.Service")
            if not props:
                continue
            got[props["Name"]["data"]] = {"state": props["State"]["data"],
                                          "sub_state": props["SubState"]["data"],
                                          "want": props["Want"]["data"]}
        return got

    def check_commands(self, s1, msgs):
        with self.lock:
            cmds = sorted(self.commands, key=lambda c: c["sent_mono"])
        per = collections.defaultdict(list)
        for c in cmds:
            per[c["service"]].append(c)
        implied = {"start": "up", "restart": "up", "stop": "down"}
        exact = ambiguous = 0
        lost = []
        for name in sorted(self.services):
            cs = per.get(name, [])
            acked = [i for i, c in enumerate(cs) if c["outcome"] == "ok"]
            k = acked[-1] if acked else -1
            candidates = {implied[cs[k]["verb"]] if k >= 0 else "up"}
            later_unknown = {implied[c["verb"]] for c in cs[k + 1:] if c["outcome"] == "unknown"}
            if later_unknown - candidates:
                ambiguous += 1
            else:
                exact += 1
            candidates |= later_unknown
            want = s1.get(name, {}).get("want")
            if want not in candidates:
                lost.append(f"{name}: want {want}, last acked {cs[k]['iface']} {cs[k]['verb']}" if k >= 0
                            else f"{name}: want {want}, never acked")
        n_acked = sum(1 for c in cmds if c["outcome"] == "ok")
        self.check("no acknowledged command lost (final want)", not lost,
                   f"{n_acked} acknowledged; {exact} services exact, {ambiguous} ambiguous (an unanswered command after the last ack)"
                   + (f"; lost: {lost[:10]}" if lost else ""))
        # Each ack reflected in the live MQTT stream until the next command on the service.
        by_name = collections.defaultdict(list)
        for _, wall, _, name, st in msgs:
            by_name[name].append((wall, st))
        violations = []
        checked = 0
        for name, cs in per.items():
            for i, c in enumerate(cs):
                if c["outcome"] != "ok":
                    continue
                until = cs[i + 1]["sent"] if i + 1 < len(cs) else float("inf")
                for wall, st in by_name.get(name, []):
                    if c["done"] + 2.0 <= wall < until:
                        checked += 1
                        if st.get("want") != implied[c["verb"]]:
                            violations.append(f"{name}: {c['iface']} {c['verb']} acked at {c['done']:.3f},"
                                              f" state message at {wall:.3f} says want {st.get('want')} (seq {st.get('seq')})")
        self.check("acknowledged commands reflected in the MQTT stream", not violations,
                   f"{checked} state messages from 2 s after an ack to the next command checked"
                   + (f"; {len(violations)} contradict it: {violations[:5]}" if violations else ""))

    def check_mqtt(self, s1, s2, retained, msgs):
        keys = ("state", "sub_state", "want", "seq")

        def compare(view, label):
            bad, moving = [], 0
            for name in sorted(self.services):
                a, b, v = s1.get(name), s2.get(name), view.get(name)
                if v is None or a is None or b is None:
                    bad.append(f"{name}: {'no ' + label if v is None else 'no status'}")
                    continue
                if a.get("seq") == b.get("seq"):
                    if any(v.get(k) != a.get(k) for k in keys):
                        bad.append(f"{name}: {label} {[v.get(k) for k in keys]} != status {[a.get(k) for k in keys]}")
                else:
                    moving += 1
                    if not (a["seq"] <= v.get("seq", -1) <= b["seq"]):
                        bad.append(f"{name}: {label} seq {v.get('seq')} outside {a['seq']}..{b['seq']} while it changed")
            return bad, moving

        bad, moving = compare(retained, "retained")
        self.check("MQTT retained state equals ember ctl status", not bad,
                   f"{len(retained)} retained states read; {len(self.services) - moving} compared exactly,"
                   f" {moving} changed during the read (seq checked to lie between the snapshots)"
                   + (f"; {len(bad)} differ: {bad[:6]}" if bad else ""))
        last = {}
        for _, _, _, name, st in msgs:
            last[name] = st
        bad, moving = compare(last, "live")
        self.check("MQTT live stream's last state equals ember ctl status", not bad,
                   f"{len(last)} services seen in {len(msgs)} state messages; {moving} changed during the read"
                   + (f"; {len(bad)} differ: {bad[:6]}" if bad else ""))
        gaps, missing, bursts, uncovered = self.check_seq(msgs)
        self.check("seq gaps followed by a republish", not uncovered,
                   f"{gaps} gaps ({missing} seq values never seen), {bursts} republish windows of every service"
                   + (f"; {len(uncovered)} not covered: {uncovered[:5]}" if uncovered else ""))

    def check_dbus(self, s1, s2, managed):
        if managed is None:
            self.check("D-Bus view equals ember ctl status", False, "GetManagedObjects failed")
            return
        bad, moving = [], 0
        for name in sorted(self.services):
            a, b, v = s1.get(name), s2.get(name), managed.get(name)
            if v is None or a is None or b is None:
                bad.append(f"{name}: missing")
                continue
            if a.get("seq") != b.get("seq"):
                moving += 1
                continue
            if any(v[k] != a[k] for k in ("state", "sub_state", "want")):
                bad.append(f"{name}: D-Bus {v} != status {[a['state'], a['sub_state'], a['want']]}")
        self.check("D-Bus view equals ember ctl status", not bad,
                   f"{len(managed)} objects; {len(self.services) - moving} compared, {moving} changed while reading"
                   + (f"; {len(bad)} differ: {bad[:6]}" if bad else ""))

    def check_dbus_signals(self):
        with self.lock:
            spurious = list(self.dbus_spurious)
            total = self.dbus_events
        self.check("no D-Bus PropertiesChanged without a change", not spurious,
                   f"{total} signals recorded; {len(spurious)} change nothing or Since alone"
                   + (f": {collections.Counter(p for p, _ in spurious).most_common(3)}" if spurious else ""))

    def check_fd_inheritance(self):
        leaks, seen = [], 0
        for name in sorted(n for n, k in self.kinds.items() if k == "fdleak"):
            try:
                out = self.ctl("logs", name, "-n", "200", timeout=10)
            except subprocess.TimeoutExpired:
                continue
            for line in out.stdout.decode(errors="replace").splitlines():
                if "inherited fds:" not in line:
                    continue
                seen += 1
                fds = line.split("inherited fds:", 1)[1].split()
                extra = [f for f in fds if int(f.split("=")[0]) > 2]
                if extra:
                    leaks.append(f"{name}: {extra}")
        self.check("no ember fd inherited by services", seen > 0 and not leaks,
                   f"{seen} fd-leaker starts reported their fds" + (f"; leaked: {leaks[:5]}" if leaks else ": only 0, 1, 2"))

    def shutdown(self):
        self.stop_chaos.set()
        if self.unshare and self.unshare.poll() is None and self.ember_pid:
            t = time.monotonic()
            try:
                os.kill(self.ember_pid, signal.SIGTERM)
            except OSError:
                pass
            try:
                self.unshare.wait(timeout=60)
                self.figure("shutdown of the 200 services (SIGTERM to the end of the namespace, s)",
                            f"{time.monotonic() - t:.1f}")
            except subprocess.TimeoutExpired:
                self.unshare.kill()
                self.unshare.wait()
                self.figure("shutdown", "did not end within 60 s; killed")
        self.stop_all.set()
        # mosquitto_sub reconnects forever by itself: end the recorders here.
        for p in list(self.recorders.values()):
            try:
                p.kill()
            except OSError:
                pass
        for t in self.threads:
            t.join(timeout=5)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ember", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--minutes", type=float, default=2)
    ap.add_argument("--flood-mbps", type=float, default=10)
    ap.add_argument("--flood-line", type=int, default=100, help="bytes per flood line, newline included")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int(time.time())
    random.seed(seed)
    soak = Soak(args)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        soak.run()
    except KeyboardInterrupt:
        soak.check("soak", False, "interrupted")
    finally:
        soak.shutdown()
    print(f"\nember soak: {args.minutes:g} min of chaos, seed {seed}", flush=True)
    for name, value in soak.figures:
        print(f"  {name}: {value}")
    failed = [r for r in soak.results if not r[1]]
    print(f"{len(soak.results) - len(failed)} checks passed, {len(failed)} failed", flush=True)
    print("RESULT: " + ("PASS" if soak.results and not failed else "FAIL"), flush=True)
    return 0 if soak.results and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
