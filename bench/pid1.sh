#!/usr/bin/env bash
# bench/pid1.sh — ember's PID-1 figures: orphan reaping against tini and catatonit,
# boot time under qemu (x86_64, aarch64), and the size of the static binaries.
#
# Usage: sudo bench/pid1.sh [--no-build] [--runs N] [--boots N] [--no-qemu]
#        BENCH_KEEP=1 bench/pid1.sh     # keep the temp dir (configs, logs, console logs)
#
# Needs root (PID namespaces). Installs tini and catatonit from apt if missing
# (--no-install-recommends); runs tests/qemu/setup.sh if its downloads (kernels, static
# busybox, under target/qemu/) or qemu are missing. Builds ember three ways (cargo build
# --release: glibc, x86_64-unknown-linux-musl, aarch64-unknown-linux-musl); an up-to-date
# build takes seconds, a clean one minutes (not counted in the ~3-minute measurement).
# The measurement itself is bench/pid1_measure.py (python3, stdlib only).
#
# Figures (printed as one markdown table, ratios are peer / ember):
#  (a) Reaping 10,000 orphans: each init is PID 1 of a fresh namespace,
#        unshare --pid --fork --mount-proc --uts --kill-child <init ...>
#      tini -- python3 main.py | catatonit -- python3 main.py | ember --config CFG
#      (CFG: a control socket in the temp dir and one service, main, stdout = "null").
#      main forks an intermediate that forks 10,000 children which exit at once, sleeps
#      0.5 s (all are zombies under it), writes CLOCK_MONOTONIC to a file and exits: the
#      zombies are reparented to PID 1 then. main reaps only the intermediate. The time
#      until /proc/<PID 1>/task/<PID 1>/children (polled in a tight loop) holds only main.
#      Median of 5 runs, interleaved. Also PID 1's CPU time during the reap
#      (/proc/PID/task/*/schedstat ns, and utime+stime of /proc/PID/stat in 10 ms ticks).
#      Goal: ember at least as fast as tini.
#  (b) Boot under qemu (TCG, no KVM here) with ember as PID 1 of an initramfs built as
#      tests/qemu/boot.sh builds it (boot.sh packs its own guest config, so the packing is
#      repeated here) but with bench/pid1-guest.toml: 21 services with requires/after
#      chains and no delays; the last one powers off. From ember's own console lines:
#        starting as PID 1 (Machine) at uptime X s          -> kernel handover (X)
#        first service spawned N us after ember started     -> PID-1 overhead (goal < 20 ms)
#        boot complete: every service settled ... (uptime Z s) -> boot to all active (Z - X)
#      Two kernel command lines: loglevel=7 (as boot.sh: every ember line is printed on the
#      serial console while PID 1 waits for it) and quiet (kmsg only; the last service
#      prints ember's lines from dmesg). Median of 3 boots of each, per arch.
#  (c) Binary sizes (the release profile strips): x86_64 musl (goal <= 1.5 MiB without
#      MQTT/D-Bus), x86_64 musl with --all-features (goal <= 3 MiB; only once the package
#      declares an mqtt or dbus feature, built into target/pid1-bench-features), aarch64
#      musl, and the glibc target/release/ember for reference.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"          # cargo reads .cargo/config.toml (rust-lld, static) from here
build=1
runs=5
boots=3
qemu_on=1
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) build=0 ;;
        --runs) runs="$2"; shift ;;
        --boots) boots="$2"; shift ;;
        --no-qemu) qemu_on=0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "pid1.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "$(id -u)" -ne 0 ]; then
    echo "pid1.sh: must run as root (PID namespaces via unshare, apt-get)" >&2
    exit 1
fi
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
say() { echo "== pid1.sh: $*" >&2; }
t_all=$(now)

# --- temp dir, cleanup -------------------------------------------------------------------
tmp=$(mktemp -d /tmp/ember-pid1.XXXXXX)
current=""          # the background job being waited for (python, qemu, cargo)
cleanup() {
    if [ -n "$current" ]; then
        kill -TERM "$current" 2>/dev/null || true
        wait "$current" 2>/dev/null || true
        current=""
    fi
    # What a crash of pid1_measure.py left: only the unshare PIDs it recorded, only if
    # they are still unshare (--kill-child then SIGKILLs the namespace's PID 1 and with it
    # every process in the namespace).
    if [ -f "$tmp/unshare.pids" ]; then
        while read -r pid; do
            [ -n "$pid" ] || continue
            if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = unshare ]; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done <"$tmp/unshare.pids"
    fi
    if [ -z "${BENCH_KEEP:-}" ]; then
        rm -rf "$tmp"
    else
        echo "pid1.sh: kept $tmp" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
