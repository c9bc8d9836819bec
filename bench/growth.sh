#!/usr/bin/env bash
# bench/growth.sh — what a span of commits added to the init: `ember` built as a board
# gets it (static x86_64 musl, the release profile, stripped; default features and
# --no-default-features) at BASE and at HEAD, side by side, and the difference.
#
# Issue 15 asks that its five features (hardware watchdog, reexec, bounded log files,
# templates, periodic jobs) together grow the init by at most 100 KB. The default BASE,
# 930698c, is main just before the first of them; the span also holds work that made
# ember smaller (issue 13's), which the table lists so that the features' own share can
# be read off.
#
# Usage: bench/growth.sh [BASE [HEAD]]   (default: 930698c HEAD)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
base=${1:-930698c}
head=${2:-HEAD}
target=x86_64-unknown-linux-musl
cd "$repo"
rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2
export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-gcc}
target_dir="$repo/target/growth"
work=$(mktemp -d /tmp/ember-growth.XXXXXX)
trap 'git -C "$repo" worktree remove --force "$work/base" 2>/dev/null || true
      git -C "$repo" worktree remove --force "$work/head" 2>/dev/null || true
      rm -rf "$work"' EXIT

# size REV_DIR [cargo args...]: the stripped size in bytes of ember built there.
size() {
    local dir=$1
    shift
    (cd "$dir" && cargo build -q --locked --release --target "$target" -p ember \
        --target-dir "$target_dir" "$@" >&2)
    stat -c %s "$target_dir/$target/release/ember"
}

git worktree add -q --detach "$work/base" "$base"
git worktree add -q --detach "$work/head" "$head"
# The .cargo/config.toml of each tree links it (rust-lld for musl).
echo "ember growth: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(rustc --version), $target"
echo "base $(git rev-parse --short "$base"), head $(git rev-parse --short "$head")"
echo
echo "| ember (release, static, stripped) | base | head | head - base |"
echo "|---|---:|---:|---:|"
for features in "default" "--no-default-features"; do
    args=()
    [ "$features" = default ] || args=("$features")
    b=$(size "$work/base" "${args[@]}")
    h=$(size "$work/head" "${args[@]}")
    awk -v f="$features" -v b="$b" -v h="$h" 'BEGIN {
        printf "| %s | %d B | %d B | %+d B (%+.1f KB) |\n", f, b, h, h - b, (h - b) / 1000 }'
done
echo
echo "Commits in the span that say they made ember smaller (their own figures):"
git log --format='  %h %s' "$base..$head" | grep -iE 'smaller|KB less|bytes less|-[0-9]+ KB' || echo "  (none)"
