//! STS (AssumeRole, AssumeRoleWithOIDC, GetCallerIdentity), temporary credentials on ECS calls,
//! the metadata server and the credentials URI, over raw HTTP (and one call over TLS), against a
//! simulator started with roles and OIDC providers in its accounts file.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACCOUNT_A: &str = "1111111111111111";
const ACCOUNT_B: &str = "2222222222222222";
const ACCOUNT_C: &str = "3333333333333333";
/// In account B, trusted by account A.
const OPERATOR: &str = "acs:ram::2222222222222222:role/operator";
/// Trusted by the AccessKeyId `carol` only, with an ExternalId and a 12-hour maximum.
const KEYED: &str = "acs:ram::2222222222222222:role/keyed";
/// Trusted by the OIDC providers.
const RRSA: &str = "acs:ram::2222222222222222:role/rrsa";
const INSTANCE_ROLE: &str = "acs:ram::2222222222222222:role/EcsInstanceRole";
const PROVIDER: &str = "acs:ram::2222222222222222:oidc-provider/ack-rrsa-test";
const JWKS_PROVIDER: &str = "acs:ram::2222222222222222:oidc-provider/jwks-test";
const ISSUER: &str = "https://oidc.test.invalid/clusters/c1";
const AUDIENCE: &str = "sts.aliyuncs.com";
const SUBJECT: &str = "system:serviceaccount:ns1:controller";
const ISSUER_KEY: &str = "test-only-oidc-issuer.key";
const OTHER_KEY: &str = "test-only-other-issuer.key";
const REGION: &str = "cn-hangzhou";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn creds(access_key_id: &str, secret: &str) -> Credentials {
    Credentials {
        access_key_id: access_key_id.into(),
        secret: secret.into(),
        token: None,
    }
}

fn alice() -> Credentials {
    creds("alice", "alice-secret")
}
fn bob() -> Credentials {
    creds("bob", "bob-secret")
}
fn carol() -> Credentials {
    creds("carol", "carol-secret")
}

fn config() -> Value {
    json!({
        "accounts": [
            {"accessKeyId": "alice", "accessKeySecret": "alice-secret", "accountId": ACCOUNT_A, "userName": "alice"},
            {"accessKeyId": "bob", "accessKeySecret": "bob-secret", "accountId": ACCOUNT_B},
            {"accessKeyId": "carol", "accessKeySecret": "carol-secret", "accountId": ACCOUNT_C}
        ],
        "roles": [
            {"arn": OPERATOR, "trustedAccountIds": [ACCOUNT_A]},
            {"arn": KEYED, "trustedAccessKeyIds": ["carol"], "externalId": "ext-123",
             "maxSessionDuration": 43200},
            {"arn": RRSA, "trustedOidcProviders": [
                {"providerArn": PROVIDER, "subjects": [SUBJECT]},
                {"providerArn": JWKS_PROVIDER}
            ]},
            {"arn": INSTANCE_ROLE}
        ],
        "oidcProviders": [
            {"arn": PROVIDER, "issuerUrl": ISSUER, "clientIds": [AUDIENCE],
             "publicKeyFiles": [fixture("test-only-oidc-issuer.pub")]},
            {"arn": JWKS_PROVIDER, "issuerUrl": ISSUER, "clientIds": ["another-client", AUDIENCE],
             "jwksFile": fixture("test-only-oidc-issuer.jwks.json")}
        ],
        "metadata": {"roleArn": INSTANCE_ROLE}
    })
}

/// A directory of its own for each test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ecs-sim-sts-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A simulator with [`config`], plus `extra` flags; instances of accounts A, B, C and shared.
async fn start(extra: &[&str]) -> (EcsSim, TempDir) {
    let dir = TempDir::new();
    let accounts = dir.0.join("accounts.json");
    std::fs::write(&accounts, config().to_string()).unwrap();
    let mut args = vec!["--accounts-file", accounts.to_str().unwrap()];
    args.extend_from_slice(extra);
    let sim = EcsSim::start_with_args(&args).await;
    sim.seed(json!([
        {"instanceId": "i-ownedbyalice", "regionId": REGION, "owner": "alice"},
        {"instanceId": "i-ownedbybob01", "regionId": REGION, "owner": "bob"},
        {"instanceId": "i-ownedbyacctb", "regionId": REGION, "owner": ACCOUNT_B},
        {"instanceId": "i-ownedbycarol", "regionId": REGION, "owner": "carol"},
        {"instanceId": "i-sharedshared", "regionId": REGION}
    ]))
    .await;
    (sim, dir)
}

