//! Tags: `TagResources`, `UntagResources`, `ListTagResources`, and the `Tag.N` request
//! parameters they share with `DescribeInstances`.
//!
//! Only ECS instances carry tags in the simulator. The other resource types ECS documents are
//! accepted as types, but no resource of them exists (so tagging one answers
//! `InvalidResourceId.NotFound` and listing them finds nothing); a type ECS does not know answers
//! `InvalidResourceType.NotFound`.
//!
//! Order of checks (the same for the three actions, each where it applies): `RegionId` present →
//! region exists → `ResourceType` present → type known → `ResourceId.N` (present, ≤ 50) → tag
//! parameters (present, ≤ 20, well formed, no duplicates) → every resource exists, is in the
//! region and is visible to the caller → the per-resource limit of 20 tags → effect. A call that
//! fails changes nothing, on any of its resources.

use std::collections::{BTreeMap, BTreeSet};

use crate::call::{Caller, Fields};
use crate::errors::EcsError;
use crate::model::{MAX_TAG_LENGTH, MAX_TAGS_PER_RESOURCE, Store};
use crate::params::Params;
use crate::response::Node;
use crate::state::State;

/// The `ResourceType` values the tag pages document (instance and the others).
pub const RESOURCE_TYPES: &[&str] = &[
    "instance",
    "disk",
    "snapshot",
    "image",
    "securitygroup",
    "volume",
    "eni",
    "ddh",
    "ddhcluster",
    "keypair",
    "launchtemplate",
    "reservedinstance",
    "snapshotpolicy",
    "elasticityassurance",
    "capacityreservation",
    "command",
    "invocation",
    "activation",
    "managedinstance",
];

const INSTANCE: &str = "instance";
const MAX_RESOURCE_IDS: usize = 50;
const MAX_TAGS_PER_CALL: usize = 20;
/// Entries per ListTagResources page (the page size is not documented; UNCONFIRMED).
const LIST_PAGE_SIZE: usize = 50;

/// One `Tag.N.Key` / `Tag.N.Value` pair as sent; either part may be absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagParam<'a> {
    pub key: Option<&'a str>,
    pub value: Option<&'a str>,
}

/// The `Tag.N.Key` / `Tag.N.Value` parameters, ordered by N (the first value of a repeated name
/// wins, like [`Params::get`]).
pub fn tag_params(params: &Params) -> Vec<TagParam<'_>> {
    let mut by_index: BTreeMap<u32, TagParam> = BTreeMap::new();
    for (name, value) in params.pairs() {
        let Some((index, field)) = name
            .strip_prefix("Tag.")
            .and_then(|rest| rest.split_once('.'))
        else {
            continue;
        };
        let Ok(index) = index.parse::<u32>() else {
            continue;
        };
        let entry = by_index.entry(index).or_insert(TagParam {
            key: None,
            value: None,
        });
        match field {
            "Key" if entry.key.is_none() => entry.key = Some(value.as_str()),
            "Value" if entry.value.is_none() => entry.value = Some(value.as_str()),
            _ => {}
        }
    }
    by_index.into_values().collect()
}

/// Text a tag key or value must not carry (the tag pages' rules).
fn has_reserved_text(s: &str) -> bool {
    s.starts_with("aliyun")
        || s.starts_with("acs:")
        || s.contains("http://")
        || s.contains("https://")
}

pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key.chars().count() <= MAX_TAG_LENGTH && !has_reserved_text(key)
}

pub fn is_valid_value(value: &str) -> bool {
    value.chars().count() <= MAX_TAG_LENGTH && !has_reserved_text(value)
}

/// A tag filter of DescribeInstances / ListTagResources: the key, and the value if one was given
/// (an empty value counts as absent, like an unset optional parameter).
pub type TagFilter = Vec<(String, Option<String>)>;

pub fn matches_filter(tags: &BTreeMap<String, String>, filter: &TagFilter) -> bool {
    filter.iter().all(|(key, value)| {
        tags.get(key)
            .is_some_and(|actual| value.as_ref().is_none_or(|v| v == actual))
    })
}

/// DescribeInstances `Tag.N.Key` / `Tag.N.Value` (N 1..20; its table's codes).
pub fn describe_instances_filter(params: &Params) -> Result<TagFilter, EcsError> {
    let tags = tag_params(params);
    if tags.len() > MAX_TAGS_PER_CALL {
        return Err(EcsError::invalid_tag_count());
    }
    tags.into_iter()
        .map(|tag| {
            let key = tag.key.ok_or_else(EcsError::tag_mismatch)?;
            Ok((
                key.to_owned(),
                tag.value.filter(|v| !v.is_empty()).map(str::to_owned),
            ))
        })
        .collect()
}

