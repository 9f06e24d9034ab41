//! One pass over one resource: observe, plan, make the one cloud call the plan asks for,
//! conclude, write the status if it changed, publish events, add or remove the finalizer. Generic
//! over the [seams](super::seams), so production and the deterministic simulation run this code.
//!
//! The finalizer is managed here rather than by kube-runtime's `finalizer` helper, which removes
//! it on any `Ok` from cleanup (kube-rs/kube#1994): a release in progress is simply a requeue.

use std::{sync::Arc, time::Duration};

use ecs_client::{Credentials, CredentialsProvider, EcsError, RequestId};
use jiff::SignedDuration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{ResourceExt, runtime::reflector::ObjectRef};
use tracing::{Instrument, debug, info, warn};

use super::credentials::{self, CredentialsPolicy, SecretCache};
use super::objects::Objects;
use super::seams::{Clock, Cloud, Cluster, Error};
use crate::{
    conditions,
    decision::{self, Claimant, CloudCall, Decision, Input, Next, Observation, Plan, Policy},
    metrics::Metrics,
    pacing::{self, Timings},
    resource::{DeletionPolicy, EcsInstance, EcsInstanceStatus, FINALIZER, ReleaseRecord},
};

/// What a pass knows of the other resources (from the watch caches, or the simulation's world).
#[derive(Debug, Clone, Default)]
pub struct View {
    /// The other resources that name the same region and instance.
    pub claimants: Vec<Claimant>,
    /// Another resource holding our finalizer names the same credentials Secret.
    pub secret_needed_elsewhere: bool,
    /// The resource (`namespace/name`) with the UID this resource's take-over annotation names.
    pub take_over_blocker: Option<String>,
    /// The resource's Namespace's deletion policy annotation, when it has one: its name and the
    /// policy (or the value that is none).
    pub namespace_policy: Option<(String, Result<DeletionPolicy, String>)>,
}

/// A pass's decision, with the status written on the way (before a call), if any, and the
/// resourceVersion the pass last read or wrote.
struct Decided {
    decision: Decision,
    stored: Option<EcsInstanceStatus>,
    version: Option<String>,
}

/// When to look at the resource again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Requeue(Duration),
    /// Only when it changes (the change that follows a finalizer patch wakes the controller).
    AwaitChange,
}

/// Everything a pass uses; one per process.
pub struct Shell<C, K> {
    pub cloud: C,
    pub cluster: K,
    pub clock: Arc<dyn Clock>,
    pub timings: Timings,
    pub policy: CredentialsPolicy,
    /// The controller's own credentials, for resources without a Secret.
    pub own_credentials: Option<CredentialsProvider>,
    /// The deletion policy of resources that set none and whose Namespace sets none
    /// (`--default-deletion-policy`).
    pub default_policy: DeletionPolicy,
    pub metrics: Arc<Metrics>,
    pub objects: Objects,
    pub secrets: SecretCache,
}

impl<C: Cloud, K: Cluster> Shell<C, K> {
    pub fn new(cloud: C, cluster: K, clock: Arc<dyn Clock>, timings: Timings) -> Self {
        Shell {
            cloud,
            cluster,
            clock,
            timings,
            policy: CredentialsPolicy::default(),
            own_credentials: None,
            default_policy: DeletionPolicy::Delete,
            metrics: Arc::default(),
            objects: Objects::default(),
            secrets: SecretCache::default(),
        }
    }

    /// Adds the finalizer to a new resource, forgets one that is gone, or makes a pass.
    pub async fn reconcile(&self, resource: &EcsInstance, view: &View) -> Result<Outcome, Error> {
        // Every log line of the pass carries the object and, once decided, the reason.
        let span = tracing::info_span!(
            "reconcile",
            resource = %ObjectRef::from_obj(resource),
            generation = resource.metadata.generation.unwrap_or_default(),
            reason = tracing::field::Empty,
        );
        self.reconcile_in_span(resource, view)
            .instrument(span)
            .await
    }

    async fn reconcile_in_span(
        &self,
        resource: &EcsInstance,
        view: &View,
    ) -> Result<Outcome, Error> {
        let has_finalizer = resource.finalizers().iter().any(|f| f == FINALIZER);
        match (decision::is_deleting(resource), has_finalizer) {
            (false, false) => {
                self.cluster.add_finalizer(resource).await?;
                Ok(Outcome::AwaitChange)
            }
            (true, false) => {
                self.forget(&ObjectRef::from_obj(resource));
                Ok(Outcome::AwaitChange)
            }
            (_, true) => self.pass(resource, view).await,
        }
    }

