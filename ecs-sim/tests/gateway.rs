//! The RPC gateway over raw HTTP: formats, signatures, replay and clock checks, malformed input
//! and the order of checks.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn xml_is_the_default_format_and_json_is_case_insensitive() {
    let sim = EcsSim::start().await;
    seed_simple(&sim, &[("i-gateway0001", "Running")]).await;

    let mut params = v1_params(
        "DescribeInstances",
        &[("RegionId", "cn-hangzhou")],
        &Credentials::default(),
    );
    remove(&mut params, "Format");
    let xml = send_v1(&sim, "GET", &v1_sign("GET", params, ACCESS_KEY_SECRET)).await;
    assert_eq!(
        (xml.status, xml.content_type.as_str()),
        (200, "text/xml;charset=utf-8")
    );
    assert!(
        xml.body.starts_with(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DescribeInstancesResponse><RequestId>"
        ),
        "{}",
        xml.body
    );
    assert!(
        xml.body
            .contains("<Instances><Instance><InstanceId>i-gateway0001</InstanceId>")
    );

    let mut params = v1_params(
        "DescribeInstances",
        &[("RegionId", "cn-hangzhou")],
        &Credentials::default(),
    );
    set(&mut params, "Format", "json");
    let json = send_v1(&sim, "GET", &v1_sign("GET", params, ACCESS_KEY_SECRET)).await;
    assert_eq!(
        (json.status, json.content_type.as_str()),
        (200, "application/json;charset=utf-8")
    );
    assert_eq!(
        json.json()["Instances"]["Instance"][0]["InstanceId"],
        "i-gateway0001"
    );

    // XML errors carry the same fields.
    let mut params = v1_params(
        "DeleteInstance",
        &[("InstanceId", "i-gateway9999")],
        &Credentials::default(),
    );
    set(&mut params, "Format", "XML");
    let error = send_v1(&sim, "GET", &v1_sign("GET", params, ACCESS_KEY_SECRET)).await;
    assert_eq!(
        (error.status, error.content_type.as_str()),
        (404, "text/xml;charset=utf-8")
    );
    for part in [
        "<Error><RequestId>",
        "<HostId>127.0.0.1:",
        "<Code>InvalidInstanceId.NotFound</Code>",
        "<Message>The specified InstanceId does not exist.</Message>",
        "<Recommend>https://",
    ] {
        assert!(
            error.body.contains(part),
            "{part} missing in {}",
            error.body
        );
    }
}

#[tokio::test]
async fn v1_post_form_body_and_v3_are_accepted() {
    let sim = EcsSim::start().await;
    seed_simple(&sim, &[("i-gateway0002", "Stopped")]).await;
    let params = v1_params(
        "DeleteInstance",
        &[("InstanceId", "i-gateway0002"), ("DryRun", "TRUE")],
        &Credentials::default(),
    );
    let answer = send_v1(&sim, "POST", &v1_sign("POST", params, ACCESS_KEY_SECRET)).await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (400, "DryRunOperation")
    );
    assert_eq!(
        answer.json()["Message"],
        "Request validation has been passed with DryRun flag set."
    );

    // Signed for GET but sent by POST: the method is part of the string to sign.
    let params = v1_params(
        "DescribeInstances",
        &[("RegionId", "cn-hangzhou")],
        &Credentials::default(),
    );
    let answer = send_v1(&sim, "POST", &v1_sign("GET", params, ACCESS_KEY_SECRET)).await;
    assert_eq!(answer.code(), "SignatureDoesNotMatch");

    let answer = V3::new(
        &sim,
        "DescribeInstances",
        &[
            ("RegionId", "cn-hangzhou"),
            ("InstanceIds", "[\"i-gateway0002\"]"),
        ],
    )
    .header("x-acs-custom", "  spaced value  ")
    .send()
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.content_type, "application/json;charset=utf-8");
    assert_eq!(answer.json()["TotalCount"], 1);

    // V3 with the parameters in a form body (hashed into x-acs-content-sha256).
    let mut request = V3::new(&sim, "DescribeInstances", &[]);
    request.body = "RegionId=cn-hangzhou&InstanceIds=%5B%22i-gateway0002%22%5D".into();
    let answer = request.send().await;
    assert_eq!(
        (answer.status, answer.json()["TotalCount"].as_i64()),
        (200, Some(1)),
        "{}",
        answer.body
    );

    let calls = sim.calls(None).await;
    assert_eq!(calls.len(), 4);
    assert_eq!(calls[2]["signatureMethod"], "ACS3-HMAC-SHA256");
    assert_eq!(calls[0]["params"]["DryRun"], "TRUE");
    assert!(calls[0]["params"].get("Signature").is_none());
}