# Runs a command in the background and waits for it, so that a signal to this script is
# handled at once (bash defers traps while a foreground child runs).
bg() {
    "$@" &
    current=$!
    local rc=0
    wait "$current" || rc=$?
    current=""
    return "$rc"
}

# --- peers and tools ---------------------------------------------------------------------
need=()
command -v tini >/dev/null 2>&1 || need+=(tini)
command -v catatonit >/dev/null 2>&1 || need+=(catatonit)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    bg timeout 600 apt-get update -qq
    bg timeout 600 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
for tool in unshare python3 tini catatonit; do
    command -v "$tool" >/dev/null 2>&1 || { echo "pid1.sh: $tool not found" >&2; exit 1; }
done
cache="$repo/target/qemu"
if [ "$qemu_on" = 1 ]; then
    if ! command -v qemu-system-x86_64 >/dev/null || ! command -v qemu-system-aarch64 >/dev/null \
        || ! command -v cpio >/dev/null || [ ! -s "$cache/x86_64/vmlinux" ] \
        || [ ! -x "$cache/x86_64/busybox" ] || [ ! -s "$cache/aarch64/vmlinuz" ] \
        || [ ! -s "$cache/aarch64/busybox" ]; then
        say "running tests/qemu/setup.sh (qemu, kernels, busybox)"
        bg timeout 1200 "$repo/tests/qemu/setup.sh"
    fi
fi

# --- builds (c) --------------------------------------------------------------------------
cargo=${CARGO:-cargo}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
features=$("$cargo" metadata --no-deps --format-version 1 2>/dev/null |
    python3 -c 'import json,sys
m = json.load(sys.stdin)
p = [p for p in m["packages"] if p["name"] == "ember"][0]
print(" ".join(sorted(f for f in p["features"] if f != "default")))' || true)
has_adapters=0
case " $features " in *mqtt* | *dbus*) has_adapters=1 ;; esac
t=$(now)
if [ "$build" = 1 ]; then
    say "cargo build --release (glibc, x86_64 musl, aarch64 musl)"
    bg timeout 1200 "$cargo" build --release --bin ember
    bg timeout 1200 "$cargo" build --release --target x86_64-unknown-linux-musl --bin ember
    bg env CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
        timeout 1200 "$cargo" build --release --target aarch64-unknown-linux-musl --bin ember
    if [ "$has_adapters" = 1 ]; then
        bg env CARGO_TARGET_DIR="$repo/target/pid1-bench-features" \
            timeout 1200 "$cargo" build --release --target x86_64-unknown-linux-musl --bin ember --all-features
    fi
fi
t_build=$(took "$t")
ember="$target_dir/release/ember"
musl_x86="$target_dir/x86_64-unknown-linux-musl/release/ember"
musl_arm="$target_dir/aarch64-unknown-linux-musl/release/ember"
musl_all="$repo/target/pid1-bench-features/x86_64-unknown-linux-musl/release/ember"
for f in "$ember" "$musl_x86" "$musl_arm"; do
    [ -x "$f" ] || { echo "pid1.sh: $f is missing (run without --no-build)" >&2; exit 1; }
done
# The profile strips; report a binary that still has a symbol table as such.
size_of() { # FILE
    if [ ! -f "$1" ]; then echo "n/a"; return; fi
    if file -b "$1" 2>/dev/null | grep -q 'not stripped'; then
        echo "pid1.sh: warning: $1 is not stripped" >&2
    fi
    stat -c %s "$1"
}
{
    echo "x86_64-musl $(size_of "$musl_x86")"
    if [ "$has_adapters" = 1 ]; then
        echo "x86_64-musl-all $(size_of "$musl_all")"
    else
        echo "x86_64-musl-all n/a"
    fi
    echo "aarch64-musl $(size_of "$musl_arm")"
    echo "x86_64-gnu $(size_of "$ember")"
} >"$tmp/sizes.txt"

echo "ember PID-1 benchmark: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, kernel $(uname -r)," \
     "load $(cut -d' ' -f1-3 /proc/loadavg)," \
     "tini $(dpkg-query -W -f='${Version}' tini 2>/dev/null || echo '?')," \
     "catatonit $(dpkg-query -W -f='${Version}' catatonit 2>/dev/null || echo '?')," \
     "ember $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')$(
        [ -n "$(git -C "$repo" status --porcelain -- src ipc Cargo.toml Cargo.lock 2>/dev/null)" ] && echo '+dirty')" \
     "(build step $t_build)"

