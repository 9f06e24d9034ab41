#!/usr/bin/env bash
# End-to-end run on a kind cluster, the way a user installs the controller:
#   1. create a kind cluster (or reuse one of the same name),
#   2. build the controller image and the test-only simulator image (Dockerfile targets) and load
#      them into kind,
#   3. apply crds/ and deploy/overlays/e2e (deploy/ plus the image, the simulator sidecar and
#      ECS_ENDPOINT; the same overlay scripts/node-e2e.sh uses), with the controller's credentials
#      Secret for the simulator's test account: the simulator runs in the controller's pod, as a
#      sidecar listening on the pod's loopback (the simulator only listens on loopback, and the
#      controller speaks plain HTTP only to a loopback endpoint); wait until the Deployment is
#      Available,
#   4. port-forward the simulator to this machine and run `cargo test --test e2e` against the
#      cluster.
# Steps 3 and 4 are those of scripts/lib/e2e-install.sh, shared with scripts/node-e2e.sh. On
# failure it prints the controller's state.
#
# Environment for the tests: KUBECONFIG (the kind cluster), E2E_SIM_URL (the simulator, for its
# admin API /_sim/), E2E_CONTROLLER_NAMESPACE (ecs-system).
#
# Knobs: KIND_CLUSTER_NAME (default ecs-e2e), KEEP_CLUSTER=1 (keep a cluster this script
# created), E2E_SEED_FILE (simulator seed, JSON array of instance specs), E2E_SIM_LOCAL_PORT
# (default 19100). Extra arguments go to the test binary (after the default --test-threads=1).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
me=e2e-kind

if ! docker info >/dev/null 2>&1; then
  echo "$me needs a Docker engine (docker info failed)" >&2
  exit 1
fi
for tool in kind kubectl cargo curl; do
  command -v "$tool" >/dev/null || { echo "$me needs $tool on PATH" >&2; exit 1; }
done

# shellcheck source=lib/e2e-install.sh
. "$root/scripts/lib/e2e-install.sh"
cluster=${KIND_CLUSTER_NAME:-ecs-e2e}
sim_port=${E2E_SIM_LOCAL_PORT:-19100}
namespace=ecs-system
deployment=ecs-instance-controller
work=$(mktemp -d)
export KUBECONFIG="$work/kubeconfig"
created=0

cleanup() {
  local status=$?
  e2e_stop_forward_sim
  if [ "$status" -ne 0 ] && [ -s "$KUBECONFIG" ]; then
    echo "$me: FAILED (exit $status)" >&2
    e2e_dump_state
  fi
  if [ "$created" = 1 ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    kind delete cluster --name "$cluster" || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

echo "==> kind cluster $cluster"
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  kind get kubeconfig --name "$cluster" >"$KUBECONFIG"
else
  created=1
  kind create cluster --name "$cluster" --kubeconfig "$KUBECONFIG" --wait 180s
fi

echo "==> images"
# The names deploy/overlays/e2e uses (never pulled: imagePullPolicy Never).
docker build -t localhost/ecs-instance-controller:dev .
docker build --target ecs-sim -t localhost/ecs-sim:dev .
kind load docker-image --name "$cluster" localhost/ecs-instance-controller:dev localhost/ecs-sim:dev

echo "==> crds/, the namespace, the credentials Secret and the simulator's seed"
e2e_install_crds
e2e_install_config

echo "==> the controller with the simulator sidecar (deploy/overlays/e2e)"
e2e_apply_overlay deploy/overlays/e2e
e2e_wait_available

echo "==> port-forward the simulator to 127.0.0.1:$sim_port"
e2e_forward_sim

echo "==> cargo test --test e2e"
e2e_test "$@"
