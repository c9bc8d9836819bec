#!/usr/bin/env bash
# bench/dbus.sh — ember's D-Bus adapter (io.ember.Init1): method-call round trip,
# state change -> PropertiesChanged at a subscriber, and what the adapter costs in
# memory.
#
# Usage: bench/dbus.sh [--build] [--ember PATH]
#        BENCH_QUICK=1 bench/dbus.sh     # ~20 s variant (200 calls, 50 kills, 1 launch)
#        BENCH_KEEP=1  bench/dbus.sh     # keep the temp dir (configs, logs)
#
# Needs root (RestartService is for root and the control group), dbus-daemon (apt:
# dbus-daemon) and busctl (apt: systemd; only for the per-spawn context row); installs
# them from apt when missing. Builds ember (cargo build --release; honours
# CARGO_TARGET_DIR) if the binary is missing or --build is given; --ember PATH measures
# a given binary instead. The measurement is bench/dbus_measure.py: python3, standard
# library only. Its D-Bus client is a small one of its own (SASL EXTERNAL, marshalling,
# Hello, AddMatch) on the bus's unix socket, in process, so the send and receive
# instants are read right at sendall()/recv(); no jeepney/dbus-next. Spawning busctl per
# call costs milliseconds itself (process start, connect, auth, Hello): that is shown on
# a separate context row, never in the figures.
#
# Set-up: a private dbus-daemon of type "system" (deny by default, the shipped
# config/dbus-1/io.ember.Init1.conf included) on TMP/bus.sock; ember as an ordinary
# supervisor (not PID 1), a child of the measuring process, with [dbus] bus =
# "unix:path=TMP/bus.sock" and `sleep` services; a copy of the binary in TMP (PSS
# independent of other mappings of target/release/ember).
#
# Figures (a markdown table; notes below it):
#  (a) Round trip, sequential, 1,000 calls each after 20 warm-ups: GetId to the bus
#      daemon itself (the floor, no ember), Properties.Get of a service's State,
#      GetService, ListServices (11 services), RestartService (the authorized path:
#      ember asks the daemon for the caller's credentials first); before each next
#      RestartService the bench waits for the service's PropertiesChanged back to
#      active with a new MainPID. Also: RestartService -> first PropertiesChanged
#      (deactivating) and -> active, and a restart over ember's own control socket for
#      scale. Goal: p99 < 2 ms for every call to ember.
#  (b) State change -> signal: a `sleep` service (restart "always", restart_delay(_max) 20ms)
#      is SIGKILLed (clock read just before kill(2)); the time is when recv() at a
#      subscribed connection returns the first PropertiesChanged showing the exit.
#      200 kills.
#  (c) Memory: Rss/Pss (/proc/PID/smaps_rollup) of ember with 10 `sleep` services,
#      without and with [dbus] attached (control_group "ember", and "root": a group
#      not in /etc/group makes glibc load its NSS modules), same binary, 2 s after
#      settling; 3 alternating launches, medians; the difference. Goal: < 1 MiB.
#  systemd side by side: when /run/dbus/system_bus_socket has org.freedesktop.systemd1,
#  the same client calls systemd (Get of a unit's ActiveState, GetUnit); otherwise the
#  figures are absolute and the output says so.
#
# Cleanup: the measuring process is a child subreaper, stops every process it started
# (SIGTERM, then SIGKILL) and kills leftover descendants by pid. This script's trap
# kills, by pid, whatever is listed in TMP/pids that is still alive under the same
# name. The whole run is bounded by `timeout` (300 s).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"
repo=$(cd "$here/.." && pwd)
build=0
ember=""
while [ $# -gt 0 ]; do
    case "$1" in
        --build) build=1 ;;
        --ember) ember="${2:?--ember needs a path}"; shift ;;
        --ember=*) ember="${1#--ember=}" ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "dbus.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

[ "$(id -u)" -eq 0 ] || { echo "dbus.sh: run as root (RestartService is root's or the control group's)" >&2; exit 1; }

# --- tools ---------------------------------------------------------------------
need=()
command -v dbus-daemon >/dev/null 2>&1 || need+=(dbus-daemon)
command -v busctl      >/dev/null 2>&1 || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
    echo "dbus.sh: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq
    timeout 300 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -x /usr/bin/python3 ] || { echo "dbus.sh: /usr/bin/python3 not found" >&2; exit 1; }

# --- ember ---------------------------------------------------------------------
if [ -z "$ember" ]; then
    ember="${CARGO_TARGET_DIR:-$repo/target}/release/ember"
    if [ "$build" = 1 ] || [ ! -x "$ember" ]; then
        echo "dbus.sh: cargo build --release" >&2
        (cd "$repo" && cargo build --release)
    fi
fi
[ -x "$ember" ] || { echo "dbus.sh: no ember binary at $ember" >&2; exit 1; }

# --- run -------------------------------------------------------------------------
tmp=$(mktemp -d /tmp/ember-dbus-bench.XXXXXX)
chmod 755 "$tmp"
cleanup() {
    # dbus_measure.py stops everything itself; this catches what a crash left.
    cleanup_run "$tmp" "${BENCH_KEEP:-}" dbus.sh
}
trap cleanup EXIT

args=(--ember "$ember" --tmp "$tmp" --repo "$repo")
[ "${BENCH_QUICK:-0}" = 1 ] && args+=(--quick)

echo "ember D-Bus benchmark: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, kernel $(uname -r)," \
     "$(dbus-daemon --version 2>/dev/null | head -1 | sed 's/.* //;s/^/dbus-daemon /')," \
     "ember $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')" \
     "(binary $ember, $(date -u -r "$ember" +%H:%M:%SZ))${BENCH_QUICK:+ BENCH_QUICK=$BENCH_QUICK}"
# In the background so that SIGINT/SIGTERM reach the trap at once (bash defers traps
# while a foreground child runs); python stops everything it started on SIGTERM.
start=$(date +%s)
timeout --foreground --kill-after=20 300 /usr/bin/python3 "$here/dbus_measure.py" "${args[@]}" &
bench_pid=$!
trap 'kill -TERM "$bench_pid" 2>/dev/null || true; wait "$bench_pid" || true; exit 130' INT
trap 'kill -TERM "$bench_pid" 2>/dev/null || true; wait "$bench_pid" || true; exit 143' TERM HUP
rc=0
wait "$bench_pid" || rc=$?
echo "dbus.sh: total $(( $(date +%s) - start )) s" >&2
exit "$rc"
