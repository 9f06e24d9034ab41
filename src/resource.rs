//! The `EcsInstance` custom resource: one Alibaba Cloud ECS instance whose release is tied to the
//! life of this resource. The CRD in `crds/` is generated from these types (`crdgen`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The finalizer that holds an `EcsInstance` until its instance is released (or orphaned).
pub const FINALIZER: &str = "ecs.alicloud.dev/release-instance";

/// The finalizer on a credentials Secret that an `EcsInstance` holding [`FINALIZER`] names: the
/// Secret stays readable until no such resource needs it, so a prune or a namespace teardown
/// that deletes it with the resources never strands a release (design.md §6).
pub const SECRET_IN_USE_FINALIZER: &str = "ecs.alicloud.dev/credentials-in-use";

/// Tag on the ECS instance naming its owner, `<namespace>/<name>` (for people reading the console).
pub const OWNER_TAG: &str = "ecs.alicloud.dev/owner";
/// Tag on the ECS instance with its owner's UID, or the claim its owner's status records
/// ([`TagClaim`]): the one that counts.
pub const OWNER_UID_TAG: &str = "ecs.alicloud.dev/owner-uid";
/// Annotation naming the UID of a resource this one replaces (a restore, a cluster rebuilt from
/// Git, a move to another cluster): an instance tagged for that UID is taken over, but only
/// while no resource with that UID exists in this cluster (design.md §3).
pub const TAKE_OVER_ANNOTATION: &str = "ecs.alicloud.dev/take-over-from";

/// Desired state of one ECS instance's release.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ecs.alicloud.dev",
    version = "v1alpha1",
    kind = "EcsInstance",
    doc = "An Alibaba Cloud ECS instance whose release is tied to the life of this resource.",
    namespaced,
    status = "EcsInstanceStatus",
    shortname = "ecsi",
    category = "alicloud",
    printcolumn(name = "Instance", type_ = "string", json_path = ".spec.instanceId"),
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.regionId"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.instance.status",
        description = "Cloud status of the instance"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct EcsInstanceSpec {
    /// ID of the ECS instance, e.g. `i-bp67acfmxazb4ph3t1ab`. Immutable.
    #[schemars(regex(pattern = r"^i-[a-z0-9]+$"), length(min = 3, max = 64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("instanceId is immutable"))]
    pub instance_id: String,

    /// Region of the instance, e.g. `cn-hangzhou`. Immutable.
    #[schemars(regex(pattern = r"^[a-z]+(-[a-z0-9]+)+$"), length(min = 4, max = 64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("regionId is immutable"))]
    pub region_id: String,

    /// What happens to the instance when this resource is deleted. `Delete` releases it;
    /// `Orphan` leaves it running and only removes the resource; `Observe` never changes
    /// anything in the cloud (no tags, no stop, no release: a dry run) and reports what `Delete`
    /// would have done. Unset: the Namespace's `ecs.alicloud.dev/deletion-policy` annotation,
    /// else the controller's `--default-deletion-policy` (`Delete` unless the operator chose
    /// otherwise). May be changed at any time, also while the resource is being deleted:
    /// `Orphan` is the way out of a blocked deletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// How the instance is released when this resource is deleted.
    #[serde(default)]
    pub on_delete: OnDelete,

    /// A Secret in this namespace with `accessKeyId`, `accessKeySecret` and optionally
    /// `securityToken`. Without it the controller's own credentials are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<CredentialsRef>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Release the instance, then remove the resource.
    #[default]
    Delete,
    /// Remove the resource and leave the instance as it is.
    Orphan,
    /// Never change anything in the cloud; on deletion, report what `Delete` would have done
    /// and remove the resource.
    Observe,
}

/// The annotation on a Namespace that sets the deletion policy of its resources that set none.
pub const NAMESPACE_POLICY_ANNOTATION: &str = "ecs.alicloud.dev/deletion-policy";

impl std::str::FromStr for DeletionPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "Delete" => Ok(DeletionPolicy::Delete),
            "Orphan" => Ok(DeletionPolicy::Orphan),
            "Observe" => Ok(DeletionPolicy::Observe),
            other => Err(format!(
                "{other:?} is not a deletion policy (Delete, Orphan or Observe)"
            )),
        }
    }
}

impl std::fmt::Display for DeletionPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeletionPolicy::Delete => "Delete",
            DeletionPolicy::Orphan => "Orphan",
            DeletionPolicy::Observe => "Observe",
        })
    }
}

