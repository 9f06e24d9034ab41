//! The controller's own credentials from the default chain, through the real binary, against
//! the simulator's STS, metadata server and credentials URI (docs/security.md, "Credentials:
//! where they come from"; docs/credentials-chain.md):
//!
//! - RRSA with a token the real kube-apiserver issued for a ServiceAccount, exchanged with the
//!   simulator's STS (`AssumeRoleWithOIDC`, checked against the API server's service-account
//!   key);
//! - the ECS instance RAM role from a metadata server that answers only the hardened handshake;
//! - a profile file whose `ram_role_arn` profile assumes a role of another account;
//! - a credentials URI;
//! - and what a resource says when its source fails: the metadata server unreachable, STS
//!   refusing the token's subject.
//!
//! Each release is made with the source's temporary keys and recorded as the role's; no log
//! line holds a secret or a token.

mod support;

use ecs_instance_controller::conditions::{READY, STALLED};
use serde_json::{Value, json};
use support::{
    ControllerProcess, Harness, call_succeeded, condition_message, sts_sessions_from, wait_ready,
};
use testkit::{sim::EcsSim, test_namespace};

const ACCOUNT: &str = "2222222222222222";
const ROLE: &str = "acs:ram::2222222222222222:role/ecs-releaser";
const PROVIDER: &str = "acs:ram::2222222222222222:oidc-provider/ack-rrsa-test";

/// The account of the instance role, and the role the metadata server serves.
const INSTANCE_ACCOUNT: &str = "3333333333333333";
const INSTANCE_ROLE_NAME: &str = "EcsReleaser";
const INSTANCE_ROLE: &str = "acs:ram::3333333333333333:role/EcsReleaser";

#[tokio::test]
async fn rrsa_a_service_account_token_becomes_role_credentials_that_release_the_instance() {
    let ns = test_namespace("rrsa").await;
    let work = support::work_dir(&ns.name);

    // The ServiceAccount's token, as the kubelet projects it for RRSA.
    let token = support::service_account_token(&ns, "controller").await;
    let token_file = work.join("token");
    std::fs::write(&token_file, &token).expect("write the token file");

    // The simulator trusts the API server as the OIDC issuer of the role's provider.
    let subject = format!("system:serviceaccount:{}:controller", ns.name);
    let accounts_file = work.join("accounts.json");
    support::write_json(
        &accounts_file,
        &json!({
            "accounts": [{ "accessKeyId": "testid", "accessKeySecret": "testsecret" }],
            "roles": [{ "arn": ROLE, "trustedOidcProviders": [
                { "providerArn": PROVIDER, "subjects": [subject] }
            ] }],
            "oidcProviders": [support::api_server_oidc_provider(PROVIDER)],
        }),
    );
    let sim =
        EcsSim::start_with_args(&[&format!("--accounts-file={}", accounts_file.display())]).await;
    let h = Harness::attached(ns, sim);
    let id = "i-bp1rrsa00000001";
    h.seed(id, json!({ "status": "Stopped", "owner": ACCOUNT }))
        .await;

    let log = work.join("controller.log");
    let sim_url = h.sim.endpoint().to_string();
    let (_controller, _metrics, health) = support::spawn_controller_binary_with_env(
        &sim_url,
        &[
            ("ALIBABA_CLOUD_ROLE_ARN", ROLE),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", PROVIDER),
            (
                "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
                token_file.to_str().expect("UTF-8 path"),
            ),
        ],
        &[
            &format!("--sts-endpoint={sim_url}"),
            &format!("--namespaces={}", h.ns.name),
        ],
        &log,
    );
    wait_ready(&health, &log).await;

    h.create("web-1", id, json!({})).await;
    let ready = h
        .wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    let observed_with = ready
        .status
        .and_then(|s| s.instance)
        .and_then(|i| i.observed_with)
        .expect("who observed it");
    assert_eq!(observed_with.role_arn.as_deref(), Some(ROLE));
    assert_eq!(observed_with.access_key_id, "", "no temporary key recorded");

    h.delete("web-1").await;
    h.wait_gone("web-1").await;
    let deletes: Vec<_> = h
        .calls("DeleteInstance", Some(id))
        .await
        .into_iter()
        .filter(call_succeeded)
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    let caller = deletes[0].to_string();
    assert!(
        caller.contains("STS."),
        "released with the role's keys: {caller}"
    );
    let exchanges = h.sim.calls(Some("AssumeRoleWithOIDC")).await;
    assert!(!exchanges.is_empty(), "the token was exchanged with STS");

    let text = std::fs::read_to_string(&log).expect("the controller log");
    assert!(
        text.contains("oidc_role_arn") && text.contains(ROLE),
        "the start-up log names the source:\n{text}"
    );
    assert!(
        !text.contains(&token),
        "the OIDC token never reaches the log"
    );
}

