#!/usr/bin/python3
"""D-Bus adapter benchmark of ember: method-call round trip, state change -> signal,
and what the adapter costs in memory.

Driven by bench/dbus.sh (which builds ember); can also be run directly as root:
    python3 bench/dbus_measure.py --ember target/release/ember --tmp DIR [--quick]

Python standard library only. The D-Bus client is a small one written here (SASL
EXTERNAL, the wire format's marshalling, Hello, AddMatch) on a plain AF_UNIX stream
socket, in this process: the instant a call leaves is read just before sendall() and
the instant its reply (or a signal) arrives right where recv() returns the bytes that
complete it; no client library, thread or event loop sits in between (jeepney and
dbus-next are not used). Spawning busctl per call costs milliseconds of its own; that
cost is measured separately and shown as context, never mixed into the figures.

Set-up: one private dbus-daemon (`--config-file` of type "system": deny by default,
the shipped config/dbus-1/io.ember.Init1.conf included, listening on TMP/bus.sock);
ember as an ordinary supervisor (not PID 1), a child of this process, with
[control] socket = "TMP/x.sock", [dbus] bus = "unix:path=TMP/bus.sock", and `sleep`
services. A copy of the binary in TMP is run, so that PSS does not depend on other
processes mapping target/release/ember. This process is a child subreaper and lists
(pid, comm) of what it starts in TMP/pids for dbus.sh's trap. Every wait is bounded.

(a) Round trip, sequential, 1,000 calls each after 20 warm-ups, the client as root:
    - org.freedesktop.DBus.GetId to the bus daemon itself: the floor (no ember);
    - Properties.Get(io.ember.Init1.Service, State) on one service object;
    - Manager.GetService("svc0"), Manager.ListServices() (10 services);
    - Manager.RestartService("svc9"): the authorized path (ember asks the daemon for
      the caller's credentials, then hands the command to the core) - before each
      next call the bench waits for svc9's PropertiesChanged to active with a new
      MainPID, so the calls never overlap a restart in progress; the time from the
      call to the first PropertiesChanged (deactivating) and to the active one are
      reported too;
    - the same restart over ember's own control socket (a JSON line), for scale.
(b) State change -> PropertiesChanged at a subscriber (a second connection with an
    AddMatch on the service's path): a `sleep` service "victim" (restart "always",
    restart_delay and restart_delay_max 20ms, start_limit 0) is SIGKILLed (clock read just before kill(2));
    the time is when recv() returns the first PropertiesChanged of that object that
    shows the exit (State not active, or another MainPID). Then the bench waits for
    it to be active again. 200 kills (50 quick).
(c) Memory: Rss and Pss of /proc/PID/smaps_rollup of ember with 10 `sleep` services,
    without [dbus] and with [dbus] attached (same binary, same services; control_group
    "ember", and again with control_group "root", a group found in /etc/group: a
    group glibc does not find in /etc/group makes it load its NSS modules), 2 s after
    every service is active (and, with [dbus], after Version reads over the bus and a
    ListServices call); each ember alone; 3 alternating launches, medians; the
    difference in MiB. Goal: < 1 MiB.
systemd: if /run/dbus/system_bus_socket answers and org.freedesktop.systemd1 has an
owner there, the same client makes the same kind of calls to systemd (Get of a
unit's ActiveState, GetUnit) for a side-by-side; otherwise it says so.
"""

import argparse
import ctypes
import grp
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

# ---------------------------------------------------------------------------------
# A minimal D-Bus client: marshalling, SASL EXTERNAL, calls, signals.
# ---------------------------------------------------------------------------------

ALIGN = {"y": 1, "b": 4, "n": 2, "q": 2, "i": 4, "u": 4, "x": 8, "t": 8, "d": 8,
         "s": 4, "o": 4, "g": 1, "a": 4, "(": 8, "{": 8, "v": 1, "h": 4}
FIXED = {"y": "B", "b": "I", "n": "h", "q": "H", "i": "i", "u": "I", "x": "q",
         "t": "Q", "d": "d", "h": "I"}


