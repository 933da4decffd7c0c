#!/usr/bin/env bash
# Ingest ceiling ratio (issue 6): durable reports/s of the real collector
# (acknowledged after fsync) divided by the reports/s of vakt-noop-collector
# (same TLS, acknowledges without storing), under the same client load.
#
# Both servers run side by side for the whole benchmark; the rounds alternate
# collector, no-op, collector, no-op, ... so background noise on a shared
# machine hits both alike. Prints each round, the medians and the ratio.
#
#   tests/bench/ingest_ratio.sh                 # 3 rounds, 64 streams x 8 in flight, 20 s
#   ROUNDS=5 STREAMS=128 IN_FLIGHT=4 DURATION=30s tests/bench/ingest_ratio.sh
#   KEEP=1 tests/bench/ingest_ratio.sh          # keep the work directory
#   BIN=/tmp/base tests/bench/ingest_ratio.sh   # use binaries from BIN, do not build
#   PERF=1 tests/bench/ingest_ratio.sh          # perf-record the collector in round 1
#   COLLECTOR_BIN=/tmp/prev/vakt-collector ...  # another collector build, same sim and no-op
#   COLLECTOR_ENV="VAKT_FLUSH_GATHER=yield:8" ...  # environment for the collector only
set -euo pipefail

ROUNDS=${ROUNDS:-3}
STREAMS=${STREAMS:-64}
IN_FLIGHT=${IN_FLIGHT:-8}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-3s}
SAMPLES=${SAMPLES:-30}

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
if [[ -n "${BIN:-}" ]]; then
    bin=$(cd "$BIN" && pwd)
else
    echo "== building release binaries" >&2
    cargo build --release -p vakt-collector -p vakt-tests --bins >&2
    bin="$root/target/release"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/vakt-ingest-ratio.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -z "${KEEP:-}" ]]; then rm -rf "$work"; else echo "kept $work" >&2; fi
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc=$(port); http=$(port); noop=$(port)

collector_bin=${COLLECTOR_BIN:-$bin/vakt-collector}
"$collector_bin" init --data-dir "$work/c" --name 127.0.0.1 --name localhost \
    --grpc-listen "127.0.0.1:$grpc" --http-listen "127.0.0.1:$http" >/dev/null
# The simulator enrolls every stream's device from one address: lift the
# enrollment rate limits (defaults: 2/s per address, 50/s overall).
sed -i -E 's/^(enroll_rate_per_address|enroll_rate_global) = .*/\1 = 100000.0/;
           s/^(enroll_burst_per_address|enroll_burst_global) = .*/\1 = 100000.0/' "$work/c/collector.toml"
grep -q '^enroll_rate_per_address = 100000' "$work/c/collector.toml" || {
    echo "could not raise the enrollment rate limits in $work/c/collector.toml" >&2; exit 1; }

# Debug level for the group commit: it logs flushes/s and waiters per flush.
# shellcheck disable=SC2086 # COLLECTOR_ENV is a list of NAME=VALUE words
env RUST_LOG="${RUST_LOG:-info,vakt_collector::store::flush=debug}" ${COLLECTOR_ENV:-} \
    "$collector_bin" serve --config "$work/c/collector.toml" 2>"$work/collector.log" &
collector_pid=$!; pids+=("$collector_pid")
"$bin/vakt-noop-collector" --config "$work/c/collector.toml" --listen "127.0.0.1:$noop" 2>"$work/noop.log" &
noop_pid=$!; pids+=("$noop_pid")
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$http/readyz" >/dev/null 2>&1 && break
    sleep 0.2
done

sim=("$bin/vakt-fleet-sim" --vaktctl-config "$work/c/vaktctl.toml" --credentials-cache "$work/creds")
echo "== enrolling $STREAMS devices" >&2
"${sim[@]}" --streams "$STREAMS" --saturate --enroll-only >&2

load=(--saturate --streams "$STREAMS" --in-flight "$IN_FLIGHT" --duration "$DURATION"
      --warmup "$WARMUP" --samples-per-report "$SAMPLES" -o json)
# utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The server's CPU use during a round, in cores (warm-up included).
cores() { python3 -c "import os,sys; a,b,t,u=map(float,sys.argv[1:]); print(f'{(b-a)/os.sysconf(\"SC_CLK_TCK\")/(u-t):.2f}')" "$@"; }
rate() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["reports_per_s"], d["ack_latency_ms"]["p50"], d["ack_latency_ms"]["p99"], sum(d["errors"].values()))'; }

durable=(); bare=()
printf '%-6s %-9s %12s %10s %10s %7s %10s\n' round server reports/s p50_ms p99_ms errors cpu_cores
for r in $(seq "$ROUNDS"); do
    perf_pid=
    if [[ -n "${PERF:-}" && $r == 1 ]]; then
        perf record ${PERF_ARGS:--g} -o "$work/perf.data" -p "$collector_pid" 2>>"$work/perf.log" >&2 &
        perf_pid=$!
    fi
    c0=$(cpu_ticks "$collector_pid"); t0=$(date +%s.%N)
    out=$("${sim[@]}" "${load[@]}" --collector-pid "$collector_pid" 2>>"$work/sim.log")
    c1=$(cpu_ticks "$collector_pid"); t1=$(date +%s.%N)
    if [[ -n "$perf_pid" ]]; then
        kill -INT "$perf_pid"; wait "$perf_pid" || true
        perf report -i "$work/perf.data" --no-children --percent-limit 0.7 --stdio -g none \
            >"$work/perf-report.txt" 2>/dev/null || true
        echo "perf report: $work/perf-report.txt (pass KEEP=1 to keep it)" >&2
    fi
    echo "$out" >"$work/collector-$r.json"
    read -r rps p50 p99 errs <<<"$(rate <<<"$out")"
    durable+=("$rps")
    printf '%-6s %-9s %12.0f %10.1f %10.1f %7s %10s\n' "$r" collector "$rps" "$p50" "$p99" "$errs" "$(cores "$c0" "$c1" "$t0" "$t1")"

    n0=$(cpu_ticks "$noop_pid"); t0=$(date +%s.%N)
    out=$("${sim[@]}" "${load[@]}" --collector "https://127.0.0.1:$noop" --collector-pid "$noop_pid" 2>>"$work/sim.log")
    n1=$(cpu_ticks "$noop_pid"); t1=$(date +%s.%N)
    echo "$out" >"$work/noop-$r.json"
    read -r rps p50 p99 errs <<<"$(rate <<<"$out")"
    bare+=("$rps")
    printf '%-6s %-9s %12.0f %10.1f %10.1f %7s %10s\n' "$r" no-op "$rps" "$p50" "$p99" "$errs" "$(cores "$n0" "$n1" "$t0" "$t1")"
done

echo "group commit during the last collector round (flusher's debug log):"
grep 'group commit' "$work/collector.log" | tail -n 3 | sed -E 's/^.*group commit //; s/^/  /' || true
rss_kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$collector_pid/status")
hwm_kib=$(awk '/^VmHWM:/ {print $2}' "/proc/$collector_pid/status")
data_bytes=$(du -sb "$work/c/data" | cut -f1)
python3 - "$rss_kib" "$hwm_kib" "$data_bytes" "${durable[*]}" "${bare[*]}" <<'PY'
import statistics, sys
rss, hwm, data = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
d = [float(x) for x in sys.argv[4].split()]
b = [float(x) for x in sys.argv[5].split()]
md, mb = statistics.median(d), statistics.median(b)
print()
print(f"median durable (collector, ack after fsync): {md:9.0f} reports/s")
print(f"median no-op (same TLS, no storage):        {mb:9.0f} reports/s")
print(f"ratio durable/no-op:                         {md/mb:9.2f}   (goal >= 0.5)")
print("per-round ratios:                            " + "  ".join(f"{x/y:.2f}" for x, y in zip(d, b)))
print(f"collector RSS at the end: {rss/1024:.0f} MiB (peak {hwm/1024:.0f} MiB); sled data dir {data/1048576:.0f} MiB")
PY
