//! kstatus (sigs.k8s.io/cli-utils `pkg/kstatus`): the status Flux `wait`/`healthChecks`, kpt and
//! cli-utils compute for any resource. Its `Compute` rules, applied to `EcsInstance` resources as
//! the real API server returns them (untyped JSON) while the real controller runs, in each state
//! an operator meets: observed, stalled, spec not yet observed, retrying, being deleted. Plus what
//! `kubectl wait --for=condition=Ready` needs: no stale `observedGeneration` anywhere.

mod support;

use ecs_instance_controller::{
    EcsInstance,
    conditions::{READY, RECONCILING, STALLED},
};
use kube::{
    Api,
    api::{ApiResource, DynamicObject},
};
use serde_json::{Value, json};
use support::{Harness, fast_timings};

/// kstatus statuses (`Unknown` is for resources `Compute` cannot read; not needed here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KStatus {
    InProgress,
    Failed,
    Current,
    Terminating,
    NotFound,
}

/// kstatus `Compute` for a custom resource (no built-in type rules apply), in its order.
fn compute(resource: &Value) -> KStatus {
    let metadata = &resource["metadata"];
    let status = &resource["status"];
    if metadata["deletionTimestamp"]
        .as_str()
        .is_some_and(|t| !t.is_empty())
    {
        return KStatus::Terminating;
    }
    // Only when the status has the field (`LatestGenerationNotObserved`).
    let observed = &status["observedGeneration"];
    if !observed.is_null() && *observed != metadata["generation"] {
        return KStatus::InProgress;
    }
    let condition = |type_: &str| {
        status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == type_)
            .and_then(|c| c["status"].as_str())
    };
    if condition("Reconciling") == Some("True") {
        return KStatus::InProgress;
    }
    if condition("Stalled") == Some("True") {
        return KStatus::Failed;
    }
    // The Ready fallback; no Ready condition at all is Current.
    match condition("Ready") {
        None | Some("True") => KStatus::Current,
        Some(_) => KStatus::InProgress,
    }
}

/// The resource as the API server returns it (untyped) and its kstatus; `NotFound` once gone.
async fn read(h: &Harness, name: &str) -> (KStatus, Value) {
    let api: Api<DynamicObject> = Api::namespaced_with(
        h.ns.client.clone(),
        &h.ns.name,
        &ApiResource::erase::<EcsInstance>(&()),
    );
    match api.get_opt(name).await.expect("get EcsInstance") {
        Some(object) => {
            let value = serde_json::to_value(object).expect("JSON");
            (compute(&value), value)
        }
        None => (KStatus::NotFound, Value::Null),
    }
}

async fn assert_kstatus(h: &Harness, name: &str, expected: KStatus) -> Value {
    let (status, value) = read(h, name).await;
    assert_eq!(status, expected, "{name}: {value:#}");
    value
}

/// `kubectl wait --for=condition=...` treats a condition as not yet met while the top-level or
/// the condition's own `observedGeneration` is below `metadata.generation` (kubernetes#97408).
fn assert_generation_observed_everywhere(resource: &Value) {
    let generation = &resource["metadata"]["generation"];
    assert!(generation.is_u64(), "{resource:#}");
    assert_eq!(
        resource["status"]["observedGeneration"], *generation,
        "status.observedGeneration: {resource:#}"
    );
    let conditions = resource["status"]["conditions"]
        .as_array()
        .expect("status.conditions");
    let mut types: Vec<&str> = conditions
        .iter()
        .filter_map(|c| c["type"].as_str())
        .collect();
    types.sort_unstable();
    assert_eq!(types, ["Ready", "Reconciling", "Released", "Stalled"]);
    for condition in conditions {
        assert_eq!(
            condition["observedGeneration"], *generation,
            "observedGeneration of {condition}"
        );
    }
}

/// Real `kubectl wait --for=condition=Ready`; true when it saw the condition within `timeout`.
async fn kubectl_wait_ready(h: &Harness, name: &str, timeout: &str) -> bool {
    let plane = testkit::control_plane();
    let output = tokio::process::Command::new(plane.kubectl())
        .arg(format!("--kubeconfig={}", plane.kubeconfig.display()))
        .args(["wait", &format!("ecsinstance/{name}"), "-n", &h.ns.name])
        .args(["--for=condition=Ready", &format!("--timeout={timeout}")])
        .output()
        .await
        .expect("run kubectl");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() || stderr.contains("timed out"),
        "kubectl wait failed for another reason: {stderr}"
    );
    output.status.success()
}

#[test]
fn compute_applies_the_rules_in_kstatus_order() {
    let condition = |type_: &str, status: &str| json!({ "type": type_, "status": status });
    let resource = |deleting: bool, observed: Option<i64>, conditions: Vec<Value>| {
        let mut value = json!({
            "metadata": { "name": "web-1", "generation": 2 },
            "status": { "conditions": conditions },
        });
        if deleting {
            value["metadata"]["deletionTimestamp"] = json!("2026-01-02T03:04:05Z");
        }
        if let Some(observed) = observed {
            value["status"]["observedGeneration"] = json!(observed);
        }
        value
    };
    let stalled = condition("Stalled", "True");
    let cases = [
        (
            resource(true, Some(1), vec![stalled.clone()]),
            KStatus::Terminating,
        ),
        (
            resource(false, Some(1), vec![condition("Ready", "True")]),
            KStatus::InProgress,
        ),
        (
            resource(false, None, vec![condition("Ready", "True")]),
            KStatus::Current,
        ),
        (
            resource(
                false,
                Some(2),
                vec![condition("Reconciling", "True"), stalled.clone()],
            ),
            KStatus::InProgress,
        ),
        (
            resource(
                false,
                Some(2),
                vec![condition("Ready", "False"), stalled.clone()],
            ),
            KStatus::Failed,
        ),
        (
            resource(false, Some(2), vec![condition("Ready", "False")]),
            KStatus::InProgress,
        ),
        (resource(false, Some(2), vec![]), KStatus::Current),
        (json!({ "metadata": { "generation": 1 } }), KStatus::Current),
    ];
    for (value, expected) in cases {
        assert_eq!(compute(&value), expected, "{value:#}");
    }
}

