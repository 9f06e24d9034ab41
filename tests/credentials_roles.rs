//! Credentials Secrets that name a role (docs/security.md, "A role per resource, across
//! accounts"), through the real controller binary against the simulator's STS:
//!
//! - keys of account A plus `roleArn` and `externalId` of a role in account B: the instance
//!   only B sees is released with the role's temporary keys; a wrong `externalId` stalls the
//!   resource with a message naming the role and STS's code (never a secret), and correcting
//!   the Secret recovers it;
//! - `roleArn` alone (assumed with the controller's own identity): refused unless the
//!   namespace is listed in `--assume-role-namespaces`, and then assumed with the controller's
//!   key.

mod support;

use ecs_instance_controller::conditions::{READY, STALLED};
use serde_json::{Value, json};
use support::{ControllerProcess, Harness, condition_message};
use testkit::{sim::EcsSim, test_namespace};

/// The controller's own key (the simulator's default account).
const CONTROLLER_KEY: &str = "testid";
const CONTROLLER_SECRET: &str = "testsecret";
const CONTROLLER_ACCOUNT: &str = "1000000000000000";

#[tokio::test]
async fn secret_keys_assume_a_role_of_another_account_with_its_external_id() {
    const KEY_ACCOUNT: &str = "1111111111111111";
    const ROLE_ACCOUNT: &str = "2222222222222222";
    const ROLE: &str = "acs:ram::2222222222222222:role/operator";
    const EXTERNAL_ID: &str = "ext-7f3a9c";
    const ALICE_SECRET: &str = "alice-secret-5b1e90aa";
    let ns = test_namespace("xacct").await;
    let work = support::work_dir(&ns.name);
    let accounts_file = work.join("accounts.json");
    support::write_json(
        &accounts_file,
        &json!({
            "accounts": [
                { "accessKeyId": CONTROLLER_KEY, "accessKeySecret": CONTROLLER_SECRET },
                { "accessKeyId": "alice", "accessKeySecret": ALICE_SECRET,
                  "accountId": KEY_ACCOUNT },
            ],
            "roles": [{ "arn": ROLE, "trustedAccountIds": [KEY_ACCOUNT],
                        "externalId": EXTERNAL_ID }],
        }),
    );
    let sim =
        EcsSim::start_with_args(&[&format!("--accounts-file={}", accounts_file.display())]).await;
    let h = Harness::attached(ns, sim);
    let sim_url = h.sim.endpoint().to_string();
    let controller = ControllerProcess::start(
        &sim_url,
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", CONTROLLER_KEY),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", CONTROLLER_SECRET),
        ],
        &[
            &format!("--sts-endpoint={sim_url}"),
            &format!("--namespaces={}", h.ns.name),
        ],
        &work.join("controller.log"),
    )
    .await;

    // Only account B (and its roles) sees these instances: neither alice nor the controller.
    let (good, wrong) = ("i-bp1xacctgood001", "i-bp1xacctwrong01");
    for id in [good, wrong] {
        h.seed(id, json!({ "status": "Stopped", "owner": ROLE_ACCOUNT }))
            .await;
    }
    h.create_secret(
        "operator",
        &[
            ("accessKeyId", "alice"),
            ("accessKeySecret", ALICE_SECRET),
            ("roleArn", ROLE),
            ("externalId", EXTERNAL_ID),
        ],
    )
    .await;
    h.create_secret(
        "wrong-external-id",
        &[
            ("accessKeyId", "alice"),
            ("accessKeySecret", ALICE_SECRET),
            ("roleArn", ROLE),
            ("externalId", "ext-wrong-0000"),
        ],
    )
    .await;
    h.create(
        "good",
        good,
        json!({ "credentialsRef": { "name": "operator" } }),
    )
    .await;
    h.create(
        "wrong",
        wrong,
        json!({ "credentialsRef": { "name": "wrong-external-id" } }),
    )
    .await;

    h.wait_for_condition("good", READY, "True", "InstanceObserved")
        .await;
    let observed_with = h.observed_with("good").await.expect("who observed it");
    assert_eq!(observed_with.role_arn.as_deref(), Some(ROLE));
    assert_eq!(observed_with.access_key_id, "", "no temporary key recorded");

    // The wrong external ID: STS refuses, the resource says which role and what STS said.
    let stalled = h
        .wait_for_condition("wrong", STALLED, "True", "CredentialsUnavailable")
        .await;
    let message = condition_message(&stalled, STALLED);
    for part in [
        "Secret",
        "wrong-external-id",
        ROLE,
        "STS refused AssumeRole",
        "NoPermission",
    ] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    assert!(!message.contains(ALICE_SECRET), "{message}");
    let ready = h.api.get("wrong").await.expect("get");
    assert!(
        ready.status.and_then(|s| s.instance).is_none(),
        "nothing observed with refused credentials"
    );

    h.delete("good").await;
    h.wait_gone("good").await;
    let session = support::released_once_with(&h.sim, good).await;
    assert_eq!(session["source"], "AssumeRole", "{session}");
    assert_eq!(session["roleArn"], ROLE, "{session}");

    let assumed = h.sim.calls(Some("AssumeRole")).await;
    let (accepted, refused): (Vec<&Value>, Vec<&Value>) =
        assumed.iter().partition(|c| c["httpStatus"] == 200);
    assert_eq!(accepted.len(), 1, "one session for the role: {assumed:#?}");
    assert_eq!(accepted[0]["accessKeyId"], "alice", "with the Secret's key");
    assert_eq!(accepted[0]["params"]["ExternalId"], EXTERNAL_ID);
    assert!(!refused.is_empty());
    for call in &refused {
        assert_eq!(call["code"], "NoPermission", "{call}");
        assert_eq!(call["params"]["ExternalId"], "ext-wrong-0000", "{call}");
    }

    // Correcting the Secret recovers the resource: the new external ID is the session the
    // other Secret already has.
    h.patch_secret("wrong-external-id", &[("externalId", EXTERNAL_ID)])
        .await;
    h.wait_for_condition("wrong", READY, "True", "InstanceObserved")
        .await;
    let accepted = h
        .sim
        .calls(Some("AssumeRole"))
        .await
        .into_iter()
        .filter(|c| c["httpStatus"] == 200)
        .count();
    assert_eq!(
        accepted, 1,
        "Secrets naming the same role share its session"
    );
    h.delete("wrong").await;
    h.wait_gone("wrong").await;
    support::released_once_with(&h.sim, wrong).await;

    controller.assert_log_free_of(&[
        ("alice's AccessKeySecret", ALICE_SECRET),
        ("the controller's AccessKeySecret", CONTROLLER_SECRET),
    ]);
}