def split_types(sig):
    """'sa{sv}as' -> ['s', 'a{sv}', 'as']"""
    out, i = [], 0
    while i < len(sig):
        j = single_end(sig, i)
        out.append(sig[i:j])
        i = j
    return out


def single_end(sig, i):
    c = sig[i]
    if c == "a":
        return single_end(sig, i + 1)
    if c in "({":
        close = ")" if c == "(" else "}"
        depth, j = 0, i
        while True:
            if sig[j] == c:
                depth += 1
            elif sig[j] == close:
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
    return i + 1


class Writer:
    def __init__(self):
        self.buf = bytearray()

    def pad(self, n):
        while len(self.buf) % n:
            self.buf.append(0)

    def put(self, t, v):
        c = t[0]
        self.pad(ALIGN[c])
        if c in FIXED:
            self.buf += struct.pack("<" + FIXED[c], int(v) if c != "d" else v)
        elif c in "so":
            b = v.encode()
            self.buf += struct.pack("<I", len(b)) + b + b"\0"
        elif c == "g":
            b = v.encode()
            self.buf += bytes([len(b)]) + b + b"\0"
        elif c == "v":
            sig, val = v
            self.put("g", sig)
            self.put(sig, val)
        elif c == "(":
            for sub, val in zip(split_types(t[1:-1]), v):
                self.put(sub, val)
        elif c == "a":
            elem = t[1:]
            self.buf += b"\0\0\0\0"
            at = len(self.buf) - 4
            self.pad(ALIGN[elem[0]])
            start = len(self.buf)
            if elem[0] == "{":
                k, vt = split_types(elem[1:-1])
                for key, val in v.items():
                    self.pad(8)
                    self.put(k, key)
                    self.put(vt, val)
            else:
                for val in v:
                    self.put(elem, val)
            struct.pack_into("<I", self.buf, at, len(self.buf) - start)
        else:
            raise ValueError("cannot marshal " + t)


class Reader:
    def __init__(self, data, pos=0):
        self.data, self.pos = data, pos

    def pad(self, n):
        self.pos += (-self.pos) % n

    def get(self, t):
        c = t[0]
        self.pad(ALIGN[c])
        if c in FIXED:
            fmt = "<" + FIXED[c]
            (v,) = struct.unpack_from(fmt, self.data, self.pos)
            self.pos += struct.calcsize(fmt)
            return bool(v) if c == "b" else v
        if c in "so":
            (n,) = struct.unpack_from("<I", self.data, self.pos)
            v = bytes(self.data[self.pos + 4:self.pos + 4 + n]).decode()
            self.pos += 4 + n + 1
            return v
        if c == "g":
            n = self.data[self.pos]
            v = bytes(self.data[self.pos + 1:self.pos + 1 + n]).decode()
            self.pos += 1 + n + 1
            return v
        if c == "v":
            sig = self.get("g")
            return self.get(sig)
        if c == "(":
            return tuple(self.get(sub) for sub in split_types(t[1:-1]))
        if c == "a":
            (n,) = struct.unpack_from("<I", self.data, self.pos)
            self.pos += 4
            elem = t[1:]
            self.pad(ALIGN[elem[0]])
            end = self.pos + n
            if elem[0] == "{":
                k, vt = split_types(elem[1:-1])
                out = {}
                while self.pos < end:
                    self.pad(8)
                    key = self.get(k)
                    out[key] = self.get(vt)
                return out
            out = []
            while self.pos < end:
                out.append(self.get(elem))
            return out
        raise ValueError("cannot read " + t)


METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL = 1, 2, 3, 4
FIELDS = {1: "path", 2: "interface", 3: "member", 4: "error", 5: "reply_serial",
          6: "destination", 7: "sender", 8: "signature"}
FIELD_TYPE = {1: "o", 2: "s", 3: "s", 4: "s", 5: "u", 6: "s", 7: "s", 8: "g"}


class DBusError(Exception):
    pass


