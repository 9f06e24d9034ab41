#!/usr/bin/env bash
# Installs the Debian packages a local Kubernetes node needs (scripts/local-node.sh): the container
# runtime (containerd, runc), the CNI plugins, buildah (images without a registry or a Docker
# engine), the tools kubelet and kube-proxy call (iptables, conntrack, socat, ethtool, …) and a C
# compiler for the pause image. Idempotent: a no-op when everything is installed already.
#
# Needs root (or sudo) and Debian's package archive; nothing else is downloaded.
set -euo pipefail

packages=(
  containerd runc containernetworking-plugins buildah
  iptables conntrack socat ethtool iproute2 util-linux mount kmod
  ca-certificates curl gcc libc6-dev jq
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-node-deps: all ${#packages[@]} packages present" >&2
  exit 0
fi

sudo=
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-node-deps: needs root (or sudo)" >&2; exit 1; }
  sudo=sudo
fi

echo "install-node-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
# --no-install-recommends: buildah would otherwise pull in podman's helpers and fuse-overlayfs.
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"

# Debian's containerd package enables a systemd unit; local-node.sh runs its own containerd with
# its own config and state directories, so a system one (where systemd runs) does not interfere.
echo "install-node-deps: done" >&2
