#!/usr/bin/env bash
# What each stage of the request path costs: a ladder of gateways, each one
# the one before plus one feature, measured side by side with nginx.
#
#   bench/features.sh                       # builds target/release/switchyard first
#   SWITCHYARD_BIN=/path/to/switchyard bench/features.sh
#
# The steps (each adds one thing to the step before):
#   open     auth.mode open, no key sent, the usage log off: the proxy alone
#   keys     auth.mode keys, a virtual key from the store (no limits)
#   limits   the key's requests and tokens per minute on
#   budget   the key's monthly budget on (the spend settled per request)
#   usage    the usage log on, to SQLite in the process: the full stack
#   cache    the response cache on (memory), every request a miss and stored
# Limits and budget are far above the load: every check runs, none refuses.
# Metrics are on at every step (they cannot be turned off).
#
# 1. Requests per CPU-second: every step's gateway and nginx (`proxy_pass`, as
#    in bench/run.sh) run at once, pinned to CPU 0, in front of one mock; wrk
#    (CPU 1, c=50) runs FEATURES_DURATION seconds (default 6, after a 2 s
#    warm-up) against each in turn, JSON then streams, FEATURES_ROUNDS times
#    (default 3); each figure is the median of its rounds.
# 2. Instructions per request: bench/callgrind.sh for each step (JSON and
#    66-event streams, wrk -c10 for 6 s under callgrind);
#    FEATURES_CALLGRIND=off leaves them out.
# 3. Where the CPU time goes: user and kernel time per request, each step and
#    nginx, from the same runs.
#
# Writes the tables to FEATURES_OUTPUT (default bench/features.md, a section
# bench/run.sh puts into BENCHMARKS.md) and prints it.
# Needs wrk, nginx, taskset, valgrind, python3.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
duration=${FEATURES_DURATION:-6}
rounds=${FEATURES_ROUNDS:-3}
output=${FEATURES_OUTPUT:-$here/features.md}
steps=(open keys limits budget usage cache)
body=$here/payloads/chat.json

