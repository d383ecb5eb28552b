#!/usr/bin/env bash
# make deploy-check: renders deploy/overlays/{dev,prod} with `kubectl kustomize`, validates them
# offline against the Kubernetes schemas bundled in kubernetes-validate (PyPI, in a venv under the
# target dir; no cluster), checks what no schema knows (scripts/deploy-check.py static), runs the dev
# overlay's pods on loopback and places an order through them (deploy-check.py smoke; the prod
# overlay's Job and pods too when TEST_DATABASE_URL names a PostgreSQL server), and checks
# the monitoring rules with promtool (`check rules`, `test rules`, the dashboard's queries parsed).
# Needs kubectl (with kustomize 5) and promtool (Debian `prometheus`); installs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
target=${CARGO_TARGET_DIR:-target}
out="$target/deploy-check"
venv="$target/deploy-venv"
# The oldest Kubernetes the manifests support (the kubelet's preStop `sleep` is on by default from
# 1.30) and the newest schema kubernetes-validate bundles.
k8s_versions=(1.30.0 1.37.0)

for tool in kubectl promtool python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "deploy-check: $tool is missing (kubectl: the machine's; promtool: apt-get install prometheus)" >&2; exit 1; }
done

mkdir -p "$out"
for overlay in dev prod; do
  kubectl kustomize "deploy/overlays/$overlay" >"$out/$overlay.yaml"
  echo "deploy-check: rendered deploy/overlays/$overlay ($(grep -c '^kind:' "$out/$overlay.yaml") objects)"
done

if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate==1.37.0
fi
for version in "${k8s_versions[@]}"; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "$out/dev.yaml" "$out/prod.yaml"
  echo "deploy-check: both overlays valid for Kubernetes $version (strict: no unknown fields)"
done

"$venv/bin/python" scripts/deploy-check.py static "$out"

promtool check rules deploy/monitoring/alerts.yml
promtool test rules deploy/monitoring/alerts.test.yml
promtool check rules "$out/dashboard-rules.yml"

"$CARGO" build --quiet --bin shop
"$venv/bin/python" scripts/deploy-check.py smoke "$out/dev.yaml" "$target/debug/shop"
# The prod overlay on PostgreSQL (CI's TEST_DATABASE_URL, .ci/postgres.sh): the Job, then the pods.
if [ -n "${TEST_DATABASE_URL:-}" ]; then
  "$venv/bin/python" scripts/deploy-check.py smoke-prod "$out/prod.yaml" "$target/debug/shop" "$TEST_DATABASE_URL"
elif [ -n "${CI:-}" ]; then
  echo "deploy-check: CI needs TEST_DATABASE_URL for the prod overlay's run (.ci/postgres.sh)" >&2; exit 1
else
  echo "deploy-check: prod overlay run skipped (set TEST_DATABASE_URL to a PostgreSQL server, as .ci/postgres.sh prints)"
fi
echo "deploy-check: ok"
