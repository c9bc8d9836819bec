#!/usr/bin/python3
"""MQTT adapter benchmark of ember: latency, fleet fan-out and memory.

Driven by bench/mqtt.sh (which builds ember and installs mosquitto); can also be
run directly as root:
    python3 bench/mqtt_measure.py --ember target/release/ember --tmp DIR [--quick] [--only a,b,c,d,e]

Python standard library only: the MQTT client is a ~100-line MQTT 3.1.1 client on a
plain socket (TCP_NODELAY), so that the instant a command leaves the bench and the
instant a message arrives are taken right at sendall() / recv(), with no client
thread or callback in between (paho-mqtt is not needed).

Every ember runs as an ordinary supervisor (a child of this process, not PID 1):
    ember --config DIR/ember.toml      ([control] socket = "DIR/x.sock", [system]
                                        device, [mqtt] url = "mqtt://127.0.0.1:PORT")
(a copy of the binary in TMP, so that PSS does not depend on other processes that
map target/release/ember) against one private mosquitto (`listener PORT 127.0.0.1`,
`allow_anonymous true`, `max_queued_messages 100000`, `set_tcp_nodelay true` unless
--broker-nagle) on a free loopback port. Before each part the bench waits (<= 20 s)
for the machine to be under 25% busy and notes the load it saw. This process makes itself a child subreaper, so a service
orphaned by an ember that had to be SIGKILLed is reparented here and killed at
the end; every process started is also listed (pid and comm) in TMP/pids, for
mqtt.sh's trap. Every wait is bounded.

(a) command -> exec: the service is a 20-line C probe, compiled here (cc -static,
    else cc, else rustc), whose main() reads CLOCK_MONOTONIC first thing and sends
    "pid nanoseconds" in one datagram to a Unix socket of the bench, then pause()s.
    The bench reads CLOCK_MONOTONIC (time.monotonic_ns) just before sendall() of
    the PUBLISH of `restart` (QoS 0) on ember/<dev>/service/probe/cmd; the latency
    is the probe's stamp minus that. It therefore includes the broker hop, ember
    stopping the old process (SIGTERM, reaped on SIGCHLD), fork and exec of the
    new one, and the probe's own start-up up to main(). That start-up is the
    method's overhead; it is measured separately (posix_spawn of the same probe
    by the bench -> its stamp, 200 times) and reported, not subtracted: it is
    part of any process "running". Sequential: after each stamp the bench waits
    for the state message `active` with the new pid before the next command; the
    time from the command to that message's recv() is reported too. 10 warm-up
    commands are not counted.
(b) exit -> state: a `sleep` service (restart "always", restart_delay 20ms,
    start_limit 0). The bench reads CLOCK_MONOTONIC, SIGKILLs the service's pid and
    reads ember/<dev>/service/victim/state until a message shows the exit (a
    newer seq whose pid differs or whose state is not active); the time is taken
    when recv() returns those bytes. Then it waits for `active` with a new pid.
(c) fleet: 200 embers, device fleetNNN, groups = ["fleet"], one `sleep` service
    "app". A subscriber on ember/+/service/+/state knows every pid; the clock
    starts just before `mosquitto_pub -t ember/group/fleet/service/app/cmd -m
    restart` is spawned (its own start-up and connect, a few ms, are included) and
    stops at the recv() that completes the last of the 200 `active` states with a
    changed pid. Median of 3 rounds, 1 s apart. After SIGTERM to all, every
    retained ember/fleetNNN/status must read `offline`.
(d) memory: "Rss:" and "Pss:" of /proc/PID/smaps_rollup of the ember process,
    10 `sleep` services, 2 s after every service is active (and, with [mqtt],
    after its 10 states and `online` reached a subscriber), without and with
    [mqtt], same binary, each ember alone; 3 alternating launches, medians.
(e) burst: one ember (EMBER_LOG=debug: the engine logs each command it gets, with
    its origin) with two `sleep` services. A subscriber (QoS 1) on its reply topic;
    then `mosquitto_pub -l` sends 5,000 JSON commands with ids
    ({"cmd":"start","id":...}, every tenth a restart) on the `web` command topic in
    one go, at QoS 1, then (after the first burst is over) 5,000 more at QoS 0. A
    burst is over when every command is answered or counted as dropped, or nothing
    moved for 30 s. Counted: commands executed (the engine's log lines), replies by
    id (ok, busy, other refusals, more than one per id), commands ember says it
    dropped unanswered (its log), commands executed without a reply (executed minus
    answered-not-refused), and the time from the publisher's start to the last reply.
"""

import argparse
import collections
import ctypes
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time