#[tokio::test]
async fn signature_mismatch_echoes_the_server_string_to_sign() {
    let sim = EcsSim::start().await;
    // Empty values are kept and signed (the legacy SDK sends `SignatureType=`).
    let params = v1_params(
        "DescribeInstances",
        &[
            ("RegionId", "cn-hangzhou"),
            ("SignatureType", ""),
            ("Name", "a b*~"),
        ],
        &Credentials::default(),
    );
    let expected = v1_string_to_sign("GET", &params);
    let ok = send_v1(
        &sim,
        "GET",
        &v1_sign("GET", params.clone(), ACCESS_KEY_SECRET),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    let mut params = params;
    set(&mut params, "SignatureNonce", &nonce());
    let expected_after = v1_string_to_sign("GET", &params);
    assert_ne!(expected, expected_after);
    let bad = send_v1(&sim, "GET", &v1_sign("GET", params, "wrong-secret")).await;
    assert_eq!(
        (bad.status, bad.code().as_str()),
        (400, "SignatureDoesNotMatch")
    );
    assert_eq!(
        bad.json()["Message"].as_str().unwrap(),
        format!(
            "Specified signature is not matched with our calculation. server string to sign is:{expected_after}"
        )
    );

    let mut request = V3::new(&sim, "DescribeInstances", &[("RegionId", "cn-hangzhou")]);
    let authorization = request.authorization();
    // Tamper with a signed header after signing.
    let request = request.header("x-acs-date", &now_timestamp().replace('Z', "+00:00"));
    let bad = request.send_with(&authorization).await;
    assert_eq!(bad.code(), "SignatureDoesNotMatch");
    assert!(
        bad.json()["Message"]
            .as_str()
            .unwrap()
            .contains("server string to sign is:ACS3-HMAC-SHA256\n")
    );
}

#[tokio::test]
async fn replayed_nonce_and_skewed_or_malformed_timestamps_are_refused() {
    let sim = EcsSim::start_with_args(&["--max-skew-secs", "60"]).await;
    let signed = v1_sign(
        "GET",
        v1_params(
            "DescribeInstances",
            &[("RegionId", "cn-hangzhou")],
            &Credentials::default(),
        ),
        ACCESS_KEY_SECRET,
    );
    assert_eq!(send_v1(&sim, "GET", &signed).await.status, 200);
    let replay = send_v1(&sim, "GET", &signed).await;
    assert_eq!(
        (replay.status, replay.code().as_str()),
        (400, "SignatureNonceUsed")
    );
    assert_eq!(
        replay.json()["Message"],
        "Specified signature nonce was used already."
    );

    let mut request = V3::new(&sim, "DescribeInstances", &[("RegionId", "cn-hangzhou")]);
    let authorization = request.authorization();
    assert_eq!(request.send_with(&authorization).await.status, 200);
    assert_eq!(
        request.send_with(&authorization).await.code(),
        "SignatureNonceUsed"
    );

    let old = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(120))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let mut params = v1_params(
        "DescribeInstances",
        &[("RegionId", "cn-hangzhou")],
        &Credentials::default(),
    );
    set(&mut params, "Timestamp", &old);
    let skewed = send_v1(&sim, "GET", &v1_sign("GET", params, ACCESS_KEY_SECRET)).await;
    assert_eq!(
        (skewed.status, skewed.code().as_str()),
        (400, "InvalidTimeStamp.Expired")
    );

    let future = V3::new(&sim, "DescribeInstances", &[("RegionId", "cn-hangzhou")])
        .header(
            "x-acs-date",
            &(jiff::Timestamp::now() + jiff::SignedDuration::from_secs(120))
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
        )
        .send()
        .await;
    assert_eq!(future.code(), "InvalidTimeStamp.Expired");

    let mut params = v1_params(
        "DescribeInstances",
        &[("RegionId", "cn-hangzhou")],
        &Credentials::default(),
    );
    set(&mut params, "Timestamp", "yesterday");
    let malformed = send_v1(&sim, "GET", &v1_sign("GET", params, ACCESS_KEY_SECRET)).await;
    assert_eq!(
        (malformed.status, malformed.code().as_str()),
        (400, "InvalidTimeStamp.Format")
    );
}

