#!/usr/bin/env bash
# bench/pid1.sh — ember's PID-1 figures: orphan reaping against tini and catatonit,
# boot time under qemu (x86_64, aarch64), and the size of the static binaries.
#
# Usage: sudo bench/pid1.sh [--no-build] [--runs N] [--boots N] [--no-qemu]
#        BENCH_KEEP=1 bench/pid1.sh     # keep the temp dir (configs, logs, console logs)
#
# Needs root (PID namespaces). Installs tini and catatonit from apt if missing
# (--no-install-recommends); runs tests/qemu/setup.sh if its downloads (kernels, static
# busybox, under target/qemu/) or qemu are missing. Builds ember four ways (see (c)); an
# up-to-date build takes seconds, a clean one minutes (not part of the ~2-3 minutes the
# measurement takes). A failed build is reported in the table; the rest still runs.
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
#      Runs at nice -10 (PID1_NICE=0 to turn off) so that other work on the machine
#      does not keep PID 1 waiting; the machine's load is printed in the header. The
#      poller is pinned to the first CPU and the namespace to the others (PID1_PIN=0 to
#      turn off), so the tight loop never takes PID 1's CPU. Reading the children file
#      takes tasklist_lock, which PID 1's wait4 also takes: the polling costs every init
#      a little (PID1_POLL_SLEEP_MS=N sleeps between polls to see how much).
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
#  (c) Binary sizes (the release profile strips), static builds in target/pid1-bench*:
#      x86_64 musl --no-default-features (no MQTT/D-Bus; goal <= 1.5 MiB), x86_64 musl
#      --all-features (TLS included; goal <= 3 MiB; "D-Bus n/a" until a dbus feature
#      exists; ring's C is compiled with the host gcc unless CC_x86_64_unknown_linux_musl
#      or a musl gcc is there), aarch64 musl --no-default-features; the glibc
#      target/release/ember (default features) for reference. The qemu guests boot the
#      --no-default-features static builds (ring needs a C cross compiler for aarch64).
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
for tool in unshare /usr/bin/python3 tini catatonit; do
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
# The glibc build is the one (a) runs (target/release/ember, as bench/run.sh). The static
# builds go to their own target directories (target/pid1-bench, target/pid1-bench-all) so that they never replace
# the artifacts tests/qemu/boot.sh and the tests use.
cargo=${CARGO:-cargo}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
bench_dir="$repo/target/pid1-bench"
features=$("$cargo" metadata --no-deps --format-version 1 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys
m = json.load(sys.stdin)
p = [p for p in m["packages"] if p["name"] == "ember"][0]
print(",".join(sorted(f for f in p["features"] if f != "default")))' || true)
ember="$target_dir/release/ember"
musl_x86="$bench_dir/x86_64-unknown-linux-musl/release/ember"
musl_arm="$bench_dir/aarch64-unknown-linux-musl/release/ember"
musl_all="$repo/target/pid1-bench-all/x86_64-unknown-linux-musl/release/ember"
# ring (TLS, under the mqtt feature) compiles C: cc-rs looks for x86_64-linux-musl-gcc,
# which Debian does not have. For x86_64 the host's gcc compiles ring's freestanding C for
# the musl target as well; only when nothing else is configured.
cc_musl=()
if [ -z "${CC_x86_64_unknown_linux_musl:-}" ] && ! command -v x86_64-linux-musl-gcc >/dev/null \
    && ! command -v musl-gcc >/dev/null && [ "$(uname -m)" = x86_64 ] && command -v gcc >/dev/null; then
    cc_musl=(CC_x86_64_unknown_linux_musl=gcc)
fi
build_log="$tmp/build.log"
built() { # NAME CARGO-ARGS... : builds; on failure says so and returns 1
    local name=$1
    shift
    if bg timeout 1200 env "$@" >>"$build_log" 2>&1; then
        return 0
    fi
    echo "pid1.sh: build of $name failed: $(grep -a -m1 -E '^error' "$build_log" || tail -1 "$build_log")" >&2
    return 1
}
ok_gnu=1 ok_x86=1 ok_arm=1 ok_all=0
t=$(now)
if [ "$build" = 1 ]; then
    say "cargo build --release: glibc (default features); x86_64 and aarch64 musl with" \
        "--no-default-features; x86_64 musl with --all-features (${features:-none})"
    built glibc "$cargo" build --release --bin ember || ok_gnu=0
    built x86_64-musl CARGO_TARGET_DIR="$bench_dir" \
        "$cargo" build --release --target x86_64-unknown-linux-musl --bin ember --no-default-features || ok_x86=0
    built aarch64-musl CARGO_TARGET_DIR="$bench_dir" CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
        "$cargo" build --release --target aarch64-unknown-linux-musl --bin ember --no-default-features || ok_arm=0
    if [ -n "$features" ]; then
        ok_all=1
        built x86_64-musl-all CARGO_TARGET_DIR="$repo/target/pid1-bench-all" "${cc_musl[@]}" \
            "$cargo" build --release --target x86_64-unknown-linux-musl --bin ember --all-features || ok_all=0
    fi
else
    [ -n "$features" ] && [ -x "$musl_all" ] && ok_all=1
fi
t_build=$(took "$t")
[ -x "$ember" ] || ok_gnu=0
[ -x "$musl_x86" ] || ok_x86=0
[ -x "$musl_arm" ] || ok_arm=0
[ "$ok_gnu" = 1 ] || { echo "pid1.sh: no $ember: nothing to measure" >&2; exit 1; }
# The profile strips; say so when a binary still has a symbol table.
size_of() { # OK FILE
    if [ "$1" != 1 ] || [ ! -f "$2" ]; then echo "failed"; return; fi
    if file -b "$2" 2>/dev/null | grep -q 'not stripped'; then
        echo "pid1.sh: warning: $2 is not stripped" >&2
    fi
    stat -c %s "$2"
}
case ",$features," in *,dbus,*) dbus=1 ;; *) dbus=0 ;; esac
{
    echo "x86_64-musl $(size_of "$ok_x86" "$musl_x86") --no-default-features"
    if [ -z "$features" ]; then
        echo "x86_64-musl-all n/a no optional features yet"
    elif [ "$dbus" = 1 ]; then
        echo "x86_64-musl-all $(size_of "$ok_all" "$musl_all") --all-features: $features"
    else
        echo "x86_64-musl-all $(size_of "$ok_all" "$musl_all") --all-features: $features; D-Bus n/a (not built yet)"
    fi
    echo "aarch64-musl $(size_of "$ok_arm" "$musl_arm") --no-default-features"
    echo "x86_64-gnu $(size_of "$ok_gnu" "$ember") default features"
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
# At nice -10 by default (PID1_NICE), inherited by unshare, the init and its children:
# builds and tests running beside the benchmark otherwise keep PID 1 waiting on a run
# queue for tens of ms in the middle of a reap. The same for every init.
nice=${PID1_NICE:--10}
say "(a) reaping 10,000 orphans: ember, tini, catatonit x $runs (nice $nice)"
bg timeout --kill-after=20 300 nice -n "$nice" /usr/bin/python3 "$here/pid1_measure.py" reap --tmp "$tmp" \
    --ember "$ember" --runs "$runs" || echo "pid1.sh: the reaping measurement failed (see above)" >&2
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
    # The guest times 5 runs of `ember check`; the same here, to compare the CPUs. And
    # the guest's services on this machine, ember as PID 1 of a namespace.
    if [ "$ok_x86" = 1 ]; then
        bg timeout -k 10 120 /usr/bin/python3 "$here/pid1_measure.py" native-boot --tmp "$tmp" --ember "$musl_x86" \
            --config "$here/pid1-guest.toml" >"$tmp/native-boot.json" || true
        /usr/bin/python3 - "$musl_x86" "$here/pid1-guest.toml" >"$tmp/check-native.txt" <<'EOF'
import subprocess, sys, time
t = time.monotonic()
for _ in range(5):
    subprocess.run([sys.argv[1], "check", "--config", sys.argv[2]], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=10)
print((time.monotonic() - t) * 1000)
EOF
    fi
    for arch in x86_64 aarch64; do
        mkdir -p "$tmp/$arch"
        case "$arch" in
            x86_64) bin=$musl_x86 ok=$ok_x86 ;;
            aarch64) bin=$musl_arm ok=$ok_arm ;;
        esac
        if [ "$ok" != 1 ]; then
            echo "pid1.sh: no static $arch build: no $arch boot" >&2
            continue
        fi
        pack "$arch" "$bin"
        say "(b) $arch: $boots boots x (loglevel=7, quiet)"
        for i in $(seq 1 "$boots"); do
            for variant in loglevel7 quiet; do
                boot "$arch" "$variant" "$i"
            done
        done
        for variant in loglevel7 quiet; do
            /usr/bin/python3 "$here/pid1_measure.py" boot --variant "$variant" "$tmp/$arch"/console-"$variant"-*.log \
                >"$tmp/boot-$arch-$variant.json"
        done
    done
fi
t_boot=$(took "$t")

# --- the table ---------------------------------------------------------------------------
echo
/usr/bin/python3 "$here/pid1_measure.py" report --tmp "$tmp"
echo
echo "Took $(took "$t_all") in all: build step $t_build, (a) reaping $t_reap, (b) qemu boots $t_boot."
