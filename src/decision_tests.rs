//! Table-driven tests of the decision function: every step of SPEC §3 and every row of its error
//! table, as (resource, observation, call result) → (call, conditions, requeue, events).

use ecs_client::{
    DeleteInstance, EcsError, ErrorKind, Instance, InstanceStatus, RequestId, StopInstance,
};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::conditions::{READY, RECONCILING, RELEASED, STALLED, find};
use crate::resource::{EcsInstanceSpec, OnDelete, ReleaseRecord};

const ID: &str = "i-bp67acfmxazb4ph3t1ab";

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn resource(on_delete: OnDelete, deleting: bool) -> EcsInstance {
    let mut resource = EcsInstance::new(
        "web-1",
        EcsInstanceSpec {
            instance_id: ID.into(),
            region_id: "cn-hangzhou".into(),
            deletion_policy: DeletionPolicy::Delete,
            on_delete,
            credentials_ref: None,
        },
    );
    resource.metadata.namespace = Some("default".into());
    resource.metadata.generation = Some(3);
    if deleting {
        resource.metadata.deletion_timestamp = Some(Time(now()));
    }
    resource
}

fn deleting(stop: StopPolicy) -> EcsInstance {
    resource(
        OnDelete {
            stop,
            ..Default::default()
        },
        true,
    )
}

fn instance(status: InstanceStatus) -> Observation {
    Observation::Present(Instance {
        instance_id: ID.into(),
        region_id: "cn-hangzhou".into(),
        zone_id: "cn-hangzhou-g".into(),
        status,
        charge_type: "PostPaid".into(),
        deletion_protection: false,
        lock_reasons: vec![],
        expired_time: None,
    })
}

fn api_error(action: &str, status: u16, code: &str, message: &str) -> EcsError {
    let body = format!(
        r#"{{"RequestId":"REQ-1","HostId":"ecs.cn-hangzhou.aliyuncs.com","Code":"{code}","Message":"{message}"}}"#
    );
    EcsError::from_response(action, status, body.as_bytes())
}

fn decide_with(
    resource: &EcsInstance,
    observation: &Observation,
    result: Option<&Result<RequestId, EcsError>>,
) -> Decision {
    decide(&Input {
        resource,
        observation,
        stop_recently_requested: false,
        call_result: result,
        now: now(),
        observed_at_refresh: SignedDuration::from_mins(5),
        release_timeout: SignedDuration::from_mins(10),
    })
}

fn condition(decision: &Decision, type_: &str) -> (String, String) {
    let c =
        find(&decision.status.conditions, type_).unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.clone(), c.reason.clone())
}

fn assert_condition(decision: &Decision, type_: &str, status: &str, reason: &str) {
    assert_eq!(
        condition(decision, type_),
        (status.to_string(), reason.to_string()),
        "{type_} in {:#?}",
        decision.status.conditions
    );
}

#[test]
fn not_deleting_and_observed_is_ready_with_a_steady_resync() {
    let d = decide_with(
        &resource(OnDelete::default(), false),
        &instance(InstanceStatus::Running),
        None,
    );
    assert_eq!(d.call, None);
    assert_condition(&d, READY, "True", "InstanceObserved");
    assert_condition(&d, RECONCILING, "False", "InstanceObserved");
    assert_condition(&d, STALLED, "False", "InstanceObserved");
    assert_condition(&d, RELEASED, "False", "NotDeleting");
    assert_eq!(d.next, Next::Requeue(Pace::Steady));
    assert_eq!(d.status.observed_generation, Some(3));
    assert!(
        d.status
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(3))
    );
    let observed = d.status.instance.as_ref().unwrap();
    assert_eq!(observed.status.as_deref(), Some("Running"));
    assert_eq!(observed.zone_id.as_deref(), Some("cn-hangzhou-g"));
    assert!(d.events.is_empty());
}

#[test]
fn an_instance_in_transition_is_polled_fast_while_not_deleting() {
    let d = decide_with(
        &resource(OnDelete::default(), false),
        &instance(InstanceStatus::Starting),
        None,
    );
    assert_eq!(d.next, Next::Requeue(Pace::Transition));
}

