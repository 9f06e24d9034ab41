//! Instance behaviour, pagination, fault injection and the admin API over raw HTTP.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

fn ids(answer: &Answer) -> Vec<String> {
    answer.json()["Instances"]["Instance"]
        .as_array()
        .unwrap_or_else(|| panic!("no instance list: {}", answer.body))
        .iter()
        .map(|i| i["InstanceId"].as_str().unwrap().to_owned())
        .collect()
}

async fn status_of(sim: &EcsSim, id: &str) -> Option<String> {
    let answer = v1(
        sim,
        "DescribeInstances",
        &[
            ("RegionId", "cn-hangzhou"),
            ("InstanceIds", &format!("[\"{id}\"]")),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["Instances"]["Instance"][0]["Status"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test]
async fn instance_id_filters_both_forms_and_limits() {
    let sim = EcsSim::start().await;
    seed_simple(
        &sim,
        &[
            ("i-behave00001", "Running"),
            ("i-behave00002", "Stopped"),
            ("i-behave00003", "Running"),
        ],
    )
    .await;
    sim.seed(json!([{"instanceId": "i-behave00009", "regionId": "cn-beijing"}]))
        .await;

    let json_form = v1(
        &sim,
        "DescribeInstances",
        &[
            ("RegionId", "cn-hangzhou"),
            (
                "InstanceIds",
                "[\"i-behave00001\",\"i-behave00003\",\"i-behave00009\",\"i-nothere0001\"]",
            ),
        ],
    )
    .await;
    assert_eq!(ids(&json_form), ["i-behave00001", "i-behave00003"]);
    let indexed = v1(
        &sim,
        "DescribeInstances",
        &[
            ("RegionId", "cn-hangzhou"),
            ("InstanceIds.1", "i-behave00002"),
            ("InstanceIds.2", "i-behave00003"),
        ],
    )
    .await;
    assert_eq!(ids(&indexed), ["i-behave00002", "i-behave00003"]);
    let empty = v1(
        &sim,
        "DescribeInstances",
        &[("RegionId", "cn-hangzhou"), ("InstanceIds", "[]")],
    )
    .await;
    assert_eq!(
        (empty.json()["TotalCount"].as_i64(), ids(&empty).len()),
        (Some(0), 0)
    );
    let status = v1(
        &sim,
        "DescribeInstances",
        &[("RegionId", "cn-hangzhou"), ("Status", "Running")],
    )
    .await;
    assert_eq!(ids(&status), ["i-behave00001", "i-behave00003"]);

    let too_many: Vec<String> = (0..101).map(|n| format!("i-many{n:08}")).collect();
    let answer = v1(
        &sim,
        "DescribeInstances",
        &[
            ("RegionId", "cn-hangzhou"),
            ("InstanceIds", &serde_json::to_string(&too_many).unwrap()),
        ],
    )
    .await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (400, "InstanceIdLimitExceeded")
    );
    let answer = v1(
        &sim,
        "DescribeInstances",
        &[
            ("RegionId", "cn-hangzhou"),
            ("InstanceIds", "i-behave00001"),
        ],
    )
    .await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (400, "InvalidParameter")
    );
    let answer = v1(
        &sim,
        "DescribeInstances",
        &[("RegionId", "cn-hangzhou"), ("Status", "Deleted")],
    )
    .await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (404, "InvalidStatus.NotFound")
    );
    let answer = v1(&sim, "DescribeInstances", &[]).await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (400, "MissingParameter")
    );
    assert_eq!(
        answer.json()["Message"],
        "The input parameter \"RegionId\" that is mandatory for processing this request is not supplied."
    );
}

