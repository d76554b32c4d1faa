#!/usr/bin/env bash
# Offline checks of everything in deploy/, run by scripts/test:
#
#   deploy/validate.sh
#
# - deploy/validate.py: renders both kustomizations (kubectl kustomize, compared
#   with its own renderer), validates every object against the Kubernetes
#   schemas and the vendored CRD schemas, checks how the objects and the
#   gateway's config fit together, that the PrometheusRule holds the rules of
#   deploy/prometheus/alerts.yml, the compose file, the Dockerfile's version;
# - promtool: the alert rules as Prometheus and the Prometheus Operator load
#   them, and compose's prometheus.yml;
# - switchyard check: the gateway configs of compose, Kubernetes (as rendered)
#   and the image;
# - hadolint: the Dockerfile.
#
# Needs python3 with venv and promtool (Debian `prometheus`). Python packages
# (deploy/requirements.txt) go into E2E_VENV (default .venv, the end-to-end
# suite's), installed only when missing. SWITCHYARD_BIN names the binary
# (when unset: target/debug/switchyard, built first). Nothing here uses the
# network but that install. The last line reads `deploy: N passed, N failed`;
# the exit status is 1 when any check failed.
set -euo pipefail

deploy=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$deploy/.." && pwd)
venv=${E2E_VENV:-$repo/.venv}
python=$venv/bin/python

if [[ -z ${SWITCHYARD_BIN:-} ]]; then
  (cd "$repo" && cargo build --locked -p switchyard)
  SWITCHYARD_BIN=$repo/target/debug/switchyard
fi
if ! command -v promtool >/dev/null 2>&1; then
  echo "deploy/validate.sh: promtool is missing (Debian: apt-get install prometheus)" >&2
  exit 1
fi
if [[ ! -x $python ]]; then
  python3 -m venv "$venv"
fi
timeout 600 "$python" -m pip install --quiet --disable-pip-version-check -r "$deploy/requirements.txt"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

# check NAME COMMAND...: runs one check, counts it, goes on after a failure.
check() {
  local name=$1
  shift
  echo "== $name"
  if "$@"; then
    passed=$((passed + 1))
  else
    echo "FAILED: $name" >&2
    failed=$((failed + 1))
  fi
}

check "manifests, compose file, Dockerfile version (validate.py)" \
  timeout 300 "$python" "$deploy/validate.py" --out "$work"

# The rules as Prometheus loads them, and as the Prometheus Operator does from
# the PrometheusRule (its groups, extracted by validate.py).
check "alert rules (promtool)" timeout 60 promtool check rules "$deploy/prometheus/alerts.yml"
check "the PrometheusRule's rules (promtool)" \
  timeout 60 promtool check rules "$work/prometheusrule-groups.yml"
# compose's prometheus.yml, with the rule files it mounts beside it.
check "compose's Prometheus config (promtool)" \
  timeout 60 promtool check config "$work/prometheus/prometheus.yml"

# Each gateway config with the environment its deployment gives it, and nothing
# else from ours.
gateway_check() {
  timeout 60 env -i PATH="$PATH" "${@:2}" "$SWITCHYARD_BIN" check --config "$1"
}
provider_keys=(HOLYSHEEP_API_KEY=sk-example OPENAI_API_KEY=sk-example DEEPSEEK_API_KEY=sk-example
  ANTHROPIC_API_KEY=sk-ant-example GEMINI_API_KEY=example)
check "compose's gateway config (switchyard check)" \
  gateway_check "$deploy/compose/switchyard.yaml" "${provider_keys[@]}"
# The ConfigMap's config as each kustomization renders it (listed by
# validate.py), with the Secrets' variables set.
kustomizations=(base production)
for kustomization in "${kustomizations[@]}"; do
  config=$(awk -v k="$kustomization" '$1 == k { print $2 }' "$work/kubernetes-configs.txt" 2>/dev/null || true)
  check "the $kustomization ConfigMap's gateway config (switchyard check)" \
    gateway_check "${config:-$work/missing-$kustomization.yaml}" "${provider_keys[@]}" \
    SWITCHYARD_STORE_URL=postgres://switchyard:secret@postgres:5432/switchyard \
    SWITCHYARD_REDIS_URL=redis://redis:6379/0 \
    SWITCHYARD_ADMIN_KEY=sy-admin-example
done
check "the image's gateway config (switchyard check)" \
  gateway_check "$deploy/docker/switchyard.yaml" SWITCHYARD_API_KEY=sk-example

check "Dockerfile (hadolint)" timeout 60 "$venv/bin/hadolint" --no-color "$deploy/Dockerfile"

echo "deploy: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
