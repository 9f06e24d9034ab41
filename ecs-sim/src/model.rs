//! Instances and their life cycle. Transitions are lazy: an instance stores its status and when
//! it entered it, and [`Instance::settle`] advances it by elapsed time whenever it is read, so
//! no timers run and thousands of instances cost nothing while idle.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Pending,
    Starting,
    Running,
    Stopping,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "Pending",
            Status::Starting => "Starting",
            Status::Running => "Running",
            Status::Stopping => "Stopping",
            Status::Stopped => "Stopped",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Pending,
            Status::Starting,
            Status::Running,
            Status::Stopping,
            Status::Stopped,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }

    /// The state a transitional status moves to once its duration has passed.
    fn next(self) -> Option<Status> {
        match self {
            Status::Pending => Some(Status::Starting),
            Status::Starting => Some(Status::Running),
            Status::Stopping => Some(Status::Stopped),
            Status::Running | Status::Stopped => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ChargeType {
    #[default]
    PostPaid,
    PrePaid,
}

impl ChargeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChargeType::PostPaid => "PostPaid",
            ChargeType::PrePaid => "PrePaid",
        }
    }
}

fn default_status() -> Status {
    Status::Running
}

/// The admin/seed description of an instance (contract: `POST /_sim/instances`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceSpec {
    pub instance_id: String,
    pub region_id: String,
    #[serde(default)]
    pub zone_id: Option<String>,
    #[serde(default = "default_status")]
    pub status: Status,
    #[serde(default)]
    pub charge_type: ChargeType,
    #[serde(default)]
    pub expired: bool,
    #[serde(default)]
    pub deletion_protection: bool,
    #[serde(default)]
    pub lock_reasons: Vec<String>,
    #[serde(default)]
    pub route_entry: bool,
    #[serde(default)]
    pub slb_configuring: bool,
    /// Still being created behind the scenes (e.g. right after CreateInstance, which shows
    /// `Stopped`): DeleteInstance answers `IncorrectInstanceStatus.Initializing` whatever the status.
    #[serde(default)]
    pub initializing: bool,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub instance_name: Option<String>,
    #[serde(default)]
    pub instance_type: Option<String>,
    /// Tags, key → value (shown by DescribeInstances, changed by Tag/UntagResources).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Most tags one resource can carry (ECS "Tag limits").
pub const MAX_TAGS_PER_RESOURCE: usize = 20;
/// Longest tag key and tag value, in characters.
pub const MAX_TAG_LENGTH: usize = 128;

/// What the admin API accepts as an instance's tags. Looser than TagResources on purpose: system
/// tags such as `acs:rm:rgId` exist on real instances, so the reserved prefixes are allowed here.
pub fn check_admin_tags(tags: &BTreeMap<String, String>) -> Result<(), String> {
    if tags.len() > MAX_TAGS_PER_RESOURCE {
        return Err(format!(
            "at most {MAX_TAGS_PER_RESOURCE} tags per instance, got {}",
            tags.len()
        ));
    }
    for (key, value) in tags {
        if key.is_empty() || key.chars().count() > MAX_TAG_LENGTH {
            return Err(format!(
                "tag key {key:?} must have 1 to {MAX_TAG_LENGTH} characters"
            ));
        }
        if value.chars().count() > MAX_TAG_LENGTH {
            return Err(format!(
                "the value of tag {key:?} has more than {MAX_TAG_LENGTH} characters"
            ));
        }
    }
    Ok(())
}

/// `PATCH /_sim/instances/{id}`: any subset of the spec fields except the identity.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstancePatch {
    pub zone_id: Option<String>,
    pub status: Option<Status>,
    pub charge_type: Option<ChargeType>,
    pub expired: Option<bool>,
    pub deletion_protection: Option<bool>,
    pub lock_reasons: Option<Vec<String>>,
    pub route_entry: Option<bool>,
    pub slb_configuring: Option<bool>,
    pub initializing: Option<bool>,
    /// `null` makes the instance visible to every account again.
    #[serde(default, deserialize_with = "present_option")]
    pub owner: Option<Option<String>>,
    pub instance_name: Option<String>,
    pub instance_type: Option<String>,
    /// Replaces all tags (`{}` removes them).
    pub tags: Option<BTreeMap<String, String>>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub spec: InstanceSpec,
    /// When `spec.status` was entered; transitional statuses advance from here.
    pub status_since: Instant,
    /// `StoppedMode` as DescribeInstances shows it.
    pub stopped_mode: &'static str,
    pub creation_time: jiff::Timestamp,
    /// Set by a successful DeleteInstance: visible (read-only) until this moment, then gone.
    pub released_until: Option<Instant>,
}

