#!/usr/bin/env bash
# bench/profile.sh — where ember's start-up time and per-service memory go.
#
# Usage: sudo bench/profile.sh [--services 100,1000] [--parts untraced,spawn,strace,perf,sigterm,massif]
#        BENCH_KEEP=1 bench/profile.sh    # keep the traces (strace, perf.data, massif)
#
# Profiles ember as bench/run.sh measures it (default configuration, PID 1 of a PID
# namespace, bench/probe.c services) with: the probes' own start records (no tracer),
# smaps by mapping kind and glibc's malloc_stats() (gdb), bench/spawn_cost.c (one spawn's
# cost by way of spawning), strace -f -tt -T, perf record -e cpu-clock -g, strace and perf of
# a SIGTERM during a boot of 3,000, and valgrind massif. See
# bench/profile.py for what each part prints (markdown, on stdout).
#
# The binary profiled is built from this checkout with the release profile's optimisation
# (opt-level "z", fat LTO, one codegen unit) but not stripped, so that perf, gdb and massif
# can name functions: target/profile/release/ember (CARGO_PROFILE_RELEASE_STRIP=none,
# CARGO_PROFILE_RELEASE_DEBUG=line-tables-only). Installs strace, linux-perf, valgrind and
# gdb with apt-get when missing. dinit (for the untraced comparison) is bench/run.sh's build,
# if there is one. Takes 5–15 minutes on a busy 2-core machine, after the build.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --services) args+=(--services "$2"); shift ;;
        --parts) args+=(--parts "$2"); shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "profile.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
if [ "$(id -u)" -ne 0 ]; then
    echo "profile.sh: must run as root" >&2
    exit 1
fi

need=()
command -v strace   >/dev/null 2>&1 || need+=(strace)
command -v perf     >/dev/null 2>&1 || need+=(linux-perf)
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
command -v gdb      >/dev/null 2>&1 || need+=(gdb)
command -v cc       >/dev/null 2>&1 || need+=(gcc libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
    echo "profile.sh: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -qq
    timeout 900 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

target="${CARGO_TARGET_DIR:-$repo/target}"
case "$target" in /*) ;; *) target="$repo/$target" ;; esac
echo "profile.sh: building ember with symbols (target/profile; the release profile otherwise)" >&2
(cd "$repo" && CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
    cargo build --release --workspace --target-dir "$target/profile" >&2)
ember="$target/profile/release/ember"

base=/tmp
if [ "$(findmnt -no FSTYPE /dev/shm 2>/dev/null | head -1)" = tmpfs ] \
   && ! findmnt -no OPTIONS /dev/shm 2>/dev/null | head -1 | grep -qw noexec; then
    base=/dev/shm
fi
tmp=$(mktemp -d "$base/ember-profile.XXXXXX")
trap 'cleanup_run "$tmp" "${BENCH_KEEP:-}" profile.sh' EXIT
cc -O2 -o "$tmp/probe" "$here/probe.c"
dinit="$target/bench-peers/dinit-d7d843b/src/dinit"
echo "ember $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'), kernel $(uname -r)"
timeout --foreground --kill-after=30 7200 /usr/bin/python3 "$here/profile.py" \
    --ember "$ember" --dinit "$dinit" --probe "$tmp/probe" --tmp "$tmp" "${args[@]}" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true; wait "$pid" || true; exit 130' INT
trap 'kill -TERM "$pid" 2>/dev/null || true; wait "$pid" || true; exit 143' TERM HUP
wait "$pid"
