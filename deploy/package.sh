#!/usr/bin/env bash
# Builds the Debian packages vakt-agent and vakt-collector (with vaktctl) into
# target/debian/ (or --out DIR), from the [package.metadata.deb] tables in
# agent/Cargo.toml and collector/Cargo.toml.
#
#   deploy/package.sh                      # optimized builds, then both .debs
#   deploy/package.sh --profile dev --no-build --target-dir DIR --out DIR --compression none
#                                          # what tests/tests/packaging.rs runs
#
# The tables are in cargo-deb's format, so `cargo deb -p vakt-agent` builds the
# same package where cargo-deb is installed. This script assembles them with
# dpkg-deb instead (deploy/debian/assemble.py), because installing cargo-deb
# means compiling it on every fresh CI clone (`cargo install --locked cargo-deb`:
# 95 crates, C code included; docs/BENCHMARKS.md, "What packaging costs in CI"),
# while dpkg-deb and python3 are on every Debian machine already.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
profile=release
# The agent ships with its own size-optimized profile (Cargo.toml,
# [profile.release-agent]): smaller code is less resident memory.
agent_profile=release-agent
# ... linked statically against musl (agent/build.rs, docs/BENCHMARKS.md "Agent
# footprint"): glibc's shared libraries were a third of its resident memory.
# Needs `rustup target add <arch>-unknown-linux-musl` and musl-tools (ring's C).
agent_target=$(uname -m)-unknown-linux-musl
build=1
target_dir=${CARGO_TARGET_DIR:-}
out=
compression=xz
usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while (($#)); do
  case $1 in
    --profile) profile=${2:?}; agent_profile=$profile; agent_target=; shift 2 ;;
    --no-build) build=0; shift ;;
    --target-dir) target_dir=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --compression) compression=${2:?}; shift 2 ;;
    -h|--help) usage ;;
    *) echo "package.sh: unknown argument $1" >&2; usage ;;
  esac
done
for tool in cargo dpkg-deb python3; do
  command -v "$tool" >/dev/null || { echo "package.sh: $tool is required" >&2; exit 1; }
done
cd "$root"
metadata=$(mktemp)
trap 'rm -f "$metadata"' EXIT
cargo metadata --no-deps --format-version 1 --locked >"$metadata"
if [[ -z $target_dir ]]; then
  target_dir=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["target_directory"])' "$metadata")
fi
out=${out:-$target_dir/debian}
agent_dir=$agent_profile
target_args=()
if [[ -n $agent_target ]]; then
  agent_dir=$agent_target/$agent_profile
  target_args=(--target "$agent_target")
fi
if ((build)); then
  cargo build --locked --profile "$agent_profile" "${target_args[@]}" --target-dir "$target_dir" --bins -p vakt-agent
  cargo build --locked --profile "$profile" --target-dir "$target_dir" --bins -p vakt-collector
fi
python3 deploy/debian/assemble.py --metadata "$metadata" --profile "$profile" \
  --target-dir "$target_dir" --out "$out" --compression "$compression" \
  --package-profile "vakt-agent=$agent_dir" vakt-agent vakt-collector
