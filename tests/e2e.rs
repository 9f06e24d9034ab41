//! The main scenarios against a controller running as its own process.
//!
//! - Here and in CI: the real `ecs-instance-controller` binary, started once for this test binary
//!   against the test control plane and one shared `ecs-sim`.
//! - Against a cluster (`scripts/e2e-kind.sh`): when `E2E_SIM_URL` is set, the cluster in
//!   `KUBECONFIG` with the controller deployed from `deploy/`, and the simulator at that URL.
//!
//! Every test uses its own namespace and instance IDs, so they run side by side.

mod support;

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
};

use ecs_instance_controller::conditions::{READY, RECONCILING, STALLED};
use kube::Client;
use serde_json::json;
use support::{Harness, call_succeeded, has_condition, http_get};
use testkit::{TestNamespace, sim::EcsSim};

/// The local setup: one simulator and one controller process for this test binary.
struct LocalEnv {
    sim_endpoint: String,
    metrics_url: String,
    /// The simulator and the controller: they run until this test binary exits.
    _processes: [std::process::Child; 2],
}

static LOCAL: OnceLock<LocalEnv> = OnceLock::new();

fn start_local() -> LocalEnv {
    let plane = testkit::control_plane();
    let mut command = Command::new(testkit::sim::sim_binary());
    command
        .args(testkit::sim::TEST_ARGS)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut sim = testkit::supervisor::spawn_for_test_binary(command).expect("start ecs-sim");
    let mut ready = String::new();
    BufReader::new(sim.stdout.take().expect("piped stdout"))
        .read_line(&mut ready)
        .expect("ecs-sim ready line");
    let sim_endpoint = ready
        .trim()
        .strip_prefix(testkit::sim::READY_PREFIX)
        .expect("ecs-sim ready line")
        .to_string();

    let log: PathBuf = plane.run_dir.join("controller-e2e.log");
    let (controller, metrics_url, health_url) = support::spawn_controller_binary(
        &sim_endpoint,
        (testkit::sim::ACCESS_KEY_ID, testkit::sim::ACCESS_KEY_SECRET),
        &["--log-format=json"],
        &log,
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(support::wait_ready(&health_url, &log));
    LocalEnv {
        sim_endpoint,
        metrics_url,
        _processes: [sim, controller],
    }
}

/// A namespace and the simulator's admin API; `metrics` is the controller's endpoint when local.
async fn harness(prefix: &str) -> (Harness, Option<String>) {
    if let Ok(sim_url) = std::env::var("E2E_SIM_URL") {
        let client = Client::try_default().await.expect("KUBECONFIG");
        let name = format!("e2e-{prefix}-{}-{}", std::process::id(), next());
        testkit::create_namespace(&client, &name).await;
        return (
            Harness::attached(TestNamespace { client, name }, EcsSim::attach(&sim_url)),
            None,
        );
    }
    let local = tokio::task::spawn_blocking(|| LOCAL.get_or_init(start_local))
        .await
        .expect("local e2e setup");
    let ns = testkit::test_namespace(prefix).await;
    (
        Harness::attached(ns, EcsSim::attach(&local.sim_endpoint)),
        Some(local.metrics_url.clone()),
    )
}

fn next() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Instance IDs unique across runs against a long-lived cluster and simulator.
fn instance_id(tag: &str) -> String {
    format!("i-e2e{tag}{:x}{}", std::process::id(), next())
}

#[tokio::test]
async fn a_stopped_instance_is_released_and_counted() {
    let (h, metrics) = harness("release").await;
    let id = instance_id("rel");
    h.seed(&id, json!({ "status": "Stopped" })).await;
    h.create("web-1", &id, json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    h.delete("web-1").await;
    h.wait_gone("web-1").await;

    let deletes = h.calls("DeleteInstance", Some(&id)).await;
    assert_eq!(deletes.len(), 1, "{deletes:#?}");
    assert!(call_succeeded(&deletes[0]));
    let reasons = h.event_reasons("web-1").await;
    assert!(
        reasons.contains(&"ReleaseRequested".to_string())
            && reasons.contains(&"Released".to_string()),
        "{reasons:?}"
    );

    if let Some(url) = metrics {
        let (status, text) = http_get(&url).await.expect("metrics endpoint answers");
        assert_eq!(status, 200);
        for needle in [
            r#"ecs_instance_controller_ecs_requests_total{action="DeleteInstance",code="OK"}"#,
            r#"ecs_instance_controller_ecs_requests_total{action="DescribeInstances",code="OK"}"#,
            "ecs_instance_controller_release_duration_seconds_count",
            "ecs_instance_controller_reconciles_total",
        ] {
            assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
        }
    }
}

#[tokio::test]
async fn deletion_waits_for_stopped_then_releases() {
    let (h, _) = harness("wait").await;
    let id = instance_id("wait");
    h.seed(&id, json!({ "status": "Running" })).await;
    h.create("web-1", &id, json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    h.delete("web-1").await;
    h.wait_for_condition("web-1", RECONCILING, "True", "WaitingForStopped")
        .await;
    assert!(h.calls("DeleteInstance", Some(&id)).await.is_empty());
    h.sim
        .patch_instance(&id, json!({ "status": "Stopped" }))
        .await;
    h.wait_gone("web-1").await;
    assert_eq!(h.calls("DeleteInstance", Some(&id)).await.len(), 1);
}

#[tokio::test]
async fn stop_policy_stops_then_releases() {
    let (h, _) = harness("stop").await;
    let id = instance_id("stop");
    h.seed(&id, json!({ "status": "Running" })).await;
    h.create("web-1", &id, json!({ "onDelete": { "stop": "Stop" } }))
        .await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    h.delete("web-1").await;
    h.wait_gone("web-1").await;
    assert_eq!(h.calls("StopInstance", Some(&id)).await.len(), 1);
    assert_eq!(h.calls("DeleteInstance", Some(&id)).await.len(), 1);
}

#[tokio::test]
async fn a_blocked_release_is_stalled_until_the_cause_is_cleared() {
    let (h, metrics) = harness("blocked").await;
    let id = instance_id("route");
    h.seed(&id, json!({ "status": "Stopped", "routeEntry": true }))
        .await;
    h.create("web-1", &id, json!({})).await;
    h.wait_for("web-1", "the finalizer", |r| {
        r.metadata.finalizers.is_some()
    })
    .await;
    h.delete("web-1").await;
    let stalled = h
        .wait_for_condition("web-1", STALLED, "True", "DependencyViolationRouteEntry")
        .await;
    assert!(has_condition(
        &stalled,
        READY,
        "False",
        "DependencyViolationRouteEntry"
    ));
    if let Some(url) = metrics {
        let (_, text) = http_get(&url).await.expect("metrics endpoint answers");
        assert!(
            text.contains(r#"code="DependencyViolation.RouteEntry""#),
            "{text}"
        );
        assert!(text.contains(r#"ecs_instance_controller_reconcile_failures_total{reason="DependencyViolationRouteEntry"}"#));
    }
    h.sim
        .patch_instance(&id, json!({ "routeEntry": false }))
        .await;
    h.wait_gone("web-1").await;
}

#[tokio::test]
async fn orphan_leaves_the_instance_alone() {
    let (h, _) = harness("orphan").await;
    let id = instance_id("orph");
    h.seed(&id, json!({ "status": "Running" })).await;
    h.create("web-1", &id, json!({ "deletionPolicy": "Orphan" }))
        .await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    h.delete("web-1").await;
    h.wait_gone("web-1").await;
    assert!(h.calls("StopInstance", Some(&id)).await.is_empty());
    assert!(h.calls("DeleteInstance", Some(&id)).await.is_empty());
    assert_eq!(
        h.sim.instance(&id).await.expect("still there")["status"],
        "Running"
    );
}

#[tokio::test]
async fn a_missing_instance_reads_instance_not_found() {
    let (h, _) = harness("missing").await;
    h.create("ghost", &instance_id("ghost"), json!({})).await;
    h.wait_for_condition("ghost", READY, "False", "InstanceNotFound")
        .await;
}
