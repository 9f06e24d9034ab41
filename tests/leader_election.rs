//! Two replicas of the real controller binary with `--leader-election`: only the Lease holder
//! acts, and the other takes over when the holder is killed. Each replica signs with its own
//! access key, so the simulator's call log shows which one talked to ECS.

mod support;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::json;
use support::{Harness, call_succeeded};
use testkit::sim::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, EcsSim};

const KEY_B: (&str, &str) = ("replicab", "replicabsecret");

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("ecs-instance-controller")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

async fn wait_for_holder(leases: &Api<Lease>, identity: &str) {
    for _ in 0..300 {
        if holder(leases).await.as_deref() == Some(identity) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{identity} never held the Lease (holder: {:?})",
        holder(leases).await
    );
}

#[tokio::test]
async fn only_the_leader_acts_and_the_other_takes_over() {
    let ns = testkit::test_namespace("leader").await;
    let namespace = ns.name.clone();
    let sim = EcsSim::start().await;
    sim.add_account(KEY_B.0, KEY_B.1, None).await;
    let h = Harness::attached(ns, sim);
    let leases: Api<Lease> = Api::namespaced(h.ns.client.clone(), &namespace);
    let run_dir = &testkit::control_plane().run_dir;

    let replica = |identity: &str, key: (&str, &str)| {
        let args = [
            "--leader-election".to_string(),
            format!("--leader-election-namespace={namespace}"),
            "--leader-election-lease-duration=8s".to_string(),
            format!("--identity={identity}"),
            format!("--namespaces={namespace}"),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = run_dir.join(format!("controller-{identity}.log"));
        let (child, _, health) =
            support::spawn_controller_binary(h.sim.endpoint(), key, &args, &log);
        (child, health, log)
    };

    let (mut a, a_health, a_log) = replica("replica-a", (ACCESS_KEY_ID, ACCESS_KEY_SECRET));
    support::wait_ready(&a_health, &a_log).await;
    wait_for_holder(&leases, "replica-a").await;
    let (_b, b_health, b_log) = replica("replica-b", KEY_B);
    support::wait_ready(&b_health, &b_log).await;

    h.seed("i-bp1leader00001", json!({ "status": "Stopped" }))
        .await;
    h.create("first", "i-bp1leader00001", json!({})).await;
    h.wait_for_condition("first", "Ready", "True", "InstanceObserved")
        .await;
    h.delete("first").await;
    h.wait_gone("first").await;
    let calls = h.sim.calls(None).await;
    assert!(calls.iter().any(call_succeeded));
    assert!(
        calls.iter().all(|c| c["accessKeyId"] == ACCESS_KEY_ID),
        "only the leader talked to ECS: {:?}",
        calls.iter().map(|c| &c["accessKeyId"]).collect::<Vec<_>>()
    );
    assert_eq!(
        holder(&leases).await.as_deref(),
        Some("replica-a"),
        "the follower did not take the Lease"
    );

    a.kill().expect("kill the leader");
    let _ = a.wait();
    wait_for_holder(&leases, "replica-b").await;
    h.sim.clear_calls().await;

    h.seed("i-bp1leader00002", json!({ "status": "Stopped" }))
        .await;
    h.create("second", "i-bp1leader00002", json!({})).await;
    h.wait_for_condition("second", "Ready", "True", "InstanceObserved")
        .await;
    h.delete("second").await;
    h.wait_gone("second").await;
    let calls = h.sim.calls(None).await;
    assert!(
        calls
            .iter()
            .any(|c| c["action"] == "DeleteInstance" && call_succeeded(c))
    );
    assert!(
        calls.iter().all(|c| c["accessKeyId"] == KEY_B.0),
        "the new leader acts alone"
    );
}