#[tokio::test]
async fn a_secret_naming_only_a_role_needs_assume_role_namespaces() {
    const ROLE_ACCOUNT: &str = "3333333333333333";
    const REFUSED_ROLE: &str = "acs:ram::3333333333333333:role/team-a";
    const ALLOWED_ROLE: &str = "acs:ram::3333333333333333:role/team-b";
    let refused_ns = test_namespace("role-refused").await;
    let allowed_ns = test_namespace("role-allowed").await;
    let work = support::work_dir(&allowed_ns.name);
    let accounts_file = work.join("accounts.json");
    // Both roles trust the controller's account: only the controller's flag decides.
    support::write_json(
        &accounts_file,
        &json!({
            "accounts": [{ "accessKeyId": CONTROLLER_KEY, "accessKeySecret": CONTROLLER_SECRET }],
            "roles": [
                { "arn": REFUSED_ROLE, "trustedAccountIds": [CONTROLLER_ACCOUNT] },
                { "arn": ALLOWED_ROLE, "trustedAccountIds": [CONTROLLER_ACCOUNT] },
            ],
        }),
    );
    let sim =
        EcsSim::start_with_args(&[&format!("--accounts-file={}", accounts_file.display())]).await;
    let sim_url = sim.endpoint().to_string();
    let refused = Harness::attached(refused_ns, EcsSim::attach(&sim_url));
    let allowed = Harness::attached(allowed_ns, sim);
    let controller = ControllerProcess::start(
        &sim_url,
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", CONTROLLER_KEY),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", CONTROLLER_SECRET),
        ],
        &[
            &format!("--sts-endpoint={sim_url}"),
            &format!("--namespaces={},{}", refused.ns.name, allowed.ns.name),
            &format!("--assume-role-namespaces={}", allowed.ns.name),
        ],
        &work.join("controller.log"),
    )
    .await;

    for (h, id, role) in [
        (&refused, "i-bp1rolerefused1", REFUSED_ROLE),
        (&allowed, "i-bp1roleallowed1", ALLOWED_ROLE),
    ] {
        h.seed(id, json!({ "status": "Stopped", "owner": ROLE_ACCOUNT }))
            .await;
        h.create_secret("team-role", &[("roleArn", role)]).await;
        h.create(
            "web-1",
            id,
            json!({ "credentialsRef": { "name": "team-role" } }),
        )
        .await;
    }

    let stalled = refused
        .wait_for_condition("web-1", STALLED, "True", "CredentialsUnavailable")
        .await;
    let message = condition_message(&stalled, STALLED);
    for part in [REFUSED_ROLE, "--assume-role-namespaces", &refused.ns.name] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }

    allowed
        .wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    let observed_with = allowed
        .observed_with("web-1")
        .await
        .expect("who observed it");
    assert_eq!(observed_with.role_arn.as_deref(), Some(ALLOWED_ROLE));
    allowed.delete("web-1").await;
    allowed.wait_gone("web-1").await;
    let session = support::released_once_with(&allowed.sim, "i-bp1roleallowed1").await;
    assert_eq!(session["roleArn"], ALLOWED_ROLE, "{session}");
    assert_eq!(
        session["roleSessionName"], "ecs-instance-controller",
        "the controller's session name"
    );

    let assumed = allowed.sim.calls(Some("AssumeRole")).await;
    assert!(!assumed.is_empty());
    for call in &assumed {
        assert_eq!(
            call["params"]["RoleArn"], ALLOWED_ROLE,
            "the refused namespace's role is never assumed: {call}"
        );
        assert_eq!(
            call["accessKeyId"], CONTROLLER_KEY,
            "with the controller's identity"
        );
        assert_eq!(call["httpStatus"], 200, "{call}");
    }
    // Still refused, and nothing of it reached ECS.
    assert!(refused.api.get("web-1").await.is_ok());
    assert!(
        refused
            .calls("DescribeInstances", Some("i-bp1rolerefused1"))
            .await
            .is_empty()
    );
    controller.assert_log_free_of(&[("the controller's AccessKeySecret", CONTROLLER_SECRET)]);
}
