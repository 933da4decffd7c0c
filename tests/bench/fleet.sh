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
# the work directory (kept with KEEP=1); the collector's memory (RSS,
# anonymous vs file-backed from smaps_rollup) and sled directory size go to
# memory.tsv every MEM_EVERY seconds (copied to MEM_OUT if set). Pass
# `-o json` for the simulator's per-window series (ack latency, collector
# RSS, load average). COLLECTOR_ENV adds variables to the collector's
# environment (e.g. LD_PRELOAD of another malloc, for a measurement); RULES
# names an alert rules file for it; COMPACT_INTERVAL (e.g. 2m) sets its
# `[storage] compact_interval`, so a 10-minute run sees several fold passes.
#
# Each device holds one TCP connection, on both sides: the collector (and the
# simulator) can hold at most about `ulimit -Hn` devices.
set -euo pipefail

DEVICES=${DEVICES:-2000}
INTERVAL=${INTERVAL:-10s}
DURATION=${DURATION:-2m}
SAMPLES=${SAMPLES:-30}
SCRAPE=${SCRAPE:-15}
MEM_EVERY=${MEM_EVERY:-10}

# shellcheck source=tests/bench/lib.sh
source "$(dirname "$0")/lib.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/vakt-fleet.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    [[ -z "${MEM_OUT:-}" || ! -s "$work/memory.tsv" ]] || cp "$work/memory.tsv" "$MEM_OUT"
    if [[ -z "${KEEP:-}" ]]; then rm -rf "$work"; else echo "kept $work" >&2; fi
}
trap cleanup EXIT

collector_init "$work/c"
# RULES=FILE: alert rules merged over the built-in ones (e.g. to switch off
# a rule the simulated fleet would fire tens of thousands of times).
[[ -z "${RULES:-}" ]] || sed -i "1i alert_rules = \"$(realpath "$RULES")\"" "$work/c/collector.toml"
if [[ -n "${COMPACT_INTERVAL:-}" ]]; then
    if grep -q '^compact_interval' "$work/c/collector.toml"; then
        sed -i -E "s/^compact_interval = .*/compact_interval = \"$COMPACT_INTERVAL\"/" "$work/c/collector.toml"
    else
        printf '\n[storage]\ncompact_interval = "%s"\n' "$COMPACT_INTERVAL" >>"$work/c/collector.toml"
    fi
fi
collector_start "$work/c" "$work/collector.log"
pids+=("$collector_pid")
# For profiling the collector from outside (perf record -p).
[[ -z "${PIDFILE:-}" ]] || echo "$collector_pid" >"$PIDFILE"
sample_memory "$collector_pid" "$work/c/data" "$MEM_EVERY" >"$work/memory.tsv" &
pids+=("$!")
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
grep -h "storage maintenance pass" "$work/collector.log" >&2 || true
