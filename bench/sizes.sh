#!/usr/bin/env bash
# bench/sizes.sh — the stripped sizes of ember's executables as a board gets them: static
# musl builds for x86_64 and aarch64, each executable built on its own (cargo unifies the
# features of packages built together), against issue 13's goals: `ember` (the init,
# `ember ctl`, `ember check`, `ember analyze`) at most 1.2 MiB, each adapter at most 2 MiB.
#
# Usage: bench/sizes.sh [--target TRIPLE]...   (default: both targets)
#
# ember: the release profile (panic = "unwind": PID 1 catches a task's panic and carries
# on), default features (`analyze`) and --no-default-features. The adapters and the fleet
# tool: the `adapter` profile (the release profile with panic = "abort", which is how a
# board ships them: they exit at a panic anyway) and, for comparison, the release profile.
# ring (TLS in ember-mqtt and ember-fleet) compiles C: for aarch64 that needs a cross C
# compiler (aarch64-linux-gnu-gcc); without one those two are left out for aarch64 and
# said so. The figures go to a markdown table on standard output.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --target) targets+=("${2:?--target needs a triple}"); shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "sizes.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
[ ${#targets[@]} -gt 0 ] || targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
cd "$repo"
for t in "${targets[@]}"; do
    rustup target list --installed | grep -qx "$t" || rustup target add "$t" >&2
done
# ring's C for x86_64 musl: the host gcc is enough (the result is linked statically by
# rust-lld, .cargo/config.toml).
export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-gcc}
if command -v aarch64-linux-gnu-gcc >/dev/null; then
    export CC_aarch64_unknown_linux_musl=${CC_aarch64_unknown_linux_musl:-aarch64-linux-gnu-gcc}
fi
target_dir="$repo/target/sizes"

# size TARGET PROFILE PACKAGE [cargo args...]: builds one executable on its own, prints
# its size in bytes, or "-" when it cannot be built here (said on stderr).
size() {
    local target=$1 profile=$2 package=$3 dir
    shift 3
    dir=$profile
    [ "$profile" != dev ] || dir=debug
    # One target directory: what two builds share is built once; the executable is read
    # right after its own build.
    if ! cargo build -q --locked --target "$target" --profile "$profile" -p "$package" \
        --target-dir "$target_dir" "$@" >&2; then
        echo "sizes.sh: cannot build $package for $target here" >&2
        echo "-"
        return
    fi
    stat -c %s "$target_dir/$target/$dir/$package"
}

mib() {
    [ "$1" = - ] && { echo "—"; return; }
    awk -v b="$1" 'BEGIN { s = b ""; while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s);
        printf "%s B (%.2f MiB)", s, b / 1048576 }'
}
verdict() {
    [ "$1" = - ] && { echo "not built"; return; }
    awk -v b="$1" -v g="$2" 'BEGIN { r = b / (g * 1048576); printf "%.2fx the %s MiB goal%s", r, g, (r <= 1 ? "" : " (over)") }'
}

echo "ember sizes: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(rustc --version), ember $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo
echo "| executable (profile, features) | target | stripped size | against the goal |"
echo "|---|---|---:|---|"
for t in "${targets[@]}"; do
    b=$(size "$t" release ember --no-default-features)
    echo "| ember (release, --no-default-features) | $t | $(mib "$b") | $(verdict "$b" 1.2) |"
    b=$(size "$t" release ember)
    echo "| ember (release, default: analyze) | $t | $(mib "$b") | $(verdict "$b" 1.2) |"
    for p in ember-mqtt ember-dbus ember-fleet; do
        if [ "$p" != ember-dbus ] && [ "${t%%-*}" = aarch64 ] && [ -z "${CC_aarch64_unknown_linux_musl:-}" ]; then
            echo "sizes.sh: $p for $t needs a cross C compiler for ring (aarch64-linux-gnu-gcc): left out" >&2
            echo "| $p | $t | — | not built (ring needs aarch64-linux-gnu-gcc) |"
            continue
        fi
        for profile in adapter release; do
            b=$(size "$t" "$profile" "$p")
            goal=2
            echo "| $p ($profile) | $t | $(mib "$b") | $(verdict "$b" "$goal") |"
        done
    done
done
