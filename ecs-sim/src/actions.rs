//! The ECS operations the simulator implements. Each takes the authenticated caller and the
//! request parameters and returns the response fields or the error ECS would give.
//!
//! Order of checks in the mutating operations (consistent for every instance setup, see the
//! README's table): parameters → instance exists and is visible → security lock → deletion
//! protection → charge type → status → dependencies → `DryRun` → effect.

use std::collections::BTreeSet;

use crate::call::{Caller, Fields};
use crate::errors::EcsError;
use crate::model::{ChargeType, Instance, Status, Store};
use crate::params::Params;
use crate::response::Node;
use crate::state::State;
use crate::tags;

/// The actions this simulator answers; anything else is `InvalidApi.NotFound`.
pub const ACTIONS: &[&str] = &[
    "DescribeInstances",
    "DescribeInstanceStatus",
    "StartInstance",
    "StopInstance",
    "DeleteInstance",
    "TagResources",
    "UntagResources",
    "ListTagResources",
];

pub const API_VERSION: &str = "2014-05-26";

const MAX_IDS: usize = 100;

pub fn run(
    state: &mut State,
    caller: &Caller,
    action: &str,
    params: &Params,
) -> Result<Fields, EcsError> {
    match action {
        "DescribeInstances" => {
            let region = existing_region(state, params)?;
            describe_instances(&mut state.store, caller, params, &region)
        }
        "DescribeInstanceStatus" => {
            let region = existing_region(state, params)?;
            describe_instance_status(&mut state.store, caller, params, &region)
        }
        // Start/Stop/DeleteInstance take no RegionId (an extra one, as the legacy SDK adds, is
        // ignored like any unknown parameter).
        "StartInstance" => start_instance(&mut state.store, caller, params),
        "StopInstance" => stop_instance(&mut state.store, caller, params),
        "DeleteInstance" => delete_instance(&mut state.store, caller, params),
        "TagResources" => tags::tag_resources(state, caller, params),
        "UntagResources" => tags::untag_resources(state, caller, params),
        "ListTagResources" => tags::list_tag_resources(state, caller, params),
        _ => Err(EcsError::api_not_found()),
    }
}

/// The required `RegionId` of a Describe* call, which must exist (checked before the other
/// parameters: the region decides where the request goes). A real region without instances is
/// not an error; it lists nothing.
fn existing_region(state: &State, params: &Params) -> Result<String, EcsError> {
    let region = params.required("RegionId")?;
    if state.region_exists(region) {
        Ok(region.to_owned())
    } else {
        Err(EcsError::region_not_found())
    }
}

