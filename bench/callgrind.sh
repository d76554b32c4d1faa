#!/usr/bin/env bash
# Instructions per proxied request, under callgrind: deterministic where the
# wall clock is not, so a small change to the request path can be told apart.
#
#   bench/callgrind.sh                      # builds target/release/switchyard first
#   SWITCHYARD_BIN=/path/to/switchyard bench/callgrind.sh
#
# The gateway (auth.mode: keys, the same config as bench/run.sh) runs under
# `valgrind --tool=callgrind --instr-atstart=no` pinned to CPU 0, the mock and
# wrk on CPU 1. For JSON and for streaming chat, a warm-up runs first without
# instrumentation; then instrumentation is switched on for a fixed
# `wrk -t1 -c10 -d6s` run, switched off and dumped, and the instructions
# counted are divided by the requests wrk reports. Prints one line per mode:
#   CALLGRIND json instructions_per_request=N requests=N
# CALLGRIND_CACHE=miss turns the response cache on (bench/run.sh's cache block)
# and sends a different body with every request, so each is a miss that is
# stored; CALLGRIND_CACHE=hit turns it on with the same body every time. For
# the miss's baseline, CALLGRIND_VARY=1 sends the varying bodies with the cache
# off. CALLGRIND_USAGE=off turns the usage log off (it is on by default, as in
# the product). CALLGRIND_STORE=postgres://… puts the store (and the usage
# log) in that database instead of a SQLite file (a fresh database each run:
# the records and rollups of earlier runs stay in it). CALLGRIND_MODES picks
# the modes (default "json stream"). CALLGRIND_TRACES=on turns traces on
# (every request sampled), exported every second to a collector on CPU 1 that
# takes them (a stand-in answering 200 to every OTLP/HTTP post).
# CALLGRIND_KEY picks the caller: `configured` (default: the key of `keys:`,
# which no limit applies to), `open` (auth.mode open, no key sent), or a
# virtual key from the store: `virtual` (no limits), `limits` (requests and
# tokens per minute on), `budget` (those and a monthly budget: the full stack
# of bench/run.sh's virtual key). Limits are far above the load: every check
# runs, none refuses.
# and leaves the dumps in $CALLGRIND_OUT (default bench/out/callgrind) for
# `callgrind_annotate --inclusive=yes`. Needs valgrind, wrk, taskset, python3.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
duration=${CALLGRIND_DURATION:-6}
out=${CALLGRIND_OUT:-$repo/bench/out/callgrind}
key=sk-bench-client-key
cache=${CALLGRIND_CACHE:-off}
vary=${CALLGRIND_VARY:-}
usage=${CALLGRIND_USAGE:-on}
modes=${CALLGRIND_MODES:-json stream}
store=${CALLGRIND_STORE:-}
client=${CALLGRIND_KEY:-configured}
traces=${CALLGRIND_TRACES:-off}

# shellcheck source=bench/gateway-config.sh
source "$here/gateway-config.sh"

log() { printf '[callgrind %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
for tool in valgrind callgrind_control wrk taskset python3; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done

# shellcheck source=bench/processes.sh
source "$here/processes.sh"
bin=$(bench_binary "$repo")
[[ -x $bin ]] || die "no executable switchyard binary at $bin"
case $cache in
  off | hit) ;;
  miss) vary=1 ;;
  *) die "CALLGRIND_CACHE must be off, miss or hit, not '$cache'" ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-callgrind.XXXXXX")
mkdir -p "$out"
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
  local out=$1 pid=$2 deadline=$((SECONDS + 120))
  while ((SECONDS < deadline)); do
    if [[ -s $out ]]; then
      [[ $(head -n 1 "$out") =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+)$ ]] || die "unexpected: $(head -n 1 "$out")"
      printf '%s\n' "${BASH_REMATCH[1]}"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || die "process $pid exited before listening"
    sleep 0.1
  done
  die "no listening line within 120s"
}

taskset -c 1 "$bin" mock --listen 127.0.0.1:0 --ttft 0s >"$work/mock.out" 2>"$work/mock.err" &
pids+=($!)
mock_port=$(listening "$work/mock.out" "$!")