/// The checks every tag action starts with; returns `(RegionId, ResourceType)`.
fn region_and_type<'p>(
    state: &State,
    action: &str,
    params: &'p Params,
) -> Result<(&'p str, &'p str), EcsError> {
    let non_empty = |name: &str| params.get(name).filter(|v| !v.is_empty());
    let region = non_empty("RegionId")
        .ok_or_else(|| EcsError::tag_missing(action, "RegionId", "RegionId"))?;
    if !state.region_exists(region) {
        return Err(EcsError::region_not_found());
    }
    let resource_type = non_empty("ResourceType")
        .ok_or_else(|| EcsError::tag_missing(action, "ResourceType", "ResourceType"))?;
    // The pages list the values in lower case; other spellings are treated as unknown types.
    if !RESOURCE_TYPES.contains(&resource_type) {
        return Err(EcsError::resource_type_not_found());
    }
    Ok((region, resource_type))
}

/// `ResourceId.N`, duplicates dropped (first occurrence kept).
fn resource_ids<'p>(
    action: &str,
    params: &'p Params,
    required: bool,
) -> Result<Vec<&'p str>, EcsError> {
    let ids = params.indexed("ResourceId");
    if ids.len() > MAX_RESOURCE_IDS {
        return Err(EcsError::too_many_resource_ids(action));
    }
    if required && ids.is_empty() {
        return Err(EcsError::tag_missing(
            action,
            "ResourceIds",
            "ResourceIds.N",
        ));
    }
    let mut seen = BTreeSet::new();
    Ok(ids.into_iter().filter(|id| seen.insert(*id)).collect())
}

/// Every resource exists in the region and is visible to the caller, then none would carry more
/// than 20 tags (all checked before anything changes). Released instances that are still listed
/// cannot be tagged any more.
fn check_resources(
    store: &mut Store,
    caller: &Caller,
    region: &str,
    resource_type: &str,
    ids: &[&str],
    new_keys: &BTreeSet<&str>,
) -> Result<(), EcsError> {
    let mut tag_counts = Vec::with_capacity(ids.len());
    for id in ids {
        let instance = (resource_type == INSTANCE)
            .then(|| store.get_mut(id, caller.now, caller.timing.transition))
            .flatten()
            .filter(|i| {
                i.spec.region_id == region && i.visible_to(caller.owners) && !i.is_released()
            })
            .ok_or_else(EcsError::resource_not_found)?;
        let tags = &instance.spec.tags;
        let added = new_keys.iter().filter(|k| !tags.contains_key(**k)).count();
        tag_counts.push(tags.len() + added);
    }
    if tag_counts.into_iter().any(|n| n > MAX_TAGS_PER_RESOURCE) {
        return Err(EcsError::tag_quota_exceeded());
    }
    Ok(())
}

pub fn tag_resources(
    state: &mut State,
    caller: &Caller,
    params: &Params,
) -> Result<Fields, EcsError> {
    const ACTION: &str = "TagResources";
    let (region, resource_type) = region_and_type(state, ACTION, params)?;
    let ids = resource_ids(ACTION, params, true)?;
    let tags = tag_params(params);
    if tags.is_empty() {
        return Err(EcsError::tag_missing(ACTION, "Tags", "Tags"));
    }
    if tags.len() > MAX_TAGS_PER_CALL {
        return Err(EcsError::too_many_tags(ACTION));
    }
    let mut new_tags: BTreeMap<&str, &str> = BTreeMap::new();
    let mut lower_keys = BTreeSet::new();
    for tag in tags {
        let key = tag
            .key
            .filter(|k| is_valid_key(k))
            .ok_or_else(EcsError::invalid_tag_key)?;
        // The value "cannot be null and can be an empty string" (current page).
        let value = tag.value.ok_or_else(EcsError::tag_mismatch)?;
        if !is_valid_value(value) {
            return Err(EcsError::invalid_tag_value());
        }
        if new_tags.insert(key, value).is_some() {
            return Err(EcsError::duplicate_tag_key());
        }
        if !lower_keys.insert(key.to_lowercase()) {
            return Err(EcsError::tag_key_case_duplicate());
        }
    }
    let new_keys: BTreeSet<&str> = new_tags.keys().copied().collect();
    check_resources(
        &mut state.store,
        caller,
        region,
        resource_type,
        &ids,
        &new_keys,
    )?;
    for id in ids {
        if let Some(instance) = state
            .store
            .get_mut(id, caller.now, caller.timing.transition)
        {
            for (key, value) in &new_tags {
                instance
                    .spec
                    .tags
                    .insert((*key).to_owned(), (*value).to_owned());
            }
        }
    }
    Ok(Vec::new())
}