impl Instance {
    /// A new instance; an absent zone becomes `<regionId>-a`.
    pub fn new(mut spec: InstanceSpec, now: Instant) -> Self {
        if spec.zone_id.is_none() {
            spec.zone_id = Some(format!("{}-a", spec.region_id));
        }
        Instance {
            spec,
            status_since: now,
            stopped_mode: "Not-applicable",
            creation_time: jiff::Timestamp::now(),
            released_until: None,
        }
    }

    /// Advances transitional statuses by the time elapsed, one step per `transition`.
    pub fn settle(&mut self, now: Instant, transition: Duration) {
        while let Some(next) = self.spec.status.next() {
            let due = self.status_since + transition;
            if now < due {
                break;
            }
            self.spec.status = next;
            self.status_since = due;
        }
    }

    pub fn set_status(&mut self, status: Status, now: Instant) {
        self.spec.status = status;
        self.status_since = now;
    }

    pub fn is_released(&self) -> bool {
        self.released_until.is_some()
    }

    pub fn has_lock(&self, reason: &str) -> bool {
        self.spec.lock_reasons.iter().any(|r| r == reason)
    }

    /// An instance with an owner (an AccessKeyId or an account ID) is visible only to callers
    /// whose owner list names it.
    pub fn visible_to(&self, owners: &[String]) -> bool {
        self.spec
            .owner
            .as_deref()
            .is_none_or(|owner| owners.iter().any(|o| o == owner))
    }

    pub fn apply(&mut self, patch: InstancePatch, now: Instant) {
        let spec = &mut self.spec;
        if let Some(status) = patch.status {
            spec.status = status;
            self.status_since = now;
        }
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = patch.$field { spec.$field = v; } )* };
        }
        macro_rules! set_optional {
            ($($field:ident),*) => { $( if let Some(v) = patch.$field { spec.$field = Some(v); } )* };
        }
        set!(
            charge_type,
            expired,
            deletion_protection,
            lock_reasons,
            route_entry,
            slb_configuring,
            initializing,
            owner,
            tags
        );
        set_optional!(zone_id, instance_name, instance_type);
    }
}

/// Instances by region, then by ID (ordered, so pagination is stable), plus an ID index: IDs
/// are unique across regions, and Start/Stop/DeleteInstance take no RegionId.
#[derive(Debug, Default)]
pub struct Store {
    by_region: BTreeMap<String, BTreeMap<String, Instance>>,
    region_of: HashMap<String, String>,
    /// Every region an instance was seeded in since the last clear: these regions exist even
    /// once their instances are gone.
    seeded_regions: BTreeSet<String>,
}

impl Store {
    pub fn insert(&mut self, spec: InstanceSpec, now: Instant) {
        self.remove(&spec.instance_id);
        self.seeded_regions.insert(spec.region_id.clone());
        self.region_of
            .insert(spec.instance_id.clone(), spec.region_id.clone());
        self.by_region
            .entry(spec.region_id.clone())
            .or_default()
            .insert(spec.instance_id.clone(), Instance::new(spec, now));
    }

    pub fn remove(&mut self, id: &str) -> bool {
        let Some(region) = self.region_of.remove(id) else {
            return false;
        };
        if let Some(instances) = self.by_region.get_mut(&region) {
            instances.remove(id);
            if instances.is_empty() {
                self.by_region.remove(&region);
            }
        }
        true
    }

    pub fn clear(&mut self) {
        self.by_region.clear();
        self.region_of.clear();
        self.seeded_regions.clear();
    }

    pub fn seeded_regions(&self) -> &BTreeSet<String> {
        &self.seeded_regions
    }

    /// The instance, settled to `now`; `None` if absent or its release linger is over (then it
    /// is dropped for good).
    pub fn get_mut(
        &mut self,
        id: &str,
        now: Instant,
        transition: Duration,
    ) -> Option<&mut Instance> {
        let region = self.region_of.get(id)?;
        let instance = self.by_region.get(region)?.get(id)?;
        if instance.released_until.is_some_and(|until| now >= until) {
            self.remove(id);
            return None;
        }
        let region = self.region_of.get(id)?;
        let instance = self.by_region.get_mut(region)?.get_mut(id)?;
        instance.settle(now, transition);
        Some(instance)
    }

