//! The deletion flow of design.md §11 (and the observation loop of §1) as pure functions, in two steps
//! per pass: [`plan`] looks at the resource and what was observed of its instance and either
//! concludes at once or asks for one cloud call; [`conclude`] takes that call's result. Both give
//! the complete status to write, the events to publish and what happens next.
//!
//! Every step is derived again from observed state, so a controller restarted at any point
//! carries on where it stopped. The only memory is what the status records (who last saw the
//! instance, an accepted release) and what the shell remembers for moments the status may not
//! yet show (a stop just requested, a release accepted whose status write failed).

use std::fmt;

use ecs_client::{
    DeleteInstance, EcsError, ErrorClass, Instance, InstanceStatus, RequestId, StopInstance,
    TagInstance, UntagInstance,
};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::ResourceExt;

use crate::conditions::{self, READY, RECONCILING, RELEASED, STALLED};
pub use crate::pacing::{Backoff, Pace};
use crate::reasons::{self, EventKind, Kind, Reason};
use crate::resource::{
    DeletionPolicy, EcsInstance, EcsInstanceStatus, LastError, NAMESPACE_POLICY_ANNOTATION,
    OWNER_TAG, OWNER_UID_TAG, ObservedInstance, ObservedWith, ReleaseRecord, StopPolicy,
    StoppedMode, TAKE_OVER_ANNOTATION, TagClaim,
};

/// What the controller saw of the instance this pass.
#[derive(Debug, Clone)]
pub enum Observation {
    /// No usable credentials, so nothing was asked of ECS.
    CredentialsUnavailable(String),
    /// `DescribeInstances` failed. Never evidence of anything about the instance.
    Failed(EcsError),
    /// `DescribeInstances` answered and does not list the instance.
    Absent,
    Present(Instance),
}

/// Where the credentials of a resource come from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsSource {
    /// `spec.credentialsRef`: `namespace/name` of the Secret.
    Secret(String),
    /// The controller's own `ALIBABA_CLOUD_*` credentials.
    Controller,
}

impl fmt::Display for CredentialsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialsSource::Secret(name) => write!(f, "Secret {name}"),
            CredentialsSource::Controller => f.write_str("the controller's own credentials"),
        }
    }
}

/// Who a pass's credentials are, as the evidence rule compares them (design.md §2): the
/// AccessKeyId of long-term keys, or the RAM role of a session (its temporary AccessKeyId changes
/// at every renewal and says nothing about the account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub access_key_id: String,
    pub role_arn: Option<String>,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.role_arn {
            Some(role) => write!(f, "role {role}"),
            None => write!(f, "AccessKeyId {}", self.access_key_id),
        }
    }
}

/// The deletion policy that applies to a resource, and where it comes from (design.md §1):
/// `spec.deletionPolicy`, else its Namespace's annotation, else the controller's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub policy: DeletionPolicy,
    pub from: PolicyFrom,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyFrom {
    Spec,
    /// The annotation of this Namespace.
    Namespace(String),
    /// `--default-deletion-policy`.
    Controller,
    /// This Namespace's policy cannot be known (why: its annotation is no policy, or the
    /// Namespaces are not listed): nothing is changed in the cloud, and a deletion waits
    /// (`InvalidDeletionPolicy`).
    InvalidNamespace(String, String),
}

impl Policy {
    /// `spec.deletionPolicy`, else the Namespace's (`namespace`: its name and annotation value),
    /// else the controller's default.
    pub fn of(
        resource: &EcsInstance,
        namespace: Option<(&str, &Result<DeletionPolicy, String>)>,
        controller: DeletionPolicy,
    ) -> Policy {
        match (resource.spec.deletion_policy, namespace) {
            (Some(policy), _) => Policy {
                policy,
                from: PolicyFrom::Spec,
            },
            (None, Some((name, Ok(policy)))) => Policy {
                policy: *policy,
                from: PolicyFrom::Namespace(name.to_string()),
            },
            (None, Some((name, Err(value)))) => Policy {
                policy: DeletionPolicy::Observe,
                from: PolicyFrom::InvalidNamespace(name.to_string(), value.clone()),
            },
            (None, None) => Policy {
                policy: controller,
                from: PolicyFrom::Controller,
            },
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.from {
            PolicyFrom::Spec => write!(f, "deletionPolicy is {}", self.policy),
            PolicyFrom::Namespace(name) => write!(
                f,
                "deletionPolicy is {} (the default of namespace {name}, annotation {NAMESPACE_POLICY_ANNOTATION})",
                self.policy
            ),
            PolicyFrom::Controller => write!(
                f,
                "deletionPolicy is {} (the controller's default, --default-deletion-policy)",
                self.policy
            ),
            PolicyFrom::InvalidNamespace(name, why) => write!(
                f,
                "no deletionPolicy is known: the resource sets none and for namespace {name} {why}, so nothing is changed in the cloud"
            ),
        }
    }
}

/// A call to ECS the plan asks the shell to make.
#[derive(Debug, Clone, PartialEq)]
pub enum CloudCall {
    Stop(StopInstance),
    Delete(DeleteInstance),
    /// Record this resource as the instance's owner.
    Tag(TagInstance),
    /// Remove our owner tags (orphaning).
    Untag(UntagInstance),
}

impl CloudCall {
    pub fn action(&self) -> &'static str {
        match self {
            CloudCall::Stop(_) => "StopInstance",
            CloudCall::Delete(_) => "DeleteInstance",
            CloudCall::Tag(_) => "TagResources",
            CloudCall::Untag(_) => "UntagResources",
        }
    }

    /// The `action` of the events about this call.
    fn event_action(&self) -> &'static str {
        match self {
            CloudCall::Stop(_) => "Stop",
            CloudCall::Delete(_) => "Release",
            CloudCall::Tag(_) => "Tag",
            CloudCall::Untag(_) => "Untag",
        }
    }
}

/// The `action` of events about observing.
const OBSERVE: &str = "Observe";