#[test]
fn a_missing_instance_while_not_deleting_is_instance_not_found_without_a_loop() {
    let d = decide_with(
        &resource(OnDelete::default(), false),
        &Observation::Absent,
        None,
    );
    assert_condition(&d, READY, "False", "InstanceNotFound");
    assert_condition(&d, STALLED, "True", "InstanceNotFound");
    assert_eq!(d.next, Next::Requeue(Pace::Recheck));
    assert_eq!(d.call, None);
}

#[test]
fn orphan_releases_the_finalizer_without_any_cloud_call() {
    let mut r = deleting(StopPolicy::Stop);
    r.spec.deletion_policy = DeletionPolicy::Orphan;
    assert!(is_orphaning(&r));
    let d = decide_with(&r, &Observation::Skipped, None);
    assert_eq!(d.call, None);
    assert_eq!(d.next, Next::RemoveFinalizer);
    assert_condition(&d, RELEASED, "False", "Orphaned");
    assert_eq!(d.events[0].reason, "Orphaned");
    assert!(!d.events[0].warning);
}

#[test]
fn absent_while_deleting_is_released_not_found() {
    let d = decide_with(&deleting(StopPolicy::Wait), &Observation::Absent, None);
    assert_eq!(d.call, None);
    assert_eq!(d.next, Next::RemoveFinalizer);
    assert_condition(&d, RELEASED, "True", "NotFound");
    assert!(d.status.release.as_ref().unwrap().confirmed_at.is_some());
    assert_eq!(d.events[0].reason, "Released");
}

#[test]
fn deletion_steps_by_instance_status_and_policy() {
    let stop = |force_stop| {
        Some(CloudCall::Stop(StopInstance {
            instance_id: ID.into(),
            force_stop,
            stopped_mode: None,
            dry_run: false,
        }))
    };
    let delete = |force| {
        Some(CloudCall::Delete(DeleteInstance {
            instance_id: ID.into(),
            force,
            force_stop: None,
            terminate_subscription: false,
            dry_run: false,
        }))
    };
    let forced = OnDelete {
        force: true,
        ..Default::default()
    };
    // (on_delete, instance status, expected call, expected Reconciling reason when waiting, pace)
    type Row = (
        OnDelete,
        InstanceStatus,
        Option<CloudCall>,
        Option<&'static str>,
        Pace,
    );
    let rows: Vec<Row> = vec![
        (
            OnDelete::default(),
            InstanceStatus::Pending,
            None,
            Some("WaitingForInitialization"),
            Pace::Transition,
        ),
        (
            OnDelete::default(),
            InstanceStatus::Starting,
            None,
            Some("WaitingForInitialization"),
            Pace::Transition,
        ),
        (
            OnDelete::default(),
            InstanceStatus::Running,
            None,
            Some("WaitingForStopped"),
            Pace::Waiting,
        ),
        (
            OnDelete::default(),
            InstanceStatus::Stopping,
            None,
            Some("WaitingForStopped"),
            Pace::Transition,
        ),
        (
            OnDelete::default(),
            InstanceStatus::Stopped,
            delete(false),
            None,
            Pace::Transition,
        ),
        (
            OnDelete {
                stop: StopPolicy::Stop,
                ..Default::default()
            },
            InstanceStatus::Running,
            stop(false),
            None,
            Pace::Transition,
        ),
        (
            OnDelete {
                stop: StopPolicy::ForceStop,
                ..Default::default()
            },
            InstanceStatus::Running,
            stop(true),
            None,
            Pace::Transition,
        ),
        (
            OnDelete {
                stop: StopPolicy::Stop,
                ..Default::default()
            },
            InstanceStatus::Stopping,
            None,
            Some("WaitingForStopped"),
            Pace::Transition,
        ),
        (
            forced.clone(),
            InstanceStatus::Running,
            delete(true),
            None,
            Pace::Transition,
        ),
        (
            forced.clone(),
            InstanceStatus::Stopping,
            delete(true),
            None,
            Pace::Transition,
        ),
        (
            forced.clone(),
            InstanceStatus::Pending,
            None,
            Some("WaitingForInitialization"),
            Pace::Transition,
        ),
    ];
    for (on_delete, status, call, waiting, pace) in rows {
        let label = format!("{on_delete:?} / {status:?}");
        let d = decide_with(&resource(on_delete, true), &instance(status), None);
        assert_eq!(d.call, call, "{label}");
        assert_eq!(d.next, Next::Requeue(pace), "{label}");
        if let Some(reason) = waiting {
            assert_condition(&d, RECONCILING, "True", reason);
            assert_condition(&d, READY, "False", reason);
            assert_condition(&d, RELEASED, "False", "Releasing");
        }
    }
}

