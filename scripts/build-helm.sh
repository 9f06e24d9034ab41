#!/usr/bin/env bash
# Builds helm from the wrapper module in tools/helm through the Go module proxy, and caches the
# binary outside the repository. tests/helm_chart.rs lints and renders charts/ecs-instance-controller
# with it, and scripts/node-e2e.sh installs, upgrades and uninstalls the chart with it. The cache
# directory is keyed by the pinned version and a hash of the wrapper module, so changing the pin
# rebuilds; a no-op when the binary is already there.
# Cold build: 4 min measured on 2 cores shared with other builds (after downloading its modules,
# under a minute, the first time); with Go's build cache warm, a relink of seconds. Binary ~60 MB.
#
# Prints the path of the `helm` binary on stdout (everything else to stderr); scripts/test.sh
# exports it as HELM for tests/helm_chart.rs.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/tools/helm"

# The Go module version pinned in the wrapper's go.mod (the Helm release itself, e.g. v3.22.0).
HELM_VERSION=$(awk '$1 == "helm.sh/helm/v3" { print $2; exit }' "$src/go.mod")
# Helm's Makefile stamps the Kubernetes version of its client-go (v0.X.Y is Kubernetes 1.X) as the
# default for `helm template`/`helm lint` (.Capabilities.KubeVersion, deprecation checks).
K8S_MINOR=$(awk '$1 == "k8s.io/client-go" { split($2, v, "."); print v[2]; exit }' "$src/go.mod")

hash=$(cd "$src" && cat go.mod go.sum | sha256sum | cut -c1-12)
out=${XDG_CACHE_HOME:-$HOME/.cache}/ecs-instance-controller/helm/$HELM_VERSION-$hash

# shellcheck source=lib/go-tool.sh
. "$root/scripts/lib/go-tool.sh"
go_tool_build_dir "$out/helm" "$out" helm

echo "build-helm: building helm $HELM_VERSION into $out (cold: a few minutes on 2 cores)" >&2
v="-X helm.sh/helm/v3/internal/version"
(cd "$src" && go build -p 2 -trimpath \
  -ldflags "-s -w $v.version=$HELM_VERSION $v.gitTreeState=clean \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$K8S_MINOR \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$K8S_MINOR" \
  -o "$tmp/helm" helm.sh/helm/v3/cmd/helm)

mv "$tmp/helm" "$out/"
rmdir "$tmp"
"$out/helm" version >&2
echo "$out/helm"
