# Sourced by the scripts that build Kubernetes components from k8s.io/kubernetes: the supported
# versions, the wrapper module that builds each, and the linker flags that stamp the version into
# the binaries (as Kubernetes' own build does).
#
# K8S_VERSION is the oldest supported version: everything builds and runs at it by default (the
# control plane of scripts/test.sh and run-local.sh, the node of build-node-bins.sh).
# K8S_NEWEST_VERSION is the newest supported one: scripts/test-kube-versions.sh runs the
# integration suites against it too. README "Supported Kubernetes versions" says why these two.
K8S_VERSION=v1.34.4
K8S_NEWEST_VERSION=v1.37.2

# The wrapper module (a directory) that builds kube-apiserver and kubectl at version $1: the oldest
# version's is tools/kube-testbin/apiserver, any other's tools/kube-testbin/apiserver-1.<minor>
# (go.mod and go.sum differ per version). Fails unless that module pins exactly this version.
# Needs $root, the repository.
kube_apiserver_module() {
  local version=$1 minor dir
  minor=$(echo "$version" | cut -d. -f2)
  dir=$root/tools/kube-testbin/apiserver
  [ "$version" = "$K8S_VERSION" ] || dir=$dir-1.$minor
  if ! grep -Eq "^[[:space:]]*(require )?k8s.io/kubernetes $version( |\$)" "$dir/go.mod" 2>/dev/null; then
    echo "no wrapper module pins k8s.io/kubernetes $version (expected in $dir/go.mod)" >&2
    return 1
  fi
  echo "$dir"
}

# The -ldflags for building version ${1:-$K8S_VERSION}.
kube_ldflags() {
  local version=${1:-$K8S_VERSION} minor v c
  minor=$(echo "$version" | cut -d. -f2)
  v="-X k8s.io/component-base/version"
  c="-X k8s.io/client-go/pkg/version"
  echo "-s -w $v.gitVersion=$version $v.gitMajor=1 $v.gitMinor=$minor $v.gitTreeState=clean \
$v.buildDate=1970-01-01T00:00:00Z $c.gitVersion=$version $c.gitMajor=1 $c.gitMinor=$minor \
$c.gitTreeState=clean $c.buildDate=1970-01-01T00:00:00Z"
}
