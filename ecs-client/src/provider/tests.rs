//! The providers against a tiny HTTP server on 127.0.0.1 (`test_server`), with the tokio clock
//! moved forward between exchanges (`jump`): time is paused only while it is advanced, so real
//! HTTP exchanges never see a paused clock (which would fire their timeouts at once).

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::join_all;
use serde_json::json;

use super::test_server::{Request, Response, TestServer};
use super::*;
use crate::signing::v1;

const ROLE: &str = "acs:ram::123:role/x";
const OIDC_PROVIDER: &str = "acs:ram::123:oidc-provider/ack-rrsa";

/// Moves the tokio clock forward by `by` (time runs normally again afterwards).
async fn jump(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).map(OsString::from)
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "ecs-client-provider-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn expiry_in(secs: i64) -> String {
    jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(secs))
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The four fields of credentials number `i`.
fn creds_json(i: usize, expires_in: i64) -> serde_json::Value {
    json!({
        "AccessKeyId": format!("STS.id{i}"),
        "AccessKeySecret": format!("SECRETVALUE{i}"),
        "SecurityToken": format!("TOKENVALUE{i}"),
        "Expiration": expiry_in(expires_in),
    })
}

fn creds(i: usize) -> Credentials {
    Credentials::new(
        format!("STS.id{i}"),
        format!("SECRETVALUE{i}"),
        Some(format!("TOKENVALUE{i}")),
    )
}

fn sts_answer(i: usize, expires_in: i64) -> Response {
    Response::new(
        200,
        json!({
            "RequestId": format!("req-{i}"),
            "AssumedRoleUser": {"Arn": format!("{ROLE}/s"), "AssumedRoleId": "1:s"},
            "Credentials": creds_json(i, expires_in),
        })
        .to_string(),
    )
}

fn uri_answer(i: usize, expires_in: i64) -> Response {
    let mut body = creds_json(i, expires_in);
    body["Code"] = json!("Success");
    Response::new(200, body.to_string())
}

/// A server that answers `answer(n)` to its n-th request (from 1).
async fn counting_server(
    answer: impl Fn(usize, &Request) -> Response + Send + Sync + 'static,
) -> TestServer {
    let n = AtomicUsize::new(0);
    TestServer::start(move |req| answer(n.fetch_add(1, Ordering::SeqCst) + 1, req)).await
}

/// Waits (real time, bounded) until the server has seen `n` requests and the provider has
/// taken the answer in.
async fn wait_for_requests(server: &TestServer, p: &CredentialsProvider, n: usize) {
    for _ in 0..400 {
        if server.count() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(server.count() >= n, "{} of {n} requests", server.count());
    settle(p).await;
}

/// Whether a renewal is in flight.
fn in_flight(p: &CredentialsProvider) -> bool {
    match &p.inner.how {
        How::Renewing(renewer) => renewer.lock().in_flight.is_some(),
        How::Fixed(_) => false,
    }
}

/// Waits (real time, bounded) until no renewal is in flight.
async fn settle(p: &CredentialsProvider) {
    for _ in 0..400 {
        if !in_flight(p) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("a renewal is still in flight");
}

fn uri_provider(server: &TestServer) -> CredentialsProvider {
    let uri = format!("{}/creds?auth=SECRETQUERY", server.url());
    default_chain_from(
        &ChainOptions::default(),
        env(&[(ENV_CREDENTIALS_URI, &uri)]),
        None,
    )
    .unwrap()
    .expect("configured")
}

struct Oidc {
    dir: TempDir,
    token_file: PathBuf,
    provider: CredentialsProvider,
}

fn oidc_provider(server: &TestServer, extra: &[(&str, &str)]) -> Oidc {
    let dir = TempDir::new();
    let token_file = dir.write("token", "eyJ-token-1");
    let file = token_file.to_str().unwrap().to_owned();
    let mut pairs = vec![
        (ENV_ROLE_ARN, ROLE),
        (ENV_OIDC_PROVIDER_ARN, OIDC_PROVIDER),
        (ENV_OIDC_TOKEN_FILE, file.as_str()),
    ];
    pairs.extend_from_slice(extra);
    let options = ChainOptions {
        sts_endpoint: Some(server.url()),
        ..Default::default()
    };
    let provider = default_chain_from(&options, env(&pairs), None)
        .unwrap()
        .expect("configured");
    Oidc {
        dir,
        token_file,
        provider,
    }
}

/// The request's parameters (query and form) verify against `secret` with HMAC-SHA1.
fn assert_signed(req: &Request, secret: &str) {
    let mut params = req.query.clone();
    params.extend(req.form.clone());
    let signature = params.remove("Signature").expect("signed");
    assert_eq!(
        v1::signature(secret, &v1::string_to_sign(&req.method, &params)),
        signature
    );
}

#[tokio::test]
async fn environment_keys_are_a_fixed_source() {
    let options = ChainOptions::default();
    let p = default_chain_from(
        &options,
        env(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIenv"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "hunter2secret"),
        ]),
        None,
    )
    .unwrap()
    .unwrap();
    assert_eq!(p.source().kind, SourceKind::AccessKey);
    assert_eq!(p.source().configured_by, ConfiguredBy::Environment);
    assert_eq!(
        p.source().to_string(),
        "access_key access key LTAIenv (environment)"
    );
    assert!(!p.renews());
    assert_eq!(p.role_arn(), None);
    let c = p.credentials().await.unwrap();
    assert_eq!(c, Credentials::new("LTAIenv", "hunter2secret", None));
    assert_eq!(p.renew(&c).await.unwrap(), c);

    let p = default_chain_from(
        &options,
        env(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "STS.env"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "hunter2secret"),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", "tokenvalue"),
        ]),
        None,
    )
    .unwrap()
    .unwrap();
    assert_eq!(p.source().kind, SourceKind::Sts);
    assert_eq!(
        p.credentials().await.unwrap(),
        Credentials::new("STS.env", "hunter2secret", Some("tokenvalue".into()))
    );

    // Nothing, or a token alone: no source.
    assert!(
        default_chain_from(&options, env(&[]), None)
            .unwrap()
            .is_none()
    );
    assert!(
        default_chain_from(
            &options,
            env(&[("ALIBABA_CLOUD_SECURITY_TOKEN", "t")]),
            None
        )
        .unwrap()
        .is_none()
    );
    // Half a key is an error naming the variable, never the value.
    for (pairs, missing) in [
        (
            vec![("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIenv")],
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        ),
        (
            vec![("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "hunter2secret")],
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
        ),
    ] {
        let err = default_chain_from(&options, env(&pairs), None).unwrap_err();
        assert_eq!(err.kind(), ProviderErrorKind::Configuration);
        assert_eq!(
            err.to_string(),
            format!("environment: `{missing}` is missing")
        );
        assert!(!format!("{err:?}").contains("hunter2"));
    }
}

#[tokio::test]
async fn the_chain_takes_the_first_configured_source() {
    let dir = TempDir::new();
    dir.write(
        ".alibabacloud/credentials",
        "[default]\ntype = access_key\naccess_key_id = LTAIfile\naccess_key_secret = s3cr3t\n",
    );
    let token = dir.write("token", "eyJ");
    let token = token.to_str().unwrap();
    let all = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIenv"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s3cr3t"),
        (ENV_ROLE_ARN, ROLE),
        (ENV_OIDC_PROVIDER_ARN, OIDC_PROVIDER),
        (ENV_OIDC_TOKEN_FILE, token),
        (ENV_ECS_METADATA, "EcsRole"),
        (ENV_CREDENTIALS_URI, "http://127.0.0.1:9/creds"),
    ];
    let options = ChainOptions::default();
    let kinds = [
        SourceKind::AccessKey,
        SourceKind::OidcRoleArn,
        SourceKind::AccessKey, // the profile
        SourceKind::EcsRamRole,
        SourceKind::CredentialsUri,
    ];
    for (i, expected) in kinds.iter().enumerate() {
        let skip = match i {
            0 => 0,
            1 => 2,
            2 => 5,
            3 => 5,
            _ => 6,
        };
        let home = (i <= 2).then(|| dir.path());
        let p = default_chain_from(&options, env(&all[skip..]), home)
            .unwrap()
            .unwrap();
        assert_eq!(p.source().kind, *expected, "step {i}: {}", p.source());
        if i == 2 {
            assert!(matches!(
                p.source().configured_by,
                ConfiguredBy::Profile { .. }
            ));
        }
    }
    // `ALIBABA_CLOUD_ROLE_ARN` alone is no source; half of OIDC is an error.
    assert!(
        default_chain_from(&options, env(&[(ENV_ROLE_ARN, ROLE)]), None)
            .unwrap()
            .is_none()
    );
    let err = default_chain_from(
        &options,
        env(&[(ENV_ROLE_ARN, ROLE), (ENV_OIDC_TOKEN_FILE, token)]),
        None,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "environment: OIDC (RRSA) is half configured: `ALIBABA_CLOUD_OIDC_PROVIDER_ARN` not set"
    );
}