/// `^i-[a-z0-9]{8,30}$`: what the simulator accepts as an instance ID.
pub fn is_well_formed_instance_id(id: &str) -> bool {
    id.strip_prefix("i-").is_some_and(|rest| {
        (8..=30).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

fn dry_run_gate(params: &Params) -> Result<(), EcsError> {
    if params.bool("DryRun", false)? {
        Err(EcsError::dry_run_passed())
    } else {
        Ok(())
    }
}

// --- Describe* ---

/// Instance IDs from `InstanceIds` (a JSON array string) and/or `InstanceIds.N`; `None` = no filter.
fn instance_id_filter(params: &Params) -> Result<Option<BTreeSet<String>>, EcsError> {
    let mut ids: Option<BTreeSet<String>> = None;
    // An empty value counts as absent, like an unset optional parameter.
    if let Some(json) = params.get("InstanceIds").filter(|v| !v.is_empty()) {
        let list: Vec<String> =
            serde_json::from_str(json).map_err(|_| EcsError::invalid_parameter("InstanceIds"))?;
        if list.len() > MAX_IDS {
            return Err(EcsError::too_many_instance_ids());
        }
        ids = Some(list.into_iter().collect());
    }
    let indexed = params.indexed("InstanceIds");
    if !indexed.is_empty() {
        if indexed.len() > MAX_IDS {
            return Err(EcsError::too_many_instance_ids());
        }
        ids.get_or_insert_default()
            .extend(indexed.into_iter().map(str::to_owned));
    }
    Ok(ids)
}

/// Instances of the region visible to the caller, passing the common filters.
fn visible<'a>(
    store: &'a mut Store,
    caller: &Caller,
    region: &str,
    ids: Option<&BTreeSet<String>>,
    zone: Option<&str>,
) -> Vec<&'a mut Instance> {
    store
        .region_mut(region, caller.now, caller.timing.transition)
        .into_iter()
        .filter(|i| i.visible_to(caller.owners))
        .filter(|i| ids.is_none_or(|ids| ids.contains(&i.spec.instance_id)))
        .filter(|i| zone.is_none_or(|z| zone_of(i) == z))
        .collect()
}

fn zone_of(instance: &Instance) -> &str {
    instance.spec.zone_id.as_deref().unwrap_or_default()
}

struct Page {
    number: i64,
    size: i64,
}

fn page(params: &Params, max_size: i64) -> Result<Page, EcsError> {
    let number = params.int("PageNumber")?.unwrap_or(1);
    if number < 1 {
        return Err(EcsError::invalid_parameter("PageNumber"));
    }
    let size = params.int("PageSize")?.unwrap_or(10);
    if !(1..=max_size).contains(&size) {
        return Err(EcsError::invalid_parameter("PageSize"));
    }
    Ok(Page { number, size })
}

fn page_slice<T>(items: Vec<T>, page: &Page) -> Vec<T> {
    let skip = usize::try_from((page.number - 1).saturating_mul(page.size)).unwrap_or(usize::MAX);
    let take = usize::try_from(page.size).unwrap_or(usize::MAX);
    items.into_iter().skip(skip).take(take).collect()
}

fn describe_instances(
    store: &mut Store,
    caller: &Caller,
    params: &Params,
    region: &str,
) -> Result<Fields, EcsError> {
    let ids = instance_id_filter(params)?;
    let tag_filter = tags::describe_instances_filter(params)?;
    let status = params
        .get("Status")
        .filter(|s| !s.is_empty())
        .map(|s| Status::parse(s).ok_or_else(EcsError::invalid_status_filter))
        .transpose()?;
    let charge_type = params.get("InstanceChargeType").filter(|s| !s.is_empty());
    // NextToken/MaxResults paging replaces PageNumber/PageSize when either is present.
    let token_paging = params.get("NextToken").is_some() || params.get("MaxResults").is_some();
    let page = if token_paging {
        None
    } else {
        Some(page(params, 100)?)
    };
    let max_results = params.int("MaxResults")?.unwrap_or(10).clamp(10, 100);
    let start_after_token = match params.get("NextToken").filter(|t| !t.is_empty()) {
        Some(token) => Some(decode_next_token(token)?),
        None => None,
    };
    dry_run_gate(params)?;

    let matching: Vec<&mut Instance> =
        visible(store, caller, region, ids.as_ref(), params.get("ZoneId"))
            .into_iter()
            .filter(|i| status.is_none_or(|s| i.spec.status == s))
            .filter(|i| charge_type.is_none_or(|c| i.spec.charge_type.as_str() == c))
            .filter(|i| tags::matches_filter(&i.spec.tags, &tag_filter))
            .collect();
    let total = i64::try_from(matching.len()).unwrap_or(i64::MAX);

    let mut fields: Fields = vec![("TotalCount", total.into())];
    let shown: Vec<&mut Instance> = match &page {
        Some(page) => {
            fields.push(("PageNumber", page.number.into()));
            fields.push(("PageSize", page.size.into()));
            page_slice(matching, page)
        }
        None => {
            let limit = usize::try_from(max_results).unwrap_or(10);
            let mut rest: Vec<&mut Instance> = matching
                .into_iter()
                .filter(|i| {
                    start_after_token
                        .as_ref()
                        .is_none_or(|from| &i.spec.instance_id >= from)
                })
                .collect();
            let next = rest.get(limit).map(|i| hex::encode(&i.spec.instance_id));
            rest.truncate(limit);
            fields.push(("NextToken", next.unwrap_or_default().into()));
            rest
        }
    };
    let instances = shown.iter().map(|i| instance_node(i)).collect();
    fields.push((
        "Instances",
        Node::Object(vec![("Instance", Node::List(instances))]),
    ));
    Ok(fields)
}

/// A `NextToken` is the hex form of the first instance ID of the next page.
fn decode_next_token(token: &str) -> Result<String, EcsError> {
    hex::decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| EcsError::invalid_parameter("NextToken"))
}

fn minute_precision(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%MZ").to_string()
}

