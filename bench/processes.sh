# The processes a benchmark starts, their scratch directory, and the binary it
# measures (sourced by the scripts of bench/):
#
#   bench_work NAME          makes $work, and stops every PID in $pids and
#                            removes $work when the script exits
#   pids+=($!)               after starting a process in the background
#   port=$(port_of FILE)     the port a process announced on its first stdout line
#   bin=$(bench_binary REPO) $SWITCHYARD_BIN, else REPO's release build (built
#                            first, its output on stderr)

bench_work() {
  work=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-$1.XXXXXX")
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}

port_of() {
  for _ in $(seq 100); do
    [[ -s $1 ]] && { sed -n 's/^listening on 127\.0\.0\.1://p' "$1"; return; }
    sleep 0.1
  done
  echo "no listening line in $1" >&2
  exit 1
}

bench_binary() {
  if [[ -n ${SWITCHYARD_BIN:-} ]]; then
    echo "$SWITCHYARD_BIN"
  else
    (cd "$1" && cargo build --release -p switchyard >&2)
    echo "$1/target/release/switchyard"
  fi
}