#[tokio::test]
async fn unknown_action_version_and_key_follow_the_gateway_order() {
    let sim = EcsSim::start().await;
    // Unknown action wins over a missing signature.
    let unsigned = format!(
        "{}/?Action=RunWhatever&Version=2014-05-26&Format=JSON",
        sim.endpoint()
    );
    let answer = Answer::from(http().get(unsigned).send().await.unwrap()).await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (404, "InvalidApi.NotFound")
    );
    assert_eq!(
        answer.json()["Message"],
        "Specified api is not found, please check your url and method."
    );

    let mut params = v1_params(
        "DescribeInstances",
        &[("RegionId", "cn-hangzhou")],
        &Credentials::default(),
    );
    set(&mut params, "Version", "2016-03-14");
    let answer = send_v1(&sim, "GET", &v1_sign("GET", params, ACCESS_KEY_SECRET)).await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (400, "InvalidVersion")
    );

    let answer = Answer::from(
        http()
            .get(format!(
                "{}/?Version=2014-05-26&Format=JSON",
                sim.endpoint()
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (400, "MissingAction")
    );

    // Known action, signature parameters missing one by one.
    for missing in [
        "AccessKeyId",
        "Signature",
        "SignatureNonce",
        "Timestamp",
        "SignatureMethod",
    ] {
        let mut params = v1_sign(
            "GET",
            v1_params(
                "DescribeInstances",
                &[("RegionId", "cn-hangzhou")],
                &Credentials::default(),
            ),
            ACCESS_KEY_SECRET,
        );
        remove(&mut params, missing);
        let answer = send_v1(&sim, "GET", &params).await;
        assert_eq!(
            (answer.status, answer.code()),
            (400, format!("Missing{missing}")),
            "{}",
            answer.body
        );
    }
    let mut params = v1_params(
        "DescribeInstances",
        &[("RegionId", "cn-hangzhou")],
        &Credentials::default(),
    );
    set(&mut params, "SignatureMethod", "HMAC-MD5");
    let answer = send_v1(&sim, "GET", &v1_sign("GET", params, ACCESS_KEY_SECRET)).await;
    assert_eq!(answer.code(), "InvalidSignatureMethod");

    // An unknown key is reported before its (necessarily wrong) signature.
    let stranger = Credentials {
        access_key_id: "nobody".into(),
        secret: "x".into(),
        token: None,
    };
    let answer = v1_as(
        &sim,
        &stranger,
        "DescribeInstances",
        &[("RegionId", "cn-hangzhou")],
    )
    .await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (404, "InvalidAccessKeyId.NotFound")
    );

    // Other paths and methods are not APIs.
    let answer = Answer::from(
        http()
            .get(format!("{}/v1/foo?Format=JSON", sim.endpoint()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.code(), "InvalidApi.NotFound");
    let answer = Answer::from(
        http()
            .put(format!("{}/?Format=JSON", sim.endpoint()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.code(), "InvalidApi.NotFound");

    let calls = sim.calls(None).await;
    assert!(
        calls
            .iter()
            .any(|c| c["action"].is_null() && c["code"] == "MissingAction")
    );
}

#[tokio::test]
async fn malformed_requests_get_errors_not_crashes() {
    let sim = EcsSim::start().await;
    let endpoint = sim.endpoint();

    for authorization in [
        "garbage",
        "ACS3-HMAC-SHA256",
        "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host",
        "ACS3-HMAC-SHA256 Credential=testid;Signature=00",
    ] {
        let answer = Answer::from(
            http()
                .post(format!("{endpoint}/?RegionId=cn-hangzhou"))
                .header("authorization", authorization)
                .header("x-acs-action", "DescribeInstances")
                .header("x-acs-version", "2014-05-26")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (400, "IncompleteSignature"),
            "{authorization}"
        );
    }
    let answer = Answer::from(
        http()
            .post(format!("{endpoint}/"))
            .header(
                "authorization",
                "ACS3-HMAC-SM3 Credential=testid,SignedHeaders=host,Signature=00",
            )
            .header("x-acs-action", "DescribeInstances")
            .header("x-acs-version", "2014-05-26")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.code(), "InvalidSignatureMethod");

    // Bad percent-encoding.
    let answer = Answer::from(
        http()
            .get(format!(
                "{endpoint}/?Action=DescribeInstances&Version=2014-05-26&RegionId=%zz"
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (answer.status, answer.content_type.as_str()),
        (400, "text/xml;charset=utf-8")
    );
    assert!(
        answer.body.contains("<Code>InvalidParameter</Code>") && answer.body.contains("RegionId"),
        "{}",
        answer.body
    );

    // A huge body.
    let answer = Answer::from(
        http()
            .post(format!("{endpoint}/?Format=JSON"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(vec![b'a'; 3 * 1024 * 1024])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 413);

    // A form body that is not UTF-8, and a bogus boolean.
    let answer = Answer::from(
        http()
            .post(format!("{endpoint}/?Format=JSON"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(vec![0xff, 0xfe, b'='])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (400, "InvalidParameter")
    );
    seed_simple(&sim, &[("i-gateway0003", "Stopped")]).await;
    let answer = v1(
        &sim,
        "DeleteInstance",
        &[("InstanceId", "i-gateway0003"), ("Force", "maybe")],
    )
    .await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (400, "InvalidParameter")
    );
    assert_eq!(
        answer.json()["Message"],
        "The specified parameter \"Force\" is not valid."
    );

    // Not HTTP at all.
    let mut raw = tokio::net::TcpStream::connect(endpoint.trim_start_matches("http://"))
        .await
        .unwrap();
    raw.write_all(b"\x00\x01garbage\r\n\r\n").await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut sink)).await;

    // Still serving.
    let answer = v1(&sim, "DescribeInstances", &[("RegionId", "cn-hangzhou")]).await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn security_tokens_are_checked_for_sts_accounts() {
    let sim = EcsSim::start_with_args(&[
        "--account",
        "testid:testsecret",
        "--account",
        "STS.key:stssecret:tok+en/==",
    ])
    .await;
    let sts = Credentials {
        access_key_id: "STS.key".into(),
        secret: "stssecret".into(),
        token: Some("tok+en/==".into()),
    };
    let answer = v1_as(
        &sim,
        &sts,
        "DescribeInstances",
        &[("RegionId", "cn-hangzhou")],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let mut v3 = V3::new(&sim, "DescribeInstances", &[("RegionId", "cn-hangzhou")]);
    v3.creds = sts.clone();
    assert_eq!(v3.send().await.status, 200);

    let wrong = Credentials {
        token: Some("other".into()),
        ..sts.clone()
    };
    let answer = v1_as(
        &sim,
        &wrong,
        "DescribeInstances",
        &[("RegionId", "cn-hangzhou")],
    )
    .await;
    assert_eq!(answer.code(), "InvalidSecurityToken.MismatchWithAccessKey");
    let none = Credentials { token: None, ..sts };
    let answer = v1_as(
        &sim,
        &none,
        "DescribeInstances",
        &[("RegionId", "cn-hangzhou")],
    )
    .await;
    assert_eq!(answer.code(), "MissingSecurityToken");

    // Neither the signature nor the token reaches the call log.
    let calls = sim.calls(Some("DescribeInstances")).await;
    assert!(
        calls
            .iter()
            .all(|c| c["params"].get("SecurityToken").is_none()
                && c["params"].get("Signature").is_none())
    );
    assert_eq!(calls[0]["accessKeyId"], "STS.key");
}

#[tokio::test]
async fn random_garbage_never_kills_the_simulator() {
    use rand::{Rng, SeedableRng};
    let sim = EcsSim::start().await;
    seed_simple(&sim, &[("i-garbage0001", "Running")]).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let pieces = [
        "Action=DeleteInstance",
        "Action=DescribeInstances",
        "Version=2014-05-26",
        "Version=",
        "Format=JSON",
        "Format=xml",
        "AccessKeyId=testid",
        "Signature=%2B%2F%3D",
        "Signature=",
        "SignatureMethod=HMAC-SHA1",
        "SignatureVersion=1.0",
        "SignatureNonce=n",
        "Timestamp=2024-01-01T00:00:00Z",
        "Timestamp=%FF%FE",
        "InstanceId=i-garbage0001",
        "InstanceIds=%5B",
        "InstanceIds.1=x",
        "PageSize=-1",
        "PageNumber=99999999999999999999",
        "MaxResults=9223372036854775807",
        "NextToken=zz",
        "DryRun=tru",
        "%",
        "=",
        "&&&",
        "a=b=c",
        "%C3%28=1",
        "RegionId=cn-hangzhou",
        "Force=TRUE",
    ];
    let client = http();
    for _ in 0..300 {
        let query: Vec<&str> = (0..rng.random_range(0..8))
            .map(|_| pieces[rng.random_range(0..pieces.len())])
            .collect();
        let url = format!("{}/?{}", sim.endpoint(), query.join("&"));
        let mut request = if rng.random_bool(0.5) {
            client.get(&url)
        } else {
            client.post(&url)
        };
        if rng.random_bool(0.3) {
            request = request
                .header(
                    "authorization",
                    "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host;x-acs-date,Signature=ab",
                )
                .header("x-acs-action", "DescribeInstances")
                .header("x-acs-version", "2014-05-26")
                .header("x-acs-date", "2024-01-01T00:00:00Z")
                .header("x-acs-signature-nonce", "n");
        }
        if rng.random_bool(0.3) {
            let body: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
            request = request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body);
        }
        let answer = Answer::from(request.send().await.expect("the simulator answers")).await;
        assert!(
            (400..500).contains(&answer.status),
            "{url}: {} {}",
            answer.status,
            answer.body
        );
    }
    let health = http()
        .get(format!("{}/_sim/health", sim.endpoint()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(sim.calls(None).await.len(), 300);
}
