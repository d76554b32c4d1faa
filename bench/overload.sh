#!/usr/bin/env bash
# Overload: what shedding costs the requests that are accepted, how fast the
# shed ones are answered, and the memory a request in flight holds.
#
#   bench/overload.sh                    # builds the release binary and the load generator
#   SWITCHYARD_BIN=… OVERLOAD_CLIENT=… bench/overload.sh
#
# 1. Latency: the mock answers after 50 ms; the gateway (CPU 0) admits 200
#    requests at once with no queue. The load generator (examples/overload.rs,
#    CPU 1 with the mock) runs 100 closed-loop clients (half the limit:
#    unloaded), then 600 (three times the limit: a client waits 50 ms after a
#    503), then 600 retrying a 503 at once, 10 s each, and reports the
#    200s and the 503s apart.
# 2. Memory: bench/inflight.sh at 2,000 and 8,000 slow requests in flight.
#
# Prints the Markdown section kept in bench/overload.md (BENCHMARKS.md includes
# it). Needs wrk, taskset, python3, and descriptors to spare (run as root or
# with `ulimit -n` above 20000).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
duration=${OVERLOAD_DURATION:-10}
limit=200
key=sk-bench-client-key

# shellcheck source=bench/gateway-config.sh
source "$here/gateway-config.sh"

log() { printf '[overload %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
for tool in wrk taskset python3; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done
ulimit -n 20000 2>/dev/null || (( $(ulimit -n) >= 20000 )) || die "raise the descriptor limit to 20000 (ulimit -n)"

if [[ -z ${SWITCHYARD_BIN:-} || -z ${OVERLOAD_CLIENT:-} ]]; then
  # Apart: an example brings in the dev-dependencies' features (tokio's
  # test-util), which must not reach the binary measured.
  (cd "$repo" && cargo build --release -p switchyard && cargo build --release -p switchyard --example overload)
fi
bin=${SWITCHYARD_BIN:-$repo/target/release/switchyard}
client=${OVERLOAD_CLIENT:-$repo/target/release/examples/overload}
[[ -x $bin && -x $client ]] || die "no switchyard binary at $bin or load generator at $client"

# shellcheck source=bench/processes.sh
source "$here/processes.sh"
bench_work overload

taskset -c 1 "$bin" mock --listen 127.0.0.1:0 --latency 50ms >"$work/mock.out" 2>/dev/null &
pids+=($!)
mock_port=$(port_of "$work/mock.out")
{
  gateway_config "$mock_port" "$key" gpt-4.1 "$work"
  printf 'admission: { max_in_flight: %d, max_queue: 0 }\n' "$limit"
} >"$work/gateway.yaml"
RUST_LOG=warn taskset -c 0 "$bin" serve --config "$work/gateway.yaml" >"$work/gateway.out" 2>/dev/null &
pids+=($!)
gateway_port=$(port_of "$work/gateway.out")

load() { # CLIENTS SHED_PAUSE_MS [SECONDS] → one JSON line
  taskset -c 1 "$client" --url "http://127.0.0.1:$gateway_port/v1/chat/completions" \
    --body "$here/payloads/chat.json" --key "$key" --clients "$1" --shed-pause "$2" \
    --duration "${3:-$duration}"
}
log "warm-up"
load 50 0 2 >/dev/null
log "unloaded: $((limit / 2)) clients"
unloaded=$(load $((limit / 2)) 50)
log "three times the limit: $((limit * 3)) clients, 50 ms between a 503 and the next request"
overloaded=$(load $((limit * 3)) 50)
log "three times the limit: $((limit * 3)) clients, no pause after a 503"
hammered=$(load $((limit * 3)) 0)

inflight() { # N → "per_request_kb idle_kb peak_kb after_kb"
  SWITCHYARD_BIN=$bin "$here/inflight.sh" "$1" |
    sed -n 's/^INFLIGHT connections=[0-9]* idle_kb=\([0-9]*\) peak_kb=\([0-9]*\) after_kb=\([0-9]*\) per_request_kb=\([0-9]*\)$/\4 \1 \2 \3/p'
}
log "2,000 slow requests in flight"
mem2k=$(inflight 2000)
log "8,000 slow requests in flight"
mem8k=$(inflight 8000)

python3 - "$unloaded" "$overloaded" "$hammered" "$mem2k" "$mem8k" "$limit" "$duration" "$(git -C "$repo" rev-parse --short=12 HEAD)" <<'PY'
import json, sys
unloaded, overloaded, hammered = (json.loads(a) for a in sys.argv[1:4])
mem = {2000: sys.argv[4].split(), 8000: sys.argv[5].split()}
limit, duration, commit = int(sys.argv[6]), sys.argv[7], sys.argv[8]
ms = lambda us: f"{us / 1000:.1f} ms"
none = {"count": 0, "p50_us": 0, "p99_us": 0, "max_us": 0}
ok_u, ok_o = unloaded["statuses"]["200"], overloaded["statuses"]["200"]
shed = overloaded["statuses"].get("503", none)
runs = [unloaded, overloaded, hammered]
other = sum(v["count"] for r in runs for k, v in r["statuses"].items() if k not in ("200", "503"))
failed = sum(r["failed"] for r in runs)

def row(label, run):
    ok, shed = run["statuses"].get("200", none), run["statuses"].get("503", none)
    cells = [label, str(ok["count"]), ms(ok["p50_us"]), ms(ok["p99_us"]), ms(ok["max_us"]), str(shed["count"])]
    cells += [ms(shed[k]) for k in ("p50_us", "p99_us", "max_us")] if shed["count"] else ["", "", ""]
    return "| " + " | ".join(cells) + " |"
print(f"""## Overload (bench/overload.sh)

Kept by hand, like the instruction counts: `bench/overload.sh` at commit {commit}, on the
machine above. The mock answers after 50 ms; the gateway (CPU 0) admits {limit} requests at
once with no queue; `examples/overload.rs` (CPU 1, with the mock) runs closed-loop clients
for {duration} s, each sending its next request when it has its answer, or 50 ms after a
503: with {limit * 3} clients that offers about three times what the gateway admits. The
last row has the shed clients retry at once instead, a harsher load than real clients make
(their SDKs wait out `retry-after`), where the one core answers tens of thousands of 503s a
second.

| load | answered 200 | p50 | p99 | max | shed 503 | shed p50 | shed p99 | shed max |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
{row(f"{unloaded['clients']} clients (half the limit)", unloaded)}
{row(f"{overloaded['clients']} clients (three times the limit)", overloaded)}
{row(f"{hammered['clients']} clients, retrying a 503 at once", hammered)}

Accepted p99 under three times the limit: {ok_o['p99_us'] / ok_u['p99_us']:.2f}× the unloaded p99 (goal: under 2×);
shed p99: {ms(shed['p99_us'])} (goal: under 20 ms). Other statuses: {other or 'none'}; requests
without an answer: {failed}.

Resident memory per request in flight (`bench/inflight.sh N`: N slow requests at once, the mock
answering after 2 s; VmRSS before, at the peak, and 10 s after the load):

| in flight | idle | peak | 10 s after | per request |
| ---: | ---: | ---: | ---: | ---: |""")
for n, (per, idle, peak, after) in mem.items():
    print(f"| {n:,} | {int(idle) / 1024:.1f} MB | {int(peak) / 1024:.1f} MB | {int(after) / 1024:.1f} MB | {per} KB |")
PY
