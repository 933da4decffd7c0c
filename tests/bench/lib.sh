# Shared set-up of the collector benchmarks (sourced by fleet.sh and
# conn_memory.sh): build, a fresh `vakt-collector init` directory with the
# enrollment rate limits raised, starting the collector and waiting until it
# is ready, and a memory sampler.
#
# Before sourcing: `set -euo pipefail`. After: $root, $bin.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
[[ -n "${NO_BUILD:-}" ]] || cargo build --release -p vakt-collector -p vakt-tests --bins >&2
bin=${BIN:-"$root/target/release"}

# One TCP connection per simulated device, on both sides.
ulimit -n "$(ulimit -Hn)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# collector_init DIR: CA, credentials and collector.toml in DIR on two free
# loopback ports ($grpc, $http), with enrollment rate limits raised (the
# defaults, 2/s per address, would make enrolling a simulated fleet from one
# address take hours).
collector_init() {
    grpc=$(free_port)
    http=$(free_port)
    "$bin/vakt-collector" init --data-dir "$1" --name 127.0.0.1 --name localhost \
        --grpc-listen "127.0.0.1:$grpc" --http-listen "127.0.0.1:$http" >/dev/null
    sed -i -E 's/^(enroll_rate_per_address|enroll_rate_global|enroll_burst_per_address|enroll_burst_global) = .*/\1 = 100000.0/' \
        "$1/collector.toml"
}

# collector_start DIR LOG: starts `serve` in the background with
# COLLECTOR_ENV (e.g. "MALLOC_ARENA_MAX=2" or "LD_PRELOAD=…") in its
# environment, sets $collector_pid, and waits for /readyz.
collector_start() {
    # shellcheck disable=SC2086 # COLLECTOR_ENV is a list of VAR=value words
    env ${COLLECTOR_ENV:-} "$bin/vakt-collector" serve --config "$1/collector.toml" \
        >/dev/null 2>>"$2" &
    collector_pid=$!
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$http/readyz" >/dev/null 2>&1 && return
        sleep 0.2
    done
    echo "collector did not become ready (log: $2)" >&2
    return 1
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# sample_memory PID DATA_DIR EVERY_S: one line every EVERY_S seconds until
# PID exits: seconds since start, RSS and its anonymous and file-backed
# parts (smaps_rollup, KiB), the heap's share of it ([heap] plus anonymous
# mappings: what malloc holds), the sled directory's size (bytes) and the
# 1-minute load average. Tells a heap that grows from sled's file pages
# (mmap'd or read) and from its size.
sample_memory() {
    local pid=$1 data=$2 every=$3 start=$SECONDS
    printf 'seconds\trss_kib\tanon_kib\tfile_kib\tsled_bytes\tload1\n'
    while kill -0 "$pid" 2>/dev/null; do
        local rollup anon file rss
        rollup=$(cat "/proc/$pid/smaps_rollup" 2>/dev/null) || break
        rss=$(awk '/^Rss:/ {print $2}' <<<"$rollup")
        anon=$(awk '/^Anonymous:/ {print $2}' <<<"$rollup")
        file=$(awk '/^Pss_File:/ {print $2}' <<<"$rollup")
        printf '%d\t%s\t%s\t%s\t%s\t%s\n' $((SECONDS - start)) "$rss" "$anon" "${file:-0}" \
            "$(du -sb "$data" 2>/dev/null | cut -f1)" "$(cut -d' ' -f1 /proc/loadavg)"
        sleep "$every"
    done
}
