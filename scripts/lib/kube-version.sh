# Sourced by the scripts that build Kubernetes components from k8s.io/kubernetes: the one version
# they share, and the linker flags that stamp it into the binaries (as Kubernetes' own build does).
K8S_VERSION=v1.34.4

kube_ldflags() {
  local minor v c
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  v="-X k8s.io/component-base/version"
  c="-X k8s.io/client-go/pkg/version"
  echo "-s -w $v.gitVersion=$K8S_VERSION $v.gitMajor=1 $v.gitMinor=$minor $v.gitTreeState=clean \
$v.buildDate=1970-01-01T00:00:00Z $c.gitVersion=$K8S_VERSION $c.gitMajor=1 $c.gitMinor=$minor \
$c.gitTreeState=clean $c.buildDate=1970-01-01T00:00:00Z"
}
