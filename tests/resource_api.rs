//! The `EcsInstance` resource as the real kube-apiserver serves it: defaults, OpenAPI and CEL
//! validation, the finalizer's hold on deletion, the status subresource and printer columns.

use ecs_instance_controller::{
    EcsInstance,
    resource::{DeletionPolicy, StopPolicy},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;
use testkit::{control_plane, test_namespace};

const MANAGER: &str = "resource-api-test";

fn manifest(name: &str, instance_id: &str) -> serde_json::Value {
    json!({
        "apiVersion": "ecs.alicloud.dev/v1alpha1",
        "kind": "EcsInstance",
        "metadata": { "name": name },
        "spec": { "instanceId": instance_id, "regionId": "cn-hangzhou" },
    })
}

async fn apply(
    api: &Api<EcsInstance>,
    name: &str,
    body: &serde_json::Value,
) -> kube::Result<EcsInstance> {
    api.patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(body))
        .await
}

fn invalid_reason(result: kube::Result<EcsInstance>) -> String {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "expected 422 Invalid, got {status:?}");
            status.message
        }
        other => panic!("the API server accepted an invalid EcsInstance: {other:?}"),
    }
}

#[tokio::test]
async fn server_side_apply_creates_and_defaults_are_filled_in() {
    let ns = test_namespace("apply").await;
    let api: Api<EcsInstance> = Api::namespaced(ns.client.clone(), &ns.name);

    apply(&api, "web-1", &manifest("web-1", "i-bp67acfmxazb4ph3t1ab"))
        .await
        .expect("apply");
    let read = api.get("web-1").await.expect("read back");

    assert_eq!(read.spec.instance_id, "i-bp67acfmxazb4ph3t1ab");
    assert_eq!(read.spec.region_id, "cn-hangzhou");
    assert_eq!(
        read.spec.deletion_policy, None,
        "unset: the Namespace's or the controller's default applies, decided by the controller"
    );
    assert_eq!(read.spec.on_delete.stop, StopPolicy::Wait);
    assert!(!read.spec.on_delete.force);
    assert!(!read.spec.on_delete.terminate_subscription);
    assert_eq!(read.metadata.generation, Some(1));
}

#[tokio::test]
async fn malformed_instance_id_and_region_are_refused() {
    let ns = test_namespace("invalid").await;
    let api: Api<EcsInstance> = Api::namespaced(ns.client.clone(), &ns.name);

    let uppercase = invalid_reason(apply(&api, "bad-1", &manifest("bad-1", "i-BP67ACF")).await);
    assert!(uppercase.contains("spec.instanceId"), "{uppercase}");

    let no_prefix =
        invalid_reason(apply(&api, "bad-2", &manifest("bad-2", "bp67acfmxazb4ph3t1ab")).await);
    assert!(no_prefix.contains("spec.instanceId"), "{no_prefix}");

    let mut bad_region = manifest("bad-3", "i-bp67acfmxazb4ph3t1ab");
    bad_region["spec"]["regionId"] = json!("Hangzhou");
    let region = invalid_reason(apply(&api, "bad-3", &bad_region).await);
    assert!(region.contains("spec.regionId"), "{region}");

    let mut bad_policy = manifest("bad-4", "i-bp67acfmxazb4ph3t1ab");
    bad_policy["spec"]["onDelete"] = json!({ "stop": "Halt" });
    let policy = invalid_reason(apply(&api, "bad-4", &bad_policy).await);
    assert!(policy.contains("spec.onDelete.stop"), "{policy}");

    assert!(
        api.get_opt("bad-1").await.unwrap().is_none(),
        "nothing invalid was stored"
    );
}

#[tokio::test]
async fn instance_and_region_are_immutable_but_deletion_policy_is_not() {
    let ns = test_namespace("immutable").await;
    let api: Api<EcsInstance> = Api::namespaced(ns.client.clone(), &ns.name);
    apply(&api, "web-1", &manifest("web-1", "i-bp67acfmxazb4ph3t1ab"))
        .await
        .expect("apply");

    let changed_id =
        invalid_reason(apply(&api, "web-1", &manifest("web-1", "i-bp67acfmxazb4ph3t1zz")).await);
    assert!(
        changed_id.contains("instanceId is immutable"),
        "{changed_id}"
    );

    let mut moved = manifest("web-1", "i-bp67acfmxazb4ph3t1ab");
    moved["spec"]["regionId"] = json!("cn-shanghai");
    let changed_region = invalid_reason(apply(&api, "web-1", &moved).await);
    assert!(
        changed_region.contains("regionId is immutable"),
        "{changed_region}"
    );

    let mut orphan = manifest("web-1", "i-bp67acfmxazb4ph3t1ab");
    orphan["spec"]["deletionPolicy"] = json!("Orphan");
    let updated = apply(&api, "web-1", &orphan)
        .await
        .expect("deletionPolicy is mutable");
    assert_eq!(updated.spec.deletion_policy, Some(DeletionPolicy::Orphan));
    assert_eq!(updated.spec.instance_id, "i-bp67acfmxazb4ph3t1ab");
}

