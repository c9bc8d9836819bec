#!/usr/bin/env bash
# bench/run.sh — ember against dinit, s6, runit and busybox init, side by side, in one run.
#
# Usage: sudo bench/run.sh [--build] [--quick] [--only ember,dinit,...] [--no-tuned]
#                          [--figures scale,idle,respawn,ready,orphan,sigterm,ctl,adapters]
#        BENCH_QUICK=1 bench/run.sh      # CI: one round of everything, shorter windows
#        BENCH_KEEP=1  bench/run.sh      # keep the temp dir (configs, logs, records)
#        EMBER_SHARED=DIR bench/run.sh   # where peers/dinit-d7d843b.tar.gz is (default
#                                        # <repo>/../shared, else /work/shared)
#
# Needs root (PID namespaces) and a Rust toolchain. Installs what is missing with apt-get
# (--no-install-recommends): runit, s6, gcc, g++, make, m4 (dinit's build), mosquitto and
# dbus (the adapters' line). dinit is built once from the shared tarball with `make`, cached
# in target/bench-peers/dinit-d7d843b; busybox init is busybox-static, fetched once with
# `apt-get download` + `dpkg-deb -x` into target/bench-peers/busybox-static (never
# installed: it would conflict with a busybox package). ember and its adapters are built
# with `cargo build --release --workspace` when missing or with --build.
#
# Every supervisor is PID 1 of a fresh PID namespace (unshare --pid --fork --mount-proc
# --uts --kill-child), with the same services: bench/probe.c, compiled at run time, which
# records its CLOCK_MONOTONIC start in a file and then waits for ever (sleep infinity with a
# time stamp); runit and s6 start it from a `#!/bin/sh` run script (`exec probe ...`), as a
# real deployment would; busybox init from /etc/inittab (a private overlay of /etc in the
# namespace, mounted by a /bin/sh wrapper that then execs init as PID 1); dinit from
# service files (type = process) that a `boot` service waits for.
#
# ember runs its DEFAULT configuration: the file names only the control socket and the
# services' commands (stdout/stderr = "log", a cgroup per service). A full run also shows,
# apart and labelled, ember with stdout/stderr = "null" and dinit with log-type = buffer
# (dinit's default discards output; "buffer" keeps it in memory, as ember's "log" does).
#
# Figures (one markdown table; every one lower-is-better; ratios ember / peer):
#  - PSS of the supervisor: "Pss:" of /proc/PID/smaps_rollup summed over its own processes
#    (ember: ember; dinit: dinit; s6: s6-svscan + every s6-supervise; runit: runsvdir +
#    every runsv; busybox: init), 2 s (quick: 1 s) after 1, 100 and 1,000 services have all
#    started; per-service memory = (PSS(1,000) - PSS(100)) / 900.
#  - 100 and 1,000 services up: from just before the launch to the latest start record of a
#    service process. Median of 3 rounds (quick: 1), interleaved: every round runs 1, 100,
#    then 1,000 services under each supervisor in turn.
#  - Respawn: one service that records its start and exits 1, at each supervisor's fastest
#    setting (ember: restart "always", restart_delay(_max) 0ms, start_limit 0; dinit:
#    restart = true, restart-delay = 0, restart-limit-count = 0; runit, s6 and busybox have
#    no setting). Median interval between starts over 5 s (quick: 3 s).
#  - Reaping 10,000 zombies (probe.c, a C program): "ready": an intermediate forks 10,000
#    children that exit at once and then exits itself, so PID 1 inherits 10,000 zombies
#    together: time from that moment to no zombie left. "orphan": the service forks 10,000
#    times a child that forks a grandchild and exits, so orphans reach PID 1 one by one while
#    the forking goes on: time from the first fork to no zombie left (the details give the
#    time after the last fork). "No zombie left": PID 1's children (every thread's
#    /proc/PID/task/TID/children, polled every ~1 ms) hold none, then a scan of the
#    namespace finds none either.
#  - Idle: 10 services under every supervisor at once, settled; voluntary + involuntary
#    context switches (every thread) of the supervisor's processes over 30 s (quick: 10 s),
#    per second.
#  - During a boot of 3,000 services (SIGTERM-recording probes), once 300 have started:
#    SIGTERM to the namespace's PID 1, and the time until the first service records its
#    SIGTERM (or the init exits: runsvdir exits at once on SIGTERM and the kernel kills the
#    namespace); in another boot, `ember ctl status` (dinit: `dinitctl list`), its whole
#    round trip (client start included; the details give it again once all are up).
#  - Adapters: ember with 10 services, mosquitto and dbus-daemon as services, [mqtt] and
#    [dbus] on: the PSS of every ember-* adapter process, and of ember itself against the
#    same configuration without the adapter tables (an adapter inside ember shows there).
#
# Nothing is asserted: the script prints figures. A figure that could not be measured (a
# peer missing, a run that failed) is printed as **not measured** and listed at the end
# under INCOMPLETE, and the exit status is then 3.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
started=$(date +%s)
build=0
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --build) build=1 ;;
        --quick) export BENCH_QUICK=1 ;;
        --only) args+=(--only "${2:?--only needs a list, e.g. ember,dinit}"); shift ;;
        --only=*) args+=(--only "${1#--only=}") ;;
        --no-tuned) args+=(--no-tuned) ;;
        --figures) args+=(--figures "${2:?--figures needs a list, e.g. scale,respawn}"); shift ;;
        --figures=*) args+=(--figures "${1#--figures=}") ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
