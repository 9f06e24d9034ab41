#!/usr/bin/env bash
# Removes the controller's in-use finalizer (ecs.alicloud.dev/credentials-in-use) from every
# Secret that carries it, for the uninstall procedure of docs/operations.md (step 7). Only that
# finalizer goes, by a JSON patch that tests its index first; other finalizers and the data stay.
#
#   scripts/release-secret-finalizers.sh [-n NAMESPACE]
set -euo pipefail

finalizer=ecs.alicloud.dev/credentials-in-use
scope=(-A)
if [ "${1:-}" = "-n" ] && [ -n "${2:-}" ]; then scope=(-n "$2"); fi

kubectl get secrets "${scope[@]}" \
  -o jsonpath='{range .items[*]}{.metadata.namespace}{" "}{.metadata.name}{" "}{.metadata.finalizers}{"\n"}{end}' |
  while read -r namespace name finalizers; do
    [[ $finalizers == *"$finalizer"* ]] || continue
    index=$(kubectl get secret -n "$namespace" "$name" -o json |
      python3 -c 'import json,sys; f=json.load(sys.stdin)["metadata"].get("finalizers",[]); print(f.index(sys.argv[1]))' "$finalizer")
    kubectl patch secret -n "$namespace" "$name" --type json -p \
      "[{\"op\":\"test\",\"path\":\"/metadata/finalizers/$index\",\"value\":\"$finalizer\"},{\"op\":\"remove\",\"path\":\"/metadata/finalizers/$index\"}]" >/dev/null
    echo "released $namespace/$name"
  done