    async fn pass(&self, resource: &EcsInstance, view: &View) -> Result<Outcome, Error> {
        let object = ObjectRef::from_obj(resource);
        let Decided {
            decision,
            stored,
            mut version,
        } = self.decide(resource, view).await?;
        let stored = stored.as_ref().or(resource.status.as_ref());
        let unchanged = stored == Some(&decision.status)
            || vanishes_with_recorded_release(resource, stored, &decision.next);
        if !unchanged {
            // Only onto the version this pass read or wrote: a status computed from an older
            // read would erase what was written since (the evidence, a release), design.md §5.
            version = self
                .cluster
                .write_status(resource, &decision.status, version.as_deref())
                .await?;
        }
        let changed = !unchanged;
        for event in &decision.events {
            if event.is_warning() {
                warn!(resource = %object, reason = event.reason.as_str(), "{}", event.note);
            } else {
                info!(resource = %object, reason = event.reason.as_str(), "{}", event.note);
            }
            self.cluster.publish(resource, event).await;
        }
        self.metrics.reconciled();
        for event in decision.events.iter().filter(|e| e.is_warning()) {
            self.metrics.reconcile_failed(event.reason.as_str());
        }
        let deleting = decision::is_deleting(resource);
        let reason = decision.reason().unwrap_or_default();
        tracing::Span::current().record("reason", reason);
        match decision.next {
            Next::RemoveFinalizer => {
                // Only from the version this pass read or wrote: a change in between (a user's
                // edit, another process) means plan again.
                self.cluster
                    .remove_finalizer(resource, version.as_deref())
                    .await?;
                if let Some(since) = &resource.metadata.deletion_timestamp {
                    let elapsed = self.clock.now().duration_since(since.0);
                    self.metrics
                        .released(&object, elapsed.try_into().unwrap_or_default());
                }
                self.forget(&object);
                info!(resource = %object, reason, "finalizer removed");
                if let Some(reference) = &resource.spec.credentials_ref {
                    let namespace = resource.namespace().unwrap_or_default();
                    // One try; the resource's deletion event retries until it is done.
                    let _ = self
                        .release_secret(&namespace, &reference.name, view.secret_needed_elsewhere)
                        .await;
                }
                Ok(Outcome::AwaitChange)
            }
            Next::Requeue(pace) => {
                let unit = self.clock.unit();
                let since_epoch =
                    Duration::from_millis(self.clock.now().as_millisecond().max(0) as u64);
                let delay = self.objects.update(resource, |state| {
                    pacing::delay(&self.timings, pace, &mut state.failures, unit, since_epoch)
                });
                let stalled = conditions::is_true(&decision.status.conditions, conditions::STALLED);
                self.metrics
                    .deletion_state(&object, deleting, stalled.then_some(reason));
                if changed && deleting {
                    info!(resource = %object, reason, next_check = ?delay, "deletion in progress");
                } else {
                    debug!(resource = %object, reason, next_check = ?delay, "pass done");
                }
                Ok(Outcome::Requeue(delay))
            }
        }
    }