[ "${BENCH_QUICK:-0}" = 1 ] && args+=(--quick)

if [ "$(id -u)" -ne 0 ]; then
    echo "run.sh: must run as root (PID namespaces via unshare, apt-get)" >&2
    exit 1
fi
say() { echo "== run.sh: $*" >&2; }
loud() { echo "!! run.sh: $*" >&2; }

# --- packages -------------------------------------------------------------------------
need=()
command -v runsvdir    >/dev/null 2>&1 || need+=(runit)
command -v s6-svscan   >/dev/null 2>&1 || need+=(s6)
command -v cc          >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v g++         >/dev/null 2>&1 || need+=(g++)
command -v make        >/dev/null 2>&1 || need+=(make)
command -v m4          >/dev/null 2>&1 || need+=(m4)
command -v unshare     >/dev/null 2>&1 || need+=(util-linux)
[ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v dbus-daemon >/dev/null 2>&1 || need+=(dbus)
[ -x /usr/bin/python3 ] || need+=(python3)
export DEBIAN_FRONTEND=noninteractive
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    timeout 600 apt-get update -qq
    timeout 900 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- the peers built or fetched once, under target/bench-peers ------------------------
target="${CARGO_TARGET_DIR:-$repo/target}"
case "$target" in /*) ;; *) target="$repo/$target" ;; esac
peers="$target/bench-peers"
mkdir -p "$peers"

# The shared directory: EMBER_SHARED, else <repo>/../shared, else /work/shared (a git
# worktree's ../shared is not the main checkout's: both candidates are tried).
dinit_tgz=dinit-d7d843b.tar.gz
shared=""
if [ -n "${EMBER_SHARED:-}" ]; then
    shared="$EMBER_SHARED"
    [ -f "$shared/peers/$dinit_tgz" ] || loud "EMBER_SHARED=$shared has no peers/$dinit_tgz"
else
    for cand in "$repo/../shared" /work/shared; do
        if [ -f "$cand/peers/$dinit_tgz" ]; then shared=$(cd "$cand" && pwd); break; fi
    done
fi
dinit_dir="$peers/${dinit_tgz%.tar.gz}"
dinit="$dinit_dir/src/dinit"
if [ ! -x "$dinit" ] || [ ! -f "$dinit_dir/.built" ]; then
    if [ -n "$shared" ] && [ -f "$shared/peers/$dinit_tgz" ]; then
        say "building dinit from $shared/peers/$dinit_tgz (make; about a minute or two, once)"
        rm -rf "$dinit_dir"
        tar xzf "$shared/peers/$dinit_tgz" -C "$peers"
        if (cd "$dinit_dir" && make) > "$peers/dinit-build.log" 2>&1 && [ -x "$dinit" ]; then
            touch "$dinit_dir/.built"
        else
            loud "dinit's build FAILED (see $peers/dinit-build.log): dinit will NOT be measured"
            tail -5 "$peers/dinit-build.log" >&2 || true
        fi
    else
        loud "no $dinit_tgz found (EMBER_SHARED, $repo/../shared, /work/shared): dinit will NOT be measured"
    fi
fi

busybox="$peers/busybox-static/bin/busybox"
if [ ! -x "$busybox" ]; then
    say "fetching busybox-static (apt-get download + dpkg-deb -x; not installed)"
    dl=$(mktemp -d "$peers/dl.XXXXXX")
    chmod 755 "$dl"
    if (cd "$dl" && timeout 600 apt-get download -q busybox-static >/dev/null 2>&1 \
            || { timeout 600 apt-get update -qq && timeout 600 apt-get download -q busybox-static >/dev/null; }) \
       && dpkg-deb -x "$dl"/busybox-static_*.deb "$peers/busybox-static"; then
        :
    else
        loud "could not fetch busybox-static: busybox init will NOT be measured"
    fi
    rm -rf "$dl"
fi

# --- ember -----------------------------------------------------------------------------
ember="$target/release/ember"
if [ "$build" = 1 ] || [ ! -x "$ember" ] || [ ! -x "$target/release/ember-dbus" ]; then
    command -v cargo >/dev/null 2>&1 || { echo "run.sh: cargo not found (a Rust toolchain is needed)" >&2; exit 1; }
    say "cargo build --release --workspace"
    (cd "$repo" && cargo build --release --workspace)
fi

# --- run -------------------------------------------------------------------------------
# The work directory (configurations, service directories, the probes' records) on a tmpfs,
# as /run is on a board: the build machines' disk makes file creation and removal slow and
# noisy (removing a run's 37,000 files from ext4 took a minute), which is not what is
# measured. /dev/shm unless it is missing or noexec (the probe is executed from there).
base=/tmp
if [ "$(findmnt -no FSTYPE /dev/shm 2>/dev/null | head -1)" = tmpfs ] \
   && ! findmnt -no OPTIONS /dev/shm 2>/dev/null | head -1 | grep -qw noexec; then
    base=/dev/shm
fi
tmp=$(mktemp -d "$base/ember-bench.XXXXXX")
# What a crashed measure.py left: only the unshare pids it listed in $tmp/pids (unshare
# --kill-child then SIGKILLs the namespace's init, which takes the namespace with it).
trap 'cleanup_run "$tmp" "${BENCH_KEEP:-}" run.sh' EXIT

ver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'; }
echo "ember side-by-side benchmark: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, kernel $(uname -r);" \
     "ember $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$repo" diff --quiet HEAD -- src ipc adapters 2>/dev/null || echo '+changes')" \
     "(binary $( [ -x "$ember" ] && date -u -r "$ember" +%Y-%m-%dT%H:%MZ || echo missing)), dinit d7d843b," \
     "s6 $(ver s6), runit $(ver runit), busybox-static $( [ -x "$busybox" ] && "$busybox" 2>&1 | head -1 | awk '{print $2}' || echo missing)" \
     "${BENCH_QUICK:+(BENCH_QUICK=$BENCH_QUICK)}"
# Bounded as a whole; measure.py bounds every wait itself too. In the background so that a
# SIGINT/SIGTERM here is handled at once and passed on (measure.py stops what it started).
limit=5400
[ "${BENCH_QUICK:-0}" = 1 ] && limit=1800
timeout --foreground --kill-after=30 "$limit" /usr/bin/python3 "$here/measure.py" \
    --ember "$ember" --dinit "$dinit" --busybox "$busybox" --tmp "$tmp" "${args[@]}" &
bench_pid=$!
trap 'kill -TERM "$bench_pid" 2>/dev/null || true; wait "$bench_pid" || true; exit 130' INT
trap 'kill -TERM "$bench_pid" 2>/dev/null || true; wait "$bench_pid" || true; exit 143' TERM HUP
rc=0
wait "$bench_pid" || rc=$?
echo ""
echo "(run.sh took $(( $(date +%s) - started )) s${BENCH_QUICK:+ in quick mode}; exit $rc)"
exit "$rc"
