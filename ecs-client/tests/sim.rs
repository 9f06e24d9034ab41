//! The client against the real ECS simulator (`ecs-sim`) over HTTP on 127.0.0.1.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ecs_client::{
    CLAIM_PREFIX, ClientConfig, Credentials, DeleteInstance, EcsClient, EcsError, ErrorClass,
    ErrorKind, InstanceStatus, RateLimitConfig, RequestObserver, RetryConfig, SigningMethod,
    StopInstance, StoppedMode, TagInstance, UntagInstance,
};
use serde_json::{Value, json};
use testkit::sim::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, EcsSim};

const REGION: &str = "cn-hangzhou";
const BOTH: [SigningMethod; 2] = [SigningMethod::Acs3HmacSha256, SigningMethod::HmacSha1];

async fn start_sim(args: &[&str]) -> EcsSim {
    EcsSim::start_with_args(args).await
}

fn creds() -> Credentials {
    Credentials::new(ACCESS_KEY_ID, ACCESS_KEY_SECRET, None)
}

fn config(sim: &EcsSim, signing: SigningMethod) -> ClientConfig {
    ClientConfig {
        endpoint_override: Some(sim.endpoint().to_owned()),
        signing,
        // Fast retries keep the tests short; the policy is the same.
        retry: RetryConfig {
            base_delay: Duration::from_millis(20),
            throttled_base_delay: Duration::from_millis(100),
            ..RetryConfig::default()
        },
        ..ClientConfig::default()
    }
}

fn client(sim: &EcsSim, signing: SigningMethod) -> EcsClient {
    EcsClient::new(config(sim, signing)).expect("client builds")
}

fn wire_name(signing: SigningMethod) -> &'static str {
    match signing {
        SigningMethod::Acs3HmacSha256 => "ACS3-HMAC-SHA256",
        SigningMethod::HmacSha1 => "HMAC-SHA1",
    }
}