PROBE_C = r"""
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
/* First thing: CLOCK_MONOTONIC; then "pid ns" to the Unix datagram socket argv[1];
   then wait for a signal (or exit at once with a second argument). */
int main(int argc, char **argv) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (argc > 1) {
        char buf[64];
        int n = snprintf(buf, sizeof buf, "%d %lld", (int)getpid(),
                         (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
        struct sockaddr_un a;
        memset(&a, 0, sizeof a);
        a.sun_family = AF_UNIX;
        strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
        int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
        if (fd >= 0) { sendto(fd, buf, n, 0, (struct sockaddr *)&a, sizeof a); close(fd); }
    }
    if (argc > 2) return 0;
    for (;;) pause();
}
"""

PROBE_RS = r"""
use std::os::unix::net::UnixDatagram;
extern "C" { fn clock_gettime(clk: i32, ts: *mut [i64; 2]) -> i32; fn pause() -> i32; }
fn main() {
    let mut ts = [0i64; 2];
    unsafe { clock_gettime(1, &mut ts) };
    let args: Vec<String> = std::env::args().collect();
    if args.len() > 1 {
        let msg = format!("{} {}", std::process::id(), ts[0] * 1_000_000_000 + ts[1]);
        if let Ok(s) = UnixDatagram::unbound() { let _ = s.send_to(msg.as_bytes(), &args[1]); }
    }
    if args.len() > 2 { return; }
    loop { unsafe { pause() }; }
}
"""

