//! The evidence and ownership rules (docs/design.md §2, §3) against the real API server and the simulator: the
//! controller releases only what its resource owns, and removes a finalizer only on proof. Each
//! test asserts on the simulator's call log, so a release that should not happen is seen.

mod support;

use std::time::Duration;

use ecs_instance_controller::{
    EcsInstance,
    conditions::{READY, STALLED},
    resource::{FINALIZER, OWNER_TAG, OWNER_UID_TAG, TAKE_OVER_ANNOTATION},
};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use support::{Harness, call_succeeded, condition_message, fast_timings};
use testkit::{sim::EcsSim, test_namespace};

/// The simulator's second account: a valid key of another account.
const OTHER_KEY: &str = "LTAIotheraccount";
const OTHER_SECRET: &str = "other-secret";

async fn still_held(h: &Harness, name: &str) -> EcsInstance {
    let resource = h.api.get(name).await.expect("the resource is still there");
    assert!(
        resource.finalizers().iter().any(|f| f == FINALIZER),
        "{name} keeps its finalizer"
    );
    resource
}

async fn successful_deletes(h: &Harness, id: &str) -> usize {
    h.calls("DeleteInstance", Some(id))
        .await
        .into_iter()
        .filter(call_succeeded)
        .count()
}

#[tokio::test]
async fn a_key_of_another_account_never_turns_not_listed_into_released() {
    let h = Harness::start("rotated").await;
    h.sim.add_account(OTHER_KEY, OTHER_SECRET, None).await;
    let id = "i-bp1rotated0001";
    // Visible to the test account only, like an instance of that account.
    h.seed(
        id,
        json!({ "status": "Stopped", "owner": testkit::sim::ACCESS_KEY_ID }),
    )
    .await;
    h.create_credentials_secret(
        "team",
        testkit::sim::ACCESS_KEY_ID,
        testkit::sim::ACCESS_KEY_SECRET,
    )
    .await;
    h.create("web-1", id, json!({ "credentialsRef": { "name": "team" } }))
        .await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;

    // The Secret is rotated in place (a Secret in use cannot be deleted and recreated: it
    // carries the in-use finalizer) to a valid key of another account; then the resource is
    // deleted.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(h.ns.client.clone(), &h.ns.name);
    let rotated =
        json!({ "stringData": { "accessKeyId": OTHER_KEY, "accessKeySecret": OTHER_SECRET } });
    secrets
        .patch("team", &PatchParams::default(), &Patch::Merge(&rotated))
        .await
        .expect("rotate the Secret");
    h.delete("web-1").await;
    let stalled = h
        .wait_for_condition("web-1", STALLED, "True", "InstanceNoLongerVisible")
        .await;
    let message = condition_message(&stalled, STALLED);
    assert!(
        message.contains(testkit::sim::ACCESS_KEY_ID) && message.contains(OTHER_KEY),
        "says which key saw it last and which does not: {message}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    still_held(&h, "web-1").await;
    assert!(h.calls("DeleteInstance", None).await.is_empty());
    assert_eq!(h.sim.instance(id).await.unwrap()["status"], "Stopped");

    // Orphan is the way out.
    h.patch_spec("web-1", json!({ "deletionPolicy": "Orphan" }))
        .await;
    h.wait_gone("web-1").await;
    assert!(h.sim.instance(id).await.is_some(), "left as it is");
}

#[tokio::test]
async fn a_region_without_the_instance_releases_nothing_and_says_so() {
    let h = Harness::start("region").await;
    let id = "i-bp1region00001";
    h.seed(id, json!({ "status": "Stopped" })).await;
    // A real region where the instance is not: never observed, so nothing was ever managed.
    h.create("elsewhere", id, json!({ "regionId": "cn-shanghai" }))
        .await;
    h.wait_for_condition("elsewhere", READY, "False", "InstanceNotFound")
        .await;
    h.delete("elsewhere").await;
    h.wait_gone("elsewhere").await;
    let (_, _, note) = h.wait_for_event("elsewhere", "NeverObserved").await;
    assert!(
        note.contains("Nothing was released") && !note.contains("no longer exists"),
        "{note}"
    );
    assert!(h.calls("DeleteInstance", None).await.is_empty());
    assert!(h.sim.instance(id).await.is_some());

    // A region ECS does not know is an error, never "gone".
    h.create("nowhere", id, json!({ "regionId": "xx-nowhere-9" }))
        .await;
    h.wait_for_condition("nowhere", STALLED, "True", "InvalidRegionId")
        .await;
    h.delete("nowhere").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    still_held(&h, "nowhere").await;
    h.patch_spec("nowhere", json!({ "deletionPolicy": "Orphan" }))
        .await;
    h.wait_gone("nowhere").await;
}

#[tokio::test]
async fn a_failing_batched_lookup_never_drops_a_finalizer() {
    let h = Harness::start("batch").await;
    let ids = h.ready_instances("i-bp1batcherr", 8, "Stopped").await;
    h.sim
        .set_faults(json!({ "rules": [
            { "action": "DescribeInstances", "errorRate": 1.0, "errorCode": "Forbidden.RAM" }
        ] }))
        .await;
    for n in 0..ids.len() {
        h.delete(&format!("web-{n}")).await;
    }
    for n in 0..ids.len() {
        h.wait_for_condition(&format!("web-{n}"), STALLED, "True", "CredentialsRejected")
            .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for n in 0..ids.len() {
        still_held(&h, &format!("web-{n}")).await;
    }
    assert!(h.calls("DeleteInstance", None).await.is_empty());

    h.sim.clear_faults().await;
    for (n, id) in ids.iter().enumerate() {
        h.wait_gone(&format!("web-{n}")).await;
        assert_eq!(successful_deletes(&h, id).await, 1, "{id}");
    }
}

#[tokio::test]
async fn the_oldest_of_two_resources_owns_the_instance_in_one_namespace() {
    let mut h = Harness::start("dup").await;
    let id = "i-bp1duplicate01";
    h.seed(id, json!({ "status": "Stopped" })).await;
    let owner = h.create("owner", id, json!({})).await;
    h.wait_for_condition("owner", READY, "True", "InstanceObserved")
        .await;
    // creationTimestamp has whole seconds: a later second makes the copy the younger one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.create("copy", id, json!({})).await;
    let copy = h
        .wait_for_condition("copy", STALLED, "True", "DuplicateInstance")
        .await;
    assert!(condition_message(&copy, STALLED).contains(&format!("{}/owner", h.ns.name)));
    assert_eq!(
        h.sim.tags(id).await.get(OWNER_UID_TAG).map(String::as_str),
        owner.uid().as_deref(),
        "the owner tagged it"
    );

    // Deleted while the controller is down: the restarted one still knows who owns it.
    h.kill_controller().await;
    h.delete("copy").await;
    h.start_controller(fast_timings());
    h.wait_gone("copy").await;
    let (kind, _, note) = h.wait_for_event("copy", "DuplicateRemoved").await;
    assert_eq!(kind, "Warning");
    assert!(note.contains("not released"), "{note}");
    assert!(h.calls("DeleteInstance", None).await.is_empty());
    assert!(h.calls("StopInstance", None).await.is_empty());
    h.wait_for_condition("owner", READY, "True", "InstanceObserved")
        .await;

    h.delete("owner").await;
    h.wait_gone("owner").await;
    assert_eq!(successful_deletes(&h, id).await, 1);
}

#[tokio::test]
async fn a_duplicate_in_another_namespace_never_releases_the_owners_instance() {
    let sim = EcsSim::start().await;
    let mut a = Harness::attached(
        test_namespace("dup-a").await,
        EcsSim::attach(sim.endpoint()),
    );
    let b = Harness::attached(test_namespace("dup-b").await, sim);
    let namespaces = [a.ns.name.clone(), b.ns.name.clone()];
    a.start_controller_watching(fast_timings(), &namespaces);
    let id = "i-bp1crossns0001";
    a.seed(id, json!({ "status": "Stopped" })).await;
    a.create("owner", id, json!({})).await;
    a.wait_for_condition("owner", READY, "True", "InstanceObserved")
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    b.create("intruder", id, json!({})).await;
    b.wait_for_condition("intruder", STALLED, "True", "DuplicateInstance")
        .await;
    b.delete("intruder").await;
    b.wait_gone("intruder").await;
    assert!(a.calls("DeleteInstance", None).await.is_empty());
    assert_eq!(a.sim.instance(id).await.unwrap()["status"], "Stopped");
    a.wait_for_condition("owner", READY, "True", "InstanceObserved")
        .await;
}

#[tokio::test]
async fn an_instance_tagged_for_another_resource_is_never_adopted() {
    let h = Harness::start("foreign").await;
    let id = "i-bp1foreign0001";
    h.seed(
        id,
        json!({ "status": "Stopped", "tags": { OWNER_UID_TAG: "someone-else", OWNER_TAG: "other/web" } }),
    )
    .await;
    h.create("web-1", id, json!({})).await;
    let stalled = h
        .wait_for_condition("web-1", STALLED, "True", "OwnedByAnotherResource")
        .await;
    assert!(condition_message(&stalled, STALLED).contains("someone-else"));
    h.delete("web-1").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    still_held(&h, "web-1").await;
    assert!(h.calls("DeleteInstance", None).await.is_empty());
    assert!(
        h.calls("TagResources", None).await.is_empty(),
        "not re-tagged"
    );

    h.patch_spec("web-1", json!({ "deletionPolicy": "Orphan" }))
        .await;
    h.wait_gone("web-1").await;
    assert_eq!(
        h.sim.tags(id).await.get(OWNER_UID_TAG).map(String::as_str),
        Some("someone-else"),
        "another resource's tags are not ours to remove"
    );
}

/// A restore: the instance carries an old owner UID. The annotation takes it over, but only once
/// no resource with that UID exists in the cluster; the call log shows no tag call before.
#[tokio::test]
async fn a_restored_resource_takes_its_instance_over_only_on_the_annotation_and_once_the_old_uid_is_gone()
 {
    let h = Harness::start("takeover").await;
    let (id, other) = ("i-bp1takeover0001", "i-bp1takeover0002");
    h.seed(other, json!({ "status": "Running" })).await;
    let keeper = h
        .create("keeper", other, json!({ "deletionPolicy": "Orphan" }))
        .await;
    h.wait_for_condition("keeper", READY, "True", "InstanceObserved")
        .await;
    let old_uid = keeper.uid().expect("a UID");
    h.seed(
        id,
        json!({ "status": "Running", "tags": { OWNER_UID_TAG: old_uid, OWNER_TAG: "prod/web-1" } }),
    )
    .await;

    // Without the annotation: refused, and told how to take it over.
    h.create("web-1", id, json!({})).await;
    let stalled = h
        .wait_for_condition("web-1", STALLED, "True", "OwnedByAnotherResource")
        .await;
    let message = condition_message(&stalled, STALLED);
    assert!(
        message.contains(&format!("{TAKE_OVER_ANNOTATION}={old_uid}")),
        "{message}"
    );

    // With it, while the resource with that UID exists: refused, naming it.
    let annotate = json!({ "metadata": { "annotations": { TAKE_OVER_ANNOTATION: old_uid } } });
    h.api
        .patch("web-1", &PatchParams::default(), &Patch::Merge(&annotate))
        .await
        .expect("annotate");
    let blocked = h
        .wait_for("web-1", "the take-over refused", |r| {
            condition_message(r, STALLED).contains("is refused while")
        })
        .await;
    assert!(condition_message(&blocked, STALLED).contains("/keeper"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        h.calls("TagResources", Some(id)).await.is_empty(),
        "nothing taken over while the old UID exists"
    );

    // The old resource goes: taken over, recorded, and ours from then on.
    h.delete("keeper").await;
    h.wait_gone("keeper").await;
    let taken = h
        .wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    assert_eq!(
        taken
            .status
            .as_ref()
            .and_then(|s| s.instance.as_ref())
            .and_then(|i| i.taken_over_from.as_deref()),
        Some(old_uid.as_str())
    );
    let (_, _, note) = h.wait_for_event("web-1", "TakenOver").await;
    assert!(note.contains(&old_uid), "{note}");
    let tags = h.sim.tags(id).await;
    assert_eq!(tags.get(OWNER_UID_TAG), taken.uid().as_ref());
    assert_eq!(
        h.calls("TagResources", Some(id))
            .await
            .iter()
            .filter(|c| call_succeeded(c))
            .count(),
        1
    );

    // The taken-over instance is released like any other.
    h.sim
        .patch_instance(id, json!({ "status": "Stopped" }))
        .await;
    h.delete("web-1").await;
    h.wait_gone("web-1").await;
    assert_eq!(successful_deletes(&h, id).await, 1);
}

#[tokio::test]
async fn adoptions_in_quick_succession_share_tag_calls_and_each_instance_stays_its_resources() {
    let h = Harness::start("claims").await;
    let count = 60;
    let ids = h.ready_instances("i-bp1claimed", count, "Stopped").await;
    let tag_calls = h.calls("TagResources", None).await;
    eprintln!(
        "{count} adoptions -> {} TagResources calls",
        tag_calls.len()
    );
    assert!(
        tag_calls.len() <= count / 4,
        "{} TagResources calls for {count} adoptions",
        tag_calls.len()
    );
    let mut claims = std::collections::BTreeSet::new();
    for (n, id) in ids.iter().enumerate() {
        let resource = h.api.get(&format!("web-{n}")).await.expect("get");
        let uid = resource.uid().expect("a UID");
        let tag = h.sim.tags(id).await[OWNER_UID_TAG].clone();
        let claim = resource
            .status
            .as_ref()
            .and_then(|s| s.instance.as_ref()?.claim.clone());
        match claim {
            // Tagged with a claim: the one its status records, for its own UID.
            Some(claim) => {
                assert_eq!(
                    (tag.as_str(), claim.uid.as_str()),
                    (claim.value.as_str(), uid.as_str()),
                    "{id}"
                );
                claims.insert(claim.value);
            }
            None => assert_eq!(tag, uid, "{id}: tagged with its UID"),
        }
    }
    assert!(!claims.is_empty() && claims.len() < count / 4, "{claims:?}");

    for n in 0..count {
        h.delete(&format!("web-{n}")).await;
    }
    for (n, id) in ids.iter().enumerate() {
        h.wait_gone(&format!("web-{n}")).await;
        assert_eq!(successful_deletes(&h, id).await, 1, "{id}");
    }
}

#[tokio::test]
async fn orphaning_removes_our_tags() {
    let h = Harness::start("untag").await;
    let id = "i-bp1untag000001";
    h.seed(id, json!({ "status": "Running", "tags": { "team": "a" } }))
        .await;
    let resource = h
        .create("web-1", id, json!({ "deletionPolicy": "Orphan" }))
        .await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    let tags = h.sim.tags(id).await;
    assert_eq!(tags.get(OWNER_UID_TAG), resource.uid().as_ref());
    assert_eq!(
        tags.get(OWNER_TAG).map(String::as_str),
        Some(format!("{}/web-1", h.ns.name).as_str())
    );
    h.delete("web-1").await;
    h.wait_gone("web-1").await;
    let tags = h.sim.tags(id).await;
    assert!(!tags.contains_key(OWNER_UID_TAG) && !tags.contains_key(OWNER_TAG));
    assert_eq!(
        tags.get("team").map(String::as_str),
        Some("a"),
        "others' tags stay"
    );
    assert_eq!(h.sim.instance(id).await.unwrap()["status"], "Running");
}

/// The status write after an accepted `DeleteInstance` is refused (an admission policy stands in
/// for an API server hiccup): no second `DeleteInstance`, and once writes work again the final
/// status and event carry the release's RequestId.
#[tokio::test]
async fn a_failed_status_write_after_delete_instance_never_releases_twice() {
    let h = Harness::start("writefail").await;
    let id = "i-bp1writefail01";
    h.seed(id, json!({ "status": "Stopped" })).await;
    h.create("web-1", id, json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;

    let name = format!("refuse-release-{}", h.ns.name);
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(h.ns.client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(h.ns.client.clone());
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": { "resourceRules": [{
                "apiGroups": ["ecs.alicloud.dev"], "apiVersions": ["*"],
                "operations": ["UPDATE"], "resources": ["ecsinstances/status"],
            }] },
            "validations": [{
                // The intent (a release without a RequestId) may be written: it comes first.
                "expression": "!(has(object.status.release) && has(object.status.release.requestId))",
                "message": "test: status writes that record a release are refused",
            }],
        },
    }))
    .unwrap();
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": { "namespaceSelector": { "matchLabels": {
                "kubernetes.io/metadata.name": h.ns.name,
            } } },
        },
    }))
    .unwrap();
    policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    // Admission policies take effect shortly after they are created.
    tokio::time::sleep(Duration::from_secs(3)).await;

    h.delete("web-1").await;
    for _ in 0..100 {
        if successful_deletes(&h, id).await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(successful_deletes(&h, id).await, 1, "released once");
    // Several passes while the instance lingers and the status cannot be written.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        h.calls("DeleteInstance", Some(id)).await.len(),
        1,
        "never a second DeleteInstance"
    );
    let held = still_held(&h, "web-1").await;
    assert!(
        held.status
            .and_then(|s| s.release)
            .is_none_or(|r| r.request_id.is_none()),
        "the policy did refuse the write"
    );

    bindings
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    policies
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    h.wait_gone("web-1").await;
    let (_, _, note) = h.wait_for_event("web-1", "Released").await;
    assert!(
        note.contains("RequestId"),
        "the final event tells the truth: {note}"
    );
    assert_eq!(h.calls("DeleteInstance", Some(id)).await.len(), 1);
}

