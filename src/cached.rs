//! What the watch caches keep of each `EcsInstance` (design.md §8, memory): the metadata and
//! spec as they are, our own annotations only, and the status as one compact JSON string that a
//! pass parses when its turn comes. Typed, a Ready resource's status is some twenty small heap
//! strings and structures; with 10,000 resources the cache was most of the process's memory. The
//! two facts other passes read of a status (whether the resource's credentials listed the
//! instance, whether it was ever written) are kept as flags.

use std::{borrow::Cow, collections::BTreeMap};

use k8s_openapi::{NamespaceResourceScope, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use kube::{Resource, runtime::reflector::ObjectRef};
use serde::Deserialize;

use crate::{
    decision::{listed, recorded_claim, unseen},
    resource::{EcsInstance, EcsInstanceSpec},
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
    /// The status as compact JSON (its typed fields, as `EcsInstanceStatus` writes them).
    status: Option<Box<str>>,
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
                serde_json::to_string(&status)
                    .expect("a status always serializes")
                    .into_boxed_str()
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
    pub fn to_resource(&self) -> Result<EcsInstance, serde_json::Error> {
        Ok(EcsInstance {
            metadata: self.metadata.clone(),
            spec: self.spec.clone(),
            status: self
                .status
                .as_deref()
                .map(serde_json::from_str)
                .transpose()?,
        })
    }
}

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
    fn a_resource_without_status_is_unseen_and_not_listed() {
        let mut full = resource();
        full.status = None;
        let json = serde_json::to_string(&full).unwrap();
        let cached: CachedEcsInstance = serde_json::from_str(&json).unwrap();
        assert!(cached.unseen && !cached.listed);
        assert_eq!(cached.to_resource().unwrap().status, None);
    }
}