SLEEP = shutil.which("sleep") or "/bin/sleep"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(xs, p):
    """Nearest-rank percentile."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, -(-p * len(s) // 100) - 1))
    return s[int(k)]


def cpu_times():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v), v[3] + v[4]


def wait_idle(bench, label, limit=20, below=25.0):
    """Waits (at most `limit` s) until the whole machine is under `below` % busy over
    0.5 s: other work on a 2-core machine shows up as latency. Notes the load seen."""
    deadline = time.monotonic() + limit
    while True:
        t0 = cpu_times()
        time.sleep(0.5)
        t1 = cpu_times()
        total, idle = t1[0] - t0[0], t1[1] - t0[1]
        busy = 100.0 * (total - idle) / total if total else 0.0
        if busy < below:
            bench.load.append(f"{label} {busy:.0f}%")
            return
        if time.monotonic() > deadline:
            bench.load.append(f"{label} **{busy:.0f}%**")
            bench.odd.append(f"{label}: the machine stayed {busy:.0f}% busy (other work) for {limit} s; "
                             "figures may be inflated")
            return


# --- a minimal MQTT 3.1.1 client ----------------------------------------------

def _str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _remaining(n):
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class Message:
    __slots__ = ("topic", "payload", "retain", "t")

    def __init__(self, topic, payload, retain, t):
        self.topic, self.payload, self.retain, self.t = topic, payload, retain, t


class Mqtt:
    def __init__(self, port, client_id, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pending = collections.deque()
        self.t_recv = 0
        self.next_id = 1
        # Clean session, keep-alive 0 (no pings needed).
        self._send(0x10, _str("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0) + _str(client_id))
        p = self._packet(time.monotonic() + timeout)
        if p is None or p[0] != 2 or p[2][1] != 0:
            raise RuntimeError(f"mqtt: no CONNACK from the broker: {p}")

    def _send(self, first, body):
        self.sock.sendall(bytes([first]) + _remaining(len(body)) + body)

    def _parse(self):
        buf = self.buf
        if len(buf) < 2:
            return None
        mult, rl, i = 1, 0, 1
        while True:
            if i >= len(buf):
                return None
            b = buf[i]
            rl += (b & 127) * mult
            mult *= 128
            i += 1
            if not b & 128:
                break
        if len(buf) < i + rl:
            return None
        first = buf[0]
        body = bytes(buf[i:i + rl])
        del buf[:i + rl]
        return (first >> 4, first & 15, body, self.t_recv)

    def _packet(self, deadline):
        while True:
            p = self._parse()
            if p is not None:
                return p
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                return None
            self.t_recv = time.monotonic_ns()
            if not data:
                raise ConnectionError("mqtt: the broker closed the connection")
            self.buf += data

    def _publish_in(self, flags, body, t):
        n = struct.unpack_from("!H", body)[0]
        topic = body[2:2 + n].decode()
        rest = 2 + n
        qos = (flags >> 1) & 3
        if qos:
            pid = body[rest:rest + 2]
            rest += 2
            self._send(0x40 if qos == 1 else 0x50, pid)
        return Message(topic, body[rest:], bool(flags & 1), t)

    def subscribe(self, topic, qos=0, timeout=10.0):
        pid = self.next_id
        self.next_id += 1
        self._send(0x82, struct.pack("!H", pid) + _str(topic) + bytes([qos]))
        deadline = time.monotonic() + timeout
        while True:
            p = self._packet(deadline)
            if p is None:
                raise RuntimeError(f"mqtt: no SUBACK for {topic}")
            kind, flags, body, t = p
            if kind == 3:
                self.pending.append(self._publish_in(flags, body, t))
            elif kind == 9:
                return

    def publish(self, topic, payload, retain=False):
        """QoS 0. Returns CLOCK_MONOTONIC (ns) read just before the bytes are sent."""
        if isinstance(payload, str):
            payload = payload.encode()
        packet = bytes([0x30 | (1 if retain else 0)])
        body = _str(topic) + payload
        packet += _remaining(len(body)) + body
        t0 = time.monotonic_ns()
        self.sock.sendall(packet)
        return t0

    def read(self, deadline):
        """The next PUBLISH (a Message) or None when `deadline` (time.monotonic()) passes."""
        if self.pending:
            return self.pending.popleft()
        while True:
            p = self._packet(deadline)
            if p is None:
                return None
            kind, flags, body, t = p
            if kind == 3:
                return self._publish_in(flags, body, t)
            if kind == 13:  # PINGRESP
                continue

    def close(self):
        try:
            self._send(0xE0, b"")
        except OSError:
            pass
        self.sock.close()


def state_of(msg):
    """(device, service, status dict) of a state message, or None."""
    parts = msg.topic.split("/")
    if len(parts) != 5 or parts[2] != "service" or parts[4] != "state" or not msg.payload:
        return None
    try:
        return parts[1], parts[3], json.loads(msg.payload)
    except ValueError:
        return None


# --- processes ----------------------------------------------------------------

class Bench:
    def __init__(self, ember, tmp, nagle=False):
        self.ember = ember
        self.nagle = nagle
        self.tmp = tmp
        self.pidfile = open(os.path.join(tmp, "pids"), "a")
        self.procs = []  # every Popen of ours
        self.port = None
        self.broker = None
        self.odd = []  # things worth reporting
        self.load = []  # machine load before each section

    def record(self, pid, comm):
        self.pidfile.write(f"{pid} {comm}\n")
        self.pidfile.flush()

    def popen(self, argv, comm, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        self.record(p.pid, comm)
        return p

    def start_broker(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        d = os.path.join(self.tmp, "mosquitto")
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o777)
        conf = os.path.join(d, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                    "max_queued_messages 100000\n")
            # mosquitto's default leaves Nagle on for its sockets: a subscriber that
            # only reads (never sends) gets every second message of a burst ~40 ms late
            # (Nagle waits for the delayed ACK). That is the broker, not ember.
            if not self.nagle:
                f.write("set_tcp_nodelay true\n")
        logf = open(os.path.join(d, "mosquitto.log"), "wb")
        self.broker = self.popen(["mosquitto", "-c", conf], "mosquitto",
                                 stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.broker.poll() is not None:
                    break
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {self.port}; see {d}/mosquitto.log")

    def cleanup(self):
        # embers first (SIGTERM: they stop their services), then whatever is left.
        alive = [p for p in self.procs if p.poll() is None and p is not self.broker]
        stop_all(alive, 15)
        if self.broker is not None and self.broker.poll() is None:
            stop_all([self.broker], 5)
        # Orphans reparented to us (we are a child subreaper): only our descendants.
        for _ in range(3):
            kids = children_of_self()
            if not kids:
                break
            for pid in kids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
            reap_all()
        self.pidfile.close()


def children_of_self():
    me = os.getpid()
    kids = []
    for tid in os.listdir(f"/proc/{me}/task"):
        try:
            with open(f"/proc/{me}/task/{tid}/children") as f:
                kids += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return kids


def reap_all():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stop_all(procs, timeout):
    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.01, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass


class Ember:
    def __init__(self, bench, name, device, services, mqtt=True, groups=None, env=None):
        self.bench = bench
        self.dir = os.path.join(bench.tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.socket = os.path.join(self.dir, "x.sock")
        self.device = device
        lines = [
            "[system]", f'device = "{device}"', "",
            "[control]", f'socket = "{self.socket}"', "",
        ]
        if mqtt:
            lines += ["[mqtt]", f'url = "mqtt://127.0.0.1:{bench.port}"']
            if groups:
                lines.append("groups = [" + ", ".join(f'"{g}"' for g in groups) + "]")
            lines.append("")
        for sname, keys in services.items():
            lines.append(f"[service.{sname}]")
            lines += keys
            lines.append("")
        self.config = os.path.join(self.dir, "ember.toml")
        with open(self.config, "w") as f:
            f.write("\n".join(lines))
        self.logpath = os.path.join(self.dir, "ember.log")
        logf = open(self.logpath, "wb")
        self.proc = bench.popen([bench.ember, "--config", self.config], "ember",
                                stdout=logf, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
        logf.close()

    @property
    def pid(self):
        return self.proc.pid

    def wait_socket(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.socket):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise RuntimeError(f"ember {self.device} did not open its socket:\n{self.log()[-2000:]}")

    def status(self):
        out = subprocess.run([self.bench.ember, "ctl", "--socket", self.socket, "status", "--json"],
                             capture_output=True, timeout=10)
        if out.returncode != 0:
            return []
        return json.loads(out.stdout)

    def wait_active(self, n, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status()
            if len(st) == n and all(s["state"] == "active" for s in st):
                return st
            time.sleep(0.05)
        raise RuntimeError(f"ember {self.device}: services not all active:\n{self.log()[-2000:]}")

    def log(self):
        try:
            with open(self.logpath, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, timeout=10):
        stop_all([self.proc], timeout)


def check_log(bench, ember, label):
    text = ember.log()
    bad = [l for l in text.splitlines()
           if (" WARN " in l or " ERROR " in l or "panick" in l)
           and "ended with signal SIGKILL" not in l]  # (b) kills on purpose
    if bad:
        bench.odd.append(f"{label}: {len(bad)} WARN/ERROR lines in ember's log, e.g. {bad[0].strip()[:200]}")


# --- the probe ------------------------------------------------------------------

def build_probe(tmp):
    src = os.path.join(tmp, "probe.c")
    exe = os.path.join(tmp, "mqtt-probe")
    with open(src, "w") as f:
        f.write(PROBE_C)
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        for extra in (["-static"], []):
            r = subprocess.run([cc, "-O2", *extra, "-o", exe, src], capture_output=True, timeout=120)
            if r.returncode == 0:
                return exe, f"cc -O2 {' '.join(extra)}".strip()
    rustc = shutil.which("rustc")
    if rustc:
        rs = os.path.join(tmp, "probe.rs")
        with open(rs, "w") as f:
            f.write(PROBE_RS)
        r = subprocess.run([rustc, "-O", "-o", exe, rs], capture_output=True, timeout=300)
        if r.returncode == 0:
            return exe, "rustc -O"
    raise RuntimeError("cannot compile the probe: neither cc nor rustc works")


class StampSocket:
    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o777)

    def next(self, timeout, not_pid=None):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(128)
            except socket.timeout:
                return None
            pid, ns = data.decode().split()
            if int(pid) != not_pid:
                return int(pid), int(ns)

    def drain(self):
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(128)
        except BlockingIOError:
            pass
        self.sock.setblocking(True)


def probe_baseline(probe, stamps, n):
    """posix_spawn of the probe by this process -> the probe's stamp at main(), ms."""
    out = []
    for _ in range(n):
        t0 = time.monotonic_ns()
        pid = os.posix_spawn(probe, [probe, stamps.path, "once"], os.environ)
        st = stamps.next(5)
        os.waitpid(pid, 0)
        if st:
            out.append((st[1] - t0) / 1e6)
    return out


