//! Temporary credentials renewed while the controller works, through the real controller binary
//! against the simulator (`--sts-max-lifetime-secs` makes sessions short):
//!
//! - RRSA: the token file is read again at each renewal; after the kubelet's rotation (a new
//!   token from the API server renamed over the file) and the old token's expiry, the renewal
//!   succeeds with the new token and resources keep working (the short-lived first token is
//!   signed with the API server's key);
//! - a mass release while the session rolls over: every instance released exactly once, one STS
//!   call per rollover (no storm), no ECS call failed (none expired, none throttled);
//! - a session ECS refuses as expired: one renewal, one retry;
//! - a source renewed between two observations (the ECS instance role, a credentials URI) is the
//!   same identity for the evidence rule: an instance gone meanwhile is "gone", not "no longer
//!   visible".

mod support;

use std::time::{Duration, Instant};

use ecs_instance_controller::{
    EcsInstance,
    conditions::{READY, find},
};
use futures::StreamExt;
use kube::api::{DeleteParams, ListParams};
use serde_json::{Value, json};
use support::{ControllerProcess, Harness, call_mentions, call_succeeded, has_condition};
use testkit::{sim::EcsSim, test_namespace};

const ACCOUNT: &str = "2222222222222222";
const ROLE: &str = "acs:ram::2222222222222222:role/ecs-releaser";
const PROVIDER: &str = "acs:ram::2222222222222222:oidc-provider/ack-rrsa-test";
/// The controller's `RoleSessionName` (its chain options).
const SESSION_NAME: &str = "ecs-instance-controller";

fn timestamp(value: &Value) -> jiff::Timestamp {
    value
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("not a timestamp: {value}"))
}

/// An RRSA set-up: the simulator trusts the test API server's tokens for the namespace's
/// `controller` ServiceAccount; the token file holds `token`.
struct Rrsa {
    h: Harness,
    token_file: std::path::PathBuf,
    work: std::path::PathBuf,
}

