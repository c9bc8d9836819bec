#!/usr/bin/env bash
# Builds ember's fuzz targets (cargo-fuzz, libFuzzer) and runs each for SECONDS (default
# 60), starting from the seeds in fuzz/corpus/<target>/. Installs what is missing: the
# pinned Rust toolchain and cargo-fuzz. Exits non-zero when a target finds a crash, after
# printing where the input is (and the input itself, base64, so that a CI log is enough
# to reproduce it).
#
#   fuzz/run.sh [SECONDS]
#   EMBER_FUZZ_TARGETS="config dbus_label" fuzz/run.sh 300     # some targets only
#   EMBER_FUZZ_JOBS=1 fuzz/run.sh                             # one target at a time
#   EMBER_FUZZ_SANITIZER=address fuzz/run.sh 600              # AddressSanitizer (nightly)
#
# What libFuzzer adds to a corpus goes to a scratch directory: the committed seeds stay
# as they are. Crashes are kept in fuzz/artifacts/<target>/.
#
# No sanitizer by default: the code fuzzed is safe Rust, where AddressSanitizer finds
# little, while it makes the targets 2.5 to 6 times slower. That also lets a stable
# toolchain build them (only -Zsanitizer needs a nightly). Debug assertions are on, so
# arithmetic overflow is a crash too.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
sanitizer=${EMBER_FUZZ_SANITIZER:-none}
if [ "$sanitizer" = none ]; then
    # A fixed release: cargo-fuzz 0.13's dependencies need Rust 1.91 or later.
    toolchain=${EMBER_FUZZ_TOOLCHAIN:-1.95.0}
else
    toolchain=${EMBER_FUZZ_TOOLCHAIN:-nightly-2026-10-30}
fi
cargo_fuzz_version=0.13.2
jobs=${EMBER_FUZZ_JOBS:-$(nproc)}

if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    rustup toolchain install "$toolchain" --profile minimal --no-self-update
fi
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
    cargo "+$toolchain" install cargo-fuzz --locked --version "$cargo_fuzz_version"
fi
if ! command -v c++ >/dev/null; then
    # libfuzzer-sys compiles libFuzzer (C++).
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends g++
fi

fuzz=(cargo "+$toolchain" fuzz)
flags=(-O -a "--sanitizer=$sanitizer")
started=$SECONDS
"${fuzz[@]}" build "${flags[@]}"
echo "fuzz: built in $((SECONDS - started)) s"

read -r -a targets <<<"${EMBER_FUZZ_TARGETS:-$("${fuzz[@]}" list | tr '\n' ' ')}"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Runs one target; its output goes to $scratch/TARGET.log, its exit status to .rc.
run_target() {
    local target=$1
    mkdir -p "$scratch/$target" "artifacts/$target"
    local rc=0 dict=()
    # Tokens the mutator inserts whole (keys, keywords, escapes): fuzz/dict/TARGET.dict.
    if [ -f "dict/$target.dict" ]; then dict=("-dict=$PWD/dict/$target.dict"); fi
    "${fuzz[@]}" run "${flags[@]}" "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        "${dict[@]}" >"$scratch/$target.log" 2>&1 || rc=$?
    echo "$rc" >"$scratch/$target.rc"
}

for target in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    echo "fuzz: $target for $seconds s"
    run_target "$target" &
done
wait

failed=()
for target in "${targets[@]}"; do
    log=$scratch/$target.log
    rc=$(cat "$scratch/$target.rc" 2>/dev/null || echo "?")
    runs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$log" | tail -1)
    if [ "$rc" = 0 ]; then
        echo "fuzz: $target: ok, ${runs:-?} inputs"
        continue
    fi
    failed+=("$target")
    echo "fuzz: $target FAILED (exit $rc); its output, without progress lines and backtraces:"
    grep -v -E '^(#[0-9]+|INFO:|WARNING:|\s+\[[0-9]|\s+NEW_FUNC|\s+Finished|\s+Running|0x|\s+[0-9]+: |\s+at |\s*$)' "$log" |
        head -n 60 | sed 's/^/    /'
    # libFuzzer: "Test unit written to fuzz/artifacts/TARGET/crash-..."
    for input in $(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log"); do
        [ -f "$input" ] || input=$PWD/${input#fuzz/}
        echo "fuzz: $target: the input is $input ($(wc -c <"$input") bytes), base64:"
        head -c 4096 "$input" | base64 | sed 's/^/    /'
        echo "fuzz: reproduce with: cargo +$toolchain fuzz run ${flags[*]} $target $input"
    done
done
echo "fuzz: $((SECONDS - started)) s in all"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes in: ${failed[*]}" >&2
    exit 1
fi
