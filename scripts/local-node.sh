#!/usr/bin/env bash
# A one-node Kubernetes cluster of real parts on this machine, without Docker or kind:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy (iptables), containerd
# (runc, overlayfs, cgroupfs) and a kubelet, with a bridge CNI network. See docs/local-node.md.
#
#   scripts/local-node.sh                 start the node, print how to use it, wait for Ctrl-C
#   scripts/local-node.sh CMD [ARG...]    start the node, run CMD with the environment below,
#                                         stop everything, exit with CMD's status
#
# Environment given to CMD (and printed): KUBECONFIG (cluster-admin), CONTAINERD_ADDRESS (for
# `ctr -n k8s.io images import`), LOCAL_NODE_DIR, LOCAL_NODE_BIN (kubectl, ... ), LOCAL_NODE_NAME.
#
# Knobs: LOCAL_NODE_DIR (default /tmp/ecs-local-node; logs stay in $LOCAL_NODE_DIR/logs after
# exit), LOCAL_NODE_POD_CIDR (10.244.0.0/24), LOCAL_NODE_SERVICE_CIDR (10.96.0.0/24),
# LOCAL_NODE_READY_TIMEOUT (seconds, 180).
#
# Needs root, scripts/install-node-deps.sh and scripts/build-node-bins.sh (called if binaries are
# missing). Network: everything listens on loopback or on the node's own bridge address (the pod
# network's gateway); pods get no DNS server and are not routed anywhere but this node.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
say() { echo "local-node: $*" >&2; }

[ "$(id -u)" -eq 0 ] || { say "needs root (containerd, kubelet, network namespaces)"; exit 1; }
for tool in containerd containerd-shim-runc-v2 runc ctr iptables iptables-save iptables-restore \
  conntrack openssl curl gcc buildah ip python3; do
  command -v "$tool" >/dev/null || { say "$tool missing: run scripts/install-node-deps.sh"; exit 1; }
done
[ -x /usr/lib/cni/bridge ] || { say "CNI plugins missing: run scripts/install-node-deps.sh"; exit 1; }

bin=$("$root/scripts/build-node-bins.sh")

node=${LOCAL_NODE_NAME:-ecs-local-node}
dir=${LOCAL_NODE_DIR:-/tmp/ecs-local-node}
pod_cidr=${LOCAL_NODE_POD_CIDR:-10.244.0.0/24}
svc_cidr=${LOCAL_NODE_SERVICE_CIDR:-10.96.0.0/24}
ready_timeout=${LOCAL_NODE_READY_TIMEOUT:-180}
bridge=ecsnode0
guard_chain=ECS-LOCAL-NODE

# The node's address is the pod network's gateway (the first address of the pod CIDR, on the
# bridge); the API server's service address is the first of the service CIDR.
read -r node_ip prefix_len kube_svc_ip < <(python3 - "$pod_cidr" "$svc_cidr" <<'PY'
import ipaddress, sys
pod = ipaddress.ip_network(sys.argv[1]); svc = ipaddress.ip_network(sys.argv[2])
print(pod.network_address + 1, pod.prefixlen, svc.network_address + 1)
PY
)

