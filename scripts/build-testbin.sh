#!/usr/bin/env bash
# Builds the real control plane used by the integration tests — kube-apiserver, kubectl and etcd —
# from the Go module proxy through the wrapper modules in tools/kube-testbin, and caches the
# binaries outside the repository, keyed by version. A no-op when the binaries are already cached.
#
# Prints the directory holding the binaries on stdout (everything else goes to stderr).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/kube-version.sh
. "$root/scripts/lib/kube-version.sh"
ETCD_VERSION=v3.6.16

out=${KUBE_TESTBIN:-${XDG_CACHE_HOME:-$HOME/.cache}/ecs-instance-controller/kube-testbin/$K8S_VERSION-$ETCD_VERSION}

if [ -x "$out/kube-apiserver" ] && [ -x "$out/kubectl" ] && [ -x "$out/etcd" ]; then
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "build-testbin: the Go toolchain is required (go not on PATH)" >&2; exit 1; }
export GOTOOLCHAIN=local CGO_ENABLED=0
mkdir -p "$out"
# One build at a time: a second caller waits, then finds the binaries cached.
exec 9>"$out/.lock"
flock 9
if [ -x "$out/kube-apiserver" ] && [ -x "$out/kubectl" ] && [ -x "$out/etcd" ]; then
  echo "$out"
  exit 0
fi
tmp="$out/.partial"
rm -rf "$tmp"; mkdir -p "$tmp"

ldflags=$(kube_ldflags)

echo "build-testbin: building etcd $ETCD_VERSION into $out" >&2
(cd "$root/tools/kube-testbin/etcd" && go build -p 2 -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)

echo "build-testbin: building kube-apiserver and kubectl $K8S_VERSION into $out (cold: ~15 min on 2 cores)" >&2
(cd "$root/tools/kube-testbin/apiserver" &&
  go build -p 2 -trimpath -ldflags "$ldflags" -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver &&
  go build -p 2 -trimpath -ldflags "$ldflags" -o "$tmp/kubectl" k8s.io/kubernetes/cmd/kubectl)

mv "$tmp/etcd" "$tmp/kube-apiserver" "$tmp/kubectl" "$out/"
rmdir "$tmp"
"$out/kube-apiserver" --version >&2
echo "$out"