#[tokio::test]
async fn a_finalizer_holds_the_resource_in_terminating_until_removed() {
    let ns = test_namespace("finalizer").await;
    let api: Api<EcsInstance> = Api::namespaced(ns.client.clone(), &ns.name);
    let mut body = manifest("web-1", "i-bp67acfmxazb4ph3t1ab");
    body["metadata"]["finalizers"] = json!([ecs_instance_controller::resource::FINALIZER]);
    apply(&api, "web-1", &body).await.expect("apply");

    api.delete("web-1", &DeleteParams::default())
        .await
        .expect("delete");
    let terminating = api
        .get("web-1")
        .await
        .expect("still there while the finalizer is set");
    assert!(
        terminating.metadata.deletion_timestamp.is_some(),
        "deletionTimestamp is set"
    );

    // Spec changes are still possible while terminating: the documented way out is Orphan.
    let orphan = json!({ "spec": { "deletionPolicy": "Orphan" } });
    api.patch("web-1", &PatchParams::default(), &Patch::Merge(&orphan))
        .await
        .expect("switch to Orphan while terminating");

    let remove = json!({ "metadata": { "finalizers": null } });
    api.patch("web-1", &PatchParams::default(), &Patch::Merge(&remove))
        .await
        .expect("remove finalizer");
    assert!(
        api.get_opt("web-1").await.expect("get").is_none(),
        "gone once the finalizer is removed"
    );
}

#[tokio::test]
async fn status_is_written_through_the_status_subresource_only() {
    let ns = test_namespace("status").await;
    let api: Api<EcsInstance> = Api::namespaced(ns.client.clone(), &ns.name);
    apply(&api, "web-1", &manifest("web-1", "i-bp67acfmxazb4ph3t1ab"))
        .await
        .expect("apply");

    let ready = Condition {
        type_: "Ready".into(),
        status: "True".into(),
        reason: "InstanceObserved".into(),
        message: "instance i-bp67acfmxazb4ph3t1ab is Running".into(),
        observed_generation: Some(1),
        last_transition_time: Time(jiff::Timestamp::now()),
    };
    let status = json!({
        "apiVersion": "ecs.alicloud.dev/v1alpha1",
        "kind": "EcsInstance",
        "status": {
            "observedGeneration": 1,
            "instance": { "status": "Running", "chargeType": "PostPaid" },
            "conditions": [ready],
        },
    });
    api.patch_status(
        "web-1",
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&status),
    )
    .await
    .expect("patch status");

    let read = api.get("web-1").await.expect("read back");
    let observed = read.status.expect("status was stored");
    assert_eq!(observed.observed_generation, Some(1));
    assert_eq!(
        observed.instance.and_then(|i| i.status).as_deref(),
        Some("Running")
    );
    assert_eq!(observed.conditions.len(), 1);
    assert_eq!(observed.conditions[0].reason, "InstanceObserved");
    assert_eq!(
        read.metadata.generation,
        Some(1),
        "a status write does not bump the generation"
    );

    // A status sent to the main resource is dropped by the API server.
    let sneaky = json!({ "status": { "observedGeneration": 99 } });
    api.patch("web-1", &PatchParams::default(), &Patch::Merge(&sneaky))
        .await
        .expect("merge patch");
    let read = api.get("web-1").await.expect("read back");
    assert_eq!(read.status.and_then(|s| s.observed_generation), Some(1));
}

#[tokio::test]
async fn kubectl_shows_printer_columns_short_name_and_category() {
    let ns = test_namespace("kubectl").await;
    let api: Api<EcsInstance> = Api::namespaced(ns.client.clone(), &ns.name);
    apply(&api, "web-1", &manifest("web-1", "i-bp67acfmxazb4ph3t1ab"))
        .await
        .expect("apply");

    let plane = control_plane();
    for resource in ["ecsi", "alicloud"] {
        let output = std::process::Command::new(plane.kubectl())
            .arg(format!("--kubeconfig={}", plane.kubeconfig.display()))
            .args(["get", resource, "-n", &ns.name])
            .output()
            .expect("run kubectl");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "kubectl get {resource}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let header: Vec<&str> = stdout
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(
            header,
            [
                "NAME", "INSTANCE", "REGION", "STATUS", "READY", "REASON", "AGE"
            ],
            "{stdout}"
        );
        assert!(
            stdout.contains("i-bp67acfmxazb4ph3t1ab") && stdout.contains("cn-hangzhou"),
            "{stdout}"
        );
    }
}
