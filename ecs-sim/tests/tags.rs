//! Tags (TagResources, UntagResources, ListTagResources, DescribeInstances `Tags`) and unknown
//! regions, over raw HTTP.

mod support;

use std::collections::BTreeMap;

use serde_json::{Value, json};
use support::*;

const REGION: &str = "cn-hangzhou";

fn assert_error(answer: &Answer, status: u16, code: &str, message: &str) {
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (status, code),
        "{}",
        answer.body
    );
    assert_eq!(answer.json()["Message"], message, "{}", answer.body);
    assert!(
        answer.json()["RequestId"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
}

fn assert_ok(answer: &Answer) -> Value {
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert!(body["RequestId"].as_str().is_some_and(|r| !r.is_empty()));
    body
}

/// `TagResources` for instance IDs with `(key, value)` pairs, plus extra parameters.
async fn tag(sim: &EcsSim, ids: &[&str], tags: &[(&str, &str)], extra: &[(&str, &str)]) -> Answer {
    let mut params: Vec<(String, String)> = vec![
        ("RegionId".into(), REGION.into()),
        ("ResourceType".into(), "instance".into()),
    ];
    for (n, id) in ids.iter().enumerate() {
        params.push((format!("ResourceId.{}", n + 1), (*id).to_owned()));
    }
    for (n, (k, v)) in tags.iter().enumerate() {
        params.push((format!("Tag.{}.Key", n + 1), (*k).to_owned()));
        params.push((format!("Tag.{}.Value", n + 1), (*v).to_owned()));
    }
    for (k, v) in extra {
        set(&mut params, k, v);
    }
    send(sim, "TagResources", &params).await
}

async fn untag(sim: &EcsSim, ids: &[&str], keys: &[&str], extra: &[(&str, &str)]) -> Answer {
    let mut params: Vec<(String, String)> = vec![
        ("RegionId".into(), REGION.into()),
        ("ResourceType".into(), "instance".into()),
    ];
    for (n, id) in ids.iter().enumerate() {
        params.push((format!("ResourceId.{}", n + 1), (*id).to_owned()));
    }
    for (n, k) in keys.iter().enumerate() {
        params.push((format!("TagKey.{}", n + 1), (*k).to_owned()));
    }
    for (k, v) in extra {
        set(&mut params, k, v);
    }
    send(sim, "UntagResources", &params).await
}

/// Sends V1-signed params by GET; a param whose value is `"\u{0}"` is removed first.
async fn send(sim: &EcsSim, action: &str, params: &[(String, String)]) -> Answer {
    let params: Vec<(&str, &str)> = params
        .iter()
        .filter(|(_, v)| v != "\u{0}")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    v1(sim, action, &params).await
}

/// Marks a parameter for removal in the `extra` lists above.
const REMOVE: &str = "\u{0}";

/// A V1 request asking for XML.
async fn v1_xml(sim: &EcsSim, action: &str, params: &[(&str, &str)]) -> Answer {
    let creds = Credentials::default();
    let mut all = v1_params(action, params, &creds);
    set(&mut all, "Format", "XML");
    let signed = v1_sign("GET", all, &creds.secret);
    send_v1(sim, "GET", &signed).await
}

async fn list(sim: &EcsSim, params: &[(&str, &str)]) -> Answer {
    let mut all = vec![("RegionId", REGION), ("ResourceType", "instance")];
    all.extend_from_slice(params);
    v1(sim, "ListTagResources", &all).await
}

fn listed(body: &Value) -> Vec<(String, String, String)> {
    body["TagResources"]["TagResource"]
        .as_array()
        .unwrap_or_else(|| panic!("no TagResource list: {body}"))
        .iter()
        .map(|item| {
            assert_eq!(item["ResourceType"], "instance");
            (
                item["ResourceId"].as_str().unwrap().to_owned(),
                item["TagKey"].as_str().unwrap().to_owned(),
                item["TagValue"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn described_tags(sim: &EcsSim, id: &str) -> Vec<(String, String)> {
    let answer = v1(
        sim,
        "DescribeInstances",
        &[
            ("RegionId", REGION),
            ("InstanceIds", &format!("[\"{id}\"]")),
        ],
    )
    .await;
    let body = assert_ok(&answer);
    body["Instances"]["Instance"][0]["Tags"]["Tag"]
        .as_array()
        .unwrap_or_else(|| panic!("no Tags.Tag list: {body}"))
        .iter()
        .map(|t| {
            (
                t["TagKey"].as_str().unwrap().to_owned(),
                t["TagValue"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn seed_ids(sim: &EcsSim, ids: &[&str]) {
    let specs: Vec<Value> = ids
        .iter()
        .map(|id| json!({"instanceId": id, "regionId": REGION}))
        .collect();
    sim.seed(Value::Array(specs)).await;
}

#[tokio::test]
async fn tag_overwrite_describe_and_untag() {
    let sim = EcsSim::start().await;
    seed_ids(&sim, &["i-tags00000001", "i-tags00000002"]).await;

    let answer = tag(
        &sim,
        &["i-tags00000001", "i-tags00000002"],
        &[("ecs.alicloud.dev/owner", "ns/name"), ("empty", "")],
        &[],
    )
    .await;
    let body = assert_ok(&answer);
    assert_eq!(body.as_object().unwrap().len(), 1, "only RequestId: {body}");
    assert_eq!(
        sim.tags("i-tags00000002").await,
        map(&[("ecs.alicloud.dev/owner", "ns/name"), ("empty", "")])
    );

    // An existing key is overwritten; the others stay.
    assert_ok(
        &tag(
            &sim,
            &["i-tags00000001"],
            &[("ecs.alicloud.dev/owner", "other"), ("Env", "prod")],
            &[],
        )
        .await,
    );
    assert_eq!(
        described_tags(&sim, "i-tags00000001").await,
        vec![
            ("Env".to_owned(), "prod".to_owned()),
            ("ecs.alicloud.dev/owner".to_owned(), "other".to_owned()),
            ("empty".to_owned(), String::new()),
        ]
    );

    // Untag: absent keys are ignored.
    assert_ok(&untag(&sim, &["i-tags00000001"], &["Env", "never-there"], &[]).await);
    assert_eq!(
        sim.tags("i-tags00000001").await,
        map(&[("ecs.alicloud.dev/owner", "other"), ("empty", "")])
    );
    // All removes every tag of every listed resource.
    assert_ok(
        &untag(
            &sim,
            &["i-tags00000001", "i-tags00000002"],
            &[],
            &[("All", "true")],
        )
        .await,
    );
    assert!(sim.tags("i-tags00000001").await.is_empty());
    assert!(sim.tags("i-tags00000002").await.is_empty());
    assert!(described_tags(&sim, "i-tags00000002").await.is_empty());

    // All together with TagKey.N, or neither.
    assert_error(
        &untag(&sim, &["i-tags00000001"], &["a"], &[("All", "true")]).await,
        403,
        "Param.Conflict",
        "The specified all is true, but the specified TagKey.N is not empty.",
    );
    assert_error(
        &untag(&sim, &["i-tags00000001"], &[], &[]).await,
        404,
        "MissingParameter.Tags",
        "The parameter - Tags should not be null",
    );
    assert_error(
        &untag(&sim, &["i-tags00000001"], &[], &[("All", "false")]).await,
        404,
        "MissingParameter.Tags",
        "The parameter - Tags should not be null",
    );
    let keys: Vec<String> = (0..21).map(|n| format!("k{n}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    assert_error(
        &untag(&sim, &["i-tags00000001"], &keys, &[]).await,
        400,
        "NumberExceed.Tags",
        "The Tags parameter's number is exceed , Valid : 20",
    );
    assert_error(
        &untag(&sim, &["i-tags00000001"], &[""], &[]).await,
        400,
        "InvalidTagKey.Malformed",
        "The specified Tag.n.Key is not valid.",
    );
    assert_error(
        &untag(&sim, &["i-tags00000001"], &["k"], &[("All", "maybe")]).await,
        400,
        "InvalidParameter",
        "The specified parameter \"All\" is not valid.",
    );
}

#[tokio::test]
async fn key_and_value_rules() {
    let sim = EcsSim::start().await;
    seed_ids(&sim, &["i-rules0000001"]).await;
    let id = ["i-rules0000001"];
    let long = "k".repeat(128);
    let too_long = "k".repeat(129);

    // Accepted edge cases: 128 characters (also multi-byte), empty value, prefixes that only
    // look reserved.
    let wide = "键".repeat(128);
    assert_ok(
        &tag(
            &sim,
            &id,
            &[
                (&long, &long),
                (&wide, ""),
                ("Aliyun", "x-acs:y"),
                ("http:/", "ok"),
            ],
            &[],
        )
        .await,
    );
    assert_eq!(sim.tags(id[0]).await.len(), 4);

    for bad_key in [
        "",
        too_long.as_str(),
        "aliyun",
        "aliyunTest",
        "acs:x",
        "a http://b",
        "https://x",
    ] {
        assert_error(
            &tag(&sim, &id, &[(bad_key, "v")], &[]).await,
            400,
            "InvalidTagKey.Malformed",
            "The specified Tag.n.Key is not valid.",
        );
    }
    for bad_value in [
        too_long.as_str(),
        "aliyun-x",
        "acs:v",
        "see http://x",
        "https://x",
    ] {
        assert_error(
            &tag(&sim, &id, &[("k", bad_value)], &[]).await,
            400,
            "InvalidTagValue.Malformed",
            "The specified Tag.n.Value is not valid.",
        );
    }
    assert_error(
        &tag(&sim, &id, &[("dup", "1"), ("dup", "2")], &[]).await,
        400,
        "Duplicate.TagKey",
        "The Tag.N.Key contain duplicate key.",
    );
    assert_error(
        &tag(&sim, &id, &[("Dup", "1"), ("dUP", "2")], &[]).await,
        403,
        "TagKey.Duplication",
        "The TagKey has duplication with others, case-insensitive.",
    );
    // A key without a value, a value without a key.
    assert_error(
        &tag(&sim, &id, &[("k", "v")], &[("Tag.1.Value", REMOVE)]).await,
        400,
        "InvalidTag.Mismatch",
        "The specified Tag.n.Key and Tag.n.Value are not match.",
    );
    assert_error(
        &tag(&sim, &id, &[("k", "v")], &[("Tag.1.Key", REMOVE)]).await,
        400,
        "InvalidTagKey.Malformed",
        "The specified Tag.n.Key is not valid.",
    );
    // Nothing of the failed calls was applied.
    assert_eq!(sim.tags(id[0]).await.len(), 4);
}

#[tokio::test]
async fn limits_and_missing_parameters() {
    let sim = EcsSim::start().await;
    seed_ids(&sim, &["i-limit0000001", "i-limit0000002"]).await;

    let many: Vec<(String, String)> = (0..21)
        .map(|n| (format!("k{n:02}"), format!("v{n}")))
        .collect();
    let pairs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_error(
        &tag(&sim, &["i-limit0000001"], &pairs, &[]).await,
        400,
        "NumberExceed.Tags",
        "The Tags parameter's number is exceed , Valid : 20.",
    );
    // 19 tags, then two more (one new key too many) fails as a whole; overwriting is fine.
    assert_ok(&tag(&sim, &["i-limit0000001"], &pairs[..19], &[]).await);
    assert_error(
        &tag(
            &sim,
            &["i-limit0000002", "i-limit0000001"],
            &[("k00", "new"), ("extra1", ""), ("extra2", "")],
            &[],
        )
        .await,
        400,
        "OperationDenied.QuotaExceed",
        "The quota of tags on resource is beyond permitted range.",
    );
    assert!(
        sim.tags("i-limit0000002").await.is_empty(),
        "a failed call changes no resource"
    );
    assert_eq!(sim.tags("i-limit0000001").await["k00"], "v0");
    assert_ok(
        &tag(
            &sim,
            &["i-limit0000001"],
            &[("k00", "new"), ("extra1", "")],
            &[],
        )
        .await,
    );
    assert_eq!(sim.tags("i-limit0000001").await.len(), 20);
    assert_eq!(sim.tags("i-limit0000001").await["k00"], "new");
    // Full: re-tagging existing keys still works, one more key does not.
    assert_ok(&tag(&sim, &["i-limit0000001"], &pairs[..19], &[]).await);
    assert_eq!(
        tag(&sim, &["i-limit0000001"], &pairs[19..20], &[])
            .await
            .code(),
        "OperationDenied.QuotaExceed"
    );

    // Existence is checked for every resource before the limit.
    assert_eq!(
        tag(
            &sim,
            &["i-limit0000001", "i-nothere00001"],
            &pairs[19..20],
            &[]
        )
        .await
        .code(),
        "InvalidResourceId.NotFound"
    );

    let ids: Vec<String> = (0..51).map(|n| format!("i-limit{n:07}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_error(
        &tag(&sim, &ids, &[("k", "v")], &[]).await,
        400,
        "NumberExceed.ResourceIds",
        "The ResourceIds parameter's number is exceed , Valid : 50.",
    );
    assert_error(
        &untag(&sim, &ids, &["k"], &[]).await,
        400,
        "NumberExceed.ResourceIds",
        "The ResourceIds parameter's number is exceed , Valid : 50",
    );

    for (param, code, message) in [
        (
            "RegionId",
            "MissingParameter.RegionId",
            "The parameter - RegionId should not be null.",
        ),
        (
            "ResourceType",
            "MissingParameter.ResourceType",
            "The parameter - ResourceType should not be null.",
        ),
        (
            "ResourceId.1",
            "MissingParameter.ResourceIds",
            "The parameter - ResourceIds.N should not be null.",
        ),
    ] {
        assert_error(
            &tag(&sim, &["i-limit0000001"], &[("k", "v")], &[(param, REMOVE)]).await,
            404,
            code,
            message,
        );
    }
    assert_error(
        &untag(&sim, &["i-limit0000001"], &["k"], &[("RegionId", "")]).await,
        404,
        "MissingParameter.RegionId",
        "The parameter - RegionId should not be null",
    );
    assert_error(
        &tag(&sim, &["i-limit0000001"], &[], &[]).await,
        404,
        "MissingParameter.Tags",
        "The parameter - Tags should not be null.",
    );
    for bad_type in ["bogus", "Instance", "INSTANCE"] {
        assert_error(
            &tag(
                &sim,
                &["i-limit0000001"],
                &[("k", "v")],
                &[("ResourceType", bad_type)],
            )
            .await,
            404,
            "InvalidResourceType.NotFound",
            "The ResourceType provided does not exist in our records.",
        );
    }
}

#[tokio::test]
async fn resources_that_are_not_there() {
    let sim = EcsSim::start().await;
    sim.seed(json!([
        {"instanceId": "i-found0000001", "regionId": REGION},
        {"instanceId": "i-found0000002", "regionId": "cn-beijing"},
        {"instanceId": "i-found0000003", "regionId": REGION, "owner": "someoneelse"},
        {"instanceId": "i-found0000004", "regionId": REGION, "status": "Stopped"}
    ]))
    .await;
    let not_found = |answer: Answer| {
        assert_error(
            &answer,
            404,
            "InvalidResourceId.NotFound",
            "The specified ResourceIds are not found in our records.",
        )
    };
    // Unknown, in another region, hidden from this key, malformed.
    for id in [
        "i-nothere00001",
        "i-found0000002",
        "i-found0000003",
        "not-an-id",
    ] {
        not_found(tag(&sim, &[id], &[("k", "v")], &[]).await);
        not_found(untag(&sim, &[id], &["k"], &[]).await);
    }
    // One missing resource fails the call for all.
    not_found(
        tag(
            &sim,
            &["i-found0000001", "i-nothere00001"],
            &[("k", "v")],
            &[],
        )
        .await,
    );
    assert!(sim.tags("i-found0000001").await.is_empty());
    // A documented type without resources in the simulator.
    not_found(
        tag(
            &sim,
            &["d-disk00000001"],
            &[("k", "v")],
            &[("ResourceType", "disk")],
        )
        .await,
    );
    // A released instance (still listed for a while) cannot be tagged.
    assert_ok(&v1(&sim, "DeleteInstance", &[("InstanceId", "i-found0000004")]).await);
    not_found(tag(&sim, &["i-found0000004"], &[("k", "v")], &[]).await);
    // Duplicated IDs count once.
    assert_ok(
        &tag(
            &sim,
            &["i-found0000001", "i-found0000001"],
            &[("k", "v")],
            &[],
        )
        .await,
    );
    assert_eq!(sim.tags("i-found0000001").await, map(&[("k", "v")]));
}

#[tokio::test]
async fn list_tag_resources() {
    let sim = EcsSim::start().await;
    sim.seed(json!([
        {"instanceId": "i-list00000001", "regionId": REGION, "tags": {"team": "a", "env": "prod"}},
        {"instanceId": "i-list00000002", "regionId": REGION, "tags": {"team": "b"}},
        {"instanceId": "i-list00000003", "regionId": REGION},
        {"instanceId": "i-list00000004", "regionId": REGION, "tags": {"team": "a"}, "owner": "someoneelse"},
        {"instanceId": "i-list00000005", "regionId": "cn-beijing", "tags": {"team": "a"}}
    ]))
    .await;

    let by_id = assert_ok(
        &list(
            &sim,
            &[
                ("ResourceId.1", "i-list00000002"),
                ("ResourceId.2", "i-list00000001"),
                ("ResourceId.3", "i-list00000003"),
                ("ResourceId.4", "i-nothere00001"),
            ],
        )
        .await,
    );
    assert_eq!(
        listed(&by_id),
        [
            ("i-list00000001", "env", "prod"),
            ("i-list00000001", "team", "a"),
            ("i-list00000002", "team", "b"),
        ]
        .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
    );
    assert_eq!(by_id["NextToken"], "");

    let by_key = assert_ok(&list(&sim, &[("Tag.1.Key", "team")]).await);
    let ids: Vec<String> = listed(&by_key).into_iter().map(|e| e.0).collect();
    assert_eq!(ids, ["i-list00000001", "i-list00000001", "i-list00000002"]);
    let by_pair = assert_ok(
        &list(
            &sim,
            &[
                ("Tag.1.Key", "team"),
                ("Tag.1.Value", "a"),
                ("Tag.2.Key", "env"),
            ],
        )
        .await,
    );
    assert_eq!(listed(&by_pair).len(), 2);
    let both = assert_ok(
        &list(
            &sim,
            &[("Tag.1.Key", "team"), ("ResourceId.1", "i-list00000002")],
        )
        .await,
    );
    assert_eq!(listed(&both).len(), 1);
    let disks = assert_ok(
        &v1(
            &sim,
            "ListTagResources",
            &[
                ("RegionId", REGION),
                ("ResourceType", "disk"),
                ("Tag.1.Key", "team"),
            ],
        )
        .await,
    );
    assert!(listed(&disks).is_empty());

    // Paging: 3 × 20 tags = 60 entries, 50 per page.
    let specs: Vec<Value> = (1..=3)
        .map(|n| {
            let tags: serde_json::Map<String, Value> = (0..20)
                .map(|t| (format!("k{t:02}"), json!(format!("v{n}"))))
                .collect();
            json!({"instanceId": format!("i-page0000000{n}"), "regionId": REGION, "tags": tags})
        })
        .collect();
    sim.seed(Value::Array(specs)).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let mut params = vec![("Tag.1.Key", "k05")];
        if !token.is_empty() {
            params.push(("NextToken", token.as_str()));
        }
        let body = assert_ok(&list(&sim, &params).await);
        seen.extend(listed(&body));
        pages += 1;
        token = body["NextToken"].as_str().unwrap().to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!((pages, seen.len()), (2, 60));
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "in order, no duplicates");

    // Errors.
    assert_error(
        &list(&sim, &[]).await,
        403,
        "BothEmpty.TagsAndResources",
        "The specified Tags and ResourcesIds are not allow to both empty.",
    );
    assert_error(
        &list(&sim, &[("Tag.1.Key", "team"), ("NextToken", "not-hex")]).await,
        403,
        "Invalid.NextToken",
        "The specified NextToken is not valid.",
    );
    assert_eq!(
        list(&sim, &[("Tag.1.Value", "a")]).await.code(),
        "InvalidParameter.TagValue"
    );
    assert_error(
        &list(&sim, &[("Tag.1.Key", "team"), ("Tag.2.Key", "team")]).await,
        400,
        "Duplicate.TagKey",
        "The Tag.N.Key contain duplicate key.",
    );
    assert_error(
        &list(&sim, &[("TagFilter.1.TagKey", "te*")]).await,
        403,
        "InvalidTagFilter.Malformed",
        "The specified TagFilter is not valid.",
    );
    assert_error(
        &v1(
            &sim,
            "ListTagResources",
            &[("RegionId", REGION), ("ResourceId.1", "i-list00000001")],
        )
        .await,
        404,
        "MissingParameter.ResourceType",
        "The parameter - ResourceType should not be null.",
    );
    let ids: Vec<(String, String)> = (1..=51)
        .map(|n| (format!("ResourceId.{n}"), format!("i-x{n:08}")))
        .collect();
    let mut params: Vec<(&str, &str)> = vec![("RegionId", REGION), ("ResourceType", "instance")];
    params.extend(ids.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert_eq!(
        v1(&sim, "ListTagResources", &params).await.code(),
        "NumberExceed.ResourceIds"
    );
}

#[tokio::test]
async fn describe_instances_tags_filter_and_xml() {
    let sim = EcsSim::start().await;
    sim.seed(json!([
        {"instanceId": "i-descr0000001", "regionId": REGION, "tags": {"team": "a", "x": "<&>"}},
        {"instanceId": "i-descr0000002", "regionId": REGION, "tags": {"team": "b"}},
        {"instanceId": "i-descr0000003", "regionId": REGION}
    ]))
    .await;
    let ids = |answer: &Answer| -> Vec<String> {
        answer.json()["Instances"]["Instance"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["InstanceId"].as_str().unwrap().to_owned())
            .collect()
    };
    let by_key = v1(
        &sim,
        "DescribeInstances",
        &[("RegionId", REGION), ("Tag.1.Key", "team")],
    )
    .await;
    assert_eq!(ids(&by_key), ["i-descr0000001", "i-descr0000002"]);
    let by_pair = v1(
        &sim,
        "DescribeInstances",
        &[
            ("RegionId", REGION),
            ("Tag.1.Key", "team"),
            ("Tag.1.Value", "b"),
        ],
    )
    .await;
    assert_eq!(ids(&by_pair), ["i-descr0000002"]);
    let none = v1(
        &sim,
        "DescribeInstances",
        &[("RegionId", REGION), ("Tag.1.Key", "nope")],
    )
    .await;
    assert_eq!(none.json()["TotalCount"], 0);
    assert_eq!(
        v1(
            &sim,
            "DescribeInstances",
            &[("RegionId", REGION), ("Tag.1.Value", "b")]
        )
        .await
        .code(),
        "InvalidTag.Mismatch"
    );
    let many: Vec<(String, String)> = (1..=21)
        .map(|n| (format!("Tag.{n}.Key"), format!("k{n}")))
        .collect();
    let mut params: Vec<(&str, &str)> = vec![("RegionId", REGION)];
    params.extend(many.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let too_many = v1(&sim, "DescribeInstances", &params).await;
    assert_eq!(
        (too_many.status, too_many.code().as_str()),
        (400, "InvalidTagCount")
    );

    // An instance without tags shows an empty list, in JSON and in XML.
    let untagged = v1(
        &sim,
        "DescribeInstances",
        &[
            ("RegionId", REGION),
            ("InstanceIds", "[\"i-descr0000003\"]"),
        ],
    )
    .await;
    assert_eq!(
        untagged.json()["Instances"]["Instance"][0]["Tags"],
        json!({"Tag": []})
    );

    let xml = v1_xml(
        &sim,
        "DescribeInstances",
        &[
            ("RegionId", REGION),
            ("InstanceIds", "[\"i-descr0000001\"]"),
        ],
    )
    .await;
    assert_eq!(xml.content_type, "text/xml;charset=utf-8");
    assert!(
        xml.body.contains(
            "<Tags><Tag><TagKey>team</TagKey><TagValue>a</TagValue></Tag><Tag><TagKey>x</TagKey><TagValue>&lt;&amp;&gt;</TagValue></Tag></Tags>"
        ),
        "{}",
        xml.body
    );
    let listed_xml = v1_xml(
        &sim,
        "ListTagResources",
        &[
            ("RegionId", REGION),
            ("ResourceType", "instance"),
            ("ResourceId.1", "i-descr0000002"),
        ],
    )
    .await;
    assert!(
        listed_xml.body.starts_with(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListTagResourcesResponse><RequestId>"
        ),
        "{}",
        listed_xml.body
    );
    assert!(
        listed_xml.body.contains(
            "<NextToken></NextToken><TagResources><TagResource><ResourceId>i-descr0000002</ResourceId><ResourceType>instance</ResourceType><TagKey>team</TagKey><TagValue>b</TagValue></TagResource></TagResources></ListTagResourcesResponse>"
        ),
        "{}",
        listed_xml.body
    );
    let tagged_xml = v1_xml(
        &sim,
        "TagResources",
        &[
            ("RegionId", REGION),
            ("ResourceType", "instance"),
            ("ResourceId.1", "i-descr0000003"),
            ("Tag.1.Key", "k"),
            ("Tag.1.Value", "v"),
        ],
    )
    .await;
    assert_eq!(tagged_xml.status, 200);
    assert!(tagged_xml.body.starts_with(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><TagResourcesResponse><RequestId>"
    ));
    assert!(
        tagged_xml
            .body
            .ends_with("</RequestId></TagResourcesResponse>")
    );
    let error_xml = v1_xml(
        &sim,
        "UntagResources",
        &[
            ("RegionId", "cn-atlantis"),
            ("ResourceType", "instance"),
            ("ResourceId.1", "i-descr0000003"),
            ("TagKey.1", "k"),
        ],
    )
    .await;
    assert_eq!(error_xml.status, 404);
    assert!(error_xml.body.contains("<Code>InvalidRegionId.NotFound</Code><Message>The specified RegionId does not exist.</Message>"), "{}", error_xml.body);
}

#[tokio::test]
async fn unknown_regions() {
    let sim = EcsSim::start_with_args(&["--region", "xx-lab-1"]).await;
    sim.seed(json!([
        {"instanceId": "i-region000001", "regionId": REGION, "status": "Stopped"},
        {"instanceId": "i-region000002", "regionId": "zz-private-9"}
    ]))
    .await;
    let region_not_found = |answer: Answer| {
        assert_error(
            &answer,
            404,
            "InvalidRegionId.NotFound",
            "The specified RegionId does not exist.",
        )
    };
    for region in ["cn-atlantis", "CN-HANGZHOU", "cn-hangzhou-a"] {
        region_not_found(v1(&sim, "DescribeInstances", &[("RegionId", region)]).await);
        region_not_found(v1(&sim, "DescribeInstanceStatus", &[("RegionId", region)]).await);
        region_not_found(
            v1(
                &sim,
                "TagResources",
                &[
                    ("RegionId", region),
                    ("ResourceType", "instance"),
                    ("ResourceId.1", "i-region000001"),
                    ("Tag.1.Key", "k"),
                    ("Tag.1.Value", "v"),
                ],
            )
            .await,
        );
        region_not_found(
            v1(
                &sim,
                "UntagResources",
                &[
                    ("RegionId", region),
                    ("ResourceType", "instance"),
                    ("ResourceId.1", "i-region000001"),
                    ("All", "true"),
                ],
            )
            .await,
        );
        region_not_found(
            v1(
                &sim,
                "ListTagResources",
                &[
                    ("RegionId", region),
                    ("ResourceType", "instance"),
                    ("ResourceId.1", "i-region000001"),
                ],
            )
            .await,
        );
    }
    // The region is checked before the other parameters.
    region_not_found(
        v1(
            &sim,
            "DescribeInstances",
            &[("RegionId", "cn-atlantis"), ("PageSize", "0")],
        )
        .await,
    );
    region_not_found(v1(&sim, "ListTagResources", &[("RegionId", "cn-atlantis")]).await);
    // Missing RegionId keeps the gateway's code for Describe*.
    assert_eq!(
        v1(&sim, "DescribeInstances", &[]).await.code(),
        "MissingParameter"
    );

    // A real region without instances lists nothing; so do a --region one and a seeded one.
    for region in ["ap-southeast-1", "us-east-1", "eu-central-1", "xx-lab-1"] {
        let answer = v1(&sim, "DescribeInstances", &[("RegionId", region)]).await;
        assert_eq!(assert_ok(&answer)["TotalCount"], 0, "{region}");
        let answer = v1(
            &sim,
            "ListTagResources",
            &[
                ("RegionId", region),
                ("ResourceType", "instance"),
                ("ResourceId.1", "i-region000001"),
            ],
        )
        .await;
        assert!(listed(&assert_ok(&answer)).is_empty());
    }
    let seeded = v1(
        &sim,
        "DescribeInstanceStatus",
        &[("RegionId", "zz-private-9")],
    )
    .await;
    assert_eq!(assert_ok(&seeded)["TotalCount"], 1);
    // The instance's region stays known after it is gone, until a reset.
    sim.remove_instance("i-region000002").await;
    assert_eq!(
        v1(&sim, "DescribeInstances", &[("RegionId", "zz-private-9")])
            .await
            .status,
        200
    );
    let regions: Value = http()
        .get(format!("{}/_sim/regions", sim.endpoint()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let regions: Vec<&str> = regions
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    for expected in ["cn-hangzhou", "ap-southeast-1", "xx-lab-1", "zz-private-9"] {
        assert!(regions.contains(&expected), "{expected} in {regions:?}");
    }

    // Start/Stop/DeleteInstance take no RegionId: an unknown one (as the legacy SDK adds its
    // client's region) is ignored.
    assert_ok(
        &v1(
            &sim,
            "StartInstance",
            &[
                ("InstanceId", "i-region000001"),
                ("RegionId", "cn-atlantis"),
            ],
        )
        .await,
    );
    sim.patch_instance("i-region000001", json!({"status": "Running"}))
        .await;
    assert_ok(
        &v1(
            &sim,
            "StopInstance",
            &[
                ("InstanceId", "i-region000001"),
                ("RegionId", "cn-atlantis"),
                ("ForceStop", "true"),
            ],
        )
        .await,
    );
    sim.patch_instance("i-region000001", json!({"status": "Stopped"}))
        .await;
    assert_ok(
        &v1(
            &sim,
            "DeleteInstance",
            &[
                ("InstanceId", "i-region000001"),
                ("RegionId", "cn-atlantis"),
            ],
        )
        .await,
    );

    let reset = http()
        .post(format!("{}/_sim/reset", sim.endpoint()))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status().as_u16(), 200);
    region_not_found(v1(&sim, "DescribeInstances", &[("RegionId", "zz-private-9")]).await);
    assert_eq!(
        v1(&sim, "DescribeInstances", &[("RegionId", "xx-lab-1")])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn faults_target_tag_actions_and_v3_signing() {
    let sim = EcsSim::start().await;
    seed_ids(&sim, &["i-fault0000001"]).await;
    sim.add_account("limited", "limitedsecret", None).await;
    sim.set_faults(json!([
        {"action": "TagResources", "accessKeyId": "limited", "errorRate": 1.0, "errorCode": "Forbidden.RAM"}
    ]))
    .await;
    let limited = Credentials {
        access_key_id: "limited".into(),
        secret: "limitedsecret".into(),
        token: None,
    };
    let params = [
        ("RegionId", REGION),
        ("ResourceType", "instance"),
        ("ResourceId.1", "i-fault0000001"),
        ("Tag.1.Key", "k"),
        ("Tag.1.Value", "v"),
    ];
    assert_error(
        &v1_as(&sim, &limited, "TagResources", &params).await,
        403,
        "Forbidden.RAM",
        "User not authorized to operate on the specified resource, or this API doesn't support RAM.",
    );
    assert!(sim.tags("i-fault0000001").await.is_empty());
    // Other keys and other actions are not affected.
    assert_ok(
        &v1_as(
            &sim,
            &limited,
            "ListTagResources",
            &[
                ("RegionId", REGION),
                ("ResourceType", "instance"),
                ("ResourceId.1", "i-fault0000001"),
            ],
        )
        .await,
    );
    // V3-signed, by the default key.
    assert_ok(&V3::new(&sim, "TagResources", &params).send().await);
    assert_eq!(sim.tags("i-fault0000001").await, map(&[("k", "v")]));
    let calls = sim.calls(Some("TagResources")).await;
    assert_eq!(
        calls
            .iter()
            .map(|c| (c["code"].clone(), c["httpStatus"].clone()))
            .collect::<Vec<_>>(),
        vec![
            (json!("Forbidden.RAM"), json!(403)),
            (Value::Null, json!(200))
        ]
    );

    let bad = http()
        .put(format!("{}/_sim/faults", sim.endpoint()))
        .json(&json!({"rules": [{"errorRate": 1.0, "errorCode": "NotARealCode"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
}

#[tokio::test]
async fn admin_tags() {
    let sim = EcsSim::start().await;
    sim.seed(json!([{"instanceId": "i-admtag000001", "regionId": REGION, "tags": {"a": "1", "acs:rm:rgId": "rg-1"}}]))
        .await;
    assert_eq!(
        sim.tags("i-admtag000001").await,
        map(&[("a", "1"), ("acs:rm:rgId", "rg-1")])
    );
    assert_eq!(
        sim.instance("i-admtag000001").await.unwrap()["tags"],
        json!({"a": "1", "acs:rm:rgId": "rg-1"})
    );

    sim.set_tags("i-admtag000001", &[("owner-uid", "u-1")])
        .await;
    assert_eq!(
        described_tags(&sim, "i-admtag000001").await,
        vec![("owner-uid".to_owned(), "u-1".to_owned())]
    );
    sim.patch_instance("i-admtag000001", json!({"tags": {"b": ""}}))
        .await;
    assert_eq!(sim.tags("i-admtag000001").await, map(&[("b", "")]));
    sim.patch_instance("i-admtag000001", json!({"status": "Stopped"}))
        .await;
    assert_eq!(
        sim.tags("i-admtag000001").await,
        map(&[("b", "")]),
        "a patch without tags keeps them"
    );
    sim.set_tags("i-admtag000001", &[]).await;
    assert!(sim.tags("i-admtag000001").await.is_empty());

    let client = http();
    let endpoint = sim.endpoint();
    let too_many: serde_json::Map<String, Value> =
        (0..21).map(|n| (format!("k{n}"), json!(""))).collect();
    for (method, path, body) in [
        (
            "PUT",
            "instances/i-admtag000001/tags",
            Value::Object(too_many.clone()),
        ),
        ("PUT", "instances/i-admtag000001/tags", json!({"": "v"})),
        ("PUT", "instances/i-admtag000001/tags", json!({"k": 1})),
        (
            "PATCH",
            "instances/i-admtag000001",
            json!({"tags": too_many}),
        ),
        (
            "POST",
            "instances",
            json!([{"instanceId": "i-admtag000002", "regionId": REGION, "tags": {"": ""}}]),
        ),
    ] {
        let response = client
            .request(method.parse().unwrap(), format!("{endpoint}/_sim/{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{method} {path} {body}");
    }
    let missing = client
        .get(format!("{endpoint}/_sim/instances/i-nothere00001/tags"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    assert!(sim.instance("i-admtag000002").await.is_none());
}