/// The DescribeInstances item, with the fields of docs/ecs-reference.md §3.
fn instance_node(instance: &Instance) -> Node {
    let spec = &instance.spec;
    let instance_type = spec
        .instance_type
        .clone()
        .unwrap_or_else(|| "ecs.g6.large".to_owned());
    let family = instance_type
        .rsplit_once('.')
        .map_or(instance_type.clone(), |(f, _)| f.to_owned());
    let created = minute_precision(instance.creation_time);
    let now = jiff::Timestamp::now();
    let expired_time = match (spec.charge_type, spec.expired) {
        (ChargeType::PostPaid, _) => "2099-12-31T15:59Z".to_owned(),
        (ChargeType::PrePaid, true) => minute_precision(now - jiff::SignedDuration::from_hours(24)),
        (ChargeType::PrePaid, false) => {
            minute_precision(now + jiff::SignedDuration::from_hours(24 * 30))
        }
    };
    let locks = spec
        .lock_reasons
        .iter()
        .map(|reason| Node::Object(vec![("LockReason", reason.as_str().into())]))
        .collect();
    // A stable private address derived from the ID, so repeated reads agree.
    let octets = spec.instance_id.bytes().fold(0u16, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(u16::from(b))
    });
    let private_ip = format!("172.16.{}.{}", octets >> 8, octets & 0xff);
    let ip_list = |ips: Vec<Node>| Node::Object(vec![("IpAddress", Node::List(ips))]);
    Node::Object(vec![
        ("InstanceId", spec.instance_id.as_str().into()),
        (
            "InstanceName",
            spec.instance_name
                .clone()
                .unwrap_or_else(|| spec.instance_id.clone())
                .into(),
        ),
        ("HostName", spec.instance_id.as_str().into()),
        ("Description", "".into()),
        ("RegionId", spec.region_id.as_str().into()),
        ("ZoneId", zone_of(instance).into()),
        ("Status", spec.status.as_str().into()),
        ("InstanceChargeType", spec.charge_type.as_str().into()),
        ("StoppedMode", instance.stopped_mode.into()),
        ("DeletionProtection", spec.deletion_protection.into()),
        ("InstanceType", instance_type.as_str().into()),
        ("InstanceTypeFamily", family.into()),
        ("Cpu", 2i64.into()),
        ("Memory", 8192i64.into()),
        ("ImageId", "m-sim0000000000000000".into()),
        ("OSType", "linux".into()),
        ("CreationTime", created.clone().into()),
        ("StartTime", created.into()),
        ("ExpiredTime", expired_time.into()),
        ("InternetChargeType", "PayByTraffic".into()),
        ("InstanceNetworkType", "vpc".into()),
        ("SpotStrategy", "NoSpot".into()),
        (
            "OperationLocks",
            Node::Object(vec![("LockReason", Node::List(locks))]),
        ),
        ("Tags", tags::tags_node(&spec.tags)),
        (
            "SecurityGroupIds",
            Node::Object(vec![("SecurityGroupId", Node::List(Vec::new()))]),
        ),
        ("PublicIpAddress", ip_list(Vec::new())),
        ("InnerIpAddress", ip_list(Vec::new())),
        (
            "VpcAttributes",
            Node::Object(vec![
                ("VpcId", "vpc-sim00000000000000".into()),
                ("VSwitchId", "vsw-sim00000000000000".into()),
                ("NatIpAddress", "".into()),
                ("PrivateIpAddress", ip_list(vec![private_ip.into()])),
            ]),
        ),
    ])
}

fn describe_instance_status(
    store: &mut Store,
    caller: &Caller,
    params: &Params,
    region: &str,
) -> Result<Fields, EcsError> {
    let ids = params.indexed("InstanceId");
    if ids.len() > MAX_IDS {
        return Err(EcsError::too_many_instance_ids());
    }
    let ids: Option<BTreeSet<String>> =
        (!ids.is_empty()).then(|| ids.into_iter().map(str::to_owned).collect());
    let page = page(params, 50)?;
    dry_run_gate(params)?;

    let matching = visible(store, caller, region, ids.as_ref(), params.get("ZoneId"));
    let total = i64::try_from(matching.len()).unwrap_or(i64::MAX);
    let statuses = page_slice(matching, &page)
        .into_iter()
        .map(|i| {
            Node::Object(vec![
                ("InstanceId", i.spec.instance_id.as_str().into()),
                ("Status", i.spec.status.as_str().into()),
            ])
        })
        .collect();
    Ok(vec![
        ("TotalCount", total.into()),
        ("PageNumber", page.number.into()),
        ("PageSize", page.size.into()),
        (
            "InstanceStatuses",
            Node::Object(vec![("InstanceStatus", Node::List(statuses))]),
        ),
    ])
}

// --- Start / Stop / Delete ---

/// The instance a mutating call addresses: present, visible to the caller and not released.
fn target<'a>(
    store: &'a mut Store,
    caller: &Caller,
    params: &Params,
) -> Result<&'a mut Instance, EcsError> {
    let id = params.required("InstanceId")?;
    if !is_well_formed_instance_id(id) {
        return Err(EcsError::invalid_instance_id());
    }
    store
        .get_mut(id, caller.now, caller.timing.transition)
        .filter(|i| i.visible_to(caller.owners) && !i.is_released())
        .ok_or_else(EcsError::instance_not_found)
}

