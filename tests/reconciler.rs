//! The deletion flow end to end: the controller (in-process) against a real kube-apiserver and
//! the ECS simulator, one scenario per test, asserting conditions, events and the simulator's
//! call log.

mod support;

use std::time::Duration;

use ecs_instance_controller::{
    conditions::{READY, RECONCILING, RELEASED, STALLED},
    resource::FINALIZER,
};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::{Harness, call_succeeded, condition_message, fast_timings, has_condition};

#[tokio::test]
async fn a_stopped_instance_is_released_and_the_resource_disappears() {
    let h = Harness::start("stopped").await;
    h.seed("i-bp1stopped0001", json!({ "status": "Stopped" }))
        .await;
    h.create("web-1", "i-bp1stopped0001", json!({})).await;

    let ready = h
        .wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    assert!(
        ready
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&FINALIZER.to_string()),
        "finalizer added"
    );
    let status = ready.status.unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.instance.unwrap().status.as_deref(), Some("Stopped"));

    h.delete("web-1").await;
    h.wait_gone("web-1").await;

    let deletes = h.calls("DeleteInstance", Some("i-bp1stopped0001")).await;
    assert_eq!(deletes.len(), 1, "exactly one DeleteInstance: {deletes:#?}");
    assert!(call_succeeded(&deletes[0]));
    assert_ne!(deletes[0]["params"]["Force"], "true");
    assert!(h.calls("StopInstance", None).await.is_empty());
    assert!(
        h.sim.instance("i-bp1stopped0001").await.is_none(),
        "released in the simulator"
    );
    let reasons = h.event_reasons("web-1").await;
    assert!(
        reasons.contains(&"ReleaseRequested".to_string())
            && reasons.contains(&"Released".to_string()),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn wait_policy_blocks_until_someone_stops_the_instance() {
    let h = Harness::start("wait").await;
    h.seed("i-bp1running0001", json!({ "status": "Running" }))
        .await;
    h.create("web-1", "i-bp1running0001", json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;

    h.delete("web-1").await;
    let waiting = h
        .wait_for_condition("web-1", RECONCILING, "True", "WaitingForStopped")
        .await;
    assert!(has_condition(&waiting, READY, "False", "WaitingForStopped"));
    assert!(condition_message(&waiting, RECONCILING).contains("Running"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        h.api.get_opt("web-1").await.unwrap().is_some(),
        "held while the instance runs"
    );
    assert!(
        h.calls("StopInstance", None).await.is_empty(),
        "Wait never stops the instance"
    );
    assert!(
        h.calls("DeleteInstance", None).await.is_empty(),
        "nothing is released while Running"
    );

    h.sim
        .patch_instance("i-bp1running0001", json!({ "status": "Stopped" }))
        .await;
    h.wait_gone("web-1").await;
    assert_eq!(h.calls("DeleteInstance", None).await.len(), 1);
}

#[tokio::test]
async fn stop_and_force_stop_call_stop_instance_then_release() {
    let h = Harness::start("stop").await;
    for (name, id, policy, force_stop) in [
        ("web-stop", "i-bp1stoppol0001", "Stop", "false"),
        ("web-force", "i-bp1stoppol0002", "ForceStop", "true"),
    ] {
        h.seed(id, json!({ "status": "Running" })).await;
        h.create(
            name,
            id,
            json!({ "onDelete": { "stop": policy, "stoppedMode": "StopCharging" } }),
        )
        .await;
        h.wait_for_condition(name, READY, "True", "InstanceObserved")
            .await;
        h.delete(name).await;
        h.wait_gone(name).await;

        let stops = h.calls("StopInstance", Some(id)).await;
        assert_eq!(stops.len(), 1, "{policy}: one StopInstance: {stops:#?}");
        let force_sent = stops[0]["params"]["ForceStop"]
            .as_str()
            .unwrap_or("false")
            .to_ascii_lowercase();
        assert_eq!(force_sent, force_stop, "{policy}");
        assert_eq!(stops[0]["params"]["StoppedMode"], "StopCharging");
        let deletes = h.calls("DeleteInstance", Some(id)).await;
        assert_eq!(deletes.len(), 1, "{policy}: {deletes:#?}");
        assert!(
            stops[0]["seq"].as_u64() < deletes[0]["seq"].as_u64(),
            "stop before release"
        );
        let reasons = h.event_reasons(name).await;
        assert!(
            reasons.contains(&"StopRequested".to_string()),
            "{reasons:?}"
        );
    }
}

#[tokio::test]
async fn force_releases_a_running_instance_with_force_true() {
    let h = Harness::start("force").await;
    h.seed("i-bp1forced00001", json!({ "status": "Running" }))
        .await;
    h.create(
        "web-1",
        "i-bp1forced00001",
        json!({ "onDelete": { "force": true } }),
    )
    .await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    h.delete("web-1").await;
    h.wait_gone("web-1").await;

    let deletes = h.calls("DeleteInstance", None).await;
    assert_eq!(deletes.len(), 1);
    assert_eq!(
        deletes[0]["params"]["Force"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("true")
    );
    assert!(h.calls("StopInstance", None).await.is_empty());
}

#[tokio::test]
async fn an_instance_already_gone_is_released_without_delete_instance() {
    let h = Harness::start("gone").await;
    h.seed("i-bp1alreadygone1", json!({ "status": "Stopped" }))
        .await;
    h.create("web-1", "i-bp1alreadygone1", json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    h.sim.remove_instance("i-bp1alreadygone1").await;
    h.delete("web-1").await;
    h.wait_gone("web-1").await;
    assert!(h.calls("DeleteInstance", None).await.is_empty());
    let (_, _, note) = h.wait_for_event("web-1", "NotFound").await;
    assert!(note.contains("no longer exists"), "{note}");
}

/// Every DeleteInstance error the seed page lists (and deletion protection): the documented
/// condition, the finalizer kept, then release once the cause is cleared in the simulator.
#[tokio::test]
async fn each_delete_instance_error_gives_its_condition_and_clears_with_its_cause() {
    // Slow transitions, so the Stopping instance stays Stopping until the test moves it on.
    let h = Harness::start_with("errors", &["--transition-ms", "20000"], fast_timings()).await;
    // (name, instance, setup, spec, condition, reason, how to clear the cause)
    let cases = [
        // Stopping + Force: ECS refuses with IncorrectInstanceStatus until it is Stopped.
        (
            "status",
            "i-bp1errstatus01",
            json!({ "status": "Stopping" }),
            json!({ "onDelete": { "force": true } }),
            RECONCILING,
            "IncorrectInstanceStatus",
            json!({ "status": "Stopped" }),
        ),
        (
            "route",
            "i-bp1errroute001",
            json!({ "status": "Stopped", "routeEntry": true }),
            json!({}),
            STALLED,
            "DependencyViolationRouteEntry",
            json!({ "routeEntry": false }),
        ),
        (
            "slb",
            "i-bp1errslb00001",
            json!({ "status": "Stopped", "slbConfiguring": true }),
            json!({}),
            RECONCILING,
            "DependencyViolationSLBConfiguring",
            json!({ "slbConfiguring": false }),
        ),
        (
            "charge",
            "i-bp1errcharge01",
            json!({ "status": "Stopped", "chargeType": "PrePaid" }),
            json!({}),
            STALLED,
            "ChargeTypeViolation",
            json!({ "chargeType": "PostPaid" }),
        ),
        (
            "init",
            "i-bp1errinit0001",
            json!({ "status": "Stopped", "initializing": true }),
            json!({}),
            RECONCILING,
            "IncorrectInstanceStatusInitializing",
            json!({ "initializing": false }),
        ),
        (
            "locked",
            "i-bp1errlocked01",
            json!({ "status": "Stopped", "lockReasons": ["security"] }),
            json!({}),
            STALLED,
            "InstanceLockedForSecurity",
            json!({ "lockReasons": [] }),
        ),
        (
            "protect",
            "i-bp1errprotect1",
            json!({ "status": "Stopped", "deletionProtection": true }),
            json!({}),
            STALLED,
            "InvalidOperationDeletionProtection",
            json!({ "deletionProtection": false }),
        ),
    ];
    for (name, id, setup, spec, ..) in &cases {
        h.seed(id, setup.clone()).await;
        h.create(name, id, spec.clone()).await;
        h.wait_for(name, "the finalizer", |r| r.metadata.finalizers.is_some())
            .await;
        h.delete(name).await;
    }
    for (name, id, _, _, condition, reason, _) in &cases {
        let held = h.wait_for_condition(name, condition, "True", reason).await;
        assert!(
            has_condition(&held, READY, "False", reason),
            "{name}: Ready mirrors the reason"
        );
        assert!(
            has_condition(&held, RELEASED, "False", "Releasing"),
            "{name}"
        );
        let last = held
            .status
            .as_ref()
            .and_then(|s| s.last_error.clone())
            .expect("lastError");
        assert_eq!(last.action, "DeleteInstance", "{name}");
        assert!(last.request_id.is_some(), "{name}: RequestId recorded");
        let message = condition_message(&held, condition);
        assert!(
            message.contains(last.code.as_deref().unwrap())
                && message.contains(last.request_id.as_deref().unwrap()),
            "{name}: {message}"
        );
        assert!(
            held.metadata
                .finalizers
                .unwrap_or_default()
                .contains(&FINALIZER.to_string()),
            "{name}: finalizer kept"
        );
        assert!(
            h.sim
                .instance(id)
                .await
                .is_some_and(|i| i["released"] == false),
            "{name}: not released"
        );
        let (kind, _, _) = h.wait_for_event(name, reason).await;
        assert_eq!(kind, "Warning", "{name}");
    }
    for (name, id, _, _, _, _, clear) in &cases {
        h.sim.patch_instance(id, clear.clone()).await;
        h.wait_gone(name).await;
        let deletes = h.calls("DeleteInstance", Some(id)).await;
        assert_eq!(
            deletes.iter().filter(|c| call_succeeded(c)).count(),
            1,
            "{name}: released once"
        );
    }
}

#[tokio::test]
async fn invalid_parameter_stalls_and_not_found_from_delete_means_released() {
    let h = Harness::start("params").await;
    // Accepted by the CRD's pattern, refused by ECS as malformed.
    h.seed("i-abc", json!({ "status": "Stopped" })).await;
    h.create("short-id", "i-abc", json!({})).await;
    h.wait_for("short-id", "the finalizer", |r| {
        r.metadata.finalizers.is_some()
    })
    .await;
    h.delete("short-id").await;
    h.wait_for_condition("short-id", STALLED, "True", "InvalidParameter")
        .await;
    h.sim.remove_instance("i-abc").await;
    h.wait_gone("short-id").await;

    // Released by someone else moments ago: still listed as Stopped, but DeleteInstance says
    // InvalidInstanceId.NotFound, which means released.
    h.seed("i-bp1elsewhere01", json!({ "status": "Stopped" }))
        .await;
    h.create("elsewhere", "i-bp1elsewhere01", json!({})).await;
    h.wait_for_condition("elsewhere", READY, "True", "InstanceObserved")
        .await;
    let other = ecs_client::EcsClient::new(ecs_client::ClientConfig {
        endpoint_override: Some(h.sim.endpoint().to_string()),
        ..Default::default()
    })
    .unwrap();
    let creds = ecs_client::Credentials::new(
        testkit::sim::ACCESS_KEY_ID,
        testkit::sim::ACCESS_KEY_SECRET,
        None,
    );
    let request = ecs_client::DeleteInstance {
        instance_id: "i-bp1elsewhere01".into(),
        force: false,
        force_stop: None,
        terminate_subscription: false,
        dry_run: false,
    };
    other
        .delete_instance(support::REGION, &creds, &request)
        .await
        .expect("out-of-band release");
    h.delete("elsewhere").await;
    h.wait_gone("elsewhere").await;
}

#[tokio::test]
async fn throttling_and_server_errors_end_in_release() {
    let h = Harness::start("storm").await;
    let ids = h.ready_instances("i-bp1storm", 6, "Stopped").await;
    h.sim
        .set_faults(json!([
            { "throttleQps": 2.0 },
            { "action": "DeleteInstance", "errorRate": 0.5, "errorCode": "ServiceUnavailable" },
            { "action": "DescribeInstances", "errorRate": 0.3, "errorCode": "InternalError" },
        ]))
        .await;
    for n in 0..ids.len() {
        h.delete(&format!("web-{n}")).await;
    }
    for n in 0..ids.len() {
        h.wait_gone(&format!("web-{n}")).await;
    }
    let all = h.sim.calls(None).await;
    let throttled = all
        .iter()
        .filter(|c| c["code"] == "Throttling.User")
        .count();
    let failed = all
        .iter()
        .filter(|c| c["code"] == "ServiceUnavailable" || c["code"] == "InternalError")
        .count();
    assert!(
        throttled + failed > 0,
        "the storm happened: {} calls",
        all.len()
    );
    for id in &ids {
        let released = h
            .calls("DeleteInstance", Some(id))
            .await
            .into_iter()
            .filter(call_succeeded)
            .count();
        assert_eq!(released, 1, "{id}: exactly one successful release");
    }
}

#[tokio::test]
async fn rejected_credentials_stall_until_the_secret_is_fixed() {
    // A long recheck proves the fix is picked up through the Secret watch, not a timer.
    let timings = ecs_instance_controller::pacing::Timings {
        recheck: Duration::from_secs(120),
        ..fast_timings()
    };
    let h = Harness::start_with("creds", &[], timings).await;
    h.seed("i-bp1creds000001", json!({ "status": "Stopped" }))
        .await;
    let secrets: kube::Api<Secret> = kube::Api::namespaced(h.ns.client.clone(), &h.ns.name);
    h.create(
        "web-1",
        "i-bp1creds000001",
        json!({ "credentialsRef": { "name": "ecs-credentials" } }),
    )
    .await;
    let missing = h
        .wait_for_condition("web-1", STALLED, "True", "CredentialsUnavailable")
        .await;
    let message = condition_message(&missing, STALLED);
    assert!(
        message.contains("does not exist") && message.contains("ecs-credentials"),
        "{message}"
    );

    h.create_credentials_secret("ecs-credentials", "testid", "not-the-secret")
        .await;
    let rejected = h
        .wait_for_condition("web-1", STALLED, "True", "CredentialsRejected")
        .await;
    let last = rejected.status.unwrap().last_error.unwrap();
    assert_eq!(last.code.as_deref(), Some("SignatureDoesNotMatch"));
    assert!(
        !format!("{last:?}").contains("not-the-secret"),
        "the secret never reaches the status"
    );

    h.delete("web-1").await;
    h.wait_for_condition("web-1", STALLED, "True", "CredentialsRejected")
        .await;
    let fixed = json!({ "data": { "accessKeySecret": ByteString(b"testsecret".to_vec()) } });
    secrets
        .patch(
            "ecs-credentials",
            &PatchParams::default(),
            &Patch::Merge(&fixed),
        )
        .await
        .unwrap();
    h.wait_gone("web-1").await;
    assert_eq!(
        h.calls("DeleteInstance", None)
            .await
            .into_iter()
            .filter(call_succeeded)
            .count(),
        1
    );
    let events = h.events("web-1").await;
    assert!(
        events
            .iter()
            .all(|(_, _, note)| !note.contains("not-the-secret")),
        "no secret in events"
    );
}

#[tokio::test]
async fn orphan_makes_no_cloud_call_and_unblocks_a_stuck_deletion() {
    let h = Harness::start("orphan").await;
    h.seed("i-bp1orphan00001", json!({ "status": "Running" }))
        .await;
    h.create(
        "kept",
        "i-bp1orphan00001",
        json!({ "deletionPolicy": "Orphan", "onDelete": { "stop": "Stop" } }),
    )
    .await;
    h.wait_for_condition("kept", READY, "True", "InstanceObserved")
        .await;
    h.sim.clear_calls().await;
    h.delete("kept").await;
    h.wait_gone("kept").await;
    let actions: Vec<String> = h
        .sim
        .calls(None)
        .await
        .iter()
        .map(|c| c["action"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        actions
            .iter()
            .all(|a| a == "DescribeInstances" || a == "UntagResources"),
        "Orphan only looks and removes our tags: {actions:?}"
    );
    assert!(actions.iter().any(|a| a == "UntagResources"), "{actions:?}");
    assert_eq!(
        h.sim.instance("i-bp1orphan00001").await.unwrap()["status"],
        "Running"
    );
    h.wait_for_event("kept", "Orphaned").await;

    // A deletion stuck on a route entry is released from Kubernetes by switching to Orphan.
    h.seed(
        "i-bp1orphan00002",
        json!({ "status": "Stopped", "routeEntry": true }),
    )
    .await;
    h.create("stuck", "i-bp1orphan00002", json!({})).await;
    h.wait_for("stuck", "the finalizer", |r| {
        r.metadata.finalizers.is_some()
    })
    .await;
    h.delete("stuck").await;
    h.wait_for_condition("stuck", STALLED, "True", "DependencyViolationRouteEntry")
        .await;
    let deletes_before = h
        .calls("DeleteInstance", Some("i-bp1orphan00002"))
        .await
        .len();
    h.patch_spec("stuck", json!({ "deletionPolicy": "Orphan" }))
        .await;
    h.wait_gone("stuck").await;
    let deletes_after = h
        .calls("DeleteInstance", Some("i-bp1orphan00002"))
        .await
        .len();
    assert!(
        deletes_after <= deletes_before + 1,
        "at most a pass already in flight"
    );
    assert!(
        h.sim
            .instance("i-bp1orphan00002")
            .await
            .is_some_and(|i| i["released"] == false)
    );
}

#[tokio::test]
async fn a_restart_between_release_and_finalizer_removal_does_not_release_twice() {
    // The release stays visible for 3 s, so the controller is still polling when it is killed.
    let mut h =
        Harness::start_with("restart", &["--release-linger-ms", "3000"], fast_timings()).await;
    h.seed("i-bp1restart0001", json!({ "status": "Stopped" }))
        .await;
    h.create("web-1", "i-bp1restart0001", json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    h.delete("web-1").await;
    h.wait_for_condition("web-1", RELEASED, "True", "ReleaseRequested")
        .await;
    h.kill_controller().await;
    assert!(
        h.api.get_opt("web-1").await.unwrap().is_some(),
        "killed before the finalizer was removed"
    );

    h.start_controller(fast_timings());
    h.wait_gone("web-1").await;
    let deletes = h.calls("DeleteInstance", None).await;
    assert_eq!(
        deletes.len(),
        1,
        "the restarted controller did not release again: {deletes:#?}"
    );
}

#[tokio::test]
async fn a_missing_instance_is_reported_without_an_error_loop() {
    let h = Harness::start("missing").await;
    h.create("ghost", "i-bp1nonexistent1", json!({})).await;
    let missing = h
        .wait_for_condition("ghost", READY, "False", "InstanceNotFound")
        .await;
    assert!(has_condition(&missing, STALLED, "True", "InstanceNotFound"));
    assert!(missing.status.unwrap().last_error.is_none(), "not an error");
    let before = h
        .calls("DescribeInstances", Some("i-bp1nonexistent1"))
        .await
        .len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = h
        .calls("DescribeInstances", Some("i-bp1nonexistent1"))
        .await
        .len();
    // The recheck is 1 s (±20%) in these tests: a loop would make dozens of calls.
    assert!(after - before <= 5, "{} describes in 3 s", after - before);
    assert!(
        h.events("ghost")
            .await
            .iter()
            .all(|(kind, _, _)| kind != "Warning")
    );
}

/// `kubectl delete` (real kubectl, default `--wait=true`) returns only once the instance is
/// released and the finalizer removed.
#[tokio::test]
async fn kubectl_delete_blocks_until_the_instance_is_released() {
    let h = Harness::start("kubectl").await;
    h.seed("i-bp1kubectl0001", json!({ "status": "Running" }))
        .await;
    h.create("web-1", "i-bp1kubectl0001", json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;

    let plane = testkit::control_plane();
    let mut kubectl = tokio::process::Command::new(plane.kubectl())
        .arg(format!("--kubeconfig={}", plane.kubeconfig.display()))
        .args([
            "delete",
            "ecsinstance",
            "web-1",
            "-n",
            &h.ns.name,
            "--timeout=60s",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start kubectl");
    h.wait_for_condition("web-1", RECONCILING, "True", "WaitingForStopped")
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        kubectl.try_wait().unwrap().is_none(),
        "kubectl delete is still waiting while the instance runs"
    );

    h.sim
        .patch_instance("i-bp1kubectl0001", json!({ "status": "Stopped" }))
        .await;
    let output = tokio::time::timeout(Duration::from_secs(30), kubectl.wait_with_output())
        .await
        .expect("kubectl delete returned once released")
        .expect("kubectl ran");
    assert!(
        output.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("deleted"));
    assert!(h.api.get_opt("web-1").await.unwrap().is_none());
    assert!(
        h.sim
            .instance("i-bp1kubectl0001")
            .await
            .is_none_or(|i| i["released"] == true)
    );
}

#[tokio::test]
async fn a_release_that_stays_listed_is_reported_then_confirmed() {
    // The simulator keeps the released instance listed for 6 s; the controller expects it gone
    // within 1 s of the accepted DeleteInstance.
    let timings = ecs_instance_controller::pacing::Timings {
        release_timeout: Duration::from_secs(1),
        ..fast_timings()
    };
    let h = Harness::start_with("slowrelease", &["--release-linger-ms", "6000"], timings).await;
    h.seed("i-bp1slowrel00001", json!({ "status": "Stopped" }))
        .await;
    h.create("web-1", "i-bp1slowrel00001", json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    h.delete("web-1").await;
    let stalled = h
        .wait_for_condition("web-1", STALLED, "True", "ReleaseNotConfirmed")
        .await;
    assert!(has_condition(
        &stalled,
        RELEASED,
        "True",
        "ReleaseRequested"
    ));
    h.wait_gone("web-1").await;
    assert_eq!(
        h.calls("DeleteInstance", None).await.len(),
        1,
        "never asked twice"
    );
}

/// A person clears the cause of a Stalled deletion and annotates the resource: the controller
/// looks at once instead of after the recheck period.
#[tokio::test]
async fn the_recheck_annotation_asks_for_a_look_now() {
    let timings = ecs_instance_controller::pacing::Timings {
        recheck: Duration::from_secs(300),
        recheck_first: Duration::from_secs(120),
        ..fast_timings()
    };
    let h = Harness::start_with("recheck", &[], timings).await;
    let id = "i-bp1recheck0001";
    h.seed(id, json!({ "status": "Stopped", "routeEntry": true }))
        .await;
    h.create("web-1", id, json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    h.delete("web-1").await;
    let stalled = h
        .wait_for_condition("web-1", STALLED, "True", "DependencyViolationRouteEntry")
        .await;
    let message = condition_message(&stalled, STALLED);
    assert!(
        message.contains("route entries") && message.contains("ecs.alicloud.dev/recheck"),
        "says what to do and how to ask for a look: {message}"
    );
    // A look while the cause is still there: the same refusal again, and no release intent is
    // left behind in the status by the DeleteInstance that was refused.
    let again = json!({ "metadata": { "annotations": { "ecs.alicloud.dev/recheck": "0" } } });
    h.api
        .patch("web-1", &PatchParams::default(), &Patch::Merge(&again))
        .await
        .expect("annotate");
    for _ in 0..100 {
        if h.calls("DeleteInstance", Some(id)).await.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(h.calls("DeleteInstance", Some(id)).await.len(), 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let blocked = h.api.get("web-1").await.expect("get");
    assert!(
        blocked.status.and_then(|s| s.release).is_none(),
        "a refused DeleteInstance leaves no release record"
    );
    h.sim
        .patch_instance(id, json!({ "routeEntry": false }))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        h.api.get_opt("web-1").await.unwrap().is_some(),
        "nothing happens before the (long) recheck"
    );
    let annotate = json!({ "metadata": { "annotations": { "ecs.alicloud.dev/recheck": "1" } } });
    h.api
        .patch("web-1", &PatchParams::default(), &Patch::Merge(&annotate))
        .await
        .expect("annotate");
    h.wait_gone("web-1").await;
    assert_eq!(
        h.calls("DeleteInstance", Some(id))
            .await
            .into_iter()
            .filter(call_succeeded)
            .count(),
        1
    );
}