pub fn untag_resources(
    state: &mut State,
    caller: &Caller,
    params: &Params,
) -> Result<Fields, EcsError> {
    const ACTION: &str = "UntagResources";
    let (region, resource_type) = region_and_type(state, ACTION, params)?;
    let ids = resource_ids(ACTION, params, true)?;
    let keys = params.indexed("TagKey");
    if keys.len() > MAX_TAGS_PER_CALL {
        return Err(EcsError::too_many_tags(ACTION));
    }
    let all = params.bool("All", false)?;
    if all && !keys.is_empty() {
        return Err(EcsError::untag_all_conflict());
    }
    // Neither keys nor All: the table's "tag-related parameters are required" code (that this
    // case answers it is UNCONFIRMED).
    if !all && keys.is_empty() {
        return Err(EcsError::tag_missing(ACTION, "Tags", "Tags"));
    }
    if keys.iter().any(|k| k.is_empty()) {
        return Err(EcsError::invalid_tag_key());
    }
    check_resources(
        &mut state.store,
        caller,
        region,
        resource_type,
        &ids,
        &BTreeSet::new(),
    )?;
    for id in ids {
        if let Some(instance) = state
            .store
            .get_mut(id, caller.now, caller.timing.transition)
        {
            if all {
                instance.spec.tags.clear();
            } else {
                // Keys the resource does not carry are ignored.
                for key in &keys {
                    instance.spec.tags.remove(*key);
                }
            }
        }
    }
    Ok(Vec::new())
}

/// A ListTagResources `NextToken`: the hex form of the JSON `[resourceId, tagKey]` of the first
/// entry of the next page.
fn encode_list_token(resource_id: &str, key: &str) -> String {
    hex::encode(serde_json::json!([resource_id, key]).to_string())
}