if [[ $traces == on ]]; then
  taskset -c 1 python3 -c '
import http.server, sys
class Collector(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Collector)
print(f"listening on 127.0.0.1:{server.server_port}", flush=True)
server.serve_forever()' >"$work/collector.out" 2>"$work/collector.err" &
  pids+=($!)
  collector_port=$(listening "$work/collector.out" "$!")
fi

{
  gateway_config "$mock_port" sk-bench-client-key gpt-4.1 "$work" \
    | if [[ $client == open ]]; then sed 's/mode: keys/mode: open/'; else cat; fi
  [[ $cache == off ]] || gateway_cache_config
  [[ $usage == on ]] || gateway_usage_off_config
  if [[ $traces == on ]]; then
    printf 'telemetry:\n  traces:\n    endpoint: http://127.0.0.1:%s/v1/traces\n    flush_interval: 1s\n' "$collector_port"
  fi
} | if [[ -n $store ]]; then sed "s#url: sqlite://.*#url: \"$store\"#"; else cat; fi >"$work/switchyard.yaml"

key_flags=()
case $client in
  configured) ;;
  open) key="" ;;
  virtual) ;;
  limits) key_flags=(--rpm 1000000000 --tpm 1000000000) ;;
  budget) key_flags=(--rpm 1000000000 --tpm 1000000000 --budget-usd 1000000000 --budget-period month) ;;
  *) die "CALLGRIND_KEY must be configured, open, virtual, limits or budget, not '$client'" ;;
esac
if [[ $client == virtual || $client == limits || $client == budget ]]; then
  [[ -z $store ]] || die "CALLGRIND_KEY=$client makes its key in the SQLite store only"
  key=$("$bin" keys create --name bench --store "sqlite://$work/switchyard.db" "${key_flags[@]}" 2>/dev/null) \
    || die "could not create the virtual key"
fi

RUST_LOG=${RUST_LOG:-info} taskset -c 0 valgrind --tool=callgrind --instr-atstart=no \
  --callgrind-out-file="$out/callgrind.out.%p" \
  "$bin" serve --config "$work/switchyard.yaml" >"$work/gw.out" 2>"$work/gw.err" &
gw_pid=$!
pids+=("$gw_pid")
gw_port=$(listening "$work/gw.out" "$gw_pid")
url=http://127.0.0.1:$gw_port/v1/chat/completions

# Runs wrk for $2 seconds in mode $1 (bodies tagged $3 when they vary); prints
# the requests it counted.
load() {
  taskset -c 1 wrk -t1 -c10 -d"$2"s -s "$here/chat.lua" "$url" -- "$here/payloads/chat.json" "$1" "$key" ${vary:+"$3"} \
    | python3 -c 'import json,sys
for line in sys.stdin:
    if line.startswith("WRK_RESULT "):
        r = json.loads(line[len("WRK_RESULT "):])
        bad = sum(v for k, v in r.items() if k.startswith("errors_"))
        sys.exit(f"wrk saw {bad} errors") if bad else print(r["requests"])'
}

# The usage log and the trace exporter write what their requests queued once a
# second: the window starts once the warm-up's records are written and ends once
# its own are, so that it counts one record (and one trace) per request.
settle=${CALLGRIND_SETTLE:-1.5}
for mode in $modes; do
  load "$mode" 2 "warmup-$mode" >/dev/null 2>&1
  sleep "$settle"
  callgrind_control -z "$gw_pid" >/dev/null 2>&1
  callgrind_control -i on "$gw_pid" >/dev/null 2>&1
  requests=$(load "$mode" "$duration" "run-$mode")
  sleep "$settle"
  callgrind_control -i off "$gw_pid" >/dev/null 2>&1
  callgrind_control -d "$mode" "$gw_pid" >/dev/null 2>&1
  dump=$(ls -t "$out"/callgrind.out."$gw_pid"* | head -n 1)
  total=$(awk '/^(summary|totals):/ { n = $2 } END { print n }' "$dump")
  [[ -n $total && $requests -gt 0 ]] || die "no instruction count in $dump"
  echo "CALLGRIND $mode instructions_per_request=$((total / requests)) requests=$requests dump=$dump"
done
