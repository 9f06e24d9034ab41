#!/usr/bin/env bash
# Builds the node components of a real one-node cluster — kubelet, kube-controller-manager,
# kube-scheduler and kube-proxy — from the Go module proxy through the wrapper module
# tools/kube-testbin/node, at the same Kubernetes version as the kube-apiserver of
# scripts/build-testbin.sh, into the same cache directory. Builds the test control plane first
# (scripts/build-testbin.sh, which builds kube-controller-manager from the same module too), so the
# directory printed holds all seven binaries. Builds only the ones missing; a no-op when they are
# cached already.
#
# Prints the directory holding the binaries on stdout (everything else goes to stderr).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/kube-version.sh
. "$root/scripts/lib/kube-version.sh"
out=$("$root/scripts/build-testbin.sh")

bins=(kubelet kube-controller-manager kube-scheduler kube-proxy)
missing() { # the binaries of $bins not in $out yet
  missing=()
  for b in "${bins[@]}"; do [ -x "$out/$b" ] || missing+=("$b"); done
}
missing
if [ ${#missing[@]} = 0 ]; then
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "build-node-bins: the Go toolchain is required (go not on PATH)" >&2; exit 1; }
export GOTOOLCHAIN=local CGO_ENABLED=0
# One build at a time (build-testbin.sh above has released its own lock by now).
exec 9>"$out/.lock-node"
flock 9
missing
if [ ${#missing[@]} = 0 ]; then
  echo "$out"
  exit 0
fi
tmp="$out/.partial-node"
rm -rf "$tmp"; mkdir -p "$tmp"

ldflags=$(kube_ldflags)

echo "build-node-bins: building ${missing[*]} $K8S_VERSION into $out (cold: ~10 min on 2 cores after build-testbin.sh)" >&2
pkgs=()
for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
# One `go build` for all of them: one action graph, shared packages compiled once.
(cd "$root/tools/kube-testbin/node" && go build -p 2 -trimpath -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}")
for b in "${missing[@]}"; do mv "$tmp/$b" "$out/$b"; done
rmdir "$tmp"
"$out/kubelet" --version >&2
echo "$out"
