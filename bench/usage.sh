#!/usr/bin/env bash
# The usage log under sustained load: can the store take one record per request
# at the rate the gateway serves, without the writer's buffer growing?
#
#   bench/usage.sh                                  # SQLite, builds the release binary
#   USAGE_STORE=postgres://user@127.0.0.1:5432/db bench/usage.sh
#
# The gateway (the benchmark config, usage log on, written every second) runs on
# CPU 0, the mock and wrk on CPU 1. wrk sends chat requests for USAGE_DURATION
# seconds (default 20) at USAGE_CONNECTIONS (default 50); every second the
# script reads `switchyard_usage_buffer_records` (records waiting in memory) and
# `switchyard_usage_records_written_total` from /metrics. After the load it
# waits for the last records and checks that every answered request has one.
# Prints one line:
#   USAGE store=sqlite requests=N rps=F written=N written_per_s=F max_buffer=N dropped=N spilled=N
# Needs wrk, taskset, curl, python3.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
duration=${USAGE_DURATION:-20}
connections=${USAGE_CONNECTIONS:-50}
key=sk-bench-client-key

# shellcheck source=bench/gateway-config.sh
source "$here/gateway-config.sh"

log() { printf '[usage %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
for tool in wrk taskset curl python3; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done

# shellcheck source=bench/processes.sh
source "$here/processes.sh"
bin=$(bench_binary "$repo")

work=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-usage.XXXXXX")
pids=()
cleanup() {
  local status=$? pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The port a process announced on its first stdout line.
listening() {
  local out=$1 pid=$2 deadline=$((SECONDS + 60))
  while ((SECONDS < deadline)); do
    if [[ -s $out ]]; then
      [[ $(head -n 1 "$out") =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+)$ ]] || die "unexpected: $(head -n 1 "$out")"
      printf '%s\n' "${BASH_REMATCH[1]}"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || die "process $pid exited before listening"
    sleep 0.1
  done
  die "no listening line within 60s"
}

taskset -c 1 "$bin" mock --listen 127.0.0.1:0 --ttft 0s >"$work/mock.out" 2>"$work/mock.err" &
pids+=($!)
mock_port=$(listening "$work/mock.out" "$!")

store=${USAGE_STORE:-sqlite://$work/switchyard.db}
gateway_config "$mock_port" "$key" gpt-4.1 "$work" |
  sed "s#url: sqlite://.*#url: \"$store\"#" >"$work/switchyard.yaml"

RUST_LOG=warn taskset -c 0 "$bin" serve --config "$work/switchyard.yaml" >"$work/gw.out" 2>"$work/gw.err" &
gw_pid=$!
pids+=("$gw_pid")
gw_port=$(listening "$work/gw.out" "$gw_pid")
metrics_url=http://127.0.0.1:$gw_port/metrics

# The value of the unlabelled metric $1 (0 when absent).
metric() {
  curl -s "$metrics_url" | awk -v name="$1" '$1 == name { print $2; found = 1 } END { if (!found) print 0 }'
}

log "store $(sed 's#://.*@#://…@#' <<<"$store"), ${duration}s at concurrency $connections"
taskset -c 1 wrk -t1 -c"$connections" -d"$duration"s -s "$here/chat.lua" \
  "http://127.0.0.1:$gw_port/v1/chat/completions" -- "$here/payloads/chat.json" json "$key" \
  >"$work/wrk.out" 2>&1 &
wrk_pid=$!
max_buffer=0
while kill -0 "$wrk_pid" 2>/dev/null; do
  sleep 1
  buffer=$(metric switchyard_usage_buffer_records)
  buffer=${buffer%.*}
  ((buffer > max_buffer)) && max_buffer=$buffer
done
wait "$wrk_pid" || die "wrk failed: $(cat "$work/wrk.out")"
result=$(grep '^WRK_RESULT ' "$work/wrk.out" | sed 's/^WRK_RESULT //')
requests=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["requests"])' "$result")
rps=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["rps"]))' "$result")

# The last records: wait until every answered request has one (or 30 s).
deadline=$((SECONDS + 30))
written=0
while ((SECONDS < deadline)); do
  written=$(metric switchyard_usage_records_written_total)
  written=${written%.*}
  ((written >= requests)) && break
  sleep 0.5
done
dropped=$(metric switchyard_usage_records_dropped_total)
spilled=$(metric switchyard_usage_records_spilled_total)
per_s=$(python3 -c "print(round($written / $duration))")
echo "USAGE store=${store%%:*} requests=$requests rps=$rps written=$written written_per_s=$per_s max_buffer=$max_buffer dropped=${dropped%.*} spilled=${spilled%.*}"
((written >= requests)) || die "only $written of $requests records were written"