/// `--require-credentials-ref` and `--own-credentials-namespaces` (shared clusters): the
/// controller's own keys are never used where they are not allowed; naming a Secret unblocks.
#[tokio::test]
async fn shared_clusters_keep_the_controllers_own_keys_out_of_team_namespaces() {
    for flag in [
        "--require-credentials-ref".to_string(),
        "--own-credentials-namespaces=platform".to_string(),
    ] {
        let h = Harness::attached(test_namespace("tenancy").await, EcsSim::start().await);
        let plane = testkit::control_plane();
        let log = plane.run_dir.join(format!("controller-{}.log", h.ns.name));
        let namespaces = format!("--namespaces={}", h.ns.name);
        let (mut controller, _, health) = support::spawn_controller_binary(
            h.sim.endpoint(),
            (testkit::sim::ACCESS_KEY_ID, testkit::sim::ACCESS_KEY_SECRET),
            &[&namespaces, &flag],
            &log,
        );
        support::wait_ready(&health, &log).await;
        let id = "i-bp1tenancy0001";
        h.seed(id, json!({ "status": "Stopped" })).await;
        h.create("web-1", id, json!({})).await;
        let stalled = h
            .wait_for_condition("web-1", STALLED, "True", "CredentialsUnavailable")
            .await;
        let message = condition_message(&stalled, STALLED);
        let option = flag.trim_start_matches("--").split('=').next().unwrap();
        assert!(message.contains(option), "{flag}: {message}");
        h.delete("web-1").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        still_held(&h, "web-1").await;
        assert!(
            h.sim.calls(None).await.is_empty(),
            "{flag}: no cloud call at all"
        );

        h.create_credentials_secret(
            "team",
            testkit::sim::ACCESS_KEY_ID,
            testkit::sim::ACCESS_KEY_SECRET,
        )
        .await;
        h.patch_spec("web-1", json!({ "credentialsRef": { "name": "team" } }))
            .await;
        h.wait_gone("web-1").await;
        assert_eq!(successful_deletes(&h, id).await, 1, "{flag}");
        let _ = controller.kill();
        let _ = controller.wait();
    }
}
