//! Typed requests and the parts of responses the controller uses. Unknown response fields are
//! ignored; missing optional ones take their defaults.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use crate::sanitize::{MAX_REQUEST_ID_BYTES, clean_text};

/// The `RequestId` of a successful call (recorded in status for support cases).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
pub struct RequestId(pub String);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `StopInstance` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopInstance {
    pub instance_id: String,
    pub force_stop: bool,
    pub stopped_mode: Option<StoppedMode>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoppedMode {
    KeepCharging,
    StopCharging,
}

impl StoppedMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StoppedMode::KeepCharging => "KeepCharging",
            StoppedMode::StopCharging => "StopCharging",
        }
    }
}

/// `DeleteInstance` parameters. `force_stop: None` leaves the server default (`true`, only
/// effective with `force`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteInstance {
    pub instance_id: String,
    pub force: bool,
    pub force_stop: Option<bool>,
    pub terminate_subscription: bool,
    pub dry_run: bool,
}

/// `TagResources` for one ECS instance: sets (or overwrites) these tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagInstance {
    pub region_id: String,
    pub instance_id: String,
    pub tags: BTreeMap<String, String>,
}

/// `UntagResources` for one ECS instance: removes the tags with these keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UntagInstance {
    pub region_id: String,
    pub instance_id: String,
    pub keys: Vec<String>,
}

/// API parameters of one call (without the protocol's common ones), sorted by name.
pub(crate) type Params = BTreeMap<String, String>;

fn flag(value: bool) -> String {
    value.to_string()
}

impl StopInstance {
    pub(crate) fn params(&self) -> Params {
        let mut p = Params::from([
            ("InstanceId".to_owned(), self.instance_id.clone()),
            ("ForceStop".to_owned(), flag(self.force_stop)),
        ]);
        if let Some(mode) = self.stopped_mode {
            p.insert("StoppedMode".to_owned(), mode.as_str().to_owned());
        }
        if self.dry_run {
            p.insert("DryRun".to_owned(), flag(true));
        }
        p
    }
}

impl DeleteInstance {
    pub(crate) fn params(&self) -> Params {
        let mut p = Params::from([
            ("InstanceId".to_owned(), self.instance_id.clone()),
            ("Force".to_owned(), flag(self.force)),
            (
                "TerminateSubscription".to_owned(),
                flag(self.terminate_subscription),
            ),
        ]);
        if let Some(force_stop) = self.force_stop {
            p.insert("ForceStop".to_owned(), flag(force_stop));
        }
        if self.dry_run {
            p.insert("DryRun".to_owned(), flag(true));
        }
        p
    }
}

impl TagInstance {
    /// The parameters of one `TagResources` call that sets these tags on `instance_ids` (this
    /// request's instance and those of the requests batched with it).
    pub(crate) fn params_for(&self, instance_ids: &[String]) -> Params {
        let mut p = Params::from([
            ("RegionId".to_owned(), self.region_id.clone()),
            ("ResourceType".to_owned(), "instance".to_owned()),
        ]);
        for (n, id) in instance_ids.iter().enumerate() {
            p.insert(format!("ResourceId.{}", n + 1), id.clone());
        }
        for (n, (key, value)) in self.tags.iter().enumerate() {
            p.insert(format!("Tag.{}.Key", n + 1), key.clone());
            p.insert(format!("Tag.{}.Value", n + 1), value.clone());
        }
        p
    }
}

impl UntagInstance {
    pub(crate) fn params(&self) -> Params {
        let mut p = Params::from([
            ("RegionId".to_owned(), self.region_id.clone()),
            ("ResourceType".to_owned(), "instance".to_owned()),
            ("ResourceId.1".to_owned(), self.instance_id.clone()),
        ]);
        for (n, key) in self.keys.iter().enumerate() {
            p.insert(format!("TagKey.{}", n + 1), key.clone());
        }
        p
    }
}