    /// Every live instance of a region, in ID order, settled to `now`. Instances whose release
    /// linger is over are purged on the way.
    pub fn region_mut(
        &mut self,
        region: &str,
        now: Instant,
        transition: Duration,
    ) -> Vec<&mut Instance> {
        let Some(instances) = self.by_region.get_mut(region) else {
            return Vec::new();
        };
        let gone: Vec<String> = instances
            .values()
            .filter(|i| i.released_until.is_some_and(|until| now >= until))
            .map(|i| i.spec.instance_id.clone())
            .collect();
        for id in &gone {
            instances.remove(id);
            self.region_of.remove(id);
        }
        let mut live: Vec<&mut Instance> = instances.values_mut().collect();
        for instance in &mut live {
            instance.settle(now, transition);
        }
        live
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.region_of.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, status: Status) -> InstanceSpec {
        serde_json::from_value(serde_json::json!({
            "instanceId": id, "regionId": "cn-hangzhou", "status": status
        }))
        .unwrap()
    }

    #[test]
    fn pending_walks_to_running() {
        let t0 = Instant::now();
        let step = Duration::from_millis(100);
        let mut instance = Instance::new(spec("i-abcdefgh", Status::Pending), t0);
        instance.settle(t0 + Duration::from_millis(50), step);
        assert_eq!(instance.spec.status, Status::Pending);
        instance.settle(t0 + Duration::from_millis(150), step);
        assert_eq!(instance.spec.status, Status::Starting);
        instance.settle(t0 + Duration::from_millis(250), step);
        assert_eq!(instance.spec.status, Status::Running);
    }

    #[test]
    fn store_purges_after_linger() {
        let t0 = Instant::now();
        let step = Duration::from_millis(100);
        let mut store = Store::default();
        store.insert(spec("i-abcdefgh", Status::Stopped), t0);
        store
            .get_mut("i-abcdefgh", t0, step)
            .unwrap()
            .released_until = Some(t0 + step);
        assert_eq!(store.region_mut("cn-hangzhou", t0, step).len(), 1);
        assert!(store.get_mut("i-abcdefgh", t0 + step, step).is_none());
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn patch_sets_status_and_owner() {
        let t0 = Instant::now();
        let mut instance = Instance::new(spec("i-abcdefgh", Status::Running), t0);
        let patch: InstancePatch =
            serde_json::from_value(serde_json::json!({"status": "Stopping", "owner": "a"}))
                .unwrap();
        instance.apply(patch, t0);
        assert_eq!(instance.spec.status, Status::Stopping);
        assert_eq!(instance.spec.owner.as_deref(), Some("a"));
        let patch: InstancePatch =
            serde_json::from_value(serde_json::json!({"owner": null})).unwrap();
        instance.apply(patch, t0);
        assert_eq!(instance.spec.owner, None);
    }

    #[test]
    fn tags_from_spec_patch_and_admin_rules() {
        let t0 = Instant::now();
        let spec: InstanceSpec = serde_json::from_value(serde_json::json!({
            "instanceId": "i-abcdefgh", "regionId": "cn-hangzhou", "tags": {"a": "1", "acs:rm:rgId": "rg-1"}
        }))
        .unwrap();
        assert_eq!(spec.tags.len(), 2);
        check_admin_tags(&spec.tags).unwrap();
        let mut instance = Instance::new(spec, t0);
        let patch: InstancePatch =
            serde_json::from_value(serde_json::json!({"tags": {"b": ""}})).unwrap();
        instance.apply(patch, t0);
        assert_eq!(
            instance.spec.tags,
            BTreeMap::from([("b".to_owned(), String::new())])
        );
        let too_many: BTreeMap<String, String> =
            (0..21).map(|n| (format!("k{n}"), String::new())).collect();
        assert!(check_admin_tags(&too_many).is_err());
        assert!(check_admin_tags(&BTreeMap::from([(String::new(), "v".to_owned())])).is_err());
        assert!(check_admin_tags(&BTreeMap::from([("k".to_owned(), "v".repeat(129))])).is_err());
    }

    #[test]
    fn store_remembers_seeded_regions_until_cleared() {
        let t0 = Instant::now();
        let mut store = Store::default();
        store.insert(spec("i-abcdefgh", Status::Running), t0);
        assert!(store.remove("i-abcdefgh"));
        assert!(store.seeded_regions().contains("cn-hangzhou"));
        store.clear();
        assert!(store.seeded_regions().is_empty());
    }
}
