#!/usr/bin/env bash
# The end-to-end suite through a real Pod: builds a one-node cluster of real parts on this machine
# (scripts/local-node.sh), installs the controller the way a user does (crds/, then
# `kubectl apply -k` of deploy/overlays/e2e: deploy/ plus the locally built image and the
# simulator sidecar), waits for the Deployment to become Available through its readiness probe,
# and runs `cargo test --test e2e` against it. Then, on the same node: leader election with two
# replicas (deploy/overlays/e2e-leader-election: only the leader calls ECS; deleting its pod hands
# over), the namespaced-RBAC overlay (deploy/overlays/e2e-namespaced), and a rolling restart during
# a mass deletion (deploy/overlays/e2e-shared-sim: every instance released exactly once). Then the
# Helm chart (charts/ecs-instance-controller, with deploy/overlays/e2e/helm-values.yaml): install
# in place of the kustomize objects and a subset of the e2e suite through it, an upgrade with a
# changed value, the safe uninstall of docs/operations.md, and a reinstall finishing a deletion
# made without a controller. Last, the recipe of docs/testing-your-setup.md (the chart with the
# simulator as a test double: install, apply, delete, the call log), its `sh recipe` blocks run
# word for word. Then RRSA through the chart (simulator.enabled and rrsa.enabled): the
# simulator's STS trusts this node's kube-apiserver as OIDC issuer, the controller exchanges its
# projected ServiceAccount token for a role's temporary keys and releases an instance with them.
# Prints the time of each stage; a failing stage prints its name and the controller's state.
#
# Needs root. Extra arguments go to the e2e test binary (after --test-threads=1).
# Knobs: E2E_SEED_FILE (simulator seed), E2E_SIM_LOCAL_PORT (default 19100),
# NODE_E2E_LEADER_ELECTION=0, NODE_E2E_NAMESPACED=0, NODE_E2E_MASS_RESTART=0, NODE_E2E_HELM=0,
# NODE_E2E_RECIPE=0, NODE_E2E_RRSA=0 (skip a stage; the recipe needs jq), HELM (the helm binary; default: what scripts/build-helm.sh prints),
# NODE_E2E_MASS_COUNT (200), and those of scripts/local-node.sh.
# Only the inner part, on a node already built: scripts/local-node.sh scripts/node-e2e.sh --inside
# The install steps are those of scripts/lib/e2e-install.sh, shared with scripts/e2e-kind.sh.
set -euo pipefail
# Under pipefail, `producer | grep -q` fails when grep exits at its first match while the
# producer still writes (SIGPIPE): a match tested after a pipe reads all of it (`>/dev/null`).

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
namespace=ecs-system
deployment=ecs-instance-controller
overlay=${E2E_OVERLAY:-deploy/overlays/e2e}

t_start=${NODE_E2E_T0:-$(date +%s)}
stage_t=$(date +%s)
stage_name=
stage() { # ends the running stage (prints its duration) and starts the next
  local now; now=$(date +%s)
  [ -n "$stage_name" ] && echo "==> node-e2e: $stage_name: $((now - stage_t))s" >&2
  stage_name=$*
  stage_t=$now
  [ -n "$stage_name" ] && echo "==> node-e2e [at $((now - t_start))s] $stage_name" >&2
  return 0
}

if [ "${1:-}" != --inside ]; then
  trap 'status=$?; [ "$status" -eq 0 ] || echo "==> node-e2e: FAILED in stage: $stage_name" >&2' EXIT
  stage "Debian packages (scripts/install-node-deps.sh)"
  scripts/install-node-deps.sh
  stage "Kubernetes binaries (scripts/build-node-bins.sh)"
  scripts/build-node-bins.sh >/dev/null
  stage "release binaries (cargo build --release)"
  cargo build --release --locked -p ecs-instance-controller -p ecs-sim \
    --bin ecs-instance-controller --bin ecs-sim
  stage "e2e test binary (cargo test --no-run)"
  cargo test --locked --test e2e --no-run
  stage "images (scripts/build-images.sh)"
  scripts/build-images.sh "$root/target/images" >/dev/null
  if [ "${NODE_E2E_HELM:-1}" = 1 ] || [ "${NODE_E2E_RECIPE:-1}" = 1 ] || [ "${NODE_E2E_RRSA:-1}" = 1 ]; then
    stage "helm (scripts/build-helm.sh)"
    HELM=${HELM:-$(scripts/build-helm.sh)}
    export HELM
  fi
  stage
  echo "==> node-e2e [at $(($(date +%s) - t_start))s] local node (scripts/local-node.sh)" >&2
  export NODE_E2E_T0=$t_start
  exec scripts/local-node.sh "$0" --inside "$@"
fi
shift

# --- inside: the node runs; KUBECONFIG, CONTAINERD_ADDRESS, PATH (kubectl) are set ---------------
# shellcheck source=lib/e2e-install.sh
. "$root/scripts/lib/e2e-install.sh"
me=node-e2e
work=$LOCAL_NODE_DIR/e2e
rm -rf "$work"; mkdir -p "$work"
sim_port=${E2E_SIM_LOCAL_PORT:-19100}
host_forward_pid=
host_sim_pid=
finish() {
  local status=$?
  e2e_stop_forward_sim
  [ -n "$host_forward_pid" ] && kill "$host_forward_pid" 2>/dev/null || true
  [ -n "$host_sim_pid" ] && kill "$host_sim_pid" 2>/dev/null || true
  if [ "$status" -ne 0 ]; then
    echo "==> node-e2e: FAILED in stage: $stage_name" >&2
    e2e_dump_state
    echo "--- kubelet log (last lines) ---" >&2
    tail -n 40 "$LOCAL_NODE_DIR/logs/kubelet.log" >&2 || true
  fi
  exit "$status"
}
trap finish EXIT

