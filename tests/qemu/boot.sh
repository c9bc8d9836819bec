#!/usr/bin/env bash
# Boots a Debian kernel under qemu (TCG) with ember as PID 1 of an initramfs:
#
#   tests/qemu/boot.sh x86_64 | aarch64
#
# Builds ember statically (musl), packs target/qemu/<arch>/initramfs.cpio (ember as
# /sbin/init, static busybox, tests/qemu/guest/ember.toml as /etc/ember/ember.toml) and
# boots it; the console goes to target/qemu/<arch>/console.log, which is the verdict:
# qemu exits 0 on a power-off and on a kernel panic alike (tests/qemu_boot.rs reads it).
# Needs what tests/qemu/setup.sh installs and downloads.
#
# EMBER_QEMU_TIMEOUT: seconds before the guest is killed (default 180).
#
# The watchdog test (tests/qemu_watchdog.rs, x86_64 only) boots other guests with:
#   EMBER_QEMU_NAME=NAME          work in target/qemu/<arch>/NAME/ (its own rootfs,
#                                 initramfs.cpio and console.log)
#   EMBER_QEMU_GUEST=FILE         the guest's ember.toml (default tests/qemu/guest/ember.toml);
#                                 @WATCHDOG_TIMEOUT@ in it becomes EMBER_QEMU_WATCHDOG_TIMEOUT
#   EMBER_QEMU_WATCHDOG=1         an emulated i6300ESB watchdog (-device i6300esb) that resets
#                                 the machine when it fires (-action watchdog=reset); its
#                                 driver is loaded by /init, the initramfs's early hook,
#                                 before it hands over to ember as /sbin/init
#   EMBER_QEMU_REBOOT=1           a reset reboots the guest (no -no-reboot): a watchdog reset
#                                 shows as a second boot in the console log
#   EMBER_QEMU_APPEND="..."       more of the kernel command line (the guest reads
#                                 /proc/cmdline)
set -euo pipefail
cd "$(dirname "$0")/../.."
root_dir=$(pwd)
arch=${1:-}
case "$arch" in
    x86_64 | aarch64) ;;
    *)
        echo "usage: $0 x86_64|aarch64" >&2
        exit 2
        ;;
esac
cache="$root_dir/target/qemu"
work="$cache/$arch"
kernel_dir="$work"
guest=${EMBER_QEMU_GUEST:-tests/qemu/guest/ember.toml}
watchdog=${EMBER_QEMU_WATCHDOG:-0}
if [ -n "${EMBER_QEMU_NAME:-}" ]; then
    work="$work/$EMBER_QEMU_NAME"
    mkdir -p "$work"
fi
if [ "$watchdog" = 1 ]; then
    [ "$arch" = x86_64 ] || { echo "boot.sh: the watchdog guest is x86_64 only" >&2; exit 2; }
    [ -s "$kernel_dir/modules/i6300esb.ko" ] || { echo "boot.sh: $kernel_dir/modules/i6300esb.ko is missing: run tests/qemu/setup.sh first" >&2; exit 1; }
fi
host_busybox="$cache/x86_64/busybox"
for f in "$kernel_dir/busybox" "$host_busybox"; do
    [ -x "$f" ] || { echo "boot.sh: $f is missing: run tests/qemu/setup.sh first" >&2; exit 1; }
done
command -v cpio >/dev/null || { echo "boot.sh: cpio is missing: run tests/qemu/setup.sh first" >&2; exit 1; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

# --- ember, static -------------------------------------------------------------------------
target="$arch-unknown-linux-musl"
t=$(now)
if [ "$arch" = aarch64 ]; then
    # No cross gcc here: rust-lld (shipped with rustc) links the self-contained musl target.
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld
fi
# Without the default features but analyze: the guest needs no MQTT, and ring (behind
# rustls) needs a C compiler for the musl target, which rust-lld alone does not provide;
# the guest's report runs `ember analyze`. With test-hooks: the watchdog test stalls the
# main loop with one (a guest that does not ask for a hook is not affected by them).
"${CARGO:-cargo}" build --release --target "$target" --bin ember --no-default-features --features analyze,test-hooks
target_dir=${CARGO_TARGET_DIR:-$root_dir/target}
ember="$target_dir/$target/release/ember"
echo "== boot.sh $arch: ember built in $(took "$t") ($(stat -c %s "$ember") bytes)"

# --- initramfs -----------------------------------------------------------------------------
t=$(now)
rootfs="$work/rootfs"
rm -rf "$rootfs"
mkdir -p "$rootfs"/{bin,sbin,etc/ember,proc,sys,dev,run,tmp,root}
chmod 1777 "$rootfs/tmp"
cp "$ember" "$rootfs/sbin/init"
# ember is multi-call on argv[0].
for name in ember poweroff reboot halt; do ln -s init "$rootfs/sbin/$name"; done
cp "$kernel_dir/busybox" "$rootfs/bin/busybox"
# Every applet (the guest's services use sh, sleep, echo, cat, grep, wc, cut, tr, setsid,
# and ps, ls, dmesg help when reading a failure), except those ember itself provides.
# The list comes from the host's (x86_64) busybox: both are the same Debian build.
for applet in $("$host_busybox" --list); do
    case "$applet" in
        busybox | init | linuxrc | poweroff | reboot | halt) continue ;;
    esac
    ln -s busybox "$rootfs/bin/$applet"
