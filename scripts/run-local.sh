#!/usr/bin/env bash
# The whole product on this machine: a local Kubernetes control plane (real etcd + kube-apiserver
# on loopback, the CRD installed), the ECS simulator seeded with sample instances, the sample
# EcsInstances applied, and the controller in the foreground. Ctrl-C (SIGINT, or SIGTERM/SIGHUP to
# this script) stops everything it started and removes its state.
#
# Needs nothing but this repository: the control plane binaries are built once from the Go
# module proxy and cached outside the repository (scripts/build-testbin.sh).
#
# Knobs (environment): SIM_ADDR (127.0.0.1:9100), METRICS_ADDR (127.0.0.1:8080) and HEALTH_ADDR
# (127.0.0.1:8081) are the simulator's and the controller's listen addresses; KUBE_TESTBIN is the
# directory of kube-apiserver, etcd and kubectl (built there when missing; default
# ${XDG_CACHE_HOME:-~/.cache}/ecs-instance-controller/kube-testbin/<versions>); TMPDIR is where
# the state lives; CARGO_TARGET_DIR is honoured; RUST_LOG goes to the controller.
set -euo pipefail

# Cargo resolves a relative CARGO_TARGET_DIR against the working directory, which changes below.
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
  CARGO_TARGET_DIR=$(realpath -m -- "$CARGO_TARGET_DIR")
  export CARGO_TARGET_DIR
fi
cd "$(dirname "$0")/.."
bin=${CARGO_TARGET_DIR:-target}/debug

SIM_ADDR=${SIM_ADDR:-127.0.0.1:9100}
METRICS_ADDR=${METRICS_ADDR:-127.0.0.1:8080}
HEALTH_ADDR=${HEALTH_ADDR:-127.0.0.1:8081}
NAMESPACE=ecs-samples

say() { echo "run-local: $*" >&2; }

# Fails when something already accepts connections on one of the addresses this script listens
# on. A connection attempt through bash's own /dev/tcp (no other tool needed), at most 2 s each.
check_ports() {
  local name addr host port
  for name in SIM_ADDR METRICS_ADDR HEALTH_ADDR; do
    addr=${!name}
    case $addr in
      *:*) ;;
      *) say "$name=$addr is not HOST:PORT"; exit 2 ;;
    esac
    host=${addr%:*} port=${addr##*:}
    host=${host#[} host=${host%]}
    case $port in
      '' | *[!0-9]*) say "$name=$addr is not HOST:PORT"; exit 2 ;;
    esac
    [ -n "$host" ] || host=127.0.0.1
    [ "$host" = 0.0.0.0 ] && host=127.0.0.1
    [ "$host" = :: ] && host=::1
    if timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null; then
      say "$name=$addr is already in use (something accepts connections there)."
      local other=$((port < 64535 ? port + 1000 : port - 1000))
      say "Stop that program, or choose another address, e.g. $name=127.0.0.1:$other $0"
      exit 1
    fi
  done
}
check_ports

testbin=$(bash scripts/build-testbin.sh)
export KUBE_TESTBIN=$testbin

say "building local-control-plane, ecs-sim and ecs-instance-controller (debug; the first build takes several minutes)…"
cargo build --locked -p testkit --bin local-control-plane -p ecs-sim --bin ecs-sim \
  -p ecs-instance-controller --bin ecs-instance-controller

# The build can take minutes: look again right before anything starts.
check_ports

state=$(mktemp -d "${TMPDIR:-/tmp}/ecs-local.XXXXXX")
pids=()
cleanup() {
  local status=$?
  # Once: further Ctrl-Cs do not interrupt the clean-up (it gives up waiting after 15 s).
  trap '' INT TERM HUP
  trap - EXIT
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 150); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null && { say "process $pid did not stop within 15 s; killing it"; kill -KILL "$pid" 2>/dev/null || true; }
  done
  wait "${pids[@]}" 2>/dev/null || true
  rm -rf "$state"
  say "stopped everything; removed $state"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

say "starting the local control plane (etcd + kube-apiserver)…"
"$bin/local-control-plane" > "$state/kubeconfig-path" 2> "$state/control-plane.log" &
control_plane=$!
pids+=("$control_plane")
for _ in $(seq 1 1200); do
  [ -s "$state/kubeconfig-path" ] && break
  kill -0 "$control_plane" 2>/dev/null || { say "the control plane did not start:"; cat "$state/control-plane.log" >&2; exit 1; }
  sleep 0.1
done
[ -s "$state/kubeconfig-path" ] || { say "the control plane is not ready after 120 s:"; tail -40 "$state/control-plane.log" >&2; exit 1; }
KUBECONFIG=$(head -1 "$state/kubeconfig-path")
export KUBECONFIG
kubectl=("$testbin/kubectl" --kubeconfig "$KUBECONFIG")

say "starting ecs-sim on $SIM_ADDR with the sample instances…"
"$bin/ecs-sim" --listen "$SIM_ADDR" --seed deploy/samples/local/ecs-sim-seed.json \
  --transition-ms 3000 --release-linger-ms 5000 > "$state/ecs-sim.out" 2> "$state/ecs-sim.log" &
sim=$!
pids+=("$sim")
for _ in $(seq 1 100); do
  grep -q 'listening' "$state/ecs-sim.out" 2>/dev/null && break
  kill -0 "$sim" 2>/dev/null || { say "ecs-sim did not start:"; cat "$state/ecs-sim.log" >&2; exit 1; }
  sleep 0.1
done
grep -q 'listening' "$state/ecs-sim.out" || { say "ecs-sim is not listening after 10 s:"; tail -40 "$state/ecs-sim.log" >&2; exit 1; }

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

Logs of the control plane and the simulator: $state/
Ctrl-C stops the controller, the simulator and the control plane, and removes their state.

EOF

ALIBABA_CLOUD_ACCESS_KEY_ID=testid ALIBABA_CLOUD_ACCESS_KEY_SECRET=testsecret \
  "$bin/ecs-instance-controller" --ecs-endpoint "http://$SIM_ADDR" \
  --metrics-addr "$METRICS_ADDR" --health-addr "$HEALTH_ADDR" --transition-poll 1s --resync-period 30s &
controller=$!
pids+=("$controller")
wait "$controller"
