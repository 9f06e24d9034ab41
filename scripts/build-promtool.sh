#!/usr/bin/env bash
# Builds promtool — Prometheus's own rule checker and rule unit-test runner — from the wrapper
# module in tools/monitoring/promtool through the Go module proxy, and caches the binary outside
# the repository. tests/monitoring.rs runs `promtool check rules` and `promtool test rules` on
# deploy/monitoring with it. The cache directory is keyed by the pinned version and a hash of the
# wrapper module, so changing the pin rebuilds; a no-op when the binary is already there.
# Cold build: about 9 CPU-minutes (5 min on 2 idle cores; 12 min measured while another build
# shared them), after downloading its modules (1-2 min) the first time; the binary is 86 MB.
#
# Prints the path of the `promtool` binary on stdout (everything else to stderr); scripts/test.sh
# exports it as PROMTOOL for tests/monitoring.rs.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/tools/monitoring/promtool"

# The Go module version pinned in the wrapper's go.mod (v0.315.1 is Prometheus 3.15.1).
MODULE_VERSION=$(awk '$1 == "github.com/prometheus/prometheus" { print $2; exit }' "$src/go.mod")
# Prometheus v3.X.Y is tagged v0.3XX.Y as a Go module.
PROMETHEUS_VERSION=$(echo "$MODULE_VERSION" | sed -E 's/^v0\.3([0-9][0-9])\.([0-9]+)$/3.\1.\2/; s/^3\.0([0-9])/3.\1/')

hash=$(cd "$src" && cat go.mod go.sum | sha256sum | cut -c1-12)
out=${XDG_CACHE_HOME:-$HOME/.cache}/ecs-instance-controller/promtool/$PROMETHEUS_VERSION-$hash

# shellcheck source=lib/go-tool.sh
. "$root/scripts/lib/go-tool.sh"
go_tool_build_dir "$out/promtool" "$out" promtool

echo "build-promtool: building promtool (Prometheus $PROMETHEUS_VERSION, module $MODULE_VERSION) into $out (cold: ~5 min on 2 cores)" >&2
v="-X github.com/prometheus/common/version"
(cd "$src" && go build -p 2 -trimpath \
  -ldflags "-s -w $v.Version=$PROMETHEUS_VERSION $v.Branch=HEAD $v.BuildUser=build-promtool $v.BuildDate=19700101-00:00:00" \
  -o "$tmp/promtool" github.com/prometheus/prometheus/cmd/promtool)

mv "$tmp/promtool" "$out/"
rmdir "$tmp"
"$out/promtool" --version >&2
echo "$out/promtool"
