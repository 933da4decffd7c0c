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

# shellcheck source=tests/bench/lib.sh
source "$(dirname "$0")/lib.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/vakt-connmem.XXXXXX")
collector_pid=
cleanup() {
    [[ -n "$collector_pid" ]] && kill "$collector_pid" 2>/dev/null && wait "$collector_pid" 2>/dev/null
    if [[ -z "${KEEP:-}" ]]; then rm -rf "$work"; else echo "kept $work" >&2; fi
}
trap cleanup EXIT

collector_init "$work/c"
start() { collector_start "$work/c" "$work/collector.log"; }
stop() {
    kill "$collector_pid"
    wait "$collector_pid" 2>/dev/null || true
    collector_pid=
}

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