fn decode_list_token(token: &str) -> Option<(String, String)> {
    let bytes = hex::decode(token).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn list_tag_resources(
    state: &mut State,
    caller: &Caller,
    params: &Params,
) -> Result<Fields, EcsError> {
    const ACTION: &str = "ListTagResources";
    let (region, resource_type) = region_and_type(state, ACTION, params)?;
    let ids = resource_ids(ACTION, params, false)?;
    if params
        .pairs()
        .iter()
        .any(|(k, _)| k.starts_with("TagFilter."))
    {
        return Err(EcsError::tag_filter_unsupported());
    }
    let tags = tag_params(params);
    if tags.len() > MAX_TAGS_PER_CALL {
        return Err(EcsError::too_many_tags(ACTION));
    }
    let mut filter: TagFilter = Vec::new();
    for tag in tags {
        let key = tag.key.ok_or_else(EcsError::list_tag_value_without_key)?;
        // Filter keys are 1..128 characters; reserved prefixes are allowed (`acs:rm:rgId`).
        if key.is_empty() || key.chars().count() > MAX_TAG_LENGTH {
            return Err(EcsError::invalid_tag_key());
        }
        if filter.iter().any(|(k, _)| k == key) {
            return Err(EcsError::duplicate_tag_key());
        }
        filter.push((
            key.to_owned(),
            tag.value.filter(|v| !v.is_empty()).map(str::to_owned),
        ));
    }
    if ids.is_empty() && filter.is_empty() {
        return Err(EcsError::tags_and_resources_empty());
    }
    let start = match params.get("NextToken").filter(|t| !t.is_empty()) {
        Some(token) => {
            Some(decode_list_token(token).ok_or_else(EcsError::invalid_list_next_token)?)
        }
        None => None,
    };

    let wanted: Option<BTreeSet<&str>> = (!ids.is_empty()).then(|| ids.iter().copied().collect());
    let mut entries: Vec<(String, String, String)> = Vec::new();
    if resource_type == INSTANCE {
        for instance in state
            .store
            .region_mut(region, caller.now, caller.timing.transition)
        {
            let id = instance.spec.instance_id.as_str();
            if !instance.visible_to(caller.owners)
                || wanted.as_ref().is_some_and(|w| !w.contains(id))
                || !matches_filter(&instance.spec.tags, &filter)
            {
                continue;
            }
            entries.extend(
                instance
                    .spec
                    .tags
                    .iter()
                    .map(|(k, v)| (id.to_owned(), k.clone(), v.clone())),
            );
        }
    }
    let mut rest: Vec<(String, String, String)> = entries
        .into_iter()
        .filter(|(id, key, _)| {
            start
                .as_ref()
                .is_none_or(|(from_id, from_key)| (id, key) >= (from_id, from_key))
        })
        .collect();
    let next = rest
        .get(LIST_PAGE_SIZE)
        .map(|(id, key, _)| encode_list_token(id, key));
    rest.truncate(LIST_PAGE_SIZE);
    let items = rest
        .into_iter()
        .map(|(id, key, value)| {
            Node::Object(vec![
                ("ResourceId", id.into()),
                ("ResourceType", resource_type.into()),
                ("TagKey", key.into()),
                ("TagValue", value.into()),
            ])
        })
        .collect();
    Ok(vec![
        ("NextToken", next.unwrap_or_default().into()),
        (
            "TagResources",
            Node::Object(vec![("TagResource", Node::List(items))]),
        ),
    ])
}

/// `Tags.Tag[]` of a DescribeInstances item.
pub fn tags_node(tags: &BTreeMap<String, String>) -> Node {
    let items = tags
        .iter()
        .map(|(key, value)| {
            Node::Object(vec![
                ("TagKey", key.as_str().into()),
                ("TagValue", value.as_str().into()),
            ])
        })
        .collect();
    Node::Object(vec![("Tag", Node::List(items))])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(list: &[(&str, &str)]) -> Params {
        Params::new(
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn tag_params_by_index() {
        let p = params(&[
            ("Tag.2.Key", "b"),
            ("Tag.1.Value", "v1"),
            ("Tag.1.Key", "a"),
            ("Tag.10.Key", "c"),
            ("Tag.x.Key", "ignored"),
            ("TagKey.1", "ignored"),
            ("Tag.1.Key", "second value ignored"),
        ]);
        assert_eq!(
            tag_params(&p),
            vec![
                TagParam {
                    key: Some("a"),
                    value: Some("v1")
                },
                TagParam {
                    key: Some("b"),
                    value: None
                },
                TagParam {
                    key: Some("c"),
                    value: None
                },
            ]
        );
    }

    #[test]
    fn key_and_value_rules() {
        let long = "k".repeat(MAX_TAG_LENGTH);
        assert!(is_valid_key(&long));
        assert!(!is_valid_key(&format!("{long}k")));
        assert!(is_valid_key("é".repeat(MAX_TAG_LENGTH).as_str()));
        for bad in ["", "aliyunx", "acs:x", "a http://x", "https://x"] {
            assert!(!is_valid_key(bad), "{bad:?}");
        }
        for good in ["ecs.alicloud.dev/owner", "Aliyun", "x-acs:y", "http:/"] {
            assert!(is_valid_key(good), "{good:?}");
        }
        assert!(is_valid_value(""));
        assert!(!is_valid_value("acs:v"));
        assert!(!is_valid_value(&"v".repeat(MAX_TAG_LENGTH + 1)));
    }

    #[test]
    fn filters_and_tokens() {
        let tags: BTreeMap<String, String> = [
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), String::new()),
        ]
        .into();
        assert!(matches_filter(&tags, &vec![("a".into(), Some("1".into()))]));
        assert!(matches_filter(
            &tags,
            &vec![("a".into(), None), ("b".into(), None)]
        ));
        assert!(!matches_filter(
            &tags,
            &vec![("a".into(), Some("2".into()))]
        ));
        assert!(!matches_filter(&tags, &vec![("c".into(), None)]));
        let token = encode_list_token("i-abc", "k\"ey");
        assert_eq!(
            decode_list_token(&token),
            Some(("i-abc".to_owned(), "k\"ey".to_owned()))
        );
        assert_eq!(decode_list_token("zz"), None);
        assert_eq!(decode_list_token(&hex::encode("[1]")), None);
    }

    #[test]
    fn describe_filter_codes() {
        let ok = describe_instances_filter(&params(&[("Tag.1.Key", "a"), ("Tag.1.Value", "")]));
        assert_eq!(ok, Ok(vec![("a".to_owned(), None)]));
        let value_only = describe_instances_filter(&params(&[("Tag.1.Value", "v")]));
        assert_eq!(value_only.unwrap_err().code, "InvalidTag.Mismatch");
        let many: Vec<(String, String)> = (1..=21)
            .map(|n| (format!("Tag.{n}.Key"), format!("k{n}")))
            .collect();
        let too_many = describe_instances_filter(&Params::new(many));
        assert_eq!(too_many.unwrap_err().code, "InvalidTagCount");
    }
}
