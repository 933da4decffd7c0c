#!/usr/bin/env bash
# The agent's memory with an empty spool and with a full one (issue 4, item 3):
#   1. empty spool, collector down          steady and peak RSS
#   2. spool pre-filled to SPOOL_MIB (64) with real batches, collector down
#   3. the collector comes back: peak RSS while the full spool drains, and how
#      long the drain takes
# The pre-filled batches are copies of one real health batch this agent
# spooled, renumbered (field 1 of ReportBatch is the sequence), so the
# collector stores each as a new report.
#
#   tests/bench/footprint_spool.sh          # SPOOL_MIB=64 HOLD=30
set -euo pipefail
SPOOL_MIB=${SPOOL_MIB:-64}
HOLD=${HOLD:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
if [[ -z ${SKIP_BUILD:-} ]]; then
    cargo build --release -p vakt-agent -p vakt-collector --bins >&2
fi
bin="$root/target/release"
# The collector is not measured; any build of it will do (COLLECTOR_BIN_DIR=target/debug).
cbin=${COLLECTOR_BIN_DIR:-$bin}
work=$(mktemp -d "${TMPDIR:-/tmp}/vakt-spool.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -z ${KEEP:-} ]]; then rm -rf "$work"; else echo "kept $work" >&2; fi
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k/1024}'; }
status() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

grpc=$(port); http=$(port)
"$cbin/vakt-collector" init --data-dir "$work/c" --name localhost \
    --grpc-listen "127.0.0.1:$grpc" --http-listen "127.0.0.1:$http" >/dev/null
start_collector() {
    "$cbin/vakt-collector" serve --config "$work/c/collector.toml" >/dev/null 2>>"$work/collector.log" &
    collector=$!; pids+=("$collector")
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$http/readyz" >/dev/null 2>&1 && return
        sleep 0.2
    done
}
start_collector
"$cbin/vaktctl" --config "$work/c/vaktctl.toml" register --unbound | tail -n1 >"$work/token"
"$bin/vakt-agent" enroll --collector "https://localhost:$grpc" --ca "$work/c/ca.pem" \
    --token-file "$work/token" --state-dir "$work/agent" >/dev/null
kill "$collector"; wait "$collector" 2>/dev/null || true
printf 'interval = "5s"\n' >"$work/agent.toml"

run_agent() {
    "$bin/vakt-agent" run --config "$work/agent.toml" --state-dir "$work/agent" \
        >/dev/null 2>>"$work/agent.log" &
    agent=$!; pids+=("$agent")
}
measure() { # label: median RSS over HOLD s, and VmHWM
    local rss=()
    for _ in $(seq "$HOLD"); do sleep 1; rss+=("$(status "$agent" VmRSS)"); done
    local median
    median=$(printf '%s\n' "${rss[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    printf '%-44s steady RSS %6s MiB   peak RSS %6s MiB   spool %s\n' "$1" "$(mib "$median")" \
        "$(mib "$(status "$agent" VmHWM)")" "$(du -sh "$work/agent/spool" | cut -f1)"
}
stop_agent() { kill "$agent"; wait "$agent" 2>/dev/null || true; }

# 1. Empty spool (the first batches of this run stay in it: collector down).
run_agent
measure "empty spool, collector down"
stop_agent

# 2. Fill the spool with renumbered copies of its newest batch.
python3 - "$work/agent" "$SPOOL_MIB" <<'EOF'
import os, sys
state, mib = sys.argv[1], int(sys.argv[2])
spool = os.path.join(state, "spool")
names = sorted(n for n in os.listdir(spool) if n.endswith(".pb"))
template = open(os.path.join(spool, names[-1]), "rb").read()
assert template[0] == 0x08, "ReportBatch starts with its sequence (field 1, varint)"
i = 1
while template[i] & 0x80:
    i += 1
body = template[i + 1:]
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)
seq = int(names[-1][:-3])
total = sum(os.path.getsize(os.path.join(spool, n)) for n in names)
while total + len(template) <= mib * 1024 * 1024:
    seq += 1
    data = b"\x08" + varint(seq) + body
    with open(os.path.join(spool, f"{seq:020}.pb"), "wb") as f:
        f.write(data)
    total += len(data)
with open(os.path.join(state, "sequence"), "w") as f:
    f.write(f"{seq}\n")
print(f"spool filled: {seq} batches of ~{len(template)} bytes, {total / 1048576:.1f} MiB", file=sys.stderr)
EOF
run_agent
measure "full ${SPOOL_MIB} MiB spool, collector down"

# 3. The collector returns; the agent drains the spool in order.
started=$(date +%s.%N)
start_collector
for _ in $(seq 1200); do
    [[ -n $(ls -A "$work/agent/spool" 2>/dev/null | head -n 2 | tail -n +2) ]] || break
    sleep 0.5
done
drained=$(date +%s.%N)
printf '%-44s peak RSS %6s MiB, drained in %.1f s\n' "full spool drained to a live collector" \
    "$(mib "$(status "$agent" VmHWM)")" "$(awk -v a="$started" -v b="$drained" 'BEGIN {print b - a}')"
sleep 2
printf '%-44s RSS %6s MiB\n' "after the drain" "$(mib "$(status "$agent" VmRSS)")"
stop_agent
