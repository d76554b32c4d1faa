#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each, two at a time (one per
# core), and fails when any target found a crash, a leak or a timeout.
#
#   fuzz/run.sh            # every target, 60 s each
#   fuzz/run.sh 600 sse    # one target, ten minutes
#
# Each target starts from its seeds: the inputs kept in fuzz/regressions/TARGET
# (every crash found so far, fixed, so that it stays fixed) and the test
# fixtures of its kind (requests, provider streams and answers, config files).
# The corpus grown during a run stays in fuzz/corpus/TARGET (not committed);
# a crash is written to fuzz/artifacts/TARGET/ and named on the way out.
#
# Needs cargo-fuzz (installed from crates.io when missing, pinned) and a C++
# compiler for libFuzzer; the sanitizer flags are nightly features, which
# RUSTC_BOOTSTRAP=1 enables on the stable toolchain.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
CARGO_FUZZ_VERSION=0.13.2
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --quiet
fi
export RUSTC_BOOTSTRAP=1
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
[ ${#targets[@]} -gt 0 ] || { echo "fuzz: no targets (cargo fuzz list failed?)" >&2; exit 1; }
echo "fuzz: building ${targets[*]}"
CARGO_TERM_QUIET=true cargo fuzz build --release
# The targets are run as built, not through `cargo fuzz run` (which would
# build again, inside the time given to fuzzing, were anything to change).
bin=target/$(rustc -vV | sed -n 's/^host: //p')/release

fixtures=../crates/switchyard-providers/tests/fixtures
# seeds TARGET: the files a target starts from, copied into its corpus.
seeds() {
  case "$1" in
    sse) find "$fixtures" -name '*.sse' ;;
    openai_request) find "$fixtures"/openai-to-* -name request.json ;;
    anthropic_request) find "$fixtures"/anthropic-to-openai -name request.json ;;
    openai_stream) find "$fixtures"/anthropic-to-openai -name 'upstream_*' ;;
    anthropic_stream) find "$fixtures"/openai-to-anthropic -name 'upstream_*' ;;
    gemini_stream) find "$fixtures"/openai-to-gemini -name 'upstream_*' ;;
    config) printf '%s\n' ../crates/switchyard/src/config/default.yaml ../deploy/docker/switchyard.yaml \
      ../deploy/compose/switchyard.yaml ;;
  esac
}

# run TARGET: SECONDS of fuzzing; the log goes to fuzz/out/TARGET.log.
run() {
  local target=$1 corpus=corpus/$1 regressions=regressions/$1
  mkdir -p "$corpus" "$regressions" "artifacts/$target" out
  local seed
  while read -r seed; do
    [ -n "$seed" ] && cp "$seed" "$corpus/seed-$(echo "$seed" | cksum | cut -d' ' -f1)"
  done < <(seeds "$target")
  # -rss_limit_mb: a leak or an unbounded buffer is a failure; -timeout: so is a
  # hang (any input here parses in microseconds).
  timeout $((seconds + 60)) "$bin/$target" -artifact_prefix="artifacts/$target/" \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
    -print_final_stats=1 "$corpus" "$regressions" >"out/$target.log" 2>&1
}

failed=()
pids=()
names=()
for target in "${targets[@]}"; do
  run "$target" &
  pids+=($!)
  names+=("$target")
  # Two at a time: one per core.
  if [ ${#pids[@]} -eq 2 ]; then
    for i in 0 1; do
      wait "${pids[$i]}" || failed+=("${names[$i]}")
    done
    pids=()
    names=()
  fi
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed+=("${names[$i]}")
done

for target in "${targets[@]}"; do
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "out/$target.log" | grep -o '[0-9]*$' || echo '?')
  printf 'fuzz: %-18s %s inputs in %s s\n' "$target" "$runs" "$seconds"
done
if [ ${#failed[@]} -gt 0 ]; then
  for target in "${failed[@]}"; do
    echo "fuzz: $target FAILED; the end of fuzz/out/$target.log:" >&2
    tail -40 "out/$target.log" >&2
  done
  exit 1
fi
echo "fuzz: no crash in ${#targets[@]} targets"
