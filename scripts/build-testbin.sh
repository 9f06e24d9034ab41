#!/usr/bin/env bash
# Builds the real control plane used by the integration tests — kube-apiserver, kubectl, etcd and
# kube-controller-manager — from the Go module proxy through the wrapper modules in
# tools/kube-testbin, and caches the binaries outside the repository, keyed by version. A no-op
# when the binaries are already cached.
#
#   scripts/build-testbin.sh [VERSION]
#
# VERSION is a Kubernetes version with a wrapper module (scripts/lib/kube-version.sh); the default
# is the oldest supported one, K8S_VERSION. $KUBE_TESTBIN, when set, is where the default version
# goes; an explicit VERSION always goes to its own cache directory, so a KUBE_TESTBIN exported for
# one version never passes for another.
#
# kube-controller-manager (started by testkit only for the test binaries that ask for it, see
# testkit::control_plane::controller_manager) comes from tools/kube-testbin/node, the wrapper module
# of scripts/build-node-bins.sh, which then finds it cached. It is built for the version that module
# pins (K8S_VERSION) only: other versions get etcd, kube-apiserver and kubectl.
#
# Prints the directory holding the binaries on stdout (everything else goes to stderr).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/kube-version.sh
. "$root/scripts/lib/kube-version.sh"
# Every supported Kubernetes version supports this etcd (1.37 needs 3.5.24 or newer).
ETCD_VERSION=v3.6.16

cache=${XDG_CACHE_HOME:-$HOME/.cache}/ecs-instance-controller/kube-testbin
version=${1:-$K8S_VERSION}
if [ $# -gt 0 ]; then
  out=$cache/$version-$ETCD_VERSION
else
  out=${KUBE_TESTBIN:-$cache/$version-$ETCD_VERSION}
fi
module=$(kube_apiserver_module "$version")
node_module=$root/tools/kube-testbin/node

bins=(etcd kube-apiserver kubectl)
with_kcm=0
if grep -Eq "^[[:space:]]*(require )?k8s.io/kubernetes $version( |\$)" "$node_module/go.mod"; then
  with_kcm=1
  bins+=(kube-controller-manager)
fi
cached() { # every binary of $@ is in $out
  local b
  for b in "$@"; do [ -x "$out/$b" ] || return 1; done
}

if cached "${bins[@]}"; then
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "build-testbin: the Go toolchain is required (go not on PATH)" >&2; exit 1; }
export GOTOOLCHAIN=local CGO_ENABLED=0
mkdir -p "$out"
# One build at a time: a second caller waits, then finds the binaries cached.
exec 9>"$out/.lock"
flock 9
if cached "${bins[@]}"; then
  echo "$out"
  exit 0
fi
tmp="$out/.partial"
rm -rf "$tmp"; mkdir -p "$tmp"

ldflags=$(kube_ldflags "$version")

# Each part is built only when missing (a cache from before kube-controller-manager was added here
# gets just that), and moved in once complete.
if ! cached etcd; then
  echo "build-testbin: building etcd $ETCD_VERSION into $out" >&2
  (cd "$root/tools/kube-testbin/etcd" && go build -p 2 -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
  mv "$tmp/etcd" "$out/"
fi

if ! cached kube-apiserver kubectl; then
  echo "build-testbin: building kube-apiserver and kubectl $version into $out from $module (cold: ~15 min on 2 cores)" >&2
  (cd "$module" &&
    go build -p 2 -trimpath -ldflags "$ldflags" -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver &&
    go build -p 2 -trimpath -ldflags "$ldflags" -o "$tmp/kubectl" k8s.io/kubernetes/cmd/kubectl)
  mv "$tmp/kube-apiserver" "$tmp/kubectl" "$out/"
fi

if [ "$with_kcm" = 1 ] && ! cached kube-controller-manager; then
  echo "build-testbin: building kube-controller-manager $version into $out from $node_module (~2 min on 2 cores after kube-apiserver: most packages are shared)" >&2
  (cd "$node_module" &&
    go build -p 2 -trimpath -ldflags "$ldflags" -o "$tmp/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager)
  mv "$tmp/kube-controller-manager" "$out/"
fi

rmdir "$tmp"
"$out/kube-apiserver" --version >&2
echo "$out"
