# Shared by the benchmark scripts (sourced, not run).

# cleanup_run TMP KEEP NAME: what a crashed measuring script left behind is killed (only
# the pids it listed in TMP/pids, and only while they still carry the name it listed,
# so a reused pid is spared), then TMP is removed, unless KEEP is set.
cleanup_run() {
    local tmp=$1 keep=$2 name=$3 pid comm
    if [ -f "$tmp/pids" ]; then
        while read -r pid comm; do
            [ -n "$pid" ] || continue
            if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done < "$tmp/pids"
    fi
    if [ -z "$keep" ]; then
        rm -rf "$tmp"
    else
        echo "$name: kept $tmp" >&2
    fi
}