# --- (a) and (b) ------------------------------------------------------------------

def wait_state(client, topic, pred, timeout):
    deadline = time.monotonic() + timeout
    while True:
        m = client.read(deadline)
        if m is None:
            return None, None
        if m.topic != topic or not m.payload:
            continue
        st = json.loads(m.payload)
        if pred(st):
            return st, m


def bench_latency(bench, probe, n_restart, n_kill, warmup=10):
    stamps = StampSocket(os.path.join(bench.tmp, "stamp.sock"))
    base = probe_baseline(probe, stamps, 200)
    dev = "bench"
    ember = Ember(bench, "latency", dev, {
        "probe": [f'command = ["{probe}", "{stamps.path}"]'],
        "victim": [f'command = ["{SLEEP}", "86400"]', 'restart = "always"',
                   'restart_delay = "20ms"', 'restart_delay_max = "20ms"', "start_limit = 0"],
    })
    ember.wait_socket()
    ember.wait_active(2)
    res = {"baseline": base, "rss_before": rss_pss(ember.pid)}
    wait_idle(bench, "(a)")

    # (a)
    topic = f"ember/{dev}/service/probe/state"
    cmd = f"ember/{dev}/service/probe/cmd"
    c = Mqtt(bench.port, "bench-a")
    c.subscribe(topic)
    st, _ = wait_state(c, topic, lambda s: s["state"] == "active" and s["pid"], 15)
    if st is None:
        raise RuntimeError(f"no active state of probe on MQTT:\n{ember.log()[-2000:]}")
    pid = st["pid"]
    time.sleep(0.2)
    stamps.drain()
    lat, confirm, timeouts = [], [], 0
    log(f"(a) {warmup} + {n_restart} restarts over MQTT")
    for i in range(warmup + n_restart):
        t0 = c.publish(cmd, "restart")
        s = stamps.next(5, not_pid=pid)
        if s is None:
            timeouts += 1
            bench.odd.append(f"(a) restart {i}: no new process within 5 s")
            if timeouts > 5:
                raise RuntimeError("(a): too many restarts without a new process")
            st, _ = wait_state(c, topic, lambda s: s["state"] == "active" and s["pid"] != pid, 5)
            if st:
                pid = st["pid"]
            continue
        new, ns = s
        bench.record(new, "mqtt-probe")
        if i >= warmup:
            lat.append((ns - t0) / 1e6)
        st, m = wait_state(c, topic, lambda s: s["state"] == "active" and s["pid"] == new, 5)
        if st is None:
            bench.odd.append(f"(a) restart {i}: no `active` state with pid {new} within 5 s")
        elif i >= warmup:
            confirm.append((m.t - t0) / 1e6)
        pid = new
    c.close()
    res["a"] = lat
    res["a2"] = confirm
    res["a_timeouts"] = timeouts

    # (b)
    topic = f"ember/{dev}/service/victim/state"
    c = Mqtt(bench.port, "bench-b")
    c.subscribe(topic)
    st, _ = wait_state(c, topic, lambda s: s["state"] == "active" and s["pid"], 15)
    pid, seq = st["pid"], st["seq"]
    wait_idle(bench, "(b)")
    out, shown = [], collections.Counter()
    log(f"(b) {n_kill} SIGKILLs")
    for i in range(n_kill):
        bench.record(pid, "sleep")
        t0 = time.monotonic_ns()
        os.kill(pid, signal.SIGKILL)
        st, m = wait_state(c, topic, lambda s: s["seq"] > seq and (s["pid"] != pid or s["state"] != "active"), 5)
        if st is None:
            bench.odd.append(f"(b) kill {i}: no state message within 5 s")
            break
        out.append((m.t - t0) / 1e6)
        shown[f'{st["state"]}/{st["sub_state"]} exit_signal={st.get("exit_signal")}'] += 1
        seq = st["seq"]
        st, _ = wait_state(c, topic, lambda s: s["state"] == "active" and s["pid"] not in (None, pid), 5)
        if st is None:
            bench.odd.append(f"(b) kill {i}: not active again within 5 s")
            break
        pid, seq = st["pid"], st["seq"]
    c.close()
    res["b"] = out
    res["b_shown"] = shown
    res["rss_after"] = rss_pss(ember.pid)
    check_log(bench, ember, "(a)/(b)")
    ember.stop()
    return res


