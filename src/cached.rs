//! What the watch caches keep of each `EcsInstance` (design.md §8, memory): the metadata and
//! spec as they are, our own annotations only, and the status as compact JSON, compressed, that a
//! pass parses when its turn comes. Typed, a Ready resource's status is some twenty small heap
//! strings and structures; with 10,000 resources the cache was most of the process's memory. The
//! facts other passes read of a status (whether the resource's credentials listed the instance,
//! whether it was ever written, its claim) are kept apart.
//!
//! The compression is LZ4 against a dictionary of what statuses have in common (the field names,
//! the four conditions, the usual reasons and messages): a Ready status is about 1 KiB of JSON
//! and keeps about a fifth of it. No general-purpose compressor does well on one kilobyte alone;
//! against the dictionary, the repeats across resources are what is left out.

use std::{borrow::Cow, collections::BTreeMap, sync::LazyLock};

use k8s_openapi::{
    NamespaceResourceScope,
    apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time},
};
use kube::{Resource, runtime::reflector::ObjectRef};
use serde::Deserialize;

use crate::{
    decision::{listed, recorded_claim, unseen},
    resource::{
        EcsInstance, EcsInstanceSpec, EcsInstanceStatus, ObservedInstance, ObservedWith, TagClaim,
    },
};

/// Annotations under this prefix are ours and kept; the others (kubectl's copy of the object,
/// tools' notes) are never read.
const OWN_ANNOTATIONS: &str = "ecs.alicloud.dev/";

/// An `EcsInstance` as the watch caches hold it.
#[derive(Deserialize, Clone, Debug)]
#[serde(from = "EcsInstance")]
pub struct CachedEcsInstance {
    pub metadata: ObjectMeta,
    pub spec: EcsInstanceSpec,
    /// The status as compact JSON (its typed fields, as `EcsInstanceStatus` writes them),
    /// compressed against [`DICTIONARY`], its length first.
    status: Option<Box<[u8]>>,
    /// Its status records that its credentials listed the instance.
    pub listed: bool,
    /// The controller has not written its status yet.
    pub unseen: bool,
    /// Its status records a `DeleteInstance` sent (its passes skip the queue, design.md §8).
    pub release_sent: bool,
    /// The claim its status records (design.md §3, adoption in batches).
    pub claim: Option<Box<str>>,
}

impl From<EcsInstance> for CachedEcsInstance {
    fn from(resource: EcsInstance) -> Self {
        let EcsInstance {
            metadata,
            spec,
            status,
        } = resource;
        let annotations: Option<BTreeMap<String, String>> =
            metadata.annotations.map(|annotations| {
                annotations
                    .into_iter()
                    .filter(|(key, _)| key.starts_with(OWN_ANNOTATIONS))
                    .collect()
            });
        // What passes, events and ownership read; the rest (managedFields above all) never is.
        let metadata = ObjectMeta {
            name: metadata.name,
            namespace: metadata.namespace,
            uid: metadata.uid,
            resource_version: metadata.resource_version,
            generation: metadata.generation,
            creation_timestamp: metadata.creation_timestamp,
            deletion_timestamp: metadata.deletion_timestamp,
            finalizers: metadata.finalizers,
            annotations: annotations.filter(|a| !a.is_empty()),
            ..ObjectMeta::default()
        };
        let claim = recorded_claim(status.as_ref(), metadata.uid.as_deref()).map(Box::from);
        CachedEcsInstance {
            metadata,
            spec,
            claim,
            listed: listed(status.as_ref()),
            unseen: unseen(status.as_ref()),
            release_sent: status.as_ref().is_some_and(|s| s.release.is_some()),
            status: status.map(|status| {
                let json = serde_json::to_vec(&status).expect("a status always serializes");
                lz4_flex::block::compress_prepend_size_with_dict(&json, &DICTIONARY)
                    .into_boxed_slice()
            }),
        }
    }
}

impl CachedEcsInstance {
    /// The reference the rest of the controller files what it knows of the resource under.
    pub fn object_ref(&self) -> ObjectRef<EcsInstance> {
        ObjectRef::from_obj(self).into_kind_unchecked(())
    }

    /// The resource a pass works on, its status parsed again.
    pub fn to_resource(&self) -> Result<EcsInstance, CachedStatusError> {
        let status = match self.status.as_deref() {
            Some(compressed) => {
                let json =
                    lz4_flex::block::decompress_size_prepended_with_dict(compressed, &DICTIONARY)?;
                Some(serde_json::from_slice(&json)?)
            }
            None => None,
        };
        Ok(EcsInstance {
            metadata: self.metadata.clone(),
            spec: self.spec.clone(),
            status,
        })
    }
}

