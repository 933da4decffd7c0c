#!/usr/bin/env bash
# The footprint benchmark (issue 4): vakt-agent side by side with the monitoring
# agents people run today, each collecting every 5 s, and for each: steady RSS,
# peak RSS (summed over its process tree) and CPU ms per collection (schedstat
# nanoseconds summed over every thread of the tree). Method and figures:
# docs/BENCHMARKS.md, "Agent footprint".
#
#   tests/bench/footprint.sh                 # ROUNDS=3 WARMUP=15 DURATION=60 INTERVAL=5
#   ONLY=vakt-agent ROUNDS=1 tests/bench/footprint.sh
#   AGENT_PROFILE=release tests/bench/footprint.sh   # the agent as a plain release build
#   AGENT_TARGET= tests/bench/footprint.sh           # dynamically linked against glibc
#
# Needs (bench only, not CI): apt-get install prometheus-node-exporter collectd-core
# zabbix-agent monit curl python3 musl-tools; rustup target add x86_64-unknown-linux-musl. Runs everything on loopback, as root or not.
# vakt-agent runs optimized (profile release-agent), enrolled with a real local collector over
# mTLS, spool on; node_exporter is scraped by a curl loop (curl's own CPU is not
# counted, node_exporter's work for the scrape is); zabbix_agentd answers 12
# passive checks per cycle from a small poller (not counted); collectd has
# `Interval 5` and sends to a UDP port; monit checks system, / and a NIC.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-15}
DURATION=${DURATION:-60}
INTERVAL=${INTERVAL:-5}
ONLY=${ONLY:-}

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
for tool in prometheus-node-exporter collectd zabbix_agentd monit curl python3; do
    if ! command -v "$tool" >/dev/null && [[ ! -x /usr/sbin/$tool ]]; then
        echo "footprint.sh: $tool is missing (apt-get install prometheus-node-exporter collectd-core zabbix-agent monit curl)" >&2
        exit 1
    fi
done
PATH=$PATH:/usr/sbin
# The agent is measured as it ships (deploy/package.sh): the release-agent
# profile (Cargo.toml), linked statically against musl (agent/build.rs).
# AGENT_TARGET= measures a build for the host's default (glibc) target instead.
AGENT_PROFILE=${AGENT_PROFILE:-release-agent}
AGENT_TARGET=${AGENT_TARGET-$(uname -m)-unknown-linux-musl}
target_args=()
bin="$root/target/$AGENT_PROFILE"
if [[ -n $AGENT_TARGET ]]; then
    target_args=(--target "$AGENT_TARGET")
    bin="$root/target/$AGENT_TARGET/$AGENT_PROFILE"
fi
if [[ -z ${SKIP_BUILD:-} ]]; then
    cargo build --profile "$AGENT_PROFILE" "${target_args[@]}" -p vakt-agent --bins >&2
    cargo build --release -p vakt-collector --bins >&2
fi
# The collector is not measured; any build of it will do (COLLECTOR_BIN_DIR=target/debug).
cbin=${COLLECTOR_BIN_DIR:-$root/target/release}
work=$(mktemp -d "${TMPDIR:-/tmp}/vakt-footprint.XXXXXX")
chmod 755 "$work"
pids=()
results="$work/results.jsonl"
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -z ${KEEP:-} ]]; then rm -rf "$work"; else echo "kept $work" >&2; fi
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
iface=$(awk 'NR>1 && $2 == "00000000" {print $1; exit}' /proc/net/route)
iface=${iface:-lo}
wanted() { [[ -z $ONLY || ",$ONLY," == *",$1,"* ]]; }

# --- the Vakt collector (not measured) and one enrolled agent -----------------
grpc=$(port); http=$(port)
"$cbin/vakt-collector" init --data-dir "$work/c" --name localhost \
    --grpc-listen "127.0.0.1:$grpc" --http-listen "127.0.0.1:$http" >/dev/null
sed -i -E "s/^report_interval = .*/report_interval = \"${INTERVAL}s\"/" "$work/c/collector.toml"
"$cbin/vakt-collector" serve --config "$work/c/collector.toml" >/dev/null 2>"$work/collector.log" &
pids+=("$!")
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$http/readyz" >/dev/null 2>&1 && break
    sleep 0.2
done
"$cbin/vaktctl" --config "$work/c/vaktctl.toml" register --unbound | tail -n1 >"$work/token"
"$bin/vakt-agent" enroll --collector "https://localhost:$grpc" --ca "$work/c/ca.pem" \
    --token-file "$work/token" --state-dir "$work/agent" >/dev/null
cat >"$work/agent.toml" <<EOF
interval = "${INTERVAL}s"
EOF

# --- the peers' configurations --------------------------------------------------
mkdir -p "$work/collectd" "$work/zabbix" "$work/monit"
cat >"$work/collectd/collectd.conf" <<EOF
Hostname "bench"
FQDNLookup false
BaseDir "$work/collectd"
PIDFile "$work/collectd/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
Interval $INTERVAL
LoadPlugin cpu
LoadPlugin load
LoadPlugin memory
LoadPlugin swap
LoadPlugin df
LoadPlugin disk
LoadPlugin interface
LoadPlugin uptime
LoadPlugin processes
LoadPlugin network
<Plugin network>
  Server "127.0.0.1" "$(port)"