fn expired_subscription(instance: &Instance) -> bool {
    instance.spec.charge_type == ChargeType::PrePaid && instance.spec.expired
}

fn start_instance(store: &mut Store, caller: &Caller, params: &Params) -> Result<Fields, EcsError> {
    params.bool("DryRun", false)?;
    let instance = target(store, caller, params)?;
    if instance.has_lock("security") {
        return Err(EcsError::locked_for_security());
    }
    if expired_subscription(instance) {
        return Err(EcsError::expired_or_in_arrears());
    }
    if instance.spec.status != Status::Stopped {
        return Err(EcsError::incorrect_status());
    }
    dry_run_gate(params)?;
    instance.set_status(Status::Starting, caller.now);
    instance.stopped_mode = "Not-applicable";
    Ok(Vec::new())
}

fn stop_instance(store: &mut Store, caller: &Caller, params: &Params) -> Result<Fields, EcsError> {
    params.bool("ForceStop", false)?;
    params.bool("DryRun", false)?;
    let requested_mode = match params.get("StoppedMode").filter(|m| !m.is_empty()) {
        None | Some("KeepCharging") => "KeepCharging",
        Some("StopCharging") => "StopCharging",
        Some(_) => return Err(EcsError::invalid_parameter("StoppedMode")),
    };
    let instance = target(store, caller, params)?;
    if instance.has_lock("security") {
        return Err(EcsError::locked_for_security());
    }
    if expired_subscription(instance) {
        return Err(EcsError::expired_or_in_arrears());
    }
    if instance.spec.status != Status::Running {
        return Err(EcsError::incorrect_status());
    }
    dry_run_gate(params)?;
    instance.set_status(Status::Stopping, caller.now);
    // Economical mode exists for pay-as-you-go only; otherwise ECS silently keeps charging.
    instance.stopped_mode = match instance.spec.charge_type {
        ChargeType::PostPaid => requested_mode,
        ChargeType::PrePaid => "KeepCharging",
    };
    Ok(Vec::new())
}

fn delete_instance(
    store: &mut Store,
    caller: &Caller,
    params: &Params,
) -> Result<Fields, EcsError> {
    let force = params.bool("Force", false)?;
    params.bool("ForceStop", true)?;
    let terminate_subscription = params.bool("TerminateSubscription", false)?;
    params.bool("DryRun", false)?;
    let instance = target(store, caller, params)?;
    // ECS documents that DeleteInstance works under a security lock (docs/ecs-reference.md §3); the
    // simulator refuses it so the error table's InstanceLockedForSecurity row
    // (docs/design.md §11) can be produced (documented in the README).
    if instance.has_lock("security") {
        return Err(EcsError::locked_for_security());
    }
    if instance.spec.deletion_protection {
        return Err(EcsError::deletion_protection());
    }
    if instance.spec.charge_type == ChargeType::PrePaid
        && !(instance.spec.expired && terminate_subscription)
    {
        return Err(EcsError::charge_type_violation());
    }
    if instance.spec.initializing {
        return Err(EcsError::initializing());
    }
    match (instance.spec.status, force) {
        (Status::Pending | Status::Starting, _) => return Err(EcsError::initializing()),
        (Status::Stopping, _) | (Status::Running, false) => {
            return Err(EcsError::incorrect_status());
        }
        (Status::Running, true) | (Status::Stopped, _) => {}
    }
    if instance.spec.route_entry {
        return Err(EcsError::route_entry());
    }
    if instance.spec.slb_configuring {
        return Err(EcsError::slb_configuring());
    }
    dry_run_gate(params)?;
    if instance.spec.status == Status::Running {
        // Released while running: it powers off (Stopping, then Stopped) while still visible.
        instance.set_status(Status::Stopping, caller.now);
    }
    instance.released_until = Some(caller.now + caller.timing.release_linger);
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_id_shape() {
        assert!(is_well_formed_instance_id("i-bp1g6zv0ce8oghu7abcd"));
        assert!(is_well_formed_instance_id("i-12345678"));
        assert!(!is_well_formed_instance_id("i-1234567"));
        assert!(!is_well_formed_instance_id("i-ABCDEFGH1"));
        assert!(!is_well_formed_instance_id("x-12345678"));
        assert!(!is_well_formed_instance_id(&format!(
            "i-{}",
            "a".repeat(31)
        )));
    }
}