class Conn:
    """One connection to a bus; calls are sequential, signals are queued."""

    def __init__(self, path, timeout=5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = bytearray()
        self.last_recv_ns = time.monotonic_ns()
        self.serial = 0
        self.queue = []          # (recv time ns, message) of signals not yet taken
        uid = str(os.geteuid()).encode().hex()
        self.sock.sendall(b"\0AUTH EXTERNAL " + uid.encode() + b"\r\n")
        line = self._line()
        if not line.startswith(b"OK"):
            raise DBusError("auth refused: %r" % line)
        self.sock.sendall(b"BEGIN\r\n")
        self.unique = self.call("org.freedesktop.DBus", "/org/freedesktop/DBus",
                                "org.freedesktop.DBus", "Hello")[0]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise DBusError("bus closed during auth")
            self.buf += chunk
        line, _, rest = bytes(self.buf).partition(b"\r\n")
        self.buf = bytearray(rest)
        return line

    def encode(self, dest, path, iface, member, sig="", args=(), kind=METHOD_CALL):
        self.serial += 1
        body = Writer()
        for t, v in zip(split_types(sig), args):
            body.put(t, v)
        fields = [(1, ("o", path)), (3, ("s", member))]
        if iface:
            fields.append((2, ("s", iface)))
        if dest:
            fields.append((6, ("s", dest)))
        if sig:
            fields.append((8, ("g", sig)))
        head = Writer()
        head.buf += struct.pack("<cBBBII", b"l", kind, 0, 1, len(body.buf), self.serial)
        head.put("a(yv)", fields)
        head.pad(8)
        return bytes(head.buf + body.buf), self.serial

    def _read_message(self, deadline):
        """The next whole message and the monotonic ns at which its last byte came."""
        while True:
            if len(self.buf) >= 16:
                (blen, _, flen) = struct.unpack_from("<III", self.buf, 4)
                total = 16 + flen + ((-flen) % 8) + blen
                if len(self.buf) >= total:
                    data = bytes(self.buf[:total])
                    del self.buf[:total]
                    return self._parse(data)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message from the bus in time")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            self.last_recv_ns = time.monotonic_ns()
            if not chunk:
                raise DBusError("the bus closed the connection")
            self.buf += chunk

    def _parse(self, data):
        if data[0:1] != b"l":
            raise DBusError("big-endian message: not handled")
        kind = data[1]
        (blen, serial) = struct.unpack_from("<II", data, 4)
        r = Reader(data, 12)
        fields = r.get("a(yv)")
        r.pad(8)
        msg = {"type": kind, "serial": serial, "t": self.last_recv_ns}
        for code, val in fields:
            if code in FIELDS:
                msg[FIELDS[code]] = val
        sig = msg.get("signature", "")
        msg["body"] = [r.get(t) for t in split_types(sig)] if sig else []
        return msg

    def send(self, dest, path, iface, member, sig="", args=()):
        data, serial = self.encode(dest, path, iface, member, sig, args)
        t0 = time.monotonic_ns()
        self.sock.sendall(data)
        return serial, t0

    def reply(self, serial, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_message(deadline)
            if msg["type"] == SIGNAL:
                self.queue.append(msg)
                continue
            if msg.get("reply_serial") != serial:
                continue
            if msg["type"] == ERROR:
                raise DBusError("%s: %s" % (msg.get("error"), msg["body"][:1]))
            return msg

    def call(self, dest, path, iface, member, sig="", args=(), timeout=5.0):
        serial, _ = self.send(dest, path, iface, member, sig, args)
        return self.reply(serial, timeout)["body"]

    def timed_call(self, dest, path, iface, member, sig="", args=()):
        """(round trip ns, body)."""
        serial, t0 = self.send(dest, path, iface, member, sig, args)
        msg = self.reply(serial)
        return msg["t"] - t0, msg["body"]

    def signal(self, timeout):
        """The next signal (queued first), or None when none came in time."""
        if self.queue:
            return self.queue.pop(0)
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self._read_message(deadline)
            except TimeoutError:
                return None
            if msg["type"] == SIGNAL:
                return msg

    def add_match(self, rule):
        self.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                  "AddMatch", "s", [rule])


# ---------------------------------------------------------------------------------
# Processes, ember, the bus
# ---------------------------------------------------------------------------------

BUS = "io.ember.Init1"
MANAGER = "/io/ember/Init1"
MGR = "io.ember.Init1.Manager"
SVC = "io.ember.Init1.Service"
PROPS = "org.freedesktop.DBus.Properties"
PR_SET_CHILD_SUBREAPER = 36

STARTED = []   # Popen objects, for the end


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def note_pid(tmp, proc, comm):
    with open(os.path.join(tmp, "pids"), "a") as f:
        f.write("%d %s\n" % (proc.pid, comm[:15]))


def svc_path(name):
    out = []
    for i, ch in enumerate(name.encode()):
        c = chr(ch)
        if c.isascii() and (c.isalpha() or (c.isdigit() and i > 0)):
            out.append(c)
        else:
            out.append("_%02x" % ch)
    return MANAGER + "/service/" + "".join(out)


def wait_until(timeout, check, step=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = check()
        if v:
            return v
        time.sleep(step)
    return None


def start_bus(args):
    sock = os.path.join(args.tmp, "bus.sock")
    conf = os.path.join(args.tmp, "bus.conf")
    policy = os.path.join(args.repo, "config/dbus-1/io.ember.Init1.conf")
    with open(conf, "w") as f:
        f.write("""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
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
  </policy>
  <include>%s</include>
</busconfig>
""" % (sock, policy))
    err = open(os.path.join(args.tmp, "bus.log"), "w")
    proc = subprocess.Popen(["dbus-daemon", "--config-file=" + conf, "--nofork",
                             "--nopidfile", "--nosyslog"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    STARTED.append(proc)
    note_pid(args.tmp, proc, "dbus-daemon")
    if not wait_until(5, lambda: os.path.exists(sock)):
        raise SystemExit("dbus-daemon did not listen on " + sock)
    return proc, sock


class Ember:
    def __init__(self, args, tag, services, dbus_sock=None, group="ember"):
        self.dir = os.path.join(args.tmp, tag)
        os.makedirs(self.dir, exist_ok=True)
        self.ctl_sock = os.path.join(self.dir, "x.sock")
        text = '[control]\nsocket = "%s"\n\n[system]\ndevice = "bench"\n\n' % self.ctl_sock
        if dbus_sock:
            text += '[dbus]\nbus = "unix:path=%s"\ncontrol_group = "%s"\n\n' % (dbus_sock, group)
        text += services
        conf = os.path.join(self.dir, "ember.toml")
        with open(conf, "w") as f:
            f.write(text)
        self.logf = os.path.join(self.dir, "ember.log")
        env = dict(os.environ, EMBER_LOG="info")
        self.proc = subprocess.Popen([args.ember_copy, "--config", conf], env=env,
                                     stdin=subprocess.DEVNULL,
                                     stdout=open(self.logf, "w"), stderr=subprocess.STDOUT)
        STARTED.append(self.proc)
        note_pid(args.tmp, self.proc, "ember")
        if not wait_until(10, lambda: os.path.exists(self.ctl_sock)):
            raise SystemExit("ember did not open its socket; log:\n" + self.log())

    def log(self):
        try:
            return open(self.logf).read()
        except OSError:
            return ""

    def control(self, request, timeout=5.0):
        """One request on the control socket; (round trip ns, reply)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self.ctl_sock)
        data = (json.dumps(request) + "\n").encode()
        t0 = time.monotonic_ns()
        s.sendall(data)
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        t1 = time.monotonic_ns()
        s.close()
        return t1 - t0, json.loads(buf)

    def status(self):
        _, reply = self.control({"cmd": "status", "names": []})
        return {s["name"]: s for s in reply["ok"]["services"]}

    def all_active(self, names):
        st = self.status()
        return all(st.get(n, {}).get("state") == "active" for n in names)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def sleep_services(n, base, extra=""):
    out = ""
    for i in range(n):
        out += '[service.svc%d]\ncommand = ["/bin/sleep", "%d"]\n%s\n' % (i, base + i, extra)
    return out


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def ms(ns):
    return ns / 1e6


def load_note():
    with open("/proc/loadavg") as f:
        return "load " + " ".join(f.read().split()[:3])


# ---------------------------------------------------------------------------------
# (a) round trips, (b) change -> signal
# ---------------------------------------------------------------------------------

def round_trips(conn, n, warm, dest, calls):
    """calls: [(label, path, iface, member, sig, args)] -> {label: [ns...]}"""
    out = {}
    for label, path, iface, member, sig, a in calls:
        for _ in range(warm):
            conn.timed_call(dest, path, iface, member, sig, a)
        times = []
        for _ in range(n):
            dt, _ = conn.timed_call(dest, path, iface, member, sig, a)
            times.append(dt)
        out[label] = times
    return out


def wait_props(sub, path, check, timeout):
    """The first PropertiesChanged of `path` whose changes satisfy check, with its time."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        msg = sub.signal(left)
        if msg is None:
            return None
        if msg.get("member") == "PropertiesChanged" and msg.get("path") == path:
            if check(msg["body"][1]):
                return msg


def part_a_b(args, rows, notes):
    _, bus_sock = start_bus(args)
    n = args.n
    services = sleep_services(10, 7930000, 'restart_delay = "20ms"\nrestart_delay_max = "20ms"\nstart_limit = 0\n')
    services += ('[service.victim]\ncommand = ["/bin/sleep", "7930100"]\nrestart = "always"\n'
                 'restart_delay = "20ms"\nrestart_delay_max = "20ms"\nstart_limit = 0\n')
    ember = Ember(args, "rt", services, bus_sock)
    names = ["svc%d" % i for i in range(10)] + ["victim"]
    if not wait_until(15, lambda: ember.all_active(names), 0.05):
        raise SystemExit("services not active; log:\n" + ember.log())
    conn = Conn(bus_sock)

    def attached():
        try:
            return conn.call(BUS, MANAGER, PROPS, "Get", "ss", [MGR, "Version"], timeout=1)
        except (DBusError, TimeoutError):
            return None
    if not wait_until(15, attached, 0.1):
        raise SystemExit("ember never served io.ember.Init1; log:\n" + ember.log())
    sub = Conn(bus_sock)
    log("dbus: (a) round trips, %d calls each (%s)" % (n, load_note()))
    rt = {}
    rt.update(round_trips(conn, n, 20, "org.freedesktop.DBus", [
        ("GetId to dbus-daemon itself (floor, no ember)", "/org/freedesktop/DBus",
         "org.freedesktop.DBus", "GetId", "", [])]))
    p0 = svc_path("svc0")
    rt.update(round_trips(conn, n, 20, BUS, [
        ("Get(Service, State)", p0, PROPS, "Get", "ss", [SVC, "State"]),
        ("GetService(s)", MANAGER, MGR, "GetService", "s", ["svc0"]),
        ("ListServices() [11 services]", MANAGER, MGR, "ListServices", "", []),
    ]))
    # RestartService, each after the previous restart is over.
    p9 = svc_path("svc9")
    sub.add_match("type='signal',sender='%s',interface='%s',member='PropertiesChanged',"
                  "path='%s'" % (BUS, PROPS, p9))
    pid = conn.call(BUS, p9, PROPS, "Get", "ss", [SVC, "MainPID"])[0]
    restart_rt, to_first, to_active = [], [], []
    nrest = n
    for i in range(nrest + 10):
        serial, t0 = conn.send(BUS, MANAGER, MGR, "RestartService", "s", ["svc9"])
        reply = conn.reply(serial)
        first = wait_props(sub, p9, lambda c: True, 5)
        active = first if (first and first["body"][1].get("State") == "active" and
                           first["body"][1].get("MainPID", pid) != pid) else \
            wait_props(sub, p9, lambda c: c.get("State") == "active" and
                       c.get("MainPID", 0) not in (0, pid), 5)
        if first is None or active is None:
            raise SystemExit("restart %d of svc9 never signalled; log:\n%s" % (i, ember.log()))
        pid = active["body"][1]["MainPID"]
        if i >= 10:
            restart_rt.append(reply["t"] - t0)
            to_first.append(first["t"] - t0)
            to_active.append(active["t"] - t0)
    rt["RestartService(s) [authorized: +GetConnectionCredentials]"] = restart_rt
    # The same restart on ember's control socket, for scale (a new connection each time).
    sock_rt = []
    for i in range(min(n, 300) + 10):
        dt, reply = ember.control({"cmd": "restart", "names": ["svc9"]})
        if "error" in reply:
            raise SystemExit("control restart: %r" % reply)
        if not wait_props(sub, p9, lambda c: c.get("State") == "active" and
                          c.get("MainPID", 0) not in (0, pid), 5):
            raise SystemExit("control-socket restart never signalled")
        pid = conn.call(BUS, p9, PROPS, "Get", "ss", [SVC, "MainPID"])[0]
        if i >= 10:
            sock_rt.append(dt)
    rt["restart on ember's control socket (connect+line+reply; not D-Bus)"] = sock_rt
    for label, times in rt.items():
        # The goal is for calls to ember; the floor and the control socket are context.
        to_ember = not label.startswith(("GetId", "restart on ember's control"))
        rows.append(("(a) round trip: " + label, times, "2" if to_ember else None))
    rows.append(("(a) RestartService -> first PropertiesChanged (deactivating)", to_first, None))
    rows.append(("(a) RestartService -> PropertiesChanged active, new MainPID", to_active, None))

    # (b) SIGKILL -> PropertiesChanged.
    kills = args.kills
    log("dbus: (b) %d kills of victim (%s)" % (kills, load_note()))
    pv = svc_path("victim")
    sub2 = Conn(bus_sock)
    sub2.add_match("type='signal',sender='%s',interface='%s',member='PropertiesChanged',"
                   "path='%s'" % (BUS, PROPS, pv))
    vpid = conn.call(BUS, pv, PROPS, "Get", "ss", [SVC, "MainPID"])[0]
    delays = []
    for i in range(kills + 5):
        t0 = time.monotonic_ns()
        os.kill(vpid, signal.SIGKILL)
        seen = wait_props(sub2, pv, lambda c: c.get("State", "active") != "active" or
                          c.get("MainPID", vpid) != vpid, 5)
        if seen is None:
            raise SystemExit("kill %d: no PropertiesChanged; log:\n%s" % (i, ember.log()))
        back = seen if (seen["body"][1].get("State") == "active" and
                        seen["body"][1].get("MainPID", 0) not in (0, vpid)) else \
            wait_props(sub2, pv, lambda c: c.get("State") == "active" and
                       c.get("MainPID", 0) not in (0, vpid), 5)
        if back is None:
            raise SystemExit("kill %d: victim never active again" % i)
        vpid = back["body"][1]["MainPID"]
        if i >= 5:
            delays.append(seen["t"] - t0)
    rows.append(("(b) SIGKILL of the service -> its PropertiesChanged at a subscriber",
                 delays, None))

    # Context: busctl spawned per call.
    spawn = []
    for _ in range(args.spawns):
        t0 = time.monotonic_ns()
        subprocess.run(["busctl", "--address=unix:path=" + bus_sock, "get-property", BUS,
                        p0, SVC, "State"], stdout=subprocess.DEVNULL, check=True, timeout=10)
        spawn.append(time.monotonic_ns() - t0)
    rows.append(("(context) `busctl get-property` spawned per call (process included)",
                 spawn, None))
    # Sanity: every GetService returned the escaped path.
    got = conn.call(BUS, MANAGER, MGR, "GetService", "s", ["svc0"])[0]
    if got != p0:
        notes.append("GetService(svc0) returned %r, expected %r" % (got, p0))
    for c in (conn, sub, sub2):
        c.close()
    ember.stop()
    return bus_sock


# ---------------------------------------------------------------------------------
# systemd, where there is one
# ---------------------------------------------------------------------------------

def systemd_side(args, rows, notes):
    path = "/run/dbus/system_bus_socket"
    try:
        conn = Conn(path, timeout=2)
        owned = conn.call("org.freedesktop.DBus", "/org/freedesktop/DBus",
                          "org.freedesktop.DBus", "NameHasOwner", "s",
                          ["org.freedesktop.systemd1"])[0]
    except (OSError, DBusError, TimeoutError) as e:
        notes.append("no systemd bus here (%s: %s): ember's figures are absolute, with no "
                     "systemd1 side-by-side" % (path, e.__class__.__name__))
        return
    if not owned:
        notes.append("the system bus at %s has no org.freedesktop.systemd1: ember's figures "
                     "are absolute, with no systemd side-by-side" % path)
        conn.close()
        return
    S = "org.freedesktop.systemd1"
    unit = conn.call(S, "/org/freedesktop/systemd1", S + ".Manager", "GetUnit", "s",
                     ["dbus.service"])[0]
    rt = round_trips(conn, args.n, 20, S, [
        ("Get(Unit, ActiveState) [systemd1]", unit, PROPS, "Get", "ss",
         [S + ".Unit", "ActiveState"]),
        ("GetUnit(s) [systemd1]", "/org/freedesktop/systemd1", S + ".Manager", "GetUnit",
         "s", ["dbus.service"]),
    ])
    for label, times in rt.items():
        rows.append(("(a) round trip: " + label, times, None))
    conn.close()


# ---------------------------------------------------------------------------------
# (c) memory
# ---------------------------------------------------------------------------------

def rollup(pid, binary):
    """Rss, Pss, Anonymous of smaps_rollup; Rss of the binary's and of other files'
    mappings from smaps, and the Rss of each shared library (KiB)."""
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0] in ("Rss:", "Pss:", "Anonymous:"):
                out[parts[0][:-1]] = int(parts[1])
    libs, mapping = {}, None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5 and ":" in parts[3]:
                mapping = parts[5] if len(parts) >= 6 else ""
            elif parts[0] == "Rss:" and mapping and mapping.startswith("/"):
                libs[mapping] = libs.get(mapping, 0) + int(parts[1])
    out["binary"] = libs.pop(binary, 0)
    out["libs"] = sum(libs.values())
    out["lib_map"] = libs
    return out


def part_c(args, mem, notes):
    _, bus_sock = start_bus(args)
    services = sleep_services(10, 7940000)
    names = ["svc%d" % i for i in range(10)]
    results = {"without": [], "with": [], "with_root": []}
    log("dbus: (c) memory, %d alternating launches each (%s)" % (args.launches, load_note()))
    for round_ in range(args.launches):
        for kind in ("without", "with", "with_root"):
            ember = Ember(args, "mem-%s-%d" % (kind, round_), services,
                          None if kind == "without" else bus_sock,
                          "root" if kind == "with_root" else "ember")
            if not wait_until(15, lambda: ember.all_active(names), 0.05):
                raise SystemExit("memory: services not active; log:\n" + ember.log())
            if kind != "without":
                conn = Conn(bus_sock)

                def ok():
                    try:
                        return conn.call(BUS, MANAGER, PROPS, "Get", "ss", [MGR, "Version"],
                                         timeout=1)
                    except (DBusError, TimeoutError):
                        return None
                if not wait_until(15, ok, 0.1):
                    raise SystemExit("memory: ember never attached; log:\n" + ember.log())
                rows = conn.call(BUS, MANAGER, MGR, "ListServices")[0]
                if len(rows) != 10:
                    notes.append("ListServices gave %d rows, not 10" % len(rows))
                conn.close()
            time.sleep(2)
            results[kind].append(rollup(ember.proc.pid, args.ember_copy))
            ember.stop()
    for kind in results:
        mem[kind] = {k: statistics.median(r[k] for r in results[kind])
                     for k in ("Rss", "Pss", "Anonymous", "binary", "libs")}
        mem[kind + "_all"] = results[kind]


# ---------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ember", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    args.n = 200 if args.quick else 1000
    args.kills = 50 if args.quick else 200
    args.spawns = 20 if args.quick else 100
    args.launches = 1 if args.quick else 3
    if os.geteuid() != 0:
        raise SystemExit("dbus_measure.py: run as root (RestartService is root's or the group's)")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    args.ember_copy = os.path.join(args.tmp, "ember")
    shutil.copy2(args.ember, args.ember_copy)

    def on_term(signum, _frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    rows, notes, mem = [], [], {}
    rc = 0
    try:
        part_a_b(args, rows, notes)
        systemd_side(args, rows, notes)
        part_c(args, mem, notes)
    except KeyboardInterrupt:
        log("dbus_measure.py: interrupted")
        rc = 130
    finally:
        cleanup()
    if rc:
        return rc
    report(args, rows, mem, notes)
    return 0


def cleanup():
    for p in reversed(STARTED):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
    # Orphans reparented to us (a child subreaper): by pid, each.
    me = os.getpid()
    try:
        kids = open("/proc/%d/task/%d/children" % (me, me)).read().split()
    except OSError:
        kids = []
    for k in kids:
        try:
            os.kill(int(k), signal.SIGKILL)
            os.waitpid(int(k), 0)
        except (OSError, ChildProcessError):
            pass


def report(args, rows, mem, notes):
    print()
    print("| figure | n | p50 ms | p99 ms | max ms | goal |")
    print("|---|---:|---:|---:|---:|---|")
    verdicts = []
    for label, times, goal in rows:
        p50, p99, mx = ms(pct(times, 50)), ms(pct(times, 99)), ms(max(times))
        g = ""
        if goal:
            ok = p99 < float(goal)
            g = "p99 < %s ms: %s" % (goal, "met" if ok else "MISSED")
            verdicts.append(ok)
        print("| %s | %d | %.3f | %.3f | %.3f | %s |" % (label, len(times), p50, p99, mx, g))
    if mem:
        w, wo = mem["with"], mem["without"]
        d = {k: (w[k] - wo[k]) / 1024 for k in w}
        print()
        print("| memory, ember + 10 services (median of %d), KiB | Rss | Pss | Anonymous "
              "| Rss of ember's file | Rss of shared libraries |" % args.launches)
        print("|---|---:|---:|---:|---:|---:|")
        try:
            grp.getgrnam("ember")
            found = "exists here"
        except KeyError:
            found = "not in the group database here"
        for label, m in (("without [dbus]", wo),
                         ('with [dbus], attached, control_group "ember" (%s)' % found, w),
                         ('with [dbus], attached, control_group "root" (in /etc/group)',
                          mem["with_root"])):
            print("| %s | %d | %d | %d | %d | %d |" % (label, m["Rss"], m["Pss"],
                                                     m["Anonymous"], m["binary"], m["libs"]))
        print("| **adapter (difference), MiB** | **%+.2f** | **%+.2f** | %+.2f | %+.2f | %+.2f |"
              % (d["Rss"], d["Pss"], d["Anonymous"], d["binary"], d["libs"]))
        r = {k: (mem["with_root"][k] - wo[k]) / 1024 for k in w}
        print('| adapter (difference), control_group "root", MiB | %+.2f | %+.2f | %+.2f | %+.2f '
              '| %+.2f |' % (r["Rss"], r["Pss"], r["Anonymous"], r["binary"], r["libs"]))
        print()
        ok_rss, ok_pss = d["Rss"] < 1, d["Pss"] < 1
        verdicts.append(ok_rss and ok_pss)
        print("Goal: adapter under 1 MiB: Rss %s, Pss %s. All launches (Rss, Pss): without %s; "
              "with %s" % ("met" if ok_rss else "MISSED", "met" if ok_pss else "MISSED",
                           [(r["Rss"], r["Pss"]) for r in mem["without_all"]],
                           [(r["Rss"], r["Pss"]) for r in mem["with_all"]]))
        # Libraries mapped only with [dbus] (e.g. NSS modules loaded by a group lookup).
        before = set(mem["without_all"][0]["lib_map"])
        extra = {k: v for k, v in mem["with_all"][0]["lib_map"].items() if k not in before}
        if extra:
            print('Mapped only with [dbus], control_group "ember" (Rss KiB, first launch): ' +
                  ", ".join("%s %d" % (k, v) for k, v in sorted(extra.items())) +
                  ". glibc loads its NSS modules when a group is not found in /etc/group "
                  "(ember looks control_group up when it reads [dbus]): shared library "
                  "pages, in Rss, hardly in Pss; absent from a static musl build.")
    print()
    print("Client: in-process, Python standard library D-Bus client on the unix socket "
          "(SASL EXTERNAL, own marshalling; no jeepney/dbus-next); times read at "
          "sendall()/recv(); sequential calls.")
    for n in notes:
        print("Note: " + n)
    return verdicts


if __name__ == "__main__":
    sys.exit(main())
