//! The narrow interfaces a pass knows the world through, in the spirit of crossplane's
//! `ExternalClient`: the cloud (observe, and the calls a plan asks for), the Kubernetes API (the
//! writes of a pass, Secrets, events) and the clock. Production implements them with
//! [`EcsClient`] and kube's client ([`super::kube_api`]); the deterministic simulation
//! (`tests/simulation`) with in-memory worlds, so the same pass code runs in both.

use std::collections::BTreeMap;
use std::future::Future;

use ecs_client::{Credentials, EcsClient, EcsError, Instance, RequestId, Turn};
use jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use rand::Rng;

use crate::decision::{CloudCall, EventSpec};
use crate::resource::{EcsInstance, EcsInstanceStatus};

/// A failed Kubernetes API call of a pass.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The object changed since the pass read it (HTTP 409): the pass plans again from the new
    /// version instead of acting on the old one (design.md §5).
    #[error("{0} changed since this pass read it; planning again")]
    Conflict(String),
    /// Any other failure of a Kubernetes API that is not kube's client (the simulation's).
    #[error("Kubernetes API: {0}")]
    Unavailable(String),
    #[error("the resource cache stopped")]
    CacheStopped,
}

impl Error {
    /// A label for the failure metric.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Kube(_) | Error::Unavailable(_) => "KubernetesApiError",
            Error::Conflict(_) => "Conflict",
            Error::CacheStopped => "CacheStopped",
        }
    }
}

/// The cloud as a pass sees it.
pub trait Cloud: Send + Sync + 'static {
    /// `DescribeInstances` of one instance (`None`: not listed).
    fn observe(
        &self,
        region: &str,
        credentials: &Credentials,
        instance_id: &str,
    ) -> impl Future<Output = Result<Option<Instance>, EcsError>> + Send;

    /// A claim to tag `instance_id` with, shared with other tag calls so that they can go
    /// together, or `None` (design.md §3, adoption in batches).
    fn tag_claim(&self, instance_id: &str) -> Option<String>;

    /// A `DeleteInstance`'s turn under the rate limit, taken before its intent is written.
    type Turn: Send;

    /// Waits for the next `DeleteInstance`'s turn under the rate limit and takes it, so that
    /// the intent written just before the call does not sit on record while the call waits: a
    /// process stopped meanwhile would leave an intent for a call never sent, which the next
    /// one would have to wait out (design.md §4).
    fn take_release_turn(
        &self,
        region: &str,
        credentials: &Credentials,
    ) -> impl Future<Output = Result<Self::Turn, EcsError>> + Send;

    /// The one call a plan asked for, in `turn` if one was taken for it.
    fn call(
        &self,
        region: &str,
        credentials: &Credentials,
        call: &CloudCall,
        turn: Option<Self::Turn>,
    ) -> impl Future<Output = Result<RequestId, EcsError>> + Send;
}

impl Cloud for EcsClient {
    async fn observe(
        &self,
        region: &str,
        credentials: &Credentials,
        instance_id: &str,
    ) -> Result<Option<Instance>, EcsError> {
        self.lookup_instance(region, credentials, instance_id).await
    }

    fn tag_claim(&self, instance_id: &str) -> Option<String> {
        EcsClient::tag_claim(self, instance_id)
    }

    type Turn = Turn;

    async fn take_release_turn(
        &self,
        region: &str,
        credentials: &Credentials,
    ) -> Result<Turn, EcsError> {
        self.take_turn(region, credentials, "DeleteInstance").await
    }

    async fn call(
        &self,
        region: &str,
        credentials: &Credentials,
        call: &CloudCall,
        turn: Option<Turn>,
    ) -> Result<RequestId, EcsError> {
        match call {
            CloudCall::Stop(request) => self.stop_instance(region, credentials, request).await,
            CloudCall::Delete(request) => {
                self.delete_instance_in(region, credentials, request, turn)
                    .await
            }
            CloudCall::Tag(request) => self.tag_instance(credentials, request).await,
            CloudCall::Untag(request) => self.untag_instance(credentials, request).await,
        }
    }
}

/// A credentials Secret as read for a pass.
#[derive(Clone)]
pub struct SecretRead {
    pub data: BTreeMap<String, Vec<u8>>,
    /// It carries the in-use finalizer ([`crate::resource::SECRET_IN_USE_FINALIZER`]).
    pub protected: bool,
    /// It has a deletionTimestamp (no finalizer can be added any more).
    pub deleting: bool,
}

/// The Kubernetes API as a pass sees it.
pub trait Cluster: Send + Sync + 'static {
    /// Writes the whole status. With `resource_version`, only if the object is still at that
    /// version ([`Error::Conflict`] otherwise). Returns the object's new resourceVersion.
    fn write_status(
        &self,
        resource: &EcsInstance,
        status: &EcsInstanceStatus,
        resource_version: Option<&str>,
    ) -> impl Future<Output = Result<Option<String>, Error>> + Send;

    /// Adds our finalizer, unless the finalizer list changed since `resource` was read.
    fn add_finalizer(
        &self,
        resource: &EcsInstance,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Removes our finalizer, only if the object is still at `resource_version`.
    fn remove_finalizer(
        &self,
        resource: &EcsInstance,
        resource_version: Option<&str>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// The Secret `namespace/name` (`None`: it does not exist).
    fn read_secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<SecretRead>, Error>> + Send;

    /// Adds (`true`) or removes (`false`) the in-use finalizer of a Secret; a Secret that is
    /// gone or already as asked is fine.
    fn protect_secret(
        &self,
        namespace: &str,
        name: &str,
        protect: bool,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Publishes one event about the resource (failures are logged, never fatal).
    fn publish(&self, resource: &EcsInstance, event: &EventSpec)
    -> impl Future<Output = ()> + Send;

    /// Drops what is kept for a resource that is gone (event series).
    fn forget(&self, object: &ObjectRef<EcsInstance>);
}

/// Time and the jitter source of the pacing.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
    /// A uniform sample of [0, 1).
    fn unit(&self) -> f64;
}

/// The real clock and a thread-local random source.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn unit(&self) -> f64 {
        rand::rng().random()
    }
}
