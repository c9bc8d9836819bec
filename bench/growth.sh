#!/usr/bin/env bash
# bench/growth.sh — what features added to the init: `ember` as a board gets it (static
# x86_64 musl, the release profile, stripped, default features) built at both ends of
# each span of commits that brought a feature, side by side, each span's difference, and
# their sum.
#
# Issue 15 asks that its five features (hardware watchdog, reexec, bounded log files,
# templates, periodic jobs) together grow the init by at most 100 KB. The default spans
# are the commits that brought each one to main (its merge, or its commits); measuring
# main against a commit from before all of them would count everything else that landed
# in between (the adapters moving out of PID 1 alone took 1 MB off).
#
# Usage: bench/growth.sh [NAME=BASE..HEAD ...]   (default: the issue-15 features)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
spans=("$@")
if [ ${#spans[@]} -eq 0 ]; then
    spans=(
        "output files rotated by size=930698c..449b7bf"
        "hardware watchdog=7397d98..6c52ef2"
        "periodic jobs=42a5895..21087a4"
        "templates=21087a4..HEAD"
    )
fi
target=x86_64-unknown-linux-musl
cd "$repo"
rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2
export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-gcc}
target_dir="$repo/target/growth"
work=$(mktemp -d /tmp/ember-growth.XXXXXX)
cleanup() {
    for tree in "$work"/*/; do
        [ -d "$tree" ] && git -C "$repo" worktree remove --force "$tree" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT

# measure REV: sets `bytes` to the stripped size of ember built at REV. Each REV is built
# once (not in a subshell, so that `sizes` keeps what was measured).
declare -A sizes
measure() {
    local rev
    rev=$(git rev-parse --short "$1")
    if [ -z "${sizes[$rev]:-}" ]; then
        git worktree add -q --detach "$work/$rev" "$rev"
        # Each tree's own .cargo/config.toml links it (rust-lld for musl).
        (cd "$work/$rev" && cargo build -q --locked --release --target "$target" -p ember \
            --target-dir "$target_dir" >&2)
        sizes[$rev]=$(stat -c %s "$target_dir/$target/release/ember")
    fi
    bytes=${sizes[$rev]}
}

echo "ember growth by feature: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(rustc --version), $target, release, default features"
echo
echo "| feature | commits | before | after | growth |"
echo "|---|---|---:|---:|---:|"
total=0
for span in "${spans[@]}"; do
    name=${span%%=*}
    range=${span#*=}
    base=${range%..*}
    head=${range#*..}
    measure "$base"
    b=$bytes
    measure "$head"
    h=$bytes
    total=$((total + h - b))
    awk -v n="$name" -v r="$(git rev-parse --short "$base")..$(git rev-parse --short "$head")" -v b="$b" -v h="$h" \
        'BEGIN { printf "| %s | %s | %d B | %d B | %+d B (%+.1f KB) |\n", n, r, b, h, h - b, (h - b) / 1000 }'
done
awk -v t="$total" 'BEGIN { printf "| **all together** | | | | **%+d B (%+.1f KB)** |\n", t, t / 1000 }'
