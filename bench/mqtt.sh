#!/usr/bin/env bash
# bench/mqtt.sh — ember's MQTT adapter: command latency, exit reporting, a fleet of
# 200 boards on one broker, what the adapter costs in memory, and a burst of commands.
#
# Usage: bench/mqtt.sh [--build] [--only a,b,c,d,e]
#        BENCH_QUICK=1 bench/mqtt.sh     # ~20 s variant (100 / 50 / 50 / 1)
#        BENCH_KEEP=1  bench/mqtt.sh     # keep the temp dir (configs, logs)
#        BENCH_BROKER_NAGLE=1 bench/mqtt.sh   # mosquitto's default set_tcp_nodelay false
#
# Installs mosquitto and mosquitto-clients from apt if missing; builds ember
# (cargo build --release, repo root) if target/release/ember is missing or --build
# is given. The measurement is bench/mqtt_measure.py: python3, standard library
# only (its MQTT client is a small MQTT 3.1.1 client on a raw socket, so the send
# and receive instants are read right at sendall()/recv(); paho-mqtt is not used).
# Every ember is an ordinary supervisor (not PID 1), a child of the measuring
# process: `ember --config DIR/ember.toml` with [control] socket = "DIR/x.sock",
# [system] device = "...", [mqtt] url = "mqtt://127.0.0.1:PORT", against one
# private mosquitto (`listener PORT 127.0.0.1`, `allow_anonymous true`,
# `max_queued_messages 100000`, `set_tcp_nodelay true`) on a free loopback port.
# set_tcp_nodelay: with mosquitto's default (false, Nagle on) a subscriber that
# only reads gets the second message of a burst ~40 ms late (Nagle waits for the
# subscriber's delayed ACK): a broker setting, not ember; BENCH_BROKER_NAGLE=1
# measures with the default. The ember binary is copied into the temp dir first, so
# that PSS does not depend on other processes mapping target/release/ember.
#
# Figures (a markdown table; details and anything odd below it):
#  (a) Command -> exec: the service is a tiny C probe (compiled at run time with
#      cc -static, else cc, else rustc) whose main() first reads CLOCK_MONOTONIC
#      and sends "pid ns" in one datagram to a Unix socket of the bench, then
#      pause()s. The bench reads CLOCK_MONOTONIC just before sendall() of the QoS 0
#      PUBLISH of `restart` on ember/<dev>/service/probe/cmd; latency = probe stamp
#      - that. It includes the broker hop, ember stopping the old process (SIGTERM,
#      reaped on SIGCHLD), fork+exec of the new one and the probe's start-up up to
#      main(). That start-up is the method's own overhead: measured separately
#      (posix_spawn of the probe by the bench -> its stamp, 200 times), reported,
#      not subtracted (it is part of any new process "running"). 1,000 sequential
#      commands after 10 warm-ups; before each next command the bench waits for the
#      stamp and for the `active` state message with the new pid. p50 and p99.
#      Goal: p99 < 10 ms. A second row gives restart -> that `active` state at
#      the bench's subscriber (recv() time), the confirmation a remote user sees.
#  (b) Exit -> state: a `sleep` service (restart "always", restart_delay 20ms,
#      start_limit 0) is SIGKILLed by the bench (clock read just before kill(2));
#      the time is when recv() returns the first state message that shows the exit
#      (newer seq, and a different pid or a state other than active). Then the
#      bench waits for `active` again. p50/p99 over 200 kills.
#  (c) Fleet: 200 embers (device fleetNNN, groups = ["fleet"], one `sleep` service
#      "app") on the one broker. A subscriber on ember/+/service/+/state knows every
#      pid; the clock starts just before `mosquitto_pub -t
#      ember/group/fleet/service/app/cmd -m restart` is spawned (its start-up and
#      connect are included) and stops when the subscriber has the 200th `active`
#      state with a changed pid. Median of 3. Goal: < 2 s. RLIMIT_NOFILE is raised
#      to 65536 (mosquitto inherits it); 200 client connections use 200 ephemeral
#      ports. All embers get SIGTERM (SIGKILL after 20 s) at the end; their
#      retained status must then read `offline`.
#  (d) Memory: Rss and Pss of /proc/PID/smaps_rollup of the ember process with 10
#      `sleep` services, without [mqtt] and with [mqtt] connected (same binary; 2 s
#      after all is up and, with [mqtt], its states and `online` reached a
#      subscriber); each ember alone; 3 alternating launches, medians; the
#      difference in MiB. Goal: < 1 MiB.
#  (e) Burst: one ember (EMBER_LOG=debug, so that its log has a line for each command
#      the engine gets) with two `sleep` services; a QoS 1 subscriber on its reply
#      topic; `mosquitto_pub -l` sends 5,000 JSON commands with ids on a service's
#      command topic in one go (starts, every tenth a restart), at QoS 1, then 5,000 at
#      QoS 0. Printed: executed (the engine's log lines) / answered (ok + busy) /
#      dropped unanswered, as ember's log counts them / lost without a word (neither
#      answered nor counted) / executed but not answered; the last two must be 0. A
#      burst is over when every command is answered or dropped, or nothing moved for
#      30 s.
#
# Cleanup: the measuring process is a child subreaper, stops every ember it
# started (SIGTERM, then SIGKILL), then kills its remaining descendants by pid.
# This script's trap kills, by pid, whatever it listed in TMP/pids that is still
# alive under the same name. The whole run is bounded by `timeout` (600 s).
# Before each part the bench waits (<= 20 s) for the machine to be under 25% busy
# and prints the load it saw: other work on a 2-core machine shows up as latency.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"
repo=$(cd "$here/.." && pwd)
build=0
only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --build) build=1 ;;
        --only) only="${2:?--only needs a list, e.g. a,b}"; shift ;;
        --only=*) only="${1#--only=}" ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "mqtt.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

