#!/usr/bin/env bash
# Load benchmark: Switchyard against nginx `proxy_pass`, both in front of the same
# `switchyard mock`, side by side in one run. Writes BENCHMARKS.md. See bench/README.md.
#
# Environment (all optional):
#   SWITCHYARD_BIN        binary to measure (default: build target/release/switchyard)
#   BENCH_DURATION        seconds per measured wrk run (default 10)
#   BENCH_WARMUP          seconds of unmeasured wrk load before each run (default 2)
#   BENCH_CONNECTIONS     the high concurrency (default 50)
#   BENCH_TTFT_REQUESTS   sequential streams per target for time to first token (default 300)
#   BENCH_ROUNDS          rounds of every measurement, targets back to back in each; the
#                         report takes the median round (default 5)
#   BENCH_OUTPUT          the report to write (default BENCHMARKS.md at the repo root)
#   BENCH_RAW_DIR         where raw results, configs and logs are copied (default bench/out)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

duration=${BENCH_DURATION:-10}
warmup=${BENCH_WARMUP:-2}
connections=${BENCH_CONNECTIONS:-50}
ttft_requests=${BENCH_TTFT_REQUESTS:-300}
rounds=${BENCH_ROUNDS:-5}
output=${BENCH_OUTPUT:-$repo/BENCHMARKS.md}
raw_dir=${BENCH_RAW_DIR:-$repo/bench/out}
body=$here/payloads/chat.json
key=sk-bench-client-key
model=gpt-4.1
start_timeout=30

# shellcheck source=bench/gateway-config.sh
source "$here/gateway-config.sh"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for value in "$duration" "$warmup" "$connections" "$ttft_requests" "$rounds"; do
  [[ $value =~ ^[0-9]+$ && $value -gt 0 ]] || die "BENCH_* values must be positive integers, got '$value'"
done
for tool in wrk nginx taskset python3 curl redis-server redis-cli runuser; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done

# Proxy under test on CPU 0; load generator, mock and TTFT client on CPU 1.
if [[ $(nproc) -ge 2 ]]; then
  proxy_cpu=(taskset -c 0)
  load_cpu=(taskset -c 1)
  pinning="proxy under test on CPU 0; wrk, mock and TTFT client on CPU 1"
else
  log "warning: fewer than 2 CPUs, running unpinned"
  proxy_cpu=()
  load_cpu=()
  pinning="none (fewer than 2 CPUs)"
fi

# === build ===

# The commit the binary is built from, taken before the build: the report names
# it, not whatever the tree holds when the run ends.
built_from=$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo "no commit yet")
[[ -z $(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null) ]] ||
  built_from+=" (with uncommitted changes)"
if [[ -n ${SWITCHYARD_BIN:-} ]]; then
  bin=$SWITCHYARD_BIN
else
  log "building: cargo build --release -p switchyard"
  (cd "$repo" && cargo build --release -p switchyard)
  bin=$repo/target/release/switchyard
fi
[[ -x $bin ]] || die "no executable switchyard binary at $bin"

# === processes, and their cleanup ===

work=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-bench.XXXXXX")
pids=()