#[test]
fn stop_is_not_repeated_while_a_recent_stop_may_not_show_yet() {
    let r = deleting(StopPolicy::Stop);
    let observation = instance(InstanceStatus::Running);
    let d = decide(&Input {
        resource: &r,
        observation: &observation,
        stop_recently_requested: true,
        call_result: None,
        now: now(),
        observed_at_refresh: SignedDuration::from_mins(5),
        release_timeout: SignedDuration::from_mins(10),
    });
    assert_eq!(d.call, None);
    assert_condition(&d, RECONCILING, "True", "WaitingForStopped");
    assert_eq!(d.next, Next::Requeue(Pace::Transition));
}

#[test]
fn terminate_subscription_and_stopped_mode_are_passed_on() {
    let on_delete = OnDelete {
        stop: StopPolicy::Stop,
        stopped_mode: Some(StoppedMode::StopCharging),
        terminate_subscription: true,
        ..Default::default()
    };
    let d = decide_with(
        &resource(on_delete.clone(), true),
        &instance(InstanceStatus::Running),
        None,
    );
    match d.call {
        Some(CloudCall::Stop(stop)) => assert_eq!(
            stop.stopped_mode,
            Some(ecs_client::StoppedMode::StopCharging)
        ),
        other => panic!("expected StopInstance, got {other:?}"),
    }
    let d = decide_with(
        &resource(on_delete, true),
        &instance(InstanceStatus::Stopped),
        None,
    );
    match d.call {
        Some(CloudCall::Delete(delete)) => assert!(delete.terminate_subscription),
        other => panic!("expected DeleteInstance, got {other:?}"),
    }
}

#[test]
fn accepted_delete_records_the_release_and_polls_until_absent() {
    let r = deleting(StopPolicy::Wait);
    let stopped = instance(InstanceStatus::Stopped);
    let accepted = Ok(RequestId("REQ-DEL".into()));
    let d = decide_with(&r, &stopped, Some(&accepted));
    assert_eq!(d.call, None);
    assert_condition(&d, RELEASED, "True", "ReleaseRequested");
    assert_condition(&d, RECONCILING, "True", "WaitingForRelease");
    let release = d.status.release.clone().unwrap();
    assert_eq!(release.request_id.as_deref(), Some("REQ-DEL"));
    assert_eq!(release.requested_at, Some(Time(now())));
    assert_eq!(d.events[0].reason, "ReleaseRequested");
    assert_eq!(d.next, Next::Requeue(Pace::Transition));

    // Next pass: the instance is still listed (release is asynchronous): no second DeleteInstance.
    let mut released = r.clone();
    released.status = Some(d.status.clone());
    let d2 = decide_with(&released, &stopped, None);
    assert_eq!(d2.call, None, "a recorded release is never requested again");
    assert_condition(&d2, RECONCILING, "True", "WaitingForRelease");
    assert_condition(&d2, RELEASED, "True", "ReleaseRequested");

    // Then it is gone: Released (keeping the transition time), finalizer removed.
    let d3 = decide_with(&released, &Observation::Absent, None);
    assert_eq!(d3.next, Next::RemoveFinalizer);
    assert_condition(&d3, RELEASED, "True", "Released");
    assert!(d3.status.release.as_ref().unwrap().confirmed_at.is_some());
    assert_eq!(
        d3.status.release.as_ref().unwrap().request_id.as_deref(),
        Some("REQ-DEL")
    );
}

