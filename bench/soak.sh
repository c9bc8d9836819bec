#!/usr/bin/env bash
# bench/soak.sh — fault-injection soak: ember as PID 1 of a PID namespace with 200
# services of mixed kinds (mosquitto and dbus-daemon among them), while the broker and
# the bus are SIGKILLed every few seconds, random services are SIGKILLed, and random
# start/stop/restart commands arrive over ember ctl, MQTT and D-Bus; then checks that
# nothing was lost: zombies, fds and RSS, final states, acknowledged commands, retained
# MQTT state and seq, the D-Bus view. Prints the figures and a PASS/FAIL line per check;
# exits non-zero if any check fails.
#
# Usage: sudo bench/soak.sh [--minutes N] [--build] [--seed N] [--flood-mbps N]
#        bench/soak.sh --minutes 30      # the long variant
#        bench/soak.sh --minutes 2       # the CI variant (tests/run.sh); the default
#        SOAK_KEEP=1 bench/soak.sh       # keep the temp dir (ember.log, mqtt-live.log,
#                                        # dbus-monitor.log, commands.jsonl, configs)
#
# --minutes is the length of the chaos; start-up, settling and the checks add about a
# minute. Needs root (PID namespaces); installs mosquitto, mosquitto-clients, dbus,
# systemd (busctl) from apt if missing; builds ember (cargo build --release, repo root)
# if target/release/ember (or $CARGO_TARGET_DIR/release/ember) is missing or --build is
# given. The soak itself is bench/soak.py (python3, standard library only), whose
# docstring describes every service kind, every fault and every check.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"
repo=$(cd "$here/.." && pwd)
build=0
args=()
minutes=2
while [ $# -gt 0 ]; do
    case "$1" in
        --build) build=1 ;;
        --minutes) minutes="${2:?--minutes needs a number}"; shift ;;
        --minutes=*) minutes="${1#--minutes=}" ;;
        --seed|--flood-mbps|--flood-line) args+=("$1" "${2:?$1 needs a number}"); shift ;;
        --seed=*|--flood-mbps=*|--flood-line=*) args+=("$1") ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "soak.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "$(id -u)" -ne 0 ]; then
    echo "soak.sh: must run as root (PID namespaces via unshare)" >&2
    exit 1
fi

# --- tools ---------------------------------------------------------------------
need=()
command -v mosquitto     >/dev/null 2>&1 || need+=(mosquitto)
command -v mosquitto_rr  >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v dbus-daemon   >/dev/null 2>&1 || need+=(dbus-daemon)
command -v busctl        >/dev/null 2>&1 || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
    echo "soak.sh: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -qq
    timeout 600 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
for tool in unshare setsid stdbuf /usr/bin/python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "soak.sh: $tool not found" >&2; exit 1; }
done

# --- ember -----------------------------------------------------------------------
ember="${CARGO_TARGET_DIR:-$repo/target}/release/ember"
if [ "$build" = 1 ] || [ ! -x "$ember" ]; then
    echo "soak.sh: cargo build --release" >&2
    (cd "$repo" && cargo build --release)
fi

# --- run ---------------------------------------------------------------------------
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -H -n)"
tmp=$(mktemp -d /tmp/ember-soak.XXXXXX)
chmod 755 "$tmp"     # mosquitto drops root for its own user and reads its config here
cleanup() {
    # soak.py ends the namespace (and with it every service) and its own clients; this
    # catches what a crash left.
    cleanup_run "$tmp" "${SOAK_KEEP:-}" soak.sh
}
trap cleanup EXIT

echo "ember soak: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, kernel $(uname -r)," \
     "mosquitto $(dpkg-query -W -f='${Version}' mosquitto 2>/dev/null || echo '?')," \
     "dbus $(dpkg-query -W -f='${Version}' dbus-daemon 2>/dev/null || echo '?')," \
     "ember $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')" \
     "(binary $(date -u -r "$ember" +%H:%M:%SZ)), $minutes min of chaos"
# Bounded: the chaos plus 10 minutes for start-up, settling, checks and shutdown. In the
# background so that SIGINT/SIGTERM reach the trap at once; python ends everything it
# started on SIGTERM.
limit=$(/usr/bin/python3 -c "print(int(float('$minutes') * 60 + 600))")
start=$(date +%s)
timeout --foreground --kill-after=30 "$limit" /usr/bin/python3 "$here/soak.py" \
    --ember "$ember" --tmp "$tmp" --minutes "$minutes" ${args[@]+"${args[@]}"} &
soak_pid=$!
trap 'kill -TERM "$soak_pid" 2>/dev/null || true; wait "$soak_pid" || true; exit 130' INT
trap 'kill -TERM "$soak_pid" 2>/dev/null || true; wait "$soak_pid" || true; exit 143' TERM HUP
rc=0
wait "$soak_pid" || rc=$?
echo "soak.sh: total $(( $(date +%s) - start )) s" >&2
exit "$rc"