stage "import images into containerd"
for image in ecs-instance-controller ecs-sim ecs-e2e-forward; do
  [ -f "$root/target/images/$image.oci.tar" ] || continue
  ctr -n k8s.io images import "$root/target/images/$image.oci.tar" >&2
done

stage "install: crds/ and $overlay"
e2e_install_crds
e2e_install_config # sets seed
e2e_apply_overlay "$overlay"

stage "Deployment Available (readiness probe, restricted Pod Security, read-only root)"
e2e_wait_available

stage "port-forward the simulator to 127.0.0.1:$sim_port"
e2e_forward_sim

stage "cargo test --test e2e (through the Pod)"
e2e_test "$@"
e2e_stop_forward_sim

# Helpers of the leader-election and namespaced stages.
lease_holder() {
  kubectl -n "$namespace" get lease ecs-instance-controller -o jsonpath='{.spec.holderIdentity}' 2>/dev/null
}
running_pods() {
  kubectl -n "$namespace" get pods -l app.kubernetes.io/name=ecs-instance-controller \
    -o jsonpath='{range .items[?(@.status.phase=="Running")]}{.metadata.name}{" "}{.metadata.deletionTimestamp}{"\n"}{end}' |
    awk 'NF == 1 { print $1 }'
}
# calls POD ACTION [PYTHON]: how many ACTION calls POD's simulator has logged; with PYTHON (an
# expression over `calls`, the JSON list), what it prints instead.
calls() {
  local pf_log=$work/pf-$1.log pf n=
  kubectl -n "$namespace" port-forward "pod/$1" 19101:9100 >"$pf_log" 2>&1 &
  pf=$!
  for _ in $(seq 40); do
    n=$(curl -fsS "http://127.0.0.1:19101/_sim/calls?action=$2" 2>/dev/null |
      python3 -c "import json, sys; calls = json.load(sys.stdin); print(${3:-len(calls)})" 2>/dev/null) && break
    sleep 0.25
  done
  kill "$pf" 2>/dev/null || true
  wait "$pf" 2>/dev/null || true
  [ -n "$n" ] || { cat "$pf_log" >&2; echo "node-e2e: no call log from $1's simulator" >&2; return 1; }
  echo "$n"
}
wait_leader_among() { # pods...: waits until the Lease names one of them, prints it
  local deadline=$((SECONDS + 60)) holder
  while [ "$SECONDS" -lt "$deadline" ]; do
    holder=$(lease_holder)
    for p in "$@"; do [ "$holder" = "$p" ] && { echo "$p"; return 0; }; done
    sleep 0.5
  done
  echo "node-e2e: the Lease names '$holder', none of: $*" >&2
  return 1
}


if [ "${NODE_E2E_LEADER_ELECTION:-1}" = 1 ]; then
  stage "leader election: deploy/overlays/e2e-leader-election (two replicas, one Lease)"
  # Each replica has its own simulator sidecar, so each simulator's call log is what its replica
  # sent to ECS.
  le_ns=e2e-leader-election
  e2e_apply_overlay deploy/overlays/e2e-leader-election
  e2e_rollout
  for _ in $(seq 60); do [ "$(running_pods | wc -l)" = 2 ] && break; sleep 1; done
  mapfile -t pods < <(running_pods)
  [ "${#pods[@]}" = 2 ] || { echo "node-e2e: expected 2 running replicas, have: ${pods[*]}" >&2; exit 1; }
  leader=$(wait_leader_among "${pods[@]}")
  follower=${pods[0]}; [ "$follower" = "$leader" ] && follower=${pods[1]}
  echo "node-e2e: leader $leader, follower $follower" >&2

  # A Stopped instance (seeded in every simulator) under an EcsInstance: the leader observes it.
  kubectl create namespace "$le_ns" --dry-run=client -o yaml | kubectl apply -f -
  kubectl -n "$le_ns" apply -f - <<'YAML'
apiVersion: ecs.alicloud.dev/v1alpha1
kind: EcsInstance
metadata:
  name: handover
spec:
  instanceId: i-e2eseedstopped01
  regionId: cn-hangzhou
YAML
  kubectl -n "$le_ns" wait ecsinstance/handover --for=condition=Ready --timeout=60s
  sleep 5 # a few resyncs (RESYNC_PERIOD=2s)
  leader_calls=$(calls "$leader" DescribeInstances)
  follower_calls=$(calls "$follower" DescribeInstances)
  echo "node-e2e: DescribeInstances calls: leader $leader_calls, follower $follower_calls" >&2
  [ "$leader_calls" -gt 0 ] && [ "$follower_calls" = 0 ] ||
    { echo "node-e2e: FAILED: only the leader may call ECS" >&2; exit 1; }

  # Handover: delete the leader's pod; another replica (the follower, or the pod that replaces
  # the deleted one, whichever asks first) takes the Lease.
  t_delete=$(date +%s.%N)
  kubectl -n "$namespace" delete pod "$leader" --wait=false
  new_leader=
  for _ in $(seq 120); do
    holder=$(lease_holder)
    if [ -n "$holder" ] && [ "$holder" != "$leader" ] && running_pods | grep -x "$holder" >/dev/null; then
      new_leader=$holder
      break
    fi
    sleep 0.5
  done
  t_lead=$(date +%s.%N)
  [ -n "$new_leader" ] || { echo "node-e2e: FAILED: no other replica took the Lease in 60s" >&2; exit 1; }
  handover=$(python3 -c "print(f'{$t_lead - $t_delete:.1f}')")
  echo "node-e2e: $new_leader holds the Lease ${handover}s after the leader's pod was deleted" >&2
  # The new leader releases the instance when its EcsInstance is deleted.
  kubectl -n "$le_ns" delete ecsinstance handover --wait=false
  kubectl -n "$le_ns" wait ecsinstance/handover --for=delete --timeout=90s
  deletes=$(calls "$new_leader" DeleteInstance)
  echo "node-e2e: DeleteInstance calls by the new leader: $deletes" >&2
  [ "$deletes" = 1 ] || { echo "node-e2e: FAILED: expected exactly one DeleteInstance" >&2; exit 1; }
  kubectl delete namespace "$le_ns" --wait=false