#[test]
fn accepted_stop_waits_for_stopped() {
    let d = decide_with(
        &deleting(StopPolicy::ForceStop),
        &instance(InstanceStatus::Running),
        Some(&Ok(RequestId("REQ-STOP".into()))),
    );
    assert_condition(&d, RECONCILING, "True", "StopRequested");
    assert_eq!(d.events[0].reason, "StopRequested");
    assert!(d.events[0].note.contains("ForceStop"));
    assert_eq!(d.next, Next::Requeue(Pace::Transition));
}

/// SPEC §3 step 6, row by row: the DeleteInstance error → condition, reason, pace.
#[test]
fn every_row_of_the_error_table() {
    struct Row {
        http: u16,
        code: &'static str,
        condition: &'static str,
        reason: &'static str,
        pace: Pace,
    }
    let backoff = Pace::Backoff(Backoff::Normal);
    let rows = [
        Row {
            http: 403,
            code: "IncorrectInstanceStatus",
            condition: RECONCILING,
            reason: "IncorrectInstanceStatus",
            pace: Pace::Transition,
        },
        Row {
            http: 403,
            code: "IncorrectInstanceStatus.Initializing",
            condition: RECONCILING,
            reason: "IncorrectInstanceStatusInitializing",
            pace: backoff,
        },
        Row {
            http: 400,
            code: "DependencyViolation.SLBConfiguring",
            condition: RECONCILING,
            reason: "DependencyViolationSLBConfiguring",
            pace: backoff,
        },
        Row {
            http: 400,
            code: "DependencyViolation.RouteEntry",
            condition: STALLED,
            reason: "DependencyViolationRouteEntry",
            pace: Pace::Recheck,
        },
        Row {
            http: 400,
            code: "InvalidParameter",
            condition: STALLED,
            reason: "InvalidParameter",
            pace: Pace::Recheck,
        },
        Row {
            http: 403,
            code: "ChargeTypeViolation",
            condition: STALLED,
            reason: "ChargeTypeViolation",
            pace: Pace::Recheck,
        },
        Row {
            http: 403,
            code: "InstanceLockedForSecurity",
            condition: STALLED,
            reason: "InstanceLockedForSecurity",
            pace: Pace::Recheck,
        },
        Row {
            http: 403,
            code: "InvalidOperation.DeletionProtection",
            condition: STALLED,
            reason: "InvalidOperationDeletionProtection",
            pace: Pace::Recheck,
        },
        Row {
            http: 400,
            code: "Throttling",
            condition: RECONCILING,
            reason: "Throttled",
            pace: Pace::Backoff(Backoff::Throttled),
        },
        Row {
            http: 400,
            code: "Throttling.User",
            condition: RECONCILING,
            reason: "Throttled",
            pace: Pace::Backoff(Backoff::Throttled),
        },
        Row {
            http: 400,
            code: "Throttling.Api",
            condition: RECONCILING,
            reason: "Throttled",
            pace: Pace::Backoff(Backoff::Throttled),
        },
        Row {
            http: 503,
            code: "ServiceUnavailable",
            condition: RECONCILING,
            reason: "Retrying",
            pace: backoff,
        },
        Row {
            http: 500,
            code: "InternalError",
            condition: RECONCILING,
            reason: "Retrying",
            pace: backoff,
        },
        Row {
            http: 404,
            code: "InvalidAccessKeyId.NotFound",
            condition: STALLED,
            reason: "CredentialsRejected",
            pace: Pace::Recheck,
        },
        Row {
            http: 400,
            code: "InvalidAccessKeyId.Inactive",
            condition: STALLED,
            reason: "CredentialsRejected",
            pace: Pace::Recheck,
        },
        Row {
            http: 400,
            code: "SignatureDoesNotMatch",
            condition: STALLED,
            reason: "CredentialsRejected",
            pace: Pace::Recheck,
        },
        Row {
            http: 400,
            code: "IncompleteSignature",
            condition: STALLED,
            reason: "CredentialsRejected",
            pace: Pace::Recheck,
        },
        Row {
            http: 403,
            code: "Forbidden.RAM",
            condition: STALLED,
            reason: "CredentialsRejected",
            pace: Pace::Recheck,
        },
        Row {
            http: 400,
            code: "InvalidTimeStamp.Expired",
            condition: STALLED,
            reason: "CredentialsRejected",
            pace: Pace::Recheck,
        },
        Row {
            http: 403,
            code: "OperationDenied.SystemInstanceNotSupport",
            condition: RECONCILING,
            reason: "UnexpectedError",
            pace: Pace::Backoff(Backoff::Slow),
        },
    ];
    let r = deleting(StopPolicy::Wait);
    let stopped = instance(InstanceStatus::Stopped);
    for row in rows {
        let error = api_error("DeleteInstance", row.http, row.code, "the message");
        let d = decide_with(&r, &stopped, Some(&Err(error)));
        let label = row.code;
        assert_eq!(d.next, Next::Requeue(row.pace), "{label}");
        assert_condition(&d, row.condition, "True", row.reason);
        let other = if row.condition == STALLED {
            RECONCILING
        } else {
            STALLED
        };
        assert_eq!(
            condition(&d, other).0,
            "False",
            "{label}: only one of Reconciling/Stalled is True"
        );
        assert_condition(&d, READY, "False", row.reason);
        assert_condition(&d, RELEASED, "False", "Releasing");
        // The exact code, message and RequestId are in the condition message and lastError.
        let message = &find(&d.status.conditions, row.condition).unwrap().message;
        assert!(
            message.contains(row.code)
                && message.contains("the message")
                && message.contains("REQ-1"),
            "{label}: {message}"
        );
        let last = d.status.last_error.as_ref().unwrap();
        assert_eq!(last.action, "DeleteInstance");
        assert_eq!(last.code.as_deref(), Some(row.code));
        assert_eq!(last.request_id.as_deref(), Some("REQ-1"));
        assert_eq!(last.http_status, Some(i32::from(row.http)));
        assert_eq!(last.message, "the message");
        assert_eq!(d.events.len(), 1, "{label}");
        assert!(d.events[0].warning, "{label}: errors are Warning events");
        assert_eq!(d.events[0].reason, row.reason);
    }
}

