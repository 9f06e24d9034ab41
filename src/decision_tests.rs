//! Table-driven tests of the decision: every step of design.md §11, every row of its error table, the
//! evidence and ownership rules. Statuses that a step starts from are produced by running the
//! earlier steps (`Scenario::step`), never written by hand.

use std::collections::BTreeMap;

use ecs_client::{EcsError, ErrorKind, Instance, InstanceStatus, RequestId};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::conditions::{READY, RECONCILING, RELEASED, STALLED, find};
use crate::reasons::RECHECK_ANNOTATION;
use crate::resource::{EcsInstanceSpec, OnDelete};

const ID: &str = "i-bp67acfmxazb4ph3t1ab";
const UID: &str = "0b8a3c1e-0000-4000-8000-000000000001";
const KEY: &str = "LTAI-team-a";

fn key(access_key_id: &str) -> Identity {
    Identity {
        access_key_id: access_key_id.into(),
        role_arn: None,
    }
}

fn role(role_arn: &str, session_key: &str) -> Identity {
    Identity {
        access_key_id: session_key.into(),
        role_arn: Some(role_arn.into()),
    }
}

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn resource(on_delete: OnDelete) -> EcsInstance {
    let mut resource = EcsInstance::new(
        "web-1",
        EcsInstanceSpec {
            instance_id: ID.into(),
            region_id: "cn-hangzhou".into(),
            deletion_policy: None,
            on_delete,
            credentials_ref: None,
        },
    );
    resource.metadata.namespace = Some("default".into());
    resource.metadata.uid = Some(UID.into());
    resource.metadata.generation = Some(3);
    resource
}

fn deleted(mut resource: EcsInstance) -> EcsInstance {
    resource.metadata.deletion_timestamp = Some(Time(now()));
    resource
}

fn orphaned(mut resource: EcsInstance) -> EcsInstance {
    resource.spec.deletion_policy = Some(DeletionPolicy::Orphan);
    deleted(resource)
}

fn instance_tagged(status: InstanceStatus, owner_uid: Option<&str>) -> Observation {
    let mut tags = BTreeMap::new();
    if let Some(uid) = owner_uid {
        tags.insert(OWNER_UID_TAG.to_string(), uid.to_string());
        tags.insert(OWNER_TAG.to_string(), "default/someone".to_string());
    }
    Observation::Present(Instance {
        instance_id: ID.into(),
        region_id: "cn-hangzhou".into(),
        zone_id: "cn-hangzhou-g".into(),
        status,
        charge_type: "PostPaid".into(),
        deletion_protection: false,
        lock_reasons: vec![],
        expired_time: None,
        tags,
    })
}

/// An instance tagged as owned by the test resource.
fn owned(status: InstanceStatus) -> Observation {
    instance_tagged(status, Some(UID))
}

fn api_error(action: &str, status: u16, code: &str, message: &str) -> EcsError {
    let body = format!(
        r#"{{"RequestId":"REQ-1","HostId":"ecs.cn-hangzhou.aliyuncs.com","Code":"{code}","Message":"{message}"}}"#
    );
    EcsError::from_response(action, status, body.as_bytes())
}

fn accepted(id: &str) -> Result<RequestId, EcsError> {
    Ok(RequestId(id.into()))
}

/// One pass's circumstances; `plan` and `conclude` run on it like the shell does.
struct Pass<'a> {
    resource: &'a EcsInstance,
    observation: Observation,
    source: CredentialsSource,
    identity: Option<Identity>,
    take_over_blocker: Option<&'a str>,
    policy: Policy,
    stop_recently_requested: bool,
    remembered_release: Option<ReleaseRecord>,
    now: Timestamp,
    claimants: Vec<Claimant>,
    intent_at: Option<Timestamp>,
    claim: Option<&'a str>,
}

impl<'a> Pass<'a> {
    fn new(resource: &'a EcsInstance, observation: Observation) -> Self {
        Pass {
            resource,
            observation,
            source: CredentialsSource::Controller,
            identity: Some(key(KEY)),
            take_over_blocker: None,
            policy: Policy::of(resource, None, DeletionPolicy::Delete),
            stop_recently_requested: false,
            remembered_release: None,
            now: now(),
            claimants: Vec::new(),
            intent_at: None,
            claim: None,
        }
    }

    fn input(&self) -> Input<'_> {
        Input {
            resource: self.resource,
            policy: &self.policy,
            observation: &self.observation,
            credentials_source: &self.source,
            identity: self.identity.as_ref(),
            stop_recently_requested: self.stop_recently_requested,
            remembered_release: self.remembered_release.as_ref(),
            now: self.now,
            observed_at_refresh: SignedDuration::from_mins(5),
            release_timeout: SignedDuration::from_mins(10),
            resend_after: SignedDuration::from_mins(1),
            ownership_settle: SignedDuration::from_mins(1),
            claimants: &self.claimants,
            take_over_blocker: self.take_over_blocker,
            intent_at: self.intent_at,
            claim: self.claim,
        }
    }

    fn plan(&self) -> Plan {
        plan(&self.input())
    }

    /// The pass when it needs no call.
    fn done(&self) -> Decision {
        match self.plan() {
            Plan::Done(decision) => decision,
            Plan::Call(call, _) => panic!("expected no call, got {call:?}"),
        }
    }

    /// The call the pass asks for.
    fn call(&self) -> CloudCall {
        match self.plan() {
            Plan::Call(call, _) => call,
            Plan::Done(decision) => panic!("expected a call, got {:?}", decision.reason()),
        }
    }

    /// Plan, the planned call answering `result`, conclude.
    fn with_result(&self, result: Result<RequestId, EcsError>) -> Decision {
        let call = self.call();
        conclude(&self.input(), &call, &result)
    }
}

/// The resource as it is after `decision`'s status was written.
fn after(resource: &EcsInstance, decision: &Decision) -> EcsInstance {
    let mut next = resource.clone();
    next.status = Some(decision.status.clone());
    next
}