/// Current once observed; a spec change the controller has not seen yet is InProgress (and
/// `kubectl wait` agrees: it does not return while the generation is not observed), Current again
/// once a restarted controller observed it.
#[tokio::test]
async fn current_when_observed_and_in_progress_until_a_spec_change_is_observed() {
    let mut h = Harness::start("kstatus-current").await;
    h.seed("i-bp1kscurrent01", json!({ "status": "Running" }))
        .await;
    h.create("web-1", "i-bp1kscurrent01", json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    let current = assert_kstatus(&h, "web-1", KStatus::Current).await;
    assert_eq!(current["metadata"]["generation"], 1);
    assert_generation_observed_everywhere(&current);

    h.kill_controller().await;
    h.patch_spec("web-1", json!({ "onDelete": { "stop": "Stop" } }))
        .await;
    let pending = assert_kstatus(&h, "web-1", KStatus::InProgress).await;
    assert_eq!(pending["metadata"]["generation"], 2);
    assert_eq!(pending["status"]["observedGeneration"], 1);
    assert!(
        !kubectl_wait_ready(&h, "web-1", "2s").await,
        "kubectl wait must not accept the Ready of generation 1"
    );

    h.start_controller(fast_timings());
    h.wait_for("web-1", "generation 2 observed", |r| {
        r.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
    })
    .await;
    let current = assert_kstatus(&h, "web-1", KStatus::Current).await;
    assert_generation_observed_everywhere(&current);
    assert!(kubectl_wait_ready(&h, "web-1", "10s").await);
}

/// Stalled resources read as Failed: a missing instance, and credentials ECS rejects.
#[tokio::test]
async fn a_missing_instance_and_rejected_credentials_are_failed() {
    let h = Harness::start("kstatus-failed").await;
    h.create("ghost", "i-bp1ksmissing001", json!({})).await;
    h.wait_for_condition("ghost", STALLED, "True", "InstanceNotFound")
        .await;
    let ghost = assert_kstatus(&h, "ghost", KStatus::Failed).await;
    assert_generation_observed_everywhere(&ghost);

    h.seed("i-bp1kswrongkey1", json!({ "status": "Running" }))
        .await;
    h.create_credentials_secret("wrong-credentials", "testid", "not-the-secret")
        .await;
    h.create(
        "web-1",
        "i-bp1kswrongkey1",
        json!({ "credentialsRef": { "name": "wrong-credentials" } }),
    )
    .await;
    h.wait_for_condition("web-1", STALLED, "True", "CredentialsRejected")
        .await;
    let rejected = assert_kstatus(&h, "web-1", KStatus::Failed).await;
    assert_generation_observed_everywhere(&rejected);
}

/// A transient DescribeInstances failure is InProgress (Reconciling, Retrying), not Failed;
/// Current again once ECS answers.
#[tokio::test]
async fn transient_describe_failures_are_in_progress_then_current() {
    let h = Harness::start("kstatus-retry").await;
    h.seed("i-bp1ksretry0001", json!({ "status": "Running" }))
        .await;
    h.create("web-1", "i-bp1ksretry0001", json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    assert_kstatus(&h, "web-1", KStatus::Current).await;

    h.sim
        .set_faults(json!([{ "action": "DescribeInstances", "errorRate": 1.0 }]))
        .await;
    h.wait_for_condition("web-1", RECONCILING, "True", "Retrying")
        .await;
    let retrying = assert_kstatus(&h, "web-1", KStatus::InProgress).await;
    assert_eq!(
        retrying["status"]["lastError"]["code"], "ServiceUnavailable",
        "{retrying:#}"
    );

    h.sim.clear_faults().await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    let current = assert_kstatus(&h, "web-1", KStatus::Current).await;
    assert_generation_observed_everywhere(&current);
}

/// A deletion waiting for the instance to stop is Terminating (not InProgress or Failed), and
/// the resource is NotFound once the instance is released.
#[tokio::test]
async fn a_deletion_waiting_for_stopped_is_terminating() {
    let h = Harness::start("kstatus-deleting").await;
    h.seed("i-bp1ksdelete001", json!({ "status": "Running" }))
        .await;
    h.create("web-1", "i-bp1ksdelete001", json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;

    h.delete("web-1").await;
    h.wait_for_condition("web-1", RECONCILING, "True", "WaitingForStopped")
        .await;
    let terminating = assert_kstatus(&h, "web-1", KStatus::Terminating).await;
    // The deletion bumped the generation; the controller's status speaks about it.
    assert_eq!(terminating["metadata"]["generation"], 2);
    assert_generation_observed_everywhere(&terminating);

    h.sim
        .patch_instance("i-bp1ksdelete001", json!({ "status": "Stopped" }))
        .await;
    h.wait_gone("web-1").await;
    assert_kstatus(&h, "web-1", KStatus::NotFound).await;
}
