#!/usr/bin/env bash
# Runs the end-to-end suite against a real `switchyard` binary.
#
#   e2e/run.sh [pytest args...]
#
# Builds target/debug/switchyard unless SWITCHYARD_BIN points at a binary, installs
# e2e/requirements.txt into a virtualenv (E2E_VENV, default e2e/.venv), and runs pytest,
# bounded by E2E_TIMEOUT seconds (default 300).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
venv=${E2E_VENV:-$here/.venv}

if [[ -z ${SWITCHYARD_BIN:-} ]]; then
  (cd "$repo" && cargo build -p switchyard)
  export SWITCHYARD_BIN=$repo/target/debug/switchyard
fi

if [[ ! -x $venv/bin/python ]]; then
  python3 -m venv "$venv"
fi
timeout 600 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"

cd "$here"
exec timeout --kill-after=10 "${E2E_TIMEOUT:-300}" "$venv/bin/python" -m pytest "$@"
