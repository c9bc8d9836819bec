#!/usr/bin/env bash
# bench/run.sh — ember vs runit, s6 and supervisord, side by side on this machine.
#
# Usage: sudo bench/run.sh [--build] [--only ember,runit,s6,supervisord]
#        BENCH_QUICK=1 bench/run.sh      # ~2-minute variant (10 s idle window)
#        BENCH_KEEP=1  bench/run.sh      # keep the temp dir (configs, logs)
#
# Needs root (PID namespaces). Installs runit, s6 and supervisor from apt if
# missing; builds ember (cargo build --release, repo root) if target/release/ember
# is missing or --build is given. dinit is not measured (no source offline).
#
# Every supervisor runs as PID 1 of a fresh PID namespace
#   unshare --pid --fork --mount-proc --uts --kill-child <supervisor ...>
# so stopping it (SIGTERM, SIGKILL after a timeout) kills everything it started.
# Services are `/bin/sleep 1000NNN` (a unique argv per service); runit and s6 get
# `#!/bin/sh\nexec /bin/sleep 1000NNN` run scripts, supervisord and ember the argv.
# The measurement itself is bench/measure.py (python3, stdlib only).
#
# Figures (printed as a markdown table, ratios are peer / ember):
#  (a) Memory: sum of PSS ("Pss:" of /proc/PID/smaps_rollup) over the supervisor
#      processes only — runit: runsvdir + every runsv; s6: s6-svscan + every
#      s6-supervise; supervisord: its python process; ember: the ember process —
#      not the supervised sleeps, 2 s after 10 resp. 1,000 services are all up. MiB.
#      Goal: ember < 8 MiB with 1,000 services.
#  (b) Start-up: ms from launching the supervisor until 100 distinct service
#      processes exist in its PID namespace (/proc polled every ~2 ms). Median of
#      3 launches, interleaved across supervisors, each after waiting (<= 20 s) for
#      the machine to be idle. runit and s6 pay one /bin/sh exec per service (their
#      run scripts), as in any real deployment. All config files are backdated 60 s:
#      runsvdir otherwise defers a directory modified in the current second by ~1 s,
#      which a freshly booted system with old service directories would not see.
#      Goal: ember faster than all peers.
#  (c) Respawn: a service that appends CLOCK_MONOTONIC to a file and exits 1 (a
#      tiny C probe compiled at run time with cc, else rustc), at
#      each supervisor's fastest setting (ember: restart "always", delays 0ms,
#      start_limit 0; supervisord: autorestart, startsecs=0, huge startretries;
#      runit and s6 hold a 1 s minimum between starts by design; supervisord only
#      acts on its 1 s poll tick, so it alternates 1 s and 2 s). Median ms between
#      consecutive starts over ~5 s.
#  (d) Idle: with 10 sleep services up and settled, the delta over 30 s (10 s if
#      BENCH_QUICK=1) of voluntary+nonvoluntary context switches (all threads,
#      /proc/PID/task/*/status) and of utime+stime ticks (/proc/PID/stat), summed
#      over supervisor processes, per second. Goal: ember 0 wakeups while idle.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
build=0
only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --build) build=1 ;;
        --only) only="${2:?--only needs a list, e.g. ember,runit}"; shift ;;
        --only=*) only="${1#--only=}" ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "$(id -u)" -ne 0 ]; then
    echo "run.sh: must run as root (PID namespaces via unshare)" >&2
    exit 1
fi

# --- peers -------------------------------------------------------------------
need=()
command -v runsvdir    >/dev/null 2>&1 || need+=(runit)
command -v s6-svscan   >/dev/null 2>&1 || need+=(s6)
command -v supervisord >/dev/null 2>&1 || need+=(supervisor)
if [ ${#need[@]} -gt 0 ]; then
    echo "run.sh: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -qq
    timeout 600 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
for tool in unshare python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "run.sh: $tool not found" >&2; exit 1; }
done

# --- ember -------------------------------------------------------------------
ember="$repo/target/release/ember"
wants_ember=1
case ",${only:-ember}," in *,ember,*) ;; *) wants_ember=0 ;; esac
if [ "$wants_ember" = 1 ] && { [ "$build" = 1 ] || [ ! -x "$ember" ]; }; then
    echo "run.sh: cargo build --release" >&2
    (cd "$repo" && cargo build --release)
fi

# --- run ---------------------------------------------------------------------
tmp=$(mktemp -d /tmp/ember-bench.XXXXXX)
cleanup() {
    # measure.py stops every supervisor itself; this catches what a crash left.
    # Only PIDs that measure.py recorded, and only if they are still `unshare`
    # (unshare --kill-child then SIGKILLs the namespace's PID 1, which takes
    # every process in the namespace with it).
    if [ -f "$tmp/unshare.pids" ]; then
        while read -r pid; do
            [ -n "$pid" ] || continue
            if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = unshare ]; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done < "$tmp/unshare.pids"
    fi
    if [ -z "${BENCH_KEEP:-}" ]; then
        rm -rf "$tmp"
    else
        echo "run.sh: kept $tmp" >&2
    fi
}
trap cleanup EXIT

args=(--ember "$ember" --tmp "$tmp")
[ "${BENCH_QUICK:-0}" = 1 ] && args+=(--quick)
[ -n "$only" ] && args+=(--only "$only")

echo "ember benchmark: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, kernel $(uname -r)," \
     "runit $(dpkg-query -W -f='${Version}' runit 2>/dev/null || echo '?')," \
     "s6 $(dpkg-query -W -f='${Version}' s6 2>/dev/null || echo '?')," \
     "supervisor $(supervisord --version 2>/dev/null || echo '?')," \
     "ember $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')" \
     "(binary $( [ -x "$ember" ] && date -u -r "$ember" +%H:%M:%SZ || echo missing))${BENCH_QUICK:+ BENCH_QUICK=$BENCH_QUICK}"
# Hard bound on the whole measurement; measure.py bounds every wait itself too.
# It runs in the background so that a SIGINT/SIGTERM to this script is handled at
# once (bash defers traps while a foreground child runs): the trap passes SIGTERM on
# (timeout forwards it to python, which stops every supervisor; SIGKILL 30 s later).
timeout --foreground --kill-after=30 900 python3 "$here/measure.py" "${args[@]}" &
bench_pid=$!
trap 'kill -TERM "$bench_pid" 2>/dev/null || true; wait "$bench_pid" || true; exit 130' INT
trap 'kill -TERM "$bench_pid" 2>/dev/null || true; wait "$bench_pid" || true; exit 143' TERM HUP
wait "$bench_pid"
