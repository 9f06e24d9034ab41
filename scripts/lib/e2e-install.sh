# shellcheck shell=bash disable=SC2154 # the variables of the caller, listed below
# Sourced by the end-to-end scripts, scripts/node-e2e.sh (a one-node cluster of real parts) and
# scripts/e2e-kind.sh (a kind cluster): the steps that install the controller the way a user does
# and run tests/e2e.rs through its Pod, written once. Sourcing only defines functions.
#
# The functions run kubectl (on PATH, against KUBECONFIG's cluster), curl and cargo, and read these
# variables of the caller (each those it uses): root (the repository), namespace (the
# controller's, ecs-system), deployment (the controller's Deployment, ecs-instance-controller),
# work (a directory of the run: the default seed and the port-forward log go there), sim_port (the
# local port of the simulator's forward) and me (the name starting the messages, e.g. node-e2e).
# A failing step returns non-zero (the callers run under `set -e`). Kustomize directories given as
# arguments are the caller's paths.
#
# e2e_install_crds: applies crds/ (server-side) and waits until the EcsInstance CRD is
#   Established.
# e2e_install_config: applies the namespace (deploy/base/namespace.yaml), the Secret
#   ecs-credentials with the simulator's default test account (not a secret), and the ConfigMap
#   ecs-sim-seed, the simulator's seed: the file E2E_SEED_FILE when set, otherwise two instances
#   (i-e2eseedrunning01 Running, i-e2eseedstopped01 Stopped) written to $work/seed.json. Sets
#   seed to the seed file used.
# e2e_seed_configmap FILE: creates or replaces the ConfigMap ecs-sim-seed with FILE (a JSON array
#   of instance specs) as instances.json.
# e2e_apply_overlay DIR: `kubectl apply -k DIR` (e.g. deploy/overlays/e2e).
# e2e_rollout: waits (180 s at most) until the Deployment's rollout is complete.
# e2e_wait_available: e2e_rollout, then waits (60 s) for the Deployment's Available condition
#   (the readiness probe) and lists its namespace's pods on stdout.
# e2e_forward_sim: forwards the simulator sidecar of the Deployment's pod (port 9100) to
#   127.0.0.1:$sim_port in the background, logging to $work/port-forward.log, and waits (30 s)
#   until its /_sim/health answers; fails, with the log, if kubectl exits first. Sets
#   e2e_forward_pid.
# e2e_stop_forward_sim: stops that forward, if any (also fit for an EXIT trap).
# e2e_test [ARG...]: `cargo test --test e2e` against the cluster: E2E_SIM_URL is the forwarded
#   simulator, E2E_CONTROLLER_NAMESPACE=$namespace; ARGs go to the test binary after
#   --test-threads=1 (test names select a subset).
# e2e_recipe_blocks FILE DIR: writes the fenced blocks of the Markdown FILE that open with
#   ```sh recipe (at the start of a line) to DIR/01.sh, DIR/02.sh, … in their order, and prints
#   how many; fails when there are none. So a script runs a documented recipe word for word
#   (docs/testing-your-setup.md).
# e2e_dump_state: prints the controller's state to stderr, for a failed run: the Deployment,
#   ReplicaSets and pods, the pods described, the namespace's events, the last 200 log lines of
#   every container. Never fails.

e2e_install_crds() {
  kubectl apply --server-side -f "$root/crds/"
  kubectl wait --for=condition=Established --timeout=60s crd/ecsinstances.ecs.alicloud.dev
}

e2e_install_config() {
  kubectl apply -f "$root/deploy/base/namespace.yaml"
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
  e2e_seed_configmap "$seed"
}

e2e_seed_configmap() {
  kubectl -n "$namespace" create configmap ecs-sim-seed --from-file=instances.json="$1" \
    --dry-run=client -o yaml | kubectl apply -f -
}

e2e_apply_overlay() {
  kubectl apply -k "$1"
}

e2e_rollout() {
  kubectl -n "$namespace" rollout status "deployment/$deployment" --timeout=180s
}

e2e_wait_available() {
  e2e_rollout
  kubectl -n "$namespace" wait "deployment/$deployment" --for=condition=Available --timeout=60s
  kubectl -n "$namespace" get pods -o wide
}

e2e_forward_sim() {
  kubectl -n "$namespace" port-forward "deployment/$deployment" "$sim_port:9100" \
    >"$work/port-forward.log" 2>&1 &
  e2e_forward_pid=$!
  for _ in $(seq 60); do
    curl -fsS "http://127.0.0.1:$sim_port/_sim/health" >/dev/null 2>&1 && break
    if ! kill -0 "$e2e_forward_pid" 2>/dev/null; then
      cat "$work/port-forward.log" >&2
      echo "$me: kubectl port-forward exited" >&2
      return 1
    fi
    sleep 0.5
  done
  curl -fsS "http://127.0.0.1:$sim_port/_sim/health" >/dev/null
}

e2e_stop_forward_sim() {
  [ -n "${e2e_forward_pid:-}" ] || return 0
  kill "$e2e_forward_pid" 2>/dev/null || true
  wait "$e2e_forward_pid" 2>/dev/null || true
  e2e_forward_pid=
}

e2e_test() {
  E2E_SIM_URL="http://127.0.0.1:$sim_port" E2E_CONTROLLER_NAMESPACE="$namespace" \
    cargo test --locked --test e2e -- --test-threads=1 "$@"
}

e2e_recipe_blocks() {
  local n
  mkdir -p "$2"
  n=$(awk -v dir="$2" '
    /^```sh recipe[[:space:]]*$/ { n++; file = sprintf("%s/%02d.sh", dir, n); printf "" > file; inside = 1; next }
    inside && /^```[[:space:]]*$/ { inside = 0; close(file); next }
    inside { print > file }
    END { if (inside) exit 1; print n + 0 }
  ' "$1") || { echo "$me: an unclosed \`\`\`sh recipe block in $1" >&2; return 1; }
  [ "$n" -gt 0 ] || { echo "$me: no \`\`\`sh recipe block in $1" >&2; return 1; }
  echo "$n"
}

e2e_dump_state() {
  echo "--- $me failed; controller state ---" >&2
  kubectl -n "$namespace" get deployment,replicaset,pods -o wide >&2 || true
  kubectl -n "$namespace" describe pods >&2 || true
  kubectl -n "$namespace" get events --sort-by=.lastTimestamp >&2 || true
  kubectl -n "$namespace" logs "deployment/$deployment" --all-containers --tail=200 >&2 || true
}