/// A V1-signed STS call (GET).
async fn sts(sim: &EcsSim, creds: &Credentials, action: &str, params: &[(&str, &str)]) -> Answer {
    let mut all = v1_params(action, params, creds);
    set(&mut all, "Version", "2015-04-01");
    let signed = v1_sign("GET", all, &creds.secret);
    send_v1(sim, "GET", &signed).await
}

async fn assume(sim: &EcsSim, creds: &Credentials, role: &str, extra: &[(&str, &str)]) -> Answer {
    let mut params = vec![("RoleArn", role), ("RoleSessionName", "test-session")];
    params.extend_from_slice(extra);
    sts(sim, creds, "AssumeRole", &params).await
}

/// AssumeRoleWithOIDC as the credentials libraries send it: no signature, parameters in a form.
async fn assume_with_oidc(sim: &EcsSim, params: &[(&str, &str)]) -> Answer {
    let mut all: Vec<(String, String)> = vec![
        ("Action".into(), "AssumeRoleWithOIDC".into()),
        ("Version".into(), "2015-04-01".into()),
        ("Format".into(), "JSON".into()),
        ("Timestamp".into(), now_timestamp()),
    ];
    all.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    send_v1(sim, "POST", &all).await
}

async fn oidc_with(sim: &EcsSim, provider: &str, role: &str, token: &str) -> Answer {
    assume_with_oidc(
        sim,
        &[
            ("RoleArn", role),
            ("OIDCProviderArn", provider),
            ("OIDCToken", token),
            ("RoleSessionName", "rrsa-session"),
        ],
    )
    .await
}

fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Claims RRSA's kube-apiserver would put in a projected service-account token.
fn claims() -> Value {
    let now = now_secs();
    json!({"iss": ISSUER, "sub": SUBJECT, "aud": [AUDIENCE], "iat": now, "nbf": now, "exp": now + 600})
}