/// What the API says about an instance's state. Only the five documented values exist today;
/// anything new is kept verbatim rather than rejected.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InstanceStatus {
    Pending,
    Starting,
    Running,
    Stopping,
    Stopped,
    Other(String),
}

impl InstanceStatus {
    pub fn as_str(&self) -> &str {
        match self {
            InstanceStatus::Pending => "Pending",
            InstanceStatus::Starting => "Starting",
            InstanceStatus::Running => "Running",
            InstanceStatus::Stopping => "Stopping",
            InstanceStatus::Stopped => "Stopped",
            InstanceStatus::Other(s) => s,
        }
    }
}

impl From<String> for InstanceStatus {
    fn from(s: String) -> Self {
        match s.as_str() {
            "Pending" => InstanceStatus::Pending,
            "Starting" => InstanceStatus::Starting,
            "Running" => InstanceStatus::Running,
            "Stopping" => InstanceStatus::Stopping,
            "Stopped" => InstanceStatus::Stopped,
            _ => InstanceStatus::Other(s),
        }
    }
}

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One instance as `DescribeInstances` reports it (the fields the controller uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub instance_id: String,
    pub region_id: String,
    pub zone_id: String,
    pub status: InstanceStatus,
    /// `InstanceChargeType`: `PostPaid` or `PrePaid`.
    pub charge_type: String,
    pub deletion_protection: bool,
    /// `OperationLocks.LockReason[].LockReason`, e.g. `security`.
    pub lock_reasons: Vec<String>,
    pub expired_time: Option<String>,
    /// `Tags.Tag[]`: key → value (keys are unique per resource).
    pub tags: BTreeMap<String, String>,
}

/// The wire shape: XML-derived wrappers (`Instances.Instance[]`, `OperationLocks.LockReason[]`).
/// Read only through [`DescribeInstancesResponse::parse`], which checks the shape first: an
/// answer without the list is an error, never an empty list.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeInstancesResponse {
    #[allow(dead_code)] // required on the wire; checked by `parse`
    pub request_id: String,
    #[serde(default)]
    pub total_count: Option<u64>,
    pub instances: InstancesWrapper,
}

#[derive(Debug, Deserialize)]
pub(crate) struct InstancesWrapper {
    #[serde(rename = "Instance")]
    pub instance: Vec<WireInstance>,
}

/// What is wrong with a success body, for the error message.
pub(crate) type ShapeError = &'static str;

/// A success body as a JSON object with a non-empty `RequestId` — what every ECS answer is.
fn answer_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ShapeError> {
    let body = body.strip_prefix("\u{feff}".as_bytes()).unwrap_or(body);
    let value: Value =
        serde_json::from_slice(body).map_err(|_| "a success body that is not JSON")?;
    let Value::Object(map) = value else {
        return Err("a success body that is not a JSON object");
    };
    match map.get("RequestId") {
        Some(Value::String(id)) if !clean_text(id, MAX_REQUEST_ID_BYTES).is_empty() => Ok(map),
        _ => Err("a success body without a RequestId"),
    }
}