fi

if [ "${NODE_E2E_NAMESPACED:-1}" = 1 ]; then
  stage "namespaced RBAC: deploy/overlays/e2e-namespaced (team-a, team-b; no cluster-wide rights)"
  for ns in team-a team-b e2e-unwatched; do
    kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -
  done
  # As a user switching from deploy/ to the namespaced overlay: `apply` does not prune the
  # cluster-wide binding.
  kubectl delete clusterrolebinding ecs-instance-controller --ignore-not-found
  e2e_apply_overlay deploy/overlays/e2e-namespaced
  e2e_rollout
  sa=system:serviceaccount:$namespace:ecs-instance-controller
  can() { kubectl auth can-i "$@" --as "$sa" >/dev/null 2>&1; }
  can list secrets -n team-a && can watch ecsinstances.ecs.alicloud.dev -n team-b &&
    ! can list secrets --all-namespaces && ! can get secrets -n e2e-unwatched &&
    ! can list ecsinstances.ecs.alicloud.dev --all-namespaces ||
    { echo "node-e2e: FAILED: the namespaced overlay's rights are not what they should be" >&2; exit 1; }
  echo "node-e2e: the ServiceAccount reads Secrets in team-a/team-b only" >&2
  for target in team-a:i-e2eseedstopped01 e2e-unwatched:i-e2eseedrunning01; do
    kubectl -n "${target%%:*}" apply -f - <<YAML
apiVersion: ecs.alicloud.dev/v1alpha1
kind: EcsInstance
metadata:
  name: scoped
