#!/usr/bin/env bash
# Fleet-scale run: DEVICES simulated agents reporting every INTERVAL for
# DURATION against one fresh collector on this machine, with its RSS and the
# size of its sled directory.
#
#   DEVICES=2000 INTERVAL=10s DURATION=2m tests/bench/fleet.sh
#   DEVICES=19000 INTERVAL=60s DURATION=10m tests/bench/fleet.sh   # the most one process holds here
#
# While it runs, /metrics is scraped every SCRAPE seconds (0: never) as a
# Prometheus would, and each scrape's duration is appended to scrapes.tsv in
# the work directory (kept with KEEP=1); pass `-o json` for the simulator's
# per-window series (ack latency, collector RSS, load average).
#
# Each device holds one TCP connection, on both sides: the collector (and the
# simulator) can hold at most about `ulimit -Hn` devices.
set -euo pipefail

DEVICES=${DEVICES:-2000}
INTERVAL=${INTERVAL:-10s}
DURATION=${DURATION:-2m}
SAMPLES=${SAMPLES:-30}
SCRAPE=${SCRAPE:-15}

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
[[ -n "${NO_BUILD:-}" ]] || cargo build --release -p vakt-collector -p vakt-tests --bins >&2
bin="$root/target/release"
work=$(mktemp -d "${TMPDIR:-/tmp}/vakt-fleet.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -z "${KEEP:-}" ]]; then rm -rf "$work"; else echo "kept $work" >&2; fi
}
trap cleanup EXIT
# One TCP connection per device, on both sides.
ulimit -n "$(ulimit -Hn)"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc=$(port); http=$(port)
"$bin/vakt-collector" init --data-dir "$work/c" --name 127.0.0.1 --name localhost \
    --grpc-listen "127.0.0.1:$grpc" --http-listen "127.0.0.1:$http" >/dev/null
sed -i -E 's/^(enroll_rate_per_address|enroll_rate_global|enroll_burst_per_address|enroll_burst_global) = .*/\1 = 100000.0/' \
    "$work/c/collector.toml"
"$bin/vakt-collector" serve --config "$work/c/collector.toml" >/dev/null 2>"$work/collector.log" &
collector_pid=$!; pids+=("$collector_pid")
# For profiling the collector from outside (perf record -p).
[[ -z "${PIDFILE:-}" ]] || echo "$collector_pid" >"$PIDFILE"
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$http/readyz" >/dev/null 2>&1 && break
    sleep 0.2
done
if ((SCRAPE > 0)); then
    (
        while sleep "$SCRAPE"; do
            curl -fs -o /dev/null -w "%{time_total}\n" "http://127.0.0.1:$http/metrics" || echo failed
        done >"$work/scrapes.tsv"
    ) &
    pids+=("$!")
fi
limit=$(ulimit -n)
if ((DEVICES + 100 > limit)); then
    echo "warning: $DEVICES devices need as many descriptors in the collector; ulimit -n is $limit" >&2
fi
"$bin/vakt-fleet-sim" --vaktctl-config "$work/c/vaktctl.toml" --devices "$DEVICES" \
    --interval "$INTERVAL" --duration "$DURATION" --samples-per-report "$SAMPLES" \
    --collector-pid "$collector_pid" --data-dir "$work/c/data" "$@"
if ((SCRAPE > 0)) && [[ -s "$work/scrapes.tsv" ]]; then
    sort -n "$work/scrapes.tsv" | awk '{v[NR]=$1} END {printf "/metrics scrapes: %d, median %.1f ms, max %.1f ms\n", NR, v[int((NR+1)/2)]*1000, v[NR]*1000}' >&2
fi
