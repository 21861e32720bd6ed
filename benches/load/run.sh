#!/usr/bin/env bash
# Builds rakit and the load tools (release), then runs every workload on rakit
# and its peers alternately and prints medians and ratios ours/peer.
#
#   benches/load/run.sh [--rounds 5] [--workloads echo,fanout,broadcast,idle,api] [--raw FILE]
#
# LOAD_TARGET_DIR: where the load package builds (default benches/load/target);
# the daemon is built in the main workspace's target/ as usual.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
load_target="${LOAD_TARGET_DIR:-$here/target}"
(cd "$root" && env -u CARGO_TARGET_DIR cargo build --release --bin rakit)
(cd "$here" && CARGO_TARGET_DIR="$load_target" cargo build --release)
cd "$here"
echo "# $(uptime)"
exec "$load_target/release/compare" \
    --rakit "$root/target/release/rakit" \
    --config "$here/rakit-bench.toml" \
    --bin-dir "$load_target/release" "$@"
