#!/usr/bin/env bash
# The whole product on this machine: a local Kubernetes control plane (real etcd + kube-apiserver
# on loopback, the CRD installed), the ECS simulator seeded with sample instances, the sample
# EcsInstances applied, and the controller in the foreground. Ctrl-C stops everything it started.
#
# Needs nothing but this repository: the control plane binaries are built once from the Go
# module proxy and cached outside the repository (scripts/build-testbin.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

SIM_ADDR=${SIM_ADDR:-127.0.0.1:9100}
METRICS_ADDR=${METRICS_ADDR:-127.0.0.1:8080}
HEALTH_ADDR=${HEALTH_ADDR:-127.0.0.1:8081}
NAMESPACE=ecs-samples

testbin=$(bash scripts/build-testbin.sh)
export KUBE_TESTBIN=$testbin
cargo build --locked --quiet -p testkit --bin local-control-plane -p ecs-sim -p ecs-instance-controller
state=$(mktemp -d "${TMPDIR:-/tmp}/ecs-local.XXXXXX")
pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$state"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "starting the local control plane (etcd + kube-apiserver)…" >&2
target/debug/local-control-plane > "$state/kubeconfig-path" 2> "$state/control-plane.log" &
pids+=($!)
for _ in $(seq 1 600); do
  [ -s "$state/kubeconfig-path" ] && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$state/control-plane.log" >&2; exit 1; }
  sleep 0.1
done
KUBECONFIG=$(head -1 "$state/kubeconfig-path")
export KUBECONFIG
kubectl=("$testbin/kubectl" --kubeconfig "$KUBECONFIG")

echo "starting ecs-sim on $SIM_ADDR with the sample instances…" >&2
target/debug/ecs-sim --listen "$SIM_ADDR" --seed deploy/samples/local/ecs-sim-seed.json \
  --transition-ms 3000 --release-linger-ms 5000 > "$state/ecs-sim.out" 2> "$state/ecs-sim.log" &
pids+=($!)
for _ in $(seq 1 100); do
  grep -q 'listening' "$state/ecs-sim.out" 2>/dev/null && break
  kill -0 "${pids[1]}" 2>/dev/null || { cat "$state/ecs-sim.log" >&2; exit 1; }
  sleep 0.1
done

"${kubectl[@]}" create namespace "$NAMESPACE" >/dev/null
"${kubectl[@]}" apply -n "$NAMESPACE" -f deploy/samples/ -f deploy/samples/local/ecsinstance-route-entry.yaml >/dev/null

cat >&2 <<EOF

The EcsInstance controller runs below against a local control plane and the ECS simulator.
In another terminal:

  export KUBECONFIG=$KUBECONFIG
  alias kubectl='$testbin/kubectl'
  kubectl get ecsi -n $NAMESPACE                       # instances, cloud status, Ready, Reason
  kubectl delete ecsi example-stop -n $NAMESPACE       # stops, releases, then returns
  kubectl delete ecsi example-wait -n $NAMESPACE --wait=false
  kubectl get ecsi example-wait -n $NAMESPACE -o yaml  # Reconciling=True WaitingForStopped
  curl -X PATCH http://$SIM_ADDR/_sim/instances/i-examplewait0001 -d '{"status":"Stopped"}'
                                                       # stop it "by hand": now it is released
  kubectl delete ecsi example-route-entry -n $NAMESPACE --wait=false
  kubectl describe ecsi example-route-entry -n $NAMESPACE   # Stalled DependencyViolationRouteEntry
  kubectl patch ecsi example-route-entry -n $NAMESPACE --type merge -p '{"spec":{"deletionPolicy":"Orphan"}}'
  kubectl get ecsi example-credentials-ref -n $NAMESPACE    # Stalled: the sample Secret's keys are placeholders
  curl http://$SIM_ADDR/_sim/calls                     # every ECS call the controller made
  curl http://$METRICS_ADDR/metrics

Ctrl-C stops the controller, the simulator and the control plane.

EOF

ALIBABA_CLOUD_ACCESS_KEY_ID=testid ALIBABA_CLOUD_ACCESS_KEY_SECRET=testsecret \
  target/debug/ecs-instance-controller --ecs-endpoint "http://$SIM_ADDR" \
  --metrics-addr "$METRICS_ADDR" --health-addr "$HEALTH_ADDR" --transition-poll 1s --resync-period 30s &
pids+=($!)
wait "${pids[2]}"
