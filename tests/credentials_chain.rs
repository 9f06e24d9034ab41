//! The controller's own credentials from the default chain, through the real binary: RRSA with
//! a token the real kube-apiserver issued for a ServiceAccount, exchanged with the simulator's
//! STS (`AssumeRoleWithOIDC`, checked against the API server's service-account key), then a
//! release made with the role's temporary keys and recorded as the role's (docs/security.md).

mod support;

use ecs_instance_controller::conditions::READY;
use k8s_openapi::api::{authentication::v1::TokenRequest, core::v1::ServiceAccount};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;
use support::{Harness, call_succeeded, wait_ready};
use testkit::{sim::EcsSim, test_namespace};

const ACCOUNT: &str = "2222222222222222";
const ROLE: &str = "acs:ram::2222222222222222:role/ecs-releaser";
const PROVIDER: &str = "acs:ram::2222222222222222:oidc-provider/ack-rrsa-test";

#[tokio::test]
async fn rrsa_a_service_account_token_becomes_role_credentials_that_release_the_instance() {
    let plane = testkit::control_plane();
    let ns = test_namespace("rrsa").await;
    let work = std::env::temp_dir().join(format!("ecs-controller-{}", ns.name));
    std::fs::create_dir_all(&work).expect("a work directory");

    // The ServiceAccount's token, as the kubelet projects it for RRSA.
    let accounts: Api<ServiceAccount> = Api::namespaced(ns.client.clone(), &ns.name);
    accounts
        .patch(
            "controller",
            &PatchParams::apply("test"),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": "controller" }
            })),
        )
        .await
        .expect("a ServiceAccount");
    let request: TokenRequest = serde_json::from_value(json!({
        "spec": { "audiences": ["sts.aliyuncs.com"], "expirationSeconds": 3600 }
    }))
    .expect("a TokenRequest");
    let issued = accounts
        .create_token_request("controller", &PostParams::default(), &request)
        .await
        .expect("a token from the API server");
    let token = issued.status.expect("a token").token;
    let token_file = work.join("token");
    std::fs::write(&token_file, &token).expect("write the token file");

    // The simulator trusts the API server as the OIDC issuer of the role's provider.
    let subject = format!("system:serviceaccount:{}:controller", ns.name);
    let accounts_file = work.join("accounts.json");
    std::fs::write(
        &accounts_file,
        serde_json::to_vec(&json!({
            "accounts": [{ "accessKeyId": "testid", "accessKeySecret": "testsecret" }],
            "roles": [{ "arn": ROLE, "trustedOidcProviders": [
                { "providerArn": PROVIDER, "subjects": [subject] }
            ] }],
            "oidcProviders": [{
                "arn": PROVIDER,
                "issuerUrl": format!("{}/", plane.server),
                "clientIds": ["sts.aliyuncs.com"],
                "publicKeyFiles": [plane.run_dir.join("pki").join("sa.pub")],
            }],
        }))
        .expect("JSON"),
    )
    .expect("write the accounts file");
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