#[tokio::test]
async fn pagination_by_page_and_by_token() {
    let sim = EcsSim::start().await;
    let specs: Vec<_> = (0..250)
        .map(|n| json!({"instanceId": format!("i-page{n:08}"), "regionId": "cn-hangzhou"}))
        .collect();
    sim.seed(json!(specs)).await;

    let default = v1(&sim, "DescribeInstances", &[("RegionId", "cn-hangzhou")])
        .await
        .json();
    assert_eq!(
        (
            default["TotalCount"].as_i64(),
            default["PageNumber"].as_i64(),
            default["PageSize"].as_i64()
        ),
        (Some(250), Some(1), Some(10))
    );
    let third = v1(
        &sim,
        "DescribeInstances",
        &[
            ("RegionId", "cn-hangzhou"),
            ("PageNumber", "3"),
            ("PageSize", "100"),
        ],
    )
    .await;
    let third_ids = ids(&third);
    assert_eq!(
        (third_ids.len(), third_ids[0].as_str()),
        (50, "i-page00000200")
    );
    let beyond = v1(
        &sim,
        "DescribeInstances",
        &[
            ("RegionId", "cn-hangzhou"),
            ("PageNumber", "9"),
            ("PageSize", "100"),
        ],
    )
    .await;
    assert!(ids(&beyond).is_empty());
    for (name, value) in [
        ("PageSize", "101"),
        ("PageSize", "0"),
        ("PageNumber", "0"),
        ("PageNumber", "x"),
    ] {
        let answer = v1(
            &sim,
            "DescribeInstances",
            &[("RegionId", "cn-hangzhou"), (name, value)],
        )
        .await;
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (400, "InvalidParameter"),
            "{name}={value}"
        );
    }

    let mut all = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let mut params = vec![("RegionId", "cn-hangzhou"), ("MaxResults", "100")];
        if !token.is_empty() {
            params.push(("NextToken", &token));
        }
        let answer = v1(&sim, "DescribeInstances", &params).await;
        all.extend(ids(&answer));
        pages += 1;
        token = answer.json()["NextToken"].as_str().unwrap().to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!((pages, all.len()), (3, 250));
    assert!(all.windows(2).all(|w| w[0] < w[1]));
    let answer = v1(
        &sim,
        "DescribeInstances",
        &[("RegionId", "cn-hangzhou"), ("NextToken", "not-hex")],
    )
    .await;
    assert_eq!(answer.code(), "InvalidParameter");
    // MaxResults below 10 counts as 10.
    let answer = v1(
        &sim,
        "DescribeInstances",
        &[("RegionId", "cn-hangzhou"), ("MaxResults", "1")],
    )
    .await;
    assert_eq!(ids(&answer).len(), 10);
}

#[tokio::test]
async fn timed_transitions_and_release_linger() {
    let sim =
        EcsSim::start_with_args(&["--transition-ms", "500", "--release-linger-ms", "1500"]).await;
    seed_simple(
        &sim,
        &[("i-life00000001", "Pending"), ("i-life00000002", "Running")],
    )
    .await;
    let t0 = Instant::now();
    assert_eq!(
        status_of(&sim, "i-life00000001").await.as_deref(),
        Some("Pending")
    );
    let answer = v1(&sim, "DeleteInstance", &[("InstanceId", "i-life00000001")]).await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (403, "IncorrectInstanceStatus.Initializing")
    );
    tokio::time::sleep(Duration::from_millis(650).saturating_sub(t0.elapsed())).await;
    assert_eq!(
        status_of(&sim, "i-life00000001").await.as_deref(),
        Some("Starting")
    );
    tokio::time::sleep(Duration::from_millis(1100).saturating_sub(t0.elapsed())).await;
    assert_eq!(
        status_of(&sim, "i-life00000001").await.as_deref(),
        Some("Running")
    );

    // Force release of a running instance: Stopping, then Stopped, then gone.
    let t1 = Instant::now();
    let answer = v1(
        &sim,
        "DeleteInstance",
        &[("InstanceId", "i-life00000002"), ("Force", "true")],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        status_of(&sim, "i-life00000002").await.as_deref(),
        Some("Stopping")
    );
    let again = v1(
        &sim,
        "DeleteInstance",
        &[("InstanceId", "i-life00000002"), ("Force", "true")],
    )
    .await;
    assert_eq!(again.code(), "InvalidInstanceId.NotFound");
    tokio::time::sleep(Duration::from_millis(700).saturating_sub(t1.elapsed())).await;
    assert_eq!(
        status_of(&sim, "i-life00000002").await.as_deref(),
        Some("Stopped")
    );
    assert_eq!(
        sim.instance("i-life00000002").await.unwrap()["released"],
        true
    );
    tokio::time::sleep(Duration::from_millis(1700).saturating_sub(t1.elapsed())).await;
    assert_eq!(status_of(&sim, "i-life00000002").await, None);
    assert_eq!(sim.instance("i-life00000002").await, None);
}