    /// Observe, plan, make the one call the plan asks for, conclude.
    async fn decide(&self, resource: &EcsInstance, view: &View) -> Result<Decided, Error> {
        let source = credentials::source(resource);
        let resolved = credentials::resolve(
            &self.cluster,
            &self.secrets,
            &self.policy,
            self.own_credentials.as_ref(),
            resource,
        )
        .await;
        // The snapshot this pass signs with; replaced once if ECS says it expired.
        let mut signing = resolved.as_ref().ok().map(|r| r.credentials.clone());
        let observation = match (&resolved, &mut signing) {
            (Err(why), _) => Observation::CredentialsUnavailable(why.to_string()),
            (Ok(resolved), Some(signing)) => {
                if let Some((namespace, name)) = &resolved.protect {
                    self.protect_secret(namespace, name).await;
                }
                let spec = &resource.spec;
                let observe = |credentials: Credentials| async move {
                    self.cloud
                        .observe(&spec.region_id, &credentials, &spec.instance_id)
                        .await
                };
                let mut result = observe(signing.clone()).await;
                if let Err(error) = &result
                    && let Some(fresh) = renewed(resolved, signing, error).await
                {
                    result = observe(fresh).await;
                }
                match result {
                    Ok(Some(instance)) => Observation::Present(instance),
                    Ok(None) => Observation::Absent,
                    Err(error) => Observation::Failed(error),
                }
            }
            (Ok(_), None) => unreachable!("resolved credentials have a snapshot"),
        };
        let state = self.objects.get(resource);
        let now = self.clock.now();
        let stop_recently_requested = state
            .stop_requested_at
            .is_some_and(|at| now.duration_since(at) < signed(self.timings.stop_grace));
        // The resource as this pass puts it on record before its call: what the call concludes
        // from (declared here to outlive `input`).
        let recorded: EcsInstance;
        let policy = Policy::of(
            resource,
            view.namespace_policy
                .as_ref()
                .map(|(name, policy)| (name.as_str(), policy)),
            self.default_policy,
        );
        let mut input = Input {
            resource,
            policy: &policy,
            observation: &observation,
            credentials_source: &source,
            identity: resolved.as_ref().ok().map(|r| &r.identity),
            stop_recently_requested,
            remembered_release: state.accepted_release.as_ref(),
            now,
            observed_at_refresh: signed(self.timings.steady),
            release_timeout: signed(self.timings.release_timeout),
            resend_after: signed(self.timings.release_resend),
            ownership_settle: signed(self.timings.ownership_settle),
            claimants: &view.claimants,
            take_over_blocker: view.take_over_blocker.as_deref(),
            intent_at: None,
            claim: None,
        };
        let version = resource.resource_version();
        let mut plan = decision::plan(&input);
        let claim = match &observation {
            Observation::Present(instance) if decision::could_share_claim(&input, &plan) => {
                self.cloud.tag_claim(&instance.instance_id)
            }
            _ => None,
        };
        if claim.is_some() {
            input.claim = claim.as_deref();
            plan = decision::plan(&input);
        }
        let (call, record) = match plan {
            Plan::Done(decision) => {
                return Ok(Decided {
                    decision,
                    stored: None,
                    version,
                });
            }
            Plan::Call(call, record) => (call, record),
        };
        let (Ok(resolved), Some(signing)) = (&resolved, &mut signing) else {
            unreachable!("a call is planned only after an observation with credentials")
        };
        let region = &resource.spec.region_id;
        // The release's turn first, then its intent, then the call at once (design.md §4).
        // Without a turn (no endpoint for the region) the call fails the same way.
        let turn = match &call {
            CloudCall::Delete(_) => self.cloud.take_release_turn(region, signing).await.ok(),
            _ => None,
        };
        // What the plan saw, and before DeleteInstance the intent, on record before the call,
        // and only if the resource is still as this plan saw it: a change in between (Orphan, a
        // new spec, another process's write) makes the write fail with a conflict, nothing is
        // sent, and the next pass plans from the change (design.md §4, §5).
        let (stored, version) = if resource.status.as_ref() == Some(&record) {
            (None, version)
        } else {
            let written = self
                .cluster
                .write_status(resource, &record, version.as_deref())
                .await?;
            (Some(record), written)
        };
        // The conclusion starts from the record (the tag request and its claim, the release
        // intent), not from the status read before it: a tag call whose outcome is unknown
        // keeps its `tagRequestedAt` (design.md §3).
        if let Some(record) = &stored {
            recorded = EcsInstance {
                status: Some(record.clone()),
                ..resource.clone()
            };
            input.resource = &recorded;
        }
        if let CloudCall::Delete(_) = call {
            input.intent_at = stored
                .as_ref()
                .or(resource.status.as_ref())
                .and_then(|s| s.release.as_ref()?.requested_at.as_ref())
                .map(|at| at.0);
        }
        info!(resource = %ObjectRef::from_obj(resource), action = call.action(), "calling ECS");
        let mut result = self.cloud.call(region, signing, &call, turn).await;
        // Refused as expired is a definite refusal: nothing happened, so one more try with
        // renewed credentials cannot make a second release.
        if let Err(error) = &result
            && let Some(fresh) = renewed(resolved, signing, error).await
        {
            result = self.cloud.call(region, &fresh, &call, None).await;
        }
        self.remember(resource, &call, &result);
        input.now = self.clock.now();
        Ok(Decided {
            decision: decision::conclude(&input, &call, &result),
            stored,
            version,
        })
    }

    fn remember(
        &self,
        resource: &EcsInstance,
        call: &CloudCall,
        result: &Result<RequestId, EcsError>,
    ) {
        let Ok(request_id) = result else { return };
        let now = self.clock.now();
        self.objects.update(resource, |state| match call {
            CloudCall::Stop(_) => state.stop_requested_at = Some(now),
            CloudCall::Delete(_) => {
                state.accepted_release = Some(ReleaseRecord {
                    request_id: Some(request_id.0.clone()),
                    requested_at: Some(Time(now)),
                    confirmed_at: None,
                })
            }
            CloudCall::Tag(_) | CloudCall::Untag(_) => {}
        });
    }

    async fn protect_secret(&self, namespace: &str, name: &str) {
        if let Err(error) = self.cluster.protect_secret(namespace, name, true).await {
            warn!(%error, secret = %format!("{namespace}/{name}"), "could not add the in-use finalizer to the credentials Secret");
        }
    }

