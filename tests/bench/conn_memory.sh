#!/usr/bin/env bash
# Collector memory per agent connection: enrolls MAX devices once, then for
# each count in COUNTS starts the collector afresh on that database, records
# its RSS with no agent connected, opens that many mTLS connections with one
# Report stream each (an interval of 10 h: the streams stay idle) and records
# the RSS again once they are all open. Prints one line per count:
#   devices  rss_before_kib  rss_connected_kib  kib_per_connection
#
#   COUNTS="0 2000 5000 10000" tests/bench/conn_memory.sh
#   COLLECTOR_ENV="MALLOC_ARENA_MAX=2" tests/bench/conn_memory.sh   # try an allocator setting
set -euo pipefail

COUNTS=${COUNTS:-"0 2000 5000 10000"}
HOLD=${HOLD:-10s}
max=0
for n in $COUNTS; do ((n > max)) && max=$n; done

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
[[ -n "${NO_BUILD:-}" ]] || cargo build --release -p vakt-collector -p vakt-tests --bins >&2
bin=${BIN:-"$root/target/release"}
work=$(mktemp -d "${TMPDIR:-/tmp}/vakt-connmem.XXXXXX")
collector_pid=
cleanup() {
    [[ -n "$collector_pid" ]] && kill "$collector_pid" 2>/dev/null && wait "$collector_pid" 2>/dev/null
    if [[ -z "${KEEP:-}" ]]; then rm -rf "$work"; else echo "kept $work" >&2; fi
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc=$(port); http=$(port)
"$bin/vakt-collector" init --data-dir "$work/c" --name 127.0.0.1 --name localhost \
    --grpc-listen "127.0.0.1:$grpc" --http-listen "127.0.0.1:$http" >/dev/null
sed -i -E 's/^(enroll_rate_per_address|enroll_rate_global|enroll_burst_per_address|enroll_burst_global) = .*/\1 = 100000.0/' \
    "$work/c/collector.toml"

start() {
    # shellcheck disable=SC2086 # COLLECTOR_ENV is a list of VAR=value words
    env ${COLLECTOR_ENV:-} "$bin/vakt-collector" serve --config "$work/c/collector.toml" \
        >/dev/null 2>>"$work/collector.log" &
    collector_pid=$!
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$http/readyz" >/dev/null 2>&1 && return
        sleep 0.2
    done
    echo "collector did not become ready" >&2
    exit 1
}
stop() {
    kill "$collector_pid"
    wait "$collector_pid" 2>/dev/null || true
    collector_pid=
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

sim=("$bin/vakt-fleet-sim" --vaktctl-config "$work/c/vaktctl.toml" --credentials-cache "$work/creds")
start
if ((max > 0)); then
    "${sim[@]}" --devices "$max" --enroll-only >&2
fi
stop

printf '%-8s %-15s %-18s %s\n' devices rss_before_kib rss_connected_kib kib_per_connection
for n in $COUNTS; do
    start
    sleep 2
    before=$(rss_kib "$collector_pid")
    if ((n > 0)); then
        "${sim[@]}" --devices "$n" --interval 10h --duration "$HOLD" --progress 1h \
            -o json >"$work/sim-$n.json" 2>"$work/sim-$n.log" &
        sim_pid=$!
        # Read the RSS while every connection is open (the simulator's own
        # summary comes after it has closed them).
        until grep -q '^opened' "$work/sim-$n.log"; do
            kill -0 "$sim_pid" 2>/dev/null || { cat "$work/sim-$n.log" >&2; exit 1; }
            sleep 0.5
        done
        sleep 5
        after=$(rss_kib "$collector_pid")
        wait "$sim_pid"
        per=$(python3 -c "print(f'{($after - $before) / $n:.1f}')")
    else
        after=$before
        per=-
    fi
    printf '%-8s %-15s %-18s %s\n' "$n" "$before" "$after" "$per"
    stop
done