#[tokio::test]
async fn every_error_setup_produces_its_code() {
    let sim = EcsSim::start().await;
    // (instance setup, extra DeleteInstance params, expected HTTP status, expected code)
    type Case = (
        serde_json::Value,
        &'static [(&'static str, &'static str)],
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            json!({"status": "Running"}),
            &[],
            403,
            "IncorrectInstanceStatus",
        ),
        (
            json!({"status": "Stopping"}),
            &[("Force", "true")],
            403,
            "IncorrectInstanceStatus",
        ),
        (
            json!({"status": "Starting"}),
            &[],
            403,
            "IncorrectInstanceStatus.Initializing",
        ),
        (
            json!({"lockReasons": ["security"]}),
            &[],
            403,
            "InstanceLockedForSecurity",
        ),
        (
            json!({"deletionProtection": true}),
            &[],
            403,
            "InvalidOperation.DeletionProtection",
        ),
        (
            json!({"chargeType": "PrePaid"}),
            &[("TerminateSubscription", "true")],
            403,
            "ChargeTypeViolation",
        ),
        (
            json!({"chargeType": "PrePaid", "expired": true}),
            &[],
            403,
            "ChargeTypeViolation",
        ),
        (
            json!({"routeEntry": true}),
            &[],
            400,
            "DependencyViolation.RouteEntry",
        ),
        (
            json!({"slbConfiguring": true}),
            &[],
            400,
            "DependencyViolation.SLBConfiguring",
        ),
        (
            json!({"initializing": true}),
            &[],
            403,
            "IncorrectInstanceStatus.Initializing",
        ),
        (
            json!({"owner": "someone-else"}),
            &[],
            404,
            "InvalidInstanceId.NotFound",
        ),
        (json!({}), &[("DryRun", "true")], 400, "DryRunOperation"),
        (
            json!({"chargeType": "PrePaid", "expired": true}),
            &[("TerminateSubscription", "True")],
            200,
            "",
        ),
        (json!({"status": "Running"}), &[("Force", "true")], 200, ""),
    ];
    for (n, (setup, params, status, code)) in cases.into_iter().enumerate() {
        let id = format!("i-setup{n:06}");
        let mut spec = json!({"instanceId": id, "regionId": "cn-hangzhou", "status": "Stopped"});
        spec.as_object_mut()
            .unwrap()
            .extend(setup.as_object().unwrap().clone());
        sim.seed(json!([spec])).await;
        let mut all = vec![("InstanceId", id.as_str())];
        all.extend_from_slice(params);
        let answer = v1(&sim, "DeleteInstance", &all).await;
        let got = if answer.status == 200 {
            String::new()
        } else {
            answer.code()
        };
        assert_eq!(
            (answer.status, got.as_str()),
            (status, code),
            "case {n}: {setup} {params:?}"
        );
    }
    let answer = v1(&sim, "DeleteInstance", &[("InstanceId", "I-NOT-VALID")]).await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (400, "InvalidParameter")
    );
    assert_eq!(
        answer.json()["Message"],
        "The input parameter InstanceId is invalid."
    );
    let answer = v1(&sim, "DeleteInstance", &[]).await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (400, "MissingParameter")
    );

    // Stop/Start under a security lock or an expired subscription.
    sim.seed(json!([{"instanceId": "i-locked000001", "regionId": "cn-hangzhou", "lockReasons": ["security"]},
                    {"instanceId": "i-expired00001", "regionId": "cn-hangzhou", "chargeType": "PrePaid", "expired": true}])).await;
    assert_eq!(
        v1(&sim, "StopInstance", &[("InstanceId", "i-locked000001")])
            .await
            .code(),
        "InstanceLockedForSecurity"
    );
    assert_eq!(
        v1(&sim, "StartInstance", &[("InstanceId", "i-locked000001")])
            .await
            .code(),
        "InstanceLockedForSecurity"
    );
    assert_eq!(
        v1(&sim, "StopInstance", &[("InstanceId", "i-expired00001")])
            .await
            .code(),
        "InstanceExpiredOrInArrears"
    );
    let locks = v1(
        &sim,
        "DescribeInstances",
        &[
            ("RegionId", "cn-hangzhou"),
            ("InstanceIds", "[\"i-locked000001\"]"),
        ],
    )
    .await
    .json();
    assert_eq!(
        locks["Instances"]["Instance"][0]["OperationLocks"]["LockReason"][0]["LockReason"],
        "security"
    );
    assert_eq!(
        v1(
            &sim,
            "StopInstance",
            &[
                ("InstanceId", "i-locked000001"),
                ("StoppedMode", "Sometimes")
            ]
        )
        .await
        .code(),
        "InvalidParameter"
    );
}