    /// Removes the in-use finalizer of a Secret that no resource holding our finalizer names
    /// (one try; a failure is logged and returned).
    pub async fn release_secret(
        &self,
        namespace: &str,
        name: &str,
        needed: bool,
    ) -> Result<(), Error> {
        if needed {
            return Ok(());
        }
        let secret = format!("{namespace}/{name}");
        match self.cluster.protect_secret(namespace, name, false).await {
            Ok(()) => {
                debug!(%secret, "credentials Secret no longer in use");
                Ok(())
            }
            Err(error) => {
                warn!(%error, %secret, "could not remove the in-use finalizer of the credentials Secret; retrying");
                Err(error)
            }
        }
    }

    /// [`Self::release_secret`] until it is done, asking `needed` again before each try: nothing
    /// else would look at the Secret again after a failed try (design.md §6). Gives up after
    /// [`SECRET_TRIES`] (about a minute; a refusal that lasts, such as RBAC without `patch` on
    /// Secrets, is logged each time); the Secret's next change tries again.
    pub async fn release_secret_until_done(
        &self,
        namespace: &str,
        name: &str,
        needed: impl Fn() -> bool,
    ) {
        let mut delay = SECRET_RETRY_FIRST;
        for _ in 1..SECRET_TRIES {
            if self.release_secret(namespace, name, needed()).await.is_ok() {
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(KUBE_RETRY_CAP);
        }
        let _ = self.release_secret(namespace, name, needed()).await;
    }

    /// Drops everything this process keeps about a resource.
    pub fn forget(&self, object: &ObjectRef<EcsInstance>) {
        self.objects.remove(object);
        self.cluster.forget(object);
        self.metrics.forget(object);
    }

    /// The wait after a failed Kubernetes API call: exponential per resource, from a fraction
    /// of a second after a conflict (not a failure: the next pass plans from the new version)
    /// or the backoff base otherwise, capped low. Kubernetes API failures come and go with the
    /// API server (a restart, an outage): never the long cloud backoff cap, which would hold
    /// deletions long after it.
    pub fn retry_delay(
        &self,
        resource: &impl kube::Resource<DynamicType = ()>,
        error: &Error,
    ) -> Duration {
        let base = match error {
            Error::Conflict(_) => CONFLICT_RETRY,
            _ => self.timings.backoff_base,
        };
        let unit = self.clock.unit();
        let failures = self.objects.update(resource, |state| {
            state.failures = state.failures.saturating_add(1);
            state.failures
        });
        pacing::exponential_with_jitter(base, failures, KUBE_RETRY_CAP, unit)
    }
}

/// Tries to release a Secret after a resource naming it went.
const SECRET_TRIES: u32 = 10;
/// The first wait before another try to release a Secret.
const SECRET_RETRY_FIRST: Duration = Duration::from_millis(500);
/// The longest wait after a failed Kubernetes API call.
const KUBE_RETRY_CAP: Duration = Duration::from_secs(10);
/// The first wait after a conflict: the change that caused it also wakes the controller.
const CONFLICT_RETRY: Duration = Duration::from_millis(200);

/// Whether the object goes away with the finalizer about to be removed (ours is the last one)
/// while its status already records the accepted release with its RequestId: a final status
/// written now would never be read (the final event says the same), so it is one Kubernetes
/// write per release saved. With other finalizers the object stays, so its status must say that
/// the release is confirmed.
fn vanishes_with_recorded_release(
    resource: &EcsInstance,
    stored: Option<&EcsInstanceStatus>,
    next: &Next,
) -> bool {
    *next == Next::RemoveFinalizer
        && resource.finalizers() == [FINALIZER]
        && stored
            .and_then(|status| status.release.as_ref())
            .is_some_and(|release| release.request_id.is_some())
}

fn signed(duration: Duration) -> SignedDuration {
    SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX)
}

/// ECS refused `signing` as an expired security token (it expired between the provider's check
/// and ECS's): renew once — one renewal for every pass holding the same snapshot, never a storm —
/// and return the fresh snapshot to try once more with (design.md §3).
async fn renewed(
    resolved: &credentials::Resolved,
    signing: &mut Credentials,
    error: &EcsError,
) -> Option<Credentials> {
    if !error.is_expired_security_token() {
        return None;
    }
    match resolved.provider.renew(signing).await {
        Ok(fresh) if fresh != *signing => {
            *signing = fresh.clone();
            Some(fresh)
        }
        Ok(_) => None,
        Err(error) => {
            warn!(%error, "renewing credentials that ECS found expired");
            None
        }
    }
}