#[tokio::test]
async fn instance_role_from_the_hardened_metadata_server_releases_the_instance() {
    let ns = test_namespace("imds").await;
    let work = support::work_dir(&ns.name);
    // Only the token handshake is answered: a plain GET gets 401.
    let sim = EcsSim::start_with_args(&[
        &format!("--metadata-role-arn={INSTANCE_ROLE}"),
        "--metadata-require-token",
    ])
    .await;
    let h = Harness::attached(ns, sim);
    // Only the role's account sees the instance: the controller has no other key.
    let id = "i-bp1imds00000001";
    h.seed(
        id,
        json!({ "status": "Stopped", "owner": INSTANCE_ACCOUNT }),
    )
    .await;
    let sim_url = h.sim.endpoint().to_string();
    let controller = ControllerProcess::start(
        &sim_url,
        &[("ALIBABA_CLOUD_ECS_METADATA", INSTANCE_ROLE_NAME)],
        &[
            &format!("--ecs-metadata-endpoint={sim_url}"),
            &format!("--namespaces={}", h.ns.name),
        ],
        &work.join("controller.log"),
    )
    .await;

    h.create("web-1", id, json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    let observed_with = h.observed_with("web-1").await.expect("who observed it");
    // The metadata server names the role, not its account: the record is the role's name.
    assert_eq!(
        observed_with.role_arn.as_deref(),
        Some(format!("ecs-instance-role/{INSTANCE_ROLE_NAME}").as_str()),
        "{observed_with:?}"
    );
    assert_eq!(observed_with.access_key_id, "", "no temporary key recorded");

    h.delete("web-1").await;
    h.wait_gone("web-1").await;
    let session = support::released_once_with(&h.sim, id).await;
    assert_eq!(session["source"], "Metadata", "{session}");
    assert_eq!(session["roleArn"], INSTANCE_ROLE, "{session}");

    // The hardened handshake: a token first, then every GET with it; nothing refused.
    let metadata: Vec<Value> = h
        .sim
        .calls(None)
        .await
        .into_iter()
        .filter(|c| c["product"] == "metadata")
        .collect();
    let first_token = metadata
        .iter()
        .find(|c| c["action"] == "MetadataToken")
        .unwrap_or_else(|| panic!("no token PUT: {metadata:#?}"));
    assert_eq!(first_token["params"]["method"], "PUT");
    assert_eq!(first_token["httpStatus"], 200);
    let credentials: Vec<&Value> = metadata
        .iter()
        .filter(|c| c["action"] == "MetadataCredentials")
        .collect();
    assert!(!credentials.is_empty(), "no credentials GET: {metadata:#?}");
    for call in &credentials {
        assert_eq!(call["params"]["method"], "GET", "{call}");
        assert_eq!(
            call["params"]["path"],
            format!("/latest/meta-data/ram/security-credentials/{INSTANCE_ROLE_NAME}"),
            "the configured role, not asked from the server"
        );
        assert_eq!(call["params"]["tokenPresent"], "true", "{call}");
        assert_eq!(call["httpStatus"], 200, "{call}");
        assert!(call["seq"].as_u64() > first_token["seq"].as_u64());
    }
    assert!(
        metadata.iter().all(|c| c["httpStatus"] == 200),
        "no metadata call refused: {metadata:#?}"
    );

    let text = controller.log_text();
    assert!(
        text.contains("ecs_ram_role") && text.contains(INSTANCE_ROLE_NAME),
        "the start-up log names the source:\n{text}"
    );
    // What the metadata server serves now is what the controller got (not near expiry).
    let served = support::metadata_credentials(&h.sim, INSTANCE_ROLE_NAME).await;
    controller.assert_log_free_of(&[
        (
            "the role's AccessKeySecret",
            served["AccessKeySecret"].as_str().unwrap(),
        ),
        (
            "the role's SecurityToken",
            served["SecurityToken"].as_str().unwrap(),
        ),
    ]);
}

#[tokio::test]
async fn profile_file_ram_role_arn_assumes_a_role_of_another_account() {
    const KEY_ACCOUNT: &str = "1111111111111111";
    const ROLE_ACCOUNT: &str = "5555555555555555";
    const PROFILE_ROLE: &str = "acs:ram::5555555555555555:role/cross-account-releaser";
    const SECRET: &str = "alice-secret-0d5f6a1e";
    let ns = test_namespace("profile").await;
    let work = support::work_dir(&ns.name);
    let accounts_file = work.join("accounts.json");
    support::write_json(
        &accounts_file,
        &json!({
            "accounts": [{ "accessKeyId": "alice", "accessKeySecret": SECRET,
                           "accountId": KEY_ACCOUNT }],
            "roles": [{ "arn": PROFILE_ROLE, "trustedAccountIds": [KEY_ACCOUNT] }],
        }),
    );
    // The default profile is alice's plain key, which cannot see the instance: only the
    // profile the variable names (the role) can.
    let profile = work.join("credentials");
    std::fs::write(
        &profile,
        format!(
            "[default]\ntype = access_key\naccess_key_id = alice\naccess_key_secret = {SECRET}\n\n\
             [releaser]\ntype = ram_role_arn\naccess_key_id = alice\naccess_key_secret = {SECRET}\n\
             role_arn = {PROFILE_ROLE}\nrole_session_name = profile-releaser\n"
        ),
    )
    .expect("write the profile file");
    let sim =
        EcsSim::start_with_args(&[&format!("--accounts-file={}", accounts_file.display())]).await;
    let h = Harness::attached(ns, sim);
    let id = "i-bp1profile00001";
    h.seed(id, json!({ "status": "Stopped", "owner": ROLE_ACCOUNT }))
        .await;
    let sim_url = h.sim.endpoint().to_string();
    let controller = ControllerProcess::start(
        &sim_url,
        &[
            (
                "ALIBABA_CLOUD_CREDENTIALS_FILE",
                profile.to_str().expect("UTF-8 path"),
            ),
            ("ALIBABA_CLOUD_PROFILE", "releaser"),
        ],
        &[
            &format!("--sts-endpoint={sim_url}"),
            &format!("--namespaces={}", h.ns.name),
        ],
        &work.join("controller.log"),
    )
    .await;

    h.create("web-1", id, json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    let observed_with = h.observed_with("web-1").await.expect("who observed it");
    assert_eq!(observed_with.role_arn.as_deref(), Some(PROFILE_ROLE));
    assert_eq!(observed_with.access_key_id, "", "no temporary key recorded");

    h.delete("web-1").await;
    h.wait_gone("web-1").await;
    let session = support::released_once_with(&h.sim, id).await;
    assert_eq!(session["source"], "AssumeRole", "{session}");
    assert_eq!(session["roleArn"], PROFILE_ROLE, "{session}");
    assert_eq!(session["roleSessionName"], "profile-releaser", "{session}");
    let assumed = h.sim.calls(Some("AssumeRole")).await;
    assert!(!assumed.is_empty());
    for call in &assumed {
        assert_eq!(
            call["accessKeyId"], "alice",
            "assumed with the profile's key"
        );
        assert_eq!(call["params"]["RoleArn"], PROFILE_ROLE);
        assert_eq!(call["httpStatus"], 200, "{call}");
    }

    let text = controller.log_text();
    assert!(
        text.contains("ram_role_arn") && text.contains(PROFILE_ROLE) && text.contains("releaser"),
        "the start-up log names the source and the profile:\n{text}"
    );
    controller.assert_log_free_of(&[("the profile's AccessKeySecret", SECRET)]);
}

#[tokio::test]
async fn credentials_uri_answers_the_keys_that_release_the_instance() {
    const URI_ACCOUNT: &str = "4444444444444444";
    const URI_ROLE: &str = "acs:ram::4444444444444444:role/sidecar-role";
    let ns = test_namespace("creduri").await;
    let work = support::work_dir(&ns.name);
    // The simulator's credentials URI answers the metadata role's credentials.
    let sim = EcsSim::start_with_args(&[&format!("--metadata-role-arn={URI_ROLE}")]).await;
    let h = Harness::attached(ns, sim);
    let id = "i-bp1creduri00001";
    h.seed(id, json!({ "status": "Stopped", "owner": URI_ACCOUNT }))
        .await;
    let sim_url = h.sim.endpoint().to_string();
    let uri = format!("{sim_url}/credentials-uri");
    let controller = ControllerProcess::start(
        &sim_url,
        &[("ALIBABA_CLOUD_CREDENTIALS_URI", &uri)],
        &[&format!("--namespaces={}", h.ns.name)],
        &work.join("controller.log"),
    )
    .await;

    h.create("web-1", id, json!({})).await;
    h.wait_for_condition("web-1", READY, "True", "InstanceObserved")
        .await;
    h.delete("web-1").await;
    h.wait_gone("web-1").await;
    let session = support::released_once_with(&h.sim, id).await;
    assert_eq!(session["roleArn"], URI_ROLE, "{session}");
    let fetched: Vec<Value> = h.sim.calls(Some("CredentialsUri")).await;
    assert!(!fetched.is_empty(), "the URI was asked");
    assert!(
        fetched
            .iter()
            .all(|c| c["httpStatus"] == 200 && c["params"]["method"] == "GET"),
        "{fetched:#?}"
    );

    let text = controller.log_text();
    assert!(
        text.contains("credentials_uri") && text.contains(&uri),
        "the start-up log names the source:\n{text}"
    );
    let served = support::credentials_uri_answer(&h.sim).await;
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

/// Two controllers whose sources fail: one's metadata server does not answer (nothing listens
/// on its port), the other's STS refuses the ServiceAccount token (the role trusts another
/// subject). Each resource goes `Stalled` `CredentialsUnavailable` with a message naming the
/// source and what failed, and each controller stays up.
#[tokio::test]
async fn failing_sources_stall_resources_with_a_clear_message_and_the_controller_stays_up() {
    let ns_metadata = test_namespace("imds-down").await;
    let ns_oidc = test_namespace("oidc-refused").await;
    let work = support::work_dir(&ns_oidc.name);
    let token = support::service_account_token(&ns_oidc, "controller").await;
    let token_file = work.join("token");
    std::fs::write(&token_file, &token).expect("write the token file");
    let accounts_file = work.join("accounts.json");
    support::write_json(
        &accounts_file,
        &json!({
            "accounts": [{ "accessKeyId": "testid", "accessKeySecret": "testsecret" }],
            // The role trusts the provider, but only another ServiceAccount's tokens.
            "roles": [{ "arn": ROLE, "trustedOidcProviders": [{
                "providerArn": PROVIDER,
                "subjects": [format!("system:serviceaccount:{}:someone-else", ns_oidc.name)],
            }] }],
            "oidcProviders": [support::api_server_oidc_provider(PROVIDER)],
        }),
    );
    let sim =
        EcsSim::start_with_args(&[&format!("--accounts-file={}", accounts_file.display())]).await;
    let sim_url = sim.endpoint().to_string();
    let metadata_h = Harness::attached(ns_metadata, EcsSim::attach(&sim_url));
    let oidc_h = Harness::attached(ns_oidc, sim);
    let [closed_port] = testkit::free_ports().expect("a free port");
    let mut metadata_controller = ControllerProcess::start(
        &sim_url,
        &[("ALIBABA_CLOUD_ECS_METADATA", INSTANCE_ROLE_NAME)],
        &[
            &format!("--ecs-metadata-endpoint=http://127.0.0.1:{closed_port}"),
            &format!("--namespaces={}", metadata_h.ns.name),
        ],
        &work.join("metadata-controller.log"),
    )
    .await;
    let mut oidc_controller = ControllerProcess::start(
        &sim_url,
        &[
            ("ALIBABA_CLOUD_ROLE_ARN", ROLE),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", PROVIDER),
            (
                "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
                token_file.to_str().expect("UTF-8 path"),
            ),
        ],
        &[
            &format!("--sts-endpoint={sim_url}"),
            &format!("--namespaces={}", oidc_h.ns.name),
        ],
        &work.join("oidc-controller.log"),
    )
    .await;

    for (h, id) in [
        (&metadata_h, "i-bp1imdsdown0001"),
        (&oidc_h, "i-bp1oidcrefused1"),
    ] {
        h.seed(id, json!({ "status": "Stopped", "owner": ACCOUNT }))
            .await;
        h.create("web-1", id, json!({})).await;
    }

    let stalled = metadata_h
        .wait_for_condition("web-1", STALLED, "True", "CredentialsUnavailable")
        .await;
    let message = condition_message(&stalled, STALLED);
    for part in [
        "the controller's own credentials",
        &format!("ecs_ram_role role {INSTANCE_ROLE_NAME}"),
        "metadata server",
        "could not connect",
    ] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }

    let stalled = oidc_h
        .wait_for_condition("web-1", STALLED, "True", "CredentialsUnavailable")
        .await;
    let message = condition_message(&stalled, STALLED);
    for part in [
        &format!("oidc_role_arn {ROLE}"),
        "STS refused AssumeRoleWithOIDC",
        "AuthenticationFail.NoPermission",
    ] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    assert!(!message.contains(&token), "the token is not in the message");
    let refused = oidc_h.sim.calls(Some("AssumeRoleWithOIDC")).await;
    assert!(
        !refused.is_empty() && refused.iter().all(|c| c["httpStatus"] == 401),
        "{refused:#?}"
    );
    // No ECS call was made without credentials.
    let ecs: Vec<Value> = oidc_h
        .sim
        .calls(None)
        .await
        .into_iter()
        .filter(|c| c["product"] == "ecs")
        .collect();
    assert!(ecs.is_empty(), "{ecs:#?}");

    metadata_controller.assert_up().await;
    oidc_controller.assert_up().await;
    oidc_controller.assert_log_free_of(&[("the OIDC token", &token)]);
    assert!(
        sts_sessions_from(&oidc_h.sim, "AssumeRoleWithOIDC")
            .await
            .is_empty(),
        "no session was issued"
    );
}