# --- tools ---------------------------------------------------------------------
need=()
command -v mosquitto     >/dev/null 2>&1 || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || { echo "mqtt.sh: ${need[*]} missing; install them or run as root" >&2; exit 1; }
    echo "mqtt.sh: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -qq
    timeout 600 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -x /usr/bin/python3 ] || { echo "mqtt.sh: /usr/bin/python3 not found" >&2; exit 1; }

# --- ember ---------------------------------------------------------------------
ember="$repo/target/release/ember"
if [ "$build" = 1 ] || [ ! -x "$ember" ]; then
    echo "mqtt.sh: cargo build --release" >&2
    (cd "$repo" && cargo build --release)
fi

# --- limits ----------------------------------------------------------------------
# 200 embers, their services and 200+ broker connections: raise the fd limit (root
# may raise the hard limit; otherwise take the hard limit) and check processes.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -H -n)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
    echo "mqtt.sh: warning: only $(ulimit -n) open files allowed; the fleet of 200 may not fit" >&2
fi
if [ "$(ulimit -u)" != unlimited ] && [ "$(ulimit -u)" -lt 2000 ]; then
    ulimit -u 8192 2>/dev/null || echo "mqtt.sh: warning: only $(ulimit -u) processes allowed" >&2
fi

# --- run -------------------------------------------------------------------------
tmp=$(mktemp -d /tmp/ember-mqtt-bench.XXXXXX)
chmod 755 "$tmp"     # mosquitto drops root for its own user
cleanup() {
    # mqtt_measure.py stops everything itself; this catches what a crash left.
    cleanup_run "$tmp" "${BENCH_KEEP:-}" mqtt.sh
}
trap cleanup EXIT

args=(--ember "$ember" --tmp "$tmp")
[ "${BENCH_QUICK:-0}" = 1 ] && args+=(--quick)
[ -n "$only" ] && args+=(--only "$only")
[ "${BENCH_BROKER_NAGLE:-0}" = 1 ] && args+=(--broker-nagle)

echo "ember MQTT benchmark: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, kernel $(uname -r)," \
     "mosquitto $(dpkg-query -W -f='${Version}' mosquitto 2>/dev/null || echo '?')," \
     "ember $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')" \
     "(binary $(date -u -r "$ember" +%H:%M:%SZ))${BENCH_QUICK:+ BENCH_QUICK=$BENCH_QUICK}${BENCH_BROKER_NAGLE:+ BENCH_BROKER_NAGLE=$BENCH_BROKER_NAGLE}"
# In the background so that SIGINT/SIGTERM reach the trap at once (bash defers traps
# while a foreground child runs); python stops everything it started on SIGTERM.
start=$(date +%s)
timeout --foreground --kill-after=30 600 /usr/bin/python3 "$here/mqtt_measure.py" "${args[@]}" &
bench_pid=$!
trap 'kill -TERM "$bench_pid" 2>/dev/null || true; wait "$bench_pid" || true; exit 130' INT
trap 'kill -TERM "$bench_pid" 2>/dev/null || true; wait "$bench_pid" || true; exit 143' TERM HUP
rc=0
wait "$bench_pid" || rc=$?
echo "mqtt.sh: total $(( $(date +%s) - start )) s" >&2
exit "$rc"
