#!/usr/bin/env bash
# Runs the integration suites that talk to a real kube-apiserver — tests/resource_api.rs (the
# CRD's schema, CEL rules, printer columns, kubectl) and tests/reconciler.rs (the controller against
# it) — against the newest supported Kubernetes version. scripts/test.sh runs them (and the rest)
# against the oldest, K8S_VERSION; together they check both ends of the supported range
# (scripts/lib/kube-version.sh, README "Supported Kubernetes versions").
#
#   scripts/test-kube-versions.sh [VERSION...]    default: K8S_NEWEST_VERSION
#
# Builds each version's kube-apiserver, kubectl and etcd once (scripts/build-testbin.sh; cold:
# ~15 min on 2 cores). Fails, never skips, when a control plane cannot be built or start (the
# tests panic then, see testkit::control_plane).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/kube-version.sh
. scripts/lib/kube-version.sh

versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=("$K8S_NEWEST_VERSION")
suites=(--test resource_api --test reconciler)

dirs=()
for version in "${versions[@]}"; do
  # An explicit version always builds into (or reuses) its own cache directory, never $KUBE_TESTBIN.
  dir=$(bash scripts/build-testbin.sh "$version")
  # The binaries must be the version claimed, not whatever a directory held.
  api=$("$dir/kube-apiserver" --version)
  cli=$("$dir/kubectl" version --client | sed -n 's/^Client Version: //p')
  if [ "$api" != "Kubernetes $version" ] || [ "$cli" != "$version" ]; then
    echo "test-kube-versions: $dir holds kube-apiserver '$api' and kubectl '$cli', not $version" >&2
    exit 1
  fi
  dirs+=("$dir")
done

# Build the test binaries before any control plane starts, so compilation does not starve it.
cargo test --locked "${suites[@]}" --no-run

for i in "${!versions[@]}"; do
  echo "test-kube-versions: ${suites[*]} against kube-apiserver ${versions[$i]} (${dirs[$i]})" >&2
  KUBE_TESTBIN=${dirs[$i]} cargo test --locked "${suites[@]}"
done
echo "test-kube-versions: passed against Kubernetes ${versions[*]} (K8S_VERSION $K8S_VERSION: scripts/test.sh)"
