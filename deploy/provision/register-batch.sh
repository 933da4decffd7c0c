#!/usr/bin/env bash
# Registers a batch of new hardware before it is handed out, and writes one
# token file per device for the imaging step to drop into the device's
# /etc/vakt/token (read once by `vakt-agent enroll --token-file`).
#
# Runs with a *provisioner* credential: it can register devices and nothing
# else. Make one once with an admin credential:
#   vaktctl credentials issue --role provisioner --name imaging-bot --out /etc/vakt/imaging-bot
#
# usage: register-batch.sh laptops.csv OUT_DIR
# CSV columns: serial,model,class,department,owner,labels (labels as k=v;k=v).
# Running it again with the same file gives the same devices fresh tokens
# (the previous tokens stop working), never duplicates.
set -euo pipefail
csv=${1:?usage: register-batch.sh FILE.csv OUT_DIR}
out=${2:?usage: register-batch.sh FILE.csv OUT_DIR}
config=${VAKT_CONFIG:-/etc/vakt/imaging-bot/vaktctl.toml}

umask 077
mkdir -p "$out"
results=$(mktemp)
trap 'rm -f "$results"' EXIT

# One row per device; a bad row is reported in its own row and does not stop the rest.
status=0
vaktctl --config "$config" register --csv "$csv" -o json > "$results" || status=$?

python3 - "$results" "$out" <<'PY'
import json, os, sys
rows = json.load(open(sys.argv[1]))
out = sys.argv[2]
for row in rows:
    if row["status"] == "error":
        print(f"line {row['line']}: {row['identifier']}: {row['error']}", file=sys.stderr)
        continue
    ident = row["identifier"]
    name = ident.split("=", 1)[1] if "=" in ident else row["device_id"]
    path = os.path.join(out, f"{name}.token")
    with open(path, "w") as f:
        f.write(row["token"] + "\n")
    print(f"{row['status']:8} {row['device_id']}  {path}  (expires {row['token_expires_at']})")
PY
exit "$status"
