#!/usr/bin/env bash
# Builds rakit and the load tools (release), then runs every workload on rakit
# and its peers alternately and prints medians and ratios ours/peer.
#
#   benches/load/run.sh [--rounds 5] [--workloads echo,fanout,broadcast,idle,api] [--raw FILE]
#   benches/load/run.sh --workloads cluster-fanout,cluster-latency   # needs redis-server, node
#
# LOAD_TARGET_DIR: where the load package builds (default benches/load/target);
# the daemon is built in the main workspace's target/ as usual.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
load_target="${LOAD_TARGET_DIR:-$here/target}"
(cd "$root" && env -u CARGO_TARGET_DIR cargo build --release --bin rakit)
(cd "$here" && CARGO_TARGET_DIR="$load_target" cargo build --release)
# The Node peer of the cluster workloads (ws + ioredis, pinned by package-lock.json).
node_peer="$here/peer-node-ws-redis"
if [[ " $* " == *cluster-* && ! -d "$node_peer/node_modules" ]]; then
    (cd "$node_peer" && npm ci --no-audit --no-fund)
fi
cd "$here"
echo "# $(uptime)"
exec "$load_target/release/compare" \
    --rakit "$root/target/release/rakit" \
    --config "$here/rakit-bench.toml" \
    --bin-dir "$load_target/release" \
    --node-peer "$node_peer/server.js" "$@"