# --- the CIDRs must not touch any address or route of this machine ---------------------------
check_cidrs() {
  python3 - "$pod_cidr" "$svc_cidr" "$bridge" <<'PY'
import ipaddress, json, subprocess, sys
mine = [ipaddress.ip_network(c) for c in sys.argv[1:3]]
if mine[0].overlaps(mine[1]):
    sys.exit(f"pod CIDR {mine[0]} overlaps service CIDR {mine[1]}")
taken = []
for a in json.loads(subprocess.check_output(["ip", "-4", "-j", "addr"])):
    if a["ifname"] == sys.argv[3]:
        continue
    for i in a.get("addr_info", []):
        taken.append((f'address {i["local"]}/{i["prefixlen"]} on {a["ifname"]}',
                      ipaddress.ip_network(f'{i["local"]}/{i["prefixlen"]}', strict=False)))
for r in json.loads(subprocess.check_output(["ip", "-4", "-j", "route", "show", "table", "all"])):
    d = r.get("dst")
    if not d or d == "default" or r.get("dev") == sys.argv[3] or r.get("type") in ("local", "broadcast"):
        continue
    if "/" not in d:
        d += "/32"
    taken.append((f'route {d} dev {r.get("dev")}', ipaddress.ip_network(d, strict=False)))
for net in mine:
    for what, t in taken:
        if net.overlaps(t):
            sys.exit(f"{net} collides with this machine's {what}; set LOCAL_NODE_POD_CIDR / LOCAL_NODE_SERVICE_CIDR")
PY
}

# --- processes ---------------------------------------------------------------------------------
declare -A pid_of=()
started=()
logs=$dir/logs

start() { # name command...
  local name=$1; shift
  "$@" >"$logs/$name.log" 2>&1 &
  pid_of[$name]=$!
  started+=("$name")
  echo "$name ${pid_of[$name]}" >>"$dir/pids"
}

tail_log() {
  if [ -f "$logs/$1.log" ]; then
    echo "--- last lines of $logs/$1.log ---" >&2
    tail -n "${2:-40}" "$logs/$1.log" >&2
    echo "---" >&2
  fi
}

fail() { # component message
  say "FAILED: $1: $2"
  tail_log "$1"
  exit 1
}

alive() { [ -n "${pid_of[$1]:-}" ] && kill -0 "${pid_of[$1]}" 2>/dev/null; }

wait_for() { # component timeout-seconds description command...
  local name=$1 timeout=$2 what=$3; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    alive "$name" || fail "$name" "exited while waiting for $what"
    [ "$SECONDS" -lt "$deadline" ] || fail "$name" "no $what after ${timeout}s"
    sleep 0.5
  done
}

stop_proc() { # name [grace-seconds]
  local name=$1 grace=${2:-15} p=${pid_of[$1]:-}
  [ -n "$p" ] || return 0
  if kill -0 "$p" 2>/dev/null; then
    kill -TERM "$p" 2>/dev/null || true
    local deadline=$((SECONDS + grace))
    while kill -0 "$p" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    if kill -0 "$p" 2>/dev/null; then
      say "$name (pid $p) did not stop in ${grace}s; killing it"
      kill -KILL "$p" 2>/dev/null || true
    fi
  fi
  wait "$p" 2>/dev/null || true
  unset "pid_of[$name]"
}

kubectl() { "$bin/kubectl" --kubeconfig "$dir/kubeconfig" "$@"; }
ctr_() { ctr --address "$dir/containerd/containerd.sock" "$@"; }

# Removes every iptables rule and chain the node added (kube-proxy's and kubelet's KUBE-*, the CNI
# plugins' CNI-*, this script's guard chain), leaving all other rules as they are.
clean_iptables() {
  local save restore
  for v in "" 6; do
    save=ip${v}tables-save restore=ip${v}tables-restore
    command -v "$save" >/dev/null || continue
    for table in filter nat mangle raw; do
      local dump
      dump=$("$save" -t "$table" 2>/dev/null) || continue
      if grep -Eq "KUBE-|CNI-|$guard_chain" <<<"$dump"; then
        grep -Ev "KUBE-|CNI-|$guard_chain" <<<"$dump" | "$restore" -T "$table" 2>/dev/null ||
          say "could not clean ip${v}tables table $table"
      fi
    done
  done
}

# Stops what runs in containerd: the pods' sandboxes and containers, and the shims this
# containerd started.
stop_containers() {
  [ -S "$dir/containerd/containerd.sock" ] || return 0
  local t
  for t in $(ctr_ -n k8s.io tasks ls -q 2>/dev/null); do
    ctr_ -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
  done
  sleep 1
  for t in $(ctr_ -n k8s.io tasks ls -q 2>/dev/null); do
    ctr_ -n k8s.io tasks delete -f "$t" >/dev/null 2>&1 || true
  done
}

