//! Deleting a namespace with kube-controller-manager running against the test control plane: its
//! namespace controller deletes the namespace's objects, then the namespace
//! (`testkit::controller_manager`, started once for this test binary by the first test that asks).

use std::{process::Command, time::Duration};

use ecs_instance_controller::EcsInstance;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use testkit::{control_plane, controller_manager, test_namespace, wait_namespace_gone};

/// How long a namespace may take to go once deleted (seconds in practice).
const GONE_WITHIN: Duration = Duration::from_secs(60);

const MANAGER: &str = "namespace-teardown-test";

/// `kubectl delete namespace NAME --wait=false` against the test control plane (the waiting is
/// `wait_namespace_gone`'s, which says what holds the namespace when it does not go).
fn kubectl_delete_namespace(name: &str) {
    let plane = control_plane();
    let output = Command::new(plane.kubectl())
        .arg(format!("--kubeconfig={}", plane.kubeconfig.display()))
        .args(["delete", "namespace", name, "--wait=false"])
        .output()
        .expect("run kubectl");
    assert!(
        output.status.success(),
        "kubectl delete namespace {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn create_config_map(client: &Client, namespace: &str, name: &str) {
    let config_map: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": name },
        "data": { "key": "value" },
    }))
    .expect("a valid ConfigMap");
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &config_map)
        .await
        .unwrap_or_else(|e| panic!("create ConfigMap {namespace}/{name}: {e}"));
}

/// An `EcsInstance` without finalizers (no controller runs in this test to add its own).
async fn create_instance(client: &Client, namespace: &str, name: &str) {
    let manifest = json!({
        "apiVersion": "ecs.alicloud.dev/v1alpha1",
        "kind": "EcsInstance",
        "metadata": { "name": name },
        "spec": { "instanceId": "i-bp67acfmxazb4ph3t1ab", "regionId": "cn-hangzhou" },
    });
    let created = Api::<EcsInstance>::namespaced(client.clone(), namespace)
        .patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(&manifest))
        .await
        .unwrap_or_else(|e| panic!("create EcsInstance {namespace}/{name}: {e}"));
    assert!(
        created.metadata.finalizers.is_none_or(|f| f.is_empty()),
        "created without finalizers"
    );
}

#[tokio::test]
async fn kubectl_delete_namespace_removes_its_objects_and_the_namespace() {
    let manager = controller_manager();
    eprintln!("kube-controller-manager ready in {:?}", manager.started_in);
    let ns = test_namespace("teardown").await;
    create_config_map(&ns.client, &ns.name, "settings").await;
    create_instance(&ns.client, &ns.name, "web-1").await;

    kubectl_delete_namespace(&ns.name);
    let took = wait_namespace_gone(&ns.client, &ns.name, GONE_WITHIN).await;
    eprintln!("namespace {} gone {took:?} after kubectl delete", ns.name);

    // The namespace goes only once its objects are gone.
    let config_maps = Api::<ConfigMap>::namespaced(ns.client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .expect("list ConfigMaps");
    assert!(config_maps.items.is_empty(), "{:?}", config_maps.items);
    let instances = Api::<EcsInstance>::namespaced(ns.client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .expect("list EcsInstances");
    assert!(instances.items.is_empty(), "{:?}", instances.items);
}
