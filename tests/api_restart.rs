//! The real controller binary through kube-apiserver outages: the test control plane's API server
//! is killed (like a crash; etcd keeps running) and started again on the same address with the
//! same certificates and etcd (`testkit::stop_apiserver` / `start_apiserver`).
//!
//! - the watch resumes within 10 s after the API server is back (the figures are printed);
//! - releases in flight when the API server dies happen exactly once, and each resource's final
//!   event names the RequestId of its `DeleteInstance`;
//! - `/healthz` fails while the watch is down longer than `--watch-unhealthy-after`, and recovers.
//!
//! The tests stop the API server that every test of this binary uses, so they take turns.

mod support;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use ecs_instance_controller::EcsInstance;
use kube::{ResourceExt, api::ListParams};
use serde_json::{Value, json};
use support::{Harness, call_mentions, call_succeeded, http_get};
use testkit::sim::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, EcsSim};

/// "The controller resumes within 10 s after the API server is back."
const RESUME_WITHIN: Duration = Duration::from_secs(10);

/// One outage at a time: every test of this binary shares the API server.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The controller binary, killed (by its own PID) when the test ends.
struct Controller {
    child: std::process::Child,
    health: String,
    log: PathBuf,
}

impl Controller {
    /// Watches only the harness's namespace; the watch counts as failing after 3 s.
    async fn start(h: &Harness, name: &str, extra_args: &[&str]) -> Controller {
        let namespaces = format!("--namespaces={}", h.ns.name);
        let mut args = vec![namespaces.as_str(), "--watch-unhealthy-after=3s"];
        args.extend_from_slice(extra_args);
        let log = testkit::control_plane()
            .run_dir
            .join(format!("controller-{name}.log"));
        let (child, _metrics, health) = support::spawn_controller_binary(
            h.sim.endpoint(),
            (ACCESS_KEY_ID, ACCESS_KEY_SECRET),
            &args,
            &log,
        );
        support::wait_ready(&health, &log).await;
        Controller { child, health, log }
    }

    /// The end of its log, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    async fn healthz(&self) -> Option<u16> {
        http_get(&format!("{}/healthz", self.health))
            .await
            .map(|(status, _)| status)
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for this test's turn; the API server runs (again, if an earlier test failed during its
/// outage) when it returns.
async fn take_turn() -> tokio::sync::MutexGuard<'static, ()> {
    let turn = TURN.lock().await;
    testkit::start_apiserver().await;
    turn
}

fn instance_id(tag: &str, i: usize) -> String {
    format!("i-{tag}{i:05}")
}

