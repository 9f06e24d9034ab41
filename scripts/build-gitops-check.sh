#!/usr/bin/env bash
# Builds the GitOps checkers the tests ask for their verdicts — the real kstatus (cli-utils
# status.Compute, as Flux and kubectl-style waiters use it) and a gopher-lua harness that runs
# Argo CD health checks the way Argo CD does — from the wrapper modules in tools/gitops-check,
# through the Go module proxy, and caches the binaries outside the repository. The cache
# directory is keyed by the pinned versions and a hash of the wrapper sources, so editing a
# wrapper rebuilds it; a no-op when the binaries are already there.
#
# Prints the directory holding `kstatus` and `argolua` on stdout (everything else to stderr).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/tools/gitops-check"

# The versions are the ones pinned in the wrapper modules' go.mod.
version_of() { awk -v m="$2" '$1 == m { print $2; exit }' "$src/$1/go.mod"; }
CLI_UTILS_VERSION=$(version_of kstatus sigs.k8s.io/cli-utils)
GOPHER_LUA_VERSION=$(version_of argolua github.com/yuin/gopher-lua)
# The Argo CD release whose Lua runtime and health assessment argolua reproduces.
ARGOCD_VERSION=v3.6.1

hash=$(cd "$src" && find . -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) | LC_ALL=C sort |
  xargs sha256sum | sha256sum | cut -c1-12)
out=${GITOPS_CHECK:-${XDG_CACHE_HOME:-$HOME/.cache}/ecs-instance-controller/gitops-check/cli-utils-$CLI_UTILS_VERSION-argocd-$ARGOCD_VERSION-gopher-lua-$GOPHER_LUA_VERSION-$hash}

# shellcheck source=lib/go-tool.sh
. "$root/scripts/lib/go-tool.sh"
go_tool_build_dir "$out" "$out" kstatus argolua

echo "build-gitops-check: building kstatus (sigs.k8s.io/cli-utils $CLI_UTILS_VERSION) and argolua (gopher-lua $GOPHER_LUA_VERSION, as Argo CD $ARGOCD_VERSION) into $out" >&2
(cd "$src/kstatus" && go build -p 2 -trimpath -ldflags "-s -w" -o "$tmp/kstatus" .)
(cd "$src/argolua" && go build -p 2 -trimpath -ldflags "-s -w" -o "$tmp/argolua" .)

mv "$tmp/kstatus" "$tmp/argolua" "$out/"
rmdir "$tmp"
echo "$out"