# --- (c) ------------------------------------------------------------------------------

def bench_fleet(bench, n, rounds):
    sub = Mqtt(bench.port, "bench-fleet")
    sub.subscribe("ember/+/service/+/state")
    devices = [f"fleet{i:03d}" for i in range(n)]
    want = set(devices)
    latest = {}  # device -> (pid, state)

    def absorb(m):
        s = state_of(m)
        if s is None or s[0] not in want or s[1] != "app":
            return None
        dev, _, st = s
        latest[dev] = (st["pid"], st["state"])
        return dev, st

    log(f"(c) starting {n} embers")
    t_launch = time.monotonic()
    embers = [Ember(bench, f"fleet/{d}", d, {"app": [f'command = ["{SLEEP}", "86400"]']},
                    groups=["fleet"]) for d in devices]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if len(latest) == n and all(st == "active" for _, st in latest.values()):
            break
        m = sub.read(deadline)
        if m is not None:
            absorb(m)
    up = sum(1 for _, st in latest.values() if st == "active")
    dead = [e.device for e in embers if e.proc.poll() is not None]
    if up < n:
        raise RuntimeError(f"(c) only {up} of {n} embers published an active state; exited: {dead[:10]}")
    log(f"(c) {n} embers up and connected in {time.monotonic() - t_launch:.1f} s")
    for pid, _ in latest.values():
        bench.record(pid, "sleep")
    # Let the machine settle.
    settle = time.monotonic() + 3
    while (m := sub.read(settle)) is not None:
        absorb(m)
    times, pubs, firsts = [], [], []
    for r in range(rounds):
        wait_idle(bench, f"(c) round {r + 1}")
        while (m := sub.read(time.monotonic())) is not None:
            absorb(m)
        old = {d: latest[d][0] for d in devices}
        done = {}
        t0 = time.monotonic_ns()
        out = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(bench.port),
                              "-t", "ember/group/fleet/service/app/cmd", "-m", "restart"],
                             capture_output=True, timeout=10)
        t_pub = time.monotonic_ns()
        if out.returncode != 0:
            raise RuntimeError(f"mosquitto_pub failed: {out.stderr.decode()}")
        deadline = time.monotonic() + 30
        while len(done) < n:
            m = sub.read(deadline)
            if m is None:
                break
            got = absorb(m)
            if got is None:
                continue
            dev, st = got
            if dev not in done and st["state"] == "active" and st["pid"] not in (None, old[dev]):
                done[dev] = m.t
                bench.record(st["pid"], "sleep")
        if len(done) < n:
            bench.odd.append(f"(c) round {r + 1}: only {len(done)} of {n} new states within 30 s")
            times.append(float("inf"))
        else:
            times.append((max(done.values()) - t0) / 1e6)
            firsts.append((min(done.values()) - t0) / 1e6)
        pubs.append((t_pub - t0) / 1e6)
        log(f"(c) round {r + 1}: {times[-1]:.1f} ms (mosquitto_pub ran {pubs[-1]:.1f} ms)")
        settle = time.monotonic() + 1
        while (m := sub.read(settle)) is not None:
            absorb(m)
    sub.close()
    rss = [rss_pss(e.pid) for e in embers[:5]]
    log(f"(c) stopping {n} embers")
    t_stop = time.monotonic()
    stop_all([e.proc for e in embers], 20)
    stop_s = time.monotonic() - t_stop
    bad = [e.device for e in embers if e.proc.returncode not in (0,)]
    if bad:
        bench.odd.append(f"(c) {len(bad)} embers did not exit 0 on SIGTERM, e.g. {bad[:3]}")
    for e in embers:
        check_log(bench, e, f"(c) {e.device}")
    # Each ember publishes `offline` (retained) before it exits on SIGTERM.
    statuses = {}
    probe = Mqtt(bench.port, "bench-fleet-status")
    probe.subscribe("ember/+/status")
    deadline = time.monotonic() + 3
    while len(statuses) < n and (m := probe.read(deadline)) is not None:
        dev = m.topic.split("/")[1]
        if dev in want:
            statuses[dev] = m.payload.decode(errors="replace")
    probe.close()
    offline = sum(1 for v in statuses.values() if v == "offline")
    if offline < n:
        bench.odd.append(f"(c) after SIGTERM only {offline} of {n} retained statuses say offline "
                         f"({collections.Counter(statuses.values()).most_common()})")
    return {"times": times, "pubs": pubs, "firsts": firsts, "stop_s": stop_s, "rss": rss}