/// `count` Stopped instances in the simulator and a Ready resource `{tag}-{i}` for each.
async fn ready_resources(h: &Harness, controller: &Controller, tag: &str, count: usize) {
    let instances: Vec<Value> = (0..count)
        .map(|i| {
            json!({
                "instanceId": instance_id(tag, i),
                "regionId": support::REGION,
                "status": "Stopped",
            })
        })
        .collect();
    h.sim.seed(Value::Array(instances)).await;
    for i in 0..count {
        h.create(&format!("{tag}-{i}"), &instance_id(tag, i), json!({}))
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = h
            .api
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .iter()
            .filter(|r| support::has_condition(r, "Ready", "True", "InstanceObserved"))
            .count();
        if ready == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {ready} of {count} resources became Ready within 60 s; controller log:\n{}",
            controller.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn release_request_id(resource: &EcsInstance) -> Option<&str> {
    resource
        .status
        .as_ref()?
        .release
        .as_ref()?
        .request_id
        .as_deref()
}

/// Checks that every instance `{tag}{i}` was released by exactly one successful `DeleteInstance`
/// and that each resource's last event is `Released` with that call's RequestId.
async fn assert_released_once_with_request_id(h: &Harness, tag: &str, count: usize) {
    let deletes = h.sim.calls(Some("DeleteInstance")).await;
    let mut failures = Vec::new();
    for i in 0..count {
        let id = instance_id(tag, i);
        let name = format!("{tag}-{i}");
        let calls: Vec<&Value> = deletes.iter().filter(|c| call_mentions(c, &id)).collect();
        let accepted: Vec<&Value> = calls
            .iter()
            .copied()
            .filter(|c| call_succeeded(c))
            .collect();
        if accepted.len() != 1 {
            failures.push(format!(
                "{name}: {} successful DeleteInstance calls (of {}): {calls:?}",
                accepted.len(),
                calls.len()
            ));
            continue;
        }
        let request_id = accepted[0]["requestId"].as_str().unwrap_or_default();
        let events = h.events(&name).await;
        if let Some((_, _, note)) = events
            .iter()
            .find(|(_, _, note)| note.contains("nothing to release"))
        {
            failures.push(format!(
                "{name}: released by the controller itself, but an event says: {note}"
            ));
        }
        match events.last() {
            Some((_, reason, note))
                if reason == "Released"
                    && note.contains("RequestId")
                    && note.contains(request_id) => {}
            last => failures.push(format!(
                "{name}: the final event is not Released with RequestId {request_id}: {last:?} \
                 (all: {events:?})"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} resources:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The API server is down for 15 s; right after it is ready again, 30 Ready resources are deleted
/// and a new one is created. Measures when the controller acts on them.
#[tokio::test]
async fn the_controller_resumes_within_10s_after_the_api_server_returns() {
    const COUNT: usize = 30;
    let _turn = take_turn().await;
    let h = Harness::attached(
        testkit::test_namespace("resume").await,
        EcsSim::start().await,
    );
    let controller = Controller::start(&h, "resume", &[]).await;
    ready_resources(&h, &controller, "resume", COUNT).await;
    let late_id = instance_id("resume", COUNT);
    h.seed(&late_id, json!({ "status": "Stopped" })).await;
    h.sim.clear_calls().await;

    testkit::stop_apiserver();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let startup = testkit::start_apiserver().await;
    let back = Instant::now();
    for i in 0..COUNT {
        h.delete(&format!("resume-{i}")).await;
    }
    h.create("late", &late_id, json!({})).await;
    let requests_done = back.elapsed();

    let mut new_seen = None; // the new resource has our finalizer
    let mut first_release = None; // a deleted resource records its accepted DeleteInstance
    let mut first_gone = None;
    let mut all_gone = None;
    while all_gone.is_none() || new_seen.is_none() {
        let list = h.api.list(&ListParams::default()).await.expect("list");
        let elapsed = back.elapsed();
        let deleting: Vec<&EcsInstance> = list
            .items
            .iter()
            .filter(|r| r.name_any() != "late")
            .collect();
        if new_seen.is_none()
            && list
                .items
                .iter()
                .any(|r| r.name_any() == "late" && !r.finalizers().is_empty())
        {
            new_seen = Some(elapsed);
        }
        if first_release.is_none()
            && (deleting.len() < COUNT || deleting.iter().any(|r| release_request_id(r).is_some()))
        {
            first_release = Some(elapsed);
        }
        if first_gone.is_none() && deleting.len() < COUNT {
            first_gone = Some(elapsed);
        }
        if all_gone.is_none() && deleting.is_empty() {
            all_gone = Some(elapsed);
        }
        assert!(
            elapsed < Duration::from_secs(90),
            "after 90 s: new resource seen {new_seen:?}, first release {first_release:?}, \
             {} of {COUNT} still there; controller log:\n{}",
            deleting.len(),
            controller.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The loop ends once the last resource is gone and the new one was seen: all are set.
    let [new_seen, first_release, first_gone, all_gone] =
        [new_seen, first_release, first_gone, all_gone].map(|t| t.expect("seen"));
    println!(
        "api-restart figures: kube-apiserver down 15 s, start-up to /readyz ok {startup:.2?}; \
         {COUNT} deletes + 1 create sent in {requests_done:.2?}; from /readyz ok: new resource \
         finalized after {new_seen:.2?}, first release recorded after {first_release:.2?}, first \
         resource gone after {first_gone:.2?}, all {COUNT} gone after {all_gone:.2?}"
    );
    assert!(
        new_seen < RESUME_WITHIN && first_release < RESUME_WITHIN,
        "the controller resumed too late after the API server was ready (limit \
         {RESUME_WITHIN:?}): new resource finalized after {new_seen:?}, first release recorded \
         after {first_release:?}; controller log:\n{}",
        controller.log_tail()
    );
    assert_released_once_with_request_id(&h, "resume", COUNT).await;
}

/// 20 deletions in progress (DeleteInstance slowed down and paced, so some calls are in flight),
/// the API server killed after the first accepted releases and back after 10 s: every instance
/// is released exactly once and each final event carries the RequestId.
#[tokio::test]
async fn releases_in_flight_when_the_api_server_dies_happen_once_and_are_recorded() {
    const COUNT: usize = 20;
    let _turn = take_turn().await;
    let h = Harness::attached(
        testkit::test_namespace("inflight").await,
        EcsSim::start().await,
    );
    // 4 calls/s per action, so the releases are spread over about 5 s.
    let controller = Controller::start(&h, "inflight", &["--ecs-qps=4", "--ecs-burst=2"]).await;
    ready_resources(&h, &controller, "inflight", COUNT).await;
    h.sim
        .set_faults(json!([{ "action": "DeleteInstance", "latencyMs": 700 }]))
        .await;
    h.sim.clear_calls().await;

    for i in 0..COUNT {
        h.delete(&format!("inflight-{i}")).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let accepted_before = loop {
        let accepted = h
            .sim
            .calls(Some("DeleteInstance"))
            .await
            .iter()
            .filter(|c| call_succeeded(c))
            .count();
        if accepted >= 3 {
            break accepted;
        }
        assert!(
            Instant::now() < deadline,
            "no DeleteInstance accepted within 30 s; controller log:\n{}",
            controller.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    testkit::stop_apiserver();
    let remaining_at_kill = COUNT - accepted_before;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let accepted_during = h
        .sim
        .calls(Some("DeleteInstance"))
        .await
        .iter()
        .filter(|c| call_succeeded(c))
        .count()
        - accepted_before;
    testkit::start_apiserver().await;
    let back = Instant::now();

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let left = h
            .api
            .list(&ListParams::default())
            .await
            .expect("list")
            .items;
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} resources still there 90 s after the API server returned: {:?}; controller \
             log:\n{}",
            left.len(),
            left.iter().map(|r| r.name_any()).collect::<Vec<_>>(),
            controller.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "api-restart in flight: {accepted_before} releases accepted before the kill, \
         {accepted_during} of the other {remaining_at_kill} accepted while the API server was \
         down; all {COUNT} resources gone {:.2?} after it was ready",
        back.elapsed()
    );
    assert_released_once_with_request_id(&h, "inflight", COUNT).await;
}

/// `/healthz` with `--watch-unhealthy-after 3s`: 503 while the API server is down, 200 again
/// after it returns.
#[tokio::test]
async fn healthz_fails_while_the_watch_is_down_and_recovers() {
    let _turn = take_turn().await;
    let h = Harness::attached(
        testkit::test_namespace("healthz").await,
        EcsSim::start().await,
    );
    let controller = Controller::start(&h, "healthz", &[]).await;
    h.seed("i-healthz00001", json!({ "status": "Stopped" }))
        .await;
    h.create("web-1", "i-healthz00001", json!({})).await;
    h.wait_for_condition("web-1", "Ready", "True", "InstanceObserved")
        .await;
    assert_eq!(controller.healthz().await, Some(200));

    testkit::stop_apiserver();
    let down = Instant::now();
    let mut statuses = BTreeMap::new();
    let unhealthy = loop {
        let status = controller.healthz().await;
        *statuses.entry(format!("{status:?}")).or_insert(0) += 1;
        if status == Some(503) {
            break down.elapsed();
        }
        assert!(
            down.elapsed() < Duration::from_secs(15),
            "/healthz did not fail within 15 s of the API server going down (answers: \
             {statuses:?}); controller log:\n{}",
            controller.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        unhealthy >= Duration::from_millis(2500),
        "/healthz failed after {unhealthy:?}, before the 3 s threshold"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        controller.healthz().await,
        Some(503),
        "stays failing while the API server is down"
    );

    let startup = testkit::start_apiserver().await;
    let back = Instant::now();
    let healthy = loop {
        if controller.healthz().await == Some(200) {
            break back.elapsed();
        }
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "/healthz still failing 15 s after the API server was ready; controller log:\n{}",
            controller.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "api-restart healthz: 503 {unhealthy:.2?} after the kill (threshold 3 s); kube-apiserver \
         start-up {startup:.2?}; 200 again {healthy:.2?} after /readyz ok"
    );
    // The controller still works.
    h.delete("web-1").await;
    h.wait_gone("web-1").await;
}
