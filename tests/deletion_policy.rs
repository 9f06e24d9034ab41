//! Where the deletion policy comes from, through the real controller binary (flags at their
//! defaults) against the real API server and the simulator: the resource's own
//! `spec.deletionPolicy`, else its Namespace's annotation, else `--default-deletion-policy`; and
//! `Observe`, the dry run that changes nothing in the cloud (docs/operations.md, "Safer defaults").

mod support;

use ecs_instance_controller::{
    conditions::{READY, STALLED},
    resource::NAMESPACE_POLICY_ANNOTATION,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::{Harness, call_succeeded, condition_message, wait_ready};
use testkit::{sim::EcsSim, test_namespace};

async fn annotate_namespace(h: &Harness, value: &str) {
    let namespaces: Api<Namespace> = Api::all(h.ns.client.clone());
    let patch = json!({ "metadata": { "annotations": { NAMESPACE_POLICY_ANNOTATION: value } } });
    namespaces
        .patch(&h.ns.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate the namespace");
}

async fn successful(h: &Harness, action: &str, id: &str) -> usize {
    h.calls(action, Some(id))
        .await
        .iter()
        .filter(|c| call_succeeded(c))
        .count()
}

#[tokio::test]
async fn the_namespace_annotation_sets_the_policy_of_resources_that_set_none() {
    let ns = test_namespace("policy").await;
    let h = Harness::attached(ns, EcsSim::start().await);
    let log = testkit::control_plane()
        .run_dir
        .join(format!("controller-{}.log", h.ns.name));
    let (_controller, _metrics, health) = support::spawn_controller_binary(
        h.sim.endpoint(),
        (testkit::sim::ACCESS_KEY_ID, testkit::sim::ACCESS_KEY_SECRET),
        &[&format!("--namespaces={}", h.ns.name)],
        &log,
    );
    wait_ready(&health, &log).await;
    annotate_namespace(&h, "Orphan").await;

    let (kept, released) = ("i-bp1policykeep01", "i-bp1policygone01");
    for id in [kept, released] {
        h.seed(id, json!({ "status": "Stopped" })).await;
    }
    h.create("no-policy", kept, json!({})).await;
    h.create("explicit", released, json!({ "deletionPolicy": "Delete" }))
        .await;
    for name in ["no-policy", "explicit"] {
        h.wait_for_condition(name, READY, "True", "InstanceObserved")
            .await;
        h.delete(name).await;
        h.wait_gone(name).await;
    }
    assert_eq!(
        successful(&h, "DeleteInstance", kept).await,
        0,
        "the namespace said Orphan"
    );
    assert_eq!(
        successful(&h, "DeleteInstance", released).await,
        1,
        "the spec said Delete"
    );
    let (_, _, note) = h.wait_for_event("no-policy", "Orphaned").await;
    assert!(
        note.contains(&format!("the default of namespace {}", h.ns.name)),
        "{note}"
    );

    // Observe: never tagged, never stopped or released; the event says what Delete would do.
    annotate_namespace(&h, "Observe").await;
    let dry = "i-bp1policydry001";
    h.seed(dry, json!({ "status": "Running" })).await;
    h.sim.clear_calls().await;
    h.create("dry-run", dry, json!({ "onDelete": { "stop": "Stop" } }))
        .await;
    let ready = h
        .wait_for_condition("dry-run", READY, "True", "InstanceObserved")
        .await;
    assert!(condition_message(&ready, READY).contains("Observe"));
    h.delete("dry-run").await;
    h.wait_gone("dry-run").await;
    let (_, _, note) = h.wait_for_event("dry-run", "ObservedOnly").await;
    assert!(
        note.contains(
            "would have tagged it as owned by this resource, then stopped it (StopInstance)"
        ),
        "{note}"
    );
    let changes: Vec<_> = h
        .sim
        .calls(None)
        .await
        .into_iter()
        .filter(|c| c["action"] != "DescribeInstances")
        .collect();
    assert!(
        changes.is_empty(),
        "a dry run calls nothing but DescribeInstances: {changes:?}"
    );

    // A typo is never read as Delete: the deletion waits until someone fixes it.
    annotate_namespace(&h, "Orphn").await;
    let typo = "i-bp1policytypo01";
    h.seed(typo, json!({ "status": "Stopped" })).await;
    h.create("typo", typo, json!({})).await;
    h.wait_for_condition("typo", READY, "True", "InstanceObserved")
        .await;
    h.delete("typo").await;
    let stalled = h
        .wait_for_condition("typo", STALLED, "True", "InvalidDeletionPolicy")
        .await;
    assert!(condition_message(&stalled, STALLED).contains("\"Orphn\""));
    annotate_namespace(&h, "Orphan").await;
    h.wait_gone("typo").await;
    assert_eq!(successful(&h, "DeleteInstance", typo).await, 0);
}
