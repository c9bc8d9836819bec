#!/usr/bin/env bash
# Installs and downloads what the qemu boot test (tests/qemu_boot.rs, tests/qemu/boot.sh)
# needs on a Debian bookworm machine. Root; idempotent; downloads are cached under
# target/qemu/ of the repository, so a second run only checks and returns.
#
#   - qemu-system-x86 and qemu-system-arm (qemu-system-aarch64) from bookworm-backports:
#     the machine's qemu-utils comes from backports and conflicts with bookworm's 7.2.
#     The backports source is derived from the machine's own debian.sources.
#   - cpio (to pack the initramfs).
#   - the Debian kernels for amd64 and arm64 and busybox-static for both, downloaded and
#     unpacked (never installed) into target/qemu/<arch>/; for x86_64 also the modules of
#     the i6300esb watchdog (watchdog.ko, i6300esb.ko) into target/qemu/x86_64/modules/,
#     for the watchdog test (tests/qemu_watchdog.rs).
#   - the rustup targets x86_64-unknown-linux-musl and aarch64-unknown-linux-musl.
#
#   tests/qemu/setup.sh [x86_64] [aarch64]     (default: both)
set -euo pipefail
cd "$(dirname "$0")/../.."
root_dir=$(pwd)
cache="$root_dir/target/qemu"
mkdir -p "$cache/downloads"
archs=" ${*:-x86_64 aarch64} "
wanted() { [[ "$archs" == *" $1 "* ]]; }

if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: needs root (apt-get, dpkg --add-architecture)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
step() { echo "== qemu setup: $*"; }
t0=$(date +%s)

# --- qemu and cpio ----------------------------------------------------------------------
if ! command -v qemu-system-x86_64 >/dev/null || ! command -v qemu-system-aarch64 >/dev/null \
    || ! command -v cpio >/dev/null; then
    backports=/etc/apt/sources.list.d/ember-bookworm-backports.sources
    if ! grep -rqsE '^(Suites:|deb ).*bookworm-backports' /etc/apt/sources.list.d/ /etc/apt/sources.list; then
        src=/etc/apt/sources.list.d/debian.sources
        [ -r "$src" ] || { echo "setup.sh: no $src to derive a backports source from" >&2; exit 1; }
        step "adding a bookworm-backports source derived from $src"
        # Copy the first stanza whose Suites has the word "bookworm"; replace its Suites.
        awk '
            BEGIN { RS = ""; ORS = "\n" }
            {
                n = split($0, lines, "\n"); found = 0
                for (i = 1; i <= n; i++)
                    if (lines[i] ~ /^Suites:/ && (" " substr(lines[i], 8) " ") ~ /[ \t]bookworm[ \t]/) found = 1
                if (!found || done) next
                for (i = 1; i <= n; i++) {
                    if (lines[i] ~ /^#/) continue
                    if (lines[i] ~ /^Suites:/) print "Suites: bookworm-backports"
                    else print lines[i]
                }
                done = 1
            }' "$src" >"$backports.tmp"
        if ! grep -q '^Suites: bookworm-backports' "$backports.tmp"; then
            rm -f "$backports.tmp"
            echo "setup.sh: no stanza with Suites: bookworm in $src" >&2
            exit 1
        fi
        mv "$backports.tmp" "$backports"
    fi
    step "installing qemu-system-x86, qemu-system-arm (bookworm-backports) and cpio"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends -t bookworm-backports \
        qemu-system-x86 qemu-system-arm cpio
fi

# --- kernels and busybox ----------------------------------------------------------------
# Unpacks one .deb into a scratch directory and hands back its path.
unpack() { # DEB DIR
    rm -rf "$2"
    mkdir -p "$2"
    dpkg-deb -x "$1" "$2"
}

# The amd64 kernel package the linux-image-amd64 metapackage names.
kernel_package() { # ARCH (amd64 | arm64)
    local meta="linux-image-$1"
    [ "$1" = amd64 ] || meta="linux-image-$1:$1"
    apt-cache depends "$meta" | awk '/Depends: linux-image-/ { sub(/.*Depends: /, ""); sub(/:.*/, ""); print; exit }'
}

# x86_64: the kernel, its uncompressed vmlinux (boots ~3x faster under TCG with -M q35),
# the watchdog's modules, and busybox. The host's busybox (x86_64) is needed for either
# architecture: boot.sh lists the applets with it.
x86="$cache/x86_64"
if wanted x86_64 && { [ ! -s "$x86/vmlinux" ] || [ ! -s "$x86/modules/i6300esb.ko" ]; } \
    || [ ! -x "$x86/busybox" ]; then
    mkdir -p "$x86"
    if ! apt-cache show busybox-static >/dev/null 2>&1; then apt-get update -qq; fi
    pkg=$(kernel_package amd64)
    [ -n "$pkg" ] || { echo "setup.sh: apt-cache depends linux-image-amd64 names no kernel" >&2; exit 1; }
    step "downloading $pkg and busybox-static (amd64)"
    (cd "$cache/downloads" && apt-get download -q -o APT::Sandbox::User=root "$pkg" busybox-static)
    unpack "$(ls -t "$cache/downloads/${pkg}"_*_amd64.deb | head -1)" "$x86/pkg"
    cp "$(ls "$x86"/pkg/boot/vmlinuz-* | head -1)" "$x86/vmlinuz"
    echo "$pkg" >"$x86/kernel-package"
    # The emulated i6300ESB's driver and the watchdog core it needs (both modules in
    # Debian's kernel), for the initramfs of the watchdog test.
    rm -rf "$x86/modules"
    mkdir -p "$x86/modules"
    for module in watchdog i6300esb; do
        found=$(find "$x86/pkg/lib/modules" -path "*/drivers/watchdog/$module.ko*" | head -1)
        [ -n "$found" ] || { echo "setup.sh: $pkg has no $module module" >&2; exit 1; }
        case "$found" in
            *.xz) xz -dc "$found" >"$x86/modules/$module.ko" ;;
            *.zst) zstd -qdc "$found" >"$x86/modules/$module.ko" ;;
            *) cp "$found" "$x86/modules/$module.ko" ;;
        esac
    done
    unpack "$(ls -t "$cache"/downloads/busybox-static_*_amd64.deb | head -1)" "$x86/pkg"
    cp "$x86/pkg/bin/busybox" "$x86/busybox"
    rm -rf "$x86/pkg"
    step "extracting vmlinux from the bzImage"
    python3 - "$x86/vmlinuz" "$x86/vmlinux" <<'EOF'
