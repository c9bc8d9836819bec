#!/usr/bin/python3
"""`ember fleet` against many boards on two bridged mosquitto brokers (see bench/fleet.sh,
which builds the binaries and says what is real and what is simulated).

    /usr/bin/python3 bench/fleet_measure.py --bin target/release --tmp DIR [--boards 1000] [--rounds 3]

Standard library only. Every process started is listed (pid, comm) in TMP/pids for
fleet.sh's trap; this process is a child subreaper, so what an ember leaves is reparented
here and ended at the end. Every wait is bounded.
"""

import argparse
import ctypes
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Run:
    def __init__(self, args):
        self.args = args
        self.tmp = args.tmp
        self.procs = []  # (Popen, kind)
        self.embers = {}  # device -> Popen
        self.pids_file = open(os.path.join(self.tmp, "pids"), "a")

    def spawn(self, argv, kind, **kw):
        p = subprocess.Popen(argv, **kw)
        self.procs.append((p, kind))
        comm = os.path.basename(argv[0])[:15]
        self.pids_file.write("%d %s\n" % (p.pid, comm))
        self.pids_file.flush()
        return p

    # --- brokers -------------------------------------------------------------------
    def broker(self, name, extra=""):
        port = free_port()
        d = os.path.join(self.tmp, "broker-" + name)
        os.makedirs(d)
        os.chmod(d, 0o777)
        conf = os.path.join(d, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n%s" % (port, extra))
        out = open(os.path.join(d, "mosquitto.log"), "w")
        p = self.spawn(["mosquitto", "-c", conf], "broker", stdout=out, stderr=out)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port, p
            except OSError:
                time.sleep(0.05)
        raise SystemExit("mosquitto %s did not listen on %d" % (name, port))

    # --- boards --------------------------------------------------------------------
    def board(self, device, port):
        d = os.path.join(self.tmp, "boards", device)
        os.makedirs(d)
        conf = os.path.join(d, "ember.toml")
        with open(conf, "w") as f:
            f.write(
                '[control]\nsocket = "%s/control.sock"\n\n[system]\ndevice = "%s"\n\n'
                '[log]\nlevel = "warn"\n\n'
                '[mqtt]\nurl = "mqtt://127.0.0.1:%d"\ngroups = ["all"]\nkeep_alive = "60s"\n\n'
                '[service.web]\ncommand = ["/bin/sleep", "infinity"]\n' % (d, device, port)
            )
        out = open(os.path.join(d, "ember.log"), "w")
        env = dict(os.environ, EMBER_LOG="warn")
        p = self.spawn([self.ember, "--config", conf], "ember", stdout=out, stderr=out,
                       stdin=subprocess.DEVNULL, env=env)
        self.embers[device] = p
        return os.path.join(d, "control.sock")

    def fleet(self, port, *args, timeout=120):
        """`ember fleet ARGS --broker ...`: (exit status, seconds, stdout, stderr)."""
        t0 = time.monotonic()
        p = subprocess.run([self.ember, "fleet", *args, "--broker", "mqtt://127.0.0.1:%d" % port],
                           capture_output=True, timeout=timeout)
        return p.returncode, time.monotonic() - t0, p.stdout, p.stderr

    def status(self, port):
        code, secs, out, err = self.fleet(port, "status", "--json", "--timeout", "20s")
        try:
            return json.loads(out), secs
        except ValueError:
            raise SystemExit("ember fleet status --json: exit %s: %s %s" % (code, out[:300], err[:300]))

    def stop(self):
        for p in self.embers.values():
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 30
        for p in self.embers.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for p, kind in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        # Orphans reparented here (a service of an ember that had to be killed).
        for pid in children(os.getpid()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG) == (0, 0):
                    break
            except ChildProcessError:
                break


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def children(pid):
    out = []
    try:
        for task in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def pss_kib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def web_pids(status):
    """device -> (state, pid) of web, online boards only."""
    out = {}
    for b in status.get("boards", []):
        web = b.get("services", {}).get("web")
        if b.get("status") == "online" and web:
            out[b["device"]] = (web.get("state"), web.get("pid"))
    return out


def wait_converged(run, port, n, what, limit):
    deadline = time.monotonic() + limit
    last = None
    while time.monotonic() < deadline:
        status, _ = run.status(port)
        webs = web_pids(status)
        active = sum(1 for s, _ in webs.values() if s == "active")
        last = (status["counts"], active)
        if status["counts"]["online"] == n and active == n:
            return status
        time.sleep(1)
    raise SystemExit("%s: never saw %d boards online with web active (last: %s)" % (what, n, last))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="directory with ember, ember-mqtt, ember-fleet")
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--boards", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    run = Run(args)
    signal.signal(signal.SIGTERM, lambda *_: (run.stop(), sys.exit(143)))
    # Copies: the Pss of these binaries is shared by this run's boards only.
    bindir = os.path.join(args.tmp, "bin")
    os.makedirs(bindir)
    for name in ("ember", "ember-mqtt", "ember-fleet"):
        shutil.copy2(os.path.join(args.bin, name), bindir)
    run.ember = os.path.join(bindir, "ember")
    try:
        measure(run, args)
    finally:
        log("stopping %d embers" % len(run.embers))
        run.stop()


BROKER_LIMITS = "max_queued_messages 100000\n"