kill_shims() {
  local p
  for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $dir/containerd/containerd.sock" 2>/dev/null); do
    kill -KILL "$p" 2>/dev/null || true
  done
}

unmount_under() { # every mount below the node's directory, deepest first
  local m
  for m in $(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || say "could not unmount $m"
  done
}

cleanup_done=0
kubelet_started=0
cleanup() {
  local status=$?
  [ "$cleanup_done" = 1 ] && return
  cleanup_done=1
  trap - INT TERM
  say "stopping the node"
  # No new pods: controllers and scheduler first. Then let the kubelet stop the pods (their
  # network is torn down by CNI), then the node agents, the runtime, the control plane.
  stop_proc kube-controller-manager 10
  stop_proc kube-scheduler 10
  if alive kubelet && alive kube-apiserver; then
    kubectl delete pods --all --all-namespaces --grace-period=5 --wait=false >/dev/null 2>&1 || true
    local deadline=$((SECONDS + 40))
    while [ "$SECONDS" -lt "$deadline" ] &&
      [ -n "$(kubectl get pods -A -o name 2>/dev/null)" ]; do sleep 1; done
  fi
  stop_proc kubelet 15
  if [ -f "$dir/sysctls.saved" ]; then
    while read -r k v; do
      [ "$(cat "/proc/sys/$k" 2>/dev/null)" = "$v" ] || echo "$v" >"/proc/sys/$k" 2>/dev/null ||
        say "could not restore sysctl $k=$v"
    done <"$dir/sysctls.saved"
    rm -f "$dir/sysctls.saved"
  fi
  stop_proc kube-proxy 10
  [ -x "$bin/kube-proxy" ] && [ "${#started[@]}" -gt 0 ] &&
    "$bin/kube-proxy" --cleanup >>"$logs/kube-proxy.log" 2>&1 || true
  stop_containers
  stop_proc containerd 15
  kill_shims
  # The kubelet's cgroups (cgroupfs driver): empty now; rmdir fails on any still in use.
  if [ "$kubelet_started" = 1 ]; then
    local cg
    for cg in /sys/fs/cgroup/*/kubepods; do
      [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
  fi
  stop_proc kube-apiserver 15
  stop_proc etcd 15
  unmount_under
  clean_iptables
  if ip link show "$bridge" >/dev/null 2>&1; then ip link delete "$bridge" || true; fi
  rm -rf "$dir/containerd" "$dir/kubelet" "$dir/etcd" "$dir/netns" "$dir/pids"
  say "stopped; logs in $logs"
  exit "$status"
}

# --- a previous run that did not clean up ------------------------------------------------------
if [ -f "$dir/pids" ]; then
  while read -r name p; do
    if kill -0 "$p" 2>/dev/null && tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "$dir"; then
      say "a node from $dir still runs ($name, pid $p): stop it first (Ctrl-C in its terminal)"
      exit 1
    fi
  done <"$dir/pids"
fi
check_cidrs || exit 1
if ip link show "$bridge" >/dev/null 2>&1; then
  say "bridge $bridge exists already (a previous run?); delete it with: ip link delete $bridge"
  exit 1
fi
unmount_under
rm -rf "${dir:?}/containerd" "$dir/kubelet" "$dir/etcd" "$dir/pki" "$dir/pids"
mkdir -p "$dir" "$logs" "$dir/pki" "$dir/etcd" "$dir/containerd" "$dir/kubelet" "$dir/cni" "$dir/images"
rm -f "$logs"/*.log
: >"$dir/pids"
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t0=$SECONDS
stage() { say "[$((SECONDS - t0))s] $*"; }

# --- PKI -------------------------------------------------------------------------------------------
stage "certificates"
pki=$dir/pki
openssl_quiet() { openssl "$@" 2>>"$logs/pki.log" || fail pki "openssl $1 failed"; }
openssl_quiet req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=ecs-local-node-ca" \
  -keyout "$pki/ca.key" -out "$pki/ca.crt"
cert() { # name subject [subjectAltName]
  local name=$1 subj=$2 san=${3:-}
  openssl_quiet req -newkey rsa:2048 -nodes -subj "$subj" -keyout "$pki/$name.key" -out "$pki/$name.csr"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$san" ]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$san"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$pki/$name.ext"
  openssl_quiet x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 2 -extfile "$pki/$name.ext" -out "$pki/$name.crt"
}
cert apiserver "/CN=kube-apiserver" \
  "IP:$node_ip,IP:$kube_svc_ip,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert admin "/O=system:masters/CN=local-node-admin"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
cert kube-controller-manager "/CN=system:kube-controller-manager"
cert kube-scheduler "/CN=system:kube-scheduler"
cert kube-proxy "/CN=system:kube-proxy"
cert kubelet "/O=system:nodes/CN=system:node:$node"
cert kubelet-serving "/CN=$node" "IP:$node_ip,DNS:$node"
openssl_quiet genrsa -out "$pki/sa.key" 2048
openssl_quiet rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

server=https://$node_ip:6443
kubeconfig() { # user file
  local user=$1 file=$2
  "$bin/kubectl" config --kubeconfig "$file" set-cluster local-node --server "$server" \
    --certificate-authority "$pki/ca.crt" --embed-certs >/dev/null
  "$bin/kubectl" config --kubeconfig "$file" set-credentials "$user" \
    --client-certificate "$pki/$user.crt" --client-key "$pki/$user.key" --embed-certs >/dev/null
  "$bin/kubectl" config --kubeconfig "$file" set-context local-node --cluster local-node --user "$user" >/dev/null
  "$bin/kubectl" config --kubeconfig "$file" use-context local-node >/dev/null
}
rm -f "$dir"/*.kubeconfig "$dir/kubeconfig"
kubeconfig admin "$dir/kubeconfig"
for u in kube-controller-manager kube-scheduler kube-proxy kubelet; do kubeconfig "$u" "$dir/$u.kubeconfig"; done

# --- network: the bridge (the node's address) and a guard against routing pods elsewhere -------
stage "network: bridge $bridge $node_ip/$prefix_len, pods $pod_cidr, services $svc_cidr"
ip link add "$bridge" type bridge || fail network "ip link add $bridge"
ip addr add "$node_ip/$prefix_len" dev "$bridge"
ip link set "$bridge" up
# Pods may talk to each other and to this node; nothing they send is forwarded elsewhere (this
# also holds where net.ipv4.ip_forward is 1).
while iptables -t mangle -D FORWARD -j "$guard_chain" 2>/dev/null; do :; done
iptables -t mangle -F "$guard_chain" 2>/dev/null || iptables -t mangle -N "$guard_chain" || fail network "iptables -N $guard_chain"
iptables -t mangle -A "$guard_chain" -s "$pod_cidr" -d "$pod_cidr" -j RETURN
iptables -t mangle -A "$guard_chain" -s "$pod_cidr" -j DROP
iptables -t mangle -I FORWARD 1 -j "$guard_chain"

mkdir -p "$dir/cni/net.d"
cat >"$dir/cni/net.d/10-ecs-local-node.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "ecs-local-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$dir/cni/ipam",
        "ranges": [[{ "subnet": "$pod_cidr", "gateway": "$node_ip" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "loopback" }
  ]
}
EOF

# --- etcd ------------------------------------------------------------------------------------------
stage "etcd"
start etcd "$bin/etcd" --name local-node --data-dir "$dir/etcd" \
  --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 \
  --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
  --initial-cluster local-node=http://127.0.0.1:23800 --listen-metrics-urls http://127.0.0.1:23810 \
  --unsafe-no-fsync
wait_for etcd 30 "/health" curl -fsS http://127.0.0.1:23790/health

# --- kube-apiserver --------------------------------------------------------------------------------
stage "kube-apiserver on $server"
start kube-apiserver "$bin/kube-apiserver" \
  --etcd-servers http://127.0.0.1:23790 \
  --bind-address "$node_ip" --advertise-address "$node_ip" --secure-port 6443 \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" \
  --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "$pki/ca.crt" \
  --kubelet-preferred-address-types InternalIP \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --api-audiences https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range "$svc_cidr" \
  --authorization-mode Node,RBAC \
  --enable-admission-plugins NodeRestriction \
  --allow-privileged=false \
  --profiling=false
wait_for kube-apiserver 90 "/readyz" kubectl get --raw /readyz

# --- containerd --------------------------------------------------------------------------------------
stage "containerd"
# The pause image: a static pause.c, built here, imported by name (no registry).
pause_image=localhost/ecs-local-node/pause:local
pause_tar=$dir/images/pause.oci.tar
if [ ! -s "$pause_tar" ]; then
  cat >"$dir/images/pause.c" <<'C'
/* The pod sandbox's process: holds the namespaces, reaps zombies, exits on SIGINT/SIGTERM. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction a = {0}, r = {0};
  a.sa_handler = stop; r.sa_handler = reap; r.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGINT, &a, NULL); sigaction(SIGTERM, &a, NULL); sigaction(SIGCHLD, &r, NULL);
  for (;;) pause();
}
C
  gcc -static -O2 -o "$dir/images/pause" "$dir/images/pause.c" 2>>"$logs/pause-image.log" ||
    fail pause-image "gcc -static pause.c"
  "$root/scripts/build-images.sh" --pause "$dir/images/pause" "$pause_image" "$pause_tar" \
    >>"$logs/pause-image.log" 2>&1 || fail pause-image "buildah (pause image)"
fi
cat >"$dir/containerd/config.toml" <<EOF
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$dir/containerd/containerd.sock"
[ttrpc]
  address = "$dir/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_image"
  # Root here lacks CAP_SYS_RESOURCE: without this, runc cannot lower a container's oom_score_adj.
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
EOF
start containerd containerd --config "$dir/containerd/config.toml"
wait_for containerd 30 "its socket" ctr_ version
ctr_ -n k8s.io images import "$pause_tar" \
  >>"$logs/pause-image.log" 2>&1 || fail pause-image "ctr images import"
ctr_ -n k8s.io images label "$pause_image" io.cri-containerd.pinned=pinned >/dev/null 2>&1 || true

# --- kube-controller-manager, kube-scheduler -------------------------------------------------------
stage "kube-controller-manager, kube-scheduler"
start kube-controller-manager "$bin/kube-controller-manager" \
  --kubeconfig "$dir/kube-controller-manager.kubeconfig" \
  --authentication-kubeconfig "$dir/kube-controller-manager.kubeconfig" \
  --authorization-kubeconfig "$dir/kube-controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 10257 \
  --leader-elect=false --use-service-account-credentials \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
  --service-cluster-ip-range "$svc_cidr" --cluster-cidr "$pod_cidr" \
  --controllers '*,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller' \
  --profiling=false
start kube-scheduler "$bin/kube-scheduler" \
  --kubeconfig "$dir/kube-scheduler.kubeconfig" \
  --authentication-kubeconfig "$dir/kube-scheduler.kubeconfig" \
  --authorization-kubeconfig "$dir/kube-scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false --profiling=false
wait_for kube-controller-manager 60 "/healthz" curl -fsSk https://127.0.0.1:10257/healthz
wait_for kube-scheduler 60 "/healthz" curl -fsSk https://127.0.0.1:10259/healthz

# --- kubelet -------------------------------------------------------------------------------------------
stage "kubelet (cgroupfs)"
cat >"$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $pki/ca.crt
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
cgroupDriver: cgroupfs
# cgroup v1 here: kubelet 1.34 warns, later releases refuse without this.
failCgroupV1: false
failSwapOn: false
clusterDomain: cluster.local
# No cluster DNS and no host resolv.conf for pods: nothing in a pod resolves names outside.
resolvConf: ""
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
  nodefs.inodesFree: "1%"
registerNode: true
rotateCertificates: false
serverTLSBootstrap: false
shutdownGracePeriod: 0s
EOF
# The kubelet sets these kernel sysctls to its defaults (protectKernelDefaults: false), and the CNI
# bridge plugin (isGateway) sets net.ipv4.ip_forward to 1 (pod -> service -> pod traffic needs it;
# the ECS-LOCAL-NODE chain keeps pods' traffic on this node). All are put back as they were when
# the node stops.
kernel_sysctls=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes net/ipv4/ip_forward)
: >"$dir/sysctls.saved"
for k in "${kernel_sysctls[@]}"; do
  [ -r "/proc/sys/$k" ] && echo "$k $(cat "/proc/sys/$k")" >>"$dir/sysctls.saved"
done
kubelet_started=1
start kubelet "$bin/kubelet" --config "$dir/kubelet.yaml" \
  --kubeconfig "$dir/kubelet.kubeconfig" --root-dir "$dir/kubelet" --cert-dir "$dir/pki" \
  --hostname-override "$node" --node-ip "$node_ip" --v=1
wait_for kubelet 60 "/healthz" curl -fsS http://127.0.0.1:10248/healthz

# --- kube-proxy ----------------------------------------------------------------------------------------
stage "kube-proxy (iptables)"
cat >"$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $pod_cidr
hostnameOverride: $node
bindAddress: $node_ip
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clientConnection:
  kubeconfig: $dir/kube-proxy.kubeconfig
# NodePorts only on the node's own address: no route_localnet change on this machine.
nodePortAddresses: ["$node_ip/32"]
conntrack:
  # Leave the machine's conntrack sysctls alone.
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
start kube-proxy "$bin/kube-proxy" --config "$dir/kube-proxy.yaml"
wait_for kube-proxy 60 "/healthz" curl -fsS http://127.0.0.1:10256/healthz

# --- node Ready --------------------------------------------------------------------------------------
stage "waiting for node $node to be Ready"
deadline=$((SECONDS + ready_timeout))
until kubectl get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True; do
  for c in "${started[@]}"; do alive "$c" || fail "$c" "exited while waiting for the node"; done
  if [ "$SECONDS" -ge "$deadline" ]; then
    kubectl describe node "$node" >&2 || true
    fail kubelet "node $node not Ready after ${ready_timeout}s"
  fi
  sleep 1
done
wait_for kube-controller-manager 60 "the default ServiceAccount" kubectl -n default get serviceaccount default
stage "node $node Ready"

export KUBECONFIG=$dir/kubeconfig CONTAINERD_ADDRESS=$dir/containerd/containerd.sock
export LOCAL_NODE_DIR=$dir LOCAL_NODE_BIN=$bin LOCAL_NODE_NAME=$node
export PATH=$bin:$PATH

if [ $# -gt 0 ]; then
  set +e
  "$@"
  status=$?
  set -e
  stage "command exited with $status"
  exit "$status"
fi

cat >&2 <<EOF

The node runs. In another shell:
  export KUBECONFIG=$KUBECONFIG PATH=$bin:\$PATH CONTAINERD_ADDRESS=$CONTAINERD_ADDRESS
  kubectl get nodes -o wide
  ctr -n k8s.io images import IMAGE.oci.tar   # images without a registry
Logs: $logs/. Ctrl-C stops everything.
EOF
while true; do
  for c in "${started[@]}"; do alive "$c" || fail "$c" "exited"; done
  sleep 2
done
