//! Typed requests and the parts of responses the controller uses. Unknown response fields are
//! ignored; missing optional ones take their defaults.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

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
}

/// The wire shape: XML-derived wrappers (`Instances.Instance[]`, `OperationLocks.LockReason[]`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeInstancesResponse {
    #[serde(default)]
    pub total_count: Option<u64>,
    #[serde(default)]
    pub instances: InstancesWrapper,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct InstancesWrapper {
    #[serde(rename = "Instance", default)]
    pub instance: Vec<WireInstance>,
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

impl From<WireInstance> for Instance {
    fn from(w: WireInstance) -> Self {
        Instance {
            instance_id: w.instance_id,
            region_id: w.region_id,
            zone_id: w.zone_id,
            status: w.status.into(),
            charge_type: w.instance_charge_type,
            deletion_protection: w.deletion_protection,
            lock_reasons: w
                .operation_locks
                .lock_reason
                .into_iter()
                .map(|l| l.lock_reason)
                .collect(),
            expired_time: w.expired_time.filter(|t| !t.is_empty()),
        }
    }
}

/// The answer of calls that return only a `RequestId`.
#[derive(Debug, Deserialize)]
pub(crate) struct RequestIdResponse {
    #[serde(rename = "RequestId")]
    pub request_id: RequestId,
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
        let parsed: DescribeInstancesResponse = serde_json::from_str(body).unwrap();
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
        let parsed: DescribeInstancesResponse =
            serde_json::from_str(r#"{"RequestId":"R","TotalCount":0,"Instances":{"Instance":[]}}"#)
                .unwrap();
        assert!(parsed.instances.instance.is_empty());
        let bare: DescribeInstancesResponse = serde_json::from_str(r#"{"RequestId":"R"}"#).unwrap();
        assert!(bare.instances.instance.is_empty());
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
    }
}
