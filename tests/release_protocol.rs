//! The release protocol of design.md §2–§6 end to end: the controller (in-process) against a real
//! kube-apiserver and the ECS simulator, one scenario per test. Each test asserts on the
//! resource's final status or events AND on the simulator's call log, the cloud's own record of
//! what it was told: a lost answer, a resend, an Orphan racing a pass, an Orphan after a release,
//! a GitOps prune that takes the credentials Secret along, and two resources naming one instance.

mod support;

use std::{process::Stdio, str::FromStr, time::Duration};

use ecs_instance_controller::{
    conditions::{READY, RECONCILING, RELEASED, STALLED},
    pacing::Timings,
    resource::{OWNER_UID_TAG, SECRET_IN_USE_FINALIZER},
};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};
use support::{Harness, call_succeeded, condition_message, fast_timings, has_condition};
use testkit::{
    sim::{ACCESS_KEY_ID, EcsSim},
    test_namespace,
};

/// A valid key of another account the simulator knows (added per test).
const OTHER_KEY: &str = "LTAIotheraccount";
const OTHER_SECRET: &str = "other-secret";

/// Real kubectl against the test control plane; panics with its stderr if it fails.
async fn kubectl(args: &[&str]) -> String {
    let plane = testkit::control_plane();
    let output = tokio::process::Command::new(plane.kubectl())
        .arg(format!("--kubeconfig={}", plane.kubeconfig.display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run kubectl");
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// When the simulator received a call (its log's `at`).
fn received_at(call: &Value) -> Timestamp {
    let at = call["at"].as_str().expect("a call has its time");
    Timestamp::from_str(at).unwrap_or_else(|e| panic!("call time {at}: {e}"))
}

fn request_id(call: &Value) -> String {
    call["requestId"]
        .as_str()
        .expect("a call has its RequestId")
        .to_string()
}

/// The simulator's call log, one line a call, for failure messages.
async fn call_summary(h: &Harness) -> Vec<String> {
    h.sim
        .calls(None)
        .await
        .iter()
        .map(|call| {
            format!(
                "{} {} {} {} {}",
                call["at"].as_str().unwrap_or_default(),
                call["action"].as_str().unwrap_or_default(),
                call["httpStatus"],
                call["params"]["InstanceIds"]
                    .as_str()
                    .or(call["params"]["InstanceId"].as_str())
                    .or(call["params"]["ResourceId.1"].as_str())
                    .unwrap_or_default(),
                call["params"]["Tag.2.Value"].as_str().unwrap_or_default(),
            )
        })
        .collect()
}

/// The newest event about a resource: `(type, reason, note)`.
async fn last_event(h: &Harness, name: &str) -> (String, String, String) {
    let events = h.events(name).await;
    events
        .last()
        .cloned()
        .unwrap_or_else(|| panic!("{name}: no events"))
}

fn secrets(h: &Harness) -> Api<Secret> {
    Api::namespaced(h.ns.client.clone(), &h.ns.name)
}

/// The Secret's finalizers, `None` once it is gone.
async fn secret_finalizers(h: &Harness, name: &str) -> Option<Vec<String>> {
    secrets(h)
        .get_opt(name)
        .await
        .expect("get Secret")
        .map(|s| s.finalizers().to_vec())
}

/// Design §4: ECS processed the `DeleteInstance` but its answer never arrived. The next pass
/// observes before anything else is sent; the instance disappearing is this resource's release
/// ("answer lost"), never "nothing to release", and no second `DeleteInstance` is sent.
#[tokio::test]
async fn a_lost_answer_to_delete_instance_is_this_resources_release() {
    // The resend window is far beyond the simulator's release (0.5 s linger), so the release
    // shows first.
    let timings = Timings {
        release_resend: Duration::from_secs(30),
        ..fast_timings()
    };
    let h = Harness::start_with("lostanswer", &[], timings).await;
    let id = "i-bp1lostanswer01";
    h.seed(id, json!({ "status": "Stopped" })).await;
    h.create("web-1", id, json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    // Left on for the whole test: ECS never answers a DeleteInstance, and any second one would
    // still be processed and logged. The only way to "Released" is to observe.
    h.sim
        .set_faults(json!([{ "action": "DeleteInstance", "dropAnswerRate": 1.0 }]))
        .await;
    h.delete("web-1").await;
    h.wait_gone("web-1").await;

    let deletes = h.calls("DeleteInstance", None).await;
    assert_eq!(deletes.len(), 1, "exactly one DeleteInstance: {deletes:#?}");
    assert_eq!(deletes[0]["params"]["InstanceId"], id);
    assert_eq!(
        deletes[0]["answerDropped"], true,
        "processed, answer dropped: {deletes:#?}"
    );
    assert!(call_succeeded(&deletes[0]), "ECS released it: {deletes:#?}");
    assert!(h.sim.instance(id).await.is_none(), "released in ECS");

    let events = h.events("web-1").await;
    assert!(
        events
            .iter()
            .any(|(kind, reason, _)| kind == "Warning" && reason == "ReleaseOutcomeUnknown"),
        "a ReleaseOutcomeUnknown warning on the way: {events:#?}"
    );
    let (kind, reason, note) = last_event(&h, "web-1").await;
    assert_eq!(
        (kind.as_str(), reason.as_str()),
        ("Normal", "Released"),
        "{events:#?}"
    );
    assert!(
        note.contains("answer lost") && note.contains(id),
        "the release is this resource's: {note}"
    );
    assert!(
        events
            .iter()
            .all(|(_, reason, note)| reason != "NotFound" && !note.contains("nothing to release")),
        "never 'nothing to release': {events:#?}"
    );
}

/// Design §4: a `DeleteInstance` whose connection broke before ECS processed it (the controller
/// cannot tell it from a lost answer). The instance stays listed, so the call is sent again, but
/// only once `release_resend` has passed since the first one; the final event carries the
/// second call's RequestId.
#[tokio::test]
async fn a_delete_instance_that_never_reached_ecs_is_sent_again_only_after_the_resend_window() {
    let window = Duration::from_secs(3);
    let timings = Timings {
        release_resend: window,
        ..fast_timings()
    };
    let h = Harness::start_with("resend", &[], timings).await;
    let id = "i-bp1resend000001";
    h.seed(id, json!({ "status": "Stopped" })).await;
    h.create("web-1", id, json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    h.sim
        .set_faults(json!([{ "action": "DeleteInstance", "dropRate": 1.0 }]))
        .await;
    h.delete("web-1").await;
    for _ in 0..100 {
        if !h.calls("DeleteInstance", None).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.sim.clear_faults().await;

    // While the window runs: the intent is kept, nothing is re-sent.
    let pending = h
        .wait_for_condition("web-1", RECONCILING, "True", "ReleaseOutcomeUnknown")
        .await;
    let release = pending.status.as_ref().and_then(|s| s.release.clone());
    assert!(
        release
            .as_ref()
            .is_some_and(|r| r.request_id.is_none() && r.requested_at.is_some()),
        "the intent stays in the status: {release:?}"
    );
    assert_eq!(h.calls("DeleteInstance", None).await.len(), 1);
    assert_eq!(
        h.sim.instance(id).await.expect("still there")["released"],
        false
    );

    h.wait_gone("web-1").await;
    let deletes = h.calls("DeleteInstance", None).await;
    assert_eq!(deletes.len(), 2, "sent once more: {deletes:#?}");
    assert_eq!(deletes[0]["dropped"], true, "{deletes:#?}");
    assert!(deletes[0]["httpStatus"].is_null(), "{deletes:#?}");
    assert!(
        call_succeeded(&deletes[1]) && deletes[1]["answerDropped"] == false,
        "{deletes:#?}"
    );
    // The window runs from the intent (written just before the first call), not from the
    // moment the first call arrived.
    let intent_at = release
        .as_ref()
        .and_then(|r| r.requested_at.as_ref())
        .expect("the intent's time")
        .0;
    let gap = received_at(&deletes[1]).duration_since(intent_at);
    assert!(
        gap >= SignedDuration::try_from(window).unwrap(),
        "resent {gap:?} after the intent, before the {window:?} window: {deletes:#?}"
    );
    assert!(h.sim.instance(id).await.is_none(), "released in ECS");

    let events = h.events("web-1").await;
    assert!(
        events
            .iter()
            .any(|(kind, reason, _)| kind == "Warning" && reason == "ReleaseOutcomeUnknown"),
        "{events:#?}"
    );
    let (_, reason, note) = last_event(&h, "web-1").await;
    assert_eq!(reason, "Released", "{events:#?}");
    let second = request_id(&deletes[1]);
    assert!(
        note.contains(&second),
        "the final event carries the second call's RequestId {second}: {note}"
    );
}

/// Design §5: `deletionPolicy: Orphan` lands while the deletion pass's `DescribeInstances` is in
/// flight (4 s of latency), so that pass plans a `DeleteInstance` from a stale read. Its intent
/// write carries the resourceVersion it read and must fail: no `DeleteInstance` ever, the
/// resource goes `Orphaned`, the instance stays. Three rounds put the patch early, mid and late
/// in the in-flight describe.
#[tokio::test]
async fn orphan_set_while_a_describe_is_in_flight_sends_no_delete_instance() {
    const LATENCY_MS: u64 = 4000;
    // No steady resync in between: the only pass in flight is the deletion's.
    let timings = Timings {
        steady: Duration::from_secs(120),
        ..fast_timings()
    };
    let h = Harness::start_with("orphanrace", &[], timings).await;
    for (round, delay_ms) in [300u64, 1500, 2500].into_iter().enumerate() {
        let id = format!("i-bp1orphrace{round:04}");
        let name = format!("web-{round}");
        h.sim.clear_faults().await;
        h.seed(&id, json!({ "status": "Stopped" })).await;
        let created = h.create(&name, &id, json!({})).await;
        h.wait_for_condition(&name, READY, "True", "InstanceObserved")
            .await;
        assert_eq!(
            h.sim.tags(&id).await.get(OWNER_UID_TAG),
            created.uid().as_ref(),
            "owned"
        );
        h.sim
            .set_faults(json!([{ "action": "DescribeInstances", "latencyMs": LATENCY_MS }]))
            .await;
        let deleted_at = Timestamp::now();
        h.delete(&name).await;
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        kubectl(&[
            "patch",
            "ecsinstance",
            &name,
            "-n",
            &h.ns.name,
            "--type=merge",
            "-p",
            r#"{"spec":{"deletionPolicy":"Orphan"}}"#,
        ])
        .await;
        let patched_at = Timestamp::now();
        h.wait_gone(&name).await;

        // The race was real: a describe of the deletion pass was received after the deletion
        // and answered (LATENCY_MS later) only after the patch had landed.
        let describes = h.calls("DescribeInstances", Some(&id)).await;
        let latency = SignedDuration::from_millis(LATENCY_MS as i64);
        assert!(
            describes.iter().any(|call| {
                let at = received_at(call);
                at >= deleted_at && at.checked_add(latency).unwrap() > patched_at
            }),
            "round {round}: no describe in flight when the patch landed ({deleted_at} .. {patched_at}): {describes:#?}"
        );
        let deletes = h.calls("DeleteInstance", Some(&id)).await;
        assert!(
            deletes.is_empty(),
            "round {round}: a DeleteInstance after Orphan: {deletes:#?}"
        );
        let instance = h.sim.instance(&id).await.expect("the instance stays");
        assert_eq!(instance["status"], "Stopped", "round {round}");
        assert_eq!(instance["released"], false, "round {round}");
        assert!(
            !h.sim.tags(&id).await.contains_key(OWNER_UID_TAG),
            "round {round}: our tags removed"
        );
        let events = h.events(&name).await;
        let (_, reason, note) = last_event(&h, &name).await;
        assert_eq!(reason, "Orphaned", "round {round}: {events:#?}");
        assert!(
            note.contains("left as it is") && !note.contains("DeleteInstance"),
            "round {round}: {note}"
        );
        assert!(
            events
                .iter()
                .all(|(_, reason, _)| reason != "ReleaseRequested" && reason != "Released"),
            "round {round}: {events:#?}"
        );
    }
}

/// Design §4: Orphan after an accepted release cannot take it back. The instance stays listed
/// for 6 s after `DeleteInstance` (within `release_timeout`): the resource waits for it to
/// disappear and ends `Released` with the RequestId; its owner tags are never removed.
#[tokio::test]
async fn orphan_after_an_accepted_release_reports_the_release_and_never_untags() {
    let h = Harness::start_with(
        "orphanafter",
        &["--release-linger-ms", "6000"],
        fast_timings(),
    )
    .await;
    let id = "i-bp1orphafter001";
    h.seed(id, json!({ "status": "Stopped" })).await;
    h.create("web-1", id, json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    h.delete("web-1").await;
    h.wait_for_condition("web-1", RELEASED, "True", "ReleaseRequested")
        .await;
    h.patch_spec("web-1", json!({ "deletionPolicy": "Orphan" }))
        .await;
    // Still listed after the Orphan: the resource says it waits for the release.
    let waiting = h
        .wait_for_condition("web-1", RECONCILING, "True", "WaitingForRelease")
        .await;
    assert!(
        condition_message(&waiting, RECONCILING).contains("deletionPolicy is Orphan"),
        "{}",
        condition_message(&waiting, RECONCILING)
    );
    h.wait_gone("web-1").await;

    let deletes = h.calls("DeleteInstance", None).await;
    assert_eq!(deletes.len(), 1, "{deletes:#?}");
    assert!(call_succeeded(&deletes[0]));
    let untags = h.calls("UntagResources", None).await;
    assert!(
        untags.is_empty(),
        "no UntagResources for an instance being released: {untags:#?}"
    );
    assert!(h.sim.instance(id).await.is_none(), "released in ECS");
    let events = h.events("web-1").await;
    let (_, reason, note) = last_event(&h, "web-1").await;
    assert_eq!(reason, "Released", "{events:#?}");
    let accepted = request_id(&deletes[0]);
    assert!(
        note.contains(&accepted) && !note.contains("left as it is"),
        "names the release {accepted}: {note}"
    );
}

/// Design §4, the other branch: the accepted release has not shown within `release_timeout`
/// (1 s, while the simulator lists the released instance for 8 s) when Orphan comes. The
/// resource is removed as `Orphaned` naming the RequestId ECS accepted; the instance, which ECS
/// did release, is never untagged and never described as "left as it is".
#[tokio::test]
async fn orphan_after_a_release_that_has_not_shown_yet_names_it_and_never_untags() {
    let timings = Timings {
        release_timeout: Duration::from_secs(1),
        ..fast_timings()
    };
    let h = Harness::start_with("orphanlate", &["--release-linger-ms", "8000"], timings).await;
    let id = "i-bp1orphlate0001";
    h.seed(id, json!({ "status": "Stopped" })).await;
    h.create("web-1", id, json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    h.delete("web-1").await;
    h.wait_for_condition("web-1", STALLED, "True", "ReleaseNotConfirmed")
        .await;
    h.patch_spec("web-1", json!({ "deletionPolicy": "Orphan" }))
        .await;
    h.wait_gone("web-1").await;

    let deletes = h.calls("DeleteInstance", None).await;
    assert_eq!(deletes.len(), 1, "{deletes:#?}");
    assert!(call_succeeded(&deletes[0]));
    let untags = h.calls("UntagResources", None).await;
    assert!(
        untags.is_empty(),
        "no UntagResources for a released instance: {untags:#?}"
    );
    assert_eq!(
        h.sim.instance(id).await.map(|i| i["released"].clone()),
        Some(json!(true)),
        "released in ECS, still listed"
    );
    let events = h.events("web-1").await;
    let (_, reason, note) = last_event(&h, "web-1").await;
    let accepted = request_id(&deletes[0]);
    assert!(
        reason == "Released" || (reason == "Orphaned" && note.contains(&accepted)),
        "Released, or Orphaned naming {accepted}: {events:#?}"
    );
    assert!(
        !note.contains("left as it is"),
        "an instance ECS released is not 'left as it is': {note}"
    );
}

/// Design §6: a GitOps prune deletes the credentials Secret together with the resources that
/// name it, in one kubectl command. The in-use finalizer keeps the Secret readable until both
/// instances are released (each exactly once, with the Secret's key), then lets it go. A Secret
/// that no resource names is never touched.
#[tokio::test]
async fn a_prune_of_the_secret_with_its_resources_releases_both_then_the_secret() {
    let h = Harness::start("prune").await;
    // The instances are visible to the Secret's key only, not to the controller's own: only
    // the Secret can release them.
    h.sim.add_account(OTHER_KEY, OTHER_SECRET, None).await;
    let ids = ["i-bp1prune000001", "i-bp1prune000002"];
    for id in ids {
        h.seed(id, json!({ "status": "Stopped", "owner": OTHER_KEY }))
            .await;
    }
    h.create_credentials_secret("creds", OTHER_KEY, OTHER_SECRET)
        .await;
    h.create_credentials_secret("unused", ACCESS_KEY_ID, "whatever")
        .await;
    for (name, id) in ["a", "b"].into_iter().zip(ids) {
        h.create(name, id, json!({ "credentialsRef": { "name": "creds" } }))
            .await;
    }
    for name in ["a", "b"] {
        h.wait_for_condition(name, READY, "True", "InstanceObserved")
            .await;
    }
    let finalizers = secret_finalizers(&h, "creds").await.expect("the Secret");
    assert!(
        finalizers.iter().any(|f| f == SECRET_IN_USE_FINALIZER),
        "the Secret in use is protected: {finalizers:?}"
    );
    assert_eq!(
        secret_finalizers(&h, "unused").await,
        Some(vec![]),
        "an unreferenced Secret is not touched"
    );

    let output = kubectl(&[
        "delete",
        "secret/creds",
        "ecsinstance/a",
        "ecsinstance/b",
        "--wait=false",
        "-n",
        &h.ns.name,
    ])
    .await;
    assert!(output.contains("deleted"), "{output}");
    for name in ["a", "b"] {
        h.wait_gone(name).await;
        let (_, reason, _) = last_event(&h, name).await;
        assert_eq!(reason, "Released", "{name}: {:#?}", h.events(name).await);
    }
    for id in ids {
        let deletes = h.calls("DeleteInstance", Some(id)).await;
        assert_eq!(deletes.len(), 1, "{id} released exactly once: {deletes:#?}");
        assert!(call_succeeded(&deletes[0]), "{deletes:#?}");
        assert_eq!(
            deletes[0]["accessKeyId"], OTHER_KEY,
            "with the Secret's key"
        );
        assert!(h.sim.instance(id).await.is_none(), "{id} released in ECS");
    }
    let mut last = None;
    for _ in 0..150 {
        last = secret_finalizers(&h, "creds").await;
        if last.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        last.is_none(),
        "the Secret is gone once no resource needs it; its finalizers: {last:?}"
    );

    // The unreferenced Secret, changed (which wakes the Secrets watch), is still not touched.
    let touch = json!({ "metadata": { "labels": { "touched": "yes" } } });
    secrets(&h)
        .patch("unused", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .expect("label the Secret");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(secret_finalizers(&h, "unused").await, Some(vec![]));
}

/// Design §3: two resources created back to back (the same second, as a GitOps sync does) for one
/// untagged instance end with exactly one owner: the tag carries its UID and it is `Ready`; the
/// other is `DuplicateInstance` naming it, and it stays so. Deleting both at once releases the
/// instance once, by the owner; the duplicate goes `DuplicateRemoved`.
///
/// Which of the two owns it is not asserted: the first whose lookup ECS answers tags it (the
/// other has no listing yet, so it does not count as older), which is the younger one whenever
/// the client's slow-start rate limiter holds the older one's lookup back.
#[tokio::test]
async fn two_resources_created_together_for_one_instance_get_one_owner() {
    // A release stays listed (with its tags) for 3 s, so the duplicate, deleted at the same
    // time as the owner, still sees the instance tagged for the owner when it looks.
    let h = Harness::start_with("twins", &["--release-linger-ms", "3000"], fast_timings()).await;
    let id = "i-bp1twins0000001";
    h.seed(id, json!({ "status": "Stopped" })).await;
    let first = h.create("first", id, json!({})).await;
    let second = h.create("second", id, json!({})).await;
    let resources = [first, second];

    // Settled: the tag names one of them, that one is Ready, the other a duplicate naming it.
    let mut settled = None;
    for _ in 0..300 {
        if let Some(uid) = h.sim.tags(id).await.get(OWNER_UID_TAG).cloned() {
            let owner = resources.iter().find(|r| r.uid().as_ref() == Some(&uid));
            let other = resources.iter().find(|r| r.uid().as_ref() != Some(&uid));
            if let (Some(owner), Some(other)) = (owner, other) {
                let owner_now = h.api.get(&owner.name_any()).await.expect("get");
                let other_now = h.api.get(&other.name_any()).await.expect("get");
                if has_condition(&owner_now, READY, "True", "InstanceObserved")
                    && has_condition(&other_now, STALLED, "True", "DuplicateInstance")
                {
                    settled = Some((owner.clone(), other_now));
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some((owner, duplicate)) = settled else {
        let mut statuses = Vec::new();
        for name in ["first", "second"] {
            statuses.push(h.api.get(name).await.map(|r| r.status));
        }
        panic!(
            "never one owner and one duplicate; tags {:?}, statuses {statuses:#?}, calls {:#?}",
            h.sim.tags(id).await,
            call_summary(&h).await
        );
    };
    let (owner_name, duplicate_name) = (owner.name_any(), duplicate.name_any());
    assert!(
        condition_message(&duplicate, STALLED).contains(&format!("{}/{owner_name}", h.ns.name)),
        "the duplicate names its owner: {}",
        condition_message(&duplicate, STALLED)
    );
    // And it stays so.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        h.sim.tags(id).await.get(OWNER_UID_TAG),
        owner.uid().as_ref()
    );
    let duplicate_now = h.api.get(&duplicate_name).await.expect("get");
    assert!(has_condition(
        &duplicate_now,
        STALLED,
        "True",
        "DuplicateInstance"
    ));

    h.delete(&duplicate_name).await;
    h.delete(&owner_name).await;
    h.wait_gone(&duplicate_name).await;
    h.wait_gone(&owner_name).await;
    let deletes = h.calls("DeleteInstance", None).await;
    assert_eq!(deletes.len(), 1, "released exactly once: {deletes:#?}");
    assert!(call_succeeded(&deletes[0]), "{deletes:#?}");
    assert!(h.calls("StopInstance", None).await.is_empty());
    assert!(h.sim.instance(id).await.is_none(), "released in ECS");
    let owner_events = h.event_reasons(&owner_name).await;
    assert!(
        owner_events.contains(&"ReleaseRequested".to_string())
            && owner_events.last().map(String::as_str) == Some("Released"),
        "the owner released it: {owner_events:?}"
    );
    let duplicate_events = h.events(&duplicate_name).await;
    let (_, reason, note) = last_event(&h, &duplicate_name).await;
    assert_eq!(reason, "DuplicateRemoved", "{duplicate_events:#?}");
    assert!(note.contains("not released"), "{note}");
    assert!(
        duplicate_events
            .iter()
            .all(|(_, reason, _)| reason != "ReleaseRequested" && reason != "Released"),
        "{duplicate_events:#?}"
    );
}

/// Design §3: an older resource in another namespace whose credentials (a key of another
/// account) never listed the instance is never its owner and does not pre-empt the one that
/// lists it: that one becomes `Ready` and tags the instance.
#[tokio::test]
async fn an_older_resource_whose_credentials_never_listed_the_instance_does_not_preempt_the_owner()
{
    let sim = EcsSim::start().await;
    let mut real = Harness::attached(
        test_namespace("listed").await,
        EcsSim::attach(sim.endpoint()),
    );
    let blind = Harness::attached(test_namespace("blind").await, sim);
    let namespaces = [real.ns.name.clone(), blind.ns.name.clone()];
    real.start_controller_watching(fast_timings(), &namespaces);
    blind.sim.add_account(OTHER_KEY, OTHER_SECRET, None).await;
    let id = "i-bp1preempt00001";
    // An instance of the controller's own account: the other key does not see it.
    real.seed(id, json!({ "status": "Stopped", "owner": ACCESS_KEY_ID }))
        .await;

    blind
        .create_credentials_secret("other", OTHER_KEY, OTHER_SECRET)
        .await;
    blind
        .create(
            "older",
            id,
            json!({ "credentialsRef": { "name": "other" } }),
        )
        .await;
    let older = blind
        .wait_for_condition("older", READY, "False", "InstanceNotFound")
        .await;
    assert!(
        older
            .status
            .as_ref()
            .and_then(|s| s.instance.as_ref())
            .is_none_or(|i| i.status.is_none()),
        "its status records no listing: {:?}",
        older.status
    );
    // A later second: `older` really is the older one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let owner = real.create("owner", id, json!({})).await;
    real.wait_for_condition("owner", READY, "True", "InstanceObserved")
        .await;
    assert_eq!(
        real.sim.tags(id).await.get(OWNER_UID_TAG),
        owner.uid().as_ref(),
        "the resource that lists it tagged it"
    );
    let tags = real.calls("TagResources", None).await;
    assert_eq!(tags.len(), 1, "{tags:#?}");
    assert!(call_succeeded(&tags[0]) && tags[0]["accessKeyId"] == ACCESS_KEY_ID);
    assert!(
        real.event_reasons("owner")
            .await
            .contains(&"OwnershipRecorded".to_string())
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    real.wait_for_condition("owner", READY, "True", "InstanceObserved")
        .await;
    blind
        .wait_for_condition("older", READY, "False", "InstanceNotFound")
        .await;

    // The older one never managed it: deleting it releases nothing.
    blind.delete("older").await;
    blind.wait_gone("older").await;
    let (_, reason, _) = last_event(&blind, "older").await;
    assert_eq!(reason, "NeverObserved");
    assert!(real.calls("DeleteInstance", None).await.is_empty());
    assert_eq!(
        real.sim.instance(id).await.expect("still there")["status"],
        "Stopped"
    );
    assert_eq!(
        real.sim.tags(id).await.get(OWNER_UID_TAG),
        owner.uid().as_ref()
    );
}