pub struct Input<'a> {
    pub resource: &'a EcsInstance,
    /// The deletion policy that applies.
    pub policy: &'a Policy,
    pub observation: &'a Observation,
    pub credentials_source: &'a CredentialsSource,
    /// Who the credentials used are (`None` when there were none): what the evidence rule
    /// compares (design.md §2).
    pub identity: Option<&'a Identity>,
    /// A `StopInstance` for this resource was accepted moments ago: do not send another while
    /// `DescribeInstances` may still show the instance `Running`.
    pub stop_recently_requested: bool,
    /// A `DeleteInstance` this process saw accepted, in case the status write holding it failed.
    pub remembered_release: Option<&'a ReleaseRecord>,
    pub now: Timestamp,
    /// `status.instance.observedAt` is refreshed when the observation changes or is this old,
    /// so steady resyncs do not rewrite the status every time.
    pub observed_at_refresh: SignedDuration,
    /// An accepted release whose instance is still listed after this long needs a person.
    pub release_timeout: SignedDuration,
    /// A `DeleteInstance` whose outcome is unknown (its answer was lost, or the process died
    /// after sending it) is sent again only when the instance is still listed after this long,
    /// well beyond the time ECS takes to show a release (design.md §4).
    pub resend_after: SignedDuration,
    /// With other claimants, how long our owner tag must have held before a release.
    pub ownership_settle: SignedDuration,
    /// The other resources that name the same region and instance, for ownership.
    pub claimants: &'a [Claimant],
    /// The resource of this cluster (`namespace/name`) that has the UID this resource's
    /// take-over annotation names: while it exists nothing is taken over from it.
    pub take_over_blocker: Option<&'a str>,
    /// When the release intent written this pass was stored, for [`conclude`] after a
    /// `DeleteInstance` whose outcome is unknown.
    pub intent_at: Option<Timestamp>,
    /// A claim the cloud client handed out for tagging the instance together with others
    /// ([`could_share_claim`]): tagged with it instead of the UID (design.md §3).
    pub claim: Option<&'a str>,
}

/// Another resource that names the same region and instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimant {
    /// `namespace/name`.
    pub name: String,
    pub uid: Option<String>,
    pub created: Option<Timestamp>,
    /// Its status records that its credentials listed the instance. A resource whose
    /// credentials never listed the instance never owns it.
    pub listed: bool,
    /// The controller has not written its status yet: whether it can list the instance is not
    /// known, so a younger resource waits for it rather than racing it to the tag.
    pub unseen: bool,
    /// The claim its status records for its own UID ([`recorded_claim`]).
    pub claim: Option<String>,
}

impl Claimant {
    pub fn of(resource: &EcsInstance) -> Self {
        let status = resource.status.as_ref();
        let claim = recorded_claim(status, resource.metadata.uid.as_deref());
        Claimant::from_parts(&resource.metadata, listed(status), unseen(status), claim)
    }

    /// A claimant from its metadata and the facts of its status that count (the watch caches
    /// keep those apart from the status).
    pub fn from_parts(
        metadata: &ObjectMeta,
        listed: bool,
        unseen: bool,
        claim: Option<&str>,
    ) -> Self {
        Claimant {
            name: format!(
                "{}/{}",
                metadata.namespace.as_deref().unwrap_or_default(),
                metadata.name.as_deref().unwrap_or_default()
            ),
            uid: metadata.uid.clone(),
            created: metadata.creation_timestamp.as_ref().map(|t| t.0),
            listed,
            unseen,
            claim: claim.map(str::to_string),
        }
    }

    /// Older first: creation time, then UID, so equal creation times still give one order.
    fn age(&self) -> (Option<Timestamp>, Option<&str>) {
        (self.created, self.uid.as_deref())
    }
}

/// Whether `status` records that the resource's credentials listed the instance.
pub fn listed(status: Option<&EcsInstanceStatus>) -> bool {
    status
        .and_then(|s| s.instance.as_ref())
        .is_some_and(|i| i.status.is_some())
}

/// Whether the controller has not written `status` yet.
pub fn unseen(status: Option<&EcsInstanceStatus>) -> bool {
    status.is_none_or(|s| s.conditions.is_empty())
}

/// The claim `status` records for the resource with `uid` (design.md §3, adoption in batches).
/// A claim recorded for another UID (a status restored onto a new resource) is none.
pub fn recorded_claim<'s>(
    status: Option<&'s EcsInstanceStatus>,
    uid: Option<&str>,
) -> Option<&'s str> {
    let claim = status?.instance.as_ref()?.claim.as_ref()?;
    (Some(claim.uid.as_str()) == uid).then_some(claim.value.as_str())
}

/// The claim `resource`'s status records for its own UID.
fn own_claim(resource: &EcsInstance) -> Option<&str> {
    recorded_claim(resource.status.as_ref(), resource.metadata.uid.as_deref())
}

/// Whether `resource`'s owner tag value is `value`: its UID, or the claim its status records.
fn owns_by(resource: &EcsInstance, value: &str) -> bool {
    Some(value) == resource.metadata.uid.as_deref() || Some(value) == own_claim(resource)
}

/// Who owns a listed instance, by the rule of design.md §3.
#[derive(Debug, Clone, PartialEq)]
enum Ownership {
    /// Tagged for this resource: the tag decides, whatever else names the instance.
    Ours,
    /// Untagged, and no older resource that listed it (or has not been looked at yet) names it:
    /// tag it.
    Untagged,
    /// Another resource of the cluster owns it (`namespace/name`): by its tag, or, untagged,
    /// as the oldest resource that listed it.
    Duplicate(String),
    /// Tagged for a UID that no resource of the cluster has, and this resource's take-over
    /// annotation names that UID: tag it as ours (design.md §3, take-over).
    TakeOver(String),
    /// Tagged for a UID that no resource of the cluster has.
    Another,
}

/// The UID this resource's take-over annotation names, if any.
pub fn take_over_from(resource: &EcsInstance) -> Option<&str> {
    resource
        .annotations()
        .get(TAKE_OVER_ANNOTATION)
        .map(|uid| uid.trim())
        .filter(|uid| !uid.is_empty())
}