#[tokio::test]
async fn oidc_reads_the_token_file_at_every_renewal() {
    let server = counting_server(|i, _| sts_answer(i, 3600)).await;
    let oidc = oidc_provider(&server, &[(ENV_ROLE_SESSION_NAME, "my-session")]);
    let p = &oidc.provider;
    let source = p.source();
    assert_eq!(source.kind, SourceKind::OidcRoleArn);
    assert_eq!(p.role_arn(), Some(ROLE));
    assert_eq!(
        source.oidc_token_file.as_deref(),
        Some(oidc.token_file.as_path())
    );
    assert_eq!(source.role_session_name.as_deref(), Some("my-session"));
    assert_eq!(source.endpoint.as_deref(), Some(server.url().as_str()));
    assert_eq!(
        source.to_string(),
        format!("oidc_role_arn {ROLE} (environment)")
    );
    assert_eq!(p.expires_at(), None);

    assert_eq!(p.credentials().await.unwrap(), creds(1));
    assert!(p.expires_at().is_some());
    let first = &server.requests()[0];
    assert_eq!((first.method.as_str(), first.path.as_str()), ("POST", "/"));
    assert_eq!(first.query["Action"], "AssumeRoleWithOIDC");
    assert_eq!(first.query["Version"], "2015-04-01");
    assert_eq!(first.query["Format"], "JSON");
    assert!(first.query.contains_key("Timestamp"));
    for unsigned in ["Signature", "AccessKeyId", "SignatureNonce", "OIDCToken"] {
        assert!(
            !first.query.contains_key(unsigned),
            "{unsigned} in the query"
        );
    }
    assert_eq!(
        first.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(first.form["OIDCToken"], "eyJ-token-1");
    assert_eq!(first.form["RoleArn"], ROLE);
    assert_eq!(first.form["OIDCProviderArn"], OIDC_PROVIDER);
    assert_eq!(first.form["RoleSessionName"], "my-session");
    assert_eq!(first.form["DurationSeconds"], "3600");

    // The kubelet rotates the token; the next renewal (before expiry) sends the new one.
    oidc.dir.write("token", "eyJ-token-2\n");
    jump(Duration::from_secs(2900)).await;
    assert_eq!(p.credentials().await.unwrap(), creds(1), "still valid");
    wait_for_requests(&server, p, 2).await;
    assert_eq!(p.credentials().await.unwrap(), creds(2));
    assert_eq!(server.requests()[1].form["OIDCToken"], "eyJ-token-2");

    // And after a rejection.
    oidc.dir.write("token", "eyJ-token-3");
    assert_eq!(p.renew(&creds(2)).await.unwrap(), creds(3));
    assert_eq!(server.requests()[2].form["OIDCToken"], "eyJ-token-3");

    // A token file that went away: the error names the file, the old snapshot stays.
    std::fs::remove_file(&oidc.token_file).unwrap();
    let err = p.renew(&creds(3)).await.unwrap_err();
    assert_eq!(err.kind(), ProviderErrorKind::TokenFile);
    assert!(
        err.to_string().starts_with(&format!(
            "oidc_role_arn {ROLE} (environment): the OIDC token file {}: cannot be opened",
            oidc.token_file.display()
        )),
        "{err}"
    );
    assert_eq!(server.count(), 3);
    assert_eq!(p.credentials().await.unwrap(), creds(3));
}

#[tokio::test]
async fn renews_before_expiry_with_a_margin() {
    let server = counting_server(|i, _| uri_answer(i, 3600)).await;
    let p = uri_provider(&server);
    assert_eq!(p.credentials().await.unwrap(), creds(1));
    let first_expiry = p.expires_at().unwrap();
    // 3600 s of lifetime: a margin of 720 s plus up to 180 s of jitter.
    jump(Duration::from_secs(2650)).await;
    assert_eq!(p.credentials().await.unwrap(), creds(1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.count(), 1, "too early to renew");
    jump(Duration::from_secs(250)).await;
    assert_eq!(
        p.credentials().await.unwrap(),
        creds(1),
        "served while renewing"
    );
    wait_for_requests(&server, &p, 2).await;
    assert_eq!(p.credentials().await.unwrap(), creds(2));
    // (The wall clock did not move with the tokio clock: the new expiry is as far away.)
    assert!(p.expires_at().unwrap() >= first_expiry);
    assert_eq!(server.count(), 2);
}

#[test]
fn the_margin_is_the_larger_of_3_minutes_and_a_fifth() {
    let s = Duration::from_secs;
    assert_eq!(renew_after(s(3600), 0.0), s(2880));
    assert_eq!(renew_after(s(3600), 1.0), s(2700));
    assert_eq!(renew_after(s(600), 0.0), s(420));
    assert_eq!(renew_after(s(600), 1.0), s(375));
    assert_eq!(renew_after(s(21_600), 0.0), s(17_280));
    // Close to expiry: not in a loop, never after expiry.
    assert_eq!(renew_after(s(100), 0.5), s(30));
    assert_eq!(renew_after(s(10), 0.5), s(10));
    for failures in 1..40 {
        let d = retry_delay(failures);
        assert!(d <= MAX_RETRY_DELAY, "{failures}: {d:?}");
        assert!(d >= Duration::from_millis(500), "{failures}: {d:?}");
    }
    assert!(retry_delay(1) <= Duration::from_secs(1));
    assert!(retry_delay(10) >= Duration::from_secs(30));
}

#[tokio::test]
async fn one_renewal_for_200_concurrent_callers() {
    let server = counting_server(|i, _| uri_answer(i, 3600)).await;
    let p = uri_provider(&server);
    let all = join_all((0..200).map(|_| p.credentials())).await;
    assert!(all.iter().all(|c| c.as_ref() == Ok(&creds(1))));
    assert_eq!(server.count(), 1);

    // In the renewal window: everyone keeps the valid snapshot, one renewal.
    jump(Duration::from_secs(2950)).await;
    let all = join_all((0..200).map(|_| p.credentials())).await;
    assert!(all.iter().all(|c| c.as_ref() == Ok(&creds(1))));
    wait_for_requests(&server, &p, 2).await;
    assert_eq!(server.count(), 2);

    // Past expiry: everyone waits for the one renewal.
    jump(Duration::from_secs(3700)).await;
    let all = join_all((0..200).map(|_| p.credentials())).await;
    assert!(all.iter().all(|c| c.as_ref() == Ok(&creds(3))));
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn a_failed_renewal_keeps_the_snapshot_until_it_expires() {
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let server = {
        let healthy = healthy.clone();
        counting_server(move |i, _| {
            if i == 1 || healthy.load(Ordering::SeqCst) {
                sts_answer(i, 3600)
            } else {
                Response::new(
                    400,
                    json!({
                        "RequestId": "req-42",
                        "HostId": "sts.aliyuncs.com",
                        "Code": "AuthenticationFail.OIDCToken.Expired",
                        "Message": "the token eyJ-token-1 has expired",
                    })
                    .to_string(),
                )
            }
        })
        .await
    };
    let oidc = oidc_provider(&server, &[]);
    let p = &oidc.provider;
    assert_eq!(p.credentials().await.unwrap(), creds(1));
    healthy.store(false, Ordering::SeqCst);

    jump(Duration::from_secs(2950)).await;
    assert_eq!(p.credentials().await.unwrap(), creds(1));
    wait_for_requests(&server, p, 2).await;
    // The failure is not retried on every call (the clock stands still meanwhile, so the
    // backoff cannot run out however slow the machine).
    tokio::time::pause();
    for _ in 0..50 {
        assert_eq!(p.credentials().await.unwrap(), creds(1));
        assert!(!in_flight(p));
    }
    tokio::time::resume();
    assert_eq!(server.count(), 2);
    // After the backoff, one more attempt.
    jump(Duration::from_secs(2)).await;
    assert_eq!(p.credentials().await.unwrap(), creds(1));
    wait_for_requests(&server, p, 3).await;
    assert_eq!(server.count(), 3);

    // Past the real expiry: the error names the source and what STS said.
    jump(Duration::from_secs(700)).await;
    let err = p.credentials().await.unwrap_err();
    let calls = server.count();
    assert!(calls <= 4, "{calls}");
    assert_eq!(err.kind(), ProviderErrorKind::Refused);
    assert_eq!(err.code(), Some("AuthenticationFail.OIDCToken.Expired"));
    assert_eq!(err.request_id(), Some("req-42"));
    assert_eq!(err.http_status(), Some(400));
    assert_eq!(
        err.to_string(),
        format!(
            "oidc_role_arn {ROLE} (environment): STS refused AssumeRoleWithOIDC: \
             AuthenticationFail.OIDCToken.Expired: the token <redacted> has expired \
             (RequestId req-42, HTTP 400)"
        )
    );
    // Again at once: the same error, no new call.
    assert_eq!(p.credentials().await.unwrap_err(), err);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.count(), calls);

    // STS recovers: after the backoff, the next call renews.
    healthy.store(true, Ordering::SeqCst);
    jump(Duration::from_secs(61)).await;
    let renewed = p.credentials().await.unwrap();
    assert_eq!(renewed.access_key_id(), format!("STS.id{}", calls + 1));
}

#[tokio::test]
async fn renew_after_a_rejection_makes_one_renewal_for_many_callers() {
    let server = counting_server(|i, _| uri_answer(i, 3600)).await;
    let p = uri_provider(&server);
    let c1 = p.credentials().await.unwrap();
    let all = join_all((0..200).map(|_| p.renew(&c1))).await;
    assert!(all.iter().all(|c| c.as_ref() == Ok(&creds(2))));
    assert_eq!(server.count(), 2);
    // A late caller with the old rejection gets the current snapshot, no call.
    assert_eq!(p.renew(&c1).await.unwrap(), creds(2));
    assert_eq!(p.credentials().await.unwrap(), creds(2));
    assert_eq!(server.count(), 2);
    // The new snapshot rejected in turn: one more renewal.
    assert_eq!(p.renew(&creds(2)).await.unwrap(), creds(3));
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn a_renewal_answering_the_same_credentials_is_forced_once() {
    // A metadata server that has not rotated the credentials yet answers the same ones.
    let server = counting_server(|_, _| uri_answer(1, 3600)).await;
    let p = uri_provider(&server);
    let c1 = p.credentials().await.unwrap();
    assert_eq!(p.renew(&c1).await.unwrap(), c1);
    assert_eq!(server.count(), 2);
    let all = join_all((0..50).map(|_| p.renew(&c1))).await;
    assert!(all.iter().all(|c| c.as_ref() == Ok(&c1)));
    assert_eq!(server.count(), 2, "no renewal storm");
}

#[tokio::test]
async fn metadata_hardened_handshake() {
    let server = TestServer::start(|req| {
        let token = req.header("x-aliyun-ecs-metadata-token");
        match (req.method.as_str(), req.path.as_str()) {
            ("PUT", "/latest/api/token") => {
                assert_eq!(
                    req.header("x-aliyun-ecs-metadata-token-ttl-seconds"),
                    Some("21600")
                );
                Response::new(200, "md-token-1")
            }
            (_, _) if token != Some("md-token-1") => Response::new(401, ""),
            ("GET", "/latest/meta-data/ram/security-credentials/") => {
                Response::new(200, "EcsRole\n")
            }
            ("GET", "/latest/meta-data/ram/security-credentials/EcsRole") => {
                let mut body = creds_json(1, 21_600);
                body["Code"] = json!("Success");
                body["LastUpdated"] = json!("2026-01-01T00:00:00Z");
                Response::new(200, body.to_string())
            }
            _ => Response::new(404, "not found"),
        }
    })
    .await;
    let options = ChainOptions {
        ecs_metadata_endpoint: Some(server.url()),
        ..Default::default()
    };
    // `ALIBABA_CLOUD_ECS_METADATA` set but empty: the role is asked from the server.
    let p = default_chain_from(&options, env(&[(ENV_ECS_METADATA, "")]), None)
        .unwrap()
        .unwrap();
    assert_eq!(p.source().kind, SourceKind::EcsRamRole);
    assert_eq!(p.source().ecs_role_name, None);
    assert_eq!(p.credentials().await.unwrap(), creds(1));
    let seen: Vec<(String, String, Option<String>)> = server
        .requests()
        .iter()
        .map(|r| {
            (
                r.method.clone(),
                r.path.clone(),
                r.header("x-aliyun-ecs-metadata-token").map(str::to_owned),
            )
        })
        .collect();
    let token = Some("md-token-1".to_owned());
    assert_eq!(
        seen,
        [
            ("PUT".into(), "/latest/api/token".into(), None),
            (
                "GET".into(),
                "/latest/meta-data/ram/security-credentials/".into(),
                token.clone()
            ),
            (
                "GET".into(),
                "/latest/meta-data/ram/security-credentials/EcsRole".into(),
                token
            ),
        ]
    );

    // A named role: no listing. Or with the option alone (no variable).
    for pairs in [vec![(ENV_ECS_METADATA, "EcsRole")], vec![]] {
        let before = server.count();
        let p = default_chain_from(&options, env(&pairs), None)
            .unwrap()
            .unwrap();
        assert_eq!(p.credentials().await.unwrap(), creds(1));
        let listed = server.count() - before;
        assert_eq!(listed, if pairs.is_empty() { 3 } else { 2 });
        if !pairs.is_empty() {
            assert_eq!(
                p.source().to_string(),
                "ecs_ram_role role EcsRole (environment)"
            );
        }
    }
}

/// A metadata server whose token request answers `token_status`, and whose GETs answer
/// `get_status` when they carry a token.
async fn metadata_server(token_status: u16, get_status_with_token: u16) -> TestServer {
    TestServer::start(move |req| match (req.method.as_str(), req.path.as_str()) {
        ("PUT", _) if token_status == 200 => Response::new(200, "md-token"),
        ("PUT", _) => Response::new(token_status, ""),
        ("GET", "/latest/meta-data/ram/security-credentials/EcsRole") => {
            if req.header("x-aliyun-ecs-metadata-token").is_some() && get_status_with_token != 200 {
                return Response::new(get_status_with_token, "oops");
            }
            let mut body = creds_json(1, 21_600);
            body["Code"] = json!("Success");
            Response::new(200, body.to_string())
        }
        _ => Response::new(404, ""),
    })
    .await
}

fn metadata_provider(server: &TestServer, extra: &[(&str, &str)]) -> CredentialsProvider {
    let options = ChainOptions {
        ecs_metadata_endpoint: Some(server.url()),
        ..Default::default()
    };
    let mut pairs = vec![(ENV_ECS_METADATA, "EcsRole")];
    pairs.extend_from_slice(extra);
    default_chain_from(&options, env(&pairs), None)
        .unwrap()
        .unwrap()
}

fn methods_and_tokens(server: &TestServer) -> Vec<(String, bool)> {
    server
        .requests()
        .iter()
        .map(|r| {
            (
                r.method.clone(),
                r.headers.contains_key("x-aliyun-ecs-metadata-token"),
            )
        })
        .collect()
}

#[tokio::test]
async fn metadata_falls_back_to_the_plain_mode_only_when_the_token_fails() {
    // No hardened mode on this server: plain GET.
    let server = metadata_server(404, 200).await;
    let p = metadata_provider(&server, &[]);
    assert_eq!(p.credentials().await.unwrap(), creds(1));
    assert_eq!(
        methods_and_tokens(&server),
        [("PUT".into(), false), ("GET".into(), false)]
    );

    // Hardened mode required: the token failure is the error, no plain GET.
    let server = metadata_server(403, 200).await;
    let p = metadata_provider(&server, &[(ENV_IMDSV1_DISABLED, "TRUE")]);
    let err = p.credentials().await.unwrap_err();
    assert!(
        err.message().contains("ALIBABA_CLOUD_IMDSV1_DISABLED=true"),
        "{err}"
    );
    assert!(err.message().contains("PUT /latest/api/token"), "{err}");
    assert_eq!(err.http_status(), Some(403));
    assert_eq!(methods_and_tokens(&server), [("PUT".into(), false)]);

    // A GET that fails with a token is not repeated without one.
    let server = metadata_server(200, 500).await;
    let p = metadata_provider(&server, &[]);
    let err = p.credentials().await.unwrap_err();
    assert_eq!(err.http_status(), Some(500));
    assert!(!err.to_string().contains("md-token"), "{err}");
    assert_eq!(
        methods_and_tokens(&server),
        [("PUT".into(), false), ("GET".into(), true)]
    );
}

#[tokio::test]
async fn metadata_answers_and_switches() {
    // A role the server does not know, and a Code that is not Success.
    let server = TestServer::start(|req| match req.path.as_str() {
        "/latest/api/token" => Response::new(200, "md-token"),
        "/latest/meta-data/ram/security-credentials/Other" => {
            let mut body = creds_json(1, 3600);
            body["Code"] = json!("Failure");
            Response::new(200, body.to_string())
        }
        _ => Response::new(404, "<html>404</html>"),
    })
    .await;
    let options = ChainOptions {
        ecs_metadata_endpoint: Some(server.url()),
        ..Default::default()
    };
    let p = default_chain_from(&options, env(&[(ENV_ECS_METADATA, "EcsRole")]), None)
        .unwrap()
        .unwrap();
    let err = p.credentials().await.unwrap_err();
    assert!(
        err.message()
            .starts_with("the metadata server knows no such role"),
        "{err}"
    );
    let p = default_chain_from(&options, env(&[(ENV_ECS_METADATA, "Other")]), None)
        .unwrap()
        .unwrap();
    let err = p.credentials().await.unwrap_err();
    assert!(err.message().contains("has `Code` \"Failure\""), "{err}");
    assert!(!err.to_string().contains("SECRETVALUE"), "{err}");

    // The switches.
    let disabled = [
        (ENV_ECS_METADATA, "EcsRole"),
        (ENV_ECS_METADATA_DISABLED, "true"),
    ];
    assert!(
        default_chain_from(&ChainOptions::default(), env(&disabled), None)
            .unwrap()
            .is_none()
    );
    let err = default_chain_from(&options, env(&disabled), None).unwrap_err();
    assert_eq!(err.kind(), ProviderErrorKind::Configuration);
    // The role name goes into a path: it must be one.
    let err = default_chain_from(&options, env(&[(ENV_ECS_METADATA, "../x")]), None).unwrap_err();
    assert!(err.message().contains("is not a RAM role name"), "{err}");
    // The default endpoint is plain HTTP to the link-local address; elsewhere HTTPS.
    let p = default_chain_from(
        &ChainOptions::default(),
        env(&[(ENV_ECS_METADATA, "EcsRole")]),
        None,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        p.source().endpoint.as_deref(),
        Some("http://100.100.100.200")
    );
    let elsewhere = ChainOptions {
        ecs_metadata_endpoint: Some("http://10.1.2.3".into()),
        ..Default::default()
    };
    let err = default_chain_from(&elsewhere, env(&[]), None).unwrap_err();
    assert!(err.message().contains("plain HTTP"), "{err}");
    let allowed = ChainOptions {
        allow_plain_http: true,
        ..elsewhere
    };
    assert!(
        default_chain_from(&allowed, env(&[]), None)
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn credentials_uri() {
    let server = TestServer::start(|req| match req.path.as_str() {
        "/creds" => {
            assert_eq!(req.query["auth"], "SECRETQUERY");
            uri_answer(1, 3600)
        }
        "/nocode" => Response::new(200, creds_json(2, 3600).to_string()),
        "/failure" => {
            let mut body = creds_json(3, 3600);
            body["Code"] = json!("Failure");
            Response::new(200, body.to_string())
        }
        "/noexpiry" => Response::new(
            200,
            json!({"Code": "Success", "AccessKeyId": "a", "AccessKeySecret": "SECRETVALUE", "SecurityToken": "TOKENVALUE"}).to_string(),
        ),
        "/expired" => uri_answer(4, -60),
        _ => Response::new(500, "{\"Code\":\"InternalError\",\"Message\":\"down\"}"),
    })
    .await;
    let p = uri_provider(&server);
    assert_eq!(p.source().kind, SourceKind::CredentialsUri);
    let shown = format!("{}/creds", server.url());
    assert_eq!(p.source().endpoint.as_deref(), Some(shown.as_str()));
    assert_eq!(p.credentials().await.unwrap(), creds(1));
    let text = format!("{p:?} {} {:?}", p.source(), p.source());
    assert!(!text.contains("SECRETQUERY"), "{text}");

    let at = |path: &str| {
        default_chain_from(
            &ChainOptions::default(),
            env(&[(ENV_CREDENTIALS_URI, &format!("{}{path}", server.url()))]),
            None,
        )
        .unwrap()
        .unwrap()
    };
    assert_eq!(at("/nocode").credentials().await.unwrap(), creds(2));
    let err = at("/failure").credentials().await.unwrap_err();
    assert_eq!(err.kind(), ProviderErrorKind::Refused);
    let err = at("/noexpiry").credentials().await.unwrap_err();
    assert_eq!(err.kind(), ProviderErrorKind::InvalidAnswer);
    assert!(err.message().ends_with("has no `Expiration`"), "{err}");
    let err = at("/expired").credentials().await.unwrap_err();
    assert!(err.message().contains("expired at"), "{err}");
    let err = at("/down").credentials().await.unwrap_err();
    assert_eq!(err.kind(), ProviderErrorKind::Unavailable);
    assert_eq!(err.code(), Some("InternalError"));
    assert!(
        err.message()
            .starts_with("the credentials URI could not serve GET"),
        "{err}"
    );

    let err = default_chain_from(
        &ChainOptions::default(),
        env(&[(
            ENV_CREDENTIALS_URI,
            "http://creds.internal/x?auth=SECRETQUERY",
        )]),
        None,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("`ALIBABA_CLOUD_CREDENTIALS_URI`: uses plain HTTP")
    );
    assert!(!err.to_string().contains("SECRETQUERY"));
}

const PROFILES: &str = r#"
[default]
type = access_key
access_key_id = LTAIdefault
access_key_secret = SECRET-default

[sts]
type = sts
access_key_id = STS.file
access_key_secret = SECRET-sts
security_token = TOKEN-sts

[ram]
type = ram_role_arn
access_key_id = LTAIram
access_key_secret = SECRET-ram
role_arn = acs:ram::123:role/x
role_session_name = from-file
policy = {"Statement":[]}
role_session_expiration = 1800

[ecs]
type = ecs_ram_role
role_name = EcsRole

[oidc]
type = oidc_role_arn
role_arn = acs:ram::123:role/x
oidc_provider_arn = acs:ram::123:oidc-provider/ack-rrsa
oidc_token_file_path = /var/run/secrets/token

[badarn]
type = ram_role_arn
access_key_id = LTAIram
access_key_secret = SECRET-badarn
role_arn = arn:aws:iam::1:role/x

[nosecret]
type = access_key
access_key_id = LTAIx
"#;

#[tokio::test]
async fn every_profile_mode_from_the_credentials_file() {
    let server = counting_server(|i, _| sts_answer(i, 3600)).await;
    let home = TempDir::new();
    let file = home.write(".alibabacloud/credentials", PROFILES);
    let options = ChainOptions {
        sts_endpoint: Some(server.url()),
        ..Default::default()
    };
    let chain = |profile: &str| {
        default_chain_from(&options, env(&[(ENV_PROFILE, profile)]), Some(home.path()))
    };
    let by = |profile: &str| ConfiguredBy::Profile {
        file: file.clone(),
        profile: profile.to_owned(),
    };

    let p = default_chain_from(&options, env(&[]), Some(home.path()))
        .unwrap()
        .unwrap();
    assert_eq!(p.source().kind, SourceKind::AccessKey);
    assert_eq!(p.source().configured_by, by("default"));
    assert_eq!(
        p.credentials().await.unwrap(),
        Credentials::new("LTAIdefault", "SECRET-default", None)
    );

    let p = chain("sts").unwrap().unwrap();
    assert_eq!(p.source().kind, SourceKind::Sts);
    assert_eq!(
        p.credentials().await.unwrap(),
        Credentials::new("STS.file", "SECRET-sts", Some("TOKEN-sts".into()))
    );

    let p = chain("ram").unwrap().unwrap();
    assert_eq!(p.source().kind, SourceKind::RamRoleArn);
    assert_eq!(p.role_arn(), Some(ROLE));
    assert_eq!(p.source().configured_by, by("ram"));
    assert_eq!(
        p.source().base.as_ref().unwrap().kind,
        SourceKind::AccessKey
    );
    assert_eq!(p.credentials().await.unwrap(), creds(1));
    let req = &server.requests()[0];
    assert_eq!(req.query["Action"], "AssumeRole");
    assert_eq!(req.query["AccessKeyId"], "LTAIram");
    assert_eq!(req.query["SignatureMethod"], "HMAC-SHA1");
    assert_eq!(req.form["RoleSessionName"], "from-file");
    assert_eq!(req.form["DurationSeconds"], "1800");
    assert_eq!(req.form["Policy"], r#"{"Statement":[]}"#);
    assert_signed(req, "SECRET-ram");

    let p = chain("ecs").unwrap().unwrap();
    assert_eq!(p.source().kind, SourceKind::EcsRamRole);
    assert_eq!(p.source().ecs_role_name.as_deref(), Some("EcsRole"));

    let p = chain("oidc").unwrap().unwrap();
    assert_eq!(p.source().kind, SourceKind::OidcRoleArn);
    assert_eq!(
        p.source().oidc_token_file.as_deref(),
        Some(Path::new("/var/run/secrets/token"))
    );
    assert_eq!(p.source().oidc_provider_arn.as_deref(), Some(OIDC_PROVIDER));

    // Errors name the profile and the key, never a value.
    for (profile, expected) in [
        ("nosecret", "`access_key_secret` is missing"),
        ("badarn", "the role ARN is not of the form"),
        ("nothere", "the file has no such profile"),
    ] {
        let err = chain(profile).unwrap_err();
        assert_eq!(err.kind(), ProviderErrorKind::Configuration);
        assert_eq!(
            err.origin(),
            format!("profile `{profile}` in {}", file.display())
        );
        assert!(err.message().contains(expected), "{err}");
        assert!(!format!("{err} {err:?}").contains("SECRET"), "{err}");
    }
    let err = default_chain_from(
        &options,
        env(&[(ENV_PROFILE, "ecs"), (ENV_ECS_METADATA_DISABLED, "true")]),
        Some(home.path()),
    )
    .unwrap_err();
    assert!(
        err.message()
            .contains("ALIBABA_CLOUD_ECS_METADATA_DISABLED"),
        "{err}"
    );
}

#[tokio::test]
async fn where_the_credentials_file_is_found() {
    let options = ChainOptions::default();
    let a = TempDir::new();
    let explicit = a.write("elsewhere.ini", PROFILES);
    let p = default_chain_from(
        &options,
        env(&[(ENV_CREDENTIALS_FILE, explicit.to_str().unwrap())]),
        None,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        p.source().configured_by,
        ConfiguredBy::Profile {
            file: explicit.clone(),
            profile: "default".into()
        }
    );
    // Named but missing: an error naming the file, not a silent fall-through.
    let missing = a.path().join("missing");
    let err = default_chain_from(
        &options,
        env(&[(ENV_CREDENTIALS_FILE, missing.to_str().unwrap())]),
        None,
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "profile `default` in {}: the file cannot be read",
            missing.display()
        )),
        "{err}"
    );
    let err = default_chain_from(&options, env(&[(ENV_CREDENTIALS_FILE, " ")]), None).unwrap_err();
    assert!(err.message().contains("is set but empty"), "{err}");
    // The Python library's name, when it is the only one.
    let home = TempDir::new();
    let ini = home.write(".alibabacloud/credentials.ini", PROFILES);
    let p = default_chain_from(&options, env(&[]), Some(home.path()))
        .unwrap()
        .unwrap();
    assert!(
        matches!(&p.source().configured_by, ConfiguredBy::Profile { file, .. } if *file == ini)
    );
    // No file at all: no source.
    let empty = TempDir::new();
    assert!(
        default_chain_from(&options, env(&[]), Some(empty.path()))
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn assume_role_signs_with_the_base_and_checks_the_role() {
    let server = counting_server(|i, _| sts_answer(i, 3600)).await;
    let options = ChainOptions {
        sts_endpoint: Some(server.url()),
        role_session_name: Some("ecs-instance-controller".into()),
        ..Default::default()
    };
    let base = CredentialsProvider::fixed(Credentials::new(
        "LTAIbase",
        "SECRET-base",
        Some("TOKEN-base".into()),
    ));
    let spec = AssumeRoleSpec {
        role_arn: "acs:ram::456:role/tenant".into(),
        external_id: Some("tenant-ext-42".into()),
        policy: Some(r#"{"Statement":[]}"#.into()),
        ..Default::default()
    };
    let p = assume_role(base.clone(), spec.clone(), &options).unwrap();
    assert_eq!(p.role_arn(), Some("acs:ram::456:role/tenant"));
    assert_eq!(p.source().kind, SourceKind::RamRoleArn);
    assert_eq!(p.source().configured_by, ConfiguredBy::Caller);
    assert_eq!(
        p.source().to_string(),
        "ram_role_arn acs:ram::456:role/tenant with static access key LTAIbase"
    );
    assert_eq!(p.credentials().await.unwrap(), creds(1));
    let req = &server.requests()[0];
    assert_eq!(req.query["AccessKeyId"], "LTAIbase");
    assert_eq!(req.query["SecurityToken"], "TOKEN-base");
    assert_eq!(req.query["Version"], "2015-04-01");
    assert_eq!(req.form["RoleArn"], "acs:ram::456:role/tenant");
    assert_eq!(req.form["ExternalId"], "tenant-ext-42");
    assert_eq!(req.form["RoleSessionName"], "ecs-instance-controller");
    assert_eq!(req.form["DurationSeconds"], "3600");
    assert_signed(req, "SECRET-base");
    let debug = format!("{spec:?} {p:?}");
    assert!(
        !debug.contains("tenant-ext-42") && !debug.contains("SECRET"),
        "{debug}"
    );

    for (bad, expected) in [
        (
            AssumeRoleSpec {
                role_arn: "acs:ram::456:user/tenant".into(),
                ..Default::default()
            },
            "the role ARN is not of the form",
        ),
        (
            AssumeRoleSpec {
                duration_seconds: Some(899),
                ..spec.clone()
            },
            "outside 900..=43200",
        ),
        (
            AssumeRoleSpec {
                duration_seconds: Some(43_201),
                ..spec.clone()
            },
            "outside 900..=43200",
        ),
        (
            AssumeRoleSpec {
                session_name: Some("has space".into()),
                ..spec.clone()
            },
            "role session name",
        ),
        (
            AssumeRoleSpec {
                external_id: Some("x".into()),
                ..spec.clone()
            },
            "external ID",
        ),
    ] {
        let err = assume_role(base.clone(), bad, &options).unwrap_err();
        assert_eq!(err.kind(), ProviderErrorKind::Configuration);
        assert!(err.message().contains(expected), "{err}");
    }
    assert!(
        assume_role(
            base,
            AssumeRoleSpec {
                duration_seconds: Some(43_200),
                ..spec
            },
            &options
        )
        .is_ok()
    );
}

#[tokio::test]
async fn an_expired_base_token_is_renewed_once_for_assume_role() {
    // The base: temporary credentials from a URI; STS refuses the first ones as expired.
    let base_server = counting_server(|i, _| uri_answer(i, 3600)).await;
    let sts = counting_server(|i, req| {
        if req.query["AccessKeyId"] == "STS.id1" {
            Response::new(
                400,
                json!({"Code": "InvalidSecurityToken.Expired", "Message": "expired", "RequestId": "r"})
                    .to_string(),
            )
        } else {
            sts_answer(10 + i, 3600)
        }
    })
    .await;
    let options = ChainOptions {
        sts_endpoint: Some(sts.url()),
        ..Default::default()
    };
    let p = assume_role(
        uri_provider(&base_server),
        AssumeRoleSpec {
            role_arn: ROLE.into(),
            ..Default::default()
        },
        &options,
    )
    .unwrap();
    assert_eq!(p.credentials().await.unwrap(), creds(12));
    let keys: Vec<String> = sts
        .requests()
        .iter()
        .map(|r| r.query["AccessKeyId"].clone())
        .collect();
    assert_eq!(keys, ["STS.id1", "STS.id2"]);
    assert_eq!(base_server.count(), 2);
    assert_signed(&sts.requests()[1], "SECRETVALUE2");
}

#[tokio::test]
async fn the_sts_endpoint_as_the_libraries_choose_it() {
    let dir = TempDir::new();
    let token = dir.write("token", "eyJ");
    let token = token.to_str().unwrap();
    let oidc = [
        (ENV_ROLE_ARN, ROLE),
        (ENV_OIDC_PROVIDER_ARN, OIDC_PROVIDER),
        (ENV_OIDC_TOKEN_FILE, token),
    ];
    let endpoint = |options: &ChainOptions, extra: &[(&str, &str)]| {
        let mut pairs = oidc.to_vec();
        pairs.extend_from_slice(extra);
        default_chain_from(options, env(&pairs), None)
            .map(|p| p.unwrap().source().endpoint.clone().unwrap())
    };
    let none = ChainOptions::default();
    assert_eq!(endpoint(&none, &[]).unwrap(), "https://sts.aliyuncs.com");
    assert_eq!(
        endpoint(&none, &[(ENV_STS_REGION, "cn-hangzhou")]).unwrap(),
        "https://sts.cn-hangzhou.aliyuncs.com"
    );
    assert_eq!(
        endpoint(
            &none,
            &[
                (ENV_STS_REGION, "cn-hangzhou"),
                (ENV_VPC_ENDPOINT_ENABLED, "true")
            ]
        )
        .unwrap(),
        "https://sts-vpc.cn-hangzhou.aliyuncs.com"
    );
    // Without a region the VPC switch has nothing to apply to (as in the libraries).
    assert_eq!(
        endpoint(&none, &[(ENV_VPC_ENDPOINT_ENABLED, "true")]).unwrap(),
        "https://sts.aliyuncs.com"
    );
    let webhook = [
        (ENV_STS_ENDPOINT, "sts-vpc.cn-shanghai.aliyuncs.com"),
        (ENV_STS_REGION, "cn-hangzhou"),
    ];
    assert_eq!(
        endpoint(&none, &webhook).unwrap(),
        "https://sts-vpc.cn-shanghai.aliyuncs.com"
    );
    let flag = ChainOptions {
        sts_endpoint: Some("https://sts.example:8443".into()),
        ..Default::default()
    };
    assert_eq!(
        endpoint(&flag, &webhook).unwrap(),
        "https://sts.example:8443"
    );
    let err = endpoint(&none, &[(ENV_STS_ENDPOINT, "http://sts.example")]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("`ALIBABA_CLOUD_STS_ENDPOINT`: uses plain HTTP"),
        "{err}"
    );
    let err = endpoint(&none, &[(ENV_STS_REGION, "cn-hangzhou.evil.com/")]).unwrap_err();
    assert_eq!(err.origin(), "`ALIBABA_CLOUD_STS_REGION`");
}

#[tokio::test]
async fn secrets_never_show_in_debug_display_or_errors() {
    // STS echoes everything it was sent in its error message.
    let server = TestServer::start(|req| {
        let echo = format!("{} {}", req.raw_query, req.body);
        Response::new(
            400,
            json!({"Code": "NoPermission", "Message": echo, "RequestId": "r"}).to_string(),
        )
    })
    .await;
    let options = ChainOptions {
        sts_endpoint: Some(server.url()),
        ..Default::default()
    };
    let base = CredentialsProvider::fixed(Credentials::new(
        "LTAIbase",
        "SECRETVALUE-base",
        Some("TOKENVALUE+base/==".into()),
    ));
    let role = assume_role(
        base.clone(),
        AssumeRoleSpec {
            role_arn: ROLE.into(),
            ..Default::default()
        },
        &options,
    )
    .unwrap();
    let oidc = oidc_provider(&server, &[]);
    std::fs::write(&oidc.token_file, "eyJTOKENVALUE-oidc").unwrap();
    let mut texts = Vec::new();
    for p in [&base, &role, &oidc.provider] {
        texts.push(format!("{p:?} {} {:?}", p.source(), p.source()));
        texts.push(serde_json::to_string(p.source()).unwrap());
        if let Err(err) = p.credentials().await {
            assert!(err.message().contains("<redacted>"), "{err}");
            texts.push(format!("{err} {err:?}"));
        }
    }
    assert_eq!(texts.len(), 8);
    for text in texts {
        assert!(!text.contains("SECRETVALUE"), "{text}");
        assert!(!text.contains("TOKENVALUE"), "{text}");
    }
}