def measure(run, args):
    n = args.boards
    # The bridge is one client of each broker carrying every board's messages: with
    # mosquitto's default queue of 1,000 messages per client, one fleet-wide restart
    # (three or four state changes a board) overflows it, and mosquitto drops states
    # ("Outgoing messages are being dropped for client local.vm.fleet-a"): measured at
    # 1,000 boards, A's view then kept ~500 stale states for good. The README's bridge
    # says the same.
    port_a, broker_a = run.broker("a", BROKER_LIMITS)
    bridge = ("connection fleet-a\naddress 127.0.0.1:%d\ntopic ember/# both 1\n"
              "cleansession true\nrestart_timeout 1\n" % port_a)
    port_b, broker_b = run.broker("b", BROKER_LIMITS + bridge)
    devices = ["board-%04d" % i for i in range(1, n + 1)]
    t0 = time.monotonic()
    sockets = []
    for i, device in enumerate(devices):
        sockets.append(run.board(device, port_a if i < n // 2 else port_b))
        if i % 50 == 49:
            # A batch at a time: each ember starts, spawns its adapter and web.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not all(os.path.exists(s) for s in sockets[-50:]):
                time.sleep(0.05)
    log("%d embers started in %.1f s; waiting for every board on both sides" % (n, time.monotonic() - t0))
    wait_converged(run, port_a, n, "broker A", 600)
    wait_converged(run, port_b, n, "broker B", 120)
    log("all %d boards online on both sides after %.1f s" % (n, time.monotonic() - t0))
    time.sleep(3)

    # --- memory ------------------------------------------------------------------------
    kinds = {"ember": 0, "ember-mqtt": 0, "sleep": 0, "other": 0}
    counted = {"ember": 0, "ember-mqtt": 0, "sleep": 0, "other": 0}
    for p in run.embers.values():
        kinds["ember"] += pss_kib(p.pid)
        counted["ember"] += 1
        for c in children(p.pid):
            k = comm(c)
            k = k if k in kinds else "other"
            kinds[k] += pss_kib(c)
            counted[k] += 1
    brokers = pss_kib(broker_a.pid) + pss_kib(broker_b.pid)
    per_board = sum(kinds.values()) / n / 1024

    # --- rounds --------------------------------------------------------------------------
    rounds = []
    for r in range(args.rounds):
        before = web_pids(run.status(port_a)[0])
        load = open("/proc/loadavg").read().split()[0]
        code, secs, out, err = run.fleet(port_a, "restart", "web", "--group", "all", "--wait",
                                         "--json", "--timeout", "60s")
        try:
            report = json.loads(out)
        except ValueError:
            raise SystemExit("round %d: exit %s, no JSON: %s %s" % (r + 1, code, out[:300], err[:500]))
        done = report["counts"].get("done", 0)
        after = wait_converged(run, port_a, n, "after round %d" % (r + 1), 60)
        webs = web_pids(after)
        changed = sum(1 for d, (s, pid) in webs.items() if s == "active" and before.get(d, (None, pid))[1] != pid)
        rounds.append({"exit": code, "wall": secs, "command": report["elapsed_ms"] / 1000.0,
                       "done": done, "changed": changed, "load": load,
                       "counts": report["counts"], "notes": report.get("notes", [])})
        log("round %d: exit %d, %.2f s wall, %.2f s command, %d done, %d new pids seen (load %s)%s"
            % (r + 1, code, secs, report["elapsed_ms"] / 1000.0, done, changed, load,
               "" if code == 0 else "; " + json.dumps(report["counts"])))
        time.sleep(3)

    walls = [x["wall"] for x in rounds]
    commands = [x["command"] for x in rounds]
    print()
    print("| figure | value |")
    print("|---|---|")
    print("| boards | %d (%d on broker A, %d on broker B, bridged), group `all`, one `web` each |"
          % (n, n // 2, n - n // 2))
    print("| brokers' settings other than mosquitto's defaults | `%s` (both) |" % BROKER_LIMITS.strip())
    print("| `ember fleet restart web --group all --wait`, spawn to exit (median of %d) | %.2f s (goal < 2 s; rounds: %s) |"
          % (len(rounds), statistics.median(walls), ", ".join("%.2f" % w for w in walls)))
    print("| of which the command: publish to the last answer (median) | %.2f s (rounds: %s) |"
          % (statistics.median(commands), ", ".join("%.2f" % c for c in commands)))
    print("| boards done, as ember fleet reported (each round) | %s |" % ", ".join(str(x["done"]) for x in rounds))
    print("| boards with web active in a new run, from the retained states afterwards | %s |"
          % ", ".join(str(x["changed"]) for x in rounds))
    print("| memory per simulated board (Pss: ember + ember-mqtt + web) | %.2f MiB (ember %.2f, ember-mqtt %.2f, sleep %.2f) |"
          % (per_board, kinds["ember"] / counted["ember"] / 1024,
             kinds["ember-mqtt"] / max(1, counted["ember-mqtt"]) / 1024,
             kinds["sleep"] / max(1, counted["sleep"]) / 1024))
    print("| both brokers (Pss) | %.1f MiB (%.1f KiB per board) |" % (brokers / 1024, brokers / n))
    print("| load average at each round's start | %s |" % ", ".join(x["load"] for x in rounds))
    if any(x["exit"] != 0 for x in rounds):
        for x in rounds:
            print("round: exit %d %s %s" % (x["exit"], json.dumps(x["counts"]), x["notes"]))
        sys.exit(1)


if __name__ == "__main__":
    main()