#[tokio::test]
async fn throttling_errors_latency_and_drops() {
    let sim = EcsSim::start().await;
    sim.set_faults(json!([{"action": "DescribeInstances", "throttleQps": 3}]))
        .await;
    let mut codes = Vec::new();
    for _ in 0..6 {
        let answer = v1(&sim, "DescribeInstances", &[("RegionId", "cn-hangzhou")]).await;
        codes.push(if answer.status == 200 {
            "ok".to_owned()
        } else {
            answer.code()
        });
    }
    assert_eq!(&codes[..3], ["ok", "ok", "ok"]);
    assert!(
        codes[3..].iter().all(|c| c == "Throttling.User"),
        "{codes:?}"
    );
    let throttled = v1(&sim, "DescribeInstances", &[("RegionId", "cn-hangzhou")]).await;
    assert_eq!(throttled.status, 400);
    assert_eq!(
        throttled.json()["Message"],
        "Request was denied due to user flow control."
    );
    // Another action and another account have their own quota.
    assert_ne!(
        v1(
            &sim,
            "DescribeInstanceStatus",
            &[("RegionId", "cn-hangzhou")]
        )
        .await
        .code(),
        "Throttling.User"
    );
    sim.add_account("second", "secret2", None).await;
    let second = Credentials {
        access_key_id: "second".into(),
        secret: "secret2".into(),
        token: None,
    };
    assert_eq!(
        v1_as(
            &sim,
            &second,
            "DescribeInstances",
            &[("RegionId", "cn-hangzhou")]
        )
        .await
        .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        v1(&sim, "DescribeInstances", &[("RegionId", "cn-hangzhou")])
            .await
            .status,
        200
    );

    sim.set_faults(json!([{"errorRate": 1.0, "errorCode": "InternalError"}]))
        .await;
    let answer = v1(&sim, "DescribeInstances", &[("RegionId", "cn-hangzhou")]).await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (500, "InternalError")
    );
    sim.set_faults(json!([{"action": "StopInstance", "errorRate": 1.0}]))
        .await;
    assert_eq!(
        v1(&sim, "StopInstance", &[("InstanceId", "i-none00000001")])
            .await
            .status,
        503
    );
    assert_eq!(
        v1(&sim, "DescribeInstances", &[("RegionId", "cn-hangzhou")])
            .await
            .status,
        200
    );
    // Faults come after authentication.
    let stranger = Credentials {
        access_key_id: "nobody".into(),
        secret: "x".into(),
        token: None,
    };
    assert_eq!(
        v1_as(
            &sim,
            &stranger,
            "StopInstance",
            &[("InstanceId", "i-none00000001")]
        )
        .await
        .code(),
        "InvalidAccessKeyId.NotFound"
    );

    sim.set_faults(json!([{"latencyMs": 300}])).await;
    let started = Instant::now();
    assert_eq!(
        v1(&sim, "DescribeInstances", &[("RegionId", "cn-hangzhou")])
            .await
            .status,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    sim.set_faults(json!([{"action": "DeleteInstance", "dropRate": 1.0}]))
        .await;
    let signed = v1_sign(
        "GET",
        v1_params(
            "DeleteInstance",
            &[("InstanceId", "i-none00000001")],
            &Credentials::default(),
        ),
        ACCESS_KEY_SECRET,
    );
    let dropped = http()
        .get(format!("{}/?{}", sim.endpoint(), query_string(&signed)))
        .send()
        .await;
    assert!(
        dropped.is_err(),
        "expected a dropped connection, got {dropped:?}"
    );
    let log = sim.calls(Some("DeleteInstance")).await;
    assert_eq!(
        (
            log.last().unwrap()["dropped"].as_bool(),
            log.last().unwrap()["httpStatus"].is_null(),
            log.last().unwrap()["answerDropped"].as_bool(),
        ),
        (Some(true), true, Some(false))
    );

    sim.clear_faults().await;
    let started = Instant::now();
    assert_eq!(
        v1(&sim, "DescribeInstances", &[("RegionId", "cn-hangzhou")])
            .await
            .status,
        200
    );
    assert!(started.elapsed() < Duration::from_millis(300));

    let bad = http()
        .put(format!("{}/_sim/faults", sim.endpoint()))
        .json(&json!({"rules": [{"errorRate": 2}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
}

/// Sends a signed V1 request whose answer is expected never to arrive.
async fn expect_no_answer(sim: &EcsSim, action: &str, params: &[(&str, &str)]) {
    let signed = v1_sign(
        "GET",
        v1_params(action, params, &Credentials::default()),
        ACCESS_KEY_SECRET,
    );
    let sent = http()
        .get(format!("{}/?{}", sim.endpoint(), query_string(&signed)))
        .send()
        .await;
    let err = sent.expect_err("the answer was dropped, yet a response arrived");
    // The request went out; the connection was closed instead of answered.
    assert!(!err.is_connect() && !err.is_timeout(), "{err:?}");
}

#[tokio::test]
async fn an_answer_dropped_after_processing() {
    // A long linger: the released instance stays visible while the test looks at it.
    let sim = EcsSim::start_with_args(&["--release-linger-ms", "60000"]).await;
    seed_simple(
        &sim,
        &[("i-dropans00001", "Stopped"), ("i-dropans00002", "Running")],
    )
    .await;
    sim.set_faults(json!([{"action": "DeleteInstance", "dropAnswerRate": 1.0}]))
        .await;

    expect_no_answer(&sim, "DeleteInstance", &[("InstanceId", "i-dropans00001")]).await;
    // Processed: the instance is released, and the log says the answer was never sent.
    assert_eq!(
        sim.instance("i-dropans00001").await.expect("still visible")["released"],
        true
    );
    let log = sim.calls(Some("DeleteInstance")).await;
    assert_eq!(log.len(), 1, "{log:?}");
    let call = &log[0];
    assert_eq!(call["params"]["InstanceId"], "i-dropans00001");
    assert_eq!(
        (
            call["httpStatus"].as_u64(),
            call["code"].is_null(),
            call["dropped"].as_bool(),
            call["answerDropped"].as_bool(),
        ),
        (Some(200), true, Some(false), Some(true)),
        "{call}"
    );
    assert!(
        call["requestId"].as_str().is_some_and(|id| !id.is_empty()),
        "{call}"
    );

    // A refused call is processed too: its error answer is what is dropped.
    expect_no_answer(&sim, "DeleteInstance", &[("InstanceId", "i-dropans00002")]).await;
    let log = sim.calls(Some("DeleteInstance")).await;
    let call = log.last().unwrap();
    assert_eq!(
        (
            call["httpStatus"].as_u64(),
            call["code"].as_str(),
            call["answerDropped"].as_bool(),
        ),
        (Some(403), Some("IncorrectInstanceStatus"), Some(true)),
        "{call}"
    );
    assert_eq!(
        sim.instance("i-dropans00002").await.unwrap()["released"],
        false
    );

    // Only the rule's action: DescribeInstances is answered.
    let listed = v1(
        &sim,
        "DescribeInstances",
        &[
            ("RegionId", "cn-hangzhou"),
            ("InstanceIds", r#"["i-dropans00001","i-dropans00002"]"#),
        ],
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(
        sim.calls(Some("DescribeInstances")).await[0]["answerDropped"],
        false
    );

    // Without the fault, a second release of the first instance says it is gone.
    sim.clear_faults().await;
    let again = v1(&sim, "DeleteInstance", &[("InstanceId", "i-dropans00001")]).await;
    assert_eq!(
        (again.status, again.code().as_str()),
        (404, "InvalidInstanceId.NotFound"),
        "{}",
        again.body
    );
}

#[tokio::test]
async fn admin_api_round_trip() {
    let sim = EcsSim::start().await;
    sim.seed(json!([{"instanceId": "i-admin0000001", "regionId": "cn-shanghai", "status": "Stopped",
                     "chargeType": "PrePaid", "instanceName": "db", "instanceType": "ecs.c7.xlarge"}])).await;
    let instance = sim.instance("i-admin0000001").await.unwrap();
    assert_eq!(instance["zoneId"], "cn-shanghai-a");
    assert_eq!(
        (
            instance["status"].as_str(),
            instance["chargeType"].as_str(),
            instance["released"].as_bool()
        ),
        (Some("Stopped"), Some("PrePaid"), Some(false))
    );

    sim.patch_instance(
        "i-admin0000001",
        json!({"status": "Running", "lockReasons": ["financial"], "routeEntry": true}),
    )
    .await;
    let instance = sim.instance("i-admin0000001").await.unwrap();
    assert_eq!(
        (
            instance["status"].as_str(),
            instance["routeEntry"].as_bool()
        ),
        (Some("Running"), Some(true))
    );
    let described = v1(&sim, "DescribeInstances", &[("RegionId", "cn-shanghai")])
        .await
        .json();
    let item = &described["Instances"]["Instance"][0];
    assert_eq!(
        (
            item["InstanceName"].as_str(),
            item["InstanceType"].as_str(),
            item["InstanceTypeFamily"].as_str()
        ),
        (Some("db"), Some("ecs.c7.xlarge"), Some("ecs.c7"))
    );

    sim.remove_instance("i-admin0000001").await;
    assert_eq!(sim.instance("i-admin0000001").await, None);
    sim.remove_instance("i-admin0000001").await; // idempotent

    let client = http();
    let endpoint = sim.endpoint();
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(
            client
                .get(format!("{endpoint}/_sim/health"))
                .send()
                .await
                .unwrap()
        ),
        200
    );
    assert_eq!(
        status(
            client
                .patch(format!("{endpoint}/_sim/instances/i-nothere00001"))
                .json(&json!({}))
                .send()
                .await
                .unwrap()
        ),
        404
    );
    assert_eq!(
        status(
            client
                .post(format!("{endpoint}/_sim/instances"))
                .body("not json")
                .send()
                .await
                .unwrap()
        ),
        400
    );
    assert_eq!(
        status(
            client
                .post(format!("{endpoint}/_sim/instances"))
                .json(&json!([{"instanceId": "i-x0000001"}]))
                .send()
                .await
                .unwrap()
        ),
        400
    );
    assert_eq!(
        status(
            client
                .post(format!("{endpoint}/_sim/instances"))
                .json(&json!([{"instanceId": "i-x0000001", "regionId": "r", "status": "Deleted"}]))
                .send()
                .await
                .unwrap()
        ),
        400
    );
    assert_eq!(
        status(
            client
                .get(format!("{endpoint}/_sim/nothing"))
                .send()
                .await
                .unwrap()
        ),
        404
    );

    // Accounts can be added and removed at run time.
    sim.add_account("extra", "extrasecret", Some("tok")).await;
    let extra = Credentials {
        access_key_id: "extra".into(),
        secret: "extrasecret".into(),
        token: Some("tok".into()),
    };
    assert_eq!(
        v1_as(
            &sim,
            &extra,
            "DescribeInstances",
            &[("RegionId", "cn-shanghai")]
        )
        .await
        .status,
        200
    );
    assert_eq!(
        status(
            client
                .delete(format!("{endpoint}/_sim/accounts/extra"))
                .send()
                .await
                .unwrap()
        ),
        200
    );
    assert_eq!(
        v1_as(
            &sim,
            &extra,
            "DescribeInstances",
            &[("RegionId", "cn-shanghai")]
        )
        .await
        .code(),
        "InvalidAccessKeyId.NotFound"
    );

    // Call log: filter, order, clear, reset.
    let calls = sim.calls(None).await;
    assert_eq!(calls.len(), 3);
    assert!(
        calls
            .windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64())
    );
    assert_eq!(calls[0]["params"]["RegionId"], "cn-shanghai");
    assert!(
        calls[0]["at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    assert_eq!(sim.calls(Some("StopInstance")).await.len(), 0);
    sim.clear_calls().await;
    assert!(sim.calls(None).await.is_empty());

    seed_simple(&sim, &[("i-admin0000002", "Running")]).await;
    sim.set_faults(json!([{"errorRate": 1.0}])).await;
    assert_eq!(
        status(
            client
                .post(format!("{endpoint}/_sim/reset"))
                .send()
                .await
                .unwrap()
        ),
        200
    );
    assert_eq!(sim.instance("i-admin0000002").await, None);
    assert_eq!(
        v1(&sim, "DescribeInstances", &[("RegionId", "cn-hangzhou")])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn starts_from_seed_and_accounts_files() {
    let dir = std::env::temp_dir().join(format!("ecs-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let seed = dir.join("seed.json");
    let accounts = dir.join("accounts.json");
    std::fs::write(
        &seed,
        json!([{"instanceId": "i-seeded000001", "regionId": "eu-central-1", "status": "Stopped"}])
            .to_string(),
    )
    .unwrap();
    std::fs::write(
        &accounts,
        json!([{"accessKeyId": "fileid", "accessKeySecret": "filesecret"}]).to_string(),
    )
    .unwrap();
    let sim = EcsSim::start_with_args(&[
        "--seed",
        seed.to_str().unwrap(),
        "--accounts-file",
        accounts.to_str().unwrap(),
    ])
    .await;
    let from_file = Credentials {
        access_key_id: "fileid".into(),
        secret: "filesecret".into(),
        token: None,
    };
    let answer = v1_as(
        &sim,
        &from_file,
        "DescribeInstances",
        &[("RegionId", "eu-central-1")],
    )
    .await;
    assert_eq!(ids(&answer), ["i-seeded000001"]);
    // With accounts configured, the default test account is not added.
    assert_eq!(
        v1(&sim, "DescribeInstances", &[("RegionId", "eu-central-1")])
            .await
            .code(),
        "InvalidAccessKeyId.NotFound"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