# --- (a) reaping -------------------------------------------------------------------------
t=$(now)
say "(a) reaping 10,000 orphans: ember, tini, catatonit x $runs"
bg timeout --kill-after=20 300 python3 "$here/pid1_measure.py" reap --tmp "$tmp" --ember "$ember" --runs "$runs"
t_reap=$(took "$t")

# --- (b) qemu boots ----------------------------------------------------------------------
pack() { # ARCH EMBER -> $tmp/ARCH/initramfs.cpio (the layout of tests/qemu/boot.sh)
    local arch=$1 bin=$2 rootfs="$tmp/$1/rootfs" applet
    rm -rf "$rootfs"
    mkdir -p "$rootfs"/{bin,sbin,etc/ember,proc,sys,dev,run,tmp,root}
    chmod 1777 "$rootfs/tmp"
    cp "$bin" "$rootfs/sbin/init"
    for applet in ember poweroff reboot halt; do ln -s init "$rootfs/sbin/$applet"; done
    cp "$cache/$arch/busybox" "$rootfs/bin/busybox"
    for applet in $("$cache/x86_64/busybox" --list); do
        case "$applet" in
            busybox | init | linuxrc | poweroff | reboot | halt) continue ;;
        esac
        ln -s busybox "$rootfs/bin/$applet"
    done
    cp "$here/pid1-guest.toml" "$rootfs/etc/ember/ember.toml"
    echo "ember-bench-$arch" >"$rootfs/etc/hostname"
    (cd "$rootfs" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) >"$tmp/$arch/initramfs.cpio"
}
boot() { # ARCH VARIANT N
    local arch=$1 variant=$2 n=$3 append console rc=0
    case "$variant" in
        loglevel7) append="panic=-1 loglevel=7 rdinit=/sbin/init" ;;
        quiet) append="panic=-1 quiet rdinit=/sbin/init" ;;
    esac
    console="$tmp/$arch/console-$variant-$n.log"
    case "$arch" in
        x86_64)
            bg timeout -k 5 60 qemu-system-x86_64 -accel tcg -M q35 -m 512 -smp 1 -net none -nographic \
                -no-reboot -kernel "$cache/x86_64/vmlinux" -initrd "$tmp/x86_64/initramfs.cpio" \
                -append "console=ttyS0 $append" </dev/null >"$console" 2>&1 || rc=$?
            ;;
        aarch64)
            bg timeout -k 5 60 qemu-system-aarch64 -accel tcg -M virt -cpu cortex-a53 -m 512 -smp 1 \
                -nographic -no-reboot -kernel "$cache/aarch64/vmlinuz" -initrd "$tmp/aarch64/initramfs.cpio" \
                -append "console=ttyAMA0 $append" </dev/null >"$console" 2>&1 || rc=$?
            ;;
    esac
    if [ "$rc" != 0 ]; then
        echo "pid1.sh: qemu $arch ($variant) exited $rc; console log: $console" >&2
    elif ! grep -aq 'reboot: Power down' "$console"; then
        echo "pid1.sh: $arch ($variant) boot $n did not power off; console log: $console" >&2
    fi
}
t=$(now)
if [ "$qemu_on" = 1 ]; then
    for arch in x86_64 aarch64; do
        mkdir -p "$tmp/$arch"
        case "$arch" in x86_64) pack "$arch" "$musl_x86" ;; aarch64) pack "$arch" "$musl_arm" ;; esac
        say "(b) $arch: $boots boots x (loglevel=7, quiet)"
        for i in $(seq 1 "$boots"); do
            for variant in loglevel7 quiet; do
                boot "$arch" "$variant" "$i"
            done
        done
        for variant in loglevel7 quiet; do
            python3 "$here/pid1_measure.py" boot --variant "$variant" "$tmp/$arch"/console-"$variant"-*.log \
                >"$tmp/boot-$arch-$variant.json"
        done
    done
fi
t_boot=$(took "$t")

# --- the table ---------------------------------------------------------------------------
echo
python3 "$here/pid1_measure.py" report --tmp "$tmp"
echo
echo "Took $(took "$t_all") in all: build step $t_build, (a) reaping $t_reap, (b) qemu boots $t_boot."
