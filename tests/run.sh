#!/usr/bin/env bash
# Installs what ember's test suite needs on a fresh Debian or Ubuntu machine with Rust,
# then runs all of it: format, lints, a short fuzzing run, unit tests and the integration
# tests.
# Integration tests that need a PID namespace run as root (CI is root); as another user
# they report "skipped" and pass.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
command -v unshare >/dev/null || missing+=(util-linux)
command -v python3 >/dev/null || missing+=(python3)
command -v mosquitto >/dev/null || missing+=(mosquitto)
command -v mosquitto_pub >/dev/null || missing+=(mosquitto-clients)
command -v openssl >/dev/null || missing+=(openssl)
command -v dbus-daemon >/dev/null || missing+=(dbus-daemon)
command -v dbus-send >/dev/null || missing+=(dbus-bin)
command -v busctl >/dev/null || missing+=(systemd)
# tests/protocol.rs runs the README's socat examples of the control protocol.
command -v socat >/dev/null || missing+=(socat)
# tests/analyze.rs renders `ember analyze plot`'s SVG to a PNG and looks at it.
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy

# The adapters' users, as a board's packages create them (the Yocto layer's useradd):
# dbus-daemon refuses a peer whose uid has no passwd entry, so ember-dbus needs its own.
if [ "$(id -u)" = 0 ]; then
    for user in ember-mqtt ember-dbus; do
        id "$user" >/dev/null 2>&1 \
            || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
    done
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
# fuzz/ is a workspace of its own, which `--all` does not reach.
rustfmt --edition 2021 --check fuzz/fuzz_targets/*.rs
echo "== cargo clippy"
cargo clippy --workspace --all-targets --features test-hooks -- -D warnings
cargo clippy --workspace --all-targets --no-default-features -- -D warnings
# The oldest Rust that Cargo.toml claims (rust-version) must build ember: Yocto releases
# ship fixed Rust versions, and the layer's choice of releases rests on this.
msrv=$(grep -m1 '^rust-version' Cargo.toml | cut -d'"' -f2)
echo "== build with Rust $msrv (rust-version)"
rustup toolchain list | grep -q "^$msrv" || rustup toolchain install "$msrv" --profile minimal
CARGO_TARGET_DIR=target/msrv cargo "+$msrv" build --locked --workspace
# meta-ember: linted, then parsed, its image's task graph built and dry-run (bitbake -n
# ember-image-minimal: every runtime dependency resolves), fetched, unpacked,
# vendored-built, installed and packaged by real bitbake on whinlatter and wrynose (10.5
# minutes from a cold cache on a quiet 2-core machine, and 5 to 8 more for each dry run).
# It runs in the background, beside everything below: much of the suite waits on processes, brokers and
# guests rather than computing, and bitbake fills that time. Its output is printed, and
# its status counted, at the end. yocto-check-layer is separate: yocto/check.sh
# --check-layer-only.
yocto_log=$(mktemp)
yocto_status=$(mktemp)
echo "== yocto (in the background; its output follows the test results)"
( status=0; yocto/check.sh --dry-run >"$yocto_log" 2>&1 || status=$?; echo "$status" >"$yocto_status" ) &
yocto_pid=$!
log=$(mktemp)
# A step below that fails ends the script: the background check goes with it.
trap 'kill "$yocto_pid" 2>/dev/null || true; rm -f "$log" "$yocto_log" "$yocto_status"' EXIT
# The qemu boot tests (tests/qemu_boot.rs, qemu_watchdog.rs, qemu_reexec.rs, qemu_cgroups.rs) need qemu, Debian
# kernels, busybox, the watchdog's modules and the musl targets: as root, install them here
# so the tests find them in place (they skip otherwise).
if [ "$(id -u)" = 0 ] && [ "${EMBER_SKIP_QEMU:-}" != 1 ]; then
    echo "== qemu setup"
    if ! tests/qemu/setup.sh; then
        # setup.sh knows Debian bookworm's sources (CI's machines). Elsewhere, say so and
        # run everything else; in CI a failure here is a failure.
        if [ -n "${CI:-}" ]; then exit 1; fi
        echo "run.sh: qemu setup failed on this machine; the qemu boot tests are skipped" >&2
        export EMBER_SKIP_QEMU=1
    fi
fi
# The fuzz targets (fuzz/): built, then each run for EMBER_FUZZ_SECONDS (0 skips them).
if [ "${EMBER_FUZZ_SECONDS:-60}" != 0 ]; then
    echo "== fuzz"
    fuzz/run.sh "${EMBER_FUZZ_SECONDS:-60}"
fi
# Two minutes of the fault-injection soak (bench/soak.sh --minutes 30 is the long one):
# 200 services, the broker and the bus killed every few seconds, commands over all three
# interfaces; it fails on a zombie, a leak, a lost command or a stale state. It needs
# root (a PID namespace) and a release build. EMBER_SKIP_SOAK=1 leaves it out.
if [ "$(id -u)" = 0 ] && [ "${EMBER_SKIP_SOAK:-}" != 1 ]; then
    echo "== soak (2 min)"
    cargo build --release
    # The faults the tests inject must not be in a build a board runs.
    if grep -q "injected panic" target/release/ember; then
        echo "target/release/ember carries the test hooks (feature test-hooks)" >&2
        exit 1
    fi
    bench/soak.sh --minutes 2
else
    echo "== soak: skipped (needs root; EMBER_SKIP_SOAK=${EMBER_SKIP_SOAK:-})"
fi
echo "== cargo test"
# test-hooks: faults the tests inject (a panic in the main loop, in an adapter).
# Under `set -e -o pipefail` a failing test would end the script right here, before the
# closing line: keep cargo's status and exit with it after the total.
status=0
# Every executable first: tests of one package run another's (tests/fleet.rs runs
# ember-fleet), and cargo test builds only each package's own.
cargo build --workspace --features test-hooks
cargo test --workspace --features test-hooks --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line for the whole suite (the last runner printed is an empty doc-test run),
# and the failed tests by name, so that the end of the output says what to look at.
awk '/^test result:/ { p += $4; f += $6 } END { printf "total: %d passed, %d failed\n", p, f }' "$log"
grep -E '^test .* \.\.\. FAILED$' "$log" | sed 's/^test /failed: /; s/ \.\.\. FAILED$//' || true
if [ "$status" != 0 ]; then
    echo "run.sh: cargo test failed (exit $status)" >&2
fi
echo "== yocto (started in the background)"
wait "$yocto_pid" || true
cat "$yocto_log"
yocto=$(cat "$yocto_status")
if [ "$yocto" != 0 ]; then
    echo "run.sh: yocto/check.sh failed (exit $yocto)" >&2
    [ "$status" != 0 ] || status=$yocto
fi
exit "$status"