#[test]
fn not_found_from_delete_or_stop_means_already_released() {
    for (code, status) in [
        ("InvalidInstanceId.NotFound", 404),
        ("Forbidden.InstanceNotFound", 403),
    ] {
        let error = api_error("DeleteInstance", status, code, "gone");
        let d = decide_with(
            &deleting(StopPolicy::Wait),
            &instance(InstanceStatus::Stopped),
            Some(&Err(error)),
        );
        assert_eq!(d.next, Next::RemoveFinalizer, "{code}");
        assert_condition(&d, RELEASED, "True", "NotFound");
        assert!(d.status.last_error.is_none());
    }
}

#[test]
fn timeouts_and_non_api_bodies_are_retried_with_backoff() {
    let timeout = EcsError::new(
        "DescribeInstances",
        ErrorKind::Timeout,
        "no answer within 10s",
    );
    let d = decide_with(
        &deleting(StopPolicy::Wait),
        &Observation::Failed(timeout),
        None,
    );
    assert_condition(&d, RECONCILING, "True", "Retrying");
    assert_eq!(d.next, Next::Requeue(Pace::Backoff(Backoff::Normal)));

    let proxy = EcsError::from_response("DeleteInstance", 502, b"<html>Bad Gateway</html>");
    let d = decide_with(
        &deleting(StopPolicy::Wait),
        &instance(InstanceStatus::Stopped),
        Some(&Err(proxy)),
    );
    assert_condition(&d, RECONCILING, "True", "Retrying");
    assert!(d.status.last_error.as_ref().unwrap().code.is_none());
}

#[test]
fn missing_credentials_stall_until_the_secret_is_fixed() {
    let d = decide_with(
        &deleting(StopPolicy::Wait),
        &Observation::CredentialsUnavailable("credentials Secret default/ecs not found".into()),
        None,
    );
    assert_condition(&d, STALLED, "True", "CredentialsUnavailable");
    assert_eq!(d.next, Next::Requeue(Pace::Recheck));
    assert!(d.events[0].warning);
    assert_eq!(d.call, None);
}

