//! GitOps verdicts on `EcsInstance` resources as the real controller writes them (the real API
//! server and the ECS simulator, the controller in-process), judged by the real tools, never by
//! our own copy of their rules (`tools/gitops-check`, built by `scripts/build-gitops-check.sh`):
//!
//! - kstatus: `sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute`, what Flux `wait`/`healthChecks`
//!   (through the fluxcd fork, same rules), kpt and cli-utils compute for any resource;
//! - Argo CD: `gitops/argocd/.../health.lua` run by `argolua`, Argo CD v3.6.1's Lua runtime and
//!   health assessment for a check installed in argocd-cm.
//!
//! In each state an operator meets: not yet seen by the controller, observed, stalled, spec not
//! yet observed, retrying, being deleted (before the controller saw it, waiting for Stopped,
//! stalled, released), gone. Plus what `kubectl wait --for=condition=Ready` needs: no stale
//! `observedGeneration` anywhere.

mod support;

use std::path::Path;

use ecs_instance_controller::{
    EcsInstance,
    conditions::{READY, RECONCILING, RELEASED, STALLED},
};
use kube::{
    Api,
    api::{ApiResource, DynamicObject},
};
use serde_json::{Value, json};
use support::{Harness, fast_timings};

/// Runs a checker on one object (JSON on stdin); its one JSON line.
fn ask(tool: &str, args: &[&str], object: &Value) -> Value {
    let output = testkit::tools::run_with_input(
        &testkit::gitops::checker(tool),
        args,
        object.to_string().as_bytes(),
    );
    assert!(
        output.status.success(),
        "{tool} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines = stdout.lines();
    let verdict = serde_json::from_str(lines.next().expect("one verdict")).expect("JSON");
    assert!(lines.next().is_none(), "one verdict per object: {stdout}");
    verdict
}

/// kstatus statuses; `NotFound` is what kstatus' pollers report for a resource that is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KStatus {
    InProgress,
    Failed,
    Current,
    Terminating,
    NotFound,
}

/// A resource as the API server returns it (untyped) and the verdicts of the real tools.
struct Judged {
    object: Value,
    kstatus: KStatus,
    kstatus_message: String,
    /// What Argo CD shows: (health status, message).
    argocd: (String, String),
}