fn ownership(input: &Input, instance: &Instance) -> Ownership {
    let own_uid = input.resource.uid();
    match owner_uid(instance) {
        Some(uid) if owns_by(input.resource, uid) => Ownership::Ours,
        Some(uid) => match input
            .claimants
            .iter()
            .find(|c| c.uid.as_deref() == Some(uid) || c.claim.as_deref() == Some(uid))
        {
            Some(owner) => Ownership::Duplicate(owner.name.clone()),
            None if take_over_from(input.resource) == Some(uid)
                && input.take_over_blocker.is_none() =>
            {
                Ownership::TakeOver(uid.to_string())
            }
            None => Ownership::Another,
        },
        None => {
            let own = Claimant::of(input.resource);
            input
                .claimants
                .iter()
                .filter(|c| (c.listed || c.unseen) && c.uid != own_uid && c.age() < own.age())
                .min_by(|a, b| a.age().cmp(&b.age()))
                .map_or(Ownership::Untagged, |owner| {
                    Ownership::Duplicate(owner.name.clone())
                })
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// The status is final: remove the finalizer.
    RemoveFinalizer,
    Requeue(Pace),
}

/// An event to publish; its type (Normal or Warning) is its reason's ([`Reason::event`]).
#[derive(Debug, Clone, PartialEq)]
pub struct EventSpec {
    pub reason: Reason,
    pub action: &'static str,
    pub note: String,
}

impl EventSpec {
    pub fn is_warning(&self) -> bool {
        self.reason.event() == EventKind::Warning
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The complete status to write (written only if it differs from the current one).
    pub status: EcsInstanceStatus,
    pub events: Vec<EventSpec>,
    pub next: Next,
}

impl Decision {
    /// The reason the decision settled on (the `Ready` condition's).
    pub fn reason(&self) -> Option<&str> {
        conditions::find(&self.status.conditions, READY).map(|c| c.reason.as_str())
    }
}

/// The first step of a pass.
// One per pass, never stored: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Write this status if it differs from the stored one (only if the resource is still at
    /// the version the plan was made from), make this call, then [`conclude`] with its result.
    /// The status records this pass's observation, so the evidence of design.md §2 is on record
    /// before anything changes in the cloud, and before `DeleteInstance` also the intent
    /// (`release.requestedAt` without a RequestId, design.md §4): a process that dies before
    /// recording the answer leaves a trace, and its successor neither sends a second
    /// `DeleteInstance` at once nor reports the release as "nothing to release".
    Call(CloudCall, EcsInstanceStatus),
    /// Nothing to call.
    Done(Decision),
}

pub fn is_deleting(resource: &EcsInstance) -> bool {
    resource.metadata.deletion_timestamp.is_some()
}

/// Deleting with a policy that releases nothing: `Orphan`, or `Observe` (a dry run).
fn is_orphaning(input: &Input) -> bool {
    is_deleting(input.resource) && input.policy.policy != DeletionPolicy::Delete
}

fn is_observe_only(input: &Input) -> bool {
    input.policy.policy == DeletionPolicy::Observe
}

/// The UID (or claim) in the instance's owner tag, if any.
fn owner_uid(instance: &Instance) -> Option<&str> {
    instance.tags.get(OWNER_UID_TAG).map(String::as_str)
}

fn is_ours(resource: &EcsInstance, instance: &Instance) -> bool {
    owner_uid(instance).is_some_and(|uid| owns_by(resource, uid))
}

/// Whether `plan` tags an untagged instance with this resource's UID, and a claim shared with
/// other tag calls could take the UID's place (design.md §3, adoption in batches): the shell
/// then asks the cloud client for one and plans again with it.
pub fn could_share_claim(input: &Input, plan: &Plan) -> bool {
    matches!(plan, Plan::Call(CloudCall::Tag(_), _))
        && input.claim.is_none()
        && own_claim(input.resource).is_none()
        && matches!(input.observation, Observation::Present(instance)
            if ownership(input, instance) == Ownership::Untagged)
}

pub fn plan(input: &Input) -> Plan {
    hold_while_own_tag_may_land(input, plan_from_observation(input))
}

/// A resource that sent `TagResources` is not removed without a release until that call has
/// had time to land (`ownership_settle` after it was sent): a late tag would leave the
/// instance tagged for a resource that no longer exists (design.md §3). It looks again
/// meanwhile; once its tag shows, it is the owner.
fn hold_while_own_tag_may_land(input: &Input, plan: Plan) -> Plan {
    let Plan::Done(decision) = &plan else {
        return plan;
    };
    let released = conditions::find(&decision.status.conditions, RELEASED).is_some_and(|c| {
        c.reason == Reason::Released.as_str() || c.reason == Reason::AlreadyGone.as_str()
    });
    let in_flight = decision
        .status
        .instance
        .as_ref()
        .and_then(|i| i.tag_requested_at.as_ref())
        .filter(|at| input.now.duration_since(at.0) < input.ownership_settle);
    let (Next::RemoveFinalizer, false, Some(at)) = (&decision.next, released, in_flight) else {
        return plan;
    };
    let mut draft = Draft::new(input.resource, Some(input), input.now);
    if let Observation::Present(instance) = input.observation {
        draft.observed(instance);
    }
    let what = format!(
        "This resource sent TagResources for instance {} at {}; it may still land, so the resource is removed only once it has had {} to (or its tag shows, and it is the owner)",
        input.resource.spec.instance_id,
        at.0,
        friendly(input.ownership_settle)
    );
    Plan::Done(draft.progress(Reason::ConfirmingOwnership, &what, Pace::Transition))
}

fn plan_from_observation(input: &Input) -> Plan {
    let mut draft = Draft::new(input.resource, Some(input), input.now);
    if is_deleting(input.resource)
        && let PolicyFrom::InvalidNamespace(..) = input.policy.from
    {
        let what = format!("{}; the deletion waits", input.policy);
        return Plan::Done(draft.settle(Reason::InvalidDeletionPolicy, &what, "Release"));
    }
    let orphaning = is_orphaning(input);
    let instance = match input.observation {
        Observation::Present(instance) => instance,
        Observation::Absent if orphaning && draft.release_requested() => {
            return Plan::Done(draft.orphan_released());
        }
        _ if orphaning => return Plan::Done(draft.orphan(None)),
        Observation::CredentialsUnavailable(why) => {
            let what = format!(
                "No usable credentials ({}): {why}",
                input.credentials_source
            );
            return Plan::Done(draft.settle(Reason::CredentialsUnavailable, &what, OBSERVE));
        }
        Observation::Failed(error) => return Plan::Done(draft.failed(error, None)),
        Observation::Absent => return Plan::Done(draft.absent()),
    };
    draft.observed(instance);
    if orphaning {
        // Orphan cannot take back a release already asked for: report what ECS was told, and
        // never untag an instance that is being released.
        if draft.release_requested() {
            return Plan::Done(draft.orphan_after_release(instance));
        }
        if is_observe_only(input) {
            return Plan::Done(draft.observed_only(instance));
        }
        return match untag(input.resource, instance) {
            Some(call) => draft.call(call),
            None => Plan::Done(draft.orphan(None)),
        };
    }
    if draft.release_request_id().is_some() {
        return Plan::Done(draft.releasing(instance));
    }
    if let Some(at) = draft.release_intent()
        && input.now.duration_since(at) < input.resend_after
    {
        return Plan::Done(draft.outcome_pending(instance, at));
    }
    match ownership(input, instance) {
        // Observe changes nothing in the cloud, not even our tags.
        Ownership::Untagged | Ownership::TakeOver(_) if is_observe_only(input) => {
            Plan::Done(draft.ready(instance, None))
        }
        Ownership::Untagged => {
            // A resource that tagged with a claim keeps to it: that call may still land.
            let claim = own_claim(input.resource)
                .or(input.claim)
                .map(str::to_string);
            let uid = input.resource.uid().unwrap_or_default();
            let tags = match &claim {
                // One tag set for the whole batch: no owner name.
                Some(claim) => [(OWNER_UID_TAG.to_string(), claim.clone())].into(),
                None => owner_tags(input.resource),
            };
            draft.record_claim(claim.map(|value| TagClaim { value, uid }));
            draft.call(CloudCall::Tag(TagInstance {
                region_id: input.resource.spec.region_id.clone(),
                instance_id: instance.instance_id.clone(),
                tags,
            }))
        }
        // Explicit and one by one: always the UID.
        Ownership::TakeOver(_) => draft.call(CloudCall::Tag(TagInstance {
            region_id: input.resource.spec.region_id.clone(),
            instance_id: instance.instance_id.clone(),
            tags: owner_tags(input.resource),
        })),
        Ownership::Duplicate(owner) => Plan::Done(draft.duplicate(&owner)),
        Ownership::Another => Plan::Done(draft.owned_by_another(instance)),
        Ownership::Ours if !is_deleting(input.resource) => Plan::Done(draft.ready(instance, None)),
        Ownership::Ours if draft.tag_unsettled(input) => Plan::Done(draft.confirming_ownership()),
        Ownership::Ours => match release_step(input, instance) {
            Step::Wait { reason, what, pace } => Plan::Done(draft.progress(reason, &what, pace)),
            Step::Call(call) => draft.call(call),
        },
    }
}

/// The second step of a pass: what the call's result means.
pub fn conclude(input: &Input, call: &CloudCall, result: &Result<RequestId, EcsError>) -> Decision {
    let mut draft = Draft::new(input.resource, Some(input), input.now);
    if let Observation::Present(instance) = input.observation {
        draft.observed(instance);
    }
    let id = &input.resource.spec.instance_id;
    let request_id = match (call, result) {
        (CloudCall::Untag(_), result) => return draft.orphan(Some(result)),
        (CloudCall::Delete(_), Err(error)) if error.outcome_unknown() => {
            return draft.release_outcome_unknown(error);
        }
        (CloudCall::Delete(_), Err(error)) if error.class() != ErrorClass::NotFound => {
            // A definite refusal: ECS did not release the instance, so no intent is left.
            draft.status.release = None;
            return draft.failed(error, Some(call));
        }
        (_, Err(error)) => return draft.failed(error, Some(call)),
        (_, Ok(request_id)) => &request_id.0,
    };
    match call {
        CloudCall::Tag(_) => {
            let taken_over = match input.observation {
                Observation::Present(instance) => match ownership(input, instance) {
                    Ownership::TakeOver(from) => Some(from),
                    _ => None,
                },
                _ => None,
            };
            let (reason, what) = match &taken_over {
                Some(from) => (
                    Reason::TakenOver,
                    format!(
                        "Instance {id} was tagged for resource UID {from}, which no resource of this cluster has; taken over as the annotation {TAKE_OVER_ANNOTATION} asks, and tagged as owned by this resource (RequestId {request_id})"
                    ),
                ),
                None => (
                    Reason::OwnershipRecorded,
                    format!(
                        "Instance {id} tagged as owned by this resource (RequestId {request_id})"
                    ),
                ),
            };
            if let Some(observed) = draft.status.instance.as_mut() {
                // Accepted: the tag is on the instance, no call of ours is left to land.
                observed.tag_requested_at = None;
                if let Some(from) = taken_over {
                    observed.taken_over_from = Some(from);
                }
            }
            match input.observation {
                Observation::Present(instance) if !is_deleting(input.resource) => {
                    draft.ready(instance, Some((reason, what)))
                }
                _ => draft.settle(reason, &what, call.event_action()),
            }
        }
        CloudCall::Stop(stop) => {
            let how = if stop.force_stop {
                "StopInstance (ForceStop)"
            } else {
                "StopInstance"
            };
            let what = format!(
                "{how} accepted for instance {id} (RequestId {request_id}); waiting for Stopped"
            );
            draft.settle(Reason::StopRequested, &what, call.event_action())
        }
        CloudCall::Delete(delete) => {
            let how = if delete.force {
                "DeleteInstance (Force)"
            } else {
                "DeleteInstance"
            };
            let what = format!(
                "{how} accepted for instance {id} (RequestId {request_id}); waiting for it to disappear"
            );
            draft.status.release = Some(ReleaseRecord {
                request_id: Some(request_id.clone()),
                requested_at: Some(Time(input.now)),
                confirmed_at: None,
            });
            draft.settle(Reason::ReleaseRequested, &what, call.event_action())
        }
        CloudCall::Untag(_) => unreachable!("handled above"),
    }
}

/// `UntagResources` for our tags, when the instance carries them.
fn untag(resource: &EcsInstance, instance: &Instance) -> Option<CloudCall> {
    is_ours(resource, instance).then(|| {
        CloudCall::Untag(UntagInstance {
            region_id: resource.spec.region_id.clone(),
            instance_id: instance.instance_id.clone(),
            keys: vec![OWNER_TAG.to_string(), OWNER_UID_TAG.to_string()],
        })
    })
}

/// The owner tags with this resource's name and UID.
fn owner_tags(resource: &EcsInstance) -> std::collections::BTreeMap<String, String> {
    [
        (OWNER_TAG.to_string(), owner_name(resource)),
        (
            OWNER_UID_TAG.to_string(),
            resource.uid().unwrap_or_default(),
        ),
    ]
    .into()
}

/// `namespace/name`, cut to the 128 characters a tag value may have (the UID tag is what counts).
fn owner_name(resource: &EcsInstance) -> String {
    let name = format!(
        "{}/{}",
        resource.namespace().unwrap_or_default(),
        resource.name_any()
    );
    name.chars().take(128).collect()
}

enum Step {
    Wait {
        reason: Reason,
        what: String,
        pace: Pace,
    },
    Call(CloudCall),
}

/// design.md §11 steps 3–5 for an owned instance that is still listed and not yet released.
fn release_step(input: &Input, instance: &Instance) -> Step {
    let spec = &input.resource.spec;
    let id = &instance.instance_id;
    let delete = |force: bool| {
        Step::Call(CloudCall::Delete(DeleteInstance {
            instance_id: id.clone(),
            force,
            force_stop: None,
            terminate_subscription: spec.on_delete.terminate_subscription,
            dry_run: false,
        }))
    };
    match &instance.status {
        InstanceStatus::Pending | InstanceStatus::Starting => Step::Wait {
            reason: Reason::WaitingForInitialization,
            what: format!(
                "Instance {id} is {}; it can be released once it is created",
                instance.status.as_str()
            ),
            pace: Pace::Transition,
        },
        InstanceStatus::Running | InstanceStatus::Stopping if spec.on_delete.force => delete(true),
        InstanceStatus::Running
            if spec.on_delete.stop != StopPolicy::Wait && !input.stop_recently_requested =>
        {
            Step::Call(CloudCall::Stop(StopInstance {
                instance_id: id.clone(),
                force_stop: spec.on_delete.stop == StopPolicy::ForceStop,
                stopped_mode: spec.on_delete.stopped_mode.map(|mode| match mode {
                    StoppedMode::KeepCharging => ecs_client::StoppedMode::KeepCharging,
                    StoppedMode::StopCharging => ecs_client::StoppedMode::StopCharging,
                }),
                dry_run: false,
            }))
        }
        InstanceStatus::Stopped => delete(spec.on_delete.force),
        status => {
            let stopping = *status == InstanceStatus::Stopping || input.stop_recently_requested;
            let (what, pace) = if stopping {
                (
                    format!(
                        "Instance {id} is {}; waiting for Stopped before DeleteInstance",
                        status.as_str()
                    ),
                    Pace::Transition,
                )
            } else {
                (
                    format!(
                        "Instance {id} is {}; waiting for someone to stop it before DeleteInstance (onDelete.stop is Wait)",
                        status.as_str()
                    ),
                    Pace::Waiting,
                )
            };
            Step::Wait {
                reason: Reason::WaitingForStopped,
                what,
                pace,
            }
        }
    }
}

/// `10m`, `90s`: how long, for a message.
fn friendly(duration: SignedDuration) -> String {
    let seconds = duration.as_secs();
    if seconds >= 60 && seconds % 60 == 0 {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

/// Builds a decision: the current status with this pass's changes.
struct Draft<'a> {
    resource: &'a EcsInstance,
    input: Option<&'a Input<'a>>,
    status: EcsInstanceStatus,
    now: Time,
    generation: Option<i64>,
    deleting: bool,
    extra_events: Vec<EventSpec>,
}

impl<'a> Draft<'a> {
    fn new(resource: &'a EcsInstance, input: Option<&'a Input<'a>>, now: Timestamp) -> Self {
        let generation = resource.metadata.generation;
        let mut status = resource.status.clone().unwrap_or_default();
        status.observed_generation = generation;
        if let Some(remembered) = input.and_then(|i| i.remembered_release)
            && status
                .release
                .as_ref()
                .is_none_or(|r| r.request_id.is_none())
        {
            status.release = Some(remembered.clone());
        }
        Draft {
            resource,
            input,
            status,
            now: Time(now),
            generation,
            deleting: is_deleting(resource),
            extra_events: Vec::new(),
        }
    }

    fn release_request_id(&self) -> Option<String> {
        self.status.release.as_ref()?.request_id.clone()
    }

    /// When a `DeleteInstance` whose answer is not recorded was sent.
    fn release_intent(&self) -> Option<Timestamp> {
        let release = self.status.release.as_ref()?;
        match (&release.request_id, &release.requested_at) {
            (None, Some(at)) => Some(at.0),
            _ => None,
        }
    }

    /// A `DeleteInstance` was accepted or sent with an unknown outcome.
    /// The plan to make `call`, with what must be on record first (see [`Plan::Call`]).
    fn call(mut self, call: CloudCall) -> Plan {
        // The record is what was observed (and the intent), not a verdict: the last error and
        // the conditions stay as they are until the call's outcome is known.
        self.status.last_error = self
            .resource
            .status
            .as_ref()
            .and_then(|s| s.last_error.clone());
        if let (CloudCall::Tag(_), Some(instance)) = (&call, self.status.instance.as_mut()) {
            instance.tag_requested_at = Some(self.now.clone());
        }
        if let CloudCall::Delete(_) = call {
            self.status.release = Some(ReleaseRecord {
                request_id: None,
                requested_at: Some(self.now.clone()),
                confirmed_at: None,
            });
        }
        Plan::Call(call, self.status)
    }

    /// Records the claim the tag call of this plan uses (or none: the UID).
    fn record_claim(&mut self, claim: Option<TagClaim>) {
        if let (Some(claim), Some(instance)) = (claim, self.status.instance.as_mut()) {
            instance.claim = Some(claim);
        }
    }

    fn release_requested(&self) -> bool {
        self.release_request_id().is_some() || self.release_intent().is_some()
    }

    /// What ECS was told of the release, for messages: its RequestId, or when it was sent.
    fn release_told(&self) -> String {
        match (self.release_request_id(), self.release_intent()) {
            (Some(request_id), _) => {
                format!("DeleteInstance was accepted (RequestId {request_id})")
            }
            (None, Some(at)) => {
                format!("DeleteInstance was sent at {at} and its outcome is unknown")
            }
            (None, None) => "DeleteInstance was not sent".to_string(),
        }
    }

    /// What to say of an instance gone after our own `DeleteInstance`, if one was sent.
    fn own_release(&self) -> Option<String> {
        let id = &self.resource.spec.instance_id;
        if let Some(request_id) = self.release_request_id() {
            return Some(format!(
                "Instance {id} was released (DeleteInstance RequestId {request_id})"
            ));
        }
        self.release_intent().map(|at| {
            format!(
                "Instance {id} was released by this resource's DeleteInstance sent at {at} (answer lost: ECS's answer, with its RequestId, never arrived)"
            )
        })
    }

    fn set(&mut self, type_: &str, value: bool, reason: &str, message: &str) {
        conditions::set(
            &mut self.status.conditions,
            type_,
            value,
            reason,
            message,
            self.generation,
            self.now.clone(),
        );
    }

    /// Writes the conditions of `reason` and finishes with its event and pace.
    fn settle(self, reason: Reason, what: &str, action: &'static str) -> Decision {
        let pace = reason.pace();
        self.settle_with(reason, what, action, pace)
    }

    fn settle_with(
        mut self,
        reason: Reason,
        what: &str,
        action: &'static str,
        pace: Pace,
    ) -> Decision {
        let message = reasons::message(reason, what);
        let name = reason.as_str();
        let kind = reason.kind();
        self.set(READY, kind == Kind::Ready, name, &message);
        let (reconciling, stalled) = (kind == Kind::Progress, kind == Kind::Stalled);
        self.set(
            RECONCILING,
            reconciling,
            name,
            if reconciling { &message } else { "" },
        );
        self.set(STALLED, stalled, name, if stalled { &message } else { "" });
        match (kind, reason) {
            (Kind::Final, Reason::Released | Reason::AlreadyGone) => {
                self.set(RELEASED, true, name, &message)
            }
            (Kind::Final, _) => self.set(RELEASED, false, name, &message),
            _ => self.set_release_pending(),
        }
        let mut events = match reason.event() {
            EventKind::None => Vec::new(),
            EventKind::Normal | EventKind::Warning => vec![EventSpec {
                reason,
                action,
                note: message,
            }],
        };
        events.append(&mut self.extra_events);
        let next = if kind == Kind::Final {
            Next::RemoveFinalizer
        } else {
            Next::Requeue(pace)
        };
        Decision {
            status: self.status,
            events,
            next,
        }
    }

    /// The `Released` condition of a resource that is not done.
    fn set_release_pending(&mut self) {
        if let Some(request_id) = self.release_request_id() {
            let message = format!(
                "DeleteInstance accepted (RequestId {request_id}); waiting for the instance to disappear"
            );
            self.set(RELEASED, true, Reason::ReleaseRequested.as_str(), &message);
        } else if self.deleting {
            self.set(
                RELEASED,
                false,
                Reason::Releasing.as_str(),
                "The instance has not been released yet",
            );
        } else {
            self.set(
                RELEASED,
                false,
                Reason::NotDeleting.as_str(),
                "The instance is released when this resource is deleted",
            );
        }
    }

    fn progress(self, reason: Reason, what: &str, pace: Pace) -> Decision {
        self.settle_with(reason, what, OBSERVE, pace)
    }

    fn input(&self) -> &'a Input<'a> {
        self.input.expect("an observation pass has its input")
    }

    /// Who this pass's credentials are, in words.
    fn key(&self) -> String {
        self.input()
            .identity
            .map_or_else(|| "no credentials".to_string(), Identity::to_string)
    }

    /// This pass's identity as the evidence record writes it.
    fn observed_with(&self) -> Option<ObservedWith> {
        self.input().identity.map(|identity| ObservedWith {
            access_key_id: if identity.role_arn.is_some() {
                String::new()
            } else {
                identity.access_key_id.clone()
            },
            role_arn: identity.role_arn.clone(),
            region_id: self.resource.spec.region_id.clone(),
        })
    }

    fn orphan(self, untagged: Option<&Result<RequestId, EcsError>>) -> Decision {
        let id = &self.resource.spec.instance_id;
        let policy = self.input().policy;
        if self.release_requested() {
            // Not observed (no credentials, a failed lookup): the release may have happened.
            let told = self.release_told();
            let what = format!(
                "{policy}, but {told} before that, so instance {id} may be released; the resource is removed without confirming it"
            );
            return self.settle(Reason::Orphaned, &what, "Orphan");
        }
        if policy.policy == DeletionPolicy::Observe {
            let seen = match self.input().observation {
                Observation::Absent => "is not listed".to_string(),
                Observation::Failed(error) => format!("could not be observed ({error})"),
                Observation::CredentialsUnavailable(why) => {
                    format!("could not be observed (no credentials: {why})")
                }
                Observation::Present(_) => "is listed".to_string(),
            };
            let what = format!(
                "{policy}: nothing was changed in the cloud; instance {id} {seen}; the resource is removed"
            );
            return self.settle(Reason::ObservedOnly, &what, "Observe");
        }
        let tags = match (untagged, self.input().observation) {
            (Some(Ok(_)), _) => "; the owner tags were removed".to_string(),
            (Some(Err(error)), _) => format!(
                "; removing the owner tags failed ({error}): remove {OWNER_TAG} and {OWNER_UID_TAG} by hand if they matter"
            ),
            (None, Observation::Present(_) | Observation::Absent) => String::new(),
            (None, Observation::Failed(error)) => format!(
                "; its owner tags could not be checked ({error}): remove {OWNER_TAG} and {OWNER_UID_TAG} by hand if they matter"
            ),
            (None, Observation::CredentialsUnavailable(why)) => {
                format!("; its owner tags could not be checked (no credentials: {why})")
            }
        };
        let what =
            format!("{policy}: instance {id} is left as it is and the resource is removed{tags}");
        self.settle(Reason::Orphaned, &what, "Orphan")
    }

    /// Deleted under `Observe` (a dry run): nothing is changed in the cloud; the event says what
    /// `Delete` would have done now, so a new installation can be checked before it acts.
    fn observed_only(self, instance: &Instance) -> Decision {
        let input = self.input();
        let id = &instance.instance_id;
        let would = match ownership(input, instance) {
            Ownership::Duplicate(owner) => {
                format!("done nothing: {owner} owns the instance")
            }
            Ownership::Another => {
                "done nothing: the instance is tagged for another resource".to_string()
            }
            ownership => {
                let tag = if ownership == Ownership::Ours {
                    ""
                } else {
                    "tagged it as owned by this resource, then "
                };
                let step = match release_step(input, instance) {
                    Step::Call(CloudCall::Stop(stop)) if stop.force_stop => {
                        "stopped it (StopInstance with ForceStop)".to_string()
                    }
                    Step::Call(CloudCall::Stop(_)) => "stopped it (StopInstance)".to_string(),
                    Step::Call(CloudCall::Delete(delete)) if delete.force => {
                        "released it (DeleteInstance with Force)".to_string()
                    }
                    Step::Call(_) => "released it (DeleteInstance)".to_string(),
                    Step::Wait { what, .. } => format!("waited: {what}"),
                };
                format!("{tag}{step}")
            }
        };
        let what = format!(
            "{}: nothing was changed in the cloud; instance {id} is {}; with deletionPolicy Delete the controller would have {would}; the resource is removed",
            input.policy,
            instance.status.as_str()
        );
        self.settle(Reason::ObservedOnly, &what, "Observe")
    }

    /// `deletionPolicy: Orphan` came after a release was asked for, and the instance is no
    /// longer listed: released by this resource, when the evidence says so.
    fn orphan_released(self) -> Decision {
        if self.release_request_id().is_none() && self.seen_by_others() {
            return self.orphan(None);
        }
        let what = self.own_release().unwrap_or_default();
        self.confirm_release(Reason::Released, &what)
    }

    /// The instance was last listed with other credentials or region than this pass's (or by
    /// whom is not recorded): "not listed" now is no evidence of anything.
    fn seen_by_others(&self) -> bool {
        let current = self.observed_with();
        match self.status.instance.as_ref().map(|i| &i.observed_with) {
            None => false,
            Some(Some(with)) => Some(with) != current.as_ref(),
            // Observed before this record existed: who saw it is unknown.
            Some(None) => true,
        }
    }

    /// `deletionPolicy: Orphan` came after a release was asked for and the instance is still
    /// listed: wait for the release to show as long as a release would take, then remove the
    /// resource saying what ECS was told (an unknown outcome that never showed was no release;
    /// an accepted one may still happen).
    fn orphan_after_release(self, instance: &Instance) -> Decision {
        let input = self.input();
        let id = &instance.instance_id;
        let told = self.release_told();
        let (since, window) = match (&self.status.release, self.release_request_id()) {
            (Some(release), Some(_)) => (
                release.requested_at.as_ref().map(|t| t.0),
                input.release_timeout,
            ),
            (release, _) => (
                release
                    .as_ref()
                    .and_then(|r| r.requested_at.as_ref())
                    .map(|t| t.0),
                input.resend_after,
            ),
        };
        if since.is_some_and(|at| input.now.duration_since(at) < window) {
            let what = format!(
                "deletionPolicy is Orphan, but {told} before that: waiting for instance {id} to disappear"
            );
            return self.progress(Reason::WaitingForRelease, &what, Pace::Transition);
        }
        let status = instance.status.as_str();
        let what = if self.release_request_id().is_some() {
            // ECS accepted it: the instance may still go, whatever this resource does now.
            format!(
                "deletionPolicy is Orphan; {told} before that, and instance {id} is still listed as {status} after {}: ECS may still release it; the resource is removed without confirming the release (the owner tags stay)",
                friendly(window)
            )
        } else {
            // Not released within the resend window: the unknown outcome was no release.
            format!(
                "deletionPolicy is Orphan; {told} before that, but instance {id} is still listed as {status} after {}, so it was not released: it is left as it is (its owner tags too) and the resource is removed",
                friendly(window)
            )
        };
        self.settle(Reason::Orphaned, &what, "Orphan")
    }

    /// `DescribeInstances` answered and does not list the instance.
    fn absent(mut self) -> Decision {
        let spec = &self.resource.spec;
        let id = &spec.instance_id;
        let region = &spec.region_id;
        let key = self.key();
        let source = self.input().credentials_source;
        let previous = self
            .status
            .instance
            .as_ref()
            .map(|i| i.observed_with.clone());
        // Keep who saw it last: that is the evidence a later deletion needs.
        if let Some(previous) = &previous {
            self.status.instance = Some(ObservedInstance {
                observed_with: previous.clone(),
                ..Default::default()
            });
        }
        self.status.last_error = None;
        if self.deleting
            && self.release_request_id().is_some()
            && let Some(what) = self.own_release()
        {
            return self.confirm_release(Reason::Released, &what);
        }
        if self.seen_by_others() {
            let last = match previous.flatten() {
                Some(with) => with.describe(),
                None => "credentials that were not recorded".to_string(),
            };
            let kept = if self.deleting {
                "nothing was released and the finalizer stays"
            } else {
                "nothing is known about it"
            };
            let what = format!(
                "Instance {id} was last seen with {last}, but DescribeInstances with {key} ({source}) in region {region} does not list it; {kept}"
            );
            return self.settle(Reason::InstanceNoLongerVisible, &what, OBSERVE);
        }
        match (self.deleting, previous.is_some()) {
            (true, true) if self.release_intent().is_some() => {
                let what = self.own_release().unwrap_or_default();
                self.confirm_release(Reason::Released, &what)
            }
            (true, true) => {
                let what = format!(
                    "Instance {id} is no longer listed for {key} in region {region}, which listed it before: it no longer exists; nothing to release"
                );
                self.confirm_release(Reason::AlreadyGone, &what)
            }
            (true, false) => {
                let what = format!(
                    "Nothing was released: instance {id} was never listed for this resource ({key}, {source}, region {region}), so it never managed it"
                );
                self.settle(Reason::NeverObserved, &what, "Release")
            }
            (false, _) => {
                let what = format!(
                    "Instance {id} is not listed by DescribeInstances in region {region} for {key} ({source})"
                );
                self.settle(Reason::InstanceNotFound, &what, OBSERVE)
            }
        }
    }

    fn confirm_release(mut self, reason: Reason, what: &str) -> Decision {
        let release = self
            .status
            .release
            .get_or_insert_with(ReleaseRecord::default);
        release.confirmed_at = Some(self.now.clone());
        self.status.last_error = None;
        self.settle(reason, what, "Release")
    }

    fn observed(&mut self, instance: &Instance) {
        let input = self.input();
        let ours = is_ours(self.resource, instance);
        let mut observed = ObservedInstance {
            status: Some(instance.status.as_str().to_string()),
            charge_type: Some(instance.charge_type.clone()).filter(|c| !c.is_empty()),
            deletion_protection: Some(instance.deletion_protection),
            lock_reasons: instance.lock_reasons.clone(),
            zone_id: Some(instance.zone_id.clone()).filter(|z| !z.is_empty()),
            observed_at: Some(self.now.clone()),
            owned_since: ours.then(|| {
                self.status
                    .instance
                    .as_ref()
                    .and_then(|previous| previous.owned_since.clone())
                    .unwrap_or_else(|| self.now.clone())
            }),
            // Kept once set: it only counts while the tag is younger than `ownership_settle`.
            contested: !input.claimants.is_empty()
                || self.status.instance.as_ref().is_some_and(|i| i.contested),
            tag_requested_at: if ours {
                None
            } else {
                self.status
                    .instance
                    .as_ref()
                    .and_then(|i| i.tag_requested_at.clone())
            },
            claim: self
                .status
                .instance
                .as_ref()
                .and_then(|i| i.claim.clone())
                .filter(|c| Some(c.uid.as_str()) == self.resource.metadata.uid.as_deref()),
            taken_over_from: ours
                .then(|| {
                    self.status
                        .instance
                        .as_ref()
                        .and_then(|previous| previous.taken_over_from.clone())
                })
                .flatten(),
            observed_with: self.observed_with(),
        };
        if let Some(previous) = &self.status.instance {
            let unchanged = ObservedInstance {
                observed_at: previous.observed_at.clone(),
                ..observed.clone()
            } == *previous;
            let fresh = previous
                .observed_at
                .as_ref()
                .is_some_and(|at| input.now.duration_since(at.0) < input.observed_at_refresh);
            if unchanged && fresh {
                observed.observed_at = previous.observed_at.clone();
            }
        }
        self.status.instance = Some(observed);
        // A successful DescribeInstances is a successful call.
        self.status.last_error = None;
    }

    fn ready(mut self, instance: &Instance, tagged: Option<(Reason, String)>) -> Decision {
        let observe_only = match self.input {
            Some(input) if is_observe_only(input) => format!(
                " ({}: nothing is changed in the cloud, not even tags)",
                input.policy
            ),
            _ => String::new(),
        };
        let what = format!(
            "Instance {} is {}{observe_only}",
            instance.instance_id,
            instance.status.as_str()
        );
        let pace = match instance.status {
            InstanceStatus::Running | InstanceStatus::Stopped => Pace::Steady,
            _ => Pace::Transition,
        };
        if let Some((reason, note)) = tagged {
            self.extra_events.push(EventSpec {
                reason,
                action: "Tag",
                note,
            });
        }
        self.settle_with(Reason::InstanceObserved, &what, OBSERVE, pace)
    }

    /// Other resources named the instance (now or since this resource claimed it) and our owner
    /// tag has not held for `ownership_settle` yet: a tag call of theirs decided on an older
    /// observation could still land and replace it, even after they are gone (design.md §3).
    fn tag_unsettled(&self, input: &Input) -> bool {
        self.status.instance.as_ref().is_some_and(|i| i.contested)
            && self
                .status
                .instance
                .as_ref()
                .and_then(|i| i.owned_since.as_ref())
                .is_none_or(|since| input.now.duration_since(since.0) < input.ownership_settle)
    }

    fn confirming_ownership(self) -> Decision {
        let input = self.input();
        let others: Vec<&str> = input.claimants.iter().map(|c| c.name.as_str()).collect();
        let who = if others.is_empty() {
            "other resources named it too (gone now, but a tag call of theirs may still land)"
                .to_string()
        } else {
            format!("{} name it too", others.join(", "))
        };
        let what = format!(
            "Instance {} carries this resource's owner tag, and {who}: the release waits until the tag has held for {}",
            self.resource.spec.instance_id,
            friendly(input.ownership_settle)
        );
        self.progress(Reason::ConfirmingOwnership, &what, Pace::Transition)
    }

    /// Another resource of the cluster owns the instance (`owner`): this one never acts on it,
    /// and its deletion makes no call that changes anything.
    fn duplicate(self, owner: &str) -> Decision {
        let spec = &self.resource.spec;
        if self.deleting {
            let what = format!(
                "Instance {} in {} was not released: EcsInstance {owner} names it and owns it; this duplicate was removed without any call that changes it",
                spec.instance_id, spec.region_id
            );
            return self.settle(Reason::DuplicateRemoved, &what, OBSERVE);
        }
        let what = format!(
            "EcsInstance {owner} names the same instance {} in {} and owns it; this resource never acts on it",
            spec.instance_id, spec.region_id
        );
        self.settle(Reason::DuplicateInstance, &what, OBSERVE)
    }

    /// A `DeleteInstance` of ours whose outcome is unknown, and the instance still listed within
    /// the resend window: it may be a release that has not shown yet, so nothing is sent.
    fn outcome_pending(self, instance: &Instance, sent_at: Timestamp) -> Decision {
        let input = self.input();
        let what = format!(
            "DeleteInstance for instance {} was sent at {sent_at} and its outcome is unknown; the instance is listed as {}: waiting for the release to show (asked again only if it is still listed after {})",
            instance.instance_id,
            instance.status.as_str(),
            friendly(input.resend_after)
        );
        // Looked at once already (the pass after the call): a release that landed shows within
        // seconds, so until the window ends only a slow look is worth a call.
        let left = input.resend_after - input.now.duration_since(sent_at);
        let pace = Pace::Until(left.unsigned_abs());
        self.progress(Reason::ReleaseOutcomeUnknown, &what, pace)
    }

    /// Our `DeleteInstance` failed in a way that does not say whether ECS processed it: the
    /// intent stays, and the next pass observes before anything else is sent.
    fn release_outcome_unknown(mut self, error: &EcsError) -> Decision {
        let input = self.input();
        let sent_at = input.intent_at.unwrap_or(input.now);
        self.status.release = Some(ReleaseRecord {
            request_id: None,
            requested_at: Some(Time(sent_at)),
            confirmed_at: None,
        });
        self.status.last_error = Some(last_error(error, &self.now));
        let what = format!(
            "DeleteInstance for instance {} was sent, but its outcome is unknown ({error}); observing before anything else is sent",
            self.resource.spec.instance_id
        );
        self.settle(Reason::ReleaseOutcomeUnknown, &what, "Release")
    }

    fn owned_by_another(self, instance: &Instance) -> Decision {
        let owner = instance
            .tags
            .get(OWNER_TAG)
            .map(|name| format!(" ({name})"))
            .unwrap_or_default();
        let uid = owner_uid(instance).unwrap_or_default();
        let input = self.input();
        let take_over = match (take_over_from(self.resource), input.take_over_blocker) {
            (Some(from), Some(blocker)) if from == uid => format!(
                "; the take-over the annotation {TAKE_OVER_ANNOTATION} asks for is refused while {blocker}, which has UID {uid}, exists in this cluster"
            ),
            (Some(from), _) if from != uid => format!(
                "; the annotation {TAKE_OVER_ANNOTATION} names UID {from}, not {uid}: nothing is taken over"
            ),
            _ => format!(
                "; if this resource replaces that one (a restore, a cluster move) and it exists nowhere any more, annotate this resource {TAKE_OVER_ANNOTATION}={uid} to take the instance over"
            ),
        };
        let what = format!(
            "Instance {} is tagged {OWNER_UID_TAG}={uid}{owner}, another EcsInstance; this resource never adopts or releases it{take_over}",
            instance.instance_id,
        );
        let action = if self.deleting { "Release" } else { OBSERVE };
        self.settle(Reason::OwnedByAnotherResource, &what, action)
    }

    /// A release was accepted and the instance is still listed.
    fn releasing(self, instance: &Instance) -> Decision {
        let input = self.input();
        let id = &instance.instance_id;
        let request_id = self.release_request_id().unwrap_or_default();
        let requested_at = self
            .status
            .release
            .as_ref()
            .and_then(|r| r.requested_at.clone());
        if requested_at.is_some_and(|at| input.now.duration_since(at.0) > input.release_timeout) {
            // ECS accepted the release but still lists the instance: polling fast forever would
            // hide that, and asking again could release nothing new. A person should look.
            let what = format!(
                "DeleteInstance was accepted (RequestId {request_id}) over {} ago, but instance {id} is still listed as {}",
                friendly(input.release_timeout),
                instance.status.as_str()
            );
            return self.settle(Reason::ReleaseNotConfirmed, &what, "Release");
        }
        let what = format!(
            "DeleteInstance accepted (RequestId {request_id}); waiting for instance {id} to disappear"
        );
        self.progress(Reason::WaitingForRelease, &what, Pace::Transition)
    }

    /// design.md §11 step 6: what an ECS error means. `call` is this resource's own call, `None` for
    /// the (possibly batched) observation.
    fn failed(mut self, error: &EcsError, call: Option<&CloudCall>) -> Decision {
        let own_release_call = matches!(call, Some(CloudCall::Stop(_) | CloudCall::Delete(_)));
        if error.class() == ErrorClass::NotFound && own_release_call && self.deleting {
            let id = &self.resource.spec.instance_id;
            let (reason, what) = match self.own_release() {
                Some(what) => (Reason::Released, what),
                None => (
                    Reason::AlreadyGone,
                    format!(
                        "ECS answered this resource's own call: {error}; instance {id} no longer exists, nothing to release"
                    ),
                ),
            };
            return self.confirm_release(reason, &what);
        }
        let reason = match error.class() {
            ErrorClass::Throttled => Reason::Throttled,
            ErrorClass::Transient => Reason::Retrying,
            ErrorClass::CredentialsRejected => Reason::CredentialsRejected,
            ErrorClass::Terminal => error
                .code()
                .and_then(Reason::of_code)
                .unwrap_or(Reason::RequestRefused),
            ErrorClass::StateConflict => error
                .code()
                .and_then(Reason::of_code)
                .unwrap_or(Reason::UnexpectedError),
            // A NotFound that is not the answer to our own Stop/Delete (a batched lookup, a
            // tagging call) is never evidence that the instance is gone.
            ErrorClass::NotFound | ErrorClass::Unknown => Reason::UnexpectedError,
        };
        let what = if reason == Reason::CredentialsRejected {
            format!(
                "{error} (credentials: {}, {})",
                self.input().credentials_source,
                self.key()
            )
        } else {
            error.to_string()
        };
        self.status.last_error = Some(last_error(error, &self.now));
        let action = call.map_or(OBSERVE, CloudCall::event_action);
        self.settle(reason, &what, action)
    }
}

fn last_error(error: &EcsError, at: &Time) -> LastError {
    LastError {
        action: error.action().to_string(),
        code: error.code().map(str::to_string),
        message: error.message().to_string(),
        request_id: error.request_id().map(str::to_string),
        http_status: error.http_status().map(i32::from),
        at: at.clone(),
    }
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