/// A cached status that does not come back (a bug: it was written by this process).
#[derive(Debug, thiserror::Error)]
pub enum CachedStatusError {
    #[error("the cached status does not decompress: {0}")]
    Decompress(#[from] lz4_flex::block::DecompressError),
    #[error("the cached status does not parse: {0}")]
    Parse(#[from] serde_json::Error),
}

/// A status as the controller writes it for a Ready resource, as JSON: what statuses have in
/// common. Built from the types, so a renamed field is renamed here too.
static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let at = Time(jiff::Timestamp::from_second(1_800_000_000).expect("a valid time"));
    let condition = |type_: &str, status: &str, reason: &str, message: &str| Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: Some(1),
        last_transition_time: at.clone(),
    };
    let status = EcsInstanceStatus {
        observed_generation: Some(1),
        conditions: vec![
            condition(
                "Ready",
                "True",
                "InstanceObserved",
                "Instance i-bp1 is Running",
            ),
            condition("Reconciling", "False", "InstanceObserved", ""),
            condition("Stalled", "False", "InstanceObserved", ""),
            condition(
                "Released",
                "False",
                "NotDeleting",
                "The instance is released when this resource is deleted",
            ),
        ],
        instance: Some(ObservedInstance {
            status: Some("Stopped".into()),
            charge_type: Some("PostPaid".into()),
            deletion_protection: Some(false),
            zone_id: Some("cn-hangzhou-a".into()),
            observed_at: Some(at.clone()),
            owned_since: Some(at.clone()),
            tag_requested_at: Some(at),
            claim: Some(TagClaim {
                value: "claim-".into(),
                uid: String::new(),
            }),
            observed_with: Some(ObservedWith {
                access_key_id: "LTAI".into(),
                role_arn: None,
                region_id: "cn-hangzhou".into(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    serde_json::to_vec(&status).expect("a status always serializes")
});

impl Resource for CachedEcsInstance {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        EcsInstance::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        EcsInstance::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        EcsInstance::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        EcsInstance::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{EcsInstanceStatus, ObservedInstance, ObservedWith};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn resource() -> EcsInstance {
        let at = Time(jiff::Timestamp::from_second(1_700_000_000).unwrap());
        let mut resource = EcsInstance::new(
            "a",
            EcsInstanceSpec {
                instance_id: "i-abc".into(),
                region_id: "cn-hangzhou".into(),
                deletion_policy: None,
                on_delete: Default::default(),
                credentials_ref: None,
            },
        );
        resource.metadata.namespace = Some("team-a".into());
        resource.metadata.uid = Some("uid-1".into());
        resource.metadata.annotations = Some(
            [
                ("ecs.alicloud.dev/take-over-from", "uid-0"),
                ("kubectl.kubernetes.io/last-applied-configuration", "{...}"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        resource.metadata.labels = Some([("app".to_string(), "x".to_string())].into());
        resource.status = Some(EcsInstanceStatus {
            observed_generation: Some(1),
            instance: Some(ObservedInstance {
                status: Some("Running".into()),
                observed_at: Some(at.clone()),
                observed_with: Some(ObservedWith {
                    access_key_id: "LTAI".into(),
                    role_arn: None,
                    region_id: "cn-hangzhou".into(),
                }),
                ..Default::default()
            }),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: "InstanceObserved".into(),
                message: "Running".into(),
                observed_generation: Some(1),
                last_transition_time: at,
            }],
            ..Default::default()
        });
        resource
    }

    #[test]
    fn the_cache_gives_back_status_spec_and_the_metadata_a_pass_reads() {
        let full = resource();
        let cached = CachedEcsInstance::from(full.clone());
        let back = cached.to_resource().unwrap();
        assert_eq!(back.status, full.status);
        assert_eq!(back.spec, full.spec);
        assert_eq!(back.metadata.uid, full.metadata.uid);
        assert_eq!(
            back.metadata
                .annotations
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["ecs.alicloud.dev/take-over-from"],
            "only our annotations"
        );
        assert_eq!(back.metadata.labels, None);
        assert!(cached.listed && !cached.unseen);
    }

    #[test]
    fn a_ready_status_is_kept_in_a_fraction_of_its_json() {
        let full = resource();
        let json = serde_json::to_vec(&full.status).unwrap().len();
        let cached = CachedEcsInstance::from(full.clone());
        let kept = cached.status.as_ref().unwrap().len();
        assert!(kept * 3 < json, "{kept} bytes kept of {json}");
        assert_eq!(cached.to_resource().unwrap().status, full.status);
    }

    #[test]
    fn a_resource_without_status_is_unseen_and_not_listed() {
        let mut full = resource();
        full.status = None;
        let json = serde_json::to_string(&full).unwrap();
        let cached: CachedEcsInstance = serde_json::from_str(&json).unwrap();
        assert!(cached.unseen && !cached.listed);
        assert_eq!(cached.to_resource().unwrap().status, None);
    }
}