log() { printf '[features %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
for tool in wrk nginx taskset valgrind python3; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done

# shellcheck source=bench/gateway-config.sh
source "$here/gateway-config.sh"
# shellcheck source=bench/processes.sh
source "$here/processes.sh"
bin=$(bench_binary "$repo")
bench_work features
trap 'exit 130' INT TERM

taskset -c 1 "$bin" mock --listen 127.0.0.1:0 --ttft 0s >"$work/mock.out" 2>"$work/mock.err" &
pids+=($!)
mock_port=$(port_of "$work/mock.out")

nginx_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/nginx"
nginx_config "$mock_port" "$nginx_port" "$work" >"$work/nginx.conf"
taskset -c 0 nginx -p "$work/nginx/" -c "$work/nginx.conf" -e "$work/nginx/error.log" \
  >"$work/nginx.out" 2>"$work/nginx.err" &
pids+=($!)
for _ in $(seq 100); do [[ -s $work/nginx/nginx.pid ]] && break; sleep 0.1; done
nginx_master=$(cat "$work/nginx/nginx.pid")
nginx_worker=$(pgrep -P "$nginx_master" | head -n 1)

# config_of STEP: the gateway config of that step.
config_of() {
  local step=$1 i
  gateway_config "$mock_port" sk-bench-client-key gpt-4.1 "$work/$step" \
    | if [[ $step == open ]]; then sed 's/mode: keys/mode: open/'; else cat; fi
  for ((i = 0; i < ${#steps[@]}; i++)); do
    [[ ${steps[i]} == "$step" ]] && break
  done
  ((i >= 4)) || gateway_usage_off_config
  ((i < 5)) || gateway_cache_config
}

# key_flags STEP: the `keys create` flags of that step's virtual key.
key_flags() {
  case $1 in
    keys) ;;
    limits) echo --rpm 1000000000 --tpm 1000000000 ;;
    *) echo --rpm 1000000000 --tpm 1000000000 --budget-usd 1000000000 --budget-period month ;;
  esac
}

declare -A pid_of url_of key_of
for step in "${steps[@]}"; do
  mkdir -p "$work/$step"
  config_of "$step" >"$work/$step.yaml"
  key_of[$step]=""
  if [[ $step != open ]]; then
    # shellcheck disable=SC2046
    key_of[$step]=$("$bin" keys create --name bench --store "sqlite://$work/$step/switchyard.db" \
      $(key_flags "$step") 2>/dev/null) || die "could not create the key of $step"
  fi
  taskset -c 0 "$bin" serve --config "$work/$step.yaml" >"$work/$step.out" 2>"$work/$step.err" &
  pids+=($!)
  pid_of[$step]=$!
  url_of[$step]=http://127.0.0.1:$(port_of "$work/$step.out")/v1/chat/completions
done
pid_of[nginx]="$nginx_master $nginx_worker"
url_of[nginx]=http://127.0.0.1:$nginx_port/v1/chat/completions
key_of[nginx]=""

# ticks PID...: the user and the system (kernel) CPU ticks of these processes.
ticks() {
  local user=0 system=0 pid stat
  local -a fields
  for pid in "$@"; do
    read -r stat <"/proc/$pid/stat"
    read -ra fields <<<"${stat##*) }"
    user=$((user + fields[11]))
    system=$((system + fields[12]))
  done
  echo "$user $system"
}
clk_tck=$(getconf CLK_TCK)

results=$work/results.jsonl
: >"$results"
for round in $(seq "$rounds"); do
  for mode in json stream; do
    for target in nginx "${steps[@]}"; do
      tag=()
      [[ $target == cache ]] && tag=("features-$mode-$round")
      taskset -c 1 wrk -t1 -c50 -d2s -s "$here/chat.lua" "${url_of[$target]}" \
        -- "$body" "$mode" "${key_of[$target]}" "${tag[@]/%/-warmup}" >/dev/null
      # shellcheck disable=SC2086
      read -r user_before system_before < <(ticks ${pid_of[$target]})
      line=$(taskset -c 1 wrk -t1 -c50 -d"${duration}s" -s "$here/chat.lua" "${url_of[$target]}" \
        -- "$body" "$mode" "${key_of[$target]}" "${tag[@]}" | sed -n 's/^WRK_RESULT //p')
      # shellcheck disable=SC2086
      read -r user_after system_after < <(ticks ${pid_of[$target]})
      python3 -c 'import json, sys
r = json.loads(sys.argv[1])
bad = sum(v for k, v in r.items() if k.startswith("errors_"))
if bad:
    sys.exit(f"{sys.argv[3]} ({sys.argv[2]}): wrk saw {bad} errors")
user, system = int(sys.argv[4]) / int(sys.argv[6]), int(sys.argv[5]) / int(sys.argv[6])
print(json.dumps({"mode": sys.argv[2], "target": sys.argv[3], "requests": r["requests"],
                  "cpu_s": user + system, "user_s": user, "system_s": system}))' \
        "$line" "$mode" "$target" "$((user_after - user_before))" "$((system_after - system_before))" \
        "$clk_tck" >>"$results"
      log "round $round $mode $target $(tail -n 1 "$results")"
    done
  done
done

# Instructions per request, one step at a time (the wrk runs above are over:
# callgrind's gateway has the machine to itself).
instructions=$work/instructions.txt
: >"$instructions"
for step in "${steps[@]}"; do
  [[ ${FEATURES_CALLGRIND:-on} == off ]] && break
  case $step in
    open) env=(CALLGRIND_KEY=open CALLGRIND_USAGE=off) ;;
    keys) env=(CALLGRIND_KEY=virtual CALLGRIND_USAGE=off) ;;
    limits) env=(CALLGRIND_KEY=limits CALLGRIND_USAGE=off) ;;
    budget) env=(CALLGRIND_KEY=budget CALLGRIND_USAGE=off) ;;
    usage) env=(CALLGRIND_KEY=budget) ;;
    cache) env=(CALLGRIND_KEY=budget CALLGRIND_CACHE=miss) ;;
  esac
  log "callgrind: $step"
  env "${env[@]}" SWITCHYARD_BIN="$bin" CALLGRIND_OUT="$work/callgrind-$step" "$here/callgrind.sh" 2>/dev/null \
    | awk -v step="$step" '$1 == "CALLGRIND" { split($3, n, "="); print step, $2, n[2] }' >>"$instructions"