impl Judged {
    fn condition_message(&self, type_: &str) -> String {
        self.object["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == type_)
            .and_then(|c| c["message"].as_str())
            .unwrap_or_else(|| panic!("no {type_} message: {:#}", self.object))
            .to_string()
    }

    /// Asserts both verdicts; returns the object.
    fn expect(
        &self,
        kstatus: KStatus,
        kstatus_message: &str,
        argocd_status: &str,
        argocd_message: &str,
    ) -> &Value {
        let object = &self.object;
        assert_eq!(
            (self.kstatus, self.kstatus_message.as_str()),
            (kstatus, kstatus_message),
            "kstatus of {object:#}"
        );
        assert_eq!(
            (self.argocd.0.as_str(), self.argocd.1.as_str()),
            (argocd_status, argocd_message),
            "Argo CD health of {object:#}"
        );
        object
    }
}

fn judge(object: Value) -> Judged {
    let kstatus = ask("kstatus", &[], &object);
    assert!(kstatus["error"].is_null(), "kstatus: {kstatus}");
    let status = match kstatus["status"].as_str() {
        Some("InProgress") => KStatus::InProgress,
        Some("Failed") => KStatus::Failed,
        Some("Current") => KStatus::Current,
        Some("Terminating") => KStatus::Terminating,
        other => panic!("unexpected kstatus {other:?} for {object:#}"),
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("gitops/argocd/ecs.alicloud.dev/EcsInstance/health.lua");
    let argocd = ask(
        "argolua",
        &["eval", script.to_str().expect("UTF-8 path")],
        &object,
    );
    let health = &argocd["health"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    Judged {
        kstatus: status,
        kstatus_message: text(&kstatus["message"]),
        argocd: (text(&health["status"]), text(&health["message"])),
        object,
    }
}

/// The resource as the API server returns it (untyped), judged; `None` once it is gone.
async fn read(h: &Harness, name: &str) -> Option<Judged> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        h.ns.client.clone(),
        &h.ns.name,
        &ApiResource::erase::<EcsInstance>(&()),
    );
    let object = api.get_opt(name).await.expect("get EcsInstance")?;
    Some(judge(serde_json::to_value(object).expect("JSON")))
}

async fn judged(h: &Harness, name: &str) -> Judged {
    read(h, name)
        .await
        .unwrap_or_else(|| panic!("{name} does not exist"))
}

async fn assert_gone(h: &Harness, name: &str) {
    let status = match read(h, name).await {
        Some(judged) => judged.kstatus,
        None => KStatus::NotFound,
    };
    assert_eq!(status, KStatus::NotFound);
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

const SCHEDULED_FOR_DELETION: &str = "Resource scheduled for deletion";

/// Before the controller has seen a resource nothing is stored in its status, and the API server
/// returns the CRD's schema default `{observedGeneration: 0}`: kstatus reads it InProgress (a
/// bare object without a status would read Current: kstatus has nothing to go by), Argo CD
/// Progressing, and `kubectl wait` does not return. Current once observed; a spec change the
/// controller has not seen yet is InProgress (and `kubectl wait` agrees: it does not return
/// while the generation is not observed), Current again once a restarted controller observed it.
#[tokio::test]
async fn current_when_observed_and_in_progress_until_a_spec_change_is_observed() {
    let mut h = Harness::start("kstatus-current").await;
    h.seed("i-bp1kscurrent01", json!({ "status": "Running" }))
        .await;
    h.kill_controller().await;
    let created = h.create("web-1", "i-bp1kscurrent01", json!({})).await;
    let created = serde_json::to_value(created).expect("JSON");
    assert_eq!(
        created["status"],
        json!({ "observedGeneration": 0 }),
        "the create response: {created:#}"
    );
    let unseen = judged(&h, "web-1").await;
    let object = unseen.expect(
        KStatus::InProgress,
        "EcsInstance generation is 1, but latest observed generation is 0",
        "Progressing",
        "Waiting for the controller",
    );
    assert_eq!(object["metadata"]["generation"], 1);
    assert_eq!(
        object["status"],
        json!({ "observedGeneration": 0 }),
        "{object:#}"
    );
    // The default is the only thing that makes it InProgress: without it, Current.
    let mut bare = object.clone();
    bare.as_object_mut().expect("an object").remove("status");
    judge(bare).expect(
        KStatus::Current,
        "Resource is current",
        "Progressing",
        "Waiting for the controller",
    );
    assert!(
        !kubectl_wait_ready(&h, "web-1", "2s").await,
        "kubectl wait must not accept a resource the controller has not seen"
    );

    h.start_controller(fast_timings());
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    let current = judged(&h, "web-1").await;
    let ready = current.condition_message(READY);
    let object = current.expect(KStatus::Current, "Resource is Ready", "Healthy", &ready);
    assert_eq!(object["metadata"]["generation"], 1);
    assert_generation_observed_everywhere(object);

    h.kill_controller().await;
    h.patch_spec("web-1", json!({ "onDelete": { "stop": "Stop" } }))
        .await;
    let pending = judged(&h, "web-1").await;
    let object = pending.expect(
        KStatus::InProgress,
        "EcsInstance generation is 2, but latest observed generation is 1",
        "Progressing",
        "Waiting for the controller to observe generation 2",
    );
    assert_eq!(object["status"]["observedGeneration"], 1);
    assert!(
        !kubectl_wait_ready(&h, "web-1", "2s").await,
        "kubectl wait must not accept the Ready of generation 1"
    );

    h.start_controller(fast_timings());
    h.wait_for("web-1", "generation 2 observed", |r| {
        r.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
    })
    .await;
    let current = judged(&h, "web-1").await;
    let ready = current.condition_message(READY);
    let object = current.expect(KStatus::Current, "Resource is Ready", "Healthy", &ready);
    assert_generation_observed_everywhere(object);
    assert!(kubectl_wait_ready(&h, "web-1", "10s").await);
}

/// Stalled resources read as Failed / Degraded with the condition's message: a missing
/// instance, and credentials ECS rejects. Deleted while the controller is away, a stalled status
/// speaks about the previous generation: Terminating / Progressing "Releasing: ...".
#[tokio::test]
async fn a_missing_instance_and_rejected_credentials_are_failed() {
    let mut h = Harness::start("kstatus-failed").await;
    h.create("ghost", "i-bp1ksmissing001", json!({})).await;
    h.wait_for_condition("ghost", STALLED, "True", "InstanceNotFound")
        .await;
    let ghost = judged(&h, "ghost").await;
    let stalled = ghost.condition_message(STALLED);
    let object = ghost.expect(KStatus::Failed, &stalled, "Degraded", &stalled);
    assert_generation_observed_everywhere(object);

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
    let rejected = judged(&h, "web-1").await;
    let stalled = rejected.condition_message(STALLED);
    let object = rejected.expect(KStatus::Failed, &stalled, "Degraded", &stalled);
    assert_generation_observed_everywhere(object);

    h.kill_controller().await;
    h.delete("web-1").await;
    let deleting = judged(&h, "web-1").await;
    let object = deleting.expect(
        KStatus::Terminating,
        SCHEDULED_FOR_DELETION,
        "Progressing",
        &format!("Releasing: {stalled}"),
    );
    assert_eq!(object["metadata"]["generation"], 2);
    assert_eq!(object["status"]["observedGeneration"], 1);
}

/// A transient DescribeInstances failure is InProgress / Progressing (Reconciling, Retrying),
/// not Failed; Current / Healthy again once ECS answers.
#[tokio::test]
async fn transient_describe_failures_are_in_progress_then_current() {
    let h = Harness::start("kstatus-retry").await;
    h.seed("i-bp1ksretry0001", json!({ "status": "Running" }))
        .await;
    h.create("web-1", "i-bp1ksretry0001", json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    let current = judged(&h, "web-1").await;
    let ready = current.condition_message(READY);
    current.expect(KStatus::Current, "Resource is Ready", "Healthy", &ready);

    h.sim
        .set_faults(json!([{ "action": "DescribeInstances", "errorRate": 1.0 }]))
        .await;
    h.wait_for_condition("web-1", RECONCILING, "True", "Retrying")
        .await;
    let retrying = judged(&h, "web-1").await;
    let reconciling = retrying.condition_message(RECONCILING);
    let object = retrying.expect(
        KStatus::InProgress,
        &reconciling,
        "Progressing",
        &reconciling,
    );
    assert_eq!(
        object["status"]["lastError"]["code"], "ServiceUnavailable",
        "{object:#}"
    );

    h.sim.clear_faults().await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    let current = judged(&h, "web-1").await;
    let ready = current.condition_message(READY);
    let object = current.expect(KStatus::Current, "Resource is Ready", "Healthy", &ready);
    assert_generation_observed_everywhere(object);
}

/// A deletion is Terminating for kstatus throughout (not InProgress or Failed) and Progressing
/// "Releasing: ..." for Argo CD: before the controller saw it, while waiting for the instance to
/// stop, while the accepted release is still listed. NotFound once the instance is released.
#[tokio::test]
async fn a_deletion_waiting_for_stopped_is_terminating() {
    // The released instance stays listed for 3 s, long enough to read ReleaseRequested.
    let mut h = Harness::start_with(
        "kstatus-deleting",
        &["--release-linger-ms", "3000"],
        fast_timings(),
    )
    .await;
    h.seed("i-bp1ksdelete001", json!({ "status": "Running" }))
        .await;
    h.create("web-1", "i-bp1ksdelete001", json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;

    h.kill_controller().await;
    h.delete("web-1").await;
    judged(&h, "web-1").await.expect(
        KStatus::Terminating,
        SCHEDULED_FOR_DELETION,
        "Progressing",
        "Releasing: waiting for the controller",
    );

    h.start_controller(fast_timings());
    h.wait_for_condition("web-1", RECONCILING, "True", "WaitingForStopped")
        .await;
    let waiting = judged(&h, "web-1").await;
    let reconciling = waiting.condition_message(RECONCILING);
    let object = waiting.expect(
        KStatus::Terminating,
        SCHEDULED_FOR_DELETION,
        "Progressing",
        &format!("Releasing: {reconciling}"),
    );
    // The deletion bumped the generation; the controller's status speaks about it.
    assert_eq!(object["metadata"]["generation"], 2);
    assert_generation_observed_everywhere(object);

    h.sim
        .patch_instance("i-bp1ksdelete001", json!({ "status": "Stopped" }))
        .await;
    h.wait_for_condition("web-1", RELEASED, "True", "ReleaseRequested")
        .await;
    let released = judged(&h, "web-1").await;
    let reconciling = released.condition_message(RECONCILING);
    released.expect(
        KStatus::Terminating,
        SCHEDULED_FOR_DELETION,
        "Progressing",
        &format!("Releasing: {reconciling}"),
    );

    h.wait_gone("web-1").await;
    assert_gone(&h, "web-1").await;
}

/// A release ECS refuses until a person acts (a route entry points at the instance) is
/// Terminating for kstatus (which has no failed deletion) and Degraded for Argo CD with the
/// condition's message; released once the cause is gone.
#[tokio::test]
async fn a_deletion_stalled_on_a_route_entry_is_degraded() {
    let h = Harness::start("kstatus-route").await;
    h.seed(
        "i-bp1ksroute0001",
        json!({ "status": "Stopped", "routeEntry": true }),
    )
    .await;
    h.create("web-1", "i-bp1ksroute0001", json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;

    h.delete("web-1").await;
    h.wait_for_condition("web-1", STALLED, "True", "DependencyViolationRouteEntry")
        .await;
    let stalled = judged(&h, "web-1").await;
    let message = stalled.condition_message(STALLED);
    let object = stalled.expect(
        KStatus::Terminating,
        SCHEDULED_FOR_DELETION,
        "Degraded",
        &message,
    );
    assert_generation_observed_everywhere(object);

    h.sim
        .patch_instance("i-bp1ksroute0001", json!({ "routeEntry": false }))
        .await;
    h.wait_gone("web-1").await;
    assert_gone(&h, "web-1").await;
}