fn condition(decision: &Decision, type_: &str) -> (String, String, String) {
    let c = find(&decision.status.conditions, type_).unwrap_or_else(|| panic!("no {type_}"));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

fn assert_condition(decision: &Decision, type_: &str, status: &str, reason: &str) {
    let (s, r, m) = condition(decision, type_);
    assert_eq!((s.as_str(), r.as_str()), (status, reason), "{type_}: {m:?}");
}

/// Reconciling or Stalled (exactly one True), Ready False with the same reason.
fn assert_not_ready(decision: &Decision, stalled: bool, reason: &str) {
    let (on, off) = if stalled {
        (STALLED, RECONCILING)
    } else {
        (RECONCILING, STALLED)
    };
    assert_condition(decision, on, "True", reason);
    assert_eq!(condition(decision, off).0, "False", "{reason}");
    assert_condition(decision, READY, "False", reason);
    if stalled {
        let message = condition(decision, STALLED).2;
        assert!(
            message.contains(RECHECK_ANNOTATION),
            "{reason}: a Stalled message says how to ask for a look now: {message}"
        );
        let remedy = Reason::ALL
            .iter()
            .find(|r| r.as_str() == reason)
            .unwrap()
            .remedy();
        assert!(
            message.contains(remedy),
            "{reason}: says what to do: {message}"
        );
    }
}

fn event_reasons(decision: &Decision) -> Vec<(&'static str, bool)> {
    decision
        .events
        .iter()
        .map(|e| (e.reason.as_str(), e.is_warning()))
        .collect()
}

/// A resource that has been observed (and owned) once with `KEY`, then deleted.
fn observed_then_deleted(on_delete: OnDelete) -> EcsInstance {
    let live = resource(on_delete);
    let first = Pass::new(&live, owned(InstanceStatus::Running)).done();
    deleted(after(&live, &first))
}

#[test]
fn an_owned_instance_is_ready_with_a_steady_resync_and_records_who_saw_it() {
    let r = resource(OnDelete::default());
    let d = Pass::new(&r, owned(InstanceStatus::Running)).done();
    assert_condition(&d, READY, "True", "InstanceObserved");
    assert_condition(&d, RECONCILING, "False", "InstanceObserved");
    assert_condition(&d, STALLED, "False", "InstanceObserved");
    assert_condition(&d, RELEASED, "False", "NotDeleting");
    assert_eq!(d.next, Next::Requeue(Pace::Steady));
    assert!(d.events.is_empty());
    let observed = d.status.instance.as_ref().unwrap();
    assert_eq!(observed.status.as_deref(), Some("Running"));
    assert_eq!(
        observed.observed_with,
        Some(ObservedWith {
            access_key_id: KEY.into(),
            role_arn: None,
            region_id: "cn-hangzhou".into()
        })
    );
    assert_eq!(d.status.observed_generation, Some(3));

    let starting = Pass::new(&r, owned(InstanceStatus::Starting)).done();
    assert_eq!(starting.next, Next::Requeue(Pace::Transition));
}

#[test]
fn an_untagged_instance_is_tagged_as_ours_first_sight() {
    for r in [
        resource(OnDelete::default()),
        deleted(resource(OnDelete::default())),
    ] {
        let pass = Pass::new(&r, instance_tagged(InstanceStatus::Stopped, None));
        let CloudCall::Tag(tag) = pass.call() else {
            panic!("an untagged instance is tagged before anything else");
        };
        assert_eq!(tag.instance_id, ID);
        assert_eq!(tag.tags[OWNER_UID_TAG], UID);
        assert_eq!(tag.tags[OWNER_TAG], "default/web-1");
        let d = pass.with_result(accepted("TAG-1"));
        assert!(
            d.events
                .iter()
                .any(|e| e.reason == Reason::OwnershipRecorded)
        );
        if is_deleting(&r) {
            // Released only after a later pass re-reads the tag.
            assert_not_ready(&d, false, "OwnershipRecorded");
            assert_eq!(d.next, Next::Requeue(Pace::Transition));
        } else {
            assert_condition(&d, READY, "True", "InstanceObserved");
        }
    }
}

/// The status a claim tag call records before it is sent, and the call.
fn tag_with_claim(r: &EcsInstance, claim: &'static str) -> (TagInstance, EcsInstanceStatus) {
    let mut pass = Pass::new(r, instance_tagged(InstanceStatus::Stopped, None));
    assert!(
        could_share_claim(&pass.input(), &pass.plan()),
        "an untagged instance may share a claim"
    );
    pass.claim = Some(claim);
    match pass.plan() {
        Plan::Call(CloudCall::Tag(tag), record) => (tag, record),
        other => panic!("expected a tag call, got {other:?}"),
    }
}

#[test]
fn a_claim_handed_out_tags_in_place_of_the_uid_and_is_on_record_before_the_call() {
    let r = resource(OnDelete::default());
    let (tag, record) = tag_with_claim(&r, "claim-0000000000000001");
    // One tag set that other instances can share: the claim, and no owner name.
    assert_eq!(
        tag.tags,
        BTreeMap::from([(
            OWNER_UID_TAG.to_string(),
            "claim-0000000000000001".to_string()
        )])
    );
    let observed = record.instance.as_ref().unwrap();
    assert_eq!(
        observed.claim,
        Some(TagClaim {
            value: "claim-0000000000000001".into(),
            uid: UID.into()
        })
    );
    assert!(observed.tag_requested_at.is_some());

    // Once the claim shows, the instance is ours: Ready, and released when deleted.
    let recorded = EcsInstance {
        status: Some(record.clone()),
        ..r.clone()
    };
    let claimed = || instance_tagged(InstanceStatus::Stopped, Some("claim-0000000000000001"));
    let d = Pass::new(&recorded, claimed()).done();
    assert_condition(&d, READY, "True", "InstanceObserved");
    assert_eq!(
        d.status
            .instance
            .as_ref()
            .unwrap()
            .claim
            .as_ref()
            .map(|c| c.value.as_str()),
        Some("claim-0000000000000001"),
        "kept"
    );
    let deleting = deleted(after(&recorded, &d));
    assert!(matches!(
        Pass::new(&deleting, claimed()).call(),
        CloudCall::Delete(_)
    ));
}

#[test]
fn a_resource_that_recorded_a_claim_tags_with_it_again() {
    let r = resource(OnDelete::default());
    let (_, record) = tag_with_claim(&r, "claim-0000000000000001");
    let retried = EcsInstance {
        status: Some(record),
        ..r
    };
    let mut pass = Pass::new(&retried, instance_tagged(InstanceStatus::Stopped, None));
    assert!(!could_share_claim(&pass.input(), &pass.plan()));
    pass.claim = Some("claim-0000000000000002");
    let CloudCall::Tag(tag) = pass.call() else {
        panic!("still untagged: tagged again");
    };
    assert_eq!(tag.tags[OWNER_UID_TAG], "claim-0000000000000001");
}

#[test]
fn a_claim_recorded_for_another_uid_proves_nothing() {
    // A backup restored the status onto a new resource (a new UID).
    let r = resource(OnDelete::default());
    let (_, record) = tag_with_claim(&r, "claim-0000000000000001");
    let mut restored = EcsInstance {
        status: Some(record),
        ..r
    };
    restored.metadata.uid = Some("uid-after-the-restore".into());
    let claimed = || instance_tagged(InstanceStatus::Stopped, Some("claim-0000000000000001"));
    let d = Pass::new(&restored, claimed()).done();
    assert_not_ready(&d, true, "OwnedByAnotherResource");
    assert!(
        condition(&d, STALLED)
            .2
            .contains(&format!("{TAKE_OVER_ANNOTATION}=claim-0000000000000001"))
    );
    assert_eq!(d.status.instance.as_ref().unwrap().claim, None, "dropped");
    let d = Pass::new(&deleted(restored.clone()), claimed()).done();
    assert_not_ready(&d, true, "OwnedByAnotherResource");
    assert_eq!(d.next, Next::Requeue(Pace::Recheck), "nothing released");

    // Taken over explicitly, with the UID.
    restored
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(TAKE_OVER_ANNOTATION.into(), "claim-0000000000000001".into());
    let CloudCall::Tag(tag) = Pass::new(&restored, claimed()).call() else {
        panic!("taken over");
    };
    assert_eq!(tag.tags[OWNER_UID_TAG], "uid-after-the-restore");
}

#[test]
fn the_resource_whose_status_records_the_claim_owns_the_instance() {
    let r = resource(OnDelete::default());
    let mut owner = claimant("default/web-0", "uid-web-0", now(), true);
    owner.claim = Some("claim-0000000000000001".into());
    let mut pass = Pass::new(
        &r,
        instance_tagged(InstanceStatus::Stopped, Some("claim-0000000000000001")),
    );
    pass.claimants = vec![owner];
    let d = pass.done();
    assert_not_ready(&d, true, "DuplicateInstance");
    assert!(condition(&d, STALLED).2.contains("default/web-0"));
}

#[test]
fn an_instance_owned_by_another_resource_is_never_adopted_or_released() {
    let foreign = || instance_tagged(InstanceStatus::Stopped, Some("another-uid"));
    let live = resource(OnDelete::default());
    let d = Pass::new(&live, foreign()).done();
    assert_not_ready(&d, true, "OwnedByAnotherResource");
    assert!(condition(&d, STALLED).2.contains("another-uid"));

    let r = deleted(after(&live, &d));
    let d = Pass::new(&r, foreign()).done();
    assert_not_ready(&d, true, "OwnedByAnotherResource");
    assert_eq!(d.next, Next::Requeue(Pace::Recheck), "the finalizer stays");
}

#[test]
fn an_instance_is_taken_over_only_on_the_annotation_and_only_from_a_uid_gone_from_the_cluster() {
    const OLD: &str = "uid-before-the-restore";
    let foreign = || instance_tagged(InstanceStatus::Stopped, Some(OLD));
    let annotated = |uid: &str| {
        let mut r = resource(OnDelete::default());
        r.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(TAKE_OVER_ANNOTATION.into(), uid.into());
        r
    };

    // Without the annotation: refused, and the message says how to take it over.
    let d = Pass::new(&resource(OnDelete::default()), foreign()).done();
    assert_not_ready(&d, true, "OwnedByAnotherResource");
    let message = condition(&d, STALLED).2;
    assert!(
        message.contains(&format!("{TAKE_OVER_ANNOTATION}={OLD}")),
        "{message}"
    );

    // The annotation names another UID: nothing is taken over.
    let d = Pass::new(&annotated("some-other-uid"), foreign()).done();
    assert_not_ready(&d, true, "OwnedByAnotherResource");
    assert!(condition(&d, STALLED).2.contains("some-other-uid"));

    // The resource with that UID still exists (naming another instance): refused, named.
    let r = annotated(OLD);
    let mut blocked = Pass::new(&r, foreign());
    blocked.take_over_blocker = Some("default/web-old");
    let d = blocked.done();
    assert_not_ready(&d, true, "OwnedByAnotherResource");
    assert!(condition(&d, STALLED).2.contains("default/web-old"));

    // It names the same instance: it is the owner, this one a duplicate.
    let mut old = Claimant::of(&resource(OnDelete::default()));
    old.name = "default/web-old".into();
    old.uid = Some(OLD.into());
    let mut duplicate = Pass::new(&r, foreign());
    duplicate.claimants = vec![old];
    assert_not_ready(&duplicate.done(), true, "DuplicateInstance");

    // Gone from the cluster: tagged as ours, recorded in the status and an event.
    for r in [r.clone(), deleted(r.clone())] {
        let pass = Pass::new(&r, foreign());
        let CloudCall::Tag(tag) = pass.call() else {
            panic!("a take-over re-tags the instance");
        };
        assert_eq!(tag.tags[OWNER_UID_TAG], UID);
        let d = pass.with_result(accepted("TAG-2"));
        let event = d
            .events
            .iter()
            .find(|e| e.reason == Reason::TakenOver)
            .expect("a TakenOver event");
        assert!(event.note.contains(OLD) && event.note.contains("TAG-2"));
        assert_eq!(
            d.status
                .instance
                .as_ref()
                .unwrap()
                .taken_over_from
                .as_deref(),
            Some(OLD)
        );
        // The next pass sees our tag, keeps the record, and goes on as the owner.
        let tagged = after(&r, &d);
        let next = Pass::new(&tagged, instance_tagged(InstanceStatus::Stopped, Some(UID)));
        let record = match next.plan() {
            Plan::Done(d) => d.status.instance.unwrap().taken_over_from,
            Plan::Call(CloudCall::Delete(_), status) => status.instance.unwrap().taken_over_from,
            Plan::Call(call, _) => panic!("unexpected {call:?}"),
        };
        assert_eq!(record.as_deref(), Some(OLD));
    }
}

#[test]
fn observe_only_changes_nothing_in_the_cloud_and_says_what_delete_would_have_done() {
    let mut live = resource(OnDelete::default());
    live.spec.deletion_policy = Some(DeletionPolicy::Observe);
    // Not tagged, not even on first sight.
    let d = Pass::new(&live, instance_tagged(InstanceStatus::Stopped, None)).done();
    assert_condition(&d, READY, "True", "InstanceObserved");
    assert!(condition(&d, READY).2.contains("Observe"));

    let r = deleted(after(&live, &d));
    let d = Pass::new(&r, instance_tagged(InstanceStatus::Stopped, None)).done();
    assert_eq!(
        d.next,
        Next::RemoveFinalizer,
        "a dry run never holds the resource"
    );
    assert_condition(&d, RELEASED, "False", "ObservedOnly");
    let note = &d.events[0].note;
    assert!(
        note.contains("nothing was changed in the cloud")
            && note
                .contains("tagged it as owned by this resource, then released it (DeleteInstance)"),
        "{note}"
    );

    // Running with stop: Wait: Delete would have waited.
    let d = Pass::new(&r, owned(InstanceStatus::Running)).done();
    assert!(
        d.events[0].note.contains("would have waited"),
        "{}",
        d.events[0].note
    );
    // Not listed: nothing done either.
    let d = Pass::new(&r, Observation::Absent).done();
    assert_eq!(d.next, Next::RemoveFinalizer);
    assert_condition(&d, RELEASED, "False", "ObservedOnly");
}

#[test]
fn the_policy_comes_from_the_spec_else_the_namespace_else_the_controller() {
    let namespace_orphan: Result<DeletionPolicy, String> = Ok(DeletionPolicy::Orphan);
    let r = observed_then_deleted(OnDelete::default());

    // The namespace says Orphan: our tags are removed, nothing is released.
    let mut pass = Pass::new(&r, owned(InstanceStatus::Stopped));
    pass.policy = Policy::of(
        &r,
        Some(("prod", &namespace_orphan)),
        DeletionPolicy::Delete,
    );
    assert!(matches!(pass.call(), CloudCall::Untag(_)));
    let d = pass.with_result(accepted("UNTAG-1"));
    assert_condition(&d, RELEASED, "False", "Orphaned");
    assert!(d.events[0].note.contains("the default of namespace prod"));

    // The controller's default Orphan, no namespace annotation: the same.
    let mut pass = Pass::new(&r, owned(InstanceStatus::Stopped));
    pass.policy = Policy::of(&r, None, DeletionPolicy::Orphan);
    assert!(matches!(pass.call(), CloudCall::Untag(_)));

    // The spec wins over both.
    let mut explicit = r.clone();
    explicit.spec.deletion_policy = Some(DeletionPolicy::Delete);
    let mut pass = Pass::new(&explicit, owned(InstanceStatus::Stopped));
    pass.policy = Policy::of(
        &explicit,
        Some(("prod", &namespace_orphan)),
        DeletionPolicy::Orphan,
    );
    assert!(matches!(pass.call(), CloudCall::Delete(_)));

    // An annotation that is no policy: nothing changes in the cloud, the deletion waits.
    let typo: Result<DeletionPolicy, String> =
        Err("its annotation ecs.alicloud.dev/deletion-policy is \"Orphn\", not a policy".into());
    let mut pass = Pass::new(&r, owned(InstanceStatus::Stopped));
    pass.policy = Policy::of(&r, Some(("prod", &typo)), DeletionPolicy::Delete);
    let d = pass.done();
    assert_not_ready(&d, true, "InvalidDeletionPolicy");
    assert_ne!(d.next, Next::RemoveFinalizer);
    assert!(condition(&d, STALLED).2.contains("\"Orphn\""));
    let live = resource(OnDelete::default());
    let mut pass = Pass::new(&live, instance_tagged(InstanceStatus::Running, None));
    pass.policy = Policy::of(&live, Some(("prod", &typo)), DeletionPolicy::Delete);
    assert_condition(&pass.done(), READY, "True", "InstanceObserved");
}

#[test]
fn deletion_steps_by_instance_status_and_policy() {
    enum Expect {
        Wait(&'static str, Pace),
        Stop { force: bool },
        Delete { force: bool },
    }
    let cases = [
        (
            StopPolicy::Wait,
            false,
            InstanceStatus::Pending,
            Expect::Wait("WaitingForInitialization", Pace::Transition),
        ),
        (
            StopPolicy::Wait,
            false,
            InstanceStatus::Starting,
            Expect::Wait("WaitingForInitialization", Pace::Transition),
        ),
        (
            StopPolicy::Wait,
            false,
            InstanceStatus::Running,
            Expect::Wait("WaitingForStopped", Pace::Waiting),
        ),
        (
            StopPolicy::Wait,
            false,
            InstanceStatus::Stopping,
            Expect::Wait("WaitingForStopped", Pace::Transition),
        ),
        (
            StopPolicy::Stop,
            false,
            InstanceStatus::Running,
            Expect::Stop { force: false },
        ),
        (
            StopPolicy::ForceStop,
            false,
            InstanceStatus::Running,
            Expect::Stop { force: true },
        ),
        (
            StopPolicy::Stop,
            false,
            InstanceStatus::Stopping,
            Expect::Wait("WaitingForStopped", Pace::Transition),
        ),
        (
            StopPolicy::Wait,
            true,
            InstanceStatus::Running,
            Expect::Delete { force: true },
        ),
        (
            StopPolicy::Wait,
            true,
            InstanceStatus::Stopping,
            Expect::Delete { force: true },
        ),
        (
            StopPolicy::Wait,
            false,
            InstanceStatus::Stopped,
            Expect::Delete { force: false },
        ),
        (
            StopPolicy::Stop,
            false,
            InstanceStatus::Stopped,
            Expect::Delete { force: false },
        ),
        (
            StopPolicy::Wait,
            false,
            InstanceStatus::Other("Rebooting".into()),
            Expect::Wait("WaitingForStopped", Pace::Waiting),
        ),
    ];
    for (stop, force, status, expect) in cases {
        let r = observed_then_deleted(OnDelete {
            stop,
            force,
            ..Default::default()
        });
        let label = format!("{stop:?} force={force} {status:?}");
        let pass = Pass::new(&r, owned(status));
        match expect {
            Expect::Wait(reason, pace) => {
                let d = pass.done();
                assert_not_ready(&d, false, reason);
                assert_eq!(d.next, Next::Requeue(pace), "{label}");
                assert_condition(&d, RELEASED, "False", "Releasing");
                assert!(d.events.is_empty(), "{label}: waiting is not an event");
            }
            Expect::Stop { force } => match pass.call() {
                CloudCall::Stop(stop) => assert_eq!(stop.force_stop, force, "{label}"),
                call => panic!("{label}: {call:?}"),
            },
            Expect::Delete { force } => match pass.call() {
                CloudCall::Delete(delete) => assert_eq!(delete.force, force, "{label}"),
                call => panic!("{label}: {call:?}"),
            },
        }
    }
}

#[test]
fn waiting_for_someone_to_stop_says_how_not_to_wait() {
    let r = observed_then_deleted(OnDelete::default());
    let d = Pass::new(&r, owned(InstanceStatus::Running)).done();
    let message = condition(&d, RECONCILING).2;
    assert!(message.contains("onDelete.stop to Stop"), "{message}");
}

#[test]
fn stop_is_not_repeated_while_a_recent_stop_may_not_show_yet() {
    let r = observed_then_deleted(OnDelete {
        stop: StopPolicy::Stop,
        ..Default::default()
    });
    let mut pass = Pass::new(&r, owned(InstanceStatus::Running));
    pass.stop_recently_requested = true;
    let d = pass.done();
    assert_not_ready(&d, false, "WaitingForStopped");
    assert_eq!(d.next, Next::Requeue(Pace::Transition));
}

#[test]
fn stop_and_delete_parameters_come_from_the_spec() {
    let r = observed_then_deleted(OnDelete {
        stop: StopPolicy::Stop,
        stopped_mode: Some(crate::resource::StoppedMode::StopCharging),
        terminate_subscription: true,
        ..Default::default()
    });
    let CloudCall::Stop(stop) = Pass::new(&r, owned(InstanceStatus::Running)).call() else {
        panic!()
    };
    assert_eq!(
        stop.stopped_mode,
        Some(ecs_client::StoppedMode::StopCharging)
    );
    let CloudCall::Delete(delete) = Pass::new(&r, owned(InstanceStatus::Stopped)).call() else {
        panic!()
    };
    assert!(delete.terminate_subscription);
    assert!(!delete.dry_run);
}

#[test]
fn accepted_stop_waits_for_stopped() {
    let r = observed_then_deleted(OnDelete {
        stop: StopPolicy::ForceStop,
        ..Default::default()
    });
    let d = Pass::new(&r, owned(InstanceStatus::Running)).with_result(accepted("STOP-1"));
    assert_not_ready(&d, false, "StopRequested");
    assert_eq!(event_reasons(&d), [("StopRequested", false)]);
    assert!(d.events[0].note.contains("ForceStop") && d.events[0].note.contains("STOP-1"));
    assert_eq!(d.next, Next::Requeue(Pace::Transition));
}

/// The whole happy path, each status produced by the step before.
#[test]
fn accepted_delete_is_recorded_polled_and_confirmed() {
    let r = observed_then_deleted(OnDelete::default());
    let d = Pass::new(&r, owned(InstanceStatus::Stopped)).with_result(accepted("DEL-1"));
    assert_not_ready(&d, false, "ReleaseRequested");
    assert_condition(&d, RELEASED, "True", "ReleaseRequested");
    assert_eq!(event_reasons(&d), [("ReleaseRequested", false)]);
    let release = d.status.release.clone().unwrap();
    assert_eq!(release.request_id.as_deref(), Some("DEL-1"));
    assert_eq!(release.requested_at, Some(Time(now())));

    // Release is asynchronous: still listed, no second DeleteInstance.
    let r = after(&r, &d);
    let d = Pass::new(&r, owned(InstanceStatus::Stopped)).done();
    assert_not_ready(&d, false, "WaitingForRelease");
    assert_condition(&d, RELEASED, "True", "ReleaseRequested");
    assert!(d.events.is_empty());

    let r = after(&r, &d);
    let d = Pass::new(&r, Observation::Absent).done();
    assert_eq!(d.next, Next::RemoveFinalizer);
    assert_condition(&d, RELEASED, "True", "Released");
    assert_condition(&d, READY, "False", "Released");
    assert_condition(&d, RECONCILING, "False", "Released");
    assert_condition(&d, STALLED, "False", "Released");
    assert_eq!(event_reasons(&d), [("Released", false)]);
    assert!(d.events[0].note.contains("DEL-1"));
    assert!(d.status.release.unwrap().confirmed_at.is_some());
}

#[test]
fn a_remembered_release_is_never_sent_twice_even_if_its_status_write_failed() {
    let r = observed_then_deleted(OnDelete::default());
    let d = Pass::new(&r, owned(InstanceStatus::Stopped)).with_result(accepted("DEL-1"));
    // The status write failed: the resource still has no release record.
    let mut pass = Pass::new(&r, owned(InstanceStatus::Stopped));
    pass.remembered_release = d.status.release.clone();
    let again = pass.done();
    assert_not_ready(&again, false, "WaitingForRelease");
    assert_eq!(
        again.status.release.as_ref().unwrap().request_id.as_deref(),
        Some("DEL-1")
    );
    let mut gone = Pass::new(&r, Observation::Absent);
    gone.remembered_release = d.status.release.clone();
    let d = gone.done();
    assert_condition(&d, RELEASED, "True", "Released");
    assert!(
        d.events[0].note.contains("DEL-1"),
        "the final event tells the truth"
    );
}

#[test]
fn not_listed_while_deleting_is_released_only_on_evidence() {
    // (b) the same key and region listed it before: it no longer exists.
    let r = observed_then_deleted(OnDelete::default());
    let d = Pass::new(&r, Observation::Absent).done();
    assert_eq!(d.next, Next::RemoveFinalizer);
    assert_condition(&d, RELEASED, "True", "NotFound");
    assert!(condition(&d, RELEASED).2.contains("no longer exists"));

    // Another key does not list it: keys rotated to another account, or a RAM filter.
    let mut other_key = Pass::new(&r, Observation::Absent);
    other_key.identity = Some(key("LTAI-other-account"));
    other_key.source = CredentialsSource::Secret("default/rotated".into());
    let d = other_key.done();
    assert_not_ready(&d, true, "InstanceNoLongerVisible");
    assert_eq!(d.next, Next::Requeue(Pace::Recheck), "the finalizer stays");
    let message = condition(&d, STALLED).2;
    for part in [KEY, "LTAI-other-account", "default/rotated", "Orphan"] {
        assert!(message.contains(part), "{part} in {message}");
    }
    assert_condition(&d, RELEASED, "False", "Releasing");
    assert_eq!(
        d.status
            .instance
            .unwrap()
            .observed_with
            .unwrap()
            .access_key_id,
        KEY,
        "who saw it last is kept"
    );

    // (c) never observed by this resource: nothing was managed, nothing released.
    let never = deleted(resource(OnDelete::default()));
    let d = Pass::new(&never, Observation::Absent).done();
    assert_eq!(d.next, Next::RemoveFinalizer);
    assert_condition(&d, RELEASED, "False", "NeverObserved");
    let note = &d.events[0].note;
    assert!(
        note.contains("Nothing was released") && !note.contains("no longer exists"),
        "{note}"
    );

    // Observed before observedWith existed: who saw it is unknown, so no proof.
    let mut legacy = r.clone();
    legacy
        .status
        .as_mut()
        .unwrap()
        .instance
        .as_mut()
        .unwrap()
        .observed_with = None;
    let d = Pass::new(&legacy, Observation::Absent).done();
    assert_not_ready(&d, true, "InstanceNoLongerVisible");
}

#[test]
fn not_listed_while_not_deleting_keeps_the_evidence() {
    let live = resource(OnDelete::default());
    let seen = Pass::new(&live, owned(InstanceStatus::Running)).done();
    let r = after(&live, &seen);
    let d = Pass::new(&r, Observation::Absent).done();
    assert_not_ready(&d, true, "InstanceNotFound");
    assert_eq!(d.next, Next::Requeue(Pace::Recheck));
    assert!(
        d.events
            .iter()
            .all(|e| e.reason == Reason::InstanceNotFound)
    );
    let kept = d.status.instance.clone().unwrap();
    assert_eq!(
        kept.status, None,
        "no cloud status for an instance not listed"
    );
    assert_eq!(kept.observed_with.unwrap().access_key_id, KEY);

    // Deleted afterwards with a key of another account: still no proof.
    let r = deleted(after(&r, &d));
    let mut other = Pass::new(&r, Observation::Absent);
    other.identity = Some(key("LTAI-other-account"));
    assert_not_ready(&other.done(), true, "InstanceNoLongerVisible");
}

#[test]
fn a_role_session_is_compared_by_its_role_not_its_temporary_key() {
    const ROLE: &str = "acs:ram::1234567890123456:role/ecs-releaser";
    let live = resource(OnDelete::default());
    let mut first = Pass::new(&live, owned(InstanceStatus::Running));
    first.identity = Some(role(ROLE, "STS.first-session"));
    let seen = first.done();
    let recorded = seen.status.instance.clone().unwrap().observed_with.unwrap();
    assert_eq!(recorded.role_arn.as_deref(), Some(ROLE));
    assert_eq!(
        recorded.access_key_id, "",
        "a temporary key is not recorded"
    );

    // A renewed session of the same role (another temporary key) is the same identity.
    let r = deleted(after(&live, &seen));
    let mut renewed = Pass::new(&r, Observation::Absent);
    renewed.identity = Some(role(ROLE, "STS.renewed-session"));
    let d = renewed.done();
    assert_eq!(d.next, Next::RemoveFinalizer);
    assert_condition(&d, RELEASED, "True", "NotFound");

    // Another role, or the role's keys swapped for long-term keys, is not.
    for other in [
        role("acs:ram::6543210987654321:role/ecs-releaser", "STS.x"),
        key("LTAI-team-a"),
    ] {
        let mut pass = Pass::new(&r, Observation::Absent);
        pass.identity = Some(other);
        let d = pass.done();
        assert_not_ready(&d, true, "InstanceNoLongerVisible");
        let message = condition(&d, STALLED).2;
        assert!(message.contains(&format!("role {ROLE}")), "{message}");
    }
}

#[test]
fn a_failed_lookup_is_never_evidence_of_a_release() {
    let r = observed_then_deleted(OnDelete::default());
    for error in [
        api_error(
            "DescribeInstances",
            404,
            "InvalidInstanceId.NotFound",
            "odd",
        ),
        api_error(
            "DescribeInstances",
            404,
            "InvalidRegionId.NotFound",
            "no region",
        ),
        EcsError::new("DescribeInstances", ErrorKind::Timeout, "timed out"),
    ] {
        let d = Pass::new(&r, Observation::Failed(error.clone())).done();
        assert!(
            matches!(d.next, Next::Requeue(_)),
            "{error}: the finalizer stays"
        );
        assert_condition(&d, RELEASED, "False", "Releasing");
    }
}

#[test]
fn not_found_from_our_own_stop_or_delete_means_already_released() {
    for (action, code, http) in [
        ("DeleteInstance", "InvalidInstanceId.NotFound", 404),
        ("DeleteInstance", "Forbidden.InstanceNotFound", 403),
    ] {
        let r = observed_then_deleted(OnDelete::default());
        let error = api_error(action, http, code, "gone");
        let d = Pass::new(&r, owned(InstanceStatus::Stopped)).with_result(Err(error));
        assert_eq!(d.next, Next::RemoveFinalizer, "{code}");
        assert_condition(&d, RELEASED, "True", "NotFound");
    }
    let r = observed_then_deleted(OnDelete {
        stop: StopPolicy::Stop,
        ..Default::default()
    });
    let error = api_error("StopInstance", 404, "InvalidInstanceId.NotFound", "gone");
    let d = Pass::new(&r, owned(InstanceStatus::Running)).with_result(Err(error));
    assert_eq!(d.next, Next::RemoveFinalizer);
}

#[test]
fn a_failed_tagging_call_follows_the_error_table_and_is_never_a_release() {
    let r = deleted(resource(OnDelete::default()));
    let untagged = || instance_tagged(InstanceStatus::Stopped, None);
    let d = Pass::new(&r, untagged()).with_result(Err(api_error(
        "TagResources",
        403,
        "Forbidden.RAM",
        "not allowed",
    )));
    assert_not_ready(&d, true, "CredentialsRejected");
    let d = Pass::new(&r, untagged()).with_result(Err(api_error(
        "TagResources",
        404,
        "InvalidInstanceId.NotFound",
        "odd",
    )));
    assert!(matches!(d.next, Next::Requeue(_)));
}

/// design.md §11 step 6, row by row: the DeleteInstance error → condition, reason, pace.
#[test]
fn every_row_of_the_error_table() {
    let backoff = Pace::Backoff(Backoff::Normal);
    let throttled = Pace::Backoff(Backoff::Throttled);
    let rows: &[(u16, &str, bool, &str, Pace)] = &[
        (
            403,
            "IncorrectInstanceStatus",
            false,
            "IncorrectInstanceStatus",
            Pace::Transition,
        ),
        (
            403,
            "IncorrectInstanceStatus.Initializing",
            false,
            "IncorrectInstanceStatusInitializing",
            backoff,
        ),
        (
            400,
            "DependencyViolation.SLBConfiguring",
            false,
            "DependencyViolationSLBConfiguring",
            backoff,
        ),
        (
            400,
            "DependencyViolation.RouteEntry",
            true,
            "DependencyViolationRouteEntry",
            Pace::Recheck,
        ),
        (
            400,
            "InvalidParameter",
            true,
            "InvalidParameter",
            Pace::Recheck,
        ),
        (
            403,
            "ChargeTypeViolation",
            true,
            "ChargeTypeViolation",
            Pace::Recheck,
        ),
        (
            403,
            "InstanceLockedForSecurity",
            true,
            "InstanceLockedForSecurity",
            Pace::Recheck,
        ),
        (
            403,
            "InvalidOperation.DeletionProtection",
            true,
            "InvalidOperationDeletionProtection",
            Pace::Recheck,
        ),
        (400, "Throttling", false, "Throttled", throttled),
        (400, "Throttling.User", false, "Throttled", throttled),
        (400, "Throttling.Api", false, "Throttled", throttled),
        // A 5xx answer to DeleteInstance does not say whether ECS released the instance.
        (
            503,
            "ServiceUnavailable",
            false,
            "ReleaseOutcomeUnknown",
            Pace::Transition,
        ),
        (
            500,
            "InternalError",
            false,
            "ReleaseOutcomeUnknown",
            Pace::Transition,
        ),
        (
            404,
            "InvalidAccessKeyId.NotFound",
            true,
            "CredentialsRejected",
            Pace::Recheck,
        ),
        (
            400,
            "InvalidAccessKeyId.Inactive",
            true,
            "CredentialsRejected",
            Pace::Recheck,
        ),
        (
            400,
            "SignatureDoesNotMatch",
            true,
            "CredentialsRejected",
            Pace::Recheck,
        ),
        (
            400,
            "IncompleteSignature",
            true,
            "CredentialsRejected",
            Pace::Recheck,
        ),
        (
            403,
            "Forbidden.RAM",
            true,
            "CredentialsRejected",
            Pace::Recheck,
        ),
        (
            400,
            "InvalidTimeStamp.Expired",
            true,
            "CredentialsRejected",
            Pace::Recheck,
        ),
        (
            403,
            "OperationDenied.SystemInstanceNotSupport",
            false,
            "UnexpectedError",
            Pace::Backoff(Backoff::Slow),
        ),
    ];
    let r = observed_then_deleted(OnDelete::default());
    for &(http, code, stalled, reason, pace) in rows {
        let error = api_error("DeleteInstance", http, code, "the message");
        let d = Pass::new(&r, owned(InstanceStatus::Stopped)).with_result(Err(error));
        assert_eq!(d.next, Next::Requeue(pace), "{code}");
        assert_not_ready(&d, stalled, reason);
        assert_condition(&d, RELEASED, "False", "Releasing");
        // The exact code, message and RequestId are in the condition message and lastError.
        let message = condition(&d, if stalled { STALLED } else { RECONCILING }).2;
        assert!(
            message.contains(code) && message.contains("the message") && message.contains("REQ-1"),
            "{code}: {message}"
        );
        let last = d.status.last_error.as_ref().unwrap();
        assert_eq!(last.action, "DeleteInstance");
        assert_eq!(last.code.as_deref(), Some(code));
        assert_eq!(last.request_id.as_deref(), Some("REQ-1"));
        assert_eq!(last.http_status, Some(i32::from(http)));
        assert_eq!(last.message, "the message");
        assert_eq!(
            event_reasons(&d),
            [(reason, true)],
            "{code}: a Warning event"
        );
        assert_eq!(d.events[0].action, "Release");
    }
}

#[test]
fn credentials_messages_name_the_secret_or_the_controller() {
    let mut r = observed_then_deleted(OnDelete::default());
    r.spec.credentials_ref = Some(crate::resource::CredentialsRef {
        name: "team-a".into(),
    });
    let mut pass = Pass::new(&r, owned(InstanceStatus::Stopped));
    pass.source = CredentialsSource::Secret("default/team-a".into());
    let error = api_error(
        "DeleteInstance",
        404,
        "InvalidAccessKeyId.NotFound",
        "bad key",
    );
    let d = pass.with_result(Err(error.clone()));
    assert_not_ready(&d, true, "CredentialsRejected");
    assert!(condition(&d, STALLED).2.contains("Secret default/team-a"));

    let pass = Pass::new(&r, owned(InstanceStatus::Stopped));
    let d = pass.with_result(Err(error));
    assert!(
        condition(&d, STALLED)
            .2
            .contains("the controller's own credentials")
    );

    let mut missing = Pass::new(
        &r,
        Observation::CredentialsUnavailable("the Secret does not exist".into()),
    );
    missing.source = CredentialsSource::Secret("default/team-a".into());
    missing.identity = None;
    let d = missing.done();
    assert_not_ready(&d, true, "CredentialsUnavailable");
    let message = condition(&d, STALLED).2;
    assert!(message.contains("Secret default/team-a") && message.contains("does not exist"));
    assert_eq!(d.next, Next::Requeue(Pace::Recheck));
}

#[test]
fn orphaning_removes_our_tags_and_never_waits_for_the_cloud() {
    let r = orphaned(resource(OnDelete::default()));
    let pass = Pass::new(&r, owned(InstanceStatus::Running));
    let CloudCall::Untag(untag) = pass.call() else {
        panic!("our tags are removed")
    };
    assert_eq!(untag.keys, [OWNER_TAG, OWNER_UID_TAG]);
    let d = pass.with_result(accepted("UNTAG-1"));
    assert_eq!(d.next, Next::RemoveFinalizer);
    assert_condition(&d, RELEASED, "False", "Orphaned");
    assert_eq!(event_reasons(&d), [("Orphaned", false)]);

    let failed = pass.with_result(Err(api_error("UntagResources", 403, "Forbidden.RAM", "no")));
    assert_eq!(
        failed.next,
        Next::RemoveFinalizer,
        "a failed untag never blocks an Orphan"
    );
    assert!(failed.events[0].note.contains("Forbidden.RAM"));

    for observation in [
        instance_tagged(InstanceStatus::Running, Some("another-uid")),
        instance_tagged(InstanceStatus::Running, None),
        Observation::Absent,
        Observation::Failed(EcsError::new(
            "DescribeInstances",
            ErrorKind::Timeout,
            "slow",
        )),
        Observation::CredentialsUnavailable("no Secret".into()),
    ] {
        let d = Pass::new(&r, observation.clone()).done();
        assert_eq!(d.next, Next::RemoveFinalizer, "{observation:?}");
        assert_condition(&d, RELEASED, "False", "Orphaned");
    }
}

fn claimant(name: &str, uid: &str, created: Timestamp, listed: bool) -> Claimant {
    Claimant {
        name: name.into(),
        uid: Some(uid.into()),
        created: Some(created),
        listed,
        unseen: false,
        claim: None,
    }
}

fn created_at(mut resource: EcsInstance, at: Timestamp) -> EcsInstance {
    resource.metadata.creation_timestamp = Some(Time(at));
    resource
}

#[test]
fn a_duplicate_never_acts_and_is_removed_without_a_call_that_changes_anything() {
    let live = created_at(resource(OnDelete::default()), now());
    let older = claimant(
        "team-b/web-0",
        "0b8a3c1e-0000-4000-8000-0000000000b0",
        now() - SignedDuration::from_mins(1),
        true,
    );
    let mut pass = Pass::new(&live, instance_tagged(InstanceStatus::Running, None));
    pass.claimants = vec![older.clone()];
    let d = pass.done();
    assert_not_ready(&d, true, "DuplicateInstance");
    assert!(condition(&d, STALLED).2.contains("team-b/web-0"));

    let gone = deleted(after(&live, &d));
    let mut pass = Pass::new(&gone, instance_tagged(InstanceStatus::Stopped, None));
    pass.claimants = vec![older];
    let d = pass.done();
    assert_eq!(d.next, Next::RemoveFinalizer);
    assert_condition(&d, RELEASED, "False", "DuplicateRemoved");
    assert_eq!(event_reasons(&d), [("DuplicateRemoved", true)]);
    assert!(d.events[0].note.contains("not released"));
}

#[test]
fn the_owner_tag_decides_over_an_older_resource() {
    // A restore or a race left an older resource naming the instance, but the tag is ours.
    let r = created_at(observed_then_deleted(OnDelete::default()), now());
    let mut pass = Pass::new(&r, owned(InstanceStatus::Stopped));
    pass.claimants = vec![claimant(
        "team-b/web-0",
        "0b8a3c1e-0000-4000-8000-0000000000b0",
        now() - SignedDuration::from_hours(1),
        true,
    )];
    // While the tag is new, a tag call of the other one could still replace it.
    let d = pass.done();
    assert_not_ready(&d, false, "ConfirmingOwnership");
    assert!(condition(&d, RECONCILING).2.contains("team-b/web-0"));
    let r = after(&r, &d);
    let mut pass = Pass::new(&r, owned(InstanceStatus::Stopped));
    pass.claimants = vec![claimant(
        "team-b/web-0",
        "0b8a3c1e-0000-4000-8000-0000000000b0",
        now() - SignedDuration::from_hours(1),
        true,
    )];
    pass.now = now() + SignedDuration::from_mins(2);
    assert!(matches!(pass.call(), CloudCall::Delete(_)));

    // Tagged for another resource of the cluster: a duplicate of that one, whatever the ages.
    let other_uid = "0b8a3c1e-0000-4000-8000-0000000000c0";
    let mut pass = Pass::new(
        &r,
        instance_tagged(InstanceStatus::Stopped, Some(other_uid)),
    );
    pass.claimants = vec![claimant(
        "team-c/younger",
        other_uid,
        now() + SignedDuration::from_hours(1),
        false,
    )];
    let d = pass.done();
    assert_condition(&d, RELEASED, "False", "DuplicateRemoved");
    assert!(d.events[0].note.contains("team-c/younger"));
}

#[test]
fn a_claimant_gone_before_the_tag_has_held_still_holds_the_release_back() {
    // Another resource named the instance and was removed; a tag call it decided on an older
    // observation may still land, so the release waits out the settle time all the same.
    let r = created_at(observed_then_deleted(OnDelete::default()), now());
    let mut pass = Pass::new(&r, owned(InstanceStatus::Stopped));
    pass.claimants = vec![claimant(
        "team-a/twin",
        "0b8a3c1e-0000-4000-8000-0000000000b1",
        now(),
        true,
    )];
    let d = pass.done();
    assert_not_ready(&d, false, "ConfirmingOwnership");
    let r = after(&r, &d);
    assert!(
        r.status
            .as_ref()
            .unwrap()
            .instance
            .as_ref()
            .unwrap()
            .contested
    );

    let mut pass = Pass::new(&r, owned(InstanceStatus::Stopped));
    pass.now = now() + SignedDuration::from_secs(5);
    let d = pass.done();
    assert_not_ready(&d, false, "ConfirmingOwnership");
    assert!(condition(&d, RECONCILING).2.contains("gone now"));

    let r = after(&r, &d);
    let mut pass = Pass::new(&r, owned(InstanceStatus::Stopped));
    pass.now = now() + SignedDuration::from_mins(2);
    assert!(matches!(pass.call(), CloudCall::Delete(_)));

    // Never contested: nothing waits.
    let lone = created_at(observed_then_deleted(OnDelete::default()), now());
    let pass = Pass::new(&lone, owned(InstanceStatus::Stopped));
    assert!(matches!(pass.call(), CloudCall::Delete(_)));
}

#[test]
fn a_resource_whose_credentials_never_listed_the_instance_does_not_pre_empt_the_owner() {
    let live = created_at(resource(OnDelete::default()), now());
    let mut pass = Pass::new(&live, instance_tagged(InstanceStatus::Running, None));
    pass.claimants = vec![claimant(
        "elsewhere/blind",
        "0b8a3c1e-0000-4000-8000-0000000000a0",
        now() - SignedDuration::from_hours(1),
        false,
    )];
    assert!(
        matches!(pass.call(), CloudCall::Tag(_)),
        "it tags the instance"
    );
}

#[test]
fn a_younger_resource_waits_for_an_older_one_not_looked_at_yet() {
    let live = created_at(resource(OnDelete::default()), now());
    let mut older = claimant(
        "default/older",
        "0b8a3c1e-0000-4000-8000-0000000000a1",
        now() - SignedDuration::from_secs(1),
        false,
    );
    older.unseen = true;
    let mut pass = Pass::new(&live, instance_tagged(InstanceStatus::Running, None));
    pass.claimants = vec![older.clone()];
    assert_eq!(pass.done().reason(), Some("DuplicateInstance"));
    // Once looked at, and its credentials do not list the instance, it no longer counts.
    older.unseen = false;
    pass.claimants = vec![older];
    assert!(matches!(pass.call(), CloudCall::Tag(_)));
}

#[test]
fn equal_creation_times_give_exactly_one_owner() {
    let (uid_a, uid_b) = (
        "0b8a3c1e-0000-4000-8000-00000000000a",
        "0b8a3c1e-0000-4000-8000-00000000000b",
    );
    let mut a = created_at(resource(OnDelete::default()), now());
    a.metadata.uid = Some(uid_a.into());
    let mut b = a.clone();
    b.metadata.uid = Some(uid_b.into());
    let untagged = instance_tagged(InstanceStatus::Running, None);
    let mut pass_a = Pass::new(&a, untagged.clone());
    pass_a.claimants = vec![claimant("default/web-1", uid_b, now(), true)];
    let mut pass_b = Pass::new(&b, untagged);
    pass_b.claimants = vec![claimant("default/web-1", uid_a, now(), true)];
    let tags = [
        matches!(pass_a.plan(), Plan::Call(CloudCall::Tag(_), _)),
        matches!(pass_b.plan(), Plan::Call(CloudCall::Tag(_), _)),
    ];
    assert_eq!(tags, [true, false], "the lower UID tags, the other waits");

    // Whichever tag landed decides; neither refuses for good.
    for (tagged_for, owner_acts) in [(uid_a, true), (uid_b, false)] {
        let tagged = instance_tagged(InstanceStatus::Running, Some(tagged_for));
        let mut pass_a = Pass::new(&a, tagged.clone());
        pass_a.claimants = vec![claimant("default/web-1", uid_b, now(), true)];
        let reason = pass_a.done().reason().unwrap().to_string();
        let expected = if owner_acts {
            "InstanceObserved"
        } else {
            "DuplicateInstance"
        };
        assert_eq!(reason, expected, "tagged for {tagged_for}");
    }
}

/// A DeleteInstance whose answer never came (timeout, reset, 5xx, unreadable 200): the intent
/// stays, nothing is sent again while the release may still show, and "not listed" afterwards is
/// this resource's release.
#[test]
fn an_unknown_outcome_keeps_the_intent_and_ends_as_released_by_this_resource() {
    let r = observed_then_deleted(OnDelete::default());
    let mut pass = Pass::new(&r, owned(InstanceStatus::Stopped));
    pass.intent_at = Some(now());
    for error in [
        EcsError::new("DeleteInstance", ErrorKind::Timeout, "no answer within 10s"),
        EcsError::new("DeleteInstance", ErrorKind::Transport, "connection reset"),
        api_error("DeleteInstance", 500, "InternalError", "oops"),
    ] {
        let d = pass.with_result(Err(error.clone()));
        assert_not_ready(&d, false, "ReleaseOutcomeUnknown");
        let release = d.status.release.clone().expect("the intent stays");
        assert_eq!(
            (release.request_id, release.requested_at),
            (None, Some(Time(now())))
        );
        assert_eq!(
            d.status.last_error.as_ref().unwrap().action,
            "DeleteInstance"
        );

        let unknown = after(&r, &d);
        let mut soon = Pass::new(&unknown, owned(InstanceStatus::Stopped));
        soon.now = now() + SignedDuration::from_secs(30);
        assert_not_ready(&soon.done(), false, "ReleaseOutcomeUnknown");

        let d = Pass::new(&unknown, Observation::Absent).done();
        assert_eq!(d.next, Next::RemoveFinalizer);
        assert_condition(&d, RELEASED, "True", "Released");
        assert!(
            d.events[0].note.contains("answer lost"),
            "{}",
            d.events[0].note
        );
    }
    // A definite refusal leaves no intent: ECS did not release it.
    let d = pass.with_result(Err(api_error(
        "DeleteInstance",
        403,
        "InvalidOperation.DeletionProtection",
        "protected",
    )));
    assert!(d.status.release.is_none());
}

/// Orphan set after a release was asked for: never untag an instance being released, and say
/// what ECS was told.
#[test]
fn orphan_after_an_accepted_release_reports_the_release() {
    let r = observed_then_deleted(OnDelete::default());
    let accepted =
        Pass::new(&r, owned(InstanceStatus::Stopped)).with_result(Ok(RequestId("DEL-9".into())));
    let mut switched = after(&r, &accepted);
    switched.spec.deletion_policy = Some(DeletionPolicy::Orphan);
    let d = Pass::new(&switched, owned(InstanceStatus::Stopped)).done();
    assert_not_ready(&d, false, "WaitingForRelease");
    assert!(condition(&d, RECONCILING).2.contains("DEL-9"));

    let d = Pass::new(&switched, Observation::Absent).done();
    assert_eq!(d.next, Next::RemoveFinalizer);
    assert_condition(&d, RELEASED, "True", "Released");

    let mut late = Pass::new(&switched, owned(InstanceStatus::Stopped));
    late.now = now() + SignedDuration::from_mins(11);
    let d = late.done();
    assert_eq!(d.next, Next::RemoveFinalizer);
    assert!(d.events[0].note.contains("DEL-9"), "{}", d.events[0].note);
}

#[test]
fn the_record_before_a_call_keeps_the_last_error_until_the_outcome_is_known() {
    let r = observed_then_deleted(OnDelete::default());
    let failed = Pass::new(&r, owned(InstanceStatus::Stopped)).with_result(Err(api_error(
        "DeleteInstance",
        403,
        "IncorrectInstanceStatus.Initializing",
        "initializing",
    )));
    let r = after(&r, &failed);
    let Plan::Call(CloudCall::Delete(_), record) =
        Pass::new(&r, owned(InstanceStatus::Stopped)).plan()
    else {
        panic!("asked again")
    };
    assert_eq!(record.last_error, failed.status.last_error);
    assert_eq!(record.conditions, failed.status.conditions);
}

#[test]
fn a_successful_observation_clears_the_last_error() {
    let r = observed_then_deleted(OnDelete::default());
    let failed = Pass::new(&r, owned(InstanceStatus::Stopped)).with_result(Err(api_error(
        "DeleteInstance",
        503,
        "ServiceUnavailable",
        "busy",
    )));
    assert!(failed.status.last_error.is_some());
    let d = Pass::new(&after(&r, &failed), owned(InstanceStatus::Stopping)).done();
    assert!(d.status.last_error.is_none());
}

#[test]
fn an_unchanged_observation_does_not_change_the_status() {
    let live = resource(OnDelete::default());
    let first = Pass::new(&live, owned(InstanceStatus::Running)).done();
    let r = after(&live, &first);
    let mut later = Pass::new(&r, owned(InstanceStatus::Running));
    later.now = now() + SignedDuration::from_secs(60);
    assert_eq!(
        later.done().status,
        first.status,
        "no write for a steady resync"
    );
    later.now = now() + SignedDuration::from_mins(6);
    assert_ne!(
        later.done().status,
        first.status,
        "observedAt is refreshed after a while"
    );
}

#[test]
fn a_release_still_listed_long_after_it_was_accepted_needs_a_person() {
    let r = observed_then_deleted(OnDelete::default());
    let d = Pass::new(&r, owned(InstanceStatus::Stopped)).with_result(accepted("DEL-1"));
    let r = after(&r, &d);
    let mut late = Pass::new(&r, owned(InstanceStatus::Stopped));
    late.now = now() + SignedDuration::from_mins(11);
    let d = late.done();
    assert_not_ready(&d, true, "ReleaseNotConfirmed");
    assert_condition(&d, RELEASED, "True", "ReleaseRequested");
    assert!(condition(&d, STALLED).2.contains("DEL-1"));
}

/// A restart between sending DeleteInstance and recording its answer: the intent in the status
/// keeps the successor from asking again at once, and the end says "released", not "nothing".
#[test]
fn a_release_whose_answer_was_lost_is_not_resent_at_once_and_ends_as_released() {
    let r = observed_then_deleted(OnDelete::default());
    let mut intent = r.clone();
    let Plan::Call(CloudCall::Delete(_), record) =
        Pass::new(&r, owned(InstanceStatus::Stopped)).plan()
    else {
        panic!("a Stopped instance is released")
    };
    assert!(
        record
            .instance
            .as_ref()
            .is_some_and(|i| i.observed_with.is_some()),
        "the intent carries the observation that justified it"
    );
    intent.status = Some(record);
    let d = Pass::new(&intent, owned(InstanceStatus::Stopped)).done();
    assert_not_ready(&d, false, "ReleaseOutcomeUnknown");
    assert!(condition(&d, RECONCILING).2.contains("outcome is unknown"));

    let mut later = Pass::new(&intent, owned(InstanceStatus::Stopped));
    later.now = now() + SignedDuration::from_mins(2);
    assert!(
        matches!(later.call(), CloudCall::Delete(_)),
        "asked again once the release had time to show"
    );
    let error = api_error("DeleteInstance", 404, "InvalidInstanceId.NotFound", "gone");
    let d = later.with_result(Err(error));
    assert_condition(&d, RELEASED, "True", "Released");
    assert!(d.events[0].note.contains("was released"));

    let d = Pass::new(&intent, Observation::Absent).done();
    assert_eq!(d.next, Next::RemoveFinalizer);
    assert_condition(&d, RELEASED, "True", "Released");
    assert!(
        !d.events[0].note.contains("nothing to release"),
        "{}",
        d.events[0].note
    );
}

#[test]
fn a_tag_call_whose_outcome_is_unknown_keeps_its_request_and_claim_on_record() {
    let r = resource(OnDelete::default());
    let (tag, record) = tag_with_claim(&r, "claim-0000000000000001");
    // The shell concludes from the resource as the call's record left it.
    let recorded = EcsInstance {
        status: Some(record.clone()),
        ..r
    };
    let mut pass = Pass::new(&recorded, instance_tagged(InstanceStatus::Stopped, None));
    pass.claim = Some("claim-0000000000000001");
    let lost = Err(EcsError::new("TagResources", ErrorKind::Timeout, "lost"));
    let d = conclude(&pass.input(), &CloudCall::Tag(tag), &lost);
    let observed = d.status.instance.as_ref().unwrap();
    assert_eq!(
        observed.tag_requested_at,
        record.instance.as_ref().unwrap().tag_requested_at
    );
    assert_eq!(observed.claim, record.instance.as_ref().unwrap().claim);
}