async fn rrsa(ns: testkit::TestNamespace, sim_args: &[&str], token: &str) -> Rrsa {
    let work = support::work_dir(&ns.name);
    let token_file = work.join("token");
    std::fs::write(&token_file, token).expect("write the token file");
    let accounts_file = work.join("accounts.json");
    support::write_json(
        &accounts_file,
        &json!({
            "accounts": [{ "accessKeyId": "testid", "accessKeySecret": "testsecret" }],
            "roles": [{ "arn": ROLE, "trustedOidcProviders": [{
                "providerArn": PROVIDER,
                "subjects": [format!("system:serviceaccount:{}:controller", ns.name)],
            }] }],
            "oidcProviders": [support::api_server_oidc_provider(PROVIDER)],
        }),
    );
    let mut args = vec![format!("--accounts-file={}", accounts_file.display())];
    args.extend(sim_args.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sim = EcsSim::start_with_args(&args).await;
    Rrsa {
        h: Harness::attached(ns, sim),
        token_file,
        work,
    }
}

impl Rrsa {
    async fn controller(&self, extra: &[&str]) -> ControllerProcess {
        let sim_url = self.h.sim.endpoint().to_string();
        let mut args = vec![
            format!("--sts-endpoint={sim_url}"),
            format!("--namespaces={}", self.h.ns.name),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ControllerProcess::start(
            &sim_url,
            &[
                ("ALIBABA_CLOUD_ROLE_ARN", ROLE),
                ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", PROVIDER),
                (
                    "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
                    self.token_file.to_str().expect("UTF-8 path"),
                ),
            ],
            &args,
            &self.work.join("controller.log"),
        )
        .await
    }
}

/// ECS calls (not STS, not the metadata server).
async fn ecs_calls(sim: &EcsSim) -> Vec<Value> {
    sim.calls(None)
        .await
        .into_iter()
        .filter(|c| c["product"] == "ecs")
        .collect()
}

#[tokio::test]
async fn rrsa_renewal_reads_the_rotated_token_file_after_the_old_token_expired() {
    // Sessions of 40 s are renewed 30 s after they start (the provider's minimum interval),
    // in the background, 10 s before they expire.
    let ns = test_namespace("rrsa-rotate").await;
    let first = support::service_account_token(&ns, "controller").await;
    // The token the controller starts with: the same claims, but it stops working 12 s from
    // now (the API server issues nothing shorter than 10 minutes).
    let (old, old_exp) = support::short_lived_copy(&first, 12);
    let setup = rrsa(ns, &["--sts-max-lifetime-secs=40"], &old).await;
    let h = &setup.h;
    let (id1, id2) = ("i-bp1rotate000001", "i-bp1rotate000002");
    for id in [id1, id2] {
        h.seed(id, json!({ "status": "Stopped", "owner": ACCOUNT }))
            .await;
    }
    h.create("web-1", id1, json!({})).await;
    let controller = setup.controller(&[]).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    let sessions = support::sts_sessions_from(&h.sim, "AssumeRoleWithOIDC").await;
    assert_eq!(sessions.len(), 1, "{sessions:#?}");

    // The kubelet's rotation: a new token from the API server, renamed over the file.
    let new = support::service_account_token(&h.ns, "controller").await;
    assert_ne!(new, old);
    support::replace_file(&setup.token_file, &new);

    // The old token stops working: STS refuses it once it expired.
    let wait = old_exp + 1 - jiff::Timestamp::now().as_second();
    tokio::time::sleep(Duration::from_secs(wait.max(0) as u64)).await;
    let (status, body) =
        support::assume_role_with_oidc(&h.sim, ROLE, PROVIDER, &old, "probe-old-token").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["Code"], "AuthenticationFail.OIDCToken.Expired",
        "{body}"
    );

    // The renewal, due 30 s after the first session, can only have used the new token.
    let deadline = Instant::now() + Duration::from_secs(60);
    let renewed = loop {
        let sessions = support::sts_sessions_from(&h.sim, "AssumeRoleWithOIDC").await;
        if sessions.len() >= 2 {
            break sessions[1].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no renewal within 60 s; log:\n{}",
            controller.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        timestamp(&renewed["issuedAt"]).as_second() > old_exp,
        "renewed after the old token expired: {renewed}"
    );

    // Resources keep working with the renewed session.
    h.create("web-2", id2, json!({})).await;
    h.wait_for_condition("web-2", READY, "True", "InstanceObserved")
        .await;
    for name in ["web-1", "web-2"] {
        h.delete(name).await;
    }
    for (name, id) in [("web-1", id1), ("web-2", id2)] {
        h.wait_gone(name).await;
        let session = support::released_once_with(&h.sim, id).await;
        assert!(
            timestamp(&session["issuedAt"]).as_second() > old_exp,
            "{id} released with a session of the new token: {session}"
        );
    }

    let exchanges: Vec<Value> = h
        .sim
        .calls(Some("AssumeRoleWithOIDC"))
        .await
        .into_iter()
        .filter(|c| c["params"]["RoleSessionName"] == SESSION_NAME)
        .collect();
    assert!(
        exchanges.len() >= 2 && exchanges.iter().all(call_succeeded),
        "every exchange the controller made succeeded: {exchanges:#?}"
    );
    let failed: Vec<Value> = ecs_calls(&h.sim)
        .await
        .into_iter()
        .filter(|c| !call_succeeded(c))
        .collect();
    assert!(failed.is_empty(), "no ECS call failed: {failed:#?}");
    controller.assert_log_free_of(&[
        ("the first token", &first),
        ("the short-lived token", &old),
        ("the rotated token", &new),
    ]);
}

/// Resources of the namespace that satisfy `check`, counted.
async fn count(h: &Harness, check: impl Fn(&EcsInstance) -> bool) -> (usize, usize) {
    let list = h.api.list(&ListParams::default()).await.expect("list");
    let total = list.items.len();
    (list.items.iter().filter(|r| check(r)).count(), total)
}

/// The newest session `source` issued, and when.
async fn newest_session(sim: &EcsSim, source: &str) -> Option<jiff::Timestamp> {
    support::sts_sessions_from(sim, source)
        .await
        .iter()
        .map(|s| timestamp(&s["issuedAt"]))
        .max()
}

#[tokio::test]
async fn mass_release_while_the_session_rolls_over_renews_once_and_no_call_fails() {
    // How many resources: `CREDENTIALS_MASS_N` (default 150; e.g. 1000 for a measurement). The
    // waits for Ready and for the release grow with it: a second per resource (measured with
    // 1000: about 1.2 resources a second become Ready while the ready ones resync every 2 s).
    let n_resources: usize = std::env::var("CREDENTIALS_MASS_N")
        .ok()
        .map(|v| {
            v.parse()
                .expect("CREDENTIALS_MASS_N: a number of resources")
        })
        .unwrap_or(150);
    let wait_secs = 120.max(n_resources as u64);
    /// Sessions of 40 s are renewed 30 s after they start (the provider's minimum interval
    /// between renewals), 10 s before they expire: longer than any call waits in the ECS
    /// client's rate limiter (64 passes at 10 calls a second), so no call may go out expired.
    const LIFETIME_SECS: i64 = 40;
    const RENEWED_AFTER_SECS: i64 = 30;
    let ns = test_namespace("rrsa-mass").await;
    let token = support::service_account_token(&ns, "controller").await;
    let setup = rrsa(
        ns,
        &[&format!("--sts-max-lifetime-secs={LIFETIME_SECS}")],
        &token,
    )
    .await;
    let h = &setup.h;
    let ids: Vec<String> = (0..n_resources)
        .map(|n| format!("i-bp1mass{n:08}"))
        .collect();
    h.sim
        .seed(Value::Array(
            ids.iter()
                .map(|id| {
                    json!({ "instanceId": id, "regionId": support::REGION,
                            "status": "Stopped", "owner": ACCOUNT })
                })
                .collect(),
        ))
        .await;
    let controller = setup.controller(&[]).await;
    let ready_started = Instant::now();
    futures::stream::iter(ids.iter().enumerate())
        .for_each_concurrent(16, |(n, id)| async move {
            h.create(&format!("web-{n}"), id, json!({})).await;
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(wait_secs);
    let mut progress = Instant::now();
    loop {
        let (ready, _) = count(h, |r| has_condition(r, READY, "True", "InstanceObserved")).await;
        if ready == n_resources {
            break;
        }
        if progress.elapsed() >= Duration::from_secs(30) {
            eprintln!(
                "{ready}/{n_resources} ready after {:?}",
                ready_started.elapsed()
            );
            progress = Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{ready}/{n_resources} ready after {wait_secs} s; log:\n{}",
            controller.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ready_took = ready_started.elapsed();

    // Start the release 8 s before the session's renewal is due: the release (at least 13 s at
    // 10 DeleteInstance a second) spans the rollover.
    let due = loop {
        let newest = newest_session(&h.sim, "AssumeRoleWithOIDC")
            .await
            .expect("a session");
        let due = newest.as_second() + RENEWED_AFTER_SECS;
        if due - 8 >= jiff::Timestamp::now().as_second() {
            break due;
        }
        // Too close to (or past) the renewal: wait for the next session.
        let deadline = Instant::now() + Duration::from_secs(60);
        while newest_session(&h.sim, "AssumeRoleWithOIDC").await == Some(newest) {
            assert!(Instant::now() < deadline, "no renewal within 60 s");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let wait = due - 8 - jiff::Timestamp::now().as_second();
    tokio::time::sleep(Duration::from_secs(wait.max(0) as u64)).await;

    let started = jiff::Timestamp::now();
    let release_started = Instant::now();
    futures::stream::iter(0..n_resources)
        .for_each_concurrent(16, |n| async move {
            h.api
                .delete(&format!("web-{n}"), &DeleteParams::default())
                .await
                .expect("delete");
        })
        .await;
    loop {
        let (_, left) = count(h, |_| true).await;
        if left == 0 {
            break;
        }
        assert!(
            release_started.elapsed() < Duration::from_secs(wait_secs),
            "{left} resources left after {wait_secs} s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ended = jiff::Timestamp::now();
    let took = release_started.elapsed();

    // Every instance released exactly once.
    let deletes = h.sim.calls(Some("DeleteInstance")).await;
    for id in &ids {
        let released = deletes
            .iter()
            .filter(|c| call_succeeded(c) && call_mentions(c, id))
            .count();
        assert_eq!(released, 1, "{id}: {released} successful DeleteInstance");
    }

    // One STS exchange per rollover, never one per resource or per pass: each session follows
    // the previous one by the renewal interval, before it expired; one rolled over during the
    // release.
    let exchanges = h.sim.calls(Some("AssumeRoleWithOIDC")).await;
    assert!(exchanges.iter().all(call_succeeded), "{exchanges:#?}");
    let sessions = support::sts_sessions_from(&h.sim, "AssumeRoleWithOIDC").await;
    assert_eq!(exchanges.len(), sessions.len());
    let issued: Vec<jiff::Timestamp> = sessions.iter().map(|s| timestamp(&s["issuedAt"])).collect();
    for pair in issued.windows(2) {
        let gap = pair[1].as_second() - pair[0].as_second();
        assert!(
            (RENEWED_AFTER_SECS - 1..LIFETIME_SECS).contains(&gap),
            "sessions {gap} s apart (renewal due after {RENEWED_AFTER_SECS} s, expiry after \
             {LIFETIME_SECS} s): {sessions:#?}"
        );
    }
    let during = issued
        .iter()
        .filter(|t| **t >= started && **t <= ended)
        .count();
    assert!(
        during >= 1,
        "no rollover during the release ({took:?}, {started} to {ended}): {sessions:#?}"
    );

    // No ECS call failed: none refused as expired, none throttled.
    let ecs = ecs_calls(&h.sim).await;
    let failed: Vec<&Value> = ecs.iter().filter(|c| !call_succeeded(c)).collect();
    eprintln!(
        "{n_resources} ready in {ready_took:?}, released in {took:?}; {} sessions ({during} during the \
         release); {} ECS calls, {} failed",
        sessions.len(),
        ecs.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "ECS calls failed: {failed:#?}");
    let warnings: Vec<(String, String)> = h
        .all_event_reasons()
        .await
        .into_iter()
        .filter(|(_, reason)| {
            [
                "CredentialsRejected",
                "CredentialsUnavailable",
                "Throttled",
                "Retrying",
            ]
            .contains(&reason.as_str())
        })
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
    controller.assert_log_free_of(&[("the OIDC token", &token)]);
}

/// Which source serves the simulator's metadata role to the controller.
#[derive(Clone, Copy, Debug)]
enum Served {
    InstanceRole,
    CredentialsUri,
}

const NODE_ACCOUNT: &str = "6666666666666666";
const NODE_ROLE_NAME: &str = "NodeRole";
const NODE_ROLE: &str = "acs:ram::6666666666666666:role/NodeRole";

/// A simulator serving [`NODE_ROLE`] on its metadata server and credentials URI, and the
/// controller using it through `served`.
async fn node_role(
    served: Served,
    prefix: &str,
    sim_args: &[&str],
) -> (Harness, ControllerProcess) {
    let ns = test_namespace(prefix).await;
    let work = support::work_dir(&ns.name);
    let mut args = vec![format!("--metadata-role-arn={NODE_ROLE}")];
    args.extend(sim_args.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let h = Harness::attached(ns, EcsSim::start_with_args(&args).await);
    let sim_url = h.sim.endpoint().to_string();
    let uri = format!("{sim_url}/credentials-uri");
    let metadata_arg = format!("--ecs-metadata-endpoint={sim_url}");
    let namespaces = format!("--namespaces={}", h.ns.name);
    let (env, args): (Vec<(&str, &str)>, Vec<&str>) = match served {
        Served::InstanceRole => (
            vec![("ALIBABA_CLOUD_ECS_METADATA", NODE_ROLE_NAME)],
            vec![&metadata_arg, &namespaces],
        ),
        Served::CredentialsUri => (
            vec![("ALIBABA_CLOUD_CREDENTIALS_URI", &uri)],
            vec![&namespaces],
        ),
    };
    let controller =
        ControllerProcess::start(&sim_url, &env, &args, &work.join("controller.log")).await;
    (h, controller)
}

/// ECS refuses the session the controller holds as expired (it was rotated and ended early):
/// one renewal, one retry with the new keys, and the release goes on.
#[tokio::test]
async fn a_session_ecs_refuses_as_expired_is_renewed_once_and_the_call_retried() {
    let (h, controller) = node_role(Served::InstanceRole, "refused-expired", &[]).await;
    let id = "i-bp1refusedexp01";
    h.seed(id, json!({ "status": "Stopped", "owner": NODE_ACCOUNT }))
        .await;
    h.create("web-1", id, json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    let old = support::sts_sessions_from(&h.sim, "Metadata").await;
    assert_eq!(old.len(), 1, "{old:#?}");
    let old_key = old[0]["accessKeyId"].as_str().unwrap().to_string();
    let fetches_before = h.sim.calls(Some("MetadataCredentials")).await.len();

    let new_key = support::rotate_metadata_credentials(&h.sim).await;
    support::expire_sts_session(&h.sim, &old_key).await;
    h.delete("web-1").await;
    h.wait_gone("web-1").await;

    let session = support::released_once_with(&h.sim, id).await;
    assert_eq!(session["accessKeyId"], new_key.as_str(), "{session}");
    let ecs = ecs_calls(&h.sim).await;
    let refused: Vec<&Value> = ecs.iter().filter(|c| !call_succeeded(c)).collect();
    assert_eq!(refused.len(), 1, "one call refused: {refused:#?}");
    assert_eq!(refused[0]["code"], "InvalidSecurityToken.Expired");
    assert_eq!(refused[0]["accessKeyId"], old_key.as_str());
    // The same call again, with the renewed keys, right after.
    let retry = ecs
        .iter()
        .find(|c| c["seq"].as_u64() > refused[0]["seq"].as_u64())
        .expect("a call after the refusal");
    assert_eq!(retry["action"], refused[0]["action"], "{retry}");
    assert_eq!(retry["params"], refused[0]["params"], "{retry}");
    assert_eq!(retry["accessKeyId"], new_key.as_str(), "{retry}");
    assert!(call_succeeded(retry), "{retry}");
    let fetches = h.sim.calls(Some("MetadataCredentials")).await.len() - fetches_before;
    assert_eq!(fetches, 1, "one renewal");
    let served = support::metadata_credentials(&h.sim, NODE_ROLE_NAME).await;
    controller.assert_log_free_of(&[
        (
            "the AccessKeySecret",
            served["AccessKeySecret"].as_str().unwrap(),
        ),
        (
            "the SecurityToken",
            served["SecurityToken"].as_str().unwrap(),
        ),
    ]);
}

/// A resource observed with one session; the instance vanishes (released out of band); the
/// controller's session rolls over (short sessions, renewed as they end); then the resource is
/// deleted. The controller's identity did not change — the same role, a new session — so the
/// instance is gone and the resource must go, as it does for RRSA, a profile's role or a
/// Secret's role (their identity is the role, docs/security.md).
async fn vanished_across_a_renewal(served: Served) {
    let (h, _controller) =
        node_role(served, "renewed-identity", &["--sts-max-lifetime-secs=5"]).await;
    let id = "i-bp1renewedid001";
    h.seed(id, json!({ "status": "Stopped", "owner": NODE_ACCOUNT }))
        .await;
    h.create("web-1", id, json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    let before = h.observed_with("web-1").await.expect("who observed it");

    // Released out of band: the controller sees it gone (nothing to do while not deleting).
    h.sim.remove_instance(id).await;
    let vanished = h
        .wait_for("web-1", "Stalled", |r| {
            r.status
                .as_ref()
                .and_then(|s| find(&s.conditions, "Stalled"))
                .is_some_and(|c| c.status == "True")
        })
        .await;
    let stalled_at = jiff::Timestamp::now();
    // A session issued after that: the next passes use it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !support::sts_sessions_from(&h.sim, "Metadata")
        .await
        .iter()
        .any(|s| timestamp(&s["issuedAt"]).as_second() > stalled_at.as_second())
    {
        assert!(Instant::now() < deadline, "no renewal within 30 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.delete("web-1").await;

    let deadline = Instant::now() + Duration::from_secs(30);
    while h.api.get_opt("web-1").await.expect("get").is_some() {
        if Instant::now() > deadline {
            let resource = h.api.get("web-1").await.expect("get");
            let stalled = resource
                .status
                .as_ref()
                .and_then(|s| find(&s.conditions, "Stalled"))
                .cloned();
            panic!(
                "{served:?}: the deleted resource stays after its instance vanished and the \
                 controller's session was renewed (observed with {before:?}; when it vanished: \
                 {:?}); now: {stalled:#?}",
                vanished
                    .status
                    .as_ref()
                    .and_then(|s| find(&s.conditions, "Stalled")),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        h.calls("DeleteInstance", Some(id)).await.is_empty(),
        "nothing to release"
    );
}

#[tokio::test]
async fn instance_role_renewed_between_observations_is_the_same_identity() {
    vanished_across_a_renewal(Served::InstanceRole).await;
}

#[tokio::test]
async fn credentials_uri_renewed_between_observations_is_the_same_identity() {
    vanished_across_a_renewal(Served::CredentialsUri).await;
}
