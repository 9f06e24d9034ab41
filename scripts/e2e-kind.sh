#!/usr/bin/env bash
# End-to-end run on a kind cluster, the way a user installs the controller:
#   1. create a kind cluster (or reuse one of the same name),
#   2. build the controller image and the test-only simulator image (Dockerfile targets) and load
#      them into kind,
#   3. apply crds/ and deploy/overlays/e2e (deploy/ plus the image, the simulator sidecar and
#      ECS_ENDPOINT; the same overlay scripts/node-e2e.sh uses), with the controller's credentials
#      Secret for the simulator's test account: the simulator runs in the controller's pod, as a
#      sidecar listening on the pod's loopback (the simulator only listens on loopback, and the
#      controller speaks plain HTTP only to a loopback endpoint),
#   4. port-forward the simulator to this machine and run `cargo test --test e2e` against the
#      cluster.
#
# Environment for the tests: KUBECONFIG (the kind cluster), E2E_SIM_URL (the simulator, for its
# admin API /_sim/), E2E_CONTROLLER_NAMESPACE (ecs-system).
#
# Knobs: KIND_CLUSTER_NAME (default ecs-e2e), KEEP_CLUSTER=1 (keep a cluster this script
# created), E2E_SEED_FILE (simulator seed, JSON array of instance specs), E2E_SIM_LOCAL_PORT
# (default 19100). Extra arguments go to the test binary (after the default --test-threads=1).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

if ! docker info >/dev/null 2>&1; then
  echo "kind.sh needs a Docker engine (docker info failed)" >&2
  exit 1
fi
for tool in kind kubectl cargo curl; do
  command -v "$tool" >/dev/null || { echo "kind.sh needs $tool on PATH" >&2; exit 1; }
done

cluster=${KIND_CLUSTER_NAME:-ecs-e2e}
sim_port=${E2E_SIM_LOCAL_PORT:-19100}
namespace=ecs-system
deployment=ecs-instance-controller
work=$(mktemp -d)
export KUBECONFIG="$work/kubeconfig"
created=0
port_forward_pid=

cleanup() {
  local status=$?
  if [ -n "$port_forward_pid" ]; then
    kill "$port_forward_pid" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -s "$KUBECONFIG" ]; then
    echo "--- kind.sh failed ($status); controller state ---" >&2
    kubectl -n "$namespace" get deployment,pods -o wide >&2 || true
    kubectl -n "$namespace" describe pods >&2 || true
    kubectl -n "$namespace" logs "deployment/$deployment" --all-containers --tail=300 >&2 || true
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

echo "==> crds/ and deploy/overlays/e2e"
kubectl apply --server-side -f crds/
kubectl wait --for=condition=Established --timeout=60s crd/ecsinstances.ecs.alicloud.dev
kubectl apply -f deploy/base/namespace.yaml

# The simulator's default test account (not a secret).
kubectl -n "$namespace" create secret generic ecs-credentials \
  --from-literal=accessKeyId=testid --from-literal=accessKeySecret=testsecret \
  --dry-run=client -o yaml | kubectl apply -f -

seed=${E2E_SEED_FILE:-$work/seed.json}
if [ -z "${E2E_SEED_FILE:-}" ]; then
  cat >"$seed" <<'JSON'
[
  {"instanceId": "i-e2eseedrunning01", "regionId": "cn-hangzhou", "status": "Running"},
  {"instanceId": "i-e2eseedstopped01", "regionId": "cn-hangzhou", "status": "Stopped"}
]
JSON
fi
kubectl -n "$namespace" create configmap ecs-sim-seed --from-file=instances.json="$seed" \
  --dry-run=client -o yaml | kubectl apply -f -

echo "==> the controller with the simulator sidecar (deploy/overlays/e2e)"
kubectl apply -k deploy/overlays/e2e
kubectl -n "$namespace" rollout status "deployment/$deployment" --timeout=180s

echo "==> port-forward the simulator to 127.0.0.1:$sim_port"
kubectl -n "$namespace" port-forward "deployment/$deployment" "$sim_port:9100" >"$work/port-forward.log" 2>&1 &
port_forward_pid=$!
for _ in $(seq 60); do
  if curl -fsS "http://127.0.0.1:$sim_port/_sim/health" >/dev/null 2>&1; then
    break
  fi
  if ! kill -0 "$port_forward_pid" 2>/dev/null; then
    cat "$work/port-forward.log" >&2
    echo "kind.sh: kubectl port-forward exited" >&2
    exit 1
  fi
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$sim_port/_sim/health" >/dev/null

echo "==> cargo test --test e2e"
E2E_SIM_URL="http://127.0.0.1:$sim_port" E2E_CONTROLLER_NAMESPACE="$namespace" \
  cargo test --locked --test e2e -- --test-threads=1 "$@"