impl DescribeInstancesResponse {
    /// Strict: `RequestId` (a non-empty string), `Instances` (an object) with `Instance` (a list
    /// of objects, each with a string `InstanceId`), and `TotalCount`, when present, a
    /// non-negative integer. Anything else — `{}`, `{"RequestId":"x"}`, an array, XML, wrong
    /// types — is an error, so a malformed answer can never read as "not listed".
    pub(crate) fn parse(body: &[u8]) -> Result<Self, ShapeError> {
        let map = answer_object(body)?;
        match map.get("TotalCount") {
            None => {}
            Some(Value::Number(n)) if n.is_u64() => {}
            Some(_) => return Err("a DescribeInstances answer whose TotalCount is not a count"),
        }
        let Some(Value::Object(instances)) = map.get("Instances") else {
            return Err("a DescribeInstances answer without an `Instances` object");
        };
        let Some(Value::Array(list)) = instances.get("Instance") else {
            return Err("a DescribeInstances answer without an `Instances.Instance` list");
        };
        let well_formed = list.iter().all(|item| {
            item.as_object()
                .and_then(|o| o.get("InstanceId"))
                .is_some_and(Value::is_string)
        });
        if !well_formed {
            return Err("a DescribeInstances answer listing something that is not an instance");
        }
        serde_json::from_value(Value::Object(map))
            .map_err(|_| "a DescribeInstances answer with fields of the wrong type")
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct WireInstance {
    instance_id: String,
    #[serde(default)]
    region_id: String,
    #[serde(default)]
    zone_id: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    instance_charge_type: String,
    #[serde(default)]
    deletion_protection: bool,
    #[serde(default)]
    operation_locks: LocksWrapper,
    #[serde(default)]
    expired_time: Option<String>,
    #[serde(default)]
    tags: TagsWrapper,
}

#[derive(Debug, Default, Deserialize)]
struct TagsWrapper {
    #[serde(rename = "Tag", default)]
    tag: Vec<WireTag>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireTag {
    tag_key: String,
    #[serde(default)]
    tag_value: String,
}

#[derive(Debug, Default, Deserialize)]
struct LocksWrapper {
    #[serde(rename = "LockReason", default)]
    lock_reason: Vec<Lock>,
}

#[derive(Debug, Deserialize)]
struct Lock {
    #[serde(rename = "LockReason")]
    lock_reason: String,
}

/// Short words the controller may show (status, zone, lock reasons): cleaned and bounded.
fn word(text: &str) -> String {
    clean_text(text, MAX_WORD_BYTES)
}

const MAX_WORD_BYTES: usize = 128;

impl From<WireInstance> for Instance {
    fn from(w: WireInstance) -> Self {
        Instance {
            instance_id: w.instance_id,
            region_id: word(&w.region_id),
            zone_id: word(&w.zone_id),
            status: word(&w.status).into(),
            charge_type: word(&w.instance_charge_type),
            deletion_protection: w.deletion_protection,
            lock_reasons: w
                .operation_locks
                .lock_reason
                .into_iter()
                .map(|l| word(&l.lock_reason))
                .collect(),
            expired_time: w.expired_time.map(|t| word(&t)).filter(|t| !t.is_empty()),
            tags: w
                .tags
                .tag
                .into_iter()
                .map(|t| (t.tag_key, t.tag_value))
                .collect(),
        }
    }
}

/// The answer of calls that return only a `RequestId` (Stop, Start, Delete, Tag, Untag): a JSON
/// object with a non-empty string `RequestId`, cleaned and bounded for the status.
pub(crate) fn parse_request_id(body: &[u8]) -> Result<RequestId, ShapeError> {
    let map = answer_object(body)?;
    let id = map
        .get("RequestId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok(RequestId(clean_text(id, MAX_REQUEST_ID_BYTES)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_describe_instances_sample_ignoring_unknown_fields() {
        let body = r#"{
          "RequestId": "473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E",
          "TotalCount": 2, "PageNumber": 1, "PageSize": 10,
          "NextToken": "caeba0bbb2be03f84eb48b699f0a4883",
          "Instances": { "Instance": [ {
              "InstanceId": "i-bp67acfmxazb4p0001", "InstanceName": "InstanceNameTest",
              "RegionId": "cn-hangzhou", "ZoneId": "cn-hangzhou-g",
              "Status": "Running", "InstanceChargeType": "PostPaid", "StoppedMode": "KeepCharging",
              "DeletionProtection": false, "Cpu": 8, "Memory": 16384,
              "ExpiredTime": "2099-12-10T04:04Z",
              "Tags": { "Tag": [ { "TagKey": "TestKey", "TagValue": "TestValue" } ] },
              "OperationLocks": { "LockReason": [] },
              "VpcAttributes": { "PrivateIpAddress": { "IpAddress": [ "172.17.1.1" ] } }
            }, {
              "InstanceId": "i-bp67acfmxazb4p0002", "RegionId": "cn-hangzhou",
              "ZoneId": "cn-hangzhou-h", "Status": "Rebooting", "InstanceChargeType": "PrePaid",
              "DeletionProtection": true, "ExpiredTime": "",
              "OperationLocks": { "LockReason": [ {"LockReason": "security", "LockMsg": "x"} ] }
            } ] }
        }"#;
        let parsed = DescribeInstancesResponse::parse(body.as_bytes()).unwrap();
        assert_eq!(parsed.total_count, Some(2));
        let instances: Vec<Instance> = parsed
            .instances
            .instance
            .into_iter()
            .map(Instance::from)
            .collect();
        assert_eq!(
            instances[0],
            Instance {
                instance_id: "i-bp67acfmxazb4p0001".into(),
                region_id: "cn-hangzhou".into(),
                zone_id: "cn-hangzhou-g".into(),
                status: InstanceStatus::Running,
                charge_type: "PostPaid".into(),
                deletion_protection: false,
                lock_reasons: vec![],
                expired_time: Some("2099-12-10T04:04Z".into()),
                tags: BTreeMap::from([("TestKey".into(), "TestValue".into())]),
            }
        );
        assert_eq!(
            instances[1].status,
            InstanceStatus::Other("Rebooting".into())
        );
        assert_eq!(instances[1].status.as_str(), "Rebooting");
        assert!(instances[1].deletion_protection);
        assert_eq!(instances[1].lock_reasons, vec!["security".to_string()]);
        assert_eq!(instances[1].expired_time, None);
    }

    #[test]
    fn an_empty_result_has_no_instances() {
        let parsed = DescribeInstancesResponse::parse(
            br#"{"RequestId":"R","TotalCount":0,"Instances":{"Instance":[]}}"#,
        )
        .unwrap();
        assert!(parsed.instances.instance.is_empty());
        assert_eq!(parsed.total_count, Some(0));
        let no_count =
            DescribeInstancesResponse::parse(br#"{"RequestId":"R","Instances":{"Instance":[]}}"#)
                .unwrap();
        assert_eq!(no_count.total_count, None);
    }

    /// The reverse of what this module once accepted: an answer without the list is no answer.
    #[test]
    fn an_answer_without_the_instance_list_is_an_error() {
        let bad: [&[u8]; 17] = [
            br#"{"RequestId":"R"}"#,
            br#"{}"#,
            br#"[]"#,
            br#"[{"RequestId":"R","Instances":{"Instance":[]}}]"#,
            br#"["R", 0, {"Instance":[]}]"#,
            br#"{"RequestId":"R","Instances":{}}"#,
            br#"{"RequestId":"R","Instances":[]}"#,
            br#"{"RequestId":"R","Instances":[[]]}"#,
            br#"{"RequestId":"R","Instances":{"Instance":{}}}"#,
            br#"{"RequestId":"R","Instances":{"Instance":null}}"#,
            br#"{"RequestId":"R","Instances":{"Instance":[["i-1"]]}}"#,
            br#"{"RequestId":"R","Instances":{"Instance":[{"Id":"i-1"}]}}"#,
            br#"{"Instances":{"Instance":[]}}"#,
            br#"{"RequestId":"","Instances":{"Instance":[]}}"#,
            br#"{"RequestId":"R","TotalCount":"5","Instances":{"Instance":[]}}"#,
            br#"{"RequestId":"R","TotalCount":-1,"Instances":{"Instance":[]}}"#,
            b"<DescribeInstancesResponse><RequestId>R</RequestId><Instances/></DescribeInstancesResponse>",
        ];
        for body in bad {
            let text = String::from_utf8_lossy(body);
            assert!(DescribeInstancesResponse::parse(body).is_err(), "{text}");
        }
        // A field of the wrong type inside an instance is an error too, not a default.
        assert!(
            DescribeInstancesResponse::parse(
                br#"{"RequestId":"R","Instances":{"Instance":[{"InstanceId":"i-1","DeletionProtection":"yes"}]}}"#
            )
            .is_err()
        );
    }

    #[test]
    fn request_id_answers_are_strict() {
        assert_eq!(
            parse_request_id(br#"{"RequestId":"473469C7-AA6F"}"#),
            Ok(RequestId("473469C7-AA6F".into()))
        );
        assert_eq!(
            parse_request_id("\u{feff}{\"RequestId\":\"R\"}".as_bytes()),
            Ok(RequestId("R".into()))
        );
        for body in [
            &br#"{}"#[..],
            br#"{"RequestId":""}"#,
            br#"{"RequestId":5}"#,
            br#"["R"]"#,
            br#""R""#,
            b"",
            b"<StopInstanceResponse><RequestId>R</RequestId></StopInstanceResponse>",
        ] {
            assert!(
                parse_request_id(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let long = format!(r#"{{"RequestId":"R\n{}"}}"#, "1".repeat(10_000));
        let id = parse_request_id(long.as_bytes()).unwrap();
        assert!(id.0.starts_with("R 111") && id.0.len() <= MAX_REQUEST_ID_BYTES);
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            "Pending", "Starting", "Running", "Stopping", "Stopped", "Deleted",
        ] {
            assert_eq!(InstanceStatus::from(s.to_string()).as_str(), s);
        }
        assert_eq!(
            InstanceStatus::from("Stopped".to_string()),
            InstanceStatus::Stopped
        );
    }

    #[test]
    fn request_parameters() {
        let stop = StopInstance {
            instance_id: "i-abc12345".into(),
            force_stop: true,
            stopped_mode: Some(StoppedMode::StopCharging),
            dry_run: false,
        };
        assert_eq!(
            stop.params(),
            Params::from([
                ("InstanceId".into(), "i-abc12345".into()),
                ("ForceStop".into(), "true".into()),
                ("StoppedMode".into(), "StopCharging".into()),
            ])
        );
        let delete = DeleteInstance {
            instance_id: "i-abc12345".into(),
            force: true,
            force_stop: Some(false),
            terminate_subscription: true,
            dry_run: true,
        };
        assert_eq!(
            delete.params(),
            Params::from([
                ("InstanceId".into(), "i-abc12345".into()),
                ("Force".into(), "true".into()),
                ("ForceStop".into(), "false".into()),
                ("TerminateSubscription".into(), "true".into()),
                ("DryRun".into(), "true".into()),
            ])
        );
        let plain = DeleteInstance {
            instance_id: "i-abc12345".into(),
            ..Default::default()
        };
        assert!(!plain.params().contains_key("ForceStop"));
        assert!(!plain.params().contains_key("DryRun"));
        let tag = TagInstance {
            region_id: "cn-hangzhou".into(),
            instance_id: "i-abc12345".into(),
            tags: BTreeMap::from([("a".into(), "1".into()), ("b".into(), "".into())]),
        };
        assert_eq!(
            tag.params_for(&["i-abc12345".into(), "i-def67890".into()]),
            Params::from([
                ("RegionId".into(), "cn-hangzhou".into()),
                ("ResourceType".into(), "instance".into()),
                ("ResourceId.1".into(), "i-abc12345".into()),
                ("ResourceId.2".into(), "i-def67890".into()),
                ("Tag.1.Key".into(), "a".into()),
                ("Tag.1.Value".into(), "1".into()),
                ("Tag.2.Key".into(), "b".into()),
                ("Tag.2.Value".into(), "".into()),
            ])
        );
        let untag = UntagInstance {
            region_id: "cn-hangzhou".into(),
            instance_id: "i-abc12345".into(),
            keys: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            untag.params(),
            Params::from([
                ("RegionId".into(), "cn-hangzhou".into()),
                ("ResourceType".into(), "instance".into()),
                ("ResourceId.1".into(), "i-abc12345".into()),
                ("TagKey.1".into(), "a".into()),
                ("TagKey.2".into(), "b".into()),
            ])
        );
    }
}
