#!/usr/bin/env bash
# A quick check of what a change costs an idle connection and a delivery (a benchmark, not a
# test: it asserts nothing and prints figures to compare with benches/README.md). About a
# minute once built:
#
#   benches/load/guard.sh [RAKIT_BINARY]
#
# - idle RSS per connection: 10,000 connections, the daemon with every setting at its default
#   (rakit-default.toml: presence, logging and SPEC 17's limits on) and with rakit-bench.toml;
# - fan-out CPU per delivery: 4 M deliveries to 1,000 and to 16,000 subscribers of one channel,
#   and the ratio of the two (the cost must stay flat as subscribers grow).
#
# CPU figures move with the machine's load (printed); RSS does not. For a deterministic A/B of
# the delivery path use callgrind (benches/README.md, "Per-delivery cost").
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
load_target="${LOAD_TARGET_DIR:-$here/target}"
rakit="${1:-}"
if [[ -z "$rakit" ]]; then
    (cd "$root" && cargo build --release --bin rakit)
    rakit="${CARGO_TARGET_DIR:-$root/target}/release/rakit"
fi
(cd "$here" && CARGO_TARGET_DIR="$load_target" cargo build --release --bin loadgen)
loadgen="$load_target/release/loadgen"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# Runs `loadgen WORKLOAD ARGS...` against a fresh daemon started with CONFIG; prints the
# RESULT line.
run() {
    local config="$1"
    shift
    local out="$scratch/out"
    "$rakit" websocket:run --port=0 --config="$config" >"$out" 2>/dev/null &
    local pid=$!
    local addr=""
    for _ in $(seq 100); do
        addr="$(grep -o 'ws://[0-9.]*:[0-9]*' "$out" 2>/dev/null | head -1 | sed 's#ws://##')" || true
        [[ -n "$addr" ]] && break
        sleep 0.1
    done
    "$loadgen" "$@" --addr "$addr" --server rakit --server-pid "$pid" | grep '^RESULT' || true
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

field() { grep -o " $1=[^ ]*" | head -1 | cut -d= -f2; }

echo "# $(uptime)"
echo "# $rakit"
for config in rakit-default rakit-bench; do
    line="$(run "$here/$config.toml" idle)"
    printf 'idle rss per connection, %-13s %5s B   (valid=%s)\n' \
        "$config" "$(field rss_per_conn_b <<<"$line")" "$(field valid <<<"$line")"
done
declare -A ns
for subs in 1000 16000; do
    line="$(run "$here/rakit-bench.toml" fanout --subs "$subs" --msgs $((4000000 / subs)))"
    ns[$subs]="$(field cpu_ns_per_delivery <<<"$line")"
    printf 'fan-out CPU per delivery, %5s subscribers %5s ns  (%s deliveries/s, valid=%s)\n' \
        "$subs" "${ns[$subs]}" "$(field deliveries_per_s <<<"$line")" "$(field valid <<<"$line")"
done
awk -v a="${ns[1000]}" -v b="${ns[16000]}" \
    'BEGIN { if (a > 0) printf "fan-out 16,000 / 1,000 subscribers        %.2fx\n", b / a }'
echo "# $(uptime)"