async fn wait_for_status(
    client: &EcsClient,
    id: &str,
    expected: Option<InstanceStatus>,
) -> Option<InstanceStatus> {
    let mut last = None;
    for _ in 0..100 {
        let found = client
            .describe_instances(REGION, &creds(), &[id.to_owned()])
            .await
            .expect("describe works");
        last = found.first().map(|i| i.status.clone());
        if last == expected {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{id} never reached {expected:?}; last seen {last:?}");
}

#[tokio::test]
async fn every_typed_call_works_in_both_signing_modes() {
    let sim = start_sim(&[]).await;
    for signing in BOTH {
        sim.clear_calls().await;
        let tag = match signing {
            SigningMethod::Acs3HmacSha256 => "vthree",
            SigningMethod::HmacSha1 => "vone",
        };
        let running = format!("i-{tag}run0001");
        let stopped = format!("i-{tag}stop001");
        sim.seed(json!([
            {"instanceId": running, "regionId": REGION, "zoneId": "cn-hangzhou-g", "status": "Running"},
            {"instanceId": stopped, "regionId": REGION, "zoneId": "cn-hangzhou-h", "status": "Stopped",
             "chargeType": "PrePaid", "expired": true, "deletionProtection": false,
             "lockReasons": ["financial"]},
        ]))
        .await;
        let c = client(&sim, signing);

        // DescribeInstances: present ones come back typed, unknown ones are simply absent.
        let ids = [running.clone(), stopped.clone(), format!("i-{tag}absent01")];
        let mut found = c.describe_instances(REGION, &creds(), &ids).await.unwrap();
        found.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        assert_eq!(found.len(), 2, "{found:?}");
        let run = found.iter().find(|i| i.instance_id == running).unwrap();
        assert_eq!(run.status, InstanceStatus::Running);
        assert_eq!(run.region_id, REGION);
        assert_eq!(run.zone_id, "cn-hangzhou-g");
        assert_eq!(run.charge_type, "PostPaid");
        let stop = found.iter().find(|i| i.instance_id == stopped).unwrap();
        assert_eq!(stop.status, InstanceStatus::Stopped);
        assert_eq!(stop.charge_type, "PrePaid");
        assert_eq!(stop.lock_reasons, vec!["financial".to_string()]);

        // lookup_instance through the batcher.
        assert_eq!(
            c.lookup_instance(REGION, &creds(), &running)
                .await
                .unwrap()
                .map(|i| i.status),
            Some(InstanceStatus::Running)
        );
        assert_eq!(
            c.lookup_instance(REGION, &creds(), &format!("i-{tag}absent01"))
                .await
                .unwrap(),
            None
        );

        // StopInstance (dry run first: validated, nothing happens), then for real.
        let stop_req = StopInstance {
            instance_id: running.clone(),
            force_stop: true,
            stopped_mode: Some(StoppedMode::KeepCharging),
            dry_run: true,
        };
        let dry = c.stop_instance(REGION, &creds(), &stop_req).await.unwrap();
        assert!(!dry.0.is_empty());
        let request_id = c
            .stop_instance(
                REGION,
                &creds(),
                &StopInstance {
                    dry_run: false,
                    ..stop_req
                },
            )
            .await
            .unwrap();
        assert!(!request_id.0.is_empty());
        wait_for_status(&c, &running, Some(InstanceStatus::Stopped)).await;

        // StartInstance, then stop again.
        let request_id = c.start_instance(REGION, &creds(), &running).await.unwrap();
        assert!(!request_id.0.is_empty());
        wait_for_status(&c, &running, Some(InstanceStatus::Running)).await;
        c.stop_instance(
            REGION,
            &creds(),
            &StopInstance {
                instance_id: running.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        wait_for_status(&c, &running, Some(InstanceStatus::Stopped)).await;

        // DeleteInstance: a passing dry run is Ok and releases nothing; then the release.
        let delete = DeleteInstance {
            instance_id: running.clone(),
            dry_run: true,
            ..Default::default()
        };
        c.delete_instance(REGION, &creds(), &delete).await.unwrap();
        assert!(sim.instance(&running).await.is_some());
        c.delete_instance(
            REGION,
            &creds(),
            &DeleteInstance {
                dry_run: false,
                ..delete
            },
        )
        .await
        .unwrap();
        // The expired subscription instance needs TerminateSubscription; Force + ForceStop sent.
        c.delete_instance(
            REGION,
            &creds(),
            &DeleteInstance {
                instance_id: stopped.clone(),
                force: true,
                force_stop: Some(true),
                terminate_subscription: true,
                dry_run: false,
            },
        )
        .await
        .unwrap();
        wait_for_status(&c, &running, None).await;
        wait_for_status(&c, &stopped, None).await;

        // Every call was signed the requested way and reached the simulator's API.
        let calls = sim.calls(None).await;
        assert!(calls.len() >= 12, "{calls:?}");
        for call in &calls {
            assert_eq!(call["signatureMethod"], wire_name(signing), "{call}");
            assert_eq!(call["accessKeyId"], ACCESS_KEY_ID, "{call}");
        }
        let deletes = sim.calls(Some("DeleteInstance")).await;
        let last = &deletes.last().unwrap()["params"];
        assert_eq!(last["Force"], "true");
        assert_eq!(last["ForceStop"], "true");
        assert_eq!(last["TerminateSubscription"], "true");
        let describe = &sim.calls(Some("DescribeInstances")).await[0]["params"];
        assert_eq!(
            describe["InstanceIds"],
            Value::String(serde_json::to_string(&ids).unwrap())
        );
    }
}

#[tokio::test]
async fn sts_tokens_are_sent_in_both_modes_and_never_leak() {
    let sim = start_sim(&[]).await;
    let token = "CAIS+sts/token==";
    sim.add_account("STS.temporaryid", "stssecret", Some(token))
        .await;
    sim.seed(json!([{"instanceId": "i-ststoken01", "regionId": REGION}]))
        .await;
    for signing in BOTH {
        let c = client(&sim, signing);
        let good = Credentials::new("STS.temporaryid", "stssecret", Some(token.to_owned()));
        let found = c
            .describe_instances(REGION, &good, &["i-ststoken01".to_owned()])
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "{signing}");

        let wrong_token = Credentials::new("STS.temporaryid", "stssecret", Some("other".into()));
        let err = c
            .stop_instance(
                REGION,
                &wrong_token,
                &StopInstance {
                    instance_id: "i-ststoken01".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(
            err.code().unwrap().starts_with("InvalidSecurityToken."),
            "{err}"
        );
        assert_eq!(err.class(), ErrorClass::CredentialsRejected);

        // A wrong secret: the gateway echoes its string-to-sign, which for HMAC-SHA1 contains
        // the token. Neither the token nor the secret may reach the error.
        let wrong_secret =
            Credentials::new("STS.temporaryid", "not-the-secret", Some(token.to_owned()));
        let err = c
            .describe_instances(REGION, &wrong_secret, &["i-ststoken01".to_owned()])
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("SignatureDoesNotMatch"), "{err}");
        assert_eq!(err.class(), ErrorClass::CredentialsRejected);
        let text = format!("{err} {err:?}");
        for secret in ["CAIS", "sts%2Ftoken", "not-the-secret"] {
            assert!(!text.contains(secret), "{signing}: {text}");
        }
        if signing == SigningMethod::HmacSha1 {
            // The echoed string-to-sign was there, with the token cut out.
            assert!(
                err.message().contains("SecurityToken%3D<redacted>"),
                "{text}"
            );
        }
    }
}

/// Each row of the error table (docs/design.md §11, docs/ecs-reference.md §9) the simulator can
/// produce, parsed and classified.
#[tokio::test]
async fn error_codes_are_parsed_and_classified() {
    // Slow transitions: a Pending instance stays Pending during the test.
    let sim = start_sim(&["--transition-ms", "600000"]).await;
    sim.seed(json!([
        {"instanceId": "i-errrunning1", "regionId": REGION, "status": "Running"},
        {"instanceId": "i-errpending1", "regionId": REGION, "status": "Pending"},
        {"instanceId": "i-errprepaid1", "regionId": REGION, "status": "Stopped", "chargeType": "PrePaid"},
        {"instanceId": "i-errlocked01", "regionId": REGION, "status": "Stopped", "lockReasons": ["security"]},
        {"instanceId": "i-errprotect1", "regionId": REGION, "status": "Stopped", "deletionProtection": true},
        {"instanceId": "i-errroute001", "regionId": REGION, "status": "Stopped", "routeEntry": true},
        {"instanceId": "i-errslb00001", "regionId": REGION, "status": "Stopped", "slbConfiguring": true},
    ]))
    .await;
    let rows: [(&str, &str, ErrorClass); 9] = [
        (
            "i-errrunning1",
            "IncorrectInstanceStatus",
            ErrorClass::StateConflict,
        ),
        (
            "i-errpending1",
            "IncorrectInstanceStatus.Initializing",
            ErrorClass::StateConflict,
        ),
        ("i-errprepaid1", "ChargeTypeViolation", ErrorClass::Terminal),
        (
            "i-errlocked01",
            "InstanceLockedForSecurity",
            ErrorClass::Terminal,
        ),
        (
            "i-errprotect1",
            "InvalidOperation.DeletionProtection",
            ErrorClass::Terminal,
        ),
        (
            "i-errroute001",
            "DependencyViolation.RouteEntry",
            ErrorClass::Terminal,
        ),
        (
            "i-errslb00001",
            "DependencyViolation.SLBConfiguring",
            ErrorClass::StateConflict,
        ),
        (
            "i-errabsent01",
            "InvalidInstanceId.NotFound",
            ErrorClass::NotFound,
        ),
        ("not an id", "InvalidParameter", ErrorClass::Terminal),
    ];
    for signing in BOTH {
        let c = client(&sim, signing);
        for (id, code, class) in rows {
            sim.clear_calls().await;
            let err = c
                .delete_instance(
                    REGION,
                    &creds(),
                    &DeleteInstance {
                        instance_id: id.into(),
                        ..Default::default()
                    },
                )
                .await
                .unwrap_err();
            assert_api_error(&err, "DeleteInstance", code, class);
            // The reconciler owns these: exactly one request, no retry inside the client.
            assert_eq!(sim.calls(Some("DeleteInstance")).await.len(), 1, "{code}");
        }

        let wrong_secret = Credentials::new(ACCESS_KEY_ID, "wrong", None);
        let unknown_key = Credentials::new("nosuchkey", "whatever", None);
        for (creds, code) in [
            (wrong_secret, "SignatureDoesNotMatch"),
            (unknown_key, "InvalidAccessKeyId.NotFound"),
        ] {
            let err = c
                .stop_instance(
                    REGION,
                    &creds,
                    &StopInstance {
                        instance_id: "i-errrunning1".into(),
                        ..Default::default()
                    },
                )
                .await
                .unwrap_err();
            assert_api_error(&err, "StopInstance", code, ErrorClass::CredentialsRejected);
        }

        for (fault, code, class) in [
            (
                json!({"errorRate": 1.0, "errorCode": "ServiceUnavailable"}),
                "ServiceUnavailable",
                ErrorClass::Transient,
            ),
            (
                json!({"errorRate": 1.0, "errorCode": "InternalError"}),
                "InternalError",
                ErrorClass::Transient,
            ),
            (
                json!({"throttleQps": 1}),
                "Throttling.User",
                ErrorClass::Throttled,
            ),
        ] {
            let mut rule = fault;
            rule["action"] = json!("StopInstance");
            sim.set_faults(json!([rule])).await;
            let stop = StopInstance {
                instance_id: "i-errrunning1".into(),
                dry_run: true,
                ..Default::default()
            };
            // A quota of 1/s lets the first call through; the second is throttled.
            let mut result = c.stop_instance(REGION, &creds(), &stop).await;
            if code == "Throttling.User" {
                assert!(result.is_ok(), "{result:?}");
                result = c.stop_instance(REGION, &creds(), &stop).await;
            }
            sim.clear_calls().await;
            let err = result.unwrap_err();
            assert_api_error(&err, "StopInstance", code, class);
            sim.clear_faults().await;
        }
    }
}

fn assert_api_error(err: &EcsError, action: &str, code: &str, class: ErrorClass) {
    assert_eq!(err.kind(), ErrorKind::Api, "{err}");
    assert_eq!(err.action(), action, "{err}");
    assert_eq!(err.code(), Some(code), "{err}");
    assert_eq!(err.class(), class, "{err}");
    assert!(!err.message().is_empty(), "{err}");
    assert!(err.request_id().is_some_and(|id| !id.is_empty()), "{err}");
    let status = err.http_status().expect("an HTTP status");
    assert!((400..600).contains(&status), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{action} failed: {code}: ")),
        "{text}"
    );
    assert!(text.ends_with(&format!("HTTP {status})")), "{text}");
}

/// Counts what the client reports through the observer hook.
#[derive(Default)]
struct Recorder {
    requests: Mutex<Vec<(String, Option<String>)>>,
    throttled: Mutex<u32>,
}

impl RequestObserver for Recorder {
    fn on_request(&self, action: &str, outcome_code: Option<&str>, _latency: Duration) {
        self.requests
            .lock()
            .unwrap()
            .push((action.to_owned(), outcome_code.map(str::to_owned)));
    }
    fn on_throttled(&self, _action: &str) {
        *self.throttled.lock().unwrap() += 1;
    }
}

#[tokio::test]
async fn reads_are_retried_and_mutations_are_not() {
    let sim = start_sim(&[]).await;
    sim.seed(json!([{"instanceId": "i-retry00001", "regionId": REGION}]))
        .await;
    let recorder = Arc::new(Recorder::default());
    let c = EcsClient::new(ClientConfig {
        observer: Some(recorder.clone()),
        // HMAC-SHA1 puts the nonce in the query, so the call log shows it.
        ..config(&sim, SigningMethod::HmacSha1)
    })
    .unwrap();
    let ids = ["i-retry00001".to_owned()];
    let stop = StopInstance {
        instance_id: "i-retry00001".into(),
        dry_run: true,
        ..Default::default()
    };

    // A failing server: DescribeInstances is tried 3 times, each signed afresh.
    sim.set_faults(json!([{"errorRate": 1.0, "errorCode": "InternalError"}]))
        .await;
    let err = c
        .describe_instances(REGION, &creds(), &ids)
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.class()),
        (Some("InternalError"), ErrorClass::Transient)
    );
    let describes = sim.calls(Some("DescribeInstances")).await;
    assert_eq!(describes.len(), 3);
    let nonces: std::collections::HashSet<&str> = describes
        .iter()
        .map(|c| c["params"]["SignatureNonce"].as_str().expect("a nonce"))
        .collect();
    assert_eq!(
        nonces.len(),
        3,
        "every attempt is signed with a fresh nonce"
    );
    // ...StopInstance once.
    c.stop_instance(REGION, &creds(), &stop).await.unwrap_err();
    assert_eq!(sim.calls(Some("StopInstance")).await.len(), 1);
    sim.clear_faults().await;
    sim.clear_calls().await;

    // Dropped connections: the request may have reached the server, so a mutation is not
    // repeated; a read is.
    sim.set_faults(json!([{"dropRate": 1.0}])).await;
    let err = c.stop_instance(REGION, &creds(), &stop).await.unwrap_err();
    assert_eq!(err.code(), None, "{err}");
    assert_eq!(err.class(), ErrorClass::Transient, "{err}");
    let err = c
        .describe_instances(REGION, &creds(), &ids)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient, "{err}");
    sim.clear_faults().await;

    assert_eq!(
        c.describe_instances(REGION, &creds(), &ids)
            .await
            .unwrap()
            .len(),
        1
    );

    let requests = recorder.requests.lock().unwrap().clone();
    let stops: Vec<_> = requests
        .iter()
        .filter(|(a, _)| a == "StopInstance")
        .collect();
    assert_eq!(stops.len(), 2, "{stops:?}");
    assert_eq!(stops[0].1.as_deref(), Some("InternalError"));
    assert!(
        requests
            .iter()
            .any(|(a, code)| a == "DescribeInstances" && code.is_none()),
        "{requests:?}"
    );
}

#[tokio::test]
async fn timeouts_are_transient_and_mutations_are_not_repeated() {
    let sim = start_sim(&[]).await;
    sim.seed(json!([{"instanceId": "i-slowslow01", "regionId": REGION}]))
        .await;
    sim.set_faults(json!([{"latencyMs": 1500}])).await;
    let recorder = Arc::new(Recorder::default());
    let c = EcsClient::new(ClientConfig {
        observer: Some(recorder.clone()),
        read_timeout: Duration::from_millis(300),
        retry: RetryConfig {
            max_attempts: 2,
            base_delay: Duration::from_millis(10),
            ..RetryConfig::default()
        },
        ..config(&sim, SigningMethod::HmacSha1)
    })
    .unwrap();
    let err = c
        .stop_instance(
            REGION,
            &creds(),
            &StopInstance {
                instance_id: "i-slowslow01".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert_eq!(err.class(), ErrorClass::Transient);
    assert!(
        err.to_string()
            .starts_with("StopInstance failed: timed out"),
        "{err}"
    );
    let err = c
        .describe_instances(REGION, &creds(), &["i-slowslow01".to_owned()])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    // Counted on the client side: the simulator drops (and does not log) a request whose
    // client went away during the injected latency.
    let attempts = |action: &str| {
        let requests = recorder.requests.lock().unwrap();
        requests
            .iter()
            .filter(|(a, code)| a == action && code.as_deref() == Some("Timeout"))
            .count()
    };
    assert_eq!(attempts("StopInstance"), 1);
    assert_eq!(attempts("DescribeInstances"), 2);
}

#[tokio::test]
async fn a_release_whose_answer_is_lost_has_an_unknown_outcome_and_is_not_repeated() {
    // A long linger: the released instance stays visible while the test looks at it.
    let sim = start_sim(&["--release-linger-ms", "60000"]).await;
    let release = |id: &str| DeleteInstance {
        instance_id: id.to_owned(),
        ..Default::default()
    };
    sim.seed(json!([
        {"instanceId": "i-lostans0001", "regionId": REGION, "status": "Stopped"},
        {"instanceId": "i-lostans0002", "regionId": REGION, "status": "Stopped"},
    ]))
    .await;
    sim.set_faults(json!([{"action": "DeleteInstance", "dropAnswerRate": 1.0}]))
        .await;
    for (signing, id) in BOTH.into_iter().zip(["i-lostans0001", "i-lostans0002"]) {
        let c = client(&sim, signing);
        let err = c
            .delete_instance(REGION, &creds(), &release(id))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transport, "{err}");
        assert!(err.outcome_unknown(), "{err}");
        // ECS did release it, and the client did not send the call twice.
        assert_eq!(sim.instance(id).await.unwrap()["released"], true);
        let deletes: Vec<Value> = sim
            .calls(Some("DeleteInstance"))
            .await
            .into_iter()
            .filter(|c| c["params"]["InstanceId"] == id)
            .collect();
        assert_eq!(deletes.len(), 1, "{deletes:?}");
        assert_eq!(
            (&deletes[0]["httpStatus"], &deletes[0]["answerDropped"]),
            (&json!(200), &json!(true))
        );
    }
    // Observing tells what happened; a definite answer is no longer unknown.
    sim.clear_faults().await;
    let c = client(&sim, SigningMethod::default());
    let err = c
        .delete_instance(REGION, &creds(), &release("i-lostans0001"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidInstanceId.NotFound"), "{err}");
    assert!(!err.outcome_unknown(), "{err}");
}

#[tokio::test]
async fn connect_failures_are_retried_even_for_mutations() {
    // A port nothing listens on: the request provably never reached a server.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let recorder = Arc::new(Recorder::default());
    let c = EcsClient::new(ClientConfig {
        endpoint_override: Some(format!("http://127.0.0.1:{port}")),
        retry: RetryConfig {
            base_delay: Duration::from_millis(10),
            ..RetryConfig::default()
        },
        observer: Some(recorder.clone()),
        ..ClientConfig::default()
    })
    .unwrap();
    let err = c
        .delete_instance(
            REGION,
            &creds(),
            &DeleteInstance {
                instance_id: "i-nowhere001".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    assert_eq!(err.class(), ErrorClass::Transient);
    let requests = recorder.requests.lock().unwrap().clone();
    assert_eq!(
        requests,
        vec![
            (
                "DeleteInstance".to_owned(),
                Some("ConnectionFailed".to_owned())
            );
            3
        ]
    );
}

/// The simulator allows 5 DescribeInstances per second; the client is configured for 20. The
/// limiter must learn the quota from the `Throttling.User` answers and stop provoking them.
#[tokio::test]
async fn throttling_slows_the_limiter_down() {
    let sim = start_sim(&[]).await;
    sim.seed(json!([{"instanceId": "i-throttle01", "regionId": REGION}]))
        .await;
    sim.set_faults(json!([{"action": "DescribeInstances", "throttleQps": 5}]))
        .await;
    let recorder = Arc::new(Recorder::default());
    let c = EcsClient::new(ClientConfig {
        rate_limit: RateLimitConfig {
            qps: 20.0,
            burst: 20,
            min_qps: 0.5,
            start_share: 0.0,
            quota_file: None,
        },
        retry: RetryConfig {
            max_attempts: 4,
            ..RetryConfig::default()
        },
        observer: Some(recorder.clone()),
        ..config(&sim, SigningMethod::default())
    })
    .unwrap();
    let ids = ["i-throttle01".to_owned()];
    let started = std::time::Instant::now();
    for n in 0..40 {
        let found = c.describe_instances(REGION, &creds(), &ids).await;
        assert_eq!(found.map(|f| f.len()), Ok(1), "call {n}");
    }
    let elapsed = started.elapsed();
    let calls = sim.calls(Some("DescribeInstances")).await;
    let throttled: Vec<bool> = calls
        .iter()
        .map(|c| c["code"] == "Throttling.User")
        .collect();
    let (first, second) = throttled.split_at(throttled.len() / 2);
    let count = |part: &[bool]| part.iter().filter(|t| **t).count();
    eprintln!(
        "40 lookups: {} requests, throttled {} then {}, {elapsed:?}, observer saw {}",
        calls.len(),
        count(first),
        count(second),
        recorder.throttled.lock().unwrap()
    );
    assert!(count(first) >= 1, "the quota was never hit: {throttled:?}");
    // At a fixed 20/s three requests in four would be throttled; the adaptive limiter keeps it
    // to a few, and fewer once it has learnt the quota.
    assert!(
        count(second) <= count(first) && count(first) + count(second) <= calls.len() / 4,
        "the limiter did not slow down: {throttled:?}"
    );
    assert_eq!(
        *recorder.throttled.lock().unwrap() as usize,
        count(first) + count(second)
    );
    // 40 successes at a quota of 5/s take at least 7 s.
    assert!(elapsed >= Duration::from_secs(7), "{elapsed:?}");
}

/// 1,000 concurrent lookups cost at most 10 DescribeInstances calls, and each caller gets its
/// own answer.
#[tokio::test]
async fn the_batcher_coalesces_a_thousand_lookups() {
    let sim = start_sim(&[]).await;
    let present: Vec<Value> = (0..1000)
        .filter(|n| n % 2 == 0)
        .map(|n| json!({"instanceId": format!("i-batch{n:05}"), "regionId": REGION, "status": "Stopped"}))
        .collect();
    sim.seed(Value::Array(present)).await;
    sim.clear_calls().await;
    let c = client(&sim, SigningMethod::default());
    let lookups: Vec<_> = (0..1000)
        .map(|n| {
            let c = c.clone();
            tokio::spawn(async move {
                let id = format!("i-batch{n:05}");
                (
                    n,
                    id.clone(),
                    c.lookup_instance(REGION, &creds(), &id).await,
                )
            })
        })
        .collect();
    for lookup in lookups {
        let (n, id, answer) = lookup.await.unwrap();
        let answer = answer.unwrap_or_else(|e| panic!("{id}: {e}"));
        if n % 2 == 0 {
            let instance = answer.unwrap_or_else(|| panic!("{id} is present"));
            assert_eq!(instance.instance_id, id);
            assert_eq!(instance.status, InstanceStatus::Stopped);
        } else {
            assert_eq!(answer, None, "{id} is absent");
        }
    }
    let calls = sim.calls(Some("DescribeInstances")).await;
    eprintln!("1000 lookups -> {} DescribeInstances calls", calls.len());
    assert!(calls.len() <= 10, "{} calls", calls.len());
    for call in &calls {
        let ids: Vec<String> =
            serde_json::from_str(call["params"]["InstanceIds"].as_str().unwrap()).unwrap();
        assert!(ids.len() <= 100);
        assert_eq!(call["code"], Value::Null, "{call}");
    }
}

#[tokio::test]
async fn tag_requests_with_one_claim_share_calls_of_at_most_50() {
    let sim = start_sim(&[]).await;
    let ids: Vec<String> = (0..120).map(|n| format!("i-claim{n:05}")).collect();
    let seeded: Vec<Value> = ids
        .iter()
        .map(|id| json!({"instanceId": id, "regionId": REGION, "status": "Running"}))
        .collect();
    sim.seed(Value::Array(seeded)).await;
    sim.clear_calls().await;
    let c = client(&sim, SigningMethod::default());

    // Tags asked for one after another in quick succession: the first goes alone (its UID), the
    // others get claims, 50 instances each, never one instance twice under a claim.
    assert_eq!(c.tag_claim(&ids[0]), None, "a lone tag keeps its UID");
    let claims: Vec<String> = ids[1..]
        .iter()
        .map(|id| c.tag_claim(id).expect("tags are coming fast: a claim"))
        .collect();
    assert!(claims.iter().all(|c| c.starts_with(CLAIM_PREFIX)));
    assert_eq!(claims[..50].iter().collect::<HashSet<_>>().len(), 1);
    assert_ne!(claims[49], claims[50], "50 instances per claim");
    assert_ne!(
        c.tag_claim(&ids[119]),
        Some(claims[118].clone()),
        "never one instance twice under one claim"
    );

    let tagged: Vec<_> = ids[1..]
        .iter()
        .zip(&claims)
        .map(|(id, claim)| {
            let (c, id, claim) = (c.clone(), id.clone(), claim.clone());
            tokio::spawn(async move {
                let tags = BTreeMap::from([("owner-uid".to_string(), claim.clone())]);
                let request = TagInstance {
                    region_id: REGION.into(),
                    instance_id: id.clone(),
                    tags,
                };
                (id, claim, c.tag_instance(&creds(), &request).await)
            })
        })
        .collect();
    let mut request_ids = HashSet::new();
    for task in tagged {
        let (id, claim, answer) = task.await.unwrap();
        request_ids.insert(answer.unwrap_or_else(|e| panic!("{id}: {e}")).0);
        assert_eq!(sim.tags(&id).await["owner-uid"], claim);
    }
    let calls = sim.calls(Some("TagResources")).await;
    eprintln!("119 tag requests -> {} TagResources calls", calls.len());
    assert_eq!(calls.len(), 3, "50 + 50 + 19: {calls:?}");
    assert_eq!(
        request_ids.len(),
        3,
        "each call's RequestId for its instances"
    );
    for call in &calls {
        assert_eq!(call["code"], Value::Null, "{call}");
    }
}

#[tokio::test]
async fn tags_are_set_removed_and_seen_in_describe_instances() {
    let sim = start_sim(&[]).await;
    for signing in BOTH {
        let id = match signing {
            SigningMethod::Acs3HmacSha256 => "i-tagvthree01",
            SigningMethod::HmacSha1 => "i-tagvone0001",
        };
        sim.seed(json!([{"instanceId": id, "regionId": REGION, "status": "Running"}]))
            .await;
        let c = client(&sim, signing);
        let described = |c: EcsClient| async move {
            let found = c
                .describe_instances(REGION, &creds(), &[id.to_owned()])
                .await
                .unwrap();
            found[0].tags.clone()
        };
        assert_eq!(described(c.clone()).await, BTreeMap::new());

        let tags = BTreeMap::from([
            ("owner".to_string(), "team-a".to_string()),
            ("empty".to_string(), String::new()),
        ]);
        let request_id = c
            .tag_instance(
                &creds(),
                &TagInstance {
                    region_id: REGION.into(),
                    instance_id: id.into(),
                    tags: tags.clone(),
                },
            )
            .await
            .unwrap();
        assert!(!request_id.0.is_empty());
        assert_eq!(sim.tags(id).await, tags);
        assert_eq!(described(c.clone()).await, tags);
        // Through the batcher too.
        let looked_up = c.lookup_instance(REGION, &creds(), id).await.unwrap();
        assert_eq!(looked_up.unwrap().tags, tags);

        // An existing key is overwritten.
        c.tag_instance(
            &creds(),
            &TagInstance {
                region_id: REGION.into(),
                instance_id: id.into(),
                tags: BTreeMap::from([("owner".to_string(), "team-b".to_string())]),
            },
        )
        .await
        .unwrap();
        assert_eq!(described(c.clone()).await["owner"], "team-b");

        let request_id = c
            .untag_instance(
                &creds(),
                &UntagInstance {
                    region_id: REGION.into(),
                    instance_id: id.into(),
                    keys: vec!["owner".into()],
                },
            )
            .await
            .unwrap();
        assert!(!request_id.0.is_empty());
        assert_eq!(
            described(c.clone()).await,
            BTreeMap::from([("empty".to_string(), String::new())])
        );
        assert_eq!(sim.tags(id).await.len(), 1);
    }
}

#[tokio::test]
async fn tag_call_errors_are_terminal_never_not_found() {
    let sim = start_sim(&[]).await;
    sim.seed(json!([{"instanceId": "i-tagerrors01", "regionId": REGION}]))
        .await;
    let c = client(&sim, SigningMethod::default());
    let tag = |region: &str, id: &str, key: &str| TagInstance {
        region_id: region.into(),
        instance_id: id.into(),
        tags: BTreeMap::from([(key.to_string(), "v".to_string())]),
    };
    // The instance is gone: for a tag call that is not "released", a person must look.
    let err = c
        .tag_instance(&creds(), &tag(REGION, "i-tagabsent01", "k"))
        .await
        .unwrap_err();
    assert_api_error(
        &err,
        "TagResources",
        "InvalidResourceId.NotFound",
        ErrorClass::Terminal,
    );
    let err = c
        .untag_instance(
            &creds(),
            &UntagInstance {
                region_id: REGION.into(),
                instance_id: "i-tagabsent01".into(),
                keys: vec!["k".into()],
            },
        )
        .await
        .unwrap_err();
    assert_api_error(
        &err,
        "UntagResources",
        "InvalidResourceId.NotFound",
        ErrorClass::Terminal,
    );
    // A region that does not exist: regionId must be fixed, the instance is not "gone".
    let err = c
        .tag_instance(&creds(), &tag("xx-nowhere-1", "i-tagerrors01", "k"))
        .await
        .unwrap_err();
    assert_api_error(
        &err,
        "TagResources",
        "InvalidRegionId.NotFound",
        ErrorClass::Terminal,
    );
    let err = c
        .describe_instances("xx-nowhere-1", &creds(), &["i-tagerrors01".into()])
        .await
        .unwrap_err();
    assert_api_error(
        &err,
        "DescribeInstances",
        "InvalidRegionId.NotFound",
        ErrorClass::Terminal,
    );
    // A key the API refuses.
    let err = c
        .tag_instance(&creds(), &tag(REGION, "i-tagerrors01", "acs:reserved"))
        .await
        .unwrap_err();
    assert_api_error(
        &err,
        "TagResources",
        "InvalidTagKey.Malformed",
        ErrorClass::Terminal,
    );
}