spec:
  instanceId: ${target#*:}
  regionId: cn-hangzhou
YAML
  done
  kubectl -n team-a wait ecsinstance/scoped --for=condition=Ready --timeout=60s
  kubectl -n team-a delete ecsinstance scoped --wait=false
  kubectl -n team-a wait ecsinstance/scoped --for=delete --timeout=60s
  sleep 3
  # An untouched status is the CRD's schema default, {observedGeneration: 0}.
  unwatched=$(kubectl -n e2e-unwatched get ecsinstance scoped \
    -o jsonpath='{.metadata.finalizers}{.status.observedGeneration}{.status.conditions}')
  [ -z "$unwatched" ] || [ "$unwatched" = 0 ] ||
    { echo "node-e2e: FAILED: the controller touched a resource outside its namespaces: $unwatched" >&2; exit 1; }
  pod=$(running_pods | head -n 1)
  deletes=$(calls "$pod" DeleteInstance)
  [ "$deletes" = 1 ] || { echo "node-e2e: FAILED: expected one DeleteInstance, saw $deletes" >&2; exit 1; }
  echo "node-e2e: released team-a's instance (1 DeleteInstance), left e2e-unwatched's alone" >&2
  kubectl -n e2e-unwatched delete ecsinstance scoped --wait=false
fi
if [ "${NODE_E2E_MASS_RESTART:-1}" = 1 ] && [ -f "$root/target/images/ecs-e2e-forward.oci.tar" ]; then
  n=${NODE_E2E_MASS_COUNT:-200}
  stage "rolling restart during a mass deletion: $n instances, deploy/overlays/e2e-shared-sim"
  node_ip=$(kubectl get node "$LOCAL_NODE_NAME" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
  [ "$node_ip" = 10.244.0.1 ] ||
    { echo "node-e2e: FAILED: deploy/overlays/e2e-shared-sim expects the node at 10.244.0.1, not $node_ip" >&2; exit 1; }
  # One simulator on the node's loopback for both replicas, reachable from the pods at
  # 10.244.0.1:9101 (the node's own address) through socat.
  "$root/target/release/ecs-sim" --listen 127.0.0.1:19200 --transition-ms 200 --release-linger-ms 500 \
    >"$work/host-sim.log" 2>&1 &
  host_sim_pid=$!
  socat TCP-LISTEN:9101,bind=10.244.0.1,fork,reuseaddr TCP:127.0.0.1:19200 >"$work/host-forward.log" 2>&1 &
  host_forward_pid=$!
  sim=http://127.0.0.1:19200
  for _ in $(seq 40); do curl -fsS "$sim/_sim/health" >/dev/null 2>&1 && break; sleep 0.25; done
  python3 - "$n" >"$work/mass-seed.json" <<'PY2'
import json, sys
print(json.dumps([{"instanceId": f"i-e2emass{i:04d}", "regionId": "cn-hangzhou", "status": "Stopped"}
                  for i in range(int(sys.argv[1]))]))
PY2
  curl -fsS -X POST -H 'content-type: application/json' --data @"$work/mass-seed.json" "$sim/_sim/instances" >/dev/null

  e2e_apply_overlay deploy/overlays/e2e-shared-sim
  e2e_rollout
  mass_ns=e2e-mass
  kubectl create namespace "$mass_ns" --dry-run=client -o yaml | kubectl apply -f -
  for i in $(seq 0 $((n - 1))); do
    id=$(printf 'i-e2emass%04d' "$i")
    printf -- '---\napiVersion: ecs.alicloud.dev/v1alpha1\nkind: EcsInstance\nmetadata:\n  name: m%04d\nspec:\n  instanceId: %s\n  regionId: cn-hangzhou\n' "$i" "$id"
  done | kubectl -n "$mass_ns" apply -f - >/dev/null
  kubectl -n "$mass_ns" wait ecsinstance --all --for=condition=Ready --timeout=120s >/dev/null
  echo "node-e2e: $n EcsInstances Ready; deleting them all and restarting the controller at once" >&2
  t_mass=$(date +%s)
  holder_before=$(lease_holder)
  transitions_before=$(kubectl -n "$namespace" get lease ecs-instance-controller -o jsonpath='{.spec.leaseTransitions}')
  kubectl -n "$mass_ns" delete ecsinstance --all --wait=false >/dev/null
  kubectl -n "$namespace" rollout restart "deployment/$deployment"
  e2e_rollout
  kubectl -n "$mass_ns" wait ecsinstance --all --for=delete --timeout=180s >/dev/null 2>&1 || true
  left=$(kubectl -n "$mass_ns" get ecsinstance -o name | wc -l)
  [ "$left" = 0 ] || { echo "node-e2e: FAILED: $left EcsInstances left" >&2; kubectl -n "$mass_ns" get ecsi >&2; exit 1; }
  echo "node-e2e: all $n released $(( $(date +%s) - t_mass ))s after the deletion (rolling restart included)" >&2
  curl -fsS "$sim/_sim/calls?action=DeleteInstance" >"$work/mass-deletes.json"
  kubectl -n "$namespace" get lease ecs-instance-controller -o json >"$work/lease.json"
  python3 - "$n" "$work/mass-deletes.json" "$work/lease.json" "$holder_before" "${transitions_before:-0}" <<'PY2'
import collections, datetime, json, sys
n = int(sys.argv[1])
lease = json.load(open(sys.argv[3]))["spec"]
holder_before, transitions_before = sys.argv[4], int(sys.argv[5] or 0)
def ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
acquired = ts(lease["acquireTime"])
accepted = [c for c in json.load(open(sys.argv[2]))
            if c["params"].get("InstanceId", "").startswith("i-e2emass") and c.get("httpStatus") == 200]
before = sum(1 for c in accepted if ts(c["at"]) < acquired)
print(f"node-e2e: Lease {holder_before} -> {lease['holderIdentity']} "
      f"({lease.get('leaseTransitions', 0) - transitions_before} transitions during the run); "
      f"accepted DeleteInstance before the last handover: {before}, after: {len(accepted) - before}",
      file=sys.stderr)
calls = [c for c in json.load(open(sys.argv[2])) if c["params"].get("InstanceId", "").startswith("i-e2emass")]
ok = collections.Counter(c["params"]["InstanceId"] for c in calls if c.get("httpStatus") == 200)
other = collections.Counter(f'{c.get("httpStatus")} {c.get("code")}' for c in calls if c.get("httpStatus") != 200)
print(f"node-e2e: DeleteInstance calls: {len(calls)}, accepted: {sum(ok.values())} for {len(ok)} instances; others: {dict(other)}", file=sys.stderr)
twice = {k: v for k, v in ok.items() if v > 1}
if len(ok) != n or twice:
    sys.exit(f"node-e2e: FAILED: expected exactly one accepted DeleteInstance for each of {n} instances; twice: {twice}")
PY2
  kubectl delete namespace "$mass_ns" --wait=false
fi

if [ "${NODE_E2E_HELM:-1}" = 1 ]; then
  HELM=${HELM:-$(scripts/build-helm.sh)}
  # Helm's own state (repositories, cache) in the run's directory, not in root's home.
  helm() {
    HELM_CONFIG_HOME=$work/helm/config HELM_CACHE_HOME=$work/helm/cache HELM_DATA_HOME=$work/helm/data \
      "$HELM" "$@"
  }
  release=ecs-instance-controller
  chart=charts/ecs-instance-controller
  helm_values=deploy/overlays/e2e/helm-values.yaml
  crd=crd/ecsinstances.ecs.alicloud.dev
  finalizer=ecs.alicloud.dev/release-instance
  controller_pods=app.kubernetes.io/name=ecs-instance-controller
  terminating() { # every EcsInstance being deleted, as NAMESPACE/NAME
    kubectl get ecsinstance -A \
      -o jsonpath='{range .items[?(@.metadata.deletionTimestamp)]}{.metadata.namespace}/{.metadata.name}{"\n"}{end}'
  }
  gone() { # KUBECTL-GET-ARGS...: waits up to 90s until they list nothing (kubectl wait refuses none)
    for _ in $(seq 180); do [ -z "$(kubectl get "$@" -o name)" ] && return 0; sleep 0.5; done
    echo "node-e2e: still there after 90s: $(kubectl get "$@" -o name | tr '\n' ' ')" >&2
    return 1
  }
  helm_install() {
    helm install "$release" "$chart" -n "$namespace" -f "$helm_values" --wait --timeout 3m >&2
    kubectl -n "$namespace" wait "deployment/$deployment" --for=condition=Available --timeout=60s
  }
  helm_uninstall() {
    helm uninstall "$release" -n "$namespace" --wait --timeout 2m >&2
    gone pods -n "$namespace" -l "$controller_pods"
  }

  stage "helm install: charts/ecs-instance-controller in place of the kustomize objects"
  # As a user switching: remove the kustomize objects (Helm adopts nothing it did not create),
  # keeping the namespace with its Secret; the CRD stays, and with it the EcsInstances the e2e
  # suite left (e.g. a never-deleted `ghost`): they wait harmlessly for the next controller.
  kubectl delete deployment,service,serviceaccount,role,rolebinding -A -l app.kubernetes.io/part-of=ecs-instance-controller
  kubectl delete clusterrole,clusterrolebinding -l app.kubernetes.io/part-of=ecs-instance-controller
  gone pods -n "$namespace" -l "$controller_pods"
  # Each pod's simulator also knows the instances of the uninstall stage.
  python3 - "$seed" >"$work/helm-seed.json" <<'PY2'
import json, sys
seed = json.load(open(sys.argv[1]))
seed += [{"instanceId": "i-e2ehelmstop01", "regionId": "cn-hangzhou", "status": "Stopped"},
         {"instanceId": "i-e2ehelmkeep01", "regionId": "cn-hangzhou", "status": "Running"}]
print(json.dumps(seed))
PY2
  e2e_seed_configmap "$work/helm-seed.json"
  helm_install
  [ "$(kubectl -n "$namespace" get "deployment/$deployment" -o jsonpath='{.metadata.labels.app\.kubernetes\.io/managed-by}')" = Helm ] ||
    { echo "node-e2e: FAILED: the Deployment is not Helm's" >&2; exit 1; }

  stage "cargo test --test e2e, a subset (through the Helm-installed Pod)"
  e2e_forward_sim
  e2e_test a_stopped_instance_is_released_and_counted orphan_leaves_the_instance_alone
  e2e_stop_forward_sim

  stage "helm upgrade: logLevel=debug"
  helm upgrade "$release" "$chart" -n "$namespace" -f "$helm_values" --set logLevel=debug \
    --wait --timeout 3m >&2
  e2e_rollout
  [ "$(helm status "$release" -n "$namespace" -o json | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')" = 2 ] ||
    { echo "node-e2e: FAILED: the release is not at revision 2" >&2; exit 1; }
  mapfile -t pods < <(running_pods)
  [ "${#pods[@]}" = 1 ] || { echo "node-e2e: FAILED: expected one running pod, have: ${pods[*]}" >&2; exit 1; }
  rust_log=$(kubectl -n "$namespace" get pod "${pods[0]}" \
    -o jsonpath='{.spec.containers[?(@.name=="controller")].env[?(@.name=="RUST_LOG")].value}')
  [ "$rust_log" = debug ] || { echo "node-e2e: FAILED: the new pod has RUST_LOG='$rust_log'" >&2; exit 1; }
  debug=
  for _ in $(seq 60); do
    kubectl -n "$namespace" logs "${pods[0]}" -c controller | grep '"level":"DEBUG"' >/dev/null && { debug=1; break; }
    sleep 0.5
  done
  [ -n "$debug" ] || { echo "node-e2e: FAILED: no DEBUG line in ${pods[0]}'s log" >&2; exit 1; }
  echo "node-e2e: revision 2 rolled out: ${pods[0]} logs at debug level" >&2

  stage "helm uninstall, the safe way (docs/operations.md, Uninstall)"
  for ns in e2e-uninstall e2e-keep; do
    kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -
  done
  for target in e2e-uninstall:release-me:i-e2ehelmstop01 e2e-uninstall:keep-me:i-e2ehelmkeep01 \
    e2e-keep:stays:i-e2eseedstopped01; do
    IFS=: read -r ns name id <<<"$target"
    kubectl -n "$ns" apply -f - <<YAML
apiVersion: ecs.alicloud.dev/v1alpha1
kind: EcsInstance
metadata:
  name: $name
spec:
  instanceId: $id
  regionId: cn-hangzhou
YAML
    kubectl -n "$ns" wait "ecsinstance/$name" --for=condition=Ready --timeout=60s
  done
  # The procedure: orphan what must stay in ECS, delete what goes, wait until it is gone, check
  # that nothing is Terminating, then uninstall. e2e-keep/stays is kept as a resource.
  kubectl -n e2e-uninstall patch ecsinstance keep-me --type merge -p '{"spec":{"deletionPolicy":"Orphan"}}'
  kubectl -n e2e-uninstall delete ecsinstance --all --wait=false
  gone ecsinstance -n e2e-uninstall
  [ -z "$(terminating)" ] || { echo "node-e2e: FAILED: EcsInstances Terminating before the uninstall: $(terminating)" >&2; exit 1; }
  released=$(calls "${pods[0]}" DeleteInstance \
    '" ".join(sorted(c["params"]["InstanceId"] for c in calls if c.get("httpStatus") == 200))')
  [ "$released" = i-e2ehelmstop01 ] ||
    { echo "node-e2e: FAILED: expected only i-e2ehelmstop01 released, saw: '$released'" >&2; exit 1; }
  helm_uninstall
  kubectl get "$crd" >/dev/null || { echo "node-e2e: FAILED: helm uninstall deleted the CRD" >&2; exit 1; }
  kept=$(kubectl -n e2e-keep get ecsinstance stays -o jsonpath='{.metadata.deletionTimestamp}|{.metadata.finalizers[*]}')
  [ "$kept" = "|$finalizer" ] ||
    { echo "node-e2e: FAILED: e2e-keep/stays did not stay as it was: '$kept'" >&2; exit 1; }
  [ -z "$(terminating)" ] || { echo "node-e2e: FAILED: EcsInstances Terminating after the uninstall: $(terminating)" >&2; exit 1; }
  [ -z "$(kubectl get deployment,serviceaccount,clusterrole,clusterrolebinding -A -l app.kubernetes.io/managed-by=Helm -o name)" ] ||
    { echo "node-e2e: FAILED: helm uninstall left objects" >&2; exit 1; }
  kubectl -n "$namespace" get secret ecs-credentials >/dev/null
  # The emptied namespace goes: no finalizer holds it.
  kubectl delete namespace e2e-uninstall --timeout=60s
  ! kubectl get namespace e2e-uninstall >/dev/null 2>&1 ||
    { echo "node-e2e: FAILED: namespace e2e-uninstall is still there" >&2; exit 1; }
  echo "node-e2e: uninstalled: CRD and e2e-keep/stays kept, release-me released, keep-me orphaned, e2e-uninstall gone" >&2

  stage "too late: a namespace deleted without the controller hangs; a reinstall finishes it"
  kubectl delete namespace e2e-keep --wait=false
  # The namespace controller deletes the contents on its own schedule: wait until it has.
  hanging=
  for _ in $(seq 120); do
    hanging=$(kubectl -n e2e-keep get ecsinstance stays -o jsonpath='{.metadata.deletionTimestamp}')
    [ -n "$hanging" ] && break
    sleep 0.5
  done
  sleep 5 # and it still hangs a while later
  phase=$(kubectl get namespace e2e-keep -o jsonpath='{.status.phase}')
  [ -n "$hanging" ] && [ "$phase" = Terminating ] ||
    { echo "node-e2e: FAILED: expected e2e-keep/stays to hang (deletionTimestamp '$hanging', namespace $phase)" >&2; exit 1; }
  helm_install
  kubectl wait namespace/e2e-keep --for=delete --timeout=90s
  helm_uninstall
  kubectl get "$crd" >/dev/null || { echo "node-e2e: FAILED: helm uninstall deleted the CRD" >&2; exit 1; }
  [ -z "$(terminating)" ] || { echo "node-e2e: FAILED: EcsInstances Terminating at the end: $(terminating)" >&2; exit 1; }
  echo "node-e2e: the reinstalled controller released e2e-keep/stays; the namespace is gone" >&2
fi

if [ "${NODE_E2E_RECIPE:-1}" = 1 ]; then
  stage "the recipe of docs/testing-your-setup.md, word for word (helm, simulator.enabled)"
  command -v jq >/dev/null ||
    { echo "node-e2e: the recipe asserts with jq: install it (Debian package jq)" >&2; exit 1; }
  HELM=${HELM:-$(scripts/build-helm.sh)}
  # As a user switching from deploy/ (a no-op after the Helm stages' uninstall): the kustomize
  # objects go, the namespace, its Secret and the CRD stay.
  kubectl delete deployment,service,serviceaccount,role,rolebinding -A \
    -l app.kubernetes.io/part-of=ecs-instance-controller --ignore-not-found
  kubectl delete clusterrole,clusterrolebinding -l app.kubernetes.io/part-of=ecs-instance-controller \
    --ignore-not-found
  for _ in $(seq 180); do
    [ -z "$(kubectl -n "$namespace" get pods -l app.kubernetes.io/part-of=ecs-instance-controller -o name)" ] &&
      [ -z "$(kubectl -n "$namespace" get pods -l app.kubernetes.io/name=ecs-instance-controller -o name)" ] && break
    sleep 0.5
  done
  # The doc's commands as they are written, block by block, from the repository root, with
  # kubectl and helm on PATH (helm keeps its state in the run's directory) and the images
  # imported above (localhost/...:dev).
  recipe=$work/recipe
  mkdir -p "$recipe/bin"
  cat >"$recipe/bin/helm" <<SH
#!/bin/sh
HELM_CONFIG_HOME=$work/helm/config HELM_CACHE_HOME=$work/helm/cache HELM_DATA_HOME=$work/helm/data exec $HELM "\$@"
SH
  chmod +x "$recipe/bin/helm"
  blocks=$(e2e_recipe_blocks docs/testing-your-setup.md "$recipe")
  recipe_block() { # N: runs block N of the recipe as the doc shows it
    local file t0
    file=$recipe/$(printf %02d "$1").sh
    echo "node-e2e: recipe block $1 of $blocks:" >&2
    sed 's/^/  | /' "$file" >&2
    t0=$(date +%s)
    PATH="$recipe/bin:$PATH" bash -euo pipefail "$file"
    echo "node-e2e: recipe block $1 passed in $(($(date +%s) - t0))s" >&2
  }
  for i in $(seq 1 $((blocks - 1))); do recipe_block "$i"; done
  # Before the last block (the clean-up), what the doc says of the running setup: the warning at
  # the controller's start naming the endpoint, the metric, the simulator's own warning.
  sim_service_ip=$(kubectl -n "$namespace" get service ecs-instance-controller-sim -o jsonpath='{.spec.clusterIP}')
  kubectl -n "$namespace" logs deployment/ecs-instance-controller -c controller |
    grep -- '--allow-insecure-endpoint' | grep "http://$sim_service_ip:9100" >/dev/null ||
    { echo "node-e2e: FAILED: no start-up warning naming http://$sim_service_ip:9100 in the controller's log" >&2; exit 1; }
  kubectl get --raw "/api/v1/namespaces/$namespace/services/ecs-instance-controller-metrics:8080/proxy/metrics" |
    grep -x 'ecs_instance_controller_insecure_endpoint 1' >/dev/null ||
    { echo "node-e2e: FAILED: ecs_instance_controller_insecure_endpoint is not 1" >&2; exit 1; }
  # The recipe can be done a few seconds after the simulator started: give its log a moment.
  sim_warned=
  for _ in $(seq 1 20); do
    if kubectl -n "$namespace" logs deployment/ecs-instance-controller-sim |
      grep 'WARNING: listening on the non-loopback address' >/dev/null; then
      sim_warned=1
      break
    fi
    sleep 0.5
  done
  [ -n "$sim_warned" ] ||
    { echo "node-e2e: FAILED: no non-loopback warning in the simulator's log:" >&2
      kubectl -n "$namespace" logs deployment/ecs-instance-controller-sim >&2 || true; exit 1; }
  echo "node-e2e: the controller warned about plain HTTP to http://$sim_service_ip:9100 and exports insecure_endpoint 1" >&2
  recipe_block "$blocks"
  [ -z "$(kubectl get deployment,service,secret,configmap -A -l app.kubernetes.io/managed-by=Helm -o name)" ] ||
    { echo "node-e2e: FAILED: the recipe's uninstall left objects" >&2; exit 1; }
fi

if [ "${NODE_E2E_RRSA:-1}" = 1 ]; then
  stage "RRSA through the chart (simulator.enabled + rrsa.enabled): the node's ServiceAccount token for a role"
  HELM=${HELM:-$(scripts/build-helm.sh)}
  rrsa_helm() {
    HELM_CONFIG_HOME=$work/helm/config HELM_CACHE_HOME=$work/helm/cache HELM_DATA_HOME=$work/helm/data \
      "$HELM" "$@"
  }
  rrsa_account=2222222222222222
  rrsa_role=acs:ram::$rrsa_account:role/ecs-releaser
  rrsa_provider=acs:ram::$rrsa_account:oidc-provider/ack-rrsa-local-node
  rrsa_instance="i-e2errsa00000001"
  rrsa_ns=e2e-rrsa
  rrsa_accounts=ecs-sim-rrsa-accounts
  rrsa_sim=ecs-instance-controller-sim
  # The chart's ServiceAccount (release ecs-instance-controller: the names of deploy/).
  rrsa_subject=system:serviceaccount:$namespace:ecs-instance-controller
  rrsa_fail() {
    echo "node-e2e: FAILED: $*" >&2
    echo "--- the simulator's log ---" >&2
    kubectl -n "$namespace" logs "deployment/$rrsa_sim" --tail=100 >&2 || true
    echo "--- the simulator's STS calls ---" >&2
    kubectl get --raw "/api/v1/namespaces/$namespace/services/$rrsa_sim:9100/proxy/_sim/calls?action=AssumeRoleWithOIDC" >&2 || true
    exit 1
  }
  # As a user switching from deploy/ (a no-op after the Helm or recipe stages' uninstall): the
  # kustomize objects go; the namespace and the CRD stay.
  kubectl delete deployment,service,serviceaccount,role,rolebinding -A \
    -l app.kubernetes.io/part-of=ecs-instance-controller --ignore-not-found
  kubectl delete clusterrole,clusterrolebinding -l app.kubernetes.io/part-of=ecs-instance-controller \
    --ignore-not-found
  for _ in $(seq 180); do
    [ -z "$(kubectl -n "$namespace" get pods -l app.kubernetes.io/part-of=ecs-instance-controller -o name)" ] &&
      [ -z "$(kubectl -n "$namespace" get pods -l app.kubernetes.io/name=ecs-instance-controller -o name)" ] && break
    sleep 0.5
  done

  # The simulator's STS trusts this node's kube-apiserver as the OIDC issuer of the role's
  # provider: the issuer it announces (--service-account-issuer) and the public key of its
  # --service-account-key-file (scripts/local-node.sh), for the chart's ServiceAccount only. The
  # role's account owns the seeded instance; the default test account (testid) stays, and cannot
  # see it.
  rrsa_issuer=$(kubectl get --raw /.well-known/openid-configuration |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["issuer"])')
  mkdir -p "$work/rrsa"
  cp "$LOCAL_NODE_DIR/pki/sa.pub" "$work/rrsa/sa.pub"
  python3 - "$rrsa_role" "$rrsa_provider" "$rrsa_subject" "$rrsa_issuer" >"$work/rrsa/accounts.json" <<'PY2'
import json, sys
role, provider, subject, issuer = sys.argv[1:5]
print(json.dumps({
    "roles": [{"arn": role, "trustedOidcProviders": [{"providerArn": provider, "subjects": [subject]}]}],
    "oidcProviders": [{"arn": provider, "issuerUrl": issuer, "clientIds": ["sts.aliyuncs.com"],
                       "publicKeyFiles": ["sa.pub"]}],
}, indent=2))
PY2
  kubectl -n "$namespace" create configmap "$rrsa_accounts" --from-file=accounts.json="$work/rrsa/accounts.json" \
    --from-file=sa.pub="$work/rrsa/sa.pub" --dry-run=client -o yaml | kubectl apply -f -
  cat >"$work/rrsa/values.yaml" <<YAML
image:
  registry: localhost
  tag: dev
  pullPolicy: Never
extraEnv:
  - name: TRANSITION_POLL
    value: 200ms
  - name: RESYNC_PERIOD
    value: 2s
rrsa:
  enabled: true
  roleArn: $rrsa_role
  oidcProviderArn: $rrsa_provider
simulator:
  enabled: true
  accountsConfigMap: $rrsa_accounts
  seed:
    - {instanceId: $rrsa_instance, regionId: cn-hangzhou, status: Stopped, owner: "$rrsa_account"}
  extraArgs: [--transition-ms=200, --release-linger-ms=500]
YAML
  echo "node-e2e: issuer $rrsa_issuer, subject $rrsa_subject, role $rrsa_role" >&2
  rrsa_helm install ecs-instance-controller charts/ecs-instance-controller -n "$namespace" \
    -f "$work/rrsa/values.yaml" --wait --timeout 3m >&2
  kubectl -n "$namespace" wait "deployment/$deployment" --for=condition=Available --timeout=60s

  # The token the kubelet projected into the controller's pod (read from the kubelet's volume on
  # this node: the image has no shell): the API server's issuer, RRSA's audience, the subject.
  rrsa_pod=$(kubectl -n "$namespace" get pods -l app.kubernetes.io/name=ecs-instance-controller \
    -o jsonpath='{.items[0].metadata.name}')
  rrsa_uid=$(kubectl -n "$namespace" get pod "$rrsa_pod" -o jsonpath='{.metadata.uid}')
  rrsa_token_file=$LOCAL_NODE_DIR/kubelet/pods/$rrsa_uid/volumes/kubernetes.io~projected/rrsa-oidc-token/token
  [ -s "$rrsa_token_file" ] || rrsa_fail "no projected token at $rrsa_token_file"
  python3 - "$rrsa_token_file" "$rrsa_issuer" "$rrsa_subject" <<'PY2' || rrsa_fail "the projected token is not RRSA's"
import base64, json, sys
token = open(sys.argv[1]).read().strip()
payload = token.split(".")[1]
claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
print(f"node-e2e: projected token: iss {claims['iss']}, aud {aud}, sub {claims['sub']}, "
      f"lifetime {claims['exp'] - claims['iat']}s", file=sys.stderr)
assert claims["iss"] == sys.argv[2] and aud == ["sts.aliyuncs.com"] and claims["sub"] == sys.argv[3], claims
PY2

  kubectl create namespace "$rrsa_ns" --dry-run=client -o yaml | kubectl apply -f -
  kubectl -n "$rrsa_ns" apply -f - <<YAML
apiVersion: ecs.alicloud.dev/v1alpha1
kind: EcsInstance
metadata:
  name: rrsa
spec:
  instanceId: $rrsa_instance
  regionId: cn-hangzhou
YAML
  kubectl -n "$rrsa_ns" wait ecsinstance/rrsa --for=condition=Ready --timeout=60s ||
    rrsa_fail "ecsinstance/rrsa not Ready: $(kubectl -n "$rrsa_ns" get ecsinstance rrsa -o jsonpath='{.status.conditions}')"
  observed_role=$(kubectl -n "$rrsa_ns" get ecsinstance rrsa -o jsonpath='{.status.instance.observedWith.roleArn}')
  [ "$observed_role" = "$rrsa_role" ] || rrsa_fail "observedWith.roleArn is '$observed_role', not $rrsa_role"
  echo "node-e2e: ecsinstance/rrsa Ready, observed with $observed_role" >&2
  kubectl -n "$rrsa_ns" delete ecsinstance rrsa --wait=false
  kubectl -n "$rrsa_ns" wait ecsinstance/rrsa --for=delete --timeout=60s || rrsa_fail "ecsinstance/rrsa not released in 60s"

  # The simulator's call log and sessions, through the API server's Service proxy.
  sim_api=/api/v1/namespaces/$namespace/services/$rrsa_sim:9100/proxy/_sim
  kubectl get --raw "$sim_api/calls" >"$work/rrsa/calls.json"
  kubectl get --raw "$sim_api/sts/sessions" >"$work/rrsa/sessions.json"
  python3 - "$work/rrsa/calls.json" "$work/rrsa/sessions.json" "$rrsa_instance" "$rrsa_role" "$rrsa_provider" <<'PY2' ||
import json, sys
calls, sessions = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
instance, role, provider = sys.argv[3:6]
ok = lambda c: c.get("httpStatus") == 200
deletes = [c for c in calls if c["action"] == "DeleteInstance" and (c.get("params") or {}).get("InstanceId") == instance]
exchanges = [c for c in calls if c["action"] == "AssumeRoleWithOIDC"]
print(f"node-e2e: DeleteInstance {[(c['accessKeyId'], c['httpStatus'], c['code']) for c in deletes]}; "
      f"AssumeRoleWithOIDC {[(c['httpStatus'], c['code']) for c in exchanges]}; "
      f"sessions {[(s['source'], s['roleArn'], s['accessKeyId']) for s in sessions]}", file=sys.stderr)
accepted = [c for c in deletes if ok(c)]
assert len(accepted) == 1, f"expected one accepted DeleteInstance of {instance}: {deletes}"
key = accepted[0]["accessKeyId"]
assert key.startswith("STS."), f"released with {key}, not a temporary key"
good = [c for c in exchanges if ok(c)]
assert good, f"no accepted AssumeRoleWithOIDC: {exchanges}"
assert all(c["params"].get("RoleArn") == role and c["params"].get("OIDCProviderArn") == provider
           and c["params"].get("OIDCToken") == "<redacted>" for c in good), good
assert not [c for c in exchanges if not ok(c)], f"refused exchanges: {exchanges}"
assert any(s["accessKeyId"] == key and s["roleArn"] == role and s["source"] == "AssumeRoleWithOIDC"
           for s in sessions), f"{key} is not a session of {role} from AssumeRoleWithOIDC: {sessions}"
assert not [c for c in calls if c["product"] == "ecs" and c["accessKeyId"] == "testid"], "a call with the test account"
PY2
    rrsa_fail "the simulator's call log"

  # The controller's log: names the source, never the token.
  kubectl -n "$namespace" logs "$rrsa_pod" -c controller >"$work/rrsa/controller.log"
  grep '"controller credentials"' "$work/rrsa/controller.log" | grep 'oidc_role_arn' | grep -F "$rrsa_role" >/dev/null ||
    rrsa_fail "no start-up line naming oidc_role_arn $rrsa_role: $(grep -m1 'controller credentials' "$work/rrsa/controller.log")"
  rrsa_token=$(cat "$rrsa_token_file")
  ! grep -qF "$rrsa_token" "$work/rrsa/controller.log" && ! grep -qF "${rrsa_token##*.}" "$work/rrsa/controller.log" &&
    ! grep -qE 'eyJ[A-Za-z0-9_-]+\.eyJ' "$work/rrsa/controller.log" ||
    rrsa_fail "the controller's log holds the token"
  echo "node-e2e: released $rrsa_instance with the role's STS. key after AssumeRoleWithOIDC; the log names $(grep -m1 -o 'oidc_role_arn[^"]*' "$work/rrsa/controller.log"), never the token" >&2

  rrsa_helm uninstall ecs-instance-controller -n "$namespace" --wait --timeout 2m >&2
  kubectl -n "$namespace" delete configmap "$rrsa_accounts" --ignore-not-found
  kubectl delete namespace "$rrsa_ns" --wait=false
fi

stage
echo "==> node-e2e: all stages passed in $(($(date +%s) - t_start))s" >&2