import lzma, sys
data = open(sys.argv[1], "rb").read()
at = data.find(b"\xfd7zXZ\x00")
if at < 0:
    sys.exit("no XZ stream in " + sys.argv[1])
# The stream is followed by padding and the bzImage trailer: decompress the first stream only.
out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[at:])
if out[:4] != b"\x7fELF":
    sys.exit("the XZ stream in %s is not an ELF vmlinux" % sys.argv[1])
open(sys.argv[2] + ".tmp", "wb").write(out)
EOF
    mv "$x86/vmlinux.tmp" "$x86/vmlinux"
fi

# aarch64: arm64 packages need the arm64 architecture in dpkg only while we download them.
arm="$cache/aarch64"
if wanted aarch64 && { [ ! -s "$arm/vmlinuz" ] || [ ! -s "$arm/busybox" ]; }; then
    mkdir -p "$arm"
    had_arm64=0
    if dpkg --print-foreign-architectures | grep -qx arm64; then had_arm64=1; fi
    drop_arm64() {
        if [ "$had_arm64" = 0 ]; then
            step "removing the arm64 architecture again"
            dpkg --remove-architecture arm64 || true
            apt-get update -qq || true
        fi
    }
    trap drop_arm64 EXIT
    if [ "$had_arm64" = 0 ]; then
        step "adding the arm64 architecture for the download"
        dpkg --add-architecture arm64
    fi
    apt-get update -qq
    pkg=$(kernel_package arm64)
    [ -n "$pkg" ] || { echo "setup.sh: apt-cache depends linux-image-arm64:arm64 names no kernel" >&2; exit 1; }
    step "downloading $pkg and busybox-static (arm64)"
    (cd "$cache/downloads" && apt-get download -q -o APT::Sandbox::User=root "$pkg:arm64" busybox-static:arm64)
    drop_arm64
    trap - EXIT
    unpack "$(ls -t "$cache/downloads/${pkg}"_*_arm64.deb | head -1)" "$arm/pkg"
    cp "$(ls "$arm"/pkg/boot/vmlinuz-* | head -1)" "$arm/vmlinuz"
    echo "$pkg" >"$arm/kernel-package"
    unpack "$(ls -t "$cache"/downloads/busybox-static_*_arm64.deb | head -1)" "$arm/pkg"
    cp "$arm/pkg/bin/busybox" "$arm/busybox"
    rm -rf "$arm/pkg"
fi
# The .debs are unpacked; keep only the results.
rm -f "$cache"/downloads/*.deb

# --- Rust targets for static builds ------------------------------------------------------
for arch in x86_64 aarch64; do
    wanted "$arch" || continue
    target=$arch-unknown-linux-musl
    if ! rustup target list --installed | grep -qx "$target"; then
        step "rustup target add $target"
        rustup target add "$target"
    fi
done

ready=""
for arch in x86_64 aarch64; do
    if wanted "$arch"; then ready="$ready, $(cat "$cache/$arch/kernel-package") ($arch)"; fi
done
step "ready in $(($(date +%s) - t0)) s: ${ready#, }"
