#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: builds (once, cached outside the repository)
# the real control plane and the Python SDK environment, builds the workspace, then runs the Rust
# tests (each integration test binary starts its own etcd + kube-apiserver on loopback and the
# ECS simulator as needed) and the official-SDK wire tests against the simulator.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBE_TESTBIN=$(bash scripts/build-testbin.sh)
export KUBE_TESTBIN
# The real kstatus and Argo CD's Lua health runtime, asked by tests/kstatus.rs and argocd_health.rs.
GITOPS_CHECK=$(bash scripts/build-gitops-check.sh)
export GITOPS_CHECK
# The real promtool, asked by tests/monitoring.rs to check and unit-test deploy/monitoring's rules.
PROMTOOL=$(bash scripts/build-promtool.sh)
export PROMTOOL
# The real helm, asked by tests/helm_chart.rs to lint and render charts/ecs-instance-controller.
HELM=$(bash scripts/build-helm.sh)
export HELM
venv=$(bash scripts/python-env.sh)

# Build everything before any control plane starts, so compilation does not starve it (2 cores).
cargo build --workspace --all-targets --locked
cargo test --workspace --locked
"$venv/bin/python" -m pytest -q ecs-sim/sdk-tests
(cd ecs-sim/sdk-tests/credentials-go && go test -count=1 ./...)
(cd tools/gitops-check/argolua && go test -count=1 ./...)
