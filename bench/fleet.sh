#!/usr/bin/env bash
# bench/fleet.sh — `ember fleet` against 1,000 boards split across two bridged brokers:
# the time one `ember fleet restart web --group all --wait` takes to return with every
# board converged, and the memory each simulated board costs.
#
# Usage: bench/fleet.sh [--build] [--boards N] [--rounds N]
#        BENCH_KEEP=1 bench/fleet.sh     # keep the temp dir (configs, logs)
#
# What is real and what is simulated. Each board is the real thing minus the hardware:
# a real `ember` (release build) supervising a real `web` service (/bin/sleep) and its
# real MQTT adapter, `ember-mqtt`, which ember starts as a service of its own (under its
# own uid) and which talks to ember over the real control socket. So a command takes the
# whole path a board's does: the broker (across the bridge for half of them), the
# adapter, the socket (a `wait` on a connection of its own), the engine, SIGTERM to the
# old `sleep`, the reaping, fork+exec of the new one, the state changes back out through
# the adapter, the reply. Simulated: 1,000 boards share one 2-core machine and one
# kernel (on real hardware each board does its share of this work on its own CPU, in
# parallel; here the whole fleet's work is serialized on 2 cores shared with whatever
# else runs), the network is loopback, `web` is `sleep`, and ember is not PID 1 (a child
# subreaper, as in a container: PID 1's duties are not on a command's path, and a PID
# namespace per board would only add an `unshare` process each). No part of the path is
# replaced by a stand-in: no fake control socket, no fake adapter.
#
# The brokers: mosquitto A and B on free loopback ports, `allow_anonymous true`,
# `set_tcp_nodelay true`; B carries the bridge of the README's fleet section
# (`connection fleet-a`, `address 127.0.0.1:<A>`, `topic ember/# both 1`,
# `cleansession true`). Boards 1-500 use A, 501-1000 use B; every board has
# `groups = ["all"]`. `ember fleet` runs on A's side. Broker limits are mosquitto's
# defaults except where the run shows they must change (printed with the figures).
#
# Figures (a markdown table):
#  - restart --wait: the wall time of `ember fleet restart web --group all --wait --json`
#    from its spawn to its exit (the process start, the connection, reading every
#    retained state, one group command, 1,000 replies), median of --rounds; and the
#    command alone (the publish to the last answer, as ember-fleet reports it). Goal:
#    under 2 s. Each round is checked independently afterwards: `ember fleet status
#    --json` must show web active on every board with a pid other than before.
#  - memory per simulated board: the Pss (/proc/PID/smaps_rollup) of its ember, its
#    ember-mqtt and its `sleep`, summed over all boards and divided by their number;
#    the brokers' Pss separately. Pss, not Rss: 1,000 copies of the same binary share
#    their text.
#
# Limits: RLIMIT_NOFILE is raised to 65536 (mosquitto inherits it). The run is bounded
# by `timeout` (1,800 s). The measuring process is a child subreaper; at the end every
# ember gets SIGTERM (it stops its services and its adapter), then SIGKILL after 30 s,
# then the brokers. This script's trap kills, by pid, what a crash left (TMP/pids).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"
repo=$(cd "$here/.." && pwd)
build=0
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --build) build=1 ;;
        --boards|--rounds) args+=("$1" "${2:?$1 needs a number}"); shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "fleet.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

[ "$(id -u)" -eq 0 ] || { echo "fleet.sh: run as root (1,000 embers run their adapters under their own uid)" >&2; exit 1; }
if ! command -v mosquitto >/dev/null 2>&1; then
    echo "fleet.sh: installing mosquitto" >&2
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -qq
    timeout 600 apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
fi
[ -x /usr/bin/python3 ] || { echo "fleet.sh: /usr/bin/python3 not found" >&2; exit 1; }

bin="$repo/target/release"
if [ "$build" = 1 ] || [ ! -x "$bin/ember" ] || [ ! -x "$bin/ember-mqtt" ] || [ ! -x "$bin/ember-fleet" ]; then
    echo "fleet.sh: cargo build --release -p ember -p ember-mqtt -p ember-fleet" >&2
    (cd "$repo" && cargo build --release -p ember -p ember-mqtt -p ember-fleet)
fi

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -H -n)"
if [ "$(ulimit -u)" != unlimited ] && [ "$(ulimit -u)" -lt 10000 ]; then
    ulimit -u 20000 2>/dev/null || echo "fleet.sh: warning: only $(ulimit -u) processes allowed" >&2
fi

tmp=$(mktemp -d /tmp/ember-fleet-bench.XXXXXX)
chmod 755 "$tmp"     # mosquitto drops root for its own user; the adapters run as theirs
cleanup() {
    cleanup_run "$tmp" "${BENCH_KEEP:-}" fleet.sh
}
trap cleanup EXIT

echo "ember fleet benchmark: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, kernel $(uname -r)," \
     "mosquitto $(dpkg-query -W -f='${Version}' mosquitto 2>/dev/null || echo '?')," \
     "ember $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')" \
     "(binary $(date -u -r "$bin/ember" +%H:%M:%SZ)), load average $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s)
timeout --foreground --kill-after=60 1800 /usr/bin/python3 "$here/fleet_measure.py" --bin "$bin" --tmp "$tmp" "${args[@]}" &
bench_pid=$!
trap 'kill -TERM "$bench_pid" 2>/dev/null || true; wait "$bench_pid" || true; exit 130' INT
trap 'kill -TERM "$bench_pid" 2>/dev/null || true; wait "$bench_pid" || true; exit 143' TERM HUP
rc=0
wait "$bench_pid" || rc=$?
echo "fleet.sh: total $(( $(date +%s) - start )) s" >&2
exit "$rc"