cleanup() {
  local status=$? pid
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n ${pg_ctl:-} ]]; then
    "${pg_as[@]}" "$pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [[ $status -ne 0 ]]; then
    for f in "$work"/*.err "$work"/nginx/error.log; do
      [[ -s $f ]] && { log "--- tail of $f"; tail -n 20 "$f" >&2; }
    done
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits for the one `listening on 127.0.0.1:PORT` stdout line; prints PORT.
wait_listening() {
  local name=$1 pid=$2 out=$3 deadline=$((SECONDS + start_timeout)) line
  while ((SECONDS < deadline)); do
    if [[ -s $out && $(wc -l <"$out") -ge 1 ]]; then
      line=$(head -n 1 "$out")
      [[ $line =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+)$ ]] || die "$name printed '$line', not 'listening on 127.0.0.1:PORT'"
      printf '%s\n' "${BASH_REMATCH[1]}"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || die "$name exited before listening"
    sleep 0.05
  done
  die "$name did not print its listening line within ${start_timeout}s"
}

# Waits until something accepts TCP connections on 127.0.0.1:PORT.
wait_port() {
  local name=$1 pid=$2 port=$3 deadline=$((SECONDS + start_timeout))
  while ((SECONDS < deadline)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || die "$name exited before listening"
    sleep 0.05
  done
  die "$name did not listen on port $port within ${start_timeout}s"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# CPU time (clock ticks, user + system) used so far by the given PIDs.
cpu_ticks() {
  local pid stat total=0
  local -a fields
  for pid in "$@"; do
    stat=$(<"/proc/$pid/stat")
    read -ra fields <<<"${stat##*) }"
    total=$((total + fields[11] + fields[12]))
  done
  printf '%s\n' "$total"
}

# Resident set (kB) from /proc/PID/status: field is VmRSS or VmHWM.
mem_kb() {
  awk -v field="$2:" '$1 == field { print $2 }' "/proc/$1/status"
}

log "work dir $work"

"${load_cpu[@]}" "$bin" mock --listen 127.0.0.1:0 --ttft 0s >"$work/mock.out" 2>"$work/mock.err" &
mock_pid=$!
pids+=("$mock_pid")
mock_port=$(wait_listening mock "$mock_pid" "$work/mock.out")
log "mock on port $mock_port (pid $mock_pid)"

mkdir -p "$work/nginx"
nginx_port=$(free_port)
nginx_config "$mock_port" "$nginx_port" "$work" >"$work/nginx.conf"
"${proxy_cpu[@]}" nginx -p "$work/nginx/" -c "$work/nginx.conf" -e "$work/nginx/error.log" \
  >"$work/nginx.out" 2>"$work/nginx.err" &
nginx_pid=$!
pids+=("$nginx_pid")
wait_port nginx "$nginx_pid" "$nginx_port"
log "nginx on port $nginx_port (pid $nginx_pid)"

gateway_config "$mock_port" "$key" "$model" "$work" >"$work/switchyard.yaml"
# A virtual key with every check on (limits far above the load: measured, never hit).
virtual_key=$("$bin" keys create --name bench --store "sqlite://$work/switchyard.db" \
  --rpm 1000000000 --tpm 1000000000 --budget-usd 1000000000 --budget-period month 2>/dev/null) \
  || die "could not create the virtual key"
# start_gateway TARGET: starts a gateway on $work/TARGET.yaml, on the proxy's CPU;
# notes its PID and port in gw_pid and gw_port.
declare -A gw_pid gw_port
start_gateway() {
  local target=$1
  "${proxy_cpu[@]}" "$bin" serve --config "$work/$target.yaml" >"$work/$target.out" 2>"$work/$target.err" &
  gw_pid[$target]=$!
  pids+=("$!")
  gw_port[$target]=$(wait_listening "$target" "${gw_pid[$target]}" "$work/$target.out")
  log "$target on port ${gw_port[$target]} (pid ${gw_pid[$target]})"
}
start_gateway switchyard

# The same gateway config with the usage log off, for the log's cost (its own store file).
{ sed "s|sqlite://$work/switchyard.db|sqlite://$work/switchyard-usage-off.db|" "$work/switchyard.yaml"
  gateway_usage_off_config; } >"$work/switchyard-usage-off.yaml"
start_gateway switchyard-usage-off

# The same gateway config with the store (and so the usage log) in PostgreSQL: a
# private server in the work directory, on the load generator's CPU, its data
# thrown away (no fsync; the gateway's side of a write is the same either way).
pg_bin=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
[[ -x $pg_bin/initdb ]] || die "PostgreSQL is not installed (sudo apt-get install -y postgresql)"
pg_as=()
[[ $(id -u) -eq 0 ]] && pg_as=(runuser -u postgres --)
chmod 755 "$work"
install -d -m 700 ${pg_as:+-o postgres} "$work/pg"
"${pg_as[@]}" "$pg_bin/initdb" -D "$work/pg" -A trust -U switchyard -E UTF8 --no-sync >"$work/initdb.out" 2>&1 \
  || die "initdb failed: $(tail -n 5 "$work/initdb.out")"
pg_port=$(free_port)
pg_ctl=$pg_bin/pg_ctl
"${load_cpu[@]}" "${pg_as[@]}" "$pg_ctl" -D "$work/pg" -l "$work/pg/server.log" -w -t 30 \
  -o "-h 127.0.0.1 -p $pg_port -k $work/pg -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
  start >/dev/null || die "PostgreSQL did not start: $(tail -n 5 "$work/pg/server.log")"
log "postgresql on port $pg_port"
sed "s|url: sqlite://$work/switchyard.db|url: postgres://switchyard@127.0.0.1:$pg_port/postgres|" \
  "$work/switchyard.yaml" >"$work/switchyard-usage-pg.yaml"
start_gateway switchyard-usage-pg

# The same gateway config with the limits in Redis (on the load generator's CPU).
redis_port=$(free_port)
"${load_cpu[@]}" redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
  --dir "$work" >"$work/redis.out" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
{ cat "$work/switchyard.yaml"; printf 'redis:\n  url: redis://127.0.0.1:%s\n  prefix: bench\n' "$redis_port"; } \
  >"$work/switchyard-redis.yaml"
start_gateway switchyard-redis

# The same gateway config with the response cache on, in memory, twice: one gateway is
# sent the same body every time (every request after the first a hit), the other a
# different body every time (every request a miss, proxied and then stored).
for target in switchyard-cache-hit switchyard-cache-miss; do
  { cat "$work/switchyard.yaml"; gateway_cache_config; } >"$work/$target.yaml"
  start_gateway "$target"
done

gateway_idle_kb=$(mem_kb "${gw_pid[switchyard]}" VmRSS)
declare -A cache_idle_kb=(
  [switchyard-cache-hit]=$(mem_kb "${gw_pid[switchyard-cache-hit]}" VmRSS)
  [switchyard-cache-miss]=$(mem_kb "${gw_pid[switchyard-cache-miss]}" VmRSS)
)
nginx_worker_pid=$(pgrep -P "$nginx_pid" | head -n 1)
[[ -n $nginx_worker_pid ]] || die "no nginx worker process"
nginx_idle_kb=$(($(mem_kb "$nginx_pid" VmRSS) + $(mem_kb "$nginx_worker_pid" VmRSS)))

declare -A target_pids=([mock]="$mock_pid" [nginx]="$nginx_pid $nginx_worker_pid")
declare -A url=(
  [mock]="http://127.0.0.1:$mock_port/v1/chat/completions"
  [nginx]="http://127.0.0.1:$nginx_port/v1/chat/completions"
)
for target in "${!gw_pid[@]}"; do
  target_pids[$target]=${gw_pid[$target]}
  url[$target]="http://127.0.0.1:${gw_port[$target]}/v1/chat/completions"
done
# The keys target is the default gateway sent the virtual key.
target_pids[switchyard-keys]=${gw_pid[switchyard]}
url[switchyard-keys]=${url[switchyard]}
# The client key each target is sent (the configured key, or the virtual one).
declare -A key_of=(
  [mock]="$key" [nginx]="$key" [switchyard]="$key" [switchyard-usage-off]="$key" [switchyard-usage-pg]="$key"
  [switchyard-keys]="$virtual_key" [switchyard-redis]="$virtual_key"
  [switchyard-cache-hit]="$key" [switchyard-cache-miss]="$key"
)
# Targets sent a different body with every request (chat.lua's VARY_TAG: the last user
# message ends in a tag and a counter); every other target gets the same body each time.
declare -A varies=([switchyard-cache-miss]=1)
targets=(mock nginx switchyard switchyard-usage-off switchyard-usage-pg switchyard-keys switchyard-redis switchyard-cache-hit
  switchyard-cache-miss)
# Time to first token is measured on the first three and the full stack.
ttft_targets=(mock nginx switchyard switchyard-keys)

# === sanity: every target answers 200, JSON and streaming, before anything is timed ===

# sanity_request TARGET MODE [TRY]: one request of the body wrk sends (a varying target's
# tagged `sanity-MODE`); dies unless it is answered 200 (a stream ending in [DONE]).
# Prints the answer's x-switchyard-cache header (empty without one).
sanity_request() {
  local target=$1 mode=$2 try=${3:-} tag="" request status out
  [[ -n ${varies[$target]:-} ]] && tag="sanity-$mode"
  out=$work/sanity-$target-$mode$try
  request=$(python3 -c '
import json, sys
b = json.load(open(sys.argv[1]))
b["stream"] = sys.argv[2] == "stream"
if sys.argv[3]:
    [m for m in b["messages"] if m["role"] == "user"][-1]["content"] += f" ({sys.argv[3]})"
print(json.dumps(b))' "$body" "$mode" "$tag")
  status=$(curl -sS -o "$out.txt" -D "$out-headers.txt" -w '%{http_code}' --max-time 10 \
    -H 'content-type: application/json' -H "authorization: Bearer ${key_of[$target]}" --data-binary "$request" "${url[$target]}") \
    || die "$target ($mode) did not answer"
  [[ $status == 200 ]] || die "$target ($mode) answered $status: $(head -c 300 "$out.txt")"
  if [[ $mode == stream ]]; then
    grep -q '^data: \[DONE\]' "$out.txt" || die "$target stream did not end with [DONE]"
  fi
  awk 'tolower($1) == "x-switchyard-cache:" { print $2 }' "$out-headers.txt" | tr -d '\r'
}

for target in "${targets[@]}"; do
  for mode in json stream; do
    cached=$(sanity_request "$target" "$mode")
    if [[ $target == switchyard-cache-miss && $cached != miss ]]; then
      die "$target ($mode) answered x-switchyard-cache '$cached', not miss"
    fi
  done
done
# The cache-hit target's answer is stored as its first request ends; from then on the
# same body (JSON or streamed, whitespace and key order aside) must hit.
for try in $(seq 50); do
  cached=$(sanity_request switchyard-cache-hit json "-$try")
  [[ $cached == hit ]] && break
  ((try < 50)) || die "switchyard-cache-hit still answers x-switchyard-cache '$cached' after $try tries"
  sleep 0.1
done
log "all targets answer JSON and streams; the cache targets hit and miss"

# === load ===

results=$work/results.jsonl
: >"$results"
info() { python3 -c 'import json, sys; print(json.dumps({"kind": "info", "key": sys.argv[1], "value": sys.argv[2]}))' "$1" "$2" >>"$results"; }
info wrk_version "$(wrk --version 2>&1 | head -n 1 | awk '{print $2}')"
info nginx_version "$(nginx -v 2>&1 | sed 's/^nginx version: //')"
info body_bytes "$(wc -c <"$body" | tr -d ' ')"
info pinning "$pinning"
info rust_log "${RUST_LOG:-(unset)}"
info commit "$built_from"
info loadavg_start "$(cut -d ' ' -f 1-3 /proc/loadavg)"
clk_tck=$(getconf CLK_TCK)

# CPU time (clock ticks) used so far by this shell's waited-for children: wrk's, once
# it has exited (no fork here, so the reading adds nothing of its own).
children_ticks() {
  local stat
  local -a fields
  read -r stat <"/proc/$$/stat"
  read -ra fields <<<"${stat##*) }"
  children_ticks_now=$((fields[13] + fields[14]))
}

# run_wrk ROUND SCENARIO TARGET MODE CONNECTIONS
run_wrk() {
  local round=$1 scenario=$2 target=$3 mode=$4 conns=$5 raw line ticks_before ticks_after load_before
  local -a common=(-t1 "-c$conns" --timeout 5s -s "$here/chat.lua") pids_of_target
  # A varying target's bodies are tagged by run, so no run repeats another's.
  local tag=${varies[$target]:+$scenario-round$round}
  read -ra pids_of_target <<<"${target_pids[$target]}"
  timeout $((warmup + 30)) "${load_cpu[@]}" wrk "${common[@]}" -d "${warmup}s" "${url[$target]}" \
    -- "$body" "$mode" "${key_of[$target]}" ${tag:+"$tag-warmup"} >/dev/null
  raw=$work/wrk-$scenario-$target-round$round.txt
  # The cache-hit target's access log from here on: its own time to answer a hit.
  local log_from served='{}'
  [[ $target == switchyard-cache-hit ]] && log_from=$(stat -c %s "$work/$target.err")
  ticks_before=$(cpu_ticks "${pids_of_target[@]}")
  children_ticks
  load_before=$children_ticks_now
  timeout $((duration + 30)) "${load_cpu[@]}" wrk "${common[@]}" -d "${duration}s" --latency "${url[$target]}" \
    -- "$body" "$mode" "${key_of[$target]}" ${tag:+"$tag"} >"$raw"
  children_ticks
  ticks_after=$(cpu_ticks "${pids_of_target[@]}")
  line=$(sed -n 's/^WRK_RESULT //p' "$raw")
  [[ -n $line ]] || die "no WRK_RESULT line from wrk for $scenario/$target (see $raw)"
  if [[ -n ${log_from:-} ]]; then
    sleep 0.2 # the access log is written off the workers; let its last lines land
    served=$(python3 "$here/served.py" "$work/$target.err" "$log_from" hit)
  fi
  python3 -c 'import json, sys; r = json.loads(sys.argv[1]); r.update(json.loads(sys.argv[8])); r.update(kind="wrk", round=int(sys.argv[2]), scenario=sys.argv[3], target=sys.argv[4], cpu_s=int(sys.argv[5]) / int(sys.argv[7]), load_cpu_s=int(sys.argv[6]) / int(sys.argv[7])); print(json.dumps(r))' \
    "$line" "$round" "$scenario" "$target" "$((ticks_after - ticks_before))" "$((children_ticks_now - load_before))" \
    "$clk_tck" "$served" >>"$results"
  log "$(printf 'round %s %-10s %-10s %s' "$round" "$scenario" "$target" "$line")"
}

# run_ttft ROUND TARGET
run_ttft() {
  local round=$1 target=$2 line
  line=$(timeout 300 "${load_cpu[@]}" python3 "$here/ttft.py" "${url[$target]}" --body "$body" --key "${key_of[$target]}" \
    -n "$ttft_requests") || die "ttft.py failed against $target: $line"
  python3 -c 'import json, sys; r = json.loads(sys.argv[1]); r.update(kind="ttft", round=int(sys.argv[2]), target=sys.argv[3]); print(json.dumps(r))' \
    "$line" "$round" "$target" >>"$results"
  log "$(printf 'round %s %-10s %-10s %s' "$round" ttft "$target" "$line")"
}

# Every round measures each scenario on every target back to back, so a burst of
# noise from elsewhere on the machine hits one round of a pair, not one target.
for round in $(seq "$rounds"); do
  for scenario in json-c1 "json-c$connections" stream-c1 "stream-c$connections"; do
    mode=${scenario%%-*}
    conns=${scenario##*-c}
    for target in "${targets[@]}"; do
      run_wrk "$round" "$scenario" "$target" "$mode" "$conns"
    done
  done
  for target in "${ttft_targets[@]}"; do
    run_ttft "$round" "$target"
  done
done

info loadavg_end "$(cut -d ' ' -f 1-3 /proc/loadavg)"
# Script calls Redis served: one per request decides; settlements (tokens and
# budgets) follow in pipelined batches.
info redis_evalsha "$(redis-cli -p "$redis_port" INFO commandstats | grep '^cmdstat_evalsha' | tr -d '\r')"
info gateway_log_bytes "$(wc -c <"$work/switchyard.err" | tr -d ' ')"
# What each cache gateway made of the requests it was sent, from its /metrics (JSON).
for target in switchyard-cache-hit switchyard-cache-miss; do
  counts=$(curl -sS --max-time 10 "http://127.0.0.1:${gw_port[$target]}/metrics" | python3 -c '
import json, re, sys
counts = {}
for line in sys.stdin:
    m = re.match(r"switchyard_cache_(requests|fills)_total\{[^}]*result=\"(\w+)\"[^}]*\} (\S+)$", line.strip())
    if m:
        counts[m[2] if m[1] == "requests" else "fill_" + m[2]] = int(float(m[3]))
print(json.dumps(counts))') || die "could not read $target's /metrics"
  info "${target}_counts" "$counts"
done

# === memory ===

rss_line() { # PROCESS IDLE_KB END_KB PEAK_KB
  printf '{"kind": "rss", "process": "%s", "idle_kb": %d, "end_kb": %d, "peak_kb": %d}\n' "$1" "$2" "$3" "$4" >>"$results"
}
rss_line switchyard "$gateway_idle_kb" "$(mem_kb "${gw_pid[switchyard]}" VmRSS)" "$(mem_kb "${gw_pid[switchyard]}" VmHWM)"
rss_line nginx "$nginx_idle_kb" \
  "$(($(mem_kb "$nginx_pid" VmRSS) + $(mem_kb "$nginx_worker_pid" VmRSS)))" \
  "$(($(mem_kb "$nginx_pid" VmHWM) + $(mem_kb "$nginx_worker_pid" VmHWM)))"
for target in switchyard-cache-hit switchyard-cache-miss; do
  rss_line "$target" "${cache_idle_kb[$target]}" "$(mem_kb "${gw_pid[$target]}" VmRSS)" \
    "$(mem_kb "${gw_pid[$target]}" VmHWM)"
done

# === report ===

command="bench/run.sh"
[[ $duration == 10 ]] || command="BENCH_DURATION=$duration $command"
[[ $rounds == 5 ]] || command="BENCH_ROUNDS=$rounds $command"
python3 "$here/report.py" "$results" --output "$output" --repo "$repo" --command "$command" \
  --duration "$duration" --warmup "$warmup" --rounds "$rounds" --binary "${bin#"$repo"/}" \
  --gateway-config "$work/switchyard.yaml" --cache-config "$work/switchyard-cache-hit.yaml" \
  --nginx-config "$work/nginx.conf" \
  --section "$here/instructions.md" --section "$here/features.md" --section "$here/overload.md" --section "$here/cache.md" --section "$here/usage.md" --section "$here/traces.md" --section "$here/dashboard.md"

mkdir -p "$raw_dir"
cp "$results" "$work"/*.txt "$work"/*.yaml "$work"/*.conf "$raw_dir"/
for f in "$work"/*.err; do
  tail -n 2000 "$f" >"$raw_dir/$(basename "$f").tail"
done
[[ -f $work/nginx/error.log ]] && tail -n 2000 "$work/nginx/error.log" >"$raw_dir/nginx-error.log.tail"
log "wrote $output (raw results in $raw_dir)"
