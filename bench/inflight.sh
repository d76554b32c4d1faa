#!/usr/bin/env bash
# Resident memory per request in flight: N slow requests at once (the mock
# answers after 2 s), the gateway's VmRSS before, at its peak, and 10 s after the load (the last requests end, and idle workers give the memory back).
#
#   bench/inflight.sh 2000            # builds target/release/switchyard first
#   SWITCHYARD_BIN=… bench/inflight.sh 8000
#
# Needs wrk and taskset, and a descriptor limit above N (`ulimit -n`).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
n=${1:?usage: bench/inflight.sh CONNECTIONS}
[[ $n =~ ^[0-9]+$ && $n -gt 0 ]] || { echo "CONNECTIONS must be a positive integer" >&2; exit 1; }
(( $(ulimit -n) > n + 100 )) || ulimit -n $((n * 2 + 1000)) || {
  echo "raise the descriptor limit above $n first (ulimit -n)" >&2; exit 1; }
if [[ -n ${SWITCHYARD_BIN:-} ]]; then
  bin=$SWITCHYARD_BIN
else
  (cd "$repo" && cargo build --release -p switchyard)
  bin=$repo/target/release/switchyard
fi

# shellcheck source=bench/processes.sh
source "$here/processes.sh"
bench_work inflight
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

taskset -c 1 "$bin" mock --listen 127.0.0.1:0 --latency 2s >"$work/mock.out" 2>/dev/null &
pids+=($!)
mock_port=$(port_of "$work/mock.out")
cat >"$work/gateway.yaml" <<YAML
server: { listen: "127.0.0.1:0" }
store: { url: "sqlite://$work/switchyard.db" }
auth: { mode: keys }
keys: [{ name: bench, key: sk-bench }]
admission: { max_in_flight: $((n * 2)), max_queue: 0 }
providers: { up: { kind: openai, base_url: "http://127.0.0.1:$mock_port/v1", api_key: k } }
models: { gpt-4.1: { deployments: [{ provider: up, model: mock-1 }] } }
YAML
RUST_LOG=warn taskset -c 0 "$bin" serve --config "$work/gateway.yaml" >"$work/gateway.out" 2>/dev/null &
gateway=$!
pids+=("$gateway")
gateway_port=$(port_of "$work/gateway.out")
idle=$(rss_kb "$gateway")
taskset -c 1 wrk -t2 -c"$n" -d8s --timeout 10s -s "$here/chat.lua" \
  "http://127.0.0.1:$gateway_port/v1/chat/completions" -- "$here/payloads/chat.json" json sk-bench \
  >"$work/wrk.out" 2>&1 &
load=$!
peak=$idle
for _ in $(seq 40); do
  sleep 0.2
  rss=$(rss_kb "$gateway")
  ((rss > peak)) && peak=$rss
done
wait "$load" || true
sleep 10
echo "INFLIGHT connections=$n idle_kb=$idle peak_kb=$peak after_kb=$(rss_kb "$gateway") per_request_kb=$(((peak - idle) / n))"
grep -o '"requests":[0-9]*' "$work/wrk.out" || true