#[test]
fn a_successful_observation_clears_the_last_error() {
    let mut r = resource(OnDelete::default(), false);
    let failed = decide_with(
        &r,
        &Observation::Failed(api_error(
            "DescribeInstances",
            503,
            "ServiceUnavailable",
            "busy",
        )),
        None,
    );
    assert!(failed.status.last_error.is_some());
    r.status = Some(failed.status);
    let recovered = decide_with(&r, &instance(InstanceStatus::Running), None);
    assert!(recovered.status.last_error.is_none());
    assert_condition(&recovered, READY, "True", "InstanceObserved");
    assert_condition(&recovered, RECONCILING, "False", "InstanceObserved");
}

#[test]
fn an_unchanged_observation_does_not_change_the_status() {
    let mut r = resource(OnDelete::default(), false);
    let first = decide_with(&r, &instance(InstanceStatus::Running), None);
    r.status = Some(first.status.clone());
    // A minute later, nothing changed: the status is identical, so nothing is written.
    let later = decide(&Input {
        resource: &r,
        observation: &instance(InstanceStatus::Running),
        stop_recently_requested: false,
        call_result: None,
        now: now() + SignedDuration::from_mins(1),
        observed_at_refresh: SignedDuration::from_mins(5),
        release_timeout: SignedDuration::from_mins(10),
    });
    assert_eq!(later.status, first.status);
    // Ten minutes later the observation time is refreshed once.
    let much_later = decide(&Input {
        resource: &r,
        observation: &instance(InstanceStatus::Running),
        stop_recently_requested: false,
        call_result: None,
        now: now() + SignedDuration::from_mins(10),
        observed_at_refresh: SignedDuration::from_mins(5),
        release_timeout: SignedDuration::from_mins(10),
    });
    assert_ne!(much_later.status, first.status);
    assert_eq!(
        much_later.status.conditions, first.status.conditions,
        "conditions keep their transition times"
    );
}

#[test]
fn a_recorded_release_is_confirmed_even_if_describe_says_not_found() {
    let mut r = deleting(StopPolicy::Wait);
    r.status = Some(EcsInstanceStatus {
        release: Some(ReleaseRecord {
            request_id: Some("REQ-DEL".into()),
            requested_at: Some(Time(now())),
            confirmed_at: None,
        }),
        ..Default::default()
    });
    let d = decide_with(&r, &Observation::Absent, None);
    assert_eq!(d.next, Next::RemoveFinalizer);
    assert_condition(&d, RELEASED, "True", "Released");
}

#[test]
fn a_release_still_listed_long_after_it_was_accepted_needs_a_person() {
    let mut r = deleting(StopPolicy::Wait);
    let requested = now() - SignedDuration::from_mins(11);
    r.status = Some(EcsInstanceStatus {
        release: Some(ReleaseRecord {
            request_id: Some("REQ-DEL".into()),
            requested_at: Some(Time(requested)),
            confirmed_at: None,
        }),
        ..Default::default()
    });
    let d = decide_with(&r, &instance(InstanceStatus::Stopped), None);
    assert_eq!(d.call, None, "the release is not requested again");
    assert_condition(&d, STALLED, "True", "ReleaseNotConfirmed");
    assert_condition(&d, RELEASED, "False", "Releasing");
    assert_eq!(d.next, Next::Requeue(Pace::Recheck));
    let message = &find(&d.status.conditions, STALLED).unwrap().message;
    assert!(
        message.contains("REQ-DEL") && message.contains("10m") && message.contains("Orphan"),
        "{message}"
    );
    assert!(d.events[0].warning);

    // Within the timeout it is an ordinary wait.
    r.status
        .as_mut()
        .unwrap()
        .release
        .as_mut()
        .unwrap()
        .requested_at = Some(Time(now() - SignedDuration::from_mins(9)));
    let d = decide_with(&r, &instance(InstanceStatus::Stopped), None);
    assert_condition(&d, RECONCILING, "True", "WaitingForRelease");
}