done
sed "s/@WATCHDOG_TIMEOUT@/${EMBER_QEMU_WATCHDOG_TIMEOUT:-3}/g" "$guest" >"$rootfs/etc/ember/ember.toml"
init=/sbin/init
if [ "$watchdog" = 1 ]; then
    # What a board's initramfs does before it hands over to the real init: load drivers.
    # (On most boards the watchdog's driver is built into the kernel, and /dev/watchdog0
    # is there when the kernel starts init.) exec keeps PID 1: ember is the machine's init.
    mkdir -p "$rootfs/lib/modules"
    cp "$kernel_dir/modules/watchdog.ko" "$kernel_dir/modules/i6300esb.ko" "$rootfs/lib/modules/"
    printf '%s\n' '#!/bin/sh' \
        'insmod /lib/modules/watchdog.ko && insmod /lib/modules/i6300esb.ko' \
        'exec /sbin/init' >"$rootfs/init"
    chmod 755 "$rootfs/init"
    init=/init
fi
echo "ember-qemu-$arch" >"$rootfs/etc/hostname"
initramfs="$work/initramfs.cpio"
(cd "$rootfs" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) >"$initramfs.tmp"
mv "$initramfs.tmp" "$initramfs"
echo "== boot.sh $arch: initramfs packed in $(took "$t") ($(stat -c %s "$initramfs") bytes)"

# --- boot ----------------------------------------------------------------------------------
# As PID 1 ember logs to /dev/kmsg with syslog priorities (info = <6>). The console shows
# records below console_loglevel: `loglevel=7` lets info through (and the kernel's own
# info lines, which tell where a boot went wrong) but not debug; `quiet` (4) would hide
# ember's info lines, and `ignore_loglevel` would add every debug line too.
# No printk.devkmsg=on: ember as PID 1 lifts the kernel's rate limit on /dev/kmsg writers
# itself (/proc/sys/kernel/printk_devkmsg), and the test checks that no line was dropped.
append="panic=-1 loglevel=7 rdinit=$init ${EMBER_QEMU_APPEND:-}"
case "$arch" in
    x86_64)
        # The uncompressed vmlinux with -M q35 boots ~3x faster under TCG than the bzImage.
        qemu=(qemu-system-x86_64 -accel tcg -M q35 -m 512 -smp 1 -net none -nographic -no-reboot
            -kernel "$kernel_dir/vmlinux" -initrd "$initramfs" -append "console=ttyS0 $append")
        ;;
    aarch64)
        qemu=(qemu-system-aarch64 -accel tcg -M virt -cpu cortex-a53 -m 512 -smp 1 -nographic -no-reboot
            -kernel "$kernel_dir/vmlinuz" -initrd "$initramfs" -append "console=ttyAMA0 $append")
        ;;
esac
if [ "$watchdog" = 1 ]; then
    qemu+=(-device i6300esb -action watchdog=reset)
fi
if [ "${EMBER_QEMU_REBOOT:-0}" = 1 ]; then
    # Every argument but -no-reboot.
    kept=()
    for a in "${qemu[@]}"; do [ "$a" = -no-reboot ] || kept+=("$a"); done
    qemu=("${kept[@]}")
fi
command -v "${qemu[0]}" >/dev/null || { echo "boot.sh: ${qemu[0]} is missing: run tests/qemu/setup.sh first" >&2; exit 1; }
console="$work/console.log"
limit=${EMBER_QEMU_TIMEOUT:-180}
echo "== boot.sh $arch: ${qemu[*]}"
t=$(now)
rc=0
timeout -k 5 "$limit" "${qemu[@]}" </dev/null >"$console" 2>&1 || rc=$?
echo "== boot.sh $arch: qemu exited $rc after $(took "$t"); console log: $console"
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "boot.sh: the guest did not power off within ${limit} s" >&2
fi
exit "$rc"