</Plugin>
EOF
# zabbix_agentd accepts ListenPort 1024-32767 only.
zport=$(python3 -c 'import socket,random
for p in random.sample(range(20000, 32000), 200):
    s = socket.socket()
    try: s.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass')
cat >"$work/zabbix/zabbix_agentd.conf" <<EOF
PidFile=$work/zabbix/zabbix_agentd.pid
LogFile=$work/zabbix/zabbix_agentd.log
Server=127.0.0.1
ListenIP=127.0.0.1
ListenPort=$zport
Hostname=bench
AllowRoot=1
EOF
cat >"$work/monit/monitrc" <<EOF
set daemon $INTERVAL
set logfile $work/monit/monit.log
set pidfile $work/monit/monit.pid
set idfile $work/monit/id
set statefile $work/monit/state
check system bench
  if loadavg (1min) > 1000 then alert
  if memory usage > 99% then alert
  if cpu usage > 99% for 10 cycles then alert
check filesystem rootfs with path /
  if space usage > 99% then alert
check network nic with interface $iface
  if failed link then alert
EOF
chmod 600 "$work/monit/monitrc"

# A zabbix server's poller in miniature: 12 passive checks every interval.
zabbix_poll() {
    python3 - "$zport" "$INTERVAL" "$iface" <<'EOF'
import socket, struct, sys, time
port, interval, nic = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
keys = ["system.cpu.util[,user]", "system.cpu.util[,system]", "system.cpu.load[all,avg1]",
        "vm.memory.size[available]", "vm.memory.size[total]", "system.swap.size[,free]",
        "vfs.fs.size[/,pused]", f"net.if.in[{nic}]", f"net.if.out[{nic}]", "system.uptime",
        "proc.num[]", "vfs.dev.read[,ops]"]
while True:
    for key in keys:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                data = key.encode()
                s.sendall(b"ZBXD\x01" + struct.pack("<Q", len(data)) + data)
                while s.recv(4096):
                    pass
        except OSError:
            pass
    time.sleep(interval)
EOF
}

start_round() {
    procs=()
    if wanted vakt-agent; then
        "$bin/vakt-agent" run --config "$work/agent.toml" --state-dir "$work/agent" \
            >/dev/null 2>>"$work/agent.log" &
        pids+=("$!"); procs+=("vakt-agent=$!")
    fi
    if wanted node_exporter; then
        nport=$(port)
        prometheus-node-exporter --web.listen-address="127.0.0.1:$nport" >/dev/null 2>&1 &
        pids+=("$!"); procs+=("node_exporter=$!")
        (while sleep "$INTERVAL"; do curl -s -o /dev/null "http://127.0.0.1:$nport/metrics"; done) >/dev/null 2>&1 &
        pids+=("$!")
    fi
    if wanted collectd; then
        collectd -f -C "$work/collectd/collectd.conf" >/dev/null 2>&1 &
        pids+=("$!"); procs+=("collectd=$!")
    fi
    if wanted zabbix_agentd; then
        zabbix_agentd -f -c "$work/zabbix/zabbix_agentd.conf" >/dev/null 2>&1 &
        pids+=("$!"); procs+=("zabbix_agentd=$!")
        sleep 0.5
        zabbix_poll >/dev/null 2>&1 &
        pids+=("$!")
    fi
    if wanted monit; then
        monit -I -c "$work/monit/monitrc" >/dev/null 2>&1 &
        pids+=("$!"); procs+=("monit=$!")
    fi
}

stop_round() {
    # The collector (pids[0]) stays for the next round.
    for pid in "${pids[@]:1}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]:1}"; do wait "$pid" 2>/dev/null || true; done
    pids=("${pids[0]}")
}

for round in $(seq "$ROUNDS"); do
    echo "round $round/$ROUNDS: warm-up ${WARMUP}s, then ${DURATION}s measured" >&2
    start_round
    python3 "$root/tests/bench/footprint_sample.py" --warmup "$WARMUP" --duration "$DURATION" \
        --interval "$INTERVAL" "${procs[@]}" | sed "s/^{/{\"round\": $round, /" | tee -a "$results" >&2
    stop_round
done

# The agent really reported (over mTLS, acknowledged) during the runs:
"$cbin/vaktctl" --config "$work/c/vaktctl.toml" devices -o table >&2 || true
python3 - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
names = list(dict.fromkeys(r["name"] for r in rows))
print(f"{'agent':<15} {'steady RSS MiB':>15} {'peak RSS MiB':>13} {'anon MiB':>9} {'CPU ms/collection':>18} {'procs':>6} {'threads':>8}  (median of {max(r['round'] for r in rows)} rounds)")
for n in names:
    rs = [r for r in rows if r["name"] == n and "error" not in r]
    if not rs:
        print(f"{n:<15} process gone"); continue
    med = lambda k: statistics.median(r[k] for r in rs)
    each = " / ".join(f"{r['cpu_ms_per_collection']:.2f}" for r in rs)
    print(f"{n:<15} {med('steady_rss_mib'):>15.1f} {med('peak_rss_mib'):>13.1f} {med('steady_anon_mib'):>9.1f} {med('cpu_ms_per_collection'):>18.2f} {rs[0]['processes']:>6} {rs[0]['threads']:>8}  cpu per round: {each}")
EOF