done

python3 - "$results" "$instructions" "$output" "$duration" "$rounds" "$(git -C "$repo" rev-parse --short=12 HEAD)" <<'EOF'
import json, statistics, sys
from collections import defaultdict

results, instructions, output, duration, rounds, commit = sys.argv[1:]
per_cpu = defaultdict(list)
user_us, system_us = defaultdict(list), defaultdict(list)
for line in open(results):
    r = json.loads(line)
    per_cpu[(r["target"], r["mode"])].append(r["requests"] / r["cpu_s"])
    user_us[(r["target"], r["mode"])].append(r["user_s"] * 1e6 / r["requests"])
    system_us[(r["target"], r["mode"])].append(r["system_s"] * 1e6 / r["requests"])
counts = {}
for line in open(instructions):
    step, mode, n = line.split()
    counts[(step, mode)] = int(n)

steps = [
    ("open", "the proxy alone: auth.mode open, no key, usage log off"),
    ("keys", "+ a virtual key from the store (looked up, no limits)"),
    ("limits", "+ its requests and tokens per minute"),
    ("budget", "+ its monthly budget"),
    ("usage", "+ the usage log to SQLite: **the full stack**"),
    ("cache", "+ the response cache, every request a miss"),
]
median = {k: statistics.median(v) for k, v in per_cpu.items()}
def k(n):
    return f"{n / 1000:.1f}k"
lines = [
    "## What each stage costs (bench/features.sh)",
    "",
    f"Kept by hand (rerun the command to refresh): `bench/features.sh` at commit {commit}, on the",
    "machine above. Each gateway is the one above it plus one feature; all run at once with",
    f"nginx on CPU 0 in front of one mock, wrk on CPU 1 at concurrency 50, {duration} s per run,",
    f"{rounds} rounds, the median round shown. Instructions per request are callgrind's",
    "(`bench/callgrind.sh`, wrk -c10); their differences are what each stage adds.",
    "",
    "| step | JSON requests per CPU-second | ÷ nginx | JSON instructions | added | stream requests per CPU-second | ÷ nginx | stream instructions | added |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
]
nginx_json, nginx_stream = median[("nginx", "json")], median[("nginx", "stream")]
lines.append(f"| nginx `proxy_pass` | {nginx_json:,.0f} | 1.00× | – | – | {nginx_stream:,.0f} | 1.00× | – | – |")
before = None
for step, what in steps:
    row = [what]
    for mode, ref in (("json", nginx_json), ("stream", nginx_stream)):
        n = counts.get((step, mode))
        added = "–" if before is None or n is None or counts.get((before, mode)) is None else f"{n - counts[(before, mode)]:+,}"
        row += [f"{median[(step, mode)]:,.0f}", f"{median[(step, mode)] / ref:.2f}×", k(n) if n else "–", added]
    lines.append("| " + " | ".join(row) + " |")
    before = step
lines += [
    "",
    "Where the CPU time of a request goes, in µs (`/proc/PID/stat`: user time, and system",
    "time, the kernel working for the process; each the median of its rounds). A proxy at",
    "0.9× nginx's requests per CPU-second may spend 1/0.9 of nginx's total.",
    "",
    "| step | JSON user | JSON kernel | JSON total | stream user | stream kernel | stream total |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
]
for target, what in [("nginx", "nginx `proxy_pass`")] + steps:
    row = [what]
    for mode in ("json", "stream"):
        user, system = statistics.median(user_us[(target, mode)]), statistics.median(system_us[(target, mode)])
        row += [f"{user:.1f}", f"{system:.1f}", f"{user + system:.1f}"]
    lines.append("| " + " | ".join(row) + " |")
lines.append("")
text = "\n".join(lines)
open(output, "w").write(text + "\n")
print(text)
EOF
log "wrote $output"