/// How the instance gets released.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OnDelete {
    /// How the instance reaches `Stopped` before `DeleteInstance`: `Wait` (someone else stops
    /// it), `Stop` (`StopInstance`) or `ForceStop` (`StopInstance` with `ForceStop=true`).
    #[serde(default)]
    pub stop: StopPolicy,

    /// Stop mode passed to `StopInstance` for pay-as-you-go instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_mode: Option<StoppedMode>,

    /// Release a `Running` instance without stopping it first (`DeleteInstance` with
    /// `Force=true`, equivalent to a power-off). Opt-in only.
    #[serde(default)]
    pub force: bool,

    /// Pass `TerminateSubscription=true`, which releases an expired subscription instance.
    #[serde(default)]
    pub terminate_subscription: bool,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StopPolicy {
    /// Only wait for the instance to be stopped by someone else.
    #[default]
    Wait,
    /// Call `StopInstance`.
    Stop,
    /// Call `StopInstance` with `ForceStop=true` (power-off).
    ForceStop,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoppedMode {
    KeepCharging,
    StopCharging,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct CredentialsRef {
    /// Name of a Secret in the same namespace as the resource.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Observed state, written by the controller through the status subresource.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
// A resource the controller has not written yet has no stored status. Without one, kstatus
// (Flux `wait`, kpt, cli-utils) has nothing to go by and reads it Current. This schema default
// makes the API server return `status: {observedGeneration: 0}` for it (defaults are applied on
// every read from etcd, so also after the status subresource dropped the status on create);
// `metadata.generation` starts at 1, so kstatus reads InProgress until the controller's first
// status write, which always sets `observedGeneration` (`Draft::new`). 0 rather than -1: "no
// generation observed", and as non-negative as the conditions' `observedGeneration`.
#[schemars(extend("default" = { "observedGeneration": 0 }))]
pub struct EcsInstanceStatus {
    /// The `metadata.generation` the status was computed from (for kstatus and `kubectl wait`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The last observation of the cloud instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<ObservedInstance>,

    /// The last failed ECS call, cleared when the next call succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,

    /// The release of the instance, once requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseRecord>,

    /// `Ready`, `Reconciling`, `Stalled` and `Released`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObservedInstance {
    /// Pending, Starting, Running, Stopping or Stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// PrePaid or PostPaid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_type: Option<String>,
    /// Release protection (`DeletionProtection`): while true, `DeleteInstance` is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_protection: Option<bool>,
    /// Why ECS locks the instance (`OperationLocks`), e.g. `security`; empty when unlocked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lock_reasons: Vec<String>,
    /// The zone the instance runs in, e.g. `cn-hangzhou-g`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_id: Option<String>,
    /// When this observation was made (refreshed when it changes, or after the resync period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<Time>,
    /// Since when the observations in a row show this resource's owner tag on the instance.
    /// With other resources naming the same instance, a release waits until the tag has held
    /// for a while: a tag call of theirs still in flight could replace it (design.md §3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned_since: Option<Time>,
    /// Other resources named the instance (at any time this resource looked). The release waits
    /// for the owner tag to hold even after they are gone, since a tag or untag call one of
    /// them decided may still be on its way (design.md §3).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub contested: bool,
    /// When this resource last sent `TagResources` for the instance (recorded before the
    /// call), until an observation shows its tag. A tag call can land long after it was sent:
    /// until `ownership_settle` has passed, the resource is not removed without a release
    /// (design.md §3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_requested_at: Option<Time>,
    /// The claim this resource tagged the instance with instead of its UID, when its tag call
    /// was batched with others' (design.md §3, adoption in batches). Recorded before the call
    /// and kept: the instance is this resource's when it carries this claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<TagClaim>,
    /// The owner UID this resource took the instance over from (annotation
    /// `ecs.alicloud.dev/take-over-from`), kept while the instance carries this resource's tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_over_from: Option<String>,
    /// The credentials and region that last saw the instance listed: the evidence that "not
    /// listed any more" means "released" (design.md §2). Kept when the instance vanishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_with: Option<ObservedWith>,
}

/// A value of the owner tag shared by the instances of one batch of `TagResources` calls, and
/// the UID of the resource that recorded it: a status restored onto another resource (with
/// another UID) proves nothing (design.md §3).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TagClaim {
    /// The value of the `ecs.alicloud.dev/owner-uid` tag, `claim-` and 16 hexadecimal digits.
    pub value: String,
    /// The UID of the resource that recorded the claim.
    pub uid: String,
}

/// Who looked: the AccessKeyId (never the secret) or the RAM role, and the region.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ObservedWith {
    /// The AccessKeyId of the long-term credentials that listed the instance; empty when they
    /// were a RAM role's session, whose temporary key changes at every renewal.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub access_key_id: String,
    /// The RAM role whose session listed the instance (RRSA, an instance role, a role assumed
    /// for a Secret): the identity the evidence rule compares for temporary credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// The region it was listed in.
    pub region_id: String,
}

impl ObservedWith {
    /// The identity in words, for condition messages.
    pub fn describe(&self) -> String {
        match &self.role_arn {
            Some(role) => format!("role {role} in region {}", self.region_id),
            None => format!(
                "AccessKeyId {} in region {}",
                self.access_key_id, self.region_id
            ),
        }
    }
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    /// The ECS action that failed, e.g. `DeleteInstance`.
    pub action: String,
    /// The exact ECS error code, e.g. `DependencyViolation.RouteEntry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// ECS's message, cleaned and bounded.
    pub message: String,
    /// The RequestId of the failed call, to quote to Alibaba Cloud support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The HTTP status of the answer, if one came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<i32>,
    /// When the call failed.
    pub at: Time,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRecord {
    /// RequestId of the successful `DeleteInstance`; absent while its outcome is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// When `DeleteInstance` was sent (written just before it: the intent, design.md §4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<Time>,
    /// When the instance was confirmed gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_at: Option<Time>,
}

/// `metav1.Condition` items as a list-type map keyed by `type`, so server-side apply merges
/// conditions per type (k8s-openapi's schema for `Condition` does not carry the list type).
fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let item = generator.subschema_for::<Condition>();
    json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": item,
    })
}