fn sign(key_file: &str, kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(&std::fs::read(fixture(key_file)).unwrap()).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn with(mut value: Value, field: &str, new: Value) -> Value {
    value[field] = new;
    value
}

fn temporary(answer: &Answer) -> Credentials {
    assert_eq!(answer.status, 200, "{}", answer.body);
    let c = &answer.json()["Credentials"];
    Credentials {
        access_key_id: c["AccessKeyId"].as_str().unwrap().into(),
        secret: c["AccessKeySecret"].as_str().unwrap().into(),
        token: Some(c["SecurityToken"].as_str().unwrap().into()),
    }
}

async fn describe_ids(sim: &EcsSim, creds: &Credentials) -> Vec<String> {
    let answer = v1_as(sim, creds, "DescribeInstances", &[("RegionId", REGION)]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let mut ids: Vec<String> = answer.json()["Instances"]["Instance"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["InstanceId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn expect(answer: &Answer, status: u16, code: &str) {
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (status, code),
        "{}",
        answer.body
    );
}

async fn admin(sim: &EcsSim, method: reqwest::Method, path: &str) -> (u16, Value) {
    let response = http()
        .request(method, format!("{}/_sim/{path}", sim.endpoint()))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn parse_time(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_second()
}

#[tokio::test]
async fn assume_role_gives_keys_that_see_the_role_accounts_instances() {
    let (sim, _dir) = start(&[]).await;
    // Plain keys see their own instances and the shared one.
    assert_eq!(
        describe_ids(&sim, &alice()).await,
        ["i-ownedbyalice", "i-sharedshared"]
    );

    let before = now_secs();
    let answer = assume(&sim, &alice(), OPERATOR, &[("DurationSeconds", "1200")]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.content_type, "application/json;charset=utf-8");
    let body = answer.json();
    assert!(body["RequestId"].as_str().unwrap().len() >= 32);
    let role_id = body["AssumedRoleUser"]["AssumedRoleId"].as_str().unwrap();
    let (id, session) = role_id.split_once(':').unwrap();
    assert!(
        id.len() == 18 && id.bytes().all(|b| b.is_ascii_digit()),
        "{role_id}"
    );
    assert_eq!(session, "test-session");
    assert_eq!(
        body["AssumedRoleUser"]["Arn"],
        format!("acs:ram::{ACCOUNT_B}:role/operator/test-session")
    );
    let credentials = &body["Credentials"];
    assert!(
        credentials["AccessKeyId"]
            .as_str()
            .unwrap()
            .starts_with("STS.")
    );
    assert!(!credentials["AccessKeySecret"].as_str().unwrap().is_empty());
    assert!(credentials["SecurityToken"].as_str().unwrap().len() > 100);
    let expiration = credentials["Expiration"].as_str().unwrap();
    assert!(
        expiration.ends_with('Z') && expiration.len() == 20,
        "{expiration}"
    );
    let lifetime = parse_time(expiration) - before;
    assert!((1199..=1201).contains(&lifetime), "{lifetime}");

    // The temporary keys act in the role's account: instances of account B and of its keys.
    let temp = temporary(&answer);
    assert_eq!(
        describe_ids(&sim, &temp).await,
        ["i-ownedbyacctb", "i-ownedbybob01", "i-sharedshared"]
    );
    // Mutating calls too, and V3 signing with the token in x-acs-security-token.
    let stop = v1_as(
        &sim,
        &temp,
        "StopInstance",
        &[("InstanceId", "i-ownedbybob01")],
    )
    .await;
    assert_eq!(stop.status, 200, "{}", stop.body);
    let mut v3 = V3::new(&sim, "DescribeInstances", &[("RegionId", REGION)]);
    v3.creds = temp.clone();
    let answer = v3.send().await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["TotalCount"], 3);
    // A plain key of account B sees its own instances and its account's; carol only hers.
    assert_eq!(
        describe_ids(&sim, &bob()).await,
        ["i-ownedbyacctb", "i-ownedbybob01", "i-sharedshared"]
    );
    assert_eq!(
        describe_ids(&sim, &carol()).await,
        ["i-ownedbycarol", "i-sharedshared"]
    );
}

#[tokio::test]
async fn who_may_assume_which_role() {
    let (sim, _dir) = start(&[]).await;
    // Account C is not trusted by OPERATOR; account B (the role's own) neither.
    for caller in [carol(), bob()] {
        let answer = assume(&sim, &caller, OPERATOR, &[]).await;
        expect(&answer, 403, "NoPermission");
        assert_eq!(
            answer.json()["Message"],
            "You are not authorized to do this action. You should be authorized by RAM."
        );
        assert!(
            answer.json()["Recommend"]
                .as_str()
                .unwrap()
                .contains("product=Sts")
        );
    }
    // KEYED trusts the AccessKeyId carol, not her account: alice is refused.
    expect(
        &assume(&sim, &alice(), KEYED, &[("ExternalId", "ext-123")]).await,
        403,
        "NoPermission",
    );
    // Its ExternalId is required and must match.
    expect(
        &assume(&sim, &carol(), KEYED, &[]).await,
        403,
        "NoPermission",
    );
    expect(
        &assume(&sim, &carol(), KEYED, &[("ExternalId", "ext-999")]).await,
        403,
        "NoPermission",
    );
    let ok = assume(&sim, &carol(), KEYED, &[("ExternalId", "ext-123")]).await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    // Role chaining: temporary keys of account A's... alice's assumed OPERATOR (account B) may
    // assume nothing that trusts only account A.
    let chained = temporary(&assume(&sim, &alice(), OPERATOR, &[]).await);
    expect(
        &assume(&sim, &chained, OPERATOR, &[]).await,
        403,
        "NoPermission",
    );

    // Unknown role, malformed ARN, missing parameters.
    let answer = assume(&sim, &alice(), "acs:ram::2222222222222222:role/nope", &[]).await;
    expect(&answer, 404, "EntityNotExist.Role");
    assert_eq!(answer.json()["Message"], "The specified Role not exists.");
    let answer = assume(&sim, &alice(), "arn:aws:iam::1:role/x", &[]).await;
    expect(&answer, 400, "InvalidParameter.RoleArn");
    assert_eq!(
        answer.json()["Message"],
        "The parameter RoleArn is wrongly formed."
    );
    expect(
        &sts(&sim, &alice(), "AssumeRole", &[("RoleSessionName", "s1")]).await,
        400,
        "MissingRoleArn",
    );
    expect(
        &sts(&sim, &alice(), "AssumeRole", &[("RoleArn", OPERATOR)]).await,
        400,
        "MissingRoleSessionName",
    );
    let mut params = vec![("RoleArn", OPERATOR), ("RoleSessionName", "x")];
    expect(
        &sts(&sim, &alice(), "AssumeRole", &params).await,
        400,
        "InvalidParameter.RoleSessionName",
    );
    params[1] = ("RoleSessionName", "no spaces allowed");
    expect(
        &sts(&sim, &alice(), "AssumeRole", &params).await,
        400,
        "InvalidParameter.RoleSessionName",
    );
    expect(
        &assume(&sim, &alice(), OPERATOR, &[("Policy", "{not json")]).await,
        400,
        "InvalidParameter.PolicyGrammar",
    );
    let policy =
        r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":["ecs:*"],"Resource":["*"]}]}"#;
    let answer = assume(&sim, &alice(), OPERATOR, &[("Policy", policy)]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    // Unknown keys and bad signatures are the gateway's answers, as for ECS.
    expect(
        &assume(&sim, &creds("nobody", "x"), OPERATOR, &[]).await,
        404,
        "InvalidAccessKeyId.NotFound",
    );
    expect(
        &assume(&sim, &creds("alice", "wrong"), OPERATOR, &[]).await,
        400,
        "SignatureDoesNotMatch",
    );
    // The API version picks the product: STS actions are unknown to ECS and the other way round.
    expect(
        &v1_as(&sim, &alice(), "AssumeRole", &[("RoleArn", OPERATOR)]).await,
        404,
        "InvalidApi.NotFound",
    );
    expect(
        &sts(&sim, &alice(), "DescribeInstances", &[("RegionId", REGION)]).await,
        404,
        "InvalidApi.NotFound",
    );
}

#[tokio::test]
async fn duration_seconds_range() {
    let (sim, _dir) = start(&[]).await;
    for bad in ["899", "3601", "abc", "-900", "1e3"] {
        let answer = assume(&sim, &alice(), OPERATOR, &[("DurationSeconds", bad)]).await;
        expect(&answer, 400, "InvalidParameter.DurationSeconds");
        assert_eq!(
            answer.json()["Message"],
            "The Min/Max value of DurationSeconds is 15min/1hr."
        );
    }
    for good in ["900", "3600"] {
        let answer = assume(&sim, &alice(), OPERATOR, &[("DurationSeconds", good)]).await;
        assert_eq!(answer.status, 200, "{good}: {}", answer.body);
    }
    // KEYED's MaxSessionDuration is 12 hours.
    let before = now_secs();
    let answer = assume(
        &sim,
        &carol(),
        KEYED,
        &[("ExternalId", "ext-123"), ("DurationSeconds", "43200")],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let expiration = answer.json()["Credentials"]["Expiration"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!((43_199..=43_201).contains(&(parse_time(&expiration) - before)));
    expect(
        &assume(
            &sim,
            &carol(),
            KEYED,
            &[("ExternalId", "ext-123"), ("DurationSeconds", "43201")],
        )
        .await,
        400,
        "InvalidParameter.DurationSeconds",
    );
}

#[tokio::test]
async fn assume_role_with_oidc_checks_the_token() {
    let (sim, _dir) = start(&[]).await;
    let good = sign(ISSUER_KEY, None, &claims());
    let answer = oidc_with(&sim, PROVIDER, RRSA, &good).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    let info = &body["OIDCTokenInfo"];
    assert_eq!(info["Subject"], SUBJECT);
    assert_eq!(info["Issuer"], ISSUER);
    assert_eq!(info["ClientIds"], AUDIENCE);
    assert!(info["ExpirationTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        body["AssumedRoleUser"]["Arn"],
        format!("acs:ram::{ACCOUNT_B}:role/rrsa/rrsa-session")
    );
    // The credentials work on ECS, in the role's account.
    let temp = temporary(&answer);
    assert_eq!(
        describe_ids(&sim, &temp).await,
        ["i-ownedbyacctb", "i-ownedbybob01", "i-sharedshared"]
    );
    // The same key as a JWKS, picked by kid, for a provider trusted for every subject.
    let other_subject = with(claims(), "sub", json!("system:serviceaccount:x:y"));
    let answer = oidc_with(
        &sim,
        JWKS_PROVIDER,
        RRSA,
        &sign(ISSUER_KEY, Some("test-only-key-1"), &other_subject),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.json()["OIDCTokenInfo"]["ClientIds"],
        "sts.aliyuncs.com"
    );

    let cases: Vec<(String, &str, u16, &str, &str)> = vec![
        (
            sign(
                ISSUER_KEY,
                None,
                &with(claims(), "exp", json!(now_secs() - 1)),
            ),
            PROVIDER,
            401,
            "AuthenticationFail.OIDCToken.Expired",
            "This JsonWebToken is expired.",
        ),
        (
            sign(
                ISSUER_KEY,
                None,
                &with(claims(), "aud", json!(["someone-else"])),
            ),
            PROVIDER,
            401,
            "AuthenticationFail.OIDCToken.AudienceNotMatch",
            "Invalid audience.",
        ),
        (
            sign(
                ISSUER_KEY,
                None,
                &with(claims(), "iss", json!("https://other.invalid")),
            ),
            PROVIDER,
            401,
            "AuthenticationFail.OIDCToken.IssuerNotMatch",
            "The issuer in the OIDC Token doesn't match the OIDC Provider registered.",
        ),
        (
            sign(OTHER_KEY, None, &claims()),
            PROVIDER,
            401,
            "AuthenticationFail.OIDCToken.InvalidSignature",
            "OIDC token validate failed: invalid signature.",
        ),
        (
            sign(OTHER_KEY, Some("test-only-key-1"), &claims()),
            JWKS_PROVIDER,
            401,
            "AuthenticationFail.OIDCToken.InvalidSignature",
            "OIDC token validate failed: invalid signature.",
        ),
        (
            sign(
                ISSUER_KEY,
                None,
                &with(claims(), "sub", json!("system:serviceaccount:ns1:other")),
            ),
            PROVIDER,
            401,
            "AuthenticationFail.NoPermission",
            "There is no permission",
        ),
        (
            sign(
                ISSUER_KEY,
                None,
                &with(claims(), "nbf", json!(now_secs() + 600)),
            ),
            PROVIDER,
            401,
            "AuthenticationFail.OIDCToken.Invalid",
            "The Jwt content is invalid that cannot be recognized.",
        ),
        (
            good.clone(),
            "acs:ram::2222222222222222:oidc-provider/unknown",
            401,
            "AuthenticationFail.NoPermission",
            "No such OIDC Provider registered.",
        ),
        (
            good.rsplit_once('.').unwrap().0.to_owned(),
            PROVIDER,
            401,
            "AuthenticationFail.OIDCToken.Invalid",
            "The number of Jwt field should be divided into 3 parts with '.' .",
        ),
        (
            format!("{}.e30.c2ln", base64url(r#"{"alg":"HS256","typ":"JWT"}"#)),
            PROVIDER,
            401,
            "AuthenticationFail.OIDCToken.Invalid",
            "The algorithm HS256 that be specified in Jwt header is unknown.",
        ),
    ];
    for (token, provider, status, code, message) in &cases {
        let answer = oidc_with(&sim, provider, RRSA, token).await;
        expect(&answer, *status, code);
        assert_eq!(answer.json()["Message"], *message, "{code}");
    }
    // An empty token, an unknown role, a role that does not trust the provider.
    let answer = assume_with_oidc(
        &sim,
        &[
            ("RoleArn", RRSA),
            ("OIDCProviderArn", PROVIDER),
            ("RoleSessionName", "s1"),
        ],
    )
    .await;
    expect(&answer, 401, "AuthenticationFail.OIDCToken.Invalid");
    assert_eq!(answer.json()["Message"], "The OIDCToken can not empty.");
    let answer = oidc_with(&sim, PROVIDER, "acs:ram::2222222222222222:role/nope", &good).await;
    expect(&answer, 404, "EntityNotExist.Role");
    assert_eq!(
        answer.json()["Message"],
        "The role not exists: acs:ram::2222222222222222:role/nope."
    );
    expect(
        &oidc_with(&sim, PROVIDER, OPERATOR, &good).await,
        401,
        "AuthenticationFail.NoPermission",
    );
    // No signature is needed, and the token never reaches the call log.
    let calls = sim.calls(Some("AssumeRoleWithOIDC")).await;
    assert!(!calls.is_empty());
    for call in &calls {
        assert!(call["accessKeyId"].is_null(), "{call}");
        assert_eq!(call["product"], "sts");
        if let Some(token) = call["params"].get("OIDCToken") {
            assert_eq!(token, "<redacted>");
        }
    }
    let log = serde_json::to_string(&calls).unwrap();
    assert!(!log.contains(&good[..40]));
}

fn base64url(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn get_caller_identity_for_users_and_assumed_roles() {
    let (sim, _dir) = start(&[]).await;
    let answer = sts(&sim, &alice(), "GetCallerIdentity", &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["AccountId"], ACCOUNT_A);
    assert_eq!(body["IdentityType"], "RAMUser");
    assert_eq!(body["Arn"], format!("acs:ram::{ACCOUNT_A}:user/alice"));
    let user_id = body["UserId"].as_str().unwrap();
    assert_eq!(user_id.len(), 16);
    assert_eq!(body["PrincipalId"], user_id);
    assert!(body.get("RoleId").is_none());
    // A key without userName is named by its AccessKeyId.
    let body = sts(&sim, &bob(), "GetCallerIdentity", &[]).await.json();
    assert_eq!(body["Arn"], format!("acs:ram::{ACCOUNT_B}:user/bob"));

    let assumed = assume(&sim, &alice(), OPERATOR, &[]).await.json();
    let temp = temporary(&assume(&sim, &alice(), OPERATOR, &[]).await);
    let answer = sts(&sim, &temp, "GetCallerIdentity", &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["AccountId"], ACCOUNT_B);
    assert_eq!(body["IdentityType"], "AssumedRoleUser");
    assert_eq!(
        body["Arn"],
        format!("acs:ram::{ACCOUNT_B}:assumed-role/operator/test-session")
    );
    assert_eq!(
        body["PrincipalId"],
        assumed["AssumedRoleUser"]["AssumedRoleId"]
    );
    let role_id = body["RoleId"].as_str().unwrap();
    assert!(
        body["PrincipalId"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{role_id}:"))
    );
    // V3 signing works for STS too (x-acs-version 2015-04-01). Unlike ECS, STS answers JSON
    // when no Format is given; XML on request.
    let mut v3 = V3::new(&sim, "GetCallerIdentity", &[]).header("x-acs-version", "2015-04-01");
    v3.creds = temp.clone();
    let answer = v3.send().await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["IdentityType"], "AssumedRoleUser");
    let mut params = v1_params("GetCallerIdentity", &[], &alice());
    set(&mut params, "Version", "2015-04-01");
    remove(&mut params, "Format");
    let default = send_v1(&sim, "GET", &v1_sign("GET", params.clone(), "alice-secret")).await;
    assert_eq!(default.content_type, "application/json;charset=utf-8");
    assert_eq!(default.json()["IdentityType"], "RAMUser");
    set(&mut params, "Format", "XML");
    set(&mut params, "SignatureNonce", &nonce());
    let xml = send_v1(&sim, "GET", &v1_sign("GET", params, "alice-secret")).await;
    assert_eq!(xml.status, 200);
    assert!(
        xml.body.contains("<GetCallerIdentityResponse><RequestId>")
            && xml.body.contains("<IdentityType>RAMUser</IdentityType>"),
        "{}",
        xml.body
    );
}

#[tokio::test]
async fn temporary_keys_expire_and_bad_tokens_are_refused() {
    // Every temporary credential lives at most 2 seconds, whatever DurationSeconds says.
    let (sim, _dir) = start(&["--sts-max-lifetime-secs", "2"]).await;
    let before = now_secs();
    let answer = assume(&sim, &alice(), OPERATOR, &[("DurationSeconds", "3600")]).await;
    let expiration = answer.json()["Credentials"]["Expiration"]
        .as_str()
        .unwrap()
        .to_owned();
    // Issue times are whole seconds: the second may tick between `before` and the issue.
    assert!(parse_time(&expiration) - before <= 3, "{expiration}");
    let temp = temporary(&answer);
    assert_eq!(describe_ids(&sim, &temp).await.len(), 3);

    // Token checks while valid.
    let other = temporary(&assume(&sim, &alice(), OPERATOR, &[]).await);
    let mut wrong = temp.clone();
    wrong.token = other.token.clone();
    let answer = v1_as(&sim, &wrong, "DescribeInstances", &[("RegionId", REGION)]).await;
    expect(&answer, 400, "InvalidSecurityToken.MismatchWithAccessKey");
    wrong.token = Some("CAISnotatokenweissued".into());
    let answer = v1_as(&sim, &wrong, "DescribeInstances", &[("RegionId", REGION)]).await;
    expect(&answer, 400, "InvalidSecurityToken.Malformed");
    assert_eq!(
        answer.json()["Message"],
        "Specified SecurityToken is malformed."
    );
    wrong.token = None;
    let answer = v1_as(&sim, &wrong, "DescribeInstances", &[("RegionId", REGION)]).await;
    expect(&answer, 400, "MissingSecurityToken");

    tokio::time::sleep(Duration::from_millis(3100)).await;
    let answer = v1_as(&sim, &temp, "DescribeInstances", &[("RegionId", REGION)]).await;
    expect(&answer, 400, "InvalidSecurityToken.Expired");
    assert_eq!(
        answer.json()["Message"],
        "Specified SecurityToken is expired."
    );
    // STS refuses them the same way.
    expect(
        &sts(&sim, &temp, "GetCallerIdentity", &[]).await,
        400,
        "InvalidSecurityToken.Expired",
    );

    // The admin API lists sessions without secrets, expires and forgets them.
    let (sim, _dir2) = start(&[]).await;
    let temp = temporary(&assume(&sim, &alice(), OPERATOR, &[]).await);
    let (status, list) = admin(&sim, reqwest::Method::GET, "sts/sessions").await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["accessKeyId"], temp.access_key_id.as_str());
    assert_eq!(list[0]["roleArn"], OPERATOR);
    assert_eq!(list[0]["source"], "AssumeRole");
    assert_eq!(list[0]["expired"], false);
    let text = list.to_string();
    assert!(!text.contains(&temp.secret) && !text.contains(temp.token.as_deref().unwrap()));
    let path = format!("sts/sessions/{}/expire", temp.access_key_id);
    assert_eq!(admin(&sim, reqwest::Method::POST, &path).await.0, 200);
    expect(
        &v1_as(&sim, &temp, "DescribeInstances", &[("RegionId", REGION)]).await,
        400,
        "InvalidSecurityToken.Expired",
    );
    let (_, list) = admin(&sim, reqwest::Method::GET, "sts/sessions").await;
    assert_eq!(list[0]["expired"], true);
    let path = format!("sts/sessions/{}", temp.access_key_id);
    let (status, removed) = admin(&sim, reqwest::Method::DELETE, &path).await;
    assert_eq!((status, &removed["removed"]), (200, &json!(true)));
    expect(
        &v1_as(&sim, &temp, "DescribeInstances", &[("RegionId", REGION)]).await,
        404,
        "InvalidAccessKeyId.NotFound",
    );
    assert_eq!(
        admin(&sim, reqwest::Method::POST, "sts/sessions/STS.nope/expire")
            .await
            .0,
        404
    );
    // The call log holds STS calls, without secrets or tokens.
    let calls = sim.calls(Some("AssumeRole")).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["product"], "sts");
    assert_eq!(calls[0]["accessKeyId"], "alice");
    let log = serde_json::to_string(&sim.calls(None).await).unwrap();
    assert!(!log.contains(&temp.secret) && !log.contains(temp.token.as_deref().unwrap()));
    // A reset forgets temporary credentials.
    let temp = temporary(&assume(&sim, &alice(), OPERATOR, &[]).await);
    assert_eq!(admin(&sim, reqwest::Method::POST, "reset").await.0, 200);
    expect(
        &v1_as(&sim, &temp, "DescribeInstances", &[("RegionId", REGION)]).await,
        404,
        "InvalidAccessKeyId.NotFound",
    );
}

/// A GET through the simulator used as an HTTP proxy (absolute-form request line), as the
/// credentials libraries reach 100.100.100.200 when given a proxy.
async fn metadata_get(sim: &EcsSim, path: &str, token: Option<&str>) -> Answer {
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(sim.endpoint()).unwrap())
        .build()
        .unwrap();
    let mut request = client.get(format!("http://100.100.100.200{path}"));
    if let Some(token) = token {
        request = request.header("X-aliyun-ecs-metadata-token", token);
    }
    Answer::from(request.send().await.unwrap()).await
}

async fn metadata_token(sim: &EcsSim, ttl: Option<&str>) -> Answer {
    let mut request = http().put(format!("{}/latest/api/token", sim.endpoint()));
    if let Some(ttl) = ttl {
        request = request.header("X-aliyun-ecs-metadata-token-ttl-seconds", ttl);
    }
    Answer::from(request.send().await.unwrap()).await
}

const ROLE_LIST: &str = "/latest/meta-data/ram/security-credentials/";

#[tokio::test]
async fn metadata_server_in_normal_and_hardened_mode() {
    let (sim, _dir) = start(&[]).await;
    // Normal mode: no token needed.
    let answer = metadata_get(&sim, ROLE_LIST, None).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "EcsInstanceRole")
    );
    // The token handshake.
    for bad in [None, Some("0"), Some("21601"), Some("abc")] {
        assert_eq!(metadata_token(&sim, bad).await.status, 400, "{bad:?}");
    }
    let token = metadata_token(&sim, Some("21600")).await;
    assert_eq!(token.status, 200);
    let token = token.body;
    assert!(token.len() >= 32);
    let answer = metadata_get(&sim, ROLE_LIST, Some(&token)).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "EcsInstanceRole")
    );
    // A token that was never issued is refused even in normal mode.
    assert_eq!(
        metadata_get(&sim, ROLE_LIST, Some("forged")).await.status,
        401
    );

    let path = format!("{ROLE_LIST}EcsInstanceRole");
    let answer = metadata_get(&sim, &path, Some(&token)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["Code"], "Success");
    for field in [
        "AccessKeySecret",
        "SecurityToken",
        "LastUpdated",
        "Expiration",
    ] {
        assert!(
            body[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}"
        );
    }
    let lifetime = parse_time(body["Expiration"].as_str().unwrap()) - now_secs();
    assert!(lifetime > 3600, "{lifetime}");
    let served = Credentials {
        access_key_id: body["AccessKeyId"].as_str().unwrap().into(),
        secret: body["AccessKeySecret"].as_str().unwrap().into(),
        token: Some(body["SecurityToken"].as_str().unwrap().into()),
    };
    assert_eq!(describe_ids(&sim, &served).await.len(), 3);
    let caller = sts(&sim, &served, "GetCallerIdentity", &[]).await.json();
    assert_eq!(
        caller["Arn"],
        format!("acs:ram::{ACCOUNT_B}:assumed-role/EcsInstanceRole/ecs-instance-metadata")
    );
    // The same credentials until rotated; the old ones stay valid until they expire.
    let again = metadata_get(&sim, &path, None).await.json();
    assert_eq!(again["AccessKeyId"], body["AccessKeyId"]);
    let (status, rotated) = admin(&sim, reqwest::Method::POST, "metadata/rotate").await;
    assert_eq!(status, 200);
    assert_ne!(rotated["accessKeyId"], body["AccessKeyId"]);
    let after = metadata_get(&sim, &path, None).await.json();
    assert_eq!(after["AccessKeyId"], rotated["accessKeyId"]);
    assert_eq!(describe_ids(&sim, &served).await.len(), 3);
    // Unknown role names and other paths.
    assert_eq!(
        metadata_get(&sim, &format!("{ROLE_LIST}OtherRole"), None)
            .await
            .status,
        404
    );
    // The credentials URI serves the same credentials in its own form.
    let uri = Answer::from(
        http()
            .get(format!("{}/credentials-uri", sim.endpoint()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(uri.status, 200);
    let uri = uri.json();
    assert_eq!(uri["Code"], "Success");
    assert_eq!(uri["AccessKeyId"], rotated["accessKeyId"]);
    // Metadata calls are logged without credentials.
    let calls = sim.calls(Some("MetadataCredentials")).await;
    assert!(calls.len() >= 3);
    assert_eq!(calls[0]["product"], "metadata");
    let log = serde_json::to_string(&sim.calls(None).await).unwrap();
    assert!(!log.contains(&served.secret) && !log.contains(&token));

    // Hardened mode: a GET without a token is refused; with one it is answered.
    let (sim, _dir) = start(&["--metadata-require-token"]).await;
    assert_eq!(metadata_get(&sim, ROLE_LIST, None).await.status, 401);
    assert_eq!(metadata_get(&sim, &path, None).await.status, 401);
    let token = metadata_token(&sim, Some("1")).await.body;
    let answer = metadata_get(&sim, ROLE_LIST, Some(&token)).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "EcsInstanceRole")
    );
    // A token expires after its TTL.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        metadata_get(&sim, ROLE_LIST, Some(&token)).await.status,
        401
    );
}

#[tokio::test]
async fn https_on_the_same_port() {
    let dir = TempDir::new();
    let ca = dir.0.join("ca.pem");
    let sim = EcsSim::start_with_args(&["--tls-ca-out", ca.to_str().unwrap()]).await;
    let pem = std::fs::read_to_string(&ca).unwrap();
    let der = {
        use base64::Engine as _;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    };
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let addr = sim.endpoint().trim_start_matches("http://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(
        format!("GET /_sim/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#"{"status":"ok"}"#), "{response}");
    // Plain HTTP still works on the same port.
    let health = http()
        .get(format!("{}/_sim/health", sim.endpoint()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test]
async fn invalid_iam_configurations_stop_the_simulator() {
    let dir = TempDir::new();
    let cases = [
        (
            json!({"roles": [{"arn": "acs:ram::12:role/"}]}),
            "is not acs:ram::<accountId>:role/<name>",
        ),
        (
            json!({"roles": [{"arn": OPERATOR, "maxSessionDuration": 100}]}),
            "maxSessionDuration must be 3600..43200",
        ),
        (
            json!({"roles": [{"arn": OPERATOR, "trustedOidcProviders": [{"providerArn": PROVIDER}]}]}),
            "which is not configured",
        ),
        (
            json!({"oidcProviders": [{"arn": PROVIDER, "issuerUrl": ISSUER, "clientIds": [AUDIENCE]}]}),
            "has no key",
        ),
        (
            json!({"oidcProviders": [{"arn": PROVIDER, "issuerUrl": ISSUER, "clientIds": [AUDIENCE],
                   "publicKeyFiles": [fixture("README.md")]}]}),
            "no PEM public key found",
        ),
        (
            json!({"accounts": [{"accessKeyId": "a", "accessKeySecret": "s", "accountId": "12x"}]}),
            "is not a numeric account ID",
        ),
        (
            json!({"metadata": {"roleArn": "nope"}}),
            "is not a role ARN",
        ),
    ];
    for (config, message) in cases {
        let path = dir.0.join("bad.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let output = tokio::process::Command::new(testkit::sim::sim_binary())
            .args(["--listen", "127.0.0.1:0", "--accounts-file"])
            .arg(&path)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{config}");
        assert!(stderr.contains(message), "{config}: {stderr}");
    }
}
