#!/usr/bin/env bash
# The reliability suite (crates/switchyard/tests/reliability/): every scenario
# against the release build, with real Redis and PostgreSQL (scripts/services.sh)
# and `switchyard mock` on 127.0.0.1; writes the table of criteria, figures and
# verdicts, and fails when a row fails.
#
#   bench/reliability.sh                          # every scenario (under 15 min on 2 cores) → RELIABILITY.md
#   bench/reliability.sh --quick                  # the subset CI runs (under 3 min) → bench/out/reliability-quick.md
#   RELIABILITY_ONLY=stalls bench/reliability.sh  # the scenarios whose name contains it → bench/out/reliability.md
#   RELIABILITY_SOAK_MINUTES=60 RELIABILITY_ONLY=soak bench/reliability.sh   # the hour-long soak
set -euo pipefail
cd "$(dirname "$0")/.."
quick=()
out=RELIABILITY.md
if [ "${1:-}" = "--quick" ]; then
  quick=(RELIABILITY_QUICK=1)
  out=bench/out/reliability-quick.md
elif [ -n "${RELIABILITY_ONLY:-}" ]; then
  out=bench/out/reliability.md
fi
# The slow-clients scenario holds 1,000 connections open: 2,000 descriptors
# between this process and the gateway.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release --locked -p switchyard
# shellcheck source=scripts/services.sh
source scripts/services.sh
mkdir -p bench/out
env SWITCHYARD_BIN="$PWD/target/release/switchyard" RELIABILITY_OUT="$PWD/$out" "${quick[@]}" \
  cargo test --locked -p switchyard --test reliability -- --ignored --nocapture
