# Sourced by the scripts that build Go programs from wrapper modules under tools/ and cache them
# outside the repository (build-gitops-check.sh, build-promtool.sh, build-helm.sh): the cache
# check, one builder at a time, and the directory a build writes into.

# go_tool_build_dir PRINT OUT FILE...: when every FILE is already built in OUT, prints PRINT (what
# the script prints on success) and exits the script. Otherwise takes OUT's build lock — test
# binaries may run the script at the same time: one builds, the others wait and then find the
# result — and sets tmp to an empty directory in OUT to build into; move the files into OUT when
# done. Builds use the machine's Go, never a downloaded toolchain, and no cgo.
go_tool_build_dir() {
  local print=$1 file missing
  out=$2
  shift 2
  for attempt in unlocked locked; do
    missing=
    for file in "$@"; do [ -x "$out/$file" ] || missing=1; done
    if [ -z "$missing" ]; then
      echo "$print"
      exit 0
    fi
    [ "$attempt" = unlocked ] || break
    command -v go >/dev/null || { echo "${0##*/}: the Go toolchain is required (go not on PATH)" >&2; exit 1; }
    export GOTOOLCHAIN=local CGO_ENABLED=0
    mkdir -p "$out"
    exec 9>"$out/.lock"
    flock 9
  done
  tmp="$out/.partial"
  rm -rf "$tmp"
  mkdir -p "$tmp"
}
