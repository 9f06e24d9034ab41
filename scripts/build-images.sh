#!/usr/bin/env bash
# Builds the container images without a registry or a Docker engine, with buildah, as OCI archives
# that `ctr -n k8s.io images import` loads into containerd (scripts/local-node.sh):
#
#   scripts/build-images.sh [OUT_DIR]
#       localhost/ecs-instance-controller:dev  -> OUT_DIR/ecs-instance-controller.oci.tar
#       localhost/ecs-sim:dev (test-only)      -> OUT_DIR/ecs-sim.oci.tar
#       localhost/ecs-e2e-forward:dev (test-only, socat) -> OUT_DIR/ecs-e2e-forward.oci.tar
#     from the release binaries (cargo build --release --locked -p ecs-instance-controller
#     -p ecs-sim --bin ecs-instance-controller --bin ecs-sim), OUT_DIR default target/images.
#     Prints the archives' paths. For scripts/release.sh, three variables (unset: the above):
#       BIN_DIR            where the two binaries are (default target/release)
#       IMAGE_TAG          the images' tag (default dev)
#       SOURCE_DATE_EPOCH  reproducible archives: every file of the layers, the image's created
#                          time and its history carry this time, and the archive is written as a
#                          tar of the OCI layout with sorted entries, this mtime, owner 0:0, so the
#                          same binaries and host libraries give byte-identical archives.
#   scripts/build-images.sh --pause BINARY NAME OUT.tar
#       the pod sandbox ("pause") image of local-node.sh from a static binary.
#
# How these relate to the Dockerfile: same binaries (release profile, --locked), same entrypoints
# (/usr/local/bin/ecs-instance-controller, /usr/local/bin/ecs-sim), same numeric user 65532:65532,
# same exposed ports, the same CA bundle path (/etc/ssl/certs/ca-certificates.crt, from Debian
# bookworm's ca-certificates). The Dockerfile's debian:bookworm-slim base cannot be had without a
# registry, so the images start from scratch and carry only what the binary needs: its ELF
# interpreter and the shared libraries `ldd` lists, copied from this machine (Debian 12 bookworm,
# the Dockerfile's base release, so the same glibc). No shell, no package manager, no
# /etc/passwd (the user is numeric, as in the Dockerfile).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
command -v buildah >/dev/null || { echo "build-images: buildah missing: run scripts/install-node-deps.sh" >&2; exit 1; }

store=$(mktemp -d /tmp/ecs-buildah.XXXXXX)
bud() { buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs "$@"; }
cleanup() {
  for c in $(bud containers -q 2>/dev/null); do bud rm "$c" >/dev/null 2>&1 || true; done
  rm -rf "$store"
}
trap cleanup EXIT

# copy_with_libs CONTAINER BINARY DEST: the binary plus its interpreter and shared libraries.
copy_with_libs() {
  local c=$1 binary=$2 dest=$3 lib
  bud copy --chmod 0755 "$c" "$binary" "$dest" >/dev/null
  # `libx.so => /path (addr)` lines and the interpreter's own `/lib64/ld-linux… (addr)` line.
  for lib in $(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u); do
    bud copy "$c" "$(readlink -f "$lib")" "$lib" >/dev/null
  done
}

archive() { # container name out.tar
  local c=$1 name=$2 out=$3
  rm -f "$out"
  if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
    # buildah's oci-archive writes the layout's files with the time of the push; the layout itself
    # (index.json, manifest, config, layers) is deterministic once --timestamp fixes the times.
    bud commit --quiet --timestamp "$SOURCE_DATE_EPOCH" --format oci "$c" "$name" >/dev/null
    local layout="$store/layout.$RANDOM"
    bud push --quiet "$name" "oci:$layout:$name" >/dev/null
    tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
      --mode=u=rwX,go=rX --format=ustar -C "$layout" -cf "$out" blobs index.json oci-layout
    rm -rf "$layout"
  else
    bud commit --quiet --format oci "$c" "$name" >/dev/null
    bud push --quiet "$name" "oci-archive:$out:$name" >/dev/null
  fi
  echo "$out"
}

if [ "${1:-}" = --pause ]; then
  [ $# -eq 4 ] || { echo "usage: build-images.sh --pause BINARY NAME OUT.tar" >&2; exit 2; }
  c=$(bud from --quiet scratch)
  bud copy --chmod 0755 "$c" "$2" /pause >/dev/null
  bud config --entrypoint '["/pause"]' --cmd '' --user 65535:65535 "$c"
  archive "$c" "$3" "$4"
  exit 0
fi

out=${1:-$root/target/images}
mkdir -p "$out"
rel=${BIN_DIR:-$root/target/release}
tag=${IMAGE_TAG:-dev}
for b in ecs-instance-controller ecs-sim; do
  [ -x "$rel/$b" ] || {
    echo "build-images: $rel/$b missing: cargo build --release --locked -p ecs-instance-controller -p ecs-sim --bin ecs-instance-controller --bin ecs-sim" >&2
    exit 1
  }
done
ca=/etc/ssl/certs/ca-certificates.crt
[ -s "$ca" ] || { echo "build-images: $ca missing (Debian package ca-certificates)" >&2; exit 1; }

# The controller (the Dockerfile's default target).
c=$(bud from --quiet scratch)
bud copy "$c" "$ca" /etc/ssl/certs/ca-certificates.crt >/dev/null
copy_with_libs "$c" "$rel/ecs-instance-controller" /usr/local/bin/ecs-instance-controller
bud config --user 65532:65532 --port 8080 --port 8081 \
  --entrypoint '["/usr/local/bin/ecs-instance-controller"]' --cmd '' "$c"
archive "$c" localhost/ecs-instance-controller:"$tag" "$out/ecs-instance-controller.oci.tar"

# Test-only: the simulator (the Dockerfile's ecs-sim target).
c=$(bud from --quiet scratch)
copy_with_libs "$c" "$rel/ecs-sim" /usr/local/bin/ecs-sim
bud config --user 65532:65532 --entrypoint '["/usr/local/bin/ecs-sim"]' --cmd '' "$c"
archive "$c" localhost/ecs-sim:"$tag" "$out/ecs-sim.oci.tar"

# Test-only: a TCP forwarder (Debian's socat) for deploy/overlays/e2e-shared-sim, where the
# replicas reach one simulator on the node through their own loopback.
if [ -x /usr/bin/socat ]; then
  c=$(bud from --quiet scratch)
  copy_with_libs "$c" /usr/bin/socat /usr/bin/socat
  bud config --user 65532:65532 --entrypoint '["/usr/bin/socat"]' --cmd '' "$c"
  archive "$c" localhost/ecs-e2e-forward:"$tag" "$out/ecs-e2e-forward.oci.tar"
fi