# --- (d) ------------------------------------------------------------------------------

def rss_pss(pid):
    vals = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, _, rest = line.partition(":")
            if k in ("Rss", "Pss"):
                vals[k] = int(rest.split()[0]) / 1024
    return vals["Rss"], vals["Pss"]


def bench_memory(bench, launches):
    services = {f"s{i}": [f'command = ["{SLEEP}", "86400"]'] for i in range(10)}
    res = {False: [], True: []}
    for k in range(launches):
        for with_mqtt in (False, True):
            dev = f"mem{k}{'m' if with_mqtt else 'p'}"
            sub = None
            if with_mqtt:
                sub = Mqtt(bench.port, f"bench-{dev}")
                sub.subscribe(f"ember/{dev}/#")
            e = Ember(bench, f"mem/{dev}", dev, services, mqtt=with_mqtt)
            e.wait_socket()
            e.wait_active(10)
            if sub:
                seen, online = set(), False
                deadline = time.monotonic() + 15
                while (len(seen) < 10 or not online) and (m := sub.read(deadline)) is not None:
                    if m.topic.endswith("/status") and m.payload == b"online":
                        online = True
                    s = state_of(m)
                    if s and s[2]["state"] == "active":
                        seen.add(s[1])
                if len(seen) < 10 or not online:
                    raise RuntimeError(f"(d) {dev}: {len(seen)} states, online={online}")
            time.sleep(2)
            res[with_mqtt].append(rss_pss(e.pid))
            if sub:
                sub.close()
            check_log(bench, e, f"(d) {dev}")
            e.stop()
            log(f"(d) {'with' if with_mqtt else 'without'} [mqtt]: RSS {res[with_mqtt][-1][0]:.2f} MiB, "
                f"PSS {res[with_mqtt][-1][1]:.2f} MiB")
    return res


# --- (e) ------------------------------------------------------------------------------

def log_counts(ember, topic):
    """(commands the engine got from `topic`, commands ember dropped unanswered)."""
    executed = dropped = 0
    said = f" DEBUG mqtt {topic}: "
    for line in ember.log().splitlines():
        if said in line:
            executed += 1
        elif " command(s) dropped" in line and "mqtt: " in line:
            n = line.split("mqtt: ", 1)[1].split(" command(s) dropped", 1)[0]
            if n.isdigit():
                dropped += int(n)
    return executed, dropped


