#!/usr/bin/env bash
# Builds the GitOps checkers the tests ask for their verdicts — the real kstatus (cli-utils
# status.Compute, as Flux and kubectl-style waiters use it) and a gopher-lua harness that runs
# Argo CD health checks the way Argo CD does — from the wrapper modules in tools/gitops-check,
# through the Go module proxy, and caches the binaries outside the repository. The cache
# directory is keyed by the pinned versions and a hash of the wrapper sources, so editing a
# wrapper rebuilds it; a no-op when the binaries are already there.
#
# Next to them, argocd-sources.json records where the go command keeps the sources of the Argo CD
# release argolua reproduces (the module zips, downloaded once through the module proxy), for
# `argolua upstream-check` (tests/argocd_upstream.rs).
#
# Prints the directory holding `kstatus`, `argolua` and argocd-sources.json on stdout (everything
# else to stderr).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/tools/gitops-check"

# The versions are the ones pinned in the wrapper modules' go.mod.
version_of() { awk -v m="$2" '$1 == m { print $2; exit }' "$src/$1/go.mod"; }
CLI_UTILS_VERSION=$(version_of kstatus sigs.k8s.io/cli-utils)
GOPHER_LUA_VERSION=$(version_of argolua github.com/yuin/gopher-lua)
# The Argo CD release whose Lua runtime and health assessment argolua reproduces: written once, as
# argocdVersion in argolua's source.
ARGOCD_VERSION=$(sed -n 's/^const argocdVersion = "\(v[0-9][^"]*\)"$/\1/p' "$src/argolua/main.go")
[ -n "$ARGOCD_VERSION" ] || {
  echo "build-gitops-check: no 'const argocdVersion = \"vX.Y.Z\"' line in $src/argolua/main.go" >&2
  exit 1
}

hash=$(cd "$src" && find . -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) | LC_ALL=C sort |
  xargs sha256sum | sha256sum | cut -c1-12)
out=${GITOPS_CHECK:-${XDG_CACHE_HOME:-$HOME/.cache}/ecs-instance-controller/gitops-check/cli-utils-$CLI_UTILS_VERSION-argocd-$ARGOCD_VERSION-gopher-lua-$GOPHER_LUA_VERSION-$hash}

# Argo CD's sources at that release: its module and gitops-engine's (tagged with the same version),
# downloaded and verified by the go command into its module cache — a lookup in the cache once they
# are there, so this runs every time and the record always names files that exist. The go command
# then reports that it cannot use them (they declare a newer Go than this machine's): expected.
# Whether the record is usable (that error only, the zips present, the sums argolua pins) is for
# `argolua upstream-check` to judge and report, so a failed download does not stop kstatus and
# argolua from being built; it is shown here too.
argocd_major=${ARGOCD_VERSION%%.*}
mkdir -p "$out"
scratch=$(mktemp -d)
(cd "$scratch" && GOTOOLCHAIN=local GOWORK=off go mod download -json \
  "github.com/argoproj/argo-cd/$argocd_major@$ARGOCD_VERSION" \
  "github.com/argoproj/argo-cd/gitops-engine/$argocd_major@$ARGOCD_VERSION" >"$scratch/record.json") || true
if grep '"Error"' "$scratch/record.json" | grep -v ' requires go ' >&2; then
  echo "build-gitops-check: Argo CD $ARGOCD_VERSION's sources could not be downloaded (tests/argocd_upstream.rs will fail)" >&2
fi
mv -f "$scratch/record.json" "$out/argocd-sources.json"
rmdir "$scratch"

# shellcheck source=lib/go-tool.sh
. "$root/scripts/lib/go-tool.sh"
go_tool_build_dir "$out" "$out" kstatus argolua

echo "build-gitops-check: building kstatus (sigs.k8s.io/cli-utils $CLI_UTILS_VERSION) and argolua (gopher-lua $GOPHER_LUA_VERSION, as Argo CD $ARGOCD_VERSION) into $out" >&2
(cd "$src/kstatus" && go build -p 2 -trimpath -ldflags "-s -w" -o "$tmp/kstatus" .)
(cd "$src/argolua" && go build -p 2 -trimpath -ldflags "-s -w" -o "$tmp/argolua" .)

mv "$tmp/kstatus" "$tmp/argolua" "$out/"
rmdir "$tmp"
echo "$out"
