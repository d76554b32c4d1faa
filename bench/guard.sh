#!/usr/bin/env bash
# The regression guard of the request path: instructions per proxied JSON
# request and per 66-event stream (bench/callgrind.sh, the product's defaults:
# keys mode, the usage log on to SQLite) against the counts recorded in
# bench/guard.baseline. Fails when either has grown by more than
# GUARD_TOLERANCE percent (default 5) — a change that costs on purpose records
# the new counts with --record, in the same commit, and says why.
#
#   bench/guard.sh              # check (builds target/release/switchyard first)
#   bench/guard.sh --record     # write the counts measured now as the baseline
#   SWITCHYARD_BIN=/path/to/switchyard bench/guard.sh
#
# Instruction counts are the same from run to run within about 1 % on one
# machine, whatever else it is doing, so 5 % tells a real change from noise.
# They differ between CPUs and toolchains: record the baseline on the machine
# that checks it. Prints one line per mode:
#   GUARD json baseline=N now=N change=+F% verdict=ok|over
# Needs what bench/callgrind.sh needs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
baseline=$here/guard.baseline
tolerance=${GUARD_TOLERANCE:-5}
record=0
case ${1:-} in
  --record) record=1 ;;
  "") ;;
  *) echo "usage: bench/guard.sh [--record]" >&2; exit 2 ;;
esac

measured=$("$here/callgrind.sh" | awk '$1 == "CALLGRIND" {
  split($3, n, "="); print $2, n[2] }')
[[ $(wc -l <<<"$measured") -eq 2 ]] || { echo "guard: callgrind.sh measured: $measured" >&2; exit 1; }

if ((record)); then
  {
    echo "# Instructions per proxied request, recorded by bench/guard.sh --record;"
    echo "# bench/guard.sh fails when a mode grows by more than ${tolerance} % over these."
    echo "# commit $(git -C "$repo" rev-parse --short=12 HEAD), $(date -u +%Y-%m-%d),"
    echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(rustc --version)"
    echo "$measured"
  } >"$baseline"
  echo "guard: recorded $(tr '\n' ' ' <<<"$measured")in $baseline"
  exit 0
fi

[[ -f $baseline ]] || { echo "guard: no $baseline: record one with bench/guard.sh --record" >&2; exit 1; }
over=0
while read -r mode now; do
  was=$(awk -v m="$mode" '$1 == m { print $2 }' "$baseline")
  [[ -n $was ]] || { echo "guard: no baseline for $mode in $baseline" >&2; exit 1; }
  verdict=$(python3 -c "
now, was, tol = $now, $was, $tolerance
change = (now - was) * 100 / was
print(f'change={change:+.1f}% verdict={\"over\" if change > tol else \"ok\"}')")
  echo "GUARD $mode baseline=$was now=$now $verdict"
  [[ $verdict == *over ]] && over=1
done <<<"$measured"
if ((over)); then
  echo "guard: the request path costs more than ${tolerance} % over the baseline; find where with callgrind_annotate --inclusive=yes (bench/out/callgrind), or record the new counts with --record if the cost is meant" >&2
  exit 1
fi