def bench_burst(bench, count):
    dev = "burst"
    ember = Ember(bench, "burst", dev, {
        "web": [f'command = ["{SLEEP}", "86400"]'],
        "db": [f'command = ["{SLEEP}", "86400"]'],
    }, env={"EMBER_LOG": "debug"})
    ember.wait_socket()
    ember.wait_active(2)
    topic = f"ember/{dev}/service/web/cmd"
    sub = Mqtt(bench.port, "bench-burst")
    sub.subscribe(f"ember/{dev}/status", qos=1)
    deadline = time.monotonic() + 15
    while (m := sub.read(deadline)) is not None and m.payload != b"online":
        pass
    sub.subscribe(f"ember/{dev}/reply", qos=1)
    res = {}
    for qos in (1, 0):
        wait_idle(bench, f"(e) QoS {qos}")
        prefix = f"q{qos}-"
        lines = "".join(
            f'{{"cmd":"{"restart" if n % 10 == 0 else "start"}","id":"{prefix}{n}"}}\n'
            for n in range(count))
        path = os.path.join(bench.tmp, f"burst-{qos}.txt")
        with open(path, "w") as f:
            f.write(lines)
        executed0, dropped0 = log_counts(ember, topic)
        log(f"(e) {count:,} commands at QoS {qos} in one go")
        answered = collections.Counter()
        codes = collections.Counter()
        t0 = time.monotonic()
        with open(path) as stdin:
            pub = bench.popen(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(bench.port),
                               "-q", str(qos), "-t", topic, "-l"], "mosquitto_pub",
                              stdin=stdin)
        last_reply, last_change, seen = t0, time.monotonic(), None
        while True:
            m = sub.read(time.monotonic() + 0.5)
            if m is not None and m.topic.endswith("/reply"):
                try:
                    reply = json.loads(m.payload)
                except ValueError:
                    continue
                rid = reply.get("id")
                if isinstance(rid, str) and rid.startswith(prefix):
                    answered[rid] += 1
                    codes[(reply.get("error") or {}).get("code", "ok")] += 1
                    last_reply = time.monotonic()
            executed, dropped = log_counts(ember, topic)
            executed, dropped = executed - executed0, dropped - dropped0
            now = (len(answered), executed, dropped)
            if now != seen:
                seen, last_change = now, time.monotonic()
            if pub.poll() is not None and len(answered) + dropped >= count:
                break
            if time.monotonic() - last_change > 30:
                bench.odd.append(f"(e) QoS {qos}: nothing moved for 30 s; {len(answered)} answered, "
                                 f"{dropped} dropped of {count}")
                break
        pub.wait(10)
        ok = codes.get("ok", 0)
        busy = codes.get("busy", 0)
        res[qos] = {
            "executed": executed, "answered": len(answered), "ok": ok, "busy": busy,
            "other": sum(codes.values()) - ok - busy,
            "twice": sum(1 for n in answered.values() if n > 1),
            "dropped": dropped, "unanswered_executed": max(0, executed - ok),
            "silent": max(0, count - len(answered) - dropped),
            "seconds": last_reply - t0,
        }
        log(f"(e) QoS {qos}: {res[qos]}")
    sub.close()
    check_log(bench, ember, "(e)")
    ember.stop()
    return res


# --- main ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ember", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="a,b,c,d,e")
    ap.add_argument("--broker-nagle", action="store_true",
                    help="keep mosquitto's default set_tcp_nodelay false")
    args = ap.parse_args()
    only = set(args.only.split(","))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # PR_SET_CHILD_SUBREAPER: orphans of a killed ember come here, to be killed at the end.
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)

    n_restart, n_kill, n_fleet, rounds, launches = (
        (100, 50, 50, 3, 1) if args.quick else (1000, 200, 200, 3, 3))
    # A private copy: the PSS of (d) would otherwise depend on whoever else on the
    # machine maps the same file (tests, other benchmarks), and a rebuild during the
    # run cannot change the binary under the bench.
    ember = os.path.join(args.tmp, "ember")
    shutil.copy2(args.ember, ember)
    bench = Bench(ember, args.tmp, nagle=args.broker_nagle)
    t_start = time.monotonic()
    res = {}
    try:
        probe, how = build_probe(args.tmp)
        res["probe_how"] = how
        bench.start_broker()
        if "d" in only:
            wait_idle(bench, "(d)")
            res["d"] = bench_memory(bench, launches)
        if "a" in only or "b" in only:
            res.update(bench_latency(bench, probe, n_restart if "a" in only else 0,
                                     n_kill if "b" in only else 0))
        if "c" in only:
            res["c"] = bench_fleet(bench, n_fleet, rounds)
        if "e" in only:
            res["e"] = bench_burst(bench, 5000)
    finally:
        bench.cleanup()
    report(res, bench, n_fleet, time.monotonic() - t_start)


def report(res, bench, n_fleet, elapsed):
    def ok(flag):
        return "yes" if flag else "**no**"

    rows = []
    if res.get("a"):
        a = res["a"]
        rows.append((f"(a) MQTT `restart` → new process running, p50 / p99 (ms, {len(a):,} sequential)",
                     f"{pct(a, 50):.2f} / {pct(a, 99):.2f}", "p99 < 10 ms", ok(pct(a, 99) < 10)))
    if res.get("a2"):
        a2 = res["a2"]
        rows.append(("(a) the same → its `active` state (new pid) at the subscriber, p50 / p99 (ms)",
                     f"{pct(a2, 50):.2f} / {pct(a2, 99):.2f}", "—", ""))
    if res.get("b"):
        b = res["b"]
        rows.append((f"(b) SIGKILL of a service → its exit on a subscriber, p50 / p99 (ms, {len(b)} kills)",
                     f"{pct(b, 50):.2f} / {pct(b, 99):.2f}", "—", ""))
    if "c" in res:
        t = res["c"]["times"]
        med = statistics.median(t)
        rows.append((f"(c) fleet of {n_fleet}: group `restart` → all {n_fleet} new states seen (ms, median of {len(t)})",
                     f"{med:.0f}", "< 2000 ms", ok(med < 2000)))
    if "d" in res:
        d = res["d"]
        rp = statistics.median(x[0] for x in d[False])
        rm = statistics.median(x[0] for x in d[True])
        pp = statistics.median(x[1] for x in d[False])
        pm = statistics.median(x[1] for x in d[True])
        rows.append(("(d) RSS of ember, 10 services: without / with `[mqtt]` (MiB)", f"{rp:.2f} / {rm:.2f}", "", ""))
        rows.append(("(d) PSS of ember, 10 services: without / with `[mqtt]` (MiB)", f"{pp:.2f} / {pm:.2f}", "", ""))
        rows.append(("(d) the adapter's cost: Δ RSS / Δ PSS (MiB)", f"{rm - rp:.2f} / {pm - pp:.2f}",
                     "< 1 MiB", ok(rm - rp < 1 and pm - pp < 1)))
    for qos, e in sorted(res.get("e", {}).items(), reverse=True):
        rows.append((f"(e) burst of 5,000 commands at QoS {qos}: executed / answered (ok + `busy`) / "
                     f"dropped, said in the log / lost without a word / executed but not answered",
                     f"{e['executed']:,} / {e['answered']:,} ({e['ok']:,} + {e['busy']:,}) / "
                     f"{e['dropped']:,} / {e['silent']:,} / {e['unanswered_executed']:,}",
                     "0 lost, 0 executed but not answered",
                     ok(e["unanswered_executed"] == 0 and e["twice"] == 0 and e["silent"] == 0
                        and e["executed"] == e["ok"])))
    print()
    print("| metric | result | goal | met |")
    print("|---|---:|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    notes = []
    if res.get("baseline"):
        base = res["baseline"]
        notes.append(f"probe ({res['probe_how']}) start-up, posix_spawn by the bench → its stamp at main(): "
                     f"p50 {pct(base, 50):.3f} ms, p99 {pct(base, 99):.3f} ms (included in (a), not subtracted)")
    if res.get("a"):
        a = res["a"]
        notes.append(f"(a) min {min(a):.2f}, p90 {pct(a, 90):.2f}, p99.9 {pct(a, 99.9):.2f}, max {max(a):.2f} ms; "
                     f"{sum(1 for x in a if x >= 10)} of {len(a)} ≥ 10 ms; {res['a_timeouts']} timeouts")
    if res.get("b"):
        b = res["b"]
        shown = ", ".join(f"{k} ×{v}" for k, v in res["b_shown"].most_common())
        notes.append(f"(b) min {min(b):.2f}, max {max(b):.2f} ms; the first message after the kill said: {shown}")
    if res.get("rss_after"):
        notes.append(f"RSS/PSS of the (a)/(b) ember (2 services) before (a): {res['rss_before'][0]:.2f}/"
                     f"{res['rss_before'][1]:.2f} MiB, after (b): {res['rss_after'][0]:.2f}/{res['rss_after'][1]:.2f} MiB")
    if "c" in res:
        c = res["c"]
        notes.append("(c) rounds: " + ", ".join(f"{x:.0f}" for x in c["times"]) + " ms; first new state after "
                     + ", ".join(f"{x:.0f}" for x in c["firsts"]) + " ms; mosquitto_pub itself ran "
                     + ", ".join(f"{x:.1f}" for x in c["pubs"]) + f" ms; {n_fleet} embers stopped (SIGTERM) in "
                     f"{c['stop_s']:.1f} s; RSS/PSS of one fleet ember: "
                     + ", ".join(f"{r:.2f}/{p:.2f}" for r, p in c["rss"][:3]) + " MiB")
    for qos, e in sorted(res.get("e", {}).items(), reverse=True):
        notes.append(f"(e) QoS {qos}: last reply {e['seconds']:.2f} s after the publisher started; "
                     f"{e['other']} other refusals, {e['twice']} ids answered more than once")
    if "d" in res:
        d = res["d"]
        notes.append("(d) launches (RSS/PSS MiB): without " + ", ".join(f"{r:.2f}/{p:.2f}" for r, p in d[False])
                     + "; with " + ", ".join(f"{r:.2f}/{p:.2f}" for r, p in d[True]))
    notes.append("broker: mosquitto " + ("defaults (set_tcp_nodelay false: Nagle on)" if bench.nagle
                                         else "with set_tcp_nodelay true"))
    if bench.load:
        notes.append("machine busy (all CPUs) just before: " + ", ".join(bench.load))
    notes += bench.odd
    for n in notes:
        print(f"- {n}")
    print(f"\nmeasured in {elapsed:.0f} s")


if __name__ == "__main__":
    main()
